//! The sigstore rows of the trust matrix (Debian's skopeo cannot verify these: the table decides):
//! `.sig` attachments by key, by Fulcio certificate and with Rekor SETs, and cosign v3 bundles
//! as referrers; and the referrers API path through a front that serves it.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{reject, scoped};
use crate::common::registry::{Front, Registry};
use crate::common::signing::{self, KitSigner};
use crate::common::*;
use crate::matrix::*;

/// The repositories [`Sigstore::setup`] signs (each a copy of hello, tag `v1`).
pub const REPOS: &[&str] = &[
    "sigstore/a",
    "sigstore/k2",
    "sigstore/tamper",
    "sigstore/repo",
    "sigstore/rekor",
    "sigstore/fulcio",
    "sigstore/late",
    "bundle/key",
    "bundle/k2",
    "bundle/rekor",
    "bundle/fulcio",
    "bundle/other",
    "bundle/attest",
    "bundle/loggedother",
    "sigstore/pki",
    "bundle/pki",
];

/// Keys S1 (trusted) and S2, the throwaway sigstore, and what the rows need to know.
pub struct Sigstore {
    addr: String,
    /// The digest of hello (every repository) and of the other image.
    h: String,
    other: String,
    s1_pub: PathBuf,
    s1_fpr: String,
    s2_pub: PathBuf,
    pki: PathBuf,
}

const EMAIL: &str = "dev@example.com";
const ISSUER: &str = "https://oidc.example.com";
const HOSTNAME: &str = "signer.example.com";

impl Sigstore {
    /// Makes the keys and the CA, copies hello into each of [`REPOS`] with `push` (`REPO:v1`) and
    /// signs it there as its name says.
    pub fn setup(dir: &Path, addr: &str, h: &str, other: &str, push: &(dyn Fn(&str) + Sync)) -> Sigstore {
        let (s1_pub, s1_fpr) = signing::cosign_key(&dir.join("cosign1"), "pass-one");
        let (s2_pub, _) = signing::cosign_key(&dir.join("cosign2"), "pass-two");
        let pki = dir.join("pki");
        signing::sigstore_pki(&pki);
        let rekor = pki.display().to_string();
        let s1 = KitSigner::Key(dir.join("cosign1"), "pass-one".into());
        let s2 = KitSigner::Key(dir.join("cosign2"), "pass-two".into());
        let fulcio = KitSigner::Fulcio { pki: pki.clone(), email: EMAIL.into(), issuer: ISSUER.into() };
        let plain = KitSigner::Pki { pki: pki.clone(), email: EMAIL.into(), hostname: HOSTNAME.into() };
        let (other_s, rekor_s) = (other, rekor.as_str());
        let sig_id = |repo: &str| format!("{addr}/{repo}:v1");
        // (repository, signer, .sig identity or None for a bundle, extra kit arguments)
        let kit: Vec<(&str, &KitSigner, Option<String>, Vec<&str>)> = vec![
            ("sigstore/a", &s1, Some(sig_id("sigstore/a")), vec![]),
            ("sigstore/k2", &s2, Some(sig_id("sigstore/k2")), vec![]),
            ("sigstore/tamper", &s1, Some(sig_id("sigstore/tamper")), vec!["--signed-digest", other_s]),
            // Like cosign's own signatures: a repository, no tag.
            ("sigstore/repo", &s1, Some(format!("{addr}/sigstore/repo")), vec![]),
            ("sigstore/rekor", &s1, Some(sig_id("sigstore/rekor")), vec!["--rekor", rekor_s]),
            ("sigstore/fulcio", &fulcio, Some(sig_id("sigstore/fulcio")), vec!["--rekor", rekor_s]),
            // Logged an hour after the 10-minute certificate expired.
            (
                "sigstore/late",
                &fulcio,
                Some(sig_id("sigstore/late")),
                vec!["--rekor", rekor_s, "--logged-after", "3600"],
            ),
            ("bundle/key", &s1, None, vec![]),
            ("bundle/k2", &s2, None, vec![]),
            ("bundle/rekor", &s1, None, vec!["--rekor", rekor_s]),
            ("bundle/fulcio", &fulcio, None, vec!["--rekor", rekor_s]),
            ("bundle/other", &s1, None, vec!["--signed-digest", other_s]),
            ("bundle/attest", &s1, None, vec!["--predicate-type", "https://slsa.dev/provenance/v1"]),
            ("bundle/loggedother", &s1, None, vec!["--rekor", rekor_s, "--log-other-payload"]),
            ("sigstore/pki", &plain, Some(sig_id("sigstore/pki")), vec![]),
            ("bundle/pki", &plain, None, vec![]),
        ];
        assert_eq!(kit.iter().map(|k| k.0).collect::<Vec<_>>(), REPOS);
        std::thread::scope(|s| {
            for (repo, signer, identity, extra) in &kit {
                s.spawn(move || {
                    push(&format!("{repo}:v1"));
                    match identity {
                        Some(id) => signing::sigstore_attach(addr, repo, h, id, signer, extra),
                        None => {
                            signing::cosign_bundle(addr, repo, h, signer, extra);
                        }
                    }
                });
            }
        });
        Sigstore { addr: addr.into(), h: h.into(), other: other.into(), s1_pub, s1_fpr, s2_pub, pki }
    }
}

