//! Crash safety: a journal per container transaction, and repair of interrupted ones.
//!
//! ```text
//! containers/NAME.txn   {"op": "install"|"switch"|"uninstall", "from": slot?, "to": slot?, "was_running": bool}
//! ```
//! Written atomically before the first change the host can see (host files, unit, link) and
//! removed after the last. A hoist killed in between (power loss, `kill -9`) leaves the journal;
//! the next mutating hoist command (and `list`/`status`, when they can take the lock) repairs
//! every journal it finds before doing anything else:
//! - `install`: undone completely (the container was not installed before);
//! - `switch` (update, rollback, automatic rollback): completed towards `to`, idempotently, and
//!   the service restarted if it was running;
//! - `uninstall`: completed.
//!
//! Either way the container ends fully old or fully new, never a mix.
//!
//! Fault injection for the tests: `HOIST_FAULT=<step>` makes hoist kill itself with SIGKILL
//! when it reaches `<step>` (names in the ops that call [`fault`]).

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::fsutil::{self, PathError};
use crate::layout::Layout;

pub use crate::fault::point as fault;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Install,
    Switch,
    Uninstall,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Txn {
    pub op: Op,
    pub from: Option<u8>,
    pub to: Option<u8>,
    pub was_running: bool,
}

pub fn path(layout: &Layout, name: &str) -> PathBuf {
    layout.containers().join(format!("{name}.txn"))
}

pub fn begin(layout: &Layout, name: &str, txn: &Txn) -> Result<(), PathError> {
    fsutil::ensure_dir(&layout.containers(), 0o700)?;
    fsutil::write_atomic(&path(layout, name), &serde_json::to_vec(txn).expect("json"), 0o600)
}

pub fn end(layout: &Layout, name: &str) -> Result<(), PathError> {
    let p = path(layout, name);
    match fs::remove_file(&p) {
        Ok(()) => fsutil::sync_dir(&layout.containers()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PathError::new(p, e)),
    }
}

/// Interrupted transactions: (container name, journal). An unreadable journal reads as an
/// interrupted switch of unknown direction and is reported by the caller.
pub fn pending(layout: &Layout) -> Vec<(String, Option<Txn>)> {
    let Ok(rd) = fs::read_dir(layout.containers()) else { return Vec::new() };
    let mut out: Vec<(String, Option<Txn>)> = rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let name = n.strip_suffix(".txn")?.to_string();
            let txn = fs::read(e.path()).ok().and_then(|d| serde_json::from_slice(&d).ok());
            Some((name, txn))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
