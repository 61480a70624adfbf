//! Image references: what the user types after `hoist pull|install|images …`.
//!
//! ```text
//! docker://REG/REPO[:TAG|@sha256:…]   a registry image (a bare REG/REPO:TAG means the same)
//! oci:DIR[:REF]                       an OCI image layout directory
//! oci-archive:FILE[:REF]              a tar of an OCI image layout
//! docker-archive:FILE[:NAME[:TAG]|:@N] a `docker save` tar
//! NAME[:TAG] | digest prefix          an image already in the store (also `localhost/NAME[:TAG]`)
//! ```
//! The local transports follow containers-transports(5): the path ends at the first `:`, and
//! everything after it is the reference (which may hold `/` and `:`, as in
//! `oci:/srv/layout:localhost/app:1.0`). A `localhost/…` name without a port is the local
//! namespace (podman's): bare, it is a stored name; `docker://localhost/…` is the registry.
//! Parsing is pure (no filesystem access); the store resolves stored names.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// Registry assumed for `docker://busybox` (as docker and podman do).
pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RefError {
    #[error("invalid image reference {input:?}: {reason}")]
    Invalid { input: String, reason: &'static str },
}

fn invalid(input: &str, reason: &'static str) -> RefError {
    RefError::Invalid { input: input.to_string(), reason }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Registry(RegistryRef),
    OciDir { path: PathBuf, reference: Option<String> },
    OciArchive { path: PathBuf, reference: Option<String> },
    DockerArchive { path: PathBuf, reference: Option<ArchiveRef> },
}

/// Which image of a docker-archive (`docker-archive:PATH:REFERENCE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveRef {
    /// `NAME[:TAG]` as typed, matched against the RepoTags of `manifest.json` after docker's
    /// normalisation (`app:1.0` is `docker.io/library/app:1.0`, never `localhost/app:1.0`).
    Named(String),
    /// `@N`: the N-th entry (0-based) of `manifest.json`.
    Index(usize),
}

/// `REG/REPO[:TAG][@DIGEST]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// The name an image is stored under: `REPOSITORY:TAG`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageName {
    pub repository: String,
    pub tag: String,
}

/// A command-line IMAGE argument: a source to fetch from, or something to look up in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageArg {
    Source(Source),
    /// A stored name (`hello`, `hello:v2`) or a digest prefix (`3f2a9c`, `sha256:3f2a…`).
    Stored(String),
}

impl ImageArg {
    pub fn parse(input: &str) -> Result<Self, RefError> {
        if input.is_empty() {
            return Err(invalid(input, "empty"));
        }
        if let Some(rest) = input.strip_prefix("docker://") {
            return RegistryRef::parse(rest).map(|r| ImageArg::Source(Source::Registry(r)));
        }
        for (prefix, kind) in [("oci:", 0), ("oci-archive:", 1), ("docker-archive:", 2)] {
            if let Some(rest) = input.strip_prefix(prefix) {
                // containers-transports(5): PATH ends at the first `:`.
                let (path, reference) = match rest.split_once(':') {
                    Some((p, r)) => (p, (!r.is_empty()).then_some(r)),
                    None => (rest, None),
                };
                if path.is_empty() {
                    return Err(invalid(input, "missing path"));
                }
                let path = PathBuf::from(path);
                if kind == 2 {
                    let reference = reference.map(|r| ArchiveRef::parse(input, r)).transpose()?;
                    return Ok(ImageArg::Source(Source::DockerArchive { path, reference }));
                }
                if let Some(r) = reference
                    && !valid_oci_ref(r)
                {
                    return Err(invalid(
                        input,
                        "bad REF (/-separated components of letters and digits joined by -._:@+)",
                    ));
                }
                let reference = reference.map(str::to_string);
                return Ok(ImageArg::Source(match kind {
                    0 => Source::OciDir { path, reference },
                    _ => Source::OciArchive { path, reference },
                }));
            }
        }
        if input.contains("://") {
            return Err(invalid(input, "unknown transport (use docker://, oci:, oci-archive: or docker-archive:)"));
        }
        // A bare reference with a registry host in front is a registry image; `localhost/…`
        // (no port) is the local namespace, a stored name.
        if let Some((first, _)) = input.split_once('/')
            && (first.contains('.') || first.contains(':'))
        {
            return RegistryRef::parse(input).map(|r| ImageArg::Source(Source::Registry(r)));
        }
        Ok(ImageArg::Stored(input.to_string()))
    }
}

