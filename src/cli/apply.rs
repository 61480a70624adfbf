use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::pull::RegistryArgs;
use super::{Ctx, output};
use crate::apply::plan::{Action, Step};
use crate::apply::{self, Applied, ApplyOptions, Result_, desired};
use crate::error::{Error, Result};
use crate::systemd::{self, Systemd};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Directory of NAME.toml files declaring the containers
    #[arg(long, value_name = "DIR", env = "HOIST_CONTAINERS_DIR", default_value = desired::DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Change nothing: report what would change, exit 3 when something would
    #[arg(long)]
    pub check: bool,
    /// Print each difference (key: installed -> declared)
    #[arg(long)]
    pub diff: bool,
    /// Seconds an updated service must stay up to count as healthy
    #[arg(long, default_value_t = 3, value_name = "SECONDS")]
    pub grace: u64,
    /// Update without asking the FleetLock server configured in /etc/hoist/hoist.toml
    #[arg(long)]
    pub ignore_fleet_lock: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Serialize)]
struct J<'a> {
    check: bool,
    changed: usize,
    unchanged: usize,
    failed: usize,
    skipped: usize,
    containers: &'a [Applied],
}

/// Every file error on its own line, then one line saying nothing was applied.
fn invalid(errors: Vec<desired::FileError>) -> Error {
    for e in &errors {
        eprintln!("hoist: {}", crate::error::printable(&e.to_string()));
    }
    Error::Failed(format!("{} invalid declaration(s); nothing was applied", errors.len()))
}

pub fn run(ctx: &Ctx, args: ApplyArgs) -> Result<()> {
    let declared = desired::read_dir(&args.dir).map_err(invalid)?;
    let fleet = if args.ignore_fleet_lock || args.check {
        None
    } else {
        crate::fleet::Fleet::from_config().map_err(|e| Error::Failed(e.to_string()))?
    };
    let (store, _lock) = ctx.store_locked()?;
    let layout = &ctx.layout;
    let managed = apply::managed(layout);
    let current = systemd::block_on(async {
        let sd = Systemd::connect().await?;
        apply::current(layout, &sd).await
    })?;
    let steps = apply::plan::plan(&declared, &current, &managed).map_err(invalid)?;
    if args.check {
        let results: Vec<Applied> = steps
            .iter()
            .map(|s| Applied {
                name: s.name.clone(),
                file: s.file.clone(),
                action: s.action,
                result: if s.action == Action::None { Result_::Unchanged } else { Result_::Changed },
                changes: s.changes.clone(),
                error: None,
            })
            .collect();
        report(ctx, &args, &steps, &results, true);
        return if results.iter().any(|r| r.result == Result_::Changed) { Err(Error::Pending) } else { Ok(()) };
    }
    let opts = ApplyOptions { pull: args.registry.options(), grace: Duration::from_secs(args.grace) };
    let progress = ctx.progress();
    // Images first (pulls happen outside the D-Bus runtime), then every step in order.
    let images = apply::images(&store, &steps, &current, &opts, &progress);
    // Updates and reinstalls switch running deployments: with a FleetLock server, a slot first.
    let switching: Vec<String> = steps
        .iter()
        .filter(|s| matches!(s.action, Action::Update | Action::Reinstall))
        .map(|s| s.name.clone())
        .collect();
    let held_before = crate::fleet::state(layout).is_some();
    if let Some(f) = &fleet
        && !switching.is_empty()
    {
        super::fleet::take(ctx, f, &switching.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    let prepared = apply::Prepared { steps, managed, images };
    let results = systemd::block_on(async {
        let sd = Systemd::connect().await?;
        Ok::<_, Error>(apply::apply(&store, &sd, &ctx.host, &prepared, &opts, &progress).await)
    })?;
    apply::tidy(layout, &declared, &current);
    if let Some(f) = &fleet
        && (!switching.is_empty() || held_before)
    {
        let failure = results
            .iter()
            .find(|r| r.result == Result_::Failed && matches!(r.action, Action::Update | Action::Reinstall))
            .map(|r| {
                format!("apply: the {} of {} failed: {}", r.action.as_str(), r.name, r.error.as_deref().unwrap_or(""))
            });
        super::fleet::settle(ctx, f, failure)?;
    }
    report(ctx, &args, &prepared.steps, &results, false);
    if results.iter().any(|r| matches!(r.result, Result_::Failed | Result_::Skipped)) {
        Err(Error::Reported)
    } else {
        Ok(())
    }
}

fn report(ctx: &Ctx, args: &ApplyArgs, steps: &[Step], results: &[Applied], check: bool) {
    let count = |r: Result_| results.iter().filter(|a| a.result == r).count();
    if ctx.global.json {
        output::json(&J {
            check,
            changed: count(Result_::Changed),
            unchanged: count(Result_::Unchanged),
            failed: count(Result_::Failed),
            skipped: count(Result_::Skipped),
            containers: results,
        });
        return;
    }
    for (s, r) in steps.iter().zip(results) {
        let verb = match (s.action, check) {
            (Action::Install, false) => "installed",
            (Action::Reinstall, false) => "reinstalled (new runtime)",
            (Action::Update, false) => "updated",
            (Action::Adjust, false) => "adjusted",
            (Action::Uninstall, false) => "uninstalled (its file was removed; data kept)",
            (Action::Install, true) => "would be installed",
            (Action::Reinstall, true) => "would be reinstalled (new runtime)",
            (Action::Update, true) => "would be updated",
            (Action::Adjust, true) => "would be adjusted",
            (Action::Uninstall, true) => "would be uninstalled (its file was removed)",
            (Action::None, _) => "unchanged",
        };
        match r.result {
            Result_::Failed => {
                eprintln!("hoist: {}: {}", r.name, crate::error::printable(r.error.as_deref().unwrap_or("failed")));
            }
            Result_::Skipped => ctx.say(&format!("{}: skipped: {}", r.name, r.error.as_deref().unwrap_or(""))),
            _ => ctx.say(&format!("{}: {verb}", r.name)),
        }
        if args.diff && !ctx.global.quiet {
            for c in &r.changes {
                let show = |v: &str| if v.is_empty() { "(none)".to_string() } else { v.to_string() };
                println!(
                    "  {}: {} -> {}",
                    c.key,
                    crate::error::printable(&show(&c.from)),
                    crate::error::printable(&show(&c.to))
                );
            }
        }
    }
    let (changed, unchanged, failed, skipped) =
        (count(Result_::Changed), count(Result_::Unchanged), count(Result_::Failed), count(Result_::Skipped));
    let summary = if check && changed > 0 {
        format!("{changed} container(s) would change, {unchanged} unchanged (nothing was changed)")
    } else if changed == 0 && failed == 0 && skipped == 0 {
        format!("nothing to change: {unchanged} container(s) as declared in {}", args.dir.display())
    } else {
        format!("{changed} changed, {unchanged} unchanged, {failed} failed, {skipped} skipped")
    };
    ctx.say(&summary);
}
