//! Decision support for Hale, pure: no I/O, the caller hands in the patient's data as
//! FHIR JSON (read through the gate) and gets alerts back. [`check_order`] is the
//! medication-safety hook run before a prescription is signed: the order against the
//! patient's allergies (by ingredient, by drug class, by cross-sensitivity between
//! classes) and active medications (drug–drug interactions, duplicate therapy). Every
//! alert says why, what to do and where the rule comes from. Dose checks are to join.

#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod childhood;
pub mod dosing;
pub mod drugs;
pub mod measures;
pub mod medications;
pub mod preventive;
pub mod results;
pub mod terms;

use drugs::{Class, Drug, INGREDIENTS, Ingredient};
use serde_json::Value;

/// How serious an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; no action needed to sign.
    Moderate,
    /// Signing needs a reason to override.
    High,
}

impl Severity {
    pub fn code(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Moderate => "moderate",
        }
    }
}

/// A rule of decision support, as data: what it checks, where it comes from, when it
/// was last reviewed.
#[derive(Debug)]
pub struct Rule {
    pub id: &'static str,
    pub summary: &'static str,
    pub source: &'static str,
    pub reviewed: &'static str,
}

/// The rules of [`check_order`], as data.
pub static RULES: &[Rule] = &[
    Rule {
        id: "allergy-ingredient",
        summary: "The order contains an ingredient the patient is recorded as allergic to.",
        source: "Hale drug table (RxNorm ingredients, NLM)",
        reviewed: "2026-12-07",
    },
    Rule {
        id: "allergy-class",
        summary: "The order contains a drug of a class the patient is recorded as allergic to (by the class, or by another drug of it).",
        source: "Drug classes: WHO ATC classification via NLM RxClass",
        reviewed: "2026-12-07",
    },
    Rule {
        id: "allergy-cross-sensitivity",
        summary: "The order is a cephalosporin and the patient has a penicillin allergy: cross-reactivity is uncommon but possible.",
        source: "Khan DA et al. Drug allergy: a 2022 practice parameter update. J Allergy Clin Immunol 2022;150:1333-93",
        reviewed: "2026-12-07",
    },
    Rule {
        id: "drug-interaction",
        summary: "The order interacts with an active medication (a table of pairs of ingredients, classes or groups, each with its effect, what to do and its source).",
        source: "ONC high-priority drug-drug interactions (Phansalkar 2012, Table 2) and product labels, per pair",
        reviewed: "2026-12-08",
    },
    Rule {
        id: "duplicate-ingredient",
        summary: "An active prescription already contains the ordered ingredient.",
        source: "Hale drug table (RxNorm ingredients, NLM)",
        reviewed: "2026-12-07",
    },
    Rule {
        id: "duplicate-class",
        summary: "An active prescription is of the same class (two statins; high severity for anticoagulants, NSAIDs, opioids, SSRIs, MAO inhibitors).",
        source: "Drug classes: WHO ATC classification via NLM RxClass",
        reviewed: "2026-12-07",
    },
    Rule {
        id: "dose-maximum",
        summary: "The daily dose of an ingredient is above its maximum (dose x strength x times a day).",
        source: "Product labeling per ingredient (see the limits below)",
        reviewed: "2026-12-07",
    },
    Rule {
        id: "dose-maximum-child",
        summary: "For a child (under 18) with a recorded weight, the daily dose in mg/kg is above the child's maximum.",
        source: "Product labeling per ingredient (see the limits below)",
        reviewed: "2026-12-07",
    },
    Rule {
        id: "dose-no-weight",
        summary: "A child's dose of a weight-dosed ingredient cannot be checked: no weight is recorded.",
        source: "Product labeling per ingredient (see the limits below)",
        reviewed: "2026-12-07",
    },
    Rule {
        id: "age",
        summary: "The drug is contraindicated at the patient's age (codeine and tramadol under 12).",
        source: "FDA Drug Safety Communication, April 2017",
        reviewed: "2026-12-07",
    },
    Rule {
        id: "renal",
        summary: "The latest eGFR is below an ingredient's renal limit: avoid, or a lower dose (high when the daily dose is above the band's maximum).",
        source: "FDA communications, KDIGO 2012, AGS Beers 2023 and product labeling, per rule (see below)",
        reviewed: "2026-12-07",
    },
    Rule {
        id: "pregnancy",
        summary: "A pregnancy is recorded (an active problem, or the latest pregnancy status) and the drug is one to avoid in it.",
        source: "FDA boxed warnings and safety communications, product labeling, per rule (see below)",
        reviewed: "2026-12-07",
    },
    Rule {
        id: "critical-value",
        summary: "A laboratory value beyond a critical limit (by LOINC): flagged LL or HH and sent to the ordering clinician's inbox at once, first in it.",
        source: results::CRITICAL_SOURCE,
        reviewed: "2026-12-07",
    },
];

