//! Crash safety: a journal per container transaction, and repair of interrupted ones.
//!
//! ```text
//! containers/NAME/txn   {"op": "install"|"switch"|"judge"|"uninstall", "from": slot?, "to": slot?, "was_running": bool}
//! ```
//! Written atomically before the first change the host can see (host files, unit, link) and
//! removed after the last. A hoist killed in between (power loss, `kill -9`) leaves the journal;
//! the next mutating hoist command (and `list`/`status`, when they can take the lock) repairs
//! every journal it finds before doing anything else:
//! - `install`: undone completely (the container was not installed before);
//! - `switch` (update, rollback, the switch back of an automatic rollback): completed towards
//!   `to`, idempotently, and the service restarted if it was running;
//! - `judge` (an update switched to `to` and restarted it, but had not yet judged it healthy):
//!   rolled back to `from`, as the automatic rollback would have — an update is committed only
//!   when its verdict is;
//! - `uninstall`: completed.
//!
//! Either way the container ends fully old or fully new, never a mix.
//!
//! Fault injection for the tests: [`fault`] (see `crate::fault`).

use std::fs;

use serde::{Deserialize, Serialize};

use crate::deploy::container::{self, Container};
use crate::fsutil::{self, PathError};
use crate::layout::Layout;

pub use crate::fault::point as fault;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Install,
    Switch,
    Judge,
    Uninstall,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Txn {
    pub op: Op,
    pub from: Option<u8>,
    pub to: Option<u8>,
    pub was_running: bool,
}

pub fn begin(c: &Container, txn: &Txn) -> Result<(), PathError> {
    c.create()?;
    fsutil::write_atomic(&c.txn_file(), &serde_json::to_vec(txn).expect("json"), 0o600)
}

pub fn end(c: &Container) -> Result<(), PathError> {
    let p = c.txn_file();
    match fs::remove_file(&p) {
        Ok(()) => fsutil::sync_dir(c.dir()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PathError::new(p, e)),
    }
}

/// Interrupted transactions: (container, journal). An unreadable journal is `None`, reported
/// by the caller.
pub fn pending(layout: &Layout) -> Vec<(Container, Option<Txn>)> {
    container::all(layout)
        .into_iter()
        .filter_map(|c| {
            let data = fs::read(c.txn_file()).ok()?;
            let txn = serde_json::from_slice(&data).ok();
            Some((c, txn))
        })
        .collect()
}
