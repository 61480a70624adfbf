//! Tier 3: health checks run by the runner under a real, throwaway systemd (the testbed):
//! READY only after the first passing check, a start that never becomes healthy fails, a slow
//! start survives `TimeoutStartSec` through EXTEND_TIMEOUT_USEC, a container that turns
//! unhealthy is stopped (or only reported), a check that hangs is killed with its process tree,
//! and no unit or timer besides the service exists. Then the same from an image: the Docker
//! `Healthcheck` of an image config and `--health-cmd`, through `hoist install`.

mod common;

use common::testbed::Testbed;
use common::*;
use serde_json::{Value, json};

/// A runner unit `name` running `script` (busybox, read-only root, /dev a tmpfs) with `check`
/// as its health.json and `extra` lines in its [Service] section.
fn unit_with_check(tb: &Testbed, name: &str, script: &str, check: Value, extra: &str) {
    tb.unit(name, script);
    let mut hc = json!({"test": ["/bin/sh", "-c", "test -e /dev/ok"], "intervalMs": 300, "timeoutMs": 2000,
        "startPeriodMs": 0, "startIntervalMs": 200, "retries": 2, "onFailure": "kill", "origin": "test"});
    hc.as_object_mut().unwrap().extend(check.as_object().unwrap().clone());
    tb.ok(&format!(
        "cat > /var/lib/hoist/bundles/{name}/health.json <<'EOH'\n{hc}\nEOH\n\
         mkdir -p /etc/systemd/system/{name}.service.d\n\
         printf '[Service]\\n{extra}\\n' > /etc/systemd/system/{name}.service.d/test.conf\n\
         systemctl daemon-reload"
    ));
}

fn state(tb: &Testbed, name: &str) -> Value {
    serde_json::from_str(&tb.ok(&format!("cat /run/hoist/health/{name}.json"))).unwrap()
}

