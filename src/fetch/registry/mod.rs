//! `docker://REGISTRY/REPOSITORY[:TAG|@DIGEST]`: pulling from an OCI distribution registry.
//!
//! Built on `oci-client`, used for its HTTP, token and digest plumbing only:
//! 1. the manifest is fetched raw (Accept: OCI and Docker v2 manifests and indexes; schema 1 is
//!    refused) and its bytes are checked against the `Docker-Content-Digest` header and the digest
//!    in the reference; an index or manifest list is resolved to this machine's platform (or
//!    `--platform`, variants included: [`super::platform`]) and the chosen manifest is checked
//!    against the index entry's digest and size;
//! 2. the config and every layer not already extracted are downloaded, at most [`PARALLEL`] at
//!    a time, each cut off at its descriptor's size: the config (and, with `--keep-blobs`, each
//!    layer) into `<root>/tmp` ([`Store::blob_writer`]), checked against its digest before the
//!    rename into `store/blobs`; by default each layer straight into its extraction ([`stream`]),
//!    which keeps it only when the bytes match. A corrupt or oversized blob leaves nothing
//!    behind; transient failures (connection, timeout, a body cut off, HTTP 5xx and 429) are
//!    retried [`ATTEMPTS`] times with backoff;
//! 3. the manifest is written last. Extraction and diff_id checks are shared with every other
//!    source ([`super::finish`]).
//!
//! Where to fetch from is decided before (crate::registries: mirrors first, then the primary): each
//! endpoint is tried in turn until one serves the top-level manifest; a mirror that cannot be reached,
//! lacks the image or refuses it is reported on the progress output and the next one is tried. From
//! then on everything (signature attachments, blobs) comes from that endpoint, while the signature
//! policy is evaluated against the logical reference — the name the user asked for.
//!
//! Credentials come from auth files ([`auth`]) for the host actually contacted; TLS is verified
//! (with the host's certs.d authorities added) unless the endpoint is insecure, which tries HTTPS
//! without certificate checks and falls back to plain HTTP.

pub mod attach;
pub mod auth;
pub(crate) mod probe;
pub(crate) use probe::trust_report;
pub(crate) mod push;
pub(crate) mod refetch;
mod signatures;
mod stream;

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::platform::{self, Platform};
use super::{FetchError, Fetched, Result};
use crate::digest::Digest;
use crate::fsutil::human_size;
use crate::imgref::RegistryRef;
use crate::progress::{Progress, Task};
use crate::registries::Endpoint;
use crate::store::{BlobWriter, Store, StoreError, Transport};
use crate::trust::{self, Checker, ImageScope, Subject, TrustError, Verified};

/// Blobs downloaded at the same time.
pub const PARALLEL: usize = 4;
/// Tries per request before a transient failure is reported.
pub const ATTEMPTS: u32 = 3;
/// Manifests, indexes and configs larger than this are refused (as containers/image does).
pub const MAX_DOCUMENT: u64 = 4 << 20;

const ACCEPT: &[&str] = &[
    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
    oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
    oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// How to talk to one endpoint.
#[derive(Debug, Clone)]
pub struct Connection {
    pub tls_verify: bool,
    /// Try plain HTTP first (only with `tls_verify` false).
    pub prefer_http: bool,
    pub authfile: Option<PathBuf>,
    /// Largest layer blob accepted.
    pub max_blob: u64,
    /// Extra certificate authorities for this host (certs.d), PEM.
    pub roots: Vec<Vec<u8>>,
    /// registries.conf `credential-helpers` and the file that set it.
    pub credential_helpers: Option<(Vec<String>, PathBuf)>,
    /// The insecurity is the user's `--tls-verify=false` (given now or remembered), to be
    /// remembered for this reference; false when registries.conf says `insecure = true`.
    pub remember: bool,
}

/// An endpoint and how to reach it.
pub type Route = (Endpoint, Connection);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("not found in the registry: {what}")]
    NotFound { what: String },
    #[error("access to {image} denied: {hint}")]
    Unauthorized { image: String, hint: String },
    #[error(
        "TLS connection to {registry} failed: {cause} (a private CA goes in /etc/containers/certs.d/{registry}/ca.crt; a plain-HTTP registry needs insecure = true in registries.conf, or --tls-verify=false)"
    )]
    Tls { registry: String, cause: String },
    #[error("cannot reach registry {registry}: {cause}")]
    Unreachable { registry: String, cause: String },
    #[error("registry {registry}: {cause}")]
    Protocol { registry: String, cause: String },
    /// `what` names the blob (`layer sha256:…`).
    #[error("{what}: the registry sent content that hashes to {actual}; nothing was stored")]
    Corrupt { what: String, actual: String },
    #[error("{what}: larger than {limit} bytes; refused")]
    TooLarge { what: String, limit: u64 },
    #[error("image index {index} has no manifest for {want} (it has: {offered})")]
    NoPlatform { index: String, want: Platform, offered: String },
    #[error("layer {digest}: {reason}")]
    UnsupportedLayer { digest: String, reason: String },
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// The primary failed after every mirror did.
    #[error("{primary} (mirrors tried first: {mirrors})")]
    Sources { primary: Box<RegistryError>, mirrors: String },
}

