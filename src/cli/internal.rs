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
    /// Write a man page per command (hoist.1, hoist-install.1, …) into DIR (`make install`)
    ManPages {
        /// Directory to write into (created)
        dir: PathBuf,
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
        InternalCmd::ManPages { dir } => match man_pages(&dir) {
            Ok(n) => {
                println!("{n} man pages in {}", dir.display());
                std::process::exit(0)
            }
            Err(e) => {
                eprintln!("hoist: {}: {e}", dir.display());
                std::process::exit(1)
            }
        },
    }
}

/// `hoist.1` and one `hoist-VERB.1` (also `hoist-images-prune.1`, …) per visible command.
fn man_pages(dir: &std::path::Path) -> std::io::Result<usize> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    let mut n = 0;
    let mut todo = vec![(String::from("hoist"), super::Cli::command())];
    while let Some((name, cmd)) = todo.pop() {
        // clap names are 'static; this process ends right after.
        let title: &'static str = Box::leak(name.clone().into_boxed_str());
        let cmd = cmd.name(title).bin_name(name.replace('-', " "));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            todo.push((format!("{name}-{}", sub.get_name()), sub.clone()));
        }
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.1")), out)?;
        n += 1;
    }
    Ok(n)
}
