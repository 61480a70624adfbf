//! Health checks: what a check is, where a deployment's check comes from, and the file the runner
//! reads it from.
//!
//! ## Sources (the first that says something wins)
//! 1. The `--health-*` flags of `install`/`update` ([`HealthFlags`]), kept in the deployment
//!    record and carried into every later update like `--set` values (a flag given again
//!    replaces the kept one); `--no-healthcheck` turns any check off.
//! 2. The `healthCheck` object of the image's `/exports/manifest.json`:
//!    `{"test": ["CMD", "etcdctl", "endpoint", "health"] | ["CMD-SHELL", "…"] | "shell text" | ["NONE"],
//!      "interval": "30s", "timeout": "30s", "startPeriod": "0s", "startInterval": "5s",
//!      "retries": 3, "onFailure": "kill"}` (every field but `test` optional; durations as Go
//!    writes them: `1m30s`, `500ms`; unknown fields are refused).
//! 3. The image config's Docker `Healthcheck` (what podman and buildah write): `Test`
//!    (`CMD`, `CMD-SHELL`, `NONE`), `Interval`, `Timeout`, `StartPeriod`, `StartInterval` (in
//!    nanoseconds, 0 = default) and `Retries`.
//!
//! Defaults are Docker's: interval 30 s, timeout 30 s, start period 0, start interval 5 s, 3
//! retries; `onFailure` is `kill`.
//!
//! ## On disk
//! `health.json` beside the deployment's `config.json` (the bundle the unit's runner is given),
//! the JSON form of [`HealthCheck`] with durations in milliseconds. No file: no check.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The file in a bundle directory that holds its check.
pub const FILE: &str = "health.json";

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("health check from {source_name}: {reason}")]
    Invalid { source_name: String, reason: String },
}

fn invalid(source_name: &str, reason: impl Into<String>) -> HealthError {
    HealthError::Invalid { source_name: source_name.to_string(), reason: reason.into() }
}

/// What to do when a running container's check fails `retries` times in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Only report it (`STATUS=`, `hoist status`).
    None,
    /// Stop the container (SIGTERM, then SIGKILL) and exit non-zero: the unit's `Restart=` decides.
    #[default]
    Kill,
    /// Stop the container and exit non-zero in a way `Restart=on-failure` does not restart:
    /// the unit ends `failed` and stays down.
    Stop,
}

impl std::str::FromStr for OnFailure {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(OnFailure::None),
            "kill" => Ok(OnFailure::Kill),
            "stop" => Ok(OnFailure::Stop),
            other => Err(format!("{other:?} is not one of none, kill, stop")),
        }
    }
}

impl std::fmt::Display for OnFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OnFailure::None => "none",
            OnFailure::Kill => "kill",
            OnFailure::Stop => "stop",
        })
    }
}

/// A health check: the command run in the container and its schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// The command (argv) run in the container; a shell check is `["/bin/sh", "-c", TEXT]`.
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Failures during this time after start do not count (but a pass ends the start period).
    pub start_period_ms: u64,
    /// The interval during the start period.
    pub start_interval_ms: u64,
    pub retries: u32,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Where it came from: `--health-cmd`, `/exports/manifest.json`, `image config`.
    pub origin: String,
}

const DEFAULT_INTERVAL: u64 = 30_000;
const DEFAULT_TIMEOUT: u64 = 30_000;
const DEFAULT_START_INTERVAL: u64 = 5_000;
const DEFAULT_RETRIES: u32 = 3;

impl HealthCheck {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    pub fn start_period(&self) -> Duration {
        Duration::from_millis(self.start_period_ms)
    }
    pub fn start_interval(&self) -> Duration {
        Duration::from_millis(self.start_interval_ms)
    }

    /// The command as a user would write it (`CMD-SHELL curl -f …` or `CMD a b`).
    pub fn command(&self) -> String {
        match &self.test[..] {
            [sh, c, text] if sh == "/bin/sh" && c == "-c" => text.clone(),
            argv => argv.join(" "),
        }
    }

