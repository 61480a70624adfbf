//! What the bench needs before it measures: the peer tools, the three images (built locally, as
//! OCI layouts under `target/bench/images/`), a local registry holding them, and podman's
//! configuration for a machine without systemd as PID 1.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hoist::oci_build::{ImageBuilder, LayerBuilder, spec};

use crate::harness::must;

pub struct Env {
    pub repo: PathBuf,
    /// `target/bench`: scratch space, images, results.
    pub work: PathBuf,
    pub hoist: PathBuf,
    pub rounds: usize,
    /// Hybrid cgroups: crun needs the controllers list of the v2 hierarchy hidden (perf-anchors.md).
    pub hybrid: bool,
    pub podman_conf: PathBuf,
}

pub const TOOLS: &[&str] = &["podman", "skopeo", "umoci", "runc", "crun", "conmon", "docker-registry"];

impl Env {
    pub fn new() -> Env {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let work = repo.join("target/bench");
        fs::create_dir_all(work.join("runs")).unwrap();
        for t in TOOLS {
            let ok =
                Command::new("sh").arg("-c").arg(format!("command -v {t}")).output().is_ok_and(|o| o.status.success());
            assert!(ok, "{t} is missing: `make bench` installs the peers from Debian");
        }
        let hoist = repo.join("target/release/hoist");
        assert!(hoist.exists(), "{} is missing: `make bench` builds it", hoist.display());
        let controllers = fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").unwrap_or_default();
        let podman_conf = work.join("containers.conf");
        fs::write(
            &podman_conf,
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=32768:32768\"]\nlog_driver = \"k8s-file\"\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n",
        )
        .unwrap();
        let rounds = std::env::var("HOIST_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
        Env { repo, work, hoist, rounds, hybrid: !controllers.trim().is_empty(), podman_conf }
    }

    /// A fresh, empty directory for one run (never deleted during the bench: see perf-anchors quirk 6).
    pub fn fresh(&self, what: &str) -> PathBuf {
        let d = tempfile::Builder::new().prefix(&format!("{what}-")).tempdir_in(self.work.join("runs")).unwrap();
        d.keep()
    }

    pub fn hoist(&self, root: &Path) -> Command {
        let mut c = Command::new(&self.hoist);
        c.env("HOIST_ROOT", root).arg("-q");
        c
    }

    pub fn podman(&self, dir: &Path) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &self.podman_conf)
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--runroot")
            // podman refuses run roots longer than 50 characters.
            .arg(Path::new("/run/hoist-bench").join(dir.file_name().expect("a named directory")));
        c
    }

    /// `cmd` in a private mount namespace where crun accepts the hybrid hierarchy; every runtime
    /// in the start and memory cases runs this way, so the comparison stays fair.
    pub fn runtime_wrap(&self, args: &[&str]) -> Command {
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c"]);
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        if self.hybrid {
            let empty = self.work.join("empty");
            fs::write(&empty, "").unwrap();
            c.arg(format!(
                "mount --bind {} /sys/fs/cgroup/unified/cgroup.controllers && exec {}",
                empty.display(),
                quoted.join(" ")
            ));
        } else {
            c.arg(format!("exec {}", quoted.join(" ")));
        }
        c
    }
}

/// The bench images, as OCI layout directories (ref `latest`).
pub struct Images {
    pub small: PathBuf,
    pub etcd: PathBuf,
    pub big: PathBuf,
}

pub fn images(env: &Env) -> Images {
    let dir = env.work.join("images");
    let fixture = |spec_rel: &str, name: &str| {
        let out = dir.join(name);
        if !out.join("index.json").exists() {
            let img = spec::build(&env.repo.join("images").join(spec_rel)).unwrap_or_else(|e| panic!("{e}"));
            img.build().write_oci_dir(&out, "latest").unwrap();
        }
        out
    };
    let small = fixture("hello/image.json", "small");
    let etcd = fixture("etcd/image.json", "etcd");
    // Bump the suffix when big_image() changes (the build is cached).
    let big = dir.join("big-v3");
    if !big.join("index.json").exists() {
        eprintln!("building the big image from this machine's /usr (once; cached in {})", big.display());
        let tmp = dir.join("big.tmp");
        for old in ["big", "big-v2"] {
            let _ = fs::remove_dir_all(dir.join(old));
        }
        let _ = fs::remove_dir_all(&tmp);
        big_image().build().write_oci_dir(&tmp, "latest").unwrap();
        fs::rename(&tmp, &big).unwrap();
    }
    Images { small, etcd, big }
}

