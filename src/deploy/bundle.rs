//! Rendering `config.json`, the OCI runtime config of a deployment: the image's
//! `config.json.template`, or one generated from the image config when the image has no
//! `/exports`. Pure (the one lookup, a user name in the image's `/etc/passwd`, is passed in).
//!
//! Rules every config must keep (atomic's, checked after rendering): `root.path` is `rootfs`,
//! `root.readonly` is true, `process.terminal` is false.

use std::collections::BTreeMap;

use oci_spec::image::ImageConfiguration;
use serde_json::{Value, json};

use super::compat;
use super::seccomp::Seccomp;
use super::values::{Fragment, ValueError, Values};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error("{file}: rendered config is not valid JSON: {reason} (check --set values used in it)")]
    Json { file: String, reason: String },
    /// A value inserted as JSON text (outside any JSON string) broke the config.
    #[error(
        "{file}: ${var} is outside a JSON string, so its value is inserted as JSON text, and with {value:?} the config is not {what}: {reason}"
    )]
    Fragment { file: String, var: String, value: String, what: &'static str, reason: String },
    #[error("{file}: not a valid OCI runtime config: {reason}")]
    Spec { file: String, reason: String },
    #[error("{file}: cannot be read as runtime-spec 1.0: {source}")]
    Compat { file: String, source: super::compat::CompatError },
    #[error("{file}: {reason}")]
    Rule { file: String, reason: &'static str },
    #[error("image config: {0}")]
    Image(String),
}

/// Podman's default capability set: what a generated config grants (no CAP_MKNOD, CAP_NET_RAW,
/// CAP_AUDIT_WRITE).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// The devices a generated config allows, after denying all: (type, major, minor, access);
/// minor None = all minors. The same list goes into the unit's `DeviceAllow=`.
pub const ALLOWED_DEVICES: &[(&str, i64, Option<i64>, &str)] = &[
    ("c", 1, Some(3), "rwm"), // /dev/null
    ("c", 1, Some(5), "rwm"), // /dev/zero
    ("c", 1, Some(7), "rwm"), // /dev/full
    ("c", 5, Some(0), "rwm"), // /dev/tty
    ("c", 1, Some(8), "rwm"), // /dev/random
    ("c", 1, Some(9), "rwm"), // /dev/urandom
    ("c", 5, Some(2), "rwm"), // /dev/ptmx
    ("c", 136, None, "rwm"),  // /dev/pts/*
    ("c", 5, Some(1), "rwm"), // /dev/console
];

/// Paths hidden from the container (podman's list).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/dev/block",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
    "/sys/fs/selinux",
];

/// Paths the container sees read-only.
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Sizes of the tmpfs mounts of a generated config.
pub const DEV_SIZE: &str = "size=65536k";
pub const SHM_SIZE: &str = "size=65536k";
pub const RUN_SIZE: &str = "size=64m";
pub const TMP_SIZE: &str = "size=256m";

/// A rendered config: pretty JSON, and what was converted from older runtime-spec versions
/// (see [`super::compat`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub json: String,
    pub notes: Vec<String>,
}

/// Renders (or generates) the config and checks the rules.
pub fn render(
    template: Option<&str>,
    image: &ImageConfiguration,
    values: &Values,
    user: Option<(u32, u32)>,
    seccomp: &Seccomp,
) -> Result<Rendered, BundleError> {
    let mut notes = Vec::new();
    let (file, spec) = match template {
        Some(t) => {
            let file = "/exports/config.json.template";
            let (text, fragments) = values.render_json(file, t)?;
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                blame(file, &text, &fragments, "valid JSON", &e)
                    .unwrap_or_else(|| BundleError::Json { file: file.into(), reason: e.to_string() })
            })?;
            // Parsed as a runtime config from the text too only when a fragment could be to
            // blame (the text's positions name it); `check` below covers every config.
            if fragments.iter().any(|f| !f.value.is_empty())
                && let Err(e) = serde_json::from_str::<oci_spec::runtime::Spec>(&text)
                && let Some(err) = blame(file, &text, &fragments, "an OCI runtime config", &e)
            {
                return Err(err);
            }
            let mut v = v;
            notes = compat::upgrade(&mut v).map_err(|e| BundleError::Compat { file: file.into(), source: e })?;
            (file, v)
        }
        None => ("generated config", generate(image, values, user, seccomp)?),
    };
    check(file, &spec)?;
    Ok(Rendered { json: serde_json::to_string_pretty(&spec).expect("json"), notes })
}

