//! GPG "simple signing" (containers-signature(5)): a signature is a binary OpenPGP *signed
//! message* as `gpg --sign` writes it (possibly inside one compressed-data packet):
//! one-pass signature, literal data (the JSON payload), signature.
//!
//! [`verify`] authenticates the blob and returns only the literal data; nothing here parses the
//! payload. What is refused, and why:
//! - anything but exactly `[compressed](one-pass signature, literal data, signature)`: cleartext
//!   (`--clearsign`), detached signatures, encrypted messages, unsigned literal data, ASCII armor
//!   (c/image and skopeo write binary blobs), nested compression, stray packets;
//! - more than one signature (or one-pass signature) packet, even if one of them is good (the
//!   gpgme mechanism of containers/image requires exactly one);
//! - a signature by a key that is not the primary key or a signing subkey (valid binding signature
//!   with the sign flag and a valid back-signature) of a trusted certificate;
//! - a signature that does not verify over the literal data, is not of type binary/text, uses MD5
//!   or SHA-1, has an unknown critical subpacket, predates its key, or has expired;
//! - an expired key (primary or the signing subkey) at the signature's creation time or now —
//!   gpg reports a signature by a key expired now as `EXPKEYSIG`, and the gpgme mechanism rejects
//!   any signature whose status is not plain valid; the expiration is the one of the newest valid
//!   self-signature (binding signature for a subkey);
//! - a revoked key: a valid key revocation signature by the primary key (or a valid subkey
//!   revocation for the signing subkey), whatever its reason, as gpg does; third-party
//!   (designated revoker) revocations cannot be verified without the revoker's key and are ignored.

use crate::fsutil::rfc3339;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use pgp::composed::{Deserializable, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{OnePassSignature, Packet, PacketParser, Signature, SignatureType, SubpacketData};
use pgp::types::{KeyDetails, Tag};

/// An authenticated payload and the trusted certificate whose key made the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The literal data, exactly as signed.
    pub payload: Vec<u8>,
    /// The signer's primary key fingerprint, uppercase hex (also when a subkey signed).
    pub fingerprint: String,
}

/// Why a simple-signing blob was refused. Each message is one line, printed as is by the CLI.
#[derive(Debug, thiserror::Error)]
pub enum SimpleError {
    #[error("not an OpenPGP signed message")]
    NotSigned,
    #[error("not an OpenPGP signed message: {0}")]
    Malformed(String),
    #[error("cleartext-signed, not a signed message")]
    Cleartext,
    #[error("detached signature, not a signed message")]
    Detached,
    #[error("encrypted message, not a signed message")]
    Encrypted,
    #[error("ASCII-armored message, not a binary signed message")]
    Armored,
    #[error("literal data without a signature, not a signed message")]
    Unsigned,
    #[error("{0} signatures in one blob (exactly one is allowed)")]
    SignatureCount(usize),
    #[error("signed by key {key}, not one of {trusted}")]
    UntrustedKey { key: String, trusted: String },
    #[error("signature by key {key} does not verify: {reason}")]
    BadSignature { key: String, reason: String },
    #[error("signature by key {key} expired at {at}")]
    SignatureExpired { key: String, at: String },
    #[error("key {key} expired at {at}")]
    KeyExpired { key: String, at: String },
    #[error("key {key} is revoked")]
    Revoked { key: String },
    #[error("key {key} cannot be used for signing: {reason}")]
    KeyUnusable { key: String, reason: String },
    #[error("cannot read trusted key: {0}")]
    TrustedKey(String),
}

/// Largest decompressed content accepted (payloads are a few hundred bytes).
const MAX_DECOMPRESSED: u64 = 4 << 20;

/// Verifies `blob` against the certificates in `trusted` (contents of key files, armored or
/// binary, each possibly holding several keys) and returns the signed literal data.
pub fn verify(blob: &[u8], trusted: &[Vec<u8>]) -> Result<Signed, SimpleError> {
    verify_at(blob, trusted, now())
}

