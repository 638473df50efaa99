//! Dose, kidney function and pregnancy at order time: the daily dose of each ingredient
//! against its maximum (an adult's, or a child's by weight), the latest eGFR against
//! the ingredient's renal limits, and a recorded pregnancy against the ingredients and
//! classes to avoid in it. Every limit is data, with its source.

use serde_json::Value;

use crate::drugs::{Class, Drug, Ingredient};
use crate::{Alert, Severity};

/// What the checks need to know of the patient (read from the chart by the caller).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Age in whole years, when the birth date is known.
    pub age_years: Option<u32>,
    /// The latest body weight, kg.
    pub weight_kg: Option<f64>,
    /// The latest eGFR (mL/min/1.73 m²) and its date.
    pub egfr: Option<(f64, String)>,
    /// An active pregnancy is recorded.
    pub pregnant: bool,
}

/// A dose as prescribed: units of the drug (tablets, capsules, mL, puffs) each time, and
/// the most times a day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dose {
    pub units: f64,
    pub times_a_day: f64,
}

/// The most an ingredient may be given in a day.
pub struct Limit {
    pub rxcui: &'static str,
    /// An adult's maximum, mg a day.
    pub adult_mg_day: f64,
    /// A child's maximum, mg per kg a day (never above the adult's).
    pub child_mg_kg_day: Option<f64>,
    pub source: &'static str,
}

const LABEL: &str = "FDA-approved product labeling (DailyMed), maximum recommended daily dose";

/// Daily maxima by ingredient.
pub static LIMITS: &[Limit] = &[
    Limit {
        rxcui: "161",
        adult_mg_day: 4000.0,
        child_mg_kg_day: Some(75.0),
        source: "FDA acetaminophen labeling: at most 4 g a day in adults; children 75 mg/kg a day",
    },
    Limit {
        rxcui: "5640",
        adult_mg_day: 3200.0,
        child_mg_kg_day: Some(40.0),
        source: "FDA ibuprofen labeling: at most 3,200 mg a day; children 40 mg/kg a day",
    },
    Limit { rxcui: "7258", adult_mg_day: 1500.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "1191", adult_mg_day: 4000.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "140587", adult_mg_day: 400.0, child_mg_kg_day: None, source: LABEL },
    Limit {
        rxcui: "723",
        adult_mg_day: 3000.0,
        child_mg_kg_day: Some(90.0),
        source: "FDA amoxicillin labeling; AAP acute otitis media guideline 2013 (high dose 80-90 mg/kg a day)",
    },
    Limit { rxcui: "2231", adult_mg_day: 4000.0, child_mg_kg_day: Some(100.0), source: LABEL },
    Limit { rxcui: "2194", adult_mg_day: 1000.0, child_mg_kg_day: Some(30.0), source: LABEL },
    Limit { rxcui: "18631", adult_mg_day: 500.0, child_mg_kg_day: Some(10.0), source: LABEL },
    Limit { rxcui: "21212", adult_mg_day: 1000.0, child_mg_kg_day: Some(15.0), source: LABEL },
    Limit { rxcui: "3640", adult_mg_day: 200.0, child_mg_kg_day: Some(4.4), source: LABEL },
    Limit { rxcui: "2551", adult_mg_day: 1500.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "82122", adult_mg_day: 750.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "7454", adult_mg_day: 400.0, child_mg_kg_day: Some(7.0), source: LABEL },
    Limit { rxcui: "10689", adult_mg_day: 400.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "2670", adult_mg_day: 360.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "29046", adult_mg_day: 80.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "52175", adult_mg_day: 100.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "17767", adult_mg_day: 10.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "5487", adult_mg_day: 50.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "6918", adult_mg_day: 400.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "83367", adult_mg_day: 80.0, child_mg_kg_day: None, source: LABEL },
    Limit {
        rxcui: "36567",
        adult_mg_day: 40.0,
        child_mg_kg_day: None,
        source: "FDA Drug Safety Communication 2011: simvastatin 80 mg restricted; at most 40 mg a day for new patients",
    },
    Limit { rxcui: "6809", adult_mg_day: 2550.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "4821", adult_mg_day: 40.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "36437", adult_mg_day: 200.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "4493", adult_mg_day: 80.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "25480", adult_mg_day: 3600.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "88249", adult_mg_day: 10.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "10180", adult_mg_day: 1600.0, child_mg_kg_day: None, source: LABEL },
    Limit { rxcui: "10829", adult_mg_day: 320.0, child_mg_kg_day: None, source: LABEL },
];

