//! `hoist run NAME [CMD…]`: a command in the running container (joining its namespaces with
//! libcontainer's tenant builder), or, when it is stopped, a one-shot run of its bundle with
//! CMD as the process. Runs in the foreground with the caller's stdio; no async runtime may
//! exist while libcontainer forks.

use std::fs;
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::wait::{WaitStatus, waitpid};
use oci_spec::runtime::{LinuxSeccomp, Spec};

use super::{OpsError, Result};
use crate::deploy::container::{Container, Slot};
use crate::fsutil;
use crate::layout::Layout;
use crate::runner::{self, Outcome, RunOptions};

/// The seccomp profile of the running container: the runner's copy of its config, else the
/// deployment's.
fn running_seccomp(state_root: &Path, name: &str, slot: &Slot) -> Option<LinuxSeccomp> {
    let spec = Spec::load(runner::running_config(state_root, name)).or_else(|_| Spec::load(slot.config())).ok()?;
    spec.linux().as_ref()?.seccomp().clone()
}

/// Execs the process like libcontainer's default executor, after loading the container's
/// seccomp filter: libcontainer's tenant builder does not carry `linux.seccomp` over to what it
/// execs in a running container, so without this `hoist run` would escape the profile. Runs in
/// the tenant's init, joined to the container's namespaces and cgroup, capabilities dropped and
/// no_new_privs set.
#[derive(Clone)]
struct SeccompExecutor {
    profile: Option<LinuxSeccomp>,
}

impl Executor for SeccompExecutor {
    fn exec(&self, spec: &Spec) -> std::result::Result<(), ExecutorError> {
        if let Some(profile) = &self.profile {
            libcontainer::seccomp::initialize_seccomp(profile)
                .map_err(|e| ExecutorError::Other(format!("seccomp profile: {e}")))?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> std::result::Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
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
        let pid = ContainerBuilder::new(name.to_string(), SyscallType::default())
            .with_root_path(state_root.join("containers"))
            .map_err(|e| fail(e.to_string()))?
            .with_executor(SeccompExecutor { profile: running_seccomp(state_root, name, &slot) })
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
        })
        .map_err(|e| fail(e.to_string()))
    })();
    let _ = fsutil::remove_any(&tmp);
    result
}
