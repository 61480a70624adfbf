//! The cases that need no systemd: pulls, unpack/checkout, runtime start latency, monitor memory,
//! disk use. Each returns figures with hoist first.

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{Contender, Figure, compare, figures, must};
use crate::setup::{Env, Images, Registry, du_mb};

fn cmd(prog: &str, args: &[&str]) -> Command {
    let mut c = Command::new(prog);
    c.args(args);
    c
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// 1. Cold pulls of each image from the local registry, then a warm re-pull of the big one.
pub fn pulls(env: &Env, reg: &Registry) -> Vec<Figure> {
    let mut out = Vec::new();
    for name in ["small", "etcd", "big"] {
        let image = reg.image(name);
        let dirs: Vec<RefCell<PathBuf>> = (0..3).map(|_| RefCell::new(PathBuf::new())).collect();
        let fresh = |i: usize, what: &'static str| {
            let d = &dirs[i];
            move |_| *d.borrow_mut() = env.fresh(what)
        };
        let contenders = vec![
            Contender::new("hoist pull (+ extract)", fresh(0, "hoist-pull"), |_| {
                let mut c = env.hoist(&dirs[0].borrow());
                c.args(["pull", "--tls-verify=false", &format!("docker://{image}")]);
                vec![c]
            }),
            Contender::new("podman pull (+ extract)", fresh(1, "podman-pull"), |_| {
                let mut c = env.podman(&dirs[1].borrow());
                c.args(["pull", "-q", "--tls-verify=false", &image]);
                vec![c]
            }),
            Contender::new("skopeo copy to oci: (no extract)", fresh(2, "skopeo-pull"), |_| {
                let dest = format!("oci:{}/oci:{name}", s(&dirs[2].borrow()));
                vec![cmd("skopeo", &["copy", "-q", "--src-tls-verify=false", &format!("docker://{image}"), &dest])]
            }),
        ];
        out.extend(compare(&format!("1. cold pull, {name}"), env.rounds, contenders));
        if name == "big" {
            // Warm: the same directories again, nothing changed upstream.
            let contenders = vec![
                Contender::new(
                    "hoist pull",
                    |_| {},
                    |_| {
                        let mut c = env.hoist(&dirs[0].borrow());
                        c.args(["pull", &format!("docker://{image}")]);
                        vec![c]
                    },
                ),
                Contender::new(
                    "podman pull",
                    |_| {},
                    |_| {
                        let mut c = env.podman(&dirs[1].borrow());
                        c.args(["pull", "-q", "--tls-verify=false", &image]);
                        vec![c]
                    },
                ),
                Contender::new(
                    "skopeo copy",
                    |_| {},
                    |_| {
                        let dest = format!("oci:{}/oci:{name}", s(&dirs[2].borrow()));
                        vec![cmd(
                            "skopeo",
                            &["copy", "-q", "--src-tls-verify=false", &format!("docker://{image}"), &dest],
                        )]
                    },
                ),
            ];
            out.extend(compare("1. warm re-pull, big", env.rounds, contenders));
        }
    }
    out
}

/// The name hoist stores the big image's layout under (its directory name).
fn stored_name(images: &Images) -> String {
    images.big.file_name().expect("named directory").to_string_lossy().into_owned()
}

/// The layer blobs of an OCI layout's `latest` image, in order.
fn layer_files(layout: &Path) -> Vec<PathBuf> {
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap()).unwrap();
    m["layers"].as_array().unwrap().iter().map(|l| blob(l["digest"].as_str().unwrap())).collect()
}

/// Unmounts what `hoist mount` left (between rounds and at the end; untimed).
fn umount_all(env: &Env, root: &Path, dirs: &mut Vec<PathBuf>) {
    for d in dirs.drain(..) {
        let mut c = env.hoist(root);
        c.arg("umount").arg(&d);
        let _ = c.output();
    }
}

