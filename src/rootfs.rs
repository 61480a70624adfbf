//! A container's root filesystem: an overlayfs mount of the image's layer trees, made where it
//! is used and gone when its user is.
//!
//! - **Deployments** (runner): the runner enters a mount namespace of its own, mounts a small
//!   tmpfs on the bundle's `rootfs/` and stacks overlayfs over it — the layer trees as read-only
//!   lower layers, an upper and work directory on that tmpfs. libcontainer then builds the
//!   container from `rootfs/` as usual (mount points are created in the upper layer; the root is
//!   remounted read-only as `root.readonly` asks). Nothing is mounted on the host: the namespace
//!   dies with the runner. A container that may remount its root read-write (CAP_SYS_ADMIN)
//!   writes into the throwaway upper layer, never into the layer store or another container.
//! - **`hoist mount`**: the same stack without an upper layer (read-only by construction), on
//!   the caller's directory in the caller's namespace.
//!
//! The lower layers come from the deployment's `config.json` annotation [`LOWER_ANNOTATION`]: a
//! JSON array of absolute layer-tree paths, top first, written when the slot was prepared. A
//! slot without it (made by an earlier release, an image overlayfs cannot stack, `--runtime`)
//! has a complete hard-link checkout in `rootfs/`, and the runner stacks the same private
//! overlay over that directory instead, so writes never reach the shared inodes either way.
//!
//! Long stacks: the layers are passed as `/proc/self/fd/N` relative to that directory (the
//! process changes into it for the mount call), a few bytes per layer instead of a path, so one
//! mount option page holds overlayfs's own maximum of 500 layers on every kernel (Debian 12's
//! 6.1 has no `lowerdir+`). No short-name links are kept on disk.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::mount::{MountFlags, MountPropagationFlags};

use crate::digest::Digest;
use crate::layers::LayerRecord;
use crate::layout::Layout;
use crate::rooted::RootDir;

/// config.json annotation naming the lower layers of a deployment's root (see the module doc).
pub const LOWER_ANNOTATION: &str = "io.hoist.rootfs.lower";

/// The most lower layers overlayfs stacks (`OVL_MAX_STACK`).
const MAX_LAYERS: usize = 500;

/// Ceiling of the tmpfs holding a container's upper layer: mount points and whatever a
/// container that remounted its root read-write wrote there.
const UPPER_SIZE: &str = "size=64m";

/// The layer trees of an image as overlayfs lower layers, top first — `None` when a layer
/// cannot be stacked as it is (`LayerRecord::overlay_ready`), or holds a whiteout overlayfs
/// would list (see [`stray_whiteout`]). Layers below an opaque root are left out (overlayfs
/// does not read opacity on a layer's root).
pub fn lower_dirs(layout: &Layout, layers: &[(Digest, LayerRecord)]) -> Option<Vec<PathBuf>> {
    if layers.is_empty() || !layers.iter().all(|(_, r)| r.overlay_ready()) {
        return None;
    }
    let mut out = Vec::new();
    let mut recs = Vec::new();
    for (id, rec) in layers.iter().rev() {
        out.push(layout.layer(id).join("rootfs"));
        recs.push(rec);
        if rec.opaque_root() {
            break;
        }
    }
    let roots: Vec<RootDir> = out.iter().map(|d| RootDir::open(d)).collect::<io::Result<_>>().ok()?;
    if recs.iter().enumerate().any(|(i, rec)| rec.whiteouts.iter().any(|w| stray_whiteout(&roots, i, Path::new(w)))) {
        return None;
    }
    Some(out)
}

