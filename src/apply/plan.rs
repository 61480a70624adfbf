//! From declared and installed state to an ordered list of steps — pure (no I/O), so `--check`,
//! `--diff` and the tests see exactly what `apply` would do.
//!
//! Per container, comparing its file with its current deployment's record and its unit:
//! - declared, not installed → **install** (`started`/`enabled` as declared);
//! - declared, installed, a different `runtime` → **reinstall** (uninstall keeping data, install);
//! - a different image reference, `[set]` values or `[health]` flags → **update** (a new
//!   deployment, with the automatic rollback of `hoist update`; the file's values and flags
//!   replace the recorded ones);
//! - only `enabled`/`started` differ → **adjust** the unit;
//! - an undeclared container that `apply` created, whose file is gone → **uninstall** (data
//!   kept); any other undeclared container is left alone.
//!
//! A tag that moved in the registry is not a difference: following tags is `hoist update`'s job
//! (and the update timer's), so a plan is made without the network.
//!
//! Order: uninstalls first, then declared containers so that each comes after those its `after`
//! names (ties by name). An `after` naming no declared container, or a cycle, is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use super::desired::{Declared, FileError, Policy};
use crate::deploy::record::Record;
use crate::imgref::ImageArg;

/// An installed container as the plan sees it.
#[derive(Debug, Clone)]
pub struct Current {
    pub record: Record,
    pub enabled: bool,
    pub active: bool,
}

/// What `apply` remembers of a container it manages (`<root>/apply/NAME.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Managed {
    /// The file that declares it.
    pub file: PathBuf,
    /// Whether `apply` installed it (only then does removing the file uninstall it).
    pub created: bool,
    pub policy: Policy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Install,
    Reinstall,
    Update,
    Adjust,
    Uninstall,
    None,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Install => "install",
            Action::Reinstall => "reinstall",
            Action::Update => "update",
            Action::Adjust => "adjust",
            Action::Uninstall => "uninstall",
            Action::None => "none",
        }
    }
}

/// One difference, for `--diff` and the JSON output (`from` empty: not there before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub key: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub action: Action,
    pub changes: Vec<Change>,
    /// The declaration (absent for an uninstall).
    pub declared: Option<Declared>,
    /// The file that declared it (for an uninstall: the removed one).
    pub file: PathBuf,
    /// Whether `apply`'s memory of it has to be written (adopted, or the policy changed), even
    /// when the container itself is unchanged.
    pub remember: bool,
}

/// The steps taking `current` (installed containers by name) to `declared`.
pub fn plan(
    declared: &[Declared],
    current: &BTreeMap<String, Current>,
    managed: &BTreeMap<String, Managed>,
) -> Result<Vec<Step>, Vec<FileError>> {
    let order = order(declared)?;
    let names: BTreeSet<&str> = declared.iter().map(|d| d.name.as_str()).collect();
    let mut steps = Vec::new();
    for (name, m) in managed {
        if m.created && !names.contains(name.as_str()) && current.contains_key(name) {
            steps.push(Step {
                name: name.clone(),
                action: Action::Uninstall,
                changes: vec![Change { key: "file".into(), from: m.file.display().to_string(), to: String::new() }],
                declared: None,
                file: m.file.clone(),
                remember: false,
            });
        }
    }
    for d in order {
        steps.push(step(d, current.get(&d.name), managed.get(&d.name)));
    }
    Ok(steps)
}

