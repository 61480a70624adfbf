//! `hoist apply`: desired state in files ([`desired`]), compared with what is installed
//! ([`plan`], pure), then carried out with the same verbs as `install`, `update` and
//! `uninstall`, under the one state lock the caller holds.
//!
//! What `apply` remembers, per container it manages:
//!
//! ```text
//! <root>/apply/NAME.json   {"file": "/etc/hoist/containers/NAME.toml", "created": true, "policy": "tag"}
//! ```
//! `created` is true when `apply` installed the container (then removing its file uninstalls
//! it); a container installed by hand and then declared is adopted with `created: false` and
//! is never uninstalled by `apply`. `policy` is the file's `update` (read by `hoist update
//! --all`). The file is written after the container's step succeeded, removed after `apply`
//! uninstalled it, and dropped when neither the container nor its file exists any more.
//!
//! One container's failure does not stop the others; containers that come `after` a failed
//! one are skipped.

pub mod desired;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::Duration;

use serde::Serialize;

use crate::deploy::container::Container;
use crate::deploy::seccomp::Seccomp;
use crate::fetch::PullOptions;
use crate::fetch::resolve;
use crate::fsutil::{self, PathError};
use crate::layout::Layout;
use crate::ops::Host;
use crate::ops::install::{self, InstallOptions};
use crate::ops::update::{self, SwitchResult, UpdateOptions};
use crate::ops::{query, uninstall};
use crate::progress::Progress;
use crate::store::{Store, StoredImage};
use crate::systemd::Systemd;

use desired::Policy;
use plan::{Action, Change, Current, Managed, Step};

/// The containers `apply` manages, by name (unreadable entries are skipped).
pub fn managed(layout: &Layout) -> BTreeMap<String, Managed> {
    let dir = layout.root().join("apply");
    let mut out = BTreeMap::new();
    let Ok(entries) = fs::read_dir(&dir) else { return out };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".json") else { continue };
        if crate::deploy::name::validate(name).is_err() {
            continue;
        }
        if let Some(m) = fs::read(e.path()).ok().and_then(|d| serde_json::from_slice::<Managed>(&d).ok()) {
            out.insert(name.to_string(), m);
        }
    }
    out
}

/// The update policy a file gave the container, if `apply` manages it.
pub fn policy_of(layout: &Layout, name: &str) -> Option<(Policy, std::path::PathBuf)> {
    managed(layout).remove(name).map(|m| (m.policy, m.file))
}

fn remember(layout: &Layout, name: &str, m: &Managed) -> Result<(), PathError> {
    let dir = layout.root().join("apply");
    fsutil::ensure_dir(&dir, 0o700)?;
    fsutil::write_atomic(&dir.join(format!("{name}.json")), &serde_json::to_vec_pretty(m).expect("serializes"), 0o600)
}

fn forget(layout: &Layout, name: &str) {
    let _ = fs::remove_file(layout.root().join("apply").join(format!("{name}.json")));
}

/// Installed containers with their current record and unit state.
pub async fn current(layout: &Layout, sd: &Systemd) -> crate::error::Result<BTreeMap<String, Current>> {
    let mut out = BTreeMap::new();
    for name in query::names(layout) {
        let Ok(c) = Container::open(layout, &name) else { continue };
        let Ok((_, record)) = c.current_record() else { continue };
        let st = sd.status(&c.unit_name()).await?;
        let enabled = matches!(st.unit_file_state.as_str(), "enabled" | "enabled-runtime" | "linked");
        let active = matches!(st.active_state.as_str(), "active" | "activating" | "reloading");
        out.insert(name, Current { record, enabled, active });
    }
    Ok(out)
}

/// Drops what `apply` remembers of containers that are neither installed nor declared.
pub fn tidy(layout: &Layout, declared: &[desired::Declared], current: &BTreeMap<String, Current>) {
    let names: BTreeSet<&str> = declared.iter().map(|d| d.name.as_str()).collect();
    for name in managed(layout).keys() {
        if !names.contains(name.as_str()) && !current.contains_key(name) {
            forget(layout, name);
        }
    }
}

/// How one container's step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Result_ {
    Changed,
    Unchanged,
    Failed,
    Skipped,
}

/// One container's line of the report (`--json`: one object each).
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub name: String,
    pub file: std::path::PathBuf,
    pub action: Action,
    pub result: Result_,
    pub changes: Vec<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Applied {
    fn of(step: &Step, result: Result_, error: Option<String>) -> Applied {
        Applied {
            name: step.name.clone(),
            file: step.file.clone(),
            action: step.action,
            result,
            changes: step.changes.clone(),
            error,
        }
    }
}

/// What carrying out a plan needs besides the plan.
pub struct ApplyOptions {
    pub pull: PullOptions,
    /// How long an updated service must stay up to count as healthy.
    pub grace: Duration,
}

/// The stored image each install, reinstall or update step needs, pulled when missing (before
/// anything is changed: a pull failure fails that container's step only).
pub fn images(
    store: &Store,
    steps: &[Step],
    current: &BTreeMap<String, Current>,
    opts: &ApplyOptions,
    progress: &Progress,
) -> BTreeMap<String, Result<StoredImage, String>> {
    let mut out = BTreeMap::new();
    for s in steps {
        let Some(d) = &s.declared else { continue };
        let got = match s.action {
            Action::Install | Action::Reinstall => resolve::stored(store, &d.image, &opts.pull, progress),
            Action::Update if s.changes.iter().any(|c| c.key == "image") => {
                resolve::stored(store, &d.image, &opts.pull, progress)
            }
            Action::Update => {
                // Only values or health flags changed: the deployed image as it is (not whatever
                // its name points at in the store now).
                let rec = &current[&s.name].record;
                let deployed = match crate::imgref::ImageName::parse(&rec.image) {
                    Some(name) => Ok(StoredImage {
                        name,
                        manifest: rec.manifest.clone(),
                        source: rec.source.clone(),
                        pulled: None,
                        transport: Default::default(),
                        verified: rec.verified.clone(),
                        fetched_from: None,
                    }),
                    None => Err(format!("{}: recorded image name {:?} does not parse", s.name, rec.image)),
                };
                out.insert(s.name.clone(), deployed);
                continue;
            }
            _ => continue,
        };
        out.insert(s.name.clone(), got.map_err(|e| e.to_string()));
    }
    out
}