/// [`verify`] with "now" given (seconds since the epoch).
fn verify_at(blob: &[u8], trusted: &[Vec<u8>], now: u64) -> Result<Signed, SimpleError> {
    let certs = read_trusted(trusted)?;
    let (ops, data, sig) = signed_message(blob)?;
    if !ops.matches(&sig) {
        return Err(SimpleError::Malformed("the one-pass signature does not match the signature".into()));
    }

    // Every key of a trusted certificate the signature names (all of them if it names none).
    let mut candidates: Vec<(&SignedPublicKey, Option<usize>)> = Vec::new();
    for cert in &certs {
        if names(&sig, &cert.primary_key) {
            candidates.push((cert, None));
        }
        for (i, sub) in cert.public_subkeys.iter().enumerate() {
            if names(&sig, &sub.key) {
                candidates.push((cert, Some(i)));
            }
        }
    }
    if candidates.is_empty() {
        let key = sig
            .issuer_fingerprint()
            .first()
            .map(|f| format!("{f:X}"))
            .or_else(|| sig.issuer_key_id().first().map(hex::encode_upper))
            .unwrap_or_else(|| "(unnamed)".into());
        let mut fprs: Vec<String> = certs.iter().map(|c| fpr(&c.primary_key)).collect();
        fprs.dedup();
        return Err(SimpleError::UntrustedKey { key, trusted: fprs.join(", ") });
    }

    let mut failure = None;
    for (cert, sub) in candidates {
        let result = match sub {
            None => sig.verify(&cert.primary_key, &data[..]),
            Some(i) => sig.verify(&cert.public_subkeys[i].key, &data[..]),
        };
        match result {
            Ok(()) => {
                check_signature(&sig, cert, sub, now)?;
                return Ok(Signed { payload: data, fingerprint: fpr(&cert.primary_key) });
            }
            Err(e) => {
                failure.get_or_insert((fpr(&cert.primary_key), e.to_string()));
            }
        }
    }
    let (key, reason) = failure.unwrap_or_default();
    Err(SimpleError::BadSignature { key, reason })
}

/// Whether `sig`'s issuer subpackets name `key` (or name nobody).
fn names(sig: &Signature, key: &impl KeyDetails) -> bool {
    let (ids, fprs) = (sig.issuer_key_id(), sig.issuer_fingerprint());
    (ids.is_empty() && fprs.is_empty())
        || ids.iter().any(|id| **id == key.legacy_key_id())
        || fprs.iter().any(|f| **f == key.fingerprint())
}

