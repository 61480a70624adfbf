//! Tier 2: where images come from, configured the way hosts configure podman and skopeo — real
//! containers-registries.conf(5) files, Debian's docker-registry as upstream and as a pull-through
//! cache (`proxy:` mode) used as a mirror, short names, credential helpers, a digest-pinned
//! reference.
//!
//! Every hoist here gets `--registries-conf FILE --registries-conf-dir EMPTY`, so the host's own
//! files (Debian's shortnames.conf) do not change what is tested.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::registry::{Front, Registry, auth_file, closed_port};
use common::{Root, hello, hello_v2};

fn archive(p: &Path) -> String {
    format!("oci-archive:{}", p.display())
}

/// A registries.conf and an empty drop-in directory.
struct Conf {
    dir: tempfile::TempDir,
}

impl Conf {
    fn unchecked(text: &str) -> Conf {
        let dir = tempfile::Builder::new().prefix("hoist-regconf-").tempdir_in(common::repo().join("target")).unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("registries.conf"), text).unwrap();
        Conf { dir }
    }

    /// A file skopeo reads as well (see [`Self::skopeo_accepts`]).
    fn new(text: &str) -> Conf {
        let c = Conf::unchecked(text);
        c.skopeo_accepts();
        c
    }

    /// Insists that skopeo (containers/image) reads the file too, so what these tests configure
    /// is what podman and skopeo accept on the same host.
    fn skopeo_accepts(&self) {
        let o = std::process::Command::new("skopeo")
            .arg("--registries-conf")
            .arg(self.file())
            .args(["inspect", "--raw", "--tls-verify=false", "docker://127.0.0.1:9/nothing/here:1"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("registries configuration") && !err.contains("registries.conf"),
            "skopeo refuses the file: {err}"
        );
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("registries.conf")
    }

    /// `hoist ARGS… --registries-conf FILE --registries-conf-dir D` (flags after the verb's args).
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend([
            "--registries-conf".into(),
            self.file().display().to_string(),
            "--registries-conf-dir".into(),
            self.dir.path().join("d").display().to_string(),
        ]);
        v
    }
}

fn run(root: &Root, conf: &Conf, args: &[&str]) -> std::process::Output {
    root.cmd().args(conf.args(args)).output().unwrap()
}

fn ok(root: &Root, conf: &Conf, args: &[&str]) -> (String, String) {
    let o = run(root, conf, args);
    let (out, err) = (String::from_utf8(o.stdout).unwrap(), String::from_utf8(o.stderr).unwrap());
    assert!(o.status.success(), "hoist {args:?}: {err}\n{out}");
    (out, err)
}

fn fails(root: &Root, conf: &Conf, args: &[&str]) -> String {
    let o = run(root, conf, args);
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(o.status.code(), Some(1), "hoist {args:?} should fail: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn json(root: &Root, conf: &Conf, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&ok(root, conf, &a).0).unwrap()
}

/// Blob digests (config and layers) of a manifest in a registry's storage.
fn blobs_of(reg: &Registry, manifest: &str) -> Vec<String> {
    let m: serde_json::Value = serde_json::from_slice(&fs::read(reg.blob_file(manifest)).unwrap()).unwrap();
    let mut out = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    out.extend(m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()));
    out
}

