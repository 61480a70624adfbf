//! Sigstore signing with a private key: what `hoist push --sign-by-sigstore-key FILE` attaches
//! to an image for the `sigstoreSigned` requirement of every puller's policy (the writer's side
//! of [`crate::trust::cosign`]).
//!
//! **The key file** is one PEM block, either
//! - cosign's encrypted format (`ENCRYPTED SIGSTORE PRIVATE KEY`, or the older
//!   `ENCRYPTED COSIGN PRIVATE KEY`), as `cosign generate-key-pair` and
//!   `skopeo generate-sigstore-key` write it: the block is a JSON document
//!   `{"kdf": {"name": "scrypt", "params": {"N", "r", "p"}, "salt": B64},
//!     "cipher": {"name": "nacl/secretbox", "nonce": B64}, "ciphertext": B64}`;
//!   the secretbox key is scrypt(passphrase, salt, N, r, p) (32 bytes) and the box holds the
//!   PKCS#8 DER of the private key;
//! - or an unencrypted `PRIVATE KEY` (PKCS#8) or `EC PRIVATE KEY` (SEC1), as openssl writes them.
//!
//! The key must be ECDSA P-256 (what cosign generates). The passphrase of an encrypted key is
//! the first line of `--sign-passphrase-file`, or is asked for on the terminal.
//!
//! **The signature** is containers-signature(5)'s sigstore form: the payload
//! `{"critical": {"identity": {"docker-reference": R}, "image": {"docker-manifest-digest": D},
//! "type": "cosign container image signature"}, "optional": {"creator", "timestamp"}}`, signed
//! with ECDSA/SHA-256, the DER signature base64 in the `dev.cosignproject.cosign/signature`
//! annotation. Where it goes (the `sha256-<hex>.sig` attachment) is the registry's business:
//! [`crate::fetch::registry`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};

use crate::digest::Digest;
use crate::trust::cosign::{SIGNATURE_ANNOTATION, fingerprint};

/// scrypt's cost, bounded: cosign writes N = 2^15; a file asking for far more is refused rather
/// than allowed to take the machine's memory (128·r·N bytes).
const MAX_SCRYPT_LOG_N: u8 = 20;

#[derive(Debug, thiserror::Error)]
pub enum SigstoreKeyError {
    #[error("sigstore key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error(
        "sigstore key {} is encrypted: give its passphrase with --sign-passphrase-file FILE (or run on a terminal)",
        path.display()
    )]
    NeedsPassphrase { path: PathBuf },
    #[error("sigstore key {}: wrong passphrase (the key does not decrypt)", path.display())]
    WrongPassphrase { path: PathBuf },
    #[error("passphrase file {}: {reason}", path.display())]
    PassphraseFile { path: PathBuf, reason: String },
}

/// A private key ready to sign, with the fingerprint its public key has in a policy's report.
pub struct SigstoreKey {
    key: SigningKey,
    /// `SHA256:<hex of the SubjectPublicKeyInfo DER>`.
    pub fingerprint: String,
}

/// Where the passphrase of an encrypted key comes from.
pub enum Passphrase<'a> {
    File(&'a Path),
    /// Asked on the terminal when the key is encrypted (an error without one).
    Prompt,
}

#[derive(serde::Deserialize)]
struct Encrypted {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(serde::Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(serde::Deserialize)]
#[allow(non_snake_case)]
struct KdfParams {
    N: u64,
    r: u32,
    p: u32,
}

#[derive(serde::Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

impl SigstoreKey {
    /// Reads and, if it is encrypted, decrypts the key at `path`.
    pub fn load(path: &Path, passphrase: Passphrase<'_>) -> Result<Self, SigstoreKeyError> {
        let bad = |reason: String| SigstoreKeyError::Key { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let (label, body) =
            pem_rfc7468::decode_vec(text.trim().as_bytes()).map_err(|e| bad(format!("not PEM: {e}")))?;
        let key = match label {
            "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY" => {
                let pass = match passphrase {
                    Passphrase::File(f) => read_passphrase_file(f)?,
                    Passphrase::Prompt => prompt(path)?,
                };
                let der = decrypt(path, &body, pass.as_bytes())?;
                SigningKey::from_pkcs8_der(&der).map_err(|e| bad(not_p256(e)))?
            }
            "PRIVATE KEY" => SigningKey::from_pkcs8_der(&body).map_err(|e| bad(not_p256(e)))?,
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&body)
                .map(SigningKey::from)
                .map_err(|e| bad(format!("not a P-256 EC key: {e}")))?,
            other => return Err(bad(format!("a PEM block {other:?} is not a private key"))),
        };
        let spki = key.verifying_key().to_public_key_der().map_err(|e| bad(e.to_string()))?;
        Ok(SigstoreKey { fingerprint: fingerprint(spki.as_bytes()), key })
    }

    /// The sigstore payload for `reference` (`REGISTRY/REPOSITORY:TAG`) and `manifest`, and the
    /// annotations of its attachment layer.
    pub fn sign(&self, reference: &str, manifest: &Digest, timestamp: u64) -> (Vec<u8>, BTreeMap<String, String>) {
        use p256::ecdsa::signature::Signer;
        let doc = serde_json::json!({
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": manifest.to_string()},
                "type": "cosign container image signature",
            },
            "optional": {"creator": concat!("hoist ", env!("CARGO_PKG_VERSION")), "timestamp": timestamp},
        });
        let payload = serde_json::to_vec(&doc).expect("serializes");
        let sig: p256::ecdsa::Signature = self.key.sign(&payload);
        let b64 = base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes());
        (payload, BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), b64)]))
    }
}

