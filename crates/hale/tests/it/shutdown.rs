//! Graceful shutdown: on SIGTERM the server stops accepting, lets in-flight requests
//! finish for at most `shutdown_timeout_secs`, chains the audit trail and exits 0.

use std::time::{Duration, Instant};

use hale_test_support::spawn_binary_with;
use tokio::io::AsyncWriteExt;

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("the server runs");
    let ok = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success();
    assert!(ok, "kill -TERM {pid}");
}

async fn start(timeout_secs: u64) -> (tempfile::TempDir, hale_test_support::BinaryServer) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hale.toml");
    std::fs::write(&config, format!("shutdown_timeout_secs = {timeout_secs}\n")).unwrap();
    let data = dir.path().join("data");
    let args: Vec<String> = ["serve", "--config", config.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]
        .map(str::to_string)
        .to_vec();
    let server = spawn_binary_with(std::path::Path::new(env!("CARGO_BIN_EXE_hale")), &args).await;
    (dir, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_server_even_when_a_client_never_finishes_its_request() {
    let (_dir, mut server) = start(1).await;
    let r = server.client.get(format!("{}/fhir/metadata", server.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // a request whose body never comes: graceful shutdown alone would wait for it forever
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut stuck = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stuck
        .write_all(b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    sigterm(&server.child);
    let status = tokio::time::timeout(Duration::from_secs(20), server.child.wait())
        .await
        .expect("the server stopped within its shutdown timeout")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(t.elapsed() >= Duration::from_millis(900), "it waited for the request first: {:?}", t.elapsed());
    // new connections were refused meanwhile, and are now
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_request_in_flight_finish() {
    let (_dir, mut server) = start(30).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let token = hale_test_support::system_token(&_dir.path().join("data"));
    let body = r#"{"resourceType":"Patient","id":"late"}"#;
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /fhir/Patient/late HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sigterm(&server.child);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // the rest of the request, after the signal: it is still answered
    slow.write_all(body.as_bytes()).await.unwrap();
    let mut answer = String::new();
    use tokio::io::AsyncReadExt;
    slow.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let status = tokio::time::timeout(Duration::from_secs(20), server.child.wait()).await.expect("stopped").unwrap();
    assert!(status.success(), "{status:?}");
}
