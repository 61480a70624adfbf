//! The Rekor SET, checked offline: RFC 8785 canonicalisation of its payload, its ECDSA signature
//! by a Rekor key, and the logged `hashedrekord` body (this signature, this payload's hash).

use std::collections::BTreeMap;

use super::*;
// ---------------------------------------------------------------------------------------------
// JSON canonicalisation (RFC 8785), enough for Rekor SET payloads

/// Canonicalises JSON text: members sorted by UTF-16 code units, no whitespace, minimal string
/// escapes, numbers as integers. Duplicate member names, non-integral numbers and integers beyond
/// 2^53 are refused (the SET payload has none; refusing is safer than guessing ES6 formatting).
fn canonicalize(json: &[u8]) -> Result<Vec<u8>, String> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let Canon(out) = serde::Deserialize::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(out)
}

struct Canon(Vec<u8>);

impl<'de> serde::Deserialize<'de> for Canon {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CanonVisitor)
    }
}

struct CanonVisitor;

const MAX_SAFE: u64 = (1 << 53) - 1;

impl<'de> serde::de::Visitor<'de> for CanonVisitor {
    type Value = Canon;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Canon, E> {
        Ok(Canon(if v { b"true".to_vec() } else { b"false".to_vec() }))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Canon, E> {
        Ok(Canon(b"null".to_vec()))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Canon, E> {
        if v > MAX_SAFE {
            return Err(E::custom("number out of the exactly representable range"));
        }
        Ok(Canon(v.to_string().into_bytes()))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Canon, E> {
        if v.unsigned_abs() > MAX_SAFE {
            return Err(E::custom("number out of the exactly representable range"));
        }
        Ok(Canon(v.to_string().into_bytes()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Canon, E> {
        if v.is_finite() && v.fract() == 0.0 && v.abs() <= MAX_SAFE as f64 {
            return Ok(Canon(format!("{}", v as i64).into_bytes()));
        }
        Err(E::custom("non-integer number"))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Canon, E> {
        serde_json::to_vec(v).map(Canon).map_err(E::custom)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Canon, A::Error> {
        let mut out = b"[".to_vec();
        let mut first = true;
        while let Some(Canon(v)) = seq.next_element()? {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend(v);
        }
        out.push(b']');
        Ok(Canon(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Canon, A::Error> {
        let mut members: Vec<(Vec<u16>, String, Vec<u8>)> = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let Canon(v) = map.next_value()?;
            members.push((k.encode_utf16().collect(), k, v));
        }
        members.sort_by(|a, b| a.0.cmp(&b.0));
        if members.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(serde::de::Error::custom("duplicate member name"));
        }
        let mut out = b"{".to_vec();
        for (i, (_, k, v)) in members.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend(serde_json::to_vec(&k).map_err(serde::de::Error::custom)?);
            out.push(b':');
            out.extend(v);
        }
        out.push(b'}');
        Ok(Canon(out))
    }
}

// ---------------------------------------------------------------------------------------------
// Rekor SET

/// What a SET signs: the entry's body (base64 of the canonicalized body), when it was integrated,
/// its index and the log's ID (hex of the SHA-256 of the log key's SubjectPublicKeyInfo).
#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetPayload {
    pub body: String,
    #[serde(rename = "integratedTime")]
    pub integrated_time: i64,
    #[serde(rename = "logIndex")]
    pub log_index: i64,
    #[serde(rename = "logID")]
    pub log_id: String,
}

#[derive(Deserialize)]
struct HashedRekord {
    kind: Option<String>,
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    spec: Option<HashedRekordSpec>,
}
#[derive(Deserialize)]
struct HashedRekordSpec {
    data: Option<HrData>,
    signature: Option<HrSignature>,
}
#[derive(Deserialize)]
struct HrData {
    hash: Option<HrHash>,
}
#[derive(Deserialize)]
struct HrHash {
    algorithm: Option<String>,
    value: Option<String>,
}
#[derive(Deserialize)]
struct HrSignature {
    content: Option<String>,
    #[serde(rename = "publicKey")]
    public_key: Option<HrPublicKey>,
}
#[derive(Deserialize)]
struct HrPublicKey {
    content: Option<String>,
}

fn parse_rekor_keys(rekor_keys: &[(String, Vec<u8>)]) -> Result<Vec<Key>, CosignError> {
    if rekor_keys.is_empty() {
        return Err(CosignError::Rekor("no Rekor public keys given".into()));
    }
    rekor_keys
        .iter()
        .map(|(label, data)| {
            let bad = |reason: String| CosignError::BadRekorKey { label: label.clone(), reason };
            let k = parse_key_file(label, data).map_err(|e| match e {
                CosignError::NotAPublicKey { .. } => bad("not a PEM public key".into()),
                CosignError::UnsupportedKeyType { what, .. } => bad(format!("not an ECDSA key ({what})")),
                CosignError::BadKey { reason, .. } => bad(reason),
                other => other,
            })?;
            match k.kind {
                KeyKind::P256(_) | KeyKind::P384(_) => Ok(k),
                KeyKind::Ed25519(_) => Err(bad("not an ECDSA key (Ed25519)".into())),
                KeyKind::Rsa(_) => Err(bad("not an ECDSA key (RSA)".into())),
            }
        })
        .collect()
}

/// Checks the Rekor SET annotation offline, as containers/image does: the SET signature (ECDSA,
/// DER) by one of `rekor_keys` over the canonicalised `Payload`, then the logged `hashedrekord`
/// body: the same signature bytes, SHA-256 of this `payload`. Returns the entry, whose
/// [`RekorEntry::signer_der`] the caller must still match with a trusted key or certificate.
pub fn verify_rekor_set(
    payload: &[u8],
    annotations: &BTreeMap<String, String>,
    rekor_keys: &[(String, Vec<u8>)],
) -> Result<RekorEntry, CosignError> {
    let set = annotations.get(BUNDLE_ANNOTATION).ok_or(CosignError::MissingBundle)?;
    let err = |m: String| CosignError::Rekor(m);

    // The SET: exactly {"SignedEntryTimestamp": base64, "Payload": {…}}.
    let canonical = canonicalize(set.as_bytes()).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let serde_json::Value::Object(top) = serde_json::from_slice(&canonical).map_err(|e| err(e.to_string()))? else {
        return Err(err("not a JSON object".into()));
    };
    if top.len() != 2 || !top.contains_key("SignedEntryTimestamp") || !top.contains_key("Payload") {
        return Err(err("expected exactly the members SignedEntryTimestamp and Payload".into()));
    }
    let set_sig = top["SignedEntryTimestamp"]
        .as_str()
        .and_then(b64)
        .ok_or_else(|| err("SignedEntryTimestamp is not a base64 string".into()))?;
    let payload_json = serde_json::to_vec(&top["Payload"]).map_err(|e| err(e.to_string()))?;
    let p = verify_set(rekor_keys, &set_sig, &payload_json)?;
    let body = b64(&p.body).ok_or_else(|| err("Payload.body is not base64".into()))?;
    let rec: HashedRekord = serde_json::from_slice(&body).map_err(|e| err(format!("body: {e}")))?;
    if rec.kind.as_deref() != Some("hashedrekord") {
        return Err(err(format!("body: unsupported kind {:?}", rec.kind.unwrap_or_default())));
    }
    match rec.api_version.as_deref() {
        Some("0.0.1") => {}
        Some(v) => return Err(err(format!("body: unsupported hashedrekord version {v:?}"))),
        None => return Err(err("body: missing apiVersion".into())),
    }
    let spec = rec.spec.ok_or_else(|| err("body: missing spec".into()))?;
    let sig = spec.signature.ok_or_else(|| err("body: missing signature".into()))?;
    let pk_pem =
        sig.public_key.and_then(|p| p.content).ok_or_else(|| err("body: missing signature.publicKey".into()))?;
    let pk_pem = b64(&pk_pem).ok_or_else(|| err("body: signature.publicKey is not base64".into()))?;
    let signer = single_pem(&pk_pem).map_err(|e| err(format!("body: signature.publicKey: {e}")))?;

    let logged_sig = sig.content.as_deref().and_then(b64).unwrap_or_default();
    if logged_sig != signature_bytes(annotations)? {
        return Err(err("the logged signature is not this signature".into()));
    }
    let hash = spec.data.and_then(|d| d.hash).ok_or_else(|| err("body: missing data.hash".into()))?;
    match hash.algorithm.as_deref() {
        Some("sha256") => {}
        Some(a) => return Err(err(format!("body: unsupported data.hash.algorithm {a:?}"))),
        None => return Err(err("body: missing data.hash.algorithm".into())),
    }
    let value = hash.value.ok_or_else(|| err("body: missing data.hash.value".into()))?;
    let value = hex::decode(value).map_err(|_| err("body: data.hash.value is not hex".into()))?;
    if value != Sha256::digest(payload).as_slice() {
        return Err(err("the logged payload hash is not this payload's".into()));
    }
    Ok(RekorEntry {
        integrated_time: p.integrated_time,
        log_index: p.log_index,
        log_id: p.log_id,
        signer_der: signer.der,
    })
}

/// Checks a SET: `set_sig` (ECDSA, DER) by one of `rekor_keys` over the RFC 8785 form of
/// `payload_json` (`{"body", "integratedTime", "logID", "logIndex"}`, nothing else). Returns the
/// payload, now authenticated.
pub(crate) fn verify_set(
    rekor_keys: &[(String, Vec<u8>)],
    set_sig: &[u8],
    payload_json: &[u8],
) -> Result<SetPayload, CosignError> {
    let rekor_keys = parse_rekor_keys(rekor_keys)?;
    let err = |m: String| CosignError::Rekor(m);
    let signed = canonicalize(payload_json).map_err(|e| err(format!("canonicalising Payload: {e}")))?;
    if !rekor_keys.iter().any(|k| k.verify_with_alg(ecdsa_with_sha256(), &signed, set_sig).is_ok()) {
        return Err(err(format!(
            "signature does not verify with any of the {} Rekor key(s) ({})",
            rekor_keys.len(),
            rekor_keys.iter().map(|k| format!("{} {}", k.label, k.fingerprint)).collect::<Vec<_>>().join(", ")
        )));
    }
    serde_json::from_slice(&signed).map_err(|e| err(format!("Payload: {e}")))
}

fn ecdsa_with_sha256() -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2")
}

#[cfg(test)]
mod tests {
    use super::canonicalize;

    #[test]
    fn canonical_json() {
        let c = canonicalize(br#" { "b" : [1, true, null, "\u0041\n\u00e9"], "a": {"z": 1.0, "y": -3} } "#).unwrap();
        assert_eq!(std::str::from_utf8(&c).unwrap(), "{\"a\":{\"y\":-3,\"z\":1},\"b\":[1,true,null,\"A\\n\u{e9}\"]}");
        assert!(canonicalize(br#"{"a":1,"a":2}"#).is_err());
        assert!(canonicalize(br#"{"a":1.5}"#).is_err());
        assert!(canonicalize(br#"{"a":1} x"#).is_err());
    }
}
