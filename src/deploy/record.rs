//! The install record of one deployment (its file in a slot: see [`super::container::Slot`]).
//!
//! Written last into a slot being prepared, so a slot with a record is complete. A broken or
//! missing record never breaks listing other containers (readers skip or report it). Version 1
//! records kept the host-file plan in a side file (`hostfs.json`); the migration to the v2
//! layout folds it into [`Record::hostfs`].

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::seccomp::Seccomp;
use crate::digest::Digest;
use crate::fsutil::{self, IoContext, PathError};

pub const RECORD_VERSION: u32 = 2;

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
    /// Host files an earlier deployment installed and the admin then changed: kept on the host,
    /// owned by no deployment any more, tracked (path → the checksum hoist installed) through
    /// every later update and rollback so that uninstall can name them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kept_host_files: BTreeMap<String, String>,
    /// How the image's `/exports/hostfs` is installed (from its `/exports/manifest.json`).
    #[serde(default)]
    pub hostfs: HostfsPlan,
    /// False for images with `noContainerService`.
    pub has_service: bool,
    /// What hoist converted in the image's config.json.template from an older runtime-spec
    /// (see super::compat), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conversions: Vec<String>,
    /// What the signature policy accepted when the image was pulled (absent: pulled with
    /// `--insecure-policy`, or by a hoist that did not verify). A rollback re-uses it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<crate::trust::Verified>,
    /// The `--health-*` flags given to install/update (kept for later updates).
    #[serde(default, skip_serializing_if = "crate::health::HealthFlags::is_empty")]
    pub health_flags: crate::health::HealthFlags,
    /// The health check this deployment runs (also in its `health.json`); none: no check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::HealthCheck>,
    /// Unix time of the deployment.
    pub created: u64,
}

/// The image's host-file rules, as its `/exports/manifest.json` gave them at deployment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HostfsPlan {
    /// Source path under `/exports/hostfs` → destination on the host.
    #[serde(default)]
    pub rename_files: BTreeMap<String, String>,
    /// Host files rendered with the deployment's values.
    #[serde(default)]
    pub installed_files_template: Vec<String>,
}

impl Record {
    /// Reads a record file; a corrupt one is an error naming the file.
    pub fn load(file: &Path) -> Result<Record, PathError> {
        let data = fs::read(file).at(file)?;
        serde_json::from_slice(&data)
            .map_err(|e| PathError::new(file, std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
    }

    /// Writes a record file atomically.
    pub fn save(&self, file: &Path) -> Result<(), PathError> {
        let data = serde_json::to_vec_pretty(self).expect("record serializes");
        fsutil::write_atomic(file, &data, 0o600)
    }
}
