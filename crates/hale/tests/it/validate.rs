use hale_test_support::{TestServer, json};
use serde_json::{Value, json};

use crate::{assert_outcome, first_expression};

#[tokio::test(flavor = "multi_thread")]
async fn invalid_resources_get_400_naming_the_element_and_are_not_stored() {
    let s = TestServer::spawn().await;
    let cases = [
        (json!({"resourceType":"Patient","birthDate":"1970-02-31x"}), "Patient.birthDate"),
        (json!({"resourceType":"Patient","gender":"F"}), "Patient.gender"),
        (json!({"resourceType":"Patient","unknownThing":true}), "Patient.unknownThing"),
        (json!({"resourceType":"Patient","active":"yes"}), "Patient.active"),
        (json!({"resourceType":"Patient","name":{"family":"x"}}), "Patient.name"),
        (json!({"resourceType":"Patient","name":[{"given":"x"}]}), "Patient.name[0].given"),
        (json!({"resourceType":"Observation","code":{"text":"x"}}), "Observation.status"),
        (json!({"resourceType":"Observation","status":"done","code":{"text":"x"}}), "Observation.status"),
        (
            json!({"resourceType":"Observation","status":"final","code":{"text":"x"},"effectiveDateTime":"2020-01-01T10:00:00"}),
            "Observation.effectiveDateTime",
        ),
        (
            json!({"resourceType":"Observation","status":"final","code":{"text":"x"},"issued":"2020-01-01"}),
            "Observation.issued",
        ),
        (
            json!({"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a","valueInteger":1}),
            "Observation.valueInteger",
        ),
        (
            json!({"resourceType":"Patient","contained":[{"resourceType":"Practitioner","gender":"x"}]}),
            "Patient.contained[0].gender",
        ),
        (json!({"resourceType":"Patient","multipleBirthInteger":2.5}), "Patient.multipleBirthInteger"),
        (json!({"resourceType":"Patient","telecom":[{"system":"phone","value":""}]}), "Patient.telecom[0].value"),
        (json!({"resourceType":"Patient","meta":{"profile":["not a uri"]}}), "Patient.meta.profile[0]"),
    ];
    for (body, expr) in &cases {
        let ty = body["resourceType"].as_str().unwrap();
        let r = s.post(&format!("/{ty}"), body).await;
        assert_eq!(r.status(), 400, "{body}");
        let oo = json(r).await;
        assert_outcome(&oo);
        assert_eq!(first_expression(&oo).as_deref(), Some(*expr), "{oo}");
    }
    let r = s.post("/Patient", &json!({"resourceType":"Observation","status":"final","code":{"text":"x"}})).await;
    assert_eq!(r.status(), 400, "type must match the URL");
    let h = json(s.get("/_history").await).await;
    assert!(h.get("entry").is_none(), "nothing was stored: {h}");
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_operation_at_type_and_instance_level() {
    let s = TestServer::spawn().await;
    let good = json!({"resourceType":"Patient","gender":"male"});
    let r = s.post("/Patient/$validate", &good).await;
    assert_eq!(r.status(), 200);
    let oo = json(r).await;
    // valid, with the one best practice it misses reported as a warning (dom-6: a
    // resource should have a narrative); with a narrative, all is well
    assert_eq!(oo["issue"].as_array().unwrap().len(), 1, "{oo}");
    assert_eq!(oo["issue"][0]["severity"], "warning", "{oo}");
    assert_eq!(oo["issue"][0]["code"], "invariant", "{oo}");
    assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().starts_with("dom-6: "), "{oo}");
    assert_eq!(first_expression(&oo).as_deref(), Some("Patient"));
    let mut narrated = good.clone();
    narrated["text"] = json!({"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">A man</div>"});
    let oo = json(s.post("/Patient/$validate", &narrated).await).await;
    assert_eq!(oo["issue"][0]["severity"], "information", "{oo}");
    assert_eq!(oo["issue"].as_array().unwrap().len(), 1, "{oo}");

    let bad = json!({"resourceType":"Patient","gender":"M"});
    let r = s.post("/Patient/$validate", &bad).await;
    assert_eq!(r.status(), 200, "$validate reports problems with 200");
    let oo = json(r).await;
    assert_eq!(oo["issue"][0]["severity"], "error");
    assert_eq!(first_expression(&oo).as_deref(), Some("Patient.gender"));
    // Parameters form with mode
    let params = json!({"resourceType":"Parameters","parameter":[{"name":"resource","resource":{"resourceType":"Patient","id":"v1"}},{"name":"mode","valueCode":"update"}]});
    let r = s.post("/Patient/v1/$validate", &params).await;
    let oo = json(r).await;
    let only_dom6 = |i: &Value| i["severity"] == "warning" && i["diagnostics"].as_str().unwrap().starts_with("dom-6: ");
    assert!(oo["issue"].as_array().unwrap().iter().all(only_dom6), "{oo}");
    let r = s.post("/Patient/v2/$validate", &params).await;
    assert_eq!(json(r).await["issue"][0]["severity"], "error", "id must match the URL");
    // mode=delete of something that does not exist
    let r = s.post("/Patient/nope/$validate?mode=delete", &good).await;
    assert_eq!(r.status(), 404);
    let r = s.post("/Patient/$validate?mode=bogus", &good).await;
    assert_eq!(r.status(), 400);
    // nothing was stored
    let h = json(s.get("/_history").await).await;
    assert!(h.get("entry").is_none());
    let r = s.get("/Patient/$validate").await;
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn narratives_are_held_to_the_r4_xhtml_rules() {
    let s = TestServer::spawn().await;
    let div = |inner: &str| format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{inner}</div>");
    let patient = |d: String| json!({"resourceType":"Patient","text":{"status":"generated","div":d}});
    // each break refused with where it is; the same resource without it accepted
    for (d, at, says) in [
        (div("<p>Ana</p><script>alert(1)</script>"), "Patient.text.div", "<script> at /div/script"),
        (div("<p onmouseover=\"steal()\">Ana</p>"), "Patient.text.div", "onmouseover"),
        (div("<a href=\"javascript:alert(1)\">Ana</a>"), "Patient.text.div", "runs script"),
        (div("<p>  </p>"), "Patient.text.div", "txt-2"),
        ("<div>Ana</div>".to_string(), "Patient.text.div", "XHTML namespace"),
        // an internal link that leads nowhere; a style that loads a stylesheet
        (div("<p id=\"a\">Ana</p><a href=\"#b\">more</a>"), "Patient.text.div", "link to #b at /div/a leads nowhere"),
        (div("<p style=\"@import url(http://x.example/s.css)\">Ana</p>"), "Patient.text.div", "loads a stylesheet"),
    ] {
        let r = s.post("/Patient", &patient(d.clone())).await;
        assert_eq!(r.status(), 400, "{d}");
        let oo = json(r).await;
        assert_eq!(first_expression(&oo).as_deref(), Some(at), "{oo}");
        assert!(oo.to_string().contains(says), "{d}: {oo}");
        // $validate reports it too
        let v = json(s.post("/Patient/$validate", &patient(d.clone())).await).await;
        assert_eq!(v["issue"][0]["severity"], "error", "{v}");
    }
    assert_eq!(
        s.post("/Patient", &patient(div("<p>Ana <b>Alvarez</b>&nbsp;&mdash; born 1980</p>"))).await.status(),
        201
    );
    // links to an element of the narrative and to a contained resource lead somewhere
    let linked = json!({"resourceType":"Patient","managingOrganization":{"reference":"#o1"},
        "contained":[{"resourceType":"Organization","id":"o1","name":"Clinic"}],
        "text":{"status":"generated","div":div("<p id=\"a\">Ana</p><a href=\"#a\">top</a> <a href=\"#o1\">clinic</a>")}});
    assert_eq!(s.post("/Patient", &linked).await.status(), 201);
    // in a contained resource, and in a transaction entry: refused whole, nothing stored
    let contained = json!({"resourceType":"Patient","id":"nc1","contained":[{"resourceType":"Organization","id":"o1",
        "text":{"status":"generated","div":div("<img src=\"x\" onerror=\"steal()\"/>")}}]});
    let r = s.put("/Patient/nc1", &contained).await;
    assert_eq!(r.status(), 400);
    assert_eq!(first_expression(&json(r).await).as_deref(), Some("Patient.contained[0].text.div"));
    let before = json(s.get("/Patient?_summary=count").await).await["total"].clone();
    let tx = json!({"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
        {"resource":patient(div("<iframe src=\"http://x\">Ana</iframe>")),"request":{"method":"POST","url":"Patient"}}]});
    let r = s.post("", &tx).await;
    assert_eq!(r.status(), 400);
    assert!(json(r).await.to_string().contains("<iframe>"));
    assert_eq!(json(s.get("/Patient?_summary=count").await).await["total"], before);
}

#[tokio::test]
async fn attachments_must_describe_their_data_and_dstu2_comments_are_refused() {
    let s = TestServer::spawn().await;
    let doc = |att: serde_json::Value| json!({"resourceType":"DocumentReference","status":"current","content":[{"attachment":att}]});
    // "hello": 5 bytes, SHA-1 in base64 qvTGHdzF6KLavt4PO0gs2a6pQ00=
    for (att, at) in [
        (
            json!({"contentType":"text/plain","data":"aGVsbG8=","size":50}),
            "DocumentReference.content[0].attachment.size",
        ),
        (
            json!({"contentType":"text/plain","data":"aGVsbG8=","hash":"aGVsbG8="}),
            "DocumentReference.content[0].attachment.hash",
        ),
    ] {
        let r = s.post("/DocumentReference", &doc(att)).await;
        assert_eq!(r.status(), 400);
        let oo = json(r).await;
        assert_outcome(&oo);
        assert_eq!(first_expression(&oo).as_deref(), Some(at), "{oo}");
    }
    let good =
        doc(json!({"contentType":"text/plain","data":"aGVsbG8=","size":5,"hash":"qvTGHdzF6KLavt4PO0gs2a6pQ00="}));
    assert_eq!(s.post("/DocumentReference", &good).await.status(), 201);
    let r = s.post("/Patient", &json!({"resourceType":"Patient","fhir_comments":["from DSTU2"]})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(first_expression(&json(r).await).as_deref(), Some("Patient.fhir_comments"));
}

/// The invariants of the R4 definitions of resources and data types (FHIRPath
/// constraints of severity error) are held on create, update, in transactions and by
/// `$validate`: each broken
/// one is a 400 `invariant` issue naming its key, its words and its element, and nothing
/// is stored.
#[tokio::test(flavor = "multi_thread")]
async fn the_invariants_of_the_r4_definitions_are_held() {
    let s = TestServer::spawn().await;
    let cases = [
        // obs-6: a value and a reason for its absence
        (
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "valueQuantity": {"value": 1}, "dataAbsentReason": {"text": "lost"}}),
            "obs-6",
            "Observation",
        ),
        // pat-1 on the second contact: no name, telecom, address or organization
        (
            json!({"resourceType": "Patient", "contact": [{"name": {"family": "X"}}, {"gender": "female"}]}),
            "pat-1",
            "Patient.contact[1]",
        ),
        // dom-3: a contained resource that nothing refers to
        (
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o1", "name": "Org"}]}),
            "dom-3",
            "Patient",
        ),
        // per-1 on a data type, where it is: a period that ends before it starts
        (
            json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                "period": {"start": "2025-01-02T10:00:00Z", "end": "2025-01-02T09:00:00Z"}}),
            "per-1",
            "Encounter.period",
        ),
        // dom-2: a contained resource that contains another
        (
            json!({"resourceType": "Patient", "managingOrganization": {"reference": "#o1"},
                "contained": [{"resourceType": "Organization", "id": "o1", "name": "Org",
                    "contained": [{"resourceType": "Organization", "id": "o2", "name": "Inner"}]}]}),
            "dom-2",
            "Patient",
        ),
    ];
    // the resources inside a resource are held to their own type's rules: a contained
    // Patient (pat-1), an Observation in a collection Bundle (obs-6)
    let inner = [
        (
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "#p"},
                "contained": [{"resourceType": "Patient", "id": "p", "contact": [{"gender": "female"}]}]}),
            "pat-1",
            "Observation.contained[0].contact[0]",
        ),
        (
            json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": cases[0].0}]}),
            "obs-6",
            "Bundle.entry[0].resource",
        ),
    ];
    for (body, key, at) in cases.iter().chain(&inner) {
        let ty = body["resourceType"].as_str().unwrap();
        let r = s.post(&format!("/{ty}"), body).await;
        assert_eq!(r.status(), 400, "{body}");
        let oo = json(r).await;
        assert_outcome(&oo);
        assert_eq!(oo["issue"][0]["code"], "invariant", "{oo}");
        assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().starts_with(&format!("{key}: ")), "{oo}");
        assert_eq!(first_expression(&oo).as_deref(), Some(*at), "{oo}");
        // $validate says the same, and the resource was not stored
        let r = s.post(&format!("/{ty}/$validate"), body).await;
        let oo = json(r).await;
        assert!(oo.to_string().contains(&format!("{key}: ")), "{oo}");
        let n = json(s.get(&format!("/{ty}?_summary=count")).await).await;
        assert_eq!(n["total"], 0, "{n}");
    }
    // the same contact made whole is stored; an update that breaks it is refused
    let ok = json!({"resourceType": "Patient", "id": "inv1", "contact": [{"name": {"family": "X"}}, {"telecom": [{"system": "phone", "value": "555"}]}]});
    assert_eq!(s.put("/Patient/inv1", &ok).await.status(), 201);
    let mut broken = ok.clone();
    broken["contact"][1] = json!({"gender": "male"});
    assert_eq!(s.put("/Patient/inv1", &broken).await.status(), 400);
    // in a transaction: refused whole
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Fine"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": cases[0].0, "request": {"method": "POST", "url": "Observation"}}]});
    let r = s
        .client
        .post(s.fhir(""))
        .header("content-type", "application/fhir+json")
        .body(tx.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let oo = json(r).await;
    assert!(oo.to_string().contains("obs-6"), "{oo}");
    let n = json(s.get("/Patient?_summary=count").await).await;
    assert_eq!(n["total"], 1, "only inv1: {n}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bundles_are_held_to_the_r4_entry_rules() {
    let s = TestServer::spawn().await;
    // Bundle.entry.fullUrl: a fullUrl that is not a URN names its resource's type and id
    let collection = |full: &str| {
        json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": full, "resource": {"resourceType": "Patient", "id": "p1", "active": true}}]})
    };
    let bad = collection("http://example.org/fhir/Patient/p2");
    let r = s.post("/Bundle", &bad).await;
    assert_eq!(r.status(), 400);
    let oo = json(r).await;
    assert_outcome(&oo);
    assert_eq!(first_expression(&oo).as_deref(), Some("Bundle.entry[0].fullUrl"), "{oo}");
    assert!(oo.to_string().contains("disagrees with the resource it names (Patient/p1)"), "{oo}");
    let v = json(s.post("/Bundle/$validate", &bad).await).await;
    assert_eq!(first_expression(&v).as_deref(), Some("Bundle.entry[0].fullUrl"), "{v}");
    assert_eq!(s.post("/Bundle", &collection("http://example.org/fhir/Patient/p1")).await.status(), 201);

    // a document holds every resource it refers to
    let document = |subject: &str| {
        json!({"resourceType": "Bundle", "id": "doc1", "type": "document",
            "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"},
            "timestamp": "2026-12-07T10:00:00Z",
            "entry": [
                {"fullUrl": "urn:uuid:2b6c9c6f-8f7e-4d3a-9b55-1d4f1a7a8e01", "resource": {"resourceType": "Composition",
                    "status": "final", "type": {"text": "Discharge summary"}, "date": "2026-12-07",
                    "title": "Discharge summary", "subject": {"reference": subject},
                    "author": [{"reference": "urn:uuid:9a1f6b1e-5c43-4f0e-a7f0-3c2e9b8d7c02"}]}},
                {"fullUrl": "urn:uuid:6f2d8a4b-3e1c-4b7a-9c5d-8e0f1a2b3c03", "resource": {"resourceType": "Patient", "active": true}},
                {"fullUrl": "urn:uuid:9a1f6b1e-5c43-4f0e-a7f0-3c2e9b8d7c02", "resource": {"resourceType": "Practitioner", "active": true}}]})
    };
    let outside = document("Patient/somewhere-else");
    let r = s.put("/Bundle/doc1", &outside).await;
    assert_eq!(r.status(), 400);
    let oo = json(r).await;
    assert_eq!(first_expression(&oo).as_deref(), Some("Bundle.entry[0].resource.subject.reference"), "{oo}");
    assert!(oo.to_string().contains("not in the document"), "{oo}");
    let whole = document("urn:uuid:6f2d8a4b-3e1c-4b7a-9c5d-8e0f1a2b3c03");
    assert_eq!(s.put("/Bundle/doc1", &whole).await.status(), 201, "the same document, whole");
    // an update that breaks it is refused and the stored version stays
    assert_eq!(s.put("/Bundle/doc1", &outside).await.status(), 400);
    let stored = json(s.get("/Bundle/doc1").await).await;
    assert_eq!(stored["meta"]["versionId"], "1");

    // in a transaction: a fullUrl that disagrees with its entry, and an entry that is a
    // broken document; each refuses the transaction whole
    let before = json(s.get("/Patient?_summary=count").await).await["total"].clone();
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "active": true}, "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "http://example.org/fhir/Patient/tx2", "resource": {"resourceType": "Patient", "id": "tx1"},
         "request": {"method": "PUT", "url": "Patient/tx1"}}]});
    let r = s.post("", &tx).await;
    assert_eq!(r.status(), 400);
    assert_eq!(first_expression(&json(r).await).as_deref(), Some("Bundle.entry[1].fullUrl"));
    let mut doc_entry = outside.clone();
    doc_entry.as_object_mut().unwrap().shift_remove("id");
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "active": true}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": doc_entry, "request": {"method": "POST", "url": "Bundle"}}]});
    let r = s.post("", &tx).await;
    assert_eq!(r.status(), 400);
    assert!(json(r).await.to_string().contains("not in the document"));
    assert_eq!(json(s.get("/Patient?_summary=count").await).await["total"], before);
}