/// A pull-through cache as a mirror: four separate state roots pull the same image through it and
/// the upstream serves each blob once; the image keeps its upstream name.
#[test]
fn pull_through_cache_mirror_fetches_each_blob_once() {
    let upstream = Registry::start();
    let digest = upstream.push(&archive(&hello()), "app:1", false);
    let cache = Registry::proxy_of(&upstream);
    let conf = Conf::new(&format!(
        "[[registry]]\nlocation = \"{u}\"\ninsecure = true\n\n[[registry.mirror]]\nlocation = \"{c}\"\ninsecure = true\n",
        u = upstream.addr,
        c = cache.addr
    ));
    let reference = upstream.reference("app:1");
    let blobs = blobs_of(&upstream, &digest);
    let upstream_gets = |b: &str| upstream.requests("GET", &format!("/v2/app/blobs/{b}"));
    for i in 0..4 {
        let root = Root::new();
        let (_, err) = ok(&root, &conf, &["pull", &reference]);
        assert!(err.contains(&format!("Using mirror {}/app", cache.addr)), "pull {i}: {err}");
        let j = json(&root, &conf, &["images", "info", &reference]);
        assert_eq!(j["name"], format!("{}/app:1", upstream.addr), "the logical name is kept");
        assert_eq!(j["digest"], digest);
        assert_eq!(j["fetched_from"], format!("http://{}/app (mirror)", cache.addr));
        assert_eq!(j["remembered_tls"], serde_json::Value::Null, "registries.conf decides, nothing is remembered");
        if i == 0 {
            // distribution's cache answers a miss from upstream while it fetches the blob again
            // to keep it: two GETs per blob upstream, once the cache holds it.
            for b in &blobs {
                common::wait_for(&format!("the cache to keep {b}"), 30, || cache.blob_file(b).exists().then_some(()));
            }
            for b in &blobs {
                assert_eq!(upstream_gets(b), 2, "{b}: upstream log:\n{}", upstream.access_log());
            }
        }
    }
    // Three more hosts cost the upstream nothing: every blob came from the cache.
    for b in &blobs {
        assert_eq!(upstream_gets(b), 2, "{b}: upstream log:\n{}", upstream.access_log());
        assert_eq!(
            cache.requests("GET", &format!("/v2/app/blobs/{b}")),
            4,
            "{b}: every root fetched it from the cache"
        );
    }
}

