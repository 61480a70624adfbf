//! containers-policy.json(5): a strict parse of the file, and the most specific scope for an image.
//!
//! The file is parsed the way containers/image parses it (`signature/policy_config*.go`), only
//! stricter where that can never change which images are accepted, and every error names the
//! file and the JSON path of the offending field (`transports.docker["quay.io/ns"][0].keyPath`):
//! - Unknown, duplicated (at any depth, also transport names and scopes) or mistyped fields, a
//!   missing `default` and an empty requirement list reject the whole file.
//! - Transport names are not checked (an unknown transport is kept, as containers/image keeps
//!   it). Scopes are checked per transport: `docker` ones must be something a lookup can produce
//!   (see [`Policy::applies`]), so a scope that could never match (`busybox`, `docker.io/busybox:1`,
//!   `quay.io/ns/app:1@sha256:…`) is refused instead of silently falling through to a weaker
//!   default; `oci`, `oci-archive`, `dir` and `sif` scopes are absolute canonical paths other than
//!   `/`; `docker-archive` and `tarball` have only the transport default `""`.
//! - Requirements are `insecureAcceptAnything`, `reject`, `signedBy` (`keyType: GPGKeys` only) and
//!   `sigstoreSigned` (public keys, `fulcio` or `pki`). Key paths must be absolute; key data is
//!   base64 and decoded here; lists of keys must not be empty.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::identity::DockerRef;
use crate::imgref::RegistryRef;

mod parse;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file does not exist; `hint` (filled in by the caller, may be empty) says what
    /// to do about it.
    #[error("policy file {} does not exist{}", path.display(), if hint.is_empty() { String::new() } else { format!(": {hint}") })]
    Missing { path: PathBuf, hint: String },
    #[error("invalid policy {}: {field}: {reason}", path.display())]
    Invalid { path: PathBuf, field: String, reason: String },
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("key file {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
}

/// A parsed policy.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The file it came from (for messages and records).
    pub path: PathBuf,
    /// The global default requirements (never empty).
    pub default: Vec<Requirement>,
    /// Transport name → scope (`""` is the transport default) → requirements (never empty).
    pub transports: BTreeMap<String, BTreeMap<String, Vec<Requirement>>>,
}

/// One requirement object; all of a scope's requirements must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    InsecureAcceptAnything,
    Reject,
    SignedBy(SignedBy),
    SigstoreSigned(SigstoreSigned),
}

/// `signedBy` with `keyType: GPGKeys` (the only key type containers/image implements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBy {
    /// `keyPath`/`keyPaths` or `keyData`: OpenPGP keyrings.
    pub keys: KeyMaterial,
    pub signed_identity: SignedIdentity,
}

/// `sigstoreSigned`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigstoreSigned {
    pub trust: SigstoreTrust,
    /// `rekorPublicKeyPath|rekorPublicKeyPaths|rekorPublicKeyData|rekorPublicKeyDatas`: when set,
    /// a signature needs a Rekor SET signed by one of these keys. Always set with `fulcio`, never
    /// with `pki`.
    pub rekor_public_keys: Option<KeyMaterial>,
    pub signed_identity: SignedIdentity,
}

/// What makes a sigstore signature's key trusted: exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigstoreTrust {
    /// `keyPath|keyPaths|keyData|keyDatas`: public keys (PEM).
    PublicKeys(KeyMaterial),
    Fulcio(Fulcio),
    Pki(Pki),
}

/// `fulcio`: a certificate issued by this Fulcio CA to exactly this OIDC identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fulcio {
    /// `caPath` or `caData` (one entry).
    pub ca: KeyMaterial,
    pub oidc_issuer: String,
    pub subject_email: String,
}

/// `pki`: a certificate chaining to these roots, issued to this email and/or hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    /// `caRootsPath` or `caRootsData` (one entry).
    pub ca_roots: KeyMaterial,
    /// `caIntermediatesPath` or `caIntermediatesData` (one entry), if any.
    pub ca_intermediates: Option<KeyMaterial>,
    /// At least one of the two is set.
    pub subject_email: Option<String>,
    pub subject_hostname: Option<String>,
}

/// Keys, keyrings or certificates: files (read when evaluating) or data from the file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// Absolute paths, at least one.
    Paths(Vec<PathBuf>),
    /// Decoded base64 values, at least one, none empty.
    Data(Vec<Vec<u8>>),
}

/// `signedIdentity`: which identities a signature may claim for the image (default
/// `matchRepoDigestOrExact`). The `match*` and `remapIdentity` rules compare with the image's
/// docker reference, so for images from local transports (`oci:`, `oci-archive:`,
/// `docker-archive:`) only `exactReference` and `exactRepository` can ever match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedIdentity {
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    /// A reference with a tag or a digest, as written in the file.
    ExactReference {
        docker_reference: String,
    },
    /// A repository (a tag or digest, if written, is ignored), as written in the file.
    ExactRepository {
        docker_repository: String,
    },
    /// `prefix`/`signedPrefix`: each a `host[:port]` or `host[:port]/path…` in fully expanded form.
    RemapIdentity {
        prefix: String,
        signed_prefix: String,
    },
}

/// What an image is, for the scope lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageScope {
    /// A registry image (`docker` transport).
    Docker(RegistryRef),
    /// A local image. `path` must be absolute and free of symlinks (`std::fs::canonicalize`);
    /// `reference` is not part of the lookup (containers-policy.json(5): "The _reference_
    /// annotation value, if any, is not used").
    Path { transport: &'static str, path: PathBuf, reference: Option<String> },
}

