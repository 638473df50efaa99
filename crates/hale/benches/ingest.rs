//! Ingest of transaction bundles of one patient each (Synthea-120), with the floor it
//! is measured against:
//!
//! 1. parse: `serde_json` parsing of the bundles alone;
//! 2. parse + rows: parsing and writing every resource as a version row in one store
//!    transaction per bundle, without validation or index rows;
//! 3. import: `hale import`'s path (validate, resolve references, index, write), with
//!    several bundles in flight; then, as a measurement of what bounds the SQLite writer,
//!    the same into a store whose index tables lack their lookup indexes; then on
//!    PostgreSQL (with `HALE_TEST_POSTGRES_URL`): one node, two nodes with 4 bundles in
//!    flight each, two nodes with 2 each; and `hale migrate-store` of the one-node
//!    database into SQLite and back into PostgreSQL;
//! 4. HTTP: `POST /fhir` of each bundle to the release binary, 4 clients.
//!
//! `cargo bench -p hale --bench ingest` (needs ../shared/data/synthea-120); a word after
//! `--` runs only the stages named by it: `parse`, `rows`, `validate`, `import`,
//! `bound`, `postgres` or `http` (e.g. `cargo bench -p hale --bench ingest -- postgres`).

use std::sync::Arc;
use std::time::Instant;

use hale_store::{IndexRows, Method, NewVersion, Store, TxOp};
use serde_json::Value;

/// CPU time since boot in clock ticks: (this process, the whole machine busy, idle).
fn cpu_ticks() -> (u64, u64, u64) {
    let fields = |text: &str, skip: usize| -> Vec<u64> {
        text.split_whitespace().skip(skip).map(|f| f.parse().unwrap_or(0)).collect()
    };
    let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // fields after the parenthesised command name: state is 3rd, utime and stime 14th and 15th
    let own = own.rsplit_once(')').map(|(_, rest)| fields(rest, 0)).unwrap_or_default();
    let own = own.get(11).unwrap_or(&0) + own.get(12).unwrap_or(&0);
    let all = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let all = fields(all.lines().next().unwrap_or(""), 1);
    let idle = all.get(3).unwrap_or(&0) + all.get(4).unwrap_or(&0);
    (own, all.iter().take(8).sum::<u64>() - idle, idle)
}

/// Where the CPU went during a load: µs a resource in this process and in all other
/// processes (the database server, for PostgreSQL), and the share of the machine idle.
fn cpu_split(before: (u64, u64, u64), after: (u64, u64, u64), resources: usize) -> String {
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space
    let hz = 100.0;
    let us = |ticks: u64| ticks as f64 / hz * 1e6 / resources as f64;
    let own = after.0 - before.0;
    let busy = after.1 - before.1;
    let idle = after.2 - before.2;
    format!(
        "CPU a resource: {:.0} µs Hale, {:.0} µs other processes; {:.0}% idle",
        us(own),
        us(busy.saturating_sub(own)),
        100.0 * idle as f64 / (busy + idle).max(1) as f64
    )
}

