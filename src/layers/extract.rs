//! One tar stream → one directory tree, following the rules in `paths` and the OCI changeset format.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use tar::EntryType;

use super::paths::{self, BadName};
use super::{ExtractOptions, LayerError, LayerRecord, Result};
use crate::digest::{Digest, HashingReader};
use crate::fsutil::{self, IoContext};
use crate::rooted::{self, Kind, RootDir};

/// xattrs a layer may set; everything else (security.selinux, trusted.*, system.*) is dropped.
pub fn xattr_allowed(name: &str) -> bool {
    name == "security.capability" || name.starts_with("user.")
}

/// The xattr overlayfs reads as "this directory hides the lower layers' entries".
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Whether the open directory `dir` carries `trusted.overlay.opaque=y`.
pub fn has_opaque_xattr(dir: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 1];
    matches!(rustix::fs::fgetxattr(dir, OPAQUE_XATTR, &mut buf), Ok(1) if buf[0] == b'y')
}

/// Whether a stat is overlayfs's whiteout: a character device 0/0.
pub fn is_whiteout_device(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

/// Allow-listed extended attributes of one entry: (name, value).
pub(crate) type Xattrs = Vec<(String, Vec<u8>)>;

/// Ownership, mode and time of an entry, from its header and PAX records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime: i64,
}

struct Extractor<'a> {
    layer: &'a Digest,
    root: RootDir,
    opts: &'a ExtractOptions,
    implicit: HashSet<PathBuf>,
    /// Directories whose metadata is applied at the end (so read-only modes don't get in the
    /// way), keyed by path, with the inode they were created as. An entry is dropped as soon as
    /// a later entry replaces that directory or an ancestor (O(1) per entry: only removed trees
    /// are walked), and re-checked by inode when it is applied.
    dirs: HashMap<PathBuf, Deferred>,
    /// The layer root, open.
    root_dir: Rc<OwnedFd>,
    /// The directories of the previous entry's parent path, open, one per component (entries
    /// come in tree order). Dropped whenever anything is removed.
    open_dirs: Vec<(std::ffi::OsString, Rc<OwnedFd>)>,
    /// What a file created here gets without asking: its owner (None when the root is setgid,
    /// so the group is inherited) and the umask (None when unknown). fchown and fchmod are only
    /// called where the entry wants something else.
    created_owner: Option<(u32, u32)>,
    umask: Option<u32>,
    /// Bytes written into files so far (sparse entries count with their expanded size).
    written: u64,
    /// Whiteout marker files made (`.wh.*`), converted to overlayfs's form at the end.
    markers: Vec<PathBuf>,
    rec: LayerRecord,
}

struct Deferred {
    meta: Meta,
    xattrs: Xattrs,
    ino: u64,
}

