//! Upgrades: stores written by an older Hale (commit 5bcbabb, 2026-12-03: SQLite schema
//! 11, PostgreSQL schema 7; `tests/fixtures/upgrade/make.sh` made them) are migrated
//! forward by this one, serve what was written and take new writes. As docs/operations.md
//! says, releases since then index more of existing resources: `hale check` finds the
//! index short of a rebuild until `hale reindex` runs, then passes, and `hale audit
//! verify` holds for a chain begun before the audit trail's migrations.

use std::path::{Path, PathBuf};

use hale_test_support::{TestDatabase, json};
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade").join(name)
}

fn unpack(name: &str, into: &Path) {
    let f = std::fs::File::open(fixture(name)).unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(f)).unpack(into).unwrap();
}

/// `hale ARGS --data-dir DIR [--database URL]`: whether it succeeded, and its stdout or
/// stderr.
fn hale_out(args: &[&str], dir: &Path, database: Option<&str>) -> (bool, String) {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_hale"));
    c.env_remove("HALE_CONFIG").env_remove("HALE_DATA_DIR").env_remove("HALE_DATABASE_URL");
    c.env("HALE_LOG__LEVEL", "warn").args(args).arg("--data-dir").arg(dir);
    if let Some(url) = database {
        c.args(["--database", url]);
    }
    let out = c.output().unwrap();
    match out.status.success() {
        true => (true, String::from_utf8_lossy(&out.stdout).to_string()),
        false => (false, String::from_utf8_lossy(&out.stderr).to_string()),
    }
}

/// As [`hale_out`], which must succeed: its stdout.
fn hale(args: &[&str], dir: &Path, database: Option<&str>) -> String {
    let (ok, text) = hale_out(args, dir, database);
    assert!(ok, "hale {args:?}: {text}");
    text
}

/// The `hale_search_index_outdated` gauge of a running node.
async fn index_outdated(node: &hale_test_support::BinaryServer) -> u32 {
    let text = node.client.get(format!("{}/metrics", node.base)).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with("hale_search_index_outdated ")).expect("the gauge is exported");
    line.split(' ').nth(1).unwrap().parse::<f64>().unwrap() as u32
}

/// The upgrade as docs/operations.md has it, checked at each step: `hale check` before
/// (on a copy: the schema of the older Hale, the index short of a rebuild), the server
/// started (migrations), `hale reindex`, then `hale check` and `hale audit verify` pass
/// at the newest schema.
async fn upgrade(dir: &Path, database: Option<&str>, old_schema: i64) {
    let (ok, err) = hale_out(&["check"], dir, database);
    assert!(!ok && err.contains("differs from a rebuild (run hale reindex)"), "{err}");
    serves_what_the_older_hale_wrote(dir, database).await;
    hale(&["reindex"], dir, database);
    let exe = Path::new(env!("CARGO_BIN_EXE_hale"));
    let mut args = vec!["serve".to_string(), "--data-dir".to_string(), dir.display().to_string()];
    if let Some(url) = database {
        args.extend(["--database".to_string(), url.to_string()]);
    }
    let node = hale_test_support::spawn_binary_with(exe, &args).await;
    assert_eq!(index_outdated(&node).await, 0, "reindexed, the index is this Hale's");
    drop(node);
    let checked = hale(&["check"], dir, database);
    let newest: i64 =
        checked.split("this Hale knows ").nth(1).and_then(|s| s.split(')').next()).unwrap().parse().unwrap();
    assert!(newest > old_schema && checked.contains(&format!("schema {newest} (")), "migrated: {checked}");
    assert!(checked.contains("equals a rebuild"), "{checked}");
    let verified = hale(&["audit", "verify"], dir, database);
    assert!(verified.starts_with("audit trail verified"), "{verified}");
}

/// What the older Hale wrote (a synthetic patient, and from the bundles a patient in
/// two versions, an observation kept and one deleted) is served by this one, found by
/// search, and a new write is accepted.
async fn serves_what_the_older_hale_wrote(dir: &Path, database: Option<&str>) {
    let exe = Path::new(env!("CARGO_BIN_EXE_hale"));
    let mut args = vec!["serve".to_string(), "--data-dir".to_string(), dir.display().to_string()];
    if let Some(url) = database {
        args.extend(["--database".to_string(), url.to_string()]);
    }
    let node = hale_test_support::spawn_binary_with(exe, &args).await;
    assert_eq!(index_outdated(&node).await, 1, "the operator is told the index needs a rebuild");
    let get = async |path: &str| -> (u16, Value) {
        let r = node.client.get(format!("{}/fhir/{path}", node.base)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, json(r).await)
    };
    let (status, p) = get("Patient/upgrade-1").await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["meta"]["versionId"], "2", "{p}");
    assert_eq!(p["name"][0]["given"], json!(["Ann", "Marie"]));
    let (_, h) = get("Patient/upgrade-1/_history").await;
    assert_eq!(h["entry"].as_array().map(Vec::len), Some(2), "{h}");
    assert_eq!(get("Observation/upgrade-hr-2").await.0, 410, "deleted before the upgrade, gone after it");
    let count = async |q: &str| get(&format!("{q}&_summary=count")).await.1["total"].as_u64();
    assert_eq!(count("Patient?_count=1").await, Some(2));
    assert_eq!(count("Patient?identifier=urn:oid:2.16.840.1.113883.4.3.999|UPG-0001").await, Some(1));
    assert_eq!(count("Observation?subject=Patient/upgrade-1&code=http://loinc.org|8867-4").await, Some(1));
    assert_eq!(count("Patient?family=upgrade&given=marie").await, Some(1));
    // a new write after the upgrade
    let o = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/upgrade-1"}, "valueQuantity": {"value": 64}});
    let r = node
        .client
        .post(format!("{}/fhir/Observation", node.base))
        .header("content-type", "application/fhir+json")
        .body(o.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(count("Observation?subject=Patient/upgrade-1&code=http://loinc.org|8867-4").await, Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_store_an_older_hale_wrote_is_migrated_and_serves_it() {
    if hale_test_support::skip_unless_sqlite("a_sqlite_store_an_older_hale_wrote_is_migrated_and_serves_it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    unpack("sqlite-5bcbabb.tar.gz", dir.path());
    upgrade(dir.path(), None, 11).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_database_an_older_hale_wrote_is_migrated_and_serves_it() {
    if hale_test_support::require_postgres().is_none() {
        eprintln!("SKIP a_postgres_database_an_older_hale_wrote_is_migrated_and_serves_it");
        return;
    }
    let _scratch = crate::PG_SCRATCH.lock().await;
    let dir = tempfile::tempdir().unwrap();
    unpack("postgres-5bcbabb.tar.gz", dir.path());
    let db = TestDatabase::create().await;
    let dump = dir.path().join("hale.pgdump");
    let out = std::process::Command::new("pg_restore")
        .args(["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", "--dbname", &db.url])
        .arg(&dump)
        .output()
        .expect("pg_restore (postgresql-client) is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_file(&dump).unwrap();
    upgrade(dir.path(), Some(&db.url), 7).await;
}