/// The medication-safety hook run before a prescription is signed: `drug` against the
/// patient's `allergies` (AllergyIntolerance resources) and active `medications`
/// (MedicationRequest resources), all as FHIR JSON; the alerts most severe first.
pub fn check_order(drug: &Drug, allergies: &[Value], medications: &[Value]) -> Vec<Alert> {
    let mut alerts = allergy_alerts(drug, allergies);
    alerts.extend(medications::medication_alerts(drug, medications));
    alerts.sort_by_key(|a| std::cmp::Reverse(a.severity));
    alerts
}

/// [`check_order`], and the checks that need the dose and the patient: the daily dose
/// against its maximum (a child's by weight), the latest eGFR, a recorded pregnancy.
/// `dose` is `None` before the prescriber has given one.
pub fn check_prescription(
    drug: &Drug,
    allergies: &[Value],
    medications: &[Value],
    facts: &dosing::Facts,
    dose: Option<dosing::Dose>,
) -> Vec<Alert> {
    let mut alerts = check_order(drug, allergies, medications);
    if let Some(d) = dose {
        alerts.extend(dosing::dose_alerts(drug, d, facts));
    }
    alerts.extend(dosing::age_alerts(drug, facts));
    alerts.extend(dosing::renal_alerts(drug, dose, facts));
    alerts.extend(dosing::pregnancy_alerts(drug, facts));
    alerts.sort_by_key(|a| std::cmp::Reverse(a.severity));
    alerts
}

/// Why an alert fired and what to do: for the prescriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub rule: &'static str,
    pub severity: Severity,
    /// One line: what conflicts with what.
    pub title: String,
    /// Why, in a sentence or two.
    pub detail: String,
    /// What to do.
    pub action: String,
    pub source: &'static str,
    /// The AllergyIntolerance (`AllergyIntolerance/id`) the alert is about.
    pub about: Option<String>,
}

/// What an allergy names: an ingredient or a whole class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allergen {
    Ingredient(&'static Ingredient),
    Class(Class),
}

/// SNOMED CT concepts of allergy findings and substances Hale maps to a class.
const SNOMED_CLASSES: &[(&str, Class)] = &[
    ("91936005", Class::Penicillin),            // Allergy to penicillin (finding)
    ("91939003", Class::SulfonamideAntibiotic), // Allergy to sulfonamide (finding)
    ("764146007", Class::Penicillin),           // Penicillin (substance)
];

/// Words of an allergy's text that name a class.
const CLASS_WORDS: &[(&str, Class)] = &[
    ("penicillin", Class::Penicillin),
    ("penicillins", Class::Penicillin),
    ("cephalosporin", Class::Cephalosporin),
    ("cephalosporins", Class::Cephalosporin),
    ("sulfa", Class::SulfonamideAntibiotic),
    ("sulfonamide", Class::SulfonamideAntibiotic),
    ("sulfonamides", Class::SulfonamideAntibiotic),
    ("sulphonamide", Class::SulfonamideAntibiotic),
    ("macrolide", Class::Macrolide),
    ("macrolides", Class::Macrolide),
    ("quinolone", Class::Fluoroquinolone),
    ("quinolones", Class::Fluoroquinolone),
    ("fluoroquinolone", Class::Fluoroquinolone),
    ("fluoroquinolones", Class::Fluoroquinolone),
    ("tetracycline", Class::Tetracycline),
    ("tetracyclines", Class::Tetracycline),
    ("nsaid", Class::Nsaid),
    ("nsaids", Class::Nsaid),
    ("opioid", Class::Opioid),
    ("opioids", Class::Opioid),
    ("opiate", Class::Opioid),
    ("opiates", Class::Opioid),
    ("statin", Class::Statin),
    ("statins", Class::Statin),
];

