//! Tier 1, golden: the templates of atomic-era images, rendered exactly. One directory per case
//! under `tests/golden/` (written for hoist, reproducing the constructs Project Atomic's published
//! images use; see the README's compatibility table):
//!
//! ```text
//! tests/golden/values.json          the values hoist sets (NAME=app, DESTDIR, EXEC_START, …)
//! tests/golden/CASE/set.json        the image defaults and --set values of the case
//! tests/golden/CASE/*.template      the inputs (config.json.template, service.template, tmpfiles.template)
//! tests/golden/CASE/config.json     expected: the rendered runtime config …
//! tests/golden/CASE/conversions.txt … and what was converted from an older runtime-spec, or
//! tests/golden/CASE/error.txt       … the one-line refusal instead
//! tests/golden/CASE/app.service     expected unit (when the case has a service.template)
//! tests/golden/CASE/tmpfiles.conf   expected tmpfiles.d snippet (absent: none is written)
//! ```
//! `HOIST_BLESS=1 cargo test --test golden` rewrites the expected files from the current output
//! (review the diff before committing it).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use hoist::deploy::bundle;
use hoist::deploy::seccomp::Seccomp;
use hoist::deploy::unit;
use hoist::deploy::values::{Target, Values};

fn read(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok()
}

fn values(case: &Path) -> Values {
    let dir = case.parent().unwrap();
    let mut v: BTreeMap<String, String> = serde_json::from_str(&read(&dir.join("values.json")).unwrap()).unwrap();
    let set: BTreeMap<String, String> = serde_json::from_str(&read(&case.join("set.json")).unwrap()).unwrap();
    v.extend(set);
    Values(v)
}

/// Every expected output of `case`, as the current code renders it: file name → content.
fn render(case: &Path) -> BTreeMap<&'static str, String> {
    let values = values(case);
    let image = serde_json::from_value(serde_json::json!({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .unwrap();
    let mut out = BTreeMap::new();
    let template = read(&case.join("config.json.template")).expect("a config.json.template");
    match bundle::render(Some(&template), &image, &values, None, &Seccomp::Default) {
        Ok(r) => {
            out.insert("config.json", r.json + "\n");
            out.insert("conversions.txt", r.notes.iter().map(|n| format!("{n}\n")).collect());
        }
        Err(e) => {
            out.insert("error.txt", format!("{e}\n"));
            return out;
        }
    }
    if let Some(t) = read(&case.join("service.template")) {
        out.insert(
            "app.service",
            unit::render(Some(&t), &values, true, true).unwrap_or_else(|e| format!("error: {e}\n")),
        );
    }
    if let Some(t) = read(&case.join("tmpfiles.template")) {
        let text = values
            .render("/exports/tmpfiles.template", &t, Target::Tmpfiles)
            .unwrap_or_else(|e| format!("error: {e}\n"));
        if !text.trim().is_empty() {
            out.insert("tmpfiles.conf", text);
        }
    }
    out
}

const OUTPUTS: &[&str] = &["config.json", "conversions.txt", "error.txt", "app.service", "tmpfiles.conf"];

#[test]
fn atomic_era_templates_render_exactly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var("HOIST_BLESS").as_deref() == Ok("1");
    let mut cases: Vec<_> = fs::read_dir(&root).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(cases.len() >= 8, "the corpus is there: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let got = render(case);
        for name in OUTPUTS {
            let path = case.join(name);
            let want = read(&path);
            let have = got.get(name).cloned();
            if bless {
                match &have {
                    Some(text) => fs::write(&path, text).unwrap(),
                    None => drop(fs::remove_file(&path)),
                }
            } else if want != have {
                failures.push(format!(
                    "{}/{name}:\n--- expected\n{}\n--- rendered\n{}",
                    case.file_name().unwrap().to_string_lossy(),
                    want.as_deref().unwrap_or("(absent)"),
                    have.as_deref().unwrap_or("(absent)")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden file(s) differ (HOIST_BLESS=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
