//! The host outside the state root: where units, tmpfiles snippets and host files go, and the
//! host tools hoist runs (`systemd-tmpfiles`, `journalctl`). Tests point every part of it at
//! temporary directories and stand-in tools, so the lifecycle runs without root or systemd.
//!
//! ```text
//! <unit_dir>/NAME.service        the container's unit (default /etc/systemd/system)
//! <tmpfiles_dir>/NAME.conf       its tmpfiles.d snippet (default /etc/tmpfiles.d)
//! <root>/…                       host files from /exports/hostfs (default /)
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct Host {
    pub unit_dir: PathBuf,
    pub tmpfiles_dir: PathBuf,
    pub root: PathBuf,
    /// `systemd-tmpfiles`.
    pub tmpfiles_cmd: PathBuf,
    /// `journalctl`.
    pub journalctl_cmd: PathBuf,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            unit_dir: "/etc/systemd/system".into(),
            tmpfiles_dir: "/etc/tmpfiles.d".into(),
            root: "/".into(),
            tmpfiles_cmd: "systemd-tmpfiles".into(),
            journalctl_cmd: "journalctl".into(),
        }
    }
}

impl Host {
    /// Everything under `dir` (`dir/etc/systemd/system`, `dir/etc/tmpfiles.d`, host root `dir`),
    /// with the given stand-ins for the tools.
    pub fn under(dir: &Path, tmpfiles_cmd: &Path, journalctl_cmd: &Path) -> Self {
        Host {
            unit_dir: dir.join("etc/systemd/system"),
            tmpfiles_dir: dir.join("etc/tmpfiles.d"),
            root: dir.to_path_buf(),
            tmpfiles_cmd: tmpfiles_cmd.into(),
            journalctl_cmd: journalctl_cmd.into(),
        }
    }

    pub fn unit_file(&self, unit: &str) -> PathBuf {
        self.unit_dir.join(unit)
    }

    pub fn tmpfiles_file(&self, name: &str) -> PathBuf {
        self.tmpfiles_dir.join(format!("{name}.conf"))
    }

    /// `systemd-tmpfiles <action> <conf>` (`--create`, `--remove`); the error is its stderr.
    pub fn tmpfiles(&self, action: &str, conf: &Path) -> Result<(), String> {
        let cmd = self.tmpfiles_cmd.display();
        match Command::new(&self.tmpfiles_cmd).arg(action).arg(conf).output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!("{cmd} {action} {}: {}", conf.display(), String::from_utf8_lossy(&o.stderr).trim())),
            Err(e) => Err(format!("{cmd}: {e}")),
        }
    }

    /// The last `n` journal lines of `unit` (message text only); empty when unavailable.
    pub fn journal_tail(&self, unit: &str, n: usize) -> Vec<String> {
        Command::new(&self.journalctl_cmd)
            .args(["-u", unit, "--no-pager", "-o", "cat", "-n", &n.to_string()])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// `journalctl -u unit` with extra arguments, for `hoist logs` to exec.
    pub fn journalctl(&self, unit: &str) -> Command {
        let mut c = Command::new(&self.journalctl_cmd);
        c.arg("-u").arg(unit).arg("--no-pager");
        c
    }
}
