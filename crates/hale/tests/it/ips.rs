//! `Patient/$summary`: the International Patient Summary (IPS 2.0.0) over HTTP, checked
//! against the rules of the guide's own Composition and Bundle profiles (their
//! differentials, `tests/fixtures/ips/`), against R4 by Hale's validator, and against
//! the gate (a patient's token reaches only their own summary).

use std::collections::HashSet;

use hale_test_support::{TestServer, UserGrant, client_with_token, json, user_token};
use serde_json::{Value, json};

use crate::assert_outcome;

const PROFILES: &str = include_str!("../fixtures/ips/ips-2.0.0-differentials.json");

async fn fixture(ts: &TestServer) {
    let a = |r: &str| json!({"reference": r});
    let loinc = |code: &str, display: &str| json!({"coding": [{"system": "http://loinc.org", "code": code, "display": display}]});
    let cat = |c: &str| json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": c}]}]);
    let active = |s: &str| json!({"coding": [{"system": s, "code": "active"}]});
    for r in [
        json!({"resourceType":"Patient","id":"ips-a","identifier":[{"system":"urn:mrn","value":"IPS-1"}],"name":[{"family":"Okafor","given":["Ada"]}],"birthDate":"1970-01-01"}),
        json!({"resourceType":"Patient","id":"ips-b","identifier":[{"system":"urn:mrn","value":"IPS-2"}],"name":[{"family":"Berg","given":["Bo"]}]}),
        json!({"resourceType":"Patient","id":"ips-dup1","identifier":[{"system":"urn:mrn","value":"DUP"}]}),
        json!({"resourceType":"Patient","id":"ips-dup2","identifier":[{"system":"urn:mrn","value":"DUP"}]}),
        json!({"resourceType":"Condition","id":"ips-c1","clinicalStatus":active("http://terminology.hl7.org/CodeSystem/condition-clinical"),
               "code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006","display":"Diabetes mellitus type 2"}]},"subject":a("Patient/ips-a"),"onsetDateTime":"2015-03-01"}),
        json!({"resourceType":"Condition","id":"ips-c2","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"resolved"}]},
               "code":{"text":"Old sprain"},"subject":a("Patient/ips-a")}),
        json!({"resourceType":"AllergyIntolerance","id":"ips-al","clinicalStatus":active("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"),
               "code":{"text":"Penicillin <G>"},"criticality":"high","patient":a("Patient/ips-a"),"reaction":[{"manifestation":[{"text":"Hives"}]}]}),
        json!({"resourceType":"Medication","id":"ips-med","code":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"860975","display":"metformin 500 MG Oral Tablet"}]}}),
        json!({"resourceType":"MedicationRequest","id":"ips-mr","status":"active","intent":"order","medicationReference":a("Medication/ips-med"),
               "subject":a("Patient/ips-a"),"dosageInstruction":[{"text":"1 tablet twice a day"}]}),
        json!({"resourceType":"MedicationRequest","id":"ips-mr-old","status":"stopped","intent":"order","medicationCodeableConcept":{"text":"Stopped drug"},"subject":a("Patient/ips-a")}),
        json!({"resourceType":"Immunization","id":"ips-im","status":"completed","vaccineCode":{"text":"Influenza vaccine"},"patient":a("Patient/ips-a"),"occurrenceDateTime":"2025-10-01"}),
        json!({"resourceType":"Observation","id":"ips-a1c-old","status":"final","category":cat("laboratory"),"code":loinc("4548-4","Hemoglobin A1c"),
               "subject":a("Patient/ips-a"),"effectiveDateTime":"2023-01-01","valueQuantity":{"value":8.8,"unit":"%"}}),
        json!({"resourceType":"Observation","id":"ips-a1c","status":"final","category":cat("laboratory"),"code":loinc("4548-4","Hemoglobin A1c"),
               "subject":a("Patient/ips-a"),"effectiveDateTime":"2025-06-01","valueQuantity":{"value":7.1,"unit":"%"},
               "interpretation":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation","code":"H"}]}]}),
        json!({"resourceType":"Observation","id":"ips-bp","status":"final","category":cat("vital-signs"),"code":loinc("85354-9","Blood pressure"),
               "subject":a("Patient/ips-a"),"effectiveDateTime":"2025-06-01",
               "component":[{"code":loinc("8480-6","Systolic"),"valueQuantity":{"value":128,"unit":"mmHg"}},{"code":loinc("8462-4","Diastolic"),"valueQuantity":{"value":84,"unit":"mmHg"}}]}),
        json!({"resourceType":"Condition","id":"ips-canary","clinicalStatus":active("http://terminology.hl7.org/CodeSystem/condition-clinical"),"code":{"text":"CANARY-B"},"subject":a("Patient/ips-b")}),
    ] {
        let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        let resp = ts.put(&path, &r).await;
        assert!(resp.status().is_success(), "{path}: {}", resp.text().await.unwrap());
    }
}

