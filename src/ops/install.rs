//! `hoist install`: a stored image becomes an enabled systemd service.
//!
//! 1. prepare deployment slot 0 completely in `containers/.NAME.0.tmp` (checkout, values,
//!    config.json, unit, tmpfiles, record) and rename it to `containers/NAME.0`;
//! 2. copy the image's host files (tracked by checksum);
//! 3. write `/etc/systemd/system/NAME.service` and `/etc/tmpfiles.d/NAME.conf` atomically and
//!    run `systemd-tmpfiles --create` on the snippet;
//! 4. point `containers/NAME` at the slot (rename of a new symlink);
//! 5. over D-Bus: Reload, EnableUnitFiles, and with `--now` StartUnit, waiting for the job.
//!
//! Any failure undoes what was done (host files, unit, snippet, link, slot) and reloads
//! systemd: a failed install leaves nothing behind.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::txn::{self, Op, Txn, fault};
use super::{Host, OpsError, Result, current_slot, slot_dir, switch_link, valid_name};
use crate::deploy::hostfs::{self, HostFiles};
use crate::deploy::record::{RECORD_VERSION, Record};
use crate::deploy::seccomp::Seccomp;
use crate::deploy::values::{self, Inputs, Target, Values};
use crate::deploy::{bundle, unit};
use crate::fsutil::{self, IoContext};
use crate::images;
use crate::progress::Progress;
use crate::rooted::{self, RootDir};
use crate::store::{Store, StoredImage};
use crate::systemd::Systemd;

#[derive(Debug, Default, Clone)]
pub struct InstallOptions {
    pub name: Option<String>,
    pub sets: BTreeMap<String, String>,
    /// An external OCI runtime (runc, crun) instead of hoist's runner.
    pub runtime: Option<PathBuf>,
    /// `--security-opt seccomp=…` (generated configs only).
    pub seccomp: Seccomp,
    pub now: bool,
}

#[derive(Debug, Serialize)]
pub struct Installed {
    pub name: String,
    pub image: String,
    pub digest: String,
    pub deployment: u8,
    pub host_files: Vec<String>,
    /// Host files that already existed and were left alone.
    pub skipped_host_files: Vec<String>,
    pub enabled: bool,
    pub started: bool,
}

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
fn read_text(root: &RootDir, rel: &Path) -> std::io::Result<Option<String>> {
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
    pub name: &'a str,
    pub slot: u8,
    pub sets: &'a BTreeMap<String, String>,
    /// The record of the deployment being updated (values and UUID carry over).
    pub stored: Option<&'a Record>,
    pub runtime: Option<&'a str>,
    pub seccomp: &'a Seccomp,
}

