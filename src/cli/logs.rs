use std::os::unix::process::CommandExt;

use clap::Args;

use super::Ctx;
use crate::deploy::container::Container;
use crate::error::{Error, Result};
use crate::ops::OpsError;

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub name: String,
    /// Keep printing new lines
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show
    #[arg(short = 'n', long, value_name = "N")]
    pub lines: Option<u64>,
}

/// The unit's journal, through journalctl (handles rotation, namespaces and permissions).
pub fn run(ctx: &Ctx, args: LogsArgs) -> Result<()> {
    let container = Container::open(&ctx.layout, &args.name).map_err(OpsError::from)?;
    let mut c = ctx.host.journalctl(&container.unit_name());
    if args.follow {
        c.arg("-f");
    }
    if let Some(n) = args.lines {
        c.arg("-n").arg(n.to_string());
    }
    if ctx.global.json {
        c.args(["-o", "json"]);
    }
    let e = c.exec();
    Err(Error::Failed(format!("cannot run journalctl: {e}")))
}
