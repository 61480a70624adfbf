//! The signed JSON payload of a simple-signing or sigstore signature (containers-signature(5)),
//! parsed as strictly as containers/image does (`signature/simple.go`,
//! `signature/internal/sigstore_payload.go`, `ParanoidUnmarshalJSONObject`):
//!
//! ```json
//! {"critical": {"type": "atomic container signature",
//!               "image": {"docker-manifest-digest": "sha256:…"},
//!               "identity": {"docker-reference": "quay.io/ns/repo:tag"}},
//!  "optional": {"creator": "…", "timestamp": 1700000000}}
//! ```
//!
//! - The top level has exactly `critical` and `optional`; `critical` exactly `type`, `image` and
//!   `identity`; `image` exactly `docker-manifest-digest`; `identity` exactly `docker-reference`.
//!   A missing, unknown or duplicated member rejects the payload.
//! - `optional` is required for both types; it must be an object, except that a sigstore payload
//!   may have `"optional": null` (cosign writes that when there are no annotations).
//! - Unknown members of `optional` are kept but not interpreted; `creator` must be a string and
//!   `timestamp` an integer (c/image decodes a JSON number and rejects a fractional one, so
//!   `1.7e9` is accepted like `1700000000`).
//! - `docker-manifest-digest` must be a digest as go-digest parses it (`sha256`, `sha384` or
//!   `sha512`, lowercase hex of the right length).
//!
//! Stricter than c/image, on purpose: duplicate keys reject at every depth (also inside unknown
//! `optional` members), and `null` is not accepted where a string or number is required (Go's
//! decoder silently leaves the zero value there).
//!
//! Only call [`parse`] on bytes whose signature was verified first.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Which kind of signature the payload belongs to (the value of `critical.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadType {
    /// GPG simple signing: `"atomic container signature"`.
    Simple,
    /// sigstore (cosign): `"cosign container image signature"`.
    Cosign,
}

impl PayloadType {
    /// The `critical.type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadType::Simple => "atomic container signature",
            PayloadType::Cosign => "cosign container image signature",
        }
    }
}

/// A strictly parsed payload. `optional` holds every member of `optional` as found (empty for a
/// sigstore `"optional": null`).
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub manifest_digest: String,
    pub docker_reference: String,
    pub optional: Map<String, Value>,
}

impl Payload {
    /// `optional.creator`, if present.
    pub fn creator(&self) -> Option<&str> {
        self.optional.get("creator").and_then(Value::as_str)
    }

    /// `optional.timestamp` (seconds since the epoch), if present.
    pub fn timestamp(&self) -> Option<i64> {
        self.optional.get("timestamp").and_then(integer)
    }
}