/// The rows: what each requirement decides about each signed repository.
pub fn rows(m: &mut Matrix, ss: &Sigstore) {
    let Sigstore { addr, h, other, s1_pub, s1_fpr, s2_pub, pki } = ss;
    let (email, issuer) = (EMAIL, ISSUER);
    let host = format!("docker:{addr}");
    let host = host.as_str();
    let pem = |f: &str| pki.join(f).display().to_string();
    let sig_id = |repo: &str| format!("{addr}/{repo}:v1");
    let p = scoped(addr, vec![json!({"type": "sigstoreSigned", "keyPath": s1_pub})]);
    let s1_req = json!({"type": "sigstoreSigned", "key": s1_fpr});
    m.only_table(
        "sigstoreSigned S1",
        &p,
        "sigstore/a:v1",
        acc_req(host, vec![s1_req.clone()]),
        acc_req(host, vec![s1_req.clone()]),
    );
    m.only_table(
        "sigstoreSigned S1",
        &p,
        "sigstore/k2:v1",
        rej(host, &["signature does not verify with any of the"]),
        rej(host, &["signature does not verify with any of the"]),
    );
    let tamper = format!("payload digest {other} differs from manifest digest {h}");
    m.only_table("sigstoreSigned S1", &p, "sigstore/tamper:v1", rej(host, &[&tamper]), rej(host, &[&tamper]));
    m.only_table(
        "sigstoreSigned S1",
        &p,
        "unsigned/x:v1",
        rej(host, &["no signature found"]),
        rej(host, &["no signature found"]),
    );
    m.only_table(
        "sigstoreSigned S1",
        &p,
        "signed/a:v1",
        rej(host, &["no signature found"]),
        rej(host, &["no signature found"]),
    );
    // A repository-only identity (as cosign writes) is never accepted by matchRepoDigestOrExact,
    // by tag or by digest (containers/image: a name-only signature reference matches nothing).
    m.only_table(
        "sigstoreSigned S1",
        &p,
        "sigstore/repo:v1",
        rej(host, &["(matchRepoDigestOrExact)"]),
        rej(host, &["(matchRepoDigestOrExact)"]),
    );
    let p = scoped(addr, vec![json!({"type": "sigstoreSigned", "keyPath": s2_pub})]);
    m.only_table(
        "sigstoreSigned S2",
        &p,
        "sigstore/a:v1",
        rej(host, &["signature does not verify with any of the"]),
        rej(host, &["signature does not verify with any of the"]),
    );
    m.only_table("sigstoreSigned S2", &p, "sigstore/k2:v1", acc(host), acc(host));
    let p = scoped(
        addr,
        vec![json!({"type": "sigstoreSigned", "keyPath": s1_pub, "signedIdentity": {"type": "matchRepository"}})],
    );
    m.only_table("sigstoreSigned S1 matchRepository", &p, "sigstore/repo:v1", acc(host), acc(host));

    // --- Rekor SETs and Fulcio certificates on .sig attachments (the table decides).
    let ss = |extra: Value| {
        let mut r = json!({"type": "sigstoreSigned"});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        r
    };
    let s1_key = json!({"keyPath": s1_pub});
    let with_rekor = |mut r: Value, key: &str| {
        r["rekorPublicKeyPath"] = json!(pem(key));
        r
    };
    let p = scoped(addr, vec![with_rekor(ss(s1_key.clone()), "rekor.pub")]);
    let logged = "logged in Rekor #42 at 1767225660";
    m.only_table(
        "sigstoreSigned S1 + Rekor",
        &p,
        "sigstore/rekor:v1",
        acc_req(host, vec![json!({"type": "sigstoreSigned", "key": s1_fpr, "signer": logged})]),
        acc(host),
    );
    let no_set = "no dev.sigstore.cosign/bundle annotation (a Rekor SET is required)";
    m.only_table("sigstoreSigned S1 + Rekor", &p, "sigstore/a:v1", rej(host, &[no_set]), rej(host, &[no_set]));
    let p = scoped(addr, vec![with_rekor(ss(s1_key.clone()), "rekor-other.pub")]);
    let other_log = "rekor SET: signature does not verify with any of the 1 Rekor key(s)";
    m.only_table(
        "sigstoreSigned S1 + other Rekor",
        &p,
        "sigstore/rekor:v1",
        rej(host, &[other_log]),
        rej(host, &[other_log]),
    );
    let fulcio_req = |ca: &str, email: &str, rekor: &str| {
        with_rekor(ss(json!({"fulcio": {"caPath": pem(ca), "oidcIssuer": issuer, "subjectEmail": email}})), rekor)
    };
    let p = scoped(addr, vec![fulcio_req("fulcio-root.pem", email, "rekor.pub")]);
    let signer = format!("{email} from {issuer}, {logged}");
    m.only_table(
        "sigstoreSigned Fulcio",
        &p,
        "sigstore/fulcio:v1",
        acc_req(host, vec![json!({"type": "sigstoreSigned", "identity": sig_id("sigstore/fulcio"), "signer": signer})]),
        acc(host),
    );
    let late = "fulcio: the signing certificate is not valid at the logged time 1767229200";
    m.only_table("sigstoreSigned Fulcio", &p, "sigstore/late:v1", rej(host, &[late]), rej(host, &[late]));
    m.only_table(
        "sigstoreSigned Fulcio",
        &p,
        "sigstore/rekor:v1",
        rej(host, &["no dev.sigstore.cosign/certificate annotation"]),
        rej(host, &["no dev.sigstore.cosign/certificate annotation"]),
    );
    let p = scoped(addr, vec![fulcio_req("fulcio-root.pem", "ops@example.com", "rekor.pub")]);
    let not_email = "required email \"ops@example.com\" not found (got [\"dev@example.com\"])";
    m.only_table(
        "sigstoreSigned Fulcio, other email",
        &p,
        "sigstore/fulcio:v1",
        rej(host, &[not_email]),
        rej(host, &[not_email]),
    );
    let p = scoped(addr, vec![fulcio_req("other-root.pem", email, "rekor.pub")]);
    let not_ca = "is not issued by the trusted CA";
    m.only_table(
        "sigstoreSigned Fulcio, other CA",
        &p,
        "sigstore/fulcio:v1",
        rej(host, &[not_ca]),
        rej(host, &[not_ca]),
    );
    let p = scoped(addr, vec![fulcio_req("fulcio-root.pem", email, "rekor-other.pub")]);
    m.only_table(
        "sigstoreSigned Fulcio, other Rekor",
        &p,
        "sigstore/fulcio:v1",
        rej(host, &[other_log]),
        rej(host, &[other_log]),
    );

    // pki: an ordinary CA, certificates checked now, by e-mail and/or host name.
    let pki_req = |roots: &str, intermediates: Option<&str>, names: Value| {
        let mut p = json!({"caRootsPath": pem(roots)});
        if let Some(i) = intermediates {
            p["caIntermediatesPath"] = json!(pem(i));
        }
        p.as_object_mut().unwrap().extend(names.as_object().unwrap().clone());
        ss(json!({ "pki": p }))
    };
    let p = scoped(addr, vec![pki_req("pki-root.pem", None, json!({"subjectEmail": email}))]);
    m.only_table(
        "sigstoreSigned pki",
        &p,
        "sigstore/pki:v1",
        acc_req(host, vec![json!({"type": "sigstoreSigned", "identity": sig_id("sigstore/pki"), "signer": format!("certificate for {email} (pki)")})]),
        acc(host),
    );
    let no_cert = "no dev.sigstore.cosign/certificate annotation";
    m.only_table("sigstoreSigned pki", &p, "sigstore/a:v1", rej(host, &[no_cert]), rej(host, &[no_cert]));
    // A Fulcio certificate, checked now, has long expired (and is of another CA).
    let expired = "pki: the signing certificate is not valid at the current time";
    m.only_table("sigstoreSigned pki", &p, "sigstore/fulcio:v1", rej(host, &[expired]), rej(host, &[expired]));
    let p =
        scoped(addr, vec![pki_req("pki-root.pem", None, json!({"subjectEmail": email, "subjectHostname": HOSTNAME}))]);
    m.only_table("sigstoreSigned pki, e-mail and host", &p, "sigstore/pki:v1", acc(host), acc(host));
    let p = scoped(addr, vec![pki_req("pki-root.pem", None, json!({"subjectHostname": "other.example.com"}))]);
    let not_host = format!("pki: required hostname \"other.example.com\" not found (got [\"{HOSTNAME}\"])");
    m.only_table(
        "sigstoreSigned pki, other host",
        &p,
        "sigstore/pki:v1",
        rej(host, &[&not_host]),
        rej(host, &[&not_host]),
    );
    let p = scoped(addr, vec![pki_req("other-root.pem", None, json!({"subjectEmail": email}))]);
    m.only_table("sigstoreSigned pki, other roots", &p, "sigstore/pki:v1", rej(host, &[not_ca]), rej(host, &[not_ca]));

    // --- cosign v3 bundles (OCI 1.1 referrers; Debian's registry has no referrers API, so the
    // tag schema). Accepted only under a scope naming the repository.
    let repo_scope = |repo: &str| format!("{addr}/{repo}");
    let p = json!({"default": [reject()], "transports": {"docker": {
        repo_scope("bundle/key"): [ss(s1_key.clone())],
        repo_scope("bundle/k2"): [ss(s1_key.clone())],
        repo_scope("bundle/rekor"): [with_rekor(ss(s1_key.clone()), "rekor.pub")],
        repo_scope("bundle/fulcio"): [fulcio_req("fulcio-ca.pem", email, "rekor.pub")],
        repo_scope("bundle/other"): [ss(s1_key.clone())],
        repo_scope("bundle/attest"): [ss(s1_key.clone())],
        repo_scope("bundle/loggedother"): [with_rekor(ss(s1_key.clone()), "rekor.pub")],
        repo_scope("sigstore/a"): [with_rekor(ss(s1_key.clone()), "rekor.pub")],
        repo_scope("bundle/pki"): [pki_req("pki-root.pem", Some("pki-intermediate.pem"), json!({"subjectEmail": email}))],
    }}});
    let sc = |repo: &str| format!("docker:{addr}/{repo}");
    let proves = |repo: &str| format!("{addr}/{repo}@{h}");
    m.only_table(
        "bundles",
        &p,
        "bundle/key:v1",
        acc_req(
            &sc("bundle/key"),
            vec![json!({"type": "sigstoreSigned", "key": s1_fpr, "identity": proves("bundle/key")})],
        ),
        acc_req(
            &sc("bundle/key"),
            vec![json!({"type": "sigstoreSigned", "key": s1_fpr, "identity": proves("bundle/key")})],
        ),
    );
    let k2 = "bundle: signature does not verify with any of the 1 trusted key(s)";
    m.only_table("bundles", &p, "bundle/k2:v1", rej(&sc("bundle/k2"), &[k2]), rej(&sc("bundle/k2"), &[k2]));
    m.only_table(
        "bundles",
        &p,
        "bundle/rekor:v1",
        acc_req(
            &sc("bundle/rekor"),
            vec![json!({"type": "sigstoreSigned", "key": s1_fpr, "signer": "logged in Rekor #7 at 1767225660"})],
        ),
        acc(&sc("bundle/rekor")),
    );
    m.only_table(
        "bundles",
        &p,
        "bundle/fulcio:v1",
        acc_req(&sc("bundle/fulcio"), vec![json!({"type": "sigstoreSigned", "identity": proves("bundle/fulcio"), "signer": format!("{email} from {issuer}, logged in Rekor #7 at 1767225660")})]),
        acc(&sc("bundle/fulcio")),
    );
    let other_digest = format!("statement subject {other} is not manifest digest {h}");
    m.only_table(
        "bundles",
        &p,
        "bundle/other:v1",
        rej(&sc("bundle/other"), &[&other_digest]),
        rej(&sc("bundle/other"), &[&other_digest]),
    );
    let attest = "bundle is an attestation (https://slsa.dev/provenance/v1), not a signature";
    m.only_table(
        "bundles",
        &p,
        "bundle/attest:v1",
        rej(&sc("bundle/attest"), &[attest]),
        rej(&sc("bundle/attest"), &[attest]),
    );
    let logged_other = "bundle: rekor SET: the logged payload hash is not this payload's";
    m.only_table(
        "bundles",
        &p,
        "bundle/loggedother:v1",
        rej(&sc("bundle/loggedother"), &[logged_other]),
        rej(&sc("bundle/loggedother"), &[logged_other]),
    );
    m.only_table(
        "bundles",
        &p,
        "bundle/pki:v1",
        acc_req(&sc("bundle/pki"), vec![json!({"type": "sigstoreSigned", "identity": proves("bundle/pki"), "signer": format!("certificate for {email} (pki)")})]),
        acc(&sc("bundle/pki")),
    );
    // A bundle carries no intermediates: without the policy's, the chain stops short.
    let p2 = json!({"default": [reject()], "transports": {"docker": {
        repo_scope("bundle/pki"): [pki_req("pki-root.pem", None, json!({"subjectEmail": email}))]}}});
    m.only_table(
        "bundle, pki without intermediates",
        &p2,
        "bundle/pki:v1",
        rej(&sc("bundle/pki"), &[not_ca]),
        rej(&sc("bundle/pki"), &[not_ca]),
    );
    // A .sig attachment without a SET does not pass a Rekor requirement, bundles or not.
    m.only_table("bundles", &p, "sigstore/a:v1", rej(&sc("sigstore/a"), &[no_set]), rej(&sc("sigstore/a"), &[no_set]));
    // Broader scopes: a bundle names no repository, so the same key under the host is not enough.
    let p = scoped(addr, vec![ss(s1_key.clone())]);
    let broader = format!(
        "a cosign bundle names no repository: it is accepted only under a scope naming this repository (scope {host} is broader)"
    );
    m.only_table("bundle under a host scope", &p, "bundle/key:v1", rej(host, &[&broader]), rej(host, &[&broader]));
    let p = json!({"default": [reject()], "transports": {"docker": {format!("{addr}/bundle/key:v1"): [ss(s1_key.clone())]}}});
    m.only_table(
        "bundle under a tag scope",
        &p,
        "bundle/key:v1",
        acc(&sc("bundle/key:v1")),
        rej("default", &["rejected by policy"]),
    );
    // signedIdentity still applies to what a bundle is taken to prove.
    let mut req = ss(s1_key.clone());
    req["signedIdentity"] = json!({"type": "exactRepository", "dockerRepository": repo_scope("bundle/other")});
    let p = json!({"default": [reject()], "transports": {"docker": {repo_scope("bundle/key"): [req]}}});
    m.only_table(
        "bundle, exactRepository elsewhere",
        &p,
        "bundle/key:v1",
        rej(&sc("bundle/key"), &["(exactRepository)"]),
        rej(&sc("bundle/key"), &["(exactRepository)"]),
    );
    let mut req = ss(s1_key.clone());
    req["signedIdentity"] = json!({"type": "matchExact"});
    let p = json!({"default": [reject()], "transports": {"docker": {repo_scope("bundle/key"): [req]}}});
    m.only_table("bundle, matchExact", &p, "bundle/key:v1", acc(&sc("bundle/key")), acc(&sc("bundle/key")));
}

