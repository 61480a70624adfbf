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
//! Everything is written beneath the destination's parent directory, opened once: the export
//! goes to `.NAME.tmp-<pid>` there, created exclusively (`mkdirat`, `O_CREAT|O_EXCL`) and filled
//! through its fd with nothing followed, then renamed into place (never over an existing file;
//! a directory only over an empty one). A symlink planted under the temporary name in a
//! world-writable parent makes the export fail, never write elsewhere; a failed export leaves
//! nothing. Entries
//! are sorted, owned by 0:0, mode 0644 (0755 for directories), time 0: the same image exports to
//! the same bytes. Layer blobs a pull did not keep are fetched again first
//! ([`crate::fetch::ensure_blobs`]).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::path::Path;

use rustix::fs::AtFlags;

use serde::Serialize;
use serde_json::json;

use super::{ImagesError, Result};
use crate::digest::Digest;
use crate::imgref::{ArchiveRef, Source};
use crate::rooted::{Kind, RootDir};
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

/// The directory a destination is written in (opened once: everything after goes through its
/// fd; made first with its missing parents when `make`) and the destination's name in it.
fn parent_of(dest: &Path, make: bool) -> std::io::Result<(RootDir, OsString)> {
    let name = dest
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "names no file"))?
        .to_os_string();
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if make {
        fs::create_dir_all(parent)?;
    }
    Ok((RootDir::open(parent)?, name))
}

fn write_dir(store: &Store, dir: &Path, files: &[(String, Content)]) -> Result<()> {
    let (parent, name) = parent_of(dir, true).map_err(|e| fail(dir, e))?;
    match parent.stat(Path::new(&name)).map_err(|e| fail(dir, e))?.map(|st| Kind::of(&st)) {
        None => {}
        Some(Kind::Dir) => {
            let existing = parent.open_dir(Path::new(&name)).map_err(|e| fail(dir, e))?;
            let mut entries = rustix::fs::Dir::read_from(existing.fd()).map_err(|e| fail(dir, e))?;
            if entries.any(|e| e.is_ok_and(|e| ![&b"."[..], b".."].contains(&e.file_name().to_bytes()))) {
                return Err(fail(dir, "exists and is not empty"));
            }
        }
        Some(_) => return Err(fail(dir, "exists and is not a directory")),
    }
    let tmp = sibling(&name);
    // mkdirat: fails on anything already there (a planted symlink included).
    parent.mkdir(Path::new(&tmp), 0o755).map_err(|e| tmp_err(dir, &tmp, e))?;
    let result = (|| -> std::io::Result<()> {
        let out = parent.open_dir(Path::new(&tmp))?;
        for (rel, content) in files {
            let rel = Path::new(rel);
            out.mkdir_all(rel.parent().expect("inside the layout"), 0o755)?;
            match content {
                Content::Bytes(b) => out.create_file(rel, 0o644)?.write_all(b)?,
                Content::Blob(d) => {
                    // A hard link where the filesystem allows it (the store's blobs are
                    // immutable), else a copy.
                    let (at, leaf) = out.parent(rel)?;
                    if rustix::fs::linkat(rustix::fs::CWD, store.blob_path(d), &at, &*leaf, AtFlags::empty()).is_err() {
                        let mut from = fs::File::open(store.blob_path(d))?;
                        std::io::copy(&mut from, &mut out.create_file(rel, 0o644)?)?;
                    }
                }
            }
        }
        // Over an empty directory, or nothing: rename(2) replaces only an empty directory.
        parent.rename(Path::new(&tmp), Path::new(&name))
    })();
    result.map_err(|e| {
        let _ = parent.remove_all(Path::new(&tmp));
        fail(dir, e)
    })
}

