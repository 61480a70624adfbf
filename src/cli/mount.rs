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
    result: output::Outcome,
    dir: PathBuf,
    digest: String,
}

pub fn mount(ctx: &Ctx, args: MountArgs) -> Result<()> {
    let (store, _lock) = ctx.store_locked()?;
    let (opts, progress) = (args.registry.options(), ctx.progress());
    let img = crate::fetch::resolve::stored(&store, &args.image, &opts, &progress)?;
    let rec = mount::mount(&store, &img.name.to_string(), &args.dir, &opts.extract, &progress)?;
    ctx.say(&format!("Mounted {} read-only on {}", rec.image, rec.dir.display()));
    if ctx.global.json {
        output::json(&J {
            name: rec.image,
            action: "mount",
            result: output::Outcome::Done,
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
            result: if u.leftover_only { output::Outcome::Cleaned } else { output::Outcome::Done },
            dir: u.dir,
            digest: u.record.map(|r| r.manifest.to_string()).unwrap_or_default(),
        });
    }
    Ok(())
}