/// The JSON fragment a parse error of the rendered text is in (or just after), if any.
fn blame(
    file: &str,
    text: &str,
    fragments: &[Fragment],
    what: &'static str,
    e: &serde_json::Error,
) -> Option<BundleError> {
    // serde_json's position: 1-based line, column of the byte where it stopped.
    let line_start: usize = text.split_inclusive('\n').take(e.line().saturating_sub(1)).map(str::len).sum();
    let offset = line_start + e.column().saturating_sub(1);
    let f = fragments.iter().rev().find(|f| {
        !f.value.is_empty()
            && f.out.start <= offset
            && (offset < f.out.end || text.get(f.out.end..offset).is_some_and(|between| between.trim().is_empty()))
    })?;
    Some(BundleError::Fragment {
        file: file.into(),
        var: f.var.clone(),
        value: f.value.clone(),
        what,
        reason: e.to_string(),
    })
}

fn check(file: &str, spec: &Value) -> Result<(), BundleError> {
    let rule = |reason| BundleError::Rule { file: file.to_string(), reason };
    serde_path_to_error::deserialize::<_, oci_spec::runtime::Spec>(spec.clone()).map_err(|e| {
        let at = e.path().to_string();
        let reason = if at == "." { e.inner().to_string() } else { format!("{at}: {}", e.inner()) };
        BundleError::Spec { file: file.into(), reason }
    })?;
    if spec["root"]["path"] != "rootfs" {
        return Err(rule("root.path must be \"rootfs\""));
    }
    if spec["root"]["readonly"] != true {
        return Err(rule("root.readonly must be true (system containers run from a read-only checkout)"));
    }
    if spec["process"]["terminal"] == true {
        return Err(rule("process.terminal must be false (a service has no console)"));
    }
    Ok(())
}

/// Where an image VOLUME lives on the host: `$STATE_DIRECTORY/$NAME/<path with / as ->`.
pub fn volume_source(values: &Values, volume: &str) -> String {
    let state = values.get("STATE_DIRECTORY").unwrap_or("/var/lib");
    let name = values.get("NAME").unwrap_or("container");
    let flat = volume.trim_matches('/').replace('/', "-");
    format!("{state}/{name}/{}", if flat.is_empty() { "root" } else { &flat })
}

