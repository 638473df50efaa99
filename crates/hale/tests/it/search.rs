//! Search over HTTP: every parameter type, modifier, prefix and result parameter.

use hale_test_support::{TestServer, bundle_link, entry_ids, json};
use serde_json::{Value, json};

use crate::{assert_outcome, first_expression};

async fn ids(s: &TestServer, q: &str) -> Vec<String> {
    let r = s.get(q).await;
    assert_eq!(r.status(), 200, "{q}");
    let b = json(r).await;
    let mut v: Vec<String> = b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

async fn put(s: &TestServer, v: Value) {
    let path = format!("/{}/{}", v["resourceType"].as_str().unwrap(), v["id"].as_str().unwrap());
    let r = s.put(&path, &v).await;
    assert!(r.status().is_success(), "{path}: {}", r.text().await.unwrap());
}

async fn fixture() -> TestServer {
    let s = TestServer::spawn().await;
    put(&s, json!({"resourceType":"Organization","id":"org1","name":"Springfield Clinic","identifier":[{"system":"http://orgs","value":"SC"}]})).await;
    put(&s, json!({"resourceType":"Practitioner","id":"dr1","name":[{"family":"Hibbert","given":["Julius"]}]})).await;
    put(&s, json!({"resourceType":"Patient","id":"p1","active":true,"gender":"female","birthDate":"1970-03-15",
        "name":[{"family":"Müller","given":["Émilie","Anne"]}],"telecom":[{"system":"email","value":"em@example.org"}],
        "identifier":[{"system":"http://mrn","value":"A,1","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]}}],
        "managingOrganization":{"reference":"Organization/org1"},"generalPractitioner":[{"reference":"Practitioner/dr1"}],
        "meta":{"tag":[{"system":"http://tags","code":"vip"}],"profile":["http://example.org/StructureDefinition/p"]}})).await;
    put(
        &s,
        json!({"resourceType":"Patient","id":"p2","active":false,"gender":"male","birthDate":"1985",
        "name":[{"family":"Smith","given":["John"]}],"identifier":[{"system":"http://mrn","value":"B2"}]}),
    )
    .await;
    put(&s, json!({"resourceType":"Patient","id":"p3","gender":"male","birthDate":"2001-07-04","name":[{"family":"Smithers","given":["Wayland"]}],
        "managingOrganization":{"reference":"Organization/org1"}})).await;
    for (id, pat, code, value, date) in [
        ("o1", "p1", "8867-4", "72", "2020-01-10T10:00:00Z"),
        ("o2", "p1", "8867-4", "88.5", "2021-06-01"),
        ("o3", "p2", "8867-4", "100", "2022-02"),
        ("o4", "p2", "29463-7", "81.25", "2023-03-03T08:00:00+02:00"),
    ] {
        let unit = if code == "8867-4" { "/min" } else { "kg" };
        let text = format!(
            r#"{{"resourceType":"Observation","id":"{id}","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"{code}","display":"Vital {code}"}}]}},"subject":{{"reference":"Patient/{pat}"}},"performer":[{{"reference":"Practitioner/dr1"}}],"effectiveDateTime":"{date}","valueQuantity":{{"value":{value},"unit":"{unit}","system":"http://unitsofmeasure.org","code":"{unit}"}}}}"#
        );
        let r = s
            .client
            .put(s.fhir(&format!("/Observation/{id}")))
            .header("content-type", "application/fhir+json")
            .body(text)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    put(&s, json!({"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},
        "clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},
        "code":{"text":"Hypertension"},"onsetPeriod":{"start":"2015-01-01"}})).await;
    put(&s, json!({"resourceType":"Provenance","id":"prov1","target":[{"reference":"Observation/o1"}],"recorded":"2020-01-10T10:00:00Z",
        "agent":[{"who":{"reference":"Practitioner/dr1"}}]})).await;
    put(
        &s,
        json!({"resourceType":"ValueSet","id":"vs1","status":"active","url":"http://example.org/fhir/ValueSet/a/b"}),
    )
    .await;
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn string_parameters() {
    let s = fixture().await;
    assert_eq!(ids(&s, "/Patient?name=smith").await, ["p2", "p3"], "starts-with, any part, case-insensitive");
    assert_eq!(ids(&s, "/Patient?name=emil").await, ["p1"], "accents ignored");
    assert_eq!(ids(&s, "/Patient?name=MULL").await, ["p1"]);
    assert_eq!(ids(&s, "/Patient?name:exact=Smith").await, ["p2"]);
    assert!(ids(&s, "/Patient?name:exact=smith").await.is_empty(), ":exact is case-sensitive");
    assert_eq!(ids(&s, "/Patient?name:contains=ithe").await, ["p3"]);
    assert_eq!(ids(&s, "/Patient?family=smith,muller").await, ["p1", "p2", "p3"], "OR with commas");
    assert_eq!(ids(&s, "/Patient?family=smith&given=way").await, ["p3"], "AND with several parameters");
    assert_eq!(ids(&s, "/Organization?name=springfield%20cl").await, ["org1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_parameters() {
    let s = fixture().await;
    assert_eq!(ids(&s, "/Patient?gender=male").await, ["p2", "p3"]);
    assert_eq!(ids(&s, "/Patient?gender:not=male").await, ["p1"]);
    assert_eq!(ids(&s, "/Patient?active=true").await, ["p1"]);
    assert_eq!(ids(&s, "/Observation?code=http://loinc.org%7C8867-4").await, ["o1", "o2", "o3"]);
    assert_eq!(ids(&s, "/Observation?code=29463-7").await, ["o4"]);
    assert!(ids(&s, "/Observation?code=%7C29463-7").await.is_empty(), "|code means no system");
    assert_eq!(ids(&s, "/Observation?code=http://loinc.org%7C").await.len(), 4, "system| means any code");
    assert_eq!(ids(&s, "/Observation?code:text=vital%2029463").await, ["o4"]);
    assert_eq!(ids(&s, r"/Patient?identifier=A\,1").await, ["p1"], "escaped comma");
    assert_eq!(
        ids(&s, "/Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203%7CMR%7CA%5C%2C1").await,
        ["p1"]
    );
    assert_eq!(ids(&s, "/Patient?email=em@example.org").await, ["p1"]);
    assert_eq!(ids(&s, "/Patient?_id=p1,p3").await, ["p1", "p3"]);
    assert_eq!(ids(&s, "/Patient?_tag=http://tags%7Cvip").await, ["p1"]);
    assert_eq!(ids(&s, "/Patient?_profile=http://example.org/StructureDefinition/p").await, ["p1"]);
    assert_eq!(ids(&s, "/Condition?clinical-status=active").await, ["c1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn date_parameters_with_prefixes_and_partial_dates() {
    let s = fixture().await;
    assert_eq!(ids(&s, "/Patient?birthdate=1970").await, ["p1"], "a day inside a year");
    assert_eq!(ids(&s, "/Patient?birthdate=1985").await, ["p2"]);
    assert!(ids(&s, "/Patient?birthdate=1985-06-01").await.is_empty(), "a year is not inside a day");
    assert_eq!(ids(&s, "/Patient?birthdate=gt1980").await, ["p2", "p3"]);
    assert_eq!(ids(&s, "/Patient?birthdate=lt1985").await, ["p1"]);
    assert_eq!(ids(&s, "/Patient?birthdate=ge1985").await, ["p2", "p3"]);
    assert_eq!(ids(&s, "/Patient?birthdate=le1985").await, ["p1", "p2"]);
    assert_eq!(ids(&s, "/Patient?birthdate=lt1985-06-01").await, ["p1", "p2"], "the year 1985 starts before June");
    assert_eq!(ids(&s, "/Patient?birthdate=sa1985").await, ["p3"]);
    assert_eq!(ids(&s, "/Patient?birthdate=eb1985").await, ["p1"]);
    assert_eq!(ids(&s, "/Patient?birthdate=ne1985").await, ["p1", "p3"]);
    assert_eq!(ids(&s, "/Patient?birthdate=ge1960&birthdate=lt1990").await, ["p1", "p2"]);
    assert_eq!(ids(&s, "/Observation?date=2022").await, ["o3"]);
    assert_eq!(ids(&s, "/Observation?date=2023-03-03T06:00:00Z").await, ["o4"], "time zones");
    assert_eq!(ids(&s, "/Observation?date=ge2021-06-01&date=le2022-12-31").await, ["o2", "o3"]);
    assert_eq!(ids(&s, "/Condition?onset-date=gt2020").await, ["c1"], "an open-ended period");
    let last = ids(&s, "/Patient?_lastUpdated=gt2000-01-01").await;
    assert_eq!(last.len(), 3);
    assert!(ids(&s, "/Patient?_lastUpdated=lt2000-01-01").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn number_and_quantity_parameters() {
    let s = fixture().await;
    assert_eq!(ids(&s, "/Observation?value-quantity=72").await, ["o1"]);
    assert_eq!(ids(&s, "/Observation?value-quantity=88").await, Vec::<String>::new(), "88 means [87.5, 88.5)");
    assert_eq!(ids(&s, "/Observation?value-quantity=88.5").await, ["o2"]);
    assert_eq!(ids(&s, "/Observation?value-quantity=1e2").await, ["o1", "o2", "o3", "o4"], "1e2 is [50, 150)");
    assert_eq!(ids(&s, "/Observation?value-quantity=1.0e2").await, ["o3"], "1.0e2 is [95, 105)");
    assert_eq!(ids(&s, "/Observation?value-quantity=gt85").await, ["o2", "o3"]);
    assert_eq!(ids(&s, "/Observation?value-quantity=le81.25").await, ["o1", "o4"]);
    assert_eq!(ids(&s, "/Observation?value-quantity=gt80%7Chttp://unitsofmeasure.org%7Ckg").await, ["o4"]);
    assert_eq!(ids(&s, "/Observation?value-quantity=gt80%7C%7Ckg").await, ["o4"]);
    assert_eq!(ids(&s, "/Observation?value-quantity=ap80").await, ["o1", "o4"], "within 10%: 72 to 88");
}

#[tokio::test(flavor = "multi_thread")]
async fn composite_parameters() {
    let s = fixture().await;
    put(&s, json!({"resourceType":"Observation","id":"bp1","status":"final","subject":{"reference":"Patient/p1"},
        "code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"effectiveDateTime":"2021-01-01",
        "component":[
          {"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":150,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}},
          {"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":70,"system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]})).await;
    // code and value from the same Observation
    assert_eq!(ids(&s, "/Observation?code-value-quantity=http://loinc.org%7C8867-4$gt80").await, ["o2", "o3"]);
    assert_eq!(ids(&s, "/Observation?code-value-quantity=8867-4$lt80,29463-7$gt80").await, ["o1", "o4"], "OR");
    assert!(ids(&s, "/Observation?code-value-quantity=29463-7$lt80").await.is_empty());
    assert_eq!(ids(&s, "/Observation?code-value-quantity=8867-4$100%7Chttp://unitsofmeasure.org%7C/min").await, ["o3"]);
    // components pair within one component element, not across them
    assert_eq!(ids(&s, "/Observation?component-code-value-quantity=8480-6$gt140").await, ["bp1"]);
    assert!(ids(&s, "/Observation?component-code-value-quantity=8462-4$gt140").await.is_empty(), "diastolic is 70");
    assert_eq!(ids(&s, "/Observation?component-code-value-quantity=http://loinc.org%7C8462-4$le70").await, ["bp1"]);
    assert_eq!(
        ids(&s, "/Observation?component-code-value-quantity=8480-6$gt140&component-code-value-quantity=8462-4$lt80")
            .await,
        ["bp1"],
        "AND of two components"
    );
    assert_eq!(ids(&s, "/Observation?combo-code-value-quantity=8462-4$70").await, ["bp1"]);
    // an escaped $ is part of the value, the wrong number of parts is an error
    let r = s.get("/Observation?code-value-quantity=8867-4").await;
    assert_eq!(r.status(), 400);
    assert_eq!(first_expression(&json(r).await).as_deref(), Some("code-value-quantity"));
    let r = s.get("/Observation?code-value-quantity=8867-4$abc").await;
    assert_eq!(r.status(), 400);
    assert!(ids(&s, r"/Observation?code-value-quantity=88\$67-4$72").await.is_empty());
    // the index follows updates
    put(&s, json!({"resourceType":"Observation","id":"bp1","status":"final","code":{"text":"BP"},
        "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"valueQuantity":{"value":120}}]}))
    .await;
    assert!(ids(&s, "/Observation?component-code-value-quantity=8480-6$gt140").await.is_empty());
    assert_eq!(ids(&s, "/Observation?component-code-value-quantity=8480-6$120").await, ["bp1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn reference_parameters_chains_and_has() {
    let s = fixture().await;
    assert_eq!(ids(&s, "/Observation?subject=Patient/p1").await, ["o1", "o2"]);
    // an absolute reference on this server's own base finds the stored relative one
    let own = s.fhir("/Patient/p1");
    assert_eq!(ids(&s, &format!("/Observation?subject={own}")).await, ["o1", "o2"]);
    assert_eq!(ids(&s, &format!("/Observation?subject={own},Patient/nobody")).await, ["o1", "o2"]);
    assert!(ids(&s, "/Observation?subject=http://elsewhere.example/fhir/Patient/p1").await.is_empty());
    assert_eq!(ids(&s, "/Observation?patient=p2").await, ["o3", "o4"]);
    assert_eq!(ids(&s, "/Observation?subject:Patient=p2").await, ["o3", "o4"]);
    assert_eq!(ids(&s, "/Patient?organization:missing=true").await, ["p2"]);
    assert_eq!(ids(&s, "/Patient?organization:missing=false").await, ["p1", "p3"]);
    assert_eq!(ids(&s, "/Observation?subject:Patient.name=smith").await, ["o3", "o4"], "chain");
    assert_eq!(
        ids(&s, "/Observation?subject:Patient.organization.name=springfield").await,
        ["o1", "o2"],
        "two-level chain"
    );
    assert_eq!(ids(&s, "/Observation?patient.gender=female").await, ["o1", "o2"]);
    assert_eq!(ids(&s, "/Patient?_has:Observation:patient:code=29463-7").await, ["p2"]);
    assert_eq!(
        ids(&s, "/Patient?_has:Observation:subject:_has:Provenance:target:agent=Practitioner/dr1").await,
        ["p1"],
        "nested _has"
    );
    assert_eq!(ids(&s, "/ValueSet?url:below=http://example.org/fhir/ValueSet").await, ["vs1"]);
    assert_eq!(ids(&s, "/ValueSet?url:above=http://example.org/fhir/ValueSet/a/b/c").await, ["vs1"]);
    assert_eq!(ids(&s, "/ValueSet?url=http://example.org/fhir/ValueSet/a/b").await, ["vs1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn include_revinclude_and_compartments() {
    let s = fixture().await;
    let b = json(s.get("/Observation?_id=o1&_include=Observation:subject&_revinclude=Provenance:target").await).await;
    let mut got: Vec<(String, String)> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["search"]["mode"].as_str().unwrap().to_string(),
                format!(
                    "{}/{}",
                    e["resource"]["resourceType"].as_str().unwrap(),
                    e["resource"]["id"].as_str().unwrap()
                ),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("include".into(), "Patient/p1".into()),
            ("include".into(), "Provenance/prov1".into()),
            ("match".into(), "Observation/o1".into())
        ]
    );
    let b = json(s.get("/Observation?_id=o1&_include=Observation:subject&_include:iterate=Patient:organization").await)
        .await;
    assert_eq!(b["entry"].as_array().unwrap().len(), 3, "iterate reaches the organization");
    let b = json(s.get("/Observation?_id=o1&_include=*").await).await;
    assert_eq!(
        b["entry"].as_array().unwrap().len(),
        3,
        "subject, patient and performer targets: Patient and Practitioner"
    );
    assert_eq!(ids(&s, "/Patient/p1/Observation").await, ["o1", "o2"]);
    assert_eq!(ids(&s, "/Patient/p1/Observation?code=8867-4&date=2021").await, ["o2"]);
    assert_eq!(s.get("/Patient/p1/Organization").await.status(), 400, "not in the compartment");
    let all = json(s.get("/Patient/p1/$everything").await).await;
    let mut kinds: Vec<String> = all["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!("{}/{}", e["resource"]["resourceType"].as_str().unwrap(), e["resource"]["id"].as_str().unwrap())
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["Condition/c1", "Observation/o1", "Observation/o2", "Organization/org1", "Patient/p1", "Practitioner/dr1"]
    );
    let only = json(s.get("/Patient/p1/$everything?_type=Observation&_count=1").await).await;
    assert_eq!(only["entry"].as_array().unwrap().len(), 1);
    let next = only["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let second = json(s.client.get(next).send().await.unwrap()).await;
    assert_eq!(second["entry"][0]["resource"]["id"], "o2");
}

#[tokio::test(flavor = "multi_thread")]
async fn sorting_paging_and_result_parameters() {
    let s = fixture().await;
    let b = json(s.get("/Patient?_sort=-birthdate").await).await;
    let order: Vec<&str> =
        b["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert_eq!(order, ["p3", "p2", "p1"]);
    let b = json(s.get("/Patient?_sort=gender,-birthdate").await).await;
    let order: Vec<&str> =
        b["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert_eq!(order, ["p1", "p3", "p2"], "ties broken by the next key");
    // paging through next links while writing: nothing repeats, nothing is missed
    let mut url = s.fhir("/Observation?_sort=date&_count=1");
    let mut seen = Vec::new();
    while let Some(u) = Some(url.clone()) {
        let page = json(s.client.get(&u).send().await.unwrap()).await;
        seen.extend(entry_ids(&page));
        if seen.len() == 1 {
            // a new observation dated before everything does not shift later pages
            put(&s, json!({"resourceType":"Observation","id":"o0","status":"final","code":{"text":"x"},"effectiveDateTime":"1999-01-01"})).await;
        }
        match bundle_link(&page, "next") {
            Some(n) => url = n,
            None => break,
        }
    }
    assert_eq!(seen, ["o1", "o2", "o3", "o4"]);
    // and back through previous links, sorted descending with two a page
    let first = json(s.get("/Observation?_sort=-date&_count=2").await).await;
    assert_eq!(entry_ids(&first), ["o4", "o3"]);
    assert!(bundle_link(&first, "previous").is_none(), "the first page has no previous page");
    let second = json(s.client.get(bundle_link(&first, "next").unwrap()).send().await.unwrap()).await;
    assert_eq!(entry_ids(&second), ["o2", "o1"]);
    let third = json(s.client.get(bundle_link(&second, "next").unwrap()).send().await.unwrap()).await;
    assert_eq!(entry_ids(&third), ["o0"]);
    assert!(bundle_link(&third, "next").is_none());
    let back = json(s.client.get(bundle_link(&third, "previous").unwrap()).send().await.unwrap()).await;
    assert_eq!(entry_ids(&back), ["o2", "o1"]);
    let back = json(s.client.get(bundle_link(&back, "previous").unwrap()).send().await.unwrap()).await;
    assert_eq!(entry_ids(&back), ["o4", "o3"]);
    assert!(bundle_link(&back, "previous").is_none());
    assert_eq!(
        entry_ids(&json(s.client.get(bundle_link(&back, "next").unwrap()).send().await.unwrap()).await),
        ["o2", "o1"]
    );
    let b = json(s.get("/Observation?_summary=count").await).await;
    assert_eq!(b["total"], 5);
    assert!(b.get("entry").is_none());
    let b = json(s.get("/Patient?_id=p1&_elements=gender").await).await;
    let p = &b["entry"][0]["resource"];
    assert!(p.get("gender").is_some() && p.get("name").is_none());
    assert_eq!(p["meta"]["tag"].as_array().unwrap().iter().filter(|t| t["code"] == "SUBSETTED").count(), 1);
    let b = json(s.get("/Patient?_id=p1&_summary=true").await).await;
    assert!(b["entry"][0]["resource"].get("name").is_some());
    let b = json(s.get("/Patient?_total=none").await).await;
    assert!(b.get("total").is_none());
    let b = json(s.get("/Patient?_total=accurate&_count=1").await).await;
    assert_eq!(b["total"], 3);
    // POST _search
    let r = s
        .client
        .post(s.fhir("/Patient/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("gender=male&name=smithers")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["entry"][0]["resource"]["id"], "p3");
}

#[tokio::test(flavor = "multi_thread")]
async fn system_search_with_type() {
    let s = fixture().await;
    let kinds = |b: &Value| -> Vec<String> {
        b["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!("{}/{}", e["resource"]["resourceType"].as_str().unwrap(), e["resource"]["id"].as_str().unwrap())
            })
            .collect()
    };
    let b = json(s.get("?_type=Patient,Observation&_id=p1,o1,o4").await).await;
    assert_eq!(b["total"], 3);
    assert_eq!(kinds(&b), ["Patient/p1", "Observation/o1", "Observation/o4"], "type by type, in _type's order");
    // parameters common to both types; pages cross from one type to the next
    let mut url = s.fhir("?_type=Condition,Observation&patient=Patient/p1&_count=2");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let b = json(s.client.get(&url).send().await.unwrap()).await;
        pages += 1;
        seen.extend(kinds(&b));
        match bundle_link(&b, "next") {
            Some(n) => url = n,
            None => break,
        }
    }
    assert_eq!(seen, ["Condition/c1", "Observation/o1", "Observation/o2"]);
    assert_eq!(pages, 2);
    // without _type: every type, only the common parameters
    let b = json(s.get("?_tag=http://tags%7Cvip").await).await;
    assert_eq!(kinds(&b), ["Patient/p1"]);
    let b = json(s.get("?_lastUpdated=gt2000&_summary=count").await).await;
    assert_eq!(b["total"], 12);
    for (q, expr) in
        [("?_type=Patient,Nope", "_type"), ("?_type=Patient,Observation&name=x", "name"), ("?gender=male", "gender")]
    {
        let r = s.get(q).await;
        assert_eq!(r.status(), 400, "{q}");
        let oo = json(r).await;
        assert_outcome(&oo);
        assert_eq!(first_expression(&oo).as_deref(), Some(expr), "{q}");
    }
    // an unknown parameter is refused when the client asks for strict handling
    let r = s.client.get(s.fhir("/Patient?nonsense=1")).header("prefer", "handling=strict").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let oo = json(r).await;
    assert_outcome(&oo);
    assert_eq!(first_expression(&oo).as_deref(), Some("nonsense"));
}

#[tokio::test(flavor = "multi_thread")]
async fn more_modifiers_and_result_parameters() {
    let s = fixture().await;
    put(
        &s,
        json!({"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"AMB"},
        "subject":{"reference":"Patient/p1"},"serviceProvider":{"identifier":{"system":"http://orgs","value":"SC"}},
        "meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}],
                "source":"http://example.org/feed#1"}}),
    )
    .await;
    assert_eq!(
        ids(&s, "/Encounter?service-provider:identifier=http://orgs%7CSC").await,
        ["e1"],
        "reference :identifier"
    );
    assert!(ids(&s, "/Encounter?service-provider:identifier=http://orgs%7CXX").await.is_empty());
    assert_eq!(ids(&s, "/Encounter?_security=R").await, ["e1"]);
    assert_eq!(ids(&s, "/Encounter?_source=http://example.org/feed%231").await, ["e1"]);
    assert_eq!(ids(&s, "/ValueSet?url:contains=fhir/ValueSet/a").await, ["vs1"], "uri :contains");
    assert_eq!(ids(&s, "/Patient?birthdate:missing=false").await, ["p1", "p2", "p3"]);
    assert!(ids(&s, "/Patient?birthdate:missing=true").await.is_empty());
    assert_eq!(ids(&s, "/Patient?active:missing=true").await, ["p3"], "missing boolean");
    // _summary variants
    let b = json(s.get("/Patient?_id=p1&_summary=data").await).await;
    let p = &b["entry"][0]["resource"];
    assert!(p.get("text").is_none() && p.get("name").is_some());
    let b = json(s.get("/Patient?_id=p1&_summary=text").await).await;
    let p = &b["entry"][0]["resource"];
    assert!(p.get("name").is_none() && p.get("id").is_some(), "{p}");
    let b = json(s.get("/Patient?_id=p1&_summary=false").await).await;
    assert!(b["entry"][0]["resource"].get("telecom").is_some());
    let b = json(s.get("/Patient?_total=estimate&_count=1").await).await;
    assert_eq!(b["total"], 3, "an estimate may be exact");
    // $everything with _since keeps only what changed after it
    let later = json(s.get("/Patient/p1/$everything?_since=2999-01-01T00:00:00Z").await).await;
    assert!(later.get("entry").is_none(), "{later}");
    let all = json(s.get("/Patient/p1/$everything?_since=2000-01-01T00:00:00Z").await).await;
    assert!(all["entry"].as_array().unwrap().len() >= 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_search_input() {
    let s = fixture().await;
    for (q, expr) in [
        ("/Patient?birthdate=yesterday", "birthdate"),
        ("/Patient?name:below=x", "name:below"),
        ("/Patient?_sort=nonsense", "_sort"),
        ("/Patient?_count=many", "_count"),
        ("/Observation?subject:Patient.nonsense=1", "subject:Patient.nonsense"),
        ("/Observation?value-quantity=abc", "value-quantity"),
        ("/Patient?_include=Observation:subject", "_include"),
        // multi-byte characters where a date's digits were expected (once a panic, 500)
        ("/Patient?birthdate=2020-01-01T%C3%A912345", "birthdate"),
    ] {
        let r = s.get(q).await;
        assert_eq!(r.status(), 400, "{q}");
        let oo = json(r).await;
        assert_outcome(&oo);
        assert_eq!(first_expression(&oo).as_deref(), Some(expr), "{q}");
    }
    for cursor in ["00ff", "a%C3%A9b"] {
        let r = s.get(&format!("/Patient?_cursor={cursor}")).await;
        assert_eq!(r.status(), 400, "{cursor}");
        assert_outcome(&json(r).await);
    }
    // by default (R4, search, "handling errors") and under `Prefer: handling=lenient` an
    // unknown parameter is ignored: left out of the self link and named in an
    // OperationOutcome entry of the searchset
    for prefer in [None, Some("handling=lenient")] {
        let mut get = s.client.get(s.fhir("/Patient?nonsense=1&gender=male&x-vendor=2"));
        if let Some(p) = prefer {
            get = get.header("prefer", p);
        }
        let r = get.send().await.unwrap();
        assert_eq!(r.status(), 200, "{prefer:?}");
        let b = json(r).await;
        assert_eq!(b["total"], 2);
        let self_link = b["link"][0]["url"].as_str().unwrap();
        assert!(!self_link.contains("nonsense") && self_link.contains("gender=male"), "{self_link}");
        let entries = b["entry"].as_array().unwrap();
        let outcomes: Vec<&Value> = entries.iter().filter(|e| e["search"]["mode"] == "outcome").collect();
        assert_eq!(outcomes.len(), 1, "{b}");
        let oo = &outcomes[0]["resource"];
        assert_eq!(oo["resourceType"], "OperationOutcome");
        let named: Vec<&str> =
            oo["issue"].as_array().unwrap().iter().map(|i| i["expression"][0].as_str().unwrap()).collect();
        assert_eq!(named, ["nonsense", "x-vendor"]);
        assert!(oo["issue"].as_array().unwrap().iter().all(|i| i["severity"] == "warning"));
        assert_eq!(entries.iter().filter(|e| e["search"]["mode"] == "match").count(), 2);
    }
    // a count query with a vendor parameter (as a widely used client sends)
    let b = json(s.get("/Patient?_summary=count&x-vendor=1").await).await;
    assert_eq!(b["total"], 3, "{b}");
    // an unsupported modifier of a known parameter is refused even so (ignoring it would
    // widen the answer)
    assert_eq!(s.get("/Patient?gender:below=male").await.status(), 400);
}

/// An operator who wants strict handling by default sets `strict_search`: an unknown
/// parameter is then a 400 unless the client asks for lenient handling.
#[tokio::test(flavor = "multi_thread")]
async fn stored_references_on_the_servers_own_base_are_found_as_relative_ones() {
    let base = "https://ehr.example.org/fhir";
    let s = TestServer::spawn_with(|c| c.public_base_url = base.into()).await;
    put(&s, json!({"resourceType":"Patient","id":"p1","active":true})).await;
    let obs = |id: &str, subject: &str| {
        json!({"resourceType":"Observation","id":id,"status":"final","code":{"text":"HR"},
            "subject":{"reference":subject}})
    };
    put(&s, obs("abs", &format!("{base}/Patient/p1"))).await;
    put(&s, obs("rel", "Patient/p1")).await;
    put(&s, obs("other", "https://elsewhere.example/fhir/Patient/p1")).await;
    // a relative search value finds the absolute reference on this base, and not another
    // server's; an absolute one on this base finds both
    assert_eq!(ids(&s, "/Observation?subject=Patient/p1").await, ["abs", "rel"]);
    assert_eq!(ids(&s, "/Observation?patient=p1").await, ["abs", "rel"]);
    assert_eq!(ids(&s, &format!("/Observation?subject={base}/Patient/p1")).await, ["abs", "rel"]);
    assert_eq!(ids(&s, "/Observation?subject=https://elsewhere.example/fhir/Patient/p1").await, ["other"]);
    // the compartment, _include and the stored text as written
    assert_eq!(ids(&s, "/Patient/p1/Observation").await, ["abs", "rel"]);
    let b = json(s.get("/Observation?_id=abs&_include=Observation:subject").await).await;
    assert!(entry_ids(&b).contains(&"p1".to_string()), "{b}");
    let stored = json(s.get("/Observation/abs").await).await;
    assert_eq!(stored["subject"]["reference"], format!("{base}/Patient/p1"));
    // the patient's own token sees it: it is held to their record
    let g = hale_test_support::UserGrant {
        role: "patient",
        patients: &["p1"],
        scope: "patient/*.rs",
        launch_patient: Some("p1"),
        ..Default::default()
    };
    let c = hale_test_support::client_with_token(&hale_test_support::user_token(s.data_dir.path(), "pa", &g));
    let r = c.get(s.fhir("/Observation/abs")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(s.fhir("/Observation/other")).send().await.unwrap();
    assert_eq!(r.status(), 404, "another server's patient p1 is not this one");
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_search_by_configuration() {
    let s = TestServer::spawn_with(|c| c.strict_search = true).await;
    let r = s.get("/Patient?nonsense=1").await;
    assert_eq!(r.status(), 400);
    assert_eq!(first_expression(&json(r).await).as_deref(), Some("nonsense"));
    let r = s.client.get(s.fhir("/Patient?nonsense=1")).header("prefer", "handling=lenient").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_and_deletes_change_what_search_finds() {
    let s = fixture().await;
    put(&s, json!({"resourceType":"Patient","id":"p2","gender":"female","name":[{"family":"Jones"}]})).await;
    assert!(ids(&s, "/Patient?name=smith").await == ["p3"]);
    assert_eq!(ids(&s, "/Patient?name=jones").await, ["p2"]);
    s.delete("/Patient/p3").await;
    assert!(ids(&s, "/Patient?name=smith").await.is_empty());
    assert!(ids(&s, "/Patient?gender=male").await.is_empty());
}

#[tokio::test]
async fn searches_pinned_to_one_patient_find_what_the_patient_key_holds() {
    let s = fixture().await;
    let appointment = |id: &str, status: &str, patients: &[&str]| {
        let mut participants: Vec<Value> = patients
            .iter()
            .map(|p| json!({"actor":{"reference":format!("Patient/{p}")},"status":"accepted"}))
            .collect();
        participants.push(json!({"actor":{"reference":"Practitioner/dr1"},"status":"accepted"}));
        json!({"resourceType":"Appointment","id":id,"status":status,"participant":participants,
            "start":"2025-03-01T09:00:00Z","end":"2025-03-01T09:20:00Z"})
    };
    // one appointment of two patients, one of the first alone, one of nobody's
    put(&s, appointment("a12", "booked", &["p1", "p2"])).await;
    put(&s, appointment("a1", "booked", &["p1"])).await;
    put(&s, appointment("a0", "booked", &[])).await;
    put(&s, appointment("a1c", "cancelled", &["p1"])).await;
    assert_eq!(ids(&s, "/Appointment?patient=p1&status=booked").await, ["a1", "a12"]);
    assert_eq!(ids(&s, "/Appointment?patient=Patient/p2&status=booked,cancelled").await, ["a12"]);
    assert_eq!(ids(&s, "/Appointment?status=cancelled&patient:Patient=p1").await, ["a1c"]);
    let r = json(s.get("/Appointment?patient=p1&status=booked&_summary=count").await).await;
    assert_eq!(r["total"], 2);
    assert_eq!(ids(&s, "/Appointment?status=booked").await, ["a0", "a1", "a12"]);
    assert!(ids(&s, "/Appointment?patient=p3&status=booked").await.is_empty());
    // the key follows the resource: p2 leaves a12, a0 gains p3, a1 is deleted
    put(&s, appointment("a12", "booked", &["p1"])).await;
    put(&s, appointment("a0", "booked", &["p3"])).await;
    s.delete("/Appointment/a1").await;
    assert!(ids(&s, "/Appointment?patient=p2&status=booked").await.is_empty());
    assert_eq!(ids(&s, "/Appointment?patient=p3&status=booked").await, ["a0"]);
    assert_eq!(ids(&s, "/Appointment?patient=p1&status=booked").await, ["a12"]);
    // the key is the target id of `patient`, whatever its type; the reference is checked
    let device_use = |id: &str, subject: &str| {
        json!({"resourceType":"DeviceUseStatement","id":id,"status":"active","identifier":[{"value":"u1"}],
            "subject":{"reference":subject},"device":{"reference":"Device/d1"}})
    };
    put(&s, device_use("du-group", "Group/p1")).await;
    put(&s, device_use("du-patient", "Patient/p1")).await;
    assert_eq!(ids(&s, "/DeviceUseStatement?patient=p1&identifier=u1").await, ["du-group", "du-patient"]);
    assert_eq!(ids(&s, "/DeviceUseStatement?patient=Patient/p1&identifier=u1").await, ["du-patient"]);
    // subject=Patient/X pins the patient where `patient` is the subject's Patient
    let vital = |id: &str, subject: &str| {
        json!({"resourceType":"Observation","id":id,"status":"final","subject":{"reference":subject},
            "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"survey"}]}],
            "code":{"text":"pulse"}})
    };
    put(&s, vital("v-patient", "Patient/p1")).await;
    put(&s, vital("v-group", "Group/p1")).await;
    assert_eq!(ids(&s, "/Observation?subject=Patient/p1&category=survey").await, ["v-patient"]);
    assert_eq!(ids(&s, "/Observation?subject:Patient=p1&category=survey").await, ["v-patient"]);
    assert_eq!(ids(&s, "/Observation?subject=p1&category=survey").await, ["v-group", "v-patient"]);
    assert_eq!(ids(&s, "/Observation?subject=Group/p1&category=survey").await, ["v-group"]);
    // paging within the patient's matches
    for i in 0..5 {
        put(&s, appointment(&format!("b{i}"), "booked", &["p2"])).await;
    }
    let first = json(s.get("/Appointment?patient=p2&status=booked&_count=2").await).await;
    assert_eq!(first["entry"].as_array().unwrap().len(), 2);
    let mut seen = entry_ids(&first);
    let mut next = bundle_link(&first, "next");
    while let Some(url) = next {
        let page = json(s.client.get(url).send().await.unwrap()).await;
        seen.extend(entry_ids(&page));
        next = bundle_link(&page, "next");
    }
    seen.sort();
    assert_eq!(seen, ["b0", "b1", "b2", "b3", "b4"]);
}

/// Patient `deceased` is a boolean for every patient (R4 expression
/// `Patient.deceased.exists() and Patient.deceased != false`): `deceased=false` finds
/// the living, with or without a `deceased` element.
#[tokio::test(flavor = "multi_thread")]
async fn deceased_false_finds_the_living_without_the_element() {
    let s = TestServer::spawn().await;
    for (id, extra) in [
        ("alive", json!({})),
        ("alive-said", json!({"deceasedBoolean": false})),
        ("dead", json!({"deceasedBoolean": true})),
        ("dead-dated", json!({"deceasedDateTime": "2020-03-04"})),
    ] {
        let mut p = json!({"resourceType":"Patient","id":id,"name":[{"family":"Vital"}]});
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        assert!(s.put(&format!("/Patient/{id}"), &p).await.status().is_success());
    }
    let mut living = entry_ids(&json(s.get("/Patient?family=Vital&deceased=false").await).await);
    living.sort();
    assert_eq!(living, ["alive", "alive-said"]);
    let mut dead = entry_ids(&json(s.get("/Patient?family=Vital&deceased=true").await).await);
    dead.sort();
    assert_eq!(dead, ["dead", "dead-dated"]);
    let missing = entry_ids(&json(s.get("/Patient?family=Vital&deceased:missing=true").await).await);
    assert!(missing.is_empty(), "the boolean is never missing: {missing:?}");
}

/// A name or an address matches by any part (R4 search, string: `family=quinones` finds
/// "Carreño Quiñones"); `:exact` and sorting still go by the whole value.
#[tokio::test(flavor = "multi_thread")]
async fn names_and_addresses_match_by_any_part() {
    let s = TestServer::spawn().await;
    for (id, family, given, line) in [
        ("cq", "Carreño Quiñones", "Mary-Ann", "12 Main Street"),
        ("za", "Zed Adams", "Lou", "4 Elm Road"),
        ("br", "Brown", "Jo", "9 Oak Lane"),
    ] {
        let p = json!({"resourceType":"Patient","id":id,"name":[{"family":family,"given":[given]}],
            "address":[{"line":[line]}]});
        assert!(s.put(&format!("/Patient/{id}"), &p).await.status().is_success());
    }
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(entry_ids(&json(s.get("/Patient?family=quinones").await).await), ["cq"]);
    assert_eq!(entry_ids(&json(s.get("/Patient?family=carreno").await).await), ["cq"]);
    assert_eq!(entry_ids(&json(s.get("/Patient?given=ann").await).await), ["cq"]);
    assert_eq!(entry_ids(&json(s.get("/Patient?name=adams").await).await), ["za"]);
    assert_eq!(entry_ids(&json(s.get("/Patient?address=main").await).await), ["cq"]);
    assert!(entry_ids(&json(s.get("/Patient?family=uinones").await).await).is_empty(), "a part starts a word");
    assert!(entry_ids(&json(s.get("/Patient?family:exact=Quiñones").await).await).is_empty());
    assert_eq!(entry_ids(&json(s.get("/Patient?family:exact=Carre%C3%B1o%20Qui%C3%B1ones").await).await), ["cq"]);
    assert_eq!(sorted(entry_ids(&json(s.get("/Patient?family:contains=a").await).await)), ["cq", "za"]);
    // sorted by the whole family name: Brown, Carreño Quiñones, Zed Adams
    assert_eq!(entry_ids(&json(s.get("/Patient?_sort=family").await).await), ["br", "cq", "za"]);
    assert_eq!(entry_ids(&json(s.get("/Patient?_sort=-family").await).await), ["za", "cq", "br"]);
}

/// Search parameters whose R4 expression has no resource-type prefix (InsurancePlan
/// `name`: `name | alias`) index their elements, so the search finds the resource.
#[tokio::test(flavor = "multi_thread")]
async fn parameters_written_without_the_type_prefix_are_indexed() {
    let s = TestServer::spawn().await;
    let plan =
        json!({"resourceType":"InsurancePlan","id":"gold","status":"active","name":"Gold Plan","alias":["Aurum"]});
    assert!(s.put("/InsurancePlan/gold", &plan).await.status().is_success());
    assert_eq!(entry_ids(&json(s.get("/InsurancePlan?name=gold").await).await), ["gold"]);
    assert_eq!(entry_ids(&json(s.get("/InsurancePlan?name=aurum").await).await), ["gold"]);
    assert!(entry_ids(&json(s.get("/InsurancePlan?name=silver").await).await).is_empty());
}

/// Recursion has limits a client cannot lift: a chain or `_has` nested deeper than
/// `MAX_CHAIN_DEPTH` levels is refused with 400 naming the parameter, and
/// `_include:iterate` follows at most `MAX_INCLUDE_ITERATIONS` further rounds, however long
/// the chain of references (here Organizations each part of the next).
#[tokio::test(flavor = "multi_thread")]
async fn chains_has_and_include_iterate_are_bounded() {
    let s = TestServer::spawn().await;
    for i in 0..8 {
        let mut org = json!({"resourceType":"Organization","id":format!("lvl{i}"),"name":format!("Level {i}")});
        if i < 7 {
            org["partOf"] = json!({"reference": format!("Organization/lvl{}", i + 1)});
        }
        assert!(s.put(&format!("/Organization/lvl{i}"), &org).await.status().is_success());
    }
    let max = hale_search::parse::MAX_CHAIN_DEPTH;
    // a chain as deep as allowed is answered; one level more is refused
    let chain = |levels: usize| format!("/Organization?{}name=Level", "partof.".repeat(levels));
    assert_eq!(s.get(&chain(max)).await.status(), 200);
    let r = s.get(&chain(max + 1)).await;
    assert_eq!(r.status(), 400);
    let oo = json(r).await;
    assert_outcome(&oo);
    assert!(first_expression(&oo).unwrap().starts_with("partof."), "{oo}");
    let has = |levels: usize| format!("/Organization?{}name=Level", "_has:Organization:partof:".repeat(levels));
    assert_eq!(s.get(&has(max)).await.status(), 200);
    assert_eq!(s.get(&has(max + 1)).await.status(), 400);
    // _include:iterate stops after its rounds
    let b = json(s.get("/Organization?_id=lvl0&_include:iterate=Organization:partof").await).await;
    let mut included: Vec<String> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    included.sort();
    let rounds = hale_search::parse::MAX_INCLUDE_ITERATIONS + 1;
    let expected: Vec<String> = (1..=rounds).map(|i| format!("lvl{i}")).collect();
    assert_eq!(included, expected, "the first round and {} iterations", rounds - 1);
}
