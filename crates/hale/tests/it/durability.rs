//! Acknowledged means durable: SIGKILL the real binary during a burst of concurrent
//! writes (single resources and transaction bundles), restart it on the same data
//! directory or database, and find every acknowledged write, and every transaction
//! either whole or absent. On PostgreSQL (`HALE_TEST_STORE=postgres`) the node dies
//! and the database lives on: what matters there is that a node dying mid-transaction
//! leaves nothing half-written.

use std::sync::Arc;
use std::time::Duration;

use hale_test_support::{BinaryServer, TestDatabase, spawn_binary_with};
use serde_json::json;
use tokio::sync::Mutex;

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_write_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = if hale_test_support::store_is_postgres() { Some(TestDatabase::create().await) } else { None };
    let mut args = vec!["serve".to_string(), "--data-dir".to_string(), dir.path().display().to_string()];
    if let Some(db) = &db {
        args.extend(["--database".to_string(), db.url.clone()]);
    }
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let start = || async { spawn_binary_with(exe, &args).await };
    let mut server: BinaryServer = start().await;
    let base = server.base.clone();
    let acked: Arc<Mutex<Vec<(String, String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    // transaction bundles sent: (identifier value, acknowledged)
    let bundles: Arc<Mutex<Vec<(String, bool)>>> = Arc::new(Mutex::new(Vec::new()));
    let client = server.client.clone();
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, base, acked, bundles) = (client.clone(), base.clone(), acked.clone(), bundles.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                if i % 5 == 4 {
                    // a transaction of five Observations sharing one identifier
                    let key = format!("w{w}-{i}");
                    let entries: Vec<_> = (0..5)
                        .map(|k| json!({"request":{"method":"POST","url":"Observation"},"resource":{"resourceType":"Observation","status":"final","identifier":[{"system":"urn:durability","value":key}],"code":{"text":format!("{key}-{k}")}}}))
                        .collect();
                    let bundle = json!({"resourceType":"Bundle","type":"transaction","entry":entries});
                    bundles.lock().await.push((key.clone(), false));
                    let r = client
                        .post(format!("{base}/fhir"))
                        .header("content-type", "application/fhir+json")
                        .body(bundle.to_string())
                        .send()
                        .await;
                    let Ok(r) = r else { break };
                    if !r.status().is_success() || r.text().await.is_err() {
                        break;
                    }
                    if let Some(b) = bundles.lock().await.iter_mut().find(|b| b.0 == key) {
                        b.1 = true;
                    }
                    continue;
                }
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

    let server = start().await;
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
    // every transaction whole (5) when acknowledged, whole or absent (0) otherwise
    let bundles = bundles.lock().await.clone();
    let mut broken = Vec::new();
    for (key, ok) in &bundles {
        let url = format!("{}/fhir/Observation?identifier=urn:durability%7C{key}&_summary=count", server.base);
        let v: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
        let n = v["total"].as_u64().unwrap();
        if n != 5 && (*ok || n != 0) {
            broken.push(format!("{key}: {n} of 5 (acknowledged: {ok})"));
        }
    }
    println!(
        "durability: {} acknowledged writes checked after SIGKILL, {} missing; {} transactions ({} acknowledged), {} broken",
        acked.len(),
        missing.len(),
        bundles.len(),
        bundles.iter().filter(|b| b.1).count(),
        broken.len()
    );
    assert!(missing.is_empty(), "lost acknowledged writes: {missing:?}");
    assert!(broken.is_empty(), "transactions not whole: {broken:?}");
}
