//! The state root and every path under it.
//!
//! ```text
//! <root>/                       (default /var/lib/hoist, mode 0700)
//!   store/                      OCI image layout: oci-layout, index.json (refs), blobs/sha256/<hex>
//!   layers/<diffid-hex>/        one extracted layer, shared by every image that has it:
//!       rootfs/                 the layer's files; whiteouts kept as empty `.wh.*` marker files
//!       layer.json              what the tree alone cannot say (see layers::LayerRecord)
//!   containers/NAME/            one container: slots 0/ 1/, current -> 0|1, txn
//!                               (owned by deploy::container, which documents it)
//!   mounts/<id>/                read-only views made by `hoist mount`
//!   tmp/                        scratch on the same filesystem, so finished work is renamed into place
//!   lock                        flock(2) held by every mutating command
//!
//! <run>/                        (default /run/hoist: runtime state, gone at reboot)
//!   containers/<id>/            libcontainer's state of a running container  } owned by
//!   bundles/<id>/               the runner's copy of a running bundle        } runner
//! ```
//! No other module builds paths from strings: they ask the [`Layout`] (and, inside a
//! subtree, the module named above as its owner).

use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// Default state root.
pub const DEFAULT_ROOT: &str = "/var/lib/hoist";

/// Default runtime state root (the runner's; `hoist run` reads it).
pub const DEFAULT_RUN_ROOT: &str = "/run/hoist";

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    run: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into(), run: PathBuf::from(DEFAULT_RUN_ROOT) }
    }

    /// Another runtime state root (tests).
    pub fn with_run_root(mut self, run: impl Into<PathBuf>) -> Self {
        self.run = run.into();
        self
    }

    /// The runtime state root (see the module doc).
    pub fn run_root(&self) -> &Path {
        &self.run
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    pub fn blob(&self, d: &Digest) -> PathBuf {
        self.store().join("blobs/sha256").join(d.hex())
    }

    pub fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// Directory of one extracted layer, keyed by its diff_id (uncompressed digest).
    pub fn layer(&self, diff_id: &Digest) -> PathBuf {
        self.layers().join(diff_id.hex())
    }

    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub fn mounts(&self) -> PathBuf {
        self.root.join("mounts")
    }

    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }
}
