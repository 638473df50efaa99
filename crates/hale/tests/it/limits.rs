use hale_test_support::{TestServer, json};
use serde_json::json;

use crate::assert_outcome;

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_get_413() {
    let s = TestServer::spawn_with(|c| c.limits.max_body_bytes = 1024).await;
    let big = json!({"resourceType":"Patient","name":[{"text": "x".repeat(2000)}]});
    let r = s.post("/Patient", &big).await;
    assert_eq!(r.status(), 413);
    assert_outcome(&json(r).await);
    // a chunked body without Content-Length is cut off too
    assert_eq!(chunked_post(&s, 10, 500).await, 413);
    let h = json(s.get("/_history").await).await;
    assert!(h.get("entry").is_none(), "nothing stored");
}

/// POSTs `n` chunks of `size` spaces with chunked transfer encoding; returns the status.
async fn chunked_post(s: &TestServer, n: usize, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..n {
        let chunk = format!("{size:x}\r\n{}\r\n", " ".repeat(size));
        if tcp.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let mut buf = Vec::new();
    let _ = tcp.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_and_long_json_is_refused_fast() {
    let s = TestServer::spawn_with(|c| {
        c.limits.max_json_depth = 8;
        c.limits.max_string_bytes = 100;
    })
    .await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let r = s
        .client
        .post(s.fhir("/Patient"))
        .header("content-type", "application/fhir+json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_outcome(&json(r).await);
    let long = json!({"resourceType":"Patient","name":[{"text":"y".repeat(101)}]});
    let r = s.post("/Patient", &long).await;
    assert_eq!(r.status(), 413);
    let ok = json!({"resourceType":"Patient","name":[{"text":"y".repeat(100)}]});
    assert_eq!(s.post("/Patient", &ok).await.status(), 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_beyond_the_concurrency_limit_get_503_at_once_and_health_still_answers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::spawn_with(|c| c.limits.max_concurrent_requests = 1).await;
    // one request in progress, waiting for its body
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = r#"{"resourceType":"Patient","id":"slow"}"#;
    let head = format!(
        "PUT /fhir/Patient/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        s.token,
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let t = std::time::Instant::now();
    let r = s.get("/Patient").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let oo = json(r).await;
    assert_outcome(&oo);
    assert_eq!(oo["issue"][0]["code"], "throttled");
    assert!(t.elapsed() < std::time::Duration::from_secs(2), "refused at once, not queued: {:?}", t.elapsed());
    let health = s.client.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!(health.status(), 200, "probes still answered");
    // the request in progress finishes; then the next one is served
    slow.write_all(body.as_bytes()).await.unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(s.get("/Patient/slow").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_beyond_its_request_rate_gets_429_and_is_served_again_later() {
    let s = TestServer::spawn_with(|c| c.limits.requests_per_second_per_client = 5).await;
    // twenty at once: a burst of five is served, the rest refused
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (client, url) = (s.client.clone(), s.fhir("/Patient?_count=1"));
        tasks.push(tokio::spawn(async move { client.get(url).send().await.unwrap() }));
    }
    let mut served = 0;
    let mut refused = None;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status().as_u16() {
            200 => served += 1,
            429 => {
                assert_eq!(r.headers()["retry-after"], "1");
                refused = Some(json(r).await);
            }
            other => panic!("{other}"),
        }
    }
    assert!((5..=10).contains(&served), "a burst of 5 (and what the rate refills meanwhile): {served} served");
    let oo = refused.expect("some requests were refused");
    assert_outcome(&oo);
    assert_eq!(oo["issue"][0]["code"], "throttled");
    assert_eq!(s.client.get(format!("{}/healthz", s.base)).send().await.unwrap().status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(s.get("/Patient?_count=1").await.status(), 200, "served again once the rate allows");
}

/// A query that runs longer than `limits.statement_timeout_ms` is stopped and answered
/// 503 with an OperationOutcome `too-costly`, on SQLite (its reads) and on PostgreSQL
/// (its `statement_timeout`); the server goes on serving. The data is loaded by a server
/// without the limit; a second server on the same store has a limit of 5 ms.
#[tokio::test(flavor = "multi_thread")]
async fn a_query_past_the_statement_timeout_is_answered_503_too_costly() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let dir = tempfile::tempdir().unwrap();
    let db = if hale_test_support::store_is_postgres() {
        Some(hale_test_support::TestDatabase::create().await)
    } else {
        None
    };
    let mut args = vec!["serve".to_string(), "--data-dir".into(), dir.path().display().to_string()];
    if let Some(db) = &db {
        args.extend(["--database".to_string(), db.url.clone()]);
    }
    let loader = hale_test_support::spawn_binary_with(exe, &args).await;
    let entries: Vec<serde_json::Value> = (0..3000)
        .map(|i| {
            json!({"resource":{"resourceType":"Observation","status":"final",
                "code":{"coding":[{"system":"http://loinc.org","code":format!("{}-1", i % 50)}],"text":format!("analyte {i}")},
                "valueQuantity":{"value":i % 97,"unit":"mg"}},
                "request":{"method":"POST","url":"Observation"}})
        })
        .collect();
    let bundle = json!({"resourceType":"Bundle","type":"batch","entry":entries});
    let r = loader
        .client
        .post(format!("{}/fhir", loader.base))
        .header("content-type", "application/fhir+json")
        .body(bundle.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let heavy = "/fhir/Observation?_sort=-value-quantity,code&_total=accurate&_count=5";
    assert_eq!(loader.client.get(format!("{}{heavy}", loader.base)).send().await.unwrap().status(), 200);
    drop(loader);

    let config = dir.path().join("limited.toml");
    std::fs::write(&config, "[limits]\nstatement_timeout_ms = 5\n").unwrap();
    let mut limited_args = vec!["--config".to_string(), config.display().to_string()];
    limited_args.extend(args);
    let limited = hale_test_support::spawn_binary_with(exe, &limited_args).await;
    let r = limited.client.get(format!("{}{heavy}", limited.base)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let oo = json(r).await;
    assert_outcome(&oo);
    assert_eq!(oo["issue"][0]["code"], "too-costly", "{oo}");
    // the server goes on serving what fits in the limit
    assert_eq!(limited.client.get(format!("{}/healthz", limited.base)).send().await.unwrap().status(), 200);
}
