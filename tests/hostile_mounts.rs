//! Tier 2, hostile inputs and crashes around `mount`, `prune` and `/exports`: the hoist binary
//! against a scratch state root, as root.

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use common::*;
use hoist::digest::Digest;
use hoist::oci_build::{ImageBuilder, LayerBuilder};
use serde_json::json;

fn mount_base(r: &Root, dir: &Path) -> PathBuf {
    let c = fs::canonicalize(dir).unwrap();
    let id = Digest::of_bytes(c.as_os_str().as_encoded_bytes()).hex()[..16].to_string();
    r.path().join("mounts").join(id)
}

/// What `kill -9` during `hoist mount` leaves: a pending record and a partial checkout.
fn fake_leftover(r: &Root, dir: &Path) -> PathBuf {
    let base = mount_base(r, dir);
    fs::create_dir_all(base.join("rootfs/usr/bin")).unwrap();
    fs::write(base.join("rootfs/usr/bin/half"), "partial").unwrap();
    let rec = json!({
        "dir": fs::canonicalize(dir).unwrap(),
        "image": "hello:latest",
        "manifest": format!("sha256:{}", "0".repeat(64)),
        "state": "pending",
    });
    fs::write(base.join("mount.json"), serde_json::to_vec(&rec).unwrap()).unwrap();
    base
}

fn is_mount_point(dir: &Path) -> bool {
    let c = fs::canonicalize(dir).unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(c.to_str().unwrap()))
}

#[test]
fn interrupted_mount_is_cleaned_by_umount_mount_and_prune() {
    if !common::privileged("hostile_mounts::interrupted_mount_is_cleaned_by_umount_mount_and_prune") {
        return;
    }
    let r = Root::new();
    r.pull(&hello());
    let mnt = r.dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let m = mnt.to_str().unwrap();

    // umount
    let base = fake_leftover(&r, &mnt);
    let out = r.ok(&["umount", m]);
    assert_eq!(
        out,
        format!(
            "Removed the leftover of an interrupted hoist mount on {}\n",
            fs::canonicalize(&mnt).unwrap().display()
        )
    );
    assert!(!base.exists());
    assert_eq!(r.count("mounts"), 0);

    // mount over the leftover (a record-less one: killed before the record was written)
    fs::create_dir_all(base.join("rootfs")).unwrap();
    r.ok(&["mount", "hello", m]);
    assert!(is_mount_point(&mnt));
    assert!(!base.join("rootfs/usr/bin/half").exists());
    let rec: serde_json::Value = serde_json::from_slice(&fs::read(base.join("mount.json")).unwrap()).unwrap();
    assert_eq!(rec["state"], "mounted");
    assert_eq!(r.ok(&["umount", m]), format!("Unmounted {}\n", fs::canonicalize(&mnt).unwrap().display()));
    assert!(!is_mount_point(&mnt));
    assert_eq!(r.count("mounts"), 0);

    // prune: the leftover goes, a live view stays
    let base = fake_leftover(&r, &mnt);
    let live = r.dir.path().join("live");
    fs::create_dir(&live).unwrap();
    r.ok(&["mount", "hello", live.to_str().unwrap()]);
    let pr = r.json(&["images", "prune"]);
    assert_eq!(pr["mounts"], 1, "{pr}");
    assert!(!base.exists());
    assert!(mount_base(&r, &live).join("rootfs").is_dir(), "a live view is kept");
    assert!(is_mount_point(&live));
    r.ok(&["umount", live.to_str().unwrap()]);
    assert_eq!(r.count("mounts"), 0);
}

#[test]
fn mount_killed_after_the_mount_is_cleaned_by_umount() {
    if !common::privileged("hostile_mounts::mount_killed_after_the_mount_is_cleaned_by_umount") {
        return;
    }
    let r = Root::new();
    r.pull(&hello());
    let mnt = r.dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let m = mnt.to_str().unwrap();
    for step in ["mount:pending", "mount:checkout", "mount:mounted"] {
        let o = r.cmd().env("HOIST_FAULT", step).args(["mount", "hello", m]).output().unwrap();
        assert_eq!(o.status.signal(), Some(9), "{step}");
        r.ok(&["umount", m]);
        assert!(!is_mount_point(&mnt), "{step}");
        assert_eq!(r.count("mounts"), 0, "{step}");
        assert_eq!(fs::read_dir(&mnt).unwrap().count(), 0, "{step}");
    }
    // and the same leftovers are cleared by the next mount
    for step in ["mount:pending", "mount:checkout", "mount:mounted"] {
        let o = r.cmd().env("HOIST_FAULT", step).args(["mount", "hello", m]).output().unwrap();
        assert_eq!(o.status.signal(), Some(9), "{step}");
        if step == "mount:mounted" {
            // Killed after the mount: the view is there, so a second mount is refused until umount.
            let err = r.fails(&["mount", "hello", m], 1);
            assert!(err.ends_with(": not empty\n"), "{err}");
            r.ok(&["umount", m]);
            continue;
        }
        r.ok(&["mount", "hello", m]);
        r.ok(&["umount", m]);
        assert_eq!(r.count("mounts"), 0, "{step}");
    }
}

