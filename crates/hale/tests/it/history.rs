use hale_test_support::{TestServer, json};
use serde_json::json;

use crate::assert_outcome;

#[tokio::test(flavor = "multi_thread")]
async fn instance_type_and_system_history_with_paging() {
    let s = TestServer::spawn().await;
    let mut p = json!({"resourceType":"Patient","id":"h1","active":true});
    for _ in 0..5 {
        assert!(s.put("/Patient/h1", &p).await.status().is_success());
        p["active"] = json!(!p["active"].as_bool().unwrap());
    }
    s.post("/Observation", &json!({"resourceType":"Observation","status":"final","code":{"text":"x"}})).await;
    // instance
    let h = json(s.get("/Patient/h1/_history").await).await;
    assert_eq!(h["type"], "history");
    assert_eq!(h["total"], 5);
    let versions: Vec<&str> =
        h["entry"].as_array().unwrap().iter().map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap()).collect();
    assert_eq!(versions, ["5", "4", "3", "2", "1"]);
    assert_eq!(h["entry"][4]["request"]["method"], "PUT");
    assert_eq!(h["entry"][4]["response"]["etag"], "W/\"1\"");
    // paging: 2 + 2 + 1 through next links
    let mut url = s.fhir("/Patient/h1/_history?_count=2");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = json(s.client.get(&url).send().await.unwrap()).await;
        pages += 1;
        for e in page["entry"].as_array().into_iter().flatten() {
            seen.push(e["resource"]["meta"]["versionId"].as_str().unwrap().to_string());
        }
        // a write between pages does not shift the pages already being read
        if pages == 1 {
            s.put("/Patient/h1", &json!({"resourceType":"Patient","id":"h1"})).await;
        }
        match page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") {
            Some(next) => url = next["url"].as_str().unwrap().to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ["5", "4", "3", "2", "1"]);
    assert_eq!(pages, 3);
    // type and system
    let t = json(s.get("/Patient/_history").await).await;
    assert_eq!(t["entry"].as_array().unwrap().len(), 6);
    let sys = json(s.get("/_history").await).await;
    assert_eq!(sys["entry"].as_array().unwrap().len(), 7);
    assert_eq!(sys["entry"][0]["resource"]["resourceType"], "Patient");
    assert_eq!(sys["entry"][1]["resource"]["resourceType"], "Observation");
    assert_eq!(sys["entry"][1]["request"]["method"], "POST");
}

#[tokio::test(flavor = "multi_thread")]
async fn history_since_and_errors() {
    let s = TestServer::spawn().await;
    s.put("/Patient/h2", &json!({"resourceType":"Patient","id":"h2"})).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let v2 = json(s.put("/Patient/h2", &json!({"resourceType":"Patient","id":"h2","active":true})).await).await;
    let since = v2["meta"]["lastUpdated"].as_str().unwrap().to_string();
    let h = json(s.get(&format!("/Patient/h2/_history?_since={since}")).await).await;
    assert_eq!(h["total"], 1, "{h}");
    let h = json(s.get("/Patient/h2/_history?_since=2999-01-01T00:00:00Z").await).await;
    assert!(h.get("entry").is_none());
    for bad in ["_since=yesterday", "_count=-1", "_count=x", "_cursor=abc", "_at=2020"] {
        let r = s.get(&format!("/Patient/h2/_history?{bad}")).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert_outcome(&json(r).await);
    }
    // lenient handling ignores unknown parameters
    let r = s
        .client
        .get(s.fhir("/Patient/h2/_history?_at=2020"))
        .header("prefer", "handling=lenient")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // the page size is capped
    let h = json(s.get("/_history?_count=100000").await).await;
    let self_url = h["link"][0]["url"].as_str().unwrap();
    assert!(self_url.contains("_count=1000"), "{self_url}");
}
