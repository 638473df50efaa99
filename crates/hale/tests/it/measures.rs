//! `Measure/[id]/$evaluate-measure` over HTTP: Hale's built-in quality measures as FHIR
//! MeasureReports (summary, subject-list, individual) that pass Hale's own validation;
//! the population is what the caller may see through the gate; bad input is a located
//! 4xx OperationOutcome; the synthetic population lands in every measure.

use hale_test_support::{TestServer, UserGrant, client_with_token, json, user_token};
use serde_json::{Value, json};

use crate::assert_outcome;

/// Four adults of organization A with diabetes (poor control, good control, no HbA1c
/// in the period, and good control but out of the age range), one of organization B with
/// poor control (a canary), a woman screened and one not, a man with coronary disease
/// on a statin and one without.
async fn fixture(ts: &TestServer) {
    let active =
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]});
    let sct = |c: &str| json!({"coding": [{"system": "http://snomed.info/sct", "code": c}]});
    let org = |o: &str| json!({"reference": format!("Organization/{o}")});
    let pat = |id: &str, birth: &str, gender: &str, o: &str| json!({"resourceType": "Patient", "id": id, "name": [{"family": id}], "birthDate": birth, "gender": gender, "managingOrganization": org(o)});
    let dm = |id: &str| json!({"resourceType": "Condition", "id": format!("dm-{id}"), "clinicalStatus": active, "code": sct("44054006"), "subject": {"reference": format!("Patient/{id}")}});
    let a1c = |id: &str, v: f64, d: &str| {
        json!({"resourceType": "Observation", "id": format!("a1c-{id}"), "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]}, "subject": {"reference": format!("Patient/{id}")},
        "effectiveDateTime": d, "valueQuantity": {"value": v, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}})
    };
    let resources = [
        json!({"resourceType": "Organization", "id": "org-a", "name": "Clinic A"}),
        json!({"resourceType": "Organization", "id": "org-b", "name": "Clinic B"}),
        pat("m-poor", "1960-01-01", "male", "org-a"),
        dm("m-poor"),
        a1c("m-poor", 10.2, "2025-06-01"),
        pat("m-good", "1962-02-02", "female", "org-a"),
        dm("m-good"),
        a1c("m-good", 6.8, "2025-03-01"),
        pat("m-none", "1970-03-03", "male", "org-a"),
        dm("m-none"),
        a1c("m-none", 6.1, "2024-12-31"),
        pat("m-old", "1940-04-04", "female", "org-a"),
        dm("m-old"),
        pat("m-canary", "1965-05-05", "male", "org-b"),
        dm("m-canary"),
        a1c("m-canary", 11.0, "2025-05-05"),
        json!({"resourceType": "Procedure", "id": "mammo-good", "status": "completed", "code": sct("24623002"),
               "subject": {"reference": "Patient/m-good"}, "performedDateTime": "2024-05-01"}),
        json!({"resourceType": "Condition", "id": "cad-poor", "clinicalStatus": active, "code": sct("53741008"),
               "subject": {"reference": "Patient/m-poor"}, "onsetDateTime": "2019-01-01"}),
        json!({"resourceType": "MedicationRequest", "id": "statin-poor", "status": "active", "intent": "order", "authoredOn": "2025-02-01",
               "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "617310"}]},
               "subject": {"reference": "Patient/m-poor"}}),
        json!({"resourceType": "Condition", "id": "cad-none", "clinicalStatus": active, "code": sct("22298006"),
               "subject": {"reference": "Patient/m-none"}, "onsetDateTime": "2020-01-01"}),
    ];
    for r in resources {
        let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        let resp = ts.put(&path, &r).await;
        assert!(resp.status().is_success(), "{path}: {}", resp.text().await.unwrap());
    }
}

fn population<'a>(report: &'a Value, code: &str) -> &'a Value {
    report["group"][0]["population"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"]["coding"][0]["code"] == code)
        .unwrap_or_else(|| panic!("no {code} in {report}"))
}

fn count(report: &Value, code: &str) -> u64 {
    population(report, code)["count"].as_u64().unwrap()
}

