//! Short names (`etcd`, `coreos/etcd:v3.4`): what a name without a registry means.
//!
//! 1. An alias (`[aliases]` in any registries.conf file, or the machine-written cache) is used as
//!    it is, with the typed tag or digest appended: no search, no question.
//! 2. Otherwise the candidates are `unqualified-search-registries` × the name, in order
//!    (`docker.io` gets `library/` for a one-component name). One candidate is used as it is.
//! 3. Several candidates depend on `short-name-mode`: `enforcing` and `permissive` ask on a terminal
//!    (stdin and stdout) and record the answer as an alias in the cache after a successful pull;
//!    without a terminal `enforcing` fails listing the candidates, `permissive` and `disabled` try
//!    them in order (the first that has the image wins). hoist never guesses in enforcing mode.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use super::{ConfError, Options, Registries, ShortNameMode};
use crate::imgref::RegistryRef;

/// A name with no registry host (`etcd`, `coreos/etcd`), tag and digest stripped first.
pub fn is_short_name(name: &str) -> bool {
    let first = name.split('/').next().unwrap_or_default();
    let qualified = crate::imgref::is_host(first);
    !(name.is_empty() || name.contains([':', '@']) || qualified)
        && name.split('/').all(|c| {
            !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        })
}

/// A fully-qualified repository without tag or digest (`quay.io/coreos/etcd`).
pub fn is_alias_target(value: &str) -> bool {
    match value.split_once('/') {
        Some((host, _)) if crate::imgref::is_host(host) => {
            RegistryRef::parse(value).is_ok()
                && !value.contains('@')
                && !value.rsplit('/').next().unwrap_or_default().contains(':')
        }
        _ => false,
    }
}

/// What a short name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// An alias: this reference, from this file.
    Alias { reference: RegistryRef, file: PathBuf },
    /// Candidates from `unqualified-search-registries`, in order.
    Search { candidates: Vec<RegistryRef>, mode: ShortNameMode },
}

/// `etcd:3.4` → (`etcd`, `:3.4`); `etcd@sha256:…` → (`etcd`, `@sha256:…`).
fn split(input: &str) -> (&str, &str) {
    let cut = input.find('@').unwrap_or(input.len());
    let (name_tag, _) = input.split_at(cut);
    let cut = match name_tag.rfind(':') {
        Some(i) if !name_tag[i..].contains('/') => i,
        _ => cut,
    };
    input.split_at(cut)
}

#[derive(Debug, thiserror::Error)]
pub enum ShortNameError {
    #[error(transparent)]
    Conf(#[from] ConfError),
    #[error("{name}: {reason}")]
    Unresolved { name: String, reason: String },
    /// Neither stored nor resolvable: no alias, no search registries.
    #[error(
        "image {name:?} not found in the store (see `hoist images`), and registries.conf has no alias and no unqualified-search-registries for it ({files})"
    )]
    NotStored { name: String, files: String },
}

impl Registries {
    /// The short name `input` (`etcd`, `etcd:3.4`, `coreos/etcd@sha256:…`) resolved, or None when it
    /// is not a short name.
    pub fn short_name(&self, input: &str) -> Result<Option<Resolution>, ShortNameError> {
        let (name, tail) = split(input);
        if !is_short_name(name) {
            return Ok(None);
        }
        let unresolved = |reason: String| ShortNameError::Unresolved { name: input.to_string(), reason };
        let parse = |text: String| RegistryRef::parse(&text).map_err(|e| unresolved(e.to_string()));
        if let Some(a) = self.aliases.get(name) {
            let reference = parse(format!("{}{tail}", a.value))?;
            return Ok(Some(Resolution::Alias { reference, file: a.file.clone() }));
        }
        let registries = self.search.as_ref().map(|s| s.value.as_slice()).unwrap_or_default();
        if registries.is_empty() {
            let files = if self.files.is_empty() {
                "no registries.conf was found".to_string()
            } else {
                format!("read {}", self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "))
            };
            return Err(ShortNameError::NotStored { name: input.to_string(), files });
        }
        let candidates =
            registries.iter().map(|r| parse(format!("{r}/{name}{tail}"))).collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Resolution::Search { candidates, mode: self.mode() }))
    }
}

