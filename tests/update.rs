//! Tier 3: update and rollback on a real (throwaway) systemd: hello v1 -> v2 while running, a
//! `--set` change, automatic rollback of a failing v3, manual rollback and roll forward,
//! stopped containers stay stopped, uninstall after updates removes both slots, prune keeps
//! what both slots need.

mod common;

use std::fs;

use common::testbed::Testbed;
use common::*;
use serde_json::Value;

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Answer of the hello service (retried while it starts).
fn hello_says(tb: &Testbed) -> String {
    tb.hello_says("hello to answer")
}

/// Replaces the archive the container was installed from (a local source re-read by update).
fn publish(tb: &Testbed, archive: &std::path::Path) {
    fs::copy(archive, tb.dir.join("state/src/hello.tar")).unwrap();
}

#[test]
fn update_rollback_and_automatic_rollback() {
    if !common::privileged("update::update_rollback_and_automatic_rollback") {
        return;
    }
    let tb = Testbed::up("hybrid");
    fs::create_dir_all(tb.dir.join("state/src")).unwrap();
    publish(&tb, &hello());
    tb.ok("hoist -q install --now oci-archive:/var/lib/hoist/src/hello.tar");
    assert_eq!(hello_says(&tb), "Hi world (v1)");

    // Nothing new: nothing done.
    let j = json_of(&tb.ok("hoist --json update hello"));
    assert_eq!(j[0]["result"], "unchanged");

    // v1 -> v2 while running: restarted on the new deployment.
    publish(&tb, &hello_v2());
    let j = json_of(&tb.ok("hoist --json update hello"));
    assert_eq!(
        (j[0]["result"].as_str(), j[0]["deployment"].as_u64(), j[0]["restarted"].as_bool()),
        (Some("done"), Some(1), Some(true))
    );
    assert_eq!(hello_says(&tb), "Hi world (v2)");
    assert_eq!(json_of(&tb.ok("hoist --json list"))[0]["deployment"], 1);
    tb.ok("test \"$(readlink /var/lib/hoist/containers/hello/current)\" = 1");
    // Both slots pin their images: prune frees nothing they need.
    tb.ok("hoist -q images prune");
    assert_eq!(json_of(&tb.ok("hoist --json images")).as_array().unwrap().len(), 1);

    // Rollback and roll forward: pointer switches, no pull.
    assert_eq!(json_of(&tb.ok("hoist --json rollback hello"))[0]["deployment"], 0);
    assert_eq!(hello_says(&tb), "Hi world (v1)");
    tb.ok("hoist -q rollback hello");
    assert_eq!(hello_says(&tb), "Hi world (v2)");

    // A value change only; the host file follows it; the UUID stays.
    let uuid = tb.ok("hoist --json status hello");
    tb.ok("hoist -q update --set RECEIVER=planet hello");
    assert_eq!(hello_says(&tb), "Hi planet (v2)");
    assert!(tb.ok("cat /etc/hello/hello.conf").contains("receiver=planet"));
    assert_eq!(json_of(&uuid)["values"]["UUID"], json_of(&tb.ok("hoist --json status hello"))["values"]["UUID"]);

    // A v3 that dies at start: rolled back automatically, v2 keeps serving, exit status 1.
    publish(&tb, &hello_broken());
    let o = tb.sh("hoist update hello");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("failed; rolled back to"), "{err}");
    assert!(err.contains("broken on purpose"), "the journal lines that explain it: {err}");
    assert_eq!(hello_says(&tb), "Hi planet (v2)");
    let l = json_of(&tb.ok("hoist --json list"));
    assert_eq!(l[0]["state"], "running");
    // The --set value survived the failed attempt.
    assert!(tb.ok("cat /etc/hello/hello.conf").contains("receiver=planet"));

    // A stopped container is updated but stays stopped.
    tb.ok("systemctl stop hello");
    publish(&tb, &hello());
    let j = json_of(&tb.ok("hoist --json update hello"));
    assert_eq!((j[0]["result"].as_str(), j[0]["restarted"].as_bool()), (Some("done"), Some(false)));
    assert_eq!(tb.prop("hello", "ActiveState"), "inactive");
    // --all visits every container; nothing new now.
    let j = json_of(&tb.ok("hoist --json update --all"));
    assert_eq!((j[0]["name"].as_str(), j[0]["result"].as_str()), (Some("hello"), Some("unchanged")));

    // Uninstall after updates removes both deployments.
    tb.ok("hoist -q uninstall hello");
    tb.ok("test -z \"$(ls /var/lib/hoist/containers)\" && test ! -e /etc/hello/hello.conf");
}

