//! Tier 3: crash safety. `HOIST_FAULT=<step>[#n]` kills hoist with SIGKILL at that step of
//! install, update, rollback, automatic rollback and uninstall; the next hoist command repairs,
//! and the container is then exactly the expected version: unit, link, record, host files and
//! the running service agree.

mod common;

use std::fs;

use common::testbed::Testbed;
use common::*;

const SRC: &str = "/var/lib/hoist/src/hello.tar";

fn publish(tb: &Testbed, archive: &std::path::Path) {
    fs::create_dir_all(tb.dir.join("state/src")).unwrap();
    fs::copy(archive, tb.dir.join("state/src/hello.tar")).unwrap();
}

/// Runs a hoist command that must be killed at `step`.
fn killed_at(tb: &Testbed, step: &str, cmd: &str) {
    let o = tb.sh(&format!("HOIST_FAULT={step} {cmd}"));
    assert!(!o.status.success(), "{step}: {cmd} was expected to die: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(137), "{step}: killed by SIGKILL ({})", String::from_utf8_lossy(&o.stderr));
}

/// Nothing of hello is left anywhere.
fn assert_absent(tb: &Testbed, step: &str) {
    tb.ok("hoist -q list -a >/dev/null"); // the next command repairs
    let left = tb.sh("ls /var/lib/hoist/containers; ls -d /etc/systemd/system/hello.service /etc/hello/hello.conf /etc/tmpfiles.d/hello.conf 2>/dev/null");
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "{step}: left behind: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    let st = tb.prop("hello", "ActiveState");
    assert!(st == "inactive", "{step}: unit is {st}");
}

/// hello is installed, running, and every piece agrees on one deployment; returns its version.
fn assert_consistent(tb: &Testbed, step: &str) -> String {
    tb.ok("hoist -q list -a >/dev/null"); // the next command repairs
    tb.ok("test ! -e /var/lib/hoist/containers/hello/txn");
    let slot = tb.ok("readlink /var/lib/hoist/containers/hello/current").trim().to_string();
    let unit = tb.ok("cat /etc/systemd/system/hello.service");
    assert!(
        unit.contains(&format!("--bundle /var/lib/hoist/containers/hello/{slot}")),
        "{step}: unit runs another slot than {slot}:\n{unit}"
    );
    let record: serde_json::Value =
        serde_json::from_str(&tb.ok("cat /var/lib/hoist/containers/hello/current/info.json")).unwrap();
    assert_eq!(record["slot"].to_string(), slot, "{step}");
    assert!(record["host_files"].get("/etc/hello/hello.conf").is_some(), "{step}: host file tracked");
    tb.ok("test -f /etc/hello/hello.conf");
    let version = common::deployed_version(&tb.dir.join("state"), "hello");
    let answer = tb.hello_says(&format!("{step}: hello to answer"));
    assert_eq!(answer, format!("Hi world (v{version})"), "{step}: the running service is the recorded deployment");
    version
}

fn fresh_v1(tb: &Testbed) {
    let _ = tb.sh("hoist -q uninstall hello");
    publish(tb, &hello());
    tb.ok(&format!("hoist -q install --now oci-archive:{SRC}"));
}

#[test]
fn install_and_uninstall_survive_kill_9() {
    if !common::privileged("crash::install_and_uninstall_survive_kill_9") {
        return;
    }
    let tb = Testbed::up("hybrid");
    publish(&tb, &hello());
    for step in ["install:txn", "install:slot", "install:hostfs", "install:unit", "install:link", "install:enable"] {
        killed_at(&tb, step, &format!("hoist -q install --now oci-archive:{SRC}"));
        assert_absent(&tb, step);
        // And a normal install works afterwards.
        tb.ok(&format!("hoist -q install --now oci-archive:{SRC}"));
        assert_consistent(&tb, step);
        tb.ok("hoist -q uninstall hello");
    }
    for step in ["uninstall:stopped", "uninstall:unit", "uninstall:hostfs", "uninstall:renamed"] {
        tb.ok(&format!("hoist -q install --now oci-archive:{SRC}"));
        killed_at(&tb, step, "hoist -q uninstall hello");
        assert_absent(&tb, step);
    }
}

/// One row per step: where the update or rollback is killed, and the version hello runs once
/// the next command has repaired. An interrupted switch is completed; an update not yet
/// judged healthy (the journal says `judge`) is rolled back; the switch back of an automatic
/// rollback is completed (back to v1).
#[test]
fn update_and_rollback_survive_kill_9() {
    if !common::privileged("crash::update_and_rollback_survive_kill_9") {
        return;
    }
    let tb = Testbed::up("hybrid");
    for (step, expected) in [
        ("update:prepared", "1"),
        ("switch:hostfs-removed", "2"),
        ("switch:hostfs-installed", "2"),
        ("switch:unit", "2"),
        ("switch:link", "2"),
        ("switch:reload", "2"),
        ("update:switched", "1"),
        ("update:restarted", "1"),
    ] {
        fresh_v1(&tb);
        publish(&tb, &hello_v2());
        killed_at(&tb, step, "hoist -q update hello");
        assert_eq!(assert_consistent(&tb, step), expected, "{step}");
        // And the next update brings it to v2.
        tb.ok("hoist -q update hello");
        assert_eq!(assert_consistent(&tb, step), "2", "{step}: then updated");
    }
    for step in ["switch:hostfs-installed", "switch:link", "rollback:restarted"] {
        fresh_v1(&tb);
        publish(&tb, &hello_v2());
        tb.ok("hoist -q update hello");
        killed_at(&tb, step, "hoist -q rollback hello");
        assert_eq!(assert_consistent(&tb, step), "1", "{step}");
    }
    // Inside the automatic rollback of a v2 that fails: always back on v1.
    for step in ["update:judged", "switch:hostfs-removed#2", "switch:link#2", "update:restarted"] {
        fresh_v1(&tb);
        publish(&tb, &hello_broken());
        killed_at(&tb, step, "hoist -q update --grace 2 hello");
        assert_eq!(assert_consistent(&tb, step), "1", "{step}");
    }
}
