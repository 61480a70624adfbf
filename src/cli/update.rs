use std::time::Duration;

use clap::Args;

use super::pull::RegistryArgs;
use super::{Ctx, output};
use crate::deploy::container::Container;
use crate::deploy::values::parse_sets;
use crate::error::{Error, Result};
use crate::fetch::resolve::{self, Deployed};
use crate::ops::update::{self, Action, SwitchResult, Switched, UpdateOptions};
use crate::ops::{OpsError, query};
use crate::systemd::{self, Systemd};

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Containers to update
    #[arg(required_unless_present = "all", conflicts_with = "all", value_name = "NAME")]
    pub names: Vec<String>,
    /// Update every installed container
    #[arg(long)]
    pub all: bool,
    /// Change a template value NAME=VALUE (kept for later updates)
    #[arg(long = "set", value_name = "NAME=VALUE", conflicts_with = "all")]
    pub sets: Vec<String>,
    /// Switch to another image
    #[arg(long, value_name = "IMAGE", conflicts_with = "all")]
    pub rebase: Option<String>,
    /// Use the stored image as it is; do not re-read its source
    #[arg(long)]
    pub no_pull: bool,
    /// Keep a new deployment that fails its health check instead of switching back
    #[arg(long)]
    pub no_rollback: bool,
    /// Seconds the restarted service must stay up to count as healthy
    #[arg(long, default_value_t = 3, value_name = "SECONDS")]
    pub grace: u64,
    /// Switch without asking the FleetLock server configured in /etc/hoist/hoist.toml
    #[arg(long)]
    pub ignore_fleet_lock: bool,
    /// Report what would change (the digest each reference names now) without pulling or
    /// switching anything; exit 3 when an update is available
    #[arg(long, conflicts_with_all = ["sets", "no_pull", "download_only"])]
    pub check: bool,
    /// Pull what the update needs and stop before switching (a later `hoist update` switches
    /// without downloading)
    #[arg(long, conflicts_with = "no_pull")]
    pub download_only: bool,
    #[command(flatten)]
    pub health: crate::health::HealthFlags,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    pub name: String,
}

fn report(ctx: &Ctx, results: &[Switched]) -> Result<()> {
    if ctx.global.json {
        output::json(&results);
    } else {
        for r in results {
            for c in &r.conversions {
                ctx.warn(&format!("{}: config.json.template: {c}", r.name));
            }
            for f in &r.kept_host_files {
                ctx.say(&format!("{}: kept {f}: it was modified (still tracked; `hoist uninstall` names it)", r.name));
            }
            match r.result {
                SwitchResult::Unchanged if let Some(reference) = &r.pinned => ctx.say(&format!(
                    "{}: pinned to {} by its reference {reference}; not moved (--rebase IMAGE:TAG follows a tag)",
                    r.name,
                    r.from.short()
                )),
                SwitchResult::Unchanged => ctx.say(&format!("{}: already up to date ({})", r.name, r.from.short())),
                SwitchResult::Done => {
                    let verb = if r.action == Action::Rollback { "rolled back" } else { "updated" };
                    let what = if r.from == r.to {
                        format!("{} (same image, other values)", r.to.short())
                    } else {
                        format!("{} -> {}", r.from.short(), r.to.short())
                    };
                    let run = if r.restarted { "restarted" } else { "not running: not started" };
                    ctx.say(&format!("{}: {verb} {what}, now deployment {}, {run}", r.name, r.deployment))
                }
                SwitchResult::RolledBack | SwitchResult::Failed => {
                    let what = if r.result == SwitchResult::Failed {
                        format!("update to {} failed and was kept (--no-rollback)", r.to.short())
                    } else {
                        format!("update to {} failed; rolled back to {}", r.to.short(), r.from.short())
                    };
                    eprintln!("hoist: {}: {what}: {}", r.name, r.reason.as_deref().unwrap_or("unhealthy"));
                    for l in &r.journal {
                        eprintln!("  | {l}");
                    }
                }
            }
        }
    }
    // A failed update exits 1; what went wrong was printed above (or is in the JSON).
    if results.iter().any(|r| r.result.failed()) { Err(Error::Reported) } else { Ok(()) }
}

