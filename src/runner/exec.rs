//! A process in a running container: libcontainer's tenant builder joins the container's
//! namespaces and cgroup, drops capabilities and sets no_new_privs; [`InContainer`] then loads
//! the container's seccomp filter (the tenant builder does not carry `linux.seccomp` over, so a
//! command would otherwise escape the profile) and, for health checks, unblocks signals (the
//! runner blocks them all) and starts a process group of its own so that a timeout can kill the
//! check's whole tree. Used by `hoist run` and by the runner's health checks.

use std::os::fd::OwnedFd;
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxSeccomp, Spec};

#[derive(Clone)]
struct InContainer {
    profile: Option<LinuxSeccomp>,
    /// Unblock every signal and become a process group leader before the exec.
    own_group: bool,
}

impl Executor for InContainer {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if self.own_group {
            let _ = nix::sys::signal::SigSet::all().thread_unblock();
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
        }
        if let Some(profile) = &self.profile {
            libcontainer::seccomp::initialize_seccomp(profile)
                .map_err(|e| ExecutorError::Other(format!("seccomp profile: {e}")))?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// How the process is started.
pub struct Exec {
    pub args: Vec<String>,
    /// The container's seccomp profile (from the config it runs with).
    pub seccomp: Option<LinuxSeccomp>,
    /// Both stdout and stderr go here (None: the caller's).
    pub output: Option<OwnedFd>,
    /// Unblock signals and lead a process group (health checks).
    pub own_group: bool,
}

/// The seccomp profile in the config at `path`, if it has one.
pub fn seccomp_of(path: &Path) -> Option<LinuxSeccomp> {
    Spec::load(path).ok()?.linux().as_ref()?.seccomp().clone()
}

/// Starts `exec` in container `name` (state under `state_root/containers`); returns its pid,
/// a child of the caller, to be waited for.
pub fn spawn(state_root: &Path, name: &str, exec: Exec) -> Result<Pid, String> {
    let mut b = ContainerBuilder::new(name.to_string(), SyscallType::default())
        .with_root_path(state_root.join("containers"))
        .map_err(|e| e.to_string())?
        .with_executor(InContainer { profile: exec.seccomp, own_group: exec.own_group });
    if let Some(out) = exec.output {
        let err = out.try_clone().map_err(|e| e.to_string())?;
        b = b.with_stdout(out).with_stderr(err);
    }
    b.as_tenant().with_container_args(exec.args).with_detach(false).build().map_err(|e| format!("exec: {e}"))
}
