//! `hoist images export IMAGE DEST`: a stored image written the way the containers tools read
//! it, byte for byte (the manifest, config and compressed layer blobs as pulled, so digests and
//! signatures still hold).
//!
//! - `oci:DIR[:REF]`: an OCI image layout (`oci-layout`, `index.json` with one manifest whose
//!   `org.opencontainers.image.ref.name` is REF — default the image's tag — and `blobs/sha256/`).
//!   DIR must not exist or be empty; the layout is written beside it and renamed into place.
//! - `oci-archive:FILE[:REF]`: the same layout as a tar.
//! - `docker-archive:FILE[:NAME[:TAG]]`: `docker save`'s format (`manifest.json` with RepoTags —
//!   default the stored name — the config as `<hex>.json`, each layer as `<hex>.tar` holding its
//!   blob as stored, compressed: `docker load` and skopeo read compressed layers).
//!
//! Archives are written to `FILE.tmp-<pid>` and renamed: a failed export leaves nothing. Entries
//! are sorted, owned by 0:0, mode 0644 (0755 for directories), time 0: the same image exports to
//! the same bytes. Layer blobs a pull did not keep are fetched again first
//! ([`crate::fetch::ensure_blobs`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use super::{ImagesError, Result};
use crate::digest::Digest;
use crate::imgref::{ArchiveRef, Source};
use crate::store::{Store, StoredImage};

/// What was written.
#[derive(Debug, Serialize)]
pub struct Exported {
    pub image: String,
    pub dest: String,
    pub digest: Digest,
    /// Files (blobs and documents) in the export.
    pub files: usize,
}

/// One file of the export: its path inside the layout or archive, and where its bytes are.
enum Content {
    Bytes(Vec<u8>),
    Blob(Digest),
}

fn fail(dest: &Path, reason: impl std::fmt::Display) -> ImagesError {
    ImagesError::Export { dest: dest.to_path_buf(), reason: reason.to_string() }
}

/// Writes `img` (every blob present: see [`crate::fetch::ensure_blobs`]) to `dest`.
pub fn export(store: &Store, img: &StoredImage, dest: &Source) -> Result<Exported> {
    let manifest_bytes = store.read_blob(&img.manifest)?;
    let manifest = store.manifest(&img.manifest)?;
    let digest_of = |d: &oci_spec::image::Digest| -> Result<Digest> {
        d.to_string().parse().map_err(|e: crate::digest::InvalidDigest| fail(Path::new("."), e))
    };
    let config = digest_of(manifest.config().digest())?;
    let mut layers: Vec<Digest> = Vec::new();
    for l in manifest.layers() {
        layers.push(digest_of(l.digest())?);
    }
    let blob = |d: &Digest| (format!("blobs/sha256/{}", d.hex()), Content::Blob(d.clone()));
    let (path, files) = match dest {
        Source::OciDir { path, reference } | Source::OciArchive { path, reference } => {
            let media_type = serde_json::from_slice::<serde_json::Value>(&manifest_bytes)
                .ok()
                .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(str::to_string))
                .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".to_string());
            let ref_name = reference.clone().unwrap_or_else(|| img.name.tag.clone());
            let index = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{
                    "mediaType": media_type,
                    "digest": img.manifest.to_string(),
                    "size": manifest_bytes.len(),
                    "annotations": {"org.opencontainers.image.ref.name": ref_name},
                }],
            });
            let mut files = vec![
                ("oci-layout".to_string(), Content::Bytes(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec())),
                ("index.json".to_string(), Content::Bytes(serde_json::to_vec(&index).expect("serializes"))),
                blob(&img.manifest),
                blob(&config),
            ];
            files.extend(layers.iter().map(blob));
            (path.clone(), files)
        }
        Source::DockerArchive { path, reference } => {
            let tag = match reference {
                Some(ArchiveRef::Named(n)) => n.clone(),
                Some(ArchiveRef::Index(_)) => return Err(fail(path, "an export names its image NAME[:TAG], not @N")),
                None => img.name.to_string(),
            };
            let doc = json!([{
                "Config": format!("{}.json", config.hex()),
                "RepoTags": [tag],
                "Layers": layers.iter().map(|l| format!("{}.tar", l.hex())).collect::<Vec<_>>(),
            }]);
            let mut files = vec![
                ("manifest.json".to_string(), Content::Bytes(serde_json::to_vec(&doc).expect("serializes"))),
                (format!("{}.json", config.hex()), Content::Blob(config.clone())),
            ];
            files.extend(layers.iter().map(|l| (format!("{}.tar", l.hex()), Content::Blob(l.clone()))));
            (path.clone(), files)
        }
        Source::Registry(_) => return Err(fail(Path::new("."), "exporting to a registry is `hoist push`")),
    };
    // One entry per name (an image may list a layer twice).
    let mut files = files;
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.dedup_by(|a, b| a.0 == b.0);
    match dest {
        Source::OciDir { .. } => write_dir(store, &path, &files)?,
        _ => write_tar(store, &path, &files)?,
    }
    Ok(Exported {
        image: img.name.to_string(),
        dest: dest.to_string(),
        digest: img.manifest.clone(),
        files: files.len(),
    })
}

