//! Keys and signatures for the signature-policy tests, made with the real tools: GnuPG keys in a
//! scratch GNUPGHOME, simple signatures written by `skopeo copy --sign-by` into a `file://`
//! lookaside (containers-registries.d(5)), `skopeo standalone-sign` and `gpg --sign` for blobs
//! skopeo would not write, and sigstore attachments from `tests/kit/` (cosign-format keys from
//! `cosign_key.py`, the attachment from `sigstore_attach.py`, cosign v3 bundles as referrers from
//! `cosign_bundle.py`, a throwaway Fulcio CA and Rekor key from `sigstore_pki.py`: Debian's skopeo
//! 1.9.3 has sigstore signing and verifying patched out).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::have;

fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// A scratch GNUPGHOME. Kept short (under /tmp): gpg-agent's socket lives in it, and socket
/// paths are limited to 108 bytes. The agent it starts is stopped on drop.
pub struct Gpg {
    pub dir: tempfile::TempDir,
}

/// A key made by [`Gpg::key`]: its fingerprint (40 hex digits, upper case) and its public key,
/// exported (binary) to `public`.
#[derive(Clone, Debug)]
pub struct Key {
    pub fpr: String,
    pub public: PathBuf,
}

impl Key {
    /// The exported public key, base64 (`keyData`).
    pub fn data(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(fs::read(&self.public).unwrap())
    }
}

impl Gpg {
    pub fn new() -> Self {
        assert!(have("gpg"), "gpg is needed for the signature tests (make test installs gnupg)");
        let dir = tempfile::Builder::new().prefix("hoist-gpg-").tempdir_in("/tmp").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        Gpg { dir }
    }

