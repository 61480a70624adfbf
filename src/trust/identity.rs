//! The `signedIdentity` rules of containers-policy.json(5): does the docker reference a verified
//! signature vouches for (`critical.identity.docker-reference`) fit the image being pulled?
//!
//! Semantics follow containers/image `signature/policy_reference_match.go`: both references are
//! compared in docker's fully expanded form (`busybox` is `docker.io/library/busybox`), and a
//! reference without a tag or digest never stands for "any tag".
//!
//! The signed text is untrusted: it is parsed with docker's grammar (`docker/reference`), and
//! anything that grammar refuses matches nothing. Only `sha256` digests are understood (as in
//! the rest of hoist), so a signature naming another algorithm matches nothing either.

use std::fmt;

use crate::digest::Digest;
use crate::imgref::{DEFAULT_REGISTRY, RegistryRef};

use super::policy::SignedIdentity;

/// docker's `NameTotalLengthMax`: the longest `domain/path` a reference may have.
const NAME_MAX: usize = 255;

/// A docker reference in docker's fully expanded form: `name` is `domain/path`
/// (`docker.io/library/busybox`); unlike [`RegistryRef::parse`], no `latest` is added, because
/// the rules must tell a name-only reference apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DockerRef {
    pub name: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl fmt::Display for DockerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl DockerRef {
    /// Parses like docker's `ParseNormalizedNamed`: a first component with a `.` or `:` or
    /// equal to `localhost` is the registry, otherwise `docker.io`; `index.docker.io` is
    /// `docker.io`; a one-component Docker Hub repository is under `library/`.
    pub(super) fn parse(s: &str) -> Result<Self, String> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err("a 64-digit hexadecimal string is an image ID, not a repository name".into());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|_| "bad digest (sha256:<64 hex digits>)")?)),
            None => (s, None),
        };
        let (domain, remainder) = match rest.split_once('/') {
            Some((first, rem)) if first.contains(['.', ':']) || first == "localhost" => (first, rem),
            _ => (DEFAULT_REGISTRY, rest),
        };
        let (path, tag) = match remainder.split_once(':') {
            Some((p, t)) => (p, Some(t)),
            None => (remainder, None),
        };
        if path.to_ascii_lowercase() != path {
            return Err("repository name must be lowercase".into());
        }
        if !valid_domain(domain) {
            return Err("bad registry host".into());
        }
        if !path.split('/').all(valid_path_component) {
            return Err("bad repository name".into());
        }
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err("bad tag".into());
        }
        let name = canonical_name(domain, path);
        if name.len() > NAME_MAX {
            return Err(format!("repository name longer than {NAME_MAX} characters"));
        }
        Ok(DockerRef { name, tag: tag.map(str::to_string), digest })
    }

    /// The image side: hoist's reference, expanded the same way (`index.docker.io` included).
    pub(super) fn from_registry_ref(r: &RegistryRef) -> Self {
        DockerRef { name: canonical_name(&r.registry, &r.repository), tag: r.tag.clone(), digest: r.digest.clone() }
    }

    pub(super) fn name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }
}

fn canonical_name(domain: &str, path: &str) -> String {
    let domain = if domain == "index.docker.io" { DEFAULT_REGISTRY } else { domain };
    if domain == DEFAULT_REGISTRY && !path.contains('/') {
        format!("{domain}/library/{path}")
    } else {
        format!("{domain}/{path}")
    }
}

/// docker's domain grammar: `.`-separated components of letters, digits and inner `-`, then an
/// optional `:port`.
pub(super) fn valid_domain(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    host.split('.').all(valid_domain_component)
}

pub(super) fn valid_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
}

/// docker's path component: runs of lowercase letters and digits joined by one `.`, one `_`,
/// `__`, or any number of `-`.
pub(super) fn valid_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) || !b.iter().all(|&x| alnum(x) || b"._-".contains(&x)) {
        return false;
    }
    c.split(|ch: char| ch.is_ascii_alphanumeric())
        .all(|sep| sep.is_empty() || sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-'))
}

/// docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(super) fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    t.len() <= 128 && t.bytes().next().is_some_and(word) && t.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

