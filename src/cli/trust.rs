//! `hoist trust show IMAGE`: which policy scope and requirements apply to an image, where its
//! signatures are looked for, and whether it would be accepted, with the reason for each
//! signature. Nothing is stored; exit 0 when the image would be accepted, 1 when refused.

use clap::{Args, Subcommand};
use serde::Serialize;

use super::pull::RegistryArgs;
use super::{Ctx, output};
use crate::error::{Error, Result};
use crate::fetch::{self, resolve};

#[derive(Debug, Args)]
pub struct TrustArgs {
    #[command(subcommand)]
    pub command: TrustCmd,
}

#[derive(Debug, Subcommand)]
pub enum TrustCmd {
    /// Show the policy scope and requirements for an image, and whether it would be accepted
    Show {
        /// docker://REG/REPO[:TAG|@DIGEST], oci:DIR[:REF], oci-archive:FILE, docker-archive:FILE,
        /// or a stored name (its recorded source is checked)
        image: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(Serialize)]
struct ShowJson<'a> {
    image: String,
    policy: String,
    scope: String,
    requirements: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lookaside: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sigstore_attachments: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    signatures: &'a [String],
    accepted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<&'a crate::trust::Verified>,
    reasons: &'a [String],
}

pub fn run(ctx: &Ctx, args: TrustArgs) -> Result<()> {
    let TrustCmd::Show { image, registry } = args.command;
    let store = ctx.store()?;
    let opts = registry.options();
    let source = resolve::source_of(&store, &image, &opts)?;
    let Some(checker) = opts.trust.checker()? else {
        return Err(Error::Usage("trust show: --insecure-policy leaves nothing to show".into()));
    };
    let scope = fetch::scope_of(&source);
    let applied = checker.policy.applies(&scope);
    let requirements: Vec<String> = applied.requirements.iter().map(ToString::to_string).collect();
    let report = fetch::trust_report(&store, &source, &opts, &checker)?;
    let no_reasons = Vec::new();
    let (verified, reasons) = match &report.decision {
        Ok(v) => (Some(v), &no_reasons),
        Err(r) => (None, &r.reasons),
    };
    if ctx.global.json {
        output::json(&ShowJson {
            image: source.to_string(),
            policy: checker.path.display().to_string(),
            scope: applied.scope.clone(),
            requirements,
            lookaside: report.lookup.as_ref().map(|l| l.lookaside.clone()),
            sigstore_attachments: report.lookup.as_ref().map(|l| l.sigstore_attachments),
            digest: report.manifest.as_ref().map(ToString::to_string),
            signatures: &report.signatures,
            accepted: verified.is_some(),
            verified,
            reasons,
        });
    } else {
        ctx.say(&format!("Image:        {source}"));
        if let Some(d) = &report.manifest {
            ctx.say(&format!("Digest:       {d}"));
        }
        ctx.say(&format!("Policy:       {}", checker.path.display()));
        ctx.say(&format!("Scope:        {}", applied.scope));
        ctx.say("Requirements (all must hold):");
        for r in &requirements {
            ctx.say(&format!("  {r}"));
        }
        match &report.lookup {
            Some(l) => {
                ctx.say(&format!("Signatures:   lookaside {}@sha256=…/signature-N", l.lookaside));
                let att = if l.sigstore_attachments {
                    "on (.sig tags and cosign v3 bundle referrers)"
                } else {
                    "off (use-sigstore-attachments)"
                };
                ctx.say(&format!("              sigstore attachments {att}"));
            }
            None => ctx.say("Signatures:   none (a local source carries none)"),
        }
        ctx.say(&format!("Found:        {} signature(s)", report.signatures.len()));
        for s in &report.signatures {
            ctx.say(&format!("  {s}"));
        }
        match &report.decision {
            Ok(v) => ctx.say(&format!("Verdict:      accepted: {}", v.summary())),
            Err(r) => {
                ctx.say("Verdict:      refused");
                for reason in &r.reasons {
                    ctx.say(&format!("  {reason}"));
                }
            }
        }
    }
    if verified.is_some() { Ok(()) } else { Err(Error::Reported) }
}