    /// Reads a bundle directory's check (None: the file does not exist).
    pub fn load(bundle: &Path) -> Result<Option<HealthCheck>, HealthError> {
        let path = bundle.join(FILE);
        match std::fs::read(&path) {
            Ok(data) => {
                serde_json::from_slice(&data).map(Some).map_err(|e| invalid(&path.display().to_string(), e.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(invalid(&path.display().to_string(), e.to_string())),
        }
    }

    fn check(self) -> Result<Self, HealthError> {
        let origin = self.origin.clone();
        if self.test.is_empty() || self.test[0].is_empty() {
            return Err(invalid(&origin, "the command is empty"));
        }
        for (what, ms) in
            [("interval", self.interval_ms), ("timeout", self.timeout_ms), ("startInterval", self.start_interval_ms)]
        {
            if ms < 100 {
                return Err(invalid(&origin, format!("{what} must be at least 100ms")));
            }
        }
        if self.retries == 0 {
            return Err(invalid(&origin, "retries must be at least 1"));
        }
        Ok(self)
    }
}

/// The `--health-*` flags of one command (install, update; kept in the record for later
/// updates); None = not given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(rename_all = "camelCase")]
pub struct HealthFlags {
    /// Health check: a shell command run in the container (overrides the image's check)
    #[arg(long = "health-cmd", value_name = "CMD")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// Time between checks once healthy (Go duration: 30s, 1m30s, 500ms)
    #[arg(long = "health-interval", value_name = "DURATION")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Time a check may take before it is killed and counts as failed
    #[arg(long = "health-timeout", value_name = "DURATION")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Time after start during which failing checks do not count
    #[arg(long = "health-start-period", value_name = "DURATION")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<String>,
    /// Consecutive failures that make the container unhealthy
    #[arg(long = "health-retries", value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// What an unhealthy running container gets: none (reported), kill (stopped; Restart= decides), stop (unit stays down)
    #[arg(long = "health-on-failure", value_name = "ACTION")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// No health check, whatever the image brings
    #[arg(long = "no-healthcheck", conflicts_with = "cmd")]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

impl HealthFlags {
    pub fn is_empty(&self) -> bool {
        *self == HealthFlags::default()
    }

    /// These flags given on top of `kept` (an earlier deployment's): a flag given now replaces
    /// the kept one; `--no-healthcheck` and `--health-cmd` replace each other.
    pub fn over(&self, kept: &HealthFlags) -> HealthFlags {
        let disabled = self.disabled || (kept.disabled && self.cmd.is_none());
        HealthFlags {
            cmd: if self.disabled { None } else { self.cmd.clone().or_else(|| kept.cmd.clone()) },
            interval: self.interval.clone().or_else(|| kept.interval.clone()),
            timeout: self.timeout.clone().or_else(|| kept.timeout.clone()),
            start_period: self.start_period.clone().or_else(|| kept.start_period.clone()),
            retries: self.retries.or(kept.retries),
            on_failure: self.on_failure.or(kept.on_failure),
            disabled,
        }
    }

    /// Checks the values (durations parse, retries ≥ 1) before anything is done.
    pub fn validate(&self) -> Result<(), HealthError> {
        for (flag, v) in [
            ("--health-interval", &self.interval),
            ("--health-timeout", &self.timeout),
            ("--health-start-period", &self.start_period),
        ] {
            if let Some(v) = v {
                parse_duration(v).map_err(|e| invalid(flag, e))?;
            }
        }
        if self.retries == Some(0) {
            return Err(invalid("--health-retries", "must be at least 1"));
        }
        if self.disabled && self.cmd.is_some() {
            return Err(invalid("--no-healthcheck", "cannot be given with --health-cmd"));
        }
        Ok(())
    }
}

/// The `healthCheck` object of `/exports/manifest.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestCheck {
    test: TestSpec,
    interval: Option<String>,
    timeout: Option<String>,
    start_period: Option<String>,
    start_interval: Option<String>,
    retries: Option<u32>,
    on_failure: Option<OnFailure>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TestSpec {
    Shell(String),
    Form(Vec<String>),
}

/// Docker's `Test`: `["CMD", argv…]`, `["CMD-SHELL", text]`, `["NONE"]` (None: explicitly off).
fn docker_test(test: &[String], origin: &str) -> Result<Option<Vec<String>>, HealthError> {
    match test {
        [kind, rest @ ..] if kind == "CMD" && !rest.is_empty() => Ok(Some(rest.to_vec())),
        [kind, text] if kind == "CMD-SHELL" => Ok(Some(shell(text))),
        [kind] if kind == "NONE" => Ok(None),
        _ => Err(invalid(origin, format!("test {test:?} is not [\"CMD\", …], [\"CMD-SHELL\", TEXT] or [\"NONE\"]"))),
    }
}

fn shell(text: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), text.into()]
}

/// Parses a Go duration (`300ms`, `1.5h`, `2h45m`; units ns, us, µs, ms, s, m, h); a bare `0`
/// is zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (like 30s, 1m30s, 500ms)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        if n == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[u..];
    }
    if !total.is_finite() || total > 365.0 * 86400.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Decides a deployment's check: `flags` (with what earlier deployments kept), else the image's
/// `/exports/manifest.json` `healthCheck`, else its config's `Healthcheck`. None: no check.
pub fn decide(
    flags: &HealthFlags,
    manifest: Option<&ManifestCheck>,
    image_config: Option<&serde_json::Value>,
) -> Result<Option<HealthCheck>, HealthError> {
    flags.validate()?;
    if flags.disabled {
        return Ok(None);
    }
    let base = match (&flags.cmd, manifest, image_config) {
        (Some(cmd), ..) => Some(HealthCheck {
            test: shell(cmd),
            interval_ms: DEFAULT_INTERVAL,
            timeout_ms: DEFAULT_TIMEOUT,
            start_period_ms: 0,
            start_interval_ms: DEFAULT_START_INTERVAL,
            retries: DEFAULT_RETRIES,
            on_failure: OnFailure::default(),
            origin: "--health-cmd".into(),
        }),
        (None, Some(m), _) => from_manifest(m)?,
        (None, None, Some(cfg)) => from_image_config(cfg)?,
        (None, None, None) => None,
    };
    let Some(mut hc) = base else { return Ok(None) };
    let d = |v: &Option<String>| v.as_deref().map(parse_duration).transpose().map_err(|e| invalid("flags", e));
    if let Some(v) = d(&flags.interval)? {
        hc.interval_ms = ms(v);
    }
    if let Some(v) = d(&flags.timeout)? {
        hc.timeout_ms = ms(v);
    }
    if let Some(v) = d(&flags.start_period)? {
        hc.start_period_ms = ms(v);
    }
    if let Some(r) = flags.retries {
        hc.retries = r;
    }
    if let Some(f) = flags.on_failure {
        hc.on_failure = f;
    }
    hc.check().map(Some)
}

const MANIFEST: &str = "/exports/manifest.json healthCheck";

fn from_manifest(m: &ManifestCheck) -> Result<Option<HealthCheck>, HealthError> {
    let test = match &m.test {
        TestSpec::Shell(text) => shell(text),
        TestSpec::Form(form) => match docker_test(form, MANIFEST)? {
            Some(t) => t,
            None => return Ok(None),
        },
    };
    let d = |v: &Option<String>, default: u64| -> Result<u64, HealthError> {
        match v {
            Some(v) => parse_duration(v).map(ms).map_err(|e| invalid(MANIFEST, e)),
            None => Ok(default),
        }
    };
    Ok(Some(HealthCheck {
        test,
        interval_ms: d(&m.interval, DEFAULT_INTERVAL)?,
        timeout_ms: d(&m.timeout, DEFAULT_TIMEOUT)?,
        start_period_ms: d(&m.start_period, 0)?,
        start_interval_ms: d(&m.start_interval, DEFAULT_START_INTERVAL)?,
        retries: m.retries.unwrap_or(DEFAULT_RETRIES),
        on_failure: m.on_failure.unwrap_or_default(),
        origin: "/exports/manifest.json".into(),
    }))
}

/// Docker's `Healthcheck` (`config.Healthcheck` of an image config).
fn from_image_config(v: &serde_json::Value) -> Result<Option<HealthCheck>, HealthError> {
    const ORIGIN: &str = "image config Healthcheck";
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Docker {
        #[serde(default)]
        test: Vec<String>,
        #[serde(default)]
        interval: u64,
        #[serde(default)]
        timeout: u64,
        #[serde(default)]
        start_period: u64,
        #[serde(default)]
        start_interval: u64,
        #[serde(default)]
        retries: u32,
    }
    let h: Docker = serde_json::from_value(v.clone()).map_err(|e| invalid(ORIGIN, e.to_string()))?;
    if h.test.is_empty() {
        return Ok(None);
    }
    let Some(test) = docker_test(&h.test, ORIGIN)? else { return Ok(None) };
    let ns = |v: u64, default: u64| if v == 0 { default } else { v / 1_000_000 };
    Ok(Some(HealthCheck {
        test,
        interval_ms: ns(h.interval, DEFAULT_INTERVAL),
        timeout_ms: ns(h.timeout, DEFAULT_TIMEOUT),
        start_period_ms: ns(h.start_period, 0),
        start_interval_ms: ns(h.start_interval, DEFAULT_START_INTERVAL),
        retries: if h.retries == 0 { DEFAULT_RETRIES } else { h.retries },
        on_failure: OnFailure::default(),
        origin: "image config".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "30", "s", "1x", "-1s", "1s2", "1e3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sources_in_order() {
        let cfg =
            json!({"Test": ["CMD-SHELL", "wget -q -O- localhost:8081"], "Interval": 2_000_000_000u64, "Retries": 2});
        let m: ManifestCheck = serde_json::from_value(json!({"test": ["CMD", "true"], "interval": "1s"})).unwrap();
        let none = HealthFlags::default();
        let from_cfg = decide(&none, None, Some(&cfg)).unwrap().unwrap();
        assert_eq!(from_cfg.test, shell("wget -q -O- localhost:8081"));
        assert_eq!((from_cfg.interval_ms, from_cfg.timeout_ms, from_cfg.retries), (2000, 30_000, 2));
        assert_eq!(from_cfg.origin, "image config");
        let from_m = decide(&none, Some(&m), Some(&cfg)).unwrap().unwrap();
        assert_eq!(
            (from_m.test.clone(), from_m.interval_ms, from_m.origin.as_str()),
            (vec!["true".to_string()], 1000, "/exports/manifest.json")
        );
        let flags = HealthFlags { cmd: Some("test -e /ok".into()), retries: Some(5), ..Default::default() };
        let from_f = decide(&flags, Some(&m), Some(&cfg)).unwrap().unwrap();
        assert_eq!(
            (from_f.command(), from_f.retries, from_f.origin.as_str()),
            ("test -e /ok".into(), 5, "--health-cmd")
        );
        // Flags without a command tune the image's check.
        let tune =
            HealthFlags { interval: Some("250ms".into()), on_failure: Some(OnFailure::Stop), ..Default::default() };
        let tuned = decide(&tune, None, Some(&cfg)).unwrap().unwrap();
        assert_eq!((tuned.interval_ms, tuned.on_failure), (250, OnFailure::Stop));
        // Off: --no-healthcheck, or NONE in the image.
        let off = HealthFlags { disabled: true, ..Default::default() };
        assert_eq!(decide(&off, Some(&m), Some(&cfg)).unwrap(), None);
        assert_eq!(decide(&none, None, Some(&json!({"Test": ["NONE"]}))).unwrap(), None);
        assert_eq!(decide(&none, None, None).unwrap(), None);
    }

    #[test]
    fn refusals_name_the_source() {
        let e = decide(&HealthFlags::default(), None, Some(&json!({"Test": ["SHELL", "x"]}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "health check from image config Healthcheck: test [\"SHELL\", \"x\"] is not [\"CMD\", …], [\"CMD-SHELL\", TEXT] or [\"NONE\"]"
        );
        let e = HealthFlags { interval: Some("soon".into()), ..Default::default() }.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "health check from --health-interval: \"soon\" is not a duration (like 30s, 1m30s, 500ms)"
        );
        let e = decide(
            &HealthFlags { cmd: Some("x".into()), interval: Some("10ms".into()), ..Default::default() },
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "health check from --health-cmd: interval must be at least 100ms");
        assert!(serde_json::from_value::<ManifestCheck>(json!({"test": "x", "intervall": "1s"})).is_err());
    }

    #[test]
    fn flags_are_kept_across_updates() {
        let kept = HealthFlags { cmd: Some("a".into()), retries: Some(2), ..Default::default() };
        let now = HealthFlags { interval: Some("1s".into()), ..Default::default() };
        let merged = now.over(&kept);
        assert_eq!(
            (merged.cmd.as_deref(), merged.retries, merged.interval.as_deref()),
            (Some("a"), Some(2), Some("1s"))
        );
        let off = HealthFlags { disabled: true, ..Default::default() }.over(&kept);
        assert!(off.disabled && off.cmd.is_none());
        let back = HealthFlags { cmd: Some("b".into()), ..Default::default() }.over(&off);
        assert!(!back.disabled && back.cmd.as_deref() == Some("b"));
    }
}
