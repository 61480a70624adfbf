//! The signatures of a registry image, fetched before anything of the image is stored
//! ([`crate::trust`] decides what they are worth).
//!
//! - Simple signatures from the lookaside that registries.d names ([`crate::trust::sources`]):
//!   `…@sha256=<hex>/signature-1`, `-2`, … until the first missing one, from `file://` or
//!   `http(s)://` (a 404 ends the list; any other HTTP status is an error). At most
//!   [`MAX_SIGNATURES`] of at most [`MAX_SIGNATURE_BYTES`] each. A blob that starts with a NUL
//!   byte is containers/image's tagged format (`\0simple-signing\n…`); others are raw OpenPGP.
//! - Sigstore signatures, when `use-sigstore-attachments` is on: the OCI manifest at tag
//!   `sha256-<hex>.sig` of the same repository (none when it does not exist); each layer is one
//!   attachment (payload blob, digest-checked, plus the layer's annotations); at most
//!   [`MAX_SIGNATURES`] layers (refused before any payload is fetched).
//! - cosign v3 bundles, also when `use-sigstore-attachments` is on: the OCI 1.1 referrers of the
//!   manifest digest whose `artifactType` is a sigstore bundle, from the registry's referrers API
//!   (`GET /v2/REPO/referrers/DIGEST`) or, where that answers 404 (Debian's docker-registry) or
//!   another refusal (400, 405), from the referrers tag schema (an image index tagged `sha256-<hex>`). Each referrer manifest must
//!   name this digest as its `subject` and carry the bundle as one layer; at most
//!   [`MAX_SIGNATURES`] referrers, each bundle at most [`MAX_SIGNATURE_BYTES`], digest-checked.

use std::collections::BTreeMap;

use oci_client::Reference;
use oci_spec::image::ImageManifest;

use super::{Puller, RegistryError};
use crate::digest::Digest;
use crate::trust::sources::{Lookup, MAX_SIGNATURE_BYTES, MAX_SIGNATURES};
use crate::trust::{Signature, TrustError, bundle};

const SIGSTORE_TAG_SUFFIX: &str = ".sig";

fn fetch_err(what: impl Into<String>, reason: impl std::fmt::Display) -> TrustError {
    TrustError::Fetch { what: what.into(), reason: reason.to_string() }
}

