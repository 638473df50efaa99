//! Crate tests: determinism, validity against the R4 definitions, internal consistency.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use serde_json::Value;

use crate::{Config, patient_bundle, population, shared_bundle};

fn ref_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
}

fn cfg(patients: usize, seed: u64) -> Config {
    Config { patients, seed, reference_date: ref_date(), years: 10 }
}

fn resources(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle["entry"].as_array().into_iter().flatten().map(|e| &e["resource"])
}

fn of_type<'a>(bundle: &'a Value, t: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    resources(bundle).filter(move |r| r["resourceType"] == t)
}

fn code(r: &Value, field: &str) -> String {
    r[field]["coding"][0]["code"].as_str().unwrap_or_default().to_string()
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d").unwrap()
}

fn birth(bundle: &Value) -> NaiveDate {
    day(of_type(bundle, "Patient").next().unwrap()["birthDate"].as_str().unwrap())
}

fn walk<'a>(v: &'a Value, f: &mut dyn FnMut(&str, &'a Value)) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| {
            f(k, c);
            walk(c, f)
        }),
        Value::Array(a) => a.iter().for_each(|c| walk(c, f)),
        _ => {}
    }
}

fn quantity(r: &Value) -> f64 {
    r["valueQuantity"]["value"].as_f64().unwrap()
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let a: Vec<String> = population(&cfg(4, 42)).map(|b| b.to_string()).collect();
    let b: Vec<String> = population(&cfg(4, 42)).map(|b| b.to_string()).collect();
    assert_eq!(a, b);
    let c: Vec<String> = population(&cfg(4, 43)).map(|b| b.to_string()).collect();
    assert_eq!(a[0], c[0], "the shared bundle does not depend on the seed");
    for i in 1..a.len() {
        assert_ne!(a[i], c[i], "patient {i} is the same under another seed");
    }
    // A patient does not depend on how many patients there are.
    assert_eq!(patient_bundle(&cfg(4, 42), 2).to_string(), a[3]);
    assert_eq!(patient_bundle(&cfg(1000, 42), 2).to_string(), a[3]);
}

#[test]
fn every_resource_is_valid_r4() {
    let mut failures = Vec::new();
    let mut n = 0;
    for bundle in population(&cfg(20, 7)) {
        for issue in hale_fhir::validate::validate_resource(&bundle).into_iter().filter(|i| i.is_error()) {
            failures.push(format!("Bundle: {} ({})", issue.diagnostics, issue.expression.unwrap_or_default()));
        }
        for r in resources(&bundle) {
            n += 1;
            for issue in hale_fhir::validate::validate_resource(r).into_iter().filter(|i| i.is_error()) {
                failures.push(format!(
                    "{}: {} ({})",
                    r["resourceType"],
                    issue.diagnostics,
                    issue.expression.unwrap_or_default()
                ));
            }
        }
    }
    failures.sort();
    failures.dedup();
    assert!(failures.is_empty(), "{} invalid of {n} resources:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_reference_resolves() {
    let shared = shared_bundle(&cfg(0, 1));
    let mut known: HashSet<String> = HashSet::new();
    for e in shared["entry"].as_array().unwrap() {
        assert_eq!(e["request"]["method"], "PUT");
        let r = &e["resource"];
        let id = format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        assert_eq!(e["request"]["url"], id.as_str());
        known.insert(id);
    }
    let mut dangling = Vec::new();
    let check = |bundle: &Value, local: &HashSet<String>, dangling: &mut Vec<String>| {
        walk(bundle, &mut |k, v| {
            if k == "reference" {
                let s = v.as_str().unwrap();
                if !local.contains(s) && !known.contains(s) {
                    dangling.push(s.to_string());
                }
            }
        });
    };
    check(&shared, &HashSet::new(), &mut dangling);
    for i in 0..15 {
        let b = patient_bundle(&cfg(15, 3), i);
        assert_eq!(b["type"], "transaction");
        let mut local = HashSet::new();
        for e in b["entry"].as_array().unwrap() {
            let url = e["fullUrl"].as_str().unwrap();
            assert!(url.starts_with("urn:uuid:"));
            assert!(local.insert(url.to_string()), "duplicate fullUrl {url}");
            assert_eq!(e["request"]["method"], "POST");
            assert_eq!(e["request"]["url"], e["resource"]["resourceType"]);
            assert!(e["resource"].get("id").is_none());
        }
        check(&b, &local, &mut dangling);
    }
    assert!(dangling.is_empty(), "dangling references: {dangling:?}");
}

#[test]
fn nothing_happens_before_birth_or_after_the_reference_date() {
    for i in 0..25 {
        let b = patient_bundle(&cfg(25, 11), i);
        let born = birth(&b);
        assert!(born <= ref_date());
        for r in resources(&b) {
            walk(r, &mut |k, v| {
                if let Some(s) = v.as_str()
                    && k != "data"
                    && s.len() >= 10
                    && s.as_bytes()[4] == b'-'
                    && s.as_bytes()[7] == b'-'
                    && s[..4].bytes().all(|c| c.is_ascii_digit())
                {
                    let d = day(s);
                    assert!(d >= born && d <= ref_date(), "{k} = {s} outside {born}..{} in {r}", ref_date());
                }
            });
        }
    }
}

#[test]
fn diabetics_take_metformin_and_have_a_high_hba1c() {
    let mut diabetics = 0;
    for i in 0..60 {
        let b = patient_bundle(&cfg(60, 5), i);
        let urls: HashMap<*const Value, &str> = b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (&e["resource"] as *const Value, e["fullUrl"].as_str().unwrap()))
            .collect();
        let Some(dm) = of_type(&b, "Condition").find(|c| code(c, "code") == "44054006") else { continue };
        diabetics += 1;
        let dm_url = urls[&(dm as *const Value)];
        let metformin = of_type(&b, "MedicationRequest").any(|m| {
            code(m, "medicationCodeableConcept") == "861007" && m["reasonReference"][0]["reference"] == dm_url
        });
        assert!(metformin, "patient {i} has diabetes without metformin");
        let max_a1c =
            of_type(&b, "Observation").filter(|o| code(o, "code") == "4548-4").map(quantity).fold(f64::MIN, f64::max);
        assert!(max_a1c >= 6.5, "patient {i} has diabetes but HbA1c at most {max_a1c}");
    }
    assert!(diabetics >= 3, "only {diabetics} diabetics in 60 patients");
}

