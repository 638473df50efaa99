//! The code tables the clinician application offers when something is recorded:
//! common problems (SNOMED CT with the ICD-10-CM code a claim would use), allergens
//! (medicines by their RxNorm ingredient, as the allergy check reads them; classes,
//! foods and environmental allergens by SNOMED CT), and vaccines (CDC's CVX codes).
//! Anything not in a table can be recorded as free text.

/// A problem: SNOMED CT concept, ICD-10-CM code, and the name shown.
#[derive(Debug, PartialEq, Eq)]
pub struct Problem {
    pub snomed: &'static str,
    pub icd10: &'static str,
    pub name: &'static str,
}

const fn problem(snomed: &'static str, icd10: &'static str, name: &'static str) -> Problem {
    Problem { snomed, icd10, name }
}

/// Common problems of primary care.
pub static PROBLEMS: &[Problem] = &[
    problem("38341003", "I10", "Hypertension"),
    problem("44054006", "E11.9", "Type 2 diabetes mellitus"),
    problem("55822004", "E78.5", "Hyperlipidemia"),
    problem("195967001", "J45.909", "Asthma"),
    problem("13645005", "J44.9", "Chronic obstructive pulmonary disease"),
    problem("35489007", "F32.A", "Depression"),
    problem("197480006", "F41.9", "Anxiety disorder"),
    problem("414916001", "E66.9", "Obesity"),
    problem("235595009", "K21.9", "Gastroesophageal reflux disease"),
    problem("40930008", "E03.9", "Hypothyroidism"),
    problem("239873007", "M17.9", "Osteoarthritis of knee"),
    problem("49436004", "I48.91", "Atrial fibrillation"),
    problem("709044004", "N18.9", "Chronic kidney disease"),
    problem("37796009", "G43.909", "Migraine"),
    problem("61582004", "J30.9", "Allergic rhinitis"),
    problem("43116000", "L30.9", "Eczema"),
    problem("10509002", "J20.9", "Acute bronchitis"),
    problem("444814009", "J01.90", "Viral sinusitis"),
    problem("195662009", "J02.9", "Acute viral pharyngitis"),
    problem("65363002", "H66.90", "Otitis media"),
    problem("68566005", "N39.0", "Urinary tract infection"),
    problem("233604007", "J18.9", "Pneumonia"),
    problem("279039007", "M54.50", "Low back pain"),
    problem("44465007", "S93.409A", "Sprain of ankle"),
    problem("110030002", "S06.0X0A", "Concussion"),
];

/// What an allergen is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllergenKind {
    Medication,
    Food,
    Environment,
}

impl AllergenKind {
    /// The AllergyIntolerance.category code.
    pub fn category(self) -> &'static str {
        match self {
            AllergenKind::Medication => "medication",
            AllergenKind::Food => "food",
            AllergenKind::Environment => "environment",
        }
    }
}

/// An allergen: its code (system, code; none for a class recorded by name), the name
/// shown, its kind.
#[derive(Debug, PartialEq, Eq)]
pub struct Allergen {
    pub system: &'static str,
    pub code: &'static str,
    pub name: &'static str,
    pub kind: AllergenKind,
}

pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
pub const SNOMED: &str = "http://snomed.info/sct";

const fn med(code: &'static str, name: &'static str) -> Allergen {
    Allergen { system: RXNORM, code, name, kind: AllergenKind::Medication }
}

const fn sct(code: &'static str, name: &'static str, kind: AllergenKind) -> Allergen {
    Allergen { system: SNOMED, code, name, kind }
}

/// Common allergens. Drug classes are recorded by their SNOMED CT allergy finding where
/// Hale's allergy check knows it, else by name (the check reads the words too).
pub static ALLERGENS: &[Allergen] = &[
    sct("91936005", "Penicillins (allergy to penicillin)", AllergenKind::Medication),
    sct("91939003", "Sulfonamides (allergy to sulfonamide)", AllergenKind::Medication),
    Allergen { system: "", code: "", name: "Cephalosporins", kind: AllergenKind::Medication },
    Allergen { system: "", code: "", name: "NSAIDs", kind: AllergenKind::Medication },
    Allergen { system: "", code: "", name: "Opioids", kind: AllergenKind::Medication },
    med("723", "amoxicillin"),
    med("2231", "cephalexin"),
    med("10180", "sulfamethoxazole"),
    med("18631", "azithromycin"),
    med("2551", "ciprofloxacin"),
    med("3640", "doxycycline"),
    med("1191", "aspirin"),
    med("5640", "ibuprofen"),
    med("7258", "naproxen"),
    med("2670", "codeine"),
    med("29046", "lisinopril"),
    sct("91935009", "Peanuts (allergy to peanuts)", AllergenKind::Food),
    sct("300913006", "Shellfish (shellfish allergy)", AllergenKind::Food),
    sct("418689008", "Grass pollen (allergy to grass pollen)", AllergenKind::Environment),
    sct("232350006", "House dust mite (house dust mite allergy)", AllergenKind::Environment),
];

