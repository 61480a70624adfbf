//! Host files: `/exports/hostfs/**` copied onto the host (atomic's contract).
//!
//! - the destination is the same path on the host after `renameFiles` (applied to every path
//!   prefix, so a directory can be renamed: `/etc/etcd/etcd.conf -> $CONF_DIRECTORY/$NAME/etcd.conf`);
//! - files listed in `installedFilesTemplate` are rendered with the deployment's values;
//! - a destination that already exists is left alone and not tracked (the host owns it);
//! - empty directories are created and tracked; symlinks are recreated as symlinks;
//! - every installed file is recorded with its sha256, and removed later only while unchanged.
//!
//! The image's tree is read beneath an fd for `hostfs` (`RootDir`: no symlink is ever followed,
//! only regular files are read; templated files are capped at 1 MiB). A symlink in `hostfs` is
//! data: it is recreated as the same symlink on the host, never read through. A templated file
//! (`installedFilesTemplate`) that is a symlink is refused with an error naming it. Files are
//! written to the host through a fresh, unpredictable temporary name created with `O_EXCL` in
//! the destination directory and renamed into place without replacing anything.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::values::{Target, ValueError, Values};
use crate::digest::Digest;
use crate::fsutil::{IoContext, PathError};
use crate::rooted::{Kind, RootDir};

/// Largest templated host file read from the image.
pub const MAX_TEMPLATED: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HostfsError {
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("renameFiles: {0}")]
    Rename(String),
}

/// What to copy, from where, to which host root.
pub struct HostFiles<'a> {
    /// `<rootfs>/exports/hostfs`
    pub src: &'a Path,
    /// `/` (tests may point elsewhere).
    pub host_root: &'a Path,
    pub rename: &'a BTreeMap<String, String>,
    pub templated: &'a [String],
    pub values: &'a Values,
    /// Track an existing destination whose content is exactly what would be installed (a
    /// repeated or resumed install) instead of leaving it alone untracked.
    pub adopt_identical: bool,
}

/// One planned copy.
#[derive(Debug)]
struct Item {
    /// Relative to `hostfs`.
    src: PathBuf,
    kind: Kind,
    mode: u32,
    /// Absolute host path (before `host_root`).
    dest: String,
    /// Path as listed in the image (`/etc/x`), for installedFilesTemplate.
    image_path: String,
}

fn sha_of(p: &Path) -> std::io::Result<String> {
    Ok(Digest::of_bytes(&fs::read(p)?).hex().to_string())
}

/// Writes `dest` (which must not exist) from `data` with `mode`: a fresh temporary file
/// (unpredictable name, `O_EXCL`) in the destination directory, renamed into place without
/// replacing anything that appeared meanwhile.
fn write_new(dest: &Path, data: &mut dyn Read, mode: u32) -> io::Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("/"));
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".hoist-tmp").tempfile_in(parent)?;
    io::copy(data, tmp.as_file_mut())?;
    tmp.as_file().set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
    tmp.as_file_mut().flush()?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(dest).map_err(|e| e.error)?;
    Ok(())
}

/// Applies renameFiles to every prefix of `path` (longest match first).
fn renamed(path: &str, rename: &BTreeMap<String, String>) -> Option<String> {
    let mut best: Option<(&str, &str)> = None;
    for (from, to) in rename {
        let from = from.trim_end_matches('/');
        if (path == from || path.starts_with(&format!("{from}/"))) && best.is_none_or(|(b, _)| from.len() > b.len()) {
            best = Some((from, to));
        }
    }
    best.map(|(from, to)| format!("{}{}", to.trim_end_matches('/'), &path[from.len()..]))
}

