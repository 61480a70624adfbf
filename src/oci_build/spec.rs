//! Image specs: `images/<name>/image.json`, the recipe `make images` packs into OCI archives.
//!
//! ```json
//! {
//!   "compression": "gzip",                  // gzip (default) | zstd | none
//!   "config": { "Cmd": ["/bin/sh"], "Labels": {"k": "v"} },   // the image config's "config"
//!   "layers": [[ op, op, … ], …]            // bottom layer first
//! }
//! ```
//! Ops (paths inside the image are absolute; `tree` sources are relative to the spec file):
//! `{"busybox": "/bin/busybox"}` the host's static busybox plus one symlink per applet next to it;
//! `{"copy": HOST, "to": PATH, "libs": true}` a host file (with the shared libraries `ldd` names);
//! `{"tree": DIR, "to": PATH}` a directory of the source tree; `{"dir": PATH, "mode": "0755"}`;
//! `{"file": PATH, "content": TEXT, "mode": "0644"}`; `{"symlink": PATH, "target": T}`;
//! `{"hardlink": PATH, "target": T}`; `{"whiteout": PATH}`; `{"opaque": DIR}`; `{"fifo": PATH}`.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::{Compress, ImageBuilder, LayerBuilder};

#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", spec.display())]
pub struct SpecError {
    pub spec: PathBuf,
    pub reason: String,
}

/// Reads a spec and builds its layers and config.
pub fn build(spec_path: &Path) -> Result<ImageBuilder, SpecError> {
    let err = |reason: String| SpecError { spec: spec_path.to_path_buf(), reason };
    let text = fs::read_to_string(spec_path).map_err(|e| err(e.to_string()))?;
    let spec: Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    let base = spec_path.parent().unwrap_or(Path::new("."));
    let mut layers = Vec::new();
    for (i, ops) in spec["layers"].as_array().ok_or_else(|| err("no \"layers\" array".into()))?.iter().enumerate() {
        let mut b = LayerBuilder::new();
        let mut seen = BTreeSet::new();
        for op in ops.as_array().ok_or_else(|| err(format!("layer {i} is not an array")))? {
            apply(&mut b, &mut seen, base, op).map_err(|e| err(format!("layer {i}: {op}: {e}")))?;
        }
        layers.push(b.finish());
    }
    let mut img = ImageBuilder::new(layers, spec.get("config").cloned().unwrap_or(Value::Object(Default::default())));
    img.compression = match spec.get("compression").and_then(Value::as_str).unwrap_or("gzip") {
        "gzip" => Compress::Gzip,
        "zstd" => Compress::Zstd,
        "none" => Compress::None,
        other => return Err(err(format!("unknown compression {other:?}"))),
    };
    Ok(img)
}

fn mode(op: &Value, default: u32) -> Result<u32, String> {
    match op.get("mode").and_then(Value::as_str) {
        Some(m) => u32::from_str_radix(m, 8).map_err(|_| format!("bad mode {m:?}")),
        None => Ok(default),
    }
}

fn s<'a>(op: &'a Value, key: &str) -> Result<&'a str, String> {
    op.get(key).and_then(Value::as_str).ok_or_else(|| format!("missing \"{key}\""))
}

/// Adds parent directories once (mode 0755), so layers look like `docker build` output.
fn parents(b: &mut LayerBuilder, seen: &mut BTreeSet<String>, path: &str) {
    let p = Path::new(path.trim_start_matches('/'));
    let mut acc = PathBuf::new();
    for c in p.parent().into_iter().flat_map(|p| p.components()) {
        acc.push(c);
        let key = acc.to_string_lossy().into_owned();
        if seen.insert(key.clone()) {
            b.dir(&key, 0o755);
        }
    }
}

fn add_host_file(
    b: &mut LayerBuilder,
    seen: &mut BTreeSet<String>,
    host: &Path,
    to: &str,
    mode_override: Option<u32>,
) -> Result<(), String> {
    let data = fs::read(host).map_err(|e| format!("{}: {e}", host.display()))?;
    let m = match mode_override {
        Some(m) => m,
        None => fs::metadata(host).map_err(|e| e.to_string())?.permissions().mode() & 0o7777,
    };
    parents(b, seen, to);
    if seen.insert(to.trim_start_matches('/').to_string()) {
        b.file(to, &data, m);
    }
    Ok(())
}