fn fpr(key: &impl KeyDetails) -> String {
    format!("{:X}", key.fingerprint())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Parses every trusted key file; any unreadable file is an error.
fn read_trusted(trusted: &[Vec<u8>]) -> Result<Vec<SignedPublicKey>, SimpleError> {
    if trusted.is_empty() {
        return Err(SimpleError::TrustedKey("no trusted keys given".into()));
    }
    let mut certs = Vec::new();
    for data in trusted {
        let before = certs.len();
        let text = data.trim_ascii_start();
        if text.starts_with(b"-----BEGIN ") {
            // One or more armored blocks (e.g. `cat a.asc b.asc`).
            let mut rest = text;
            while let Some(start) = find(rest, b"-----BEGIN ") {
                let block = &rest[start..];
                let end = find(block, b"-----END ")
                    .and_then(|e| find(&block[e..], b"\n").map(|n| e + n + 1))
                    .unwrap_or(block.len());
                let (keys, _) = SignedPublicKey::from_armor_many(&block[..end])
                    .map_err(|e| SimpleError::TrustedKey(e.to_string()))?;
                for key in keys {
                    certs.push(key.map_err(|e| SimpleError::TrustedKey(e.to_string()))?);
                }
                rest = &block[end..];
            }
        } else {
            let keys =
                SignedPublicKey::from_bytes_many(&data[..]).map_err(|e| SimpleError::TrustedKey(e.to_string()))?;
            for key in keys {
                certs.push(key.map_err(|e| SimpleError::TrustedKey(e.to_string()))?);
            }
        }
        if certs.len() == before {
            return Err(SimpleError::TrustedKey("no OpenPGP public key found in key data".into()));
        }
    }
    Ok(certs)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The one-pass signature, literal data and signature of a signed message.
fn signed_message(blob: &[u8]) -> Result<(OnePassSignature, Vec<u8>, Signature), SimpleError> {
    let text = blob.trim_ascii_start();
    if text.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----") {
        return Err(SimpleError::Cleartext);
    }
    if text.starts_with(b"-----BEGIN PGP SIGNATURE-----") {
        return Err(SimpleError::Detached);
    }
    if text.starts_with(b"-----BEGIN PGP MESSAGE-----") {
        return Err(SimpleError::Armored);
    }
    if text.starts_with(b"-----BEGIN ") {
        return Err(SimpleError::NotSigned);
    }
    let mut packets = packets(blob)?;
    if let [Packet::CompressedData(c)] = &packets[..] {
        let malformed = |e: &dyn std::fmt::Display| SimpleError::Malformed(format!("compressed data: {e}"));
        let mut inner = Vec::new();
        let mut d = c.decompress().map_err(|e| malformed(&e))?;
        (&mut d).take(MAX_DECOMPRESSED + 1).read_to_end(&mut inner).map_err(|e| malformed(&e))?;
        if inner.len() as u64 > MAX_DECOMPRESSED {
            return Err(malformed(&"too large"));
        }
        // Old-format packets of indeterminate length (as gpg writes) extend to the end of the
        // blob: refuse anything after the end of the compressed stream.
        if !d.into_inner().is_empty() {
            return Err(malformed(&"data after the end of the compressed stream"));
        }
        packets = self::packets(&inner)?;
        if packets.iter().any(|p| matches!(p, Packet::CompressedData(_))) {
            return Err(SimpleError::Malformed("nested compressed data".into()));
        }
    }
    classify(packets)
}

fn packets(bytes: &[u8]) -> Result<Vec<Packet>, SimpleError> {
    let mut out = Vec::new();
    for p in PacketParser::new(bytes) {
        match p {
            Ok(p) => out.push(p),
            Err(_) if out.is_empty() => return Err(SimpleError::NotSigned),
            Err(e) => return Err(SimpleError::Malformed(e.to_string())),
        }
    }
    if out.is_empty() {
        return Err(SimpleError::NotSigned);
    }
    Ok(out)
}

fn classify(packets: Vec<Packet>) -> Result<(OnePassSignature, Vec<u8>, Signature), SimpleError> {
    let count = |f: fn(&Packet) -> bool| packets.iter().filter(|p| f(p)).count();
    let encrypted = count(|p| {
        matches!(
            p,
            Packet::PublicKeyEncryptedSessionKey(_)
                | Packet::SymKeyEncryptedSessionKey(_)
                | Packet::SymEncryptedData(_)
                | Packet::SymEncryptedProtectedData(_)
                | Packet::GnupgAeadData(_)
        )
    });
    if encrypted > 0 {
        return Err(SimpleError::Encrypted);
    }
    let literals = count(|p| matches!(p, Packet::LiteralData(_)));
    let sigs = count(|p| matches!(p, Packet::Signature(_)));
    let opss = count(|p| matches!(p, Packet::OnePassSignature(_)));
    if literals == 0 {
        return Err(if sigs > 0 && sigs == packets.len() { SimpleError::Detached } else { SimpleError::NotSigned });
    }
    if literals > 1 {
        return Err(SimpleError::Malformed(format!("{literals} literal data packets")));
    }
    if sigs == 0 && opss == 0 {
        return Err(SimpleError::Unsigned);
    }
    if sigs > 1 || opss > 1 {
        return Err(SimpleError::SignatureCount(sigs.max(opss)));
    }
    let mut it = packets.into_iter();
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(Packet::OnePassSignature(ops)), Some(Packet::LiteralData(lit)), Some(Packet::Signature(sig)), None) => {
            if ops.is_nested() {
                return Err(SimpleError::Malformed("one-pass signature announces another one".into()));
            }
            Ok((ops, lit.data().to_vec(), sig))
        }
        _ => Err(SimpleError::Malformed(
            "expected one-pass signature, literal data, signature (as gpg --sign writes)".into(),
        )),
    }
}

