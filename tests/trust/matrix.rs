//! The matrix's plumbing: a case (policy × image × reference, with what the table expects),
//! how skopeo decides it, and how hoist's decision, message and state root are checked.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::*;

#[derive(Clone, Debug)]
pub enum Expect {
    /// Accepted; `reqs` are (partial) objects the `verified.requirements` entries must contain.
    Accept { scope: String, reqs: Vec<Value> },
    /// Refused; every fragment must be in the reasons.
    Refuse { scope: String, frags: Vec<String> },
}

pub fn acc(scope: &str) -> Expect {
    Expect::Accept { scope: scope.to_string(), reqs: vec![] }
}
pub fn acc_req(scope: &str, reqs: Vec<Value>) -> Expect {
    Expect::Accept { scope: scope.to_string(), reqs }
}
pub fn rej(scope: &str, frags: &[&str]) -> Expect {
    Expect::Refuse { scope: scope.to_string(), frags: frags.iter().map(|f| f.to_string()).collect() }
}

pub struct Case {
    pub name: String,
    pub policy: PathBuf,
    /// The image: `repo:tag` in the registry.
    pub image: String,
    pub by_digest: bool,
    pub expect: Expect,
    /// Whether skopeo can decide it too.
    pub skopeo: bool,
    /// Extra arguments for both tools (`--insecure-policy`).
    pub extra: Vec<String>,
    /// Run without `--signature-policy`/`--policy`, with HOME here.
    pub home: Option<PathBuf>,
}

pub struct Matrix {
    pub dir: PathBuf,
    pub addr: String,
    pub cases: Vec<Case>,
    pub digests: BTreeMap<String, String>,
}

impl Matrix {
    pub fn policy_file(&self, name: &str, policy: &Value) -> PathBuf {
        let p = self.dir.join("policies").join(format!("{:03}-{name}.json", self.cases.len()));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, serde_json::to_vec_pretty(policy).unwrap()).unwrap();
        p
    }

    /// A case for `image` by tag and another by digest.
    pub fn both(&mut self, name: &str, policy: &Value, image: &str, tag: Expect, digest: Expect) {
        self.add(name, policy, image, tag, digest, true);
    }

    /// Like [`Self::both`], decided by the table only.
    pub fn only_table(&mut self, name: &str, policy: &Value, image: &str, tag: Expect, digest: Expect) {
        self.add(name, policy, image, tag, digest, false);
    }

    pub fn add(&mut self, name: &str, policy: &Value, image: &str, tag: Expect, digest: Expect, skopeo: bool) {
        assert!(self.digests.contains_key(image), "{image} was not pushed");
        let file = self.policy_file(name, policy);
        for (by_digest, expect) in [(false, tag), (true, digest)] {
            self.cases.push(Case {
                name: name.to_string(),
                policy: file.clone(),
                image: image.to_string(),
                by_digest,
                expect,
                skopeo,
                extra: vec![],
                home: None,
            });
        }
    }

    /// `docker://ADDR/REPO:TAG` or `docker://ADDR/REPO@DIGEST`.
    pub fn reference(&self, c: &Case) -> String {
        if c.by_digest {
            let repo = c.image.split(':').next().unwrap();
            format!("docker://{}/{repo}@{}", self.addr, self.digests[&c.image])
        } else {
            format!("docker://{}/{}", self.addr, c.image)
        }
    }
}

/// What a state root holds, without file mtimes (two roots are not made in the same second) and
/// without the state lock file (every mutating command creates it, empty, before it decides).
pub fn contents(root: &Root) -> BTreeMap<String, String> {
    if !root.path().exists() {
        return BTreeMap::new();
    }
    snapshot(&root.path())
        .into_iter()
        .filter(|(k, _)| k != "lock")
        .map(|(k, v)| {
            let v = match v.find(" mtime ") {
                Some(i) => {
                    let rest = &v[i + 7..];
                    format!("{}{}", &v[..i], &rest[rest.find(' ').unwrap_or(rest.len())..])
                }
                None => v,
            };
            (k, v)
        })
        .collect()
}

pub struct Outcome {
    pub accepted: bool,
    pub detail: String,
}

