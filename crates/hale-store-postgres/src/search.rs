//! Type search and `$everything` on PostgreSQL: the statements come from
//! [`hale_store::sql`], shared with the SQLite store; this file runs them.

use deadpool_postgres::GenericClient;
use hale_search::parse::SearchRequest;
use hale_store::sql::{Bind, EVERYTHING_REFERENCED, IncludeWalk, POSTGRES, SearchSql, Stmt, VERSION_COLUMNS};
use hale_store::{EverythingQuery, Result, SearchPage, StoredResource};

use crate::sql::{Sql, number_marks, refs};
use crate::{db, row_to_stored};

/// Runs one shared statement.
async fn query(c: &impl GenericClient, s: &Stmt) -> Result<Vec<tokio_postgres::Row>> {
    let args: Vec<Sql> = s.args.iter().cloned().map(Sql).collect();
    c.query(&number_marks(&s.sql), &refs(&args)).await.map_err(db)
}

pub(crate) async fn search(
    c: &impl GenericClient,
    req: &SearchRequest,
    page_size: usize,
    want_total: bool,
) -> Result<SearchPage> {
    let q = SearchSql::build(&POSTGRES, req, page_size, want_total)?;
    let total = match &q.count {
        Some(s) => Some(query(c, s).await?[0].try_get::<_, i64>(0).map_err(db)? as u64),
        None => None,
    };
    let Some(page) = &q.page else {
        return Ok(SearchPage { entries: Vec::new(), included: Vec::new(), next: None, previous: None, total });
    };
    let mut rows = Vec::new();
    for row in query(c, page).await? {
        let mut ks = Vec::with_capacity(q.nkeys);
        for i in 0..q.nkeys {
            ks.push(row.try_get::<_, Sql>(2 + i).map_err(db)?.0);
        }
        rows.push((row.try_get::<_, i64>(0).map_err(db)?, row.try_get::<_, String>(1).map_err(db)?, ks));
    }
    let keys = q.page_keys(rows);
    let entries = versions_by_seq(c, &keys.seqs).await?;
    let mut walk = IncludeWalk::new(&POSTGRES, req, &entries);
    loop {
        let stmts = walk.next_round();
        if stmts.is_empty() {
            break;
        }
        let mut found = Vec::new();
        for s in &stmts {
            for r in query(c, s).await? {
                found.push(row_to_stored(&r)?.1);
            }
        }
        walk.found(found);
    }
    Ok(SearchPage { entries, included: walk.finish(), next: keys.next, previous: keys.previous, total })
}

/// The versions with these sequence numbers, in the order given.
pub(crate) async fn versions_by_seq(c: &impl GenericClient, seqs: &[i64]) -> Result<Vec<StoredResource>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let s = c
        .prepare_cached(&format!("SELECT {VERSION_COLUMNS} FROM resource_versions v WHERE v.seq = ANY($1::bigint[])"))
        .await
        .map_err(db)?;
    let mut found: std::collections::HashMap<i64, StoredResource> =
        std::collections::HashMap::with_capacity(seqs.len());
    for r in c.query(&s, &[&seqs]).await.map_err(db)? {
        let (seq, stored) = row_to_stored(&r)?;
        found.insert(seq, stored);
    }
    Ok(seqs.iter().filter_map(|s| found.remove(s)).collect())
}

pub(crate) async fn everything(c: &impl GenericClient, patient: &str, q: &EverythingQuery) -> Result<SearchPage> {
    let defs = hale_fhir::Definitions::get();
    let mut pairs: Vec<String> = Vec::new();
    for (ty, params) in defs.patient_compartment() {
        for p in params {
            pairs.push(format!("{ty}.{p}"));
        }
    }
    pairs.sort();
    let mut args: Vec<Sql> = vec![Sql::text(patient.to_string())];
    args.extend(pairs.iter().map(|p| Sql::text(p.clone())));
    args.push(Sql::text(patient.to_string()));
    let pair_marks = vec!["?"; pairs.len()].join(", ");
    let ref_marks = vec!["?"; EVERYTHING_REFERENCED.len()].join(", ");
    args.extend(EVERYTHING_REFERENCED.iter().map(|t| Sql::text(t.to_string())));
    let mut sql = format!(
        "WITH comp(t, id) AS ( \
           SELECT i.res_type, i.res_id FROM search_reference i \
           WHERE i.target_type = 'Patient' AND i.target_id = ? AND (i.res_type || '.' || i.param) IN ({pair_marks}) \
           UNION SELECT 'Patient', CAST(? AS TEXT)), \
         refd(t, id) AS ( \
           SELECT j.target_type, j.target_id FROM search_reference j JOIN comp ON j.res_type = comp.t AND j.res_id = comp.id \
           WHERE j.target_type IN ({ref_marks}) AND j.target_id IS NOT NULL), \
         everything(t, id) AS (SELECT t, id FROM comp UNION SELECT t, id FROM refd) \
         SELECT {VERSION_COLUMNS} FROM everything e \
         JOIN resources r ON r.res_type = e.t AND r.res_id = e.id \
         JOIN resource_versions v ON v.seq = r.seq WHERE r.deleted = 0"
    );
    if let Some(since) = q.since {
        sql.push_str(" AND v.last_updated >= ?");
        args.push(Sql::integer(since.millis()));
    }
    if let Some(types) = &q.types {
        sql.push_str(&format!(" AND r.res_type IN ({})", vec!["?"; types.len().max(1)].join(", ")));
        if types.is_empty() {
            args.push(Sql(Bind::Null));
        }
        args.extend(types.iter().map(|t| Sql::text(t.clone())));
    }
    if let Some(cursor) = &q.cursor {
        let (ty, id) = hale_store::sql::everything_after(patient, cursor)?;
        sql.push_str(" AND (r.res_type > ? OR (r.res_type = ? AND r.res_id > ?))");
        args.push(Sql(Bind::Text(ty.clone())));
        args.push(Sql(Bind::Text(ty)));
        args.push(Sql(Bind::Text(id)));
    }
    sql.push_str(&format!(" ORDER BY r.res_type, r.res_id LIMIT {}", q.count + 1));
    let rows = c.query(&number_marks(&sql), &refs(&args)).await.map_err(db)?;
    let mut entries = Vec::new();
    let mut more = false;
    for r in &rows {
        let (_, s) = row_to_stored(r)?;
        if entries.len() == q.count {
            more = true;
            break;
        }
        entries.push(s);
    }
    let next = match (more, entries.last()) {
        (true, Some(last)) => {
            Some(hale_store::sql::everything_cursor(patient, (last.resource_type.as_str(), last.id.as_str())))
        }
        _ => None,
    };
    Ok(SearchPage { entries, included: Vec::new(), next, previous: None, total: None })
}
