use clap::Args;
use serde::Serialize;

use super::{Ctx, output};
use crate::error::Result;
use crate::fetch::{Platform, PullOptions, RegistryOptions, resolve};
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
    /// Keep the compressed layer blobs in the store after extraction (by default they are
    /// deleted once their layer is extracted and verified: the store keeps one copy of each layer)
    #[arg(long)]
    pub keep_blobs: bool,
    /// Verify the registry's TLS certificate. `--tls-verify=false` skips the check and allows
    /// plain HTTP (for a local registry); it is remembered for later pulls of the same reference
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tls_verify: Option<bool>,
    /// Read registry credentials from this auth.json (default: $REGISTRY_AUTH_FILE, then podman's and
    /// docker's usual files)
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<std::path::PathBuf>,
    /// containers-registries.conf(5) to read instead of /etc/containers/registries.conf (also
    /// $CONTAINERS_REGISTRIES_CONF): mirrors, relocations, insecure and blocked registries, short names
    #[arg(long, value_name = "FILE")]
    pub registries_conf: Option<std::path::PathBuf>,
    /// Read registries.conf drop-ins (*.conf) from DIR only, instead of
    /// /etc/containers/registries.conf.d (and ~/.config/containers/registries.conf.d)
    #[arg(long, value_name = "DIR")]
    pub registries_conf_dir: Option<std::path::PathBuf>,
    /// TLS files (*.crt authorities) for every registry, instead of
    /// /etc/containers/certs.d/HOST[:PORT] and /etc/docker/certs.d/HOST[:PORT]
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// Which signature policy decides whether an image may be stored.
#[derive(Debug, Args, Clone, Default)]
pub struct TrustArgs {
    /// Signature policy, containers-policy.json(5) (default: $HOME/.config/containers/policy.json
    /// when it exists, else /etc/containers/policy.json)
    #[arg(long, value_name = "FILE")]
    pub signature_policy: Option<std::path::PathBuf>,
    /// Do not verify anything for this command (hoist says so on stderr)
    #[arg(long)]
    pub insecure_policy: bool,
    /// Where signatures are found, containers-registries.d(5) (default:
    /// $HOME/.config/containers/registries.d when it exists, else /etc/containers/registries.d)
    #[arg(long = "registries.d", value_name = "DIR")]
    pub registries_d: Option<std::path::PathBuf>,
}

impl TrustArgs {
    /// The trust options; with `--insecure-policy` a warning on stderr (once per command).
    pub fn options(&self) -> crate::trust::Options {
        static WARNED: std::sync::Once = std::sync::Once::new();
        if self.insecure_policy {
            WARNED.call_once(|| {
                eprintln!("hoist: warning: --insecure-policy: signatures are not verified for this command")
            });
        }
        crate::trust::Options {
            policy: self.signature_policy.clone(),
            insecure: self.insecure_policy,
            registries_d: self.registries_d.clone(),
        }
    }
}

impl RegistryArgs {
    /// Pull options for every command that may pull: these registry settings, and the size and
    /// entry limits from `HOIST_MAX_LAYER_SIZE`/`HOIST_MAX_LAYER_ENTRIES` (which also cap downloads).
    pub fn options(&self) -> PullOptions {
        PullOptions {
            extract: ExtractOptions { limits: Limits::from_env(), ..ExtractOptions::default() },
            registry: RegistryOptions {
                tls_verify: self.tls_verify,
                authfile: self.authfile.clone(),
                platform: None,
                conf: crate::registries::Options {
                    file: self.registries_conf.clone(),
                    dir: self.registries_conf_dir.clone(),
                },
                cert_dir: self.cert_dir.clone(),
            },
            trust: self.trust.options(),
            keep_blobs: self.keep_blobs,
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
    verified: &'a Option<crate::trust::Verified>,
}

pub fn run(ctx: &Ctx, args: PullArgs) -> Result<()> {
    let (store, _lock) = ctx.store_locked()?;
    // Trees a killed prune renamed out of their live names (never trusted, just deleted).
    crate::images::remove_trash(store.layout())?;
    let mut opts = args.registry.options();
    opts.extract.allow_devices = args.allow_devices;
    opts.registry.platform = args.platform;
    let (source, r) = resolve::pull_arg(&store, &args.image, &opts, &ctx.progress())?;
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
            verified: &r.verified,
        });
    } else {
        if r.unchanged() {
            ctx.say(&format!("{} is up to date ({})", r.name, r.manifest.short()));
        } else {
            ctx.say(&format!(
                "Pulled {} ({}): {} blob(s) fetched, {} layer(s) extracted",
                r.name,
                r.manifest.short(),
                r.blobs_fetched,
                r.layers_extracted
            ));
        }
        if let Some(v) = &r.verified {
            ctx.say(&format!("Verified: {}", v.summary()));
        }
    }
    Ok(())
}

/// Makes every blob of `img` present (`fetch::ensure_blobs`), saying so when some had to be
/// fetched again (export, push and build need what a pull dropped).
pub fn blobs_back(
    ctx: &Ctx,
    store: &crate::store::Store,
    img: &crate::store::StoredImage,
    opts: &crate::fetch::PullOptions,
    progress: &crate::progress::Progress,
) -> Result<()> {
    let fetched = crate::fetch::ensure_blobs(store, img, opts, progress)?;
    if fetched > 0 {
        ctx.notice(&format!(
            "fetched {fetched} layer blob(s) of {} again from {}",
            img.name,
            img.source.as_deref().unwrap_or("?")
        ));
    }
    Ok(())
}
