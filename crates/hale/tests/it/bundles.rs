use hale_test_support::{TestServer, json};
use serde_json::{Value, json};

use crate::{assert_outcome, first_expression};

fn tx(entries: Vec<Value>) -> Value {
    json!({"resourceType":"Bundle","type":"transaction","entry":entries})
}

fn post(full_url: &str, resource: Value) -> Value {
    let ty = resource["resourceType"].as_str().unwrap().to_string();
    json!({"fullUrl":full_url,"resource":resource,"request":{"method":"POST","url":ty}})
}

async fn history_len(s: &TestServer) -> usize {
    json(s.get("/_history?_count=1000").await).await["entry"].as_array().map(|a| a.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn transaction_resolves_urn_uuid_references_everywhere() {
    let s = TestServer::spawn().await;
    let patient = "urn:uuid:11111111-1111-4111-8111-111111111111";
    let bundle = tx(vec![
        post(
            "urn:uuid:22222222-2222-4222-8222-222222222222",
            json!({"resourceType":"Observation","status":"final","code":{"text":"x"},
            "subject":{"reference":patient},
            "extension":[{"url":"http://x","valueReference":{"reference":patient}},
                {"url":"http://y","valueReference":{"reference":"#p"}}],
            "contained":[{"resourceType":"Provenance","id":"p","recorded":"2020-01-01T00:00:00Z","agent":[{"who":{"reference":patient}}],"target":[{"reference":patient}]}]}),
        ),
        post(patient, json!({"resourceType":"Patient","name":[{"family":"Tx"}]})),
    ]);
    let r = s.post("", &bundle).await;
    assert_eq!(r.status(), 200);
    let out = json(r).await;
    assert_eq!(out["type"], "transaction-response");
    let loc_obs = out["entry"][0]["response"]["location"].as_str().unwrap().to_string();
    let loc_pat = out["entry"][1]["response"]["location"].as_str().unwrap().to_string();
    assert_eq!(out["entry"][0]["response"]["status"], "201 Created");
    let pat_ref = loc_pat.split("/_history").next().unwrap().to_string();
    let obs = json(s.get(&format!("/{}", loc_obs.split("/_history").next().unwrap())).await).await;
    assert_eq!(obs["subject"]["reference"], pat_ref.as_str());
    assert_eq!(obs["extension"][0]["valueReference"]["reference"], pat_ref.as_str());
    assert_eq!(obs["contained"][0]["agent"][0]["who"]["reference"], pat_ref.as_str());
    assert_eq!(obs["contained"][0]["target"][0]["reference"], pat_ref.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_entry_leaves_the_store_unchanged() {
    let s = TestServer::spawn().await;
    s.put("/Patient/keep", &json!({"resourceType":"Patient","id":"keep","active":true})).await;
    let before = json(s.get("/_history").await).await;
    let bundle = tx(vec![
        json!({"resource":{"resourceType":"Patient","id":"keep","active":false},"request":{"method":"PUT","url":"Patient/keep"}}),
        post("urn:uuid:a", json!({"resourceType":"Patient","name":[{"family":"New"}]})),
        json!({"request":{"method":"DELETE","url":"Patient/other"}}),
        post(
            "urn:uuid:b",
            json!({"resourceType":"Observation","status":"final","code":{"text":"x"},"issued":"not a date"}),
        ),
    ]);
    let r = s.post("", &bundle).await;
    assert_eq!(r.status(), 400);
    let oo = json(r).await;
    assert_outcome(&oo);
    assert_eq!(first_expression(&oo).as_deref(), Some("Bundle.entry[3].resource.issued"));
    let after = json(s.get("/_history").await).await;
    assert_eq!(before["entry"], after["entry"], "same resources, versions and history");
    assert_eq!(json(s.get("/Patient/keep").await).await["active"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_precondition_rolls_back_everything() {
    let s = TestServer::spawn().await;
    s.put("/Patient/v", &json!({"resourceType":"Patient","id":"v"})).await;
    let bundle = tx(vec![
        post("urn:uuid:c", json!({"resourceType":"Patient","name":[{"family":"Rolled back"}]})),
        json!({"resource":{"resourceType":"Patient","id":"v","active":true},"request":{"method":"PUT","url":"Patient/v","ifMatch":"W/\"9\""}}),
    ]);
    let r = s.post("", &bundle).await;
    assert_eq!(r.status(), 412);
    let oo = json(r).await;
    assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().contains("Bundle.entry[1]"), "{oo}");
    assert_eq!(history_len(&s).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_entries_and_references() {
    let s = TestServer::spawn().await;
    let org =
        json!({"resourceType":"Organization","identifier":[{"system":"http://orgs","value":"o1"}],"name":"Clinic"});
    let r = s.post("/Organization", &org).await;
    let org_id = json(r).await["id"].as_str().unwrap().to_string();
    let bundle = tx(vec![
        json!({"fullUrl":"urn:uuid:o","resource":org,"request":{"method":"POST","url":"Organization","ifNoneExist":"identifier=http://orgs|o1"}}),
        post(
            "urn:uuid:p",
            json!({"resourceType":"Patient","managingOrganization":{"reference":"Organization?identifier=http://orgs|o1"},
            "generalPractitioner":[{"reference":"urn:uuid:o"}]}),
        ),
        json!({"resource":{"resourceType":"Patient","identifier":[{"system":"http://mrn","value":"9"}]},"request":{"method":"PUT","url":"Patient?identifier=http://mrn|9"}}),
    ]);
    let r = s.post("", &bundle).await;
    let out = json(r).await;
    assert_eq!(out["entry"][0]["response"]["status"], "200 OK", "the organization existed: {out}");
    assert_eq!(out["entry"][2]["response"]["status"], "201 Created");
    let p_loc = out["entry"][1]["response"]["location"].as_str().unwrap();
    let p = json(s.get(&format!("/{}", p_loc.split("/_history").next().unwrap())).await).await;
    assert_eq!(p["managingOrganization"]["reference"], format!("Organization/{org_id}"));
    assert_eq!(p["generalPractitioner"][0]["reference"], format!("Organization/{org_id}"));
    // a conditional reference that matches nothing fails the transaction
    let bad = tx(vec![post(
        "urn:uuid:q",
        json!({"resourceType":"Patient","managingOrganization":{"reference":"Organization?identifier=nope"}}),
    )]);
    let r = s.post("", &bad).await;
    assert_eq!(r.status(), 404);
    // ambiguous: two organizations
    s.post("/Organization", &json!({"resourceType":"Organization","identifier":[{"value":"dup"}]})).await;
    s.post("/Organization", &json!({"resourceType":"Organization","identifier":[{"value":"dup"}]})).await;
    let amb = tx(vec![post(
        "urn:uuid:r",
        json!({"resourceType":"Patient","managingOrganization":{"reference":"Organization?identifier=dup"}}),
    )]);
    assert_eq!(s.post("", &amb).await.status(), 412);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_entries_are_independent() {
    let s = TestServer::spawn().await;
    let bundle = json!({"resourceType":"Bundle","type":"batch","entry":[
        {"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
        {"resource":{"resourceType":"Patient","gender":"nope"},"request":{"method":"POST","url":"Patient"}},
        {"request":{"method":"GET","url":"Patient/missing"}},
        {"resource":{"resourceType":"Patient","id":"b1"},"request":{"method":"PUT","url":"Patient/b1"}},
        {"request":{"method":"GET","url":"Patient/b1"}},
    ]});
    let r = s.post("", &bundle).await;
    assert_eq!(r.status(), 200);
    let out = json(r).await;
    assert_eq!(out["type"], "batch-response");
    let statuses: Vec<&str> =
        out["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["201 Created", "400 Bad Request", "404 Not Found", "201 Created", "200 OK"]);
    assert_eq!(out["entry"][1]["response"]["outcome"]["resourceType"], "OperationOutcome");
    assert_eq!(history_len(&s).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bundles_are_refused() {
    let s = TestServer::spawn().await;
    for (b, status) in [
        (json!({"resourceType":"Bundle","type":"collection"}), 400),
        (json!({"resourceType":"Patient"}), 400),
        (json!({"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"}}]}), 400),
        (
            json!({"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Nope"},"resource":{"resourceType":"Patient"}}]}),
            400,
        ),
        (
            json!({"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Patient/a"},"resource":{"resourceType":"Patient","id":"a"}},{"request":{"method":"PUT","url":"Patient/a"},"resource":{"resourceType":"Patient","id":"a"}}]}),
            400,
        ),
    ] {
        let r = s.post("", &b).await;
        assert_eq!(r.status(), status, "{b}");
        assert_outcome(&json(r).await);
    }
    assert_eq!(history_len(&s).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn synthea_patient_bundles_load() {
    let Some(dir) = hale_test_support::shared_data("synthea-120") else {
        eprintln!("SKIP synthea_patient_bundles_load: ../shared/data/synthea-120 is absent");
        return;
    };
    let s = TestServer::spawn().await;
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    // the two shared batch bundles first, then three patients
    let mut loaded = 0;
    for f in files.iter().take(5) {
        let text = hale_test_support::read_bz2(f);
        let r = s
            .client
            .post(s.fhir(""))
            .header("content-type", "application/fhir+json")
            .body(text.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", f.display());
        let out = json(r).await;
        let input: Value = serde_json::from_str(&text).unwrap();
        let n = input["entry"].as_array().unwrap().len();
        let ok = out["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["response"]["status"].as_str().unwrap().starts_with('2'))
            .count();
        assert_eq!(ok, n, "{}: {out}", f.display());
        loaded += n;
    }
    assert!(loaded > 1000);
}

fn patch_entry(url: &str, base64_patch: &str, if_match: Option<&str>) -> Value {
    let mut request = json!({"method":"PATCH","url":url});
    if let Some(m) = if_match {
        request["ifMatch"] = json!(m);
    }
    json!({"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":base64_patch},
        "request":request})
}

/// `[{"op":"replace","path":"/active","value":false}]`
const SET_INACTIVE: &str = "W3sib3AiOiJyZXBsYWNlIiwicGF0aCI6Ii9hY3RpdmUiLCJ2YWx1ZSI6ZmFsc2V9XQ==";
/// `[{"op":"add","path":"/gender","value":"female"}]`
const SET_FEMALE: &str = "W3sib3AiOiJhZGQiLCJwYXRoIjoiL2dlbmRlciIsInZhbHVlIjoiZmVtYWxlIn1d";
/// `[{"op":"replace","path":"/gender","value":"robot"}]`
const SET_ROBOT: &str = "W3sib3AiOiJyZXBsYWNlIiwicGF0aCI6Ii9nZW5kZXIiLCJ2YWx1ZSI6InJvYm90In1d";

#[tokio::test(flavor = "multi_thread")]
async fn patch_entries_in_transactions_and_batches() {
    let s = TestServer::spawn().await;
    s.put("/Patient/pa", &json!({"resourceType":"Patient","id":"pa","active":true})).await;
    s.put(
        "/Patient/pb",
        &json!({"resourceType":"Patient","id":"pb","active":true,"identifier":[{"system":"http://mrn","value":"B"}]}),
    )
    .await;
    let r = s
        .post(
            "",
            &tx(vec![
                patch_entry("Patient/pa", SET_INACTIVE, Some("W/\"1\"")),
                patch_entry("Patient?identifier=http://mrn|B", SET_FEMALE, None),
            ]),
        )
        .await;
    assert_eq!(r.status(), 200);
    let out = json(r).await;
    assert_eq!(out["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(out["entry"][0]["response"]["etag"], "W/\"2\"");
    let pa = json(s.get("/Patient/pa").await).await;
    assert_eq!(pa["active"], false);
    assert_eq!(pa["meta"]["versionId"], "2");
    assert_eq!(json(s.get("/Patient/pb").await).await["gender"], "female");
    let before = history_len(&s).await;
    // a stale If-Match, a result that is invalid, a missing target: nothing is written
    for (entry, status, expr) in [
        (patch_entry("Patient/pa", SET_FEMALE, Some("W/\"1\"")), 412, None),
        (patch_entry("Patient/pb", SET_ROBOT, None), 400, Some("Bundle.entry[1].resource.gender")),
        (patch_entry("Patient/nobody", SET_FEMALE, None), 404, None),
        (
            json!({"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"not base64!"},
                "request":{"method":"PATCH","url":"Patient/pa"}}),
            400,
            Some("Bundle.entry[1].resource.data"),
        ),
    ] {
        let bundle = tx(vec![post("urn:uuid:x", json!({"resourceType":"Patient","active":true})), entry]);
        let r = s.post("", &bundle).await;
        assert_eq!(r.status(), status, "{bundle}");
        let oo = json(r).await;
        assert_outcome(&oo);
        if let Some(e) = expr {
            assert_eq!(first_expression(&oo).as_deref(), Some(e), "{oo}");
        }
    }
    assert_eq!(history_len(&s).await, before, "failed transactions wrote nothing");
    // in a batch each patch stands alone
    let batch = json!({"resourceType":"Bundle","type":"batch","entry":[
        patch_entry("Patient/pb", SET_ROBOT, None), patch_entry("Patient/pa", SET_FEMALE, None)]});
    let out = json(s.post("", &batch).await).await;
    let statuses: Vec<&str> =
        out["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["400 Bad Request", "200 OK"]);
    assert_eq!(json(s.get("/Patient/pa").await).await["gender"], "female");
}

/// `[base]/` is the base (some client libraries post their transactions there): a
/// transaction posted to `/fhir/` is processed, and a search of `/fhir/` as of `/fhir`.
#[tokio::test(flavor = "multi_thread")]
async fn the_base_with_a_trailing_slash_is_the_base() {
    let s = TestServer::spawn().await;
    let bundle = tx(vec![post(
        "urn:uuid:33333333-3333-4333-8333-333333333333",
        json!({"resourceType":"Patient","name":[{"family":"Slash"}]}),
    )]);
    let r = s.post("/", &bundle).await;
    assert_eq!(r.status(), 200);
    let out = json(r).await;
    assert_eq!(out["type"], "transaction-response");
    assert_eq!(out["entry"][0]["response"]["status"], "201 Created");
    let found = json(s.get("/Patient?family=Slash").await).await;
    assert_eq!(found["total"], 1);
    // a system search at the base with its slash
    let r = s.get("/?_type=Patient&family=Slash").await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["total"], 1);
}

#[tokio::test]
async fn a_transaction_resolves_an_attachment_url_naming_a_binary_of_the_same_bundle() {
    let s = TestServer::spawn().await;
    let bin = "urn:uuid:33333333-3333-4333-8333-333333333333";
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": bin, "resource": {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="},
         "request": {"method": "POST", "url": "Binary"}},
        {"resource": {"resourceType": "DocumentReference", "status": "current",
                      "extension": [{"url": "http://example.org/ext", "valueString": "kept"}],
                      "content": [{"attachment": {"contentType": "text/plain", "url": bin}}]},
         "request": {"method": "POST", "url": "DocumentReference"}},
    ]});
    let r = s.post("", &bundle).await;
    assert_eq!(r.status(), 200);
    let out = json(r).await;
    let binary =
        out["entry"][0]["response"]["location"].as_str().unwrap().split("/_history").next().unwrap().to_string();
    let doc = out["entry"][1]["response"]["location"].as_str().unwrap().split("/_history").next().unwrap().to_string();
    let stored = json(s.get(&format!("/{doc}")).await).await;
    assert_eq!(stored["content"][0]["attachment"]["url"], binary.as_str(), "{stored}");
    assert_eq!(stored["extension"][0]["url"], "http://example.org/ext");
}
