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

use super::identity::DockerRef;
use super::policy::{Applied, ImageScope, KeyMaterial, Pki, Requirement, SigstoreSigned, SigstoreTrust};
use super::{Accepted, Checker, Refusal, Signature, Verified, bundle, cosign, identity, payload, simple};
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
        match check(req, subject, signatures, &applied) {
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

fn check(
    req: &Requirement,
    subject: &Subject,
    signatures: &[Signature],
    applied: &Applied,
) -> Result<Accepted, String> {
    let accepted = |key: Option<String>, identity: Option<String>| Accepted {
        kind: req.kind().to_string(),
        key,
        identity,
        signer: None,
    };
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
                let attempt = match sig {
                    Signature::Simple { .. } => continue,
                    Signature::Sigstore { media_type, .. } if media_type != super::SIGSTORE_SIGNATURE_TYPE => {
                        Err(format!("not a signature ({media_type})"))
                    }
                    Signature::Sigstore { payload: body, annotations, .. } => sigstore_key(ss, body, annotations)
                        .and_then(|auth| {
                            let id = vouches(subject, body, payload::PayloadType::Cosign, |d| {
                                identity::check(&ss.signed_identity, subject.docker, d)
                            })?;
                            Ok(Accepted { signer: auth.signer, ..accepted(Some(auth.key), Some(id)) })
                        }),
                    Signature::Bundle { media_type, bundle: doc, .. } => {
                        bundle_key(ss, media_type, doc).and_then(|(verified, auth)| {
                            let manifest = subject.manifest.map(|d| d.to_string()).unwrap_or_default();
                            let image =
                                subject.docker.filter(|_| applied.names_repository).map(DockerRef::from_registry_ref);
                            let id = bundle::vouched_identity(&verified, &manifest, image.as_ref(), &applied.scope)?;
                            identity::check(&ss.signed_identity, subject.docker, &id.checked)?;
                            Ok(Accepted { signer: auth.signer, ..accepted(Some(auth.key), Some(id.recorded)) })
                        })
                    }
                };
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

/// Authenticates a sigstore signature as the requirement says: public keys (with the Rekor SET
/// when the policy names Rekor keys), or a Fulcio certificate (Rekor SET mandatory).
fn sigstore_key(
    ss: &SigstoreSigned,
    body: &[u8],
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<Authenticated, String> {
    let rekor = match &ss.rekor_public_keys {
        Some(k) => Some(labelled(k)?),
        None => None,
    };
    let e = |e: cosign::CosignError| e.to_string();
    match (&ss.trust, rekor) {
        (SigstoreTrust::PublicKeys(keys), None) => {
            let key = cosign::verify_with_keys(body, annotations, &labelled(keys)?).map_err(e)?;
            Ok(Authenticated { key: key.fingerprint, signer: None })
        }
        (SigstoreTrust::PublicKeys(keys), Some(rekor)) => {
            let (key, entry) =
                cosign::verify_with_keys_and_rekor(body, annotations, &labelled(keys)?, &rekor).map_err(e)?;
            Ok(Authenticated { key: key.fingerprint, signer: Some(logged(&entry)) })
        }
        (SigstoreTrust::Fulcio(f), Some(rekor)) => {
            let ca = f.ca.load().map_err(|e| e.to_string())?;
            let id =
                cosign::verify_fulcio(body, annotations, &ca, &f.oidc_issuer, &f.subject_email, &rekor).map_err(e)?;
            Ok(Authenticated {
                key: id.key.fingerprint,
                signer: Some(format!("{} from {}, {}", id.subject_email, id.oidc_issuer, logged(&id.rekor))),
            })
        }
        // The parser refuses fulcio without Rekor keys; kept as a refusal, not a panic.
        (SigstoreTrust::Fulcio(_), None) => Err("fulcio requires rekorPublicKey*".into()),
        (SigstoreTrust::Pki(p), _) => {
            let files = PkiFiles::load(p)?;
            let key = cosign::verify_pki(body, annotations, &files.trust(p)).map_err(e)?;
            Ok(Authenticated { key: key.fingerprint, signer: Some(pki_signer(p)) })
        }
    }
}

/// Authenticates a cosign v3 bundle as the requirement says (see [`super::bundle`]).
fn bundle_key(ss: &SigstoreSigned, media_type: &str, doc: &[u8]) -> Result<(bundle::Verified, Authenticated), String> {
    let rekor = match &ss.rekor_public_keys {
        Some(k) => Some(labelled(k)?),
        None => None,
    };
    let (keys, ca, pki);
    let trust = match &ss.trust {
        SigstoreTrust::PublicKeys(k) => {
            keys = labelled(k)?;
            bundle::Trust::Keys(&keys)
        }
        SigstoreTrust::Fulcio(f) => {
            ca = f.ca.load().map_err(|e| e.to_string())?;
            bundle::Trust::Fulcio { ca: &ca, oidc_issuer: &f.oidc_issuer, subject_email: &f.subject_email }
        }
        SigstoreTrust::Pki(p) => {
            pki = PkiFiles::load(p)?;
            bundle::Trust::Pki(pki.trust(p))
        }
    };
    let v = bundle::verify(media_type, doc, &trust, rekor.as_deref()).map_err(|e| e.to_string())?;
    let signer = match (&ss.trust, &v.rekor) {
        (SigstoreTrust::Fulcio(f), Some(e)) => {
            Some(format!("{} from {}, {}", f.subject_email, f.oidc_issuer, logged(e)))
        }
        (SigstoreTrust::Pki(p), _) => Some(pki_signer(p)),
        (_, Some(e)) => Some(logged(e)),
        _ => None,
    };
    let auth = Authenticated { key: v.key.fingerprint.clone(), signer };
    Ok((v, auth))
}

/// A `pki` requirement's roots and intermediates, read.
struct PkiFiles {
    roots: Vec<Vec<u8>>,
    intermediates: Vec<Vec<u8>>,
}

impl PkiFiles {
    fn load(p: &Pki) -> Result<Self, String> {
        let roots = p.ca_roots.load().map_err(|e| e.to_string())?;
        let intermediates = match &p.ca_intermediates {
            Some(i) => i.load().map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        Ok(PkiFiles { roots, intermediates })
    }

    fn trust<'a>(&'a self, p: &'a Pki) -> cosign::PkiTrust<'a> {
        cosign::PkiTrust {
            roots: &self.roots,
            intermediates: &self.intermediates,
            subject_email: p.subject_email.as_deref(),
            subject_hostname: p.subject_hostname.as_deref(),
        }
    }
}

/// `certificate for EMAIL, HOST (pki)`.
fn pki_signer(p: &Pki) -> String {
    let names: Vec<&str> = [p.subject_email.as_deref(), p.subject_hostname.as_deref()].into_iter().flatten().collect();
    format!("certificate for {} (pki)", names.join(", "))
}

/// What authenticated a sigstore signature.
struct Authenticated {
    /// `SHA256:<hex>` of the signing key (the certificate's key for Fulcio).
    key: String,
    /// Who and where it was logged: `dev@example.com from https://issuer, logged in Rekor #42 at 2026-…`.
    signer: Option<String>,
}

/// `logged in Rekor #INDEX at UNIX-TIME`.
fn logged(entry: &cosign::RekorEntry) -> String {
    format!("logged in Rekor #{} at {}", entry.log_index, entry.integrated_time)
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
