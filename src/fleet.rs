//! Coordinated updates over the FleetLock protocol (Zincati's: an HTTP semaphore per group, as
//! served by airlock and its peers), with "hold on failure".
//!
//! Configured in `/etc/hoist/hoist.toml` (or `$HOIST_CONFIG`):
//!
//! ```toml
//! [fleetlock]
//! url = "http://fleetlock.example.com:3333"   # the server's base URL
//! group = "etcd-canary"                        # default "default"; [a-zA-Z0-9.-]+
//! ```
//!
//! Wire (one request per step, no retries inside a step):
//! `POST {url}/v1/pre-reboot` before the first switch of a `hoist update`, and
//! `POST {url}/v1/steady-state` once every switched container passed its health check and
//! grace period; both with the header `fleet-lock-protocol: true` and the body
//! `{"client_params": {"id": ID, "group": GROUP}}`. A 200 is success; anything else is a
//! refusal whose JSON body `{"kind", "value"}` is reported as it is.
//!
//! ID: the machine's app-specific id, as `sd_id128_get_machine_app_specific()` derives it
//! (HMAC-SHA256 keyed by `/etc/machine-id`'s 16 bytes over hoist's app id, the first 16 bytes
//! with the UUID v4 bits set, 32 lowercase hex digits): stable per machine, not the raw id.
//!
//! State, `<root>/fleetlock.json`, written before the lock is asked for and removed once it is
//! released: `{"phase": "updating"|"held", "group", "id", "since", "reason"}`. `updating` means a
//! `hoist update` holds (or may hold) the slot; `held` means an update failed and rolled back,
//! so this host keeps the slot on purpose: a bad release stops at the semaphore's size. A later
//! update that succeeds, or `hoist fleet release`, releases it. A crash leaves `updating`; the
//! next `hoist update` that ends well releases it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::fsutil::{self, PathError};
use crate::layout::Layout;

/// The most of a server's answer that is read.
const MAX_ANSWER: usize = 4096;

/// Default configuration file.
pub const CONFIG: &str = "/etc/hoist/hoist.toml";

/// hoist's application id for the app-specific machine id (a random 128-bit constant).
const APP_ID: [u8; 16] =
    [0x6b, 0x3e, 0x1f, 0x52, 0x9a, 0x0c, 0x4d, 0x7e, 0xb1, 0x27, 0x58, 0xe4, 0x03, 0xcf, 0x96, 0x2a];

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{}: {reason}", file.display())]
    Config { file: PathBuf, reason: String },
    #[error("machine id {}: {reason}", file.display())]
    MachineId { file: PathBuf, reason: String },
    #[error("fleet lock server {url} cannot be reached: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("fleet lock server {url} refused {step} for group {group}: {answer}")]
    Refused { url: String, step: &'static str, group: String, answer: String },
    #[error(transparent)]
    Io(#[from] PathError),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    fleetlock: Option<FleetlockSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetlockSection {
    url: String,
    #[serde(default = "default_group")]
    group: String,
}

fn default_group() -> String {
    "default".into()
}

/// A configured FleetLock client.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub url: String,
    pub group: String,
    pub id: String,
}

/// The configuration file in use (`$HOIST_CONFIG` or [`CONFIG`]).
pub fn config_file() -> PathBuf {
    std::env::var_os("HOIST_CONFIG").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(CONFIG))
}

/// The machine id file (`$HOIST_MACHINE_ID_FILE`, for tests running several "hosts" on one
/// machine; else `/etc/machine-id`).
fn machine_id_file() -> PathBuf {
    std::env::var_os("HOIST_MACHINE_ID_FILE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/etc/machine-id"))
}

