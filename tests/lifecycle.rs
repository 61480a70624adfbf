//! Tier 1: the container lifecycle without root or systemd. The library's verbs (install,
//! update, rollback, the automatic rollback, repair, uninstall) run against a temporary state
//! root and temporary host directories (`Host::under`), with stand-ins for `systemd-tmpfiles`
//! (logs its arguments) and `journalctl` (prints two fixed lines), and the fake systemd manager
//! (`hoist::systemd::fake`) reached over D-Bus by the real client. Plain `cargo test` runs it as
//! any user; the same paths under a real systemd are in tests/update.rs and tests/crash.rs.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::FutureExt;
use hoist::fault::{self, Fault, Injected};
use hoist::fetch;
use hoist::host::Host;
use hoist::imgref::{ImageArg, Source};
use hoist::layout::Layout;
use hoist::ops::install::{self, InstallOptions};
use hoist::ops::update::{self, SwitchResult, Switched, UpdateOptions};
use hoist::ops::{query, repair, uninstall};
use hoist::progress::Progress;
use hoist::store::{Store, StoredImage};
use hoist::systemd::Systemd;
use hoist::systemd::fake::{self, FakeManager, Outcome};

const UNIT: &str = "hello.service";
const CREATE: &str = "--create <host>/etc/tmpfiles.d/hello.conf";
const JOURNAL: [&str; 2] = ["hello: starting", "hello: cannot listen on port 8081"];

/// The stand-in tools, written once per test process before any test runs a command (a script
/// being written while another thread forks could not be executed: ETXTBSY). Also silences
/// the panic message of injected faults (they are caught and expected).
fn tools() -> &'static (PathBuf, PathBuf) {
    static TOOLS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let dir = common::repo().join("target/lifecycle-tools");
        fs::create_dir_all(&dir).unwrap();
        let tmpfiles = dir.join(format!("systemd-tmpfiles-{}", std::process::id()));
        let journalctl = dir.join(format!("journalctl-{}", std::process::id()));
        // The snippet is <host>/etc/tmpfiles.d/NAME.conf: the log goes to <host>/tmpfiles.log.
        let scripts = [
            (&tmpfiles, "#!/bin/sh\necho \"$*\" >> \"${2%/etc/tmpfiles.d/*}/tmpfiles.log\"\n".to_string()),
            (&journalctl, format!("#!/bin/sh\nprintf '%s\\n' '{}' '{}'\n", JOURNAL[0], JOURNAL[1])),
        ];
        for (path, text) in scripts {
            fs::write(path, text).unwrap();
            fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<Injected>().is_none() {
                default(info)
            }
        }));
        (tmpfiles, journalctl)
    })
}

/// One state root, one host, one fake systemd, and three stored images.
struct World {
    _dir: tempfile::TempDir,
    host_dir: PathBuf,
    layout: Layout,
    store: Store,
    host: Host,
    fake: FakeManager,
    sd: Systemd,
    v1: StoredImage,
    v2: StoredImage,
    broken: StoredImage,
}

impl World {
    async fn new() -> World {
        let (tmpfiles, journalctl) = tools();
        let dir =
            tempfile::Builder::new().prefix("hoist-lifecycle-").tempdir_in(common::repo().join("target")).unwrap();
        let host_dir = dir.path().join("host");
        let host = Host::under(&host_dir, tmpfiles, journalctl);
        fs::create_dir_all(&host.unit_dir).unwrap();
        fs::create_dir_all(&host.tmpfiles_dir).unwrap();
        let layout = Layout::new(dir.path().join("state")).with_run_root(dir.path().join("run"));
        let store = Store::open(&layout).unwrap();
        let pull = |archive: &Path| {
            let Ok(ImageArg::Source(src @ Source::OciArchive { .. })) =
                ImageArg::parse(&format!("oci-archive:{}", archive.display()))
            else {
                panic!("an oci-archive source")
            };
            let r = fetch::pull(&store, &src, &common::insecure_pull(), &Progress::silent()).unwrap();
            store.resolve(&r.name.to_string()).unwrap()
        };
        let (v1, v2, broken) = (pull(&common::hello()), pull(&common::hello_v2()), pull(&common::hello_broken()));
        let (conn, fake) = fake::serve(Some(&host.unit_dir)).await;
        let sd = Systemd::with_connection(conn).await.unwrap().with_job_timeout(Duration::from_millis(500));
        World { _dir: dir, host_dir, layout, store, host, fake, sd, v1, v2, broken }
    }