/// Whether the identity `signed` (from a verified signature payload) satisfies `rule` for the
/// image being pulled (`image`: its docker reference; None for local transports, where only
/// `exactReference` and `exactRepository` can match).
pub fn check(rule: &SignedIdentity, image: Option<&RegistryRef>, signed: &str) -> Result<(), String> {
    let name = rule.name();
    let sig = DockerRef::parse(signed).map_err(|reason| {
        let shown: String = signed.chars().take(300).collect();
        format!("identity {shown:?} in the signature is not a valid docker reference: {reason} ({name})")
    })?;
    let fixed = |configured: &str| {
        DockerRef::parse(configured)
            .map_err(|reason| format!("{name} {configured:?} is not a valid reference: {reason}"))
    };
    match rule {
        SignedIdentity::ExactReference { docker_reference } => {
            let want = fixed(docker_reference)?;
            if !want.name_only() && !sig.name_only() && sig.to_string() == want.to_string() {
                return Ok(());
            }
            return Err(format!("identity {signed} is not {docker_reference} ({name})"));
        }
        SignedIdentity::ExactRepository { docker_repository } => {
            if sig.name == fixed(docker_repository)?.name {
                return Ok(());
            }
            return Err(format!("identity {signed} is not {docker_repository} ({name})"));
        }
        _ => {}
    }
    let Some(image) = image else {
        return Err(format!(
            "identity {signed} cannot be matched: the image has no docker reference ({name}; local transports \
             can only use exactReference or exactRepository)"
        ));
    };
    let intended = DockerRef::from_registry_ref(image);
    let mismatch = || format!("identity {signed} does not match {intended} ({name})");
    let ok = match rule {
        SignedIdentity::MatchExact => {
            !intended.name_only() && !sig.name_only() && sig.to_string() == intended.to_string()
        }
        SignedIdentity::MatchRepoDigestOrExact => repo_digest_or_exact(&intended, &sig),
        SignedIdentity::MatchRepository => sig.name == intended.name,
        SignedIdentity::RemapIdentity { prefix, signed_prefix } => {
            let remapped = remap(&intended, prefix, signed_prefix)
                .map_err(|e| format!("identity {signed} does not match {intended} ({name}: {e})"))?;
            if !repo_digest_or_exact(&remapped, &sig) {
                return Err(if remapped == intended {
                    mismatch()
                } else {
                    format!("identity {signed} does not match {intended}, read as {remapped} ({name})")
                });
            }
            true
        }
        SignedIdentity::ExactReference { .. } | SignedIdentity::ExactRepository { .. } => unreachable!("handled above"),
    };
    if ok { Ok(()) } else { Err(mismatch()) }
}

/// `matchRepoDigestOrExact`: a tagged image (also one with a tag and a digest) needs exactly that
/// reference; an image by digest alone needs the same repository (its digest is checked against
/// the manifest, and the signature's against the manifest, elsewhere).
fn repo_digest_or_exact(intended: &DockerRef, sig: &DockerRef) -> bool {
    if sig.name_only() {
        return false;
    }
    if intended.tag.is_some() {
        sig.to_string() == intended.to_string()
    } else if intended.digest.is_some() {
        sig.name == intended.name
    } else {
        false
    }
}

