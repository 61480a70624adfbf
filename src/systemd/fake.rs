//! A fake `org.freedesktop.systemd1.Manager` for tests that have no systemd: served over a
//! socket pair and driven with the real client ([`super::Systemd`]), so the lifecycle code under
//! test is exactly what runs on a host.
//!
//! What it models (what hoist reads and calls, nothing more):
//! - units: `LoadState` (with a unit directory: `loaded` when `<dir>/<unit>` exists at the last
//!   `Reload` or first load, else `not-found`; without one every unit is loaded), `ActiveState`,
//!   `SubState`, `UnitFileState`, and of services `MainPID`, `NRestarts`, `Result`,
//!   `ExecMainStatus`, served as D-Bus properties at the unit's object path;
//! - `Reload`, `EnableUnitFiles`/`DisableUnitFiles` (refused for a unit file that does not exist,
//!   as systemd does), `ResetFailedUnit`, and `StartUnit`/`StopUnit`/`RestartUnit` as jobs whose
//!   result comes in a `JobRemoved` signal;
//! - scripted behaviour ([`Outcome`]): the next start/restart jobs of a unit can fail with any
//!   job result, end `done` with a main process that exits at once, end `done` with a service that
//!   keeps restarting, or never finish.
//!
//! Every method call is recorded in [`FakeManager::calls`] (`reload`, `enable U`, `start U`, …).
//! Available to the crate's tests and, with the `fake-systemd` feature, to integration tests.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use zbus::object_server::{ObjectServer, SignalEmitter};
use zbus::{ObjectPath, OwnedObjectPath};

use super::UnitStatus;

/// What the next start or restart job of a unit does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The job ends `done` and the service runs (the default).
    Runs,
    /// The job ends with this result (`failed`, `timeout`, `dependency`, …): the unit is failed.
    JobResult(String),
    /// The job ends `done`, but the main process exits at once with this status: the unit is
    /// `failed` with result `exit-code`.
    Exits(i32),
    /// The job ends `done`, then systemd keeps restarting the service (`Restart=`): each time its
    /// state is read it has restarted once more, with a new main PID.
    Flaps,
    /// The job never finishes (no `JobRemoved`).
    Hangs,
}

/// A unit the fake manager has not loaded yet: not found, inactive.
fn never_loaded() -> UnitStatus {
    UnitStatus {
        load_state: "not-found".into(),
        active_state: "inactive".into(),
        sub_state: "dead".into(),
        result: "success".into(),
        ..UnitStatus::default()
    }
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<String>,
    units: BTreeMap<String, UnitStatus>,
    /// Services systemd keeps restarting ([`Outcome::Flaps`]).
    flapping: BTreeSet<String>,
    script: BTreeMap<String, VecDeque<Outcome>>,
    unit_dir: Option<PathBuf>,
    next_job: u32,
    next_pid: u32,
}

impl State {
    fn load_state(&self, unit: &str) -> &'static str {
        match &self.unit_dir {
            Some(dir) if !dir.join(unit).exists() => "not-found",
            _ => "loaded",
        }
    }

    fn unit(&mut self, name: &str) -> &mut UnitStatus {
        if !self.units.contains_key(name) {
            let load_state = self.load_state(name).to_string();
            self.units.insert(name.to_string(), UnitStatus { load_state, ..never_loaded() });
        }
        self.units.get_mut(name).expect("just inserted")
    }

    fn pid(&mut self) -> u32 {
        self.next_pid += 1;
        1000 + self.next_pid
    }

    fn run(&mut self, name: &str) {
        let pid = self.pid();
        let u = self.unit(name);
        *u = UnitStatus { active_state: "active".into(), sub_state: "running".into(), main_pid: pid, ..u.clone() };
        u.result = "success".into();
        u.exec_main_status = 0;
        self.flapping.remove(name);
    }

    fn fail(&mut self, name: &str, result: &str, status: i32) {
        let u = self.unit(name);
        u.active_state = "failed".into();
        u.sub_state = "failed".into();
        u.main_pid = 0;
        u.result = result.into();
        u.exec_main_status = status;
        self.flapping.remove(name);
    }
}