/// A registry with the OCI 1.1 referrers API: hoist asks it for the bundles (the referrers tag
/// schema's tag is hidden, so the bundle can only be found through the API), verifies the one
/// that cosign v3 would write, and records what it proves. A key that did not sign is refused.
#[test]
fn bundles_through_the_referrers_api() {
    let reg = Registry::start();
    let h = reg.push(&archive(&hello()), "api/app:v1", false);
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let d = dir.path();
    let (s1_pub, s1_fpr) = signing::cosign_key(&d.join("s1"), "one");
    let (s2_pub, _) = signing::cosign_key(&d.join("s2"), "two");
    signing::cosign_bundle(&reg.addr, "api/app", &h, &KitSigner::Key(d.join("s1"), "one".into()), &[]);

    let log = d.join("proxy.log");
    let (_proxy, addr) = front(&reg.addr, &log, &[]);
    let rd = signing::registries_d(&d.join("registries.d"), &addr, &d.join("lookaside"));
    let policy = |key: &Path| {
        let p = d.join(format!("policy-{}.json", key.parent().unwrap().file_name().unwrap().to_string_lossy()));
        let req = json!({"type": "sigstoreSigned", "keyPath": key});
        fs::write(
            &p,
            json!({"default": [reject()], "transports": {"docker": {format!("{addr}/api/app"): [req]}}}).to_string(),
        )
        .unwrap();
        p
    };
    let image = format!("docker://{addr}/api/app:v1");
    let pull = |r: &Root, p: &Path| {
        r.run(&[
            "--json",
            "pull",
            "--tls-verify=false",
            "--signature-policy",
            p.to_str().unwrap(),
            "--registries.d",
            rd.to_str().unwrap(),
            &image,
        ])
    };

    let r = Root::new();
    let o = pull(&r, &policy(&s1_pub));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        j["verified"]["requirements"],
        json!([{"type": "sigstoreSigned", "key": s1_fpr, "identity": format!("{addr}/api/app@{h}")}])
    );
    let asked = fs::read_to_string(&log).unwrap();
    assert!(asked.contains(&format!("GET /v2/api/app/referrers/{h} 200")), "{asked}");
    let tag = h.replace(':', "-");
    assert!(!asked.contains(&format!("manifests/{tag} 200")), "{asked}");

    let r = Root::new();
    let p2 = policy(&s2_pub);
    let o = pull(&r, &p2);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.trim().starts_with(&format!(
            "hoist: {image}: refused by policy {} (scope docker:{addr}/api/app): sigstoreSigned: signature 1 ({addr}/api/app referrer ",
            p2.display()
        )) && e.contains("bundle: signature does not verify with any of the 1 trusted key(s)"),
        "{e}"
    );
    assert_eq!(r.count("store/blobs/sha256"), 0);
}

