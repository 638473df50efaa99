//! Encrypted backup files: AES-256-GCM (aws-lc-rs) in the STREAM construction, the one
//! `age` uses. The file is a header — the magic [`MAGIC`] and 16 random bytes of salt —
//! and then chunks of 64 KiB of the archive, each sealed with its own tag. The key of a
//! file is HKDF-SHA256 of the 32-byte key in the key file and the salt, so no two files
//! share a key; a chunk's nonce is its number and whether it is the last, so chunks
//! cannot be reordered, dropped or cut off at the end without the reader noticing; the
//! header is every chunk's associated data.
//!
//! A key file holds the key as 64 hexadecimal digits (`hale backup keygen` writes one);
//! keep it apart from the backups.

use std::io::{self, Read, Write};
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// The first bytes of an encrypted backup.
pub const MAGIC: &[u8; 8] = b"HALEENC1";
const SALT: usize = 16;
const HEADER: usize = MAGIC.len() + SALT;
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;

/// A backup key, read from a key file.
pub struct Key([u8; 32]);

/// Never the key itself (it would reach a log).
impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Reads the key file at `path`.
    pub fn read(path: &Path) -> Result<Key, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("reading the key file {}: {e}", path.display()))?;
        let text = text.trim();
        let bad = || {
            format!("the key file {} must hold 64 hexadecimal digits (hale backup keygen writes one)", path.display())
        };
        if text.len() != 64 || !text.is_ascii() {
            return Err(bad());
        }
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).map_err(|_| bad())?;
        }
        Ok(Key(key))
    }

    /// Writes a new random key to `path` (which must not exist), readable by its owner only.
    pub fn generate(path: &Path) -> Result<(), String> {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| "no random bytes for a key".to_string())?;
        let text: String = key.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n";
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => format!("{} exists already; a key is never written over", path.display()),
            _ => format!("writing {}: {e}", path.display()),
        })?;
        f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// The AES-256-GCM key of the file whose salt is `salt`.
    fn file_key(&self, salt: &[u8]) -> io::Result<LessSafeKey> {
        let prk = aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, salt).extract(&self.0);
        let okm = prk.expand(&[b"hale backup chunks"], &AES_256_GCM).map_err(|_| io::Error::other("key derivation"))?;
        Ok(LessSafeKey::new(UnboundKey::from(okm)))
    }
}

fn nonce(counter: u32, last: bool) -> io::Result<Nonce> {
    let mut n = [0u8; 12];
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    Ok(Nonce::assume_unique_for_key(n))
}

fn next(counter: &mut u32) -> io::Result<u32> {
    let c = *counter;
    *counter = c.checked_add(1).ok_or_else(|| io::Error::other("a backup of more than 256 TiB"))?;
    Ok(c)
}

/// Encrypts what is written to it into `inner`; [`SealWriter::finish`] seals the last
/// chunk.
pub struct SealWriter<W: Write> {
    inner: W,
    key: LessSafeKey,
    header: [u8; HEADER],
    buf: Vec<u8>,
    counter: u32,
}

impl<W: Write> SealWriter<W> {
    pub fn new(mut inner: W, key: &Key) -> io::Result<SealWriter<W>> {
        let mut header = [0u8; HEADER];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        aws_lc_rs::rand::fill(&mut header[MAGIC.len()..]).map_err(|_| io::Error::other("no random bytes"))?;
        inner.write_all(&header)?;
        let key = key.file_key(&header[MAGIC.len()..])?;
        Ok(SealWriter { inner, key, header, buf: Vec::with_capacity(CHUNK + TAG), counter: 0 })
    }

