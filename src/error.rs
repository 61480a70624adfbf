//! The crate-wide error: one variant per module, each module's enum naming the object and cause.
//! `main` prints it as one line (`hoist: <message>`) and exits 1; usage errors exit 2 (clap).

use crate::fetch::PullError;
use crate::fsutil::PathError;
use crate::images::ImagesError;
use crate::imgref::RefError;
use crate::mount::MountError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Ref(#[from] RefError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error(transparent)]
    Images(#[from] ImagesError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Ops(#[from] crate::ops::OpsError),
    #[error(transparent)]
    Systemd(#[from] crate::systemd::SystemdError),
    #[error(transparent)]
    SecurityOpt(#[from] crate::deploy::seccomp::SecurityOptError),
    #[error("state root: {0}")]
    State(PathError),
    /// Arguments that parse but make no sense together.
    #[error("{0}")]
    Usage(String),
    /// A failure whose explanation was already printed (exit 1, nothing more to say).
    #[error("")]
    Reported,
}

impl Error {
    /// Exit status: 2 for usage errors, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
