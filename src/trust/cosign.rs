//! Sigstore ("cosign") signatures: the cryptography of a `sigstoreSigned` requirement, with the
//! semantics of containers/image (`signature/policy_eval_sigstore.go` and friends).
//!
//! A signature is one layer of the `sha256-<hex>.sig` attachment manifest: the layer blob is the
//! payload (JSON, parsed by [`super::payload`] *after* this module verified it) and the layer's
//! annotations carry the rest:
//! - `dev.cosignproject.cosign/signature`: base64 of the signature over the payload bytes
//!   (ECDSA over SHA-256, DER or fixed-size `r‖s`; RSA PKCS#1 v1.5 over SHA-256; Ed25519),
//! - `dev.sigstore.cosign/bundle`: a Rekor "SET" (signed entry timestamp) proving the signature
//!   was logged, checked offline with the Rekor public key,
//! - `dev.sigstore.cosign/certificate` (+ `dev.sigstore.cosign/chain`): a Fulcio certificate.
//!
//! Entry points, one per shape of requirement:
//! - [`verify_with_keys`]: `keyPath(s)`/`keyData(s)` without `rekorPublicKey*`,
//! - [`verify_with_keys_and_rekor`]: keys plus `rekorPublicKey*` (the SET must name one of the keys),
//! - [`verify_fulcio`]: `fulcio` plus `rekorPublicKey*` (mandatory there).
//!
//! [`verify_rekor_set`] is the SET check alone; it does not say who signed (the caller must match
//! [`RekorEntry::signer_der`]), so only the three functions above accept a signature.
//!
//! Keys are passed as `(label, bytes)`: the label (the file's path, or `keyData`/`keyDatas[2]`
//! for inline data) only names the key in messages. As in containers/image, every key must parse
//! before any is tried, so a broken fallback key is found before it is needed.

use std::collections::BTreeMap;

use base64::Engine as _;
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use p256::pkcs8::der::{Decode as _, Encode as _};
use p256::pkcs8::spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use serde::Deserialize;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use x509_cert::Certificate;

mod certificates;
mod rekor;

pub use certificates::{PkiTrust, verify_fulcio, verify_pki};
pub use rekor::verify_rekor_set;
pub(crate) use rekor::{SetPayload, verify_set};

/// The signature over the payload, base64.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The Rekor SET (`{"SignedEntryTimestamp":…,"Payload":{…}}`).
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// The signing certificate (PEM).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Intermediate certificates (PEM), the root last (the last one is ignored, as upstream).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// The layer media type of a signature in a `.sig` attachment manifest.
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// The key that made a verified signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsed {
    /// `SHA256:<hex of sha256 of the SubjectPublicKeyInfo DER>`.
    pub fingerprint: String,
}

/// What a Rekor SET vouches for, after its signature and its body were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RekorEntry {
    /// When Rekor logged the entry (seconds since the epoch).
    pub integrated_time: i64,
    pub log_index: i64,
    /// Hex of the log's key ID.
    pub log_id: String,
    /// DER of the public key (SubjectPublicKeyInfo) or certificate the log entry names as the
    /// signer; [`verify_rekor_set`]'s callers must compare it with the key they trust.
    pub signer_der: Vec<u8>,
}

/// A signature accepted through a Fulcio certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FulcioIdentity {
    /// The certificate's key (`SHA256:` of its SubjectPublicKeyInfo).
    pub key: KeyUsed,
    /// The required e-mail address, found among the certificate's SAN e-mail addresses.
    pub subject_email: String,
    pub oidc_issuer: String,
    /// The SET that fixed the time at which the certificate was checked.
    pub rekor: RekorEntry,
}

