//! Image references: what the user types after `hoist pull|install|images …`.
//!
//! ```text
//! docker://REG/REPO[:TAG|@sha256:…]   a registry image (a bare REG/REPO:TAG means the same)
//! oci:DIR[:REF]                       an OCI image layout directory
//! oci-archive:FILE[:REF]              a tar of an OCI image layout
//! docker-archive:FILE                 a `docker save` tar
//! NAME[:TAG] | digest prefix          an image already in the store
//! ```
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
    DockerArchive { path: PathBuf },
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
                if rest.is_empty() {
                    return Err(invalid(input, "missing path"));
                }
                let (path, reference) = split_path_ref(rest);
                let path = PathBuf::from(path);
                return Ok(ImageArg::Source(match kind {
                    0 => Source::OciDir { path, reference },
                    1 => Source::OciArchive { path, reference },
                    _ => Source::DockerArchive { path: PathBuf::from(rest) },
                }));
            }
        }
        if input.contains("://") {
            return Err(invalid(input, "unknown transport (use docker://, oci:, oci-archive: or docker-archive:)"));
        }
        // A bare reference with a registry host in front is a registry image.
        if let Some((first, _)) = input.split_once('/')
            && (first.contains('.') || first.contains(':') || first == "localhost")
        {
            return RegistryRef::parse(input).map(|r| ImageArg::Source(Source::Registry(r)));
        }
        Ok(ImageArg::Stored(input.to_string()))
    }
}

/// `PATH[:REF]`: the last `:` starts a REF only when what follows has no `/`.
fn split_path_ref(s: &str) -> (&str, Option<String>) {
    match s.rsplit_once(':') {
        Some((p, r)) if !r.contains('/') && !p.is_empty() => (p, (!r.is_empty()).then(|| r.to_string())),
        _ => (s, None),
    }
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
            Some((first, repo)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), repo.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        if !valid_registry(&registry) {
            return Err(invalid(input, "bad registry host"));
        }
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
            Source::DockerArchive { path } => write!(f, "docker-archive:{}", path.display()),
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
            Source::DockerArchive { path } => Source::DockerArchive { path: abs(path) },
            r => r,
        }
    }

    /// The name a local source is stored under when the source itself names nothing:
    /// the file or directory name without `.tar`, tagged with REF (default `latest`).
    pub fn local_name(&self) -> Result<Option<ImageName>, RefError> {
        let (path, reference) = match self {
            Source::Registry(r) => {
                // Pulled by digest alone: stored as TAG `sha256-<hex>` (a valid tag naming the content).
                let tag = r
                    .tag
                    .clone()
                    .unwrap_or_else(|| format!("sha256-{}", r.digest.as_ref().expect("tag or digest").hex()));
                return Ok(Some(ImageName { repository: format!("{}/{}", r.registry, r.repository), tag }));
            }
            Source::OciDir { path, reference } | Source::OciArchive { path, reference } => (path, reference.as_deref()),
            Source::DockerArchive { path } => (path, None),
        };
        let base = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let base = base.strip_suffix(".tar").unwrap_or(&base).to_ascii_lowercase();
        let text = self.to_string();
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
            Some((h, p)) if h.contains('.') || h.contains(':') || h == "localhost" => (Some(h), p),
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
            ("localhost/a/b", "localhost", "a/b", Some("latest"), false),
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
        assert_eq!(
            src("oci-archive:rel/a:b/c.tar"),
            Source::OciArchive { path: "rel/a:b/c.tar".into(), reference: None }
        );
        assert_eq!(src("docker-archive:/x/y.tar"), Source::DockerArchive { path: "/x/y.tar".into() });
        let n = src("oci-archive:/x/hello.tar").local_name().unwrap().unwrap();
        assert_eq!(n.to_string(), "hello:latest");
        let n = src("oci:/x/Etcd:3.4").local_name().unwrap().unwrap();
        assert_eq!(n.to_string(), "etcd:3.4");
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
        assert!(src("oci:/x/..").local_name().is_err());
        assert!(src("oci-archive:/x/a b.tar").local_name().is_err());
    }

    #[test]
    fn stored_names() {
        assert_eq!(ImageArg::parse("hello").unwrap(), ImageArg::Stored("hello".into()));
        assert_eq!(ImageArg::parse("hello:v2").unwrap(), ImageArg::Stored("hello:v2".into()));
        assert_eq!(ImageName::parse("hello").unwrap().to_string(), "hello:latest");
        assert_eq!(ImageName::parse("127.0.0.1:5000/etcd:3.4").unwrap().tag, "3.4");
        assert_eq!(ImageName::parse("127.0.0.1:5000/etcd").unwrap().repository, "127.0.0.1:5000/etcd");
        assert!(ImageName::parse("../x").is_none());
        for (n, want) in [("etcd:latest", "etcd"), ("quay.io/coreos/etcd:3.4", "etcd-3.4")] {
            assert_eq!(ImageName::parse(n).unwrap().default_container_name(), want);
        }
    }
}
