//! Acknowledged means durable: SIGKILL the real binary during a burst of concurrent
//! writes, restart it on the same data directory, and find every acknowledged write.

use std::sync::Arc;
use std::time::Duration;

use hale_test_support::spawn_binary;
use serde_json::json;
use tokio::sync::Mutex;

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_write_survives_sigkill() {
    if hale_test_support::skip_unless_sqlite("every_acknowledged_write_survives_sigkill") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let mut server = spawn_binary(exe, dir.path()).await;
    let base = server.base.clone();
    let acked: Arc<Mutex<Vec<(String, String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let client = reqwest::Client::new();
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, base, acked) = (client.clone(), base.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let (method_put, body) = if i % 2 == 0 {
                    (true, json!({"resourceType":"Patient","id":format!("w{w}-{i}"),"name":[{"family":format!("W{w}"),"given":[format!("n{i}")]}]}))
                } else {
                    (false, json!({"resourceType":"Observation","status":"final","code":{"text":format!("w{w}-{i}")},"valueQuantity":{"value":1.50}}))
                };
                let req = if method_put {
                    client.put(format!("{base}/fhir/Patient/w{w}-{i}"))
                } else {
                    client.post(format!("{base}/fhir/Observation"))
                };
                let r = req.header("content-type", "application/fhir+json").body(body.to_string()).send().await;
                let Ok(r) = r else { break };
                if !r.status().is_success() {
                    break;
                }
                let etag = r.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let Ok(text) = r.text().await else { break };
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                let path = format!("{}/{}", v["resourceType"].as_str().unwrap(), v["id"].as_str().unwrap());
                acked.lock().await.push((path, etag, text));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.start_kill().expect("SIGKILL");
    let _ = server.child.wait().await;
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().await.clone();
    assert!(acked.len() > 50, "too few writes acknowledged to mean anything: {}", acked.len());

    let server = spawn_binary(exe, dir.path()).await;
    let mut missing = Vec::new();
    for (path, etag, body) in &acked {
        let r = client.get(format!("{}/fhir/{path}", server.base)).send().await.unwrap();
        if r.status() != 200 || r.headers()["etag"].to_str().unwrap() != etag {
            missing.push(path.clone());
            continue;
        }
        let text = r.text().await.unwrap();
        if &text != body {
            missing.push(path.clone());
        }
    }
    println!("durability: {} acknowledged writes checked after SIGKILL, {} missing", acked.len(), missing.len());
    assert!(missing.is_empty(), "lost acknowledged writes: {missing:?}");
}