/// A config for an image without `/exports`: its Entrypoint/Cmd, Env, WorkingDir, User, and one
/// host directory per VOLUME; host network, own pid/ipc/uts/mount namespaces. At least as
/// tight as podman's defaults: [`DEFAULT_CAPS`], no new privileges, all devices denied but
/// [`ALLOWED_DEVICES`], [`MASKED_PATHS`], [`READONLY_PATHS`], sized nodev/nosuid tmpfs mounts,
/// and the seccomp profile `seccomp` chose.
pub fn generate(
    image: &ImageConfiguration,
    values: &Values,
    user: Option<(u32, u32)>,
    seccomp: &Seccomp,
) -> Result<Value, BundleError> {
    let cfg = image.config().clone().unwrap_or_default();
    let mut args: Vec<String> = cfg.entrypoint().clone().unwrap_or_default();
    args.extend(cfg.cmd().clone().unwrap_or_default());
    if args.is_empty() {
        return Err(BundleError::Image("no Entrypoint or Cmd: the image needs /exports/config.json.template".into()));
    }
    let mut env: Vec<String> = cfg.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if let Some(name) = values.get("NAME") {
        env.push(format!("NAME={name}"));
    }
    let (uid, gid) = user.unwrap_or((0, 0));
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "noexec", "strictatime", "mode=755", DEV_SIZE]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", SHM_SIZE]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755", RUN_SIZE]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777", TMP_SIZE]}),
    ];
    let volumes: BTreeMap<String, ()> =
        cfg.volumes().clone().unwrap_or_default().into_iter().map(|v| (v, ())).collect();
    for v in volumes.keys() {
        mounts.push(
            json!({"destination": v, "type": "bind", "source": volume_source(values, v), "options": ["rbind", "rw"]}),
        );
    }
    let devices: Vec<Value> = std::iter::once(json!({"allow": false, "access": "rwm"}))
        .chain(ALLOWED_DEVICES.iter().map(|&(typ, major, minor, access)| match minor {
            Some(minor) => json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access}),
            None => json!({"allow": true, "type": typ, "major": major, "access": access}),
        }))
        .collect();
    let mut linux = json!({
        "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
        "resources": {"devices": devices},
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS
    });
    if let Some(profile) = seccomp.section(std::env::consts::ARCH) {
        linux["seccomp"] = profile;
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": env,
            "cwd": cfg.working_dir().clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()),
            "capabilities": {
                "bounding": DEFAULT_CAPS,
                "effective": DEFAULT_CAPS,
                "permitted": DEFAULT_CAPS,
                "inheritable": [],
                "ambient": []
            },
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": values.get("NAME").unwrap_or("container"),
        "mounts": mounts,
        "linux": linux
    }))
}

/// Host directories the config bind-mounts (tmpfiles creates the missing ones).
pub fn bind_sources(config_json: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(config_json).unwrap_or(Value::Null);
    v["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["type"] == "bind"
                || m["options"].as_array().is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
        })
        .filter_map(|m| m["source"].as_str().map(str::to_string))
        .collect()
}

