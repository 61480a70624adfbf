//! `images info`: labels and the template variables an image's `/exports` expects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{ImagesError, Result, extracted_layers};
use crate::deploy::values;
use crate::digest::Digest;
use crate::fsutil::IoContext;
use crate::layers::ExtractOptions;
use crate::layers::paths::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::progress::Progress;
use crate::rooted::{self, Kind, RootDir};
use crate::store::Store;
use crate::template;

pub use crate::deploy::values::{FORCED as FORCED_VARIABLES, OVERRIDABLE as OVERRIDABLE_VARIABLES};

/// The template files of the image contract, under `/exports`.
pub const TEMPLATE_FILES: &[&str] = &["config.json.template", "service.template", "tmpfiles.template"];

#[derive(Debug, Serialize)]
pub struct Variables {
    /// `manifest.json` `defaultValues`.
    pub defaults: BTreeMap<String, String>,
    /// Used by the templates, with no default and not set by hoist: must be given with `--set`.
    pub required: Vec<String>,
    /// Every variable the templates use.
    pub used: Vec<String>,
    /// Used outside a JSON string in `config.json.template`: the value is JSON text inserted as
    /// it is (atomic's `$ADDTL_MOUNTS`), not a string.
    pub json_text: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ImageInfo {
    pub name: String,
    pub digest: Digest,
    pub source: Option<String>,
    /// What the signature policy accepted at the pull (null: not verified).
    pub verified: Option<crate::trust::Verified>,
    /// Where a registry image's bytes came from (`http://HOST/REPO (mirror)`).
    pub fetched_from: Option<String>,
    /// A remembered `--tls-verify=false` and what it means (null: none).
    pub remembered_tls: Option<&'static str>,
    pub created: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Whether the image has `/exports` (otherwise hoist generates the bundle and unit).
    pub exports: bool,
    /// Template files present under `/exports`.
    pub templates: Vec<String>,
    pub variables: Variables,
    /// The health check the image brings (its `/exports/manifest.json` `healthCheck`, else its
    /// config's Docker `Healthcheck`); null: none.
    pub health_check: Option<crate::health::HealthCheck>,
}

/// Largest `/exports` file hoist reads (templates, manifest.json, templated host files).
pub const MAX_EXPORT_FILE: u64 = 1 << 20;

/// What is at `rel` beneath `root`, not followed; a symlink in a parent component reads as
/// `Symlink` (it is never followed either).
fn kind_at(root: &RootDir, rel: &Path) -> Option<Kind> {
    match root.stat(rel) {
        Ok(s) => s.map(|s| Kind::of(&s)),
        Err(e) if rooted::is_symlink_error(&e) => Some(Kind::Symlink),
        Err(_) => None,
    }
}

/// Whether `rel` is overlayfs's whiteout (a character device 0/0) in this layer.
fn whiteout_device_at(root: &RootDir, rel: &Path) -> bool {
    matches!(root.stat(rel), Ok(Some(st)) if crate::layers::is_whiteout_device(&st))
}

/// Whether directory `rel` of this layer hides the lower layers' entries below it, in either
/// form (`.wh..wh..opq` marker, `trusted.overlay.opaque`).
fn opaque_at(root: &RootDir, rel: &Path) -> bool {
    if kind_at(root, &rel.join(OPAQUE_MARKER)).is_some() {
        return true;
    }
    root.open_at(rel, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY, 0)
        .is_ok_and(|fd| crate::layers::has_opaque_xattr(std::os::fd::AsFd::as_fd(&fd)))
}

/// Finds `rel` in an image's layers (top layer first), honouring whiteouts and opaque dirs:
/// the index of the layer that provides it and what it is there. Everything is looked up
/// beneath each layer's root fd; no symlink is followed.
pub fn find_in_layers(layer_roots: &[RootDir], rel: &Path) -> Option<(usize, Kind)> {
    let comps: Vec<_> = rel.components().collect();
    for (idx, root) in layer_roots.iter().enumerate().rev() {
        let mut prefix = PathBuf::new();
        for (i, c) in comps.iter().enumerate() {
            let name = c.as_os_str().to_string_lossy();
            if kind_at(root, &prefix.join(format!("{WHITEOUT_PREFIX}{name}"))).is_some() {
                return None;
            }
            prefix.push(c);
            if whiteout_device_at(root, &prefix) {
                return None;
            }
            if i + 1 < comps.len() && opaque_at(root, &prefix) {
                // Lower layers are hidden below here; this layer decides.
                return kind_at(root, rel).map(|k| (idx, k));
            }
        }
        if let Some(k) = kind_at(root, rel) {
            return Some((idx, k));
        }
    }
    None
}

/// Reads `rel` (a regular file of at most [`MAX_EXPORT_FILE`] bytes) from an image's layers;
/// `None` when absent. A symlink (anywhere on the way), a directory or a special file is an
/// error naming the file.
pub fn read_in_layers(layer_roots: &[RootDir], rel: &Path) -> std::result::Result<Option<Vec<u8>>, String> {
    let shown = format!("/{}", rel.display());
    match find_in_layers(layer_roots, rel) {
        None => Ok(None),
        Some((i, Kind::File)) => layer_roots[i].read_limited(rel, MAX_EXPORT_FILE).map(Some).map_err(|e| {
            if rooted::is_symlink_error(&e) {
                format!("{shown}: is a symlink (hoist reads /exports files only as regular files)")
            } else {
                format!("{shown}: {e}")
            }
        }),
        Some((_, Kind::Symlink)) => {
            Err(format!("{shown}: is a symlink (hoist reads /exports files only as regular files)"))
        }
        Some((_, _)) => Err(format!("{shown}: not a regular file")),
    }
}

pub fn info(store: &Store, query: &str, extract: &ExtractOptions) -> Result<ImageInfo> {
    let img = store.resolve(query)?;
    let manifest = store.manifest(&img.manifest)?;
    let config = store.config(&manifest)?;
    let labels: BTreeMap<String, String> =
        config.config().as_ref().and_then(|c| c.labels().clone()).unwrap_or_default().into_iter().collect();
    let layers = extracted_layers(store, &img.manifest, extract, &Progress::silent())?;
    let mut roots = Vec::new();
    for (id, _) in &layers {
        let p = store.layout().layer(id).join("rootfs");
        roots.push(RootDir::open(&p).at(&p)?);
    }
    let bad = |reason: String| ImagesError::Bad { image: img.name.to_string(), reason };
    let read = |rel: &str| -> Result<Option<String>> {
        match read_in_layers(&roots, Path::new(rel)).map_err(bad)? {
            Some(data) => String::from_utf8(data).map(Some).map_err(|_| bad(format!("/{rel}: not UTF-8 text"))),
            None => Ok(None),
        }
    };
    let exports = find_in_layers(&roots, Path::new("exports")).is_some();
    let mut used = BTreeSet::new();
    let mut templates = Vec::new();
    let mut json_text = BTreeSet::new();
    for f in TEMPLATE_FILES {
        if let Some(text) = read(&format!("exports/{f}"))? {
            let file = format!("/exports/{f}");
            used.extend(template::variables(&file, &text).map_err(|e| bad(e.to_string()))?);
            if *f == "config.json.template" {
                json_text = values::json_fragments(&file, &text).map_err(|e| bad(e.to_string()))?;
            }
            templates.push(f.to_string());
        }
    }
    let mut defaults = BTreeMap::new();
    let mut manifest_check = None;
    if let Some(text) = read("exports/manifest.json")? {
        let m: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("/exports/manifest.json: {e}")))?;
        if let Some(hc) = m.get("healthCheck") {
            manifest_check = Some(
                serde_json::from_value::<crate::health::ManifestCheck>(hc.clone())
                    .map_err(|e| bad(format!("/exports/manifest.json healthCheck: {e}")))?,
            );
        }
        if let Some(obj) = m.get("defaultValues").and_then(|v| v.as_object()) {
            for (k, v) in obj {
                let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                defaults.insert(k.clone(), v);
            }
        }
        if let Some(obj) = m.get("renameFiles").and_then(|v| v.as_object()) {
            for v in obj.values().filter_map(|v| v.as_str()) {
                used.extend(
                    template::variables("/exports/manifest.json renameFiles", v).map_err(|e| bad(e.to_string()))?,
                );
            }
        }
        for f in
            m.get("installedFilesTemplate").and_then(|v| v.as_array()).into_iter().flatten().filter_map(|v| v.as_str())
        {
            let rel = format!("exports/hostfs/{}", f.trim_start_matches('/'));
            if let Some(text) = read(&rel)? {
                used.extend(template::variables(&format!("/{rel}"), &text).map_err(|e| bad(e.to_string()))?);
            }
        }
    }
    let builtin = |v: &str| FORCED_VARIABLES.contains(&v) || OVERRIDABLE_VARIABLES.contains(&v);
    let required = used.iter().filter(|v| !defaults.contains_key(*v) && !builtin(v)).cloned().collect();
    let raw = store.config_value(&manifest)?;
    let health_check = crate::health::decide(
        &crate::health::HealthFlags::default(),
        manifest_check.as_ref(),
        raw["config"].get("Healthcheck"),
    )
    .map_err(|e| bad(e.to_string()))?;
    Ok(ImageInfo {
        name: img.name.to_string(),
        digest: img.manifest,
        source: img.source,
        verified: img.verified,
        fetched_from: img.fetched_from,
        remembered_tls: img.transport.remembered(),
        created: config.created().clone(),
        labels,
        exports,
        templates,
        variables: Variables {
            defaults,
            required,
            used: used.into_iter().collect(),
            json_text: json_text.into_iter().collect(),
        },
        health_check,
    })
}
