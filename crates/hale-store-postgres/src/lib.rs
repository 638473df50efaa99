//! The PostgreSQL store: the same tables and behaviour as the SQLite store, for several
//! stateless Hale nodes sharing one database.
//!
//! Every write is one transaction (READ COMMITTED) that first takes its locks, always
//! in the same order so that writers never deadlock one another:
//!
//! 1. transaction-scoped advisory locks per resource type, in key order: *shared* for a
//!    type the transaction writes, *exclusive* for a type whose resources a condition
//!    searches (`If-None-Exist`, conditional update and delete, the `NoMatch` and
//!    `OnlyMatch` preconditions of bundles). A conditional operation therefore sees a
//!    stable set of that type's resources, exactly as under SQLite's single writer;
//!    plain writes of a type do not block one another.
//! 2. row locks (`SELECT ... FOR UPDATE`) on the `resources` row of every resource
//!    written, in (type, id) order; a resource that does not exist yet gets a placeholder
//!    row first (`INSERT ... ON CONFLICT DO NOTHING`), so two creates of the same id queue
//!    on it. The placeholder never outlives the transaction without a real version.
//!
//! `UNIQUE (res_type, res_id, version)` backs this up: two nodes can never commit the
//! same version. The locks live in PostgreSQL, never in this process, so they hold
//! across nodes.

// No unwrap or expect on the request path (clippy.toml allows them in tests); the
// few justified exceptions carry an #[allow] with the reason.
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod search;
mod sql;
mod write;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use hale_fhir::{ResourceId, ResourceType, VersionId};
use hale_search::parse::SearchRequest;
use hale_store::{
    AccountKey, AccountRow, AuditQuery, AuditRow, AuditWrite, AuthRecord, ChainLink, ChainedEntry, CreateOutcome,
    Criteria, Error, EverythingQuery, HistoryPage, HistoryQuery, HistoryScope, IndexRows, Instant, Method, NewVersion,
    Precondition, Result, SearchPage, Store, StoredResource, TxOp, TxOutcome, UpdateOutcome,
};
use tokio_postgres::NoTls;

use crate::write::{Current, Writer};

/// Append-only migrations, embedded in the binary. Never edit one that has shipped.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_schema.sql")),
    (2, include_str!("../migrations/0002_leaner_indexes.sql")),
    (3, include_str!("../migrations/0003_token_patient_key.sql")),
    (4, include_str!("../migrations/0004_owner_index_by_resource.sql")),
    (5, include_str!("../migrations/0005_audit.sql")),
    (6, include_str!("../migrations/0006_accounts.sql")),
    (7, include_str!("../migrations/0007_auth.sql")),
    (8, include_str!("../migrations/0008_server_key.sql")),
    (9, include_str!("../migrations/0009_related_rows.sql")),
    (10, include_str!("../migrations/0010_binary_content.sql")),
];

/// The newest schema version this build knows.
pub fn newest_schema() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// Advisory lock key serialising migrations of one database across nodes.
const MIGRATION_LOCK: i64 = 0x4841_4c45_4d49_4752; // "HALEMIGR"

fn backend(e: impl std::fmt::Display) -> Error {
    Error::Backend(e.to_string())
}

/// A database error: lock conflicts the client may retry become `Conflict`, the rest
/// are backend failures (logged, never shown to the client).
fn db(e: tokio_postgres::Error) -> Error {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED => {
            Error::Conflict("The resource was changed concurrently; retry the request".into())
        }
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => {
            Error::Conflict("The resource was changed concurrently; retry the request".into())
        }
        // statement_timeout (see PgStore::open_with)
        Some(c) if *c == SqlState::QUERY_CANCELED => Error::Timeout,
        _ => Error::Backend(match e.as_db_error() {
            Some(d) => format!("{}: {}", d.code().code(), d.message()),
            None => e.to_string(),
        }),
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    url: String,
    meters: Meters,
}

/// The store's timings, for `/metrics` (through the `metrics` crate's global recorder;
/// without one they cost nothing). Labels are fixed words, never a resource.
#[derive(Clone)]
struct Meters {
    /// A read by id or version.
    point_read: metrics::Histogram,
    /// Any other read: search, history, `$everything`, a conditional's match.
    read: metrics::Histogram,
    /// One write or transaction, its commit included.
    write: metrics::Histogram,
    /// How long a request waited for one of the pool's connections.
    pool_wait: metrics::Histogram,
}

impl Meters {
    fn new() -> Self {
        let timing =
            |kind: &'static str| metrics::histogram!("hale_store_seconds", "store" => "postgres", "kind" => kind);
        Meters {
            point_read: timing("point_read"),
            read: timing("read"),
            write: timing("write"),
            pool_wait: metrics::histogram!("hale_store_pool_wait_seconds", "store" => "postgres"),
        }
    }
}

/// A pooled connection lent to one store call of a kind: the time it is held (the
/// call's statements, and its commit for a write) is recorded in that kind's timing
/// when it goes back.
struct Timed {
    conn: deadpool_postgres::Object,
    began: std::time::Instant,
    timing: metrics::Histogram,
}

impl std::ops::Deref for Timed {
    type Target = deadpool_postgres::Object;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for Timed {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        self.timing.record(self.began.elapsed());
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.url).finish()
    }
}