#[test]
fn a_symlinked_dir_argument_mounts_on_the_real_directory() {
    if !common::privileged("hostile_mounts::a_symlinked_dir_argument_mounts_on_the_real_directory") {
        return;
    }
    let r = Root::new();
    r.pull(&hello());
    let mnt = r.dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let link = r.dir.path().join("link");
    std::os::unix::fs::symlink(&mnt, &link).unwrap();
    // A symlink to an empty directory is canonicalised: the view lands on the real directory.
    r.ok(&["mount", "hello", link.to_str().unwrap()]);
    assert!(is_mount_point(&mnt));
    r.ok(&["umount", mnt.to_str().unwrap()]);
}

#[test]
fn prune_killed_between_rename_and_delete_leaves_only_trash() {
    if !common::privileged("hostile_mounts::prune_killed_between_rename_and_delete_leaves_only_trash") {
        return;
    }
    let r = Root::new();
    r.pull(&hello());
    let layers: Vec<String> =
        fs::read_dir(r.path().join("layers")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!layers.is_empty());
    r.ok(&["images", "rm", "hello"]);
    let o = r.cmd().env("HOIST_FAULT", "prune:renamed").args(["images", "prune"]).output().unwrap();
    assert_eq!(o.status.signal(), Some(9));
    let now: Vec<String> =
        fs::read_dir(r.path().join("layers")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(now.len(), layers.len(), "{now:?}");
    let renamed: Vec<_> = now.iter().filter(|n| n.starts_with(".trash-")).collect();
    assert_eq!(renamed.len(), 1, "the first layer was renamed out, then the crash: {now:?}");
    let gone = layers.iter().find(|l| !now.contains(l)).expect("one live name is gone");
    assert!(renamed[0].starts_with(&format!(".trash-{gone}-")));
    assert!(r.path().join("layers").join(renamed[0]).join("layer.json").exists(), "the tree is whole, just renamed");
    // The next pull removes the trash; the next prune the rest.
    r.pull(&hello());
    assert!(!r.path().join("layers").join(renamed[0]).exists(), "pull removed the trash");
    assert!(r.path().join("layers").join(gone).join("layer.json").exists(), "re-extracted whole");
    r.ok(&["images", "rm", "hello"]);
    let o = r.cmd().env("HOIST_FAULT", "prune:renamed").args(["images", "prune"]).output().unwrap();
    assert_eq!(o.status.signal(), Some(9));
    r.ok(&["images", "prune"]);
    assert_eq!(r.count("layers"), 0);
    // A pull extracts the layer again, completely.
    r.pull(&hello());
    let mnt = r.dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    r.ok(&["mount", "hello", mnt.to_str().unwrap()]);
    r.ok(&["umount", mnt.to_str().unwrap()]);
}

#[test]
fn images_info_never_reads_through_a_symlinked_template() {
    let r = Root::new();
    let secret = r.dir.path().join("secret");
    fs::write(&secret, "ExecStart=/bin/x $SECRET_VAR\n").unwrap();
    let mut l = LayerBuilder::new();
    l.dir("exports", 0o755);
    l.symlink("exports/service.template", secret.to_str().unwrap());
    l.file("exports/tmpfiles.template", b"d /run/$NAME 0755 root root -\n", 0o644);
    let built = ImageBuilder::new(vec![l.finish()], json!({})).build();
    let a = r.dir.path().join("evil.tar");
    fs::write(&a, built.oci_archive("latest")).unwrap();
    r.pull(&a);
    let err = r.fails(&["images", "info", "evil"], 1);
    assert_eq!(
        err,
        "hoist: image evil:latest: /exports/service.template: is a symlink (hoist reads /exports files only as regular files)\n"
    );
    assert!(!err.contains("SECRET_VAR"));
    // A symlinked /exports directory is not followed either.
    let mut l = LayerBuilder::new();
    l.symlink("exports", r.dir.path().to_str().unwrap());
    fs::write(r.dir.path().join("service.template"), "$SECRET_VAR").unwrap();
    let built = ImageBuilder::new(vec![l.finish()], json!({})).build();
    let a = r.dir.path().join("evil2.tar");
    fs::write(&a, built.oci_archive("latest")).unwrap();
    r.pull(&a);
    let o = r.run(&["--json", "images", "info", "evil2"]);
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!text.contains("SECRET_VAR"), "{text}");
}
