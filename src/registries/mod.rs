//! Where images come from, as the host configures it for podman and skopeo:
//! containers-registries.conf(5) version 2 ([`conf`]), short names ([`shortnames`]) and per-host
//! TLS files ([`certs`]).
//!
//! Files, in the order they are read (a later file overrides an earlier one):
//! 1. the main file: `--registries-conf FILE`, else `$CONTAINERS_REGISTRIES_CONF`, else (not root)
//!    `$HOME/.config/containers/registries.conf` when it exists, else
//!    `/etc/containers/registries.conf`. A missing default file is no error; a named one is.
//! 2. drop-ins: `*.conf` in `--registries-conf-dir DIR` alone when given; otherwise in
//!    `/etc/containers/registries.conf.d` and (not root) `$HOME/.config/containers/registries.conf.d`
//!    — only the latter when the main file is the per-user one. Sorted by file name within a
//!    directory.
//! 3. the short-name aliases podman and hoist record after a prompt:
//!    `/var/cache/containers/short-name-aliases.conf` (root) or
//!    `$HOME/.cache/containers/short-name-aliases.conf`; its `[aliases]` win.
//!
//! Merging (as containers/image does): a `[[registry]]` table replaces an earlier one with the same
//! prefix (within one file, a prefix may appear once); a table needs a `location` unless its prefix
//! is a wildcard (containers/image refuses such files, so hoist does too); `unqualified-search-registries`,
//! `short-name-mode` and `credential-helpers` replace earlier values when set; `[aliases]` are merged
//! key by key, and an empty value removes an alias.
//!
//! Matching ([`Registries::plan`]): the reference as typed (`host/repo:tag@digest`, docker.io
//! normalised with `library/`) is compared with every prefix; the longest match wins. A prefix
//! matches when the reference equals it or continues with `/`, `@`, or — after a repository path —
//! `:` (so `example.com` never matches `example.com:5000/…`, which containers/image still allows);
//! `*.example.com` matches any host under example.com. The table's `location` replaces the prefix for
//! the primary; its mirrors (filtered by `mirror-by-digest-only` and `pull-from-mirror`) come first.
//! Mirrors serve reads only; the image keeps its logical name, and the signature policy is
//! evaluated against that name, never the mirror's.

pub mod certs;
mod conf;
pub mod shortnames;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use conf::Origin;

use crate::imgref::RegistryRef;

pub const ENV_CONF: &str = "CONTAINERS_REGISTRIES_CONF";
pub const SYSTEM_CONF: &str = "/etc/containers/registries.conf";
pub const SYSTEM_DIR: &str = "/etc/containers/registries.conf.d";
pub const ROOT_ALIAS_CACHE: &str = "/var/cache/containers/short-name-aliases.conf";

#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("{}: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Syntax { path: PathBuf, line: Option<usize>, message: String },
    #[error("{origin}: {message}")]
    Invalid { origin: Origin, message: String },
    #[error("{image}: pulls from this registry are blocked by {origin}")]
    Blocked { image: String, origin: Origin },
}

/// Which files to read (from the command line; defaults in the module doc).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub file: Option<PathBuf>,
    pub dir: Option<PathBuf>,
}

/// `short-name-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShortNameMode {
    Enforcing,
    #[default]
    Permissive,
    Disabled,
}

impl fmt::Display for ShortNameMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShortNameMode::Enforcing => "enforcing",
            ShortNameMode::Permissive => "permissive",
            ShortNameMode::Disabled => "disabled",
        })
    }
}

/// `pull-from-mirror`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullFrom {
    All,
    DigestOnly,
    TagOnly,
}

#[derive(Debug, Clone)]
pub struct Mirror {
    pub location: String,
    pub insecure: bool,
    pub pull_from: PullFrom,
}

/// One `[[registry]]` table, validated.
#[derive(Debug, Clone)]
pub struct Registry {
    pub prefix: String,
    /// None for a wildcard prefix: the reference's own host is used.
    pub location: Option<String>,
    pub insecure: bool,
    pub blocked: bool,
    pub mirrors: Vec<Mirror>,
    pub origin: Origin,
}

