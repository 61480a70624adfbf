//! Preparing and publishing one deployment slot (used by install, update and repair).
//!
//! [`prepare_slot`] builds a slot completely in its staging directory (checkout, values,
//! `config.json`, unit, tmpfiles snippet, record — the record last) and renames it into place;
//! [`install_host_files`] copies the image's `/exports/hostfs` to the host by the plan in the
//! record; [`publish_unit`] copies the slot's unit and tmpfiles snippet to the host's places.
//! The file names inside a slot belong to [`crate::deploy::container::Slot`].

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Host, OpsError, Result};
use crate::deploy::container::{Container, Slot};
use crate::deploy::hostfs::{self, HostFiles};
use crate::deploy::record::{HostfsPlan, RECORD_VERSION, Record};
use crate::deploy::seccomp::Seccomp;
use crate::deploy::values::{self, Inputs, Target, Values};
use crate::deploy::{bundle, unit};
use crate::fsutil::{self, IoContext};
use crate::health::{self, HealthFlags};
use crate::images;
use crate::layers::ExtractOptions;
use crate::progress::Progress;
use crate::rooted::{self, RootDir};
use crate::store::{Store, StoredImage};

/// The image's `/exports/manifest.json`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportsManifest {
    #[serde(default)]
    default_values: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    rename_files: BTreeMap<String, String>,
    #[serde(default)]
    installed_files_template: Vec<String>,
    #[serde(default)]
    no_container_service: bool,
    #[serde(default)]
    health_check: Option<health::ManifestCheck>,
}

/// Capability names by number (linux/capability.h), for `$ALL_PROCESS_CAPABILITIES`.
const CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

fn all_capabilities() -> String {
    let last: usize = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(CAPS.len() - 1);
    CAPS.iter().take(last + 1).map(|c| format!("\"CAP_{c}\"")).collect::<Vec<_>>().join(",\n")
}

fn new_uuid() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Reads a file of the image's `/exports`, if present: beneath the checkout's root fd, never
/// through a symlink (a symlinked file or directory on the way is refused with an error naming
/// it), regular files only, at most [`images::MAX_EXPORT_FILE`] bytes.
fn export(rootfs: &Path, name: &str) -> Result<Option<String>> {
    let rel = Path::new("exports").join(name);
    let root = RootDir::open(rootfs).at(rootfs)?;
    Ok(read_text(&root, &rel).at(&Path::new("/").join(&rel))?)
}

/// A text file beneath `root` (see [`export`]); `None` when absent.
pub(crate) fn read_text(root: &RootDir, rel: &Path) -> std::io::Result<Option<String>> {
    let symlink = || std::io::Error::other("is a symlink (hoist reads /exports files only as regular files)");
    match root.stat(rel) {
        Ok(None) => return Ok(None),
        Ok(Some(st)) if rooted::Kind::of(&st) == rooted::Kind::Symlink => return Err(symlink()),
        Ok(Some(_)) => {}
        Err(e) if rooted::is_symlink_error(&e) => return Err(symlink()),
        Err(e) => return Err(e),
    }
    let data = root
        .read_limited(rel, images::MAX_EXPORT_FILE)
        .map_err(|e| if rooted::is_symlink_error(&e) { symlink() } else { e })?;
    String::from_utf8(data)
        .map(Some)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// The command lines a unit runs, for hoist's runner or an external runtime.
fn exec_lines(name: &str, destdir: &Path, runtime: Option<&str>) -> [(String, String); 4] {
    let (start, stop, post) = match runtime {
        None => {
            let exe = std::env::current_exe()
                .ok()
                .and_then(|p| fs::canonicalize(p).ok())
                .unwrap_or_else(|| PathBuf::from("/usr/local/bin/hoist"));
            (
                format!("{} internal run-bundle --name {name} --bundle {}", exe.display(), destdir.display()),
                String::new(),
                String::new(),
            )
        }
        Some(rt) => (
            format!("{rt} run --bundle {} {name}", destdir.display()),
            String::new(),
            format!("-{rt} delete --force {name}"),
        ),
    };
    [
        ("EXEC_START".into(), start),
        ("EXEC_STOP".into(), stop),
        ("EXEC_STARTPRE".into(), String::new()),
        ("EXEC_STOPPOST".into(), post),
    ]
}

/// What a deployment slot is prepared for.
#[derive(Debug, Clone, Copy)]
pub struct SlotSpec<'a> {
    pub container: &'a Container,
    pub slot: u8,
    pub sets: &'a BTreeMap<String, String>,
    /// The record of the deployment being updated (values and UUID carry over).
    pub stored: Option<&'a Record>,
    pub runtime: Option<&'a str>,
    pub seccomp: &'a Seccomp,
    /// Limits and device decision for layers the checkout has to extract.
    pub extract: ExtractOptions,
    /// The `--health-*` flags, with what earlier deployments kept.
    pub health: &'a HealthFlags,
}