/// The patients of a subject-list report's population `code`, from its contained List.
fn members(report: &Value, code: &str) -> Vec<String> {
    let r = population(report, code)["subjectResults"]["reference"].as_str().unwrap();
    let list = report["contained"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| format!("#{}", c["id"].as_str().unwrap()) == r)
        .unwrap();
    assert_eq!(list["resourceType"], "List");
    let mut out: Vec<String> = list["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["item"]["reference"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// Hale's validator finds no error in `report`.
async fn valid(ts: &TestServer, report: &Value) {
    let oo = json(ts.post("/MeasureReport/$validate", report).await).await;
    assert!(oo["issue"].as_array().unwrap().iter().all(|i| i["severity"] != "error"), "{oo}\n{report}");
}

const PERIOD: &str = "periodStart=2025-01-01&periodEnd=2025-12-31";

#[tokio::test(flavor = "multi_thread")]
async fn evaluate_measure_answers_summary_subject_list_and_individual_reports() {
    let ts = TestServer::spawn().await;
    fixture(&ts).await;
    // summary (the default without a subject): the system sees both organizations
    let r = ts.get(&format!("/Measure/cms122-hba1c-poor-control/$evaluate-measure?{PERIOD}")).await;
    assert_eq!(r.status(), 200);
    let report = json(r).await;
    assert_eq!(report["resourceType"], "MeasureReport");
    assert_eq!((report["status"].as_str(), report["type"].as_str()), (Some("complete"), Some("summary")));
    assert_eq!(report["measure"], "urn:hale:measure:cms122-hba1c-poor-control");
    assert_eq!(report["period"], json!({"start": "2025-01-01", "end": "2025-12-31"}));
    assert_eq!(report["improvementNotation"]["coding"][0]["code"], "decrease");
    // m-old is 85: out; m-poor, m-canary above 9, m-none's HbA1c the day before: in the numerator
    assert_eq!(count(&report, "initial-population"), 4);
    assert_eq!(count(&report, "denominator"), 4);
    assert_eq!(count(&report, "denominator-exclusion"), 0);
    assert_eq!(count(&report, "numerator"), 3);
    assert_eq!(report["group"][0]["measureScore"]["value"].as_f64(), Some(0.75));
    assert!(report.get("contained").is_none() && population(&report, "numerator").get("subjectResults").is_none());
    valid(&ts, &report).await;

    // subject-list: each population's patients in a contained List
    let list = json(
        ts.get(&format!("/Measure/cms122-hba1c-poor-control/$evaluate-measure?{PERIOD}&reportType=subject-list")).await,
    )
    .await;
    assert_eq!(list["type"], "subject-list");
    assert_eq!(members(&list, "numerator"), ["Patient/m-canary", "Patient/m-none", "Patient/m-poor"]);
    assert_eq!(members(&list, "initial-population").len(), 4);
    assert!(members(&list, "denominator-exclusion").is_empty());
    valid(&ts, &list).await;

    // individual: one patient, by GET or by POST with Parameters
    let one = json(
        ts.get(&format!("/Measure/cms122-hba1c-poor-control/$evaluate-measure?{PERIOD}&subject=Patient/m-good")).await,
    )
    .await;
    assert_eq!(
        (one["type"].as_str(), one["subject"]["reference"].as_str()),
        (Some("individual"), Some("Patient/m-good"))
    );
    assert_eq!((count(&one, "denominator"), count(&one, "numerator")), (1, 0));
    valid(&ts, &one).await;
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "periodStart", "valueDate": "2025-01-01"}, {"name": "periodEnd", "valueDate": "2025-12-31"},
        {"name": "reportType", "valueCode": "subject"}, {"name": "subject", "valueString": "Patient/m-poor"}]});
    let posted = json(ts.post("/Measure/cms122-hba1c-poor-control/$evaluate-measure", &params).await).await;
    assert_eq!((posted["type"].as_str(), count(&posted, "numerator")), (Some("individual"), 1));
    // a year as the period widens to its days
    let year =
        json(ts.get("/Measure/cms122-hba1c-poor-control/$evaluate-measure?periodStart=2025&periodEnd=2025").await)
            .await;
    assert_eq!(year["period"], json!({"start": "2025-01-01", "end": "2025-12-31"}));
    // the measure by the canonical at the type level
    let typed = json(
        ts.get(&format!("/Measure/$evaluate-measure?{PERIOD}&measure=urn:hale:measure:cms122-hba1c-poor-control"))
            .await,
    )
    .await;
    assert_eq!(count(&typed, "numerator"), 3);

    // other measures: breast cancer screening (m-good, 63, screened; m-old, 85, out), statins
    let bcs = json(
        ts.get(&format!("/Measure/cms125-breast-cancer-screening/$evaluate-measure?{PERIOD}&reportType=subject-list"))
            .await,
    )
    .await;
    assert_eq!(members(&bcs, "numerator"), ["Patient/m-good"]);
    assert_eq!(count(&bcs, "denominator"), 1);
    valid(&ts, &bcs).await;
    let statin = json(
        ts.get(&format!("/Measure/cms347-statin-therapy/$evaluate-measure?{PERIOD}&reportType=subject-list")).await,
    )
    .await;
    assert_eq!(members(&statin, "initial-population"), ["Patient/m-none", "Patient/m-poor"]);
    assert_eq!(members(&statin, "numerator"), ["Patient/m-poor"]);
    assert_eq!(statin["group"][0]["measureScore"]["value"].as_f64(), Some(0.5));
    valid(&ts, &statin).await;
    // nobody in the population: no score
    let kids = json(ts.get(&format!("/Measure/cms117-childhood-immunization/$evaluate-measure?{PERIOD}")).await).await;
    assert_eq!(count(&kids, "initial-population"), 0);
    assert!(kids["group"][0].get("measureScore").is_none(), "{kids}");
    valid(&ts, &kids).await;

    // the CapabilityStatement names the operation on Measure
    let cs = json(ts.get("/metadata").await).await;
    let measure = cs["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == "Measure").unwrap();
    assert!(measure["operation"].to_string().contains("Measure-evaluate-measure"), "{measure}");
}

