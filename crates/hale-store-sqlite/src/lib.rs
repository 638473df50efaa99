//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`, so a write
//! that was acknowledged survives `kill -9` and power loss.
//!
//! One writer connection (SQLite has one writer at a time) owned by a writer thread; a
//! small pool of reader connections that WAL lets run beside it. Writes queue for the
//! writer thread, which runs each inside its own savepoint of a `BEGIN IMMEDIATE`
//! transaction and commits the writes that queued together at once (group commit): a
//! write that fails rolls back its savepoint only, and every write is answered after
//! the commit that made it durable. Preconditions are checked inside the transaction,
//! after the writes before them, so `If-Match` and conditional creates are race-free.

// No unwrap or expect on the request path (clippy.toml allows them in tests); the
// few justified exceptions carry an #[allow] with the reason.
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod journal;
mod search;
mod segment;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hale_fhir::{ResourceId, ResourceType, VersionId};
use hale_search::parse::SearchRequest;
use hale_store::sql::INDEX_TABLES;
use hale_store::{
    AccountKey, AccountRow, AuditQuery, AuditRow, AuditWrite, AuthRecord, ChainLink, ChainedEntry, Content,
    CreateOutcome, Criteria, Error, EverythingQuery, HistoryPage, HistoryQuery, HistoryScope, IndexRows, Instant,
    Method, NewVersion, Precondition, Result, SearchPage, Store, StoredResource, TxOp, TxOutcome, UpdateOutcome,
};
use journal::Journal;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params, params_from_iter};

/// Append-only migrations, embedded in the binary. Never edit one that has shipped.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_resources.sql")),
    (2, include_str!("../migrations/0002_search_index.sql")),
    (3, include_str!("../migrations/0003_search_composite.sql")),
    (4, include_str!("../migrations/0004_owner_param_indexes.sql")),
    (5, include_str!("../migrations/0005_leaner_indexes.sql")),
    (6, include_str!("../migrations/0006_lookup_indexes_cover_the_owner.sql")),
    (7, include_str!("../migrations/0007_date_owner_covers_the_range.sql")),
    (8, include_str!("../migrations/0008_token_patient_key.sql")),
    (9, include_str!("../migrations/0009_audit.sql")),
    (10, include_str!("../migrations/0010_accounts.sql")),
    (11, include_str!("../migrations/0011_auth.sql")),
    (12, include_str!("../migrations/0012_audit_journal.sql")),
    (13, include_str!("../migrations/0013_server_key.sql")),
    (14, include_str!("../migrations/0014_related_rows.sql")),
    (15, include_str!("../migrations/0015_audit_segments.sql")),
    (16, include_str!("../migrations/0016_binary_content.sql")),
];

/// Readers kept open for reuse.
const MAX_IDLE_READERS: usize = 8;

pub(crate) fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
    readers: Mutex<Vec<Connection>>,
    /// Idle connections for reads by id on the caller's thread (see
    /// [`SqliteStore::point_read`]): they wait for no lock.
    point_readers: Mutex<Vec<Connection>>,
    /// The audit entries of reads and refusals, until the writer moves them into the log.
    journal: Mutex<Journal>,
    meters: Meters,
    /// Longest a read may run, in milliseconds (0: no limit); see
    /// [`SqliteStore::set_statement_timeout`].
    statement_timeout_ms: std::sync::atomic::AtomicU64,
}

/// Answers a write once its transaction committed (or failed to).
type Deliver = Box<dyn FnOnce(Result<()>) + Send>;
/// A write for the writer thread: given the connection inside a transaction, it runs
/// in a savepoint and returns how to answer; given an error, it answers at once.
type Work = Box<dyn FnOnce(Result<&Connection>) -> Option<Deliver> + Send>;

/// A write for the writer thread.
struct Job {
    work: Work,
    queued: std::time::Instant,
}

/// The store's timings and queues, for `/metrics` (through the `metrics` crate's global
/// recorder; without one they cost nothing). Labels are fixed words, never a resource.
#[derive(Clone)]
struct Meters {
    /// A read by id or version on the request's thread ([`SqliteStore::point_read`]).
    point_read: metrics::Histogram,
    /// Any other read, on the blocking pool (search, history, `$everything`...).
    read: metrics::Histogram,
    /// One write's statements, inside its savepoint on the writer thread.
    write: metrics::Histogram,
    /// How long a write waited in the writer's queue before it began.
    write_wait: metrics::Histogram,
    /// One commit of a group of writes (its `fsync` included).
    commit: metrics::Histogram,
    /// Writes queued for the writer and not begun.
    queue: metrics::Gauge,
    /// Read-audit entries appended to the journal by this process and not yet moved
    /// into the log (the audit backlog).
    journal: metrics::Gauge,
}

impl Meters {
    fn new() -> Self {
        let timing =
            |kind: &'static str| metrics::histogram!("hale_store_seconds", "store" => "sqlite", "kind" => kind);
        Meters {
            point_read: timing("point_read"),
            read: timing("read"),
            write: timing("write"),
            write_wait: metrics::histogram!("hale_store_write_wait_seconds", "store" => "sqlite"),
            commit: timing("commit"),
            queue: metrics::gauge!("hale_store_writer_queue", "store" => "sqlite"),
            journal: metrics::gauge!("hale_audit_journal_entries"),
        }
    }

    /// A queued write begins: it leaves the queue after waiting since `job.queued`.
    fn begin(&self, job: &Job) {
        self.queue.decrement(1.0);
        self.write_wait.record(job.queued.elapsed());
    }
}

/// Most writes one commit carries.
const MAX_GROUP: usize = 32;

/// Runs a statement without parameters, prepared once per connection.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// The writer thread: takes a write, then every write that queued meanwhile, into one
/// transaction.
/// After each commit the writer nudges the checkpointer thread, which copies committed
/// pages from the WAL into the database file on its own connection (a passive
/// checkpoint: it never blocks the writer), so the writer does not stop to do it.
fn writer_loop(
    conn: Connection,
    jobs: std::sync::mpsc::Receiver<Job>,
    nudge: std::sync::mpsc::SyncSender<()>,
    meters: Meters,
) {
    while let Ok(first) = jobs.recv() {
        meters.begin(&first);
        if let Err(e) = run_cached(&conn, "BEGIN IMMEDIATE") {
            (first.work)(Err(backend(e)));
            continue;
        }
        let mut delivers: Vec<Deliver> = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            delivers.extend((job.work)(Ok(&conn)));
            if delivers.len() < MAX_GROUP {
                next = jobs.try_recv().ok();
                if let Some(job) = &next {
                    meters.begin(job);
                }
            }
        }
        let began = std::time::Instant::now();
        let committed = run_cached(&conn, "COMMIT").map_err(backend);
        meters.commit.record(began.elapsed());
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let _ = nudge.try_send(());
        for d in delivers {
            d(committed.as_ref().map(|_| ()).map_err(|e| Error::Backend(e.to_string())));
        }
    }
}

/// Checkpoints the WAL a moment after commits, until the writer stops.
fn checkpointer_loop(conn: Connection, nudges: std::sync::mpsc::Receiver<()>) {
    while nudges.recv().is_ok() {
        std::thread::sleep(CHECKPOINT_PAUSE);
        while nudges.try_recv().is_ok() {}
        // a failed passive checkpoint is retried after the next commit; the writer's own
        // automatic checkpoint bounds the WAL meanwhile
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).finish()
    }
}

/// Page cache of the writer, in KiB: index inserts touch many pages of large B-trees.
const WRITER_CACHE_KIB: i64 = 128 * 1024;
/// WAL pages (4 KiB) after which the writer checkpoints by itself, should the
/// checkpointer thread fall behind.
const WRITER_AUTOCHECKPOINT: i64 = 32_768;
/// Size the WAL file is cut back to when it is reused, in bytes.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 << 20;
/// Page cache of the checkpointer's connection, in KiB.
const CHECKPOINTER_CACHE_KIB: i64 = 2 * 1024;
/// How long the checkpointer waits after a commit, so that one checkpoint covers the
/// commits of a busy moment.
const CHECKPOINT_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);
/// Prepared statements a connection keeps.
const STATEMENT_CACHE: usize = 128;
/// Page cache of each reader, in KiB.
const READER_CACHE_KIB: i64 = 32 * 1024;
/// How much of the database file readers map into memory (clean, shared file pages the
/// kernel may drop at any time).
const READER_MMAP_BYTES: i64 = 1 << 30;

