//! What an IMAGE argument means, in one call per command: the stored image that `install`,
//! `mount`, `images info` and `update` work on, pulled first when the argument asks for it.
//!
//! Rules (the caller holds the state lock, so a pull and the use of its result cannot be
//! interleaved with another command):
//! - a stored name or digest prefix (`etcd`, `etcd:3.5.0`, `3f2a9c`) is looked up, never pulled;
//! - a short name that is not stored (`etcd`, `coreos/etcd:v3.4`) is resolved by registries.conf
//!   ([`crate::registries::shortnames`]: an alias, or the search registries in order, asking on a
//!   terminal when the mode says so) and pulled;
//! - a local source (`oci:DIR`, `oci-archive:FILE`, `docker-archive:FILE`) is always read
//!   again (cheap when nothing changed: no blob is copied twice), so the file's current content
//!   is what gets installed;
//! - a registry reference is pulled unless its name is stored *and* was pulled from that very
//!   reference (a name that came from anywhere else is never trusted for it);
//! - an update re-reads its container's recorded source (or the `--rebase` target) unless
//!   `--no-pull`; with `--no-pull`, a registry reference counts only if it was pulled from it.

use std::path::PathBuf;

use super::{PullError, PullOptions, pull};
use crate::imgref::{ImageArg, RefError, Source};
use crate::progress::Progress;
use crate::registries::Registries;
use crate::registries::shortnames::{self, ShortNameError};
use crate::store::{Store, StoreError, StoredImage};

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Ref(#[from] RefError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error("image {image}: no recorded source to pull from")]
    NoSource { image: String },
    #[error("image {image}: recorded source {recorded:?} is not a reference")]
    BadSource { image: String, recorded: String },
    /// `--no-pull` with a registry reference whose name came from elsewhere (a usage error).
    #[error("image {image}: not pulled from {reference}; run without --no-pull")]
    NotPulledFrom { image: String, reference: String },
    #[error(transparent)]
    ShortName(#[from] ShortNameError),
    #[error(transparent)]
    Registries(#[from] crate::registries::ConfError),
    /// Every search registry was tried.
    #[error("{name}: no search registry has it: {tried}")]
    NoCandidate { name: String, tried: String },
}

pub type Result<T, E = ResolveError> = std::result::Result<T, E>;

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| "/".into())
}

/// The source an IMAGE argument names: a source reference itself (relative paths made
/// absolute), where a stored image was pulled from, or what a short name resolves to (the first
/// candidate when several are tried in order: see [`pull_arg`] to try them all).
pub fn source_of(store: &Store, image: &str, opts: &PullOptions) -> Result<Source> {
    match ImageArg::parse(image)? {
        ImageArg::Source(s) => Ok(s.absolutize(&cwd())),
        ImageArg::Stored(q) => match store.resolve(&q) {
            Err(StoreError::NotFound { .. }) if let Some(c) = short_name(&q, opts, &Progress::silent())? => {
                Ok(Source::Registry(c.candidates[0].clone()))
            }
            other => recorded_source(&other?),
        },
    }
}

/// A short name that is not stored, resolved (None: not a short name).
fn short_name(q: &str, opts: &PullOptions, progress: &Progress) -> Result<Option<shortnames::Choice>> {
    let conf = Registries::load(&opts.registry.conf)?;
    for w in &conf.warnings {
        progress.line(&format!("warning: {w}"));
    }
    match conf.short_name(q)? {
        None => Ok(None),
        Some(res) => Ok(Some(shortnames::choose(q, res)?)),
    }
}

