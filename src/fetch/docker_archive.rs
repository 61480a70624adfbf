//! `docker-archive:FILE[:NAME[:TAG]|:@N]`: the tar `docker save` writes.
//!
//! ```text
//! manifest.json   [{"Config": "<cfg>.json", "RepoTags": ["busybox:latest"], "Layers": ["<id>/layer.tar", …]}]
//! <cfg>.json      the image config (its sha256 is the image id)
//! <id>/layer.tar  each layer, usually uncompressed (newer docker: blobs/sha256/<hex>)
//! ```
//! The layers become blobs as they are (uncompressed layers keep digest = diff_id, so a re-pull
//! can see they are present without reading them), and an OCI manifest is written for them. The
//! manifest is serialised deterministically, so the same archive always yields the same digest.

//!
//! The archive is indexed once (regular members only, see [`TarIndex`]); `manifest.json` and the
//! config are read capped at [`MAX_DOCUMENT`], layers are streamed bounded by their member size,
//! and nothing else is read.
//!
//! Which image (containers/image's rules): `:NAME[:TAG]` is the entry with a RepoTag equal to it
//! once both are in docker's normalised form ([`docker_normalized`]: `app:1.0` matches
//! `docker.io/library/app:1.0` but not `localhost/app:1.0`); `:@N` is the N-th entry (0-based);
//! with neither, the archive must hold exactly one image.
//!
//! The stored name is the matched RepoTag (else the entry's first) as [`source_named`] keeps
//! it: `localhost/app:1.0` and `team/app:1.0` as they are, `docker.io/library/busybox` as
//! `busybox`, and any other registry's (`quay.io/coreos/etcd:v3.4`, `127.0.0.1:5000/x`) under its
//! last path component (`etcd:v3.4`): a local archive never takes a registry image's name, so
//! `install docker://…` can never pick up an archive's image.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use oci_spec::image::{DescriptorBuilder, ImageConfiguration, ImageManifestBuilder, MediaType};

use super::registry::MAX_DOCUMENT;
use super::tarindex::TarIndex;
use super::{Fetched, Result, clean, src_err};
use crate::digest::Digest;
use crate::imgref::{ArchiveRef, ImageName, docker_normalized, source_named};
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

/// What the archive holds, for an error: each entry's RepoTags, `@N (untagged)` for one without.
fn holdings(entries: &[Entry]) -> String {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match e.repo_tags.as_deref() {
            Some(tags) if !tags.is_empty() => out.extend(tags.iter().cloned()),
            _ => out.push(format!("@{i} (untagged)")),
        }
    }
    out.join(", ")
}

/// The entry `reference` selects (see the module doc) and the RepoTag it matched, if any.
fn choose(entries: Vec<Entry>, reference: Option<&ArchiveRef>) -> Result<(Entry, Option<String>)> {
    let n = entries.len();
    match reference {
        Some(ArchiveRef::Named(r)) => {
            let want = docker_normalized(r);
            let hit = entries.iter().enumerate().find_map(|(i, e)| {
                let tags = e.repo_tags.as_deref().unwrap_or_default();
                tags.iter().find(|t| want.is_some() && docker_normalized(t) == want).map(|t| (i, t.clone()))
            });
            match hit {
                Some((i, tag)) => Ok((entries.into_iter().nth(i).expect("found"), Some(tag))),
                None => Err(src_err(format!("no image named {r:?} (the archive holds: {})", holdings(&entries)))),
            }
        }
        Some(ArchiveRef::Index(i)) if *i < n => Ok((entries.into_iter().nth(*i).expect("in range"), None)),
        Some(ArchiveRef::Index(i)) => {
            Err(src_err(format!("no image @{i}: the archive holds {n} (@0 to @{})", n.saturating_sub(1))))
        }
        None if n == 1 => Ok((entries.into_iter().next().expect("one"), None)),
        None if n == 0 => Err(src_err("manifest.json lists no image")),
        None => Err(src_err(format!(
            "the archive holds {n} images; name one with :NAME[:TAG] or :@INDEX ({})",
            holdings(&entries)
        ))),
    }
}

/// Imports the archive's image chosen by `reference`; `check_name` vets the name it carries
/// (None: it carries none) before anything is stored.
pub(crate) fn import(
    store: &Store,
    path: &Path,
    reference: Option<&ArchiveRef>,
    progress: &Progress,
    check_name: &dyn Fn(Option<&ImageName>) -> Result<()>,
) -> Result<Fetched> {
    let idx = TarIndex::open(path)?;
    if idx.size("manifest.json").is_none() {
        return Err(src_err(format!("{} is not a docker archive (no manifest.json)", path.display())));
    }
    let manifest_json = idx.read_limited("manifest.json", MAX_DOCUMENT)?;
    let entries: Vec<Entry> =
        serde_json::from_slice(&manifest_json).map_err(|e| src_err(format!("manifest.json: {e}")))?;
    let (entry, matched) = choose(entries, reference)?;
    let tag = matched.or_else(|| entry.repo_tags.as_ref().and_then(|t| t.first()).cloned());
    let name = tag.and_then(|t| source_named(&t));
    check_name(name.as_ref())?;
    let config_member = clean(Path::new(&entry.config));
    if idx.size(&config_member).is_none() {
        return Err(src_err(format!("missing config {}", entry.config)));
    }
    let config_bytes = idx.read_limited(&config_member, MAX_DOCUMENT)?;
    let config: ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|e| src_err(format!("config {}: {e}", entry.config)))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != entry.layers.len() {
        return Err(src_err(format!("config lists {} diff_ids for {} layers", diff_ids.len(), entry.layers.len())));
    }

    // Layers, streamed; an uncompressed layer already stored under its diff_id (with the member's
    // size) is skipped.
    let mut layer_blobs: Vec<Option<(Digest, u64)>> = vec![None; entry.layers.len()];
    let mut done: HashMap<String, (Digest, u64)> = HashMap::new();
    let mut fetched = 0;
    for (i, (member, diff_id)) in entry.layers.iter().zip(diff_ids).enumerate() {
        let member = clean(Path::new(member));
        let Some(member_size) = idx.size(&member) else {
            return Err(src_err(format!("{}: missing layer {member}", path.display())));
        };
        if let Ok(d) = diff_id.parse::<Digest>()
            && store.has_blob_sized(&d, member_size)
        {
            layer_blobs[i] = Some((d, member_size));
            continue;
        }
        if let Some(b) = done.get(&member) {
            layer_blobs[i] = Some(b.clone());
            continue;
        }
        let (r, size) = idx.open_member(&member)?;
        let task = progress.task(&format!("Copying layer {member}"), size);
        let b = store.put_blob(&format!("layer {member}"), task.reader(r), None, Some(size))?;
        task.finish();
        fetched += 1;
        done.insert(member, b.clone());
        layer_blobs[i] = Some(b);
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
        if !store.has_blob_sized(d, data.len() as u64) {
            store.put_bytes(what, data, Some(d))?;
            fetched += 1;
        }
    }
    Ok(Fetched {
        manifest: manifest_digest,
        media_type: MediaType::ImageManifest,
        blobs_fetched: fetched,
        name,
        transport: Transport::Verified,
        verified: None,
        fetched_from: None,
        needs_layer_blobs: true,
        layers_extracted: 0,
    })
}