/// The limit of the ingredient with RxNorm code `rxcui`.
pub fn limit(rxcui: &str) -> Option<&'static Limit> {
    LIMITS.iter().find(|l| l.rxcui == rxcui)
}

/// mg of each ingredient in one unit of the drug, read from its name: `500 MG`, `250 MG/5
/// ML` (a suspension: per mL), `0.09 MG/ACTUAT` (per puff); one per ingredient, in order
/// (`875 MG / clavulanate 125 MG`).
pub fn strengths(drug: &Drug) -> Vec<(&'static Ingredient, f64)> {
    let segments: Vec<&str> = drug.name.split(" / ").collect();
    let mut out = Vec::new();
    for (i, ingredient) in drug.ingredients.iter().enumerate() {
        let Some(seg) = segments.get(i) else { break };
        let words: Vec<&str> = seg.split_whitespace().collect();
        let found = words.windows(2).find_map(|w| {
            let unit = w[1];
            let mg = w[0].parse::<f64>().ok()?;
            if unit == "MG" {
                Some(mg)
            } else if let Some(per) = unit.strip_prefix("MG/") {
                // "250 MG/5 ML": the amount per volume
                let n = per.split_whitespace().next().unwrap_or("");
                if per == "ACTUAT" { Some(mg) } else { n.parse::<f64>().ok().map(|ml| mg / ml) }
            } else {
                None
            }
        });
        // "250 MG/5 ML" is two words apart: "MG/5" then "ML"
        let found = found.or_else(|| {
            words.windows(2).find_map(|w| {
                let mg = w[0].parse::<f64>().ok()?;
                let ml = w[1].strip_prefix("MG/")?.parse::<f64>().ok()?;
                Some(mg / ml)
            })
        });
        if let Some(mg) = found {
            out.push((*ingredient, mg));
        }
    }
    out
}

fn fmt(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    let s = if r.fract() == 0.0 { format!("{}", r as i64) } else { format!("{r}") };
    // thousands separated, as people read doses
    match s.split_once('.') {
        Some((i, f)) => format!("{}.{f}", group(i)),
        None => group(&s),
    }
}

