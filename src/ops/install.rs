//! `hoist install`: a stored image becomes an enabled systemd service.
//!
//! 1. journal the install (`containers/NAME/txn`), prepare deployment slot 0 completely
//!    (see [`super::slot`]) and rename it to `containers/NAME/0`;
//! 2. copy the image's host files (tracked by checksum);
//! 3. write `/etc/systemd/system/NAME.service` and `/etc/tmpfiles.d/NAME.conf` atomically and
//!    run `systemd-tmpfiles --create` on the snippet;
//! 4. point `containers/NAME/current` at the slot (rename of a new symlink);
//! 5. over D-Bus: Reload, EnableUnitFiles, and with `--now` StartUnit, waiting for the job.
//!
//! Any failure undoes what was done (host files, unit, snippet, link, slot) and reloads
//! systemd: a failed install leaves nothing behind.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use serde::Serialize;

use super::slot::{SlotSpec, check_runtime, identical_host_files, install_host_files, prepare_slot, publish_unit};
use super::txn::{self, Op, Txn, fault};
use super::{Host, OpsError, Result};
use crate::deploy::container::Container;
use crate::deploy::hostfs;
use crate::deploy::seccomp::Seccomp;
use crate::digest::Digest;
use crate::layers::ExtractOptions;
use crate::progress::Progress;
use crate::store::{Store, StoredImage};
use crate::systemd::Systemd;

#[derive(Debug, Default, Clone)]
pub struct InstallOptions {
    pub name: Option<String>,
    pub sets: BTreeMap<String, String>,
    /// An external OCI runtime (runc, crun) instead of hoist's runner.
    pub runtime: Option<PathBuf>,
    /// `--security-opt seccomp=…` (generated configs only).
    pub seccomp: Seccomp,
    pub now: bool,
    /// Limits (and device decision) for layers the checkout has to extract.
    pub extract: ExtractOptions,
    /// `--health-*` flags.
    pub health: crate::health::HealthFlags,
}

#[derive(Debug, Serialize)]
pub struct Installed {
    pub name: String,
    pub image: String,
    pub digest: Digest,
    pub deployment: u8,
    pub host_files: Vec<String>,
    /// Host files that already existed and were left alone.
    pub skipped_host_files: Vec<String>,
    pub enabled: bool,
    pub started: bool,
    /// What was converted in the image's config from an older runtime-spec.
    pub conversions: Vec<String>,
}

pub async fn install(
    store: &Store,
    sd: &Systemd,
    host: &Host,
    img: &StoredImage,
    opts: &InstallOptions,
    progress: &Progress,
) -> Result<Installed> {
    let name = opts.name.clone().unwrap_or_else(|| img.name.default_container_name());
    let c = Container::at(store.layout(), &name)?;
    if c.current().is_some() {
        return Err(OpsError::Exists(name));
    }
    let unit = c.unit_name();
    for path in [host.unit_file(&unit), host.tmpfiles_file(&name)] {
        if fs::symlink_metadata(&path).is_ok() {
            return Err(OpsError::Foreign { name, path });
        }
    }
    let runtime = match &opts.runtime {
        Some(rt) => Some(check_runtime(&name, rt)?),
        None => None,
    };
    // Remains of an interrupted install of the same name (no current link, no journal) are
    // replaced.
    for s in c.slots() {
        s.remove()?;
    }
    txn::begin(&c, &Txn { op: Op::Install, from: None, to: Some(0), was_running: false })?;
    fault("install:txn");
    let spec = SlotSpec {
        container: &c,
        slot: 0,
        sets: &opts.sets,
        stored: None,
        runtime: runtime.as_deref(),
        seccomp: &opts.seccomp,
        extract: opts.extract,
        health: &opts.health,
    };
    let mut rec = match prepare_slot(store, img, &spec, progress) {
        Ok(r) => r,
        Err(e) => {
            c.remove(|| {})?;
            return Err(e);
        }
    };
    fault("install:slot");
    let slot = c.slot(0);
    let mut installed_files = BTreeMap::new();
    let result: Result<Installed> = async {
        let (files, skipped) = install_host_files(host, &slot, &rec, false)?;
        installed_files = files.clone();
        rec.host_files = files;
        slot.save_record(&rec)?;
        fault("install:hostfs");
        if rec.has_service {
            publish_unit(host, &c, &slot)?;
        }
        fault("install:unit");
        c.switch_to(0)?;
        fault("install:link");
        let mut enabled = false;
        let mut started = false;
        if rec.has_service {
            sd.reload().await?;
            enabled = sd.enable(&unit).await?;
            fault("install:enable");
            if opts.now {
                sd.start(&unit).await?;
                started = true;
            }
        }
        Ok(Installed {
            name: name.clone(),
            image: img.name.to_string(),
            digest: img.manifest.clone(),
            deployment: 0,
            host_files: rec.host_files.keys().cloned().collect(),
            skipped_host_files: skipped,
            enabled,
            started,
            conversions: rec.conversions.clone(),
        })
    }
    .await;
    if result.is_err() {
        undo_install(sd, host, &c, &installed_files).await;
        return result;
    }
    txn::end(&c)?;
    result
}

/// Removes everything an install of `c` may have done, best effort, newest first — the
/// container's directory (journal included) last. Host files: the recorded ones, plus any that
/// hold exactly what the slot would install (a crash may have come between copying them and
/// recording them).
pub async fn undo_install(sd: &Systemd, host: &Host, c: &Container, recorded: &BTreeMap<String, String>) {
    let unit = c.unit_name();
    if let Ok(st) = sd.status(&unit).await
        && st.load_state == "loaded"
        && !matches!(st.active_state.as_str(), "inactive" | "failed")
    {
        let _ = sd.stop(&unit).await;
    }
    let _ = sd.disable(&unit).await;
    let _ = fs::remove_file(host.unit_file(&unit));
    let _ = fs::remove_file(host.tmpfiles_file(c.name()));
    let _ = sd.reload().await;
    let _ = sd.reset_failed(&unit).await;
    let slot = c.slot(0);
    let mut files = recorded.clone();
    if let Ok(rec) = slot.record() {
        files.extend(rec.host_files.clone());
        if let Ok(identical) = identical_host_files(host, &slot, &rec) {
            files.extend(identical);
        }
    }
    hostfs::remove(&host.root, &files);
    let _ = fs::remove_dir_all(c.staging(0));
    let _ = c.remove(|| {});
}