/// A setting and the file it came from.
#[derive(Debug, Clone)]
pub struct Sourced<T> {
    pub value: T,
    pub file: PathBuf,
}

/// Everything the files say, merged.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    /// The files that were read, in order.
    pub files: Vec<PathBuf>,
    pub registries: Vec<Registry>,
    pub search: Option<Sourced<Vec<String>>>,
    pub mode: Option<Sourced<ShortNameMode>>,
    pub credential_helpers: Option<Sourced<Vec<String>>>,
    pub aliases: BTreeMap<String, Sourced<String>>,
    /// What was skipped (bad entries of the machine-written aliases file).
    pub warnings: Vec<String>,
}

/// One place to try for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The reference at that place.
    pub reference: RegistryRef,
    /// Plain HTTP and unverified TLS allowed (`insecure = true`).
    pub insecure: bool,
    /// A mirror (false: the primary, which is always last).
    pub mirror: bool,
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

impl Options {
    /// The main file (and whether it must exist) and the drop-in directories, in order.
    pub fn files(&self) -> (PathBuf, bool, Vec<PathBuf>) {
        let env = std::env::var_os(ENV_CONF).filter(|v| !v.is_empty()).map(PathBuf::from);
        let user = (!is_root()).then(home).flatten().map(|h| h.join(".config/containers"));
        let (main, required, user_main) = match (&self.file, env) {
            (Some(f), _) => (f.clone(), true, false),
            (None, Some(f)) => (f, true, false),
            (None, None) => match user.as_ref().map(|u| u.join("registries.conf")).filter(|p| p.exists()) {
                Some(p) => (p, false, true),
                None => (PathBuf::from(SYSTEM_CONF), false, false),
            },
        };
        let dirs = match (&self.dir, &user) {
            (Some(d), _) => vec![d.clone()],
            (None, Some(u)) if user_main => vec![u.join("registries.conf.d")],
            (None, Some(u)) => vec![PathBuf::from(SYSTEM_DIR), u.join("registries.conf.d")],
            (None, None) => vec![PathBuf::from(SYSTEM_DIR)],
        };
        (main, required, dirs)
    }

    /// The machine-written aliases file (podman's, shared).
    pub fn alias_cache() -> Option<PathBuf> {
        if is_root() {
            Some(ROOT_ALIAS_CACHE.into())
        } else {
            home().map(|h| h.join(".cache/containers/short-name-aliases.conf"))
        }
    }

    /// Reads and merges every file.
    fn load(&self) -> Result<Registries, ConfError> {
        let (main, required, dirs) = self.files();
        let mut out = Registries::default();
        out.merge_path(&main, required)?;
        for dir in dirs {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.dir.is_none() => continue,
                Err(cause) => return Err(ConfError::Read { path: dir, cause }),
            };
            let mut names: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
                .collect();
            names.sort();
            for p in names {
                out.merge_path(&p, true)?;
            }
        }
        if let Some(cache) = Self::alias_cache() {
            out.merge_alias_cache(&cache);
        }
        Ok(out)
    }
}

fn read(path: &Path, required: bool) -> Result<Option<String>, ConfError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(cause) => Err(ConfError::Read { path: path.to_path_buf(), cause }),
    }
}

/// A registry host[:port] ([`crate::imgref::is_registry_host`], after lower-casing): a word
/// without a `.` or a port would be read as a Docker Hub namespace (`mirror/app` is
/// `docker.io/mirror/app`).
fn valid_host(h: &str) -> bool {
    crate::imgref::is_registry_host(&h.to_ascii_lowercase())
}

/// The host part of a location or prefix lower-cased (DNS names are case-insensitive; references
/// are compared lower-cased).
fn lower_host(l: &str) -> String {
    match l.split_once('/') {
        Some((h, rest)) => format!("{}/{rest}", h.to_ascii_lowercase()),
        None => l.to_ascii_lowercase(),
    }
}

