//! Type search and `$everything` on SQLite: the statements come from
//! [`hale_store::sql`], shared with the PostgreSQL store; this file runs them.

use hale_search::parse::SearchRequest;
use hale_store::sql::{Bind, IncludeWalk, SQLITE, SearchSql, VERSION_COLUMNS};
use hale_store::{EverythingQuery, Result, SearchPage, StoredResource};
use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use crate::{backend, row_to_stored};

/// A bound value as rusqlite takes it.
pub(crate) fn bind(b: &Bind) -> Value {
    match b {
        Bind::Null => Value::Null,
        Bind::Integer(i) => Value::Integer(*i),
        Bind::Real(f) => Value::Real(*f),
        Bind::Text(t) => Value::Text(t.clone()),
    }
}

fn unbind(v: Value) -> Bind {
    match v {
        Value::Null | Value::Blob(_) => Bind::Null,
        Value::Integer(i) => Bind::Integer(i),
        Value::Real(f) => Bind::Real(f),
        Value::Text(t) => Bind::Text(t),
    }
}

pub(crate) fn search(c: &Connection, req: &SearchRequest, page_size: usize, want_total: bool) -> Result<SearchPage> {
    let q = SearchSql::build(&SQLITE, req, page_size, want_total)?;
    let total = match &q.count {
        Some(s) => Some(
            c.query_row(&s.sql, params_from_iter(s.args.iter().map(bind)), |r| r.get::<_, i64>(0)).map_err(backend)?
                as u64,
        ),
        None => None,
    };
    let Some(page) = &q.page else {
        return Ok(SearchPage { entries: Vec::new(), included: Vec::new(), next: None, previous: None, total });
    };
    let mut stmt = c.prepare_cached(&page.sql).map_err(backend)?;
    let rows = stmt
        .query_map(params_from_iter(page.args.iter().map(bind)), |row| {
            let mut ks = Vec::with_capacity(q.nkeys);
            for i in 0..q.nkeys {
                ks.push(unbind(row.get::<_, Value>(2 + i)?));
            }
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, ks))
        })
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)?;
    let keys = q.page_keys(rows);
    let entries = versions_by_seq(c, &keys.seqs)?;
    let mut walk = IncludeWalk::new(&SQLITE, req, &entries);
    loop {
        let stmts = walk.next_round();
        if stmts.is_empty() {
            break;
        }
        let mut found = Vec::new();
        for s in stmts {
            let mut stmt = c.prepare_cached(&s.sql).map_err(backend)?;
            let rows = stmt.query_map(params_from_iter(s.args.iter().map(bind)), row_to_stored).map_err(backend)?;
            for r in rows {
                found.push(r.map_err(backend)?.1);
            }
        }
        walk.found(found);
    }
    Ok(SearchPage { entries, included: walk.finish(), next: keys.next, previous: keys.previous, total })
}

/// The versions with these sequence numbers, in the order given.
pub(crate) fn versions_by_seq(c: &Connection, seqs: &[i64]) -> Result<Vec<StoredResource>> {
    let mut found: std::collections::HashMap<i64, StoredResource> =
        std::collections::HashMap::with_capacity(seqs.len());
    for chunk in seqs.chunks(500) {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM resource_versions v WHERE v.seq IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
        let rows = stmt.query_map(params_from_iter(chunk.iter()), row_to_stored).map_err(backend)?;
        for r in rows {
            let (seq, stored) = r.map_err(backend)?;
            found.insert(seq, stored);
        }
    }
    Ok(seqs.iter().filter_map(|s| found.remove(s)).collect())
}

pub(crate) fn everything(c: &Connection, patient: &str, q: &EverythingQuery) -> Result<SearchPage> {
    let s = hale_store::sql::everything(&SQLITE, patient, q)?;
    let mut stmt = c.prepare_cached(&s.sql).map_err(backend)?;
    let rows = stmt
        .query_map(params_from_iter(s.args.iter().map(bind)), |r| row_to_stored(r).map(|(_, v)| v))
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)?;
    Ok(hale_store::sql::everything_page(patient, rows, q.count))
}
