//! Desired state: one TOML file per container, `DIR/NAME.toml` (default
//! `/etc/hoist/containers`). The file's stem is the container's name (the one name rule of
//! `deploy::name`); files not ending in `.toml`, and hidden ones, are ignored.
//!
//! ```toml
//! image = "docker://registry.example.com/etcd:3.4"   # required: what `hoist install` takes
//! update = "tag"              # tag (default) | digest | manual: what `hoist update --all` does
//! runtime = "/usr/bin/crun"   # optional: an external OCI runtime instead of hoist's runner
//! enabled = true              # start at boot (default true)
//! started = true              # running now (default true)
//! after = ["flannel"]         # applied after these declared containers
//!
//! [set]                       # template values (`--set`); strings, integers or booleans
//! ETCD_PORT = 2379
//!
//! [health]                    # `--health-*` flags, same names (without the prefix)
//! cmd = "etcdctl endpoint health"
//! interval = "30s"
//! retries = 3
//! on-failure = "kill"         # none | kill | stop
//! ```
//!
//! Update policies: `tag` follows the reference's tag (`hoist update --all` and the update timer
//! move it); `manual` is left alone by `--all` (an explicit `hoist update NAME` moves it);
//! `digest` requires an image pinned by digest (`…@sha256:…`), which only a changed file moves.
//!
//! Every file is parsed and checked before anything is applied; an error names the file, the
//! line and the key.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::health::{HealthFlags, OnFailure};
use crate::imgref::{ImageArg, Source};

/// Where `hoist apply` reads the files unless told otherwise.
pub const DEFAULT_DIR: &str = "/etc/hoist/containers";

/// Largest file read (a declaration is a few hundred bytes).
const MAX_FILE: u64 = 1 << 20;

/// One container as a file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    pub name: String,
    pub file: PathBuf,
    pub image: String,
    pub policy: Policy,
    pub runtime: Option<PathBuf>,
    pub enabled: bool,
    pub started: bool,
    pub after: Vec<String>,
    pub sets: BTreeMap<String, String>,
    pub health: HealthFlags,
}

/// What `hoist update --all` does with a declared container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Follow the reference's tag.
    #[default]
    Tag,
    /// Pinned: the image is referenced by digest.
    Digest,
    /// Only an explicit `hoist update NAME`.
    Manual,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Tag => "tag",
            Policy::Digest => "digest",
            Policy::Manual => "manual",
        }
    }
}