/// The fake manager; clones share one state.
#[derive(Clone, Default)]
pub struct FakeManager {
    state: Arc<Mutex<State>>,
}

impl FakeManager {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The method calls so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// The method calls since the last `take_calls`.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().calls)
    }

    /// The unit's state (a unit never loaded reads as `not-found`, inactive).
    pub fn unit(&self, name: &str) -> UnitStatus {
        self.lock().units.get(name).cloned().unwrap_or_else(never_loaded)
    }

    /// What the next start/restart jobs of `unit` do, in order; later ones run.
    pub fn script(&self, unit: &str, outcomes: impl IntoIterator<Item = Outcome>) {
        self.lock().script.entry(unit.to_string()).or_default().extend(outcomes);
    }

    async fn job(&self, emitter: &SignalEmitter<'_>, unit: String, verb: &str) -> zbus::fdo::Result<OwnedObjectPath> {
        let (id, result) = {
            let mut st = self.lock();
            st.calls.push(format!("{verb} {unit}"));
            if st.unit(&unit).load_state != "loaded" {
                return Err(zbus::fdo::Error::Failed(format!("Unit {unit} not found.")));
            }
            st.next_job += 1;
            let id = st.next_job;
            let outcome = match verb {
                "stop" => None,
                "start" if st.unit(&unit).active_state == "active" => Some(Outcome::Runs),
                _ => Some(st.script.get_mut(&unit).and_then(VecDeque::pop_front).unwrap_or(Outcome::Runs)),
            };
            let result = match outcome {
                None => {
                    let u = st.unit(&unit);
                    u.active_state = "inactive".into();
                    u.sub_state = "dead".into();
                    u.main_pid = 0;
                    st.flapping.remove(&unit);
                    Some("done".to_string())
                }
                Some(Outcome::Runs) => {
                    st.run(&unit);
                    Some("done".into())
                }
                Some(Outcome::JobResult(r)) => {
                    st.fail(&unit, "exit-code", 1);
                    Some(r)
                }
                Some(Outcome::Exits(status)) => {
                    st.fail(&unit, "exit-code", status);
                    Some("done".into())
                }
                Some(Outcome::Flaps) => {
                    st.run(&unit);
                    st.flapping.insert(unit.clone());
                    Some("done".into())
                }
                Some(Outcome::Hangs) => None,
            };
            (id, result)
        };
        let path = OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{id}")).expect("valid path");
        if let Some(result) = result {
            FakeManager::job_removed(emitter, id, path.as_ref(), &unit, &result).await?;
        }
        Ok(path)
    }
}

