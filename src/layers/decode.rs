//! Layer blobs to tar streams.
//!
//! A blob is decompressed on a thread of its own, a few 1 MiB chunks ahead of the extractor,
//! so inflating runs beside file creation. The compression is sniffed from the first bytes
//! (gzip, zstd, or a plain tar); the caller checked the media type.
//!
//! A blob read straight from its source (a registry's response body, a file of an OCI layout:
//! see [`super::extract_stream`]) was never verified: the decoding thread also hashes and counts
//! the compressed bytes as they pass, reads the stream to its end after the decoder stops, and
//! ends the tar stream with an error instead of end-of-file when the bytes are not exactly the
//! descriptor's (size and digest). The extractor only renames a layer into place after reading
//! its tar stream to the end, so an unverified blob never leaves the temporary directory.
//! A stream longer than its descriptor is cut off at the first byte too many.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use super::Compression;
use crate::digest::Digest;

/// What a blob read from its source must be: exactly `size` bytes hashing to `digest`.
#[derive(Debug, Clone)]
pub(crate) struct Expect {
    pub digest: Digest,
    pub size: u64,
    /// The source hashes the bytes itself and ends the stream with an error instead of
    /// end-of-file when they differ: only the size is counted here.
    pub source_hashes: bool,
}

/// How a blob read from its source differed from its descriptor (carried to the extractor
/// inside an [`io::Error`], or left in the [`Verdict`] when the extractor stopped first).
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    /// More bytes than the descriptor's size (cut off at the first one too many).
    Larger { size: u64 },
    /// Fewer bytes.
    Shorter { got: u64, size: u64 },
    /// The right size, another digest.
    Digest { actual: Digest },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Larger { size } => write!(f, "is larger than its descriptor's {size} bytes"),
            Mismatch::Shorter { got, size } => write!(f, "is {got} bytes, its descriptor says {size}"),
            Mismatch::Digest { actual } => write!(f, "does not match its digest (the content hashes to {actual})"),
        }
    }
}

impl std::error::Error for Mismatch {}

impl Mismatch {
    /// The mismatch an I/O error carries, if it carries one.
    pub fn of(e: &io::Error) -> Option<&Mismatch> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<Mismatch>())
    }
}

/// What the decoding thread found when the extractor stopped reading before the end (a refused
/// entry, a corrupt archive): the rest of the blob is still read and checked, so that a blob
/// that is not its descriptor's bytes is reported as such. Final once the reader is dropped.
#[derive(Debug, Clone, Default)]
pub(crate) struct Verdict(Arc<Mutex<Option<Mismatch>>>);

impl Verdict {
    pub fn mismatch(&self) -> Option<Mismatch> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The compressed bytes, hashed and counted as they are read when there is an [`Expect`].
struct Checked<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    expect: Option<Expect>,
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(e) = &self.expect {
            self.count += n as u64;
            if self.count > e.size {
                return Err(io::Error::other(Mismatch::Larger { size: e.size }));
            }
            if !e.source_hashes {
                self.hasher.update(&buf[..n]);
            }
        }
        Ok(n)
    }
}

impl<R: Read> Checked<R> {
    /// Reads what the decoder left (bounded by the descriptor's size) and compares.
    fn finish(&mut self) -> io::Result<()> {
        let Some(e) = self.expect.clone() else { return Ok(()) };
        io::copy(self, &mut io::sink())?;
        if self.count != e.size {
            return Err(io::Error::other(Mismatch::Shorter { got: self.count, size: e.size }));
        }
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if !e.source_hashes && actual != e.digest {
            return Err(io::Error::other(Mismatch::Digest { actual }));
        }
        Ok(())
    }
}

/// Opens the tar stream of a layer blob: decompressed on a helper thread, and checked against
/// `expect` when the blob comes straight from its source.
pub(crate) fn decompress(raw: Box<dyn Read + Send>, expect: Option<Expect>) -> (Box<dyn Read>, Verdict) {
    let verdict = Verdict::default();
    (Box::new(ReadAhead::spawn(raw, expect, verdict.clone())), verdict)
}

