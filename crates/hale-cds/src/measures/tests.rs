use super::*;
use serde_json::json;

fn patient(birth: &str) -> Value {
    json!({"resourceType": "Patient", "id": "p", "birthDate": birth})
}

fn woman(birth: &str) -> Value {
    json!({"resourceType": "Patient", "id": "w", "birthDate": birth, "gender": "female"})
}

fn condition(code: &str) -> Value {
    json!({"resourceType": "Condition", "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "clinicalStatus": {"coding": [{"code": "active"}]}})
}

fn condition_since(code: &str, onset: &str) -> Value {
    let mut c = condition(code);
    c["onsetDateTime"] = json!(onset);
    c
}

fn a1c(v: f64, d: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]}, "effectiveDateTime": d, "valueQuantity": {"value": v}})
}

fn obs(code: &str, d: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "effectiveDateTime": d})
}

fn bp(s: f64, d: f64, when: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"code": "85354-9"}]}, "effectiveDateTime": when,
        "component": [{"code": {"coding": [{"code": "8480-6"}]}, "valueQuantity": {"value": s}},
                      {"code": {"coding": [{"code": "8462-4"}]}, "valueQuantity": {"value": d}}]})
}

fn procedure(code: &str, d: &str) -> Value {
    json!({"resourceType": "Procedure", "status": "completed", "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]}, "performedDateTime": d})
}

fn vaccine(cvx: &str, d: &str) -> Value {
    json!({"resourceType": "Immunization", "status": "completed", "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": cvx}]}, "occurrenceDateTime": d})
}

fn statin(status: &str, authored: &str, bounds: Option<(&str, Option<&str>)>) -> Value {
    let mut m = json!({"resourceType": "MedicationRequest", "status": status, "intent": "order", "authoredOn": authored,
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "617310", "display": "atorvastatin 20 MG Oral Tablet"}]}});
    if let Some((s, e)) = bounds {
        let mut b = json!({"start": s});
        if let Some(e) = e {
            b["end"] = json!(e);
        }
        m["dosageInstruction"] = json!([{"timing": {"repeat": {"boundsPeriod": b}}}]);
    }
    m
}

/// A record of the given resources, sorted by type as [`by_patient`] would.
fn record(all: &[Value]) -> Record<'_> {
    let mut r = Record::default();
    for v in all {
        match v["resourceType"].as_str() {
            Some("Condition") => r.conditions.push(v),
            Some("Observation") => r.observations.push(v),
            Some("Procedure") => r.procedures.push(v),
            Some("Immunization") => r.immunizations.push(v),
            Some("MedicationRequest") => r.medications.push(v),
            _ => {}
        }
    }
    r
}

fn year_2026() -> Period {
    Period::new("2026-01-01", "2026-12-31").unwrap()
}

fn m(id: &str) -> &'static Measure {
    measure(id).unwrap()
}

fn place(id: &str, p: &Value, all: &[Value]) -> Option<Place> {
    evaluate(m(id), p, &year_2026(), &record(all))
}

fn group(id: &str, p: &Value, all: &[Value]) -> Option<Group> {
    place(id, p, all).map(|x| x.group)
}

#[test]
fn periods_are_days_and_widen_years_and_months() {
    assert_eq!(Period::new("2026", "2026").unwrap(), year_2026());
    assert_eq!(Period::new("2028-02", "2028-02").unwrap().end, "2028-02-29");
    assert_eq!(Period::new("2027-02", "2027-02").unwrap().end, "2027-02-28");
    for (s, e) in [
        ("2026-13-01", "2026-12-31"),
        ("2026-02-30", "2026-12-31"),
        ("2026-12-31", "2026-01-01"),
        ("", "2026"),
        ("26", "2026"),
        ("2026-1-01", "2026"),
    ] {
        assert_eq!(Period::new(s, e), None, "{s}..{e}");
    }
    let y = Period::year_ending("2026-06-30").unwrap();
    assert_eq!((y.start.as_str(), y.end.as_str()), ("2025-07-01", "2026-06-30"));
    assert_eq!(Period::year_ending("2026-12-31").unwrap().start, "2026-01-01");
    assert!(
        y.contains("2025-07-01T00:00:00Z")
            && y.contains("2026-06-30")
            && !y.contains("2026-07-01")
            && !y.contains("2025-06-30")
    );
    assert_eq!(months_before("2026-05-31", 3).as_deref(), Some("2026-02-28"));
    assert_eq!(months_before("2026-12-31", 27).as_deref(), Some("2024-09-30"));
    assert_eq!(add_days("2024-02-28", 1).as_deref(), Some("2024-02-29"));
    assert_eq!(add_days("2026-01-01", -1).as_deref(), Some("2025-12-31"));
}