#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    #[error("no {SIGNATURE_ANNOTATION} annotation")]
    MissingSignature,
    #[error("{SIGNATURE_ANNOTATION} annotation is not valid base64")]
    BadBase64,
    #[error("no trusted keys given")]
    NoKeys,
    #[error("key file {label}: not a PEM public key")]
    NotAPublicKey { label: String },
    #[error("key file {label}: {reason}")]
    BadKey { label: String, reason: String },
    #[error("key file {label}: unsupported key type {what}")]
    UnsupportedKeyType { label: String, what: String },
    #[error("signature does not verify with any of the {n} trusted key(s) ({fingerprints})")]
    NoKeyVerifies { n: usize, fingerprints: String },
    #[error("no {BUNDLE_ANNOTATION} annotation (a Rekor SET is required)")]
    MissingBundle,
    #[error("rekor key file {label}: {reason}")]
    BadRekorKey { label: String, reason: String },
    #[error("rekor SET: {0}")]
    Rekor(String),
    #[error("no {CERTIFICATE_ANNOTATION} annotation")]
    MissingCertificate,
    #[error("fulcio: {0}")]
    Fulcio(String),
    #[error("pki: {0}")]
    Pki(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
}

// ---------------------------------------------------------------------------------------------
// Public keys

/// A public key of a supported type, with its fingerprint.
#[derive(Clone)]
struct Key {
    label: String,
    spki_der: Vec<u8>,
    fingerprint: String,
    kind: KeyKind,
}

#[derive(Clone)]
enum KeyKind {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");

pub(crate) fn fingerprint(spki_der: &[u8]) -> String {
    format!("SHA256:{}", hex::encode(Sha256::digest(spki_der)))
}

/// Parses a DER SubjectPublicKeyInfo. `Err(Ok(what))` is an unsupported type, `Err(Err(why))`
/// a broken key.
fn key_from_spki(label: &str, der: &[u8]) -> Result<Key, Result<String, String>> {
    let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(|e| Err(format!("bad SubjectPublicKeyInfo: {e}")))?;
    let alg = spki.algorithm.oid;
    let curve = || spki.algorithm.parameters.and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    let kind = if alg == OID_EC_PUBLIC_KEY {
        match curve() {
            Some(c) if c == OID_P256 => KeyKind::P256(
                p256::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
                    .map_err(|e| Err(format!("bad P-256 key: {e}")))?,
            ),
            Some(c) if c == OID_P384 => KeyKind::P384(
                p384::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
                    .map_err(|e| Err(format!("bad P-384 key: {e}")))?,
            ),
            Some(c) if c == OID_P521 => return Err(Ok("ECDSA P-521".into())),
            Some(c) => return Err(Ok(format!("ECDSA on curve {c}"))),
            None => return Err(Err("ECDSA key without a named curve".into())),
        }
    } else if alg == OID_ED25519 {
        KeyKind::Ed25519(
            ed25519_dalek::VerifyingKey::from_public_key_der(der).map_err(|e| Err(format!("bad Ed25519 key: {e}")))?,
        )
    } else if alg == OID_RSA {
        use rsa::pkcs8::DecodePublicKey as _;
        let k = rsa::RsaPublicKey::from_public_key_der(der).map_err(|e| Err(format!("bad RSA key: {e}")))?;
        KeyKind::Rsa(k)
    } else if alg == OID_ED448 {
        return Err(Ok("Ed448".into()));
    } else {
        return Err(Ok(format!("with algorithm {alg}")));
    };
    Ok(Key { label: label.to_string(), spki_der: der.to_vec(), fingerprint: fingerprint(der), kind })
}

/// Parses a trusted key file: the first PEM block, `PUBLIC KEY` (PKIX) or `RSA PUBLIC KEY`
/// (PKCS#1), as containers/image does.
fn parse_key_file(label: &str, data: &[u8]) -> Result<Key, CosignError> {
    let not_key = || CosignError::NotAPublicKey { label: label.to_string() };
    let (block, _) = next_pem(data).map_err(|_| not_key())?.ok_or_else(not_key)?;
    let der = match block.label.as_str() {
        "PUBLIC KEY" => block.der,
        "RSA PUBLIC KEY" => {
            use rsa::pkcs1::DecodeRsaPublicKey as _;
            use rsa::pkcs8::EncodePublicKey as _;
            let k = rsa::RsaPublicKey::from_pkcs1_der(&block.der)
                .map_err(|e| CosignError::BadKey { label: label.into(), reason: format!("bad RSA key: {e}") })?;
            k.to_public_key_der()
                .map_err(|e| CosignError::BadKey { label: label.into(), reason: e.to_string() })?
                .as_bytes()
                .to_vec()
        }
        _ => return Err(not_key()),
    };
    key_from_spki(label, &der).map_err(|e| match e {
        Ok(what) => CosignError::UnsupportedKeyType { label: label.into(), what },
        Err(reason) => CosignError::BadKey { label: label.into(), reason },
    })
}

fn parse_keys(keys: &[(String, Vec<u8>)]) -> Result<Vec<Key>, CosignError> {
    if keys.is_empty() {
        return Err(CosignError::NoKeys);
    }
    keys.iter().map(|(label, data)| parse_key_file(label, data)).collect()
}

/// ECDSA signature bytes: DER, or (when that does not parse) fixed-size `r‖s`, as sigstore's
/// verifier accepts both.
macro_rules! ecdsa_sig {
    ($curve:ident, $sig:expr) => {
        $curve::ecdsa::Signature::from_der($sig).ok().or_else(|| $curve::ecdsa::Signature::from_slice($sig).ok())
    };
}

impl Key {
    /// Verifies `sig` over `msg` the way cosign does: SHA-256 for ECDSA (any curve) and RSA,
    /// pure Ed25519.
    fn verify_message(&self, msg: &[u8], sig: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        let digest = Sha256::digest(msg);
        match &self.kind {
            KeyKind::P256(k) => ecdsa_sig!(p256, sig).is_some_and(|s| k.verify_prehash(&digest, &s).is_ok()),
            KeyKind::P384(k) => ecdsa_sig!(p384, sig).is_some_and(|s| k.verify_prehash(&digest, &s).is_ok()),
            KeyKind::Ed25519(k) => ed25519_dalek::Signature::from_slice(sig).is_ok_and(|s| k.verify(msg, &s).is_ok()),
            KeyKind::Rsa(k) => rsa::Pkcs1v15Sign::new::<Sha256>().pipe(|scheme| k.verify(scheme, &digest, sig).is_ok()),
        }
    }

