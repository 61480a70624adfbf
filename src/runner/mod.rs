//! The runner: `hoist internal run-bundle`, the main process of every generated unit.
//!
//! One OCI bundle, in the foreground, with libcontainer. The process stays single-threaded and
//! never starts a tokio runtime (libcontainer clones and runs Rust code in the children).
//! Steps:
//! 1. remove what a crashed previous run left (`<state>/containers/<name>`);
//! 2. write the runtime copy of the spec (`<state>/bundles/<name>/config.json`): `root.path`
//!    made absolute, `linux.cgroupsPath` pointing inside the unit (see [`cgroup`]); refuse
//!    `process.terminal` (a service has no console);
//! 3. enter a mount namespace of its own and mount the container's root there: an overlayfs
//!    stack of the image's layers (or of the slot's checkout) with a throwaway upper layer
//!    ([`crate::rootfs`]); it is gone when the runner is;
//! 4. build the container (its init waits for `start`), then block every asynchronous signal;
//! 5. start it and tell systemd `READY=1` (`Type=notify`: the unit is active once the
//!    container's process runs) — or, with a health check in the bundle's `health.json`, once
//!    the first check passes ([`health`]). Without a health check, in a `Type=forking` unit, it
//!    hands the container over instead: it writes the init's pid to the unit's pid file and
//!    exits, so nothing stays resident ([`hand_over`]); steps 6–8 are then systemd's (stop
//!    signal, reaping, the unit's result) and the next start's (step 1);
//! 6. forward every signal to the container's init, reap children until the init exits;
//! 7. delete the container (kills stragglers, removes its cgroup and state);
//! 8. exit with the container's exit code, or die of the same signal it died of, so systemd
//!    judges the unit as it would judge the payload (SIGTERM after `systemctl stop` = clean).
//!
//! The container inherits the runner's stdout/stderr: the unit's journal stream.

pub mod cgroup;
pub mod exec;
mod health;
pub use health::{HealthState, read_state as health_state};
pub mod notify;

use std::fs;
use std::path::{Path, PathBuf};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::error::LibcontainerError;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::fsutil::{self, IoContext, PathError};

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("{name}: bundle {}: {reason}", bundle.display())]
    Spec { name: String, bundle: PathBuf, reason: String },
    #[error("{name}: {step}: {source}")]
    Container { name: String, step: &'static str, source: Box<LibcontainerError> },
    #[error("{name}: {step}: {source}")]
    Sys { name: String, step: &'static str, source: nix::Error },
    #[error("{name}: {source}")]
    Io { name: String, source: PathError },
}

/// What the runner was asked to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Container id: the unit / container name.
    pub name: String,
    /// Directory holding `config.json` (and, usually, `rootfs/`).
    pub bundle: PathBuf,
    /// Runtime state directory (`/run/hoist`).
    pub state_root: PathBuf,
    /// The unit's main process (`hoist internal run-bundle`): it may hand the container over to
    /// systemd ([`hand_over`]). A foreground run (`hoist run`) never does.
    pub unit_main: bool,
}

/// How the container ended — or that the runner handed it over to systemd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signaled(Signal),
    /// The runner handed the container over to systemd ([`hand_over`]); it exits 0 and leaves
    /// the container running.
    HandedOver,
}

/// In a unit rendered for it (`HOIST_HAND_OVER=<pid file>`, `Type=forking`: no health check to
/// run): writes the container's init pid to the unit's `PIDFile=` and lets the runner exit, so
/// that nothing stays resident beside the container. systemd reads the pid file once the runner
/// is gone — the init is reparented to the service manager by then, so it supervises it as its
/// own child: it reaps it, judges the unit by its exit status as the runner did, and sends it
/// the stop signal (`KillMode=mixed`). State the runner leaves (`/run/hoist/containers/NAME`)
/// is removed at the next start, and a stopped container is recognised by its init being gone.
fn hand_over(name: &str, init: Pid) -> bool {
    let Some(pid_file) = std::env::var_os(crate::deploy::unit::HAND_OVER_ENV) else { return false };
    let pid_file = PathBuf::from(pid_file);
    match fsutil::write_replace(&pid_file, format!("{init}\n").as_bytes(), 0o644) {
        Ok(()) => true,
        Err(e) => {
            log(name, &format!("staying beside the container: {e}"));
            false
        }
    }
}

fn log(name: &str, msg: &str) {
    eprintln!("hoist-runner[{name}]: {msg}");
}