/// Reads a decoded layer on a helper thread, a few 1 MiB chunks ahead of the consumer. An
/// empty chunk is the end of the stream; an error is the last message.
struct ReadAhead {
    rx: Option<Receiver<io::Result<Vec<u8>>>>,
    chunk: Vec<u8>,
    pos: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Whether the consumer hung up (the rest is still read and checked).
type Hungup = bool;

/// Sends `inner`'s bytes in 1 MiB chunks until its end (not including the end marker).
fn pump(mut inner: impl Read, tx: &SyncSender<io::Result<Vec<u8>>>) -> io::Result<Hungup> {
    loop {
        let mut buf = vec![0u8; 1 << 20];
        let mut filled = 0;
        // Fill the chunk (decoders return small reads).
        let res = loop {
            match inner.read(&mut buf[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        buf.truncate(filled);
        let end = filled < (1 << 20);
        if filled > 0 && tx.send(Ok(buf)).is_err() {
            return Ok(true);
        }
        res?;
        if end {
            return Ok(false);
        }
    }
}

/// Decodes `src` by its first bytes into `tx`.
fn decode<R: Read>(src: &mut Checked<R>, tx: &SyncSender<io::Result<Vec<u8>>>) -> io::Result<Hungup> {
    let mut r = BufReader::with_capacity(256 << 10, src);
    let kind = Compression::sniff(r.fill_buf()?);
    match kind {
        Compression::None => pump(r, tx),
        Compression::Gzip => pump(flate2::bufread::MultiGzDecoder::new(r), tx),
        Compression::Zstd => pump(zstd::Decoder::with_buffer(r)?, tx),
    }
}

impl ReadAhead {
    fn spawn(raw: Box<dyn Read + Send>, expect: Option<Expect>, verdict: Verdict) -> Self {
        let (tx, rx) = sync_channel(4);
        let thread = std::thread::spawn(move || {
            let mut src = Checked { inner: raw, hasher: Sha256::new(), count: 0, expect };
            let last = match decode(&mut src, &tx) {
                // At the end, and also when the extractor stopped (for the verdict).
                Ok(_) => src.finish(),
                // Bytes that differ from the descriptor explain a decoding error best.
                Err(e) if Mismatch::of(&e).is_none() && src.expect.is_some() => match src.finish() {
                    Err(m) if Mismatch::of(&m).is_some() => Err(m),
                    _ => Err(e),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = &last
                && let Some(m) = Mismatch::of(e)
            {
                *verdict.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(m.clone());
            }
            let _ = tx.send(last.map(|()| Vec::new()));
        });
        ReadAhead { rx: Some(rx), chunk: Vec::new(), pos: 0, thread: Some(thread) }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            let Some(rx) = &self.rx else { return Ok(0) };
            match rx.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => {
                    self.rx = None;
                    return Ok(0);
                }
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.rx = None;
                    return Err(e);
                }
                Err(_) => {
                    self.rx = None;
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the decoding thread stopped"));
                }
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Closing the channel stops the helper at its next send; wait so the source is closed.
        self.rx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_all(raw: Vec<u8>, expect: Option<Expect>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decompress(Box::new(io::Cursor::new(raw)), expect).0.read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn checks_streams_against_their_descriptor() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let blob = gz(&data);
        let good = Expect { digest: Digest::of_bytes(&blob), size: blob.len() as u64, source_hashes: false };
        assert_eq!(read_all(blob.clone(), Some(good.clone())).unwrap(), data);
        assert_eq!(read_all(blob.clone(), None).unwrap(), data);
        // Bytes after the gzip member are read too (they belong to the digest).
        let mut longer = blob.clone();
        longer.extend_from_slice(&[0; 10]);
        let e = read_all(longer.clone(), Some(good.clone())).unwrap_err();
        assert_eq!(Mismatch::of(&e), Some(&Mismatch::Larger { size: blob.len() as u64 }));
        let e = read_all(longer.clone(), Some(Expect { size: longer.len() as u64, ..good.clone() })).unwrap_err();
        assert_eq!(Mismatch::of(&e), Some(&Mismatch::Digest { actual: Digest::of_bytes(&longer) }));
        // Shorter: the decoder fails, the mismatch is what is reported.
        let short = blob[..blob.len() - 100].to_vec();
        let e = read_all(short.clone(), Some(good.clone())).unwrap_err();
        assert_eq!(Mismatch::of(&e), Some(&Mismatch::Shorter { got: short.len() as u64, size: blob.len() as u64 }));
        // One flipped byte in the middle.
        let mut flipped = blob.clone();
        flipped[blob.len() / 2] ^= 0xff;
        let e = read_all(flipped.clone(), Some(good.clone())).unwrap_err();
        assert_eq!(Mismatch::of(&e), Some(&Mismatch::Digest { actual: Digest::of_bytes(&flipped) }));
        // A plain tar stream is checked the same way.
        let e = read_all(data.clone(), Some(good.clone())).unwrap_err();
        assert!(Mismatch::of(&e).is_some(), "{e}");
        // A consumer that stops early still learns that the blob was not what it should be.
        let (mut r, verdict) = decompress(Box::new(io::Cursor::new(flipped.clone())), Some(good.clone()));
        let _ = r.read(&mut [0; 10]);
        drop(r);
        assert_eq!(verdict.mismatch(), Some(Mismatch::Digest { actual: Digest::of_bytes(&flipped) }));
        let (mut r, verdict) = decompress(Box::new(io::Cursor::new(blob)), Some(good));
        r.read_exact(&mut [0; 10]).unwrap();
        drop(r);
        assert_eq!(verdict.mismatch(), None);
    }
}
