"""Shared pieces of the signature test kit (tests/kit/*.py): cosign-format keys, a plain-HTTP
registry client, a throwaway Fulcio-style CA and Rekor key, and Rekor SETs.

Everything here follows the public formats, made with `cryptography` (and PyNaCl for cosign's
encrypted keys), so that hoist is tested against what cosign, Fulcio and Rekor produce rather than
against its own writer:
- cosign keys: PEM "ENCRYPTED COSIGN PRIVATE KEY" whose body is go-securesystemslib's JSON
  (scrypt + nacl/secretbox around PKCS#8 DER).
- Fulcio certificates: root CA -> intermediate CA -> leaf; the leaf has an empty subject, the
  signer's e-mail as SAN rfc822Name, EKU codeSigning, KeyUsage digitalSignature (critical), and
  the OIDC issuer in extension 1.3.6.1.4.1.57264.1.1 (raw string) and .1.8 (DER UTF8String).
- Rekor SET: ECDSA-P256/SHA-256 (DER) by the log key over the RFC 8785 form of
  {"body": b64(entry body), "integratedTime": T, "logID": hex(sha256(log key SPKI)), "logIndex": N};
  for the members used here (ASCII strings, small integers) that is json.dumps(sort_keys=True,
  separators=(",", ":")).
"""

import base64
import datetime
import hashlib
import json
import os
import urllib.error
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pem(kind: str, der: bytes) -> bytes:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return ("-----BEGIN %s-----\n%s\n-----END %s-----\n" % (kind, "\n".join(lines), kind)).encode()


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# --- keys


def cosign_private_key(keydir: str, passphrase: str):
    """Decrypts KEYDIR/cosign.key (as tests/kit/cosign_key.py writes it)."""
    import nacl.secret

    text = open(os.path.join(keydir, "cosign.key")).read()
    body = "".join(l for l in text.splitlines() if l and not l.startswith("-----"))
    doc = json.loads(base64.b64decode(body))
    kdf = doc["kdf"]
    assert kdf["name"] == "scrypt" and doc["cipher"]["name"] == "nacl/secretbox", doc
    p = kdf["params"]
    key = Scrypt(salt=base64.b64decode(kdf["salt"]), length=32, n=p["N"], r=p["r"], p=p["p"]).derive(passphrase.encode())
    der = nacl.secret.SecretBox(key).decrypt(base64.b64decode(doc["ciphertext"]), base64.b64decode(doc["cipher"]["nonce"]))
    return serialization.load_der_private_key(der, password=None)