/// Prepares deployment `slot` of container `name` from `img`, completely, and returns its
/// record. `stored` is the record of the deployment being updated (values and UUID carry over).
pub fn prepare_slot(store: &Store, img: &StoredImage, spec: &SlotSpec<'_>, progress: &Progress) -> Result<Record> {
    let SlotSpec { name, slot, sets, stored, runtime, seccomp } = *spec;
    let layout = store.layout();
    let dest = slot_dir(layout, name, slot);
    let tmp = layout.containers().join(format!(".{name}.{slot}.tmp"));
    fsutil::remove_any(&tmp).at(&tmp)?;
    fsutil::ensure_dir(&layout.containers(), 0o700)?;
    fsutil::ensure_dir(&tmp, 0o700)?;
    let result = (|| {
        let rootfs = tmp.join("rootfs");
        images::checkout(store, &img.manifest, &rootfs, progress)?;
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
            ("DESTDIR".to_string(), dest.display().to_string()),
            ("HOST_UID".to_string(), uid.to_string()),
            ("HOST_GID".to_string(), gid.to_string()),
            ("IMAGE_NAME".to_string(), img.name.to_string()),
            ("IMAGE_ID".to_string(), img.manifest.hex().to_string()),
        ]);
        forced.extend(exec_lines(name, &dest, runtime));
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
                        .map_err(|source| OpsError::Bundle { name: name.to_string(), source })?,
                )
            }
            None => None,
        };
        let config =
            bundle::render(export(&rootfs, "config.json.template")?.as_deref(), &image_config, &values, user, seccomp)
                .map_err(|source| OpsError::Bundle { name: name.to_string(), source })?;
        fsutil::write_atomic(&tmp.join("config.json"), config.as_bytes(), 0o600)?;

        if !manifest.no_container_service {
            let unit_text = unit::render(export(&rootfs, "service.template")?.as_deref(), &values, runtime.is_none())
                .map_err(|source| OpsError::Unit { name: name.to_string(), source })?;
            fsutil::write_atomic(&tmp.join(format!("{name}.service")), unit_text.as_bytes(), 0o644)?;
            let tmpfiles = match export(&rootfs, "tmpfiles.template")? {
                Some(t) => values
                    .render("/exports/tmpfiles.template", &t, Target::Tmpfiles)
                    .map_err(|source| OpsError::Values { name: name.to_string(), source })?,
                None => auto_tmpfiles(&config, &values)?,
            };
            if !tmpfiles.trim().is_empty() {
                fsutil::write_atomic(&tmp.join("tmpfiles.conf"), tmpfiles.as_bytes(), 0o644)?;
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
            has_service: !manifest.no_container_service,
            created: now(),
        };
        rec.save(&tmp)?;
        // Keep what the host-file step needs next to the record.
        let meta = serde_json::json!({"renameFiles": manifest.rename_files, "installedFilesTemplate": manifest.installed_files_template});
        fsutil::write_atomic(&tmp.join("hostfs.json"), meta.to_string().as_bytes(), 0o600)?;
        fsutil::remove_any(&dest).at(&dest)?;
        fs::rename(&tmp, &dest).at(&dest)?;
        Ok(rec)
    })();
    if result.is_err() {
        let _ = fsutil::remove_any(&tmp);
    }
    result
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
    slot: &Path,
    rec: &Record,
    adopt: bool,
    f: impl FnOnce(&HostFiles<'_>) -> Result<T, hostfs::HostfsError>,
) -> Result<Option<T>> {
    let src = slot.join("rootfs/exports/hostfs");
    // Looked up beneath the checkout: a symlinked `/exports` or `/exports/hostfs` is refused.
    let rootfs = slot.join("rootfs");
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
    let meta: serde_json::Value =
        fs::read(slot.join("hostfs.json")).ok().and_then(|d| serde_json::from_slice(&d).ok()).unwrap_or_default();
    let rename: BTreeMap<String, String> = serde_json::from_value(meta["renameFiles"].clone()).unwrap_or_default();
    let templated: Vec<String> = serde_json::from_value(meta["installedFilesTemplate"].clone()).unwrap_or_default();
    let values = Values(rec.values.clone());
    let h = HostFiles {
        src: &src,
        host_root: &host.root,
        rename: &rename,
        templated: &templated,
        values: &values,
        adopt_identical: adopt,
    };
    f(&h).map(Some).map_err(|source| OpsError::Hostfs { name: rec.name.clone(), source })
}

/// Installs the host files of a prepared slot; returns (installed, skipped). With `adopt`,
/// destinations already holding exactly the planned content count as installed.
pub fn install_host_files(
    host: &Host,
    slot: &Path,
    rec: &Record,
    adopt: bool,
) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    Ok(with_host_files(host, slot, rec, adopt, |h| h.install())?.unwrap_or_default())
}

/// Host files of a prepared slot that are on the host exactly as an install puts them.
pub fn identical_host_files(host: &Host, slot: &Path, rec: &Record) -> Result<BTreeMap<String, String>> {
    Ok(with_host_files(host, slot, rec, false, |h| h.identical_on_host())?.unwrap_or_default())
}