/// The requirements that apply to an image, and which scope they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<'a> {
    /// `docker:localhost:5000/team/app`, `docker: (transport default)` or `default`.
    pub scope: String,
    pub requirements: &'a [Requirement],
    /// The scope names the image's repository itself (`host/repo`, `host/repo:tag` or
    /// `host/repo@digest`), not a namespace, host, wildcard or default: the only scopes under
    /// which a cosign bundle, which names no repository, is accepted ([`super::bundle`]).
    pub names_repository: bool,
}

impl Policy {
    /// Reads and parses `path`; a missing file is [`PolicyError::Missing`] with an empty hint.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        match std::fs::read(path) {
            Ok(bytes) => Policy::parse(&bytes, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(PolicyError::Missing { path: path.to_path_buf(), hint: String::new() })
            }
            Err(source) => Err(PolicyError::Read { path: path.to_path_buf(), source }),
        }
    }

    /// Parses the contents of a policy file (`path` names it in errors).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Policy, PolicyError> {
        parse::policy(bytes, path)
    }

    /// The requirements of the most specific scope that matches `image`, in containers/image's
    /// order (`requirementsForImageRef`): the image's identity, its namespaces, the transport's
    /// `""`, the global `default`.
    ///
    /// For `docker`, the identity is `host[:port]/repo:tag` or `host[:port]/repo@digest` (an image
    /// with both is looked up by digest, then by tag; containers/image refuses such references),
    /// then `host[:port]/repo` and each parent namespace up to `host[:port]`, then `*.` wildcards of
    /// the host without its port, longest first (`reg.example.com:5000` → `*.example.com`, `*.com`;
    /// never `example.com` itself). Docker Hub names are expanded (`docker.io/library/busybox`).
    /// For `oci` and `oci-archive`: the path, then its parent directories (not `/`). For
    /// `docker-archive`: only `""` and `default`.
    pub fn applies(&self, image: &ImageScope) -> Applied<'_> {
        let (transport, candidates, repository) = match image {
            ImageScope::Docker(r) => ("docker", docker_scopes(r), Some(DockerRef::from_registry_ref(r).name)),
            ImageScope::Path { transport, path, .. } => (*transport, path_candidates(transport, path), None),
        };
        if let Some(scopes) = self.transports.get(transport) {
            for c in candidates {
                if let Some((scope, reqs)) = scopes.get_key_value(&c) {
                    let names_repository = repository.as_deref().is_some_and(|name| {
                        c.strip_prefix(name).is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '@']))
                    });
                    return Applied { scope: format!("{transport}:{scope}"), requirements: reqs, names_repository };
                }
            }
            if let Some(reqs) = scopes.get("") {
                return Applied {
                    scope: format!("{transport} (transport default)"),
                    requirements: reqs,
                    names_repository: false,
                };
            }
        }
        Applied { scope: "default".into(), requirements: &self.default, names_repository: false }
    }
}

/// The scopes a docker reference falls under, most specific first (see [`Policy::applies`]);
/// registries.d namespaces are looked up in the same order ([`super::sources`]).
pub fn docker_scopes(r: &RegistryRef) -> Vec<String> {
    let r = DockerRef::from_registry_ref(r);
    let mut out = Vec::new();
    if let Some(d) = &r.digest {
        out.push(format!("{}@{d}", r.name));
    }
    if let Some(t) = &r.tag {
        out.push(format!("{}:{t}", r.name));
    }
    let mut name = r.name.as_str();
    loop {
        out.push(name.to_string());
        match name.rfind('/') {
            Some(i) => name = &name[..i],
            None => break,
        }
    }
    let mut host = name.split(':').next().unwrap_or(name);
    while let Some(i) = host.find('.') {
        host = &host[i + 1..];
        out.push(format!("*.{host}"));
    }
    out
}

fn path_candidates(transport: &str, path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Some(mut p) = path.to_str().filter(|p| p.starts_with('/') && transport != "docker-archive") else {
        return out;
    };
    while let Some(i) = p.rfind('/') {
        if p == "/" {
            break;
        }
        out.push(p.to_string());
        p = &p[..i];
    }
    out
}

impl Requirement {
    /// The JSON `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Requirement::InsecureAcceptAnything => "insecureAcceptAnything",
            Requirement::Reject => "reject",
            Requirement::SignedBy(_) => "signedBy",
            Requirement::SigstoreSigned(_) => "sigstoreSigned",
        }
    }
}

impl SignedIdentity {
    /// The JSON `type`.
    pub fn name(&self) -> &'static str {
        match self {
            SignedIdentity::MatchExact => "matchExact",
            SignedIdentity::MatchRepoDigestOrExact => "matchRepoDigestOrExact",
            SignedIdentity::MatchRepository => "matchRepository",
            SignedIdentity::ExactReference { .. } => "exactReference",
            SignedIdentity::ExactRepository { .. } => "exactRepository",
            SignedIdentity::RemapIdentity { .. } => "remapIdentity",
        }
    }
}

impl KeyMaterial {
    /// The contents: the files read now (errors name the file), or the data as decoded.
    pub fn load(&self) -> Result<Vec<Vec<u8>>, PolicyError> {
        match self {
            KeyMaterial::Data(d) => Ok(d.clone()),
            KeyMaterial::Paths(paths) => paths
                .iter()
                .map(|p| match std::fs::read(p) {
                    Ok(b) if b.is_empty() => {
                        Err(PolicyError::Key { path: p.clone(), reason: "the file is empty".into() })
                    }
                    Ok(b) => Ok(b),
                    Err(source) => Err(PolicyError::Read { path: p.clone(), source }),
                })
                .collect(),
        }
    }
}

