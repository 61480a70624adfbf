//! Where an image's signatures are: containers-registries.d(5).
//!
//! The directory is `--registries.d DIR`, else `$HOME/.config/containers/registries.d` when it
//! exists, else `/etc/containers/registries.d` (a missing directory means no configuration).
//! Every `*.yaml` file in it is read; a `default-docker` section or a `docker` namespace defined
//! in two files is an error naming both (as in containers/image). Unknown keys are ignored, as
//! containers/image ignores them.
//!
//! For a docker reference the most specific `docker` namespace that sets a value wins (the
//! reference's identity `host/repo:tag`, then `host/repo`, each parent namespace, the host and its
//! `*.domain` wildcards: [`docker_scopes`], shared with the policy lookup), then `default-docker`:
//! - `lookaside` (or its old name `sigstore`) is the base URL of simple signatures; the built-in
//!   default is `file:///var/lib/containers/sigstore` for root and
//!   `file://$HOME/.local/share/containers/sigstore` for anyone else. Signature N (from 1) of a
//!   manifest is at `BASE/<repository path>@sha256=<hex>/signature-N`; the first missing one ends
//!   the list. `lookaside-staging` (or `sigstore-staging`) is for writers only (`hoist push
//!   --sign-by` writes there when it is set) and never read.
//! - `use-sigstore-attachments: true` makes the registry's `sha256-<hex>.sig` manifest a source of
//!   sigstore signatures too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::policy::docker_scopes;
use crate::digest::Digest;
use crate::imgref::RegistryRef;

pub const SYSTEM_DIR: &str = "/etc/containers/registries.d";
/// Most simple signatures read per image (containers/image's limit).
pub const MAX_SIGNATURES: usize = 128;
/// Largest signature blob read (containers/image's `MaxSignatureBodySize`).
pub const MAX_SIGNATURE_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error("registries.d {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("registries.d: {what} is defined both in {first} and {second}")]
    Twice { what: String, first: PathBuf, second: PathBuf },
    #[error("registries.d {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Default, Clone, Deserialize)]
struct Namespace {
    #[serde(default)]
    lookaside: Option<String>,
    #[serde(default)]
    sigstore: Option<String>,
    #[serde(default, rename = "use-sigstore-attachments")]
    use_sigstore_attachments: Option<bool>,
    #[serde(default, rename = "lookaside-staging")]
    lookaside_staging: Option<String>,
    #[serde(default, rename = "sigstore-staging")]
    sigstore_staging: Option<String>,
}

impl Namespace {
    fn lookaside(&self) -> Option<&str> {
        self.lookaside.as_deref().or(self.sigstore.as_deref()).filter(|s| !s.is_empty())
    }

    fn staging(&self) -> Option<&str> {
        self.lookaside_staging.as_deref().or(self.sigstore_staging.as_deref()).filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default, rename = "default-docker")]
    default_docker: Option<Namespace>,
    #[serde(default)]
    docker: Option<BTreeMap<String, Namespace>>,
}

/// The merged registries.d configuration.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The directory read (for messages).
    pub dir: PathBuf,
    default_docker: Option<Namespace>,
    docker: BTreeMap<String, Namespace>,
}

/// Where one image's signatures are looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// Base URL of simple signatures, already extended by the repository path.
    pub lookaside: String,
    pub sigstore_attachments: bool,
}

impl Lookup {
    /// The URL of simple signature `n` (from 1) of `manifest`.
    pub fn signature_url(&self, manifest: &Digest, n: usize) -> String {
        format!("{}@sha256={}/signature-{n}", self.lookaside, manifest.hex())
    }
}

/// The directory used when `--registries.d` is not given.
pub fn default_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("HOME") {
        let user = Path::new(&home).join(".config/containers/registries.d");
        if user.exists() {
            return user;
        }
    }
    PathBuf::from(SYSTEM_DIR)
}

impl Sources {
    /// Reads `dir` (or the default directory).
    pub fn load(dir: Option<&Path>) -> Result<Sources, SourcesError> {
        let dir = dir.map(Path::to_path_buf).unwrap_or_else(default_dir);
        let mut out = Sources { dir: dir.clone(), ..Default::default() };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => return Err(SourcesError::Read { path: dir, source }),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        let mut default_from: Option<PathBuf> = None;
        let mut ns_from: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in files {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(SourcesError::Read { path, source }),
            };
            let file: File = if text.trim().is_empty() {
                File::default()
            } else {
                serde_yaml_ng::from_str(&text)
                    .map_err(|e| SourcesError::Invalid { path: path.clone(), reason: e.to_string() })?
            };
            if let Some(d) = file.default_docker {
                if let Some(first) = &default_from {
                    let (first, second) = (first.clone(), path);
                    return Err(SourcesError::Twice { what: "default-docker".into(), first, second });
                }
                out.default_docker = Some(d);
                default_from = Some(path.clone());
            }
            for (name, ns) in file.docker.unwrap_or_default() {
                if let Some(first) = ns_from.get(&name) {
                    let what = format!("docker namespace {name:?}");
                    return Err(SourcesError::Twice { what, first: first.clone(), second: path });
                }
                ns_from.insert(name.clone(), path.clone());
                out.docker.insert(name, ns);
            }
        }
        Ok(out)
    }

    /// Where the signatures of `r` are.
    pub fn lookup(&self, r: &RegistryRef) -> Lookup {
        let scopes = docker_scopes(r);
        let chain: Vec<&Namespace> =
            scopes.iter().filter_map(|s| self.docker.get(s)).chain(self.default_docker.as_ref()).collect();
        let base = chain
            .iter()
            .find_map(|ns| ns.lookaside())
            .map(|s| s.trim_end_matches('/').to_string())
            .unwrap_or_else(builtin_lookaside);
        let sigstore_attachments = chain.iter().find_map(|ns| ns.use_sigstore_attachments).unwrap_or(false);
        Lookup { lookaside: format!("{base}/{}", r.repository), sigstore_attachments }
    }
}