/// Resolves an image `User` (`uid[:gid]` or `name[:group]`) with the image's passwd/group text.
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<(u32, u32), BundleError> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |table: &str, name: &str, field: usize| {
        table.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f.get(field).and_then(|x| x.parse::<u32>().ok())).flatten()
        })
    };
    let uid = u
        .parse()
        .ok()
        .or_else(|| lookup(passwd, u, 2))
        .ok_or_else(|| BundleError::Image(format!("user {u:?} not found in the image's /etc/passwd")))?;
    let gid = match g {
        Some(g) => g
            .parse()
            .ok()
            .or_else(|| lookup(group, g, 2))
            .ok_or_else(|| BundleError::Image(format!("group {g:?} not found in the image's /etc/group")))?,
        None => passwd
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(uid))
                    .then(|| f.get(3).and_then(|x| x.parse().ok()))
                    .flatten()
            })
            .unwrap_or(0),
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values(
            [("NAME", "web"), ("STATE_DIRECTORY", "/var/lib"), ("PORT", "80")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn image(cfg: Value) -> ImageConfiguration {
        serde_json::from_value(json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "config": cfg})).unwrap()
    }

    #[test]
    fn generated_from_image_config() {
        let img = image(
            json!({"Entrypoint": ["/bin/httpd"], "Cmd": ["-f"], "Env": ["A=1"], "WorkingDir": "/srv", "Volumes": {"/var/www/data": {}}}),
        );
        let text = render(None, &img, &values(), Some((33, 33)), &Seccomp::Default).unwrap().json;
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["process"]["args"], json!(["/bin/httpd", "-f"]));
        assert_eq!(v["process"]["cwd"], "/srv");
        assert_eq!(v["process"]["user"], json!({"uid": 33, "gid": 33}));
        assert!(v["process"]["env"].as_array().unwrap().contains(&json!("A=1")));
        assert_eq!(bind_sources(&text), ["/var/lib/web/var-www-data"]);
        assert!(v["linux"]["namespaces"].as_array().unwrap().iter().all(|n| n["type"] != "network"), "host network");
        assert!(matches!(
            render(None, &image(json!({})), &values(), None, &Seccomp::Default),
            Err(BundleError::Image(_))
        ));
    }

    fn generated(seccomp: &Seccomp) -> Value {
        let img = image(json!({"Cmd": ["/bin/sh"]}));
        serde_json::from_str(&render(None, &img, &values(), None, seccomp).unwrap().json).unwrap()
    }

    #[test]
    fn generated_defaults_are_tight() {
        let v = generated(&Seccomp::Default);
        let caps = &v["process"]["capabilities"];
        let want: Vec<&str> = vec![
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE",
            "CAP_SETFCAP",
            "CAP_SETGID",
            "CAP_SETPCAP",
            "CAP_SETUID",
            "CAP_SYS_CHROOT",
        ];
        for set in ["bounding", "effective", "permitted"] {
            assert_eq!(caps[set], json!(want), "{set}");
        }
        assert_eq!((caps["inheritable"].clone(), caps["ambient"].clone()), (json!([]), json!([])));
        assert_eq!(v["process"]["noNewPrivileges"], true);
        let devices = v["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(devices[0], json!({"allow": false, "access": "rwm"}), "deny-all first");
        assert_eq!(devices.len(), 10);
        assert!(devices[1..].iter().all(|d| d["allow"] == true && d["type"] == "c"));
        assert!(devices.contains(&json!({"allow": true, "type": "c", "major": 136, "access": "rwm"})));
        assert!(devices.contains(&json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"})));
        let masked = v["linux"]["maskedPaths"].as_array().unwrap();
        for p in [
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/fs/selinux",
            "/sys/dev/block",
            "/proc/asound",
            "/sys/devices/virtual/powercap",
        ] {
            assert!(masked.contains(&json!(p)), "{p} masked");
        }
        assert_eq!(
            v["linux"]["readonlyPaths"],
            json!(["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"])
        );
        let opts = |dest: &str| {
            let m = v["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == dest).unwrap();
            m["options"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_string()).collect::<Vec<_>>()
        };
        for (dest, size) in
            [("/dev", "size=65536k"), ("/dev/shm", "size=65536k"), ("/run", "size=64m"), ("/tmp", "size=256m")]
        {
            let o = opts(dest);
            assert!(o.contains(&size.to_string()) && o.contains(&"nosuid".to_string()), "{dest}: {o:?}");
        }
        for dest in ["/dev/shm", "/dev/mqueue", "/run", "/tmp", "/sys"] {
            assert!(opts(dest).contains(&"nodev".to_string()), "{dest} nodev");
        }
        assert!(opts("/dev/pts").contains(&"noexec".to_string()));
        let sc = &v["linux"]["seccomp"];
        assert_eq!(sc["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(sc["defaultErrnoRet"], 1);
        assert!(!sc["syscalls"].as_array().unwrap().is_empty());
    }

    #[test]
    fn seccomp_choices() {
        assert!(generated(&Seccomp::Unconfined)["linux"].get("seccomp").is_none(), "unconfined: no section");
        let profile =
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]});
        let file = Seccomp::File { path: "/etc/p.json".into(), profile: profile.clone() };
        assert_eq!(generated(&file)["linux"]["seccomp"], profile, "a file profile is used as given");
        // Templates (trusted /exports) keep what they say: no seccomp is added.
        let img = image(json!({}));
        let t = r#"{"ociVersion": "1.0.2", "process": {"args": ["/x"], "cwd": "/", "user": {"uid": 0, "gid": 0}}, "root": {"path": "rootfs", "readonly": true}}"#;
        let v: Value =
            serde_json::from_str(&render(Some(t), &img, &values(), None, &Seccomp::Default).unwrap().json).unwrap();
        assert!(v.get("linux").is_none());
    }

    #[test]
    fn template_rules() {
        let img = image(json!({}));
        let ok = r#"{"ociVersion": "1.0.2", "process": {"args": ["/x"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PORT=$PORT"]}, "root": {"path": "rootfs", "readonly": true}}"#;
        assert!(render(Some(ok), &img, &values(), None, &Seccomp::Default).unwrap().json.contains("PORT=80"));
        let rw = ok.replace("\"readonly\": true", "\"readonly\": false");
        assert!(matches!(render(Some(&rw), &img, &values(), None, &Seccomp::Default), Err(BundleError::Rule { .. })));
        let path = ok.replace("\"path\": \"rootfs\"", "\"path\": \"/\"");
        assert!(matches!(render(Some(&path), &img, &values(), None, &Seccomp::Default), Err(BundleError::Rule { .. })));
        // Outside a string the value is JSON text; what it makes must still be a runtime config.
        let bare = ok.replace("\"PORT=$PORT\"", "$PORT");
        let numbers = Values(BTreeMap::from([("PORT".into(), "1, 2".into())]));
        assert_eq!(
            render(Some(&bare), &img, &numbers, None, &Seccomp::Default).unwrap_err().to_string(),
            "/exports/config.json.template: $PORT is outside a JSON string, so its value is inserted as JSON text, \
             and with \"1, 2\" the config is not an OCI runtime config: invalid type: integer `1`, expected a string \
             at line 1 column 103"
        );
        let unclosed = ok.replace("\"PORT=$PORT\"]", "\"PORT=$PORT\"");
        assert!(matches!(
            render(Some(&unclosed), &img, &values(), None, &Seccomp::Default),
            Err(BundleError::Json { .. })
        ));
    }

    /// atomic's `$ADDTL_MOUNTS`: a bare variable at the end of `mounts`, empty by default, that an
    /// admin sets to `,{…}` to add mounts.
    #[test]
    fn json_fragments_add_structure_where_the_template_asks() {
        let img = image(json!({}));
        let t = r#"{"ociVersion": "1.0.2", "process": {"args": ["/x"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
  "root": {"path": "rootfs", "readonly": true},
  "mounts": [
    {"destination": "/etc/app", "type": "bind", "source": "/etc/app", "options": ["rbind", "ro"]}
    $ADDTL_MOUNTS
  ]}"#;
        let with = |v: &str| Values(BTreeMap::from([("ADDTL_MOUNTS".into(), v.into())]));
        let mounts = |v: &str| -> Vec<String> {
            let out: Value =
                serde_json::from_str(&render(Some(t), &img, &with(v), None, &Seccomp::Default).unwrap().json).unwrap();
            out["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(mounts(""), ["/etc/app"], "empty: nothing inserted");
        let cni = r#",{"destination": "/opt/cni", "type": "bind", "source": "/opt/cni", "options": ["rbind", "ro"]}"#;
        assert_eq!(mounts(cni), ["/etc/app", "/opt/cni"]);
        let err = |v: &str| render(Some(t), &img, &with(v), None, &Seccomp::Default).unwrap_err().to_string();
        assert_eq!(
            err(&cni[1..]),
            format!(
                "/exports/config.json.template: $ADDTL_MOUNTS is outside a JSON string, so its value is inserted as \
                 JSON text, and with {:?} the config is not valid JSON: expected `,` or `]` at line 5 column 5",
                &cni[1..]
            ),
            "the missing comma is blamed on the variable"
        );
        assert_eq!(
            err(",{\"destination\": 1}"),
            "/exports/config.json.template: $ADDTL_MOUNTS is outside a JSON string, so its value is inserted as \
             JSON text, and with \",{\\\"destination\\\": 1}\" the config is not an OCI runtime config: invalid \
             type: integer `1`, expected path string at line 5 column 22"
        );
        // A broken template with a harmless fragment blames the template, not the variable.
        let broken = t.replace("\"rootfs\", \"readonly\": true}", "\"rootfs\" \"readonly\": true}");
        assert!(matches!(
            render(Some(&broken), &img, &with(cni), None, &Seccomp::Default),
            Err(BundleError::Json { .. })
        ));
    }

    #[test]
    fn users() {
        let passwd = "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n";
        let group = "root:x:0:\nwww:x:34:\nadm:x:4:\n";
        assert_eq!(resolve_user("www", passwd, group).unwrap(), (33, 34));
        assert_eq!(resolve_user("1000:adm", passwd, group).unwrap(), (1000, 4));
        assert_eq!(resolve_user("33", passwd, group).unwrap(), (33, 34));
        assert!(resolve_user("nobody", passwd, group).is_err());
    }
}