impl Fleet {
    /// The client the configuration asks for; `None` without a `[fleetlock]` section (or file).
    pub fn from_config() -> Result<Option<Fleet>, FleetError> {
        let file = config_file();
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FleetError::Config { file, reason: e.to_string() }),
        };
        let conf: ConfigFile = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(1, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            FleetError::Config { file: file.clone(), reason: format!("line {line}: {}", e.message().trim()) }
        })?;
        let Some(s) = conf.fleetlock else { return Ok(None) };
        let bad = |reason: String| FleetError::Config { file: file.clone(), reason };
        if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
            return Err(bad(format!("fleetlock.url {:?}: not an http:// or https:// URL", s.url)));
        }
        if s.group.is_empty() || !s.group.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
            return Err(bad(format!("fleetlock.group {:?}: use letters, digits, '.' and '-'", s.group)));
        }
        let mid = machine_id_file();
        let text = std::fs::read_to_string(&mid)
            .map_err(|e| FleetError::MachineId { file: mid.clone(), reason: e.to_string() })?;
        let id = app_specific_id(text.trim()).map_err(|reason| FleetError::MachineId { file: mid, reason })?;
        Ok(Some(Fleet { url: s.url.trim_end_matches('/').to_string(), group: s.group, id }))
    }

    /// `POST /v1/pre-reboot`: take (or confirm) this host's slot.
    pub fn lock(&self) -> Result<(), FleetError> {
        self.call("pre-reboot")
    }

    /// `POST /v1/steady-state`: give the slot back.
    pub fn unlock(&self) -> Result<(), FleetError> {
        self.call("steady-state")
    }

    fn call(&self, step: &'static str) -> Result<(), FleetError> {
        let url = format!("{}/v1/{step}", self.url);
        let body = serde_json::json!({"client_params": {"id": self.id, "group": self.group}}).to_string();
        let unreachable = |cause: String| FleetError::Unreachable { url: self.url.clone(), cause };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        let (status, text) = rt.block_on(async {
            let client = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| unreachable(e.to_string()))?;
            let res = client
                .post(&url)
                .header("fleet-lock-protocol", "true")
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| unreachable(innermost(&e)))?;
            let status = res.status();
            // An answer is a small JSON object: at most MAX_ANSWER bytes are read, whatever the
            // server sends.
            let mut res = res;
            let mut body = Vec::new();
            while body.len() < MAX_ANSWER {
                match res.chunk().await.map_err(|e| unreachable(innermost(&e)))? {
                    Some(c) => body.extend_from_slice(&c[..c.len().min(MAX_ANSWER - body.len())]),
                    None => break,
                }
            }
            Ok::<_, FleetError>((status, String::from_utf8_lossy(&body).into_owned()))
        })?;
        if status.is_success() {
            return Ok(());
        }
        #[derive(Deserialize)]
        struct Answer {
            kind: String,
            value: String,
        }
        let answer = match serde_json::from_str::<Answer>(&text) {
            Ok(a) => format!("{}: {} (HTTP {})", a.kind, a.value, status.as_u16()),
            Err(_) => format!("HTTP {}", status.as_u16()),
        };
        Err(FleetError::Refused { url: self.url.clone(), step, group: self.group.clone(), answer })
    }
}

fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The app-specific id of a machine id (32 hex digits), as systemd derives it.
pub fn app_specific_id(machine_id: &str) -> Result<String, String> {
    let key = hex::decode(machine_id).ok().filter(|k| k.len() == 16).ok_or("not 32 hexadecimal digits")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(&APP_ID);
    let out = mac.finalize().into_bytes();
    let mut id = [0u8; 16];
    id.copy_from_slice(&out[..16]);
    // UUID version 4, variant DCE (what systemd's id128 "make v4" does).
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    Ok(hex::encode(id))
}

/// Why this host holds (or may hold) its slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A `hoist update` asked for the slot and has not finished (or was killed).
    Updating,
    /// An update failed and rolled back: the slot is kept on purpose.
    Held,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub phase: Phase,
    pub url: String,
    pub group: String,
    pub id: String,
    /// Unix time the phase began.
    pub since: u64,
    /// Why it is held (phase `held`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn state_file(layout: &Layout) -> PathBuf {
    layout.root().join("fleetlock.json")
}

