use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{Ctx, output};
use crate::error::Result;
use crate::mount;

#[derive(Debug, Args)]
pub struct MountArgs {
    /// A stored image or a source reference (a local source is read again, a registry one pulled if missing)
    pub image: String,
    /// An empty directory
    pub dir: PathBuf,
    #[command(flatten)]
    pub registry: super::pull::RegistryArgs,
}

#[derive(Debug, Args)]
pub struct UmountArgs {
    pub dir: PathBuf,
}

#[derive(Serialize)]
struct J {
    name: String,
    action: &'static str,
    result: &'static str,
    dir: PathBuf,
    digest: String,
}

pub fn mount(ctx: &Ctx, args: MountArgs) -> Result<()> {
    let query = super::pull::stored_query(ctx, &args.image, &args.registry)?;
    let (store, _lock) = ctx.store_locked()?;
    let rec = mount::mount(&store, &query, &args.dir, &args.registry.options().extract, &ctx.progress())?;
    ctx.say(&format!("Mounted {} read-only on {}", rec.image, rec.dir.display()));
    if ctx.global.json {
        output::json(&J {
            name: rec.image,
            action: "mount",
            result: "done",
            dir: rec.dir,
            digest: rec.manifest.to_string(),
        });
    }
    Ok(())
}

pub fn umount(ctx: &Ctx, args: UmountArgs) -> Result<()> {
    let (_store, _lock) = ctx.store_locked()?;
    let u = mount::umount(&ctx.layout, &args.dir)?;
    if u.leftover_only {
        ctx.say(&format!("Removed the leftover of an interrupted hoist mount on {}", u.dir.display()));
    } else {
        ctx.say(&format!("Unmounted {}", u.dir.display()));
    }
    if ctx.global.json {
        output::json(&J {
            name: u.record.as_ref().map(|r| r.image.clone()).unwrap_or_default(),
            action: "umount",
            result: if u.leftover_only { "cleaned" } else { "done" },
            dir: u.dir,
            digest: u.record.map(|r| r.manifest.to_string()).unwrap_or_default(),
        });
    }
    Ok(())
}
