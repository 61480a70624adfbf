use clap::Args;
use serde::Serialize;

use super::{Ctx, output};
use crate::error::Result;
use crate::fetch::{self, Platform, PullOptions, RegistryOptions, resolve};
use crate::layers::{ExtractOptions, Limits};

#[derive(Debug, Args)]
pub struct PullArgs {
    /// docker://REG/REPO[:TAG|@DIGEST] (or REG/REPO:TAG), oci:DIR[:REF], oci-archive:FILE[:REF],
    /// docker-archive:FILE[:NAME[:TAG]|:@INDEX], or a stored name such as localhost/app:1.0 (pulled
    /// again from where it came from)
    pub image: String,
    /// Create device nodes found in layers (skipped with a warning by default)
    #[arg(long)]
    pub allow_devices: bool,
    /// Pick this platform out of a multi-platform image instead of the machine's own
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How to reach a registry (for `docker://` references).
#[derive(Debug, Args, Clone, Default)]
pub struct RegistryArgs {
    /// Verify the registry's TLS certificate. `--tls-verify=false` skips the check and allows
    /// plain HTTP (for a local registry); it is remembered for later pulls of the same reference
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tls_verify: Option<bool>,
    /// Read registry credentials from this auth.json (default: $REGISTRY_AUTH_FILE, then podman's and
    /// docker's usual files)
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<std::path::PathBuf>,
}

impl RegistryArgs {
    /// Pull options for every command that may pull: these registry settings, and the size and
    /// entry limits from `HOIST_MAX_LAYER_SIZE`/`HOIST_MAX_LAYER_ENTRIES` (which also cap downloads).
    pub fn options(&self) -> PullOptions {
        PullOptions {
            extract: ExtractOptions { limits: Limits::from_env(), allow_devices: false },
            registry: RegistryOptions { tls_verify: self.tls_verify, authfile: self.authfile.clone(), platform: None },
        }
    }
}

#[derive(Serialize)]
struct PullJson<'a> {
    name: String,
    action: &'static str,
    result: output::Outcome,
    digest: String,
    source: String,
    blobs_fetched: usize,
    layers_extracted: usize,
    warnings: &'a [String],
}

pub fn run(ctx: &Ctx, args: PullArgs) -> Result<()> {
    let (store, _lock) = ctx.store_locked()?;
    let source = resolve::source_of(&store, &args.image)?;
    // Trees a killed prune renamed out of their live names (never trusted, just deleted).
    crate::images::remove_trash(store.layout())?;
    let mut opts = args.registry.options();
    opts.extract.allow_devices = args.allow_devices;
    opts.registry.platform = args.platform;
    let r = fetch::pull(&store, &source, &opts, &ctx.progress())?;
    for w in &r.warnings {
        ctx.warn(w);
    }
    if ctx.global.json {
        output::json(&PullJson {
            name: r.name.to_string(),
            action: "pull",
            result: output::Outcome::done_unless(r.unchanged()),
            digest: r.manifest.to_string(),
            source: source.to_string(),
            blobs_fetched: r.blobs_fetched,
            layers_extracted: r.layers_extracted,
            warnings: &r.warnings,
        });
    } else if r.unchanged() {
        ctx.say(&format!("{} is up to date ({})", r.name, r.manifest.short()));
    } else {
        ctx.say(&format!(
            "Pulled {} ({}): {} blob(s) stored, {} layer(s) extracted",
            r.name,
            r.manifest.short(),
            r.blobs_fetched,
            r.layers_extracted
        ));
    }
    Ok(())
}
