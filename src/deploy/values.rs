//! Template values: what `$VAR` means in an image's `/exports` templates, and how a value is
//! escaped for the file it lands in.
//!
//! Precedence (atomic's contract, DESIGN §2): `--set` > stored values (update) > the image's
//! `manifest.json` `defaultValues` > hoist's overridable built-ins; hoist's forced built-ins
//! always win and cannot be `--set`.
//!
//! Escaping: only hoist's own command lines and capability list are inserted verbatim. Every
//! other value, wherever it came from, is escaped for its destination, so a hostile `--set` can
//! neither add a unit directive nor break out of a JSON string:
//! - JSON (`config.json.template`): inside a JSON string, JSON string escaping. Outside any
//!   string (atomic's `$ADDTL_MOUNTS` at the end of the `mounts` array) the value is JSON text,
//!   inserted as it is (empty: nothing): the image put it there to take structure, as atomic
//!   did. Either way the rendered document must then parse as JSON and as an OCI runtime config,
//!   or the deployment fails naming the variable (see `super::bundle`);
//! - unit files: control characters (newlines!) refused, `%` doubled, no trailing `\`;
//! - tmpfiles.d: whitespace and control characters refused (fields are space separated);
//! - paths (`renameFiles`): control characters and `..` refused, must end up absolute.

use std::collections::BTreeMap;

use crate::template::{self, Span, TemplateError};

/// A value inserted as JSON text (outside any JSON string) into a rendered config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub var: String,
    pub value: String,
    /// Where it landed in the rendered text.
    pub out: std::ops::Range<usize>,
}

/// The variables a `config.json.template` uses outside JSON strings: they take JSON text (for
/// `hoist images info`).
pub fn json_fragments(file: &str, text: &str) -> Result<std::collections::BTreeSet<String>, TemplateError> {
    let mask = json_string_mask(text);
    Ok(template::placeholders(file, text)?
        .into_iter()
        .filter(|(v, at)| !mask.get(*at).copied().unwrap_or(false) && !VERBATIM.contains(&v.as_str()))
        .map(|(v, _)| v)
        .collect())
}

/// Set by hoist; a `--set` cannot change them.
pub const FORCED: &[&str] = &[
    "NAME",
    "DESTDIR",
    "EXEC_START",
    "EXEC_STOP",
    "EXEC_STARTPRE",
    "EXEC_STOPPOST",
    "HOST_UID",
    "HOST_GID",
    "IMAGE_NAME",
    "IMAGE_ID",
];
/// Set by hoist unless given.
pub const OVERRIDABLE: &[&str] =
    &["RUN_DIRECTORY", "STATE_DIRECTORY", "CONF_DIRECTORY", "PIDFILE", "UUID", "ALL_PROCESS_CAPABILITIES", "RUNTIME"];
