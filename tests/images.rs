//! Tier 2: the hoist binary against a scratch state root, as root, with the fixture images.
//! pull (every local transport), images list/rm/info/prune, mount/umount, hostile archives.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;

use common::*;
use hoist::deploy::container::Container;
use hoist::deploy::record::Record;
use hoist::digest::Digest;
use hoist::oci_build::{ImageBuilder, LayerBuilder};
use serde_json::json;

#[test]
fn pull_is_idempotent_and_lists() {
    let r = Root::new();
    let first = r.pull(&hello());
    assert_eq!(first["name"], "hello:latest");
    assert_eq!(first["result"], "done");
    assert_eq!(first["layers_extracted"], 2);
    let blobs = r.count("store/blobs/sha256");
    assert_eq!(blobs, 2, "manifest and config: the layer blobs go once their layers are extracted");
    // --keep-blobs keeps them.
    let kept = Root::new();
    kept.ok(&["pull", "--keep-blobs", &format!("oci-archive:{}", hello().display())]);
    assert_eq!(kept.count("store/blobs/sha256"), 4, "manifest, config, 2 layers");

    let again = r.pull(&hello());
    assert_eq!(again["result"], "unchanged");
    assert_eq!(again["blobs_fetched"], 0);
    assert_eq!(again["layers_extracted"], 0);
    assert_eq!(again["digest"], first["digest"]);

    // A stored name is pulled again from its recorded source.
    assert_eq!(r.json(&["pull", "hello"])["result"], "unchanged");

    // etcd shares hello's busybox base layer: one new layer only.
    let e = r.pull(&etcd());
    assert_eq!(e["layers_extracted"], 1);
    assert_eq!(r.count("layers"), 3);

    let list = r.json(&["images"]);
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["etcd:latest", "hello:latest"]);
    let h = &list[1];
    for key in ["repository", "tag", "digest", "size", "created", "in_use"] {
        assert!(h.get(key).is_some(), "key {key} in {h}");
    }
    assert_eq!(h["digest"], first["digest"]);
    assert_eq!(h["in_use"], false);

    // Global options after the subcommand, and the table with short digests.
    let table = r.ok(&["images", "list"]);
    let short = &first["digest"].as_str().unwrap()["sha256:".len()..][..12];
    assert!(table.lines().next().unwrap().contains("REPOSITORY"), "{table}");
    assert!(table.lines().any(|l| l.contains("hello") && l.contains(short) && !l.contains("sha256:")), "{table}");
    assert!(r.ok(&["images", "--no-trunc"]).contains(first["digest"].as_str().unwrap()));
    assert_eq!(
        r.json(&["images", "list"]),
        serde_json::from_str::<serde_json::Value>(&r.ok(&["images", "list", "--json"])).unwrap()
    );

    // The store is a valid OCI layout naming its images.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(r.path().join("store/index.json")).unwrap()).unwrap();
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap())
        .collect();
    assert!(refs.contains(&"hello:latest") && refs.contains(&"etcd:latest"));
    assert!(r.path().join("store/oci-layout").is_file());
}

