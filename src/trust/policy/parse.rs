//! Reading policy.json: a JSON reader that refuses duplicate keys at any depth, then a walk over
//! the values that checks every field and names it by its JSON path in errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{
    Fulcio, KeyMaterial, Pki, Policy, PolicyError, Requirement, SignedBy, SignedIdentity, SigstoreSigned, SigstoreTrust,
};
use crate::digest::Digest;
use crate::trust::identity::{DockerRef, valid_domain, valid_domain_component, valid_path_component, valid_tag};

/// Parses a policy file's contents (`path` names it in errors).
pub(super) fn policy(bytes: &[u8], path: &Path) -> Result<Policy, PolicyError> {
    let p = Parser { file: path };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let root = serde_path_to_error::deserialize::<_, Json>(&mut de).map_err(|e| {
        let mut at = At::default();
        for seg in e.path().iter() {
            at = match seg {
                serde_path_to_error::Segment::Seq { index } => at.index(*index),
                serde_path_to_error::Segment::Map { key } => at.key(key),
                _ => at,
            };
        }
        p.err(&at, e.into_inner().to_string())
    })?;
    de.end().map_err(|e| p.err(&At::default(), e.to_string()))?;
    let top = p.obj(&root, &At::default(), &["default", "transports"])?;
    let (default, at) = top
        .get("default")
        .ok_or_else(|| p.err(&top.at, "missing field \"default\" (the global default is mandatory)"))?;
    let default = p.requirements(default, &at)?;
    let mut transports = BTreeMap::new();
    if let Some((v, at)) = top.get("transports") {
        for (name, scopes) in p.obj(v, &at, &[])?.fields {
            let at = at.key(name);
            let mut map = BTreeMap::new();
            for (scope, reqs) in p.obj(scopes, &at, &[])?.fields {
                let at = at.key(scope);
                if !scope.is_empty() {
                    validate_scope(name, scope).map_err(|reason| p.err(&at, format!("invalid scope: {reason}")))?;
                }
                map.insert(scope.clone(), p.requirements(reqs, &at)?);
            }
            transports.insert(name.clone(), map);
        }
    }
    Ok(Policy { path: path.to_path_buf(), default, transports })
}

fn validate_scope(transport: &str, scope: &str) -> Result<(), String> {
    match transport {
        "docker" => docker_scope(scope),
        "oci" | "oci-archive" | "dir" | "sif" => {
            if !scope.starts_with('/') {
                return Err("must be an absolute path".into());
            }
            if scope == "/" {
                return Err("\"/\" is not allowed; use the transport default scope \"\"".into());
            }
            if scope.ends_with('/') || scope[1..].split('/').any(|c| c.is_empty() || c == "." || c == "..") {
                return Err("not in canonical form (no //, ., .. or trailing /)".into());
            }
            if transport.starts_with("oci") && scope.contains(':') {
                return Err("an oci scope is a path without ':' (the image reference is not part of a scope)".into());
            }
            Ok(())
        }
        "docker-archive" | "tarball" => Err(format!("{transport} supports only the transport default scope \"\"")),
        "docker-daemon" => match scope.split_once(':') {
            Some((_, hex)) if !scope.contains('/') && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Err("an image ID (algo:digest) cannot be a scope".into())
            }
            _ => Ok(()),
        },
        "atomic" => {
            let parts: Vec<&str> = scope.split('/').collect();
            let ok = parts.len() <= 3
                && parts.get(1).is_none_or(|p| !p.contains(':'))
                && parts.get(2).is_none_or(|p| p.matches(':').count() <= 1);
            if ok { Ok(()) } else { Err("not HOST[/NAMESPACE[/STREAM[:TAG]]]".into()) }
        }
        // containers-storage, ostree and transports containers/image does not know: not
        // checked (as containers/image does for unknown ones; hoist never looks them up).
        _ => Ok(()),
    }
}

