#!/usr/bin/env python3
"""Write a cosign/sigstore key pair; sign an image in a registry with it.

Usage: cosign_key.py OUTDIR PASSPHRASE
       cosign_key.py sign KEYFILE PASSPHRASE-FILE HOST:PORT/REPO:TAG   (plain-HTTP registry)

`sign` exists because Debian's skopeo 1.9.3 is built with sigstore disabled ("Debian-local
change: sigstore disabled" for --sign-by-sigstore-private-key, before it even reads the key). It
decrypts KEYFILE and attaches a signature the way containers/image does (use-sigstore-attachments):
payload = json.Marshal of {"critical": {"identity": {"docker-reference": REF}, "image":
{"docker-manifest-digest": D}, "type": "cosign container image signature"}, "optional":
{"creator", "timestamp"}} (keys sorted, compact), ECDSA-P256/SHA-256 DER signature, base64 in the
layer annotation dev.cosignproject.cosign/signature; the layer (media type
application/vnd.dev.cosign.simplesigning.v1+json) goes into an OCI manifest tagged
sha256-<hex of D>.sig, appended to an existing one. It prints the manifest digest D.

Writes OUTDIR/cosign.key (PEM "ENCRYPTED COSIGN PRIVATE KEY") and OUTDIR/cosign.pub (PEM PKIX
"PUBLIC KEY"), an ECDSA P-256 pair, and prints the public key's fingerprint
(SHA256:<hex of sha256 of the SubjectPublicKeyInfo DER>), as hoist records it.

The private key file is the format containers/image and cosign read: the PEM body is a JSON
document (go-securesystemslib "encrypted" format)
  {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": b64(32 bytes)},
   "cipher": {"name": "nacl/secretbox", "nonce": b64(24 bytes)},
   "ciphertext": b64(secretbox(PKCS#8 DER of the private key))}
with the secretbox key = scrypt(passphrase, salt, N, r, p, 32 bytes). The scrypt parameters are
the "legacy" set (2^15, 8, 1), which every version of the decrypting library accepts (newer ones
accept only a fixed list of parameter sets). Needs `cryptography` and PyNaCl
(python3 -m pip install pynacl).
"""

import base64
import hashlib
import json
import os
import sys
import time
import urllib.request

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
import nacl.secret

SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pem(kind: str, der: bytes) -> bytes:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return ("-----BEGIN %s-----\n%s\n-----END %s-----\n" % (kind, "\n".join(lines), kind)).encode()


def decrypt_key(pem_bytes: bytes, passphrase: bytes):
    text = pem_bytes.decode()
    kind = text.split("-----BEGIN ", 1)[1].split("-----", 1)[0]
    if kind not in ("ENCRYPTED COSIGN PRIVATE KEY", "ENCRYPTED SIGSTORE PRIVATE KEY"):
        raise SystemExit("unsupported PEM type " + kind)
    body = text.split("-----")[2]
    doc = json.loads(base64.b64decode("".join(body.split())))
    assert doc["kdf"]["name"] == "scrypt" and doc["cipher"]["name"] == "nacl/secretbox"
    prm = doc["kdf"]["params"]
    box_key = Scrypt(salt=base64.b64decode(doc["kdf"]["salt"]), length=32, n=prm["N"], r=prm["r"], p=prm["p"]).derive(passphrase)
    der = nacl.secret.SecretBox(box_key).decrypt(base64.b64decode(doc["ciphertext"]), base64.b64decode(doc["cipher"]["nonce"]))
    return serialization.load_der_private_key(der, None)


def http(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req) as r:
        return r.read(), r.headers


def put_blob(base, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _, h = http("POST", base + "/blobs/uploads/", b"")
    loc = h["Location"]
    if loc.startswith("/"):
        loc = base.split("/v2/")[0] + loc
    sep = "&" if "?" in loc else "?"
    http("PUT", loc + sep + "digest=" + digest, data, {"Content-Type": "application/octet-stream"})
    return digest


def sign(key_file: str, pass_file: str, ref: str) -> int:
    from cryptography.hazmat.primitives import hashes

    key = decrypt_key(open(key_file, "rb").read(), open(pass_file, "rb").read())
    host, rest = ref.split("/", 1)
    repo, tag = rest.rsplit(":", 1)
    base = "http://%s/v2/%s" % (host, repo)
    accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
    manifest, _ = http("GET", base + "/manifests/" + tag, headers={"Accept": accept})
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    payload = json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": ref},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": {"creator": "hoist tests/kit/cosign_key.py", "timestamp": int(time.time())},
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    layer = {
        "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "digest": put_blob(base, payload),
        "size": len(payload),
        "annotations": {"dev.cosignproject.cosign/signature": b64(signature)},
    }
    sig_tag = digest.replace(":", "-") + ".sig"
    layers = []
    try:
        old, _ = http("GET", base + "/manifests/" + sig_tag, headers={"Accept": accept})
        layers = json.loads(old)["layers"]
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
    layers.append(layer)
    config = json.dumps(
        {"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}},
        separators=(",", ":"),
    ).encode()
    sig_manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put_blob(base, config), "size": len(config)},
            "layers": layers,
        },
        separators=(",", ":"),
    ).encode()
    http("PUT", base + "/manifests/" + sig_tag, sig_manifest, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    print(digest)
    return 0


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "sign":
        return sign(sys.argv[2], sys.argv[3], sys.argv[4])
    if len(sys.argv) != 3:
        print("usage: cosign_key.py OUTDIR PASSPHRASE", file=sys.stderr)
        return 2
    outdir, passphrase = sys.argv[1], sys.argv[2].encode()
    os.makedirs(outdir, exist_ok=True)

    key = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    salt = os.urandom(32)
    box_key = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase)
    nonce = os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    # .ciphertext is the Poly1305 tag followed by the encrypted bytes, without the nonce: what
    # golang.org/x/crypto/nacl/secretbox.Seal produces.
    sealed = nacl.secret.SecretBox(box_key).encrypt(pkcs8, nonce).ciphertext
    doc = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": b64(salt),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        "ciphertext": b64(sealed),
    }
    encrypted = json.dumps(doc, separators=(",", ":")).encode()

    key_path = os.path.join(outdir, "cosign.key")
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem("ENCRYPTED COSIGN PRIVATE KEY", encrypted))
    with open(os.path.join(outdir, "cosign.pub"), "wb") as f:
        f.write(pem("PUBLIC KEY", spki))
    print("SHA256:" + hashlib.sha256(spki).hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
