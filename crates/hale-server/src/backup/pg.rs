//! Backups of a PostgreSQL store: `pg_dump` (custom format) under a snapshot exported by
//! a `REPEATABLE READ` transaction that reads the versions' digests too, so the dump and
//! the manifest describe the same instant while Hale keeps writing; `pg_restore` into a
//! scratch database to verify, and into an empty database to restore.
//!
//! Everything Hale keeps on PostgreSQL is in the database (the resources, the audit
//! trail and its signed checkpoints, the shared keys), so the dump is the whole backup.
//! `pg_dump` and `pg_restore` come from the PostgreSQL client programs, of the server's
//! major version or newer.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Digests, TypeDigest};

/// A libpq connection string for `url` without its password, and the password (given
/// to `pg_dump` and `pg_restore` in `PGPASSWORD`, never on a command line).
fn libpq(url: &str) -> (String, Option<String>) {
    match url::Url::parse(url) {
        Ok(mut u) if matches!(u.scheme(), "postgres" | "postgresql") => {
            // percent-decoded; a `+` in a URL's password is a plus, not a space
            let password = u.password().map(|p| {
                url::form_urlencoded::parse(format!("p={}", p.replace('+', "%2B")).as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            });
            let _ = u.set_password(None);
            (u.to_string(), password)
        }
        _ => (url.to_string(), None),
    }
}

/// `url` with its password hidden, for messages.
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "the configured database".into(),
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", shown(url)))?;
    tokio::spawn(conn);
    Ok(client)
}

fn sql(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("PostgreSQL: {}", d.message()),
        None => format!("PostgreSQL: {e}"),
    }
}

/// Runs one of PostgreSQL's client programs; its last line of error output when it fails.
async fn run(program: &str, args: &[&str], password: Option<&str>) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    cmd.stderr(std::process::Stdio::piped()).kill_on_drop(true);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.output().await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{program} was not found: install PostgreSQL's client programs (the server's major version or newer)"
            )
        } else {
            format!("{program} could not be started: {e}")
        }
    })?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
    Err(format!("{program} failed: {}", line.trim()))
}

/// The digests of every version the transaction of `client` sees, read through a cursor.
async fn digests(client: &tokio_postgres::Client) -> Result<(BTreeMap<String, TypeDigest>, u64), String> {
    client
        .batch_execute(
            "DECLARE hale_versions NO SCROLL CURSOR FOR \
             SELECT res_type, res_id, version, last_updated, method, body FROM resource_versions",
        )
        .await
        .map_err(sql)?;
    let mut d = Digests::default();
    loop {
        let rows = client.query("FETCH 2000 FROM hale_versions", &[]).await.map_err(sql)?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            d.add(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        }
    }
    client.batch_execute("CLOSE hale_versions").await.map_err(sql)?;
    Ok(d.finish())
}

/// Dumps the database `url` names into `out` while Hale may go on writing; the digests
/// of the versions the dump holds.
pub(super) async fn dump(url: &str, out: &Path) -> Result<(BTreeMap<String, TypeDigest>, u64), String> {
    let client = connect(url).await?;
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await.map_err(sql)?;
    let snapshot: String = client.query_one("SELECT pg_export_snapshot()", &[]).await.map_err(sql)?.get(0);
    let (conn, password) = libpq(url);
    let file = out.to_string_lossy();
    let args = [
        "--format=custom",
        "--no-owner",
        "--no-privileges",
        "--snapshot",
        &snapshot,
        "--file",
        &file,
        "--dbname",
        &conn,
    ];
    // the dump and the digests read the same snapshot, the exporting transaction open
    // until both are done
    let (dumped, digests) = tokio::join!(run("pg_dump", &args, password.as_deref()), digests(&client));
    client.batch_execute("COMMIT").await.map_err(sql)?;
    dumped?;
    digests
}

/// The digests of every version in the database `url` names.
pub(super) async fn digests_of(url: &str) -> Result<(BTreeMap<String, TypeDigest>, u64), String> {
    let client = connect(url).await?;
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await.map_err(sql)?;
    let d = digests(&client).await?;
    client.batch_execute("COMMIT").await.map_err(sql)?;
    Ok(d)
}

/// Refuses a database `url` names that holds tables: a restore goes into an empty one.
pub(super) async fn ensure_empty(url: &str) -> Result<(), String> {
    let client = connect(url).await?;
    let tables: i64 = client
        .query_one("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()", &[])
        .await
        .map_err(sql)?
        .get(0);
    if tables > 0 {
        return Err(format!(
            "the database {} holds tables already; restore into an empty database (CREATE DATABASE), then point Hale at it",
            shown(url)
        ));
    }
    Ok(())
}

