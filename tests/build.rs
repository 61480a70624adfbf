//! Tier 3: a registry's image turned into a system container and published in tag streams, as
//! Fedora's layered image builds did: `hoist images build --from hello --add … --exports …
//! --tag myapp:1.0-1`, `hoist push --stream` to a local registry (checked with skopeo: tags,
//! labels, digests), installed from the registry on a real systemd; a rebuilt release moves the
//! container following `myapp:1.0` and not the one frozen on `myapp:1.0-1`. Builds are
//! reproducible (same inputs and SOURCE_DATE_EPOCH, same digest), and the base's layers are
//! reused untouched. The etcd fixture with its /exports replaced runs from the registry on the
//! new port its files name. The README's worked example (`examples/redis-system/exports`) builds,
//! installs and renders as documented.

mod common;

use std::fs;

use common::registry::Registry;
use common::testbed::Testbed;
use common::*;
use serde_json::Value;

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// What the container on `port` answers (retried while it starts).
fn says(tb: &Testbed, port: u16) -> String {
    wait_for(&format!("port {port} to answer"), 15, || {
        let o = tb.sh(&format!("busybox nc 127.0.0.1 {port} </dev/null"));
        (o.status.success() && !o.stdout.is_empty()).then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    })
}

/// A build context: a layer setting the version file, and hello's /exports with another default.
fn context(tb: &Testbed, version: &str, receiver: &str) {
    let ctx = tb.dir.join("state/ctx");
    let _ = fs::remove_dir_all(&ctx);
    fs::create_dir_all(ctx.join("layer/etc")).unwrap();
    fs::write(ctx.join("layer/etc/hello-version"), format!("{version}\n")).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(repo().join("images/hello/exports"))
        .arg(ctx.join("exports"))
        .status()
        .unwrap();
    assert!(status.success());
    let manifest = fs::read_to_string(ctx.join("exports/manifest.json")).unwrap();
    fs::write(ctx.join("exports/manifest.json"), manifest.replace("\"world\"", &format!("\"{receiver}\""))).unwrap();
}

fn build(tb: &Testbed, tag: &str) -> String {
    let out = tb.ok(&format!(
        "SOURCE_DATE_EPOCH=1700000000 hoist --json images build --from oci-archive:{} --add /var/lib/hoist/ctx/layer:/ \
         --exports /var/lib/hoist/ctx/exports --label org.example.team=infra --tag {tag}",
        hello().display()
    ));
    let j = json_of(&out);
    assert_eq!((j["layers_reused"].as_u64(), j["layers_added"].as_u64()), (Some(2), Some(2)), "{j}");
    j["digest"].as_str().unwrap().to_string()
}

