#!/usr/bin/env python3
"""Attach a sigstore signature to an image in a registry, as skopeo's --sign-by-sigstore-private-key
or cosign (v2, `.sig` tags) would (Debian's skopeo 1.9.3 has sigstore *signing* patched out:
"Debian-local change: sigstore disabled").

Usage: sigstore_attach.py ADDR REPO MANIFEST_DIGEST IDENTITY [--signed-digest D]
                          (--key KEYDIR PASSPHRASE | --fulcio PKIDIR EMAIL ISSUER |
                           --pki PKIDIR EMAIL HOSTNAME)
                          [--rekor DIR] [--logged-after SECONDS]

The payload is containers-signature(5)'s sigstore form
  {"critical": {"identity": {"docker-reference": IDENTITY},
                "image": {"docker-manifest-digest": D (default MANIFEST_DIGEST)},
                "type": "cosign container image signature"},
   "optional": {"creator": ..., "timestamp": ...}}
signed with ECDSA-P256/SHA-256 (DER, base64 in the layer annotation
dev.cosignproject.cosign/signature), either by the cosign-format key in KEYDIR (tests/kit/cosign_key.py)
or by a fresh key whose Fulcio-style certificate for EMAIL from ISSUER is issued by PKIDIR's
intermediate (tests/kit/sigstore_pki.py), or by a fresh key with a day-long certificate of PKIDIR's
ordinary PKI ("pki-" files) for EMAIL and/or HOSTNAME (empty: left out); then the certificate goes into
dev.sigstore.cosign/certificate and intermediate + root into dev.sigstore.cosign/chain. With
--rekor, the signature is "logged" in DIR's log: a hashedrekord v0.0.1 entry (payload hash,
signature, key or certificate PEM) and its SET in dev.sigstore.cosign/bundle, integrated at the
certificate's start + SECONDS (default 60; past 600 the certificate had expired when logged).

It is appended as a layer (media type application/vnd.dev.cosign.simplesigning.v1+json) to the OCI
manifest tagged sha256-<hex>.sig in REPO, where use-sigstore-attachments readers look.
"""

import argparse
import hashlib
import json

import kitlib
from kitlib import NOT_BEFORE, b64


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("repo")
    ap.add_argument("digest")
    ap.add_argument("identity")
    ap.add_argument("--signed-digest")
    kitlib.add_signer_args(ap)
    a = ap.parse_args()

    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": a.identity},
                "image": {"docker-manifest-digest": a.signed_digest or a.digest},
                "type": "cosign container image signature",
            },
            "optional": {"creator": "hoist tests/kit/sigstore_attach.py", "timestamp": 1700000000},
        },
        separators=(",", ":"),
    ).encode()
    annotations = {}
    key, signer_pem, chain = kitlib.signer(a)
    if chain is not None:
        annotations["dev.sigstore.cosign/certificate"] = signer_pem.decode()
        annotations["dev.sigstore.cosign/chain"] = chain.decode()
    sig = kitlib.ecdsa_sign(key, payload)
    annotations["dev.cosignproject.cosign/signature"] = b64(sig)
    if a.rekor:
        body = {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
                "signature": {"content": b64(sig), "publicKey": {"content": b64(signer_pem)}},
            },
        }
        _, _, set_sig, set_payload = kitlib.rekor_set(a.rekor, body, NOT_BEFORE + a.logged_after)
        annotations["dev.sigstore.cosign/bundle"] = json.dumps(
            {"SignedEntryTimestamp": b64(set_sig), "Payload": set_payload}, separators=(",", ":")
        )

    layer = {
        "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "digest": kitlib.push_blob(a.addr, a.repo, payload),
        "size": len(payload),
        "annotations": annotations,
    }
    tag = a.digest.replace(":", "-") + ".sig"
    layers = []
    old = kitlib.get_manifest(a.addr, a.repo, tag, kitlib.OCI_MANIFEST)
    if old is not None:
        layers = json.loads(old)["layers"]
    layers.append(layer)
    config = b"{}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": kitlib.OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": kitlib.push_blob(a.addr, a.repo, config),
            "size": len(config),
        },
        "layers": layers,
    }
    kitlib.put_manifest(a.addr, a.repo, tag, manifest, kitlib.OCI_MANIFEST)


if __name__ == "__main__":
    main()
