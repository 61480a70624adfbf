//! Fault injection for the crash-safety tests.
//!
//! Every step where a killed hoist would leave something half done calls [`point`] with a
//! stable name (`install:slot`, `switch:link`, …; the names are listed where they are called).
//! - Out of process: `HOIST_FAULT=<step>` kills hoist with SIGKILL the first time it reaches
//!   `<step>`; `HOIST_FAULT=<step>#<n>` the n-th time (a switch runs twice during an automatic
//!   rollback, so `switch:link#2` crashes inside the rollback).
//! - In process (tier-1 tests): [`inject`] arms a fault for the current thread; reaching it
//!   panics with [`Injected`], which the test catches. Nothing in the ops cleans up on unwind
//!   (failure handling is explicit on `Err`), so the state left is what a kill leaves.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const ENV: &str = "HOIST_FAULT";

/// Where to crash: the `nth` time (from 1) `step` is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub step: String,
    pub nth: usize,
}

impl Fault {
    /// `step` or `step#n`.
    pub fn parse(s: &str) -> Fault {
        match s.rsplit_once('#') {
            Some((step, n)) if n.parse::<usize>().is_ok_and(|n| n > 0) => {
                Fault { step: step.to_string(), nth: n.parse().unwrap_or(1) }
            }
            _ => Fault { step: s.to_string(), nth: 1 },
        }
    }
}

/// The panic payload of an in-process fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected(pub String);

thread_local! {
    static ARMED: RefCell<Option<(Fault, usize)>> = const { RefCell::new(None) };
}

static PROCESS_HITS: AtomicUsize = AtomicUsize::new(0);

/// Arms `fault` for this thread (replacing any armed one); `None` disarms.
pub fn inject(fault: Option<Fault>) {
    ARMED.with(|a| *a.borrow_mut() = fault.map(|f| (f, 0)));
}

/// A step that a crash may interrupt.
pub fn point(step: &str) {
    let hit = ARMED.with(|a| {
        let mut a = a.borrow_mut();
        match a.as_mut() {
            Some((f, seen)) if f.step == step => {
                *seen += 1;
                *seen == f.nth
            }
            _ => false,
        }
    });
    if hit {
        inject(None);
        std::panic::panic_any(Injected(step.to_string()));
    }
    if let Ok(spec) = std::env::var(ENV) {
        let f = Fault::parse(&spec);
        if f.step == step && PROCESS_HITS.fetch_add(1, Ordering::SeqCst) + 1 == f.nth {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert_eq!(Fault::parse("switch:link"), Fault { step: "switch:link".into(), nth: 1 });
        assert_eq!(Fault::parse("switch:link#2"), Fault { step: "switch:link".into(), nth: 2 });
        assert_eq!(Fault::parse("x#0"), Fault { step: "x#0".into(), nth: 1 });
    }

    #[test]
    fn in_process_fault_fires_on_the_nth_hit_only() {
        inject(Some(Fault::parse("a#2")));
        point("b");
        point("a");
        let r = std::panic::catch_unwind(|| point("a"));
        let payload = r.unwrap_err();
        assert_eq!(payload.downcast_ref::<Injected>(), Some(&Injected("a".into())));
        point("a"); // disarmed after firing
    }
}