fn not_p256(e: impl std::fmt::Display) -> String {
    format!("not an ECDSA P-256 private key (what cosign generates): {e}")
}

/// Opens cosign's encrypted document (see the module doc) with `pass`.
fn decrypt(path: &Path, body: &[u8], pass: &[u8]) -> Result<Vec<u8>, SigstoreKeyError> {
    use crypto_secretbox::aead::{Aead, KeyInit};
    let bad = |reason: String| SigstoreKeyError::Key { path: path.to_path_buf(), reason };
    let doc: Encrypted =
        serde_json::from_slice(body).map_err(|e| bad(format!("not cosign's encrypted key document: {e}")))?;
    if doc.kdf.name != "scrypt" || doc.cipher.name != "nacl/secretbox" {
        return Err(bad(format!(
            "unsupported encryption {} + {} (cosign uses scrypt + nacl/secretbox)",
            doc.kdf.name, doc.cipher.name
        )));
    }
    let b64 = |what: &str, s: &str| {
        base64::engine::general_purpose::STANDARD.decode(s).map_err(|_| bad(format!("{what} is not base64")))
    };
    let (salt, nonce, sealed) =
        (b64("kdf.salt", &doc.kdf.salt)?, b64("cipher.nonce", &doc.cipher.nonce)?, b64("ciphertext", &doc.ciphertext)?);
    let KdfParams { N: n, r, p } = doc.kdf.params;
    let log_n = match n {
        n if n.is_power_of_two() && n > 1 && n.trailing_zeros() <= MAX_SCRYPT_LOG_N as u32 => n.trailing_zeros() as u8,
        _ => return Err(bad(format!("scrypt N = {n} (a power of two up to 2^{MAX_SCRYPT_LOG_N} expected)"))),
    };
    if r == 0 || p == 0 || u64::from(r) * u64::from(p) > 64 {
        return Err(bad(format!("scrypt r = {r}, p = {p} out of range")));
    }
    let params = scrypt::Params::new(log_n, r, p, 32).map_err(|e| bad(format!("scrypt parameters: {e}")))?;
    let mut box_key = [0u8; 32];
    scrypt::scrypt(pass, &salt, &params, &mut box_key).map_err(|e| bad(format!("scrypt: {e}")))?;
    if nonce.len() != 24 {
        return Err(bad(format!("cipher.nonce has {} bytes, not 24", nonce.len())));
    }
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&box_key.into());
    cipher
        .decrypt(crypto_secretbox::Nonce::from_slice(&nonce), sealed.as_slice())
        .map_err(|_| SigstoreKeyError::WrongPassphrase { path: path.to_path_buf() })
}

/// The first line of `path`, as skopeo's `--sign-passphrase-file` reads it.
fn read_passphrase_file(path: &Path) -> Result<String, SigstoreKeyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SigstoreKeyError::PassphraseFile { path: path.to_path_buf(), reason: e.to_string() })?;
    Ok(text.lines().next().unwrap_or("").trim_end_matches('\r').to_string())
}

/// Asks for the passphrase of `key` on the terminal, without echo.
fn prompt(key: &Path) -> Result<String, SigstoreKeyError> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    let Ok(saved) = tcgetattr(&stdin) else {
        return Err(SigstoreKeyError::NeedsPassphrase { path: key.to_path_buf() });
    };
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    let _ = write!(std::io::stderr(), "Passphrase for {}: ", key.display());
    let _ = tcsetattr(&stdin, OptionalActions::Flush, &quiet);
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, OptionalActions::Flush, &saved);
    let _ = writeln!(std::io::stderr());
    read.map_err(|e| SigstoreKeyError::PassphraseFile { path: PathBuf::from("/dev/tty"), reason: e.to_string() })?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_the_public_key_and_names_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let pem = p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&secret, Default::default()).unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, pem.as_bytes()).unwrap();
        let key = SigstoreKey::load(&path, Passphrase::Prompt).unwrap();
        let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let (payload, ann) = key.sign("reg.example/app:1", &digest, 5);
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["critical"]["identity"]["docker-reference"], "reg.example/app:1");
        assert_eq!(v["critical"]["image"]["docker-manifest-digest"], digest.to_string());
        assert_eq!(v["critical"]["type"], "cosign container image signature");
        let sig = base64::engine::general_purpose::STANDARD.decode(&ann[SIGNATURE_ANNOTATION]).unwrap();
        let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
        use p256::ecdsa::signature::Verifier;
        assert!(key.key.verifying_key().verify(&payload, &sig).is_ok());
    }

    #[test]
    fn refusals_name_the_key_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").unwrap();
        let e = SigstoreKey::load(&path, Passphrase::Prompt).err().unwrap().to_string();
        assert_eq!(e, format!("sigstore key {}: a PEM block \"PUBLIC KEY\" is not a private key", path.display()));
        let doc = serde_json::json!({"kdf": {"name": "scrypt", "params": {"N": 1u64 << 30, "r": 8, "p": 1}, "salt": ""},
            "cipher": {"name": "nacl/secretbox", "nonce": ""}, "ciphertext": ""});
        let e = decrypt(&path, doc.to_string().as_bytes(), b"x").err().unwrap().to_string();
        assert!(e.ends_with("scrypt N = 1073741824 (a power of two up to 2^20 expected)"), "{e}");
    }
}
