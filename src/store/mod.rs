//! The local image store: an OCI image layout under `<root>/store`.
//!
//! ```text
//! store/oci-layout                 {"imageLayoutVersion": "1.0.0"}
//! store/index.json                 one manifest descriptor per stored name, annotated with
//!                                    org.opencontainers.image.ref.name = "REPOSITORY:TAG"
//!                                    io.hoist.source                   = the reference it came from
//!                                    io.hoist.pulled                   = unix time of the pull
//! store/blobs/sha256/<hex>         manifests, configs and (compressed) layers, content-addressed;
//!                                    a layer's blob is deleted once the layer is extracted and
//!                                    verified, unless the pull keeps blobs (`fetch::drop_layer_blobs`)
//! ```
//! Invariants:
//! - a blob file exists only with content whose sha256 is its name: it is streamed into `<root>/tmp`,
//!   hashed on the way, checked against the expected digest and size, then renamed into place;
//! - writing a blob that is already there does nothing (idempotent pulls);
//! - `index.json` is replaced atomically; a stored name always points at a manifest whose config is
//!   present and whose layers are present as blobs or extracted (refs are written last);
//! - the layout is readable by other tools (`skopeo copy oci:<root>/store:hello:latest …`) for
//!   images pulled with `--keep-blobs`.
//!
//! Callers hold the state lock for every mutation.

mod refs;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::PathBuf;

use oci_spec::image::{ImageConfiguration, ImageManifest};

use crate::digest::{Digest, HashingWriter};
use crate::fsutil::{self, IoContext, PathError};
use crate::imgref::ImageName;
use crate::layout::Layout;

pub use refs::{StoredImage, Transport};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Io(#[from] PathError),
    /// A blob's content does not hash to the digest it was announced with.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },
    /// A blob has more bytes than its descriptor says (it was read no further).
    #[error("{what}: larger than its descriptor's {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    /// A blob is not the size its descriptor says.
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    /// A stored JSON document (index, manifest, config) does not parse.
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// Reading the content of a blob failed (source archive, network stream).
    #[error("{what}: {source}")]
    Read { what: String, source: io::Error },
    #[error("image {query:?} not found in the store (see `hoist images`)")]
    NotFound { query: String },
    #[error("image {query:?} is ambiguous: it matches {matches}")]
    Ambiguous { query: String, matches: String },
}

/// The OCI layout store. Cheap to construct; every call goes to disk.
#[derive(Debug, Clone)]
pub struct Store {
    layout: Layout,
}

