//! Trust: whether an image may enter the store, decided by a containers-policy.json(5) file and
//! the signatures the image has, before anything of the image is stored.
//!
//! The flow, one module per step:
//! ```text
//! policy (which requirements apply: scope lookup) ─▶ sources (where signatures are: registries.d)
//!   ─▶ fetched Signature blobs ─▶ simple / cosign (cryptography) ─▶ payload (strict JSON)
//!   ─▶ identity (signedIdentity) ─▶ evaluate (every requirement holds) ─▶ Verified (recorded)
//! ```
//! - [`policy`]: strict parse of policy.json and the most specific scope for an image.
//! - [`identity`]: the `signedIdentity` rules (`matchRepoDigestOrExact`, …).
//! - [`payload`]: the signed JSON payload (`critical`/`optional`), parsed strictly after the
//!   signature over it was verified.
//! - [`simple`]: GPG "simple signing" (an OpenPGP signed message with exactly one signature).
//! - [`cosign`]: sigstore signatures (cosign's payload + base64 signature, public keys, Fulcio
//!   certificates, Rekor SETs).
//! - [`bundle`]: cosign v3 signature bundles (sigstore bundle v0.3, DSSE, in-toto statement) and
//!   the rule by which a bundle, which names no repository, may vouch for an image.

pub mod bundle;
pub mod cosign;
mod evaluate;
pub mod identity;
pub mod payload;
pub mod policy;
pub mod sign;
pub mod simple;
pub mod sources;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The media type of a sigstore signature attachment.
pub const SIGSTORE_SIGNATURE_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

pub use evaluate::{Subject, evaluate, wants_signatures};
pub use policy::{ImageScope, Policy};
pub use sources::Sources;

/// The policy file of the system (as skopeo and podman read it).
pub const SYSTEM_POLICY: &str = "/etc/containers/policy.json";

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(
        "no signature policy: {path} does not exist (Debian's golang-github-containers-common package installs the default one; or pass --signature-policy FILE, or --insecure-policy for one command)"
    )]
    NoPolicy { path: PathBuf },
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    #[error(transparent)]
    Sources(#[from] sources::SourcesError),
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A signature could not be read (not: was missing).
    #[error("cannot read signatures: {what}: {reason}")]
    Fetch { what: String, reason: String },
}

/// An image the policy does not let in: which file, which scope, and why each requirement failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("refused by policy {policy} (scope {scope}): {}", reasons.join("; "))]
pub struct Refusal {
    pub policy: String,
    pub scope: String,
    pub reasons: Vec<String>,
}

/// How a command decides trust (`--signature-policy`, `--insecure-policy`, `--registries.d`).
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub policy: Option<PathBuf>,
    /// Skip verification (for one command; the CLI says so on stderr).
    pub insecure: bool,
    pub registries_d: Option<PathBuf>,
}

impl Options {
    /// Verification off: for tests and `--insecure-policy`.
    pub fn insecure() -> Self {
        Options { insecure: true, ..Default::default() }
    }

    /// The policy file used: `--signature-policy`, else `$HOME/.config/containers/policy.json`
    /// when it exists, else [`SYSTEM_POLICY`].
    pub fn policy_path(&self) -> PathBuf {
        if let Some(p) = &self.policy {
            return p.clone();
        }
        if let Some(home) = std::env::var_os("HOME") {
            let user = Path::new(&home).join(".config/containers/policy.json");
            if user.exists() {
                return user;
            }
        }
        PathBuf::from(SYSTEM_POLICY)
    }

    /// Reads the policy (None with `--insecure-policy`). A missing file is an error.
    pub fn checker(&self) -> Result<Option<Checker>, TrustError> {
        if self.insecure {
            return Ok(None);
        }
        let path = self.policy_path();
        if !path.exists() {
            return Err(TrustError::NoPolicy { path });
        }
        let policy = Policy::load(&path)?;
        Ok(Some(Checker { path, policy, registries_d: self.registries_d.clone() }))
    }
}

/// A loaded policy and where to find signatures.
#[derive(Debug)]
pub struct Checker {
    pub path: PathBuf,
    pub policy: Policy,
    registries_d: Option<PathBuf>,
}

impl Checker {
    /// The registries.d configuration (read when a docker image needs its signatures).
    pub fn sources(&self) -> Result<Sources, TrustError> {
        Ok(Sources::load(self.registries_d.as_deref())?)
    }
}

/// A signature as fetched, before anything about it is believed.
#[derive(Debug, Clone)]
pub enum Signature {
    /// A simple-signing blob (an OpenPGP signed message) from a lookaside or the local source.
    Simple {
        /// Where it was found (`file:///var/lib/containers/sigstore/…/signature-1`), for messages.
        origin: String,
        blob: Vec<u8>,
    },
    /// A sigstore attachment: the payload blob of one layer of the `sha256-<hex>.sig` manifest
    /// and that layer's annotations (`dev.cosignproject.cosign/signature`, …).
    Sigstore {
        origin: String,
        /// The layer's media type: only `application/vnd.dev.cosign.simplesigning.v1+json`
        /// is a signature.
        media_type: String,
        payload: Vec<u8>,
        annotations: std::collections::BTreeMap<String, String>,
    },
    /// A cosign v3 bundle (a sigstore bundle JSON document) attached as an OCI 1.1 referrer.
    Bundle {
        origin: String,
        /// The bundle layer's media type (`application/vnd.dev.sigstore.bundle.v0.3+json`).
        media_type: String,
        bundle: Vec<u8>,
    },
}

impl Signature {
    pub fn origin(&self) -> &str {
        match self {
            Signature::Simple { origin, .. }
            | Signature::Sigstore { origin, .. }
            | Signature::Bundle { origin, .. } => origin,
        }
    }
}

/// What was verified about an image when it entered the store (kept in the store's name record
/// and copied into deployment records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    /// The policy file that decided.
    pub policy: String,
    /// The scope that applied: `docker:quay.io/coreos`, `docker (transport default)`, `default`.
    pub scope: String,
    /// One entry per requirement of that scope, in order.
    pub requirements: Vec<Accepted>,
}

impl Verified {
    /// One line: `signedBy key 0123…CDEF as reg/app:1 (scope docker:reg/app of /etc/containers/policy.json)`.
    pub fn summary(&self) -> String {
        let reqs: Vec<String> = self
            .requirements
            .iter()
            .map(|a| {
                let mut s = a.kind.clone();
                if let Some(k) = &a.key {
                    s.push_str(&format!(" key {k}"));
                }
                if let Some(i) = &a.identity {
                    s.push_str(&format!(" as {i}"));
                }
                if let Some(by) = &a.signer {
                    s.push_str(&format!(" ({by})"));
                }
                s
            })
            .collect();
        format!("{} (scope {} of {})", reqs.join(", "), self.scope, self.policy)
    }

    /// True when some requirement checked a signature (not only `insecureAcceptAnything`).
    pub fn signed(&self) -> bool {
        self.requirements.iter().any(|a| a.key.is_some())
    }
}

/// How one requirement was met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// `insecureAcceptAnything`, `signedBy`, `sigstoreSigned`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The key that made the accepted signature: an OpenPGP fingerprint (40 hex digits,
    /// uppercase) or `SHA256:<hex>` of a sigstore public key's SubjectPublicKeyInfo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The docker reference the signature vouches for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// For sigstore signatures checked against a Fulcio CA or a Rekor log: who signed and where
    /// it was logged (`dev@example.com from https://issuer, logged in Rekor #42 at 1767225660`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
}
#[cfg(test)]
mod bundle_tests;