    fn state(&self) -> &Path {
        self.layout.root()
    }

    async fn install(&self) -> install::Installed {
        let opts = InstallOptions { now: true, ..Default::default() };
        install::install(&self.store, &self.sd, &self.host, &self.v1, &opts, &Progress::silent()).await.unwrap()
    }

    fn update_opts(&self, no_rollback: bool) -> UpdateOptions {
        UpdateOptions {
            sets: Default::default(),
            no_rollback,
            grace: Duration::from_millis(300),
            extract: Default::default(),
            health: Default::default(),
            replace: false,
        }
    }

    async fn update(&self, img: &StoredImage, no_rollback: bool) -> Switched {
        let opts = self.update_opts(no_rollback);
        update::update(&self.store, &self.sd, &self.host, "hello", img, &opts, &Progress::silent()).await.unwrap()
    }

    /// The slot `containers/hello/current` points at.
    fn current(&self) -> String {
        fs::read_link(self.state().join("containers/hello/current")).unwrap().display().to_string()
    }

    /// The slot the published unit runs.
    fn unit_slot(&self) -> String {
        let unit = fs::read_to_string(self.host.unit_file(UNIT)).unwrap();
        let at = format!("--bundle {}/containers/hello/", self.state().display());
        let rest = &unit[unit.find(&at).unwrap_or_else(|| panic!("no {at} in\n{unit}")) + at.len()..];
        rest.chars().take_while(char::is_ascii_digit).collect()
    }

    fn version(&self) -> String {
        common::deployed_version(self.state(), "hello")
    }

    /// The stand-in `systemd-tmpfiles` runs since the last call.
    fn take_tmpfiles_log(&self) -> Vec<String> {
        let log = self.host_dir.join("tmpfiles.log");
        let runs = fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| l.replace(&self.host_dir.display().to_string(), "<host>"))
            .collect();
        let _ = fs::remove_file(&log);
        runs
    }

    /// hello is installed, every piece agrees on one slot, and the service is running;
    /// returns the version it runs.
    fn consistent(&self, what: &str) -> String {
        assert!(!self.state().join("containers/hello/txn").exists(), "{what}: journal left");
        let slot = self.current();
        assert_eq!(self.unit_slot(), slot, "{what}: unit and link agree");
        let rec: serde_json::Value =
            serde_json::from_slice(&fs::read(self.state().join("containers/hello/current/info.json")).unwrap())
                .unwrap();
        assert_eq!(rec["slot"].to_string(), slot, "{what}: record and link agree");
        assert!(rec["host_files"].get("/etc/hello/hello.conf").is_some(), "{what}: host file tracked");
        assert!(self.host_dir.join("etc/hello/hello.conf").is_file(), "{what}: host file present");
        let u = self.fake.unit(UNIT);
        assert_eq!((u.load_state.as_str(), u.active_state.as_str()), ("loaded", "active"), "{what}");
        self.version()
    }

    /// Nothing of hello is left: state, unit, snippet, host file, loaded unit.
    fn absent(&self, what: &str) {
        let left: Vec<_> = fs::read_dir(self.state().join("containers"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".layout")
            .collect();
        assert!(left.is_empty(), "{what}: left in containers/: {left:?}");
        for p in
            [self.host.unit_file(UNIT), self.host.tmpfiles_file("hello"), self.host_dir.join("etc/hello/hello.conf")]
        {
            assert!(!p.exists(), "{what}: {} left", p.display());
        }
        let u = self.fake.unit(UNIT);
        assert_eq!((u.load_state.as_str(), u.active_state.as_str()), ("not-found", "inactive"), "{what}");
    }
}

