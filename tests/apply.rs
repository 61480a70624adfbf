//! Tier 3: `hoist apply` on a real (throwaway) systemd — desired state in files: install what
//! is declared, a second run that changes nothing and says so, `--check` and `--diff` changing
//! nothing, an update from a changed file, an invalid file that stops everything, removal of a
//! container `apply` created (and not of one installed by hand), mixed success, and the update
//! policy `hoist update --all` honours.

mod common;

use std::fs;
use std::path::Path;

use common::testbed::Testbed;
use common::*;
use serde_json::Value;

const DIR: &str = "/var/lib/hoist/decl";

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// (name, action, result) of each container in `hoist --json apply` output.
fn results(j: &Value) -> Vec<(String, String, String)> {
    j["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("action"), s("result"))
        })
        .collect()
}

fn row(name: &str, action: &str, result: &str) -> (String, String, String) {
    (name.into(), action.into(), result.into())
}

fn declare(tb: &Testbed, name: &str, text: &str) {
    let dir = tb.dir.join("state/decl");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("{name}.toml")), text).unwrap();
}

fn undeclare(tb: &Testbed, name: &str) {
    fs::remove_file(tb.dir.join("state/decl").join(format!("{name}.toml"))).unwrap();
}

fn image(archive: &Path) -> String {
    format!("image = \"oci-archive:{}\"\n", archive.display())
}

/// `systemctl is-enabled` / `is-active` of a unit (they exit non-zero for "disabled"/"inactive").
fn unit_state(tb: &Testbed, unit: &str) -> (String, String) {
    let out =
        |verb: &str| String::from_utf8_lossy(&tb.sh(&format!("systemctl {verb} {unit}")).stdout).trim().to_string();
    (out("is-enabled"), out("is-active"))
}

