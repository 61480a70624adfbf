//! Stored names: the manifest descriptors in `store/index.json`.

use std::collections::HashMap;
use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};

use super::{Result, Store, StoreError, parse_digest};
use crate::digest::Digest;
use crate::fsutil;
use crate::imgref::ImageName;

pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_SOURCE: &str = "io.hoist.source";
pub const ANNOTATION_PULLED: &str = "io.hoist.pulled";
/// How a registry image was fetched when not over verified HTTPS: `https-insecure` or `http`
/// (`--tls-verify=false`; later pulls of the same source do the same).
pub const ANNOTATION_TRANSPORT: &str = "io.hoist.transport";
/// What the signature policy accepted when the image was pulled ([`crate::trust::Verified`] as
/// JSON); absent for images pulled with `--insecure-policy` (or before hoist verified).
pub const ANNOTATION_VERIFIED: &str = "io.hoist.verified";
/// Where a registry image's bytes came from (`https://HOST/REPO`, `http://MIRROR/REPO (mirror)`):
/// shown by `images info` and `status`, never used to decide anything.
pub const ANNOTATION_FETCHED_FROM: &str = "io.hoist.fetched-from";

/// How an image was reached (remembered per source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// HTTPS with certificate verification (and local sources).
    #[default]
    Verified,
    /// HTTPS without certificate verification.
    Insecure,
    /// Plain HTTP.
    PlainHttp,
}

impl Transport {
    fn annotation(self) -> Option<&'static str> {
        match self {
            Transport::Verified => None,
            Transport::Insecure => Some("https-insecure"),
            Transport::PlainHttp => Some("http"),
        }
    }

    /// What a remembered `--tls-verify=false` means for later pulls (None: nothing remembered).
    pub fn remembered(self) -> Option<&'static str> {
        match self {
            Transport::Verified => None,
            Transport::Insecure => Some(
                "certificates not verified: --tls-verify=false is remembered for this reference (the documented way is insecure = true in registries.conf, which then wins)",
            ),
            Transport::PlainHttp => Some(
                "plain HTTP: --tls-verify=false is remembered for this reference (the documented way is insecure = true in registries.conf, which then wins)",
            ),
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "https-insecure" => Transport::Insecure,
            "http" => Transport::PlainHttp,
            _ => Transport::Verified,
        }
    }
}

/// One stored name and what it points at.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredImage {
    pub name: ImageName,
    pub manifest: Digest,
    /// The reference it was pulled from (re-read by `pull NAME` and `update`).
    pub source: Option<String>,
    /// Unix time of the pull that set this name.
    pub pulled: Option<u64>,
    /// How it was reached.
    pub transport: Transport,
    /// What the signature policy accepted at the pull.
    pub verified: Option<crate::trust::Verified>,
    /// Where the bytes came from (registry images).
    pub fetched_from: Option<String>,
}

impl Store {
    fn read_index(&self) -> Result<ImageIndex> {
        let path = self.layout().store().join("index.json");
        match fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| StoreError::Corrupt { path, reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(empty_index()),
            Err(e) => Err(fsutil::PathError::new(path, e).into()),
        }
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let path = self.layout().store().join("index.json");
        let data = serde_json::to_vec_pretty(index).expect("index serializes");
        Ok(fsutil::write_atomic(&path, &data, 0o644)?)
    }

    /// Every stored name, sorted. Descriptors without a hoist name (written by other tools) are skipped.
    pub fn images(&self) -> Result<Vec<StoredImage>> {
        let index = self.read_index()?;
        let path = self.layout().store().join("index.json");
        let mut out = Vec::new();
        for desc in index.manifests() {
            let Some(ann) = desc.annotations() else {
                continue;
            };
            let Some(name) = ann.get(ANNOTATION_REF_NAME).and_then(|n| ImageName::parse(n)) else {
                continue;
            };
            out.push(StoredImage {
                name,
                manifest: parse_digest(desc.digest().as_ref(), &path)?,
                // A built image has no source (an empty annotation).
                source: ann.get(ANNOTATION_SOURCE).filter(|s| !s.is_empty()).cloned(),
                pulled: ann.get(ANNOTATION_PULLED).and_then(|p| p.parse().ok()),
                transport: ann.get(ANNOTATION_TRANSPORT).map(|t| Transport::parse(t)).unwrap_or_default(),
                verified: ann.get(ANNOTATION_VERIFIED).and_then(|v| serde_json::from_str(v).ok()),
                fetched_from: ann.get(ANNOTATION_FETCHED_FROM).cloned(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Points `name` at a manifest already in the store (replacing what it pointed at).
    #[allow(clippy::too_many_arguments)]
    pub fn set_ref(
        &self,
        name: &ImageName,
        manifest: &Digest,
        media_type: MediaType,
        source: &str,
        transport: Transport,
        verified: Option<&crate::trust::Verified>,
        fetched_from: Option<&str>,
    ) -> Result<()> {
        let size = self.read_blob(manifest)?.len() as u64;
        let pulled = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut desc = Descriptor::new(
            media_type,
            size,
            oci_spec::image::Digest::try_from(manifest.to_string()).expect("valid digest"),
        );
        let mut annotations = HashMap::from([
            (ANNOTATION_REF_NAME.to_string(), name.to_string()),
            (ANNOTATION_SOURCE.to_string(), source.to_string()),
            (ANNOTATION_PULLED.to_string(), pulled.to_string()),
        ]);
        if let Some(t) = transport.annotation() {
            annotations.insert(ANNOTATION_TRANSPORT.to_string(), t.to_string());
        }
        if let Some(v) = verified {
            annotations.insert(ANNOTATION_VERIFIED.to_string(), serde_json::to_string(v).expect("serializes"));
        }
        if let Some(f) = fetched_from {
            annotations.insert(ANNOTATION_FETCHED_FROM.to_string(), f.to_string());
        }
        desc.set_annotations(Some(annotations));
        let mut index = self.read_index()?;
        let mut manifests: Vec<Descriptor> = index.manifests().iter().filter(|d| !names(d, name)).cloned().collect();
        manifests.push(desc);
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    /// How a stored image from `source` was reached last (verified HTTPS when none is stored).
    pub fn source_transport(&self, source: &str) -> Transport {
        let imgs = self.images().unwrap_or_default();
        let mut from_source = imgs.iter().filter(|i| i.source.as_deref() == Some(source));
        from_source.find(|i| i.transport != Transport::Verified).map(|i| i.transport).unwrap_or_default()
    }

    /// Removes a stored name. Returns false when it did not exist.
    pub fn remove_ref(&self, name: &ImageName) -> Result<bool> {
        let mut index = self.read_index()?;
        let before = index.manifests().len();
        let manifests: Vec<Descriptor> = index.manifests().iter().filter(|d| !names(d, name)).cloned().collect();
        let removed = manifests.len() != before;
        index.set_manifests(manifests);
        self.write_index(&index)?;
        Ok(removed)
    }
}

fn names(desc: &Descriptor, name: &ImageName) -> bool {
    desc.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REF_NAME))
        .and_then(|n| ImageName::parse(n))
        .is_some_and(|n| &n == name)
}

fn empty_index() -> ImageIndex {
    ImageIndexBuilder::default().schema_version(2u32).manifests(Vec::new()).build().expect("empty index")
}
