//! Operations on stored images: list, remove, inspect, prune, and checkout of a stored image.
//!
//! What is "in use": an image whose manifest a container deployment records
//! (`containers/NAME.N/info.json`, key `manifest`). Both slots of every container pin their
//! image, so `prune` never frees what an update or rollback will need.

pub mod build;
pub mod export;
mod info;
mod prune;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::checkout::{self, CheckoutError, CheckoutStats, LayerTree};
use crate::digest::Digest;
use crate::layers::{self, ExtractOptions, LayerRecord};
use crate::layout::Layout;
use crate::progress::Progress;
use crate::store::{Store, StoreError, StoredImage};

pub use info::{
    FORCED_VARIABLES, ImageInfo, MAX_EXPORT_FILE, OVERRIDABLE_VARIABLES, Variables, find_in_layers, info,
    read_in_layers,
};
pub use prune::{PruneReport, prune, remove_trash};

pub type Result<T, E = ImagesError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error("image {image} is used by container(s) {containers}; uninstall them first")]
    InUse { image: String, containers: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layer(#[from] layers::LayerError),
    #[error(transparent)]
    Checkout(#[from] CheckoutError),
    #[error(transparent)]
    Io(#[from] crate::fsutil::PathError),
    #[error("image {image}: {reason}")]
    Bad { image: String, reason: String },
    #[error("export to {}: {reason}", dest.display())]
    Export { dest: std::path::PathBuf, reason: String },
}

/// A row of `hoist images` (`--json` keys are stable).
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    pub name: String,
    pub repository: String,
    pub tag: String,
    pub digest: Digest,
    /// Bytes of the stored (compressed) blobs: config + layers.
    pub size: u64,
    /// The image config's `created`, if it has one.
    pub created: Option<String>,
    pub in_use: bool,
    pub source: Option<String>,
}

/// Manifests pinned by container deployments → the containers whose deployments pin them.
pub fn pinned(layout: &Layout) -> BTreeMap<Digest, Vec<String>> {
    let mut out: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for (container, _slot, rec) in crate::deploy::container::deployments(layout) {
        let users = out.entry(rec.manifest).or_default();
        if !users.contains(&container) {
            users.push(container);
        }
    }
    out
}

/// All stored images.
pub fn list(store: &Store) -> Result<Vec<ImageSummary>> {
    let pins = pinned(store.layout());
    let mut out = Vec::new();
    for img in store.images()? {
        // A stored name whose blobs are damaged still lists, with what can be read.
        let (size, created) = match store.manifest(&img.manifest) {
            Ok(m) => {
                let size = m.layers().iter().fold(m.config().size(), |acc, l| acc.saturating_add(l.size()));
                let created = store.config(&m).ok().and_then(|c| c.created().clone());
                (size, created)
            }
            Err(_) => (0, None),
        };
        out.push(ImageSummary {
            name: img.name.to_string(),
            repository: img.name.repository.clone(),
            tag: img.name.tag.clone(),
            in_use: pins.contains_key(&img.manifest),
            digest: img.manifest,
            size,
            created,
            source: img.source,
        });
    }
    Ok(out)
}

/// Removes a stored name; refuses while a container uses the image.
pub fn remove(store: &Store, query: &str) -> Result<StoredImage> {
    let img = store.resolve(query)?;
    if let Some(users) = pinned(store.layout()).get(&img.manifest) {
        return Err(ImagesError::InUse { image: img.name.to_string(), containers: users.join(", ") });
    }
    store.remove_ref(&img.name)?;
    Ok(img)
}

/// An image's layers, extracted (extracting what is missing under `extract`), bottom first.
pub fn extracted_layers(
    store: &Store,
    manifest_digest: &Digest,
    extract: &ExtractOptions,
    progress: &Progress,
) -> Result<Vec<(Digest, LayerRecord)>> {
    let manifest = store.manifest(manifest_digest)?;
    layers::extract_image(store, manifest_digest, &manifest, extract, layers::Existing::Keep, progress)?;
    let mut out = Vec::new();
    for id in store.diff_ids(&manifest)? {
        let rec = layers::load_record(store.layout(), &id)?
            .ok_or_else(|| CheckoutError::NotExtracted { layer: id.clone() })?;
        out.push((id, rec));
    }
    Ok(out)
}

/// What of an image hoist itself reads before a container runs: `/exports` (templates, host
/// files) and the user database (`process.user` names).
pub const READ_PATHS: &[&str] = &["exports", "etc/passwd", "etc/group"];

/// `HOIST_ROOTFS=checkout` makes every deployment a complete hard-link checkout, as releases
/// before overlay roots did (for comparison and troubleshooting).
pub const ENV_ROOTFS: &str = "HOIST_ROOTFS";

/// Whether deployments made by this process may use overlay roots (root, and not turned off).
pub fn overlay_roots_allowed() -> bool {
    nix::unistd::geteuid().is_root() && std::env::var(ENV_ROOTFS).map_or(true, |v| v != "checkout")
}

/// The extracted layers as trees to merge, bottom first.
fn trees<'a>(store: &Store, layers: &'a [(Digest, LayerRecord)]) -> Vec<LayerTree<'a>> {
    layers
        .iter()
        .map(|(id, rec)| LayerTree { diff_id: id, root: store.layout().layer(id).join("rootfs"), record: rec })
        .collect()
}

/// Prepares the root of a deployment in `dest`. With `overlay` and an image overlayfs can
/// stack, only [`READ_PATHS`] are merged into `dest` (the cost is independent of the image's
/// size) and the lower layers for the runner are returned; otherwise `dest` gets the complete
/// checkout and `None`.
pub fn prepare_root(
    store: &Store,
    manifest_digest: &Digest,
    dest: &Path,
    extract: &ExtractOptions,
    progress: &Progress,
    overlay: bool,
) -> Result<Option<Vec<std::path::PathBuf>>> {
    let layers = extracted_layers(store, manifest_digest, extract, progress)?;
    let lowers = if overlay { crate::rootfs::lower_dirs(store.layout(), &layers) } else { None };
    let only = if lowers.is_some() { checkout::Only::Paths(READ_PATHS) } else { checkout::Only::All };
    checkout::merge_only(&trees(store, &layers), dest, only)?;
    Ok(lowers)
}

/// The image's layer trees as overlayfs lower layers (top first), when overlayfs can stack them
/// and overlay roots are allowed here.
pub fn overlay_lowers(
    store: &Store,
    manifest_digest: &Digest,
    extract: &ExtractOptions,
    progress: &Progress,
) -> Result<Option<Vec<std::path::PathBuf>>> {
    if !overlay_roots_allowed() {
        return Ok(None);
    }
    let layers = extracted_layers(store, manifest_digest, extract, progress)?;
    Ok(crate::rootfs::lower_dirs(store.layout(), &layers))
}

/// Checks out a stored image into `dest` (a new directory). Decompresses nothing when the
/// image's layers are already extracted; a missing layer is extracted under the caller's `extract`
/// options (limits, device decision).
pub fn checkout(
    store: &Store,
    manifest_digest: &Digest,
    dest: &Path,
    extract: &ExtractOptions,
    progress: &Progress,
) -> Result<CheckoutStats> {
    let layers = extracted_layers(store, manifest_digest, extract, progress)?;
    Ok(checkout::merge(&trees(store, &layers), dest)?)
}
