//! The testbed (tests/testbed/testbed) as a test fixture: a booted throwaway systemd, torn
//! down on drop.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

static N: AtomicUsize = AtomicUsize::new(0);

/// A booted testbed; torn down on drop.
pub struct Testbed {
    pub dir: PathBuf,
}

impl Testbed {
    pub fn up(cgroup: &str) -> Testbed {
        let dir = PathBuf::from(format!(
            "/var/tmp/hoist-test-tb-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let tb = Testbed { dir };
        let o = tb.script().arg("up").env("TESTBED_CGROUP", cgroup).output().unwrap();
        assert!(
            o.status.success(),
            "testbed up: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        tb
    }

    pub fn script(&self) -> Command {
        let mut c = Command::new(repo().join("tests/testbed/testbed"));
        c.env("HOIST_TESTBED_DIR", &self.dir).env("HOIST_BIN", HOIST).current_dir(repo());
        c
    }

    pub fn sh(&self, script: &str) -> Output {
        self.script().args(["exec", "sh", "-c", script]).output().unwrap()
    }

    /// Runs a shell script inside; insists on success; returns stdout.
    pub fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            o.status.success(),
            "{script}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn prop(&self, unit: &str, prop: &str) -> String {
        self.ok(&format!("systemctl show -P {prop} {unit}")).trim().to_string()
    }

    /// What the hello fixture service answers on 127.0.0.1:8081, polled while it starts
    /// (up to 15 s; `what` names the wait in the failure).
    pub fn hello_says(&self, what: &str) -> String {
        super::wait_for(what, 15, || {
            let o = self.sh("busybox nc 127.0.0.1 8081 </dev/null");
            (o.status.success() && !o.stdout.is_empty()).then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
        })
    }

    pub fn journal(&self, unit: &str) -> String {
        self.ok(&format!("journalctl -u {unit} --no-pager -o cat"))
    }

    /// A busybox bundle inside the guest at /var/lib/hoist/bundles/NAME, and a unit running it.
    pub fn unit(&self, name: &str, script: &str) {
        let hello = hello();
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/sh", "-c", script], "env": ["PATH=/bin"], "cwd": "/"},
            "root": {"path": "rootfs", "readonly": true},
            "hostname": name,
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}
            ],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]}
        });
        self.ok(&format!(
            r#"set -e
            hoist -q pull oci-archive:{hello}
            b=/var/lib/hoist/bundles/{name}
            mkdir -p $b/rootfs
            hoist -q mount hello $b/rootfs
            cat > $b/config.json <<'EOC'
{config}
EOC
            cat > /etc/systemd/system/{name}.service <<'EOU'
[Unit]
Description=test container {name}
[Service]
Type=notify
NotifyAccess=main
ExecStart=/usr/local/bin/hoist internal run-bundle --name %N --bundle /var/lib/hoist/bundles/%N
KillMode=mixed
Delegate=yes
SyslogIdentifier=%N
EOU
            systemctl daemon-reload"#,
            hello = hello.display()
        ));
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = self.script().arg("down").output();
    }
}