impl ArchiveRef {
    /// `@N` or a docker reference with a tag or none (`latest`), never a digest.
    fn parse(input: &str, r: &str) -> Result<Self, RefError> {
        if let Some(n) = r.strip_prefix('@') {
            return match n.parse::<usize>() {
                Ok(i) if n.bytes().all(|b| b.is_ascii_digit()) => Ok(ArchiveRef::Index(i)),
                _ => Err(invalid(input, "bad index after @ (a 0-based number)")),
            };
        }
        if r.contains('@') {
            return Err(invalid(input, "a docker-archive reference cannot hold a digest"));
        }
        RegistryRef::parse(r).map_err(|_| invalid(input, "bad docker-archive reference (NAME[:TAG])"))?;
        Ok(ArchiveRef::Named(r.to_string()))
    }
}

/// A docker reference in docker's normalised form (`app:1.0` → `docker.io/library/app:1.0`,
/// `localhost/app` → `localhost/app:latest`), or None when it is not one (or has a digest).
pub fn docker_normalized(r: &str) -> Option<String> {
    RegistryRef::parse(r).ok().filter(|r| r.digest.is_none()).map(|r| r.to_string())
}

/// An OCI layout REF as containers/image accepts it: `/`-separated components of letters and
/// digits, joined by one of `-._:@+` or by `--`.
fn valid_oci_ref(r: &str) -> bool {
    let sep = |b: u8| b"-._:@+".contains(&b);
    r.split('/').all(|c| {
        let b = c.as_bytes();
        if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
            return false;
        }
        if !b.iter().all(|&x| x.is_ascii_alphanumeric() || sep(x)) {
            return false;
        }
        // Runs of separators: one character, or exactly `--`.
        c.split(|ch: char| ch.is_ascii_alphanumeric()).all(|run| run.len() <= 1 || run == "--")
    })
}

/// True when an image's own name (a REF, `org.opencontainers.image.ref.name`, a RepoTag) is a
/// reference with a repository (`app:1.0`, `localhost/app`) rather than a bare tag (`1.0`).
pub fn is_full_reference(r: &str) -> bool {
    r.contains(':') || r.contains('/')
}

/// The name an image is stored under when its source names it `reference` (a RepoTag, an
/// `org.opencontainers.image.ref.name`, a REF): as it is when it has no registry host
/// (`team/app:1.0`) or is in the local namespace `localhost/` (`localhost/app:1.0`, as `podman
/// load` stores it); docker's familiar form for Docker Hub (`docker.io/library/busybox` →
/// `busybox`); the last path component for any other registry (`quay.io/coreos/etcd:v3.4` →
/// `etcd:v3.4`, `127.0.0.1:5000/x:1` → `x:1`), so a local source never takes a registry's name.
pub fn source_named(reference: &str) -> Option<ImageName> {
    let n = ImageName::parse(reference)?;
    let Some((host, path)) = n.repository.split_once('/').filter(|(h, _)| is_host(h)) else {
        return Some(n);
    };
    let repository = match host {
        "localhost" => return Some(n),
        "docker.io" | "index.docker.io" => path.strip_prefix("library/").filter(|p| !p.contains('/')).unwrap_or(path),
        _ => path.rsplit('/').next().unwrap_or(path),
    };
    Some(ImageName { repository: repository.to_string(), tag: n.tag })
}

