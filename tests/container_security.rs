//! Tier 3: the defaults of a generated config (image without `/exports`) hold inside a running
//! container on a real systemd (the testbed), in hybrid and unified cgroup guests: podman's
//! capabilities, no device nodes, the seccomp profile (namespaces, mounts, setns refused),
//! masked paths; `--security-opt seccomp=unconfined` lifts exactly the seccomp part.

mod common;

use std::fs;
use std::path::PathBuf;

use common::testbed::Testbed;
use common::*;
use hoist::oci_build::ImageBuilder;
use serde_json::json;

/// A busybox image without `/exports` whose process stays up; returns its path in the guest.
fn plain_image(tb: &Testbed) -> PathBuf {
    let base = hoist::oci_build::spec::build(&repo().join("images/hello/image.json")).unwrap();
    let built = ImageBuilder::new(
        vec![base.layers[0].clone()],
        json!({"Cmd": ["/bin/sh", "-c", "trap 'exit 0' TERM; echo plain up; sleep 1000000 & wait"], "Env": ["PATH=/bin"]}),
    )
    .build();
    fs::write(tb.dir.join("state/plain.tar"), built.oci_archive("latest")).unwrap();
    PathBuf::from("/var/lib/hoist/plain.tar")
}

/// Installs and starts `name` from the plain image with extra install options; waits until
/// `hoist run` reaches it.
fn start(tb: &Testbed, name: &str, opts: &str) {
    let img = plain_image(tb);
    tb.ok(&format!("hoist -q install --name {name} {opts} --now oci-archive:{}", img.display()));
    assert_eq!(tb.prop(name, "ActiveState"), "active");
    wait_for("the container to run", 10, || tb.journal(name).contains("plain up").then_some(()));
}

