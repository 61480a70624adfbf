//! systemd over D-Bus: `org.freedesktop.systemd1.Manager` through zbus and zbus_systemd.
//!
//! Connection: the system bus (`$DBUS_SYSTEM_BUS_ADDRESS` is honoured); see [`Systemd::connect`]
//! for why not the manager's private socket.
//! Every job (start/stop/restart) is waited for without races: the `JobRemoved` stream is
//! opened before the method call, so the signal cannot be missed, and the wait has a deadline.
//! A job's result other than `done` is an error naming the unit.
//!
//! Tests serve a fake `Manager` over a socket pair ([`fake`]; integration tests get it with the
//! `fake-systemd` feature) and drive it with this same client.

#[cfg(any(test, feature = "fake-systemd"))]
pub mod fake;

use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use zbus::OwnedObjectPath;
use zbus::proxy::CacheProperties;
use zbus_systemd::systemd1::{ManagerProxy, ServiceProxy, UnitProxy};

/// How long a method call may take (Reload can take seconds on a busy host).
const METHOD_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a start/stop/restart job may take before hoist gives up waiting.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error(
        "cannot reach systemd over the system bus ({0}); is this a systemd host with dbus running? (elsewhere, see tests/testbed)"
    )]
    NoBus(zbus::Error),
    #[error("{unit}: {what}: {source}")]
    Call { unit: String, what: &'static str, source: zbus::Error },
    #[error("{unit}: {verb} job finished with result '{result}' (see `journalctl -u {unit}`)")]
    Job { unit: String, verb: &'static str, result: String },
    #[error("{unit}: {verb} job did not finish within {after:?}")]
    Timeout { unit: String, verb: &'static str, after: Duration },
}

pub type Result<T, E = SystemdError> = std::result::Result<T, E>;

/// What `hoist status` and `list` show of a unit.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct UnitStatus {
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub unit_file_state: String,
    pub main_pid: u32,
    pub n_restarts: u32,
    pub result: String,
    pub exec_main_status: i32,
}

/// A connection to the service manager.
#[derive(Debug, Clone)]
pub struct Systemd {
    conn: zbus::Connection,
    manager: ManagerProxy<'static>,
    job_timeout: Duration,
}

fn call<'a>(unit: &'a str, what: &'static str) -> impl FnOnce(zbus::Error) -> SystemdError + 'a {
    move |source| SystemdError::Call { unit: unit.to_string(), what, source }
}

impl Systemd {
    /// Connects over the system bus (`$DBUS_SYSTEM_BUS_ADDRESS` is honoured).
    ///
    /// Not over systemd's private socket (`/run/systemd/private`): systemd stamps its replies
    /// there with the sender `org.freedesktop.systemd1`, which zbus 6 rejects as "Invalid unique
    /// name", so a fallback would fail later and more confusingly than a clear error now.
    pub async fn connect() -> Result<Self> {
        let conn = zbus::connection::Builder::system()
            .method_timeout(METHOD_TIMEOUT)
            .build()
            .await
            .map_err(SystemdError::NoBus)?;
        Self::with_connection(conn).await
    }

    /// Uses an existing connection (tests: a peer-to-peer connection to a fake manager).
    pub async fn with_connection(conn: zbus::Connection) -> Result<Self> {
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(SystemdError::NoBus)?;
        Ok(Systemd { conn, manager, job_timeout: JOB_TIMEOUT })
    }

    pub fn with_job_timeout(mut self, t: Duration) -> Self {
        self.job_timeout = t;
        self
    }

    /// `systemctl daemon-reload` (the reply comes when the reload is done).
    pub async fn reload(&self) -> Result<()> {
        self.manager.reload().await.map_err(call("systemd", "daemon-reload"))
    }

    /// Enables a unit file by name (its `[Install]` section). Returns whether it had one.
    pub async fn enable(&self, unit: &str) -> Result<bool> {
        let (install_info, _) =
            self.manager.enable_unit_files(vec![unit.to_string()], false, true).await.map_err(call(unit, "enable"))?;
        Ok(install_info)
    }

    pub async fn disable(&self, unit: &str) -> Result<()> {
        self.manager.disable_unit_files(vec![unit.to_string()], false).await.map_err(call(unit, "disable")).map(|_| ())
    }

    pub async fn reset_failed(&self, unit: &str) -> Result<()> {
        self.manager.reset_failed_unit(unit.to_string()).await.map_err(call(unit, "reset-failed"))
    }

    /// Runs a job-creating call and waits for the job's result string.
    async fn job<F, Fut>(&self, unit: &str, verb: &'static str, f: F) -> Result<String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = zbus::Result<OwnedObjectPath>>,
    {
        // On the bus, signals are only sent to subscribers (a repeat says AlreadySubscribed).
        let _ = self.manager.subscribe().await;
        let mut removed = self.manager.receive_job_removed().await.map_err(call(unit, verb))?;
        let job = f().await.map_err(call(unit, verb))?;
        let wait = async {
            while let Some(sig) = removed.next().await {
                if let Ok(args) = sig.args()
                    && args.job().as_str() == job.as_str()
                {
                    return Ok(args.result().to_string());
                }
            }
            Err(SystemdError::Call {
                unit: unit.to_string(),
                what: verb,
                source: zbus::Error::Failure("connection closed".into()),
            })
        };
        match tokio::time::timeout(self.job_timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(SystemdError::Timeout { unit: unit.to_string(), verb, after: self.job_timeout }),
        }
    }

    async fn job_done<F, Fut>(&self, unit: &str, verb: &'static str, f: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = zbus::Result<OwnedObjectPath>>,
    {
        match self.job(unit, verb, f).await? {
            r if r == "done" => Ok(()),
            result => Err(SystemdError::Job { unit: unit.to_string(), verb, result }),
        }
    }

    pub async fn start(&self, unit: &str) -> Result<()> {
        self.job_done(unit, "start", || self.manager.start_unit(unit.to_string(), "replace".into())).await
    }

    pub async fn stop(&self, unit: &str) -> Result<()> {
        self.job_done(unit, "stop", || self.manager.stop_unit(unit.to_string(), "replace".into())).await
    }

    pub async fn restart(&self, unit: &str) -> Result<()> {
        self.job_done(unit, "restart", || self.manager.restart_unit(unit.to_string(), "replace".into())).await
    }

    /// Unit and service properties (a unit that does not exist reads `load_state: not-found`).
    pub async fn status(&self, unit: &str) -> Result<UnitStatus> {
        let path = self.manager.load_unit(unit.to_string()).await.map_err(call(unit, "load"))?;
        let u = UnitProxy::builder(&self.conn)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(call(unit, "status"))?;
        let mut st = UnitStatus {
            load_state: u.load_state().await.map_err(call(unit, "status"))?,
            active_state: u.active_state().await.map_err(call(unit, "status"))?,
            sub_state: u.sub_state().await.map_err(call(unit, "status"))?,
            unit_file_state: u.unit_file_state().await.unwrap_or_default(),
            ..Default::default()
        };
        if st.load_state == "loaded" {
            let s = ServiceProxy::builder(&self.conn)
                .path(path)
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(call(unit, "status"))?;
            st.main_pid = s.main_pid().await.unwrap_or(0);
            st.n_restarts = s.n_restarts().await.unwrap_or(0);
            st.result = s.result().await.unwrap_or_default();
            st.exec_main_status = s.exec_main_status().await.unwrap_or(0);
        }
        Ok(st)
    }
}

/// A current-thread runtime for the D-Bus calls of one command (hoist does little CPU work
/// concurrently; nothing forks while it exists).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime").block_on(f)
}
