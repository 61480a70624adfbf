use clap::Args;
use serde::Serialize;

use super::pull::RegistryArgs;
use super::{Ctx, output};
use crate::error::{Error, Result};
use crate::imgref::{ImageArg, Source};

#[derive(Debug, Args)]
pub struct PushArgs {
    /// A stored image
    pub image: String,
    /// docker://REGISTRY/REPOSITORY[:TAG] (default TAG: the image's)
    pub dest: String,
    /// Publish the tag stream of a TAG of the form VERSION-RELEASE: TAG (frozen), VERSION and
    /// latest, in that order
    #[arg(long)]
    pub stream: bool,
    /// Sign each pushed tag with this GnuPG key (simple signing, written to the registries.d
    /// lookaside-staging or lookaside of the destination: what a signedBy policy verifies)
    #[arg(long, value_name = "FINGERPRINT")]
    pub sign_by: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Serialize)]
struct J<'a> {
    image: &'a str,
    digest: String,
    dest: String,
    tags: &'a [String],
    signatures: &'a [std::path::PathBuf],
    #[serde(flatten)]
    pushed: &'a crate::fetch::registry::push::Pushed,
}

/// TAG, or with `--stream` the tags of a VERSION-RELEASE tag: itself, VERSION, latest.
pub fn stream_tags(tag: &str, stream: bool) -> Result<Vec<String>> {
    if !stream {
        return Ok(vec![tag.to_string()]);
    }
    match tag.rsplit_once('-') {
        Some((version, release)) if !version.is_empty() && !release.is_empty() => {
            Ok(vec![tag.to_string(), version.to_string(), "latest".to_string()])
        }
        _ => Err(Error::Usage(format!("--stream needs a tag VERSION-RELEASE (like 3.4-2), not {tag:?}"))),
    }
}

pub fn run(ctx: &Ctx, args: PushArgs) -> Result<()> {
    let dest = match ImageArg::parse(&args.dest)? {
        ImageArg::Source(Source::Registry(r)) if r.digest.is_none() => r,
        _ => {
            return Err(Error::Usage(format!(
                "{}: push writes to docker://REGISTRY/REPOSITORY[:TAG] (`hoist images export` writes files)",
                args.dest
            )));
        }
    };
    let (store, _lock) = ctx.store_locked()?;
    let img = store.resolve(&args.image)?;
    let tag = dest.tag.clone().unwrap_or_else(|| img.name.tag.clone());
    let tags = stream_tags(&tag, args.stream)?;
    let opts = args.registry.options();
    let progress = ctx.progress();
    super::pull::blobs_back(ctx, &store, &img, &opts, &progress)?;
    // Signatures first: a push is only published by its manifests, which come last.
    let mut signatures = Vec::new();
    if let Some(key) = &args.sign_by {
        let sources = crate::trust::sources::Sources::load(args.registry.trust.registries_d.as_deref())
            .map_err(|e| Error::Failed(e.to_string()))?;
        for t in &tags {
            let mut r = dest.clone();
            r.tag = Some(t.clone());
            let path = crate::trust::sign::sign_simple(&r, &img.manifest, key, &sources.write_base(&r))
                .map_err(|e| Error::Failed(e.to_string()))?;
            signatures.push(path);
        }
    }
    let pushed = crate::fetch::push(&store, &img, &dest, &tags, &opts, &progress)?;
    let where_ = format!("{}/{}", dest.registry, dest.repository);
    if ctx.global.json {
        output::json(&J {
            image: &img.name.to_string(),
            digest: img.manifest.to_string(),
            dest: where_,
            tags: &tags,
            signatures: &signatures,
            pushed: &pushed,
        });
    } else {
        ctx.say(&format!(
            "Pushed {} ({}) to {where_}: {} ({} blob(s) uploaded, {} mounted, {} already there)",
            img.name,
            img.manifest.short(),
            tags.join(", "),
            pushed.uploaded,
            pushed.mounted,
            pushed.present
        ));
        for p in &signatures {
            ctx.say(&format!("Signed with {}: {}", args.sign_by.as_deref().unwrap_or(""), p.display()));
        }
    }
    Ok(())
}
