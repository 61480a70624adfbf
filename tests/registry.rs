//! Tier 2: pulls from a real registry (Debian's docker-registry on 127.0.0.1, see
//! `common/registry.rs`), fed with skopeo: by tag and digest, re-pulls, multi-platform indexes,
//! htpasswd auth, a corrupted blob, TLS refused by default, a registry that is down.

mod common;

use std::fs;
use std::path::Path;

use common::registry::{Front, Registry, auth_file, closed_port};
use common::*;
use hoist::fetch::Platform;
use hoist::oci_build::{ImageBuilder, LayerBuilder, write_index_dir};
use serde_json::Value;

fn archive(p: &Path) -> String {
    format!("oci-archive:{}", p.display())
}

fn names(root: &Root) -> Vec<String> {
    root.json(&["images"]).as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()).collect()
}

/// Blob files in the store, and temporary files left in `tmp`.
fn blobs(root: &Root) -> Vec<String> {
    let dir = root.path().join("store/blobs/sha256");
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn pull_by_tag_and_digest_repull_and_update() {
    let reg = Registry::start();
    let pushed = reg.push(&archive(&hello()), "hello:v1", false);
    let root = Root::new();
    let r = reg.reference("hello:v1");

    // HTTPS is the default: a plain-HTTP registry is refused and the way out is named.
    let err = root.fails(&["pull", &r], 1);
    assert!(err.contains("TLS connection to 127.0.0.1:") && err.contains("--tls-verify=false"), "{err}");
    assert!(names(&root).is_empty());

    // Size limits apply to every command that pulls, before anything is downloaded.
    let o = root
        .cmd()
        .env("HOIST_MAX_LAYER_SIZE", "100")
        .args(["images", "info", "--tls-verify=false", &r])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("larger than 100 bytes; refused"), "{err}");
    assert!(names(&root).is_empty() && blobs(&root).is_empty(), "nothing stored");

    let j = root.json(&["pull", "--tls-verify=false", &r]);
    let name = format!("{}/hello:v1", reg.addr);
    assert_eq!((j["name"].as_str(), j["result"].as_str()), (Some(name.as_str()), Some("done")), "{j}");
    assert_eq!(j["digest"], pushed, "the manifest skopeo pushed, byte for byte");
    assert_eq!(j["blobs_fetched"], 4, "config, two layers, manifest: {j}");
    assert_eq!(j["layers_extracted"], 2, "extracted while downloading: {j}");
    // The layer blobs are dropped once their layers are extracted: manifest and config stay.
    assert_eq!(blobs(&root).len(), 2, "{:?}", blobs(&root));
    // Same image as the archive it was pushed from.
    let local = Root::new();
    assert_eq!(local.pull(&hello())["digest"], pushed);

    // What worked is remembered with the name: plain HTTP, tried first next time.
    let index = fs::read_to_string(root.path().join("store/index.json")).unwrap();
    assert!(index.contains(r#""io.hoist.transport": "http""#), "{index}");
    // Re-pulls are free (one manifest request: the extracted layers need no blob), and
    // --tls-verify=false is remembered for the reference and the name.
    for again in [r.as_str(), name.as_str()] {
        let j = root.json(&["pull", again]);
        assert_eq!((j["result"].as_str(), j["blobs_fetched"].as_u64()), (Some("unchanged"), Some(0)), "{again}: {j}");
    }

    // By digest: stored under a name that says so; nothing fetched twice.
    let by_digest = format!("docker://{}/hello@{pushed}", reg.addr);
    let j = root.json(&["pull", "--tls-verify=false", &by_digest]);
    let hex = pushed.strip_prefix("sha256:").unwrap();
    assert_eq!(j["name"], format!("{}/hello:sha256-{hex}", reg.addr));
    assert_eq!((j["blobs_fetched"].as_u64(), j["layers_extracted"].as_u64()), (Some(0), Some(0)));
    let wrong = format!("docker://{}/hello@sha256:{}", reg.addr, "0".repeat(64));
    let err = root.fails(&["pull", "--tls-verify=false", &wrong], 1);
    assert!(err.contains("not found in the registry: manifest sha256:000"), "{err}");

    // A tag that does not exist.
    let err = root.fails(&["pull", "--tls-verify=false", &reg.reference("hello:nope")], 1);
    assert!(err.contains("not found in the registry: tag nope of"), "{err}");

    // `images info` and `mount` take registry references too (pulling when missing).
    let info = root.json(&["images", "info", "--tls-verify=false", &reg.reference("hello:v1")]);
    assert_eq!(info["name"], name);

    // The tag moves: a pull by name follows it and fetches only what is new.
    let v2 = reg.push(&archive(&hello_v2()), "hello:v1", false);
    assert_ne!(v2, pushed);
    let j = root.json(&["pull", &name]);
    assert_eq!((j["result"].as_str(), j["digest"].as_str()), (Some("done"), Some(v2.as_str())), "{j}");
    let fetched = j["blobs_fetched"].as_u64().unwrap();
    assert!((2..4).contains(&fetched), "only the new layer, config and manifest: {j}");
    assert_eq!(j["layers_extracted"], 1, "{j}");
    assert_eq!(root.count("tmp"), 0);

    // Docker v2 schema 2 (what `docker push` writes): docker media types for manifest,
    // config and gzip layers; same layers, so nothing new is extracted.
    let docker = reg.push_with(&archive(&hello()), "hello:docker", &["--format", "v2s2"]);
    let raw: Value = serde_json::from_slice(&fs::read(reg.blob_file(&docker)).unwrap()).unwrap();
    assert_eq!(raw["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    let j = root.json(&["pull", "--tls-verify=false", &reg.reference("hello:docker")]);
    assert_eq!((j["digest"].as_str(), j["layers_extracted"].as_u64()), (Some(docker.as_str()), Some(0)), "{j}");
    let info = root.json(&["images", "info", &format!("{}/hello:docker", reg.addr)]);
    assert_eq!(info["labels"]["org.opencontainers.image.title"], "hello", "{info}");
}

fn platform_image(p: &str) -> (hoist::oci_build::Built, Platform) {
    let platform: Platform = p.parse().unwrap();
    let mut layer = LayerBuilder::new();
    layer.dir("etc", 0o755).file("etc/platform", p.as_bytes(), 0o644);
    let mut img = ImageBuilder::new(vec![layer.finish()], serde_json::json!({"Cmd": ["/bin/sh"]}));
    img.platform = Some(platform.clone());
    (img.build(), platform)
}

#[test]
fn multi_platform_index_picks_host_or_platform() {
    let reg = Registry::start();
    let host = Platform::host().to_string();
    let mut wanted = vec![host.clone()];
    for p in ["linux/arm64/v8", "linux/arm/v6", "linux/arm/v7", "linux/ppc64le"] {
        if !wanted.contains(&p.to_string()) {
            wanted.push(p.to_string());
        }
    }
    let images: Vec<_> = wanted.iter().map(|p| platform_image(p)).collect();
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let refs: Vec<_> = images.iter().map(|(b, p)| (b, p)).collect();
    write_index_dir(&dir.path().join("multi"), "1", &refs).unwrap();
    let index_digest = reg.push(&format!("oci:{}:1", dir.path().join("multi").display()), "multi:1", true);
    let digest_of = |p: &str| images.iter().find(|(_, pl)| pl.to_string() == p).unwrap().0.manifest.to_string();

    let root = Root::new();
    let r = reg.reference("multi:1");
    let j = root.json(&["pull", "--tls-verify=false", &r]);
    assert_eq!(j["digest"], digest_of(&host), "this machine's platform: {j}");
    assert_ne!(j["digest"], index_digest);
    for (ask, want) in
        [("linux/arm/v7", "linux/arm/v7"), ("linux/arm64", "linux/arm64/v8"), ("linux/arm/v6", "linux/arm/v6")]
    {
        let j = root.json(&["pull", "--platform", ask, &r]);
        assert_eq!(j["digest"], digest_of(want), "{ask}: {j}");
    }
    let err = root.fails(&["pull", "--platform", "linux/s390x", &r], 1);
    assert!(err.contains("has no manifest for linux/s390x (it has: ") && err.contains("linux/arm/v7"), "{err}");
    let err = root.fails(&["pull", "--platform", "linux", &r], 2);
    assert!(err.contains("invalid platform"), "{err}");
}

#[test]
fn auth_from_files_never_printed() {
    let reg = Registry::with_auth("alice", "s3cret-pass");
    reg.push(&archive(&hello()), "team/hello:1", false);
    let root = Root::new();
    let home = tempfile::tempdir_in(repo().join("target")).unwrap();
    let r = reg.reference("team/hello:1");
    let pull = |envs: &[(&str, &Path)], extra: &[&str]| {
        let mut c = root.cmd();
        c.env_remove("REGISTRY_AUTH_FILE").env("HOME", home.path()).env("XDG_RUNTIME_DIR", home.path().join("run"));
        c.env_remove("XDG_CONFIG_HOME");
        for (k, v) in envs {
            c.env(k, v);
        }
        c.args(["pull", "--tls-verify=false"]).args(extra).arg(&r).output().unwrap()
    };

    let o = pull(&[], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("access to") && err.contains("denied: no credentials for 127.0.0.1:"), "{err}");

    let wrong = auth_file(&home.path().join("wrong"), &reg.addr, "alice", "wrong-pass");
    for o in [pull(&[], &["--authfile", wrong.to_str().unwrap()]), pull(&[("REGISTRY_AUTH_FILE", &wrong)], &[])] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("refused the credentials of \"alice\" from"), "{err}");
        assert!(!err.contains("wrong-pass") && !err.contains("s3cret"), "never print a credential: {err}");
    }
    assert!(names(&root).is_empty());

    // podman's auth.json via REGISTRY_AUTH_FILE, then docker's config.json under $HOME.
    let right = auth_file(&home.path().join("right"), &reg.addr, "alice", "s3cret-pass");
    let o = pull(&[("REGISTRY_AUTH_FILE", &right)], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    fs::create_dir_all(home.path().join(".docker")).unwrap();
    fs::rename(
        auth_file(home.path(), &format!("http://{}/v2/", reg.addr), "alice", "s3cret-pass"),
        home.path().join(".docker/config.json"),
    )
    .unwrap();
    let _ = fs::remove_dir_all(root.path());
    let o = pull(&[], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(names(&root), vec![format!("{}/team/hello:1", reg.addr)]);
}

#[test]
fn corrupted_blob_is_refused_and_nothing_stored() {
    let reg = Registry::start();
    let pushed = reg.push(&archive(&layered()), "layered:1", false);
    let manifest: Value = serde_json::from_slice(&fs::read(reg.blob_file(&pushed)).unwrap()).unwrap();
    let layer = manifest["layers"][1]["digest"].as_str().unwrap().to_string();
    let file = reg.blob_file(&layer);
    let mut data = fs::read(&file).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::write(&file, &data).unwrap();

    let root = Root::new();
    let err = root.fails(&["pull", "--tls-verify=false", &reg.reference("layered:1")], 1);
    assert!(err.contains(&format!("layer {layer}: the registry sent content that hashes to sha256:")), "{err}");
    assert!(err.contains("nothing was stored"), "{err}");
    assert!(names(&root).is_empty());
    let stored = blobs(&root);
    for d in [&pushed, &layer] {
        assert!(!stored.contains(&d.strip_prefix("sha256:").unwrap().to_string()), "{d} must not be stored");
    }
    assert_eq!(root.count("tmp"), 0, "no temporary files left");
    assert_eq!(root.count("layers"), 0, "nothing extracted");
    // With --keep-blobs the blob is stored first, and refused there.
    let err = root.fails(&["pull", "--tls-verify=false", "--keep-blobs", &reg.reference("layered:1")], 1);
    assert!(err.contains(&format!("layer {layer}: the registry sent content that hashes to sha256:")), "{err}");
    assert!(!blobs(&root).contains(&layer.strip_prefix("sha256:").unwrap().to_string()));
    assert_eq!((root.count("tmp"), root.count("layers")), (0, 0));
}

/// Every blob's first response breaks off half-way (`tests/kit/cut_front.py`): the layer being
/// extracted from it is thrown away and fetched again, and the pull ends complete.
#[test]
fn interrupted_downloads_are_retried_from_scratch() {
    let reg = Registry::start();
    let pushed = reg.push(&archive(&layered()), "layered:1", false);
    let front = Front::start("cut_front.py", &[reg.addr.as_ref()]);
    let root = Root::new();
    let r = format!("docker://{}/layered:1", front.addr);
    let o = root.cmd().args(["pull", "--tls-verify=false", &r]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let manifest: Value = serde_json::from_slice(&fs::read(reg.blob_file(&pushed)).unwrap()).unwrap();
    for l in manifest["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        let retried =
            err.lines().any(|l| l.starts_with(&format!("layer {d}: ")) && l.ends_with("; retrying in 250 ms"));
        assert!(retried, "{d}: {err}");
    }
    let j = root.json(&["images", "info", &format!("{}/layered:1", front.addr)]);
    assert_eq!(j["digest"], pushed, "{j}");
    // Every layer extracted whole (its diff_id checked), nothing half-made left behind.
    assert_eq!(root.count("layers"), manifest["layers"].as_array().unwrap().len(), "{err}");
    assert_eq!(root.count("tmp"), 0);
}

#[test]
fn unreachable_registry_is_one_clear_line() {
    let root = Root::new();
    let port = closed_port();
    let r = format!("docker://127.0.0.1:{port}/hello:1");
    let err = root.fails(&["pull", "--tls-verify=false", &r], 1);
    let last = err.lines().last().unwrap();
    assert!(last.contains(&format!("cannot reach registry 127.0.0.1:{port}")) && last.contains("refused"), "{err}");
    assert!(err.contains("retrying"), "transient failures are retried: {err}");
    assert!(names(&root).is_empty());
}
