//! `hoist run NAME [CMD…]`: a command in the running container (joining its namespaces with
//! libcontainer's tenant builder), or, when it is stopped, a one-shot run of its bundle with
//! CMD as the process. Runs in the foreground with the caller's stdio; no async runtime may
//! exist while libcontainer forks.

use std::fs;
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{WaitStatus, waitpid};

use super::{OpsError, Result, current_slot, valid_name};
use crate::fsutil;
use crate::layout::Layout;
use crate::runner::{self, DEFAULT_STATE_ROOT, Outcome, RunOptions};

pub fn run(layout: &Layout, name: &str, cmd: &[String]) -> Result<Outcome> {
    if !valid_name(name) {
        return Err(OpsError::BadName(name.to_string()));
    }
    let slot = current_slot(layout, name).ok_or_else(|| OpsError::NoSuch(name.to_string()))?;
    let state_root = Path::new(DEFAULT_STATE_ROOT);
    let fail = |reason: String| OpsError::Failed { name: name.to_string(), reason };
    if state_root.join("containers").join(name).join("state.json").exists() {
        // Running: exec into it.
        let args: Vec<String> = if cmd.is_empty() { vec!["/bin/sh".into()] } else { cmd.to_vec() };
        let pid = ContainerBuilder::new(name.to_string(), SyscallType::default())
            .with_root_path(state_root.join("containers"))
            .map_err(|e| fail(e.to_string()))?
            .as_tenant()
            .with_container_args(args)
            .with_detach(false)
            .build()
            .map_err(|e| fail(format!("exec: {e}")))?;
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
        let config = slot.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&fs::read(&config).map_err(|e| fail(format!("{}: {e}", config.display())))?)
                .map_err(|e| fail(e.to_string()))?;
        if !cmd.is_empty() {
            spec["process"]["args"] = serde_json::json!(cmd);
        }
        spec["root"]["path"] = serde_json::json!(slot.join("rootfs"));
        fsutil::write_atomic(&tmp.join("config.json"), spec.to_string().as_bytes(), 0o600)?;
        runner::run(&RunOptions {
            name: format!("{name}-run-{}", std::process::id()),
            bundle: tmp.clone(),
            state_root: state_root.into(),
        })
        .map_err(|e| fail(e.to_string()))
    })();
    let _ = fsutil::remove_any(&tmp);
    result
}
