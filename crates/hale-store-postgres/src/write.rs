//! Writes. The versions and index rows of one database transaction are gathered and
//! sent in a few statements, each taking its columns as arrays (`unnest`), instead of
//! several round trips a resource. The statements of one flush are pipelined: sent one
//! after another without waiting for each answer (PostgreSQL runs them in order), so a
//! bundle of 700 resources costs one round trip for its writes, not a dozen.
//!
//! A [`Writer`] knows the current version of every resource the transaction touched
//! (read in one query up front, then kept as it writes), and flushes what it gathered
//! before anything reads the index tables (a search precondition) and at the end.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::task::Poll;

use deadpool_postgres::GenericClient;
use hale_fhir::{ResourceId, ResourceType, VersionId};
use hale_search::index::CompositePart;
use hale_store::{Content, IndexRows, Method, NewVersion, Result, StoredResource, next_version};
use tokio_postgres::types::ToSql;

use crate::db;
use crate::sql::clean;
use hale_store::sql::INDEX_TABLES;

/// Current (version, deleted, last_updated) of a resource, `None` when it never existed.
pub(crate) type Current = Option<(VersionId, bool, i64)>;

type Key = (String, String);

/// One version waiting to be sent.
struct Pending {
    ty: String,
    id: String,
    version: i64,
    at: i64,
    method: &'static str,
    body: Option<String>,
    index: IndexRows,
    /// the resource had index rows of an earlier version, which go first
    stale: bool,
}

/// The writes of one database transaction, whose locks the caller already holds.
pub(crate) struct Writer<'c, C> {
    c: &'c C,
    known: HashMap<Key, Current>,
    pending: Vec<Pending>,
    pending_keys: HashSet<Key>,
}

impl<'c, C: GenericClient> Writer<'c, C> {
    pub(crate) fn new(c: &'c C) -> Self {
        Writer { c, known: HashMap::new(), pending: Vec::new(), pending_keys: HashSet::new() }
    }

    pub(crate) fn client(&self) -> &'c C {
        self.c
    }

    /// Reads the current version of all these resources in one query.
    pub(crate) async fn prefetch(&mut self, keys: &[(&str, &str)]) -> Result<()> {
        let keys: Vec<&(&str, &str)> = keys.iter().filter(|(t, i)| !self.known.contains_key(&key(t, i))).collect();
        if keys.is_empty() {
            return Ok(());
        }
        let types: Vec<&str> = keys.iter().map(|k| k.0).collect();
        let ids: Vec<&str> = keys.iter().map(|k| k.1).collect();
        let s = self
            .c
            .prepare_cached(
                "SELECT r.res_type, r.res_id, r.version, r.deleted, v.last_updated \
                 FROM resources r JOIN resource_versions v ON v.seq = r.seq \
                 WHERE (r.res_type, r.res_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            )
            .await
            .map_err(db)?;
        for (t, i) in &keys {
            self.known.insert(key(t, i), None);
        }
        for r in self.c.query(&s, &[&types, &ids]).await.map_err(db)? {
            let k = (r.get::<_, String>(0), r.get::<_, String>(1));
            let cur = (VersionId::new(r.get::<_, i64>(2) as u64), r.get::<_, i32>(3) != 0, r.get::<_, i64>(4));
            self.known.insert(k, Some(cur));
        }
        Ok(())
    }

    /// Records that `ty/id` has no version yet (a fresh id), without asking.
    pub(crate) fn assume_new(&mut self, ty: &str, id: &str) {
        self.known.entry(key(ty, id)).or_insert(None);
    }

    /// The current version of `ty/id`, as this transaction left it.
    pub(crate) async fn current(&mut self, ty: &str, id: &str) -> Result<Current> {
        if !self.known.contains_key(&key(ty, id)) {
            self.prefetch(&[(ty, id)]).await?;
        }
        Ok(self.known[&key(ty, id)])
    }

    /// Queues one version (a deletion when `new` is `None`) after `prev`; returns what
    /// will be stored.
    pub(crate) async fn write(
        &mut self,
        ty: &ResourceType,
        id: &ResourceId,
        prev: Current,
        method: Method,
        new: Option<NewVersion>,
    ) -> Result<StoredResource> {
        let k = key(ty.as_str(), id.as_str());
        // one statement may not write the same row twice
        if self.pending_keys.contains(&k) {
            self.flush().await?;
        }
        let (version, at, body, index, content) = next_version(id, prev, new);
        if let Some(content) = content {
            // the parts go straight in, one at a time: only the version row waits
            put_content(self.c, id.as_str(), version.get() as i64, &content).await?;
        }
        self.known.insert(k.clone(), Some((version, body.is_none(), at.millis())));
        self.pending_keys.insert(k);
        self.pending.push(Pending {
            ty: ty.to_string(),
            id: id.to_string(),
            version: version.get() as i64,
            at: at.millis(),
            method: method.as_str(),
            body: body.clone(),
            index,
            stale: prev.is_some(),
        });
        Ok(StoredResource { resource_type: ty.clone(), id: id.clone(), version, last_updated: at, method, body })
    }

    /// Sends everything queued.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        let p = std::mem::take(&mut self.pending);
        self.pending_keys.clear();
        send(self.c, &p).await
    }
}

