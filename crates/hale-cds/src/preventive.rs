//! Preventive care: which screenings and vaccinations are due for a patient, from rules
//! as data (who, what counts as done, how often, the source). Input is the patient's
//! FHIR JSON as read through the gate; dates are compared as day numbers.

use serde_json::Value;

/// What a rule looks for in the record to count as done.
#[derive(Debug)]
pub enum Done {
    /// An Immunization (completed) with one of these CVX codes, or, uncoded, whose text
    /// has one of these words.
    Vaccine(&'static [&'static str], &'static [&'static str]),
    /// An Observation with one of these LOINC codes.
    Observation(&'static [&'static str]),
}

/// Who a rule is for.
#[derive(Debug)]
pub enum Who {
    /// Aged at least `min` and below `max` years (months for infants are not used).
    Age { min: u32, max: u32 },
    /// Anyone with an active condition of one of these SNOMED CT or ICD-10-CM codes
    /// (an ICD-10-CM code matches by prefix).
    Condition(&'static [&'static str]),
}

/// A preventive-care rule.
#[derive(Debug)]
pub struct Preventive {
    pub id: &'static str,
    pub title: &'static str,
    /// The same in plain words, for the patient.
    pub for_patient: &'static str,
    pub who: Who,
    pub done: Done,
    /// Due again after this many days; `None`: once is enough.
    pub every_days: Option<i64>,
    /// How many times it must have been done (a vaccine series).
    pub doses: usize,
    pub action: &'static str,
    pub source: &'static str,
}

pub(crate) const FLU: &[&str] = &["140", "141", "150", "155", "158", "161", "171", "185", "186", "197", "205"];
const TD: &[&str] = &["09", "113", "115", "138", "139"];
const PNEUMO: &[&str] = &["33", "133", "152", "215", "216"];

/// The rules Hale applies.
pub static RULES: &[Preventive] = &[
    Preventive {
        id: "influenza-vaccine",
        title: "Influenza vaccine (yearly)",
        for_patient: "A flu vaccine for this season",
        who: Who::Age { min: 1, max: 200 },
        done: Done::Vaccine(FLU, &["influenza", "flu"]),
        every_days: Some(365),
        doses: 1,
        action: "Offer this season's influenza vaccine.",
        source: "CDC ACIP, prevention and control of seasonal influenza with vaccines (yearly for everyone 6 months and older)",
    },
    Preventive {
        id: "td-booster",
        title: "Tetanus and diphtheria booster (every 10 years)",
        for_patient: "A tetanus booster (every 10 years)",
        who: Who::Age { min: 19, max: 200 },
        done: Done::Vaccine(TD, &["tetanus", "td", "tdap"]),
        every_days: Some(3652),
        doses: 1,
        action: "Give Td or Tdap.",
        source: "CDC ACIP adult immunization schedule (Td or Tdap every 10 years)",
    },
    Preventive {
        id: "pneumococcal-65",
        title: "Pneumococcal vaccine (65 and older)",
        for_patient: "A pneumonia (pneumococcal) vaccine",
        who: Who::Age { min: 65, max: 200 },
        done: Done::Vaccine(PNEUMO, &["pneumococcal"]),
        every_days: None,
        doses: 1,
        action: "Offer a pneumococcal conjugate vaccine (PCV20 or PCV21, or PCV15 then PPSV23).",
        source: "CDC ACIP adult immunization schedule, pneumococcal vaccination",
    },
    Preventive {
        id: "zoster-50",
        title: "Recombinant zoster vaccine, two doses (50 and older)",
        for_patient: "The shingles vaccine (two doses, a few months apart)",
        who: Who::Age { min: 50, max: 200 },
        done: Done::Vaccine(&["187"], &["zoster", "shingles"]),
        every_days: None,
        doses: 2,
        action: "Give the recombinant zoster vaccine (second dose 2 to 6 months after the first).",
        source: "CDC ACIP adult immunization schedule, zoster vaccination",
    },
    Preventive {
        id: "blood-pressure-40",
        title: "Blood pressure check (yearly from 40)",
        for_patient: "A blood pressure check (once a year)",
        who: Who::Age { min: 40, max: 200 },
        done: Done::Observation(&["85354-9", "55284-4", "8480-6"]),
        every_days: Some(365),
        doses: 1,
        action: "Measure the blood pressure.",
        source: "USPSTF 2021, screening for hypertension in adults (yearly from 40 or at higher risk)",
    },
    Preventive {
        id: "lipids-40-75",
        title: "Lipid panel (every 5 years, 40 to 75)",
        for_patient: "A cholesterol blood test (every 5 years)",
        who: Who::Age { min: 40, max: 76 },
        done: Done::Observation(&["2093-3", "57698-3", "18262-6", "13457-7"]),
        every_days: Some(1826),
        doses: 1,
        action: "Order a lipid panel to assess cardiovascular risk.",
        source: "USPSTF 2022, statin use for the primary prevention of cardiovascular disease in adults",
    },
    Preventive {
        id: "hba1c-diabetes",
        title: "HbA1c (every 6 months with diabetes)",
        for_patient: "An HbA1c blood test for your diabetes (every 6 months)",
        who: Who::Condition(&["44054006", "73211009", "46635009", "E10", "E11"]),
        done: Done::Observation(&["4548-4", "17856-6"]),
        every_days: Some(183),
        doses: 1,
        action: "Order an HbA1c.",
        source: "ADA Standards of Care in Diabetes, glycemic goals (A1C at least twice a year)",
    },
];

