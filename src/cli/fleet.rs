use clap::{Args, Subcommand};
use serde::Serialize;

use super::{Ctx, output};
use crate::error::{Error, Result};
use crate::fleet::{self, Fleet, Phase, State};

#[derive(Debug, Args)]
pub struct FleetArgs {
    #[command(subcommand)]
    pub command: FleetCommand,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// The FleetLock configuration and whether this host holds a slot, and why
    Status,
    /// Give this host's slot back (after a failed update was dealt with)
    Release,
}

#[derive(Serialize)]
struct J<'a> {
    configured: bool,
    url: Option<&'a str>,
    group: Option<&'a str>,
    id: Option<&'a str>,
    state: Option<&'a State>,
}

/// One line on why the slot is held (also used by `hoist status`).
pub fn describe(s: &State) -> String {
    match s.phase {
        Phase::Held => format!(
            "held for group {} at {} because {}; `hoist fleet release` lets other hosts go",
            s.group,
            s.url,
            s.reason.as_deref().unwrap_or("an update failed")
        ),
        Phase::Updating => format!("taken for group {} at {} by an update that has not finished", s.group, s.url),
    }
}

pub fn run(ctx: &Ctx, args: FleetArgs) -> Result<()> {
    let fleet = Fleet::from_config().map_err(|e| Error::Failed(e.to_string()))?;
    match args.command {
        FleetCommand::Status => {
            let state = fleet::state(&ctx.layout);
            if ctx.global.json {
                output::json(&J {
                    configured: fleet.is_some(),
                    url: fleet.as_ref().map(|f| f.url.as_str()),
                    group: fleet.as_ref().map(|f| f.group.as_str()),
                    id: fleet.as_ref().map(|f| f.id.as_str()),
                    state: state.as_ref(),
                });
                return Ok(());
            }
            match &fleet {
                Some(f) => println!("fleet lock: {} group {} as {}", f.url, f.group, f.id),
                None => println!("fleet lock: not configured ({} has no [fleetlock])", fleet::config_file().display()),
            }
            match &state {
                Some(s) => println!("slot: {}", describe(s)),
                None => println!("slot: not held"),
            }
            Ok(())
        }
        FleetCommand::Release => {
            let (_store, _lock) = ctx.store_locked()?;
            let f = match (fleet, fleet::state(&ctx.layout)) {
                (Some(f), _) => f,
                (None, Some(s)) => Fleet { url: s.url, group: s.group, id: s.id },
                (None, None) => {
                    return Err(Error::Failed(format!(
                        "no fleet lock configured ({} has no [fleetlock]) and none held",
                        fleet::config_file().display()
                    )));
                }
            };
            f.unlock().map_err(|e| Error::Failed(e.to_string()))?;
            fleet::clear(&ctx.layout).map_err(|e| Error::Failed(e.to_string()))?;
            ctx.say(&format!("released the fleet lock of group {} at {}", f.group, f.url));
            if ctx.global.json {
                output::json(
                    &serde_json::json!({"action": "release", "result": "done", "group": f.group, "url": f.url}),
                );
            }
            Ok(())
        }
    }
}

/// Takes this host's slot before `switching` containers switch (`hoist update`, `hoist apply`):
/// the state is recorded first (a crash after the lock is finished by the next update); a
/// refusal or an unreachable server switches nothing (fail closed) and says so.
pub fn take(ctx: &Ctx, f: &Fleet, switching: &[&str]) -> Result<()> {
    let failed = |e: fleet::FleetError| Error::Failed(e.to_string());
    let held_before = fleet::state(&ctx.layout).is_some();
    if !held_before {
        fleet::record(&ctx.layout, f, Phase::Updating, None).map_err(failed)?;
    }
    if let Err(e) = f.lock() {
        if !held_before {
            fleet::clear(&ctx.layout).map_err(failed)?;
        }
        eprintln!("hoist: {}", crate::error::printable(&e.to_string()));
        eprintln!(
            "hoist: not switching {}: the new image(s) are pulled and ready; `hoist update` switches once the fleet lock allows (--ignore-fleet-lock: now)",
            switching.join(", ")
        );
        return Err(Error::Reported);
    }
    crate::fault::point("update:fleet-locked");
    Ok(())
}

/// After the switches: keep the slot when one failed (`failure` says which and why), give it
/// back when every container is well.
pub fn settle(ctx: &Ctx, f: &Fleet, failure: Option<String>) -> Result<()> {
    let failed = |e: fleet::FleetError| Error::Failed(e.to_string());
    if let Some(reason) = failure {
        fleet::record(&ctx.layout, f, Phase::Held, Some(reason.clone())).map_err(failed)?;
        ctx.notice(&format!(
            "holding the fleet lock of group {} at {}: {reason}; other hosts wait (a later successful update, or `hoist fleet release`, lets them go)",
            f.group, f.url
        ));
        return Ok(());
    }
    match f.unlock() {
        Ok(()) => {
            fleet::clear(&ctx.layout).map_err(failed)?;
            ctx.notice(&format!("released the fleet lock of group {} at {}", f.group, f.url));
        }
        Err(e) => ctx.warn(&format!(
            "{e}; still holding the fleet lock (the next `hoist update` or `hoist fleet release` retries)"
        )),
    }
    Ok(())
}