#[test]
fn every_local_transport() {
    let r = Root::new();
    let img = hoist::oci_build::spec::build(&repo().join("images/hello/image.json")).unwrap();
    let built = img.build();
    let dir = r.dir.path().join("layout");
    built.write_oci_dir(&dir, "v7").unwrap();
    // oci:DIR:REF names the image after the directory, tagged REF.
    assert_eq!(r.json(&["pull", &format!("oci:{}:v7", dir.display())])["name"], "layout:v7");
    let err = r.fails(&["pull", &format!("oci:{}:nope", dir.display())], 1);
    assert!(err.contains("no image named \"nope\"") && err.contains("v7"), "{err}");

    let docker = r.dir.path().join("saved.tar");
    fs::write(&docker, built.docker_archive(&img.layers, "example.org/team/hello:1.0")).unwrap();
    let d = r.json(&["pull", &format!("docker-archive:{}", docker.display())]);
    assert_eq!(d["name"], "hello:1.0", "docker-archive uses RepoTags[0], without its registry host");
    assert_eq!(r.json(&["pull", &format!("docker-archive:{}", docker.display())])["result"], "unchanged");

    let archive = r.dir.path().join("Hello.tar");
    fs::write(&archive, built.oci_archive("latest")).unwrap();
    assert_eq!(r.json(&["pull", &format!("oci-archive:{}", archive.display())])["name"], "hello:latest");

    // The same image by three names: the same manifest digest for the OCI ones, same layers for all.
    let list = r.json(&["images"]);
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(r.count("layers"), 2);

    // Relative paths are recorded absolute, so a stored name can be re-pulled from anywhere.
    let o = r.cmd().current_dir(r.dir.path()).args(["--json", "pull", "oci-archive:Hello.tar"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info = r.json(&["images", "info", "hello"]);
    assert_eq!(info["source"], format!("oci-archive:{}", archive.display()));
}

#[test]
fn checkout_matches_umoci_byte_for_byte() {
    if !common::privileged("images::checkout_matches_umoci_byte_for_byte") {
        return;
    }
    assert!(have("umoci"), "umoci is needed as the reference extractor (make test installs it)");
    // layered: a hard-link checkout (a hardlink into a lower layer); the others overlayfs stacks
    // (whiteouts as 0/0 devices, opaque directories by xattr).
    for (name, archive) in [("layered", layered()), ("layered-overlay", layered_overlay()), ("hello", hello())] {
        let r = Root::new();
        r.pull(&archive);
        // Reference: umoci's own OCI-semantics extraction of the same layout.
        let layout = r.dir.path().join("layout");
        fs::create_dir_all(&layout).unwrap();
        let st = std::process::Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&layout).status().unwrap();
        assert!(st.success());
        let reference = r.dir.path().join("reference");
        let o = std::process::Command::new("umoci")
            .args(["raw", "unpack", "--image", &format!("{}:latest", layout.display())])
            .arg(&reference)
            .output()
            .unwrap();
        assert!(o.status.success(), "umoci: {}", String::from_utf8_lossy(&o.stderr));
        let mnt = r.dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        r.ok(&["mount", name, mnt.to_str().unwrap()]);
        let fstype = fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(mnt.to_str().unwrap()))
            .map(|l| l.split(" - ").nth(1).unwrap().split(' ').next().unwrap().to_string())
            .next_back()
            .unwrap();
        assert_eq!(fstype == "overlay", name != "layered", "{name}: mounted as {fstype}");
        let (ours, theirs) = (snapshot(&mnt), snapshot(&reference));
        r.ok(&["umount", mnt.to_str().unwrap()]);
        let only_ours: Vec<_> = ours.iter().filter(|(k, v)| theirs.get(*k) != Some(v)).collect();
        let only_theirs: Vec<_> = theirs.iter().filter(|(k, v)| ours.get(*k) != Some(v)).collect();
        assert!(
            only_ours.is_empty() && only_theirs.is_empty(),
            "{name}: differs\nhoist: {only_ours:#?}\numoci: {only_theirs:#?}"
        );
        assert!(ours.len() > 200, "{name}: compared {} entries", ours.len());
    }
}

#[test]
fn second_checkout_decompresses_nothing() {
    if !common::privileged("images::second_checkout_decompresses_nothing") {
        return;
    }
    let r = Root::new();
    let p = r.pull(&layered());
    let digest: Digest = p["digest"].as_str().unwrap().parse().unwrap();
    // The compressed layer blobs are gone after extraction: a checkout that needed them would fail.
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(r.path().join("store/blobs/sha256").join(digest.hex())).unwrap()).unwrap();
    for l in manifest["layers"].as_array().unwrap() {
        let d: Digest = l["digest"].as_str().unwrap().parse().unwrap();
        assert!(!r.path().join("store/blobs/sha256").join(d.hex()).exists(), "layer blob {d} kept");
    }
    let mnt = r.dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    r.ok(&["mount", "layered", mnt.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(mnt.join("opq/new")).unwrap(), "new\n");
    // Files are shared with the layer area, not copies.
    assert!(fs::metadata(mnt.join("bin/busybox")).unwrap().nlink() >= 2);
    r.ok(&["umount", mnt.to_str().unwrap()]);
}

