//! Quality measures over a panel of patients, as data: who is in each measure's
//! denominator, who meets it, and why not — so the clinician sees the rate and the
//! patients to act on. Modelled on CMS electronic clinical quality measures; the
//! measurement period is the year up to the day the measure is run, and exclusions the
//! chart cannot know (hospice, palliative care, frailty) are not applied.

use serde_json::Value;

use crate::preventive::{FLU, day_number, has_code, years_between};

/// A measure: what it counts and where it comes from.
pub struct Measure {
    pub id: &'static str,
    pub title: &'static str,
    /// Who is counted.
    pub denominator: &'static str,
    /// What meeting it means.
    pub numerator: &'static str,
    /// `true` when a lower rate is better (the numerator is the gap).
    pub inverse: bool,
    pub source: &'static str,
}

const DIABETES: &[&str] = &["44054006", "73211009", "46635009", "E10", "E11"];
const HYPERTENSION: &[&str] = &["38341003", "59621000", "I10"];
const HBA1C: &[&str] = &["4548-4", "17856-6"];
const BLOOD_PRESSURE: &[&str] = &["85354-9", "55284-4"];

pub static MEASURES: &[Measure] = &[
    Measure {
        id: "cms122-hba1c-poor-control",
        title: "Diabetes: HbA1c poor control (> 9%)",
        denominator: "Patients 18 to 75 with diabetes",
        numerator: "The latest HbA1c of the year is above 9%, or there is none",
        inverse: true,
        source: "CMS122 (eCQM), Diabetes: Hemoglobin A1c Poor Control (> 9%)",
    },
    Measure {
        id: "cms165-blood-pressure-control",
        title: "Controlling high blood pressure",
        denominator: "Patients 18 to 85 with hypertension",
        numerator: "The latest blood pressure of the year is below 140/90",
        inverse: false,
        source: "CMS165 (eCQM), Controlling High Blood Pressure",
    },
    Measure {
        id: "cms147-influenza-immunization",
        title: "Influenza immunization",
        denominator: "Patients 6 months and older",
        numerator: "An influenza vaccine given in the last year",
        inverse: false,
        source: "CMS147 (eCQM), Preventive Care and Screening: Influenza Immunization",
    },
];

/// One patient's place in a measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// In the numerator.
    pub met: bool,
    /// What the chart shows, in words (the value and its date, or what is missing).
    pub why: String,
}

fn final_status(o: &Value) -> bool {
    matches!(o["status"].as_str(), Some("final" | "amended" | "corrected"))
}

fn within_year(date: &str, today: i64) -> bool {
    day_number(date).is_some_and(|d| today - d < 365 && d <= today)
}

fn months_between(birth: &str, today: &str) -> Option<i64> {
    let (b, t) = (birth.get(0..10)?, today.get(0..10)?);
    let years = t.get(0..4)?.parse::<i64>().ok()? - b.get(0..4)?.parse::<i64>().ok()?;
    let months = years * 12 + t.get(5..7)?.parse::<i64>().ok()? - b.get(5..7)?.parse::<i64>().ok()?;
    Some(if t.get(8..10)? < b.get(8..10)? { months - 1 } else { months })
}

