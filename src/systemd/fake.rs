//! A fake `org.freedesktop.systemd1.Manager` served over a socket pair, for tests of the D-Bus
//! client: it records calls, keeps unit states, and answers jobs with `JobRemoved` signals.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use zbus::object_server::SignalEmitter;
use zbus::{ObjectPath, OwnedObjectPath};

#[derive(Debug, Default)]
pub struct State {
    pub calls: Vec<String>,
    /// unit → active state
    pub units: BTreeMap<String, String>,
    /// unit → job result to answer instead of "done"
    pub fail: BTreeMap<String, String>,
    next_job: u32,
}

#[derive(Clone, Default)]
pub struct FakeManager {
    pub state: Arc<Mutex<State>>,
}

impl FakeManager {
    fn record(&self, call: String) {
        self.state.lock().unwrap().calls.push(call);
    }

    async fn job(
        &self,
        emitter: &SignalEmitter<'_>,
        unit: String,
        verb: &str,
        active_after: &str,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.record(format!("{verb} {unit}"));
        let (id, result) = {
            let mut st = self.state.lock().unwrap();
            st.next_job += 1;
            let result = st.fail.get(&unit).cloned().unwrap_or_else(|| "done".into());
            if result == "done" {
                st.units.insert(unit.clone(), active_after.to_string());
            } else {
                st.units.insert(unit.clone(), "failed".into());
            }
            (st.next_job, result)
        };
        let path = OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{id}")).unwrap();
        FakeManager::job_removed(emitter, id, path.as_ref(), &unit, &result).await?;
        Ok(path)
    }
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl FakeManager {
    async fn subscribe(&self) {}

    async fn reload(&self) {
        self.record("reload".into());
    }

    async fn enable_unit_files(
        &self,
        files: Vec<String>,
        _runtime: bool,
        _force: bool,
    ) -> (bool, Vec<(String, String, String)>) {
        self.record(format!("enable {}", files.join(" ")));
        (true, vec![])
    }

    async fn disable_unit_files(&self, files: Vec<String>, _runtime: bool) -> Vec<(String, String, String)> {
        self.record(format!("disable {}", files.join(" ")));
        vec![]
    }

    async fn reset_failed_unit(&self, name: String) {
        self.record(format!("reset-failed {name}"));
    }

    async fn start_unit(
        &self,
        name: String,
        _mode: String,
        #[zbus(signal_emitter)] e: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.job(&e, name, "start", "active").await
    }

    async fn stop_unit(
        &self,
        name: String,
        _mode: String,
        #[zbus(signal_emitter)] e: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.job(&e, name, "stop", "inactive").await
    }

    async fn restart_unit(
        &self,
        name: String,
        _mode: String,
        #[zbus(signal_emitter)] e: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.job(&e, name, "restart", "active").await
    }

    async fn load_unit(&self, name: String) -> OwnedObjectPath {
        OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/unit/{}", zbus_systemd::bus_label_escape(&name)))
            .unwrap()
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

/// Serves a fake manager on one end of a socket pair; returns a client connection and its state.
pub async fn serve() -> (zbus::Connection, FakeManager) {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fake = FakeManager::default();
    let guid = zbus::Guid::generate();
    let server = zbus::connection::Builder::unix_stream(a)
        .server(guid)
        .p2p()
        .serve_at("/org/freedesktop/systemd1", fake.clone())
        .build();
    let client = zbus::connection::Builder::unix_stream(b).p2p().build();
    let (server, client) = futures_util::future::join(server, client).await;
    std::mem::forget(server.unwrap()); // lives as long as the test's runtime
    (client.unwrap(), fake)
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    #[tokio::test]
    async fn jobs_and_calls_over_dbus() {
        let (conn, fake) = serve().await;
        let sd = Systemd::with_connection(conn).await.unwrap();
        sd.reload().await.unwrap();
        assert!(sd.enable("etcd.service").await.unwrap());
        sd.start("etcd.service").await.unwrap();
        sd.stop("etcd.service").await.unwrap();
        fake.state.lock().unwrap().fail.insert("bad.service".into(), "failed".into());
        let err = sd.start("bad.service").await.unwrap_err();
        assert!(matches!(&err, SystemdError::Job { result, .. } if result == "failed"), "{err}");
        assert_eq!(
            err.to_string(),
            "bad.service: start job finished with result 'failed' (see `journalctl -u bad.service`)"
        );
        sd.disable("etcd.service").await.unwrap();
        let calls = fake.state.lock().unwrap().calls.clone();
        assert_eq!(
            calls,
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
}