pub fn skopeo_decides(m: &Matrix, c: &Case, rd: &Path, scratch: &Path) -> Outcome {
    let out = tempfile::Builder::new().prefix("skopeo-out-").tempdir_in(scratch).unwrap();
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "-q", "--remove-signatures", "--src-tls-verify=false", "--registries.d"]).arg(rd);
    match &c.home {
        Some(home) => {
            cmd.env("HOME", home);
        }
        None => {
            cmd.arg("--policy").arg(&c.policy);
        }
    }
    cmd.args(&c.extra).arg(m.reference(c)).arg(format!("oci:{}:x", out.path().join("x").display()));
    let o = cmd.output().expect("skopeo runs");
    Outcome { accepted: o.status.success(), detail: String::from_utf8_lossy(&o.stderr).trim().to_string() }
}

/// Runs hoist for a case and checks everything the table says; returns whether it accepted,
/// or why the case fails.
pub fn hoist_decides(m: &Matrix, c: &Case, rd: &Path, empty: &BTreeMap<String, String>) -> Result<bool, String> {
    let root = Root::new();
    let reference = m.reference(c);
    let mut args: Vec<String> = vec!["--json".into(), "pull".into(), "--tls-verify=false".into()];
    if c.home.is_none() {
        args.extend(["--signature-policy".into(), c.policy.display().to_string()]);
    }
    args.extend(["--registries.d".into(), rd.display().to_string()]);
    args.extend(c.extra.iter().cloned());
    args.push(reference.clone());
    let mut cmd = root.cmd();
    if let Some(home) = &c.home {
        cmd.env("HOME", home);
    }
    let o = cmd.args(&args).output().expect("hoist runs");
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    let policy_path = match &c.home {
        Some(home) => home.join(".config/containers/policy.json"),
        None => c.policy.clone(),
    };
    let ctx = || format!("hoist {}\nexit {:?}\nstdout {stdout}\nstderr {stderr}", args.join(" "), o.status.code());
    if stderr.contains("panicked") {
        return Err(format!("panic\n{}", ctx()));
    }
    match o.status.code() {
        Some(0) => {
            let Expect::Accept { scope, reqs } = &c.expect else { return Ok(true) };
            if scope.is_empty() {
                return Ok(true);
            }
            let j: Value = serde_json::from_str(&stdout).map_err(|e| format!("JSON {e}\n{}", ctx()))?;
            let v = &j["verified"];
            if v["policy"].as_str() != Some(&policy_path.display().to_string()) || v["scope"].as_str() != Some(scope) {
                return Err(format!("verified.policy/scope: want {} / {scope}: {v}\n{}", policy_path.display(), ctx()));
            }
            let got = v["requirements"].as_array().cloned().unwrap_or_default();
            if !reqs.is_empty() && got.len() != reqs.len() {
                return Err(format!("want requirements like {reqs:?}, got {got:?}\n{}", ctx()));
            }
            for (want, got) in reqs.iter().zip(&got) {
                for (k, w) in want.as_object().unwrap() {
                    if &got[k] != w {
                        return Err(format!("requirement {k}: want {w}, got {got}\n{}", ctx()));
                    }
                }
            }
            Ok(true)
        }
        Some(1) => {
            let Expect::Refuse { scope, frags } = &c.expect else { return Ok(false) };
            let lines: Vec<&str> = stderr.lines().collect();
            let prefix = format!("hoist: {reference}: refused by policy {} (scope {scope}): ", policy_path.display());
            if lines.len() != 1 || !lines[0].starts_with(&prefix) {
                return Err(format!("want one line starting {prefix:?}\n{}", ctx()));
            }
            if let Some(f) = frags.iter().find(|f| !lines[0].contains(f.as_str())) {
                return Err(format!("reason {f:?} missing\n{}", ctx()));
            }
            // Nothing stored: `hoist images` lists nothing, the root is as an empty one.
            let listed = root.ok(&["--json", "images"]);
            if serde_json::from_str::<Value>(&listed).ok().and_then(|v| v.as_array().map(|a| a.len())) != Some(0) {
                return Err(format!("refused, yet `hoist images` lists {listed}\n{}", ctx()));
            }
            let now = contents(&root);
            if &now != empty {
                let diff: Vec<_> = now.iter().filter(|(k, v)| empty.get(*k) != Some(v)).collect();
                return Err(format!("refused, yet the state root changed: {diff:?}\n{}", ctx()));
            }
            Ok(false)
        }
        _ => Err(format!("neither accepted (0) nor refused (1)\n{}", ctx())),
    }
}

pub fn archive(p: &Path) -> String {
    format!("oci-archive:{}", p.display())
}