/// The runtime of one pull (pulls happen before any command's async part: see fetch::resolve).
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FetchError::Source(format!("cannot start the async runtime: {e}")))
}

/// What `hoist trust show` reports about an image.
#[derive(Debug)]
pub struct TrustReport {
    /// The top-level manifest digest (None for local sources, which are not read).
    pub manifest: Option<Digest>,
    /// Where signatures were looked for (registry images).
    pub lookup: Option<trust::sources::Lookup>,
    /// Origins of the signatures found.
    pub signatures: Vec<String>,
    pub decision: Result<Verified, trust::Refusal>,
}

/// Pulls `logical` into the store from the first of `routes` that serves it. `platform`
/// overrides this machine's.
pub(crate) fn import(
    store: &Store,
    logical: &RegistryRef,
    routes: &[Route],
    opts: &super::PullOptions,
    checker: Option<&Checker>,
    progress: &Progress,
) -> Result<Fetched> {
    let platform = opts.registry.platform.as_ref();
    // Pulls happen before any command's async part (see fetch::resolve), never inside it.
    let rt = runtime()?;
    let (mut puller, bytes, digest) = rt.block_on(first_manifest(store, logical, routes, progress))?;
    puller.checker = checker;
    puller.extract = Some(opts.extract);
    puller.stream_layers = !opts.keep_blobs;
    rt.block_on(puller.pull(bytes, digest, platform.cloned().unwrap_or_else(Platform::host)))
}

/// The first endpoint that serves the top-level manifest, with its bytes and digest. A mirror's
/// failure is reported and the next endpoint tried; the primary's (the last) is the error, with
/// the mirrors' failures appended.
async fn first_manifest<'a>(
    store: &'a Store,
    logical: &'a RegistryRef,
    routes: &'a [Route],
    progress: &'a Progress,
) -> Result<(Puller<'a>, Vec<u8>, String)> {
    let mut skipped: Vec<String> = Vec::new();
    for (endpoint, conn) in routes {
        let mut puller = Puller::new(store, logical, endpoint, conn, progress)?;
        match puller.top_manifest().await {
            Ok((bytes, digest)) => {
                if endpoint.mirror {
                    progress.line(&format!("Using mirror {}", puller.image()));
                } else if !skipped.is_empty() {
                    progress.line(&format!("Using the primary {} (no mirror served it)", puller.image()));
                }
                return Ok((puller, bytes, digest));
            }
            Err(e) if endpoint.mirror => {
                progress.line(&format!("mirror {}: {e}; trying the next source", puller.image()));
                skipped.push(format!("mirror {}: {e}", puller.image()));
            }
            Err(e) if skipped.is_empty() => return Err(e.into()),
            Err(e) => {
                return Err(RegistryError::Sources { primary: Box::new(e), mirrors: skipped.join("; ") }.into());
            }
        }
    }
    unreachable!("a plan always ends with the primary")
}

struct Puller<'a> {
    store: &'a Store,
    /// The name asked for: the signature policy's scope and identity.
    logical: &'a RegistryRef,
    /// Where the bytes come from (a mirror, a relocated primary, or the logical reference itself).
    endpoint: &'a Endpoint,
    r: &'a RegistryRef,
    conn: &'a Connection,
    progress: &'a Progress,
    reference: Reference,
    auth: RegistryAuth,
    creds: Option<auth::Credentials>,
    client: Client,
    /// Plain HTTP after an insecure fallback.
    http: bool,
    /// The signature policy (None: `--insecure-policy`).
    checker: Option<&'a Checker>,
    /// How this pull extracts: a layer already extracted as it decides needs no blob.
    extract: Option<crate::layers::ExtractOptions>,
    /// Extract layers straight from the responses, never storing their blobs ([`stream`]).
    stream_layers: bool,
}

