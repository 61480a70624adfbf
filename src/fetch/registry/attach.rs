//! Writing sigstore signature attachments: the OCI manifest tagged `sha256-<hex>.sig` in the
//! image's repository, one layer per signature — where `use-sigstore-attachments` readers
//! ([`super::signatures`]) and cosign look.
//!
//! The attachment already there is kept and added to (its layers stay as they are, in order); a
//! signature whose payload and annotations are already attached is not added twice. Each new
//! layer is the payload blob (media type `application/vnd.dev.cosign.simplesigning.v1+json`,
//! annotations carrying the signature); more than `MAX_SIGNATURES` in all, which no puller
//! would read, is refused before anything is uploaded. The config is what containers/image writes:
//! an empty image config whose `rootfs.diff_ids` are the layer digests.

use std::collections::BTreeMap;

use oci_client::Reference;
use serde_json::{Value, json};

use super::{Puller, RegistryError, Result};
use crate::digest::Digest;
use crate::trust::SIGSTORE_SIGNATURE_TYPE;
use crate::trust::sources::MAX_SIGNATURES;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// One signature to attach: its payload and its layer's annotations.
pub struct Attachment {
    pub payload: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

impl Puller<'_> {
    /// Attaches `new` to `manifest` in the repository being pushed to; returns how many were
    /// added (0: all were there already, and nothing was written).
    pub(super) async fn attach(&self, manifest: &Digest, new: &[Attachment]) -> Result<usize> {
        let tag = format!("sha256-{}.sig", manifest.hex());
        let r = Reference::with_tag(self.r.registry.clone(), self.r.repository.clone(), tag.clone());
        let what = format!("sigstore attachment {}:{tag}", self.image());
        let mut layers: Vec<Value> = match self.manifest(&r).await {
            Ok((bytes, _)) => {
                let doc: Value = serde_json::from_slice(&bytes).map_err(|e| self.protocol(format!("{what}: {e}")))?;
                match doc.get("layers") {
                    Some(Value::Array(l)) => l.clone(),
                    _ => return Err(self.protocol(format!("{what}: a manifest without layers")).into()),
                }
            }
            Err(RegistryError::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        // What is not attached yet; checked against the limit before any upload.
        let mut adding: Vec<(Digest, &Attachment)> = Vec::new();
        for a in new {
            let digest = Digest::of_bytes(&a.payload);
            let annotations = json!(a.annotations);
            let there = |l: &Value| {
                l["digest"].as_str() == Some(digest.to_string().as_str()) && l["annotations"] == annotations
            };
            if !layers.iter().any(there) && !adding.iter().any(|(d, b)| d == &digest && b.annotations == a.annotations)
            {
                adding.push((digest, a));
            }
        }
        if adding.is_empty() {
            return Ok(0);
        }
        if layers.len() + adding.len() > MAX_SIGNATURES {
            return Err(self
                .protocol(format!(
                    "{what}: {} signatures with these, more than the {MAX_SIGNATURES} a puller reads (remove old ones first)",
                    layers.len() + adding.len()
                ))
                .into());
        }
        for (digest, a) in &adding {
            self.put_blob(digest, a.payload.clone(), &what).await?;
            layers.push(json!({
                "mediaType": SIGSTORE_SIGNATURE_TYPE,
                "digest": digest.to_string(),
                "size": a.payload.len(),
                "annotations": a.annotations,
            }));
        }
        let added = adding.len();
        let diff_ids: Vec<Value> = layers.iter().map(|l| l["digest"].clone()).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "", "created": "0001-01-01T00:00:00Z", "history": null, "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {},
        }))
        .expect("serializes");
        let config_digest = Digest::of_bytes(&config);
        let config_size = config.len();
        self.put_blob(&config_digest, config, &what).await?;
        let doc = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_size},
            "layers": layers,
        }))
        .expect("serializes");
        let content_type = reqwest::header::HeaderValue::from_static(OCI_MANIFEST);
        self.client.push_manifest_raw(&r, doc, content_type).await.map_err(|e| self.classify(e, &what))?;
        Ok(added)
    }

    /// Uploads a small blob held in memory unless the repository has it.
    async fn put_blob(&self, digest: &Digest, bytes: Vec<u8>, what: &str) -> Result<()> {
        let d = digest.to_string();
        let what = format!("{what}: blob {}", digest.short());
        if !self.client.blob_exists(&self.reference, &d).await.map_err(|e| self.classify(e, &what))? {
            self.client.push_blob(&self.reference, bytes, &d).await.map_err(|e| self.classify(e, &what))?;
        }
        Ok(())
    }
}
