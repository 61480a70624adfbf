//! `hoist images build`: a layered image — a base image's layers reused untouched (never
//! recompressed, so they dedupe in every registry and store) plus one new layer per `--add`
//! (`--exports DIR` is `--add DIR:/exports`, checked first the way `install` reads it), and the
//! config edited — stored under `--tag` like a pulled image.
//!
//! New layers are streamed (tar → gzip → the store, the uncompressed stream hashed on the way
//! for its diff_id), never held in memory. They are reproducible: entries sorted by name,
//! owners and modes as on disk, mtimes clamped to `SOURCE_DATE_EPOCH` when it is set (and the
//! config's `created` set to it), gzip without a name or time. Two builds of the same inputs
//! with the same `SOURCE_DATE_EPOCH` give the same digests.
//!
//! `--tag NAME:VERSION-RELEASE` sets the labels `name`, `version` and `release` (Fedora's
//! layered-image convention; `NAME` is the repository's last component).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{ImagesError, Result};
use crate::digest::Digest;
use crate::imgref::ImageName;
use crate::rooted::{Kind, RootDir};
use crate::store::{Store, StoredImage, Transport};

/// What to build.
#[derive(Debug, Default)]
pub struct BuildSpec {
    /// The base image (None: scratch).
    pub from: Option<StoredImage>,
    pub tag: Option<ImageName>,
    /// One layer each, in order.
    pub adds: Vec<Add>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// `SOURCE_DATE_EPOCH`.
    pub epoch: Option<u64>,
    /// The image's health check: a shell command and its interval (docker's `Healthcheck`).
    pub healthcheck: Option<(String, Option<std::time::Duration>)>,
    /// Docker v2 schema 2 media types instead of OCI ones.
    pub docker_format: bool,
}

