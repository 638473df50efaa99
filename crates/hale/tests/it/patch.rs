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
    // a move to the root followed by a failing operation (found by fuzzing: it panicked
    // in the patch library's undo, a 500)
    let r = patch(
        &s,
        "/Patient/pp",
        json!([{"op":"move","from":"/gender","path":""},{"op":"test","path":"/id","value":"pp"}]),
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_outcome(&json(r).await);
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

async fn fhirpath_patch(s: &TestServer, path: &str, ops: Vec<serde_json::Value>) -> reqwest::Response {
    fhirpath_patch_with(s, path, json!({"resourceType":"Parameters","parameter":ops})).await
}

/// PATCH with a FHIRPath Patch `Parameters` resource as it is.
async fn fhirpath_patch_with(s: &TestServer, path: &str, body: serde_json::Value) -> reqwest::Response {
    s.client
        .patch(s.fhir(path))
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn op(kind: &str, path: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut part = vec![json!({"name":"type","valueCode":kind}), json!({"name":"path","valueString":path})];
    part.extend(extra.as_array().unwrap().iter().cloned());
    json!({"name":"operation","part":part})
}

#[tokio::test(flavor = "multi_thread")]
async fn fhirpath_patch_updates_validates_and_locks() {
    let s = TestServer::spawn().await;
    s.put(
        "/Patient/fp",
        &json!({"resourceType":"Patient","id":"fp","gender":"female","name":[{"family":"Old","given":["A","B"]}],
            "identifier":[{"system":"http://mrn","value":"1"},{"system":"http://other","value":"2"}]}),
    )
    .await;
    let r = fhirpath_patch(
        &s,
        "/Patient/fp",
        vec![
            op("replace", "Patient.name.family", json!([{"name":"value","valueString":"New"}])),
            op(
                "add",
                "Patient",
                json!([{"name":"name","valueString":"birthDate"},{"name":"value","valueDate":"1980-05-06"}]),
            ),
            op("delete", "Patient.identifier.where(system = 'http://other')", json!([])),
            op(
                "insert",
                "Patient.name.given",
                json!([{"name":"index","valueInteger":0},{"name":"value","valueString":"Z"}]),
            ),
            op(
                "move",
                "Patient.name.given",
                json!([{"name":"source","valueInteger":2},{"name":"destination","valueInteger":0}]),
            ),
            op(
                "add",
                "Patient",
                json!([{"name":"name","valueString":"telecom"},
                {"name":"value","part":[{"name":"system","valueCode":"phone"},{"name":"value","valueString":"555"}]}]),
            ),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    let v = json(r).await;
    assert_eq!(v["name"][0]["family"], "New");
    assert_eq!(v["birthDate"], "1980-05-06");
    assert_eq!(v["identifier"].as_array().unwrap().len(), 1);
    assert_eq!(v["name"][0]["given"], json!(["B", "Z", "A"]));
    assert_eq!(v["telecom"], json!([{"system":"phone","value":"555"}]));
    // the result is validated; nothing is stored
    let r = fhirpath_patch(
        &s,
        "/Patient/fp",
        vec![op("replace", "Patient.gender", json!([{"name":"value","valueCode":"F"}]))],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(first_expression(&json(r).await).as_deref(), Some("Patient.gender"));
    // bad operations name where they are
    for (ops, expr) in [
        (
            vec![op("replace", "Patient.deceased", json!([{"name":"value","valueBoolean":true}]))],
            "Parameters.parameter[0].path",
        ),
        (vec![op("explode", "Patient", json!([]))], "Parameters.parameter[0].part"),
        (
            vec![op("replace", "Patient.name.(", json!([{"name":"value","valueString":"x"}]))],
            "Parameters.parameter[0].path",
        ),
    ] {
        let r = fhirpath_patch(&s, "/Patient/fp", ops).await;
        assert!(r.status() == 400 || r.status() == 422, "{}", r.status());
        let oo = json(r).await;
        assert_outcome(&oo);
        assert_eq!(first_expression(&oo).as_deref(), Some(expr), "{oo}");
    }
    assert_eq!(json(s.get("/Patient/fp").await).await["meta"]["versionId"], "2", "failed patches stored nothing");
    // a patch with no operation (R4 FHIRPath Patch allows it) leaves the resource as it
    // is, answered as an update that changes nothing, with or without `parameter`
    for body in [json!({"resourceType":"Parameters"}), json!({"resourceType":"Parameters","parameter":[]})] {
        let before = json(s.get("/Patient/fp").await).await;
        let r = fhirpath_patch_with(&s, "/Patient/fp", body.clone()).await;
        assert_eq!(r.status(), 200, "{body}");
        let after = json(r).await;
        let strip = |mut v: serde_json::Value| {
            v.as_object_mut().unwrap().remove("meta");
            v
        };
        assert_eq!(strip(after), strip(before), "{body}");
    }
    // in a transaction, as a Parameters resource
    let v = json(s.get("/Patient/fp").await).await["meta"]["versionId"].as_str().unwrap().to_string();
    let bundle = json!({"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PATCH","url":"Patient/fp","ifMatch":format!("W/\"{v}\"")},
        "resource":{"resourceType":"Parameters","parameter":[op("replace", "Patient.gender", json!([{"name":"value","valueCode":"other"}]))]}}]});
    let r = s.post("", &bundle).await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(s.get("/Patient/fp").await).await["gender"], "other");
}
