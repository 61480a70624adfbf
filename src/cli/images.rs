use clap::{Args, Subcommand};
use serde::Serialize;

use super::pull::RegistryArgs;
use super::{Ctx, output};
use crate::error::Result;
use crate::fetch::resolve;
use crate::fsutil::human_size;
use crate::images;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ImagesArgs {
    #[command(subcommand)]
    pub cmd: Option<ImagesCmd>,
    /// Show full digests
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImagesCmd {
    /// List stored images (`>` marks images used by a container)
    List {
        /// Show full digests
        #[arg(long)]
        no_trunc: bool,
    },
    /// Remove stored names (blobs are freed by `images prune`)
    Rm {
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Free blobs, extracted layers and dangling deployments nothing refers to
    Prune,
    /// Write a stored image as oci:DIR[:REF], oci-archive:FILE[:REF] or docker-archive:FILE[:NAME]
    /// (byte for byte; layer blobs a pull did not keep are fetched again from its source)
    Export {
        image: String,
        /// oci:DIR[:REF] | oci-archive:FILE[:REF] | docker-archive:FILE[:NAME[:TAG]]
        dest: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Build a layered image: a base image's layers untouched plus one layer per --add
    Build(Box<BuildArgs>),
    /// Labels and template variables (defaults, and the ones that must be --set)
    Info {
        /// A stored image or a source reference (a local source is read again, a registry one pulled if missing)
        image: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

pub fn run(ctx: &Ctx, args: ImagesArgs) -> Result<()> {
    match args.cmd {
        None => list(ctx, args.no_trunc),
        Some(ImagesCmd::List { no_trunc }) => list(ctx, no_trunc || args.no_trunc),
        Some(ImagesCmd::Rm { images }) => rm(ctx, &images),
        Some(ImagesCmd::Prune) => prune(ctx),
        Some(ImagesCmd::Info { image, registry }) => info(ctx, &image, &registry),
        Some(ImagesCmd::Export { image, dest, registry }) => export(ctx, &image, &dest, &registry),
        Some(ImagesCmd::Build(b)) => build(ctx, *b),
    }
}

fn list(ctx: &Ctx, no_trunc: bool) -> Result<()> {
    let images = images::list(&ctx.store()?)?;
    if ctx.global.json {
        output::json(&images);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|i| {
            let digest = if no_trunc { i.digest.to_string() } else { i.digest.short().to_string() };
            vec![
                if i.in_use { ">" } else { " " }.to_string(),
                i.repository.clone(),
                i.tag.clone(),
                digest,
                human_size(i.size),
            ]
        })
        .collect();
    output::table(&[" ", "REPOSITORY", "TAG", "DIGEST", "SIZE"], &rows);
    Ok(())
}

#[derive(Serialize)]
struct Removed {
    name: String,
    action: &'static str,
    result: output::Outcome,
    digest: String,
}

fn rm(ctx: &Ctx, queries: &[String]) -> Result<()> {
    let (store, _lock) = ctx.store_locked()?;
    let mut out = Vec::new();
    for q in queries {
        let img = images::remove(&store, &resolve::query_of(q)?)?;
        ctx.say(&format!("Removed {} ({})", img.name, img.manifest.short()));
        out.push(Removed {
            name: img.name.to_string(),
            action: "rm",
            result: output::Outcome::Done,
            digest: img.manifest.to_string(),
        });
    }
    if ctx.global.json {
        output::json(&out);
    }
    Ok(())
}

fn prune(ctx: &Ctx) -> Result<()> {
    let (store, _lock) = ctx.store_locked()?;
    let r = images::prune(&store)?;
    if ctx.global.json {
        #[derive(Serialize)]
        struct J<'a> {
            action: &'static str,
            result: output::Outcome,
            #[serde(flatten)]
            report: &'a images::PruneReport,
        }
        output::json(&J {
            action: "prune",
            result: output::Outcome::done_unless(r.bytes_freed == 0 && r.deployments.is_empty() && r.mounts == 0),
            report: &r,
        });
    } else {
        for d in &r.deployments {
            ctx.say(&format!("Removed dangling deployment {d}"));
        }
        if r.mounts > 0 {
            ctx.say(&format!("Removed {} leftover mount(s) of interrupted hoist mount", r.mounts));
        }
        ctx.say(&format!(
            "Freed {} blob(s) and {} extracted layer(s): {}",
            r.blobs,
            r.layers,
            human_size(r.bytes_freed)
        ));
    }
    Ok(())
}

fn info(ctx: &Ctx, image: &str, registry: &RegistryArgs) -> Result<()> {
    // Inspecting may pull and extract layers, so it takes the lock like any writer.
    let (store, _lock) = ctx.store_locked()?;
    let opts = registry.options();
    let img = resolve::stored(&store, image, &opts, &ctx.progress())?;
    let i = images::info(&store, &img.name.to_string(), &opts.extract)?;
    if ctx.global.json {
        output::json(&i);
        return Ok(());
    }
    println!("Image:    {}", i.name);
    println!("Digest:   {}", i.digest);
    if let Some(s) = &i.source {
        println!("Source:   {s}");
    }
    match &i.verified {
        Some(v) => println!("Verified: {}", v.summary()),
        None => println!("Verified: no (pulled with --insecure-policy or before hoist verified signatures)"),
    }
    if let Some(f) = &i.fetched_from {
        println!("Fetched:  {f}");
    }
    if let Some(t) = i.remembered_tls {
        println!("TLS:      {t}");
    }
    if let Some(c) = &i.created {
        println!("Created:  {c}");
    }
    match &i.health_check {
        Some(h) => println!(
            "Health:   {} (every {:?}, timeout {:?}, start period {:?}, {} retries, on failure {}; from {})",
            h.command(),
            h.interval(),
            h.timeout(),
            h.start_period(),
            h.retries,
            h.on_failure,
            h.origin
        ),
        None => println!("Health:   no check"),
    }
    println!("Labels:{}", if i.labels.is_empty() { " none" } else { "" });
    for (k, v) in &i.labels {
        println!("  {k}={v}");
    }
    if !i.exports {
        println!("Exports:  none (hoist generates the runtime config and unit from the image config)");
        return Ok(());
    }
    println!("Exports:  {}", if i.templates.is_empty() { "no templates".to_string() } else { i.templates.join(", ") });
    println!("Variables (change with --set NAME=VALUE):");
    for (k, v) in &i.variables.defaults {
        println!("  {k}={v}");
    }
    for k in &i.variables.required {
        println!("  {k}  (required: no default)");
    }
    if !i.variables.json_text.is_empty() {
        println!(
            "Take JSON text (outside a JSON string in config.json.template; empty inserts nothing): {}",
            i.variables.json_text.join(" ")
        );
    }
    println!("Set by hoist: {}", images::FORCED_VARIABLES.join(" "));
    println!("Set by hoist unless --set: {}", images::OVERRIDABLE_VARIABLES.join(" "));
    Ok(())
}

fn export(ctx: &Ctx, image: &str, dest: &str, registry: &RegistryArgs) -> Result<()> {
    let dest = match crate::imgref::ImageArg::parse(dest)? {
        crate::imgref::ImageArg::Source(
            s @ (crate::imgref::Source::OciDir { .. }
            | crate::imgref::Source::OciArchive { .. }
            | crate::imgref::Source::DockerArchive { .. }),
        ) => s.absolutize(&std::env::current_dir().unwrap_or_default()),
        _ => {
            return Err(crate::error::Error::Usage(format!(
                "{dest}: export writes oci:DIR, oci-archive:FILE or docker-archive:FILE (`hoist push` writes to a registry)"
            )));
        }
    };
    let (store, _lock) = ctx.store_locked()?;
    let img = store.resolve(image)?;
    super::pull::blobs_back(ctx, &store, &img, &registry.options(), &ctx.progress())?;
    let e = images::export::export(&store, &img, &dest)?;
    if ctx.global.json {
        output::json(&e);
    } else {
        ctx.say(&format!("Exported {} ({}) to {}", e.image, e.digest.short(), e.dest));
    }
    Ok(())
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  hoist images build --from docker.io/library/redis:7 --exports ./exports --tag redis-system:7.2-1\n  SOURCE_DATE_EPOCH=1700000000 hoist images build --from scratch --add ./rootfs --cmd '[\"/app\"]' --tag app:1-1"
)]
pub struct BuildArgs {
    /// The base image (a stored image or a source reference, pulled if missing), or `scratch`
    #[arg(long, value_name = "IMAGE")]
    pub from: String,
    /// The new image's name (NAME:VERSION-RELEASE also sets the labels name, version, release)
    #[arg(long, value_name = "NAME:TAG")]
    pub tag: String,
    /// A directory added as one layer, at DEST (default /)
    #[arg(long, value_name = "DIR[:DEST]")]
    pub add: Vec<String>,
    /// An atomic /exports directory (checked as `install` reads it), added as a layer that makes
    /// it the image's /exports: nothing of the base's /exports survives (`--add DIR:/exports`
    /// merges instead)
    #[arg(long, value_name = "DIR")]
    pub exports: Option<std::path::PathBuf>,
    /// Entrypoint, as a JSON array
    #[arg(long, value_name = "JSON")]
    pub entrypoint: Option<String>,
    /// Command, as a JSON array
    #[arg(long, value_name = "JSON")]
    pub cmd: Option<String>,
    /// Environment variable (repeatable)
    #[arg(long, value_name = "K=V")]
    pub env: Vec<String>,
    /// Label (repeatable)
    #[arg(long, value_name = "K=V")]
    pub label: Vec<String>,
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Health check: a shell command run in the container (docker's HEALTHCHECK CMD-SHELL)
    #[arg(long, value_name = "CMD")]
    pub healthcheck: Option<String>,
    /// Time between health checks (Go duration: 30s, 1m30s)
    #[arg(long, value_name = "DURATION", requires = "healthcheck")]
    pub healthcheck_interval: Option<String>,
    /// Manifest format: oci (default) or docker (v2 schema 2)
    #[arg(long, value_name = "FORMAT", default_value = "oci", value_parser = ["oci", "docker"])]
    pub format: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

fn build(ctx: &Ctx, a: BuildArgs) -> Result<()> {
    use crate::error::Error;
    let usage = |m: String| Error::Usage(m);
    let tag =
        crate::imgref::ImageName::parse(&a.tag).ok_or_else(|| usage(format!("--tag {:?}: not NAME:TAG", a.tag)))?;
    let json_list = |flag: &str, v: &Option<String>| -> Result<Option<Vec<String>>> {
        v.as_ref()
            .map(|t| {
                serde_json::from_str::<Vec<String>>(t)
                    .map_err(|e| usage(format!("--{flag} {t:?}: not a JSON array of strings: {e}")))
            })
            .transpose()
    };
    let pair = |flag: &str, v: &String| -> Result<(String, String)> {
        v.split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .ok_or_else(|| usage(format!("--{flag} {v:?}: not K=V")))
    };
    let mut adds = Vec::new();
    for s in &a.add {
        let (dir, dest) = match s.rsplit_once(':') {
            Some((d, dest)) if dest.starts_with('/') => (d.to_string(), dest.to_string()),
            _ => (s.clone(), "/".to_string()),
        };
        adds.push(images::build::Add { dir: std::path::PathBuf::from(dir), dest, replace: false });
    }
    if let Some(e) = &a.exports {
        let required =
            images::build::check_exports(e).map_err(|r| Error::Failed(format!("--exports {}: {r}", e.display())))?;
        if !required.is_empty() {
            ctx.notice(&format!("--exports {}: install will need --set for {}", e.display(), required.join(", ")));
        }
        adds.push(images::build::Add { dir: e.clone(), dest: "/exports".to_string(), replace: true });
    }
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Some(
            v.trim().parse::<u64>().map_err(|_| usage(format!("SOURCE_DATE_EPOCH={v:?}: not a number of seconds")))?,
        ),
        Err(_) => None,
    };
    let mut spec = images::build::BuildSpec {
        from: None,
        tag: Some(tag),
        adds,
        entrypoint: json_list("entrypoint", &a.entrypoint)?,
        cmd: json_list("cmd", &a.cmd)?,
        env: a.env.iter().map(|v| pair("env", v)).collect::<Result<_>>()?,
        labels: a.label.iter().map(|v| pair("label", v)).collect::<Result<_>>()?,
        workdir: a.workdir,
        user: a.user,
        epoch,
        healthcheck: match &a.healthcheck {
            Some(cmd) => Some((
                cmd.clone(),
                a.healthcheck_interval
                    .as_deref()
                    .map(crate::health::parse_duration)
                    .transpose()
                    .map_err(|e| usage(format!("--healthcheck-interval: {e}")))?,
            )),
            None => None,
        },
        docker_format: a.format == "docker",
    };
    let (store, _lock) = ctx.store_locked()?;
    let progress = ctx.progress();
    if a.from != "scratch" {
        let opts = a.registry.options();
        let base = resolve::stored(&store, &a.from, &opts, &progress)?;
        super::pull::blobs_back(ctx, &store, &base, &opts, &progress)?;
        spec.from = Some(base);
    }
    let built = images::build::build(&store, &spec)?;
    if ctx.global.json {
        output::json(&built);
    } else {
        ctx.say(&format!(
            "Built {} ({}): {} layer(s) reused, {} added",
            built.name,
            built.digest.short(),
            built.layers_reused,
            built.layers_added
        ));
    }
    Ok(())
}
