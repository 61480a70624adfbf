//! The crate-wide error: one variant per module, each module's enum naming the object and cause.
//! `main` prints it as one line (`hoist: <message>`) and exits 1; usage errors exit 2 (clap).

use crate::fetch::PullError;
use crate::fsutil::PathError;
use crate::images::ImagesError;
use crate::imgref::RefError;
use crate::mount::MountError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Ref(#[from] RefError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error(transparent)]
    Resolve(#[from] crate::fetch::resolve::ResolveError),
    #[error(transparent)]
    Images(#[from] ImagesError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Ops(#[from] crate::ops::OpsError),
    #[error(transparent)]
    Systemd(#[from] crate::systemd::SystemdError),
    #[error(transparent)]
    SecurityOpt(#[from] crate::deploy::seccomp::SecurityOptError),
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
    #[error("state root: {0}")]
    State(PathError),
    /// Arguments that parse but make no sense together.
    #[error("{0}")]
    Usage(String),
    /// A runtime failure the CLI itself detected (a tool that cannot be run): exit 1.
    #[error("{0}")]
    Failed(String),
    /// A failure whose explanation was already printed (exit 1, nothing more to say).
    #[error("")]
    Reported,
    /// `--check` found changes to make (exit 3; what they are was printed).
    #[error("")]
    Pending,
}

impl Error {
    /// Exit status: 2 for usage errors, 3 for changes pending (`apply --check`), 1 for
    /// everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Pending => 3,
            Error::Usage(_) | Error::Resolve(crate::fetch::resolve::ResolveError::NotPulledFrom { .. }) => 2,
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `s` with control characters (ESC, CR, BEL, …, and C1 controls) written as `\x1b`-style
/// escapes, so names from an image cannot move the cursor or fake a line on a terminal.
/// Newlines are kept: messages may have two lines.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && c != '\n' {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(super::printable("plain\nline"), "plain\nline");
        assert_eq!(super::printable("a\x1b[2K\rPulled x\u{9b}"), "a\\x1b[2K\\x0dPulled x\\x9b");
    }
}