fn group(digits: &str) -> String {
    let (sign, d) = digits.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", digits));
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// The daily dose of each ingredient against its maximum: an adult's; for a child
/// (under 18) with a recorded weight, mg/kg a day as well; a child without a weight is
/// told the dose could not be checked.
pub fn dose_alerts(drug: &Drug, dose: Dose, facts: &Facts) -> Vec<Alert> {
    let mut out = Vec::new();
    let child = facts.age_years.is_some_and(|a| a < 18);
    for (ingredient, mg) in strengths(drug) {
        let Some(l) = limit(ingredient.rxcui) else { continue };
        let daily = dose.units * mg * dose.times_a_day;
        if daily > l.adult_mg_day + 1e-9 {
            out.push(Alert {
                rule: "dose-maximum",
                severity: Severity::High,
                title: format!(
                    "{} {} mg a day is above the maximum of {} mg a day",
                    ingredient.name,
                    fmt(daily),
                    fmt(l.adult_mg_day)
                ),
                detail: format!(
                    "{} × {} mg, {} a day, gives {} mg of {} a day.",
                    fmt(dose.units),
                    fmt(mg),
                    fmt(dose.times_a_day),
                    fmt(daily),
                    ingredient.name
                ),
                action: "Lower the dose or how often it is taken.".into(),
                source: l.source,
                about: None,
            });
            continue;
        }
        if !child {
            continue;
        }
        match (l.child_mg_kg_day, facts.weight_kg) {
            (Some(per_kg), Some(kg)) if kg > 0.0 && daily > per_kg * kg + 1e-9 => out.push(Alert {
                rule: "dose-maximum-child",
                severity: Severity::High,
                title: format!(
                    "{} {} mg/kg a day is above the maximum of {} mg/kg a day for a child",
                    ingredient.name,
                    fmt(daily / kg),
                    fmt(per_kg)
                ),
                detail: format!(
                    "{} mg a day for {} kg (the latest weight): at most {} mg a day.",
                    fmt(daily),
                    fmt(kg),
                    fmt(per_kg * kg)
                ),
                action: "Lower the dose for the child's weight.".into(),
                source: l.source,
                about: None,
            }),
            (Some(_), None) => out.push(Alert {
                rule: "dose-no-weight",
                severity: Severity::Moderate,
                title: format!("No weight recorded: the {} dose cannot be checked for a child", ingredient.name),
                detail: "A child's dose is checked by weight, and the chart has none.".into(),
                action: "Weigh the child and record it, then check the dose.".into(),
                source: l.source,
                about: None,
            }),
            _ => {}
        }
    }
    out
}

/// Ingredients contraindicated below an age (years), with why and the source.
pub static AGE_LIMITS: &[(&str, u32, &str, &str)] = &[
    (
        "2670",
        12,
        "codeine can cause life-threatening breathing problems in children under 12",
        "FDA Drug Safety Communication, April 2017 (codeine and tramadol in children)",
    ),
    (
        "10689",
        12,
        "tramadol can cause life-threatening breathing problems in children under 12",
        "FDA Drug Safety Communication, April 2017 (codeine and tramadol in children)",
    ),
];

/// The ingredients contraindicated at the patient's age.
pub fn age_alerts(drug: &Drug, facts: &Facts) -> Vec<Alert> {
    let Some(age) = facts.age_years else { return Vec::new() };
    drug.ingredients
        .iter()
        .filter_map(|i| AGE_LIMITS.iter().find(|l| l.0 == i.rxcui && age < l.1).map(|l| (i, l)))
        .map(|(i, l)| Alert {
            rule: "age",
            severity: Severity::High,
            title: format!("{} is contraindicated under {} years (the patient is {age})", i.name, l.1),
            detail: format!("{}.", capitalize(l.2)),
            action: "Choose another analgesic.".into(),
            source: l.3,
            about: None,
        })
        .collect()
}

/// A renal rule: below `below` (eGFR, mL/min/1.73 m²), what to do.
pub struct Renal {
    pub rxcui: Option<&'static str>,
    pub class: Option<Class>,
    pub below: f64,
    pub severity: Severity,
    pub what: &'static str,
    /// The most mg a day at this kidney function, when the source gives one.
    pub max_mg_day: Option<f64>,
    pub source: &'static str,
}

/// Renal rules, the strictest band of each drug first.
pub static RENAL: &[Renal] = &[
    Renal {
        rxcui: Some("6809"),
        class: None,
        below: 30.0,
        severity: Severity::High,
        what: "metformin is contraindicated below an eGFR of 30",
        max_mg_day: None,
        source: "FDA Drug Safety Communication, April 2016 (metformin and kidney function)",
    },
    Renal {
        rxcui: Some("6809"),
        class: None,
        below: 45.0,
        severity: Severity::Moderate,
        what: "starting metformin is not recommended at an eGFR of 30-45; weigh benefit and risk if already taking it",
        max_mg_day: None,
        source: "FDA Drug Safety Communication, April 2016 (metformin and kidney function)",
    },
    Renal {
        rxcui: None,
        class: Some(Class::Nsaid),
        below: 30.0,
        severity: Severity::High,
        what: "NSAIDs should be avoided below an eGFR of 30",
        max_mg_day: None,
        source: "KDIGO 2012 Clinical Practice Guideline for CKD, 4.4.1",
    },
    Renal {
        rxcui: Some("7454"),
        class: None,
        below: 30.0,
        severity: Severity::High,
        what: "nitrofurantoin should be avoided below a creatinine clearance of 30 (ineffective, toxic)",
        max_mg_day: None,
        source: "American Geriatrics Society Beers Criteria 2023",
    },
    Renal {
        rxcui: Some("25480"),
        class: None,
        below: 15.0,
        severity: Severity::Moderate,
        what: "gabapentin below a creatinine clearance of 15: 100-300 mg a day",
        max_mg_day: Some(300.0),
        source: "Gabapentin (Neurontin) prescribing information, dosage in renal impairment",
    },
    Renal {
        rxcui: Some("25480"),
        class: None,
        below: 30.0,
        severity: Severity::Moderate,
        what: "gabapentin at a creatinine clearance of 15-29: 200-700 mg a day",
        max_mg_day: Some(700.0),
        source: "Gabapentin (Neurontin) prescribing information, dosage in renal impairment",
    },
    Renal {
        rxcui: Some("25480"),
        class: None,
        below: 60.0,
        severity: Severity::Moderate,
        what: "gabapentin at a creatinine clearance of 30-59: 400-1,400 mg a day",
        max_mg_day: Some(1400.0),
        source: "Gabapentin (Neurontin) prescribing information, dosage in renal impairment",
    },
    Renal {
        rxcui: Some("10689"),
        class: None,
        below: 30.0,
        severity: Severity::Moderate,
        what: "tramadol below a creatinine clearance of 30: every 12 hours, at most 200 mg a day",
        max_mg_day: Some(200.0),
        source: "Tramadol (Ultram) prescribing information, renal impairment",
    },
    Renal {
        rxcui: Some("2551"),
        class: None,
        below: 50.0,
        severity: Severity::Moderate,
        what: "ciprofloxacin below a creatinine clearance of 50: the dose interval is lengthened",
        max_mg_day: None,
        source: "Ciprofloxacin (Cipro) prescribing information, renal impairment",
    },
    Renal {
        rxcui: Some("82122"),
        class: None,
        below: 50.0,
        severity: Severity::Moderate,
        what: "levofloxacin below a creatinine clearance of 50: the dose is reduced",
        max_mg_day: None,
        source: "Levofloxacin (Levaquin) prescribing information, renal impairment",
    },
    Renal {
        rxcui: Some("10180"),
        class: None,
        below: 15.0,
        severity: Severity::High,
        what: "sulfamethoxazole-trimethoprim is not recommended below a creatinine clearance of 15",
        max_mg_day: None,
        source: "Sulfamethoxazole and trimethoprim (Bactrim) prescribing information",
    },
    Renal {
        rxcui: Some("10180"),
        class: None,
        below: 30.0,
        severity: Severity::Moderate,
        what: "sulfamethoxazole-trimethoprim at a creatinine clearance of 15-30: half the usual dose",
        max_mg_day: None,
        source: "Sulfamethoxazole and trimethoprim (Bactrim) prescribing information",
    },
];

/// The latest eGFR against the renal rules of the drug's ingredients and classes (the
/// strictest band that applies, once per ingredient).
pub fn renal_alerts(drug: &Drug, dose: Option<Dose>, facts: &Facts) -> Vec<Alert> {
    let Some((egfr, when)) = &facts.egfr else { return Vec::new() };
    let strengths = strengths(drug);
    let mut out = Vec::new();
    for ingredient in drug.ingredients {
        let rule = RENAL.iter().find(|r| {
            *egfr < r.below
                && (r.rxcui == Some(ingredient.rxcui) || r.class.is_some_and(|c| ingredient.classes.contains(&c)))
        });
        let Some(r) = rule else { continue };
        let daily = dose.and_then(|d| {
            strengths.iter().find(|s| s.0.rxcui == ingredient.rxcui).map(|s| d.units * s.1 * d.times_a_day)
        });
        let over = matches!((r.max_mg_day, daily), (Some(max), Some(d)) if d > max + 1e-9);
        out.push(Alert {
            rule: "renal",
            severity: if over { Severity::High } else { r.severity },
            title: match (over, daily) {
                (true, Some(d)) => {
                    format!("{} {} mg a day is too much at an eGFR of {}", ingredient.name, fmt(d), fmt(*egfr))
                }
                _ => format!("Kidney function: eGFR {} ({})", fmt(*egfr), when.chars().take(10).collect::<String>()),
            },
            detail: format!("{}.", capitalize(r.what)),
            action: if r.severity == Severity::High || over {
                "Choose another drug or a dose for this kidney function.".into()
            } else {
                "Check the dose for this kidney function.".into()
            },
            source: r.source,
            about: None,
        });
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A pregnancy rule: an ingredient or class to avoid, why, how strongly.
pub struct Pregnancy {
    pub rxcui: Option<&'static str>,
    pub class: Option<Class>,
    pub severity: Severity,
    pub why: &'static str,
    pub source: &'static str,
}

pub static PREGNANCY: &[Pregnancy] = &[
    Pregnancy {
        rxcui: None,
        class: Some(Class::AceInhibitor),
        severity: Severity::High,
        why: "drugs acting on the renin-angiotensin system cause injury and death to the developing fetus",
        source: "FDA boxed warning: fetal toxicity (ACE inhibitor labeling)",
    },
    Pregnancy {
        rxcui: None,
        class: Some(Class::AngiotensinReceptorBlocker),
        severity: Severity::High,
        why: "drugs acting on the renin-angiotensin system cause injury and death to the developing fetus",
        source: "FDA boxed warning: fetal toxicity (angiotensin receptor blocker labeling)",
    },
    Pregnancy {
        rxcui: Some("11289"),
        class: None,
        severity: Severity::High,
        why: "warfarin crosses the placenta and causes embryopathy and fetal bleeding; contraindicated except with mechanical heart valves at high risk",
        source: "Warfarin (Coumadin) prescribing information, contraindications",
    },
    Pregnancy {
        rxcui: None,
        class: Some(Class::Tetracycline),
        severity: Severity::Moderate,
        why: "tetracyclines in the second and third trimesters discolor the child's teeth permanently",
        source: "Doxycycline prescribing information, warnings",
    },
    Pregnancy {
        rxcui: None,
        class: Some(Class::Nsaid),
        severity: Severity::Moderate,
        why: "NSAIDs at 20 weeks or later can cause fetal kidney problems and low amniotic fluid",
        source: "FDA Drug Safety Communication, October 2020 (NSAIDs in pregnancy at 20 weeks or later)",
    },
    Pregnancy {
        rxcui: None,
        class: Some(Class::Statin),
        severity: Severity::Moderate,
        why: "most patients should stop a statin when pregnancy is recognized",
        source: "FDA Drug Safety Communication, July 2021 (statins in pregnancy)",
    },
    Pregnancy {
        rxcui: None,
        class: Some(Class::Fluoroquinolone),
        severity: Severity::Moderate,
        why: "fluoroquinolones are avoided in pregnancy when an alternative exists",
        source: "ACOG; fluoroquinolone prescribing information, use in specific populations",
    },
];

/// A recorded pregnancy against the drug's ingredients and classes.
pub fn pregnancy_alerts(drug: &Drug, facts: &Facts) -> Vec<Alert> {
    if !facts.pregnant {
        return Vec::new();
    }
    let mut out: Vec<Alert> = Vec::new();
    for ingredient in drug.ingredients {
        for r in PREGNANCY {
            let hit = r.rxcui == Some(ingredient.rxcui) || r.class.is_some_and(|c| ingredient.classes.contains(&c));
            if hit && !out.iter().any(|a| a.source == r.source) {
                out.push(Alert {
                    rule: "pregnancy",
                    severity: r.severity,
                    title: format!("Pregnancy is recorded: {}", ingredient.name),
                    detail: format!("{}.", capitalize(r.why)),
                    action: if r.severity == Severity::High {
                        "Choose another drug.".into()
                    } else {
                        "Prefer another drug; if it is needed, use it for the shortest time.".into()
                    },
                    source: r.source,
                    about: None,
                });
            }
        }
    }
    out
}

/// SNOMED CT codes of a pregnancy as a problem (Condition.code).
pub const PREGNANCY_CONDITIONS: &[&str] = &["77386006", "72892002"];
/// LOINC pregnancy status, and its answer "Pregnant".
pub const PREGNANCY_STATUS: (&str, &str) = ("82810-3", "LA15173-0");
/// LOINC codes of an eGFR.
pub const EGFR_CODES: &[&str] = &["33914-3", "48642-3", "48643-1", "62238-1", "69405-9", "98979-8"];

/// Whether the patient's active problems or latest pregnancy status record a pregnancy.
pub fn pregnant(conditions: &[Value], observations: &[Value]) -> bool {
    let active =
        |c: &Value| c["clinicalStatus"]["coding"].as_array().is_some_and(|cs| cs.iter().any(|x| x["code"] == "active"));
    let by_problem = conditions.iter().any(|c| {
        active(c)
            && c["code"]["coding"].as_array().is_some_and(|cs| {
                cs.iter().any(|x| x["code"].as_str().is_some_and(|k| PREGNANCY_CONDITIONS.contains(&k)))
            })
    });
    let latest = observations
        .iter()
        .filter(|o| o["code"]["coding"].as_array().is_some_and(|cs| cs.iter().any(|x| x["code"] == PREGNANCY_STATUS.0)))
        .max_by_key(|o| o["effectiveDateTime"].as_str().unwrap_or("").to_string());
    by_problem
        || latest.is_some_and(|o| {
            o["valueCodeableConcept"]["coding"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|x| x["code"] == PREGNANCY_STATUS.1))
        })
}

/// The searches that give [`facts`] what it reads: (Observation codes, Condition codes),
/// each a comma-separated token list (`system|code,...`).
pub fn fact_queries() -> (String, String) {
    let loinc = |c: &str| format!("http://loinc.org|{c}");
    let mut codes: Vec<String> = vec![loinc("29463-7"), loinc(PREGNANCY_STATUS.0)];
    codes.extend(EGFR_CODES.iter().map(|c| loinc(c)));
    let problems: Vec<String> = PREGNANCY_CONDITIONS.iter().map(|c| format!("http://snomed.info/sct|{c}")).collect();
    (codes.join(","), problems.join(","))
}

/// The facts from the Patient, its observations of [`fact_queries`] (newest first) and
/// its conditions, on `today` (`YYYY-MM-DD`).
pub fn facts(patient: &Value, observations: &[Value], conditions: &[Value], today: &str) -> Facts {
    let has = |o: &Value, codes: &[&str]| {
        o["code"]["coding"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["code"].as_str().is_some_and(|k| codes.contains(&k))))
    };
    let newest = |codes: &[&str]| {
        observations
            .iter()
            .filter(|o| has(o, codes))
            .max_by_key(|o| o["effectiveDateTime"].as_str().unwrap_or("").to_string())
    };
    let weight_kg = newest(&["29463-7"]).and_then(|o| match o["valueQuantity"]["unit"].as_str() {
        Some("g") => o["valueQuantity"]["value"].as_f64().map(|g| g / 1000.0),
        Some("[lb_av]" | "lb" | "lbs") => o["valueQuantity"]["value"].as_f64().map(|lb| lb * 0.453_592_37),
        _ => o["valueQuantity"]["value"].as_f64(),
    });
    let egfr = newest(EGFR_CODES).and_then(|o| {
        let v = o["valueQuantity"]["value"].as_f64()?;
        Some((v, o["effectiveDateTime"].as_str().unwrap_or("").to_string()))
    });
    let age_years = patient["birthDate"].as_str().and_then(|b| crate::preventive::years_between(b, today));
    Facts { age_years, weight_kg, egfr, pregnant: pregnant(conditions, observations) }
}

/// The dose a MedicationRequest gives (its first dose and timing), when it reads.
pub fn dose_of_request(mr: &Value) -> Option<Dose> {
    let d = &mr["dosageInstruction"][0];
    let units = d["doseAndRate"][0]["doseQuantity"]["value"].as_f64().filter(|u| *u > 0.0)?;
    let r = &d["timing"]["repeat"];
    let (freq, period) = (r["frequency"].as_f64().unwrap_or(1.0), r["period"].as_f64().filter(|p| *p > 0.0)?);
    let per_day = match r["periodUnit"].as_str()? {
        "h" => 24.0 / period,
        "d" => 1.0 / period,
        "wk" => 1.0 / (7.0 * period),
        _ => return None,
    };
    Some(Dose { units, times_a_day: freq * per_day })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drugs::{DRUGS, find};

    fn drug(name: &str) -> &'static Drug {
        find(name, 1)[0].1
    }

    #[test]
    fn every_drug_s_strength_is_read_for_every_ingredient() {
        for d in DRUGS {
            let s = strengths(d);
            assert_eq!(s.len(), d.ingredients.len(), "{}", d.name);
            assert!(s.iter().all(|x| x.1 > 0.0), "{}", d.name);
        }
        assert_eq!(strengths(drug("amoxicillin 250 MG/5 ML"))[0].1, 50.0);
        let augmentin = strengths(drug("clavulanate"));
        assert_eq!((augmentin[0].1, augmentin[1].1), (875.0, 125.0));
        assert_eq!(strengths(drug("albuterol"))[0].1, 0.09);
    }

    #[test]
    fn every_limit_names_an_ingredient_of_the_table() {
        for l in LIMITS {
            assert!(crate::drugs::ingredient(l.rxcui).is_some(), "{}", l.rxcui);
        }
        for r in RENAL {
            assert!(r.rxcui.is_none_or(|x| crate::drugs::ingredient(x).is_some()), "{:?}", r.rxcui);
        }
    }

    #[test]
    fn a_daily_dose_above_the_maximum_is_high() {
        let apap = drug("acetaminophen 500 MG Oral Tablet");
        let adult = Facts { age_years: Some(40), ..Facts::default() };
        // 2 tablets four times a day: 4,000 mg, at the limit
        assert!(dose_alerts(apap, Dose { units: 2.0, times_a_day: 4.0 }, &adult).is_empty());
        // every 4 hours as needed: 6,000 mg
        let a = dose_alerts(apap, Dose { units: 2.0, times_a_day: 6.0 }, &adult);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].severity, Severity::High);
        assert_eq!(a[0].title, "acetaminophen 6,000 mg a day is above the maximum of 4,000 mg a day");
        // the codeine of a combination is checked too
        let t3 = drug("codeine");
        let a = dose_alerts(t3, Dose { units: 3.0, times_a_day: 6.0 }, &adult);
        assert!(a.iter().any(|x| x.title.starts_with("codeine 540 mg")), "{a:?}");
    }

    #[test]
    fn a_child_s_dose_is_checked_by_weight() {
        let susp = drug("amoxicillin 250 MG/5 ML");
        let child = Facts { age_years: Some(4), weight_kg: Some(16.0), ..Facts::default() };
        // 10 mL three times a day = 1,500 mg = 94 mg/kg: above 90
        let a = dose_alerts(susp, Dose { units: 10.0, times_a_day: 3.0 }, &child);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].rule, "dose-maximum-child");
        assert!(a[0].title.contains("93.8 mg/kg"), "{}", a[0].title);
        // 7.5 mL three times a day = 1,125 mg = 70 mg/kg: fine
        assert!(dose_alerts(susp, Dose { units: 7.5, times_a_day: 3.0 }, &child).is_empty());
        let no_weight = Facts { age_years: Some(4), ..Facts::default() };
        let a = dose_alerts(susp, Dose { units: 5.0, times_a_day: 3.0 }, &no_weight);
        assert_eq!(a[0].rule, "dose-no-weight");
        assert_eq!(a[0].severity, Severity::Moderate);
    }

    #[test]
    fn codeine_is_refused_to_a_young_child() {
        let t3 = drug("codeine");
        let child = Facts { age_years: Some(8), ..Facts::default() };
        let a = age_alerts(t3, &child);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].severity, Severity::High);
        assert!(a[0].title.starts_with("codeine is contraindicated under 12 years"), "{}", a[0].title);
        assert!(age_alerts(t3, &Facts { age_years: Some(30), ..Facts::default() }).is_empty());
        assert!(age_alerts(t3, &Facts::default()).is_empty());
    }

    #[test]
    fn kidney_function_bands() {
        let metformin = drug("metformin");
        let at = |egfr: f64| Facts { egfr: Some((egfr, "2026-11-01".into())), ..Facts::default() };
        assert_eq!(renal_alerts(metformin, None, &at(25.0))[0].severity, Severity::High);
        assert_eq!(renal_alerts(metformin, None, &at(40.0))[0].severity, Severity::Moderate);
        assert!(renal_alerts(metformin, None, &at(60.0)).is_empty());
        let gaba = drug("gabapentin");
        // 300 mg three times a day = 900 mg: within 400-1,400 at eGFR 45
        let a = renal_alerts(gaba, Some(Dose { units: 1.0, times_a_day: 3.0 }), &at(45.0));
        assert_eq!(a[0].severity, Severity::Moderate);
        // the same at eGFR 20 (at most 700): high
        let a = renal_alerts(gaba, Some(Dose { units: 1.0, times_a_day: 3.0 }), &at(20.0));
        assert_eq!(a[0].severity, Severity::High);
        assert!(a[0].title.contains("900 mg a day is too much"), "{}", a[0].title);
        assert_eq!(renal_alerts(drug("naproxen"), None, &at(20.0))[0].severity, Severity::High);
        assert!(renal_alerts(drug("naproxen"), None, &Facts::default()).is_empty());
    }

    #[test]
    fn pregnancy_is_read_from_problems_or_status_and_checked() {
        let preg = json_condition("77386006");
        assert!(pregnant(&[preg], &[]));
        let status = serde_json::json!({"code": {"coding": [{"code": "82810-3"}]}, "effectiveDateTime": "2026-10-01",
            "valueCodeableConcept": {"coding": [{"code": "LA15173-0"}]}});
        let later = serde_json::json!({"code": {"coding": [{"code": "82810-3"}]}, "effectiveDateTime": "2026-11-20",
            "valueCodeableConcept": {"coding": [{"code": "LA26683-5"}]}});
        assert!(pregnant(&[], std::slice::from_ref(&status)));
        assert!(!pregnant(&[], &[status, later]), "the latest status counts");
        let facts = Facts { pregnant: true, ..Facts::default() };
        assert_eq!(pregnancy_alerts(drug("lisinopril"), &facts)[0].severity, Severity::High);
        assert_eq!(pregnancy_alerts(drug("ibuprofen 400"), &facts)[0].severity, Severity::Moderate);
        assert!(pregnancy_alerts(drug("amoxicillin 500"), &facts).is_empty());
        assert!(pregnancy_alerts(drug("lisinopril"), &Facts::default()).is_empty());
    }

    #[test]
    fn facts_are_read_from_the_chart() {
        let p = serde_json::json!({"birthDate": "2000-06-15"});
        let obs = [
            serde_json::json!({"code": {"coding": [{"code": "29463-7"}]}, "effectiveDateTime": "2026-01-01", "valueQuantity": {"value": 150, "unit": "[lb_av]"}}),
            serde_json::json!({"code": {"coding": [{"code": "29463-7"}]}, "effectiveDateTime": "2025-01-01", "valueQuantity": {"value": 60, "unit": "kg"}}),
            serde_json::json!({"code": {"coding": [{"code": "62238-1"}]}, "effectiveDateTime": "2026-02-01", "valueQuantity": {"value": 58}}),
        ];
        let f = facts(&p, &obs, &[], "2026-06-14");
        assert_eq!(f.age_years, Some(25));
        assert!((f.weight_kg.unwrap() - 68.04).abs() < 0.01, "the newest weight, in kg: {:?}", f.weight_kg);
        assert_eq!(f.egfr, Some((58.0, "2026-02-01".to_string())));
        assert!(!f.pregnant);
        let mr = serde_json::json!({"dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 2}}], "timing": {"repeat": {"frequency": 1, "period": 6, "periodUnit": "h"}}}]});
        assert_eq!(dose_of_request(&mr), Some(Dose { units: 2.0, times_a_day: 4.0 }));
    }

    fn json_condition(code: &str) -> Value {
        serde_json::json!({"clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]}})
    }
}
