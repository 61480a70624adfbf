//! Where the container's cgroup goes.
//!
//! Under systemd the runner is the main process of a `Delegate=yes` unit, so it owns the unit's
//! cgroup subtree. The container goes into `<unit cgroup>/payload` and, on cgroup v2, the runner
//! first moves itself into `<unit cgroup>/supervisor` (v2 forbids processes in a cgroup whose
//! controllers are delegated to children). Both stay inside the unit, so `systemctl stop`,
//! `KillMode=mixed` and `journalctl -u` (which maps log lines to units by cgroup) all see the
//! container. Run by hand (no unit), the container gets `<own cgroup>/hoist-<name>`.
//! The path is absolute, which makes libcontainer use its cgroupfs driver on v1 and v2 alike.

use std::fs;
use std::path::PathBuf;

/// Cgroup v2 is mounted alone at /sys/fs/cgroup.
pub fn is_unified() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Our cgroup path in the hierarchy systemd tracks processes with: `0::` on v2, `name=systemd`
/// on v1 (falling back to the v2 line of a hybrid setup).
pub fn own_cgroup(proc_self_cgroup: &str, unified: bool) -> Option<String> {
    let line = |pred: &dyn Fn(&str) -> bool| {
        proc_self_cgroup.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrl, path) = (parts.next()?, parts.next()?, parts.next()?);
            pred(ctrl).then(|| path.to_string())
        })
    };
    if unified { line(&|c| c.is_empty()) } else { line(&|c| c == "name=systemd").or_else(|| line(&|c| c.is_empty())) }
}

/// The payload cgroup for container `name`, and (v2 under systemd) the supervisor cgroup the
/// runner must move into first.
#[derive(Debug, PartialEq, Eq)]
pub struct Placement {
    pub payload: PathBuf,
    pub supervisor: Option<PathBuf>,
}

pub fn placement(own: &str, name: &str, under_systemd: bool, unified: bool) -> Placement {
    // Outside our cgroup namespace's root (e.g. entered with nsenter) the path reads "/..":
    // start from the namespace root then.
    let usable = own.starts_with('/') && !own.split('/').any(|c| c == "..");
    let base = PathBuf::from(if usable { own } else { "/" });
    if under_systemd {
        Placement { payload: base.join("payload"), supervisor: unified.then(|| base.join("supervisor")) }
    } else {
        Placement { payload: base.join(format!("hoist-{name}")), supervisor: None }
    }
}

/// Moves this process into the v2 cgroup `rel` (created if needed).
pub fn enter_v2(rel: &std::path::Path) -> std::io::Result<()> {
    let dir = PathBuf::from("/sys/fs/cgroup").join(rel.strip_prefix("/").unwrap_or(rel));
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
}

/// On cgroup v1, libcontainer creates the payload's parent (the unit's cgroup) in hierarchies
/// systemd does not manage for the unit (cpuset, freezer, …) and leaves it behind when it
/// removes the payload. Remove those now-empty directories; in the hierarchies systemd manages the
/// runner still sits in the unit's cgroup, so rmdir fails there (EBUSY) and systemd removes it
/// when the unit stops.
pub fn remove_created_parents(place: &Placement) {
    if is_unified() {
        return;
    }
    let Some(parent) = place.payload.parent().filter(|p| *p != std::path::Path::new("/")) else { return };
    let rel = parent.strip_prefix("/").unwrap_or(parent);
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else { return };
    for h in hierarchies.flatten() {
        let dir = h.path().join(rel);
        if h.file_type().is_ok_and(|t| t.is_dir()) && dir.is_dir() {
            let _ = fs::remove_dir(&dir);
        }
    }
}

/// The cgroup of the unit we run in, read from /proc/self/cgroup.
pub fn current() -> Option<String> {
    own_cgroup(&fs::read_to_string("/proc/self/cgroup").ok()?, is_unified())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str =
        "12:memory:/process_api/7\n1:name=systemd:/system.slice/etcd.service\n0::/system.slice/etcd.service\n";
    const UNIFIED: &str = "0::/system.slice/hello.service\n";

    #[test]
    fn reads_own_cgroup() {
        assert_eq!(own_cgroup(HYBRID, false).as_deref(), Some("/system.slice/etcd.service"));
        assert_eq!(own_cgroup(UNIFIED, true).as_deref(), Some("/system.slice/hello.service"));
        assert_eq!(own_cgroup("3:cpu:/\n", false), None);
    }

    #[test]
    fn placements() {
        assert_eq!(
            placement("/system.slice/hello.service", "hello", true, true),
            Placement {
                payload: "/system.slice/hello.service/payload".into(),
                supervisor: Some("/system.slice/hello.service/supervisor".into())
            }
        );
        assert_eq!(placement("/system.slice/hello.service", "hello", true, false).supervisor, None);
        assert_eq!(placement("/", "t1", false, false).payload, PathBuf::from("/hoist-t1"));
        assert_eq!(placement("/..", "t1", false, false).payload, PathBuf::from("/hoist-t1"));
    }
}
