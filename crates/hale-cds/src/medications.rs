//! A new order against the patient's active medications: drug–drug interactions from a
//! table of pairs (each with its severity, the reason, what to do and its source), and
//! duplicate therapy (the same ingredient, or a second drug of one class).

use serde_json::Value;

use crate::drugs::{self, Class, Drug, INGREDIENTS, Ingredient};
use crate::{Alert, Severity};

/// One side of an interaction: an ingredient, or every ingredient of a class.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    Ingredient(&'static Ingredient),
    Class(Class),
}

impl Side {
    fn matches(self, i: &Ingredient) -> bool {
        match self {
            Side::Ingredient(x) => std::ptr::eq(x, i) || x.rxcui == i.rxcui,
            Side::Class(c) => i.classes.contains(&c),
        }
    }
}

/// A drug–drug interaction.
#[derive(Debug)]
pub struct Interaction {
    pub a: Side,
    pub b: Side,
    pub severity: Severity,
    pub effect: &'static str,
    pub action: &'static str,
    pub source: &'static str,
}

const ONC: &str = "Phansalkar S et al. High-priority drug-drug interactions for use in electronic health records. J Am Med Inform Assoc 2012;19:735-43 (ONC high-priority list)";

/// The interactions Hale checks, between drugs of its table.
pub static INTERACTIONS: &[Interaction] = &[
    Interaction {
        a: Side::Ingredient(&drugs::WARFARIN),
        b: Side::Class(Class::Nsaid),
        severity: Severity::High,
        effect: "NSAIDs with warfarin raise the risk of serious bleeding, gastrointestinal above all.",
        action: "Avoid; for pain prefer acetaminophen. If an NSAID is needed, use the lowest dose for the shortest time and watch for bleeding.",
        source: ONC,
    },
    Interaction {
        a: Side::Ingredient(&drugs::SIMVASTATIN),
        b: Side::Ingredient(&drugs::CLARITHROMYCIN),
        severity: Severity::High,
        effect: "Clarithromycin, a strong CYP3A4 inhibitor, raises simvastatin levels: risk of myopathy and rhabdomyolysis.",
        action: "Contraindicated: hold simvastatin during the course, or choose another antibiotic (e.g. azithromycin).",
        source: "Simvastatin (Zocor) prescribing information, contraindications",
    },
    Interaction {
        a: Side::Ingredient(&drugs::APIXABAN),
        b: Side::Class(Class::Nsaid),
        severity: Severity::High,
        effect: "NSAIDs with apixaban raise the risk of bleeding.",
        action: "Avoid; if an NSAID is needed, watch for bleeding.",
        source: "Apixaban (Eliquis) prescribing information, drug interactions",
    },
    Interaction {
        a: Side::Ingredient(&drugs::CLOPIDOGREL),
        b: Side::Ingredient(&drugs::OMEPRAZOLE),
        severity: Severity::Moderate,
        effect: "Omeprazole inhibits CYP2C19 and reduces the activation and effect of clopidogrel.",
        action: "Avoid omeprazole with clopidogrel; if a PPI is needed, consider pantoprazole.",
        source: "Clopidogrel (Plavix) prescribing information, warnings",
    },
    Interaction {
        a: Side::Ingredient(&drugs::TRAMADOL),
        b: Side::Class(Class::Ssri),
        severity: Severity::High,
        effect: "Tramadol with an SSRI risks serotonin syndrome and lowers the seizure threshold.",
        action: "Avoid if possible; otherwise use the lowest dose and tell the patient the signs of serotonin syndrome.",
        source: "Tramadol (Ultram) prescribing information, warnings",
    },
    Interaction {
        a: Side::Ingredient(&drugs::WARFARIN),
        b: Side::Ingredient(&drugs::SULFAMETHOXAZOLE),
        severity: Severity::High,
        effect: "Sulfamethoxazole-trimethoprim inhibits warfarin's metabolism: the INR rises, with a risk of bleeding.",
        action: "Prefer another antibiotic; if it is needed, check the INR within 3-5 days and adjust warfarin.",
        source: "Warfarin (Coumadin) prescribing information, drug interactions",
    },
    Interaction {
        a: Side::Ingredient(&drugs::WARFARIN),
        b: Side::Class(Class::Fluoroquinolone),
        severity: Severity::Moderate,
        effect: "Fluoroquinolones can raise the INR of a patient on warfarin.",
        action: "Check the INR within a few days of starting.",
        source: "Warfarin (Coumadin) prescribing information, drug interactions",
    },
];

/// Classes where a second drug is dangerous, not merely redundant.
const RISKY_DUPLICATES: &[Class] = &[Class::Anticoagulant, Class::Nsaid, Class::Opioid, Class::Ssri];

/// An active medication of the patient: its id and the ingredients Hale recognizes in it
/// (by RxNorm code, else by the names in its text).
fn ingredients_of(m: &Value) -> Vec<&'static Ingredient> {
    let cc = &m["medicationCodeableConcept"];
    let mut out: Vec<&'static Ingredient> = Vec::new();
    for c in cc["coding"].as_array().into_iter().flatten() {
        if c["system"] == "http://www.nlm.nih.gov/research/umls/rxnorm"
            && let Some(code) = c["code"].as_str()
        {
            if let Some(d) = drugs::by_rxcui(code) {
                out.extend(d.ingredients.iter().copied());
            } else if let Some(i) = drugs::ingredient(code) {
                out.push(i);
            }
        }
    }
    if out.is_empty() {
        let mut text = cc["text"].as_str().unwrap_or("").to_lowercase();
        for c in cc["coding"].as_array().into_iter().flatten() {
            text.push(' ');
            text.push_str(&c["display"].as_str().unwrap_or("").to_lowercase());
        }
        let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
        for i in INGREDIENTS {
            let first = i.name.split_whitespace().next().unwrap_or("").to_lowercase();
            if words.contains(&first.as_str()) {
                out.push(i);
            }
        }
    }
    out.sort_by_key(|i| i.rxcui);
    out.dedup_by_key(|i| i.rxcui);
    out
}

