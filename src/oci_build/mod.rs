//! Build OCI images in process: layers from entries, then an OCI layout, an `oci-archive` tar or
//! a `docker-archive` tar. Used by `make images` (the `mkimage` example, from `images/*/image.json`)
//! and by tests, which craft hostile layers with the raw-entry methods. Output is deterministic:
//! fixed times, sorted JSON, gzip without a timestamp, so the same input gives the same digests.

use std::io::{self, Write};
use std::path::Path;

use serde_json::{Value, json};

use crate::digest::Digest;

pub mod spec;

/// Entry times in built layers (reproducible builds).
pub const EPOCH: u64 = 1_700_000_000;

/// Builds one layer's tar stream.
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(EPOCH);
    h.set_uid(0);
    h.set_gid(0);
    h
}

impl LayerBuilder {
    pub fn new() -> Self {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Deterministic);
        LayerBuilder { tar }
    }

    /// Appends an entry with a name written verbatim (no `..` check): for crafting hostile layers.
    pub fn raw(&mut self, mut h: tar::Header, name: &str, link: Option<&str>, data: &[u8]) -> &mut Self {
        h.set_size(data.len() as u64);
        {
            let gnu = h.as_gnu_mut().expect("gnu header");
            assert!(name.len() < gnu.name.len(), "raw names must fit the header");
            gnu.name = [0; 100];
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                gnu.linkname = [0; 100];
                gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_cksum();
        self.tar.append(&h, data).expect("in-memory tar");
        self
    }

    fn append(&mut self, mut h: tar::Header, path: &str, data: &[u8]) -> &mut Self {
        let path = path.trim_start_matches('/');
        self.tar.append_data(&mut h, path, data).expect("in-memory tar");
        self
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.append(header(tar::EntryType::Directory, mode, 0), path, &[])
    }

    pub fn file(&mut self, path: &str, data: &[u8], mode: u32) -> &mut Self {
        self.append(header(tar::EntryType::Regular, mode, data.len() as u64), path, data)
    }

    pub fn file_owned(&mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> &mut Self {
        let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.append(h, path, data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        self.tar.append_link(&mut h, path.trim_start_matches('/'), target).expect("in-memory tar");
        self
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = header(tar::EntryType::Link, 0o644, 0);
        self.tar
            .append_link(&mut h, path.trim_start_matches('/'), target.trim_start_matches('/'))
            .expect("in-memory tar");
        self
    }

    /// `.wh.NAME` next to `path`.
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let p = Path::new(path.trim_start_matches('/'));
        let name = p.file_name().expect("whiteout of a named path").to_string_lossy();
        let wh = p.with_file_name(format!(".wh.{name}"));
        self.file(&wh.to_string_lossy(), &[], 0o600)
    }

    /// `.wh..wh..opq` inside `dir`.
    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        let p = Path::new(dir.trim_start_matches('/')).join(".wh..wh..opq");
        self.file(&p.to_string_lossy(), &[], 0o600)
    }

    pub fn device(&mut self, path: &str, block: bool, major: u32, minor: u32) -> &mut Self {
        let kind = if block { tar::EntryType::Block } else { tar::EntryType::Char };
        let mut h = header(kind, 0o666, 0);
        h.set_device_major(major).expect("gnu header");
        h.set_device_minor(minor).expect("gnu header");
        self.append(h, path, &[])
    }

    pub fn fifo(&mut self, path: &str) -> &mut Self {
        self.append(header(tar::EntryType::Fifo, 0o644, 0), path, &[])
    }

    /// A file with PAX records (xattrs: `SCHILY.xattr.NAME`).
    pub fn file_with_pax(&mut self, path: &str, data: &[u8], mode: u32, pax: &[(&str, &[u8])]) -> &mut Self {
        self.tar.append_pax_extensions(pax.iter().copied()).expect("in-memory tar");
        self.file(path, data, mode)
    }

    /// A PAX extended header that applies to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.tar.append_pax_extensions(records.iter().copied()).expect("in-memory tar");
        self
    }

    /// A GNU sparse file whose expanded size is `real_size`: one data byte at the very end,
    /// a hole before it (10 KiB of archive, `real_size` bytes once written out).
    pub fn sparse(&mut self, path: &str, real_size: u64) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_mode(0o644);
        h.set_size(1);
        {
            let gnu = h.as_gnu_mut().expect("gnu header");
            let octal = |v: u64, out: &mut [u8]| {
                let s = format!("{v:0width$o}", width = out.len() - 1);
                out[..s.len()].copy_from_slice(s.as_bytes());
            };
            octal(real_size, &mut gnu.realsize);
            octal(real_size - 1, &mut gnu.sparse[0].offset);
            octal(1, &mut gnu.sparse[0].numbytes);
        }
        self.tar.append_data(&mut h, path, &b"x"[..]).expect("in-memory tar");
        self
    }

    /// The finished, uncompressed tar stream.
    pub fn finish(self) -> Vec<u8> {
        self.tar.into_inner().expect("in-memory tar")
    }
}