/// Whether the whiteout `rel` of layer `i` (of `roots`, top first) would show in a listing:
/// overlayfs hides whiteouts when it merges a directory, but lists a directory that only one
/// layer provides as that layer has it, whiteout devices included. Such a whiteout hides
/// nothing (no lower layer has its directory): a hard-link checkout simply ignores it.
fn stray_whiteout(roots: &[RootDir], i: usize, rel: &Path) -> bool {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let mut layers: Vec<usize> = (0..roots.len()).collect();
    let mut prefix = PathBuf::new();
    for c in parent.components() {
        prefix.push(c);
        let mut next = Vec::new();
        for &l in &layers {
            let Ok(Some(st)) = roots[l].stat(&prefix) else { continue };
            if crate::layers::is_whiteout_device(&st) || crate::rooted::Kind::of(&st) != crate::rooted::Kind::Dir {
                break;
            }
            next.push(l);
            if is_opaque(&roots[l], &prefix) {
                break;
            }
        }
        layers = next;
    }
    // The root is always merged (at least two lowers); a deeper directory only when several
    // layers provide it.
    !parent.as_os_str().is_empty() && layers == [i]
}

fn is_opaque(root: &RootDir, rel: &Path) -> bool {
    root.open_at(rel, OFlags::RDONLY | OFlags::DIRECTORY, 0).is_ok_and(|fd| crate::layers::has_opaque_xattr(fd.as_fd()))
}

/// The lower layers a config.json names, if it names any.
pub fn lowers_of(
    spec_annotations: Option<&std::collections::HashMap<String, String>>,
) -> io::Result<Option<Vec<PathBuf>>> {
    let Some(v) = spec_annotations.and_then(|a| a.get(LOWER_ANNOTATION)) else { return Ok(None) };
    let dirs: Vec<PathBuf> =
        serde_json::from_str(v).map_err(|e| io::Error::other(format!("annotation {LOWER_ANNOTATION}: {e}")))?;
    if dirs.is_empty() || dirs.iter().any(|d| !d.is_absolute()) {
        return Err(io::Error::other(format!("annotation {LOWER_ANNOTATION}: not a list of absolute paths")));
    }
    Ok(Some(dirs))
}

/// The annotation value for `dirs`.
pub fn annotation(dirs: &[PathBuf]) -> String {
    serde_json::to_string(dirs).expect("paths serialize")
}

/// Whether the stack has an upper layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upper {
    /// Read-only, nosuid, nodev view (`hoist mount`).
    None,
    /// A private tmpfs under `target` holds the upper and work directories (containers).
    Tmpfs,
}