/// 2. Unpacking the big image from an OCI layout, and a second checkout of an extracted image.
pub fn unpack(env: &Env, images: &Images) -> Vec<Figure> {
    let big = s(&images.big);
    let layers = layer_files(&images.big);
    // A root whose store already has big's blobs: hoist's runs then extract only (as umoci does).
    let seed = env.fresh("hoist-seed");
    let mut c = env.hoist(&seed);
    c.args(["pull", &format!("oci:{big}")]);
    must(c);
    let root = RefCell::new(PathBuf::new());
    let mounts = RefCell::new(Vec::new());
    let target = RefCell::new(PathBuf::new());
    let contenders = vec![
        Contender::new(
            "hoist: extract layers + checkout",
            |_| {
                umount_all(env, &root.borrow(), &mut mounts.borrow_mut());
                let r = env.fresh("hoist-unpack");
                must(cmd("mkdir", &["-p", &format!("{}/root", s(&r))]));
                must(cmd("cp", &["-al", &format!("{}/store", s(&seed)), &format!("{}/root/store", s(&r))]));
                *root.borrow_mut() = r.join("root");
                let t = r.join("view");
                fs::create_dir(&t).unwrap();
                mounts.borrow_mut().push(t.clone());
                *target.borrow_mut() = t;
            },
            |_| {
                let r = root.borrow();
                let mut pull = env.hoist(&r);
                pull.args(["pull", &format!("oci:{big}")]);
                let mut mount = env.hoist(&r);
                mount.arg("mount").arg(stored_name(images)).arg(&*target.borrow());
                vec![pull, mount]
            },
        ),
        Contender::new(
            "umoci unpack",
            |_| *target.borrow_mut() = env.fresh("umoci").join("bundle"),
            |_| vec![cmd("umoci", &["unpack", "--image", &format!("{big}:latest"), &s(&target.borrow())])],
        ),
        Contender::new(
            "umoci raw unpack",
            |_| *target.borrow_mut() = env.fresh("umoci-raw").join("rootfs"),
            |_| vec![cmd("umoci", &["raw", "unpack", "--image", &format!("{big}:latest"), &s(&target.borrow())])],
        ),
        Contender::new(
            "floor: tar -xzf each layer",
            |_| *target.borrow_mut() = env.fresh("tar"),
            |_| {
                layers
                    .iter()
                    .map(|l| cmd("tar", &["--numeric-owner", "-xzf", &s(l), "-C", &s(&target.borrow())]))
                    .collect()
            },
        ),
    ];
    let mut out = compare("2. unpack big (from an OCI layout)", env.rounds, contenders);
    umount_all(env, &root.borrow(), &mut mounts.borrow_mut());

    // Second checkout: layers already extracted (the seed root), vs the hard-link floor. The
    // small image too: with overlay roots the cost must not depend on the image (ratio ≈ 1).
    let mut c = env.hoist(&seed);
    c.args(["pull", &format!("oci:{}", s(&images.small))]);
    must(c);
    let small_name = images.small.file_name().expect("named directory").to_string_lossy().into_owned();
    let extracted = env.fresh("extracted").join("rootfs");
    must(cmd("umoci", &["raw", "unpack", "--image", &format!("{big}:latest"), &s(&extracted)]));
    // `hoist mount IMAGE` onto a fresh directory (views of earlier rounds unmounted first).
    let (seed_ref, mounts_ref, target_ref) = (&seed, &mounts, &target);
    let hoist_mount = |title: &'static str, scratch: &'static str, image: String, hard_links: bool| {
        Contender::new(
            title,
            move |_| {
                umount_all(env, seed_ref, &mut mounts_ref.borrow_mut());
                let t = env.fresh(scratch);
                mounts_ref.borrow_mut().push(t.clone());
                *target_ref.borrow_mut() = t;
            },
            move |_| {
                let mut c = env.hoist(seed_ref);
                if hard_links {
                    c.env("HOIST_ROOTFS", "checkout");
                }
                c.arg("mount").arg(&image).arg(&*target_ref.borrow());
                vec![c]
            },
        )
    };
    // Small against big on their own, many rounds: with the heavy contenders in between, a
    // round measures how much of the layers' metadata their gigabytes evicted from the cache.
    let pair = vec![
        hoist_mount("hoist mount, big (5 layers)", "hoist-co", stored_name(images), false),
        hoist_mount("hoist mount, small image (1 layer; same cost?)", "hoist-co-small", small_name, false),
    ];
    let mut pair_figures = compare("2. second checkout, small vs big", (env.rounds * 4).max(20), pair);
    let contenders = vec![
        hoist_mount("hoist mount (overlay of extracted layers)", "hoist-co", stored_name(images), false),
        hoist_mount(
            "hoist mount, hard-link checkout (HOIST_ROOTFS=checkout)",
            "hoist-co-hl",
            stored_name(images),
            true,
        ),
        Contender::new(
            "floor: cp -al rootfs",
            |_| *target.borrow_mut() = env.fresh("cp-al").join("rootfs"),
            |_| vec![cmd("cp", &["-al", &s(&extracted), &s(&target.borrow())])],
        ),
        Contender::new(
            "umoci raw unpack (no sharing)",
            |_| *target.borrow_mut() = env.fresh("umoci-raw2").join("rootfs"),
            |_| vec![cmd("umoci", &["raw", "unpack", "--image", &format!("{big}:latest"), &s(&target.borrow())])],
        ),
    ];
    out.extend(compare("2. second checkout, big", env.rounds, contenders));
    out.append(&mut pair_figures);
    umount_all(env, &seed, &mut mounts.borrow_mut());
    out
}