def spki_der(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_pem(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def ecdsa_sign(key, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def load_pem_key(path: str):
    return serialization.load_pem_private_key(open(path, "rb").read(), password=None)


def write_pem_key(path: str, key):
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# --- a throwaway sigstore: Fulcio-style CA and a Rekor key

OID_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")


def _ca(name: str, key, issuer_name, issuer_key, path_len):
    now = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hoist tests"), x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365 * 30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(issuer_key or key, hashes.SHA384() if isinstance(key.curve, ec.SECP384R1) else hashes.SHA256())
    )


def make_pki(outdir: str, prefix: str = "fulcio"):
    """OUTDIR/{prefix}-root.pem, -root.key, -intermediate.pem, -intermediate.key (P-384 root, P-256
    intermediate, as Fulcio's public instance) and {prefix}-ca.pem (intermediate then root: what a
    policy's caPath needs for bundles, which carry only the leaf)."""
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = _ca(prefix + "-root", root_key, None, None, 1)
    int_key = ec.generate_private_key(ec.SECP256R1())
    inter = _ca(prefix + "-intermediate", int_key, root.subject, root_key, 0)
    for name, cert, key in (("root", root, root_key), ("intermediate", inter, int_key)):
        open(os.path.join(outdir, f"{prefix}-{name}.pem"), "wb").write(cert.public_bytes(serialization.Encoding.PEM))
        write_pem_key(os.path.join(outdir, f"{prefix}-{name}.key"), key)
    with open(os.path.join(outdir, f"{prefix}-ca.pem"), "wb") as f:
        f.write(inter.public_bytes(serialization.Encoding.PEM) + root.public_bytes(serialization.Encoding.PEM))


def make_rekor(outdir: str, name: str = "rekor"):
    """OUTDIR/NAME.pub and NAME.key: a log key (ECDSA P-256)."""
    key = ec.generate_private_key(ec.SECP256R1())
    write_pem_key(os.path.join(outdir, name + ".key"), key)
    open(os.path.join(outdir, name + ".pub"), "wb").write(public_pem(key.public_key()))


def fulcio_leaf(pkidir: str, email: str, issuer: str, not_before: int, prefix: str = "fulcio"):
    """A Fulcio-style leaf for a fresh P-256 key, valid 10 minutes from NOT_BEFORE (seconds since
    the epoch). Returns (private key, leaf PEM, chain PEM = intermediate then root)."""
    return leaf(pkidir, prefix, not_before, 600, email=email, issuer=issuer)


def pki_leaf(pkidir: str, email: str, hostname: str, prefix: str = "pki"):
    """A leaf of an ordinary PKI for a fresh P-256 key, valid from a minute ago for a day (a `pki`
    requirement checks certificates at the current time), with EMAIL and/or HOSTNAME (empty: none)
    as SAN. Returns (private key, leaf PEM, chain PEM)."""
    import time

    return leaf(pkidir, prefix, int(time.time()) - 60, 86400, email=email or None, hostname=hostname or None)


def leaf(pkidir, prefix, not_before, seconds, email=None, issuer=None, hostname=None):
    inter = x509.load_pem_x509_certificate(open(os.path.join(pkidir, f"{prefix}-intermediate.pem"), "rb").read())
    inter_key = load_pem_key(os.path.join(pkidir, f"{prefix}-intermediate.key"))
    root_pem = open(os.path.join(pkidir, f"{prefix}-root.pem"), "rb").read()
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime.fromtimestamp(not_before, tz=datetime.timezone.utc)
    names = ([x509.RFC822Name(email)] if email else []) + ([x509.DNSName(hostname)] if hostname else [])
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(inter.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(seconds=seconds))
        .add_extension(x509.SubjectAlternativeName(names), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    )
    if issuer:
        utf8 = issuer.encode()
        assert len(utf8) < 128
        b = b.add_extension(x509.UnrecognizedExtension(OID_ISSUER_V1, utf8), critical=False)
        b = b.add_extension(x509.UnrecognizedExtension(OID_ISSUER_V2, bytes([0x0C, len(utf8)]) + utf8), critical=False)
    cert = b.sign(inter_key, hashes.SHA256())
    chain = inter.public_bytes(serialization.Encoding.PEM) + root_pem
    return key, cert.public_bytes(serialization.Encoding.PEM), chain


def rekor_set(rekor_dir: str, body: dict, integrated_time: int, log_index: int = 42, name: str = "rekor"):
    """Logs BODY (a Rekor entry body) in the throwaway log: returns (canonicalized body bytes,
    log ID hex, SET signature bytes, the SET payload dict)."""
    key = load_pem_key(os.path.join(rekor_dir, name + ".key"))
    body_bytes = canonical(body)
    log_id = hashlib.sha256(spki_der(key.public_key())).hexdigest()
    payload = {"body": b64(body_bytes), "integratedTime": integrated_time, "logID": log_id, "logIndex": log_index}
    return body_bytes, log_id, ecdsa_sign(key, canonical(payload)), payload


# --- who signs (the scripts' shared options)

NOT_BEFORE = 1767225600  # 2026-01-01T00:00:00Z: Fulcio certificates are checked at the logged time.


def add_signer_args(ap):
    """--key KEYDIR PASSPHRASE | --fulcio PKIDIR EMAIL ISSUER | --pki PKIDIR EMAIL HOSTNAME, and
    --rekor DIR, --logged-after SECONDS (default 60)."""
    ap.add_argument("--key", nargs=2, metavar=("KEYDIR", "PASSPHRASE"))
    ap.add_argument("--fulcio", nargs=3, metavar=("PKIDIR", "EMAIL", "ISSUER"))
    ap.add_argument("--pki", nargs=3, metavar=("PKIDIR", "EMAIL", "HOSTNAME"))
    ap.add_argument("--rekor")
    ap.add_argument("--logged-after", type=int, default=60)


def signer(a):
    """(private key, signer PEM, chain PEM or None) for the parsed signer options."""
    assert [bool(a.key), bool(a.fulcio), bool(a.pki)].count(True) == 1, "exactly one of --key, --fulcio, --pki"
    if a.key:
        key = cosign_private_key(*a.key)
        return key, public_pem(key.public_key()), None
    if a.fulcio:
        return fulcio_leaf(a.fulcio[0], a.fulcio[1], a.fulcio[2], NOT_BEFORE)
    return pki_leaf(*a.pki)


# --- a plain-HTTP registry


def http(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req) as r:
        return r.read(), r.headers


def push_blob(addr: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _, h = http("POST", f"http://{addr}/v2/{repo}/blobs/uploads/", b"")
    loc = h["Location"]
    if loc.startswith("/"):
        loc = f"http://{addr}{loc}"
    sep = "&" if "?" in loc else "?"
    http("PUT", f"{loc}{sep}digest={digest}", data, {"Content-Type": "application/octet-stream"})
    return digest


def put_manifest(addr: str, repo: str, ref: str, doc: dict, media_type: str):
    """PUTs DOC at REF; returns (digest, size) of the bytes sent."""
    data = json.dumps(doc, separators=(",", ":")).encode()
    http("PUT", f"http://{addr}/v2/{repo}/manifests/{ref}", data, {"Content-Type": media_type})
    return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)


def get_manifest(addr: str, repo: str, ref: str, accept: str):
    """The manifest's bytes, or None when the registry has none at REF."""
    try:
        data, _ = http("GET", f"http://{addr}/v2/{repo}/manifests/{ref}", headers={"Accept": accept})
        return data
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
