//! `make bench`: hoist side by side with podman, skopeo, umoci, runc and crun on the same images,
//! the same local registry and the same machine. See README "Benchmarks" for how to read it.
//!
//! Environment: `HOIST_BENCH_ROUNDS` (default 5; the start case runs 6× as many),
//! `HOIST_BENCH_ONLY=1,4` (case numbers), `HOIST_BENCH_KEEP=1` (keep the scratch trees).
//! Output: a markdown table on stdout and `target/bench/results.json`. Scratch runs go to
//! `target/bench/runs` and are deleted only at the end (deleting trees between runs skews ext4
//! timings: perf-anchors.md quirk 6).

mod cases;
mod harness;
mod setup;
mod systemd;

use std::collections::BTreeMap;
use std::process::Command;

use harness::Report;

fn version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    let only: Option<Vec<u32>> =
        std::env::var("HOIST_BENCH_ONLY").ok().map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    let want = |n: u32| only.as_ref().is_none_or(|o| o.contains(&n));
    let env = setup::Env::new();
    let old = env.work.join("runs");
    let _ = std::fs::remove_dir_all(&old);
    std::fs::create_dir_all(&old).unwrap();
    eprintln!("hoist bench: {} rounds per case, scratch in {}", env.rounds, old.display());
    let images = setup::images(&env);
    let reg = setup::Registry::start(&env, &images);

    let mut report = Report::default();
    let mut m = BTreeMap::new();
    m.insert("cores".to_string(), std::thread::available_parallelism().map(|n| n.to_string()).unwrap_or_default());
    m.insert("kernel".to_string(), version("uname", "-r"));
    m.insert("cgroups".to_string(), if env.hybrid { "hybrid" } else { "unified or v1" }.to_string());
    for (tool, arg) in [
        ("podman", "--version"),
        ("skopeo", "--version"),
        ("umoci", "--version"),
        ("runc", "--version"),
        ("crun", "--version"),
    ] {
        m.insert(tool.to_string(), version(tool, arg));
    }
    m.insert("hoist".to_string(), version(env.hoist.to_str().unwrap(), "--version"));
    m.insert("rounds".to_string(), env.rounds.to_string());
    report.machine = m;

    if want(1) {
        eprintln!("1. pulls");
        report.figures.extend(cases::pulls(&env, &reg));
    }
    if want(2) {
        eprintln!("2. unpack and checkout");
        report.figures.extend(cases::unpack(&env, &images));
    }
    if want(3) || want(5) {
        eprintln!("3/5. install to active and rollback (testbed)");
        report.figures.extend(systemd::cases(&env, &reg, want(3), want(5)));
    }
    if want(4) {
        eprintln!("4. start latency");
        report.figures.extend(cases::start_latency(&env, &images));
    }
    if want(6) {
        eprintln!("6. memory");
        report.figures.extend(cases::memory(&env, &images, &reg));
    }
    if want(7) {
        eprintln!("7. disk");
        report.figures.extend(cases::disk(&env, &images, &reg));
    }
    drop(reg);
    let json = env.work.join("results.json");
    std::fs::write(&json, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    println!("{}", report.markdown());
    println!("(JSON: {})", json.display());
    // The scratch trees take tens of GB; keep them only when asked.
    if std::env::var_os("HOIST_BENCH_KEEP").is_none() && std::fs::remove_dir_all(&old).is_err() {
        let rm = Command::new("rm").arg("-rf").arg(&old).status();
        if !rm.is_ok_and(|s| s.success()) {
            eprintln!("could not remove {}: delete it by hand", old.display());
        }
    }
}
