//! Layers extracted straight from the registry's response (the default; `--keep-blobs` stores
//! each blob first). The response body is handed chunk by chunk, through a bounded channel, to
//! an extraction on a blocking thread, which keeps the layer only when the body was the
//! descriptor's bytes (oci-client hashes it as it streams and ends it with an error when the
//! digest differs; the extraction counts the size: [`crate::layers::extract_stream`]) and the
//! tar stream hashes to the diff_id: the blob itself is never written. A body longer than the descriptor is cut off at the first byte too
//! many. A transient failure (connection, timeout, HTTP 5xx, 429) throws the partial extraction
//! away and starts the layer again, up to [`ATTEMPTS`] times.

use std::io::{self, Read};

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::errors::{DigestError, OciDistributionError};
use tokio::sync::mpsc;

use super::{ATTEMPTS, Puller, RegistryError, is_transient};
use crate::digest::Digest;
use crate::fetch::{FetchError, Result};
use crate::fsutil::human_size;
use crate::layers::{BlobStream, ExtractOptions, LayerError, Mismatch};

/// Chunks of a body in flight between the download and the extraction.
const IN_FLIGHT: usize = 64;

/// How a download into an extraction ended, when it did not end well.
enum Fed {
    /// The extraction stopped reading (it failed, or found the layer there already).
    Hungup,
    TooLarge,
    /// The registry sent bytes that do not hash to the digest (checked by oci-client too).
    Corrupt(String),
    Http(OciDistributionError),
}

impl Puller<'_> {
    /// Downloads layer `blob` into its extraction as `diff_id`; whether a layer was made.
    pub(super) async fn layer_streamed(
        &self,
        blob: &Digest,
        size: u64,
        diff_id: Digest,
        media_type: String,
        opts: ExtractOptions,
    ) -> Result<bool> {
        let label = format!("layer {blob}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let task = self
                .progress
                .task(&format!("Fetching and extracting layer {} ({})", blob.short(), human_size(size)), size);
            let (tx, rx) = mpsc::channel(IN_FLIGHT);
            // oci-client hashes the body and ends it with an error when it does not match.
            let reader = Box::new(Body { rx, chunk: Bytes::new() });
            let stream = BlobStream { digest: blob.clone(), size, reader, source_hashes: true };
            let (layout, id, mt) = (self.store.layout().clone(), diff_id.clone(), media_type.clone());
            let extraction = tokio::task::spawn_blocking(move || {
                crate::layers::extract_stream(&layout, stream, Some(&mt), &id, &opts).map(|(_, made)| made)
            });
            let fed = self.feed(blob, size, &tx, &task).await;
            drop(tx);
            let extracted =
                extraction.await.map_err(|e| FetchError::from(self.protocol(format!("extraction of {label}: {e}"))))?;
            task.finish();
            return match fed {
                Ok(()) | Err(Fed::Hungup) => extracted.map_err(|e| corrupt_of(e, &label)),
                Err(Fed::TooLarge) => Err(RegistryError::TooLarge { what: label, limit: size }.into()),
                Err(Fed::Corrupt(actual)) => Err(RegistryError::Corrupt { what: label, actual }.into()),
                Err(Fed::Http(e)) if attempt < ATTEMPTS && is_transient(&e) => {
                    self.backoff(attempt, &label, &e).await;
                    continue;
                }
                Err(Fed::Http(e)) => Err(self.classify(e, &label).into()),
            };
        }
    }

    /// Sends the body of `blob` into `tx`, counting it against `size`.
    async fn feed(
        &self,
        blob: &Digest,
        size: u64,
        tx: &mpsc::Sender<io::Result<Bytes>>,
        task: &crate::progress::Task,
    ) -> std::result::Result<(), Fed> {
        let mut body =
            self.client.pull_blob_stream(&self.reference, blob.to_string().as_str()).await.map_err(Fed::Http)?;
        let mut received = 0u64;
        while let Some(item) = body.next().await {
            let bytes = match item {
                Ok(b) => b,
                Err(e) => {
                    // The extraction must not take a cut-off body for a whole one.
                    let _ = tx.send(Err(io::Error::other("the download was interrupted"))).await;
                    return Err(match e.get_ref().and_then(|i| i.downcast_ref::<DigestError>()) {
                        Some(DigestError::VerificationError { actual, .. }) => Fed::Corrupt(actual.clone()),
                        _ => Fed::Http(OciDistributionError::IoError(e)),
                    });
                }
            };
            received += bytes.len() as u64;
            if received > size {
                let _ = tx.send(Err(io::Error::other("the body is larger than announced"))).await;
                return Err(Fed::TooLarge);
            }
            task.inc(bytes.len() as u64);
            if tx.send(Ok(bytes)).await.is_err() {
                return Err(Fed::Hungup);
            }
        }
        Ok(())
    }
}

/// A registry's own corruption, when that is what the extraction found (the mismatch of bytes
/// with their digest is the registry's fault, not the layer's).
fn corrupt_of(e: LayerError, label: &str) -> FetchError {
    match e {
        LayerError::BlobMismatch { mismatch: Mismatch::Digest { actual }, .. } => {
            RegistryError::Corrupt { what: label.to_string(), actual: actual.to_string() }.into()
        }
        e => e.into(),
    }
}

/// The download's chunks, read on the extraction's thread.
struct Body {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
}

impl Read for Body {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}