/// Why a payload was rejected; `member` is a dotted path such as `critical.image`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("signed payload is not valid JSON: {0}")]
    Json(String),
    #[error("signed payload: {member} must be a JSON object")]
    NotObject { member: String },
    #[error("signed payload: {member} is missing")]
    Missing { member: String },
    #[error("signed payload: unknown member {member}")]
    Unknown { member: String },
    #[error("signed payload: duplicate member {member}")]
    Duplicate { member: String },
    #[error("signed payload: {member} must be {expected}")]
    WrongType { member: String, expected: &'static str },
    #[error("signed payload: critical.type is {found:?}, expected {expected:?}")]
    WrongSignatureType { found: String, expected: &'static str },
    #[error("signed payload: critical.image.docker-manifest-digest {value:?} is not a valid digest: {reason}")]
    InvalidDigest { value: String, reason: &'static str },
}

/// Parses `bytes` (already authenticated) as a payload of type `want`.
pub fn parse(bytes: &[u8], want: PayloadType) -> Result<Payload, PayloadError> {
    let root: Node = serde_json::from_slice(bytes).map_err(|e| PayloadError::Json(e.to_string()))?;
    let [critical, optional] = exact(root, "(top level)", "", ["critical", "optional"])?;

    let optional = match optional {
        Node::Scalar(Value::Null) if want == PayloadType::Cosign => Map::new(),
        node => {
            let members = object(node, "optional")?;
            let mut map = Map::new();
            for (key, value) in members {
                let path = format!("optional.{key}");
                let value = value.into_value(&path)?;
                match key.as_str() {
                    "creator" if !value.is_string() => {
                        return Err(PayloadError::WrongType { member: path, expected: "a string" });
                    }
                    "timestamp" if integer(&value).is_none() => {
                        return Err(PayloadError::WrongType { member: path, expected: "an integer" });
                    }
                    _ => {}
                }
                if map.insert(key, value).is_some() {
                    return Err(PayloadError::Duplicate { member: path });
                }
            }
            map
        }
    };

    let [typ, image, identity] = exact(critical, "critical", "critical.", ["type", "image", "identity"])?;
    let typ = string(typ, "critical.type")?;
    if typ != want.as_str() {
        return Err(PayloadError::WrongSignatureType { found: typ, expected: want.as_str() });
    }
    let [digest] = exact(image, "critical.image", "critical.image.", ["docker-manifest-digest"])?;
    let manifest_digest = string(digest, "critical.image.docker-manifest-digest")?;
    if let Err(reason) = check_digest(&manifest_digest) {
        return Err(PayloadError::InvalidDigest { value: manifest_digest, reason });
    }
    let [reference] = exact(identity, "critical.identity", "critical.identity.", ["docker-reference"])?;
    let docker_reference = string(reference, "critical.identity.docker-reference")?;

    Ok(Payload { manifest_digest, docker_reference, optional })
}

/// An integer as c/image accepts `optional.timestamp`: a JSON number without a fractional part
/// that fits an int64.
fn integer(v: &Value) -> Option<i64> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    if n.is_u64() {
        return None; // > i64::MAX
    }
    let f = n.as_f64()?;
    // -2^63 ≤ f < 2^63 and integral: the cast is exact.
    (f.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)).then_some(f as i64)
}

/// go-digest's `Parse`: `<algorithm>:<encoded>` with a known algorithm and lowercase hex of the
/// algorithm's length.
fn check_digest(s: &str) -> Result<(), &'static str> {
    let Some((alg, hex)) = s.split_once(':') else {
        return Err("expected <algorithm>:<hex>");
    };
    if alg.is_empty() || hex.is_empty() {
        return Err("expected <algorithm>:<hex>");
    }
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm"),
    };
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err("invalid encoded digest");
    }
    Ok(())
}

/// The members of `node`, which must be an object, in document order (duplicates kept).
fn object(node: Node, member: &str) -> Result<Vec<(String, Node)>, PayloadError> {
    match node {
        Node::Object(members) => Ok(members),
        _ => Err(PayloadError::NotObject { member: member.to_string() }),
    }
}

/// The values of exactly the members `names` of the object `node` (in the order of `names`).
/// `member` names the object in messages, `prefix` is prepended to member names.
fn exact<const N: usize>(node: Node, member: &str, prefix: &str, names: [&str; N]) -> Result<[Node; N], PayloadError> {
    let mut found: [Option<Node>; N] = std::array::from_fn(|_| None);
    for (key, value) in object(node, member)? {
        let path = format!("{prefix}{key}");
        let Some(i) = names.iter().position(|n| *n == key) else {
            return Err(PayloadError::Unknown { member: path });
        };
        if found[i].replace(value).is_some() {
            return Err(PayloadError::Duplicate { member: path });
        }
    }
    let mut out = Vec::with_capacity(N);
    for (i, slot) in found.into_iter().enumerate() {
        match slot {
            Some(v) => out.push(v),
            None => return Err(PayloadError::Missing { member: format!("{prefix}{}", names[i]) }),
        }
    }
    Ok(out.try_into().unwrap_or_else(|_| unreachable!("exactly N members")))
}

fn string(node: Node, member: &str) -> Result<String, PayloadError> {
    match node {
        Node::Scalar(Value::String(s)) => Ok(s),
        _ => Err(PayloadError::WrongType { member: member.to_string(), expected: "a string" }),
    }
}