    fn seal(&mut self, last: bool) -> io::Result<()> {
        let n = nonce(next(&mut self.counter)?, last)?;
        self.key
            .seal_in_place_append_tag(n, Aad::from(&self.header[..]), &mut self.buf)
            .map_err(|_| io::Error::other("encryption failed"))?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Seals the last chunk (shorter than a full one, perhaps empty) and returns the
    /// inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.buf.len() == CHUNK {
            self.seal(false)?;
        }
        self.seal(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // a full chunk is sealed when more follows or at the end, before the last, which
        // is always short (perhaps empty)
        if self.buf.len() == CHUNK && !data.is_empty() {
            self.seal(false)?;
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts an encrypted backup read from `inner`; an error when any chunk was changed,
/// the key is not the file's, or the file was cut short.
pub struct OpenReader<R: Read> {
    inner: R,
    key: LessSafeKey,
    header: [u8; HEADER],
    chunk: Vec<u8>,
    at: usize,
    counter: u32,
    done: bool,
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl<R: Read> OpenReader<R> {
    /// Reads the header of `inner` (whose first bytes are [`MAGIC`]).
    pub fn new(mut inner: R, key: &Key) -> io::Result<OpenReader<R>> {
        let mut header = [0u8; HEADER];
        inner.read_exact(&mut header).map_err(|_| damaged("the encrypted backup is cut short"))?;
        if &header[..MAGIC.len()] != MAGIC {
            return Err(damaged("not an encrypted Hale backup"));
        }
        let key = key.file_key(&header[MAGIC.len()..])?;
        Ok(OpenReader { inner, key, header, chunk: Vec::new(), at: 0, counter: 0, done: false })
    }

    /// Reads and opens the next chunk into `self.chunk`.
    fn fill(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; CHUNK + TAG];
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if got < TAG {
            return Err(damaged("the encrypted backup is cut short"));
        }
        buf.truncate(got);
        // only the last chunk is shorter than a full one
        let last = got < CHUNK + TAG;
        let first = self.counter == 0;
        let n = nonce(next(&mut self.counter)?, last)?;
        let plain = self.key.open_in_place(n, Aad::from(&self.header[..]), &mut buf).map_err(|_| {
            damaged(if first {
                "the key does not open this backup (another key, or the file was changed)"
            } else {
                "the encrypted backup was changed or cut short"
            })
        })?;
        let len = plain.len();
        buf.truncate(len);
        self.chunk = buf;
        self.at = 0;
        if last {
            self.done = true;
            let mut extra = [0u8; 1];
            if self.inner.read(&mut extra)? != 0 {
                return Err(damaged("the encrypted backup has bytes after its end"));
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key([byte; 32])
    }

    fn seal(data: &[u8], k: &Key) -> Vec<u8> {
        let mut w = SealWriter::new(Vec::new(), k).unwrap();
        // in uneven pieces, as a compressor writes
        for piece in data.chunks(7001) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    fn open(data: &[u8], k: &Key) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        OpenReader::new(data, k)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn what_is_sealed_opens_with_its_key_only() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let sealed = seal(&data, &key(1));
            assert_eq!(&sealed[..8], MAGIC);
            if len >= 64 {
                assert!(!sealed.windows(64).any(|w| w == &data[..64]), "the plaintext is visible");
            }
            assert_eq!(open(&sealed, &key(1)).unwrap(), data, "length {len}");
            let e = open(&sealed, &key(2)).unwrap_err();
            assert!(e.to_string().contains("the key does not open"), "{e}");
        }
        // two files of the same content differ (salt)
        assert_ne!(seal(b"same", &key(1)), seal(b"same", &key(1)));
    }

    #[test]
    fn a_changed_reordered_or_shortened_file_is_refused() {
        let data: Vec<u8> = (0..3 * CHUNK + 100).map(|i| (i % 256) as u8).collect();
        let sealed = seal(&data, &key(3));
        let mut flipped = sealed.clone();
        flipped[HEADER + CHUNK + TAG + 5] ^= 1;
        assert!(open(&flipped, &key(3)).is_err());
        // cut at a chunk boundary: the last chunk is missing
        assert!(open(&sealed[..HEADER + 2 * (CHUNK + TAG)], &key(3)).is_err());
        // cut inside a chunk
        assert!(open(&sealed[..sealed.len() - 3], &key(3)).is_err());
        // two chunks swapped
        let mut swapped = sealed[..HEADER].to_vec();
        swapped.extend_from_slice(&sealed[HEADER + CHUNK + TAG..HEADER + 2 * (CHUNK + TAG)]);
        swapped.extend_from_slice(&sealed[HEADER..HEADER + CHUNK + TAG]);
        swapped.extend_from_slice(&sealed[HEADER + 2 * (CHUNK + TAG)..]);
        assert!(open(&swapped, &key(3)).is_err());
        // bytes appended
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(open(&longer, &key(3)).is_err());
        // another salt in the header
        let mut salted = sealed.clone();
        salted[9] ^= 1;
        assert!(open(&salted, &key(3)).is_err());
    }

    #[test]
    fn key_files_are_64_hex_digits_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.key");
        Key::generate(&path).unwrap();
        let k = Key::read(&path).unwrap();
        assert_eq!(open(&seal(b"x", &k), &k).unwrap(), b"x");
        assert!(Key::generate(&path).unwrap_err().contains("exists already"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, "abc").unwrap();
        assert!(Key::read(&path).unwrap_err().contains("64 hexadecimal digits"));
        std::fs::write(&path, "zz".repeat(32)).unwrap();
        assert!(Key::read(&path).unwrap_err().contains("64 hexadecimal digits"));
    }
}
