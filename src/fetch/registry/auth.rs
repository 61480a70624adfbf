//! Registry credentials, read from the files podman, skopeo and docker write.
//!
//! ```text
//! { "auths": { "REGISTRY[/NAMESPACE[/REPO]]": { "auth": base64("USER:PASSWORD") } } }
//! ```
//! Files, first match wins: `--authfile` or `$REGISTRY_AUTH_FILE` (exclusively, when given);
//! otherwise `$XDG_RUNTIME_DIR/containers/auth.json` (root without it: `/run/containers/0/auth.json`),
//! `/etc/containers/auth.json`, `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/…`) and
//! `~/.docker/config.json`. A missing file is skipped; an unreadable or malformed one is an error
//! naming the file. Keys may carry a scheme (`https://`), a `/v1/`/`/v2/` suffix, or a repository
//! path; the most specific key that covers the image wins, and `docker.io` also matches
//! `index.docker.io` and `registry-1.docker.io`. Entries may also spell out `username`/`password`.
//!
//! Credential helpers (docker's protocol): `"credHelpers": {"HOST": "NAME"}` in a file makes
//! `docker-credential-NAME get` the source for that registry host, and `"credsStore": "NAME"` for
//! every registry the file's `credHelpers` do not name (an `auths` entry of the same file is the
//! fallback when the store has nothing). The helper gets the host on stdin and answers
//! `{"ServerURL": …, "Username": …, "Secret": …}` on stdout; "credentials not found" means none.
//! registries.conf `credential-helpers = ["containers-auth.json", "NAME", …]` orders the sources
//! when set: `containers-auth.json` is the auth files above, any other NAME a helper asked directly.
//! A helper that is missing, fails, hangs past [`HELPER_TIMEOUT`] or answers garbage is an error
//! naming the helper and the file that named it.
//!
//! Credentials are never printed: [`Credentials`]'s `Debug` hides the password and errors name
//! only the file, the key and the helper.

use std::fmt;
use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

pub const ENV_AUTH_FILE: &str = "REGISTRY_AUTH_FILE";
/// The auth files, as a registries.conf `credential-helpers` entry.
pub const AUTH_FILES: &str = "containers-auth.json";
/// How long a credential helper may take.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// The file they came from, or that named the helper (for messages).
    pub file: PathBuf,
    /// The credential helper that answered (`docker-credential-NAME`).
    pub helper: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: <hidden>, file: {:?}, helper: {:?} }}",
            self.username, self.file, self.helper
        )
    }
}