/// Everything about a cryptographically valid signature by `cert` (its subkey `sub`, if any)
/// besides the cryptography: signature properties, key validity, expiry and revocation.
fn check_signature(sig: &Signature, cert: &SignedPublicKey, sub: Option<usize>, now: u64) -> Result<(), SimpleError> {
    let primary = &cert.primary_key;
    let name = match sub {
        None => fpr(primary),
        Some(i) => format!("{} (subkey of {})", fpr(&cert.public_subkeys[i].key), fpr(primary)),
    };
    let bad = |reason: &str| SimpleError::BadSignature { key: name.clone(), reason: reason.to_string() };

    if !matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text)) {
        return Err(bad(&format!("signature type {:?} is not a document signature", sig.typ())));
    }
    if let Some(alg @ (HashAlgorithm::Md5 | HashAlgorithm::Sha1 | HashAlgorithm::Ripemd160)) = sig.hash_alg() {
        return Err(bad(&format!("hash algorithm {alg} is not accepted")));
    }
    if critical_unknown(sig) {
        return Err(bad("unknown critical subpacket"));
    }
    let Some(created) = sig.created().map(|t| u64::from(t.as_secs())) else {
        return Err(bad("no creation time"));
    };
    if let Some(d) = sig.signature_expiration_time().map(|d| u64::from(d.as_secs())).filter(|d| *d > 0)
        && now >= created + d
    {
        return Err(SimpleError::SignatureExpired { key: name, at: rfc3339(created + d) });
    }
    // gpg and the OpenPGP validity rules: at the later of signature creation and now.
    let at = created.max(now);

    // The primary key: revocation, newest valid self-signature, expiry.
    let primary_fpr = fpr(primary);
    if cert.details.revocation_signatures.iter().any(|r| r.verify_key(primary).is_ok()) {
        return Err(SimpleError::Revoked { key: primary_fpr });
    }
    let mut self_sigs: Vec<&Signature> = cert
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::Key) && s.verify_key(primary).is_ok())
        .collect();
    for user in &cert.details.users {
        self_sigs.extend(user.signatures.iter().filter(|s| {
            s.is_certification()
                && s.typ() != Some(SignatureType::CertRevocation)
                && s.verify_certification(primary, Tag::UserId, &user.id).is_ok()
        }));
    }
    let Some(self_sig) = newest(&self_sigs) else {
        return Err(SimpleError::KeyUnusable { key: primary_fpr, reason: "no valid self-signature".into() });
    };
    check_expiry(&primary_fpr, u64::from(primary.created_at().as_secs()), self_sig, at)?;
    if created < u64::from(primary.created_at().as_secs()) {
        return Err(bad("made before the key was created"));
    }

    match sub {
        None => {
            if has_key_flags(self_sig) && !self_sig.key_flags().sign() {
                return Err(SimpleError::KeyUnusable {
                    key: name,
                    reason: "the key flags do not allow signing".into(),
                });
            }
        }
        Some(i) => {
            let sub = &cert.public_subkeys[i];
            let sub_created = u64::from(sub.key.created_at().as_secs());
            let valid: Vec<&Signature> =
                sub.signatures.iter().filter(|s| s.verify_subkey_binding(primary, &sub.key).is_ok()).collect();
            if valid.iter().any(|s| s.typ() == Some(SignatureType::SubkeyRevocation)) {
                return Err(SimpleError::Revoked { key: name });
            }
            let bindings: Vec<&Signature> =
                valid.into_iter().filter(|s| s.typ() == Some(SignatureType::SubkeyBinding)).collect();
            let Some(binding) = newest(&bindings) else {
                return Err(SimpleError::KeyUnusable { key: name, reason: "no valid subkey binding signature".into() });
            };
            if !binding.key_flags().sign() {
                return Err(SimpleError::KeyUnusable {
                    key: name,
                    reason: "the subkey is not a signing subkey".into(),
                });
            }
            let backsig_ok =
                binding.embedded_signature().is_some_and(|b| b.verify_primary_key_binding(&sub.key, primary).is_ok());
            if !backsig_ok {
                return Err(SimpleError::KeyUnusable {
                    key: name,
                    reason: "no valid primary key binding (back-signature)".into(),
                });
            }
            check_expiry(&name, sub_created, binding, at)?;
            if created < sub_created {
                return Err(bad("made before the key was created"));
            }
        }
    }
    Ok(())
}

