//! Deciding: every requirement of the scope that applies must hold (containers-policy.json(5)).
//!
//! - `insecureAcceptAnything` holds for any image; `reject` for none.
//! - `signedBy` holds when at least one simple signature of the image is an OpenPGP signed message
//!   by one of its keys ([`super::simple`]) whose payload ([`super::payload`]) names this manifest
//!   digest and an identity its `signedIdentity` accepts ([`super::identity`]).
//! - `sigstoreSigned` holds when at least one sigstore signature verifies with one of its public
//!   keys ([`super::cosign`]), with the Rekor SET checked when the policy names Rekor keys, and
//!   its payload names this digest and an accepted identity.
//!
//! Signatures are authenticated before their payload is parsed, and the payload's digest is
//! compared with the manifest digest (already checked against the bytes) before the manifest is
//! parsed by anyone. Every failure of every signature is kept for the refusal message.

use super::policy::{ImageScope, KeyMaterial, Requirement, SigstoreSigned, SigstoreTrust};
use super::{Accepted, Checker, Refusal, Signature, Verified, cosign, identity, payload, simple};
use crate::digest::Digest;
use crate::imgref::RegistryRef;

/// What is being decided about.
pub struct Subject<'a> {
    pub scope: &'a ImageScope,
    /// The docker reference being pulled (None for local transports).
    pub docker: Option<&'a RegistryRef>,
    /// The top-level manifest digest (None before a local source is read: then no signature can
    /// be checked, and none exists).
    pub manifest: Option<&'a Digest>,
}

/// Decides whether `subject` with `signatures` may enter the store.
pub fn evaluate(checker: &Checker, subject: &Subject, signatures: &[Signature]) -> Result<Verified, Refusal> {
    let applied = checker.policy.applies(subject.scope);
    let mut accepted = Vec::new();
    let mut reasons = Vec::new();
    for req in applied.requirements {
        match check(req, subject, signatures) {
            Ok(a) => accepted.push(a),
            Err(r) => reasons.push(format!("{}: {r}", req.kind())),
        }
    }
    let policy = checker.path.display().to_string();
    if reasons.is_empty() {
        Ok(Verified { policy, scope: applied.scope, requirements: accepted })
    } else {
        Err(Refusal { policy, scope: applied.scope, reasons })
    }
}

/// True when the requirements for `scope` look at signatures (so they must be fetched).
pub fn wants_signatures(checker: &Checker, scope: &ImageScope) -> bool {
    checker
        .policy
        .applies(scope)
        .requirements
        .iter()
        .any(|r| matches!(r, Requirement::SignedBy(_) | Requirement::SigstoreSigned(_)))
}

fn check(req: &Requirement, subject: &Subject, signatures: &[Signature]) -> Result<Accepted, String> {
    let accepted =
        |key: Option<String>, identity: Option<String>| Accepted { kind: req.kind().to_string(), key, identity };
    match req {
        Requirement::InsecureAcceptAnything => Ok(accepted(None, None)),
        Requirement::Reject => Err("rejected by policy".into()),
        Requirement::SignedBy(sb) => {
            let keys = sb.keys.load().map_err(|e| e.to_string())?;
            let mut failures = Vec::new();
            for (i, sig) in signatures.iter().enumerate() {
                let Signature::Simple { blob, .. } = sig else { continue };
                let attempt = simple::verify(blob, &keys).map_err(|e| e.to_string()).and_then(|signed| {
                    let id = vouches(subject, &signed.payload, payload::PayloadType::Simple, |d| {
                        identity::check(&sb.signed_identity, subject.docker, d)
                    })?;
                    Ok(accepted(Some(signed.fingerprint), Some(id)))
                });
                match attempt {
                    Ok(a) => return Ok(a),
                    Err(e) => failures.push(format!("signature {} ({}): {e}", i + 1, sig.origin())),
                }
            }
            Err(if failures.is_empty() { "no signature found".into() } else { failures.join("; ") })
        }
        Requirement::SigstoreSigned(ss) => {
            let mut failures = Vec::new();
            for (i, sig) in signatures.iter().enumerate() {
                let Signature::Sigstore { payload: body, annotations, media_type, .. } = sig else { continue };
                if media_type != super::SIGSTORE_SIGNATURE_TYPE {
                    failures.push(format!("signature {} ({}): not a signature ({media_type})", i + 1, sig.origin()));
                    continue;
                }
                let attempt = sigstore_key(ss, body, annotations).and_then(|key| {
                    let id = vouches(subject, body, payload::PayloadType::Cosign, |d| {
                        identity::check(&ss.signed_identity, subject.docker, d)
                    })?;
                    Ok(accepted(Some(key), Some(id)))
                });
                match attempt {
                    Ok(a) => return Ok(a),
                    Err(e) => failures.push(format!("signature {} ({}): {e}", i + 1, sig.origin())),
                }
            }
            Err(if failures.is_empty() { "no signature found".into() } else { failures.join("; ") })
        }
    }
}

/// Parses an authenticated payload and checks that it names this manifest and an identity the
/// rule accepts; returns the identity.
fn vouches(
    subject: &Subject,
    body: &[u8],
    kind: payload::PayloadType,
    identity_ok: impl FnOnce(&str) -> Result<(), String>,
) -> Result<String, String> {
    let p = payload::parse(body, kind).map_err(|e| e.to_string())?;
    let manifest = subject.manifest.map(|d| d.to_string()).unwrap_or_default();
    if p.manifest_digest != manifest {
        return Err(format!("payload digest {} differs from manifest digest {manifest}", p.manifest_digest));
    }
    identity_ok(&p.docker_reference)?;
    Ok(p.docker_reference)
}

/// Authenticates a sigstore signature as the requirement says; returns the key's fingerprint.
fn sigstore_key(
    ss: &SigstoreSigned,
    body: &[u8],
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    let rekor = match &ss.rekor_public_keys {
        Some(k) => Some(labelled(k)?),
        None => None,
    };
    // Rekor SETs and Fulcio certificates are verified by super::cosign, but not yet accepted here:
    // no signature made by this project's own test kit covers them (fails closed until it does).
    if rekor.is_some() {
        return Err("rekorPublicKey* (Rekor SET checks) is not supported yet".into());
    }
    match &ss.trust {
        SigstoreTrust::PublicKeys(keys) => {
            Ok(cosign::verify_with_keys(body, annotations, &labelled(keys)?).map_err(|e| e.to_string())?.fingerprint)
        }
        SigstoreTrust::Fulcio(_) => Err("fulcio certificates are not supported yet".into()),
        SigstoreTrust::Pki(_) => Err("pki certificates are not supported yet".into()),
    }
}

/// Key material with a label per key for messages: its file, or `keyData[N]`.
fn labelled(k: &KeyMaterial) -> Result<Vec<(String, Vec<u8>)>, String> {
    let data = k.load().map_err(|e| e.to_string())?;
    let labels: Vec<String> = match k {
        KeyMaterial::Paths(p) => p.iter().map(|p| p.display().to_string()).collect(),
        KeyMaterial::Data(d) => (0..d.len()).map(|i| format!("keyData[{i}]")).collect(),
    };
    Ok(labels.into_iter().zip(data).collect())
}
