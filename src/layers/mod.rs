//! The shared layer area: every layer extracted once, keyed by its diff_id.
//!
//! ```text
//! layers/<diffid-hex>/rootfs/      the layer's own entries, with their owners, modes, times and
//!                                  allow-listed xattrs; whiteouts in overlayfs's form (character
//!                                  devices 0/0, `trusted.overlay.opaque=y`) when extracted as
//!                                  root, else the OCI marker files `.wh.<name>`, `.wh..wh..opq`
//! layers/<diffid-hex>/layer.json   a [`LayerRecord`]: what the tree cannot say by itself
//! layers/.tmp-<hex>-<pid>/         extraction in progress; renamed into place only when complete
//! layers/.trash-<hex>-<pid>/       a layer of a failed pull, renamed away before it is deleted
//! ```
//! Invariants: a `layers/<hex>` directory is complete (it is renamed into place after its whole
//! stream hashed to the diff_id, and, for a blob read straight from its source, after the
//! compressed bytes matched their descriptor: [`extract_stream`]); the directory is mode 0700
//! because it holds setuid files and, with `--allow-devices`, device nodes. Containers see these
//! trees as overlayfs lower layers (`rootfs` module), or merged by hard links (`checkout`
//! module), so nothing is decompressed twice.
//!
//! Hostile layers are refused, not repaired: `..` names, writes through symlinks (in the same
//! layer here, across layers at checkout), hardlinks that leave the tree, and streams beyond the
//! [`Limits`]. Device nodes are skipped with a warning unless explicitly allowed.

mod decode;
mod extract;
mod image;
pub mod paths;

pub use decode::Mismatch;
pub use extract::xattr_allowed;
pub(crate) use extract::{Meta, apply_fd_meta, meta_of};
pub use extract::{OPAQUE_XATTR, has_opaque_xattr, is_whiteout_device};
pub use image::{Existing, StreamJob, extract_image, extract_streams};

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fsutil::{self, IoContext, PathError};
use crate::layout::Layout;

pub type Result<T, E = LayerError> = std::result::Result<T, E>;

/// Why a layer could not be extracted. Every variant names the layer (its blob digest).
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer {layer}: entry {entry:?}: path escapes the layer (contains ..)")]
    Traversal { layer: Digest, entry: String },
    #[error("layer {layer}: entry {entry:?}: goes through symlink {symlink:?}")]
    ThroughSymlink { layer: Digest, entry: String, symlink: String },
    #[error("layer {layer}: entry {entry:?}: parent {parent:?} is not a directory")]
    ParentNotDir { layer: Digest, entry: String, parent: String },
    #[error("layer {layer}: entry {entry:?}: hardlink to {target:?} {reason}")]
    BadHardlink { layer: Digest, entry: String, target: String, reason: &'static str },
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    BadEntry { layer: Digest, entry: String, reason: String },
    #[error("layer {layer}: exceeds the limit of {limit} {what} (raise it with {env})")]
    Limit { layer: Digest, what: &'static str, limit: u64, env: &'static str },
    #[error("layer {layer}: uncompressed content is {actual}, but the image config says {expected}")]
    DiffIdMismatch { layer: Digest, expected: Digest, actual: Digest },
    #[error("layer {layer}: the blob is not in the store (deleted after an earlier extraction): pull the image again")]
    BlobGone { layer: Digest },
    /// A blob's source could not be read (the source's own words, naming the blob).
    #[error("{cause}")]
    Unreadable { layer: Digest, cause: String },
    /// A blob read straight from its source is not what its descriptor says.
    #[error("layer {layer}: the blob {mismatch}; nothing was kept")]
    BlobMismatch { layer: Digest, mismatch: decode::Mismatch },
    #[error("layer {layer}: unsupported media type {media_type}")]
    MediaType { layer: Digest, media_type: String },
    #[error("layer {layer}: reading the archive: {source}")]
    Archive { layer: Digest, source: io::Error },
    #[error("layer {layer}: {source}")]
    Io { layer: Digest, source: PathError },
    #[error(transparent)]
    Record(PathError),
    #[error("{}: {reason}", path.display())]
    CorruptRecord { path: PathBuf, reason: String },
    /// The stored image whose layers were asked for is unreadable.
    #[error(transparent)]
    Store(Box<crate::store::StoreError>),
}

impl From<crate::store::StoreError> for LayerError {
    fn from(e: crate::store::StoreError) -> Self {
        LayerError::Store(Box::new(e))
    }
}

/// Ceilings that stop decompression bombs and pathological archives.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Uncompressed bytes of one layer's tar stream.
    pub max_layer_bytes: u64,
    /// Entries in one layer.
    pub max_entries: u64,
    /// Length of one entry name.
    pub max_path_len: usize,
}

pub const ENV_MAX_LAYER_SIZE: &str = "HOIST_MAX_LAYER_SIZE";
pub const ENV_MAX_LAYER_ENTRIES: &str = "HOIST_MAX_LAYER_ENTRIES";

