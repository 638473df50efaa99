use hale_test_support::{TestServer, json};
use serde_json::json;

use crate::{assert_outcome, first_expression};

fn patient() -> serde_json::Value {
    json!({"resourceType":"Patient","name":[{"family":"Doe","given":["Jane"]}],"gender":"female","birthDate":"1970-01-01"})
}

#[tokio::test(flavor = "multi_thread")]
async fn create_assigns_id_version_and_headers() {
    let s = TestServer::spawn().await;
    let mut body = patient();
    body["id"] = json!("client-chosen");
    body["meta"] = json!({"versionId":"99","lastUpdated":"2000-01-01T00:00:00Z"});
    let r = s.post("/Patient", &body).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    assert!(r.headers().contains_key("last-modified"));
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/fhir+json"));
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let v = json(r).await;
    let id = v["id"].as_str().unwrap().to_string();
    assert_ne!(id, "client-chosen", "the server ignores the id on create");
    assert_eq!(location, s.fhir(&format!("/Patient/{id}/_history/1")));
    assert_eq!(v["meta"]["versionId"], "1");
    assert_ne!(v["meta"]["lastUpdated"], "2000-01-01T00:00:00Z");
    assert_eq!(v["name"][0]["family"], "Doe");
    // read it back
    let r = s.get(&format!("/Patient/{id}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    assert_eq!(json(r).await, v);
}

#[tokio::test(flavor = "multi_thread")]
async fn decimals_keep_their_exact_text() {
    let s = TestServer::spawn().await;
    // sent as text: a Rust float literal would already have lost the trailing zero
    let obs = r#"{"resourceType":"Observation","status":"final","code":{"text":"Weight"},"valueQuantity":{"value":1.50,"unit":"kg"},"referenceRange":[{"low":{"value":0.000100}}]}"#;
    let r = s
        .client
        .post(s.fhir("/Observation"))
        .header("content-type", "application/fhir+json")
        .body(obs)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = json(r).await["id"].as_str().unwrap().to_string();
    let text = s.get(&format!("/Observation/{id}")).await.text().await.unwrap();
    assert!(text.contains(r#""value":1.50"#), "{text}");
    assert!(text.contains(r#""value":0.000100"#), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn update_versions_and_update_as_create() {
    let s = TestServer::spawn().await;
    let mut body = patient();
    body["id"] = json!("p-1");
    let r = s.put("/Patient/p-1", &body).await;
    assert_eq!(r.status(), 201, "update-as-create");
    assert_eq!(r.headers()["location"].to_str().unwrap(), s.fhir("/Patient/p-1/_history/1"));
    body["gender"] = json!("other");
    let r = s.put("/Patient/p-1", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    let v = json(r).await;
    assert_eq!((v["meta"]["versionId"].as_str(), v["gender"].as_str()), (Some("2"), Some("other")));
    // both versions stay readable
    let v1 = json(s.get("/Patient/p-1/_history/1").await).await;
    assert_eq!(v1["gender"], "female");
    let v2 = json(s.get("/Patient/p-1/_history/2").await).await;
    assert_eq!(v2["gender"], "other");
    assert_eq!(s.get("/Patient/p-1/_history/3").await.status(), 404);
    assert_eq!(s.get("/Patient/p-1/_history/x").await.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_errors_change_nothing() {
    let s = TestServer::spawn().await;
    let mut body = patient();
    body["id"] = json!("p-2");
    assert_eq!(s.put("/Patient/p-2", &body).await.status(), 201);
    // id mismatch
    let r = s.put("/Patient/other", &body).await;
    assert_eq!(r.status(), 400);
    let oo = json(r).await;
    assert_outcome(&oo);
    assert_eq!(first_expression(&oo).as_deref(), Some("Patient.id"));
    // no id
    let r = s.put("/Patient/p-2", &patient()).await;
    assert_eq!(r.status(), 400);
    // wrong type
    let r = s.put("/Observation/p-2", &body).await;
    assert_eq!(r.status(), 400);
    // invalid content
    let mut bad = body.clone();
    bad["birthDate"] = json!("yesterday");
    let r = s.put("/Patient/p-2", &bad).await;
    assert_eq!(r.status(), 400);
    assert_eq!(first_expression(&json(r).await).as_deref(), Some("Patient.birthDate"));
    // bad id in URL
    let r = s.put("/Patient/bad_id!", &body).await;
    assert_eq!(r.status(), 400);
    let h = json(s.get("/Patient/p-2/_history").await).await;
    assert_eq!(h["total"], 1, "nothing was written: {h}");
}

#[tokio::test(flavor = "multi_thread")]
async fn if_match_is_optimistic_locking() {
    let s = TestServer::spawn().await;
    let mut body = patient();
    body["id"] = json!("p-3");
    s.put("/Patient/p-3", &body).await;
    let put = |etag: &'static str| {
        s.client
            .put(s.fhir("/Patient/p-3"))
            .header("content-type", "application/fhir+json")
            .header("if-match", etag)
            .body(body.to_string())
            .send()
    };
    let r = put("W/\"1\"").await.unwrap();
    assert_eq!(r.status(), 200);
    let r = put("W/\"1\"").await.unwrap();
    assert_eq!(r.status(), 412, "stale version");
    assert_outcome(&json(r).await);
    let r = put("garbage").await.unwrap();
    assert_eq!(r.status(), 400);
    let r = put("W/\"2\"").await.unwrap();
    assert_eq!(r.status(), 200);
    // If-Match on delete
    let r = s.client.delete(s.fhir("/Patient/p-3")).header("if-match", "W/\"1\"").send().await.unwrap();
    assert_eq!(r.status(), 412);
    let r = s.client.delete(s.fhir("/Patient/p-3")).header("if-match", "W/\"3\"").send().await.unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_if_match_updates_have_one_winner() {
    let s = TestServer::spawn().await;
    let mut body = patient();
    body["id"] = json!("race");
    s.put("/Patient/race", &body).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let req = s
            .client
            .put(s.fhir("/Patient/race"))
            .header("content-type", "application/fhir+json")
            .header("if-match", "W/\"1\"")
            .body(body.to_string());
        tasks.push(tokio::spawn(async move { req.send().await.unwrap().status().as_u16() }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 412).count(), 7, "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_is_a_versioned_tombstone() {
    let s = TestServer::spawn().await;
    let mut body = patient();
    body["id"] = json!("p-4");
    s.put("/Patient/p-4", &body).await;
    let r = s.delete("/Patient/p-4").await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    let r = s.get("/Patient/p-4").await;
    assert_eq!(r.status(), 410);
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    assert_outcome(&json(r).await);
    // the old version stays; the deletion's version is gone
    assert_eq!(s.get("/Patient/p-4/_history/1").await.status(), 200);
    assert_eq!(s.get("/Patient/p-4/_history/2").await.status(), 410);
    // deleting again is fine and writes nothing
    assert_eq!(s.delete("/Patient/p-4").await.status(), 204);
    assert_eq!(s.delete("/Patient/never").await.status(), 204);
    let h = json(s.get("/Patient/p-4/_history").await).await;
    assert_eq!(h["total"], 2);
    assert_eq!(h["entry"][0]["request"]["method"], "DELETE");
    assert!(h["entry"][0].get("resource").is_none());
    // re-create after delete continues the versions
    let r = s.put("/Patient/p-4", &body).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["etag"], "W/\"3\"");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_things_are_404_with_an_outcome() {
    let s = TestServer::spawn().await;
    for path in ["/Patient/nope", "/Foo/1", "/Foo/1/_history", "/Patient/nope/_history", "/Foo/_history"] {
        let r = s.get(path).await;
        assert_eq!(r.status(), 404, "{path}");
        assert_outcome(&json(r).await);
    }
    let r = s.client.get(format!("{}/nothing-here", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_outcome(&json(r).await);
    let r = s.post("/Foo", &json!({"resourceType":"Foo"})).await;
    assert_eq!(r.status(), 404);
    let r = s.get("/Patient/bad id").await;
    assert_eq!(r.status(), 400);
    assert_outcome(&json(r).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_methods_and_interactions_say_so() {
    let s = TestServer::spawn().await;
    let r = s.client.patch(s.fhir("/Patient/x")).send().await.unwrap();
    assert_eq!(r.status(), 415, "PATCH needs a patch document");
    assert_outcome(&json(r).await);
    let r = s.client.post(s.fhir("/metadata")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    assert_outcome(&json(r).await);
    let r = s.get("/Patient/x/$nothing").await;
    assert_eq!(r.status(), 501);
    let r = s.post("/Patient/x/$everything", &json!({})).await;
    assert_eq!(r.status(), 404, "$everything of a patient that does not exist");
    let r = s.get("/Observation/x/$everything").await;
    assert_eq!(r.status(), 501, "$everything is for patients");
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_read_answers_304() {
    let s = TestServer::spawn().await;
    let mut body = patient();
    body["id"] = json!("p-5");
    s.put("/Patient/p-5", &body).await;
    let r = s.client.get(s.fhir("/Patient/p-5")).header("if-none-match", "W/\"1\"").send().await.unwrap();
    assert_eq!(r.status(), 304);
    let r = s.client.get(s.fhir("/Patient/p-5")).header("if-none-match", "W/\"0\"").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn prefer_return_shapes_the_answer() {
    let s = TestServer::spawn().await;
    let send = |prefer: &'static str| {
        s.client
            .post(s.fhir("/Patient"))
            .header("content-type", "application/fhir+json")
            .header("prefer", prefer)
            .body(patient().to_string())
            .send()
    };
    let r = send("return=minimal").await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().contains_key("location"));
    assert_eq!(r.text().await.unwrap(), "");
    let r = send("return=OperationOutcome").await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(json(r).await["resourceType"], "OperationOutcome");
    let r = send("return=representation").await.unwrap();
    assert_eq!(json(r).await["resourceType"], "Patient");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_endpoints_answer() {
    let s = TestServer::spawn().await;
    let r = s.client.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = s.client.get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    // a data directory whose disk has less free space than required: alive, not ready
    let full = TestServer::spawn_with(|c| c.limits.min_free_disk_mb = u64::MAX >> 21).await;
    let r = full.client.get(format!("{}/readyz", full.base)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "disk nearly full");
    assert_eq!(full.client.get(format!("{}/healthz", full.base)).send().await.unwrap().status(), 200);
}

/// The value of the sample of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
        .find(|l| labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_by_route_template_without_ids() {
    let s = TestServer::spawn().await;
    let metrics = || async { s.client.get(format!("{}/metrics", s.base)).send().await.unwrap() };
    let r = metrics().await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let before = r.text().await.unwrap();
    let route = ["route=\"/fhir/{type}/{id}\"", "method=\"GET\"", "status=\"404\""];
    let count_before = sample(&before, "hale_http_requests_total", &route).unwrap_or(0.0);
    for i in 0..3 {
        assert_eq!(s.get(&format!("/Patient/metrics-secret-id-{i}")).await.status(), 404);
    }
    s.put("/Patient/m1", &json!({"resourceType": "Patient", "id": "m1"})).await;
    let after = metrics().await.text().await.unwrap();
    assert!(sample(&after, "hale_http_requests_total", &route).unwrap() >= count_before + 3.0, "{after}");
    assert!(
        sample(&after, "hale_http_request_duration_seconds_count", &["route=\"/fhir/{type}/{id}\"", "method=\"PUT\""])
            .unwrap()
            >= 1.0
    );
    assert!(after.contains("hale_http_request_duration_seconds_bucket"), "a histogram");
    assert!(sample(&after, "hale_build_info", &["version="]).is_some());
    // a new store's index is this Hale's
    assert_eq!(sample(&after, "hale_search_index_outdated", &[]), Some(0.0), "{after}");
    // the chainer links the PUT's audit entry within a second or so
    let mut chained = 0.0;
    for _ in 0..40 {
        let t = metrics().await.text().await.unwrap();
        chained = sample(&t, "hale_audit_entries_chained_total", &[]).unwrap_or(0.0);
        if chained > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(chained > 0.0, "audit entries were chained");
    // the store's own timings, on the store this run uses, and SQLite's queues
    assert_eq!(s.get("/Patient?_id=m1").await.status(), 200);
    assert_eq!(s.get("/Patient/m1").await.status(), 200);
    let t = metrics().await.text().await.unwrap();
    let postgres = hale_test_support::store_is_postgres();
    let store = if postgres { "store=\"postgres\"" } else { "store=\"sqlite\"" };
    let kinds: &[&str] =
        if postgres { &["point_read", "read", "write"] } else { &["point_read", "read", "write", "commit"] };
    for kind in kinds {
        let n = sample(&t, "hale_store_seconds_count", &[store, &format!("kind=\"{kind}\"")]);
        assert!(n.is_some_and(|n| n >= 1.0), "hale_store_seconds {kind}: {t}");
    }
    if postgres {
        assert!(sample(&t, "hale_store_pool_wait_seconds_count", &[store]).is_some_and(|n| n >= 1.0), "{t}");
        // set after each chainer round, once the round's count is in
        let mut backlog = None;
        for _ in 0..40 {
            backlog = sample(&metrics().await.text().await.unwrap(), "hale_audit_unlinked_entries", &[]);
            if backlog.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(backlog.is_some_and(|n| n >= 0.0), "the audit backlog: {backlog:?}");
    } else {
        assert!(sample(&t, "hale_store_write_wait_seconds_count", &[store]).is_some_and(|n| n >= 1.0), "{t}");
        let queue = sample(&t, "hale_store_writer_queue", &[store]).expect("the writer's queue");
        assert!(queue >= 0.0, "a queue is never negative: {queue}");
        let backlog = sample(&t, "hale_audit_journal_entries", &[]).expect("the audit backlog");
        assert!(backlog >= 0.0, "{backlog}");
    }
    // no path, id or query reaches a label
    assert!(!after.contains("metrics-secret-id") && !after.contains("/Patient/m1"), "{after}");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_the_configured_certificate_and_nothing_for_plain_http() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("hale.crt"), dir.path().join("hale.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    let args = ["serve".to_string(), "--data-dir".to_string(), data.display().to_string()];
    let (c, k) = (cert_path.display().to_string(), key_path.display().to_string());
    let env = [
        ("HALE_TLS_CERT", c.as_str()),
        ("HALE_TLS_KEY", k.as_str()),
        ("HALE_PUBLIC_BASE_URL", "https://localhost/fhir"),
        ("HALE_LIMITS__MAX_TLS_HANDSHAKES", "2"),
    ];
    let server = hale_test_support::spawn_binary_env(exe, &args, &env).await;
    let addr = server.base.strip_prefix("https://").expect("the banner names https").to_string();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let request = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut tls = connector.connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    tls.write_all(request("/fhir/metadata").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), tls.read_to_end(&mut answer)).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("strict-transport-security: max-age=31536000"), "{answer}");
    assert!(answer.contains("CapabilityStatement") && answer.contains("https://localhost/fhir"), "{answer}");
    // two connections that never finish their handshake fill the slots: a third client is
    // closed at once; once they go, clients are served again
    let idle1 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let idle2 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = || rustls::pki_types::ServerName::try_from("localhost").unwrap();
    assert!(connector.connect(name(), tcp).await.is_err(), "beyond the limit of handshakes: closed");
    drop((idle1, idle2));
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        if let Ok(mut tls) = connector.connect(name(), tcp).await {
            tls.write_all(request("/healthz").as_bytes()).await.unwrap();
            let mut a = Vec::new();
            let _ = tls.read_to_end(&mut a).await;
            served = String::from_utf8_lossy(&a).starts_with("HTTP/1.1 200");
            break;
        }
    }
    assert!(served, "the slots free when the idle connections go");
    // plain HTTP to the same port gets no HTTP answer
    let mut plain = tokio::net::TcpStream::connect(&addr).await.unwrap();
    plain.write_all(request("/healthz").as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), plain.read_to_end(&mut got)).await;
    assert!(!String::from_utf8_lossy(&got).contains("HTTP/1.1"), "{}", String::from_utf8_lossy(&got));
    drop(server);
    // a certificate without its key, or without an https public address, is refused
    for (env, says) in [
        (vec![("HALE_TLS_CERT", c.as_str())], "go together"),
        (vec![("HALE_TLS_CERT", c.as_str()), ("HALE_TLS_KEY", k.as_str())], "public_base_url"),
    ] {
        let out = std::process::Command::new(exe).arg("config").envs(env).output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
