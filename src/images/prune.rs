//! `images prune`: free what nothing refers to.
//!
//! Roots: every stored name, and every manifest a container deployment records. Everything they
//! reach (manifest, config, layer blobs; extracted layers by diff_id) stays. Freed: other blobs,
//! other extracted layers, leftovers of interrupted work (`tmp/*`, `layers/.tmp-*`,
//! `containers/.NAME.N.tmp`), and dangling deployments (`containers/NAME.N` with no
//! `containers/NAME` link: an interrupted install).

use std::collections::HashSet;
use std::fs;

use serde::Serialize;

use super::{Result, pinned};
use crate::digest::Digest;
use crate::fetch;
use crate::fsutil::{self, IoContext};
use crate::store::Store;

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub blobs: usize,
    pub layers: usize,
    pub deployments: Vec<String>,
    pub bytes_freed: u64,
}

pub fn prune(store: &Store) -> Result<PruneReport> {
    let layout = store.layout();
    let mut report = PruneReport::default();
    // Dangling deployments first: what they pinned becomes free below.
    let containers = layout.containers();
    if let Ok(rd) = fs::read_dir(&containers) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // A slot being prepared when a hoist command died.
            if name.starts_with('.') && name.ends_with(".tmp") {
                let p = e.path();
                report.bytes_freed += fsutil::disk_usage(&p);
                fsutil::remove_any(&p).at(&p)?;
                continue;
            }
            let Some((base, slot)) = name.rsplit_once('.') else {
                continue;
            };
            if !matches!(slot, "0" | "1") || base.is_empty() || base.starts_with('.') {
                continue;
            }
            if fs::symlink_metadata(containers.join(base)).is_err() {
                let p = e.path();
                report.bytes_freed += fsutil::disk_usage(&p);
                fsutil::remove_any(&p).at(&p)?;
                report.deployments.push(name);
            }
        }
    }
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
            && let Ok(ids) = fetch::diff_ids(store, &manifest)
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
            fsutil::remove_any(&p).at(&p)?;
            if !name.starts_with(".tmp-") {
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
