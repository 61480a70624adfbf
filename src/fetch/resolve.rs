//! What an IMAGE argument means, in one call per command: the stored image that `install`,
//! `mount`, `images info` and `update` work on, pulled first when the argument asks for it.
//!
//! Rules (the caller holds the state lock, so a pull and the use of its result cannot be
//! interleaved with another command):
//! - a stored name or digest prefix (`etcd`, `etcd:3.5.0`, `3f2a9c`) is looked up, never pulled;
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
}

pub type Result<T, E = ResolveError> = std::result::Result<T, E>;

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| "/".into())
}

/// The source an IMAGE argument names: a source reference itself (relative paths made
/// absolute), or where a stored image was pulled from.
pub fn source_of(store: &Store, image: &str) -> Result<Source> {
    match ImageArg::parse(image)? {
        ImageArg::Source(s) => Ok(s.absolutize(&cwd())),
        ImageArg::Stored(q) => recorded_source(&store.resolve(&q)?),
    }
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
        ImageArg::Stored(q) => Ok(store.resolve(&q)?),
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