fn code_of(cc: &Value) -> Option<&str> {
    cc["coding"][0]["code"].as_str()
}

/// Checks `doc` against the IPS profiles' differential rules and R4's document rules,
/// and returns the resources it holds by `Type/id`.
fn check_against_the_guide(doc: &Value) -> Vec<String> {
    let profiles: Value = serde_json::from_str(PROFILES).unwrap();
    let comp_rules =
        profiles["profiles"]["http://hl7.org/fhir/uv/ips/StructureDefinition/Composition-uv-ips"]["differential"]
            .as_array()
            .unwrap();
    let bundle_rules =
        profiles["profiles"]["http://hl7.org/fhir/uv/ips/StructureDefinition/Bundle-uv-ips"]["differential"]
            .as_array()
            .unwrap();
    // Bundle: type, identifier, timestamp, at least two entries, each with a fullUrl and
    // no request, response or search; the Composition first and only there (bdl-ips-1)
    assert_eq!(doc["type"], "document");
    for r in bundle_rules {
        match (r["id"].as_str().unwrap(), r["min"].as_u64()) {
            ("Bundle.identifier", Some(1)) => assert!(doc["identifier"]["value"].is_string(), "{r}"),
            ("Bundle.timestamp", Some(1)) => assert!(doc["timestamp"].is_string(), "{r}"),
            ("Bundle.entry", Some(n)) => assert!(doc["entry"].as_array().unwrap().len() as u64 >= n),
            ("Bundle.entry.fullUrl", Some(1)) => {
                assert!(doc["entry"].as_array().unwrap().iter().all(|e| e["fullUrl"].is_string()))
            }
            _ => {}
        }
        if r["max"] == "0" {
            let field = r["id"].as_str().unwrap().strip_prefix("Bundle.entry.").unwrap();
            assert!(doc["entry"].as_array().unwrap().iter().all(|e| e.get(field).is_none()), "{field}");
        }
    }
    let entries = doc["entry"].as_array().unwrap();
    assert_eq!(entries[0]["resource"]["resourceType"], "Composition");
    assert_eq!(entries.iter().filter(|e| e["resource"]["resourceType"] == "Composition").count(), 1);
    assert_eq!(entries.iter().filter(|e| e["resource"]["resourceType"] == "Patient").count(), 1);
    let urls: HashSet<&str> = entries.iter().map(|e| e["fullUrl"].as_str().unwrap()).collect();
    assert_eq!(urls.len(), entries.len(), "fullUrls are unique");
    let comp = &entries[0]["resource"];
    // Composition: the type, the subject, every section with title, code and text, and
    // entries or an empty reason (ips-comp-1); each required section slice present
    let type_rule = comp_rules.iter().find(|r| r["id"] == "Composition.type").unwrap();
    assert_eq!(code_of(&comp["type"]), type_rule["patternCodeableConcept"]["coding"][0]["code"].as_str());
    assert!(comp["subject"]["reference"].is_string());
    assert!(comp["author"][0]["reference"].is_string() && comp["date"].is_string() && comp["title"].is_string());
    let sections = comp["section"].as_array().unwrap();
    let min_sections = comp_rules.iter().find(|r| r["id"] == "Composition.section").unwrap()["min"].as_u64().unwrap();
    assert!(sections.len() as u64 >= min_sections);
    for s in sections {
        assert!(s["title"].is_string() && code_of(&s["code"]).is_some(), "{s}");
        let div = s["text"]["div"].as_str().unwrap();
        assert!(div.starts_with("<div xmlns=\"http://www.w3.org/1999/xhtml\">"), "{div}");
        assert!(s.get("entry").is_some() != s.get("emptyReason").is_some(), "entries or an empty reason: {s}");
        assert!(s.get("section").is_none());
    }
    for slice in comp_rules.iter().filter(|r| {
        r["path"] == "Composition.section" && r["sliceName"].is_string() && r["min"].as_u64().unwrap_or(0) >= 1
    }) {
        let name = slice["sliceName"].as_str().unwrap();
        let code_rule = comp_rules.iter().find(|r| r["id"] == format!("Composition.section:{name}.code")).unwrap();
        let code = code_rule["patternCodeableConcept"]["coding"][0]["code"].as_str().unwrap();
        assert!(sections.iter().any(|s| code_of(&s["code"]) == Some(code)), "required section {name} ({code})");
    }
    // every reference of the Composition resolves inside the document
    let base = entries[1]["fullUrl"].as_str().unwrap().rsplitn(3, '/').nth(2).unwrap().to_string();
    let mut refs: Vec<&str> =
        vec![comp["subject"]["reference"].as_str().unwrap(), comp["author"][0]["reference"].as_str().unwrap()];
    for s in sections {
        for e in s["entry"].as_array().into_iter().flatten() {
            refs.push(e["reference"].as_str().unwrap());
        }
    }
    for r in refs {
        let url = if r.starts_with("urn:") { r.to_string() } else { format!("{base}/{r}") };
        assert!(urls.contains(url.as_str()), "{r} resolves in the document");
    }
    entries
        .iter()
        .filter_map(|e| Some(format!("{}/{}", e["resource"]["resourceType"].as_str()?, e["resource"]["id"].as_str()?)))
        .collect()
}

