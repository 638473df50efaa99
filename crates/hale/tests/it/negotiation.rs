use hale_test_support::{TestServer, json};
use serde_json::json;

use crate::assert_outcome;

#[tokio::test(flavor = "multi_thread")]
async fn formats_and_media_types() {
    let s = TestServer::spawn().await;
    s.put("/Patient/n1", &json!({"resourceType":"Patient","id":"n1"})).await;
    let get = |path: &str, accept: Option<&str>| {
        let mut r = s.client.get(s.fhir(path));
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        r.send()
    };
    let r = get("/Patient/n1", Some("application/json")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let r = get("/Patient/n1", Some("application/fhir+xml")).await.unwrap();
    assert_eq!(r.status(), 406);
    assert_outcome(&json(r).await);
    let r = get("/Patient/n1?_format=xml", None).await.unwrap();
    assert_eq!(r.status(), 406);
    let r = get("/Patient/n1?_format=json", Some("application/xml")).await.unwrap();
    assert_eq!(r.status(), 200, "_format wins over Accept");
    let r = get("/Patient/n1?_format=application/fhir%2Bjson", None).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = get("/Patient/n1?_pretty=true", None).await.unwrap();
    assert!(r.text().await.unwrap().contains("\n  \"id\": \"n1\""));
    let r = get("/Patient/n1", None).await.unwrap();
    assert!(!r.text().await.unwrap().contains('\n'));
    let r = get("/metadata", Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")).await.unwrap();
    assert_eq!(r.status(), 200, "browsers get JSON");
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_must_be_fhir_json() {
    let s = TestServer::spawn().await;
    let body = json!({"resourceType":"Patient"}).to_string();
    for ct in ["application/fhir+xml", "text/plain", "application/x-www-form-urlencoded"] {
        let r = s.client.post(s.fhir("/Patient")).header("content-type", ct).body(body.clone()).send().await.unwrap();
        assert_eq!(r.status(), 415, "{ct}");
        assert_outcome(&json(r).await);
    }
    let r = s.client.post(s.fhir("/Patient")).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 415, "no content type");
    let r = s
        .client
        .post(s.fhir("/Patient"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = s
        .client
        .post(s.fhir("/Patient"))
        .header("content-type", "application/fhir+json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let oo = json(r).await;
    assert_outcome(&oo);
    assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().contains("line 1"));
    let r = s.client.post(s.fhir("/Patient")).header("content-type", "application/fhir+json").send().await.unwrap();
    assert_eq!(r.status(), 400, "empty body");
    let r = s.post("/Patient", &json!([1, 2])).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn capability_statement_lists_what_works() {
    let s = TestServer::spawn().await;
    let r = s.get("/metadata").await;
    assert_eq!(r.status(), 200);
    let cs = json(r).await;
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["format"], json!(["application/fhir+json", "application/json"]));
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    assert_eq!(resources.len(), 146);
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let interactions: Vec<&str> =
        patient["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert!(interactions.contains(&"read") && interactions.contains(&"history-instance"));
    assert!(interactions.contains(&"search-type") && interactions.contains(&"patch"));
    let params: Vec<&str> =
        patient["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for p in ["_id", "_lastUpdated", "name", "birthdate", "identifier", "organization", "_tag"] {
        assert!(params.contains(&p), "{p} in {params:?}");
    }
    let obs = resources.iter().find(|r| r["type"] == "Observation").unwrap();
    let oparams: Vec<&str> =
        obs["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(oparams.contains(&"code-value-quantity") && oparams.contains(&"component-code-value-quantity"));
    assert_eq!(
        cs["rest"][0]["interaction"],
        json!([{"code":"transaction"},{"code":"batch"},{"code":"history-system"},{"code":"search-system"}])
    );
    // the statement is itself valid
    let r = s.post("/CapabilityStatement/$validate", &cs).await;
    let oo = json(r).await;
    assert_eq!(oo["issue"][0]["severity"], "information", "{oo}");
}
