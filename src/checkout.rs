//! Checkout: merge an image's extracted layers into one rootfs directory.
//!
//! Deployments normally need no checkout at all: their root is an overlayfs mount of the layer
//! trees, made by the runner (`rootfs` module). This merge serves the rest — images whose layers
//! overlayfs cannot stack as they are (`LayerRecord::overlay_ready`), layers extracted without
//! root, `--runtime runc|crun` (they need a directory) — and, restricted to a few paths
//! ([`Only`]), the files hoist itself reads from an image (`/exports`, `/etc/passwd`).
//!
//! Layers are applied bottom to top with OCI changeset semantics:
//! 1. whiteouts first: a whiteout (a `.wh.NAME` marker, or in overlay form a character device
//!    0/0 named NAME) removes NAME from what the lower layers made; an opaque directory (a
//!    `.wh..wh..opq` marker, or `trusted.overlay.opaque`) loses its lower-layer entries (never
//!    this layer's);
//! 2. then the layer's entries, parents before children: files, symlinks and special files are
//!    **hard-linked** from the layer area (no data is copied or decompressed; a copy is the
//!    fallback when linking is impossible), directories are created with the layer's metadata;
//! 3. then hardlinks whose target lives in a lower layer (`LayerRecord::external_links`).
//!
//! Safety across layers: an explicit directory entry replaces a lower layer's symlink or file,
//! but a directory the layer only implied (an entry `evil/x` with no `evil/` entry) over a lower
//! symlink `evil -> /etc` is refused: that is a write through a symlink planted one layer below.
//! Nothing is ever followed: every path is resolved beneath `dest` (or the layer's tree) with
//! [`RootDir`], so the checkout cannot touch anything outside `dest`.
//!
//! The shared inodes make a checkout read-only by contract: nothing may modify files in a
//! checkout in place, and the runner never runs a container on one directly (it stacks a
//! private overlayfs over it, so even a container that remounts its root read-write writes into
//! a throwaway upper layer).

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::digest::Digest;
use crate::fsutil::{self, PathError};
use crate::layers::paths::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::layers::{self, LayerRecord, WhiteoutForm};
use crate::rooted::{self, Kind, RootDir};

pub type Result<T, E = CheckoutError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("layer {layer}: entry {entry:?}: writes through symlink {symlink:?} from a lower layer")]
    ThroughSymlink { layer: Digest, entry: String, symlink: String },
    #[error("layer {layer}: hardlink {entry:?} -> {target:?}: {reason}")]
    BadHardlink { layer: Digest, entry: String, target: String, reason: &'static str },
    #[error("layer {layer} is not extracted")]
    NotExtracted { layer: Digest },
    #[error(transparent)]
    Layer(#[from] layers::LayerError),
    #[error("checkout: {0}")]
    Io(#[from] PathError),
}

/// What a checkout did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CheckoutStats {
    pub linked: u64,
    pub copied: u64,
    pub dirs: u64,
    pub removed: u64,
}

/// One extracted layer to merge.
pub struct LayerTree<'a> {
    pub diff_id: &'a Digest,
    pub root: PathBuf,
    pub record: &'a LayerRecord,
}

/// Which paths a merge makes.
#[derive(Debug, Clone, Copy)]
pub enum Only<'a> {
    /// The whole image.
    All,
    /// These relative paths (a directory with everything below it) and their ancestors. The
    /// cost depends on what is below them, not on the image's size.
    Paths(&'a [&'a str]),
}