impl Store {
    /// Opens the store, creating the layout (and the state root, mode 0700) when missing. A state
    /// root that already exists is made mode 0700 too (a root created by hand with 0755 would let
    /// every user read the image store and the deployments' data). A root that is a symlink is
    /// accepted (relocating `/var/lib/hoist` is common); the directory it names is what is chmod'ed.
    pub fn open(layout: &Layout) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        for (dir, mode) in
            [(layout.root().to_path_buf(), 0o700), (layout.store().join("blobs/sha256"), 0o755), (layout.tmp(), 0o700)]
        {
            if !dir.is_dir() {
                fsutil::ensure_dir(&dir, mode)?;
            }
        }
        for dir in [layout.root().to_path_buf(), layout.tmp()] {
            let meta = fs::metadata(&dir).at(&dir)?;
            if meta.permissions().mode() & 0o7777 != 0o700 {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).at(&dir)?;
            }
        }
        let marker = layout.store().join("oci-layout");
        if !marker.exists() {
            fsutil::write_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)?;
        }
        Ok(Store { layout: layout.clone() })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.layout.blob(d)
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// The size of a stored blob, if present.
    pub fn blob_size(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(d)).ok().filter(|m| m.is_file()).map(|m| m.len())
    }

    /// True when the blob is stored with exactly `size` bytes (one of another size is corrupt).
    pub fn has_blob_sized(&self, d: &Digest, size: u64) -> bool {
        self.blob_size(d) == Some(size)
    }

    /// Reads a whole (small) blob: manifests and configs.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        Ok(fs::read(&p).at(&p)?)
    }

    /// Streams `reader` into the store. With `expected`, the content must hash to it (and have
    /// `expected_size` bytes when given); nothing is stored otherwise. Returns the digest and size.
    /// When the blob is already present (with `expected_size` bytes, when given) the reader is not
    /// consumed; a present blob of another size is corrupt and is replaced by the verified new
    /// content. With `expected_size`, at most `expected_size + 1` bytes are read: more is refused
    /// ([`StoreError::TooLarge`]) without reading on.
    pub fn put_blob(
        &self,
        what: &str,
        reader: impl Read,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64)> {
        if let Some(d) = expected
            && let Some(size) = self.blob_size(d)
            && expected_size.is_none_or(|e| e == size)
        {
            return Ok((d.clone(), size));
        }
        let mut w = self.blob_writer()?;
        let read_err = |source| StoreError::Read { what: what.to_string(), source };
        match expected_size {
            Some(limit) => {
                let n = io::copy(&mut reader.take(limit.saturating_add(1)), &mut w).map_err(read_err)?;
                if n > limit {
                    return Err(StoreError::TooLarge { what: what.to_string(), limit });
                }
            }
            None => {
                let mut reader = reader;
                io::copy(&mut reader, &mut w).map_err(read_err)?;
            }
        }
        w.commit(what, expected, expected_size)
    }

    /// A writer for a new blob: content goes to a temporary file under `<root>/tmp` and is hashed
    /// on the way; [`BlobWriter::commit`] checks it and renames it into place. Dropping the writer
    /// without committing leaves nothing behind.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let tmp_dir = self.layout.tmp();
        let tmp = tempfile::NamedTempFile::new_in(&tmp_dir).at(&tmp_dir)?;
        Ok(BlobWriter { inner: HashingWriter::new(tmp), blobs: self.layout.store().join("blobs/sha256") })
    }

    /// Stores an in-memory blob (manifests, configs).
    pub fn put_bytes(&self, what: &str, data: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        self.put_blob(what, data, expected, Some(data.len() as u64)).map(|(d, _)| d)
    }

    pub fn manifest(&self, d: &Digest) -> Result<ImageManifest> {
        let data = self.read_blob(d)?;
        serde_json::from_slice(&data)
            .map_err(|e| StoreError::Corrupt { path: self.blob_path(d), reason: format!("manifest: {e}") })
    }

    pub fn config(&self, manifest: &ImageManifest) -> Result<ImageConfiguration> {
        let d: Digest = parse_digest(manifest.config().digest().as_ref(), &self.layout.store())?;
        let data = self.read_blob(&d)?;
        serde_json::from_slice(&data)
            .map_err(|e| StoreError::Corrupt { path: self.blob_path(&d), reason: format!("image config: {e}") })
    }

    /// An image's config as plain JSON (for what `ImageConfiguration` does not model, such as
    /// Docker's `Healthcheck`).
    pub fn config_value(&self, manifest: &ImageManifest) -> Result<serde_json::Value> {
        let d: Digest = parse_digest(manifest.config().digest().as_ref(), &self.layout.store())?;
        let data = self.read_blob(&d)?;
        serde_json::from_slice(&data)
            .map_err(|e| StoreError::Corrupt { path: self.blob_path(&d), reason: format!("image config: {e}") })
    }

    /// The diff_ids of an image (its config's `rootfs.diff_ids`), checked one to one against its
    /// layers: the keys of its layers in the shared layer area.
    pub fn diff_ids(&self, manifest: &ImageManifest) -> Result<Vec<Digest>> {
        let config = self.config(manifest)?;
        let doc = self.layout.store();
        let ids = config.rootfs().diff_ids().iter().map(|d| parse_digest(d, &doc)).collect::<Result<Vec<_>>>()?;
        if ids.len() != manifest.layers().len() {
            let d: Digest = parse_digest(manifest.config().digest().as_ref(), &doc)?;
            return Err(StoreError::Corrupt {
                path: self.blob_path(&d),
                reason: format!("image config lists {} diff_ids for {} layers", ids.len(), manifest.layers().len()),
            });
        }
        Ok(ids)
    }

    /// Every blob digest a manifest needs: itself, its config and its layers.
    pub fn manifest_blobs(&self, manifest_digest: &Digest) -> Result<Vec<Digest>> {
        let m = self.manifest(manifest_digest)?;
        let mut out = vec![manifest_digest.clone()];
        let store = self.layout.store();
        out.push(parse_digest(m.config().digest().as_ref(), &store)?);
        for l in m.layers() {
            out.push(parse_digest(l.digest().as_ref(), &store)?);
        }
        Ok(out)
    }

    /// Every blob file in the store.
    pub fn all_blobs(&self) -> Result<Vec<Digest>> {
        let dir = self.layout.store().join("blobs/sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).at(&dir)? {
            let e = e.at(&dir)?;
            if let Ok(d) = Digest::from_hex(&e.file_name().to_string_lossy()) {
                out.push(d);
            }
        }
        Ok(out)
    }

    pub fn remove_blob(&self, d: &Digest) -> Result<u64> {
        let p = self.blob_path(d);
        let size = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(&p).at(&p)?;
        Ok(size)
    }

    /// Opens a blob for streaming.
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.blob_path(d);
        Ok(File::open(&p).at(&p)?)
    }

    /// Looks up a stored image by name (`hello`, `hello:v2`) or manifest digest prefix.
    pub fn resolve(&self, query: &str) -> Result<StoredImage> {
        let images = self.images()?;
        if let Some(name) = ImageName::parse(query)
            && let Some(img) = images.iter().find(|i| i.name == name)
        {
            return Ok(img.clone());
        }
        let hex = query.strip_prefix("sha256:").unwrap_or(query);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hex = hex.to_ascii_lowercase();
            let mut hits: Vec<&StoredImage> = images.iter().filter(|i| i.manifest.hex().starts_with(&hex)).collect();
            hits.dedup_by(|a, b| a.manifest == b.manifest);
            match hits.len() {
                0 => {}
                1 => return Ok(hits[0].clone()),
                _ => {
                    let matches = hits.iter().map(|i| i.name.to_string()).collect::<Vec<_>>().join(", ");
                    return Err(StoreError::Ambiguous { query: query.to_string(), matches });
                }
            }
        }
        Err(StoreError::NotFound { query: query.to_string() })
    }

    /// The image a name points at, if any.
    pub fn lookup(&self, name: &ImageName) -> Result<Option<StoredImage>> {
        Ok(self.images()?.into_iter().find(|i| &i.name == name))
    }
}

