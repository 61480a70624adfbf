//! `oci:DIR[:REF]` and `oci-archive:FILE[:REF]`: an OCI image layout, as a directory or a tar.
//!
//! REF selects the `index.json` entry whose `org.opencontainers.image.ref.name` is REF (compared
//! as written: `localhost/app:1.0`, `1.0`); without REF the layout must hold exactly one image
//! (or one named `latest`). An entry that is itself an image index is resolved to the manifest
//! for this machine's platform. Without REF, the entry's ref.name names the stored image when it
//! is a full reference (`localhost/app:1.0`, as skopeo writes `oci:DIR:localhost/app:1.0`).
//! Every file of a layout is read bounded: a directory's files are opened beneath the layout
//! with [`RootDir`] (no symlink anywhere, regular files only, so a blob that is a symlink to
//! `/dev/zero` or a host file, or a FIFO, is refused before anything is read); a tar is indexed
//! once ([`TarIndex`]: name → offset, size, regular members only) and only the members needed
//! are read. JSON documents (index, manifests, configs) are capped at [`MAX_DOCUMENT`]; blobs are
//! copied at most to their descriptor's size.

use std::io::Read;
use std::path::Path;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use super::platform::{Platform, select};
use super::registry::MAX_DOCUMENT;
use super::tarindex::TarIndex;
use super::{FetchError, Fetched, Result, src_err};
use crate::digest::Digest;
use crate::fsutil::human_size;
use crate::imgref::{ImageName, is_full_reference, source_named};
use crate::layers::{BlobStream, LayerError, StreamJob};
use crate::progress::Progress;
use crate::rooted::{self, RootDir};
use crate::store::{Store, Transport};

pub(crate) enum Layout {
    Dir(RootDir),
    Archive(TarIndex),
}

/// A one-line cause for a file of a layout directory that could not be opened.
fn open_err(what: &str, e: std::io::Error) -> FetchError {
    if e.kind() == std::io::ErrorKind::NotFound {
        src_err(format!("{what}: missing"))
    } else if e.kind() == std::io::ErrorKind::InvalidInput {
        src_err(format!("{what}: refused: not a regular file"))
    } else if rooted::is_symlink_error(&e) {
        src_err(format!("{what}: refused: a symlink (files of a layout must be regular files inside it)"))
    } else {
        src_err(format!("{what}: {e}"))
    }
}

/// The error for content longer than its descriptor says (no hash of it is ever printed).
fn too_large(what: &str, size: u64) -> FetchError {
    src_err(format!("{what}: larger than its descriptor's {size} bytes"))
}

impl Layout {
    pub fn dir(path: &Path) -> Result<Self> {
        let root = RootDir::open(path).map_err(|e| src_err(format!("{}: {e}", path.display())))?;
        match root.stat(Path::new("index.json")) {
            Ok(Some(_)) => Ok(Layout::Dir(root)),
            _ => Err(src_err(format!("{} is not an OCI image layout (no index.json)", path.display()))),
        }
    }

    pub fn archive(path: &Path) -> Result<Self> {
        let idx = TarIndex::open(path)?;
        if idx.size("index.json").is_none() {
            return Err(src_err(format!("{} is not an OCI archive (no index.json)", path.display())));
        }
        Ok(Layout::Archive(idx))
    }

    /// Opens a file of the layout: a reader bounded by the file's size, and that size.
    fn open(&self, rel: &str, what: &str) -> Result<(Box<dyn Read + '_>, u64)> {
        match self {
            Layout::Dir(root) => {
                let f = root.open_file(Path::new(rel)).map_err(|e| open_err(what, e))?;
                let size = f.metadata().map_err(|e| src_err(format!("{what}: {e}")))?.len();
                Ok((Box::new(f), size))
            }
            Layout::Archive(idx) => {
                let (r, size) = idx.open_member(rel).map_err(|_| src_err(format!("{what}: missing member {rel}")))?;
                Ok((Box::new(r), size))
            }
        }
    }

    /// Opens a layer blob as an owned reader (for extraction on another thread), refusing one
    /// larger than its descriptor says before anything is read.
    fn open_blob(&self, digest: &Digest, size: u64) -> Result<Box<dyn Read + Send>> {
        let what = format!("blob {digest}");
        let rel = format!("blobs/sha256/{}", digest.hex());
        let (r, actual): (Box<dyn Read + Send>, u64) = match self {
            Layout::Dir(root) => {
                let f = root.open_file(Path::new(&rel)).map_err(|e| open_err(&what, e))?;
                let actual = f.metadata().map_err(|e| src_err(format!("{what}: {e}")))?.len();
                (Box::new(f), actual)
            }
            Layout::Archive(idx) => {
                let (r, actual) =
                    idx.open_member_owned(&rel).map_err(|_| src_err(format!("{what}: missing member {rel}")))?;
                (Box::new(r), actual)
            }
        };
        if actual > size {
            return Err(too_large(&what, size));
        }
        Ok(r)
    }