impl Sources {
    /// Where signatures of `r` are written (`hoist push --sign-by`): the most specific
    /// `lookaside-staging` (or `sigstore-staging`), else the lookaside readers use.
    pub fn write_base(&self, r: &RegistryRef) -> String {
        let scopes = docker_scopes(r);
        let chain: Vec<&Namespace> =
            scopes.iter().filter_map(|s| self.docker.get(s)).chain(self.default_docker.as_ref()).collect();
        let base = chain
            .iter()
            .find_map(|ns| ns.staging().or(ns.lookaside()))
            .map(|s| s.trim_end_matches('/').to_string())
            .unwrap_or_else(builtin_lookaside);
        format!("{base}/{}", r.repository)
    }
}

fn builtin_lookaside() -> String {
    if rustix::process::geteuid().is_root() {
        "file:///var/lib/containers/sigstore".to_string()
    } else {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("file://{home}/.local/share/containers/sigstore")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RegistryRef {
        RegistryRef::parse(s).unwrap()
    }

    #[test]
    fn scopes_most_specific_first() {
        assert_eq!(
            docker_scopes(&r("reg.example.com:5000/team/app:1.0")),
            [
                "reg.example.com:5000/team/app:1.0",
                "reg.example.com:5000/team/app",
                "reg.example.com:5000/team",
                "reg.example.com:5000",
                "*.example.com",
                "*.com"
            ]
        );
        assert_eq!(
            docker_scopes(&r("busybox")),
            ["docker.io/library/busybox:latest", "docker.io/library/busybox", "docker.io/library", "docker.io", "*.io"]
        );
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(docker_scopes(&r(&format!("localhost:5000/app@{d}")))[0], format!("localhost:5000/app@{d}"));
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn most_specific_namespace_wins_then_default() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.yaml", "default-docker:\n  lookaside: https://sigs.example.com/\n");
        write(
            d.path(),
            "b.yaml",
            "docker:\n  reg.example.com/team:\n    lookaside: file:///srv/sigs\n    use-sigstore-attachments: true\n  reg.example.com/team/app:\n    sigstore: file:///old\n",
        );
        write(d.path(), "ignored.yml", "default-docker: {lookaside: file:///never}\n");
        let s = Sources::load(Some(d.path())).unwrap();
        let l = s.lookup(&r("reg.example.com/team/app:1"));
        assert_eq!(l, Lookup { lookaside: "file:///old/team/app".into(), sigstore_attachments: true });
        let l = s.lookup(&r("reg.example.com/team/other:1"));
        assert_eq!(l.lookaside, "file:///srv/sigs/team/other");
        let l = s.lookup(&r("quay.io/x/y:1"));
        assert_eq!(l, Lookup { lookaside: "https://sigs.example.com/x/y".into(), sigstore_attachments: false });
        let dg: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
        assert_eq!(
            l.signature_url(&dg, 2),
            "https://sigs.example.com/x/y@sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/signature-2"
        );
    }

    #[test]
    fn twice_defined_is_an_error_naming_both_files() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.yaml", "docker:\n  quay.io: {lookaside: file:///a}\n");
        write(d.path(), "b.yaml", "docker:\n  quay.io: {lookaside: file:///b}\n");
        let e = Sources::load(Some(d.path())).unwrap_err().to_string();
        assert!(e.contains("\"quay.io\"") && e.contains("a.yaml") && e.contains("b.yaml"), "{e}");
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.yaml", "default-docker: {lookaside: file:///a}\n");
        write(d.path(), "b.yaml", "default-docker: {lookaside: file:///b}\n");
        assert!(Sources::load(Some(d.path())).unwrap_err().to_string().contains("default-docker is defined both"));
        write(d.path(), "b.yaml", "docker: [1, 2\n");
        assert!(Sources::load(Some(d.path())).unwrap_err().to_string().starts_with("registries.d "));
    }

    #[test]
    fn missing_directory_is_no_configuration() {
        let s = Sources::load(Some(Path::new("/nonexistent/registries.d"))).unwrap();
        assert!(!s.lookup(&r("quay.io/x/y:1")).sigstore_attachments);
    }
}