/// A directory added as one layer.
#[derive(Debug)]
pub struct Add {
    pub dir: PathBuf,
    /// Where its contents go in the image.
    pub dest: String,
    /// The layer makes DEST exactly the directory (an opaque whiteout hides what lower layers
    /// had there): `--exports`, so the base's own /exports files do not survive beside DIR's.
    pub replace: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct BuiltImage {
    pub name: String,
    pub digest: Digest,
    pub layers_reused: usize,
    pub layers_added: usize,
}

fn bad(image: &str, reason: impl std::fmt::Display) -> ImagesError {
    ImagesError::Bad { image: image.to_string(), reason: reason.to_string() }
}

/// Builds and stores the image (the base's blobs must be present: `fetch::ensure_blobs`).
pub fn build(store: &Store, spec: &BuildSpec) -> Result<BuiltImage> {
    let tag = spec.tag.clone().ok_or_else(|| bad("(build)", "--tag is required"))?;
    let label = tag.to_string();
    let (mut config, base_layers): (Value, Vec<Value>) = match &spec.from {
        Some(base) => {
            let m: Value = serde_json::from_slice(&store.read_blob(&base.manifest)?).map_err(|e| bad(&label, e))?;
            let manifest = store.manifest(&base.manifest)?;
            let c = store.config_value(&manifest)?;
            (c, m["layers"].as_array().cloned().unwrap_or_default())
        }
        None => {
            let host = crate::fetch::Platform::host();
            (
                json!({"architecture": host.arch, "os": host.os, "config": {}, "rootfs": {"type": "layers", "diff_ids": []}, "history": []}),
                vec![],
            )
        }
    };
    let created = match spec.epoch {
        Some(e) => crate::fsutil::rfc3339(e),
        None => crate::fsutil::rfc3339(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        ),
    };
    let mut layers = base_layers.clone();
    for Add { dir, dest, replace } in &spec.adds {
        let (blob, size, diff_id) = add_layer(store, dir, dest, *replace, spec.epoch).map_err(|e| bad(&label, e))?;
        layers.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob.to_string(), "size": size}));
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .ok_or_else(|| bad(&label, "base config has no rootfs.diff_ids"))?
            .push(diff_id.to_string().into());
        let history = config.get_mut("history").and_then(Value::as_array_mut);
        let entry =
            json!({"created": created, "created_by": format!("hoist images build --add {}:{dest}", dir.display())});
        match history {
            Some(h) => h.push(entry),
            None => config["history"] = json!([entry]),
        }
    }
    let c = config.get_mut("config").filter(|c| c.is_object()).map(|_| ()).is_some();
    if !c {
        config["config"] = json!({});
    }
    let cfg = &mut config["config"];
    if let Some(e) = &spec.entrypoint {
        cfg["Entrypoint"] = json!(e);
    }
    if let Some(c) = &spec.cmd {
        cfg["Cmd"] = json!(c);
    }
    if !spec.env.is_empty() {
        let mut env: Vec<String> = cfg["Env"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        for (k, v) in &spec.env {
            env.retain(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) != k);
            env.push(format!("{k}={v}"));
        }
        cfg["Env"] = json!(env);
    }
    let mut labels: BTreeMap<String, String> = cfg["Labels"]
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default();
    if let Some((version, release)) = tag.tag.rsplit_once('-').filter(|(v, r)| !v.is_empty() && !r.is_empty()) {
        let name = tag.repository.rsplit('/').next().unwrap_or(&tag.repository);
        labels.insert("name".into(), name.to_string());
        labels.insert("version".into(), version.to_string());
        labels.insert("release".into(), release.to_string());
    }
    for (k, v) in &spec.labels {
        labels.insert(k.clone(), v.clone());
    }
    if !labels.is_empty() {
        cfg["Labels"] = json!(labels);
    }
    if let Some(w) = &spec.workdir {
        cfg["WorkingDir"] = json!(w);
    }
    if let Some(u) = &spec.user {
        cfg["User"] = json!(u);
    }
    if let Some((cmd, interval)) = &spec.healthcheck {
        let mut hc = json!({"Test": ["CMD-SHELL", cmd]});
        if let Some(i) = interval {
            hc["Interval"] = json!(i.as_nanos() as u64);
        }
        cfg["Healthcheck"] = hc;
    }
    config["created"] = json!(created);
    let config_bytes = serde_json::to_vec(&config).map_err(|e| bad(&label, e))?;
    let config_digest = store.put_bytes("config", &config_bytes, None)?;
    let (manifest_type, config_type, gzip_layer) = if spec.docker_format {
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    };
    // Layers keep their blobs; only the media type names the format (gzip either way).
    let oci_gzip = ["application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip"];
    for l in layers.iter_mut() {
        if l["mediaType"].as_str().is_some_and(|m| oci_gzip.contains(&m)) {
            l["mediaType"] = json!(gzip_layer);
        }
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| bad(&label, e))?;
    let digest = store.put_bytes("manifest", &manifest_bytes, None)?;
    let media = if spec.docker_format {
        oci_spec::image::MediaType::Other(manifest_type.to_string())
    } else {
        oci_spec::image::MediaType::ImageManifest
    };
    store.set_ref(&tag, &digest, media, "", Transport::Verified, None, None)?;
    Ok(BuiltImage { name: label, digest, layers_reused: base_layers.len(), layers_added: spec.adds.len() })
}

