//! `hoist mount IMAGE DIR` / `hoist umount DIR`: a read-only view of an image's merged rootfs.
//!
//! ```text
//! mounts/<id>/mount.json   {"dir": "/abs/DIR", "image": "hello:latest", "manifest": "sha256:…", "state": …}
//! mounts/<id>/rootfs       empty, or a checkout of the image (hard links into the layer area)
//! ```
//! `<id>` is derived from DIR, so one DIR has at most one view. DIR gets a read-only, nosuid,
//! nodev overlayfs stack of the image's layer trees (source `hoist-mount:<id>`, the mechanism
//! deployments use, see `rootfs`), or, for an image overlayfs cannot stack as it is, a bind
//! mount of the checkout; `umount` detaches it and deletes the checkout. The view does not pin
//! the image: a later `images prune` may delete the layer trees under an overlay view (files
//! already open stay readable), so unmount views before pruning.
//!
//! DIR is a path the user names, so it is opened once (`O_DIRECTORY|O_NOFOLLOW`, after
//! canonicalising) and everything after that — the emptiness check and the mount itself — acts
//! on that fd: the mount is a detached clone of the checkout (`open_tree(OPEN_TREE_CLONE)`,
//! already read-only) attached with `move_mount(…, MOVE_MOUNT_T_EMPTY_PATH)` onto the fd, so
//! swapping DIR for a symlink meanwhile cannot redirect it. `umount` uses `UMOUNT_NOFOLLOW`.
//!
//! Crash safety: `mount.json` is written with `"state": "pending"` before the checkout and
//! rewritten as `"mounted"` after the mount (atomically, not synced: a view dies with the boot). A `mounts/<id>` whose record is missing, unreadable
//! or pending — or whose DIR is not actually mounted with this checkout (checked in
//! `/proc/self/mountinfo` and by inode) — is the leftover of an interrupted or stale mount;
//! `mount`, `umount` and `images prune` remove it.

