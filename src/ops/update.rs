//! `hoist update` and `hoist rollback`: switch a container between its two deployment slots.
//!
//! Update prepares the other slot from scratch (`prepare_slot`: fresh directory, renamed into
//! place only when complete; stored `--set` values plus new ones; the UUID kept; the new image's
//! defaults applied to every key the user never set), then switches in one step:
//! host files (old unchanged ones out, new ones in), unit and tmpfiles snippet (atomic writes),
//! `containers/NAME/current` (rename of a new symlink), daemon-reload; and restarts the service
//! if it was running. The result is judged by the restart job's result plus a grace period (the
//! unit still active, its main PID alive, no automatic restart) while the journal says `judge`:
//! a crash before the verdict rolls back (see [`super::txn`]). On failure hoist switches back
//! and restarts the old deployment ("rolled back", with the journal lines that explain it),
//! unless `--no-rollback`. Rollback is the same switch towards the other slot: nothing is pulled or
//! extracted, so its cost does not depend on the image's size.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::slot::{SlotSpec, install_host_files, prepare_slot, publish_unit};
use super::txn::{self, Op, Txn, fault};
use super::{Host, OpsError, Result};
use crate::deploy::container::{Container, Slot};
use crate::deploy::hostfs;
use crate::deploy::record::Record;
use crate::digest::Digest;
use crate::layers::ExtractOptions;
use crate::progress::Progress;
use crate::store::{Store, StoredImage};
use crate::systemd::Systemd;

#[derive(Debug, Clone)]
pub struct UpdateOptions {
    pub sets: BTreeMap<String, String>,
    /// Keep a failed new deployment instead of switching back.
    pub no_rollback: bool,
    /// How long the restarted service must stay up to count as healthy.
    pub grace: Duration,
    /// Limits (and device decision) for layers the checkout has to extract.
    pub extract: ExtractOptions,
    /// `--health-*` flags given now (on top of the kept ones).
    pub health: crate::health::HealthFlags,
    /// `sets` and `health` are the whole desired state (`hoist apply`), replacing the recorded
    /// ones instead of going on top of them.
    pub replace: bool,
}

/// Which verb switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Update,
    Rollback,
}

/// How a switch ended (`--json`: `done`, `unchanged`, `rolled-back`, `failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwitchResult {
    /// Now on the new deployment.
    Done,
    /// Already on that image with those values: nothing changed.
    Unchanged,
    /// The new deployment failed and the old one runs again.
    RolledBack,
    /// The new deployment failed and was kept (`--no-rollback`).
    Failed,
}

impl SwitchResult {
    /// True when the new deployment was judged failed.
    pub fn failed(self) -> bool {
        matches!(self, SwitchResult::RolledBack | SwitchResult::Failed)
    }
}

/// The outcome of an update or rollback (`--json`: stable keys).
#[derive(Debug, Serialize)]
pub struct Switched {
    pub name: String,
    pub action: Action,
    pub result: SwitchResult,
    pub from: Digest,
    pub to: Digest,
    pub deployment: u8,
    pub restarted: bool,
    /// Why the new deployment was judged failed.
    pub reason: Option<String>,
    /// The failed deployment's last journal lines.
    pub journal: Vec<String>,
    /// Host files the admin had changed, left on the host by this switch (still tracked).
    pub kept_host_files: Vec<String>,
    /// What was converted in the new deployment's config from an older runtime-spec.
    pub conversions: Vec<String>,
    /// The container follows a reference with a digest (`REPO:TAG@sha256:…`): an update never
    /// moves it (set by the caller, which knows the reference).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
}

/// What a switch did.
pub(super) struct Switch {
    /// The record of the deployment now current.
    pub to: Record,
    /// Host files of the old deployment that the admin had changed: left on the host.
    pub kept: Vec<String>,
}

