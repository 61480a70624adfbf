#!/usr/bin/env python3
"""Write a cosign/sigstore key pair; sign an image in a registry with it.

Usage: cosign_key.py OUTDIR PASSPHRASE

(Debian's skopeo 1.9.3 is built with sigstore signing disabled; tests/kit/sigstore_attach.py
signs with the key instead.)

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

import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
import nacl.secret

from kitlib import b64, pem

SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1


def main() -> int:
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