pub fn extract(layer: &Digest, reader: Box<dyn Read>, root: &Path, opts: &ExtractOptions) -> Result<LayerRecord> {
    let limit_err = || LayerError::Limit {
        layer: layer.clone(),
        what: "bytes",
        limit: opts.limits.max_layer_bytes,
        env: super::ENV_MAX_LAYER_SIZE,
    };
    let archive_err = |source: io::Error| {
        if let Some(m) = super::decode::Mismatch::of(&source) {
            LayerError::BlobMismatch { layer: layer.clone(), mismatch: m.clone() }
        } else if source.kind() == io::ErrorKind::FileTooLarge {
            limit_err()
        } else {
            LayerError::Archive { layer: layer.clone(), source }
        }
    };
    let io_err = |source| LayerError::Io { layer: layer.clone(), source };
    fsutil::ensure_dir(root, 0o755).map_err(io_err)?;
    let root = RootDir::open(root).at(root).map_err(io_err)?;
    let root_dir = Rc::new(
        rustix::fs::openat(root.fd(), c".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io_err(fsutil::PathError::new(root.display(Path::new("")), e.into())))?,
    );
    let root_setgid = rustix::fs::fstat(root.fd())
        .map_err(|e| io_err(fsutil::PathError::new(root.display(Path::new("")), e.into())))?
        .st_mode
        & 0o2000
        != 0;
    let mut ex = Extractor {
        layer,
        root,
        opts,
        implicit: HashSet::new(),
        dirs: HashMap::new(),
        root_dir,
        open_dirs: Vec::new(),
        created_owner: (!root_setgid)
            .then(|| (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw())),
        umask: process_umask(),
        written: 0,
        markers: Vec::new(),
        rec: LayerRecord::default(),
    };
    let mut archive = tar::Archive::new(HashingReader::with_limit(reader, opts.limits.max_layer_bytes));
    for entry in archive.entries().map_err(archive_err)? {
        let entry = entry.map_err(archive_err)?;
        ex.rec.entries += 1;
        if ex.rec.entries > opts.limits.max_entries {
            return Err(LayerError::Limit {
                layer: layer.clone(),
                what: "entries",
                limit: opts.limits.max_entries,
                env: super::ENV_MAX_LAYER_ENTRIES,
            });
        }
        ex.entry(entry).map_err(|e| match e {
            LayerError::Archive { source, .. } => archive_err(source),
            e => e,
        })?;
    }
    let mut reader = archive.into_inner();
    reader.drain().map_err(archive_err)?;
    let (diff_id, size) = reader.finish();
    ex.open_dirs.clear();
    // Overlay form needs CAP_MKNOD and trusted.* xattrs; without them the markers stay (and a
    // checkout merges such a layer by hard links).
    if running_as_root() && !opts.keep_markers {
        ex.convert_whiteouts()?;
    }
    ex.finish_dirs()?;
    let mut implicit: Vec<String> = ex.implicit.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    implicit.sort();
    ex.rec.implicit_dirs = implicit;
    ex.rec.diff_id = Some(diff_id);
    ex.rec.size = size;
    Ok(ex.rec)
}

/// Whether `name` is a well-formed whiteout: `.wh.` followed by a real file name.
fn check_whiteout(name: &str) -> std::result::Result<(), &'static str> {
    if name == paths::OPAQUE_MARKER {
        return Ok(());
    }
    match name.strip_prefix(paths::WHITEOUT_PREFIX) {
        Some("") | Some(".") | Some("..") => Err("malformed whiteout (it names no file)"),
        _ => Ok(()),
    }
}