fn client(https: bool, tls_verify: bool, conn: &Connection) -> Client {
    use oci_client::client::{Certificate, CertificateEncoding};
    Client::new(ClientConfig {
        protocol: if https { ClientProtocol::Https } else { ClientProtocol::Http },
        accept_invalid_certificates: !tls_verify,
        extra_root_certificates: conn
            .roots
            .iter()
            .map(|pem| Certificate { encoding: CertificateEncoding::Pem, data: pem.clone() })
            .collect(),
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(Duration::from_secs(60)),
        user_agent: concat!("hoist/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    })
}

impl<'a> Puller<'a> {
    fn new(
        store: &'a Store,
        logical: &'a RegistryRef,
        endpoint: &'a Endpoint,
        conn: &'a Connection,
        progress: &'a Progress,
    ) -> Result<Self> {
        let r = &endpoint.reference;
        let reference = match (&r.digest, &r.tag) {
            (Some(d), _) => Reference::with_digest(r.registry.clone(), r.repository.clone(), d.to_string()),
            (None, Some(t)) => Reference::with_tag(r.registry.clone(), r.repository.clone(), t.clone()),
            (None, None) => unreachable!("a registry reference has a tag or a digest"),
        };
        let helpers = conn.credential_helpers.as_ref().map(|(h, f)| (h.as_slice(), f.as_path()));
        let creds =
            auth::lookup(&r.registry, &r.repository, conn.authfile.as_deref(), helpers).map_err(RegistryError::from)?;
        let auth = match &creds {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        Ok(Puller {
            store,
            logical,
            endpoint,
            r,
            conn,
            progress,
            reference,
            auth,
            creds,
            client: client(!conn.prefer_http, conn.tls_verify, conn),
            http: conn.prefer_http,
            checker: None,
            extract: None,
            stream_layers: false,
        })
    }

    /// The top-level manifest's bytes and digest, with the insecure fallbacks.
    async fn top_manifest(&mut self) -> Result<(Vec<u8>, String), RegistryError> {
        match self.manifest(&self.reference.clone()).await {
            // Insecure: HTTPS without verification first, plain HTTP when the server speaks no TLS…
            Err(RegistryError::Tls { .. }) if !self.conn.tls_verify && !self.http => {
                self.client = client(false, false, self.conn);
                self.http = true;
                self.manifest(&self.reference.clone()).await
            }
            // …or HTTP first when that worked last time, HTTPS when it no longer does.
            Err(RegistryError::Unreachable { .. } | RegistryError::Protocol { .. }) if self.conn.prefer_http => {
                self.client = client(true, false, self.conn);
                self.http = false;
                self.manifest(&self.reference.clone()).await
            }
            other => other,
        }
    }

    async fn pull(self, bytes: Vec<u8>, digest: String, want: Platform) -> Result<Fetched> {
        // The bytes match their digest (checked by `manifest`); the signatures come next, and
        // only then is the manifest parsed.
        let top_digest: Digest = digest.parse().map_err(|_| self.protocol("bad manifest digest".into()))?;
        let verified = match self.checker {
            Some(c) => Some(self.decide(c, &top_digest).await?.2.map_err(TrustError::from)?),
            None => None,
        };
        let top: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| self.protocol(format!("manifest: {e}")))?;
        if top.get("schemaVersion").and_then(|v| v.as_u64()) != Some(2) {
            return Err(self
                .protocol("only schema 2 manifests are supported (Docker schema 1 is obsolete)".into())
                .into());
        }
        let (manifest_digest, manifest_bytes) = if top.get("manifests").is_some() {
            let index: ImageIndex =
                serde_json::from_value(top).map_err(|e| self.protocol(format!("image index {digest}: {e}")))?;
            let desc = platform::select(&index, &want).map_err(|offered| RegistryError::NoPlatform {
                index: digest.clone(),
                want: want.clone(),
                offered: offered.join(", "),
            })?;
            let child = self.reference.clone_with_digest(desc.digest().to_string());
            let (bytes, d) = self.manifest(&child).await?;
            if bytes.len() as u64 != desc.size() {
                return Err(self
                    .protocol(format!("manifest {d}: {} bytes, the index says {}", bytes.len(), desc.size()))
                    .into());
            }
            (d, bytes)
        } else {
            (digest, bytes)
        };
        let manifest_digest: Digest =
            manifest_digest.parse().map_err(|_| self.protocol("bad manifest digest".into()))?;
        let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| self.protocol(format!("manifest {manifest_digest}: {e}")))?;

        let mut wanted: Vec<(&str, &Descriptor)> = vec![("config", manifest.config())];
        for l in manifest.layers() {
            check_layer(l, self.conn.max_blob)?;
            wanted.push(("layer", l));
        }
        if manifest.config().size() > MAX_DOCUMENT {
            let what = format!("config {}", manifest.config().digest());
            return Err(RegistryError::TooLarge { what, limit: MAX_DOCUMENT }.into());
        }
        let mut missing: Vec<(&str, Digest, u64)> = Vec::new();
        for (what, d) in &wanted {
            let digest: Digest = d
                .digest()
                .to_string()
                .parse()
                .map_err(|_| self.protocol(format!("{what} digest {} is not sha256", d.digest())))?;
            missing.push((what, digest, d.size()));
        }
        // The config first: its diff_ids say which layers are extracted already, and their
        // blobs (dropped after extraction, see `fetch`) need not be fetched again.
        let (_, config_digest, config_size) = missing.remove(0);
        let mut fetched = 0;
        if !self.store.has_blob(&config_digest) {
            self.blob("config", &config_digest, config_size).await?;
            fetched += 1;
        }
        let diff_ids = self.store.diff_ids(&manifest).map_err(|e| self.protocol(e.to_string()))?;
        let mut seen = Vec::new();
        missing.retain(|(_, d, _)| {
            let layer = manifest.layers().iter().position(|l| l.digest().to_string() == d.to_string());
            let extracted = layer.and_then(|i| diff_ids.get(i)).is_some_and(|id| self.extracted(d, id));
            let keep = !self.store.has_blob(d) && !extracted && !seen.contains(d);
            seen.push(d.clone());
            keep
        });
        fetched += missing.len();
        let this = &self;
        let layer_of = |d: &Digest| {
            let i = manifest.layers().iter().position(|l| l.digest().to_string() == d.to_string())?;
            Some((diff_ids.get(i)?.clone(), manifest.layers()[i].media_type().to_string()))
        };
        // One extraction per diff_id (two blobs of one layer would share its temporary name).
        let mut extracting = std::collections::HashSet::new();
        let extracted: std::sync::Mutex<Vec<Digest>> = Default::default();
        let extracted = &extracted;
        // Streamed layers are extracted while they download: as many at once as there are cores
        // (more would only make the extractions share them).
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let width = if self.stream_layers { PARALLEL.min(cores.max(2)) } else { PARALLEL };
        let downloaded = futures_util::stream::iter(missing)
            .map(|(what, d, size)| {
                let layer = layer_of(&d).filter(|(id, _)| extracting.insert(id.clone()));
                async move {
                    let made = match (layer, this.extract) {
                        (Some((diff_id, media_type)), Some(opts)) if this.stream_layers => {
                            let id = diff_id.clone();
                            this.layer_streamed(&d, size, diff_id, media_type, opts).await?.then_some(id)
                        }
                        (layer, opts) => {
                            this.blob(what, &d, size).await?;
                            match (layer, opts) {
                                // Extraction overlaps the other downloads: a layer is extracted
                                // (on a blocking thread) as soon as its blob is stored.
                                (Some((diff_id, media_type)), Some(opts)) => {
                                    this.layer_from_store(&d, diff_id, media_type, opts).await?
                                }
                                _ => None,
                            }
                        }
                    };
                    if let Some(id) = made {
                        extracted.lock().unwrap_or_else(|e| e.into_inner()).push(id);
                    }
                    Ok::<(), FetchError>(())
                }
            })
            .buffer_unordered(width)
            // Every download and extraction runs to its end, also after a failure: an extraction
            // on its blocking thread cannot be cancelled, and what it made is removed below.
            .collect::<Vec<Result<()>>>()
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>();
        let made = std::mem::take(&mut *extracted.lock().unwrap_or_else(|e| e.into_inner()));
        if let Err(e) = downloaded {
            // Nothing of a failed pull stays: the layers it extracted are new, nothing uses them.
            crate::layers::discard(self.store.layout(), &made);
            return Err(e);
        }
        if !self.store.has_blob(&manifest_digest) {
            self.store.put_bytes(&format!("manifest {manifest_digest}"), &manifest_bytes, Some(&manifest_digest))?;
            fetched += 1;
        }
        let transport = match (self.http, self.conn.tls_verify) {
            _ if !self.conn.remember => Transport::Verified,
            (true, _) => Transport::PlainHttp,
            (false, false) => Transport::Insecure,
            (false, true) => Transport::Verified,
        };
        let mut f = Fetched::stored(manifest_digest, &manifest, fetched, transport);
        f.layers_extracted = made.len();
        f.verified = verified;
        f.fetched_from = Some(self.fetched_from());
        Ok(f)
    }

    /// Decides by the policy whether this image may be stored, fetching its signatures when a
    /// requirement looks at them: where they were looked for, what was found, the decision.
    async fn decide(
        &self,
        c: &Checker,
        manifest: &Digest,
    ) -> Result<(trust::sources::Lookup, Vec<trust::Signature>, Result<Verified, trust::Refusal>), TrustError> {
        // The policy speaks about the name asked for, whichever endpoint served it.
        let scope = ImageScope::Docker(self.logical.clone());
        let lookup = c.sources()?.lookup(self.logical);
        let signatures =
            if trust::wants_signatures(c, &scope) { self.signatures(manifest, &lookup).await? } else { Vec::new() };
        let subject = Subject { scope: &scope, docker: Some(self.logical), manifest: Some(manifest) };
        let decision = trust::evaluate(c, &subject, &signatures);
        Ok((lookup, signatures, decision))
    }

    /// Extracts layer `blob`, stored already, as `diff_id` on a blocking thread; the diff_id
    /// when a layer was made.
    async fn layer_from_store(
        &self,
        blob: &Digest,
        diff_id: Digest,
        media_type: String,
        opts: crate::layers::ExtractOptions,
    ) -> Result<Option<Digest>> {
        let layout = self.store.layout().clone();
        let task = self.progress.task(&format!("Extracting layer {}", blob.short()), 0);
        let (b, id) = (blob.clone(), diff_id.clone());
        let done = tokio::task::spawn_blocking(move || {
            crate::layers::ensure_extracted(&layout, &b, Some(&media_type), &id, &opts)
        })
        .await;
        task.finish();
        match done {
            Ok(r) => Ok(r?.1.then_some(diff_id)),
            Err(e) => Err(FetchError::from(self.protocol(format!("extraction: {e}")))),
        }
    }

    /// Whether layer `diff_id` is extracted from `blob` as this pull would extract it (then the
    /// blob is not needed).
    fn extracted(&self, blob: &Digest, diff_id: &Digest) -> bool {
        self.extract.as_ref().is_some_and(|opts| super::layer_extracted(self.store, blob, diff_id, opts))
    }

    /// A manifest's bytes and digest (verified against the header and the reference's digest).
    async fn manifest(&self, reference: &Reference) -> Result<(Vec<u8>, String), RegistryError> {
        let what = || match reference.digest() {
            Some(d) => format!("manifest {d} of {}", self.image()),
            None => format!("tag {} of {}", reference.tag().unwrap_or("latest"), self.image()),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.client.pull_manifest_raw(reference, &self.auth, ACCEPT).await {
                Ok((bytes, digest)) => {
                    if bytes.len() as u64 > MAX_DOCUMENT {
                        return Err(RegistryError::TooLarge { what: what(), limit: MAX_DOCUMENT });
                    }
                    return Ok((bytes.to_vec(), digest));
                }
                Err(e) if attempt < ATTEMPTS && is_transient(&e) => self.backoff(attempt, &what(), &e).await,
                Err(e) => return Err(self.classify(e, &what())),
            }
        }
    }

    /// Downloads one blob into the store.
    async fn blob(&self, what: &str, digest: &Digest, size: u64) -> Result<()> {
        let label = format!("{what} {digest}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let task = self.progress.task(&format!("Fetching {what} {} ({})", digest.short(), human_size(size)), size);
            let mut sink =
                Sink { writer: Some(self.store.blob_writer()?), limit: size, written: 0, task, too_large: false };
            let res = self.client.pull_blob(&self.reference, digest.to_string().as_str(), &mut sink).await;
            let Sink { writer, task, too_large, .. } = sink;
            task.finish();
            match res {
                Ok(()) => {
                    let writer = writer.expect("writer is kept until commit");
                    return match writer.commit(&label, Some(digest), Some(size)) {
                        Err(StoreError::DigestMismatch { actual, .. }) => {
                            Err(RegistryError::Corrupt { what: label, actual: actual.to_string() }.into())
                        }
                        other => other.map(|_| ()).map_err(Into::into),
                    };
                }
                Err(_) if too_large => {
                    return Err(RegistryError::TooLarge { what: label, limit: size }.into());
                }
                Err(e) if attempt < ATTEMPTS && is_transient(&e) => self.backoff(attempt, &label, &e).await,
                Err(e) => return Err(self.classify(e, &label).into()),
            }
        }
    }

    async fn backoff(&self, attempt: u32, what: &str, e: &OciDistributionError) {
        let delay = Duration::from_millis(250 << (attempt - 1));
        self.progress.line(&format!("{what}: {}; retrying in {} ms", innermost(e), delay.as_millis()));
        tokio::time::sleep(delay).await;
    }

    fn image(&self) -> String {
        format!("{}/{}", self.r.registry, self.r.repository)
    }

    /// `https://HOST/REPO`, `https+insecure://…`, `http://…`, with ` (mirror)` for a mirror.
    fn fetched_from(&self) -> String {
        let scheme = match (self.http, self.conn.tls_verify) {
            (true, _) => "http",
            (false, false) => "https+insecure",
            (false, true) => "https",
        };
        format!("{scheme}://{}{}", self.image(), if self.endpoint.mirror { " (mirror)" } else { "" })
    }

    fn protocol(&self, cause: String) -> RegistryError {
        RegistryError::Protocol { registry: self.r.registry.clone(), cause }
    }

    fn classify(&self, e: OciDistributionError, what: &str) -> RegistryError {
        let registry = self.r.registry.clone();
        let denied = |detail: Option<String>| {
            let hint = match &self.creds {
                Some(c) => {
                    format!("the registry refused the credentials of {:?} from {}", c.username, c.origin())
                }
                None => format!(
                    "no credentials for {registry} found (looked in {}); add some with `podman login` or point --authfile at an auth.json",
                    auth::search_path(self.conn.authfile.as_deref())
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let hint = match detail {
                Some(d) => format!("{hint} ({d})"),
                None => hint,
            };
            RegistryError::Unauthorized { image: self.image(), hint }
        };
        match e {
            OciDistributionError::UnauthorizedError { .. } => denied(None),
            OciDistributionError::AuthenticationFailure(reason) => denied(Some(one_line(&reason))),
            OciDistributionError::ImageManifestNotFoundError(_) => RegistryError::NotFound { what: what.to_string() },
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                // A registry's words, on one line and capped (a hostile one could send anything).
                let message =
                    one_line(&envelope.errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "));
                if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    RegistryError::NotFound { what: what.to_string() }
                } else if codes.iter().any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied)) {
                    denied(Some(message))
                } else {
                    RegistryError::Protocol { registry, cause: format!("{what}: {message}") }
                }
            }
            OciDistributionError::ServerError { code: 404, .. } => RegistryError::NotFound { what: what.to_string() },
            OciDistributionError::ServerError { code: 401 | 403, .. } => denied(None),
            OciDistributionError::ServerError { code, message, .. } => {
                RegistryError::Protocol { registry, cause: format!("{what}: HTTP {code} {}", one_line(&message)) }
            }
            OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
                actual, ..
            }) => RegistryError::Corrupt { what: what.to_string(), actual },
            OciDistributionError::RequestError(ref re) => {
                let cause = innermost(&e);
                if looks_like_tls(&e) {
                    let cause = if cause.contains("InvalidContentType") {
                        "the server does not speak TLS (plain HTTP?)".to_string()
                    } else {
                        cause
                    };
                    RegistryError::Tls { registry, cause }
                } else if re.is_connect() || re.is_timeout() {
                    RegistryError::Unreachable { registry, cause }
                } else {
                    RegistryError::Protocol { registry, cause: format!("{what}: {cause}") }
                }
            }
            other => RegistryError::Protocol { registry, cause: format!("{what}: {}", one_line(&other.to_string())) },
        }
    }
}