/// Where `patient` stands in `measure` on `today` (`YYYY-MM-DD`), from its active
/// `conditions`, its `observations` and `immunizations`; `None` when the patient is not
/// in the denominator.
pub fn evaluate(
    measure: &Measure,
    patient: &Value,
    today: &str,
    conditions: &[Value],
    observations: &[Value],
    immunizations: &[Value],
) -> Option<Place> {
    if patient["deceasedBoolean"] == true || patient.get("deceasedDateTime").is_some() {
        return None;
    }
    let now = day_number(today)?;
    let birth = patient["birthDate"].as_str()?;
    let age = years_between(birth, today)?;
    let has = |codes: &[&str]| conditions.iter().any(|c| has_code(&c["code"], codes));
    let latest = |codes: &[&str]| {
        observations
            .iter()
            .filter(|o| final_status(o) && has_code(&o["code"], codes))
            .filter_map(|o| o["effectiveDateTime"].as_str().map(|d| (d.chars().take(10).collect::<String>(), o)))
            .filter(|(d, _)| within_year(d, now))
            .max_by(|a, b| a.0.cmp(&b.0))
    };
    match measure.id {
        "cms122-hba1c-poor-control" => {
            if !(18..=75).contains(&age) || !has(DIABETES) {
                return None;
            }
            Some(match latest(HBA1C) {
                None => Place { met: true, why: "No HbA1c this year".into() },
                Some((d, o)) => {
                    let v = o["valueQuantity"]["value"].as_f64();
                    match v {
                        Some(v) if v > 9.0 => Place { met: true, why: format!("HbA1c {v}% on {d}") },
                        Some(v) => Place { met: false, why: format!("HbA1c {v}% on {d}") },
                        None => Place { met: true, why: format!("HbA1c without a value on {d}") },
                    }
                }
            })
        }
        "cms165-blood-pressure-control" => {
            if !(18..=85).contains(&age) || !has(HYPERTENSION) {
                return None;
            }
            Some(match latest(BLOOD_PRESSURE) {
                None => Place { met: false, why: "No blood pressure this year".into() },
                Some((d, o)) => {
                    let part = |code: &str| {
                        o["component"].as_array().and_then(|cs| {
                            cs.iter()
                                .find(|c| has_code(&c["code"], &[code]))
                                .and_then(|c| c["valueQuantity"]["value"].as_f64())
                        })
                    };
                    match (part("8480-6"), part("8462-4")) {
                        (Some(s), Some(di)) => {
                            Place { met: s < 140.0 && di < 90.0, why: format!("{s}/{di} mmHg on {d}") }
                        }
                        _ => Place { met: false, why: format!("A blood pressure without both values on {d}") },
                    }
                }
            })
        }
        "cms147-influenza-immunization" => {
            if months_between(birth, today)? < 6 {
                return None;
            }
            let last = immunizations
                .iter()
                .filter(|i| i["status"] == "completed" && has_code(&i["vaccineCode"], FLU))
                .filter_map(|i| i["occurrenceDateTime"].as_str().map(|d| d.chars().take(10).collect::<String>()))
                .filter(|d| within_year(d, now))
                .max();
            Some(match last {
                Some(d) => Place { met: true, why: format!("Influenza vaccine on {d}") },
                None => Place { met: false, why: "No influenza vaccine this year".into() },
            })
        }
        _ => None,
    }
}

/// A measure over a panel: each patient in its denominator with their place.
pub struct Tally<'a> {
    pub measure: &'static Measure,
    pub places: Vec<(&'a Value, Place)>,
}

