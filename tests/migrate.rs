//! Tier 3: a state root written by hoist ≤ stop 20 (the v1 layout: `containers/NAME.N` slots, a
//! `containers/NAME` link, `NAME.txn`, `hostfs.json`) is migrated by the first command that
//! takes the lock — also when that command is killed in the middle — and everything works on
//! it afterwards: list, status, the pending transaction, update, rollback, uninstall.

mod common;

use std::fs;
use std::path::Path;

use common::testbed::Testbed;
use common::*;
use serde_json::Value;

const SRC: &str = "/var/lib/hoist/src/hello.tar";

fn publish(tb: &Testbed, archive: &Path) {
    fs::create_dir_all(tb.dir.join("state/src")).unwrap();
    fs::copy(archive, tb.dir.join("state/src/hello.tar")).unwrap();
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn hello_says(tb: &Testbed) -> String {
    tb.hello_says("hello to answer")
}

/// Rewrites every occurrence of `from` in `file`.
fn sed(file: &Path, from: &str, to: &str) {
    if let Ok(t) = fs::read_to_string(file) {
        fs::write(file, t.replace(from, to)).unwrap();
    }
}

/// Turns the testbed's state root into the v1 layout, by hand, as hoist ≤ stop 20 documented
/// it: slots `hello.0`/`hello.1`, the link `hello -> hello.<current>`, `hostfs.json` beside a
/// version-1 record, the unit naming the v1 slot path, and a pending switch journal.
fn make_v1(tb: &Testbed, txn: &str) {
    let c = tb.dir.join("state/containers");
    let cur = fs::read_link(c.join("hello/current")).unwrap().to_string_lossy().into_owned();
    for n in ["0", "1"] {
        let old = c.join(format!("hello.{n}"));
        fs::rename(c.join("hello").join(n), &old).unwrap();
        let (v2, v1) = (format!("/var/lib/hoist/containers/hello/{n}"), format!("/var/lib/hoist/containers/hello.{n}"));
        for f in ["config.json", "hello.service", "tmpfiles.conf", "info.json"] {
            sed(&old.join(f), &v2, &v1);
        }
        let mut rec = json_of(&fs::read_to_string(old.join("info.json")).unwrap());
        let plan = rec.as_object_mut().unwrap().remove("hostfs").unwrap();
        rec["version"] = 1.into();
        fs::write(old.join("info.json"), serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
        fs::write(old.join("hostfs.json"), plan.to_string()).unwrap();
    }
    fs::remove_dir_all(c.join("hello")).unwrap();
    fs::remove_file(c.join(".layout")).unwrap();
    std::os::unix::fs::symlink(format!("hello.{cur}"), c.join("hello")).unwrap();
    fs::write(c.join("hello.txn"), txn).unwrap();
    tb.ok(&format!(
        "sed -i 's#/var/lib/hoist/containers/hello/{cur}#/var/lib/hoist/containers/hello.{cur}#g' /etc/systemd/system/hello.service && systemctl daemon-reload"
    ));
    assert_eq!(tb.ok("ls /var/lib/hoist/containers"), "hello\nhello.0\nhello.1\nhello.txn\n");
}

#[test]
fn a_v1_state_root_is_migrated_and_works() {
    if !common::privileged("migrate::a_v1_state_root_is_migrated_and_works") {
        return;
    }
    let tb = Testbed::up("hybrid");
    publish(&tb, &hello());
    tb.ok(&format!("hoist -q install --now oci-archive:{SRC}"));
    publish(&tb, &hello_v2());
    tb.ok("hoist -q update hello");
    assert_eq!(hello_says(&tb), "Hi world (v2)");
    // As if killed after switching from 0 to 1 but before removing the journal.
    make_v1(&tb, r#"{"op":"switch","from":0,"to":1,"was_running":true}"#);

    // Killed in the middle of the migration: the next command finishes it.
    let o = tb.sh("HOIST_FAULT=migrate:linked hoist list");
    assert_eq!(o.status.code(), Some(137), "{}", String::from_utf8_lossy(&o.stderr));
    let o = tb.sh("hoist list");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "hoist: migrated the state root /var/lib/hoist to the v2 layout (containers/NAME/{0,1,current,txn}): hello\n\
         hoist: repaired hello: completed an interrupted switch to deployment 1\n"
    );
    assert_eq!(tb.ok("ls -A /var/lib/hoist/containers"), ".layout\nhello\n");
    assert_eq!(tb.ok("ls /var/lib/hoist/containers/hello"), "0\n1\ncurrent\n");
    assert!(tb.ok("cat /etc/systemd/system/hello.service").contains("--bundle /var/lib/hoist/containers/hello/1"));
    tb.ok("test ! -e /var/lib/hoist/containers/hello/1/hostfs.json");
    let rec = json_of(&tb.ok("cat /var/lib/hoist/containers/hello/1/info.json"));
    assert_eq!(rec["version"], 2);
    assert_eq!(rec["values"]["DESTDIR"], "/var/lib/hoist/containers/hello/1");
    // Nothing more to do: no notice.
    assert_eq!(String::from_utf8_lossy(&tb.sh("hoist list").stderr), "");

    let l = json_of(&tb.ok("hoist --json list"));
    assert_eq!(
        (l[0]["name"].as_str(), l[0]["deployment"].as_u64(), l[0]["state"].as_str()),
        (Some("hello"), Some(1), Some("running"))
    );
    let st = json_of(&tb.ok("hoist --json status hello"));
    assert_eq!(st["deployments"], serde_json::json!([[0, "hello:latest"], [1, "hello:latest"]]), "{st}");
    assert_eq!(hello_says(&tb), "Hi world (v2)");
    tb.ok("hoist -q rollback hello");
    assert_eq!(hello_says(&tb), "Hi world (v1)");
    assert!(tb.ok("cat /etc/systemd/system/hello.service").contains("--bundle /var/lib/hoist/containers/hello/0"));
    let j = json_of(&tb.ok("hoist --json update hello"));
    assert_eq!((j[0]["result"].as_str(), j[0]["deployment"].as_u64()), (Some("done"), Some(1)), "{j}");
    assert_eq!(hello_says(&tb), "Hi world (v2)");
    tb.ok("hoist -q uninstall hello");
    assert_eq!(tb.ok("ls /var/lib/hoist/containers"), "");
    tb.ok("test ! -e /etc/systemd/system/hello.service && test ! -e /etc/hello/hello.conf");
}
