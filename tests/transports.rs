//! containers-transports(5) references for the local transports, against what skopeo writes:
//! `oci:PATH[:REFERENCE]`, `oci-archive:PATH[:REFERENCE]` (PATH ends at the first `:`),
//! `docker-archive:PATH[:NAME[:TAG]|:@INDEX]`, and the names the images are stored under (a
//! layout's or archive's own full reference, as `podman load` keeps it; the file-name rule for a
//! bare tag or no name; never a registry's name).

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use hoist::fetch;
use hoist::fetch::resolve::{self, Deployed};
use hoist::progress::Progress;
use hoist::store::Store;
use serde_json::{Value, json};

/// `skopeo copy oci-archive:FROM TO` (no signature policy needed for local copies).
fn skopeo_copy(from: &Path, to: &str) {
    assert!(have("skopeo"), "skopeo writes the reference layouts and archives (make test installs it)");
    let o = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "-q", &format!("oci-archive:{}", from.display()), to])
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo copy {to}: {}", String::from_utf8_lossy(&o.stderr));
}

/// The last line of a failed command's stderr; every other line is progress.
fn one_line(err: &str) -> &str {
    let last = err.lines().last().unwrap_or("");
    assert!(err.lines().all(|l| l == last || l.starts_with("Copying") || l.starts_with("Extracting")), "{err}");
    last
}

fn names(r: &Root) -> Vec<String> {
    r.json(&["images"]).as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()).collect()
}

fn store(r: &Root) -> Store {
    Store::open(&hoist::layout::Layout::new(r.path())).unwrap()
}

/// One docker-archive holding the images of several (each written by skopeo): their members
/// (shared layers once) and their manifest.json entries in order. `untag` clears an entry's
/// RepoTags (as skopeo writes an untagged image).
fn merge_docker_archives(out: &Path, parts: &[&Path], untag: &[usize]) {
    let mut entries: Vec<Value> = Vec::new();
    let mut seen = HashSet::new();
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    for part in parts {
        let mut ar = tar::Archive::new(fs::File::open(part).unwrap());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            if path == "manifest.json" {
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let list: Vec<Value> = serde_json::from_slice(&data).unwrap();
                entries.extend(list);
            } else if path != "repositories" && seen.insert(path.clone()) {
                let mut h = e.header().clone();
                b.append_data(&mut h, &path, &mut e).unwrap();
            }
        }
    }
    for &i in untag {
        entries[i]["RepoTags"] = json!([]);
    }
    let manifest = serde_json::to_vec(&entries).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(manifest.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "manifest.json", &manifest[..]).unwrap();
    b.finish().unwrap();
}

#[test]
fn oci_layout_with_two_images_written_by_skopeo() {
    let r = Root::new();
    let dir = r.dir.path().join("layout");
    skopeo_copy(&hello(), &format!("oci:{}:localhost/app:1.0", dir.display()));
    skopeo_copy(&hello_v2(), &format!("oci:{}:app:2.0", dir.display()));
    let d = dir.display();

    // REFERENCE after the first `:` of PATH, with `/` and `:` in it: stored under itself.
    let one = r.json(&["pull", &format!("oci:{d}:localhost/app:1.0")]);
    assert_eq!(
        (&one["name"], &one["result"], &one["source"]),
        (&json!("localhost/app:1.0"), &json!("done"), &json!(format!("oci:{d}:localhost/app:1.0")))
    );
    let two = r.json(&["pull", &format!("oci:{d}:app:2.0")]);
    assert_eq!((&two["name"], &two["result"]), (&json!("app:2.0"), &json!("done")));
    assert_ne!(one["digest"], two["digest"]);

    // No reference, or one the layout does not hold: one line naming it and what there is.
    let err = r.fails(&["pull", &format!("oci:{d}")], 1);
    assert_eq!(
        one_line(&err),
        format!("hoist: oci:{d}: the layout holds 2 images; name one with :REF (localhost/app:1.0, app:2.0)")
    );
    let err = r.fails(&["pull", &format!("oci:{d}:x:1")], 1);
    assert_eq!(
        one_line(&err),
        format!("hoist: oci:{d}:x:1: no image named \"x:1\" (the layout holds: localhost/app:1.0, app:2.0)")
    );

    // The listing, lookups by the stored name, and a re-pull from the recorded source.
    assert_eq!(names(&r), ["app:2.0", "localhost/app:1.0"]);
    let listed = r.json(&["images"]);
    assert_eq!((&listed[1]["repository"], &listed[1]["tag"]), (&json!("localhost/app"), &json!("1.0")));
    let info = r.json(&["images", "info", "localhost/app:1.0"]);
    assert_eq!((&info["name"], &info["digest"]), (&json!("localhost/app:1.0"), &one["digest"]));
    assert_eq!(r.json(&["pull", "localhost/app:1.0"])["result"], "unchanged");
    // The short name is not an alias of the localhost/ name.
    let err = r.fails(&["images", "info", "app:1.0"], 1);
    assert!(
        err.starts_with(
            "hoist: image \"app:1.0\" not found in the store (see `hoist images`), and registries.conf has no alias"
        ),
        "{err}"
    );

    // What install resolves `localhost/app:1.0` to, and the container name it defaults to.
    let img = resolve::stored(&store(&r), "localhost/app:1.0", &common::insecure_pull(), &Progress::silent()).unwrap();
    assert_eq!(
        (img.name.to_string(), img.manifest.to_string(), img.name.default_container_name()),
        ("localhost/app:1.0".to_string(), one["digest"].as_str().unwrap().to_string(), "app-1.0".to_string())
    );
}

