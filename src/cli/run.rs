use clap::Args;

use super::Ctx;
use crate::error::Result;
use crate::ops;
use crate::runner;

#[derive(Debug, Args)]
pub struct RunArgs {
    pub name: String,
    /// Command to run (default: /bin/sh in a running container, the container's own process
    /// in a stopped one)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// Runs in the foreground and exits the way the command did.
pub fn run(ctx: &Ctx, args: RunArgs) -> Result<()> {
    let outcome = ops::run::run(&ctx.layout, &args.name, &args.cmd)?;
    runner::exit_like(outcome)
}