fn step(d: &Declared, cur: Option<&Current>, managed: Option<&Managed>) -> Step {
    let remember = managed.is_none_or(|m| m.policy != d.policy || m.file != d.file);
    let mut changes = Vec::new();
    fn push(changes: &mut Vec<Change>, key: &str, from: String, to: String) {
        if from != to {
            changes.push(Change { key: key.into(), from, to });
        }
    }
    let Some(cur) = cur else {
        push(&mut changes, "image", String::new(), d.image.clone());
        for (k, v) in &d.sets {
            push(&mut changes, &format!("set.{k}"), String::new(), v.clone());
        }
        push(&mut changes, "enabled", String::new(), d.enabled.to_string());
        push(&mut changes, "started", String::new(), d.started.to_string());
        return Step {
            name: d.name.clone(),
            action: Action::Install,
            changes,
            declared: Some(d.clone()),
            file: d.file.clone(),
            remember: true,
        };
    };
    let rec = &cur.record;
    let runtime = |r: Option<&str>| r.unwrap_or("hoist").to_string();
    push(
        &mut changes,
        "runtime",
        runtime(rec.runtime.as_deref()),
        runtime(d.runtime.as_ref().and_then(|p| p.to_str())),
    );
    let reinstall = !changes.is_empty();
    if !same_image(&d.image, rec) {
        push(&mut changes, "image", rec.source.clone().unwrap_or_else(|| rec.image.clone()), d.image.clone());
    }
    let keys: BTreeSet<&String> = rec.sets.keys().chain(d.sets.keys()).collect();
    for k in keys {
        let get = |m: &BTreeMap<String, String>| m.get(k).cloned().unwrap_or_default();
        push(&mut changes, &format!("set.{k}"), get(&rec.sets), get(&d.sets));
    }
    if rec.health_flags != d.health {
        let show = |h: &crate::health::HealthFlags| serde_json::to_string(h).expect("flags serialize");
        push(&mut changes, "health", show(&rec.health_flags), show(&d.health));
    }
    let redeploy = !changes.is_empty();
    push(&mut changes, "enabled", cur.enabled.to_string(), d.enabled.to_string());
    push(&mut changes, "started", cur.active.to_string(), d.started.to_string());
    if let Some(m) = managed {
        push(&mut changes, "update", m.policy.as_str().into(), d.policy.as_str().into());
    }
    let action = if reinstall {
        Action::Reinstall
    } else if redeploy {
        Action::Update
    } else if !changes.is_empty() {
        Action::Adjust
    } else {
        Action::None
    };
    Step { name: d.name.clone(), action, changes, declared: Some(d.clone()), file: d.file.clone(), remember }
}

/// Whether the file's `image` is what the deployment was installed from.
fn same_image(image: &str, rec: &Record) -> bool {
    let canonical = match ImageArg::parse(image) {
        Ok(ImageArg::Source(s)) => s.to_string(),
        Ok(ImageArg::Stored(q)) => return rec.source.as_deref() == Some(image) || q == rec.image,
        Err(_) => image.to_string(),
    };
    rec.source.as_deref() == Some(canonical.as_str()) || rec.source.as_deref() == Some(image)
}