#[tokio::test]
async fn install_update_rollback_uninstall() {
    let w = World::new().await;
    let out = w.install().await;
    assert_eq!(
        (out.name.as_str(), out.image.as_str(), &out.digest, out.deployment, out.enabled, out.started),
        ("hello", "hello:latest", &w.v1.manifest, 0, true, true)
    );
    assert_eq!((out.host_files, out.skipped_host_files), (vec!["/etc/hello/hello.conf".to_string()], vec![]));
    assert_eq!(w.fake.take_calls(), ["reload", "enable hello.service", "start hello.service"]);
    assert_eq!(w.take_tmpfiles_log(), [CREATE]);
    assert_eq!((w.consistent("install"), w.current()), ("1".to_string(), "0".to_string()));
    assert_eq!(w.fake.unit(UNIT).unit_file_state, "enabled");
    let st = query::status(&w.layout, &w.sd, "hello").await.unwrap();
    assert_eq!((st.summary.state.as_str(), st.summary.deployment), ("running", Some(0)));
    assert_eq!(st.deployments, [(0, "hello:latest".to_string())]);
    let err = install::install(&w.store, &w.sd, &w.host, &w.v1, &InstallOptions::default(), &Progress::silent())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "container hello already exists (hoist uninstall hello first, or --name another)");

    let up = w.update(&w.v2, false).await;
    assert_eq!(
        (up.result, &up.from, &up.to, up.deployment, up.restarted, &up.reason),
        (SwitchResult::Done, &w.v1.manifest, &w.v2.manifest, 1, true, &None)
    );
    assert_eq!(w.fake.take_calls(), ["reload", "restart hello.service"]);
    assert_eq!(w.take_tmpfiles_log(), [CREATE], "the new deployment's snippet is applied");
    assert_eq!((w.consistent("update"), w.current()), ("2".to_string(), "1".to_string()));
    let again = w.update(&w.v2, false).await;
    assert_eq!((again.result, again.deployment), (SwitchResult::Unchanged, 1));
    assert_eq!(w.fake.take_calls(), Vec::<String>::new());

    let back = update::rollback(&w.store, &w.sd, &w.host, "hello").await.unwrap();
    assert_eq!(
        (back.result, &back.from, &back.to, back.deployment, back.restarted),
        (SwitchResult::Done, &w.v2.manifest, &w.v1.manifest, 0, true)
    );
    assert_eq!(w.fake.take_calls(), ["reload", "reset-failed hello.service", "restart hello.service"]);
    assert_eq!(w.take_tmpfiles_log(), [CREATE]);
    assert_eq!((w.consistent("rollback"), w.current()), ("1".to_string(), "0".to_string()));

    let gone = uninstall::uninstall(&w.layout, &w.sd, &w.host, "hello", false).await.unwrap();
    assert_eq!((gone.removed_host_files, gone.kept_host_files), (vec!["/etc/hello/hello.conf".to_string()], vec![]));
    assert_eq!(
        w.fake.take_calls(),
        ["stop hello.service", "disable hello.service", "reset-failed hello.service", "reload"]
    );
    assert_eq!(w.take_tmpfiles_log(), ["--remove <host>/etc/tmpfiles.d/hello.conf"]);
    w.absent("uninstall");
    let err = uninstall::uninstall(&w.layout, &w.sd, &w.host, "hello", false).await.unwrap_err();
    assert_eq!(err.to_string(), "no container named hello (see `hoist list -a`)");
}

