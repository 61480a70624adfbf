//! The command line: clap argument structs and one small handler per verb (`cli/<verb>.rs`),
//! each mapping arguments to a library call and printing its result (a table or `--json`).

mod apply;
mod fleet;
mod images;
mod install;
mod internal;
mod list;
mod logs;
mod mount;
mod output;
mod pull;
mod push;
mod run;
mod trust;
mod uninstall;
mod update;
mod update_check;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::{Error, Result};
use crate::layout::{DEFAULT_ROOT, Layout};
use crate::lock::StateLock;
use crate::progress::Progress;
use crate::store::Store;

/// Install OCI container images as systemd system containers.
#[derive(Debug, Parser)]
#[command(name = "hoist", version, about, propagate_version = true, disable_help_subcommand = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before or after the subcommand.
#[derive(Debug, Args, Clone)]
pub struct GlobalOpts {
    /// State root (images, layers, deployments)
    #[arg(long, global = true, env = "HOIST_ROOT", default_value = DEFAULT_ROOT, value_name = "DIR")]
    pub root: PathBuf,
    /// Machine-readable output on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More detail
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install an image as a systemd service (pulls it first if needed)
    #[command(
        after_help = "Examples:\n  hoist install --now docker://registry.example.com/etcd:3.4\n  hoist install --name etcd2 --set ETCD_PORT=2479 --health-cmd true etcd:3.4"
    )]
    Install(install::InstallArgs),
    /// Stop, disable and remove system containers (data stays unless --purge)
    #[command(
        after_help = "Examples:\n  hoist uninstall etcd\n  hoist uninstall --purge etcd      (also its data directories)"
    )]
    Uninstall(uninstall::UninstallArgs),
    /// Move containers to a new image or new values, with automatic rollback on failure
    #[command(
        after_help = "Examples:\n  hoist update etcd\n  hoist update --all                (what the update timer runs; honours FleetLock)"
    )]
    Update(update::UpdateArgs),
    /// Switch a container back to its previous deployment (again: forward)
    #[command(after_help = "Examples:\n  hoist rollback etcd")]
    Rollback(update::RollbackArgs),
    /// List system containers (running ones; -a for all)
    #[command(after_help = "Examples:\n  hoist list -a\n  hoist --json list")]
    List(list::ListArgs),
    /// A container's unit state and deployment
    #[command(after_help = "Examples:\n  hoist status etcd")]
    Status(list::StatusArgs),
    /// A container's journal
    #[command(after_help = "Examples:\n  hoist logs -f etcd")]
    Logs(logs::LogsArgs),
    /// Run a command in a container (exec when running, one-shot when stopped)
    #[command(after_help = "Examples:\n  hoist run etcd etcdctl endpoint health")]
    Run(run::RunArgs),
    /// Fetch an image into the local store (idempotent)
    #[command(
        after_help = "Examples:\n  hoist pull docker://registry.example.com/etcd:3.4\n  hoist pull oci-archive:/tmp/etcd.tar"
    )]
    Pull(pull::PullArgs),
    /// Upload a stored image to a registry (only the blobs it lacks; --stream publishes a tag stream)
    #[command(
        after_help = "Examples:\n  hoist push etcd:3.4 docker://registry.example.com/etcd:3.4-2 --stream\n  hoist push --sign-by-sigstore-key cosign.key --sign-passphrase-file pass etcd:3.4 docker://registry.example.com/etcd:3.4-2"
    )]
    Push(push::PushArgs),
    /// List, remove, inspect and prune stored images
    #[command(after_help = "Examples:\n  hoist images\n  hoist images info etcd:3.4")]
    Images(images::ImagesArgs),
    /// Mount a read-only view of an image's root filesystem on an empty directory
    #[command(after_help = "Examples:\n  hoist mount etcd:3.4 /mnt/etcd")]
    Mount(mount::MountArgs),
    /// Remove a view made by `hoist mount`
    #[command(after_help = "Examples:\n  hoist umount /mnt/etcd")]
    Umount(mount::UmountArgs),
    /// Make the installed containers match the files in /etc/hoist/containers (desired state)
    #[command(after_help = "Examples:\n  hoist apply --check --diff\n  hoist --json apply")]
    Apply(apply::ApplyArgs),
    /// Coordinated updates (FleetLock): `fleet status`, `fleet release`
    #[command(after_help = "Examples:\n  hoist fleet status\n  hoist fleet release")]
    Fleet(fleet::FleetArgs),
    /// Signature policy diagnostics: `trust show IMAGE`
    #[command(after_help = "Examples:\n  hoist trust show docker://registry.example.com/etcd:3.4")]
    Trust(trust::TrustArgs),
    /// Print a shell completion script: bash, zsh or fish (`make install` puts them in place)
    #[command(after_help = "Examples:\n  hoist completions bash > /etc/bash_completion.d/hoist")]
    Completions { shell: clap_complete::Shell },
    /// Plumbing used by generated units
    #[command(hide = true)]
    Internal(internal::InternalArgs),
}

