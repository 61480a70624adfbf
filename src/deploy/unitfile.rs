//! A minimal systemd unit-file model (after quadlet's `UnitFile`): sections of ordered lines,
//! comments kept, so hoist can read a rendered `service.template` and add the directives its
//! runner needs without rewriting what the image author wrote.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// Comment or blank line, verbatim.
    Other(String),
    Entry(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Section {
    name: String,
    lines: Vec<Line>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitFile {
    /// Lines before the first section.
    preamble: Vec<String>,
    sections: Vec<Section>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: line {line}: {reason}")]
pub struct UnitParseError {
    pub file: String,
    pub line: usize,
    pub reason: &'static str,
}

impl UnitFile {
    pub fn parse(file: &str, text: &str) -> Result<Self, UnitParseError> {
        let mut u = UnitFile::default();
        let mut lines = text.lines().enumerate().peekable();
        while let Some((n, raw)) = lines.next() {
            let mut line = raw.to_string();
            // Continuation lines join (systemd semantics).
            while line.ends_with('\\') && !line.trim_start().starts_with(['#', ';']) {
                line.pop();
                match lines.next() {
                    Some((_, next)) => line.push_str(next),
                    None => break,
                }
            }
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
                match u.sections.last_mut() {
                    Some(s) => s.lines.push(Line::Other(line)),
                    None => u.preamble.push(line),
                }
            } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                u.sections.push(Section { name: name.to_string(), lines: Vec::new() });
            } else if let Some((k, v)) = t.split_once('=') {
                let s = u.sections.last_mut().ok_or(UnitParseError {
                    file: file.into(),
                    line: n + 1,
                    reason: "directive outside a [Section]",
                })?;
                s.lines.push(Line::Entry(k.trim().to_string(), v.trim().to_string()));
            } else {
                return Err(UnitParseError {
                    file: file.into(),
                    line: n + 1,
                    reason: "not a [Section], KEY=VALUE or comment",
                });
            }
        }
        Ok(u)
    }

    /// The last value of `key` in `section` (systemd: later assignments win).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections.iter().filter(|s| s.name == section).flat_map(|s| &s.lines).rev().find_map(|l| match l {
            Line::Entry(k, v) if k == key => Some(v.as_str()),
            _ => None,
        })
    }

    /// Appends `key=value` to `section` (created at the end if missing).
    pub fn add(&mut self, section: &str, key: &str, value: &str) {
        let idx = match self.sections.iter().position(|s| s.name == section) {
            Some(i) => i,
            None => {
                self.sections.push(Section { name: section.to_string(), lines: Vec::new() });
                self.sections.len() - 1
            }
        };
        let lines = &mut self.sections[idx].lines;
        // Keep trailing blank lines after the new entry.
        let at = lines.iter().rposition(|l| !matches!(l, Line::Other(s) if s.trim().is_empty())).map_or(0, |i| i + 1);
        lines.insert(at, Line::Entry(key.to_string(), value.to_string()));
    }

    /// Adds `key=value` only if `section` does not set `key`.
    pub fn set_default(&mut self, section: &str, key: &str, value: &str) {
        if self.get(section, key).is_none() {
            self.add(section, key, value);
        }
    }

    pub fn has_section(&self, section: &str) -> bool {
        self.sections.iter().any(|s| s.name == section)
    }

    pub fn prepend_comment(&mut self, comment: &str) {
        self.preamble.insert(0, format!("# {comment}"));
    }
}

impl std::fmt::Display for UnitFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for l in &self.preamble {
            writeln!(f, "{l}")?;
        }
        for (i, s) in self.sections.iter().enumerate() {
            if i > 0 && !matches!(self.sections[i - 1].lines.last(), Some(Line::Other(l)) if l.trim().is_empty()) {
                writeln!(f)?;
            }
            writeln!(f, "[{}]", s.name)?;
            for l in &s.lines {
                match l {
                    Line::Other(t) => writeln!(f, "{t}")?,
                    Line::Entry(k, v) => writeln!(f, "{k}={v}")?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_defaults() {
        let text = "# top\n[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/a \\\n  --b\nType=simple\n\n[Install]\nWantedBy=multi-user.target\n";
        let mut u = UnitFile::parse("t", text).unwrap();
        assert_eq!(u.get("Service", "ExecStart"), Some("/bin/a   --b"));
        u.set_default("Service", "Type", "notify");
        u.set_default("Service", "KillMode", "mixed");
        assert_eq!(u.get("Service", "Type"), Some("simple"), "the image's choice stays");
        let out = u.to_string();
        assert!(out.contains("Type=simple\nKillMode=mixed\n\n[Install]"), "{out}");
        assert!(out.starts_with("# top\n[Unit]\nDescription=x\n\n[Service]"));
        assert_eq!(UnitFile::parse("t", &out).unwrap().get("Service", "KillMode"), Some("mixed"));
        assert!(UnitFile::parse("t", "Key=before\n").is_err());
        assert!(UnitFile::parse("t", "[S]\njunk\n").is_err());
    }
}