/// A blob being written; see [`Store::blob_writer`].
pub struct BlobWriter {
    inner: HashingWriter<tempfile::NamedTempFile>,
    blobs: PathBuf,
}

impl io::Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl BlobWriter {
    /// Checks the content against `expected` digest and size (when given), flushes it to disk and
    /// renames it to its digest. On a mismatch the temporary file is removed and nothing is stored.
    pub fn commit(self, what: &str, expected: Option<&Digest>, expected_size: Option<u64>) -> Result<(Digest, u64)> {
        let (tmp, actual, size) = self.inner.finish();
        if let Some(expected) = expected
            && *expected != actual
        {
            return Err(StoreError::DigestMismatch { what: what.to_string(), expected: expected.clone(), actual });
        }
        if let Some(expected) = expected_size
            && expected != size
        {
            return Err(StoreError::SizeMismatch { what: what.to_string(), expected, actual: size });
        }
        tmp.as_file().sync_data().at(tmp.path())?;
        let dest = self.blobs.join(actual.hex());
        tmp.persist(&dest).map_err(|e| PathError::new(&dest, e.error))?;
        Ok((actual, size))
    }
}

/// Parses a digest found inside a stored document.
pub fn parse_digest(s: &str, doc: &std::path::Path) -> Result<Digest> {
    s.parse().map_err(|e: crate::digest::InvalidDigest| StoreError::Corrupt {
        path: doc.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_blob_verifies_and_is_idempotent() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&Layout::new(d.path().join("root"))).unwrap();
        let good = Digest::of_bytes(b"hello");
        let bad = Digest::of_bytes(b"other");
        assert!(matches!(store.put_bytes("x", b"hello", Some(&bad)), Err(StoreError::DigestMismatch { .. })));
        assert!(!store.has_blob(&bad) && !store.has_blob(&good));
        assert!(matches!(
            store.put_blob("x", &b"hello"[..], Some(&good), Some(9)),
            Err(StoreError::SizeMismatch { .. })
        ));
        assert_eq!(store.put_bytes("x", b"hello", Some(&good)).unwrap(), good);
        assert_eq!(store.read_blob(&good).unwrap(), b"hello");
        // Already present: the reader is not even read.
        struct Boom;
        impl Read for Boom {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                panic!("must not be read")
            }
        }
        store.put_blob("x", Boom, Some(&good), None).unwrap();
        assert_eq!(fs::read_dir(store.layout().tmp()).unwrap().count(), 0, "no temp files left");
    }

    #[test]
    fn put_blob_is_bounded_and_rechecks_stored_sizes() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&Layout::new(d.path().join("root"))).unwrap();
        let good = Digest::of_bytes(b"hello");
        // An endless reader is read to the descriptor's size + 1, no further.
        let err = store.put_blob("blob x", io::repeat(0), Some(&good), Some(5)).unwrap_err();
        assert_eq!(err.to_string(), "blob x: larger than its descriptor's 5 bytes");
        assert!(!store.has_blob(&good));
        // A stored blob of the wrong size is corrupt: replaced by the verified content.
        fs::write(store.blob_path(&good), b"hello, truncated or padded").unwrap();
        assert!(!store.has_blob_sized(&good, 5));
        assert_eq!(store.put_blob("x", &b"hello"[..], Some(&good), Some(5)).unwrap(), (good.clone(), 5));
        assert_eq!(store.read_blob(&good).unwrap(), b"hello");
    }

    #[test]
    fn open_makes_an_existing_root_0700() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        Store::open(&Layout::new(root.clone())).unwrap();
        assert_eq!(fs::metadata(&root).unwrap().permissions().mode() & 0o7777, 0o700);
    }
}
