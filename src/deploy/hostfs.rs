//! Host files: `/exports/hostfs/**` copied onto the host (atomic's contract).
//!
//! - the destination is the same path on the host after `renameFiles` (applied to every path
//!   prefix, so a directory can be renamed: `/etc/etcd/etcd.conf -> $CONF_DIRECTORY/$NAME/etcd.conf`);
//! - files listed in `installedFilesTemplate` are rendered with the deployment's values;
//! - a destination that already exists is left alone and not tracked (the host owns it);
//! - empty directories are created and tracked; symlinks are recreated as symlinks;
//! - every installed file is recorded with its sha256, and removed later only while unchanged.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::values::{Target, ValueError, Values};
use crate::digest::Digest;
use crate::fsutil::{self, IoContext, PathError};

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
    src: PathBuf,
    /// Absolute host path (before `host_root`).
    dest: String,
    /// Path as listed in the image (`/etc/x`), for installedFilesTemplate.
    image_path: String,
}

fn sha_of(p: &Path) -> std::io::Result<String> {
    Ok(Digest::of_bytes(&fs::read(p)?).hex().to_string())
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
        let mut out = Vec::new();
        let mut stack = vec![self.src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let mut entries: Vec<_> = fs::read_dir(&dir).at(&dir)?.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let p = e.path();
                let image_path = format!("/{}", p.strip_prefix(self.src).expect("under src").display());
                let ft = e.file_type().at(&p)?;
                if ft.is_dir() && fs::read_dir(&p).at(&p)?.next().is_some() {
                    stack.push(p);
                    continue;
                }
                let dest = renamed(&image_path, &rendered).unwrap_or_else(|| image_path.clone());
                out.push(Item { src: p, dest, image_path });
            }
        }
        Ok(out)
    }

    /// What `item` would install: its checksum string as recorded (see `Record::host_files`).
    fn planned_sum(&self, item: &Item) -> Result<String, HostfsError> {
        let m = fs::symlink_metadata(&item.src).at(&item.src)?;
        Ok(if m.file_type().is_symlink() {
            format!("symlink:{}", fs::read_link(&item.src).at(&item.src)?.display())
        } else if m.is_dir() {
            "dir".to_string()
        } else if self.templated.iter().any(|t| t == &item.image_path) {
            let text = fs::read_to_string(&item.src).at(&item.src)?;
            let out = self.values.render(&format!("/exports/hostfs{}", item.image_path), &text, Target::Raw)?;
            Digest::of_bytes(out.as_bytes()).hex().to_string()
        } else {
            sha_of(&item.src).at(&item.src)?
        })
    }

    /// The destinations that hold exactly what an install would put there: path → checksum.
    pub fn identical_on_host(&self) -> Result<BTreeMap<String, String>, HostfsError> {
        let mut out = BTreeMap::new();
        for item in self.plan()? {
            let dest = self.host_root.join(item.dest.trim_start_matches('/'));
            let sum = self.planned_sum(&item)?;
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
            for item in self.plan()? {
                let dest = self.host_root.join(item.dest.trim_start_matches('/'));
                if fs::symlink_metadata(&dest).is_ok() {
                    if self.adopt_identical {
                        let sum = self.planned_sum(&item)?;
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
                let m = fs::symlink_metadata(&item.src).at(&item.src)?;
                let sum = if m.file_type().is_symlink() {
                    let target = fs::read_link(&item.src).at(&item.src)?;
                    std::os::unix::fs::symlink(&target, &dest).at(&dest)?;
                    format!("symlink:{}", target.display())
                } else if m.is_dir() {
                    fs::create_dir(&dest).at(&dest)?;
                    "dir".to_string()
                } else if self.templated.iter().any(|t| t == &item.image_path) {
                    let text = fs::read_to_string(&item.src).at(&item.src)?;
                    let out = self.values.render(&format!("/exports/hostfs{}", item.image_path), &text, Target::Raw)?;
                    fsutil::write_atomic(&dest, out.as_bytes(), m.permissions().mode() & 0o7777)?;
                    Digest::of_bytes(out.as_bytes()).hex().to_string()
                } else {
                    let tmp = dest.with_file_name(format!(
                        ".{}.hoist-tmp",
                        dest.file_name().unwrap_or_default().to_string_lossy()
                    ));
                    fs::copy(&item.src, &tmp).at(&tmp)?;
                    fs::set_permissions(&tmp, fs::Permissions::from_mode(m.permissions().mode() & 0o7777)).at(&tmp)?;
                    fs::rename(&tmp, &dest).at(&dest)?;
                    sha_of(&dest).at(&dest)?
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
}
