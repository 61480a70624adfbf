//! Root-scoped I/O: every path inside a tree hoist does not control is resolved beneath an open
//! directory fd, never through the host's root and never through a symlink.
//!
//! Untrusted trees are layer contents, checkouts (whose `/exports` is the image's), and the
//! directories a user names (mount targets). A [`RootDir`] holds an fd for the top of such a
//! tree; each relative path is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS)`, so `..`, absolute names, symlinks (in any component, including the
//! last one) and `/proc` magic links fail with `EXDEV`/`ELOOP` instead of leaving the tree. The
//! object is then changed through its own fd (`fchown`, `fchmod`, `futimens`, `fsetxattr`) or
//! through its parent's fd and its final name (`mkdirat`, `symlinkat`, `linkat`, `mknodat`,
//! `unlinkat`, with `AT_SYMLINK_NOFOLLOW` where it applies).
//!
//! Kernels without `openat2` (before 5.6, or a seccomp filter that hides it) get the same
//! semantics from a walk of `openat(O_NOFOLLOW | O_DIRECTORY)` per component.
//!
//! Nothing here does `root.join(untrusted)` followed by a path-based syscall (DESIGN §9).

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps};

/// Flags for opening anything beneath a root.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS);

/// Set once `openat2` turned out to be missing, so the fallback walk is used from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// An open directory at the top of a tree, and the path it was opened at (for messages only).
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// What is at a path, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

impl Kind {
    pub fn of(st: &Stat) -> Kind {
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

/// The relative components of `rel`, refusing `..` and anything absolute-looking beyond a
/// leading `/` (which is dropped: names inside an image are relative to its root).
fn components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "path leaves its root (..)"));
            }
        }
    }
    Ok(out)
}

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

/// Opens `rel` beneath `dir` (`rel` must be relative and `..`-free) without following symlinks.
fn open_beneath(dir: BorrowedFd<'_>, rel: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let comps = components(rel)?;
    let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    if comps.is_empty() {
        // The root itself: reopen it with the requested access.
        return Ok(rustix::fs::openat(dir, c".", flags & !(OFlags::CREATE | OFlags::EXCL), mode)?);
    }
    let joined: PathBuf = comps.iter().collect();
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        match rustix::fs::openat2(dir, &joined, flags, mode, RESOLVE) {
            Err(rustix::io::Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            // ELOOP/EXDEV mean a symlink or an escape: reported as "not beneath" for callers.
            Err(rustix::io::Errno::XDEV) => return Err(escape()),
            other => return Ok(other?),
        }
    }
    // Fallback: one component at a time, none of them followed.
    let mut cur: Option<OwnedFd> = None;
    for (i, c) in comps.iter().enumerate() {
        let here = cur.as_ref().map_or(dir, |f| f.as_fd());
        let last = i + 1 == comps.len();
        let next = if last {
            rustix::fs::openat(here, cstr(c)?.as_c_str(), flags, mode)?
        } else {
            rustix::fs::openat(
                here,
                cstr(c)?.as_c_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?
        };
        cur = Some(next);
    }
    Ok(cur.expect("at least one component"))
}

fn escape() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "path resolves outside its root")
}

/// True for the errors that mean "a symlink (or an escape) was in the way".
pub fn is_symlink_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
        || e.kind() == io::ErrorKind::PermissionDenied
}