/// Hashes what passes through (the uncompressed tar: the diff_id).
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One layer: `dir`'s tree under `dest`, gzip-compressed into the store; with `replace`, an
/// opaque whiteout (`DEST/.wh..wh..opq`) first, so DEST holds exactly `dir`. Returns the blob's
/// digest and size and the layer's diff_id.
fn add_layer(
    store: &Store,
    dir: &Path,
    dest: &str,
    replace: bool,
    epoch: Option<u64>,
) -> io::Result<(Digest, u64, Digest)> {
    let meta = fs::symlink_metadata(dir).map_err(|e| at(dir, e))?;
    if !meta.is_dir() {
        return Err(at(dir, io::Error::other("not a directory")));
    }
    let dest = dest.trim_matches('/');
    if dest.split('/').any(|c| c == ".." || c == ".") {
        return Err(io::Error::other(format!("destination /{dest}: '.' and '..' are not allowed")));
    }
    let writer = store.blob_writer().map_err(io::Error::other)?;
    let gz = flate2::GzBuilder::new().mtime(0).write(writer, flate2::Compression::default());
    let mut tar = tar::Builder::new(Hashing { inner: gz, hash: Sha256::new() });
    tar.follow_symlinks(false);
    // The destination's parents, as plain 0755 root directories.
    let mut prefix = String::new();
    for part in dest.split('/').filter(|p| !p.is_empty()) {
        prefix = if prefix.is_empty() { part.to_string() } else { format!("{prefix}/{part}") };
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if prefix == dest { meta.permissions().mode() & 0o7777 } else { 0o755 });
        h.set_uid(if prefix == dest { meta.uid().into() } else { 0 });
        h.set_gid(if prefix == dest { meta.gid().into() } else { 0 });
        h.set_mtime(clamp(meta.mtime().max(0) as u64, epoch));
        h.set_size(0);
        tar.append_data(&mut h, format!("{prefix}/"), io::empty())?;
    }
    if replace && !dest.is_empty() {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0);
        h.set_mtime(clamp(meta.mtime().max(0) as u64, epoch));
        h.set_size(0);
        tar.append_data(&mut h, format!("{dest}/.wh..wh..opq"), io::empty())?;
    }
    let root = RootDir::open(dir).map_err(|e| at(dir, e))?;
    walk(&mut tar, &root, Path::new(""), dest, epoch)?;
    let hashing = tar.into_inner()?;
    let diff_id = Digest::from_hex(&hex::encode(hashing.hash.finalize())).map_err(io::Error::other)?;
    let writer = hashing.inner.finish()?;
    let (blob, size) = writer.commit("layer", None, None).map_err(io::Error::other)?;
    Ok((blob, size, diff_id))
}

fn clamp(mtime: u64, epoch: Option<u64>) -> u64 {
    epoch.map_or(mtime, |e| mtime.min(e))
}

fn at(p: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", p.display()))
}