/// The declared containers, each after those its `after` names (ties by name).
fn order(declared: &[Declared]) -> Result<Vec<&Declared>, Vec<FileError>> {
    let by_name: BTreeMap<&str, &Declared> = declared.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut errors = Vec::new();
    for d in declared {
        for a in &d.after {
            if !by_name.contains_key(a.as_str()) {
                errors.push(after_error(d, format!("no file declares {a:?}")));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < declared.len() {
        let ready: Vec<&Declared> = by_name
            .values()
            .filter(|d| !done.contains(d.name.as_str()) && d.after.iter().all(|a| done.contains(a.as_str())))
            .copied()
            .collect();
        if ready.is_empty() {
            let cycle: Vec<&Declared> = by_name.values().filter(|d| !done.contains(d.name.as_str())).copied().collect();
            let names: Vec<&str> = cycle.iter().map(|d| d.name.as_str()).collect();
            return Err(cycle.iter().map(|d| after_error(d, format!("a cycle among {}", names.join(", ")))).collect());
        }
        for d in ready {
            done.insert(d.name.as_str());
            out.push(d);
        }
    }
    Ok(out)
}

fn after_error(d: &Declared, reason: String) -> FileError {
    let text = std::fs::read_to_string(&d.file).unwrap_or_default();
    let line = text.lines().position(|l| l.trim_start().starts_with("after")).map_or(1, |i| i + 1);
    FileError { file: d.file.clone(), line, key: Some("after".into()), reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use std::path::Path;

    fn declared(name: &str, text: &str) -> Declared {
        super::super::desired::parse(name, &Path::new("/etc/hoist/containers").join(format!("{name}.toml")), text)
            .unwrap()
    }

    fn installed(name: &str, source: &str, sets: &[(&str, &str)], enabled: bool, active: bool) -> Current {
        let sets: BTreeMap<String, String> = sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Current {
            record: Record {
                version: 2,
                name: name.into(),
                slot: 0,
                image: "etcd:3.4".into(),
                source: Some(source.into()),
                manifest: Digest::of_bytes(b"manifest"),
                values: sets.clone(),
                sets,
                runtime: None,
                seccomp: Default::default(),
                host_files: Default::default(),
                kept_host_files: Default::default(),
                hostfs: Default::default(),
                has_service: true,
                conversions: vec![],
                verified: None,
                health_flags: Default::default(),
                health: None,
                created: 0,
            },
            enabled,
            active,
        }
    }

    fn summary(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| {
                let ch: Vec<String> = s.changes.iter().map(|c| format!("{}:{}->{}", c.key, c.from, c.to)).collect();
                format!("{} {} [{}]", s.name, s.action.as_str(), ch.join(" "))
            })
            .collect()
    }

    const ETCD: &str = "image = \"docker://r.example/etcd:3.4\"\n[set]\nPORT = 2379\n";

    #[test]
    fn install_update_adjust_unchanged_uninstall() {
        let decl = vec![
            declared("a", ETCD),
            declared("b", ETCD),
            declared("c", "image = \"docker://r.example/etcd:3.5\"\n[set]\nPORT = 2380\n"),
            declared("d", "image = \"docker://r.example/etcd:3.4\"\nstarted = false\n[set]\nPORT = 2379\n"),
        ];
        let mut cur = BTreeMap::new();
        cur.insert("b".into(), installed("b", "docker://r.example/etcd:3.4", &[("PORT", "2379")], true, true));
        cur.insert(
            "c".into(),
            installed("c", "docker://r.example/etcd:3.4", &[("PORT", "2379"), ("X", "1")], true, true),
        );
        cur.insert("d".into(), installed("d", "docker://r.example/etcd:3.4", &[("PORT", "2379")], true, true));
        cur.insert("gone".into(), installed("gone", "docker://r.example/etcd:3.4", &[], true, true));
        cur.insert("manual".into(), installed("manual", "docker://r.example/etcd:3.4", &[], true, true));
        let m = |f: &str, created| Managed { file: f.into(), created, policy: Policy::Tag };
        let mut managed = BTreeMap::new();
        managed.insert("b".into(), m("/etc/hoist/containers/b.toml", true));
        managed.insert("gone".into(), m("/etc/hoist/containers/gone.toml", true));
        managed.insert("adopted".into(), m("/etc/hoist/containers/adopted.toml", false));
        let steps = plan(&decl, &cur, &managed).unwrap();
        assert_eq!(
            summary(&steps),
            vec![
                "gone uninstall [file:/etc/hoist/containers/gone.toml->]",
                "a install [image:->docker://r.example/etcd:3.4 set.PORT:->2379 enabled:->true started:->true]",
                "b none []",
                "c update [image:docker://r.example/etcd:3.4->docker://r.example/etcd:3.5 set.PORT:2379->2380 set.X:1->]",
                "d adjust [started:true->false]",
            ]
        );
        let remember: Vec<bool> = steps.iter().map(|s| s.remember).collect();
        assert_eq!(remember, vec![false, true, false, true, true]);
    }

    #[test]
    fn a_new_runtime_reinstalls() {
        let decl = vec![declared("a", "image = \"docker://r.example/etcd:3.4\"\nruntime = \"/usr/bin/crun\"\n")];
        let mut cur = BTreeMap::new();
        cur.insert("a".into(), installed("a", "docker://r.example/etcd:3.4", &[], true, true));
        let steps = plan(&decl, &cur, &BTreeMap::new()).unwrap();
        assert_eq!(summary(&steps), vec!["a reinstall [runtime:hoist->/usr/bin/crun]"]);
    }

    #[test]
    fn after_orders_and_is_checked() {
        let decl = vec![
            declared("a", "image = \"docker://r/e:1\"\nafter = [\"c\"]\n"),
            declared("b", "image = \"docker://r/e:1\"\n"),
            declared("c", "image = \"docker://r/e:1\"\nafter = [\"b\"]\n"),
        ];
        let steps = plan(&decl, &BTreeMap::new(), &BTreeMap::new()).unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["b", "c", "a"]);

        let decl = vec![declared("a", "image = \"docker://r/e:1\"\nafter = [\"x\"]\n")];
        let e = plan(&decl, &BTreeMap::new(), &BTreeMap::new()).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].key.as_deref(), e[0].reason.as_str()), (Some("after"), "no file declares \"x\""));

        let decl = vec![
            declared("a", "image = \"docker://r/e:1\"\nafter = [\"b\"]\n"),
            declared("b", "image = \"docker://r/e:1\"\nafter = [\"a\"]\n"),
        ];
        let e = plan(&decl, &BTreeMap::new(), &BTreeMap::new()).unwrap_err();
        let reasons: Vec<String> = e.iter().map(|e| e.reason.clone()).collect();
        assert_eq!(reasons, vec!["a cycle among a, b", "a cycle among a, b"]);
    }
}