fn unit_path(name: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/unit/{}", zbus_systemd::bus_label_escape(name)))
        .expect("escaped label")
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl FakeManager {
    async fn subscribe(&self) {}

    async fn reload(&self) {
        let mut st = self.lock();
        st.calls.push("reload".into());
        let names: Vec<String> = st.units.keys().cloned().collect();
        for n in names {
            let load = st.load_state(&n).to_string();
            st.unit(&n).load_state = load;
        }
    }

    async fn enable_unit_files(
        &self,
        files: Vec<String>,
        _runtime: bool,
        _force: bool,
    ) -> zbus::fdo::Result<(bool, Vec<(String, String, String)>)> {
        let mut st = self.lock();
        st.calls.push(format!("enable {}", files.join(" ")));
        for f in &files {
            if st.load_state(f) != "loaded" {
                return Err(zbus::fdo::Error::FileNotFound(format!("Unit file {f} does not exist.")));
            }
            st.unit(f).unit_file_state = "enabled".into();
        }
        Ok((true, vec![]))
    }

    async fn disable_unit_files(
        &self,
        files: Vec<String>,
        _runtime: bool,
    ) -> zbus::fdo::Result<Vec<(String, String, String)>> {
        let mut st = self.lock();
        st.calls.push(format!("disable {}", files.join(" ")));
        for f in &files {
            if st.load_state(f) != "loaded" {
                return Err(zbus::fdo::Error::FileNotFound(format!("Unit file {f} does not exist.")));
            }
            st.unit(f).unit_file_state = "disabled".into();
        }
        Ok(vec![])
    }

    async fn reset_failed_unit(&self, name: String) {
        let mut st = self.lock();
        st.calls.push(format!("reset-failed {name}"));
        let u = st.unit(&name);
        if u.active_state == "failed" {
            u.active_state = "inactive".into();
            u.sub_state = "dead".into();
            u.result = "success".into();
        }
    }

    async fn start_unit(
        &self,
        name: String,
        _mode: String,
        #[zbus(signal_emitter)] e: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.job(&e, name, "start").await
    }

    async fn stop_unit(
        &self,
        name: String,
        _mode: String,
        #[zbus(signal_emitter)] e: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.job(&e, name, "stop").await
    }

    async fn restart_unit(
        &self,
        name: String,
        _mode: String,
        #[zbus(signal_emitter)] e: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.job(&e, name, "restart").await
    }

    async fn load_unit(
        &self,
        name: String,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.lock().unit(&name);
        let path = unit_path(&name);
        let view = UnitView { name, fake: self.clone() };
        server.at(path.as_ref(), view.clone()).await?;
        server.at(path.as_ref(), ServiceView(view)).await?;
        Ok(path)
    }

    #[zbus(signal)]
    async fn job_removed(
        e: &SignalEmitter<'_>,
        id: u32,
        job: ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

/// `org.freedesktop.systemd1.Unit` of one unit.
#[derive(Clone)]
struct UnitView {
    name: String,
    fake: FakeManager,
}

impl UnitView {
    fn get<T>(&self, f: impl FnOnce(&mut UnitStatus) -> T) -> T {
        f(self.fake.lock().unit(&self.name))
    }
}

#[zbus::interface(name = "org.freedesktop.systemd1.Unit")]
impl UnitView {
    #[zbus(property(emits_changed_signal = "false"), name = "LoadState")]
    fn load_state(&self) -> String {
        self.get(|u| u.load_state.clone())
    }

    /// Each read of a flapping service's state finds it restarted once more.
    #[zbus(property(emits_changed_signal = "false"), name = "ActiveState")]
    fn active_state(&self) -> String {
        let mut st = self.fake.lock();
        if st.flapping.contains(&self.name) {
            let pid = st.pid();
            let u = st.unit(&self.name);
            u.n_restarts += 1;
            u.main_pid = pid;
        }
        st.unit(&self.name).active_state.clone()
    }

    #[zbus(property(emits_changed_signal = "false"), name = "SubState")]
    fn sub_state(&self) -> String {
        self.get(|u| u.sub_state.clone())
    }

    #[zbus(property(emits_changed_signal = "false"), name = "UnitFileState")]
    fn unit_file_state(&self) -> String {
        self.get(|u| u.unit_file_state.clone())
    }
}

/// `org.freedesktop.systemd1.Service` of one unit.
struct ServiceView(UnitView);

#[zbus::interface(name = "org.freedesktop.systemd1.Service")]
impl ServiceView {
    #[zbus(property(emits_changed_signal = "false"), name = "MainPID")]
    fn main_pid(&self) -> u32 {
        self.0.get(|u| u.main_pid)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "NRestarts")]
    fn n_restarts(&self) -> u32 {
        self.0.get(|u| u.n_restarts)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "Result")]
    fn result(&self) -> String {
        self.0.get(|u| u.result.clone())
    }

    #[zbus(property(emits_changed_signal = "false"), name = "ExecMainStatus")]
    fn exec_main_status(&self) -> i32 {
        self.0.get(|u| u.exec_main_status)
    }
}

/// Serves a fake manager on one end of a socket pair, in the current tokio runtime (it lives as
/// long as that runtime); returns a client connection and the manager. Units are loaded when
/// their file exists in `unit_dir` (with `None`, every unit is).
pub async fn serve(unit_dir: Option<&Path>) -> (zbus::Connection, FakeManager) {
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let fake = FakeManager::default();
    fake.lock().unit_dir = unit_dir.map(Path::to_path_buf);
    let guid = zbus::Guid::generate();
    let server = zbus::connection::Builder::unix_stream(a)
        .server(guid)
        .p2p()
        .serve_at("/org/freedesktop/systemd1", fake.clone())
        .build();
    let client = zbus::connection::Builder::unix_stream(b).p2p().build();
    let (server, client) = futures_util::future::join(server, client).await;
    std::mem::forget(server.expect("fake manager connection"));
    (client.expect("client connection"), fake)
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    #[tokio::test]
    async fn jobs_calls_and_states_over_dbus() {
        let (conn, fake) = serve(None).await;
        let sd = Systemd::with_connection(conn).await.unwrap();
        sd.reload().await.unwrap();
        assert!(sd.enable("etcd.service").await.unwrap());
        sd.start("etcd.service").await.unwrap();
        let st = sd.status("etcd.service").await.unwrap();
        assert_eq!(
            (st.load_state.as_str(), st.active_state.as_str(), st.sub_state.as_str(), st.unit_file_state.as_str()),
            ("loaded", "active", "running", "enabled")
        );
        assert_eq!(st.main_pid, 1001);
        sd.stop("etcd.service").await.unwrap();
        assert_eq!(sd.status("etcd.service").await.unwrap().active_state, "inactive");
        fake.script("bad.service", [Outcome::JobResult("failed".into())]);
        let err = sd.start("bad.service").await.unwrap_err();
        assert!(matches!(&err, SystemdError::Job { result, .. } if result == "failed"), "{err}");
        assert_eq!(
            err.to_string(),
            "bad.service: start job finished with result 'failed' (see `journalctl -u bad.service`)"
        );
        sd.disable("etcd.service").await.unwrap();
        assert_eq!(
            fake.calls(),
            [
                "reload",
                "enable etcd.service",
                "start etcd.service",
                "stop etcd.service",
                "start bad.service",
                "disable etcd.service"
            ]
        );
    }

    #[tokio::test]
    async fn scripted_outcomes() {
        let (conn, fake) = serve(None).await;
        let sd = Systemd::with_connection(conn).await.unwrap().with_job_timeout(std::time::Duration::from_millis(200));
        fake.script("a.service", [Outcome::Exits(3), Outcome::Flaps, Outcome::Hangs]);
        sd.start("a.service").await.unwrap();
        let st = sd.status("a.service").await.unwrap();
        assert_eq!((st.active_state.as_str(), st.result.as_str(), st.exec_main_status), ("failed", "exit-code", 3));
        sd.reset_failed("a.service").await.unwrap();
        assert_eq!(sd.status("a.service").await.unwrap().active_state, "inactive");
        sd.restart("a.service").await.unwrap();
        let (one, two) = (sd.status("a.service").await.unwrap(), sd.status("a.service").await.unwrap());
        assert_eq!((one.n_restarts + 1, two.active_state.as_str()), (two.n_restarts, "active"));
        assert_ne!(one.main_pid, two.main_pid);
        let err = sd.restart("a.service").await.unwrap_err();
        assert_eq!(err.to_string(), "a.service: restart job did not finish within 200ms");
        sd.restart("a.service").await.unwrap(); // the script is used up: it runs
    }

    #[tokio::test]
    async fn units_load_from_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, fake) = serve(Some(dir.path())).await;
        let sd = Systemd::with_connection(conn).await.unwrap();
        assert_eq!(sd.status("x.service").await.unwrap().load_state, "not-found");
        assert_eq!(
            sd.enable("x.service").await.unwrap_err().to_string(),
            "x.service: enable: org.freedesktop.DBus.Error.FileNotFound: Unit file x.service does not exist."
        );
        assert_eq!(
            sd.start("x.service").await.unwrap_err().to_string(),
            "x.service: start: org.freedesktop.DBus.Error.Failed: Unit x.service not found."
        );
        std::fs::write(dir.path().join("x.service"), "[Service]\n").unwrap();
        sd.reload().await.unwrap();
        assert_eq!(sd.status("x.service").await.unwrap().load_state, "loaded");
        assert_eq!(fake.unit("x.service").load_state, "loaded");
    }
}