/// Starts tests/kit/referrers_proxy.py in front of `upstream` (`extra`: its mode); returns it
/// (killed on drop) and its address.
fn front(upstream: &str, log: &Path, extra: &[&str]) -> (Front, String) {
    let mut args: Vec<&std::ffi::OsStr> = vec![upstream.as_ref(), log.as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let f = Front::start("referrers_proxy.py", &args);
    let addr = f.addr.clone();
    (f, addr)
}

/// A registry that refuses the referrers API with 405 instead of 404: the tag schema is read
/// anyway, and the bundle verifies.
#[test]
fn bundles_when_the_referrers_api_says_405() {
    let reg = Registry::start();
    let h = reg.push(&archive(&hello()), "api/app:v1", false);
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let d = dir.path();
    let (s1_pub, s1_fpr) = signing::cosign_key(&d.join("s1"), "one");
    signing::cosign_bundle(&reg.addr, "api/app", &h, &KitSigner::Key(d.join("s1"), "one".into()), &[]);
    let log = d.join("proxy.log");
    let (_proxy, addr) = front(&reg.addr, &log, &["405"]);
    let rd = signing::registries_d(&d.join("registries.d"), &addr, &d.join("lookaside"));
    let p = d.join("policy.json");
    let req = json!({"type": "sigstoreSigned", "keyPath": s1_pub});
    fs::write(
        &p,
        json!({"default": [reject()], "transports": {"docker": {format!("{addr}/api/app"): [req]}}}).to_string(),
    )
    .unwrap();
    let r = Root::new();
    let image = format!("docker://{addr}/api/app:v1");
    let (ps, rds) = (p.display().to_string(), rd.display().to_string());
    let o = r.run(&["--json", "pull", "--tls-verify=false", "--signature-policy", &ps, "--registries.d", &rds, &image]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["verified"]["requirements"][0]["key"], json!(s1_fpr));
    let asked = fs::read_to_string(&log).unwrap();
    assert!(asked.contains(&format!("GET /v2/api/app/referrers/{h} 405")), "{asked}");
    assert!(asked.contains(&format!("/v2/api/app/manifests/{} 200", h.replace(':', "-"))), "{asked}");
}