#[test]
fn hba1c_poor_control_reads_the_latest_of_the_period_and_the_missing() {
    let id = "cms122-hba1c-poor-control";
    let p = patient("1970-01-01");
    let dm = condition("44054006");
    assert_eq!(place(id, &p, &[]), None, "no diabetes");
    // ages at the period's end: 18 and 75 in, 17 and 76 out
    assert!(place(id, &patient("2008-12-31"), std::slice::from_ref(&dm)).is_some(), "18 on the last day");
    assert_eq!(place(id, &patient("2009-01-01"), std::slice::from_ref(&dm)), None, "17 at the end");
    assert!(place(id, &patient("1951-01-01"), std::slice::from_ref(&dm)).is_some(), "75 at the end");
    assert_eq!(place(id, &patient("1950-12-31"), std::slice::from_ref(&dm)), None, "76 on the last day");
    let missing = place(id, &p, std::slice::from_ref(&dm)).unwrap();
    assert_eq!(missing, Place::met("No HbA1c in the period"));
    assert_eq!(group(id, &p, &[dm.clone(), a1c(10.1, "2026-03-01"), a1c(7.2, "2026-09-01")]), Some(Group::NotMet));
    assert_eq!(group(id, &p, &[dm.clone(), a1c(6.5, "2025-12-31")]), Some(Group::Met), "before the period");
    assert_eq!(group(id, &p, &[dm.clone(), a1c(6.5, "2026-12-31T23:00:00Z")]), Some(Group::NotMet), "its last day");
    assert_eq!(group(id, &p, &[dm.clone(), a1c(9.0, "2026-10-01")]), Some(Group::NotMet), "9.0 is not above 9");
    assert_eq!(place(id, &p, &[dm.clone(), a1c(9.4, "2026-10-01")]).unwrap().why, "HbA1c 9.4% on 2026-10-01");
    // diabetes resolved before the period, or begun after it, does not count
    let mut over = dm.clone();
    over["abatementDateTime"] = json!("2025-06-01");
    assert_eq!(place(id, &p, &[over]), None);
    assert_eq!(place(id, &p, &[condition_since("44054006", "2027-01-02")]), None);
    let icd = json!({"resourceType": "Condition", "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]}});
    assert!(place(id, &p, &[icd]).is_some(), "ICD-10-CM by prefix");
}

#[test]
fn blood_pressure_control_needs_both_values_below_the_line_and_applies_its_exclusions() {
    let id = "cms165-blood-pressure-control";
    let p = patient("1960-05-05");
    let htn = condition("59621000");
    assert_eq!(group(id, &p, &[htn.clone(), bp(132.0, 84.0, "2026-11-01")]), Some(Group::Met));
    assert_eq!(group(id, &p, &[htn.clone(), bp(139.0, 89.0, "2026-11-01")]), Some(Group::Met));
    assert_eq!(group(id, &p, &[htn.clone(), bp(140.0, 84.0, "2026-11-01")]), Some(Group::NotMet));
    assert_eq!(group(id, &p, &[htn.clone(), bp(132.0, 90.0, "2026-11-01")]), Some(Group::NotMet));
    assert_eq!(group(id, &p, std::slice::from_ref(&htn)), Some(Group::NotMet));
    let later_high = [htn.clone(), bp(120.0, 70.0, "2026-02-01"), bp(150.0, 95.0, "2026-11-01")];
    assert_eq!(group(id, &p, &later_high), Some(Group::NotMet), "the latest counts");
    // hypertension begun in the first six months counts; after them it does not
    assert!(place(id, &p, &[condition_since("59621000", "2026-06-30")]).is_some());
    assert_eq!(place(id, &p, &[condition_since("59621000", "2026-07-01")]), None);
    // 85 at the end in, 86 out
    assert!(place(id, &patient("1941-12-31"), std::slice::from_ref(&htn)).is_some());
    assert_eq!(place(id, &patient("1940-12-31"), std::slice::from_ref(&htn)), None);
    // exclusions: pregnancy during the period, end-stage renal disease, a kidney transplant
    let preg = condition("77386006");
    assert_eq!(group(id, &p, &[htn.clone(), preg, bp(150.0, 95.0, "2026-11-01")]), Some(Group::Excluded));
    let mut old_preg = condition("77386006");
    old_preg["abatementDateTime"] = json!("2025-03-01");
    assert_eq!(group(id, &p, &[htn.clone(), old_preg]), Some(Group::NotMet), "a pregnancy over before the period");
    assert_eq!(group(id, &p, &[htn.clone(), condition("46177005")]), Some(Group::Excluded));
    let transplant = procedure("70536003", "2019-04-01");
    let x = place(id, &p, &[htn.clone(), transplant]).unwrap();
    assert_eq!(x.group, Group::Excluded);
    assert!(x.why.contains("2019-04-01"), "{}", x.why);
}

#[test]
fn influenza_immunization_in_the_period() {
    let id = "cms147-influenza-immunization";
    let adult = patient("1990-01-01");
    assert_eq!(group(id, &adult, &[vaccine("150", "2026-10-10")]), Some(Group::Met));
    assert_eq!(group(id, &adult, &[vaccine("150", "2025-12-31")]), Some(Group::NotMet));
    assert_eq!(group(id, &patient("2025-07-01"), &[]), Some(Group::NotMet), "6 months old at the start");
    assert_eq!(place(id, &patient("2025-07-02"), &[]), None, "under 6 months at the start");
    let dead = json!({"birthDate": "1950-01-01", "deceasedBoolean": true});
    assert_eq!(place(id, &dead, &[]), None);
    let died_before = json!({"birthDate": "1950-01-01", "deceasedDateTime": "2025-12-31"});
    assert_eq!(place(id, &died_before, &[]), None);
    let died_during = json!({"birthDate": "1950-01-01", "deceasedDateTime": "2026-03-01"});
    assert!(place(id, &died_during, &[]).is_some(), "who died in the period was in it");
}

#[test]
fn breast_cancer_screening_women_52_to_74_a_mammogram_in_27_months() {
    let id = "cms125-breast-cancer-screening";
    let w = woman("1960-06-01");
    // 52 at the end in (51 out), 74 in (75 out); men never
    assert!(place(id, &woman("1974-12-31"), &[]).is_some());
    assert_eq!(place(id, &woman("1975-01-01"), &[]), None);
    assert!(place(id, &woman("1952-01-01"), &[]).is_some());
    assert_eq!(place(id, &woman("1951-12-31"), &[]), None);
    assert_eq!(place(id, &json!({"birthDate": "1960-06-01", "gender": "male"}), &[]), None);
    // 27 months up to 2026-12-31: from 2024-10-01
    assert_eq!(group(id, &w, &[procedure("24623002", "2024-10-01")]), Some(Group::Met));
    assert_eq!(group(id, &w, &[procedure("24623002", "2024-09-30")]), Some(Group::NotMet));
    assert_eq!(place(id, &w, &[]).unwrap().why, "No mammogram since 2024-10-01");
    let mut planned = procedure("71651007", "2026-03-01");
    planned["status"] = json!("preparation");
    assert_eq!(group(id, &w, &[planned]), Some(Group::NotMet), "a procedure not completed");
    // a bilateral mastectomy (or its history) excludes
    assert_eq!(group(id, &w, &[procedure("27865001", "2015-01-01")]), Some(Group::Excluded));
    assert_eq!(group(id, &w, &[condition("428529004")]), Some(Group::Excluded));
}

#[test]
fn colorectal_cancer_screening_each_way_within_its_interval() {
    let id = "cms130-colorectal-cancer-screening";
    let p = patient("1970-03-03");
    // 45 at the end in, 44 out; 75 in, 76 out
    assert!(place(id, &patient("1981-12-31"), &[]).is_some());
    assert_eq!(place(id, &patient("1982-01-01"), &[]), None);
    assert!(place(id, &patient("1951-01-01"), &[]).is_some());
    assert_eq!(place(id, &patient("1950-12-31"), &[]), None);
    // a colonoscopy in the period or the 9 years before: from 2017-01-01
    assert_eq!(group(id, &p, &[procedure("73761001", "2017-01-01")]), Some(Group::Met));
    assert_eq!(group(id, &p, &[procedure("73761001", "2016-12-31")]), Some(Group::NotMet));
    // a FIT only in the period
    assert_eq!(group(id, &p, &[obs("29771-3", "2026-01-01")]), Some(Group::Met));
    assert_eq!(group(id, &p, &[obs("29771-3", "2025-12-31")]), Some(Group::NotMet));
    // FIT-DNA from 2024-01-01, sigmoidoscopy and CT colonography from 2022-01-01
    assert_eq!(group(id, &p, &[obs("77353-1", "2024-01-01")]), Some(Group::Met));
    assert_eq!(group(id, &p, &[obs("77353-1", "2023-12-31")]), Some(Group::NotMet));
    assert_eq!(group(id, &p, &[procedure("44441009", "2022-01-01")]), Some(Group::Met));
    assert_eq!(group(id, &p, &[procedure("44441009", "2021-12-31")]), Some(Group::NotMet));
    assert_eq!(group(id, &p, &[procedure("418714002", "2022-01-01")]), Some(Group::Met));
    // the latest way is named
    let both = [procedure("73761001", "2019-05-05"), obs("29771-3", "2026-02-02")];
    assert_eq!(place(id, &p, &both).unwrap().why, "FIT on 2026-02-02");
    // exclusions: colorectal cancer (SNOMED CT or ICD-10-CM) or a total colectomy
    assert_eq!(group(id, &p, &[condition("363406005")]), Some(Group::Excluded));
    let icd = json!({"resourceType": "Condition", "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C18.7"}]}});
    assert_eq!(group(id, &p, &[icd]), Some(Group::Excluded));
    assert_eq!(group(id, &p, &[procedure("26390003", "2010-01-01")]), Some(Group::Excluded));
    assert_eq!(
        group(id, &p, &[condition_since("363406005", "2027-03-01")]),
        Some(Group::NotMet),
        "diagnosed after the period"
    );
}