/// Prepares deployment `slot` of container `name` from `img`, completely, and returns its
/// record. `stored` is the record of the deployment being updated (values and UUID carry over).
pub fn prepare_slot(store: &Store, img: &StoredImage, spec: &SlotSpec<'_>, progress: &Progress) -> Result<Record> {
    let SlotSpec { container, slot, sets, stored, runtime, seccomp, extract, health: health_flags } = *spec;
    let name = container.name();
    let dest = container.slot(slot);
    let tmp = container.staging(slot);
    let staged = dest.staged_at(tmp.clone());
    fsutil::remove_any(&tmp).at(&tmp)?;
    container.create()?;
    fsutil::ensure_dir(&tmp, 0o700)?;
    let result = (|| {
        let rootfs = staged.rootfs();
        // hoist's runner stacks the layers itself; runc and crun need the whole tree.
        let overlay = runtime.is_none() && images::overlay_roots_allowed();
        let lowers = images::prepare_root(store, &img.manifest, &rootfs, &extract, progress, overlay)?;
        let fail = |reason: String| OpsError::Failed { name: name.to_string(), reason };
        let manifest: ExportsManifest = match export(&rootfs, "manifest.json")? {
            Some(t) => serde_json::from_str(&t)
                .map_err(|e| fail(format!("invalid /exports/manifest.json in the image: {e}")))?,
            None => ExportsManifest::default(),
        };
        let defaults: BTreeMap<String, String> = manifest
            .default_values
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect();
        let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
        let runtime_value = runtime.map(str::to_string).unwrap_or_else(|| "hoist".into());
        let builtins = BTreeMap::from([
            ("RUN_DIRECTORY".to_string(), "/run".to_string()),
            ("STATE_DIRECTORY".to_string(), "/var/lib".to_string()),
            ("CONF_DIRECTORY".to_string(), "/etc".to_string()),
            ("PIDFILE".to_string(), format!("/run/container-{name}.pid")),
            ("UUID".to_string(), new_uuid()),
            ("ALL_PROCESS_CAPABILITIES".to_string(), all_capabilities()),
            ("RUNTIME".to_string(), runtime_value),
        ]);
        let mut forced = BTreeMap::from([
            ("NAME".to_string(), name.to_string()),
            ("DESTDIR".to_string(), dest.dir().display().to_string()),
            ("HOST_UID".to_string(), uid.to_string()),
            ("HOST_GID".to_string(), gid.to_string()),
            ("IMAGE_NAME".to_string(), img.name.to_string()),
            ("IMAGE_ID".to_string(), img.manifest.hex().to_string()),
        ]);
        forced.extend(exec_lines(name, dest.dir(), runtime));
        let values =
            values::compute(Inputs { sets, stored: stored.map(|r| &r.values), defaults: &defaults, builtins, forced });

        let image_manifest = store.manifest(&img.manifest).map_err(images::ImagesError::from)?;
        let image_config = store.config(&image_manifest).map_err(images::ImagesError::from)?;
        let user = match image_config.config().as_ref().and_then(|c| c.user().clone()).filter(|u| !u.is_empty()) {
            Some(u) => {
                // The image's own files: read beneath the checkout, never through a symlink.
                let root = RootDir::open(&rootfs).at(&rootfs)?;
                let passwd = read_text(&root, Path::new("etc/passwd")).ok().flatten().unwrap_or_default();
                let group = read_text(&root, Path::new("etc/group")).ok().flatten().unwrap_or_default();
                Some(
                    bundle::resolve_user(&u, &passwd, &group)
                        .map_err(|source| OpsError::Bundle { name: name.to_string(), source: Box::new(source) })?,
                )
            }
            None => None,
        };
        let rendered =
            bundle::render(export(&rootfs, "config.json.template")?.as_deref(), &image_config, &values, user, seccomp)
                .map_err(|source| OpsError::Bundle { name: name.to_string(), source: Box::new(source) })?;
        let config = match &lowers {
            Some(dirs) => with_lowers(&rendered.json, dirs).map_err(fail)?,
            None => rendered.json,
        };
        fsutil::write_atomic(&staged.config(), config.as_bytes(), 0o600)?;
        let docker_check = store.config_value(&image_manifest).map_err(images::ImagesError::from)?;
        let check =
            health::decide(health_flags, manifest.health_check.as_ref(), docker_check["config"].get("Healthcheck"))
                .map_err(|e| fail(e.to_string()))?;
        if let Some(hc) = &check {
            let data = serde_json::to_vec_pretty(hc).map_err(|e| fail(e.to_string()))?;
            fsutil::write_atomic(&staged.health(), &data, 0o600)?;
        }

        if !manifest.no_container_service {
            let unit_text = unit::render(
                export(&rootfs, "service.template")?.as_deref(),
                &values,
                runtime.is_none(),
                check.is_none(),
            )
            .map_err(|source| OpsError::Unit { name: name.to_string(), source })?;
            fsutil::write_atomic(&staged.unit_file(), unit_text.as_bytes(), 0o644)?;
            let tmpfiles = match export(&rootfs, "tmpfiles.template")? {
                Some(t) => values
                    .render("/exports/tmpfiles.template", &t, Target::Tmpfiles)
                    .map_err(|source| OpsError::Values { name: name.to_string(), source })?,
                None => auto_tmpfiles(&config, &values)?,
            };
            if !tmpfiles.trim().is_empty() {
                fsutil::write_atomic(&staged.tmpfiles(), tmpfiles.as_bytes(), 0o644)?;
            }
        }
        let rec = Record {
            version: RECORD_VERSION,
            name: name.to_string(),
            slot,
            image: img.name.to_string(),
            source: img.source.clone(),
            manifest: img.manifest.clone(),
            values: values.0.clone(),
            sets: sets.clone(),
            runtime: runtime.map(str::to_string),
            seccomp: seccomp.clone(),
            host_files: BTreeMap::new(),
            kept_host_files: stored.map(|r| r.kept_host_files.clone()).unwrap_or_default(),
            hostfs: HostfsPlan {
                rename_files: manifest.rename_files,
                installed_files_template: manifest.installed_files_template,
            },
            has_service: !manifest.no_container_service,
            conversions: rendered.notes,
            verified: img.verified.clone(),
            health_flags: health_flags.clone(),
            health: check,
            created: now(),
        };
        staged.save_record(&rec)?;
        dest.install_from(&staged)?;
        Ok(rec)
    })();
    if result.is_err() {
        let _ = fsutil::remove_any(&tmp);
    }
    result
}

