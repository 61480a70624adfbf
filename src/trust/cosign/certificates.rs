//! Signing certificates, checked as containers/image checks them:
//! - `fulcio`: the chain to the policy's CA at the Rekor SET's integrated time, code signing, the
//!   OIDC issuer extension and the SAN e-mail ([`verify_fulcio`], [`fulcio_key`]);
//! - `pki`: the chain to the policy's roots (through the policy's intermediates and the
//!   signature's chain) **now**, code signing, the SAN e-mail and/or DNS host name ([`pki_key`]).

use std::collections::BTreeMap;

use super::*;
use x509_cert::ext::pkix::name::GeneralName;
// ---------------------------------------------------------------------------------------------
// Fulcio

const OID_SAN: &str = "2.5.29.17";
const OID_BASIC_CONSTRAINTS: &str = "2.5.29.19";
const OID_KEY_USAGE: &str = "2.5.29.15";
const OID_EXT_KEY_USAGE: &str = "2.5.29.37";
const OID_CERT_POLICIES: &str = "2.5.29.32";
const OID_EKU_ANY: &str = "2.5.29.37.0";
const OID_EKU_CODE_SIGNING: &str = "1.3.6.1.5.5.7.3.3";
const OID_FULCIO_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
const OID_FULCIO_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";

fn extensions(c: &Certificate) -> &[x509_cert::ext::Extension] {
    c.tbs_certificate.extensions.as_deref().unwrap_or(&[])
}

fn extension<'a>(c: &'a Certificate, oid: &str) -> Option<&'a x509_cert::ext::Extension> {
    extensions(c).iter().find(|e| e.extn_id.to_string() == oid)
}

fn cert_key(c: &Certificate) -> Result<Key, String> {
    let der = c.tbs_certificate.subject_public_key_info.to_der().map_err(|e| e.to_string())?;
    key_from_spki("certificate", &der).map_err(|e| match e {
        Ok(what) => format!("unsupported key type {what}"),
        Err(why) => why,
    })
}

/// `(is CA, max path length)` from basicConstraints.
fn basic_constraints(c: &Certificate) -> Result<Option<(bool, Option<u8>)>, String> {
    let Some(e) = extension(c, OID_BASIC_CONSTRAINTS) else { return Ok(None) };
    let bc = x509_cert::ext::pkix::BasicConstraints::from_der(e.extn_value.as_bytes())
        .map_err(|e| format!("bad basicConstraints: {e}"))?;
    Ok(Some((bc.ca, bc.path_len_constraint)))
}

/// EKU list, or None when the certificate has no EKU extension (= any usage, as in Go).
fn ext_key_usage(c: &Certificate) -> Result<Option<Vec<String>>, String> {
    let Some(e) = extension(c, OID_EXT_KEY_USAGE) else { return Ok(None) };
    let eku = x509_cert::ext::pkix::ExtendedKeyUsage::from_der(e.extn_value.as_bytes())
        .map_err(|e| format!("bad extendedKeyUsage: {e}"))?;
    Ok(Some(eku.0.iter().map(|o| o.to_string()).collect()))
}

/// The time certificates are checked at: the Rekor entry's (Fulcio) or the current one (PKI).
#[derive(Clone, Copy)]
enum At {
    Logged(i64),
    Now(i64),
}

impl At {
    fn secs(self) -> i64 {
        match self {
            At::Logged(t) | At::Now(t) => t,
        }
    }
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Logged(t) => write!(f, "the logged time {t}"),
            At::Now(t) => write!(f, "the current time {t}"),
        }
    }
}

fn check_cert(c: &Certificate, at: At, leaf: bool) -> Result<(), String> {
    let v = &c.tbs_certificate.validity;
    let nb = v.not_before.to_unix_duration().as_secs() as i64;
    let na = v.not_after.to_unix_duration().as_secs() as i64;
    if at.secs() < nb || at.secs() > na {
        return Err(format!("{} is not valid at {at} (valid {nb}..{na})", subject(c)));
    }
    let mut seen = std::collections::BTreeSet::new();
    for e in extensions(c) {
        let oid = e.extn_id.to_string();
        if !seen.insert(oid.clone()) {
            return Err(format!("{}: duplicate extension {oid}", subject(c)));
        }
        // Critical extensions we understand; the SAN of the leaf is matched below (Go's
        // "no SAN names" check is skipped there too). Name constraints are not supported.
        let handled = [OID_KEY_USAGE, OID_BASIC_CONSTRAINTS, OID_EXT_KEY_USAGE, OID_CERT_POLICIES, OID_SAN];
        if e.critical && !handled.contains(&oid.as_str()) {
            return Err(format!("{}: unhandled critical extension {oid}", subject(c)));
        }
    }
    if let Some(eku) = ext_key_usage(c)?
        && !eku.iter().any(|u| u == OID_EKU_CODE_SIGNING || u == OID_EKU_ANY)
    {
        return Err(format!("{}: not valid for code signing", subject(c)));
    }
    if !leaf && !matches!(basic_constraints(c)?, Some((true, _))) {
        return Err(format!("{} is not a CA", subject(c)));
    }
    Ok(())
}