fn write_dir(store: &Store, dir: &Path, files: &[(String, Content)]) -> Result<()> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(fail(dir, "exists and is not empty"));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(dir, e)),
    }
    let tmp = sibling(dir);
    let result = (|| -> std::io::Result<()> {
        for (name, content) in files {
            let p = tmp.join(name);
            fs::create_dir_all(p.parent().expect("inside the layout"))?;
            match content {
                Content::Bytes(b) => fs::write(&p, b)?,
                Content::Blob(d) => {
                    // A hard link where the filesystem allows it (the store's blobs are
                    // immutable), else a copy.
                    if fs::hard_link(store.blob_path(d), &p).is_err() {
                        fs::copy(store.blob_path(d), &p)?;
                    }
                }
            }
        }
        let _ = fs::remove_dir(dir);
        fs::rename(&tmp, dir)
    })();
    result.map_err(|e| {
        let _ = fs::remove_dir_all(&tmp);
        fail(dir, e)
    })
}

fn write_tar(store: &Store, file: &Path, files: &[(String, Content)]) -> Result<()> {
    if file.exists() {
        return Err(fail(file, "exists (remove it first)"));
    }
    let tmp = sibling(file);
    let result = (|| -> std::io::Result<()> {
        let out = fs::File::create(&tmp)?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(out));
        let mut dirs: Vec<String> = Vec::new();
        for (name, content) in files {
            if let Some((parent, _)) = name.rsplit_once('/') {
                let mut prefix = String::new();
                for part in parent.split('/') {
                    prefix = if prefix.is_empty() { part.to_string() } else { format!("{prefix}/{part}") };
                    if !dirs.contains(&prefix) {
                        dirs.push(prefix.clone());
                        let mut h = header(tar::EntryType::Directory, 0o755, 0);
                        tar.append_data(&mut h, format!("{prefix}/"), std::io::empty())?;
                    }
                }
            }
            match content {
                Content::Bytes(b) => {
                    let mut h = header(tar::EntryType::Regular, 0o644, b.len() as u64);
                    tar.append_data(&mut h, name, b.as_slice())?;
                }
                Content::Blob(d) => {
                    let f = fs::File::open(store.blob_path(d))?;
                    let mut h = header(tar::EntryType::Regular, 0o644, f.metadata()?.len());
                    tar.append_data(&mut h, name, f)?;
                }
            }
        }
        let mut w = tar.into_inner()?;
        w.flush()?;
        w.get_ref().sync_all()?;
        drop(w);
        fs::rename(&tmp, file)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        fail(file, e)
    })
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// `PATH.tmp-<pid>` beside `path`.
fn sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}