fn write_tar(store: &Store, file: &Path, files: &[(String, Content)]) -> Result<()> {
    let (parent, name) = parent_of(file, false).map_err(|e| fail(file, e))?;
    if parent.stat(Path::new(&name)).map_err(|e| fail(file, e))?.is_some() {
        return Err(fail(file, "exists (remove it first)"));
    }
    let tmp = sibling(&name);
    // O_CREAT|O_EXCL beneath the parent's fd: never through a planted symlink.
    let out = parent.create_file(Path::new(&tmp), 0o644).map_err(|e| tmp_err(file, &tmp, e))?;
    let result = (|| -> std::io::Result<()> {
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
        let (from, to) = (parent.parent(Path::new(&tmp))?, parent.parent(Path::new(&name))?);
        Ok(rustix::fs::renameat_with(&from.0, &*from.1, &to.0, &*to.1, rustix::fs::RenameFlags::NOREPLACE)?)
    })();
    result.map_err(|e| {
        let _ = parent.remove_all(Path::new(&tmp));
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

/// Creating the temporary `tmp` beside `dest` failed: something already has its name.
fn tmp_err(dest: &Path, tmp: &OsStr, e: std::io::Error) -> ImagesError {
    match e.kind() {
        std::io::ErrorKind::AlreadyExists => fail(
            dest,
            format!("{} already exists beside it (not made by this export: remove it)", tmp.to_string_lossy()),
        ),
        _ => fail(dest, e),
    }
}

/// `.NAME.tmp-<pid>`, the name a destination is written under before it is renamed.
fn sibling(name: &OsStr) -> OsString {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}", std::process::id()));
    tmp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<(String, Content)> {
        vec![
            ("oci-layout".into(), Content::Bytes(b"{}".to_vec())),
            ("blobs/sha256/ab".into(), Content::Bytes(b"x".to_vec())),
        ]
    }

    #[test]
    fn a_symlink_planted_under_the_temporary_name_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::layout::Layout::new(dir.path().join("root"))).unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let victim_dir = dir.path().join("victim-dir");
        fs::create_dir(&victim_dir).unwrap();
        for (dest, target) in [(dir.path().join("out.tar"), &victim), (dir.path().join("layout"), &victim_dir)] {
            let planted = dir.path().join(sibling(dest.file_name().unwrap()));
            std::os::unix::fs::symlink(target, &planted).unwrap();
            let e = if dest.extension().is_some() {
                write_tar(&store, &dest, &files())
            } else {
                write_dir(&store, &dest, &files())
            };
            assert_eq!(
                e.unwrap_err().to_string(),
                format!(
                    "export to {}: {} already exists beside it (not made by this export: remove it)",
                    dest.display(),
                    planted.file_name().unwrap().to_string_lossy()
                )
            );
            assert!(!dest.exists());
            assert!(fs::symlink_metadata(&planted).unwrap().file_type().is_symlink());
            fs::remove_file(&planted).unwrap();
        }
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(fs::read_dir(&victim_dir).unwrap().count(), 0);
    }

    #[test]
    fn a_destination_is_written_whole_and_never_over_something() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::layout::Layout::new(dir.path().join("root"))).unwrap();
        let layout = dir.path().join("layout");
        fs::create_dir(&layout).unwrap();
        write_dir(&store, &layout, &files()).unwrap();
        assert_eq!(fs::read(layout.join("blobs/sha256/ab")).unwrap(), b"x");
        let e = write_dir(&store, &layout, &files()).unwrap_err().to_string();
        assert_eq!(e, format!("export to {}: exists and is not empty", layout.display()));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        let e = write_dir(&store, &link, &files()).unwrap_err().to_string();
        assert_eq!(e, format!("export to {}: exists and is not a directory", link.display()));
        let e = write_tar(&store, &link, &files()).unwrap_err().to_string();
        assert_eq!(e, format!("export to {}: exists (remove it first)", link.display()));
        assert!(!dir.path().join("elsewhere").exists());
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(!names.iter().any(|n| n.to_string_lossy().contains(".tmp-")), "{names:?}");
    }
}
