//! Repair of what a killed hoist left behind: a state root still in the v1 layout (see
//! [`crate::deploy::migrate`]) and interrupted transactions (see [`super::txn`]).

use std::collections::BTreeMap;

use super::install::undo_install;
use super::slot::publish_unit;
use super::txn::{self, Op, Txn};
use super::uninstall::uninstall_container;
use super::update::switch;
use super::{Host, OpsError, Result};
use crate::deploy::container::Container;
use crate::deploy::migrate;
use crate::layout::Layout;
use crate::systemd::Systemd;

/// Whether [`repair_all`] has anything to do (cheap: for readers deciding to take the lock).
pub fn needed(layout: &Layout) -> bool {
    migrate::pending(layout) || !txn::pending(layout).is_empty()
}

/// Migrates the state root if needed, then repairs every interrupted transaction; returns one
/// line per action for the user. The caller holds the state lock.
pub async fn repair_all(layout: &Layout, sd: &Systemd, host: &Host) -> Result<Vec<String>> {
    let mut done = Vec::new();
    if migrate::pending(layout) {
        let migrated = migrate::run(layout)?;
        // The units name the deployments' new paths: publish them again, then reload.
        for c in &migrated {
            if let Some(slot) = c.current()
                && slot.record().is_ok_and(|r| r.has_service)
            {
                publish_unit(host, c, &slot)?;
            }
        }
        sd.reload().await?;
        migrate::finish(layout)?;
        if !migrated.is_empty() {
            let names: Vec<&str> = migrated.iter().map(|c| c.name()).collect();
            done.push(format!(
                "migrated the state root {} to the v2 layout (containers/NAME/{{0,1,current,txn}}): {}",
                layout.root().display(),
                names.join(", ")
            ));
        }
    }
    for (c, txn) in txn::pending(layout) {
        done.push(repair_one(sd, host, &c, txn).await?);
    }
    Ok(done)
}

async fn repair_one(sd: &Systemd, host: &Host, c: &Container, txn: Option<Txn>) -> Result<String> {
    let name = c.name();
    let unit = c.unit_name();
    match txn {
        Some(Txn { op: Op::Install, .. }) => {
            undo_install(sd, host, c, &BTreeMap::new()).await;
            txn::end(c)?;
            Ok(format!("repaired {name}: removed the remains of an interrupted install"))
        }
        Some(Txn { op: op @ (Op::Switch | Op::Judge), from: Some(from), to: Some(to), was_running }) => {
            // An interrupted switch is completed; an update interrupted before its verdict is
            // rolled back.
            let (from, to) = if op == Op::Judge { (to, from) } else { (from, to) };
            let from_rec = c.slot(from).record()?;
            switch(sd, host, c, &from_rec, &c.slot(to)).await?;
            if was_running {
                let _ = sd.reset_failed(&unit).await;
                sd.restart(&unit).await?;
            }
            txn::end(c)?;
            Ok(if op == Op::Judge {
                format!(
                    "repaired {name}: rolled back an update interrupted before it was judged healthy (deployment {to})"
                )
            } else {
                format!("repaired {name}: completed an interrupted switch to deployment {to}")
            })
        }
        Some(Txn { op: Op::Uninstall, .. }) => {
            match uninstall_container(c, sd, host, false).await {
                Ok(_) | Err(OpsError::NoSuch(_)) => {}
                Err(e) => return Err(e),
            }
            txn::end(c)?;
            Ok(format!("repaired {name}: completed an interrupted uninstall"))
        }
        _ => Err(OpsError::Failed {
            name: name.to_string(),
            reason: format!(
                "unreadable transaction journal {}; check the container and remove it",
                c.txn_file().display()
            ),
        }),
    }
}