#[tokio::test(flavor = "multi_thread")]
async fn extensions_are_held_to_the_r4_core_definitions() {
    let s = TestServer::spawn().await;
    let sd = "http://hl7.org/fhir/StructureDefinition";
    // humanname-assembly-order takes a valueCode; a modifier extension nobody defined
    let wrong_type = json!({"url": format!("{sd}/humanname-assembly-order"), "valueString": "NL1"});
    let unknown_modifier = json!({"url": "http://example.org/fhir/StructureDefinition/reverses", "valueBoolean": true});
    let cases = [
        (
            json!({"resourceType": "Patient", "id": "ext1", "name": [{"family": "Doe", "extension": [wrong_type]}]}),
            "Patient.name[0].extension[0].valueString",
            "humanname-assembly-order",
        ),
        (
            json!({"resourceType": "Patient", "id": "ext1", "modifierExtension": [unknown_modifier]}),
            "Patient.modifierExtension[0]",
            "http://example.org/fhir/StructureDefinition/reverses",
        ),
    ];
    let stored = json!({"resourceType": "Patient", "id": "ext1", "name": [{"family": "Doe"}]});
    assert_eq!(s.put("/Patient/ext1", &stored).await.status(), 201);
    for (body, at, names) in &cases {
        let check = |oo: &serde_json::Value| {
            assert_outcome(oo);
            assert_eq!(oo["issue"][0]["severity"], "error", "{oo}");
            assert_eq!(first_expression(oo).as_deref(), Some(*at), "{oo}");
            assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().contains(names), "{oo}");
        };
        // create
        let mut new = body.clone();
        new.as_object_mut().unwrap().remove("id");
        let r = s.post("/Patient", &new).await;
        assert_eq!(r.status(), 400, "{body}");
        check(&json(r).await);
        // update
        let r = s.put("/Patient/ext1", body).await;
        assert_eq!(r.status(), 400, "{body}");
        check(&json(r).await);
        // a transaction entry: the whole refused
        let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "name": [{"family": "Fine"}]}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": body, "request": {"method": "PUT", "url": "Patient/ext1"}}]});
        let r = s.post("", &tx).await;
        assert_eq!(r.status(), 400, "{body}");
        let oo = json(r).await;
        assert_outcome(&oo);
        let in_bundle = format!("Bundle.entry[1].resource{}", at.strip_prefix("Patient").unwrap());
        assert_eq!(first_expression(&oo), Some(in_bundle), "{oo}");
        assert!(oo.to_string().contains(names), "{oo}");
        // $validate: reported with 200
        let r = s.post("/Patient/$validate", body).await;
        assert_eq!(r.status(), 200);
        check(&json(r).await);
    }
    // nothing of that was stored: one version of ext1 and no other Patient
    let n = json(s.get("/Patient?_summary=count").await).await;
    assert_eq!(n["total"], 1, "{n}");
    let h = json(s.get("/Patient/ext1/_history").await).await;
    assert_eq!(h["entry"].as_array().unwrap().len(), 1, "{h}");
    // an extension Hale does not know is kept as it was written; a core one used right too
    let kept = json!({"resourceType": "Patient", "id": "ext1",
        "extension": [{"url": "http://example.org/fhir/StructureDefinition/favourite-colour", "valueString": "green"}],
        "name": [{"family": "Doe", "extension": [{"url": format!("{sd}/humanname-assembly-order"), "valueCode": "NL1"}]}]});
    assert_eq!(s.put("/Patient/ext1", &kept).await.status(), 200);
    let read = json(s.get("/Patient/ext1").await).await;
    assert_eq!(read["extension"], kept["extension"], "{read}");
    assert_eq!(read["name"], kept["name"], "{read}");
    let r = s.post("/Patient/$validate", &kept).await;
    let oo = json(r).await;
    let only_dom6 = |i: &Value| i["severity"] == "warning" && i["diagnostics"].as_str().unwrap().starts_with("dom-6: ");
    assert!(oo["issue"].as_array().unwrap().iter().all(only_dom6), "{oo}");
}