impl Tally<'_> {
    pub fn denominator(&self) -> usize {
        self.places.len()
    }
    pub fn numerator(&self) -> usize {
        self.places.iter().filter(|p| p.1.met).count()
    }
    /// The rate in percent, when anyone is counted.
    pub fn rate(&self) -> Option<f64> {
        (self.denominator() > 0).then(|| 100.0 * self.numerator() as f64 / self.denominator() as f64)
    }
    /// The patients to act on: in the numerator of an inverse measure, out of it
    /// otherwise.
    pub fn gaps(&self) -> impl Iterator<Item = &(&Value, Place)> {
        self.places.iter().filter(|p| p.1.met == self.measure.inverse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patient(birth: &str) -> Value {
        json!({"resourceType": "Patient", "birthDate": birth})
    }

    fn condition(code: &str) -> Value {
        json!({"code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]}})
    }

    fn a1c(v: f64, d: &str) -> Value {
        json!({"status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]}, "effectiveDateTime": d, "valueQuantity": {"value": v}})
    }

    fn bp(s: f64, d: f64, when: &str) -> Value {
        json!({"status": "final", "code": {"coding": [{"code": "85354-9"}]}, "effectiveDateTime": when,
            "component": [{"code": {"coding": [{"code": "8480-6"}]}, "valueQuantity": {"value": s}},
                          {"code": {"coding": [{"code": "8462-4"}]}, "valueQuantity": {"value": d}}]})
    }

    #[test]
    fn hba1c_poor_control_counts_the_latest_of_the_year_and_the_missing() {
        let m = &MEASURES[0];
        let today = "2026-12-07";
        let p = patient("1970-01-01");
        let dm = [condition("44054006")];
        assert_eq!(evaluate(m, &p, today, &[], &[], &[]), None, "no diabetes");
        assert_eq!(evaluate(m, &patient("1940-01-01"), today, &dm, &[], &[]), None, "over 75");
        let missing = evaluate(m, &p, today, &dm, &[], &[]).unwrap();
        assert!(missing.met && missing.why == "No HbA1c this year");
        let high_then_good = [a1c(10.1, "2026-03-01"), a1c(7.2, "2026-09-01")];
        assert!(!evaluate(m, &p, today, &dm, &high_then_good, &[]).unwrap().met);
        let old_good = [a1c(6.5, "2025-06-01")];
        assert!(evaluate(m, &p, today, &dm, &old_good, &[]).unwrap().met, "last year's does not count");
        let poor = [a1c(9.4, "2026-10-01")];
        assert_eq!(evaluate(m, &p, today, &dm, &poor, &[]).unwrap().why, "HbA1c 9.4% on 2026-10-01");
    }

    #[test]
    fn blood_pressure_control_needs_both_values_below_the_line() {
        let m = &MEASURES[1];
        let p = patient("1960-05-05");
        let htn = [condition("59621000")];
        let today = "2026-12-07";
        assert!(evaluate(m, &p, today, &htn, &[bp(132.0, 84.0, "2026-11-01")], &[]).unwrap().met);
        assert!(!evaluate(m, &p, today, &htn, &[bp(132.0, 91.0, "2026-11-01")], &[]).unwrap().met);
        assert!(!evaluate(m, &p, today, &htn, &[], &[]).unwrap().met);
        let later_high = [bp(120.0, 70.0, "2026-02-01"), bp(150.0, 95.0, "2026-11-01")];
        assert!(!evaluate(m, &p, today, &htn, &later_high, &[]).unwrap().met, "the latest counts");
    }

    #[test]
    fn influenza_immunization_in_the_last_year() {
        let m = &MEASURES[2];
        let today = "2026-12-07";
        let flu = |d: &str| json!({"status": "completed", "vaccineCode": {"coding": [{"code": "150"}]}, "occurrenceDateTime": d});
        assert!(evaluate(m, &patient("1990-01-01"), today, &[], &[], &[flu("2026-10-10")]).unwrap().met);
        assert!(!evaluate(m, &patient("1990-01-01"), today, &[], &[], &[flu("2025-10-10")]).unwrap().met);
        assert_eq!(evaluate(m, &patient("2026-09-01"), today, &[], &[], &[]), None, "under 6 months");
        let dead = json!({"birthDate": "1950-01-01", "deceasedBoolean": true});
        assert_eq!(evaluate(m, &dead, today, &[], &[], &[]), None);
    }

    #[test]
    fn a_tally_counts_and_names_the_gaps() {
        let people = [patient("1970-01-01"), patient("1971-01-01")];
        let dm = [condition("44054006")];
        let m = &MEASURES[0];
        let places: Vec<(&Value, Place)> = vec![
            (&people[0], evaluate(m, &people[0], "2026-12-07", &dm, &[a1c(7.0, "2026-11-01")], &[]).unwrap()),
            (&people[1], evaluate(m, &people[1], "2026-12-07", &dm, &[], &[]).unwrap()),
        ];
        let t = Tally { measure: m, places };
        assert_eq!((t.denominator(), t.numerator()), (2, 1));
        assert_eq!(t.rate(), Some(50.0));
        assert_eq!(t.gaps().count(), 1, "an inverse measure's gaps are its numerator");
    }
}
