//! The security suite: patient A's tokens and a clinician of A's organization get zero
//! bytes of patient B's data through every read path, every write into B's record is
//! refused, scopes bound what a token may do, and mutated tokens get 401. Runs on
//! SQLite and, with `HALE_TEST_STORE=postgres`, on PostgreSQL. Later issues add their
//! paths here.

use hale_test_support::{TestServer, UserGrant, client_with_token, json, user_token};
use serde_json::{Value, json};

/// Text planted in every resource of patient B: no response to A may contain it.
const CANARY_B: &str = "CANARYB7f3q";
/// Text in patient A's resources: A's own callers must see it (the positive control).
const CANARY_A: &str = "CANARYA2k9w";

async fn put(ts: &TestServer, r: Value) {
    let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
    let resp = ts.put(&path, &r).await;
    assert!(resp.status().is_success(), "{path}: {}", resp.text().await.unwrap());
}

/// Two organizations, a patient in each, each with an encounter, an observation and
/// a condition; a shared practitioner; a Group listing both patients.
async fn population(ts: &TestServer) {
    put(ts, json!({"resourceType":"Practitioner","id":"prac-1","name":[{"family":"Shared"}]})).await;
    for (p, org, canary) in [("a", "org-a", CANARY_A), ("b", "org-b", CANARY_B)] {
        put(ts, json!({"resourceType":"Organization","id":org,"name":format!("Clinic {p}")})).await;
        put(
            ts,
            json!({"resourceType":"Patient","id":format!("pat-{p}"),
            "name":[{"family":canary,"given":[format!("Pat{p}")]}],
            "managingOrganization":{"reference":format!("Organization/{org}")}}),
        )
        .await;
        put(
            ts,
            json!({"resourceType":"Encounter","id":format!("enc-{p}"),"status":"finished",
            "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},
            "subject":{"reference":format!("Patient/pat-{p}")},
            "participant":[{"individual":{"reference":"Practitioner/prac-1"}}],
            "serviceProvider":{"reference":format!("Organization/{org}")}}),
        )
        .await;
        put(
            ts,
            json!({"resourceType":"Observation","id":format!("obs-{p}"),"status":"final",
            "code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}],"text":canary},
            "subject":{"reference":format!("Patient/pat-{p}")},
            "encounter":{"reference":format!("Encounter/enc-{p}")},
            "performer":[{"reference":"Practitioner/prac-1"}],
            "valueQuantity":{"value":72,"unit":"/min"}}),
        )
        .await;
        put(
            ts,
            json!({"resourceType":"Condition","id":format!("cond-{p}"),
            "code":{"text":canary},"subject":{"reference":format!("Patient/pat-{p}")}}),
        )
        .await;
        // a task about the patient (R4 leaves Task out of the Patient compartment; Hale
        // holds it to the patient it is for)
        put(
            ts,
            json!({"resourceType":"Task","id":format!("task-{p}"),"status":"requested","intent":"order",
            "description":canary,"for":{"reference":format!("Patient/pat-{p}")},"owner":{"reference":"Practitioner/prac-1"}}),
        )
        .await;
        // content governed by the patient's record (R4: Binary.securityContext)
        put(
            ts,
            json!({"resourceType":"Binary","id":format!("bin-{p}"),"contentType":"text/plain",
            "securityContext":{"reference":format!("Patient/pat-{p}")},"data":"aGVsbG8="}),
        )
        .await;
        // content governed by a document of the patient's (R4: the securityContext
        // "stands in as a proxy" for the Binary's access rules)
        put(
            ts,
            json!({"resourceType":"DocumentReference","id":format!("doc-{p}"),"status":"current",
            "description":canary,"subject":{"reference":format!("Patient/pat-{p}")},
            "content":[{"attachment":{"contentType":"text/plain","url":format!("Binary/bin-doc-{p}")}}]}),
        )
        .await;
        put(
            ts,
            json!({"resourceType":"Binary","id":format!("bin-doc-{p}"),"contentType":"text/plain",
            "securityContext":{"reference":format!("DocumentReference/doc-{p}")},"data":"aGVsbG8="}),
        )
        .await;
    }
    // content governed by no record: no one held to patients sees it
    put(ts, json!({"resourceType":"Binary","id":"bin-none","contentType":"text/plain","data":"aGVsbG8="})).await;
    // a task about nobody: no one held to patients sees it
    put(
        ts,
        json!({"resourceType":"Task","id":"task-none","status":"requested","intent":"order","description":CANARY_B}),
    )
    .await;
    put(
        ts,
        json!({"resourceType":"Group","id":"group-1","type":"person","actual":true,
        "name":CANARY_B,"member":[{"entity":{"reference":"Patient/pat-a"}},{"entity":{"reference":"Patient/pat-b"}}]}),
    )
    .await;
}

/// Every read path, as (description, method, path, body).
fn read_paths() -> Vec<(&'static str, &'static str, String, Option<Value>)> {
    let mut v: Vec<(&str, &str, String, Option<Value>)> = vec![
        ("read Patient", "GET", "/Patient/pat-b".into(), None),
        ("read Observation", "GET", "/Observation/obs-b".into(), None),
        ("read Condition", "GET", "/Condition/cond-b".into(), None),
        ("read Group", "GET", "/Group/group-1".into(), None),
        ("vread", "GET", "/Observation/obs-b/_history/1".into(), None),
        ("history instance", "GET", "/Patient/pat-b/_history".into(), None),
        ("history type", "GET", "/Observation/_history".into(), None),
        ("history system", "GET", "/_history".into(), None),
        ("search all patients", "GET", "/Patient?_total=accurate".into(), None),
        ("search by name", "GET", "/Patient?given=Patb".into(), None),
        ("search observations", "GET", "/Observation?_total=accurate".into(), None),
        ("search by subject", "GET", "/Observation?subject=Patient/pat-b".into(), None),
        ("search groups", "GET", "/Group".into(), None),
        ("chain", "GET", "/Observation?subject:Patient.given=Patb".into(), None),
        ("_has", "GET", "/Patient?_has:Observation:subject:code=8867-4".into(), None),
        ("_include", "GET", "/Observation?_include=Observation:subject&_include=Observation:encounter".into(), None),
        (
            "_include:iterate",
            "GET",
            "/Encounter?_include=Encounter:subject&_include:iterate=Patient:organization".into(),
            None,
        ),
        (
            "_revinclude",
            "GET",
            "/Practitioner?_revinclude=Observation:performer&_revinclude=Encounter:participant".into(),
            None,
        ),
        (
            "_revinclude of patients",
            "GET",
            "/Patient?_revinclude=Observation:subject&_revinclude=Condition:subject".into(),
            None,
        ),
        ("revinclude from organization", "GET", "/Organization?_revinclude=Patient:organization".into(), None),
        ("compartment", "GET", "/Patient/pat-b/Observation".into(), None),
        ("compartment of everything", "GET", "/Patient/pat-b/Condition?_total=accurate".into(), None),
        ("system search", "GET", "/?_type=Patient,Observation,Condition,Group&_total=accurate".into(), None),
        ("$everything", "GET", "/Patient/pat-b/$everything".into(), None),
        ("count only", "GET", "/Observation?_summary=count".into(), None),
        ("read Task", "GET", "/Task/task-b".into(), None),
        ("read a Task about nobody", "GET", "/Task/task-none".into(), None),
        ("search tasks", "GET", "/Task?_total=accurate".into(), None),
        ("search tasks by owner", "GET", "/Task?owner=Practitioner/prac-1".into(), None),
        ("tasks of B", "GET", "/Task?patient=pat-b".into(), None),
        ("read B's Binary", "GET", "/Binary/bin-b".into(), None),
        ("read B's document", "GET", "/DocumentReference/doc-b".into(), None),
        ("read B's document content", "GET", "/Binary/bin-doc-b".into(), None),
    ];
    v.push(("POST _search", "POST", "/Observation/_search".into(), None));
    v.push((
        "batch GETs",
        "POST",
        "".into(),
        Some(json!({"resourceType":"Bundle","type":"batch","entry":[
            {"request":{"method":"GET","url":"Patient/pat-b"}},
            {"request":{"method":"GET","url":"Observation?subject=Patient/pat-b"}},
            {"request":{"method":"GET","url":"Patient/pat-b/_history"}},
            {"request":{"method":"GET","url":"Condition/cond-b/_history/1"}}
        ]})),
    ));
    v
}