impl RootDir {
    /// Opens the directory at `path` as a root. `path` itself is trusted (hoist's own state, or
    /// a directory the user named): its last component must not be a symlink.
    pub fn open(path: &Path) -> io::Result<RootDir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(RootDir { fd, path: path.to_path_buf() })
    }

    /// Creates the directory `path` (mode `mode`; its parent must exist) and opens it.
    pub fn create(path: &Path, mode: u32) -> io::Result<RootDir> {
        match rustix::fs::mkdir(path, Mode::from_raw_mode(mode)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        RootDir::open(path)
    }

    /// The path this root was opened at (for messages; never used to reach into the tree).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Where `rel` is, for messages.
    pub fn display(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// Opens `rel` beneath this root with `flags` (symlinks are never followed).
    pub fn open_at(&self, rel: &Path, flags: OFlags, mode: u32) -> io::Result<OwnedFd> {
        open_beneath(self.fd.as_fd(), rel, flags, Mode::from_raw_mode(mode))
    }

    /// Opens the directory `rel` beneath this root as a root of its own.
    pub fn open_dir(&self, rel: &Path) -> io::Result<RootDir> {
        let fd = self.open_at(rel, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
        Ok(RootDir { fd, path: self.path.join(rel) })
    }

    /// Opens the parent directory of `rel` and returns it with the final name.
    pub fn parent(&self, rel: &Path) -> io::Result<(OwnedFd, OsString)> {
        let comps = components(rel)?;
        let Some((name, parents)) = comps.split_last() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the root has no parent"));
        };
        let parent: PathBuf = parents.iter().collect();
        let fd = self.open_at(&parent, OFlags::RDONLY | OFlags::DIRECTORY, 0)?;
        Ok((fd, name.to_os_string()))
    }

    /// What is at `rel` (not followed); `None` when nothing is, or a parent is missing.
    pub fn stat(&self, rel: &Path) -> io::Result<Option<Stat>> {
        if components(rel)?.is_empty() {
            return Ok(Some(rustix::fs::fstat(&self.fd)?));
        }
        let (dir, name) = match self.parent(rel) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        stat_in(dir.as_fd(), &name)
    }

    /// Opens the regular file `rel` for reading. FIFOs, devices, directories and symlinks are
    /// refused (opened non-blocking, so a FIFO cannot hang the caller).
    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        let fd = self.open_at(rel, OFlags::RDONLY | OFlags::NONBLOCK, 0)?;
        regular(fd)
    }

    /// Reads the regular file `rel`, refusing one larger than `max` bytes.
    pub fn read_limited(&self, rel: &Path, max: u64) -> io::Result<Vec<u8>> {
        read_regular_limited(self.open_file(rel)?, max)
    }

    /// Creates the directory `rel` (its parent must exist beneath the root).
    pub fn mkdir(&self, rel: &Path, mode: u32) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        Ok(rustix::fs::mkdirat(&dir, &*name, Mode::from_raw_mode(mode))?)
    }

    /// Creates `rel` (and missing parents) as directories; an existing directory is fine.
    pub fn mkdir_all(&self, rel: &Path, mode: u32) -> io::Result<()> {
        let comps = components(rel)?;
        let mut cur = PathBuf::new();
        for c in comps {
            cur.push(c);
            match self.mkdir(&cur, mode) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if self.stat(&cur)?.map(|s| Kind::of(&s)) != Some(Kind::Dir) {
                        return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{}", cur.display())));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates a new regular file `rel` (never replacing anything, never through a symlink).
    pub fn create_file(&self, rel: &Path, mode: u32) -> io::Result<File> {
        let fd = self.open_at(rel, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL, mode)?;
        Ok(File::from(fd))
    }

    /// Removes whatever is at `rel` (a whole tree for a directory); missing is fine.
    pub fn remove_all(&self, rel: &Path) -> io::Result<()> {
        let (dir, name) = match self.parent(rel) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        remove_in(dir.as_fd(), &name, &mut |_| {})
    }

    /// Renames `from` to `to`, both beneath this root.
    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (fd, fname) = self.parent(from)?;
        let (td, tname) = self.parent(to)?;
        Ok(rustix::fs::renameat(&fd, &*fname, &td, &*tname)?)
    }

    /// Reads the symlink `rel` (its target is data, never followed).
    pub fn read_link(&self, rel: &Path) -> io::Result<PathBuf> {
        let (dir, name) = self.parent(rel)?;
        let t = rustix::fs::readlinkat(&dir, &*name, Vec::new())?;
        Ok(PathBuf::from(OsStr::from_bytes(t.as_bytes())))
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`; `None` when it does not exist.
pub fn stat_in(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => Ok(Some(s)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Checks that `fd` is a regular file and makes it blocking again.
pub fn regular(fd: OwnedFd) -> io::Result<File> {
    let st = rustix::fs::fstat(&fd)?;
    if Kind::of(&st) != Kind::File {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let fl = rustix::fs::fcntl_getfl(&fd)?;
    rustix::fs::fcntl_setfl(&fd, fl & !OFlags::NONBLOCK)?;
    Ok(File::from(fd))
}

/// Opens a file that must be regular, by a trusted path, without following a final symlink
/// and without blocking on a FIFO.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let fd =
        rustix::fs::open(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    regular(fd)
}

/// Reads a regular file to its end, refusing more than `max` bytes.
pub fn read_regular_limited(f: File, max: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    f.take(max + 1).read_to_end(&mut data)?;
    if data.len() as u64 > max {
        return Err(io::Error::new(io::ErrorKind::FileTooLarge, format!("larger than {max} bytes")));
    }
    Ok(data)
}

/// Removes `name` in `dir`, recursing into directories by fd; `on_dir` sees every directory
/// removed, relative to `name` (`""` for `name` itself). Missing is fine.
pub fn remove_in(dir: BorrowedFd<'_>, name: &OsStr, on_dir: &mut dyn FnMut(&Path)) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(rustix::io::Errno::ISDIR) | Err(rustix::io::Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let mut stack: Vec<(PathBuf, bool)> = vec![(PathBuf::new(), false)];
    let top = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // Depth-first: empty each directory, then remove it from its parent.
    while let Some((rel, emptied)) = stack.pop() {
        let fd = if rel.as_os_str().is_empty() {
            rustix::fs::openat(&top, c".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?
        } else {
            open_beneath(top.as_fd(), &rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?
        };
        if emptied {
            on_dir(&rel);
            match rel.parent() {
                Some(p) if !rel.as_os_str().is_empty() => {
                    drop(fd);
                    let pfd = if p.as_os_str().is_empty() {
                        rustix::fs::openat(
                            &top,
                            c".",
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                            Mode::empty(),
                        )?
                    } else {
                        open_beneath(top.as_fd(), p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?
                    };
                    let n = rel.file_name().expect("non-root has a name");
                    rustix::fs::unlinkat(&pfd, n, AtFlags::REMOVEDIR)?;
                }
                _ => {}
            }
            continue;
        }
        stack.push((rel.clone(), true));
        let mut subdirs = Vec::new();
        for e in rustix::fs::Dir::read_from(&fd)? {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            let n = OsStr::from_bytes(n);
            match rustix::fs::unlinkat(&fd, n, AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(rustix::io::Errno::ISDIR) | Err(rustix::io::Errno::PERM) => subdirs.push(rel.join(n)),
                Err(e) => return Err(e.into()),
            }
        }
        stack.extend(subdirs.into_iter().map(|d| (d, false)));
    }
    drop(top);
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

/// Ownership of an fd's object; `EPERM` is ignored when not root (unprivileged tests).
pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    match rustix::fs::fchown(fd, Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid))) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::PERM) if !rustix::process::geteuid().is_root() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Ownership of `name` in `dir`, not following a symlink.
pub fn chown_in(dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
    match rustix::fs::chownat(
        dir,
        name,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    ) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::PERM) if !rustix::process::geteuid().is_root() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

/// Access and modification time of an fd's object.
pub fn set_mtime(fd: BorrowedFd<'_>, mtime: i64) -> io::Result<()> {
    Ok(rustix::fs::futimens(fd, &times(mtime))?)
}

/// Times of `name` in `dir`, not following a symlink.
pub fn set_mtime_in(dir: BorrowedFd<'_>, name: &OsStr, mtime: i64) -> io::Result<()> {
    Ok(rustix::fs::utimensat(dir, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)?)
}

pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode & 0o7777))?)
}

/// Sets extended attributes on an fd; filesystems without them (tmpfs without user xattrs)
/// lose nothing a system container relies on, so `EOPNOTSUPP` is not fatal.
pub fn set_xattrs(fd: BorrowedFd<'_>, xattrs: &[(String, Vec<u8>)]) -> io::Result<()> {
    for (k, v) in xattrs {
        match rustix::fs::fsetxattr(fd, k.as_str(), v, rustix::fs::XattrFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::OPNOTSUPP) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Extended attributes of an fd (all of them; callers filter).
pub fn get_xattrs(fd: BorrowedFd<'_>) -> io::Result<Vec<(String, Vec<u8>)>> {
    use rustix::buffer::spare_capacity;
    let n = match rustix::fs::flistxattr_query(fd) {
        Ok(n) => n,
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut list = Vec::with_capacity(n);
    rustix::fs::flistxattr(fd, spare_capacity(&mut list))?;
    let mut out = Vec::new();
    for name in list.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else { continue };
        let n = match rustix::fs::fgetxattr_query(fd, name) {
            Ok(n) => n,
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut v = Vec::with_capacity(n);
        rustix::fs::fgetxattr(fd, name, spare_capacity(&mut v))?;
        out.push((name.to_string(), v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn never_leaves_the_root() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "x").unwrap();
        let root = d.path().join("root");
        fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("rel")).unwrap();
        std::os::unix::fs::symlink("secret", root.join("file-link")).unwrap();
        fs::write(root.join("secret"), "inside").unwrap();
        let r = RootDir::open(&root).unwrap();
        for p in ["abs/secret", "rel/secret", "file-link", "../outside/secret"] {
            assert!(r.open_file(Path::new(p)).is_err(), "{p} must be refused");
            assert!(r.create_file(&Path::new(p).with_extension("new"), 0o600).is_err(), "{p}");
        }
        assert!(r.mkdir(Path::new("abs/new"), 0o755).is_err());
        assert!(!outside.join("new").exists());
        assert_eq!(r.read_limited(Path::new("secret"), 100).unwrap(), b"inside");
        assert_eq!(r.read_limited(Path::new("/secret"), 100).unwrap(), b"inside", "leading / is the root");
        assert_eq!(r.read_limited(Path::new("secret"), 3).unwrap_err().kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(r.stat(Path::new("abs")).unwrap().map(|s| Kind::of(&s)), Some(Kind::Symlink));
        assert!(r.stat(Path::new("nope/x")).unwrap().is_none());
    }

    #[test]
    fn fifo_and_devices_are_not_files() {
        let d = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&d.path().join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let r = RootDir::open(d.path()).unwrap();
        assert_eq!(r.open_file(Path::new("fifo")).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert!(open_regular(&d.path().join("fifo")).is_err());
    }

    #[test]
    fn remove_all_by_fd() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        fs::create_dir_all(root.join("a/b/c")).unwrap();
        fs::write(root.join("a/b/c/f"), "").unwrap();
        fs::create_dir(d.path().join("keep")).unwrap();
        fs::write(d.path().join("keep/f"), "").unwrap();
        std::os::unix::fs::symlink(d.path().join("keep"), root.join("a/link")).unwrap();
        let r = RootDir::open(&root).unwrap();
        let (p, n) = r.parent(Path::new("a")).unwrap();
        let mut dirs = Vec::new();
        remove_in(p.as_fd(), &n, &mut |d| dirs.push(d.to_path_buf())).unwrap();
        dirs.sort();
        assert_eq!(dirs, [PathBuf::from(""), "b".into(), "b/c".into()]);
        assert!(!root.join("a").exists());
        assert!(d.path().join("keep/f").exists(), "symlinked tree untouched");
        r.remove_all(Path::new("missing")).unwrap();
    }
}