#[test]
fn readiness_and_failure_actions() {
    if !common::privileged("health::readiness_and_failure_actions") {
        return;
    }
    let tb = Testbed::up("unified");

    // Healthy after about a second: the start job waits for it.
    // (Failures inside the 5 s start period do not count.)
    unit_with_check(
        &tb,
        "late",
        "sleep 1; echo now ok; touch /dev/ok; exec sleep 1000",
        json!({"startPeriodMs": 5000}),
        "",
    );
    tb.ok("systemctl start late");
    assert_eq!(tb.prop("late", "ActiveState"), "active");
    assert_eq!(tb.prop("late", "StatusText"), "healthy");
    let j = tb.journal("late");
    let (ok_at, ready_at) = (j.find("now ok").unwrap(), j.find("health check passed: healthy").unwrap());
    assert!(ok_at < ready_at, "READY came after the container became healthy:\n{j}");
    let st = state(&tb, "late");
    assert_eq!(
        (st["status"].as_str(), st["failingStreak"].as_u64(), st["lastExit"].as_i64()),
        (Some("healthy"), Some(0), Some(0))
    );
    assert_eq!(st["command"], "test -e /dev/ok");
    // Nothing but the service: no timers, no transient units.
    let units = tb
        .ok("systemctl list-units --all --no-legend --plain --type=service,timer,scope,socket,path | awk '{print $1}' | grep -E 'late|hoist|health' || true");
    assert_eq!(units.trim(), "late.service");

    // WatchdogSec=2s: each passing check pings WATCHDOG=1, so the unit lives past 2 s.
    unit_with_check(&tb, "dog", "touch /dev/ok; exec sleep 1000", json!({}), "WatchdogSec=2s");
    tb.ok("systemctl start dog");
    let started = state(&tb, "dog")["lastCheck"].as_u64().unwrap();
    wait_for("checks for 5 s", 20, || (state(&tb, "dog")["lastCheck"].as_u64().unwrap() >= started + 5).then_some(()));
    assert_eq!((tb.prop("dog", "ActiveState"), tb.prop("dog", "NRestarts")), ("active".to_string(), "0".to_string()));
    tb.ok("systemctl kill -s KILL dog");

    // Never healthy: the start fails, with the check's output in the journal.
    unit_with_check(
        &tb,
        "never",
        "exec sleep 1000",
        json!({"test": ["/bin/sh", "-c", "echo not yet >&2; exit 3"]}),
        "",
    );
    let o = tb.sh("systemctl start never");
    assert!(!o.status.success(), "the start job fails");
    assert_eq!(tb.prop("never", "ActiveState"), "failed");
    assert_eq!(tb.prop("never", "ExecMainStatus"), "1");
    let j = tb.journal("never");
    assert!(j.contains("health check failed (exit 3): not yet"), "{j}");
    assert!(j.contains("never became healthy (2 failures after the start period): stopping: not yet"), "{j}");
    tb.ok("test ! -e /run/hoist/health/never.json && test ! -e /run/hoist/containers/never");

    // A start slower than TimeoutStartSec=2s, inside its 8 s start period: EXTEND_TIMEOUT_USEC.
    unit_with_check(
        &tb,
        "slow",
        "sleep 4; touch /dev/ok; exec sleep 1000",
        json!({"startPeriodMs": 8000, "startIntervalMs": 500, "timeoutMs": 1000}),
        "TimeoutStartSec=2s",
    );
    tb.ok("systemctl start slow");
    assert_eq!(tb.prop("slow", "ActiveState"), "active");
    assert_eq!(tb.prop("slow", "StatusText"), "healthy");

    // Healthy, then not: kill stops the container and the runner exits 1 (Restart= decides).
    unit_with_check(
        &tb,
        "turns",
        "trap 'exit 0' TERM; touch /dev/ok; sleep 2; rm /dev/ok; echo broken now; while :; do sleep 1 & wait; done",
        json!({}),
        "",
    );
    tb.ok("systemctl start turns");
    wait_for("the unhealthy unit to fail", 20, || (tb.prop("turns", "ActiveState") == "failed").then_some(()));
    assert_eq!(tb.prop("turns", "ExecMainStatus"), "1");
    assert!(tb.journal("turns").contains("unhealthy (2 failures): stopping the container"));

    // stop: exit 78, which hoist's units list in RestartPreventExitStatus=: down, not restarted.
    unit_with_check(
        &tb,
        "stops",
        "trap 'exit 0' TERM; touch /dev/ok; sleep 2; rm /dev/ok; while :; do sleep 1 & wait; done",
        json!({"onFailure": "stop"}),
        "Restart=on-failure\\nRestartSec=100ms\\nRestartPreventExitStatus=78",
    );
    tb.ok("systemctl start stops");
    wait_for("the unit to stop for good", 20, || (tb.prop("stops", "ActiveState") == "failed").then_some(()));
    assert_eq!(
        (tb.prop("stops", "ExecMainStatus"), tb.prop("stops", "NRestarts")),
        ("78".to_string(), "0".to_string())
    );
    assert!(tb.journal("stops").contains("unhealthy (2 failures): stopping the unit"));

    // … or, with onFailure none, is only reported.
    unit_with_check(
        &tb,
        "report",
        "touch /dev/ok; sleep 2; rm /dev/ok; exec sleep 1000",
        json!({"onFailure": "none"}),
        "",
    );
    tb.ok("systemctl start report");
    wait_for("the status to say unhealthy", 20, || {
        tb.prop("report", "StatusText").starts_with("unhealthy (2 failures)").then_some(())
    });
    assert_eq!(tb.prop("report", "ActiveState"), "active");
    assert_eq!(state(&tb, "report")["status"], "unhealthy");

    // A check that hangs is killed at its timeout with everything it started.
    unit_with_check(
        &tb,
        "hang",
        "exec sleep 1000",
        json!({"test": ["/bin/sh", "-c", "sleep 301 & sleep 302"], "timeoutMs": 500, "retries": 1}),
        "",
    );
    assert!(!tb.sh("systemctl start hang").status.success());
    assert!(tb.journal("hang").contains("health check failed (no exit status): timed out after 500ms"));
    wait_for("the check's processes to be gone", 10, || {
        tb.sh("pgrep -f 'sleep 30[12]'").stdout.is_empty().then_some(())
    });
}

