//! The read-audit journal: the audit entries of reads and refusals are appended, one
//! JSON line each, to a file beside the database (`<db>-audit/`) with one `write(2)`
//! before the read is answered, rather than committed through the writer thread one
//! transaction a read. Like a WAL commit with `synchronous=NORMAL` (what they had before),
//! an appended entry survives a crash of Hale (the kernel holds it) but not necessarily
//! one of the machine.
//!
//! The writer thread moves the journal into the log (see [`Journal::take`] and
//! [`drain`]): the file being appended to is closed and a new one begun, its lines are
//! inserted in one transaction (by the chainer, each linked into the hash chain and
//! written in segments, see `segment.rs`; otherwise into `audit_log`, unlinked)
//! together with the file's name in `audit_journal_done`,
//! and the file is removed after the commit. A file whose name is in that table was
//! moved already (Hale stopped between the commit and the removal) and is only
//! removed. Files left by a stopped process are moved when the store opens.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hale_store::{AuditRow, Error, Instant, Result};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// One line of the journal: an [`AuditRow`]'s columns as JSON, then a tab and the
/// body as it is (JSON text without a line break, as `hale-audit` writes it; a body with
/// one is carried, escaped, in `b` instead).
#[derive(Serialize, Deserialize)]
struct Line<'a> {
    #[serde(rename = "r")]
    recorded: i64,
    #[serde(rename = "a", borrow)]
    action: std::borrow::Cow<'a, str>,
    #[serde(rename = "g", borrow)]
    agent: std::borrow::Cow<'a, str>,
    #[serde(rename = "o", borrow)]
    outcome: std::borrow::Cow<'a, str>,
    #[serde(rename = "p")]
    patients: std::borrow::Cow<'a, [String]>,
    #[serde(rename = "b", borrow, default, skip_serializing_if = "Option::is_none")]
    body: Option<std::borrow::Cow<'a, str>>,
}

/// A journal file this process holds: its name and the open file, exclusively locked
/// (`flock`) for as long as this process may append to it or is moving it, so another
/// process opening the store (a command beside a running server) never takes it.
type Held = (String, Arc<File>);

/// The journal's files: the one appended to, and those closed and waiting to be moved.
pub(crate) struct Journal {
    dir: PathBuf,
    current: Option<Held>,
    closed: Vec<Held>,
    /// Makes the names of one process's files distinct and ordered.
    counter: u64,
    /// Entries this process appended since the last [`Journal::take`].
    entries: u64,
}

fn io(e: std::io::Error) -> Error {
    Error::Backend(format!("the audit journal: {e}"))
}

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

/// The journal's lines of `rows` (made before the journal is locked, so that appends
/// wait for one another's `write(2)` only).
pub(crate) fn encode(rows: &[AuditRow]) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(rows.iter().map(|r| r.body.len() + 128).sum());
    for r in rows {
        let raw = !r.body.contains(['\n', '\r']);
        let line = Line {
            recorded: r.recorded.millis(),
            action: r.action.as_str().into(),
            agent: r.agent.as_str().into(),
            outcome: r.outcome.as_str().into(),
            patients: r.patients.as_slice().into(),
            body: (!raw).then(|| r.body.as_str().into()),
        };
        serde_json::to_writer(&mut buf, &line).map_err(backend)?;
        if raw {
            buf.push(b'\t');
            buf.extend_from_slice(r.body.as_bytes());
        }
        buf.push(b'\n');
    }
    Ok(buf)
}

impl Journal {
    /// The journal of the database at `db` (its directory is made on first append),
    /// with the files other processes left there (see [`Journal::take`]).
    pub(crate) fn open(db: &Path) -> Result<Self> {
        let mut name = db.as_os_str().to_owned();
        name.push("-audit");
        let mut j = Journal { dir: PathBuf::from(name), current: None, closed: Vec::new(), counter: 0, entries: 0 };
        j.adopt()?;
        Ok(j)
    }

    /// Takes over the files no process holds: left by a process that stopped (or by a
    /// command that ended) before it moved them. A file another process holds is its
    /// own to move.
    fn adopt(&mut self) -> Result<()> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        let mut found = Vec::new();
        for e in entries {
            let n = e.map_err(io)?.file_name().to_string_lossy().into_owned();
            let ours = |h: &Held| h.0 == n;
            if n.ends_with(".jsonl") && !self.current.iter().any(ours) && !self.closed.iter().any(ours) {
                found.push(n);
            }
        }
        found.sort();
        for n in found {
            let file = match File::open(self.dir.join(&n)) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            };
            match file.try_lock() {
                Ok(()) => self.closed.push((n, Arc::new(file))),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        Ok(())
    }

