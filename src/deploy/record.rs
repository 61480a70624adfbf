//! `containers/NAME.N/info.json`: the install record of one deployment.
//!
//! Written last into a slot being prepared, so a slot with a record is complete. A broken or
//! missing record never breaks listing other containers (readers skip or report it).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::seccomp::Seccomp;
use crate::digest::Digest;
use crate::fsutil::{self, IoContext, PathError};

pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub version: u32,
    pub name: String,
    pub slot: u8,
    /// Stored image name (`etcd:latest`).
    pub image: String,
    /// Where the image came from (re-read by `update`).
    pub source: Option<String>,
    /// Manifest digest: pins the image's blobs and layers (`images prune` keeps them).
    pub manifest: Digest,
    /// Every template value of this deployment.
    pub values: BTreeMap<String, String>,
    /// What the user gave with `--set` (kept for updates).
    pub sets: BTreeMap<String, String>,
    /// An external OCI runtime (`--runtime`); none = hoist's runner.
    pub runtime: Option<String>,
    /// The seccomp choice of `--security-opt` (generated configs only; absent = default profile).
    #[serde(default, skip_serializing_if = "Seccomp::is_default")]
    pub seccomp: Seccomp,
    /// Host files installed from `/exports/hostfs`: path → sha256 (`dir` for directories,
    /// `symlink:TARGET` for links). Removed on uninstall only while unchanged.
    pub host_files: BTreeMap<String, String>,
    /// False for images with `noContainerService`.
    pub has_service: bool,
    /// Unix time of the deployment.
    pub created: u64,
}

impl Record {
    pub fn load(slot_dir: &Path) -> Result<Record, PathError> {
        let p = slot_dir.join("info.json");
        let data = fs::read(&p).at(&p)?;
        serde_json::from_slice(&data)
            .map_err(|e| PathError::new(&p, std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
    }

    pub fn save(&self, slot_dir: &Path) -> Result<(), PathError> {
        let data = serde_json::to_vec_pretty(self).expect("record serializes");
        fsutil::write_atomic(&slot_dir.join("info.json"), &data, 0o600)
    }
}
