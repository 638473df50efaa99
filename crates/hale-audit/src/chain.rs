//! The hash chain over the audit log, its signed checkpoints and their verification.
//!
//! Entry `n` of the chain has hash `SHA-256(hash(n-1) ‖ n ‖ seq ‖ body)` (32 zero bytes
//! before the first), so changing, removing, inserting or reordering any entry changes
//! every hash after it. The chainer ([`link`], run by the store under its one-chainer
//! rule) links entries in the order it finds them committed. After linking, it signs a
//! checkpoint (position, hash, time) with an Ed25519 key and appends it to a file in the
//! data directory, outside the database: a chain rewritten from some entry on (every
//! hash recomputed) no longer matches a checkpoint, and a cut-off tail leaves a
//! checkpoint beyond the chain's end. [`Verifier`] checks both and names the first bad
//! entry. Entries linked after the last checkpoint are covered by the next one.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use hale_store::{ChainedEntry, Instant};
use sha2::{Digest, Sha256};

/// The hash of chain entry `pos` (see the module documentation); a
/// [`hale_store::ChainLink`].
pub fn link(prev: &[u8; 32], pos: i64, seq: i64, body: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(pos.to_be_bytes());
    h.update(seq.to_be_bytes());
    h.update(body.as_bytes());
    h.finalize().into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// Checkpoint and key failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0} is not a valid key file")]
    BadKey(String),
}

/// One signed checkpoint: the chain had entry `pos` with `hash` at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub pos: i64,
    pub hash: [u8; 32],
    pub at: String,
}

impl Checkpoint {
    fn message(&self) -> String {
        format!("hale-audit-checkpoint\n{}\n{}\n{}", self.pos, hex(&self.hash), self.at)
    }
}

/// The checkpoint file and signing key of one data directory:
/// `keys/audit-signing.key` (the Ed25519 seed, hex, readable by the owner only),
/// `keys/audit-signing.pub` (the public key, hex) and `audit/checkpoints.jsonl`.
///
/// Made [`Checkpoints::shared`] (several nodes on one PostgreSQL database), each
/// checkpoint also goes into the database and verification reads those of every node.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
    shared: bool,
}

impl Checkpoints {
    pub fn new(data_dir: &Path) -> Self {
        Checkpoints { dir: data_dir.to_path_buf(), shared: false }
    }

    /// The same, with checkpoints also kept in the store every node shares.
    pub fn shared(data_dir: &Path) -> Self {
        Checkpoints { dir: data_dir.to_path_buf(), shared: true }
    }

    /// Whether checkpoints are also kept in the shared store.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The signing key's seed (hex; generated on first use), to be shared by every node
    /// of one database. A secret: never log it.
    pub fn material(&self) -> Result<String, Error> {
        Ok(hex(self.signing_key()?.as_bytes()))
    }

