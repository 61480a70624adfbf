//! Tier 3: install / uninstall / list / status / logs / run on a real (throwaway) systemd.
//! etcd end to end, hello's host files, hostile values and names, failed installs.

mod common;

use std::fs;

use common::testbed::Testbed;
use common::*;
use hoist::oci_build::{ImageBuilder, LayerBuilder};
use serde_json::{Value, json};

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn etcd_end_to_end() {
    if !common::privileged("install::etcd_end_to_end") {
        return;
    }
    let tb = Testbed::up("hybrid");
    let etcd = etcd();
    let out = tb.ok(&format!("hoist --json install oci-archive:{}", etcd.display()));
    let j = json_of(&out);
    assert_eq!(
        (j["name"].as_str(), j["action"].as_str(), j["result"].as_str()),
        (Some("etcd"), Some("install"), Some("done"))
    );
    assert_eq!(j["host_files"], json!(["/etc/etcd/etcd.conf", "/usr/local/bin/etcdctl"]));
    assert_eq!(tb.prop("etcd", "UnitFileState"), "enabled");
    assert_eq!(tb.prop("etcd", "ActiveState"), "inactive", "install without --now does not start");
    tb.ok("test -f /etc/systemd/system/etcd.service && test -f /etc/tmpfiles.d/etcd.conf && test -d /var/lib/etcd/etcd.etcd");

    tb.ok("systemctl start etcd");
    assert_eq!(tb.prop("etcd", "ActiveState"), "active");
    // etcd answers on 2379, through the ${NAME}ctl host file.
    wait_for("etcd to answer", 30, || tb.sh("etcdctl put /hoist/k v1").status.success().then_some(()));
    assert_eq!(tb.ok("etcdctl get --print-value-only /hoist/k").trim(), "v1");
    // Its own log lines are in the unit's journal.
    wait_for("etcd's log lines", 10, || tb.journal("etcd").contains("ready to serve client requests").then_some(()));
    assert!(tb.ok("hoist logs etcd -n 200").contains("ready to serve client requests"));

    let list = json_of(&tb.ok("hoist --json list"));
    assert_eq!(list[0]["name"], "etcd");
    assert_eq!(list[0]["state"], "running");
    assert_eq!(list[0]["deployment"], 0);
    assert_eq!(list[0]["runtime"], "hoist");
    let st = json_of(&tb.ok("hoist status etcd --json"));
    assert_eq!(st["unit"]["active_state"], "active");
    assert!(tb.ok("hoist status etcd").contains("etcd: running"));
    // hoist run: exec into the running container.
    assert_eq!(tb.ok("hoist run etcd etcdctl get --print-value-only /hoist/k").trim(), "v1");

    // Data survives stop/start; stop leaves the unit inactive, not failed.
    tb.ok("systemctl stop etcd");
    assert_eq!(tb.prop("etcd", "ActiveState"), "inactive");
    assert_eq!(tb.prop("etcd", "Result"), "success");
    assert_eq!(json_of(&tb.ok("hoist --json list"))[0]["state"], Value::Null, "list without -a shows running only");
    assert_eq!(json_of(&tb.ok("hoist --json list -a"))[0]["state"], "inactive");
    // hoist run on a stopped container: a one-shot run of its bundle.
    assert!(tb.ok("hoist run etcd /bin/ls /var/lib/etcd").contains("etcd.etcd"));
    tb.ok("systemctl start etcd");
    wait_for("etcd after restart", 30, || {
        tb.sh("etcdctl get --print-value-only /hoist/k").stdout.starts_with(b"v1").then_some(())
    });

    // A host file the user edited survives uninstall; the rest goes.
    tb.ok("echo '# mine' >> /etc/etcd/etcd.conf");
    let out = tb.ok("hoist uninstall etcd");
    assert!(out.contains("Kept /etc/etcd/etcd.conf: it was modified"), "{out}");
    tb.ok("test ! -e /etc/systemd/system/etcd.service && test ! -e /etc/tmpfiles.d/etcd.conf && test ! -e /usr/local/bin/etcdctl");
    tb.ok("test -z \"$(ls /var/lib/hoist/containers)\"");
    tb.ok("test -d /var/lib/etcd/etcd.etcd"); // data stays without --purge
    // Our unit is gone. (Debian's etcd-server package has its own etcd.service in
    // /lib/systemd/system, which ours shadowed: systemd falls back to it, as it should.)
    let fragment = tb.prop("etcd", "FragmentPath");
    assert!(!fragment.starts_with("/etc/systemd/system"), "{fragment}");
    // The image stays, no longer in use.
    assert_eq!(json_of(&tb.ok("hoist --json images"))[0]["in_use"], false);
}