impl Extractor<'_> {
    fn bad(&self, entry: &Path, reason: impl Into<String>) -> LayerError {
        LayerError::BadEntry { layer: self.layer.clone(), entry: entry.display().to_string(), reason: reason.into() }
    }

    fn io(&self, rel: &Path, e: io::Error) -> LayerError {
        LayerError::Io { layer: self.layer.clone(), source: fsutil::PathError::new(self.root.display(rel), e) }
    }

    fn normalize(&self, raw: &Path) -> Result<PathBuf> {
        paths::normalize(raw, self.opts.limits.max_path_len).map_err(|b| match b {
            BadName::Traversal => LayerError::Traversal { layer: self.layer.clone(), entry: raw.display().to_string() },
            BadName::TooLong => LayerError::Limit {
                layer: self.layer.clone(),
                what: "bytes in an entry name",
                limit: self.opts.limits.max_path_len as u64,
                env: "(fixed)",
            },
        })
    }

    /// Opens the parent directory of `rel`, creating missing ancestors (recorded as implicit)
    /// and refusing symlinked or non-directory ones. Every step is an `openat` of one component
    /// with `O_NOFOLLOW | O_DIRECTORY` from the directory above: nothing outside the root is
    /// reachable. The directories of the previous entry's path stay open (entries come in tree
    /// order), so only the components that differ are opened.
    fn parent(&mut self, rel: &Path) -> Result<Rc<OwnedFd>> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let comps: Vec<&OsStr> = parent.iter().collect();
        let keep = self.open_dirs.iter().zip(&comps).take_while(|((name, _), c)| name == *c).count();
        self.open_dirs.truncate(keep);
        let mut prefix: PathBuf = comps[..keep].iter().collect();
        for name in &comps[keep..] {
            prefix.push(name);
            let cur = self.open_dirs.last().map_or(&self.root_dir, |(_, fd)| fd).clone();
            let open = || {
                rustix::fs::openat(
                    &*cur,
                    *name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            };
            let fd = match open() {
                Ok(fd) => fd,
                Err(e) => {
                    let kind =
                        rooted::stat_in(cur.as_fd(), name).map_err(|e| self.io(&prefix, e))?.map(|s| Kind::of(&s));
                    match kind {
                        None => {
                            rustix::fs::mkdirat(&*cur, *name, Mode::from_raw_mode(0o755))
                                .map_err(|e| self.io(&prefix, e.into()))?;
                            self.implicit.insert(prefix.clone());
                            open().map_err(|e| self.io(&prefix, e.into()))?
                        }
                        Some(Kind::Symlink) => {
                            return Err(LayerError::ThroughSymlink {
                                layer: self.layer.clone(),
                                entry: rel.display().to_string(),
                                symlink: prefix.display().to_string(),
                            });
                        }
                        Some(Kind::Dir) => return Err(self.io(&prefix, e.into())),
                        Some(_) => {
                            return Err(LayerError::ParentNotDir {
                                layer: self.layer.clone(),
                                entry: rel.display().to_string(),
                                parent: prefix.display().to_string(),
                            });
                        }
                    }
                }
            };
            self.open_dirs.push((name.to_os_string(), Rc::new(fd)));
        }
        Ok(self.open_dirs.last().map_or(&self.root_dir, |(_, fd)| fd).clone())
    }

    /// Removes what is at `rel` (in the parent open as `dir`), forgetting deferred metadata and
    /// implicit marks of every directory in the removed tree.
    fn remove(&mut self, dir: BorrowedFd<'_>, rel: &Path) -> Result<()> {
        let name = rel.file_name().expect("entries have names");
        // What was removed may be on the open path (a directory replaced by a symlink).
        self.open_dirs.clear();
        let mut removed = Vec::new();
        rooted::remove_in(dir, name, &mut |d| removed.push(d.to_path_buf())).map_err(|e| self.io(rel, e))?;
        for d in removed {
            let p = if d.as_os_str().is_empty() { rel.to_path_buf() } else { rel.join(d) };
            self.dirs.remove(&p);
            self.implicit.remove(&p);
        }
        self.implicit.remove(rel);
        Ok(())
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let arch = |source| LayerError::Archive { layer: self.layer.clone(), source };
        let raw = entry.path().map_err(arch)?.into_owned();
        let rel = self.normalize(&raw)?;
        let kind = entry.header().entry_type();
        let (meta, xattrs) = read_meta(&mut entry).map_err(|e| match e {
            MetaError::Io(e) => arch(e),
            MetaError::Bad(reason) => self.bad(&raw, reason),
        })?;
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        if rel.as_os_str().is_empty() {
            // The layer root ("./"): only a directory makes sense there.
            return if kind.is_dir() { Ok(()) } else { Err(self.bad(&raw, "the root of a layer must be a directory")) };
        }
        let name = rel.file_name().expect("non-empty").to_os_string();
        if let Some(n) = name.to_str()
            && let Err(reason) = check_whiteout(n)
        {
            return Err(self.bad(&raw, reason));
        }
        // A whiteout marker is an empty regular file, and nothing lives below one.
        if name.as_bytes().starts_with(paths::WHITEOUT_PREFIX.as_bytes()) && !kind.is_file() {
            return Err(self.bad(&raw, "malformed whiteout (not a regular file)"));
        }
        if rel.parent().is_some_and(|p| {
            p.components().any(|c| c.as_os_str().as_bytes().starts_with(paths::WHITEOUT_PREFIX.as_bytes()))
        }) {
            return Err(self.bad(&raw, "malformed whiteout (an entry below a whiteout)"));
        }
        let dir = self.parent(&rel)?;
        let dir = dir.as_fd();
        // A later entry with the same name replaces the earlier one (tar semantics), except that
        // a directory entry over an existing directory only updates its metadata. Directories,
        // files and symlinks are created first and only looked at when the name is taken (it
        // seldom is); other kinds clear the name first.
        let creates = matches!(
            kind,
            EntryType::Directory
                | EntryType::Regular
                | EntryType::Continuous
                | EntryType::GNUSparse
                | EntryType::Symlink
        );
        if !creates && rooted::stat_in(dir, &name).map_err(|e| self.io(&rel, e))?.is_some() {
            self.remove(dir, &rel)?;
        }
        match kind {
            EntryType::Directory => {
                self.create(dir, &name, &rel, true, || rustix::fs::mkdirat(dir, &*name, Mode::from_raw_mode(0o755)))?;
                let st = rooted::stat_in(dir, &name).map_err(|e| self.io(&rel, e))?.expect("just made");
                self.implicit.remove(&rel);
                self.dirs.insert(rel, Deferred { meta, xattrs, ino: st.st_ino });
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                // Created with its permission bits: the directory being extracted is private
                // (mode 0700 above it) until the layer is complete.
                let create_mode = meta.mode & 0o777;
                let fd = self
                    .create(dir, &name, &rel, false, || {
                        rustix::fs::openat(
                            dir,
                            &*name,
                            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::from_raw_mode(create_mode),
                        )
                    })?
                    .expect("not a directory");
                let mut f = File::from(fd);
                if name.as_bytes().starts_with(paths::WHITEOUT_PREFIX.as_bytes()) {
                    self.markers.push(rel.clone());
                } else {
                    // What is written counts, not what was read: a sparse entry expands.
                    let budget = self.opts.limits.max_layer_bytes.saturating_sub(self.written);
                    let n = io::copy(&mut (&mut entry).take(budget), &mut f).map_err(arch)?;
                    self.written += n;
                    if n == budget && entry.read(&mut [0u8; 1]).map_err(arch)? > 0 {
                        return Err(LayerError::Limit {
                            layer: self.layer.clone(),
                            what: "bytes written",
                            limit: self.opts.limits.max_layer_bytes,
                            env: super::ENV_MAX_LAYER_SIZE,
                        });
                    }
                }
                self.new_file_meta(&f, &meta, create_mode).map_err(|e| self.io(&rel, e))?;
                rooted::set_xattrs(f.as_fd(), &xattrs).map_err(|e| self.io(&rel, e))?;
            }
            EntryType::Symlink => {
                let target =
                    entry.link_name().map_err(arch)?.ok_or_else(|| self.bad(&raw, "symlink without a target"))?;
                self.create(dir, &name, &rel, false, || rustix::fs::symlinkat(&*target, dir, &*name))?;
                self.meta_in(dir, &name, &rel, &meta, false)?;
            }
            EntryType::Link => {
                let target =
                    entry.link_name().map_err(arch)?.ok_or_else(|| self.bad(&raw, "hardlink without a target"))?;
                self.hardlink(dir, &rel, &target)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if !matches!(kind, EntryType::Fifo) && !self.opts.allow_devices {
                    self.rec.skipped_devices.push(rel.display().to_string());
                    return Ok(());
                }
                let ft = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                if matches!(kind, EntryType::Char) && major == 0 && minor == 0 {
                    // Device 0/0 is no device; overlayfs would read it as a whiteout.
                    self.rec.warnings.push(format!("{}: skipped character device 0/0", rel.display()));
                    return Ok(());
                }
                let dev = rustix::fs::makedev(major, minor);
                rustix::fs::mknodat(dir, &*name, ft, Mode::from_raw_mode(0o600), dev)
                    .map_err(|e| self.io(&rel, e.into()))?;
                if !matches!(kind, EntryType::Fifo) {
                    self.rec.devices.push(rel.display().to_string());
                }
                self.meta_in(dir, &name, &rel, &meta, true)?;
            }
            other => {
                self.rec.warnings.push(format!("{}: skipped unsupported tar entry type {:?}", rel.display(), other));
            }
        }
        Ok(())
    }

    /// Runs `make` (which creates `name` in `dir`); when the name is taken, clears it first (a
    /// directory entry over a directory keeps it: `Ok(None)`) and runs `make` again.
    fn create<T>(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        rel: &Path,
        is_dir: bool,
        make: impl Fn() -> rustix::io::Result<T>,
    ) -> Result<Option<T>> {
        match make() {
            Err(rustix::io::Errno::EXIST) => {}
            r => return r.map(Some).map_err(|e| self.io(rel, e.into())),
        }
        let existing = rooted::stat_in(dir, name).map_err(|e| self.io(rel, e))?;
        if is_dir && existing.as_ref().is_some_and(|s| Kind::of(s) == Kind::Dir) {
            return Ok(None);
        }
        self.remove(dir, rel)?;
        make().map(Some).map_err(|e| self.io(rel, e.into()))
    }

    /// [`apply_fd_meta`] for a file just created with `created_mode`: owner and mode are only
    /// set where they differ from what the file got (chown clears setuid bits, so it comes first).
    fn new_file_meta(&self, f: &File, meta: &Meta, created_mode: u32) -> io::Result<()> {
        if self.created_owner != Some((meta.uid, meta.gid)) {
            use std::os::fd::AsRawFd;
            match nix::unistd::fchown(f.as_raw_fd(), Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid))) {
                Ok(()) => {}
                Err(nix::errno::Errno::EPERM) if !running_as_root() => {}
                Err(e) => return Err(e.into()),
            }
        }
        if self.created_owner != Some((meta.uid, meta.gid))
            || meta.mode != created_mode
            || self.umask.is_none_or(|m| m & created_mode != 0)
        {
            rustix::fs::fchmod(f, Mode::from_raw_mode(meta.mode))?;
        }
        let t = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec { tv_sec: meta.mtime, tv_nsec: 0 },
            last_modification: rustix::fs::Timespec { tv_sec: meta.mtime, tv_nsec: 0 },
        };
        rustix::fs::futimens(f, &t)?;
        Ok(())
    }

    /// Owner, mode (not for symlinks) and times of `name` in `dir`, never following it.
    fn meta_in(&self, dir: BorrowedFd<'_>, name: &OsStr, rel: &Path, meta: &Meta, chmod: bool) -> Result<()> {
        rooted::chown_in(dir, name, meta.uid, meta.gid).map_err(|e| self.io(rel, e))?;
        if chmod {
            // A device node or FIFO just made by mknodat in a directory held open: chmodat on
            // its name reaches that node (fchmodat has no NOFOLLOW, but the name is not a link).
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                .map_err(|e| self.io(rel, e.into()))?;
        }
        rooted::set_mtime_in(dir, name, meta.mtime).map_err(|e| self.io(rel, e))
    }

    fn hardlink(&mut self, dir: BorrowedFd<'_>, rel: &Path, raw_target: &Path) -> Result<()> {
        let entry = rel.display().to_string();
        let bad = |reason| LayerError::BadHardlink {
            layer: self.layer.clone(),
            entry: entry.clone(),
            target: raw_target.display().to_string(),
            reason,
        };
        let target =
            paths::normalize(raw_target, self.opts.limits.max_path_len).map_err(|_| bad("leaves the layer"))?;
        if target.as_os_str().is_empty() {
            return Err(bad("points at the root"));
        }
        let tparent = target.parent().unwrap_or(Path::new(""));
        let tname = target.file_name().expect("non-empty");
        let tdir = match self.root.open_at(tparent, OFlags::RDONLY | OFlags::DIRECTORY, 0) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.rec.external_links.push((entry, target.display().to_string()));
                return Ok(());
            }
            Err(e) if rooted::is_symlink_error(&e) => return Err(bad("goes through a symlink")),
            Err(e) => return Err(self.io(tparent, e)),
        };
        let name = rel.file_name().expect("entries have names");
        match rooted::stat_in(tdir.as_fd(), tname).map_err(|e| self.io(&target, e))? {
            Some(st) if Kind::of(&st) == Kind::Dir => Err(bad("is a directory")),
            // linkat(2) without AT_SYMLINK_FOLLOW: a symlink target is linked itself, never followed.
            Some(_) => {
                rustix::fs::linkat(&tdir, tname, dir, name, AtFlags::empty()).map_err(|e| self.io(rel, e.into()))
            }
            None => {
                self.rec.external_links.push((entry, target.display().to_string()));
                Ok(())
            }
        }
    }

    /// Rewrites the layer's whiteout markers into overlayfs's form, as containerd's overlay
    /// snapshotter stores layers (what the tree means is unchanged; see the module doc of
    /// `checkout` for the merge of both forms):
    /// - `D/.wh..wh..opq` → `D` gets `trusted.overlay.opaque=y`;
    /// - `D/.wh.X` with `D/X` a directory of this layer → `D/X` is made opaque (the layer's own
    ///   directory replaces the lower one); with `D/X` another entry of this layer → nothing
    ///   (an upper non-directory hides the lower entry anyway); otherwise → `D/X` becomes a
    ///   character device 0/0.
    fn convert_whiteouts(&mut self) -> Result<()> {
        let mut whiteouts = Vec::new();
        let mut opaque = Vec::new();
        for marker in std::mem::take(&mut self.markers) {
            let (parent, name) = (marker.parent().unwrap_or(Path::new("")), marker.file_name().expect("named"));
            let dir = match self.root.open_at(parent, OFlags::RDONLY | OFlags::DIRECTORY, 0) {
                Ok(fd) => fd,
                // Replaced by a later entry of the stream.
                Err(e) if e.kind() == io::ErrorKind::NotFound || rooted::is_symlink_error(&e) => continue,
                Err(e) => return Err(self.io(parent, e)),
            };
            match rooted::stat_in(dir.as_fd(), name).map_err(|e| self.io(&marker, e))? {
                Some(st) if Kind::of(&st) == Kind::File => {}
                _ => continue,
            }
            rustix::fs::unlinkat(&dir, name, AtFlags::empty()).map_err(|e| self.io(&marker, e.into()))?;
            let set_opaque = |fd: BorrowedFd<'_>, rel: &Path| {
                rustix::fs::fsetxattr(fd, OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty())
                    .map_err(|e| self.io(rel, e.into()))
            };
            let hidden = name.as_bytes().strip_prefix(paths::WHITEOUT_PREFIX.as_bytes()).expect("a marker");
            if name == paths::OPAQUE_MARKER {
                set_opaque(dir.as_fd(), parent)?;
                opaque.push(parent.to_string_lossy().into_owned());
                continue;
            }
            let hidden = OsStr::from_bytes(hidden);
            let rel = parent.join(hidden);
            match rooted::stat_in(dir.as_fd(), hidden).map_err(|e| self.io(&rel, e))?.map(|s| Kind::of(&s)) {
                Some(Kind::Dir) => {
                    let fd = rustix::fs::openat(
                        &dir,
                        hidden,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| self.io(&rel, e.into()))?;
                    set_opaque(fd.as_fd(), &rel)?;
                    opaque.push(rel.to_string_lossy().into_owned());
                }
                Some(_) => {}
                None => {
                    rustix::fs::mknodat(&dir, hidden, FileType::CharacterDevice, Mode::empty(), 0)
                        .map_err(|e| self.io(&rel, e.into()))?;
                    whiteouts.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        whiteouts.sort();
        opaque.sort();
        opaque.dedup();
        self.rec.form = super::WhiteoutForm::Overlay;
        self.rec.whiteouts = whiteouts;
        self.rec.opaque_dirs = opaque;
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<()> {
        // Deepest first, so setting a parent's mtime is the last thing that touches it.
        let mut dirs: Vec<(PathBuf, Deferred)> = std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (rel, d) in dirs {
            // Beneath the root, no symlink anywhere, a directory, and the very inode created for
            // this entry: anything else was replaced later and gets nothing.
            let fd = match self.root.open_at(&rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK, 0) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound || rooted::is_symlink_error(&e) => continue,
                Err(e) => return Err(self.io(&rel, e)),
            };
            let st = rustix::fs::fstat(&fd).map_err(|e| self.io(&rel, e.into()))?;
            if st.st_ino != d.ino {
                continue;
            }
            let f = File::from(fd);
            apply_fd_meta(&f, &d.meta).map_err(|e| self.io(&rel, e))?;
            rooted::set_xattrs(f.as_fd(), &d.xattrs).map_err(|e| self.io(&rel, e))?;
        }
        Ok(())
    }
}

enum MetaError {
    Io(io::Error),
    Bad(String),
}

/// Header fields, overridden by PAX `uid`/`gid`/`mtime`; allow-listed `SCHILY.xattr.*` records.
/// Ids outside `u32` are refused (truncating 4294967296 would make it root).
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> std::result::Result<(Meta, Xattrs), MetaError> {
    let h = entry.header();
    let id = |what: &str, v: u64| u32::try_from(v).map_err(|_| MetaError::Bad(format!("{what} {v} is out of range")));
    let mut meta = Meta {
        uid: id("uid", h.uid().unwrap_or(0))?,
        gid: id("gid", h.gid().unwrap_or(0))?,
        mode: h.mode().unwrap_or(0o644) & 0o7777,
        mtime: h.mtime().unwrap_or(0) as i64,
    };
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(MetaError::Io)? {
        for ext in exts {
            let ext = ext.map_err(MetaError::Io)?;
            let Ok(key) = ext.key() else { continue };
            let value = || ext.value().ok().and_then(|v| v.split('.').next()).map(str::to_string);
            match key {
                "uid" | "gid" => {
                    let v = value().unwrap_or_default();
                    let n: u32 = v.parse().map_err(|_| MetaError::Bad(format!("{key} {v} is out of range")))?;
                    if key == "uid" {
                        meta.uid = n;
                    } else {
                        meta.gid = n;
                    }
                }
                "mtime" => meta.mtime = value().and_then(|v| v.parse().ok()).unwrap_or(meta.mtime),
                k => {
                    // An empty value deletes the record (POSIX pax), as Go's tar reads it.
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.")
                        && xattr_allowed(name)
                        && !ext.value_bytes().is_empty()
                    {
                        xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                    }
                }
            }
        }
    }
    Ok((meta, xattrs))
}

/// This process's umask, from `/proc/self/status` (reading it with umask(2) would change it for
/// every thread for a moment).
fn process_umask() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// chown, then chmod (so setuid bits survive), then times, on an open file or directory.
pub(crate) fn apply_fd_meta(f: &fs::File, meta: &Meta) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    match nix::unistd::fchown(f.as_raw_fd(), Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid))) {
        Ok(()) => {}
        Err(nix::errno::Errno::EPERM) if !running_as_root() => {}
        Err(e) => return Err(e.into()),
    }
    f.set_permissions(fs::Permissions::from_mode(meta.mode))?;
    let t = TimeSpec::new(meta.mtime, 0);
    nix::sys::stat::futimens(f.as_fd().as_raw_fd(), &t, &t)?;
    Ok(())
}

/// For callers that copy a tree: the metadata of an existing inode.
pub(crate) fn meta_of(m: &fs::Metadata) -> Meta {
    use std::os::unix::fs::MetadataExt;
    Meta { uid: m.uid(), gid: m.gid(), mode: m.mode() & 0o7777, mtime: m.mtime() }
}
