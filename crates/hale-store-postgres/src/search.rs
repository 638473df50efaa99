//! Type search and `$everything` on PostgreSQL: the statements come from
//! [`hale_store::sql`], shared with the SQLite store; this file runs them.

use deadpool_postgres::GenericClient;
use hale_search::parse::SearchRequest;
use hale_store::sql::{IncludeWalk, POSTGRES, SearchSql, Stmt, VERSION_COLUMNS};
use hale_store::{EverythingQuery, Result, SearchPage, StoredResource};

use crate::sql::{Sql, number_marks, refs};
use crate::{db, row_to_stored};

/// Runs one shared statement.
pub(crate) async fn query(c: &impl GenericClient, s: &Stmt) -> Result<Vec<tokio_postgres::Row>> {
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
    let s = hale_store::sql::everything(&POSTGRES, patient, q)?;
    let rows = query(c, &s).await?.iter().map(|r| row_to_stored(r).map(|(_, v)| v)).collect::<Result<Vec<_>>>()?;
    Ok(hale_store::sql::everything_page(patient, rows, q.count))
}
