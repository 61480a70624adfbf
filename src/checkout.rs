//! Checkout: merge an image's extracted layers into one rootfs directory.
//!
//! Layers are applied bottom to top with OCI changeset semantics:
//! 1. whiteouts first: `.wh.NAME` removes NAME from what the lower layers made, `.wh..wh..opq`
//!    empties its directory of lower-layer entries (never of this layer's);
//! 2. then the layer's entries, parents before children: files, symlinks and special files are
//!    **hard-linked** from the layer area (no data is copied or decompressed; a copy is the
//!    fallback when linking is impossible), directories are created with the layer's metadata;
//! 3. then hardlinks whose target lives in a lower layer (`LayerRecord::external_links`).
//!
//! Safety across layers: an explicit directory entry replaces a lower layer's symlink or file,
//! but a directory the layer only implied (an entry `evil/x` with no `evil/` entry) over a lower
//! symlink `evil -> /etc` is refused: that is a write through a symlink planted one layer below.
//! Nothing is ever followed, so the checkout cannot touch anything outside `dest`.
//!
//! The shared inodes make a checkout read-only by contract: deployments mount their rootfs
//! read-only; nothing may modify files in a checkout in place.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;

use crate::digest::Digest;
use crate::fsutil::{self, PathError};
use crate::layers::paths::{self, Ancestors, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::layers::{self, LayerRecord};

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

/// Merges `layers` (bottom first) into `dest`, which must be an empty or missing directory.
pub fn merge(layers: &[LayerTree<'_>], dest: &Path) -> Result<CheckoutStats> {
    let mut stats = CheckoutStats::default();
    let mut dir_times = Vec::new();
    fsutil::ensure_dir(dest, 0o755)?;
    for layer in layers {
        Merger { layer, dest, stats: &mut stats, dir_times: &mut dir_times }.apply()?;
    }
    // Directory times last (adding entries changes them), deepest first; for a directory set by
    // several layers the newest wins (reverse, then a stable sort keeps it first).
    dir_times.reverse();
    dir_times.sort_by(|a, b| b.0.cmp(&a.0));
    dir_times.dedup_by(|a, b| a.0 == b.0);
    for (abs, mtime) in dir_times {
        let t = nix::sys::time::TimeSpec::new(mtime, 0);
        // The directory may have been removed by a later layer's whiteout.
        match nix::sys::stat::utimensat(None, &abs, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => {}
            Err(e) => return Err(io_at(&abs)(e.into())),
        }
    }
    Ok(stats)
}

struct Merger<'a, 'b> {
    layer: &'a LayerTree<'b>,
    dest: &'a Path,
    stats: &'a mut CheckoutStats,
    /// (directory, mtime) to set once everything is in place.
    dir_times: &'a mut Vec<(PathBuf, i64)>,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> CheckoutError + '_ {
    move |e| CheckoutError::Io(PathError::new(path, e))
}

impl Merger<'_, '_> {
    fn apply(&mut self) -> Result<()> {
        let entries = walk(&self.layer.root)?;
        let implicit: HashSet<&str> = self.layer.record.implicit_dirs.iter().map(String::as_str).collect();
        // 1. whiteouts
        for (rel, _) in &entries {
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
        for (rel, ft) in &entries {
            let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(WHITEOUT_PREFIX) {
                continue;
            }
            if ft.is_dir() {
                self.dir(rel, implicit.contains(rel.to_str().unwrap_or("")))?;
            } else {
                let parent = rel.parent().unwrap_or(Path::new(""));
                if handles.as_ref().is_none_or(|h| h.parent != parent) {
                    handles = Some(DirPair::open(&self.layer.root, self.dest, parent)?);
                }
                self.link(rel, handles.as_ref().expect("opened above"))?;
            }
        }
        // 3. hardlinks into lower layers
        for (path, target) in &self.layer.record.external_links {
            self.external_link(Path::new(path), Path::new(target))?;
        }
        Ok(())
    }

    /// Ancestors of `rel` in dest, for paths this layer itself does not create.
    fn dest_ancestors(&self, rel: &Path) -> Result<Ancestors> {
        paths::ancestors(self.dest, rel).map_err(io_at(self.dest))
    }

    fn opaque(&mut self, dir: &Path) -> Result<()> {
        if self.dest_ancestors(&dir.join("x"))? != Ancestors::Dirs {
            return Ok(()); // nothing below to hide
        }
        let abs = self.dest.join(dir);
        if !fs::symlink_metadata(&abs).is_ok_and(|m| m.is_dir()) {
            return Ok(());
        }
        for e in fs::read_dir(&abs).map_err(io_at(&abs))? {
            let p = e.map_err(io_at(&abs))?.path();
            fsutil::remove_any(&p).map_err(io_at(&p))?;
            self.stats.removed += 1;
        }
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path) -> Result<()> {
        // A whiteout below a symlink hides nothing that is really there: ignore it.
        if self.dest_ancestors(rel)? != Ancestors::Dirs {
            return Ok(());
        }
        let abs = self.dest.join(rel);
        if fs::symlink_metadata(&abs).is_ok() {
            fsutil::remove_any(&abs).map_err(io_at(&abs))?;
            self.stats.removed += 1;
        }
        Ok(())
    }

    fn dir(&mut self, rel: &Path, implicit: bool) -> Result<()> {
        let abs = self.dest.join(rel);
        let src = self.layer.root.join(rel);
        match fs::symlink_metadata(&abs) {
            Ok(m) if m.is_dir() => {
                if implicit {
                    return Ok(());
                }
            }
            Ok(m) => {
                if implicit && m.file_type().is_symlink() {
                    return Err(CheckoutError::ThroughSymlink {
                        layer: self.layer.diff_id.clone(),
                        entry: rel.display().to_string(),
                        symlink: rel.display().to_string(),
                    });
                }
                // An implied directory over a lower file: the layer was made from a tree
                // where this was a directory, so the directory wins.
                fsutil::remove_any(&abs).map_err(io_at(&abs))?;
                fs::create_dir(&abs).map_err(io_at(&abs))?;
                self.stats.dirs += 1;
            }
            Err(_) => {
                fs::create_dir(&abs).map_err(io_at(&abs))?;
                self.stats.dirs += 1;
            }
        }
        let m = fs::symlink_metadata(&src).map_err(io_at(&src))?;
        self.dir_times.push((abs.clone(), std::os::unix::fs::MetadataExt::mtime(&m)));
        let f = fs::File::open(&abs).map_err(io_at(&abs))?;
        layers::apply_fd_meta(&f, &layers::meta_of(&m)).map_err(io_at(&abs))?;
        layers::copy_xattrs(&abs, &layers::read_xattrs(&src)).map_err(io_at(&abs))?;
        Ok(())
    }

    /// Hard-links one entry of this layer into place, replacing what lower layers put there.
    fn link(&mut self, rel: &Path, h: &DirPair) -> Result<()> {
        use nix::errno::Errno;
        let name = rel.file_name().expect("entries have names");
        let at =
            |_| nix::unistd::linkat(Some(h.src.as_raw_fd()), name, Some(h.dest.as_raw_fd()), name, AtFlags::empty());
        let mut res = at(());
        if res == Err(Errno::EEXIST) {
            let abs = self.dest.join(rel);
            fsutil::remove_any(&abs).map_err(io_at(&abs))?;
            res = at(());
        }
        match res {
            Ok(()) => {
                self.stats.linked += 1;
                Ok(())
            }
            Err(Errno::EXDEV | Errno::EMLINK | Errno::EPERM) => {
                let (src, abs) = (self.layer.root.join(rel), self.dest.join(rel));
                copy_entry(&src, &abs).map_err(io_at(&abs))?;
                self.stats.copied += 1;
                Ok(())
            }
            Err(e) => Err(io_at(&self.dest.join(rel))(e.into())),
        }
    }

    fn link_or_copy(&mut self, src: &Path, dest: &Path) -> Result<()> {
        match fs::hard_link(src, dest) {
            Ok(()) => {
                self.stats.linked += 1;
                Ok(())
            }
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EXDEV | nix::libc::EMLINK | nix::libc::EPERM)) => {
                copy_entry(src, dest).map_err(io_at(dest))?;
                self.stats.copied += 1;
                Ok(())
            }
            Err(e) => Err(io_at(dest)(e)),
        }
    }

    fn external_link(&mut self, rel: &Path, target: &Path) -> Result<()> {
        let bad = |reason| CheckoutError::BadHardlink {
            layer: self.layer.diff_id.clone(),
            entry: rel.display().to_string(),
            target: target.display().to_string(),
            reason,
        };
        match self.dest_ancestors(target)? {
            Ancestors::Dirs => {}
            Ancestors::Symlink(_) => return Err(bad("target goes through a symlink")),
            _ => return Err(bad("target does not exist")),
        }
        if self.dest_ancestors(rel)? != Ancestors::Dirs {
            return Err(bad("link goes through a symlink or missing directory"));
        }
        let target_abs = self.dest.join(target);
        match fs::symlink_metadata(&target_abs) {
            Ok(m) if m.is_dir() => return Err(bad("target is a directory")),
            Ok(_) => {}
            Err(_) => return Err(bad("target does not exist")),
        }
        let abs = self.dest.join(rel);
        if fs::symlink_metadata(&abs).is_ok() {
            fsutil::remove_any(&abs).map_err(io_at(&abs))?;
        }
        self.link_or_copy(&target_abs, &abs)
    }
}

/// The same directory, open in the layer (source) and in the checkout (destination).
struct DirPair {
    parent: PathBuf,
    src: fs::File,
    dest: fs::File,
}

impl DirPair {
    fn open(layer_root: &Path, dest_root: &Path, parent: &Path) -> Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let open = |p: &Path| {
            fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
                .open(p)
                .map_err(io_at(p))
        };
        Ok(DirPair {
            parent: parent.to_path_buf(),
            src: open(&layer_root.join(parent))?,
            dest: open(&dest_root.join(parent))?,
        })
    }
}

/// Pre-order walk of a layer tree: `(relative path, file type)`, parents before children.
fn walk(root: &Path) -> Result<Vec<(PathBuf, fs::FileType)>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = root.join(&rel);
        let mut children: Vec<(PathBuf, fs::FileType)> = Vec::new();
        for e in fs::read_dir(&abs).map_err(io_at(&abs))? {
            let e = e.map_err(io_at(&abs))?;
            let ft = e.file_type().map_err(io_at(&e.path()))?;
            children.push((rel.join(e.file_name()), ft));
        }
        children.sort_by(|a, b| a.0.cmp(&b.0));
        for (p, ft) in children.iter().rev() {
            if ft.is_dir() {
                stack.push(p.clone());
            }
        }
        // Emit children of this directory now; subdirectories are expanded later, which still
        // keeps every parent before its children.
        out.extend(children);
    }
    Ok(out)
}

/// Copies one non-directory entry with its metadata (fallback when hard-linking fails).
fn copy_entry(src: &Path, dest: &Path) -> io::Result<()> {
    let m = fs::symlink_metadata(src)?;
    let ft = m.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dest)?;
        return layers::apply_path_meta(dest, &layers::meta_of(&m), false);
    }
    if ft.is_file() {
        fs::copy(src, dest)?;
        let f = fs::File::open(dest)?;
        layers::apply_fd_meta(&f, &layers::meta_of(&m))?;
        return layers::copy_xattrs(dest, &layers::read_xattrs(src));
    }
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let kind = if ft.is_char_device() {
        nix::sys::stat::SFlag::S_IFCHR
    } else if ft.is_block_device() {
        nix::sys::stat::SFlag::S_IFBLK
    } else if ft.is_fifo() {
        nix::sys::stat::SFlag::S_IFIFO
    } else {
        return Ok(()); // sockets are not layer content
    };
    nix::sys::stat::mknod(dest, kind, nix::sys::stat::Mode::from_bits_truncate(0o600), m.rdev())?;
    layers::apply_path_meta(dest, &layers::meta_of(&m), true)
}