/// Shared libraries of a dynamic executable, as `ldd` resolves them.
fn libs(host: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd").arg(host).output().map_err(|e| format!("ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    Ok(text.lines().filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')).map(PathBuf::from)).collect())
}

fn apply(b: &mut LayerBuilder, seen: &mut BTreeSet<String>, base: &Path, op: &Value) -> Result<(), String> {
    if let Some(bb) = op.get("busybox").and_then(Value::as_str) {
        add_host_file(b, seen, Path::new("/bin/busybox"), bb, Some(0o755))?;
        let out = Command::new("/bin/busybox").arg("--list").output().map_err(|e| format!("busybox --list: {e}"))?;
        let dir = Path::new(bb).parent().unwrap_or(Path::new("/"));
        for applet in String::from_utf8_lossy(&out.stdout).lines().filter(|a| !a.is_empty() && *a != "busybox") {
            let p = dir.join(applet).to_string_lossy().into_owned();
            if seen.insert(p.trim_start_matches('/').to_string()) {
                b.symlink(&p, "busybox");
            }
        }
    } else if let Some(host) = op.get("copy").and_then(Value::as_str) {
        let to = op.get("to").and_then(Value::as_str).unwrap_or(host);
        let m = op.get("mode").map(|_| mode(op, 0o755)).transpose()?;
        add_host_file(b, seen, Path::new(host), to, m)?;
        if op.get("libs").and_then(Value::as_bool).unwrap_or(false) {
            for lib in libs(Path::new(host))? {
                add_host_file(b, seen, &lib, &lib.to_string_lossy(), None)?;
            }
        }
    } else if let Some(dir) = op.get("tree").and_then(Value::as_str) {
        let to = s(op, "to")?;
        add_tree(b, seen, &base.join(dir), to)?;
    } else if let Some(p) = op.get("dir").and_then(Value::as_str) {
        parents(b, seen, p);
        seen.insert(p.trim_start_matches('/').to_string());
        b.dir(p, mode(op, 0o755)?);
    } else if let Some(p) = op.get("file").and_then(Value::as_str) {
        parents(b, seen, p);
        b.file(p, s(op, "content")?.as_bytes(), mode(op, 0o644)?);
    } else if let Some(p) = op.get("symlink").and_then(Value::as_str) {
        parents(b, seen, p);
        b.symlink(p, s(op, "target")?);
    } else if let Some(p) = op.get("hardlink").and_then(Value::as_str) {
        parents(b, seen, p);
        b.hardlink(p, s(op, "target")?);
    } else if let Some(p) = op.get("whiteout").and_then(Value::as_str) {
        parents(b, seen, p);
        b.whiteout(p);
    } else if let Some(p) = op.get("opaque").and_then(Value::as_str) {
        b.opaque(p);
    } else if let Some(p) = op.get("fifo").and_then(Value::as_str) {
        parents(b, seen, p);
        b.fifo(p);
    } else {
        return Err("unknown op".into());
    }
    Ok(())
}

fn add_tree(b: &mut LayerBuilder, seen: &mut BTreeSet<String>, src: &Path, to: &str) -> Result<(), String> {
    let mut entries: Vec<_> = fs::read_dir(src).map_err(|e| format!("{}: {e}", src.display()))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let dest = format!("{}/{}", to.trim_end_matches('/'), e.file_name().to_string_lossy());
        let ft = e.file_type().map_err(|e| e.to_string())?;
        if ft.is_dir() {
            parents(b, seen, &dest);
            if seen.insert(dest.trim_start_matches('/').to_string()) {
                b.dir(&dest, 0o755);
            }
            add_tree(b, seen, &e.path(), &dest)?;
        } else if ft.is_symlink() {
            parents(b, seen, &dest);
            let target = fs::read_link(e.path()).map_err(|e| e.to_string())?;
            b.symlink(&dest, &target.to_string_lossy());
        } else {
            // Executable bits from the source tree; everything else readable.
            let exec = fs::metadata(e.path()).map_err(|e| e.to_string())?.permissions().mode() & 0o111 != 0;
            add_host_file(b, seen, &e.path(), &dest, Some(if exec { 0o755 } else { 0o644 }))?;
        }
    }
    Ok(())
}
