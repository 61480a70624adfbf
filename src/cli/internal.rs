//! `hoist internal …`: hidden plumbing that generated units call, not a user interface.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::layout::DEFAULT_RUN_ROOT;
use crate::runner::{self, RunOptions};

#[derive(Debug, Args)]
pub struct InternalArgs {
    #[command(subcommand)]
    pub cmd: InternalCmd,
}

#[derive(Debug, Subcommand)]
pub enum InternalCmd {
    /// Run one OCI bundle in the foreground (the ExecStart of every generated unit)
    RunBundle {
        /// Container name (the unit name without .service)
        #[arg(long)]
        name: String,
        /// Bundle directory (config.json + rootfs)
        #[arg(long)]
        bundle: PathBuf,
        /// Runtime state directory
        #[arg(long, default_value = DEFAULT_RUN_ROOT)]
        state_root: PathBuf,
    },
}

/// Runs the plumbing command; never returns (the process ends the way the container did).
pub fn run(args: InternalArgs) -> ! {
    match args.cmd {
        InternalCmd::RunBundle { name, bundle, state_root } => {
            match runner::run(&RunOptions { name, bundle, state_root, unit_main: true }) {
                Ok(outcome) => runner::exit_like(outcome),
                Err(e) => {
                    eprintln!("hoist: {e}");
                    std::process::exit(1)
                }
            }
        }
    }
}