/// The full series for a child born on `birth` (the CDC schedule Hale's synthetic
/// children follow), with rotavirus of `rv`.
fn series(birth: &str, rv: &str) -> Vec<Value> {
    let at = |months: u32| add_days(&shift_months(birth, i64::from(months)).unwrap(), 3).unwrap();
    let mut v = vec![vaccine("08", birth), vaccine("08", &at(1)), vaccine("08", &at(6))];
    for (months, doses) in [
        (2, &["20", "10", "49", "133", rv][..]),
        (4, &["20", "10", "49", "133", rv][..]),
        (6, &["20", "10", "133"][..]),
        (12, &["03", "21", "83", "49", "133"][..]),
        (15, &["20"][..]),
    ] {
        v.extend(doses.iter().map(|c| vaccine(c, &at(months))));
    }
    v.push(vaccine("140", &at(7)));
    v.push(vaccine("140", &at(8)));
    v
}

#[test]
fn childhood_immunization_status_by_the_second_birthday() {
    let id = "cms117-childhood-immunization";
    // turning 2 on the first or last day of the period is in; the day after is not
    assert!(place(id, &patient("2024-01-01"), &[]).is_some());
    assert!(place(id, &patient("2024-12-31"), &[]).is_some());
    assert_eq!(place(id, &patient("2025-01-01"), &[]), None);
    assert_eq!(place(id, &patient("2023-12-31"), &[]), None);
    let birth = "2024-03-10";
    let kid = patient(birth);
    let full = series(birth, "119");
    assert_eq!(place(id, &kid, &full).unwrap(), Place::met("The full series by 2026-03-10"));
    // the two-dose rotavirus vaccine twice suffices; the three-dose one twice does not
    let rv5 = series(birth, "116");
    assert_eq!(place(id, &kid, &rv5).unwrap().why, "By 2026-03-10: rotavirus 2 of 3");
    // a missing influenza dose, and a dose after the birthday, are named
    let mut one_flu: Vec<Value> =
        full.iter().filter(|v| v["vaccineCode"]["coding"][0]["code"] != "140").cloned().collect();
    one_flu.push(vaccine("140", "2024-10-01"));
    one_flu.push(vaccine("140", "2026-03-11"));
    assert_eq!(place(id, &kid, &one_flu).unwrap().why, "By 2026-03-10: influenza 1 of 2");
    // MMR before the first birthday does not count; two doses the same day count once
    let mut early: Vec<Value> =
        full.iter().filter(|v| v["vaccineCode"]["coding"][0]["code"] != "03").cloned().collect();
    early.push(vaccine("03", "2025-03-09"));
    assert_eq!(place(id, &kid, &early).unwrap().why, "By 2026-03-10: MMR 0 of 1");
    let mut same_day: Vec<Value> =
        full.iter().filter(|v| v["vaccineCode"]["coding"][0]["code"] != "21").cloned().collect();
    same_day.push(vaccine("21", "2025-04-01"));
    same_day.push(vaccine("94", "2025-04-01"));
    assert_eq!(group(id, &kid, &same_day), Some(Group::Met), "MMRV gives varicella");
    // a born-on-29-February child turns 2 on 1 March
    assert!(place(id, &patient("2024-02-29"), &[]).unwrap().why.starts_with("By 2026-03-01"));
    // exclusion: immunodeficiency
    let mut hiv = full.clone();
    hiv.push(condition("86406008"));
    assert_eq!(group(id, &kid, &hiv), Some(Group::Excluded));
}