/// `host[:port][/path…][:tag|@digest]` (no scheme).
fn valid_location(l: &str) -> bool {
    let host = l.split('/').next().unwrap_or_default();
    valid_host(host) && !l.contains("://") && !l.chars().any(char::is_whitespace) && !l.ends_with('/')
}

impl Registries {
    /// Reads the files `opts` names (see the module doc).
    pub fn load(opts: &Options) -> Result<Self, ConfError> {
        opts.load()
    }

    /// Parses and merges one file's content (for tests and `load`).
    pub fn merge_text(&mut self, path: &Path, text: &str) -> Result<(), ConfError> {
        let f = conf::parse(path, text)?;
        let file = path.to_path_buf();
        let invalid = |prefix: Option<&str>, message: String| ConfError::Invalid {
            origin: Origin { file: file.clone(), prefix: prefix.map(str::to_string) },
            message,
        };
        if let Some(list) = f.unqualified_search_registries {
            if let Some(bad) = list.iter().find(|r| !valid_host(r)) {
                return Err(invalid(
                    None,
                    format!("unqualified-search-registries: {bad:?} is not a registry host[:port]"),
                ));
            }
            self.search = Some(Sourced { value: list, file: file.clone() });
        }
        if let Some(m) = f.short_name_mode.filter(|m| !m.is_empty()) {
            let value = match m.as_str() {
                "enforcing" => ShortNameMode::Enforcing,
                "permissive" => ShortNameMode::Permissive,
                "disabled" => ShortNameMode::Disabled,
                other => {
                    return Err(invalid(
                        None,
                        format!("short-name-mode = {other:?}: expected \"enforcing\", \"permissive\" or \"disabled\""),
                    ));
                }
            };
            self.mode = Some(Sourced { value, file: file.clone() });
        }
        if let Some(h) = f.credential_helpers {
            if let Some(bad) = h.iter().find(|n| n.is_empty() || n.contains('/')) {
                return Err(invalid(None, format!("credential-helpers: {bad:?} is not a helper name")));
            }
            self.credential_helpers = Some(Sourced { value: h, file: file.clone() });
        }
        let mut seen: Vec<String> = Vec::new();
        for raw in f.registry {
            let prefix = match (&raw.prefix, &raw.location) {
                (Some(p), _) if !p.is_empty() => lower_host(p),
                (_, Some(l)) if !l.is_empty() => lower_host(l),
                _ => return Err(invalid(None, "a [[registry]] table with neither prefix nor location".into())),
            };
            let bad = |m: String| invalid(Some(&prefix), m);
            let wildcard = prefix.strip_prefix("*.");
            match wildcard {
                Some(domain) if !valid_host(&format!("x.{domain}")) || domain.contains(':') || domain.contains('*') => {
                    return Err(bad("a wildcard prefix is *.DOMAIN, with nothing after the domain".into()));
                }
                None if prefix.contains('*') || !valid_location(&prefix) => {
                    return Err(bad("prefix is not host[:port][/namespace…][/repo][:tag|@digest]".into()));
                }
                _ => {}
            }
            let location = raw.location.filter(|l| !l.is_empty()).map(|l| lower_host(&l));
            if let Some(l) = &location {
                if wildcard.is_some() {
                    return Err(bad(format!("location = {l:?}: a wildcard prefix cannot be relocated")));
                }
                if !valid_location(l) {
                    return Err(bad(format!("location = {l:?} is not host[:port][/namespace…] (no scheme)")));
                }
            }
            let mut mirrors = Vec::new();
            for m in raw.mirror {
                if !valid_location(&m.location) {
                    return Err(bad(format!(
                        "mirror location = {:?} is not host[:port][/namespace…] (no scheme)",
                        m.location
                    )));
                }
                let pull_from = match m.pull_from_mirror.as_deref() {
                    None | Some("") | Some("all") => PullFrom::All,
                    Some("digest-only") => PullFrom::DigestOnly,
                    Some("tag-only") => PullFrom::TagOnly,
                    Some(other) => {
                        return Err(bad(format!(
                            "mirror {:?}: pull-from-mirror = {other:?}: expected \"all\", \"digest-only\" or \"tag-only\"",
                            m.location
                        )));
                    }
                };
                if raw.mirror_by_digest_only && m.pull_from_mirror.as_deref().is_some_and(|v| !v.is_empty()) {
                    return Err(bad(format!(
                        "mirror {:?}: pull-from-mirror cannot be combined with the table's mirror-by-digest-only",
                        m.location
                    )));
                }
                let pull_from = if raw.mirror_by_digest_only { PullFrom::DigestOnly } else { pull_from };
                mirrors.push(Mirror { location: lower_host(&m.location), insecure: m.insecure, pull_from });
            }
            if seen.contains(&prefix) {
                return Err(bad("this prefix is defined twice in the file".into()));
            }
            seen.push(prefix.clone());
            // As containers/image (and so podman and skopeo) insist: only a wildcard table may
            // leave the location out.
            let location = match (location, wildcard) {
                (Some(l), _) => Some(l),
                (None, Some(_)) => None,
                (None, None) => {
                    return Err(bad("location is unset; only a *.DOMAIN prefix may omit it (write location = \"…\", usually the prefix itself)".into()));
                }
            };
            let reg = Registry {
                location,
                insecure: raw.insecure,
                blocked: raw.blocked,
                mirrors,
                origin: Origin { file: file.clone(), prefix: Some(prefix.clone()) },
                prefix,
            };
            match self.registries.iter_mut().find(|r| r.prefix == reg.prefix) {
                Some(old) => *old = reg,
                None => self.registries.push(reg),
            }
        }
        self.merge_alias_table(path, f.aliases)?;
        self.files.push(file);
        Ok(())
    }