/// `{prefix}Path=…`, `{prefix}Paths=[…]`, `{prefix}Data=(N bytes)`, `{prefix}Datas=(N values)`.
struct Keys<'a>(&'a str, &'a KeyMaterial);

impl fmt::Display for Keys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Keys(prefix, keys) = self;
        match keys {
            KeyMaterial::Paths(p) if p.len() == 1 => write!(f, "{prefix}Path={}", p[0].display()),
            KeyMaterial::Paths(p) => {
                let list: Vec<String> = p.iter().map(|p| p.display().to_string()).collect();
                write!(f, "{prefix}Paths=[{}]", list.join(", "))
            }
            KeyMaterial::Data(d) if d.len() == 1 => write!(f, "{prefix}Data=({} bytes)", d[0].len()),
            KeyMaterial::Data(d) => write!(f, "{prefix}Datas=({} values)", d.len()),
        }
    }
}

impl fmt::Display for SignedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self {
            SignedIdentity::ExactReference { docker_reference } => write!(f, " dockerReference={docker_reference}"),
            SignedIdentity::ExactRepository { docker_repository } => write!(f, " dockerRepository={docker_repository}"),
            SignedIdentity::RemapIdentity { prefix, signed_prefix } => {
                write!(f, " prefix={prefix} signedPrefix={signed_prefix}")
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::InsecureAcceptAnything | Requirement::Reject => f.write_str(self.kind()),
            Requirement::SignedBy(s) => {
                write!(f, "signedBy GPGKeys {}, signedIdentity {}", Keys("key", &s.keys), s.signed_identity)
            }
            Requirement::SigstoreSigned(s) => {
                f.write_str("sigstoreSigned ")?;
                match &s.trust {
                    SigstoreTrust::PublicKeys(k) => write!(f, "{}", Keys("key", k))?,
                    SigstoreTrust::Fulcio(c) => write!(
                        f,
                        "fulcio({}, oidcIssuer={}, subjectEmail={})",
                        Keys("ca", &c.ca),
                        c.oidc_issuer,
                        c.subject_email
                    )?,
                    SigstoreTrust::Pki(p) => {
                        write!(f, "pki({}", Keys("caRoots", &p.ca_roots))?;
                        if let Some(i) = &p.ca_intermediates {
                            write!(f, ", {}", Keys("caIntermediates", i))?;
                        }
                        if let Some(e) = &p.subject_email {
                            write!(f, ", subjectEmail={e}")?;
                        }
                        if let Some(h) = &p.subject_hostname {
                            write!(f, ", subjectHostname={h}")?;
                        }
                        f.write_str(")")?;
                    }
                }
                if let Some(r) = &s.rekor_public_keys {
                    write!(f, ", {}", Keys("rekorPublicKey", r))?;
                }
                write!(f, ", signedIdentity {}", s.signed_identity)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(json: &str) -> Result<Policy, PolicyError> {
        Policy::parse(json.as_bytes(), Path::new("/etc/containers/policy.json"))
    }

    /// `{"default": [...], "transports": {"T": {"S": [REQ]}}}` around one requirement.
    fn with_req(req: &str) -> String {
        format!(r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{"quay.io": [{req}]}}}}}}"#)
    }

    fn with_scope(transport: &str, scope: &str) -> String {
        let scope = serde_json::to_string(scope).unwrap();
        format!(
            r#"{{"default": [{{"type": "reject"}}], "transports": {{"{transport}": {{{scope}: [{{"type": "reject"}}]}}}}}}"#
        )
    }

    fn only_req(json: &str) -> Requirement {
        let p = parse(&with_req(json)).unwrap_or_else(|e| panic!("{json}: {e}"));
        p.transports["docker"]["quay.io"][0].clone()
    }

    #[test]
    fn every_requirement_type() {
        use SignedIdentity::*;
        for (json, shown) in [
            (r#"{"type": "insecureAcceptAnything"}"#, "insecureAcceptAnything"),
            (r#"{"type": "reject"}"#, "reject"),
            (
                r#"{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/etc/pki/rpm-gpg/KEY"}"#,
                "signedBy GPGKeys keyPath=/etc/pki/rpm-gpg/KEY, signedIdentity matchRepoDigestOrExact",
            ),
            (
                r#"{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": ["/a", "/b"], "signedIdentity": {"type": "matchExact"}}"#,
                "signedBy GPGKeys keyPaths=[/a, /b], signedIdentity matchExact",
            ),
            (
                r#"{"type": "signedBy", "keyType": "GPGKeys", "keyData": "aGVsbG8=", "signedIdentity": {"type": "matchRepository"}}"#,
                "signedBy GPGKeys keyData=(5 bytes), signedIdentity matchRepository",
            ),
            (
                r#"{"type": "sigstoreSigned", "keyPath": "/k.pub", "signedIdentity": {"type": "exactReference", "dockerReference": "quay.io/a/b:1"}}"#,
                "sigstoreSigned keyPath=/k.pub, signedIdentity exactReference dockerReference=quay.io/a/b:1",
            ),
            (
                r#"{"type": "sigstoreSigned", "keyDatas": ["aGk=", "aGV5"], "rekorPublicKeyPath": "/r.pub", "signedIdentity": {"type": "exactRepository", "dockerRepository": "busybox"}}"#,
                "sigstoreSigned keyDatas=(2 values), rekorPublicKeyPath=/r.pub, signedIdentity exactRepository dockerRepository=busybox",
            ),
            (
                r#"{"type": "sigstoreSigned", "fulcio": {"caPath": "/f.pem", "oidcIssuer": "https://github.com/login/oauth", "subjectEmail": "a@b.c"}, "rekorPublicKeyData": "aGk=", "signedIdentity": {"type": "remapIdentity", "prefix": "mirror:5000/v", "signedPrefix": "v.example.com"}}"#,
                "sigstoreSigned fulcio(caPath=/f.pem, oidcIssuer=https://github.com/login/oauth, subjectEmail=a@b.c), rekorPublicKeyData=(2 bytes), signedIdentity remapIdentity prefix=mirror:5000/v signedPrefix=v.example.com",
            ),
            (
                r#"{"type": "sigstoreSigned", "pki": {"caRootsPath": "/r.pem", "caIntermediatesData": "aGk=", "subjectHostname": "h.example.com", "subjectEmail": "a@b.c"}}"#,
                "sigstoreSigned pki(caRootsPath=/r.pem, caIntermediatesData=(2 bytes), subjectEmail=a@b.c, subjectHostname=h.example.com), signedIdentity matchRepoDigestOrExact",
            ),
        ] {
            assert_eq!(only_req(json).to_string(), shown, "{json}");
        }
        let Requirement::SigstoreSigned(s) = only_req(
            r#"{"type": "sigstoreSigned", "fulcio": {"caData": "aGk=", "oidcIssuer": "i", "subjectEmail": "e"}, "rekorPublicKeyPaths": ["/r1", "/r2"]}"#,
        ) else {
            panic!()
        };
        assert_eq!(
            s.trust,
            SigstoreTrust::Fulcio(Fulcio {
                ca: KeyMaterial::Data(vec![b"hi".to_vec()]),
                oidc_issuer: "i".into(),
                subject_email: "e".into()
            })
        );
        assert_eq!(s.rekor_public_keys, Some(KeyMaterial::Paths(vec!["/r1".into(), "/r2".into()])));
        assert_eq!(s.signed_identity, MatchRepoDigestOrExact);
        assert_eq!(only_req(r#"{"type": "reject"}"#).kind(), "reject");
        // keyData as Go reads it: line breaks ignored.
        let Requirement::SignedBy(b) =
            only_req(r#"{"type": "signedBy", "keyType": "GPGKeys", "keyData": "aGVs\nbG8="}"#)
        else {
            panic!()
        };
        assert_eq!(b.keys.load().unwrap(), vec![b"hello".to_vec()]);
    }

    #[test]
    fn invalid_files_name_the_field() {
        let gpg = r#""type": "signedBy", "keyType": "GPGKeys""#;
        let sig = r#""type": "sigstoreSigned""#;
        let fulcio = r#""fulcio": {"caPath": "/f", "oidcIssuer": "i", "subjectEmail": "e"}"#;
        let r = |s: &str| with_req(s);
        let at = r#"transports.docker["quay.io"][0]"#;
        #[rustfmt::skip]
        let table: Vec<(String, String)> = vec![
            ("".into(), "(top level): EOF while parsing".into()),
            ("[]".into(), "(top level): expected an object, found an array".into()),
            ("{}".into(), "(top level): missing field \"default\"".into()),
            (r#"{"default": []}"#.into(), "default: must not be empty".into()),
            (r#"{"default": null}"#.into(), "default: expected an array, found null".into()),
            (r#"{"default": [{"type": "reject"}]} x"#.into(), "(top level): trailing characters".into()),
            (r#"{"default": [{"type": "reject"}], "Default": 1}"#.into(), "(top level): unknown field \"Default\"".into()),
            (r#"{"default": [{"type": "reject"}], "default": [{"type": "reject"}]}"#.into(), "(top level): duplicate key \"default\"".into()),
            (r#"{"default": [{"type": "reject"}], "transports": {"docker": {}, "docker": {}}}"#.into(), "transports: duplicate key \"docker\"".into()),
            (r#"{"default": [{"type": "reject"}], "transports": {"docker": {"q.io": [{"type": "reject"}], "q.io": [{"type": "reject"}]}}}"#.into(),
                "transports.docker: duplicate key \"q.io\"".into()),
            (r#"{"default": [{"type": "reject", "type": "reject"}]}"#.into(), "default[0]: duplicate key \"type\"".into()),
            (r#"{"default": [{"type": "reject"}], "transports": {"docker": []}}"#.into(), "transports.docker: expected an object, found an array".into()),
            (r#"{"default": [{"type": "reject"}], "transports": {"docker": {"q.io": []}}}"#.into(), "transports.docker[\"q.io\"]: must not be empty".into()),
            (r#"{"default": [{}]}"#.into(), "default[0]: missing field \"type\"".into()),
            (r#"{"default": [{"type": 1}]}"#.into(), "default[0].type: expected a string, found a number".into()),
            (r#"{"default": [{"type": "rejectt"}]}"#.into(), "default[0].type: unknown requirement type \"rejectt\"".into()),
            (r#"{"default": [{"type": "reject", "x": 1}]}"#.into(), "default[0]: unknown field \"x\"".into()),
            (r#"{"default": [{"type": "signedBaseLayer", "baseLayerIdentity": {"type": "matchExact"}}]}"#.into(), "default[0]: signedBaseLayer is not implemented".into()),
            (r#"{"default": [{"type": "signedBy", "keyPath": "/k"}]}"#.into(), "default[0]: missing field \"keyType\"".into()),
            (r(&format!(r#"{{{gpg}, "keyPath": "/k", "keyPaht": "/k"}}"#)), format!("{at}: unknown field \"keyPaht\"")),
            (r(r#"{"type": "signedBy", "keyType": "signedByGPGKeys", "keyPath": "/k"}"#), format!("{at}.keyType: keyType \"signedByGPGKeys\" is not implemented")),
            (r(r#"{"type": "signedBy", "keyType": "X509Certificates", "keyPath": "/k"}"#), format!("{at}.keyType: keyType \"X509Certificates\" is not implemented")),
            (r(r#"{"type": "signedBy", "keyType": "gpg", "keyPath": "/k"}"#), format!("{at}.keyType: unknown keyType \"gpg\"")),
            (r(&format!("{{{gpg}}}")), format!("{at}: exactly one of keyPath, keyPaths, keyData must be present, found none")),
            (r(&format!(r#"{{{gpg}, "keyPath": "/k", "keyData": "aGk="}}"#)), format!("{at}: only one of keyPath, keyPaths, keyData may be present, found keyPath and keyData")),
            (r(&format!(r#"{{{gpg}, "keyPath": "k"}}"#)), format!("{at}.keyPath: \"k\" is not an absolute path")),
            (r(&format!(r#"{{{gpg}, "keyPath": ""}}"#)), format!("{at}.keyPath: must not be empty")),
            (r(&format!(r#"{{{gpg}, "keyPaths": []}}"#)), format!("{at}.keyPaths: must not be empty")),
            (r(&format!(r#"{{{gpg}, "keyPaths": ["/a", 3]}}"#)), format!("{at}.keyPaths[1]: expected a string, found a number")),
            (r(&format!(r#"{{{gpg}, "keyData": "!!"}}"#)), format!("{at}.keyData: not base64")),
            (r(&format!(r#"{{{gpg}, "keyData": ""}}"#)), format!("{at}.keyData: must not be empty")),
            (r(&format!(r#"{{{gpg}, "keyPath": "/k", "signedIdentity": {{"type": "matchExact", "x": 1}}}}"#)), format!("{at}.signedIdentity: unknown field \"x\"")),
            (r(&format!(r#"{{{gpg}, "keyPath": "/k", "signedIdentity": {{"type": "matchExact", "type": "matchExact"}}}}"#)), format!("{at}.signedIdentity: duplicate key \"type\"")),
            (r(&format!(r#"{{{gpg}, "keyPath": "/k", "signedIdentity": null}}"#)), format!("{at}.signedIdentity: expected an object, found null")),
            (r(&format!(r#"{{{gpg}, "keyPath": "/k", "signedIdentity": {{"type": "matchAnything"}}}}"#)), format!("{at}.signedIdentity.type: unknown signedIdentity type \"matchAnything\"")),
            (r(&format!(r#"{{{gpg}, "keyPath": "/k", "signedIdentity": {{"type": "exactReference"}}}}"#)), format!("{at}.signedIdentity: missing field \"dockerReference\"")),
            (r(&format!(r#"{{{gpg}, "keyPath": "/k", "signedIdentity": {{"type": "exactReference", "dockerReference": "quay.io/a"}}}}"#)),
                format!("{at}.signedIdentity.dockerReference: \"quay.io/a\" has neither a tag nor a digest")),
            (r(&format!(r#"{{{gpg}, "keyPath": "/k", "signedIdentity": {{"type": "exactReference", "dockerReference": "Quay.io/A:1"}}}}"#)),
                format!("{at}.signedIdentity.dockerReference: \"Quay.io/A:1\" is not a valid reference: repository name must be lowercase")),
            (r(&format!(r#"{{{gpg}, "keyPath": "/k", "signedIdentity": {{"type": "exactRepository", "dockerRepository": "a//b"}}}}"#)),
                format!("{at}.signedIdentity.dockerRepository: \"a//b\" is not a valid repository")),
            (r(&format!(r#"{{{gpg}, "keyPath": "/k", "signedIdentity": {{"type": "remapIdentity", "prefix": "q.io/a:1", "signedPrefix": "r.io"}}}}"#)),
                format!("{at}.signedIdentity.prefix: prefix \"q.io/a:1\" is not host[:port]")),
            (r(&format!(r#"{{{gpg}, "keyPath": "/k", "signedIdentity": {{"type": "remapIdentity", "prefix": "q.io", "signedPrefix": ""}}}}"#)),
                format!("{at}.signedIdentity.signedPrefix: must not be empty")),
            (r(&format!(r#"{{{gpg}, "keyPath": "/k", "signedIdentity": {{"type": "remapIdentity", "prefix": "q.io"}}}}"#)),
                format!("{at}.signedIdentity: missing field \"signedPrefix\"")),
            (r(&format!("{{{sig}}}")), format!("{at}: exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio, pki must be present, found none")),
            (r(&format!(r#"{{{sig}, "keyPath": "/k", {fulcio}}}"#)), format!("{at}: only one of keyPath, keyPaths, keyData, keyDatas, fulcio, pki may be present, found keyPath and fulcio")),
            (r(&format!(r#"{{{sig}, "keyDatas": []}}"#)), format!("{at}.keyDatas: must not be empty")),
            (r(&format!(r#"{{{sig}, "keyType": "GPGKeys", "keyPath": "/k"}}"#)), format!("{at}: unknown field \"keyType\"")),
            (r(&format!(r#"{{{sig}, {fulcio}}}"#)), format!("{at}: fulcio needs one of rekorPublicKeyPath")),
            (r(&format!(r#"{{{sig}, "keyPath": "/k", "rekorPublicKeyPath": "/r", "rekorPublicKeyData": "aGk="}}"#)),
                format!("{at}: only one of rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData, rekorPublicKeyDatas may be present")),
            (r(&format!(r#"{{{sig}, "fulcio": {{"caPath": "/f", "oidcIssuer": "i"}}, "rekorPublicKeyPath": "/r"}}"#)), format!("{at}.fulcio: missing field \"subjectEmail\"")),
            (r(&format!(r#"{{{sig}, "fulcio": {{"caPath": "/f", "caData": "aGk=", "oidcIssuer": "i", "subjectEmail": "e"}}, "rekorPublicKeyPath": "/r"}}"#)),
                format!("{at}.fulcio: only one of caPath, caData may be present")),
            (r(&format!(r#"{{{sig}, "fulcio": {{"oidcIssuer": "i", "subjectEmail": "e"}}, "rekorPublicKeyPath": "/r"}}"#)), format!("{at}.fulcio: exactly one of caPath, caData must be present")),
            (r(&format!(r#"{{{sig}, "fulcio": {{"caPath": "/f", "oidcIssuer": "", "subjectEmail": "e"}}, "rekorPublicKeyPath": "/r"}}"#)), format!("{at}.fulcio.oidcIssuer: must not be empty")),
            (r(&format!(r#"{{{sig}, "fulcio": {{"caPath": "/f", "oidcIssuer": "i", "subjectEmail": "e", "subjectURI": "u"}}, "rekorPublicKeyPath": "/r"}}"#)), format!("{at}.fulcio: unknown field \"subjectURI\"")),
            (r(&format!(r#"{{{sig}, "pki": {{"caRootsPath": "/r"}}}}"#)), format!("{at}.pki: at least one of subjectEmail, subjectHostname must be present")),
            (r(&format!(r#"{{{sig}, "pki": {{"subjectEmail": "e"}}}}"#)), format!("{at}.pki: exactly one of caRootsPath, caRootsData must be present")),
            (r(&format!(r#"{{{sig}, "pki": {{"caRootsPath": "/r", "caIntermediatesPath": "/i", "caIntermediatesData": "aGk=", "subjectEmail": "e"}}}}"#)),
                format!("{at}.pki: only one of caIntermediatesPath, caIntermediatesData may be present")),
            (r(&format!(r#"{{{sig}, "pki": {{"caRootsPath": "/r", "subjectEmail": "e"}}, "rekorPublicKeyPath": "/r"}}"#)), format!("{at}: rekorPublicKeyPath cannot be used with pki")),
            (r(&format!(r#"{{{sig}, "pki": {{"caRootsPath": "/r", "subjectEmail": "e", "subjectEmail": "f"}}}}"#)), format!("{at}.pki: duplicate key \"subjectEmail\"")),
            (r(r#"{"type": "reject"}, {"type": "insecureAcceptAnything", "keyPath": "/k"}"#), r#"transports.docker["quay.io"][1]: unknown field "keyPath""#.into()),
        ];
        for (json, want) in &table {
            let e = parse(json).expect_err(json).to_string();
            let want = format!("invalid policy /etc/containers/policy.json: {want}");
            assert!(e.starts_with(&want), "{json}\n got: {e}\nwant: {want}");
        }
    }

    #[test]
    fn scopes() {
        for (transport, scope) in [
            ("docker", "quay.io"),
            ("docker", "localhost"),
            ("docker", "localhost:5000"),
            ("docker", "127.0.0.1:5000/team"),
            ("docker", "quay.io/ns/app"),
            ("docker", "quay.io/ns/app:v1.0"),
            ("docker", &format!("quay.io/ns/app@{D}")),
            ("docker", "docker.io/library/busybox"),
            ("docker", "docker.io/library"),
            ("docker", "docker.io/openshift"),
            ("docker", "docker.io"),
            ("docker", "*.example.com"),
            ("docker", "*.com"),
            ("oci", "/srv/layouts"),
            ("oci-archive", "/srv/images/app.tar"),
            ("dir", "/srv/dir:with:colons"),
            ("sif", "/srv/a"),
            ("containers-storage", "[overlay@/var/lib/containers/storage]docker.io/library/busybox:latest"),
            ("atomic", "hostname:5000/myns/official"),
            ("docker-daemon", "docker.io/library/busybox:latest"),
            ("made-up-transport", "anything at all"),
        ] {
            let p = parse(&with_scope(transport, scope)).unwrap_or_else(|e| panic!("{transport}:{scope}: {e}"));
            assert!(p.transports[transport].contains_key(scope));
        }
        for (transport, scope, reason) in [
            ("docker", "busybox", "\"busybox\" is not a registry host[:port], so this never matches"),
            ("docker", "busybox:latest", "\"busybox:latest\" is not a registry host[:port]"),
            ("docker", "library/busybox", "\"library\" is not a registry host[:port]"),
            ("docker", "docker.io/busybox:1", "never matches: Docker Hub's busybox is docker.io/library/busybox"),
            ("docker", &format!("docker.io/busybox@{D}"), "never matches: Docker Hub's busybox"),
            ("docker", "index.docker.io/library/busybox", "never matches: index.docker.io is matched as docker.io"),
            ("docker", "quay.io/Ns/app", "\"Ns/app\" is not a repository"),
            ("docker", "quay.io/ns/", "\"ns/\" is not a repository"),
            ("docker", "quay.io/ns/app:-x", "bad tag \"-x\""),
            ("docker", "quay.io/ns/app@sha256:abc", "bad digest"),
            ("docker", &format!("quay.io/ns/app:1@{D}"), "a scope has a tag or a digest, not both"),
            ("docker", &format!("quay.io@{D}"), "a digest needs a repository"),
            ("docker", "*.example.com:5000", "a wildcard is `*.` and a domain without a port"),
            ("docker", "*.example.com/ns", "a wildcard is"),
            ("docker", "example*.*.com", "`*` only as `*.` before a domain"),
            ("docker", "*", "`*` only as"),
            ("docker", "quay.io/a b", "\"a b\" is not a repository"),
            ("oci", "srv/layouts", "must be an absolute path"),
            ("oci", "/", "\"/\" is not allowed; use the transport default scope \"\""),
            ("oci", "/srv/layouts/", "not in canonical form"),
            ("oci", "/srv//layouts", "not in canonical form"),
            ("oci", "/srv/../etc", "not in canonical form"),
            ("oci", "/srv/layout:app:1", "an oci scope is a path without ':'"),
            ("oci-archive", "/srv/./a.tar", "not in canonical form"),
            ("dir", "/", "\"/\" is not allowed"),
            ("docker-archive", "/srv/a.tar", "docker-archive supports only the transport default scope \"\""),
            ("tarball", "/x", "tarball supports only"),
            ("docker-daemon", D, "an image ID (algo:digest) cannot be a scope"),
            ("atomic", "h/n/s:t/x", "not HOST[/NAMESPACE[/STREAM[:TAG]]]"),
        ] {
            let e = parse(&with_scope(transport, scope)).expect_err(scope).to_string();
            let plain = scope.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !scope.starts_with('/');
            let key = if plain { format!(".{scope}") } else { format!("[{}]", serde_json::to_string(scope).unwrap()) };
            let field = format!("transports.{transport}{key}");
            let want = format!("invalid policy /etc/containers/policy.json: {field}: invalid scope: {reason}");
            assert!(e.starts_with(&want), "{transport}:{scope}\n got: {e}\nwant: {want}");
        }
        // The transport default "" is valid for every transport.
        for t in ["docker", "oci", "docker-archive", "tarball", "x"] {
            assert!(parse(&with_scope(t, "")).is_ok(), "{t}");
        }
    }

    /// A policy whose every scope's requirement is `reject`, to see which scope applies.
    fn lookup_policy(transport: &str, scopes: &[&str]) -> Policy {
        let scopes: Vec<String> = scopes
            .iter()
            .map(|s| format!(r#"{}: [{{"type": "reject"}}]"#, serde_json::to_string(s).unwrap()))
            .collect();
        parse(&format!(
            r#"{{"default": [{{"type": "insecureAcceptAnything"}}], "transports": {{"{transport}": {{{}}}}}}}"#,
            scopes.join(", ")
        ))
        .unwrap()
    }

    #[test]
    fn most_specific_docker_scope() {
        let all = [
            "",
            "*.com",
            "*.example.com",
            "reg.example.com",
            "reg.example.com:5000",
            "reg.example.com:5000/team",
            "reg.example.com:5000/team/app",
            "reg.example.com:5000/team/app:1",
            "docker.io/library/busybox",
            "docker.io",
            "localhost:5000/a",
            "127.0.0.1",
        ];
        let digested = format!("reg.example.com:5000/team/app@{D}");
        let both = format!("reg.example.com:5000/team/app:1@{D}");
        let mut with_digest = all.to_vec();
        with_digest.push(&digested);
        let docker = |p: &Policy, image: &str| p.applies(&ImageScope::Docker(RegistryRef::parse(image).unwrap())).scope;
        let table = [
            ("reg.example.com:5000/team/app:1", "reg.example.com:5000/team/app:1"),
            ("reg.example.com:5000/team/app:2", "reg.example.com:5000/team/app"),
            ("reg.example.com:5000/team/app", "reg.example.com:5000/team/app"),
            ("reg.example.com:5000/team/other:1", "reg.example.com:5000/team"),
            ("reg.example.com:5000/x/y/z:1", "reg.example.com:5000"),
            ("reg.example.com/x:1", "reg.example.com"),
            ("reg.example.com:6000/x:1", "*.example.com"),
            ("a.b.example.com/x:1", "*.example.com"),
            ("example.com/x:1", "*.com"),
            ("other.org/x:1", ""),
            ("busybox", "docker.io/library/busybox"),
            ("busybox:1.36", "docker.io/library/busybox"),
            ("index.docker.io/library/busybox", "docker.io/library/busybox"),
            ("docker.io/team/app", "docker.io"),
            ("localhost:5000/a/b", "localhost:5000/a"),
            ("localhost/a", ""),
            ("127.0.0.1/a", "127.0.0.1"),
            // The host is matched with its port; only the wildcards drop it.
            ("127.0.0.1:5000/a", ""),
        ];
        let p = lookup_policy("docker", &all);
        for (image, want) in table {
            let want =
                if want.is_empty() { "docker (transport default)".to_string() } else { format!("docker:{want}") };
            assert_eq!(docker(&p, image), want, "{image}");
        }
        let p = lookup_policy("docker", &with_digest);
        assert_eq!(docker(&p, &digested), format!("docker:{digested}"));
        assert_eq!(docker(&p, &both), format!("docker:{digested}"));
        assert_eq!(docker(&lookup_policy("docker", &all), &digested), "docker:reg.example.com:5000/team/app");
        assert_eq!(docker(&lookup_policy("docker", &all), &both), "docker:reg.example.com:5000/team/app:1");
        // Without a transport default: the global default.
        let p = lookup_policy("docker", &["quay.io"]);
        let applied = p.applies(&ImageScope::Docker(RegistryRef::parse("r.io/x").unwrap()));
        assert_eq!(
            (applied.scope.as_str(), applied.requirements),
            ("default", &[Requirement::InsecureAcceptAnything][..])
        );
        let applied = p.applies(&ImageScope::Docker(RegistryRef::parse("quay.io/x").unwrap()));
        assert_eq!((applied.scope.as_str(), applied.requirements), ("docker:quay.io", &[Requirement::Reject][..]));
        // Another transport's scopes never apply.
        let p = lookup_policy("oci", &["", "/srv"]);
        assert_eq!(docker(&p, "quay.io/x"), "default");
    }

    #[test]
    fn path_scopes() {
        let path = |t: &'static str, p: &str| ImageScope::Path {
            transport: t,
            path: p.into(),
            reference: Some("app:1".into()),
        };
        let p = lookup_policy("oci", &["", "/srv", "/srv/layouts/app", "/srv/layouts/app/sub"]);
        for (image, want) in [
            ("/srv/layouts/app", "oci:/srv/layouts/app"),
            ("/srv/layouts/app/sub/x", "oci:/srv/layouts/app/sub"),
            ("/srv/layouts/other", "oci:/srv"),
            ("/srv", "oci:/srv"),
            ("/srvx/a", "oci (transport default)"),
            ("/opt/a", "oci (transport default)"),
            ("relative/srv", "oci (transport default)"),
        ] {
            assert_eq!(p.applies(&path("oci", image)).scope, want, "{image}");
        }
        assert_eq!(p.applies(&path("oci-archive", "/srv/a.tar")).scope, "default");
        let p = lookup_policy("oci-archive", &["/srv/images/app.tar", "/srv"]);
        assert_eq!(p.applies(&path("oci-archive", "/srv/images/app.tar")).scope, "oci-archive:/srv/images/app.tar");
        assert_eq!(p.applies(&path("oci-archive", "/srv/images/b.tar")).scope, "oci-archive:/srv");
        let p = lookup_policy("docker-archive", &[""]);
        assert_eq!(p.applies(&path("docker-archive", "/srv/a.tar")).scope, "docker-archive (transport default)");
        assert_eq!(lookup_policy("oci", &["/srv"]).applies(&path("docker-archive", "/srv/a.tar")).scope, "default");
    }

    #[test]
    fn load_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("policy.json");
        let e = Policy::load(&missing).unwrap_err();
        assert!(matches!(&e, PolicyError::Missing { path, .. } if *path == missing), "{e}");
        assert_eq!(e.to_string(), format!("policy file {} does not exist", missing.display()));
        let e = PolicyError::Missing { path: missing.clone(), hint: "create it".into() };
        assert_eq!(e.to_string(), format!("policy file {} does not exist: create it", missing.display()));
        let key = dir.path().join("key.gpg");
        let json = format!(
            r#"{{"default": [{{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": ["{}", "{}/absent"]}}]}}"#,
            key.display(),
            dir.path().display()
        );
        std::fs::write(&missing, &json).unwrap();
        let p = Policy::load(&missing).unwrap();
        assert_eq!(p.path, missing);
        let Requirement::SignedBy(s) = &p.default[0] else { panic!() };
        std::fs::write(&key, b"").unwrap();
        assert_eq!(s.keys.load().unwrap_err().to_string(), format!("key file {}: the file is empty", key.display()));
        std::fs::write(&key, b"KEY").unwrap();
        let e = s.keys.load().unwrap_err();
        assert!(matches!(&e, PolicyError::Read { path, .. } if path.ends_with("absent")), "{e}");
        let e = Policy::parse(b"{", &missing).unwrap_err().to_string();
        assert!(e.starts_with(&format!("invalid policy {}: (top level): EOF", missing.display())), "{e}");
        // A realistic file: Fedora's default plus a registry scope.
        let fedora = r#"{
            "default": [{"type": "insecureAcceptAnything"}],
            "transports": {
                "docker": {
                    "registry.access.redhat.com": [{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": ["/etc/pki/rpm-gpg/RPM-GPG-KEY-redhat-release", "/etc/pki/rpm-gpg/RPM-GPG-KEY-redhat-beta"]}],
                    "registry.redhat.io": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/etc/pki/rpm-gpg/RPM-GPG-KEY-redhat-release"}]
                },
                "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}
            }
        }"#;
        let p = parse(fedora).unwrap();
        let a = p.applies(&ImageScope::Docker(RegistryRef::parse("registry.redhat.io/ubi9/ubi:latest").unwrap()));
        assert_eq!(a.scope, "docker:registry.redhat.io");
        assert_eq!(
            a.requirements[0].to_string(),
            "signedBy GPGKeys keyPath=/etc/pki/rpm-gpg/RPM-GPG-KEY-redhat-release, signedIdentity matchRepoDigestOrExact"
        );
    }
}