#[test]
fn statin_therapy_for_clinical_ascvd() {
    let id = "cms347-statin-therapy";
    let p = patient("1955-01-01");
    let cad = condition_since("53741008", "2018-01-01");
    assert_eq!(place(id, &p, &[statin("active", "2026-02-01", None)]), None, "no ASCVD");
    assert_eq!(place(id, &p, &[condition_since("53741008", "2027-01-01")]), None, "diagnosed after the period");
    // prescribed in the period
    assert_eq!(group(id, &p, &[cad.clone(), statin("completed", "2026-02-01", None)]), Some(Group::Met));
    // prescribed before, active during it
    assert_eq!(
        group(id, &p, &[cad.clone(), statin("active", "2024-02-01", Some(("2024-02-01", None)))]),
        Some(Group::Met)
    );
    // stopped before the period; stopped in it
    let before = statin("stopped", "2023-02-01", Some(("2023-02-01", Some("2025-12-31"))));
    assert_eq!(group(id, &p, &[cad.clone(), before]), Some(Group::NotMet));
    let during = statin("stopped", "2023-02-01", Some(("2023-02-01", Some("2026-01-01"))));
    assert_eq!(group(id, &p, &[cad.clone(), during]), Some(Group::Met));
    assert_eq!(group(id, &p, &[cad.clone(), statin("entered-in-error", "2026-02-01", None)]), Some(Group::NotMet));
    // by its name when not coded
    let text = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "authoredOn": "2026-05-05",
        "medicationCodeableConcept": {"text": "Rosuvastatin 10 mg tablet"}});
    assert_eq!(group(id, &p, &[cad.clone(), text]), Some(Group::Met));
    let other = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "authoredOn": "2026-05-05",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076"}]}});
    assert_eq!(group(id, &p, &[cad.clone(), other]), Some(Group::NotMet), "lisinopril is not a statin");
    // a bypass alone puts the patient in; pregnancy or cirrhosis excludes
    assert!(
        place(id, &p, &[procedure("232717009", "2020-01-01")])
            .unwrap()
            .why
            .contains("coronary procedure on 2020-01-01")
    );
    assert_eq!(group(id, &p, &[cad.clone(), condition("19943007")]), Some(Group::Excluded));
    assert!(
        statin_codes().contains(&"617310") && statin_codes().contains(&"83367") && statin_codes().contains(&"301542")
    );
}