#[test]
fn built_images_publish_in_streams_and_install_from_the_registry() {
    if !common::privileged("build::built_images_publish_in_streams_and_install_from_the_registry") {
        return;
    }
    let tb = Testbed::up("hybrid");
    let reg = Registry::insecure_in(&tb);
    let a = reg.addr.clone();

    context(&tb, "1.0-1", "built");
    let d1 = build(&tb, "myapp:1.0-1");
    // Reproducible: the same inputs give the same digest.
    assert_eq!(build(&tb, "myapp:1.0-1"), d1);
    // The base's layers are the base's blobs, untouched.
    let base: Value = json_of(&tb.ok(&format!("skopeo inspect --raw oci-archive:{}", hello().display())));
    let built: Value = json_of(&tb.ok(
        "hoist images export -q myapp:1.0-1 oci:/var/lib/hoist/out && skopeo inspect --raw oci:/var/lib/hoist/out",
    ));
    assert_eq!(built["layers"][0], base["layers"][0]);
    assert_eq!(built["layers"][1], base["layers"][1]);
    assert_eq!(built["layers"].as_array().unwrap().len(), 4);

    let out = tb.ok(&format!("hoist push --stream myapp:1.0-1 docker://{a}/myapp:1.0-1"));
    assert!(
        out.starts_with(&format!("Pushed myapp:1.0-1 ({}) to {a}/myapp: 1.0-1, 1.0, latest (", &d1[7..19])),
        "{out}"
    );
    let inspect = json_of(&tb.ok(&format!("skopeo inspect docker://{a}/myapp:1.0")));
    assert_eq!(inspect["Digest"].as_str(), Some(d1.as_str()));
    let labels = &inspect["Labels"];
    assert_eq!(
        (
            labels["name"].as_str(),
            labels["version"].as_str(),
            labels["release"].as_str(),
            labels["org.example.team"].as_str()
        ),
        (Some("myapp"), Some("1.0"), Some("1"), Some("infra"))
    );

    // Installed from the registry: one container follows 1.0, one is frozen on 1.0-1.
    tb.ok(&format!("hoist -q install --now --name follow --set PORT=8181 docker://{a}/myapp:1.0"));
    tb.ok(&format!("hoist -q install --now --name frozen --set PORT=8182 docker://{a}/myapp:1.0-1"));
    assert_eq!(says(&tb, 8181), "Hi built (v1.0-1)");
    assert_eq!(says(&tb, 8182), "Hi built (v1.0-1)");

    // Release 2: rebuilt and pushed; update moves the follower only.
    context(&tb, "1.0-2", "built");
    let d2 = build(&tb, "myapp:1.0-2");
    assert_ne!(d2, d1);
    tb.ok(&format!("hoist push -q --stream myapp:1.0-2 docker://{a}/myapp:1.0-2"));
    let out = tb.ok("hoist update --all 2>&1");
    assert!(out.contains(&format!("follow: updated {} -> {}", &d1[7..19], &d2[7..19])), "{out}");
    assert!(out.contains(&format!("frozen: already up to date ({})", &d1[7..19])), "{out}");
    assert_eq!(says(&tb, 8181), "Hi built (v1.0-2)");
    assert_eq!(says(&tb, 8182), "Hi built (v1.0-1)");

    // A bad /exports is refused before anything is built.
    fs::write(tb.dir.join("state/ctx/exports/manifest.json"), "{\"defaultValues\": {\"PORT\": 8081}}").unwrap();
    let o = tb.sh("hoist images build --from myapp:1.0-2 --exports /var/lib/hoist/ctx/exports --tag myapp:1.0-3");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "hoist: --exports /var/lib/hoist/ctx/exports: manifest.json: defaultValues.PORT is not a string\n"
    );
    assert!(!tb.ok("hoist images").contains("1.0-3"));

    // The README's worked example: examples/redis-system/exports on another image (no redis
    // binary here: what is checked is that the files build, render and mount as documented).
    let ex = tb.dir.join("state/ctx/redis-exports");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(repo().join("examples/redis-system/exports"))
        .arg(&ex)
        .status()
        .unwrap();
    assert!(status.success());
    tb.ok(
        "hoist -q images build --from myapp:1.0-2 --exports /var/lib/hoist/ctx/redis-exports --tag redis-system:7.2-1",
    );
    let info = json_of(&tb.ok("hoist --json images info redis-system:7.2-1"));
    assert_eq!(
        info["variables"]["defaults"],
        serde_json::json!({"REDIS_PORT": "6379", "REDIS_BIND": "127.0.0.1", "REDIS_ARGS": ""})
    );
    assert_eq!(info["variables"]["required"], serde_json::json!([]));
    tb.ok("hoist -q install --name redis --set REDIS_PORT=6380 --set REDIS_ARGS=',\"--maxmemory\",\"64mb\"' \
         redis-system:7.2-1");
    let cfg = json_of(&tb.ok("cat /var/lib/hoist/containers/redis/current/config.json"));
    assert_eq!(
        cfg["process"]["args"],
        serde_json::json!([
            "/usr/local/bin/redis-server",
            "--port",
            "6380",
            "--bind",
            "127.0.0.1",
            "--dir",
            "/data",
            "--appendonly",
            "yes",
            "--maxmemory",
            "64mb"
        ])
    );
    let data = cfg["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/data").unwrap().clone();
    assert_eq!(data["source"], "/var/lib/redis");
    assert_eq!(tb.ok("stat -c '%u:%g %a' /var/lib/redis").trim(), "999:999 700");
    tb.ok("hoist -q uninstall redis");

    // The etcd fixture as the base: its /exports replaced by an edited copy (clients on 2479),
    // published in streams and run from the registry.
    let ex = tb.dir.join("state/ctx/etcd-exports");
    let status =
        std::process::Command::new("cp").arg("-a").arg(repo().join("images/etcd/exports")).arg(&ex).status().unwrap();
    assert!(status.success());
    let m = fs::read_to_string(ex.join("manifest.json")).unwrap();
    fs::write(ex.join("manifest.json"), m.replace("127.0.0.1:2379", "127.0.0.1:2479")).unwrap();
    tb.ok(&format!(
        "hoist -q images build --from oci-archive:{} --exports /var/lib/hoist/ctx/etcd-exports --tag etcd-system:3.4-1",
        etcd().display()
    ));
    tb.ok(&format!("hoist push -q --stream etcd-system:3.4-1 docker://{a}/etcd-system:3.4-1"));
    let inspect = json_of(&tb.ok(&format!("skopeo inspect docker://{a}/etcd-system:3.4")));
    assert_eq!(
        (
            inspect["Labels"]["name"].as_str(),
            inspect["Labels"]["version"].as_str(),
            inspect["Labels"]["release"].as_str()
        ),
        (Some("etcd-system"), Some("3.4"), Some("1"))
    );
    tb.ok(&format!("hoist -q install --now --name etcd docker://{a}/etcd-system:3.4"));
    let ctl = "etcdctl --endpoints=http://127.0.0.1:2479";
    wait_for("etcd to answer on 2479", 30, || tb.sh(&format!("{ctl} put /built/k v1")).status.success().then_some(()));
    assert_eq!(tb.ok(&format!("{ctl} get --print-value-only /built/k")).trim(), "v1");
    tb.ok("hoist -q uninstall --purge etcd");
}
