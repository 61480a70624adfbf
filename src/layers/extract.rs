//! One tar stream → one directory tree, following the rules in `paths` and the OCI changeset format.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use tar::EntryType;

use super::paths::{self, Ancestors, BadName};
use super::{ExtractOptions, LayerError, LayerRecord, Result};
use crate::digest::{Digest, HashingReader};
use crate::fsutil;

/// xattrs a layer may set; everything else (security.selinux, trusted.*, system.*) is dropped.
pub fn xattr_allowed(name: &str) -> bool {
    name == "security.capability" || name.starts_with("user.")
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
    root: PathBuf,
    opts: &'a ExtractOptions,
    implicit: HashSet<PathBuf>,
    /// Directories whose metadata is applied at the end (so read-only modes don't get in the way).
    dirs: Vec<(PathBuf, Meta, Xattrs)>,
    rec: LayerRecord,
}

pub fn extract(layer: &Digest, reader: Box<dyn Read>, root: &Path, opts: &ExtractOptions) -> Result<LayerRecord> {
    let archive_err = |source: io::Error| {
        if source.kind() == io::ErrorKind::FileTooLarge {
            LayerError::Limit {
                layer: layer.clone(),
                what: "bytes",
                limit: opts.limits.max_layer_bytes,
                env: super::ENV_MAX_LAYER_SIZE,
            }
        } else {
            LayerError::Archive { layer: layer.clone(), source }
        }
    };
    fsutil::ensure_dir(root, 0o755).map_err(|source| LayerError::Io { layer: layer.clone(), source })?;
    let mut ex = Extractor {
        layer,
        root: root.to_path_buf(),
        opts,
        implicit: HashSet::new(),
        dirs: Vec::new(),
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
    ex.finish_dirs()?;
    let mut implicit: Vec<String> = ex.implicit.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    implicit.sort();
    ex.rec.implicit_dirs = implicit;
    ex.rec.diff_id = Some(diff_id);
    ex.rec.size = size;
    Ok(ex.rec)
}

impl Extractor<'_> {
    fn bad(&self, entry: &Path, reason: impl Into<String>) -> LayerError {
        LayerError::BadEntry { layer: self.layer.clone(), entry: entry.display().to_string(), reason: reason.into() }
    }

    fn io(&self, path: &Path, e: io::Error) -> LayerError {
        LayerError::Io { layer: self.layer.clone(), source: fsutil::PathError::new(path, e) }
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

    /// Creates missing parents of `rel` (recording them as implicit) and refuses symlinked ones.
    fn prepare_parents(&mut self, rel: &Path) -> Result<()> {
        loop {
            match paths::ancestors(&self.root, rel).map_err(|e| self.io(&self.root.join(rel), e))? {
                Ancestors::Dirs => return Ok(()),
                Ancestors::Missing(p) => {
                    let abs = self.root.join(&p);
                    fs::create_dir(&abs).map_err(|e| self.io(&abs, e))?;
                    self.implicit.insert(p);
                }
                Ancestors::Symlink(s) => {
                    return Err(LayerError::ThroughSymlink {
                        layer: self.layer.clone(),
                        entry: rel.display().to_string(),
                        symlink: s.display().to_string(),
                    });
                }
                Ancestors::NotDir(p) => {
                    return Err(LayerError::ParentNotDir {
                        layer: self.layer.clone(),
                        entry: rel.display().to_string(),
                        parent: p.display().to_string(),
                    });
                }
            }
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let arch = |source| LayerError::Archive { layer: self.layer.clone(), source };
        let raw = entry.path().map_err(arch)?.into_owned();
        let rel = self.normalize(&raw)?;
        let kind = entry.header().entry_type();
        let (meta, xattrs) = read_meta(&mut entry).map_err(arch)?;
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        if rel.as_os_str().is_empty() {
            // The layer root ("./"): only a directory makes sense there.
            return if kind.is_dir() { Ok(()) } else { Err(self.bad(&raw, "the root of a layer must be a directory")) };
        }
        self.prepare_parents(&rel)?;
        let abs = self.root.join(&rel);
        // A later entry with the same name replaces the earlier one (tar semantics), except that
        // a directory entry over an existing directory only updates its metadata.
        let existing = fs::symlink_metadata(&abs).ok();
        if let Some(m) = &existing
            && !(m.is_dir() && kind.is_dir())
        {
            fsutil::remove_any(&abs).map_err(|e| self.io(&abs, e))?;
        }
        match kind {
            EntryType::Directory => {
                if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                    fs::create_dir(&abs).map_err(|e| self.io(&abs, e))?;
                }
                self.implicit.remove(&rel);
                self.dirs.retain(|(p, _, _)| p != &abs);
                self.dirs.push((abs, meta, xattrs));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let name = rel.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&abs)
                    .map_err(|e| self.io(&abs, e))?;
                if !name.starts_with(paths::WHITEOUT_PREFIX) {
                    io::copy(&mut entry, &mut f).map_err(arch)?;
                }
                apply_fd_meta(&f, &meta).map_err(|e| self.io(&abs, e))?;
                set_xattrs(&abs, &xattrs).map_err(|e| self.io(&abs, e))?;
            }
            EntryType::Symlink => {
                let target =
                    entry.link_name().map_err(arch)?.ok_or_else(|| self.bad(&raw, "symlink without a target"))?;
                std::os::unix::fs::symlink(&target, &abs).map_err(|e| self.io(&abs, e))?;
                apply_path_meta(&abs, &meta, false).map_err(|e| self.io(&abs, e))?;
            }
            EntryType::Link => {
                let target =
                    entry.link_name().map_err(arch)?.ok_or_else(|| self.bad(&raw, "hardlink without a target"))?;
                self.hardlink(&rel, &target)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if !matches!(kind, EntryType::Fifo) && !self.opts.allow_devices {
                    self.rec.skipped_devices.push(rel.display().to_string());
                    return Ok(());
                }
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                let dev = nix::sys::stat::makedev(major.into(), minor.into());
                nix::sys::stat::mknod(&abs, sflag, Mode::from_bits_truncate(0o600), dev)
                    .map_err(|e| self.io(&abs, e.into()))?;
                apply_path_meta(&abs, &meta, true).map_err(|e| self.io(&abs, e))?;
            }
            other => {
                self.rec.warnings.push(format!("{}: skipped unsupported tar entry type {:?}", rel.display(), other));
            }
        }
        Ok(())
    }

    fn hardlink(&mut self, rel: &Path, raw_target: &Path) -> Result<()> {
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
        match paths::ancestors(&self.root, &target).map_err(|e| self.io(&self.root.join(&target), e))? {
            Ancestors::Dirs => {}
            Ancestors::Missing(_) => {
                self.rec.external_links.push((entry, target.display().to_string()));
                return Ok(());
            }
            Ancestors::Symlink(_) => return Err(bad("goes through a symlink")),
            Ancestors::NotDir(_) => return Err(bad("has a parent that is not a directory")),
        }
        let target_abs = self.root.join(&target);
        match fs::symlink_metadata(&target_abs) {
            Ok(m) if m.is_dir() => Err(bad("is a directory")),
            // link(2) without AT_SYMLINK_FOLLOW: a symlink target is linked itself, never followed.
            Ok(_) => fs::hard_link(&target_abs, self.root.join(rel)).map_err(|e| self.io(&self.root.join(rel), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.rec.external_links.push((entry, target.display().to_string()));
                Ok(())
            }
            Err(e) => Err(self.io(&target_abs, e)),
        }
    }

    fn finish_dirs(&mut self) -> Result<()> {
        // Deepest first, so setting a parent's mtime is the last thing that touches it.
        self.dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (abs, meta, xattrs) in std::mem::take(&mut self.dirs) {
            let f = fs::File::open(&abs).map_err(|e| self.io(&abs, e))?;
            apply_fd_meta(&f, &meta).map_err(|e| self.io(&abs, e))?;
            set_xattrs(&abs, &xattrs).map_err(|e| self.io(&abs, e))?;
        }
        Ok(())
    }
}

/// Header fields, overridden by PAX `uid`/`gid`/`mtime`; allow-listed `SCHILY.xattr.*` records.
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<(Meta, Xattrs)> {
    let h = entry.header();
    let mut meta = Meta {
        uid: h.uid().unwrap_or(0) as u32,
        gid: h.gid().unwrap_or(0) as u32,
        mode: h.mode().unwrap_or(0o644) & 0o7777,
        mtime: h.mtime().unwrap_or(0) as i64,
    };
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            let num = || ext.value().ok().and_then(|v| v.split('.').next()).and_then(|v| v.parse::<i64>().ok());
            match key {
                "uid" => meta.uid = num().unwrap_or(meta.uid as i64) as u32,
                "gid" => meta.gid = num().unwrap_or(meta.gid as i64) as u32,
                "mtime" => meta.mtime = num().unwrap_or(meta.mtime),
                k => {
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.")
                        && xattr_allowed(name)
                    {
                        xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                    }
                }
            }
        }
    }
    Ok((meta, xattrs))
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