impl Default for Limits {
    fn default() -> Self {
        Limits { max_layer_bytes: 32 << 30, max_entries: 4_000_000, max_path_len: 4096 }
    }
}

impl Limits {
    /// Defaults, overridden by `HOIST_MAX_LAYER_SIZE` (bytes) and `HOIST_MAX_LAYER_ENTRIES`.
    pub fn from_env() -> Self {
        let mut l = Limits::default();
        if let Some(v) = std::env::var(ENV_MAX_LAYER_SIZE).ok().and_then(|v| v.parse().ok()) {
            l.max_layer_bytes = v;
        }
        if let Some(v) = std::env::var(ENV_MAX_LAYER_ENTRIES).ok().and_then(|v| v.parse().ok()) {
            l.max_entries = v;
        }
        l
    }
}

/// How to extract.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractOptions {
    pub limits: Limits,
    /// Create character/block device nodes instead of skipping them.
    pub allow_devices: bool,
    /// Keep whiteouts as `.wh.*` markers even when overlay form could be made (the form of
    /// layers extracted by earlier releases; tests).
    pub keep_markers: bool,
}

/// `layers/<hex>/layer.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LayerRecord {
    pub diff_id: Option<Digest>,
    /// Compressed blob this was extracted from.
    pub blob: Option<Digest>,
    pub entries: u64,
    /// Uncompressed tar bytes.
    pub size: u64,
    /// Directories created only because an entry needed a parent: at checkout they merge into an
    /// existing directory but never replace a lower layer's symlink.
    #[serde(default)]
    pub implicit_dirs: Vec<String>,
    /// Hardlinks whose target is in a lower layer: `(path, target)`, linked at checkout.
    #[serde(default)]
    pub external_links: Vec<(String, String)>,
    /// Device nodes not created (without `--allow-devices`).
    #[serde(default)]
    pub skipped_devices: Vec<String>,
    /// Device nodes created (with `--allow-devices`).
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// How the tree stores whiteouts and opaque directories (see [`WhiteoutForm`]).
    #[serde(default)]
    pub form: WhiteoutForm,
    /// [`WhiteoutForm::Overlay`] only: paths that are whiteouts (character devices 0/0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub whiteouts: Vec<String>,
    /// [`WhiteoutForm::Overlay`] only: directories marked `trusted.overlay.opaque=y` (`""` is
    /// the layer root: nothing below this layer is visible).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opaque_dirs: Vec<String>,
}

/// How a layer tree stores the OCI changeset's deletions.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WhiteoutForm {
    /// As in the tar stream: empty `.wh.NAME` and `.wh..wh..opq` files. Layers extracted by
    /// hoist before overlay checkouts, and by a user who may not create device nodes.
    #[default]
    Markers,
    /// As overlayfs reads them: a whiteout is a character device 0/0 named NAME, an opaque
    /// directory carries `trusted.overlay.opaque=y`. Made at extraction when running as root.
    Overlay,
}

impl LayerRecord {
    /// Whether overlayfs can use this tree as a lower layer as it is: whiteouts in its form,
    /// no directory it only implied (overlayfs would show it with its own owner and mode, and
    /// over a lower symlink), no hardlink into a lower layer (a tree cannot hold one).
    pub fn overlay_ready(&self) -> bool {
        self.form == WhiteoutForm::Overlay && self.implicit_dirs.is_empty() && self.external_links.is_empty()
    }

    /// Whether this layer hides everything below it (an opaque root).
    pub fn opaque_root(&self) -> bool {
        self.form == WhiteoutForm::Overlay && self.opaque_dirs.iter().any(String::is_empty)
    }
}

impl LayerRecord {
    /// The device decision belongs to each pull: true when this layer has device entries that
    /// `opts` decides otherwise about (skipped ones now allowed, or created ones now not allowed),
    /// so a pull extracts it again (the old tree is swapped away first).
    pub fn decided_otherwise(&self, opts: &ExtractOptions) -> bool {
        if opts.allow_devices { !self.skipped_devices.is_empty() } else { !self.devices.is_empty() }
    }
}