fn configure(conn: &Connection, cache_kib: i64) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    // a write runs some twenty statements (a version, eight index tables, deletes of old
    // rows): keep all of them prepared rather than parse them again
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?;
    for (version, sql) in MIGRATIONS {
        if *version > current {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, Instant::now().millis()],
            )?;
        }
    }
    tx.commit()
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let mut writer = Connection::open(path).map_err(backend)?;
        configure(&writer, WRITER_CACHE_KIB).map_err(backend)?;
        let newest: i64 = writer
            .query_row(
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations')
                 THEN 1 ELSE 0 END",
                [],
                |r| r.get(0),
            )
            .map_err(backend)?;
        if newest == 1 {
            let v: i64 = writer
                .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
                .map_err(backend)?;
            let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
            if v > known {
                return Err(Error::Backend(format!(
                    "the database is at schema version {v}, newer than this Hale knows ({known}); upgrade Hale"
                )));
            }
        }
        migrate(&mut writer).map_err(backend)?;
        // the audit entries a stopped process appended to its journal go into the log now
        let mut journal = Journal::open(path)?;
        let left = journal.take();
        if !left.is_empty() {
            let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let moved = journal::drain(&tx, &left, |tx, _, row| insert_audit(tx, row))?;
            tx.commit().map_err(backend)?;
            left.remove();
            tracing::info!(entries = moved, "audit entries moved from the journal of an earlier run");
        }
        writer.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT).map_err(backend)?;
        // each write's savepoint keeps the pages it changes in memory (its statement
        // journal), not in a temporary file written page by page
        writer.pragma_update(None, "temp_store", "MEMORY").map_err(backend)?;
        // the WAL grows to the bound above under a bulk load; once checkpointed and
        // reused, the file is cut back to this size rather than kept at its largest
        writer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES).map_err(backend)?;
        let checkpointer = Connection::open(path).map_err(backend)?;
        configure(&checkpointer, CHECKPOINTER_CACHE_KIB).map_err(backend)?;
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let (nudge, nudges) = std::sync::mpsc::sync_channel::<()>(1);
        let meters = Meters::new();
        let writer_meters = meters.clone();
        std::thread::Builder::new()
            .name("hale-sqlite-checkpoint".into())
            .spawn(move || checkpointer_loop(checkpointer, nudges))
            .map_err(backend)?;
        std::thread::Builder::new()
            .name("hale-sqlite-writer".into())
            .spawn(move || writer_loop(writer, queue, nudge, writer_meters))
            .map_err(backend)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                jobs: Mutex::new(jobs),
                readers: Mutex::new(Vec::new()),
                point_readers: Mutex::new(Vec::new()),
                journal: Mutex::new(journal),
                meters,
                statement_timeout_ms: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// Stops a read (a search, `$everything`, history, an audit search...) that runs
    /// longer than `limit`, with [`Error::Timeout`]; zero means no limit. Writes are not
    /// stopped: a write that has begun finishes.
    pub fn set_statement_timeout(&self, limit: std::time::Duration) {
        let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        self.inner.statement_timeout_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn reader(&self) -> Result<Connection> {
        if let Some(c) = self.inner.readers.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(c);
        }
        self.open_reader(std::time::Duration::from_secs(30))
    }

    /// A new read-only connection that waits at most `busy` for a lock.
    fn open_reader(&self, busy: std::time::Duration) -> Result<Connection> {
        let c = Connection::open_with_flags(
            &self.inner.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(backend)?;
        c.busy_timeout(busy).map_err(backend)?;
        c.pragma_update(None, "cache_size", -READER_CACHE_KIB).map_err(backend)?;
        c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // reads straight from the mapped file: no read() and copy a page, which matters
        // for resource bodies that span overflow pages ($everything, downloads)
        c.pragma_update(None, "mmap_size", READER_MMAP_BYTES).map_err(backend)?;
        Ok(c)
    }

    fn give_back(&self, c: Connection) {
        let mut pool = self.inner.readers.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < MAX_IDLE_READERS {
            pool.push(c);
        }
    }

    /// Runs a read by id (`f`: one primary-key lookup, whose cost does not grow with the
    /// store) on the calling thread. Handing such a read to the blocking pool and back
    /// cost two thread wake-ups, more than the lookup itself: at 8 clients a third of
    /// the read throughput. Its connection waits for no lock: when SQLite answers busy
    /// (another process holding the database exclusively, a WAL being recovered) the
    /// read is given to the blocking pool instead, where it may wait. No statement
    /// timeout applies: a lookup by key is never the long read the timeout stops.
    async fn point_read<T: Send + 'static>(
        &self,
        f: impl Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let pooled = self.inner.point_readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let c = match pooled {
            Some(c) => c,
            None => self.open_reader(std::time::Duration::ZERO)?,
        };
        let began = std::time::Instant::now();
        let out = f(&c);
        self.inner.meters.point_read.record(began.elapsed());
        match out {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
            {
                self.give_back_point(c);
                self.with_reader(move |c| f(c).map_err(backend)).await
            }
            out => {
                self.give_back_point(c);
                out.map_err(backend)
            }
        }
    }

    fn give_back_point(&self, c: Connection) {
        let mut pool = self.inner.point_readers.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < MAX_IDLE_READERS {
            pool.push(c);
        }
    }

    /// Removes journal files whose entries are in the log now, and counts them out of
    /// the backlog.
    fn moved(&self, taken: journal::Taken) {
        self.inner.meters.journal.decrement(taken.entries() as f64);
        taken.remove();
    }

    /// Runs `f` with a reader connection on the blocking pool.
    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        let limit = self.inner.statement_timeout_ms.load(std::sync::atomic::Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let c = this.reader()?;
            // past the deadline SQLite's progress handler interrupts the statement; a read
            // that failed past it was stopped by it
            let deadline = (limit > 0).then(|| std::time::Instant::now() + std::time::Duration::from_millis(limit));
            if let Some(d) = deadline {
                c.progress_handler(10_000, Some(move || std::time::Instant::now() > d));
            }
            let began = std::time::Instant::now();
            let out = f(&c);
            this.inner.meters.read.record(began.elapsed());
            if deadline.is_some() {
                c.progress_handler(0, None::<fn() -> bool>);
            }
            this.give_back(c);
            match out {
                Err(_) if deadline.is_some_and(|d| std::time::Instant::now() > d) => Err(Error::Timeout),
                out => out,
            }
        })
        .await
        .map_err(backend)?
    }

    /// Runs `f` as one write: in its own savepoint of the writer's transaction, answered
    /// after the commit; `f`'s error rolls back its savepoint and nothing else.
    async fn write<T: Send + 'static, E: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> std::result::Result<T, E> + Send + 'static,
        from_store: fn(Error) -> E,
    ) -> std::result::Result<T, E> {
        let (answer, answered) = tokio::sync::oneshot::channel::<std::result::Result<T, E>>();
        let timing = self.inner.meters.write.clone();
        let work: Work = Box::new(move |conn| {
            let conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    let _ = answer.send(Err(from_store(e)));
                    return None;
                }
            };
            if let Err(e) = run_cached(conn, "SAVEPOINT write") {
                let _ = answer.send(Err(from_store(backend(e))));
                return None;
            }
            let began = std::time::Instant::now();
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
                .unwrap_or_else(|_| Err(from_store(Error::Backend("a write failed unexpectedly".into()))));
            timing.record(began.elapsed());
            let undo = if out.is_ok() {
                run_cached(conn, "RELEASE write")
            } else {
                run_cached(conn, "ROLLBACK TO write").and_then(|_| run_cached(conn, "RELEASE write"))
            };
            if let Err(e) = undo {
                let _ = answer.send(Err(from_store(backend(e))));
                return None;
            }
            Some(Box::new(move |committed: Result<()>| {
                let _ = answer.send(match (committed, out) {
                    (_, Err(e)) => Err(e),
                    (Ok(()), ok) => ok,
                    (Err(e), Ok(_)) => Err(from_store(e)),
                });
            }))
        });
        let stopped = || Error::Backend("the store's writer has stopped".into());
        let job = Job { work, queued: std::time::Instant::now() };
        self.inner.meters.queue.increment(1.0);
        if self.inner.jobs.lock().unwrap_or_else(|e| e.into_inner()).send(job).is_err() {
            self.inner.meters.queue.decrement(1.0);
            return Err(from_store(stopped()));
        }
        answered.await.map_err(|_| from_store(stopped()))?
    }

    /// Moves the audit journal's entries into the log, in one write (the entries a
    /// read appended before this call are in the log when it returns).
    async fn move_journal(&self) -> Result<()> {
        let taken = self.inner.journal.lock().unwrap_or_else(|e| e.into_inner()).take();
        if taken.is_empty() {
            return Ok(());
        }
        let names = taken.clone();
        match self.with_writer(move |tx| journal::drain(tx, &names, |tx, _, row| insert_audit(tx, row))).await {
            Ok(_) => {
                self.moved(taken);
                Ok(())
            }
            Err(e) => {
                self.inner.journal.lock().unwrap_or_else(|e| e.into_inner()).give_back(taken);
                Err(e)
            }
        }
    }

    /// Runs `f` as one write (see [`SqliteStore::write`]).
    async fn with_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.write(f, |e| e).await
    }
}

use hale_store::sql::VERSION_COLUMNS;

fn row_to_stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, StoredResource)> {
    let seq: i64 = r.get(0)?;
    let ty: String = r.get(1)?;
    let id: String = r.get(2)?;
    let version: i64 = r.get(3)?;
    let lu: i64 = r.get(4)?;
    let method: String = r.get(5)?;
    let body: Option<String> = r.get(6)?;
    let bad = |what: &str| rusqlite::Error::InvalidColumnType(0, what.to_string(), rusqlite::types::Type::Text);
    Ok((
        seq,
        StoredResource {
            resource_type: ResourceType::parse(&ty).ok_or_else(|| bad("res_type"))?,
            id: ResourceId::parse(&id).ok_or_else(|| bad("res_id"))?,
            version: VersionId::new(version as u64),
            last_updated: Instant::from_millis(lu),
            method: Method::parse(&method).ok_or_else(|| bad("method"))?,
            body,
        },
    ))
}

/// Current (type, id) -> (version, deleted, last_updated).
fn current(tx: &Connection, ty: &str, id: &str) -> Result<Option<(VersionId, bool, i64)>> {
    tx.prepare_cached(
        "SELECT r.version, r.deleted, v.last_updated FROM resources r JOIN resource_versions v ON v.seq = r.seq
         WHERE r.res_type = ?1 AND r.res_id = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![ty, id], |r| {
            Ok((VersionId::new(r.get::<_, i64>(0)? as u64), r.get::<_, i64>(1)? != 0, r.get::<_, i64>(2)?))
        })
        .optional()
    })
    .map_err(backend)
}

/// The current version of `ty/id`, by its primary key.
fn lookup_current(c: &Connection, ty: &str, id: &str) -> rusqlite::Result<Option<StoredResource>> {
    c.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM resources r JOIN resource_versions v ON v.seq = r.seq
         WHERE r.res_type = ?1 AND r.res_id = ?2"
    ))
    .and_then(|mut s| s.query_row(params![ty, id], row_to_stored).optional())
    .map(|o| o.map(|(_, s)| s))
}

/// Writes one version and its index rows; returns what was stored.
fn write_version(
    tx: &Connection,
    ty: &ResourceType,
    id: &ResourceId,
    prev: Option<(VersionId, bool, i64)>,
    method: Method,
    new: Option<NewVersion>,
) -> Result<StoredResource> {
    let (version, at, body, index, content) = hale_store::next_version(id, prev, new);
    let stored = StoredResource { resource_type: ty.clone(), id: id.clone(), version, last_updated: at, method, body };
    put_version(tx, &stored, &index, prev.is_some())?;
    if let Some(content) = content {
        put_content(tx, id, version, &content)?;
    }
    Ok(stored)
}

