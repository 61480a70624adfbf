//! Tier 2: `hoist push` against a real registry (Debian's docker-registry), checked with skopeo:
//! a tag stream published in one go (frozen tag first), the manifest byte for byte, only missing
//! blobs uploaded (HEAD first), blobs mounted from the repository the image came from, a
//! refused push that leaves the existing tags as they were, and signed pushes (GnuPG simple
//! signing into the lookaside; a sigstore key's attachment, checked with openssl) that a
//! `signedBy`/`sigstoreSigned` policy accepts while an unsigned tag is refused.

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

#[test]
fn a_sigstore_signed_push_passes_a_sigstore_signed_policy_and_refusals_name_the_cause() {
    use common::signing::{cosign_key, registries_d};
    let reg = Registry::start();
    let a = reg.addr.clone();
    let root = Root::new();
    let digest = root.pull(&hello())["digest"].as_str().unwrap().to_string();
    let hexd = digest.strip_prefix("sha256:").unwrap().to_string();
    let dir = root.dir.path();
    let keys = dir.join("keys");
    let (public, fpr) = cosign_key(&keys, "correct horse");
    let key = keys.join("cosign.key").display().to_string();
    let pass = dir.join("pass");
    std::fs::write(&pass, "correct horse\nsecond line ignored\n").unwrap();
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, "battery staple\n").unwrap();
    let rd = registries_d(&dir.join("registries.d"), &a, &dir.join("lookaside")).display().to_string();
    let empty_rd = dir.join("empty.d");
    std::fs::create_dir_all(&empty_rd).unwrap();
    let dest = format!("docker://{a}/sig:1.0-1");
    let push = |extra: &[&str]| {
        let mut v = vec!["push", "--tls-verify=false", "--stream", "--sign-by-sigstore-key", &key];
        v.extend_from_slice(extra);
        v.extend_from_slice(&["hello", &dest]);
        v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let refused = |extra: &[&str]| {
        let args = push(extra);
        root.fails(&args.iter().map(String::as_str).collect::<Vec<_>>(), 1)
    };

    // Refusals, each before anything is sent.
    assert_eq!(
        refused(&["--registries.d", &rd]),
        format!(
            "hoist: sigstore key {key} is encrypted: give its passphrase with --sign-passphrase-file FILE (or run on a terminal)\n"
        )
    );
    assert_eq!(
        refused(&["--registries.d", &rd, "--sign-passphrase-file", &wrong.display().to_string()]),
        format!("hoist: sigstore key {key}: wrong passphrase (the key does not decrypt)\n")
    );
    assert_eq!(
        refused(&[
            "--registries.d",
            &empty_rd.display().to_string(),
            "--sign-passphrase-file",
            &pass.display().to_string()
        ]),
        format!(
            "hoist: {dest}: sigstore signatures are attachments, and registries.d ({}) does not turn on \
             use-sigstore-attachments for {a}/sig (pullers would not look for them): add \
             `use-sigstore-attachments: true` for it\n",
            empty_rd.display()
        )
    );
    assert_eq!(count(&reg, "/v2/sig/"), 0, "a refused signing sends nothing");

    // Signed: one signature per stream tag, attached before the tags.
    let args = push(&["--registries.d", &rd, "--sign-passphrase-file", &pass.display().to_string()]);
    let out = root.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.ends_with(&format!(
            "Signed with sigstore key {fpr}: 3 signature(s) attached to {a}/sig:sha256-{hexd}.sig\n"
        )),
        "{out}"
    );
    let log = reg.requests_log();
    let attach_put = log.find(&format!("PUT /v2/sig/manifests/sha256-{hexd}.sig")).expect("attachment written");
    let first_tag = log.find("PUT /v2/sig/manifests/1.0-1").expect("tag written");
    assert!(attach_put < first_tag, "the attachment comes before any tag");
    assert_eq!(tags(&reg, "sig"), ["1.0", "1.0-1", "latest", &format!("sha256-{hexd}.sig")]);

    // What is attached, checked without hoist: the layers' media type, and each signature
    // verified by openssl with the public key over the payload blob skopeo copies out.
    let att = dir.join("att");
    skopeo(&[
        "copy",
        "--insecure-policy",
        "--src-tls-verify=false",
        &format!("docker://{a}/sig:sha256-{hexd}.sig"),
        &format!("dir:{}", att.display()),
    ]);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(att.join("manifest.json")).unwrap()).unwrap();
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    let mut identities = Vec::new();
    for l in layers {
        assert_eq!(l["mediaType"], "application/vnd.dev.cosign.simplesigning.v1+json");
        let payload = att.join(l["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap());
        let p: serde_json::Value = serde_json::from_slice(&std::fs::read(&payload).unwrap()).unwrap();
        assert_eq!(p["critical"]["image"]["docker-manifest-digest"], digest);
        assert_eq!(p["critical"]["type"], "cosign container image signature");
        identities.push(p["critical"]["identity"]["docker-reference"].as_str().unwrap().to_string());
        use base64::Engine;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(l["annotations"]["dev.cosignproject.cosign/signature"].as_str().unwrap())
            .unwrap();
        let sig_file = dir.join("sig.der");
        std::fs::write(&sig_file, sig).unwrap();
        let o = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&public)
            .arg("-signature")
            .arg(&sig_file)
            .arg(&payload)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "Verified OK\n", "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(identities, [format!("{a}/sig:1.0-1"), format!("{a}/sig:1.0"), format!("{a}/sig:latest")]);

    // Unsigned: the same image under another tag (its attachment names other tags).
    root.ok(&["push", "-q", "--tls-verify=false", "hello", &format!("docker://{a}/sig:unsigned")]);
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        serde_json::json!({"default": [{"type": "reject"}], "transports": {"docker": {a.clone(): [
            {"type": "sigstoreSigned", "keyPath": public}
        ]}}})
        .to_string(),
    )
    .unwrap();
    let p = policy.display().to_string();
    let fresh = Root::new();
    let pull = |r: &str| {
        vec!["pull", "--tls-verify=false", "--signature-policy", &p, "--registries.d", &rd, r]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    for r in [format!("docker://{a}/sig:1.0"), format!("docker://{a}/sig@{digest}")] {
        let args = pull(&r);
        let j = fresh.json(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(j["digest"].as_str(), Some(digest.as_str()), "{r}");
    }
    let args = pull(&format!("docker://{a}/sig:unsigned"));
    let err = fresh.fails(&args.iter().map(String::as_str).collect::<Vec<_>>(), 1);
    assert!(
        err.starts_with(&format!(
            "hoist: docker://{a}/sig:unsigned: refused by policy {p} (scope docker:{a}): sigstoreSigned: "
        )),
        "{err}"
    );
    assert!(err.contains(&format!("does not match {a}/sig:unsigned (matchRepoDigestOrExact)")), "{err}");

    // An attachment with more signatures than a puller reads: a push that would go past the
    // limit is refused before it uploads anything, and a pull refuses one past it.
    let crafted = |n: usize| {
        let mut doc = m.clone();
        let layer = layers[0].clone();
        doc["layers"] = (0..n)
            .map(|i| {
                let mut l = layer.clone();
                l["annotations"]["org.example.copy"] = serde_json::json!(i.to_string());
                l
            })
            .collect();
        let file = dir.join("crafted.json");
        std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
        let o = std::process::Command::new("curl")
            .args(["-sSf", "-X", "PUT", "-H", "Content-Type: application/vnd.oci.image.manifest.v1+json"])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(format!("http://{a}/v2/sig/manifests/sha256-{hexd}.sig"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    crafted(126);
    let puts = count(&reg, "\"PUT /v2/sig/");
    let args = push(&["--registries.d", &rd, "--sign-passphrase-file", &pass.display().to_string()]);
    let err = root.fails(&args.iter().map(String::as_str).collect::<Vec<_>>(), 1);
    assert!(
        err.ends_with(&format!(
            "sigstore attachment {a}/sig:sha256-{hexd}.sig: 129 signatures with these, more than the 128 a puller \
             reads (remove old ones first)\n"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(count(&reg, "\"PUT /v2/sig/"), puts, "nothing uploaded");
    crafted(129);
    let args = pull(&format!("docker://{a}/sig:1.0"));
    let err = Root::new().fails(&args.iter().map(String::as_str).collect::<Vec<_>>(), 1);
    assert!(
        err.contains(&format!(
            "cannot read signatures: sigstore attachments {a}/sig:sha256-{hexd}.sig: more than 128 signatures"
        )),
        "{err}"
    );
}

#[test]
fn pulling_a_pushed_build_back_keeps_the_blobs_the_build_needs() {
    let reg = Registry::start();
    let a = reg.addr.clone();
    let root = Root::new();
    root.pull(&hello());
    let ctx = root.dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("etc")).unwrap();
    std::fs::write(ctx.join("etc/built"), "1\n").unwrap();
    root.ok(&["images", "build", "-q", "--from", "hello", "--add", ctx.to_str().unwrap(), "--tag", "built:1"]);
    root.ok(&["push", "-q", "--tls-verify=false", "built:1", &format!("docker://{a}/built:1")]);
    // The same layers pulled from the registry: their blobs are dropped for the pulled name,
    // never for the built image, which has no source to fetch them from again.
    root.ok(&["pull", "-q", "--tls-verify=false", &format!("docker://{a}/built:1")]);
    let out = root
        .cmd()
        .args(["images", "export", "built:1"])
        .arg(format!("oci:{}", root.dir.path().join("out").display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    root.ok(&["images", "build", "-q", "--from", "built:1", "--add", ctx.to_str().unwrap(), "--tag", "built:2"]);
}
