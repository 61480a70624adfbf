//! Migration of a state root from the v1 layout to the v2 layout of [`super::container`].
//!
//! ```text
//! v1 (hoist ≤ stop 20)                      v2
//! containers/NAME.0/ NAME.1/   slots         containers/NAME/0/ 1/
//! containers/NAME -> NAME.N    current       containers/NAME/current -> N
//! containers/NAME.txn          journal       containers/NAME/txn
//! containers/NAME.N/hostfs.json              folded into the record (Record::hostfs)
//! containers/.NAME.N.tmp, .trash-*           deleted
//! ```
//!
//! In v1, slot directories shared the namespace of container names, which is why names ending
//! in `.0`/`.1` were refused; v1 names never end so, so every `X.0`/`X.1` directory holding a
//! record is a slot of `X`. Files a deployment rendered name its own directory (`$DESTDIR`:
//! `config.json` mounts, the unit's `ExecStart`, the tmpfiles snippet, the record's values):
//! they are rewritten to the new slot path. Host files rendered from `$DESTDIR` are not (their
//! checksums are recorded; they are the image's business).
//!
//! Crash safety: each container is assembled in `containers/.migrating-NAME/` by renames
//! (slots, journal) and idempotent rewrites, the v1 link removed, and the staging directory
//! renamed to `containers/NAME` last. Every step can be repeated, so a migration killed at any
//! point is finished by the next run. `containers/.layout` is written by [`finish`] only after
//! the caller has published the rewritten units: until then [`pending`] stays true. A
//! `containers/` created by this version is marked at once (`Container::create`).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::container::{self, Container, Slot};
use super::record::HostfsPlan;
use crate::fault;
use crate::fsutil::{self, IoContext, PathError};
use crate::layout::Layout;

use super::container::LAYOUT_MARKER as MARKER;
const STAGING: &str = ".migrating-";
const V1_HOSTFS: &str = "hostfs.json";

/// Whether the state root may still hold v1 entries (`containers/` without the marker).
pub fn pending(layout: &Layout) -> bool {
    let dir = layout.containers();
    dir.is_dir() && !dir.join(MARKER).exists()
}

/// Records that the state root is in the v2 layout.
pub fn finish(layout: &Layout) -> Result<(), PathError> {
    container::mark_layout(&layout.containers())
}