/// One row per way a new deployment fails after its restart: why it is judged failed. Each is
/// rolled back automatically to v1, which runs again.
#[tokio::test]
async fn a_failing_update_rolls_back_by_itself() {
    let w = World::new().await;
    w.install().await;
    w.fake.take_calls();
    for (outcome, reason) in [
        (Outcome::Exits(1), "the service is failed (exit-code, exit status 1) after the restart"),
        (
            Outcome::JobResult("failed".into()),
            "hello.service: restart job finished with result 'failed' (see `journalctl -u hello.service`)",
        ),
        (
            Outcome::JobResult("timeout".into()),
            "hello.service: restart job finished with result 'timeout' (see `journalctl -u hello.service`)",
        ),
        (Outcome::Flaps, "the service restarted by itself 1 time(s) within the grace period"),
        (Outcome::Hangs, "hello.service: restart job did not finish within 500ms"),
    ] {
        w.fake.script(UNIT, [outcome.clone()]);
        let r = w.update(&w.broken, false).await;
        let what = format!("{outcome:?}");
        assert_eq!(
            (r.result, &r.from, &r.to, r.deployment, r.reason.as_deref()),
            (SwitchResult::RolledBack, &w.v1.manifest, &w.broken.manifest, 0, Some(reason)),
            "{what}"
        );
        assert_eq!(r.journal, JOURNAL, "{what}: the failed deployment's journal");
        assert_eq!(
            w.fake.take_calls(),
            ["reload", "restart hello.service", "reload", "reset-failed hello.service", "restart hello.service"],
            "{what}"
        );
        assert_eq!((w.consistent(&what), w.current()), ("1".to_string(), "0".to_string()), "{what}");
    }
    // With --no-rollback the failed deployment stays, failed.
    w.fake.script(UNIT, [Outcome::Exits(2)]);
    let r = w.update(&w.broken, true).await;
    assert_eq!((r.result, r.deployment), (SwitchResult::Failed, 1));
    assert_eq!(r.reason.as_deref(), Some("the service is failed (exit-code, exit status 2) after the restart"));
    assert_eq!((w.current(), w.unit_slot(), w.fake.unit(UNIT).active_state), ("1".into(), "1".into(), "failed".into()));
    w.fake.take_calls();
    // An edited host file is kept by uninstall; a failed unit is not stopped.
    fs::write(w.host_dir.join("etc/hello/hello.conf"), "edited\n").unwrap();
    let gone = uninstall::uninstall(&w.layout, &w.sd, &w.host, "hello", false).await.unwrap();
    assert_eq!((gone.removed_host_files, gone.kept_host_files), (vec![], vec!["/etc/hello/hello.conf".to_string()]));
    assert_eq!(w.fake.take_calls(), ["disable hello.service", "reset-failed hello.service", "reload"]);
    assert_eq!(fs::read_to_string(w.host_dir.join("etc/hello/hello.conf")).unwrap(), "edited\n");
}

/// What a test does before the crash.
#[derive(Debug, Clone, Copy)]
enum Before {
    Nothing,
    Installed,
    Updated,
}

/// What is interrupted.
#[derive(Debug, Clone, Copy)]
enum Op {
    Install,
    Update,
    /// An update to the broken image, rolled back automatically.
    FailingUpdate,
    Rollback,
    Uninstall,
}

/// Runs `op` with `step` armed; insists that it crashed there.
async fn crash(w: &World, op: Op, step: &str) {
    fault::inject(Some(Fault::parse(step)));
    let fut = async {
        match op {
            Op::Install => drop(w.install().await),
            Op::Update => drop(w.update(&w.v2, false).await),
            Op::FailingUpdate => {
                w.fake.script(UNIT, [Outcome::Exits(1)]);
                drop(w.update(&w.broken, false).await)
            }
            Op::Rollback => drop(update::rollback(&w.store, &w.sd, &w.host, "hello").await.unwrap()),
            Op::Uninstall => drop(uninstall::uninstall(&w.layout, &w.sd, &w.host, "hello", false).await.unwrap()),
        }
    };
    let r = AssertUnwindSafe(fut).catch_unwind().await;
    fault::inject(None);
    let payload = r.expect_err(&format!("{op:?} was expected to crash at {step}"));
    let at = step.split('#').next().unwrap_or(step);
    assert_eq!(payload.downcast_ref::<Injected>(), Some(&Injected(at.to_string())), "{op:?} {step}");
}

