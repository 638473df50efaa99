//! PostgreSQL only (they need `HALE_TEST_POSTGRES_URL`; without it they print SKIP):
//! several Hale nodes on one database stay consistent, and start-up refuses what it
//! cannot serve.

use std::collections::BTreeMap;
use std::sync::Arc;

use hale_test_support::{TestDatabase, TestServer, bundle_link, entry_ids, json};
use serde_json::{Value, json};
use tokio::sync::Barrier;

/// A `hale serve` process: the nodes of the race tests are separate processes, each with
/// its own connection pool, as two machines behind a load balancer would be.
struct Node {
    server: hale_test_support::BinaryServer,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Node {
    fn fhir(&self, path: &str) -> String {
        format!("{}/fhir{path}", self.server.base)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.fhir(path)).send().await.unwrap()
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        let r = self.client.post(self.fhir(path)).header("content-type", "application/fhir+json");
        r.body(body.to_string()).send().await.unwrap()
    }

    async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        let r = self.client.put(self.fhir(path)).header("content-type", "application/fhir+json");
        r.body(body.to_string()).send().await.unwrap()
    }
}

/// `hale serve --database URL --data-dir DIR`.
async fn serve_on(url: &str, dir: &std::path::Path) -> hale_test_support::BinaryServer {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let args = ["serve", "--database", url, "--data-dir", &dir.display().to_string()].map(String::from);
    hale_test_support::spawn_binary_with(exe, &args).await
}

/// Two `hale serve` processes sharing one fresh database.
async fn two_nodes(test: &str) -> Option<(TestDatabase, Node, Node)> {
    if hale_test_support::require_postgres().is_none() {
        eprintln!("SKIP {test}");
        return None;
    }
    let db = TestDatabase::create().await;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let server = serve_on(&db.url, dir.path()).await;
        let client = server.client.clone();
        nodes.push(Node { server, client, _dir: dir });
    }
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    assert_ne!(a.server.base, b.server.base);
    Some((db, a, b))
}

