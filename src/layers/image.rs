//! Extraction of a stored image's layers: every layer of a manifest in the store that is not in
//! the layer area yet is extracted, side by side, under the caller's [`ExtractOptions`] (a pull's
//! `--allow-devices` and `HOIST_MAX_LAYER_*` limits, or a checkout's own). A layer already in the
//! area is used as it is ([`Existing::Keep`], checkouts), or extracted again when this pull decides
//! otherwise about its device nodes ([`Existing::Redecide`], pulls).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use oci_spec::image::ImageManifest;

use super::{BlobStream, ExtractOptions, LayerError, Result, discard, ensure_extracted, extract_stream, load_record};
use crate::digest::Digest;
use crate::layout::Layout;
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
    let (done, failure) = side_by_side(
        &todo,
        progress,
        |(blob, ..)| format!("Extracting layer {}", blob.short()),
        |(blob, mt, diff_id)| ensure_extracted(store.layout(), blob, Some(mt), diff_id, opts).map(|(_, made)| made),
    );
    match failure {
        Some(e) => Err(e),
        None => Ok(done.len()),
    }
}

/// A layer to extract straight from its source (see [`super::extract_stream`]).
pub struct StreamJob<'a> {
    pub blob: Digest,
    pub media_type: String,
    pub diff_id: Digest,
    /// Opens the blob's bytes where they are.
    pub open: Box<dyn Fn() -> Result<BlobStream> + Send + Sync + 'a>,
}

/// Extracts each job's layer from its source, side by side; returns the layers made. On a
/// failure, the layers it made are removed again (nothing uses them yet) and the first failure
/// in job order is returned.
pub fn extract_streams(
    layout: &Layout,
    jobs: &[StreamJob<'_>],
    opts: &ExtractOptions,
    progress: &Progress,
) -> Result<Vec<Digest>> {
    let (done, failure) = side_by_side(
        jobs,
        progress,
        |j| format!("Extracting layer {}", j.blob.short()),
        |j| extract_stream(layout, (j.open)()?, Some(&j.media_type), &j.diff_id, opts).map(|(_, made)| made),
    );
    let made: Vec<Digest> = done.into_iter().map(|i| jobs[i].diff_id.clone()).collect();
    match failure {
        Some(e) => {
            discard(layout, &made);
            Err(e)
        }
        None => Ok(made),
    }
}

/// Runs `work` on the items side by side, as many at once as there are cores (layers are
/// independent; each also decompresses on a thread of its own). After a failure no new item is
/// started; running ones finish. Returns the items for which `work` did something
/// (`Ok(true)`), and the first failure in item order.
fn side_by_side<T: Sync>(
    todo: &[T],
    progress: &Progress,
    label: impl Fn(&T) -> String + Sync,
    work: impl Fn(&T) -> Result<bool> + Sync,
) -> (Vec<usize>, Option<LayerError>) {
    if todo.is_empty() {
        return (Vec::new(), None);
    }
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(todo.len());
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<bool>>>> = todo.iter().map(|_| Default::default()).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = todo.get(i) else { break };
                    let task = progress.task(&label(item), 0);
                    let r = work(item);
                    task.finish();
                    let failed = r.is_err();
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                    if failed {
                        next.store(todo.len(), Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let mut done = Vec::new();
    let mut failure = None;
    for (i, r) in results.into_iter().enumerate() {
        match r.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(true)) => done.push(i),
            Some(Err(e)) if failure.is_none() => failure = Some(e),
            _ => {}
        }
    }
    (done, failure)
}