/// Writes versions that never name one resource twice: the version rows and `resources`
/// rows in one statement, then the old index rows out, then the new ones in, pipelined.
async fn send(c: &impl GenericClient, p: &[Pending]) -> Result<()> {
    if p.is_empty() {
        return Ok(());
    }
    let types: Vec<&str> = p.iter().map(|v| v.ty.as_str()).collect();
    let ids: Vec<&str> = p.iter().map(|v| v.id.as_str()).collect();
    let versions: Vec<i64> = p.iter().map(|v| v.version).collect();
    let at: Vec<i64> = p.iter().map(|v| v.at).collect();
    let methods: Vec<&str> = p.iter().map(|v| v.method).collect();
    let bodies: Vec<Option<&str>> = p.iter().map(|v| v.body.as_deref()).collect();
    let stale: Vec<(&str, &str)> = p.iter().filter(|v| v.stale).map(|v| (v.ty.as_str(), v.id.as_str())).collect();
    let owned: Vec<(&str, &str, &IndexRows)> = p.iter().map(|v| (v.ty.as_str(), v.id.as_str(), &v.index)).collect();
    // seq follows the order of the arrays, so history keeps the order of the writes
    let mut statements = vec![Stmt::new(
        "WITH v AS (INSERT INTO resource_versions (res_type, res_id, version, last_updated, method, body) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[]) \
         RETURNING res_type, res_id, version, seq, body IS NULL AS deleted) \
         INSERT INTO resources (res_type, res_id, version, seq, deleted) \
         SELECT res_type, res_id, version, seq, deleted::int FROM v \
         ON CONFLICT (res_type, res_id) DO UPDATE SET version = excluded.version, seq = excluded.seq, \
         deleted = excluded.deleted",
        vec![Box::new(types), Box::new(ids), Box::new(versions), Box::new(at), Box::new(methods), Box::new(bodies)],
    )];
    statements.extend(delete_statement(&stale));
    statements.extend(index_statements(&owned));
    pipeline(c, statements).await
}

/// Writes stored versions verbatim (`hale migrate-store`), in the order given, in as few
/// statements as the versions allow (a resource named twice starts a new batch).
pub(crate) async fn restore(
    c: &impl GenericClient,
    versions: Vec<(StoredResource, IndexRows, Option<Content>)>,
) -> Result<()> {
    let mut batch: Vec<Pending> = Vec::new();
    let mut keys: HashSet<Key> = HashSet::new();
    for (v, index, content) in versions {
        if let Some(content) = content {
            put_content(c, v.id.as_str(), v.version.get() as i64, &content).await?;
        }
        if !keys.insert(key(v.resource_type.as_str(), v.id.as_str())) {
            send(c, &batch).await?;
            batch.clear();
            keys.clear();
            keys.insert(key(v.resource_type.as_str(), v.id.as_str()));
        }
        batch.push(Pending {
            ty: v.resource_type.to_string(),
            id: v.id.to_string(),
            version: v.version.get() as i64,
            at: v.last_updated.millis(),
            method: v.method.as_str(),
            index: if v.body.is_some() { index } else { IndexRows::default() },
            body: v.body,
            stale: true,
        });
    }
    send(c, &batch).await
}