/// The rendered config.json with the runner's lower layers annotated (`rootfs` module).
fn with_lowers(config: &str, dirs: &[std::path::PathBuf]) -> std::result::Result<String, String> {
    let mut spec: serde_json::Value = serde_json::from_str(config).map_err(|e| format!("config.json: {e}"))?;
    let obj = spec.as_object_mut().ok_or("config.json is not an object")?;
    let ann = obj.entry("annotations").or_insert_with(|| serde_json::json!({}));
    let ann = ann.as_object_mut().ok_or("config.json annotations is not an object")?;
    ann.insert(crate::rootfs::LOWER_ANNOTATION.into(), crate::rootfs::annotation(dirs).into());
    serde_json::to_string_pretty(&spec)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| e.to_string())
}

/// One `d` line per bind-mount source missing on the host (atomic's default tmpfiles).
fn auto_tmpfiles(config: &str, values: &Values) -> Result<String> {
    let (uid, gid) = (values.get("HOST_UID").unwrap_or("0"), values.get("HOST_GID").unwrap_or("0"));
    let mut out = String::new();
    for src in bundle::bind_sources(config) {
        if !Path::new(&src).exists() && !src.chars().any(|c| c.is_whitespace() || c.is_control()) {
            out.push_str(&format!("d {src} 0700 {uid} {gid} - -\n"));
        }
    }
    Ok(out)
}

