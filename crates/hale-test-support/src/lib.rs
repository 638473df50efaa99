//! Test support: start a real Hale server on port 0 with a fresh store, in process
//! ([`TestServer`]) or as the `hale` binary ([`spawn_binary`]), and talk to it over HTTP.
//!
//! The store is SQLite in a fresh data directory, or, when `HALE_TEST_STORE=postgres`
//! and `HALE_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`) are
//! set, a fresh PostgreSQL database ([`TestDatabase`]) created for each server and
//! dropped with it. So one conformance suite runs against both backends.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use hale_server::Config;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The scopes of the tests' own token: everything a client acting for no user can do.
pub const SYSTEM_SCOPE: &str = "system/*.cruds";

/// A token for a client acting for no user (`system/*.cruds`), signed with the key of
/// `data_dir` (created if missing), as `hale token --client hale-tests` prints.
pub fn system_token(data_dir: &Path) -> String {
    token_for_client(data_dir, "hale-tests", SYSTEM_SCOPE)
}

/// A client token with `scope`, signed with the key of `data_dir`.
pub fn token_for_client(data_dir: &Path, client: &str, scope: &str) -> String {
    let keys = hale_server::TokenKeys::open(data_dir).expect("token keys");
    let scopes = hale_access::Scopes::parse(scope, true).expect("scopes");
    keys.sign(&keys.client_claims(client, &scopes, 3600))
}

/// The grant of a user token made by [`user_token`].
#[derive(Debug, Clone, Default)]
pub struct UserGrant<'a> {
    pub role: &'a str,
    pub organization: Option<&'a str>,
    pub patients: &'a [&'a str],
    pub fhir_user: Option<&'a str>,
    pub scope: &'a str,
    pub launch_patient: Option<&'a str>,
}

/// A token for user `username` with grant `g`, signed with the key of `data_dir` (as
/// `hale token --user` prints for an account with that role and links).
pub fn user_token(data_dir: &Path, username: &str, g: &UserGrant<'_>) -> String {
    let keys = hale_server::TokenKeys::open(data_dir).expect("token keys");
    let scopes = hale_access::Scopes::parse(g.scope, true).expect("scopes");
    let account = hale_identity::Account {
        id: format!("acc-{username}"),
        username: username.to_string(),
        display_name: username.to_string(),
        role: g.role.to_string(),
        fhir_user: g.fhir_user.map(str::to_string),
        organization: g.organization.map(str::to_string),
        patients: g.patients.iter().map(|p| p.to_string()).collect(),
        password_hash: String::new(),
        must_change_password: false,
        totp_secret: None,
        totp_confirmed: false,
        totp_last_step: 0,
        disabled: false,
        created: 0,
        updated: 0,
    };
    keys.sign(&keys.user_claims(&account, "hale-tests", &scopes, g.launch_patient, 3600))
}

/// An HTTP client that sends `Authorization: Bearer <token>` with every request.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header value");
    v.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, v);
    reqwest::Client::builder().default_headers(headers).build().expect("client")
}

/// A server running in this process on a free port, with its own data directory.
pub struct TestServer {
    pub base: String,
    /// Sends the system token ([`system_token`]) with every request; use a client of
    /// your own for other callers.
    pub client: reqwest::Client,
    /// The token `client` sends.
    pub token: String,
    pub data_dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The PostgreSQL database this server owns (dropped after the server stops).
    database: Option<TestDatabase>,
}