    /// A GnuPG home whose clock is set back (`faked-system-time` in its gpg.conf, read by every
    /// gpg that gpgme or skopeo start there): a key made in it with a short expiry was valid when
    /// it signed and is expired by the time anyone verifies.
    pub fn in_the_past(when: &str) -> Self {
        let g = Self::new();
        fs::write(g.home().join("gpg.conf"), format!("faked-system-time {when}\n")).unwrap();
        g
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// `prog` with GNUPGHOME set to this home.
    pub fn command(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.env("GNUPGHOME", self.home());
        c
    }

    /// A new ed25519 signing key without passphrase, expiring after `expiry` (`never`, `1d`, …);
    /// its public key is exported to `out/<name>.gpg`.
    pub fn key(&self, name: &str, expiry: &str, out: &Path) -> Key {
        let uid = format!("hoist test key {name} <{name}@hoist.invalid>");
        let mut c = self.command("gpg");
        c.args(["--batch", "--passphrase", "", "--quick-gen-key", &uid, "ed25519", "sign", expiry]);
        run(c, "gpg --quick-gen-key");
        let mut c = self.command("gpg");
        c.args(["--batch", "--with-colons", "--list-keys", &uid]);
        let listing = String::from_utf8(run(c, "gpg --list-keys").stdout).unwrap();
        let fpr = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:").map(|r| r.trim_matches(':').to_string()))
            .expect("a fingerprint");
        assert_eq!(fpr.len(), 40, "{listing}");
        let public = out.join(format!("{name}.gpg"));
        let mut c = self.command("gpg");
        c.arg("--batch").arg("--output").arg(&public).args(["--export", &fpr]);
        run(c, "gpg --export");
        Key { fpr, public }
    }

    /// One OpenPGP signed message over `payload` carrying a signature by each of `keys`
    /// (`gpg -u A -u B --sign`): what containers-signature(5) forbids.
    pub fn sign_by_all(&self, payload: &[u8], keys: &[&Key], scratch: &Path) -> Vec<u8> {
        let input = scratch.join("payload");
        let output = scratch.join("payload.gpg");
        fs::write(&input, payload).unwrap();
        let _ = fs::remove_file(&output);
        let mut c = self.command("gpg");
        c.args(["--batch", "--yes"]);
        for k in keys {
            c.args(["--local-user", &k.fpr]);
        }
        c.arg("--output").arg(&output).arg("--sign").arg(&input);
        run(c, "gpg --sign");
        fs::read(&output).unwrap()
    }

    /// The payload of a signed message (`gpg --decrypt`; the key must be in this home).
    pub fn payload(&self, signed: &Path) -> Vec<u8> {
        let mut c = self.command("gpg");
        c.args(["--batch", "--quiet", "--decrypt"]).arg(signed);
        run(c, "gpg --decrypt").stdout
    }

    /// `skopeo standalone-sign MANIFEST REFERENCE FPR`: a simple signature claiming `reference`
    /// for the digest of `manifest`.
    pub fn standalone_sign(&self, manifest: &Path, reference: &str, key: &Key, out: &Path) -> Vec<u8> {
        let mut c = self.command("skopeo");
        c.arg("standalone-sign").arg(manifest).arg(reference).arg(&key.fpr).arg("-o").arg(out);
        run(c, "skopeo standalone-sign");
        fs::read(out).unwrap()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = self.command("gpgconf").args(["--kill", "gpg-agent"]).output();
    }
}

/// A registries.d directory (containers-registries.d(5)) for `addr`: simple signatures in the
/// `file://` lookaside `lookaside` (read and written), sigstore attachments switched on.
pub fn registries_d(dir: &Path, addr: &str, lookaside: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    fs::create_dir_all(lookaside).unwrap();
    fs::write(
        dir.join("hoist-test.yaml"),
        format!(
            "docker:\n  {addr}:\n    lookaside: file://{}\n    use-sigstore-attachments: true\n",
            lookaside.display()
        ),
    )
    .unwrap();
    dir.to_path_buf()
}

/// Where a lookaside keeps signature `n` (1-based) of `repo` (path in the registry, no host) at
/// manifest `digest`.
pub fn lookaside_file(lookaside: &Path, repo: &str, digest: &str, n: usize) -> PathBuf {
    lookaside.join(format!("{repo}@{}", digest.replacen(':', "=", 1))).join(format!("signature-{n}"))
}

/// `skopeo copy --insecure-policy --{src,dest}-tls-verify=false --registries.d RD [extra] SOURCE
/// DEST` with the GNUPGHOME of `gpg` (for `--sign-by`); returns the digest of the manifest
/// written. A docker:// source keeps its signatures (they are read through RD too), so copying an
/// image onto itself with `--sign-by` adds one.
pub fn skopeo_copy(gpg: &Gpg, registries_d: &Path, source: &str, dest: &str, extra: &[&str], scratch: &Path) -> String {
    let digest_file = scratch.join(format!("digest-{}", std::process::id()));
    let mut c = gpg.command("skopeo");
    c.args(["copy", "-q", "--insecure-policy", "--src-tls-verify=false", "--dest-tls-verify=false", "--registries.d"])
        .arg(registries_d)
        .arg("--digestfile")
        .arg(&digest_file)
        .args(extra)
        .arg(source)
        .arg(dest);
    run(c, &format!("skopeo copy {source} {dest} {extra:?}"));
    fs::read_to_string(&digest_file).unwrap().trim().to_string()
}

pub fn kit(script: &str) -> PathBuf {
    let p = super::repo().join("tests/kit").join(script);
    assert!(p.exists(), "{} is missing: the sigstore rows of the trust matrix need it", p.display());
    p
}

/// A cosign-format key pair (`tests/kit/cosign_key.py OUTDIR PASSPHRASE`): `OUTDIR/cosign.key`,
/// `OUTDIR/cosign.pub`. Returns the public key's path and fingerprint (`SHA256:<hex>` of the
/// SubjectPublicKeyInfo DER) as the script prints it.
pub fn cosign_key(out: &Path, passphrase: &str) -> (PathBuf, String) {
    fs::create_dir_all(out).unwrap();
    let mut c = Command::new("python3");
    c.arg(kit("cosign_key.py")).arg(out).arg(passphrase);
    let o = run(c, "tests/kit/cosign_key.py (needs `python3 -m pip install pynacl`)");
    let fpr = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert!(fpr.starts_with("SHA256:") && fpr.len() == 7 + 64, "cosign_key.py printed {fpr:?}");
    (out.join("cosign.pub"), fpr)
}

/// Who signs a kit signature: a cosign-format key (`cosign_key`'s OUTDIR and passphrase), or a
/// fresh key certified by the throwaway Fulcio CA of [`sigstore_pki`] for an e-mail and issuer.
pub enum KitSigner {
    Key(PathBuf, String),
    Fulcio {
        pki: PathBuf,
        email: String,
        issuer: String,
    },
    /// A day-long certificate of the ordinary PKI (`pki-*` files) for an e-mail and a host name.
    Pki {
        pki: PathBuf,
        email: String,
        hostname: String,
    },
}

impl KitSigner {
    fn args(&self, c: &mut Command) {
        match self {
            KitSigner::Key(dir, pass) => c.arg("--key").arg(dir).arg(pass),
            KitSigner::Fulcio { pki, email, issuer } => c.arg("--fulcio").arg(pki).arg(email).arg(issuer),
            KitSigner::Pki { pki, email, hostname } => c.arg("--pki").arg(pki).arg(email).arg(hostname),
        };
    }
}

/// A throwaway sigstore (`tests/kit/sigstore_pki.py OUTDIR`): `fulcio-root.pem`, `fulcio-ca.pem`
/// (intermediate + root), `other-root.pem`, `other-ca.pem`, `pki-root.pem`, `pki-intermediate.pem`,
/// `rekor.pub`, `rekor-other.pub`.
pub fn sigstore_pki(out: &Path) {
    let mut c = Command::new("python3");
    c.arg(kit("sigstore_pki.py")).arg(out);
    run(c, "tests/kit/sigstore_pki.py");
}

/// Attaches a sigstore signature (`tests/kit/sigstore_attach.py`) to `repo@digest` in the
/// registry at `addr`, claiming `identity`; `extra`: `--signed-digest D`, `--rekor DIR`,
/// `--logged-after SECONDS`.
pub fn sigstore_attach(addr: &str, repo: &str, digest: &str, identity: &str, signer: &KitSigner, extra: &[&str]) {
    let mut c = Command::new("python3");
    c.arg(kit("sigstore_attach.py")).args([addr, repo, digest, identity]);
    signer.args(&mut c);
    c.args(extra);
    run(c, &format!("tests/kit/sigstore_attach.py {repo} {extra:?}"));
}

/// Signs `repo@digest` as cosign v3 does and attaches the bundle as a referrer
/// (`tests/kit/cosign_bundle.py`); `extra`: `--rekor DIR`, `--signed-digest D`,
/// `--predicate-type T`, …. Returns the referrer manifest's digest.
pub fn cosign_bundle(addr: &str, repo: &str, digest: &str, signer: &KitSigner, extra: &[&str]) -> String {
    let mut c = Command::new("python3");
    c.arg(kit("cosign_bundle.py")).args([addr, repo, digest]);
    signer.args(&mut c);
    c.args(extra);
    let o = run(c, &format!("tests/kit/cosign_bundle.py {repo} {extra:?}"));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}