#[tokio::test(flavor = "multi_thread")]
async fn core_extensions_are_held_to_their_context_invariants() {
    let s = TestServer::spawn().await;
    let sd = "http://hl7.org/fhir/StructureDefinition";
    // questionnaire-unit's one contextInvariant is `type='integer' or type='decimal'`,
    // evaluated on the item that holds it: a decimal item may carry a unit, a string item not
    let questionnaire = |item_type: &str| {
        json!({"resourceType": "Questionnaire", "id": "ci1", "status": "draft", "item": [
            {"linkId": "weight", "text": "Weight", "type": "group", "item": [
                {"linkId": "w", "text": "Weight", "type": item_type,
                 "extension": [{"url": format!("{sd}/questionnaire-unit"),
                                "valueCoding": {"system": "http://unitsofmeasure.org", "code": "kg"}}]}]}]})
    };
    // list-changeBase's is `mode = 'changes'`, evaluated on the List
    let list = |mode: &str| {
        json!({"resourceType": "List", "id": "ci2", "status": "current", "mode": mode,
            "extension": [{"url": format!("{sd}/list-changeBase"), "valueReference": {"reference": "List/base"}}]})
    };
    let repeating = |repeats: Option<bool>| {
        let mut q = json!({"resourceType": "Questionnaire", "id": "ci3", "status": "draft", "item": [
            {"linkId": "allergy", "text": "Allergy", "type": "string",
             "extension": [{"url": format!("{sd}/questionnaire-maxOccurs"), "valueInteger": 3}]}]});
        if let Some(r) = repeats {
            q["item"][0]["repeats"] = json!(r);
        }
        q
    };
    let cases = [
        (
            questionnaire("decimal"),
            questionnaire("string"),
            "Questionnaire.item[0].item[0].extension[0]",
            format!("{sd}/questionnaire-unit"),
            "type='integer' or type='decimal'",
        ),
        (list("changes"), list("snapshot"), "List.extension[0]", format!("{sd}/list-changeBase"), "mode = 'changes'"),
        // maxOccurs 3 needs an item that repeats: without `repeats` (R4 reads it as false)
        // the rule is not true
        (
            repeating(Some(true)),
            repeating(None),
            "Questionnaire.item[0].extension[0]",
            format!("{sd}/questionnaire-maxOccurs"),
            "type!='display' and (repeats=true or %extension.valueInteger=1)",
        ),
    ];
    for (fine, broken, at, url, rule) in &cases {
        let ty = fine["resourceType"].as_str().unwrap();
        let id = fine["id"].as_str().unwrap();
        let check = |oo: &Value| {
            assert_outcome(oo);
            assert_eq!(oo["issue"][0]["severity"], "error", "{oo}");
            assert_eq!(oo["issue"][0]["code"], "invariant", "{oo}");
            assert_eq!(first_expression(oo).as_deref(), Some(*at), "{oo}");
            let says = oo["issue"][0]["diagnostics"].as_str().unwrap();
            assert!(says.starts_with(&format!("{url}: ")) && says.contains(&format!("`{rule}`")), "{oo}");
        };
        // create: refused, and the same resource without the break accepted
        let mut new = broken.clone();
        new.as_object_mut().unwrap().shift_remove("id");
        let r = s.post(&format!("/{ty}"), &new).await;
        assert_eq!(r.status(), 400, "{broken}");
        check(&json(r).await);
        let mut new_fine = fine.clone();
        new_fine.as_object_mut().unwrap().shift_remove("id");
        assert_eq!(s.post(&format!("/{ty}"), &new_fine).await.status(), 201, "{fine}");
        // update: the fine one stored, the broken one refused and the stored version kept
        assert_eq!(s.put(&format!("/{ty}/{id}"), fine).await.status(), 201, "{fine}");
        let r = s.put(&format!("/{ty}/{id}"), broken).await;
        assert_eq!(r.status(), 400, "{broken}");
        check(&json(r).await);
        let stored = json(s.get(&format!("/{ty}/{id}")).await).await;
        assert_eq!(stored["meta"]["versionId"], "1", "{stored}");
        // a transaction entry: the whole refused
        let before = json(s.get("/Patient?_summary=count").await).await["total"].clone();
        let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "name": [{"family": "Fine"}]}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": broken, "request": {"method": "PUT", "url": format!("{ty}/{id}")}}]});
        let r = s.post("", &tx).await;
        assert_eq!(r.status(), 400, "{broken}");
        let oo = json(r).await;
        assert_outcome(&oo);
        let in_bundle = format!("Bundle.entry[1].resource{}", at.strip_prefix(ty).unwrap());
        assert_eq!(first_expression(&oo), Some(in_bundle), "{oo}");
        assert!(oo.to_string().contains(url.as_str()), "{oo}");
        assert_eq!(json(s.get("/Patient?_summary=count").await).await["total"], before);
        // the same transaction with the fine resource goes through
        let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": fine, "request": {"method": "PUT", "url": format!("{ty}/{id}")}}]});
        assert_eq!(s.post("", &tx).await.status(), 200);
        // $validate: reported with 200; the fine one has no error
        let r = s.post(&format!("/{ty}/$validate"), broken).await;
        assert_eq!(r.status(), 200);
        check(&json(r).await);
        let oo = json(s.post(&format!("/{ty}/$validate"), fine).await).await;
        assert!(oo["issue"].as_array().unwrap().iter().all(|i| i["severity"] != "error"), "{oo}");
    }
}