/// Recommended ages in months (CDC) of each dose of the childhood vaccines.
fn childhood_schedule() -> HashMap<&'static str, Vec<u32>> {
    HashMap::from([
        ("08", vec![0, 1, 6]),
        ("20", vec![2, 4, 6, 15, 48]),
        ("10", vec![2, 4, 6, 48]),
        ("49", vec![2, 4, 12]),
        ("133", vec![2, 4, 6, 12]),
        ("119", vec![2, 4]),
        ("03", vec![12, 48]),
        ("21", vec![12, 48]),
        ("83", vec![12, 18]),
        ("115", vec![132]),
        ("165", vec![132, 144]),
        ("114", vec![132, 192]),
    ])
}

#[test]
fn children_are_immunized_on_schedule() {
    let schedule = childhood_schedule();
    let mut complete_checked = 0;
    for i in 0..80 {
        let b = patient_bundle(&cfg(80, 9), i);
        let born = birth(&b);
        let mut counts: HashMap<String, u32> = HashMap::new();
        for imm in of_type(&b, "Immunization") {
            let cvx = code(imm, "vaccineCode");
            let when = day(imm["occurrenceDateTime"].as_str().unwrap());
            let age_days = (when - born).num_days();
            let dose = imm["protocolApplied"][0]["doseNumberPositiveInt"].as_u64().unwrap() as usize;
            match cvx.as_str() {
                "140" | "141" => assert!(age_days >= 182, "influenza vaccine at {age_days} days"),
                "208" | "207" => assert!(age_days >= 12 * 365, "COVID-19 vaccine at {age_days} days"),
                "113" => assert!(age_days >= 18 * 365),
                "187" => assert!(age_days >= 50 * 365),
                "33" => assert!(age_days >= 65 * 365),
                "133" if age_days >= 65 * 365 => {}
                c => {
                    let months = schedule.get(c).unwrap_or_else(|| panic!("unexpected vaccine {c}"));
                    let due = born.checked_add_months(chrono::Months::new(months[dose - 1])).unwrap();
                    let late = (when - due).num_days();
                    let tolerance = if months[dose - 1] == 0 { 7 } else { 45 };
                    assert!(
                        (0..=tolerance).contains(&late),
                        "patient {i}: CVX {c} dose {dose} at {when}, due {due} (born {born})"
                    );
                    *counts.entry(c.to_string()).or_default() += 1;
                }
            }
        }
        // Born inside the window and old enough: the whole early series is there.
        let age_years = (ref_date() - born).num_days() / 365;
        if born >= NaiveDate::from_ymd_opt(2015, 1, 1).unwrap() && (5..10).contains(&age_years) {
            complete_checked += 1;
            for (c, n) in [("08", 3), ("20", 5), ("10", 4), ("03", 2), ("21", 2), ("83", 2), ("119", 2)] {
                assert_eq!(counts.get(c).copied().unwrap_or(0), n, "patient {i} born {born}: doses of CVX {c}");
            }
        }
    }
    assert!(complete_checked > 0, "no child old enough to check a complete series");
}

