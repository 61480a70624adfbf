//! Hostile image sources: every `oci:`/`oci-archive:`/`docker-archive:` input is read bounded,
//! beneath its root, regular files only, and may not take over a stored name.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hoist::oci_build::{Built, ImageBuilder, LayerBuilder};
use serde_json::json;

fn small_image() -> Built {
    let mut l = LayerBuilder::new();
    l.file("a", b"content", 0o644);
    ImageBuilder::new(vec![l.finish()], json!({})).build()
}

/// Runs `cmd` with a deadline; returns (status code, stderr, peak RSS in KiB seen in /proc).
fn run_bounded(mut cmd: Command, limit: Duration) -> (Option<i32>, String, u64) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    let mut peak = 0u64;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if let Ok(st) = fs::read_to_string(format!("/proc/{}/status", child.id())) {
            for l in st.lines() {
                if let Some(v) = l.strip_prefix("VmHWM:") {
                    peak = peak.max(v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0));
                }
            }
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("hoist did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code(), err, peak)
}

fn assert_nothing_stored(r: &Root) {
    assert_eq!(r.json(&["images"]), json!([]));
    assert_eq!(r.count("store/blobs/sha256"), 0, "no blob stored");
    assert_eq!(r.count("tmp"), 0, "no temporary file left");
}

fn one_line(err: &str) -> &str {
    let last = err.lines().last().unwrap_or("");
    assert!(err.lines().all(|l| l == last || l.starts_with("Copying") || l.starts_with("Extracting")), "{err}");
    last
}

#[test]
fn oci_dir_blob_symlinks_and_fifos_are_refused() {
    let built = small_image();
    let layer = format!("sha256:{}", built.layers[0].hex());
    let manifest = built.manifest.to_string();
    for (case, target, blob) in [
        ("layer-zero", "/dev/zero", &layer),
        ("manifest-zero", "/dev/zero", &manifest),
        ("layer-host", "/etc/passwd", &layer),
        ("fifo", "", &layer),
    ] {
        let r = Root::new();
        let dir = r.dir.path().join("layout");
        built.write_oci_dir(&dir, "latest").unwrap();
        let p = dir.join("blobs/sha256").join(&blob["sha256:".len()..]);
        fs::remove_file(&p).unwrap();
        if target.is_empty() {
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        } else {
            symlink(target, &p).unwrap();
        }
        let mut cmd = r.cmd();
        cmd.args(["pull", &format!("oci:{}", dir.display())]);
        let (code, err, _) = run_bounded(cmd, Duration::from_secs(20));
        assert_eq!(code, Some(1), "{case}: {err}");
        let what = if target.is_empty() { "not a regular file" } else { "a symlink" };
        assert_eq!(
            one_line(&err),
            format!(
                "hoist: oci:{}: blob {blob}: refused: {what}{}",
                dir.display(),
                if target.is_empty() { "" } else { " (files of a layout must be regular files inside it)" }
            ),
            "{case}"
        );
        if target == "/etc/passwd" {
            let host = hoist::digest::Digest::of_bytes(&fs::read("/etc/passwd").unwrap());
            assert!(!err.contains(host.hex()), "{case}: no hash of the host file: {err}");
        }
        assert_nothing_stored(&r);
    }
}

#[test]
fn oci_dir_blob_larger_than_its_descriptor() {
    let r = Root::new();
    let built = small_image();
    let dir = r.dir.path().join("layout");
    built.write_oci_dir(&dir, "latest").unwrap();
    let p = dir.join("blobs/sha256").join(built.layers[0].hex());
    let size = fs::metadata(&p).unwrap().len();
    fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(&vec![0u8; 1 << 20]).unwrap();
    let err = r.fails(&["pull", &format!("oci:{}", dir.display())], 1);
    assert_eq!(
        one_line(&err),
        format!("hoist: oci:{}: blob {}: larger than its descriptor's {size} bytes", dir.display(), built.layers[0])
    );
    assert_nothing_stored(&r);
}

#[test]
fn oci_archive_junk_members_are_not_held() {
    let r = Root::new();
    let built = small_image();
    let a = r.dir.path().join("junk.tar");
    {
        let mut b = tar::Builder::new(fs::File::create(&a).unwrap());
        let junk = vec![7u8; 1 << 20];
        // 600 × 1 MiB: the old reader held all of them (600 MB); the limit below is 200 MB.
        for i in 0..600 {
            let mut h = tar::Header::new_gnu();
            h.set_size(junk.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("junk/{i}"), &junk[..]).unwrap();
        }
        let inner = built.oci_archive("latest");
        let mut ar = tar::Archive::new(&inner[..]);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let mut h = e.header().clone();
            let path = e.path().unwrap().into_owned();
            b.append_data(&mut h, path, &mut e).unwrap();
        }
        b.finish().unwrap();
    }
    let mut cmd = r.cmd();
    cmd.args(["pull", &format!("oci-archive:{}", a.display())]);
    let (code, err, peak_kib) = run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{err}");
    assert!(peak_kib < 200 * 1024, "peak RSS {peak_kib} KiB");
    assert_eq!(r.json(&["images"])[0]["name"], "junk:latest");
}