#[test]
fn checks_from_the_image_and_from_flags() {
    if !common::privileged("health::checks_from_the_image_and_from_flags") {
        return;
    }
    let tb = Testbed::up("unified");
    let img = fixture("hello/image-health.json", "hello-health");
    tb.ok(&format!("hoist -q pull oci-archive:{}", img.display()));
    // `images info` shows the check the image brings.
    assert!(tb.ok("hoist images info hello-health").contains(
        "Health:   busybox nc 127.0.0.1 8081 </dev/null | grep -q Hi (every 1s, timeout 30s, start period 5s, 2 retries, on failure kill; from image config)\n"
    ));
    let info: Value = serde_json::from_str(&tb.ok("hoist --json images info hello-health")).unwrap();
    assert_eq!(
        (info["health_check"]["intervalMs"].as_u64(), info["health_check"]["origin"].as_str()),
        (Some(1000), Some("image config"))
    );
    // The image config's Healthcheck (CMD-SHELL, 1 s interval, 2 retries).
    tb.ok("hoist -q install --now --name hc hello-health");
    assert_eq!(tb.prop("hc", "StatusText"), "healthy");
    let rec: Value = serde_json::from_str(&tb.ok("cat /var/lib/hoist/containers/hc/current/health.json")).unwrap();
    assert_eq!(rec["test"], json!(["/bin/sh", "-c", "busybox nc 127.0.0.1 8081 </dev/null | grep -q Hi"]));
    assert_eq!(
        (rec["intervalMs"].as_u64(), rec["retries"].as_u64(), rec["origin"].as_str()),
        (Some(1000), Some(2), Some("image config"))
    );
    // status and list show it.
    let st: Value = serde_json::from_str(&tb.ok("hoist --json status hc")).unwrap();
    assert_eq!((st["health"].as_str(), st["health_state"]["status"].as_str()), (Some("healthy"), Some("healthy")));
    assert_eq!(
        (st["health_state"]["lastExit"].as_i64(), st["health_check"]["origin"].as_str()),
        (Some(0), Some("image config"))
    );
    assert!(
        tb.ok("hoist status hc")
            .contains("  health:      healthy (check `busybox nc 127.0.0.1 8081 </dev/null | grep -q Hi`, every 1s)\n")
    );
    let list = tb.ok("hoist list");
    assert!(list.lines().any(|l| l.starts_with("hc ") && l.contains(" running (healthy) ")), "{list}");
    // --health-cmd wins, is kept by an update, and --no-healthcheck turns it off.
    tb.ok("hoist -q install --now --name flagged --set PORT=8082 --health-cmd 'test -e /etc/hello-version' --health-interval 2s hello-health");
    let hc: Value = serde_json::from_str(&tb.ok("cat /var/lib/hoist/containers/flagged/current/health.json")).unwrap();
    assert_eq!((hc["origin"].as_str(), hc["intervalMs"].as_u64()), (Some("--health-cmd"), Some(2000)));
    assert_eq!(tb.prop("flagged", "StatusText"), "healthy");
    tb.ok("hoist -q update --no-pull --health-retries 5 flagged");
    let hc: Value = serde_json::from_str(&tb.ok("cat /var/lib/hoist/containers/flagged/current/health.json")).unwrap();
    assert_eq!(
        (hc["origin"].as_str(), hc["intervalMs"].as_u64(), hc["retries"].as_u64()),
        (Some("--health-cmd"), Some(2000), Some(5))
    );
    tb.ok("hoist -q update --no-pull --no-healthcheck flagged");
    tb.ok("test ! -e /var/lib/hoist/containers/flagged/current/health.json");
    // No check: the runner handed the container over (its init is the main process).
    assert_eq!(tb.prop("flagged", "Type"), "forking");
    assert!(
        tb.ok("tr '\\0' ' ' < /proc/$(systemctl show -P MainPID flagged)/cmdline")
            .starts_with("/bin/sh /usr/bin/hello.sh")
    );
    // A Docker-format image (skopeo's docker-archive: Docker schema 2 manifest, Docker config)
    // brings its Healthcheck the same way.
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let docker = dir.path().join("hello-docker.tar");
    let o = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", &format!("oci-archive:{}", img.display())])
        .arg(format!("docker-archive:{}:hello-docker:1", docker.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    tb.ok(&format!("hoist -q install --now --name dock --set PORT=8083 docker-archive:{}", docker.display()));
    let hc: Value = serde_json::from_str(&tb.ok("cat /var/lib/hoist/containers/dock/current/health.json")).unwrap();
    assert_eq!((hc["origin"].as_str(), hc["intervalMs"].as_u64()), (Some("image config"), Some(1000)));
    assert_eq!(tb.prop("dock", "StatusText"), "healthy");
    // A bad flag is a usage error naming it, before anything is done.
    let o = tb.sh("hoist install --name bad --health-interval soon hello-health");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "hoist: health check from --health-interval: \"soon\" is not a duration (like 30s, 1m30s, 500ms)"
    );
}

/// `hoist update` judges a deployment with a check by its health: a new deployment that never
/// becomes healthy is rolled back (the old one keeps serving), with the check's output quoted;
/// one that turns unhealthy within the grace period (`onFailure: none`, so it keeps running)
/// is rolled back too.
#[test]
fn updates_are_judged_by_health() {
    if !common::privileged("health::updates_are_judged_by_health") {
        return;
    }
    let tb = Testbed::up("unified");
    let img = fixture("hello/image-health.json", "hello-health");
    tb.ok(&format!("hoist -q pull oci-archive:{}", img.display()));
    tb.ok("hoist -q install --now --name up hello-health");
    assert_eq!(tb.hello_says("hello to answer"), "Hi world (v1)");
    let st: Value = serde_json::from_str(&tb.ok("hoist --json status up")).unwrap();
    assert_eq!(st["deployment"], 0);

    let o = tb.sh("hoist update --no-pull --health-cmd 'echo no db >&2; exit 1' --health-retries 1 up");
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.starts_with("hoist: up: update to "), "{e}");
    assert!(e.contains("; rolled back to "), "{e}");
    assert!(
        e.contains("hoist-runner[up]: never became healthy (1 failures after the start period): stopping: no db"),
        "{e}"
    );
    let st: Value = serde_json::from_str(&tb.ok("hoist --json status up")).unwrap();
    assert_eq!((st["deployment"].as_u64(), st["health"].as_str()), (Some(0), Some("healthy")));
    assert_eq!(st["health_check"]["origin"], "image config", "the failed update's flags are not kept");
    assert_eq!(tb.hello_says("the old deployment to answer again"), "Hi world (v1)");

    // Healthy at first, unhealthy within the grace period.
    let o = tb.sh("hoist update --no-pull --grace 8 --health-cmd 'test ! -e /tmp/second && touch /tmp/second' \
         --health-interval 300ms --health-retries 2 --health-on-failure none up");
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("the health check `test ! -e /tmp/second && touch /tmp/second` failed 2 time(s) in a row within the grace period"),
        "{e}"
    );
    let st: Value = serde_json::from_str(&tb.ok("hoist --json status up")).unwrap();
    assert_eq!((st["deployment"].as_u64(), st["health"].as_str()), (Some(0), Some("healthy")));

    // kill -9 of hoist while it judges a healthy new deployment: the next command repairs it
    // like any crash before the verdict, back to deployment 0, serving and healthy.
    tb.ok("setsid -f sh -c 'exec hoist -q update --no-pull --grace 120 --health-interval 400ms up >/dev/null 2>&1'");
    wait_for("the update to be judging deployment 1", 30, || {
        // The journal says `judge` only once the switch is done (before, a kill completes the
        // switch instead); the health file may still be deployment 0's until the new runner writes.
        let judging = tb.sh("test \"$(readlink /var/lib/hoist/containers/up/current)\" = 1 && grep -q '\"op\":\"judge\"' /var/lib/hoist/containers/up/txn && grep -q '\"healthy\"' /run/hoist/health/up.json");
        judging.status.success().then_some(())
    });
    // (`[h]`: the pattern must not match this shell's own command line.)
    tb.ok("pkill -9 -f '[h]oist -q update'");
    wait_for("the killed hoist to be gone", 10, || {
        tb.sh("pgrep -f '[h]oist -q update'").stdout.is_empty().then_some(())
    });
    tb.ok("hoist -q list >/dev/null"); // repairs
    tb.ok("test ! -e /var/lib/hoist/containers/up/txn");
    assert_eq!(tb.ok("readlink /var/lib/hoist/containers/up/current").trim(), "0");
    let st: Value = serde_json::from_str(&tb.ok("hoist --json status up")).unwrap();
    assert_eq!((st["deployment"].as_u64(), st["state"].as_str()), (Some(0), Some("running")));
    assert_eq!(st["health_check"]["intervalMs"], 1000, "deployment 0's own check");
    wait_for("deployment 0 to be healthy again", 20, || {
        let st: Value = serde_json::from_str(&tb.ok("hoist --json status up")).unwrap();
        (st["health"] == "healthy").then_some(())
    });
    assert_eq!(tb.hello_says("deployment 0 to answer after the repair"), "Hi world (v1)");
}