fn docker_scope(scope: &str) -> Result<(), String> {
    const EXPANDED: &str = "scopes are fully expanded: docker.io/library/busybox:latest, not busybox:latest";
    if let Some(domain) = scope.strip_prefix("*.") {
        if domain.split('.').all(valid_domain_component) {
            return Ok(());
        }
        return Err("a wildcard is `*.` and a domain without a port (*.example.com)".into());
    }
    if scope.contains('*') {
        return Err("`*` only as `*.` before a domain (*.example.com)".into());
    }
    let (rest, digest) = match scope.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (scope, None),
    };
    let (host, repo) = match rest.split_once('/') {
        Some((h, r)) => (h, Some(r)),
        None => (rest, None),
    };
    if !valid_domain(host) || !(host.contains(['.', ':']) || host == "localhost") {
        return Err(format!("{host:?} is not a registry host[:port], so this never matches ({EXPANDED})"));
    }
    if host == "index.docker.io" {
        return Err("never matches: index.docker.io is matched as docker.io".into());
    }
    let Some(repo) = repo else {
        return match digest {
            Some(_) => Err("a digest needs a repository".into()),
            None => Ok(()),
        };
    };
    let (path, tag) = match repo.split_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (repo, None),
    };
    if !path.split('/').all(valid_path_component) {
        return Err(format!("{path:?} is not a repository (lowercase components joined by /)"));
    }
    // `docker.io/x` is a namespace (`docker.io/x/app`); with a tag or digest it would be the
    // repository `x`, which is always looked up as `docker.io/library/x`.
    if host == "docker.io" && !path.contains('/') && (tag.is_some() || digest.is_some()) {
        return Err(format!("never matches: Docker Hub's {path} is docker.io/library/{path} ({EXPANDED})"));
    }
    match (tag, digest) {
        (Some(_), Some(_)) => Err("a scope has a tag or a digest, not both".into()),
        (Some(t), None) if !valid_tag(t) => Err(format!("bad tag {t:?}")),
        (None, Some(d)) if d.parse::<Digest>().is_err() => Err(format!("bad digest {d:?} (sha256:<64 hex digits>)")),
        _ => Ok(()),
    }
}

fn validate_remap_prefix(s: &str) -> Result<(), String> {
    let ok = match s.split_once('/') {
        None => valid_domain(s),
        Some((host, path)) => valid_domain(host) && path.split('/').all(valid_path_component),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("prefix {s:?} is not host[:port] or host[:port]/namespace… (no tag or digest)"))
    }
}

// ---- The strict JSON reader ----

/// A JSON value whose objects keep their members in order and refuse duplicate keys.
enum Json {
    Null,
    Bool,
    Number,
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Bool)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
        Ok(Json::Number)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
        Ok(Json::Number)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
        Ok(Json::Number)
    }
    fn visit_str<E>(self, s: &str) -> Result<Json, E> {
        Ok(Json::Str(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Json, E> {
        Ok(Json::Str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Json::Arr(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut out: Vec<(String, Json)> = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.iter().any(|(seen, _)| *seen == k) {
                return Err(de::Error::custom(format!("duplicate key {k:?}")));
            }
            let v = map.next_value()?;
            out.push((k, v));
        }
        Ok(Json::Obj(out))
    }
}

fn describe(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool => "a boolean",
        Json::Number => "a number",
        Json::Str(_) => "a string",
        Json::Arr(_) => "an array",
        Json::Obj(_) => "an object",
    }
}

/// A JSON path for messages: `transports.docker["quay.io/ns"][0].keyPath`.
#[derive(Clone, Default)]
struct At(String);

impl At {
    fn key(&self, k: &str) -> At {
        let plain = k.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        match (plain, self.0.is_empty()) {
            (true, true) => At(k.to_string()),
            (true, false) => At(format!("{}.{k}", self.0)),
            (false, _) => At(format!("{}[{}]", self.0, serde_json::to_string(k).unwrap_or_default())),
        }
    }
    fn index(&self, i: usize) -> At {
        At(format!("{}[{i}]", self.0))
    }
}

struct Obj<'j> {
    at: At,
    fields: &'j [(String, Json)],
}

impl<'j> Obj<'j> {
    fn get(&self, k: &str) -> Option<(&'j Json, At)> {
        self.fields.iter().find(|(name, _)| name == k).map(|(_, v)| (v, self.at.key(k)))
    }
    fn has(&self, k: &str) -> bool {
        self.fields.iter().any(|(name, _)| name == k)
    }
}

struct Parser<'a> {
    file: &'a Path,
}