/// An image whose unit and config use a value the user sets.
fn greeter(tb: &Testbed) -> std::path::PathBuf {
    let mut l = LayerBuilder::new();
    l.file(
        "exports/service.template",
        b"[Unit]\nDescription=greeter $NAME\n[Service]\nExecStart=$EXEC_START\nEnvironment=GREETING=$GREETING\n",
        0o644,
    );
    l.file(
        "exports/config.json.template",
        br#"{"ociVersion": "1.0.2", "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/sh", "-c", "echo \"$$GREETING\"; sleep 1000"], "env": ["PATH=/bin", "GREETING=$GREETING"], "cwd": "/"}, "root": {"path": "rootfs", "readonly": true}, "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}], "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}}"#,
        0o644,
    );
    l.file("exports/manifest.json", br#"{"defaultValues": {"GREETING": "hi"}}"#, 0o644);
    let base = hoist::oci_build::spec::build(&repo().join("images/hello/image.json")).unwrap();
    let built = ImageBuilder::new(vec![base.layers[0].clone(), l.finish()], json!({})).build();
    let path = tb.dir.join("state/greeter.tar");
    fs::write(&path, built.oci_archive("latest")).unwrap();
    // The testbed's /var/lib/hoist is $DIR/state.
    std::path::PathBuf::from("/var/lib/hoist/greeter.tar")
}

#[test]
fn hostile_values_and_names() {
    if !common::privileged("install::hostile_values_and_names") {
        return;
    }
    let tb = Testbed::up("hybrid");
    let image = greeter(&tb);
    tb.ok(&format!("hoist -q pull oci-archive:{}", image.display()));
    // A newline would add a directive to the unit: refused, nothing left behind.
    let o = tb.sh("hoist install --name g1 --set 'GREETING=x\nExecStartPre=/bin/touch /tmp/pwned' greeter");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("value of $GREETING contains a control character"), "{err}");
    tb.ok("test ! -e /etc/systemd/system/g1.service && test ! -e /var/lib/hoist/containers/g1");
    // Quotes cannot break out of config.json; % cannot expand in the unit.
    tb.ok(r#"hoist install --now --name g2 --set 'GREETING=a", "evil": "b %n' greeter"#);
    let cfg = json_of(&tb.ok("cat /var/lib/hoist/containers/g2/current/config.json"));
    assert!(cfg["process"]["env"].as_array().unwrap().contains(&json!("GREETING=a\", \"evil\": \"b %n")));
    assert!(cfg.get("evil").is_none());
    assert!(tb.ok("cat /etc/systemd/system/g2.service").contains("Environment=GREETING=a\", \"evil\": \"b %%n"));
    wait_for("the greeting", 10, || tb.journal("g2").contains("a\", \"evil\": \"b %n").then_some(()));
    // Forced variables cannot be set; bad syntax is a usage error.
    assert_eq!(tb.sh("hoist install --name g3 --set NAME=other greeter").status.code(), Some(2));
    assert_eq!(tb.sh("hoist install --name g3 --set NOEQUALS greeter").status.code(), Some(2));
    // Hostile and empty names.
    for name in ["../x", "a/b", "''", ".hidden", "-x", "a+b"] {
        let o = tb.sh(&format!("hoist install --name={name} greeter"));
        assert_eq!(o.status.code(), Some(1), "{name}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("invalid container name"), "{name}");
    }
    assert!(String::from_utf8_lossy(&tb.sh("hoist uninstall ../x").stderr).contains("invalid container name"));
    tb.ok("test -z \"$(ls /var/lib/hoist/containers | grep -v g2)\"");
    // Installing an existing name says so.
    let o = tb.sh("hoist install --name g2 greeter");
    assert!(String::from_utf8_lossy(&o.stderr).contains("container g2 already exists"));
}

#[test]
fn failed_installs_leave_nothing() {
    if !common::privileged("install::failed_installs_leave_nothing") {
        return;
    }
    let tb = Testbed::up("hybrid");
    // The container cannot start (its program is missing): --now fails and everything is undone.
    let mut l = LayerBuilder::new();
    l.file("bin/placeholder", b"", 0o644);
    l.file("exports/hostfs/etc/broken.conf", b"x=1\n", 0o644);
    let built = ImageBuilder::new(vec![l.finish()], json!({"Cmd": ["/bin/does-not-exist"]})).build();
    fs::write(tb.dir.join("state/broken.tar"), built.oci_archive("latest")).unwrap();
    let o = tb.sh("hoist install --now oci-archive:/var/lib/hoist/broken.tar");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("broken.service: start job finished with result 'failed'"), "{err}");
    tb.ok("test ! -e /etc/systemd/system/broken.service && test ! -e /etc/broken.conf && test -z \"$(ls /var/lib/hoist/containers)\"");
    assert_eq!(tb.prop("broken", "LoadState"), "not-found");

    // A template variable nobody set: the error names it and the file.
    let mut l = LayerBuilder::new();
    l.file("exports/service.template", b"[Service]\nExecStart=$EXEC_START --token=$TOKEN\n", 0o644);
    let built = ImageBuilder::new(vec![l.finish()], json!({"Cmd": ["/x"]})).build();
    fs::write(tb.dir.join("state/needs.tar"), built.oci_archive("latest")).unwrap();
    let o = tb.sh("hoist install oci-archive:/var/lib/hoist/needs.tar");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/exports/service.template: unknown variable $TOKEN"), "{err}");
    tb.ok("test -z \"$(ls /var/lib/hoist/containers)\" && test ! -e /etc/systemd/system/needs.service");
    // Uninstalling something that is not there says so.
    assert!(String::from_utf8_lossy(&tb.sh("hoist uninstall nothing").stderr).contains("no container named nothing"));
}

#[test]
fn hello_without_systemd_reachable_fails_clearly() {
    // A system bus nobody listens on (on any host, with or without systemd): install says why,
    // and leaves nothing behind.
    let r = Root::new();
    let bus = format!("unix:path={}", r.dir.path().join("no-bus").display());
    let o = r
        .cmd()
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus)
        .args(["install", &format!("oci-archive:{}", hello().display())])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    // Progress of the pull, then one error line.
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("hoist: cannot reach systemd over the system bus (failed to connect to `unix:path="),
        "{err}"
    );
    assert!(err.lines().all(|l| l == last || l.starts_with("Copying") || l.starts_with("Extracting")), "{err}");
    assert_eq!(r.count("containers"), 0);
}