/// Whether an allergy is in force: not refuted or entered in error, not inactive or
/// resolved.
fn in_force(a: &Value) -> bool {
    let codes = |el: &Value| -> Vec<String> {
        el["coding"]
            .as_array()
            .map(|cs| cs.iter().filter_map(|c| c["code"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let v = codes(&a["verificationStatus"]);
    let c = codes(&a["clinicalStatus"]);
    !v.iter().any(|x| x == "refuted" || x == "entered-in-error")
        && !c.iter().any(|x| x == "inactive" || x == "resolved")
}

/// What an allergy names, and how that was read (for the alert's words).
fn allergens(a: &Value) -> Vec<(Allergen, String)> {
    let mut out: Vec<(Allergen, String)> = Vec::new();
    let mut push = |al: Allergen, how: String| {
        if !out.iter().any(|(x, _)| *x == al) {
            out.push((al, how));
        }
    };
    let codings = a["code"]["coding"].as_array().map(Vec::as_slice).unwrap_or_default();
    for c in codings {
        let (system, code) = (c["system"].as_str().unwrap_or(""), c["code"].as_str().unwrap_or(""));
        if system == "http://www.nlm.nih.gov/research/umls/rxnorm" {
            if let Some(i) = drugs::ingredient(code) {
                push(Allergen::Ingredient(i), format!("coded RxNorm {code}"));
            } else if let Some(d) = drugs::by_rxcui(code) {
                for i in d.ingredients {
                    push(Allergen::Ingredient(i), format!("coded RxNorm {code}"));
                }
            }
        }
        if system == "http://snomed.info/sct"
            && let Some((_, class)) = SNOMED_CLASSES.iter().find(|(s, _)| *s == code)
        {
            push(Allergen::Class(*class), format!("coded SNOMED CT {code}"));
        }
    }
    // the words people wrote: the text and the codings' displays
    let mut text = a["code"]["text"].as_str().unwrap_or("").to_lowercase();
    for c in codings {
        text.push(' ');
        text.push_str(&c["display"].as_str().unwrap_or("").to_lowercase());
    }
    let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    for (w, class) in CLASS_WORDS {
        if words.contains(w) {
            push(Allergen::Class(*class), format!("the word \u{201c}{w}\u{201d}"));
        }
    }
    for i in INGREDIENTS {
        let name_words: Vec<String> = i.name.to_lowercase().split_whitespace().map(str::to_string).collect();
        // "penicillin V" is read as the class "penicillin" above; other names whole
        if name_words.len() == 1 && words.contains(&name_words[0].as_str()) {
            push(Allergen::Ingredient(i), format!("the word \u{201c}{}\u{201d}", i.name));
        }
    }
    out
}

fn label(a: &Value) -> String {
    let t = a["code"]["text"].as_str().filter(|t| !t.trim().is_empty());
    let d = a["code"]["coding"].as_array().and_then(|cs| cs.iter().find_map(|c| c["display"].as_str()));
    t.or(d).unwrap_or("an allergy").to_string()
}

/// How specific an alert is: severity first, then ingredient over class over
/// cross-sensitivity.
fn rank(a: &Alert) -> (Severity, u8) {
    let specific = match a.rule {
        "allergy-ingredient" => 3,
        "allergy-class" => 2,
        _ => 1,
    };
    (a.severity, specific)
}

/// `drug` against the patient's `allergies` (AllergyIntolerance resources as JSON): by
/// ingredient, by class, and by cross-sensitivity.
pub fn allergy_alerts(drug: &Drug, allergies: &[Value]) -> Vec<Alert> {
    let mut alerts: Vec<Alert> = Vec::new();
    for a in allergies.iter().filter(|a| in_force(a)) {
        let about = a["id"].as_str().map(|id| format!("AllergyIntolerance/{id}"));
        let recorded = label(a);
        let critical = a["criticality"] == "high";
        let worded = |how: &str| {
            format!(
                "Recorded allergy: {recorded}{} (read from {how}).",
                if critical { ", high criticality" } else { "" }
            )
        };
        let named = allergens(a);
        for i in drug.ingredients {
            // one alert per allergy and ingredient: the most specific of what it names
            let mut best: Option<Alert> = None;
            for (allergen, how) in &named {
                let (allergen, how) = (*allergen, how.as_str());
                let alert = match allergen {
                    Allergen::Ingredient(x) if x == *i => Some(Alert {
                        rule: "allergy-ingredient",
                        severity: Severity::High,
                        title: format!("Allergy to {}: this order contains {}", x.name, i.name),
                        detail: worded(how),
                        action: "Do not prescribe it; choose a drug of another class, or record why it is safe for this patient.".into(),
                        source: RULES[0].source,
                        about: about.clone(),
                    }),
                    Allergen::Ingredient(x) => x.classes.iter().find(|c| i.classes.contains(c)).map(|c| Alert {
                        rule: "allergy-class",
                        severity: Severity::High,
                        title: format!("Allergy to {}: {} is {} too", x.name, i.name, c.one()),
                        detail: format!("{} Drugs of one class share their allergenic structure.", worded(how)),
                        action: "Choose a drug of another class, or record why it is safe for this patient.".into(),
                        source: RULES[1].source,
                        about: about.clone(),
                    }),
                    Allergen::Class(c) if i.classes.contains(&c) => Some(Alert {
                        rule: "allergy-class",
                        severity: Severity::High,
                        title: format!("Allergy to {}: {} is {}", c.name(), i.name, c.one()),
                        detail: worded(how),
                        action: "Choose a drug of another class, or record why it is safe for this patient.".into(),
                        source: RULES[1].source,
                        about: about.clone(),
                    }),
                    _ => None,
                };
                let alert = alert.or_else(|| {
                    // penicillin allergy, cephalosporin ordered
                    let penicillin = match allergen {
                        Allergen::Class(c) => c == Class::Penicillin,
                        Allergen::Ingredient(x) => x.classes.contains(&Class::Penicillin),
                    };
                    (penicillin && i.classes.contains(&Class::Cephalosporin)).then(|| Alert {
                        rule: "allergy-cross-sensitivity",
                        severity: if critical { Severity::High } else { Severity::Moderate },
                        title: format!("Penicillin allergy: {} is a cephalosporin", i.name),
                        detail: format!(
                            "{} About 1\u{2013}2 % of patients with a penicillin allergy react to a cephalosporin; the risk is higher with a severe or recent reaction.",
                            worded(how)
                        ),
                        action: "Prefer a drug of another class if the reaction was severe; otherwise prescribe with the patient informed.".into(),
                        source: RULES[2].source,
                        about: about.clone(),
                    })
                });
                if let Some(alert) = alert
                    && best.as_ref().is_none_or(|b| rank(&alert) > rank(b))
                {
                    best = Some(alert);
                }
            }
            alerts.extend(best);
        }
    }
    alerts.sort_by_key(|a| std::cmp::Reverse(a.severity));
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn drug(name: &str) -> &'static Drug {
        drugs::DRUGS.iter().find(|d| d.name.starts_with(name)).unwrap_or_else(|| panic!("{name}"))
    }

    fn allergy(code: Value) -> Value {
        json!({"resourceType": "AllergyIntolerance", "id": "a1", "code": code, "patient": {"reference": "Patient/p"}})
    }

    #[test]
    fn a_penicillin_allergy_stops_amoxicillin_however_it_is_recorded() {
        let forms = [
            json!({"coding": [{"system": "http://snomed.info/sct", "code": "91936005", "display": "Allergy to penicillin"}]}),
            json!({"text": "PENICILLINS (rash)"}),
            json!({"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7984", "display": "penicillin V"}]}),
            json!({"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "723"}]}),
        ];
        for f in forms {
            let alerts = allergy_alerts(drug("amoxicillin 500"), &[allergy(f.clone())]);
            assert_eq!(alerts.len(), 1, "{f}: {alerts:?}");
            assert_eq!(alerts[0].severity, Severity::High, "{f}");
            assert!(alerts[0].title.contains("amoxicillin"), "{:?}", alerts[0]);
            assert_eq!(alerts[0].about.as_deref(), Some("AllergyIntolerance/a1"));
        }
        // a combination product is caught by its penicillin
        let alerts = allergy_alerts(drug("amoxicillin 875"), &[allergy(json!({"text": "penicillin"}))]);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
    }

    #[test]
    fn cephalosporins_get_a_cross_sensitivity_warning() {
        let pen = allergy(json!({"coding": [{"system": "http://snomed.info/sct", "code": "91936005"}]}));
        let alerts = allergy_alerts(drug("cephalexin"), std::slice::from_ref(&pen));
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!((alerts[0].rule, alerts[0].severity), ("allergy-cross-sensitivity", Severity::Moderate));
        let mut severe = pen;
        severe["criticality"] = json!("high");
        assert_eq!(allergy_alerts(drug("cephalexin"), &[severe])[0].severity, Severity::High);
    }

    #[test]
    fn sulfonamide_and_nsaid_allergies_and_nothing_else() {
        let sulfa = allergy(
            json!({"coding": [{"system": "http://snomed.info/sct", "code": "91939003", "display": "Allergy to sulfonamide"}]}),
        );
        assert_eq!(allergy_alerts(drug("sulfamethoxazole"), std::slice::from_ref(&sulfa)).len(), 1);
        assert!(allergy_alerts(drug("amoxicillin 500"), std::slice::from_ref(&sulfa)).is_empty());
        let ibu = allergy(json!({"text": "ibuprofen"}));
        let alerts = allergy_alerts(drug("naproxen"), &[ibu]);
        assert_eq!((alerts.len(), alerts[0].rule), (1, "allergy-class"), "{alerts:?}");
        assert!(alerts[0].title.contains("naproxen is an NSAID too"), "{alerts:?}");
        // unrelated allergies and drugs: no alert
        for (a, d) in
            [("peanuts", "amoxicillin 500"), ("grass pollen", "ibuprofen 200"), ("penicillin", "azithromycin")]
        {
            assert!(allergy_alerts(drug(d), &[allergy(json!({"text": a}))]).is_empty(), "{a} / {d}");
        }
    }

    #[test]
    fn refuted_resolved_and_erroneous_allergies_do_not_count() {
        for (el, code) in [
            ("verificationStatus", "refuted"),
            ("verificationStatus", "entered-in-error"),
            ("clinicalStatus", "resolved"),
        ] {
            let mut a = allergy(json!({"text": "penicillin"}));
            a[el] = json!({"coding": [{"code": code}]});
            assert!(allergy_alerts(drug("amoxicillin 500"), &[a]).is_empty(), "{code}");
        }
    }

    #[test]
    fn the_table_is_consistent() {
        for d in drugs::DRUGS {
            assert!(!d.ingredients.is_empty(), "{}", d.name);
            assert!(matches!(d.tty, "SCD" | "IN"), "{}", d.name);
            if d.tty == "IN" {
                assert!(
                    d.ingredients.iter().any(|i| i.rxcui == d.rxcui),
                    "{}: an IN code is one of its ingredients",
                    d.name
                );
            }
            assert!(d.rxcui.chars().all(|c| c.is_ascii_digit()), "{}", d.name);
        }
        for (i, a) in INGREDIENTS.iter().enumerate() {
            assert!(
                INGREDIENTS[i + 1..].iter().all(|b| (a.rxcui.is_empty() || b.rxcui != a.rxcui) && b.name != a.name),
                "{} twice",
                a.name
            );
            // an ingredient without a confirmed code is not offered for ordering
            assert!(!a.rxcui.is_empty() || drugs::DRUGS.iter().all(|d| d.ingredients.iter().all(|i| i.name != a.name)));
        }
        assert_eq!(drugs::find("amox 500", 10).len(), 1);
        assert!(drugs::find("", 10).is_empty());
    }
}