#[test]
fn the_queries_read_only_what_the_measures_need_and_from_when() {
    let q = queries(&[m("cms122-hba1c-poor-control")], "2026-01-01");
    assert_eq!(q.iter().map(|x| x.resource_type).collect::<Vec<_>>(), ["Condition", "Observation"]);
    assert_eq!(
        q[1].params,
        [
            ("code", "http://loinc.org|17856-6,http://loinc.org|4548-4".to_string()),
            ("date", "ge2026-01-01".to_string())
        ]
    );
    let all: Vec<&Measure> = MEASURES.iter().collect();
    let q = queries(&all, "2026-01-01");
    let of = |t: &str| q.iter().find(|x| x.resource_type == t).unwrap();
    assert!(of("Observation").params.contains(&("date", "ge2022-12-30".to_string())), "FIT-DNA looks back 3 years");
    assert!(of("Immunization").params.contains(&("date", "ge2024-01-01".to_string())), "a child's series from birth");
    assert!(of("Procedure").params[0].1.contains("http://snomed.info/sct|73761001"));
    assert!(!of("Procedure").params.iter().any(|p| p.0 == "date"), "a colonoscopy 9 years before, a mastectomy ever");
    assert!(of("MedicationRequest").params[0].1.contains("rxnorm|617310"));
    assert!(!of("Condition").params.iter().any(|p| p.1.contains("E11")), "no ICD-10-CM prefix as a token");
}

