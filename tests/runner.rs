//! Tier 2: the runner (`hoist internal run-bundle`) on real busybox bundles, as root, without
//! systemd: exit codes, signals, output, stale state, seccomp, and that nothing leaks.

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::*;
use serde_json::json;

struct Run {
    _dir: tempfile::TempDir,
    bundle: PathBuf,
    state: PathBuf,
    name: String,
}

fn setup(args: &[&str], extra: serde_json::Value) -> Run {
    let dir = tempfile::Builder::new().prefix("hoist-runner-").tempdir_in(repo().join("target")).unwrap();
    let bundle = bundle(dir.path(), args, extra);
    let state = dir.path().join("run");
    let name = format!(
        "rt{}-{}",
        std::process::id(),
        dir.path().file_name().unwrap().to_string_lossy().rsplit('-').next().unwrap().to_lowercase()
    );
    Run { _dir: dir, bundle, state, name }
}

impl Run {
    fn cmd(&self) -> Command {
        let mut c = Command::new(HOIST);
        c.args(["internal", "run-bundle", "--name", &self.name, "--bundle"])
            .arg(&self.bundle)
            .arg("--state-root")
            .arg(&self.state)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("INVOCATION_ID")
            .stdin(Stdio::null());
        c
    }

    fn output(&self) -> Output {
        self.cmd().output().unwrap()
    }

    fn spawn(&self) -> Child {
        self.cmd().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    /// Nothing of the container is left: state dir, runtime bundle, cgroups, processes.
    fn assert_clean(&self) {
        assert!(!self.state.join("containers").join(&self.name).exists(), "state dir left");
        assert!(!self.state.join("bundles").join(&self.name).exists(), "runtime bundle left");
        let cg = format!("hoist-{}", self.name);
        for hier in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            assert!(!hier.path().join(&cg).exists(), "cgroup {} left in {}", cg, hier.path().display());
        }
        let marker = self.bundle.to_string_lossy().into_owned();
        let procs = Command::new("pgrep").args(["-f", &marker]).output().unwrap();
        assert!(procs.stdout.is_empty(), "processes left: {}", String::from_utf8_lossy(&procs.stdout));
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn exit_code_and_output() {
    if !common::privileged("runner::exit_code_and_output") {
        return;
    }
    let r = setup(&["/bin/sh", "-c", "echo out-$(hostname); echo err >&2; exit 7"], json!({}));
    let o = r.output();
    assert_eq!(o.status.code(), Some(7), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout(&o), "out-c1\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("err"));
    r.assert_clean();
    let ok = setup(&["/bin/true"], json!({}));
    assert_eq!(ok.output().status.code(), Some(0));
    ok.assert_clean();
}

fn wait_line(child: &mut Child, needle: &str) {
    use std::io::BufRead;
    let out = child.stdout.as_mut().unwrap();
    let mut reader = std::io::BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "output ended before {needle:?}");
        if line.contains(needle) {
            return;
        }
    }
}

#[test]
fn signals_are_forwarded() {
    if !common::privileged("runner::signals_are_forwarded") {
        return;
    }
    let r = setup(
        &["/bin/sh", "-c", "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 1; done"],
        json!({}),
    );
    let mut child = r.spawn();
    wait_line(&mut child, "ready");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&o).contains("got TERM"));
    r.assert_clean();
}

#[test]
fn death_by_signal_is_passed_on() {
    if !common::privileged("runner::death_by_signal_is_passed_on") {
        return;
    }
    // Without a PID namespace the payload is not a PID 1, so SIGTERM's default action kills it;
    // the runner then dies of the same signal (systemd counts SIGTERM as a clean stop).
    let r = setup(
        &["/bin/sh", "-c", "echo ready; exec sleep 100"],
        json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]}}),
    );
    let mut child = r.spawn();
    // Whether the shell has exec'ed sleep yet or not, neither handles SIGTERM: the payload dies
    // of it either way.
    wait_line(&mut child, "ready");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.signal(), Some(libc_sigterm()), "status {st:?}");
    r.assert_clean();
}

fn libc_sigterm() -> i32 {
    nix::sys::signal::Signal::SIGTERM as i32
}

#[test]
fn stale_state_from_a_crashed_run_is_cleaned() {
    if !common::privileged("runner::stale_state_from_a_crashed_run_is_cleaned") {
        return;
    }
    let r = setup(&["/bin/sh", "-c", "echo fresh"], json!({}));
    let stale = r.state.join("containers").join(&r.name);
    fs::create_dir_all(&stale).unwrap();
    fs::write(stale.join("state.json"), "{garbage").unwrap();
    let o = r.output();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout(&o), "fresh\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("earlier run"));
    r.assert_clean();

    // A runner killed with SIGKILL leaves its container behind; the next run removes it.
    let r = setup(&["/bin/sh", "-c", "echo ready; exec sleep 100"], json!({}));
    let mut child = r.spawn();
    wait_line(&mut child, "ready");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(r.state.join("containers").join(&r.name).exists());
    let again = args_replaced(&r, &["/bin/sh", "-c", "echo second"]);
    let o = again.output();
    assert_eq!(stdout(&o), "second\n", "{}", String::from_utf8_lossy(&o.stderr));
    again.assert_clean();
}

fn args_replaced(r: &Run, args: &[&str]) -> Run {
    let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(r.bundle.join("config.json")).unwrap()).unwrap();
    spec["process"]["args"] = json!(args);
    fs::write(r.bundle.join("config.json"), spec.to_string()).unwrap();
    Run { _dir: tempfile::tempdir().unwrap(), bundle: r.bundle.clone(), state: r.state.clone(), name: r.name.clone() }
}

#[test]
fn seccomp_is_enforced() {
    if !common::privileged("runner::seccomp_is_enforced") {
        return;
    }
    let deny_mkdir = json!({"linux": {"seccomp": {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    }}});
    let r = setup(&["/bin/sh", "-c", "mkdir /tmp/x && echo made || echo refused"], deny_mkdir);
    let o = r.output();
    assert_eq!(stdout(&o), "refused\n", "{}", String::from_utf8_lossy(&o.stderr));
    r.assert_clean();
}

#[test]
fn bad_bundles_are_refused_clearly() {
    if !common::privileged("runner::bad_bundles_are_refused_clearly") {
        return;
    }
    let r = setup(&["/bin/true"], json!({"process": {"terminal": true}}));
    let o = r.output();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("process.terminal is true"), "{err}");
    assert!(!err.contains("panicked"));

    let missing = Path::new("/nonexistent-bundle");
    let o = Command::new(HOIST)
        .args(["internal", "run-bundle", "--name", "x", "--bundle"])
        .arg(missing)
        .arg("--state-root")
        .arg(r.state.as_os_str())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent-bundle"));

    let o = Command::new(HOIST)
        .args(["internal", "run-bundle", "--name", "../x", "--bundle"])
        .arg(&r.bundle)
        .arg("--state-root")
        .arg(r.state.as_os_str())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid container name"));
    assert!(!r.state.join("x").exists());
}