/// Stores a Binary version's content kept apart, a part at a time from its file.
async fn put_content(c: &impl GenericClient, id: &str, version: i64, content: &Content) -> Result<()> {
    let s = c.prepare_cached(&crate::sql::number_marks(hale_store::sql::CONTENT_INSERT)).await.map_err(db)?;
    for part in content.parts()? {
        let (at, bytes) = part?;
        c.execute(&s, &[&id, &version, &(at as i64), &bytes]).await.map_err(db)?;
    }
    Ok(())
}

fn key(ty: &str, id: &str) -> Key {
    (ty.to_string(), id.to_string())
}

/// A statement and its parameters, ready to be pipelined.
struct Stmt<'a> {
    sql: Cow<'static, str>,
    params: Vec<Box<dyn ToSql + Sync + Send + 'a>>,
}

impl<'a> Stmt<'a> {
    fn new(sql: impl Into<Cow<'static, str>>, params: Vec<Box<dyn ToSql + Sync + Send + 'a>>) -> Self {
        Stmt { sql: sql.into(), params }
    }
}

/// Runs statements in one pipeline: each is prepared (from the connection's cache), then
/// every execution is sent, in order, before any answer is awaited. PostgreSQL runs
/// them in the order sent; the first failure is the one reported (the transaction is
/// aborted by it, so the statements after it fail too).
async fn pipeline(c: &impl GenericClient, statements: Vec<Stmt<'_>>) -> Result<()> {
    let mut prepared = Vec::with_capacity(statements.len());
    for s in &statements {
        prepared.push(c.prepare_cached(&s.sql).await.map_err(db)?);
    }
    let params: Vec<Vec<&(dyn ToSql + Sync)>> =
        statements.iter().map(|s| s.params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()).collect();
    let mut runs: Vec<_> = prepared.iter().zip(&params).map(|(s, p)| Some(Box::pin(c.execute(s, p)))).collect();
    // every future is polled in order on each round, so the requests go out in order
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in runs.iter_mut() {
            if let Some(run) = slot {
                match run.as_mut().poll(cx) {
                    Poll::Ready(Ok(_)) => *slot = None,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(db(e))),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(Ok(())) }
    })
    .await
}

/// Replaces the index rows of these resources with the ones given, in one pipeline.
pub(crate) async fn reindex(c: &impl GenericClient, items: &[(&str, &str, &IndexRows)]) -> Result<()> {
    let owners: Vec<(&str, &str)> = items.iter().map(|(t, i, _)| (*t, *i)).collect();
    let mut statements: Vec<Stmt> = delete_statement(&owners).into_iter().collect();
    statements.extend(index_statements(items));
    pipeline(c, statements).await
}

/// The statement deleting every index row of these resources; `None` for none.
fn delete_statement<'a>(owners: &[(&'a str, &'a str)]) -> Option<Stmt<'a>> {
    if owners.is_empty() {
        return None;
    }
    let types: Vec<&str> = owners.iter().map(|o| o.0).collect();
    let ids: Vec<&str> = owners.iter().map(|o| o.1).collect();
    let ctes: Vec<String> = INDEX_TABLES
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!("d{i} AS (DELETE FROM {t} x USING o WHERE x.res_type = o.res_type AND x.res_id = o.res_id)")
        })
        .collect();
    let sql = format!(
        "WITH o AS (SELECT * FROM unnest($1::text[], $2::text[]) AS o(res_type, res_id)), {} SELECT 1",
        ctes.join(", ")
    );
    Some(Stmt::new(sql, vec![Box::new(types), Box::new(ids)]))
}

/// Optional index text as bound (see [`clean`]: borrowed unless it holds a NUL).
fn opt_text(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(clean)
}

/// The rows of one index table over several resources, with their owners' columns.
struct Owned<'a, T> {
    types: Vec<&'a str>,
    ids: Vec<&'a str>,
    rows: Vec<&'a T>,
}

fn owned<'a, T>(items: &[(&'a str, &'a str, &'a IndexRows)], pick: impl Fn(&'a IndexRows) -> &'a [T]) -> Owned<'a, T> {
    let mut o = Owned { types: Vec::new(), ids: Vec::new(), rows: Vec::new() };
    for (ty, id, rows) in items {
        for r in pick(rows) {
            o.types.push(ty);
            o.ids.push(id);
            o.rows.push(r);
        }
    }
    o
}