/// Inserted without escaping (hoist builds them itself).
const VERBATIM: &[&str] = &["EXEC_START", "EXEC_STOP", "EXEC_STARTPRE", "EXEC_STOPPOST", "ALL_PROCESS_CAPABILITIES"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("--set {0}: expected NAME=VALUE")]
    Syntax(String),
    #[error("--set {0}: invalid variable name (letters, digits and _, not starting with a digit)")]
    BadName(String),
    #[error("--set {0}: set by hoist itself, cannot be changed")]
    Forced(String),
    #[error("{file}: value of ${var} {reason}")]
    Unsafe { file: String, var: String, reason: &'static str },
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// Parses `NAME=VALUE` arguments.
pub fn parse_sets(args: &[String]) -> Result<BTreeMap<String, String>, ValueError> {
    let mut out = BTreeMap::new();
    for a in args {
        let (k, v) = a.split_once('=').ok_or_else(|| ValueError::Syntax(a.clone()))?;
        let valid = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(ValueError::BadName(k.to_string()));
        }
        if FORCED.contains(&k) {
            return Err(ValueError::Forced(k.to_string()));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// The full value set of one deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Values(pub BTreeMap<String, String>);

/// Inputs of [`compute`].
pub struct Inputs<'a> {
    pub sets: &'a BTreeMap<String, String>,
    /// Values stored by an earlier deployment (update); `--set` wins over them.
    pub stored: Option<&'a BTreeMap<String, String>>,
    pub defaults: &'a BTreeMap<String, String>,
    /// Overridable built-ins (RUN_DIRECTORY, …) as hoist would set them.
    pub builtins: BTreeMap<String, String>,
    /// Forced built-ins.
    pub forced: BTreeMap<String, String>,
}

pub fn compute(i: Inputs<'_>) -> Values {
    let mut v = BTreeMap::new();
    for (k, x) in &i.builtins {
        v.insert(k.clone(), x.clone());
    }
    for (k, x) in i.defaults {
        // Image defaults win over hoist's overridable built-ins (unlike atomic, where a
        // manifest default for CONF_DIRECTORY was silently shadowed).
        v.insert(k.clone(), x.clone());
    }
    if let Some(stored) = i.stored {
        for (k, x) in stored {
            if !FORCED.contains(&k.as_str()) {
                v.insert(k.clone(), x.clone());
            }
        }
    }
    for (k, x) in i.sets {
        v.insert(k.clone(), x.clone());
    }
    for (k, x) in i.forced {
        v.insert(k, x);
    }
    Values(v)
}

/// Where a rendered value lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Json,
    Unit,
    Tmpfiles,
    Path,
    /// Host files listed in `installedFilesTemplate`: the image author's own config format.
    Raw,
}

/// Byte ranges of a JSON text that are inside string literals (quotes included).
fn json_string_mask(text: &str) -> Vec<bool> {
    let mut mask = vec![false; text.len()];
    let (mut in_str, mut escaped) = (false, false);
    for (i, b) in text.bytes().enumerate() {
        if in_str {
            mask[i] = true;
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else if b == b'"' {
            in_str = true;
            mask[i] = true;
        }
    }
    mask
}

fn escape(file: &str, var: &str, value: &str, target: Target, in_json_string: bool) -> Result<String, ValueError> {
    let unsafe_ = |reason| ValueError::Unsafe { file: file.to_string(), var: var.to_string(), reason };
    if VERBATIM.contains(&var) {
        return Ok(value.to_string());
    }
    match target {
        Target::Json if in_json_string => {
            let s = serde_json::to_string(value).expect("string serializes");
            Ok(s[1..s.len() - 1].to_string())
        }
        // Outside a string: a JSON fragment, checked by parsing the whole document.
        Target::Json => Ok(value.to_string()),
        Target::Unit => {
            if value.chars().any(char::is_control) {
                return Err(unsafe_("contains a control character (a newline would add a unit directive)"));
            }
            if value.ends_with('\\') {
                return Err(unsafe_("ends with a backslash (it would continue the line)"));
            }
            Ok(value.replace('%', "%%"))
        }
        Target::Tmpfiles => {
            if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(unsafe_(
                    "contains whitespace or a control character (tmpfiles.d fields are space separated)",
                ));
            }
            Ok(value.to_string())
        }
        Target::Path => {
            if value.chars().any(char::is_control) {
                return Err(unsafe_("contains a control character"));
            }
            if value.split('/').any(|c| c == "..") {
                return Err(unsafe_("contains '..'"));
            }
            Ok(value.to_string())
        }
        Target::Raw => Ok(value.to_string()),
    }
}

impl Values {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    /// Renders a template for `target`; unknown variables are errors naming the file.
    pub fn render(&self, file: &str, text: &str, target: Target) -> Result<String, ValueError> {
        self.render_spans(file, text, target).map(|(out, _)| out)
    }

    /// Renders a `config.json.template`; also returns where each JSON fragment (a variable
    /// outside any JSON string) landed in the output, so a parse error can name it.
    pub fn render_json(&self, file: &str, text: &str) -> Result<(String, Vec<Fragment>), ValueError> {
        let (out, spans) = self.render_spans(file, text, Target::Json)?;
        let mask = json_string_mask(text);
        let fragments = spans
            .into_iter()
            .filter(|s| !mask.get(s.at).copied().unwrap_or(false) && !VERBATIM.contains(&s.var.as_str()))
            .map(|s| Fragment { value: self.get(&s.var).unwrap_or_default().to_string(), var: s.var, out: s.out })
            .collect();
        Ok((out, fragments))
    }

    fn render_spans(&self, file: &str, text: &str, target: Target) -> Result<(String, Vec<Span>), ValueError> {
        // Escaping can fail; collect the first failure through a cell, as render's callback
        // only reports "unknown".
        let failure = std::cell::RefCell::new(None);
        let mask = if target == Target::Json { json_string_mask(text) } else { Vec::new() };
        let out = template::render_spans(file, text, |var, at| {
            let v = self.0.get(var)?;
            match escape(file, var, v, target, mask.get(at).copied().unwrap_or(false)) {
                Ok(e) => Some(e),
                Err(e) => {
                    failure.borrow_mut().get_or_insert(e);
                    Some(String::new())
                }
            }
        })?;
        match failure.into_inner() {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> Values {
        Values(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn precedence() {
        let m = |p: &[(&str, &str)]| p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        let v = compute(Inputs {
            sets: &m(&[("PORT", "9000")]),
            stored: Some(&m(&[("PORT", "8000"), ("RECEIVER", "stored"), ("UUID", "u-1"), ("NAME", "old")])),
            defaults: &m(&[("PORT", "8081"), ("RECEIVER", "world"), ("CONF_DIRECTORY", "/etc/app")]),
            builtins: m(&[("CONF_DIRECTORY", "/etc"), ("UUID", "fresh")]),
            forced: m(&[("NAME", "new")]),
        });
        assert_eq!(v.get("PORT"), Some("9000"), "--set wins");
        assert_eq!(v.get("RECEIVER"), Some("stored"), "stored beats defaults");
        assert_eq!(v.get("UUID"), Some("u-1"), "UUID kept across updates");
        assert_eq!(v.get("CONF_DIRECTORY"), Some("/etc/app"), "image default beats built-in");
        assert_eq!(v.get("NAME"), Some("new"), "forced always wins");
    }

    #[test]
    fn set_parsing() {
        assert_eq!(parse_sets(&["A=1".into(), "B=x=y".into(), "C=".into()]).unwrap().get("B").unwrap(), "x=y");
        assert!(matches!(parse_sets(&["NOEQ".into()]), Err(ValueError::Syntax(_))));
        assert!(matches!(parse_sets(&["1A=x".into()]), Err(ValueError::BadName(_))));
        assert!(matches!(parse_sets(&["A-B=x".into()]), Err(ValueError::BadName(_))));
        assert!(matches!(parse_sets(&["NAME=x".into()]), Err(ValueError::Forced(_))));
    }

    #[test]
    fn hostile_values_cannot_inject() {
        let v = values(&[
            ("X", "a\nExecStartPre=/bin/rm -rf /"),
            ("Q", "\", \"evil\": \"1"),
            ("P", "100%"),
            ("S", "a b"),
            ("EXEC_START", "/usr/bin/hoist internal run-bundle --name x"),
        ]);
        let e = v.render("service.template", "Environment=X=$X\n", Target::Unit).unwrap_err();
        assert!(e.to_string().contains("service.template: value of $X contains a control character"), "{e}");
        assert_eq!(v.render("u", "Description=$P", Target::Unit).unwrap(), "Description=100%%");
        assert_eq!(
            v.render("u", "ExecStart=$EXEC_START", Target::Unit).unwrap(),
            "ExecStart=/usr/bin/hoist internal run-bundle --name x"
        );
        let json = v.render("config.json.template", r#"{"env": ["Q=$Q"]}"#, Target::Json).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["env"][0], "Q=\", \"evil\": \"1");
        assert_eq!(parsed.as_object().unwrap().len(), 1);
        assert!(v.render("tmpfiles.template", "d /run/$S", Target::Tmpfiles).is_err());
        // Outside a JSON string a value is JSON text, as it is; inside one it stays escaped.
        let n = values(&[("N", "1024"), ("B", "1, \"x\": 2"), ("E", "")]);
        assert_eq!(n.render("c", r#"{"a": $N}"#, Target::Json).unwrap(), r#"{"a": 1024}"#);
        assert_eq!(n.render("c", r#"{"a": $B}"#, Target::Json).unwrap(), r#"{"a": 1, "x": 2}"#);
        assert_eq!(n.render("c", r#"{"m": [1$E]}"#, Target::Json).unwrap(), r#"{"m": [1]}"#);
        assert_eq!(n.render("c", r#"{"a": "x\"$N"}"#, Target::Json).unwrap(), r#"{"a": "x\"1024"}"#);
        let (out, frags) = n.render_json("c", r#"{"a": "$B", "m": [1$E], "n": $N}"#).unwrap();
        assert_eq!(out, r#"{"a": "1, \"x\": 2", "m": [1], "n": 1024}"#);
        let frags: Vec<_> = frags.iter().map(|f| (f.var.as_str(), f.out.clone())).collect();
        assert_eq!(frags, [("E", 28..28), ("N", 36..40)]);
        assert_eq!(
            json_fragments("c", r#"{"a": "$B", "m": [1$E], "n": ${N}}"#).unwrap().into_iter().collect::<Vec<_>>(),
            ["E", "N"]
        );
        assert!(values(&[("D", "../../etc")]).render("renameFiles", "/x/$D", Target::Path).is_err());
        assert!(matches!(
            v.render("f", "$MISSING", Target::Raw),
            Err(ValueError::Template(TemplateError::Unknown { .. }))
        ));
    }
}
