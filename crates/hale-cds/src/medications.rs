//! A new order against the patient's active medications: drug–drug interactions from a
//! table of pairs (each with its severity, the reason, what to do and its source), and
//! duplicate therapy (the same ingredient, or a second drug of one class).

use serde_json::Value;

use crate::drugs::{self, Class, Drug, INGREDIENTS, Ingredient};
use crate::{Alert, Severity};

/// A named set of ingredients that is not a class of the drug table: the drugs of one
/// pharmacological property (an enzyme's inhibitors, the drugs that prolong the QT
/// interval). Unlike a class it raises no duplicate-therapy or allergy alert.
#[derive(Debug)]
pub struct Group {
    pub name: &'static str,
    pub members: &'static [&'static Ingredient],
}

/// One side of an interaction: an ingredient, every ingredient of a class, or a group.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    Ingredient(&'static Ingredient),
    Class(Class),
    Group(&'static Group),
}

impl Side {
    fn matches(self, i: &Ingredient) -> bool {
        match self {
            Side::Ingredient(x) => x.name == i.name,
            Side::Class(c) => i.classes.contains(&c),
            Side::Group(g) => g.members.iter().any(|m| m.name == i.name),
        }
    }

    /// The side in words: "warfarin", "NSAIDs", "CYP3A4 inhibitors".
    pub fn name(self) -> &'static str {
        match self {
            Side::Ingredient(i) => i.name,
            Side::Class(c) => c.name(),
            Side::Group(g) => g.name,
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

const ONC: &str = "Phansalkar S et al. High-priority drug-drug interactions for use in electronic health records. J Am Med Inform Assoc 2012;19(5):735-43, Table 2 (ONC high-priority list)";
const WARFARIN_LABEL: &str = "Warfarin (Coumadin) prescribing information, drug interactions";

/// The potent CYP3A4 inhibitors the simvastatin, lovastatin and ergotamine labels name
/// as contraindicated (clarithromycin, erythromycin, ketoconazole, itraconazole,
/// ritonavir): the side of the irinotecan and ergot pairs, whose labels warn against
/// strong inhibitors. Azithromycin is not one.
pub static STRONG_CYP3A4_INHIBITORS: Group = Group {
    name: "strong CYP3A4 inhibitors",
    members: &[
        &drugs::CLARITHROMYCIN,
        &drugs::ERYTHROMYCIN,
        &drugs::KETOCONAZOLE,
        &drugs::ITRACONAZOLE,
        &drugs::RITONAVIR,
    ],
};

/// CYP3A4 inhibitors against simvastatin and lovastatin: the strong ones above and the
/// moderate ones NLM RxNav's ONCHigh source asserts against simvastatin (fluconazole,
/// diltiazem).
pub static CYP3A4_INHIBITORS: Group = Group {
    name: "CYP3A4 inhibitors",
    members: &[
        &drugs::CLARITHROMYCIN,
        &drugs::ERYTHROMYCIN,
        &drugs::KETOCONAZOLE,
        &drugs::ITRACONAZOLE,
        &drugs::RITONAVIR,
        &drugs::FLUCONAZOLE,
        &drugs::DILTIAZEM,
    ],
};

/// CYP1A2 inhibitors RxNav's ONCHigh source asserts against tizanidine and ramelteon.
pub static CYP1A2_INHIBITORS: Group =
    Group { name: "CYP1A2 inhibitors", members: &[&drugs::CIPROFLOXACIN, &drugs::FLUVOXAMINE] };

/// The statins cleared mainly by CYP3A4, whose labels contraindicate strong CYP3A4
/// inhibitors. Atorvastatin's label limits its dose instead, and pravastatin and
/// rosuvastatin are not cleared by CYP3A4: none of the three is a member.
pub static CYP3A4_STATINS: Group =
    Group { name: "simvastatin or lovastatin", members: &[&drugs::SIMVASTATIN, &drugs::LOVASTATIN] };

/// Strong CYP3A4 inducers (RxNav's ONCHigh asserts rifampin against ritonavir).
pub static STRONG_CYP3A4_INDUCERS: Group =
    Group { name: "strong CYP3A4 inducers", members: &[&drugs::RIFAMPIN, &drugs::CARBAMAZEPINE, &drugs::PHENYTOIN] };

/// HIV protease inhibitors (a group, not a class: ritonavir boosting another one is the
/// usual regimen, not a duplicate).
pub static HIV_PROTEASE_INHIBITORS: Group =
    Group { name: "HIV protease inhibitors", members: &[&drugs::RITONAVIR, &drugs::ATAZANAVIR, &drugs::LOPINAVIR] };

pub static THIOPURINES: Group =
    Group { name: "azathioprine or mercaptopurine", members: &[&drugs::AZATHIOPRINE, &drugs::MERCAPTOPURINE] };

/// Drugs with a known risk of torsades de pointes (RxNav's ONCHigh asserts
/// ciprofloxacin–fluconazole and azithromycin–amiodarone).
pub static QT_PROLONGING: Group = Group {
    name: "QT-prolonging drugs",
    members: &[
        &drugs::AMIODARONE,
        &drugs::SOTALOL,
        &drugs::HALOPERIDOL,
        &drugs::METHADONE,
        &drugs::AZITHROMYCIN,
        &drugs::CLARITHROMYCIN,
        &drugs::ERYTHROMYCIN,
        &drugs::CIPROFLOXACIN,
        &drugs::LEVOFLOXACIN,
        &drugs::MOXIFLOXACIN,
        &drugs::FLUCONAZOLE,
        &drugs::CITALOPRAM,
        &drugs::ONDANSETRON,
    ],
};

/// The groups of [`INTERACTIONS`], for `hale cds list`.
pub static GROUPS: &[&Group] = &[
    &STRONG_CYP3A4_INHIBITORS,
    &CYP3A4_INHIBITORS,
    &CYP1A2_INHIBITORS,
    &CYP3A4_STATINS,
    &STRONG_CYP3A4_INDUCERS,
    &HIV_PROTEASE_INHIBITORS,
    &THIOPURINES,
    &QT_PROLONGING,
];

/// The interactions Hale checks, between drugs of its table.
///
/// The first fifteen rows are the ONC high-priority list, Table 2 of Phansalkar 2012
/// (the paper itself was not at hand): its fifteen pairs were read from two public
/// machine-readable copies, cairn-ehr/drugref `onc_high_priority.toml` (the pairs with
/// their Table 2 numbers) and NLM RxNav's ONCHigh answers captured in public tests (five
/// pairs with their ingredients). Each class or group is named by its members, only
/// those whose membership is well established (labels, RxNav's assertions), and only
/// those whose RxNorm code could be confirmed; see each group's comment. The classes:
/// MAO inhibitors are phenelzine, tranylcypromine, isocarboxazid and selegiline; the
/// stimulants only methylphenidate (its label forbids MAO inhibitors; amphetamine,
/// dextroamphetamine and lisdexamfetamine are left out for want of a confirmed code, as
/// are rizatriptan and zolmitriptan among triptans and darunavir among HIV protease
/// inhibitors). For the ergot alkaloids (ergotamine, dihydroergotamine) no RxNorm code
/// could be confirmed: they are recognized by name in the text of a medication the
/// patient takes, and are not offered for ordering, so that pair is checked when the
/// CYP3A4 inhibitor is ordered. Effects and actions are Hale's own words. The last six
/// rows come from product labels.
pub static INTERACTIONS: &[Interaction] = &[
    Interaction {
        a: Side::Ingredient(&drugs::ATAZANAVIR),
        b: Side::Class(Class::ProtonPumpInhibitor),
        severity: Severity::High,
        effect: "Atazanavir needs stomach acid to be absorbed; a proton pump inhibitor lowers its levels enough to risk losing control of HIV and resistance.",
        action: "Avoid the combination; if acid suppression is needed, agree an alternative (an H2 blocker dosed apart) with the HIV prescriber.",
        source: ONC,
    },
    Interaction {
        a: Side::Ingredient(&drugs::IRINOTECAN),
        b: Side::Group(&STRONG_CYP3A4_INHIBITORS),
        severity: Severity::High,
        effect: "Strong CYP3A4 inhibitors raise irinotecan and SN-38 exposure: risk of severe neutropenia and diarrhea.",
        action: "Avoid during irinotecan treatment (stop a strong inhibitor at least a week before); if it cannot be avoided, agree it with the oncologist and watch blood counts.",
        source: ONC,
    },
    Interaction {
        a: Side::Ingredient(&drugs::RAMELTEON),
        b: Side::Group(&CYP1A2_INHIBITORS),
        severity: Severity::High,
        effect: "CYP1A2 inhibitors (fluvoxamine above all) raise ramelteon levels many times: excessive and prolonged sedation.",
        action: "Do not combine (ramelteon with fluvoxamine is contraindicated); choose another hypnotic while the inhibitor is needed.",
        source: ONC,
    },
    Interaction {
        a: Side::Ingredient(&drugs::TIZANIDINE),
        b: Side::Group(&CYP1A2_INHIBITORS),
        severity: Severity::High,
        effect: "Ciprofloxacin and fluvoxamine raise tizanidine levels many times: severe low blood pressure, slow heart rate and sedation.",
        action: "Contraindicated: choose another antibiotic or antidepressant, or stop tizanidine while the inhibitor is taken.",
        source: ONC,
    },
    Interaction {
        a: Side::Class(Class::CnsStimulant),
        b: Side::Class(Class::Maoi),
        severity: Severity::High,
        effect: "A stimulant taken with an MAO inhibitor can cause a hypertensive crisis.",
        action: "Contraindicated: start the stimulant only 14 days or more after the MAO inhibitor is stopped.",
        source: ONC,
    },
    Interaction {
        a: Side::Class(Class::Ssri),
        b: Side::Class(Class::Maoi),
        severity: Severity::High,
        effect: "An SSRI with an MAO inhibitor can cause serotonin syndrome (agitation, fever, rigidity, seizures), which can be fatal.",
        action: "Contraindicated: allow 14 days after stopping the MAO inhibitor, and 5 weeks after stopping fluoxetine, before starting the other.",
        source: ONC,
    },
    Interaction {
        a: Side::Class(Class::Opioid),
        b: Side::Class(Class::Maoi),
        severity: Severity::High,
        effect: "With an MAO inhibitor, opioids can cause serotonin syndrome (meperidine, tramadol, methadone) or deep sedation, low blood pressure and slowed breathing.",
        action: "Avoid within 14 days of an MAO inhibitor; if an opioid is essential, avoid meperidine, tramadol and methadone, start low and monitor closely.",
        source: ONC,
    },
    Interaction {
        a: Side::Class(Class::TricyclicAntidepressant),
        b: Side::Class(Class::Maoi),
        severity: Severity::High,
        effect: "A tricyclic antidepressant with an MAO inhibitor can cause hypertensive crisis, high fever, seizures and serotonin syndrome.",
        action: "Contraindicated: allow 14 days between stopping one and starting the other.",
        source: ONC,
    },
    Interaction {
        a: Side::Class(Class::Triptan),
        b: Side::Class(Class::Maoi),
        severity: Severity::High,
        effect: "MAO-A breaks down sumatriptan: an MAO inhibitor raises its levels, with a risk of serotonin syndrome and vasospasm.",
        action: "Contraindicated within 14 days of an MAO inhibitor: choose another acute migraine treatment.",
        source: ONC,
    },
    Interaction {
        a: Side::Group(&CYP3A4_STATINS),
        b: Side::Group(&CYP3A4_INHIBITORS),
        severity: Severity::High,
        effect: "CYP3A4 inhibitors raise simvastatin and lovastatin levels: risk of myopathy and rhabdomyolysis.",
        action: "With a strong inhibitor (macrolide, azole, HIV protease inhibitor), hold the statin for the course or choose another drug (e.g. azithromycin); with diltiazem keep simvastatin to 10 mg, lovastatin to 20 mg a day; or switch to pravastatin or rosuvastatin.",
        source: ONC,
    },
    Interaction {
        a: Side::Group(&STRONG_CYP3A4_INDUCERS),
        b: Side::Group(&HIV_PROTEASE_INHIBITORS),
        severity: Severity::High,
        effect: "Strong CYP3A4 inducers speed the breakdown of HIV protease inhibitors: levels fall, with a risk of treatment failure and resistance.",
        action: "Contraindicated with rifampin; choose another anticonvulsant, or a rifabutin-based regimen, with the HIV specialist.",
        source: ONC,
    },
    Interaction {
        a: Side::Ingredient(&drugs::FEBUXOSTAT),
        b: Side::Group(&THIOPURINES),
        severity: Severity::High,
        effect: "Febuxostat blocks xanthine oxidase, which clears azathioprine and mercaptopurine: their levels rise, with a risk of severe bone marrow suppression.",
        action: "Contraindicated: lower urate another way, or review the thiopurine with its prescriber.",
        source: ONC,
    },
    Interaction {
        a: Side::Ingredient(&drugs::TRANYLCYPROMINE),
        b: Side::Ingredient(&drugs::PROCARBAZINE),
        severity: Severity::High,
        effect: "Procarbazine also inhibits MAO: with tranylcypromine it risks a hypertensive crisis and serotonin toxicity.",
        action: "Avoid: allow 14 days between them; agree the plan with the oncologist and the psychiatrist.",
        source: ONC,
    },
    Interaction {
        a: Side::Class(Class::ErgotAlkaloid),
        b: Side::Group(&STRONG_CYP3A4_INHIBITORS),
        severity: Severity::High,
        effect: "Strong CYP3A4 inhibitors stop the breakdown of ergotamine and dihydroergotamine: their levels rise, with a risk of ergotism (severe vasospasm, ischemia of the limbs or the brain).",
        action: "Contraindicated: do not give the inhibitor while the ergot is taken (choose another antibiotic or antifungal, e.g. azithromycin), or stop the ergot and treat migraine another way.",
        source: ONC,
    },
    Interaction {
        a: Side::Group(&QT_PROLONGING),
        b: Side::Group(&QT_PROLONGING),
        severity: Severity::High,
        effect: "Two drugs that prolong the QT interval add their effects: risk of torsades de pointes and sudden death.",
        action: "Prefer a drug that does not prolong QT; if both are needed, check the QTc, potassium and magnesium before and during treatment.",
        source: ONC,
    },
    Interaction {
        a: Side::Ingredient(&drugs::WARFARIN),
        b: Side::Class(Class::Nsaid),
        severity: Severity::High,
        effect: "NSAIDs with warfarin raise the risk of serious bleeding, gastrointestinal above all.",
        action: "Avoid; for pain prefer acetaminophen. If an NSAID is needed, use the lowest dose for the shortest time and watch for bleeding.",
        source: WARFARIN_LABEL,
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
        source: WARFARIN_LABEL,
    },
    Interaction {
        a: Side::Ingredient(&drugs::WARFARIN),
        b: Side::Class(Class::Fluoroquinolone),
        severity: Severity::Moderate,
        effect: "Fluoroquinolones can raise the INR of a patient on warfarin.",
        action: "Check the INR within a few days of starting.",
        source: WARFARIN_LABEL,
    },
];

/// Classes where a second drug is dangerous, not merely redundant.
const RISKY_DUPLICATES: &[Class] = &[Class::Anticoagulant, Class::Nsaid, Class::Opioid, Class::Ssri, Class::Maoi];

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
    out.sort_by_key(|i| i.name);
    out.dedup_by_key(|i| i.name);
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
        // one alert per interaction and medication, however many ingredients match
        let mut raised: Vec<usize> = Vec::new();
        for mine in drug.ingredients {
            for other in theirs.iter().filter(|o| o.name != mine.name) {
                // an interaction, whichever side each is on
                for (n, x) in INTERACTIONS.iter().enumerate() {
                    if raised.contains(&n) {
                        continue;
                    }
                    if (x.a.matches(mine) && x.b.matches(other)) || (x.b.matches(mine) && x.a.matches(other)) {
                        raised.push(n);
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
            if theirs.iter().any(|o| o.name == mine.name) {
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
        // two MAO inhibitors: a dangerous duplicate
        let a = medication_alerts(drug("tranylcypromine"), &[active("p", Some("8123"), "phenelzine")]);
        assert_eq!((a.len(), a[0].rule, a[0].severity), (1, "duplicate-class", Severity::High), "{a:?}");
    }

    fn interactions(order: &str, taking: &Value) -> Vec<Alert> {
        medication_alerts(drug(order), std::slice::from_ref(taking))
            .into_iter()
            .filter(|a| a.rule == "drug-interaction")
            .collect()
    }

    #[test]
    fn an_ssri_and_an_mao_inhibitor_interact_whichever_comes_first() {
        let phenelzine = active("p", Some("8123"), "phenelzine 15 MG Oral Tablet");
        let sertraline = active("s", Some("312940"), "sertraline 50 MG Oral Tablet");
        for a in [interactions("sertraline", &phenelzine), interactions("phenelzine", &sertraline)] {
            assert_eq!((a.len(), a[0].severity, a[0].source), (1, Severity::High, ONC), "{a:?}");
            assert!(a[0].detail.contains("serotonin syndrome") && a[0].action.contains("14 days"), "{a:?}");
        }
        // written in words only, the MAO inhibitor is still found
        let words = active("w", None, "Nardil (phenelzine) 15 mg three times a day");
        assert_eq!(interactions("fluoxetine", &words).len(), 1);
        // an SSRI with another antidepressant that is not an MAO inhibitor: none
        assert!(interactions("citalopram", &active("a", Some("704"), "amitriptyline")).is_empty());
    }

    #[test]
    fn statins_with_cyp3a4_inhibitors_by_membership() {
        let clarithromycin = active("c", Some("21212"), "clarithromycin 500 MG Oral Tablet");
        // one alert for simvastatin with clarithromycin, from the ONC pair
        let a = interactions("simvastatin", &clarithromycin);
        assert_eq!((a.len(), a[0].source), (1, ONC), "{a:?}");
        assert_eq!(interactions("lovastatin", &active("i", Some("28031"), "itraconazole")).len(), 1);
        assert_eq!(interactions("diltiazem", &active("s", Some("312961"), "simvastatin")).len(), 1);
        // statins not cleared by CYP3A4, and atorvastatin whose label limits the dose: none
        for statin in ["pravastatin", "rosuvastatin", "atorvastatin"] {
            assert!(interactions(statin, &clarithromycin).is_empty(), "{statin}");
        }
        // azithromycin is no CYP3A4 inhibitor
        assert!(interactions("azithromycin", &active("s", Some("312961"), "simvastatin")).is_empty());
    }

    #[test]
    fn irinotecan_is_held_to_the_strong_cyp3a4_inhibitors_and_simvastatin_to_the_moderate_too() {
        let irinotecan = active("i", Some("51499"), "irinotecan");
        assert_eq!(interactions("ketoconazole", &irinotecan).len(), 1);
        assert!(interactions("fluconazole", &irinotecan).is_empty());
        assert!(interactions("diltiazem", &irinotecan).is_empty());
        assert_eq!(interactions("fluconazole", &active("s", Some("312961"), "simvastatin")).len(), 1);
    }

    #[test]
    fn an_ergot_taken_is_recognized_by_name_when_a_cyp3a4_inhibitor_is_ordered() {
        // coded with an RxNorm code Hale does not know: recognized by the words of its name
        let cafergot = active("e", Some("999999999"), "ergotamine tartrate 1 MG / caffeine 100 MG Oral Tablet");
        let a = interactions("clarithromycin", &cafergot);
        assert_eq!((a.len(), a[0].severity, a[0].source), (1, Severity::High, ONC), "{a:?}");
        assert!(a[0].detail.contains("ergotism"), "{a:?}");
        assert_eq!(interactions("itraconazole", &active("d", None, "Dihydroergotamine nasal spray")).len(), 1);
        // not an inhibitor: none; and no ergot is offered for ordering
        assert!(interactions("azithromycin", &cafergot).is_empty());
        assert!(drugs::find("ergotamine", 5).is_empty());
    }

    #[test]
    fn qt_drugs_interact_with_each_other_but_not_with_themselves() {
        let amiodarone = active("a", Some("703"), "amiodarone 200 MG Oral Tablet");
        let a = interactions("azithromycin", &amiodarone);
        assert_eq!(a.len(), 1, "{a:?}");
        assert!(a[0].title.contains("azithromycin with amiodarone"), "{a:?}");
        assert_eq!(interactions("ondansetron", &active("c", Some("2556"), "citalopram")).len(), 1);
        // a second azithromycin is a duplicate, not an interaction with itself
        let a = medication_alerts(drug("azithromycin"), &[active("z", Some("308460"), "azithromycin")]);
        assert_eq!(a.iter().map(|a| a.rule).collect::<Vec<_>>(), ["duplicate-ingredient"]);
        // not on the QT list: no alert
        assert!(interactions("amoxicillin 500", &amiodarone).is_empty());
    }

    #[test]
    fn one_alert_per_interaction_and_medication() {
        // lopinavir and ritonavir are both protease inhibitors: one alert for rifampin
        let rifampin = active("r", Some("9384"), "rifampin 300 MG Oral Capsule");
        let a = interactions("lopinavir", &rifampin);
        assert_eq!(a.len(), 1, "{a:?}");
        // ritonavir boosting atazanavir is the usual regimen: nothing
        assert!(medication_alerts(drug("atazanavir"), &[active("t", Some("85762"), "ritonavir")]).is_empty());
    }

    #[test]
    fn the_interaction_table_is_consistent() {
        // no two rows match the same two ingredients: one alert per pair
        for (i, a) in INGREDIENTS.iter().enumerate() {
            for b in &INGREDIENTS[i..] {
                let rows = INTERACTIONS
                    .iter()
                    .filter(|x| (x.a.matches(a) && x.b.matches(b)) || (x.b.matches(a) && x.a.matches(b)))
                    .count();
                assert!(rows <= 1, "{} and {}: {rows} rows", a.name, b.name);
            }
        }
        // every side names at least one ingredient of the table, every group's members are in it
        for x in INTERACTIONS {
            for side in [x.a, x.b] {
                assert!(INGREDIENTS.iter().any(|i| side.matches(i)), "{} matches nothing", side.name());
            }
            assert!(!x.effect.is_empty() && !x.action.is_empty() && !x.source.is_empty());
        }
        for g in GROUPS {
            assert!(g.members.iter().all(|m| INGREDIENTS.iter().any(|i| std::ptr::eq(*i, *m))), "{}", g.name);
        }
        // the ONC rows are all high; warfarin with NSAIDs is the label's, not ONC's
        let onc: Vec<&Interaction> = INTERACTIONS.iter().filter(|x| x.source == ONC).collect();
        assert_eq!(onc.len(), 15);
        assert!(onc.iter().all(|x| x.severity == Severity::High));
        let warfarin_nsaid = INTERACTIONS.iter().find(|x| x.a.name() == "warfarin" && x.b.name() == "NSAIDs");
        assert_eq!(warfarin_nsaid.map(|x| x.source), Some(WARFARIN_LABEL));
    }
}