fn subject(c: &Certificate) -> String {
    let name = c.tbs_certificate.subject.to_string();
    if name.is_empty() { "the signing certificate".into() } else { format!("certificate {name:?}") }
}

fn signed_by(child: &Certificate, issuer: &Certificate) -> bool {
    if child.tbs_certificate.issuer != issuer.tbs_certificate.subject {
        return false;
    }
    let (Ok(tbs), Ok(key)) = (child.tbs_certificate.to_der(), cert_key(issuer)) else { return false };
    let Some(sig) = child.signature.as_bytes() else { return false };
    key.verify_with_alg(child.signature_algorithm.oid, &tbs, sig).is_ok()
}

/// A chain from `cert` (already checked) up to a root, at time `at`; `depth` intermediates so far.
fn chain_to_root(
    cert: &Certificate,
    intermediates: &[Certificate],
    roots: &[Certificate],
    at: At,
    depth: usize,
) -> Result<(), String> {
    if depth > 8 {
        return Err("certificate chain too long".into());
    }
    let mut why = None;
    for root in roots {
        if signed_by(cert, root) {
            match check_cert(root, at, false).and_then(|()| path_len_ok(root, depth)) {
                Ok(()) => return Ok(()),
                Err(e) => why = Some(e),
            }
        }
    }
    for int in intermediates {
        if signed_by(cert, int) {
            let r = check_cert(int, at, false)
                .and_then(|()| path_len_ok(int, depth))
                .and_then(|()| chain_to_root(int, intermediates, roots, at, depth + 1));
            match r {
                Ok(()) => return Ok(()),
                Err(e) => why = Some(e),
            }
        }
    }
    Err(why.unwrap_or_else(|| format!("{} is not issued by the trusted CA", subject(cert))))
}

fn path_len_ok(issuer: &Certificate, intermediates_below: usize) -> Result<(), String> {
    if let Some((_, Some(max))) = basic_constraints(issuer)?
        && intermediates_below > max as usize
    {
        return Err(format!("{}: path length constraint exceeded", subject(issuer)));
    }
    Ok(())
}

/// The OIDC issuer Fulcio recorded: extension .1.1 (raw string) and/or .1.8 (DER UTF8String),
/// which must agree when both are present.
fn fulcio_issuer(c: &Certificate) -> Result<String, String> {
    let v1 = extension(c, OID_FULCIO_ISSUER_V1)
        .map(|e| {
            String::from_utf8(e.extn_value.as_bytes().to_vec())
                .map_err(|_| "OIDC issuer v1 extension is not UTF-8".to_string())
        })
        .transpose()?;
    let v2 = extension(c, OID_FULCIO_ISSUER_V2)
        .map(|e| {
            x509_cert::der::asn1::Utf8StringRef::from_der(e.extn_value.as_bytes())
                .map(|s| s.as_str().to_string())
                .map_err(|e| format!("invalid ASN.1 in OIDC issuer v2 extension: {e}"))
        })
        .transpose()?;
    match (v1, v2) {
        (Some(a), Some(b)) if a != b => Err(format!("inconsistent OIDC issuer extension values: v1 {a:?}, v2 {b:?}")),
        (Some(a), _) | (None, Some(a)) => Ok(a),
        (None, None) => Err("the certificate has no OIDC issuer extension".into()),
    }
}

/// The SAN names `pick` takes (e-mail addresses, DNS names).
fn san(c: &Certificate, pick: fn(&GeneralName) -> Option<String>) -> Result<Vec<String>, String> {
    let Some(e) = extension(c, OID_SAN) else { return Ok(Vec::new()) };
    let san = x509_cert::ext::pkix::SubjectAltName::from_der(e.extn_value.as_bytes())
        .map_err(|e| format!("bad subjectAltName: {e}"))?;
    Ok(san.0.iter().filter_map(pick).collect())
}

fn san_emails(c: &Certificate) -> Result<Vec<String>, String> {
    san(c, |n| match n {
        GeneralName::Rfc822Name(s) => Some(s.as_str().to_string()),
        _ => None,
    })
}