/// Restores the dump `file` into the database `url` names, which must hold no table,
/// in one transaction.
pub(super) async fn restore_into(url: &str, file: &Path) -> Result<(), String> {
    ensure_empty(url).await?;
    let (conn, password) = libpq(url);
    let file = file.to_string_lossy();
    let args = ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", "--dbname", &conn, &file];
    run("pg_restore", &args, password.as_deref()).await
}

/// The schema version of the database `url` names and the newest this build knows.
pub(super) async fn schema_versions(url: &str) -> Result<(i64, i64), String> {
    let client = connect(url).await?;
    let have: i64 =
        client.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await.map_err(sql)?.get(0);
    Ok((have, hale_store_postgres::newest_schema()))
}

/// What is inconsistent between the stored versions, the current-version table and the
/// search index of the database `url` names, in words (empty: nothing): the queries of
/// `hale_store::sql::CONSISTENCY` (and `CONTENT_CONSISTENCY` where its table exists),
/// as on SQLite.
pub(super) async fn consistency(url: &str) -> Result<Vec<String>, String> {
    let client = connect(url).await?;
    let count = async |q: &str| -> Result<i64, String> { Ok(client.query_one(q, &[]).await.map_err(sql)?.get(0)) };
    let mut problems = Vec::new();
    let content =
        count("SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'binary_content'")
            .await?
            > 0;
    let content_checks = if content { hale_store::sql::CONTENT_CONSISTENCY } else { &[] };
    for (q, words) in hale_store::sql::CONSISTENCY.iter().chain(content_checks) {
        let n = count(q).await?;
        if n > 0 {
            problems.push(words.replace("{}", &n.to_string()));
        }
    }
    for &t in hale_store::sql::INDEX_TABLES {
        let orphans = count(&hale_store::sql::index_orphans(t)).await?;
        if orphans > 0 {
            problems.push(format!("{t}: {orphans} rows of deleted or unknown resources"));
        }
    }
    Ok(problems)
}

/// Each search index table of the database `url` names: its rows and an
/// order-independent hash of them (the sum of the first 64 bits of each row's MD5).
pub(super) async fn index_digests(url: &str) -> Result<Vec<(String, u64, String)>, String> {
    let client = connect(url).await?;
    let mut out = Vec::new();
    for &t in hale_store::sql::INDEX_TABLES {
        let q = format!(
            "SELECT COUNT(*), COALESCE(SUM(('x' || substr(md5(i::text), 1, 16))::bit(64)::bigint), 0)::text FROM {t} i"
        );
        let row = client.query_one(&q, &[]).await.map_err(sql)?;
        out.push((t.to_string(), row.get::<_, i64>(0) as u64, row.get(1)));
    }
    Ok(out)
}

/// A database of its own on the server `server_url` names, for a verification; dropped
/// by [`Scratch::drop_database`].
pub(super) struct Scratch {
    admin: String,
    name: String,
    /// The scratch database's URL.
    pub url: String,
}

impl Scratch {
    pub(super) async fn create(server_url: &str) -> Result<Scratch, String> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let name = format!("hale_verify_{}_{}", std::process::id(), nanos % 1_000_000_000_000);
        let mut url = url::Url::parse(server_url)
            .map_err(|_| "a PostgreSQL backup is verified in a scratch database: give a postgres:// URL".to_string())?;
        url.set_path(&format!("/{name}"));
        let client = connect(server_url).await?;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"))
            .await
            .map_err(|e| format!("creating a scratch database on {}: {}", shown(server_url), sql(e)))?;
        Ok(Scratch { admin: server_url.to_string(), name, url: url.to_string() })
    }

    pub(super) async fn drop_database(self) {
        match connect(&self.admin).await {
            Ok(client) => {
                if let Err(e) =
                    client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).await
                {
                    tracing::warn!(database = %self.name, error = %sql(e), "the scratch database was not dropped");
                }
            }
            Err(e) => tracing::warn!(database = %self.name, error = %e, "the scratch database was not dropped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_reaches_a_command_line() {
        let (conn, pw) = libpq("postgres://hale:s%40c+ret@db.example:5433/hale?sslmode=disable");
        assert_eq!(conn, "postgres://hale@db.example:5433/hale?sslmode=disable");
        assert_eq!(pw.as_deref(), Some("s@c+ret"));
        assert_eq!(libpq("postgres://hale@db/hale").1, None);
        assert_eq!(shown("postgres://hale:secret@db/hale"), "postgres://hale:***@db/hale");
    }
}