impl PgStore {
    /// Connects (a pool of at most `pool_size` connections), checks the server and runs
    /// pending migrations. Fails clearly when the database cannot be reached or its
    /// schema is newer than this Hale knows.
    pub async fn open(url: &str, pool_size: usize) -> Result<Self> {
        Self::open_with(url, pool_size, Duration::ZERO).await
    }

    /// As [`PgStore::open`], stopping every statement that runs longer than
    /// `statement_timeout` (PostgreSQL's own `statement_timeout`; zero: no limit) with
    /// [`Error::Timeout`]. Migrations run without the limit.
    pub async fn open_with(url: &str, pool_size: usize, statement_timeout: Duration) -> Result<Self> {
        let shown = redact(url);
        let mut cfg = tokio_postgres::Config::from_str(url)
            .map_err(|e| Error::Backend(format!("database_url {shown} is not a PostgreSQL URL: {e}")))?;
        // acknowledged means durable, whatever the server's default
        let mut ours = "-c synchronous_commit=on".to_string();
        if !statement_timeout.is_zero() {
            ours.push_str(&format!(" -c statement_timeout={}", statement_timeout.as_millis()));
        }
        let options = match cfg.get_options() {
            Some(o) if !o.is_empty() => format!("{o} {ours}"),
            _ => ours,
        };
        cfg.options(&options);
        if cfg.get_application_name().is_none() {
            cfg.application_name("hale");
        }
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(Duration::from_secs(10));
        }
        let mgr = Manager::from_config(cfg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(mgr)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(15)))
            .build()
            .map_err(backend)?;
        let store = PgStore { pool, url: shown.clone(), meters: Meters::new() };
        let mut client = store
            .pool
            .get()
            .await
            .map_err(|e| Error::Backend(format!("cannot connect to PostgreSQL at {shown}: {e}")))?;
        let enc: String = client.query_one("SHOW server_encoding", &[]).await.map_err(db)?.get(0);
        if enc != "UTF8" {
            return Err(Error::Backend(format!("the database at {shown} uses encoding {enc}; Hale needs UTF8")));
        }
        let fsync: String = client.query_one("SHOW fsync", &[]).await.map_err(db)?.get(0);
        if fsync != "on" {
            tracing::warn!("PostgreSQL runs with fsync = {fsync}: acknowledged writes may be lost on a crash");
        }
        // a migration may take longer than a request's statement (an index over every row)
        client.batch_execute("SET statement_timeout = 0").await.map_err(db)?;
        migrate(&mut client, &shown).await?;
        client.batch_execute("RESET statement_timeout").await.map_err(db)?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        let began = std::time::Instant::now();
        let got = self.pool.get().await;
        self.meters.pool_wait.record(began.elapsed());
        got.map_err(|e| Error::Backend(format!("cannot get a PostgreSQL connection: {e}")))
    }

    /// A connection for a store call whose time is recorded under `timing`.
    async fn timed(&self, timing: &metrics::Histogram) -> Result<Timed> {
        let conn = self.client().await?;
        Ok(Timed { conn, began: std::time::Instant::now(), timing: timing.clone() })
    }
}

async fn migrate(client: &mut deadpool_postgres::Object, shown: &str) -> Result<()> {
    let tx = client.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(db)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await
    .map_err(db)?;
    let current: i64 =
        tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await.map_err(db)?.get(0);
    let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if current > known {
        return Err(Error::Backend(format!(
            "the database at {shown} is at schema version {current}, newer than this Hale knows ({known}); upgrade Hale"
        )));
    }
    for (version, sql) in MIGRATIONS {
        if *version > current {
            tx.batch_execute(sql).await.map_err(db)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[version, &Instant::now().millis()],
            )
            .await
            .map_err(db)?;
            tracing::info!(version, "applied PostgreSQL migration");
        }
    }
    tx.commit().await.map_err(db)
}

use hale_store::sql::VERSION_COLUMNS;

fn row_to_stored(r: &tokio_postgres::Row) -> Result<(i64, StoredResource)> {
    let seq: i64 = r.try_get(0).map_err(db)?;
    let ty: &str = r.try_get(1).map_err(db)?;
    let id: &str = r.try_get(2).map_err(db)?;
    let version: i64 = r.try_get(3).map_err(db)?;
    let lu: i64 = r.try_get(4).map_err(db)?;
    let method: &str = r.try_get(5).map_err(db)?;
    let body: Option<String> = r.try_get(6).map_err(db)?;
    let bad = |what: &str| Error::Backend(format!("bad stored {what}"));
    Ok((
        seq,
        StoredResource {
            resource_type: ResourceType::parse(ty).ok_or_else(|| bad("res_type"))?,
            id: ResourceId::parse(id).ok_or_else(|| bad("res_id"))?,
            version: VersionId::new(version as u64),
            last_updated: Instant::from_millis(lu),
            method: Method::parse(method).ok_or_else(|| bad("method"))?,
            body,
        },
    ))
}

