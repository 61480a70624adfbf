use clap::Args;
use serde::Serialize;

use super::{Ctx, output};
use crate::error::{Error, Result};
use crate::fetch::{self, Platform, PullOptions, RegistryOptions};
use crate::imgref::{ImageArg, Source};
use crate::layers::{ExtractOptions, Limits};

#[derive(Debug, Args)]
pub struct PullArgs {
    /// docker://REG/REPO[:TAG|@DIGEST] (or REG/REPO:TAG), oci:DIR[:REF], oci-archive:FILE[:REF],
    /// docker-archive:FILE, or a stored name (pulled again from where it came from)
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
    result: &'static str,
    digest: String,
    source: String,
    blobs_fetched: usize,
    layers_extracted: usize,
    warnings: &'a [String],
}

/// Turns an IMAGE argument into a source: a stored name re-reads its recorded source.
pub fn source_of(ctx: &Ctx, image: &str) -> Result<Source> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    match ImageArg::parse(image)? {
        ImageArg::Source(s) => Ok(s.absolutize(&cwd)),
        ImageArg::Stored(q) => {
            let img = ctx.store()?.resolve(&q)?;
            let src = img
                .source
                .ok_or_else(|| Error::Failed(format!("image {}: no recorded source to pull from", img.name)))?;
            match ImageArg::parse(&src)? {
                ImageArg::Source(s) => Ok(s),
                ImageArg::Stored(_) => {
                    Err(Error::Failed(format!("image {}: recorded source {src:?} is not a reference", img.name)))
                }
            }
        }
    }
}

/// The store query an IMAGE argument means, without pulling: a source reference stands for the
/// name it is stored under.
pub fn query_of(image: &str) -> Result<String> {
    Ok(match ImageArg::parse(image)? {
        ImageArg::Stored(q) => q,
        ImageArg::Source(s) => s.local_name()?.map(|n| n.to_string()).unwrap_or_else(|| image.to_string()),
    })
}

/// Like [`query_of`], but makes sure the image is stored: a local source (file or directory)
/// is always read again (cheap when nothing changed: no blob is copied twice), a registry
/// reference is pulled when its name is not stored yet, or is stored but was not pulled from
/// that same registry reference (a name from any other source is never trusted for it).
pub fn stored_query(ctx: &Ctx, image: &str, registry: &RegistryArgs) -> Result<String> {
    let query = query_of(image)?;
    if let ImageArg::Source(src) = ImageArg::parse(image)? {
        let local = !matches!(src, Source::Registry(_));
        if local || !stored_from(ctx, &query, &source_of(ctx, image)?)? {
            let source = source_of(ctx, image)?;
            let (store, _lock) = ctx.store_locked()?;
            let r = fetch::pull(&store, &source, &registry.options(), &ctx.progress())?;
            return Ok(r.name.to_string());
        }
    }
    Ok(query)
}

/// True when `query` names a stored image recorded as pulled from `source`.
pub fn stored_from(ctx: &Ctx, query: &str, source: &Source) -> Result<bool> {
    Ok(ctx.store()?.resolve(query).is_ok_and(|img| img.source.as_deref() == Some(source.to_string().as_str())))
}

pub fn run(ctx: &Ctx, args: PullArgs) -> Result<()> {
    let source = source_of(ctx, &args.image)?;
    let (store, _lock) = ctx.store_locked()?;
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
            result: if r.unchanged() { "unchanged" } else { "done" },
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
