//! Fetch: bring an image from a [`Source`] into the [`Store`] and have its layers extracted
//! ([`layers::extract_image`]).
//!
//! Every source ends in the same steps ([`finish`]): the manifest, config and layer blobs are in
//! the store (each verified by digest and size on the way in), the config's `rootfs.diff_ids`
//! match the layers one to one, every layer is extracted into the shared layer area with its
//! uncompressed digest checked against its diff_id, and only then is the name pointed at the
//! manifest. A second pull of the same image finds every blob and layer present and does no work.

mod docker_archive;
mod oci_layout;
pub mod platform;
pub mod registry;
pub mod resolve;
mod tarindex;

pub use platform::Platform;
pub use registry::RegistryError;

use oci_spec::image::{ImageManifest, MediaType};

use crate::digest::Digest;
use crate::fsutil::PathError;
use crate::imgref::{ImageName, RefError, Source};
use crate::layers::{self, ExtractOptions, LayerError};
use crate::progress::Progress;
use crate::store::{Store, StoreError, Transport};

pub type Result<T, E = FetchError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The source is readable but does not hold what was asked for, or is malformed.
    #[error("{0}")]
    Source(String),
    #[error(transparent)]
    Registry(Box<RegistryError>),
    #[error(transparent)]
    Io(#[from] PathError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Ref(#[from] RefError),
    #[error(transparent)]
    Trust(Box<crate::trust::TrustError>),
    #[error(transparent)]
    Registries(#[from] crate::registries::ConfError),
    #[error(transparent)]
    Certs(#[from] crate::registries::certs::CertsError),
}

impl From<crate::trust::TrustError> for FetchError {
    fn from(e: crate::trust::TrustError) -> Self {
        FetchError::Trust(Box::new(e))
    }
}

impl From<RegistryError> for FetchError {
    fn from(e: RegistryError) -> Self {
        FetchError::Registry(Box::new(e))
    }
}

fn src_err(msg: impl Into<String>) -> FetchError {
    FetchError::Source(msg.into())
}

/// Archive member names without a leading `./` or `/`.
fn clean(name: &std::path::Path) -> String {
    let s = name.to_string_lossy();
    s.trim_start_matches("./").trim_start_matches('/').to_string()
}

/// A failed pull, naming the reference.
#[derive(Debug, thiserror::Error)]
#[error("{reference}: {cause}")]
pub struct PullError {
    pub reference: String,
    #[source]
    pub cause: FetchError,
}

#[derive(Debug, Default, Clone)]
pub struct PullOptions {
    pub extract: ExtractOptions,
    pub registry: RegistryOptions,
    /// The signature policy that decides whether the image may be stored.
    pub trust: crate::trust::Options,
    /// `--keep-blobs`: keep the compressed layer blobs after extraction (see [`drop_layer_blobs`]).
    pub keep_blobs: bool,
}

/// How registry (`docker://`) sources are fetched.
#[derive(Debug, Default, Clone)]
pub struct RegistryOptions {
    /// `Some(false)`: HTTPS without certificate checks, falling back to plain HTTP. `None`: verify,
    /// unless this source was pulled with `Some(false)` before (the choice is remembered per source).
    pub tls_verify: Option<bool>,
    /// Credentials file used instead of the default search path.
    pub authfile: Option<std::path::PathBuf>,
    /// Platform to pick from a multi-platform image (default: this machine's). Also applies to
    /// indexes in OCI layouts.
    pub platform: Option<Platform>,
    /// Which registries.conf files to read.
    pub conf: crate::registries::Options,
    /// `--cert-dir`: TLS files for every registry instead of certs.d.
    pub cert_dir: Option<std::path::PathBuf>,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullResult {
    pub name: ImageName,
    pub manifest: Digest,
    /// Blobs written to the store (0 on a re-pull).
    pub blobs_fetched: usize,
    /// Layers extracted (0 when all were already extracted).
    pub layers_extracted: usize,
    /// Whether the name now points somewhere else than before.
    pub ref_changed: bool,
    pub warnings: Vec<String>,
    /// What the signature policy accepted (None with `--insecure-policy`).
    pub verified: Option<crate::trust::Verified>,
}

impl PullResult {
    /// True when the pull changed nothing at all.
    pub fn unchanged(&self) -> bool {
        self.blobs_fetched == 0 && self.layers_extracted == 0 && !self.ref_changed
    }
}

/// Pulls `source` into `store`, recording it as where the image came from.
pub fn pull(store: &Store, source: &Source, opts: &PullOptions, progress: &Progress) -> Result<PullResult, PullError> {
    let reference = source.to_string();
    pull_inner(store, source, opts, progress).map_err(|cause| PullError { reference, cause })
}

/// Makes every blob of `img` present in the store: layers a pull did not keep are fetched again
/// from the image's source (its registry, by manifest digest, or its layout); a docker-archive
/// cannot give them back. Returns how many were fetched.
pub fn ensure_blobs(
    store: &Store,
    img: &crate::store::StoredImage,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<usize, PullError> {
    let reference = img.source.clone().unwrap_or_else(|| img.name.to_string());
    let fail = |cause: FetchError| PullError { reference: reference.clone(), cause };
    let manifest = store.manifest(&img.manifest).map_err(|e| fail(e.into()))?;
    let mut wanted: Vec<(Digest, u64)> = Vec::new();
    for l in manifest.layers() {
        let d: Digest =
            l.digest().to_string().parse().map_err(|e: crate::digest::InvalidDigest| fail(src_err(e.to_string())))?;
        if !store.has_blob_sized(&d, l.size()) && !wanted.iter().any(|(w, _)| w == &d) {
            wanted.push((d, l.size()));
        }
    }
    if wanted.is_empty() {
        return Ok(0);
    }
    let gone = |why: &str| {
        fail(src_err(format!(
            "{} layer blob(s) of {} are not stored (pulled without --keep-blobs) and {why}",
            wanted.len(),
            img.name
        )))
    };
    let Some(source) = img.source.as_deref() else { return Err(gone("the image has no recorded source")) };
    let source = match crate::imgref::ImageArg::parse(source) {
        Ok(crate::imgref::ImageArg::Source(s)) => s,
        _ => return Err(gone(&format!("its source {source} cannot be read"))),
    };
    let got = match &source {
        Source::Registry(r) => {
            let mut by_digest = r.clone();
            by_digest.digest = Some(img.manifest.clone());
            routes(store, &by_digest, opts)
                .and_then(|routes| registry::refetch::blobs(store, &by_digest, &routes, &wanted, progress))
        }
        Source::OciDir { path, .. } => {
            oci_layout::Layout::dir(path).and_then(|l| oci_layout::copy_blobs(store, &l, &wanted))
        }
        Source::OciArchive { path, .. } => {
            oci_layout::Layout::archive(path).and_then(|l| oci_layout::copy_blobs(store, &l, &wanted))
        }
        Source::DockerArchive { .. } => {
            return Err(gone("a docker-archive holds them uncompressed (pull it again with --keep-blobs)"));
        }
    };
    got.map_err(|e| gone(&format!("its source cannot give them back: {e}")))?;
    Ok(wanted.len())
}

/// Uploads `img` (every blob present: see [`ensure_blobs`]) to the registry repository `dest`
/// names, publishing `tags` in order, manifest last (see `registry::push`).
pub fn push(
    store: &Store,
    img: &crate::store::StoredImage,
    dest: &crate::imgref::RegistryRef,
    tags: &[String],
    attachments: Vec<registry::attach::Attachment>,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<registry::push::Pushed, PullError> {
    let reference = format!("docker://{}/{}", dest.registry, dest.repository);
    let fail = |cause: FetchError| PullError { reference: reference.clone(), cause };
    let manifest_bytes = store.read_blob(&img.manifest).map_err(|e| fail(e.into()))?;
    let manifest = store.manifest(&img.manifest).map_err(|e| fail(e.into()))?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&manifest_bytes)
        .ok()
        .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".to_string());
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    for desc in std::iter::once(manifest.config()).chain(manifest.layers()) {
        let d: Digest = desc
            .digest()
            .to_string()
            .parse()
            .map_err(|e: crate::digest::InvalidDigest| fail(src_err(e.to_string())))?;
        if !blobs.iter().any(|(b, _)| b == &d) {
            blobs.push((d, desc.size()));
        }
    }
    let mount_from = match img.source.as_deref().map(crate::imgref::ImageArg::parse) {
        Some(Ok(crate::imgref::ImageArg::Source(Source::Registry(r))))
            if r.registry == dest.registry && r.repository != dest.repository =>
        {
            Some(r.repository)
        }
        _ => None,
    };
    let mut target = dest.clone();
    target.digest = None;
    target.tag = tags.first().cloned();
    let routes = routes(store, &target, opts).map_err(fail)?;
    let up = registry::push::Upload {
        blobs,
        manifest: &manifest_bytes,
        media_type,
        tags: tags.to_vec(),
        mount_from,
        attachments,
    };
    registry::push::push(store, &target, &routes, &up, progress).map_err(fail)
}

/// The digest of the manifest `source` names now, reading only what says so (a registry's
/// manifest, a layout's index): `None` for a docker-archive, whose digest is known only once it
/// is imported. Nothing is stored.
pub fn current_digest(store: &Store, source: &Source, opts: &PullOptions) -> Result<Option<Digest>, PullError> {
    let reference = source.to_string();
    let platform = opts.registry.platform.as_ref();
    let inner = || -> Result<Option<Digest>> {
        match source {
            Source::Registry(r) => {
                let routes = routes(store, r, opts)?;
                Ok(Some(registry::probe::current_digest(store, r, &routes, platform)?))
            }
            Source::OciDir { path, reference } => {
                Ok(Some(oci_layout::manifest_digest(&oci_layout::Layout::dir(path)?, reference.as_deref(), platform)?))
            }
            Source::OciArchive { path, reference } => Ok(Some(oci_layout::manifest_digest(
                &oci_layout::Layout::archive(path)?,
                reference.as_deref(),
                platform,
            )?)),
            Source::DockerArchive { .. } => Ok(None),
        }
    };
    inner().map_err(|cause| PullError { reference, cause })
}

fn pull_inner(store: &Store, source: &Source, opts: &PullOptions, progress: &Progress) -> Result<PullResult> {
    // The policy is read before anything else: a broken policy stops every pull.
    let checker = opts.trust.checker()?;
    let fetched = match source {
        Source::Registry(r) => {
            let routes = routes(store, r, opts)?;
            registry::import(store, r, &routes, opts, checker.as_ref(), progress)?
        }
        Source::OciDir { .. } | Source::OciArchive { .. } | Source::DockerArchive { .. } => {
            // A local source carries no signatures: only a policy that needs none lets it in,
            // decided before it is read.
            let verified = match &checker {
                Some(c) => Some(local_decision(c, source).map_err(crate::trust::TrustError::from)?),
                None => None,
            };
            // The name the source gives its image (or, when it gives none, the reference's) is
            // vetted before any blob is stored.
            let fallback = source.local_name()?.expect("local sources have a name");
            let check = |n: Option<&ImageName>| check_name(store, n.unwrap_or(&fallback), source);
            let mut f = match source {
                Source::OciDir { path, reference } => {
                    let layout = oci_layout::Layout::dir(path)?;
                    oci_layout::import(store, layout, reference.as_deref(), opts, progress, &check)?
                }
                Source::OciArchive { path, reference } => {
                    let layout = oci_layout::Layout::archive(path)?;
                    oci_layout::import(store, layout, reference.as_deref(), opts, progress, &check)?
                }
                Source::DockerArchive { path, reference } => {
                    docker_archive::import(store, path, reference.as_ref(), progress, &check)?
                }
                Source::Registry(_) => unreachable!("matched above"),
            };
            f.verified = verified;
            f
        }
    };
    let name = match fetched.name.clone() {
        Some(n) => n,
        None => source.local_name()?.expect("local sources have a name"),
    };
    check_name(store, &name, source)?;
    finish(store, &name, &source.to_string(), fetched, opts, progress)
}

/// Where to fetch `r` from (registries.conf: mirrors, then the primary) and how to reach each:
/// TLS is skipped for an endpoint registries.conf calls insecure (unless `--tls-verify=true`),
/// with `--tls-verify=false`, or — for a primary on the host the reference names — when this
/// reference was pulled with `--tls-verify=false` before (and no `--tls-verify` says otherwise
/// now); certs.d authorities are added per host.
fn routes(store: &Store, r: &crate::imgref::RegistryRef, opts: &PullOptions) -> Result<Vec<registry::Route>> {
    let conf = crate::registries::Registries::load(&opts.registry.conf)?;
    let endpoints = conf.plan(r)?;
    let remembered = store.source_transport(&Source::Registry(r.clone()).to_string());
    let mut out = Vec::new();
    for endpoint in endpoints {
        // The remembered choice was made for the host the reference names: it does not follow
        // a relocation to another host, and never reaches a mirror.
        let same_host = !endpoint.mirror && endpoint.reference.registry == r.registry;
        let flag = match opts.registry.tls_verify {
            Some(v) => !v,
            None => same_host && remembered != Transport::Verified,
        };
        // An explicit --tls-verify=true wins over registries.conf's insecure, as in podman.
        let insecure = match opts.registry.tls_verify {
            Some(true) => false,
            _ => endpoint.insecure || flag,
        };
        let roots =
            crate::registries::certs::roots_for(&endpoint.reference.registry, opts.registry.cert_dir.as_deref())?;
        let conn = registry::Connection {
            tls_verify: !insecure,
            // Straight to plain HTTP when that is what worked last time (no TLS attempt).
            prefer_http: insecure && same_host && remembered == Transport::PlainHttp,
            authfile: opts.registry.authfile.clone(),
            max_blob: opts.extract.limits.max_layer_bytes,
            roots,
            credential_helpers: conf.credential_helpers.as_ref().map(|h| (h.value.clone(), h.file.clone())),
            // registries.conf is the documented way: it wins over the remembered choice.
            remember: flag && !endpoint.insecure && same_host,
        };
        out.push((endpoint, conn));
    }
    Ok(out)
}

/// The policy scope of a source: its docker reference, or the path of a local one.
pub fn scope_of(source: &Source) -> crate::trust::ImageScope {
    use crate::trust::ImageScope;
    // Path scopes name symlink-free paths (containers-policy.json(5)).
    let canon = |p: &std::path::PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
    match source {
        Source::Registry(r) => ImageScope::Docker(r.clone()),
        Source::OciDir { path, reference } => {
            ImageScope::Path { transport: "oci", path: canon(path), reference: reference.clone() }
        }
        Source::OciArchive { path, reference } => {
            ImageScope::Path { transport: "oci-archive", path: canon(path), reference: reference.clone() }
        }
        Source::DockerArchive { path, reference } => ImageScope::Path {
            transport: "docker-archive",
            path: canon(path),
            reference: reference.as_ref().map(ToString::to_string),
        },
    }
}

/// The policy's decision for a local source (directory or archive), which carries no signatures.
fn local_decision(c: &crate::trust::Checker, source: &Source) -> Result<crate::trust::Verified, crate::trust::Refusal> {
    let scope = scope_of(source);
    crate::trust::evaluate(c, &crate::trust::Subject { scope: &scope, docker: None, manifest: None }, &[])
}

/// What the policy would decide about `source` and on which signatures (`hoist trust show`):
/// a registry image's manifest digest and signatures are fetched; nothing is stored.
pub fn trust_report(
    store: &Store,
    source: &Source,
    opts: &PullOptions,
    c: &crate::trust::Checker,
) -> Result<registry::TrustReport, PullError> {
    let reference = source.to_string();
    let report = match source {
        Source::Registry(r) => routes(store, r, opts).and_then(|routes| registry::trust_report(store, r, &routes, c)),
        _ => Ok(registry::TrustReport {
            manifest: None,
            lookup: None,
            signatures: Vec::new(),
            decision: local_decision(c, source),
        }),
    };
    report.map_err(|cause| PullError { reference, cause })
}

/// Names are not trusted across sources: a local source (directory or archive) may not re-point a
/// stored name recorded as coming from another source (a registry, another file, or another tool).
/// A registry pull may: the registry is the authority for its own names (which carry its host).
/// A local source never names an image after a registry in the first place: the names it gives
/// keep no registry host but `localhost` ([`crate::imgref::source_named`]).
fn check_name(store: &Store, name: &ImageName, source: &Source) -> Result<()> {
    if matches!(source, Source::Registry(_)) {
        return Ok(());
    }
    let me = source.to_string();
    match store.lookup(name)? {
        Some(p) if p.source.as_deref() != Some(me.as_str()) => Err(src_err(format!(
            "name {name} belongs to {}; not re-pointed",
            p.source.as_deref().unwrap_or("an image with no recorded source")
        ))),
        _ => Ok(()),
    }
}

impl Fetched {
    /// A manifest (and everything it names) now in the store.
    pub(crate) fn stored(manifest: Digest, doc: &ImageManifest, blobs_fetched: usize, transport: Transport) -> Self {
        let media_type = doc.media_type().clone().unwrap_or(MediaType::ImageManifest);
        Fetched {
            manifest,
            media_type,
            blobs_fetched,
            name: None,
            transport,
            verified: None,
            fetched_from: None,
            needs_layer_blobs: false,
            layers_extracted: 0,
        }
    }
}

/// Whether layer `diff_id` is extracted from `blob` as `opts` would extract it: a pull then needs
/// no copy of the blob (it may have been dropped, see [`drop_layer_blobs`]).
pub(crate) fn layer_extracted(store: &Store, blob: &Digest, diff_id: &Digest, opts: &layers::ExtractOptions) -> bool {
    matches!(layers::load_record(store.layout(), diff_id),
        Ok(Some(rec)) if rec.blob.as_ref() == Some(blob) && !rec.decided_otherwise(opts))
}

/// Deletes the compressed blobs of `manifest`'s layers that are extracted from them (the layer
/// tree's diff_id was verified against the image config when it was made): the store then holds
/// one extracted copy of each layer plus the documents (manifest, config, signatures). A re-pull
/// needs no blob of an extracted layer (the registry puller checks the config's diff_ids first),
/// an update fetches only the layers it lacks, and rollback and checkouts never need the blobs.
/// A later pull that decides otherwise about device nodes fetches the blob again.
///
/// A blob that a stored image with no source needs (one `hoist images build` made) is kept:
/// nothing could fetch it again for that image's push, export or next build.
fn drop_layer_blobs(store: &Store, manifest: &ImageManifest) -> Result<()> {
    let mut pinned = std::collections::BTreeSet::new();
    for img in store.images()?.into_iter().filter(|i| i.source.is_none()) {
        for l in store.manifest(&img.manifest)?.layers() {
            pinned.insert(l.digest().to_string());
        }
    }
    for (desc, diff_id) in manifest.layers().iter().zip(store.diff_ids(manifest)?) {
        if pinned.contains(&desc.digest().to_string()) {
            continue;
        }
        let Ok(blob) = desc.digest().to_string().parse::<Digest>() else { continue };
        if let Some(rec) = layers::load_record(store.layout(), &diff_id)?
            && rec.blob.as_ref() == Some(&blob)
            && store.has_blob(&blob)
        {
            store.remove_blob(&blob)?;
        }
    }
    Ok(())
}

/// What a source-specific import left in the store.
pub(crate) struct Fetched {
    pub manifest: Digest,
    pub media_type: MediaType,
    pub blobs_fetched: usize,
    /// A name the source itself carries (a docker-archive's RepoTags, a layout's
    /// `org.opencontainers.image.ref.name` when it is a full reference), as stored
    /// ([`crate::imgref::source_named`]).
    pub name: Option<ImageName>,
    /// How it was reached (remembered for later pulls of the same source).
    pub transport: Transport,
    /// What the policy accepted.
    pub verified: Option<crate::trust::Verified>,
    /// Where a registry image's bytes came from (`io.hoist.fetched-from`).
    pub fetched_from: Option<String>,
    /// Layers the import extracted already (a registry pull extracts while it downloads).
    pub layers_extracted: usize,
    /// The source rebuilds its manifest from the layer blobs at every pull (docker-archive):
    /// they are kept, so a re-pull finds the image unchanged.
    pub needs_layer_blobs: bool,
}

fn finish(
    store: &Store,
    name: &ImageName,
    source: &str,
    f: Fetched,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<PullResult> {
    let manifest = store.manifest(&f.manifest)?;
    let layers_extracted = f.layers_extracted
        + layers::extract_image(store, &f.manifest, &manifest, &opts.extract, layers::Existing::Redecide, progress)?;
    if !opts.keep_blobs && !f.needs_layer_blobs {
        drop_layer_blobs(store, &manifest)?;
    }
    let previous = store.lookup(name)?;
    let ref_changed = previous
        .as_ref()
        .is_none_or(|p| p.manifest != f.manifest || p.source.as_deref() != Some(source) || p.transport != f.transport);
    // A new decision of the policy about the same image, or another endpoint, is recorded too
    // (not a change of the name).
    if ref_changed || previous.as_ref().is_some_and(|p| p.verified != f.verified || p.fetched_from != f.fetched_from) {
        let from = f.fetched_from.as_deref();
        store.set_ref(name, &f.manifest, f.media_type, source, f.transport, f.verified.as_ref(), from)?;
    }
    let mut warnings = Vec::new();
    for diff_id in store.diff_ids(&manifest)? {
        if let Some(rec) = layers::load_record(store.layout(), &diff_id)? {
            if !rec.skipped_devices.is_empty() {
                warnings.push(format!(
                    "layer {}: skipped {} device node(s) (e.g. /{}); use --allow-devices to create them",
                    diff_id.short(),
                    rec.skipped_devices.len(),
                    rec.skipped_devices[0]
                ));
            }
            warnings.extend(rec.warnings.iter().map(|w| format!("layer {}: {w}", diff_id.short())));
        }
    }
    Ok(PullResult {
        name: name.clone(),
        manifest: f.manifest,
        blobs_fetched: f.blobs_fetched,
        layers_extracted,
        ref_changed,
        warnings,
        verified: f.verified,
    })
}
