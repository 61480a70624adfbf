#!/usr/bin/env python3
"""Sign an image in a registry the way cosign v3 does by default (the "new bundle format") and
attach the bundle as an OCI 1.1 referrer, as cosign does on a registry without the referrers API.

Usage: cosign_bundle.py ADDR REPO MANIFEST_DIGEST
                        (--key KEYDIR PASSPHRASE | --fulcio PKIDIR EMAIL ISSUER |
                         --pki PKIDIR EMAIL HOSTNAME)
                        [--rekor DIR] [--logged-after SECONDS] [--signed-digest D]
                        [--predicate-type T] [--subject-name NAME] [--log-other-payload]
                        [--message-signature]

What is written, following cosign's specs/BUNDLE_SPEC.md and `cosign sign` (v3):
- the statement: in-toto v1 {"_type": "https://in-toto.io/Statement/v1",
  "subject": [{"digest": {"sha256": HEX of D (default MANIFEST_DIGEST)}, "annotations": {}}],
  "predicateType": T (default https://sigstore.dev/cosign/sign/v1), "predicate": {}}
  (a subject "name" only with --subject-name; cosign writes none);
- the DSSE envelope: payloadType application/vnd.in-toto+json, one ECDSA-P256/SHA-256 (DER)
  signature over PAE = "DSSEv1 <len> <type> <len> <payload>", by the cosign key in KEYDIR or by
  a fresh key with a Fulcio-style certificate for EMAIL from ISSUER (PKIDIR from sigstore_pki.py),
  or with a day-long certificate of PKIDIR's ordinary PKI for EMAIL and/or HOSTNAME;
- the bundle v0.3: verificationMaterial.publicKey.hint (base64 of SHA-256 of the key's
  SubjectPublicKeyInfo) or .certificate.rawBytes; with --rekor a tlog entry of kind dsse 0.0.1
  whose body logs the payload's SHA-256 and the signature with its verifier (base64 of the key's or
  certificate's PEM), integrated at the certificate's start + SECONDS (default 60), with its SET
  in inclusionPromise (--log-other-payload logs another payload's hash);
- the referrer: an OCI manifest (artifactType application/vnd.dev.sigstore.bundle.v0.3+json, the
  empty config, the bundle as its only layer, subject = the image's manifest descriptor), PUT by
  digest; then the referrers tag schema: the image index at tag sha256-<hex> gets an entry for it
  (mediaType, digest, size, artifactType), as go-containerregistry maintains it for cosign.
--message-signature writes a messageSignature bundle instead of a DSSE one.
Prints the referrer manifest's digest.
"""

import argparse
import hashlib
import json

from cryptography import x509
from cryptography.hazmat.primitives import serialization

import kitlib
from kitlib import NOT_BEFORE, b64


BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def pae(payload_type: str, payload: bytes) -> bytes:
    return b"DSSEv1 %d %s %d " % (len(payload_type), payload_type.encode(), len(payload)) + payload


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("repo")
    ap.add_argument("digest")
    kitlib.add_signer_args(ap)
    ap.add_argument("--signed-digest")
    ap.add_argument("--predicate-type", default="https://sigstore.dev/cosign/sign/v1")
    ap.add_argument("--subject-name")
    ap.add_argument("--log-other-payload", action="store_true")
    ap.add_argument("--message-signature", action="store_true")
    a = ap.parse_args()

    signed = a.signed_digest or a.digest
    subject = {"digest": {"sha256": signed.split(":", 1)[1]}, "annotations": {}}
    if a.subject_name:
        subject = {"name": a.subject_name, **subject}
    statement = json.dumps(
        {"_type": "https://in-toto.io/Statement/v1", "subject": [subject], "predicateType": a.predicate_type, "predicate": {}},
        separators=(",", ":"),
    ).encode()
    payload_type = "application/vnd.in-toto+json"

    material = {}
    key, signer_pem, chain = kitlib.signer(a)
    if chain is None:
        material["publicKey"] = {"hint": b64(hashlib.sha256(kitlib.spki_der(key.public_key())).digest())}
    else:
        der = x509.load_pem_x509_certificate(signer_pem).public_bytes(serialization.Encoding.DER)
        material["certificate"] = {"rawBytes": b64(der)}

    if a.message_signature:
        sig = kitlib.ecdsa_sign(key, statement)
        content = {"messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": b64(hashlib.sha256(statement).digest())}, "signature": b64(sig)}}
    else:
        sig = kitlib.ecdsa_sign(key, pae(payload_type, statement))
        content = {"dsseEnvelope": {"payload": b64(statement), "payloadType": payload_type, "signatures": [{"sig": b64(sig)}]}}

    if a.rekor:
        logged = b"another payload" if a.log_other_payload else statement
        body = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(json.dumps(content).encode()).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(logged).hexdigest()},
                "signatures": [{"signature": b64(sig), "verifier": b64(signer_pem)}],
            },
        }
        body_bytes, log_id, set_sig, _ = kitlib.rekor_set(a.rekor, body, NOT_BEFORE + a.logged_after, log_index=7)
        material["tlogEntries"] = [
            {
                "logIndex": "7",
                "logId": {"keyId": b64(bytes.fromhex(log_id))},
                "kindVersion": {"kind": "dsse", "version": "0.0.1"},
                "integratedTime": str(NOT_BEFORE + a.logged_after),
                "inclusionPromise": {"signedEntryTimestamp": b64(set_sig)},
                "canonicalizedBody": b64(body_bytes),
            }
        ]
    bundle = json.dumps({"mediaType": BUNDLE, "verificationMaterial": material, **content}, separators=(",", ":")).encode()

    accept = ", ".join([kitlib.OCI_MANIFEST, kitlib.OCI_INDEX, "application/vnd.docker.distribution.manifest.v2+json"])
    image = kitlib.get_manifest(a.addr, a.repo, a.digest, accept)
    image_type = json.loads(image).get("mediaType", kitlib.OCI_MANIFEST)
    assert kitlib.push_blob(a.addr, a.repo, b"{}") == EMPTY
    referrer = {
        "schemaVersion": 2,
        "mediaType": kitlib.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": EMPTY, "artifactType": BUNDLE},
        "layers": [{"mediaType": BUNDLE, "size": len(bundle), "digest": kitlib.push_blob(a.addr, a.repo, bundle)}],
        "annotations": {
            "dev.sigstore.bundle.content": "dsse-envelope",
            "dev.sigstore.bundle.predicateType": a.predicate_type,
            "org.opencontainers.image.created": "2026-01-01T00:01:00Z",
        },
        "subject": {"mediaType": image_type, "size": len(image), "digest": a.digest},
        "artifactType": BUNDLE,
    }
    data = json.dumps(referrer, separators=(",", ":")).encode()
    ref_digest = "sha256:" + hashlib.sha256(data).hexdigest()
    kitlib.http("PUT", f"http://{a.addr}/v2/{a.repo}/manifests/{ref_digest}", data, {"Content-Type": kitlib.OCI_MANIFEST})

    tag = a.digest.replace(":", "-")
    old = kitlib.get_manifest(a.addr, a.repo, tag, kitlib.OCI_INDEX)
    index = json.loads(old) if old else {"schemaVersion": 2, "mediaType": kitlib.OCI_INDEX, "manifests": []}
    index["manifests"].append({"mediaType": kitlib.OCI_MANIFEST, "digest": ref_digest, "size": len(data), "artifactType": BUNDLE})
    index["manifests"].sort(key=lambda m: m["digest"])
    kitlib.put_manifest(a.addr, a.repo, tag, index, kitlib.OCI_INDEX)
    print(ref_digest)


if __name__ == "__main__":
    main()