#[test]
fn mount_is_read_only_and_checked() {
    if !common::privileged("images::mount_is_read_only_and_checked") {
        return;
    }
    let r = Root::new();
    r.pull(&hello());
    let mnt = r.dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let j = r.json(&["mount", "hello:latest", mnt.to_str().unwrap()]);
    assert_eq!(j["action"], "mount");
    assert_eq!(fs::read_to_string(mnt.join("etc/hello-version")).unwrap(), "1\n");
    assert!(mnt.join("exports/service.template").is_file());
    let e = fs::write(mnt.join("x"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(nix::libc::EROFS));
    let other = r.dir.path().join("full");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("f"), "").unwrap();
    assert!(r.fails(&["mount", "hello", other.to_str().unwrap()], 1).contains("not empty"));
    let empty = r.dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert!(r.fails(&["mount", "nope", empty.to_str().unwrap()], 1).contains("\"nope\" not found"));
    r.ok(&["umount", mnt.to_str().unwrap()]);
    assert_eq!(fs::read_dir(&mnt).unwrap().count(), 0);
    assert_eq!(r.count("mounts"), 0, "checkout removed");
    assert!(r.fails(&["umount", mnt.to_str().unwrap()], 1).contains("not a hoist mount"));
    // A source reference is pulled on demand.
    let r2 = Root::new();
    r2.ok(&["mount", &format!("oci-archive:{}", hello().display()), mnt.to_str().unwrap()]);
    r2.ok(&["umount", mnt.to_str().unwrap()]);
}

/// A deployment record pinning `manifest`.
fn record(name: &str, manifest: &str) -> Record {
    Record {
        version: hoist::deploy::record::RECORD_VERSION,
        name: name.into(),
        slot: 0,
        image: format!("{name}:latest"),
        source: None,
        manifest: manifest.parse().unwrap(),
        values: Default::default(),
        sets: Default::default(),
        runtime: None,
        seccomp: Default::default(),
        host_files: Default::default(),
        hostfs: Default::default(),
        has_service: true,
        conversions: Vec::new(),
        kept_host_files: Default::default(),
        verified: None,
        health_flags: Default::default(),
        health: None,
        created: 0,
    }
}

#[test]
fn rm_and_prune_respect_users() {
    if !common::privileged("images::rm_and_prune_respect_users") {
        return;
    }
    let r = Root::new();
    let h = r.pull(&hello());
    r.pull(&etcd());
    // A deployment of etcd pins it.
    let e = r.json(&["images", "info", "etcd"]);
    let layout = hoist::layout::Layout::new(r.path());
    let db = Container::at(&layout, "db").unwrap();
    db.create().unwrap();
    fs::create_dir_all(db.slot(0).dir()).unwrap();
    db.slot(0).save_record(&record("db", e["digest"].as_str().unwrap())).unwrap();
    db.switch_to(0).unwrap();
    let list = r.json(&["images"]);
    assert_eq!(list[0]["in_use"], true);
    assert!(r.ok(&["images"]).lines().any(|l| l.starts_with('>') && l.contains("etcd")));
    let err = r.fails(&["images", "rm", "etcd"], 1);
    assert!(err.contains("etcd:latest") && err.contains("db"), "{err}");

    // A dangling deployment (interrupted install) is pruned.
    let ghost = Container::at(&layout, "ghost").unwrap();
    ghost.create().unwrap();
    fs::create_dir_all(ghost.slot(1).dir()).unwrap();
    fs::create_dir_all(r.path().join("tmp/slot-half-0/rootfs")).unwrap();
    let short = &h["digest"].as_str().unwrap()["sha256:".len()..][..8];
    let rm = r.json(&["images", "rm", short]);
    assert_eq!(rm[0]["name"], "hello:latest");
    let pr = r.json(&["images", "prune"]);
    assert_eq!(pr["blobs"], 2, "hello's manifest and config (layer blobs went at extraction)");
    assert_eq!(pr["layers"], 1);
    assert_eq!(pr["deployments"], json!(["ghost"]));
    assert!(db.slot(0).record().is_ok());
    assert!(!ghost.exists());
    assert!(!r.path().join("tmp/slot-half-0").exists(), "an interrupted slot preparation is freed");
    assert_eq!(r.count("layers"), 2);
    assert_eq!(r.json(&["images", "prune"])["result"], "unchanged");
    // etcd still checks out after the prune.
    let mnt = r.dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    r.ok(&["mount", "etcd", mnt.to_str().unwrap()]);
    assert!(mnt.join("usr/bin/etcd").is_file());
    r.ok(&["umount", mnt.to_str().unwrap()]);
}

