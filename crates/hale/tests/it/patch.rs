use hale_test_support::{TestServer, json};
use serde_json::json;

use crate::{assert_outcome, first_expression};

async fn patch(s: &TestServer, path: &str, body: serde_json::Value, if_match: Option<&str>) -> reqwest::Response {
    let mut r =
        s.client.patch(s.fhir(path)).header("content-type", "application/json-patch+json").body(body.to_string());
    if let Some(m) = if_match {
        r = r.header("if-match", m);
    }
    r.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_patch_updates_validates_and_locks() {
    let s = TestServer::spawn().await;
    s.put("/Patient/pp", &json!({"resourceType":"Patient","id":"pp","gender":"female","name":[{"family":"Old"}]}))
        .await;
    let r = patch(
        &s,
        "/Patient/pp",
        json!([{"op":"replace","path":"/name/0/family","value":"New"},{"op":"add","path":"/active","value":true}]),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    let v = json(r).await;
    assert_eq!((v["name"][0]["family"].as_str(), v["active"].as_bool()), (Some("New"), Some(true)));
    // the result is validated before it is stored
    let r = patch(&s, "/Patient/pp", json!([{"op":"replace","path":"/gender","value":"F"}]), None).await;
    assert_eq!(r.status(), 400);
    assert_eq!(first_expression(&json(r).await).as_deref(), Some("Patient.gender"));
    // a patch that does not apply
    let r = patch(&s, "/Patient/pp", json!([{"op":"remove","path":"/nothing"}]), None).await;
    assert_eq!(r.status(), 400);
    assert_outcome(&json(r).await);
    // not a patch document
    let r = patch(&s, "/Patient/pp", json!({"op":"add"}), None).await;
    assert_eq!(r.status(), 400);
    // If-Match
    let r = patch(&s, "/Patient/pp", json!([{"op":"add","path":"/active","value":false}]), Some("W/\"1\"")).await;
    assert_eq!(r.status(), 412);
    let r = patch(&s, "/Patient/pp", json!([{"op":"add","path":"/active","value":false}]), Some("W/\"2\"")).await;
    assert_eq!(r.status(), 200);
    // missing and deleted resources
    assert_eq!(patch(&s, "/Patient/none", json!([]), None).await.status(), 404);
    s.delete("/Patient/pp").await;
    assert_eq!(patch(&s, "/Patient/pp", json!([]), None).await.status(), 410);
    let h = json(s.get("/Patient/pp/_history").await).await;
    assert_eq!(h["total"], 4, "two patches and a delete after the create");
}