/// FNV-1a, for advisory lock keys.
fn key(text: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// The locks a write transaction takes before it reads anything.
#[derive(Default)]
struct Locks {
    /// type lock key -> exclusive?
    types: BTreeMap<i64, bool>,
    /// (type, id) of resources written; `true` when a placeholder row may be needed
    rows: BTreeMap<(String, String), bool>,
}

impl Locks {
    fn write_type(&mut self, ty: &str) {
        self.types.entry(key(&format!("hale-type:{ty}"))).or_insert(false);
    }
    /// Exclusive locks on every type the criteria search (chains and `_has` included).
    fn search_types(&mut self, req: &SearchRequest) {
        fn clause_types(c: &hale_search::parse::Clause, out: &mut Vec<String>) {
            if let Some(chain) = &c.chain {
                out.extend(chain.target_types.iter().cloned());
                clause_types(&chain.inner, out);
            }
            if let Some(has) = &c.has {
                out.push(has.source_type.clone());
                clause_types(&has.inner, out);
            }
        }
        let mut types = vec![req.resource_type.to_string()];
        for c in &req.clauses {
            clause_types(c, &mut types);
        }
        for t in types {
            self.types.insert(key(&format!("hale-type:{t}")), true);
        }
    }
    fn row(&mut self, ty: &str, id: &str, create: bool) {
        *self.rows.entry((ty.to_string(), id.to_string())).or_insert(false) |= create;
        self.write_type(ty);
    }

    async fn take(&self, c: &impl GenericClient) -> Result<()> {
        if !self.types.is_empty() {
            let keys: Vec<i64> = self.types.keys().copied().collect();
            let exclusive: Vec<bool> = self.types.values().copied().collect();
            c.execute(
                "SELECT CASE WHEN x THEN pg_advisory_xact_lock(k) ELSE pg_advisory_xact_lock_shared(k) END \
                 FROM unnest($1::bigint[], $2::boolean[]) AS t(k, x)",
                &[&keys, &exclusive],
            )
            .await
            .map_err(db)?;
        }
        let created: Vec<(&str, &str)> =
            self.rows.iter().filter(|(_, create)| **create).map(|((t, i), _)| (t.as_str(), i.as_str())).collect();
        let all: Vec<(&str, &str)> = self.rows.keys().map(|(t, i)| (t.as_str(), i.as_str())).collect();
        lock_rows(c, &created, &all).await
    }
}

/// Locks the `resources` rows of `all`, in (type, id) order, after inserting placeholder
/// rows for those of `created` that do not exist yet (the write that follows replaces
/// them, or the transaction rolls back). Both lists are sorted, so two writers meet
/// their rows in the same order.
async fn lock_rows(c: &impl GenericClient, created: &[(&str, &str)], all: &[(&str, &str)]) -> Result<()> {
    fn columns<'a>(keys: &[(&'a str, &'a str)]) -> (Vec<&'a str>, Vec<&'a str>) {
        keys.iter().copied().unzip()
    }
    if !created.is_empty() {
        let (types, ids) = columns(created);
        let s = c
            .prepare_cached(
                "INSERT INTO resources (res_type, res_id, version, seq, deleted) \
                 SELECT t, i, 0, 0, 1 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(t, i, n) ORDER BY n \
                 ON CONFLICT (res_type, res_id) DO NOTHING",
            )
            .await
            .map_err(db)?;
        c.execute(&s, &[&types, &ids]).await.map_err(db)?;
    }
    if !all.is_empty() {
        let (types, ids) = columns(all);
        let s = c
            .prepare_cached(
                "SELECT 1 FROM resources WHERE (res_type, res_id) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
                 ORDER BY res_type, res_id FOR UPDATE",
            )
            .await
            .map_err(db)?;
        c.query(&s, &[&types, &ids]).await.map_err(db)?;
    }
    Ok(())
}

async fn read_current(c: &impl GenericClient, ty: &str, id: &str) -> Result<Option<StoredResource>> {
    let s = c
        .prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM resources r JOIN resource_versions v ON v.seq = r.seq \
             WHERE r.res_type = $1 AND r.res_id = $2"
        ))
        .await
        .map_err(db)?;
    match c.query_opt(&s, &[&ty, &id]).await.map_err(db)? {
        Some(r) => Ok(Some(row_to_stored(&r)?.1)),
        None => Ok(None),
    }
}

async fn find_ids(c: &impl GenericClient, criteria: &Criteria, limit: usize) -> Result<Vec<ResourceId>> {
    Ok(search::search(c, &criteria.request, limit, false).await?.entries.into_iter().map(|e| e.id).collect())
}

/// Checks the preconditions of one write; a search sees every write queued before it.
async fn check_preconditions<C: GenericClient>(
    w: &mut Writer<'_, C>,
    target: Option<(&ResourceType, &ResourceId)>,
    prev: Current,
    preconditions: &[Precondition],
) -> Result<()> {
    for p in preconditions {
        let found = match p.search() {
            Some((criteria, limit)) => {
                w.flush().await?;
                find_ids(w.client(), criteria, limit).await?
            }
            None => Vec::new(),
        };
        p.check(target, prev, &found)?;
    }
    Ok(())
}

fn precondition_locks(locks: &mut Locks, preconditions: &[Precondition]) {
    for p in preconditions {
        match p {
            Precondition::NoMatch(c) | Precondition::OnlyMatch(c, _) => locks.search_types(&c.request),
            Precondition::IfMatch(_) => {}
        }
    }
}

