use super::*;

fn conf(files: &[(&str, &str)]) -> Registries {
    let mut r = Registries::default();
    for (p, t) in files {
        r.merge_text(Path::new(p), t).unwrap_or_else(|e| panic!("{p}: {e}"));
    }
    r
}

fn refr(s: &str) -> RegistryRef {
    RegistryRef::parse(s).unwrap()
}

/// The endpoints as `[m|p][!]REF` (mirror/primary, insecure).
fn plan(r: &Registries, s: &str) -> Vec<String> {
    r.plan(&refr(s))
        .unwrap()
        .iter()
        .map(|e| format!("{}{}{}", if e.mirror { "m" } else { "p" }, if e.insecure { "!" } else { "" }, e.reference))
        .collect()
}

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn longest_prefix_location_and_mirrors() {
    let r = conf(&[(
        "/a.conf",
        r#"
[[registry]]
location = "example.com"
insecure = true

[[registry]]
prefix = "example.com/foo"
location = "internal.example.net/bar"
[[registry.mirror]]
location = "mirror-0.local/mirror-for-foo"
[[registry.mirror]]
location = "mirror-1.local:5000/foo"
insecure = true
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "mirror-2.local/foo"
pull-from-mirror = "tag-only"

[[registry]]
prefix = "example.com/foo/pinned:1.0"
location = "pins.local/foo/pinned:1.0-final"

[[registry]]
prefix = "*.corp.example"
blocked = true

[[registry]]
prefix = "*.internal.example"
[[registry.mirror]]
location = "cache.lan:5000"
insecure = true

[[registry]]
location = "blocked.example"
blocked = true

[[registry]]
location = "docker.io/library/busybox"
mirror-by-digest-only = true
[[registry.mirror]]
location = "hub-cache.local/library/busybox"
"#,
    )]);
    assert_eq!(
        plan(&r, "example.com/foo/image:latest"),
        [
            "mmirror-0.local/mirror-for-foo/image:latest",
            "mmirror-2.local/foo/image:latest",
            "pinternal.example.net/bar/image:latest"
        ]
    );
    assert_eq!(
        plan(&r, &format!("example.com/foo/image@{DIGEST}")),
        [
            format!("mmirror-0.local/mirror-for-foo/image@{DIGEST}"),
            format!("m!mirror-1.local:5000/foo/image@{DIGEST}"),
            format!("pinternal.example.net/bar/image@{DIGEST}")
        ]
    );
    // Components match whole: foobar is not under foo; a bare host does not match a port.
    assert_eq!(plan(&r, "example.com/foobar:1"), ["p!example.com/foobar:1"]);
    assert_eq!(plan(&r, "example.com:5000/foo/x:1"), ["pexample.com:5000/foo/x:1"]);
    assert_eq!(plan(&r, "example.com/foo/pinned:1.0"), ["ppins.local/foo/pinned:1.0-final"]);
    assert_eq!(plan(&r, "quay.io/x:1"), ["pquay.io/x:1"]);
    // docker.io is normalised with library/ before matching; mirror-by-digest-only.
    assert_eq!(plan(&r, "busybox"), ["pdocker.io/library/busybox:latest"]);
    assert_eq!(
        plan(&r, &format!("busybox@{DIGEST}")),
        [format!("mhub-cache.local/library/busybox@{DIGEST}"), format!("pdocker.io/library/busybox@{DIGEST}")]
    );
    let e = r.plan(&refr("a.corp.example/x:1")).unwrap_err().to_string();
    assert_eq!(
        e,
        "a.corp.example/x:1: pulls from this registry are blocked by /a.conf ([[registry]] prefix = \"*.corp.example\")"
    );
    assert!(r.plan(&refr("corp.example/x:1")).is_ok(), "the wildcard wants a subdomain");
    // A wildcard's mirror replaces the host; the mirror's insecure never reaches the primary.
    assert_eq!(plan(&r, "a.internal.example/team/x:1"), ["m!cache.lan:5000/team/x:1", "pa.internal.example/team/x:1"]);
    // Host spellings cannot step around a block: case, another port.
    for s in ["Blocked.Example/x:1", "blocked.example:443/x:1", "blocked.example:5000/x:1"] {
        assert!(matches!(r.plan(&refr(s)), Err(ConfError::Blocked { .. })), "{s}");
    }
}