impl TestServer {
    pub async fn spawn() -> TestServer {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server after `tweak` has adjusted its configuration. Unless `tweak` sets
    /// a `database_url`, the store is the one the environment selects (see the crate
    /// documentation).
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut cfg =
            Config { listen: "127.0.0.1:0".into(), data_dir: data_dir.path().to_path_buf(), ..Config::default() };
        tweak(&mut cfg);
        let mut database = None;
        if cfg.database_url.is_empty() && store_is_postgres() {
            let db = TestDatabase::create().await;
            cfg.database_url = db.url.clone();
            cfg.database_pool_size = 8;
            database = Some(db);
        }
        let server = hale_server::Server::bind(&cfg).await.expect("server starts");
        let addr = server.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));
        let token = system_token(data_dir.path());
        TestServer {
            base: format!("http://{addr}"),
            client: client_with_token(&token),
            token,
            data_dir,
            shutdown: Some(tx),
            database,
        }
    }

    /// A repository of Hale's own (the system principal `job`) over this server's
    /// store, for a test's setup: accounts, clients.
    pub async fn system_repository(&self, job: &str) -> hale_server::SystemRepository {
        let cfg = Config {
            data_dir: self.data_dir.path().to_path_buf(),
            database_url: self.postgres_database_url().unwrap_or_default().to_string(),
            database_pool_size: 2,
            ..Config::default()
        };
        hale_server::system_repository(&cfg, job).await.expect("the store opens")
    }

    /// The PostgreSQL database this server runs on, if it runs on PostgreSQL.
    pub fn postgres_database_url(&self) -> Option<&str> {
        self.database.as_ref().map(|d| d.url.as_str())
    }

    /// `http://127.0.0.1:PORT/fhir` + `path`
    pub fn fhir(&self, path: &str) -> String {
        format!("{}/fhir{}", self.base, path)
    }

    /// POST a resource as FHIR JSON.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.fhir(path))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    /// PUT a resource as FHIR JSON.
    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.fhir(path))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.fhir(path)).send().await.expect("request")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client.delete(self.fhir(path)).send().await.expect("request")
    }
}

impl Drop for TestServer {
    /// Stops the server, and fails the test when any in-process server of the suite
    /// has answered 500 (every malformed input must get a 4xx; a 500 is a bug; the
    /// error is logged with its request id and path).
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let n = hale_server::internal_errors_answered();
        if n > 0 && !std::thread::panicking() {
            panic!("{n} request(s) in this test process were answered 500 (see the log's 'answered 500' lines)");
        }
    }
}

/// `HALE_TEST_POSTGRES_URL`: a PostgreSQL database the tests may connect to in order to
/// create and drop their own databases.
pub fn postgres_url() -> Option<String> {
    std::env::var("HALE_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty())
}

/// True when `HALE_TEST_STORE=postgres`: [`TestServer`] then runs on PostgreSQL.
/// Panics when the URL is missing, so a misconfigured run cannot pass on SQLite.
pub fn store_is_postgres() -> bool {
    if std::env::var("HALE_TEST_STORE").is_ok_and(|s| s == "postgres") {
        assert!(postgres_url().is_some(), "HALE_TEST_STORE=postgres needs HALE_TEST_POSTGRES_URL");
        true
    } else {
        false
    }
}

/// Prints why a test that needs SQLite (a data directory, the CLI against it) does not
/// run, and returns true, when the suite runs on PostgreSQL.
pub fn skip_unless_sqlite(test: &str) -> bool {
    if store_is_postgres() {
        eprintln!("SKIP {test}: SQLite-only (HALE_TEST_STORE=postgres)");
        true
    } else {
        false
    }
}

/// A fresh PostgreSQL database with a unique name, dropped (connections and all) when
/// this value is dropped.
pub struct TestDatabase {
    /// URL of the new database.
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// Creates a database beside the one `HALE_TEST_POSTGRES_URL` names.
    pub async fn create() -> TestDatabase {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let admin_url = postgres_url().expect("HALE_TEST_POSTGRES_URL is set");
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let mut url = url::Url::parse(&admin_url).expect("HALE_TEST_POSTGRES_URL is a URL");
        // named after the database the run was given, so the run can clean up after itself
        let base: String = url
            .path()
            .trim_start_matches('/')
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(24)
            .collect();
        let name =
            format!("{base}_t_{}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), nanos % 1_000_000_000)
                .to_lowercase();
        let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to HALE_TEST_POSTGRES_URL: {e}"));
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"))
            .await
            .expect("create test database");
        drop(client);
        let _ = task.await;
        url.set_path(&format!("/{name}"));
        TestDatabase { url: url.to_string(), admin_url, name }
    }

    /// Runs SQL statements in this database (for tests that tamper with it).
    pub async fn batch_execute(&self, sql: &str) {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await.expect("connect");
        let task = tokio::spawn(conn);
        client.batch_execute(sql).await.expect("statements run");
        drop(client);
        let _ = task.await;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside a runtime: use a thread with its own
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    if let Err(e) = client.batch_execute(&sql).await {
                        eprintln!("could not drop test database {name}: {e}");
                    }
                }
            });
        });
        let _ = done.join();
    }
}