    /// Appends `entries` lines made by [`encode`], in one write, to the current file.
    pub(crate) fn append(&mut self, lines: &[u8], entries: u64) -> Result<()> {
        if self.current.is_none() {
            self.current = Some(self.create()?);
        }
        let Some((_, file)) = &self.current else { return Err(io(std::io::ErrorKind::NotFound.into())) };
        if let Err(e) = (&**file).write_all(lines) {
            // a file with a torn line is closed; the next append begins a new one
            if let Some(held) = self.current.take() {
                self.closed.push(held);
            }
            return Err(io(e));
        }
        self.entries += entries;
        Ok(())
    }

    /// A new file, locked, readable by the owner only (it names patients and users).
    fn create(&mut self) -> Result<Held> {
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        let mut open = std::fs::OpenOptions::new();
        open.create_new(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
            dir.mode(0o700);
            open.mode(0o600);
        }
        dir.create(&self.dir).map_err(io)?;
        self.counter += 1;
        let name = format!("{:013}-{:06}-{}.jsonl", Instant::now().millis(), self.counter, std::process::id());
        let file = open.open(self.dir.join(&name)).map_err(io)?;
        file.try_lock().map_err(|e| Error::Backend(format!("the audit journal: {e}")))?;
        Ok((name, Arc::new(file)))
    }

    /// Closes the current file and hands over every closed file (oldest first, with
    /// those no process holds), to be moved into the log; appends from now on go to a
    /// new file.
    pub(crate) fn take(&mut self) -> Taken {
        if let Some(held) = self.current.take() {
            self.closed.push(held);
        }
        if let Err(e) = self.adopt() {
            tracing::warn!(error = %e, "the audit journal's directory could not be read");
        }
        Taken {
            dir: self.dir.clone(),
            files: std::mem::take(&mut self.closed),
            entries: std::mem::take(&mut self.entries),
        }
    }

    /// Gives back files that could not be moved, to be tried again.
    pub(crate) fn give_back(&mut self, mut t: Taken) {
        self.entries += t.entries;
        t.files.append(&mut self.closed);
        self.closed = t.files;
    }
}

/// Journal files taken to be moved into the log, still locked; dropped without
/// [`Taken::remove`] (a move that failed or whose caller went away), their locks go
/// and the next [`Journal::take`] adopts them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Taken {
    dir: PathBuf,
    files: Vec<Held>,
    /// Entries this process appended to these files (files adopted from another
    /// process count none).
    entries: u64,
}

impl Taken {
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Removes the files once their move committed (then lets go of their locks).
    pub(crate) fn remove(self) {
        for (n, _) in &self.files {
            if let Err(e) = std::fs::remove_file(self.dir.join(n))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %n, error = %e, "a moved audit journal file could not be removed");
            }
        }
    }
}

/// Inserts the entries of the taken files into the log, inside the caller's transaction
/// (with `insert` the store's one way to insert an entry), and marks each file moved.
pub(crate) fn drain(
    tx: &Connection,
    taken: &Taken,
    mut insert: impl FnMut(&Connection, &[u8], &AuditRow) -> Result<()>,
) -> Result<usize> {
    let mut moved = 0;
    for (name, _) in &taken.files {
        let done = tx
            .prepare_cached("SELECT 1 FROM audit_journal_done WHERE name = ?1")
            .and_then(|mut s| s.query_row(params![name], |_| Ok(())).optional())
            .map_err(backend)?;
        if done.is_some() {
            continue;
        }
        let text = match std::fs::read(taken.dir.join(name)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(e)),
        };
        let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        for (i, l) in lines.iter().enumerate() {
            match parse_line(l) {
                Ok(row) => {
                    insert(tx, l, &row)?;
                    moved += 1;
                }
                // the machine stopped in the middle of the last append: that entry's
                // read was never answered
                Err(_) if i + 1 == lines.len() && !text.ends_with(b"\n") => {
                    tracing::warn!(file = %name, "a torn last line of the audit journal (never answered) was skipped");
                }
                Err(e) => {
                    return Err(Error::Backend(format!("the audit journal {name} line {}: {e}", i + 1)));
                }
            }
        }
        tx.prepare_cached("INSERT INTO audit_journal_done (name) VALUES (?1)")
            .and_then(|mut s| s.execute(params![name]))
            .map_err(backend)?;
    }
    Ok(moved)
}