/// A vaccine: its CVX code and CDC's short description.
#[derive(Debug, PartialEq, Eq)]
pub struct Vaccine {
    pub cvx: &'static str,
    pub name: &'static str,
}

pub const CVX: &str = "http://hl7.org/fhir/sid/cvx";

const fn vax(cvx: &'static str, name: &'static str) -> Vaccine {
    Vaccine { cvx, name }
}

/// Vaccines of the US childhood and adult schedules.
pub static VACCINES: &[Vaccine] = &[
    vax("140", "Influenza, seasonal, injectable, preservative free"),
    vax("141", "Influenza, seasonal, injectable"),
    vax("208", "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose"),
    vax("207", "COVID-19, mRNA, LNP-S, PF, 100 mcg/0.5 mL dose"),
    vax("115", "Tdap"),
    vax("113", "Td (adult), preservative free"),
    vax("133", "Pneumococcal conjugate PCV 13"),
    vax("33", "Pneumococcal polysaccharide PPV23"),
    vax("187", "Zoster vaccine recombinant"),
    vax("08", "Hep B, adolescent or pediatric"),
    vax("43", "Hep B, adult"),
    vax("83", "Hep A, ped/adol, 2 dose"),
    vax("20", "DTaP"),
    vax("10", "IPV"),
    vax("49", "Hib (PRP-OMP)"),
    vax("119", "Rotavirus, monovalent"),
    vax("03", "MMR"),
    vax("21", "Varicella"),
    vax("165", "HPV9"),
    vax("114", "Meningococcal MCV4P"),
];

/// A laboratory analyte: LOINC code and name, UCUM unit, the adult reference range,
/// and the range a value entered by hand must fall in.
#[derive(Debug, PartialEq)]
pub struct Analyte {
    pub loinc: &'static str,
    pub name: &'static str,
    pub unit: &'static str,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub plausible: (f64, f64),
}

const fn analyte(
    loinc: &'static str,
    name: &'static str,
    unit: &'static str,
    low: Option<f64>,
    high: Option<f64>,
    plausible: (f64, f64),
) -> Analyte {
    Analyte { loinc, name, unit, low, high, plausible }
}

pub static HBA1C: Analyte =
    analyte("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", Some(4.0), Some(5.6), (2.0, 20.0));
pub static GLUCOSE: Analyte =
    analyte("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", Some(70.0), Some(99.0), (10.0, 1500.0));
pub static CREATININE: Analyte =
    analyte("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", Some(0.59), Some(1.35), (0.1, 25.0));
pub static SODIUM: Analyte =
    analyte("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", Some(136.0), Some(145.0), (100.0, 180.0));
pub static POTASSIUM: Analyte =
    analyte("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", Some(3.5), Some(5.1), (1.5, 9.0));
pub static UREA: Analyte =
    analyte("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", Some(7.0), Some(20.0), (1.0, 300.0));
pub static CALCIUM: Analyte =
    analyte("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", Some(8.6), Some(10.3), (3.0, 20.0));
pub static CHOLESTEROL: Analyte =
    analyte("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", None, Some(200.0), (30.0, 1500.0));
pub static TRIGLYCERIDE: Analyte =
    analyte("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", None, Some(150.0), (10.0, 10000.0));
pub static HDL: Analyte =
    analyte("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", Some(40.0), None, (5.0, 250.0));
pub static LDL: Analyte = analyte(
    "18262-6",
    "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay",
    "mg/dL",
    None,
    Some(130.0),
    (5.0, 1000.0),
);
pub static HEMOGLOBIN: Analyte =
    analyte("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", Some(12.0), Some(17.5), (2.0, 25.0));
