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
//! Credentials are never printed: [`Credentials`]'s `Debug` hides the password and errors name
//! only the file and the key.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;

pub const ENV_AUTH_FILE: &str = "REGISTRY_AUTH_FILE";

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// The file they came from (for messages).
    pub file: PathBuf,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ username: {:?}, password: <hidden>, file: {:?} }}", self.username, self.file)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("credentials file {}: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("credentials file {}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
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

/// Credentials for `registry/repository`, from the first file on the search path that has some.
pub fn lookup(registry: &str, repository: &str, authfile: Option<&Path>) -> Result<Option<Credentials>, AuthError> {
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
    Ok(Some(Credentials { username, password, file: path.to_path_buf() }))
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
        let c = Credentials { username: "u".into(), password: "hunter2".into(), file: "/f".into() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn authfile_is_exclusive_and_must_exist() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.json");
        assert_eq!(search_path(Some(&f)), vec![f.clone()]);
        assert!(matches!(lookup("r.io", "x", Some(&f)), Err(AuthError::Read { .. })));
        std::fs::write(&f, serde_json::to_vec(&serde_json::json!({"auths": {"r.io": {"auth": b64("u:p")}}})).unwrap())
            .unwrap();
        let c = lookup("r.io", "x", Some(&f)).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str(), c.file.as_path()), ("u", "p", f.as_path()));
    }
}
