//! Signature policy (containers-policy.json(5), containers-registries.d(5)): a differential
//! matrix. Real keys (gpg), real simple signatures (`skopeo copy --sign-by` into a `file://`
//! lookaside, `skopeo standalone-sign`, `gpg --sign`), sigstore attachments (tests/kit), one
//! registry; for every policy × image × reference (tag and digest) `hoist pull` must decide as
//! `skopeo copy --policy` does, as the table says, and for a refusal say why in one line and
//! leave nothing stored. Cases skopeo cannot decide (Debian's skopeo has sigstore patched out)
//! are checked against the table only.

#[path = "../common/mod.rs"]
mod common;
mod matrix;
mod sigstore;

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use common::registry::Registry;
use common::signing::{self, Gpg, Key};
use common::*;
use matrix::*;
use serde_json::{Value, json};
fn reject() -> Value {
    json!({"type": "reject"})
}
fn any() -> Value {
    json!({"type": "insecureAcceptAnything"})
}
fn signed_by(keys: &[&Key]) -> Value {
    if let [k] = keys {
        json!({"type": "signedBy", "keyType": "GPGKeys", "keyPath": k.public})
    } else {
        json!({"type": "signedBy", "keyType": "GPGKeys", "keyPaths": keys.iter().map(|k| &k.public).collect::<Vec<_>>()})
    }
}
fn with_identity(mut req: Value, identity: Value) -> Value {
    req["signedIdentity"] = identity;
    req
}
/// `{"default": [reject], "transports": {"docker": {scope: [reqs…]}}}`.
fn scoped(scope: &str, reqs: Vec<Value>) -> Value {
    json!({"default": [reject()], "transports": {"docker": {scope: reqs}}})
}