/// Ownership and times of a symlink or special file, never following it; `chmod` only for
/// non-symlinks (a symlink's mode is meaningless).
pub(crate) fn apply_path_meta(path: &Path, meta: &Meta, chmod: bool) -> io::Result<()> {
    match nix::unistd::fchownat(
        None,
        path,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::EPERM) if !running_as_root() => {}
        Err(e) => return Err(e.into()),
    }
    if chmod {
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))?;
    }
    let t = TimeSpec::new(meta.mtime, 0);
    nix::sys::stat::utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink)?;
    Ok(())
}

fn set_xattrs(path: &Path, xattrs: &[(String, Vec<u8>)]) -> io::Result<()> {
    for (k, v) in xattrs {
        match xattr::set(path, k, v) {
            Ok(()) => {}
            // Filesystems without user xattrs (tmpfs) cannot keep them; that loses nothing a
            // system container relies on, so it is not fatal.
            Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// For callers that copy a tree: the metadata of an existing inode.
pub(crate) fn meta_of(m: &fs::Metadata) -> Meta {
    use std::os::unix::fs::MetadataExt;
    Meta { uid: m.uid(), gid: m.gid(), mode: m.mode() & 0o7777, mtime: m.mtime() }
}

/// The allow-listed xattrs of an existing path (for copying directories at checkout).
pub(crate) fn read_xattrs(path: &Path) -> Xattrs {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    names
        .filter_map(|n| n.to_str().map(str::to_string))
        .filter(|n| xattr_allowed(n))
        .filter_map(|n| xattr::get(path, &n).ok().flatten().map(|v| (n, v)))
        .collect()
}

pub(crate) fn copy_xattrs(path: &Path, xattrs: &[(String, Vec<u8>)]) -> io::Result<()> {
    set_xattrs(path, xattrs)
}