/// Layer compression in a built image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    None,
    Gzip,
    Zstd,
}

pub fn compress(tar: &[u8], c: Compress) -> Vec<u8> {
    match c {
        Compress::None => tar.to_vec(),
        Compress::Gzip => {
            let mut e = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::new(6));
            e.write_all(tar).expect("in-memory gzip");
            e.finish().expect("in-memory gzip")
        }
        Compress::Zstd => zstd::encode_all(tar, 3).expect("in-memory zstd"),
    }
}

/// An image: layers (uncompressed tars) plus the `config` section of the image config.
pub struct ImageBuilder {
    pub layers: Vec<Vec<u8>>,
    pub config: Value,
    pub compression: Compress,
    /// The platform recorded in the config (default: this machine's).
    pub platform: Option<crate::fetch::Platform>,
}

/// A built image's blobs.
pub struct Built {
    /// Every blob: (digest, content).
    pub blobs: Vec<(Digest, Vec<u8>)>,
    pub manifest: Digest,
    pub manifest_bytes: Vec<u8>,
    pub config: Digest,
    pub config_bytes: Vec<u8>,
    /// Layer blob digests (compressed as built).
    pub layers: Vec<Digest>,
}

impl ImageBuilder {
    pub fn new(layers: Vec<Vec<u8>>, config: Value) -> Self {
        ImageBuilder { layers, config, compression: Compress::Gzip, platform: None }
    }

    pub fn build(&self) -> Built {
        let media = match self.compression {
            Compress::None => "application/vnd.oci.image.layer.v1.tar",
            Compress::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compress::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        };
        let mut blobs = Vec::new();
        let mut layer_descs = Vec::new();
        let mut diff_ids = Vec::new();
        let mut layers = Vec::new();
        for tar in &self.layers {
            diff_ids.push(Digest::of_bytes(tar).to_string());
            let blob = compress(tar, self.compression);
            let d = Digest::of_bytes(&blob);
            layer_descs.push(json!({"mediaType": media, "digest": d.to_string(), "size": blob.len()}));
            layers.push(d.clone());
            blobs.push((d, blob));
        }
        let host = crate::fetch::Platform::host();
        let platform = self.platform.as_ref().unwrap_or(&host);
        let config = json!({
            "created": "2023-11-14T22:13:20Z",
            "architecture": platform.arch,
            "os": platform.os,
            "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": self.layers.iter().map(|_| json!({"created": "2023-11-14T22:13:20Z", "created_by": "hoist oci_build"})).collect::<Vec<_>>(),
        });
        let mut config = config;
        if let Some(v) = &platform.variant {
            config["variant"] = v.clone().into();
        }
        let config_bytes = serde_json::to_vec(&config).expect("json");
        let config_digest = Digest::of_bytes(&config_bytes);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_bytes.len()},
            "layers": layer_descs,
        });
        let manifest_bytes = serde_json::to_vec(&manifest).expect("json");
        let manifest_digest = Digest::of_bytes(&manifest_bytes);
        blobs.push((config_digest.clone(), config_bytes.clone()));
        blobs.push((manifest_digest.clone(), manifest_bytes.clone()));
        Built { blobs, manifest: manifest_digest, manifest_bytes, config: config_digest, config_bytes, layers }
    }
}