/// Runs the bundle to completion.
pub fn run(opts: &RunOptions) -> Result<Outcome, RunnerError> {
    let name = opts.name.as_str();
    if let Err(e) = crate::deploy::name::validate(name) {
        return Err(RunnerError::Spec { name: name.to_string(), bundle: opts.bundle.clone(), reason: e.to_string() });
    }
    let io = |source| RunnerError::Io { name: name.to_string(), source };
    let containers = opts.state_root.join("containers");
    fsutil::ensure_dir(&containers, 0o700).map_err(io)?;
    clean_stale(name, &containers.join(name));

    let check = crate::health::HealthCheck::load(&opts.bundle).map_err(|e| RunnerError::Spec {
        name: name.to_string(),
        bundle: opts.bundle.clone(),
        reason: e.to_string(),
    })?;
    let (runtime_bundle, place, root) = prepare_bundle(opts)?;
    // The root: an overlayfs stack in a mount namespace of the runner's own (`rootfs` module).
    // A slot naming its layers cannot run without it; a complete checkout could, but would
    // share its inodes with the layer store, so that is only a warning (no overlayfs here).
    if let Err(e) = crate::rootfs::isolate(&root.path, root.lowers.as_deref()) {
        if root.lowers.is_some() {
            return Err(RunnerError::Spec {
                name: name.to_string(),
                bundle: opts.bundle.clone(),
                reason: format!("cannot mount its root: {e}"),
            });
        }
        log(name, &format!("running on the checkout itself: cannot stack a private overlay on it: {e}"));
    }
    let lc = |step| move |source| RunnerError::Container { name: name.to_string(), step, source: Box::new(source) };
    let mut container = ContainerBuilder::new(name.to_string(), SyscallType::default())
        .with_root_path(&containers)
        .map_err(lc("state root"))?
        .validate_id()
        .map_err(lc("container name"))?
        .as_init(&runtime_bundle)
        .with_systemd(false)
        .with_detach(false)
        .build()
        .map_err(lc("create"))?;

    // The init exists (waiting for start): from now on signals are ours to forward. Blocking
    // earlier would have handed the mask down to the container's processes.
    let mut mask = SigSet::all();
    for s in [Signal::SIGSEGV, Signal::SIGBUS, Signal::SIGILL, Signal::SIGFPE, Signal::SIGTRAP, Signal::SIGSYS] {
        mask.remove(s);
    }
    let sys = |step| move |source| RunnerError::Sys { name: name.to_string(), step, source };
    mask.thread_block().map_err(sys("block signals"))?;

    let result = (|| {
        container.start().map_err(lc("start"))?;
        let init = container.pid().ok_or_else(|| RunnerError::Spec {
            name: name.to_string(),
            bundle: opts.bundle.clone(),
            reason: "container has no init process".into(),
        })?;
        if let Some(hc) = &check {
            let seccomp = exec::seccomp_of(&runtime_bundle.join("config.json"));
            return health::supervise(name, init, &mask, hc, &opts.state_root, seccomp).map(Some).map_err(sys("wait"));
        }
        if opts.unit_main && hand_over(name, init) {
            return Ok(None);
        }
        if let Err(e) = notify::notify(&format!("READY=1\nSTATUS=container {name} running (pid {init})")) {
            log(name, &format!("cannot notify systemd: {e}"));
        }
        supervise(init, &mask).map(Some).map_err(sys("wait"))
    })();
    let result = match result {
        // systemd supervises the container's init itself now: nothing of ours stays.
        Ok(None) => return Ok(Outcome::HandedOver),
        Ok(Some(outcome)) => Ok(outcome),
        Err(e) => Err(e),
    };

    let _ = notify::notify("STOPPING=1");
    if let Err(e) = container.delete(true) {
        log(name, &format!("cleanup: {e}"));
    }
    cgroup::remove_created_parents(&place);
    let _ = fs::remove_dir_all(opts.state_root.join("bundles").join(name));
    let _ = mask.thread_unblock();
    result
}

/// The container name rule (`deploy::name`), checked before the name is used in any path.
fn valid_name(name: &str) -> bool {
    crate::deploy::name::validate(name).is_ok()
}

/// Whether the runner has container `id` running under `state_root`: its state is there and its
/// init lives (a runner killed outright leaves the state of a container that is gone).
pub fn is_running(state_root: &Path, id: &str) -> bool {
    let dir = state_root.join("containers").join(id);
    valid_name(id)
        && dir.join("state.json").exists()
        && Container::load(dir).is_ok_and(|c| c.status() == libcontainer::container::ContainerStatus::Running)
}

/// The runner's copy of a running container's config (what it really runs).
pub fn running_config(state_root: &Path, id: &str) -> PathBuf {
    state_root.join("bundles").join(id).join("config.json")
}

/// Forwards signals to `init` and reaps children until `init` exits.
fn supervise(init: Pid, mask: &SigSet) -> nix::Result<Outcome> {
    loop {
        // Reap first: the init may have exited before the mask was in place.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == init => return Ok(Outcome::Exited(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == init => return Ok(Outcome::Signaled(sig)),
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(e) => return Err(e),
            }
        }
        match mask.wait()? {
            Signal::SIGCHLD => {}
            Signal::SIGURG | Signal::SIGWINCH => {}
            sig => match nix::sys::signal::kill(init, sig) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => return Err(e),
            },
        }
    }
}