/// What to try, in order, for a short name, after asking on a terminal when the mode says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub candidates: Vec<RegistryRef>,
    /// The user picked the one candidate: record it as an alias after the pull.
    pub record: bool,
}

/// Narrows a [`Resolution`] down to what to try.
pub fn choose(input: &str, res: Resolution) -> Result<Choice, ShortNameError> {
    let (candidates, mode) = match res {
        Resolution::Alias { reference, .. } => return Ok(Choice { candidates: vec![reference], record: false }),
        Resolution::Search { candidates, mode } => (candidates, mode),
    };
    if candidates.len() == 1 || mode == ShortNameMode::Disabled {
        return Ok(Choice { candidates, record: false });
    }
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        let picked = prompt(input, &candidates).map_err(|e| ShortNameError::Unresolved {
            name: input.to_string(),
            reason: format!("no choice made ({e})"),
        })?;
        return Ok(Choice { candidates: vec![candidates[picked].clone()], record: true });
    }
    if mode == ShortNameMode::Permissive {
        return Ok(Choice { candidates, record: false });
    }
    let list = candidates.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ");
    Err(ShortNameError::Unresolved {
        name: input.to_string(),
        reason: format!(
            "ambiguous short name and short-name-mode is enforcing, with no terminal to ask: use one of {list}, or add an [aliases] entry"
        ),
    })
}

fn prompt(input: &str, candidates: &[RegistryRef]) -> std::io::Result<usize> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "? Which image does {input:?} mean?")?;
    for (i, c) in candidates.iter().enumerate() {
        writeln!(out, "  {}. {c}", i + 1)?;
    }
    loop {
        write!(out, "Number (1-{}): ", candidates.len())?;
        out.flush()?;
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "end of input"));
        }
        if let Ok(n) = line.trim().parse::<usize>()
            && (1..=candidates.len()).contains(&n)
        {
            return Ok(n - 1);
        }
    }
}

/// Records `name` = `target` (host/repo) in the alias cache, as podman does after a prompt.
pub fn record_alias(name: &str, target: &RegistryRef) -> Result<PathBuf, ConfError> {
    let path = Options::alias_cache().ok_or_else(|| ConfError::Read {
        path: "~/.cache/containers/short-name-aliases.conf".into(),
        cause: std::io::Error::new(std::io::ErrorKind::NotFound, "HOME is not set"),
    })?;
    write_alias(&path, name, &format!("{}/{}", target.registry, target.repository))?;
    Ok(path)
}

/// The valid aliases of the machine-written file (None: no file, or unreadable), and warnings
/// for what was skipped.
pub(super) fn read_alias_cache(path: &Path) -> (Option<std::collections::BTreeMap<String, String>>, Vec<String>) {
    let mut warnings = Vec::new();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (None, warnings),
        Err(e) => return (None, vec![format!("{}: {e}; its aliases are ignored", path.display())]),
    };
    let table: toml::Table = match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            let msg = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            return (None, vec![format!("{}: {msg}; its aliases are ignored", path.display())]);
        }
    };
    let mut out = std::collections::BTreeMap::new();
    let Some(aliases) = table.get("aliases").and_then(|a| a.as_table()) else { return (Some(out), warnings) };
    for (name, value) in aliases {
        match value.as_str() {
            Some(v) if is_short_name(name) && is_alias_target(v) => {
                out.insert(name.clone(), v.to_string());
            }
            _ => {
                let shown = value.as_str().map(|v| format!("{v:?}")).unwrap_or_else(|| "a non-string value".into());
                warnings.push(format!("{}: alias {name:?} = {shown} is not valid and is ignored", path.display()))
            }
        }
    }
    (Some(out), warnings)
}

