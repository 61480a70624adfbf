//! Asking a registry about a reference without pulling: the manifest digest for this machine's
//! platform (`hoist update --check`), and what the signature policy would decide (`hoist trust
//! show`).

use oci_spec::image::ImageIndex;

use super::{Platform, Puller, RegistryError, Result, Route, TrustReport, first_manifest, platform, runtime};
use crate::digest::Digest;
use crate::imgref::RegistryRef;
use crate::progress::Progress;
use crate::store::Store;
use crate::trust::Checker;

/// The digest of the manifest `logical` names now for `platform` (an index is resolved from its
/// own list, without fetching the child): one manifest request, nothing stored, no signature
/// read (`hoist update --check`; the update itself verifies).
pub(crate) fn current_digest(
    store: &Store,
    logical: &RegistryRef,
    routes: &[Route],
    platform: Option<&Platform>,
) -> Result<Digest> {
    let rt = runtime()?;
    let progress = Progress::silent();
    let (puller, bytes, digest) = rt.block_on(first_manifest(store, logical, routes, &progress))?;
    let top: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| puller.protocol(format!("manifest: {e}")))?;
    let chosen = if top.get("manifests").is_some() {
        let index: ImageIndex =
            serde_json::from_value(top).map_err(|e| puller.protocol(format!("image index {digest}: {e}")))?;
        let want = platform.cloned().unwrap_or_else(Platform::host);
        platform::select(&index, &want)
            .map_err(|offered| RegistryError::NoPlatform {
                index: digest.clone(),
                want: want.clone(),
                offered: offered.join(", "),
            })?
            .digest()
            .to_string()
    } else {
        digest
    };
    Ok(chosen.parse().map_err(|_| puller.protocol("bad manifest digest".into()))?)
}

/// Fetches `logical`'s manifest digest and signatures and evaluates the policy; stores nothing.
pub(crate) fn trust_report(store: &Store, logical: &RegistryRef, routes: &[Route], c: &Checker) -> Result<TrustReport> {
    let rt = runtime()?;
    let progress = Progress::silent();
    let (puller, _, digest) = rt.block_on(first_manifest(store, logical, routes, &progress))?;
    rt.block_on(puller.trust_report(c, digest))
}

impl Puller<'_> {
    /// What the policy would decide, and on which signatures; nothing is stored.
    async fn trust_report(self, c: &Checker, digest: String) -> Result<TrustReport> {
        let manifest: Digest = digest.parse().map_err(|_| self.protocol("bad manifest digest".into()))?;
        let (lookup, signatures, decision) = self.decide(c, &manifest).await?;
        Ok(TrustReport {
            manifest: Some(manifest),
            lookup: Some(lookup),
            signatures: signatures.iter().map(|s| s.origin().to_string()).collect(),
            decision,
        })
    }
}
