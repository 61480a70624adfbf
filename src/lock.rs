//! The state-root lock: one `flock(2)` on `<root>/lock`, held exclusively by every mutating
//! command for its whole run and shared by readers that must not see half-done work.
//! The kernel drops it when the process dies, so a crashed hoist never leaves it stuck.

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::fsutil::{IoContext, PathError};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct StateLock {
    _flock: Flock<File>,
}

impl StateLock {
    /// Takes the lock exclusively, waiting (and saying so through `on_wait`) while another hoist
    /// command holds it.
    pub fn exclusive(path: &Path, on_wait: impl FnOnce()) -> Result<Self, PathError> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(path).at(path)?;
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(StateLock { _flock: l }),
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => file,
            Err((_, e)) => return Err(PathError::new(path, e.into())),
        };
        on_wait();
        Flock::lock(file, FlockArg::LockExclusive)
            .map(|l| StateLock { _flock: l })
            .map_err(|(_, e)| PathError::new(path, e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_waits() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let held = StateLock::exclusive(&p, || panic!("first lock must not wait")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p2 = p.clone();
        let t = std::thread::spawn(move || {
            let _l = StateLock::exclusive(&p2, || tx.send(()).unwrap()).unwrap();
        });
        rx.recv().unwrap(); // the second taker reported that it waits
        drop(held);
        t.join().unwrap();
    }
}