/// Holds the POSIX record lock containers/storage uses for `PATH.lock` (podman takes it to
/// write the aliases file too) until dropped.
struct CacheLock(#[allow(dead_code)] std::fs::File);

fn lock_cache(path: &Path) -> std::io::Result<CacheLock> {
    use std::os::fd::AsRawFd;
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&p)?;
    let lock = nix::libc::flock {
        l_type: nix::libc::F_WRLCK as i16,
        l_whence: nix::libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_SETLKW(&lock))?;
    Ok(CacheLock(f))
}

fn write_alias(path: &Path, name: &str, value: &str) -> Result<(), ConfError> {
    let io = |cause| ConfError::Read { path: path.to_path_buf(), cause };
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(io)?;
    let _lock = lock_cache(path).map_err(io)?;
    let (aliases, _) = read_alias_cache(path);
    let mut aliases = aliases.unwrap_or_default();
    aliases.insert(name.split([':', '@']).next().unwrap_or(name).to_string(), value.to_string());
    let mut text = String::from("# Written by hoist (and podman) after a short-name prompt.\n[aliases]\n");
    for (k, v) in aliases {
        text.push_str(&format!("  {} = {}\n", toml_string(&k), toml_string(&v)));
    }
    crate::fsutil::write_atomic(path, text.as_bytes(), 0o644)
        .map_err(|e| ConfError::Read { path: path.to_path_buf(), cause: e.source })
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        for s in ["etcd", "coreos/etcd", "a-b_c/e.d"] {
            assert!(is_short_name(s), "{s}");
        }
        for s in ["quay.io/etcd", "localhost/etcd", "etcd:3.4", "Etcd", "", "a//b", "127.0.0.1:5000/x"] {
            assert!(!is_short_name(s), "{s}");
        }
        assert_eq!(split("etcd:3.4"), ("etcd", ":3.4"));
        assert_eq!(split("coreos/etcd"), ("coreos/etcd", ""));
        let d = format!("@sha256:{}", "a".repeat(64));
        assert_eq!(split(&format!("etcd:3.4{d}")), ("etcd", &*format!(":3.4{d}")));
        assert!(is_alias_target("quay.io/coreos/etcd"));
        assert!(is_alias_target("127.0.0.1:5000/etcd"));
        assert!(!is_alias_target("quay.io/coreos/etcd:3.4"));
        assert!(!is_alias_target("coreos/etcd"));
    }

    #[test]
    fn alias_cache_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c/short-name-aliases.conf");
        write_alias(&p, "etcd", "quay.io/coreos/etcd").unwrap();
        write_alias(&p, "app:1.0", "127.0.0.1:5000/team/app").unwrap();
        let (got, warnings) = read_alias_cache(&p);
        let got: Vec<(String, String)> = got.unwrap().into_iter().collect();
        assert_eq!(
            got,
            vec![("app".into(), "127.0.0.1:5000/team/app".into()), ("etcd".into(), "quay.io/coreos/etcd".into())]
        );
        assert!(warnings.is_empty());
        assert!(p.with_extension("conf.lock").exists(), "podman's lock file is used");
        // Written by someone else with an entry hoist does not take: skipped, said, the rest kept.
        std::fs::write(&p, "[aliases]\n\"etcd\" = \"quay.io/coreos/etcd\"\n\"bad\" = \"not-qualified\"\n").unwrap();
        let (got, warnings) = read_alias_cache(&p);
        assert_eq!(got.unwrap().len(), 1);
        assert_eq!(
            warnings,
            [format!("{}: alias \"bad\" = \"not-qualified\" is not valid and is ignored", p.display())]
        );
        std::fs::write(&p, "[aliases\n").unwrap();
        let (got, warnings) = read_alias_cache(&p);
        assert!(got.is_none() && warnings[0].ends_with("its aliases are ignored"), "{warnings:?}");
    }
}