#[test]
fn drop_ins_override_by_prefix_and_merge_aliases() {
    let r = conf(&[
        (
            "/etc/r.conf",
            "unqualified-search-registries = [\"a.io\", \"b.io\"]\nshort-name-mode = \"enforcing\"\n[[registry]]\nlocation = \"a.io\"\nblocked = true\n[aliases]\n\"etcd\" = \"quay.io/coreos/etcd\"\n\"x\" = \"a.io/x\"\n",
        ),
        (
            "/etc/r.d/10.conf",
            "[[registry]]\nlocation = \"a.io\"\ninsecure = true\n[aliases]\n\"x\" = \"\"\n\"app\" = \"127.0.0.1:5000/app\"\n",
        ),
    ]);
    assert_eq!(plan(&r, "a.io/y:1"), ["p!a.io/y:1"], "the drop-in's table replaces the main file's");
    assert_eq!(r.search.as_ref().unwrap().value, ["a.io", "b.io"]);
    assert_eq!(r.mode(), ShortNameMode::Enforcing);
    let aliases: Vec<(&str, &str)> = r.aliases.iter().map(|(k, v)| (k.as_str(), v.value.as_str())).collect();
    assert_eq!(aliases, [("app", "127.0.0.1:5000/app"), ("etcd", "quay.io/coreos/etcd")]);
    assert_eq!(r.files, [PathBuf::from("/etc/r.conf"), PathBuf::from("/etc/r.d/10.conf")]);
}

#[test]
fn short_name_resolution() {
    let r = conf(&[(
        "/r.conf",
        "unqualified-search-registries = [\"docker.io\", \"quay.io\"]\n[aliases]\n\"etcd\" = \"quay.io/coreos/etcd\"\n",
    )]);
    assert_eq!(
        r.short_name("etcd:v3.4").unwrap(),
        Some(shortnames::Resolution::Alias { reference: refr("quay.io/coreos/etcd:v3.4"), file: "/r.conf".into() })
    );
    assert_eq!(
        r.short_name("busybox").unwrap(),
        Some(shortnames::Resolution::Search {
            candidates: vec![refr("docker.io/library/busybox:latest"), refr("quay.io/busybox:latest")],
            mode: ShortNameMode::Permissive
        })
    );
    assert_eq!(r.short_name("localhost/x").unwrap(), None);
    let none = Registries::default().short_name("etcd").unwrap_err().to_string();
    assert_eq!(
        none,
        "image \"etcd\" not found in the store (see `hoist images`), and registries.conf has no alias and no \
         unqualified-search-registries for it (no registries.conf was found)"
    );
    // Enforcing without a terminal (the tests have none) never guesses.
    let e = shortnames::choose(
        "busybox",
        shortnames::Resolution::Search {
            candidates: vec![refr("docker.io/library/busybox"), refr("quay.io/busybox")],
            mode: ShortNameMode::Enforcing,
        },
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "busybox: ambiguous short name and short-name-mode is enforcing, with no terminal to ask: use one of \
         docker.io/library/busybox:latest, quay.io/busybox:latest, or add an [aliases] entry"
    );
}

