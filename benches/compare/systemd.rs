//! The cases that need systemd, on a testbed (`tests/testbed/testbed`, sharing this host's network
//! so the bench registry is reachable): install-to-active of etcd (hoist vs podman pull + create +
//! generated unit + start) and rollback time for the small and the big image.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{Contender, Figure, compare, figures, must};
use crate::setup::{Env, Registry};

struct Testbed {
    dir: PathBuf,
    script: PathBuf,
    hoist: PathBuf,
}

impl Testbed {
    fn up(env: &Env) -> Testbed {
        let tb = Testbed {
            dir: PathBuf::from("/var/tmp/hoist-bench-testbed"),
            script: env.repo.join("tests/testbed/testbed"),
            hoist: env.hoist.clone(),
        };
        let _ = tb.cmd().arg("down").output();
        let mut up = tb.cmd();
        up.arg("up");
        must(up);
        tb
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.script);
        c.env("HOIST_TESTBED_DIR", &self.dir).env("HOIST_BIN", &self.hoist).env("TESTBED_NET", "host");
        c
    }

    /// A shell script run inside.
    fn sh(&self, script: &str) -> Command {
        let mut c = self.cmd();
        c.args(["exec", "sh", "-c", script]);
        c
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = self.cmd().arg("down").output();
    }
}

const ETCD_ENV: &[&str] = &[
    "ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:2379",
    "ETCD_ADVERTISE_CLIENT_URLS=http://127.0.0.1:2379",
    "ETCD_LISTEN_PEER_URLS=http://127.0.0.1:2380",
    "ETCD_INITIAL_ADVERTISE_PEER_URLS=http://127.0.0.1:2380",
];

pub fn cases(env: &Env, reg: &Registry, install: bool, rollback: bool) -> Vec<Figure> {
    let tb = Testbed::up(env);
    let mut out = Vec::new();
    if install {
        out.extend(install_to_active(env, &tb, reg));
    }
    if rollback {
        out.extend(rollbacks(env, &tb, reg));
    }
    out
}

/// Case 3: from nothing stored to an active unit, etcd pulled from the registry.
fn install_to_active(env: &Env, tb: &Testbed, reg: &Registry) -> Vec<Figure> {
    let image = reg.image("etcd");
    // podman's storage on this host's filesystem (the testbed's root is an overlay, which
    // cannot hold overlay layers), as hoist's /var/lib/hoist is.
    let graph = env.fresh("testbed-podman");
    must(tb.sh(&format!(
        "mkdir -p /etc/containers && cp '{}' /etc/containers/containers.conf && \
         printf '[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"/run/containers/storage\"\n' \
         >/etc/containers/storage.conf",
        env.podman_conf.display(),
        graph.display()
    )));
    // Before every run: neither etcd runs, nothing is stored.
    let clean = format!(
        "hoist -q uninstall --purge etcd >/dev/null 2>&1; hoist -q images rm '{image}' >/dev/null 2>&1; \
         hoist -q images prune >/dev/null; systemctl stop etcd-podman >/dev/null 2>&1; \
         rm -f /etc/systemd/system/etcd-podman.service; systemctl daemon-reload; \
         podman rm -f -v etcd >/dev/null 2>&1; podman rmi -af >/dev/null 2>&1; true"
    );
    let envs: Vec<String> = ETCD_ENV.iter().map(|e| format!("-e {e}")).collect();
    let podman = format!(
        "set -e; podman pull -q --tls-verify=false {image} >/dev/null; \
         podman create -q --name etcd --network=host {} {image} >/dev/null; \
         podman generate systemd --new --name etcd >/etc/systemd/system/etcd-podman.service; \
         systemctl daemon-reload; systemctl start etcd-podman",
        envs.join(" ")
    );
    let contenders = vec![
        Contender::new(
            "hoist install --now",
            |_| must(tb.sh(&clean)),
            |_| vec![tb.sh(&format!("hoist -q install --now --name etcd --tls-verify=false docker://{image}"))],
        ),
        Contender::new(
            "podman pull + create + generate systemd + start",
            |_| must(tb.sh(&clean)),
            |_| vec![tb.sh(&podman)],
        ),
    ];
    let mut figs = compare("3. install to active, etcd (testbed)", env.rounds, contenders);
    figs.extend(resident(tb, &clean, &image, &podman));
    must(tb.sh(&clean));
    figs
}

/// Case 6 under systemd: private memory (USS) of what stays beside a running etcd — for hoist,
/// its runner (gone once it handed the container over; resident with a health check); for
/// podman, conmon.
fn resident(tb: &Testbed, clean: &str, image: &str, podman: &str) -> Vec<Figure> {
    let uss_kb = |pids: &str| {
        format!(
            "t=0; for p in {pids}; do u=$(awk '/^Private_/ {{s+=$2}} END {{print s+0}}' /proc/$p/smaps_rollup); t=$((t+u)); done; echo $t"
        )
    };
    // What of hoist runs beside the container: its runner, if it stayed.
    let beside = uss_kb("$(pgrep -f '[i]nternal run-bundle --name etcd ')");
    let measure = |setup: &str, script: &str| -> f64 {
        must(tb.sh(clean));
        must(tb.sh(setup));
        let o = tb.sh(&format!("sleep 2; {script}")).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().unwrap_or(f64::NAN) / 1024.0
    };
    let hoist = measure(&format!("hoist -q install --now --name etcd --tls-verify=false docker://{image}"), &beside);
    let hoist_hc = measure(
        &format!("hoist -q install --now --name etcd --health-cmd true --tls-verify=false docker://{image}"),
        &beside,
    );
    let conmon = measure(podman, &uss_kb("$(pgrep -x conmon)"));
    figures(
        "6. resident beside a running etcd under systemd (USS, private MB)",
        "MB",
        vec![
            "hoist (runner handed the container over)".into(),
            "hoist with a health check (runner stays)".into(),
            "podman: conmon".into(),
        ],
        vec![vec![hoist], vec![hoist_hc], vec![conmon]],
    )
}

/// Case 5: `hoist rollback` of a running container, small image vs big image (a pointer switch
/// and a restart, so the size of the image should not matter).
fn rollbacks(env: &Env, tb: &Testbed, reg: &Registry) -> Vec<Figure> {
    for (name, image) in [("rb-big", reg.image("big")), ("rb-small", reg.image("small"))] {
        must(tb.sh(&format!(
            "hoist -q uninstall --purge {name} >/dev/null 2>&1; \
             hoist -q install --now --name {name} --tls-verify=false docker://{image} && \
             hoist -q update --grace 1 --set BENCH_ROUND=1 {name}"
        )));
    }
    let contenders = ["rb-big", "rb-small"]
        .into_iter()
        .map(|name| {
            let label = format!("hoist rollback, {} image", name.trim_start_matches("rb-"));
            Contender::new(&label, |_| {}, move |_| vec![tb.sh(&format!("hoist -q rollback {name}"))])
        })
        .collect();
    let mut figs = compare("5. rollback, running (testbed)", env.rounds * 2, contenders);
    if let Some(f) = figs.get_mut(1) {
        f.note = Some("ratio column: big / small".into());
    }
    must(tb.sh("hoist -q uninstall --purge rb-big rb-small"));
    figs
}