fn label(m: &Value) -> String {
    let cc = &m["medicationCodeableConcept"];
    cc["text"]
        .as_str()
        .or_else(|| cc["coding"].as_array().and_then(|cs| cs.iter().find_map(|c| c["display"].as_str())))
        .unwrap_or("an active medication")
        .to_string()
}

/// `drug` against the patient's active `medications` (MedicationRequests as JSON).
pub fn medication_alerts(drug: &Drug, medications: &[Value]) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for m in medications.iter().filter(|m| matches!(m["status"].as_str(), Some("active" | "on-hold"))) {
        let about = m["id"].as_str().map(|id| format!("MedicationRequest/{id}"));
        let theirs = ingredients_of(m);
        let name = label(m);
        for mine in drug.ingredients {
            for other in &theirs {
                // an interaction, whichever side each is on
                for x in INTERACTIONS {
                    if (x.a.matches(mine) && x.b.matches(other)) || (x.b.matches(mine) && x.a.matches(other)) {
                        alerts.push(Alert {
                            rule: "drug-interaction",
                            severity: x.severity,
                            title: format!("Interaction: {} with {} ({name})", mine.name, other.name),
                            detail: x.effect.to_string(),
                            action: x.action.to_string(),
                            source: x.source,
                            about: about.clone(),
                        });
                    }
                }
            }
            if theirs.iter().any(|o| o.rxcui == mine.rxcui) {
                alerts.push(Alert {
                    rule: "duplicate-ingredient",
                    severity: Severity::Moderate,
                    title: format!("Already prescribed: {} ({name})", mine.name),
                    detail: format!("The patient has an active prescription containing {}.", mine.name),
                    action: "Renew or change the existing prescription rather than adding a second one, unless both are meant.".into(),
                    source: "Hale drug table (RxNorm ingredients, NLM)",
                    about: about.clone(),
                });
            } else if let Some(c) = mine.classes.iter().find(|c| theirs.iter().any(|o| o.classes.contains(c))) {
                let risky = RISKY_DUPLICATES.contains(c);
                alerts.push(Alert {
                    rule: "duplicate-class",
                    severity: if risky { Severity::High } else { Severity::Moderate },
                    title: format!("Duplicate therapy: {} and {name} are both {}", mine.name, c.name()),
                    detail: if risky {
                        format!(
                            "Two {} together add their risks (bleeding, toxicity) more than their benefit.",
                            c.name()
                        )
                    } else {
                        format!("Two {} together rarely help.", c.name())
                    },
                    action: "Stop one of them, or record why both are needed.".into(),
                    source: "Drug classes: WHO ATC classification via NLM RxClass",
                    about: about.clone(),
                });
            }
        }
    }
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn drug(name: &str) -> &'static Drug {
        drugs::DRUGS.iter().find(|d| d.name.starts_with(name)).unwrap_or_else(|| panic!("{name}"))
    }

    fn active(id: &str, rxcui: Option<&str>, text: &str) -> Value {
        let mut cc = json!({"text": text});
        if let Some(c) = rxcui {
            cc["coding"] = json!([{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": c}]);
        }
        json!({"resourceType": "MedicationRequest", "id": id, "status": "active", "medicationCodeableConcept": cc})
    }

    #[test]
    fn warfarin_and_an_nsaid_interact_whichever_comes_first() {
        let warfarin = active("w", Some("11289"), "warfarin 5 mg");
        let a = medication_alerts(drug("ibuprofen 400"), std::slice::from_ref(&warfarin));
        assert_eq!((a.len(), a[0].rule, a[0].severity), (1, "drug-interaction", Severity::High), "{a:?}");
        assert_eq!(a[0].about.as_deref(), Some("MedicationRequest/w"));
        let naproxen = active("n", None, "Naproxen 500 mg twice daily");
        let a = medication_alerts(drug("warfarin"), &[naproxen]);
        assert_eq!(a.len(), 1, "matched by name: {a:?}");
        // a stopped prescription does not count
        let mut stopped = warfarin;
        stopped["status"] = json!("stopped");
        assert!(medication_alerts(drug("ibuprofen 400"), &[stopped]).is_empty());
    }

    #[test]
    fn duplicates_by_ingredient_and_by_class() {
        let atorva = active("a", Some("617310"), "atorvastatin 20 MG Oral Tablet");
        let a = medication_alerts(drug("simvastatin"), std::slice::from_ref(&atorva));
        assert_eq!((a[0].rule, a[0].severity), ("duplicate-class", Severity::Moderate), "{a:?}");
        let a = medication_alerts(drug("atorvastatin"), &[atorva]);
        assert_eq!(a[0].rule, "duplicate-ingredient");
        let naproxen = active("n", Some("7258"), "naproxen");
        let a = medication_alerts(drug("ibuprofen 200"), &[naproxen]);
        assert_eq!((a[0].rule, a[0].severity), ("duplicate-class", Severity::High), "two NSAIDs: {a:?}");
        let tramadol_ssri = medication_alerts(drug("tramadol"), &[active("s", Some("36437"), "sertraline")]);
        assert_eq!(tramadol_ssri[0].rule, "drug-interaction");
        assert!(medication_alerts(drug("amoxicillin 500"), &[active("m", Some("861007"), "metformin")]).is_empty());
    }
}