/// A runtime bundle of the small image running `args` (same config for every runtime).
fn bundle(env: &Env, images: &Images, name: &str, args: &[&str]) -> PathBuf {
    let b = env.work.join("bundles").join(name);
    if !b.join("rootfs/bin").exists() {
        let _ = fs::remove_dir_all(&b);
        fs::create_dir_all(&b).unwrap();
        must(cmd(
            "umoci",
            &["raw", "unpack", "--image", &format!("{}:latest", s(&images.small)), &s(&b.join("rootfs"))],
        ));
    }
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": args, "env": ["PATH=/bin:/usr/bin"], "cwd": "/"},
        "root": {"path": "rootfs", "readonly": true},
        "hostname": name,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=1777"]}
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}, {"type": "network"}]}
    });
    fs::write(b.join("config.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    b
}

fn run_bundle(env: &Env, runtime: &str, bundle: &Path, state: &Path, id: &str) -> Command {
    let (b, st) = (s(bundle), s(state));
    match runtime {
        "hoist" => {
            let h = s(&env.hoist);
            env.runtime_wrap(&[&h, "internal", "run-bundle", "--name", id, "--bundle", &b, "--state-root", &st])
        }
        other => env.runtime_wrap(&[other, "--root", &st, "run", "-b", &b, id]),
    }
}

/// 4. Start-to-exit of `/bin/true` in the busybox bundle.
pub fn start_latency(env: &Env, images: &Images) -> Vec<Figure> {
    let b = bundle(env, images, "bb-true", &["/bin/true"]);
    let state = env.work.join("state");
    let contenders: Vec<Contender> = ["hoist", "runc", "crun"]
        .into_iter()
        .map(|rt| {
            let st = state.join(rt);
            let b = b.clone();
            let label = if rt == "hoist" {
                "hoist runner (overlay root mounted first)".to_string()
            } else {
                format!("{rt} run")
            };
            Contender::new(&label, |_| {}, move |_| vec![run_bundle(env, rt, &b, &st, "bb-true")])
        })
        .collect();
    let rounds = (env.rounds * 6).max(20);
    compare("4. start /bin/true (busybox bundle)", rounds, contenders)
}

/// Every process below `pid`.
fn descendants(pid: i32) -> Vec<i32> {
    let mut parent: Vec<(i32, i32)> = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        // "pid (comm) state ppid …": comm may contain spaces, so split after the last ')'.
        if let Some(ppid) = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok()) {
            parent.push((p, ppid));
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(q) = queue.pop() {
        for (p, pp) in &parent {
            if *pp == q {
                out.push(*p);
                queue.push(*p);
            }
        }
    }
    out
}

/// Rss, Pss and private (USS) memory of a process, in MB.
fn smaps(pid: u32) -> (f64, f64, f64) {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let kb = |k: &str| {
        text.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("Rss:") / 1024.0, kb("Pss:") / 1024.0, (kb("Private_Clean:") + kb("Private_Dirty:")) / 1024.0)
}

/// 6. Memory of the process kept beside each running container (two containers of each kind),
///    and of hoist's runner running a health check every second.
pub fn memory(env: &Env, images: &Images, reg: &Registry) -> Vec<Figure> {
    let b = bundle(env, images, "bb-sleep", &["/bin/sleep", "1000"]);
    let hc = bundle(env, images, "bb-sleep-hc", &["/bin/sleep", "1000"]);
    let check = serde_json::json!({"test": ["/bin/true"], "intervalMs": 1000, "timeoutMs": 5000, "startPeriodMs": 0,
        "startIntervalMs": 1000, "retries": 3, "onFailure": "none", "origin": "bench"});
    fs::write(hc.join("health.json"), check.to_string()).unwrap();
    let state = env.work.join("state");
    let mut children: Vec<(String, Child)> = Vec::new();
    for rt in ["hoist", "hoist-hc", "runc", "crun"] {
        for n in 0..2 {
            let (runtime, bundle) = if rt == "hoist-hc" { ("hoist", &hc) } else { (rt, &b) };
            let mut c = run_bundle(env, runtime, bundle, &state.join(rt), &format!("bb-sleep-{n}"));
            let child = c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
            children.push((rt.to_string(), child));
        }
    }
    let pod = env.fresh("podman-mem");
    let mut conmons = Vec::new();
    for n in 0..2 {
        let mut c = env.podman(&pod);
        c.args([
            "run",
            "-d",
            "--network=none",
            "--name",
            &format!("sleep{n}"),
            "--tls-verify=false",
            &reg.image("small"),
            "/bin/sleep",
            "1000",
        ]);
        must(c);
        let out =
            env.podman(&pod).args(["inspect", "-f", "{{.State.ConmonPid}}", &format!("sleep{n}")]).output().unwrap();
        conmons.push(String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().unwrap());
    }
    // Long enough for a few health checks.
    std::thread::sleep(Duration::from_millis(3500));
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); 5];
    let names: Vec<String> = vec![
        "hoist runner".into(),
        "hoist runner, 1 s health check".into(),
        "runc run".into(),
        "crun run".into(),
        "conmon (podman)".into(),
    ];
    for (rt, child) in &children {
        let i = ["hoist", "hoist-hc", "runc", "crun"].iter().position(|r| r == rt).unwrap();
        samples[i].push(smaps(child.id()).2);
    }
    for pid in &conmons {
        samples[4].push(smaps(*pid).2);
    }
    let rss: Vec<(f64, f64)> = children.iter().map(|(_, c)| smaps(c.id())).map(|(r, p, _)| (r, p)).collect();
    let conmon_rss: Vec<(f64, f64)> = conmons.iter().map(|p| smaps(*p)).map(|(r, p, _)| (r, p)).collect();
    for (rt, mut child) in children {
        // The payload is PID 1 of its namespace and ignores SIGTERM: kill it, the monitor follows.
        for pid in descendants(child.id() as i32) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
        if child.wait().is_err() {
            eprintln!("{rt}: could not reap");
        }
    }
    let mut rm = env.podman(&pod);
    rm.args(["rm", "-f", "-t", "0", "sleep0", "sleep1"]);
    must(rm);
    let mut figs = figures("6. memory per running container (USS, private MB)", "MB", names.clone(), samples);
    for (i, f) in figs.iter_mut().enumerate() {
        let (r, p) = if i < 4 { rss[i * 2] } else { conmon_rss[0] };
        f.note = Some(format!("RSS {r:.1} MB, PSS {p:.1} MB"));
    }
    figs
}