/// Pulls the first candidate of a short name that has the image (reporting each miss), and
/// records a prompted choice as an alias.
fn pull_short(
    store: &Store,
    q: &str,
    choice: shortnames::Choice,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<(Source, super::PullResult)> {
    let several = choice.candidates.len() > 1;
    let mut tried = Vec::new();
    for c in &choice.candidates {
        let src = Source::Registry(c.clone());
        progress.line(&format!("Resolved short name {q:?} to {c}"));
        match pull(store, &src, opts, progress) {
            Ok(r) => {
                // The pull succeeded: failing to remember the choice is only worth a warning.
                if choice.record {
                    match shortnames::record_alias(q, c) {
                        Ok(file) => progress.line(&format!("Recorded the alias in {}", file.display())),
                        Err(e) => progress.line(&format!("warning: the choice was not recorded: {e}")),
                    }
                }
                return Ok((src, r));
            }
            Err(e) if several && is_miss(&e.cause) => {
                progress.line(&format!("{c}: {}", e.cause));
                tried.push(format!("{c}: {}", e.cause));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ResolveError::NoCandidate { name: q.to_string(), tried: tried.join("; ") })
}

/// A failure that means "not at this registry" (try the next search registry).
fn is_miss(e: &super::FetchError) -> bool {
    use super::registry::RegistryError as R;
    matches!(e, super::FetchError::Registry(r) if matches!(**r, R::NotFound { .. } | R::Unauthorized { .. } | R::Unreachable { .. } | R::Sources { .. }))
}

/// What `hoist pull IMAGE` pulls: the source it names (a stored name: its recorded source; a
/// short name: its candidates in order), pulled.
pub fn pull_arg(
    store: &Store,
    image: &str,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<(Source, super::PullResult)> {
    if let ImageArg::Stored(q) = ImageArg::parse(image)?
        && matches!(store.resolve(&q), Err(StoreError::NotFound { .. }))
        && let Some(choice) = short_name(&q, opts, progress)?
    {
        return pull_short(store, &q, choice, opts, progress);
    }
    let src = source_of(store, image, opts)?;
    let r = pull(store, &src, opts, progress)?;
    Ok((src, r))
}

fn recorded_source(img: &StoredImage) -> Result<Source> {
    let image = img.name.to_string();
    let recorded = img.source.clone().ok_or_else(|| ResolveError::NoSource { image: image.clone() })?;
    match ImageArg::parse(&recorded)? {
        ImageArg::Source(s) => Ok(s),
        ImageArg::Stored(_) => Err(ResolveError::BadSource { image, recorded }),
    }
}

/// The store query an IMAGE argument stands for, without pulling: a source reference means the
/// name it is stored under.
pub fn query_of(image: &str) -> Result<String> {
    Ok(match ImageArg::parse(image)? {
        ImageArg::Stored(q) => q,
        ImageArg::Source(s) => s.local_name()?.map(|n| n.to_string()).unwrap_or_else(|| image.to_string()),
    })
}

/// True when `query` names a stored image recorded as pulled from `source`.
fn stored_from(store: &Store, query: &str, source: &Source) -> bool {
    store.resolve(query).is_ok_and(|img| img.source.as_deref() == Some(source.to_string().as_str()))
}

/// Pulls `source` and returns what it stored.
fn pull_stored(store: &Store, source: &Source, opts: &PullOptions, progress: &Progress) -> Result<StoredImage> {
    let r = pull(store, source, opts, progress)?;
    Ok(store.resolve(&r.name.to_string())?)
}

/// The stored image an IMAGE argument means, pulled first by the rules in the module doc.
pub fn stored(store: &Store, image: &str, opts: &PullOptions, progress: &Progress) -> Result<StoredImage> {
    match ImageArg::parse(image)? {
        ImageArg::Stored(q) => match store.resolve(&q) {
            Err(StoreError::NotFound { .. }) if let Some(choice) = short_name(&q, opts, progress)? => {
                // Already pulled from the one candidate (an alias): not pulled again.
                if let [c] = choice.candidates.as_slice() {
                    let src = Source::Registry(c.clone());
                    let query = query_of(&src.to_string())?;
                    if stored_from(store, &query, &src) {
                        return Ok(store.resolve(&query)?);
                    }
                }
                let (_, r) = pull_short(store, &q, choice, opts, progress)?;
                Ok(store.resolve(&r.name.to_string())?)
            }
            other => Ok(other?),
        },
        ImageArg::Source(src) => {
            let src = src.absolutize(&cwd());
            let query = query_of(image)?;
            if matches!(src, Source::Registry(_)) && stored_from(store, &query, &src) {
                return Ok(store.resolve(&query)?);
            }
            pull_stored(store, &src, opts, progress)
        }
    }
}

/// Where an installed container's image came from (from its record).
#[derive(Debug, Clone, Copy)]
pub struct Deployed<'a> {
    /// The stored image name (`etcd:latest`).
    pub image: &'a str,
    /// The reference it was pulled from, if recorded.
    pub source: Option<&'a str>,
}

/// The image an update moves to: `rebase` (an IMAGE argument) or the deployed image, re-read
/// from its source unless `no_pull`.
pub fn update_target(
    store: &Store,
    deployed: Deployed<'_>,
    rebase: Option<&str>,
    no_pull: bool,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<StoredImage> {
    let (reference, fallback) = match rebase {
        Some(r) => (Some(r), query_of(r)?),
        None => (deployed.source, deployed.image.to_string()),
    };
    if let Some(r) = reference
        && let ImageArg::Source(src) = ImageArg::parse(r)?
    {
        let src = src.absolutize(&cwd());
        if !no_pull {
            return pull_stored(store, &src, opts, progress);
        }
        if rebase.is_some() && matches!(src, Source::Registry(_)) && !stored_from(store, &fallback, &src) {
            return Err(ResolveError::NotPulledFrom { image: fallback, reference: src.to_string() });
        }
        // A local source may name its image itself (RepoTags, a layout's ref.name): the image
        // last stored from it is the one it means.
        let me = src.to_string();
        if rebase.is_some()
            && !matches!(src, Source::Registry(_))
            && let Some(img) =
                store.images()?.into_iter().filter(|i| i.source.as_deref() == Some(&me)).max_by_key(|i| i.pulled)
        {
            return Ok(img);
        }
    }
    Ok(store.resolve(&fallback)?)
}

/// The recorded source when it pins a digest (`docker://REPO:TAG@sha256:…`): an update re-reads
/// the same content, so it never moves.
pub fn pinned(source: Option<&str>) -> Option<String> {
    match ImageArg::parse(source?).ok()? {
        ImageArg::Source(Source::Registry(r)) if r.digest.is_some() => Some(r.to_string()),
        _ => None,
    }
}
