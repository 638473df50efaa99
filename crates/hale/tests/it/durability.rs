//! Acknowledged means durable, crash after crash: concurrent writers (creates, updates,
//! JSON Patches, transaction bundles) run against the real binary, which is killed
//! with SIGKILL at a random moment, restarted on the same data directory or database,
//! and checked, `HALE_CRASH_CYCLES` times (default 20): every acknowledged write is
//! there (its version reads back byte for byte), every transaction is whole or absent,
//! and at the end the SQLite file passes `PRAGMA integrity_check` and `hale audit
//! verify` finds the audit chain intact, and on both stores the search index is exactly
//! what a rebuild from the stored JSON makes. On PostgreSQL (`HALE_TEST_STORE=postgres`) the
//! node dies and the database lives on: what matters there is that a node dying
//! mid-transaction leaves nothing half-written.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hale_test_support::{TestDatabase, spawn_binary_with};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// What the writers were told was written: path -> (version, body, writer); transaction
/// key -> acknowledged.
#[derive(Default)]
struct Acked {
    latest: HashMap<String, (String, String, usize)>,
    bundles: Vec<(String, bool)>,
    writes: usize,
}

/// A small deterministic generator (the seed is printed, so a failing run can be
/// repeated with `HALE_CRASH_SEED`).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

async fn write_until_refused(client: reqwest::Client, base: String, w: usize, cycle: usize, acked: Arc<Mutex<Acked>>) {
    let owned = |ty: &str, a: &Acked| -> Vec<String> {
        a.latest.iter().filter(|(p, v)| v.2 == w && p.starts_with(ty)).map(|(p, _)| p.clone()).collect()
    };
    let (mut mine, mut obs) = {
        let a = acked.lock().await;
        (owned("Patient/", &a), owned("Observation/", &a))
    };
    for i in 0.. {
        let tag = format!("w{w}-c{cycle}-{i}");
        let op = i % 6;
        if op == 4 {
            let entries: Vec<_> = (0..5)
                .map(|k| json!({"request":{"method":"POST","url":"Observation"},"resource":{"resourceType":"Observation","id":format!("{tag}-{k}"),"status":"final","identifier":[{"system":"urn:durability","value":tag}],"code":{"text":format!("{tag}-{k}")}}}))
                .collect();
            let bundle = json!({"resourceType":"Bundle","type":"transaction","entry":entries});
            acked.lock().await.bundles.push((tag.clone(), false));
            let r = client
                .post(format!("{base}/fhir"))
                .header("content-type", "application/fhir+json")
                .body(bundle.to_string())
                .send()
                .await;
            let Ok(r) = r else { return };
            if !r.status().is_success() || r.text().await.is_err() {
                return;
            }
            let mut a = acked.lock().await;
            if let Some(b) = a.bundles.iter_mut().find(|b| b.0 == tag) {
                b.1 = true;
            }
            continue;
        }
        let req = match op {
            0 => client
                .put(format!("{base}/fhir/Patient/{tag}"))
                .header("content-type", "application/fhir+json")
                .body(json!({"resourceType":"Patient","id":tag,"name":[{"family":format!("W{w}")}]}).to_string()),
            2 if !mine.is_empty() => {
                let path = &mine[i % mine.len()];
                let id = path.trim_start_matches("Patient/");
                client
                    .put(format!("{base}/fhir/{path}"))
                    .header("content-type", "application/fhir+json")
                    .body(json!({"resourceType":"Patient","id":id,"name":[{"family":format!("W{w}"),"given":[tag]}]}).to_string())
            }
            3 if !obs.is_empty() => client
                .patch(format!("{base}/fhir/{}", obs[i % obs.len()]))
                .header("content-type", "application/json-patch+json")
                .body(json!([{"op":"replace","path":"/code/text","value":tag}]).to_string()),
            _ => client
                .post(format!("{base}/fhir/Observation"))
                .header("content-type", "application/fhir+json")
                .body(json!({"resourceType":"Observation","status":"final","code":{"text":format!("w{w}-{tag}")},"valueQuantity":{"value":1.50}}).to_string()),
        };
        let Ok(r) = req.send().await else { return };
        if !r.status().is_success() {
            return;
        }
        let Ok(text) = r.text().await else { return };
        let v: Value = serde_json::from_str(&text).unwrap();
        let path = format!("{}/{}", v["resourceType"].as_str().unwrap(), v["id"].as_str().unwrap());
        let version = v["meta"]["versionId"].as_str().unwrap().to_string();
        if path.starts_with("Patient/") && !mine.contains(&path) {
            mine.push(path.clone());
        }
        if path.starts_with("Observation/") && !obs.contains(&path) {
            obs.push(path.clone());
        }
        let mut a = acked.lock().await;
        a.latest.insert(path, (version, text, w));
        a.writes += 1;
    }
}