    /// Makes `material` (from [`Checkpoints::material`], maybe another node's) this data
    /// directory's signing key. When it replaces another key, the checkpoints that key
    /// signed are kept beside as `checkpoints.jsonl.<public key>` with that public key
    /// as `keys/audit-signing.pub.<public key>`. Returns whether the key changed.
    pub fn adopt(&self, material: &str) -> Result<bool, Error> {
        let seed: [u8; 32] = unhex(material.trim())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::BadKey("the shared audit key material".into()))?;
        let key = SigningKey::from_bytes(&seed);
        let old = self.signing_key()?;
        if old.as_bytes() == key.as_bytes() {
            return Ok(false);
        }
        let old_pub = hex(old.verifying_key().as_bytes());
        let io = |p: &Path, e| Error::Io(p.display().to_string(), e);
        let aside = |p: PathBuf| -> Result<(), Error> {
            let to = PathBuf::from(format!("{}.{old_pub}", p.display()));
            match std::fs::rename(&p, &to) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&p, e)),
                _ => Ok(()),
            }
        };
        aside(self.file())?;
        aside(self.public_key_file())?;
        let path = self.key_file();
        let tmp = path.with_extension("new");
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&tmp, e)),
            _ => {}
        }
        write_private(&tmp, &hex(key.as_bytes())).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        std::fs::write(self.public_key_file(), hex(key.verifying_key().as_bytes()))
            .map_err(|e| io(&self.public_key_file(), e))?;
        Ok(true)
    }

    pub fn file(&self) -> PathBuf {
        self.dir.join("audit").join("checkpoints.jsonl")
    }

    fn key_file(&self) -> PathBuf {
        self.dir.join("keys").join("audit-signing.key")
    }

    pub fn public_key_file(&self) -> PathBuf {
        self.dir.join("keys").join("audit-signing.pub")
    }

    /// The signing key, generated on first use.
    pub fn signing_key(&self) -> Result<SigningKey, Error> {
        let path = self.key_file();
        let io = |e| Error::Io(path.display().to_string(), e);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let seed: [u8; 32] = unhex(text.trim())
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| Error::BadKey(path.display().to_string()))?;
                Ok(SigningKey::from_bytes(&seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate(&mut rand_core::OsRng);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                write_private(&path, &hex(key.as_bytes())).map_err(io)?;
                std::fs::write(self.public_key_file(), hex(key.verifying_key().as_bytes()))
                    .map_err(|e| Error::Io(self.public_key_file().display().to_string(), e))?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The public key that checks the checkpoints.
    pub fn verifying_key(&self) -> Result<Option<VerifyingKey>, Error> {
        let path = self.public_key_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes: [u8; 32] = unhex(text.trim())
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| Error::BadKey(path.display().to_string()))?;
                VerifyingKey::from_bytes(&bytes).map(Some).map_err(|_| Error::BadKey(path.display().to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io(path.display().to_string(), e)),
        }
    }

    /// Signs and appends a checkpoint of the chain's head.
    pub fn append(&self, key: &SigningKey, pos: i64, hash: &[u8]) -> Result<Checkpoint, Error> {
        self.append_line(key, pos, hash).map(|(cp, _)| cp)
    }

    /// [`Checkpoints::append`], also returning the line written.
    pub fn append_line(&self, key: &SigningKey, pos: i64, hash: &[u8]) -> Result<(Checkpoint, String), Error> {
        let hash: [u8; 32] = hash.try_into().map_err(|_| Error::BadKey("the chain head's hash".into()))?;
        let cp = Checkpoint { pos, hash, at: Instant::now().to_fhir() };
        let sig = key.sign(cp.message().as_bytes());
        let line = serde_json::json!({
            "pos": pos,
            "hash": hex(&hash),
            "at": cp.at,
            "sig": base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
        });
        let path = self.file();
        let io = |e| Error::Io(path.display().to_string(), e);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        writeln!(f, "{line}").map_err(io)?;
        f.sync_data().map_err(io)?;
        Ok((cp, line.to_string()))
    }

    /// The checkpoints in the file, each checked against `key`; a line that does not
    /// parse or whose signature fails is a problem (its line number).
    pub fn load(&self, key: Option<&VerifyingKey>) -> Result<(Vec<Checkpoint>, Vec<Problem>), Error> {
        let path = self.file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(Error::Io(path.display().to_string(), e)),
        };
        Ok(Self::parse_lines(text.lines(), key))
    }

    /// Checkpoint lines (of the file, or of the shared store), each checked against
    /// `key`; a line that does not parse or whose signature fails is a problem (its
    /// line number, counting from 1).
    pub fn parse_lines<'a>(
        lines: impl Iterator<Item = &'a str>,
        key: Option<&VerifyingKey>,
    ) -> (Vec<Checkpoint>, Vec<Problem>) {
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            match parse_checkpoint(line, key) {
                Some(cp) => good.push(cp),
                None => bad.push(Problem::BadCheckpoint { line: i + 1 }),
            }
        }
        (good, bad)
    }
}