/// The statements inserting the index rows of these resources, one per non-empty table.
fn index_statements<'a>(items: &[(&'a str, &'a str, &'a IndexRows)]) -> Vec<Stmt<'a>> {
    let mut out = Vec::new();
    // token rows once per patient key of their resource (see IndexRows::patient_keys)
    let mut o = Owned { types: Vec::new(), ids: Vec::new(), rows: Vec::new() };
    let mut keys: Vec<Option<Cow<str>>> = Vec::new();
    for (ty, id, rows) in items {
        let patients = rows.patient_keys();
        for t in &rows.tokens {
            for patient in &patients {
                o.types.push(*ty);
                o.ids.push(*id);
                o.rows.push(t);
                keys.push(patient.map(clean));
            }
        }
    }
    if !o.rows.is_empty() {
        let p: Vec<Cow<str>> = o.rows.iter().map(|t| clean(&t.param)).collect();
        let s: Vec<Option<Cow<str>>> = o.rows.iter().map(|t| opt_text(&t.system)).collect();
        let k: Vec<Cow<str>> = o.rows.iter().map(|t| clean(&t.code)).collect();
        let x: Vec<Option<Cow<str>>> = o.rows.iter().map(|t| opt_text(&t.text)).collect();
        out.push(Stmt::new(
            "INSERT INTO search_token (res_type, res_id, param, system, code, text, patient) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])",
            vec![
                Box::new(o.types),
                Box::new(o.ids),
                Box::new(p),
                Box::new(s),
                Box::new(k),
                Box::new(x),
                Box::new(keys),
            ],
        ));
    }
    let o = owned(items, |r| &r.strings);
    if !o.rows.is_empty() {
        let p: Vec<Cow<str>> = o.rows.iter().map(|t| clean(&t.param)).collect();
        let n: Vec<Cow<str>> = o.rows.iter().map(|t| clean(&t.norm)).collect();
        let e: Vec<Cow<str>> = o.rows.iter().map(|t| clean(&t.exact)).collect();
        out.push(Stmt::new(
            "INSERT INTO search_string (res_type, res_id, param, norm, exact) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])",
            vec![Box::new(o.types), Box::new(o.ids), Box::new(p), Box::new(n), Box::new(e)],
        ));
    }
    let o = owned(items, |r| &r.dates);
    if !o.rows.is_empty() {
        let p: Vec<Cow<str>> = o.rows.iter().map(|t| clean(&t.param)).collect();
        let lo: Vec<i64> = o.rows.iter().map(|t| t.lo).collect();
        let hi: Vec<i64> = o.rows.iter().map(|t| t.hi).collect();
        out.push(Stmt::new(
            "INSERT INTO search_date (res_type, res_id, param, lo, hi) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])",
            vec![Box::new(o.types), Box::new(o.ids), Box::new(p), Box::new(lo), Box::new(hi)],
        ));
    }
    let o = owned(items, |r| &r.numbers);
    if !o.rows.is_empty() {
        let p: Vec<Cow<str>> = o.rows.iter().map(|t| clean(&t.param)).collect();
        let v: Vec<f64> = o.rows.iter().map(|t| t.value).collect();
        out.push(Stmt::new(
            "INSERT INTO search_number (res_type, res_id, param, value) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[])",
            vec![Box::new(o.types), Box::new(o.ids), Box::new(p), Box::new(v)],
        ));
    }
    let o = owned(items, |r| &r.quantities);
    if !o.rows.is_empty() {
        let p: Vec<Cow<str>> = o.rows.iter().map(|t| clean(&t.param)).collect();
        let v: Vec<f64> = o.rows.iter().map(|t| t.value).collect();
        let s: Vec<Option<Cow<str>>> = o.rows.iter().map(|t| opt_text(&t.system)).collect();
        let k: Vec<Option<Cow<str>>> = o.rows.iter().map(|t| opt_text(&t.code)).collect();
        let u: Vec<Option<Cow<str>>> = o.rows.iter().map(|t| opt_text(&t.unit)).collect();
        out.push(Stmt::new(
            "INSERT INTO search_quantity (res_type, res_id, param, value, system, code, unit) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[], $7::text[])",
            vec![Box::new(o.types), Box::new(o.ids), Box::new(p), Box::new(v), Box::new(s), Box::new(k), Box::new(u)],
        ));
    }
    let o = owned(items, |r| &r.references);
    if !o.rows.is_empty() {
        let p: Vec<Cow<str>> = o.rows.iter().map(|t| clean(&t.param)).collect();
        let tt: Vec<Option<Cow<str>>> = o.rows.iter().map(|t| opt_text(&t.target_type)).collect();
        let ti: Vec<Option<Cow<str>>> = o.rows.iter().map(|t| opt_text(&t.target_id)).collect();
        let u: Vec<Option<Cow<str>>> = o.rows.iter().map(|t| opt_text(&t.url)).collect();
        out.push(Stmt::new(
            "INSERT INTO search_reference (res_type, res_id, param, target_type, target_id, url) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])",
            vec![Box::new(o.types), Box::new(o.ids), Box::new(p), Box::new(tt), Box::new(ti), Box::new(u)],
        ));
    }
    let o = owned(items, |r| &r.uris);
    if !o.rows.is_empty() {
        let p: Vec<Cow<str>> = o.rows.iter().map(|t| clean(&t.param)).collect();
        let u: Vec<Cow<str>> = o.rows.iter().map(|t| clean(&t.uri)).collect();
        out.push(Stmt::new(
            "INSERT INTO search_uri (res_type, res_id, param, uri) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])",
            vec![Box::new(o.types), Box::new(o.ids), Box::new(p), Box::new(u)],
        ));
    }
    let o = owned(items, |r| &r.composites);
    if !o.rows.is_empty() {
        static NONE: CompositePart = CompositePart { system: None, code: None, number: None, lo: None, hi: None };
        let p: Vec<Cow<str>> = o.rows.iter().map(|t| clean(&t.param)).collect();
        let part =
            |k: usize| -> Vec<&CompositePart> { o.rows.iter().map(|t| t.parts.get(k).unwrap_or(&NONE)).collect() };
        let (a, b, d) = (part(0), part(1), part(2));
        fn s<'a>(v: &[&'a CompositePart]) -> Vec<Option<Cow<'a, str>>> {
            v.iter().map(|x| opt_text(&x.system)).collect()
        }
        fn k<'a>(v: &[&'a CompositePart]) -> Vec<Option<Cow<'a, str>>> {
            v.iter().map(|x| opt_text(&x.code)).collect()
        }
        let n = |v: &[&CompositePart]| -> Vec<Option<f64>> { v.iter().map(|x| x.number).collect() };
        let lo = |v: &[&CompositePart]| -> Vec<Option<i64>> { v.iter().map(|x| x.lo).collect() };
        let hi = |v: &[&CompositePart]| -> Vec<Option<i64>> { v.iter().map(|x| x.hi).collect() };
        let (s1, c1, n1, lo1, hi1) = (s(&a), k(&a), n(&a), lo(&a), hi(&a));
        let (s2, c2, n2, lo2, hi2) = (s(&b), k(&b), n(&b), lo(&b), hi(&b));
        let (s3, c3, n3, lo3, hi3) = (s(&d), k(&d), n(&d), lo(&d), hi(&d));
        out.push(Stmt::new(
            "INSERT INTO search_composite (res_type, res_id, param, s1, c1, n1, lo1, hi1, s2, c2, n2, lo2, hi2, \
             s3, c3, n3, lo3, hi3) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], \
             $4::text[], $5::text[], $6::float8[], $7::bigint[], $8::bigint[], \
             $9::text[], $10::text[], $11::float8[], $12::bigint[], $13::bigint[], \
             $14::text[], $15::text[], $16::float8[], $17::bigint[], $18::bigint[])",
            vec![
                Box::new(o.types),
                Box::new(o.ids),
                Box::new(p),
                Box::new(s1),
                Box::new(c1),
                Box::new(n1),
                Box::new(lo1),
                Box::new(hi1),
                Box::new(s2),
                Box::new(c2),
                Box::new(n2),
                Box::new(lo2),
                Box::new(hi2),
                Box::new(s3),
                Box::new(c3),
                Box::new(n3),
                Box::new(lo3),
                Box::new(hi3),
            ],
        ));
    }
    out
}