#[test]
fn rollback_needs_a_previous_deployment() {
    if !common::privileged("update::rollback_needs_a_previous_deployment") {
        return;
    }
    let tb = Testbed::up("hybrid");
    tb.ok(&format!("hoist -q install oci-archive:{}", hello().display()));
    let o = tb.sh("hoist rollback hello");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no previous deployment"));
    assert!(String::from_utf8_lossy(&tb.sh("hoist update nope").stderr).contains("no container named nope"));
}

#[test]
fn install_and_update_from_a_registry() {
    if !common::privileged("update::install_and_update_from_a_registry") {
        return;
    }
    let tb = Testbed::up("unified");
    let reg = common::registry::Registry::start_in(&tb);
    reg.push(&format!("oci-archive:{}", hello().display()), "hello:1", false);
    let r = reg.reference("hello:1");
    tb.ok(&format!("hoist -q install --now --name hello --tls-verify=false {r}"));
    assert_eq!(hello_says(&tb), "Hi world (v1)");
    let j = json_of(&tb.ok("hoist --json list"));
    assert_eq!(j[0]["image"], format!("{}/hello:1", reg.addr));

    // The registry is asked again on update (TLS choice remembered): nothing new, nothing done.
    assert_eq!(json_of(&tb.ok("hoist --json update hello"))[0]["result"], "unchanged");

    // The tag moves: update pulls it and restarts on it; rollback needs no registry.
    reg.push(&format!("oci-archive:{}", hello_v2().display()), "hello:1", false);
    let j = json_of(&tb.ok("hoist --json update hello"));
    assert_eq!((j[0]["result"].as_str(), j[0]["restarted"].as_bool()), (Some("done"), Some(true)), "{j}");
    assert_eq!(hello_says(&tb), "Hi world (v2)");
    drop(reg);
    tb.ok("hoist -q rollback hello");
    assert_eq!(hello_says(&tb), "Hi world (v1)");
    let err = tb.sh("hoist update hello");
    let msg = String::from_utf8_lossy(&err.stderr);
    assert!(!err.status.success() && msg.contains("cannot reach registry"), "{msg}");
    assert_eq!(hello_says(&tb), "Hi world (v1)", "a failed pull changes nothing");
    tb.ok("hoist -q uninstall hello");
}