/// A mirror that is down, a digest-only mirror with a tag, a lying mirror, a blocked registry,
/// a relocated namespace.
#[test]
fn mirror_fallbacks_verification_block_and_location() {
    let upstream = Registry::start();
    let v1 = upstream.push(&archive(&hello()), "app:1", false);
    let v2 = upstream.push(&archive(&hello_v2()), "app:2", false);
    let other = Registry::start();
    // The "mirror" holds v2 under v1's tag: only a tag pull could be fooled by it.
    other.push(&archive(&hello_v2()), "app:1", false);
    let down = closed_port();

    // Mirror down: the primary serves, and the output says so.
    let conf = Conf::new(&format!(
        "[[registry]]\nlocation = \"{u}\"\ninsecure = true\n[[registry.mirror]]\nlocation = \"127.0.0.1:{down}\"\ninsecure = true\n",
        u = upstream.addr
    ));
    let root = Root::new();
    let (_, err) = ok(&root, &conf, &["pull", &upstream.reference("app:1")]);
    assert!(err.contains(&format!("mirror 127.0.0.1:{down}/app: cannot reach registry 127.0.0.1:{down}")), "{err}");
    assert!(err.contains(&format!("Using the primary {}/app (no mirror served it)", upstream.addr)), "{err}");
    let j = json(&root, &conf, &["images", "info", &upstream.reference("app:1")]);
    assert_eq!(
        (j["digest"].as_str(), j["fetched_from"].as_str()),
        (Some(v1.as_str()), Some(&*format!("http://{}/app", upstream.addr)))
    );

    // digest-only: a tag pull never asks the mirror; a digest pull does, and what the mirror
    // sends is checked against the digest (the lying mirror has nothing under it: primary).
    let conf = Conf::new(&format!(
        "[[registry]]\nlocation = \"{u}\"\ninsecure = true\n[[registry.mirror]]\nlocation = \"{o}\"\ninsecure = true\npull-from-mirror = \"digest-only\"\n",
        u = upstream.addr,
        o = other.addr
    ));
    let root = Root::new();
    let before = other.access_log().lines().count();
    let j = json(&root, &conf, &["pull", &upstream.reference("app:1")]);
    assert_eq!(j["digest"], v1, "the tag came from the primary, not the mirror's v2");
    assert_eq!(
        other.access_log().lines().count(),
        before,
        "the digest-only mirror was not asked:\n{}",
        other.access_log()
    );
    let by_digest = format!("docker://{}/app@{v2}", upstream.addr);
    let (_, err) = ok(&root, &conf, &["pull", &by_digest]);
    assert!(err.contains(&format!("Using mirror {}/app", other.addr)), "{err}");
    let by_v1 = format!("docker://{}/app@{v1}", upstream.addr);
    let (_, err) = ok(&root, &conf, &["pull", &by_v1]);
    assert!(err.contains(&format!("mirror {}/app: not found in the registry: manifest {v1}", other.addr)), "{err}");

    // tag-only on an all-round mirror that lies about a tag: the tag pull takes its word (tags
    // move), which is why signature policies exist; the test below shows the policy is keyed
    // by the primary's name.
    let conf = Conf::new(&format!(
        "[[registry]]\nlocation = \"{u}\"\ninsecure = true\n[[registry.mirror]]\nlocation = \"{o}\"\ninsecure = true\npull-from-mirror = \"tag-only\"\n",
        u = upstream.addr,
        o = other.addr
    ));
    let root = Root::new();
    assert_eq!(json(&root, &conf, &["pull", &upstream.reference("app:1")])["digest"], v2);
    assert_eq!(json(&root, &conf, &["pull", &by_v1])["digest"], v1, "a digest pull skips a tag-only mirror");

    // Blocked, with the rule named; nothing is contacted.
    let conf = Conf::new(&format!("[[registry]]\nlocation = \"{}/app\"\nblocked = true\n", upstream.addr));
    let root = Root::new();
    let before = upstream.access_log().lines().count();
    let err = fails(&root, &conf, &["pull", &upstream.reference("app:1")]);
    assert_eq!(
        err,
        format!(
            "hoist: docker://{u}/app:1: {u}/app:1: pulls from this registry are blocked by {f} ([[registry]] prefix = \"{u}/app\")\n",
            u = upstream.addr,
            f = conf.file().display()
        )
    );
    assert_eq!(upstream.access_log().lines().count(), before);

    // A relocated namespace: the logical name is kept, the bytes come from the location.
    let conf = Conf::new(&format!(
        "[[registry]]\nprefix = \"registry.example/team\"\nlocation = \"{}\"\ninsecure = true\n",
        upstream.addr
    ));
    let root = Root::new();
    let j = json(&root, &conf, &["pull", "docker://registry.example/team/app:2"]);
    assert_eq!((j["name"].as_str(), j["digest"].as_str()), (Some("registry.example/team/app:2"), Some(v2.as_str())));
    let info = json(&root, &conf, &["images", "info", "registry.example/team/app:2"]);
    assert_eq!(info["fetched_from"], format!("http://{}/app", upstream.addr));

    // A broken file stops every pull, naming the file, the line and the key.
    let conf = Conf::new("[[registry]]\nlocation = \"x.io\"\nmirrors = []\n");
    let err = fails(&root, &conf, &["pull", &upstream.reference("app:1")]);
    assert!(err.contains(&format!("{}:3: unknown field `mirrors`", conf.file().display())), "{err}");
}