fn section<'a>(doc: &'a Value, code: &str) -> &'a Value {
    doc["entry"][0]["resource"]["section"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| code_of(&s["code"]) == Some(code))
        .unwrap()
}

#[tokio::test]
async fn a_patient_summary_is_an_ips_document_of_the_record_as_it_is() {
    let ts = TestServer::spawn().await;
    fixture(&ts).await;
    let r = ts.get("/Patient/ips-a/$summary").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/fhir+json"));
    let doc = json(r).await;
    let held = check_against_the_guide(&doc);
    for id in [
        "Patient/ips-a",
        "Condition/ips-c1",
        "AllergyIntolerance/ips-al",
        "MedicationRequest/ips-mr",
        "Medication/ips-med",
        "Immunization/ips-im",
        "Observation/ips-a1c",
        "Observation/ips-bp",
    ] {
        assert!(held.contains(&id.to_string()), "{id} in {held:?}");
    }
    // what is no longer true, older values of the same test, and other patients are not
    for id in ["Condition/ips-c2", "MedicationRequest/ips-mr-old", "Observation/ips-a1c-old", "Condition/ips-canary"] {
        assert!(!held.contains(&id.to_string()), "{id}");
    }
    // the narratives say it in words, escaped
    let allergies = section(&doc, "48765-2")["text"]["div"].as_str().unwrap();
    assert!(allergies.contains("Penicillin &lt;G&gt;") && allergies.contains("Hives"), "{allergies}");
    let meds = section(&doc, "10160-0")["text"]["div"].as_str().unwrap();
    assert!(meds.contains("metformin 500 MG Oral Tablet") && meds.contains("1 tablet twice a day"), "{meds}");
    assert!(section(&doc, "8716-3")["text"]["div"].as_str().unwrap().contains("128/84 mmHg"));
    assert!(section(&doc, "30954-2")["text"]["div"].as_str().unwrap().contains("7.1 %"));
    // R4's own rules, by Hale's validator
    let oo = json(ts.post("/Bundle/$validate", &doc).await).await;
    assert!(oo["issue"].as_array().unwrap().iter().all(|i| i["severity"] != "error"), "{oo}");

    // a patient with nothing recorded: the required sections say so
    let empty = json(ts.get("/Patient/ips-b/$summary").await).await;
    check_against_the_guide(&empty);
    assert_eq!(section(&empty, "48765-2")["emptyReason"]["coding"][0]["code"], "unavailable");
    assert_eq!(section(&empty, "10160-0")["emptyReason"]["coding"][0]["code"], "unavailable");
    assert!(section(&empty, "11450-4")["entry"][0]["reference"] == "Condition/ips-canary");

    // by identifier, GET or POST with Parameters
    let by_id = json(ts.get("/Patient/$summary?identifier=urn:mrn|IPS-1").await).await;
    assert_eq!(by_id["entry"][1]["resource"]["id"], "ips-a");
    let params = json!({"resourceType": "Parameters", "parameter": [{"name": "identifier", "valueString": "urn:mrn|IPS-1"},
        {"name": "profile", "valueCanonical": "http://hl7.org/fhir/uv/ips/StructureDefinition/Composition-uv-ips"}]});
    let posted = json(ts.post("/Patient/$summary", &params).await).await;
    assert_eq!(posted["entry"][1]["resource"]["id"], "ips-a");

    // refusals: clear, located, nothing leaked
    for (path, status, at) in [
        ("/Patient/$summary", 400, "identifier"),
        ("/Patient/$summary?identifier=urn:mrn|NOBODY", 404, "identifier"),
        ("/Patient/$summary?identifier=urn:mrn|DUP", 412, "identifier"),
        ("/Patient/ips-a/$summary?profile=http://example.org/other", 400, "profile"),
        ("/Patient/nobody/$summary", 404, ""),
        ("/Patient/ips-a/$summary?bogus=1", 400, "bogus"),
    ] {
        let r = ts.get(path).await;
        assert_eq!(r.status().as_u16(), status, "{path}");
        let oo = json(r).await;
        assert_outcome(&oo);
        if !at.is_empty() {
            assert_eq!(crate::first_expression(&oo).as_deref(), Some(at), "{path}: {oo}");
        }
    }
    // the CapabilityStatement names the operation
    let cs = json(ts.get("/metadata").await).await;
    assert!(cs.to_string().contains("http://hl7.org/fhir/uv/ips/OperationDefinition/summary"));
}

#[tokio::test]
async fn a_patient_reaches_only_their_own_summary() {
    let ts = TestServer::spawn().await;
    fixture(&ts).await;
    let g = UserGrant {
        role: "patient",
        patients: &["ips-a"],
        scope: "patient/*.read launch/patient",
        launch_patient: Some("ips-a"),
        ..Default::default()
    };
    let c = client_with_token(&user_token(ts.data_dir.path(), "ada", &g));
    let own = c.get(ts.fhir("/Patient/ips-a/$summary")).send().await.unwrap();
    assert_eq!(own.status(), 200);
    let doc: Value = own.json().await.unwrap();
    assert!(!doc.to_string().contains("CANARY"));
    for path in ["/Patient/ips-b/$summary", "/Patient/$summary?identifier=urn:mrn|IPS-2"] {
        let r = c.get(ts.fhir(path)).send().await.unwrap();
        assert!(matches!(r.status().as_u16(), 403 | 404), "{path}: {}", r.status());
        assert!(!r.text().await.unwrap().contains("CANARY"), "{path}");
    }
}
