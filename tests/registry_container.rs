//! Tier 3: the registry as a system container (Atomic Registry's "deployed by systemd units").
//! In one testbed: Debian's docker-registry installed by hoist from `images/registry`, fed with
//! the etcd image by skopeo, etcd pulled and installed from it; then the registry is updated to
//! its v2 image and rolled back while etcd keeps running: the pushed image survives both
//! because the registry's storage is the container's state directory, and its `config.yml` (a
//! host file in the configuration directory) follows the deployment.

mod common;

use std::fs;
use std::path::PathBuf;

use common::testbed::Testbed;
use common::*;
use serde_json::Value;

const ADDR: &str = "127.0.0.1:5000";
const ETCD_REF: &str = "docker://127.0.0.1:5000/etcd:3.4";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn registry_image() -> PathBuf {
    fixture("registry/image.json", "registry")
}
fn registry_v2_image() -> PathBuf {
    fixture("registry/image-v2.json", "registry-v2")
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// `hoist --json ARGS` inside the testbed.
fn hoist_json(tb: &Testbed, args: &str) -> Value {
    json_of(&tb.ok(&format!("hoist --json {args}")))
}

/// HTTP status and body of `GET http://127.0.0.1:5000PATH` inside the testbed ("000" and an
/// empty body while nothing listens).
fn get(tb: &Testbed, path: &str) -> (String, String) {
    let o = tb.sh(&format!(
        "curl -sS -H 'Accept: {OCI_MANIFEST}' -o /tmp/body -w '%{{http_code}}' http://{ADDR}{path}; cat /tmp/body 2>/dev/null; rm -f /tmp/body"
    ));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (code, body) = out.split_at(3.min(out.len()));
    (code.to_string(), body.to_string())
}

/// Polls until the registry answers `GET /v2/` with 200 and `{}` (30 s).
fn wait_serving(tb: &Testbed, what: &str) {
    let mut last = (String::new(), String::new());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        last = get(tb, "/v2/");
        if last == ("200".to_string(), "{}".to_string()) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!(
        "{what}: GET /v2/ never answered 200 {{}} within 30 s (last: {last:?})\nunit: {}\njournal:\n{}",
        tb.prop("registry", "ActiveState"),
        tb.journal("registry")
    );
}

/// What the registry serves of etcd:3.4: its tag list, and the sha256 of the manifest bytes.
fn served_etcd(tb: &Testbed) -> (String, String) {
    let (code, tags) = get(tb, "/v2/etcd/tags/list");
    assert_eq!(code, "200", "tags of etcd: {tags}");
    let sum = tb.ok(&format!(
        "curl -sSf -H 'Accept: {OCI_MANIFEST}' http://{ADDR}/v2/etcd/manifests/3.4 | sha256sum | cut -d' ' -f1"
    ));
    (tags, format!("sha256:{}", sum.trim()))
}

/// Every blob of etcd:3.4 is readable and matches its digest: skopeo copies it out in full
/// into a fresh layout (it verifies each blob against the manifest).
fn copy_out(tb: &Testbed, n: u32) {
    tb.ok(&format!(
        "rm -rf /tmp/etcd-out-{n} && skopeo copy -q --src-tls-verify=false {ETCD_REF} oci:/tmp/etcd-out-{n}:3.4"
    ));
}

/// The unit properties that change whenever a unit's main process is restarted.
fn run_identity(tb: &Testbed, unit: &str) -> (String, String, String, String) {
    (
        tb.prop(unit, "ActiveState"),
        tb.prop(unit, "ExecMainPID"),
        tb.prop(unit, "ActiveEnterTimestampMonotonic"),
        tb.prop(unit, "NRestarts"),
    )
}

/// `hoist list` as rows of fields (the table's columns are padded with spaces).
fn list_rows(tb: &Testbed) -> Vec<Vec<String>> {
    tb.ok("hoist list").lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

fn row(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|f| f.to_string()).collect()
}

/// What `hoist list` and `hoist --json list` say about the two containers.
fn assert_listed(tb: &Testbed, etcd_digest: &str, registry: (&str, &str, u64)) {
    let (reg_image, reg_digest, reg_deployment) = registry;
    let list = hoist_json(tb, "list");
    let got: Vec<(String, String, String, u64, String, String)> = list
        .as_array()
        .unwrap_or_else(|| panic!("list is not an array: {list}"))
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["image"].as_str().unwrap_or_default().to_string(),
                c["digest"].as_str().unwrap_or_default().to_string(),
                c["deployment"].as_u64().unwrap_or(u64::MAX),
                c["state"].as_str().unwrap_or_default().to_string(),
                c["runtime"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        got,
        vec![
            (s("etcd"), s("127.0.0.1:5000/etcd:3.4"), s(etcd_digest), 0, s("running"), s("hoist")),
            (s("registry"), s(reg_image), s(reg_digest), reg_deployment, s("running"), s("hoist")),
        ],
        "{list}"
    );
    let short = |d: &str| d.trim_start_matches("sha256:")[..12].to_string();
    assert_eq!(
        list_rows(tb),
        vec![
            row(&["NAME", "IMAGE", "DIGEST", "DEPLOYMENT", "STATE", "RUNTIME"]),
            row(&["etcd", "127.0.0.1:5000/etcd:3.4", &short(etcd_digest), "0", "running", "hoist"]),
            row(&["registry", reg_image, &short(reg_digest), &reg_deployment.to_string(), "running", "hoist"]),
        ]
    );
}

#[test]
fn registry_as_a_system_container_serves_etcd_through_update_and_rollback() {
    if !common::privileged("registry_container::registry_as_a_system_container_serves_etcd_through_update_and_rollback")
    {
        return;
    }
    for tool in ["skopeo", "curl"] {
        assert!(have(tool), "{tool} is needed for this test (make test installs it)");
    }
    let (v1, v2, etcd) = (registry_image(), registry_v2_image(), etcd());
    let config_v1 = fs::read_to_string(repo().join("images/registry/exports/hostfs/etc/registry/config.yml")).unwrap();
    let config_v2 = fs::read_to_string(repo().join("images/registry/config-v2/config.yml")).unwrap();
    assert_ne!(config_v1, config_v2);
    let tb = Testbed::up("unified");

    // 1. The registry, installed and started from its archive.
    let j = hoist_json(&tb, &format!("install --now oci-archive:{}", v1.display()));
    assert_eq!(
        (j["name"].as_str(), j["action"].as_str(), j["result"].as_str(), j["image"].as_str()),
        (Some("registry"), Some("install"), Some("done"), Some("registry:latest")),
        "{j}"
    );
    assert_eq!(j["host_files"], serde_json::json!(["/etc/registry/config.yml"]), "{j}");
    let v1_digest = j["digest"].as_str().unwrap().to_string();
    assert_eq!(
        (tb.prop("registry", "UnitFileState"), tb.prop("registry", "ActiveState"), tb.prop("registry", "Type")),
        // forking: no health check, so hoist's runner handed the registry over to systemd.
        ("enabled".to_string(), "active".to_string(), "forking".to_string())
    );
    assert_eq!(tb.ok("cat /etc/registry/config.yml"), config_v1);
    // Its storage is the container's state directory; the listen address the default value.
    tb.ok("test -d /var/lib/registry && test -z \"$(ls -A /var/lib/registry)\"");
    assert_eq!(tb.ok("stat -c %a /var/lib/registry").trim(), "700");
    wait_serving(&tb, "the installed registry");
    assert!(tb.journal("registry").contains("listening on 127.0.0.1:5000"), "{}", tb.journal("registry"));

    // 2. The etcd image pushed into it with skopeo, stored on the host's state directory.
    tb.ok(&format!("skopeo copy -q --dest-tls-verify=false oci-archive:{} {ETCD_REF}", etcd.display()));
    let (tags, manifest) = served_etcd(&tb);
    assert_eq!(tags.trim(), r#"{"name":"etcd","tags":["3.4"]}"#);
    tb.ok("test -d /var/lib/registry/docker/registry/v2/repositories/etcd/_manifests/tags/3.4");

    // 3. Pulled and installed by hoist from it; etcd started and used.
    let p = hoist_json(&tb, &format!("pull --tls-verify=false {ETCD_REF}"));
    assert_eq!(
        (p["name"].as_str(), p["result"].as_str(), p["digest"].as_str()),
        (Some("127.0.0.1:5000/etcd:3.4"), Some("done"), Some(manifest.as_str())),
        "{p}"
    );
    let e = hoist_json(&tb, &format!("install --name etcd {ETCD_REF}"));
    assert_eq!(
        (e["name"].as_str(), e["result"].as_str(), e["digest"].as_str()),
        (Some("etcd"), Some("done"), Some(manifest.as_str())),
        "{e}"
    );
    tb.ok("systemctl start etcd");
    wait_for("etcd to answer", 30, || tb.sh("etcdctl put /registry/k v1").status.success().then_some(()));
    assert_eq!(tb.ok("etcdctl get --print-value-only /registry/k"), "v1\n");
    assert_listed(&tb, &manifest, ("registry:latest", &v1_digest, 0));
    let etcd_run = run_identity(&tb, "etcd");
    assert_eq!((etcd_run.0.as_str(), etcd_run.3.as_str()), ("active", "0"));
    let reg_pid_v1 = tb.prop("registry", "ExecMainPID");

    // 4. The registry updated to v2 while etcd runs.
    let u = hoist_json(&tb, &format!("update registry --rebase oci-archive:{}", v2.display()));
    let u = &u[0];
    assert_eq!(
        (u["name"].as_str(), u["action"].as_str(), u["result"].as_str(), u["deployment"].as_u64()),
        (Some("registry"), Some("update"), Some("done"), Some(1)),
        "{u}"
    );
    assert_eq!((u["from"].as_str(), u["restarted"].as_bool()), (Some(v1_digest.as_str()), Some(true)), "{u}");
    let v2_digest = u["to"].as_str().unwrap().to_string();
    assert_ne!(v2_digest, v1_digest);
    assert_eq!(u["kept_host_files"], serde_json::json!([]), "{u}");
    assert_ne!(tb.prop("registry", "ExecMainPID"), reg_pid_v1, "the registry was restarted on v2");
    assert_eq!(tb.prop("registry", "ActiveState"), "active");
    wait_serving(&tb, "the registry on v2");
    // The unmodified config.yml is v2's now; the pushed image is still served, in full.
    assert_eq!(tb.ok("cat /etc/registry/config.yml"), config_v2);
    let (tags, still) = served_etcd(&tb);
    assert_eq!((tags.trim(), still.as_str()), (r#"{"name":"etcd","tags":["3.4"]}"#, manifest.as_str()));
    copy_out(&tb, 1);
    let again = hoist_json(&tb, &format!("pull {ETCD_REF}"));
    assert_eq!(again["digest"].as_str(), Some(manifest.as_str()), "{again}");
    // etcd was never touched.
    assert_eq!(run_identity(&tb, "etcd"), etcd_run, "etcd's unit was restarted by the registry's update");
    assert_eq!(tb.ok("etcdctl get --print-value-only /registry/k"), "v1\n");
    assert_listed(&tb, &manifest, ("registry-v2:latest", &v2_digest, 1));

    // 5. Rolled back to v1: the same checks.
    let reg_pid_v2 = tb.prop("registry", "ExecMainPID");
    let r = hoist_json(&tb, "rollback registry");
    let r = &r[0];
    assert_eq!(
        (r["name"].as_str(), r["action"].as_str(), r["result"].as_str(), r["deployment"].as_u64()),
        (Some("registry"), Some("rollback"), Some("done"), Some(0)),
        "{r}"
    );
    assert_eq!(
        (r["from"].as_str(), r["to"].as_str(), r["restarted"].as_bool()),
        (Some(v2_digest.as_str()), Some(v1_digest.as_str()), Some(true)),
        "{r}"
    );
    assert_ne!(tb.prop("registry", "ExecMainPID"), reg_pid_v2, "the registry was restarted on v1");
    assert_eq!(tb.prop("registry", "ActiveState"), "active");
    wait_serving(&tb, "the rolled-back registry");
    assert_eq!(tb.ok("cat /etc/registry/config.yml"), config_v1);
    let (tags, still) = served_etcd(&tb);
    assert_eq!((tags.trim(), still.as_str()), (r#"{"name":"etcd","tags":["3.4"]}"#, manifest.as_str()));
    copy_out(&tb, 2);
    assert_eq!(run_identity(&tb, "etcd"), etcd_run, "etcd's unit was restarted by the registry's rollback");
    assert_eq!(tb.ok("etcdctl get --print-value-only /registry/k"), "v1\n");
    assert_listed(&tb, &manifest, ("registry:latest", &v1_digest, 0));

    // 6. Uninstalled: unit and config go, the registry's data stays (no --purge); etcd runs on.
    let un = hoist_json(&tb, "uninstall registry");
    let un = &un[0];
    assert_eq!(
        (un["name"].as_str(), un["result"].as_str(), &un["removed_host_files"], &un["data"]),
        (
            Some("registry"),
            Some("done"),
            &serde_json::json!(["/etc/registry/config.yml"]),
            &serde_json::json!(["/var/lib/registry"])
        ),
        "{un}"
    );
    tb.ok("test ! -e /etc/systemd/system/registry.service && test ! -e /etc/tmpfiles.d/registry.conf && test ! -e /etc/registry/config.yml");
    tb.ok("test -d /var/lib/registry/docker/registry/v2/repositories/etcd");
    assert_eq!(get(&tb, "/v2/").0, "000", "nothing listens on {ADDR} any more");
    assert_eq!(run_identity(&tb, "etcd"), etcd_run);
}
