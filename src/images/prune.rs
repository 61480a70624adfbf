//! `images prune`: free what nothing refers to.
//!
//! Roots: every stored name, and every manifest a container deployment records. Everything they
//! reach (manifest, config, layer blobs; extracted layers by diff_id) stays. Freed: other blobs,
//! other extracted layers, leftovers of interrupted work (`tmp/*`: slots being prepared and
//! containers being deleted; `layers/.tmp-*`, `layers/.trash-*`, `mounts/<id>` of an
//! interrupted or stale `hoist mount`), and dangling deployments (`containers/NAME/` with no
//! `current` link and no transaction journal: remains of an interrupted install).
//!
//! Deletion is crash-safe (DESIGN §9): a layer or a container is first renamed out of its live
//! name (`layers/.trash-<id>-<pid>`, `tmp/trash-NAME-<pid>`) and only then deleted, so a prune
//! killed mid-way never leaves `layers/<id>/layer.json` beside a half-deleted tree (which the
//! next pull would trust). The next prune deletes the trash.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::path::Path;

use serde::Serialize;

use super::{Result, pinned};
use crate::digest::Digest;
use crate::fsutil::{self, IoContext};
use crate::store::Store;

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub blobs: usize,
    pub layers: usize,
    pub deployments: Vec<String>,
    /// Leftovers of interrupted or stale `hoist mount`s removed.
    pub mounts: usize,
    pub bytes_freed: u64,
}

/// Fault point between the rename out of the live name and the deletion (tests).
pub const FAULT_RENAMED: &str = "prune:renamed";

/// Removes `dir/name` by renaming it to `dir/trash` first (see the module doc).
pub(crate) fn remove_renamed(dir: &Path, name: &str, trash: String) -> Result<(), crate::fsutil::PathError> {
    let p = dir.join(name);
    crate::rooted::remove_via_rename(dir, &OsString::from(name), &OsString::from(trash), || {
        crate::fault::point(FAULT_RENAMED)
    })
    .at(&p)
}

/// Deletes `layers/.trash-*`: layers a killed prune renamed out of their live names.
pub fn remove_trash(layout: &crate::layout::Layout) -> Result<()> {
    let dir = layout.layers();
    let Ok(rd) = fs::read_dir(&dir) else { return Ok(()) };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with(".trash-") {
            let p = e.path();
            fsutil::remove_any(&p).at(&p)?;
        }
    }
    Ok(())
}

pub fn prune(store: &Store) -> Result<PruneReport> {
    let layout = store.layout();
    let mut report = PruneReport::default();
    // Dangling deployments first: what they pinned becomes free below.
    for c in crate::deploy::container::all(layout) {
        if c.current().is_none() && !c.txn_file().exists() {
            report.bytes_freed += fsutil::disk_usage(c.dir());
            c.remove(|| crate::fault::point(FAULT_RENAMED))?;
            report.deployments.push(c.name().to_string());
        }
    }
    report.mounts = crate::mount::prune(layout)?;
    let mut roots: HashSet<Digest> = store.images()?.into_iter().map(|i| i.manifest).collect();
    roots.extend(pinned(layout).into_keys());

    let mut keep_blobs = HashSet::new();
    let mut keep_layers = HashSet::new();
    for m in &roots {
        // A root whose manifest is gone pins nothing more (and frees nothing it cannot name).
        let Ok(blobs) = store.manifest_blobs(m) else {
            continue;
        };
        keep_blobs.extend(blobs);
        if let Ok(manifest) = store.manifest(m)
            && let Ok(ids) = store.diff_ids(&manifest)
        {
            keep_layers.extend(ids.into_iter().map(|d| d.hex().to_string()));
        }
    }
    for d in store.all_blobs()? {
        if !keep_blobs.contains(&d) {
            report.bytes_freed += store.remove_blob(&d)?;
            report.blobs += 1;
        }
    }
    let layers_dir = layout.layers();
    if let Ok(rd) = fs::read_dir(&layers_dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if keep_layers.contains(&name) {
                continue;
            }
            let p = e.path();
            report.bytes_freed += fsutil::disk_usage(&p);
            if name.starts_with('.') {
                // `.tmp-*` (never a live name) and `.trash-*` (already renamed out).
                fsutil::remove_any(&p).at(&p)?;
            } else {
                remove_renamed(&layers_dir, &name, format!(".trash-{name}-{}", std::process::id()))?;
                report.layers += 1;
            }
        }
    }
    if let Ok(rd) = fs::read_dir(layout.tmp()) {
        for e in rd.flatten() {
            let p = e.path();
            report.bytes_freed += fsutil::disk_usage(&p);
            fsutil::remove_any(&p).at(&p)?;
        }
    }
    Ok(report)
}