#[test]
fn a_tally_counts_groups_and_names_the_gaps() {
    let people = vec![
        json!({"resourceType": "Patient", "id": "a", "birthDate": "1970-01-01"}),
        json!({"resourceType": "Patient", "id": "b", "birthDate": "1971-01-01"}),
        json!({"resourceType": "Patient", "id": "c", "birthDate": "1972-01-01"}),
        json!({"resourceType": "Patient", "id": "d", "birthDate": "1973-01-01"}),
    ];
    let r = |id: &str, extra: Value| {
        let mut v = vec![
            json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{id}")}, "code": {"coding": [{"code": "38341003"}]}}),
        ];
        if !extra.is_null() {
            let mut e = extra;
            e["subject"] = json!({"reference": format!("Patient/{id}")});
            v.push(e);
        }
        v
    };
    let mut all = r("a", bp(120.0, 80.0, "2026-05-05"));
    all.extend(r("b", bp(150.0, 80.0, "2026-05-05")));
    all.extend(r("c", condition("46177005")));
    let records = by_patient(&all);
    assert_eq!(records["a"].observations.len(), 1);
    let t = Tally::of(m("cms165-blood-pressure-control"), &year_2026(), &people, &records);
    assert_eq!(
        (t.initial_population(), t.excluded(), t.denominator(), t.numerator()),
        (3, 1, 2, 1),
        "d has no hypertension"
    );
    assert_eq!(t.rate(), Some(50.0));
    assert_eq!(t.gaps().map(|p| p.0["id"].as_str().unwrap()).collect::<Vec<_>>(), ["b"]);
    let inverse = Tally::of(m("cms122-hba1c-poor-control"), &year_2026(), &people, &records);
    assert_eq!(inverse.rate(), None, "nobody counted");
}
