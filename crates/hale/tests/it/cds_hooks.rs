//! CDS Hooks 2.0 over HTTP: discovery, order-sign cards from the same rules as Hale's
//! pages (allergy, interaction, kidneys), patient-view cards of the care due, refusals
//! with where, and the gate: what the caller may not read gives no card.

use hale_test_support::{TestServer, UserGrant, client_with_token, json, user_token};
use serde_json::{Value, json};

async fn setup(ts: &TestServer) {
    let a = |r: &str| json!({"reference": r});
    let resources = [
        json!({"resourceType": "Organization", "id": "org-h", "name": "Hooks clinic"}),
        json!({"resourceType": "Patient", "id": "hook-p", "name": [{"family": "Hooks", "given": ["Hana"]}], "birthDate": "1960-04-04", "gender": "female", "managingOrganization": a("Organization/org-h")}),
        json!({"resourceType": "Patient", "id": "hook-q", "name": [{"family": "Other", "given": ["Oskar"]}], "birthDate": "1970-01-01"}),
        json!({"resourceType": "AllergyIntolerance", "id": "hook-al", "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
               "code": {"text": "Penicillin"}, "criticality": "high", "patient": a("Patient/hook-p")}),
        json!({"resourceType": "MedicationRequest", "id": "hook-warf", "status": "active", "intent": "order",
               "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "11289", "display": "warfarin"}]},
               "subject": a("Patient/hook-p")}),
        json!({"resourceType": "Observation", "id": "hook-egfr", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "62238-1"}]}, "subject": a("Patient/hook-p"),
               "effectiveDateTime": "2026-11-01", "valueQuantity": {"value": 22, "unit": "mL/min/{1.73_m2}"}}),
    ];
    for r in resources {
        let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        assert!(ts.put(&path, &r).await.status().is_success(), "{path}");
    }
}

fn draft(rxcui: &str, name: &str, times_a_day: u32) -> Value {
    json!({"resourceType": "MedicationRequest", "id": format!("draft-{rxcui}"), "status": "draft", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxcui, "display": name}]},
        "subject": {"reference": "Patient/hook-p"},
        "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 1}}], "timing": {"repeat": {"frequency": times_a_day, "period": 1, "periodUnit": "d"}}}]})
}

fn request(hook: &str, patient: &str, drafts: &[Value]) -> Value {
    let mut r = json!({"hook": hook, "hookInstance": "d1544fd4-1234-4b2a-8c3e-111111111111", "context": {"userId": "Practitioner/x", "patientId": patient}});
    if !drafts.is_empty() {
        r["context"]["draftOrders"] = json!({"resourceType": "Bundle", "type": "collection",
            "entry": drafts.iter().map(|d| json!({"resource": d})).collect::<Vec<_>>()});
    }
    r
}