impl Credentials {
    /// Where they came from, for messages.
    pub fn origin(&self) -> String {
        match &self.helper {
            Some(h) => format!("credential helper {h} (named by {})", self.file.display()),
            None => self.file.display().to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("credentials file {}: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("credentials file {}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("credential helper {helper} (named by {}): {reason}", named_by.display())]
    Helper { helper: String, named_by: PathBuf, reason: String },
}

/// Where credentials are looked for, in order.
pub fn search_path(authfile: Option<&Path>) -> Vec<PathBuf> {
    if let Some(f) = authfile {
        return vec![f.to_path_buf()];
    }
    if let Some(f) = std::env::var_os(ENV_AUTH_FILE).filter(|v| !v.is_empty()) {
        return vec![PathBuf::from(f)];
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut out = Vec::new();
    match env("XDG_RUNTIME_DIR") {
        Some(d) => out.push(d.join("containers/auth.json")),
        None if nix::unistd::geteuid().is_root() => out.push("/run/containers/0/auth.json".into()),
        None => {}
    }
    out.push("/etc/containers/auth.json".into());
    let home = env("HOME");
    if let Some(d) = env("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))) {
        out.push(d.join("containers/auth.json"));
    }
    if let Some(h) = home {
        out.push(h.join(".docker/config.json"));
    }
    out
}

/// Credentials for `registry/repository`: from the sources registries.conf's
/// `credential-helpers` lists (`helpers`, with the file that set it), else from the auth files.
pub fn lookup(
    registry: &str,
    repository: &str,
    authfile: Option<&Path>,
    helpers: Option<(&[String], &Path)>,
) -> Result<Option<Credentials>, AuthError> {
    let Some((helpers, conf)) = helpers else {
        return lookup_files(registry, repository, authfile);
    };
    for h in helpers {
        let found = if h == AUTH_FILES {
            lookup_files(registry, repository, authfile)?
        } else {
            run_helper(h, registry, conf)?
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Credentials from the first auth file on the search path that has some.
fn lookup_files(registry: &str, repository: &str, authfile: Option<&Path>) -> Result<Option<Credentials>, AuthError> {
    for path in search_path(authfile) {
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && authfile.is_none() => continue,
            Err(cause) => return Err(AuthError::Read { path, cause }),
        };
        if let Some(c) = from_file(&path, &data, registry, repository)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn canonical_host(h: &str) -> &str {
    match h {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// A key as `host[/path]` without scheme and API suffix.
fn normalize_key(key: &str) -> String {
    let k = key.trim();
    let k = k.strip_prefix("https://").or_else(|| k.strip_prefix("http://")).unwrap_or(k);
    let k = k.trim_end_matches('/');
    let k = k.strip_suffix("/v1").or_else(|| k.strip_suffix("/v2")).unwrap_or(k);
    match k.split_once('/') {
        Some((host, path)) => format!("{}/{path}", canonical_host(host)),
        None => canonical_host(k).to_string(),
    }
}

fn from_file(path: &Path, data: &[u8], registry: &str, repository: &str) -> Result<Option<Credentials>, AuthError> {
    let malformed = |reason: String| AuthError::Malformed { path: path.to_path_buf(), reason };
    let doc: serde_json::Value = serde_json::from_slice(data).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let name = |v: &serde_json::Value, what: &str| -> Result<String, AuthError> {
        match v.as_str() {
            Some(n) if !n.is_empty() && !n.contains('/') => Ok(n.to_string()),
            _ => Err(malformed(format!("{what} is not a helper name"))),
        }
    };
    // credHelpers: the helper named for this host is the only source for it.
    if let Some(helpers) = doc.get("credHelpers") {
        let helpers = helpers.as_object().ok_or_else(|| malformed("\"credHelpers\" is not an object".into()))?;
        let host = canonical_host(registry);
        if let Some((key, v)) = helpers.iter().find(|(k, _)| normalize_key(k) == host) {
            return run_helper(&name(v, &format!("credHelpers[{key:?}]"))?, registry, path);
        }
    }
    // credsStore: the store first, this file's own entry as the fallback.
    if let Some(store) = doc.get("credsStore").filter(|v| !v.as_str().is_some_and(str::is_empty))
        && let Some(c) = run_helper(&name(store, "credsStore")?, registry, path)?
    {
        return Ok(Some(c));
    }
    let Some(auths) = doc.get("auths") else {
        return Ok(None);
    };
    let auths = auths.as_object().ok_or_else(|| malformed("\"auths\" is not an object".into()))?;
    let image = format!("{}/{repository}", canonical_host(registry));
    let best = auths
        .iter()
        .map(|(k, v)| (normalize_key(k), k, v))
        .filter(|(n, _, _)| image == *n || image.starts_with(&format!("{n}/")))
        .max_by_key(|(n, _, _)| n.len());
    let Some((_, key, entry)) = best else {
        return Ok(None);
    };
    let field = |f: &str| entry.get(f).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    let (username, password) = if let Some(b64) = field("auth") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| malformed(format!("entry {key:?}: \"auth\" is not base64")))?;
        let text = String::from_utf8(raw).map_err(|_| malformed(format!("entry {key:?}: \"auth\" is not UTF-8")))?;
        let (u, p) =
            text.split_once(':').ok_or_else(|| malformed(format!("entry {key:?}: \"auth\" is not USER:PASSWORD")))?;
        (u.to_string(), p.to_string())
    } else if let (Some(u), Some(p)) = (field("username"), field("password")) {
        (u.to_string(), p.to_string())
    } else if field("identitytoken").is_some() {
        return Err(malformed(format!("entry {key:?}: identity tokens are not supported; log in with a password")));
    } else {
        return Ok(None);
    };
    Ok(Some(Credentials { username, password, file: path.to_path_buf(), helper: None }))
}

/// The server address a helper is asked about: docker's for Docker Hub, the host otherwise.
fn server_url(registry: &str) -> String {
    match canonical_host(registry) {
        "docker.io" => "https://index.docker.io/v1/".to_string(),
        h => h.to_string(),
    }
}

/// `docker-credential-NAME get` for `registry` (None: the helper has no credentials for it).
fn run_helper(name: &str, registry: &str, named_by: &Path) -> Result<Option<Credentials>, AuthError> {
    let helper = format!("docker-credential-{name}");
    let fail = |reason: String| AuthError::Helper { helper: helper.clone(), named_by: named_by.to_path_buf(), reason };
    // The host goes in through a file, not a pipe: a helper that exits without reading its
    // input must not leave hoist writing into a closed pipe (SIGPIPE is fatal to the CLI).
    let url = server_url(registry);
    let mut input = tempfile::tempfile().map_err(|e| fail(format!("cannot prepare its input: {e}")))?;
    input
        .write_all(url.as_bytes())
        .and_then(|()| input.seek(std::io::SeekFrom::Start(0)).map(|_| ()))
        .map_err(|e| fail(format!("cannot prepare its input: {e}")))?;
    let mut child = Command::new(&helper)
        .arg("get")
        .process_group(0)
        .stdin(Stdio::from(input))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => fail("not found in $PATH".into()),
            _ => fail(format!("cannot run it: {e}")),
        })?;
    // Each pipe is read on its own thread (capped), and handed over through a channel, so a
    // grandchild that keeps a pipe open cannot hold hoist past the deadline.
    let (tx, rx) = std::sync::mpsc::channel::<(bool, Vec<u8>)>();
    let pipes: [(bool, Box<dyn Read + Send>, u64); 2] = [
        (true, Box::new(child.stdout.take().expect("piped")), 1 << 20),
        (false, Box::new(child.stderr.take().expect("piped")), 1 << 16),
    ];
    for (is_out, mut pipe, cap) in pipes {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = pipe.by_ref().take(cap).read_to_end(&mut b);
            let _ = tx.send((is_out, b));
        });
    }
    drop(tx);
    let deadline = Instant::now() + HELPER_TIMEOUT;
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    // The helper runs in a process group of its own: whatever it leaves behind goes with it.
    let kill_group = || {
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    };
    let timed_out = || fail(format!("no answer within {} s", HELPER_TIMEOUT.as_secs()));
    // Exited (left unreaped, so its group id cannot be reused before the group is killed)?
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        match waitid(Id::Pid(group), flags) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(WaitStatus::StillAlive) => {
                kill_group();
                let _ = child.wait();
                return Err(timed_out());
            }
            Ok(_) => break,
            Err(e) => return Err(fail(format!("cannot wait for it: {e}"))),
        }
    }
    kill_group();
    let status = child.wait().map_err(|e| fail(format!("cannot wait for it: {e}")))?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        match rx.recv_timeout(left) {
            Ok((true, b)) => out = b,
            Ok((false, b)) => err = b,
            Err(_) => return Err(timed_out()),
        }
    }
    // Helpers print their error message on stdout (docker's protocol) or stderr. A line that
    // could hold a secret (JSON, or naming one) is never repeated.
    let message = |b: &[u8]| {
        let line = String::from_utf8_lossy(b).lines().next().unwrap_or("").trim().to_string();
        let lower = line.to_ascii_lowercase();
        if line.starts_with('{') || lower.contains("secret") || lower.contains("password") || lower.contains("token") {
            return String::new();
        }
        crate::error::printable(&line).chars().take(200).collect::<String>()
    };
    if !status.success() {
        let msg = [message(&out), message(&err)].into_iter().find(|m| !m.is_empty()).unwrap_or_default();
        if msg.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        let code = status.code().map(|c| format!("status {c}")).unwrap_or_else(|| "a signal".into());
        return Err(fail(format!(
            "exited with {code}{}",
            if msg.is_empty() { String::new() } else { format!(": {msg}") }
        )));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    // The answer holds the secret: its parse error never quotes it.
    let a: Answer = serde_json::from_slice(&out).map_err(|e| {
        fail(format!("its answer is not the JSON the protocol wants (line {}, column {})", e.line(), e.column()))
    })?;
    if a.username == "<token>" {
        return Err(fail(format!(
            "it holds an identity token for {url}; identity tokens are not supported, log in with a password"
        )));
    }
    if a.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: a.username,
        password: a.secret,
        file: named_by.to_path_buf(),
        helper: Some(helper),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn find(doc: serde_json::Value, reg: &str, repo: &str) -> Result<Option<(String, String)>, AuthError> {
        let data = serde_json::to_vec(&doc).unwrap();
        Ok(from_file(Path::new("/x/auth.json"), &data, reg, repo)?.map(|c| (c.username, c.password)))
    }

    #[test]
    fn matches_keys() {
        let doc = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": b64("hub:pw1")},
            "quay.io": {"auth": b64("q:pw2")},
            "quay.io/team": {"auth": b64("team:pw3")},
            "quay.io/team/app": {"username": "app", "password": "pw:4"},
            "127.0.0.1:5000": {"auth": b64("local:p:w")},
        }});
        let get = |reg, repo| find(doc.clone(), reg, repo).unwrap();
        assert_eq!(get("docker.io", "library/busybox"), Some(("hub".into(), "pw1".into())));
        assert_eq!(get("quay.io", "other/x"), Some(("q".into(), "pw2".into())));
        assert_eq!(get("quay.io", "team/x"), Some(("team".into(), "pw3".into())));
        assert_eq!(get("quay.io", "team/app"), Some(("app".into(), "pw:4".into())));
        assert_eq!(
            get("quay.io", "teamster/x"),
            Some(("q".into(), "pw2".into())),
            "path prefixes match whole components"
        );
        assert_eq!(get("127.0.0.1:5000", "etcd"), Some(("local".into(), "p:w".into())), "password may contain ':'");
        assert_eq!(get("127.0.0.1:5001", "etcd"), None);
        assert_eq!(find(serde_json::json!({"credHelpers": {}}), "quay.io", "x").unwrap(), None);
    }

    #[test]
    fn malformed_files_name_the_file_not_the_secret() {
        for doc in [
            serde_json::json!({"auths": []}),
            serde_json::json!({"auths": {"r.io": {"auth": "%%%secret"}}}),
            serde_json::json!({"auths": {"r.io": {"auth": b64("nocolonsecret")}}}),
            serde_json::json!({"auths": {"r.io": {"identitytoken": "secret"}}}),
        ] {
            let e = find(doc, "r.io", "x").unwrap_err().to_string();
            assert!(e.starts_with("credentials file /x/auth.json: "), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
        let c = Credentials { username: "u".into(), password: "hunter2".into(), file: "/f".into(), helper: None };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn authfile_is_exclusive_and_must_exist() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.json");
        assert_eq!(search_path(Some(&f)), vec![f.clone()]);
        assert!(matches!(lookup("r.io", "x", Some(&f), None), Err(AuthError::Read { .. })));
        std::fs::write(&f, serde_json::to_vec(&serde_json::json!({"auths": {"r.io": {"auth": b64("u:p")}}})).unwrap())
            .unwrap();
        let c = lookup("r.io", "x", Some(&f), None).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str(), c.file.as_path()), ("u", "p", f.as_path()));
    }
}