impl Puller<'_> {
    /// Every signature of `manifest` that `lookup` says where to find.
    pub(super) async fn signatures(&self, manifest: &Digest, lookup: &Lookup) -> Result<Vec<Signature>, TrustError> {
        let mut out = self.lookaside(manifest, lookup).await?;
        if lookup.sigstore_attachments {
            out.extend(self.attachments(manifest).await?);
            out.extend(self.bundles(manifest).await?);
        }
        Ok(out)
    }

    async fn lookaside(&self, manifest: &Digest, lookup: &Lookup) -> Result<Vec<Signature>, TrustError> {
        let mut out = Vec::new();
        // Built only for an http(s) lookaside.
        let mut http: Option<reqwest::Client> = None;
        for n in 1.. {
            let url = lookup.signature_url(manifest, n);
            if n > MAX_SIGNATURES {
                return Err(fetch_err(&lookup.lookaside, format!("more than {MAX_SIGNATURES} signatures")));
            }
            let blob = if let Some(path) = url.strip_prefix("file://") {
                if !path.starts_with('/') {
                    return Err(fetch_err(&url, "a file:// lookaside must be an absolute path (file:///…)"));
                }
                match std::fs::File::open(path) {
                    Ok(f) => read_capped(f, &url)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) => return Err(fetch_err(&url, e)),
                }
            } else if url.starts_with("http://") || url.starts_with("https://") {
                let client = match &http {
                    Some(c) => c,
                    None => http.insert(
                        reqwest::Client::builder()
                            .connect_timeout(std::time::Duration::from_secs(15))
                            .timeout(std::time::Duration::from_secs(60))
                            .build()
                            .map_err(|e| fetch_err(&lookup.lookaside, e))?,
                    ),
                };
                let res = client.get(&url).send().await.map_err(|e| fetch_err(&url, e))?;
                if res.status() == reqwest::StatusCode::NOT_FOUND {
                    break;
                }
                if !res.status().is_success() {
                    return Err(fetch_err(&url, format!("HTTP {}", res.status())));
                }
                read_response(res, &url).await?
            } else {
                return Err(fetch_err(&url, "a lookaside must be a file://, http:// or https:// URL"));
            };
            let blob = match blob.first() {
                Some(0) => untag(&blob).map_err(|e| fetch_err(&url, e))?,
                _ => blob,
            };
            out.push(Signature::Simple { origin: url, blob });
        }
        Ok(out)
    }

    async fn attachments(&self, manifest: &Digest) -> Result<Vec<Signature>, TrustError> {
        let tag = format!("sha256-{}{SIGSTORE_TAG_SUFFIX}", manifest.hex());
        let r = Reference::with_tag(self.r.registry.clone(), self.r.repository.clone(), tag.clone());
        let what = format!("sigstore attachments {}/{}:{tag}", self.r.registry, self.r.repository);
        let bytes = match self.manifest(&r).await {
            Ok((bytes, _)) => bytes,
            Err(RegistryError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(fetch_err(&what, e)),
        };
        let doc: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| fetch_err(&what, e))?;
        if let Some(mt) =
            doc.media_type().as_ref().filter(|mt| mt.to_string() != oci_client::manifest::OCI_IMAGE_MEDIA_TYPE)
        {
            return Err(fetch_err(&what, format!("unexpected manifest type {mt}")));
        }
        if doc.layers().len() > MAX_SIGNATURES {
            return Err(fetch_err(&what, format!("more than {MAX_SIGNATURES} signatures")));
        }
        let mut out = Vec::new();
        for layer in doc.layers() {
            let digest: Digest = layer.digest().to_string().parse().map_err(|e| fetch_err(&what, e))?;
            let payload = self.attachment_blob(&r, &digest, layer.size(), &format!("{what}: attachment")).await?;
            let annotations: BTreeMap<String, String> =
                layer.annotations().clone().unwrap_or_default().into_iter().collect();
            let origin = format!("{}/{}:{tag} layer {}", self.r.registry, self.r.repository, digest.short());
            out.push(Signature::Sigstore { origin, payload, annotations, media_type: layer.media_type().to_string() });
        }
        Ok(out)
    }
}

impl Puller<'_> {
    /// The cosign v3 bundles that refer to `manifest` (see the module's documentation).
    async fn bundles(&self, manifest: &Digest) -> Result<Vec<Signature>, TrustError> {
        let subject = Reference::with_digest(self.r.registry.clone(), self.r.repository.clone(), manifest.to_string());
        let what = format!("referrers of {}/{}@{manifest}", self.r.registry, self.r.repository);
        // (digest, artifactType) of every referrer.
        let listed: Vec<(String, Option<String>)> = match self.client.pull_referrers(&subject, None).await {
            Ok(index) => index.manifests.into_iter().map(|m| (m.digest, m.artifact_type)).collect(),
            // The API answered something else than 404 (which oci-client already turned into the
            // tag schema): a registry without it may say 400 or 405. The tag schema, by hand.
            Err(api) => {
                let tag = Reference::with_tag(
                    self.r.registry.clone(),
                    self.r.repository.clone(),
                    manifest.to_string().replace(':', "-"),
                );
                match self.manifest(&tag).await {
                    Ok((bytes, _)) => {
                        let index: oci_spec::image::ImageIndex =
                            serde_json::from_slice(&bytes).map_err(|e| fetch_err(&what, format!("tag schema: {e}")))?;
                        index
                            .manifests()
                            .iter()
                            .map(|m| (m.digest().to_string(), m.artifact_type().as_ref().map(|t| t.to_string())))
                            .collect()
                    }
                    Err(RegistryError::NotFound { .. }) => Vec::new(),
                    Err(_) => return Err(fetch_err(&what, api)),
                }
            }
        };
        let mut out = Vec::new();
        let referrers: Vec<&String> =
            listed.iter().filter(|(_, t)| t.as_deref().is_some_and(bundle::is_bundle_type)).map(|(d, _)| d).collect();
        if referrers.len() > MAX_SIGNATURES {
            return Err(fetch_err(&what, format!("more than {MAX_SIGNATURES} signature bundles")));
        }
        for digest in referrers {
            let r = subject.clone_with_digest(digest.clone());
            let (bytes, _) = self.manifest(&r).await.map_err(|e| fetch_err(&what, e))?;
            let doc: ImageManifest =
                serde_json::from_slice(&bytes).map_err(|e| fetch_err(&what, format!("referrer {digest}: {e}")))?;
            let origin = format!("{}/{} referrer {}", self.r.registry, self.r.repository, short(digest));
            // A referrer of another manifest listed here is not this image's signature.
            if doc.subject().as_ref().map(|d| d.digest().to_string()) != Some(manifest.to_string()) {
                return Err(fetch_err(&origin, format!("its subject is not {manifest}")));
            }
            let layers: Vec<_> =
                doc.layers().iter().filter(|l| bundle::is_bundle_type(l.media_type().as_ref())).collect();
            let [layer] = layers[..] else {
                return Err(fetch_err(&origin, format!("{} bundle layers, not one", layers.len())));
            };
            let digest: Digest = layer.digest().to_string().parse().map_err(|e| fetch_err(&origin, e))?;
            let bundle = self.attachment_blob(&r, &digest, layer.size(), &origin).await?;
            out.push(Signature::Bundle { origin, media_type: layer.media_type().to_string(), bundle });
        }
        Ok(out)
    }

    /// One signature blob of at most [`MAX_SIGNATURE_BYTES`], checked against its digest.
    async fn attachment_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        size: u64,
        what: &str,
    ) -> Result<Vec<u8>, TrustError> {
        if size > MAX_SIGNATURE_BYTES {
            return Err(fetch_err(what, format!("{digest} is larger than {MAX_SIGNATURE_BYTES} bytes")));
        }
        let mut payload: Vec<u8> = Vec::new();
        let mut sink = Capped { buf: &mut payload, limit: size };
        self.client
            .pull_blob(r, digest.to_string().as_str(), &mut sink)
            .await
            .map_err(|e| fetch_err(format!("{what}: {digest}"), e))?;
        if Digest::of_bytes(&payload) != *digest {
            return Err(fetch_err(what, format!("{digest}: content does not match its digest")));
        }
        Ok(payload)
    }
}