    fn merge_path(&mut self, path: &Path, required: bool) -> Result<(), ConfError> {
        match read(path, required)? {
            Some(text) => self.merge_text(path, &text),
            None => Ok(()),
        }
    }

    /// The machine-written aliases file: only `[aliases]` is read.
    /// The machine-written aliases file: only its valid `[aliases]` entries are read. It is
    /// shared with podman and written by programs, so a bad entry or a damaged file is skipped
    /// with a warning instead of stopping every pull.
    fn merge_alias_cache(&mut self, path: &Path) {
        let (aliases, warnings) = shortnames::read_alias_cache(path);
        self.warnings.extend(warnings);
        if let Some(aliases) = aliases {
            for (name, value) in aliases {
                self.aliases.insert(name, Sourced { value, file: path.to_path_buf() });
            }
            self.files.push(path.to_path_buf());
        }
    }

    fn merge_alias_table(&mut self, path: &Path, aliases: BTreeMap<String, String>) -> Result<(), ConfError> {
        for (name, value) in aliases {
            let origin = || Origin { file: path.to_path_buf(), prefix: None };
            if !shortnames::is_short_name(&name) {
                let message = format!("alias {name:?}: an alias name is a short name (no registry, tag or digest)");
                return Err(ConfError::Invalid { origin: origin(), message });
            }
            if value.is_empty() {
                self.aliases.remove(&name);
                continue;
            }
            if !shortnames::is_alias_target(&value) {
                let message = format!(
                    "alias {name:?} = {value:?}: the value must be a fully-qualified name without tag or digest (host/repo)"
                );
                return Err(ConfError::Invalid { origin: origin(), message });
            }
            self.aliases.insert(name, Sourced { value, file: path.to_path_buf() });
        }
        Ok(())
    }

    /// The `[[registry]]` table whose prefix matches `r` longest (on a tie, an exact prefix before
    /// a wildcard, then the first defined, as containers/image keeps it).
    pub fn find(&self, r: &RegistryRef) -> Option<&Registry> {
        let full = r.to_string();
        let mut best: Option<&Registry> = None;
        for reg in self.registries.iter().filter(|reg| matches(&full, &r.registry, &reg.prefix)) {
            let key = |x: &Registry| (x.prefix.len(), !x.prefix.starts_with("*."));
            if best.is_none_or(|b| key(reg) > key(b)) {
                best = Some(reg);
            }
        }
        best
    }