/// A rule that is due: why, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub rule: &'static str,
    pub title: &'static str,
    pub for_patient: &'static str,
    /// The last time it was done (`YYYY-MM-DD`), if ever.
    pub last: Option<String>,
    pub action: &'static str,
    pub source: &'static str,
}

/// The day number (since 1970-01-01) of a FHIR date or dateTime.
pub(crate) fn day_number(s: &str) -> Option<i64> {
    let y: i64 = s.get(0..4)?.parse().ok()?;
    let m: i64 = s.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let d: i64 = s.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(1);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    Some(era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468)
}

pub(crate) fn years_between(birth: &str, today: &str) -> Option<u32> {
    let (b, t) = (birth.get(0..10)?, today.get(0..10)?);
    let mut years = t.get(0..4)?.parse::<i32>().ok()? - b.get(0..4)?.parse::<i32>().ok()?;
    if t.get(5..10)? < b.get(5..10)? {
        years -= 1;
    }
    u32::try_from(years).ok()
}

pub(crate) fn has_code(cc: &Value, codes: &[&str]) -> bool {
    cc["coding"].as_array().is_some_and(|cs| {
        cs.iter().filter_map(|c| c["code"].as_str()).any(|code| {
            codes.iter().any(|w| {
                code == *w || (w.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && code.starts_with(w))
            })
        })
    })
}

/// Whether an uncoded CodeableConcept's text has one of `words`.
fn uncoded_says(cc: &Value, words: &[&str]) -> bool {
    if cc["coding"].as_array().is_some_and(|c| !c.is_empty()) {
        return false;
    }
    let text = cc["text"].as_str().unwrap_or("").to_lowercase();
    text.split(|c: char| !c.is_alphanumeric()).any(|w| words.contains(&w))
}

