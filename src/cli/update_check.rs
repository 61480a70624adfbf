//! `hoist update --check` (what would change, nothing pulled) and `--download-only` (pulled,
//! nothing switched).

use serde::Serialize;

use super::update::UpdateArgs;
use super::{Ctx, output};
use crate::deploy::container::Container;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fetch::resolve;
use crate::imgref::{ImageArg, Source};
use crate::ops::OpsError;
use crate::store::{Store, StoredImage};

#[derive(Debug, Serialize)]
struct Checked {
    name: String,
    reference: Option<String>,
    current: Digest,
    /// What the reference names now (absent when it cannot be known without importing).
    #[serde(skip_serializing_if = "Option::is_none")]
    available: Option<Digest>,
    /// pending | unchanged | pinned | unknown | failed
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `--check`: one manifest request per container (a layout's index for a local source).
pub fn run(ctx: &Ctx, store: &Store, names: &[String], args: &UpdateArgs) -> Result<()> {
    let pull = args.registry.options();
    let mut out = Vec::new();
    for name in names {
        let (_, rec) = Container::open(&ctx.layout, name).and_then(|c| c.current_record()).map_err(OpsError::from)?;
        let reference = args.rebase.clone().or_else(|| rec.source.clone());
        let mut c = Checked {
            name: name.clone(),
            reference: reference.clone(),
            current: rec.manifest.clone(),
            available: None,
            result: "unknown",
            error: None,
        };
        if args.rebase.is_none() && resolve::pinned(rec.source.as_deref()).is_some() {
            c.result = "pinned";
            out.push(c);
            continue;
        }
        let source = match reference.as_deref().map(ImageArg::parse) {
            Some(Ok(ImageArg::Source(s))) => Some(s),
            Some(Ok(ImageArg::Stored(q))) => match resolve::source_of(store, &q, &pull) {
                Ok(s) => Some(s),
                Err(e) => {
                    c.result = "failed";
                    c.error = Some(e.to_string());
                    None
                }
            },
            Some(Err(e)) => {
                c.result = "failed";
                c.error = Some(e.to_string());
                None
            }
            None => None,
        };
        if let Some(source) = source {
            match crate::fetch::current_digest(store, &source, &pull) {
                Ok(Some(d)) => {
                    c.result = if d == rec.manifest { "unchanged" } else { "pending" };
                    c.available = Some(d);
                }
                Ok(None) => {}
                Err(e) => {
                    c.result = "failed";
                    c.error = Some(e.to_string());
                }
            }
            if matches!(source, Source::DockerArchive { .. }) {
                c.result = "unknown";
            }
        }
        out.push(c);
    }
    if ctx.global.json {
        output::json(&out);
    } else {
        for c in &out {
            let r = c.reference.as_deref().unwrap_or("(no recorded source)");
            match c.result {
                "pending" => ctx.say(&format!(
                    "{}: update available: {} -> {} ({r})",
                    c.name,
                    c.current.short(),
                    c.available.as_ref().map(Digest::short).unwrap_or("?")
                )),
                "unchanged" => ctx.say(&format!("{}: up to date ({})", c.name, c.current.short())),
                "pinned" => ctx.say(&format!("{}: pinned by its reference {r}; update never moves it", c.name)),
                "failed" => eprintln!(
                    "hoist: {}: {}",
                    c.name,
                    crate::error::printable(c.error.as_deref().unwrap_or("cannot be checked"))
                ),
                _ => ctx.say(&format!("{}: cannot tell without reading {r} (`hoist update` does)", c.name)),
            }
        }
    }
    if out.iter().any(|c| c.result == "failed") {
        Err(Error::Reported)
    } else if out.iter().any(|c| c.result == "pending") {
        Err(Error::Pending)
    } else {
        Ok(())
    }
}

#[derive(Serialize)]
struct Ready<'a> {
    name: &'a str,
    /// ready (pulled, not switched) | unchanged
    result: &'static str,
    to: &'a Digest,
}

/// `--download-only`: the targets are pulled; say so and stop.
pub fn ready(ctx: &Ctx, targets: &[(&String, StoredImage, Option<String>)], switching: &[&str]) -> Result<()> {
    let rows: Vec<Ready<'_>> = targets
        .iter()
        .map(|(name, img, _)| Ready {
            name: name.as_str(),
            result: if switching.contains(&name.as_str()) { "ready" } else { "unchanged" },
            to: &img.manifest,
        })
        .collect();
    if ctx.global.json {
        output::json(&rows);
        return Ok(());
    }
    for r in &rows {
        if r.result == "ready" {
            ctx.say(&format!(
                "{}: {} pulled and ready (`hoist update {}` switches to it)",
                r.name,
                r.to.short(),
                r.name
            ));
        } else {
            ctx.say(&format!("{}: already up to date ({})", r.name, r.to.short()));
        }
    }
    Ok(())
}