impl Built {
    fn index(&self, ref_name: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": self.manifest.to_string(),
                "size": self.manifest_bytes.len(),
                "annotations": {"org.opencontainers.image.ref.name": ref_name},
            }],
        }))
        .expect("json")
    }

    /// Writes an OCI image layout directory.
    pub fn write_oci_dir(&self, dir: &Path, ref_name: &str) -> io::Result<()> {
        std::fs::create_dir_all(dir.join("blobs/sha256"))?;
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        std::fs::write(dir.join("index.json"), self.index(ref_name))?;
        for (d, data) in &self.blobs {
            std::fs::write(dir.join("blobs/sha256").join(d.hex()), data)?;
        }
        Ok(())
    }

    fn tar_of(files: Vec<(String, &[u8])>) -> Vec<u8> {
        let mut b = LayerBuilder::new();
        b.dir("blobs", 0o755).dir("blobs/sha256", 0o755);
        for (name, data) in files {
            b.file(&name, data, 0o644);
        }
        b.finish()
    }

    /// An `oci-archive` tar (a tarred OCI layout).
    pub fn oci_archive(&self, ref_name: &str) -> Vec<u8> {
        let index = self.index(ref_name);
        let mut files: Vec<(String, &[u8])> =
            vec![("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#), ("index.json".into(), &index)];
        files.extend(self.blobs.iter().map(|(d, data)| (format!("blobs/sha256/{}", d.hex()), data.as_slice())));
        Self::tar_of(files)
    }

    /// A `docker-archive` tar (`docker save` layout, uncompressed layers) tagged `repo_tag`.
    pub fn docker_archive(&self, layer_tars: &[Vec<u8>], repo_tag: &str) -> Vec<u8> {
        let cfg_name = format!("{}.json", self.config.hex());
        let layer_names: Vec<String> =
            layer_tars.iter().map(|t| format!("{}/layer.tar", Digest::of_bytes(t).hex())).collect();
        let manifest =
            serde_json::to_vec(&json!([{"Config": cfg_name, "RepoTags": [repo_tag], "Layers": layer_names}]))
                .expect("json");
        let mut b = LayerBuilder::new();
        b.file("manifest.json", &manifest, 0o644).file(&cfg_name, &self.config_bytes, 0o644);
        for (name, tar) in layer_names.iter().zip(layer_tars) {
            b.file(name, tar, 0o644);
        }
        b.finish()
    }
}

/// Writes an OCI layout directory whose `ref_name` is a multi-platform image index over `images`
/// (each built with its [`ImageBuilder::platform`]).
pub fn write_index_dir(dir: &Path, ref_name: &str, images: &[(&Built, &crate::fetch::Platform)]) -> io::Result<()> {
    std::fs::create_dir_all(dir.join("blobs/sha256"))?;
    let mut manifests = Vec::new();
    for (built, p) in images {
        for (d, data) in &built.blobs {
            std::fs::write(dir.join("blobs/sha256").join(d.hex()), data)?;
        }
        let mut platform = json!({"os": p.os, "architecture": p.arch});
        if let Some(v) = &p.variant {
            platform["variant"] = v.clone().into();
        }
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": built.manifest.to_string(),
            "size": built.manifest_bytes.len(),
            "platform": platform,
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .expect("json");
    let index_digest = Digest::of_bytes(&index);
    std::fs::write(dir.join("blobs/sha256").join(index_digest.hex()), &index)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let top = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest.to_string(),
            "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": ref_name},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).expect("json"))
}