#[test]
fn apply_converges_files_and_containers() {
    if !common::privileged("apply::apply_converges_files_and_containers") {
        return;
    }
    let tb = Testbed::up("hybrid");
    let apply = format!("hoist apply --dir {DIR}");
    declare(&tb, "hello", &image(&hello()));
    declare(&tb, "quiet", &format!("{}started = false\nenabled = false\n", image(&hello())));

    // First run: both installed as declared.
    let j = json_of(&tb.ok(&format!("hoist --json apply --dir {DIR}")));
    assert_eq!(results(&j), vec![row("hello", "install", "changed"), row("quiet", "install", "changed")]);
    assert_eq!((j["changed"].as_u64(), j["failed"].as_u64()), (Some(2), Some(0)));
    assert_eq!(tb.hello_says("hello to answer"), "Hi world (v1)");
    assert_eq!(unit_state(&tb, "hello.service"), ("enabled".into(), "active".into()));
    assert_eq!(unit_state(&tb, "quiet.service"), ("disabled".into(), "inactive".into()));

    // Second run: nothing changes, and it says so.
    assert_eq!(
        tb.ok(&apply),
        format!("hello: unchanged\nquiet: unchanged\nnothing to change: 2 container(s) as declared in {DIR}\n")
    );
    let j = json_of(&tb.ok(&format!("hoist --json apply --dir {DIR}")));
    assert_eq!(results(&j), vec![row("hello", "none", "unchanged"), row("quiet", "none", "unchanged")]);
    assert_eq!(tb.sh(&format!("{apply} --check")).status.code(), Some(0));

    // A new image in the file: --check --diff shows it, changes nothing, exits 3.
    declare(&tb, "hello", &image(&hello_v2()));
    let o = tb.sh(&format!("{apply} --check --diff"));
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!(
            "hello: would be updated\n  image: oci-archive:{} -> oci-archive:{}\nquiet: unchanged\n\
             1 container(s) would change, 1 unchanged (nothing was changed)\n",
            hello().display(),
            hello_v2().display()
        )
    );
    assert_eq!(tb.hello_says("hello to answer"), "Hi world (v1)");
    let j = json_of(&tb.ok(&format!("hoist --json apply --dir {DIR}")));
    assert_eq!(results(&j), vec![row("hello", "update", "changed"), row("quiet", "none", "unchanged")]);
    assert_eq!(tb.hello_says("hello to answer"), "Hi world (v2)");
    assert_eq!(json_of(&tb.ok("hoist --json status hello"))["deployment"], 1);

    // An invalid file: the error names file, line and key, and nothing is applied (not even
    // the valid change to `quiet` made at the same time).
    declare(&tb, "quiet", &format!("{}started = true\n", image(&hello())));
    declare(&tb, "typo", &format!("{}restart = \"always\"\n", image(&hello())));
    let o = tb.sh(&apply);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "hoist: {DIR}/typo.toml:2: key `restart`: unknown field `restart`, expected one of `image`, `update`, \
             `runtime`, `enabled`, `started`, `after`, `set`, `health`\n\
             hoist: 1 invalid declaration(s); nothing was applied\n"
        )
    );
    assert_eq!(unit_state(&tb, "quiet.service"), ("disabled".into(), "inactive".into()));
    assert!(!tb.dir.join("state/containers/typo").exists());
    undeclare(&tb, "typo");
    declare(&tb, "quiet", &format!("{}started = false\nenabled = false\n", image(&hello())));

    // Removing a file uninstalls what apply created; a container installed by hand stays.
    tb.ok(&format!("hoist -q install --name byhand oci-archive:{}", hello().display()));
    undeclare(&tb, "quiet");
    let o = tb.ok(&apply);
    assert_eq!(
        o,
        "quiet: uninstalled (its file was removed; data kept)\nhello: unchanged\n1 changed, 1 unchanged, 0 failed, 0 skipped\n"
    );
    let names: Vec<String> = json_of(&tb.ok("hoist --json list -a"))
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["byhand", "hello"]);
    assert!(!tb.dir.join("state/apply/quiet.json").exists());
    assert_eq!(tb.ok(&apply), format!("hello: unchanged\nnothing to change: 1 container(s) as declared in {DIR}\n"));

    // Mixed success: a missing image fails its container, one declared after it is skipped,
    // the rest still applies; the exit status says failure.
    declare(&tb, "broken", "image = \"oci-archive:/var/lib/hoist/no-such.tar\"\n");
    declare(&tb, "later", &format!("{}after = [\"broken\"]\nstarted = false\n", image(&hello())));
    declare(&tb, "third", &format!("{}started = false\n", image(&hello())));
    let o = tb.sh(&format!("hoist --json apply --dir {DIR}"));
    assert_eq!(o.status.code(), Some(1));
    let j = json_of(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        results(&j),
        vec![
            row("broken", "install", "failed"),
            row("hello", "none", "unchanged"),
            row("third", "install", "changed"),
            row("later", "install", "skipped"),
        ]
    );
    let err = j["containers"][0]["error"].as_str().unwrap();
    assert!(err.contains("/var/lib/hoist/no-such.tar"), "{err}");
    assert_eq!(j["containers"][3]["error"], "comes after broken, which failed");
    assert!(tb.dir.join("state/containers/third").exists());
    assert!(!tb.dir.join("state/containers/later").exists());
    undeclare(&tb, "broken");
    undeclare(&tb, "later");
    undeclare(&tb, "third");
    let j = json_of(&tb.ok(&format!("hoist --json apply --dir {DIR}")));
    assert_eq!(results(&j), vec![row("third", "uninstall", "changed"), row("hello", "none", "unchanged")]);

    // The update policy: `manual` keeps `hoist update --all` away (byhand has none: updated).
    declare(&tb, "hello", &format!("{}update = \"manual\"\n", image(&hello_v2())));
    let o = tb.ok(&format!("{apply} --diff"));
    assert_eq!(o, "hello: adjusted\n  update: tag -> manual\n1 changed, 0 unchanged, 0 failed, 0 skipped\n");
    let o = tb.ok("hoist update --all");
    assert_eq!(
        o,
        format!(
            "hello: not updated by --all: update = \"manual\" in {DIR}/hello.toml\nbyhand: already up to date ({})\n",
            &json_of(&tb.ok("hoist --json status byhand"))["digest"].as_str().unwrap().trim_start_matches("sha256:")
                [..12]
        )
    );

    // The update timer's service, as `make install` writes it, runs the same under systemd.
    let bin = tb.ok("command -v hoist").trim().to_string();
    let bindir = Path::new(&bin).parent().unwrap().display().to_string();
    for u in ["hoist-update.service", "hoist-update.timer"] {
        let text = fs::read_to_string(repo().join("units").join(u)).unwrap().replace("@BINDIR@", &bindir);
        fs::write(tb.dir.join("state").join(u), text).unwrap();
        tb.ok(&format!("cp /var/lib/hoist/{u} /etc/systemd/system/{u}"));
    }
    tb.ok(
        "systemctl daemon-reload && systemctl enable --now hoist-update.timer && systemctl start hoist-update.service",
    );
    assert_eq!(tb.prop("hoist-update.service", "Result"), "success");
    assert_eq!(tb.prop("hoist-update.timer", "ActiveState"), "active");
    let journal = tb.journal("hoist-update.service");
    assert!(
        journal.contains(&format!("hello: not updated by --all: update = \"manual\" in {DIR}/hello.toml")),
        "{journal}"
    );
}