/// A plan ready to be carried out: its steps, what `apply` remembered before, and the images
/// the steps need ([`images`]).
pub struct Prepared {
    pub steps: Vec<Step>,
    pub managed: BTreeMap<String, Managed>,
    pub images: BTreeMap<String, Result<StoredImage, String>>,
}

/// Carries out the steps in order.
pub async fn apply(
    store: &Store,
    sd: &Systemd,
    host: &Host,
    prepared: &Prepared,
    opts: &ApplyOptions,
    progress: &Progress,
) -> Vec<Applied> {
    let Prepared { steps, managed, images } = prepared;
    let layout = store.layout();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for s in steps {
        if let Some(d) = &s.declared
            && let Some(f) = d.after.iter().find(|a| failed.contains(*a))
        {
            failed.insert(s.name.clone());
            out.push(Applied::of(s, Result_::Skipped, Some(format!("comes after {f}, which failed"))));
            continue;
        }
        let done = step(store, sd, host, s, images, opts, progress).await;
        let applied = match done {
            Ok(result) => {
                if let Some(d) = &s.declared
                    && (s.remember || result == Result_::Changed)
                {
                    let created = s.action == Action::Install || managed.get(&s.name).is_some_and(|m| m.created);
                    let m = Managed { file: d.file.clone(), created, policy: d.policy };
                    if let Err(e) = remember(layout, &s.name, &m) {
                        failed.insert(s.name.clone());
                        out.push(Applied::of(s, Result_::Failed, Some(e.to_string())));
                        continue;
                    }
                }
                Applied::of(s, result, None)
            }
            Err(e) => {
                failed.insert(s.name.clone());
                Applied::of(s, Result_::Failed, Some(e))
            }
        };
        out.push(applied);
    }
    out
}

async fn step(
    store: &Store,
    sd: &Systemd,
    host: &Host,
    s: &Step,
    images: &BTreeMap<String, Result<StoredImage, String>>,
    opts: &ApplyOptions,
    progress: &Progress,
) -> Result<Result_, String> {
    let layout = store.layout();
    let name = s.name.as_str();
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let image = || -> Result<&StoredImage, String> {
        images.get(name).ok_or_else(|| format!("{name}: no image resolved"))?.as_ref().map_err(Clone::clone)
    };
    let Some(d) = &s.declared else {
        // Uninstall: the container apply created, whose file is gone.
        uninstall::uninstall(layout, sd, host, name, false).await.map_err(|e| text(&e))?;
        forget(layout, name);
        return Ok(Result_::Changed);
    };
    let install_opts = || InstallOptions {
        name: Some(name.to_string()),
        sets: d.sets.clone(),
        runtime: d.runtime.clone(),
        seccomp: Seccomp::default(),
        now: d.started,
        extract: opts.pull.extract,
        health: d.health.clone(),
    };
    match s.action {
        Action::None => return Ok(Result_::Unchanged),
        Action::Install | Action::Reinstall => {
            let img = image()?;
            if s.action == Action::Reinstall {
                uninstall::uninstall(layout, sd, host, name, false).await.map_err(|e| text(&e))?;
            }
            install::install(store, sd, host, img, &install_opts(), progress).await.map_err(|e| text(&e))?;
            if !d.enabled {
                let unit = crate::deploy::container::unit_name(name);
                sd.disable(&unit).await.map_err(|e| text(&e))?;
                sd.reload().await.map_err(|e| text(&e))?;
            }
            return Ok(Result_::Changed);
        }
        Action::Update => {
            let img = image()?;
            let u = UpdateOptions {
                sets: d.sets.clone(),
                no_rollback: false,
                grace: opts.grace,
                extract: opts.pull.extract,
                health: d.health.clone(),
                replace: true,
            };
            let r = update::update(store, sd, host, name, img, &u, progress).await.map_err(|e| text(&e))?;
            if r.result.failed() {
                let what = if r.result == SwitchResult::RolledBack { "rolled back" } else { "failed" };
                return Err(format!("{name}: update {what}: {}", r.reason.as_deref().unwrap_or("unhealthy")));
            }
        }
        Action::Adjust | Action::Uninstall => {}
    }
    adjust(sd, name, d).await.map_err(|e| text(&e))?;
    Ok(Result_::Changed)
}

/// Brings the unit to the declared `enabled` and `started`.
async fn adjust(sd: &Systemd, name: &str, d: &desired::Declared) -> crate::error::Result<()> {
    let unit = crate::deploy::container::unit_name(name);
    let st = sd.status(&unit).await?;
    let enabled = matches!(st.unit_file_state.as_str(), "enabled" | "enabled-runtime" | "linked");
    if enabled != d.enabled {
        if d.enabled {
            sd.enable(&unit).await?;
        } else {
            sd.disable(&unit).await?;
        }
        sd.reload().await?;
    }
    let active = matches!(st.active_state.as_str(), "active" | "activating" | "reloading");
    if active != d.started {
        if d.started {
            sd.start(&unit).await?;
        } else {
            sd.stop(&unit).await?;
        }
    }
    Ok(())
}
