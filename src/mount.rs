//! `hoist mount IMAGE DIR` / `hoist umount DIR`: a read-only view of an image's merged rootfs.
//!
//! ```text
//! mounts/<id>/rootfs       a checkout of the image (hard links into the layer area: cheap)
//! mounts/<id>/mount.json   {"dir": "/abs/DIR", "image": "hello:latest", "manifest": "sha256:…"}
//! ```
//! `<id>` is derived from DIR, so one DIR has at most one view. DIR gets a read-only bind mount
//! of the checkout; `umount` detaches it and deletes the checkout. The view does not pin the
//! image: removing the image later leaves the mounted files intact (they are hard links).

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fsutil::{self, IoContext, PathError};
use crate::images::{self, ImagesError};
use crate::layout::Layout;
use crate::progress::Progress;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{}: {reason}", dir.display())]
    Dir { dir: PathBuf, reason: &'static str },
    #[error("{}: mount: {source}", dir.display())]
    Mount { dir: PathBuf, source: nix::Error },
    #[error("{}: is not a hoist mount (see `hoist mount`)", dir.display())]
    NotOurs { dir: PathBuf },
    #[error(transparent)]
    Images(#[from] ImagesError),
    #[error(transparent)]
    Io(#[from] PathError),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MountRecord {
    pub dir: PathBuf,
    pub image: String,
    pub manifest: Digest,
}

fn mount_id(dir: &Path) -> String {
    Digest::of_bytes(dir.as_os_str().as_encoded_bytes()).hex()[..16].to_string()
}

fn canonical_dir(dir: &Path) -> Result<PathBuf, MountError> {
    let c =
        fs::canonicalize(dir).map_err(|_| MountError::Dir { dir: dir.to_path_buf(), reason: "no such directory" })?;
    if !c.is_dir() {
        return Err(MountError::Dir { dir: dir.to_path_buf(), reason: "not a directory" });
    }
    Ok(c)
}

/// Mounts a read-only view of the stored image `query` on `dir` (which must be an empty directory).
pub fn mount(store: &Store, query: &str, dir: &Path, progress: &Progress) -> Result<MountRecord, MountError> {
    let dir = canonical_dir(dir)?;
    if fs::read_dir(&dir).at(&dir)?.next().is_some() {
        return Err(MountError::Dir { dir, reason: "not empty" });
    }
    let img = store.resolve(query).map_err(ImagesError::from)?;
    let layout = store.layout();
    let base = layout.mounts().join(mount_id(&dir));
    if base.exists() {
        return Err(MountError::Dir { dir, reason: "already has a hoist mount (hoist umount it first)" });
    }
    fsutil::ensure_dir(&layout.mounts(), 0o700)?;
    let rootfs = base.join("rootfs");
    let result = (|| {
        fsutil::ensure_dir(&base, 0o700)?;
        images::checkout(store, &img.manifest, &rootfs, progress)?;
        let rec = MountRecord { dir: dir.clone(), image: img.name.to_string(), manifest: img.manifest.clone() };
        fsutil::write_atomic(&base.join("mount.json"), &serde_json::to_vec_pretty(&rec).expect("serializes"), 0o600)?;
        bind_ro(&rootfs, &dir)?;
        Ok(rec)
    })();
    if result.is_err() {
        let _ = fsutil::remove_any(&base);
    }
    result
}

fn bind_ro(src: &Path, dir: &Path) -> Result<(), MountError> {
    let err = |source| MountError::Mount { dir: dir.to_path_buf(), source };
    nix::mount::mount(Some(src), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(err)?;
    let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if let Err(e) = nix::mount::mount(None::<&str>, dir, None::<&str>, ro, None::<&str>) {
        let _ = nix::mount::umount2(dir, MntFlags::MNT_DETACH);
        return Err(err(e));
    }
    Ok(())
}

/// Unmounts a view made by [`mount`] and deletes its checkout.
pub fn umount(layout: &Layout, dir: &Path) -> Result<MountRecord, MountError> {
    let dir = canonical_dir(dir)?;
    let base = layout.mounts().join(mount_id(&dir));
    let rec_path = base.join("mount.json");
    let rec: MountRecord = match fs::read(&rec_path) {
        Ok(d) => serde_json::from_slice(&d).map_err(|_| MountError::NotOurs { dir: dir.clone() })?,
        Err(_) => return Err(MountError::NotOurs { dir }),
    };
    match nix::mount::umount2(&dir, MntFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {} // EINVAL: not mounted any more
        Err(nix::errno::Errno::EBUSY) => nix::mount::umount2(&dir, MntFlags::MNT_DETACH)
            .map_err(|source| MountError::Mount { dir: dir.clone(), source })?,
        Err(source) => return Err(MountError::Mount { dir, source }),
    }
    fsutil::remove_any(&base).at(&base)?;
    Ok(rec)
}
