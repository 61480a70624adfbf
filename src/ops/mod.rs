//! Orchestration of the container lifecycle: install, uninstall, list/status, run.
//! Each verb in its own file; they combine the store, the deploy renderers, the host files and
//! systemd. Paths on the host come from [`Host`].

pub mod install;
pub mod query;
pub mod repair;
pub mod run;
pub mod slot;
pub mod txn;
pub mod uninstall;
pub mod update;

use std::path::PathBuf;

use crate::deploy::container::DeploymentError;
use crate::deploy::hostfs::HostfsError;
use crate::deploy::name::NameError;
use crate::deploy::{bundle::BundleError, unit::UnitError, values::ValueError};
use crate::fsutil::PathError;
use crate::images::ImagesError;
use crate::systemd::SystemdError;

pub use crate::host::Host;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    BadName(NameError),
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
    Bundle { name: String, source: Box<BundleError> },
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

impl From<DeploymentError> for OpsError {
    fn from(e: DeploymentError) -> Self {
        match e {
            DeploymentError::BadName(e) => OpsError::BadName(e),
            DeploymentError::NoSuch(name) => OpsError::NoSuch(name),
            DeploymentError::Io(e) => OpsError::Io(e),
        }
    }
}

impl From<NameError> for OpsError {
    fn from(e: NameError) -> Self {
        OpsError::BadName(e)
    }
}