    /// A `blocked` table that covers `r`: the one that applies, or one whose host-only prefix
    /// names `r`'s host on any port (`blocked` for `example.com` also holds for
    /// `example.com:443/…`).
    fn blocked_by(&self, r: &RegistryRef) -> Option<&Registry> {
        if let Some(reg) = self.find(r).filter(|reg| reg.blocked) {
            return Some(reg);
        }
        let (host, port) = split_port(&r.registry);
        port?;
        let mut bare = r.clone();
        bare.registry = host.to_string();
        let full = bare.to_string();
        self.registries.iter().find(|reg| reg.blocked && !reg.prefix.contains(':') && matches(&full, host, &reg.prefix))
    }

    /// Where to pull `r` from, in order: the mirrors that apply, then the primary. Refuses blocked
    /// references.
    pub fn plan(&self, r: &RegistryRef) -> Result<Vec<Endpoint>, ConfError> {
        if let Some(reg) = self.blocked_by(r) {
            return Err(ConfError::Blocked { image: r.to_string(), origin: reg.origin.clone() });
        }
        let Some(reg) = self.find(r) else {
            return Ok(vec![Endpoint { reference: r.clone(), insecure: false, mirror: false }]);
        };
        let full = r.to_string();
        // What the prefix matched: the prefix itself, or for a wildcard the reference's host.
        let matched = if reg.prefix.starts_with("*.") { r.registry.len() } else { reg.prefix.len() };
        let rewrite = |location: &str| -> Result<RegistryRef, ConfError> {
            let text = format!("{location}{}", &full[matched..]);
            let bad = |why: String| ConfError::Invalid {
                origin: reg.origin.clone(),
                message: format!("{r} rewritten to {text:?} {why}"),
            };
            let parsed = RegistryRef::parse(&text).map_err(|e| bad(format!("is not a valid reference: {e}")))?;
            // Never somewhere else than the location says (a reference normalised onto Docker Hub).
            let host = location.split('/').next().unwrap_or(location);
            if parsed.registry != host || parsed.to_string() != text {
                return Err(bad(format!("would be read as {parsed}, not on {host}")));
            }
            Ok(parsed)
        };
        let mut endpoints = Vec::new();
        // A wildcard table has no location of its own: its mirrors replace the host.
        for m in &reg.mirrors {
            let wanted = match m.pull_from {
                PullFrom::All => true,
                PullFrom::DigestOnly => r.digest.is_some(),
                PullFrom::TagOnly => r.digest.is_none(),
            };
            if wanted {
                let reference = rewrite(&m.location)?;
                endpoints.push(Endpoint { reference, insecure: m.insecure, mirror: true });
            }
        }
        let primary = match &reg.location {
            Some(l) => rewrite(l)?,
            None => r.clone(),
        };
        endpoints.push(Endpoint { reference: primary, insecure: reg.insecure, mirror: false });
        Ok(endpoints)
    }

    /// The short-name mode in force.
    pub fn mode(&self) -> ShortNameMode {
        self.mode.as_ref().map(|m| m.value).unwrap_or_default()
    }
}

/// `host[:port]` split (IPv6 `[::1]:5000` included).
fn split_port(host: &str) -> (&str, Option<&str>) {
    match host.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (host, None),
    }
}

/// Whether `prefix` matches the reference `full` (`host/repo[:tag][@digest]`) whose host is `host`.
fn matches(full: &str, host: &str, prefix: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let h = host.split(':').next().unwrap_or(host);
        return h.len() > domain.len() + 1 && h.ends_with(domain) && h[..h.len() - domain.len()].ends_with('.');
    }
    let Some(rest) = full.strip_prefix(prefix) else { return false };
    match rest.bytes().next() {
        None | Some(b'/') | Some(b'@') => true,
        // After a repository path `:` starts a tag; after a bare host it would be a port.
        Some(b':') => prefix.contains('/'),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
