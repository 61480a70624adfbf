//! `docker-archive:FILE`: the tar `docker save` writes.
//!
//! ```text
//! manifest.json   [{"Config": "<cfg>.json", "RepoTags": ["busybox:latest"], "Layers": ["<id>/layer.tar", …]}]
//! <cfg>.json      the image config (its sha256 is the image id)
//! <id>/layer.tar  each layer, usually uncompressed (newer docker: blobs/sha256/<hex>)
//! ```
//! The layers become blobs as they are (uncompressed layers keep digest = diff_id, so a re-pull
//! can see they are present without reading them), and an OCI manifest is written for them. The
//! manifest is serialised deterministically, so the same archive always yields the same digest.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use oci_spec::image::{DescriptorBuilder, ImageConfiguration, ImageManifestBuilder, MediaType};

use super::{Fetched, Result, clean, src_err};
use crate::digest::Digest;
use crate::fsutil::IoContext;
use crate::imgref::ImageName;
use crate::layers::Compression;
use crate::progress::Progress;
use crate::store::{Store, Transport};

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn oci_digest(d: &Digest) -> oci_spec::image::Digest {
    oci_spec::image::Digest::try_from(d.to_string()).expect("valid digest")
}

pub(crate) fn import(store: &Store, path: &Path, progress: &Progress) -> Result<Fetched> {
    let arch = |e: std::io::Error| src_err(format!("{}: not a readable tar archive: {e}", path.display()));
    // Pass 1: the small JSON members.
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    {
        let mut ar = tar::Archive::new(File::open(path).at(path)?);
        for e in ar.entries().map_err(arch)? {
            let mut e = e.map_err(arch)?;
            let name = clean(&e.path().map_err(arch)?);
            if e.header().entry_type().is_file() && (name.ends_with(".json") || e.size() <= 1 << 20) {
                let mut data = Vec::new();
                e.read_to_end(&mut data).map_err(arch)?;
                small.insert(name, data);
            }
        }
    }
    let manifest_json = small
        .get("manifest.json")
        .ok_or_else(|| src_err(format!("{} is not a docker archive (no manifest.json)", path.display())))?;
    let entries: Vec<Entry> =
        serde_json::from_slice(manifest_json).map_err(|e| src_err(format!("manifest.json: {e}")))?;
    let entry = entries.into_iter().next().ok_or_else(|| src_err("manifest.json lists no image"))?;
    let config_bytes = small
        .get(&clean(Path::new(&entry.config)))
        .ok_or_else(|| src_err(format!("missing config {}", entry.config)))?
        .clone();
    let config: ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|e| src_err(format!("config {}: {e}", entry.config)))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != entry.layers.len() {
        return Err(src_err(format!("config lists {} diff_ids for {} layers", diff_ids.len(), entry.layers.len())));
    }

    // Pass 2: layers, streamed; an uncompressed layer already stored under its diff_id is skipped.
    let mut layer_blobs: Vec<Option<(Digest, u64)>> = vec![None; entry.layers.len()];
    let mut by_member: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, (member, diff_id)) in entry.layers.iter().zip(diff_ids).enumerate() {
        if let Ok(d) = diff_id.parse::<Digest>()
            && store.has_blob(&d)
        {
            let size = std::fs::metadata(store.blob_path(&d)).map(|m| m.len()).unwrap_or(0);
            layer_blobs[i] = Some((d, size));
            continue;
        }
        by_member.entry(clean(Path::new(member))).or_default().push(i);
    }
    let mut fetched = 0;
    if !by_member.is_empty() {
        let mut ar = tar::Archive::new(File::open(path).at(path)?);
        for e in ar.entries().map_err(arch)? {
            let e = e.map_err(arch)?;
            let name = clean(&e.path().map_err(arch)?);
            let Some(idxs) = by_member.remove(&name) else {
                continue;
            };
            let task = progress.task(&format!("Copying layer {name}"), e.size());
            let (d, size) = store.put_blob(&format!("layer {name}"), task.reader(e), None, None)?;
            task.finish();
            fetched += 1;
            for i in idxs {
                layer_blobs[i] = Some((d.clone(), size));
            }
        }
        if let Some(name) = by_member.keys().next() {
            return Err(src_err(format!("{}: missing layer {name}", path.display())));
        }
    }

    let config_digest = Digest::of_bytes(&config_bytes);
    let mut layers = Vec::new();
    for (d, size) in layer_blobs.into_iter().map(|b| b.expect("every layer resolved")) {
        let mut head = [0u8; 4];
        let n = store.open_blob(&d)?.read(&mut head).unwrap_or(0);
        let mt = match Compression::sniff(&head[..n]) {
            Compression::None => MediaType::ImageLayer,
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd => MediaType::ImageLayerZstd,
        };
        layers.push(
            DescriptorBuilder::default().media_type(mt).size(size).digest(oci_digest(&d)).build().expect("descriptor"),
        );
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(
            DescriptorBuilder::default()
                .media_type(MediaType::ImageConfig)
                .size(config_bytes.len() as u64)
                .digest(oci_digest(&config_digest))
                .build()
                .expect("descriptor"),
        )
        .layers(layers)
        .build()
        .expect("manifest");
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serializes");
    let manifest_digest = Digest::of_bytes(&manifest_bytes);
    for (what, d, data) in [("config", &config_digest, &config_bytes), ("manifest", &manifest_digest, &manifest_bytes)]
    {
        if !store.has_blob(d) {
            store.put_bytes(what, data, Some(d))?;
            fetched += 1;
        }
    }
    let name = entry.repo_tags.and_then(|t| t.into_iter().next()).and_then(|t| ImageName::parse(&t));
    Ok(Fetched {
        manifest: manifest_digest,
        media_type: MediaType::ImageManifest,
        blobs_fetched: fetched,
        name,
        transport: Transport::Verified,
    })
}
