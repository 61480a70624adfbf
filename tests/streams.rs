//! Tier 3: tag streams and registries.conf on a real (throwaway) systemd host. Fedora publishes
//! `Name-Version-Release` (never moves), `Name-Version` (moves with each release of that version)
//! and `Name` (moves with everything); a local registry publishes 1.2.3, 1.2.4 and 1.3.0 that way
//! and containers following `app:1.2.3`, `app:1.2`, `app:1`, `app:latest` and a digest-pinned
//! `app:1.2@sha256:…` are updated after each release. The registry is declared the documented
//! way (`insecure = true` in /etc/containers/registries.conf, no `--tls-verify=false`), installed
//! through a short-name alias from a drop-in, and a short name with two candidates is asked about
//! on a terminal (util-linux `script`), the answer recorded as podman does. And certs.d at its real
//! places: a registry with a private CA, trusted through /etc/containers/certs.d/HOST:PORT/ and
//! /etc/docker/certs.d/HOST:PORT/.

mod common;

use common::registry::{Registry, closed_port};
use common::testbed::Testbed;
use common::*;
use serde_json::Value;

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn archive(p: &std::path::Path) -> String {
    format!("oci-archive:{}", p.display())
}

/// `NAME -> short digest` of every container, from `hoist --json list --all`.
fn digests(tb: &Testbed) -> Vec<(String, String)> {
    let j = json_of(&tb.ok("hoist --json list --all"));
    j.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["digest"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn fedora_style_tag_streams_and_registries_conf() {
    if !common::privileged("streams::fedora_style_tag_streams_and_registries_conf") {
        return;
    }
    let tb = Testbed::up("unified");
    let reg = Registry::start_in(&tb);
    let a = reg.addr.clone();
    tb.ok(&format!(
        "mkdir -p /etc/containers/registries.conf.d && printf '[[registry]]\\nlocation = \"{a}\"\\ninsecure = true\\n' > /etc/containers/registries.conf && \
         printf '[aliases]\\n\"app\" = \"{a}/app\"\\n' > /etc/containers/registries.conf.d/50-app.conf"
    ));
    let release = |image: &std::path::Path, tags: &[&str]| -> String {
        let d = reg.push(&archive(image), tags[0], false);
        for t in &tags[1..] {
            assert_eq!(reg.push(&archive(image), t, false), d);
        }
        d
    };
    let v123 = release(&hello(), &["app:1.2.3", "app:1.2", "app:1", "app:latest"]);
    // The alias from the drop-in: `app:1.2.3` is the registry's app:1.2.3; no --tls-verify.
    let out = tb.ok("hoist install --name rel app:1.2.3 2>&1");
    assert!(out.contains(&format!("Resolved short name \"app:1.2.3\" to {a}/app:1.2.3")), "{out}");
    for (name, r) in [("ver", "app:1.2"), ("major", "app:1"), ("latest", "app:latest")] {
        tb.ok(&format!("hoist -q install --name {name} {r}"));
    }
    tb.ok(&format!("hoist -q install --name pin docker://{a}/app:1.2@{v123}"));
    let all = |d: &str| {
        ["latest", "major", "pin", "rel", "ver"].iter().map(|n| (n.to_string(), d.to_string())).collect::<Vec<_>>()
    };
    assert_eq!(digests(&tb), all(&v123));
    let list = tb.ok("hoist list --all");
    assert!(list.contains(&format!("{a}/app:1.2 (pinned)")) && list.contains(&format!("{a}/app:1.2.3 ")), "{list}");

    // 1.2.4: the version and major streams and latest move; the release and the pin do not.
    let v124 = release(&hello_v2(), &["app:1.2.4", "app:1.2", "app:1", "app:latest"]);
    let out = tb.ok("hoist update --all 2>&1");
    let short = |d: &str| d.strip_prefix("sha256:").unwrap()[..12].to_string();
    assert!(
        out.contains(&format!("pin: pinned to {} by its reference {a}/app:1.2@{v123}; not moved", short(&v123))),
        "{out}"
    );
    assert!(out.contains(&format!("rel: already up to date ({})", short(&v123))), "{out}");
    let want = |m: &[(&str, &str)]| m.iter().map(|(n, d)| (n.to_string(), d.to_string())).collect::<Vec<_>>();
    assert_eq!(
        digests(&tb),
        want(&[("latest", &v124), ("major", &v124), ("pin", &v123), ("rel", &v123), ("ver", &v124)])
    );

    // 1.3.0: a new minor version: major and latest move, 1.2 stays on 1.2.4.
    let v130 = release(&hello_spec03(), &["app:1.3.0", "app:1.3", "app:1", "app:latest"]);
    tb.ok("hoist -q update --all");
    assert_eq!(
        digests(&tb),
        want(&[("latest", &v130), ("major", &v130), ("pin", &v123), ("rel", &v123), ("ver", &v124)])
    );
    let status = tb.ok("hoist status ver");
    assert!(
        status.contains(&format!("  follows:     {a}/app:1.2 (update moves to what the tag names then)")),
        "{status}"
    );
    assert!(status.contains(&format!("  fetched:     http://{a}/app")), "{status}");
    let status = tb.ok("hoist status pin");
    assert!(status.contains(&format!("  follows:     nothing: pinned to {v123} (update never moves it)")), "{status}");
    // A pinned container moves only when told to follow a tag.
    let j = json_of(&tb.ok(&format!("hoist --json update --rebase {a}/app:1.3 pin")));
    assert_eq!((j[0]["result"].as_str(), j[0]["to"].as_str()), (Some("done"), Some(v130.as_str())), "{j}");

    // A short name with two candidates, asked on a terminal: the answer is pulled and recorded
    // as an alias (podman's file), so the next pull does not ask.
    let down = closed_port();
    reg.push(&archive(&hello()), "team/tool:1", false);
    tb.ok(&format!(
        "printf 'unqualified-search-registries = [\"127.0.0.1:{down}\", \"{a}\"]\\nshort-name-mode = \"enforcing\"\\n' > /etc/containers/registries.conf.d/60-search.conf"
    ));
    let refused = tb.sh("hoist pull team/tool:1 </dev/null");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("ambiguous short name and short-name-mode is enforcing"));
    let out = tb.ok("printf '2\\n' | script -qec 'hoist pull team/tool:1' /dev/null");
    assert!(out.contains("? Which image does \"team/tool:1\" mean?"), "{out}");
    assert!(out.contains(&format!("  2. {a}/team/tool:1")), "{out}");
    let cache = tb.ok("cat /var/cache/containers/short-name-aliases.conf");
    assert!(cache.contains(&format!("\"team/tool\" = \"{a}/team/tool\"")), "{cache}");
    let out = tb.ok("hoist pull team/tool:1 </dev/null 2>&1");
    assert!(out.contains(&format!("Resolved short name \"team/tool:1\" to {a}/team/tool:1")), "{out}");

    for n in ["latest", "major", "pin", "rel", "ver"] {
        tb.ok(&format!("hoist -q uninstall {n}"));
    }
}

/// containers-certs.d(5) at its real places: a registry with a private CA is refused until its CA
/// is in /etc/containers/certs.d/HOST:PORT/ (or /etc/docker/certs.d/…), then pulled over verified
/// HTTPS with no flag at all.
#[test]
fn certs_d_per_registry_host() {
    if !common::privileged("streams::certs_d_per_registry_host") {
        return;
    }
    let tb = Testbed::up("unified");
    let reg = Registry::with_tls_in(&tb);
    let digest = reg.push(&archive(&hello()), "app:1", false);
    let a = reg.addr.clone();
    let r = reg.reference("app:1");
    let refused = tb.sh(&format!("hoist pull {r}"));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains(&format!("a private CA goes in /etc/containers/certs.d/{a}/ca.crt")),
        "{err}"
    );
    let ca = reg.ca_dir().join("ca.crt");
    for (i, dir) in ["/etc/docker/certs.d", "/etc/containers/certs.d"].iter().enumerate() {
        tb.ok(&format!(
            "rm -rf /etc/docker/certs.d /etc/containers/certs.d; mkdir -p {dir}/{a} && cp {} {dir}/{a}/ca.crt",
            ca.display()
        ));
        // A state root of its own each time: nothing is remembered from the previous pull.
        let root = format!("--root /var/tmp/certs-root-{i}");
        let j = json_of(&tb.ok(&format!("hoist {root} --json pull {r}")));
        assert_eq!(j["digest"], digest.as_str(), "{dir}: {j}");
        let info = json_of(&tb.ok(&format!("hoist {root} --json images info {r}")));
        assert_eq!(info["fetched_from"], format!("https://{a}/app"), "{dir}: verified HTTPS");
    }
    // The authority is for that registry only: under another host's directory it does not count.
    tb.ok(&format!(
        "rm -rf /etc/containers/certs.d; mkdir -p /etc/containers/certs.d/other.example:5000 && cp {} /etc/containers/certs.d/other.example:5000/",
        ca.display()
    ));
    let refused = tb.sh(&format!("hoist --root /var/tmp/certs-root-2 pull {r}"));
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("TLS connection"));
}
