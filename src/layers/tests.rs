//! Extraction and checkout of crafted layers, hostile ones included.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;
use crate::checkout::{self, CheckoutError, LayerTree};
use crate::oci_build::{Compress, LayerBuilder, compress};

struct Env {
    _dir: tempfile::TempDir,
    layout: Layout,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path().join("root"));
    crate::store::Store::open(&layout).unwrap();
    Env { _dir: dir, layout }
}

impl Env {
    /// Stores `tar` (gzip-compressed) as a blob and extracts it.
    fn extract_with(&self, tar: &[u8], opts: &ExtractOptions) -> Result<(Digest, LayerRecord)> {
        let blob = compress(tar, Compress::Gzip);
        let d = Digest::of_bytes(&blob);
        fs::write(self.layout.blob(&d), &blob).unwrap();
        let diff_id = Digest::of_bytes(tar);
        ensure_extracted(&self.layout, &d, Some("application/vnd.oci.image.layer.v1.tar+gzip"), &diff_id, opts)
            .map(|(rec, _)| (diff_id, rec))
    }

    fn extract(&self, tar: &[u8]) -> Result<(Digest, LayerRecord)> {
        self.extract_with(tar, &ExtractOptions::default())
    }

    fn rootfs(&self, diff_id: &Digest) -> std::path::PathBuf {
        self.layout.layer(diff_id).join("rootfs")
    }

    /// Extracts each tar as a layer and merges them into `<tmp>/merged`.
    fn checkout(&self, tars: &[Vec<u8>]) -> Result<std::path::PathBuf, CheckoutError> {
        self.checkout_with(tars, &ExtractOptions::default())
    }

    fn checkout_with(&self, tars: &[Vec<u8>], opts: &ExtractOptions) -> Result<std::path::PathBuf, CheckoutError> {
        let layers: Vec<(Digest, LayerRecord)> = tars.iter().map(|t| self.extract_with(t, opts).unwrap()).collect();
        let trees: Vec<LayerTree<'_>> =
            layers.iter().map(|(id, rec)| LayerTree { diff_id: id, root: self.rootfs(id), record: rec }).collect();
        let dest = self.layout.root().join("merged");
        checkout::merge(&trees, &dest)?;
        Ok(dest)
    }

    fn no_leftovers(&self) {
        let left: Vec<_> = fs::read_dir(self.layout.layers())
            .map(|rd| rd.flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().starts_with(".tmp")).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "temporary extraction dirs left: {left:?}");
    }
}

fn tar(f: impl FnOnce(&mut LayerBuilder)) -> Vec<u8> {
    let mut b = LayerBuilder::new();
    f(&mut b);
    b.finish()
}

fn file_header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h
}

fn link_header(kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o777);
    h
}