/// Deployments v2: a tag like `1.0` gives the default name `NAME-1.0`, and `x.0`/`x.1` are
/// containers of their own beside `x` (their deployments live in their own directories).
#[test]
fn names_ending_in_numbers_are_containers_of_their_own() {
    if !common::privileged("update::names_ending_in_numbers_are_containers_of_their_own") {
        return;
    }
    let tb = Testbed::up("unified");
    let reg = common::registry::Registry::start_in(&tb);
    reg.push(&format!("oci-archive:{}", hello().display()), "tools/hello:1.0", false);
    let r = reg.reference("tools/hello:1.0");
    let j = json_of(&tb.ok(&format!("hoist --json install --tls-verify=false {r}")));
    assert_eq!(j["name"], "hello-1.0", "{j}");
    for name in ["x", "x.0", "x.1"] {
        tb.ok(&format!("hoist -q install --name {name} --tls-verify=false {r}"));
    }
    let all = ["hello-1.0", "x", "x.0", "x.1"];
    let deployments = |tb: &Testbed| -> Vec<(String, u64)> {
        json_of(&tb.ok("hoist --json list -a"))
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap().to_string(), c["deployment"].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(deployments(&tb), all.iter().map(|n| (n.to_string(), 0)).collect::<Vec<_>>());
    assert_eq!(tb.ok("ls /var/lib/hoist/containers/x.1"), "0\ncurrent\n");
    // x.1 runs under its own unit name.
    tb.ok("systemctl start x.1");
    assert_eq!(hello_says(&tb), "Hi world (v1)");

    // Update each (x.1 while running), then roll each back.
    reg.push(&format!("oci-archive:{}", hello_v2().display()), "tools/hello:1.0", false);
    for name in all {
        let j = json_of(&tb.ok(&format!("hoist --json update {name}")));
        assert_eq!((j[0]["result"].as_str(), j[0]["deployment"].as_u64()), (Some("done"), Some(1)), "{name}: {j}");
    }
    assert_eq!(hello_says(&tb), "Hi world (v2)");
    assert_eq!(deployments(&tb), all.iter().map(|n| (n.to_string(), 1)).collect::<Vec<_>>());
    assert_eq!(tb.ok("ls /var/lib/hoist/containers/x.1"), "0\n1\ncurrent\n");
    for name in all {
        let j = json_of(&tb.ok(&format!("hoist --json rollback {name}")));
        assert_eq!(j[0]["deployment"], 0, "{name}: {j}");
    }
    assert_eq!(hello_says(&tb), "Hi world (v1)");
    assert_eq!(tb.prop("x.1.service", "ActiveState"), "active");

    // Uninstalling x.0 leaves x and x.1 exactly as they were.
    let before = tb.ok("ls -R /var/lib/hoist/containers/x /var/lib/hoist/containers/x.1; cat /etc/systemd/system/x.service /etc/systemd/system/x.1.service");
    tb.ok("hoist -q uninstall x.0");
    assert_eq!(tb.ok("ls /var/lib/hoist/containers"), "hello-1.0\nx\nx.1\n");
    assert_eq!(tb.ok("ls -R /var/lib/hoist/containers/x /var/lib/hoist/containers/x.1; cat /etc/systemd/system/x.service /etc/systemd/system/x.1.service"), before);
    tb.ok("test ! -e /etc/systemd/system/x.0.service");
    assert_eq!(tb.prop("x.1.service", "ActiveState"), "active");
    assert_eq!(hello_says(&tb), "Hi world (v1)");

    // Nothing of any of them is left after uninstall.
    for name in ["x.1", "x", "hello-1.0"] {
        tb.ok(&format!("hoist -q uninstall {name}"));
    }
    assert_eq!(tb.ok("ls /var/lib/hoist/containers"), "");
    assert_eq!(tb.ok("ls /etc/systemd/system /etc/tmpfiles.d | grep -c -e '^x' -e '^hello' || true"), "0\n");
    assert_eq!(tb.ok("hoist --json list -a").trim(), "[]");
}

/// A host file the admin edits survives update, rollback, a failed update's automatic
/// rollback and uninstall; each command that keeps it says so, and uninstall still names it at
/// the end of the chain.
#[test]
fn an_edited_host_file_is_named_through_update_rollback_and_uninstall() {
    if !common::privileged("update::an_edited_host_file_is_named_through_update_rollback_and_uninstall") {
        return;
    }
    let tb = Testbed::up("hybrid");
    fs::create_dir_all(tb.dir.join("state/src")).unwrap();
    publish(&tb, &hello());
    tb.ok("hoist -q install --now oci-archive:/var/lib/hoist/src/hello.tar");
    tb.ok("echo '# mine' >> /etc/hello/hello.conf");
    publish(&tb, &hello_v2());
    let out = tb.ok("hoist update hello");
    assert!(
        out.contains("hello: kept /etc/hello/hello.conf: it was modified (still tracked; `hoist uninstall` names it)"),
        "{out}"
    );
    let j = json_of(&tb.ok("hoist --json rollback hello"));
    assert_eq!((j[0]["result"].as_str(), &j[0]["kept_host_files"]), (Some("done"), &serde_json::json!([])));
    publish(&tb, &hello_broken());
    let failed = tb.sh("hoist --json update --grace 2 hello");
    let j = json_of(&String::from_utf8_lossy(&failed.stdout));
    assert_eq!(j[0]["result"], "rolled-back");
    tb.ok("grep -q '# mine' /etc/hello/hello.conf");
    let out = tb.ok("hoist uninstall hello");
    assert!(out.contains("Kept /etc/hello/hello.conf: it was modified"), "{out}");
    tb.ok("grep -q '# mine' /etc/hello/hello.conf");
}

/// An update to an image the signature policy refuses stops before anything is stored or
/// switched: one line naming the policy and the reason, the running deployment as it was.
#[test]
fn a_refused_update_leaves_the_deployment_untouched() {
    if !common::privileged("update::a_refused_update_leaves_the_deployment_untouched") {
        return;
    }
    let tb = Testbed::up("hybrid");
    tb.ok(&format!("hoist -q install --now oci-archive:{}", hello().display()));
    let before = json_of(&tb.ok("hoist --json status hello"));
    assert_eq!(before["verified"]["requirements"][0]["type"], "insecureAcceptAnything");
    let dir = tempfile::tempdir_in(common::repo().join("target")).unwrap();
    let policy = dir.path().join("reject.json");
    fs::write(&policy, r#"{"default": [{"type": "reject"}]}"#).unwrap();
    let o = tb.sh(&format!(
        "hoist update --signature-policy {} --rebase oci-archive:{} hello",
        policy.display(),
        hello_v2().display()
    ));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.trim(),
        format!(
            "hoist: oci-archive:{}: refused by policy {} (scope default): reject: rejected by policy",
            hello_v2().display(),
            policy.display()
        )
    );
    let after = json_of(&tb.ok("hoist --json status hello"));
    assert_eq!((&after["digest"], &after["deployment"]), (&before["digest"], &before["deployment"]));
    assert_eq!(after["verified"], before["verified"]);
    assert_eq!(hello_says(&tb), "Hi world (v1)");
}
