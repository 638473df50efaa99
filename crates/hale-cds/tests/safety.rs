//! The clinical safety test set: orders that must be flagged, each with the rule that
//! must fire, and safe orders that must raise nothing. Sensitivity (flagged as expected
//! among those that must be) and precision (expected among every alert raised) are
//! printed and must both be 100 % on this set; a new rule or table change that misses a
//! case or raises a stray alert fails here.
//!
//! `cargo test -p hale-cds --test safety -- --nocapture` prints the figures.

use hale_cds::check_prescription;
use hale_cds::dosing::{Dose, Facts};
use hale_cds::drugs::{Drug, find};
use serde_json::{Value, json};

fn drug(name: &str) -> &'static Drug {
    let found = find(name, 1);
    assert!(!found.is_empty(), "no drug '{name}'");
    found[0].1
}

fn allergy_text(text: &str) -> Value {
    json!({"resourceType": "AllergyIntolerance", "id": "a1",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "code": {"text": text}, "patient": {"reference": "Patient/p"}})
}

fn allergy_rxnorm(code: &str, display: &str) -> Value {
    json!({"resourceType": "AllergyIntolerance", "id": "a2",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code, "display": display}]},
        "patient": {"reference": "Patient/p"}})
}

/// An active prescription of the drug named `name`.
fn taking(name: &str) -> Value {
    let d = drug(name);
    json!({"resourceType": "MedicationRequest", "id": format!("mr-{}", d.rxcui), "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": d.rxcui, "display": d.name}], "text": d.name},
        "subject": {"reference": "Patient/p"}})
}

/// An active prescription known only by its text (a product Hale does not offer).
fn taking_text(text: &str) -> Value {
    json!({"resourceType": "MedicationRequest", "id": "mr-text", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"text": text}, "subject": {"reference": "Patient/p"}})
}

fn adult() -> Facts {
    Facts { age_years: Some(45), ..Facts::default() }
}

fn dose(units: f64, times_a_day: f64) -> Option<Dose> {
    Some(Dose { units, times_a_day })
}