/// 7. Disk used by five containers' root filesystems of the big image, image included.
pub fn disk(env: &Env, images: &Images, reg: &Registry) -> Vec<Figure> {
    const N: usize = 5;
    let big = s(&images.big);
    // hoist: the image (manifest, config, extracted layers) and five views (overlay stacks: no files).
    let h = env.fresh("hoist-disk");
    let root = h.join("root");
    let mut c = env.hoist(&root);
    c.args(["pull", &format!("oci:{big}")]);
    must(c);
    let mut views = Vec::new();
    for i in 0..N {
        let v = h.join(format!("view{i}"));
        fs::create_dir(&v).unwrap();
        let mut c = env.hoist(&root);
        c.arg("mount").arg(stored_name(images)).arg(&v);
        must(c);
        views.push(v);
    }
    let hoist_mb = du_mb(&[&root]);
    umount_all(env, &root, &mut views);
    // podman: the pulled image and five created containers.
    let p = env.fresh("podman-disk");
    let mut c = env.podman(&p);
    c.args(["pull", "-q", "--tls-verify=false", &reg.image("big")]);
    must(c);
    for i in 0..N {
        let mut c = env.podman(&p);
        c.args(["create", "--network=none", "--name", &format!("big{i}"), &reg.image("big"), "/bin/sleep", "1000"]);
        must(c);
    }
    let podman_mb = du_mb(&[&p.join("root")]);
    // umoci: five bundles unpacked from the layout, plus the layout itself.
    let u = env.fresh("umoci-disk");
    for i in 0..N {
        must(cmd("umoci", &["unpack", "--image", &format!("{big}:latest"), &s(&u.join(format!("b{i}")))]));
    }
    let umoci_mb = du_mb(&[&u, &images.big]);
    let mut figs = figures(
        "7. disk, 5 containers of big",
        "MB",
        vec![
            "hoist (documents + layers + 5 overlay roots)".into(),
            "podman (overlay + 5 created)".into(),
            "umoci unpack ×5 + layout".into(),
        ],
        vec![vec![hoist_mb], vec![podman_mb], vec![umoci_mb]],
    );
    figs[0].note = Some("layer blobs deleted once extracted; --keep-blobs keeps them".into());
    figs
}