/// Writes the unit and tmpfiles snippet of a slot to their system places; creates the
/// tmpfiles entries.
pub fn publish_unit(host: &Host, slot: &Path, name: &str) -> Result<()> {
    let unit_src = slot.join(format!("{name}.service"));
    if let Ok(text) = fs::read(&unit_src) {
        fsutil::ensure_dir(&host.unit_dir, 0o755)?;
        fsutil::write_atomic(&host.unit_file(&format!("{name}.service")), &text, 0o644)?;
    }
    let tmpfiles_src = slot.join("tmpfiles.conf");
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

pub async fn install(
    store: &Store,
    sd: &Systemd,
    host: &Host,
    img: &StoredImage,
    opts: &InstallOptions,
    progress: &Progress,
) -> Result<Installed> {
    let name = opts.name.clone().unwrap_or_else(|| img.name.default_container_name());
    if !valid_name(&name) {
        return Err(OpsError::BadName(name));
    }
    let layout = store.layout();
    if current_slot(layout, &name).is_some() || fs::symlink_metadata(layout.containers().join(&name)).is_ok() {
        return Err(OpsError::Exists(name));
    }
    for path in [host.unit_file(&format!("{name}.service")), host.tmpfiles_file(&name)] {
        if fs::symlink_metadata(&path).is_ok() {
            return Err(OpsError::Foreign { name, path });
        }
    }
    let runtime = match &opts.runtime {
        Some(rt) => Some(check_runtime(&name, rt)?),
        None => None,
    };
    // Leftover slots of an interrupted install of the same name are replaced.
    for s in [0u8, 1] {
        let d = slot_dir(layout, &name, s);
        fsutil::remove_any(&d).at(&d)?;
    }
    txn::begin(layout, &name, &Txn { op: Op::Install, from: None, to: Some(0), was_running: false })?;
    fault("install:txn");
    let spec = SlotSpec {
        name: &name,
        slot: 0,
        sets: &opts.sets,
        stored: None,
        runtime: runtime.as_deref(),
        seccomp: &opts.seccomp,
    };
    let mut rec = match prepare_slot(store, img, &spec, progress) {
        Ok(r) => r,
        Err(e) => {
            txn::end(layout, &name)?;
            return Err(e);
        }
    };
    fault("install:slot");
    let slot = slot_dir(layout, &name, 0);
    let mut installed_files = BTreeMap::new();
    let result: Result<Installed> = async {
        let (files, skipped) = install_host_files(host, &slot, &rec, false)?;
        installed_files = files.clone();
        rec.host_files = files;
        rec.save(&slot)?;
        fault("install:hostfs");
        if rec.has_service {
            publish_unit(host, &slot, &name)?;
        }
        fault("install:unit");
        switch_link(&layout.containers().join(&name), &format!("{name}.0"))?;
        fault("install:link");
        let mut enabled = false;
        let mut started = false;
        if rec.has_service {
            sd.reload().await?;
            enabled = sd.enable(&format!("{name}.service")).await?;
            fault("install:enable");
            if opts.now {
                sd.start(&format!("{name}.service")).await?;
                started = true;
            }
        }
        Ok(Installed {
            name: name.clone(),
            image: img.name.to_string(),
            digest: img.manifest.to_string(),
            deployment: 0,
            host_files: rec.host_files.keys().cloned().collect(),
            skipped_host_files: skipped,
            enabled,
            started,
        })
    }
    .await;
    if result.is_err() {
        undo_install(layout, sd, host, &name, &installed_files).await;
    }
    txn::end(layout, &name)?;
    result
}

/// Removes everything an install of `name` may have done, best effort, newest first. Host files:
/// the recorded ones, plus any that hold exactly what the slot would install (a crash may have
/// come between copying them and recording them).
pub async fn undo_install(
    layout: &crate::layout::Layout,
    sd: &Systemd,
    host: &Host,
    name: &str,
    recorded: &BTreeMap<String, String>,
) {
    let unit = format!("{name}.service");
    if let Ok(st) = sd.status(&unit).await
        && st.load_state == "loaded"
        && !matches!(st.active_state.as_str(), "inactive" | "failed")
    {
        let _ = sd.stop(&unit).await;
    }
    let _ = sd.disable(&unit).await;
    let _ = fs::remove_file(host.unit_file(&format!("{name}.service")));
    let _ = fs::remove_file(host.tmpfiles_file(name));
    let _ = sd.reload().await;
    let _ = sd.reset_failed(&unit).await;
    let slot = slot_dir(layout, name, 0);
    let mut files = recorded.clone();
    if let Ok(rec) = Record::load(&slot) {
        files.extend(rec.host_files.clone());
        if let Ok(identical) = identical_host_files(host, &slot, &rec) {
            files.extend(identical);
        }
    }
    hostfs::remove(&host.root, &files);
    let _ = fs::remove_file(layout.containers().join(name));
    let _ = fsutil::remove_any(&slot);
    let _ = fsutil::remove_any(&layout.containers().join(format!(".{name}.0.tmp")));
}
