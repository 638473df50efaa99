//! Test support: start a real Hale server on port 0 with a fresh store, in process
//! ([`TestServer`]) or as the `hale` binary ([`spawn_binary`]), and talk to it over HTTP.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use hale_server::Config;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A server running in this process on a free port, with its own data directory.
pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn spawn() -> TestServer {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server after `tweak` has adjusted its configuration.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut cfg =
            Config { listen: "127.0.0.1:0".into(), data_dir: data_dir.path().to_path_buf(), ..Config::default() };
        tweak(&mut cfg);
        let server = hale_server::Server::bind(&cfg).await.expect("server starts");
        let addr = server.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));
        TestServer { base: format!("http://{addr}"), client: reqwest::Client::new(), data_dir, shutdown: Some(tx) }
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
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Reads a response as JSON (panics with the body if it is not).
pub async fn json(r: reqwest::Response) -> Value {
    let text = r.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The `hale` binary running as a child process.
pub struct BinaryServer {
    pub child: tokio::process::Child,
    pub base: String,
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
    let mut child = tokio::process::Command::new(exe)
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env("HALE_LOG__LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("hale starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next_line().await.expect("stdout readable").expect("hale printed its address");
        if let Some(url) = line.strip_prefix("Hale listening on ") {
            break url.trim().to_string();
        }
    };
    // keep draining stdout so the child never blocks on a full pipe
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    BinaryServer { child, base }
}

/// `../shared/data/<sub>` beside the checkout, if present.
pub fn shared_data(sub: &str) -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent()?.parent()?;
    let p = root.join("../shared/data").join(sub);
    p.is_dir().then_some(p)
}

/// Reads a `.bz2` file into a string.
pub fn read_bz2(path: &Path) -> String {
    use std::io::Read;
    let f = std::fs::File::open(path).expect("readable file");
    let mut out = String::new();
    bzip2::read::BzDecoder::new(f).read_to_string(&mut out).expect("bzip2 text");
    out
}