/// Refuses layers hoist cannot or must not fetch, before any byte is downloaded.
fn check_layer(l: &Descriptor, max_blob: u64) -> Result<(), RegistryError> {
    let mt = l.media_type().to_string();
    let digest = l.digest().to_string();
    let unsupported = |reason: &str| RegistryError::UnsupportedLayer { digest: digest.clone(), reason: reason.into() };
    if mt.contains("encrypted") {
        return Err(unsupported("encrypted layers are not supported"));
    }
    if mt.contains("nondistributable") || mt.contains("foreign") || l.urls().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(unsupported("non-distributable (foreign) layers are not fetched from external URLs"));
    }
    if !(mt.contains("tar") || mt.contains("rootfs.diff")) {
        return Err(unsupported(&format!("media type {mt} is not a filesystem layer")));
    }
    if l.size() > max_blob {
        return Err(RegistryError::TooLarge { what: format!("layer {digest} ({} bytes)", l.size()), limit: max_blob });
    }
    Ok(())
}

/// Connection problems, timeouts, 5xx and 429 are worth another try; answers are not.
fn is_transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(re) => {
            // A body cut off mid-way is a decode error to reqwest.
            !looks_like_tls(e)
                && (re.is_connect() || re.is_timeout() || re.is_body() || re.is_decode() || re.is_request())
        }
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().any(|e| matches!(e.code, OciErrorCode::Toomanyrequests))
        }
        OciDistributionError::IoError(io) => io.kind() != std::io::ErrorKind::FileTooLarge,
        _ => false,
    }
}