/// Reads a response as JSON (panics with the body if it is not).
pub async fn json(r: reqwest::Response) -> Value {
    let text = r.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The URL of a Bundle's link with this relation (`next`, `previous`, `self`).
pub fn bundle_link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .map(|l| l["url"].as_str().unwrap().to_string())
}

/// The ids of a Bundle's entries, in order.
pub fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// The `hale` binary running as a child process.
pub struct BinaryServer {
    pub child: tokio::process::Child,
    pub base: String,
    /// Sends the system token of the server's data directory with every request
    /// (an anonymous client when the arguments name no `--data-dir`).
    pub client: reqwest::Client,
    /// What the server printed on stdout before its address (the first start's
    /// administrator password...).
    pub banner: Vec<String>,
}

/// Starts `exe serve --listen 127.0.0.1:0 --data-dir DIR` and waits for its
/// "Hale listening on" line.
pub async fn spawn_binary(exe: &Path, data_dir: &Path) -> BinaryServer {
    let args = ["serve".to_string(), "--data-dir".to_string(), data_dir.display().to_string()];
    spawn_binary_with(exe, &args).await
}

/// Starts `hale ARGS --listen 127.0.0.1:0` (e.g. `demo --data-dir D`) and waits until it
/// prints the address it listens on.
pub async fn spawn_binary_with(exe: &Path, args: &[String]) -> BinaryServer {
    spawn_binary_env(exe, args, &[]).await
}

/// As [`spawn_binary_with`], with these environment variables set as well.
pub async fn spawn_binary_env(exe: &Path, args: &[String], env: &[(&str, &str)]) -> BinaryServer {
    let mut child = tokio::process::Command::new(exe)
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env("HALE_LOG__LEVEL", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("hale starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    let base = loop {
        let line = lines.next_line().await.expect("stdout readable").expect("hale printed its address");
        if let Some(url) = line.strip_prefix("Hale listening on ") {
            break url.trim().to_string();
        }
        banner.push(line);
    };
    // keep draining stdout so the child never blocks on a full pipe
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let data_dir = args.iter().position(|a| a == "--data-dir").and_then(|i| args.get(i + 1));
    let client = match data_dir {
        Some(d) => client_with_token(&system_token(Path::new(d))),
        None => reqwest::Client::new(),
    };
    BinaryServer { child, base, client, banner }
}

/// `../shared/data/<sub>` beside the checkout, if present.
/// Absent, a test that needs it skips with a message, or fails under `CI=true` (see
/// [`missing`]).
pub fn shared_data(sub: &str) -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let p = manifest.join("../../../shared/data").join(sub);
    if p.is_dir() {
        return Some(p);
    }
    missing(&format!("../shared/data/{sub}"));
    None
}

/// True under `CI=true` (as `.ci/run` runs): nothing a test needs may be missing there.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Says that `what`, which a test needs, is absent: a failure under `CI=true`, so CI can
/// never pass by skipping; elsewhere a loud message, and the caller skips.
pub fn missing(what: &str) {
    assert!(!in_ci(), "{what} is needed and absent: under CI=true a test fails rather than skips");
    eprintln!("SKIPPED: {what} is absent");
}

/// The PostgreSQL URL of the tests (`HALE_TEST_POSTGRES_URL`); absent, see [`missing`].
pub fn require_postgres() -> Option<String> {
    let url = postgres_url();
    if url.is_none() {
        missing("HALE_TEST_POSTGRES_URL (a PostgreSQL server for the tests)");
    }
    url
}

/// Reads a `.bz2` file into a string.
pub fn read_bz2(path: &Path) -> String {
    use std::io::Read;
    let f = std::fs::File::open(path).expect("readable file");
    let mut out = String::new();
    bzip2::read::BzDecoder::new(f).read_to_string(&mut out).expect("bzip2 text");
    out
}