fn parse_checkpoint(line: &str, key: Option<&VerifyingKey>) -> Option<Checkpoint> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let cp = Checkpoint {
        pos: v["pos"].as_i64()?,
        hash: unhex(v["hash"].as_str()?)?.try_into().ok()?,
        at: v["at"].as_str()?.to_string(),
    };
    let sig = base64::engine::general_purpose::STANDARD.decode(v["sig"].as_str()?).ok()?;
    let sig = Signature::from_slice(&sig).ok()?;
    key?.verify(cp.message().as_bytes(), &sig).ok()?;
    Some(cp)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// What verification found wrong, at the first place it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No entry at chain position `pos` (removed), the next one found is `found`.
    Missing { pos: i64, found: i64 },
    /// Entry `pos` (log sequence number `seq`) is not the entry that was chained there:
    /// its content or hash was changed, or entries were inserted or reordered.
    Altered { pos: i64, seq: i64 },
    /// The chain up to `pos` hashes consistently but differs from the signed
    /// checkpoint there: it was rewritten.
    Rewritten { pos: i64 },
    /// The chain ends at `end`, before the signed checkpoint at `checkpoint`: its tail
    /// was cut off.
    Truncated { end: i64, checkpoint: i64 },
    /// Line `line` of the checkpoint file does not parse or its signature fails.
    BadCheckpoint { line: usize },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing { pos, found } => {
                write!(f, "entry {pos} of the chain is missing (the next entry found is {found})")
            }
            Problem::Altered { pos, seq } => write!(
                f,
                "entry {pos} of the chain (AuditEvent/{seq}) does not match its hash: it was changed, or entries were inserted or reordered"
            ),
            Problem::Rewritten { pos } => {
                write!(f, "the chain up to entry {pos} differs from the signed checkpoint there: it was rewritten")
            }
            Problem::Truncated { end, checkpoint } => write!(
                f,
                "the chain ends at entry {end} but a signed checkpoint covers entry {checkpoint}: entries were cut off"
            ),
            Problem::BadCheckpoint { line } => {
                write!(f, "line {line} of the checkpoint file is not a validly signed checkpoint")
            }
        }
    }
}

/// Checks chained entries fed in chain order against the hash chain and the
/// checkpoints; stops judging at the first problem.
#[derive(Debug)]
pub struct Verifier {
    prev: [u8; 32],
    next_pos: i64,
    checkpoints: BTreeMap<i64, [u8; 32]>,
    checked: u64,
    problem: Option<Problem>,
}

/// What [`Verifier::finish`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Entries checked.
    pub checked: u64,
    /// Checkpoints the chain was checked against.
    pub checkpoints: usize,
    /// The position of the last checkpoint (entries after it are covered by the next).
    pub covered_to: i64,
    pub problem: Option<Problem>,
}

impl Verifier {
    pub fn new(checkpoints: &[Checkpoint]) -> Self {
        Verifier {
            prev: [0; 32],
            next_pos: 1,
            checkpoints: checkpoints.iter().map(|c| (c.pos, c.hash)).collect(),
            checked: 0,
            problem: None,
        }
    }

    /// Checks the next entry; false once a problem was found (feed no more).
    pub fn feed(&mut self, e: &ChainedEntry) -> bool {
        if self.problem.is_some() {
            return false;
        }
        if e.pos != self.next_pos {
            self.problem = Some(Problem::Missing { pos: self.next_pos, found: e.pos });
            return false;
        }
        let h = link(&self.prev, e.pos, e.seq, &e.body);
        if h.as_slice() != e.hash.as_slice() {
            self.problem = Some(Problem::Altered { pos: e.pos, seq: e.seq });
            return false;
        }
        if let Some(cp) = self.checkpoints.get(&e.pos)
            && cp != &h
        {
            self.problem = Some(Problem::Rewritten { pos: e.pos });
            return false;
        }
        self.prev = h;
        self.next_pos += 1;
        self.checked += 1;
        true
    }

