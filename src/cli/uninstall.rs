use clap::Args;
use serde::Serialize;

use super::{Ctx, output};
use crate::error::{Error, Result};
use crate::ops::uninstall;
use crate::systemd::{self, Systemd};

#[derive(Debug, Args)]
pub struct UninstallArgs {
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// Also remove the containers' data directories
    #[arg(long)]
    pub purge: bool,
}

#[derive(Serialize)]
struct J {
    action: &'static str,
    result: output::Outcome,
    #[serde(flatten)]
    done: uninstall::Uninstalled,
}

pub fn run(ctx: &Ctx, args: UninstallArgs) -> Result<()> {
    let (_store, _lock) = ctx.store_locked()?;
    let results = systemd::block_on(async {
        let sd = Systemd::connect().await?;
        let mut out = Vec::new();
        for name in &args.names {
            out.push(uninstall::uninstall(&ctx.layout, &sd, &ctx.host, name, args.purge).await?);
        }
        Ok::<_, Error>(out)
    })?;
    let mut json = Vec::new();
    for r in results {
        for f in &r.kept_host_files {
            ctx.say(&format!("Kept {f}: it was modified"));
        }
        for f in &r.removed_host_files {
            ctx.say(&format!("Removed file {f}"));
        }
        for d in &r.data {
            ctx.say(&if r.purged {
                format!("Removed data {d}")
            } else {
                format!("Kept data {d} (--purge removes it)")
            });
        }
        ctx.say(&format!("{}: uninstalled", r.name));
        json.push(J { action: "uninstall", result: output::Outcome::Done, done: r });
    }
    if ctx.global.json {
        output::json(&json);
    }
    Ok(())
}