/// Switches the live configuration from the deployment `from` to slot `to_slot`. Every step is
/// idempotent, so an interrupted switch is completed by running it again (repair). The caller
/// holds the transaction journal.
///
/// Host files: the old deployment's unchanged ones are removed, the new one's installed (one
/// already there with exactly its content is adopted). Changed ones stay where they are, owned
/// by neither, and move into the new record's `kept_host_files` with those kept before, so the
/// whole chain of updates and rollbacks keeps track of them.
pub(super) async fn switch(sd: &Systemd, host: &Host, c: &Container, from: &Record, to_slot: &Slot) -> Result<Switch> {
    let mut to = to_slot.record()?;
    let kept = hostfs::remove(&host.root, &from.host_files);
    fault("switch:hostfs-removed");
    let (files, _skipped) = install_host_files(host, to_slot, &to, true)?;
    // Files the old deployment left because they were modified stay; the new one does not own them.
    to.host_files = files.into_iter().filter(|(p, _)| !kept.contains(p)).collect();
    let mut tracked = from.kept_host_files.clone();
    for p in &kept {
        if let Some(sum) = from.host_files.get(p) {
            tracked.insert(p.clone(), sum.clone());
        }
    }
    // Back to what a deployment installs (and adopted again): owned, no longer merely kept.
    tracked.retain(|p, _| !to.host_files.contains_key(p));
    to.kept_host_files = tracked;
    to_slot.save_record(&to)?;
    fault("switch:hostfs-installed");
    if to.has_service {
        publish_unit(host, c, to_slot)?;
    }
    fault("switch:unit");
    c.switch_to(to_slot.n)?;
    fault("switch:link");
    sd.reload().await?;
    fault("switch:reload");
    let kept = kept.into_iter().filter(|p| from.host_files.get(p).is_some_and(|s| s != "dir")).collect();
    Ok(Switch { to, kept })
}