/// The signature policy is evaluated against the name asked for, not the mirror's: an image
/// signed (simple signing, `skopeo copy --sign-by`, lookaside by the upstream's name) and pulled
/// through a pull-through cache verifies against a policy that names the upstream; a policy that
/// only trusts the mirror's name does not let it in.
#[test]
fn policy_is_keyed_by_the_primary_name() {
    use common::signing::{self, Gpg};
    let upstream = Registry::start();
    let unsigned = upstream.push(&archive(&hello()), "unsigned:1", false);
    let cache = Registry::proxy_of(&upstream);
    let conf = Conf::new(&format!(
        "[[registry]]\nlocation = \"{u}\"\ninsecure = true\n[[registry.mirror]]\nlocation = \"{c}\"\ninsecure = true\n",
        u = upstream.addr,
        c = cache.addr
    ));
    let d = conf.dir.path();
    let gpg = Gpg::new();
    let key = gpg.key("mirror", "1d", d);
    let lookaside = d.join("lookaside");
    let rd = signing::registries_d(&d.join("registries.d"), &upstream.addr, &lookaside);
    let src = format!("docker://{}/unsigned:1", upstream.addr);
    let signed = signing::skopeo_copy(&gpg, &rd, &src, &upstream.reference("app:1"), &["--sign-by", &key.fpr], d);
    assert_eq!(signed, unsigned);
    let policy = d.join("policy.json");
    let write_policy = |scope: &str| {
        let p = serde_json::json!({
            "default": [{"type": "reject"}],
            "transports": {"docker": {scope: [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": key.public}]}}
        });
        fs::write(&policy, serde_json::to_vec(&p).unwrap()).unwrap();
    };
    let reference = upstream.reference("app:1");
    let trust = ["--signature-policy", policy.to_str().unwrap(), "--registries.d", rd.to_str().unwrap()];
    write_policy(&format!("{}/app", cache.addr));
    let root = Root::new();
    let err = fails(&root, &conf, &[&["pull"][..], &trust, &[reference.as_str()]].concat());
    // The scope that applied is the default one: the mirror's scope did not count.
    assert!(
        err.ends_with(&format!(
            "hoist: {reference}: refused by policy {} (scope default): reject: rejected by policy\n",
            policy.display()
        )),
        "{err}"
    );
    write_policy(&format!("{}/app", upstream.addr));
    let (_, err) = ok(&root, &conf, &[&["pull"][..], &trust, &[reference.as_str()]].concat());
    assert!(err.contains(&format!("Using mirror {}/app", cache.addr)), "{err}");
    let info = json(&root, &conf, &["images", "info", &reference]);
    assert_eq!(info["digest"], signed);
    assert_eq!(info["fetched_from"], format!("http://{}/app (mirror)", cache.addr));
    assert!(info["verified"].to_string().contains(&key.fpr), "verified by the key: {}", info["verified"]);
}

/// Short names: an alias, search registries tried in order, enforcing mode without a terminal.
#[test]
fn short_names_alias_search_and_enforcing() {
    let reg = Registry::start();
    let v1 = reg.push(&archive(&hello()), "team/app:1", false);
    let down = closed_port();
    let conf = Conf::new(&format!(
        "unqualified-search-registries = [\"127.0.0.1:{down}\", \"{r}\"]\nshort-name-mode = \"permissive\"\n\
         [[registry]]\nlocation = \"{r}\"\ninsecure = true\n[[registry]]\nlocation = \"127.0.0.1:{down}\"\ninsecure = true\n\
         [aliases]\n\"app\" = \"{r}/team/app\"\n",
        r = reg.addr
    ));
    let root = Root::new();
    // The alias: no search, the stored name is the full one.
    let (_, err) = ok(&root, &conf, &["pull", "app:1"]);
    assert!(err.contains(&format!("Resolved short name \"app:1\" to {}/team/app:1", reg.addr)), "{err}");
    let names = root.json(&["images"]);
    assert_eq!(names[0]["name"], format!("{}/team/app:1", reg.addr), "{names}");
    // Search in order (permissive, no terminal): the first registry is down, the second has it.
    let (_, err) = ok(&root, &conf, &["pull", "team/app:1"]);
    assert!(err.contains(&format!("Resolved short name \"team/app:1\" to 127.0.0.1:{down}/team/app:1")), "{err}");
    assert!(err.contains(&format!("Resolved short name \"team/app:1\" to {}/team/app:1", reg.addr)), "{err}");
    // install-style resolution of a stored short name is a store lookup, never a pull.
    let j = json(&root, &conf, &["images", "info", &format!("{}/team/app:1", reg.addr)]);
    assert_eq!(j["digest"], v1);

    // Enforcing, two candidates, no terminal: a refusal that lists them.
    let enforcing = Conf::new(&format!(
        "unqualified-search-registries = [\"127.0.0.1:{down}\", \"{r}\"]\nshort-name-mode = \"enforcing\"\n",
        r = reg.addr
    ));
    let err = fails(&Root::new(), &enforcing, &["pull", "team/app:1"]);
    assert_eq!(
        err,
        format!(
            "hoist: team/app:1: ambiguous short name and short-name-mode is enforcing, with no terminal to ask: use one of \
             127.0.0.1:{down}/team/app:1, {r}/team/app:1, or add an [aliases] entry\n",
            r = reg.addr
        )
    );
    // No search registries at all: says where it looked.
    let none = Conf::new("");
    let err = fails(&Root::new(), &none, &["pull", "team/app:1"]);
    assert_eq!(
        err,
        format!(
            "hoist: image \"team/app:1\" not found in the store (see `hoist images`), and registries.conf has no alias and no \
             unqualified-search-registries for it (read {})\n",
            none.file().display()
        )
    );
}

/// `credHelpers`, `credsStore` and registries.conf `credential-helpers` run docker's helper
/// protocol; errors name the helper and the file; the secret is never printed.
#[test]
fn credential_helpers() {
    let reg = Registry::with_auth("helped", "s3cret-pw");
    reg.push(&archive(&hello()), "app:1", false);
    let conf = Conf::new(&format!("[[registry]]\nlocation = \"{}\"\ninsecure = true\n", reg.addr));
    let bin = conf.dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let asked = conf.dir.path().join("asked");
    // The helper records what it was asked (stdin) and answers for that registry only.
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r host\necho \"$host\" >> {asked}\n\
         if [ \"$host\" = \"{addr}\" ]; then printf '{{\"ServerURL\":\"%s\",\"Username\":\"helped\",\"Secret\":\"s3cret-pw\"}}' \"$host\"; \
         else echo 'credentials not found in native keychain'; exit 1; fi\n",
        asked = asked.display(),
        addr = reg.addr
    );
    let helpers = [
        ("docker-credential-hoisttest", script.clone()),
        ("docker-credential-broken", "#!/bin/sh\necho 'keyring is locked' >&2\nexit 3\n".to_string()),
        // Fails after printing the secret: the message must not repeat it.
        (
            "docker-credential-leaky",
            "#!/bin/sh\nprintf '{\"Username\":\"helped\",\"Secret\":\"s3cret-pw\"}'\nexit 1\n".to_string(),
        ),
        // Answers, leaving a process behind that holds its output open: it goes with the helper.
        ("docker-credential-lingering", script.replacen("read -r host", "sleep 600 &\nread -r host", 1)),
    ];
    for (name, text) in helpers {
        let p = bin.join(name);
        fs::write(&p, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let reference = reg.reference("app:1");
    let authdir = conf.dir.path().join("auth");
    fs::create_dir(&authdir).unwrap();
    let pull = |authjson: serde_json::Value, c: &Conf| {
        let f = authdir.join("auth.json");
        fs::write(&f, serde_json::to_vec(&authjson).unwrap()).unwrap();
        let root = Root::new();
        let o = root
            .cmd()
            .env("PATH", &path)
            .args(c.args(&["pull", "--authfile", f.to_str().unwrap(), &reference]))
            .output()
            .unwrap();
        let out = String::from_utf8(o.stderr).unwrap() + &String::from_utf8(o.stdout).unwrap();
        assert!(!out.contains("s3cret-pw"), "the secret is never printed: {out}");
        (o.status.code(), out, f)
    };
    // credHelpers for this host.
    let (code, out, _) = pull(serde_json::json!({"credHelpers": {reg.addr.clone(): "hoisttest"}}), &conf);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(fs::read_to_string(&asked).unwrap(), format!("{}\n", reg.addr));
    // credsStore, with the file's own (wrong) entry as a fallback that is not needed.
    let wrong = auth_file(&conf.dir.path().join("w"), &reg.addr, "helped", "wrong");
    let mut doc: serde_json::Value = serde_json::from_slice(&fs::read(wrong).unwrap()).unwrap();
    doc["credsStore"] = "hoisttest".into();
    let (code, out, _) = pull(doc, &conf);
    assert_eq!(code, Some(0), "{out}");
    // A missing helper and a failing one: named, with the file that named them; no secret.
    let (code, out, f) = pull(serde_json::json!({"credHelpers": {reg.addr.clone(): "absent"}}), &conf);
    assert_eq!(code, Some(1));
    assert!(
        out.contains(&format!(
            "credential helper docker-credential-absent (named by {}): not found in $PATH",
            f.display()
        )),
        "{out}"
    );
    let (code, out, _) = pull(serde_json::json!({"credHelpers": {reg.addr.clone(): "broken"}}), &conf);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("credential helper docker-credential-broken")
            && out.contains("exited with status 3: keyring is locked"),
        "{out}"
    );
    let (code, out, _) = pull(serde_json::json!({"credHelpers": {reg.addr.clone(): "leaky"}}), &conf);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("credential helper docker-credential-leaky") && out.contains("exited with status 1\n"),
        "{out}"
    );
    let (code, out, _) = pull(serde_json::json!({"credHelpers": {reg.addr.clone(): "lingering"}}), &conf);
    assert_eq!(code, Some(0), "{out}");
    // registries.conf credential-helpers: the helper alone, no auth file needed.
    let helpers = Conf::new(&format!(
        "credential-helpers = [\"containers-auth.json\", \"hoisttest\"]\n[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
        reg.addr
    ));
    let (code, out, _) = pull(serde_json::json!({"auths": {}}), &helpers);
    assert_eq!(code, Some(0), "{out}");
}

/// `REPO:TAG@DIGEST` pins: stored under the digest, the tag kept for display; pulling it again
/// after the tag moved changes nothing.
#[test]
fn tag_and_digest_pins() {
    let reg = Registry::start();
    let v1 = reg.push(&archive(&hello()), "app:1.2", false);
    let conf = Conf::new(&format!("[[registry]]\nlocation = \"{}\"\ninsecure = true\n", reg.addr));
    let root = Root::new();
    let pinned = format!("docker://{}/app:1.2@{v1}", reg.addr);
    let j = json(&root, &conf, &["pull", &pinned]);
    let hex = v1.strip_prefix("sha256:").unwrap();
    assert_eq!(
        (j["name"].as_str(), j["source"].as_str()),
        (Some(&*format!("{}/app:sha256-{hex}", reg.addr)), Some(pinned.as_str()))
    );
    reg.push(&archive(&hello_v2()), "app:1.2", false);
    let j = json(&root, &conf, &["pull", &pinned]);
    assert_eq!((j["digest"].as_str(), j["result"].as_str()), (Some(v1.as_str()), Some("unchanged")));
}

/// A mirror that answers a digest with another image (and claims the digest in its header): the
/// bytes are checked against the digest asked for, the mirror's answer is refused, and the
/// primary serves the real image.
#[test]
fn lying_mirror_is_caught_by_the_digest() {
    let upstream = Registry::start();
    let v1 = upstream.push(&archive(&hello()), "app:1", false);
    upstream.push(&archive(&hello_v2()), "app:2", false);
    let front = Front::start("lying_mirror.py", &[upstream.addr.as_ref(), "2".as_ref()]);
    let mirror = &front.addr;
    let conf = Conf::new(&format!(
        "[[registry]]\nlocation = \"{u}\"\ninsecure = true\n[[registry.mirror]]\nlocation = \"{mirror}\"\ninsecure = true\n",
        u = upstream.addr
    ));
    let root = Root::new();
    let (_, err) = ok(&root, &conf, &["pull", &format!("docker://{}/app@{v1}", upstream.addr)]);
    let v2 = fs::read_to_string(upstream.dir.path().join("pushed.digest")).unwrap();
    assert!(
        err.contains(&format!(
            "mirror {mirror}/app: manifest {v1} of {mirror}/app: the registry sent content that hashes to {}; nothing was \
             stored; trying the next source",
            v2.trim()
        )),
        "{err}"
    );
    assert!(err.contains(&format!("Using the primary {}/app (no mirror served it)", upstream.addr)), "{err}");
    let images = root.json(&["images"]);
    assert_eq!(images[0]["digest"], v1, "{images}");
}

/// A registry with a private CA: refused until its CA is given (here `--cert-dir`, the same files
/// as /etc/containers/certs.d/HOST:PORT/), then verified HTTPS; client certificate pairs are
/// refused by name.
#[test]
fn private_ca_from_cert_dir() {
    let reg = Registry::with_tls();
    let digest = reg.push(&archive(&hello()), "app:1", false);
    let conf = Conf::new("");
    let root = Root::new();
    let reference = reg.reference("app:1");
    let err = fails(&root, &conf, &["pull", &reference]);
    assert!(err.contains(&format!("TLS connection to {} failed: ", reg.addr)), "{err}");
    assert!(err.contains(&format!("a private CA goes in /etc/containers/certs.d/{}/ca.crt", reg.addr)), "{err}");
    let ca = reg.ca_dir();
    let j = json(&root, &conf, &["pull", "--cert-dir", ca.to_str().unwrap(), &reference]);
    assert_eq!(j["digest"], digest);
    let info = json(&root, &conf, &["images", "info", &reference]);
    assert_eq!(info["fetched_from"], format!("https://{}/app", reg.addr), "verified HTTPS");
    assert_eq!(info["remembered_tls"], serde_json::Value::Null);
    fs::write(ca.join("client.cert"), "").unwrap();
    let err = fails(&Root::new(), &conf, &["pull", "--cert-dir", ca.to_str().unwrap(), &reference]);
    assert!(
        err.contains(&format!(
            "{}: client certificates (NAME.cert + NAME.key) are not supported by hoist yet",
            ca.join("client.cert").display()
        )),
        "{err}"
    );
}

/// A `--tls-verify=false` that worked is remembered for its reference and shown; once
/// registries.conf says `insecure = true` for the registry, the file decides and nothing is
/// remembered any more.
#[test]
fn remembered_tls_is_visible_and_yields_to_registries_conf() {
    let reg = Registry::start();
    reg.push(&archive(&hello()), "app:1", false);
    let reference = reg.reference("app:1");
    let root = Root::new();
    let empty = Conf::new("");
    json(&root, &empty, &["pull", "--tls-verify=false", &reference]);
    let info = json(&root, &empty, &["images", "info", &reference]);
    assert_eq!(
        info["remembered_tls"],
        "plain HTTP: --tls-verify=false is remembered for this reference (the documented way is insecure = true in \
         registries.conf, which then wins)"
    );
    let (text, _) = ok(&root, &empty, &["images", "info", &reference]);
    assert!(text.contains("TLS:      plain HTTP: --tls-verify=false is remembered"), "{text}");
    // Remembered: a later pull needs no flag.
    assert_eq!(json(&root, &empty, &["pull", &reference])["result"], "unchanged");
    // … for the host it was given for only: relocated elsewhere, TLS is required there.
    let other = Registry::start();
    other.push(&archive(&hello()), "app:1", false);
    let moved = Conf::new(&format!("[[registry]]\nprefix = \"{}/app\"\nlocation = \"{}/app\"\n", reg.addr, other.addr));
    let err = fails(&root, &moved, &["pull", &reference]);
    assert!(err.contains(&format!("TLS connection to {} failed", other.addr)), "{err}");
    let conf = Conf::new(&format!("[[registry]]\nlocation = \"{}\"\ninsecure = true\n", reg.addr));
    // An explicit --tls-verify=true wins over the file.
    let err = fails(&root, &conf, &["pull", "--tls-verify=true", &reference]);
    assert!(err.contains(&format!("TLS connection to {} failed", reg.addr)), "{err}");
    json(&root, &conf, &["pull", &reference]);
    let info = json(&root, &conf, &["images", "info", &reference]);
    assert_eq!(info["remembered_tls"], serde_json::Value::Null, "{info}");
    assert_eq!(info["fetched_from"], format!("http://{}/app", reg.addr));
    // And without the file, TLS is required again: nothing insecure was left behind.
    let err = fails(&root, &empty, &["pull", &reference]);
    assert!(err.contains(&format!("TLS connection to {} failed", reg.addr)), "{err}");
}