#[test]
fn oci_archive_names_itself_unless_it_has_a_bare_tag() {
    let r = Root::new();
    let full = r.dir.path().join("app.tar");
    skopeo_copy(&hello(), &format!("oci-archive:{}:localhost/app:1.0", full.display()));
    // Without a reference, the only image's full ref.name is the stored name.
    let p = r.json(&["pull", &format!("oci-archive:{}", full.display())]);
    assert_eq!((&p["name"], &p["result"]), (&json!("localhost/app:1.0"), &json!("done")));
    assert_eq!(r.json(&["pull", &format!("oci-archive:{}", full.display())])["result"], "unchanged");

    // Named by the reference instead (another root: another source string may not re-point it).
    let r2 = Root::new();
    let q = r2.json(&["pull", &format!("oci-archive:{}:localhost/app:1.0", full.display())]);
    assert_eq!((&q["name"], &q["digest"]), (&json!("localhost/app:1.0"), &p["digest"]));

    // A bare tag (skopeo's `oci-archive:FILE:1.0`) keeps the file-name rule.
    let bare = r.dir.path().join("tool.tar");
    skopeo_copy(&hello(), &format!("oci-archive:{}:1.0", bare.display()));
    assert_eq!(r.json(&["pull", &format!("oci-archive:{}", bare.display())])["name"], "tool:latest");
    assert_eq!(r.json(&["pull", &format!("oci-archive:{}:1.0", bare.display())])["name"], "tool:1.0");
    assert_eq!(names(&r), ["localhost/app:1.0", "tool:1.0", "tool:latest"]);
}

#[test]
fn docker_archive_written_by_skopeo_keeps_its_name() {
    let r = Root::new();
    let a = r.dir.path().join("one.tar");
    skopeo_copy(&hello(), &format!("docker-archive:{}:localhost/app:1.0", a.display()));
    let p = r.json(&["pull", &format!("docker-archive:{}", a.display())]);
    assert_eq!((&p["name"], &p["result"]), (&json!("localhost/app:1.0"), &json!("done")));
    let b = r.dir.path().join("hub.tar");
    skopeo_copy(&hello_v2(), &format!("docker-archive:{}:app:2.0", b.display()));
    // skopeo writes `docker.io/library/app:2.0`: stored in docker's familiar form.
    assert_eq!(r.json(&["pull", &format!("docker-archive:{}", b.display())])["name"], "app:2.0");
    let c = r.dir.path().join("untagged.tar");
    skopeo_copy(&hello(), &format!("docker-archive:{}", c.display()));
    assert_eq!(r.json(&["pull", &format!("docker-archive:{}", c.display())])["name"], "untagged:latest");
    assert_eq!(names(&r), ["app:2.0", "localhost/app:1.0", "untagged:latest"]);
}

