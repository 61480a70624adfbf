use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::pull::RegistryArgs;
use super::{Ctx, output};
use crate::deploy::seccomp::{Seccomp, SecurityOptError};
use crate::deploy::values::parse_sets;
use crate::error::{Error, Result};
use crate::fetch::resolve;
use crate::ops::install::{self, InstallOptions};
use crate::systemd::{self, Systemd};

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Container and unit name (default: the image's last path component, -TAG unless latest)
    #[arg(long)]
    pub name: Option<String>,
    /// Template value NAME=VALUE (repeatable; see `hoist images info IMAGE`)
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub sets: Vec<String>,
    /// Run the container with this OCI runtime (runc, crun) instead of hoist's runner
    #[arg(long, value_name = "PATH")]
    pub runtime: Option<PathBuf>,
    /// Security option for a generated config: seccomp=unconfined (no filter) or
    /// seccomp=/path/profile.json (an OCI linux.seccomp profile). Default: hoist's profile
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opts: Vec<String>,
    /// Start the service too (waits for it to be running)
    #[arg(long)]
    pub now: bool,
    /// A stored image or a source reference (a local source is read again, a registry one pulled if missing)
    pub image: String,
    #[command(flatten)]
    pub health: HealthArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// The health check flags of install and update (kept for later updates).
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Health check: a shell command run in the container (overrides the image's check)
    #[arg(long, value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// Time between checks once healthy (Go duration: 30s, 1m30s, 500ms)
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Time a check may take before it is killed and counts as failed
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Time after start during which failing checks do not count
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Consecutive failures that make the container unhealthy
    #[arg(long, value_name = "N")]
    pub health_retries: Option<u32>,
    /// What an unhealthy running container gets: none (reported), kill (stopped; Restart= decides), stop (unit stays down)
    #[arg(long, value_name = "ACTION")]
    pub health_on_failure: Option<crate::health::OnFailure>,
    /// No health check, whatever the image brings
    #[arg(long, conflicts_with = "health_cmd")]
    pub no_healthcheck: bool,
}

impl HealthArgs {
    pub fn flags(&self) -> Result<crate::health::HealthFlags> {
        let f = crate::health::HealthFlags {
            cmd: self.health_cmd.clone(),
            interval: self.health_interval.clone(),
            timeout: self.health_timeout.clone(),
            start_period: self.health_start_period.clone(),
            retries: self.health_retries,
            on_failure: self.health_on_failure,
            disabled: self.no_healthcheck,
        };
        f.validate().map_err(|e| Error::Usage(e.to_string()))?;
        Ok(f)
    }
}

#[derive(Serialize)]
struct J<'a> {
    action: &'static str,
    result: output::Outcome,
    #[serde(flatten)]
    installed: &'a install::Installed,
}

pub fn run(ctx: &Ctx, args: InstallArgs) -> Result<()> {
    let sets = parse_sets(&args.sets).map_err(|e| Error::Usage(e.to_string()))?;
    args.health.flags()?;
    let seccomp = Seccomp::from_security_opts(&args.security_opts).map_err(|e| match e {
        SecurityOptError::Unknown(_) => Error::Usage(e.to_string()),
        SecurityOptError::File { .. } => Error::SecurityOpt(e),
    })?;
    let (store, _lock) = ctx.store_locked()?;
    let progress = ctx.progress();
    let img = resolve::stored(&store, &args.image, &args.registry.options(), &progress)?;
    let opts = InstallOptions {
        name: args.name,
        sets,
        runtime: args.runtime,
        seccomp,
        now: args.now,
        extract: args.registry.options().extract,
        health: args.health.flags()?,
    };
    let installed = systemd::block_on(async {
        let sd = Systemd::connect().await?;
        Ok::<_, Error>(install::install(&store, &sd, &ctx.host, &img, &opts, &progress).await?)
    })?;
    if ctx.global.json {
        output::json(&J { action: "install", result: output::Outcome::Done, installed: &installed });
        return Ok(());
    }
    for c in &installed.conversions {
        ctx.warn(&format!("{}: config.json.template: {c}", installed.name));
    }
    for f in &installed.host_files {
        ctx.say(&format!("Created file {f}"));
    }
    for f in &installed.skipped_host_files {
        ctx.say(&format!("Kept existing file {f} (not managed by hoist)"));
    }
    let what = if installed.started { "installed, enabled and started" } else { "installed and enabled" };
    ctx.say(&format!("{}: {what} from {} ({})", installed.name, installed.image, installed.digest.short()));
    if !installed.started {
        ctx.say(&format!("Start it with: systemctl start {}", installed.name));
    }
    Ok(())
}
