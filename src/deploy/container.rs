//! A container's deployments on disk: the one owner of `containers/NAME/`.
//!
//! ```text
//! <root>/containers/
//!   .layout                   "2": the state root uses this layout (written by super::migrate)
//!   NAME/                     one installed container; nothing else lives here
//!     0/  1/                  deployment slots, each complete or absent:
//!       config.json           the OCI runtime config (bundle)
//!       rootfs/               the checked-out image
//!       info.json             the deployment record (super::record), written last
//!       NAME.service          the rendered unit (absent for noContainerService images)
//!       tmpfiles.conf         the rendered systemd-tmpfiles snippet (absent when empty)
//!     current -> 0|1          the current deployment, switched by rename(2) of a new link
//!     txn                     the transaction journal while a change is in flight (ops::txn)
//! <root>/tmp/slot-NAME-N      a slot being prepared, renamed to NAME/N when complete
//! <root>/tmp/trash-NAME-PID   a container being deleted, renamed out of its live name first
//! ```
//!
//! Invariants: a container is installed when `NAME/current` exists; a slot directory holds a
//! record exactly when it is complete (it is renamed into place only then); `current` only
//! ever points at a complete slot. A container's deployments are inside its own directory,
//! so no container name can collide with another container's deployment (`web` and `web.0`
//! are two containers). Every path inside `containers/` is spelled here and nowhere else.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use super::name::{self, NameError};
use super::record::Record;
use crate::fsutil::{self, IoContext, PathError};
use crate::layout::Layout;

/// Marks `containers/` as written in this layout (see super::migrate).
pub(super) const LAYOUT_MARKER: &str = ".layout";
const CURRENT: &str = "current";
const TXN: &str = "txn";
/// The record file of a slot (the same in the v1 layout: see super::migrate).
pub(super) const RECORD: &str = "info.json";
const CONFIG: &str = "config.json";
const ROOTFS: &str = "rootfs";
const TMPFILES: &str = "tmpfiles.conf";