/// Children's vaccinations before the history window are on record for most of them,
/// so Hale's childhood series find most children up to date and a few due for catch-up.
#[test]
fn most_children_are_up_to_date_with_the_childhood_series() {
    let today = ref_date().to_string();
    let (mut children, mut up_to_date, mut without_history, mut older) = (0, 0, 0, 0);
    for i in 0..400 {
        let b = patient_bundle(&cfg(400, 9), i);
        let born = birth(&b);
        let age = (ref_date() - born).num_days() / 365;
        if age >= 18 {
            continue;
        }
        children += 1;
        let imms: Vec<Value> = of_type(&b, "Immunization").cloned().collect();
        let historical = imms.iter().filter(|r| r["primarySource"] == false).count();
        let before_window = born < NaiveDate::from_ymd_opt(2015, 1, 1).unwrap();
        if before_window {
            older += 1;
        }
        for r in imms.iter().filter(|r| r["primarySource"] == false) {
            assert_eq!(r["reportOrigin"]["coding"][0]["code"], "record");
            assert!(day(r["occurrenceDateTime"].as_str().unwrap()) < NaiveDate::from_ymd_opt(2015, 1, 1).unwrap());
            assert!(r.get("encounter").is_none() && r["recorded"].is_string());
        }
        let due: Vec<String> = hale_cds::childhood::due(&born.to_string(), &today, &imms)
            .into_iter()
            .map(|d| format!("{} ({:?})", d.title, d.last))
            .collect();
        if before_window && historical == 0 {
            without_history += 1;
            continue;
        }
        // what is left due: at most a dose whose visit is just ahead of today
        if due.is_empty() {
            up_to_date += 1;
        } else {
            assert!(due.len() <= 5, "patient {i} born {born}: {due:?}");
        }
    }
    assert!(older >= 5 && without_history >= 1, "{older} born before the window, {without_history} without records");
    assert!(without_history * 3 < older, "{without_history} of {older} without records");
    assert!(up_to_date * 10 >= (children - without_history) * 8, "{up_to_date} of {children} up to date");
}

#[test]
fn bmi_matches_weight_and_height_and_hypertensives_run_higher() {
    let (mut htn, mut other) = (Vec::new(), Vec::new());
    let mut bmis = 0;
    for i in 0..30 {
        let b = patient_bundle(&cfg(30, 13), i);
        let hypertensive = of_type(&b, "Condition").any(|c| code(c, "code") == "38341003");
        let mut by_enc: HashMap<String, HashMap<String, f64>> = HashMap::new();
        for o in of_type(&b, "Observation") {
            let enc = o["encounter"]["reference"].as_str().unwrap().to_string();
            let c = code(o, "code");
            if c == "85354-9" {
                let sbp = o["component"][0]["valueQuantity"]["value"].as_f64().unwrap();
                let dbp = o["component"][1]["valueQuantity"]["value"].as_f64().unwrap();
                assert!(sbp > dbp);
                let born = birth(&b);
                let when = day(o["effectiveDateTime"].as_str().unwrap());
                if (when - born).num_days() > 30 * 365 {
                    if hypertensive { htn.push(sbp) } else { other.push(sbp) }
                }
            } else if o.get("valueQuantity").is_some() {
                by_enc.entry(enc).or_default().insert(c, quantity(o));
            }
        }
        for v in by_enc.values() {
            if let (Some(w), Some(h), Some(bmi)) = (v.get("29463-7"), v.get("8302-2"), v.get("39156-5")) {
                bmis += 1;
                let expected = w / (h / 100.0 * h / 100.0);
                assert!((bmi - expected).abs() <= 0.051, "BMI {bmi} for {w} kg and {h} cm");
                assert!((10.0..70.0).contains(bmi));
            }
        }
    }
    assert!(bmis > 50);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    assert!(!htn.is_empty() && !other.is_empty());
    assert!(mean(&htn) > mean(&other) + 5.0, "hypertensive {} vs other {}", mean(&htn), mean(&other));
}

