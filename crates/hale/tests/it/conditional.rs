use hale_test_support::{TestServer, json};
use serde_json::json;

use crate::{assert_outcome, first_expression};

fn patient(mrn: &str) -> serde_json::Value {
    json!({"resourceType":"Patient","identifier":[{"system":"http://hospital.example/mrn","value":mrn}],"name":[{"family":"Roe"}]})
}

async fn create_if_none_exist(s: &TestServer, body: &serde_json::Value, cond: &str) -> reqwest::Response {
    s.client
        .post(s.fhir("/Patient"))
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", cond)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_create_creates_once() {
    let s = TestServer::spawn().await;
    let cond = "identifier=http://hospital.example/mrn|123";
    let r = create_if_none_exist(&s, &patient("123"), cond).await;
    assert_eq!(r.status(), 201);
    let id = json(r).await["id"].clone();
    let r = create_if_none_exist(&s, &patient("123"), cond).await;
    assert_eq!(r.status(), 200, "the existing resource is returned");
    assert_eq!(json(r).await["id"], id);
    // _id criteria and the full-URL form
    let r = create_if_none_exist(&s, &patient("124"), &format!("Patient?_id={}", id.as_str().unwrap())).await;
    assert_eq!(r.status(), 200);
    // two matches: 412
    let r = s.post("/Patient", &patient("dup")).await;
    assert_eq!(r.status(), 201);
    let r = s.post("/Patient", &patient("dup")).await;
    assert_eq!(r.status(), 201);
    let r = create_if_none_exist(&s, &patient("dup"), "identifier=dup").await;
    assert_eq!(r.status(), 412);
    assert_outcome(&json(r).await);
    // any search parameter resolves a condition
    let r = create_if_none_exist(&s, &patient("x"), "family=Roe&identifier=123").await;
    assert_eq!(r.status(), 200);
    // unknown criteria are refused, not ignored
    let r = create_if_none_exist(&s, &patient("x"), "nonsense=Roe").await;
    assert_eq!(r.status(), 400);
    assert_eq!(first_expression(&json(r).await).as_deref(), Some("nonsense"));
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_identical_conditional_creates_make_one_resource() {
    let s = TestServer::spawn().await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let req = s
            .client
            .post(s.fhir("/Patient"))
            .header("content-type", "application/fhir+json")
            .header("if-none-exist", "identifier=http://hospital.example/mrn|race")
            .body(patient("race").to_string());
        tasks.push(tokio::spawn(async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), json(r).await["id"].as_str().unwrap().to_string())
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert_eq!(results.iter().filter(|r| r.0 == 201).count(), 1, "{results:?}");
    let first = &results[0].1;
    assert!(results.iter().all(|r| &r.1 == first), "{results:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_update_creates_then_updates() {
    let s = TestServer::spawn().await;
    let url = "/Patient?identifier=http://hospital.example/mrn%7C777";
    let r = s.put(url, &patient("777")).await;
    assert_eq!(r.status(), 201);
    let id = json(r).await["id"].as_str().unwrap().to_string();
    let mut body = patient("777");
    body["gender"] = json!("male");
    let r = s.put(url, &body).await;
    assert_eq!(r.status(), 200);
    let v = json(r).await;
    assert_eq!((v["id"].as_str().unwrap(), v["meta"]["versionId"].as_str().unwrap()), (id.as_str(), "2"));
    // an id that contradicts the match
    body["id"] = json!("someone-else");
    let r = s.put(url, &body).await;
    assert_eq!(r.status(), 400);
    // no match, id given: update-as-create with that id
    let mut other = patient("888");
    other["id"] = json!("chosen");
    let r = s.put("/Patient?identifier=888", &other).await;
    assert_eq!(r.status(), 201);
    assert_eq!(json(r).await["id"], "chosen");
    // several matches: 412
    s.post("/Patient", &patient("many")).await;
    s.post("/Patient", &patient("many")).await;
    let r = s.put("/Patient?identifier=many", &patient("many")).await;
    assert_eq!(r.status(), 412);
    // no criteria: 400
    let r = s.put("/Patient", &patient("none")).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_delete_deletes_the_single_match() {
    let s = TestServer::spawn().await;
    let r = s.post("/Patient", &patient("del")).await;
    let id = json(r).await["id"].as_str().unwrap().to_string();
    let r = s.delete("/Patient?identifier=http://hospital.example/mrn%7Cdel").await;
    assert_eq!(r.status(), 204);
    assert_eq!(s.get(&format!("/Patient/{id}")).await.status(), 410);
    // no match: nothing to do
    assert_eq!(s.delete("/Patient?identifier=del").await.status(), 204);
    s.post("/Patient", &patient("two")).await;
    s.post("/Patient", &patient("two")).await;
    let r = s.delete("/Patient?identifier=two").await;
    assert_eq!(r.status(), 412);
    assert_outcome(&json(r).await);
    let r = s.delete("/Patient?nonsense=x").await;
    assert_eq!(r.status(), 400);
    let r = s.delete("/Patient?family=x&_count=1").await;
    assert_eq!(r.status(), 400, "result parameters mean nothing here");
}