/// A JSON value that keeps every object member, so that duplicate keys can be detected
/// (`serde_json::Value` keeps only the last one).
#[derive(Debug)]
enum Node {
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    Scalar(Value),
}

impl Node {
    /// Converts to a `Value`, rejecting duplicate keys at any depth (`path` names `self`).
    fn into_value(self, path: &str) -> Result<Value, PayloadError> {
        match self {
            Node::Scalar(v) => Ok(v),
            Node::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, n)| n.into_value(&format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Node::Object(members) => {
                let mut map = Map::new();
                for (key, value) in members {
                    let child = format!("{path}.{key}");
                    let value = value.into_value(&child)?;
                    if map.insert(key, value).is_some() {
                        return Err(PayloadError::Duplicate { member: child });
                    }
                }
                Ok(Value::Object(map))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        serde_json::Number::from_f64(v)
            .map(|n| Node::Scalar(Value::Number(n)))
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Node>()? {
            members.push((key, value));
        }
        Ok(Node::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn simple(critical_extra: &str, optional: &str) -> String {
        format!(
            r#"{{"critical":{{"type":"atomic container signature","image":{{"docker-manifest-digest":"{D}"}},"identity":{{"docker-reference":"quay.io/ns/app:1"}}{critical_extra}}},"optional":{optional}}}"#
        )
    }

    fn member(e: &PayloadError) -> String {
        match e {
            PayloadError::NotObject { member }
            | PayloadError::Missing { member }
            | PayloadError::Unknown { member }
            | PayloadError::Duplicate { member }
            | PayloadError::WrongType { member, .. } => member.clone(),
            PayloadError::WrongSignatureType { .. } => "critical.type".into(),
            PayloadError::InvalidDigest { .. } => "critical.image.docker-manifest-digest".into(),
            PayloadError::Json(_) => "(json)".into(),
        }
    }

    #[test]
    fn good_payloads() {
        let p =
            parse(simple("", r#"{"creator":"atomic 2.0.0","timestamp":1458239713}"#).as_bytes(), PayloadType::Simple)
                .unwrap();
        assert_eq!(p.manifest_digest, D);
        assert_eq!(p.docker_reference, "quay.io/ns/app:1");
        assert_eq!(p.creator(), Some("atomic 2.0.0"));
        assert_eq!(p.timestamp(), Some(1458239713));

        // Unknown optional members are kept; an integral float is an integer, as in c/image.
        let p = parse(simple("", r#"{"timestamp":1.7e9,"x":{"y":[1,null]}}"#).as_bytes(), PayloadType::Simple).unwrap();
        assert_eq!(p.timestamp(), Some(1_700_000_000));
        assert_eq!(p.optional["x"], serde_json::json!({"y": [1, null]}));

        // Empty optional; whitespace; sha512.
        let sha512 = format!("sha512:{}", "a".repeat(128));
        let text = format!(
            " {{ \"optional\" : {{}}, \"critical\": {{\"identity\":{{\"docker-reference\":\"r\"}},\"type\":\"atomic container signature\",\"image\":{{\"docker-manifest-digest\":\"{sha512}\"}}}}}}\n"
        );
        let p = parse(text.as_bytes(), PayloadType::Simple).unwrap();
        assert_eq!(p.manifest_digest, sha512);
        assert!(p.optional.is_empty());

        // cosign: "optional": null is allowed (cosign writes it), and so is an object.
        let cosign = simple("", "null").replace("atomic container signature", "cosign container image signature");
        let p = parse(cosign.as_bytes(), PayloadType::Cosign).unwrap();
        assert!(p.optional.is_empty());
        let cosign = simple("", r#"{"creator":"cosign"}"#)
            .replace("atomic container signature", "cosign container image signature");
        assert_eq!(parse(cosign.as_bytes(), PayloadType::Cosign).unwrap().creator(), Some("cosign"));
    }

    #[test]
    fn bad_payloads() {
        let wrong_type = simple("", "{}").replace("atomic container signature", "cosign container image signature");
        let bad_digest = |d: &str| simple("", "{}").replace(D, d);
        let cases: Vec<(String, PayloadType, &str)> = vec![
            ("".into(), PayloadType::Simple, "(json)"),
            ("[]".into(), PayloadType::Simple, "(top level)"),
            (simple("", "{}") + "x", PayloadType::Simple, "(json)"),
            (simple("", "{}") + "{}", PayloadType::Simple, "(json)"),
            (r#"{"critical":{}}"#.into(), PayloadType::Simple, "optional"),
            (r#"{"optional":{}}"#.into(), PayloadType::Simple, "critical"),
            (simple("", "{}").replacen('{', r#"{"extra":1,"#, 1), PayloadType::Simple, "extra"),
            (simple("", "{}").replacen('{', r#"{"optional":{},"#, 1), PayloadType::Simple, "optional"),
            (simple("", "{}").replacen('{', r#"{"critical":{},"#, 1), PayloadType::Simple, "critical"),
            (simple("", "null"), PayloadType::Simple, "optional"),
            (simple("", "[]"), PayloadType::Simple, "optional"),
            (simple("", r#"{"creator":"a","creator":"b"}"#), PayloadType::Simple, "optional.creator"),
            (simple("", r#"{"x":{"a":1,"a":2}}"#), PayloadType::Simple, "optional.x.a"),
            (simple("", r#"{"creator":1}"#), PayloadType::Simple, "optional.creator"),
            (simple("", r#"{"creator":null}"#), PayloadType::Simple, "optional.creator"),
            (simple("", r#"{"timestamp":"1"}"#), PayloadType::Simple, "optional.timestamp"),
            (simple("", r#"{"timestamp":1.5}"#), PayloadType::Simple, "optional.timestamp"),
            (simple("", r#"{"timestamp":1e30}"#), PayloadType::Simple, "optional.timestamp"),
            (simple("", r#"{"timestamp":18446744073709551615}"#), PayloadType::Simple, "optional.timestamp"),
            (simple("", r#"{"timestamp":null}"#), PayloadType::Simple, "optional.timestamp"),
            (simple(r#","extra":1"#, "{}"), PayloadType::Simple, "critical.extra"),
            (simple(r#","type":"atomic container signature""#, "{}"), PayloadType::Simple, "critical.type"),
            (simple(r#","identity":{"docker-reference":"evil"}"#, "{}"), PayloadType::Simple, "critical.identity"),
            (r#"{"critical":[],"optional":{}}"#.into(), PayloadType::Simple, "critical"),
            (
                r#"{"critical":{"type":"atomic container signature","identity":{"docker-reference":"r"}},"optional":{}}"#.into(),
                PayloadType::Simple,
                "critical.image",
            ),
            (wrong_type.clone(), PayloadType::Simple, "critical.type"),
            (simple("", "{}"), PayloadType::Cosign, "critical.type"),
            (simple("", "{}").replace("\"atomic container signature\"", "1"), PayloadType::Simple, "critical.type"),
            (simple("", "{}").replace(&format!(r#""{D}""#), "null"), PayloadType::Simple, "critical.image.docker-manifest-digest"),
            (
                simple("", "{}").replace(&format!(r#""docker-manifest-digest":"{D}""#), &format!(r#""docker-manifest-digest":"{D}","docker-manifest-digest":"{D}""#)),
                PayloadType::Simple,
                "critical.image.docker-manifest-digest",
            ),
            (
                simple("", "{}").replace(&format!(r#""{D}""#), &format!(r#""{D}","x":1"#)),
                PayloadType::Simple,
                "critical.image.x",
            ),
            (bad_digest("sha256:abc"), PayloadType::Simple, "critical.image.docker-manifest-digest"),
            (bad_digest(&D.to_uppercase().replace("SHA", "sha")), PayloadType::Simple, "critical.image.docker-manifest-digest"),
            (bad_digest(&D.replace("sha256", "md5")), PayloadType::Simple, "critical.image.docker-manifest-digest"),
            (bad_digest(&D[7..]), PayloadType::Simple, "critical.image.docker-manifest-digest"),
            (bad_digest(""), PayloadType::Simple, "critical.image.docker-manifest-digest"),
            (simple("", "{}").replace(r#""quay.io/ns/app:1""#, "null"), PayloadType::Simple, "critical.identity.docker-reference"),
            (
                simple("", "{}").replace(r#""docker-reference":"quay.io/ns/app:1""#, r#""docker-reference":"a","docker-reference":"b""#),
                PayloadType::Simple,
                "critical.identity.docker-reference",
            ),
            (
                simple("", "{}").replace(r#"{"docker-reference":"quay.io/ns/app:1"}"#, "{}"),
                PayloadType::Simple,
                "critical.identity.docker-reference",
            ),
        ];
        for (text, want, expect_member) in cases {
            match parse(text.as_bytes(), want) {
                Ok(p) => panic!("accepted {text}: {p:?}"),
                Err(e) => {
                    assert_eq!(member(&e), expect_member, "{text}: {e}");
                    assert!(!e.to_string().contains('\n'));
                }
            }
        }
        assert_eq!(
            parse(wrong_type.as_bytes(), PayloadType::Simple).unwrap_err().to_string(),
            r#"signed payload: critical.type is "cosign container image signature", expected "atomic container signature""#
        );
        assert_eq!(
            parse(simple("", r#"{"a":1,"a":1}"#).as_bytes(), PayloadType::Simple).unwrap_err().to_string(),
            "signed payload: duplicate member optional.a"
        );
    }

    /// A payload as `skopeo standalone-sign` writes it, extracted with gpg.
    #[test]
    fn skopeo_standalone_sign_payload() {
        /// Stops the gpg-agent of the temporary GNUPGHOME.
        struct Home(tempfile::TempDir);
        impl Drop for Home {
            fn drop(&mut self) {
                let _ = Command::new("gpgconf").env("GNUPGHOME", self.0.path()).args(["--kill", "gpg-agent"]).status();
            }
        }
        let home = Home(tempfile::tempdir().unwrap());
        let home = &home.0;
        let gpg = |args: &[&str]| {
            let out = Command::new("gpg")
                .env("GNUPGHOME", home.path())
                .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
                .args(args)
                .output()
                .expect("gpg must be installed for this test (apt-get install gnupg)");
            assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            out.stdout
        };
        gpg(&["--quick-gen-key", "Payload Test <payload@example.com>", "default", "default", "never"]);
        let manifest = home.path().join("manifest.json");
        std::fs::write(&manifest, br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#).unwrap();
        let sig = home.path().join("signature");
        let out = Command::new("skopeo")
            .env("GNUPGHOME", home.path())
            .args(["standalone-sign", "-o"])
            .arg(&sig)
            .arg(&manifest)
            .args(["quay.io/hoist/test:v1", "payload@example.com"])
            .output()
            .expect("skopeo must be installed for this test (apt-get install skopeo)");
        assert!(out.status.success(), "skopeo standalone-sign: {}", String::from_utf8_lossy(&out.stderr));
        let bytes = gpg(&["--decrypt", sig.to_str().unwrap()]);
        let p = parse(&bytes, PayloadType::Simple).unwrap();
        let expected = crate::digest::Digest::of_bytes(&std::fs::read(&manifest).unwrap()).to_string();
        assert_eq!(p.manifest_digest, expected);
        assert_eq!(p.docker_reference, "quay.io/hoist/test:v1");
        assert!(p.creator().is_some_and(|c| c.contains("atomic")), "{p:?}");
        assert!(p.timestamp().is_some_and(|t| t > 1_600_000_000), "{p:?}");
        assert!(parse(&bytes, PayloadType::Cosign).unwrap_err().to_string().contains("critical.type"));
    }
}