pub fn update(ctx: &Ctx, args: UpdateArgs) -> Result<()> {
    let sets = parse_sets(&args.sets).map_err(|e| Error::Usage(e.to_string()))?;
    let (store, _lock) = ctx.store_locked()?;
    let names = if args.all {
        // A container declared with `update = "manual"` or `"digest"` (see `hoist apply`) only
        // moves when named (or when its file changes).
        let mut names = query::names(&ctx.layout);
        names.retain(|n| match crate::apply::policy_of(&ctx.layout, n) {
            Some((p, file)) if p != crate::apply::desired::Policy::Tag => {
                ctx.say(&format!("{n}: not updated by --all: update = \"{}\" in {}", p.as_str(), file.display()));
                false
            }
            _ => true,
        });
        names
    } else {
        args.names.clone()
    };
    if args.check {
        return super::update_check::run(ctx, &store, &names, &args);
    }
    let opts = UpdateOptions {
        sets,
        no_rollback: args.no_rollback,
        grace: Duration::from_secs(args.grace),
        extract: args.registry.options().extract,
        health: super::install::health_flags(&args.health)?,
        replace: false,
    };
    let fleet = if args.ignore_fleet_lock { None } else { crate::fleet::Fleet::from_config().map_err(fleet_error)? };
    let progress = ctx.progress();
    let pull = args.registry.options();
    // Every target is pulled before anything is switched (and before the async part).
    let mut targets = Vec::new();
    let mut switching = Vec::new();
    for name in &names {
        let (_, rec) = Container::open(&ctx.layout, name).and_then(|c| c.current_record()).map_err(OpsError::from)?;
        let deployed = Deployed { image: &rec.image, source: rec.source.as_deref() };
        let img = resolve::update_target(&store, deployed, args.rebase.as_deref(), args.no_pull, &pull, &progress)?;
        let pinned = if args.rebase.is_none() { resolve::pinned(deployed.source) } else { None };
        if update::differs(&rec, &img, &opts) {
            switching.push(name.as_str());
        }
        targets.push((name, img, pinned));
    }
    if args.download_only {
        return super::update_check::ready(ctx, &targets, &switching);
    }
    // With a FleetLock server: a slot before the first switch (see `fleet`).
    let held_before = crate::fleet::state(&ctx.layout).is_some();
    if let Some(f) = &fleet
        && !switching.is_empty()
    {
        super::fleet::take(ctx, f, &switching)?;
    }
    let results = systemd::block_on(async {
        let sd = Systemd::connect().await?;
        let mut out = Vec::new();
        for (name, img, pinned) in &targets {
            let mut r = update::update(&store, &sd, &ctx.host, name, img, &opts, &progress).await?;
            r.pinned = pinned.clone();
            out.push(r);
        }
        Ok::<_, Error>(out)
    })?;
    if let Some(f) = &fleet
        && (!switching.is_empty() || held_before)
    {
        let failed = results.iter().find(|r| r.result.failed()).map(|bad| {
            format!(
                "the update of {} to {} failed: {}",
                bad.name,
                bad.to.short(),
                bad.reason.as_deref().unwrap_or("unhealthy")
            )
        });
        super::fleet::settle(ctx, f, failed)?;
    }
    report(ctx, &results)
}

fn fleet_error(e: crate::fleet::FleetError) -> Error {
    Error::Failed(e.to_string())
}

pub fn rollback(ctx: &Ctx, args: RollbackArgs) -> Result<()> {
    let (store, _lock) = ctx.store_locked()?;
    let r = systemd::block_on(async {
        let sd = Systemd::connect().await?;
        Ok::<_, Error>(update::rollback(&store, &sd, &ctx.host, &args.name).await?)
    })?;
    report(ctx, &[r])
}
