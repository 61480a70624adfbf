//! Platforms (`os/arch[/variant]`) and picking one manifest out of an image index.
//!
//! Names are normalised the way containerd and podman do before comparing: `x86_64` is `amd64`,
//! `aarch64` is `arm64`, an `arm64` without variant is `arm64/v8`, an `arm` without variant is
//! `arm/v7`, and `amd64/v1` is plain `amd64`. An exact variant match wins; a 32-bit arm host
//! also accepts lower variants (v7 runs v6 and v5 images), best first. Index entries for other
//! operating systems or `unknown/unknown` (build attestations) never match.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageIndex};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid platform {0:?}: expected OS/ARCH[/VARIANT], e.g. linux/arm64 or linux/arm/v7")]
pub struct InvalidPlatform(pub String);

impl Platform {
    /// Builds a normalised platform.
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Self {
        let os = os.to_ascii_lowercase();
        let (arch, variant) = normalize_arch(&arch.to_ascii_lowercase(), variant.map(|v| v.to_ascii_lowercase()));
        Platform { os, arch, variant }
    }

    /// This machine (`linux/amd64`, `linux/arm64/v8`, …).
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform::new(std::env::consts::OS, arch, None)
    }

    fn of(desc: &Descriptor) -> Option<Platform> {
        let p = desc.platform().as_ref()?;
        Some(Platform::new(&p.os().to_string(), &p.architecture().to_string(), p.variant().as_deref()))
    }

    /// How well an image for `other` runs here: `Some(0)` exact, higher is a worse fallback.
    fn rank(&self, other: &Platform) -> Option<u32> {
        if self.os != other.os || self.arch != other.arch {
            return None;
        }
        if self.variant == other.variant {
            return Some(0);
        }
        // 32-bit arm runs older variants: v7 > v6 > v5.
        let num =
            |v: &Option<String>| v.as_deref().and_then(|v| v.strip_prefix('v')).and_then(|n| n.parse::<u32>().ok());
        match (self.arch.as_str(), num(&self.variant), num(&other.variant)) {
            ("arm", Some(mine), Some(theirs)) if theirs < mine => Some(mine - theirs),
            _ => None,
        }
    }
}

fn normalize_arch(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    let variant = variant.filter(|v| !v.is_empty());
    match arch {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => ("arm64".into(), Some(variant.unwrap_or_else(|| "v8".into()))),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => ("arm".into(), Some(variant.unwrap_or_else(|| "v7".into()))),
        "i386" | "i686" | "386" => ("386".into(), variant),
        other => (other.into(), variant),
    }
}

impl FromStr for Platform {
    type Err = InvalidPlatform;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        match parts[..] {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform::new(os, arch, None)),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform::new(os, arch, Some(v))),
            _ => Err(InvalidPlatform(s.to_string())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The index entry to use on `want`, or the list of platforms the index offers.
pub fn select<'a>(index: &'a ImageIndex, want: &Platform) -> Result<&'a Descriptor, Vec<String>> {
    index
        .manifests()
        .iter()
        .filter_map(|d| Some((want.rank(&Platform::of(d)?)?, d)))
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, d)| d)
        .ok_or_else(|| index.manifests().iter().filter_map(Platform::of).map(|p| p.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    p["variant"] = (*v).into();
                }
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{}", format!("{i:x}").repeat(64).get(..64).unwrap()),
                    "size": 1,
                    "platform": p,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": manifests})).unwrap()
    }

    fn pick(idx: &ImageIndex, want: &str) -> Option<usize> {
        let d = select(idx, &want.parse().unwrap()).ok()?;
        idx.manifests().iter().position(|m| m.digest() == d.digest())
    }

    #[test]
    fn parses_and_normalizes() {
        assert_eq!("linux/aarch64".parse::<Platform>().unwrap().to_string(), "linux/arm64/v8");
        assert_eq!("linux/x86_64/v1".parse::<Platform>().unwrap().to_string(), "linux/amd64");
        assert_eq!("linux/arm".parse::<Platform>().unwrap().to_string(), "linux/arm/v7");
        assert_eq!("Linux/ARM/V6".parse::<Platform>().unwrap().to_string(), "linux/arm/v6");
        for bad in ["", "linux", "linux/", "/amd64", "linux/amd64/v1/x", "linux/am d64", "../x/y"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
        assert_eq!(Platform::host().os, "linux");
    }

    #[test]
    fn selects_with_variants() {
        let idx = index(&[
            ("linux", "amd64", None),
            ("linux", "arm64", Some("v8")),
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("unknown", "unknown", None),
            ("windows", "amd64", None),
        ]);
        assert_eq!(pick(&idx, "linux/amd64"), Some(0));
        assert_eq!(pick(&idx, "linux/arm64"), Some(1), "arm64 without variant means v8");
        assert_eq!(pick(&idx, "linux/arm/v7"), Some(3), "exact variant wins over an older one");
        assert_eq!(pick(&idx, "linux/arm/v6"), Some(2));
        assert_eq!(pick(&idx, "linux/arm/v5"), None, "a newer variant never runs on an older cpu");
        assert_eq!(pick(&idx, "windows/amd64"), Some(5));
        let err = select(&idx, &"linux/s390x".parse().unwrap()).unwrap_err();
        assert!(err.contains(&"linux/arm/v7".to_string()) && err.contains(&"linux/amd64".to_string()), "{err:?}");
        // arm64 entries written without a variant still match arm64/v8.
        let idx = index(&[("linux", "arm", None), ("linux", "aarch64", None)]);
        assert_eq!(pick(&idx, "linux/arm64/v8"), Some(1));
        assert_eq!(pick(&idx, "linux/arm/v8"), Some(0), "arm v8 host runs the default v7");
    }
}