    /// Reads a small document (at most [`MAX_DOCUMENT`] bytes).
    fn read(&self, rel: &str, what: &str) -> Result<Vec<u8>> {
        let (r, size) = self.open(rel, what)?;
        if size > MAX_DOCUMENT {
            return Err(src_err(format!("{what}: {size} bytes, over the {MAX_DOCUMENT}-byte limit")));
        }
        let mut data = Vec::new();
        r.take(MAX_DOCUMENT + 1).read_to_end(&mut data).map_err(|e| src_err(format!("{what}: {e}")))?;
        if data.len() as u64 > MAX_DOCUMENT {
            return Err(src_err(format!("{what}: over the {MAX_DOCUMENT}-byte limit")));
        }
        Ok(data)
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, rel: &str, what: &str) -> Result<T> {
        serde_json::from_slice(&self.read(rel, what)?).map_err(|e| src_err(format!("{what} {rel}: {e}")))
    }

    /// Reads a small blob (manifest, index, config), bounded by its descriptor's size (itself at
    /// most [`MAX_DOCUMENT`]) and verifying its digest.
    fn read_blob(&self, desc: &Descriptor) -> Result<(Digest, Vec<u8>)> {
        let digest: Digest =
            desc.digest().to_string().parse().map_err(|e: crate::digest::InvalidDigest| src_err(e.to_string()))?;
        let what = format!("blob {digest}");
        let size = desc.size();
        if size > MAX_DOCUMENT {
            return Err(src_err(format!("{what}: descriptor size {size} is over the {MAX_DOCUMENT}-byte limit")));
        }
        let (r, actual) = self.open(&format!("blobs/sha256/{}", digest.hex()), &what)?;
        if actual > size {
            return Err(too_large(&what, size));
        }
        let mut data = Vec::new();
        r.take(size + 1).read_to_end(&mut data).map_err(|e| src_err(format!("{what}: {e}")))?;
        if data.len() as u64 > size {
            return Err(too_large(&what, size));
        }
        if data.len() as u64 != size {
            return Err(src_err(format!("{what}: {} bytes, descriptor says {size}", data.len())));
        }
        if Digest::of_bytes(&data) != digest {
            return Err(src_err(format!("{what}: content does not match its digest")));
        }
        Ok((digest, data))
    }

    /// Copies the given blobs into the store (each verified, each read at most to its
    /// descriptor's size); returns how many were written.
    fn import_blobs(&self, store: &Store, wanted: &[(Digest, u64)], progress: &Progress) -> Result<usize> {
        let missing: Vec<&(Digest, u64)> = wanted.iter().filter(|(d, s)| !store.has_blob_sized(d, *s)).collect();
        for (d, size) in &missing {
            let what = format!("blob {d}");
            let (r, actual) = self.open(&format!("blobs/sha256/{}", d.hex()), &what)?;
            if actual > *size {
                return Err(too_large(&what, *size));
            }
            let task = progress.task(&format!("Copying blob {} ({})", d.short(), human_size(*size)), *size);
            store.put_blob(&what, task.reader(r), Some(d), Some(*size))?;
            task.finish();
        }
        Ok(missing.len())
    }
}

fn is_index(mt: &MediaType) -> bool {
    matches!(mt, MediaType::ImageIndex) || mt.to_string() == "application/vnd.docker.distribution.manifest.list.v2+json"
}

/// The manifest `reference` names in the layout (an index resolved to `platform`, default this
/// machine's), and the name the layout gives the image when the reference named none.
fn chosen(
    layout: &Layout,
    reference: Option<&str>,
    platform: Option<&Platform>,
) -> Result<(Descriptor, Option<ImageName>)> {
    let index: ImageIndex = layout.read_json("index.json", "image index")?;
    let ref_of =
        |d: &Descriptor| d.annotations().as_ref().and_then(|a| a.get("org.opencontainers.image.ref.name").cloned());
    let desc = match reference {
        Some(r) => index.manifests().iter().find(|d| ref_of(d).as_deref() == Some(r)),
        None if index.manifests().len() == 1 => index.manifests().first(),
        None => index.manifests().iter().find(|d| ref_of(d).as_deref() == Some("latest")),
    };
    let Some(mut desc) = desc.cloned() else {
        let names: Vec<String> =
            index.manifests().iter().map(|d| ref_of(d).unwrap_or_else(|| "(unnamed)".to_string())).collect();
        return Err(src_err(match reference {
            Some(r) => format!("no image named {r:?} (the layout holds: {})", names.join(", ")),
            None if names.is_empty() => "the layout holds no image".to_string(),
            None => format!("the layout holds {} images; name one with :REF ({})", names.len(), names.join(", ")),
        }));
    };
    // The layout's own name for the image counts when the reference named none (a REF that is
    // a full reference names the image itself; a bare tag keeps the file-name rule).
    let name = match reference {
        None => ref_of(&desc).filter(|r| is_full_reference(r)).and_then(|r| source_named(&r)),
        Some(_) => None,
    };
    if is_index(desc.media_type()) {
        let (digest, data) = layout.read_blob(&desc)?;
        let inner: ImageIndex =
            serde_json::from_slice(&data).map_err(|e| src_err(format!("image index {digest}: {e}")))?;
        let want = platform.cloned().unwrap_or_else(Platform::host);
        desc = select(&inner, &want).cloned().map_err(|offered| {
            src_err(format!("image index {digest} has no manifest for {want} (it has: {})", offered.join(", ")))
        })?;
    }
    Ok((desc, name))
}

