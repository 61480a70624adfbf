//! `hoist list` and `hoist status`: installed containers, their deployment and unit state.

use serde::Serialize;

use super::Result;
use crate::deploy::container::{self, Container};
use crate::deploy::record::Record;
use crate::digest::Digest;
use crate::layout::Layout;
use crate::systemd::{Systemd, UnitStatus};

/// A row of `hoist list` (`--json` keys are stable).
#[derive(Debug, Clone, Serialize)]
pub struct ContainerSummary {
    pub name: String,
    pub image: String,
    /// The current deployment's manifest digest (none when its record is unreadable).
    pub digest: Option<Digest>,
    /// Current deployment slot (0 or 1).
    pub deployment: Option<u8>,
    pub state: State,
    /// With a health check, while running: `starting`, `healthy` or `unhealthy`.
    pub health: Option<String>,
    pub runtime: String,
    /// The registry reference the container follows, as it was given (`HOST/REPO:TAG`, or
    /// `HOST/REPO:TAG@sha256:…` when pinned); null for local sources.
    pub follows: Option<String>,
    /// The reference carries a digest: updates never move the container.
    pub pinned: bool,
}

#[derive(Debug, Serialize)]
pub struct ContainerStatus {
    #[serde(flatten)]
    pub summary: ContainerSummary,
    pub source: Option<String>,
    /// What the signature policy accepted for the current deployment's image (null: not verified).
    pub verified: Option<crate::trust::Verified>,
    pub unit: Option<UnitStatus>,
    /// Deployments present: slot → image.
    pub deployments: Vec<(u8, String)>,
    pub host_files: Vec<String>,
    pub values: std::collections::BTreeMap<String, String>,
    /// The current deployment's check (null: none).
    pub health_check: Option<crate::health::HealthCheck>,
    /// What the runner last found (null: no check, or not running).
    pub health_state: Option<crate::runner::HealthState>,
    /// Where the current image's bytes came from (registry images still stored under their name).
    pub fetched_from: Option<String>,
    /// A remembered `--tls-verify=false` for its reference (null: none).
    pub remembered_tls: Option<&'static str>,
}

/// The state hoist reports for a container (`--json`: `running`, `inactive`, `failed`,
/// `activating`, `no-service`, `unknown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Running,
    Inactive,
    Failed,
    /// Starting or stopping.
    Activating,
    /// An image with `noContainerService`: nothing runs.
    NoService,
    /// systemd could not be asked.
    Unknown,
}

impl State {
    /// Maps systemd's ActiveState to the states hoist reports.
    pub fn of(st: &UnitStatus) -> State {
        match st.active_state.as_str() {
            "active" | "reloading" => State::Running,
            "failed" => State::Failed,
            "activating" | "deactivating" => State::Activating,
            _ => State::Inactive,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Inactive => "inactive",
            State::Failed => "failed",
            State::Activating => "activating",
            State::NoService => "no-service",
            State::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names of installed containers.
pub fn names(layout: &Layout) -> Vec<String> {
    container::installed(layout)
}

fn summary(
    layout: &Layout,
    name: &str,
    rec: Option<&Record>,
    slot: Option<u8>,
    unit: Option<&UnitStatus>,
) -> ContainerSummary {
    let state = match (rec, unit) {
        (Some(r), _) if !r.has_service => State::NoService,
        (_, Some(u)) => State::of(u),
        (_, None) => State::Unknown,
    };
    ContainerSummary {
        name: name.to_string(),
        image: rec.map(|r| r.image.clone()).unwrap_or_else(|| "?".into()),
        digest: rec.map(|r| r.manifest.clone()),
        deployment: slot,
        health: match state {
            State::Running | State::Activating => {
                crate::runner::health_state(layout.run_root(), name).map(|h| h.status)
            }
            _ => None,
        },
        state,
        runtime: rec.and_then(|r| r.runtime.clone()).unwrap_or_else(|| "hoist".into()),
        follows: rec.and_then(|r| r.source.as_deref()).and_then(|s| s.strip_prefix("docker://")).map(str::to_string),
        pinned: crate::fetch::resolve::pinned(rec.and_then(|r| r.source.as_deref())).is_some(),
    }
}

/// The current deployment's slot and record (a broken record still lists the container, with
/// what is known).
fn load(c: &Container) -> (Option<Record>, Option<u8>) {
    let Some(slot) = c.current() else { return (None, None) };
    (slot.record().ok(), Some(slot.n))
}

pub async fn list(layout: &Layout, sd: Option<&Systemd>) -> Vec<ContainerSummary> {
    let mut out = Vec::new();
    for c in container::all(layout).iter().filter(|c| c.current().is_some()) {
        let (rec, slot) = load(c);
        let unit = match sd {
            Some(sd) => sd.status(&c.unit_name()).await.ok(),
            None => None,
        };
        out.push(summary(layout, c.name(), rec.as_ref(), slot, unit.as_ref()));
    }
    out
}

pub async fn status(layout: &Layout, sd: &Systemd, name: &str) -> Result<ContainerStatus> {
    let c = Container::open(layout, name)?;
    let (rec, slot) = load(&c);
    let unit = sd.status(&c.unit_name()).await.ok();
    let mut deployments = Vec::new();
    for s in c.slots() {
        if let Ok(r) = s.record() {
            deployments.push((s.n, r.image.clone()));
        }
    }
    // The stored name, when it still points at the deployed image, says how it was fetched.
    let stored = rec.as_ref().and_then(|r| {
        let store = crate::store::Store::open(layout).ok()?;
        store.resolve(&r.image).ok().filter(|i| i.manifest == r.manifest)
    });
    Ok(ContainerStatus {
        fetched_from: stored.as_ref().and_then(|i| i.fetched_from.clone()),
        remembered_tls: stored.as_ref().and_then(|i| i.transport.remembered()),
        summary: summary(layout, name, rec.as_ref(), slot, unit.as_ref()),
        health_check: rec.as_ref().and_then(|r| r.health.clone()),
        health_state: crate::runner::health_state(layout.run_root(), name).filter(|_| {
            unit.as_ref().is_some_and(|u| State::of(u) != State::Inactive && State::of(u) != State::Failed)
        }),
        source: rec.as_ref().and_then(|r| r.source.clone()),
        verified: rec.as_ref().and_then(|r| r.verified.clone()),
        unit,
        deployments,
        host_files: rec.as_ref().map(|r| r.host_files.keys().cloned().collect()).unwrap_or_default(),
        values: rec
            .map(|r| r.values.into_iter().filter(|(k, _)| k != "ALL_PROCESS_CAPABILITIES").collect())
            .unwrap_or_default(),
    })
}
