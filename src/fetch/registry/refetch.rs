//! Blobs of a stored image fetched again from its registry: layers whose compressed blobs were
//! dropped after extraction (the default, see `--keep-blobs`) are needed again to export or push
//! the image byte for byte. The image is addressed by its manifest digest (the tag it was pulled
//! by may have moved since); each blob is checked against its digest and size as it is stored.

use super::{Result, Route, first_manifest, runtime};
use crate::digest::Digest;
use crate::imgref::RegistryRef;
use crate::progress::Progress;
use crate::store::Store;

/// Stores `wanted` (digest, size) from the repository `logical` names, reached as `routes` say.
pub(crate) fn blobs(
    store: &Store,
    logical: &RegistryRef,
    routes: &[Route],
    wanted: &[(Digest, u64)],
    progress: &Progress,
) -> Result<()> {
    let rt = runtime()?;
    let (puller, _, _) = rt.block_on(first_manifest(store, logical, routes, progress))?;
    rt.block_on(async {
        for (d, size) in wanted {
            puller.blob("layer", d, *size).await?;
        }
        Ok(())
    })
}
