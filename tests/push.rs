//! Tier 2: `hoist push` against a real registry (Debian's docker-registry), checked with skopeo:
//! a tag stream published in one go (frozen tag first), the manifest byte for byte, only missing
//! blobs uploaded (HEAD first), blobs mounted from the repository the image came from, and a
//! refused push that leaves the existing tags as they were.

mod common;

use common::registry::{Registry, auth_file};
use common::*;
use sha2::Digest as _;

fn skopeo(args: &[&str]) -> String {
    let o = std::process::Command::new("skopeo").args(args).output().unwrap();
    assert!(o.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn tags(reg: &Registry, repo: &str) -> Vec<String> {
    let j: serde_json::Value =
        serde_json::from_str(&skopeo(&["list-tags", "--tls-verify=false", &format!("docker://{}/{repo}", reg.addr)]))
            .unwrap();
    let mut t: Vec<String> = j["Tags"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    t.sort();
    t
}

fn manifest_digest(reg: &Registry, repo_tag: &str) -> String {
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{}/{repo_tag}", reg.addr)]);
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(raw.as_bytes())))
}

fn count(reg: &Registry, needle: &str) -> usize {
    reg.requests_log().lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn push_publishes_a_stream_byte_for_byte_and_uploads_only_what_is_missing() {
    let reg = Registry::start();
    let a = reg.addr.clone();
    let root = Root::new();
    let digest = root.pull(&hello())["digest"].as_str().unwrap().to_string();
    let short = &digest[7..19];

    let out = root.ok(&["push", "--tls-verify=false", "--stream", "hello", &format!("docker://{a}/app:1.0-1")]);
    assert_eq!(
        out,
        format!(
            "Pushed hello:latest ({short}) to {a}/app: 1.0-1, 1.0, latest (3 blob(s) uploaded, 0 mounted, 0 already there)\n"
        )
    );
    assert_eq!(tags(&reg, "app"), vec!["1.0", "1.0-1", "latest"]);
    for t in ["1.0-1", "1.0", "latest"] {
        assert_eq!(manifest_digest(&reg, &format!("app:{t}")), digest, "app:{t}");
    }
    // The frozen tag first, the manifest after every blob.
    let log = reg.requests_log();
    let puts: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("\"PUT /v2/app/manifests/").nth(1))
        .map(|rest| rest.split(' ').next().unwrap())
        .collect();
    assert_eq!(puts, vec!["1.0-1", "1.0", "latest"]);
    let lines: Vec<&str> = log.lines().collect();
    let last_blob = lines.iter().rposition(|l| l.contains("/v2/app/blobs/uploads/")).unwrap();
    let first_manifest = log.lines().position(|l| l.contains("\"PUT /v2/app/manifests/")).unwrap();
    assert!(last_blob < first_manifest, "{log}");

    // Again: HEAD finds every blob; nothing is uploaded.
    let uploads = count(&reg, "\"POST /v2/app/blobs/uploads/");
    let out = root.ok(&["push", "--tls-verify=false", "hello", &format!("docker://{a}/app:1.0-1")]);
    assert!(out.ends_with("(0 blob(s) uploaded, 0 mounted, 3 already there)\n"), "{out}");
    assert_eq!(count(&reg, "\"POST /v2/app/blobs/uploads/"), uploads);

    // An image pulled from this registry: its blobs are mounted into another repository.
    let other = Root::new();
    other.ok(&["pull", "-q", "--tls-verify=false", &format!("docker://{a}/app:1.0")]);
    let out = other.ok(&["push", "--tls-verify=false", &format!("{a}/app:1.0"), &format!("docker://{a}/copy:1")]);
    assert!(out.ends_with("(0 blob(s) uploaded, 3 mounted, 0 already there)\n"), "{out}");
    assert_eq!(manifest_digest(&reg, "copy:1"), digest);
    // And what was pushed pulls back to the same image.
    let fresh = Root::new();
    let j = fresh.json(&["pull", "--tls-verify=false", &format!("docker://{a}/app:latest")]);
    assert_eq!(j["digest"].as_str(), Some(digest.as_str()));

    // Refusals before anything is sent.
    let err = root.fails(&["push", "--stream", "hello", &format!("docker://{a}/app:stable")], 2);
    assert_eq!(err, "hoist: --stream needs a tag VERSION-RELEASE (like 3.4-2), not \"stable\"\n");
    let err = root.fails(&["push", "hello", "oci:/tmp/x"], 2);
    assert!(err.contains("push writes to docker://REGISTRY/REPOSITORY[:TAG]"), "{err}");
}

#[test]
fn a_refused_push_leaves_the_tags_as_they_were() {
    let reg = Registry::with_auth("builder", "s3cret");
    let a = reg.addr.clone();
    let root = Root::new();
    root.pull(&hello());
    let v2 = Root::new();
    v2.pull(&hello_v2());
    let creds = auth_file(root.dir.path(), &a, "builder", "s3cret");
    let dest = format!("docker://{a}/app:1");
    root.ok(&["push", "-q", "--tls-verify=false", "--authfile", &creds.display().to_string(), "hello", &dest]);
    let before = reg.requests_log().lines().filter(|l| l.contains("\"PUT /v2/app/manifests/")).count();
    let err = v2.fails(&["push", "-q", "--tls-verify=false", "hello-v2", &dest], 1);
    let head = format!("hoist: docker://{a}/app: access to {a}/app denied: no credentials for {a} found (looked in ");
    assert!(err.starts_with(&head), "{err}");
    assert!(err.ends_with("); add some with `podman login` or point --authfile at an auth.json\n"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(reg.requests_log().lines().filter(|l| l.contains("\"PUT /v2/app/manifests/")).count(), before);
}

#[test]
fn a_signed_push_passes_a_signed_by_policy_and_an_unsigned_tag_is_refused() {
    use common::signing::{Gpg, lookaside_file, registries_d};
    let reg = Registry::start();
    let a = reg.addr.clone();
    let root = Root::new();
    let digest = root.pull(&hello())["digest"].as_str().unwrap().to_string();
    let dir = root.dir.path();
    let gpg = Gpg::new();
    let key = gpg.key("pusher", "never", dir);
    let lookaside = dir.join("lookaside");
    let rd = registries_d(&dir.join("registries.d"), &a, &lookaside);
    let rd_s = rd.display().to_string();
    let o = root
        .cmd()
        .env("GNUPGHOME", gpg.home())
        .args(["push", "--tls-verify=false", "--registries.d", &rd_s, "--sign-by", &key.fpr, "hello"])
        .arg(format!("docker://{a}/app:1"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sig = lookaside_file(&lookaside, "app", &digest, 1);
    assert!(String::from_utf8_lossy(&o.stdout).ends_with(&format!("Signed with {}: {}\n", key.fpr, sig.display())));
    // What gpg says is inside: the identity and digest skopeo would have written.
    let inside: serde_json::Value = serde_json::from_slice(&gpg.payload(&sig)).unwrap();
    assert_eq!(inside["critical"]["identity"]["docker-reference"], format!("{a}/app:1"));
    assert_eq!(inside["critical"]["image"]["docker-manifest-digest"], digest);
    assert_eq!(inside["critical"]["type"], "atomic container signature");
    // Unsigned: the same image under another tag.
    root.ok(&["push", "-q", "--tls-verify=false", "hello", &format!("docker://{a}/app:2")]);

    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        serde_json::json!({"default": [{"type": "reject"}], "transports": {"docker": {a.clone(): [
            {"type": "signedBy", "keyType": "GPGKeys", "keyPath": key.public}
        ]}}})
        .to_string(),
    )
    .unwrap();
    let p = policy.display().to_string();
    let fresh = Root::new();
    let j = fresh.json(&[
        "pull",
        "--tls-verify=false",
        "--signature-policy",
        &p,
        "--registries.d",
        &rd_s,
        &format!("docker://{a}/app:1"),
    ]);
    assert_eq!(j["digest"].as_str(), Some(digest.as_str()));
    let err = fresh.fails(
        &[
            "pull",
            "--tls-verify=false",
            "--signature-policy",
            &p,
            "--registries.d",
            &rd_s,
            &format!("docker://{a}/app:2"),
        ],
        1,
    );
    assert_eq!(
        err,
        format!(
            "hoist: docker://{a}/app:2: refused by policy {p} (scope docker:{a}): signedBy: signature 1 (file://{}): \
             identity {a}/app:1 does not match {a}/app:2 (matchRepoDigestOrExact)\n",
            sig.display()
        )
    );
}