/// The preventive care due for a patient on `today` (`YYYY-MM-DD`): `patient` (its
/// birth date), its active `conditions`, its `immunizations` and `observations`.
pub fn due(
    patient: &Value,
    today: &str,
    conditions: &[Value],
    immunizations: &[Value],
    observations: &[Value],
) -> Vec<Due> {
    let Some(now) = day_number(today) else { return Vec::new() };
    let age = patient["birthDate"].as_str().and_then(|b| years_between(b, today));
    if patient["deceasedBoolean"] == true || patient.get("deceasedDateTime").is_some() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for r in RULES {
        let applies = match &r.who {
            Who::Age { min, max } => age.is_some_and(|a| a >= *min && a < *max),
            Who::Condition(codes) => conditions.iter().any(|c| has_code(&c["code"], codes)),
        };
        if !applies {
            continue;
        }
        let mut dates: Vec<String> = match &r.done {
            Done::Vaccine(cvx, words) => immunizations
                .iter()
                .filter(|i| {
                    i["status"] == "completed"
                        && (has_code(&i["vaccineCode"], cvx) || uncoded_says(&i["vaccineCode"], words))
                })
                .filter_map(|i| i["occurrenceDateTime"].as_str().map(|d| d.chars().take(10).collect()))
                .collect(),
            Done::Observation(loinc) => observations
                .iter()
                .filter(|o| {
                    matches!(o["status"].as_str(), Some("final" | "amended" | "corrected"))
                        && has_code(&o["code"], loinc)
                })
                .filter_map(|o| o["effectiveDateTime"].as_str().map(|d| d.chars().take(10).collect()))
                .collect(),
        };
        dates.sort();
        let last = dates.last().cloned();
        let recent = match r.every_days {
            Some(days) => last.as_deref().and_then(day_number).is_some_and(|d| now - d < days),
            None => true,
        };
        let enough = dates.len() >= r.doses;
        if !(recent && enough) {
            out.push(Due {
                rule: r.id,
                title: r.title,
                for_patient: r.for_patient,
                last,
                action: r.action,
                source: r.source,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn imm(cvx: &str, date: &str) -> Value {
        json!({"resourceType": "Immunization", "status": "completed", "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": cvx}]}, "occurrenceDateTime": date})
    }

    fn obs(loinc: &str, date: &str) -> Value {
        json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]}, "effectiveDateTime": date})
    }

    fn ids(d: &[Due]) -> Vec<&str> {
        d.iter().map(|d| d.rule).collect()
    }

    #[test]
    fn what_is_due_follows_age_conditions_and_dates() {
        let today = "2026-12-07";
        let adult = json!({"birthDate": "1980-02-03"});
        // nothing done: flu, Td, blood pressure, lipids
        assert_eq!(
            ids(&due(&adult, today, &[], &[], &[])),
            ["influenza-vaccine", "td-booster", "blood-pressure-40", "lipids-40-75"]
        );
        // done recently enough: nothing
        let done = [imm("140", "2026-10-01"), imm("115", "2020-05-01")];
        let measured = [obs("85354-9", "2026-06-01"), obs("2093-3", "2023-01-01")];
        assert!(due(&adult, today, &[], &done, &measured).is_empty());
        // a flu shot from last year is not this year's
        let old = [imm("140", "2025-10-01"), imm("115", "2020-05-01")];
        assert_eq!(ids(&due(&adult, today, &[], &old, &measured)), ["influenza-vaccine"]);
        assert_eq!(due(&adult, today, &[], &old, &measured)[0].last.as_deref(), Some("2025-10-01"));
        // diabetes: an HbA1c every 6 months
        let dm = [json!({"code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}})];
        assert!(ids(&due(&adult, today, &dm, &done, &measured)).contains(&"hba1c-diabetes"));
        let a1c = [obs("85354-9", "2026-06-01"), obs("2093-3", "2023-01-01"), obs("4548-4", "2026-08-01")];
        assert!(due(&adult, today, &dm, &done, &a1c).is_empty());
        let icd = [json!({"code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]}})];
        assert!(ids(&due(&adult, today, &icd, &done, &measured)).contains(&"hba1c-diabetes"), "ICD-10-CM by prefix");
        // older: pneumococcal once, zoster twice
        let older = json!({"birthDate": "1950-01-01"});
        let some =
            [imm("140", "2026-10-01"), imm("115", "2020-05-01"), imm("187", "2024-01-01"), imm("33", "2016-01-01")];
        let found = due(&older, today, &[], &some, &measured);
        let d = ids(&found);
        assert!(d.contains(&"zoster-50") && !d.contains(&"pneumococcal-65") && !d.contains(&"lipids-40-75"), "{d:?}");
        // an uncoded vaccination is read by its words
        let uncoded = [
            json!({"status": "completed", "vaccineCode": {"text": "Influenza vaccine"}, "occurrenceDateTime": "2026-11-01"}),
        ];
        assert!(!ids(&due(&adult, today, &[], &uncoded, &measured)).contains(&"influenza-vaccine"));
        // a child: flu only; the dead: nothing
        assert_eq!(ids(&due(&json!({"birthDate": "2020-01-01"}), today, &[], &[], &[])), ["influenza-vaccine"]);
        assert!(due(&json!({"birthDate": "1950-01-01", "deceasedBoolean": true}), today, &[], &[], &[]).is_empty());
    }
}