impl HostFiles<'_> {
    fn plan(&self) -> Result<Vec<Item>, HostfsError> {
        let mut rendered = BTreeMap::new();
        for (from, to) in self.rename {
            let to = self.values.render("manifest.json renameFiles", to, Target::Path)?;
            if !to.starts_with('/') || to.split('/').any(|c| c == "..") {
                return Err(HostfsError::Rename(format!(
                    "{from} -> {to}: the destination must be an absolute path without '..'"
                )));
            }
            rendered.insert(from.clone(), to);
        }
        let root = self.root()?;
        let mut out = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = root.open_dir(&rel).at(&self.src.join(&rel))?;
            let mut entries = Vec::new();
            for e in rustix::fs::Dir::read_from(dir.fd()).map_err(io::Error::from).at(dir.path())? {
                let e = e.map_err(io::Error::from).at(dir.path())?;
                let n = e.file_name().to_bytes();
                if n != b"." && n != b".." {
                    entries.push(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(n).to_os_string());
                }
            }
            entries.sort();
            for n in entries {
                let p = rel.join(&n);
                let st = root
                    .stat(&p)
                    .at(&self.src.join(&p))?
                    .ok_or_else(|| PathError::new(self.src.join(&p), io::Error::from(io::ErrorKind::NotFound)))?;
                let kind = Kind::of(&st);
                let image_path = format!("/{}", p.display());
                if kind == Kind::Dir {
                    let sub = root.open_dir(&p).at(&self.src.join(&p))?;
                    let empty = rustix::fs::Dir::read_from(sub.fd())
                        .map_err(io::Error::from)
                        .at(sub.path())?
                        .flatten()
                        .all(|e| matches!(e.file_name().to_bytes(), b"." | b".."));
                    if !empty {
                        stack.push(p);
                        continue;
                    }
                }
                if kind == Kind::Other {
                    return Err(PathError::new(
                        format!("/exports/hostfs{image_path}"),
                        io::Error::new(io::ErrorKind::InvalidInput, "not a regular file, directory or symlink"),
                    )
                    .into());
                }
                let dest = renamed(&image_path, &rendered).unwrap_or_else(|| image_path.clone());
                out.push(Item { src: p, kind, mode: st.st_mode & 0o7777, dest, image_path });
            }
        }
        Ok(out)
    }

    fn root(&self) -> Result<RootDir, PathError> {
        RootDir::open(self.src).at(self.src)
    }

    /// The rendered text of a templated file (a regular file, never a symlink).
    fn rendered_template(&self, root: &RootDir, item: &Item) -> Result<String, HostfsError> {
        let shown = PathBuf::from(format!("/exports/hostfs{}", item.image_path));
        if item.kind != Kind::File {
            let why = if item.kind == Kind::Symlink {
                "is a symlink (a templated host file must be a regular file)"
            } else {
                "not a regular file"
            };
            return Err(PathError::new(shown, io::Error::new(io::ErrorKind::InvalidInput, why)).into());
        }
        let data = root.read_limited(&item.src, MAX_TEMPLATED).at(&shown)?;
        let text = String::from_utf8(data)
            .map_err(|_| PathError::new(&shown, io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text")))?;
        Ok(self.values.render(&format!("/exports/hostfs{}", item.image_path), &text, Target::Raw)?)
    }

    /// What `item` would install: its checksum string as recorded (see `Record::host_files`).
    fn planned_sum(&self, root: &RootDir, item: &Item) -> Result<String, HostfsError> {
        let shown = self.src.join(&item.src);
        Ok(match item.kind {
            _ if self.is_templated(item) => {
                Digest::of_bytes(self.rendered_template(root, item)?.as_bytes()).hex().to_string()
            }
            Kind::Symlink => format!("symlink:{}", root.read_link(&item.src).at(&shown)?.display()),
            Kind::Dir => "dir".to_string(),
            _ => {
                let mut data = Vec::new();
                root.open_file(&item.src).and_then(|mut f| f.read_to_end(&mut data)).at(&shown)?;
                Digest::of_bytes(&data).hex().to_string()
            }
        })
    }

    fn is_templated(&self, item: &Item) -> bool {
        self.templated.iter().any(|t| t == &item.image_path)
    }

    /// The destinations that hold exactly what an install would put there: path → checksum.
    pub fn identical_on_host(&self) -> Result<BTreeMap<String, String>, HostfsError> {
        let mut out = BTreeMap::new();
        let root = self.root()?;
        for item in self.plan()? {
            let dest = self.host_root.join(item.dest.trim_start_matches('/'));
            let sum = self.planned_sum(&root, &item)?;
            if matches_sum(&dest, &sum) {
                out.insert(item.dest, sum);
            }
        }
        Ok(out)
    }

    /// Copies the files; returns what was installed (path → checksum) and what was skipped.
    /// On error, removes what it installed.
    pub fn install(&self) -> Result<(BTreeMap<String, String>, Vec<String>), HostfsError> {
        let mut installed = BTreeMap::new();
        let mut skipped = Vec::new();
        let result = (|| {
            let root = self.root()?;
            for item in self.plan()? {
                let dest = self.host_root.join(item.dest.trim_start_matches('/'));
                if fs::symlink_metadata(&dest).is_ok() {
                    if self.adopt_identical {
                        let sum = self.planned_sum(&root, &item)?;
                        if matches_sum(&dest, &sum) {
                            installed.insert(item.dest.clone(), sum);
                            continue;
                        }
                    }
                    skipped.push(item.dest.clone());
                    continue;
                }
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent).at(parent)?;
                }
                let shown = self.src.join(&item.src);
                let sum = match item.kind {
                    _ if self.is_templated(&item) => {
                        let out = self.rendered_template(&root, &item)?;
                        write_new(&dest, &mut out.as_bytes(), item.mode).at(&dest)?;
                        Digest::of_bytes(out.as_bytes()).hex().to_string()
                    }
                    Kind::Symlink => {
                        let target = root.read_link(&item.src).at(&shown)?;
                        std::os::unix::fs::symlink(&target, &dest).at(&dest)?;
                        format!("symlink:{}", target.display())
                    }
                    Kind::Dir => {
                        fs::create_dir(&dest).at(&dest)?;
                        "dir".to_string()
                    }
                    _ => {
                        let mut f = root.open_file(&item.src).at(&shown)?;
                        write_new(&dest, &mut f, item.mode).at(&dest)?;
                        sha_of(&dest).at(&dest)?
                    }
                };
                installed.insert(item.dest.clone(), sum);
            }
            Ok(())
        })();
        if let Err(e) = result {
            remove(self.host_root, &installed);
            return Err(e);
        }
        Ok((installed, skipped))
    }
}

