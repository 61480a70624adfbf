//! cosign v3 bundles made in the test (keys and a Rekor log key of our own): what verifies, what
//! each tampering is refused with, and the identity rule. Fulcio-signed bundles are made by
//! tests/kit (X.509) and checked in tests/trust.

use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::bundle::{self, BUNDLE_V03, BundleError, Trust, Verified};
use super::identity::DockerRef;
use crate::imgref::RegistryRef;

const DIGEST: &str = "sha256:2fea4c485b4fb654ca29dfe2b691e4b70a1c073b2f2805d25b9c29dceff0df11";
const OTHER: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

struct Key {
    sk: p256::ecdsa::SigningKey,
    pem: String,
}

fn key(seed: &str) -> Key {
    let sk = p256::ecdsa::SigningKey::from_slice(&Sha256::digest(seed.as_bytes())).unwrap();
    let pem = sk.verifying_key().to_public_key_pem(p256::pkcs8::LineEnding::LF).unwrap();
    Key { sk, pem }
}

impl Key {
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let s: p256::ecdsa::Signature = self.sk.sign(msg);
        s.to_der().as_bytes().to_vec()
    }
    fn file(&self) -> (String, Vec<u8>) {
        ("cosign.pub".into(), self.pem.clone().into_bytes())
    }
}

/// What a bundle is made of; each test changes one thing.
struct Make {
    digest: &'static str,
    predicate: &'static str,
    name: Option<&'static str>,
    signer: Key,
    /// Log with this Rekor key; the logged payload and signer (None: the real ones).
    rekor: Option<Key>,
    logged_payload: Option<Vec<u8>>,
    logged_signer: Option<Key>,
    signatures: usize,
}

fn make() -> Make {
    Make {
        digest: DIGEST,
        predicate: bundle::SIGN_PREDICATE,
        name: None,
        signer: key("signer"),
        rekor: None,
        logged_payload: None,
        logged_signer: None,
        signatures: 1,
    }
}

impl Make {
    fn statement(&self) -> Vec<u8> {
        let mut subject = json!({"digest": {"sha256": &self.digest[7..]}, "annotations": {}});
        if let Some(n) = self.name {
            subject["name"] = json!(n);
        }
        serde_json::to_vec(&json!({"_type": bundle::STATEMENT_V1, "subject": [subject], "predicateType": self.predicate, "predicate": {}})).unwrap()
    }

    fn build(&self) -> Value {
        let payload = self.statement();
        let sig = self.signer.sign(&bundle::pae(bundle::IN_TOTO, &payload));
        let mut material = json!({"publicKey": {"hint": "ignored"}});
        if let Some(rekor) = &self.rekor {
            let logged = self.logged_payload.clone().unwrap_or_else(|| payload.clone());
            let verifier = self.logged_signer.as_ref().unwrap_or(&self.signer).pem.clone();
            let body = json!({"apiVersion": "0.0.1", "kind": "dsse", "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": "not checked"},
                "payloadHash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(&logged))},
                "signatures": [{"signature": b64(&sig), "verifier": b64(verifier.as_bytes())}]}});
            let body = b64(&serde_json::to_vec(&body).unwrap());
            let spki = rekor.sk.verifying_key().to_public_key_der().unwrap();
            let log_id = Sha256::digest(spki.as_bytes());
            // serde_json's maps are sorted: this is the canonical form.
            let set = json!({"body": body, "integratedTime": 1767225660, "logID": hex::encode(log_id), "logIndex": 7});
            material["tlogEntries"] = json!([{
                "logIndex": "7", "logId": {"keyId": b64(&log_id)},
                "kindVersion": {"kind": "dsse", "version": "0.0.1"}, "integratedTime": "1767225660",
                "inclusionPromise": {"signedEntryTimestamp": b64(&rekor.sign(&serde_json::to_vec(&set).unwrap()))},
                "canonicalizedBody": body}]);
        }
        let sigs: Vec<Value> = (0..self.signatures).map(|_| json!({"sig": b64(&sig)})).collect();
        json!({"mediaType": BUNDLE_V03, "verificationMaterial": material,
               "dsseEnvelope": {"payload": b64(&payload), "payloadType": bundle::IN_TOTO, "signatures": sigs}})
    }
}

fn verify_doc(doc: &Value, keys: &[(String, Vec<u8>)], rekor: Option<&Key>) -> Result<Verified, BundleError> {
    let rk = rekor.map(|k| vec![("rekor.pub".to_string(), k.pem.clone().into_bytes())]);
    bundle::verify(BUNDLE_V03, &serde_json::to_vec(doc).unwrap(), &Trust::Keys(keys), rk.as_deref())
}

fn err(doc: &Value, keys: &[(String, Vec<u8>)], rekor: Option<&Key>) -> String {
    verify_doc(doc, keys, rekor).unwrap_err().to_string()
}

#[test]
fn a_key_signed_bundle_verifies_and_names_its_digest() {
    let m = make();
    let v = verify_doc(&m.build(), &[m.signer.file()], None).unwrap();
    assert_eq!(v.subject_digests, vec![DIGEST.to_string()]);
    assert!(v.rekor.is_none());
    let spki = m.signer.sk.verifying_key().to_public_key_der().unwrap();
    assert_eq!(v.key.fingerprint, format!("SHA256:{}", hex::encode(Sha256::digest(spki.as_bytes()))));
    // Another key does not verify it.
    let e = err(&m.build(), &[key("other").file()], None);
    assert!(
        e.starts_with("bundle: signature does not verify with any of the 1 trusted key(s) (cosign.pub SHA256:"),
        "{e}"
    );
}

