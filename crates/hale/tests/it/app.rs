//! The clinician application (`/app`) over HTTP and in a real headless Chromium: no
//! page without a session, a chart read through the gate (another organization's
//! patient is not found, the reads are audited), stored text escaped, the search box's
//! refusals readable; in the browser, sign-in with a second factor, find a patient,
//! the chart, sign-out, at laptop and phone sizes, with no request leaving the origin.

use serde_json::{Value, json};

use crate::browser::{browser_available, root};
use crate::smart::{enrolled, field, location, no_redirects, sign_in};
use hale_server::users::{NewUser, add_user};
use hale_test_support::TestServer;

/// Stored text that would run if a page did not escape it.
const XSS: &str = "<img src=x onerror=\"window.__xss=1\">Asthma<script>window.__xss=2</script>";

/// Two organizations' patients (A with a full chart, B with a canary), a clinician of
/// A's organization (the GP of A) and A's patient account.
async fn chart_fixture(ts: &TestServer) {
    let a = |r: &str| json!({"reference": r});
    let loinc = |code: &str, display: &str| json!({"coding": [{"system": "http://loinc.org", "code": code, "display": display}]});
    let cat = |c: &str| json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": c}]}]);
    let resources = [
        json!({"resourceType":"Organization","id":"org-a","name":"Clinic A"}),
        json!({"resourceType":"Organization","id":"org-b","name":"Clinic B"}),
        json!({"resourceType":"Practitioner","id":"prac-j","name":[{"family":"Jones","given":["Jo"]}]}),
        json!({"resourceType":"Patient","id":"pat-a","identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"urn:mrn","value":"MRN-4711"}],
               "name":[{"use":"official","family":"Alvarez","given":["Ana"]}],"gender":"female","birthDate":"1980-02-03",
               "generalPractitioner":[{"reference":"Practitioner/prac-j","display":"Dr Jo Jones"}],"managingOrganization":a("Organization/org-a")}),
        json!({"resourceType":"Patient","id":"pat-b","name":[{"family":"Brown","given":["Ben"]}],"birthDate":"1975-05-06","managingOrganization":a("Organization/org-b")}),
        json!({"resourceType":"AllergyIntolerance","id":"al-a","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active"}]},
               "code":{"text":"Penicillin G"},"criticality":"high","patient":a("Patient/pat-a"),"reaction":[{"manifestation":[{"text":"Anaphylaxis"}]}]}),
        json!({"resourceType":"AllergyIntolerance","id":"al-b","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active"}]},
               "code":{"text":"CANARY-B allergy"},"patient":a("Patient/pat-b")}),
        json!({"resourceType":"Condition","id":"cond-a","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},
               "code":{"text":XSS},"subject":a("Patient/pat-a"),"onsetDateTime":"2015-03-01"}),
        json!({"resourceType":"Condition","id":"cond-old","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"resolved"}]},
               "code":{"text":"Resolved sprain"},"subject":a("Patient/pat-a")}),
        json!({"resourceType":"MedicationRequest","id":"mr-a","status":"active","intent":"order","medicationCodeableConcept":{"text":"Salbutamol 100 mcg inhaler"},
               "subject":a("Patient/pat-a"),"authoredOn":"2024-01-10","dosageInstruction":[{"text":"2 puffs when needed"}],
               "requester":{"reference":"Practitioner/prac-j","display":"Dr Jo Jones"}}),
        json!({"resourceType":"Observation","id":"bp-a","status":"final","category":cat("vital-signs"),"code":loinc("85354-9","Blood pressure"),
               "subject":a("Patient/pat-a"),"effectiveDateTime":"2025-06-01",
               "component":[{"code":loinc("8480-6","Systolic"),"valueQuantity":{"value":128,"unit":"mm[Hg]"}},{"code":loinc("8462-4","Diastolic"),"valueQuantity":{"value":84,"unit":"mm[Hg]"}}]}),
        json!({"resourceType":"Observation","id":"a1c-a","status":"final","category":cat("laboratory"),"code":loinc("4548-4","Hemoglobin A1c"),
               "subject":a("Patient/pat-a"),"effectiveDateTime":"2025-06-02","valueQuantity":{"value":7.9,"unit":"%"},
               "interpretation":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation","code":"H"}]}],
               "referenceRange":[{"low":{"value":4,"unit":"%"},"high":{"value":5.6,"unit":"%"}}]}),
        json!({"resourceType":"Observation","id":"bp-a0","status":"final","category":cat("vital-signs"),"code":loinc("85354-9","Blood pressure"),
               "subject":a("Patient/pat-a"),"effectiveDateTime":"2023-03-01",
               "component":[{"code":loinc("8480-6","Systolic"),"valueQuantity":{"value":141,"unit":"mm[Hg]"}},{"code":loinc("8462-4","Diastolic"),"valueQuantity":{"value":92,"unit":"mm[Hg]"}}]}),
        json!({"resourceType":"Observation","id":"wt-a0","status":"final","category":cat("vital-signs"),"code":loinc("29463-7","Body weight"),
               "subject":a("Patient/pat-a"),"effectiveDateTime":"2023-03-01","valueQuantity":{"value":81.5,"unit":"kg"}}),
        json!({"resourceType":"Observation","id":"wt-a1","status":"final","category":cat("vital-signs"),"code":loinc("29463-7","Body weight"),
               "subject":a("Patient/pat-a"),"effectiveDateTime":"2025-06-01","valueQuantity":{"value":77.25,"unit":"kg"}}),
        json!({"resourceType":"Observation","id":"a1c-a0","status":"final","category":cat("laboratory"),"code":loinc("4548-4","Hemoglobin A1c"),
               "subject":a("Patient/pat-a"),"effectiveDateTime":"2022-01-15","valueQuantity":{"value":6.4,"unit":"%"},
               "referenceRange":[{"low":{"value":4,"unit":"%"},"high":{"value":5.6,"unit":"%"}}]}),
        json!({"resourceType":"Observation","id":"obs-b","status":"final","category":cat("laboratory"),"code":{"text":"CANARY-B result"},"subject":a("Patient/pat-b")}),
        json!({"resourceType":"Immunization","id":"imm-a","status":"completed","vaccineCode":{"text":"Influenza vaccine"},"patient":a("Patient/pat-a"),"occurrenceDateTime":"2024-10-01"}),
        json!({"resourceType":"Encounter","id":"enc-a","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB","display":"ambulatory"},
               "type":[{"text":"Check-up"}],"subject":a("Patient/pat-a"),"period":{"start":"2025-06-01T09:00:00Z"},"serviceProvider":{"reference":"Organization/org-a","display":"Clinic A"}}),
    ];
    for r in resources {
        let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        let resp = ts.put(&path, &r).await;
        assert!(resp.status().is_success(), "{path}: {}", resp.text().await.unwrap());
    }
    let repo = ts.system_repository("test-setup").await;
    let user = |u: &str, role: &str, org: Option<&str>, prac: Option<&str>, pats: Vec<String>| NewUser {
        username: u.into(),
        display_name: Some(format!("{u} (test)")),
        role: role.into(),
        organization: org.map(str::to_string),
        practitioner: prac.map(str::to_string),
        patients: pats,
        password: Some("correct horse battery staple".into()),
        ..NewUser::default()
    };
    add_user(&repo, user("dr.jones", "clinician", Some("org-a"), Some("prac-j"), vec![])).await.unwrap();
    add_user(&repo, user("ana", "patient", None, None, vec!["pat-a".into()])).await.unwrap();
}

const PASSWORD: &str = "correct horse battery staple";