#[test]
fn lab_interpretation_agrees_with_the_reference_range() {
    let b = patient_bundle(&cfg(1, 17), 0);
    let mut seen = 0;
    for i in 0..10 {
        let b = if i == 0 { b.clone() } else { patient_bundle(&cfg(10, 17), i) };
        // the quantitative ones (a stool test's result is a concept)
        for o in of_type(&b, "Observation")
            .filter(|o| o["category"][0]["coding"][0]["code"] == "laboratory" && o.get("valueQuantity").is_some())
        {
            seen += 1;
            let v = quantity(o);
            let rr = &o["referenceRange"][0];
            let expected = match (rr["low"]["value"].as_f64(), rr["high"]["value"].as_f64()) {
                (Some(l), _) if v < l => "L",
                (_, Some(h)) if v > h => "H",
                _ => "N",
            };
            assert_eq!(o["interpretation"][0]["coding"][0]["code"], expected, "{o}");
        }
    }
    assert!(seen > 0);
}

#[test]
fn no_panics_on_odd_configurations() {
    assert_eq!(population(&cfg(0, 1)).count(), 1);
    let only_patient = patient_bundle(&Config { years: 0, ..cfg(1, 1) }, 0);
    assert_eq!(only_patient["entry"].as_array().unwrap().len(), 1);
    for (date, years) in [
        (NaiveDate::MIN, 10),
        (NaiveDate::MAX, 10),
        (NaiveDate::from_ymd_opt(1900, 1, 1).unwrap(), u32::MAX),
        (ref_date(), 150),
    ] {
        for seed in [0, u64::MAX] {
            let c = Config { patients: 2, seed, reference_date: date, years };
            assert_eq!(population(&c).count(), 3);
            let _ = patient_bundle(&c, usize::MAX);
        }
    }
}