/// What a v1 `containers/` entry is.
enum V1<'a> {
    Slot(&'a str),
    Link(&'a str),
    Txn(&'a str),
    Staging(&'a str),
    Leftover,
}

fn classify<'a>(dir: &Path, entry: &'a str) -> Option<V1<'a>> {
    if entry == MARKER {
        return None;
    }
    if let Some(name) = entry.strip_prefix(STAGING) {
        return Some(V1::Staging(name));
    }
    if entry.starts_with('.') {
        return Some(V1::Leftover);
    }
    let path = dir.join(entry);
    let meta = fs::symlink_metadata(&path).ok()?;
    if meta.file_type().is_symlink() {
        return Some(V1::Link(entry));
    }
    if let Some(name) = entry.strip_suffix(".txn")
        && meta.is_file()
    {
        return Some(V1::Txn(name));
    }
    if let Some((name, n)) = entry.rsplit_once('.')
        && meta.is_dir()
        && path.join(container::RECORD).is_file()
        && matches!(n, "0" | "1")
    {
        return Some(V1::Slot(name));
    }
    None
}

/// Moves every v1 container into the v2 layout; returns every container now in `containers/`
/// (whose units the caller publishes again before [`finish`]).
pub fn run(layout: &Layout) -> Result<Vec<Container>, PathError> {
    let dir = layout.containers();
    let mut names = BTreeSet::new();
    for e in fs::read_dir(&dir).at(&dir)?.flatten() {
        let entry = e.file_name().to_string_lossy().into_owned();
        match classify(&dir, &entry) {
            Some(V1::Slot(n) | V1::Link(n) | V1::Txn(n) | V1::Staging(n)) => {
                names.insert(n.to_string());
            }
            Some(V1::Leftover) => {
                let p = e.path();
                fsutil::remove_any(&p).at(&p)?;
            }
            None => {}
        }
    }
    for name in &names {
        migrate_one(layout, name)?;
    }
    Ok(container::all(layout))
}

fn migrate_one(layout: &Layout, name: &str) -> Result<(), PathError> {
    let dir = layout.containers();
    let bad = |why: &str| PathError::new(dir.join(name), std::io::Error::other(why.to_string()));
    let target = Container::at(layout, name).map_err(|e| bad(&e.to_string()))?;
    let staging = dir.join(format!("{STAGING}{name}"));
    fsutil::ensure_dir(&staging, 0o700)?;
    for n in [0u8, 1] {
        let old = dir.join(format!("{name}.{n}"));
        let new = staging.join(n.to_string());
        if old.is_dir() && !new.exists() {
            fs::rename(&old, &new).at(&old)?;
            fault::point("migrate:slot");
        }
        if new.is_dir() {
            let slot = target.slot(n).staged_at(new);
            rewrite_slot(&slot, &old, &target.slot(n))?;
        }
    }
    fault::point("migrate:rewritten");
    let link = dir.join(name);
    if let Ok(t) = fs::read_link(&link) {
        let n = t.to_string_lossy().rsplit_once('.').map(|(_, n)| n.to_string()).unwrap_or_default();
        if matches!(n.as_str(), "0" | "1") {
            container::switch_link(&staging.join("current"), &n)?;
        }
        fs::remove_file(&link).at(&link)?;
        fault::point("migrate:linked");
    }
    let txn = dir.join(format!("{name}.txn"));
    if txn.exists() {
        fs::rename(&txn, staging.join("txn")).at(&txn)?;
    }
    if target.exists() {
        return Err(bad("is in the way of the migration to the v2 layout; move it away"));
    }
    fs::rename(&staging, target.dir()).at(&staging)?;
    fsutil::sync_dir(&dir)?;
    fault::point("migrate:renamed");
    Ok(())
}

/// Rewrites a moved slot's files from its v1 path to its v2 path, and folds `hostfs.json` into
/// the record. Idempotent: the record is written last, and only the old path is replaced.
fn rewrite_slot(slot: &Slot, old: &Path, new: &Slot) -> Result<(), PathError> {
    let mut rec = slot.record()?;
    let from = rec.values.get("DESTDIR").cloned().unwrap_or_else(|| old.display().to_string());
    let to = new.dir().display().to_string();
    for file in [slot.config(), slot.unit_file(), slot.tmpfiles()] {
        match fs::read_to_string(&file) {
            Ok(text) => {
                let done = replace_path(&text, &from, &to);
                if done != text {
                    fsutil::write_atomic(&file, done.as_bytes(), mode(&file))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PathError::new(file, e)),
        }
    }
    for v in rec.values.values_mut() {
        *v = replace_path(v, &from, &to);
    }
    let side: PathBuf = slot.dir().join(V1_HOSTFS);
    if let Ok(data) = fs::read(&side) {
        rec.hostfs = serde_json::from_slice::<HostfsPlan>(&data)
            .map_err(|e| PathError::new(&side, std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    }
    rec.version = super::record::RECORD_VERSION;
    slot.save_record(&rec)?;
    match fs::remove_file(&side) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PathError::new(side, e)),
        _ => Ok(()),
    }
}

fn mode(file: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(file).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644)
}

/// `text` with every occurrence of the path `from` (as a whole path: not followed by a name
/// character) replaced by `to`.
fn replace_path(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(from) {
        let after = &rest[i + from.len()..];
        let whole = !after.starts_with(|c: char| c.is_ascii_alphanumeric() || "-_.".contains(c));
        out.push_str(&rest[..i]);
        out.push_str(if whole { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::deploy::record::Record;
    use crate::fault::{self, Fault, Injected};

    #[test]
    fn replaces_whole_paths_only() {
        let (from, to) = ("/r/containers/web.0", "/r/containers/web/0");
        assert_eq!(
            replace_path("--bundle /r/containers/web.0 x /r/containers/web.0/rootfs", from, to),
            "--bundle /r/containers/web/0 x /r/containers/web/0/rootfs"
        );
        assert_eq!(
            replace_path("/r/containers/web.0x /r/containers/web.01", from, to),
            "/r/containers/web.0x /r/containers/web.01"
        );
        assert_eq!(replace_path("\"/r/c/web.1\"", "/r/c/web.1", "/r/c/web/1"), "\"/r/c/web/1\"");
    }

    fn record(name: &str, slot: u8, destdir: &str) -> Record {
        Record {
            version: 1,
            name: name.into(),
            slot,
            image: format!("{name}:v{}", slot + 1),
            source: None,
            manifest: format!("sha256:{}", format!("{slot}").repeat(64)).parse().unwrap(),
            values: BTreeMap::from([
                ("DESTDIR".into(), destdir.into()),
                ("EXEC_START".into(), format!("hoist internal run-bundle --name {name} --bundle {destdir}")),
            ]),
            sets: BTreeMap::new(),
            runtime: None,
            seccomp: Default::default(),
            host_files: BTreeMap::new(),
            hostfs: HostfsPlan::default(),
            has_service: true,
            conversions: Vec::new(),
            kept_host_files: Default::default(),
            verified: None,
            health_flags: Default::default(),
            health: None,
            created: 0,
        }
    }

    /// A state root in the v1 layout, as hoist ≤ stop 20 wrote it: `web` with both slots
    /// (current 1, a pending switch journal) and `db` with one, plus leftovers.
    fn v1_root(root: &Path) -> Layout {
        let layout = Layout::new(root);
        let c = layout.containers();
        for (name, slots, current) in [("web", &[0u8, 1][..], 1u8), ("db", &[0u8][..], 0)] {
            for &n in slots {
                let d = c.join(format!("{name}.{n}"));
                let dest = d.display().to_string();
                fs::create_dir_all(d.join("rootfs/etc")).unwrap();
                let mut rec = record(name, n, &dest);
                rec.version = 1;
                let mut json = serde_json::to_value(&rec).unwrap();
                json.as_object_mut().unwrap().remove("hostfs");
                fs::write(d.join("info.json"), serde_json::to_vec(&json).unwrap()).unwrap();
                fs::write(d.join("config.json"), format!("{{\"root\":{{\"path\":\"{dest}/rootfs\"}}}}")).unwrap();
                fs::write(
                    d.join(format!("{name}.service")),
                    format!("[Service]\nExecStart=hoist internal run-bundle --bundle {dest}\n"),
                )
                .unwrap();
                fs::write(
                    d.join("hostfs.json"),
                    r#"{"renameFiles":{"/etc/a":"/etc/b"},"installedFilesTemplate":["/etc/b"]}"#,
                )
                .unwrap();
            }
            std::os::unix::fs::symlink(format!("{name}.{current}"), c.join(name)).unwrap();
        }
        fs::write(c.join("web.txn"), r#"{"op":"switch","from":0,"to":1,"was_running":true}"#).unwrap();
        fs::create_dir(c.join(".web.0.tmp")).unwrap();
        fs::create_dir(c.join(".trash-db.1-77.tmp")).unwrap();
        layout
    }

    fn check_v2(layout: &Layout) {
        let c = layout.containers();
        let mut entries: Vec<String> =
            fs::read_dir(&c).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        entries.sort();
        assert_eq!(entries, ["db", "web"]);
        let mut web: Vec<String> =
            fs::read_dir(c.join("web")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        web.sort();
        assert_eq!(web, ["0", "1", "current", "txn"]);
        assert_eq!(fs::read_link(c.join("web/current")).unwrap(), Path::new("1"));
        assert_eq!(fs::read_link(c.join("db/current")).unwrap(), Path::new("0"));
        assert_eq!(
            fs::read_to_string(c.join("web/txn")).unwrap(),
            r#"{"op":"switch","from":0,"to":1,"was_running":true}"#
        );
        let web1 = Container::open(layout, "web").unwrap().slot(1);
        let new = web1.dir().display().to_string();
        let rec = web1.record().unwrap();
        assert_eq!(rec.version, super::super::record::RECORD_VERSION);
        assert_eq!(rec.values["DESTDIR"], new);
        assert_eq!(rec.values["EXEC_START"], format!("hoist internal run-bundle --name web --bundle {new}"));
        assert_eq!(rec.hostfs.rename_files, BTreeMap::from([("/etc/a".to_string(), "/etc/b".to_string())]));
        assert_eq!(rec.hostfs.installed_files_template, vec!["/etc/b".to_string()]);
        assert_eq!(fs::read_to_string(web1.config()).unwrap(), format!("{{\"root\":{{\"path\":\"{new}/rootfs\"}}}}"));
        assert_eq!(
            fs::read_to_string(web1.unit_file()).unwrap(),
            format!("[Service]\nExecStart=hoist internal run-bundle --bundle {new}\n")
        );
        assert!(!web1.dir().join("hostfs.json").exists());
        assert!(web1.rootfs().join("etc").is_dir());
        assert_eq!(container::installed(layout), ["db", "web"]);
    }

    #[test]
    fn migrates_a_v1_root() {
        let t = tempfile::tempdir().unwrap();
        let layout = v1_root(t.path());
        assert!(pending(&layout));
        let all = run(&layout).unwrap();
        assert_eq!(all.iter().map(|c| c.name()).collect::<Vec<_>>(), ["db", "web"]);
        finish(&layout).unwrap();
        assert!(!pending(&layout));
        fs::remove_file(layout.containers().join(MARKER)).unwrap();
        check_v2(&layout);
        // Running again changes nothing.
        run(&layout).unwrap();
        check_v2(&layout);
    }

    /// A migration killed at any step is finished by the next run.
    #[test]
    fn a_killed_migration_is_finished_by_the_next() {
        for step in [
            "migrate:slot",
            "migrate:slot#2",
            "migrate:slot#3",
            "migrate:rewritten",
            "migrate:rewritten#2",
            "migrate:linked",
            "migrate:linked#2",
            "migrate:renamed",
        ] {
            let t = tempfile::tempdir().unwrap();
            let layout = v1_root(t.path());
            fault::inject(Some(Fault::parse(step)));
            let crashed = std::panic::catch_unwind(|| run(&layout));
            fault::inject(None);
            let payload = crashed.expect_err(step);
            assert_eq!(payload.downcast_ref::<Injected>(), Some(&Injected(Fault::parse(step).step)), "{step}");
            assert!(pending(&layout), "{step}");
            run(&layout).unwrap();
            check_v2(&layout);
        }
    }
}