/// A file that cannot be applied: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {}{reason}", file.display(), key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
pub struct FileError {
    pub file: PathBuf,
    /// 1-based; 1 when the problem is the file as a whole.
    pub line: usize,
    pub key: Option<String>,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchema {
    image: String,
    #[serde(default)]
    update: Policy,
    runtime: Option<PathBuf>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default = "yes")]
    started: bool,
    #[serde(default)]
    after: Vec<String>,
    #[serde(default)]
    set: BTreeMap<String, SetValue>,
    #[serde(default)]
    health: HealthSchema,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SetValue {
    Text(String),
    Integer(i64),
    Bool(bool),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct HealthSchema {
    cmd: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    start_period: Option<String>,
    retries: Option<u32>,
    on_failure: Option<OnFailure>,
    #[serde(default)]
    disabled: bool,
}

/// Reads every `*.toml` in `dir` (sorted by name). A missing directory declares nothing.
pub fn read_dir(dir: &Path) -> Result<Vec<Declared>, Vec<FileError>> {
    let whole = |reason: String| vec![FileError { file: dir.to_path_buf(), line: 1, key: None, reason }];
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(whole(e.to_string())),
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for e in entries {
        let e = e.map_err(|e| whole(e.to_string()))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".toml") && !name.starts_with('.') {
            files.push(e.path());
        }
    }
    files.sort();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match read_file(&f) {
            Ok(d) => out.push(d),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// Reads and checks one file.
pub fn read_file(file: &Path) -> Result<Declared, FileError> {
    let fail = |line: usize, key: Option<&str>, reason: String| FileError {
        file: file.to_path_buf(),
        line,
        key: key.map(str::to_string),
        reason,
    };
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let meta = fs::symlink_metadata(file).map_err(|e| fail(1, None, e.to_string()))?;
    if !meta.is_file() {
        return Err(fail(1, None, "not a regular file".into()));
    }
    if meta.len() > MAX_FILE {
        return Err(fail(1, None, format!("larger than {MAX_FILE} bytes")));
    }
    let text = fs::read_to_string(file).map_err(|e| fail(1, None, e.to_string()))?;
    parse(&stem, file, &text)
}

/// Parses the text of `file`, declaring the container `name`.
pub fn parse(name: &str, file: &Path, text: &str) -> Result<Declared, FileError> {
    let fail = |line: usize, key: Option<&str>, reason: String| FileError {
        file: file.to_path_buf(),
        line,
        key: key.map(str::to_string),
        reason,
    };
    crate::deploy::name::validate(name).map_err(|e| fail(1, None, format!("the file name: {e}")))?;
    let schema: FileSchema = toml::from_str(text).map_err(|e| {
        let missing = e.message().split_once("missing field `").and_then(|(_, r)| r.split_once('`')).map(|(k, _)| k);
        let line = if missing.is_some() { 1 } else { e.span().map_or(1, |s| line_at(text, s.start)) };
        let key = missing.map(str::to_string).or_else(|| e.span().and_then(|s| key_at(text, s.start)));
        fail(line, key.as_deref(), e.message().trim().to_string())
    })?;
    let at = |key: &str| line_of_key(text, key);

    let image = match ImageArg::parse(&schema.image) {
        Ok(a) => a,
        Err(e) => return Err(fail(at("image"), Some("image"), e.to_string())),
    };
    if schema.update == Policy::Digest {
        let pinned = matches!(&image, ImageArg::Source(Source::Registry(r)) if r.digest.is_some());
        if !pinned {
            return Err(fail(
                at("update"),
                Some("update"),
                "\"digest\" needs an image pinned by digest (docker://…@sha256:…)".into(),
            ));
        }
    }
    if let Some(r) = &schema.runtime
        && !r.is_absolute()
    {
        return Err(fail(at("runtime"), Some("runtime"), "not an absolute path".into()));
    }
    for a in &schema.after {
        if let Err(e) = crate::deploy::name::validate(a) {
            return Err(fail(at("after"), Some("after"), e.to_string()));
        }
        if a == name {
            return Err(fail(at("after"), Some("after"), "a container cannot come after itself".into()));
        }
    }
    let mut sets = BTreeMap::new();
    for (k, v) in schema.set {
        let v = match v {
            SetValue::Text(s) => s,
            SetValue::Integer(i) => i.to_string(),
            SetValue::Bool(b) => b.to_string(),
        };
        crate::deploy::values::parse_sets(&[format!("{k}={v}")])
            .map_err(|e| fail(at(&k), Some(&format!("set.{k}")), e.to_string()))?;
        sets.insert(k, v);
    }
    let h = schema.health;
    let health = HealthFlags {
        cmd: h.cmd,
        interval: h.interval,
        timeout: h.timeout,
        start_period: h.start_period,
        retries: h.retries,
        on_failure: h.on_failure,
        disabled: h.disabled,
    };
    if health.disabled && health.cmd.is_some() {
        return Err(fail(at("disabled"), Some("health.disabled"), "conflicts with health.cmd".into()));
    }
    if let Err(e) = health.validate() {
        return Err(fail(line_of_table(text, "health"), Some("health"), e.to_string()));
    }
    Ok(Declared {
        name: name.to_string(),
        file: file.to_path_buf(),
        image: schema.image,
        policy: schema.update,
        runtime: schema.runtime,
        enabled: schema.enabled,
        started: schema.started,
        after: schema.after,
        sets,
        health,
    })
}

/// 1-based line of byte `offset`.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The key of the `key = value` line holding byte `offset`, if it is one.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    let (k, _) = line.split_once('=')?;
    let k = k.trim().trim_matches('"');
    (!k.is_empty() && !k.starts_with('[') && !k.starts_with('#')).then(|| k.to_string())
}

/// Line of the first `key = …` (1 when not found).
fn line_of_key(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .or_else(|| l.strip_prefix(&format!("\"{key}\"")))
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}

/// Line of the `[table]` header (1 when not found).
fn line_of_table(text: &str, table: &str) -> usize {
    text.lines().position(|l| l.trim() == format!("[{table}]")).map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Declared, FileError> {
        parse("etcd", Path::new("/etc/hoist/containers/etcd.toml"), text)
    }

    #[test]
    fn a_full_file_parses() {
        let d = p(r#"
image = "docker://registry.example.com/etcd:3.4"
update = "manual"
runtime = "/usr/bin/crun"
enabled = false
after = ["flannel"]

[set]
ETCD_PORT = 2379
DEBUG = true
NODE = "node1"

[health]
cmd = "true"
interval = "30s"
retries = 3
on-failure = "kill"
"#)
        .unwrap();
        assert_eq!(d.name, "etcd");
        assert_eq!(d.image, "docker://registry.example.com/etcd:3.4");
        assert_eq!(d.policy, Policy::Manual);
        assert_eq!(d.runtime.as_deref(), Some(Path::new("/usr/bin/crun")));
        assert!(!d.enabled);
        assert!(d.started);
        assert_eq!(d.after, vec!["flannel".to_string()]);
        let sets: Vec<(&str, &str)> = d.sets.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(sets, vec![("DEBUG", "true"), ("ETCD_PORT", "2379"), ("NODE", "node1")]);
        assert_eq!(d.health.cmd.as_deref(), Some("true"));
        assert_eq!(d.health.interval.as_deref(), Some("30s"));
        assert_eq!(d.health.retries, Some(3));
        assert_eq!(d.health.on_failure, Some(OnFailure::Kill));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let cases = [
            ("image = \"docker://r/e:1\"\nimgae = \"x\"\n", 2, Some("imgae"), "unknown field `imgae`"),
            ("image = \"docker://r/e:1\"\nstarted = \"yes\"\n", 2, Some("started"), "invalid type"),
            ("update = \"tag\"\n", 1, Some("image"), "missing field `image`"),
            ("image = \"docker://r/e:1\"\nupdate = \"digest\"\n", 2, Some("update"), "pinned by digest"),
            ("image = \"docker://r/e:1\"\nupdate = \"sometimes\"\n", 2, Some("update"), "unknown variant"),
            ("image = \"docker://r/e:1\"\nruntime = \"crun\"\n", 2, Some("runtime"), "absolute"),
            ("image = \"docker://r/e:1\"\nafter = [\"etcd\"]\n", 2, Some("after"), "after itself"),
            ("image = \"docker://r/e:1\"\n[set]\n9X = \"1\"\n", 3, Some("set.9X"), "9X"),
            ("image = \"docker://r/e:1\"\n[health]\ninterval = \"soon\"\n", 2, Some("health"), "soon"),
            ("image = \"docker://r/e:1\"\n[health]\ncolor = 1\n", 3, Some("color"), "unknown field `color`"),
            ("image = \"\"\n", 1, Some("image"), ""),
        ];
        for (text, line, key, part) in cases {
            let e = p(text).expect_err(text);
            assert_eq!(e.file, Path::new("/etc/hoist/containers/etcd.toml"), "{text}");
            assert_eq!((e.line, e.key.as_deref()), (line, key), "{text}: {e}");
            assert!(e.reason.contains(part), "{text}: {e}");
            assert!(e.to_string().starts_with(&format!("/etc/hoist/containers/etcd.toml:{line}: ")), "{e}");
        }
    }

    #[test]
    fn the_file_name_is_the_container_name() {
        let e = parse("-x", Path::new("/d/-x.toml"), "image = \"docker://r/e:1\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/d/-x.toml:1: the file name: invalid container name \"-x\": must not start with '-' or '.'"
        );
    }

    #[test]
    fn a_pinned_image_may_use_the_digest_policy() {
        let d = p("image = \"docker://r/e@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\nupdate = \"digest\"\n").unwrap();
        assert_eq!(d.policy, Policy::Digest);
    }
}