/// Restarts and judges: job result (with a health check, systemd's start job ends only when the
/// first check passed, or fails when it never does), then the grace period, in which a health
/// check (`health`: the runtime state root and container name) must not report `unhealthy`.
async fn restart_and_check(
    sd: &Systemd,
    unit: &str,
    grace: Duration,
    health: Option<(&std::path::Path, &str)>,
) -> std::result::Result<(), String> {
    sd.restart(unit).await.map_err(|e| e.to_string())?;
    let before = sd.status(unit).await.map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let st = sd.status(unit).await.map_err(|e| e.to_string())?;
        if st.active_state != "active" {
            return Err(format!(
                "the service is {} ({}, exit status {}) after the restart",
                st.active_state, st.result, st.exec_main_status
            ));
        }
        if let Some((root, name)) = health
            && let Some(h) = crate::runner::health_state(root, name).filter(|h| h.status == "unhealthy")
        {
            let first = h.last_output.lines().next().unwrap_or("").to_string();
            return Err(format!(
                "the health check `{}` failed {} time(s) in a row within the grace period: {first}",
                h.command, h.failing_streak
            ));
        }
        if st.n_restarts > before.n_restarts || st.main_pid != before.main_pid {
            return Err(format!(
                "the service restarted by itself {} time(s) within the grace period",
                st.n_restarts - before.n_restarts.min(st.n_restarts)
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_running(state: &str) -> bool {
    matches!(state, "active" | "activating" | "reloading")
}

/// The values and health flags a deployment made with `opts` would have.
fn desired(rec: &Record, opts: &UpdateOptions) -> (BTreeMap<String, String>, crate::health::HealthFlags) {
    if opts.replace {
        (opts.sets.clone(), opts.health.clone())
    } else {
        let mut sets = rec.sets.clone();
        sets.extend(opts.sets.clone());
        (sets, opts.health.over(&rec.health_flags))
    }
}

/// Whether updating the deployment `rec` to `img` with `opts` would switch (anything but
/// "already up to date").
pub fn differs(rec: &Record, img: &StoredImage, opts: &UpdateOptions) -> bool {
    let (sets, health) = desired(rec, opts);
    !(img.manifest == rec.manifest
        && sets == rec.sets
        && img.name.to_string() == rec.image
        && health == rec.health_flags)
}

pub async fn update(
    store: &Store,
    sd: &Systemd,
    host: &Host,
    name: &str,
    img: &StoredImage,
    opts: &UpdateOptions,
    progress: &Progress,
) -> Result<Switched> {
    let c = Container::open(store.layout(), name)?;
    let (cur_slot, rec) = c.current_record()?;
    let cur = cur_slot.n;
    let (sets, health) = desired(&rec, opts);
    let from = rec.manifest.clone();
    if !differs(&rec, img, opts) {
        return Ok(Switched {
            name: name.into(),
            action: Action::Update,
            result: SwitchResult::Unchanged,
            from: from.clone(),
            to: from,
            deployment: cur,
            restarted: false,
            reason: None,
            journal: vec![],
            kept_host_files: vec![],
            conversions: vec![],
            pinned: None,
        });
    }
    let other = 1 - cur;
    // Only what the user set, and the UUID, carry over: new image defaults apply to the rest.
    let mut stored = rec.clone();
    stored.values = sets.clone();
    if let Some(uuid) = rec.values.get("UUID") {
        stored.values.insert("UUID".into(), uuid.clone());
    }
    // The recorded --security-opt choice stays.
    let spec = SlotSpec {
        container: &c,
        slot: other,
        sets: &sets,
        stored: Some(&stored),
        runtime: rec.runtime.as_deref(),
        seccomp: &rec.seccomp,
        extract: opts.extract,
        health: &health,
    };
    prepare_slot(store, img, &spec, progress)?;
    fault("update:prepared");
    let unit = c.unit_name();
    let was_running = rec.has_service && is_running(&sd.status(&unit).await?.active_state);
    let new_slot = c.slot(other);
    txn::begin(&c, &Txn { op: Op::Switch, from: Some(cur), to: Some(other), was_running })?;
    let Switch { to: new, kept } = switch(sd, host, &c, &rec, &new_slot).await?;
    let mut out = Switched {
        name: name.into(),
        action: Action::Update,
        result: SwitchResult::Done,
        from,
        to: new.manifest.clone(),
        deployment: other,
        restarted: was_running,
        reason: None,
        journal: vec![],
        kept_host_files: kept,
        conversions: new.conversions.clone(),
        pinned: None,
    };
    if !was_running || !new.has_service {
        txn::end(&c)?;
        return Ok(out);
    }
    // Switched; not committed until judged healthy.
    txn::begin(&c, &Txn { op: Op::Judge, from: Some(cur), to: Some(other), was_running })?;
    fault("update:switched");
    let health = new.health.as_ref().map(|_| (store.layout().run_root(), name));
    if let Err(reason) = restart_and_check(sd, &unit, opts.grace, health).await {
        fault("update:judged");
        out.journal = host.journal_tail(&unit, 10);
        out.reason = Some(reason);
        if opts.no_rollback {
            out.result = SwitchResult::Failed;
            txn::end(&c)?;
            return Ok(out);
        }
        txn::begin(&c, &Txn { op: Op::Switch, from: Some(other), to: Some(cur), was_running })?;
        let back = switch(sd, host, &c, &new, &cur_slot).await?;
        out.kept_host_files.extend(back.kept);
        let _ = sd.reset_failed(&unit).await;
        sd.restart(&unit).await?;
        out.result = SwitchResult::RolledBack;
        out.deployment = cur;
    }
    fault("update:restarted");
    txn::end(&c)?;
    Ok(out)
}

pub async fn rollback(store: &Store, sd: &Systemd, host: &Host, name: &str) -> Result<Switched> {
    let c = Container::open(store.layout(), name)?;
    let (cur_slot, rec) = c.current_record()?;
    let other_slot = cur_slot.other();
    let target = other_slot.record().map_err(|_| OpsError::Failed {
        name: name.to_string(),
        reason: "no previous deployment to roll back to (update first)".into(),
    })?;
    let unit = c.unit_name();
    let was_running = rec.has_service && is_running(&sd.status(&unit).await?.active_state);
    txn::begin(&c, &Txn { op: Op::Switch, from: Some(cur_slot.n), to: Some(other_slot.n), was_running })?;
    let Switch { to, kept } = switch(sd, host, &c, &rec, &other_slot).await?;
    if was_running && to.has_service {
        let _ = sd.reset_failed(&unit).await;
        sd.restart(&unit).await?;
    }
    fault("rollback:restarted");
    txn::end(&c)?;
    Ok(Switched {
        name: name.into(),
        action: Action::Rollback,
        result: SwitchResult::Done,
        from: rec.manifest.clone(),
        to: target.manifest.clone(),
        deployment: other_slot.n,
        restarted: was_running,
        reason: None,
        journal: vec![],
        kept_host_files: kept,
        conversions: vec![],
        pinned: None,
    })
}
