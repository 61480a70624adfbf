//! One containers-registries.conf(5) file, version 2, parsed strictly.
//!
//! ```toml
//! unqualified-search-registries = ["registry.fedoraproject.org", "quay.io"]
//! short-name-mode = "enforcing"            # enforcing | permissive | disabled
//! credential-helpers = ["containers-auth.json", "pass"]
//!
//! [[registry]]
//! prefix = "example.com/foo"                # host[:port][/path…][:tag|@digest] or *.domain
//! location = "internal.example.net/bar"     # where the prefix-rooted namespace really is
//! insecure = false                          # plain HTTP and unverified TLS allowed
//! blocked = false                           # pulls of matching names refused
//! mirror-by-digest-only = false
//! [[registry.mirror]]
//! location = "mirror.local:5000/foo"
//! insecure = true
//! pull-from-mirror = "all"                  # all | digest-only | tag-only
//!
//! [aliases]
//! "etcd" = "quay.io/coreos/etcd"
//! ```
//! Any other key is an error naming the file, the line and the key (containers/image only warns;
//! hoist refuses to half-understand where images come from). A version-1 file (its
//! `[registries.search|insecure|block]` tables) is refused with a message saying how to rewrite it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct File {
    pub unqualified_search_registries: Option<Vec<String>>,
    pub short_name_mode: Option<String>,
    pub credential_helpers: Option<Vec<String>>,
    /// Accepted for compatibility; hoist has no additional layer store.
    #[allow(dead_code)]
    pub additional_layer_store_auth_helper: Option<String>,
    #[serde(default)]
    pub registry: Vec<RawRegistry>,
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Only to recognise (and refuse) version-1 files.
    #[serde(default)]
    registries: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawRegistry {
    pub prefix: Option<String>,
    pub location: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub mirror_by_digest_only: bool,
    #[serde(default)]
    pub mirror: Vec<RawMirror>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawMirror {
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
    pub pull_from_mirror: Option<String>,
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Parses `text` (the content of `path`).
pub(super) fn parse(path: &Path, text: &str) -> Result<File, ConfError> {
    let file: File = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
        ConfError::Syntax { path: path.to_path_buf(), line, message }
    })?;
    if file.registries.is_some() {
        let line = text.lines().position(|l| l.trim_start().starts_with("[registries")).map(|i| i + 1);
        return Err(ConfError::Syntax {
            path: path.to_path_buf(),
            line,
            message: "a version-1 file ([registries.search], [registries.insecure], [registries.block]); hoist reads \
                      version 2 only: write unqualified-search-registries = […] and one [[registry]] table with \
                      insecure = true or blocked = true per registry (containers-registries.conf(5))"
                .into(),
        });
    }
    Ok(file)
}

/// Where a setting came from (for messages): `FILE` or `FILE: [[registry]] prefix = "…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub prefix: Option<String>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.prefix {
            Some(p) => write!(f, "{} ([[registry]] prefix = {p:?})", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("/etc/containers/registries.conf"), text).unwrap_err().to_string()
    }

    #[test]
    fn strict_errors_name_file_line_and_key() {
        assert_eq!(
            err("unqualified-search-registries = [\"a.io\"]\n[[registry]]\nprefix = \"x.io\"\nlocaton = \"y.io\"\n"),
            "/etc/containers/registries.conf:4: unknown field `locaton`, expected one of `prefix`, `location`, \
             `insecure`, `blocked`, `mirror-by-digest-only`, `mirror`"
        );
        assert_eq!(
            err("[[registry]]\nprefix = \"x.io\"\ninsecure = \"yes\"\n"),
            "/etc/containers/registries.conf:3: invalid type: string \"yes\", expected a boolean"
        );
        assert!(err("[[registry]\n").starts_with("/etc/containers/registries.conf:1: "), "{}", err("[[registry]\n"));
        let v1 = err("# old\n[registries.search]\nregistries = ['docker.io']\n");
        assert!(v1.starts_with("/etc/containers/registries.conf:2: a version-1 file"), "{v1}");
    }
}