/// Every acknowledged version reads back as acknowledged; every transaction is whole
/// (5) when acknowledged, whole or absent (0) otherwise. Returns (checked, lost).
async fn check(client: &reqwest::Client, base: &str, acked: &Acked) -> (usize, Vec<String>) {
    let mut lost = Vec::new();
    for (path, (version, body, _)) in &acked.latest {
        let r = client.get(format!("{base}/fhir/{path}/_history/{version}")).send().await.unwrap();
        if r.status() != 200 || &r.text().await.unwrap() != body {
            lost.push(format!("{path}/_history/{version}"));
        }
    }
    for (key, ok) in &acked.bundles {
        let url = format!("{base}/fhir/Observation?identifier=urn:durability%7C{key}&_summary=count");
        let v: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        let n = v["total"].as_u64().unwrap();
        if n != 5 && (*ok || n != 0) {
            lost.push(format!("transaction {key}: {n} of 5 (acknowledged: {ok})"));
        }
    }
    (acked.latest.len() + acked.bundles.len(), lost)
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_repeated_sigkill() {
    let cycles: usize = std::env::var("HALE_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("HALE_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let mut rng = Lcg(seed);
    let dir = tempfile::tempdir().unwrap();
    let db = if hale_test_support::store_is_postgres() { Some(TestDatabase::create().await) } else { None };
    let mut args = vec!["serve".to_string(), "--data-dir".to_string(), dir.path().display().to_string()];
    if let Some(db) = &db {
        args.extend(["--database".to_string(), db.url.clone()]);
    }
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut checked = 0;
    for cycle in 0..cycles {
        let mut server = spawn_binary_with(exe, &args).await;
        // what every earlier cycle acknowledged is there after the restart
        let (n, lost) = check(&server.client, &server.base, &*acked.lock().await).await;
        assert!(lost.is_empty(), "cycle {cycle} (seed {seed}): lost after SIGKILL: {lost:?}");
        checked += n;
        let mut writers = Vec::new();
        for w in 0..6 {
            writers.push(tokio::spawn(write_until_refused(
                server.client.clone(),
                server.base.clone(),
                w,
                cycle,
                acked.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_millis(200 + rng.next() % 1300)).await;
        server.child.start_kill().expect("SIGKILL");
        let _ = server.child.wait().await;
        for w in writers {
            let _ = w.await;
        }
    }
    let server = spawn_binary_with(exe, &args).await;
    let a = acked.lock().await;
    let (n, lost) = check(&server.client, &server.base, &a).await;
    checked += n;
    println!(
        "crash cycles: {cycles} (seed {seed}), writes acknowledged: {}, writes checked: {checked}, writes lost: {}",
        a.writes,
        lost.len()
    );
    assert!(lost.is_empty(), "seed {seed}: lost after SIGKILL: {lost:?}");
    assert!(a.writes > 20 * cycles.min(5), "too few writes acknowledged to mean anything: {}", a.writes);
    drop(server);
    if db.is_none() {
        let c = rusqlite::Connection::open(dir.path().join("hale.db")).unwrap();
        let integrity: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(integrity, "ok");
        let out = std::process::Command::new(exe)
            .args(["audit", "verify", "--data-dir", &dir.path().display().to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the audit chain after {cycles} crashes: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // the search index holds exactly the rows of the current versions: none belongs to a
    // deleted or unknown resource, and rebuilding every row from the stored JSON (`hale
    // reindex`) changes none
    let index = || match &db {
        Some(db) => pg_index_rows(&db.url),
        None => index_rows(&dir.path().join("hale.db")),
    };
    let before = index();
    assert!(!before.is_empty());
    let mut reindex = vec!["reindex".to_string(), "--data-dir".to_string(), dir.path().display().to_string()];
    if let Some(db) = &db {
        reindex.extend(["--database".to_string(), db.url.clone()]);
    }
    let out = std::process::Command::new(exe).args(&reindex).output().unwrap();
    assert!(out.status.success(), "reindex: {}", String::from_utf8_lossy(&out.stderr));
    let after = index();
    let differ = before.iter().zip(&after).position(|(a, b)| a != b);
    assert!(
        before.len() == after.len() && differ.is_none(),
        "after {cycles} crashes the index differs from a rebuild: {} rows against {}, first difference {:?}",
        before.len(),
        after.len(),
        differ.map(|i| (&before[i], &after[i]))
    );
}

const ORPHANS: &str = "SELECT COUNT(*) FROM {t} i WHERE NOT EXISTS (SELECT 1 FROM resources r \
    WHERE r.res_type = i.res_type AND r.res_id = i.res_id AND r.deleted = 0)";

/// As [`index_rows`], on PostgreSQL (through `psql`, which `.ci/run` uses too).
fn pg_index_rows(url: &str) -> Vec<String> {
    let psql = |sql: &str| -> String {
        let out =
            std::process::Command::new("psql").args([url, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]).output().unwrap();
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let mut out = Vec::new();
    for &t in hale_store::sql::INDEX_TABLES {
        assert_eq!(psql(&ORPHANS.replace("{t}", t)).trim(), "0", "{t}: rows of deleted or unknown resources");
        out.extend(psql(&format!("SELECT x::text FROM {t} x")).lines().map(|l| format!("{t} {l}")));
    }
    out.sort();
    out
}

/// Every row of every search index table (sorted), after checking that each belongs to a
/// current, non-deleted resource.
fn index_rows(db: &std::path::Path) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut out = Vec::new();
    for &t in hale_store::sql::INDEX_TABLES {
        let orphans: i64 = c.query_row(&ORPHANS.replace("{t}", t), [], |r| r.get(0)).unwrap();
        assert_eq!(orphans, 0, "{t}: rows of deleted or unknown resources");
        let mut s = c.prepare(&format!("SELECT * FROM {t}")).unwrap();
        let n = s.column_count();
        let rows = s
            .query_map([], |r| {
                let vals: Vec<rusqlite::types::Value> = (0..n).map(|i| r.get(i)).collect::<rusqlite::Result<_>>()?;
                Ok(format!("{t} {vals:?}"))
            })
            .unwrap();
        out.extend(rows.map(Result::unwrap));
    }
    out.sort();
    out
}