async fn run_op<C: GenericClient>(w: &mut Writer<'_, C>, op: TxOp) -> Result<TxOutcome> {
    match op {
        TxOp::Write { ty, id, method, new, preconditions } => {
            let prev = w.current(ty.as_str(), id.as_str()).await?;
            check_preconditions(w, Some((&ty, &id)), prev, &preconditions).await?;
            let created = prev.is_none_or(|p| p.1);
            let stored = w.write(&ty, &id, prev, method, Some(*new)).await?;
            Ok(TxOutcome::Written { stored, created })
        }
        TxOp::Delete { ty, id, preconditions } => {
            let prev = w.current(ty.as_str(), id.as_str()).await?;
            check_preconditions(w, Some((&ty, &id)), prev, &preconditions).await?;
            match prev {
                Some((_, false, _)) => {
                    w.write(&ty, &id, prev, Method::Delete, None).await.map(|s| TxOutcome::Deleted(Some(s)))
                }
                _ => Ok(TxOutcome::Deleted(None)),
            }
        }
        TxOp::Check { preconditions } => {
            check_preconditions(w, None, None, &preconditions).await?;
            Ok(TxOutcome::Checked)
        }
        TxOp::Record(record) => {
            let now = Instant::now().millis();
            let c = w.client();
            c.execute(
                "DELETE FROM auth_record WHERE kind = $1 AND key = $2 AND expires IS NOT NULL AND expires < $3",
                &[&record.kind, &record.key, &now],
            )
            .await
            .map_err(db)?;
            let n = c
                .execute(
                    "INSERT INTO auth_record (kind, key, body, expires) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (kind, key) DO NOTHING",
                    &[&record.kind, &record.key, &record.body, &record.expires],
                )
                .await
                .map_err(db)?;
            match n {
                1 => Ok(TxOutcome::Recorded),
                _ => Err(Error::Conflict(format!("{} {} is already recorded", record.kind, record.key))),
            }
        }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn read(&self, ty: &ResourceType, id: &ResourceId) -> Result<Option<StoredResource>> {
        let c = self.timed(&self.meters.point_read).await?;
        read_current(&*c, ty.as_str(), id.as_str()).await
    }

    async fn vread(&self, ty: &ResourceType, id: &ResourceId, version: VersionId) -> Result<Option<StoredResource>> {
        let c = self.timed(&self.meters.point_read).await?;
        let s = c
            .prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM resource_versions v \
                 WHERE v.res_type = $1 AND v.res_id = $2 AND v.version = $3"
            ))
            .await
            .map_err(db)?;
        match c.query_opt(&s, &[&ty.as_str(), &id.as_str(), &(version.get() as i64)]).await.map_err(db)? {
            Some(r) => Ok(Some(row_to_stored(&r)?.1)),
            None => Ok(None),
        }
    }

    async fn content_len(&self, id: &ResourceId, version: VersionId) -> Result<Option<u64>> {
        let c = self.timed(&self.meters.point_read).await?;
        let s = c.prepare_cached(&sql::number_marks(hale_store::sql::CONTENT_LEN)).await.map_err(db)?;
        let r = c.query_one(&s, &[&id.as_str(), &(version.get() as i64)]).await.map_err(db)?;
        Ok(r.get::<_, Option<i64>>(0).map(|n| n as u64))
    }

    async fn content_part(&self, id: &ResourceId, version: VersionId, offset: u64) -> Result<Option<(u64, Vec<u8>)>> {
        let c = self.timed(&self.meters.point_read).await?;
        let s = c.prepare_cached(&sql::number_marks(hale_store::sql::CONTENT_PART)).await.map_err(db)?;
        let found = c
            .query_opt(&s, &[&id.as_str(), &(version.get() as i64), &(offset as i64)])
            .await
            .map_err(db)?
            .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, Vec<u8>>(1)));
        Ok(found.filter(|(at, bytes)| offset < at + bytes.len() as u64))
    }

    async fn create(
        &self,
        ty: &ResourceType,
        new: NewVersion,
        if_none_exist: Option<Criteria>,
        audit: AuditWrite,
    ) -> Result<CreateOutcome> {
        let mut c = self.timed(&self.meters.write).await?;
        let tx = c.transaction().await.map_err(db)?;
        let mut locks = Locks::default();
        locks.write_type(ty.as_str());
        if let Some(criteria) = &if_none_exist {
            locks.search_types(&criteria.request);
        }
        locks.take(&tx).await?;
        if let Some(criteria) = &if_none_exist {
            let found = find_ids(&tx, criteria, 2).await?;
            match found.len() {
                0 => {}
                1 => {
                    let existing = read_current(&tx, ty.as_str(), found[0].as_str())
                        .await?
                        .ok_or_else(|| Error::Backend("matched resource vanished".into()))?;
                    insert_audit(&tx, &audit.row(&[&existing])).await?;
                    tx.commit().await.map_err(db)?;
                    return Ok(CreateOutcome::Existing(existing));
                }
                n => return Err(Error::MultipleMatches(n)),
            }
        }
        // a fresh id (UUID v7): no other writer can hold it
        let id = ResourceId::generate();
        let mut w = Writer::new(&tx);
        let stored = w.write(ty, &id, None, Method::Post, Some(new)).await?;
        w.flush().await?;
        insert_audit(&tx, &audit.row(&[&stored])).await?;
        tx.commit().await.map_err(db)?;
        Ok(CreateOutcome::Created(stored))
    }

    async fn update(
        &self,
        ty: &ResourceType,
        id: &ResourceId,
        new: NewVersion,
        if_match: Option<VersionId>,
        audit: AuditWrite,
    ) -> Result<UpdateOutcome> {
        let mut c = self.timed(&self.meters.write).await?;
        let tx = c.transaction().await.map_err(db)?;
        let mut locks = Locks::default();
        locks.row(ty.as_str(), id.as_str(), true);
        locks.take(&tx).await?;
        let mut w = Writer::new(&tx);
        let prev = w.current(ty.as_str(), id.as_str()).await?;
        hale_store::check_if_match(ty, id, prev.map(|p| (p.0, p.1)), if_match)?;
        let created = prev.is_none_or(|p| p.1);
        let stored = w.write(ty, id, prev, Method::Put, Some(new)).await?;
        w.flush().await?;
        insert_audit(&tx, &audit.row(&[&stored])).await?;
        tx.commit().await.map_err(db)?;
        Ok(UpdateOutcome { stored, created })
    }

    async fn conditional_update(
        &self,
        criteria: Criteria,
        id: Option<ResourceId>,
        new: NewVersion,
        if_match: Option<VersionId>,
        audit: AuditWrite,
    ) -> Result<UpdateOutcome> {
        let mut c = self.timed(&self.meters.write).await?;
        let tx = c.transaction().await.map_err(db)?;
        let ty = criteria.request.resource_type.clone();
        let mut locks = Locks::default();
        locks.search_types(&criteria.request);
        locks.take(&tx).await?;
        let found = find_ids(&tx, &criteria, 2).await?;
        let target = match (found.len(), id) {
            (0, Some(id)) => id,
            (0, None) => ResourceId::generate(),
            (1, Some(id)) if id != found[0] => return Err(Error::IdMismatch(id.to_string())),
            (1, _) => found[0].clone(),
            (n, _) => return Err(Error::MultipleMatches(n)),
        };
        // the type is locked exclusively: the row lock comes after, as in every writer
        let key = [(ty.as_str(), target.as_str())];
        lock_rows(&tx, &key, &key).await?;
        let mut w = Writer::new(&tx);
        let prev = w.current(ty.as_str(), target.as_str()).await?;
        hale_store::check_if_match(&ty, &target, prev.map(|p| (p.0, p.1)), if_match)?;
        let created = prev.is_none_or(|p| p.1);
        let method = if prev.is_none() && found.is_empty() { Method::Post } else { Method::Put };
        let stored = w.write(&ty, &target, prev, method, Some(new)).await?;
        w.flush().await?;
        insert_audit(&tx, &audit.row(&[&stored])).await?;
        tx.commit().await.map_err(db)?;
        Ok(UpdateOutcome { stored, created })
    }

    async fn delete(
        &self,
        ty: &ResourceType,
        id: &ResourceId,
        if_match: Option<VersionId>,
        audit: AuditWrite,
    ) -> Result<Option<StoredResource>> {
        let mut c = self.timed(&self.meters.write).await?;
        let tx = c.transaction().await.map_err(db)?;
        let mut locks = Locks::default();
        locks.row(ty.as_str(), id.as_str(), false);
        locks.take(&tx).await?;
        let mut w = Writer::new(&tx);
        let prev = w.current(ty.as_str(), id.as_str()).await?;
        hale_store::check_if_match(ty, id, prev.map(|p| (p.0, p.1)), if_match)?;
        let out = match prev {
            Some((_, false, _)) => Some(w.write(ty, id, prev, Method::Delete, None).await?),
            _ => None,
        };
        w.flush().await?;
        insert_audit(&tx, &audit.row(&out.iter().collect::<Vec<_>>())).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn conditional_delete(&self, criteria: Criteria, audit: AuditWrite) -> Result<Option<StoredResource>> {
        let mut c = self.timed(&self.meters.write).await?;
        let tx = c.transaction().await.map_err(db)?;
        let ty = criteria.request.resource_type.clone();
        let mut locks = Locks::default();
        locks.search_types(&criteria.request);
        locks.take(&tx).await?;
        let found = find_ids(&tx, &criteria, 2).await?;
        let out = match found.len() {
            0 => None,
            1 => {
                lock_rows(&tx, &[], &[(ty.as_str(), found[0].as_str())]).await?;
                let mut w = Writer::new(&tx);
                let prev = w.current(ty.as_str(), found[0].as_str()).await?;
                let out = w.write(&ty, &found[0], prev, Method::Delete, None).await?;
                w.flush().await?;
                Some(out)
            }
            n => return Err(Error::MultipleMatches(n)),
        };
        insert_audit(&tx, &audit.row(&out.iter().collect::<Vec<_>>())).await?;
        tx.commit().await.map_err(db)?;
        Ok(out)
    }

    async fn find(&self, criteria: &Criteria, limit: usize) -> Result<Vec<ResourceId>> {
        let c = self.timed(&self.meters.read).await?;
        find_ids(&*c, criteria, limit).await
    }

    async fn replace_index(&self, items: Vec<(ResourceType, ResourceId, VersionId, IndexRows)>) -> Result<usize> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let mut locks = Locks::default();
        for (ty, id, _, _) in &items {
            locks.row(ty.as_str(), id.as_str(), false);
        }
        locks.take(&tx).await?;
        let mut w = Writer::new(&tx);
        let keys: Vec<(&str, &str)> = items.iter().map(|(t, i, _, _)| (t.as_str(), i.as_str())).collect();
        w.prefetch(&keys).await?;
        let mut fresh = Vec::new();
        for (ty, id, version, rows) in &items {
            // only if the version indexed is still the current one
            if let Some((v, false, _)) = w.current(ty.as_str(), id.as_str()).await?
                && v == *version
            {
                fresh.push((ty.as_str(), id.as_str(), rows));
            }
        }
        write::reindex(&tx, &fresh).await?;
        let n = fresh.len();
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    async fn transaction(
        &self,
        ops: Vec<TxOp>,
        audit: AuditWrite,
    ) -> std::result::Result<Vec<TxOutcome>, (usize, Error)> {
        let mut c = self.timed(&self.meters.write).await.map_err(|e| (0, e))?;
        let tx = c.transaction().await.map_err(|e| (0, db(e)))?;
        let mut locks = Locks::default();
        // creates under fresh ids (UUID v7, made by the caller): no other writer can hold
        // them, so they need no row lock and have no current version
        let mut fresh: Vec<(&str, &str)> = Vec::new();
        for op in &ops {
            match op {
                TxOp::Write { ty, id, method: Method::Post, preconditions, .. } => {
                    locks.write_type(ty.as_str());
                    fresh.push((ty.as_str(), id.as_str()));
                    precondition_locks(&mut locks, preconditions);
                }
                TxOp::Write { ty, id, preconditions, .. } => {
                    locks.row(ty.as_str(), id.as_str(), true);
                    precondition_locks(&mut locks, preconditions);
                }
                TxOp::Delete { ty, id, preconditions } => {
                    locks.row(ty.as_str(), id.as_str(), false);
                    precondition_locks(&mut locks, preconditions);
                }
                TxOp::Check { preconditions } => precondition_locks(&mut locks, preconditions),
                TxOp::Record(_) => {}
            }
        }
        locks.take(&tx).await.map_err(|e| (0, e))?;
        let mut w = Writer::new(&tx);
        let keys: Vec<(&str, &str)> = locks.rows.keys().map(|(t, i)| (t.as_str(), i.as_str())).collect();
        w.prefetch(&keys).await.map_err(|e| (0, e))?;
        for (ty, id) in fresh {
            w.assume_new(ty, id);
        }
        let last = ops.len().saturating_sub(1);
        let mut out = Vec::with_capacity(ops.len());
        for (i, op) in ops.into_iter().enumerate() {
            out.push(run_op(&mut w, op).await.map_err(|e| (i, e))?);
        }
        w.flush().await.map_err(|e| (last, e))?;
        insert_audit(&tx, &audit.row(&hale_store::touched(&out))).await.map_err(|e| (last, e))?;
        tx.commit().await.map_err(|e| (0, db(e)))?;
        Ok(out)
    }

    async fn search(&self, request: &SearchRequest, page_size: usize, want_total: bool) -> Result<SearchPage> {
        let c = self.timed(&self.meters.read).await?;
        search::search(&*c, request, page_size, want_total).await
    }

    async fn everything(&self, patient: &ResourceId, query: &EverythingQuery) -> Result<SearchPage> {
        let c = self.timed(&self.meters.read).await?;
        search::everything(&*c, patient.as_str(), query).await
    }

    async fn history(&self, scope: &HistoryScope, query: &HistoryQuery) -> Result<HistoryPage> {
        let c = self.timed(&self.meters.read).await?;
        let q = hale_store::sql::history(&hale_store::sql::POSTGRES, scope, query);
        let total = match &q.count {
            Some(s) => Some(search::query(&*c, s).await?[0].try_get::<_, i64>(0).map_err(db)? as u64),
            None => None,
        };
        let rows = search::query(&*c, &q.page).await?.iter().map(row_to_stored).collect::<Result<Vec<_>>>()?;
        Ok(hale_store::sql::history_page(rows, query.count, total))
    }

    async fn ping(&self) -> Result<()> {
        let c = self.client().await?;
        c.query_one("SELECT 1", &[]).await.map_err(db)?;
        Ok(())
    }

    async fn optimize(&self) -> Result<()> {
        let c = self.client().await?;
        c.batch_execute("ANALYZE").await.map_err(db)
    }

    async fn versions_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, StoredResource)>> {
        let c = self.client().await?;
        let sql = format!("SELECT {VERSION_COLUMNS} FROM resource_versions v WHERE v.seq > $1 ORDER BY v.seq LIMIT $2");
        let rows = c.query(&sql, &[&after, &(limit as i64)]).await.map_err(db)?;
        rows.iter().map(row_to_stored).collect()
    }

    async fn restore(&self, versions: Vec<(StoredResource, IndexRows, Option<hale_store::Content>)>) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        write::restore(&tx, versions).await?;
        tx.commit().await.map_err(db)
    }

    async fn append_audit(&self, rows: Vec<AuditRow>) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        for row in &rows {
            insert_audit(&tx, row).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn chain_audit(&self, limit: usize, link: ChainLink) -> Result<(usize, Option<(i64, Vec<u8>)>)> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        // one chainer at a time across every node; writers never take this lock
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_CHAIN_LOCK]).await.map_err(db)?;
        let head = tx
            .query_opt(
                "SELECT chain_pos, chain_hash FROM audit_log WHERE chain_pos IS NOT NULL ORDER BY chain_pos DESC LIMIT 1",
                &[],
            )
            .await
            .map_err(db)?
            .map(|r| Ok::<_, Error>((r.try_get::<_, i64>(0).map_err(db)?, r.try_get::<_, Vec<u8>>(1).map_err(db)?)))
            .transpose()?;
        let pending = tx
            .query("SELECT seq, body FROM audit_log WHERE chain_pos IS NULL ORDER BY seq LIMIT $1", &[&(limit as i64)])
            .await
            .map_err(db)?;
        let (mut pos, mut prev) = match &head {
            Some((p, h)) => {
                (*p, <[u8; 32]>::try_from(h.as_slice()).map_err(|_| backend("an audit chain hash is not 32 bytes"))?)
            }
            None => (0, [0u8; 32]),
        };
        let (mut seqs, mut poss, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
        for r in &pending {
            let seq: i64 = r.try_get(0).map_err(db)?;
            let body: &str = r.try_get(1).map_err(db)?;
            pos += 1;
            prev = link(&prev, pos, seq, body);
            seqs.push(seq);
            poss.push(pos);
            hashes.push(prev.to_vec());
        }
        if !seqs.is_empty() {
            tx.execute(
                "UPDATE audit_log a SET chain_pos = u.pos, chain_hash = u.hash
                 FROM unnest($1::bigint[], $2::bigint[], $3::bytea[]) AS u(seq, pos, hash) WHERE a.seq = u.seq",
                &[&seqs, &poss, &hashes],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        let head = if seqs.is_empty() { head } else { Some((pos, prev.to_vec())) };
        Ok((seqs.len(), head))
    }

    async fn audit_chain(&self, after: i64, limit: usize) -> Result<Vec<ChainedEntry>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT chain_pos, seq, chain_hash, body FROM audit_log WHERE chain_pos > $1 ORDER BY chain_pos LIMIT $2",
                &[&after, &(limit as i64)],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(ChainedEntry {
                    pos: r.try_get(0).map_err(db)?,
                    seq: r.try_get(1).map_err(db)?,
                    hash: r.try_get(2).map_err(db)?,
                    body: r.try_get(3).map_err(db)?,
                })
            })
            .collect()
    }

    async fn audit_unchained(&self) -> Result<u64> {
        let c = self.client().await?;
        let r = c.query_one("SELECT COUNT(*) FROM audit_log WHERE chain_pos IS NULL", &[]).await.map_err(db)?;
        Ok(r.try_get::<_, i64>(0).map_err(db)? as u64)
    }

    async fn put_account(&self, account: AccountRow, create: bool, audit: AuditRow) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let n = if create {
            tx.execute(
                "INSERT INTO account (id, username, body) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&account.id, &account.username, &account.body],
            )
            .await
            .map_err(db)?
        } else {
            let clash = tx
                .query_opt("SELECT id FROM account WHERE username = $1 AND id <> $2", &[&account.username, &account.id])
                .await
                .map_err(db)?;
            if clash.is_some() {
                0
            } else {
                tx.execute(
                    "UPDATE account SET username = $2, body = $3 WHERE id = $1",
                    &[&account.id, &account.username, &account.body],
                )
                .await
                .map_err(db)?
            }
        };
        if n != 1 {
            return Err(Error::Conflict(if create {
                format!("the user name '{}' is taken", account.username)
            } else {
                format!("the account '{}' cannot take that user name", account.id)
            }));
        }
        insert_audit(&tx, &audit).await?;
        tx.commit().await.map_err(db)
    }

    async fn account(&self, key: AccountKey<'_>) -> Result<Option<AccountRow>> {
        let c = self.client().await?;
        let (sql, value) = match key {
            AccountKey::Id(v) => ("SELECT id, username, body FROM account WHERE id = $1", v),
            AccountKey::Username(v) => ("SELECT id, username, body FROM account WHERE username = $1", v),
        };
        let row = c.query_opt(sql, &[&value]).await.map_err(db)?;
        row.map(|r| {
            Ok(AccountRow {
                id: r.try_get(0).map_err(db)?,
                username: r.try_get(1).map_err(db)?,
                body: r.try_get(2).map_err(db)?,
            })
        })
        .transpose()
    }

    async fn audit_search(&self, query: &AuditQuery) -> Result<Vec<(i64, String)>> {
        let c = self.client().await?;
        let rows = search::query(&c, &query.statement()).await?;
        rows.iter().map(|r| Ok((r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?))).collect()
    }

    async fn put_auth(&self, record: AuthRecord, audit: Option<AuditRow>) -> Result<()> {
        let now = Instant::now().millis();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        tx.execute(
            "DELETE FROM auth_record WHERE kind = $1 AND expires IS NOT NULL AND expires < $2",
            &[&record.kind, &now],
        )
        .await
        .map_err(db)?;
        tx.execute(
            "INSERT INTO auth_record (kind, key, body, expires) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, key) DO UPDATE SET body = EXCLUDED.body, expires = EXCLUDED.expires",
            &[&record.kind, &record.key, &record.body, &record.expires],
        )
        .await
        .map_err(db)?;
        if let Some(a) = &audit {
            insert_audit(&tx, a).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn claim_auth(&self, record: AuthRecord) -> Result<bool> {
        let now = Instant::now().millis();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        tx.execute(
            "DELETE FROM auth_record WHERE kind = $1 AND key = $2 AND expires IS NOT NULL AND expires < $3",
            &[&record.kind, &record.key, &now],
        )
        .await
        .map_err(db)?;
        let n = tx
            .execute(
                "INSERT INTO auth_record (kind, key, body, expires) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (kind, key) DO NOTHING",
                &[&record.kind, &record.key, &record.body, &record.expires],
            )
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(n == 1)
    }

    async fn auth(&self, kind: &str, key: &str) -> Result<Option<AuthRecord>> {
        let c = self.client().await?;
        let now = Instant::now().millis();
        let row = c
            .query_opt(
                "SELECT kind, key, body, expires FROM auth_record WHERE kind = $1 AND key = $2 \
                 AND (expires IS NULL OR expires >= $3)",
                &[&kind, &key, &now],
            )
            .await
            .map_err(db)?;
        row.map(|r| pg_auth_row(&r)).transpose()
    }

    async fn take_auth(&self, kind: &str, key: &str) -> Result<Option<AuthRecord>> {
        let c = self.client().await?;
        let now = Instant::now().millis();
        // one statement: of two concurrent callers only one deletes the row
        let row = c
            .query_opt(
                "DELETE FROM auth_record WHERE kind = $1 AND key = $2 RETURNING kind, key, body, expires",
                &[&kind, &key],
            )
            .await
            .map_err(db)?;
        Ok(row.map(|r| pg_auth_row(&r)).transpose()?.filter(|r| r.expires.is_none_or(|e| e >= now)))
    }

    async fn auths(&self, kind: &str) -> Result<Vec<AuthRecord>> {
        let c = self.client().await?;
        let now = Instant::now().millis();
        let rows = c
            .query(
                "SELECT kind, key, body, expires FROM auth_record WHERE kind = $1 \
                 AND (expires IS NULL OR expires >= $2) ORDER BY key",
                &[&kind, &now],
            )
            .await
            .map_err(db)?;
        rows.iter().map(pg_auth_row).collect()
    }

    async fn count_auths(&self, kind: &str, key_prefix: &str) -> Result<u64> {
        let c = self.client().await?;
        let now = Instant::now().millis();
        let row = c
            .query_one(
                "SELECT COUNT(*) FROM auth_record WHERE kind = $1 AND left(key, char_length($2)) = $2 \
                 AND (expires IS NULL OR expires >= $3)",
                &[&kind, &key_prefix, &now],
            )
            .await
            .map_err(db)?;
        Ok(row.try_get::<_, i64>(0).map_err(db)?.max(0) as u64)
    }

    async fn remove_auths(&self, kind: &str, key_prefix: &str) -> Result<u64> {
        let c = self.client().await?;
        c.execute("DELETE FROM auth_record WHERE kind = $1 AND left(key, char_length($2)) = $2", &[&kind, &key_prefix])
            .await
            .map_err(db)
    }

    async fn server_key(&self, name: &str, candidate: String) -> Result<String> {
        let c = self.client().await?;
        let now = Instant::now().millis();
        // of two nodes inserting at once, one inserts and the other's insert does
        // nothing (it waits for the first to commit); both then read the same row
        c.execute(
            "INSERT INTO server_key (name, body, created) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            &[&name, &candidate, &now],
        )
        .await
        .map_err(db)?;
        let row = c.query_one("SELECT body FROM server_key WHERE name = $1", &[&name]).await.map_err(db)?;
        row.try_get(0).map_err(db)
    }

    async fn append_checkpoint(&self, line: String) -> Result<()> {
        let c = self.client().await?;
        c.execute("INSERT INTO audit_checkpoint (body) VALUES ($1)", &[&line]).await.map_err(db)?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<String>> {
        let c = self.client().await?;
        let rows = c.query("SELECT body FROM audit_checkpoint ORDER BY id", &[]).await.map_err(db)?;
        rows.iter().map(|r| r.try_get(0).map_err(db)).collect()
    }

    async fn accounts(&self) -> Result<Vec<AccountRow>> {
        let c = self.client().await?;
        let rows = c.query("SELECT id, username, body FROM account ORDER BY username", &[]).await.map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(AccountRow {
                    id: r.try_get(0).map_err(db)?,
                    username: r.try_get(1).map_err(db)?,
                    body: r.try_get(2).map_err(db)?,
                })
            })
            .collect()
    }
}

