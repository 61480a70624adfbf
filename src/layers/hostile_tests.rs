//! The layers of the security probe (issue "a hostile image must not reach the host"), one test
//! each: every one is refused or harmless, and a canary tree outside the state root is compared
//! before and after (owners, modes, xattrs, mtimes, contents).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::oci_build::{Compress, LayerBuilder, compress};

/// A tree outside the state root that hostile layers aim at.
struct Canary {
    dir: PathBuf,
}

type Snapshot = BTreeMap<PathBuf, (u32, u32, u32, i64, Vec<u8>, Vec<(String, Vec<u8>)>)>;

impl Canary {
    fn new(base: &Path) -> Self {
        let dir = base.join("canary");
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("py"), b"#!/bin/python\n").unwrap();
        fs::write(dir.join("sub/secret"), b"SECRET=$TOKEN\n").unwrap();
        fs::set_permissions(dir.join("py"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        Canary { dir }
    }

    fn snapshot(&self) -> Snapshot {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(p) = stack.pop() {
            let m = fs::symlink_metadata(&p).unwrap();
            let data = if m.is_file() { fs::read(&p).unwrap() } else { Vec::new() };
            let f = crate::rooted::open_nofollow(&p).unwrap();
            let mut xattrs = crate::rooted::get_xattrs(std::os::fd::AsFd::as_fd(&f)).unwrap();
            xattrs.sort();
            out.insert(p.clone(), (m.uid(), m.gid(), m.mode(), m.mtime(), data, xattrs));
            if m.is_dir() {
                stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            }
        }
        out
    }
}

struct Probe {
    dir: tempfile::TempDir,
    layout: Layout,
    canary: Canary,
    before: Snapshot,
}

fn probe() -> Probe {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("root"));
    crate::store::Store::open(&layout).unwrap();
    let canary = Canary::new(dir.path());
    let before = canary.snapshot();
    Probe { dir, layout, canary, before }
}

impl Probe {
    fn extract(&self, tar: &[u8], opts: &ExtractOptions) -> Result<(Digest, LayerRecord)> {
        let blob = compress(tar, Compress::Gzip);
        let d = Digest::of_bytes(&blob);
        fs::write(self.layout.blob(&d), &blob).unwrap();
        let diff_id = Digest::of_bytes(tar);
        ensure_extracted(&self.layout, &d, Some("application/vnd.oci.image.layer.v1.tar+gzip"), &diff_id, opts)
            .map(|(rec, _)| (diff_id, rec))
    }

    fn rootfs(&self, diff_id: &Digest) -> PathBuf {
        self.layout.layer(diff_id).join("rootfs")
    }

    /// Nothing outside the state root changed.
    fn canary_intact(&self) {
        assert_eq!(self.canary.snapshot(), self.before, "the canary tree outside the root changed");
        assert!(self.dir.path().join("canary").exists());
    }
}

fn build(f: impl FnOnce(&mut LayerBuilder)) -> Vec<u8> {
    let mut b = LayerBuilder::new();
    f(&mut b);
    b.finish()
}

/// The reported attack: `a/` (0777, owner 4242, an xattr) and, in the same layer, `a -> DIR`,
/// then `SCHILY.xattr.security.capability` on `a/py`. The directory's queued metadata must not
/// land on DIR, and `a/py` goes through a symlink: refused.
#[test]
fn dir_metadata_never_follows_a_replacing_symlink() {
    let p = probe();
    let target = p.canary.dir.to_str().unwrap().to_string();
    let layer = build(|b| {
        b.pax(&[("SCHILY.xattr.user.pwn", b"1"), ("uid", b"4242"), ("gid", b"4242")]);
        b.dir("a", 0o777);
        b.symlink("a", &target);
    });
    let (id, _) = p.extract(&layer, &ExtractOptions::default()).unwrap();
    assert!(fs::symlink_metadata(p.rootfs(&id).join("a")).unwrap().file_type().is_symlink());
    p.canary_intact();
    // The same, then a file with a capability below the symlink.
    let layer = build(|b| {
        b.dir("b", 0o777);
        b.symlink("b", &target);
        b.file_with_pax("b/py", b"x", 0o755, &[("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02")]);
    });
    let err = p.extract(&layer, &ExtractOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "layer {}: entry \"b/py\": goes through symlink \"b\"",
            Digest::of_bytes(&compress(&layer, Compress::Gzip))
        )
    );
    p.canary_intact();
}

/// A FIFO, a plain file, or a symlink replacing a directory: the directory's mode is applied to
/// nothing (the file keeps its own mode), and extraction never blocks.
#[test]
fn replaced_directories_lose_their_queued_metadata() {
    let p = probe();
    let layer = build(|b| {
        b.dir("fifo", 0o4755);
        b.fifo("fifo");
        b.dir("file", 0o4755);
        b.file("file", b"plain", 0o644);
        b.dir("tree", 0o777);
        b.dir("tree/deep", 0o777);
        b.file("tree", b"now a file", 0o600);
        b.dir("tree2", 0o700);
        b.file("tree2/x", b"", 0o600);
    });
    let (id, _) = p.extract(&layer, &ExtractOptions::default()).unwrap();
    let r = p.rootfs(&id);
    let mode = |n: &str| fs::symlink_metadata(r.join(n)).unwrap().mode();
    assert_eq!(mode("file") & 0o7777, 0o644, "a file replacing a directory keeps its own mode");
    assert_eq!(mode("fifo") & 0o170000, 0o010000, "the FIFO stays a FIFO");
    assert_eq!(mode("fifo") & 0o7777, 0o644);
    assert_eq!(mode("tree") & 0o7777, 0o600);
    assert_eq!(mode("tree2") & 0o7777, 0o700);
    p.canary_intact();
}

