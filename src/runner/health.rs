//! Health checks, run by the runner itself: no timers, no transient units.
//!
//! With a check ([`crate::health::HealthCheck`], from the bundle's `health.json`) the runner
//! supervises with `poll` on a signalfd (signals are blocked, as without a check) and the
//! running check's output pipe, and:
//! - runs the check in the container ([`super::exec`]: its namespaces, cgroup and seccomp
//!   filter), in a process group of its own, with at most 4 KiB of output kept; a check still
//!   running at its timeout has its whole group killed (SIGKILL) and counts as failed;
//! - until the first pass, checks every `startInterval` and sends `EXTEND_TIMEOUT_USEC` so that a
//!   slow start does not hit `TimeoutStartSec`; failures inside the start period do not count;
//! - sends `READY=1` after the first passing check, then checks every `interval`; each pass
//!   pings `WATCHDOG=1` when the unit has `WatchdogSec=`;
//! - keeps `STATUS=` up to date (`healthy`, `starting: …`, `unhealthy (N failures): OUTPUT`) and
//!   writes the state to `<state>/health/<name>.json` for `hoist status`;
//! - after `retries` counted failures in a row: before READY the start fails (the container is
//!   stopped, exit 1); after READY `onFailure` decides: `none` reports, `kill` stops the container
//!   (SIGTERM, SIGKILL 10 s later) and exits 1, `stop` does the same with exit 78
//!   ([`STOP_EXIT`], which a unit lists in `RestartPreventExitStatus=` to stay down).
//!
//! The state file: `{"status": "starting"|"healthy"|"unhealthy", "failingStreak": N,
//! "lastCheck": UNIX-SECONDS, "lastExit": CODE|null, "lastOutput": TEXT, "command": TEXT}`.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill, killpg};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxSeccomp;
use serde::{Deserialize, Serialize};

use super::{Outcome, exec, log, notify};
use crate::health::{HealthCheck, OnFailure};

/// The exit status of a runner whose container was stopped by `onFailure: stop`.
pub const STOP_EXIT: i32 = 78;
/// The exit status when the container was stopped for being unhealthy (`kill`, or a start
/// that never became healthy).
pub const UNHEALTHY_EXIT: i32 = 1;
const KEEP_OUTPUT: usize = 4096;
const KILL_AFTER: Duration = Duration::from_secs(10);

/// Where the health state of container `name` is written.
pub fn state_file(state_root: &Path, name: &str) -> PathBuf {
    state_root.join("health").join(format!("{name}.json"))
}

/// A running container's health, as the runner last wrote it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthState {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: u32,
    /// Unix seconds of the last check.
    pub last_check: Option<u64>,
    pub last_exit: Option<i32>,
    pub last_output: String,
    pub command: String,
}

/// The health state of running container `name` (None: no check, or not running).
pub fn read_state(state_root: &Path, name: &str) -> Option<HealthState> {
    if crate::deploy::name::validate(name).is_err() {
        return None;
    }
    serde_json::from_slice(&std::fs::read(state_file(state_root, name)).ok()?).ok()
}

struct Running {
    pid: Pid,
    started: Instant,
    out: std::fs::File,
    buf: Vec<u8>,
    timed_out: bool,
}

impl Running {
    fn drain(&mut self) {
        let mut chunk = [0u8; 1024];
        while let Ok(n) = self.out.read(&mut chunk) {
            if n == 0 {
                break;
            }
            let room = KEEP_OUTPUT.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&chunk[..n.min(room)]);
        }
    }
}

struct Monitor<'a> {
    name: &'a str,
    hc: &'a HealthCheck,
    state_root: &'a Path,
    seccomp: Option<LinuxSeccomp>,
    init: Pid,
    start: Instant,
    ready: bool,
    streak: u32,
    last_exit: Option<i32>,
    last_output: String,
    last_check: Option<u64>,
    next: Instant,
    running: Option<Running>,
    /// Stopping the container: SIGKILL at this time, then exit with this status.
    stopping: Option<(Instant, i32)>,
    watchdog: bool,
}