#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error(transparent)]
    BadName(#[from] NameError),
    #[error("no container named {0} (see `hoist list -a`)")]
    NoSuch(String),
    #[error(transparent)]
    Io(#[from] PathError),
}

/// One container's directory: its slots, the current link and its transaction journal.
#[derive(Debug, Clone)]
pub struct Container {
    name: String,
    dir: PathBuf,
    tmp: PathBuf,
}

/// The unit name of container `name`.
pub fn unit_name(name: &str) -> String {
    format!("{name}.service")
}

impl Container {
    /// The container `name`, whether or not it is installed (install, uninstall of remains).
    pub fn at(layout: &Layout, name: &str) -> Result<Container, NameError> {
        name::validate(name)?;
        Ok(Container { name: name.to_string(), dir: layout.containers().join(name), tmp: layout.tmp() })
    }

    /// An installed container: the name is valid and it has a current deployment.
    pub fn open(layout: &Layout, name: &str) -> Result<Container, DeploymentError> {
        let c = Container::at(layout, name)?;
        if c.current().is_none() {
            return Err(DeploymentError::NoSuch(name.to_string()));
        }
        Ok(c)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `NAME.service`.
    pub fn unit_name(&self) -> String {
        unit_name(&self.name)
    }

    /// `containers/NAME`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Anything of this container on disk (a directory, even half-installed).
    pub fn exists(&self) -> bool {
        fs::symlink_metadata(&self.dir).is_ok()
    }

    pub fn slot(&self, n: u8) -> Slot {
        Slot { n, dir: self.dir.join(n.to_string()), unit: self.unit_name() }
    }

    /// Both slots, present or not.
    pub fn slots(&self) -> [Slot; 2] {
        [self.slot(0), self.slot(1)]
    }

    /// The current deployment (`current` → `0|1`).
    pub fn current(&self) -> Option<Slot> {
        let target = fs::read_link(self.dir.join(CURRENT)).ok()?;
        match target.to_str()? {
            "0" => Some(self.slot(0)),
            "1" => Some(self.slot(1)),
            _ => None,
        }
    }

    /// The current deployment and its record.
    pub fn current_record(&self) -> Result<(Slot, Record), DeploymentError> {
        let slot = self.current().ok_or_else(|| DeploymentError::NoSuch(self.name.clone()))?;
        let rec = slot.record()?;
        Ok((slot, rec))
    }

    /// Creates `containers/NAME/` (install); a new `containers/` is marked as this layout.
    pub fn create(&self) -> Result<(), PathError> {
        let parent = self.dir.parent().unwrap_or(Path::new("/"));
        if !parent.exists() {
            fsutil::ensure_dir(parent, 0o700)?;
            mark_layout(parent)?;
        }
        fsutil::ensure_dir(&self.dir, 0o700)
    }

    /// Points `current` at slot `n`: rename(2) of a new link over the old one, then fsync.
    pub fn switch_to(&self, n: u8) -> Result<(), PathError> {
        switch_link(&self.dir.join(CURRENT), &n.to_string())
    }

    /// Where slot `n` is prepared before [`Slot::install_from`] renames it into place.
    pub fn staging(&self, n: u8) -> PathBuf {
        self.tmp.join(format!("slot-{}-{n}", self.name))
    }

    /// The transaction journal (`containers/NAME/txn`).
    pub fn txn_file(&self) -> PathBuf {
        self.dir.join(TXN)
    }

    /// Deletes the whole container directory: renamed out of its live name first (into
    /// `tmp/`, where `images prune` finds what a crash left), then deleted, so a crash never
    /// leaves a half-deleted slot whose record a later command would trust. `renamed` runs
    /// between the two (fault injection).
    pub fn remove(&self, renamed: impl FnOnce()) -> Result<(), PathError> {
        if !self.exists() {
            return Ok(());
        }
        fsutil::ensure_dir(&self.tmp, 0o700)?;
        let trash = self.tmp.join(format!("trash-{}-{}", self.name, std::process::id()));
        fsutil::remove_any(&trash).at(&trash)?;
        fs::rename(&self.dir, &trash).at(&self.dir)?;
        let parent = self.dir.parent().unwrap_or(Path::new("/"));
        fsutil::sync_dir(parent)?;
        renamed();
        fsutil::remove_any(&trash).at(&trash)
    }
}

/// One deployment slot of a container (`containers/NAME/N`).
#[derive(Debug, Clone)]
pub struct Slot {
    pub n: u8,
    dir: PathBuf,
    unit: String,
}

impl Slot {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The other slot of the same container.
    pub fn other(&self) -> Slot {
        let n = 1 - self.n;
        Slot { n, dir: self.dir.with_file_name(n.to_string()), unit: self.unit.clone() }
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join(CONFIG)
    }

    /// The deployment's health check, read by the runner (absent: no check).
    pub fn health(&self) -> PathBuf {
        self.dir.join(crate::health::FILE)
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join(ROOTFS)
    }

    pub fn record_file(&self) -> PathBuf {
        self.dir.join(RECORD)
    }

    /// The rendered unit, kept in the slot and copied to the unit directory when current.
    pub fn unit_file(&self) -> PathBuf {
        self.dir.join(&self.unit)
    }

    pub fn tmpfiles(&self) -> PathBuf {
        self.dir.join(TMPFILES)
    }

    pub fn record(&self) -> Result<Record, PathError> {
        Record::load(&self.record_file())
    }

    pub fn save_record(&self, rec: &Record) -> Result<(), PathError> {
        rec.save(&self.record_file())
    }

    /// A slot with the same file names in another directory (a staging directory).
    pub fn staged_at(&self, dir: PathBuf) -> Slot {
        Slot { n: self.n, dir, unit: self.unit.clone() }
    }

    /// Replaces this slot by the complete `staged` one (rename; the old tree is deleted first).
    pub fn install_from(&self, staged: &Slot) -> Result<(), PathError> {
        fsutil::remove_any(&self.dir).at(&self.dir)?;
        fs::rename(&staged.dir, &self.dir).at(&self.dir)?;
        fsutil::sync_dir(self.dir.parent().unwrap_or(Path::new("/")))
    }

    /// Deletes the slot's tree.
    pub fn remove(&self) -> Result<(), PathError> {
        fsutil::remove_any(&self.dir).at(&self.dir)
    }
}

/// Replaces `link` by a symlink to `target` atomically (rename of a new link over it).
pub(super) fn switch_link(link: &Path, target: &str) -> Result<(), PathError> {
    let base = link.file_name().unwrap_or(OsStr::new("link")).to_string_lossy();
    let tmp = link.with_file_name(format!(".{base}.link-tmp"));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).at(&tmp)?;
    fs::rename(&tmp, link).at(link)?;
    fsutil::sync_dir(link.parent().unwrap_or(Path::new(".")))
}

/// Records that `containers/` is in this layout.
pub(super) fn mark_layout(containers: &Path) -> Result<(), PathError> {
    fsutil::write_atomic(&containers.join(LAYOUT_MARKER), b"2\n", 0o600)
}

/// Every container directory (installed or half-installed), by name.
pub fn all(layout: &Layout) -> Vec<Container> {
    let Ok(rd) = fs::read_dir(layout.containers()) else { return Vec::new() };
    let mut out: Vec<Container> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Container::at(layout, e.file_name().to_str()?).ok())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Names of installed containers (those with a current deployment).
pub fn installed(layout: &Layout) -> Vec<String> {
    all(layout).into_iter().filter(|c| c.current().is_some()).map(|c| c.name).collect()
}

/// Every complete deployment of every container: (container, slot, record). A broken record
/// is skipped (it pins nothing and never breaks listing).
pub fn deployments(layout: &Layout) -> Vec<(String, u8, Record)> {
    let mut out = Vec::new();
    for c in all(layout) {
        for s in c.slots() {
            if let Ok(rec) = s.record() {
                out.push((c.name.clone(), s.n, rec));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_current() {
        let t = tempfile::tempdir().unwrap();
        let layout = Layout::new(t.path());
        let c = Container::at(&layout, "web.0").unwrap();
        assert_eq!(c.dir(), t.path().join("containers/web.0"));
        assert_eq!(c.unit_name(), "web.0.service");
        assert_eq!(c.slot(1).unit_file(), t.path().join("containers/web.0/1/web.0.service"));
        assert_eq!(c.slot(0).other().dir(), t.path().join("containers/web.0/1"));
        assert!(c.current().is_none());
        assert!(matches!(Container::open(&layout, "web.0"), Err(DeploymentError::NoSuch(_))));
        c.create().unwrap();
        fs::create_dir(c.slot(1).dir()).unwrap();
        c.switch_to(1).unwrap();
        assert_eq!(fs::read_link(c.dir().join("current")).unwrap(), Path::new("1"));
        assert_eq!(Container::open(&layout, "web.0").unwrap().current().unwrap().n, 1);
        assert_eq!(installed(&layout), vec!["web.0".to_string()]);
        // Another container beside it is independent.
        Container::at(&layout, "web").unwrap().create().unwrap();
        assert_eq!(installed(&layout), vec!["web.0".to_string()]);
        assert_eq!(all(&layout).len(), 2);
        c.remove(|| {}).unwrap();
        assert!(!c.exists());
        assert!(Container::at(&layout, "web").unwrap().exists());
        assert!(matches!(Container::at(&layout, "../x"), Err(NameError { .. })));
    }
}