/// 100,000 directory entries in one layer: bookkeeping is O(1) per entry (the old code took
/// 212 s of CPU; this takes about 10 s in a debug build, most of it mkdir).
#[test]
fn many_directories_are_linear() {
    let p = probe();
    let layer = build(|b| {
        for i in 0..100_000 {
            b.dir(&format!("d{}/e{i}", i % 100), 0o755);
        }
    });
    let (id, rec) = p.extract(&layer, &ExtractOptions::default()).unwrap();
    assert_eq!(rec.entries, 100_000);
    assert!(p.rootfs(&id).join("d99/e99999").is_dir());
}

/// A GNU sparse entry of 4 GiB in a ~10 KiB archive: the written bytes count.
#[test]
fn sparse_bomb_is_bounded_by_what_is_written() {
    let p = probe();
    let layer = build(|b| {
        b.sparse("bomb", 4 << 30);
    });
    assert!(layer.len() < 16 << 10);
    let mut opts = ExtractOptions::default();
    opts.limits.max_layer_bytes = 1_000_000;
    let err = p.extract(&layer, &opts).unwrap_err();
    assert!(
        err.to_string().ends_with("exceeds the limit of 1000000 bytes written (raise it with HOIST_MAX_LAYER_SIZE)"),
        "{err}"
    );
    let left: Vec<_> = fs::read_dir(p.layout.layers()).unwrap().collect();
    assert!(left.is_empty(), "nothing kept: {left:?}");
    // Within the limit it is written out in full.
    let layer = build(|b| {
        b.sparse("small", 4096);
    });
    let (id, _) = p.extract(&layer, &opts).unwrap();
    assert_eq!(fs::metadata(p.rootfs(&id).join("small")).unwrap().len(), 4096);
}

#[test]
fn malformed_whiteouts_are_refused() {
    for name in [".wh.", ".wh..", ".wh...", "dir/.wh.."] {
        let p = probe();
        let layer = build(|b| {
            b.file(name, b"", 0o600);
        });
        let err = p.extract(&layer, &ExtractOptions::default()).unwrap_err();
        assert!(err.to_string().ends_with(&format!("entry {name:?}: malformed whiteout (it names no file)")), "{err}");
    }
    // The opaque marker and ordinary whiteouts stay valid.
    let p = probe();
    let layer = build(|b| {
        b.opaque("d");
        b.whiteout("d/x");
        b.whiteout("..x");
    });
    p.extract(&layer, &ExtractOptions::default()).unwrap();
}

#[test]
fn ids_outside_u32_are_refused() {
    let p = probe();
    let layer = build(|b| {
        b.pax(&[("gid", b"4294967296")]);
        b.file("f", b"x", 0o644);
    });
    let err = p.extract(&layer, &ExtractOptions::default()).unwrap_err();
    assert!(err.to_string().ends_with("entry \"f\": gid 4294967296 is out of range"), "{err}");
    let layer = build(|b| {
        b.pax(&[("uid", b"-1")]);
        b.file("g", b"x", 0o644);
    });
    let err = p.extract(&layer, &ExtractOptions::default()).unwrap_err();
    assert!(err.to_string().ends_with("entry \"g\": uid -1 is out of range"), "{err}");
}

/// `--allow-devices` is decided per pull: a layer extracted without it is extracted again with
/// it, and the other way round.
#[test]
fn device_decision_is_per_pull() {
    if !crate::test_tier::privileged("layers::hostile_tests::device_decision_is_per_pull") {
        return;
    }
    let p = probe();
    let layer = build(|b| {
        b.device("dev/null", false, 1, 3);
        b.file("f", b"x", 0o644);
    });
    let (id, rec) = p.extract(&layer, &ExtractOptions::default()).unwrap();
    assert_eq!(rec.skipped_devices, ["dev/null"]);
    assert!(!p.rootfs(&id).join("dev/null").exists());
    let allow = ExtractOptions { allow_devices: true, ..Default::default() };
    let (_, rec) = p.extract(&layer, &allow).unwrap();
    assert_eq!((rec.skipped_devices.len(), rec.devices.as_slice()), (0, &["dev/null".to_string()][..]));
    assert!(fs::symlink_metadata(p.rootfs(&id).join("dev/null")).is_ok());
    let (_, rec) = p.extract(&layer, &ExtractOptions::default()).unwrap();
    assert_eq!(rec.skipped_devices, ["dev/null"]);
    assert!(!p.rootfs(&id).join("dev/null").exists(), "not reused silently");
    let names: Vec<_> = fs::read_dir(p.layout.layers()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [std::ffi::OsString::from(id.hex())], "no old tree left");
}

/// Hardlinks whose target path goes through a symlink in the same layer are refused.
#[test]
fn hardlink_through_symlink_is_refused() {
    let p = probe();
    let target = p.canary.dir.to_str().unwrap().to_string();
    let layer = build(|b| {
        b.symlink("l", &target);
        b.hardlink("h", "l/py");
    });
    let err = p.extract(&layer, &ExtractOptions::default()).unwrap_err();
    assert!(err.to_string().ends_with("hardlink to \"l/py\" goes through a symlink"), "{err}");
    p.canary_intact();
}