/// Removes what the runner of container `name` left under `state_root` once it is not running
/// (a handed-over container that ended leaves its libcontainer state and runtime config):
/// `uninstall` calls it so nothing of the container stays in `/run/hoist`.
pub fn forget(state_root: &Path, name: &str) {
    if !valid_name(name) || is_running(state_root, name) {
        return;
    }
    let dir = state_root.join("containers").join(name);
    if let Ok(mut c) = Container::load(dir.clone()) {
        let _ = c.delete(true);
    }
    let _ = fsutil::remove_any(&dir);
    let _ = fsutil::remove_any(&state_root.join("bundles").join(name));
}

/// Removes the state a crashed earlier run left behind (killing its processes if any remain).
fn clean_stale(name: &str, dir: &Path) {
    if fs::symlink_metadata(dir).is_err() {
        return;
    }
    log(name, "removing the state of an earlier run that did not finish");
    match Container::load(dir.to_path_buf()) {
        Ok(mut c) => {
            if let Err(e) = c.delete(true) {
                log(name, &format!("earlier run: {e}"));
            }
        }
        Err(e) => log(name, &format!("earlier run: {e}")),
    }
    let _ = fsutil::remove_any(dir);
}

/// A bundle's root: its directory and, for an overlay root, the lower layers.
struct Root {
    path: PathBuf,
    lowers: Option<Vec<PathBuf>>,
}

/// Writes the runtime copy of the bundle's spec and returns its directory.
fn prepare_bundle(opts: &RunOptions) -> Result<(PathBuf, cgroup::Placement, Root), RunnerError> {
    let name = opts.name.as_str();
    let bad = |reason: String| RunnerError::Spec { name: name.to_string(), bundle: opts.bundle.clone(), reason };
    let config = opts.bundle.join("config.json");
    let mut spec = Spec::load(&config).map_err(|e| bad(format!("config.json: {e}")))?;
    if spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false) {
        return Err(bad("process.terminal is true; a system container has no console".into()));
    }
    let mut root = spec.root().clone().ok_or_else(|| bad("config.json has no root".into()))?;
    if root.path().is_relative() {
        let abs = fs::canonicalize(&opts.bundle).at(&opts.bundle).map_err(|e| bad(e.to_string()))?.join(root.path());
        root.set_path(abs);
    }
    if !root.path().is_dir() {
        return Err(bad(format!("root {} is not a directory", root.path().display())));
    }
    let lowers = crate::rootfs::lowers_of(spec.annotations().as_ref()).map_err(|e| bad(e.to_string()))?;
    let root_info = Root { path: root.path().clone(), lowers };
    spec.set_root(Some(root));

    let unified = cgroup::is_unified();
    let own = cgroup::current().unwrap_or_else(|| "/".into());
    let under_systemd = std::env::var_os("INVOCATION_ID").is_some();
    let place = cgroup::placement(&own, name, under_systemd, unified);
    if let Some(sup) = &place.supervisor {
        cgroup::enter_v2(sup).map_err(|e| bad(format!("cgroup {}: {e}", sup.display())))?;
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_cgroups_path(Some(place.payload.clone()));
    spec.set_linux(Some(linux));

    let dir = opts.state_root.join("bundles").join(name);
    fsutil::ensure_dir(&dir, 0o700).map_err(|source| RunnerError::Io { name: name.to_string(), source })?;
    let data = serde_json::to_vec_pretty(&spec).map_err(|e| bad(e.to_string()))?;
    fsutil::write_replace(&dir.join("config.json"), &data, 0o600)
        .map_err(|source| RunnerError::Io { name: name.to_string(), source })?;
    Ok((dir, place, root_info))
}

/// Ends this process the way the container ended.
pub fn exit_like(outcome: Outcome) -> ! {
    match outcome {
        Outcome::HandedOver => std::process::exit(0),
        Outcome::Exited(code) => std::process::exit(code),
        Outcome::Signaled(sig) => {
            // Signals that would dump core are reported as 128+n instead of dumping the runner.
            let core = matches!(
                sig,
                Signal::SIGQUIT
                    | Signal::SIGABRT
                    | Signal::SIGSEGV
                    | Signal::SIGBUS
                    | Signal::SIGILL
                    | Signal::SIGFPE
                    | Signal::SIGSYS
                    | Signal::SIGTRAP
                    | Signal::SIGXCPU
                    | Signal::SIGXFSZ
            );
            if !core {
                // Default dispositions are in place (the runner installs no handlers; SIGPIPE
                // was reset at start) and the mask is lifted: this kills us with `sig`.
                let _ = nix::sys::signal::raise(sig);
            }
            std::process::exit(128 + sig as i32)
        }
    }
}