/// `remapIdentity`: when the image's name is `prefix` or lies under `prefix/`, the prefix is
/// replaced by `signed_prefix`; the result must be a reference in canonical form.
fn remap(intended: &DockerRef, prefix: &str, signed_prefix: &str) -> Result<DockerRef, String> {
    let name = &intended.name;
    let under = name == prefix || (name.starts_with(prefix) && name.as_bytes().get(prefix.len()) == Some(&b'/'));
    if !under {
        return Ok(intended.clone());
    }
    let full = intended.to_string();
    let rewritten = format!("{signed_prefix}{}", &full[prefix.len()..]);
    match DockerRef::parse(&rewritten) {
        Ok(r) if r.to_string() == rewritten => Ok(r),
        Ok(_) => Err(format!("rewriting {full} gives {rewritten}, not a reference in canonical form")),
        Err(e) => Err(format!("rewriting {full} gives {rewritten}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const D2: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn img(s: &str) -> RegistryRef {
        RegistryRef::parse(s).unwrap()
    }

    fn remap_rule(prefix: &str, signed: &str) -> SignedIdentity {
        SignedIdentity::RemapIdentity { prefix: prefix.into(), signed_prefix: signed.into() }
    }

    #[test]
    fn parses_like_docker() {
        for (input, want) in [
            ("busybox", "docker.io/library/busybox"),
            ("busybox:1", "docker.io/library/busybox:1"),
            ("docker.io/busybox", "docker.io/library/busybox"),
            ("index.docker.io/busybox:1", "docker.io/library/busybox:1"),
            ("index.docker.io/team/app", "docker.io/team/app"),
            ("team/app", "docker.io/team/app"),
            ("localhost/app", "localhost/app"),
            ("localhost:5000/a/b:v1", "localhost:5000/a/b:v1"),
            (
                "quay.io/a/b@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                &format!("quay.io/a/b@{D}"),
            ),
            (&format!("r.io/a:1@{D}"), &format!("r.io/a:1@{D}")),
            ("a--b/c__d/e.f", "docker.io/a--b/c__d/e.f"),
            ("Quay.IO/x", "Quay.IO/x"),
        ] {
            assert_eq!(DockerRef::parse(input).unwrap().to_string(), want, "{input}");
        }
        assert!(DockerRef::parse("busybox").unwrap().name_only());
        for bad in [
            "",
            "Busybox",
            "quay.io/A/b",
            "quay.io/a/b:",
            "quay.io/a/b:-x",
            "quay.io/a/b:1:2",
            "quay.io/a//b",
            "quay.io/a/b/",
            "quay.io/a._b",
            "quay.io/_a",
            "-q.io/a",
            "q.io:/a",
            "q.io:50x/a",
            "quay.io/a@sha512:abcd",
            "quay.io/a@sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "a b",
            "x.io/a\n",
        ] {
            assert!(DockerRef::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long = format!("q.io/{}", "a".repeat(251));
        assert!(DockerRef::parse(&long).is_err());
        assert!(DockerRef::parse(&long[..255]).is_ok());
    }

    #[test]
    fn rules() {
        use SignedIdentity::*;
        let digested = format!("quay.io/ns/app@{D}");
        let both = format!("quay.io/ns/app:1@{D}");
        let other_digest = format!("quay.io/ns/app@{D2}");
        let mirror_digested = format!("mirror.local:5000/vendor/a@{D}");
        let exact_ref = |s: &str| ExactReference { docker_reference: s.into() };
        let exact_repo = |s: &str| ExactRepository { docker_repository: s.into() };
        #[rustfmt::skip]
        let table: Vec<(SignedIdentity, &str, &str, bool)> = vec![
            // matchExact: the same reference, tag for tag or digest for digest.
            (MatchExact, "quay.io/ns/app:1", "quay.io/ns/app:1", true),
            (MatchExact, "quay.io/ns/app:1", "quay.io/ns/app:2", false),
            (MatchExact, "quay.io/ns/app:1", "quay.io/ns/app", false),
            (MatchExact, &digested, &digested, true),
            (MatchExact, &digested, &other_digest, false),
            (MatchExact, &digested, "quay.io/ns/app:1", false),
            (MatchExact, "quay.io/ns/app:1", &digested, false),
            (MatchExact, "quay.io/ns/app:1", "quay.io/other/app:1", false),
            (MatchExact, "quay.io/ns/app:1", "q.io/ns/app:1", false),
            (MatchExact, "busybox:1", "docker.io/library/busybox:1", true),
            (MatchExact, "docker.io/library/busybox:1", "busybox:1", true),
            (MatchExact, "busybox", "busybox:latest", true),
            (MatchExact, "busybox", "busybox", false),
            (MatchExact, &both, &both, true),
            (MatchExact, &both, "quay.io/ns/app:1", false),
            // matchRepoDigestOrExact: a tag needs the exact reference, a digest the repository.
            (MatchRepoDigestOrExact, "quay.io/ns/app:1", "quay.io/ns/app:1", true),
            (MatchRepoDigestOrExact, "quay.io/ns/app:1", "quay.io/ns/app:2", false),
            (MatchRepoDigestOrExact, "quay.io/ns/app:1", &digested, false),
            (MatchRepoDigestOrExact, &digested, "quay.io/ns/app:7", true),
            (MatchRepoDigestOrExact, &digested, &other_digest, true),
            (MatchRepoDigestOrExact, &digested, "quay.io/ns/app", false),
            (MatchRepoDigestOrExact, &digested, "quay.io/ns/other:7", false),
            (MatchRepoDigestOrExact, &digested, "quay.io:443/ns/app:7", false),
            (MatchRepoDigestOrExact, &both, "quay.io/ns/app:1", false),
            (MatchRepoDigestOrExact, &both, &both, true),
            (MatchRepoDigestOrExact, "busybox", "docker.io/library/busybox:latest", true),
            (MatchRepoDigestOrExact, "busybox", "index.docker.io/library/busybox:latest", true),
            (MatchRepoDigestOrExact, "busybox", "docker.io/busybox", false),
            // matchRepository: any tag or digest, even none, of the same repository.
            (MatchRepository, "quay.io/ns/app:1", "quay.io/ns/app:2", true),
            (MatchRepository, "quay.io/ns/app:1", "quay.io/ns/app", true),
            (MatchRepository, &digested, "quay.io/ns/app:2", true),
            (MatchRepository, "quay.io/ns/app:1", "quay.io/ns/app2:1", false),
            (MatchRepository, "quay.io/ns/app:1", "quay.io/ns:1", false),
            (MatchRepository, "quay.io/ns/app:1", "quay.io:5000/ns/app:1", false),
            (MatchRepository, "busybox:1", "busybox", true),
            (MatchRepository, "team/app:1", "docker.io/team/app", true),
            // exactReference: the configured reference, whatever the image.
            (exact_ref("quay.io/ns/app:1"), "r.io/mirror/app:9", "quay.io/ns/app:1", true),
            (exact_ref("quay.io/ns/app:1"), "r.io/mirror/app:9", "quay.io/ns/app:2", false),
            (exact_ref("quay.io/ns/app:1"), "r.io/mirror/app:9", "quay.io/ns/app", false),
            (exact_ref("busybox:1"), "r.io/x:1", "docker.io/library/busybox:1", true),
            (exact_ref(&digested), "r.io/x:1", &digested, true),
            (exact_ref(&digested), "r.io/x:1", "quay.io/ns/app:1", false),
            // exactRepository: the configured repository, any tag.
            (exact_repo("quay.io/ns/app"), "r.io/x:1", "quay.io/ns/app:5", true),
            (exact_repo("quay.io/ns/app"), "r.io/x:1", "quay.io/ns/app", true),
            (exact_repo("quay.io/ns/app"), "r.io/x:1", "quay.io/ns/app2:5", false),
            (exact_repo("busybox"), "r.io/x:1", "docker.io/library/busybox:5", true),
            // remapIdentity: the image's prefix rewritten, then matchRepoDigestOrExact.
            (remap_rule("mirror.local:5000/vendor", "vendor.example.com"),
                "mirror.local:5000/vendor/a/b:1", "vendor.example.com/a/b:1", true),
            (remap_rule("mirror.local:5000/vendor", "vendor.example.com"),
                "mirror.local:5000/vendor/a/b:1", "vendor.example.com/a/b:2", false),
            (remap_rule("mirror.local:5000/vendor", "vendor.example.com"),
                "mirror.local:5000/vendor/a/b:1", "mirror.local:5000/vendor/a/b:1", false),
            (remap_rule("mirror.local:5000/vendor", "vendor.example.com"),
                &mirror_digested, "vendor.example.com/a:3", true),
            // Not under the prefix (a longer component): no remapping, compared as it is.
            (remap_rule("mirror.local:5000/vendor", "vendor.example.com"),
                "mirror.local:5000/vendorx/a:1", "vendor.example.com/x/a:1", false),
            (remap_rule("mirror.local:5000/vendor", "vendor.example.com"),
                "mirror.local:5000/vendorx/a:1", "mirror.local:5000/vendorx/a:1", true),
            (remap_rule("mirror.local:5000/vendor/a", "v.io/a"), "mirror.local:5000/vendor/a:1", "v.io/a:1", true),
            (remap_rule("mirror.local", "v.io"), "mirror.local:5000/a:1", "v.io:5000/a:1", false),
            (remap_rule("mirror.local:5000", "docker.io"), "mirror.local:5000/library/busybox:1", "busybox:1", true),
            // The rewritten reference must be canonical: docker.io/busybox is not.
            (remap_rule("mirror.local:5000", "docker.io"), "mirror.local:5000/busybox:1", "busybox:1", false),
        ];
        for (rule, image, signed, want) in &table {
            let got = check(rule, Some(&img(image)), signed);
            assert_eq!(got.is_ok(), *want, "{} image {image} signed {signed}: {got:?}", rule.name());
        }
    }

    #[test]
    fn messages_and_local_images() {
        use SignedIdentity::*;
        let image = img("quay.io/ns/app:1");
        assert_eq!(
            check(&MatchExact, Some(&image), "quay.io/ns/app:2").unwrap_err(),
            "identity quay.io/ns/app:2 does not match quay.io/ns/app:1 (matchExact)"
        );
        assert_eq!(
            check(&ExactReference { docker_reference: "q.io/a:1".into() }, None, "q.io/a:2").unwrap_err(),
            "identity q.io/a:2 is not q.io/a:1 (exactReference)"
        );
        assert_eq!(
            check(&ExactRepository { docker_repository: "q.io/a".into() }, None, "q.io/b:2").unwrap_err(),
            "identity q.io/b:2 is not q.io/a (exactRepository)"
        );
        let remapped = check(&remap_rule("quay.io/ns", "v.io/up"), Some(&image), "v.io/up/app:2").unwrap_err();
        assert_eq!(
            remapped,
            "identity v.io/up/app:2 does not match quay.io/ns/app:1, read as v.io/up/app:1 (remapIdentity)"
        );
        let bad = check(&MatchRepository, Some(&image), "Quay.io/NS\u{1b}[2J").unwrap_err();
        assert!(
            bad.starts_with("identity \"Quay.io/NS\\u{1b}[2J\" in the signature is not a valid docker reference"),
            "{bad}"
        );
        // Local transports: only the exact* rules can match.
        for rule in [MatchExact, MatchRepoDigestOrExact, MatchRepository, remap_rule("q.io", "r.io")] {
            let e = check(&rule, None, "q.io/a:1").unwrap_err();
            assert!(e.contains("the image has no docker reference"), "{e}");
        }
        assert!(check(&ExactReference { docker_reference: "q.io/a:1".into() }, None, "q.io/a:1").is_ok());
        assert!(check(&ExactRepository { docker_repository: "q.io/a".into() }, None, "q.io/a@").is_err());
        assert!(check(&ExactRepository { docker_repository: "q.io/a".into() }, None, &format!("q.io/a@{D}")).is_ok());
    }

    #[test]
    fn grammar_helpers() {
        for ok in ["a", "a.b", "a_b", "a__b", "a---b", "a1.b2_c3"] {
            assert!(valid_path_component(ok), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a..b", "a___b", "a._b", "a.-b", "a/b", "a:b"] {
            assert!(!valid_path_component(bad), "{bad}");
        }
        for ok in ["localhost", "a.b", "a-b.c:5000", "127.0.0.1:5000", "Quay.io"] {
            assert!(valid_domain(ok), "{ok}");
        }
        for bad in ["", "a..b", "-a.b", "a.b:", "a.b:x", "a_b.c", "[::1]"] {
            assert!(!valid_domain(bad), "{bad}");
        }
        assert!(valid_tag(&"a".repeat(128)) && !valid_tag(&"a".repeat(129)));
        assert!(valid_tag("_x.Y-1") && !valid_tag(".x") && !valid_tag("x/y"));
    }
}