fn san_dns_names(c: &Certificate) -> Result<Vec<String>, String> {
    san(c, |n| match n {
        GeneralName::DnsName(s) => Some(s.as_str().to_string()),
        _ => None,
    })
}

/// The certificate and chain annotations of a `.sig` signature: the leaf's DER and certificate,
/// and the chain without its last entry (the root: only the policy's roots are trusted for that).
fn annotated_certificate(
    annotations: &BTreeMap<String, String>,
    err: fn(String) -> CosignError,
) -> Result<(Vec<u8>, Certificate, Vec<Certificate>), CosignError> {
    let cert_pem = annotations.get(CERTIFICATE_ANNOTATION).ok_or(CosignError::MissingCertificate)?;
    let mut leaves = pem_certificates(cert_pem.as_bytes()).map_err(|e| err(format!("certificate annotation: {e}")))?;
    if leaves.len() != 1 {
        return Err(err(format!("certificate annotation holds {} certificates, not one", leaves.len())));
    }
    let (leaf_der, leaf) = leaves.remove(0);
    let mut chain: Vec<Certificate> = match annotations.get(CHAIN_ANNOTATION) {
        Some(c) if !c.is_empty() => pem_certificates(c.as_bytes())
            .map_err(|e| err(format!("chain annotation: {e}")))?
            .into_iter()
            .map(|(_, c)| c)
            .collect(),
        _ => Vec::new(),
    };
    chain.pop();
    Ok((leaf_der, leaf, chain))
}

/// `fulcio` + `rekorPublicKey*`: the SET (checked as in [`verify_rekor_set`]) must log this
/// signature with the certificate of the certificate annotation; the certificate must chain (via
/// the chain annotation, root last and ignored) to a certificate of `ca` (PEM bundles) with every
/// certificate valid at the SET's integrated time, allow code signing, name `oidc_issuer` in the
/// Fulcio issuer extension and `subject_email` among its SAN e-mail addresses; then the signature
/// must verify with the certificate's key.
pub fn verify_fulcio(
    payload: &[u8],
    annotations: &BTreeMap<String, String>,
    ca: &[Vec<u8>],
    oidc_issuer: &str,
    subject_email: &str,
    rekor_keys: &[(String, Vec<u8>)],
) -> Result<FulcioIdentity, CosignError> {
    let f = CosignError::Fulcio;
    if !annotations.contains_key(BUNDLE_ANNOTATION) {
        return Err(CosignError::MissingBundle);
    }
    if !annotations.contains_key(CERTIFICATE_ANNOTATION) {
        return Err(CosignError::MissingCertificate);
    }
    let entry = verify_rekor_set(payload, annotations, rekor_keys)?;
    let (leaf_der, leaf, intermediates) = annotated_certificate(annotations, f)?;
    if leaf_der != entry.signer_der {
        return Err(CosignError::Rekor("the logged certificate is not the signature's certificate".into()));
    }

    let key = fulcio_key(&leaf, &intermediates, ca, oidc_issuer, subject_email, entry.integrated_time)?;
    let sig = signature_bytes(annotations)?;
    let key = verify_payload(payload, &sig, &[&key])?;
    Ok(FulcioIdentity {
        key,
        subject_email: subject_email.to_string(),
        oidc_issuer: oidc_issuer.to_string(),
        rekor: entry,
    })
}

/// The key of a Fulcio `leaf` that chains (through `intermediates` or certificates of `ca`) to a
/// certificate of `ca` (PEM bundles, every certificate a trust anchor) with every certificate
/// valid at `at` (the logged time), allows code signing, names `oidc_issuer` in the Fulcio issuer
/// extension and `subject_email` among its SAN e-mail addresses.
pub(crate) fn fulcio_key(
    leaf: &Certificate,
    intermediates: &[Certificate],
    ca: &[Vec<u8>],
    oidc_issuer: &str,
    subject_email: &str,
    at: i64,
) -> Result<Key, CosignError> {
    let f = CosignError::Fulcio;
    let mut roots = Vec::new();
    for bundle in ca {
        roots.extend(
            pem_certificates(bundle).map_err(|e| f(format!("CA certificates: {e}")))?.into_iter().map(|(_, c)| c),
        );
    }
    if roots.is_empty() {
        return Err(f("no CA certificates given".into()));
    }
    if oidc_issuer.is_empty() || subject_email.is_empty() {
        return Err(f("oidcIssuer and subjectEmail are both required".into()));
    }
    check_cert(leaf, At::Logged(at), true).map_err(f)?;
    chain_to_root(leaf, intermediates, &roots, At::Logged(at), 0).map_err(f)?;

    let issuer = fulcio_issuer(leaf).map_err(f)?;
    if issuer != oidc_issuer {
        return Err(f(format!("OIDC issuer {issuer:?} is not the required {oidc_issuer:?}")));
    }
    let emails = san_emails(leaf).map_err(f)?;
    if !emails.iter().any(|e| e == subject_email) {
        return Err(f(format!("required email {subject_email:?} not found (got {emails:?})")));
    }
    let key = cert_key(leaf).map_err(|e| f(format!("certificate key: {e}")))?;
    Ok(Key { label: "certificate".into(), ..key })
}