#[test]
fn tampering_is_refused_by_name() {
    let m = make();
    let keys = [m.signer.file()];
    // Another statement under the same signature.
    let mut doc = m.build();
    let other = Make { digest: OTHER, ..make() }.statement();
    doc["dsseEnvelope"]["payload"] = json!(b64(&other));
    assert!(err(&doc, &keys, None).contains("signature does not verify"));
    // A payload type the signature was not made over.
    let mut doc = m.build();
    doc["dsseEnvelope"]["payloadType"] = json!("application/json");
    assert_eq!(err(&doc, &keys, None), "bundle: payload type \"application/json\" is not an in-toto statement");
    // Two signatures.
    let e = err(&Make { signatures: 2, ..make() }.build(), &keys, None);
    assert_eq!(e, "bundle: 2 envelope signatures (exactly one is allowed)");
    // An attestation is not a signature, even by the trusted key.
    let e = err(&Make { predicate: "https://slsa.dev/provenance/v1", ..make() }.build(), &keys, None);
    assert_eq!(e, "bundle is an attestation (https://slsa.dev/provenance/v1), not a signature");
    // messageSignature bundles, other versions, broken JSON.
    let mut doc = m.build();
    doc["messageSignature"] = json!({"signature": "AA=="});
    doc.as_object_mut().unwrap().remove("dsseEnvelope");
    assert!(err(&doc, &keys, None).contains("a messageSignature bundle is not an image signature"));
    let mut doc = m.build();
    doc["mediaType"] = json!("application/vnd.dev.sigstore.bundle+json;version=0.2");
    assert_eq!(
        err(&doc, &keys, None),
        "bundle media type application/vnd.dev.sigstore.bundle+json;version=0.2 is not supported (only sigstore bundle v0.3)"
    );
    let e = bundle::verify(BUNDLE_V03, b"{", &Trust::Keys(&keys), None).unwrap_err().to_string();
    assert!(e.starts_with("bundle: invalid JSON:"), "{e}");
}

#[test]
fn rekor_set_and_logged_body_are_checked() {
    let rekor = key("rekor");
    let m = Make { rekor: Some(key("rekor")), ..make() };
    let keys = [m.signer.file()];
    let v = verify_doc(&m.build(), &keys, Some(&rekor)).unwrap();
    let e = v.rekor.unwrap();
    assert_eq!((e.log_index, e.integrated_time), (7, 1767225660));
    // The policy's Rekor key is another log's.
    let e = err(&m.build(), &keys, Some(&key("other log")));
    assert!(e.contains("rekor SET: signature does not verify with any of the 1 Rekor key(s)"), "{e}");
    // No log entry at all.
    let e = err(&make().build(), &keys, Some(&rekor));
    assert_eq!(e, "bundle: no tlog entry (the policy requires a Rekor SET)");
    // The log recorded another payload, or this signature by another signer.
    let e = err(
        &Make { rekor: Some(key("rekor")), logged_payload: Some(b"x".to_vec()), ..make() }.build(),
        &keys,
        Some(&rekor),
    );
    assert_eq!(e, "bundle: rekor SET: the logged payload hash is not this payload's");
    let e = err(
        &Make { rekor: Some(key("rekor")), logged_signer: Some(key("mallory")), ..make() }.build(),
        &keys,
        Some(&rekor),
    );
    assert_eq!(e, "bundle: rekor SET: the log does not record this signature by this signer");
    // A SET over other numbers (the entry's integratedTime edited after signing).
    let mut doc = m.build();
    doc["verificationMaterial"]["tlogEntries"][0]["integratedTime"] = json!("1767225999");
    assert!(err(&doc, &keys, Some(&rekor)).contains("rekor SET: signature does not verify"));
}

fn image(s: &str) -> DockerRef {
    DockerRef::from_registry_ref(&RegistryRef::parse(s).unwrap())
}

#[test]
fn identity_needs_the_digest_and_a_repository_scope() {
    let m = make();
    let v = verify_doc(&m.build(), &[m.signer.file()], None).unwrap();
    let reg = image("reg.example/app/etcd:3.5");
    let ok = bundle::vouched_identity(&v, DIGEST, Some(&reg), "docker:reg.example/app/etcd").unwrap();
    assert_eq!(ok.checked, "reg.example/app/etcd:3.5");
    assert_eq!(ok.recorded, format!("reg.example/app/etcd@{DIGEST}"));
    let e = bundle::vouched_identity(&v, OTHER, Some(&reg), "s").unwrap_err();
    assert_eq!(e, format!("statement subject {DIGEST} is not manifest digest {OTHER}"));
    let e = bundle::vouched_identity(&v, DIGEST, None, "docker:reg.example/app").unwrap_err();
    assert_eq!(
        e,
        "a cosign bundle names no repository: it is accepted only under a scope naming this repository (scope docker:reg.example/app is broader)"
    );
    // A subject name, when written, must be this repository.
    let named = |n: &'static str| {
        let m = Make { name: Some(n), ..make() };
        verify_doc(&m.build(), &[m.signer.file()], None).unwrap()
    };
    assert!(bundle::vouched_identity(&named("reg.example/app/etcd"), DIGEST, Some(&reg), "s").is_ok());
    assert!(bundle::vouched_identity(&named("reg.example/app/etcd@sha256:x"), DIGEST, Some(&reg), "s").is_ok());
    let e = bundle::vouched_identity(&named("reg.example/app/etcd-evil"), DIGEST, Some(&reg), "s").unwrap_err();
    assert_eq!(e, "statement subject name reg.example/app/etcd-evil is not repository reg.example/app/etcd");
}