/// The host-file plan of a prepared slot, handed to `f` (None when the image has no hostfs).
fn with_host_files<T>(
    host: &Host,
    slot: &Slot,
    rec: &Record,
    adopt: bool,
    f: impl FnOnce(&HostFiles<'_>) -> Result<T, hostfs::HostfsError>,
) -> Result<Option<T>> {
    let rootfs = slot.rootfs();
    let src = rootfs.join("exports/hostfs");
    // Looked up beneath the checkout: a symlinked `/exports` or `/exports/hostfs` is refused.
    let root = RootDir::open(&rootfs).at(&rootfs)?;
    for rel in ["exports", "exports/hostfs"] {
        let shown = Path::new("/").join(rel);
        match root.stat(Path::new(rel)).at(&shown)?.map(|s| rooted::Kind::of(&s)) {
            None => return Ok(None),
            Some(rooted::Kind::Dir) => {}
            Some(rooted::Kind::Symlink) => {
                return Err(fsutil::PathError::new(
                    shown,
                    std::io::Error::other("is a symlink (hoist reads /exports only as real directories)"),
                )
                .into());
            }
            Some(_) => return Ok(None),
        }
    }
    let values = Values(rec.values.clone());
    let h = HostFiles {
        src: &src,
        host_root: &host.root,
        rename: &rec.hostfs.rename_files,
        templated: &rec.hostfs.installed_files_template,
        values: &values,
        adopt_identical: adopt,
    };
    f(&h).map(Some).map_err(|source| OpsError::Hostfs { name: rec.name.clone(), source })
}

/// Installs the host files of a prepared slot; returns (installed, skipped). With `adopt`,
/// destinations already holding exactly the planned content count as installed.
pub fn install_host_files(
    host: &Host,
    slot: &Slot,
    rec: &Record,
    adopt: bool,
) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    Ok(with_host_files(host, slot, rec, adopt, |h| h.install())?.unwrap_or_default())
}

/// Host files of a prepared slot that are on the host exactly as an install puts them.
pub fn identical_host_files(host: &Host, slot: &Slot, rec: &Record) -> Result<BTreeMap<String, String>> {
    Ok(with_host_files(host, slot, rec, false, |h| h.identical_on_host())?.unwrap_or_default())
}

/// Writes the unit and tmpfiles snippet of a slot to their system places; creates the
/// tmpfiles entries.
pub fn publish_unit(host: &Host, container: &Container, slot: &Slot) -> Result<()> {
    let name = container.name();
    if let Ok(text) = fs::read(slot.unit_file()) {
        fsutil::ensure_dir(&host.unit_dir, 0o755)?;
        fsutil::write_atomic(&host.unit_file(&container.unit_name()), &text, 0o644)?;
    }
    let tmpfiles_src = slot.tmpfiles();
    let conf = host.tmpfiles_file(name);
    match fs::read(&tmpfiles_src) {
        Ok(text) => {
            fsutil::ensure_dir(&host.tmpfiles_dir, 0o755)?;
            fsutil::write_atomic(&conf, &text, 0o644)?;
            host.tmpfiles("--create", &conf).map_err(|reason| OpsError::Failed { name: name.to_string(), reason })?;
        }
        Err(_) => {
            let _ = fs::remove_file(&conf);
        }
    }
    Ok(())
}

/// Checks that `runtime` runs (`--version`), as atomic did.
pub fn check_runtime(name: &str, runtime: &Path) -> Result<String> {
    let ok = Command::new(runtime).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        return Err(OpsError::Failed {
            name: name.to_string(),
            reason: format!("runtime {} does not run (`{} --version` failed)", runtime.display(), runtime.display()),
        });
    }
    Ok(runtime.display().to_string())
}