async fn send(ts: &TestServer, c: &reqwest::Client, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let url = ts.fhir(path);
    let req = match (method, body) {
        ("GET", _) => c.get(url),
        ("POST", Some(b)) => c.post(url).header("content-type", "application/fhir+json").body(b.to_string()),
        ("POST", None) => c.post(url).header("content-type", "application/x-www-form-urlencoded").body(""),
        ("PUT", Some(b)) => c.put(url).header("content-type", "application/fhir+json").body(b.to_string()),
        ("DELETE", _) => c.delete(url),
        _ => unreachable!(),
    };
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn grants<'a>(patients: &'a [&'a str]) -> Vec<(&'static str, UserGrant<'a>)> {
    vec![
        ("patient A, user scopes", UserGrant { role: "patient", patients, scope: "user/*.rs", ..Default::default() }),
        (
            "patient A, patient scopes",
            UserGrant {
                role: "patient",
                patients,
                scope: "patient/*.read launch/patient",
                launch_patient: Some("pat-a"),
                ..Default::default()
            },
        ),
        (
            "clinician of A's organization",
            UserGrant {
                role: "clinician",
                organization: Some("org-a"),
                fhir_user: Some("Practitioner/prac-1"),
                scope: "user/*.cruds",
                ..Default::default()
            },
        ),
        (
            "clinician of A's organization, launched for A",
            UserGrant {
                role: "clinician",
                organization: Some("org-a"),
                scope: "patient/*.cruds",
                launch_patient: Some("pat-a"),
                ..Default::default()
            },
        ),
        (
            "clinician of A's organization, launched for B",
            UserGrant {
                role: "clinician",
                organization: Some("org-a"),
                scope: "patient/*.cruds",
                launch_patient: Some("pat-b"),
                ..Default::default()
            },
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn no_read_path_leaks_another_patients_data() {
    let ts = TestServer::spawn().await;
    population(&ts).await;
    // the system token sees B: the canary is there to be found
    let (status, body) = send(&ts, &ts.client, "GET", "/Patient/pat-b", None).await;
    assert_eq!(status, 200);
    assert!(body.contains(CANARY_B));
    let patients = ["pat-a"];
    for (who, g) in grants(&patients) {
        let c = client_with_token(&user_token(ts.data_dir.path(), "u", &g));
        for (what, method, path, body) in read_paths() {
            let (status, text) = send(&ts, &c, method, &path, body.as_ref()).await;
            assert!(!text.contains(CANARY_B), "{who} / {what} ({path}) leaked B's data: {status} {text}");
            assert!(status < 500, "{who} / {what}: {status} {text}");
            assert!(!text.contains("\"member\""), "{who} / {what}: the Group lists other patients");
        }
        // what they may see, they see (except the launch for B, which sees nothing)
        let (status, text) = send(&ts, &c, "GET", "/Observation?_total=accurate", None).await;
        assert_eq!(status, 200, "{who}: {text}");
        let bundle: Value = serde_json::from_str(&text).unwrap();
        let expect = if who.ends_with("launched for B") { 0 } else { 1 };
        assert_eq!(bundle["total"], expect, "{who}: {text}");
        assert_eq!(text.contains(CANARY_A), expect == 1, "{who}: {text}");
        let (status, text) = send(&ts, &c, "GET", "/Task?_total=accurate", None).await;
        assert_eq!(status, 200, "{who}: {text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["total"], expect, "{who}: A's task only: {text}");
        let (status, text) = send(&ts, &c, "GET", "/Binary?_total=accurate", None).await;
        assert_eq!(status, 200, "{who}: {text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["total"], expect, "{who}: A's Binary only: {text}");
        for other in ["/Binary/bin-b", "/Binary/bin-none", "/Binary/bin-doc-b"] {
            assert_eq!(send(&ts, &c, "GET", other, None).await.0, 404, "{who}: {other}");
        }
        // the content of A's document is A's: read by its id (a search of Binary lists
        // only those held to a Patient)
        let (status, text) = send(&ts, &c, "GET", "/Binary/bin-doc-a", None).await;
        assert_eq!(status, if expect == 1 { 200 } else { 404 }, "{who}: {text}");
        let (status, _) = send(&ts, &c, "GET", "/Patient/pat-b", None).await;
        assert_eq!(status, 404, "{who}: forbidden looks like absent");
        let (status, _) = send(&ts, &c, "GET", "/Practitioner/prac-1", None).await;
        assert_eq!(status, 200, "{who}: the directory is shared");
    }
    // the includes of A's own data come back
    let g = UserGrant { role: "patient", patients: &patients, scope: "user/*.rs", ..Default::default() };
    let c = client_with_token(&user_token(ts.data_dir.path(), "u", &g));
    let (_, text) =
        send(&ts, &c, "GET", "/Patient?_revinclude=Observation:subject&_revinclude=Condition:subject", None).await;
    let bundle: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<&str> =
        bundle["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let (status, text) = send(&ts, &c, "GET", "/Patient/pat-a/$everything", None).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("obs-a") && text.contains("cond-a") && text.contains("enc-a"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_write_path_reaches_another_patients_record() {
    let ts = TestServer::spawn().await;
    population(&ts).await;
    let clinician =
        UserGrant { role: "clinician", organization: Some("org-a"), scope: "user/*.cruds", ..Default::default() };
    let c = client_with_token(&user_token(ts.data_dir.path(), "dr", &clinician));
    let obs_for = |p: &str| json!({"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":format!("Patient/{p}")}});
    // into A's record: allowed (the positive control)
    let (status, text) = send(&ts, &c, "POST", "/Observation", Some(&obs_for("pat-a"))).await;
    assert_eq!(status, 201, "{text}");
    let bin_for = |p: Option<&str>| {
        let mut b = json!({"resourceType":"Binary","contentType":"text/plain","data":"aGVsbG8="});
        if let Some(p) = p {
            b["securityContext"] = json!({"reference": format!("Patient/{p}")});
        }
        b
    };
    let (status, text) = send(&ts, &c, "POST", "/Binary", Some(&bin_for(Some("pat-a")))).await;
    assert_eq!(status, 201, "content for A's record: {text}");
    let bin_of = |r: &str| json!({"resourceType":"Binary","contentType":"text/plain","data":"aGVsbG8=","securityContext":{"reference":r}});
    let (status, text) = send(&ts, &c, "POST", "/Binary", Some(&bin_of("DocumentReference/doc-a"))).await;
    assert_eq!(status, 201, "content of A's document: {text}");
    let refused: Vec<(&str, &str, String, Value)> = vec![
        ("create for B", "POST", "/Observation".into(), obs_for("pat-b")),
        ("content for B's record", "POST", "/Binary".into(), bin_for(Some("pat-b"))),
        ("content for no record", "POST", "/Binary".into(), bin_for(None)),
        ("content of B's document", "POST", "/Binary".into(), bin_of("DocumentReference/doc-b")),
        ("content of a practitioner", "POST", "/Binary".into(), bin_of("Practitioner/prac-1")),
        ("content of no resource", "POST", "/Binary".into(), bin_of("DocumentReference/none")),
        ("A's content moved to B's document", "PUT", "/Binary/bin-doc-a".into(), {
            let mut b = bin_of("DocumentReference/doc-b");
            b["id"] = json!("bin-doc-a");
            b
        }),
        (
            "create for nobody",
            "POST",
            "/Observation".into(),
            json!({"resourceType":"Observation","status":"final","code":{"text":"x"}}),
        ),
        ("update B's", "PUT", "/Observation/obs-b".into(), {
            let mut o = obs_for("pat-b");
            o["id"] = json!("obs-b");
            o
        }),
        ("move A's into B's record", "PUT", "/Observation/obs-a".into(), {
            let mut o = obs_for("pat-b");
            o["id"] = json!("obs-a");
            o
        }),
        (
            "register a patient elsewhere",
            "POST",
            "/Patient".into(),
            json!({"resourceType":"Patient","managingOrganization":{"reference":"Organization/org-b"}}),
        ),
        (
            "update B",
            "PUT",
            "/Patient/pat-b".into(),
            json!({"resourceType":"Patient","id":"pat-b","managingOrganization":{"reference":"Organization/org-a"}}),
        ),
        ("conditional update of B's", "PUT", "/Observation?subject=Patient/pat-b".into(), obs_for("pat-b")),
        (
            "transaction into B's record",
            "POST",
            "".into(),
            json!({"resourceType":"Bundle","type":"transaction","entry":[
            {"resource":obs_for("pat-b"),"request":{"method":"POST","url":"Observation"}}]}),
        ),
        (
            "transaction deleting B's",
            "POST",
            "".into(),
            json!({"resourceType":"Bundle","type":"transaction","entry":[
            {"request":{"method":"DELETE","url":"Observation/obs-b"}}]}),
        ),
        ("a Group", "POST", "/Group".into(), json!({"resourceType":"Group","type":"person","actual":true})),
    ];
    for (what, method, path, body) in &refused {
        let (status, text) = send(&ts, &c, method, path, Some(body)).await;
        assert!(matches!(status, 403 | 404), "{what}: {status} {text}");
        assert!(!text.contains(CANARY_B), "{what}: {text}");
    }
    for path in ["/Observation/obs-b", "/Patient/pat-b", "/Condition?subject=Patient/pat-b"] {
        let (status, text) = send(&ts, &c, "DELETE", path, None).await;
        assert!(matches!(status, 200 | 204 | 403 | 404), "{path}: {status} {text}");
    }
    // B's record is as it was
    for path in ["/Observation/obs-b", "/Patient/pat-b", "/Condition/cond-b"] {
        let (status, text) = send(&ts, &ts.client, "GET", path, None).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert!(text.contains("\"versionId\":\"1\""), "{path} changed: {text}");
    }
    let (_, text) = send(&ts, &ts.client, "GET", "/Observation?subject=Patient/pat-b&_summary=count", None).await;
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["total"], 1, "{text}");
    // a patient writes nothing, even with write scopes
    let patient = UserGrant { role: "patient", patients: &["pat-a"], scope: "user/*.cruds", ..Default::default() };
    let c = client_with_token(&user_token(ts.data_dir.path(), "pa", &patient));
    let (status, _) = send(&ts, &c, "POST", "/Observation", Some(&obs_for("pat-a"))).await;
    assert_eq!(status, 403);
}

/// The SMART scope matrix: what each scope form lets a clinician (whose role allows
/// everything) do with Observations of their own patient, against an oracle table.
#[tokio::test(flavor = "multi_thread")]
async fn scopes_bound_what_a_token_may_do() {
    let ts = TestServer::spawn().await;
    population(&ts).await;
    // (scope, read, search, create, update, delete)
    let oracle: [(&str, [bool; 5]); 10] = [
        ("user/Observation.read", [true, true, false, false, false]),
        ("user/Observation.write", [false, false, true, true, true]),
        ("user/Observation.*", [true, true, true, true, true]),
        ("user/Observation.rs", [true, true, false, false, false]),
        ("user/Observation.r", [true, false, false, false, false]),
        ("user/Observation.s", [false, true, false, false, false]),
        ("user/Observation.cu", [false, false, true, true, false]),
        ("user/Patient.cruds", [false, false, false, false, false]),
        ("user/*.cruds", [true, true, true, true, true]),
        // granular: obs-a has no category, so it is not read; the search answers (empty)
        ("user/Observation.rs?category=vital-signs", [false, true, false, false, false]),
    ];
    for (scope, expect) in oracle {
        let g = UserGrant { role: "clinician", organization: Some("org-a"), scope, ..Default::default() };
        let c = client_with_token(&user_token(ts.data_dir.path(), "dr", &g));
        let body = json!({"resourceType":"Observation","id":"obs-a","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pat-a"}});
        let mut new = body.clone();
        new.as_object_mut().unwrap().remove("id");
        let got = [
            send(&ts, &c, "GET", "/Observation/obs-a", None).await.0 == 200,
            send(&ts, &c, "GET", "/Observation?subject=Patient/pat-a", None).await.0 == 200,
            send(&ts, &c, "POST", "/Observation", Some(&new)).await.0 == 201,
            send(&ts, &c, "PUT", "/Observation/obs-a", Some(&body)).await.0 == 200,
            false,
        ];
        // delete last, on a resource of its own
        let (_, created) = send(&ts, &ts.client, "POST", "/Observation", Some(&new)).await;
        let id = serde_json::from_str::<Value>(&created).unwrap()["id"].as_str().unwrap().to_string();
        let deleted = matches!(send(&ts, &c, "DELETE", &format!("/Observation/{id}"), None).await.0, 200 | 204);
        let got = [got[0], got[1], got[2], got[3], deleted];
        assert_eq!(got, expect, "{scope}: read, search, create, update, delete");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_and_mutated_tokens_get_401() {
    let ts = TestServer::spawn().await;
    let anonymous = reqwest::Client::new();
    let r = anonymous.get(ts.fhir("/Patient")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let outcome = json(r).await;
    assert_eq!(outcome["issue"][0]["code"], "login");
    // the CapabilityStatement stays public
    assert_eq!(anonymous.get(ts.fhir("/metadata")).send().await.unwrap().status(), 200);
    let other = tempfile::tempdir().unwrap();
    let g = UserGrant { role: "clinician", organization: Some("org-a"), scope: "user/*.rs", ..Default::default() };
    let good = user_token(ts.data_dir.path(), "dr", &g);
    let parts: Vec<&str> = good.split('.').collect();
    let payload: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1]).unwrap(),
    )
    .unwrap();
    let mut wider = payload.clone();
    wider["scope"] = json!("user/*.cruds");
    wider["role"] = json!("admin");
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, wider.to_string()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let cases = [
        ("another installation's key", user_token(other.path(), "dr", &g)),
        ("an edited scope and role", edited),
        ("alg none", none),
        ("garbage", "not-a-token".to_string()),
        ("a truncated signature", good[..good.len() - 4].to_string()),
    ];
    for (what, token) in cases {
        let r = anonymous.get(ts.fhir("/Observation")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 401, "{what}");
        assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"), "{what}");
    }
    let r = anonymous.get(ts.fhir("/Observation")).header("authorization", "Basic YTpi").send().await.unwrap();
    assert_eq!(r.status(), 401, "another scheme");
    let r = anonymous.get(ts.fhir("/Observation")).bearer_auth(&good).send().await.unwrap();
    assert_eq!(r.status(), 200, "the unmodified token works");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_trail_is_searched_by_its_administrator_and_a_patient_sees_who_saw_their_record() {
    let ts = TestServer::spawn().await;
    population(&ts).await;
    let dir = ts.data_dir.path();
    let dr = UserGrant {
        role: "clinician",
        organization: Some("org-a"),
        fhir_user: Some("Practitioner/prac-1"),
        scope: "user/*.rs",
        ..Default::default()
    };
    let dr = client_with_token(&user_token(dir, "dr.who", &dr));
    assert_eq!(send(&ts, &dr, "GET", "/Patient/pat-a", None).await.0, 200);
    assert_eq!(send(&ts, &dr, "GET", "/Observation/obs-a", None).await.0, 200);
    // an interaction that touched both patients
    assert_eq!(send(&ts, &ts.client, "GET", "/Patient", None).await.0, 200);
    let sec = UserGrant { role: "security-admin", scope: "user/AuditEvent.rs", ..Default::default() };
    let sec = client_with_token(&user_token(dir, "sec", &sec));
    let search = |c: reqwest::Client, q: &'static str| {
        let ts = &ts;
        async move {
            let (status, text) = send(ts, &c, "GET", &format!("/AuditEvent{q}"), None).await;
            (status, serde_json::from_str::<Value>(&text).unwrap_or(Value::Null), text)
        }
    };
    let (status, b, text) = search(sec.clone(), "?patient=pat-a").await;
    assert_eq!(status, 200, "{text}");
    let entries = b["entry"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["resource"]["agent"][0]["who"]["identifier"]["value"] == "dr.who"), "{text}");
    assert!(entries.iter().all(|e| e["resource"]["resourceType"] == "AuditEvent" && e["resource"]["id"].is_string()));
    let (_, b, text) = search(sec.clone(), "?altid=dr.who&subtype=read").await;
    assert_eq!(b["entry"].as_array().map(Vec::len), Some(2), "{text}");
    let (_, b, _) = search(sec.clone(), "?altid=dr.who&date=ge2020-01-01&_count=1").await;
    assert_eq!(b["entry"].as_array().map(Vec::len), Some(1));
    let next = hale_test_support::bundle_link(&b, "next").expect("a next page");
    let b2 = json(sec.get(&next).send().await.unwrap()).await;
    assert_eq!(b2["entry"].as_array().map(Vec::len), Some(1));
    assert_ne!(b2["entry"][0]["resource"]["id"], b["entry"][0]["resource"]["id"]);
    let (_, b, _) = search(sec.clone(), "?altid=dr.who&date=lt2020-01-01").await;
    assert_eq!(b["entry"].as_array().map(Vec::len), Some(0));
    // a read of content held to A's record through A's document is a read of A's record
    assert_eq!(send(&ts, &dr, "GET", "/Binary/bin-doc-a", None).await.0, 200);
    let (_, b, text) = search(sec.clone(), "?patient=pat-a&altid=dr.who&subtype=read").await;
    assert_eq!(b["entry"].as_array().map(Vec::len), Some(3), "{text}");
    assert!(text.contains("Binary/bin-doc-a"), "{text}");
    let (status, _, _) = search(sec.clone(), "?nonsense=1").await;
    assert_eq!(status, 400);
    // the patient sees who saw their record, and nothing about anyone else
    let pa = UserGrant {
        role: "patient",
        patients: &["pat-a"],
        scope: "patient/*.rs",
        launch_patient: Some("pat-a"),
        ..Default::default()
    };
    let pa = client_with_token(&user_token(dir, "ana", &pa));
    let (status, b, text) = search(pa.clone(), "").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        b["entry"].as_array().unwrap().iter().any(|e| e["resource"]["agent"][0]["who"]["display"] == "user:dr.who"),
        "{text}"
    );
    assert!(!text.contains("pat-b") && !text.contains(CANARY_B), "{text}");
    let (_, b, _) = search(pa.clone(), "?patient=pat-b").await;
    assert_eq!(b["entry"].as_array().map(Vec::len), Some(0));
    // a clinician does not read the audit trail
    assert_eq!(search(dr.clone(), "").await.0, 403);
    // searching the trail is itself in the trail
    let (_, b, text) = search(sec.clone(), "?altid=sec").await;
    assert!(!b["entry"].as_array().unwrap().is_empty(), "{text}");
}

fn consent(id: &str, patient: &str, ty: &str, org: &str) -> Value {
    json!({"resourceType":"Consent","id":id,"status":"active",
        "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
        "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
        "patient":{"reference":format!("Patient/{patient}")},
        "policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
        "provision":{"type":ty,"actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},
            "reference":{"reference":format!("Organization/{org}")}}]}})
}

