//! Tier 3: coordinated updates over FleetLock on one machine. Four "hosts" share one testbed
//! (a real systemd): each has its own state root (`HOIST_ROOT`), configuration file
//! (`HOIST_CONFIG`), machine id (`HOIST_MACHINE_ID_FILE`) and container (`appN` on port 809N),
//! all following `app:stable` in a local registry, and a FleetLock server written from the
//! protocol document (tests/kit/fleetlock.py, one slot) runs beside them.
//!
//! - `app:stable` -> a broken release: `update --check` sees it without fetching a blob,
//!   `--download-only` pulls it without switching; then all four update at once: exactly one takes the slot,
//!   rolls back and keeps the slot; the other three are refused (semaphore full), keep v1 and
//!   are not restarted.
//! - -> a healthy release: the hosts update one at a time (the server's log never shows two
//!   holders) until all run it and the slot is free.
//! - `hoist apply` updating a container takes and gives back the slot the same way.
//! - killed right after taking the slot: the next update switches and gives it back.
//! - server down: nothing switches (fail closed); `--ignore-fleet-lock` switches.

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::registry::Registry;
use common::testbed::Testbed;
use common::*;
use serde_json::Value;

const HOSTS: [u32; 4] = [1, 2, 3, 4];

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The environment making one "host" (inside the testbed).
fn host(n: u32) -> String {
    format!(
        "HOIST_ROOT=/var/lib/hoist-h{n} HOIST_CONFIG=/etc/hoist/h{n}.toml HOIST_MACHINE_ID_FILE=/etc/hoist/h{n}.machine-id"
    )
}

/// What appN answers (retried while it starts).
fn says(tb: &Testbed, n: u32) -> String {
    wait_for(&format!("app{n} to answer"), 15, || {
        let o = tb.sh(&format!("busybox nc 127.0.0.1 809{n} </dev/null"));
        (o.status.success() && !o.stdout.is_empty()).then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    })
}

fn invocation(tb: &Testbed, n: u32) -> String {
    tb.prop(&format!("app{n}.service"), "InvocationID")
}

fn digest(tb: &Testbed, n: u32) -> String {
    json_of(&tb.ok(&format!("{} hoist --json status app{n}", host(n))))["digest"].as_str().unwrap().to_string()
}

/// Runs `hoist update` on the given hosts at once; (n, exit status, output) each.
fn update_at_once(tb: &Testbed, hosts: &[u32], extra: &str) -> Vec<(u32, i32, String)> {
    let mut script = String::from("rm -f /tmp/u*.out /tmp/u*.rc; ");
    for n in hosts {
        script.push_str(&format!(
            "( {} hoist update --grace 2 {extra} app{n} >/tmp/u{n}.out 2>&1; echo $? >/tmp/u{n}.rc ) & ",
            host(*n)
        ));
    }
    script.push_str("wait");
    tb.ok(&script);
    hosts
        .iter()
        .map(|n| {
            let rc = tb.ok(&format!("cat /tmp/u{n}.rc")).trim().parse().unwrap();
            (*n, rc, tb.ok(&format!("cat /tmp/u{n}.out")))
        })
        .collect()
}

/// The server's request log, one JSON object per request.
fn server_log(tb: &Testbed) -> Vec<Value> {
    fs::read_to_string(tb.dir.join("state/fleetlock.log")).unwrap_or_default().lines().map(json_of).collect()
}