/// Whether the host path holds what `sum` (a recorded checksum) describes.
fn matches_sum(p: &Path, sum: &str) -> bool {
    let Ok(m) = fs::symlink_metadata(p) else { return false };
    if let Some(target) = sum.strip_prefix("symlink:") {
        fs::read_link(p).is_ok_and(|t| t == Path::new(target))
    } else if sum == "dir" {
        m.is_dir()
    } else {
        m.is_file() && sha_of(p).is_ok_and(|s| s == sum)
    }
}

/// Removes recorded host files that are unchanged; returns the ones kept because they changed.
pub fn remove(host_root: &Path, files: &BTreeMap<String, String>) -> Vec<String> {
    let mut kept = Vec::new();
    // Deepest first, so directories are empty when their turn comes.
    let mut paths: Vec<_> = files.iter().collect();
    paths.sort_by(|a, b| b.0.cmp(a.0));
    for (path, sum) in paths {
        let p = host_root.join(path.trim_start_matches('/'));
        let Ok(m) = fs::symlink_metadata(&p) else { continue };
        let unchanged = matches_sum(&p, sum);
        let removed = unchanged && if m.is_dir() { fs::remove_dir(&p).is_ok() } else { fs::remove_file(&p).is_ok() };
        if !removed {
            kept.push(path.clone());
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_renames_templates_and_removes_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("hostfs");
        let host = d.path().join("host");
        fs::create_dir_all(src.join("etc/app")).unwrap();
        fs::create_dir_all(src.join("usr/local/bin")).unwrap();
        fs::create_dir_all(src.join("var/empty")).unwrap();
        fs::write(src.join("etc/app/app.conf"), "port=$PORT\n").unwrap();
        fs::write(src.join("usr/local/bin/appctl"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("usr/local/bin/appctl"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("appctl", src.join("usr/local/bin/ctl")).unwrap();
        fs::create_dir_all(host.join("etc")).unwrap();
        let values = Values(
            [("NAME", "web"), ("PORT", "81"), ("CONF_DIRECTORY", "/etc")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let rename = BTreeMap::from([
            ("/etc/app".to_string(), "${CONF_DIRECTORY}/${NAME}".to_string()),
            ("/usr/local/bin/appctl".to_string(), "/usr/local/bin/${NAME}ctl".to_string()),
        ]);
        let templated = vec!["/etc/app/app.conf".to_string()];
        let h = HostFiles {
            src: &src,
            host_root: &host,
            rename: &rename,
            templated: &templated,
            values: &values,
            adopt_identical: false,
        };
        // A file the host already has is left alone.
        fs::create_dir_all(host.join("usr/local/bin")).unwrap();
        fs::write(host.join("usr/local/bin/ctl"), "host's own").unwrap();
        let (installed, skipped) = h.install().unwrap();
        assert_eq!(fs::read_to_string(host.join("etc/web/app.conf")).unwrap(), "port=81\n");
        assert_eq!(fs::metadata(host.join("usr/local/bin/webctl")).unwrap().permissions().mode() & 0o777, 0o755);
        assert!(host.join("var/empty").is_dir());
        assert_eq!(skipped, ["/usr/local/bin/ctl"]);
        assert_eq!(installed.keys().collect::<Vec<_>>(), ["/etc/web/app.conf", "/usr/local/bin/webctl", "/var/empty"]);
        // The user edits one file: uninstall keeps it.
        fs::write(host.join("etc/web/app.conf"), "port=82\n").unwrap();
        let kept = remove(&host, &installed);
        assert_eq!(kept, ["/etc/web/app.conf"]);
        assert!(!host.join("usr/local/bin/webctl").exists() && !host.join("var/empty").exists());
        assert_eq!(fs::read_to_string(host.join("usr/local/bin/ctl")).unwrap(), "host's own");

        let evil = BTreeMap::from([("/etc/app".to_string(), "/etc/${NAME}/../../root".to_string())]);
        let h = HostFiles {
            src: &src,
            host_root: &host,
            rename: &evil,
            templated: &templated,
            values: &values,
            adopt_identical: false,
        };
        assert!(h.install().is_err());
    }

    #[test]
    fn symlinks_are_data_and_temp_names_are_unpredictable() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("hostfs");
        let host = d.path().join("host");
        let secret = d.path().join("secret");
        fs::write(&secret, "root-only $SECRET_VAR").unwrap();
        fs::create_dir_all(src.join("etc")).unwrap();
        fs::write(src.join("etc/app.conf"), "plain\n").unwrap();
        std::os::unix::fs::symlink(&secret, src.join("etc/leak")).unwrap();
        fs::create_dir_all(host.join("etc")).unwrap();
        // A planted symlink at the old fixed temporary name, pointing elsewhere.
        let victim = d.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        std::os::unix::fs::symlink(&victim, host.join("etc/.app.conf.hoist-tmp")).unwrap();
        let values = Values(BTreeMap::from([("NAME".to_string(), "web".to_string())]));
        let rename = BTreeMap::new();
        let h = HostFiles {
            src: &src,
            host_root: &host,
            rename: &rename,
            templated: &[],
            values: &values,
            adopt_identical: false,
        };
        let (installed, skipped) = h.install().unwrap();
        assert!(skipped.is_empty());
        assert_eq!(installed.keys().collect::<Vec<_>>(), ["/etc/app.conf", "/etc/leak"]);
        assert_eq!(fs::read_to_string(host.join("etc/app.conf")).unwrap(), "plain\n");
        // The symlink is recreated as a symlink, its target never read.
        assert_eq!(fs::read_link(host.join("etc/leak")).unwrap(), secret);
        assert_eq!(installed["/etc/leak"], format!("symlink:{}", secret.display()));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(fs::read_link(host.join("etc/.app.conf.hoist-tmp")).unwrap(), victim);
        let mut names: Vec<_> =
            fs::read_dir(host.join("etc")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, [".app.conf.hoist-tmp", "app.conf", "leak"], "no temporary file left");

        // A templated file that is a symlink is refused, naming it; nothing is left installed.
        let host2 = d.path().join("host2");
        fs::create_dir_all(&host2).unwrap();
        let templated = vec!["/etc/leak".to_string()];
        let h = HostFiles { host_root: &host2, templated: &templated, ..h };
        let err = h.install().unwrap_err().to_string();
        assert_eq!(err, "/exports/hostfs/etc/leak: is a symlink (a templated host file must be a regular file)");
        assert!(!host2.join("etc/app.conf").exists());
    }
}