/// One Hale network shares a record between facilities by the patient's Consent; a
/// Consent that denies an organization wins, even over its own patients.
#[tokio::test(flavor = "multi_thread")]
async fn a_consent_shares_a_record_with_another_organization_and_a_denial_wins() {
    let ts = TestServer::spawn().await;
    population(&ts).await;
    let dir = ts.data_dir.path();
    let clinician = |org: &'static str| {
        let g = UserGrant { role: "clinician", organization: Some(org), scope: "user/*.cruds", ..Default::default() };
        client_with_token(&user_token(dir, &format!("dr-{org}"), &g))
    };
    let (a, b) = (clinician("org-a"), clinician("org-b"));
    let seen = |c: reqwest::Client| {
        let ts = &ts;
        async move {
            let (_, text) = send(ts, &c, "GET", "/Observation?_total=accurate", None).await;
            let b: Value = serde_json::from_str(&text).unwrap();
            let mut ids: Vec<String> = b["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(seen(b.clone()).await, ["obs-b"]);
    assert_eq!(send(&ts, &b, "GET", "/Patient/pat-a", None).await.0, 404);
    // pat-a permits org-b
    put(&ts, consent("c1", "pat-a", "permit", "org-b")).await;
    assert_eq!(seen(b.clone()).await, ["obs-a", "obs-b"]);
    assert_eq!(send(&ts, &b, "GET", "/Patient/pat-a", None).await.0, 200);
    assert_eq!(send(&ts, &b, "GET", "/Patient/pat-a/$everything", None).await.0, 200);
    // org-b may now chart for pat-a, not re-register them
    let obs = json!({"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pat-a"}});
    assert_eq!(send(&ts, &b, "POST", "/Observation", Some(&obs)).await.0, 201);
    // a Consent is in its patient's compartment: org-a cannot write one for pat-b to grant itself access
    let (status, _) = send(&ts, &a, "POST", "/Consent", Some(&consent("c9", "pat-b", "permit", "org-a"))).await;
    assert!(matches!(status, 403 | 404), "{status}");
    // a denial wins: pat-a denies org-b, and also their own org-a
    put(&ts, consent("c2", "pat-a", "deny", "org-b")).await;
    assert_eq!(seen(b.clone()).await, ["obs-b"]);
    assert_eq!(send(&ts, &b, "GET", "/Patient/pat-a", None).await.0, 404);
    assert!(!seen(a.clone()).await.is_empty());
    put(&ts, consent("c3", "pat-a", "deny", "org-a")).await;
    assert_eq!(send(&ts, &a, "GET", "/Patient/pat-a", None).await.0, 404);
    // an inactive Consent means nothing
    let mut lifted = consent("c3", "pat-a", "deny", "org-a");
    lifted["status"] = json!("inactive");
    put(&ts, lifted).await;
    assert_eq!(send(&ts, &a, "GET", "/Patient/pat-a", None).await.0, 200);
}

/// Break-the-glass: a clinician outside the relationship opens a record after stating
/// a reason; only they, only that patient, and every access is flagged in the trail.
#[tokio::test(flavor = "multi_thread")]
async fn breaking_the_glass_opens_one_record_for_one_clinician_and_is_flagged() {
    let ts = TestServer::spawn().await;
    population(&ts).await;
    let dir = ts.data_dir.path();
    let g = |role: &'static str| UserGrant {
        role,
        organization: Some("org-a"),
        patients: &["pat-a"],
        scope: "user/*.rs",
        ..Default::default()
    };
    let dr = client_with_token(&user_token(dir, "dr.er", &g("clinician")));
    let other = client_with_token(&user_token(dir, "dr.other", &g("clinician")));
    let patient = client_with_token(&user_token(dir, "ana", &g("patient")));
    let glass =
        |reason: &str| json!({"resourceType":"Parameters","parameter":[{"name":"reason","valueString":reason}]});
    assert_eq!(send(&ts, &dr, "GET", "/Patient/pat-b", None).await.0, 404);
    let (status, text) = send(&ts, &dr, "POST", "/Patient/pat-b/$break-glass", Some(&glass("ER"))).await;
    assert_eq!(status, 400, "a reason is needed: {text}");
    assert_eq!(
        send(&ts, &patient, "POST", "/Patient/pat-b/$break-glass", Some(&glass("I want to see it"))).await.0,
        403
    );
    assert_eq!(send(&ts, &dr, "POST", "/Patient/nobody/$break-glass", Some(&glass("unconscious, no ID"))).await.0, 404);
    let (status, text) =
        send(&ts, &dr, "POST", "/Patient/pat-b/$break-glass", Some(&glass("unconscious in the ED, no records here")))
            .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("expires"), "{text}");
    let (status, text) = send(&ts, &dr, "GET", "/Patient/pat-b", None).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(CANARY_B));
    let (_, text) = send(&ts, &dr, "GET", "/Observation?subject=Patient/pat-b", None).await;
    assert!(text.contains("obs-b"), "{text}");
    // only for them
    assert_eq!(send(&ts, &other, "GET", "/Patient/pat-b", None).await.0, 404);
    // the grant wins over a Consent's denial (an emergency)
    put(&ts, consent("c-deny", "pat-b", "deny", "org-a")).await;
    assert_eq!(send(&ts, &dr, "GET", "/Patient/pat-b", None).await.0, 200);
    // the grant and the accesses under it are flagged; the clinician's own patients are not
    assert_eq!(send(&ts, &dr, "GET", "/Patient/pat-a", None).await.0, 200);
    let sec = UserGrant { role: "security-admin", scope: "user/AuditEvent.rs", ..Default::default() };
    let sec = client_with_token(&user_token(dir, "sec", &sec));
    let b = json(sec.get(ts.fhir("/AuditEvent?altid=dr.er&_count=100")).send().await.unwrap()).await;
    let entries = b["entry"].as_array().unwrap();
    let flagged = |e: &Value| e["resource"]["agent"][0]["purposeOfUse"][0]["coding"][0]["code"] == "BTG";
    let concerns = |e: &Value, p: &str| {
        e["resource"]["entity"].as_array().unwrap().iter().any(|x| x["what"]["reference"] == format!("Patient/{p}"))
    };
    let grant = entries
        .iter()
        .find(|e| e["resource"]["subtype"][0]["code"] == "break-glass" && e["resource"]["outcome"] == "0")
        .unwrap();
    assert!(flagged(grant), "{grant}");
    assert!(grant["resource"]["agent"][0]["purposeOfUse"][0]["text"].as_str().unwrap().contains("unconscious"));
    let b_reads: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            e["resource"]["subtype"][0]["code"] == "read" && e["resource"]["outcome"] == "0" && concerns(e, "pat-b")
        })
        .collect();
    assert!(!b_reads.is_empty() && b_reads.iter().all(|e| flagged(e)), "{b_reads:?}");
    assert!(b_reads.iter().all(|e| e["resource"]["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"));
    let a_read =
        entries.iter().find(|e| e["resource"]["subtype"][0]["code"] == "read" && concerns(e, "pat-a")).unwrap();
    assert!(!flagged(a_read), "{a_read}");
}