#[test]
fn trust_matrix() {
    let started = Instant::now();
    // HOIST_TRUST_SKOPEO_ONLY=1: check the table against skopeo alone (while hoist lacks the
    // flags, or to see what skopeo says).
    let skopeo_only = std::env::var("HOIST_TRUST_SKOPEO_ONLY").as_deref() == Ok("1");
    let o = Command::new(HOIST).args(["pull", "--help"]).output().unwrap();
    assert!(
        skopeo_only || String::from_utf8_lossy(&o.stdout).contains("--signature-policy"),
        "hoist pull has no --signature-policy"
    );
    let reg = Registry::start();
    let addr = reg.addr.clone();
    let tmp = tempfile::Builder::new().prefix("hoist-trust-").tempdir_in(repo().join("target")).unwrap();
    let dir = tmp.path().to_path_buf();
    let keys_dir = dir.join("keys");
    fs::create_dir_all(&keys_dir).unwrap();
    let lookaside = dir.join("lookaside");
    let rd = signing::registries_d(&dir.join("registries.d"), &addr, &lookaside);

    // Keys: A and B trusted (by the policies that name them), C never trusted, E expired (made
    // and used in a home whose clock says 2020-01-01, valid for a day).
    let gpg = Gpg::new();
    let (ka, kb, kc) =
        (gpg.key("A", "never", &keys_dir), gpg.key("B", "never", &keys_dir), gpg.key("C", "never", &keys_dir));
    let old = Gpg::in_the_past("20200101T000000");
    let ke = old.key("E", "1d", &keys_dir);
    let (a, b, c, e) = (ka.fpr.as_str(), kb.fpr.as_str(), kc.fpr.as_str(), ke.fpr.as_str());

    // Images. Every repository holds hello (so one digest, H) except the tampered ones' other
    // image; signatures live per repository in the lookaside.
    let hello = archive(&common::hello());
    let h = reg.push(&hello, "unsigned/x:v1", false);
    let other = reg.push(&archive(&common::hello_v2()), "unsigned/v2:v1", false);
    assert_ne!(h, other);
    let r = |repo: &str| format!("docker://{addr}/{repo}");
    let scratch = dir.join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    let sign = |g: &Gpg, source: &str, repo: &str, key: &Key, identity: Option<&str>| {
        let mut extra = vec!["--sign-by", key.fpr.as_str()];
        if let Some(i) = identity {
            extra.extend(["--sign-identity", i]);
        }
        let s = tempfile::tempdir_in(&scratch).unwrap();
        signing::skopeo_copy(g, &rd, source, &r(repo), &extra, s.path())
    };
    let src = r("unsigned/x:v1");
    let src = src.as_str();
    let mut pushed: Vec<(&str, &Gpg, &str, &Key, Option<String>)> = vec![
        ("signed/a:v1", &gpg, src, &ka, None),
        ("signed/b:v1", &gpg, src, &kb, None),
        ("signed/c:v1", &gpg, src, &kc, None),
        ("signed/ab:v1", &gpg, src, &ka, None),
        ("signed/ca:v1", &gpg, src, &kc, None),
        ("signed/e:v1", &old, src, &ke, None),
        ("signed/othertag:v1", &gpg, src, &ka, Some(format!("{addr}/signed/othertag:v2"))),
        ("signed/wrongid:v1", &gpg, src, &ka, Some(format!("{addr}/elsewhere/x:v1"))),
        ("signed/remap:v1", &gpg, src, &ka, Some("mirror.example.com/signed/remap:v1".to_string())),
        ("other/a:v1", &gpg, src, &ka, None),
    ];
    let mut digests = BTreeMap::new();
    digests.insert("unsigned/x:v1".to_string(), h.clone());
    std::thread::scope(|s| {
        let handles: Vec<_> = pushed
            .drain(..)
            .map(|(repo, g, source, key, ident)| {
                let sign = &sign;
                s.spawn(move || (repo, sign(g, source, repo, key, ident.as_deref())))
            })
            .collect();
        for hd in handles {
            let (repo, d) = hd.join().unwrap();
            assert_eq!(d, h, "{repo}: copied as is");
            digests.insert(repo.to_string(), d);
        }
    });
    // Second signatures: copying an image onto itself keeps its signatures and adds one.
    sign(&gpg, &r("signed/ab:v1"), "signed/ab:v1", &kb, None);
    sign(&gpg, &r("signed/ca:v1"), "signed/ca:v1", &ka, None);
    for (repo, n) in [("signed/ab", 2), ("signed/ca", 2), ("signed/a", 1)] {
        assert!(signing::lookaside_file(&lookaside, repo, &h, n).exists(), "{repo} signature-{n}");
        assert!(!signing::lookaside_file(&lookaside, repo, &h, n + 1).exists(), "{repo} signature-{}", n + 1);
    }
    for repo in ["signed/tamper:v1", "signed/double:v1"] {
        let t = tempfile::tempdir_in(&scratch).unwrap();
        signing::skopeo_copy(&gpg, &rd, &hello, &r(repo), &[], t.path());
        digests.insert(repo.to_string(), h.clone());
    }
    // A signature by A of the other image's digest, claiming this image's name.
    let manifest_of = |d: &str| reg.blob_file(d);
    let blob =
        gpg.standalone_sign(&manifest_of(&other), &format!("{addr}/signed/tamper:v1"), &ka, &scratch.join("t.sig"));
    let f = signing::lookaside_file(&lookaside, "signed/tamper", &h, 1);
    fs::create_dir_all(f.parent().unwrap()).unwrap();
    fs::write(&f, blob).unwrap();
    // One blob with two signature packets (A's and B's) over a correct payload.
    gpg.standalone_sign(&manifest_of(&h), &format!("{addr}/signed/double:v1"), &ka, &scratch.join("d.sig"));
    let payload = gpg.payload(&scratch.join("d.sig"));
    assert!(String::from_utf8_lossy(&payload).contains(&h), "{}", String::from_utf8_lossy(&payload));
    let double = gpg.sign_by_all(&payload, &[&ka, &kb], &scratch);
    let f = signing::lookaside_file(&lookaside, "signed/double", &h, 1);
    fs::create_dir_all(f.parent().unwrap()).unwrap();
    fs::write(&f, double).unwrap();

    // Sigstore: cosign-format keys, a throwaway Fulcio CA and Rekor log; attachments and bundles.
    let push_hello = |repo: &str| {
        let t = tempfile::tempdir_in(&scratch).unwrap();
        signing::skopeo_copy(&gpg, &rd, &hello, &r(repo), &[], t.path());
    };
    let ss = sigstore::Sigstore::setup(&dir, &addr, &h, &other, &push_hello);
    for repo in sigstore::REPOS {
        digests.insert(format!("{repo}:v1"), h.clone());
    }
    let setup = started.elapsed();

    let mut m = Matrix { dir: dir.clone(), addr: addr.clone(), cases: vec![], digests };
    let host = format!("docker:{addr}");
    let host = host.as_str();
    let img = |repo: &str, by_digest: bool| {
        if by_digest { format!("{addr}/{}@{h}", repo.split(':').next().unwrap()) } else { format!("{addr}/{repo}") }
    };
    let sb_a = signed_by(&[&ka]);
    let signed_a = |identity: &str| json!({"type": "signedBy", "key": a, "identity": identity});
    let not_one_of = |k: &str| format!("signed by key {k}, not one of");

    // --- Defaults and scopes.
    let p = json!({"default": [any()]});
    m.both(
        "accept-anything default",
        &p,
        "unsigned/x:v1",
        acc_req("default", vec![json!({"type": "insecureAcceptAnything"})]),
        acc_req("default", vec![any()]),
    );
    m.both("accept-anything default", &p, "signed/a:v1", acc("default"), acc("default"));
    let p = json!({"default": [reject()]});
    m.both(
        "reject default",
        &p,
        "signed/a:v1",
        rej("default", &["rejected by policy"]),
        rej("default", &["rejected by policy"]),
    );
    m.both(
        "reject default",
        &p,
        "unsigned/x:v1",
        rej("default", &["rejected by policy"]),
        rej("default", &["rejected by policy"]),
    );
    let p = json!({"default": [any()], "transports": {"docker": {format!("{addr}/unsigned/x"): [reject()]}}});
    let ux = format!("docker:{addr}/unsigned/x");
    m.both(
        "reject one repo, accept elsewhere",
        &p,
        "unsigned/x:v1",
        rej(&ux, &["rejected by policy"]),
        rej(&ux, &["rejected by policy"]),
    );
    m.both("reject one repo, accept elsewhere", &p, "signed/c:v1", acc("default"), acc("default"));
    let p = json!({"default": [reject()], "transports": {"docker": {"": [any()]}}});
    m.both(
        "transport default",
        &p,
        "unsigned/x:v1",
        acc("docker (transport default)"),
        acc("docker (transport default)"),
    );
    let p = json!({"default": [any()], "transports": {"docker": {"": [reject()]}, "oci": {"": [reject()]}}});
    m.both(
        "transport default beats default",
        &p,
        "signed/a:v1",
        rej("docker (transport default)", &["rejected by policy"]),
        rej("docker (transport default)", &["rejected by policy"]),
    );
    // Most specific wins: host:port < namespace < repository < repository:tag / @digest.
    let p = json!({"default": [reject()], "transports": {"docker": {
        "": [reject()],
        addr.clone(): [any()],
        format!("{addr}/signed"): [sb_a.clone()],
        format!("{addr}/signed/b"): [signed_by(&[&kb])],
        format!("{addr}/signed/c:v1"): [reject()],
        format!("{addr}/signed/e:v1"): [any()],
        format!("{addr}/unsigned/x@{h}"): [reject()],
        format!("{addr}/other"): [reject()],
    }}});
    let ns = format!("docker:{addr}/signed");
    m.both(
        "scopes",
        &p,
        "unsigned/x:v1",
        acc(host),
        rej(&format!("docker:{addr}/unsigned/x@{h}"), &["rejected by policy"]),
    );
    m.both("scopes", &p, "signed/a:v1", acc(&ns), acc(&ns));
    m.both(
        "scopes",
        &p,
        "signed/b:v1",
        acc(&format!("docker:{addr}/signed/b")),
        acc(&format!("docker:{addr}/signed/b")),
    );
    m.both(
        "scopes",
        &p,
        "signed/c:v1",
        rej(&format!("docker:{addr}/signed/c:v1"), &["rejected by policy"]),
        rej(&ns, &[&not_one_of(c)]),
    );
    m.both("scopes", &p, "signed/e:v1", acc(&format!("docker:{addr}/signed/e:v1")), rej(&ns, &[&not_one_of(e)]));
    m.both(
        "scopes",
        &p,
        "other/a:v1",
        rej(&format!("docker:{addr}/other"), &["rejected by policy"]),
        rej(&format!("docker:{addr}/other"), &["rejected by policy"]),
    );
    m.both("scopes", &p, "sigstore/a:v1", acc(host), acc(host));
    // A host without the port is another host.
    let p = json!({"default": [any()], "transports": {"docker": {"127.0.0.1": [reject()]}}});
    m.both("host without port", &p, "unsigned/x:v1", acc("default"), acc("default"));
    // Wildcards (`*.` + a domain suffix, after the port is dropped), most specific first.
    let p = json!({"default": [reject()], "transports": {"docker": {"*.1": [any()], "*.0.1": [sb_a.clone()]}}});
    m.both("wildcards", &p, "signed/a:v1", acc("docker:*.0.1"), acc("docker:*.0.1"));
    m.both(
        "wildcards",
        &p,
        "unsigned/x:v1",
        rej("docker:*.0.1", &["no signature found"]),
        rej("docker:*.0.1", &["no signature found"]),
    );
    let p = json!({"default": [reject()], "transports": {"docker": {"*.0.0.1": [reject()], addr.clone(): [any()]}}});
    m.both("host beats wildcard", &p, "unsigned/x:v1", acc(host), acc(host));
    let p = json!({"default": [reject()], "transports": {"docker": {"*.example.com": [any()]}}});
    m.both(
        "wildcard elsewhere",
        &p,
        "unsigned/x:v1",
        rej("default", &["rejected by policy"]),
        rej("default", &["rejected by policy"]),
    );

    // --- signedBy keyPath A.
    let p = scoped(&addr, vec![sb_a.clone()]);
    let sa = format!("{addr}/signed/a:v1");
    m.both("signedBy A", &p, "signed/a:v1", acc_req(host, vec![signed_a(&sa)]), acc_req(host, vec![signed_a(&sa)]));
    m.both("signedBy A", &p, "signed/b:v1", rej(host, &[&not_one_of(b), a]), rej(host, &[&not_one_of(b), a]));
    m.both("signedBy A", &p, "signed/c:v1", rej(host, &[&not_one_of(c)]), rej(host, &[&not_one_of(c)]));
    m.both("signedBy A", &p, "unsigned/x:v1", rej(host, &["no signature found"]), rej(host, &["no signature found"]));
    m.both("signedBy A", &p, "signed/ab:v1", acc(host), acc(host));
    m.both("signedBy A", &p, "signed/ca:v1", acc(host), acc(host));
    m.both("signedBy A", &p, "signed/e:v1", rej(host, &[&not_one_of(e)]), rej(host, &[&not_one_of(e)]));
    let tamper = format!("payload digest {other} differs from manifest digest {h}");
    m.both("signedBy A", &p, "signed/tamper:v1", rej(host, &[&tamper]), rej(host, &[&tamper]));
    m.both(
        "signedBy A",
        &p,
        "signed/double:v1",
        rej(host, &["2 signatures in one blob (exactly one is allowed)"]),
        rej(host, &["2 signatures in one blob (exactly one is allowed)"]),
    );
    let wrong = |image: &str, rule: &str| format!("identity {addr}/elsewhere/x:v1 does not match {image} ({rule})");
    m.both(
        "signedBy A",
        &p,
        "signed/wrongid:v1",
        rej(host, &[&wrong(&img("signed/wrongid:v1", false), "matchRepoDigestOrExact")]),
        rej(host, &[&wrong(&img("signed/wrongid:v1", true), "matchRepoDigestOrExact")]),
    );
    m.both("signedBy A", &p, "sigstore/a:v1", rej(host, &["no signature found"]), rej(host, &["no signature found"]));
    // All requirements must pass.
    let p = scoped(&addr, vec![sb_a.clone(), signed_by(&[&kb])]);
    m.both("signedBy A and signedBy B", &p, "signed/ab:v1", acc(host), acc(host));
    m.both(
        "signedBy A and signedBy B",
        &p,
        "signed/a:v1",
        rej(host, &[&not_one_of(a), b]),
        rej(host, &[&not_one_of(a), b]),
    );
    let p = scoped(&addr, vec![any(), sb_a.clone()]);
    m.both(
        "accept-anything and signedBy A",
        &p,
        "unsigned/x:v1",
        rej(host, &["no signature found"]),
        rej(host, &["no signature found"]),
    );
    m.both(
        "accept-anything and signedBy A",
        &p,
        "signed/a:v1",
        acc_req(host, vec![any(), json!({"type": "signedBy", "key": a})]),
        acc(host),
    );
    // keyPaths [A, B], keyData B.
    let p = scoped(&addr, vec![signed_by(&[&ka, &kb])]);
    m.both(
        "signedBy keyPaths A,B",
        &p,
        "signed/b:v1",
        acc_req(host, vec![json!({"type": "signedBy", "key": b})]),
        acc(host),
    );
    m.both(
        "signedBy keyPaths A,B",
        &p,
        "signed/a:v1",
        acc_req(host, vec![json!({"type": "signedBy", "key": a})]),
        acc(host),
    );
    m.both(
        "signedBy keyPaths A,B",
        &p,
        "signed/c:v1",
        rej(host, &[&not_one_of(c), a, b]),
        rej(host, &[&not_one_of(c), a, b]),
    );
    m.both("signedBy keyPaths A,B", &p, "signed/ab:v1", acc(host), acc(host));
    let p = scoped(&addr, vec![json!({"type": "signedBy", "keyType": "GPGKeys", "keyData": kb.data()})]);
    m.both(
        "signedBy keyData B",
        &p,
        "signed/b:v1",
        acc_req(host, vec![json!({"type": "signedBy", "key": b})]),
        acc(host),
    );
    m.both("signedBy keyData B", &p, "signed/a:v1", rej(host, &[&not_one_of(a), b]), rej(host, &[&not_one_of(a), b]));
    // An expired key.
    let p = scoped(&addr, vec![signed_by(&[&ke])]);
    let expired = format!("key {e} expired");
    m.both("signedBy E (expired)", &p, "signed/e:v1", rej(host, &[&expired]), rej(host, &[&expired]));
    m.both("signedBy E (expired)", &p, "signed/a:v1", rej(host, &[&not_one_of(a)]), rej(host, &[&not_one_of(a)]));

    // --- signedIdentity, each form, matching and not.
    let ident = |i: Value| scoped(&addr, vec![with_identity(sb_a.clone(), i)]);
    let mismatch = |signed: &str, image: &str, rule: &str| format!("identity {signed} does not match {image} ({rule})");
    let ot2 = format!("{addr}/signed/othertag:v2");
    let p = ident(json!({"type": "matchExact"}));
    m.both(
        "matchExact",
        &p,
        "signed/a:v1",
        acc(host),
        rej(host, &[&mismatch(&sa, &img("signed/a:v1", true), "matchExact")]),
    );
    m.both(
        "matchExact",
        &p,
        "signed/othertag:v1",
        rej(host, &[&mismatch(&ot2, &img("signed/othertag:v1", false), "matchExact")]),
        rej(host, &[&mismatch(&ot2, &img("signed/othertag:v1", true), "matchExact")]),
    );
    let p = ident(json!({"type": "matchRepoDigestOrExact"}));
    m.both("matchRepoDigestOrExact", &p, "signed/a:v1", acc(host), acc(host));
    m.both(
        "matchRepoDigestOrExact",
        &p,
        "signed/othertag:v1",
        rej(host, &[&mismatch(&ot2, &img("signed/othertag:v1", false), "matchRepoDigestOrExact")]),
        acc(host),
    );
    let p = ident(json!({"type": "matchRepository"}));
    m.both("matchRepository", &p, "signed/othertag:v1", acc_req(host, vec![signed_a(&ot2)]), acc(host));
    m.both(
        "matchRepository",
        &p,
        "signed/wrongid:v1",
        rej(host, &[&format!("identity {addr}/elsewhere/x:v1 does not match"), "(matchRepository)"]),
        rej(host, &["(matchRepository)"]),
    );
    let p = ident(json!({"type": "exactReference", "dockerReference": ot2}));
    m.both("exactReference", &p, "signed/othertag:v1", acc(host), acc(host));
    let p = ident(json!({"type": "exactReference", "dockerReference": format!("{addr}/signed/othertag:v1")}));
    m.both(
        "exactReference (other tag)",
        &p,
        "signed/othertag:v1",
        rej(host, &["(exactReference)"]),
        rej(host, &["(exactReference)"]),
    );
    let p = ident(json!({"type": "exactReference", "dockerReference": format!("{addr}/elsewhere/x:v1")}));
    m.both("exactReference (another repository's name)", &p, "signed/wrongid:v1", acc(host), acc(host));
    let p = ident(json!({"type": "exactRepository", "dockerRepository": format!("{addr}/signed/othertag")}));
    m.both("exactRepository", &p, "signed/othertag:v1", acc(host), acc(host));
    let p = ident(json!({"type": "exactRepository", "dockerRepository": format!("{addr}/signed/a")}));
    m.both(
        "exactRepository (other)",
        &p,
        "signed/othertag:v1",
        rej(host, &["(exactRepository)"]),
        rej(host, &["(exactRepository)"]),
    );
    let p = ident(
        json!({"type": "remapIdentity", "prefix": format!("{addr}/signed"), "signedPrefix": "mirror.example.com/signed"}),
    );
    m.both("remapIdentity", &p, "signed/remap:v1", acc(host), acc(host));
    m.both(
        "remapIdentity",
        &p,
        "signed/a:v1",
        rej(host, &["does not match", "(remapIdentity)"]),
        rej(host, &["does not match", "(remapIdentity)"]),
    );
    // A prefix that does not apply: matchRepoDigestOrExact on the name as it is.
    let p = ident(
        json!({"type": "remapIdentity", "prefix": format!("{addr}/other"), "signedPrefix": "mirror.example.com/signed"}),
    );
    m.both(
        "remapIdentity (prefix elsewhere)",
        &p,
        "signed/remap:v1",
        rej(host, &["does not match", "(remapIdentity)"]),
        rej(host, &["does not match", "(remapIdentity)"]),
    );
    m.both("remapIdentity (prefix elsewhere)", &p, "signed/a:v1", acc(host), acc(host));

    sigstore::rows(&mut m, &ss);

    // --- --insecure-policy, and the default policy file ($HOME/.config/containers/policy.json).
    let p = json!({"default": [reject()]});
    m.both("--insecure-policy", &p, "unsigned/x:v1", acc("default"), acc("default"));
    let n = m.cases.len();
    for c in &mut m.cases[n - 2..] {
        c.extra = vec!["--insecure-policy".to_string()];
        // Whatever it reports as verified, it was not by this policy's rules.
        c.expect = Expect::Accept { scope: String::new(), reqs: vec![] };
    }
    let home = dir.join("home");
    fs::create_dir_all(home.join(".config/containers")).unwrap();
    fs::write(
        home.join(".config/containers/policy.json"),
        serde_json::to_vec(&scoped(&addr, vec![sb_a.clone()])).unwrap(),
    )
    .unwrap();
    m.both("$HOME policy", &json!({}), "signed/a:v1", acc(host), acc(host));
    m.both(
        "$HOME policy",
        &json!({}),
        "unsigned/x:v1",
        rej(host, &["no signature found"]),
        rej(host, &["no signature found"]),
    );
    let n = m.cases.len();
    for c in &mut m.cases[n - 4..] {
        c.home = Some(home.clone());
    }

    // The state root of a pull that stored nothing.
    let empty_root = Root::new();
    empty_root.ok(&["--json", "images"]);
    let empty = contents(&empty_root);

    // Run: a few workers (each case is two short-lived processes, mostly waiting on I/O).
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    let compared = AtomicUsize::new(0);
    let m = &m;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(c) = m.cases.get(i) else { break };
                    let label =
                        format!("#{i} [{}] {} by {}", c.name, c.image, if c.by_digest { "digest" } else { "tag" });
                    let want = matches!(c.expect, Expect::Accept { .. });
                    let mut problems = vec![];
                    if c.skopeo {
                        let sk = skopeo_decides(m, c, &rd, &scratch);
                        compared.fetch_add(1, Ordering::SeqCst);
                        if sk.accepted != want {
                            problems.push(format!(
                                "skopeo {} (the table says {}): {}",
                                if sk.accepted { "accepts" } else { "refuses" },
                                if want { "accept" } else { "refuse" },
                                sk.detail
                            ));
                        }
                    }
                    if skopeo_only {
                        if !problems.is_empty() {
                            failures.lock().unwrap().push(format!("{label}:\n  {}", problems.join("\n  ")));
                        }
                        continue;
                    }
                    match hoist_decides(m, c, &rd, &empty) {
                        Ok(got) if got == want => {}
                        Ok(got) => problems.push(format!(
                            "hoist {} (the table says {})",
                            if got { "accepts" } else { "refuses" },
                            if want { "accept" } else { "refuse" }
                        )),
                        Err(e) => problems.push(format!("hoist: {e}")),
                    }
                    if !problems.is_empty() {
                        failures.lock().unwrap().push(format!("{label}:\n  {}", problems.join("\n  ")));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    let total = m.cases.len();
    let compared = compared.into_inner();
    eprintln!("trust matrix: setup {:.1}s, total {:.1}s", setup.as_secs_f64(), started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{} of {total} cases fail:\n{}", failures.len(), failures.join("\n"));
    println!("trust matrix: {total} cases, {compared} compared with skopeo, all agree");
}

/// `trust show` names the policy, the scope, the requirements and the verdict with its reasons,
/// stores nothing, and exits 1 for a refusal. A broken policy file is refused naming the field.
#[test]
fn trust_show_explains_and_stores_nothing() {
    let r = Root::new();
    let dir = tempfile::tempdir().unwrap();
    let archive = hello();
    let canon = fs::canonicalize(&archive).unwrap();
    let image = format!("oci-archive:{}", archive.display());
    let accept = dir.path().join("accept.json");
    let parent = canon.parent().unwrap().display().to_string();
    fs::write(&accept, json!({"default": [reject()], "transports": {"oci-archive": {&parent: [any()]}}}).to_string())
        .unwrap();
    let out = r.ok(&["trust", "show", "--signature-policy", accept.to_str().unwrap(), &image]);
    let p = accept.display();
    assert_eq!(
        out,
        format!(
            "Image:        {image}\nPolicy:       {p}\nScope:        oci-archive:{parent}\nRequirements (all must hold):\n  \
             insecureAcceptAnything\nSignatures:   none (a local source carries none)\nFound:        0 signature(s)\n\
             Verdict:      accepted: insecureAcceptAnything (scope oci-archive:{parent} of {p})\n"
        )
    );
    let refuse = dir.path().join("refuse.json");
    fs::write(&refuse, json!({"default": [reject()]}).to_string()).unwrap();
    let o = r.run(&["trust", "show", "--signature-policy", refuse.to_str().unwrap(), &image]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).ends_with("Verdict:      refused\n  reject: rejected by policy\n"));
    assert!(!r.path().join("store/index.json").exists(), "trust show stored nothing");
    // The same policy refuses the pull, naming the scope; nothing is stored.
    let e = r.fails(&["pull", "--signature-policy", refuse.to_str().unwrap(), &image], 1);
    assert_eq!(
        e.trim(),
        format!("hoist: {image}: refused by policy {} (scope default): reject: rejected by policy", refuse.display())
    );
    assert_eq!(r.count("store/blobs/sha256"), 0);
    let bad = dir.path().join("bad.json");
    fs::write(&bad, r#"{"default": [{"type": "reject"}], "defualt": []}"#).unwrap();
    let e = r.fails(&["pull", "--signature-policy", bad.to_str().unwrap(), &image], 1);
    assert!(e.contains(&bad.display().to_string()) && e.contains("defualt"), "{e}");
    let o = r.run(&["pull", "--insecure-policy", "--signature-policy", refuse.to_str().unwrap(), &image]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--insecure-policy: signatures are not verified"));
    assert_eq!(r.json(&["images", "info", "hello"])["verified"], Value::Null);
}

/// A kill -9 while the signatures are being fetched (a lookaside that never answers) leaves the
/// state root as a root that never stored anything: verification comes before any write.
#[test]
fn killed_during_verification_leaves_the_store_as_it_was() {
    let reg = Registry::start();
    reg.push(&archive(&hello()), "hello:1", false);
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let rd = dir.path().join("registries.d");
    fs::create_dir(&rd).unwrap();
    fs::write(rd.join("hang.yaml"), format!("docker:\n  {}:\n    lookaside: http://127.0.0.1:{port}/sigs\n", reg.addr))
        .unwrap();
    // The key is read only once signatures are in hand: any absolute file will do.
    let policy = dir.path().join("policy.json");
    let req = json!({"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/etc/hostname"});
    fs::write(&policy, json!({ "default": [req] }).to_string()).unwrap();
    let untouched = Root::new();
    untouched.ok(&["--json", "images"]);
    let r = Root::new();
    let mut child = r
        .cmd()
        .args(["-q", "pull", "--tls-verify=false", "--signature-policy"])
        .arg(&policy)
        .arg("--registries.d")
        .arg(&rd)
        .arg(reg.reference("hello:1"))
        .spawn()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let conn = wait_for("hoist to ask the lookaside for signature-1", 30, || listener.accept().ok());
    child.kill().unwrap();
    child.wait().unwrap();
    drop(conn);
    assert_eq!(contents(&r), contents(&untouched));
}
