//! Extraction of a stored image's layers: every layer of a manifest in the store that is not in
//! the layer area yet is extracted, side by side, under the caller's [`ExtractOptions`] (a pull's
//! `--allow-devices` and `HOIST_MAX_LAYER_*` limits, or a checkout's own). A layer already in the
//! area is used as it is ([`Existing::Keep`], checkouts), or extracted again when this pull decides
//! otherwise about its device nodes ([`Existing::Redecide`], pulls).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use oci_spec::image::ImageManifest;

use super::{ExtractOptions, Result, ensure_extracted, load_record};
use crate::digest::Digest;
use crate::progress::Progress;
use crate::store::{Store, parse_digest};

/// What to do with a layer that is already in the layer area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Use it as it is (a checkout of what was pulled).
    Keep,
    /// Extract it again when `opts` decides otherwise about its device nodes (a pull).
    Redecide,
}

/// Extracts every layer of the stored image `manifest` (stored as `manifest_digest`) that is not
/// extracted yet (or, with [`Existing::Redecide`], was extracted under the other device decision).
/// Returns how many were.
pub fn extract_image(
    store: &Store,
    manifest_digest: &Digest,
    manifest: &ImageManifest,
    opts: &ExtractOptions,
    existing: Existing,
    progress: &Progress,
) -> Result<usize> {
    let ids = store.diff_ids(manifest)?;
    let doc = store.blob_path(manifest_digest);
    let mut todo: Vec<(Digest, String, Digest)> = Vec::new();
    for (desc, diff_id) in manifest.layers().iter().zip(&ids) {
        if todo.iter().any(|t| &t.2 == diff_id) {
            continue;
        }
        if let Some(rec) = load_record(store.layout(), diff_id)?
            && (existing == Existing::Keep || !rec.decided_otherwise(opts))
        {
            continue;
        }
        let blob = parse_digest(desc.digest().as_ref(), &doc)?;
        todo.push((blob, desc.media_type().to_string(), diff_id.clone()));
    }
    if todo.is_empty() {
        return Ok(0);
    }
    // Layers are independent: extract them side by side (each also decompresses on a thread of
    // its own). The first failure in layer order is reported; the others' work is kept.
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(todo.len());
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<()>>>> = todo.iter().map(|_| Default::default()).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((blob, mt, diff_id)) = todo.get(i) else { break };
                    let task = progress.task(&format!("Extracting layer {}", blob.short()), 0);
                    let r = ensure_extracted(store.layout(), blob, Some(mt), diff_id, opts);
                    task.finish();
                    let failed = r.is_err();
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r.map(|_| ()));
                    if failed {
                        // Stop handing out work; running extractions finish.
                        next.store(todo.len(), Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let mut done = 0;
    for r in results {
        match r.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(())) => done += 1,
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    Ok(done)
}