/// Merges `layers` (bottom first) into `dest`, which must be an empty or missing directory.
pub fn merge(layers: &[LayerTree<'_>], dest: &Path) -> Result<CheckoutStats> {
    merge_only(layers, dest, Only::All)
}

/// [`merge`], restricted to `only`.
pub fn merge_only(layers: &[LayerTree<'_>], dest: &Path, only: Only<'_>) -> Result<CheckoutStats> {
    let mut stats = CheckoutStats::default();
    let mut dir_times = Vec::new();
    fsutil::ensure_dir(dest, 0o755)?;
    let dest_root = RootDir::open(dest).map_err(io_at(dest))?;
    for layer in layers {
        let src = RootDir::open(&layer.root).map_err(io_at(&layer.root))?;
        Merger { layer, src: &src, dest: &dest_root, stats: &mut stats, dir_times: &mut dir_times, only }.apply()?;
    }
    // Directory times last (adding entries changes them), deepest first; for a directory set by
    // several layers the newest wins (reverse, then a stable sort keeps it first).
    dir_times.reverse();
    dir_times.sort_by(|a, b| b.0.cmp(&a.0));
    dir_times.dedup_by(|a, b| a.0 == b.0);
    for (rel, mtime) in dir_times {
        // The directory may have been removed (or replaced) by a later layer.
        let fd = match dest_root.open_at(&rel, OFlags::RDONLY | OFlags::DIRECTORY, 0) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound || rooted::is_symlink_error(&e) => continue,
            Err(e) => return Err(io_at(&dest_root.display(&rel))(e)),
        };
        rooted::set_mtime(fd.as_fd(), mtime).map_err(io_at(&dest_root.display(&rel)))?;
    }
    Ok(stats)
}

struct Merger<'a, 'b> {
    layer: &'a LayerTree<'b>,
    /// The layer's extracted tree.
    src: &'a RootDir,
    /// The checkout; every path below is resolved beneath it, never through a symlink.
    dest: &'a RootDir,
    stats: &'a mut CheckoutStats,
    /// (directory, mtime) to set once everything is in place.
    dir_times: &'a mut Vec<(PathBuf, i64)>,
    only: Only<'a>,
}

impl Only<'_> {
    /// Whether a merge restricted to these paths handles `rel` (an ancestor of a wanted path,
    /// the path itself, or something below it).
    fn covers(&self, rel: &Path) -> bool {
        match self {
            Only::All => true,
            Only::Paths(paths) => paths.iter().map(Path::new).any(|p| p.starts_with(rel) || rel.starts_with(p)),
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> CheckoutError + '_ {
    move |e| CheckoutError::Io(PathError::new(path, e))
}

/// Where the parent of a path stands in the checkout.
enum Parent {
    Dir(OwnedFd),
    Missing,
    /// An ancestor is a symlink or not a directory.
    Blocked,
}

impl Merger<'_, '_> {
    fn apply(&mut self) -> Result<()> {
        let entries = match self.only {
            Only::All => walk(self.src, Path::new(""))?,
            Only::Paths(paths) => walk_paths(self.src, paths)?,
        };
        let implicit: HashSet<&str> = self.layer.record.implicit_dirs.iter().map(String::as_str).collect();
        let rec = self.layer.record;
        let only = self.only;
        let overlay_form = rec.form == WhiteoutForm::Overlay;
        let devices: HashSet<&Path> = rec.whiteouts.iter().map(Path::new).collect();
        // Whiteouts are data about the lower layers, never entries of the checkout.
        let is_whiteout = |rel: &Path| {
            if overlay_form {
                devices.contains(rel)
            } else {
                rel.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(WHITEOUT_PREFIX))
            }
        };
        // Directories this layer has real content below (not only whiteout markers): an implied
        // directory holding nothing but markers was made to store them and creates nothing.
        let mut needed: HashSet<&Path> = HashSet::new();
        let real = entries.iter().filter(|(rel, kind)| {
            let implied = *kind == Kind::Dir && implicit.contains(rel.to_str().unwrap_or(""));
            !(is_whiteout(rel) || implied)
        });
        // Hardlinks into lower layers are placed in step 3 and need their parents too.
        let links = self.layer.record.external_links.iter().map(|(p, _)| Path::new(p.as_str()));
        for rel in real.map(|(rel, _)| rel.as_path()).chain(links) {
            let mut p = rel.parent();
            while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
                if !needed.insert(d) {
                    break;
                }
                p = d.parent();
            }
        }
        // 1. whiteouts
        if overlay_form {
            for d in rec.opaque_dirs.iter().map(Path::new).filter(|d| only.covers(d)) {
                self.opaque(d)?;
            }
            for w in rec.whiteouts.iter().map(Path::new).filter(|w| only.covers(w)) {
                self.whiteout(w)?;
            }
        }
        for (rel, _) in entries.iter().filter(|_| !overlay_form) {
            let Some(name) = rel.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name == OPAQUE_MARKER {
                self.opaque(rel.parent().unwrap_or(Path::new("")))?;
            } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                self.whiteout(&rel.with_file_name(hidden))?;
            }
        }
        // 2. entries, parents first (walk order). The walk lists a directory's children together,
        //    so non-directories are linked by name between two open directory handles (no path
        //    resolution per entry: this is most of a checkout's syscalls).
        let mut handles: Option<DirPair> = None;
        for (rel, kind) in &entries {
            if is_whiteout(rel) {
                continue;
            }
            if *kind == Kind::Dir {
                handles = None;
                let is_implicit = implicit.contains(rel.to_str().unwrap_or(""));
                if is_implicit && !needed.contains(rel.as_path()) {
                    continue;
                }
                self.dir(rel, is_implicit)?;
            } else {
                let parent = rel.parent().unwrap_or(Path::new(""));
                if handles.as_ref().is_none_or(|h| h.parent != parent) {
                    handles = Some(DirPair::open(self.src, self.dest, parent)?);
                }
                self.link(rel, handles.as_ref().expect("opened above"))?;
            }
        }
        // 3. hardlinks into lower layers
        for (path, target) in self.layer.record.external_links.iter().filter(|(p, _)| only.covers(Path::new(p))) {
            self.external_link(Path::new(path), Path::new(target))?;
        }
        Ok(())
    }

    fn parent_of(&self, rel: &Path) -> Result<Parent> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        match self.dest.open_at(parent, OFlags::RDONLY | OFlags::DIRECTORY, 0) {
            Ok(fd) => Ok(Parent::Dir(fd)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Parent::Missing),
            Err(e) if rooted::is_symlink_error(&e) => Ok(Parent::Blocked),
            Err(e) => Err(io_at(&self.dest.display(parent))(e)),
        }
    }

    fn remove(&mut self, dir: BorrowedFd<'_>, rel: &Path) -> Result<()> {
        let name = rel.file_name().expect("entries have names");
        rooted::remove_in(dir, name, &mut |_| {}).map_err(io_at(&self.dest.display(rel)))
    }

    fn opaque(&mut self, dir: &Path) -> Result<()> {
        // Nothing below to hide when the directory is missing or not a real directory.
        let fd = match self.dest.open_at(dir, OFlags::RDONLY | OFlags::DIRECTORY, 0) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound || rooted::is_symlink_error(&e) => return Ok(()),
            Err(e) => return Err(io_at(&self.dest.display(dir))(e)),
        };
        let mut names = Vec::new();
        for e in rustix::fs::Dir::read_from(&fd).map_err(|e| io_at(&self.dest.display(dir))(e.into()))? {
            let e = e.map_err(|e| io_at(&self.dest.display(dir))(e.into()))?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(std::ffi::OsStr::from_bytes(n).to_os_string());
            }
        }
        for n in names {
            self.remove(fd.as_fd(), &dir.join(n))?;
            self.stats.removed += 1;
        }
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path) -> Result<()> {
        // A whiteout below a symlink hides nothing that is really there: ignore it.
        let Parent::Dir(dir) = self.parent_of(rel)? else {
            return Ok(());
        };
        let name = rel.file_name().expect("entries have names");
        if rooted::stat_in(dir.as_fd(), name).map_err(io_at(&self.dest.display(rel)))?.is_some() {
            self.remove(dir.as_fd(), rel)?;
            self.stats.removed += 1;
        }
        Ok(())
    }

    fn dir(&mut self, rel: &Path, implicit: bool) -> Result<()> {
        let at = self.dest.display(rel);
        let Parent::Dir(parent) = self.parent_of(rel)? else {
            // Parents come first in the walk, so this is a lower symlink a whiteout did not clear.
            return Err(CheckoutError::ThroughSymlink {
                layer: self.layer.diff_id.clone(),
                entry: rel.display().to_string(),
                symlink: rel.parent().unwrap_or(Path::new("")).display().to_string(),
            });
        };
        let name = rel.file_name().expect("entries have names");
        let mkdir = |m: &mut Self| -> Result<()> {
            rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)).map_err(|e| io_at(&at)(e.into()))?;
            m.stats.dirs += 1;
            Ok(())
        };
        match rooted::stat_in(parent.as_fd(), name).map_err(io_at(&at))?.map(|s| Kind::of(&s)) {
            Some(Kind::Dir) => {
                if implicit {
                    return Ok(());
                }
            }
            Some(kind) => {
                if implicit && kind == Kind::Symlink {
                    return Err(CheckoutError::ThroughSymlink {
                        layer: self.layer.diff_id.clone(),
                        entry: rel.display().to_string(),
                        symlink: rel.display().to_string(),
                    });
                }
                // An implied directory over a lower file: the layer was made from a tree
                // where this was a directory, so the directory wins.
                self.remove(parent.as_fd(), rel)?;
                mkdir(self)?;
            }
            None => mkdir(self)?,
        }
        let src = File::from(
            self.src.open_at(rel, OFlags::RDONLY | OFlags::DIRECTORY, 0).map_err(io_at(&self.src.display(rel)))?,
        );
        let m = src.metadata().map_err(io_at(&self.src.display(rel)))?;
        self.dir_times.push((rel.to_path_buf(), std::os::unix::fs::MetadataExt::mtime(&m)));
        let f = File::from(
            rustix::fs::openat(
                &parent,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_at(&at)(e.into()))?,
        );
        layers::apply_fd_meta(&f, &layers::meta_of(&m)).map_err(io_at(&at))?;
        let xattrs: Vec<_> = rooted::get_xattrs(src.as_fd())
            .map_err(io_at(&self.src.display(rel)))?
            .into_iter()
            .filter(|(k, _)| layers::xattr_allowed(k))
            .collect();
        rooted::set_xattrs(f.as_fd(), &xattrs).map_err(io_at(&at))?;
        Ok(())
    }

    /// Hard-links one entry of this layer into place, replacing what lower layers put there.
    fn link(&mut self, rel: &Path, h: &DirPair) -> Result<()> {
        use rustix::io::Errno;
        let name = rel.file_name().expect("entries have names");
        let at = || rustix::fs::linkat(&h.src, name, &h.dest, name, AtFlags::empty());
        let mut res = at();
        if res == Err(Errno::EXIST) {
            self.remove(h.dest.as_fd(), rel)?;
            res = at();
        }
        match res {
            Ok(()) => {
                self.stats.linked += 1;
                Ok(())
            }
            Err(Errno::XDEV | Errno::MLINK | Errno::PERM) => {
                copy_entry(h.src.as_fd(), name, h.dest.as_fd(), name).map_err(io_at(&self.dest.display(rel)))?;
                self.stats.copied += 1;
                Ok(())
            }
            Err(e) => Err(io_at(&self.dest.display(rel))(e.into())),
        }
    }

    fn external_link(&mut self, rel: &Path, target: &Path) -> Result<()> {
        let bad = |reason| CheckoutError::BadHardlink {
            layer: self.layer.diff_id.clone(),
            entry: rel.display().to_string(),
            target: target.display().to_string(),
            reason,
        };
        let tdir = match self.parent_of(target)? {
            Parent::Dir(fd) => fd,
            Parent::Blocked => return Err(bad("target goes through a symlink")),
            Parent::Missing => return Err(bad("target does not exist")),
        };
        let Parent::Dir(dir) = self.parent_of(rel)? else {
            return Err(bad("link goes through a symlink or missing directory"));
        };
        let tname = target.file_name().ok_or_else(|| bad("target does not exist"))?;
        match rooted::stat_in(tdir.as_fd(), tname).map_err(io_at(&self.dest.display(target)))? {
            Some(st) if Kind::of(&st) == Kind::Dir => return Err(bad("target is a directory")),
            Some(_) => {}
            None => return Err(bad("target does not exist")),
        }
        let name = rel.file_name().expect("entries have names");
        if rooted::stat_in(dir.as_fd(), name).map_err(io_at(&self.dest.display(rel)))?.is_some() {
            self.remove(dir.as_fd(), rel)?;
        }
        match rustix::fs::linkat(&tdir, tname, &dir, name, AtFlags::empty()) {
            Ok(()) => {
                self.stats.linked += 1;
                Ok(())
            }
            Err(rustix::io::Errno::XDEV | rustix::io::Errno::MLINK | rustix::io::Errno::PERM) => {
                copy_entry(tdir.as_fd(), tname, dir.as_fd(), name).map_err(io_at(&self.dest.display(rel)))?;
                self.stats.copied += 1;
                Ok(())
            }
            Err(e) => Err(io_at(&self.dest.display(rel))(e.into())),
        }
    }
}