/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From the OCI / Docker media type; `None` when the type is not a layer type we know.
    pub fn from_media_type(mt: &str) -> Option<Self> {
        let mt = mt.strip_suffix(".nondistributable").unwrap_or(mt);
        match mt {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// From the first bytes of the stream (Docker archives do not say).
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Reads `layers/<hex>/layer.json` if the layer is extracted.
pub fn load_record(layout: &Layout, diff_id: &Digest) -> Result<Option<LayerRecord>> {
    let path = layout.layer(diff_id).join("layer.json");
    match fs::read(&path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| LayerError::CorruptRecord { path, reason: e.to_string() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LayerError::Record(PathError::new(path, e))),
    }
}

/// Makes sure the layer with `diff_id` is extracted, extracting it from the stored `blob` when
/// it is not. Returns its record and whether work was done.
pub fn ensure_extracted(
    layout: &Layout,
    blob: &Digest,
    media_type: Option<&str>,
    diff_id: &Digest,
    opts: &ExtractOptions,
) -> Result<(LayerRecord, bool)> {
    extract_from(layout, blob, media_type, diff_id, opts, || {
        let blob_path = layout.blob(blob);
        match File::open(&blob_path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(LayerError::BlobGone { layer: blob.clone() }),
            r => {
                let file = r.at(&blob_path).map_err(|source| LayerError::Io { layer: blob.clone(), source })?;
                // Stored blobs were verified when they were stored.
                Ok(decode::decompress(Box::new(file), None))
            }
        }
    })
}

/// A layer blob's compressed bytes read straight from where they are (a registry's response
/// body, a file of an OCI layout), never stored as a blob: checked against `digest` and `size`
/// while they are extracted (see [`decode`]).
pub struct BlobStream {
    pub digest: Digest,
    pub size: u64,
    pub reader: Box<dyn Read + Send>,
    /// The reader hashes the bytes itself and fails instead of ending when they differ from
    /// `digest` (a registry body through oci-client): only the size is counted here. The tar
    /// stream is checked against its diff_id either way.
    pub source_hashes: bool,
}

/// [`ensure_extracted`] from a [`BlobStream`]: the layer is kept only when the stream was its
/// descriptor's bytes and the tar stream hashes to `diff_id`. When the layer is there already,
/// the stream is dropped unread.
pub fn extract_stream(
    layout: &Layout,
    stream: BlobStream,
    media_type: Option<&str>,
    diff_id: &Digest,
    opts: &ExtractOptions,
) -> Result<(LayerRecord, bool)> {
    let BlobStream { digest, size, reader, source_hashes } = stream;
    let expect = decode::Expect { digest: digest.clone(), size, source_hashes };
    extract_from(layout, &digest, media_type, diff_id, opts, move || Ok(decode::decompress(reader, Some(expect))))
}

fn extract_from(
    layout: &Layout,
    blob: &Digest,
    media_type: Option<&str>,
    diff_id: &Digest,
    opts: &ExtractOptions,
    open: impl FnOnce() -> Result<(Box<dyn Read>, decode::Verdict)>,
) -> Result<(LayerRecord, bool)> {
    if let Some(rec) = load_record(layout, diff_id)?
        && !rec.decided_otherwise(opts)
    {
        return Ok((rec, false));
    }
    if let Some(mt) = media_type
        && Compression::from_media_type(mt).is_none()
    {
        return Err(LayerError::MediaType { layer: blob.clone(), media_type: mt.to_string() });
    }
    let io_err = |source| LayerError::Io { layer: blob.clone(), source };
    let layers = layout.layers();
    if !layers.is_dir() {
        fsutil::ensure_dir(&layers, 0o700).map_err(io_err)?;
    }
    let tmp = layers.join(format!(".tmp-{}-{}", diff_id.hex(), std::process::id()));
    fsutil::remove_any(&tmp).at(&tmp).map_err(io_err)?;
    let result = (|| {
        fsutil::ensure_dir(&tmp, 0o700).map_err(io_err)?;
        let (reader, verdict) = open()?;
        // A blob that is not its descriptor's bytes explains any failure best.
        let mut rec =
            extract::extract(blob, reader, &tmp.join("rootfs"), opts).map_err(|e| match verdict.mismatch() {
                Some(mismatch) => LayerError::BlobMismatch { layer: blob.clone(), mismatch },
                None => e,
            })?;
        let actual = rec.diff_id.clone().expect("extract sets diff_id");
        if &actual != diff_id {
            return Err(LayerError::DiffIdMismatch { layer: blob.clone(), expected: diff_id.clone(), actual });
        }
        rec.blob = Some(blob.clone());
        let json = serde_json::to_vec_pretty(&rec).expect("record serializes");
        fsutil::write_atomic(&tmp.join("layer.json"), &json, 0o600).map_err(io_err)?;
        let dest = layout.layer(diff_id);
        if dest.exists() {
            // Re-extraction (another device decision): swap atomically, then delete the old tree
            // (now at the temporary name); a crash leaves a complete layer either way.
            rustix::fs::renameat_with(rustix::fs::CWD, &tmp, rustix::fs::CWD, &dest, rustix::fs::RenameFlags::EXCHANGE)
                .map_err(|e| io_err(PathError::new(&dest, e.into())))?;
            fsutil::remove_any(&tmp).at(&tmp).map_err(io_err)?;
        } else {
            fs::rename(&tmp, &dest).at(&dest).map_err(io_err)?;
        }
        Ok(rec)
    })();
    if result.is_err() {
        let _ = fsutil::remove_any(&tmp);
    }
    result.map(|r| (r, true))
}

/// Removes layers a failed pull extracted (new, so nothing uses them): each is renamed away
/// first, so a crash never leaves a half-deleted layer under its name.
pub fn discard(layout: &Layout, diff_ids: &[Digest]) {
    for id in diff_ids {
        let dir = layout.layer(id);
        let trash = dir.with_file_name(format!(".trash-{}-{}", id.hex(), std::process::id()));
        if fs::rename(&dir, &trash).is_ok() {
            let _ = fsutil::remove_any(&trash);
        }
    }
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