type R<T> = Result<T, PolicyError>;

impl Parser<'_> {
    fn err(&self, at: &At, reason: impl Into<String>) -> PolicyError {
        let field = if at.0.is_empty() { "(top level)".to_string() } else { at.0.clone() };
        PolicyError::Invalid { path: self.file.to_path_buf(), field, reason: reason.into() }
    }

    fn wrong(&self, v: &Json, at: &At, want: &str) -> PolicyError {
        self.err(at, format!("expected {want}, found {}", describe(v)))
    }

    /// An object whose keys are all in `allowed` (any keys when `allowed` is empty).
    fn obj<'j>(&self, v: &'j Json, at: &At, allowed: &[&str]) -> R<Obj<'j>> {
        let Json::Obj(fields) = v else { return Err(self.wrong(v, at, "an object")) };
        if !allowed.is_empty()
            && let Some((k, _)) = fields.iter().find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            return Err(self.err(at, format!("unknown field {k:?} (expected one of {})", allowed.join(", "))));
        }
        Ok(Obj { at: at.clone(), fields })
    }

    fn required<'j>(&self, o: &Obj<'j>, k: &str) -> R<(&'j Json, At)> {
        o.get(k).ok_or_else(|| self.err(&o.at, format!("missing field {k:?}")))
    }

    fn string(&self, v: &Json, at: &At) -> R<String> {
        match v {
            Json::Str(s) if s.is_empty() => Err(self.err(at, "must not be empty")),
            Json::Str(s) => Ok(s.clone()),
            _ => Err(self.wrong(v, at, "a string")),
        }
    }

    fn array<'j>(&self, v: &'j Json, at: &At) -> R<&'j [Json]> {
        match v {
            Json::Arr(a) if a.is_empty() => Err(self.err(at, "must not be empty")),
            Json::Arr(a) => Ok(a),
            _ => Err(self.wrong(v, at, "an array")),
        }
    }

    fn path(&self, v: &Json, at: &At) -> R<PathBuf> {
        let s = self.string(v, at)?;
        if !s.starts_with('/') || s.contains('\0') {
            return Err(self.err(at, format!("{s:?} is not an absolute path")));
        }
        Ok(PathBuf::from(s))
    }

    fn data(&self, v: &Json, at: &At) -> R<Vec<u8>> {
        // As Go's encoding/json reads []byte: padded standard base64, line breaks ignored.
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        );
        let s: String = self.string(v, at)?.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        engine.decode(s).map_err(|e| self.err(at, format!("not base64: {e}")))
    }

    /// The key material in the field `name` (`…Path`, `…Paths`, `…Data` or `…Datas`) of `o`.
    fn material(&self, o: &Obj, name: &str) -> R<KeyMaterial> {
        let (v, at) = self.required(o, name)?;
        let list = || self.array(v, &at).map(|items| items.iter().enumerate().map(|(i, item)| (item, at.index(i))));
        Ok(if name.ends_with("Paths") {
            KeyMaterial::Paths(list()?.map(|(item, at)| self.path(item, &at)).collect::<R<_>>()?)
        } else if name.ends_with("Path") {
            KeyMaterial::Paths(vec![self.path(v, &at)?])
        } else if name.ends_with("Datas") {
            KeyMaterial::Data(list()?.map(|(item, at)| self.data(item, &at)).collect::<R<_>>()?)
        } else {
            KeyMaterial::Data(vec![self.data(v, &at)?])
        })
    }

    /// Which one of `names` is present: exactly one, or at most one when `required` is false.
    fn one_of<'n>(&self, o: &Obj, names: &[&'n str], required: bool) -> R<Option<&'n str>> {
        let present: Vec<&str> = names.iter().copied().filter(|n| o.has(n)).collect();
        let all = names.join(", ");
        match present.len() {
            0 if required => Err(self.err(&o.at, format!("exactly one of {all} must be present, found none"))),
            0 | 1 => Ok(present.first().copied()),
            _ => Err(self.err(&o.at, format!("only one of {all} may be present, found {}", present.join(" and ")))),
        }
    }

    fn requirements(&self, v: &Json, at: &At) -> R<Vec<Requirement>> {
        let items = self.array(v, at)?;
        items.iter().enumerate().map(|(i, item)| self.requirement(item, &at.index(i))).collect()
    }

    fn kind<'j>(&self, v: &'j Json, at: &At) -> R<&'j str> {
        let o = self.obj(v, at, &[])?;
        match self.required(&o, "type")? {
            (Json::Str(s), _) => Ok(s),
            (other, at) => Err(self.wrong(other, &at, "a string")),
        }
    }

    fn requirement(&self, v: &Json, at: &At) -> R<Requirement> {
        let kind = self.kind(v, at)?;
        match kind {
            "insecureAcceptAnything" | "reject" => {
                self.obj(v, at, &["type"])?;
                Ok(if kind == "reject" { Requirement::Reject } else { Requirement::InsecureAcceptAnything })
            }
            "signedBy" => {
                let o = self.obj(v, at, &["type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"])?;
                let (kt, kt_at) = self.required(&o, "keyType")?;
                match self.string(kt, &kt_at)?.as_str() {
                    "GPGKeys" => {}
                    t @ ("signedByGPGKeys" | "X509Certificates" | "signedByX509CAs") => {
                        return Err(self.err(&kt_at, format!("keyType {t:?} is not implemented (only GPGKeys is)")));
                    }
                    t => return Err(self.err(&kt_at, format!("unknown keyType {t:?} (expected GPGKeys)"))),
                }
                let which = self.one_of(&o, &["keyPath", "keyPaths", "keyData"], true)?.unwrap_or_default();
                let keys = self.material(&o, which)?;
                Ok(Requirement::SignedBy(SignedBy { keys, signed_identity: self.signed_identity(&o)? }))
            }
            "sigstoreSigned" => self.sigstore(v, at),
            "signedBaseLayer" => {
                Err(self.err(at, "signedBaseLayer is not implemented (containers/image refuses it too)"))
            }
            other => Err(self.err(&at.key("type"), format!("unknown requirement type {other:?}"))),
        }
    }

    fn sigstore(&self, v: &Json, at: &At) -> R<Requirement> {
        const KEYS: [&str; 6] = ["keyPath", "keyPaths", "keyData", "keyDatas", "fulcio", "pki"];
        const REKOR: [&str; 4] =
            ["rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData", "rekorPublicKeyDatas"];
        let allowed: Vec<&str> = ["type", "signedIdentity"].into_iter().chain(KEYS).chain(REKOR).collect();
        let o = self.obj(v, at, &allowed)?;
        let which = self.one_of(&o, &KEYS, true)?.unwrap_or_default();
        let rekor = self.one_of(&o, &REKOR, false)?;
        let trust = match which {
            "fulcio" => {
                let (v, at) = self.required(&o, "fulcio")?;
                let f = self.obj(v, &at, &["caPath", "caData", "oidcIssuer", "subjectEmail"])?;
                let ca = self.one_of(&f, &["caPath", "caData"], true)?.unwrap_or_default();
                if rekor.is_none() {
                    return Err(self.err(&o.at, format!("fulcio needs one of {}", REKOR.join(", "))));
                }
                let text = |k: &str| self.required(&f, k).and_then(|(v, at)| self.string(v, &at));
                SigstoreTrust::Fulcio(Fulcio {
                    ca: self.material(&f, ca)?,
                    oidc_issuer: text("oidcIssuer")?,
                    subject_email: text("subjectEmail")?,
                })
            }
            "pki" => {
                let (v, at) = self.required(&o, "pki")?;
                let names = [
                    "caRootsPath",
                    "caRootsData",
                    "caIntermediatesPath",
                    "caIntermediatesData",
                    "subjectEmail",
                    "subjectHostname",
                ];
                let p = self.obj(v, &at, &names)?;
                let roots = self.one_of(&p, &names[..2], true)?.unwrap_or_default();
                let intermediates = self.one_of(&p, &names[2..4], false)?;
                if let Some(r) = rekor {
                    return Err(self.err(&o.at, format!("{r} cannot be used with pki")));
                }
                let text = |k: &str| p.get(k).map(|(v, at)| self.string(v, &at)).transpose();
                let (subject_email, subject_hostname) = (text("subjectEmail")?, text("subjectHostname")?);
                if subject_email.is_none() && subject_hostname.is_none() {
                    return Err(self.err(&at, "at least one of subjectEmail, subjectHostname must be present"));
                }
                SigstoreTrust::Pki(Pki {
                    ca_roots: self.material(&p, roots)?,
                    ca_intermediates: intermediates.map(|i| self.material(&p, i)).transpose()?,
                    subject_email,
                    subject_hostname,
                })
            }
            keys => SigstoreTrust::PublicKeys(self.material(&o, keys)?),
        };
        let rekor_public_keys = rekor.map(|r| self.material(&o, r)).transpose()?;
        let signed_identity = self.signed_identity(&o)?;
        Ok(Requirement::SigstoreSigned(SigstoreSigned { trust, rekor_public_keys, signed_identity }))
    }

    fn signed_identity(&self, requirement: &Obj) -> R<SignedIdentity> {
        let Some((v, at)) = requirement.get("signedIdentity") else {
            return Ok(SignedIdentity::MatchRepoDigestOrExact);
        };
        let kind = self.kind(v, &at)?;
        let only = |fields: &[&str]| self.obj(v, &at, fields);
        let text = |o: &Obj, k: &str| self.required(o, k).and_then(|(v, at)| Ok((self.string(v, &at)?, at)));
        Ok(match kind {
            "matchExact" | "matchRepoDigestOrExact" | "matchRepository" => {
                only(&["type"])?;
                match kind {
                    "matchExact" => SignedIdentity::MatchExact,
                    "matchRepository" => SignedIdentity::MatchRepository,
                    _ => SignedIdentity::MatchRepoDigestOrExact,
                }
            }
            "exactReference" => {
                let (r, r_at) = text(&only(&["type", "dockerReference"])?, "dockerReference")?;
                let parsed = DockerRef::parse(&r)
                    .map_err(|e| self.err(&r_at, format!("{r:?} is not a valid reference: {e}")))?;
                if parsed.name_only() {
                    return Err(self.err(&r_at, format!("{r:?} has neither a tag nor a digest")));
                }
                SignedIdentity::ExactReference { docker_reference: r }
            }
            "exactRepository" => {
                let (r, r_at) = text(&only(&["type", "dockerRepository"])?, "dockerRepository")?;
                DockerRef::parse(&r).map_err(|e| self.err(&r_at, format!("{r:?} is not a valid repository: {e}")))?;
                SignedIdentity::ExactRepository { docker_repository: r }
            }
            "remapIdentity" => {
                let o = only(&["type", "prefix", "signedPrefix"])?;
                let (prefix, p_at) = text(&o, "prefix")?;
                let (signed_prefix, s_at) = text(&o, "signedPrefix")?;
                validate_remap_prefix(&prefix).map_err(|e| self.err(&p_at, e))?;
                validate_remap_prefix(&signed_prefix).map_err(|e| self.err(&s_at, e))?;
                SignedIdentity::RemapIdentity { prefix, signed_prefix }
            }
            other => return Err(self.err(&at.key("type"), format!("unknown signedIdentity type {other:?}"))),
        })
    }
}
