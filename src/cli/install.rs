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
    pub health: crate::health::HealthFlags,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// The health check flags, checked before anything is done.
pub fn health_flags(f: &crate::health::HealthFlags) -> Result<crate::health::HealthFlags> {
    f.validate().map_err(|e| Error::Usage(e.to_string()))?;
    Ok(f.clone())
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
    health_flags(&args.health)?;
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
        health: health_flags(&args.health)?,
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