/// Loads the shared bundles through the first repository, then the patient bundles
/// spread over all of them, `per_repo` in flight each; resources/s of the patient part
/// and where the CPU went (see [`cpu_split`]).
fn load(
    rt: &tokio::runtime::Runtime,
    repos: &[hale_repository::Repository],
    shared: &[String],
    patients: &[String],
    per_repo: usize,
) -> (f64, String) {
    let resources: usize = patients.iter().map(|t| t.matches("\"request\"").count()).sum();
    rt.block_on(async {
        for text in shared {
            repos[0].process_bundle(serde_json::from_str(text).unwrap()).await.unwrap();
        }
    });
    // shared with the tasks, not copied in the timed part
    let texts: Arc<[String]> = patients.into();
    let t = Instant::now();
    let cpu = cpu_ticks();
    rt.block_on(async {
        let sems: Vec<_> = repos.iter().map(|_| Arc::new(tokio::sync::Semaphore::new(per_repo))).collect();
        let mut tasks = Vec::new();
        for i in 0..texts.len() {
            let k = i % repos.len();
            let (repo, sem, texts) = (repos[k].clone(), sems[k].clone(), texts.clone());
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await.unwrap();
                let v: Value = serde_json::from_str(&texts[i]).unwrap();
                repo.process_bundle(v).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    (resources as f64 / t.elapsed().as_secs_f64(), cpu_split(cpu, cpu_ticks(), resources))
}

/// `hale migrate-store` of what is in the PostgreSQL database at `url` into a fresh SQLite
/// store and from there into a fresh PostgreSQL database: versions/s each way, verified.
fn migrate_both_ways(rt: &tokio::runtime::Runtime, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let target = rt.block_on(hale_test_support::TestDatabase::create());
    let open = |cfg: hale_server::Config| rt.block_on(hale_server::system_repository(&cfg, "migrate-store")).unwrap();
    let pg = open(hale_server::Config { database_url: url.to_string(), ..Default::default() });
    let sqlite = open(hale_server::Config { data_dir: dir.path().to_path_buf(), ..Default::default() });
    let pg2 = open(hale_server::Config { database_url: target.url.clone(), ..Default::default() });
    for (label, from, to) in [("PostgreSQL -> SQLite", &pg, &sqlite), ("SQLite -> PostgreSQL", &sqlite, &pg2)] {
        let s = rt.block_on(hale_server::bulk::copy_store(from, to, false)).unwrap();
        println!(
            "{:<34} {:>10.0} versions/s ({} versions in {:.1} s, verified)",
            format!("migrate-store {label}"),
            s.versions as f64 / s.seconds,
            s.versions,
            s.seconds
        );
    }
}

/// Parses each patient bundle and writes its resources as new versions in one store
/// transaction, without validation, with their index rows when `indexed`, on a fresh
/// SQLite store; resources/s.
fn insert_rows(rt: &tokio::runtime::Runtime, patients: &[String], indexed: bool) -> f64 {
    let resources: usize = patients.iter().map(|t| t.matches("\"request\"").count()).sum();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(hale_store_sqlite::SqliteStore::open(&dir.path().join("rows.db")).unwrap());
    let t = Instant::now();
    rt.block_on(async {
        for text in patients {
            let v: Value = serde_json::from_str(text).unwrap();
            let ops: Vec<TxOp> = v["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let r = e["resource"].clone();
                    let ty = hale_fhir::ResourceType::parse(r["resourceType"].as_str().unwrap()).unwrap();
                    let index = if indexed { hale_search::extract::extract(&r) } else { IndexRows::default() };
                    TxOp::Write {
                        ty,
                        id: hale_fhir::ResourceId::generate(),
                        method: Method::Post,
                        new: Box::new(NewVersion::new(r, index)),
                        preconditions: Vec::new(),
                    }
                })
                .collect();
            // one audit row per transaction, as the gate writes it
            let audit = hale_store::AuditWrite::new(|touched| hale_store::AuditRow {
                recorded: hale_store::Instant::now(),
                action: "transaction".into(),
                agent: "system:bench".into(),
                outcome: "0".into(),
                patients: Vec::new(),
                body: format!("{{\"resourceType\":\"AuditEvent\",\"entities\":{}}}", touched.len()),
            });
            store.transaction(ops, audit).await.map_err(|(_, e)| e).unwrap();
        }
    });
    resources as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |stage: &str| only.is_empty() || only.iter().any(|o| o == stage);
    let Some(dir) = hale_test_support::shared_data("synthea-120") else {
        println!("ingest: SKIPPED, ../shared/data/synthea-120 is absent");
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let texts: Vec<String> = files.iter().map(|f| hale_test_support::read_bz2(f)).collect();
    let (shared, patients) = texts.split_at(2);
    let resources: usize = patients.iter().map(|t| t.matches("\"request\"").count()).sum();
    println!(
        "ingest: {} patient bundles, {resources} resources, {} MB of JSON",
        patients.len(),
        patients.iter().map(String::len).sum::<usize>() / 1_000_000
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    if want("parse") {
        // 1. parse only
        let t = Instant::now();
        let mut n = 0;
        for text in patients {
            let v: Value = serde_json::from_str(text).unwrap();
            n += v["entry"].as_array().unwrap().len();
        }
        let parse_rate = n as f64 / t.elapsed().as_secs_f64();
        println!("{:<34} {:>10.0} resources/s", "parse JSON", parse_rate);
    }

    // 2. parse + rows, no validation, no indexes
    let rows_rate = want("rows").then(|| insert_rows(&rt, patients, false));
    if let Some(rate) = rows_rate {
        println!("{:<34} {:>10.0} resources/s", "parse + insert rows (no indexes)", rate);
    }
    // "(N% of the rows floor)" when the floor was measured
    let of_floor =
        |rate: f64| rows_rate.map(|f| format!(" ({:.0}% of the rows floor)", 100.0 * rate / f)).unwrap_or_default();

    if want("validate") {
        // 2b. the CPU work of a write without the store: validation and index extraction,
        // then the same with the R4 invariants as every write checks them (the issue's
        // measure: with invariants, at least half the rate without)
        let pass = |invariants: bool| {
            let t = Instant::now();
            let (mut rows, mut broken) = (0, 0);
            for text in patients {
                let v: Value = serde_json::from_str(text).unwrap();
                for e in v["entry"].as_array().unwrap() {
                    std::hint::black_box(hale_fhir::validate::validate_resource(&e["resource"]));
                    if invariants {
                        broken += hale_fhirpath::invariants::check(&e["resource"]).len();
                    }
                    rows += hale_search::extract::extract(&e["resource"]).row_count();
                }
            }
            (resources as f64 / t.elapsed().as_secs_f64(), rows, broken)
        };
        let (plain, rows, _) = pass(false);
        println!(
            "{:<34} {:>10.0} resources/s ({:.1} index rows a resource)",
            "parse + validate + extract rows",
            plain,
            rows as f64 / resources as f64
        );
        let (with, _, broken) = pass(true);
        println!(
            "{:<34} {:>10.0} resources/s ({:.0}% of the rate without; {broken} invariants broken)",
            "... and the R4 invariants",
            with,
            100.0 * with / plain
        );
    }

    // 2c. parse + insert rows with their index rows, no validation
    if want("rows") {
        println!("{:<34} {:>10.0} resources/s", "parse + extract + insert all rows", insert_rows(&rt, patients, true));
    }

    if want("import") {
        // 3. the import path, 4 bundles in flight
        let dir_import = tempfile::tempdir().unwrap();
        let cfg = hale_server::Config { data_dir: dir_import.path().to_path_buf(), ..Default::default() };
        let repo = rt.block_on(hale_server::system_repository(&cfg, "bench")).unwrap();
        let (import_rate, _) = load(&rt, &[repo], shared, patients, 4);
        println!("{:<34} {:>10.0} resources/s{}", "import path (4 in flight)", import_rate, of_floor(import_rate));
    }

    if want("bound") {
        // 3a. the SQLite writer's bound, a measurement rather than a configuration: the same
        // import into a store whose index tables keep their rows and owner indexes but not
        // their lookup indexes (such a store could not search)
        let dir_bound = tempfile::tempdir().unwrap();
        let cfg = hale_server::Config { data_dir: dir_bound.path().to_path_buf(), ..Default::default() };
        drop(rt.block_on(hale_server::system_repository(&cfg, "bench")).unwrap());
        let c = rusqlite::Connection::open(cfg.sqlite_path()).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        let lookups: Vec<String> = c
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name LIKE 'search%' \
                 AND name NOT LIKE '%owner' AND sql IS NOT NULL",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for name in &lookups {
            c.execute_batch(&format!("DROP INDEX {name}")).unwrap();
        }
        drop(c);
        let repo = rt.block_on(hale_server::system_repository(&cfg, "bench")).unwrap();
        let (bound_rate, _) = load(&rt, &[repo], shared, patients, 4);
        println!(
            "{:<34} {:>10.0} resources/s (without the {} lookup indexes: the writer's bound)",
            "import path, no lookup indexes",
            bound_rate,
            lookups.len()
        );
    }

    // 3b. the same on PostgreSQL, one node and two nodes (two pools) on one database
    if want("postgres") && hale_test_support::postgres_url().is_some() {
        // (nodes, bundles in flight at each): two nodes with the load of one each, and two
        // nodes sharing the load of one (the same transactions in flight in all, so any
        // difference is the cost of a second node, not of more concurrency)
        for (nodes, per_node) in [(1, 4), (2, 4), (2, 2)] {
            let db = rt.block_on(hale_test_support::TestDatabase::create());
            let repos: Vec<_> = (0..nodes)
                .map(|_| {
                    let cfg = hale_server::Config { database_url: db.url.clone(), ..Default::default() };
                    rt.block_on(hale_server::system_repository(&cfg, "bench")).unwrap()
                })
                .collect();
            let (rate, cpu) = load(&rt, &repos, shared, patients, per_node);
            println!(
                "{:<34} {:>10.0} resources/s ({cpu})",
                format!(
                    "PostgreSQL import, {nodes} node{} ({per_node} in flight each)",
                    if nodes > 1 { "s" } else { "" }
                ),
                rate
            );
            if nodes == 1 {
                migrate_both_ways(&rt, &db.url);
            }
            drop(repos);
            drop(db);
        }
    } else if want("postgres") {
        println!("PostgreSQL stages SKIPPED: set HALE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/DB");
    }

    if want("http") {
        // 4. over HTTP against the binary
        let dir_http = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let server =
                hale_test_support::spawn_binary(std::path::Path::new(env!("CARGO_BIN_EXE_hale")), dir_http.path())
                    .await;
            let client = server.client.clone();
            for text in shared {
                let r = client
                    .post(format!("{}/fhir", server.base))
                    .header("content-type", "application/fhir+json")
                    .body(text.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
            }
            // bodies made before the clock starts (a clone of Bytes shares them)
            let bodies: Vec<bytes::Bytes> = patients.iter().map(|t| bytes::Bytes::from(t.clone())).collect();
            let t = Instant::now();
            let sem = Arc::new(tokio::sync::Semaphore::new(4));
            let mut tasks = Vec::new();
            for text in bodies {
                let (client, base, sem) = (client.clone(), server.base.clone(), sem.clone());
                tasks.push(tokio::spawn(async move {
                    let _p = sem.acquire().await.unwrap();
                    let r = client
                        .post(format!("{base}/fhir"))
                        .header("content-type", "application/fhir+json")
                        .body(text)
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let rate = resources as f64 / t.elapsed().as_secs_f64();
            println!("{:<34} {:>10.0} resources/s{}", "HTTP POST /fhir (4 clients)", rate, of_floor(rate));
        });
    }
}