/// The same directory, open in the layer (source) and in the checkout (destination).
struct DirPair {
    parent: PathBuf,
    src: OwnedFd,
    dest: OwnedFd,
}

impl DirPair {
    fn open(src: &RootDir, dest: &RootDir, parent: &Path) -> Result<Self> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY;
        Ok(DirPair {
            parent: parent.to_path_buf(),
            src: src.open_at(parent, flags, 0).map_err(io_at(&src.display(parent)))?,
            dest: dest.open_at(parent, flags, 0).map_err(io_at(&dest.display(parent)))?,
        })
    }
}

/// [`walk`] restricted to `paths`: each wanted path's ancestors (those the layer has), the path,
/// and, when it is a directory, everything below it — parents before children, no duplicates.
fn walk_paths(root: &RootDir, paths: &[&str]) -> Result<Vec<(PathBuf, Kind)>> {
    let mut out: Vec<(PathBuf, Kind)> = Vec::new();
    let mut seen = HashSet::new();
    for want in paths.iter().map(Path::new) {
        let mut prefix = PathBuf::new();
        for c in want.components() {
            prefix.push(c);
            let Some(st) = root.stat(&prefix).map_err(io_at(&root.display(&prefix)))? else { break };
            let kind = Kind::of(&st);
            if seen.insert(prefix.clone()) {
                out.push((prefix.clone(), kind));
            }
            if kind != Kind::Dir {
                break;
            }
            if prefix == want {
                for (p, k) in walk(root, want)? {
                    if seen.insert(p.clone()) {
                        out.push((p, k));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Pre-order walk of a layer tree below `start`: `(relative path, kind)`, parents before
/// children. Every directory is opened beneath the layer root without following symlinks.
fn walk(root: &RootDir, start: &Path) -> Result<Vec<(PathBuf, Kind)>> {
    let mut out = Vec::new();
    let mut stack = vec![start.to_path_buf()];
    while let Some(rel) = stack.pop() {
        let at = root.display(&rel);
        let fd = root.open_at(&rel, OFlags::RDONLY | OFlags::DIRECTORY, 0).map_err(io_at(&at))?;
        let mut children: Vec<(PathBuf, Kind)> = Vec::new();
        for e in rustix::fs::Dir::read_from(&fd).map_err(|e| io_at(&at)(e.into()))? {
            let e = e.map_err(|e| io_at(&at)(e.into()))?;
            let n = e.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            let n = std::ffi::OsStr::from_bytes(n);
            let kind = match e.file_type() {
                rustix::fs::FileType::Directory => Kind::Dir,
                rustix::fs::FileType::RegularFile => Kind::File,
                rustix::fs::FileType::Symlink => Kind::Symlink,
                rustix::fs::FileType::Unknown => {
                    rooted::stat_in(fd.as_fd(), n).map_err(io_at(&at))?.map(|s| Kind::of(&s)).unwrap_or(Kind::Other)
                }
                _ => Kind::Other,
            };
            children.push((rel.join(n), kind));
        }
        children.sort_by(|a, b| a.0.cmp(&b.0));
        for (p, kind) in children.iter().rev() {
            if *kind == Kind::Dir {
                stack.push(p.clone());
            }
        }
        // Emit children of this directory now; subdirectories are expanded later, which still
        // keeps every parent before its children.
        out.extend(children);
    }
    Ok(out)
}

/// Copies the non-directory `from` in `src` to `to` in `dest` with its metadata (fallback when
/// hard-linking fails). Nothing is followed, and nothing existing is replaced.
fn copy_entry(
    src: BorrowedFd<'_>,
    from: &std::ffi::OsStr,
    dest: BorrowedFd<'_>,
    to: &std::ffi::OsStr,
) -> io::Result<()> {
    let Some(st) = rooted::stat_in(src, from)? else {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    };
    let meta = layers::Meta { uid: st.st_uid, gid: st.st_gid, mode: st.st_mode & 0o7777, mtime: st.st_mtime };
    let ft = rustix::fs::FileType::from_raw_mode(st.st_mode);
    match ft {
        rustix::fs::FileType::Symlink => {
            let target = rustix::fs::readlinkat(src, from, Vec::new())?;
            rustix::fs::symlinkat(target.as_c_str(), dest, to)?;
            rooted::chown_in(dest, to, meta.uid, meta.gid)?;
            rooted::set_mtime_in(dest, to, meta.mtime)
        }
        rustix::fs::FileType::RegularFile => {
            let mut input = File::from(rustix::fs::openat(
                src,
                from,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?);
            let mut output = File::from(rustix::fs::openat(
                dest,
                to,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?);
            io::copy(&mut input, &mut output)?;
            layers::apply_fd_meta(&output, &meta)?;
            let xattrs: Vec<_> =
                rooted::get_xattrs(input.as_fd())?.into_iter().filter(|(k, _)| layers::xattr_allowed(k)).collect();
            rooted::set_xattrs(output.as_fd(), &xattrs)
        }
        rustix::fs::FileType::CharacterDevice | rustix::fs::FileType::BlockDevice | rustix::fs::FileType::Fifo => {
            rustix::fs::mknodat(dest, to, ft, Mode::from_raw_mode(0o600), st.st_rdev)?;
            rooted::chown_in(dest, to, meta.uid, meta.gid)?;
            rustix::fs::chmodat(dest, to, Mode::from_raw_mode(meta.mode), AtFlags::empty())?;
            rooted::set_mtime_in(dest, to, meta.mtime)
        }
        _ => Ok(()), // sockets are not layer content
    }
}
