//! Tier 3: without a health check the runner hands its container over to systemd and exits
//! (`Type=forking` with a pid file), so nothing of hoist stays resident beside a running container;
//! with one it stays. On a real (throwaway) systemd, hybrid cgroups (inside a container, where
//! systemd is most careful about what it waits for).

mod common;

use common::testbed::Testbed;
use common::*;

fn main_cmdline(tb: &Testbed, unit: &str) -> String {
    tb.ok(&format!("tr '\\0' ' ' < /proc/$(systemctl show -P MainPID {unit})/cmdline"))
}

#[test]
fn the_container_is_the_main_process() {
    if !common::privileged("hand_over::the_container_is_the_main_process") {
        return;
    }
    let tb = Testbed::up("hybrid");
    tb.ok(&format!("hoist -q install --now --name h oci-archive:{}", hello().display()));
    assert_eq!(tb.hello_says("hello to answer"), "Hi world (v1)");
    // The unit's main process is the container's init; no runner is left, in the unit or anywhere.
    assert_eq!(main_cmdline(&tb, "h").trim(), "/bin/sh /usr/bin/hello.sh");
    // Every process of the unit is the container's.
    let procs = tb.ok("systemctl show -P MainPID h; systemd-cgls --no-pager -u h.service | grep -o '[0-9]\\+ ' ");
    assert!(!procs.is_empty());
    for pid in procs.split_whitespace() {
        let cmd = tb.ok(&format!("tr '\\0' ' ' < /proc/{pid}/cmdline"));
        assert!(!cmd.contains("hoist"), "pid {pid} of the unit: {cmd}");
    }
    tb.ok("! pgrep -f '[i]nternal run-bundle --name h '"); // ([i]: not this shell's own command line)
    assert_eq!(tb.prop("h", "Type"), "forking");
    assert_eq!(tb.ok("cat /run/hoist/h.pid").trim(), tb.prop("h", "MainPID"), "the pid file systemd read");

    // systemctl stop: SIGTERM reaches the container, which stops cleanly.
    tb.ok("systemctl stop h");
    assert_eq!((tb.prop("h", "ActiveState"), tb.prop("h", "Result")), ("inactive".into(), "success".into()));
    assert!(tb.journal("h").contains("hello v1: stopping"), "{}", tb.journal("h"));

    // The unit is judged by the container's own end; the next start clears what it left.
    tb.ok("systemctl start h");
    tb.ok("kill -9 $(systemctl show -P MainPID h)");
    wait_for("the unit to fail", 10, || (tb.prop("h", "ActiveState") == "failed").then_some(()));
    assert_eq!((tb.prop("h", "Result"), tb.prop("h", "ExecMainStatus")), ("signal".into(), "9".into()));
    assert_eq!(tb.ok("hoist run h cat /etc/hello-version"), "1\n", "a one-shot run of the stopped container");
    tb.ok("systemctl reset-failed h && systemctl start h");
    assert_eq!(tb.hello_says("hello to answer again"), "Hi world (v1)");
    assert_eq!(tb.ok("hoist run h cat /etc/hello-version"), "1\n", "exec into the running container");

    // With a health check the runner stays: it runs the checks.
    tb.ok(&format!(
        "hoist -q install --now --name hc --set PORT=8082 --health-cmd true oci-archive:{}",
        hello().display()
    ));
    assert!(main_cmdline(&tb, "hc").contains("internal run-bundle --name hc "), "{}", main_cmdline(&tb, "hc"));
    assert!(!tb.ok("cat /etc/systemd/system/hc.service").contains("HOIST_HAND_OVER"));
    for name in ["h", "hc"] {
        tb.ok(&format!("hoist -q uninstall {name}"));
        // Nothing of the container stays in the runtime state either.
        tb.ok(&format!("test ! -e /run/hoist/containers/{name} && test ! -e /run/hoist/bundles/{name}"));
    }
}