use std::ffi::OsStr;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use rustix::mount::{MoveMountFlags, OpenTreeFlags};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fsutil::{self, IoContext, PathError};
use crate::images::{self, ImagesError};
use crate::layers::ExtractOptions;
use crate::layout::Layout;
use crate::progress::Progress;
use crate::rooted::RootDir;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{}: {reason}", dir.display())]
    Dir { dir: PathBuf, reason: &'static str },
    #[error("{}: mount: {source}", dir.display())]
    Mount { dir: PathBuf, source: nix::Error },
    #[error("{}: mount: {reason}", dir.display())]
    Overlay { dir: PathBuf, reason: String },
    #[error("{}: is not a hoist mount (see `hoist mount`)", dir.display())]
    NotOurs { dir: PathBuf },
    #[error(transparent)]
    Images(#[from] ImagesError),
    #[error(transparent)]
    Io(#[from] PathError),
}

/// Where a mount got to. Records written before this field existed were complete mounts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountState {
    /// Written before the checkout; the mount may or may not have happened.
    Pending,
    #[default]
    Mounted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MountRecord {
    pub dir: PathBuf,
    pub image: String,
    pub manifest: Digest,
    #[serde(default)]
    pub state: MountState,
}

/// What `umount` did.
#[derive(Debug)]
pub struct Unmounted {
    pub dir: PathBuf,
    /// The record, when there was a readable one.
    pub record: Option<MountRecord>,
    /// True when DIR carried no mount of ours: only the leftover of an interrupted (or stale)
    /// `hoist mount` was removed.
    pub leftover_only: bool,
}

fn mount_id(dir: &Path) -> String {
    Digest::of_bytes(dir.as_os_str().as_encoded_bytes()).hex()[..16].to_string()
}

/// Canonicalises `dir` and opens it without following a final symlink.
fn open_dir(dir: &Path) -> Result<(PathBuf, RootDir), MountError> {
    let c =
        fs::canonicalize(dir).map_err(|_| MountError::Dir { dir: dir.to_path_buf(), reason: "no such directory" })?;
    match RootDir::open(&c) {
        Ok(fd) => Ok((c, fd)),
        Err(_) => Err(MountError::Dir { dir: dir.to_path_buf(), reason: "not a directory" }),
    }
}

fn errno(e: rustix::io::Errno) -> nix::Error {
    nix::Error::from_raw(e.raw_os_error())
}

/// Whether the directory behind `fd` has no entries.
fn is_empty(dir: &RootDir) -> std::io::Result<bool> {
    for e in rustix::fs::Dir::read_from(dir.fd())? {
        let n = e?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

fn read_record(base: &Path) -> Option<MountRecord> {
    let data =
        crate::rooted::read_regular_limited(crate::rooted::open_regular(&base.join("mount.json")).ok()?, 1 << 20)
            .ok()?;
    serde_json::from_slice(&data).ok()
}

/// Written whole (temp file + rename) but not synced: a view does not outlive a boot, and a record
/// a crash lost leaves a `mounts/<id>` without one, which is cleaned up as a leftover.
fn write_record(base: &Path, rec: &MountRecord) -> Result<(), PathError> {
    fsutil::write_replace(&base.join("mount.json"), &serde_json::to_vec_pretty(rec).expect("serializes"), 0o600)
}

/// One line of `/proc/self/mountinfo`.
struct MountEntry {
    point: PathBuf,
    fstype: String,
    source: String,
}

/// Mount points in `/proc/self/mountinfo` (field 5, octal escapes undone).
#[cfg(test)]
fn mount_points() -> Vec<PathBuf> {
    mount_entries().into_iter().map(|m| m.point).collect()
}

/// The mounts of `/proc/self/mountinfo`, in order: mount point (field 5), and after the ` - `
/// separator the filesystem type and source (octal escapes undone).
fn mount_entries() -> Vec<MountEntry> {
    let Ok(text) = fs::read("/proc/self/mountinfo") else { return Vec::new() };
    let mut out = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
        let Some(field) = fields.get(4) else { continue };
        let tail = fields.iter().position(|f| *f == b"-").map(|i| &fields[i + 1..]).unwrap_or(&[]);
        let text_of =
            |i: usize| tail.get(i).map(|f| String::from_utf8_lossy(&unescape(f)).into_owned()).unwrap_or_default();
        out.push(MountEntry {
            point: PathBuf::from(OsStr::from_bytes(&unescape(field))),
            fstype: text_of(0),
            source: text_of(1),
        });
    }
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&field[i + 1..i + 4]).unwrap_or("x"), 8)
        {
            p.push(v);
            i += 4;
        } else {
            p.push(field[i]);
            i += 1;
        }
    }
    p
}

/// The source an overlay view on `dir` is mounted with.
fn overlay_source(dir: &Path) -> String {
    format!("hoist-mount:{}", mount_id(dir))
}