/// Adds the tree beneath `root` at `rel` (recursively, sorted by name) as `dest/rel`. Every
/// entry is reached beneath `root`'s fd with no symlink followed, and a file is read through
/// the regular file it was when it was looked at (a FIFO or a swapped-in symlink is refused,
/// never opened through).
fn walk<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &RootDir,
    rel: &Path,
    dest: &str,
    epoch: Option<u64>,
) -> io::Result<()> {
    let dir = root.open_dir(rel).map_err(|e| at(&root.display(rel), e))?;
    let mut names: Vec<std::ffi::OsString> = Vec::new();
    for e in rustix::fs::Dir::read_from(dir.fd()).map_err(|e| at(&root.display(rel), e.into()))? {
        let e = e.map_err(|e| at(&root.display(rel), e.into()))?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(std::ffi::OsStr::from_bytes(n).to_os_string());
        }
    }
    names.sort();
    for n in names {
        let rel = rel.join(&n);
        let path = root.display(&rel);
        let relname = rel.to_string_lossy();
        let name = if dest.is_empty() { relname.into_owned() } else { format!("{dest}/{relname}") };
        let Some(st) = root.stat(&rel).map_err(|e| at(&path, e))? else {
            return Err(at(&path, io::Error::from(io::ErrorKind::NotFound)));
        };
        let mut h = tar::Header::new_gnu();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid.into());
        h.set_gid(st.st_gid.into());
        h.set_mtime(clamp(st.st_mtime.max(0) as u64, epoch));
        match Kind::of(&st) {
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                tar.append_data(&mut h, format!("{name}/"), io::empty())?;
                walk(tar, root, &rel, dest, epoch)?;
            }
            Kind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                let target = root.read_link(&rel).map_err(|e| at(&path, e))?;
                tar.append_link(&mut h, &name, &target)?;
            }
            Kind::File => {
                let f = root.open_file(&rel).map_err(|e| at(&path, e))?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(f.metadata()?.len());
                tar.append_data(&mut h, &name, f)?;
            }
            Kind::Other => {
                return Err(at(
                    &path,
                    io::Error::other("not a file, directory or symlink (devices, FIFOs and sockets are refused)"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks an `/exports` directory the way `install` will read it, before anything is built:
/// `manifest.json` is a JSON object whose `defaultValues` are strings and whose `renameFiles`
/// map `/exports/hostfs` paths to absolute host paths without `..`; every template parses.
/// Returns the variables the templates use with no default (they must be `--set` at install).
pub fn check_exports(dir: &Path) -> std::result::Result<Vec<String>, String> {
    let read = |name: &str| -> std::result::Result<Option<String>, String> {
        // As install reads them: beneath the directory, regular files only (a symlink is refused).
        let root = RootDir::open(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        crate::ops::slot::read_text(&root, Path::new(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    let mut defaults = BTreeMap::new();
    if let Some(text) = read("manifest.json")? {
        let m: Value = serde_json::from_str(&text).map_err(|e| format!("manifest.json: {e}"))?;
        let obj = m.as_object().ok_or("manifest.json: not a JSON object")?;
        if let Some(d) = obj.get("defaultValues") {
            for (k, v) in d.as_object().ok_or("manifest.json: defaultValues is not an object")? {
                let v = v.as_str().ok_or_else(|| format!("manifest.json: defaultValues.{k} is not a string"))?;
                defaults.insert(k.clone(), v.to_string());
            }
        }
        if let Some(r) = obj.get("renameFiles") {
            for (from, to) in r.as_object().ok_or("manifest.json: renameFiles is not an object")? {
                let to = to.as_str().ok_or_else(|| format!("manifest.json: renameFiles.{from} is not a string"))?;
                let sane = |p: &str| p.starts_with('/') && !p.split('/').any(|c| c == "..");
                if !sane(from) || !sane(to.split('$').next().unwrap_or("")) && !to.starts_with('$') {
                    return Err(format!(
                        "manifest.json: renameFiles {from:?} -> {to:?}: paths must be absolute, without '..'"
                    ));
                }
            }
        }
    }
    let mut required = std::collections::BTreeSet::new();
    for name in ["config.json.template", "service.template", "tmpfiles.template"] {
        if let Some(text) = read(name)? {
            for v in crate::template::variables(name, &text).map_err(|e| e.to_string())? {
                if !defaults.contains_key(&v)
                    && !crate::deploy::values::FORCED.contains(&v.as_str())
                    && !crate::deploy::values::OVERRIDABLE.contains(&v.as_str())
                {
                    required.insert(v);
                }
            }
        }
    }
    Ok(required.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_read_as_install_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let ex = dir.path().join("exports");
        fs::create_dir(&ex).unwrap();
        fs::write(ex.join("service.template"), "[Service]\nExecStart=$EXEC_START $PORT\n").unwrap();
        fs::write(ex.join("manifest.json"), r#"{"defaultValues": {"PORT": "1"}}"#).unwrap();
        assert_eq!(check_exports(&ex), Ok(vec![]));
        fs::remove_file(ex.join("manifest.json")).unwrap();
        assert_eq!(check_exports(&ex), Ok(vec!["PORT".to_string()]));
        // A symlinked file is refused, as install refuses it (never read through).
        fs::write(dir.path().join("elsewhere.json"), "{}").unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere.json"), ex.join("manifest.json")).unwrap();
        assert_eq!(
            check_exports(&ex),
            Err(format!(
                "{}: is a symlink (hoist reads /exports files only as regular files)",
                ex.join("manifest.json").display()
            ))
        );
    }

    #[test]
    fn a_context_is_walked_beneath_its_fd_and_refuses_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::layout::Layout::new(dir.path().join("root"))).unwrap();
        let ctx = dir.path().join("ctx");
        fs::create_dir_all(ctx.join("a")).unwrap();
        fs::write(ctx.join("a/f"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", ctx.join("a/l")).unwrap();
        let (_, _, diff1) = add_layer(&store, &ctx, "/", false, Some(1)).unwrap();
        let (_, _, diff2) = add_layer(&store, &ctx, "/", false, Some(1)).unwrap();
        assert_eq!(diff1, diff2, "reproducible");
        nix::unistd::mkfifo(&ctx.join("a/p"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let e = add_layer(&store, &ctx, "/", false, Some(1)).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: not a file, directory or symlink (devices, FIFOs and sockets are refused)",
                ctx.join("a/p").display()
            )
        );
    }
}