    /// Verifies a certificate's (or SET's) signature made with algorithm `alg` over `tbs`.
    /// ECDSA signatures here are DER only (as Go's x509 and `ecdsa.VerifyASN1`).
    fn verify_with_alg(&self, alg: ObjectIdentifier, tbs: &[u8], sig: &[u8]) -> Result<(), String> {
        use p256::ecdsa::signature::Verifier as _;
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        let hash = |h: HashAlg| match h {
            HashAlg::Sha256 => Sha256::digest(tbs).to_vec(),
            HashAlg::Sha384 => Sha384::digest(tbs).to_vec(),
            HashAlg::Sha512 => Sha512::digest(tbs).to_vec(),
        };
        let ok = match (sig_alg(alg), &self.kind) {
            (Some(SigAlg::Ecdsa(h)), KeyKind::P256(k)) => {
                p256::ecdsa::Signature::from_der(sig).is_ok_and(|s| k.verify_prehash(&hash(h), &s).is_ok())
            }
            (Some(SigAlg::Ecdsa(h)), KeyKind::P384(k)) => {
                p384::ecdsa::Signature::from_der(sig).is_ok_and(|s| k.verify_prehash(&hash(h), &s).is_ok())
            }
            (Some(SigAlg::Rsa(h)), KeyKind::Rsa(k)) => {
                let scheme = match h {
                    HashAlg::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
                    HashAlg::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
                    HashAlg::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
                };
                k.verify(scheme, &hash(h), sig).is_ok()
            }
            (Some(SigAlg::Ed25519), KeyKind::Ed25519(k)) => {
                ed25519_dalek::Signature::from_slice(sig).is_ok_and(|s| k.verify(tbs, &s).is_ok())
            }
            (None, _) => return Err(format!("unsupported signature algorithm {alg}")),
            _ => return Err(format!("signature algorithm {alg} does not fit the issuer's key")),
        };
        if ok { Ok(()) } else { Err("signature does not verify".into()) }
    }
}

/// `x.pipe(f)` = `f(x)`, to keep one-expression match arms.
trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}
impl<T> Pipe for T {}