/// Stores a Binary version's content kept apart, a part at a time from its file.
fn put_content(tx: &Connection, id: &ResourceId, version: VersionId, content: &Content) -> Result<()> {
    let mut s = tx.prepare_cached(hale_store::sql::CONTENT_INSERT).map_err(backend)?;
    for part in content.parts()? {
        let (at, bytes) = part?;
        s.execute(params![id.as_str(), version.get() as i64, at as i64, bytes]).map_err(backend)?;
    }
    Ok(())
}

/// Stores a version as given: its row, the `resources` row pointing at it, and its
/// index rows in place of those of an earlier version (when `stale`).
fn put_version(tx: &Connection, v: &StoredResource, index: &IndexRows, stale: bool) -> Result<()> {
    let (ty, id, version) = (v.resource_type.as_str(), v.id.as_str(), v.version.get() as i64);
    tx.prepare_cached(
        "INSERT INTO resource_versions (res_type, res_id, version, last_updated, method, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| s.execute(params![ty, id, version, v.last_updated.millis(), v.method.as_str(), v.body]))
    .map_err(backend)?;
    let seq = tx.last_insert_rowid();
    tx.prepare_cached(
        "INSERT INTO resources (res_type, res_id, version, seq, deleted) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (res_type, res_id) DO UPDATE SET version = excluded.version, seq = excluded.seq,
         deleted = excluded.deleted",
    )
    .and_then(|mut s| s.execute(params![ty, id, version, seq, v.body.is_none() as i64]))
    .map_err(backend)?;
    if stale {
        delete_index(tx, ty, id)?;
    }
    if v.body.is_some() {
        write_index(tx, ty, id, index).map_err(backend)?;
    }
    Ok(())
}

/// Deletes every index row of one resource.
fn delete_index(tx: &Connection, ty: &str, id: &str) -> Result<()> {
    for table in INDEX_TABLES {
        tx.prepare_cached(&format!("DELETE FROM {table} WHERE res_type = ?1 AND res_id = ?2"))
            .and_then(|mut s| s.execute(params![ty, id]))
            .map_err(backend)?;
    }
    Ok(())
}

fn write_index(tx: &Connection, ty: &str, id: &str, index: &IndexRows) -> rusqlite::Result<()> {
    if !index.tokens.is_empty() {
        let mut s = tx.prepare_cached(
            "INSERT INTO search_token (res_type, res_id, param, system, code, text, patient)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let keys = index.patient_keys();
        for t in &index.tokens {
            for patient in &keys {
                s.execute(params![ty, id, t.param, t.system, t.code, t.text, patient])?;
            }
        }
    }
    if !index.strings.is_empty() {
        let mut s = tx.prepare_cached(
            "INSERT INTO search_string (res_type, res_id, param, norm, exact) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for t in &index.strings {
            s.execute(params![ty, id, t.param, t.norm, t.exact])?;
        }
    }
    if !index.dates.is_empty() {
        let mut s =
            tx.prepare_cached("INSERT INTO search_date (res_type, res_id, param, lo, hi) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for t in &index.dates {
            s.execute(params![ty, id, t.param, t.lo, t.hi])?;
        }
    }
    if !index.numbers.is_empty() {
        let mut s =
            tx.prepare_cached("INSERT INTO search_number (res_type, res_id, param, value) VALUES (?1, ?2, ?3, ?4)")?;
        for t in &index.numbers {
            s.execute(params![ty, id, t.param, t.value])?;
        }
    }
    if !index.quantities.is_empty() {
        let mut s = tx.prepare_cached(
            "INSERT INTO search_quantity (res_type, res_id, param, value, system, code, unit)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for t in &index.quantities {
            s.execute(params![ty, id, t.param, t.value, t.system, t.code, t.unit])?;
        }
    }
    if !index.references.is_empty() {
        let mut s = tx.prepare_cached(
            "INSERT INTO search_reference (res_type, res_id, param, target_type, target_id, url)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for t in &index.references {
            s.execute(params![ty, id, t.param, t.target_type, t.target_id, t.url])?;
        }
    }
    if !index.uris.is_empty() {
        let mut s =
            tx.prepare_cached("INSERT INTO search_uri (res_type, res_id, param, uri) VALUES (?1, ?2, ?3, ?4)")?;
        for t in &index.uris {
            s.execute(params![ty, id, t.param, t.uri])?;
        }
    }
    if !index.composites.is_empty() {
        let mut s = tx.prepare_cached(
            "INSERT INTO search_composite (res_type, res_id, param, s1, c1, n1, lo1, hi1, s2, c2, n2, lo2, hi2, \
             s3, c3, n3, lo3, hi3) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )?;
        let none = hale_search::index::CompositePart::default();
        for t in &index.composites {
            let [a, b, c] = [0, 1, 2].map(|k| t.parts.get(k).unwrap_or(&none));
            s.execute(params![
                ty, id, t.param, a.system, a.code, a.number, a.lo, a.hi, b.system, b.code, b.number, b.lo, b.hi,
                c.system, c.code, c.number, c.lo, c.hi
            ])?;
        }
    }
    Ok(())
}

/// Inserts one audit entry and the patients it concerns.
fn insert_audit(tx: &Connection, row: &AuditRow) -> Result<()> {
    insert_audit_at(tx, row, None)
}

/// Inserts an entry, unlinked, or (by the chainer) with its sequence number, chain
/// position and hash.
fn insert_audit_at(tx: &Connection, row: &AuditRow, chained: Option<(i64, i64, &[u8; 32])>) -> Result<()> {
    let seq = match chained {
        None => {
            tx.prepare_cached(
                "INSERT INTO audit_log (recorded, action, agent, outcome, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![row.recorded.millis(), row.action, row.agent, row.outcome, row.body]))
            .map_err(backend)?;
            tx.last_insert_rowid()
        }
        Some((seq, pos, hash)) => {
            tx.prepare_cached(
                "INSERT INTO audit_log (seq, recorded, action, agent, outcome, body, chain_pos, chain_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    seq,
                    row.recorded.millis(),
                    row.action,
                    row.agent,
                    row.outcome,
                    row.body,
                    pos,
                    hash.as_slice()
                ])
            })
            .map_err(backend)?;
            seq
        }
    };
    let mut patients: Vec<&String> = row.patients.iter().collect();
    patients.sort();
    patients.dedup();
    for p in patients {
        tx.prepare_cached("INSERT INTO audit_patient (patient, seq) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![p, seq]))
            .map_err(backend)?;
    }
    Ok(())
}

fn find_ids(c: &Connection, criteria: &Criteria, limit: usize) -> Result<Vec<ResourceId>> {
    Ok(search::search(c, &criteria.request, limit, false)?.entries.into_iter().map(|e| e.id).collect())
}

fn check_preconditions(
    tx: &Connection,
    target: Option<(&ResourceType, &ResourceId)>,
    prev: Option<(VersionId, bool, i64)>,
    preconditions: &[Precondition],
) -> Result<()> {
    for p in preconditions {
        let found = match p.search() {
            Some((criteria, limit)) => find_ids(tx, criteria, limit)?,
            None => Vec::new(),
        };
        p.check(target, prev, &found)?;
    }
    Ok(())
}

fn run_op(tx: &Connection, op: TxOp) -> Result<TxOutcome> {
    match op {
        TxOp::Write { ty, id, method, new, preconditions } => {
            let prev = current(tx, ty.as_str(), id.as_str())?;
            check_preconditions(tx, Some((&ty, &id)), prev, &preconditions)?;
            let created = prev.is_none_or(|p| p.1);
            let stored = write_version(tx, &ty, &id, prev, method, Some(*new))?;
            Ok(TxOutcome::Written { stored, created })
        }
        TxOp::Delete { ty, id, preconditions } => {
            let prev = current(tx, ty.as_str(), id.as_str())?;
            check_preconditions(tx, Some((&ty, &id)), prev, &preconditions)?;
            match prev {
                Some((_, false, _)) => {
                    write_version(tx, &ty, &id, prev, Method::Delete, None).map(|s| TxOutcome::Deleted(Some(s)))
                }
                _ => Ok(TxOutcome::Deleted(None)),
            }
        }
        TxOp::Check { preconditions } => {
            check_preconditions(tx, None, None, &preconditions)?;
            Ok(TxOutcome::Checked)
        }
        TxOp::Record(record) => {
            let now = Instant::now().millis();
            tx.prepare_cached(
                "DELETE FROM auth_record WHERE kind = ?1 AND key = ?2 AND expires IS NOT NULL AND expires < ?3",
            )
            .and_then(|mut s| s.execute(params![record.kind, record.key, now]))
            .map_err(backend)?;
            let n = tx
                .prepare_cached("INSERT OR IGNORE INTO auth_record (kind, key, body, expires) VALUES (?1, ?2, ?3, ?4)")
                .and_then(|mut s| s.execute(params![record.kind, record.key, record.body, record.expires]))
                .map_err(backend)?;
            match n {
                1 => Ok(TxOutcome::Recorded),
                _ => Err(Error::Conflict(format!("{} {} is already recorded", record.kind, record.key))),
            }
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn replace_index(&self, items: Vec<(ResourceType, ResourceId, VersionId, IndexRows)>) -> Result<usize> {
        self.with_writer(move |tx| {
            let mut n = 0;
            for (ty, id, version, rows) in items {
                // only if the version indexed is still the current one
                match current(tx, ty.as_str(), id.as_str())? {
                    Some((v, false, _)) if v == version => {}
                    _ => continue,
                }
                delete_index(tx, ty.as_str(), id.as_str())?;
                write_index(tx, ty.as_str(), id.as_str(), &rows).map_err(backend)?;
                n += 1;
            }
            Ok(n)
        })
        .await
    }

    async fn transaction(
        &self,
        ops: Vec<TxOp>,
        audit: AuditWrite,
    ) -> std::result::Result<Vec<TxOutcome>, (usize, Error)> {
        let n = ops.len();
        self.write(
            move |tx| {
                let mut out = Vec::with_capacity(ops.len());
                for (i, op) in ops.into_iter().enumerate() {
                    out.push(run_op(tx, op).map_err(|e| (i, e))?);
                }
                insert_audit(tx, &audit.row(&hale_store::touched(&out))).map_err(|e| (n.saturating_sub(1), e))?;
                Ok(out)
            },
            |e| (0, e),
        )
        .await
    }

    async fn read(&self, ty: &ResourceType, id: &ResourceId) -> Result<Option<StoredResource>> {
        let (ty, id) = (ty.clone(), id.clone());
        self.point_read(move |c| lookup_current(c, ty.as_str(), id.as_str())).await
    }

    async fn vread(&self, ty: &ResourceType, id: &ResourceId, version: VersionId) -> Result<Option<StoredResource>> {
        let (ty, id) = (ty.clone(), id.clone());
        self.point_read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM resource_versions v
                 WHERE v.res_type = ?1 AND v.res_id = ?2 AND v.version = ?3"
            ))
            .and_then(|mut s| {
                s.query_row(params![ty.as_str(), id.as_str(), version.get() as i64], row_to_stored).optional()
            })
            .map(|o| o.map(|(_, s)| s))
        })
        .await
    }

    async fn content_len(&self, id: &ResourceId, version: VersionId) -> Result<Option<u64>> {
        let id = id.clone();
        self.point_read(move |c| {
            c.prepare_cached(hale_store::sql::CONTENT_LEN)?
                .query_row(params![id.as_str(), version.get() as i64], |r| r.get::<_, Option<i64>>(0))
                .map(|n| n.map(|n| n as u64))
        })
        .await
    }

    async fn content_part(&self, id: &ResourceId, version: VersionId, offset: u64) -> Result<Option<(u64, Vec<u8>)>> {
        let id = id.clone();
        let found = self
            .point_read(move |c| {
                c.prepare_cached(hale_store::sql::CONTENT_PART)?
                    .query_row(params![id.as_str(), version.get() as i64, offset as i64], |r| {
                        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
                    })
                    .optional()
            })
            .await?;
        Ok(found.filter(|(at, bytes)| offset < at + bytes.len() as u64))
    }

    async fn create(
        &self,
        ty: &ResourceType,
        new: NewVersion,
        if_none_exist: Option<Criteria>,
        audit: AuditWrite,
    ) -> Result<CreateOutcome> {
        let ty = ty.clone();
        self.with_writer(move |tx| {
            if let Some(criteria) = &if_none_exist {
                let found = find_ids(tx, criteria, 2)?;
                match found.len() {
                    0 => {}
                    1 => {
                        let existing = lookup_current(tx, ty.as_str(), found[0].as_str())
                            .map_err(backend)?
                            .ok_or_else(|| Error::Backend("matched resource vanished".into()))?;
                        insert_audit(tx, &audit.row(&[&existing]))?;
                        return Ok(CreateOutcome::Existing(existing));
                    }
                    n => return Err(Error::MultipleMatches(n)),
                }
            }
            let id = ResourceId::generate();
            let stored = write_version(tx, &ty, &id, None, Method::Post, Some(new))?;
            insert_audit(tx, &audit.row(&[&stored]))?;
            Ok(CreateOutcome::Created(stored))
        })
        .await
    }

    async fn update(
        &self,
        ty: &ResourceType,
        id: &ResourceId,
        new: NewVersion,
        if_match: Option<VersionId>,
        audit: AuditWrite,
    ) -> Result<UpdateOutcome> {
        let (ty, id) = (ty.clone(), id.clone());
        self.with_writer(move |tx| {
            let prev = current(tx, ty.as_str(), id.as_str())?;
            hale_store::check_if_match(&ty, &id, prev.map(|p| (p.0, p.1)), if_match)?;
            let created = prev.is_none_or(|p| p.1);
            let stored = write_version(tx, &ty, &id, prev, Method::Put, Some(new))?;
            insert_audit(tx, &audit.row(&[&stored]))?;
            Ok(UpdateOutcome { stored, created })
        })
        .await
    }

    async fn conditional_update(
        &self,
        criteria: Criteria,
        id: Option<ResourceId>,
        new: NewVersion,
        if_match: Option<VersionId>,
        audit: AuditWrite,
    ) -> Result<UpdateOutcome> {
        self.with_writer(move |tx| {
            let ty = criteria.request.resource_type.clone();
            let found = find_ids(tx, &criteria, 2)?;
            let target = match (found.len(), id) {
                (0, Some(id)) => id,
                (0, None) => ResourceId::generate(),
                (1, Some(id)) if id != found[0] => return Err(Error::IdMismatch(id.to_string())),
                (1, _) => found[0].clone(),
                (n, _) => return Err(Error::MultipleMatches(n)),
            };
            let prev = current(tx, ty.as_str(), target.as_str())?;
            hale_store::check_if_match(&ty, &target, prev.map(|p| (p.0, p.1)), if_match)?;
            let created = prev.is_none_or(|p| p.1);
            let method = if prev.is_none() && found.is_empty() { Method::Post } else { Method::Put };
            let stored = write_version(tx, &ty, &target, prev, method, Some(new))?;
            insert_audit(tx, &audit.row(&[&stored]))?;
            Ok(UpdateOutcome { stored, created })
        })
        .await
    }

    async fn delete(
        &self,
        ty: &ResourceType,
        id: &ResourceId,
        if_match: Option<VersionId>,
        audit: AuditWrite,
    ) -> Result<Option<StoredResource>> {
        let (ty, id) = (ty.clone(), id.clone());
        self.with_writer(move |tx| {
            let prev = current(tx, ty.as_str(), id.as_str())?;
            hale_store::check_if_match(&ty, &id, prev.map(|p| (p.0, p.1)), if_match)?;
            let out = match prev {
                Some((_, false, _)) => Some(write_version(tx, &ty, &id, prev, Method::Delete, None)?),
                _ => None,
            };
            insert_audit(tx, &audit.row(&out.iter().collect::<Vec<_>>()))?;
            Ok(out)
        })
        .await
    }

    async fn conditional_delete(&self, criteria: Criteria, audit: AuditWrite) -> Result<Option<StoredResource>> {
        self.with_writer(move |tx| {
            let ty = criteria.request.resource_type.clone();
            let found = find_ids(tx, &criteria, 2)?;
            let out = match found.len() {
                0 => None,
                1 => {
                    let prev = current(tx, ty.as_str(), found[0].as_str())?;
                    Some(write_version(tx, &ty, &found[0], prev, Method::Delete, None)?)
                }
                n => return Err(Error::MultipleMatches(n)),
            };
            insert_audit(tx, &audit.row(&out.iter().collect::<Vec<_>>()))?;
            Ok(out)
        })
        .await
    }

    async fn find(&self, criteria: &Criteria, limit: usize) -> Result<Vec<ResourceId>> {
        let criteria = criteria.clone();
        self.with_reader(move |c| find_ids(c, &criteria, limit)).await
    }

    async fn search(&self, request: &SearchRequest, page_size: usize, want_total: bool) -> Result<SearchPage> {
        let request = request.clone();
        self.with_reader(move |c| search::search(c, &request, page_size, want_total)).await
    }

    async fn everything(&self, patient: &ResourceId, query: &EverythingQuery) -> Result<SearchPage> {
        let (patient, query) = (patient.clone(), query.clone());
        self.with_reader(move |c| search::everything(c, patient.as_str(), &query)).await
    }

    async fn history(&self, scope: &HistoryScope, query: &HistoryQuery) -> Result<HistoryPage> {
        let q = hale_store::sql::history(&hale_store::sql::SQLITE, scope, query);
        let count = query.count;
        self.with_reader(move |c| {
            let total = match &q.count {
                Some(s) => Some(
                    c.query_row(&s.sql, params_from_iter(s.args.iter().map(search::bind)), |r| r.get::<_, i64>(0))
                        .map_err(backend)? as u64,
                ),
                None => None,
            };
            let mut stmt = c.prepare_cached(&q.page.sql).map_err(backend)?;
            let rows = stmt
                .query_map(params_from_iter(q.page.args.iter().map(search::bind)), row_to_stored)
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            Ok(hale_store::sql::history_page(rows, count, total))
        })
        .await
    }

    async fn optimize(&self) -> Result<()> {
        // the search SQL pins its plans (a driving clause, `INDEXED BY`) and is measured
        // without statistics; ANALYZE would only let the planner second-guess it
        Ok(())
    }

    async fn versions_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, StoredResource)>> {
        self.with_reader(move |c| {
            let sql =
                format!("SELECT {VERSION_COLUMNS} FROM resource_versions v WHERE v.seq > ?1 ORDER BY v.seq LIMIT ?2");
            let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt.query_map(params![after, limit as i64], row_to_stored).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn restore(&self, versions: Vec<(StoredResource, IndexRows, Option<Content>)>) -> Result<()> {
        self.with_writer(move |tx| {
            for (v, index, content) in &versions {
                put_version(tx, v, index, true)?;
                if let Some(content) = content {
                    put_content(tx, &v.id, v.version, content)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.with_reader(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(backend)).await
    }

    async fn append_audit(&self, rows: Vec<AuditRow>) -> Result<()> {
        // the entries of reads and refusals: appended to the journal before the answer (a
        // crash of Hale loses none), moved into the log by the writer within a second
        let lines = journal::encode(&rows)?;
        self.inner.journal.lock().unwrap_or_else(|e| e.into_inner()).append(&lines, rows.len() as u64)?;
        self.inner.meters.journal.increment(rows.len() as f64);
        Ok(())
    }

    async fn chain_audit(&self, limit: usize, link: ChainLink) -> Result<(usize, Option<(i64, Vec<u8>)>)> {
        let taken = self.inner.journal.lock().unwrap_or_else(|e| e.into_inner()).take();
        let names = taken.clone();
        // the writer thread is the one chainer: chaining is serialized with every write
        let out = self
            .with_writer(move |tx| {
                let head = audit_head(tx)?;
                let pending: Vec<(i64, String)> = tx
                    .prepare_cached("SELECT seq, body FROM audit_log WHERE chain_pos IS NULL ORDER BY seq LIMIT ?1")
                    .and_then(|mut s| {
                        s.query_map(params![limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                            .collect::<rusqlite::Result<_>>()
                    })
                    .map_err(backend)?;
                let (mut pos, mut prev) = match &head {
                    Some((p, h)) => (*p, to_hash(h)?),
                    None => (0, [0u8; 32]),
                };
                for (seq, body) in &pending {
                    pos += 1;
                    prev = link(&prev, pos, *seq, body);
                    tx.prepare_cached("UPDATE audit_log SET chain_pos = ?1, chain_hash = ?2 WHERE seq = ?3")
                        .and_then(|mut s| s.execute(params![pos, prev.as_slice(), seq]))
                        .map_err(backend)?;
                }
                let mut linked = pending.len();
                if pending.len() < limit {
                    // every entry in the log is linked: the journal's follow, linked as they
                    // are written in segments (see segment.rs), which spares rewriting every
                    // entry of a read a second time
                    let seq: i64 = tx
                        .query_row("SELECT COALESCE(MAX(seq), 0) FROM audit_log", [], |r| r.get(0))
                        .map_err(backend)?;
                    let seq = seq.max(segment::last_seq(tx)?);
                    let mut segments = segment::Segments::new(link, pos, seq, prev);
                    linked += journal::drain(tx, &names, |tx, line, row| segments.push(tx, line, row))?;
                    (pos, _, prev) = segments.finish(tx)?;
                } else {
                    // more to link first: the journal's entries wait their turn
                    journal::drain(tx, &names, |tx, _, row| insert_audit(tx, row))?;
                }
                let head = if linked == 0 { head } else { Some((pos, prev.to_vec())) };
                Ok((linked, head))
            })
            .await;
        let mut journal = self.inner.journal.lock().unwrap_or_else(|e| e.into_inner());
        match out {
            Ok(out) => {
                drop(journal);
                self.moved(taken);
                Ok(out)
            }
            Err(e) => {
                journal.give_back(taken);
                Err(e)
            }
        }
    }

    async fn audit_chain(&self, after: i64, limit: usize) -> Result<Vec<ChainedEntry>> {
        self.with_reader(move |c| {
            let mut out: Vec<ChainedEntry> = c
                .prepare_cached(
                    "SELECT chain_pos, seq, chain_hash, body FROM audit_log
                     WHERE chain_pos > ?1 ORDER BY chain_pos LIMIT ?2",
                )
                .and_then(|mut s| {
                    s.query_map(params![after, limit as i64], |r| {
                        Ok(ChainedEntry { pos: r.get(0)?, seq: r.get(1)?, hash: r.get(2)?, body: r.get(3)? })
                    })?
                    .collect::<rusqlite::Result<_>>()
                })
                .map_err(backend)?;
            out.extend(segment::chained(c, after, limit)?);
            out.sort_by_key(|e| e.pos);
            out.truncate(limit);
            Ok(out)
        })
        .await
    }

    async fn audit_unchained(&self) -> Result<u64> {
        self.move_journal().await?;
        self.with_reader(|c| {
            c.query_row("SELECT COUNT(*) FROM audit_log WHERE chain_pos IS NULL", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(backend)
        })
        .await
    }

    async fn put_account(&self, account: AccountRow, create: bool, audit: AuditRow) -> Result<()> {
        self.with_writer(move |tx| {
            let taken = tx
                .prepare_cached("SELECT id FROM account WHERE username = ?1 OR id = ?2")
                .and_then(|mut s| {
                    s.query_map(params![account.username, account.id], |r| r.get::<_, String>(0))?
                        .collect::<rusqlite::Result<Vec<String>>>()
                })
                .map_err(backend)?;
            if create && !taken.is_empty() {
                return Err(Error::Conflict(format!("the user name '{}' is taken", account.username)));
            }
            if !create && (!taken.contains(&account.id) || taken.iter().any(|t| t != &account.id)) {
                return Err(Error::Conflict(format!("the account '{}' cannot take that user name", account.id)));
            }
            let sql = if create {
                "INSERT INTO account (id, username, body) VALUES (?1, ?2, ?3)"
            } else {
                "UPDATE account SET username = ?2, body = ?3 WHERE id = ?1"
            };
            tx.prepare_cached(sql)
                .and_then(|mut s| s.execute(params![account.id, account.username, account.body]))
                .map_err(backend)?;
            insert_audit(tx, &audit)
        })
        .await
    }

    async fn account(&self, key: AccountKey<'_>) -> Result<Option<AccountRow>> {
        let (sql, value) = match key {
            AccountKey::Id(v) => ("SELECT id, username, body FROM account WHERE id = ?1", v.to_string()),
            AccountKey::Username(v) => ("SELECT id, username, body FROM account WHERE username = ?1", v.to_string()),
        };
        self.with_reader(move |c| {
            c.prepare_cached(sql)
                .and_then(|mut s| {
                    s.query_row(params![value], |r| {
                        Ok(AccountRow { id: r.get(0)?, username: r.get(1)?, body: r.get(2)? })
                    })
                    .optional()
                })
                .map_err(backend)
        })
        .await
    }

    async fn audit_search(&self, query: &AuditQuery) -> Result<Vec<(i64, String)>> {
        self.move_journal().await?;
        let q = query.clone();
        let stmt = query.statement();
        self.with_reader(move |c| {
            let mut out: Vec<(i64, String)> = c
                .prepare_cached(&stmt.sql)
                .and_then(|mut s| {
                    s.query_map(params_from_iter(stmt.args.iter().map(search::bind)), |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(backend)?;
            out.extend(segment::search(c, &q)?);
            out.sort_by_key(|e| std::cmp::Reverse(e.0));
            out.truncate(q.limit);
            Ok(out)
        })
        .await
    }

    async fn put_auth(&self, record: AuthRecord, audit: Option<AuditRow>) -> Result<()> {
        let now = Instant::now().millis();
        self.with_writer(move |tx| {
            tx.prepare_cached("DELETE FROM auth_record WHERE kind = ?1 AND expires IS NOT NULL AND expires < ?2")
                .and_then(|mut s| s.execute(params![record.kind, now]))
                .map_err(backend)?;
            tx.prepare_cached("INSERT OR REPLACE INTO auth_record (kind, key, body, expires) VALUES (?1, ?2, ?3, ?4)")
                .and_then(|mut s| s.execute(params![record.kind, record.key, record.body, record.expires]))
                .map_err(backend)?;
            match &audit {
                Some(a) => insert_audit(tx, a),
                None => Ok(()),
            }
        })
        .await
    }

    async fn claim_auth(&self, record: AuthRecord) -> Result<bool> {
        let now = Instant::now().millis();
        self.with_writer(move |tx| {
            tx.prepare_cached("DELETE FROM auth_record WHERE kind = ?1 AND expires IS NOT NULL AND expires < ?2")
                .and_then(|mut s| s.execute(params![record.kind, now]))
                .map_err(backend)?;
            let n = tx
                .prepare_cached("INSERT OR IGNORE INTO auth_record (kind, key, body, expires) VALUES (?1, ?2, ?3, ?4)")
                .and_then(|mut s| s.execute(params![record.kind, record.key, record.body, record.expires]))
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn auth(&self, kind: &str, key: &str) -> Result<Option<AuthRecord>> {
        let (kind, key, now) = (kind.to_string(), key.to_string(), Instant::now().millis());
        self.with_reader(move |c| {
            c.prepare_cached(
                "SELECT kind, key, body, expires FROM auth_record WHERE kind = ?1 AND key = ?2 \
                 AND (expires IS NULL OR expires >= ?3)",
            )
            .and_then(|mut s| s.query_row(params![kind, key, now], auth_row).optional())
            .map_err(backend)
        })
        .await
    }

    async fn take_auth(&self, kind: &str, key: &str) -> Result<Option<AuthRecord>> {
        let (kind, key, now) = (kind.to_string(), key.to_string(), Instant::now().millis());
        // the one writer thread makes the read and the delete one step
        self.with_writer(move |tx| {
            let found = tx
                .prepare_cached(
                    "SELECT kind, key, body, expires FROM auth_record WHERE kind = ?1 AND key = ?2 \
                     AND (expires IS NULL OR expires >= ?3)",
                )
                .and_then(|mut s| s.query_row(params![kind, key, now], auth_row).optional())
                .map_err(backend)?;
            tx.prepare_cached("DELETE FROM auth_record WHERE kind = ?1 AND key = ?2")
                .and_then(|mut s| s.execute(params![kind, key]))
                .map_err(backend)?;
            Ok(found)
        })
        .await
    }

    async fn auths(&self, kind: &str) -> Result<Vec<AuthRecord>> {
        let (kind, now) = (kind.to_string(), Instant::now().millis());
        self.with_reader(move |c| {
            c.prepare_cached(
                "SELECT kind, key, body, expires FROM auth_record WHERE kind = ?1 \
                 AND (expires IS NULL OR expires >= ?2) ORDER BY key",
            )
            .and_then(|mut s| s.query_map(params![kind, now], auth_row)?.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(backend)
        })
        .await
    }

    async fn count_auths(&self, kind: &str, key_prefix: &str) -> Result<u64> {
        let (kind, prefix, now) = (kind.to_string(), key_prefix.to_string(), Instant::now().millis());
        self.with_reader(move |c| {
            c.prepare_cached(
                "SELECT COUNT(*) FROM auth_record WHERE kind = ?1 AND substr(key, 1, length(?2)) = ?2 \
                 AND (expires IS NULL OR expires >= ?3)",
            )
            .and_then(|mut s| s.query_row(params![kind, prefix, now], |r| r.get::<_, i64>(0)))
            .map(|n| n.max(0) as u64)
            .map_err(backend)
        })
        .await
    }

    async fn remove_auths(&self, kind: &str, key_prefix: &str) -> Result<u64> {
        let (kind, prefix) = (kind.to_string(), key_prefix.to_string());
        self.with_writer(move |tx| {
            tx.prepare_cached("DELETE FROM auth_record WHERE kind = ?1 AND substr(key, 1, length(?2)) = ?2")
                .and_then(|mut s| s.execute(params![kind, prefix]))
                .map(|n| n as u64)
                .map_err(backend)
        })
        .await
    }

    async fn server_key(&self, name: &str, candidate: String) -> Result<String> {
        let (name, now) = (name.to_string(), Instant::now().millis());
        // the one writer thread makes the insert and the read one step
        self.with_writer(move |tx| {
            tx.prepare_cached("INSERT OR IGNORE INTO server_key (name, body, created) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute(params![name, candidate, now]))
                .map_err(backend)?;
            tx.prepare_cached("SELECT body FROM server_key WHERE name = ?1")
                .and_then(|mut s| s.query_row(params![name], |r| r.get(0)))
                .map_err(backend)
        })
        .await
    }

    async fn append_checkpoint(&self, line: String) -> Result<()> {
        self.with_writer(move |tx| {
            tx.prepare_cached("INSERT INTO audit_checkpoint (body) VALUES (?1)")
                .and_then(|mut s| s.execute(params![line]))
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }

    async fn checkpoints(&self) -> Result<Vec<String>> {
        self.with_reader(|c| {
            c.prepare_cached("SELECT body FROM audit_checkpoint ORDER BY id")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>())
                .map_err(backend)
        })
        .await
    }

    async fn accounts(&self) -> Result<Vec<AccountRow>> {
        self.with_reader(|c| {
            c.prepare_cached("SELECT id, username, body FROM account ORDER BY username")
                .and_then(|mut s| {
                    s.query_map([], |r| Ok(AccountRow { id: r.get(0)?, username: r.get(1)?, body: r.get(2)? }))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(backend)
        })
        .await
    }
}

fn auth_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuthRecord> {
    Ok(AuthRecord { kind: r.get(0)?, key: r.get(1)?, body: r.get(2)?, expires: r.get(3)? })
}

/// The last chained entry: its position and hash.
fn audit_head(tx: &Connection) -> Result<Option<(i64, Vec<u8>)>> {
    let log: Option<(i64, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT chain_pos, chain_hash FROM audit_log WHERE chain_pos IS NOT NULL ORDER BY chain_pos DESC LIMIT 1",
        )
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(backend)?;
    Ok(match (log, segment::head(tx)?) {
        (Some(l), Some(s)) => Some(if l.0 > s.0 { l } else { s }),
        (l, s) => l.or(s),
    })
}

fn to_hash(h: &[u8]) -> Result<[u8; 32]> {
    h.try_into().map_err(|_| Error::Backend("an audit chain hash is not 32 bytes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hale_store::TokenIndex;
    use serde_json::json;

    fn patient(family: &str) -> NewVersion {
        NewVersion {
            content: None,
            resource: json!({"resourceType":"Patient","name":[{"family":family}]}),
            index: IndexRows::default(),
        }
    }

    fn audit() -> AuditWrite {
        AuditWrite::new(|touched| AuditRow {
            recorded: Instant::now(),
            action: "test".into(),
            agent: "system:test".into(),
            outcome: "0".into(),
            patients: touched.iter().map(|s| s.id.to_string()).collect(),
            body: "{}".into(),
        })
    }

    fn ty() -> ResourceType {
        ResourceType::parse("Patient").unwrap()
    }

    /// A toy link: enough to tell each entry's place and predecessor.
    fn toy_link(prev: &[u8; 32], pos: i64, seq: i64, body: &str) -> [u8; 32] {
        let mut h = *prev;
        h.rotate_left(1);
        h[0] ^= pos as u8;
        h[1] ^= seq as u8;
        h[2] ^= body.len() as u8;
        h
    }

    fn read_row(n: usize) -> AuditRow {
        AuditRow {
            recorded: Instant::now(),
            action: "read".into(),
            agent: "client:x".into(),
            outcome: "0".into(),
            patients: vec![format!("p{n}")],
            body: format!("{{\"n\":{n}}}"),
        }
    }

    /// A read by id runs on the caller's thread, with a connection that waits for no
    /// lock; a read that finds the database busy is handed to the blocking pool, whose
    /// connections wait, rather than failing at once.
    #[tokio::test]
    async fn a_read_by_id_that_finds_the_database_busy_waits_on_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let CreateOutcome::Created(made) = s.create(&ty(), patient("Busy"), None, audit()).await.unwrap() else {
            panic!("not created")
        };
        let caller = std::thread::current().id();
        let read = s.read(&ty(), &made.id).await.unwrap().expect("found");
        assert_eq!(read.id, made.id);

        let threads = Arc::new(Mutex::new(Vec::new()));
        let seen = threads.clone();
        let (ty, id) = (ty(), made.id.clone());
        let out = s
            .point_read(move |c| {
                let mut seen = seen.lock().unwrap();
                seen.push(std::thread::current().id());
                if seen.len() == 1 {
                    return Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some("database is locked".into()),
                    ));
                }
                lookup_current(c, ty.as_str(), id.as_str())
            })
            .await
            .unwrap();
        assert_eq!(out.map(|r| r.version), Some(read.version));
        let threads = threads.lock().unwrap().clone();
        assert_eq!(threads.len(), 2, "tried once here, once on the pool");
        assert_eq!(threads[0], caller, "the first try runs on the caller's thread");
        assert_ne!(threads[1], caller, "the retry runs on the blocking pool");

        // any other error is the read's answer, not retried
        let tries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t = tries.clone();
        let failed = s
            .point_read(move |_| -> rusqlite::Result<()> {
                t.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err(rusqlite::Error::InvalidQuery)
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// A read that runs past `limits.statement_timeout_ms` is stopped with
    /// [`Error::Timeout`] (a 503 `too-costly` on the API); its connection serves the
    /// next read as usual.
    #[tokio::test]
    async fn a_read_longer_than_the_statement_timeout_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let count = |c: &Connection| {
            c.query_row(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000)
                 SELECT count(*) FROM n",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(backend)
        };
        s.set_statement_timeout(std::time::Duration::from_millis(50));
        let started = std::time::Instant::now();
        assert!(matches!(s.with_reader(count).await, Err(Error::Timeout)));
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "stopped near its deadline");
        assert_eq!(Error::Timeout.category(), hale_fhir::Category::TooCostly);
        let one = |c: &Connection| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).map_err(backend);
        assert_eq!(s.with_reader(one).await.unwrap(), 1, "a short read under the limit");
        s.set_statement_timeout(std::time::Duration::ZERO);
        assert_eq!(s.with_reader(one).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_record_commits_with_the_transaction_or_refuses_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let record = || AuthRecord { kind: "hl7-accepted".into(), key: "k1".into(), body: "{}".into(), expires: None };
        let write = |id: &str| TxOp::Write {
            ty: ty(),
            id: ResourceId::parse(id).unwrap(),
            method: Method::Post,
            new: Box::new(patient("Once")),
            preconditions: vec![],
        };
        let out = s.transaction(vec![write("a1"), TxOp::Record(record())], audit()).await.unwrap();
        assert_eq!(out[1], TxOutcome::Recorded);
        assert!(s.auth("hl7-accepted", "k1").await.unwrap().is_some());
        // the same key again: nothing of the transaction is written
        let err = s.transaction(vec![write("a2"), TxOp::Record(record())], audit()).await.unwrap_err();
        assert_eq!(err.0, 1);
        assert!(matches!(err.1, Error::Conflict(_)), "{:?}", err.1);
        assert!(s.read(&ty(), &ResourceId::parse("a2").unwrap()).await.unwrap().is_none());
        assert!(s.read(&ty(), &ResourceId::parse("a1").unwrap()).await.unwrap().is_some());
    }

    /// Every page of an audit search, seven entries a page.
    async fn all_pages(s: &SqliteStore, q: AuditQuery) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        let mut q = AuditQuery { limit: 7, ..q };
        loop {
            let page = s.audit_search(&q).await.unwrap();
            let Some(last) = page.last() else { break };
            q.below_seq = Some(last.0);
            out.extend(page);
        }
        out
    }

    /// Reads' entries go into segments of up to 64 entries; the chain and the search
    /// see them one by one (every filter, newest first, paged, merged with the log's),
    /// and a write's entry after them is numbered after them.
    #[tokio::test]
    async fn segments_are_chained_and_searched_entry_by_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = SqliteStore::open(&path).unwrap();
        let rows: Vec<AuditRow> = (0..150)
            .map(|i| {
                let mut r = read_row(i % 5);
                r.body = format!("{{\"n\":{i}}}");
                if i % 2 == 1 {
                    r.agent = "user:ana".into();
                }
                if i % 7 == 0 {
                    r.action = "search-type".into();
                    r.patients = vec!["p1".into(), "p2".into()];
                }
                r
            })
            .collect();
        s.append_audit(rows[..100].to_vec()).await.unwrap();
        s.create(&ty(), patient("A"), None, audit()).await.unwrap();
        s.append_audit(rows[100..].to_vec()).await.unwrap();
        assert_eq!(s.chain_audit(10_000, toy_link).await.unwrap().0, 151);
        let CreateOutcome::Created(b) = s.create(&ty(), patient("B"), None, audit()).await.unwrap() else { panic!() };
        assert_eq!(s.chain_audit(10_000, toy_link).await.unwrap().0, 1);
        let c = Connection::open(&path).unwrap();
        let n: i64 = c.query_row("SELECT COUNT(*) FROM audit_segment", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 3, "150 entries in segments of 64");
        // one key row per key for the chainer's run, listing the segments holding it
        let (n, list): (i64, Vec<u8>) = c
            .query_row("SELECT COUNT(*), MAX(segments) FROM audit_segment_key WHERE key = 'p|p1'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((n, list.len()), (1, 3 * 8), "p1 is read in each of the 3 segments of one run");

        // the chain: every entry once, in order, each hash from its predecessor
        let chain = s.audit_chain(0, 1000).await.unwrap();
        assert_eq!(chain.len(), 152);
        let mut prev = [0u8; 32];
        for (i, e) in chain.iter().enumerate() {
            assert_eq!(e.pos, i as i64 + 1);
            prev = toy_link(&prev, e.pos, e.seq, &e.body);
            assert_eq!(e.hash, prev.to_vec(), "entry {}", e.pos);
        }
        let mut paged = Vec::new();
        for after in [0, 60, 64, 130] {
            let page = s.audit_chain(after, 5).await.unwrap();
            assert_eq!(page.len(), 5);
            paged.extend(page.into_iter().map(|e| e.pos));
        }
        assert_eq!(paged, [1, 2, 3, 4, 5, 61, 62, 63, 64, 65, 65, 66, 67, 68, 69, 131, 132, 133, 134, 135]);
        assert_eq!(chain[0].body, "{}", "the first create's entry");
        assert_eq!(chain[151].body, "{}", "the second create's entry");
        assert!(chain[151].seq > chain[150].seq, "a write after the segments is numbered after them");

        // the search, against the same filters applied to the rows by hand
        let seqs: Vec<i64> = chain[1..151].iter().map(|e| e.seq).collect();
        let want = |keep: &dyn Fn(&AuditRow) -> bool| -> Vec<(i64, String)> {
            let mut w: Vec<(i64, String)> =
                rows.iter().zip(&seqs).filter(|(r, _)| keep(r)).map(|(r, q)| (*q, r.body.clone())).collect();
            w.reverse();
            w
        };
        let p1 = Some(vec!["p1".to_string()]);
        let has_p1 = |r: &AuditRow| r.patients.iter().any(|p| p == "p1");
        assert_eq!(all_pages(&s, AuditQuery { patients: p1.clone(), ..Default::default() }).await, want(&has_p1));
        assert_eq!(
            all_pages(&s, AuditQuery { patients: p1.clone(), only_these_patients: true, ..Default::default() }).await,
            want(&|r| r.patients == ["p1"])
        );
        let q = AuditQuery { agent: Some("user:ana".into()), action: Some("read".into()), ..Default::default() };
        assert_eq!(all_pages(&s, q).await, want(&|r| r.agent == "user:ana" && r.action == "read"));
        let newest = s.audit_search(&AuditQuery { limit: 3, ..Default::default() }).await.unwrap();
        let expect_newest = [chain[151].seq, seqs[149], seqs[148]];
        assert_eq!(newest.iter().map(|e| e.0).collect::<Vec<_>>(), expect_newest);
        let q = AuditQuery { patients: Some(vec![b.id.to_string()]), limit: 10, ..Default::default() };
        assert_eq!(s.audit_search(&q).await.unwrap(), [(chain[151].seq, "{}".to_string())]);
        // nothing edits or removes a segment
        assert!(c.execute("DELETE FROM audit_segment", []).is_err());
        assert!(c.execute("UPDATE audit_segment SET lines = x'00'", []).is_err());
        assert!(c.execute("DELETE FROM audit_segment_key", []).is_err());
    }

    /// Reads' entries (journal) and writes' entries (in their transactions) interleave;
    /// chaining links them all, in sequence order, each once, whatever path each took.
    #[tokio::test]
    async fn journal_entries_are_chained_after_the_log_in_sequence_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let s = SqliteStore::open(&path).unwrap();
        s.append_audit(vec![read_row(1), read_row(2)]).await.unwrap();
        s.create(&ty(), patient("A"), None, audit()).await.unwrap();
        s.append_audit(vec![read_row(3)]).await.unwrap();
        let (n, head) = s.chain_audit(100, toy_link).await.unwrap();
        assert_eq!(n, 4);
        s.create(&ty(), patient("B"), None, audit()).await.unwrap();
        s.append_audit(vec![read_row(4)]).await.unwrap();
        // a limit smaller than what waits: the journal's entries wait for the next round
        let (n2, _) = s.chain_audit(1, toy_link).await.unwrap();
        assert_eq!(n2, 1);
        let (n3, head3) = s.chain_audit(100, toy_link).await.unwrap();
        assert_eq!(n3, 1);
        assert_eq!(s.chain_audit(100, toy_link).await.unwrap().0, 0);
        assert_eq!(s.audit_unchained().await.unwrap(), 0);
        let chain = s.audit_chain(0, 100).await.unwrap();
        assert_eq!(chain.len(), 6);
        let mut prev = [0u8; 32];
        for (i, e) in chain.iter().enumerate() {
            assert_eq!(e.pos, i as i64 + 1);
            if i > 0 {
                assert!(e.seq > chain[i - 1].seq, "chain order is sequence order");
            }
            prev = toy_link(&prev, e.pos, e.seq, &e.body);
            assert_eq!(e.hash, prev.to_vec());
        }
        assert_eq!(head.unwrap().0, 4);
        assert_eq!(head3.unwrap(), (6, prev.to_vec()));
        let bodies: Vec<&str> = chain.iter().map(|e| e.body.as_str()).collect();
        assert_eq!(bodies, ["{}", "{\"n\":1}", "{\"n\":2}", "{\"n\":3}", "{}", "{\"n\":4}"]);
        // each patient's entry is found by patient
        let c = Connection::open(&path).unwrap();
        let n: i64 = c.query_row("SELECT COUNT(*) FROM audit_patient WHERE patient = 'p4'", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
        assert_eq!(std::fs::read_dir(dir.path().join("c.db-audit")).unwrap().count(), 0);
    }

    /// `$everything` starts from the patient's compartment: no step of its plan scans
    /// a table (a scan of every reference row and every resource made it take 1-2 s on
    /// a 276,000-resource store, whatever the size of the answer).
    #[test]
    fn everything_never_scans_a_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        drop(SqliteStore::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        for cursor in [None, Some(hale_store::sql::everything_cursor("p1", ("Observation", "o1")))] {
            let q = EverythingQuery { since: None, types: None, count: 10, cursor, restriction: None };
            let s = hale_store::sql::everything(&hale_store::sql::SQLITE, "p1", &q).unwrap();
            let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {}", s.sql)).unwrap();
            let plan: Vec<String> = st
                .query_map(params_from_iter(s.args.iter().map(search::bind)), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let scans: Vec<&String> = plan
                .iter()
                .filter(|l| {
                    l.starts_with("SCAN ")
                        && !["SCAN comp", "SCAN e", "SCAN p", "SCAN CONSTANT ROW"].contains(&l.as_str())
                })
                .collect();
            assert!(scans.is_empty(), "{scans:?} in {plan:#?}");
        }
    }

    /// A clinician's search held to their organization's patients (through Consents,
    /// encounters and care teams) and to a granular scope's query checks each candidate
    /// by index probes, starting from that candidate's own rows (the owner index): no
    /// step scans a table,
    /// and the encounter and care team checks are one probe by the patient key each,
    /// never a walk over the patient's (or the organization's) encounters.
    #[test]
    fn a_restricted_search_probes_each_candidate_and_never_scans() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        drop(SqliteStore::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        let mut r = hale_search::access::Restriction::organization("org-1");
        r.practitioner = Some("prac-1".into());
        r.filters = vec![hale_search::access::TypeFilter {
            resource_type: "Observation".into(),
            any_of: vec![hale_search::access::parse_scope_query("Observation", "category=s|laboratory").unwrap()],
        }];
        let plan_of = |sql: &str, args: &[hale_store::sql::Bind]| -> Vec<String> {
            let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            st.query_map(params_from_iter(args.iter().map(search::bind)), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        for (ty, q) in [("Observation", "code=8867-4"), ("Patient", "name=x"), ("Condition", "subject=Patient/p1")] {
            let pairs = vec![(q.split('=').next().unwrap().to_string(), q.split('=').nth(1).unwrap().to_string())];
            let mut req = hale_search::parse::parse(&ResourceType::parse(ty).unwrap(), &pairs, false).unwrap();
            req.restriction = Some(r.clone());
            let s = hale_store::sql::SearchSql::build(&hale_store::sql::SQLITE, &req, 10, true).unwrap();
            for stmt in [s.page.unwrap(), s.count.unwrap()] {
                let plan = plan_of(&stmt.sql, &stmt.args);
                let scans: Vec<&String> = plan.iter().filter(|l| l.starts_with("SCAN ")).collect();
                assert!(scans.is_empty(), "{ty}?{q}: {scans:?} in {plan:#?}");
                // the candidate's own references: its rows of the owner index, never a
                // range of every reference of the type (which made a clinician's chart
                // searches take seconds on a 300,000-resource store)
                let own: Vec<&String> = plan.iter().filter(|l| l.starts_with("SEARCH c ")).collect();
                assert!(ty == "Patient" || !own.is_empty(), "{plan:#?}");
                for l in own {
                    assert!(l.contains("search_reference_owner") && l.contains("res_id=?"), "{ty}?{q}: {l}");
                }
                // encounters and care teams: one probe by the patient key
                let rt: Vec<&String> = plan.iter().filter(|l| l.starts_with("SEARCH rt ")).collect();
                assert!(!rt.is_empty(), "{plan:#?}");
                for l in rt {
                    assert!(
                        l.contains("search_token_patient") && l.contains("patient=?") && l.contains("code=?"),
                        "{l}"
                    );
                }
            }
        }
    }

    #[test]
    fn migration_14_relates_the_patients_of_stored_encounters_and_care_teams() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("old.db")).unwrap();
        c.execute_batch("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
            .unwrap();
        for (version, sql) in &MIGRATIONS[..13] {
            c.execute_batch(sql).unwrap();
            c.execute("INSERT INTO schema_migrations VALUES (?1, 0)", [version]).unwrap();
        }
        // reference rows as a store at schema 13 wrote them
        c.execute_batch(
            "INSERT INTO search_reference (res_type, res_id, param, target_type, target_id) VALUES
               ('Encounter', 'e1', 'service-provider', 'Organization', 'o1'), ('Encounter', 'e1', 'patient', 'Patient', 'a'),
               ('Encounter', 'e2', 'service-provider', 'Organization', 'o2'),
               ('CareTeam', 'c1', 'participant', 'Practitioner', 'dr'), ('CareTeam', 'c1', 'participant', 'Patient', 'a'),
               ('CareTeam', 'c1', 'participant', 'Organization', 'o3'), ('CareTeam', 'c1', 'patient', 'Patient', 'a'),
               ('Observation', 'x', 'performer', 'Organization', 'o1'), ('Observation', 'x', 'patient', 'Patient', 'a'),
               ('Encounter', 'e3', 'service-provider', 'Organization', 'o1'), ('Encounter', 'e3', 'patient', 'Patient', 'b'),
               ('Encounter', 'e4', 'service-provider', 'Organization', 'o1'), ('Encounter', 'e4', 'patient', 'Patient', 'b'),
               ('CareTeam', 'c2', 'participant', 'Organization', 'o1'), ('CareTeam', 'c2', 'patient', 'Patient', 'b'),
               ('CareTeam', 'c3', 'participant', 'Organization', 'o1'), ('CareTeam', 'c3', 'patient', 'Patient', 'b');
             -- a cancelled and an entered-in-error Encounter, an entered-in-error CareTeam relate
             -- nobody; a cancelled CareTeam is no status of CareTeam's and does not stop one
             INSERT INTO search_token (res_type, res_id, param, system, code, patient) VALUES
               ('Encounter', 'e1', 'status', 'http://hl7.org/fhir/encounter-status', 'finished', 'a'),
               ('Encounter', 'e3', 'status', 'http://hl7.org/fhir/encounter-status', 'cancelled', 'b'),
               ('Encounter', 'e4', 'status', 'http://hl7.org/fhir/encounter-status', 'entered-in-error', 'b'),
               ('CareTeam', 'c2', 'status', 'http://hl7.org/fhir/care-team-status', 'entered-in-error', 'b'),
               ('CareTeam', 'c3', 'status', 'http://hl7.org/fhir/care-team-status', 'cancelled', 'b');",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let rows: Vec<(String, String, String, Option<String>)> = c
            .prepare(
                "SELECT res_id, system, code, patient FROM search_token WHERE param = '_hale-related'
                 ORDER BY res_id, code",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let want = [
            ("c1", "Practitioner", "dr", Some("a")),
            ("c1", "Organization", "o3", Some("a")),
            ("c3", "Organization", "o1", Some("b")),
            ("e1", "Organization", "o1", Some("a")),
            ("e2", "Organization", "o2", None),
        ];
        let want: Vec<(String, String, String, Option<String>)> = want
            .iter()
            .map(|(i, s, c, p)| (i.to_string(), s.to_string(), c.to_string(), p.map(String::from)))
            .collect();
        assert_eq!(rows, want);
        // the same rows the indexer writes today
        let enc = serde_json::json!({"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},
            "subject":{"reference":"Patient/a"},"serviceProvider":{"reference":"Organization/o1"}});
        let related: Vec<(Option<String>, String)> = hale_search::extract::extract(&enc)
            .tokens
            .into_iter()
            .filter(|t| t.param == hale_search::extract::RELATED)
            .map(|t| (t.system, t.code))
            .collect();
        assert_eq!(related, [(Some("Organization".to_string()), "o1".to_string())]);
        for status in ["cancelled", "entered-in-error"] {
            let mut enc = enc.clone();
            enc["status"] = serde_json::json!(status);
            assert!(
                !hale_search::extract::extract(&enc).tokens.iter().any(|t| t.param == hale_search::extract::RELATED)
            );
        }
    }

    #[test]
    fn migration_8_gives_existing_token_rows_their_patient_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("old.db")).unwrap();
        c.execute_batch("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
            .unwrap();
        for (version, sql) in &MIGRATIONS[..7] {
            c.execute_batch(sql).unwrap();
            c.execute("INSERT INTO schema_migrations VALUES (?1, 0)", [version]).unwrap();
        }
        // rows as a store at schema 7 wrote them: an Appointment of two patients, an
        // Observation of one, a Patient of none
        c.execute_batch(
            "INSERT INTO search_reference (res_type, res_id, param, target_type, target_id) VALUES
               ('Appointment', 'ap', 'patient', 'Patient', 'b'), ('Appointment', 'ap', 'patient', 'Patient', 'a'),
               ('Appointment', 'ap', 'actor', 'Practitioner', 'p'), ('Observation', 'o', 'patient', 'Patient', 'a'),
               ('Observation', 'o', 'subject', 'Patient', 'a');
             INSERT INTO search_token (res_type, res_id, param, system, code) VALUES
               ('Appointment', 'ap', 'status', NULL, 'booked'), ('Observation', 'o', 'category', 's', 'vital-signs'),
               ('Observation', 'o', 'code', 's', '1'), ('Patient', 'a', 'gender', NULL, 'female');",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let rows: Vec<(String, String, Option<String>)> = c
            .prepare("SELECT res_id, code, patient FROM search_token ORDER BY res_id, code, patient")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let want = [
            ("a", "female", None),
            ("ap", "booked", Some("a")),
            ("ap", "booked", Some("b")),
            ("o", "1", Some("a")),
            ("o", "vital-signs", Some("a")),
        ];
        let want: Vec<(String, String, Option<String>)> =
            want.iter().map(|(i, c, p)| (i.to_string(), c.to_string(), p.map(String::from))).collect();
        assert_eq!(rows, want);
    }

    #[tokio::test]
    async fn versions_history_and_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("h.db")).unwrap();
        let CreateOutcome::Created(c) = s.create(&ty(), patient("a"), None, audit()).await.unwrap() else { panic!() };
        assert_eq!(c.version, VersionId::FIRST);
        let u = s.update(&ty(), &c.id, patient("b"), Some(VersionId::FIRST), audit()).await.unwrap();
        assert_eq!((u.stored.version.get(), u.created), (2, false));
        let conflict = s.update(&ty(), &c.id, patient("c"), Some(VersionId::FIRST), audit()).await;
        assert!(matches!(conflict, Err(Error::VersionConflict { .. })));
        let d = s.delete(&ty(), &c.id, None, audit()).await.unwrap().unwrap();
        assert!(d.is_deleted());
        assert_eq!(d.version.get(), 3);
        assert!(s.read(&ty(), &c.id).await.unwrap().unwrap().is_deleted());
        let v1 = s.vread(&ty(), &c.id, VersionId::FIRST).await.unwrap().unwrap();
        assert!(v1.body.unwrap().contains("\"family\":\"a\""));
        let h = s
            .history(
                &HistoryScope::Instance(ty(), c.id.clone()),
                &HistoryQuery { since: None, count: 2, cursor: None, restriction: None },
            )
            .await
            .unwrap();
        assert_eq!(h.total, Some(3));
        assert_eq!(h.entries.iter().map(|e| e.version.get()).collect::<Vec<_>>(), [3, 2]);
        let h2 = s
            .history(
                &HistoryScope::Instance(ty(), c.id.clone()),
                &HistoryQuery { since: None, count: 2, cursor: h.next, restriction: None },
            )
            .await
            .unwrap();
        assert_eq!(h2.entries.iter().map(|e| e.version.get()).collect::<Vec<_>>(), [1]);
        assert!(h2.next.is_none());
        // a re-create after delete continues the version sequence
        let again = s.update(&ty(), &c.id, patient("d"), None, audit()).await.unwrap();
        assert_eq!((again.stored.version.get(), again.created), (4, true));
    }

    /// Commits land in the WAL; only a checkpoint copies pages into the database file.
    /// The writer's own checkpoint waits for 32,768 pages, so a file that grows after a
    /// few hundred pages of writes grew by the checkpointer thread.
    #[tokio::test]
    async fn the_checkpointer_copies_committed_pages_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let s = SqliteStore::open(&path).unwrap();
        let settled = |wait_ms: u64| {
            std::thread::sleep(std::time::Duration::from_millis(wait_ms));
            std::fs::metadata(&path).unwrap().len()
        };
        // the migrations' pages are checkpointed after the first commit's nudge
        s.create(&ty(), patient("first"), None, audit()).await.unwrap();
        let before = settled(1_000);
        let text = "x".repeat(4_000);
        for i in 0..200 {
            s.create(&ty(), patient(&format!("{text}{i}")), None, audit()).await.unwrap();
        }
        let mut after = before;
        for _ in 0..50 {
            after = settled(100);
            if after >= before + 200 * 4_000 {
                break;
            }
        }
        assert!(after >= before + 200 * 4_000, "database file {before} -> {after} bytes: no checkpoint ran");
        let wal = std::fs::metadata(dir.path().join("c.db-wal")).unwrap().len();
        assert!(
            wal < WRITER_AUTOCHECKPOINT as u64 * 4096,
            "the WAL ({wal} bytes) reached the writer's own checkpoint bound, so the growth proves nothing"
        );
    }

    #[tokio::test]
    async fn conditional_create_finds_by_identifier() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("c.db")).unwrap();
        let mut p = patient("a");
        p.index.tokens.push(TokenIndex {
            param: "identifier".into(),
            system: Some("urn:s".into()),
            code: "1".into(),
            text: None,
        });
        let request =
            hale_search::parse::parse(&ty(), &[("identifier".to_string(), "urn:s|1".to_string())], false).unwrap();
        let crit = Criteria { request };
        let CreateOutcome::Created(first) = s.create(&ty(), p.clone(), Some(crit.clone()), audit()).await.unwrap()
        else {
            panic!()
        };
        let CreateOutcome::Existing(again) = s.create(&ty(), p, Some(crit.clone()), audit()).await.unwrap() else {
            panic!()
        };
        assert_eq!(first.id, again.id);
        assert_eq!(s.find(&crit, 10).await.unwrap(), vec![first.id.clone()]);
        s.delete(&ty(), &first.id, None, audit()).await.unwrap();
        assert!(s.find(&crit, 10).await.unwrap().is_empty());
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.db");
        drop(SqliteStore::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.execute("INSERT INTO schema_migrations VALUES (999, 0)", []).unwrap();
        drop(c);
        assert!(matches!(SqliteStore::open(&path), Err(Error::Backend(m)) if m.contains("newer")));
    }
}