const LAB: &str = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
const VITALS: &str = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs";
/// Text in patient A's vital signs: a token for A's lab results only may not see it.
const CANARY_VITALS: &str = "CANARYV5v8t";
/// Text in patient A's lab result: that token must see it (the positive control).
const LAB_TEXT: &str = "LABRESULTq4z";

fn categorized(id: &str, category: &str, text: &str) -> Value {
    let (system, code) = category.split_once('|').unwrap();
    json!({"resourceType":"Observation","id":id,"status":"final",
        "category":[{"coding":[{"system":system,"code":code}]}],
        "code":{"text":text},"subject":{"reference":"Patient/pat-a"},
        "encounter":{"reference":"Encounter/enc-a"},"performer":[{"reference":"Practitioner/prac-1"}]})
}

fn ids_of(text: &str) -> Vec<String> {
    let b: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let mut ids: Vec<String> = b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// SMART v2 granular scopes: `patient/Observation.rs?category=...|laboratory` sees A's
/// lab results, and none of A's vital signs on any read path; it writes only lab
/// results; several scopes on a type are an OR; a query Hale cannot apply is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_granular_scope_reaches_only_the_resources_its_query_matches() {
    let ts = TestServer::spawn().await;
    population(&ts).await;
    put(&ts, categorized("obs-lab-a", LAB, LAB_TEXT)).await;
    put(&ts, categorized("obs-vs-a", VITALS, CANARY_VITALS)).await;
    // recorded as vital signs first, a lab result now: its first version stays hidden
    put(&ts, categorized("obs-was-vs", VITALS, CANARY_VITALS)).await;
    put(&ts, categorized("obs-was-vs", LAB, LAB_TEXT)).await;
    let dir = ts.data_dir.path();
    let patients = ["pat-a"];
    let lab_scope = format!("patient/Observation.rs?category={LAB}");
    let patient = UserGrant {
        role: "patient",
        patients: &patients,
        scope: &format!("{lab_scope} patient/Patient.rs patient/Encounter.rs launch/patient"),
        launch_patient: Some("pat-a"),
        ..Default::default()
    };
    let clinician_scope = format!("user/Observation.cruds?category={LAB} user/Patient.rs user/Encounter.rs");
    let clinician =
        UserGrant { role: "clinician", organization: Some("org-a"), scope: &clinician_scope, ..Default::default() };
    let paths: Vec<(&str, &str, String, Option<Value>)> = vec![
        ("read", "GET", "/Observation/obs-vs-a".into(), None),
        ("vread", "GET", "/Observation/obs-vs-a/_history/1".into(), None),
        ("history instance", "GET", "/Observation/obs-vs-a/_history".into(), None),
        ("vread of a version that did not match", "GET", "/Observation/obs-was-vs/_history/1".into(), None),
        ("history of a resource that changed", "GET", "/Observation/obs-was-vs/_history".into(), None),
        ("history type", "GET", "/Observation/_history".into(), None),
        ("history system", "GET", "/_history".into(), None),
        ("search", "GET", "/Observation?_total=accurate".into(), None),
        ("search by category", "GET", "/Observation?category=vital-signs&_total=accurate".into(), None),
        ("search by subject", "GET", "/Observation?subject=Patient/pat-a".into(), None),
        ("search by id", "GET", "/Observation?_id=obs-vs-a".into(), None),
        ("count only", "GET", "/Observation?_summary=count".into(), None),
        ("read Task", "GET", "/Task/task-b".into(), None),
        ("read a Task about nobody", "GET", "/Task/task-none".into(), None),
        ("search tasks", "GET", "/Task?_total=accurate".into(), None),
        ("search tasks by owner", "GET", "/Task?owner=Practitioner/prac-1".into(), None),
        ("tasks of B", "GET", "/Task?patient=pat-b".into(), None),
        ("POST _search", "POST", "/Observation/_search".into(), None),
        ("_revinclude from Patient", "GET", "/Patient?_revinclude=Observation:subject".into(), None),
        ("_revinclude from Encounter", "GET", "/Encounter?_revinclude=Observation:encounter".into(), None),
        (
            "_include:iterate",
            "GET",
            "/Patient?_revinclude=Encounter:subject&_revinclude:iterate=Observation:encounter".into(),
            None,
        ),
        ("_has", "GET", "/Patient?_has:Observation:subject:category=vital-signs".into(), None),
        ("compartment", "GET", "/Patient/pat-a/Observation?_total=accurate".into(), None),
        ("$everything", "GET", "/Patient/pat-a/$everything".into(), None),
        ("system search", "GET", "/?_type=Patient,Observation".into(), None),
        (
            "batch GETs",
            "POST",
            "".into(),
            Some(json!({"resourceType":"Bundle","type":"batch","entry":[
                {"request":{"method":"GET","url":"Observation/obs-vs-a"}},
                {"request":{"method":"GET","url":"Observation?category=vital-signs"}},
                {"request":{"method":"GET","url":"Observation/obs-vs-a/_history"}}]})),
        ),
    ];
    for (who, g) in [("patient A", &patient), ("clinician of A's organization", &clinician)] {
        let c = client_with_token(&user_token(dir, "u", g));
        for (what, method, path, body) in &paths {
            let (status, text) = send(&ts, &c, method, path, body.as_ref()).await;
            assert!(status < 500, "{who} / {what}: {status} {text}");
            assert!(!text.contains(CANARY_VITALS), "{who} / {what} ({path}) shows vital signs: {status} {text}");
            assert!(!text.contains("obs-vs-a\""), "{who} / {what} ({path}) names the vital signs: {text}");
            assert!(!text.contains("\"obs-a\""), "{who} / {what} ({path}) shows an uncategorized observation: {text}");
        }
        assert_eq!(send(&ts, &c, "GET", "/Observation/obs-vs-a", None).await.0, 404, "{who}");
        // the lab result is there on the same paths
        let (status, text) = send(&ts, &c, "GET", "/Observation/obs-lab-a", None).await;
        assert_eq!(status, 200, "{who}: {text}");
        assert!(text.contains(LAB_TEXT));
        let (_, text) = send(&ts, &c, "GET", "/Observation?_total=accurate", None).await;
        assert_eq!(ids_of(&text), ["obs-lab-a", "obs-was-vs"], "{who}: {text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["total"], 2, "{who}: {text}");
        assert_eq!(send(&ts, &c, "GET", "/Observation/obs-was-vs/_history/2", None).await.0, 200, "{who}");
        // nor does a chain or _has tell that a hidden observation exists
        for path in [
            "/Patient?_has:Observation:subject:category=vital-signs",
            "/Encounter?_has:Observation:encounter:code:text=CANARYV",
        ] {
            let (status, text) = send(&ts, &c, "GET", path, None).await;
            assert_eq!((status, ids_of(&text)), (200, vec![]), "{who} / {path}: {text}");
        }
        let (_, text) = send(&ts, &c, "GET", "/Patient?_has:Observation:subject:category=laboratory", None).await;
        assert_eq!(ids_of(&text), ["pat-a"], "{who}: {text}");
        let (_, text) = send(&ts, &c, "GET", "/Observation/obs-was-vs/_history", None).await;
        assert_eq!(ids_of(&text), ["obs-was-vs"], "{who}: only the current version: {text}");
        for path in [
            "/Patient?_revinclude=Observation:subject",
            "/Patient/pat-a/Observation",
            "/Encounter?_revinclude=Observation:encounter",
        ] {
            let (_, text) = send(&ts, &c, "GET", path, None).await;
            assert!(ids_of(&text).contains(&"obs-lab-a".to_string()), "{who} / {path}: {text}");
        }
        let (_, text) = send(&ts, &c, "GET", "/Patient/pat-a/$everything", None).await;
        assert!(text.contains(LAB_TEXT) && text.contains("enc-a"), "{who}: {text}");
        let (_, text) = send(&ts, &c, "GET", "/Observation/_history", None).await;
        assert!(text.contains(LAB_TEXT), "{who}: {text}");
    }
    // writes: lab results only
    let c = client_with_token(&user_token(dir, "dr", &clinician));
    let mut new_lab = categorized("x", LAB, "new lab");
    new_lab.as_object_mut().unwrap().remove("id");
    let mut new_vitals = categorized("x", VITALS, "new vitals");
    new_vitals.as_object_mut().unwrap().remove("id");
    let (status, text) = send(&ts, &c, "POST", "/Observation", Some(&new_lab)).await;
    assert_eq!(status, 201, "{text}");
    let created = serde_json::from_str::<Value>(&text).unwrap()["id"].as_str().unwrap().to_string();
    assert!(matches!(send(&ts, &ts.client, "DELETE", &format!("/Observation/{created}"), None).await.0, 200 | 204));
    let refused: Vec<(&str, &str, String, Value)> = vec![
        ("create vital signs", "POST", "/Observation".into(), new_vitals.clone()),
        ("update the vital signs", "PUT", "/Observation/obs-vs-a".into(), categorized("obs-vs-a", LAB, "now lab")),
        ("turn a lab result into vital signs", "PUT", "/Observation/obs-lab-a".into(), {
            categorized("obs-lab-a", VITALS, "now vitals")
        }),
        (
            "conditional update of vital signs",
            "PUT",
            "/Observation?category=vital-signs".into(),
            categorized("obs-vs-a", VITALS, "changed"),
        ),
        (
            "transaction creating vital signs",
            "POST",
            "".into(),
            json!({"resourceType":"Bundle","type":"transaction","entry":[
                {"resource":new_vitals,"request":{"method":"POST","url":"Observation"}}]}),
        ),
        (
            "transaction deleting vital signs",
            "POST",
            "".into(),
            json!({"resourceType":"Bundle","type":"transaction","entry":[
                {"request":{"method":"DELETE","url":"Observation/obs-vs-a"}}]}),
        ),
    ];
    for (what, method, path, body) in &refused {
        let (status, text) = send(&ts, &c, method, path, Some(body)).await;
        assert!(matches!(status, 403 | 404), "{what}: {status} {text}");
        assert!(!text.contains(CANARY_VITALS), "{what}: {text}");
    }
    for path in ["/Observation/obs-vs-a", "/Observation?category=vital-signs"] {
        let (status, text) = send(&ts, &c, "DELETE", path, None).await;
        assert!(matches!(status, 200 | 204 | 403 | 404), "{path}: {status} {text}");
    }
    for id in ["obs-vs-a", "obs-lab-a"] {
        let (status, text) = send(&ts, &ts.client, "GET", &format!("/Observation/{id}"), None).await;
        assert_eq!(status, 200, "{id}: {text}");
        assert!(text.contains("\"versionId\":\"1\""), "{id} changed: {text}");
    }
    // several scopes on a type are an OR; a plain one besides means all of the type
    for (scope, expect) in [
        (format!("{lab_scope} patient/Observation.rs?category={VITALS}"), vec!["obs-lab-a", "obs-vs-a", "obs-was-vs"]),
        (format!("{lab_scope} patient/Observation.rs"), vec!["obs-a", "obs-lab-a", "obs-vs-a", "obs-was-vs"]),
        (format!("patient/Observation.rs?category={LAB},{VITALS}"), vec!["obs-lab-a", "obs-vs-a", "obs-was-vs"]),
        (format!("patient/Observation.rs?category={LAB}&status=preliminary"), vec![]),
    ] {
        let g = UserGrant { scope: &scope, ..patient.clone() };
        let c = client_with_token(&user_token(dir, "u", &g));
        let (_, text) = send(&ts, &c, "GET", "/Observation", None).await;
        assert_eq!(ids_of(&text), expect, "{scope}: {text}");
    }
    // a client acting for no user: every patient's lab results, nothing else
    let lab_client = client_with_token(&hale_test_support::token_for_client(
        dir,
        "lab-feed",
        &format!("system/Observation.rs?category={LAB}"),
    ));
    let (_, text) = send(&ts, &lab_client, "GET", "/Observation", None).await;
    assert_eq!(ids_of(&text), ["obs-lab-a", "obs-was-vs"], "{text}");
    assert_eq!(send(&ts, &lab_client, "GET", "/Observation/obs-b", None).await.0, 404);
    // a query Hale cannot apply is refused: at the authorization endpoint...
    let repo = ts.system_repository("test-setup").await;
    let redirect = "http://127.0.0.1:9/callback";
    hale_auth::register_client(&repo, "lab-app", "Lab viewer", &[redirect.to_string()], false).await.unwrap();
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for scope in [
        "patient/Observation.rs?value-quantity=gt5",
        "patient/Observation.rs?code:text=pulse",
        "patient/*.rs?category=laboratory",
        "patient/Observation.rs?subject:Patient.gender=male",
    ] {
        let mut url = url::Url::parse(&format!("{}/auth/authorize", ts.base)).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", "lab-app")
            .append_pair("redirect_uri", redirect)
            .append_pair("scope", scope)
            .append_pair("state", "s1")
            .append_pair("aud", &format!("{}/fhir", ts.base))
            .append_pair("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
            .append_pair("code_challenge_method", "S256");
        let r = no_redirects.get(url).send().await.unwrap();
        assert_eq!(r.status(), 303, "{scope}");
        let to = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let q: std::collections::HashMap<String, String> = to.query_pairs().into_owned().collect();
        assert_eq!(q.get("error").map(String::as_str), Some("invalid_scope"), "{scope}: {to}");
        assert!(q.get("error_description").is_some_and(|d| d.contains("cannot")), "{scope}: {to}");
    }
    // ...and in a token signed with it
    let keys = hale_server::TokenKeys::open(dir).unwrap();
    let mut claims = keys.client_claims("lab-feed", &Default::default(), 3600);
    claims.scope = "system/Observation.rs?value-quantity=gt5".into();
    let forged = client_with_token(&keys.sign(&claims));
    let (status, text) = send(&ts, &forged, "GET", "/Observation", None).await;
    assert_eq!(status, 401, "{text}");
}

/// A clinician reaches the patients of their organization through an Encounter it
/// provides, or a CareTeam listing it or the clinician; not before; a Consent that
/// denies the organization still wins.
#[tokio::test(flavor = "multi_thread")]
async fn encounters_and_care_teams_relate_a_patient_to_an_organization() {
    let ts = TestServer::spawn().await;
    population(&ts).await;
    let dir = ts.data_dir.path();
    for (org, prac) in [("org-c", "prac-c"), ("org-d", "prac-d")] {
        put(&ts, json!({"resourceType":"Organization","id":org,"name":org})).await;
        put(&ts, json!({"resourceType":"Practitioner","id":prac,"name":[{"family":prac}]})).await;
    }
    let clinician = |name: &str, org: &'static str, prac: Option<&'static str>| {
        let g = UserGrant {
            role: "clinician",
            organization: Some(org),
            fhir_user: prac,
            scope: "user/*.cruds",
            ..Default::default()
        };
        client_with_token(&user_token(dir, name, &g))
    };
    let dr_c = clinician("dr-c", "org-c", Some("Practitioner/prac-c"));
    let dr_c2 = clinician("dr-c2", "org-c", Some("Practitioner/prac-1"));
    let dr_d = clinician("dr-d", "org-d", None);
    let sees = |c: reqwest::Client, patient: &'static str| {
        let ts = &ts;
        async move {
            let (status, text) = send(ts, &c, "GET", &format!("/Patient/{patient}"), None).await;
            let (_, obs) = send(ts, &c, "GET", &format!("/Observation?subject=Patient/{patient}"), None).await;
            let (_, all) = send(ts, &c, "GET", "/Patient", None).await;
            let seen = status == 200;
            assert_eq!(!ids_of(&obs).is_empty(), seen, "{patient}: {obs}");
            assert_eq!(ids_of(&all).contains(&patient.to_string()), seen, "{patient}: {all}");
            if !seen && patient == "pat-b" {
                for t in [&text, &obs, &all] {
                    assert!(!t.contains(CANARY_B), "{patient}: {t}");
                }
            }
            seen
        }
    };
    assert!(!sees(dr_c.clone(), "pat-b").await);
    assert!(!sees(dr_c.clone(), "pat-a").await);
    assert!(!sees(dr_d.clone(), "pat-b").await);
    // an Encounter of pat-b provided by org-c
    put(
        &ts,
        json!({"resourceType":"Encounter","id":"enc-c","status":"in-progress",
        "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},
        "subject":{"reference":"Patient/pat-b"},"serviceProvider":{"reference":"Organization/org-c"}}),
    )
    .await;
    assert!(sees(dr_c.clone(), "pat-b").await);
    assert!(sees(dr_c2.clone(), "pat-b").await, "the whole organization");
    let (status, text) = send(&ts, &dr_c, "GET", "/Patient/pat-b/$everything", None).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("obs-b") && text.contains("cond-b"), "{text}");
    assert!(!sees(dr_d.clone(), "pat-b").await, "another organization's encounter does not count");
    // a CareTeam of pat-a listing the clinician's own practitioner: them, not their colleague
    put(
        &ts,
        json!({"resourceType":"CareTeam","id":"ct-a","status":"active","subject":{"reference":"Patient/pat-a"},
        "participant":[{"member":{"reference":"Practitioner/prac-c"}}]}),
    )
    .await;
    assert!(sees(dr_c.clone(), "pat-a").await);
    assert!(!sees(dr_c2.clone(), "pat-a").await);
    // a CareTeam of pat-b listing org-d
    put(
        &ts,
        json!({"resourceType":"CareTeam","id":"ct-b","status":"active","subject":{"reference":"Patient/pat-b"},
        "participant":[{"member":{"reference":"Organization/org-d"}}]}),
    )
    .await;
    assert!(sees(dr_d.clone(), "pat-b").await);
    // a reached patient may be charted for
    let obs = json!({"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pat-b"}});
    assert_eq!(send(&ts, &dr_c, "POST", "/Observation", Some(&obs)).await.0, 201);
    // a Consent that denies the organization wins over encounters and care teams
    put(&ts, consent("deny-c", "pat-b", "deny", "org-c")).await;
    put(&ts, consent("deny-c-a", "pat-a", "deny", "org-c")).await;
    assert!(!sees(dr_c.clone(), "pat-b").await);
    assert!(!sees(dr_c.clone(), "pat-a").await);
    assert_eq!(send(&ts, &dr_c, "GET", "/Patient/pat-b/$everything", None).await.0, 404);
    assert_eq!(send(&ts, &dr_c, "POST", "/Observation", Some(&obs)).await.0, 403);
    assert!(sees(dr_d.clone(), "pat-b").await, "the denial names org-c only");
}

