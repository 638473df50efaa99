//! Snapshots of a SQLite store for backups: a consistent copy taken while Hale serves
//! (`VACUUM INTO` reads one transaction's view; writers go on), SQLite's own integrity
//! check, and every stored version read back for hashing. Each opens its own connection
//! to the file; none needs the store to be open.

use std::path::Path;

use hale_store::{Error, Result};
use rusqlite::{Connection, OpenFlags};

use crate::backend;

fn read_only(db: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(backend)?;
    c.busy_timeout(std::time::Duration::from_secs(30)).map_err(backend)?;
    Ok(c)
}

/// Writes a consistent, compacted copy of the database `db` to `to` (which must not
/// exist), while other connections keep reading and writing.
pub fn snapshot(db: &Path, to: &Path) -> Result<()> {
    if !db.exists() {
        return Err(Error::Backend(format!("there is no database at {}", db.display())));
    }
    let c = read_only(db)?;
    let target = to.to_str().ok_or_else(|| Error::Backend("the snapshot's path is not UTF-8".into()))?;
    c.execute("VACUUM INTO ?1", [target]).map_err(backend)?;
    Ok(())
}

/// SQLite's `PRAGMA integrity_check` of `db`: `Ok(())` when it answers `ok`, else the
/// first problems it names.
pub fn integrity_check(db: &Path) -> Result<()> {
    let c = read_only(db)?;
    let mut stmt = c.prepare("PRAGMA integrity_check(20)").map_err(backend)?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(backend)?
        .collect::<rusqlite::Result<_>>()
        .map_err(backend)?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(())
    } else {
        Err(Error::Backend(format!("the database fails SQLite's integrity check: {}", lines.join("; "))))
    }
}

/// One stored version, as `each_version` hands it over.
pub struct VersionRow<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
    pub version: i64,
    /// Unix milliseconds.
    pub last_updated: i64,
    pub method: &'a str,
    /// `None` for a deletion.
    pub body: Option<&'a str>,
}

/// Calls `f` with every stored version of every resource in `db`, in storage order.
pub fn each_version(db: &Path, mut f: impl FnMut(VersionRow<'_>)) -> Result<()> {
    let c = read_only(db)?;
    let mut stmt = c
        .prepare("SELECT res_type, res_id, version, last_updated, method, body FROM resource_versions ORDER BY seq")
        .map_err(backend)?;
    let mut rows = stmt.query([]).map_err(backend)?;
    while let Some(r) = rows.next().map_err(backend)? {
        let (ty, id, method): (String, String, String) =
            (r.get(0).map_err(backend)?, r.get(1).map_err(backend)?, r.get(4).map_err(backend)?);
        let body: Option<String> = r.get(5).map_err(backend)?;
        f(VersionRow {
            resource_type: &ty,
            id: &id,
            version: r.get(2).map_err(backend)?,
            last_updated: r.get(3).map_err(backend)?,
            method: &method,
            body: body.as_deref(),
        });
    }
    Ok(())
}

/// The schema version of `db` and the newest this build knows.
pub fn schema_versions(db: &Path) -> Result<(i64, i64)> {
    let c = read_only(db)?;
    let have: i64 =
        c.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0)).map_err(backend)?;
    let known = crate::MIGRATIONS.iter().map(|m| m.0).max().unwrap_or(0);
    Ok((have, known))
}

/// What is inconsistent between the stored versions, the current-version table and
/// the search index of `db`, in words (empty: nothing).
pub fn consistency(db: &Path) -> Result<Vec<String>> {
    let c = read_only(db)?;
    let count = |sql: &str| -> Result<i64> { c.query_row(sql, [], |r| r.get(0)).map_err(backend) };
    let mut problems = Vec::new();
    let content = count("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'binary_content'")? > 0;
    let content_checks = if content { hale_store::sql::CONTENT_CONSISTENCY } else { &[] };
    for (sql, words) in hale_store::sql::CONSISTENCY.iter().chain(content_checks) {
        let n = count(sql)?;
        if n > 0 {
            problems.push(words.replace("{}", &n.to_string()));
        }
    }
    for &t in hale_store::sql::INDEX_TABLES {
        let orphans = count(&hale_store::sql::index_orphans(t))?;
        if orphans > 0 {
            problems.push(format!("{t}: {orphans} rows of deleted or unknown resources"));
        }
    }
    Ok(problems)
}

/// Each search index table of `db`: its rows and an order-independent hash of them.
pub fn index_digests(db: &Path) -> Result<Vec<(String, u64, u64)>> {
    let c = read_only(db)?;
    let mut out = Vec::new();
    for &t in hale_store::sql::INDEX_TABLES {
        let mut stmt = c.prepare(&format!("SELECT * FROM {t}")).map_err(backend)?;
        let n = stmt.column_count();
        let mut rows = stmt.query([]).map_err(backend)?;
        let (mut count, mut sum) = (0u64, 0u64);
        while let Some(r) = rows.next().map_err(backend)? {
            // FNV-1a over the row's values, summed: the same in any order
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for i in 0..n {
                let v: rusqlite::types::Value = r.get(i).map_err(backend)?;
                for b in format!("{v:?}").bytes().chain(std::iter::once(0xff)) {
                    h ^= b as u64;
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
            }
            sum = sum.wrapping_add(h);
            count += 1;
        }
        out.push((t.to_string(), count, sum));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_a_checked_copy_of_every_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("live.db");
        let c = Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE resource_versions (seq INTEGER PRIMARY KEY AUTOINCREMENT, res_type TEXT, res_id TEXT,
                 version INTEGER, last_updated INTEGER, method TEXT, body TEXT);
             INSERT INTO resource_versions (res_type, res_id, version, last_updated, method, body)
                 VALUES ('Patient', 'a', 1, 10, 'PUT', '{}'), ('Patient', 'a', 2, 20, 'DELETE', NULL);",
        )
        .unwrap();
        // written while this connection holds uncommitted work: the snapshot has what was committed
        c.execute_batch("BEGIN; INSERT INTO resource_versions (res_type, res_id, version, last_updated, method, body) VALUES ('Patient', 'b', 1, 30, 'PUT', '{}');").unwrap();
        let copy = dir.path().join("copy.db");
        snapshot(&db, &copy).unwrap();
        c.execute_batch("COMMIT").unwrap();
        integrity_check(&copy).unwrap();
        let mut seen = Vec::new();
        each_version(&copy, |v| seen.push((v.id.to_string(), v.version, v.body.map(str::to_string)))).unwrap();
        assert_eq!(seen, vec![("a".to_string(), 1, Some("{}".to_string())), ("a".to_string(), 2, None)]);
        // a copy that exists already is not overwritten; no database is no snapshot
        assert!(snapshot(&db, &copy).is_err());
        assert!(snapshot(&dir.path().join("none.db"), &dir.path().join("x.db")).is_err());
        // a damaged file fails the check
        let bad = dir.path().join("bad.db");
        let mut bytes = std::fs::read(&copy).unwrap();
        // the header of the second page (a b-tree page)
        for b in &mut bytes[4096..4096 + 16] {
            *b = 0x5a;
        }
        std::fs::write(&bad, bytes).unwrap();
        assert!(integrity_check(&bad).is_err());
    }
}