/// Whether `dir` is a mount point carrying our view: our overlay stack, or a mount whose root is
/// the checkout `rootfs`.
fn mounted_by_us(dir: &Path, rootfs: &Path) -> bool {
    let entries = mount_entries();
    if !entries.iter().any(|m| m.point == dir) {
        return false;
    }
    // The last mount on `dir` is the one visible there.
    if entries
        .iter()
        .rev()
        .find(|m| m.point == dir)
        .is_some_and(|m| m.fstype == "overlay" && m.source == overlay_source(dir))
    {
        return true;
    }
    let (Ok(d), Ok(r)) = (RootDir::open(dir), RootDir::open(rootfs)) else { return false };
    match (rustix::fs::fstat(d.fd()), rustix::fs::fstat(r.fd())) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// Removes `mounts/<id>` (after detaching a bind of the checkout onto itself that an
/// interrupted [`mount`] may have left).
fn remove_base(base: &Path) -> Result<(), PathError> {
    let rootfs = base.join("rootfs");
    for _ in 0..16 {
        if nix::mount::umount2(&rootfs, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).is_err() {
            break;
        }
    }
    let Some(parent) = base.parent() else { return Ok(()) };
    let parent_fd = RootDir::open(parent).at(parent)?;
    let name = base.file_name().unwrap_or_default();
    crate::rooted::remove_in(parent_fd.fd(), name, &mut |_| {}).at(base)
}

/// Mounts a read-only view of the stored image `query` on `dir` (which must be an empty directory).
pub fn mount(
    store: &Store,
    query: &str,
    dir: &Path,
    extract: &ExtractOptions,
    progress: &Progress,
) -> Result<MountRecord, MountError> {
    let (dir, dir_fd) = open_dir(dir)?;
    if !is_empty(&dir_fd).at(&dir)? {
        return Err(MountError::Dir { dir, reason: "not empty" });
    }
    let img = store.resolve(query).map_err(ImagesError::from)?;
    let layout = store.layout();
    let base = layout.mounts().join(mount_id(&dir));
    let rootfs = base.join("rootfs");
    if fs::symlink_metadata(&base).is_ok() {
        let rec = read_record(&base);
        if rec.is_some_and(|r| r.dir == dir && mounted_by_us(&dir, &rootfs)) {
            return Err(MountError::Dir { dir, reason: "already has a hoist mount (hoist umount it first)" });
        }
        // An interrupted or stale mount: nothing of it is on DIR.
        remove_base(&base)?;
    }
    fsutil::ensure_dir(&layout.mounts(), 0o700)?;
    let mut rec = MountRecord {
        dir: dir.clone(),
        image: img.name.to_string(),
        manifest: img.manifest,
        state: MountState::Pending,
    };
    let result = (|| {
        fs::create_dir(&base).at(&base)?;
        write_record(&base, &rec)?;
        crate::fault::point("mount:pending");
        match images::overlay_lowers(store, &rec.manifest, extract, progress)? {
            Some(lowers) => {
                fs::create_dir(&rootfs).at(&rootfs)?;
                crate::fault::point("mount:checkout");
                // Stacked on hoist's own directory, then moved onto DIR's fd like a checkout.
                crate::rootfs::mount(&rootfs, &lowers, crate::rootfs::Upper::None, &overlay_source(&dir))
                    .map_err(|e| MountError::Overlay { dir: dir.clone(), reason: e.to_string() })?;
                let moved = mount_ro_on(&rootfs, &dir_fd, &dir);
                let _ = nix::mount::umount2(&rootfs, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW);
                moved?;
            }
            None => {
                images::checkout(store, &rec.manifest, &rootfs, extract, progress)?;
                crate::fault::point("mount:checkout");
                mount_ro_on(&rootfs, &dir_fd, &dir)?;
            }
        }
        crate::fault::point("mount:mounted");
        rec.state = MountState::Mounted;
        write_record(&base, &rec)?;
        Ok(())
    })();
    if let Err(e) = result {
        if mounted_by_us(&dir, &rootfs) {
            let _ = nix::mount::umount2(&dir, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW);
        }
        let _ = remove_base(&base);
        return Err(e);
    }
    Ok(rec)
}

/// Mounts `src` (a checkout in hoist's own state, a trusted path) read-only, nosuid, nodev onto
/// the directory open as `target` — the fd, never a path that could have been swapped.
pub fn mount_ro_on(src: &Path, target: &RootDir, dir: &Path) -> Result<(), MountError> {
    let err = |source| MountError::Mount { dir: dir.to_path_buf(), source };
    // 1. A read-only bind of the checkout onto itself, so the clone below is read-only from the
    //    start (never a writable view of the shared layer files on DIR, not even briefly).
    nix::mount::mount(Some(src), src, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(err)?;
    let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let detach_src = || {
        let _ = nix::mount::umount2(src, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW);
    };
    if let Err(e) = nix::mount::mount(None::<&str>, src, None::<&str>, ro, None::<&str>) {
        detach_src();
        return Err(err(e));
    }
    // 2. A detached clone of it, attached onto the target fd.
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        src,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_SYMLINK_NOFOLLOW,
    );
    let result = match tree {
        Ok(tree) => rustix::mount::move_mount(
            tree.as_fd(),
            c"",
            target.fd(),
            c"",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .map_err(|e| err(errno(e))),
        // Kernels before 5.2: a bind mount (of a read-only mount: read-only too) onto the fd's
        // magic link, which names the opened directory whatever its path now holds.
        Err(rustix::io::Errno::NOSYS) => {
            let fd_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&target.fd()));
            nix::mount::mount(Some(src), fd_path.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(err)
        }
        Err(e) => Err(err(errno(e))),
    };
    detach_src();
    result
}

/// Unmounts a view made by [`mount`] and deletes its checkout; removes the leftover of an
/// interrupted `hoist mount` on DIR as well.
pub fn umount(layout: &Layout, dir: &Path) -> Result<Unmounted, MountError> {
    let (dir, _fd) = open_dir(dir)?;
    let base = layout.mounts().join(mount_id(&dir));
    if fs::symlink_metadata(&base).is_err() {
        return Err(MountError::NotOurs { dir });
    }
    let rootfs = base.join("rootfs");
    let record = read_record(&base).filter(|r| r.dir == dir);
    let ours = mounted_by_us(&dir, &rootfs);
    if ours {
        match nix::mount::umount2(&dir, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {} // EINVAL: not mounted any more
            Err(nix::errno::Errno::EBUSY) => {
                nix::mount::umount2(&dir, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW)
                    .map_err(|source| MountError::Mount { dir: dir.clone(), source })?
            }
            Err(source) => return Err(MountError::Mount { dir, source }),
        }
    }
    remove_base(&base)?;
    let leftover_only = !ours && record.as_ref().is_none_or(|r| r.state == MountState::Pending);
    Ok(Unmounted { dir, record, leftover_only })
}

/// `images prune`: removes every `mounts/<id>` that is not a live view (see the module doc).
/// Returns how many were removed.
pub fn prune(layout: &Layout) -> Result<usize, PathError> {
    let mounts = layout.mounts();
    let Ok(rd) = fs::read_dir(&mounts) else { return Ok(0) };
    let mut removed = 0;
    for e in rd.flatten() {
        let base = e.path();
        let live = read_record(&base).is_some_and(|r| {
            r.dir.is_absolute()
                && base.file_name() == Some(OsStr::new(&mount_id(&r.dir)))
                && mounted_by_us(&r.dir, &base.join("rootfs"))
        });
        if !live {
            remove_base(&base)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// DIR is opened, then its path is swapped for a symlink: the view lands on the opened
    /// directory, never on the symlink's target.
    #[test]
    fn mount_follows_the_fd_not_the_path() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("marker"), "view").unwrap();
        let dir = d.path().join("dir");
        fs::create_dir(&dir).unwrap();
        let elsewhere = d.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let (canon, fd) = open_dir(&dir).unwrap();
        // The swap: DIR moves aside, a symlink to `elsewhere` takes its name.
        let moved = d.path().join("moved");
        fs::rename(&dir, &moved).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
        mount_ro_on(&src, &fd, &canon).unwrap();
        assert!(!elsewhere.join("marker").exists(), "the symlink's target got nothing");
        assert_eq!(fs::read_to_string(moved.join("marker")).unwrap(), "view", "the opened directory got the view");
        let err = fs::write(moved.join("new"), "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS));
        assert!(!mount_points().contains(&src), "no bind left on the source");
        // umount by the symlink's path is refused (UMOUNT_NOFOLLOW), by the real path works.
        assert!(nix::mount::umount2(&dir, MntFlags::UMOUNT_NOFOLLOW).is_err());
        nix::mount::umount2(&moved, MntFlags::UMOUNT_NOFOLLOW).unwrap();
        assert!(!moved.join("marker").exists());
    }

    #[test]
    fn mountinfo_unescapes() {
        assert!(mount_points().contains(&PathBuf::from("/")) || !Path::new("/proc/self/mountinfo").exists());
    }
}