/// Whether the first component of a name is a registry host (`quay.io`, `127.0.0.1:5000`,
/// `localhost`) rather than a Docker Hub namespace: the one rule every parser here uses.
pub fn is_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// A well-formed registry host[:port], spelled as references spell it (lower case, no
/// trailing dot).
pub fn is_registry_host(h: &str) -> bool {
    is_host(h)
        && valid_registry(h)
        && !h.bytes().any(|b| b.is_ascii_uppercase())
        && !h.split(':').next().unwrap_or(h).ends_with('.')
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn valid_repo_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && c.bytes().last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn valid_registry(r: &str) -> bool {
    r.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'[')
        && !r.contains("..")
        && r.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

impl RegistryRef {
    pub fn parse(input: &str) -> Result<Self, RefError> {
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|_| invalid(input, "bad digest after @"))?)),
            None => (input, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t.to_string())),
            _ => (rest, None),
        };
        if let Some(t) = &tag
            && !valid_tag(t)
        {
            return Err(invalid(input, "bad tag"));
        }
        let (registry, repository) = match name.split_once('/') {
            // Host names are case-insensitive: one spelling, so rules and names compare.
            Some((first, repo)) if is_host(first) => (first.to_ascii_lowercase(), repo.to_string()),
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        if !is_registry_host(&registry) {
            return Err(invalid(input, "bad registry host"));
        }
        // Docker Hub's other names are Docker Hub (as docker's own parser has it).
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY.to_string(),
            _ => registry,
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !repository.split('/').all(valid_repo_component) {
            return Err(invalid(input, "bad repository name (lowercase letters, digits and ._- only)"));
        }
        let tag = if tag.is_none() && digest.is_none() { Some(DEFAULT_TAG.to_string()) } else { tag };
        Ok(RegistryRef { registry, repository, tag, digest })
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_ref = |f: &mut fmt::Formatter<'_>, p: &str, path: &Path, r: &Option<String>| {
            write!(f, "{p}:{}", path.display())?;
            if let Some(r) = r {
                write!(f, ":{r}")?;
            }
            Ok(())
        };
        match self {
            Source::Registry(r) => write!(f, "docker://{r}"),
            Source::OciDir { path, reference } => with_ref(f, "oci", path, reference),
            Source::OciArchive { path, reference } => with_ref(f, "oci-archive", path, reference),
            Source::DockerArchive { path, reference } => {
                write!(f, "docker-archive:{}", path.display())?;
                match reference {
                    Some(r) => write!(f, ":{r}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// As written after `docker-archive:PATH:` (`NAME[:TAG]` or `@N`).
impl fmt::Display for ArchiveRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveRef::Named(r) => f.write_str(r),
            ArchiveRef::Index(i) => write!(f, "@{i}"),
        }
    }
}

impl Source {
    /// Makes a local path absolute so the recorded source can be re-read from any directory.
    pub fn absolutize(self, cwd: &Path) -> Self {
        let abs = |p: PathBuf| if p.is_absolute() { p } else { cwd.join(p) };
        match self {
            Source::OciDir { path, reference } => Source::OciDir { path: abs(path), reference },
            Source::OciArchive { path, reference } => Source::OciArchive { path: abs(path), reference },
            Source::DockerArchive { path, reference } => Source::DockerArchive { path: abs(path), reference },
            r => r,
        }
    }

    /// The name a source is stored under as far as the reference alone tells: a REF that is a
    /// full reference names the image itself ([`source_named`]: `oci:DIR:localhost/app:1.0` is
    /// `localhost/app:1.0`); otherwise the file or directory name without `.tar`, tagged with a
    /// bare REF (default `latest`). Without a REF the layout's or archive's own name for the
    /// image, when it has one, takes the place of this one (see `fetch`).
    pub fn local_name(&self) -> Result<Option<ImageName>, RefError> {
        let (path, reference) = match self {
            Source::Registry(r) => {
                // Pulled by digest (`REPO@sha256:…`, or `REPO:TAG@sha256:…` where the digest pins and
                // the tag is only shown): stored as TAG `sha256-<hex>`, a valid tag naming the
                // content, so a pinned pull never moves the name a tag's followers use.
                let tag = match &r.digest {
                    Some(d) => format!("sha256-{}", d.hex()),
                    None => r.tag.clone().expect("tag or digest"),
                };
                return Ok(Some(ImageName { repository: format!("{}/{}", r.registry, r.repository), tag }));
            }
            Source::OciDir { path, reference } | Source::OciArchive { path, reference } => (path, reference.as_deref()),
            Source::DockerArchive { path, reference } => match reference {
                Some(ArchiveRef::Named(r)) => (path, Some(r.as_str())),
                _ => (path, None),
            },
        };
        let text = self.to_string();
        if let Some(r) = reference
            && (is_full_reference(r) || matches!(self, Source::DockerArchive { .. }))
        {
            let reason = "REF is not a valid image name (lowercase repository, valid tag)";
            return source_named(r).map(Some).ok_or(RefError::Invalid { input: text, reason });
        }
        let base = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let base = base.strip_suffix(".tar").unwrap_or(&base).to_ascii_lowercase();
        if !valid_repo_component(&base) {
            return Err(RefError::Invalid { input: text, reason: "file name is not a valid image name" });
        }
        let tag = reference.unwrap_or(DEFAULT_TAG).to_string();
        if !valid_tag(&tag) {
            return Err(RefError::Invalid { input: text, reason: "REF is not a valid tag" });
        }
        Ok(Some(ImageName { repository: base, tag }))
    }
}

impl ImageName {
    /// Parses `REPO[:TAG]` as stored (`hello`, `hello:v2`, `127.0.0.1:5000/etcd:3.4`).
    pub fn parse(s: &str) -> Option<Self> {
        let (repo, tag) = match s.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => (s, DEFAULT_TAG),
        };
        let (host, path) = match repo.split_once('/') {
            Some((h, p)) if is_host(h) => (Some(h), p),
            _ => (None, repo),
        };
        let ok = host.is_none_or(valid_registry) && path.split('/').all(valid_repo_component) && valid_tag(tag);
        ok.then(|| ImageName { repository: repo.to_string(), tag: tag.to_string() })
    }

    /// Atomic's default container name: last repository component, `-TAG` unless `latest`.
    pub fn default_container_name(&self) -> String {
        let last = self.repository.rsplit('/').next().unwrap_or(&self.repository);
        if self.tag == DEFAULT_TAG || self.tag.starts_with("sha256-") {
            last.to_string()
        } else {
            format!("{last}-{}", self.tag)
        }
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(s: &str) -> Source {
        match ImageArg::parse(s).unwrap() {
            ImageArg::Source(s) => s,
            o => panic!("{s}: {o:?}"),
        }
    }

    #[test]
    fn registry_refs() {
        let cases = [
            ("docker://busybox", "docker.io", "library/busybox", Some("latest"), false),
            ("docker://quay.io/coreos/etcd:3.4", "quay.io", "coreos/etcd", Some("3.4"), false),
            ("127.0.0.1:5000/etcd:3.4", "127.0.0.1:5000", "etcd", Some("3.4"), false),
            ("docker://localhost/a/b", "localhost", "a/b", Some("latest"), false),
            // One spelling per host: rules and stored names compare by it.
            ("docker://Quay.IO/coreos/etcd:3.4", "quay.io", "coreos/etcd", Some("3.4"), false),
            ("docker://index.docker.io/busybox", "docker.io", "library/busybox", Some("latest"), false),
            ("docker://registry-1.docker.io/team/x:1", "docker.io", "team/x", Some("1"), false),
            (
                "docker://r.io/x@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "r.io",
                "x",
                None,
                true,
            ),
        ];
        for (input, reg, repo, tag, has_digest) in cases {
            let Source::Registry(r) = src(input) else { panic!("{input}") };
            assert_eq!(
                (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref(), r.digest.is_some()),
                (reg, repo, tag, has_digest),
                "{input}"
            );
        }
        assert_eq!(src("docker://quay.io/coreos/etcd:3.4").to_string(), "docker://quay.io/coreos/etcd:3.4");
        assert!(ImageArg::parse("docker://quay.io./coreos/etcd").is_err(), "a trailing dot is another spelling");
        let by_digest = src("docker://r.io/x@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let name = by_digest.local_name().unwrap().unwrap();
        assert_eq!(name.to_string(), "r.io/x:sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(ImageName::parse(&name.to_string()), Some(name.clone()), "a digest name is a stored name");
        assert_eq!(name.default_container_name(), "x");
    }

    #[test]
    fn local_sources() {
        assert_eq!(src("oci:/x/dir"), Source::OciDir { path: "/x/dir".into(), reference: None });
        assert_eq!(src("oci:/x/dir:v2"), Source::OciDir { path: "/x/dir".into(), reference: Some("v2".into()) });
        assert_eq!(
            src("oci-archive:/x/hello.tar"),
            Source::OciArchive { path: "/x/hello.tar".into(), reference: None }
        );
        // PATH ends at the first `:` (containers-transports(5)); the REF may hold `/` and `:`.
        assert_eq!(
            src("oci-archive:rel/a:b/c.tar"),
            Source::OciArchive { path: "rel/a".into(), reference: Some("b/c.tar".into()) }
        );
        assert_eq!(
            src("oci:/srv/layout:localhost/app:1.0"),
            Source::OciDir { path: "/srv/layout".into(), reference: Some("localhost/app:1.0".into()) }
        );
        assert_eq!(src("oci:/x/dir:"), Source::OciDir { path: "/x/dir".into(), reference: None });
        assert_eq!(src("docker-archive:/x/y.tar"), Source::DockerArchive { path: "/x/y.tar".into(), reference: None });
        assert_eq!(
            src("docker-archive:/tmp/all.tar:localhost/app:1.0"),
            Source::DockerArchive {
                path: "/tmp/all.tar".into(),
                reference: Some(ArchiveRef::Named("localhost/app:1.0".into()))
            }
        );
        assert_eq!(
            src("docker-archive:/tmp/all.tar:@1"),
            Source::DockerArchive { path: "/tmp/all.tar".into(), reference: Some(ArchiveRef::Index(1)) }
        );
        // Every source prints as it parses (the recorded source is read back).
        for s in [
            "oci:/srv/layout:localhost/app:1.0",
            "oci-archive:/x/hello.tar",
            "docker-archive:/tmp/all.tar:localhost/app:1.0",
            "docker-archive:/tmp/all.tar:app",
            "docker-archive:/tmp/all.tar:@0",
            "docker-archive:/tmp/all.tar",
        ] {
            assert_eq!(src(s).to_string(), s);
        }
        let n = src("oci-archive:/x/hello.tar").local_name().unwrap().unwrap();
        assert_eq!(n.to_string(), "hello:latest");
        let n = src("oci:/x/Etcd:3.4").local_name().unwrap().unwrap();
        assert_eq!(n.to_string(), "etcd:3.4");
    }

    #[test]
    fn names_a_source_gives_itself() {
        let name = |s: &str| src(s).local_name().unwrap().unwrap().to_string();
        for (input, want) in [
            // A bare tag: the file-name rule.
            ("oci:/x/layout:1.0", "layout:1.0"),
            ("oci-archive:/x/app.tar:latest", "app:latest"),
            ("docker-archive:/x/app.tar", "app:latest"),
            ("docker-archive:/x/app.tar:@3", "app:latest"),
            // A full reference: that name (a registry host other than localhost dropped).
            ("oci:/x/layout:localhost/app:1.0", "localhost/app:1.0"),
            ("oci-archive:/x/a.tar:team/app:2", "team/app:2"),
            ("oci:/x/layout:quay.io/coreos/etcd:v3.4", "etcd:v3.4"),
            ("oci:/x/layout:127.0.0.1:5000/x:1", "x:1"),
            ("docker-archive:/x/all.tar:localhost/app:1.0", "localhost/app:1.0"),
            ("docker-archive:/x/all.tar:app", "app:latest"),
            ("docker-archive:/x/all.tar:docker.io/library/busybox:1", "busybox:1"),
        ] {
            assert_eq!(name(input), want, "{input}");
        }
        for (reference, want) in [
            ("quay.io/coreos/etcd:v3.4", Some("etcd:v3.4")),
            ("docker.io/library/busybox:latest", Some("busybox:latest")),
            ("docker.io/team/hello:1", Some("team/hello:1")),
            ("localhost/x/y", Some("localhost/x/y:latest")),
            ("localhost:5000/x/y", Some("y:latest")),
            ("127.0.0.1:5000/etcd:1", Some("etcd:1")),
            ("team/hello:1.0", Some("team/hello:1.0")),
            ("busybox", Some("busybox:latest")),
            ("../x", None),
            ("App:1", None),
        ] {
            assert_eq!(source_named(reference).map(|n| n.to_string()).as_deref(), want, "{reference}");
        }
        for (r, normal) in [
            ("app:1.0", Some("docker.io/library/app:1.0")),
            ("docker.io/library/app:1.0", Some("docker.io/library/app:1.0")),
            ("localhost/app:1.0", Some("localhost/app:1.0")),
            ("localhost/app", Some("localhost/app:latest")),
            ("r.io/x@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", None),
        ] {
            assert_eq!(docker_normalized(r).as_deref(), normal, "{r}");
        }
        let n = ImageName::parse("localhost/app:1.0").unwrap();
        assert_eq!(
            (n.repository.as_str(), n.tag.as_str(), n.default_container_name().as_str()),
            ("localhost/app", "1.0", "app-1.0")
        );
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "docker://",
            "docker://UPPER/x",
            "docker://r.io/x:bad tag",
            "oci:",
            "ftp://x",
            "docker://r.io/x@sha256:zz",
        ] {
            assert!(ImageArg::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        for (bad, reason) in [
            ("oci::x", "missing path"),
            ("oci:/x:a//b", "bad REF (/-separated components of letters and digits joined by -._:@+)"),
            ("oci:/x:-a", "bad REF (/-separated components of letters and digits joined by -._:@+)"),
            ("oci:/x:a..b", "bad REF (/-separated components of letters and digits joined by -._:@+)"),
            ("docker-archive:/x.tar:@-1", "bad index after @ (a 0-based number)"),
            ("docker-archive:/x.tar:@+1", "bad index after @ (a 0-based number)"),
            ("docker-archive:/x.tar:@", "bad index after @ (a 0-based number)"),
            ("docker-archive:/x.tar:Upper:1", "bad docker-archive reference (NAME[:TAG])"),
            (
                "docker-archive:/x.tar:app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "a docker-archive reference cannot hold a digest",
            ),
        ] {
            assert_eq!(ImageArg::parse(bad), Err(RefError::Invalid { input: bad.into(), reason }), "{bad}");
        }
        // `a--b` and `a-b.c+d@e:f` are valid layout REFs (containers/image's grammar).
        assert_eq!(src("oci:/x:a--b/c-d.e+f@g:h").to_string(), "oci:/x:a--b/c-d.e+f@g:h");
        assert_eq!(
            src("oci:/x:App:1").local_name(),
            Err(RefError::Invalid {
                input: "oci:/x:App:1".into(),
                reason: "REF is not a valid image name (lowercase repository, valid tag)"
            })
        );
        assert!(src("oci:/x/..").local_name().is_err());
        assert!(src("oci-archive:/x/a b.tar").local_name().is_err());
    }

    #[test]
    fn stored_names() {
        assert_eq!(ImageArg::parse("hello").unwrap(), ImageArg::Stored("hello".into()));
        assert_eq!(ImageArg::parse("hello:v2").unwrap(), ImageArg::Stored("hello:v2".into()));
        // `localhost/…` without a port is the local namespace: a stored name, not a registry.
        assert_eq!(ImageArg::parse("localhost/app:1.0").unwrap(), ImageArg::Stored("localhost/app:1.0".into()));
        assert!(matches!(ImageArg::parse("localhost:5000/app:1.0").unwrap(), ImageArg::Source(Source::Registry(_))));
        assert_eq!(ImageName::parse("hello").unwrap().to_string(), "hello:latest");
        assert_eq!(ImageName::parse("127.0.0.1:5000/etcd:3.4").unwrap().tag, "3.4");
        assert_eq!(ImageName::parse("127.0.0.1:5000/etcd").unwrap().repository, "127.0.0.1:5000/etcd");
        assert!(ImageName::parse("../x").is_none());
        for (n, want) in [("etcd:latest", "etcd"), ("quay.io/coreos/etcd:3.4", "etcd-3.4")] {
            assert_eq!(ImageName::parse(n).unwrap().default_container_name(), want);
        }
    }
}
