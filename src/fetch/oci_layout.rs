//! `oci:DIR[:REF]` and `oci-archive:FILE[:REF]`: an OCI image layout, as a directory or a tar.
//!
//! REF selects the `index.json` entry whose `org.opencontainers.image.ref.name` is REF; without
//! REF the layout must hold exactly one image (or one tagged `latest`). An entry that is itself
//! an image index is resolved to the manifest for this machine's platform.
//! A tar is read in at most two sequential passes: the first keeps small files (index, manifests,
//! configs) in memory, the second streams only the layer blobs the store does not have yet.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use super::platform::{Platform, select};
use super::{Fetched, Result, clean, src_err};
use crate::digest::Digest;
use crate::fsutil::IoContext;
use crate::fsutil::human_size;
use crate::progress::Progress;
use crate::store::{Store, Transport};

/// Files up to this size are kept in memory during the first pass over an archive.
const SMALL_FILE: u64 = 1 << 20;

pub(crate) enum Layout {
    Dir(PathBuf),
    Archive { path: PathBuf, small: HashMap<String, Vec<u8>> },
}

impl Layout {
    pub fn dir(path: &Path) -> Result<Self> {
        if !path.join("index.json").is_file() {
            return Err(src_err(format!("{} is not an OCI image layout (no index.json)", path.display())));
        }
        Ok(Layout::Dir(path.to_path_buf()))
    }

    pub fn archive(path: &Path) -> Result<Self> {
        let small = read_small_members(path)?;
        if !small.contains_key("index.json") {
            return Err(src_err(format!("{} is not an OCI archive (no index.json)", path.display())));
        }
        Ok(Layout::Archive { path: path.to_path_buf(), small })
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>> {
        match self {
            Layout::Dir(dir) => {
                let p = dir.join(rel);
                Ok(fs::read(&p).at(&p)?)
            }
            Layout::Archive { path, small } => small
                .get(rel)
                .cloned()
                .ok_or_else(|| src_err(format!("{}: missing or oversized member {rel}", path.display()))),
        }
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, rel: &str, what: &str) -> Result<T> {
        serde_json::from_slice(&self.read(rel)?).map_err(|e| src_err(format!("{what} {rel}: {e}")))
    }

    /// Reads a small blob (manifest, index, config), verifying its digest.
    fn read_blob(&self, desc: &Descriptor) -> Result<(Digest, Vec<u8>)> {
        let digest: Digest =
            desc.digest().to_string().parse().map_err(|e: crate::digest::InvalidDigest| src_err(e.to_string()))?;
        let data = self.read(&format!("blobs/sha256/{}", digest.hex()))?;
        let actual = Digest::of_bytes(&data);
        if actual != digest {
            return Err(src_err(format!("blob {digest}: content hashes to {actual}")));
        }
        if data.len() as u64 != desc.size() {
            return Err(src_err(format!("blob {digest}: {} bytes, descriptor says {}", data.len(), desc.size())));
        }
        Ok((digest, data))
    }

    /// Copies the given blobs into the store (each verified); returns how many were written.
    fn import_blobs(&self, store: &Store, wanted: &[(Digest, u64)], progress: &Progress) -> Result<usize> {
        let missing: Vec<&(Digest, u64)> = wanted.iter().filter(|(d, _)| !store.has_blob(d)).collect();
        if missing.is_empty() {
            return Ok(0);
        }
        match self {
            Layout::Dir(dir) => {
                for (d, size) in &missing {
                    let p = dir.join("blobs/sha256").join(d.hex());
                    let f = File::open(&p).at(&p)?;
                    let task = progress.task(&format!("Copying blob {} ({})", d.short(), human_size(*size)), *size);
                    store.put_blob(&format!("blob {d}"), task.reader(f), Some(d), Some(*size))?;
                    task.finish();
                }
            }
            Layout::Archive { path, small } => {
                let mut pending: HashMap<String, &(Digest, u64)> = HashMap::new();
                for w in &missing {
                    let member = format!("blobs/sha256/{}", w.0.hex());
                    if let Some(data) = small.get(&member) {
                        store.put_blob(&format!("blob {}", w.0), &data[..], Some(&w.0), Some(w.1))?;
                    } else {
                        pending.insert(member, w);
                    }
                }
                if !pending.is_empty() {
                    let f = File::open(path).at(path)?;
                    let mut ar = tar::Archive::new(f);
                    let arch = |e| src_err(format!("{}: {e}", path.display()));
                    for entry in ar.entries().map_err(arch)? {
                        let entry = entry.map_err(arch)?;
                        let name = clean(&entry.path().map_err(arch)?);
                        if let Some((d, size)) = pending.remove(&name) {
                            let task =
                                progress.task(&format!("Copying blob {} ({})", d.short(), human_size(*size)), *size);
                            store.put_blob(&format!("blob {d}"), task.reader(entry), Some(d), Some(*size))?;
                            task.finish();
                        }
                    }
                    if let Some(name) = pending.keys().next() {
                        return Err(src_err(format!("{}: missing member {name}", path.display())));
                    }
                }
            }
        }
        Ok(missing.len())
    }
}

fn read_small_members(path: &Path) -> Result<HashMap<String, Vec<u8>>> {
    let f = File::open(path).at(path)?;
    let mut ar = tar::Archive::new(f);
    let arch = |e| src_err(format!("{}: not a readable tar archive: {e}", path.display()));
    let mut out = HashMap::new();
    for entry in ar.entries().map_err(arch)? {
        let mut entry = entry.map_err(arch)?;
        if !entry.header().entry_type().is_file() || entry.size() > SMALL_FILE {
            continue;
        }
        let name = clean(&entry.path().map_err(arch)?);
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data).map_err(arch)?;
        out.insert(name, data);
    }
    Ok(out)
}

