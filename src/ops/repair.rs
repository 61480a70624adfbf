//! Repair of transactions a killed hoist left behind (see [`super::txn`]).

use std::collections::BTreeMap;

use super::install::undo_install;
use super::txn::{self, Op, Txn};
use super::uninstall::uninstall;
use super::update::switch;
use super::{Host, OpsError, Result, slot_dir};
use crate::deploy::record::Record;
use crate::layout::Layout;
use crate::systemd::Systemd;

/// Repairs every interrupted transaction; returns one line per repair for the user.
pub async fn repair_all(layout: &Layout, sd: &Systemd, host: &Host) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for (name, txn) in txn::pending(layout) {
        match txn {
            Some(Txn { op: Op::Install, .. }) => {
                undo_install(layout, sd, host, &name, &BTreeMap::new()).await;
                txn::end(layout, &name)?;
                done.push(format!("{name}: removed the remains of an interrupted install"));
            }
            Some(Txn { op: Op::Switch, from: Some(from), to: Some(to), was_running }) => {
                let from_rec = Record::load(&slot_dir(layout, &name, from))?;
                switch(sd, host, layout, &from_rec, &slot_dir(layout, &name, to)).await?;
                let unit = format!("{name}.service");
                if was_running {
                    let _ = sd.reset_failed(&unit).await;
                    sd.restart(&unit).await?;
                }
                txn::end(layout, &name)?;
                done.push(format!("{name}: completed an interrupted switch to deployment {to}"));
            }
            Some(Txn { op: Op::Uninstall, .. }) => {
                match uninstall(layout, sd, host, &name, false).await {
                    Ok(_) | Err(OpsError::NoSuch(_)) => {}
                    Err(e) => return Err(e),
                }
                txn::end(layout, &name)?;
                done.push(format!("{name}: completed an interrupted uninstall"));
            }
            _ => {
                return Err(OpsError::Failed {
                    name,
                    reason: format!(
                        "unreadable transaction journal {}; check the container and remove it",
                        txn::path(layout, "NAME").display()
                    ),
                });
            }
        }
    }
    Ok(done)
}