/// What every handler gets.
pub struct Ctx {
    pub global: GlobalOpts,
    pub layout: Layout,
    pub host: crate::ops::Host,
}

impl Ctx {
    pub fn progress(&self) -> Progress {
        Progress::auto(self.global.quiet || self.global.json)
    }

    /// Opens the store without locking (readers).
    pub fn store(&self) -> Result<Store> {
        Ok(Store::open(&self.layout)?)
    }

    /// Opens the store and takes the state lock for a mutating command; then repairs what a
    /// killed hoist left half done (see `ops::txn`).
    pub fn store_locked(&self) -> Result<(Store, StateLock)> {
        let store = self.store()?;
        let quiet = self.global.quiet;
        let lock = StateLock::exclusive(&self.layout.lock_file(), || {
            if !quiet {
                eprintln!("hoist: waiting for another hoist command to finish…");
            }
        })
        .map_err(Error::State)?;
        self.repair()?;
        Ok((store, lock))
    }

    /// Repairs interrupted transactions (the caller holds the lock).
    fn repair(&self) -> Result<()> {
        if !crate::ops::repair::needed(&self.layout) {
            return Ok(());
        }
        let lines = crate::systemd::block_on(async {
            let sd = crate::systemd::Systemd::connect().await?;
            Ok::<_, Error>(crate::ops::repair::repair_all(&self.layout, &sd, &self.host).await?)
        })?;
        for l in lines {
            self.notice(&l);
        }
        Ok(())
    }

    /// For readers (`list`, `status`): repair first if something is half done.
    pub fn repair_if_needed(&self) -> Result<()> {
        if !crate::ops::repair::needed(&self.layout) {
            return Ok(());
        }
        self.store_locked().map(|_| ())
    }

    /// A one-line notice on stderr (`hoist: …`) unless `--quiet`.
    pub fn notice(&self, msg: &str) {
        if !self.global.quiet {
            eprintln!("hoist: {}", crate::error::printable(msg));
        }
    }

    pub fn warn(&self, msg: &str) {
        if !self.global.quiet {
            eprintln!("hoist: warning: {}", crate::error::printable(msg));
        }
    }

    /// Prints a human line on stdout unless `--quiet` or `--json`.
    pub fn say(&self, msg: &str) {
        if !self.global.quiet && !self.global.json {
            println!("{}", crate::error::printable(msg));
        }
    }
}

pub fn run(cli: Cli) -> Result<()> {
    // The runner must stay single-threaded and free of any runtime: dispatch it first.
    let command = match cli.command {
        Command::Internal(args) => internal::run(args),
        other => other,
    };
    // Deployments record absolute paths (units point at them): make the root absolute.
    let root = std::env::current_dir().map(|d| d.join(&cli.global.root)).unwrap_or_else(|_| cli.global.root.clone());
    let layout = Layout::new(root);
    let ctx = Ctx { global: cli.global, layout, host: crate::ops::Host::default() };
    match command {
        Command::Install(a) => install::run(&ctx, a),
        Command::Uninstall(a) => uninstall::run(&ctx, a),
        Command::Update(a) => update::update(&ctx, a),
        Command::Rollback(a) => update::rollback(&ctx, a),
        Command::List(a) => list::list(&ctx, a),
        Command::Status(a) => list::status(&ctx, a),
        Command::Logs(a) => logs::run(&ctx, a),
        Command::Run(a) => run::run(&ctx, a),
        Command::Pull(a) => pull::run(&ctx, a),
        Command::Push(a) => push::run(&ctx, a),
        Command::Images(a) => images::run(&ctx, a),
        Command::Mount(a) => mount::mount(&ctx, a),
        Command::Umount(a) => mount::umount(&ctx, a),
        Command::Trust(a) => trust::run(&ctx, a),
        Command::Apply(a) => apply::run(&ctx, a),
        Command::Fleet(a) => fleet::run(&ctx, a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "hoist", &mut std::io::stdout());
            Ok(())
        }
        Command::Internal(args) => internal::run(args),
    }
}
