//! Tier 3: images written the way Project Atomic's published system images are, installed and
//! run unchanged on a real (throwaway) systemd: one image per construct class of the README's
//! compatibility table (the exact renderings are golden files: tests/golden.rs).

mod common;

use common::testbed::Testbed;
use common::*;

/// etcd in atomic's 1.0-era style: `platform`, ambient capabilities, a cgroup mount, `"devices":
/// null`, `"apparmorProfile": ""`, `RuntimeDirectory=${NAME}`, and a bare `$ADDTL_MOUNTS` that
/// an admin sets to `,{…}` to add a mount, as atomic's users did.
#[test]
fn atomic_style_etcd_runs_with_added_mounts() {
    if !common::privileged("atomic_images::atomic_style_etcd_runs_with_added_mounts") {
        return;
    }
    let tb = Testbed::up("hybrid");
    let image = etcd_atomic();
    tb.ok("mkdir -p /opt/extra && echo from-the-host > /opt/extra/marker");
    let add = r#",{"type": "bind", "source": "/opt/extra", "destination": "/opt/extra", "options": ["rbind", "ro"]}"#;
    let o =
        tb.sh(&format!("hoist install --now --name etcd --set ADDTL_MOUNTS='{add}' oci-archive:{}", image.display()));
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("hoist: warning:")).collect();
    assert_eq!(
        warnings,
        [
            "hoist: warning: etcd: config.json.template: top-level \"platform\" dropped (removed in runtime-spec 1.0.0-rc6)",
            "hoist: warning: etcd: config.json.template: empty linux.apparmorProfile dropped (runtime-spec 0.4.0 moved it to process)",
            "hoist: warning: etcd: config.json.template: \"devices\": null read as no devices",
        ]
    );
    assert!(out.contains("etcd: installed, enabled and started"), "{out}");
    wait_for("etcd to answer", 30, || tb.sh("etcdctl put /k v1").status.success().then_some(()));
    assert_eq!(tb.ok("etcdctl get --print-value-only /k").trim(), "v1");
    assert_eq!(tb.ok("hoist run etcd cat /opt/extra/marker").trim(), "from-the-host", "the added mount");
    tb.ok("test -d /run/etcd"); // RuntimeDirectory=${NAME}
    let info = tb.ok("hoist images info etcd-atomic");
    assert!(
        info.contains(
            "Take JSON text (outside a JSON string in config.json.template; empty inserts nothing): ADDTL_MOUNTS"
        ),
        "{info}"
    );
    // A fragment that breaks the config fails the update, naming the variable; nothing changes.
    let bad = tb.sh("hoist update etcd --set ADDTL_MOUNTS='{\"type\": \"bind\"}'");
    assert_eq!(bad.status.code(), Some(1));
    let last = String::from_utf8_lossy(&bad.stderr).lines().last().unwrap_or_default().to_string();
    assert_eq!(
        last,
        "hoist: etcd: /exports/config.json.template: $ADDTL_MOUNTS is outside a JSON string, so its value is \
         inserted as JSON text, and with \"{\\\"type\\\": \\\"bind\\\"}\" the config is not valid JSON: expected \
         `,` or `]` at line 183 column 9"
    );
    assert_eq!(tb.ok("readlink /var/lib/hoist/containers/etcd/current").trim(), "0");
    assert_eq!(tb.prop("etcd", "ActiveState"), "active");
    tb.ok("test ! -e /var/lib/hoist/containers/etcd/1");
    tb.ok("hoist uninstall etcd");
    tb.ok("test -z \"$(ls /var/lib/hoist/containers)\" && test ! -e /etc/systemd/system/etcd.service");
}

/// A runtime-spec 0.3.0 config (capabilities and rlimits under `linux`, names without `CAP_`):
/// converted, and the service answers.
#[test]
fn a_spec_0_3_image_is_converted_and_runs() {
    if !common::privileged("atomic_images::a_spec_0_3_image_is_converted_and_runs") {
        return;
    }
    let tb = Testbed::up("hybrid");
    let o = tb.sh(&format!("hoist install --now --name old oci-archive:{}", hello_spec03().display()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    let warnings: Vec<&str> =
        err.lines().filter_map(|l| l.strip_prefix("hoist: warning: old: config.json.template: ")).collect();
    assert_eq!(
        warnings,
        [
            "top-level \"platform\" dropped (removed in runtime-spec 1.0.0-rc6)",
            "linux.capabilities (a list, runtime-spec 0.x) became process.capabilities bounding, effective, inheritable and permitted",
            "linux.rlimits moved to process.rlimits (runtime-spec 0.4.0)",
            "capability names without CAP_ (runtime-spec 0.x) prefixed",
            "ociVersion 0.3.0 read as 1.0.2 (after the conversions above)",
        ],
        "{err}"
    );
    let answer = tb.hello_says("old to answer");
    assert_eq!(answer, "Hi world (v1)");
    let config: serde_json::Value =
        serde_json::from_str(&tb.ok("cat /var/lib/hoist/containers/old/current/config.json")).unwrap();
    let caps = serde_json::json!(["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_AUDIT_WRITE"]);
    assert_eq!(config["process"]["capabilities"]["permitted"], caps);
    assert_eq!(config["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
    assert_eq!((config["ociVersion"].as_str(), config.get("platform")), (Some("1.0.2"), None));
    tb.ok("hoist uninstall old");
}