/// What ran before, what crashed where, what the repair says, the version after (`None`: gone).
type Row = (Before, Op, &'static str, &'static [&'static str], Option<&'static str>);

/// One row per crash point: what ran before, what crashed where, what the next command's repair
/// says, and the version hello runs after it (`None`: nothing of hello is left).
#[tokio::test]
async fn repair_after_a_crash_at_every_step() {
    const INSTALL: &str = "repaired hello: removed the remains of an interrupted install";
    const UNINSTALL: &str = "repaired hello: completed an interrupted uninstall";
    const TO_1: &str = "repaired hello: completed an interrupted switch to deployment 1";
    const TO_0: &str = "repaired hello: completed an interrupted switch to deployment 0";
    const JUDGE: &str = "repaired hello: rolled back an update interrupted before it was judged healthy (deployment 0)";
    let rows: &[Row] = &[
        (Before::Nothing, Op::Install, "install:txn", &[INSTALL], None),
        (Before::Nothing, Op::Install, "install:slot", &[INSTALL], None),
        (Before::Nothing, Op::Install, "install:hostfs", &[INSTALL], None),
        (Before::Nothing, Op::Install, "install:unit", &[INSTALL], None),
        (Before::Nothing, Op::Install, "install:link", &[INSTALL], None),
        (Before::Nothing, Op::Install, "install:enable", &[INSTALL], None),
        (Before::Installed, Op::Uninstall, "uninstall:stopped", &[UNINSTALL], None),
        (Before::Installed, Op::Uninstall, "uninstall:unit", &[UNINSTALL], None),
        (Before::Installed, Op::Uninstall, "uninstall:hostfs", &[UNINSTALL], None),
        // Renamed out of its live name: nothing left to repair (the trash is `images prune`'s).
        (Before::Installed, Op::Uninstall, "uninstall:renamed", &[], None),
        (Before::Installed, Op::Update, "update:prepared", &[], Some("1")),
        (Before::Installed, Op::Update, "switch:hostfs-removed", &[TO_1], Some("2")),
        (Before::Installed, Op::Update, "switch:hostfs-installed", &[TO_1], Some("2")),
        (Before::Installed, Op::Update, "switch:unit", &[TO_1], Some("2")),
        (Before::Installed, Op::Update, "switch:link", &[TO_1], Some("2")),
        (Before::Installed, Op::Update, "switch:reload", &[TO_1], Some("2")),
        (Before::Installed, Op::Update, "update:switched", &[JUDGE], Some("1")),
        (Before::Installed, Op::Update, "update:restarted", &[JUDGE], Some("1")),
        (Before::Updated, Op::Rollback, "switch:hostfs-installed", &[TO_0], Some("1")),
        (Before::Updated, Op::Rollback, "switch:link", &[TO_0], Some("1")),
        (Before::Updated, Op::Rollback, "rollback:restarted", &[TO_0], Some("1")),
        (Before::Installed, Op::FailingUpdate, "update:judged", &[JUDGE], Some("1")),
        (Before::Installed, Op::FailingUpdate, "switch:hostfs-removed#2", &[TO_0], Some("1")),
        (Before::Installed, Op::FailingUpdate, "switch:link#2", &[TO_0], Some("1")),
        (Before::Installed, Op::FailingUpdate, "update:restarted", &[TO_0], Some("1")),
    ];
    for &(before, op, step, says, runs) in rows {
        let what = format!("{op:?} killed at {step}");
        let w = World::new().await;
        match before {
            Before::Nothing => {}
            Before::Installed => drop(w.install().await),
            Before::Updated => {
                w.install().await;
                w.update(&w.v2, false).await;
            }
        }
        crash(&w, op, step).await;
        assert_eq!(repair::needed(&w.layout), !says.is_empty(), "{what}");
        let lines = repair::repair_all(&w.layout, &w.sd, &w.host).await.unwrap();
        assert_eq!(lines, says, "{what}");
        assert!(!repair::needed(&w.layout), "{what}: repaired");
        match runs {
            None => w.absent(&what),
            Some(v) => assert_eq!(w.consistent(&what), v, "{what}"),
        }
        // And the next command works from there.
        if runs.is_some() {
            let r = w.update(&w.v2, false).await;
            let expected = if runs == Some("2") { SwitchResult::Unchanged } else { SwitchResult::Done };
            assert_eq!(r.result, expected, "{what}: {r:?}");
            assert_eq!(w.consistent(&what), "2", "{what}: then updated");
        } else {
            assert_eq!(w.install().await.deployment, 0, "{what}: then installed");
            assert_eq!(w.consistent(&what), "1", "{what}: then installed");
        }
    }
}

/// A host file the admin edits is kept by every command that meets it, named by the one that
/// keeps it, and tracked through update → rollback → update until uninstall names it again.
#[tokio::test]
async fn an_edited_host_file_is_kept_and_tracked_through_the_chain() {
    let w = World::new().await;
    w.install().await;
    let conf = w.host_dir.join("etc/hello/hello.conf");
    fs::write(&conf, "port=9999\n").unwrap();
    let kept = |slot: &str| -> Vec<String> {
        let rec: serde_json::Value =
            serde_json::from_slice(&fs::read(w.state().join(format!("containers/hello/{slot}/info.json"))).unwrap())
                .unwrap();
        rec["kept_host_files"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    };
    let edited = vec!["/etc/hello/hello.conf".to_string()];
    let up = w.update(&w.v2, false).await;
    assert_eq!((up.result, &up.kept_host_files), (SwitchResult::Done, &edited), "the update names it");
    assert_eq!(kept("1"), edited, "and the new deployment tracks it");
    let back = update::rollback(&w.store, &w.sd, &w.host, "hello").await.unwrap();
    assert_eq!(back.kept_host_files, Vec::<String>::new(), "nothing newly kept");
    assert_eq!(kept("0"), edited, "still tracked after the rollback");
    w.fake.script(UNIT, [Outcome::Exits(1)]);
    let failed = w.update(&w.broken, false).await;
    assert_eq!((failed.result, kept("0")), (SwitchResult::RolledBack, edited.clone()), "and the automatic one");
    assert_eq!(fs::read_to_string(&conf).unwrap(), "port=9999\n", "never overwritten");
    let gone = uninstall::uninstall(&w.layout, &w.sd, &w.host, "hello", false).await.unwrap();
    assert_eq!((gone.kept_host_files, gone.removed_host_files), (edited, vec![]));
    assert_eq!(fs::read_to_string(&conf).unwrap(), "port=9999\n");

    // Restored to what hoist installed, a kept file is hoist's again: uninstall removes it.
    let w = World::new().await;
    w.install().await;
    let conf = w.host_dir.join("etc/hello/hello.conf");
    let original = fs::read(&conf).unwrap();
    fs::write(&conf, "port=9999\n").unwrap();
    w.update(&w.v2, false).await;
    fs::write(&conf, &original).unwrap();
    let gone = uninstall::uninstall(&w.layout, &w.sd, &w.host, "hello", false).await.unwrap();
    assert_eq!((gone.kept_host_files, gone.removed_host_files), (vec![], vec!["/etc/hello/hello.conf".to_string()]));
    assert!(!conf.exists());
}