#[tokio::test(flavor = "multi_thread")]
async fn evaluate_measure_counts_only_the_patients_the_caller_may_see() {
    let ts = TestServer::spawn().await;
    fixture(&ts).await;
    let g = UserGrant {
        role: "clinician",
        organization: Some("org-a"),
        fhir_user: Some("Practitioner/prac-1"),
        scope: "user/*.cruds",
        ..Default::default()
    };
    let c = client_with_token(&user_token(ts.data_dir.path(), "dr.a", &g));
    let url =
        ts.fhir(&format!("/Measure/cms122-hba1c-poor-control/$evaluate-measure?{PERIOD}&reportType=subject-list"));
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(count(&report, "initial-population"), 3, "B's patient is not counted: {report}");
    assert!(!report.to_string().contains("m-canary"), "{report}");
    // B's patient as the subject: not found, as a read would be
    let url =
        ts.fhir(&format!("/Measure/cms122-hba1c-poor-control/$evaluate-measure?{PERIOD}&subject=Patient/m-canary"));
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_outcome(&r.json().await.unwrap());
    // the evaluation's searches are audited as the clinician's
    let audit = json(ts.get("/AuditEvent?altid=dr.a&subtype=search-type&patient=m-good").await).await;
    assert!(audit["entry"].as_array().is_some_and(|e| !e.is_empty()), "{audit}");
    let none = json(ts.get("/AuditEvent?altid=dr.a&patient=m-canary").await).await;
    assert!(none["entry"].as_array().is_none_or(|e| e.is_empty()), "{none}");
}

