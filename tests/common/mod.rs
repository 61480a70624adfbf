//! Shared helpers for the integration tests: a scratch state root, the hoist binary, and the
//! fixture images (built from `images/*/image.json` in process, once per test binary run).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use hoist::oci_build::spec;

pub mod registry;
pub mod signing;
pub mod testbed;

pub const HOIST: &str = env!("CARGO_BIN_EXE_hoist");

/// The privileged tiers (namespaces, mounts, owners, device nodes, the testbed's systemd) need
/// root. As root this returns true. Otherwise the test is skipped, and says so on the terminal
/// (past the test harness's capture) — unless `HOIST_PRIV_TESTS=1` (`make test` and CI set it),
/// where not being root fails the test instead of skipping it.
pub fn privileged(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("HOIST_PRIV_TESTS").as_deref() != Ok("1"),
        "{test} needs root, and HOIST_PRIV_TESTS=1 says the privileged tiers must run"
    );
    use std::io::Write;
    let _ =
        writeln!(std::io::stderr(), "SKIPPED {test}: needs root (the privileged tier; `make test` runs it as root)");
    false
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// `target/test-images/<file>.tar`, built from `images/<spec>` once per test process (so it
/// always reflects the current sources; the build is deterministic, so concurrent test binaries
/// write identical files).
pub fn fixture(spec_rel: &str, file: &str) -> PathBuf {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let out = repo().join("target/test-images").join(format!("{file}.tar"));
    let spec_path = repo().join("images").join(spec_rel);
    if !built.iter().any(|b| b == file) {
        built.push(file.to_string());
        let img = spec::build(&spec_path).unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(out.parent().unwrap()).unwrap();
        let tmp = out.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, img.build().oci_archive("latest")).unwrap();
        fs::rename(&tmp, &out).unwrap();
    }
    out
}

pub fn hello() -> PathBuf {
    fixture("hello/image.json", "hello")
}
pub fn hello_v2() -> PathBuf {
    fixture("hello/image-v2.json", "hello-v2")
}
pub fn hello_broken() -> PathBuf {
    fixture("hello/image-broken.json", "hello-broken")
}
pub fn etcd() -> PathBuf {
    fixture("etcd/image.json", "etcd")
}
/// etcd with `/exports` in the style of atomic's 1.0-era published images (platform, ambient
/// capabilities, a cgroup mount, `$ADDTL_MOUNTS`, `"devices": null`, `RuntimeDirectory=${NAME}`).
pub fn etcd_atomic() -> PathBuf {
    fixture("etcd/image-atomic.json", "etcd-atomic")
}
/// hello with a runtime-spec 0.3.0 config (`linux.capabilities` list, `linux.rlimits`).
pub fn hello_spec03() -> PathBuf {
    fixture("hello/image-0.3.json", "hello-spec03")
}
pub fn layered() -> PathBuf {
    fixture("layered/image.json", "layered")
}
/// `layered` without its hardlink into a lower layer: overlayfs can stack it as it is.
pub fn layered_overlay() -> PathBuf {
    fixture("layered/image-overlay.json", "layered-overlay")
}

/// A scratch state root and a way to run hoist against it.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Self {
        Root { dir: tempfile::Builder::new().prefix("hoist-test-").tempdir_in(repo().join("target")).unwrap() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(HOIST);
        c.env("HOIST_ROOT", self.path()).env_remove("HOIST_MAX_LAYER_SIZE").env_remove("HOIST_MAX_LAYER_ENTRIES");
        c
    }

    /// Runs hoist with `args`; returns the output whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("hoist runs")
    }

    /// Runs hoist and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "hoist {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs hoist and insists on failure with `code`; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "hoist {args:?}: stdout {} stderr {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let err = String::from_utf8(o.stderr).unwrap();
        assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "no panics: {err}");
        err
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).expect("valid JSON")
    }

    pub fn pull(&self, archive: &Path) -> serde_json::Value {
        self.json(&["pull", &format!("oci-archive:{}", archive.display())])
    }

    pub fn count(&self, sub: &str) -> usize {
        fs::read_dir(self.path().join(sub)).map(|rd| rd.count()).unwrap_or(0)
    }
}

/// What a tree looks like, for comparing checkouts: path → (kind, mode, uid, gid, content/link).
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ft = m.file_type();
            let what = if ft.is_dir() {
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("link -> {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_file() {
                let data = fs::read(&p).unwrap();
                format!("file {} {} mtime {}", data.len(), hoist::digest::Digest::of_bytes(&data).short(), m.mtime())
            } else {
                format!("special {:o}", m.mode() & 0o170000)
            };
            let mode = if ft.is_symlink() { 0 } else { m.mode() & 0o7777 };
            out.insert(rel, format!("{what} mode {mode:o} owner {}:{}", m.uid(), m.gid()));
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {cmd}")).output().is_ok_and(|o| o.status.success())
}

/// Makes an OCI bundle in `dir`: the hello image's rootfs (hard-link checkout through the
/// library) and a config.json running `args` with `spec_extra` merged into the spec.
pub fn bundle(dir: &Path, args: &[&str], spec_extra: serde_json::Value) -> PathBuf {
    use hoist::fetch;
    use hoist::imgref::ImageArg;
    use hoist::progress::Progress;
    let layout = hoist::layout::Layout::new(dir.join("state"));
    let store = hoist::store::Store::open(&layout).unwrap();
    let hoist::imgref::ImageArg::Source(src) = ImageArg::parse(&format!("oci-archive:{}", hello().display())).unwrap()
    else {
        unreachable!()
    };
    let pulled = fetch::pull(&store, &src, &insecure_pull(), &Progress::silent()).unwrap();
    let b = dir.join("bundle");
    hoist::images::checkout(&store, &pulled.manifest, &b.join("rootfs"), &Default::default(), &Progress::silent())
        .unwrap();
    let mut spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": args, "env": ["PATH=/bin:/usr/bin"], "cwd": "/"},
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "c1",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=1777"]}
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]}
    });
    merge(&mut spec, spec_extra);
    fs::write(b.join("config.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    b
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// Polls `f` until it returns Some, or panics with `what` after `secs`.
pub fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Pull options for in-process pulls of the project's own fixtures: no signature policy (the
/// trust tests say which policy they use).
pub fn insecure_pull() -> hoist::fetch::PullOptions {
    hoist::fetch::PullOptions { trust: hoist::trust::Options::insecure(), ..Default::default() }
}

/// The `org.opencontainers.image.version` label of the image container `name` runs from, read
/// from the state root's records and blobs (a deployment's `rootfs/` holds only what hoist reads
/// when its root is an overlay of the layers).
pub fn deployed_version(state: &std::path::Path, name: &str) -> String {
    let blob = |d: &str| -> serde_json::Value {
        let hex = d.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&fs::read(state.join("store/blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let rec: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join("containers").join(name).join("current/info.json")).unwrap())
            .unwrap();
    let manifest = blob(rec["manifest"].as_str().unwrap());
    let config = blob(manifest["config"]["digest"].as_str().unwrap());
    config["config"]["Labels"]["org.opencontainers.image.version"].as_str().unwrap().to_string()
}