/// Mounts `lowers` (top first) on `target` (an empty directory) in the current mount namespace; `source` is what
/// `/proc/self/mountinfo` shows as the mount's source.
pub fn mount(target: &Path, lowers: &[PathBuf], upper: Upper, source: &str) -> io::Result<()> {
    if lowers.is_empty() || lowers.len() > MAX_LAYERS {
        return Err(io::Error::other(format!("{} layers: overlayfs stacks 1 to {MAX_LAYERS}", lowers.len())));
    }
    // Opened in this namespace (overlayfs takes layers only from the caller's namespace), before
    // anything is mounted on `target` (which may itself be the lower layer).
    let mut fds = Vec::with_capacity(lowers.len() + 1);
    let mut dirs: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
    if upper == Upper::None && dirs.len() == 1 {
        // Without an upper layer overlayfs wants two lower ones: the (empty) target itself
        // serves as the bottom one.
        dirs.push(target);
    }
    for l in dirs {
        let fd = rustix::fs::open(l, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| at(l, e.into()))?;
        fds.push(fd);
    }
    let lowerdir: Vec<String> = fds.iter().map(|fd| raw(fd).to_string()).collect();
    let mut opts = format!("lowerdir={},redirect_dir=nofollow,metacopy=off", lowerdir.join(":"));
    // A container's root keeps setuid programs and device nodes working, as a directory would
    // (the runtime masks what the spec says); a view for reading gets neither.
    let mut flags = MountFlags::empty();
    let tmpfs = match upper {
        Upper::None => {
            flags |= MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV;
            None
        }
        Upper::Tmpfs => {
            rustix::mount::mount(
                "tmpfs",
                target,
                "tmpfs",
                MountFlags::empty(),
                cstr(&format!("mode=0755,{UPPER_SIZE}"))?.as_c_str(),
            )
            .map_err(|e| at(target, e.into()))?;
            let made = (|| -> io::Result<OwnedFd> {
                let t = rustix::fs::open(target, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
                // The merged root takes the upper root's owner, mode and time: the image's.
                let top = rustix::fs::fstat(&fds[0])?;
                rustix::fs::mkdirat(&t, "upper", Mode::from_raw_mode(top.st_mode & 0o7777))?;
                rustix::fs::mkdirat(&t, "work", Mode::from_raw_mode(0o700))?;
                let u = rustix::fs::openat(
                    &t,
                    "upper",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                rustix::fs::fchown(
                    &u,
                    Some(rustix::fs::Uid::from_raw(top.st_uid)),
                    Some(rustix::fs::Gid::from_raw(top.st_gid)),
                )?;
                rustix::fs::fchmod(&u, Mode::from_raw_mode(top.st_mode & 0o7777))?;
                Ok(t)
            })();
            match made {
                Ok(t) => {
                    opts.push_str(&format!(",upperdir={0}/upper,workdir={0}/work", raw(&t)));
                    Some(t)
                }
                Err(e) => {
                    let _ = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH);
                    return Err(at(target, e));
                }
            }
        }
    };
    if opts.len() >= 4096 {
        return Err(io::Error::other(format!("{} layers do not fit one overlayfs mount", lowers.len())));
    }
    let cwd = rustix::fs::open(".", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::process::chdir("/proc/self/fd")?;
    let opts = cstr(&opts)?;
    let res = rustix::mount::mount(source, target, "overlay", flags, opts.as_c_str());
    rustix::process::fchdir(&cwd)?;
    if let Err(e) = res {
        if tmpfs.is_some() {
            let _ = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH);
        }
        return Err(io::Error::other(format!("overlayfs on {}: {}", target.display(), io::Error::from(e))));
    }
    drop(tmpfs);
    drop(fds);
    Ok(())
}

/// For the runner: moves this process into a mount namespace of its own whose mounts do not
/// propagate to the host, and stacks the container's root on `rootfs` there — `lowers`, or the
/// complete checkout already in `rootfs` — with a tmpfs upper layer.
pub fn isolate(rootfs: &Path, lowers: Option<&[PathBuf]>) -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| io::Error::other(format!("unshare mount namespace: {e}")))?;
    // The copy of the mount holding `rootfs` stops propagating to the host (it still receives
    // the host's mounts); every other mount keeps its peers, so binds with shared propagation
    // behave as before.
    let holder = mount_point_of(rootfs)?;
    rustix::mount::mount_change(&holder, MountPropagationFlags::DOWNSTREAM).map_err(|e| at(&holder, e.into()))?;
    let own = [rootfs.to_path_buf()];
    mount(rootfs, lowers.unwrap_or(&own), Upper::Tmpfs, "hoist-rootfs")
}

/// The mount point of the mount `path` is on.
fn mount_point_of(path: &Path) -> io::Result<PathBuf> {
    let id = |p: &Path| -> io::Result<u64> {
        let st = rustix::fs::statx(rustix::fs::CWD, p, AtFlags::SYMLINK_NOFOLLOW, rustix::fs::StatxFlags::MNT_ID)
            .map_err(|e| at(p, e.into()))?;
        Ok(st.stx_mnt_id)
    };
    let mut cur = std::fs::canonicalize(path).map_err(|e| at(path, e))?;
    let mine = id(&cur)?;
    while let Some(parent) = cur.parent() {
        if id(parent)? != mine {
            break;
        }
        cur = parent.to_path_buf();
    }
    Ok(cur)
}

fn cstr(s: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(s).map_err(|_| io::Error::other("a mount option holds a NUL byte"))
}

fn raw(fd: &impl AsFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_fd().as_raw_fd()
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
