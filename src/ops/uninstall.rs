//! `hoist uninstall NAME`: stop and disable the unit, remove it and the tmpfiles snippet,
//! reload, remove unmodified host files (keeping edited ones), remove both deployments.
//! Data directories stay unless `--purge`. Works on half-installed containers: each step
//! deals with what is there.

use std::fs;

use serde::Serialize;

use super::txn::{self, Op, Txn, fault};
use super::{Host, OpsError, Result};
use crate::deploy::bundle;
use crate::deploy::container::{Container, Slot};
use crate::deploy::hostfs;
use crate::deploy::record::Record;
use crate::fsutil;
use crate::layout::Layout;
use crate::systemd::Systemd;

#[derive(Debug, Serialize)]
pub struct Uninstalled {
    pub name: String,
    /// Host files kept because they were modified.
    pub kept_host_files: Vec<String>,
    pub removed_host_files: Vec<String>,
    /// Data directories removed (with --purge) or kept.
    pub data: Vec<String>,
    pub purged: bool,
}

/// The record of the current deployment, or of any slot of a half-installed container.
fn find_record(c: &Container) -> Option<(Slot, Record)> {
    let mut candidates: Vec<Slot> = c.current().into_iter().collect();
    candidates.extend(c.slots());
    candidates.into_iter().find_map(|s| s.record().ok().map(|r| (s, r)))
}

pub async fn uninstall(layout: &Layout, sd: &Systemd, host: &Host, name: &str, purge: bool) -> Result<Uninstalled> {
    let c = Container::at(layout, name)?;
    if !c.exists() {
        return Err(OpsError::NoSuch(name.to_string()));
    }
    let out = uninstall_container(&c, sd, host, purge).await?;
    crate::runner::forget(layout.run_root(), name);
    Ok(out)
}

/// Uninstalls whatever of `c` is there (also the remains of an interrupted install or
/// uninstall).
pub(super) async fn uninstall_container(c: &Container, sd: &Systemd, host: &Host, purge: bool) -> Result<Uninstalled> {
    let name = c.name();
    let found = find_record(c);
    let unit = c.unit_name();
    txn::begin(c, &Txn { op: Op::Uninstall, from: None, to: None, was_running: false })?;
    // 1. stop and disable first, so nothing restarts a half-removed container.
    let status = sd.status(&unit).await?;
    if status.load_state != "not-found" {
        if !matches!(status.active_state.as_str(), "inactive" | "failed") {
            sd.stop(&unit).await?;
            fault("uninstall:stopped");
        }
        sd.disable(&unit).await?;
        let _ = sd.reset_failed(&unit).await;
    }
    // 2. unit and tmpfiles snippet.
    let conf = host.tmpfiles_file(name);
    if conf.exists() {
        let _ = host.tmpfiles("--remove", &conf);
        fs::remove_file(&conf).map_err(|e| fsutil::PathError::new(&conf, e))?;
    }
    let unit_file = host.unit_file(&unit);
    if unit_file.exists() {
        fs::remove_file(&unit_file).map_err(|e| fsutil::PathError::new(&unit_file, e))?;
    }
    sd.reload().await?;
    fault("uninstall:unit");
    // 3. host files, data.
    let mut out = Uninstalled {
        name: name.to_string(),
        kept_host_files: Vec::new(),
        removed_host_files: Vec::new(),
        data: Vec::new(),
        purged: purge,
    };
    if let Some((slot, rec)) = &found {
        // Also the changed files earlier deployments left (restored to what hoist installed,
        // they go too).
        let mut files = rec.kept_host_files.clone();
        files.extend(rec.host_files.clone());
        let kept = hostfs::remove(&host.root, &files);
        out.removed_host_files = files.keys().filter(|k| !kept.contains(k)).cloned().collect();
        out.kept_host_files = kept.into_iter().filter(|p| files.get(p).is_some_and(|s| s != "dir")).collect();
        let state = rec.values.get("STATE_DIRECTORY").cloned().unwrap_or_else(|| "/var/lib".into());
        if let Ok(config) = fs::read_to_string(slot.config()) {
            for src in bundle::bind_sources(&config) {
                // Data of this container: bind sources under the state directory (not /etc, /run).
                if src.starts_with(&format!("{}/", state.trim_end_matches('/'))) && !src.split('/').any(|c| c == "..") {
                    if purge {
                        let _ = fsutil::remove_any(std::path::Path::new(&src));
                    }
                    out.data.push(src);
                }
            }
        }
    }
    fault("uninstall:hostfs");
    // 4. deployments and the journal, renamed out of the live name first (see Container::remove).
    c.remove(|| fault("uninstall:renamed"))?;
    Ok(out)
}