fn pg_auth_row(r: &tokio_postgres::Row) -> Result<AuthRecord> {
    Ok(AuthRecord {
        kind: r.try_get(0).map_err(db)?,
        key: r.try_get(1).map_err(db)?,
        body: r.try_get(2).map_err(db)?,
        expires: r.try_get(3).map_err(db)?,
    })
}

/// The advisory lock the audit chainer holds (any constant no other lock uses).
const AUDIT_CHAIN_LOCK: i64 = 0x4841_4c45_4155_4454; // "HALEAUDT"

/// Inserts one audit entry and the patients it concerns.
async fn insert_audit(c: &impl GenericClient, row: &AuditRow) -> Result<()> {
    let mut patients: Vec<&str> = row.patients.iter().map(String::as_str).collect();
    patients.sort_unstable();
    patients.dedup();
    let s = c
        .prepare_cached(
            "WITH a AS (INSERT INTO audit_log (recorded, action, agent, outcome, body) VALUES ($1, $2, $3, $4, $5)
             RETURNING seq)
             INSERT INTO audit_patient (patient, seq) SELECT p, a.seq FROM a, unnest($6::text[]) AS p",
        )
        .await
        .map_err(db)?;
    c.execute(&s, &[&row.recorded.millis(), &row.action, &row.agent, &row.outcome, &row.body, &patients])
        .await
        .map_err(db)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn lock_keys_differ_by_kind() {
        assert_ne!(key("hale-type:Patient"), key("hale-type:Observation"));
    }
}
