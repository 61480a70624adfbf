//! Path rules shared by layer extraction and checkout.
//!
//! Tar entry names are untrusted. They are normalised lexically (leading `/` and `./` dropped, so
//! absolute names stay confined to the tree; any `..` component is refused) and every ancestor
//! of an entry must be a real directory inside the tree: nothing is ever written through a
//! symlink, wherever it points. No path is resolved with the host's root, so absolute symlinks
//! inside an image (`/var/run -> /run`) are data, not hazards.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Why an entry name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadName {
    Traversal,
    TooLong,
}

/// Relative, `..`-free form of a tar entry name (empty for the root itself).
pub fn normalize(name: &Path, max_len: usize) -> Result<PathBuf, BadName> {
    if name.as_os_str().len() > max_len {
        return Err(BadName::TooLong);
    }
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err(BadName::Traversal),
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

/// State of the ancestors of `rel` inside `root`.
#[derive(Debug, PartialEq, Eq)]
pub enum Ancestors {
    /// Every ancestor exists and is a directory.
    Dirs,
    /// The first missing ancestor (relative); everything above it is a directory.
    Missing(PathBuf),
    /// An ancestor is a symlink (relative path of that symlink).
    Symlink(PathBuf),
    /// An ancestor is neither a directory nor a symlink.
    NotDir(PathBuf),
}

/// Walks the ancestors of `rel` (not `rel` itself) without following anything.
pub fn ancestors(root: &Path, rel: &Path) -> io::Result<Ancestors> {
    let mut prefix = PathBuf::new();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        prefix.push(c);
        match fs::symlink_metadata(root.join(&prefix)) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => return Ok(Ancestors::Symlink(prefix)),
            Ok(_) => return Ok(Ancestors::NotDir(prefix)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ancestors::Missing(prefix)),
            Err(e) => return Err(e),
        }
    }
    Ok(Ancestors::Dirs)
}

/// Whiteout markers (OCI image spec, layer changesets).
pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_names() {
        let ok = [("a/b", "a/b"), ("/etc/passwd", "etc/passwd"), ("./x/./y/", "x/y"), ("./", ""), ("//a", "a")];
        for (input, want) in ok {
            assert_eq!(normalize(Path::new(input), 4096).unwrap(), PathBuf::from(want), "{input}");
        }
        for bad in ["../x", "a/../../x", "a/..", "/.."] {
            assert_eq!(normalize(Path::new(bad), 4096), Err(BadName::Traversal), "{bad}");
        }
        assert_eq!(normalize(Path::new(&"a/".repeat(100)), 50), Err(BadName::TooLong));
    }

    #[test]
    fn ancestor_states() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("a/link")).unwrap();
        fs::write(r.join("a/file"), "").unwrap();
        assert_eq!(ancestors(r, Path::new("a/b/c")).unwrap(), Ancestors::Dirs);
        assert_eq!(ancestors(r, Path::new("top")).unwrap(), Ancestors::Dirs);
        assert_eq!(ancestors(r, Path::new("a/x/y/z")).unwrap(), Ancestors::Missing("a/x".into()));
        assert_eq!(ancestors(r, Path::new("a/link/passwd")).unwrap(), Ancestors::Symlink("a/link".into()));
        assert_eq!(ancestors(r, Path::new("a/file/x")).unwrap(), Ancestors::NotDir("a/file".into()));
    }
}