/// Supervises `init` with health checks until it exits; returns how to end.
pub(super) fn supervise(
    name: &str,
    init: Pid,
    mask: &SigSet,
    hc: &HealthCheck,
    state_root: &Path,
    seccomp: Option<LinuxSeccomp>,
) -> nix::Result<Outcome> {
    let sfd = SignalFd::with_flags(mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
    let now = Instant::now();
    let mut m = Monitor {
        name,
        hc,
        state_root,
        seccomp,
        init,
        start: now,
        ready: false,
        streak: 0,
        last_exit: None,
        last_output: String::new(),
        last_check: None,
        next: now,
        running: None,
        stopping: None,
        watchdog: std::env::var_os("WATCHDOG_USEC").is_some(),
    };
    m.status("starting", &format!("starting: waiting for the first passing health check ({})", hc.command()));
    let result = m.run(&sfd);
    if let Some(r) = &m.running {
        let _ = killpg(r.pid, Signal::SIGKILL);
    }
    let _ = std::fs::remove_file(state_file(state_root, name));
    result
}

impl Monitor<'_> {
    fn run(&mut self, sfd: &SignalFd) -> nix::Result<Outcome> {
        loop {
            if let Some(outcome) = self.reap()? {
                return Ok(match self.stopping {
                    Some((_, code)) => Outcome::Exited(code),
                    None => outcome,
                });
            }
            let now = Instant::now();
            if let Some(r) = &mut self.running
                && !r.timed_out
                && now >= r.started + self.hc.timeout()
            {
                r.timed_out = true;
                let _ = killpg(r.pid, Signal::SIGKILL);
            }
            if let Some((at, _)) = self.stopping
                && now >= at
            {
                let _ = kill(self.init, Signal::SIGKILL);
            }
            if self.running.is_none() && self.stopping.is_none() && now >= self.next {
                self.spawn_check();
            }

            // Sleep until a signal, check output, or the next deadline.
            let mut wake: Vec<Instant> = Vec::new();
            match &self.running {
                Some(r) if !r.timed_out => wake.push(r.started + self.hc.timeout()),
                Some(_) => {}
                None if self.stopping.is_none() => wake.push(self.next),
                None => {}
            }
            if let Some((at, _)) = self.stopping {
                wake.push(at);
            }
            let timeout = match wake.iter().min() {
                Some(at) => {
                    let ms = at.saturating_duration_since(Instant::now()).as_millis().min(60_000) as u16;
                    PollTimeout::from(ms.max(1))
                }
                None => PollTimeout::NONE,
            };
            let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
            if let Some(r) = &self.running {
                fds.push(PollFd::new(r.out.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
            drop(fds);
            if let Some(r) = &mut self.running {
                r.drain();
            }
            while let Ok(Some(info)) = sfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD | Signal::SIGURG | Signal::SIGWINCH) => {}
                    Ok(sig) => match kill(self.init, sig) {
                        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                        Err(e) => return Err(e),
                    },
                    Err(_) => {}
                }
            }
        }
    }

    /// Reaps children: the container's init (its outcome) and the check.
    fn reap(&mut self) -> nix::Result<Option<Outcome>> {
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return Ok(None),
                Ok(s) => s,
                Err(e) => return Err(e),
            };
            let (pid, code) = match status {
                WaitStatus::Exited(pid, code) => (pid, Ok(code)),
                WaitStatus::Signaled(pid, sig, _) => (pid, Err(sig)),
                _ => continue,
            };
            if pid == self.init {
                return Ok(Some(match code {
                    Ok(c) => Outcome::Exited(c),
                    Err(sig) => Outcome::Signaled(sig),
                }));
            }
            if self.running.as_ref().is_some_and(|r| r.pid == pid)
                && let Some(mut r) = self.running.take()
            {
                r.drain();
                self.judge(r, code);
            }
        }
    }

    fn spawn_check(&mut self) {
        let pipe = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK) {
            Ok(p) => p,
            Err(e) => return self.failed_to_start(format!("pipe: {e}")),
        };
        let (read, write): (OwnedFd, OwnedFd) = pipe;
        let exec = exec::Exec {
            args: self.hc.test.clone(),
            seccomp: self.seccomp.clone(),
            output: Some(write),
            own_group: true,
        };
        match exec::spawn(self.state_root, self.name, exec) {
            Ok(pid) => {
                self.running =
                    Some(Running { pid, started: Instant::now(), out: read.into(), buf: Vec::new(), timed_out: false })
            }
            Err(e) => self.failed_to_start(e),
        }
    }

    fn failed_to_start(&mut self, why: String) {
        self.judge_result(false, None, format!("the check could not be started: {why}"));
    }

    fn judge(&mut self, r: Running, code: Result<i32, Signal>) {
        let text = String::from_utf8_lossy(&r.buf).trim().to_string();
        let (pass, exit, text) = match code {
            _ if r.timed_out => (false, None, format!("timed out after {:?}; {text}", self.hc.timeout())),
            Ok(0) => (true, Some(0), text),
            Ok(c) => (false, Some(c), text),
            Err(sig) => (false, None, format!("killed by {sig}; {text}")),
        };
        self.judge_result(pass, exit, text);
    }

    fn judge_result(&mut self, pass: bool, exit: Option<i32>, output: String) {
        let now = Instant::now();
        self.last_exit = exit;
        self.last_output = output.chars().take(KEEP_OUTPUT).collect();
        self.last_check = SystemTime::now().duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
        let first_line = self.last_output.lines().next().unwrap_or("").to_string();
        if pass {
            let was = (self.ready, self.streak);
            self.streak = 0;
            let mut msg = String::from("STATUS=healthy");
            if !self.ready {
                self.ready = true;
                msg = format!("READY=1\n{msg}");
                log(self.name, "health check passed: healthy");
            } else if was.1 > 0 {
                log(self.name, "health check passed again: healthy");
            }
            if self.watchdog {
                msg.push_str("\nWATCHDOG=1");
            }
            self.send(&msg);
            self.write_state("healthy");
        } else {
            let in_start_period = !self.ready && now < self.start + self.hc.start_period();
            if !in_start_period {
                self.streak += 1;
            }
            let exit_text = exit.map(|c| format!("exit {c}")).unwrap_or_else(|| "no exit status".into());
            log(self.name, &format!("health check failed ({exit_text}): {first_line}"));
            if self.streak >= self.hc.retries {
                if !self.ready {
                    log(
                        self.name,
                        &format!(
                            "never became healthy ({} failures after the start period): stopping: {first_line}",
                            self.streak
                        ),
                    );
                    self.stop(UNHEALTHY_EXIT);
                } else {
                    match self.hc.on_failure {
                        OnFailure::None => {}
                        OnFailure::Kill => {
                            log(self.name, &format!("unhealthy ({} failures): stopping the container", self.streak));
                            self.stop(UNHEALTHY_EXIT);
                        }
                        OnFailure::Stop => {
                            log(self.name, &format!("unhealthy ({} failures): stopping the unit", self.streak));
                            self.stop(STOP_EXIT);
                        }
                    }
                }
            }
            // Unhealthy only at `retries` failures in a row, as Docker counts.
            let (state, status) = if self.streak >= self.hc.retries {
                ("unhealthy", format!("unhealthy ({} failures): {first_line}", self.streak))
            } else if self.ready {
                ("healthy", format!("healthy ({} of {} failures): {first_line}", self.streak, self.hc.retries))
            } else {
                ("starting", format!("starting: health check failed: {first_line}"))
            };
            self.send(&format!("STATUS={status}"));
            self.write_state(state);
        }
        let wait = if self.ready { self.hc.interval() } else { self.hc.start_interval() };
        self.next = now + wait;
        if !self.ready && self.stopping.is_none() {
            // Room for the next check and its timeout, with slack.
            let usec = (wait + self.hc.timeout() + Duration::from_secs(5)).as_micros();
            self.send(&format!("EXTEND_TIMEOUT_USEC={usec}"));
        }
    }

    fn stop(&mut self, code: i32) {
        let _ = kill(self.init, Signal::SIGTERM);
        self.stopping = Some((Instant::now() + KILL_AFTER, code));
    }

    fn status(&mut self, state: &str, text: &str) {
        self.send(&format!("STATUS={text}"));
        if !self.ready {
            let usec = (self.hc.start_interval() + self.hc.timeout() + Duration::from_secs(5)).as_micros();
            self.send(&format!("EXTEND_TIMEOUT_USEC={usec}"));
        }
        self.write_state(state);
    }

    fn send(&self, msg: &str) {
        if let Err(e) = notify::notify(msg) {
            log(self.name, &format!("cannot notify systemd: {e}"));
        }
    }

    fn write_state(&self, status: &str) {
        let state = HealthState {
            status: status.to_string(),
            failing_streak: self.streak,
            last_check: self.last_check,
            last_exit: self.last_exit,
            last_output: self.last_output.clone(),
            command: self.hc.command(),
        };
        let path = state_file(self.state_root, self.name);
        let Ok(data) = serde_json::to_vec(&state) else { return };
        let _ = crate::fsutil::ensure_dir(path.parent().unwrap_or(self.state_root), 0o700);
        if let Err(e) = crate::fsutil::write_replace(&path, &data, 0o600) {
            log(self.name, &format!("health state: {e}"));
        }
    }
}