#[test]
fn docker_archive_with_three_images() {
    let work = Root::new();
    let part = |name: &str, from: PathBuf, tag: &str| {
        let p = work.dir.path().join(name);
        skopeo_copy(&from, &format!("docker-archive:{}:{tag}", p.display()));
        p
    };
    let (p1, p2) = (part("p1.tar", hello(), "localhost/app:1.0"), part("p2.tar", hello_v2(), "app:2.0"));
    let p3 = part("p3.tar", hello_v2(), "x:0");
    let all = work.dir.path().join("all.tar");
    merge_docker_archives(&all, &[&p1, &p2, &p3], &[2]);
    let a = all.display();
    let holds = "localhost/app:1.0, docker.io/library/app:2.0, @2 (untagged)";

    let r = Root::new();
    let err = r.fails(&["pull", &format!("docker-archive:{a}")], 1);
    assert_eq!(
        one_line(&err),
        format!(
            "hoist: docker-archive:{a}: the archive holds 3 images; name one with :NAME[:TAG] or :@INDEX ({holds})"
        )
    );
    // Matched after docker's normalisation: `app:2.0` is `docker.io/library/app:2.0`, and
    // `app:1.0` is not `localhost/app:1.0`.
    let one = r.json(&["pull", &format!("docker-archive:{a}:localhost/app:1.0")]);
    assert_eq!(
        (&one["name"], &one["source"]),
        (&json!("localhost/app:1.0"), &json!(format!("docker-archive:{a}:localhost/app:1.0")))
    );
    let two = r.json(&["pull", &format!("docker-archive:{a}:app:2.0")]);
    assert_eq!(two["name"], "app:2.0");
    let err = r.fails(&["pull", &format!("docker-archive:{a}:app:1.0")], 1);
    assert_eq!(
        one_line(&err),
        format!("hoist: docker-archive:{a}:app:1.0: no image named \"app:1.0\" (the archive holds: {holds})")
    );
    assert_eq!(names(&r), ["app:2.0", "localhost/app:1.0"]);
    // The same image as from its own archive (the manifest hoist writes depends on the content only).
    let single = Root::new().json(&["pull", &format!("docker-archive:{}", p1.display())]);
    assert_eq!(one["digest"], single["digest"]);

    // By index: the entry's first RepoTag, or the file-name rule for an untagged one.
    let r = Root::new();
    let i1 = r.json(&["pull", &format!("docker-archive:{a}:@1")]);
    assert_eq!((&i1["name"], &i1["digest"]), (&json!("app:2.0"), &two["digest"]));
    let i2 = r.json(&["pull", &format!("docker-archive:{a}:@2")]);
    assert_eq!(i2["name"], "all:latest");
    let err = r.fails(&["pull", &format!("docker-archive:{a}:@3")], 1);
    assert_eq!(one_line(&err), format!("hoist: docker-archive:{a}:@3: no image @3: the archive holds 3 (@0 to @2)"));
    let err = r.fails(&["pull", &format!("docker-archive:{a}:@x")], 1);
    assert_eq!(
        err,
        format!("hoist: invalid image reference \"docker-archive:{a}:@x\": bad index after @ (a 0-based number)\n")
    );
    assert_eq!(names(&r), ["all:latest", "app:2.0"]);

    // `update --rebase docker-archive:…:@1 --no-pull` means the image stored from that source.
    let img = resolve::update_target(
        &store(&r),
        Deployed { image: "all:latest", source: None },
        Some(&format!("docker-archive:{a}:@1")),
        true,
        &common::insecure_pull(),
        &Progress::silent(),
    )
    .unwrap();
    assert_eq!(
        (img.name.to_string(), img.manifest.to_string()),
        ("app:2.0".to_string(), two["digest"].as_str().unwrap().to_string())
    );
}

#[test]
fn names_from_a_source_never_take_a_registry_name() {
    let r = Root::new();
    let reg = registry::Registry::start();
    reg.push(&format!("oci-archive:{}", hello().display()), "etcd:v1", false);
    let pulled = r.json(&["pull", "--tls-verify=false", &reg.reference("etcd:v1")]);
    let reg_name = format!("{}/etcd:v1", reg.addr);
    assert_eq!(pulled["name"], reg_name);

    // A layout whose ref.name is the registry's name is stored under the last path component,
    // as a docker-archive's RepoTag is.
    let evil = r.dir.path().join("evil.tar");
    skopeo_copy(&hello_v2(), &format!("oci-archive:{}:{reg_name}", evil.display()));
    let p = r.json(&["pull", &format!("oci-archive:{}", evil.display())]);
    assert_eq!(p["name"], "etcd:v1");
    assert_ne!(p["digest"], pulled["digest"]);
    assert_eq!(r.json(&["images", "info", &reg_name])["digest"], pulled["digest"]);
    // Named by the reference, the same: refused here only because etcd:v1 is now the first one's.
    let err = r.fails(&["pull", &format!("oci-archive:{}:{reg_name}", evil.display())], 1);
    assert_eq!(
        one_line(&err),
        format!(
            "hoist: oci-archive:{0}:{reg_name}: name etcd:v1 belongs to oci-archive:{0}; not re-pointed",
            evil.display()
        )
    );
    assert_eq!(names(&r), [reg_name.clone(), "etcd:v1".to_string()]);

    // The library's pull says the same (no name can come from the source's annotation alone).
    let src = match hoist::imgref::ImageArg::parse(&format!("oci-archive:{}", evil.display())).unwrap() {
        hoist::imgref::ImageArg::Source(s) => s,
        o => panic!("{o:?}"),
    };
    let again = fetch::pull(&store(&r), &src, &common::insecure_pull(), &Progress::silent()).unwrap();
    assert_eq!((again.name.to_string(), again.unchanged()), ("etcd:v1".to_string(), true));
}
