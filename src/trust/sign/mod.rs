//! Writing simple signatures (containers-signature(5)): what `hoist push --sign-by FPR` leaves
//! in the lookaside for the signature policy of every puller (`signedBy`).
//!
//! The payload is the "atomic container signature" JSON — `critical.identity.docker-reference`
//! the pushed `REGISTRY/REPOSITORY:TAG`, `critical.image.docker-manifest-digest` the manifest's
//! digest, `optional.creator` and `optional.timestamp` — signed by `gpg --sign` with the key
//! `FPR` (an OpenPGP message with the payload inside, as skopeo writes through gpgme;
//! `$GNUPGHOME` applies). It is stored as the first free `signature-N` under
//! `BASE/REPOSITORY@sha256=HEX/`, BASE being registries.d's `lookaside-staging`, else its
//! `lookaside` (a `file://` URL: an HTTP lookaside is published by its own server).
//!
//! [`sigstore`] signs with a sigstore private key instead (the registry attachment form).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::digest::Digest;
use crate::imgref::RegistryRef;
use crate::trust::sources::MAX_SIGNATURES;

pub mod sigstore;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("signing {reference} with {key}: {reason}")]
    Gpg { reference: String, key: String, reason: String },
    #[error(
        "signing {reference}: the lookaside {base} is not a file:// URL (hoist writes signatures to files; set lookaside-staging in registries.d)"
    )]
    NotFile { reference: String, base: String },
    #[error("signing {reference}: {}: {reason}", path.display())]
    Write { reference: String, path: PathBuf, reason: String },
}

/// The signature payload for `reference` (with its tag) and `manifest`.
pub fn payload(reference: &str, manifest: &Digest, timestamp: u64) -> Vec<u8> {
    let doc = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": manifest.to_string()},
            "type": "atomic container signature",
        },
        "optional": {"creator": concat!("hoist ", env!("CARGO_PKG_VERSION")), "timestamp": timestamp},
    });
    serde_json::to_vec(&doc).expect("serializes")
}

/// Signs `manifest` as `r` (registry, repository, tag) with `key` and writes the signature
/// under `base` (see the module doc). Returns the file written.
pub fn sign_simple(r: &RegistryRef, manifest: &Digest, key: &str, base: &str) -> Result<PathBuf, SignError> {
    let reference = format!("{}/{}:{}", r.registry, r.repository, r.tag.as_deref().unwrap_or("latest"));
    let dir = match base.strip_prefix("file://") {
        Some(p) if p.starts_with('/') => PathBuf::from(p),
        _ => return Err(SignError::NotFile { reference, base: base.to_string() }),
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let gpg = |reason: String| SignError::Gpg { reference: reference.clone(), key: key.to_string(), reason };
    let mut child = Command::new("gpg")
        .args(["--batch", "--no-tty", "--quiet", "--local-user", key, "--sign"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| gpg(format!("cannot run gpg: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(&payload(&reference, manifest, now))
        .map_err(|e| gpg(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| gpg(e.to_string()))?;
    if !out.status.success() || out.stdout.is_empty() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(gpg(err.lines().last().unwrap_or("gpg failed").trim().to_string()));
    }
    let dir = PathBuf::from(format!("{}@sha256={}", dir.display(), manifest.hex()));
    let write =
        |path: &PathBuf, reason: String| SignError::Write { reference: reference.clone(), path: path.clone(), reason };
    std::fs::create_dir_all(&dir).map_err(|e| write(&dir, e.to_string()))?;
    for n in 1..=MAX_SIGNATURES {
        let path = dir.join(format!("signature-{n}"));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(&out.stdout).and_then(|_| f.sync_all()).map_err(|e| write(&path, e.to_string()))?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(write(&path, e.to_string())),
        }
    }
    Err(write(&dir, format!("already {} signatures", MAX_SIGNATURES)))
}
