//! Type search and `$everything` on SQLite: the statements come from
//! [`hale_store::sql`], shared with the PostgreSQL store; this file runs them.

use hale_search::parse::SearchRequest;
use hale_store::sql::{Bind, EVERYTHING_REFERENCED, IncludeWalk, SQLITE, SearchSql, VERSION_COLUMNS};
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
    use std::collections::{BTreeMap, BTreeSet, HashSet};
    let defs = hale_fhir::Definitions::get();
    let pairs: HashSet<(&str, &str)> = defs
        .patient_compartment()
        .iter()
        .flat_map(|(ty, params)| params.iter().map(move |p| (ty.as_str(), p.as_str())))
        .collect();
    // 1. the compartment: resources whose compartment parameters point at the patient
    let mut members: BTreeSet<(String, String)> = BTreeSet::new();
    members.insert(("Patient".to_string(), patient.to_string()));
    {
        let mut stmt = c
            .prepare_cached(
                "SELECT i.res_type, i.res_id, i.param FROM search_reference i INDEXED BY search_reference_target \
                 WHERE i.target_type = 'Patient' AND i.target_id = ?1",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([patient], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(backend)?;
        for r in rows {
            let (ty, id, param) = r.map_err(backend)?;
            if pairs.contains(&(ty.as_str(), param.as_str())) {
                members.insert((ty, id));
            }
        }
    }
    // 2. what they reference among practitioners, organizations, medications...
    let mut by_type: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (ty, id) in &members {
        by_type.entry(ty.as_str()).or_default().push(id.as_str());
    }
    let mut referenced: BTreeSet<(String, String)> = BTreeSet::new();
    let kinds = vec!["?"; EVERYTHING_REFERENCED.len()].join(", ");
    for (ty, ids) in &by_type {
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT DISTINCT j.target_type, j.target_id FROM search_reference j INDEXED BY search_reference_owner \
                 WHERE j.res_type = ? AND j.res_id IN ({}) AND j.target_type IN ({kinds}) AND j.target_id IS NOT NULL",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut args: Vec<Value> = vec![Value::Text(ty.to_string())];
            args.extend(chunk.iter().map(|i| Value::Text(i.to_string())));
            args.extend(EVERYTHING_REFERENCED.iter().map(|t| Value::Text(t.to_string())));
            let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt
                .query_map(params_from_iter(args.iter()), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(backend)?;
            for r in rows {
                referenced.insert(r.map_err(backend)?);
            }
        }
    }
    members.extend(referenced);
    // 3. the page: in (type, id) order after the cursor, of the types asked for
    let after: Option<(String, String)> = match &q.cursor {
        None => None,
        Some(cursor) => Some(hale_store::sql::everything_after(patient, cursor)?),
    };
    let wanted = |ty: &str| q.types.as_ref().is_none_or(|t| t.iter().any(|x| x == ty));
    let mut keys: Vec<(i64, String, String)> = Vec::new();
    let mut more = false;
    let candidates: Vec<&(String, String)> =
        members.iter().filter(|m| wanted(&m.0) && after.as_ref().is_none_or(|a| *m > a)).collect();
    'chunks: for chunk in candidates.chunks(200) {
        // the current, non-deleted version of each, in the same order
        let mut found: std::collections::HashMap<(String, String), (i64, i64)> = std::collections::HashMap::new();
        let mut chunk_types: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (ty, id) in chunk.iter().map(|m| (m.0.as_str(), m.1.as_str())) {
            chunk_types.entry(ty).or_default().push(id);
        }
        for (ty, ids) in chunk_types {
            let sql = format!(
                "SELECT r.res_id, r.seq, v.last_updated FROM resources r JOIN resource_versions v ON v.seq = r.seq \
                 WHERE r.res_type = ? AND r.res_id IN ({}) AND r.deleted = 0",
                vec!["?"; ids.len()].join(", ")
            );
            let mut args: Vec<Value> = vec![Value::Text(ty.to_string())];
            args.extend(ids.iter().map(|i| Value::Text(i.to_string())));
            let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt
                .query_map(params_from_iter(args.iter()), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                })
                .map_err(backend)?;
            for r in rows {
                let (id, seq, at) = r.map_err(backend)?;
                found.insert((ty.to_string(), id), (seq, at));
            }
        }
        for m in chunk {
            let Some((seq, at)) = found.get(*m) else { continue };
            if q.since.is_some_and(|s| *at < s.millis()) {
                continue;
            }
            if keys.len() == q.count {
                more = true;
                break 'chunks;
            }
            keys.push((*seq, m.0.clone(), m.1.clone()));
        }
    }
    let seqs: Vec<i64> = keys.iter().map(|k| k.0).collect();
    let entries = versions_by_seq(c, &seqs)?;
    let next = match (more, keys.last()) {
        (true, Some((_, ty, id))) => Some(hale_store::sql::everything_cursor(patient, (ty, id))),
        _ => None,
    };
    Ok(SearchPage { entries, included: Vec::new(), next, previous: None, total: None })
}