/// The recorded state, if this host holds (or may hold) a slot.
pub fn state(layout: &Layout) -> Option<State> {
    read_state(&state_file(layout))
}

fn read_state(file: &Path) -> Option<State> {
    std::fs::read(file).ok().and_then(|d| serde_json::from_slice(&d).ok())
}

pub fn record(layout: &Layout, fleet: &Fleet, phase: Phase, reason: Option<String>) -> Result<(), FleetError> {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let s = State { phase, url: fleet.url.clone(), group: fleet.group.clone(), id: fleet.id.clone(), since, reason };
    let data = serde_json::to_vec_pretty(&s).expect("state serializes");
    Ok(fsutil::write_atomic(&state_file(layout), &data, 0o600)?)
}

pub fn clear(layout: &Layout) -> Result<(), FleetError> {
    match std::fs::remove_file(state_file(layout)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PathError::new(state_file(layout), e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-request HTTP server answering `status` with `body`; returns its URL and what it was
    /// sent (headers and body).
    fn serve_once(status: &'static str, body: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&req).contains("}}") {
                let n = c.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = c.write_all(head.as_bytes());
            let _ = c.write_all(&body);
            String::from_utf8_lossy(&req).into_owned()
        });
        (url, t)
    }

    fn fleet(url: String) -> Fleet {
        Fleet { url, group: "workers".into(), id: "0123456789abcdef0123456789abcdef".into() }
    }

    #[test]
    fn requests_follow_the_protocol() {
        let (url, t) = serve_once("200 OK", b"{}".to_vec());
        fleet(url).lock().unwrap();
        let req = t.join().unwrap().to_ascii_lowercase();
        assert!(req.starts_with("post /v1/pre-reboot http/1.1\r\n"), "{req}");
        assert!(req.contains("\r\nfleet-lock-protocol: true\r\n"), "{req}");
        assert!(
            req.ends_with("{\"client_params\":{\"group\":\"workers\",\"id\":\"0123456789abcdef0123456789abcdef\"}}"),
            "{req}"
        );
    }

    #[test]
    fn a_hostile_answer_is_bounded_and_reported_as_it_is() {
        // 16 MiB of answer: read up to the cap, reported by status only (not JSON).
        let (url, t) = serve_once("409 Conflict", vec![b'x'; 16 << 20]);
        let e = fleet(url.clone()).unlock().unwrap_err();
        assert_eq!(e.to_string(), format!("fleet lock server {url} refused steady-state for group workers: HTTP 409"));
        let _ = t.join();
        // Control characters in kind/value stay in the message; the CLI prints it escaped.
        let (url, t) = serve_once("409 Conflict", br#"{"kind":"full\u001b[2J","value":"go away"}"#.to_vec());
        let e = fleet(url).lock().unwrap_err().to_string();
        assert!(e.ends_with("refused pre-reboot for group workers: full\u{1b}[2J: go away (HTTP 409)"), "{e:?}");
        assert_eq!(crate::error::printable(&e).matches("\\x1b").count(), 1);
        let _ = t.join();
        // Nobody listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = fleet(format!("http://127.0.0.1:{port}")).lock().unwrap_err().to_string();
        assert!(e.starts_with(&format!("fleet lock server http://127.0.0.1:{port} cannot be reached: ")), "{e}");
    }

    #[test]
    fn the_id_is_app_specific_and_stable() {
        let a = app_specific_id("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(a, app_specific_id("0123456789abcdef0123456789abcdef").unwrap());
        assert_ne!(a, "0123456789abcdef0123456789abcdef");
        assert_ne!(a, app_specific_id("0123456789abcdef0123456789abcdee").unwrap());
        assert_eq!(&a[12..13], "4", "UUID v4 bits: {a}");
        assert!(matches!(&a[16..17], "8" | "9" | "a" | "b"), "variant bits: {a}");
        assert_eq!(app_specific_id("not-an-id").unwrap_err(), "not 32 hexadecimal digits");
    }
}