fn holders(tb: &Testbed) -> Vec<String> {
    let h = json_of(&tb.ok(&format!("busybox wget -q -O - http://{}/holders", server_addr(tb))));
    h["workers"].as_array().map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

fn server_addr(tb: &Testbed) -> String {
    format!("127.0.0.1:{}", tb.ok("head -n1 /var/lib/hoist/fleetlock.port").trim())
}

fn start_server(tb: &Testbed) -> String {
    let script = repo().join("tests/kit/fleetlock.py");
    tb.ok(&format!(
        "mkdir -p /var/lib/hoist && setsid python3 {} /var/lib/hoist/fleetlock.log 1 >/var/lib/hoist/fleetlock.port 2>/dev/null </dev/null & echo $! >/var/lib/hoist/fleetlock.pid",
        script.display()
    ));
    wait_for("the FleetLock server", 10, || {
        let port = fs::read_to_string(tb.dir.join("state/fleetlock.port")).unwrap_or_default();
        (!port.trim().is_empty()).then_some(())
    });
    format!("http://{}", server_addr(tb))
}

#[test]
fn fleetlock_limits_a_bad_release_to_one_host() {
    if !common::privileged("fleetlock::fleetlock_limits_a_bad_release_to_one_host") {
        return;
    }
    let tb = Testbed::up("hybrid");
    let reg = Registry::insecure_in(&tb);
    let a = reg.addr.clone();
    let archive = |p: PathBuf| format!("oci-archive:{}", p.display());
    let v1 = reg.push(&archive(hello()), "app:stable", false);
    let url = start_server(&tb);
    for n in HOSTS {
        tb.ok(&format!(
            "mkdir -p /etc/hoist && printf '[fleetlock]\\nurl = \"{url}\"\\ngroup = \"workers\"\\n' >/etc/hoist/h{n}.toml && \
             printf '{n}{n}{n}{n}0000000000000000000000000000\\n' >/etc/hoist/h{n}.machine-id && \
             {} hoist -q install --now --name app{n} --set PORT=809{n} docker://{a}/app:stable",
            host(n)
        ));
    }
    for n in HOSTS {
        assert_eq!(says(&tb, n), "Hi world (v1)");
    }
    let ids: Vec<String> = HOSTS
        .iter()
        .map(|n| {
            json_of(&tb.ok(&format!("{} hoist --json fleet status", host(*n))))["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.iter().collect::<std::collections::BTreeSet<_>>().len(), 4, "{ids:?}");
    assert!(ids.iter().all(|i| i.len() == 32 && !i.starts_with("1111")), "{ids:?}");

    // A broken release: one host takes the slot, fails, rolls back and keeps the slot.
    let before: Vec<String> = HOSTS.iter().map(|n| invocation(&tb, *n)).collect();
    let v2 = reg.push(&archive(hello_broken()), "app:stable", false);
    // --check: one manifest request, no blob; exit 3 when an update is available.
    let short = |d: &str| d.strip_prefix("sha256:").unwrap()[..12].to_string();
    let blob_gets = || reg.access_log().lines().filter(|l| l.contains("\"GET /v2/app/blobs/sha256:")).count();
    let blobs = blob_gets();
    assert!(blobs > 0, "the installs fetched blobs: {}", reg.access_log());
    let o = tb.sh(&format!("{} hoist update --check app1", host(1)));
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("app1: update available: {} -> {} (docker://{a}/app:stable)\n", short(&v1), short(&v2))
    );
    let j = json_of(&String::from_utf8_lossy(&tb.sh(&format!("{} hoist --json update --check --all", host(1))).stdout));
    assert_eq!((j[0]["result"].as_str(), j[0]["available"].as_str()), (Some("pending"), Some(v2.as_str())));
    assert_eq!(blob_gets(), blobs, "--check fetched blobs");
    // --download-only: pulled, nothing switched, no fleet lock asked for.
    let before4 = invocation(&tb, 4);
    let o = tb.ok(&format!("{} hoist update --download-only app4", host(4)));
    assert_eq!(o, format!("app4: {} pulled and ready (`hoist update app4` switches to it)\n", short(&v2)));
    assert_eq!((invocation(&tb, 4), digest(&tb, 4)), (before4, v1.clone()));
    assert!(server_log(&tb).is_empty());
    assert!(blob_gets() > blobs, "--download-only fetched the new layers");
    let runs = update_at_once(&tb, &HOSTS, "");
    let tried: Vec<&(u32, i32, String)> = runs.iter().filter(|(_, _, out)| out.contains("rolled back")).collect();
    assert_eq!(tried.len(), 1, "{runs:#?}");
    let (w, rc, out) = tried[0];
    assert_eq!(*rc, 1, "{out}");
    assert!(
        out.contains(&format!("holding the fleet lock of group workers at {url}: the update of app{w} to")),
        "{out}"
    );
    for (n, rc, out) in runs.iter().filter(|(n, _, _)| n != w) {
        assert_eq!(*rc, 1, "{out}");
        assert!(
            out.contains(&format!(
                "fleet lock server {url} refused pre-reboot for group workers: failed_lock_semaphore_full: semaphore currently full (1 of 1 slots held) (HTTP 409)"
            )),
            "{out}"
        );
        assert!(out.contains(&format!("not switching app{n}: the new image(s) are pulled and ready")), "{out}");
        assert_eq!(invocation(&tb, *n), before[(*n - 1) as usize], "app{n} was restarted");
    }
    for n in HOSTS {
        assert_eq!(says(&tb, n), "Hi world (v1)");
        assert_eq!(digest(&tb, n), v1);
    }
    assert_eq!(holders(&tb), vec![ids[(*w - 1) as usize].clone()]);
    let status = tb.ok(&format!("{} hoist status app{w}", host(*w)));
    assert!(
        status.contains(&format!("fleet lock:  held for group workers at {url} because the update of app{w} to")),
        "{status}"
    );
    let st = json_of(&tb.ok(&format!("{} hoist --json fleet status", host(*w))));
    assert_eq!(st["state"]["phase"], "held");

    // A healthy release: the hosts go one at a time until every one runs it.
    let v3 = reg.push(&archive(hello_v2()), "app:stable", false);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut pending: Vec<u32> = HOSTS.to_vec();
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "hosts {pending:?} never updated: {:#?}", server_log(&tb));
        for (n, rc, out) in update_at_once(&tb, &pending, "") {
            if rc != 0 {
                assert!(out.contains("failed_lock_semaphore_full"), "app{n}: {out}");
            }
        }
        pending.retain(|n| digest(&tb, *n) != v3);
    }
    for n in HOSTS {
        assert_eq!(says(&tb, n), "Hi world (v2)");
        tb.ok(&format!("test ! -e /var/lib/hoist-h{n}/fleetlock.json"));
    }
    assert_eq!(holders(&tb), Vec::<String>::new());
    let log = server_log(&tb);
    assert!(log.iter().all(|l| l["holders"].as_array().unwrap().len() <= 1), "{log:#?}");
    let granted: usize = log.iter().filter(|l| l["path"] == "/v1/pre-reboot" && l["status"] == 200).count();
    assert!(granted >= 4, "{log:#?}");

    // Killed right after taking the slot: the next update finishes and gives it back.
    let v4 = reg.push(&archive(hello()), "app:stable", false);
    let o = tb.sh(&format!("{} HOIST_FAULT=update:fleet-locked hoist update --grace 2 app2", host(2)));
    assert_eq!(o.status.code(), Some(137), "killed: {o:?}");
    assert_eq!(holders(&tb), vec![ids[1].clone()]);
    let st = json_of(&tb.ok(&format!("{} hoist --json fleet status", host(2))));
    assert_eq!(st["state"]["phase"], "updating");
    assert_eq!(digest(&tb, 2), v3);
    let runs = update_at_once(&tb, &[2], "");
    assert_eq!(runs[0].1, 0, "{}", runs[0].2);
    assert!(runs[0].2.contains(&format!("released the fleet lock of group workers at {url}")), "{}", runs[0].2);
    assert_eq!(digest(&tb, 2), v4);
    assert_eq!(holders(&tb), Vec::<String>::new());
    tb.ok("test ! -e /var/lib/hoist-h2/fleetlock.json");

    // A held slot given back by hand: `hoist fleet release`.
    assert_eq!(reg.push(&archive(hello_broken()), "app:stable", false), v2);
    let runs = update_at_once(&tb, &[3], "");
    assert!(runs[0].2.contains("holding the fleet lock of group workers"), "{}", runs[0].2);
    assert_eq!(holders(&tb), vec![ids[2].clone()]);
    let o = tb.ok(&format!("{} hoist fleet release", host(3)));
    assert_eq!(o, format!("released the fleet lock of group workers at {url}\n"));
    assert_eq!(holders(&tb), Vec::<String>::new());
    tb.ok("test ! -e /var/lib/hoist-h3/fleetlock.json");
    let status = tb.ok(&format!("{} hoist status app3", host(3)));
    assert!(!status.contains("fleet lock:"), "{status}");
    assert_eq!(reg.push(&archive(hello()), "app:stable", false), v4);

    // `hoist apply` takes the slot too when it updates a container (here a new value).
    tb.ok(&format!(
        "mkdir -p /var/lib/hoist-h1/decl && printf 'image = \"docker://{a}/app:stable\"\n[set]\nPORT = 8091\nRECEIVER = \"fleet\"\n' >/var/lib/hoist-h1/decl/app1.toml"
    ));
    let seen = server_log(&tb).len();
    let o = tb.ok(&format!("{} hoist apply --dir /var/lib/hoist-h1/decl --grace 2 2>&1", host(1)));
    assert!(
        o.contains("app1: updated") && o.contains(&format!("released the fleet lock of group workers at {url}")),
        "{o}"
    );
    let calls: Vec<(String, String, u64)> = server_log(&tb)[seen..]
        .iter()
        .map(|l| (l["path"].as_str().unwrap().into(), l["id"].as_str().unwrap().into(), l["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        calls,
        vec![("/v1/pre-reboot".into(), ids[0].clone(), 200), ("/v1/steady-state".into(), ids[0].clone(), 200)]
    );
    assert_eq!((says(&tb, 1), digest(&tb, 1)), ("Hi fleet (v2)".to_string(), v3.clone()));

    // The server down: nothing switches; --ignore-fleet-lock does.
    tb.ok("kill $(cat /var/lib/hoist/fleetlock.pid)");
    let before = invocation(&tb, 1);
    let runs = update_at_once(&tb, &[1], "");
    let (_, rc, out) = &runs[0];
    assert_eq!(*rc, 1, "{out}");
    assert!(out.contains(&format!("fleet lock server {url} cannot be reached")), "{out}");
    assert!(out.contains("not switching app1"), "{out}");
    assert_eq!((invocation(&tb, 1), digest(&tb, 1)), (before, v3.clone()));
    tb.ok("test ! -e /var/lib/hoist-h1/fleetlock.json");
    let runs = update_at_once(&tb, &[1], "--ignore-fleet-lock");
    assert_eq!(runs[0].1, 0, "{}", runs[0].2);
    assert_eq!(digest(&tb, 1), v4);
    assert_eq!(says(&tb, 1), "Hi fleet (v1)");
}
