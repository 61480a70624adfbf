//! Runtime configs written for older runtime-spec versions, as the images Project Atomic
//! published carry them, brought to runtime-spec 1.0 before hoist checks and runs them.
//!
//! atomic handed `config.json` to runc as it was; today's runtimes (and `oci-spec`) read 1.0
//! only, and a lenient parser silently drops what moved (a 0.x `linux.capabilities` list would
//! leave the container with no capabilities at all). So each construct below is converted, and
//! each conversion is one line for the user (kept in the deployment record, printed as a warning
//! by install and update); what cannot be converted is refused naming the field.
//!
//! | construct (where the spec changed it)            | conversion                                        |
//! |--------------------------------------------------|---------------------------------------------------|
//! | top-level `platform` (removed in 1.0.0-rc6)      | dropped                                           |
//! | `linux.capabilities` list (moved in 0.4.0)       | `process.capabilities` bounding/effective/inheritable/permitted |
//! | `process.capabilities` list (1.0.0-rc3, rc4)     | the same sets                                     |
//! | capability names without `CAP_` (0.x)            | `CAP_` prefixed                                   |
//! | `linux.rlimits` (moved in 0.4.0)                 | moved to `process.rlimits`                        |
//! | `linux.apparmorProfile` (moved in 0.4.0)         | moved to `process.apparmorProfile`; empty: dropped |
//! | `linux.devices: null`                            | dropped (no devices)                              |
//! | `linux.devices[].fileMode` with file-type bits   | the permission bits                               |
//! | `ociVersion` 0.x or 1.0.0-rcN                    | `1.0.2`, after the conversions above              |
//!
//! Pure: a JSON value in, the converted value and the notes out.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CompatError {
    pub field: &'static str,
    pub reason: String,
}

/// The capability sets a pre-1.0 flat list stood for (ambient came with the object form).
const LIST_SETS: &[&str] = &["bounding", "effective", "inheritable", "permitted"];

fn refuse(field: &'static str, reason: impl Into<String>) -> CompatError {
    CompatError { field, reason: reason.into() }
}

/// Capability names as 1.0 spells them; `renamed` is set when one lacked the `CAP_` prefix.
fn cap_names(field: &'static str, list: &[Value], renamed: &mut bool) -> Result<Vec<Value>, CompatError> {
    list.iter()
        .map(|c| {
            let name = c.as_str().ok_or_else(|| refuse(field, format!("{c} is not a capability name")))?;
            let upper = name.to_ascii_uppercase();
            if upper.starts_with("CAP_") {
                Ok(Value::String(upper))
            } else {
                *renamed = true;
                Ok(Value::String(format!("CAP_{upper}")))
            }
        })
        .collect()
}

/// A flat capability list as the 1.0 object.
fn caps_object(field: &'static str, list: &[Value], renamed: &mut bool) -> Result<Value, CompatError> {
    let names = cap_names(field, list, renamed)?;
    Ok(Value::Object(LIST_SETS.iter().map(|s| (s.to_string(), Value::Array(names.clone()))).collect()))
}

fn take(obj: &mut Map<String, Value>, key: &str) -> Option<Value> {
    obj.remove(key)
}