/// What a `pki` requirement asks of a certificate.
pub struct PkiTrust<'a> {
    /// `caRootsPath`/`caRootsData`: PEM bundles, every certificate a trust anchor.
    pub roots: &'a [Vec<u8>],
    /// `caIntermediatesPath`/`caIntermediatesData`: PEM bundles.
    pub intermediates: &'a [Vec<u8>],
    pub subject_email: Option<&'a str>,
    pub subject_hostname: Option<&'a str>,
}

/// The key of `leaf` when it chains to a root of `trust` through its intermediates or
/// `chain` (the signature's own, already without its last entry), every certificate valid at
/// `now` and for code signing, with the required SAN e-mail and/or DNS host name.
pub(crate) fn pki_key(
    leaf: &Certificate,
    chain: &[Certificate],
    trust: &PkiTrust,
    now: i64,
) -> Result<Key, CosignError> {
    let p = |m: String| CosignError::Pki(m);
    let certs = |bundles: &[Vec<u8>], what: &str| -> Result<Vec<Certificate>, CosignError> {
        let mut out = Vec::new();
        for b in bundles {
            out.extend(pem_certificates(b).map_err(|e| p(format!("{what}: {e}")))?.into_iter().map(|(_, c)| c));
        }
        Ok(out)
    };
    let roots = certs(trust.roots, "CA roots")?;
    if roots.is_empty() {
        return Err(p("no CA root certificates given".into()));
    }
    let mut intermediates = certs(trust.intermediates, "CA intermediates")?;
    intermediates.extend(chain.iter().cloned());
    if trust.subject_email.is_none() && trust.subject_hostname.is_none() {
        return Err(p("subjectEmail or subjectHostname is required".into()));
    }
    check_cert(leaf, At::Now(now), true).map_err(&p)?;
    chain_to_root(leaf, &intermediates, &roots, At::Now(now), 0).map_err(&p)?;
    if let Some(email) = trust.subject_email {
        let emails = san_emails(leaf).map_err(&p)?;
        if !emails.iter().any(|e| e == email) {
            return Err(p(format!("required email {email:?} not found (got {emails:?})")));
        }
    }
    if let Some(host) = trust.subject_hostname {
        let names = san_dns_names(leaf).map_err(&p)?;
        if !names.iter().any(|n| hostname_matches(n, host)) {
            return Err(p(format!("required hostname {host:?} not found (got {names:?})")));
        }
    }
    let key = cert_key(leaf).map_err(|e| p(format!("certificate key: {e}")))?;
    Ok(Key { label: "certificate".into(), ..key })
}

/// Go's `VerifyHostname` for DNS names: case-insensitive, a trailing dot ignored, and a SAN
/// `*.example.com` matching exactly one leftmost label.
fn hostname_matches(san: &str, host: &str) -> bool {
    let (san, host) = (san.trim_end_matches('.').to_ascii_lowercase(), host.trim_end_matches('.').to_ascii_lowercase());
    if san.is_empty() || host.is_empty() {
        return false;
    }
    match san.strip_prefix("*.") {
        Some(suffix) => host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => san == host,
    }
}

/// A `.sig` attachment under a `pki` requirement: the certificate and chain annotations checked
/// now, then the signature with the certificate's key. No Rekor (the policy cannot ask for it
/// with `pki`).
pub fn verify_pki(
    payload: &[u8],
    annotations: &BTreeMap<String, String>,
    trust: &PkiTrust,
) -> Result<KeyUsed, CosignError> {
    let (leaf_der, _, chain) = annotated_certificate(annotations, CosignError::Pki)?;
    let sig = signature_bytes(annotations)?;
    Ok(verify_message_with_pki(payload, &sig, &leaf_der, &chain, trust)?.used)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostnames() {
        use super::hostname_matches as m;
        assert!(m("registry.example.com", "Registry.Example.com."));
        assert!(m("*.example.com", "a.example.com"));
        assert!(!m("*.example.com", "a.b.example.com"));
        assert!(!m("*.example.com", "example.com"));
        assert!(!m("example.com", "a.example.com"));
        assert!(!m("", ""));
    }
}
