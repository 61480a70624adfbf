//! Container names: the one rule, used by the CLI, the ops and the runner.
//!
//! A name is what a systemd unit name allows once `.service` is appended, minus what would be
//! ambiguous for hoist: ASCII letters, digits, `-`, `_` and `.`; 1 to 64 bytes; not `.` or
//! `..`; not starting with `-` (an option to every tool it is passed to) or `.` (hoist's own
//! hidden entries in `containers/`). Names ending in `.0`, `.1` or `-1.0` are valid: a
//! container's deployments live inside its own directory (see [`super::container`]), so no
//! name can collide with another container's deployment.

/// Longest container name, in bytes.
pub const MAX_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid container name {name:?}: {reason}")]
pub struct NameError {
    pub name: String,
    pub reason: &'static str,
}

/// Checks a container name (see the module doc).
pub fn validate(name: &str) -> Result<(), NameError> {
    let fail = |reason| Err(NameError { name: name.to_string(), reason });
    if name.is_empty() {
        return fail("empty");
    }
    if name.len() > MAX_LEN {
        return fail("longer than 64 bytes");
    }
    if name == "." || name == ".." {
        return fail("not a name");
    }
    if name.starts_with('-') || name.starts_with('.') {
        return fail("must not start with '-' or '.'");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return fail("use ASCII letters, digits, '-', '_' and '.' only");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn valid() {
        for ok in
            ["etcd", "etcd-3.4", "web_1", "a", "x.0", "x.1", "web-1.0", "redis-7.1", "A9", "a..b", &"x".repeat(64)]
        {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn invalid() {
        for (bad, reason) in [
            ("", "empty"),
            (".", "not a name"),
            ("..", "not a name"),
            ("-x", "must not start with '-' or '.'"),
            (".hidden", "must not start with '-' or '.'"),
            ("../x", "must not start with '-' or '.'"),
            ("a/b", "use ASCII letters, digits, '-', '_' and '.' only"),
            ("a+b", "use ASCII letters, digits, '-', '_' and '.' only"),
            ("a b", "use ASCII letters, digits, '-', '_' and '.' only"),
            ("a\nb", "use ASCII letters, digits, '-', '_' and '.' only"),
            ("a@b", "use ASCII letters, digits, '-', '_' and '.' only"),
            ("ünï", "use ASCII letters, digits, '-', '_' and '.' only"),
            (&"x".repeat(65), "longer than 64 bytes"),
        ] {
            assert_eq!(validate(bad).map_err(|e| e.reason), Err(reason), "{bad:?}");
        }
        assert_eq!(
            validate("a/b").unwrap_err().to_string(),
            "invalid container name \"a/b\": use ASCII letters, digits, '-', '_' and '.' only"
        );
    }
}
