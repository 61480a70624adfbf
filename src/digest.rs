//! Content digests (`sha256:<64 hex>`) and readers/writers that compute them on the fly.
//!
//! Every blob and layer that enters the state root is hashed while it streams; nothing is
//! trusted because of its file name. Only `sha256` is accepted: it is the algorithm every
//! registry and OCI layout uses in practice, and accepting others would widen the attack surface
//! of file names built from digests.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A validated `sha256:<hex>` digest. The hex part is safe to use as a file name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

/// A string that is not a `sha256:` digest with 64 lowercase hex digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
pub struct InvalidDigest(pub String);

impl Digest {
    /// Builds a digest from a finished hasher.
    pub fn from_hasher(h: Sha256) -> Self {
        Digest { hex: hex::encode(h.finalize()) }
    }

    /// sha256 of a byte slice.
    pub fn of_bytes(data: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(data);
        Self::from_hasher(h)
    }

    /// The 64 hex digits (no algorithm prefix).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// First 12 hex digits, as tables show them.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// Parses 64 hex digits without the `sha256:` prefix.
    pub fn from_hex(hex: &str) -> Result<Self, InvalidDigest> {
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Digest { hex: hex.to_string() })
        } else {
            Err(InvalidDigest(hex.to_string()))
        }
    }
}

impl FromStr for Digest {
    type Err = InvalidDigest;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("sha256:") {
            Some(hex) => Digest::from_hex(hex).map_err(|_| InvalidDigest(s.to_string())),
            None => Err(InvalidDigest(s.to_string())),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A reader that hashes and counts what passes through it.
///
/// With a `limit`, reading past `limit` bytes fails with [`io::ErrorKind::FileTooLarge`], which
/// is how decompression bombs are stopped before they fill the disk.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: Option<u64>,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), count: 0, limit: None }
    }

    pub fn with_limit(inner: R, limit: u64) -> Self {
        HashingReader { limit: Some(limit), ..Self::new(inner) }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Reads everything that is left (e.g. tar end-of-archive padding) so the digest covers
    /// the whole stream.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }

    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_hasher(self.hasher), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if let Some(limit) = self.limit
            && self.count > limit
        {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, format!("more than {limit} bytes")));
        }
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), count: 0 }
    }

    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
        assert_eq!(d, Digest::of_bytes(b""));
        assert_eq!(d.short(), "e3b0c44298fc");
        for bad in [
            "",
            "sha256:",
            "sha512:e3b0",
            "sha256:../../etc/passwd",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }

    #[test]
    fn reader_limit() {
        let mut r = HashingReader::with_limit(&[0u8; 100][..], 50);
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        let mut r = HashingReader::with_limit(&b"abc"[..], 50);
        r.drain().unwrap();
        assert_eq!(r.finish(), (Digest::of_bytes(b"abc"), 3));
    }
}
