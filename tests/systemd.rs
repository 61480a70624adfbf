//! Tier 3: the runner as the main process of real units, under a throwaway systemd (the testbed,
//! `tests/testbed/testbed`): start, journal, stop, crash, in hybrid and unified cgroup guests.

mod common;

use common::testbed::Testbed;
use common::*;

fn lifecycle(cgroup: &str) {
    let tb = Testbed::up(cgroup);
    tb.unit("svc", "echo hello from svc; trap 'echo svc got TERM; exit 0' TERM; while :; do sleep 1; done");
    tb.ok("systemctl start svc");
    assert_eq!(tb.prop("svc", "ActiveState"), "active");
    let init = tb.ok(r#"sed 's/.*"pid":\([0-9]*\).*/\1/' /run/hoist/containers/svc/state.json"#).trim().to_string();
    assert_eq!(tb.prop("svc", "StatusText"), format!("container svc running (pid {init})"));
    wait_for("the container's line in the journal", 10, || tb.journal("svc").contains("hello from svc").then_some(()));
    // The container runs inside the unit's cgroup, so stop, KillMode and the journal find it.
    assert_eq!(tb.prop("svc", "ControlGroup"), "/system.slice/svc.service");
    let cg = tb.ok(&format!("cat /proc/{init}/cgroup"));
    assert!(cg.lines().any(|l| l.ends_with("/system.slice/svc.service/payload")), "{cg}");
    assert!(
        tb.ok("systemctl show -P MainPID svc").trim() != init,
        "the runner, not the container, is the main process"
    );
    tb.ok("systemctl stop svc");
    assert_eq!(tb.prop("svc", "ActiveState"), "inactive", "stopped cleanly, not failed");
    assert_eq!(tb.prop("svc", "Result"), "success");
    assert!(tb.journal("svc").contains("svc got TERM"));
    tb.ok("test ! -e /run/hoist/containers/svc && test ! -e /run/hoist/bundles/svc");
    wait_for("the unit's cgroups to be removed", 10, || {
        tb.sh("ls -d /sys/fs/cgroup/system.slice/svc.service /sys/fs/cgroup/*/system.slice/svc.service 2>/dev/null")
            .stdout
            .is_empty()
            .then_some(())
    });
    // And it starts again.
    tb.ok("systemctl start svc && systemctl stop svc");
}

#[test]
fn unit_lifecycle_hybrid_cgroups() {
    if !common::privileged("systemd::unit_lifecycle_hybrid_cgroups") {
        return;
    }
    lifecycle("hybrid");
}

#[test]
fn unit_lifecycle_unified_cgroups() {
    if !common::privileged("systemd::unit_lifecycle_unified_cgroups") {
        return;
    }
    lifecycle("unified");
}

#[test]
fn crashing_container_fails_the_unit() {
    if !common::privileged("systemd::crashing_container_fails_the_unit") {
        return;
    }
    let tb = Testbed::up("hybrid");
    // The payload runs until told to fail: the start job (Type=notify) deterministically succeeds,
    // then the container dies with status 42.
    tb.unit("crash", "trap 'echo about to fail; exit 42' USR1; echo waiting; while :; do sleep 1 & wait; done");
    tb.ok("systemctl start crash");
    assert_eq!(tb.prop("crash", "ActiveState"), "active");
    tb.ok("systemctl kill --kill-whom=main -s USR1 crash");
    wait_for("the unit to fail", 10, || (tb.prop("crash", "ActiveState") == "failed").then_some(()));
    assert_eq!(tb.prop("crash", "ExecMainStatus"), "42");
    assert_eq!(tb.prop("crash", "Result"), "exit-code");
    assert!(tb.journal("crash").contains("about to fail"));
    tb.ok("test ! -e /run/hoist/containers/crash");
}

#[test]
fn testbed_commands() {
    if !common::privileged("systemd::testbed_commands") {
        return;
    }
    let tb = Testbed::up("hybrid");
    let st = tb.script().arg("status").output().unwrap();
    assert!(String::from_utf8_lossy(&st.stdout).starts_with("running:"));
    // `up` on a running testbed refuses.
    let again = tb.script().arg("up").output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already runs"));
    // exec passes the exit status, stdin and the working directory through, and runs our hoist.
    assert_eq!(tb.sh("exit 5").status.code(), Some(5));
    let mut child = tb
        .script()
        .args(["exec", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"through").unwrap();
    drop(child.stdin.take());
    assert_eq!(child.wait_with_output().unwrap().stdout, b"through");
    assert_eq!(tb.ok("pwd").trim(), repo().display().to_string());
    // A working directory the guest can name (getcwd), not only $PWD.
    assert_eq!(tb.ok("readlink -f .").trim(), repo().display().to_string());
    // ... so relative source paths work inside.
    let _ = hello();
    assert!(tb.ok("hoist --root /tmp/r pull oci-archive:target/test-images/hello.tar").contains("Pulled hello:latest"));
    assert!(tb.ok("hoist --version").starts_with("hoist "));
    assert_eq!(tb.ok("systemctl is-system-running").trim(), "running");
    // The guest's /tmp is its own.
    let marker = format!("/tmp/hoist-tb-marker-{}", std::process::id());
    tb.ok(&format!("touch {marker}"));
    assert!(!std::path::Path::new(&marker).exists());
    drop(tb);
}