pub static LEUKOCYTES: Analyte = analyte(
    "6690-2",
    "Leukocytes [#/volume] in Blood by Automated count",
    "10*3/uL",
    Some(4.5),
    Some(11.0),
    (0.1, 500.0),
);
pub static PLATELETS: Analyte = analyte(
    "777-3",
    "Platelets [#/volume] in Blood by Automated count",
    "10*3/uL",
    Some(150.0),
    Some(400.0),
    (1.0, 3000.0),
);
pub static HEMATOCRIT: Analyte = analyte(
    "4544-3",
    "Hematocrit [Volume Fraction] of Blood by Automated count",
    "%",
    Some(36.0),
    Some(53.0),
    (5.0, 75.0),
);
pub static MICROALBUMIN: Analyte =
    analyte("14959-1", "Microalbumin/Creatinine [Mass Ratio] in Urine", "mg/g", None, Some(30.0), (0.0, 10000.0));

/// An orderable laboratory test: a single analyte or a panel of them.
#[derive(Debug, PartialEq)]
pub struct LabTest {
    pub loinc: &'static str,
    pub name: &'static str,
    pub analytes: &'static [&'static Analyte],
}

/// The laboratory tests the clinician application orders.
pub static LAB_TESTS: &[LabTest] = &[
    LabTest { loinc: "4548-4", name: "Hemoglobin A1c", analytes: &[&HBA1C] },
    LabTest {
        loinc: "51990-0",
        name: "Basic metabolic panel",
        analytes: &[&GLUCOSE, &CREATININE, &SODIUM, &POTASSIUM, &UREA, &CALCIUM],
    },
    LabTest {
        loinc: "57698-3",
        name: "Lipid panel with direct LDL",
        analytes: &[&CHOLESTEROL, &TRIGLYCERIDE, &HDL, &LDL],
    },
    LabTest { loinc: "58410-2", name: "CBC panel", analytes: &[&HEMOGLOBIN, &LEUKOCYTES, &PLATELETS, &HEMATOCRIT] },
    LabTest { loinc: "2160-0", name: "Creatinine", analytes: &[&CREATININE] },
    LabTest { loinc: "2823-3", name: "Potassium", analytes: &[&POTASSIUM] },
    LabTest { loinc: "14959-1", name: "Microalbumin/creatinine ratio, urine", analytes: &[&MICROALBUMIN] },
];

/// The laboratory test with LOINC code `loinc`.
pub fn lab_test(loinc: &str) -> Option<&'static LabTest> {
    LAB_TESTS.iter().find(|t| t.loinc == loinc)
}

/// The problems whose name or codes contain every word of `query`.
pub fn find_problems(query: &str) -> Vec<(usize, &'static Problem)> {
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    if words.is_empty() {
        return Vec::new();
    }
    PROBLEMS
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            let hay = format!("{} {} {}", p.name, p.icd10, p.snomed).to_lowercase();
            words.iter().all(|w| hay.contains(w.as_str()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_are_consistent() {
        for (i, p) in PROBLEMS.iter().enumerate() {
            assert!(p.snomed.chars().all(|c| c.is_ascii_digit()) && p.snomed.len() >= 6, "{}", p.name);
            assert!(p.icd10.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && p.icd10.len() >= 3, "{}", p.name);
            assert!(PROBLEMS[i + 1..].iter().all(|q| q.snomed != p.snomed && q.name != p.name), "{}", p.name);
        }
        for a in ALLERGENS.iter().filter(|a| a.system == RXNORM) {
            // a medicine is coded as the allergy check reads it
            assert!(crate::drugs::ingredient(a.code).is_some_and(|i| i.name == a.name), "{}", a.name);
        }
        for (i, v) in VACCINES.iter().enumerate() {
            assert!(v.cvx.chars().all(|c| c.is_ascii_digit()), "{}", v.name);
            assert!(VACCINES[i + 1..].iter().all(|w| w.cvx != v.cvx), "{}", v.name);
        }
        for t in LAB_TESTS {
            assert!(!t.analytes.is_empty(), "{}", t.name);
            for a in t.analytes {
                assert!(a.plausible.0 < a.plausible.1 && (a.low.is_some() || a.high.is_some()), "{}", a.name);
                assert!(
                    a.low.is_none_or(|l| l >= a.plausible.0) && a.high.is_none_or(|h| h <= a.plausible.1),
                    "{}",
                    a.name
                );
            }
        }
        assert_eq!(find_problems("diab").len(), 1);
        assert_eq!(find_problems("I10")[0].1.name, "Hypertension");
        assert!(find_problems("").is_empty());
    }
}
