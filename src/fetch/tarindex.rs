//! A tar archive read without holding its members: one pass records every regular member's
//! name → (data offset, size); members are then read by seeking the file, each bounded by its
//! size. Symlinks, hard links and other non-regular members are never recorded (so never
//! followed); a name that is only a link is "missing".

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use super::{Result, clean, src_err};

/// At most this many members are indexed (an archive with more is refused).
pub const MAX_MEMBERS: usize = 100_000;
/// Longest member name indexed; longer names are ignored.
pub const MAX_NAME: usize = 4096;

pub(crate) struct TarIndex {
    path: PathBuf,
    file: File,
    members: HashMap<String, (u64, u64)>,
}

/// Opens a user-named archive: symlinks in its path are the user's, but it must be a regular
/// file (a FIFO or a device is refused without blocking).
fn open_archive(path: &Path) -> io::Result<File> {
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())?;
    crate::rooted::regular(fd)
}

impl TarIndex {
    pub fn open(path: &Path) -> Result<Self> {
        let arch = |e: io::Error| src_err(format!("{}: not a readable tar archive: {e}", path.display()));
        let file = open_archive(path).map_err(|e| src_err(format!("{}: {e}", path.display())))?;
        let mut members = HashMap::new();
        {
            let mut ar = tar::Archive::new(&file);
            for entry in ar.entries_with_seek().map_err(arch)? {
                let entry = entry.map_err(arch)?;
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let name = clean(&entry.path().map_err(arch)?);
                if name.len() > MAX_NAME {
                    continue;
                }
                if members.len() >= MAX_MEMBERS && !members.contains_key(&name) {
                    return Err(src_err(format!("{}: more than {MAX_MEMBERS} members", path.display())));
                }
                members.insert(name, (entry.raw_file_position(), entry.size()));
            }
        }
        Ok(TarIndex { path: path.to_path_buf(), file, members })
    }

    /// The size of a regular member.
    pub fn size(&self, name: &str) -> Option<u64> {
        self.members.get(name).map(|m| m.1)
    }

    /// A reader over a regular member's data (exactly its size) and that size.
    pub fn open_member(&self, name: &str) -> Result<(impl Read + '_, u64)> {
        let &(pos, size) =
            self.members.get(name).ok_or_else(|| src_err(format!("{}: missing member {name}", self.path.display())))?;
        let mut f = &self.file;
        f.seek(SeekFrom::Start(pos)).map_err(|e| src_err(format!("{}: {e}", self.path.display())))?;
        Ok((f.take(size), size))
    }

    /// [`Self::open_member`] as an owned reader with a position of its own (positioned reads on
    /// a duplicate of the archive's descriptor), for readers on several threads at once.
    pub fn open_member_owned(&self, name: &str) -> Result<(MemberReader, u64)> {
        let &(pos, size) =
            self.members.get(name).ok_or_else(|| src_err(format!("{}: missing member {name}", self.path.display())))?;
        let file = self.file.try_clone().map_err(|e| src_err(format!("{}: {e}", self.path.display())))?;
        Ok((MemberReader { file, pos, end: pos + size }, size))
    }

    /// Reads a member of at most `max` bytes (JSON documents).
    pub fn read_limited(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        let (r, size) = self.open_member(name)?;
        if size > max {
            return Err(src_err(format!(
                "{}: member {name} is {size} bytes, over the {max}-byte limit",
                self.path.display()
            )));
        }
        let mut data = Vec::with_capacity(size as usize);
        r.take(max).read_to_end(&mut data).map_err(|e| src_err(format!("{}: {name}: {e}", self.path.display())))?;
        Ok(data)
    }
}

/// A member's data, read with positioned reads (see [`TarIndex::open_member_owned`]).
pub(crate) struct MemberReader {
    file: File,
    pos: u64,
    end: u64,
}

impl Read for MemberReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