/// The newest signature by creation time (the later one on a tie).
fn newest<'a>(sigs: &[&'a Signature]) -> Option<&'a Signature> {
    sigs.iter().copied().max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0))
}

fn check_expiry(key: &str, key_created: u64, binding: &Signature, at: u64) -> Result<(), SimpleError> {
    if let Some(d) = binding.key_expiration_time().map(|d| u64::from(d.as_secs())).filter(|d| *d > 0)
        && at >= key_created + d
    {
        return Err(SimpleError::KeyExpired { key: key.to_string(), at: rfc3339(key_created + d) });
    }
    Ok(())
}

fn has_key_flags(sig: &Signature) -> bool {
    sig.config().is_some_and(|c| c.hashed_subpackets().any(|p| matches!(p.data, SubpacketData::KeyFlags(_))))
}

/// A critical hashed subpacket this verifier does not interpret (RFC 9580 §5.2.3.7: the
/// signature must then be treated as invalid).
fn critical_unknown(sig: &Signature) -> bool {
    sig.config().is_some_and(|c| {
        c.hashed_subpackets().any(|p| {
            p.is_critical
                && !matches!(
                    p.data,
                    SubpacketData::SignatureCreationTime(_)
                        | SubpacketData::SignatureExpirationTime(_)
                        | SubpacketData::IssuerKeyId(_)
                        | SubpacketData::IssuerFingerprint(_)
                        | SubpacketData::SignersUserID(_)
                        | SubpacketData::PolicyURI(_)
                        | SubpacketData::PreferredKeyServer(_)
                )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    const PAYLOAD: &[u8] = br#"{"critical":{"identity":{"docker-reference":"quay.io/ns/app:1"},"image":{"docker-manifest-digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},"type":"atomic container signature"},"optional":{"creator":"test","timestamp":1700000000}}"#;

    /// A throw-away GNUPGHOME; gpg must be installed (the tests fail otherwise).
    struct Gpg {
        home: tempfile::TempDir,
    }

    impl Gpg {
        fn new() -> Self {
            Gpg { home: tempfile::tempdir().unwrap() }
        }

        fn try_run(&self, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
            use std::io::Write;
            let mut child = Command::new("gpg")
                .env("GNUPGHOME", self.home.path())
                .args(["--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""])
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("gpg (GnuPG 2.2+) must be installed to run the simple-signing tests: apt-get install gnupg");
            child.stdin.take().unwrap().write_all(stdin.unwrap_or_default()).unwrap();
            child.wait_with_output().unwrap()
        }

        fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
            let out = self.try_run(args, stdin);
            assert!(out.status.success(), "gpg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
            out.stdout
        }

        /// Generates a key, returns its fingerprint. `extra` goes before `--quick-gen-key`.
        fn keygen(&self, extra: &[&str], uid: &str, algo: &str, usage: &str, expire: &str) -> String {
            let mut args = vec!["--status-fd", "1"];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["--quick-gen-key", uid, algo, usage, expire]);
            let out = String::from_utf8(self.run(&args, None)).unwrap();
            let line = out.lines().find(|l| l.starts_with("[GNUPG:] KEY_CREATED")).expect("KEY_CREATED");
            line.rsplit(' ').next().unwrap().to_string()
        }

        fn sign(&self, args: &[&str]) -> Vec<u8> {
            self.run(args, Some(PAYLOAD))
        }

        fn export(&self, keys: &[&str], armor: bool) -> Vec<u8> {
            let mut args = vec!["--export"];
            if armor {
                args.insert(0, "--armor");
            }
            args.extend_from_slice(keys);
            let out = self.run(&args, None);
            assert!(!out.is_empty(), "nothing exported for {keys:?}");
            out
        }

        fn path(&self) -> &Path {
            self.home.path()
        }
    }

    impl Drop for Gpg {
        fn drop(&mut self) {
            let _ = Command::new("gpgconf").env("GNUPGHOME", self.home.path()).args(["--kill", "gpg-agent"]).status();
        }
    }

    fn ed25519(g: &Gpg, uid: &str) -> String {
        g.keygen(&[], uid, "ed25519", "sign", "never")
    }

    #[test]
    fn good_signature_rsa_binary_and_armored_keys() {
        let g = Gpg::new();
        let a = g.keygen(&[], "A <a@example.com>", "default", "default", "never");
        assert_eq!(a.len(), 40);
        let blob = g.sign(&["-u", &a, "--sign"]);
        for armor in [false, true] {
            let signed = verify(&blob, &[g.export(&[&a], armor)]).unwrap();
            assert_eq!(signed, Signed { payload: PAYLOAD.to_vec(), fingerprint: a.clone() });
        }
        // Uncompressed and text-mode signed messages are signed messages too.
        for args in [&["--compress-algo", "none"][..], &["--textmode"][..]] {
            let mut args = args.to_vec();
            args.extend_from_slice(&["-u", &a, "--sign"]);
            assert_eq!(verify(&g.sign(&args), &[g.export(&[&a], false)]).unwrap().payload, PAYLOAD);
        }
    }

    #[test]
    fn keyrings_with_several_keys() {
        let g = Gpg::new();
        let a = ed25519(&g, "A <a@example.com>");
        let b = ed25519(&g, "B <b@example.com>");
        let c = ed25519(&g, "C <c@example.com>");
        let blob = g.sign(&["-u", &b, "--sign"]);
        let mut concatenated = g.export(&[&a], true);
        concatenated.extend(g.export(&[&b], true));
        let keyrings = [
            vec![g.export(&[&a, &b, &c], false)],
            vec![g.export(&[&a, &b, &c], true)],
            vec![concatenated],
            vec![g.export(&[&a], false), g.export(&[&c, &b], true)],
        ];
        for trusted in keyrings {
            assert_eq!(verify(&blob, &trusted).unwrap().fingerprint, b);
        }
    }

    #[test]
    fn wrong_key() {
        let g = Gpg::new();
        let a = ed25519(&g, "A <a@example.com>");
        let b = ed25519(&g, "B <b@example.com>");
        let c = ed25519(&g, "C <c@example.com>");
        let blob = g.sign(&["-u", &c, "--sign"]);
        let err = verify(&blob, &[g.export(&[&a, &b], false)]).unwrap_err();
        assert!(matches!(err, SimpleError::UntrustedKey { .. }));
        // gpg --export writes keys in keyring order, which is creation order here.
        assert_eq!(err.to_string(), format!("signed by key {c}, not one of {a}, {b}"));
    }

    #[test]
    fn two_signatures_refused() {
        let g = Gpg::new();
        let a = ed25519(&g, "A <a@example.com>");
        let b = ed25519(&g, "B <b@example.com>");
        let trusted = [g.export(&[&a, &b], false)];
        for args in [&["-u", &a, "-u", &b, "--sign"][..], &["-u", &a, "-u", &a, "-u", &b, "--sign"][..]] {
            let err = verify(&g.sign(args), &trusted).unwrap_err();
            assert!(matches!(err, SimpleError::SignatureCount(_)), "{err}");
        }
        let err = verify(&g.sign(&["-u", &a, "-u", &b, "--sign"]), &trusted).unwrap_err();
        assert_eq!(err.to_string(), "2 signatures in one blob (exactly one is allowed)");
    }

    #[test]
    fn not_signed_messages_refused() {
        let g = Gpg::new();
        let a = ed25519(&g, "A <a@example.com>");
        g.run(&["--quick-add-key", &a, "cv25519", "encr", "never"], None);
        let trusted = [g.export(&[&a], false)];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (g.sign(&["-u", &a, "--clearsign"]), "cleartext-signed, not a signed message"),
            (g.sign(&["-u", &a, "--detach-sign"]), "detached signature, not a signed message"),
            (g.sign(&["-u", &a, "--armor", "--detach-sign"]), "detached signature, not a signed message"),
            (g.sign(&["-u", &a, "--armor", "--sign"]), "ASCII-armored message, not a binary signed message"),
            (g.sign(&["--store"]), "literal data without a signature, not a signed message"),
            (g.sign(&["--store", "--compress-algo", "none"]), "literal data without a signature, not a signed message"),
            (g.sign(&["-r", &a, "--trust-model", "always", "--encrypt"]), "encrypted message, not a signed message"),
            (
                g.sign(&["-u", &a, "-r", &a, "--trust-model", "always", "--sign", "--encrypt"]),
                "encrypted message, not a signed message",
            ),
            (g.export(&[&a], false), "not an OpenPGP signed message"),
            (b"{\"critical\":{}}".to_vec(), "not an OpenPGP signed message"),
            (Vec::new(), "not an OpenPGP signed message"),
        ];
        for (blob, want) in cases {
            let err = verify(&blob, &trusted).unwrap_err();
            assert_eq!(err.to_string(), want);
        }
        // A signed message with something after it.
        let mut blob = g.sign(&["-u", &a, "--sign"]);
        blob.extend(g.sign(&["--store"]));
        assert!(matches!(verify(&blob, &trusted).unwrap_err(), SimpleError::Malformed(_)));
    }

    #[test]
    fn tampered_blob_refused() {
        let g = Gpg::new();
        let a = ed25519(&g, "A <a@example.com>");
        let trusted = [g.export(&[&a], false)];
        let blob = g.sign(&["-u", &a, "--compress-algo", "none", "--sign"]);
        let at = find(&blob, b"quay.io").expect("payload in the clear");
        let mut bad = blob.clone();
        bad[at] ^= 0x01;
        let err = verify(&bad, &trusted).unwrap_err();
        assert!(matches!(err, SimpleError::BadSignature { .. }), "{err}");
        assert!(err.to_string().starts_with(&format!("signature by key {a} does not verify: ")), "{err}");
        // Flipping a byte of the signature itself (the last byte of the blob).
        let mut bad = blob.clone();
        *bad.last_mut().unwrap() ^= 0x01;
        assert!(verify(&bad, &trusted).is_err());
        assert_eq!(verify(&blob, &trusted).unwrap().payload, PAYLOAD);
    }

    #[test]
    fn signing_subkey_reports_primary() {
        let g = Gpg::new();
        let p = g.keygen(&[], "P <p@example.com>", "ed25519", "cert", "never");
        g.run(&["--quick-add-key", &p, "ed25519", "sign", "never"], None);
        let blob = g.sign(&["-u", &p, "--sign"]);
        let listing = String::from_utf8(g.run(&["--list-packets"], Some(&blob))).unwrap();
        assert!(!listing.contains(&p[24..]), "expected the subkey to sign: {listing}");
        for armor in [false, true] {
            let signed = verify(&blob, &[g.export(&[&p], armor)]).unwrap();
            assert_eq!(signed, Signed { payload: PAYLOAD.to_vec(), fingerprint: p.clone() });
        }
    }

    /// The recipe for an expired key: create it in the past with a one-day lifetime and sign
    /// within that day, both with `--faked-system-time`.
    #[test]
    fn expired_key_refused() {
        let g = Gpg::new();
        let e = g.keygen(&["--faked-system-time", "20200101T000000"], "E <e@example.com>", "ed25519", "sign", "1d");
        let blob = g.sign(&["--faked-system-time", "20200101T001000", "-u", &e, "--sign"]);
        let trusted = [g.export(&[&e], false)];
        let err = verify(&blob, &trusted).unwrap_err();
        assert_eq!(err.to_string(), format!("key {e} expired at 2020-01-02T00:00:00Z"));
        // The same signature, checked while the key was still valid.
        assert_eq!(verify_at(&blob, &trusted, 1_577_840_000).unwrap().fingerprint, e);
    }

    #[test]
    fn expired_signing_subkey_refused() {
        let g = Gpg::new();
        let t = ["--faked-system-time", "20200101T000000"];
        let p = g.keygen(&t, "P <p@example.com>", "ed25519", "cert", "never");
        g.run(&[t[0], t[1], "--quick-add-key", &p, "ed25519", "sign", "1d"], None);
        let blob = g.sign(&["--faked-system-time", "20200101T001000", "-u", &p, "--sign"]);
        let err = verify(&blob, &[g.export(&[&p], false)]).unwrap_err();
        assert!(matches!(err, SimpleError::KeyExpired { .. }), "{err}");
        assert!(err.to_string().ends_with(&format!("(subkey of {p}) expired at 2020-01-02T00:00:00Z")), "{err}");
    }

    #[test]
    fn expired_signature_refused() {
        let g = Gpg::new();
        let k = g.keygen(&["--faked-system-time", "20200101T000000"], "K <k@example.com>", "ed25519", "sign", "never");
        let blob =
            g.sign(&["--faked-system-time", "20200101T001000", "--default-sig-expire", "1d", "-u", &k, "--sign"]);
        let trusted = [g.export(&[&k], false)];
        let err = verify(&blob, &trusted).unwrap_err();
        assert_eq!(err.to_string(), format!("signature by key {k} expired at 2020-01-02T00:10:00Z"));
        assert!(verify_at(&blob, &trusted, 1_577_840_000).is_ok());
    }

    #[test]
    fn revoked_key_refused() {
        let g = Gpg::new();
        let k = ed25519(&g, "R <r@example.com>");
        let blob = g.sign(&["-u", &k, "--sign"]);
        let trusted = [g.export(&[&k], false)];
        assert!(verify(&blob, &trusted).is_ok());
        // gpg writes a revocation certificate for every new key, "disarmed" with a leading ':'.
        let cert = std::fs::read_to_string(g.path().join("openpgp-revocs.d").join(format!("{k}.rev"))).unwrap();
        let cert = cert.replace(":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----");
        g.run(&["--import"], Some(cert.as_bytes()));
        let err = verify(&blob, &[g.export(&[&k], true)]).unwrap_err();
        assert_eq!(err.to_string(), format!("key {k} is revoked"));
    }

    #[test]
    fn unreadable_trusted_keys() {
        let g = Gpg::new();
        let k = ed25519(&g, "K <k@example.com>");
        let blob = g.sign(&["-u", &k, "--sign"]);
        for trusted in
            [vec![], vec![Vec::new()], vec![b"not a key".to_vec()], vec![g.export(&[&k], false), blob.clone()]]
        {
            let err = verify(&blob, &trusted).unwrap_err();
            assert!(matches!(err, SimpleError::TrustedKey(_)), "{err}");
            assert!(err.to_string().starts_with("cannot read trusted key: "), "{err}");
        }
    }

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_577_923_200), "2020-01-02T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
