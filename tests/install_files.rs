//! Tier 1: `make install` into a DESTDIR puts the binary, the update timer (its ExecStart
//! pointing at the installed binary), the shell completions and one man page per command where
//! Debian expects them.

mod common;

use std::path::Path;
use std::process::Command;

fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn gunzip(p: &Path) -> String {
    let out = Command::new("gzip").arg("-dc").arg(p).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn make_install_puts_everything_where_debian_expects_it() {
    let dest = tempfile::tempdir().unwrap();
    let out = Command::new("make")
        .current_dir(common::repo())
        .args(["--no-print-directory", "install", "PREFIX=/usr"])
        .arg(format!("DESTDIR={}", dest.path().display()))
        .arg(format!("INSTALL_BIN={}", env!("CARGO_BIN_EXE_hoist")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let man: Vec<String> = [
        "",
        "-apply",
        "-completions",
        "-fleet",
        "-fleet-release",
        "-fleet-status",
        "-images",
        "-images-build",
        "-images-export",
        "-images-info",
        "-images-list",
        "-images-prune",
        "-images-rm",
        "-install",
        "-list",
        "-logs",
        "-mount",
        "-pull",
        "-push",
        "-rollback",
        "-run",
        "-status",
        "-trust",
        "-trust-show",
        "-umount",
        "-uninstall",
        "-update",
    ]
    .iter()
    .map(|v| format!("usr/share/man/man1/hoist{v}.1.gz"))
    .collect();
    let mut want = vec![
        "usr/bin/hoist".to_string(),
        "usr/lib/systemd/system/hoist-update.service".into(),
        "usr/lib/systemd/system/hoist-update.timer".into(),
        "usr/share/bash-completion/completions/hoist".into(),
        "usr/share/fish/vendor_completions.d/hoist.fish".into(),
        "usr/share/zsh/vendor-completions/_hoist".into(),
    ];
    want.extend(man);
    want.sort();
    assert_eq!(files(dest.path()), want);
    assert!(dest.path().join("etc/hoist/containers").is_dir());

    let d = dest.path();
    let service = std::fs::read_to_string(d.join("usr/lib/systemd/system/hoist-update.service")).unwrap();
    assert!(service.lines().any(|l| l == "ExecStart=/usr/bin/hoist update --all"), "{service}");
    assert!(service.lines().any(|l| l == "Type=oneshot"), "{service}");
    let timer = std::fs::read_to_string(d.join("usr/lib/systemd/system/hoist-update.timer")).unwrap();
    for line in ["OnCalendar=daily", "RandomizedDelaySec=1h", "Persistent=true", "WantedBy=timers.target"] {
        assert!(timer.lines().any(|l| l == line), "{line} in {timer}");
    }
    let bash = std::fs::read_to_string(d.join("usr/share/bash-completion/completions/hoist")).unwrap();
    assert!(bash.contains("hoist__subcmd__apply") && bash.contains("--ignore-fleet-lock"), "bash completion");
    let fish = std::fs::read_to_string(d.join("usr/share/fish/vendor_completions.d/hoist.fish")).unwrap();
    assert!(fish.contains("complete -c hoist"), "fish completion");
    let zsh = std::fs::read_to_string(d.join("usr/share/zsh/vendor-completions/_hoist")).unwrap();
    assert!(zsh.starts_with("#compdef hoist"), "zsh completion");
    let page = gunzip(&d.join("usr/share/man/man1/hoist-apply.1.gz"));
    assert!(page.contains(".TH hoist-apply 1") && page.contains("hoist apply \\-\\-check \\-\\-diff"), "{page}");
    let page = gunzip(&d.join("usr/share/man/man1/hoist-fleet-release.1.gz"));
    assert!(page.contains("hoist\\-fleet\\-release"), "{page}");
}
