//! cosign v3 signature bundles: what `cosign sign` writes since cosign v3 (the "new bundle
//! format"), which containers/image cannot verify yet.
//!
//! ## Where a bundle is
//! An OCI 1.1 referrer of the signed manifest: a manifest whose `subject` is the signed manifest
//! and whose `artifactType` and only layer's media type are [`BUNDLE_V03`]; fetched by
//! `fetch::registry` from the referrers API or the referrers tag schema.
//!
//! ## What a bundle is (sigstore bundle v0.3, protobuf JSON)
//! ```text
//! {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
//!  "verificationMaterial": {"publicKey": {"hint": …}  |  "certificate": {"rawBytes": b64 DER},
//!                           "tlogEntries": [{"logIndex": "N", "logId": {"keyId": b64},
//!                              "kindVersion": {"kind": "dsse", "version": "0.0.1"},
//!                              "integratedTime": "T", "inclusionPromise": {"signedEntryTimestamp": b64},
//!                              "canonicalizedBody": b64, …}], …},
//!  "dsseEnvelope": {"payload": b64, "payloadType": "application/vnd.in-toto+json",
//!                   "signatures": [{"sig": b64, "keyid": …}]}}
//! ```
//! The envelope's signature is over DSSE's PAE(payloadType, payload); the payload is an in-toto
//! Statement v1 whose `subject` lists the image's manifest digest and whose `predicateType` is
//! cosign's signing predicate ([`SIGN_PREDICATE`]): an attestation (SLSA provenance, SBOM, …)
//! has the same shape and is *not* a signature. A `messageSignature` bundle is refused by name.
//!
//! ## Verification, as a `sigstoreSigned` requirement says
//! - keys (`keyPath`…): the envelope verifies with one of them;
//! - with `rekorPublicKey*`: one tlog entry's SET (`inclusionPromise`) verifies with a Rekor key
//!   over `{"body", "integratedTime", "logID", "logIndex"}` (as for `.sig` attachments), and its
//!   body is a `dsse` v0.0.1 entry logging this payload's SHA-256 and this signature by this key
//!   or certificate;
//! - `fulcio`: the bundle's certificate chains to the CA at the entry's integrated time, names the
//!   OIDC issuer and e-mail, and its key verifies the envelope (Rekor mandatory, as upstream);
//! - `pki`: the bundle's certificate chains to the roots (through the policy's intermediates) now,
//!   names the e-mail and/or host name, and its key verifies the envelope.
//!
//! ## Which identity a bundle proves (the question containers-libs PR #1153 is stuck on)
//! A bundle names the image by digest only: unlike a `.sig` payload, it has no
//! `docker-reference`, so a signature made for `vendor/tool@D` would prove `vendor/etcd@D` just as
//! well. hoist therefore accepts a bundle only when **both** hold:
//! 1. the statement's subject digest equals the manifest digest being pulled (and the subject
//!    name, when cosign wrote one, names this repository);
//! 2. the policy scope that applied names this repository (`host/repo`, `host/repo:tag` or
//!    `host/repo@digest`), so the keys were trusted for this repository and no other; under a
//!    namespace, host, wildcard, transport default or global default a bundle is refused with a
//!    reason that says so.
//!
//! `signedIdentity` is then checked as if the signature named the image as it was pulled
//! (`host/repo:tag` or `host/repo@digest`: the registry resolved the tag to the signed digest), so
//! `matchRepoDigestOrExact` (the default), `matchExact` and `matchRepository` accept it,
//! `exactRepository` only when it names this repository, `exactReference` only when it names the
//! reference pulled, and `remapIdentity` never when its prefix applies (a bundle signs no other
//! name). The record says what the bundle proves: `host/repo@digest`.

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::cosign::{self, CosignError, KeyUsed, RekorEntry};
use super::identity::DockerRef;

/// The media type (and `artifactType`) of a sigstore bundle v0.3.
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The same, in the form the sigstore specification also allows.
pub const BUNDLE_V03_PARAM: &str = "application/vnd.dev.sigstore.bundle+json;version=0.3";
/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// The in-toto statement type cosign writes.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of a cosign v3 *signature* (not an attestation).
pub const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// True for the media types of a sigstore bundle (any version: others are refused when checked,
/// so that the refusal can name the version).
pub fn is_bundle_type(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.dev.sigstore.bundle")
}