#[test]
fn counts_for_ten_patients() {
    let c = cfg(10, 1);
    let started = std::time::Instant::now();
    let bundles: Vec<Value> = population(&c).collect();
    let elapsed = started.elapsed();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_patient = Vec::new();
    for (i, b) in bundles.iter().enumerate() {
        let n = b["entry"].as_array().unwrap().len();
        if i > 0 {
            let born = birth(b);
            per_patient.push(format!("{}y:{n}", (ref_date() - born).num_days() / 365));
        }
        for r in resources(b) {
            *counts.entry(r["resourceType"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    let total: usize = counts.values().sum();
    println!("resources for 10 patients (seed 1, reference date 2025-01-01, 10 years):");
    for (t, n) in &counts {
        println!("  {t:<20} {n:>6}");
    }
    println!("  {:<20} {total:>6}", "total");
    println!("per patient (age:resources): {}", per_patient.join(" "));
    println!(
        "generated in {:.0} ms ({:.0} resources/s, debug build)",
        elapsed.as_secs_f64() * 1000.0,
        total as f64 / elapsed.as_secs_f64()
    );
    assert!((1_000..40_000).contains(&total), "{total} resources");
    for t in ["Patient", "Encounter", "Observation", "DiagnosticReport", "Immunization", "DocumentReference"] {
        assert!(counts.get(t).copied().unwrap_or(0) > 0, "no {t}");
    }
}

#[test]
fn medication_orders_form_a_consistent_timeline() {
    let mut renewals = 0;
    for i in 0..30 {
        let b = patient_bundle(&cfg(30, 21), i);
        let orders: HashMap<&str, &Value> = b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["resource"]["resourceType"] == "MedicationRequest")
            .map(|e| (e["fullUrl"].as_str().unwrap(), &e["resource"]))
            .collect();
        let mut active: HashMap<String, usize> = HashMap::new();
        for m in orders.values() {
            let status = m["status"].as_str().unwrap();
            let bounds = &m["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"];
            if bounds.is_object() {
                let ended = bounds.get("end").is_some();
                assert_eq!(ended, status != "active", "maintenance order {status} with bounds {bounds}");
                if status == "stopped" {
                    assert!(m["statusReason"]["text"].is_string());
                }
                if status == "active" {
                    *active.entry(code(m, "medicationCodeableConcept")).or_default() += 1;
                }
            }
            if let Some(prior) = m["priorPrescription"]["reference"].as_str() {
                renewals += 1;
                let p = orders[prior];
                assert_eq!(p["status"], "completed");
                assert_eq!(code(p, "medicationCodeableConcept"), code(m, "medicationCodeableConcept"));
                let p_end = p["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["end"].as_str().unwrap();
                assert_eq!(p_end, bounds["start"].as_str().unwrap(), "a renewal starts when its prior order ends");
            }
        }
        assert!(active.values().all(|n| *n == 1), "patient {i}: two active orders for one drug: {active:?}");
    }
    assert!(renewals > 0);
}

/// A wider sweep (seeds, reference dates, history lengths); slow in debug, so run it
/// on demand: `cargo test -p hale-synth -- --ignored`.
#[test]
#[ignore]
fn wide_sweep_is_valid_and_closed() {
    let shared: HashSet<String> = resources(&shared_bundle(&cfg(0, 0)))
        .map(|r| format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap()))
        .collect();
    let mut failures = Vec::new();
    for (k, (y, years)) in [(2025, 10), (2019, 3), (2030, 30), (2001, 1), (2024, 80)].into_iter().enumerate() {
        let reference_date = NaiveDate::from_ymd_opt(y, 6, 30).unwrap();
        let c = Config { patients: 30, seed: 1000 + k as u64, reference_date, years };
        for b in population(&c).skip(1) {
            let born = birth(&b);
            let local: HashSet<&str> =
                b["entry"].as_array().unwrap().iter().filter_map(|e| e["fullUrl"].as_str()).collect();
            for r in resources(&b) {
                for issue in hale_fhir::validate::validate_resource(r).into_iter().filter(|i| i.is_error()) {
                    failures.push(format!(
                        "{}: {} ({})",
                        r["resourceType"],
                        issue.diagnostics,
                        issue.expression.unwrap_or_default()
                    ));
                }
                walk(r, &mut |key, v| {
                    let Some(s) = v.as_str() else { return };
                    if key == "reference" && !local.contains(s) && !shared.contains(s) {
                        failures.push(format!("dangling {s}"));
                    }
                    if key != "data"
                        && s.len() >= 10
                        && s.as_bytes()[4] == b'-'
                        && s.as_bytes()[7] == b'-'
                        && s[..4].bytes().all(|c| c.is_ascii_digit())
                    {
                        let d = day(s);
                        if d < born || d > reference_date {
                            failures.push(format!("{key} {s} outside {born}..{reference_date}"));
                        }
                    }
                });
            }
        }
    }
    failures.sort();
    failures.dedup();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn adults_are_screened_for_cancer_and_coronary_disease_brings_a_statin() {
    let c = cfg(200, 1);
    let (mut mammograms, mut colonoscopies, mut fits, mut ascvd, mut ascvd_statin) = (0, 0, 0, 0, 0);
    for i in 0..c.patients {
        let b = patient_bundle(&c, i);
        let born = birth(&b);
        let female = of_type(&b, "Patient").next().unwrap()["gender"] == "female";
        for p in of_type(&b, "Procedure") {
            assert_eq!(p["status"], "completed");
            let age = (day(p["performedDateTime"].as_str().unwrap()) - born).num_days() / 365;
            match code(p, "code").as_str() {
                "24623002" => {
                    assert!(female && (40..=75).contains(&age), "patient {i}: a mammogram at {age}");
                    mammograms += 1;
                }
                "73761001" => {
                    assert!((45..=76).contains(&age), "patient {i}: a colonoscopy at {age}");
                    colonoscopies += 1;
                }
                other => panic!("patient {i}: an unexpected procedure {other}"),
            }
        }
        fits += of_type(&b, "Observation").filter(|o| code(o, "code") == "29771-3").count();
        let cad = of_type(&b, "Condition").any(|c| code(c, "code") == "53741008");
        if cad {
            ascvd += 1;
            let statin = of_type(&b, "MedicationRequest")
                .any(|m| matches!(code(m, "medicationCodeableConcept").as_str(), "617310" | "312961"));
            ascvd_statin += usize::from(statin);
        }
    }
    // mammograms every two years or so: never two within 700 days (checked by the counts
    // being plausible for 200 people), colonoscopies and FITs, some coronary disease
    assert!(mammograms >= 20 && colonoscopies >= 10 && fits >= 10, "{mammograms} {colonoscopies} {fits}");
    assert!(ascvd >= 5, "{ascvd} patients with coronary artery disease in 200");
    assert!(ascvd_statin * 2 > ascvd, "{ascvd_statin} of {ascvd} on a statin");
    assert!(ascvd_statin < ascvd || ascvd < 10, "not every one: the measure has someone to find");
}
