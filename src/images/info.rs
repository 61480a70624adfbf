//! `images info`: labels and the template variables an image's `/exports` expects.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{ImagesError, Result, extracted_layers};
use crate::digest::Digest;
use crate::layers::paths::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::progress::Progress;
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
}

#[derive(Debug, Serialize)]
pub struct ImageInfo {
    pub name: String,
    pub digest: Digest,
    pub source: Option<String>,
    pub created: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Whether the image has `/exports` (otherwise hoist generates the bundle and unit).
    pub exports: bool,
    /// Template files present under `/exports`.
    pub templates: Vec<String>,
    pub variables: Variables,
}

/// Finds `rel` in an image's layers (top layer first), honouring whiteouts and opaque dirs.
pub fn find_in_layers(layer_roots: &[PathBuf], rel: &Path) -> Option<PathBuf> {
    let comps: Vec<_> = rel.components().collect();
    for root in layer_roots.iter().rev() {
        let mut prefix = PathBuf::new();
        for (i, c) in comps.iter().enumerate() {
            let name = c.as_os_str().to_string_lossy();
            if fs::symlink_metadata(root.join(&prefix).join(format!("{WHITEOUT_PREFIX}{name}"))).is_ok() {
                return None;
            }
            prefix.push(c);
            if i + 1 < comps.len() && fs::symlink_metadata(root.join(&prefix).join(OPAQUE_MARKER)).is_ok() {
                // Lower layers are hidden below here; this layer decides.
                let p = root.join(rel);
                return fs::symlink_metadata(&p).is_ok().then_some(p);
            }
        }
        let p = root.join(rel);
        if fs::symlink_metadata(&p).is_ok() {
            return Some(p);
        }
    }
    None
}

pub fn info(store: &Store, query: &str) -> Result<ImageInfo> {
    let img = store.resolve(query)?;
    let manifest = store.manifest(&img.manifest)?;
    let config = store.config(&manifest)?;
    let labels: BTreeMap<String, String> =
        config.config().as_ref().and_then(|c| c.labels().clone()).unwrap_or_default().into_iter().collect();
    let layers = extracted_layers(store, &img.manifest, &Progress::silent())?;
    let roots: Vec<PathBuf> = layers.iter().map(|(id, _)| store.layout().layer(id).join("rootfs")).collect();
    let bad = |reason: String| ImagesError::Bad { image: img.name.to_string(), reason };
    let read = |rel: &str| -> Result<Option<String>> {
        match find_in_layers(&roots, Path::new(rel)) {
            Some(p) if p.is_file() => fs::read_to_string(&p).map(Some).map_err(|e| bad(format!("/{rel}: {e}"))),
            _ => Ok(None),
        }
    };
    let exports = find_in_layers(&roots, Path::new("exports")).is_some();
    let mut used = BTreeSet::new();
    let mut templates = Vec::new();
    for f in TEMPLATE_FILES {
        if let Some(text) = read(&format!("exports/{f}"))? {
            used.extend(template::variables(&format!("/exports/{f}"), &text).map_err(|e| bad(e.to_string()))?);
            templates.push(f.to_string());
        }
    }
    let mut defaults = BTreeMap::new();
    if let Some(text) = read("exports/manifest.json")? {
        let m: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("/exports/manifest.json: {e}")))?;
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
    Ok(ImageInfo {
        name: img.name.to_string(),
        digest: img.manifest,
        source: img.source,
        created: config.created().clone(),
        labels,
        exports,
        templates,
        variables: Variables { defaults, required, used: used.into_iter().collect() },
    })
}