#[test]
fn images_info_reports_variables() {
    let r = Root::new();
    r.pull(&etcd());
    let i = r.json(&["images", "info", &format!("oci-archive:{}", etcd().display())]);
    assert_eq!(i["labels"]["atomic.type"], "system");
    assert_eq!(i["variables"]["defaults"]["ETCD_LISTEN_CLIENT_URLS"], "http://127.0.0.1:2379");
    assert_eq!(i["variables"]["required"], json!([]));
    let used: Vec<&str> = i["variables"]["used"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(used.contains(&"STATE_DIRECTORY") && used.contains(&"NAME"));
    assert_eq!(i["templates"], json!(["config.json.template", "service.template", "tmpfiles.template"]));

    // An image whose template uses a variable without a default: it must be --set.
    let mut l = LayerBuilder::new();
    l.file("exports/service.template", b"[Service]\nExecStart=$EXEC_START --token=${TOKEN}\n", 0o644);
    l.file("exports/manifest.json", br#"{"defaultValues": {"OTHER": "1"}}"#, 0o644);
    let built = ImageBuilder::new(vec![l.finish()], json!({})).build();
    let a = r.dir.path().join("needs.tar");
    fs::write(&a, built.oci_archive("latest")).unwrap();
    r.pull(&a);
    let i = r.json(&["images", "info", "needs"]);
    assert_eq!(i["variables"]["required"], json!(["TOKEN"]));
    assert!(r.ok(&["images", "info", "needs"]).contains("TOKEN  (required: no default)"));

    // An image without /exports says so.
    let built = ImageBuilder::new(
        vec![layer(|l| {
            l.file("bin/x", b"", 0o755);
        })],
        json!({"Cmd": ["/bin/x"]}),
    )
    .build();
    let a = r.dir.path().join("plain.tar");
    fs::write(&a, built.oci_archive("latest")).unwrap();
    r.pull(&a);
    assert_eq!(r.json(&["images", "info", "plain"])["exports"], false);
}

fn layer(f: impl FnOnce(&mut LayerBuilder)) -> Vec<u8> {
    let mut l = LayerBuilder::new();
    f(&mut l);
    l.finish()
}

fn hostile_archive(r: &Root, name: &str, layer: Vec<u8>) -> std::path::PathBuf {
    let built = ImageBuilder::new(vec![layer], json!({})).build();
    let a = r.dir.path().join(format!("{name}.tar"));
    fs::write(&a, built.oci_archive("latest")).unwrap();
    a
}

#[test]
fn hostile_archives_store_nothing() {
    if !common::privileged("images::hostile_archives_store_nothing") {
        return;
    }
    let r = Root::new();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    let mut l = LayerBuilder::new();
    l.raw(h, "../../../../tmp/hoist-escape", None, b"pwned");
    let a = hostile_archive(&r, "evil", l.finish());
    let err = r.fails(&["pull", &format!("oci-archive:{}", a.display())], 1);
    let last = err.lines().last().unwrap();
    assert!(last.starts_with("hoist: oci-archive:") && last.contains("path escapes the layer"), "{err}");
    assert!(
        err.lines().all(|l| l == last || l.starts_with("Extracting") || l.starts_with("Copying")),
        "progress lines, then one error line: {err}"
    );
    assert!(!Path::new("/tmp/hoist-escape").exists());
    assert_eq!(r.json(&["images"]), json!([]), "no name points at a half-imported image");
    assert_eq!(r.count("layers"), 0, "no extracted or temporary layer left");

    // A bomb: 64 MiB of zeros in a few KiB, against a 1 MiB ceiling.
    let mut l = LayerBuilder::new();
    l.file("zeros", &vec![0u8; 64 << 20], 0o644);
    let a = hostile_archive(&r, "bomb", l.finish());
    let o = r
        .cmd()
        .env("HOIST_MAX_LAYER_SIZE", "1048576")
        .args(["pull", &format!("oci-archive:{}", a.display())])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("exceeds the limit of 1048576 bytes"), "{err}");
    assert_eq!(r.count("layers"), 0);

    // A device node is skipped with a warning, and created with --allow-devices.
    let mut l = LayerBuilder::new();
    l.device("dev/kmem", false, 1, 2);
    let a = hostile_archive(&r, "dev", l.finish());
    let o = r.run(&["pull", &format!("oci-archive:{}", a.display())]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("skipped 1 device node(s) (e.g. /dev/kmem)"));
    assert_eq!(r.count("layers"), 1);
    let layer = fs::read_dir(r.path().join("layers")).unwrap().next().unwrap().unwrap().path();
    assert!(!layer.join("rootfs/dev/kmem").exists());
    // The decision belongs to each pull: pulled again with --allow-devices, the layer is
    // extracted again and the node is there; the next pull without it extracts it once more.
    let o = r.run(&["pull", "--allow-devices", &format!("oci-archive:{}", a.display())]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("skipped"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 layer(s) extracted"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let m = fs::symlink_metadata(layer.join("rootfs/dev/kmem")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 2));
    let o = r.run(&["pull", &format!("oci-archive:{}", a.display())]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("skipped 1 device node(s) (e.g. /dev/kmem)"));
    assert!(!layer.join("rootfs/dev/kmem").exists());
}

#[test]
fn corrupted_blob_is_refused() {
    let r = Root::new();
    let built = ImageBuilder::new(
        vec![layer(|l| {
            l.file("a", b"content", 0o644);
        })],
        json!({}),
    )
    .build();
    let dir = r.dir.path().join("layout");
    built.write_oci_dir(&dir, "latest").unwrap();
    let layer = dir.join("blobs/sha256").join(built.layers[0].hex());
    let mut data = fs::read(&layer).unwrap();
    let n = data.len();
    data[n / 2] ^= 0xff;
    fs::write(&layer, data).unwrap();
    let err = r.fails(&["pull", &format!("oci:{}", dir.display())], 1);
    let actual = Digest::of_bytes(&fs::read(&layer).unwrap());
    assert!(
        err.ends_with(&format!(
            "layer sha256:{}: the blob does not match its digest (the content hashes to {actual}); nothing was kept\n",
            built.layers[0].hex()
        )),
        "{err}"
    );
    assert_eq!(r.count("store/blobs/sha256"), 0);
    assert_eq!(r.count("layers"), 0);
    // With --keep-blobs the blob is copied first, and refused there.
    let err = r.fails(&["pull", "--keep-blobs", &format!("oci:{}", dir.display())], 1);
    assert!(err.contains("digest mismatch"), "{err}");
    assert_eq!(r.count("store/blobs/sha256"), 0);
    assert_eq!(r.json(&["images"]), json!([]));
}

#[test]
fn clear_errors() {
    let r = Root::new();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["pull", "oci-archive:/nonexistent/x.tar"], 1, "/nonexistent/x.tar"),
        (&["pull", "ftp://example.org/x"], 1, "unknown transport"),
        (&["pull", "docker://Bad/Name"], 1, "invalid image reference"),
        (&["pull", "nothing-stored"], 1, "\"nothing-stored\" not found"),
        (&["images", "rm", "nope"], 1, "not found"),
        (&["images", "info", "nope"], 1, "not found"),
        (&["pull"], 2, "Usage"),
        (&["frobnicate"], 2, "unrecognized subcommand"),
    ];
    for (args, code, needle) in cases {
        let err = r.fails(args, *code);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let err = r.fails(&["pull", "oci-archive:/nonexistent/x.tar"], 1);
    assert!(err.starts_with("hoist: ") && err.lines().count() == 1, "{err}");
}

#[test]
fn mutating_commands_wait_for_the_lock() {
    let r = Root::new();
    fs::create_dir_all(r.path()).unwrap();
    let lock = fs::File::create(r.path().join("lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let mut child = r
        .cmd()
        .args(["pull", &format!("oci-archive:{}", hello().display())])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The pull cannot finish while the lock is held; it says it waits.
    let mut stderr = child.stderr.take().unwrap();
    let mut buf = [0u8; 256];
    let n = std::io::Read::read(&mut stderr, &mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("waiting for another hoist command"));
    assert!(child.try_wait().unwrap().is_none());
    drop(held);
    assert!(child.wait().unwrap().success());
    assert_eq!(r.json(&["images"])[0]["name"], "hello:latest");
}
