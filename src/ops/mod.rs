//! Orchestration of the container lifecycle: install, uninstall, list/status, run.
//! Each verb in its own file; they combine the store, the deploy renderers, the host files and
//! systemd. Paths on the host come from [`Host`].

pub mod install;
pub mod query;
pub mod repair;
pub mod run;
pub mod txn;
pub mod uninstall;
pub mod update;

use std::path::{Path, PathBuf};

use crate::deploy::hostfs::HostfsError;
use crate::deploy::{bundle::BundleError, unit::UnitError, values::ValueError};
use crate::fsutil::PathError;
use crate::images::ImagesError;
use crate::layout::Layout;
use crate::systemd::SystemdError;

pub use crate::host::Host;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("invalid container name {0:?}: use letters, digits, '-', '_' and '.', at most 64, not ending in .0 or .1")]
    BadName(String),
    #[error("container {0} already exists (hoist uninstall {0} first, or --name another)")]
    Exists(String),
    #[error("{name}: {} exists and was not installed by hoist; not overwriting it", path.display())]
    Foreign { name: String, path: PathBuf },
    #[error("no container named {0} (see `hoist list -a`)")]
    NoSuch(String),
    #[error("{name}: {reason}")]
    Failed { name: String, reason: String },
    #[error("{name}: {source}")]
    Values { name: String, source: ValueError },
    #[error("{name}: {source}")]
    Bundle { name: String, source: BundleError },
    #[error("{name}: {source}")]
    Unit { name: String, source: UnitError },
    #[error("{name}: host files: {source}")]
    Hostfs { name: String, source: HostfsError },
    #[error(transparent)]
    Images(#[from] ImagesError),
    #[error(transparent)]
    Systemd(#[from] SystemdError),
    #[error(transparent)]
    Io(#[from] PathError),
}

pub type Result<T, E = OpsError> = std::result::Result<T, E>;

/// Container names: what systemd accepts in a unit name, minus what would collide with slots.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.ends_with(".0")
        && !name.ends_with(".1")
}

/// `containers/NAME` (the current-deployment link) and the slot it points at.
pub fn current_slot(layout: &Layout, name: &str) -> Option<PathBuf> {
    let link = layout.containers().join(name);
    let target = std::fs::read_link(&link).ok()?;
    Some(if target.is_absolute() { target } else { layout.containers().join(target) })
}

pub fn slot_dir(layout: &Layout, name: &str, slot: u8) -> PathBuf {
    layout.containers().join(format!("{name}.{slot}"))
}

/// Replaces `link` by a symlink to `target` atomically (rename of a new link over it).
pub fn switch_link(link: &Path, target: &str) -> Result<(), PathError> {
    let tmp = link.with_file_name(format!(".{}.link-tmp", link.file_name().unwrap_or_default().to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| PathError::new(&tmp, e))?;
    std::fs::rename(&tmp, link).map_err(|e| PathError::new(link, e))?;
    crate::fsutil::sync_dir(link.parent().unwrap_or(Path::new(".")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        for ok in ["etcd", "etcd-3.4", "web_1", "a"] {
            assert!(super::valid_name(ok), "{ok}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "-x", "x.0", "x.1", "a b", "a\nb", &"x".repeat(65), "a@b", "ünï"] {
            assert!(!super::valid_name(bad), "{bad:?}");
        }
    }
}