/// Converts `spec` in place; returns one note per conversion.
pub fn upgrade(spec: &mut Value) -> Result<Vec<String>, CompatError> {
    let mut notes = Vec::new();
    let Some(top) = spec.as_object_mut() else { return Ok(notes) };
    let version = top.get("ociVersion").and_then(Value::as_str).unwrap_or("").to_string();
    if take(top, "platform").is_some() {
        notes.push("top-level \"platform\" dropped (removed in runtime-spec 1.0.0-rc6)".to_string());
    }
    let mut renamed = false;
    let mut moved_linux: Vec<(&'static str, Value)> = Vec::new();
    if let Some(linux) = top.get_mut("linux").and_then(Value::as_object_mut) {
        if let Some(caps) = take(linux, "capabilities") {
            let list = caps.as_array().ok_or_else(|| refuse("linux.capabilities", "expected a list of names"))?;
            moved_linux.push(("capabilities", caps_object("linux.capabilities", list, &mut renamed)?));
            notes.push(
                "linux.capabilities (a list, runtime-spec 0.x) became process.capabilities bounding, effective, \
                 inheritable and permitted"
                    .to_string(),
            );
        }
        if let Some(rl) = take(linux, "rlimits") {
            moved_linux.push(("rlimits", rl));
            notes.push("linux.rlimits moved to process.rlimits (runtime-spec 0.4.0)".to_string());
        }
        match take(linux, "apparmorProfile") {
            Some(Value::String(p)) if p.is_empty() => {
                notes.push("empty linux.apparmorProfile dropped (runtime-spec 0.4.0 moved it to process)".to_string())
            }
            Some(p @ Value::String(_)) => {
                moved_linux.push(("apparmorProfile", p));
                notes.push("linux.apparmorProfile moved to process.apparmorProfile (runtime-spec 0.4.0)".to_string());
            }
            Some(other) => return Err(refuse("linux.apparmorProfile", format!("{other} is not a profile name"))),
            None => {}
        }
        if linux.get("devices").is_some_and(Value::is_null) {
            linux.remove("devices");
            notes.push("\"devices\": null read as no devices".to_string());
        }
        if let Some(devices) = linux.get_mut("devices").and_then(Value::as_array_mut) {
            let mut masked = false;
            for d in devices.iter_mut() {
                if let Some(mode) = d.get("fileMode").and_then(Value::as_u64)
                    && mode & !0o7777 != 0
                {
                    d["fileMode"] = Value::from(mode & 0o7777);
                    masked = true;
                }
            }
            if masked {
                notes.push("linux.devices fileMode with file-type bits: only the permission bits kept".to_string());
            }
        }
    }
    if !moved_linux.is_empty() || top.get("process").is_some_and(|p| p.get("capabilities").is_some()) {
        let process = top
            .entry("process")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| refuse("process", "expected an object"))?;
        for (key, value) in moved_linux {
            if process.contains_key(key) {
                return Err(refuse(
                    match key {
                        "capabilities" => "linux.capabilities",
                        "rlimits" => "linux.rlimits",
                        _ => "linux.apparmorProfile",
                    },
                    format!("process.{key} is given too; keep one"),
                ));
            }
            process.insert(key.to_string(), value);
        }
        match process.get_mut("capabilities") {
            Some(Value::Array(list)) => {
                let object = caps_object("process.capabilities", list, &mut renamed)?;
                process.insert("capabilities".into(), object);
                notes.push(
                    "process.capabilities (a list, runtime-spec 1.0.0-rc3) became bounding, effective, inheritable \
                     and permitted"
                        .to_string(),
                );
            }
            Some(Value::Object(sets)) => {
                for list in sets.values_mut() {
                    let Some(items) = list.as_array() else { continue };
                    *list = Value::Array(cap_names("process.capabilities", items, &mut renamed)?);
                }
            }
            Some(Value::Null) | None => {}
            Some(other) => return Err(refuse("process.capabilities", format!("{other} is neither a list nor sets"))),
        }
    }
    if renamed {
        notes.push("capability names without CAP_ (runtime-spec 0.x) prefixed".to_string());
    }
    if version.starts_with("0.") || version.starts_with("1.0.0-rc") {
        top.insert("ociVersion".into(), Value::from("1.0.2"));
        notes.push(format!("ociVersion {version} read as 1.0.2 (after the conversions above)"));
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_0_3_config_becomes_1_0() {
        let mut v = json!({
            "ociVersion": "0.3.0",
            "platform": {"os": "linux", "arch": "amd64"},
            "process": {"args": ["/x"]},
            "linux": {
                "capabilities": ["AUDIT_WRITE", "CAP_KILL"],
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "apparmorProfile": "",
                "devices": null
            }
        });
        let notes = upgrade(&mut v).unwrap();
        let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL"]);
        assert_eq!(
            v,
            json!({
                "ociVersion": "1.0.2",
                "process": {
                    "args": ["/x"],
                    "capabilities": {"bounding": caps, "effective": caps, "inheritable": caps, "permitted": caps},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
                },
                "linux": {}
            })
        );
        assert_eq!(
            notes,
            [
                "top-level \"platform\" dropped (removed in runtime-spec 1.0.0-rc6)",
                "linux.capabilities (a list, runtime-spec 0.x) became process.capabilities bounding, effective, inheritable and permitted",
                "linux.rlimits moved to process.rlimits (runtime-spec 0.4.0)",
                "empty linux.apparmorProfile dropped (runtime-spec 0.4.0 moved it to process)",
                "\"devices\": null read as no devices",
                "capability names without CAP_ (runtime-spec 0.x) prefixed",
                "ociVersion 0.3.0 read as 1.0.2 (after the conversions above)",
            ]
        );
    }

    #[test]
    fn rc3_lists_and_device_modes() {
        let mut v = json!({
            "ociVersion": "1.0.0-rc3",
            "process": {"capabilities": ["CAP_CHOWN"]},
            "linux": {"devices": [{"path": "/dev/vport2p1", "type": "c", "major": 249, "minor": 1, "fileMode": 8576}]}
        });
        let notes = upgrade(&mut v).unwrap();
        assert_eq!(v["process"]["capabilities"]["permitted"], json!(["CAP_CHOWN"]));
        assert!(v["process"]["capabilities"].get("ambient").is_none());
        assert_eq!(v["linux"]["devices"][0]["fileMode"], 0o600);
        assert_eq!(
            notes,
            [
                "linux.devices fileMode with file-type bits: only the permission bits kept",
                "process.capabilities (a list, runtime-spec 1.0.0-rc3) became bounding, effective, inheritable and permitted",
                "ociVersion 1.0.0-rc3 read as 1.0.2 (after the conversions above)",
            ]
        );
    }

    #[test]
    fn current_configs_are_left_alone() {
        let original = json!({"ociVersion": "1.0.2", "process": {"capabilities": {"bounding": ["CAP_KILL"]}}, "linux": {"devices": []}});
        let mut v = original.clone();
        assert_eq!(upgrade(&mut v).unwrap(), Vec::<String>::new());
        assert_eq!(v, original);
    }

    #[test]
    fn what_cannot_be_converted_is_refused_by_name() {
        for (v, err) in [
            (json!({"linux": {"capabilities": "CAP_KILL"}}), "linux.capabilities: expected a list of names"),
            (json!({"linux": {"capabilities": [1]}}), "linux.capabilities: 1 is not a capability name"),
            (
                json!({"linux": {"rlimits": []}, "process": {"rlimits": []}}),
                "linux.rlimits: process.rlimits is given too; keep one",
            ),
            (json!({"process": {"capabilities": 7}}), "process.capabilities: 7 is neither a list nor sets"),
            (json!({"linux": {"apparmorProfile": 3}}), "linux.apparmorProfile: 3 is not a profile name"),
        ] {
            let mut v = v;
            assert_eq!(upgrade(&mut v).unwrap_err().to_string(), err);
        }
    }
}
