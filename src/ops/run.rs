//! `hoist run NAME [CMD…]`: a command in the running container ([`runner::exec`]), or, when it
//! is stopped, a one-shot run of its bundle with CMD as the process. Runs in the foreground with the caller's stdio; no async runtime may
//! exist while libcontainer forks.

use std::fs;
use std::path::Path;

use nix::sys::wait::{WaitStatus, waitpid};
use oci_spec::runtime::LinuxSeccomp;

use super::{OpsError, Result};
use crate::deploy::container::{Container, Slot};
use crate::fsutil;
use crate::layout::Layout;
use crate::runner::{self, Outcome, RunOptions, exec};

/// The seccomp profile of the running container: the runner's copy of its config, else the
/// deployment's.
fn running_seccomp(state_root: &Path, name: &str, slot: &Slot) -> Option<LinuxSeccomp> {
    if runner::running_config(state_root, name).exists() {
        exec::seccomp_of(&runner::running_config(state_root, name))
    } else {
        exec::seccomp_of(&slot.config())
    }
}

pub fn run(layout: &Layout, name: &str, cmd: &[String]) -> Result<Outcome> {
    let c = Container::open(layout, name)?;
    let slot = c.current().ok_or_else(|| OpsError::NoSuch(name.to_string()))?;
    let state_root = layout.run_root();
    let fail = |reason: String| OpsError::Failed { name: name.to_string(), reason };
    if runner::is_running(state_root, name) {
        // Running: exec into it.
        let args: Vec<String> = if cmd.is_empty() { vec!["/bin/sh".into()] } else { cmd.to_vec() };
        let seccomp = running_seccomp(state_root, name, &slot);
        let pid = exec::spawn(state_root, name, exec::Exec { args, seccomp, output: None, own_group: false })
            .map_err(fail)?;
        return match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => Ok(Outcome::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => Ok(Outcome::Signaled(sig)),
            Ok(other) => Err(fail(format!("exec: unexpected status {other:?}"))),
            Err(e) => Err(fail(format!("exec: wait: {e}"))),
        };
    }
    // Stopped: a one-shot container from the same bundle, under another id.
    let tmp = layout.tmp().join(format!("run-{name}-{}", std::process::id()));
    fsutil::ensure_dir(&tmp, 0o700)?;
    let result = (|| {
        let config = slot.config();
        let mut spec: serde_json::Value =
            serde_json::from_slice(&fs::read(&config).map_err(|e| fail(format!("{}: {e}", config.display())))?)
                .map_err(|e| fail(e.to_string()))?;
        if !cmd.is_empty() {
            spec["process"]["args"] = serde_json::json!(cmd);
        }
        spec["root"]["path"] = serde_json::json!(slot.rootfs());
        fsutil::write_atomic(&tmp.join("config.json"), spec.to_string().as_bytes(), 0o600)?;
        runner::run(&RunOptions {
            // Its own id (a name of the same rule, never a container's: pids have no letters).
            name: format!("hoist-run-{}", std::process::id()),
            bundle: tmp.clone(),
            state_root: state_root.into(),
            unit_main: false,
        })
        .map_err(|e| fail(e.to_string()))
    })();
    let _ = fsutil::remove_any(&tmp);
    result
}