/// Copies `wanted` (digest, size) from the layout into the store, each checked as it is stored
/// (blobs a pull did not keep, needed again to export or push the image).
pub(crate) fn copy_blobs(store: &Store, layout: &Layout, wanted: &[(Digest, u64)]) -> Result<()> {
    for (d, size) in wanted {
        let r = layout.open_blob(d, *size)?;
        store.put_blob(&format!("layer {d}"), r, Some(d), Some(*size))?;
    }
    Ok(())
}

/// The digest of the manifest `reference` names now, reading only the layout's index (and a
/// nested index): what `hoist update --check` compares with a deployment.
pub(crate) fn manifest_digest(layout: &Layout, reference: Option<&str>, platform: Option<&Platform>) -> Result<Digest> {
    let (desc, _) = chosen(layout, reference, platform)?;
    desc.digest().to_string().parse().map_err(|e: crate::digest::InvalidDigest| src_err(e.to_string()))
}

pub(crate) fn import(
    store: &Store,
    layout: Layout,
    reference: Option<&str>,
    opts: &super::PullOptions,
    progress: &Progress,
    check_name: &dyn Fn(Option<&ImageName>) -> Result<()>,
) -> Result<Fetched> {
    let (extract, keep_blobs) = (&opts.extract, opts.keep_blobs);
    let (desc, name) = chosen(&layout, reference, opts.registry.platform.as_ref())?;
    check_name(name.as_ref())?;
    let mut fetched = 0;
    let (manifest_digest, manifest_bytes) = layout.read_blob(&desc)?;
    let manifest: ImageManifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| src_err(format!("manifest {manifest_digest}: {e}")))?;
    let config = manifest.config();
    let (config_digest, config_bytes) = layout.read_blob(config)?;
    // Layers extracted from these very blobs need no copy (their blobs may have been dropped).
    let diff_ids: Vec<Digest> = serde_json::from_slice::<oci_spec::image::ImageConfiguration>(&config_bytes)
        .map(|c| c.rootfs().diff_ids().iter().filter_map(|d| d.parse().ok()).collect())
        .unwrap_or_default();
    // Without --keep-blobs, each layer is extracted straight from the layout's file (checked
    // against its descriptor as it is read) and its blob is never copied.
    let mut wanted = Vec::new();
    let mut jobs: Vec<StreamJob<'_>> = Vec::new();
    for (i, l) in manifest.layers().iter().enumerate() {
        let d: Digest =
            l.digest().to_string().parse().map_err(|e: crate::digest::InvalidDigest| src_err(e.to_string()))?;
        let diff_id = diff_ids.get(i);
        if diff_id.is_some_and(|id| super::layer_extracted(store, &d, id, extract)) {
            continue;
        }
        match diff_id {
            Some(id) if !keep_blobs && !jobs.iter().any(|j| &j.diff_id == id) => {
                let (layout, blob, size) = (&layout, d.clone(), l.size());
                jobs.push(StreamJob {
                    blob: d.clone(),
                    media_type: l.media_type().to_string(),
                    diff_id: id.clone(),
                    open: Box::new(move || {
                        let reader = layout
                            .open_blob(&blob, size)
                            .map_err(|e| LayerError::Unreadable { layer: blob.clone(), cause: e.to_string() })?;
                        Ok(BlobStream { digest: blob.clone(), size, reader, source_hashes: false })
                    }),
                });
            }
            _ => wanted.push((d, l.size())),
        }
    }
    let made = crate::layers::extract_streams(store.layout(), &jobs, extract, progress)?;
    fetched += jobs.len();
    fetched += layout.import_blobs(store, &wanted, progress)?;
    // Config and manifest last: a manifest in the store implies its blobs are there.
    for (what, d, data) in [("config", &config_digest, &config_bytes), ("manifest", &manifest_digest, &manifest_bytes)]
    {
        if !store.has_blob_sized(d, data.len() as u64) {
            store.put_bytes(&format!("{what} {d}"), data, Some(d))?;
            fetched += 1;
        }
    }
    Ok(Fetched {
        name,
        layers_extracted: made.len(),
        ..Fetched::stored(manifest_digest, &manifest, fetched, Transport::Verified)
    })
}
