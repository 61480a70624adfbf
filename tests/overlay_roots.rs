//! Tier 3: container roots are overlayfs stacks made by the runner, on a real (throwaway) systemd.
//! A container that may remount its root read-write (CAP_SYS_ADMIN, as atomic's kubelet and
//! docker images have) rewrites a binary: the layer store, a checkout and another container of the
//! same image are unchanged. Nothing is mounted outside the runner's namespace, before or after.
//! A deployment made as the previous release made them (a complete hard-link checkout,
//! `HOIST_ROOTFS=checkout`) runs under the same private overlay.

mod common;

use common::testbed::Testbed;
use common::*;
use hoist::oci_build::{ImageBuilder, LayerBuilder};
use serde_json::json;

/// hello's busybox layer, and a layer with `/usr/bin/tool` and two scripts: `attack` remounts `/`
/// read-write and rewrites the tool, `look` prints it. Every directory has its own entry, so
/// overlayfs stacks the layers as they are.
fn rooter(tb: &Testbed) -> &'static str {
    let mut l = LayerBuilder::new();
    l.dir("exports", 0o755).dir("usr", 0o755).dir("usr/bin", 0o755);
    l.file("usr/bin/tool", b"original\n", 0o755);
    l.file(
        "usr/bin/attack",
        b"mount -o remount,rw / && echo remounted\necho pwned > /usr/bin/tool && echo \"rewrote: $(cat /usr/bin/tool)\"\ntrap 'exit 0' TERM\nsleep 1000 & wait\n",
        0o755,
    );
    l.file("usr/bin/look", b"echo \"tool says: $(cat /usr/bin/tool)\"\ntrap 'exit 0' TERM\nsleep 1000 & wait\n", 0o755);
    let config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
            "args": ["/bin/sh", "/usr/bin/$ACTION"], "env": ["PATH=/bin:/usr/bin"],
            "capabilities": {
                "bounding": ["CAP_SYS_ADMIN"], "effective": ["CAP_SYS_ADMIN"], "permitted": ["CAP_SYS_ADMIN"]
            }
        },
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
    });
    l.file("exports/config.json.template", config.to_string().as_bytes(), 0o644);
    l.file("exports/manifest.json", br#"{"defaultValues": {"ACTION": "look"}}"#, 0o644);
    l.file("exports/service.template", b"[Unit]\nDescription=rooter $NAME\n[Service]\nExecStart=$EXEC_START\n", 0o644);
    let base = hoist::oci_build::spec::build(&repo().join("images/hello/image.json")).unwrap();
    let built = ImageBuilder::new(vec![base.layers[0].clone(), l.finish()], json!({})).build();
    std::fs::write(tb.dir.join("state/rooter.tar"), built.oci_archive("latest")).unwrap();
    "/var/lib/hoist/rooter.tar"
}

fn says(tb: &Testbed, unit: &str, line: &str) {
    wait_for(&format!("{unit} to say {line:?}"), 15, || tb.journal(unit).contains(line).then_some(()));
}

#[test]
fn writes_never_reach_shared_files() {
    if !common::privileged("overlay_roots::writes_never_reach_shared_files") {
        return;
    }
    let tb = Testbed::up("unified");
    tb.ok(&format!("hoist -q pull oci-archive:{}", rooter(&tb)));
    // An overlay of the layer trees, and (as the previous release deployed) a hard-link checkout.
    tb.ok("hoist -q install --now --name attacker --set ACTION=attack rooter");
    tb.ok("HOIST_ROOTFS=checkout hoist -q install --now --name attacker2 --set ACTION=attack rooter");
    for unit in ["attacker", "attacker2"] {
        says(&tb, unit, "remounted");
        says(&tb, unit, "rewrote: pwned");
    }
    // Each attacker sees its own write; nobody else does.
    assert_eq!(tb.ok("hoist run attacker cat /usr/bin/tool"), "pwned\n");
    tb.ok("hoist -q install --now --name victim rooter");
    says(&tb, "victim", "tool says: original");
    assert_eq!(tb.ok("cat /var/lib/hoist/layers/*/rootfs/usr/bin/tool"), "original\n", "the layer store");
    assert_eq!(
        tb.ok("cat /var/lib/hoist/containers/attacker2/current/rootfs/usr/bin/tool"),
        "original\n",
        "the hard-link checkout (its inode is the layer store's)"
    );

    // The overlay deployment holds only what hoist reads; its config names the layer trees.
    tb.ok("test -d /var/lib/hoist/containers/attacker/current/rootfs/exports");
    tb.ok("test ! -e /var/lib/hoist/containers/attacker/current/rootfs/usr");
    let cfg: serde_json::Value =
        serde_json::from_str(&tb.ok("cat /var/lib/hoist/containers/attacker/current/config.json")).unwrap();
    let lowers: Vec<String> =
        serde_json::from_str(cfg["annotations"]["io.hoist.rootfs.lower"].as_str().unwrap()).unwrap();
    assert_eq!(lowers.len(), 2, "{lowers:?}");
    assert!(lowers.iter().all(|l| l.starts_with("/var/lib/hoist/layers/") && l.ends_with("/rootfs")), "{lowers:?}");
    tb.ok("test -x /var/lib/hoist/containers/attacker2/current/rootfs/bin/busybox");
    let cfg2 = tb.ok("cat /var/lib/hoist/containers/attacker2/current/config.json");
    assert!(!cfg2.contains("io.hoist.rootfs.lower"), "{cfg2}");

    // Each container's root is its overlay stack, mounted in namespaces of its own only.
    for unit in ["attacker", "attacker2", "victim"] {
        let pid = tb.prop(unit, "MainPID");
        let mounts = tb.ok(&format!("cat /proc/{pid}/mountinfo"));
        assert!(
            mounts.lines().any(|l| l.split(' ').nth(4) == Some("/") && l.contains(" - overlay hoist-rootfs ")),
            "{unit}: its root is not the overlay stack:\n{mounts}"
        );
    }
    tb.ok("! grep -E 'hoist-rootfs|/var/lib/hoist/containers' /proc/self/mountinfo");

    // A stopped container's one-shot run stacks the same root.
    tb.ok("systemctl stop attacker attacker2 victim");
    assert_eq!(tb.ok("hoist run attacker cat /usr/bin/tool"), "original\n", "a fresh upper layer");
    assert_eq!(tb.ok("hoist run attacker2 cat /usr/bin/tool"), "original\n");
    tb.ok("! grep -E 'hoist-rootfs|/var/lib/hoist/containers' /proc/self/mountinfo");
    for name in ["attacker", "attacker2", "victim"] {
        tb.ok(&format!("hoist -q uninstall {name}"));
    }
}