struct Case {
    what: &'static str,
    drug: &'static str,
    allergies: Vec<Value>,
    meds: Vec<Value>,
    facts: Facts,
    dose: Option<Dose>,
    /// The rules that must fire (none: a safe order).
    expect: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let egfr = |v: f64| Facts { age_years: Some(60), egfr: Some((v, "2026-11-01".into())), ..Facts::default() };
    let pregnant = || Facts { age_years: Some(30), pregnant: true, ..Facts::default() };
    vec![
        // must be flagged
        Case {
            what: "penicillin allergy in words, amoxicillin",
            drug: "amoxicillin 500",
            allergies: vec![allergy_text("Penicillin")],
            meds: vec![],
            facts: adult(),
            dose: dose(1.0, 3.0),
            expect: &["allergy-class"],
        },
        Case {
            what: "amoxicillin allergy coded, amoxicillin-clavulanate",
            drug: "clavulanate",
            allergies: vec![allergy_rxnorm("723", "amoxicillin")],
            meds: vec![],
            facts: adult(),
            dose: dose(1.0, 2.0),
            expect: &["allergy-ingredient"],
        },
        Case {
            what: "penicillin allergy, cephalexin",
            drug: "cephalexin",
            allergies: vec![allergy_text("penicillin")],
            meds: vec![],
            facts: adult(),
            dose: dose(1.0, 4.0),
            expect: &["allergy-cross-sensitivity"],
        },
        Case {
            what: "sulfa allergy, sulfamethoxazole-trimethoprim",
            drug: "sulfamethoxazole",
            allergies: vec![allergy_text("sulfa drugs")],
            meds: vec![],
            facts: adult(),
            dose: dose(1.0, 2.0),
            expect: &["allergy-class"],
        },
        Case {
            what: "ibuprofen allergy, naproxen",
            drug: "naproxen",
            allergies: vec![allergy_rxnorm("5640", "ibuprofen")],
            meds: vec![],
            facts: adult(),
            dose: dose(1.0, 2.0),
            expect: &["allergy-class"],
        },
        Case {
            what: "warfarin, then ibuprofen",
            drug: "ibuprofen 400",
            allergies: vec![],
            meds: vec![taking("warfarin")],
            facts: adult(),
            dose: dose(1.0, 3.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "apixaban, then naproxen",
            drug: "naproxen",
            allergies: vec![],
            meds: vec![taking("apixaban")],
            facts: adult(),
            dose: dose(1.0, 2.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "simvastatin, then clarithromycin",
            drug: "clarithromycin",
            allergies: vec![],
            meds: vec![taking("simvastatin")],
            facts: adult(),
            dose: dose(1.0, 2.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "sertraline, then tramadol",
            drug: "tramadol",
            allergies: vec![],
            meds: vec![taking("sertraline")],
            facts: adult(),
            dose: dose(1.0, 4.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "clopidogrel, then omeprazole",
            drug: "omeprazole",
            allergies: vec![],
            meds: vec![taking("clopidogrel")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "warfarin, then ciprofloxacin",
            drug: "ciprofloxacin",
            allergies: vec![],
            meds: vec![taking("warfarin")],
            facts: adult(),
            dose: dose(1.0, 2.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "atorvastatin, then simvastatin",
            drug: "simvastatin",
            allergies: vec![],
            meds: vec![taking("atorvastatin")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["duplicate-class"],
        },
        Case {
            what: "lisinopril, then lisinopril again",
            drug: "lisinopril",
            allergies: vec![],
            meds: vec![taking("lisinopril")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["duplicate-ingredient"],
        },
        Case {
            what: "acetaminophen 1 g every 4 hours",
            drug: "acetaminophen 500 MG Oral Tablet",
            allergies: vec![],
            meds: vec![],
            facts: adult(),
            dose: dose(2.0, 6.0),
            expect: &["dose-maximum"],
        },
        Case {
            what: "simvastatin 80 mg",
            drug: "simvastatin",
            allergies: vec![],
            meds: vec![],
            facts: adult(),
            dose: dose(4.0, 1.0),
            expect: &["dose-maximum"],
        },
        Case {
            what: "a 16 kg child, amoxicillin 1.5 g a day",
            drug: "amoxicillin 250 MG/5 ML",
            allergies: vec![],
            meds: vec![],
            facts: Facts { age_years: Some(4), weight_kg: Some(16.0), ..Facts::default() },
            dose: dose(10.0, 3.0),
            expect: &["dose-maximum-child"],
        },
        Case {
            what: "a child without a weight, amoxicillin",
            drug: "amoxicillin 250 MG/5 ML",
            allergies: vec![],
            meds: vec![],
            facts: Facts { age_years: Some(4), ..Facts::default() },
            dose: dose(5.0, 3.0),
            expect: &["dose-no-weight"],
        },
        Case {
            what: "eGFR 25, metformin",
            drug: "metformin",
            allergies: vec![],
            meds: vec![],
            facts: egfr(25.0),
            dose: dose(1.0, 2.0),
            expect: &["renal"],
        },
        Case {
            what: "eGFR 20, naproxen",
            drug: "naproxen",
            allergies: vec![],
            meds: vec![],
            facts: egfr(20.0),
            dose: dose(1.0, 2.0),
            expect: &["renal"],
        },
        Case {
            what: "eGFR 40, gabapentin 1,800 mg a day",
            drug: "gabapentin",
            allergies: vec![],
            meds: vec![],
            facts: egfr(40.0),
            dose: dose(2.0, 3.0),
            expect: &["renal"],
        },
        Case {
            what: "eGFR 25, nitrofurantoin",
            drug: "nitrofurantoin",
            allergies: vec![],
            meds: vec![],
            facts: egfr(25.0),
            dose: dose(1.0, 2.0),
            expect: &["renal"],
        },
        Case {
            what: "pregnant, losartan",
            drug: "losartan",
            allergies: vec![],
            meds: vec![],
            facts: pregnant(),
            dose: dose(1.0, 1.0),
            expect: &["pregnancy"],
        },
        Case {
            what: "pregnant, warfarin",
            drug: "warfarin",
            allergies: vec![],
            meds: vec![],
            facts: pregnant(),
            dose: dose(1.0, 1.0),
            expect: &["pregnancy"],
        },
        Case {
            what: "pregnant, doxycycline",
            drug: "doxycycline",
            allergies: vec![],
            meds: vec![],
            facts: pregnant(),
            dose: dose(1.0, 2.0),
            expect: &["pregnancy"],
        },
        Case {
            what: "8 years old, acetaminophen-codeine",
            drug: "codeine",
            allergies: vec![],
            meds: vec![],
            facts: Facts { age_years: Some(8), weight_kg: Some(26.0), ..Facts::default() },
            dose: dose(1.0, 1.0),
            expect: &["age"],
        },
        Case {
            what: "penicillin allergy and warfarin, amoxicillin-clavulanate",
            drug: "clavulanate",
            allergies: vec![allergy_text("penicillin")],
            meds: vec![taking("warfarin")],
            facts: adult(),
            dose: dose(1.0, 2.0),
            expect: &["allergy-class"],
        },
        Case {
            what: "ONC: omeprazole, then atazanavir",
            drug: "atazanavir",
            allergies: vec![],
            meds: vec![taking("omeprazole")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: atazanavir, then pantoprazole",
            drug: "pantoprazole",
            allergies: vec![],
            meds: vec![taking("atazanavir")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: irinotecan, then clarithromycin",
            drug: "clarithromycin",
            allergies: vec![],
            meds: vec![taking("irinotecan")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: fluvoxamine, then ramelteon",
            drug: "ramelteon",
            allergies: vec![],
            meds: vec![taking("fluvoxamine")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: ergotamine (by name), then clarithromycin",
            drug: "clarithromycin",
            allergies: vec![],
            meds: vec![taking_text("Ergotamine tartrate 1 mg / caffeine 100 mg tablet")],
            facts: adult(),
            dose: dose(1.0, 2.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: dihydroergotamine (by name), then ketoconazole",
            drug: "ketoconazole",
            allergies: vec![],
            meds: vec![taking_text("dihydroergotamine mesylate 4 MG/ML nasal spray")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: tizanidine, then ciprofloxacin",
            drug: "ciprofloxacin",
            allergies: vec![],
            meds: vec![taking("tizanidine")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: phenelzine, then methylphenidate",
            drug: "methylphenidate",
            allergies: vec![],
            meds: vec![taking("phenelzine")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: sertraline, then phenelzine",
            drug: "phenelzine",
            allergies: vec![],
            meds: vec![taking("sertraline")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: phenelzine, then sertraline",
            drug: "sertraline",
            allergies: vec![],
            meds: vec![taking("phenelzine")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: isocarboxazid, then meperidine",
            drug: "meperidine",
            allergies: vec![],
            meds: vec![taking("isocarboxazid")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: meperidine, then isocarboxazid",
            drug: "isocarboxazid",
            allergies: vec![],
            meds: vec![taking("meperidine")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: tranylcypromine, then amitriptyline",
            drug: "amitriptyline",
            allergies: vec![],
            meds: vec![taking("tranylcypromine")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: selegiline, then sumatriptan",
            drug: "sumatriptan",
            allergies: vec![],
            meds: vec![taking("selegiline")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: sumatriptan, then selegiline",
            drug: "selegiline",
            allergies: vec![],
            meds: vec![taking("sumatriptan")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: itraconazole, then lovastatin",
            drug: "lovastatin",
            allergies: vec![],
            meds: vec![taking("itraconazole")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: simvastatin, then diltiazem",
            drug: "diltiazem",
            allergies: vec![],
            meds: vec![taking("simvastatin")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: ritonavir, then rifampin",
            drug: "rifampin",
            allergies: vec![],
            meds: vec![taking("ritonavir")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: carbamazepine, then atazanavir",
            drug: "atazanavir",
            allergies: vec![],
            meds: vec![taking("carbamazepine")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: azathioprine, then febuxostat",
            drug: "febuxostat",
            allergies: vec![],
            meds: vec![taking("azathioprine")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: febuxostat, then mercaptopurine",
            drug: "mercaptopurine",
            allergies: vec![],
            meds: vec![taking("febuxostat")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: procarbazine, then tranylcypromine",
            drug: "tranylcypromine",
            allergies: vec![],
            meds: vec![taking("procarbazine")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: amiodarone, then azithromycin",
            drug: "azithromycin",
            allergies: vec![],
            meds: vec![taking("amiodarone")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: ciprofloxacin, then fluconazole",
            drug: "fluconazole",
            allergies: vec![],
            meds: vec![taking("ciprofloxacin")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: citalopram, then ondansetron",
            drug: "ondansetron",
            allergies: vec![],
            meds: vec![taking("citalopram")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "ONC: rifampin, then lopinavir-ritonavir",
            drug: "lopinavir",
            allergies: vec![],
            meds: vec![taking("rifampin")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["drug-interaction"],
        },
        Case {
            what: "phenelzine, then tranylcypromine (two MAO inhibitors)",
            drug: "tranylcypromine",
            allergies: vec![],
            meds: vec![taking("phenelzine")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["duplicate-class"],
        },
        Case {
            what: "azithromycin, then azithromycin again (no interaction with itself)",
            drug: "azithromycin",
            allergies: vec![],
            meds: vec![taking("azithromycin")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &["duplicate-ingredient"],
        },
        // safe: nothing may be raised
        Case {
            what: "no allergy, amoxicillin 500 three times a day",
            drug: "amoxicillin 500",
            allergies: vec![],
            meds: vec![],
            facts: adult(),
            dose: dose(1.0, 3.0),
            expect: &[],
        },
        Case {
            what: "penicillin allergy, azithromycin",
            drug: "azithromycin",
            allergies: vec![allergy_text("penicillin")],
            meds: vec![],
            facts: adult(),
            dose: dose(2.0, 1.0),
            expect: &[],
        },
        Case {
            what: "ibuprofen allergy, acetaminophen",
            drug: "acetaminophen 500 MG Oral Tablet",
            allergies: vec![allergy_rxnorm("5640", "ibuprofen")],
            meds: vec![],
            facts: adult(),
            dose: dose(1.0, 4.0),
            expect: &[],
        },
        Case {
            what: "sulfa allergy, amoxicillin",
            drug: "amoxicillin 500",
            allergies: vec![allergy_text("sulfa")],
            meds: vec![],
            facts: adult(),
            dose: dose(1.0, 3.0),
            expect: &[],
        },
        Case {
            what: "warfarin, then acetaminophen 2 g a day",
            drug: "acetaminophen 500 MG Oral Tablet",
            allergies: vec![],
            meds: vec![taking("warfarin")],
            facts: adult(),
            dose: dose(1.0, 4.0),
            expect: &[],
        },
        Case {
            what: "atorvastatin, then amlodipine",
            drug: "amlodipine",
            allergies: vec![],
            meds: vec![taking("atorvastatin")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
        Case {
            what: "lisinopril, then hydrochlorothiazide",
            drug: "hydrochlorothiazide",
            allergies: vec![],
            meds: vec![taking("lisinopril")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
        Case {
            what: "acetaminophen 1 g four times a day (4 g)",
            drug: "acetaminophen 500 MG Oral Tablet",
            allergies: vec![],
            meds: vec![],
            facts: adult(),
            dose: dose(2.0, 4.0),
            expect: &[],
        },
        Case {
            what: "a 20 kg child, amoxicillin 750 mg a day",
            drug: "amoxicillin 250 MG/5 ML",
            allergies: vec![],
            meds: vec![],
            facts: Facts { age_years: Some(5), weight_kg: Some(20.0), ..Facts::default() },
            dose: dose(5.0, 3.0),
            expect: &[],
        },
        Case {
            what: "eGFR 75, metformin",
            drug: "metformin",
            allergies: vec![],
            meds: vec![],
            facts: egfr(75.0),
            dose: dose(1.0, 2.0),
            expect: &[],
        },
        Case {
            what: "eGFR 55, naproxen",
            drug: "naproxen",
            allergies: vec![],
            meds: vec![],
            facts: egfr(55.0),
            dose: dose(1.0, 2.0),
            expect: &[],
        },
        Case {
            what: "no eGFR known, metformin",
            drug: "metformin",
            allergies: vec![],
            meds: vec![],
            facts: adult(),
            dose: dose(1.0, 2.0),
            expect: &[],
        },
        Case {
            what: "pregnant, amoxicillin",
            drug: "amoxicillin 500",
            allergies: vec![],
            meds: vec![],
            facts: pregnant(),
            dose: dose(1.0, 3.0),
            expect: &[],
        },
        Case {
            what: "not pregnant, lisinopril",
            drug: "lisinopril",
            allergies: vec![],
            meds: vec![],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
        Case {
            what: "30 years old, acetaminophen-codeine 1 tablet every 6 hours",
            drug: "codeine",
            allergies: vec![],
            meds: vec![],
            facts: Facts { age_years: Some(30), ..Facts::default() },
            dose: dose(1.0, 4.0),
            expect: &[],
        },
        Case {
            what: "an allergy marked resolved, amoxicillin",
            drug: "amoxicillin 500",
            allergies: vec![{
                let mut a = allergy_text("penicillin");
                a["clinicalStatus"]["coding"][0]["code"] = json!("resolved");
                a
            }],
            meds: vec![],
            facts: adult(),
            dose: dose(1.0, 3.0),
            expect: &[],
        },
        Case {
            what: "a stopped warfarin, then ibuprofen",
            drug: "ibuprofen 400",
            allergies: vec![],
            meds: vec![{
                let mut m = taking("warfarin");
                m["status"] = json!("stopped");
                m
            }],
            facts: adult(),
            dose: dose(1.0, 3.0),
            expect: &[],
        },
        Case {
            what: "clarithromycin, then pravastatin",
            drug: "pravastatin",
            allergies: vec![],
            meds: vec![taking("clarithromycin")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
        Case {
            what: "clarithromycin, then rosuvastatin",
            drug: "rosuvastatin",
            allergies: vec![],
            meds: vec![taking("clarithromycin")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
        Case {
            what: "clarithromycin, then atorvastatin (its label limits the dose)",
            drug: "atorvastatin",
            allergies: vec![],
            meds: vec![taking("clarithromycin")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
        Case {
            what: "simvastatin, then azithromycin",
            drug: "azithromycin",
            allergies: vec![],
            meds: vec![taking("simvastatin")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
        Case {
            what: "an SSRI alone: escitalopram",
            drug: "escitalopram",
            allergies: vec![],
            meds: vec![],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
        Case {
            what: "sertraline, then sumatriptan (not an ONC pair)",
            drug: "sumatriptan",
            allergies: vec![],
            meds: vec![taking("sertraline")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
        Case {
            what: "clopidogrel, then pantoprazole",
            drug: "pantoprazole",
            allergies: vec![],
            meds: vec![taking("clopidogrel")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
        Case {
            what: "ritonavir, then atazanavir (a boosted regimen)",
            drug: "atazanavir",
            allergies: vec![],
            meds: vec![taking("ritonavir")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
        Case {
            what: "irinotecan, then fluconazole (a moderate CYP3A4 inhibitor only)",
            drug: "fluconazole",
            allergies: vec![],
            meds: vec![taking("irinotecan")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
        Case {
            what: "ergotamine (by name), then azithromycin (no CYP3A4 inhibitor)",
            drug: "azithromycin",
            allergies: vec![],
            meds: vec![taking_text("Ergotamine tartrate 1 mg / caffeine 100 mg tablet")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
        Case {
            what: "tizanidine, then levofloxacin (no CYP1A2 inhibitor)",
            drug: "levofloxacin",
            allergies: vec![],
            meds: vec![taking("tizanidine")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
        Case {
            what: "phenelzine, then acetaminophen",
            drug: "acetaminophen 500 MG Oral Tablet",
            allergies: vec![],
            meds: vec![taking("phenelzine")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
        Case {
            what: "omeprazole, then ritonavir",
            drug: "ritonavir",
            allergies: vec![],
            meds: vec![taking("omeprazole")],
            facts: adult(),
            dose: dose(1.0, 1.0),
            expect: &[],
        },
    ]
}

#[test]
fn the_safety_set_is_flagged_exactly() {
    let cases = cases();
    let (mut must, mut caught, mut raised, mut right) = (0usize, 0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for c in &cases {
        let alerts = check_prescription(drug(c.drug), &c.allergies, &c.meds, &c.facts, c.dose);
        let fired: Vec<&str> = alerts.iter().map(|a| a.rule).collect();
        must += c.expect.len();
        caught += c.expect.iter().filter(|r| fired.contains(r)).count();
        raised += fired.len();
        right += fired.iter().filter(|r| c.expect.contains(r)).count();
        if c.expect.iter().any(|r| !fired.contains(r)) || fired.iter().any(|r| !c.expect.contains(r)) {
            failures.push(format!("{}: expected {:?}, got {:?}", c.what, c.expect, fired));
        }
        for a in &alerts {
            assert!(
                !a.title.is_empty() && !a.detail.is_empty() && !a.action.is_empty() && !a.source.is_empty(),
                "{}: {a:?}",
                c.what
            );
        }
    }
    let flagged = cases.iter().filter(|c| !c.expect.is_empty()).count();
    let sensitivity = 100.0 * caught as f64 / must.max(1) as f64;
    let precision = 100.0 * right as f64 / raised.max(1) as f64;
    println!(
        "safety set: {} orders ({flagged} to flag, {} safe); sensitivity {sensitivity:.1}% ({caught}/{must}), precision {precision:.1}% ({right}/{raised})",
        cases.len(),
        cases.len() - flagged
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(flagged >= 25 && cases.len() - flagged >= 15);
}
