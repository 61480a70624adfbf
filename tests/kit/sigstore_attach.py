#!/usr/bin/env python3
"""Attach a sigstore signature to an image in a registry, as skopeo's --sign-by-sigstore-private-key
would (Debian's skopeo 1.9.3 has sigstore *signing* patched out: "Debian-local change: sigstore
disabled"; its *verification* works, which is what the differential test compares with).

Usage: sigstore_attach.py KEYDIR PASSPHRASE ADDR REPO MANIFEST_DIGEST IDENTITY [SIGNED_DIGEST]

KEYDIR holds cosign.key as tests/kit/cosign_key.py writes it (decrypted here with PASSPHRASE:
scrypt + nacl/secretbox, PKCS#8 inside). The payload is containers-signature(5)'s sigstore form
  {"critical": {"identity": {"docker-reference": IDENTITY},
                "image": {"docker-manifest-digest": SIGNED_DIGEST (default MANIFEST_DIGEST)},
                "type": "cosign container image signature"},
   "optional": {"creator": ..., "timestamp": ...}}
signed with ECDSA-P256/SHA-256 (DER, base64 in the layer annotation
dev.cosignproject.cosign/signature). It is pushed over the registry's plain-HTTP API as the
only layer (media type application/vnd.dev.cosign.simplesigning.v1+json) of an OCI manifest
tagged sha256-<hex>.sig in REPO, where use-sigstore-attachments readers look.
Needs `cryptography` and PyNaCl (python3 -m pip install pynacl).
"""

import base64
import hashlib
import json
import sys
import urllib.request

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
import nacl.secret


def private_key(keydir, passphrase):
    text = open(f"{keydir}/cosign.key").read()
    body = "".join(l for l in text.splitlines() if l and not l.startswith("-----"))
    doc = json.loads(base64.b64decode(body))
    kdf = doc["kdf"]
    assert kdf["name"] == "scrypt" and doc["cipher"]["name"] == "nacl/secretbox", doc
    p = kdf["params"]
    key = Scrypt(salt=base64.b64decode(kdf["salt"]), length=32, n=p["N"], r=p["r"], p=p["p"]).derive(
        passphrase.encode()
    )
    der = nacl.secret.SecretBox(key).decrypt(
        base64.b64decode(doc["ciphertext"]), base64.b64decode(doc["cipher"]["nonce"])
    )
    return serialization.load_der_private_key(der, password=None)


def request(method, url, data=None, ctype=None):
    req = urllib.request.Request(url, data=data, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req) as r:
        return r.status, r.headers


def push_blob(addr, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _, h = request("POST", f"http://{addr}/v2/{repo}/blobs/uploads/", b"")
    loc = h["Location"]
    if loc.startswith("/"):
        loc = f"http://{addr}{loc}"
    sep = "&" if "?" in loc else "?"
    request("PUT", f"{loc}{sep}digest={digest}", data, "application/octet-stream")
    return digest


def main():
    keydir, passphrase, addr, repo, digest, identity = sys.argv[1:7]
    signed = sys.argv[7] if len(sys.argv) > 7 else digest
    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": identity},
                "image": {"docker-manifest-digest": signed},
                "type": "cosign container image signature",
            },
            "optional": {"creator": "hoist tests/kit/sigstore_attach.py", "timestamp": 1700000000},
        },
        separators=(",", ":"),
    ).encode()
    sig = private_key(keydir, passphrase).sign(payload, ec.ECDSA(hashes.SHA256()))
    config = b"{}"
    layer = {
        "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "digest": push_blob(addr, repo, payload),
        "size": len(payload),
        "annotations": {"dev.cosignproject.cosign/signature": base64.b64encode(sig).decode()},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": push_blob(addr, repo, config),
            "size": len(config),
        },
        "layers": [layer],
    }
    tag = digest.replace(":", "-") + ".sig"
    request(
        "PUT",
        f"http://{addr}/v2/{repo}/manifests/{tag}",
        json.dumps(manifest).encode(),
        "application/vnd.oci.image.manifest.v1+json",
    )


if __name__ == "__main__":
    main()