#[test]
fn extracts_entries_with_metadata() {
    let e = env();
    let t = tar(|b| {
        b.dir("etc", 0o755)
            .file("etc/hostname", b"box\n", 0o644)
            .file_owned("usr/bin/su", b"#!", 0o4755, 0, 0)
            .file_owned("home/u/f", b"x", 0o600, 1000, 1000)
            .dir("ro", 0o555)
            .file("ro/inside", b"y", 0o444)
            .symlink("var/run", "/run")
            .hardlink("etc/hostname2", "etc/hostname")
            .fifo("run/fifo")
            .file_with_pax(
                "bin/ping",
                b"elf",
                0o755,
                &[("SCHILY.xattr.user.test", b"v"), ("SCHILY.xattr.trusted.evil", b"x")],
            );
    });
    let (id, rec) = e.extract(&t).unwrap();
    let r = e.rootfs(&id);
    assert_eq!(fs::read(r.join("etc/hostname")).unwrap(), b"box\n");
    let su = fs::metadata(r.join("usr/bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755, "setuid kept");
    let f = fs::metadata(r.join("home/u/f")).unwrap();
    assert_eq!(f.mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(r.join("ro")).unwrap().mode() & 0o777, 0o555);
    assert_eq!(fs::read_link(r.join("var/run")).unwrap(), Path::new("/run"));
    assert_eq!(
        fs::metadata(r.join("etc/hostname2")).unwrap().ino(),
        fs::metadata(r.join("etc/hostname")).unwrap().ino()
    );
    assert!(fs::symlink_metadata(r.join("run/fifo")).unwrap().file_type().is_fifo());
    assert_eq!(f.mtime(), crate::oci_build::EPOCH as i64);
    assert!(rec.implicit_dirs.contains(&"usr".to_string()) && rec.implicit_dirs.contains(&"usr/bin".to_string()));
    assert!(!rec.implicit_dirs.contains(&"etc".to_string()));
    // xattrs: user.* kept where the filesystem supports them, trusted.* never.
    assert_eq!(xattr::get(r.join("bin/ping"), "trusted.evil").unwrap_or(None), None);
    assert_eq!(rec.diff_id.as_ref(), Some(&id));
    assert_eq!(rec.entries, 10);
}

/// Owners come from the layer (root can give files away; others cannot).
#[test]
fn extraction_keeps_owners() {
    if !crate::test_tier::privileged("layers::tests::extraction_keeps_owners") {
        return;
    }
    let e = env();
    let t = tar(|b| {
        b.file_owned("usr/bin/su", b"#!", 0o4755, 0, 0).file_owned("home/u/f", b"x", 0o600, 1000, 1000);
    });
    let (id, _) = e.extract(&t).unwrap();
    let meta = |p: &str| fs::metadata(e.rootfs(&id).join(p)).unwrap();
    assert_eq!((meta("home/u/f").uid(), meta("home/u/f").gid()), (1000, 1000));
    assert_eq!((meta("usr/bin/su").uid(), meta("usr/bin/su").mode() & 0o7777), (0, 0o4755));
}

#[test]
fn second_extraction_is_free() {
    let e = env();
    let t = tar(|b| {
        b.file("a", b"1", 0o644);
    });
    let (id, _) = e.extract(&t).unwrap();
    let blob = Digest::of_bytes(&compress(&t, Compress::Gzip));
    fs::remove_file(e.layout.blob(&blob)).unwrap(); // would fail if it were read again
    let (_, again) = ensure_extracted(&e.layout, &blob, None, &id, &ExtractOptions::default()).unwrap();
    assert!(!again);
}

#[test]
fn hostile_entries_are_refused() {
    type Craft = fn(&mut LayerBuilder);
    type Expect = fn(&LayerError) -> bool;
    let cases: &[(&str, Craft, Expect)] = &[
        (
            "dotdot",
            |b| {
                b.raw(file_header(), "../escape", None, b"x");
            },
            |e| matches!(e, LayerError::Traversal { .. }),
        ),
        (
            "inner dotdot",
            |b| {
                b.raw(file_header(), "a/../../escape", None, b"x");
            },
            |e| matches!(e, LayerError::Traversal { .. }),
        ),
        (
            "symlink then write through",
            |b| {
                b.symlink("evil", "/etc");
                b.file("evil/passwd", b"root::0:0::/:/bin/sh\n", 0o644);
            },
            |e| matches!(e, LayerError::ThroughSymlink { symlink, .. } if symlink == "evil"),
        ),
        (
            "relative symlink escape",
            |b| {
                b.symlink("up", "../../../../../../");
                b.file("up/tmp/pwned", b"x", 0o644);
            },
            |e| matches!(e, LayerError::ThroughSymlink { .. }),
        ),
        (
            "hardlink out of the layer",
            |b| {
                b.raw(link_header(tar::EntryType::Link), "h", Some("../../../../etc/passwd"), b"");
            },
            |e| matches!(e, LayerError::BadHardlink { .. }),
        ),
        (
            "hardlink through a symlink",
            |b| {
                b.symlink("s", "/etc");
                b.hardlink("h", "s/passwd");
            },
            |e| matches!(e, LayerError::BadHardlink { .. }),
        ),
        (
            "hardlink to a directory",
            |b| {
                b.dir("d", 0o755);
                b.hardlink("h", "d");
            },
            |e| matches!(e, LayerError::BadHardlink { .. }),
        ),
        (
            "file as parent",
            |b| {
                b.file("f", b"", 0o644);
                b.file("f/x", b"", 0o644);
            },
            |e| matches!(e, LayerError::ParentNotDir { .. }),
        ),
        (
            "root as a file",
            |b| {
                b.raw(file_header(), "./", None, b"");
            },
            |e| matches!(e, LayerError::BadEntry { .. }),
        ),
    ];
    for (name, craft, want) in cases {
        let e = env();
        let t = tar(craft);
        let err = e.extract(&t).expect_err(name);
        assert!(want(&err), "{name}: unexpected error {err}");
        assert!(err.to_string().starts_with("layer sha256:"), "{name}: error names the layer: {err}");
        e.no_leftovers();
    }
}

#[test]
fn absolute_names_stay_inside() {
    let e = env();
    let marker = format!("hoist-abs-test-{}", std::process::id());
    let t = tar(|b| {
        b.raw(file_header(), &format!("/tmp/{marker}"), None, b"x");
    });
    let (id, _) = e.extract(&t).unwrap();
    assert!(e.rootfs(&id).join("tmp").join(&marker).is_file());
    assert!(!Path::new("/tmp").join(&marker).exists());
}

#[test]
fn hardlink_to_symlink_links_the_symlink() {
    let e = env();
    let t = tar(|b| {
        b.symlink("s", "/etc/passwd");
        b.hardlink("h", "s");
    });
    let (id, _) = e.extract(&t).unwrap();
    assert_eq!(fs::read_link(e.rootfs(&id).join("h")).unwrap(), Path::new("/etc/passwd"));
}

#[test]
fn devices_skipped_unless_allowed() {
    let t = tar(|b| {
        b.device("dev/null", false, 1, 3);
        b.device("dev/sda", true, 8, 0);
    });
    let e = env();
    let (id, rec) = e.extract(&t).unwrap();
    assert_eq!(rec.skipped_devices, ["dev/null", "dev/sda"]);
    assert!(!e.rootfs(&id).join("dev/null").exists());
}

#[test]
fn devices_created_when_allowed() {
    if !crate::test_tier::privileged("layers::tests::devices_created_when_allowed") {
        return;
    }
    let t = tar(|b| {
        b.device("dev/null", false, 1, 3);
        b.device("dev/sda", true, 8, 0);
    });
    let e = env();
    let (id, rec) = e.extract_with(&t, &ExtractOptions { allow_devices: true, ..Default::default() }).unwrap();
    assert!(rec.skipped_devices.is_empty());
    let m = fs::symlink_metadata(e.rootfs(&id).join("dev/null")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
}

#[test]
fn limits_stop_bombs() {
    // 8 MiB of zeros compresses to a few KiB.
    let t = tar(|b| {
        b.file("zeros", &vec![0u8; 8 << 20], 0o644);
    });
    let e = env();
    let small = ExtractOptions {
        limits: Limits { max_layer_bytes: 1 << 20, ..Default::default() },
        ..ExtractOptions::default()
    };
    let err = e.extract_with(&t, &small).unwrap_err();
    assert!(matches!(err, LayerError::Limit { what: "bytes", .. }), "{err}");
    assert!(err.to_string().contains(ENV_MAX_LAYER_SIZE));
    e.no_leftovers();
    assert!(!e.layout.layer(&Digest::of_bytes(&t)).exists());

    let many = tar(|b| {
        for i in 0..50 {
            b.file(&format!("f{i}"), b"", 0o644);
        }
    });
    let few = ExtractOptions { limits: Limits { max_entries: 10, ..Default::default() }, ..ExtractOptions::default() };
    assert!(matches!(e.extract_with(&many, &few).unwrap_err(), LayerError::Limit { what: "entries", .. }));

    let long = tar(|b| {
        b.file("d/".repeat(40).to_string().trim_end_matches('/'), b"", 0o644);
    });
    let short =
        ExtractOptions { limits: Limits { max_path_len: 20, ..Default::default() }, ..ExtractOptions::default() };
    assert!(matches!(e.extract_with(&long, &short).unwrap_err(), LayerError::Limit { .. }));
}

#[test]
fn diff_id_mismatch_is_refused() {
    let e = env();
    let t = tar(|b| {
        b.file("a", b"1", 0o644);
    });
    let blob = compress(&t, Compress::Gzip);
    let d = Digest::of_bytes(&blob);
    fs::write(e.layout.blob(&d), &blob).unwrap();
    let wrong = Digest::of_bytes(b"something else");
    let err = ensure_extracted(&e.layout, &d, None, &wrong, &ExtractOptions::default()).unwrap_err();
    assert!(matches!(err, LayerError::DiffIdMismatch { .. }), "{err}");
    assert!(!e.layout.layer(&wrong).exists());
    e.no_leftovers();
}

#[test]
fn zstd_and_plain_layers() {
    let e = env();
    let t = tar(|b| {
        b.file("z", b"zstd", 0o644);
    });
    for (c, mt) in [
        (Compress::Zstd, "application/vnd.oci.image.layer.v1.tar+zstd"),
        (Compress::None, "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let blob = compress(&t, c);
        let d = Digest::of_bytes(&blob);
        fs::write(e.layout.blob(&d), &blob).unwrap();
        let id = Digest::of_bytes(&t);
        let _ = fs::remove_dir_all(e.layout.layer(&id));
        ensure_extracted(&e.layout, &d, Some(mt), &id, &ExtractOptions::default()).unwrap();
        assert_eq!(fs::read(e.rootfs(&id).join("z")).unwrap(), b"zstd");
    }
    let err = ensure_extracted(
        &e.layout,
        &Digest::of_bytes(b"x"),
        Some("application/vnd.oci.image.layer.v1.tar+lz4"),
        &Digest::of_bytes(b"y"),
        &ExtractOptions::default(),
    );
    assert!(matches!(err, Err(LayerError::MediaType { .. })));
}

#[test]
fn whiteouts_and_opaque_dirs() {
    let l1 = tar(|b| {
        b.file("a", b"a", 0o644).file("keep", b"k", 0o644).dir("dir", 0o755).file("dir/x", b"x", 0o644).file(
            "dir/sub/y",
            b"y",
            0o644,
        );
        b.dir("other", 0o755).file("other/o", b"o", 0o644).file("replaced", b"file", 0o644).dir("gone", 0o755).file(
            "gone/deep",
            b"d",
            0o644,
        );
    });
    let l2 = tar(|b| {
        b.whiteout("a").opaque("dir").file("dir/z", b"z", 0o644).whiteout("gone");
        b.dir("replaced", 0o700).file("replaced/inner", b"i", 0o644);
        b.whiteout("keep").file("keep", b"new", 0o644); // whiteout + re-add in one layer
    });
    // Both forms of the layer store merge to the same tree: markers (earlier releases, or
    // extracted without root) and overlayfs's (devices 0/0, opaque xattrs).
    for keep_markers in [true, false] {
        let e = env();
        let opts = ExtractOptions { keep_markers, ..ExtractOptions::default() };
        let m = e.checkout_with(&[l1.clone(), l2.clone()], &opts).unwrap();
        assert!(!m.join("a").exists());
        let mut dir: Vec<_> = fs::read_dir(m.join("dir")).unwrap().map(|e| e.unwrap().file_name()).collect();
        dir.sort();
        assert_eq!(dir, ["z"], "opaque dir hides lower entries only");
        assert!(!m.join("gone").exists());
        assert_eq!(fs::read(m.join("other/o")).unwrap(), b"o");
        assert!(m.join("replaced").is_dir());
        assert_eq!(fs::metadata(m.join("replaced")).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::read(m.join("keep")).unwrap(), b"new");
        assert!(fs::read_dir(&m).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with(".wh.")));
        let (id, rec) = e.extract_with(&l2, &opts).unwrap();
        if keep_markers || !nix::unistd::geteuid().is_root() {
            assert_eq!(rec.form, WhiteoutForm::Markers);
            assert!(e.rootfs(&id).join(".wh.a").is_file());
        } else {
            assert_eq!(rec.form, WhiteoutForm::Overlay);
            assert_eq!(rec.whiteouts, ["a", "gone"]);
            assert_eq!(rec.opaque_dirs, ["dir"], "an opaque marker, and a whiteout re-added as a file is no whiteout");
            let st = fs::symlink_metadata(e.rootfs(&id).join("a")).unwrap();
            assert!(st.file_type().is_char_device() && st.rdev() == 0, "a whiteout is a character device 0/0");
            assert_eq!(xattr::get(e.rootfs(&id).join("dir"), OPAQUE_XATTR).unwrap().as_deref(), Some(&b"y"[..]));
            assert!(!e.rootfs(&id).join(".wh.a").exists() && !e.rootfs(&id).join("dir/.wh..wh..opq").exists());
            assert!(!rec.overlay_ready(), "`dir` is only implied by its marker: merged by hard links");
        }
    }
}

/// What overlayfs gets: the layer trees top first, cut at an opaque root; nothing for a layer
/// it cannot stack or a whiteout it would list.
#[test]
fn overlay_lower_layers() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: overlay form needs root");
        return;
    }
    let e = env();
    let l1 = tar(|b| {
        b.dir("d", 0o755).file("d/x", b"x", 0o644).file("f", b"f", 0o644);
    });
    let l2 = tar(|b| {
        b.dir("d", 0o755).whiteout("d/x").whiteout("f");
    });
    let mut layers: Vec<(Digest, LayerRecord)> = vec![e.extract(&l1).unwrap(), e.extract(&l2).unwrap()];
    let dirs = crate::rootfs::lower_dirs(&e.layout, &layers).unwrap();
    assert_eq!(dirs, [e.rootfs(&layers[1].0), e.rootfs(&layers[0].0)], "top first");
    // A whiteout in a directory no lower layer has: overlayfs would list it.
    let stray = tar(|b| {
        b.dir("new", 0o755).whiteout("new/ghost");
    });
    layers.push(e.extract(&stray).unwrap());
    assert_eq!(crate::rootfs::lower_dirs(&e.layout, &layers), None);
    layers.pop();
    // An opaque root hides every layer below it.
    let root_opaque = tar(|b| {
        b.opaque("").file("only", b"o", 0o644);
    });
    layers.push(e.extract(&root_opaque).unwrap());
    assert_eq!(crate::rootfs::lower_dirs(&e.layout, &layers).unwrap(), [e.rootfs(&layers[2].0)]);
    // An implied directory (no entry of its own): merged by hard links instead.
    let implied = tar(|b| {
        b.file("imp/f", b"i", 0o644);
    });
    layers.push(e.extract(&implied).unwrap());
    assert_eq!(crate::rootfs::lower_dirs(&e.layout, &layers), None);
}

/// A merge restricted to a few paths makes exactly those (and their ancestors), as the full
/// merge has them.
#[test]
fn merge_only_some_paths() {
    let e = env();
    let l1 = tar(|b| {
        b.dir("etc", 0o755).file("etc/passwd", b"root:x:0:0::/:/bin/sh\n", 0o644).file("etc/other", b"o", 0o644);
        b.dir("exports", 0o755).file("exports/a", b"1", 0o644).dir("usr", 0o755).file("usr/big", b"b", 0o644);
    });
    let l2 = tar(|b| {
        b.dir("exports", 0o755).whiteout("exports/a").file("exports/b", b"2", 0o644);
    });
    let layers: Vec<(Digest, LayerRecord)> = [l1, l2].iter().map(|t| e.extract(t).unwrap()).collect();
    let trees: Vec<LayerTree<'_>> =
        layers.iter().map(|(id, rec)| LayerTree { diff_id: id, root: e.rootfs(id), record: rec }).collect();
    let dest = e.layout.root().join("partial");
    checkout::merge_only(&trees, &dest, checkout::Only::Paths(&["exports", "etc/passwd", "etc/group"])).unwrap();
    let mut found: Vec<String> = walkdir(&dest);
    found.sort();
    assert_eq!(found, ["etc", "etc/passwd", "exports", "exports/b"]);
}

fn walkdir(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn symlink_planted_in_lower_layer_is_not_followed() {
    let outside = tempfile::tempdir().unwrap();
    let e = env();
    let l1 = tar(|b| {
        b.symlink("evil", &outside.path().to_string_lossy());
    });
    let l2 = tar(|b| {
        b.file("evil/pwned", b"x", 0o644);
    });
    let err = e.checkout(&[l1, l2]).unwrap_err();
    assert!(matches!(err, CheckoutError::ThroughSymlink { .. }), "{err}");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside");
}

#[test]
fn explicit_dir_replaces_lower_symlink() {
    let outside = tempfile::tempdir().unwrap();
    let e = env();
    let l1 = tar(|b| {
        b.symlink("d", &outside.path().to_string_lossy());
    });
    let l2 = tar(|b| {
        b.dir("d", 0o755).file("d/f", b"in", 0o644);
    });
    let m = e.checkout(&[l1, l2]).unwrap();
    assert!(fs::symlink_metadata(m.join("d")).unwrap().is_dir());
    assert_eq!(fs::read(m.join("d/f")).unwrap(), b"in");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn hardlinks_into_lower_layers() {
    let e = env();
    let l1 = tar(|b| {
        b.file("usr/bin/busybox", b"bb", 0o755);
    });
    let l2 = tar(|b| {
        b.hardlink("bin/sh", "usr/bin/busybox");
    });
    let (_, rec2) = e.extract(&l2).unwrap();
    assert_eq!(rec2.external_links, [("bin/sh".to_string(), "usr/bin/busybox".to_string())]);
    let m = e.checkout(&[l1, l2]).unwrap();
    assert_eq!(fs::metadata(m.join("bin/sh")).unwrap().ino(), fs::metadata(m.join("usr/bin/busybox")).unwrap().ino());

    let e = env();
    let l1 = tar(|b| {
        b.symlink("s", "/etc");
    });
    let l2 = tar(|b| {
        b.hardlink("h", "s/shadow");
    });
    assert!(matches!(e.checkout(&[l1, l2]).unwrap_err(), CheckoutError::BadHardlink { .. }));
    let e = env();
    let l2 = tar(|b| {
        b.hardlink("h", "/etc/shadow");
    });
    assert!(matches!(e.checkout(&[l2]).unwrap_err(), CheckoutError::BadHardlink { .. }));
}

#[test]
fn checkout_shares_inodes_with_the_layer_area() {
    let e = env();
    let l1 = tar(|b| {
        b.file("big", &[7u8; 4096], 0o644);
    });
    let (id, _) = e.extract(&l1).unwrap();
    let m = e.checkout(&[l1]).unwrap();
    assert_eq!(fs::metadata(m.join("big")).unwrap().ino(), fs::metadata(e.rootfs(&id).join("big")).unwrap().ino());
}
