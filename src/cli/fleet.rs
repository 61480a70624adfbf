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
