use clap::Args;

use super::{Ctx, output};
use crate::error::{Error, Result};
use crate::ops::query::{self, State};
use crate::systemd::{self, Systemd};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Show every container, not only running ones
    #[arg(short, long)]
    pub all: bool,
    /// Show full digests
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub name: String,
}

pub fn list(ctx: &Ctx, args: ListArgs) -> Result<()> {
    ctx.repair_if_needed()?;
    let rows = systemd::block_on(async {
        // Listing works without systemd (states read "unknown"), so a broken bus never hides
        // what is installed.
        let sd = Systemd::connect().await.ok();
        query::list(&ctx.layout, sd.as_ref()).await
    });
    let rows: Vec<_> = rows.into_iter().filter(|r| args.all || r.state == State::Running).collect();
    if ctx.global.json {
        output::json(&rows);
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let digest = match &r.digest {
                Some(d) if args.no_trunc => d.to_string(),
                Some(d) => d.short().to_string(),
                None => "?".into(),
            };
            // A registry container shows the reference it follows (its tag stream), a pinned one
            // its tag and "pinned"; the digest column says where that resolved.
            let image = match &r.follows {
                Some(f) if r.pinned => format!("{} (pinned)", f.split('@').next().unwrap_or(f)),
                Some(f) => f.clone(),
                None => r.image.clone(),
            };
            vec![
                r.name.clone(),
                image,
                digest,
                r.deployment.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
                match &r.health {
                    Some(h) => format!("{} ({h})", r.state),
                    None => r.state.to_string(),
                },
                r.runtime.clone(),
            ]
        })
        .collect();
    output::table(&["NAME", "IMAGE", "DIGEST", "DEPLOYMENT", "STATE", "RUNTIME"], &table);
    Ok(())
}

pub fn status(ctx: &Ctx, args: StatusArgs) -> Result<()> {
    ctx.repair_if_needed()?;
    let st = systemd::block_on(async {
        let sd = Systemd::connect().await?;
        Ok::<_, Error>(query::status(&ctx.layout, &sd, &args.name).await?)
    })?;
    if ctx.global.json {
        output::json(&st);
        return Ok(());
    }
    let s = &st.summary;
    println!("{}: {}", s.name, s.state);
    let digest = s.digest.as_ref().map(ToString::to_string).unwrap_or_else(|| "?".into());
    println!("  image:       {} ({digest})", s.image);
    if let Some(src) = &st.source {
        println!("  source:      {src}");
    }
    if let Some(f) = &s.follows {
        match f.split_once('@') {
            Some((_, d)) if s.pinned => println!("  follows:     nothing: pinned to {d} (update never moves it)"),
            _ => println!("  follows:     {f} (update moves to what the tag names then)"),
        }
    }
    if let Some(from) = &st.fetched_from {
        println!("  fetched:     {from}");
    }
    if let Some(t) = &st.remembered_tls {
        println!("  tls:         {t}");
    }
    match &st.verified {
        Some(v) => println!("  verified:    {}", v.summary()),
        None => println!("  verified:    no (pulled with --insecure-policy or before hoist verified signatures)"),
    }
    println!(
        "  deployment:  {} (of {})",
        s.deployment.map(|d| d.to_string()).unwrap_or_else(|| "?".into()),
        st.deployments.iter().map(|(n, i)| format!("{n}: {i}")).collect::<Vec<_>>().join(", ")
    );
    println!("  runtime:     {}", s.runtime);
    if let Some(f) = crate::fleet::state(&ctx.layout) {
        println!("  fleet lock:  {}", super::fleet::describe(&f));
    }
    if let Some(u) = &st.unit {
        println!("  unit:        {}.service {} ({}), {}", s.name, u.active_state, u.sub_state, u.unit_file_state);
        if u.main_pid != 0 {
            println!("  main pid:    {}", u.main_pid);
        }
        if u.result != "success" && !u.result.is_empty() {
            println!("  last result: {} (exit status {})", u.result, u.exec_main_status);
        }
        if u.n_restarts > 0 {
            println!("  restarts:    {}", u.n_restarts);
        }
    }
    match (&st.health_check, &st.health_state) {
        (None, _) => {}
        (Some(c), None) => println!("  health:      check `{}` (not running)", c.command()),
        (Some(c), Some(h)) => {
            println!("  health:      {} (check `{}`, every {:?})", h.status, c.command(), c.interval());
            if h.failing_streak > 0 {
                println!("  failing:     {} in a row", h.failing_streak);
            }
            if let Some(t) = h.last_check {
                let exit = h.last_exit.map(|c| format!("exit {c}")).unwrap_or_else(|| "no exit status".into());
                let first = h.last_output.lines().next().unwrap_or("");
                println!(
                    "  last check:  {t} (unix time), {exit}{}",
                    if first.is_empty() { String::new() } else { format!(": {first}") }
                );
            }
        }
    }
    for f in &st.host_files {
        println!("  host file:   {f}");
    }
    println!("Logs: hoist logs {}   (journalctl -u {})", s.name, s.name);
    Ok(())
}