async fn call(client: &reqwest::Client, ts: &TestServer, service: &str, body: &Value) -> (u16, Value) {
    let r = client
        .post(format!("{}/cds-services/{service}", ts.base))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn cds_hooks_services_answer_with_hales_rules_through_the_gate() {
    let ts = TestServer::spawn().await;
    setup(&ts).await;
    // discovery is open
    let d = json(reqwest::get(format!("{}/cds-services", ts.base)).await.unwrap()).await;
    let ids: Vec<&str> = d["services"].as_array().unwrap().iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, ["hale-order-select", "hale-order-sign", "hale-preventive-care"]);

    // order-sign: amoxicillin for a penicillin allergy; ibuprofen with warfarin at eGFR 22
    let body = request(
        "order-sign",
        "hook-p",
        &[draft("308182", "amoxicillin 250 MG", 3), draft("5640", "ibuprofen 400 MG", 3)],
    );
    let (status, answer) = call(&ts.client, &ts, "hale-order-sign", &body).await;
    assert_eq!(status, 200, "{answer}");
    let cards = answer["cards"].as_array().unwrap();
    let summaries: Vec<&str> = cards.iter().filter_map(|c| c["summary"].as_str()).collect();
    assert!(summaries.iter().any(|s| s.contains("Allergy to penicillins")), "{summaries:?}");
    assert!(summaries.iter().any(|s| s.contains("warfarin") && s.contains("ibuprofen")), "{summaries:?}");
    assert!(summaries.iter().any(|s| s.contains("eGFR 22")), "{summaries:?}");
    for c in cards {
        assert!(matches!(c["indicator"].as_str(), Some("critical" | "warning" | "info")), "{c}");
        assert!(c["source"]["label"].as_str().is_some_and(|l| !l.is_empty()), "{c}");
        assert!(c["summary"].as_str().unwrap().chars().count() < 140, "{c}");
        assert!(c["uuid"].as_str().is_some(), "{c}");
    }
    // a safe order: no card; the same drug three times a day: the dose card
    let (_, answer) = call(
        &ts.client,
        &ts,
        "hale-order-select",
        &request("order-select", "hook-p", &[draft("17767", "amlodipine", 1)]),
    )
    .await;
    assert_eq!(answer["cards"], json!([]), "{answer}");
    let (_, answer) = call(
        &ts.client,
        &ts,
        "hale-order-select",
        &request("order-select", "hook-p", &[draft("17767", "amlodipine", 3)]),
    )
    .await;
    assert_eq!(answer["cards"][0]["summary"], "amlodipine 15 mg a day is above the maximum of 10 mg a day", "{answer}");
    assert_eq!(answer["cards"][0]["indicator"], "critical");

    // patient-view: the care due
    let (status, answer) = call(&ts.client, &ts, "hale-preventive-care", &request("patient-view", "hook-p", &[])).await;
    assert_eq!(status, 200, "{answer}");
    let titles: Vec<&str> = answer["cards"].as_array().unwrap().iter().filter_map(|c| c["summary"].as_str()).collect();
    assert!(
        titles.contains(&"Influenza vaccine (yearly)") && titles.contains(&"Pneumococcal vaccine (65 and older)"),
        "{titles:?}"
    );
    // each card's source is a link to the recommendation
    for c in answer["cards"].as_array().unwrap() {
        assert!(c["source"]["url"].as_str().is_some_and(|u| u.starts_with("https://")), "{c}");
    }
    // a smoker of 66: the low-dose CT, until fewer than 20 pack-years are recorded
    let lung = "Lung cancer screening, low-dose CT yearly";
    assert!(!titles.iter().any(|t| t.starts_with(lung)), "{titles:?}");
    let snomed = |code: &str| json!({"coding": [{"system": "http://snomed.info/sct", "code": code}]});
    let smokes = json!({"resourceType": "Observation", "id": "hook-smoke", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]}, "subject": {"reference": "Patient/hook-p"},
        "effectiveDateTime": "2026-11-01", "valueCodeableConcept": snomed("449868002")});
    assert!(ts.put("/Observation/hook-smoke", &smokes).await.status().is_success());
    let lung_card = || async {
        let (_, answer) = call(&ts.client, &ts, "hale-preventive-care", &request("patient-view", "hook-p", &[])).await;
        answer["cards"].as_array().unwrap().iter().find(|c| c["summary"].as_str().unwrap().starts_with(lung)).cloned()
    };
    let card = lung_card().await.expect("a card for the low-dose CT");
    assert!(card["detail"].as_str().unwrap().contains("20 pack-years"), "{card}");
    assert!(card["source"]["url"].as_str().unwrap().ends_with("/lung-cancer-screening"), "{card}");
    let packs = json!({"resourceType": "Observation", "id": "hook-packs", "status": "final", "code": snomed("401201003"),
        "subject": {"reference": "Patient/hook-p"}, "effectiveDateTime": "2026-11-01", "valueQuantity": {"value": 12}});
    assert!(ts.put("/Observation/hook-packs", &packs).await.status().is_success());
    assert!(lung_card().await.is_none(), "12 pack-years: not due");
    // a child of 5 months with one DTaP dose at 2 months: a card per dose due, each series once
    let born = chrono::Utc::now().date_naive() - chrono::Months::new(5);
    let kid = json!({"resourceType": "Patient", "id": "hook-k", "birthDate": born.to_string(), "managingOrganization": {"reference": "Organization/org-h"}});
    let dose = born + chrono::Months::new(2);
    let dtap = json!({"resourceType": "Immunization", "id": "hook-k-dtap", "status": "completed", "patient": {"reference": "Patient/hook-k"},
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "20"}]}, "occurrenceDateTime": dose.to_string()});
    assert!(ts.put("/Patient/hook-k", &kid).await.status().is_success());
    assert!(ts.put("/Immunization/hook-k-dtap", &dtap).await.status().is_success());
    let (status, answer) = call(&ts.client, &ts, "hale-preventive-care", &request("patient-view", "hook-k", &[])).await;
    assert_eq!(status, 200, "{answer}");
    let cards = answer["cards"].as_array().unwrap();
    let card = cards.iter().find(|c| c["summary"] == "DTaP dose 2 of 5 (due at 4 months)").expect("the DTaP card");
    assert!(card["detail"].as_str().unwrap().contains(&format!("Last done: {dose}")), "{card}");
    assert!(card["source"]["url"].as_str().unwrap().contains("cdc.gov/vaccines"), "{card}");
    assert_eq!(cards.iter().filter(|c| c["summary"].as_str().unwrap().starts_with("DTaP")).count(), 1, "{answer}");
    assert!(cards.iter().any(|c| c["summary"] == "HepB dose 1 of 3 (due at birth)"), "{answer}");

    // refused with where
    let (status, answer) = call(&ts.client, &ts, "hale-order-sign", &request("patient-view", "hook-p", &[])).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["issue"][0]["expression"][0], "hook");
    let mut no_patient = request("order-sign", "", &[]);
    no_patient["context"].as_object_mut().unwrap().remove("patientId");
    let (status, answer) = call(&ts.client, &ts, "hale-order-sign", &no_patient).await;
    assert_eq!((status, answer["issue"][0]["expression"][0].as_str()), (400, Some("context.patientId")));
    let (status, _) = call(&ts.client, &ts, "no-such-service", &body).await;
    assert_eq!(status, 404);
    let (status, _) = call(&reqwest::Client::new(), &ts, "hale-order-sign", &body).await;
    assert_eq!(status, 401, "no token, no card");

    // a clinician of another organization: the patient is not theirs, so no card
    let token = user_token(
        ts.data_dir.path(),
        "dr.elsewhere",
        &UserGrant {
            role: "clinician",
            organization: Some("org-elsewhere"),
            scope: "user/*.cruds",
            ..UserGrant::default()
        },
    );
    let (status, answer) = call(&client_with_token(&token), &ts, "hale-order-sign", &body).await;
    assert_eq!(status, 404, "{answer}");
}
