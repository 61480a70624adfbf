use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::pull::RegistryArgs;
use super::{Ctx, output};
use crate::error::{Error, Result};
use crate::fetch::registry::attach::Attachment;
use crate::imgref::{ImageArg, Source};
use crate::trust::sign::sigstore::{Passphrase, SigstoreKey};

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
    /// Sign each pushed tag with this sigstore private key (cosign's encrypted key, or a PEM
    /// PKCS#8/SEC1 ECDSA P-256 key), attached as `sha256-<hex>.sig` in the destination
    /// repository: what a sigstoreSigned policy verifies. registries.d must turn on
    /// use-sigstore-attachments for the destination.
    #[arg(long, value_name = "FILE", visible_alias = "sign-by-sigstore-private-key")]
    pub sign_by_sigstore_key: Option<PathBuf>,
    /// The passphrase of an encrypted --sign-by-sigstore-key: the file's first line (default:
    /// asked on the terminal)
    #[arg(long, value_name = "FILE", requires = "sign_by_sigstore_key")]
    pub sign_passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Serialize)]
struct J<'a> {
    image: &'a str,
    digest: String,
    dest: String,
    tags: &'a [String],
    signatures: &'a [PathBuf],
    /// The sigstore key's fingerprint, when one signed.
    sigstore_key: Option<&'a str>,
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
    let tagged = |t: &String| {
        let mut r = dest.clone();
        r.tag = Some(t.clone());
        r
    };
    let sources = if args.sign_by.is_some() || args.sign_by_sigstore_key.is_some() {
        Some(
            crate::trust::sources::Sources::load(args.registry.trust.registries_d.as_deref())
                .map_err(|e| Error::Failed(e.to_string()))?,
        )
    } else {
        None
    };
    // The sigstore key is read (and its passphrase asked) before anything is sent.
    let sigstore = match (&args.sign_by_sigstore_key, &sources) {
        (Some(path), Some(sources)) => {
            if !sources.lookup(&dest).sigstore_attachments {
                return Err(Error::Failed(format!(
                    "{}: sigstore signatures are attachments, and registries.d ({}) does not turn on \
                     use-sigstore-attachments for {}/{} (pullers would not look for them): add \
                     `use-sigstore-attachments: true` for it",
                    args.dest,
                    sources.dir.display(),
                    dest.registry,
                    dest.repository
                )));
            }
            let pass = match &args.sign_passphrase_file {
                Some(f) => Passphrase::File(f),
                None => Passphrase::Prompt,
            };
            Some(SigstoreKey::load(path, pass).map_err(|e| Error::Failed(e.to_string()))?)
        }
        _ => None,
    };
    let opts = args.registry.options();
    let progress = ctx.progress();
    super::pull::blobs_back(ctx, &store, &img, &opts, &progress)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // Signatures first: a push is only published by its manifests, which come last.
    let mut signatures = Vec::new();
    if let (Some(key), Some(sources)) = (&args.sign_by, &sources) {
        for t in &tags {
            let r = tagged(t);
            let path = crate::trust::sign::sign_simple(&r, &img.manifest, key, &sources.write_base(&r))
                .map_err(|e| Error::Failed(e.to_string()))?;
            signatures.push(path);
        }
    }
    let attachments = match &sigstore {
        Some(key) => tags
            .iter()
            .map(|t| {
                let (payload, annotations) =
                    key.sign(&format!("{}/{}:{t}", dest.registry, dest.repository), &img.manifest, now);
                Attachment { payload, annotations }
            })
            .collect(),
        None => Vec::new(),
    };
    let pushed = crate::fetch::push(&store, &img, &dest, &tags, attachments, &opts, &progress)?;
    let where_ = format!("{}/{}", dest.registry, dest.repository);
    if ctx.global.json {
        output::json(&J {
            image: &img.name.to_string(),
            digest: img.manifest.to_string(),
            dest: where_,
            tags: &tags,
            signatures: &signatures,
            sigstore_key: sigstore.as_ref().map(|k| k.fingerprint.as_str()),
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
        if let Some(k) = &sigstore {
            let att = format!("{where_}:sha256-{}.sig", img.manifest.hex());
            match pushed.attached {
                0 => ctx.say(&format!("Signed with sigstore key {}: already attached to {att}", k.fingerprint)),
                n => {
                    ctx.say(&format!("Signed with sigstore key {}: {n} signature(s) attached to {att}", k.fingerprint))
                }
            }
        }
    }
    Ok(())
}