#[tokio::test(flavor = "multi_thread")]
async fn evaluate_measure_refuses_bad_input_with_a_located_outcome() {
    let ts = TestServer::spawn().await;
    fixture(&ts).await;
    let m = "/Measure/cms122-hba1c-poor-control/$evaluate-measure";
    for (query, status, at) in [
        ("periodEnd=2025-12-31", 400, "periodStart"),
        ("periodStart=2025-01-01", 400, "periodEnd"),
        ("periodStart=2025-13-01&periodEnd=2025-12-31", 400, "periodStart"),
        ("periodStart=2025-01-01&periodEnd=tomorrow", 400, "periodEnd"),
        ("periodStart=2025-02-30&periodEnd=2025-12-31", 400, "periodStart"),
        ("periodStart=2025-06-01&periodEnd=2025-01-01", 400, "periodEnd"),
        ("periodStart=2025-01-01&periodEnd=2025-12-31&reportType=everything", 400, "reportType"),
        ("periodStart=2025-01-01&periodEnd=2025-12-31&reportType=subject", 400, "subject"),
        ("periodStart=2025-01-01&periodEnd=2025-12-31&subject=Observation/x", 400, "subject"),
        ("periodStart=2025-01-01&periodEnd=2025-12-31&subject=Patient/nobody", 404, ""),
        ("periodStart=2025-01-01&periodEnd=2025-12-31&practitioner=Practitioner/1", 400, "practitioner"),
    ] {
        let r = ts.get(&format!("{m}?{query}")).await;
        assert_eq!(r.status().as_u16(), status, "{query}");
        let oo = json(r).await;
        assert_outcome(&oo);
        if !at.is_empty() {
            assert_eq!(crate::first_expression(&oo).as_deref(), Some(at), "{query}: {oo}");
        }
    }
    // an unknown measure is not found, with the known ones named
    let r = ts.get(&format!("/Measure/cms999/$evaluate-measure?{PERIOD}")).await;
    assert_eq!(r.status(), 404);
    let oo = json(r).await;
    assert_outcome(&oo);
    assert!(oo.to_string().contains("cms130-colorectal-cancer-screening"), "{oo}");
    // a body that is not Parameters, a parameter without a value, an unknown method
    let r = ts.post(m, &json!({"resourceType": "Patient"})).await;
    assert_eq!(r.status(), 400);
    assert_outcome(&json(r).await);
    let r = ts.post(m, &json!({"resourceType": "Parameters", "parameter": [{"name": "periodStart"}]})).await;
    assert_eq!(r.status(), 400);
    assert_outcome(&json(r).await);
    let r = ts.delete(m).await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, POST");
    assert_outcome(&json(r).await);
}

/// Each measure's report over the synthetic population of 40 patients: (initial
/// population, exclusions, numerator) per measure, in `MEASURES`' order.
async fn synthetic_counts(ts: &TestServer) -> Vec<(u64, u64, u64)> {
    let cfg = hale_synth::Config {
        patients: 40,
        seed: 1,
        reference_date: chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        years: 10,
    };
    let repo = ts.system_repository("synth").await;
    let summary = hale_server::synth::load(&repo, &cfg, false).await;
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let mut counts = Vec::new();
    for m in hale_cds::measures::MEASURES {
        // the childhood measure over four years, so that some child turns 2 in it
        let start = if m.id == "cms117-childhood-immunization" { "2021-01-01" } else { "2024-01-01" };
        let r = ts.get(&format!("/Measure/{}/$evaluate-measure?periodStart={start}&periodEnd=2024-12-31", m.id)).await;
        assert_eq!(r.status(), 200, "{}", m.id);
        let report = json(r).await;
        counts.push((
            count(&report, "initial-population"),
            count(&report, "denominator-exclusion"),
            count(&report, "numerator"),
        ));
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn the_synthetic_population_lands_in_every_measure() {
    let ts = TestServer::spawn().await;
    let counts = synthetic_counts(&ts).await;
    for (m, (ip, excluded, met)) in hale_cds::measures::MEASURES.iter().zip(&counts) {
        println!("{}: {ip} counted, {excluded} excluded, {met} met", m.id);
        assert!(*ip > 0, "nobody in {}", m.id);
    }
    // read a page of 7 patients at a time (six pages), every count is the same
    let small = TestServer::spawn_with(|c| {
        c.limits.max_page_size = 7;
        c.limits.default_page_size = 7;
    })
    .await;
    assert_eq!(synthetic_counts(&small).await, counts);
}