async fn put_if_match(s: &Node, path: &str, body: &Value, version: &str) -> (u16, Value) {
    let r = s
        .client
        .put(s.fhir(path))
        .header("content-type", "application/fhir+json")
        .header("if-match", format!("W/\"{version}\""))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, json(r).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_if_match_updates_have_one_winner_per_version() {
    let Some((_db, a, b)) = two_nodes("two_nodes_if_match_updates_have_one_winner_per_version").await else {
        return;
    };
    let r = a.post("/Patient", &json!({"resourceType":"Patient","name":[{"family":"Race"}]})).await;
    assert_eq!(r.status(), 201);
    let id = json(r).await["id"].as_str().unwrap().to_string();
    let path = format!("/Patient/{id}");
    let (a, b) = (Arc::new(a), Arc::new(b));

    // rounds: every writer sends If-Match with the same current version at once
    const ROUNDS: usize = 12;
    const WRITERS: usize = 16;
    let mut winners_by_version: BTreeMap<u64, String> = BTreeMap::new();
    let (mut ok, mut failed) = (0, 0);
    for round in 0..ROUNDS {
        let version = (round + 1).to_string();
        let barrier = Arc::new(Barrier::new(WRITERS));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let node = if w % 2 == 0 { a.clone() } else { b.clone() };
            let (barrier, path, version, id) = (barrier.clone(), path.clone(), version.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let marker = format!("r{round}w{w}");
                let body = json!({"resourceType":"Patient","id":id,"name":[{"family":"Race","given":[marker]}]});
                barrier.wait().await;
                let (status, out) = put_if_match(&node, &path, &body, &version).await;
                (status, out, marker)
            }));
        }
        let mut round_winners = 0;
        for t in tasks {
            let (status, out, marker) = t.await.unwrap();
            match status {
                200 => {
                    round_winners += 1;
                    ok += 1;
                    let v: u64 = out["meta"]["versionId"].as_str().unwrap().parse().unwrap();
                    assert!(winners_by_version.insert(v, marker).is_none(), "two winners for version {v}");
                }
                412 => failed += 1,
                other => panic!("unexpected status {other}: {out}"),
            }
        }
        assert_eq!(round_winners, 1, "round {round}: exactly one If-Match update wins");
    }
    // free-for-all: each writer reads and retries until it lands 3 updates
    const LANDS: usize = 3;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let node = if w % 2 == 0 { a.clone() } else { b.clone() };
        let (path, id) = (path.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            let mut lost = 0;
            while won.len() < LANDS {
                let cur = json(node.get(&path).await).await;
                let version = cur["meta"]["versionId"].as_str().unwrap().to_string();
                let marker = format!("f{w}n{}", won.len());
                let body =
                    json!({"resourceType":"Patient","id":id,"name":[{"family":"Race","given":[marker.clone()]}]});
                let (status, out) = put_if_match(&node, &path, &body, &version).await;
                match status {
                    200 => won.push((out["meta"]["versionId"].as_str().unwrap().parse::<u64>().unwrap(), marker)),
                    412 => lost += 1,
                    other => panic!("unexpected status {other}: {out}"),
                }
            }
            (won, lost)
        }));
    }
    let mut free_ok = 0;
    let mut free_failed = 0;
    for t in tasks {
        let (won, lost) = t.await.unwrap();
        free_failed += lost;
        for (v, marker) in won {
            free_ok += 1;
            assert!(winners_by_version.insert(v, marker).is_none(), "two winners for version {v}");
        }
    }
    // zero lost updates: every acknowledged update is its own version in the history
    let total = 1 + ok + free_ok;
    let cur = json(a.get(&path).await).await;
    assert_eq!(cur["meta"]["versionId"], total.to_string());
    let hist = json(b.get(&format!("{path}/_history?_count=1000")).await).await;
    assert_eq!(hist["total"], total);
    for e in hist["entry"].as_array().unwrap() {
        let v: u64 = e["resource"]["meta"]["versionId"].as_str().unwrap().parse().unwrap();
        if v == 1 {
            continue;
        }
        let given = e["resource"]["name"][0]["given"][0].as_str().unwrap();
        assert_eq!(winners_by_version.get(&v).map(String::as_str), Some(given), "version {v}");
    }
    assert_eq!(winners_by_version.len(), ok + free_ok);
    println!(
        "RACE if-match: rounds {ROUNDS} x {WRITERS} writers on 2 nodes: {ok} won, {failed} got 412; \
         free-for-all: {free_ok} won, {free_failed} got 412; {total} versions, none lost"
    );
    assert_eq!((ok, failed), (ROUNDS, ROUNDS * (WRITERS - 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_identical_conditional_creates_make_one_resource() {
    let Some((_db, a, b)) = two_nodes("two_nodes_identical_conditional_creates_make_one_resource").await else {
        return;
    };
    let (a, b) = (Arc::new(a), Arc::new(b));
    const CLIENTS: usize = 24;
    for key in ["c1", "c2", "c3"] {
        let barrier = Arc::new(Barrier::new(CLIENTS));
        let mut tasks = Vec::new();
        for w in 0..CLIENTS {
            let node = if w % 2 == 0 { a.clone() } else { b.clone() };
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                let body = json!({"resourceType":"Patient","identifier":[{"system":"urn:race","value":key}]});
                barrier.wait().await;
                let r = node
                    .client
                    .post(node.fhir("/Patient"))
                    .header("content-type", "application/fhir+json")
                    .header("if-none-exist", format!("identifier=urn:race|{key}"))
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (status, json(r).await["id"].as_str().map(str::to_string))
            }));
        }
        let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
        let mut ids = std::collections::BTreeSet::new();
        for t in tasks {
            let (status, id) = t.await.unwrap();
            *counts.entry(status).or_default() += 1;
            ids.extend(id);
        }
        let found = json(a.get(&format!("/Patient?identifier=urn:race|{key}&_total=accurate")).await).await;
        println!(
            "RACE conditional create {key}: {CLIENTS} clients on 2 nodes: statuses {counts:?}, resources {}",
            found["total"]
        );
        assert_eq!(found["total"], 1, "exactly one resource");
        assert_eq!(counts.get(&201), Some(&1), "{counts:?}");
        assert_eq!(counts.get(&200), Some(&(CLIENTS - 1)), "{counts:?}");
        assert_eq!(ids.len(), 1);
    }
    // conditional updates racing to create the same resource: one resource as well
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for w in 0..CLIENTS {
        let node = if w % 2 == 0 { a.clone() } else { b.clone() };
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let body =
                json!({"resourceType":"Patient","identifier":[{"system":"urn:race","value":"u1"}],"gender":"other"});
            barrier.wait().await;
            node.put("/Patient?identifier=urn:race|u1", &body).await.status().as_u16()
        }));
    }
    let mut counts: BTreeMap<u16, usize> = BTreeMap::new();
    for t in tasks {
        *counts.entry(t.await.unwrap()).or_default() += 1;
    }
    let found = json(b.get("/Patient?identifier=urn:race|u1&_total=accurate").await).await;
    println!(
        "RACE conditional update u1: {CLIENTS} clients on 2 nodes: statuses {counts:?}, resources {}",
        found["total"]
    );
    assert_eq!(found["total"], 1);
    assert_eq!(counts.get(&201), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&200), Some(&(CLIENTS - 1)), "{counts:?}");
    let hist =
        json(a.get(&format!("/Patient/{}/_history", found["entry"][0]["resource"]["id"].as_str().unwrap())).await)
            .await;
    assert_eq!(hist["total"], CLIENTS);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_with_a_newer_schema_is_refused() {
    if hale_test_support::require_postgres().is_none() {
        return;
    }
    let db = TestDatabase::create().await;
    // migrate it, then pretend a newer Hale did too
    drop(TestServer::spawn_with(|c| c.database_url = db.url.clone()).await);
    db.batch_execute("INSERT INTO schema_migrations VALUES (999, 0)").await;
    let cfg = hale_server::Config {
        listen: "127.0.0.1:0".into(),
        database_url: db.url.clone(),
        ..hale_server::Config::default()
    };
    let err = hale_server::Server::bind(&cfg).await.err().expect("refused");
    assert!(err.to_string().contains("newer than this Hale knows"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_is_a_clear_error() {
    let cfg = hale_server::Config {
        listen: "127.0.0.1:0".into(),
        database_url: "postgres://hale:secret@127.0.0.1:1/hale".into(),
        ..hale_server::Config::default()
    };
    let err = hale_server::Server::bind(&cfg).await.err().expect("refused");
    let text = err.to_string();
    assert!(text.contains("cannot connect to PostgreSQL at postgres://hale:***@127.0.0.1:1/hale"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hale_migrate_prepares_a_database_once_and_again() {
    if hale_test_support::require_postgres().is_none() {
        return;
    }
    let db = TestDatabase::create().await;
    for _ in 0..2 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hale"))
            .args(["migrate", "--database", &db.url])
            .env_remove("HALE_CONFIG")
            .env("HALE_LOG__LEVEL", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("is migrated"), "{stdout}");
    }
    db.batch_execute("SELECT version FROM schema_migrations WHERE version = 1").await;
}

/// Paging links are self-contained: a page made by one node continues on the other,
/// forwards and backwards, while a third writer adds resources in between.
#[tokio::test(flavor = "multi_thread")]
async fn paging_links_made_by_one_node_work_on_the_other() {
    let Some((_db, a, b)) = two_nodes("paging_links_made_by_one_node_work_on_the_other").await else {
        return;
    };
    let entries: Vec<Value> = (0..7)
        .map(|i| json!({"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient","identifier":[{"system":"urn:paging","value":format!("p{i}")}]}}))
        .collect();
    let r = a.post("", &json!({"resourceType":"Bundle","type":"transaction","entry":entries})).await;
    assert_eq!(r.status(), 200);
    // the path and query of a link, to send to either node
    let path_of = |url: &str| url.split_once("/fhir").unwrap().1.to_string();
    let mut page = json(a.get("/Patient?identifier=urn:paging|&_count=3&_sort=_id").await).await;
    let mut seen = entry_ids(&page);
    let mut nodes = [&b, &a].into_iter().cycle();
    // a write between pages must not shift them
    b.post("/Patient", &json!({"resourceType":"Patient","identifier":[{"system":"urn:other","value":"x"}]})).await;
    while let Some(next) = bundle_link(&page, "next") {
        page = json(nodes.next().unwrap().get(&path_of(&next)).await).await;
        seen.extend(entry_ids(&page));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(sorted, seen, "every resource once, in id order");
    // and back from the last page, on the other node
    let previous = bundle_link(&page, "previous").expect("the last page links back");
    let back = json(b.get(&path_of(&previous)).await).await;
    assert_eq!(entry_ids(&back), seen[3..6].to_vec());
}

/// `hale ARGS --data-dir DIR --database URL`: its exit status and its output.
fn hale_cli(dir: &std::path::Path, url: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hale"))
        .env_remove("HALE_CONFIG")
        .env_remove("HALE_DATA_DIR")
        .env_remove("HALE_DATABASE_URL")
        .env("HALE_LOG__LEVEL", "warn")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .args(["--database", url])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout.trim().to_string(), stderr.to_string())
}

/// The positions of a checkpoint file's lines.
fn checkpoint_positions(dir: &std::path::Path) -> std::collections::BTreeSet<i64> {
    let text = std::fs::read_to_string(dir.join("audit/checkpoints.jsonl")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["pos"].as_i64().unwrap()).collect()
}

/// Nodes with different data directories on one database share the token signing key,
/// the installation id and the audit checkpoint key (the first node stores them, the
/// second adopts them): a token printed for node A's data directory works at node B, a
/// token revoked at A is refused by B within about a second, and `hale audit verify`
/// with B's data directory checks the checkpoints A signed.
#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_share_signing_keys_revocations_and_checkpoints() {
    let Some((db, a, mut b)) = two_nodes("two_nodes_share_signing_keys_revocations_and_checkpoints").await else {
        return;
    };
    let (a_dir, b_dir) = (a._dir.path(), b._dir.path());
    for f in ["keys/token-signing.p8", "keys/installation-id", "keys/audit-signing.key", "keys/audit-signing.pub"] {
        assert_eq!(std::fs::read(a_dir.join(f)).unwrap(), std::fs::read(b_dir.join(f)).unwrap(), "{f}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for f in ["keys/token-signing.p8", "keys/audit-signing.key"] {
            let mode = std::fs::metadata(b_dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{f} is readable by its owner only");
        }
    }
    let jwks = |n: &Node| {
        let url = format!("{}/auth/jwks", n.server.base);
        async move { json(reqwest::get(url).await.unwrap()).await }
    };
    assert_eq!(jwks(&a).await, jwks(&b).await);

    // a token printed for A's data directory works at B...
    let (ok, _, err) = hale_cli(
        a_dir,
        &db.url,
        &["client", "add", "ops-app", "--name", "Ops", "--redirect-uri", "http://127.0.0.1/cb"],
    );
    assert!(ok, "{err}");
    let (ok, token, err) = hale_cli(a_dir, &db.url, &["token", "--client", "ops-app", "--scope", "system/Patient.rs"]);
    assert!(ok, "{err}");
    assert!(!err.contains(&token) && !err.contains("pkcs8"), "nothing secret on stderr: {err}");
    let anonymous = reqwest::Client::new();
    let get = |n: &Node| anonymous.get(n.fhir("/Patient")).bearer_auth(&token).send();
    assert_eq!(get(&b).await.unwrap().status(), 200);
    assert_eq!(get(&a).await.unwrap().status(), 200);
    // ...and revoked at A, B refuses it within about a second
    let r = anonymous
        .post(format!("{}/auth/revoke", a.server.base))
        .form(&[("token", token.as_str()), ("client_id", "ops-app")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = get(&b).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));

    // B stops; A writes and signs checkpoints; verified with B's data directory
    let _ = b.server.child.kill().await;
    let _ = b.server.child.wait().await;
    let before_b = checkpoint_positions(b_dir);
    for i in 0..3 {
        let r = a.put(&format!("/Patient/cp-{i}"), &json!({"resourceType":"Patient","id":format!("cp-{i}")})).await;
        assert_eq!(r.status(), 201);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let signed_by_a = checkpoint_positions(a_dir);
    let only_a: Vec<i64> = signed_by_a.difference(&before_b).copied().collect();
    assert!(!only_a.is_empty(), "A signed checkpoints B did not: {signed_by_a:?} {before_b:?}");
    let (ok, out, err) = hale_cli(b_dir, &db.url, &["audit", "verify"]);
    assert!(ok, "{out}{err}");
    let count: usize = out.split(" signed checkpoints").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= signed_by_a.union(&before_b).count(), "every node's checkpoints are checked: {out}");
    // a checkpoint not signed with the shared key fails verification on any node
    let forged = json!({"pos": 1, "hash": "00".repeat(32), "at": "2020-01-01T00:00:00.000Z", "sig": "AAAA"});
    db.batch_execute(&format!("INSERT INTO audit_checkpoint (body) VALUES ('{forged}')")).await;
    let (ok, out, err) = hale_cli(b_dir, &db.url, &["audit", "verify"]);
    assert!(!ok, "{out}");
    assert!(err.contains("not a validly signed checkpoint"), "{err}");
}

/// `hale ARGS` with no configuration from the environment: its exit status, stdout and
/// stderr.
fn hale_run(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hale"))
        .env_remove("HALE_CONFIG")
        .env_remove("HALE_DATA_DIR")
        .env_remove("HALE_DATABASE_URL")
        .env("HALE_LOG__LEVEL", "warn")
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout.trim().to_string(), stderr.trim().to_string())
}

/// The databases on the test server whose names begin `hale_verify_` (verification's
/// scratch databases).
async fn scratch_databases() -> i64 {
    let url = hale_test_support::postgres_url().unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.query_one("SELECT count(*) FROM pg_database WHERE datname LIKE 'hale_verify_%'", &[]).await.unwrap().get(0)
}

/// `hale backup create` on PostgreSQL while writers keep writing (pg_dump under the
/// snapshot the manifest's digests read), encrypted with a key file; `hale backup
/// verify` restores it into a scratch database (dropped after) and checks every hash;
/// `hale backup restore` into an empty database, served, counts what the manifest says.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_backup_taken_under_write_load_verifies_and_restores_with_equal_counts() {
    if hale_test_support::require_postgres().is_none() {
        eprintln!("SKIP a_postgres_backup_taken_under_write_load_verifies_and_restores_with_equal_counts");
        return;
    }
    let _scratch = crate::PG_SCRATCH.lock().await;
    let live = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let node = serve_on(&live.url, &dir.path().join("node")).await;
    let fhir = |path: &str| format!("{}/fhir{path}", node.base);
    for i in 0..3 {
        let p = json!({"resourceType": "Patient", "id": format!("bk{i}"), "name": [{"family": format!("Backup{i}")}]});
        let r = node.client.put(fhir(&format!("/Patient/bk{i}"))).header("content-type", "application/fhir+json");
        assert!(r.body(p.to_string()).send().await.unwrap().status().is_success());
    }
    let key = dir.path().join("backup.key");
    let os = |s: &str| std::ffi::OsString::from(s);
    let (ok, _, err) = hale_run(&[&os("backup"), &os("keygen"), &os("--out"), key.as_os_str()]);
    assert!(ok, "{err}");

    // writers create Observations and update Patients while the backup is taken
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (client, base, stop) = (node.client.clone(), node.base.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (url, body, put) = if n % 3 == 2 {
                    let p = json!({"resourceType": "Patient", "id": format!("bk{w}"),
                        "name": [{"family": format!("Backup{w}"), "given": [format!("v{n}")]}]});
                    (format!("{base}/fhir/Patient/bk{w}"), p, true)
                } else {
                    let o = json!({"resourceType": "Observation", "status": "final",
                        "code": {"text": format!("load {w}-{n}")}, "valueQuantity": {"value": n}});
                    (format!("{base}/fhir/Observation"), o, false)
                };
                let r = if put { client.put(url) } else { client.post(url) };
                let r = r.header("content-type", "application/fhir+json").body(body.to_string()).send().await.unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let file = dir.path().join("backups/pg.tar.gz");
    let (ok, created, err) = hale_run(&[
        &os("backup"),
        &os("create"),
        &os("--out"),
        file.as_os_str(),
        &os("--key"),
        key.as_os_str(),
        &os("--database"),
        &os(&live.url),
    ]);
    assert!(ok, "{err}");
    assert!(created.starts_with("backup written:") && created.contains("encrypted"), "{created}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    assert!(written > 10, "the writers wrote during the backup ({written})");
    drop(node);

    // verified in a scratch database beside the live one, dropped afterwards
    let verify = |key: Option<&std::path::Path>| {
        let mut args = vec![os("backup"), os("verify"), file.clone().into_os_string(), os("--database"), os(&live.url)];
        if let Some(k) = key {
            args.extend([os("--key"), k.as_os_str().to_owned()]);
        }
        hale_run(&args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>())
    };
    let (ok, verified, err) = verify(Some(&key));
    assert!(ok, "{err}");
    assert!(
        verified.contains("match their hashes")
            && verified.contains("pg_restore into a scratch database ok")
            && verified.contains("audit trail verified"),
        "{verified}"
    );
    assert_eq!(scratch_databases().await, 0, "the scratch database is dropped");
    // without the key, or with another, one line and nothing else
    let (ok, _, err) = verify(None);
    assert!(!ok && err.lines().count() == 1 && err.contains("is encrypted"), "{err}");
    let other = dir.path().join("other.key");
    assert!(hale_run(&[&os("backup"), &os("keygen"), &os("--out"), other.as_os_str()]).0);
    let (ok, _, err) = verify(Some(&other));
    assert!(!ok && err.lines().count() == 1 && err.contains("the key does not open"), "{err}");

    // restored into an empty database and served: the counts of the manifest
    let manifest = {
        let k = hale_server::backup::Key::read(&key).unwrap();
        let f = std::fs::File::open(&file).unwrap();
        crate::backup_manifest(hale_server::backup::seal::OpenReader::new(f, &k).unwrap())
    };
    assert_eq!(manifest["store"], "postgres", "{manifest}");
    let target = TestDatabase::create().await;
    let restore = |url: &str| {
        hale_run(&[
            &os("backup"),
            &os("restore"),
            file.as_os_str(),
            &os("--key"),
            key.as_os_str(),
            &os("--database"),
            &os(url),
        ])
    };
    let (ok, restored, err) = restore(&target.url);
    assert!(ok, "{err}");
    assert!(restored.contains("verified"), "{restored}");
    // never into a database that holds tables
    let (ok, _, err) = restore(&live.url);
    assert!(!ok && err.lines().count() == 1 && err.contains("holds tables already"), "{err}");
    let copy = serve_on(&target.url, &dir.path().join("copy")).await;
    let count = |path: &'static str| {
        let (client, base) = (copy.client.clone(), copy.base.clone());
        async move { json(client.get(format!("{base}/fhir/{path}")).send().await.unwrap()).await["total"].clone() }
    };
    // no Observation was updated or deleted: one version each
    assert_eq!(count("Observation?_summary=count").await, manifest["per_type"]["Observation"]["versions"]);
    assert_eq!(count("Patient?_summary=count").await, 3);
    // each Patient's versions, none deleted: its current version is their number
    let mut patient_versions = 0;
    for i in 0..3 {
        let p = json(copy.client.get(format!("{}/fhir/Patient/bk{i}", copy.base)).send().await.unwrap()).await;
        patient_versions += p["meta"]["versionId"].as_str().unwrap().parse::<u64>().unwrap();
    }
    assert!(patient_versions > 3, "the Patients were updated during the backup");
    assert_eq!(Some(patient_versions), manifest["per_type"]["Patient"]["versions"].as_u64(), "{manifest}");
}

/// `hale check --database URL` checks a copy in a scratch database (dropped after): a
/// lost index row and an index row of nobody are each found, and the database is left
/// as it was.
#[tokio::test(flavor = "multi_thread")]
async fn check_on_postgres_finds_an_index_that_is_not_its_rebuild_and_changes_nothing() {
    if hale_test_support::require_postgres().is_none() {
        eprintln!("SKIP check_on_postgres_finds_an_index_that_is_not_its_rebuild_and_changes_nothing");
        return;
    }
    let _scratch = crate::PG_SCRATCH.lock().await;
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let node = serve_on(&db.url, dir.path()).await;
    for i in 0..4 {
        let p = json!({"resourceType": "Patient", "name": [{"family": format!("Check{i}")}], "gender": "female",
            "birthDate": format!("1970-01-0{}", i + 1)});
        let r = node.client.post(format!("{}/fhir/Patient", node.base)).header("content-type", "application/fhir+json");
        assert!(r.body(p.to_string()).send().await.unwrap().status().is_success());
    }
    drop(node);
    let check = || hale_cli(dir.path(), &db.url, &["check"]);
    let (ok, text, err) = check();
    assert!(ok, "{err}");
    assert!(
        text.contains("scratch database (pg_dump, pg_restore) ok")
            && text.contains("equals a rebuild")
            && text.contains("audit trail verified"),
        "{text}"
    );
    assert_eq!(scratch_databases().await, 0, "the scratch database is dropped");
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let rows = async || -> i64 { client.query_one("SELECT COUNT(*) FROM search_token", &[]).await.unwrap().get(0) };
    // a lost index row: found, and the store is left as it was
    db.batch_execute("DELETE FROM search_token WHERE ctid IN (SELECT ctid FROM search_token LIMIT 1)").await;
    let n = rows().await;
    let (ok, _, err) = check();
    assert!(!ok && err.contains("differs from a rebuild") && err.contains("search_token"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(rows().await, n, "hale check changes nothing");
    assert_eq!(scratch_databases().await, 0, "the scratch database is dropped after a failure too");
    // an index row of a resource that is not there
    let (ok, _, err) = hale_cli(dir.path(), &db.url, &["reindex"]);
    assert!(ok, "{err}");
    assert!(check().0, "reindexed, it checks again");
    db.batch_execute("UPDATE search_token SET res_id = 'nobody' WHERE ctid IN (SELECT ctid FROM search_token LIMIT 1)")
        .await;
    let (ok, _, err) = check();
    assert!(!ok && err.contains("rows of deleted or unknown resources"), "{err}");
}