/// How the signer is trusted: what a `sigstoreSigned` requirement names.
pub enum Trust<'a> {
    Keys(&'a [(String, Vec<u8>)]),
    Fulcio {
        ca: &'a [Vec<u8>],
        oidc_issuer: &'a str,
        subject_email: &'a str,
    },
    /// The bundle's certificate, checked now (a bundle carries no intermediates: the policy's).
    Pki(cosign::PkiTrust<'a>),
}

/// A verified bundle: who signed, where it was logged, and what the statement says was signed.
#[derive(Debug)]
pub struct Verified {
    pub key: KeyUsed,
    pub rekor: Option<RekorEntry>,
    /// `sha256:<hex>` of each statement subject.
    pub subject_digests: Vec<String>,
    /// The statement's subject names (cosign writes the repository; may be empty).
    pub subject_names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle: {0}")]
    Format(String),
    #[error("bundle media type {0} is not supported (only sigstore bundle v0.3)")]
    Version(String),
    #[error("bundle: {0}")]
    Crypto(#[from] CosignError),
    #[error("bundle is an attestation ({0}), not a signature")]
    NotASignature(String),
}

fn format(m: impl Into<String>) -> BundleError {
    BundleError::Format(m.into())
}

// ---------------------------------------------------------------------------------------------
// The bundle document (only what is checked; other members are ignored, as protobuf JSON readers
// ignore them, except that the shapes that carry trust must be exactly one of each).

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: Material,
    dsse_envelope: Option<Envelope>,
    message_signature: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Material {
    public_key: Option<serde_json::Value>,
    certificate: Option<RawCert>,
    x509_certificate_chain: Option<serde_json::Value>,
    #[serde(default)]
    tlog_entries: Vec<TlogEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCert {
    raw_bytes: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlogEntry {
    /// int64: a JSON string in protobuf JSON (a number is accepted too, as protojson does).
    log_index: serde_json::Value,
    log_id: LogId,
    kind_version: KindVersion,
    integrated_time: serde_json::Value,
    inclusion_promise: Option<Promise>,
    canonicalized_body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogId {
    key_id: String,
}

#[derive(Deserialize)]
struct KindVersion {
    kind: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Promise {
    signed_entry_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

/// The `dsse` v0.0.1 Rekor entry body (what is compared).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DsseBody {
    kind: String,
    api_version: String,
    spec: DsseSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DsseSpec {
    payload_hash: Hash,
    signatures: Vec<DsseBodySignature>,
}

#[derive(Deserialize)]
struct Hash {
    algorithm: String,
    value: String,
}

#[derive(Deserialize)]
struct DsseBodySignature {
    signature: String,
    /// base64 of the PEM of the key or certificate.
    verifier: String,
}

/// The in-toto statement (only what is checked).
#[derive(Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<StatementSubject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
}

#[derive(Deserialize)]
struct StatementSubject {
    #[serde(default)]
    name: String,
    digest: std::collections::BTreeMap<String, String>,
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, BundleError> {
    base64::engine::general_purpose::STANDARD.decode(s).map_err(|_| format(format!("{what} is not base64")))
}

/// DSSE's pre-authentication encoding: `DSSEv1 LEN(type) type LEN(body) body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Verifies `bundle` (the layer's bytes, `media_type` its media type) as `trust` and `rekor_keys`
/// say. Nothing about the statement is believed before the envelope's signature verified.
pub fn verify(
    media_type: &str,
    bundle: &[u8],
    trust: &Trust,
    rekor_keys: Option<&[(String, Vec<u8>)]>,
) -> Result<Verified, BundleError> {
    if media_type != BUNDLE_V03 && media_type != BUNDLE_V03_PARAM {
        return Err(BundleError::Version(media_type.to_string()));
    }
    let b: Bundle = serde_json::from_slice(bundle).map_err(|e| format(format!("invalid JSON: {e}")))?;
    if b.media_type != BUNDLE_V03 && b.media_type != BUNDLE_V03_PARAM {
        return Err(BundleError::Version(b.media_type));
    }
    let env = match (b.dsse_envelope, b.message_signature) {
        (Some(env), None) => env,
        (None, Some(_)) => {
            return Err(format(
                "a messageSignature bundle is not an image signature (cosign v3 signs a DSSE statement)",
            ));
        }
        _ => return Err(format("expected exactly one of dsseEnvelope and messageSignature")),
    };
    if env.payload_type != IN_TOTO {
        return Err(format(format!("payload type {:?} is not an in-toto statement", env.payload_type)));
    }
    let [sig] = &env.signatures[..] else {
        return Err(format(format!("{} envelope signatures (exactly one is allowed)", env.signatures.len())));
    };
    let sig = b64(&sig.sig, "the envelope signature")?;
    let payload = b64(&env.payload, "the envelope payload")?;
    let signed = pae(&env.payload_type, &payload);

    // Who may have signed, and the PEM the log must name for them.
    let m = &b.verification_material;
    if m.x509_certificate_chain.is_some() {
        return Err(format("x509CertificateChain is a v0.1/v0.2 form (v0.3 has certificate)"));
    }
    let entry = match rekor_keys {
        Some(rk) => Some(logged_entry(&m.tlog_entries, rk)?),
        None => None,
    };
    let key = match trust {
        Trust::Keys(keys) => {
            if m.certificate.is_some() || m.public_key.is_none() {
                return Err(format("signed with a certificate, but the requirement names public keys"));
            }
            cosign::verify_message(&signed, &sig, keys)?
        }
        Trust::Fulcio { ca, oidc_issuer, subject_email } => {
            let cert = m.certificate.as_ref().ok_or_else(|| format("no certificate (Fulcio signing needs one)"))?;
            let der = b64(&cert.raw_bytes, "certificate.rawBytes")?;
            let Some((_, at)) = &entry else {
                return Err(format("fulcio requires rekorPublicKey*"));
            };
            cosign::verify_message_with_certificate(
                &signed,
                &sig,
                &der,
                ca,
                oidc_issuer,
                subject_email,
                at.integrated_time,
            )?
        }
        Trust::Pki(pki) => {
            let cert = m.certificate.as_ref().ok_or_else(|| format("no certificate (the requirement is pki)"))?;
            let der = b64(&cert.raw_bytes, "certificate.rawBytes")?;
            cosign::verify_message_with_pki(&signed, &sig, &der, &[], pki)?
        }
    };
    // The log must have recorded this signature by this signer, over this payload.
    let rekor = match entry {
        Some((body, e)) => {
            check_dsse_body(&body, &payload, &sig, &key)?;
            Some(e)
        }
        None => None,
    };

    // Authenticated: now the statement.
    let st: Statement = serde_json::from_slice(&payload).map_err(|e| format(format!("statement: {e}")))?;
    if st.kind != STATEMENT_V1 {
        return Err(format(format!("statement type {:?} is not {STATEMENT_V1}", st.kind)));
    }
    if st.predicate_type != SIGN_PREDICATE {
        return Err(BundleError::NotASignature(st.predicate_type));
    }
    let mut subject_digests = Vec::new();
    let mut subject_names = Vec::new();
    for s in &st.subject {
        if let Some(hex) = s
            .digest
            .get("sha256")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        {
            subject_digests.push(format!("sha256:{hex}"));
        }
        if !s.name.is_empty() {
            subject_names.push(s.name.clone());
        }
    }
    Ok(Verified { key: key.used, rekor, subject_digests, subject_names })
}

/// The first tlog entry whose SET verifies with a Rekor key: its body and what it says.
fn logged_entry(entries: &[TlogEntry], rekor_keys: &[(String, Vec<u8>)]) -> Result<(Vec<u8>, RekorEntry), BundleError> {
    if entries.is_empty() {
        return Err(format("no tlog entry (the policy requires a Rekor SET)"));
    }
    let mut why = Vec::new();
    for e in entries {
        match logged_one(e, rekor_keys) {
            Ok(x) => return Ok(x),
            Err(err) => why.push(err.to_string()),
        }
    }
    Err(format(why.join("; ")))
}

fn logged_one(e: &TlogEntry, rekor_keys: &[(String, Vec<u8>)]) -> Result<(Vec<u8>, RekorEntry), BundleError> {
    if (e.kind_version.kind.as_str(), e.kind_version.version.as_str()) != ("dsse", "0.0.1") {
        return Err(format(format!(
            "tlog entry kind {} {} is not supported (dsse 0.0.1)",
            e.kind_version.kind, e.kind_version.version
        )));
    }
    let promise = e.inclusion_promise.as_ref().ok_or_else(|| format("tlog entry has no inclusionPromise (SET)"))?;
    let set_sig = b64(&promise.signed_entry_timestamp, "inclusionPromise.signedEntryTimestamp")?;
    let int = |v: &serde_json::Value, what: &str| {
        let n = match v {
            serde_json::Value::String(s) => s.parse::<i64>().ok(),
            n => n.as_i64(),
        };
        n.ok_or_else(|| format(format!("tlog entry {what} {v} is not an integer")))
    };
    let payload = cosign::SetPayload {
        body: e.canonicalized_body.clone(),
        integrated_time: int(&e.integrated_time, "integratedTime")?,
        log_index: int(&e.log_index, "logIndex")?,
        log_id: hex::encode(b64(&e.log_id.key_id, "logId.keyId")?),
    };
    let json = serde_json::to_vec(&payload).map_err(|e| format(e.to_string()))?;
    let p = cosign::verify_set(rekor_keys, &set_sig, &json)?;
    let body = b64(&p.body, "canonicalizedBody")?;
    Ok((
        body,
        RekorEntry {
            integrated_time: p.integrated_time,
            log_index: p.log_index,
            log_id: p.log_id,
            signer_der: Vec::new(),
        },
    ))
}

/// The logged `dsse` entry must record SHA-256 of this payload and, among its signatures, this
/// signature with this signer as verifier.
fn check_dsse_body(body: &[u8], payload: &[u8], sig: &[u8], key: &cosign::Signer) -> Result<(), BundleError> {
    let r = |m: &str| BundleError::Crypto(CosignError::Rekor(m.to_string()));
    let d: DsseBody = serde_json::from_slice(body).map_err(|e| r(&format!("body: {e}")))?;
    if (d.kind.as_str(), d.api_version.as_str()) != ("dsse", "0.0.1") {
        return Err(r(&format!("body: kind {} {} is not dsse 0.0.1", d.kind, d.api_version)));
    }
    if d.spec.payload_hash.algorithm != "sha256" || d.spec.payload_hash.value != hex::encode(Sha256::digest(payload)) {
        return Err(r("the logged payload hash is not this payload's"));
    }
    let ours = d.spec.signatures.iter().any(|s| {
        let logged_sig = base64::engine::general_purpose::STANDARD.decode(&s.signature).ok();
        let verifier = base64::engine::general_purpose::STANDARD.decode(&s.verifier).ok();
        logged_sig.as_deref() == Some(sig) && verifier.is_some_and(|pem| key.is_pem(&pem))
    });
    if !ours {
        return Err(r("the log does not record this signature by this signer"));
    }
    Ok(())
}

/// The identity a verified bundle is taken to vouch for ([`vouched_identity`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Vouched {
    /// The reference `signedIdentity` is checked against: the image as pulled (`host/repo:tag` or
    /// `host/repo@digest`), the digest having been resolved by the registry and signed.
    pub checked: String,
    /// What the bundle proves, as recorded: `host/repo@digest`.
    pub recorded: String,
}

/// Applies the identity rule of this module's documentation: `image` is the pulled reference when
/// the scope that applied (`scope`) names its repository, None when the scope is broader.
pub(super) fn vouched_identity(
    v: &Verified,
    manifest: &str,
    image: Option<&DockerRef>,
    scope: &str,
) -> Result<Vouched, String> {
    if !v.subject_digests.iter().any(|d| d == manifest) {
        let signed =
            if v.subject_digests.is_empty() { "no sha256 digest".into() } else { v.subject_digests.join(", ") };
        return Err(format!("statement subject {signed} is not manifest digest {manifest}"));
    }
    let Some(image) = image else {
        return Err(format!(
            "a cosign bundle names no repository: it is accepted only under a scope naming this repository (scope {scope} is broader)"
        ));
    };
    if let Some(other) = v.subject_names.iter().find(|n| !names_repository(n, &image.name)) {
        return Err(format!("statement subject name {other} is not repository {}", image.name));
    }
    Ok(Vouched { checked: image.to_string(), recorded: format!("{}@{manifest}", image.name) })
}

/// A subject name as cosign writes it (`host/repo`, maybe with a tag or digest) naming `repo`.
fn names_repository(name: &str, repo: &str) -> bool {
    name.strip_prefix(repo).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '@']))
}