async fn page(ts: &TestServer, session: &str, path: &str) -> (u16, String) {
    let r = no_redirects().get(format!("{}{path}", ts.base)).header("cookie", session).send().await.unwrap();
    let status = r.status().as_u16();
    if status == 200 {
        let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(r.headers()["cache-control"], "no-store");
    }
    (status, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_need_a_session_and_send_the_browser_to_sign_in_and_back() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    for (path, next) in
        [("/app", "/app"), ("/app/patient/pat-a", "/app/patient/pat-a"), ("/app?q=a%20b", "/app%3Fq%3Da%2520b")]
    {
        let r = no_redirects().get(format!("{}{path}", ts.base)).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(location(&r), format!("/auth/login?next={next}"), "{path}");
    }
    // a forged session cookie is no session
    let r =
        no_redirects().get(format!("{}/app", ts.base)).header("cookie", "hale_session=forged").send().await.unwrap();
    assert_eq!(r.status(), 303);
    // the stylesheet needs none (it holds nothing of anyone)
    let r = no_redirects().get(format!("{}/app/static/app.css", ts.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
    // signing in leads to the page asked for; a patient's account gets no staff page
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app/patient/pat-a", "dr.jones", PASSWORD, &code).await.unwrap();
    assert_eq!(page(&ts, &session, "/app/patient/pat-a").await.0, 200);
    let ana = sign_in(&ts, "/app", "ana", PASSWORD, "").await.unwrap();
    let (status, body) = page(&ts, &ana, "/app").await;
    assert_eq!(status, 403);
    assert!(body.contains("for care teams") && !body.contains("Alvarez"), "{body}");
    // signed in already, the sign-in page goes straight on
    let r = no_redirects()
        .get(format!("{}/auth/login?next=/app", ts.base))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), location(&r)), (303, "/app".to_string()));
    // only this server's pages are followed after sign-in
    let r = no_redirects().get(format!("{}/auth/login?next=//evil.example/app", ts.base)).send().await.unwrap();
    let body = r.text().await.unwrap();
    assert!(!body.contains("evil.example"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clinician_reads_a_chart_through_the_gate() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();

    // "my patients": those whose GP the clinician is
    let (status, home) = page(&ts, &session, "/app").await;
    assert_eq!(status, 200, "{home}");
    assert!(home.contains("My patients (1)") && home.contains("Alvarez, Ana"), "{home}");
    assert!(home.contains("No chart opened yet."), "{home}");

    let (status, chart) = page(&ts, &session, "/app/patient/pat-a").await;
    assert_eq!(status, 200, "{chart}");
    for expected in [
        "Alvarez, Ana",
        "MRN-4711",
        "1980-02-03",
        "Penicillin G",
        "high risk",
        "Anaphylaxis",
        "Salbutamol 100 mcg inhaler",
        "2 puffs when needed",
        "128/84 mmHg",
        "Hemoglobin A1c",
        "7.9 %",
        "4–5.6 %",
        "class=\"flag H\"",
        "Influenza vaccine",
        "Check-up",
        // Ana (born 1980) has a flu shot from 2024, no tetanus booster, a blood pressure
        // from 2025 and no lipid panel: what is due, with its source
        "Preventive care due",
        "Tetanus and diphtheria booster",
        "Lipid panel (every 5 years, 40 to 75)",
        "USPSTF 2022",
        // its source a link, opened in a new tab, nothing fetched by the server
        r#"<a href="https://www.uspreventiveservicestaskforce.org/uspstf/recommendation/statin-use-in-adults-preventive-medication" target="_blank" rel="noopener noreferrer">USPSTF 2022"#,
    ] {
        assert!(chart.contains(expected), "the chart shows {expected}:\n{chart}");
    }
    // stored text is text, never markup
    assert!(chart.contains("&lt;img src=x onerror=") && chart.contains("&lt;script&gt;"), "{chart}");
    assert!(!chart.contains("<img src=x"), "{chart}");
    // the only script is the application's own file
    assert_eq!(chart.matches("<script").count(), 1, "{chart}");
    assert!(chart.contains("<script src=\"/app/static/app.js?v="), "{chart}");
    // a resolved problem is not an active one
    assert!(!chart.contains("Resolved sprain"));
    // nothing of the other organization's patient, anywhere
    assert!(!chart.contains("CANARY-B"));

    // another organization's patient: not found, and nothing of theirs shown
    let (status, other) = page(&ts, &session, "/app/patient/pat-b").await;
    assert_eq!(status, 404);
    assert!(!other.contains("CANARY-B") && !other.contains("Brown"), "{other}");
    let (status, _) = page(&ts, &session, "/app/patient/no%20such").await;
    assert_eq!(status, 404);

    // the search box: name words, birth date, record number; B is never found
    for (q, found) in [
        ("alv", true),
        ("Alvarez%20Ana", true),
        ("1980-02-03", true),
        ("MRN-4711", true),
        ("Brown", false),
        ("1975-05-06", false),
    ] {
        let (status, body) = page(&ts, &session, &format!("/app?q={q}")).await;
        assert_eq!(status, 200, "{q}");
        assert_eq!(body.contains("/app/patient/pat-a"), found, "{q}: {body}");
        assert!(!body.contains("/app/patient/pat-b"), "{q}: {body}");
    }
    let (status, body) = page(&ts, &session, "/app?q=1980-13-01").await;
    assert_eq!(status, 400);
    assert!(body.contains("is not a date") && body.contains("value=\"1980-13-01\""), "the query is kept: {body}");

    // the vital signs over time: each reading a point with its date and value
    let (status, vitals) = page(&ts, &session, "/app/patient/pat-a/vitals").await;
    assert_eq!(status, 200, "{vitals}");
    for expected in [
        "Penicillin G",
        "Blood pressure (mmHg)",
        "Systolic 2023-03-01: 141 mmHg",
        "Diastolic 2025-06-01: 84 mmHg",
        "Body weight 2025-06-01: 77.25 kg",
        "aria-label=\"Body weight: 2 readings from 2023-03-01 to 2025-06-01, between 77.25 and 81.5 kg\"",
        "aria-current=\"page\"",
    ] {
        assert!(vitals.contains(expected), "the vitals page shows {expected}:\n{vitals}");
    }
    assert_eq!(vitals.matches("<svg").count(), 2, "blood pressure and weight");
    // every result of each test, its trend against the reference range
    let (status, results) = page(&ts, &session, "/app/patient/pat-a/results").await;
    assert_eq!(status, 200, "{results}");
    for expected in [
        "Hemoglobin A1c",
        "Latest <strong>7.9 %</strong> on 2025-06-02",
        "6.4 %",
        "2022-01-15",
        "class=\"band\"",
        "Hemoglobin A1c 2022-01-15: 6.4 %",
    ] {
        assert!(results.contains(expected), "the results page shows {expected}:\n{results}");
    }
    assert!(!results.contains("CANARY-B"));
    // another organization's patient: no page of theirs
    for path in ["/app/patient/pat-b/vitals", "/app/patient/pat-b/results"] {
        let (status, body) = page(&ts, &session, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("CANARY-B") && !body.contains("Brown"), "{body}");
    }

    // recently viewed, newest first
    let (_, home) = page(&ts, &session, "/app").await;
    assert!(home.contains("Recently viewed") && !home.contains("No chart opened yet."), "{home}");

    // every chart read is the user's audited read of that patient
    let mut found = Value::Null;
    for _ in 0..50 {
        let r = ts.get("/AuditEvent?patient=Patient/pat-a&_count=200").await;
        found = hale_test_support::json(r).await;
        if found.to_string().contains("dr.jones") && found.to_string().contains("AllergyIntolerance") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let by_user: Vec<String> = found["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["agent"][0]["who"]["identifier"]["value"] == "dr.jones")
        .filter_map(|e| {
            e["resource"]["entity"].as_array()?.iter().find_map(|x| x["description"].as_str().map(str::to_string))
        })
        .collect();
    for query in [
        "AllergyIntolerance?patient=pat-a",
        "Condition?patient=pat-a",
        "MedicationRequest?patient=pat-a",
        "Observation?patient=pat-a&category=laboratory",
        "Immunization?patient=pat-a",
        "Encounter?patient=pat-a",
    ] {
        assert!(by_user.iter().any(|q| q.starts_with(query)), "the read {query} is audited as dr.jones': {by_user:?}");
    }
}

/// The number of Observations of `patient` (as the system sees them).
async fn observations(ts: &TestServer, patient: &str) -> u64 {
    let r = ts.get(&format!("/Observation?patient={patient}&_summary=count")).await;
    hale_test_support::json(r).await["total"].as_u64().unwrap()
}

async fn post_form(ts: &TestServer, session: &str, path: &str, form: &[(&str, &str)]) -> (u16, String, String) {
    let r =
        no_redirects().post(format!("{}{path}", ts.base)).header("cookie", session).form(form).send().await.unwrap();
    let status = r.status().as_u16();
    let to = location(&r);
    (status, to, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn vital_signs_are_checked_then_recorded_through_the_gate() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let (status, form) = page(&ts, &session, "/app/patient/pat-a/vitals/new").await;
    assert_eq!(status, 200, "{form}");
    let csrf = field(&form, "csrf").unwrap();
    let before = observations(&ts, "pat-a").await;

    // without the session's form token: refused, nothing saved
    let (status, _, _) = post_form(&ts, &session, "/app/patient/pat-a/vitals", &[("pulse", "72")]).await;
    assert_eq!(status, 403);
    let (status, _, _) =
        post_form(&ts, &session, "/app/patient/pat-a/vitals", &[("pulse", "72"), ("csrf", "forged")]).await;
    assert_eq!(status, 403);
    // implausible and malformed values: a message by each field, what was typed kept
    let bad = [
        ("csrf", csrf.as_str()),
        ("pulse", "720"),
        ("temp", "98.6"),
        ("weight", "7o"),
        ("systolic", "128"),
        ("diastolic", "84"),
    ];
    let (status, _, body) = post_form(&ts, &session, "/app/patient/pat-a/vitals", &bad).await;
    assert_eq!(status, 400, "{body}");
    for expected in [
        "Nothing was saved",
        "Heart rate 720 /min is outside what is plausible",
        "Temperature 98.6 °C is outside what is plausible",
        "Write the weight as a number in kg",
        "value=\"720\"",
        "value=\"7o\"",
        "value=\"128\"",
        "aria-invalid=\"true\"",
    ] {
        assert!(body.contains(expected), "{expected}:\n{body}");
    }
    assert_eq!(observations(&ts, "pat-a").await, before, "nothing saved");

    // good values: one transaction, then the chart shows them
    let good = [
        ("csrf", csrf.as_str()),
        ("taken", "2026-01-05T08:15"),
        ("pulse", "72"),
        ("systolic", "118"),
        ("diastolic", "76"),
        ("weight", "80"),
        ("height", "180"),
    ];
    let (status, to, body) = post_form(&ts, &session, "/app/patient/pat-a/vitals", &good).await;
    assert_eq!((status, to.as_str()), (303, "/app/patient/pat-a/vitals?recorded=5"), "{body}");
    assert_eq!(observations(&ts, "pat-a").await, before + 5, "BP panel, pulse, weight, height, BMI");
    let r = ts.get("/Observation?patient=pat-a&code=http://loinc.org|39156-5").await;
    let bmi = hale_test_support::json(r).await;
    let o = &bmi["entry"][0]["resource"];
    assert_eq!(o["valueQuantity"]["value"].to_string(), "24.7", "{bmi}");
    assert_eq!(o["performer"][0]["reference"], "Practitioner/prac-j");
    assert_eq!(o["effectiveDateTime"], "2026-01-05T08:15:00Z");
    let (_, vitals) = page(&ts, &session, "/app/patient/pat-a/vitals?recorded=5").await;
    assert!(vitals.contains("Recorded 5 readings.") && vitals.contains("Systolic 2026-01-05: 118 mmHg"), "{vitals}");

    // another organization's patient: no form, no write
    let before_b = observations(&ts, "pat-b").await;
    assert_eq!(page(&ts, &session, "/app/patient/pat-b/vitals/new").await.0, 404);
    let (status, _, body) =
        post_form(&ts, &session, "/app/patient/pat-b/vitals", &[("csrf", csrf.as_str()), ("pulse", "72")]).await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("Brown"));
    assert_eq!(observations(&ts, "pat-b").await, before_b);
}

/// The `<td class="date">` cells of a page.
fn date_cells(html: &str) -> Vec<String> {
    html.split("<td class=\"date\">").skip(1).filter_map(|c| c.split("</td>").next()).map(str::to_string).collect()
}

/// An instant as the wall clock in New York shows it, with the zone's abbreviation.
fn in_new_york(instant: &str) -> String {
    let t: jiff::Timestamp = instant.parse().unwrap();
    t.in_tz("America/New_York").unwrap().strftime("%Y-%m-%d %H:%M %Z").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_installation_in_new_york_shows_and_reads_new_york_time() {
    let ts = TestServer::spawn_with(|c| c.time_zone = "America/New_York".into()).await;
    chart_fixture(&ts).await;
    let pulse = |id: &str, at: &str, v: u32| {
        json!({"resourceType": "Observation", "id": id, "status": "final",
               "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
               "subject": {"reference": "Patient/pat-a"}, "effectiveDateTime": at,
               "valueQuantity": {"value": v, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}})
    };
    // stored in UTC: winter (EST, UTC-5), summer (EDT, UTC-4), and 03:00 UTC on the
    // 16th, which is still the evening of the 15th in New York
    for o in [
        pulse("hr-winter", "2026-01-15T14:00:00Z", 61),
        pulse("hr-summer", "2026-07-15T14:00:00Z", 62),
        pulse("hr-late", "2026-01-16T03:00:00Z", 63),
    ] {
        let path = format!("/Observation/{}", o["id"].as_str().unwrap());
        assert!(ts.put(&path, &o).await.status().is_success());
    }
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let (status, vitals) = page(&ts, &session, "/app/patient/pat-a/vitals").await;
    assert_eq!(status, 200, "{vitals}");
    let cells = date_cells(&vitals);
    for expected in ["2026-01-15 09:00", "2026-07-15 10:00", "2026-01-15 22:00"] {
        assert!(cells.iter().any(|c| c == expected), "{expected} in {cells:?}");
    }
    assert!(!cells.iter().any(|c| c.contains("14:00") || c.starts_with("2026-01-16")), "{cells:?}");
    // the chart puts the late reading on the 15th too, and the page names the zone
    assert!(vitals.contains("Heart rate 2026-01-15: 63 /min"), "{vitals}");
    assert!(vitals.contains("Dates and times are in America/New_York (E"), "{vitals}");

    // a time typed in the form is New York time, stored with the offset of its day
    let (_, form) = page(&ts, &session, "/app/patient/pat-a/vitals/new").await;
    assert!(form.contains("Taken at (America/New_York)"), "{form}");
    let csrf = field(&form, "csrf").unwrap();
    let record = |taken: &'static str, pulse: &'static str| {
        let (csrf, session) = (csrf.clone(), session.clone());
        let ts = &ts;
        async move {
            post_form(
                ts,
                &session,
                "/app/patient/pat-a/vitals",
                &[("csrf", csrf.as_str()), ("taken", taken), ("pulse", pulse)],
            )
            .await
        }
    };
    let stored = |pulse: &'static str| {
        let ts = &ts;
        async move {
            let r = ts.get("/Observation?patient=pat-a&code=http://loinc.org|8867-4&_count=50").await;
            let all = hale_test_support::json(r).await;
            all["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| &e["resource"])
                .find(|o| o["valueQuantity"]["value"].as_u64() == pulse.parse().ok())
                .map(|o| o["effectiveDateTime"].as_str().unwrap().to_string())
        }
    };
    let (status, _, body) = record("2026-01-05T08:15", "71").await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(stored("71").await.as_deref(), Some("2026-01-05T08:15:00-05:00"));
    let (status, _, body) = record("2026-07-20T08:15", "72").await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(stored("72").await.as_deref(), Some("2026-07-20T08:15:00-04:00"));
    // the instant is what the index holds: 08:15 EST is 13:15 UTC
    let r = ts.get("/Observation?patient=pat-a&code=http://loinc.org|8867-4&date=eq2026-01-05T13:15:00Z").await;
    let found = hale_test_support::json(r).await;
    assert_eq!(found["entry"].as_array().map(Vec::len), Some(1), "{found}");
    // and the page shows them as typed
    let (_, vitals) = page(&ts, &session, "/app/patient/pat-a/vitals").await;
    let cells = date_cells(&vitals);
    assert!(cells.iter().any(|c| c == "2026-07-20 08:15"), "{cells:?}");
    // the hour the clocks skipped did not happen: refused, nothing saved
    let (status, _, body) = record("2026-03-08T02:30", "73").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("There was no 2026-03-08 02:30 in America/New_York") && body.contains("e.g. 03:30"),
        "{body}"
    );
    assert_eq!(stored("73").await, None);
    // the hour they repeated: its first occurrence, still daylight time
    let (status, _, body) = record("2026-11-01T01:30", "74").await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(stored("74").await.as_deref(), Some("2026-11-01T01:30:00-04:00"));

    // the portal's "who has seen my record": each access at New York time, with its zone
    let ana = sign_in(&ts, "/portal", "ana", PASSWORD, "").await.unwrap();
    let mut access = String::new();
    for _ in 0..50 {
        access = page(&ts, &ana, "/portal/access").await.1;
        if access.contains("dr.jones") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let shown = date_cells(&access);
    assert!(!shown.is_empty(), "{access}");
    let trail = hale_test_support::json(ts.get("/AuditEvent?patient=Patient/pat-a&_count=1000").await).await;
    let local: Vec<String> = trail["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| in_new_york(e["resource"]["recorded"].as_str().unwrap()))
        .collect();
    for cell in &shown {
        assert!(cell.ends_with(" EST") || cell.ends_with(" EDT"), "{cell}");
        assert!(local.contains(cell), "{cell} is an entry's time in New York: {local:?}");
    }
    assert!(access.contains("Dates and times are in America/New_York"), "{access}");
}

async fn count(ts: &TestServer, query: &str) -> u64 {
    let r = ts.get(&format!("{query}&_summary=count")).await;
    hale_test_support::json(r).await["total"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prescription_is_checked_against_allergies_before_it_is_signed() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();

    // find the drug, choose it: the alert shows before anything is signed
    let (status, found) = page(&ts, &session, "/app/patient/pat-a/prescribe?q=amox%20500").await;
    assert_eq!(status, 200, "{found}");
    let link = found.split("/app/patient/pat-a/prescribe?drug=").nth(1).unwrap().split('"').next().unwrap().to_string();
    let (status, form) = page(&ts, &session, &format!("/app/patient/pat-a/prescribe?drug={link}")).await;
    assert_eq!(status, 200, "{form}");
    assert!(form.contains("Allergy to penicillins: amoxicillin is a penicillin"), "{form}");
    assert!(form.contains("Recorded allergy: Penicillin G, high criticality"), "{form}");
    assert!(form.contains("name=\"override\""), "a reason can be given: {form}");
    let csrf = field(&form, "csrf").unwrap();
    let before = count(&ts, "/MedicationRequest?patient=pat-a").await;

    // signing without a reason is refused, nothing written
    let order = [
        ("csrf", csrf.as_str()),
        ("drug", link.as_str()),
        ("dose", "1"),
        ("frequency", "tid"),
        ("days", "10"),
        ("quantity", "30"),
        ("refills", "0"),
    ];
    let (status, _, body) = post_form(&ts, &session, "/app/patient/pat-a/prescribe", &order).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Give the reason to prescribe despite the alert"), "{body}");
    assert!(body.contains("value=\"30\""), "the order is kept: {body}");
    assert_eq!(count(&ts, "/MedicationRequest?patient=pat-a").await, before);
    assert_eq!(count(&ts, "/DetectedIssue?patient=pat-a").await, 0);

    // with a reason: the order and the override are recorded together
    let mut overridden = order.to_vec();
    overridden.push(("override", "tolerated amoxicillin in 2024 without reaction"));
    let (status, to, body) = post_form(&ts, &session, "/app/patient/pat-a/prescribe", &overridden).await;
    assert_eq!(status, 303, "{body}");
    assert!(to.starts_with("/app/patient/pat-a/prescription/"), "{to}");
    assert_eq!(count(&ts, "/MedicationRequest?patient=pat-a").await, before + 1);
    let r = ts.get("/DetectedIssue?patient=pat-a").await;
    let issues = hale_test_support::json(r).await;
    let di = &issues["entry"][0]["resource"];
    assert_eq!(di["severity"], "high", "{issues}");
    assert!(di["mitigation"][0]["action"]["text"].as_str().unwrap().contains("tolerated amoxicillin in 2024"), "{di}");
    assert_eq!(di["implicated"][1]["reference"], "AllergyIntolerance/al-a");
    assert_eq!(di["author"]["reference"], "Practitioner/prac-j");
    let rx = to.rsplit('/').next().unwrap();
    let r = ts.get(&format!("/MedicationRequest/{rx}")).await;
    let mr = hale_test_support::json(r).await;
    assert_eq!(mr["requester"]["reference"], "Practitioner/prac-j");
    assert_eq!(mr["dosageInstruction"][0]["text"], "Take 1 capsule by mouth three times daily for 10 days");
    assert_eq!(di["implicated"][0]["reference"], format!("MedicationRequest/{rx}"), "the override names the order");
    let (status, printed) = page(&ts, &session, &to).await;
    assert_eq!(status, 200);
    assert!(
        printed.contains("amoxicillin 500 MG Oral Capsule")
            && printed.contains("Alvarez, Ana")
            && printed.contains("dr.jones (test)"),
        "{printed}"
    );
    // the summary lists it among the active medications
    let (_, chart) = page(&ts, &session, "/app/patient/pat-a").await;
    assert!(chart.contains("amoxicillin 500 MG Oral Capsule"), "{chart}");

    // a drug of another class: no alert, signed at once; a bad form keeps what was typed
    let azi = drugs_index(&ts, &session, "azithromycin").await;
    let (_, form) = page(&ts, &session, &format!("/app/patient/pat-a/prescribe?drug={azi}")).await;
    assert!(!form.contains("class=\"alert ") && !form.contains("name=\"override\""), "{form}");
    let bad =
        [("csrf", csrf.as_str()), ("drug", azi.as_str()), ("dose", "two"), ("frequency", "qd"), ("quantity", "6")];
    let (status, _, body) = post_form(&ts, &session, "/app/patient/pat-a/prescribe", &bad).await;
    assert_eq!(status, 400);
    assert!(body.contains("Write the dose as a number") && body.contains("value=\"two\""), "{body}");
    let good = [
        ("csrf", csrf.as_str()),
        ("drug", azi.as_str()),
        ("dose", "1"),
        ("frequency", "qd"),
        ("days", "5"),
        ("quantity", "6"),
    ];
    assert_eq!(post_form(&ts, &session, "/app/patient/pat-a/prescribe", &good).await.0, 303);
    assert_eq!(count(&ts, "/DetectedIssue?patient=pat-a").await, 1, "no alert, no override");

    // the same hook checks the active medications: warfarin and an NSAID interact
    let warfarin = json!({"resourceType":"MedicationRequest","id":"mr-warf","status":"active","intent":"order",
        "medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"11289"}],"text":"warfarin sodium 5 MG Oral Tablet"},
        "subject":{"reference":"Patient/pat-a"}});
    assert!(ts.put("/MedicationRequest/mr-warf", &warfarin).await.status().is_success());
    let naproxen = drugs_index(&ts, &session, "naproxen").await;
    let (_, form) = page(&ts, &session, &format!("/app/patient/pat-a/prescribe?drug={naproxen}")).await;
    assert!(
        form.contains("Interaction: naproxen with warfarin")
            && form.contains("Warfarin (Coumadin) prescribing information"),
        "{form}"
    );
    let nsaid =
        [("csrf", csrf.as_str()), ("drug", naproxen.as_str()), ("dose", "1"), ("frequency", "bid"), ("quantity", "20")];
    let (status, _, _) = post_form(&ts, &session, "/app/patient/pat-a/prescribe", &nsaid).await;
    assert_eq!(status, 400, "an interaction of high severity needs a reason");
    // an ONC high-priority pair: an SSRI for a patient taking an MAO inhibitor (the search
    // offers citalopram before escitalopram)
    let maoi = json!({"resourceType":"MedicationRequest","id":"mr-maoi","status":"active","intent":"order",
        "medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"8123"}],"text":"phenelzine 15 MG Oral Tablet"},
        "subject":{"reference":"Patient/pat-a"}});
    assert!(ts.put("/MedicationRequest/mr-maoi", &maoi).await.status().is_success());
    let ssri = drugs_index(&ts, &session, "citalopram").await;
    let (_, form) = page(&ts, &session, &format!("/app/patient/pat-a/prescribe?drug={ssri}")).await;
    assert!(form.contains("Interaction: citalopram with phenelzine") && form.contains("Table 2"), "{form}");
    // a second azithromycin is a duplicate the prescriber is told of, without a stop
    let (_, form) = page(&ts, &session, &format!("/app/patient/pat-a/prescribe?drug={azi}")).await;
    assert!(form.contains("Already prescribed: azithromycin"), "{form}");

    // another organization's patient: nothing
    assert_eq!(page(&ts, &session, "/app/patient/pat-b/prescribe").await.0, 404);
    let (status, _, _) = post_form(&ts, &session, "/app/patient/pat-b/prescribe", &good).await;
    assert_eq!(status, 404);
    assert_eq!(count(&ts, "/MedicationRequest?patient=pat-b").await, 0);
    // a prescription is shown only under its own patient
    let (status, _) = page(&ts, &session, &format!("/app/patient/pat-a/prescription/{rx}x")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chart_outside_ones_care_opens_only_by_breaking_the_glass() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    // the same page for another organization's patient and for no patient at all
    let (status, other) = page(&ts, &session, "/app/patient/pat-b").await;
    let (status_none, none) = page(&ts, &session, "/app/patient/pat-zzz").await;
    assert_eq!((status, status_none), (404, 404));
    assert_eq!(other.replace("pat-b", "X"), none.replace("pat-zzz", "X"), "nothing tells them apart");
    assert!(other.contains("break the glass") && !other.contains("CANARY-B") && !other.contains("Brown"), "{other}");
    let (_, form_page) = page(&ts, &session, "/app/patient/pat-b").await;
    let csrf = field(&form_page, "csrf").unwrap();
    // a reason is needed; a forged form does nothing
    let (status, _, body) =
        post_form(&ts, &session, "/app/patient/pat-b/break-glass", &[("csrf", csrf.as_str()), ("reason", "need")])
            .await;
    assert_eq!(status, 400);
    assert!(body.contains("at least 10 characters") && body.contains("value=\"need\""), "{body}");
    let (status, _, _) = post_form(
        &ts,
        &session,
        "/app/patient/pat-b/break-glass",
        &[("csrf", "x"), ("reason", "unconscious in the emergency room")],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(page(&ts, &session, "/app/patient/pat-b").await.0, 404, "still closed");
    // no glass to break for a patient that does not exist
    let (status, _, _) = post_form(
        &ts,
        &session,
        "/app/patient/pat-zzz/break-glass",
        &[("csrf", csrf.as_str()), ("reason", "unconscious in the emergency room")],
    )
    .await;
    assert_eq!(status, 404);
    // with a reason: the chart opens, marked as emergency access
    let reason = [("csrf", csrf.as_str()), ("reason", "unconscious in the emergency room")];
    let (status, to, _) = post_form(&ts, &session, "/app/patient/pat-b/break-glass", &reason).await;
    assert_eq!((status, to.as_str()), (303, "/app/patient/pat-b"));
    let (status, chart) = page(&ts, &session, "/app/patient/pat-b").await;
    assert_eq!(status, 200, "{chart}");
    assert!(chart.contains("Brown, Ben") && chart.contains("CANARY-B"), "{chart}");
    assert!(
        chart.contains("Emergency access (break-the-glass)") && chart.contains("unconscious in the emergency room"),
        "{chart}"
    );
    // the grant and the reads under it are in the audit trail as emergency treatment
    let mut trail = Value::Null;
    for _ in 0..50 {
        trail = hale_test_support::json(ts.get("/AuditEvent?patient=Patient/pat-b&_count=200").await).await;
        if trail.to_string().contains("ETREAT") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let text = trail.to_string();
    assert!(text.contains("break-glass") && text.contains("ETREAT") && text.contains("dr.jones"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_visit_is_started_documented_signed_amended_and_finished() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let (_, chart) = page(&ts, &session, "/app/patient/pat-a").await;
    let csrf = field(&chart, "csrf").unwrap();
    assert!(chart.contains("Start a visit"), "{chart}");

    // start: an encounter in progress with the clinician and their organization
    let (status, to, _) = post_form(&ts, &session, "/app/patient/pat-a/visits", &[("csrf", csrf.as_str())]).await;
    assert_eq!(status, 303);
    let enc = to.rsplit('/').next().unwrap().to_string();
    let e = hale_test_support::json(ts.get(&format!("/Encounter/{enc}")).await).await;
    assert_eq!(
        (e["status"].as_str(), e["serviceProvider"]["reference"].as_str()),
        (Some("in-progress"), Some("Organization/org-a"))
    );
    assert_eq!(e["participant"][0]["individual"]["reference"], "Practitioner/prac-j");
    let (status, visit) = page(&ts, &session, &to).await;
    assert_eq!(status, 200, "{visit}");
    assert!(
        visit.contains("in-progress") && visit.contains("Sign the note") && visit.contains("Finish the visit"),
        "{visit}"
    );

    let note_path = format!("{to}/note");
    // an empty note is refused
    let (status, _, body) = post_form(&ts, &session, &note_path, &[("csrf", csrf.as_str()), ("action", "sign")]).await;
    assert_eq!(status, 400);
    assert!(body.contains("The note is empty"), "{body}");
    // a draft, then signed
    let s_text = "Cough for 3 days <script>window.__xss=1</script>";
    let draft =
        [("csrf", csrf.as_str()), ("action", "draft"), ("subjective", s_text), ("assessment", "Viral bronchitis")];
    assert_eq!(post_form(&ts, &session, &note_path, &draft).await.0, 303);
    let notes = hale_test_support::json(ts.get(&format!("/Composition?encounter={enc}")).await).await;
    let c = &notes["entry"][0]["resource"];
    assert_eq!(c["status"], "preliminary", "{notes}");
    let cid = c["id"].as_str().unwrap().to_string();
    let (_, visit) = page(&ts, &session, &to).await;
    assert!(visit.contains("draft") && visit.contains("Cough for 3 days &lt;script&gt;"), "{visit}");
    assert_eq!(visit.matches("<script").count(), 1, "only the application's script: {visit}");
    let signed = [
        ("csrf", csrf.as_str()),
        ("action", "sign"),
        ("version", "1"),
        ("subjective", s_text),
        ("assessment", "Viral bronchitis"),
        ("plan", "Fluids; review in a week"),
    ];
    assert_eq!(post_form(&ts, &session, &note_path, &signed).await.0, 303);
    let c = hale_test_support::json(ts.get(&format!("/Composition/{cid}")).await).await;
    assert_eq!((c["status"].as_str(), c["meta"]["versionId"].as_str()), (Some("final"), Some("2")));
    assert_eq!(c["attester"][0]["party"]["reference"], "Practitioner/prac-j");
    assert_eq!(c["encounter"]["reference"], format!("Encounter/{enc}"));
    // once signed: no draft, only an amendment, made from the version shown
    let (status, _, _) =
        post_form(&ts, &session, &note_path, &[("csrf", csrf.as_str()), ("action", "draft"), ("plan", "x")]).await;
    assert_eq!(status, 400);
    let stale = [("csrf", csrf.as_str()), ("action", "amend"), ("version", "1"), ("plan", "changed from an old page")];
    let (status, _, body) = post_form(&ts, &session, &note_path, &stale).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("Someone changed this note") && body.contains("changed from an old page"),
        "the text is kept: {body}"
    );
    let amend = [
        ("csrf", csrf.as_str()),
        ("action", "amend"),
        ("version", "2"),
        ("subjective", s_text),
        ("assessment", "Viral bronchitis"),
        ("plan", "Fluids; chest X-ray if not better in a week"),
    ];
    assert_eq!(post_form(&ts, &session, &note_path, &amend).await.0, 303);
    let c = hale_test_support::json(ts.get(&format!("/Composition/{cid}")).await).await;
    assert_eq!((c["status"].as_str(), c["meta"]["versionId"].as_str()), (Some("amended"), Some("3")));
    assert_eq!(c["attester"].as_array().unwrap().len(), 2, "both signatures");
    let history = hale_test_support::json(ts.get(&format!("/Composition/{cid}/_history")).await).await;
    assert_eq!(history["entry"].as_array().unwrap().len(), 3, "every version kept");
    let (_, visit) = page(&ts, &session, &to).await;
    assert!(visit.contains("signed, amended") && visit.contains("chest X-ray"), "{visit}");

    // vital signs taken at the visit belong to it
    let (status, form) = page(&ts, &session, &format!("/app/patient/pat-a/vitals/new?encounter={enc}")).await;
    assert_eq!(status, 200);
    assert!(form.contains(&format!("name=\"encounter\" value=\"{enc}\"")), "{form}");
    let vitals = [("csrf", csrf.as_str()), ("encounter", enc.as_str()), ("pulse", "88")];
    let (status, back, _) = post_form(&ts, &session, "/app/patient/pat-a/vitals", &vitals).await;
    assert_eq!((status, back.as_str()), (303, to.as_str()));
    assert_eq!(count(&ts, &format!("/Observation?encounter={enc}")).await, 1);
    let (_, visit) = page(&ts, &session, &to).await;
    assert!(visit.contains("Measured at this visit") && visit.contains("88 /min"), "{visit}");
    // readings are tied only to a visit of this patient
    let (status, _, body) = post_form(
        &ts,
        &session,
        "/app/patient/pat-a/vitals",
        &[("csrf", csrf.as_str()), ("encounter", "no-such"), ("pulse", "88")],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not one of this patient"), "{body}");

    // finish
    assert_eq!(post_form(&ts, &session, &format!("{to}/finish"), &[("csrf", csrf.as_str())]).await.0, 303);
    let e = hale_test_support::json(ts.get(&format!("/Encounter/{enc}")).await).await;
    assert_eq!(e["status"], "finished");
    assert!(e["period"]["end"].is_string());

    // the visit is not reachable under another patient, and B gets no visit from A's clinician
    assert_eq!(page(&ts, &session, &format!("/app/patient/pat-b/visit/{enc}")).await.0, 404);
    assert_eq!(post_form(&ts, &session, "/app/patient/pat-b/visits", &[("csrf", csrf.as_str())]).await.0, 404);
    assert_eq!(count(&ts, "/Encounter?patient=pat-b").await, 0);
    // a forged form does nothing
    let (status, _, _) = post_form(&ts, &session, "/app/patient/pat-a/visits", &[("csrf", "forged")]).await;
    assert_eq!(status, 403);
}

/// The value of the `<option>` whose text starts with `text`.
fn option_value(html: &str, text: &str) -> String {
    let at = html.find(&format!(">{text}")).unwrap_or_else(|| panic!("no option {text}"));
    let start = html[..at].rfind("value=\"").unwrap() + 7;
    html[start..].split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn problems_allergies_and_immunizations_are_recorded_from_tables_or_words() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();

    // a problem from the table, found by its ICD-10-CM code
    let (status, form) = page(&ts, &session, "/app/patient/pat-a/problems/new?q=E11").await;
    assert_eq!(status, 200, "{form}");
    let csrf = field(&form, "csrf").unwrap();
    let term = option_value(&form, "Type 2 diabetes mellitus");
    let bad = [("csrf", csrf.as_str()), ("term", term.as_str()), ("onset", "2099-01-01")];
    let (status, _, body) = post_form(&ts, &session, "/app/patient/pat-a/problems/new", &bad).await;
    assert_eq!(status, 400);
    assert!(body.contains("The date is in the future") && body.contains("value=\"2099-01-01\""), "{body}");
    let before = count(&ts, "/Condition?patient=pat-a").await;
    let good = [("csrf", csrf.as_str()), ("term", term.as_str()), ("onset", "2019-04")];
    assert_eq!(post_form(&ts, &session, "/app/patient/pat-a/problems/new", &good).await.0, 303);
    let free = [("csrf", csrf.as_str()), ("term", ""), ("text", "Chronic cough")];
    assert_eq!(post_form(&ts, &session, "/app/patient/pat-a/problems/new", &free).await.0, 303);
    assert_eq!(count(&ts, "/Condition?patient=pat-a").await, before + 2);
    let coded =
        hale_test_support::json(ts.get("/Condition?patient=pat-a&code=http://hl7.org/fhir/sid/icd-10-cm|E11.9").await)
            .await;
    let cid = coded["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    assert_eq!(coded["entry"][0]["resource"]["recorder"]["reference"], "Practitioner/prac-j");
    let (_, chart) = page(&ts, &session, "/app/patient/pat-a").await;
    assert!(
        chart.contains("Type 2 diabetes mellitus") && chart.contains("E11.9") && chart.contains("Chronic cough"),
        "{chart}"
    );
    // a link to MedlinePlus for the coded problem: its code only, no referrer, a new tab
    assert!(
        chart.contains("href=\"https://connect.medlineplus.gov/application?mainSearchCriteria.v.cs=2.16.840.1.113883.6.90&amp;mainSearchCriteria.v.c=E11.9&amp;informationRecipient.languageCode.c=en\" target=\"_blank\" rel=\"noopener noreferrer\""),
        "{chart}"
    );
    // resolved, it leaves the active list
    let resolve = format!("/app/patient/pat-a/problem/{cid}/resolve");
    assert_eq!(post_form(&ts, &session, &resolve, &[("csrf", csrf.as_str())]).await.0, 303);
    let c = hale_test_support::json(ts.get(&format!("/Condition/{cid}")).await).await;
    assert_eq!(c["clinicalStatus"]["coding"][0]["code"], "resolved");
    let (_, chart) = page(&ts, &session, "/app/patient/pat-a").await;
    assert!(!chart.contains("Type 2 diabetes mellitus") && chart.contains("Chronic cough"), "{chart}");

    // an allergy from the list: the prescribing check reads it at once
    let (_, form) = page(&ts, &session, "/app/patient/pat-a/allergies/new").await;
    let sulfa = option_value(&form, "Sulfonamides");
    let (status, _, body) = post_form(
        &ts,
        &session,
        "/app/patient/pat-a/allergies/new",
        &[("csrf", csrf.as_str()), ("term", sulfa.as_str())],
    )
    .await;
    assert_eq!(status, 400, "a criticality is needed: {body}");
    let allergy = [("csrf", csrf.as_str()), ("term", sulfa.as_str()), ("criticality", "low"), ("reaction", "rash")];
    assert_eq!(post_form(&ts, &session, "/app/patient/pat-a/allergies/new", &allergy).await.0, 303);
    let (_, chart) = page(&ts, &session, "/app/patient/pat-a").await;
    assert!(chart.contains("Sulfonamides (allergy to sulfonamide)") && chart.contains("rash"), "{chart}");
    let smx = drugs_index(&ts, &session, "sulfamethoxazole").await;
    let (_, rx) = page(&ts, &session, &format!("/app/patient/pat-a/prescribe?drug={smx}")).await;
    assert!(rx.contains("sulfamethoxazole is a sulfonamide antibiotic"), "{rx}");

    // an immunization (CVX), not in the future
    let (_, form) = page(&ts, &session, "/app/patient/pat-a/immunizations/new").await;
    let tdap = option_value(&form, "Tdap");
    let (status, _, _) = post_form(
        &ts,
        &session,
        "/app/patient/pat-a/immunizations/new",
        &[("csrf", csrf.as_str()), ("term", tdap.as_str()), ("given", "2099-01-01")],
    )
    .await;
    assert_eq!(status, 400);
    let imm = [("csrf", csrf.as_str()), ("term", tdap.as_str()), ("given", "2026-11-02"), ("lot", "TD-991")];
    assert_eq!(post_form(&ts, &session, "/app/patient/pat-a/immunizations/new", &imm).await.0, 303);
    let i = hale_test_support::json(
        ts.get("/Immunization?patient=pat-a&vaccine-code=http://hl7.org/fhir/sid/cvx|115").await,
    )
    .await;
    assert_eq!(i["entry"][0]["resource"]["lotNumber"], "TD-991", "{i}");
    let (_, chart) = page(&ts, &session, "/app/patient/pat-a").await;
    assert!(chart.contains("Tdap") && chart.contains("2026-11-02"), "{chart}");

    // nothing for another organization's patient, and no resolving their problems
    for path in
        ["/app/patient/pat-b/problems/new", "/app/patient/pat-b/allergies/new", "/app/patient/pat-b/immunizations/new"]
    {
        assert_eq!(page(&ts, &session, path).await.0, 404, "{path}");
    }
    let (status, _, _) = post_form(&ts, &session, "/app/patient/pat-b/allergies/new", &allergy).await;
    assert_eq!(status, 404);
    assert_eq!(count(&ts, "/AllergyIntolerance?patient=pat-b").await, 1, "only the canary");
    // a problem is resolved only under its own patient
    let (status, _, _) =
        post_form(&ts, &session, "/app/patient/pat-a/problem/al-b/resolve", &[("csrf", csrf.as_str())]).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lab_order_gets_its_result_which_waits_in_the_inbox_until_reviewed() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let (_, form) = page(&ts, &session, "/app/patient/pat-a/orders/new").await;
    let csrf = field(&form, "csrf").unwrap();
    // order a lipid panel
    let order = [("csrf", csrf.as_str()), ("test", "57698-3"), ("priority", "routine"), ("note", "fasting")];
    assert_eq!(post_form(&ts, &session, "/app/patient/pat-a/orders/new", &order).await.0, 303);
    let srs = hale_test_support::json(ts.get("/ServiceRequest?patient=pat-a").await).await;
    let sr = srs["entry"][0]["resource"].clone();
    let sr_id = sr["id"].as_str().unwrap().to_string();
    assert_eq!(
        (sr["status"].as_str(), sr["requester"]["reference"].as_str()),
        (Some("active"), Some("Practitioner/prac-j"))
    );
    let (_, chart) = page(&ts, &session, "/app/patient/pat-a").await;
    assert!(chart.contains("Open orders (1)") && chart.contains("Lipid panel with direct LDL"), "{chart}");
    let (_, inbox) = page(&ts, &session, "/app/inbox").await;
    assert!(inbox.contains("Nothing waits for you."), "{inbox}");

    // the result: every value checked, nothing written until all are right
    let result_path = format!("/app/patient/pat-a/order/{sr_id}/result");
    let (status, form) = page(&ts, &session, &result_path).await;
    assert_eq!(status, 200, "{form}");
    assert!(form.contains("Reference ≤ 200 mg/dL"), "{form}");
    let bad = [("csrf", csrf.as_str()), ("2093-3", "241"), ("2571-8", "9999999"), ("2085-9", "38"), ("18262-6", "")];
    let (status, _, body) = post_form(&ts, &session, &result_path, &bad).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("outside what is plausible")
            && body.contains("Give the value.")
            && body.contains("value=\"241\""),
        "{body}"
    );
    assert_eq!(count(&ts, "/DiagnosticReport?patient=pat-a").await, 0);
    let good = [("csrf", csrf.as_str()), ("2093-3", "241"), ("2571-8", "140"), ("2085-9", "38"), ("18262-6", "150")];
    let (status, to, _) = post_form(&ts, &session, &result_path, &good).await;
    assert_eq!((status, to.as_str()), (303, "/app/patient/pat-a/results"));
    let sr = hale_test_support::json(ts.get(&format!("/ServiceRequest/{sr_id}")).await).await;
    assert_eq!(sr["status"], "completed");
    let reports =
        hale_test_support::json(ts.get(&format!("/DiagnosticReport?based-on=ServiceRequest/{sr_id}")).await).await;
    assert_eq!(reports["entry"][0]["resource"]["result"].as_array().unwrap().len(), 4, "{reports}");
    let ldl = hale_test_support::json(ts.get("/Observation?patient=pat-a&code=http://loinc.org|18262-6").await).await;
    assert_eq!(ldl["entry"][0]["resource"]["interpretation"][0]["coding"][0]["code"], "H");
    // the same order cannot get a second result
    let (status, _, _) = post_form(&ts, &session, &result_path, &good).await;
    assert_eq!(status, 409);
    assert_eq!(count(&ts, "/DiagnosticReport?patient=pat-a").await, 1);

    // the inbox of the clinician who ordered it; reviewed, it leaves the inbox
    let (_, inbox) = page(&ts, &session, "/app/inbox").await;
    assert!(
        inbox.contains("Inbox (1)")
            && inbox.contains("Lipid panel with direct LDL for Alvarez, Ana (3 outside the reference range)"),
        "{inbox}"
    );
    let review =
        inbox.split("href=\"/app/patient/pat-a/review/").nth(1).unwrap().split('"').next().unwrap().to_string();
    // in the portal, the results wait for the review (the default rule)
    let ana = sign_in(&ts, "/portal", "ana", PASSWORD, "").await.unwrap();
    let (_, mine) = page(&ts, &ana, "/portal/results").await;
    assert!(!mine.contains("Cholesterol in LDL") && mine.contains("Hemoglobin A1c"), "{mine}");
    assert!(mine.contains("4 new results are waiting for your care team"), "{mine}");
    // nor in the health summary, on the page or in the document
    let (_, summary) = page(&ts, &ana, "/portal/summary").await;
    assert!(summary.contains("Hemoglobin A1c") && !summary.contains("Cholesterol in LDL"), "{summary}");
    let held =
        no_redirects().get(format!("{}/portal/download/summary", ts.base)).header("cookie", &ana).send().await.unwrap();
    assert!(!held.text().await.unwrap().contains("Cholesterol in LDL"));
    let review_path = format!("/app/patient/pat-a/review/{review}");
    let (status, page_) = page(&ts, &session, &review_path).await;
    assert_eq!(status, 200, "{page_}");
    assert!(
        page_.contains("241 mg/dL") && page_.contains("class=\"flag H\"") && page_.contains("class=\"flag L\""),
        "{page_}"
    );
    assert_eq!(post_form(&ts, &session, &review_path, &[("csrf", csrf.as_str())]).await.0, 303);
    let (_, inbox) = page(&ts, &session, "/app/inbox").await;
    assert!(inbox.contains("Nothing waits for you."), "{inbox}");
    let (_, page_) = page(&ts, &session, &review_path).await;
    assert!(page_.contains("Reviewed "), "{page_}");
    // the results page shows the new values
    let (_, results) = page(&ts, &session, "/app/patient/pat-a/results").await;
    assert!(results.contains("Cholesterol in LDL") && results.contains("150 mg/dL"), "{results}");
    // reviewed, they reach the portal, marked new once
    let (_, mine) = page(&ts, &ana, "/portal/results").await;
    assert!(mine.contains("Cholesterol in LDL") && !mine.contains("waiting for your care team"), "{mine}");
    let (_, summary) = page(&ts, &ana, "/portal/summary").await;
    assert!(summary.contains("Cholesterol in LDL"), "reviewed, the result is in the summary: {summary}");
    assert!(mine.contains("New since your last visit:") && mine.contains("Cholesterol in LDL"), "{mine}");
    let (_, mine) = page(&ts, &ana, "/portal/results").await;
    assert!(!mine.contains("New since your last visit:"), "{mine}");

    // another organization's patient: no order, no result, no review
    assert_eq!(post_form(&ts, &session, "/app/patient/pat-b/orders/new", &order).await.0, 404);
    assert_eq!(page(&ts, &session, &format!("/app/patient/pat-b/review/{review}")).await.0, 404);
    assert_eq!(count(&ts, "/ServiceRequest?patient=pat-b").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_portal_shows_a_patient_their_own_record_and_who_opened_it() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    // no session: to sign in and back
    let r = no_redirects().get(format!("{}/portal/results", ts.base)).send().await.unwrap();
    assert_eq!((r.status().as_u16(), location(&r)), (303, "/auth/login?next=/portal/results".to_string()));
    // the clinician opens A's chart: A will see it
    let code = enrolled(&ts, "dr.jones").await;
    let staff = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    assert_eq!(page(&ts, &staff, "/app/patient/pat-a").await.0, 200);
    let (status, body) = page(&ts, &staff, "/portal").await;
    assert_eq!(status, 403, "staff get no portal page: {body}");

    let ana = sign_in(&ts, "/portal", "ana", PASSWORD, "").await.unwrap();
    let (status, home) = page(&ts, &ana, "/portal").await;
    assert_eq!(status, 200, "{home}");
    for expected in [
        "Alvarez, Ana",
        "Penicillin G",
        "can be severe",
        "Salbutamol 100 mcg inhaler",
        "2 puffs when needed",
        "Influenza vaccine",
        "Check-up",
        "Clinic A",
    ] {
        assert!(home.contains(expected), "the portal shows {expected}: {home}");
    }
    assert!(!home.contains("CANARY-B") && !home.contains("Brown"), "{home}");
    assert!(home.contains("&lt;script&gt;") && home.matches("<script").count() == 1, "stored markup is text: {home}");
    // reminders of the care that is due, in plain words
    assert!(home.contains("Care that is due"), "{home}");
    assert!(home.contains("A flu vaccine for this season") && home.contains("last 2024-10-01"), "{home}");
    assert!(home.contains("A tetanus booster (every 10 years)") && home.contains("not recorded yet"), "{home}");
    let (status, results) = page(&ts, &ana, "/portal/results").await;
    assert_eq!(status, 200);
    assert!(
        results.contains("Hemoglobin A1c") && results.contains("<svg") && !results.contains("CANARY-B"),
        "{results}"
    );
    // who has seen the record: the clinician, for care
    let mut access = String::new();
    for _ in 0..50 {
        access = page(&ts, &ana, "/portal/access").await.1;
        if access.contains("dr.jones") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        access.contains("dr.jones") && access.contains("your care") && access.contains("looked up allergies"),
        "{access}"
    );
    assert!(!access.contains("pat-b") && !access.contains("Brown"), "{access}");
    // the whole record to download, and nothing of anyone else's
    let r = no_redirects().get(format!("{}/portal/download", ts.base)).header("cookie", &ana).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/fhir+json");
    assert!(r.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let text = r.text().await.unwrap();
    assert!(!text.contains("CANARY-B") && !text.contains("pat-b"), "{text}");
    let bundle: Value = serde_json::from_str(&text).unwrap();
    let kinds: Vec<String> =
        bundle["entry"].as_array().unwrap().iter().map(|e| e["fullUrl"].as_str().unwrap().to_string()).collect();
    for expected in
        ["Patient/pat-a", "AllergyIntolerance/al-a", "Observation/a1c-a", "MedicationRequest/mr-a", "Encounter/enc-a"]
    {
        assert!(kinds.iter().any(|k| k == expected), "{expected} in {kinds:?}");
    }
    assert_eq!(bundle["total"].as_u64().unwrap() as usize, kinds.len());
    let issues = hale_fhir::validate::validate_resource(&bundle);
    assert!(!issues.iter().any(hale_fhir::Issue::is_error), "{issues:?}");
    let r = no_redirects().get(format!("{}/portal/download", ts.base)).send().await.unwrap();
    assert_eq!(r.status(), 303, "no session, no download");

    // a patient gets no staff page, and cannot write through one
    assert_eq!(page(&ts, &ana, "/app/patient/pat-a").await.0, 403);
    let (status, _, _) = post_form(&ts, &ana, "/app/patient/pat-a/vitals", &[("pulse", "70")]).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patient_asks_for_a_refill_and_the_prescriber_answers_from_the_inbox() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let ana = sign_in(&ts, "/portal", "ana", PASSWORD, "").await.unwrap();
    let (_, home) = page(&ts, &ana, "/portal").await;
    let csrf = field(&home, "csrf").unwrap();
    assert!(home.contains("Request a refill"), "{home}");
    let refill = |medication: &'static str, token: String| {
        let ts = &ts;
        let ana = ana.clone();
        async move { post_form(ts, &ana, "/portal/refill", &[("csrf", token.as_str()), ("medication", medication)]).await.0 }
    };
    assert_eq!(refill("mr-a", "forged".into()).await, 403);
    assert_eq!(refill("no-such", csrf.clone()).await, 404);
    assert_eq!(refill("mr-a", csrf.clone()).await, 303);
    assert_eq!(refill("mr-a", csrf.clone()).await, 303, "asked again: nothing new");
    assert_eq!(count(&ts, "/Task?patient=pat-a&code=http://hl7.org/fhir/CodeSystem/task-code|fulfill").await, 1);
    let (_, home) = page(&ts, &ana, "/portal").await;
    assert!(
        home.contains("My requests")
            && home.contains("waiting for your care team")
            && home.contains("refill requested"),
        "{home}"
    );

    // the prescriber's inbox; approved, a new prescription like the last
    let code = enrolled(&ts, "dr.jones").await;
    let staff = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let (_, inbox) = page(&ts, &staff, "/app/inbox").await;
    assert!(inbox.contains("Refill request: Salbutamol 100 mcg inhaler"), "{inbox}");
    let review =
        inbox.split("href=\"/app/patient/pat-a/review/").nth(1).unwrap().split('"').next().unwrap().to_string();
    let path = format!("/app/patient/pat-a/review/{review}");
    let (status, req) = page(&ts, &staff, &path).await;
    assert_eq!(status, 200, "{req}");
    assert!(req.contains("Approve the refill") && req.contains("2 puffs when needed"), "{req}");
    let staff_csrf = field(&req, "csrf").unwrap();
    assert_eq!(post_form(&ts, &staff, &path, &[("csrf", staff_csrf.as_str()), ("action", "approve")]).await.0, 303);
    let old = hale_test_support::json(ts.get("/MedicationRequest/mr-a").await).await;
    assert_eq!(old["status"], "completed");
    let renewed = hale_test_support::json(ts.get("/MedicationRequest?patient=pat-a&status=active").await).await;
    let new = &renewed["entry"][0]["resource"];
    assert_eq!(new["priorPrescription"]["reference"], "MedicationRequest/mr-a", "{renewed}");
    assert_eq!(new["requester"]["reference"], "Practitioner/prac-j");
    let task = hale_test_support::json(ts.get(&format!("/Task/{review}")).await).await;
    assert_eq!(task["status"], "completed");
    assert_eq!(
        task["output"][0]["valueReference"]["reference"],
        format!("MedicationRequest/{}", new["id"].as_str().unwrap())
    );
    // answered once only
    assert_eq!(post_form(&ts, &staff, &path, &[("csrf", staff_csrf.as_str()), ("action", "approve")]).await.0, 409);
    let (_, home) = page(&ts, &ana, "/portal").await;
    assert!(home.contains("approved"), "{home}");

    // another request, declined with a reason the patient reads
    let new_id = new["id"].as_str().unwrap().to_string();
    let (_, home) = page(&ts, &ana, "/portal").await;
    assert!(home.contains(&format!("value=\"{new_id}\"")), "the renewed medicine can be asked for: {home}");
    let (status, _, _) =
        post_form(&ts, &ana, "/portal/refill", &[("csrf", csrf.as_str()), ("medication", new_id.as_str())]).await;
    assert_eq!(status, 303);
    let (_, inbox) = page(&ts, &staff, "/app/inbox").await;
    let second =
        inbox.split("href=\"/app/patient/pat-a/review/").nth(1).unwrap().split('"').next().unwrap().to_string();
    let path = format!("/app/patient/pat-a/review/{second}");
    let (status, _, body) =
        post_form(&ts, &staff, &path, &[("csrf", staff_csrf.as_str()), ("action", "decline"), ("reason", "")]).await;
    assert_eq!(status, 400);
    assert!(body.contains("Give the patient the reason"), "{body}");
    let decline =
        [("csrf", staff_csrf.as_str()), ("action", "decline"), ("reason", "please book a review visit first")];
    assert_eq!(post_form(&ts, &staff, &path, &decline).await.0, 303);
    let (_, home) = page(&ts, &ana, "/portal").await;
    assert!(home.contains("declined: please book a review visit first"), "{home}");
    // the request is closed, declined
    let tasks = hale_test_support::json(ts.get(&format!("/Task/{second}")).await).await;
    assert_eq!(tasks["status"], "rejected");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patient_and_the_care_team_exchange_secure_messages() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let ana = sign_in(&ts, "/portal", "ana", PASSWORD, "").await.unwrap();
    let (_, list) = page(&ts, &ana, "/portal/messages").await;
    let csrf = field(&list, "csrf").unwrap();
    // refused: a forged form, an empty message, no subject
    assert_eq!(post_form(&ts, &ana, "/portal/messages", &[("csrf", "x"), ("topic", "t"), ("text", "t")]).await.0, 403);
    let (status, _, body) =
        post_form(&ts, &ana, "/portal/messages", &[("csrf", csrf.as_str()), ("topic", "Inhaler"), ("text", " ")]).await;
    assert_eq!(status, 400);
    assert!(body.contains("Write the message.") && body.contains("value=\"Inhaler\""), "{body}");
    let (status, _, _) =
        post_form(&ts, &ana, "/portal/messages", &[("csrf", csrf.as_str()), ("topic", ""), ("text", "hello")]).await;
    assert_eq!(status, 400);
    assert_eq!(count(&ts, "/Communication?patient=pat-a").await, 0);
    // sent to the GP
    let question = [
        ("csrf", csrf.as_str()),
        ("topic", "Question about my inhaler"),
        ("text", "Can I use it before running? <b>thanks</b>"),
    ];
    let (status, to, _) = post_form(&ts, &ana, "/portal/messages", &question).await;
    assert_eq!(status, 303);
    let thread = to.rsplit('/').next().unwrap().to_string();
    let c = hale_test_support::json(ts.get(&format!("/Communication/{thread}")).await).await;
    assert_eq!(c["recipient"][0]["reference"], "Practitioner/prac-j");
    assert_eq!(c["sender"]["reference"], "Patient/pat-a");

    // the clinician's inbox; opening it marks it received
    let code = enrolled(&ts, "dr.jones").await;
    let staff = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let (_, inbox) = page(&ts, &staff, "/app/inbox").await;
    assert!(inbox.contains("Messages from patients (1)") && inbox.contains("Question about my inhaler"), "{inbox}");
    let path = format!("/app/patient/pat-a/messages/{thread}");
    let (status, conv) = page(&ts, &staff, &path).await;
    assert_eq!(status, 200, "{conv}");
    assert!(conv.contains("Can I use it before running? &lt;b&gt;thanks&lt;/b&gt;"), "the message is text: {conv}");
    let c = hale_test_support::json(ts.get(&format!("/Communication/{thread}")).await).await;
    assert!(c["received"].is_string(), "opened: {c}");
    let (_, inbox) = page(&ts, &staff, "/app/inbox").await;
    assert!(inbox.contains("Messages from patients (0)"), "{inbox}");
    let staff_csrf = field(&conv, "csrf").unwrap();
    assert_eq!(post_form(&ts, &staff, &path, &[("csrf", staff_csrf.as_str()), ("text", "")]).await.0, 400);
    let reply = [("csrf", staff_csrf.as_str()), ("text", "Yes, two puffs 15 minutes before.")];
    assert_eq!(post_form(&ts, &staff, &path, &reply).await.0, 303);

    // the patient sees a new message, reads it, and it is no longer new
    let (_, home) = page(&ts, &ana, "/portal").await;
    assert!(home.contains("1 conversation with a new message"), "{home}");
    let (_, list) = page(&ts, &ana, "/portal/messages").await;
    assert!(list.contains("Question about my inhaler") && list.contains(">new<"), "{list}");
    let (status, conv) = page(&ts, &ana, &format!("/portal/messages/{thread}")).await;
    assert_eq!(status, 200);
    assert!(conv.contains("Yes, two puffs 15 minutes before.") && conv.contains("dr.jones (test)"), "{conv}");
    let (_, home) = page(&ts, &ana, "/portal").await;
    assert!(!home.contains("with a new message"), "{home}");
    // the patient answers in the same thread, to the clinician who wrote
    let (status, _, _) =
        post_form(&ts, &ana, &format!("/portal/messages/{thread}"), &[("csrf", csrf.as_str()), ("text", "Thank you!")])
            .await;
    assert_eq!(status, 303);
    assert_eq!(count(&ts, "/Communication?patient=pat-a&recipient=Practitioner/prac-j").await, 2);
    // nobody else's conversation
    assert_eq!(page(&ts, &ana, "/portal/messages/no-such").await.0, 404);
    assert_eq!(page(&ts, &staff, &format!("/app/patient/pat-b/messages/{thread}")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_medication_list_is_reconciled_in_one_transaction() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let second = json!({"resourceType":"MedicationRequest","id":"mr-a2","status":"active","intent":"order",
        "medicationCodeableConcept":{"text":"Atorvastatin 20 mg"},"subject":{"reference":"Patient/pat-a"},"authoredOn":"2023-05-01"});
    assert!(ts.put("/MedicationRequest/mr-a2", &second).await.status().is_success());
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let (status, form) = page(&ts, &session, "/app/patient/pat-a/medications/reconcile").await;
    assert_eq!(status, 200, "{form}");
    assert!(form.contains("Salbutamol 100 mcg inhaler") && form.contains("Atorvastatin 20 mg"), "{form}");
    let csrf = field(&form, "csrf").unwrap();
    let path = "/app/patient/pat-a/medications/reconcile";
    // a stop without a reason: refused, nothing changed
    let (status, _, body) = post_form(&ts, &session, path, &[("csrf", csrf.as_str()), ("action-mr-a2", "stop")]).await;
    assert_eq!(status, 400);
    assert!(body.contains("Give the reason."), "{body}");
    assert_eq!(hale_test_support::json(ts.get("/MedicationRequest/mr-a2").await).await["status"], "active");
    let ok = [
        ("csrf", csrf.as_str()),
        ("action-mr-a", "continue"),
        ("action-mr-a2", "stop"),
        ("reason-mr-a2", "muscle pain"),
    ];
    assert_eq!(post_form(&ts, &session, path, &ok).await.0, 303);
    let stopped = hale_test_support::json(ts.get("/MedicationRequest/mr-a2").await).await;
    assert_eq!(
        (stopped["status"].as_str(), stopped["statusReason"]["text"].as_str()),
        (Some("stopped"), Some("muscle pain"))
    );
    let lists = hale_test_support::json(ts.get("/List?patient=pat-a&code=http://loinc.org|10160-0").await).await;
    let list = &lists["entry"][0]["resource"];
    assert_eq!(list["entry"].as_array().unwrap().len(), 1, "{lists}");
    assert_eq!(list["entry"][0]["item"]["reference"], "MedicationRequest/mr-a");
    assert_eq!(list["source"]["reference"], "Practitioner/prac-j");
    let (_, chart) = page(&ts, &session, "/app/patient/pat-a").await;
    assert!(chart.contains("Active medications (1)") && !chart.contains("Atorvastatin"), "{chart}");
    assert_eq!(page(&ts, &session, "/app/patient/pat-b/medications/reconcile").await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_critical_value_comes_first_in_the_inbox() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let (_, form) = page(&ts, &session, "/app/patient/pat-a/orders/new").await;
    let csrf = field(&form, "csrf").unwrap();
    for test in ["4548-4", "51990-0"] {
        let order = [("csrf", csrf.as_str()), ("test", test), ("priority", "routine")];
        assert_eq!(post_form(&ts, &session, "/app/patient/pat-a/orders/new", &order).await.0, 303);
    }
    let srs = hale_test_support::json(ts.get("/ServiceRequest?patient=pat-a&_sort=_lastUpdated").await).await;
    let id_of = |code: &str| {
        srs["entry"].as_array().unwrap().iter().find(|e| e["resource"]["code"]["coding"][0]["code"] == code).unwrap()["resource"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // a high but not critical HbA1c first, then a critical potassium
    let a1c = [("csrf", csrf.as_str()), ("4548-4", "9.1")];
    assert_eq!(
        post_form(&ts, &session, &format!("/app/patient/pat-a/order/{}/result", id_of("4548-4")), &a1c).await.0,
        303
    );
    let bmp = [
        ("csrf", csrf.as_str()),
        ("2345-7", "95"),
        ("2160-0", "1.0"),
        ("2951-2", "139"),
        ("2823-3", "6.9"),
        ("3094-0", "15"),
        ("17861-6", "9.5"),
    ];
    assert_eq!(
        post_form(&ts, &session, &format!("/app/patient/pat-a/order/{}/result", id_of("51990-0")), &bmp).await.0,
        303
    );
    let k = hale_test_support::json(ts.get("/Observation?patient=pat-a&code=http://loinc.org|2823-3").await).await;
    assert_eq!(k["entry"][0]["resource"]["interpretation"][0]["coding"][0]["code"], "HH");
    let (_, inbox) = page(&ts, &session, "/app/inbox").await;
    let critical = inbox
        .find("CRITICAL: Basic metabolic panel for Alvarez, Ana: Potassium 6.9 mmol/L")
        .expect("the critical value is named");
    let routine = inbox.find("Review: Hemoglobin A1c").expect("the other result is there");
    assert!(critical < routine, "the critical value comes first: {inbox}");
    assert!(inbox.contains("<tr class=\"critical\">"), "{inbox}");
    let tasks = hale_test_support::json(ts.get("/Task?patient=pat-a&priority=stat").await).await;
    assert_eq!(tasks["entry"].as_array().unwrap().len(), 1, "{tasks}");
}

#[tokio::test(flavor = "multi_thread")]
async fn my_patients_are_those_i_am_gp_of_or_in_the_care_team_of() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let c = json!({"resourceType":"Patient","id":"pat-c","name":[{"family":"Carver","given":["Cleo"]}],
        "managingOrganization":{"reference":"Organization/org-a"}});
    let team = json!({"resourceType":"CareTeam","id":"team-c","status":"active","subject":{"reference":"Patient/pat-c"},
        "participant":[{"member":{"reference":"Practitioner/prac-j"}}]});
    let other = json!({"resourceType":"Patient","id":"pat-d","name":[{"family":"Dunn"}],"managingOrganization":{"reference":"Organization/org-a"}});
    for (path, r) in [("/Patient/pat-c", &c), ("/CareTeam/team-c", &team), ("/Patient/pat-d", &other)] {
        assert!(ts.put(path, r).await.status().is_success());
    }
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let (_, home) = page(&ts, &session, "/app").await;
    assert!(
        home.contains("My patients (2)") && home.contains("Alvarez, Ana") && home.contains("Carver, Cleo"),
        "{home}"
    );
    assert!(!home.contains("Dunn") && !home.contains("Brown"), "{home}");
    // preventive care due across them: Ana first (eight items, cervical screening among
    // them: a woman of 46 with no Pap test), Cleo (no birth date) after
    let (status, due) = page(&ts, &session, "/app/due").await;
    assert_eq!(status, 200, "{due}");
    assert!(due.contains("My patients (2)") && due.contains("8 items due"), "{due}");
    let (ana, cleo) = (due.find("Alvarez, Ana").unwrap(), due.find("Carver, Cleo").unwrap());
    assert!(ana < cleo, "{due}");
    assert!(due.contains("Tetanus and diphtheria booster (every 10 years); Blood pressure check"), "{due}");
    assert!(!due.contains("Dunn") && !due.contains("Brown"), "{due}");
    // filtered to one rule: the patients due for it, with it alone
    let (status, td) = page(&ts, &session, "/app/due?rule=td-booster").await;
    assert_eq!(status, 200, "{td}");
    assert!(td.contains("(1) · Tetanus and diphtheria booster") && td.contains("1 item due."), "{td}");
    assert!(td.contains("Alvarez, Ana") && !td.contains("Carver, Cleo"), "{td}");
    let table = td.split("<tbody>").nth(1).unwrap();
    assert!(!table.contains("Blood pressure check"), "{td}");
    assert!(td.contains(r#"<option value="td-booster" selected>"#), "{td}");
    // a rule that does not exist: said so by the field, every rule shown
    let (status, bad) = page(&ts, &session, "/app/due?rule=%3Cscript%3Ex").await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad.contains("There is no rule “&lt;script&gt;x”") && bad.contains("8 items due"), "{bad}");
    // by age (Ana is 46; Cleo has no birth date, so no age)
    let (status, aged) = page(&ts, &session, "/app/due?age_from=40&age_to=50").await;
    assert_eq!(status, 200, "{aged}");
    assert!(aged.contains("Alvarez, Ana") && !aged.contains("Carver, Cleo"), "{aged}");
    assert!(aged.contains(r#"name="age_from" min="0" max="130" inputmode="numeric" value="40""#), "{aged}");
    let (_, none) = page(&ts, &session, "/app/due?age_from=60").await;
    assert!(none.contains("None of your patients is due for this.") && !none.contains("Alvarez, Ana"), "{none}");
    for (q, says) in
        [("age_from=x", "An age is a whole number"), ("age_from=50&age_to=40", "The range ends before it starts")]
    {
        let (status, bad) = page(&ts, &session, &format!("/app/due?{q}")).await;
        assert_eq!(status, 400, "{q}: {bad}");
        assert!(bad.contains(says) && bad.contains("8 items due"), "{q}: {bad}");
    }
}

/// The diabetes, cervical and lung screenings read what the pages search for: a BMI, an
/// HbA1c, a hysterectomy (which ends cervical screening), a smoking status and pack-years
/// coded in SNOMED CT; the chart, the portal and the worklist agree.
#[tokio::test(flavor = "multi_thread")]
async fn screenings_follow_the_bmi_the_smoking_history_and_a_hysterectomy() {
    const DIABETES: &str = "Diabetes screening every 3 years";
    const CERVICAL: &str = "Cervical cancer screening (women 21 to 65)";
    const LUNG: &str = "Lung cancer screening, low-dose CT yearly";
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let put = |r: Value| {
        let ts = &ts;
        async move {
            let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
            assert!(ts.put(&path, &r).await.status().is_success(), "{path}");
        }
    };
    let sct = |code: &str| json!({"coding": [{"system": "http://snomed.info/sct", "code": code}]});
    // Ana (46, no BMI, no smoking status, no Pap test): cervical screening, not the others
    let (_, chart) = page(&ts, &session, "/app/patient/pat-a").await;
    assert!(chart.contains(CERVICAL) && !chart.contains(DIABETES) && !chart.contains(LUNG), "{chart}");
    // a BMI of 27.2: diabetes screening applies, but her HbA1c of 2025 counts as done
    put(json!({"resourceType": "Observation", "id": "bmi-a", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "39156-5"}]}, "subject": {"reference": "Patient/pat-a"},
        "effectiveDateTime": "2025-06-01", "valueQuantity": {"value": 27.2, "unit": "kg/m2"}}))
    .await;
    let (_, chart) = page(&ts, &session, "/app/patient/pat-a").await;
    assert!(!chart.contains(DIABETES) && chart.contains(CERVICAL), "{chart}");
    let ana = sign_in(&ts, "/portal", "ana", PASSWORD, "").await.unwrap();
    let (_, home) = page(&ts, &ana, "/portal").await;
    assert!(home.contains("A cervical screening test (a Pap test, or from 30 an HPV test)"), "{home}");
    // a total hysterectomy: no cervical screening, on the chart and in the portal
    put(json!({"resourceType": "Procedure", "id": "hyst-a", "status": "completed", "code": sct("116140006"),
        "subject": {"reference": "Patient/pat-a"}, "performedDateTime": "2019-04-01"}))
    .await;
    let (_, chart) = page(&ts, &session, "/app/patient/pat-a").await;
    assert!(!chart.contains(CERVICAL) && chart.contains("Colorectal cancer screening"), "{chart}");
    let (_, home) = page(&ts, &ana, "/portal").await;
    assert!(!home.contains("A cervical screening test") && home.contains("Care that is due"), "{home}");
    // Sam (66, a former smoker) is due for a low-dose CT ...
    put(json!({"resourceType": "Patient", "id": "pat-s", "name": [{"family": "Smith", "given": ["Sam"]}], "gender": "male",
        "birthDate": "1960-05-05", "generalPractitioner": [{"reference": "Practitioner/prac-j"}],
        "managingOrganization": {"reference": "Organization/org-a"}}))
    .await;
    put(json!({"resourceType": "Observation", "id": "smoke-s", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]}, "subject": {"reference": "Patient/pat-s"},
        "effectiveDateTime": "2026-01-10", "valueCodeableConcept": sct("8517006")}))
    .await;
    let (status, due) = page(&ts, &session, "/app/due?rule=lung-cancer-50-80").await;
    assert_eq!(status, 200, "{due}");
    assert!(due.contains("Smith, Sam") && due.contains("confirm 20 pack-years"), "{due}");
    // with no BMI, not for diabetes screening; with a BMI of 27.2, yes
    let (_, diabetes) = page(&ts, &session, "/app/due?rule=diabetes-35-70").await;
    assert!(
        !diabetes.contains("Smith, Sam") && diabetes.contains("None of your patients is due for this."),
        "{diabetes}"
    );
    put(json!({"resourceType": "Observation", "id": "bmi-s", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "39156-5"}]}, "subject": {"reference": "Patient/pat-s"},
        "effectiveDateTime": "2026-01-10", "valueQuantity": {"value": 27.2, "unit": "kg/m2"}}))
    .await;
    let (_, diabetes) = page(&ts, &session, "/app/due?rule=diabetes-35-70").await;
    assert!(diabetes.contains("Smith, Sam") && diabetes.contains("needs a recorded BMI"), "{diabetes}");
    // ... until 12 pack-years are recorded (SNOMED CT 401201003)
    put(json!({"resourceType": "Observation", "id": "packs-s", "status": "final", "code": sct("401201003"),
        "subject": {"reference": "Patient/pat-s"}, "effectiveDateTime": "2026-01-10",
        "valueQuantity": {"value": 12, "unit": "{pack-years}"}}))
    .await;
    let (_, due) = page(&ts, &session, "/app/due?rule=lung-cancer-50-80").await;
    assert!(!due.contains("Smith, Sam") && due.contains("None of your patients is due for this."), "{due}");
}

/// A child of 4 years and 2 months (in Dr Jones's care team) vaccinated on the CDC
/// schedule up to 18 months: the 4-year doses are due, dose by dose, on the chart and in
/// the worklist (narrowed to the DTaP series).
#[tokio::test(flavor = "multi_thread")]
async fn a_childs_vaccine_series_are_due_dose_by_dose_on_the_chart_and_the_worklist() {
    use chrono::Months;
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let today = chrono::Utc::now().date_naive();
    let born = today - Months::new(50);
    let kid = json!({"resourceType":"Patient","id":"pat-v","name":[{"family":"Vance","given":["Vi"]}],
        "birthDate":born.to_string(),"managingOrganization":{"reference":"Organization/org-a"}});
    let team = json!({"resourceType":"CareTeam","id":"team-v","status":"active","subject":{"reference":"Patient/pat-v"},
        "participant":[{"member":{"reference":"Practitioner/prac-j"}}]});
    assert!(ts.put("/Patient/pat-v", &kid).await.status().is_success());
    assert!(ts.put("/CareTeam/team-v", &team).await.status().is_success());
    let schedule: [(&str, &[u32]); 9] = [
        ("08", &[0, 1, 6]),
        ("20", &[2, 4, 6, 15]),
        ("10", &[2, 4, 6]),
        ("49", &[2, 4, 12]),
        ("133", &[2, 4, 6, 12]),
        ("119", &[2, 4]),
        ("03", &[12]),
        ("21", &[12]),
        ("83", &[12, 18]),
    ];
    for (cvx, months) in schedule {
        for m in months {
            let id = format!("v-{cvx}-{m}");
            let imm = json!({"resourceType":"Immunization","id":id,"status":"completed",
                "vaccineCode":{"coding":[{"system":"http://hl7.org/fhir/sid/cvx","code":cvx}]},
                "patient":{"reference":"Patient/pat-v"},"occurrenceDateTime":(born + Months::new(*m)).to_string()});
            assert!(ts.put(&format!("/Immunization/{id}"), &imm).await.status().is_success());
        }
    }
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let (status, chart) = page(&ts, &session, "/app/patient/pat-v").await;
    assert_eq!(status, 200, "{chart}");
    for due in [
        "DTaP dose 5 of 5 (due at 4 years)",
        "IPV dose 4 of 4 (due at 4 years)",
        "MMR dose 2 of 2 (due at 4 years)",
        "Varicella dose 2 of 2 (due at 4 years)",
    ] {
        assert!(chart.contains(due), "{due}: {chart}");
    }
    // the series given in full are not due; the last valid DTaP dose is named
    assert!(!chart.contains("HepB dose") && !chart.contains("Hib dose") && !chart.contains("PCV dose"), "{chart}");
    assert!(chart.contains(&format!("last {}", born + Months::new(15))), "{chart}");
    assert!(chart.contains("Preventive care due (5)"), "influenza and the four doses: {chart}");
    // the worklist offers the series as rules, and narrowed to DTaP shows the child alone
    let (_, all) = page(&ts, &session, "/app/due").await;
    assert!(
        all.contains(r#"<option value="child-dtap">"#) && all.contains(r#"<option value="adolescent-menacwy">"#),
        "{all}"
    );
    let (status, dtap) = page(&ts, &session, "/app/due?rule=child-dtap").await;
    assert_eq!(status, 200, "{dtap}");
    assert!(dtap.contains("Vance, Vi") && !dtap.contains("Alvarez, Ana") && dtap.contains("1 item due."), "{dtap}");
    assert!(dtap.contains("DTaP dose 5 of 5 (due at 4 years)") && !dtap.contains("IPV dose"), "{dtap}");
}

/// A girl born 2023-01-01 (`pat-k`, managed by Clinic A, not one of Dr Jones's
/// patients) with weights and heights: WHO's median weight at 12 months, and at 24
/// months a weight far above the 99th percentile.
async fn child_fixture(ts: &TestServer) {
    let kid = json!({"resourceType":"Patient","id":"pat-k","name":[{"family":"Kim","given":["Kit"]}],"gender":"female",
        "birthDate":"2023-01-01","managingOrganization":{"reference":"Organization/org-a"}});
    assert!(ts.put("/Patient/pat-k", &kid).await.status().is_success());
    let vital = |id: &str, code: &str, when: &str, value: f64, unit: &str| {
        json!({"resourceType":"Observation","id":id,"status":"final",
            "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
            "code":{"coding":[{"system":"http://loinc.org","code":code}]},"subject":{"reference":"Patient/pat-k"},
            "effectiveDateTime":when,"valueQuantity":{"value":value,"unit":unit,"system":"http://unitsofmeasure.org","code":unit}})
    };
    // WHO girls: median weight at 12 months 8.9481 kg; at 24 months far above the 99th
    for (id, code, when, v, unit) in [
        ("k-w1", "29463-7", "2023-07-02", 7.3, "kg"),
        ("k-w2", "29463-7", "2024-01-01", 8.9481, "kg"),
        ("k-w3", "29463-7", "2025-01-01", 20.0, "kg"),
        ("k-h1", "8302-2", "2024-01-01", 74.0, "cm"),
        ("k-h2", "8302-2", "2025-01-01", 85.7, "cm"),
    ] {
        assert!(ts.put(&format!("/Observation/{id}"), &vital(id, code, when, v, unit)).await.status().is_success());
    }
}

/// A child's weight and height are charted against the WHO percentiles for age and sex
/// (dashed lines) and each reading is given its percentile; an adult's are not.
#[tokio::test(flavor = "multi_thread")]
async fn a_childs_growth_is_charted_against_the_who_percentiles() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    child_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let (status, vitals) = page(&ts, &session, "/app/patient/pat-k/vitals").await;
    assert_eq!(status, 200, "{vitals}");
    assert_eq!(vitals.matches(r#"<polyline class="guide""#).count(), 10, "five lines for weight, five for height");
    assert!(vitals.contains("<title>97th percentile</title>") && vitals.contains("For age (WHO)"), "{vitals}");
    assert!(vitals.contains("50th percentile") && vitals.contains("above the 99th percentile"), "{vitals}");
    assert!(vitals.contains("WHO Child Growth Standards"), "{vitals}");
    // an adult's charts have no percentile lines
    let (_, adult) = page(&ts, &session, "/app/patient/pat-a/vitals").await;
    assert!(!adult.contains("guide") && !adult.contains("For age (WHO)"), "{adult}");
}

/// Reminders from the worklist: each patient ticked gets a portal message naming the
/// care due (one rule's when the list is narrowed to it), recorded as a Communication of
/// category reminder; care reminded of in the last 30 days is not reminded of again; a
/// patient not ticked, or out of the user's panel, gets nothing.
#[tokio::test(flavor = "multi_thread")]
async fn reminders_sent_from_the_worklist_reach_the_portal_once() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let (_, td) = page(&ts, &session, "/app/due?rule=td-booster").await;
    assert!(td.contains(r#"name="patient" value="pat-a" checked"#), "{td}");
    let csrf = field(&td, "csrf").unwrap();
    let reminders = || async {
        let b = hale_test_support::json(ts.get("/Communication?patient=pat-a&category=reminder").await).await;
        b["entry"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e["resource"].clone())
            .collect::<Vec<_>>()
    };
    // an expired form sends nothing
    let bad = [("csrf", "nope"), ("rule", "td-booster"), ("patient", "pat-a")];
    assert_eq!(post_form(&ts, &session, "/app/due/remind", &bad).await.0, 403);
    assert!(reminders().await.is_empty());
    // one rule, one patient ticked (and one out of the panel, ignored)
    let form = [("csrf", csrf.as_str()), ("rule", "td-booster"), ("patient", "pat-a"), ("patient", "pat-b")];
    let (status, _, body) = post_form(&ts, &session, "/app/due/remind", &form).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Reminder sent to 1 patient</strong>: Alvarez, Ana."), "{body}");
    let sent = reminders().await;
    assert_eq!(sent.len(), 1);
    let text = sent[0]["payload"][0]["contentString"].as_str().unwrap();
    assert!(text.contains("A tetanus booster (every 10 years)") && !text.contains("blood pressure"), "{text}");
    assert_eq!(sent[0]["reasonCode"][0]["coding"][0]["code"], "td-booster");
    assert_eq!(sent[0]["sender"]["reference"], "Practitioner/prac-j");
    assert_eq!(count(&ts, "/Communication?patient=pat-b").await, 0);
    // again: the same care is not reminded of twice within 30 days
    let (_, _, body) = post_form(&ts, &session, "/app/due/remind", &form).await;
    assert!(body.contains("Not sent (reminded of the same care in the last 30 days): Alvarez, Ana."), "{body}");
    assert_eq!(reminders().await.len(), 1);
    // every rule: the rest of what is due, the tetanus booster left out
    let all = [("csrf", csrf.as_str()), ("patient", "pat-a")];
    let (_, _, body) = post_form(&ts, &session, "/app/due/remind", &all).await;
    assert!(body.contains("Reminder sent to 1 patient"), "{body}");
    let sent = reminders().await;
    assert_eq!(sent.len(), 2);
    let newest = sent.iter().find(|c| c["reasonCode"].as_array().unwrap().len() > 1).unwrap();
    let text = newest["payload"][0]["contentString"].as_str().unwrap();
    assert!(text.contains("A blood pressure check") && !text.contains("tetanus"), "{text}");
    // nobody ticked: nothing sent
    let (_, _, body) = post_form(&ts, &session, "/app/due/remind", &[("csrf", csrf.as_str())]).await;
    assert!(body.contains("no reminder was sent"), "{body}");
    // the patient reads them in the portal
    let ana = sign_in(&ts, "/portal", "ana", PASSWORD, "").await.unwrap();
    let (_, list) = page(&ts, &ana, "/portal/messages").await;
    assert_eq!(list.matches("Reminder: care you are due for").count(), 2, "{list}");
    assert!(list.contains("new"), "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_chooses_whose_record_and_sees_only_that_one() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let c = json!({"resourceType":"Patient","id":"pat-c","name":[{"family":"Alvarez","given":["Cleo"]}],"birthDate":"2019-04-05",
        "managingOrganization":{"reference":"Organization/org-a"}});
    let cond = json!({"resourceType":"Condition","id":"cond-c","code":{"text":"Otitis media CANARY-C"},"subject":{"reference":"Patient/pat-c"},
        "clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]}});
    let mum = json!({"resourceType":"RelatedPerson","id":"rp-mum","patient":{"reference":"Patient/pat-c"},"name":[{"family":"Alvarez","given":["Maria"]}]});
    for (path, r) in [("/Patient/pat-c", &c), ("/Condition/cond-c", &cond), ("/RelatedPerson/rp-mum", &mum)] {
        assert!(ts.put(path, r).await.status().is_success());
    }
    let repo = ts.system_repository("test-setup").await;
    let proxy = NewUser {
        username: "maria".into(),
        role: "patient".into(),
        patients: vec!["pat-c".into(), "pat-a".into()],
        related_person: Some("rp-mum".into()),
        password: Some(PASSWORD.into()),
        ..NewUser::default()
    };
    add_user(&repo, proxy).await.unwrap();
    let maria = sign_in(&ts, "/portal", "maria", PASSWORD, "").await.unwrap();
    let (_, home) = page(&ts, &maria, "/portal").await;
    assert!(home.contains("Alvarez, Cleo") && home.contains("on their behalf") && home.contains("CANARY-C"), "{home}");
    assert!(!home.contains("Penicillin G"), "only the open record: {home}");
    let (_, list) = page(&ts, &maria, "/portal/choose").await;
    assert!(list.contains("Alvarez, Cleo") && list.contains("Alvarez, Ana") && !list.contains("Brown"), "{list}");
    let csrf = field(&list, "csrf").unwrap();
    // another patient's record cannot be chosen, by form or by cookie
    let r = no_redirects()
        .post(format!("{}/portal/choose", ts.base))
        .header("cookie", &maria)
        .form(&[("csrf", csrf.as_str()), ("patient", "pat-b")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let forged = format!("{maria}; hale_portal_patient=pat-b");
    let (_, home) = page(&ts, &forged, "/portal").await;
    assert!(!home.contains("Brown") && !home.contains("CANARY-B") && home.contains("Alvarez, Cleo"), "{home}");
    // choosing Ana's record opens it, and only it
    let r = no_redirects()
        .post(format!("{}/portal/choose", ts.base))
        .header("cookie", &maria)
        .form(&[("csrf", csrf.as_str()), ("patient", "pat-a")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let choice = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert_eq!(choice, "hale_portal_patient=pat-a");
    let both = format!("{maria}; {choice}");
    let (_, home) = page(&ts, &both, "/portal").await;
    assert!(home.contains("Alvarez, Ana") && home.contains("Penicillin G") && !home.contains("CANARY-C"), "{home}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_over_hl7_v2_answers_its_order_and_reaches_the_orderers_inbox() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let (_, form) = page(&ts, &session, "/app/patient/pat-a/orders/new").await;
    let csrf = field(&form, "csrf").unwrap();
    let order = [("csrf", csrf.as_str()), ("test", "2823-3"), ("priority", "routine")];
    assert_eq!(post_form(&ts, &session, "/app/patient/pat-a/orders/new", &order).await.0, 303);
    let srs = hale_test_support::json(ts.get("/ServiceRequest?patient=pat-a").await).await;
    let placer = srs["entry"][0]["resource"]["identifier"][0]["value"].as_str().unwrap().to_string();
    let (_, chart) = page(&ts, &session, "/app/patient/pat-a").await;
    assert!(chart.contains(&format!("order number {placer}")), "{chart}");
    // the laboratory answers with the placer number in OBR-2; PID names the patient its own way
    let message = format!(
        "MSH|^~\\&|LAB|NORTH|HALE|CLINIC|20261207101500+0000||ORU^R01^ORU_R01|LAB-77|P|2.5.1\r\
         PID|1||L-99^^^NORTH&9.9.9&ISO^MR||Alvarez^Ana\r\
         OBR|1|{placer}|F-1|2823-3^Potassium^LN|||20261207090000+0000||||||||||||||20261207101000+0000|||F\r\
         OBX|1|NM|2823-3^Potassium^LN||6.8|mmol/L^^UCUM|3.5-5.1|HH|||F\r"
    );
    let repo = ts.system_repository("hl7").await;
    let sent = hale_server::hl7::receive(&repo, message.as_bytes()).await;
    assert_eq!(sent.code, hale_hl7v2::AckCode::Aa, "{}", sent.summary);
    assert!(sent.summary.contains("1 matched to their order"), "{}", sent.summary);
    assert!(sent.ack.contains("MSA|AA|LAB-77"), "{}", sent.ack);
    // the order is answered, the result is about the order's patient, no stray patient
    let sr = hale_test_support::json(
        ts.get(&format!("/ServiceRequest/{}", srs["entry"][0]["resource"]["id"].as_str().unwrap())).await,
    )
    .await;
    assert_eq!(sr["status"], "completed");
    let k = hale_test_support::json(ts.get("/Observation?patient=pat-a&code=http://loinc.org|2823-3").await).await;
    assert_eq!(k["entry"][0]["resource"]["valueQuantity"]["value"].to_string(), "6.8", "{k}");
    assert_eq!(count(&ts, "/Patient?identifier=L-99").await, 0);
    // and the clinician who ordered it finds it first in the inbox, critical
    let (_, inbox) = page(&ts, &session, "/app/inbox").await;
    assert!(inbox.contains("CRITICAL: Potassium for Alvarez, Ana: Potassium 6.8 mmol/L"), "{inbox}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_the_laboratory_refuses_is_held_and_reaches_the_orderer() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let (_, form) = page(&ts, &session, "/app/patient/pat-a/orders/new").await;
    let csrf = field(&form, "csrf").unwrap();
    let order = [("csrf", csrf.as_str()), ("test", "2823-3"), ("priority", "routine")];
    assert_eq!(post_form(&ts, &session, "/app/patient/pat-a/orders/new", &order).await.0, 303);
    let srs = hale_test_support::json(ts.get("/ServiceRequest?patient=pat-a").await).await;
    let sr = srs["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    // the laboratory's AR, as the orders interface follows it
    let repo = ts.system_repository("hl7-orders").await;
    let out = hale_server::orders_out::Outgoing {
        order: sr.clone(),
        control: "HALE-C1".into(),
        message: String::new(),
        queued: "2026-12-07T09:00:00Z".into(),
        sends: 1,
    };
    hale_server::orders_out::follow(&repo, &out, "AR", "specimen <b>type</b> not supported").await.unwrap();
    // followed again (an answer after a restart): nothing added twice
    hale_server::orders_out::follow(&repo, &out, "AR", "specimen <b>type</b> not supported").await.unwrap();
    let held = hale_test_support::json(ts.get(&format!("/ServiceRequest/{sr}")).await).await;
    assert_eq!(held["status"], "on-hold");
    assert_eq!(held["note"].as_array().map(Vec::len), Some(1), "{held}");
    let (_, inbox) = page(&ts, &session, "/app/inbox").await;
    assert!(inbox.contains("The laboratory refused the order for Potassium"), "{inbox}");
    let tasks = hale_test_support::json(ts.get(&format!("/Task?focus=ServiceRequest/{sr}")).await).await;
    let task = tasks["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    let (status, review) = page(&ts, &session, &format!("/app/patient/pat-a/review/{task}")).await;
    assert_eq!(status, 200, "{review}");
    assert!(review.contains("Order refused by the laboratory"), "{review}");
    assert!(review.contains("specimen &lt;b&gt;type&lt;/b&gt; not supported"), "escaped: {review}");
    let csrf = field(&review, "csrf").unwrap();
    let (status, _, _) =
        post_form(&ts, &session, &format!("/app/patient/pat-a/review/{task}"), &[("csrf", csrf.as_str())]).await;
    assert_eq!(status, 303);
    let (_, inbox) = page(&ts, &session, "/app/inbox").await;
    assert!(!inbox.contains("The laboratory refused"), "done, it leaves the inbox: {inbox}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prescription_is_checked_for_its_dose_the_kidneys_and_a_pregnancy() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    // the latest eGFR is 24; an older one was normal
    for (id, when, v) in [("egfr-0", "2023-01-10", 75), ("egfr-1", "2026-11-02", 24)] {
        let o = json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "62238-1", "display": "eGFR CKD-EPI"}]},
            "subject": {"reference": "Patient/pat-a"}, "effectiveDateTime": when,
            "valueQuantity": {"value": v, "unit": "mL/min/{1.73_m2}"}});
        assert!(ts.put(&format!("/Observation/{id}"), &o).await.status().is_success());
    }
    let metformin = drugs_index(&ts, &session, "metformin").await;
    let (_, form) = page(&ts, &session, &format!("/app/patient/pat-a/prescribe?drug={metformin}")).await;
    assert!(form.contains("Kidney function: eGFR 24 (2026-11-02)"), "{form}");
    assert!(form.contains("Metformin is contraindicated below an eGFR of 30"), "{form}");
    assert!(form.contains("name=\"override\""), "{form}");

    // a dose above the maximum: a reason is needed, and the override is recorded as DOSEH
    let apap = drugs_index(&ts, &session, "acetaminophen%20500").await;
    let (_, form) = page(&ts, &session, &format!("/app/patient/pat-a/prescribe?drug={apap}")).await;
    assert!(!form.contains("above the maximum"), "1 tablet once a day is fine: {form}");
    let csrf = field(&form, "csrf").unwrap();
    let order = [
        ("csrf", csrf.as_str()),
        ("drug", apap.as_str()),
        ("dose", "2"),
        ("frequency", "q4h-prn"),
        ("days", "5"),
        ("quantity", "60"),
        ("refills", "0"),
    ];
    let (status, _, body) = post_form(&ts, &session, "/app/patient/pat-a/prescribe", &order).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("acetaminophen 6,000 mg a day is above the maximum of 4,000 mg a day"), "{body}");
    let mut overridden = order.to_vec();
    overridden.push(("override", "short course agreed with the patient's hepatologist"));
    let (status, _, body) = post_form(&ts, &session, "/app/patient/pat-a/prescribe", &overridden).await;
    assert_eq!(status, 303, "{body}");
    let issues = hale_test_support::json(ts.get("/DetectedIssue?patient=pat-a").await).await;
    let codes: Vec<&str> = issues["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["code"]["coding"][0]["code"].as_str())
        .collect();
    assert!(codes.contains(&"DOSEH"), "{issues}");

    // a pregnancy recorded: an ACE inhibitor is a high alert
    let preg = json!({"resourceType": "Condition", "id": "preg-a",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "77386006", "display": "Pregnancy"}]},
        "subject": {"reference": "Patient/pat-a"}});
    assert!(ts.put("/Condition/preg-a", &preg).await.status().is_success());
    let lisinopril = drugs_index(&ts, &session, "lisinopril").await;
    let (_, form) = page(&ts, &session, &format!("/app/patient/pat-a/prescribe?drug={lisinopril}")).await;
    assert!(form.contains("Pregnancy is recorded: lisinopril"), "{form}");
    assert!(form.contains("fetal toxicity"), "the source is named: {form}");
}

#[tokio::test(flavor = "multi_thread")]
async fn results_reach_the_portal_at_once_when_the_installation_says_so() {
    let ts = TestServer::spawn_with(|c| c.portal.release_results = "immediately".into()).await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let ana = sign_in(&ts, "/portal", "ana", PASSWORD, "").await.unwrap();
    let (_, before) = page(&ts, &ana, "/portal/results").await;
    assert!(!before.contains("Potassium"), "{before}");
    let (_, form) = page(&ts, &session, "/app/patient/pat-a/orders/new").await;
    let csrf = field(&form, "csrf").unwrap();
    let order = [("csrf", csrf.as_str()), ("test", "2823-3"), ("priority", "routine")];
    assert_eq!(post_form(&ts, &session, "/app/patient/pat-a/orders/new", &order).await.0, 303);
    let srs = hale_test_support::json(ts.get("/ServiceRequest?patient=pat-a").await).await;
    let sr = srs["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    let result = [("csrf", csrf.as_str()), ("2823-3", "4.2")];
    let (status, _, body) = post_form(&ts, &session, &format!("/app/patient/pat-a/order/{sr}/result"), &result).await;
    assert_eq!(status, 303, "{body}");
    let (_, mine) = page(&ts, &ana, "/portal/results").await;
    assert!(mine.contains("Potassium") && !mine.contains("waiting for your care team"), "{mine}");
    assert!(mine.contains("New since your last visit:"), "{mine}");
}

#[tokio::test(flavor = "multi_thread")]
async fn quality_measures_count_my_patients_and_name_those_to_act_on() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let today: String = hale_repository::Instant::now().to_fhir().chars().take(10).collect();
    let active =
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]});
    let sct = |c: &str| json!({"coding": [{"system": "http://snomed.info/sct", "code": c}]});
    let loinc = |c: &str| json!({"coding": [{"system": "http://loinc.org", "code": c}]});
    let resources = [
        json!({"resourceType": "Condition", "id": "dm-a", "clinicalStatus": active, "code": sct("44054006"), "subject": {"reference": "Patient/pat-a"}}),
        json!({"resourceType": "Condition", "id": "htn-a", "clinicalStatus": active, "code": sct("38341003"), "subject": {"reference": "Patient/pat-a"}}),
        json!({"resourceType": "Condition", "id": "dm-b", "clinicalStatus": active, "code": sct("44054006"), "subject": {"reference": "Patient/pat-b"}}),
        json!({"resourceType": "Observation", "id": "a1c-now", "status": "final", "code": loinc("4548-4"), "subject": {"reference": "Patient/pat-a"},
               "effectiveDateTime": today, "valueQuantity": {"value": 9.8, "unit": "%"}}),
        json!({"resourceType": "Observation", "id": "bp-now", "status": "final", "code": loinc("85354-9"), "subject": {"reference": "Patient/pat-a"},
               "effectiveDateTime": today, "component": [
                   {"code": loinc("8480-6"), "valueQuantity": {"value": 150, "unit": "mm[Hg]"}},
                   {"code": loinc("8462-4"), "valueQuantity": {"value": 95, "unit": "mm[Hg]"}}]}),
    ];
    for r in resources {
        let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        assert!(ts.put(&path, &r).await.status().is_success(), "{path}");
    }
    let (status, html) = page(&ts, &session, "/app/measures").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Diabetes: HbA1c poor control"), "{html}");
    assert!(html.contains(&format!("HbA1c 9.8% on {today}")), "{html}");
    assert!(html.contains(&format!("150/95 mmHg on {today}")), "{html}");
    assert!(html.contains("No influenza vaccine in the period"), "{html}");
    assert!(html.contains("CMS122") && html.contains("CMS347"), "the sources are named: {html}");
    assert!(html.contains("Breast cancer screening"), "{html}");
    let colorectal = section(&html, "id=\"cms130-colorectal-cancer-screening-not-met\"");
    assert!(colorectal.contains("No colorectal cancer screening within its interval"), "Ana is 45 to 75: {colorectal}");
    assert!(!html.contains("Brown"), "another practice's patient is not counted: {html}");
    // the blood pressure is in the group to act on, open
    let not_met = section(&html, "id=\"cms165-blood-pressure-control-not-met\"");
    assert!(not_met.contains("open") && not_met.contains("Alvarez"), "{not_met}");
    // a bad period is refused, with the field named, and the default shown
    let (status, bad) = page(&ts, &session, "/app/measures?start=2026-13-01").await;
    assert_eq!(status, 400);
    assert!(bad.contains("The start is not a date") && bad.contains("aria-describedby=\"m-error\""), "{bad}");
    // a period before the readings: the HbA1c of today is not in it
    let (status, old) = page(&ts, &session, "/app/measures?start=2020-01-01&end=2020-12-31").await;
    assert_eq!(status, 200);
    assert!(old.contains("No HbA1c in the period") && !old.contains("HbA1c 9.8%"), "{old}");
    // the blood pressure comes under control: the patient leaves that list
    let controlled = json!({"resourceType": "Observation", "id": "bp-now", "status": "final", "code": loinc("85354-9"),
        "subject": {"reference": "Patient/pat-a"}, "effectiveDateTime": today, "component": [
            {"code": loinc("8480-6"), "valueQuantity": {"value": 128, "unit": "mm[Hg]"}},
            {"code": loinc("8462-4"), "valueQuantity": {"value": 82, "unit": "mm[Hg]"}}]});
    assert!(ts.put("/Observation/bp-now", &controlled).await.status().is_success());
    let (_, html) = page(&ts, &session, "/app/measures").await;
    let met = section(&html, "id=\"cms165-blood-pressure-control-met\"");
    assert!(met.contains(&format!("128/82 mmHg on {today}")), "{met}");
    assert!(!section(&html, "id=\"cms165-blood-pressure-control-not-met\"").contains("Alvarez"), "{html}");
}

/// The `<details>` element of `html` that starts with `marker`, to its end.
fn section<'a>(html: &'a str, marker: &str) -> &'a str {
    let start = html.find(marker).unwrap_or_else(|| panic!("no {marker} in {html}"));
    let rest = &html[start..];
    &rest[..rest.find("</details>").unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patient_opens_their_portal_account_from_an_invitation_once() {
    use crate::smart::set_cookie;
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let (_, chart) = page(&ts, &session, "/app/patient/pat-a").await;
    assert!(chart.contains("Invite to the portal"), "{chart}");
    let csrf = field(&chart, "csrf").unwrap();
    let (status, _, invitation) =
        post_form(&ts, &session, "/app/patient/pat-a/invite", &[("csrf", csrf.as_str())]).await;
    assert_eq!(status, 200, "{invitation}");
    assert!(invitation.contains("Portal invitation for Alvarez, Ana"), "{invitation}");
    let link = invitation.split("href=\"/auth/activate?code=").nth(1).unwrap().split('"').next().unwrap().to_string();
    // without the form's cookie, or with a wrong code: nothing
    let c = no_redirects();
    let r = c.get(format!("{}/auth/activate?code=not-a-code", ts.base)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c.get(format!("{}/auth/activate?code={link}", ts.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let login = set_cookie(&r, "hale_login").unwrap();
    let form_page = r.text().await.unwrap();
    assert!(form_page.contains("for Alvarez, Ana"), "{form_page}");
    let token = field(&form_page, "login_csrf").unwrap();
    let post = async |fields: &[(&str, &str)]| {
        let mut f: Vec<(&str, &str)> = vec![("code", link.as_str()), ("login_csrf", token.as_str())];
        f.extend_from_slice(fields);
        c.post(format!("{}/auth/activate", ts.base)).header("cookie", &login).form(&f).send().await.unwrap()
    };
    let pw = "a long enough passphrase here";
    // refused, with the reason, and the invitation still good
    let r = post(&[("username", "ana.portal"), ("password", "short"), ("again", "short")]).await;
    assert_eq!(r.status(), 400);
    let r = post(&[("username", "ana.portal"), ("password", pw), ("again", "another long passphrase")]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not the same"));
    let r = post(&[("username", "ana"), ("password", pw), ("again", pw)]).await;
    assert_eq!(r.status(), 400, "the fixture's patient account is named ana");
    assert!(r.text().await.unwrap().contains("taken"));
    // made: signed in, to the portal, on the patient's own record
    let r = post(&[("username", "ana.portal"), ("password", pw), ("again", pw)]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/portal");
    let portal = set_cookie(&r, "hale_session").unwrap();
    let (status, home) = page(&ts, &portal, "/portal").await;
    assert_eq!(status, 200, "{home}");
    assert!(home.contains("Alvarez, Ana") && !home.contains("Brown"), "{home}");
    // the new account signs in with its password
    assert!(sign_in(&ts, "/portal", "ana.portal", pw, "").await.is_ok());
    // once only
    let r = post(&[("username", "ana.again"), ("password", pw), ("again", pw)]).await;
    assert_eq!(r.status(), 404);
    let r = c.get(format!("{}/auth/activate?code={link}", ts.base)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // a chart out of one's care cannot be invited to
    let (status, _, _) = post_form(&ts, &session, "/app/patient/pat-b/invite", &[("csrf", csrf.as_str())]).await;
    assert!(status == 404 || status == 403, "{status}");

    // a forgotten password: staff make a reset link for an account linked to the record
    let (status, accounts) = page(&ts, &session, "/app/patient/pat-a/portal").await;
    assert_eq!(status, 200, "{accounts}");
    assert!(accounts.contains("ana.portal"), "{accounts}");
    let reset = [("csrf", csrf.as_str()), ("account", "dr.jones")];
    let (status, _, _) = post_form(&ts, &session, "/app/patient/pat-a/portal/reset", &reset).await;
    assert_eq!(status, 404, "only an account linked to this record");
    let reset = [("csrf", csrf.as_str()), ("account", "ana.portal")];
    let (status, _, made) = post_form(&ts, &session, "/app/patient/pat-a/portal/reset", &reset).await;
    assert_eq!(status, 200, "{made}");
    let rcode = made.split("href=\"/auth/reset?code=").nth(1).unwrap().split('"').next().unwrap().to_string();
    let r = c.get(format!("{}/auth/reset?code={rcode}", ts.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let login = set_cookie(&r, "hale_login").unwrap();
    let token = field(&r.text().await.unwrap(), "login_csrf").unwrap();
    let send = async |pw: &str, again: &str| {
        let f = [("code", rcode.as_str()), ("login_csrf", token.as_str()), ("password", pw), ("again", again)];
        c.post(format!("{}/auth/reset", ts.base)).header("cookie", &login).form(&f).send().await.unwrap()
    };
    let new_pw = "a fresh and long passphrase";
    assert_eq!(send(new_pw, "something else entirely").await.status(), 400);
    let r = send(new_pw, new_pw).await;
    assert_eq!(r.status(), 303);
    assert_eq!(crate::smart::location(&r), "/portal");
    assert!(sign_in(&ts, "/portal", "ana.portal", new_pw, "").await.is_ok());
    assert!(sign_in(&ts, "/portal", "ana.portal", pw, "").await.is_err(), "the old password is gone");
    assert_eq!(send(new_pw, new_pw).await.status(), 404, "once only");
}

/// The index of the first drug found for `q`.
async fn drugs_index(ts: &TestServer, session: &str, q: &str) -> String {
    let (_, found) = page(ts, session, &format!("/app/patient/pat-a/prescribe?q={q}")).await;
    found.split("/app/patient/pat-a/prescribe?drug=").nth(1).unwrap().split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_portal_works_in_a_real_browser() {
    if !browser_available("the_portal_works_in_a_real_browser") {
        return;
    }
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    use base64::Engine;
    let png = include_bytes!("../fixtures/chest-xray-synthetic.png");
    for r in [
        json!({"resourceType":"Binary","id":"img-a","contentType":"image/png","securityContext":{"reference":"Patient/pat-a"},
               "data": base64::engine::general_purpose::STANDARD.encode(png)}),
        json!({"resourceType":"DiagnosticReport","id":"rad-a","status":"final","subject":{"reference":"Patient/pat-a"},"effectiveDateTime":"2025-05-01",
               "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"RAD"}]}],
               "code":{"text":"Chest X-ray"},"conclusion":"No consolidation. Heart size normal.",
               "presentedForm":[{"contentType":"image/png","url":"Binary/img-a","title":"PA view"}]}),
    ] {
        let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        assert!(ts.put(&path, &r).await.status().is_success(), "{path}");
    }
    let shots = root().join("target/browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/browser/portal.mjs"))
        .args([ts.base.as_str(), "ana", PASSWORD])
        .arg(&shots)
        .current_dir(root())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for f in [
        "portal-record-laptop.png",
        "portal-record-phone.png",
        "portal-results-phone.png",
        "portal-access-laptop.png",
        "portal-documents-laptop.png",
        "portal-summary-print.png",
        "portal-summary-phone.png",
    ] {
        assert!(shots.join(f).metadata().unwrap().len() > 1000, "{f}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_works_in_a_real_browser() {
    if !browser_available("the_chart_works_in_a_real_browser") {
        return;
    }
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    child_fixture(&ts).await;
    // an imaging report whose picture is a Binary governed by the patient
    use base64::Engine;
    let png = include_bytes!("../fixtures/chest-xray-synthetic.png");
    for r in [
        json!({"resourceType":"Binary","id":"img-a","contentType":"image/png","securityContext":{"reference":"Patient/pat-a"},
               "data": base64::engine::general_purpose::STANDARD.encode(png)}),
        json!({"resourceType":"DiagnosticReport","id":"rad-a","status":"final","subject":{"reference":"Patient/pat-a"},"effectiveDateTime":"2025-05-01",
               "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"RAD"}]}],
               "code":{"text":"Chest X-ray"},"conclusion":"No consolidation. Heart size normal.",
               "performer":[{"display":"Dr Ray Diaz, radiologist"}],
               "presentedForm":[{"contentType":"image/png","url":"Binary/img-a","title":"PA view"}]}),
    ] {
        let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        assert!(ts.put(&path, &r).await.status().is_success(), "{path}");
    }
    let code = enrolled(&ts, "dr.jones").await;
    let shots = root().join("target/browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/browser/chart.mjs"))
        .args([ts.base.as_str(), "dr.jones", PASSWORD, code.as_str()])
        .arg(&shots)
        .current_dir(root())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert!(result["checks"].as_array().unwrap().len() >= 20, "{result}");
    for f in [
        "app-find-laptop.png",
        "app-chart-laptop.png",
        "app-find-phone.png",
        "app-chart-phone.png",
        "app-documents-laptop.png",
        "app-report-laptop.png",
        "app-document-added-laptop.png",
        "app-documents-phone.png",
        "app-measures-laptop.png",
        "app-measures-phone.png",
    ] {
        assert!(shots.join(f).metadata().unwrap().len() > 1000, "{f}");
    }
}

/// A `multipart/form-data` body with text fields and one file, as a browser sends it.
fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "----hale-test-boundary-7d1f";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    if let Some((name, bytes)) = file {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_and_reports_are_read_with_their_attachments_and_added_from_a_file() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let ts = TestServer::spawn_with(|c| c.limits.max_binary_bytes = 256 * 1024).await;
    chart_fixture(&ts).await;
    let png: Vec<u8> = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R'];
    let note = format!("Seen for cough.\n{XSS}\nPlan: rest.");
    let a = |r: &str| json!({"reference": r});
    for r in [
        json!({"resourceType":"DocumentReference","id":"doc-a","status":"current","type":{"text":"Consult note"},"subject":a("Patient/pat-a"),
               "date":"2025-06-01T10:00:00Z","description":"Cardiology letter","author":[{"reference":"Practitioner/prac-j","display":"Dr Jo Jones"}],
               "content":[{"attachment":{"contentType":"text/plain","data":b64(note.as_bytes()),"title":"Letter"}}]}),
        json!({"resourceType":"Binary","id":"img-a","contentType":"image/png","securityContext":a("Patient/pat-a"),"data":b64(&png)}),
        json!({"resourceType":"DiagnosticReport","id":"rad-a","status":"final","subject":a("Patient/pat-a"),"effectiveDateTime":"2025-05-01",
               "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"RAD"}]}],
               "code":{"text":"Chest X-ray"},"conclusion":"No consolidation.",
               "presentedForm":[{"contentType":"image/png","url":"Binary/img-a","title":"PA view"}]}),
        json!({"resourceType":"DiagnosticReport","id":"lab-a","status":"final","subject":a("Patient/pat-a"),"effectiveDateTime":"2025-05-02",
               "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"LAB"}]}],"code":{"text":"Lipid panel"}}),
        json!({"resourceType":"DocumentReference","id":"doc-b","status":"current","subject":a("Patient/pat-b"),"description":"CANARY-B letter",
               "content":[{"attachment":{"contentType":"text/plain","data":b64(b"CANARY-B text")}}]}),
        // a report of A that names B's image: not served from A's chart
        json!({"resourceType":"Binary","id":"img-b","contentType":"image/png","securityContext":a("Patient/pat-b"),"data":b64(&png)}),
        json!({"resourceType":"DiagnosticReport","id":"rad-x","status":"final","subject":a("Patient/pat-a"),"code":{"text":"Misfiled"},
               "presentedForm":[{"contentType":"image/png","url":"Binary/img-b"}]}),
    ] {
        let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        assert!(ts.put(&path, &r).await.status().is_success(), "{path}");
    }
    let code = enrolled(&ts, "dr.jones").await;
    let session = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();

    let (status, list) = page(&ts, &session, "/app/patient/pat-a/documents").await;
    assert_eq!(status, 200, "{list}");
    assert!(list.contains("Cardiology letter") && list.contains("Chest X-ray"), "{list}");
    assert!(!list.contains("Lipid panel") && list.contains("1 laboratory report is"), "{list}");
    assert!(!list.contains("CANARY"), "{list}");
    // the letter's text in the page, escaped
    let (status, doc) = page(&ts, &session, "/app/patient/pat-a/document/DocumentReference/doc-a").await;
    assert_eq!(status, 200, "{doc}");
    assert!(
        doc.contains("Seen for cough.") && doc.contains("&lt;script&gt;") && !doc.contains("<script>window"),
        "{doc}"
    );
    // the image shown from the Binary the report names, sandboxed
    let (status, rad) = page(&ts, &session, "/app/patient/pat-a/document/DiagnosticReport/rad-a").await;
    assert_eq!(status, 200);
    assert!(
        rad.contains("No consolidation.")
            && rad.contains(
                "<img class=\"attachment\" src=\"/app/patient/pat-a/document/DiagnosticReport/rad-a/attachment/0\""
            ),
        "{rad}"
    );
    let r = no_redirects()
        .get(format!("{}/app/patient/pat-a/document/DiagnosticReport/rad-a/attachment/0", ts.base))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("sandbox"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().to_vec(), png);
    // nothing of B through A's chart, nor B's chart at all
    for path in [
        "/app/patient/pat-a/document/DocumentReference/doc-b",
        "/app/patient/pat-a/document/DocumentReference/doc-b/attachment/0",
        "/app/patient/pat-a/document/DiagnosticReport/rad-x/attachment/0",
        "/app/patient/pat-a/document/Patient/pat-a",
        "/app/patient/pat-a/document/DiagnosticReport/rad-a/attachment/9",
        "/app/patient/pat-a/document/DiagnosticReport/rad-a/attachment/x",
        "/app/patient/pat-b/documents",
    ] {
        let (status, body) = page(&ts, &session, path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("CANARY"), "{path}");
    }
    // the reads are audited
    let mut audited = false;
    for _ in 0..50 {
        let trail = hale_test_support::json(ts.get("/AuditEvent?patient=Patient/pat-a&_count=500").await).await;
        audited = trail["entry"].as_array().unwrap().iter().any(|e| {
            e["resource"]["agent"][0]["who"]["identifier"]["value"] == "dr.jones"
                && e["resource"]["entity"].to_string().contains("Binary/img-a")
        });
        if audited {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(audited, "the user's read of the image is in the audit trail");

    // a document added from a file: a Binary governed by the patient, and its DocumentReference
    let (_, form) = page(&ts, &session, "/app/patient/pat-a/documents/new").await;
    let csrf = field(&form, "csrf").unwrap();
    let pdf = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n".to_vec();
    let post = |ct: String, body: Vec<u8>| {
        no_redirects()
            .post(format!("{}/app/patient/pat-a/documents/new", ts.base))
            .header("cookie", &session)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let docs_before = count(&ts, "/DocumentReference?patient=pat-a").await;
    let (ct, body) = multipart(
        &[("csrf", &csrf), ("title", "Discharge letter, St Elsewhere"), ("kind", "18842-5")],
        Some(("discharge.pdf", &pdf)),
    );
    let r = post(ct, body).await.unwrap();
    assert_eq!(r.status(), 303);
    let to = location(&r);
    assert!(to.starts_with("/app/patient/pat-a/document/DocumentReference/"), "{to}");
    let (status, shown) = page(&ts, &session, &to).await;
    assert_eq!(status, 200);
    assert!(
        shown.contains("Discharge letter, St Elsewhere")
            && shown.contains("Open the PDF")
            && shown.contains("Discharge summary"),
        "{shown}"
    );
    let r =
        no_redirects().get(format!("{}{to}/attachment/0", ts.base)).header("cookie", &session).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert_eq!(r.bytes().await.unwrap().to_vec(), pdf);
    let doc_id = to.rsplit('/').next().unwrap();
    let stored = hale_test_support::json(ts.get(&format!("/DocumentReference/{doc_id}")).await).await;
    let url = stored["content"][0]["attachment"]["url"].as_str().unwrap();
    assert_eq!(stored["content"][0]["attachment"]["size"], pdf.len());
    assert_eq!(stored["author"][0]["reference"], "Practitioner/prac-j");
    let binary = hale_test_support::json(ts.get(&format!("/{url}?_format=json")).await).await;
    assert_eq!(binary["securityContext"]["reference"], "Patient/pat-a");
    assert_eq!(binary["contentType"], "application/pdf");
    assert_eq!(count(&ts, "/DocumentReference?patient=pat-a").await, docs_before + 1);

    // refused, with a readable message, and nothing kept: a file that is none of the kept
    // types, a file over the limit, no title, a stale form
    let binaries = count(&ts, "/Binary?").await;
    let big = [b"%PDF-1.4\n".to_vec(), vec![b' '; 256 * 1024]].concat();
    for (fields, file, status, says) in [
        (
            vec![("csrf", csrf.as_str()), ("title", "Tool"), ("kind", "18842-5")],
            ("tool.exe", b"MZ\x90\0\x03\0\0\0".to_vec()),
            400,
            "not a PDF",
        ),
        (
            vec![("csrf", csrf.as_str()), ("title", "Huge"), ("kind", "18842-5")],
            ("big.pdf", big),
            400,
            "larger than the limit",
        ),
        (
            vec![("csrf", csrf.as_str()), ("title", " "), ("kind", "18842-5")],
            ("a.pdf", pdf.clone()),
            400,
            "give the document a title",
        ),
        (
            vec![("csrf", csrf.as_str()), ("title", "X"), ("kind", "nope")],
            ("a.pdf", pdf.clone()),
            400,
            "choose the kind",
        ),
        (vec![("csrf", "forged"), ("title", "X"), ("kind", "18842-5")], ("a.pdf", pdf.clone()), 403, "form expired"),
    ] {
        let (ct, body) = multipart(&fields, Some((file.0, &file.1)));
        let r = post(ct, body).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{}", file.0);
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{}: {text}", file.0);
    }
    assert_eq!(count(&ts, "/DocumentReference?patient=pat-a").await, docs_before + 1);
    assert_eq!(count(&ts, "/Binary?").await, binaries);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_portal_shows_documents_and_a_health_summary_to_print_or_take_away() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let png = include_bytes!("../fixtures/chest-xray-synthetic.png");
    let a = |r: &str| json!({"reference": r});
    for r in [
        json!({"resourceType":"DocumentReference","id":"pd-letter","status":"current","docStatus":"final","subject":a("Patient/pat-a"),
               "date":"2025-06-01T10:00:00Z","description":"Letter after your visit","author":[{"display":"Dr Jo Jones"}],
               "content":[{"attachment":{"contentType":"text/plain","data":b64(format!("Dear Ana,\n{XSS}\nAll the best.").as_bytes())}}]}),
        json!({"resourceType":"DocumentReference","id":"pd-draft","status":"current","docStatus":"preliminary","subject":a("Patient/pat-a"),
               "description":"DRAFT not for the patient","content":[{"attachment":{"contentType":"text/plain","data":b64(b"draft")}}]}),
        json!({"resourceType":"Binary","id":"pd-img","contentType":"image/png","securityContext":a("Patient/pat-a"),"data":b64(png)}),
        json!({"resourceType":"DiagnosticReport","id":"pd-rad","status":"final","subject":a("Patient/pat-a"),"effectiveDateTime":"2025-05-01",
               "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"RAD"}]}],"code":{"text":"Chest X-ray"},
               "conclusion":"No consolidation.","presentedForm":[{"contentType":"image/png","url":"Binary/pd-img","title":"Picture"}]}),
        json!({"resourceType":"DocumentReference","id":"pd-b","status":"current","subject":a("Patient/pat-b"),"description":"CANARY-B letter",
               "content":[{"attachment":{"contentType":"text/plain","data":b64(b"CANARY-B")}}]}),
        // visit notes: shown once signed
        json!({"resourceType":"Composition","id":"pd-note","status":"final","type":{"text":"Progress note"},"subject":a("Patient/pat-a"),
               "date":"2025-06-01T10:00:00Z","author":[{"display":"Dr Jo Jones"}],"title":"Visit note, check-up",
               "section":[{"title":"Plan","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Walk daily &amp; &lt;rest&gt;.</div>"}}]}),
        json!({"resourceType":"Composition","id":"pd-draft-note","status":"preliminary","type":{"text":"Progress note"},"subject":a("Patient/pat-a"),
               "date":"2025-06-02T10:00:00Z","author":[{"display":"Dr Jo Jones"}],"title":"UNSIGNED note",
               "section":[{"title":"Plan","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">draft</div>"}}]}),
    ] {
        let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        assert!(ts.put(&path, &r).await.status().is_success(), "{path}");
    }
    let ana = sign_in(&ts, "/portal", "ana", PASSWORD, "").await.unwrap();
    let (status, list) = page(&ts, &ana, "/portal/documents").await;
    assert_eq!(status, 200, "{list}");
    assert!(list.contains("Letter after your visit") && list.contains("Chest X-ray"), "{list}");
    assert!(!list.contains("DRAFT") && !list.contains("CANARY"), "{list}");
    assert!(list.contains("Visit note, check-up") && !list.contains("UNSIGNED"), "signed notes only: {list}");
    let (status, note) = page(&ts, &ana, "/portal/document/Composition/pd-note").await;
    assert_eq!(status, 200);
    assert!(note.contains("Walk daily &amp; &lt;rest&gt;."), "{note}");
    assert_eq!(page(&ts, &ana, "/portal/document/Composition/pd-draft-note").await.0, 404);
    let (status, letter) = page(&ts, &ana, "/portal/document/DocumentReference/pd-letter").await;
    assert_eq!(status, 200);
    assert!(
        letter.contains("Dear Ana,") && letter.contains("&lt;script&gt;") && !letter.contains("<script>window"),
        "{letter}"
    );
    let r = no_redirects()
        .get(format!("{}/portal/document/DiagnosticReport/pd-rad/attachment/0", ts.base))
        .header("cookie", &ana)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap().to_vec(), png.to_vec());
    for path in [
        "/portal/document/DocumentReference/pd-draft",
        "/portal/document/DocumentReference/pd-b",
        "/portal/document/DocumentReference/pd-b/attachment/0",
        "/portal/document/Patient/pat-a",
    ] {
        let (status, body) = page(&ts, &ana, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("CANARY"), "{path}");
    }
    // the health summary: a page to print, and the IPS document to take elsewhere
    let (status, summary) = page(&ts, &ana, "/portal/summary").await;
    assert_eq!(status, 200);
    for expected in [
        "Health summary",
        "Alvarez, Ana",
        "Penicillin G",
        "Salbutamol 100 mcg inhaler",
        "Influenza vaccine",
        "Hemoglobin A1c",
    ] {
        assert!(summary.contains(expected), "{expected}: {summary}");
    }
    assert!(
        !summary.contains("CANARY") && summary.contains("&lt;script&gt;") && !summary.contains("<script>window"),
        "{summary}"
    );
    let r =
        no_redirects().get(format!("{}/portal/download/summary", ts.base)).header("cookie", &ana).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/fhir+json");
    assert!(r.headers()["content-disposition"].to_str().unwrap().contains("my-health-summary.json"));
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["type"], "document");
    assert_eq!(doc["entry"][0]["resource"]["type"]["coding"][0]["code"], "60591-5");
    assert_eq!(doc["entry"][1]["resource"]["id"], "pat-a");
    assert!(doc["entry"][1]["fullUrl"].as_str().unwrap().ends_with("/fhir/Patient/pat-a"));
    assert!(!doc.to_string().contains("CANARY"));
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_carry_files_both_ways_typed_by_their_content() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let png = include_bytes!("../fixtures/chest-xray-synthetic.png").to_vec();
    let ana = sign_in(&ts, "/portal", "ana", PASSWORD, "").await.unwrap();
    let (_, list) = page(&ts, &ana, "/portal/messages").await;
    assert!(list.contains("enctype=\"multipart/form-data\"") && list.contains("type=\"file\""), "{list}");
    let csrf = field(&list, "csrf").unwrap();
    let post = |path: String, session: String, ct: String, body: Vec<u8>| {
        no_redirects()
            .post(format!("{}{path}", ts.base))
            .header("cookie", session)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    // a picture of a rash, with no text: sent, the Binary held to the patient
    let (ct, body) =
        multipart(&[("csrf", &csrf), ("topic", "A rash on my arm"), ("text", "")], Some(("rash.png", &png)));
    let r = post("/portal/messages".into(), ana.clone(), ct, body).await.unwrap();
    let status = r.status();
    let to = location(&r);
    assert_eq!(status, 303, "{}", r.text().await.unwrap());
    let thread = to.rsplit('/').next().unwrap().to_string();
    let c = hale_test_support::json(ts.get(&format!("/Communication/{thread}")).await).await;
    let att = &c["payload"][0]["contentAttachment"];
    assert_eq!(att["contentType"], "image/png");
    assert_eq!(att["title"], "rash.png");
    let binary = att["url"].as_str().unwrap().to_string();
    assert!(binary.starts_with("Binary/"), "{binary}");
    let b = hale_test_support::json(ts.get(&format!("/{binary}?_format=json")).await).await;
    assert_eq!(b["securityContext"]["reference"], "Patient/pat-a");

    // the clinician sees it in the conversation and opens it
    let code = enrolled(&ts, "dr.jones").await;
    let staff = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    let path = format!("/app/patient/pat-a/messages/{thread}");
    let (_, conv) = page(&ts, &staff, &path).await;
    let file = format!("{path}/attachment/{thread}/0");
    assert!(conv.contains(&format!("src=\"{file}\"")) && conv.contains("rash.png"), "{conv}");
    let r = no_redirects().get(format!("{}{file}", ts.base)).header("cookie", &staff).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("sandbox"));
    assert_eq!(r.bytes().await.unwrap().to_vec(), png);
    // and answers with a leaflet
    let staff_csrf = field(&conv, "csrf").unwrap();
    let leaflet = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n".to_vec();
    let (ct, body) = multipart(
        &[("csrf", &staff_csrf), ("text", "Use this cream; leaflet attached.")],
        Some(("eczema.pdf", &leaflet)),
    );
    assert_eq!(post(path.clone(), staff.clone(), ct, body).await.unwrap().status(), 303);
    let (_, mine) = page(&ts, &ana, &format!("/portal/messages/{thread}")).await;
    assert!(mine.contains("Use this cream; leaflet attached.") && mine.contains("eczema.pdf"), "{mine}");
    let replies = hale_test_support::json(ts.get("/Communication?patient=pat-a&_sort=-sent").await).await;
    let reply_id = replies["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["payload"].to_string().contains("eczema.pdf"))
        .and_then(|e| e["resource"]["id"].as_str())
        .unwrap()
        .to_string();
    let r = no_redirects()
        .get(format!("{}/portal/messages/{thread}/attachment/{reply_id}/0", ts.base))
        .header("cookie", &ana)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert_eq!(r.bytes().await.unwrap().to_vec(), leaflet);

    // refused and nothing kept: a file of a kind not kept, a file over the limit
    let before = (count(&ts, "/Communication?patient=pat-a").await, count(&ts, "/Binary?").await);
    let (ct, body) = multipart(&[("csrf", &csrf), ("text", "see attached")], Some(("tool.exe", b"MZ\x90\0\x03\0")));
    let r = post(format!("/portal/messages/{thread}"), ana.clone(), ct, body).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("the file is not a PDF"));
    let big = [b"%PDF-1.4\n".to_vec(), vec![b' '; 10 * 1024 * 1024]].concat();
    let (ct, body) = multipart(&[("csrf", &csrf), ("topic", "Scan"), ("text", "big")], Some(("big.pdf", &big)));
    let r = post("/portal/messages".into(), ana.clone(), ct, body).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("larger than the limit of 10 MB"));
    assert_eq!((count(&ts, "/Communication?patient=pat-a").await, count(&ts, "/Binary?").await), before);
    // nobody else's files
    for p in [
        format!("/portal/messages/{thread}/attachment/{thread}/1"),
        format!("/portal/messages/no-such/attachment/{thread}/0"),
    ] {
        assert_eq!(page(&ts, &ana, &p).await.0, 404, "{p}");
    }
    assert_eq!(page(&ts, &staff, &format!("/app/patient/pat-b/messages/{thread}/attachment/{thread}/0")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patient_shares_their_record_with_another_organization_and_takes_it_back() {
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let repo = ts.system_repository("test-setup").await;
    add_user(
        &repo,
        NewUser {
            username: "dr.b".into(),
            role: "clinician".into(),
            organization: Some("org-b".into()),
            password: Some(PASSWORD.into()),
            ..NewUser::default()
        },
    )
    .await
    .unwrap();
    let code = enrolled(&ts, "dr.b").await;
    let dr_b = sign_in(&ts, "/app", "dr.b", PASSWORD, &code).await.unwrap();
    let code = enrolled(&ts, "dr.jones").await;
    let dr_a = sign_in(&ts, "/app", "dr.jones", PASSWORD, &code).await.unwrap();
    assert_eq!(page(&ts, &dr_b, "/app/patient/pat-a").await.0, 404, "Clinic B does not see Ana's record");

    let ana = sign_in(&ts, "/portal", "ana", PASSWORD, "").await.unwrap();
    let (status, sharing) = page(&ts, &ana, "/portal/sharing").await;
    assert_eq!(status, 200, "{sharing}");
    assert!(sharing.contains("Clinic A") && sharing.contains("your care team"), "{sharing}");
    let csrf = field(&sharing, "csrf").unwrap();
    let consents = || count(&ts, "/Consent?patient=pat-a");
    // refused, nothing made: a stale form, no decision, an organization not in the directory
    assert_eq!(
        post_form(&ts, &ana, "/portal/sharing", &[("csrf", "x"), ("org", "org-b"), ("decision", "permit")]).await.0,
        403
    );
    let (status, _, body) = post_form(&ts, &ana, "/portal/sharing", &[("csrf", &csrf), ("org", "org-b")]).await;
    assert_eq!(status, 400);
    assert!(body.contains("choose to allow or to say no"), "{body}");
    let (status, _, body) =
        post_form(&ts, &ana, "/portal/sharing", &[("csrf", &csrf), ("org", "no-such-org"), ("decision", "permit")])
            .await;
    assert_eq!(status, 400);
    assert!(body.contains("choose an organization from the list"), "{body}");
    assert_eq!(consents().await, 0);

    // allowed: Clinic B's clinician opens the chart
    let (status, to, _) =
        post_form(&ts, &ana, "/portal/sharing", &[("csrf", &csrf), ("org", "org-b"), ("decision", "permit")]).await;
    assert_eq!((status, to.as_str()), (303, "/portal/sharing"));
    let (_, sharing) = page(&ts, &ana, "/portal/sharing").await;
    assert!(sharing.contains("Clinic B") && sharing.contains("you allowed them"), "{sharing}");
    assert_eq!(page(&ts, &dr_b, "/app/patient/pat-a").await.0, 200, "shared with Clinic B");
    // withdrawn: closed again
    let permit = field(&sharing, "withdraw").unwrap();
    let (status, _, _) = post_form(&ts, &ana, "/portal/sharing", &[("csrf", &csrf), ("withdraw", &permit)]).await;
    assert_eq!(status, 303);
    assert_eq!(page(&ts, &dr_b, "/app/patient/pat-a").await.0, 404, "withdrawn");
    let c = hale_test_support::json(ts.get(&format!("/Consent/{permit}")).await).await;
    assert_eq!(c["status"], "inactive");
    // a denial wins, even over the managing organization, until withdrawn
    post_form(&ts, &ana, "/portal/sharing", &[("csrf", &csrf), ("org", "org-a"), ("decision", "deny")]).await;
    assert_eq!(page(&ts, &dr_a, "/app/patient/pat-a").await.0, 404, "Ana said no to Clinic A");
    let (_, sharing) = page(&ts, &ana, "/portal/sharing").await;
    assert!(sharing.contains("you said no"), "{sharing}");
    let deny = field(&sharing, "withdraw").unwrap();
    post_form(&ts, &ana, "/portal/sharing", &[("csrf", &csrf), ("withdraw", &deny)]).await;
    assert_eq!(page(&ts, &dr_a, "/app/patient/pat-a").await.0, 200, "allowed again");
    // nobody else's decision can be withdrawn from here
    let other = ts
        .post(
            "/Consent",
            &json!({"resourceType":"Consent","status":"active","scope":{"text":"patient-privacy"},"policyRule":{"text":"opt-in"},"category":[{"text":"x"}],
                    "patient":{"reference":"Patient/pat-b"},"provision":{"type":"permit","actor":[{"role":{"text":"r"},"reference":{"reference":"Organization/org-a"}}]}}),
        )
        .await;
    let other_id = hale_test_support::json(other).await["id"].as_str().unwrap().to_string();
    assert_eq!(post_form(&ts, &ana, "/portal/sharing", &[("csrf", &csrf), ("withdraw", &other_id)]).await.0, 404);
    let c = hale_test_support::json(ts.get(&format!("/Consent/{other_id}")).await).await;
    assert_eq!(c["status"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_reach_the_portal_by_the_rule_of_their_category() {
    // laboratory results at once; imaging reports once reviewed
    let ts = TestServer::spawn_with(|c| {
        c.portal.release_results = "immediately".into();
        c.portal.release_by_category.insert("rad".into(), "after_review".into());
    })
    .await;
    chart_fixture(&ts).await;
    let a = |r: &str| json!({"reference": r});
    let open_task = |id: &str, focus: &str| {
        json!({"resourceType":"Task","id":id,"status":"requested","intent":"order","code":{"text":"Review the result"},
               "focus":a(focus),"for":a("Patient/pat-a"),"owner":a("Practitioner/prac-j")})
    };
    for r in [
        json!({"resourceType":"DiagnosticReport","id":"cat-rad","status":"final","subject":a("Patient/pat-a"),"effectiveDateTime":"2025-05-01",
               "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"RAD"}]}],
               "code":{"text":"Knee MRI"},"conclusion":"Meniscal tear."}),
        json!({"resourceType":"Observation","id":"cat-k","status":"final",
               "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
               "code":{"coding":[{"system":"http://loinc.org","code":"2823-3","display":"Potassium"}]},"subject":a("Patient/pat-a"),
               "effectiveDateTime":"2025-05-02","valueQuantity":{"value":4.1,"unit":"mmol/L"}}),
        json!({"resourceType":"DiagnosticReport","id":"cat-lab","status":"final","subject":a("Patient/pat-a"),"effectiveDateTime":"2025-05-02",
               "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"LAB"}]}],
               "code":{"text":"Potassium"},"result":[a("Observation/cat-k")]}),
        open_task("cat-t-rad", "DiagnosticReport/cat-rad"),
        open_task("cat-t-lab", "DiagnosticReport/cat-lab"),
    ] {
        let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        assert!(ts.put(&path, &r).await.status().is_success(), "{path}");
    }
    let ana = sign_in(&ts, "/portal", "ana", PASSWORD, "").await.unwrap();
    // the laboratory result shows though its review is open; the imaging report waits
    let (_, results) = page(&ts, &ana, "/portal/results").await;
    assert!(results.contains("Potassium") && !results.contains("waiting for your care team"), "{results}");
    let (_, docs) = page(&ts, &ana, "/portal/documents").await;
    assert!(!docs.contains("Knee MRI"), "{docs}");
    assert_eq!(page(&ts, &ana, "/portal/document/DiagnosticReport/cat-rad").await.0, 404);
    // reviewed: released
    let mut done = hale_test_support::json(ts.get("/Task/cat-t-rad").await).await;
    done["status"] = json!("completed");
    assert!(ts.put("/Task/cat-t-rad", &done).await.status().is_success());
    let (_, docs) = page(&ts, &ana, "/portal/documents").await;
    assert!(docs.contains("Knee MRI"), "{docs}");
    assert_eq!(page(&ts, &ana, "/portal/document/DiagnosticReport/cat-rad").await.0, 200);
    // a rule that is neither is a configuration error
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("hale.toml");
    std::fs::write(&toml, "[portal.release_by_category]\nRAD = \"sometimes\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hale"))
        .arg("config")
        .arg("--config")
        .arg(&toml)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("release_by_category"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The security suite's rule over the portal: a patient never sees a byte of another
/// patient's record on any portal page or download, nor by naming its ids.
#[tokio::test(flavor = "multi_thread")]
async fn no_portal_page_or_download_shows_another_patients_record() {
    use base64::Engine;
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    let a = |r: &str| json!({"reference": r});
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let canaries = [
        json!({"resourceType":"Condition","id":"cb-cond","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},
               "code":{"text":"CANARY-B condition"},"subject":a("Patient/pat-b")}),
        json!({"resourceType":"MedicationRequest","id":"cb-med","status":"active","intent":"order","medicationCodeableConcept":{"text":"CANARY-B medicine"},"subject":a("Patient/pat-b")}),
        json!({"resourceType":"Immunization","id":"cb-imm","status":"completed","vaccineCode":{"text":"CANARY-B vaccine"},"patient":a("Patient/pat-b"),"occurrenceDateTime":"2024-01-01"}),
        json!({"resourceType":"DocumentReference","id":"cb-doc","status":"current","subject":a("Patient/pat-b"),"description":"CANARY-B letter",
               "content":[{"attachment":{"contentType":"text/plain","data":b64("CANARY-B text")}}]}),
        json!({"resourceType":"Binary","id":"cb-bin","contentType":"text/plain","securityContext":a("Patient/pat-b"),"data":b64("CANARY-B binary")}),
        json!({"resourceType":"DiagnosticReport","id":"cb-rad","status":"final","subject":a("Patient/pat-b"),"code":{"text":"CANARY-B report"},
               "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"RAD"}]}],
               "presentedForm":[{"contentType":"text/plain","url":"Binary/cb-bin"}]}),
        // A's own report naming B's content: not served through A's record
        json!({"resourceType":"DiagnosticReport","id":"ca-misfiled","status":"final","subject":a("Patient/pat-a"),"code":{"text":"Misfiled"},
               "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"RAD"}]}],
               "presentedForm":[{"contentType":"text/plain","url":"Binary/cb-bin"}]}),
        json!({"resourceType":"Communication","id":"cb-msg","status":"completed","subject":a("Patient/pat-b"),"sent":"2025-01-01T00:00:00Z",
               "topic":{"text":"CANARY-B topic"},"payload":[{"contentString":"CANARY-B message"},{"contentAttachment":{"contentType":"text/plain","url":"Binary/cb-bin"}}]}),
        json!({"resourceType":"Consent","id":"cb-consent","status":"active","scope":{"text":"patient-privacy"},"policyRule":{"text":"opt-in"},"category":[{"text":"CANARY-B consent"}],
               "patient":a("Patient/pat-b"),"provision":{"type":"permit","actor":[{"role":{"text":"r"},"reference":{"reference":"Organization/org-a"}}]}}),
        json!({"resourceType":"Task","id":"cb-task","status":"requested","intent":"order","description":"CANARY-B request","for":a("Patient/pat-b"),"focus":a("DiagnosticReport/cb-rad")}),
    ];
    for r in canaries {
        let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        assert!(ts.put(&path, &r).await.status().is_success(), "{path}");
    }
    // Ana, and a parent who is proxy of a child's record and of Ana's
    for (path, r) in [
        (
            "/Patient/pat-c",
            json!({"resourceType":"Patient","id":"pat-c","name":[{"family":"Alvarez","given":["Cleo"]}],"managingOrganization":{"reference":"Organization/org-a"}}),
        ),
        (
            "/RelatedPerson/rp-mum",
            json!({"resourceType":"RelatedPerson","id":"rp-mum","patient":{"reference":"Patient/pat-c"}}),
        ),
    ] {
        assert!(ts.put(path, &r).await.status().is_success());
    }
    let repo = ts.system_repository("test-setup").await;
    let proxy = NewUser {
        username: "maria".into(),
        role: "patient".into(),
        patients: vec!["pat-c".into(), "pat-a".into()],
        related_person: Some("rp-mum".into()),
        password: Some(PASSWORD.into()),
        ..NewUser::default()
    };
    add_user(&repo, proxy).await.unwrap();
    let maria = sign_in(&ts, "/portal", "maria", PASSWORD, "").await.unwrap();
    let ana = sign_in(&ts, "/portal", "ana", PASSWORD, "").await.unwrap();
    for who in [ana.clone(), maria.clone(), format!("{maria}; hale_portal_patient=pat-b")] {
        let get = |path: String| {
            let who = who.clone();
            let base = ts.base.clone();
            async move {
                let r = no_redirects().get(format!("{base}{path}")).header("cookie", who).send().await.unwrap();
                let status = r.status().as_u16();
                (status, String::from_utf8_lossy(&r.bytes().await.unwrap()).to_string())
            }
        };
        // every page and download of the portal
        for path in [
            "/portal",
            "/portal/results",
            "/portal/documents",
            "/portal/summary",
            "/portal/download",
            "/portal/download/summary",
            "/portal/messages",
            "/portal/access",
            "/portal/sharing",
            "/portal/apps",
            "/portal/choose",
        ] {
            let (status, body) = get(path.to_string()).await;
            assert!(status == 200 || status == 303, "{path}: {status}");
            assert!(!body.contains("CANARY"), "{path} shows another patient's data");
        }
        // B's ids named directly
        for path in [
            "/portal/document/DocumentReference/cb-doc",
            "/portal/document/DocumentReference/cb-doc/attachment/0",
            "/portal/document/DiagnosticReport/cb-rad",
            "/portal/document/DiagnosticReport/cb-rad/attachment/0",
            "/portal/document/DiagnosticReport/ca-misfiled/attachment/0",
            "/portal/messages/cb-msg",
            "/portal/messages/cb-msg/attachment/cb-msg/0",
        ] {
            let (status, body) = get(path.to_string()).await;
            assert_eq!(status, 404, "{path}");
            assert!(!body.contains("CANARY"), "{path}");
        }
    }
    // and writes: B's Consent cannot be withdrawn from A's portal
    let (_, sharing) = page(&ts, &ana, "/portal/sharing").await;
    let csrf = field(&sharing, "csrf").unwrap();
    assert_eq!(post_form(&ts, &ana, "/portal/sharing", &[("csrf", &csrf), ("withdraw", "cb-consent")]).await.0, 404);
    assert_eq!(hale_test_support::json(ts.get("/Consent/cb-consent").await).await["status"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_portal_journeys_work_in_a_real_browser() {
    if !browser_available("the_portal_journeys_work_in_a_real_browser") {
        return;
    }
    let ts = TestServer::spawn().await;
    chart_fixture(&ts).await;
    // a child's record, and their mother as proxy of it and of Ana's
    for (path, r) in [
        (
            "/Patient/pat-c",
            json!({"resourceType":"Patient","id":"pat-c","name":[{"family":"Alvarez","given":["Cleo"]}],"birthDate":"2019-04-05",
            "managingOrganization":{"reference":"Organization/org-a"}}),
        ),
        (
            "/RelatedPerson/rp-mum",
            json!({"resourceType":"RelatedPerson","id":"rp-mum","patient":{"reference":"Patient/pat-c"},"name":[{"family":"Alvarez","given":["Maria"]}]}),
        ),
    ] {
        assert!(ts.put(path, &r).await.status().is_success());
    }
    let repo = ts.system_repository("test-setup").await;
    let user = |u: &str, role: &str, org: Option<&str>, pats: Vec<String>, rp: Option<&str>| NewUser {
        username: u.into(),
        role: role.into(),
        organization: org.map(str::to_string),
        patients: pats,
        related_person: rp.map(str::to_string),
        password: Some(PASSWORD.into()),
        ..NewUser::default()
    };
    add_user(&repo, user("maria", "patient", None, vec!["pat-c".into(), "pat-a".into()], Some("rp-mum")))
        .await
        .unwrap();
    add_user(&repo, user("dr.b", "clinician", Some("org-b"), vec![], None)).await.unwrap();
    add_user(&repo, user("dr.a2", "clinician", Some("org-a"), vec![], None)).await.unwrap();
    // a SMART app whose redirect is on Hale's own origin (no request leaves it)
    hale_auth::register_client(&repo, "diary", "Walking Diary", &[format!("{}/portal/apps", ts.base)], false)
        .await
        .unwrap();
    // Clinic B's clinician, signed in over HTTP; Ana's invitation, made by a colleague of
    // Dr Jones (whose code is kept for the browser's sign-in)
    let code_b = enrolled(&ts, "dr.b").await;
    let dr_b = sign_in(&ts, "/app", "dr.b", PASSWORD, &code_b).await.unwrap();
    let code_a2 = enrolled(&ts, "dr.a2").await;
    let staff = sign_in(&ts, "/app", "dr.a2", PASSWORD, &code_a2).await.unwrap();
    let (_, chart) = page(&ts, &staff, "/app/patient/pat-a").await;
    let csrf = field(&chart, "csrf").unwrap();
    let (status, _, invitation) = post_form(&ts, &staff, "/app/patient/pat-a/invite", &[("csrf", csrf.as_str())]).await;
    assert_eq!(status, 200);
    let link = format!(
        "/auth/activate?code={}",
        invitation.split("href=\"/auth/activate?code=").nth(1).unwrap().split('"').next().unwrap()
    );
    let next_code = enrolled(&ts, "dr.jones").await;
    let shots = root().join("target/browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/browser/journeys.mjs"))
        .args([ts.base.as_str(), link.as_str(), "dr.jones", next_code.as_str(), dr_b.as_str(), "maria", PASSWORD])
        .arg(&shots)
        .current_dir(root())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert!(result["checks"].as_array().unwrap().len() >= 20, "{result}");
    for f in [
        "journey-activated-phone.png",
        "journey-sharing-phone.png",
        "journey-proxy-phone.png",
        "journey-apps-phone.png",
    ] {
        assert!(shots.join(f).metadata().unwrap().len() > 1000, "{f}");
    }
}