    pub fn finish(mut self) -> Report {
        let last = self.checkpoints.keys().next_back().copied().unwrap_or(0);
        if self.problem.is_none() && last >= self.next_pos {
            self.problem = Some(Problem::Truncated { end: self.next_pos - 1, checkpoint: last });
        }
        Report { checked: self.checked, checkpoints: self.checkpoints.len(), covered_to: last, problem: self.problem }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<ChainedEntry> {
        let mut prev = [0u8; 32];
        (1..=n)
            .map(|pos| {
                let body = format!("{{\"resourceType\":\"AuditEvent\",\"n\":{pos}}}");
                prev = link(&prev, pos, pos + 100, &body);
                ChainedEntry { pos, seq: pos + 100, hash: prev.to_vec(), body }
            })
            .collect()
    }

    fn cp(entries: &[ChainedEntry], pos: i64) -> Checkpoint {
        let e = &entries[(pos - 1) as usize];
        Checkpoint { pos, hash: e.hash.clone().try_into().unwrap(), at: String::new() }
    }

    fn verify(entries: &[ChainedEntry], cps: &[Checkpoint]) -> Report {
        let mut v = Verifier::new(cps);
        for e in entries {
            if !v.feed(e) {
                break;
            }
        }
        v.finish()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let c = chain(50);
        let r = verify(&c, &[cp(&c, 20), cp(&c, 50)]);
        assert_eq!(r.problem, None);
        assert_eq!(r.checked, 50);
    }

    #[test]
    fn every_tamper_class_is_detected_at_the_first_bad_entry() {
        let c = chain(50);
        let cps = [cp(&c, 25), cp(&c, 50)];
        // a flipped byte
        let mut t = c.clone();
        t[9].body = t[9].body.replace("10", "1O");
        assert_eq!(verify(&t, &cps).problem, Some(Problem::Altered { pos: 10, seq: 110 }));
        // a deleted entry
        let mut t = c.clone();
        t.remove(14);
        assert_eq!(verify(&t, &cps).problem, Some(Problem::Missing { pos: 15, found: 16 }));
        // an inserted entry (positions renumbered after it)
        let mut t = c.clone();
        t.insert(5, ChainedEntry { pos: 6, seq: 999, hash: vec![0; 32], body: "{}".into() });
        for (i, e) in t.iter_mut().enumerate() {
            e.pos = i as i64 + 1;
        }
        assert_eq!(verify(&t, &cps).problem, Some(Problem::Altered { pos: 6, seq: 999 }));
        // two entries swapped
        let mut t = c.clone();
        let (a, b) = (t[30].body.clone(), t[31].body.clone());
        t[30].body = b;
        t[31].body = a;
        assert_eq!(verify(&t, &cps).problem, Some(Problem::Altered { pos: 31, seq: 131 }));
        // a cut-off tail
        let t = c[..40].to_vec();
        assert_eq!(verify(&t, &cps).problem, Some(Problem::Truncated { end: 40, checkpoint: 50 }));
        // a chain rewritten from entry 20 on, every hash recomputed
        let mut t = c.clone();
        t[19].body = "{\"forged\":true}".into();
        let mut prev: [u8; 32] = t[18].hash.clone().try_into().unwrap();
        for e in &mut t[19..] {
            prev = link(&prev, e.pos, e.seq, &e.body);
            e.hash = prev.to_vec();
        }
        assert_eq!(verify(&t, &cps).problem, Some(Problem::Rewritten { pos: 25 }));
    }

    #[test]
    fn checkpoints_are_signed_and_a_forged_line_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Checkpoints::new(dir.path());
        let key = store.signing_key().unwrap();
        assert_eq!(store.signing_key().unwrap().as_bytes(), key.as_bytes(), "the key persists");
        store.append(&key, 7, &[3u8; 32]).unwrap();
        store.append(&key, 9, &[4u8; 32]).unwrap();
        let vk = store.verifying_key().unwrap().unwrap();
        let (good, bad) = store.load(Some(&vk)).unwrap();
        assert_eq!(good.iter().map(|c| c.pos).collect::<Vec<_>>(), vec![7, 9]);
        assert!(bad.is_empty());
        // a line edited to claim another head fails its signature
        let text = std::fs::read_to_string(store.file()).unwrap();
        std::fs::write(store.file(), text.replacen("\"pos\":9", "\"pos\":8", 1)).unwrap();
        let (good, bad) = store.load(Some(&vk)).unwrap();
        assert_eq!(good.len(), 1);
        assert_eq!(bad, vec![Problem::BadCheckpoint { line: 2 }]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("keys/audit-signing.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the signing key is readable by its owner only");
        }
    }

    #[test]
    fn an_adopted_key_signs_and_the_old_checkpoints_are_kept_aside() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (Checkpoints::shared(a.path()), Checkpoints::new(b.path()));
        assert!(a.is_shared() && !b.is_shared());
        let old = b.signing_key().unwrap();
        b.append(&old, 1, &[1u8; 32]).unwrap();
        let material = a.material().unwrap();
        assert!(b.adopt(&material).unwrap());
        assert!(!b.adopt(&material).unwrap(), "adopting the same key again changes nothing");
        assert_eq!(b.signing_key().unwrap().as_bytes(), a.signing_key().unwrap().as_bytes());
        assert!(!b.file().exists());
        let old_pub = hex(old.verifying_key().as_bytes());
        assert!(PathBuf::from(format!("{}.{old_pub}", b.file().display())).exists());
        let (_, line) = a.append_line(&a.signing_key().unwrap(), 5, &[5u8; 32]).unwrap();
        let vk = b.verifying_key().unwrap().unwrap();
        let (good, bad) = Checkpoints::parse_lines(std::iter::once(line.as_str()), Some(&vk));
        assert_eq!((good.len(), bad.len()), (1, 0), "a checkpoint another node signed verifies");
        assert!(b.adopt("not hex").is_err());
    }
}
