//! `hoist uninstall NAME`: stop and disable the unit, remove it and the tmpfiles snippet,
//! reload, remove unmodified host files (keeping edited ones), remove both deployments.
//! Data directories stay unless `--purge`. Works on half-installed containers: each step
//! deals with what is there.

use std::fs;
use std::path::PathBuf;

use serde::Serialize;

use super::txn::{self, Op, Txn, fault};
use super::{Host, OpsError, Result, current_slot, slot_dir, valid_name};
use crate::deploy::bundle;
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
fn find_record(layout: &Layout, name: &str) -> Option<(PathBuf, Record)> {
    let mut candidates = Vec::new();
    if let Some(s) = current_slot(layout, name) {
        candidates.push(s);
    }
    candidates.extend([slot_dir(layout, name, 0), slot_dir(layout, name, 1)]);
    candidates.into_iter().find_map(|s| Record::load(&s).ok().map(|r| (s, r)))
}

pub async fn uninstall(layout: &Layout, sd: &Systemd, host: &Host, name: &str, purge: bool) -> Result<Uninstalled> {
    if !valid_name(name) {
        return Err(OpsError::BadName(name.to_string()));
    }
    let link = layout.containers().join(name);
    let found = find_record(layout, name);
    let slots: Vec<PathBuf> = [0u8, 1].iter().map(|s| slot_dir(layout, name, *s)).filter(|p| p.exists()).collect();
    let ours =
        found.is_some() || fs::symlink_metadata(&link).is_ok() || !slots.is_empty() || txn::path(layout, name).exists();
    if !ours {
        return Err(OpsError::NoSuch(name.to_string()));
    }
    let unit = format!("{name}.service");
    txn::begin(layout, name, &Txn { op: Op::Uninstall, from: None, to: None, was_running: false })?;
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
        out.kept_host_files = hostfs::remove(&host.root, &rec.host_files);
        out.removed_host_files = rec.host_files.keys().filter(|k| !out.kept_host_files.contains(k)).cloned().collect();
        let state = rec.values.get("STATE_DIRECTORY").cloned().unwrap_or_else(|| "/var/lib".into());
        if let Ok(config) = fs::read_to_string(slot.join("config.json")) {
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
    // 4. deployments.
    let _ = fs::remove_file(&link);
    // Renamed out of the live name first, so a crash never leaves a half-deleted slot whose
    // info.json a later command would trust; `images prune` deletes leftover trash.
    for s in slots {
        let slot_name = s.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let trash = format!(".trash-{slot_name}-{}.tmp", std::process::id());
        crate::rooted::remove_via_rename(
            &layout.containers(),
            s.file_name().unwrap_or_default(),
            trash.as_ref(),
            || fault("uninstall:renamed"),
        )
        .map_err(|e| fsutil::PathError::new(&s, e))?;
    }
    txn::end(layout, name)?;
    Ok(out)
}