fn short(digest: &str) -> String {
    digest.parse::<Digest>().map(|d| d.short().to_string()).unwrap_or_else(|_| digest.to_string())
}

/// containers/image's tagged signature format: `\0FORMAT\n` then the signature.
fn untag(blob: &[u8]) -> Result<Vec<u8>, String> {
    let rest = &blob[1..];
    let nl = rest.iter().position(|&b| b == b'\n').ok_or("a tagged signature without a format line")?;
    match &rest[..nl] {
        b"simple-signing" => Ok(rest[nl + 1..].to_vec()),
        other => Err(format!("signature format {:?} is not supported in a lookaside", String::from_utf8_lossy(other))),
    }
}

fn read_capped(f: std::fs::File, what: &str) -> Result<Vec<u8>, TrustError> {
    use std::io::Read;
    let mut buf = Vec::new();
    f.take(MAX_SIGNATURE_BYTES + 1).read_to_end(&mut buf).map_err(|e| fetch_err(what, e))?;
    if buf.len() as u64 > MAX_SIGNATURE_BYTES {
        return Err(fetch_err(what, format!("larger than {MAX_SIGNATURE_BYTES} bytes")));
    }
    Ok(buf)
}

async fn read_response(mut res: reqwest::Response, what: &str) -> Result<Vec<u8>, TrustError> {
    let mut buf = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| fetch_err(what, e))? {
        buf.extend_from_slice(&chunk);
        if buf.len() as u64 > MAX_SIGNATURE_BYTES {
            return Err(fetch_err(what, format!("larger than {MAX_SIGNATURE_BYTES} bytes")));
        }
    }
    Ok(buf)
}

/// A Vec that refuses to grow past the announced size.
struct Capped<'a> {
    buf: &'a mut Vec<u8>,
    limit: u64,
}

impl tokio::io::AsyncWrite for Capped<'_> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.buf.len() as u64 + data.len() as u64 > self.limit {
            return std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "attachment larger than announced",
            )));
        }
        self.buf.extend_from_slice(data);
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tagged_blobs() {
        assert_eq!(super::untag(b"\0simple-signing\nPGP").unwrap(), b"PGP");
        assert!(super::untag(b"\0sigstore-json\n{}").unwrap_err().contains("sigstore-json"));
        assert!(super::untag(b"\0nonewline").is_err());
    }
}