/// Runs a shell snippet in the running container; returns its stdout and stderr, interleaved.
fn inside(tb: &Testbed, name: &str, script: &str) -> String {
    let script = format!("exec 2>&1; {script}");
    let o = tb.script().args(["exec", "hoist", "run", name, "/bin/sh", "-c", &script]).output().unwrap();
    assert!(o.stderr.is_empty(), "hoist run: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The checks that hold with the default profile.
fn defaults(cgroup: &str) {
    let tb = Testbed::up(cgroup);
    start(&tb, "sec", "");
    // The unit: device controller closed, the container's cgroup below the unit's.
    assert_eq!(tb.prop("sec", "DevicePolicy"), "closed");
    assert_eq!(tb.prop("sec", "Delegate"), "yes");
    if cgroup == "hybrid" {
        // cgroup v1: the unit's and the container's device lists, no "a *:* rwm".
        let unit = tb.ok("cat /sys/fs/cgroup/devices/system.slice/sec.service/devices.list");
        let payload = tb.ok("cat /sys/fs/cgroup/devices/system.slice/sec.service/payload/devices.list");
        assert!(!unit.contains("a *:* rwm") && !payload.contains("a *:* rwm"), "{unit}\n{payload}");
        assert!(payload.contains("c 1:3 rwm") && payload.contains("c 136:* rwm"), "{payload}");
    }

    // Podman's 11 capabilities, nothing more; no new privileges; the seccomp filter.
    assert_eq!(
        inside(&tb, "sec", "grep -E '^(CapEff|CapBnd|CapInh|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status"),
        "CapInh:\t0000000000000000\nCapEff:\t00000000800405fb\nCapBnd:\t00000000800405fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n"
    );
    // No CAP_MKNOD.
    assert_eq!(
        inside(&tb, "sec", "mknod /dev/xk c 1 11; echo rc=$?"),
        "mknod: /dev/xk: Operation not permitted\nrc=1\n"
    );
    // Namespaces, mounts, setns: refused.
    assert_eq!(
        inside(&tb, "sec", "unshare -U true; echo rc=$?"),
        "unshare: unshare(0x10000000): Operation not permitted\nrc=1\n"
    );
    assert_eq!(
        inside(&tb, "sec", "unshare -m true; echo rc=$?"),
        "unshare: unshare(0x20000): Operation not permitted\nrc=1\n"
    );
    assert_eq!(
        inside(&tb, "sec", "mkdir -p /tmp/x; mount -t tmpfs x /tmp/x; echo rc=$?"),
        "mount: permission denied (are you root?)\nrc=1\n"
    );
    assert_eq!(
        inside(&tb, "sec", "nsenter -t 1 -u true; echo rc=$?"),
        "nsenter: setns(): can't reassociate to namespace 'uts': Operation not permitted\nrc=1\n"
    );
    assert_eq!(
        inside(&tb, "sec", "swapoff /dev/null; echo rc=$?"),
        "swapoff: /dev/null: Operation not permitted\nrc=1\n"
    );
    // Masked and read-only paths (this kernel has no /proc/kcore; /proc/keys and
    // /proc/timer_list are not empty on the host).
    assert_eq!(
        inside(
            &tb,
            "sec",
            "test -e /proc/kcore && wc -c < /proc/kcore; wc -c < /proc/keys; wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; ls -A /sys/dev/block | wc -l"
        ),
        if std::path::Path::new("/proc/kcore").exists() { "0\n0\n0\n0\n0\n" } else { "0\n0\n0\n0\n" }
    );
    assert_eq!(
        inside(&tb, "sec", "echo x > /proc/sys/kernel/hostname; echo rc=$?"),
        "/bin/sh: can't create /proc/sys/kernel/hostname: Read-only file system\nrc=1\n"
    );
    // Sized tmpfs mounts.
    let mounts = inside(&tb, "sec", "grep -E ' /(run|tmp|dev|dev/shm) ' /proc/self/mounts | cut -d' ' -f2,4");
    for (dest, size) in
        [("/dev", "size=65536k"), ("/dev/shm", "size=65536k"), ("/run", "size=65536k"), ("/tmp", "size=262144k")]
    {
        let line =
            mounts.lines().find(|l| l.split(' ').next() == Some(dest)).unwrap_or_else(|| panic!("{dest}: {mounts}"));
        assert!(line.contains(size) && line.contains("nosuid"), "{line}");
    }
    // A one-shot run of the stopped container gets the same filter.
    tb.ok("systemctl stop sec");
    assert_eq!(tb.prop("sec", "Result"), "success");
    assert_eq!(
        tb.ok("hoist run sec /bin/sh -c 'grep ^Seccomp: /proc/self/status; unshare -U true 2>&1; echo rc=$?'"),
        "Seccomp:\t2\nunshare: unshare(0x10000000): Operation not permitted\nrc=1\n"
    );
}

#[test]
fn generated_defaults_hybrid_cgroups() {
    if !common::privileged("container_security::generated_defaults_hybrid_cgroups") {
        return;
    }
    defaults("hybrid");
}

#[test]
fn generated_defaults_unified_cgroups() {
    if !common::privileged("container_security::generated_defaults_unified_cgroups") {
        return;
    }
    defaults("unified");
}

/// seccomp=unconfined: the same container without the filter. A user namespace needs no
/// capability, so only seccomp stood in its way; a mount namespace still needs CAP_SYS_ADMIN.
#[test]
fn seccomp_unconfined_and_options() {
    if !common::privileged("container_security::seccomp_unconfined_and_options") {
        return;
    }
    let tb = Testbed::up("hybrid");
    start(&tb, "open", "--security-opt seccomp=unconfined");
    assert_eq!(inside(&tb, "open", "grep ^Seccomp: /proc/self/status"), "Seccomp:\t0\n");
    assert_eq!(inside(&tb, "open", "unshare -U true; echo rc=$?"), "rc=0\n");
    assert_eq!(
        inside(&tb, "open", "unshare -m true; echo rc=$?"),
        "unshare: unshare(0x20000): Operation not permitted\nrc=1\n"
    );
    assert!(
        tb.ok("cat /var/lib/hoist/containers/open/current/info.json").contains("\"kind\": \"unconfined\""),
        "recorded for updates"
    );
    // hoist update keeps the recorded choice.
    tb.ok("hoist -q update open --set FORCE=1");
    assert_eq!(tb.ok("readlink /var/lib/hoist/containers/open/current").trim(), "1");
    wait_for("the updated container", 10, || {
        (inside(&tb, "open", "grep ^Seccomp: /proc/self/status") == "Seccomp:\t0\n").then_some(())
    });

    // A profile file is used as given: here everything allowed but mkdir.
    tb.ok(r#"echo '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}' > /var/lib/hoist/p.json"#);
    start(&tb, "prof", "--security-opt seccomp=/var/lib/hoist/p.json");
    assert_eq!(
        inside(&tb, "prof", "mkdir /tmp/d; echo rc=$?; unshare -U true; echo rc=$?"),
        "mkdir: can't create directory '/tmp/d': Operation not permitted\nrc=1\nrc=0\n"
    );

    // Bad options: unknown = usage error naming it; bad JSON = failure naming the file.
    let img = plain_image(&tb);
    let o = tb.sh(&format!("hoist install --name x --security-opt label=disable oci-archive:{}", img.display()));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"label=disable\""), "{}", String::from_utf8_lossy(&o.stderr));
    tb.ok("echo '{nope' > /var/lib/hoist/bad.json");
    let o = tb.sh(&format!(
        "hoist install --name x --security-opt seccomp=/var/lib/hoist/bad.json oci-archive:{}",
        img.display()
    ));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/var/lib/hoist/bad.json") && err.contains("not valid JSON"), "{err}");
    tb.ok("test ! -e /var/lib/hoist/containers/x");
}
