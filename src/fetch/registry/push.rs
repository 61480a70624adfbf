//! `hoist push`: a stored image uploaded to a registry, byte for byte.
//!
//! 1. the destination's primary endpoint (registries.conf may relocate or mark it insecure;
//!    mirrors are for pulls) is asked for push access;
//! 2. each blob (config and layers) is checked with `HEAD` first and uploaded only when the
//!    registry lacks it — mounted from another repository of the same registry when the image
//!    was pulled from there (`POST …/uploads/?mount=…&from=…`), else streamed from the store in
//!    chunks (never held in memory whole);
//! 3. the manifest, as stored (its digest unchanged), is put last, once per tag in the order
//!    given: a push that fails before leaves every existing tag as it was. Sigstore signatures
//!    ([`super::attach`]) are attached just before.

use std::io::Read;

use oci_client::{Reference, RegistryOperation};

use super::{Puller, RegistryError, Result, Route, client, runtime};
use crate::digest::Digest;
use crate::fsutil::human_size;
use crate::imgref::RegistryRef;
use crate::progress::Progress;
use crate::store::Store;

/// Bytes read from the store per upload chunk.
const CHUNK: usize = 4 << 20;

/// What to push.
pub(crate) struct Upload<'a> {
    /// Config and layers: (digest, size), in manifest order.
    pub blobs: Vec<(Digest, u64)>,
    pub manifest: &'a [u8],
    pub media_type: String,
    /// Tags, in the order they are published.
    pub tags: Vec<String>,
    /// A repository of the same registry that has the blobs (where the image was pulled from).
    pub mount_from: Option<String>,
    /// Sigstore signatures to attach before any tag is set ([`super::attach`]).
    pub attachments: Vec<super::attach::Attachment>,
}

/// What a push did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Pushed {
    pub uploaded: usize,
    pub mounted: usize,
    pub present: usize,
    pub bytes: u64,
    /// Sigstore signatures added to the `sha256-<hex>.sig` attachment.
    pub attached: usize,
}

pub(crate) fn push(
    store: &Store,
    dest: &RegistryRef,
    routes: &[Route],
    up: &Upload<'_>,
    progress: &Progress,
) -> Result<Pushed> {
    let (endpoint, conn) = routes.last().expect("a plan always ends with the primary");
    let rt = runtime()?;
    rt.block_on(async {
        let mut p = Puller::new(store, dest, endpoint, conn, progress)?;
        let reference = p.reference.clone();
        p.push_auth(&reference).await?;
        let mut out = Pushed::default();
        for (d, size) in &up.blobs {
            let what = format!("blob {d}");
            if p.client.blob_exists(&reference, &d.to_string()).await.map_err(|e| p.classify(denied(e), &what))? {
                out.present += 1;
                continue;
            }
            if let Some(from) = &up.mount_from {
                let source = Reference::with_tag(p.r.registry.clone(), from.clone(), "latest".into());
                if p.client.mount_blob(&reference, &source, &d.to_string()).await.is_ok()
                    && p.client.blob_exists(&reference, &d.to_string()).await.unwrap_or(false)
                {
                    out.mounted += 1;
                    continue;
                }
            }
            let task = p.progress.task(&format!("Pushing {} ({})", d.short(), human_size(*size)), *size);
            let file = store.open_blob(d)?;
            let stream = futures_util::stream::unfold((file, 0u64), move |(mut f, sent)| async move {
                let mut buf = vec![0u8; CHUNK];
                match f.read(&mut buf) {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(bytes::Bytes::from(buf)), (f, sent + n as u64)))
                    }
                    Err(e) => Some((Err(oci_client::errors::OciDistributionError::IoError(e)), (f, sent))),
                }
            });
            p.client
                .push_blob_stream(&reference, stream, &d.to_string(), Some(*size))
                .await
                .map_err(|e| p.classify(e, &what))?;
            task.finish();
            out.uploaded += 1;
            out.bytes += size;
        }
        // Signatures before tags: a push that signs never publishes a tag unsigned.
        if !up.attachments.is_empty() {
            out.attached = p.attach(&Digest::of_bytes(up.manifest), &up.attachments).await?;
        }
        let content_type: reqwest::header::HeaderValue =
            up.media_type.parse().map_err(|_| p.protocol(format!("manifest media type {:?}", up.media_type)))?;
        for tag in &up.tags {
            let r = Reference::with_tag(p.r.registry.clone(), p.r.repository.clone(), tag.clone());
            p.client
                .push_manifest_raw(&r, up.manifest.to_vec(), content_type.clone())
                .await
                .map_err(|e| p.classify(e, &format!("manifest {}:{tag}", p.image())))?;
        }
        Ok(out)
    })
}

/// A bare 401/403 (a `HEAD` carries no error body) as the refusal it is.
fn denied(e: oci_client::errors::OciDistributionError) -> oci_client::errors::OciDistributionError {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::RequestError(re) if matches!(re.status().map(|s| s.as_u16()), Some(401 | 403)) => {
            E::UnauthorizedError { url: re.url().map(|u| u.to_string()).unwrap_or_default() }
        }
        other => other,
    }
}

impl Puller<'_> {
    /// Push access to `reference`, with the insecure fallbacks of a pull (HTTPS without
    /// verification, then plain HTTP, when TLS verification is off).
    async fn push_auth(&mut self, reference: &Reference) -> Result<(), RegistryError> {
        let what = format!("push access to {}", self.image());
        match self.client.auth(reference, &self.auth, RegistryOperation::Push).await {
            Ok(_) => Ok(()),
            Err(e) => match self.classify(e, &what) {
                RegistryError::Tls { .. } if !self.conn.tls_verify && !self.http => {
                    self.client = client(false, false, self.conn);
                    self.http = true;
                    self.client
                        .auth(reference, &self.auth, RegistryOperation::Push)
                        .await
                        .map(|_| ())
                        .map_err(|e| self.classify(e, &what))
                }
                other => Err(other),
            },
        }
    }
}