#[test]
fn invalid_tables_are_refused_by_name() {
    for (text, want) in [
        ("[[registry]]\ninsecure = true\n", "/r.conf: a [[registry]] table with neither prefix nor location"),
        (
            "[[registry]]\nprefix = \"*.x.io\"\nlocation = \"y.io\"\n",
            "/r.conf ([[registry]] prefix = \"*.x.io\"): location = \"y.io\": a wildcard prefix cannot be relocated",
        ),
        (
            "[[registry]]\nprefix = \"x.io\"\nlocation = \"https://y.io\"\n",
            "/r.conf ([[registry]] prefix = \"x.io\"): location = \"https://y.io\" is not host[:port][/namespace…] (no scheme)",
        ),
        (
            "[[registry]]\nlocation = \"x.io\"\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"sometimes\"\n",
            "/r.conf ([[registry]] prefix = \"x.io\"): mirror \"m.io\": pull-from-mirror = \"sometimes\": expected \"all\", \"digest-only\" or \"tag-only\"",
        ),
        (
            "[[registry]]\nlocation = \"x.io\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"all\"\n",
            "/r.conf ([[registry]] prefix = \"x.io\"): mirror \"m.io\": pull-from-mirror cannot be combined with the table's mirror-by-digest-only",
        ),
        (
            "[[registry]]\nlocation = \"x.io\"\n[[registry]]\nlocation = \"x.io\"\n",
            "/r.conf ([[registry]] prefix = \"x.io\"): this prefix is defined twice in the file",
        ),
        (
            "[[registry]]\nprefix = \"x.io\"\ninsecure = true\n",
            "/r.conf ([[registry]] prefix = \"x.io\"): location is unset; only a *.DOMAIN prefix may omit it (write location = \"…\", usually the prefix itself)",
        ),
        (
            "[[registry]]\nprefix = \"example.com/app\"\nlocation = \"mirror\"\n",
            "/r.conf ([[registry]] prefix = \"example.com/app\"): location = \"mirror\" is not host[:port][/namespace…] (no scheme)",
        ),
        (
            "unqualified-search-registries = [\"myreg\"]\n",
            "/r.conf: unqualified-search-registries: \"myreg\" is not a registry host[:port]",
        ),
        (
            "short-name-mode = \"strict\"\n",
            "/r.conf: short-name-mode = \"strict\": expected \"enforcing\", \"permissive\" or \"disabled\"",
        ),
        (
            "[aliases]\n\"quay.io/x\" = \"quay.io/x\"\n",
            "/r.conf: alias \"quay.io/x\": an alias name is a short name (no registry, tag or digest)",
        ),
        (
            "[aliases]\n\"x\" = \"x:1\"\n",
            "/r.conf: alias \"x\" = \"x:1\": the value must be a fully-qualified name without tag or digest (host/repo)",
        ),
        (
            "unqualified-search-registries = [\"https://x.io\"]\n",
            "/r.conf: unqualified-search-registries: \"https://x.io\" is not a registry host[:port]",
        ),
    ] {
        let e = Registries::default().merge_text(Path::new("/r.conf"), text).unwrap_err().to_string();
        assert_eq!(e, want, "{text}");
    }
}

/// The files Debian's golang-github-containers-common installs (read from this machine when
/// present: what hoist meets on a real host must parse).
#[test]
fn debian_files_parse() {
    let mut r = Registries::default();
    for p in [SYSTEM_CONF, "/etc/containers/registries.conf.d/shortnames.conf"] {
        if let Ok(text) = std::fs::read_to_string(p) {
            r.merge_text(Path::new(p), &text).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    // A copy of the shape of Debian's shortnames.conf, so the test means the same everywhere.
    r.merge_text(
        Path::new("/shortnames.conf"),
        "[aliases]\n  # almalinux\n  \"almalinux\" = \"docker.io/library/almalinux\"\n  \"opensuse/leap\" = \"registry.opensuse.org/opensuse/leap\"\n",
    )
    .unwrap();
    assert_eq!(
        r.short_name("opensuse/leap:15.6").unwrap(),
        Some(shortnames::Resolution::Alias {
            reference: refr("registry.opensuse.org/opensuse/leap:15.6"),
            file: "/shortnames.conf".into()
        })
    );
}

#[test]
fn file_order() {
    let d = tempfile::tempdir().unwrap();
    let main = d.path().join("main.conf");
    let dir = d.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(&main, "unqualified-search-registries = [\"a.io\"]\n").unwrap();
    std::fs::write(dir.join("20-b.conf"), "unqualified-search-registries = [\"c.io\"]\n").unwrap();
    std::fs::write(dir.join("10-a.conf"), "unqualified-search-registries = [\"b.io\"]\n").unwrap();
    std::fs::write(dir.join("30.txt"), "not read").unwrap();
    let r = Options { file: Some(main.clone()), dir: Some(dir.clone()) }.load().unwrap();
    assert_eq!(r.search.as_ref().unwrap().value, ["c.io"]);
    assert_eq!(&r.files[..3], [main.clone(), dir.join("10-a.conf"), dir.join("20-b.conf")]);
    let missing = Options { file: Some(d.path().join("nope.conf")), dir: Some(dir) }.load().unwrap_err().to_string();
    assert!(missing.starts_with(&format!("{}: ", d.path().join("nope.conf").display())), "{missing}");
}