/// A line back into its row.
pub(crate) fn parse_line(l: &[u8]) -> Result<AuditRow> {
    let (head, raw) = match l.iter().position(|b| *b == b'\t') {
        Some(i) => (&l[..i], Some(&l[i + 1..])),
        None => (l, None),
    };
    let line: Line<'_> = serde_json::from_slice(head).map_err(backend)?;
    let body = match (raw, line.body) {
        (Some(b), None) => std::str::from_utf8(b).map_err(backend)?.to_string(),
        (None, Some(b)) => b.into_owned(),
        _ => return Err(Error::Backend("a line has no body, or two".into())),
    };
    Ok(AuditRow {
        recorded: Instant::from_millis(line.recorded),
        action: line.action.into_owned(),
        agent: line.agent.into_owned(),
        outcome: line.outcome.into_owned(),
        patients: line.patients.into_owned(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(action: &str) -> AuditRow {
        AuditRow {
            recorded: Instant::from_millis(1),
            action: action.into(),
            agent: "client:x".into(),
            outcome: "0".into(),
            patients: vec!["p1".into()],
            body: "{\"resourceType\":\"AuditEvent\",\"x\":\"line\\nbreak\"}".into(),
        }
    }

    fn db() -> (tempfile::TempDir, Connection) {
        let d = tempfile::tempdir().unwrap();
        let c = Connection::open(d.path().join("t.db")).unwrap();
        c.execute_batch(
            "CREATE TABLE log (action TEXT, body TEXT); CREATE TABLE audit_journal_done (name TEXT PRIMARY KEY);",
        )
        .unwrap();
        (d, c)
    }

    fn insert(c: &Connection, _: &[u8], r: &AuditRow) -> Result<()> {
        c.execute("INSERT INTO log VALUES (?1, ?2)", params![r.action, r.body]).map(|_| ()).map_err(backend)
    }

    #[test]
    fn entries_move_once_and_a_torn_tail_is_skipped() {
        let (d, c) = db();
        let path = d.path().join("t.db");
        let mut j = Journal::open(&path).unwrap();
        j.append(&encode(&[row("read"), row("search-type")]).unwrap(), 2).unwrap();
        let mut broken = row("vread");
        broken.body = "{\n\"resourceType\": \"AuditEvent\"\t}".into();
        j.append(&encode(std::slice::from_ref(&broken)).unwrap(), 1).unwrap();
        let t = j.take();
        // an append after the take goes to a new file, not moved now
        j.append(&encode(&[row("later")]).unwrap(), 1).unwrap();
        assert_eq!(drain(&c, &t, insert).unwrap(), 3);
        // moved again (a stop before the removal): nothing is inserted twice
        assert_eq!(drain(&c, &t, insert).unwrap(), 0);
        t.remove();
        let bodies: Vec<String> = c
            .prepare("SELECT body FROM log")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(bodies.len(), 3);
        assert_eq!(bodies[0], row("x").body);
        assert_eq!(bodies[2], broken.body, "a body with a line break is carried escaped");
        // a new process finds the file left behind, with a torn last line
        drop(j);
        let left: Vec<_> = std::fs::read_dir(d.path().join("t.db-audit")).unwrap().collect();
        assert_eq!(left.len(), 1);
        let f = left[0].as_ref().unwrap().path();
        std::fs::OpenOptions::new().append(true).open(&f).unwrap().write_all(b"{\"r\":1,\"a\":\"to").unwrap();
        let mut j = Journal::open(&path).unwrap();
        let t = j.take();
        assert_eq!(drain(&c, &t, insert).unwrap(), 1);
        t.remove();
        assert_eq!(std::fs::read_dir(d.path().join("t.db-audit")).unwrap().count(), 0);
    }

    /// A command opening the store beside a running server (another process, here
    /// another journal) never takes the files the server holds; once the server is gone,
    /// its files are taken over and moved, once.
    #[test]
    fn a_file_another_process_holds_is_left_to_it() {
        let (d, c) = db();
        let path = d.path().join("t.db");
        let mut server = Journal::open(&path).unwrap();
        server.append(&encode(&[row("read")]).unwrap(), 1).unwrap();
        let mut command = Journal::open(&path).unwrap();
        assert!(command.take().is_empty(), "the server's current file is its own");
        // the server moves what it wrote, then writes more and stops without moving it
        let t = server.take();
        assert!(command.take().is_empty(), "a file being moved is the mover's");
        assert_eq!(drain(&c, &t, insert).unwrap(), 1);
        t.remove();
        server.append(&encode(&[row("read"), row("vread")]).unwrap(), 2).unwrap();
        drop(server);
        let t = command.take();
        assert_eq!(drain(&c, &t, insert).unwrap(), 2);
        t.remove();
        let n: i64 = c.query_row("SELECT COUNT(*) FROM log", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 3);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.path().join("t.db-audit")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "the journal names patients: its owner's only");
        }
    }

    #[test]
    fn a_damaged_line_before_the_end_is_an_error() {
        let (d, c) = db();
        let path = d.path().join("t.db");
        std::fs::create_dir_all(d.path().join("t.db-audit")).unwrap();
        std::fs::write(d.path().join("t.db-audit/0-1-1.jsonl"), b"not json\n{}\n").unwrap();
        let mut j = Journal::open(&path).unwrap();
        let t = j.take();
        assert!(drain(&c, &t, insert).is_err());
    }
}
