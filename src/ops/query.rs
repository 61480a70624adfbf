//! `hoist list` and `hoist status`: installed containers, their deployment and unit state.

use std::fs;

use serde::Serialize;

use super::{OpsError, Result, current_slot, valid_name};
use crate::deploy::record::Record;
use crate::layout::Layout;
use crate::systemd::{Systemd, UnitStatus};

/// A row of `hoist list` (`--json` keys are stable).
#[derive(Debug, Clone, Serialize)]
pub struct ContainerSummary {
    pub name: String,
    pub image: String,
    pub digest: String,
    /// Current deployment slot (0 or 1).
    pub deployment: Option<u8>,
    /// running, inactive, failed, activating, no-service (or unknown when systemd can't be asked).
    pub state: String,
    pub runtime: String,
}

#[derive(Debug, Serialize)]
pub struct ContainerStatus {
    #[serde(flatten)]
    pub summary: ContainerSummary,
    pub source: Option<String>,
    pub unit: Option<UnitStatus>,
    /// Deployments present: slot → image.
    pub deployments: Vec<(u8, String)>,
    pub host_files: Vec<String>,
    pub values: std::collections::BTreeMap<String, String>,
}

/// Maps systemd's ActiveState to the states hoist reports.
pub fn state_of(st: &UnitStatus) -> &'static str {
    match st.active_state.as_str() {
        "active" | "reloading" => "running",
        "failed" => "failed",
        "activating" | "deactivating" => "activating",
        _ => "inactive",
    }
}

/// Names of installed containers (every `containers/NAME` link).
pub fn names(layout: &Layout) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(layout.containers())
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn summary(name: &str, rec: Option<&Record>, slot: Option<u8>, unit: Option<&UnitStatus>) -> ContainerSummary {
    let state = match (rec, unit) {
        (Some(r), _) if !r.has_service => "no-service".to_string(),
        (_, Some(u)) => state_of(u).to_string(),
        (_, None) => "unknown".to_string(),
    };
    ContainerSummary {
        name: name.to_string(),
        image: rec.map(|r| r.image.clone()).unwrap_or_else(|| "?".into()),
        digest: rec.map(|r| r.manifest.to_string()).unwrap_or_default(),
        deployment: slot,
        state,
        runtime: rec.and_then(|r| r.runtime.clone()).unwrap_or_else(|| "hoist".into()),
    }
}

fn load(layout: &Layout, name: &str) -> (Option<Record>, Option<u8>) {
    let Some(slot_dir) = current_slot(layout, name) else { return (None, None) };
    // A broken record still lists the container, with what is known.
    let rec = Record::load(&slot_dir).ok();
    let slot = rec
        .as_ref()
        .map(|r| r.slot)
        .or_else(|| slot_dir.to_string_lossy().rsplit('.').next().and_then(|s| s.parse().ok()));
    (rec, slot)
}

pub async fn list(layout: &Layout, sd: Option<&Systemd>) -> Vec<ContainerSummary> {
    let mut out = Vec::new();
    for name in names(layout) {
        let (rec, slot) = load(layout, &name);
        let unit = match sd {
            Some(sd) => sd.status(&format!("{name}.service")).await.ok(),
            None => None,
        };
        out.push(summary(&name, rec.as_ref(), slot, unit.as_ref()));
    }
    out
}

pub async fn status(layout: &Layout, sd: &Systemd, name: &str) -> Result<ContainerStatus> {
    if !valid_name(name) {
        return Err(OpsError::BadName(name.to_string()));
    }
    if current_slot(layout, name).is_none() {
        return Err(OpsError::NoSuch(name.to_string()));
    }
    let (rec, slot) = load(layout, name);
    let unit = sd.status(&format!("{name}.service")).await.ok();
    let mut deployments = Vec::new();
    for s in [0u8, 1] {
        if let Ok(r) = Record::load(&super::slot_dir(layout, name, s)) {
            deployments.push((s, r.image.clone()));
        }
    }
    Ok(ContainerStatus {
        summary: summary(name, rec.as_ref(), slot, unit.as_ref()),
        source: rec.as_ref().and_then(|r| r.source.clone()),
        unit,
        deployments,
        host_files: rec.as_ref().map(|r| r.host_files.keys().cloned().collect()).unwrap_or_default(),
        values: rec
            .map(|r| r.values.into_iter().filter(|(k, _)| k != "ALL_PROCESS_CAPABILITIES").collect())
            .unwrap_or_default(),
    })
}
