//! Tier 2: `hoist images export` writes what the containers tools read, byte for byte: skopeo
//! reads the exported oci-archive, oci directory and docker-archive and finds the stored
//! manifest (the same digest) and config; a fresh hoist root pulls the exports back to the same
//! image. Layer blobs a pull dropped (the default) are fetched again from the image's source —
//! its registry (by manifest digest, after the tag moved) or its archive — and a source that is
//! gone is a clear error. A built image's root, as `hoist mount` shows it and as `umoci raw
//! unpack` unpacks its export, equals the same content committed onto the same base by buildah.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::registry::Registry;
use common::*;
use sha2::Digest as _;

fn skopeo(args: &[&str]) -> String {
    let o = Command::new("skopeo").args(args).output().unwrap();
    assert!(o.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

fn blob_gets(reg: &Registry) -> usize {
    reg.access_log().lines().filter(|l| l.contains("\"GET /v2/hello/blobs/sha256:")).count()
}

#[test]
fn exports_are_byte_for_byte_and_read_by_skopeo() {
    let root = Root::new();
    let src = root.dir.path().join("hello.tar");
    fs::copy(hello(), &src).unwrap();
    let j = root.json(&["pull", &format!("oci-archive:{}", src.display())]);
    let digest = j["digest"].as_str().unwrap().to_string();
    let out = root.dir.path();
    let config = skopeo(&["inspect", "--config", "--raw", &format!("oci-archive:{}", src.display())]);

    // oci-archive: the blobs dropped at the pull come back from the archive.
    let dest = out.join("out.tar");
    let o =
        root.cmd().args(["images", "export", "hello", &format!("oci-archive:{}", dest.display())]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!("hoist: fetched 2 layer blob(s) of hello:latest again from oci-archive:{}\n", src.display())
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("Exported hello:latest ({}) to oci-archive:{}\n", &digest[7..19], dest.display())
    );
    let raw = skopeo(&["inspect", "--raw", &format!("oci-archive:{}", dest.display())]);
    assert_eq!(sha256(raw.as_bytes()), digest);
    assert_eq!(skopeo(&["inspect", "--config", "--raw", &format!("oci-archive:{}", dest.display())]), config);
    // The same image exports to the same bytes.
    let again = out.join("again.tar");
    root.ok(&["images", "export", "hello", &format!("oci-archive:{}", again.display())]);
    assert_eq!(fs::read(&dest).unwrap(), fs::read(&again).unwrap());

    // oci:DIR and docker-archive: read by skopeo, pulled back by a fresh root.
    let dir = out.join("layout");
    root.ok(&["images", "export", "hello", &format!("oci:{}:v1", dir.display())]);
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:v1", dir.display())]);
    assert_eq!(sha256(raw.as_bytes()), digest);
    let docker = out.join("docker.tar");
    root.ok(&["images", "export", "hello", &format!("docker-archive:{}:localhost/hello:v1", docker.display())]);
    assert_eq!(skopeo(&["inspect", "--config", "--raw", &format!("docker-archive:{}", docker.display())]), config);
    let fresh = Root::new();
    let j = fresh.json(&["pull", &format!("oci:{}:v1", dir.display())]);
    assert_eq!(j["digest"].as_str(), Some(digest.as_str()));
    let j = fresh.json(&["pull", &format!("docker-archive:{}", docker.display())]);
    assert_eq!(j["name"], "localhost/hello:v1");

    // Nothing is overwritten: an existing file, a non-empty directory.
    let err = root.fails(&["images", "export", "hello", &format!("oci-archive:{}", dest.display())], 1);
    assert_eq!(err, format!("hoist: export to {}: exists (remove it first)\n", dest.display()));
    let err = root.fails(&["images", "export", "hello", &format!("oci:{}", dir.display())], 1);
    assert_eq!(err, format!("hoist: export to {}: exists and is not empty\n", dir.display()));
    let err = root.fails(&["images", "export", "hello", "docker://example.com/hello:1"], 2);
    assert!(err.contains("export writes oci:DIR, oci-archive:FILE or docker-archive:FILE"), "{err}");
}

#[test]
fn dropped_blobs_come_back_from_the_registry_or_are_named_missing() {
    let reg = Registry::start();
    let v1 = reg.push(&format!("oci-archive:{}", hello().display()), "hello:stable", false);
    let root = Root::new();
    root.ok(&["pull", "-q", "--tls-verify=false", &reg.reference("hello:stable")]);
    // The tag moves on: the blobs are fetched by the stored manifest's digest.
    reg.push(&format!("oci-archive:{}", hello_v2().display()), "hello:stable", false);
    let before = blob_gets(&reg);
    let dir = root.dir.path().join("layout");
    let name = format!("{}/hello:stable", reg.addr);
    root.ok(&["images", "export", "--tls-verify=false", &name, &format!("oci:{}", dir.display())]);
    assert_eq!(blob_gets(&reg), before + 2, "{}", reg.access_log());
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}", dir.display())]);
    assert_eq!(sha256(raw.as_bytes()), v1);
    // Present now: a second export fetches nothing.
    root.ok(&["images", "export", &name, &format!("oci:{}", root.dir.path().join("again").display())]);
    assert_eq!(blob_gets(&reg), before + 2);

    // A source that is gone: the error names the image, the blobs and the way out.
    let other = Root::new();
    let src = other.dir.path().join("gone.tar");
    fs::copy(hello(), &src).unwrap();
    other.ok(&["pull", "-q", &format!("oci-archive:{}", src.display())]);
    fs::remove_file(&src).unwrap();
    let dest = other.dir.path().join("out.tar");
    let err = other.fails(&["images", "export", "gone", &format!("oci-archive:{}", dest.display())], 1);
    assert_eq!(
        err,
        format!(
            "hoist: oci-archive:{0}: 2 layer blob(s) of gone:latest are not stored (pulled without --keep-blobs) and its \
             source cannot give them back: {0}: No such file or directory (os error 2)\n",
            src.display()
        )
    );
    assert!(!Path::new(&dest).exists());
}

#[test]
fn a_built_image_unpacks_as_umoci_sees_it() {
    if !common::privileged("export::a_built_image_unpacks_as_umoci_sees_it") {
        return;
    }
    let root = Root::new();
    root.pull(&hello());
    let ctx = root.dir.path().join("ctx");
    fs::create_dir_all(ctx.join("srv/app/empty")).unwrap();
    fs::write(ctx.join("srv/app/run.sh"), "#!/bin/sh\necho app\n").unwrap();
    std::os::unix::fs::symlink("run.sh", ctx.join("srv/app/start")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(ctx.join("srv/app/run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(ctx.join("srv/app/run.sh"), Some(1000), Some(100)).unwrap();
    let build = |tag: &str, extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["images", "build", "--from", "hello", "--add", ctx.to_str().unwrap(), "--tag", tag];
        args.extend_from_slice(extra);
        let mut c = root.cmd();
        c.env("SOURCE_DATE_EPOCH", "1700000000").arg("--json").args(&args);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // --exports replaces the base's /exports (hello ships five entries there) with the directory.
    let exports = root.dir.path().join("exports");
    fs::create_dir(&exports).unwrap();
    fs::write(exports.join("service.template"), "[Service]\nExecStart=$EXEC_START\n").unwrap();
    build(
        "app:1-1",
        &[
            "--healthcheck",
            "test -x /srv/app/run.sh",
            "--healthcheck-interval",
            "30s",
            "--cmd",
            "[\"/srv/app/start\"]",
            "--exports",
            exports.to_str().unwrap(),
        ],
    );

    // umoci's unpacking of the exported layout equals hoist's view of the built image.
    let layout = root.dir.path().join("layout");
    root.ok(&["images", "export", "app:1-1", &format!("oci:{}:1-1", layout.display())]);
    let reference = root.dir.path().join("reference");
    let o = Command::new("umoci")
        .args(["raw", "unpack", "--image", &format!("{}:1-1", layout.display())])
        .arg(&reference)
        .output()
        .unwrap();
    assert!(o.status.success(), "umoci: {}", String::from_utf8_lossy(&o.stderr));
    let mnt = root.dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    root.ok(&["mount", "app:1-1", mnt.to_str().unwrap()]);
    let (ours, theirs) = (snapshot(&mnt), snapshot(&reference));
    root.ok(&["umount", mnt.to_str().unwrap()]);
    assert_eq!(ours, theirs);
    assert!(ours.keys().any(|k| k.ends_with("srv/app/run.sh")), "{:?}", ours.keys().collect::<Vec<_>>());
    assert_eq!(
        ours.keys().filter(|k| k.starts_with("exports")).collect::<Vec<_>>(),
        ["exports", "exports/service.template"]
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--config", "--raw", &format!("oci:{}:1-1", layout.display())]))
            .unwrap();
    assert_eq!(
        cfg["config"]["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "test -x /srv/app/run.sh"], "Interval": 30_000_000_000u64})
    );
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["/srv/app/start"]));
    assert_eq!(
        (cfg["config"]["Labels"]["version"].as_str(), cfg["config"]["Labels"]["release"].as_str()),
        (Some("1"), Some("1"))
    );

    // --format docker: the same layers, Docker v2 media types; skopeo reads it.
    build("app:1-1d", &["--format", "docker"]);
    let dir = root.dir.path().join("docker-layout");
    root.ok(&["images", "export", "app:1-1d", &format!("oci:{}", dir.display())]);
    let m: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--raw", &format!("oci:{}", dir.display())])).unwrap();
    assert_eq!(m["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(m["config"]["mediaType"], "application/vnd.docker.container.image.v1+json");
    assert!(
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip")
    );

    // A device in a context directory is refused, naming it.
    let bad = root.dir.path().join("bad");
    fs::create_dir(&bad).unwrap();
    let st = Command::new("mkfifo").arg(bad.join("pipe")).status().unwrap();
    assert!(st.success());
    let err =
        root.fails(&["images", "build", "--from", "scratch", "--add", bad.to_str().unwrap(), "--tag", "bad:1"], 1);
    assert_eq!(
        err,
        format!(
            "hoist: image bad:1: {}: not a file, directory or symlink (devices, FIFOs and sockets are refused)\n",
            bad.join("pipe").display()
        )
    );
}

/// `buildah` with its own storage (vfs) under `dir` and an accept-anything policy: nothing of
/// the host's containers storage or policy is read or changed.
fn buildah(dir: &Path, args: &[&str]) -> String {
    let policy = dir.join("policy.json");
    if !policy.exists() {
        fs::create_dir_all(dir).unwrap();
        fs::write(&policy, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
    }
    let mut c = Command::new("buildah");
    c.arg("--root").arg(dir.join("storage")).arg("--runroot").arg(dir.join("run")).args(["--storage-driver", "vfs"]);
    c.args(&args[..1]);
    if matches!(args[0], "from" | "commit") {
        c.arg("--signature-policy").arg(&policy);
    }
    let o = c.args(&args[1..]).output().unwrap();
    assert!(o.status.success(), "buildah {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn a_built_image_equals_the_same_content_committed_by_buildah() {
    if !common::privileged("export::a_built_image_equals_the_same_content_committed_by_buildah") {
        return;
    }
    assert!(have("buildah"), "buildah is needed (make test installs Debian's package)");
    let root = Root::new();
    root.pull(&hello());
    let d = root.dir.path();
    // A context as root owns it (buildah copy makes everything 0:0): files, modes, a symlink,
    // an empty directory, a hard link, a file deep below directories the base does not have.
    let ctx = d.join("ctx");
    fs::create_dir_all(ctx.join("srv/app/empty")).unwrap();
    fs::create_dir_all(ctx.join("usr/share/app/doc")).unwrap();
    fs::write(ctx.join("srv/app/run.sh"), "#!/bin/sh\necho app\n").unwrap();
    fs::write(ctx.join("usr/share/app/doc/README"), "read me\n").unwrap();
    fs::hard_link(ctx.join("usr/share/app/doc/README"), ctx.join("srv/app/README")).unwrap();
    std::os::unix::fs::symlink("run.sh", ctx.join("srv/app/start")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(ctx.join("srv/app/run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(ctx.join("srv/app/empty"), fs::Permissions::from_mode(0o1777)).unwrap();
    let mut c = root.cmd();
    c.env("SOURCE_DATE_EPOCH", "1700000000").args(["images", "build", "--from", "hello", "--add"]).arg(&ctx);
    let o = c.args(["--tag", "app:1"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The same content committed by buildah onto the same base, at the same time. (buildah
    // names an image by its layout's path, which must be lower case: the test directory is not.)
    struct Gone(std::path::PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let lower = Gone(std::path::PathBuf::from(format!("/tmp/hoist-buildah-{}", std::process::id())));
    let b = lower.0.clone();
    let base = b.join("hello-layout");
    root.ok(&["images", "export", "hello", &format!("oci:{}:latest", base.display())]);
    let ctr = buildah(&b, &["from", "--pull-never", "--quiet", &format!("oci:{}:latest", base.display())]);
    buildah(&b, &["copy", &ctr, ctx.to_str().unwrap(), "/"]);
    let theirs_layout = d.join("buildah-layout");
    buildah(
        &b,
        &["commit", "--quiet", "--timestamp", "1700000000", &ctr, &format!("oci:{}:1", theirs_layout.display())],
    );

    let unpack = |layout: &Path, out: &Path| {
        let o = Command::new("umoci")
            .args(["raw", "unpack", "--image", &format!("{}:1", layout.display())])
            .arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "umoci: {}", String::from_utf8_lossy(&o.stderr));
        snapshot(out)
    };
    let ours_layout = d.join("hoist-layout");
    root.ok(&["images", "export", "app:1", &format!("oci:{}:1", ours_layout.display())]);
    let ours = unpack(&ours_layout, &d.join("ours"));
    let theirs = unpack(&theirs_layout, &d.join("theirs"));
    let mnt = d.join("mnt");
    fs::create_dir(&mnt).unwrap();
    root.ok(&["mount", "app:1", mnt.to_str().unwrap()]);
    let mounted = snapshot(&mnt);
    root.ok(&["umount", mnt.to_str().unwrap()]);
    assert_eq!(ours, theirs, "umoci's unpacking of hoist's build vs of buildah's commit");
    assert_eq!(mounted, theirs, "hoist's view of its build vs umoci's unpacking of buildah's commit");
    // hoist reused the base's layer blobs as they were (buildah rewrites them).
    let layers = |layout: &Path, r: &str| -> Vec<serde_json::Value> {
        let m: serde_json::Value =
            serde_json::from_str(&skopeo(&["inspect", "--raw", &format!("oci:{}:{r}", layout.display())])).unwrap();
        m["layers"].as_array().unwrap().iter().map(|l| l["digest"].clone()).collect()
    };
    let (built, base_layers) = (layers(&ours_layout, "1"), layers(&base, "latest"));
    assert_eq!((built.len(), &built[..base_layers.len()]), (base_layers.len() + 1, &base_layers[..]));
    assert_eq!(
        ours.get("srv/app/empty").map(String::as_str),
        Some("dir mode 1777 owner 0:0"),
        "{:?}",
        ours.keys().filter(|k| k.starts_with("srv")).collect::<Vec<_>>()
    );
}