#[test]
fn docker_archive_huge_json_member_is_not_read() {
    let r = Root::new();
    let mut l = LayerBuilder::new();
    l.file("a", b"content", 0o644);
    let layers = vec![l.finish()];
    let plain = ImageBuilder::new(layers.clone(), json!({})).build();
    let a = r.dir.path().join("big.tar");
    {
        let mut b = tar::Builder::new(fs::File::create(&a).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(100 << 20);
        h.set_mode(0o644);
        b.append_data(&mut h, "junk.json", std::io::repeat(b'{').take_bytes(100 << 20)).unwrap();
        let inner = plain.docker_archive(&layers, "big:1");
        let mut ar = tar::Archive::new(&inner[..]);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let mut h = e.header().clone();
            let path = e.path().unwrap().into_owned();
            b.append_data(&mut h, path, &mut e).unwrap();
        }
        b.finish().unwrap();
    }
    let mut cmd = r.cmd();
    cmd.args(["pull", &format!("docker-archive:{}", a.display())]);
    let (code, err, peak_kib) = run_bounded(cmd, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{err}");
    assert!(peak_kib < 60 * 1024, "the 100 MB member is never read: peak RSS {peak_kib} KiB");
    assert_eq!(r.json(&["images"])[0]["name"], "big:1");

    // A manifest.json over the 4 MiB cap is refused.
    let a = r.dir.path().join("hugemanifest.tar");
    {
        let mut b = tar::Builder::new(fs::File::create(&a).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(5 << 20);
        h.set_mode(0o644);
        b.append_data(&mut h, "manifest.json", std::io::repeat(b' ').take_bytes(5 << 20)).unwrap();
        b.finish().unwrap();
    }
    let err = r.fails(&["pull", &format!("docker-archive:{}", a.display())], 1);
    assert_eq!(
        one_line(&err),
        format!(
            "hoist: docker-archive:{0}: {0}: member manifest.json is {1} bytes, over the 4194304-byte limit",
            a.display(),
            5 << 20
        )
    );
}

trait TakeBytes: std::io::Read + Sized {
    fn take_bytes(self, n: u64) -> std::io::Take<Self> {
        self.take(n)
    }
}
impl<R: std::io::Read> TakeBytes for R {}

#[test]
fn names_are_not_taken_over() {
    let r = Root::new();
    let reg = registry::Registry::start();
    reg.push(&format!("oci-archive:{}", hello().display()), "etcd:v1", false);
    let reference = reg.reference("etcd:v1");
    let pulled = r.json(&["pull", "--tls-verify=false", &reference]);
    let reg_name = format!("{}/etcd:v1", reg.addr);
    assert_eq!(pulled["name"], reg_name);
    let before = r.json(&["images"]);

    // A docker-archive tagged with the registry name is stored under a local name only.
    let mut l = LayerBuilder::new();
    l.file("planted", b"evil", 0o644);
    let layers = vec![l.finish()];
    let evil = ImageBuilder::new(layers.clone(), json!({})).build();
    let a = r.dir.path().join("evil.tar");
    fs::write(&a, evil.docker_archive(&layers, &reg_name)).unwrap();
    let d = r.json(&["pull", &format!("docker-archive:{}", a.display())]);
    assert_eq!(d["name"], "etcd:v1");
    let after = r.json(&["images", "info", &reg_name]);
    assert_eq!(after["digest"], pulled["digest"], "the registry name still points at the registry's image");
    assert_eq!(before.as_array().unwrap().len() + 1, r.json(&["images"]).as_array().unwrap().len());

    // Another local archive may not re-point that local name either.
    let b = r.dir.path().join("other.tar");
    fs::write(&b, evil.docker_archive(&layers, "etcd:v1")).unwrap();
    let blobs = r.count("store/blobs/sha256");
    let err = r.fails(&["pull", &format!("docker-archive:{}", b.display())], 1);
    assert_eq!(
        one_line(&err),
        format!(
            "hoist: docker-archive:{}: name etcd:v1 belongs to docker-archive:{}; not re-pointed",
            b.display(),
            a.display()
        )
    );
    assert_eq!(r.count("store/blobs/sha256"), blobs, "nothing stored");

    // An oci-archive whose file name is a stored name from elsewhere: refused before reading.
    let dir = r.dir.path().join("sub");
    fs::create_dir_all(&dir).unwrap();
    let c = dir.join("etcd.tar");
    fs::write(&c, small_image().oci_archive("v1")).unwrap();
    let err = r.fails(&["pull", &format!("oci-archive:{}:v1", c.display())], 1);
    assert_eq!(
        one_line(&err),
        format!(
            "hoist: oci-archive:{}:v1: name etcd:v1 belongs to docker-archive:{}; not re-pointed",
            c.display(),
            a.display()
        )
    );
}

#[test]
fn existing_root_becomes_0700() {
    let r = Root::new();
    fs::create_dir_all(r.path()).unwrap();
    fs::set_permissions(r.path(), fs::Permissions::from_mode(0o755)).unwrap();
    r.ok(&["images"]);
    assert_eq!(fs::metadata(r.path()).unwrap().permissions().mode() & 0o7777, 0o700);
}