fn encounter_of(id: &str, patient: &str, status: &str, org: &str) -> Value {
    json!({"resourceType":"Encounter","id":id,"status":status,
        "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"EMER"},
        "subject":{"reference":format!("Patient/{patient}")},"serviceProvider":{"reference":format!("Organization/{org}")}})
}

/// Break-the-glass opens a record for a while, not for good: the clinician cannot
/// record an Encounter their organization provides, a CareTeam listing it or them, a
/// Consent permitting it, nor make it the patient's managing organization (each would
/// let the whole organization reach the patient after the grant ends), whatever the
/// status and through every write path; each refusal is audited. Writes that relate the
/// patient to no one new keep working, and once the grant ends neither the clinician
/// nor a colleague reaches the patient.
#[tokio::test(flavor = "multi_thread")]
async fn break_the_glass_cannot_be_made_permanent() {
    let ts = TestServer::spawn().await;
    population(&ts).await;
    let dir = ts.data_dir.path();
    put(&ts, json!({"resourceType":"Practitioner","id":"prac-er","name":[{"family":"Er"}]})).await;
    let g = |prac: Option<&'static str>| UserGrant {
        role: "clinician",
        organization: Some("org-a"),
        fhir_user: prac,
        scope: "user/*.cruds",
        ..Default::default()
    };
    let dr = client_with_token(&user_token(dir, "dr.er", &g(Some("Practitioner/prac-er"))));
    let colleague = client_with_token(&user_token(dir, "dr.colleague", &g(None)));
    let glass =
        json!({"resourceType":"Parameters","parameter":[{"name":"reason","valueString":"unconscious in the ED"}]});
    let (status, text) = send(&ts, &dr, "POST", "/Patient/pat-b/$break-glass", Some(&glass)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(send(&ts, &dr, "GET", "/Patient/pat-b", None).await.0, 200);
    let care_team = |id: &str, member: &str| {
        json!({"resourceType":"CareTeam","id":id,"status":"active","subject":{"reference":"Patient/pat-b"},
            "participant":[{"member":{"reference":member}}]})
    };
    let managed = json!({"resourceType":"Patient","id":"pat-b","name":[{"family":"B"}],
        "managingOrganization":{"reference":"Organization/org-a"}});
    let tx = |r: &Value| {
        json!({"resourceType":"Bundle","type":"transaction","entry":[
            {"resource":r,"request":{"method":"POST","url":r["resourceType"]}}]})
    };
    let refused: Vec<(&str, &str, String, Value)> = vec![
        ("a cancelled Encounter", "POST", "/Encounter".into(), encounter_of("x1", "pat-b", "cancelled", "org-a")),
        ("a finished Encounter", "POST", "/Encounter".into(), encounter_of("x2", "pat-b", "finished", "org-a")),
        (
            "an Encounter by PUT",
            "PUT",
            "/Encounter/x3".into(),
            encounter_of("x3", "pat-b", "entered-in-error", "org-a"),
        ),
        (
            "an existing Encounter moved",
            "PUT",
            "/Encounter/enc-b".into(),
            encounter_of("enc-b", "pat-b", "finished", "org-a"),
        ),
        (
            "a conditional update",
            "PUT",
            "/Encounter?_id=x4".into(),
            encounter_of("x4", "pat-b", "in-progress", "org-a"),
        ),
        ("in a transaction", "POST", "".into(), tx(&encounter_of("x5", "pat-b", "in-progress", "org-a"))),
        ("a CareTeam listing the organization", "POST", "/CareTeam".into(), care_team("ct1", "Organization/org-a")),
        ("a CareTeam listing the clinician", "POST", "/CareTeam".into(), care_team("ct2", "Practitioner/prac-er")),
        ("a Consent permitting the organization", "POST", "/Consent".into(), consent("c1", "pat-b", "permit", "org-a")),
        ("the managing organization", "PUT", "/Patient/pat-b".into(), managed),
    ];
    for (what, method, path, body) in &refused {
        let (status, text) = send(&ts, &dr, method, path, Some(body)).await;
        assert_eq!(status, 403, "{what}: {text}");
        assert!(text.contains("break-the-glass"), "{what}: {text}");
    }
    // a JSON Patch moving B's encounter to the clinician's organization
    let patch = json!([{"op":"replace","path":"/serviceProvider/reference","value":"Organization/org-a"}]);
    let r = dr
        .patch(ts.fhir("/Encounter/enc-b"))
        .header("content-type", "application/json-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "{}", r.text().await.unwrap());
    // what relates B to no one new is written
    let obs = json!({"resourceType":"Observation","status":"final","code":{"text":"GCS 6"},"subject":{"reference":"Patient/pat-b"}});
    assert_eq!(send(&ts, &dr, "POST", "/Observation", Some(&obs)).await.0, 201);
    let (status, text) =
        send(&ts, &dr, "POST", "/Encounter", Some(&encounter_of("x6", "pat-b", "in-progress", "org-b"))).await;
    assert_eq!(status, 201, "an encounter B's own organization provides: {text}");
    let (status, text) = send(&ts, &dr, "POST", "/CareTeam", Some(&care_team("ct3", "Practitioner/prac-1"))).await;
    assert_eq!(status, 201, "a care team of someone else: {text}");
    // the refusals are in the audit trail, with their reason
    let sec = UserGrant { role: "security-admin", scope: "user/AuditEvent.rs", ..Default::default() };
    let sec = client_with_token(&user_token(dir, "sec", &sec));
    let b = json(sec.get(ts.fhir("/AuditEvent?altid=dr.er&_count=200")).send().await.unwrap()).await;
    let failed: Vec<&Value> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["resource"]["outcome"] == "4"
                && e["resource"]["outcomeDesc"].as_str().is_some_and(|d| d.contains("break-the-glass"))
        })
        .collect();
    assert!(failed.len() >= refused.len(), "{} of {}: {b}", failed.len(), refused.len());
    // the grant ends: nobody of org-a reaches B
    let repo = ts.system_repository("test-setup").await;
    assert_eq!(repo.remove_auth_records("break-glass", "acc-dr.er:").await.unwrap(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    for (who, c) in [("the clinician", &dr), ("a colleague", &colleague)] {
        let (status, text) = send(&ts, c, "GET", "/Patient/pat-b", None).await;
        assert_eq!(status, 404, "{who}: {text}");
        for path in ["/Observation?subject=Patient/pat-b", "/Encounter?subject=Patient/pat-b", "/Patient"] {
            let (_, text) = send(&ts, c, "GET", path, None).await;
            let ids = ids_of(&text);
            assert!(!text.contains(CANARY_B) && !ids.contains(&"pat-b".to_string()), "{who} {path}: {text}");
            if path != "/Patient" {
                assert!(ids.is_empty(), "{who} {path}: {text}");
            }
        }
    }
}

/// An Encounter that was cancelled or entered in error, and a CareTeam entered in
/// error, relate their patient to no one; an update to another status does, and back.
#[tokio::test(flavor = "multi_thread")]
async fn cancelled_or_erroneous_encounters_and_care_teams_relate_nobody() {
    let ts = TestServer::spawn().await;
    population(&ts).await;
    let dir = ts.data_dir.path();
    put(&ts, json!({"resourceType":"Organization","id":"org-c","name":"C"})).await;
    let g = UserGrant { role: "clinician", organization: Some("org-c"), scope: "user/*.cruds", ..Default::default() };
    let dr = client_with_token(&user_token(dir, "dr-c", &g));
    let sees = |patient: &'static str| {
        let (ts, dr) = (&ts, &dr);
        async move {
            let seen = send(ts, dr, "GET", &format!("/Patient/{patient}"), None).await.0 == 200;
            let (_, all) = send(ts, dr, "GET", "/Patient", None).await;
            assert_eq!(ids_of(&all).contains(&patient.to_string()), seen, "{all}");
            seen
        }
    };
    for status in ["cancelled", "entered-in-error"] {
        put(&ts, encounter_of("enc-c", "pat-b", status, "org-c")).await;
        assert!(!sees("pat-b").await, "a {status} encounter");
    }
    put(
        &ts,
        json!({"resourceType":"CareTeam","id":"ct-c","status":"entered-in-error","subject":{"reference":"Patient/pat-a"},
        "participant":[{"member":{"reference":"Organization/org-c"}}]}),
    )
    .await;
    assert!(!sees("pat-a").await, "a care team entered in error");
    put(&ts, encounter_of("enc-c", "pat-b", "in-progress", "org-c")).await;
    assert!(sees("pat-b").await);
    put(&ts, encounter_of("enc-c", "pat-b", "entered-in-error", "org-c")).await;
    assert!(!sees("pat-b").await, "corrected to entered-in-error");
}