fn causes(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out
}

fn looks_like_tls(e: &OciDistributionError) -> bool {
    let chain = causes(e).join(" ").to_ascii_lowercase();
    ["certificate", "tls", "handshake", "corrupt message", "invalidcontenttype", "unknownissuer", "peer misbehaved"]
        .iter()
        .any(|w| chain.contains(w))
}

/// The most specific cause of an error, on one line ("Connection refused (os error 111)").
fn innermost(e: &OciDistributionError) -> String {
    one_line(causes(e).last().map(String::as_str).unwrap_or_default())
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 200 { format!("{}…", s.chars().take(200).collect::<String>()) } else { s }
}

/// Where a blob's bytes go: the store's temporary file, cut off once the descriptor's size is
/// exceeded (a registry cannot make hoist write more than the manifest announced).
struct Sink {
    writer: Option<BlobWriter>,
    limit: u64,
    written: u64,
    task: Task,
    too_large: bool,
}

impl tokio::io::AsyncWrite for Sink {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        use std::io::Write;
        if self.written + buf.len() as u64 > self.limit {
            self.too_large = true;
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "blob larger than announced",
            )));
        }
        let w = self.writer.as_mut().expect("writer present while writing");
        let res = w.write_all(buf).map(|()| buf.len());
        if let Ok(n) = res {
            self.written += n as u64;
            self.task.inc(n as u64);
        }
        Poll::Ready(res)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(mt: &str, size: u64) -> Descriptor {
        serde_json::from_value(serde_json::json!({
            "mediaType": mt, "size": size,
            "digest": "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        }))
        .unwrap()
    }

    #[test]
    fn refuses_layers_before_download() {
        assert!(check_layer(&layer("application/vnd.oci.image.layer.v1.tar+gzip", 10), 100).is_ok());
        assert!(check_layer(&layer("application/vnd.docker.image.rootfs.diff.tar.gzip", 10), 100).is_ok());
        for (mt, size, want) in [
            ("application/vnd.oci.image.layer.v1.tar+gzip+encrypted", 10, "encrypted"),
            ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", 10, "non-distributable"),
            ("application/vnd.oci.image.layer.nondistributable.v1.tar", 10, "non-distributable"),
            ("application/vnd.wasm.content.layer.v1+wasm", 10, "not a filesystem layer"),
            ("application/vnd.oci.image.layer.v1.tar", 101, "larger than 100 bytes"),
        ] {
            let e = check_layer(&layer(mt, size), 100).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("sha256:e3b0"), "{mt}: {e}");
        }
    }

    #[test]
    fn sink_cuts_off_at_the_announced_size() {
        use tokio::io::AsyncWriteExt;
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::layout::Layout::new(d.path().join("root"))).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut sink = Sink {
            writer: Some(store.blob_writer().unwrap()),
            limit: 4,
            written: 0,
            task: Progress::silent().task("x", 4),
            too_large: false,
        };
        rt.block_on(async {
            sink.write_all(b"abc").await.unwrap();
            assert!(sink.write_all(b"de").await.is_err());
        });
        assert!(sink.too_large);
        drop(sink);
        assert_eq!(std::fs::read_dir(store.layout().tmp()).unwrap().count(), 0, "nothing left behind");
    }
}