#[derive(Clone, Copy)]
enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}
enum SigAlg {
    Ecdsa(HashAlg),
    Rsa(HashAlg),
    Ed25519,
}
fn sig_alg(oid: ObjectIdentifier) -> Option<SigAlg> {
    Some(match oid.to_string().as_str() {
        "1.2.840.10045.4.3.2" => SigAlg::Ecdsa(HashAlg::Sha256),
        "1.2.840.10045.4.3.3" => SigAlg::Ecdsa(HashAlg::Sha384),
        "1.2.840.10045.4.3.4" => SigAlg::Ecdsa(HashAlg::Sha512),
        "1.2.840.113549.1.1.11" => SigAlg::Rsa(HashAlg::Sha256),
        "1.2.840.113549.1.1.12" => SigAlg::Rsa(HashAlg::Sha384),
        "1.2.840.113549.1.1.13" => SigAlg::Rsa(HashAlg::Sha512),
        "1.3.101.112" => SigAlg::Ed25519,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// The signature annotation and key-based verification

/// Standard base64 as Go's `base64.StdEncoding` reads it (padding required; CR and LF ignored).
fn b64(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn signature_bytes(annotations: &BTreeMap<String, String>) -> Result<Vec<u8>, CosignError> {
    let s = annotations.get(SIGNATURE_ANNOTATION).ok_or(CosignError::MissingSignature)?;
    b64(s).ok_or(CosignError::BadBase64)
}

fn verify_payload(payload: &[u8], sig: &[u8], keys: &[&Key]) -> Result<KeyUsed, CosignError> {
    for k in keys {
        if k.verify_message(payload, sig) {
            return Ok(KeyUsed { fingerprint: k.fingerprint.clone() });
        }
    }
    Err(CosignError::NoKeyVerifies {
        n: keys.len(),
        fingerprints: keys.iter().map(|k| format!("{} {}", k.label, k.fingerprint)).collect::<Vec<_>>().join(", "),
    })
}

/// Verifies that the signature annotation is a signature over `payload` by one of `keys`
/// (`(label, PEM file contents)`). Only the cryptography: the caller parses the payload after.
pub fn verify_with_keys(
    payload: &[u8],
    annotations: &BTreeMap<String, String>,
    keys: &[(String, Vec<u8>)],
) -> Result<KeyUsed, CosignError> {
    let keys = parse_keys(keys)?;
    let sig = signature_bytes(annotations)?;
    verify_payload(payload, &sig, &keys.iter().collect::<Vec<_>>())
}

/// Keys plus `rekorPublicKey*`: the SET must verify with a Rekor key, name this signature and
/// payload and one of `keys`; the signature must then verify with that key.
pub fn verify_with_keys_and_rekor(
    payload: &[u8],
    annotations: &BTreeMap<String, String>,
    keys: &[(String, Vec<u8>)],
    rekor_keys: &[(String, Vec<u8>)],
) -> Result<(KeyUsed, RekorEntry), CosignError> {
    let keys = parse_keys(keys)?;
    let entry = verify_rekor_set(payload, annotations, rekor_keys)?;
    let key = keys.iter().find(|k| k.spki_der == entry.signer_der).ok_or_else(|| {
        CosignError::Rekor(format!(
            "the logged public key is none of the {} trusted key(s) ({})",
            keys.len(),
            keys.iter().map(|k| format!("{} {}", k.label, k.fingerprint)).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let sig = signature_bytes(annotations)?;
    Ok((verify_payload(payload, &sig, &[key])?, entry))
}

/// A verified signer, with what a transparency log entry must name for it.
pub(crate) struct Signer {
    pub used: KeyUsed,
    /// DER of the SubjectPublicKeyInfo (keys) or of the certificate (Fulcio).
    logged_der: Vec<u8>,
}

impl Signer {
    /// True when `pem` (as a log entry records the verifier) is this signer's key or certificate.
    pub fn is_pem(&self, pem: &[u8]) -> bool {
        single_pem(pem).is_ok_and(|b| b.der == self.logged_der)
    }
}

/// Verifies `sig` over `msg` with one of `keys` (PEM files, as for [`verify_with_keys`]).
pub(crate) fn verify_message(msg: &[u8], sig: &[u8], keys: &[(String, Vec<u8>)]) -> Result<Signer, CosignError> {
    let keys = parse_keys(keys)?;
    let used = verify_payload(msg, sig, &keys.iter().collect::<Vec<_>>())?;
    let logged_der =
        keys.iter().find(|k| k.fingerprint == used.fingerprint).map(|k| k.spki_der.clone()).unwrap_or_default();
    Ok(Signer { used, logged_der })
}

/// Verifies `sig` over `msg` with the key of the Fulcio certificate `cert_der`, checked against
/// `ca` at time `at` as [`verify_fulcio`] does.
pub(crate) fn verify_message_with_certificate(
    msg: &[u8],
    sig: &[u8],
    cert_der: &[u8],
    ca: &[Vec<u8>],
    oidc_issuer: &str,
    subject_email: &str,
    at: i64,
) -> Result<Signer, CosignError> {
    let leaf = Certificate::from_der(cert_der).map_err(|e| CosignError::Fulcio(format!("bad certificate: {e}")))?;
    let key = certificates::fulcio_key(&leaf, &[], ca, oidc_issuer, subject_email, at)?;
    let used = verify_payload(msg, sig, &[&key])?;
    Ok(Signer { used, logged_der: cert_der.to_vec() })
}

/// Verifies `sig` over `msg` with the key of the certificate `cert_der`, checked against a `pki`
/// requirement now (see [`certificates::pki_key`]); `chain` is the signature's own chain.
pub(crate) fn verify_message_with_pki(
    msg: &[u8],
    sig: &[u8],
    cert_der: &[u8],
    chain: &[Certificate],
    trust: &PkiTrust,
) -> Result<Signer, CosignError> {
    let leaf = Certificate::from_der(cert_der).map_err(|e| CosignError::Pki(format!("bad certificate: {e}")))?;
    let key = certificates::pki_key(&leaf, chain, trust, now())?;
    let used = verify_payload(msg, sig, &[&key])?;
    Ok(Signer { used, logged_der: cert_der.to_vec() })
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// PEM

struct PemBlock {
    label: String,
    der: Vec<u8>,
}

/// The next PEM block in `data` (text before it is skipped, as Go's `pem.Decode` does) and what
/// follows its END line. `Ok(None)` when there is no BEGIN line at all.
fn next_pem(data: &[u8]) -> Result<Option<(PemBlock, &[u8])>, String> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let Some(start) = data.windows(BEGIN.len()).position(|w| w == BEGIN) else { return Ok(None) };
    let after = &data[start + BEGIN.len()..];
    let eol = after.iter().position(|&b| b == b'\n').unwrap_or(after.len());
    let line = std::str::from_utf8(&after[..eol]).map_err(|_| "bad BEGIN line")?.trim_end();
    let label = line.strip_suffix("-----").ok_or("bad BEGIN line")?.to_string();
    let body_start = (eol + 1).min(after.len());
    let end_marker = format!("-----END {label}-----");
    let body_and_rest = &after[body_start..];
    let end = body_and_rest
        .windows(end_marker.len())
        .position(|w| w == end_marker.as_bytes())
        .ok_or_else(|| format!("no END line for {label}"))?;
    let body = std::str::from_utf8(&body_and_rest[..end]).map_err(|_| "PEM body is not text")?;
    if body.contains(':') {
        return Err("PEM headers are not supported".into());
    }
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| "PEM body is not base64")?;
    let mut rest = &body_and_rest[end + end_marker.len()..];
    if let Some(r) = rest.strip_prefix(b"\r") {
        rest = r;
    }
    if let Some(r) = rest.strip_prefix(b"\n") {
        rest = r;
    }
    Ok(Some((PemBlock { label, der }, rest)))
}

/// Exactly one PEM block (any trailing text but whitespace is refused).
fn single_pem(data: &[u8]) -> Result<PemBlock, String> {
    let (block, rest) = next_pem(data)?.ok_or("not PEM")?;
    if !rest.iter().all(u8::is_ascii_whitespace) {
        return Err("trailing data after the PEM block".into());
    }
    Ok(block)
}

/// Every certificate in a PEM bundle (as sigstore's `UnmarshalCertificatesFromPEM`: anything but
/// whitespace after the last block is an error).
fn pem_certificates(data: &[u8]) -> Result<Vec<(Vec<u8>, Certificate)>, String> {
    let mut out = Vec::new();
    let mut rest = data.trim_ascii();
    while !rest.is_empty() {
        let (block, r) = next_pem(rest)?.ok_or("trailing data that is not PEM")?;
        let cert = Certificate::from_der(&block.der).map_err(|e| format!("bad certificate: {e}"))?;
        out.push((block.der, cert));
        rest = r.trim_ascii();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::EncodePublicKey as _;

    #[test]
    fn kit_signature_from_a_registry() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/trust/testdata/kit");
        let payload = std::fs::read(format!("{dir}/payload.json")).unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(format!("{dir}/sig-manifest.json")).unwrap()).unwrap();
        let layer = &manifest["layers"][0];
        assert_eq!(layer["mediaType"], SIGNATURE_MEDIA_TYPE);
        assert_eq!(layer["digest"].as_str().unwrap(), format!("sha256:{}", hex::encode(Sha256::digest(&payload))));
        let ann: BTreeMap<String, String> = serde_json::from_value(layer["annotations"].clone()).unwrap();
        let pubkey = ("cosign.pub".to_string(), std::fs::read(format!("{dir}/cosign.pub")).unwrap());
        let used = verify_with_keys(&payload, &ann, &[pubkey]).unwrap();
        assert_eq!(used.fingerprint, "SHA256:8332f19aa8dc21f7e96a6fd7fb1284b09ccd238f712f9aa539f513ad2e3f04c0");
        let (_, other) = p256_key("another");
        let e = verify_with_keys(&payload, &ann, &[other]).unwrap_err();
        assert!(matches!(e, CosignError::NoKeyVerifies { .. }));
    }

    // ---- keys made in the test

    fn p256_key(seed: &str) -> (p256::ecdsa::SigningKey, (String, Vec<u8>)) {
        let sk = p256::ecdsa::SigningKey::from_slice(&Sha256::digest(seed.as_bytes())).unwrap();
        let pem = sk.verifying_key().to_public_key_pem(p256::pkcs8::LineEnding::LF).unwrap();
        (sk, (format!("{seed}.pub"), pem.into_bytes()))
    }

    fn annotated(sig: &[u8]) -> BTreeMap<String, String> {
        BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), base64::engine::general_purpose::STANDARD.encode(sig))])
    }

    const PAYLOAD: &[u8] = br#"{"critical":{"identity":{"docker-reference":"r.example/a:1"},"image":{"docker-manifest-digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"},"type":"cosign container image signature"},"optional":null}"#;

    #[test]
    fn p256_der_and_fixed_size_signatures() {
        let (sk, pubkey) = p256_key("a");
        let sig: p256::ecdsa::Signature = sk.sign(PAYLOAD);
        let spki = sk.verifying_key().to_public_key_der().unwrap();
        let want = format!("SHA256:{}", hex::encode(Sha256::digest(spki.as_bytes())));
        for bytes in [sig.to_der().as_bytes().to_vec(), sig.to_bytes().to_vec()] {
            let used = verify_with_keys(PAYLOAD, &annotated(&bytes), std::slice::from_ref(&pubkey)).unwrap();
            assert_eq!(used.fingerprint, want);
        }
    }

    #[test]
    fn wrong_key_tampered_payload_bad_base64_missing_annotation() {
        let (sk, pubkey) = p256_key("a");
        let (_, other) = p256_key("b");
        let sig: p256::ecdsa::Signature = sk.sign(PAYLOAD);
        let ann = annotated(sig.to_der().as_bytes());
        let e = verify_with_keys(PAYLOAD, &ann, std::slice::from_ref(&other)).unwrap_err();
        assert!(
            e.to_string().starts_with("signature does not verify with any of the 1 trusted key(s) (b.pub SHA256:"),
            "{e}"
        );
        let mut tampered = PAYLOAD.to_vec();
        tampered[20] ^= 1;
        assert!(matches!(
            verify_with_keys(&tampered, &ann, std::slice::from_ref(&pubkey)),
            Err(CosignError::NoKeyVerifies { .. })
        ));
        let bad = BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), "not base64!".to_string())]);
        let e = verify_with_keys(PAYLOAD, &bad, std::slice::from_ref(&pubkey)).unwrap_err();
        assert_eq!(e.to_string(), "dev.cosignproject.cosign/signature annotation is not valid base64");
        let e = verify_with_keys(PAYLOAD, &BTreeMap::new(), std::slice::from_ref(&pubkey)).unwrap_err();
        assert_eq!(e.to_string(), "no dev.cosignproject.cosign/signature annotation");
        // Garbage of the right shape does not verify either.
        let e = verify_with_keys(PAYLOAD, &annotated(&[0u8; 64]), &[pubkey]).unwrap_err();
        assert!(matches!(e, CosignError::NoKeyVerifies { .. }));
    }

    #[test]
    fn p384_and_ed25519_keys() {
        use p384::pkcs8::EncodePublicKey as _;
        let sk = p384::ecdsa::SigningKey::from_slice(&Sha384::digest(b"c")).unwrap();
        // cosign signs with SHA-256 on every curve.
        use p384::ecdsa::signature::hazmat::PrehashSigner as _;
        let sig: p384::ecdsa::Signature = sk.sign_prehash(&Sha256::digest(PAYLOAD)).unwrap();
        let pem = sk.verifying_key().to_public_key_pem(p384::pkcs8::LineEnding::LF).unwrap();
        verify_with_keys(PAYLOAD, &annotated(sig.to_der().as_bytes()), &[("p384".into(), pem.into_bytes())]).unwrap();

        let sk = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let sig = ed25519_dalek::Signer::sign(&sk, PAYLOAD);
        let pem = sk.verifying_key().to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF).unwrap();
        verify_with_keys(PAYLOAD, &annotated(&sig.to_bytes()), &[("ed".into(), pem.into_bytes())]).unwrap();
    }

    #[test]
    fn unsupported_key_types_are_named() {
        // A P-521 key (cryptography-generated).
        let p521 = "-----BEGIN PUBLIC KEY-----\nMIGbMBAGByqGSM49AgEGBSuBBAAjA4GGAAQBgGKf/KwG6qVXeYOn5F3QqsO8r+Jo\nHNiJ4r3CSqkZUi+YAEQEytz5QNJfm8m4+qqOEpFlkzyc2mWHoZXdRCc3jqoBKwmU\nWQqIF/3GUWyaZgTvJhbKqLrBYq2P1ppjYm8Nr0j/Itmmj4+vDVNbpX6K46htzLfh\n1CfRyGyhO+M8v/WiOP0=\n-----END PUBLIC KEY-----\n";
        let e = verify_with_keys(PAYLOAD, &annotated(b"x"), &[("k".into(), p521.as_bytes().to_vec())]).unwrap_err();
        assert_eq!(e.to_string(), "key file k: unsupported key type ECDSA P-521");
    }
}