/// ~400 MB in five layers of many small files, like a distribution image: busybox plus
/// /usr/share/{man,…}, /usr/share/doc, /usr/include, Python's library, then shared libraries
/// until the budget is reached.
fn big_image() -> ImageBuilder {
    const MB: u64 = 1 << 20;
    let plan: &[(&[&str], u64)] = &[
        (
            &[
                "/usr/share/man",
                "/usr/share/zoneinfo",
                "/usr/share/i18n",
                "/usr/share/perl",
                "/usr/share/icons",
                "/usr/share/vim",
            ],
            110 * MB,
        ),
        (&["/usr/share/doc"], 90 * MB),
        (&["/usr/include"], 70 * MB),
        (&["/usr/lib/python3", "/usr/lib/python3.11", "/usr/lib/git-core", "/usr/lib/node_modules"], 70 * MB),
        (&["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"], 60 * MB),
    ];
    let mut layers = Vec::new();
    for (i, (dirs, budget)) in plan.iter().enumerate() {
        let mut b = LayerBuilder::new();
        let mut used = 0u64;
        let mut seen = std::collections::BTreeSet::new();
        if i == 0 {
            let busybox = fs::read("/bin/busybox").expect("busybox-static");
            b.dir("bin", 0o755).file("bin/busybox", &busybox, 0o755);
            for applet in ["sh", "true", "sleep", "cat", "ls"] {
                b.symlink(&format!("bin/{applet}"), "busybox");
            }
        }
        for d in *dirs {
            add_tree(&mut b, Path::new(d), &mut used, *budget, &mut seen);
        }
        layers.push(b.finish());
    }
    ImageBuilder::new(
        layers,
        serde_json::json!({
            // A service that stops on SIGTERM (as PID 1 a bare `sleep` would ignore it).
            "Cmd": ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1000 & wait; done"],
            "Env": ["PATH=/bin"]
        }),
    )
}

fn add_tree(
    b: &mut LayerBuilder,
    dir: &Path,
    used: &mut u64,
    budget: u64,
    seen: &mut std::collections::BTreeSet<String>,
) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let rel = |p: &Path| p.to_string_lossy().trim_start_matches('/').to_string();
    // Parents first, once per layer.
    let mut anc = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur.filter(|p| p != &Path::new("/")) {
        anc.push(rel(p));
        cur = p.parent();
    }
    for a in anc.into_iter().rev() {
        if seen.insert(a.clone()) {
            b.dir(&a, 0o755);
        }
    }
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if *used >= budget {
            return;
        }
        let Ok(m) = fs::symlink_metadata(&p) else { continue };
        let name = rel(&p);
        if m.file_type().is_symlink() {
            if let Ok(t) = fs::read_link(&p) {
                b.symlink(&name, &t.to_string_lossy());
            }
        } else if m.is_dir() {
            add_tree(b, &p, used, budget, seen);
        } else if m.is_file()
            && m.nlink() == 1
            && m.len() < 64 << 20
            && let Ok(data) = fs::read(&p)
        {
            *used += data.len() as u64;
            b.file(&name, &data, m.permissions().mode() & 0o777);
        }
    }
}

/// Debian's docker-registry on 127.0.0.1 (a port the kernel picks), fed with the bench images.
pub struct Registry {
    pub addr: String,
    child: Child,
}

impl Registry {
    pub fn start(env: &Env, images: &Images) -> Registry {
        let dir = env.fresh("registry");
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: info, accesslog: {{disabled: true}}}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\n\
                 http: {{addr: '127.0.0.1:0', secret: hoist-bench}}\nhealth: {{storagedriver: {{enabled: false}}}}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let log = dir.join("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let addr = loop {
            let mut text = String::new();
            let _ = fs::File::open(&log).map(|mut f| f.read_to_string(&mut text));
            if let Some(pos) = text.find("listening on ") {
                let rest = &text[pos + 13..];
                let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':')).unwrap_or(rest.len());
                break rest[..end].to_string();
            }
            assert!(Instant::now() < deadline, "registry did not start: {text}");
            std::thread::sleep(Duration::from_millis(10));
        };
        let reg = Registry { addr, child };
        for (name, path) in [("small", &images.small), ("etcd", &images.etcd), ("big", &images.big)] {
            let mut c = Command::new("skopeo");
            c.args(["copy", "-q", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:latest", path.display()))
                .arg(format!("docker://{}/{name}:latest", reg.addr));
            must(c);
        }
        reg
    }

    /// `127.0.0.1:PORT/NAME:latest`.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}:latest", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Disk use of `dirs` together, hard links counted once (`du -sk`), in MB.
pub fn du_mb(dirs: &[&Path]) -> f64 {
    let out = Command::new("du").arg("-skc").args(dirs).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let total = text.lines().last().and_then(|l| l.split_whitespace().next()).and_then(|k| k.parse::<f64>().ok());
    total.unwrap_or(f64::NAN) / 1024.0
}