fn is_index(mt: &MediaType) -> bool {
    matches!(mt, MediaType::ImageIndex) || mt.to_string() == "application/vnd.docker.distribution.manifest.list.v2+json"
}

pub(crate) fn import(
    store: &Store,
    layout: Layout,
    reference: Option<&str>,
    platform: Option<&Platform>,
    progress: &Progress,
) -> Result<Fetched> {
    let index: ImageIndex = layout.read_json("index.json", "image index")?;
    let ref_of =
        |d: &Descriptor| d.annotations().as_ref().and_then(|a| a.get("org.opencontainers.image.ref.name").cloned());
    let desc = match reference {
        Some(r) => index.manifests().iter().find(|d| ref_of(d).as_deref() == Some(r)),
        None if index.manifests().len() == 1 => index.manifests().first(),
        None => index.manifests().iter().find(|d| ref_of(d).as_deref() == Some("latest")),
    };
    let Some(mut desc) = desc.cloned() else {
        let names: Vec<String> = index.manifests().iter().filter_map(ref_of).collect();
        return Err(src_err(match reference {
            Some(r) => format!("no image named {r:?} in the layout (it has: {})", names.join(", ")),
            None => format!(
                "the layout holds {} images; name one with :REF ({})",
                index.manifests().len(),
                names.join(", ")
            ),
        }));
    };
    let mut fetched = 0;
    if is_index(desc.media_type()) {
        let (digest, data) = layout.read_blob(&desc)?;
        let inner: ImageIndex =
            serde_json::from_slice(&data).map_err(|e| src_err(format!("image index {digest}: {e}")))?;
        let want = platform.cloned().unwrap_or_else(Platform::host);
        desc = select(&inner, &want).cloned().map_err(|offered| {
            src_err(format!("image index {digest} has no manifest for {want} (it has: {})", offered.join(", ")))
        })?;
    }
    let (manifest_digest, manifest_bytes) = layout.read_blob(&desc)?;
    let manifest: ImageManifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| src_err(format!("manifest {manifest_digest}: {e}")))?;
    let config = manifest.config();
    let (config_digest, config_bytes) = layout.read_blob(config)?;
    let mut wanted = Vec::new();
    for l in manifest.layers() {
        let d: Digest =
            l.digest().to_string().parse().map_err(|e: crate::digest::InvalidDigest| src_err(e.to_string()))?;
        wanted.push((d, l.size()));
    }
    fetched += layout.import_blobs(store, &wanted, progress)?;
    // Config and manifest last: a manifest in the store implies its blobs are there.
    for (what, d, data) in [("config", &config_digest, &config_bytes), ("manifest", &manifest_digest, &manifest_bytes)]
    {
        if !store.has_blob(d) {
            store.put_bytes(&format!("{what} {d}"), data, Some(d))?;
            fetched += 1;
        }
    }
    Ok(Fetched::stored(manifest_digest, &manifest, fetched, Transport::Verified))
}
