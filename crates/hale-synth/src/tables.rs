//! Built-in tables: made-up names and places, and the clinical codes the generator uses
//! (SNOMED CT, LOINC, RxNorm, CVX). Every person and place is invented.

pub(crate) const GIVEN_FEMALE: &[&str] = &[
    "Ada", "Beatrix", "Carla", "Delia", "Elena", "Fiona", "Greta", "Hazel", "Iris", "Joanna", "Kira", "Leona", "Mara",
    "Nadia", "Olive", "Petra", "Quinn", "Rosa", "Selma", "Tessa", "Una", "Vera", "Willa", "Yara", "Zoe", "Amira",
    "Bianca", "Celia", "Dana", "Esme", "Flora", "Gemma", "Helena", "Ines", "June", "Lena", "Maya", "Nora", "Ruth",
    "Sofia",
];

pub(crate) const GIVEN_MALE: &[&str] = &[
    "Aaron", "Bruno", "Caleb", "Dario", "Elias", "Felix", "Gideon", "Hugo", "Ivan", "Jonah", "Kofi", "Lars", "Milo",
    "Nico", "Otto", "Pablo", "Rafael", "Silas", "Tobias", "Victor", "Wes", "Xavier", "Yusuf", "Zane", "Anton", "Basil",
    "Cyrus", "Dmitri", "Emil", "Franco", "Gus", "Henrik", "Idris", "Jasper", "Leo", "Marek", "Nils", "Omar", "Rory",
    "Theo",
];

pub(crate) const FAMILY: &[&str] = &[
    "Abernathy",
    "Belcourt",
    "Calloway",
    "Drummond",
    "Ellsworth",
    "Fairbanks",
    "Galloway",
    "Hargrove",
    "Islington",
    "Jessup",
    "Kettering",
    "Lindqvist",
    "Marchetti",
    "Northcott",
    "Okonkwo",
    "Pemberton",
    "Quillen",
    "Rasmussen",
    "Stavros",
    "Thornbury",
    "Underhill",
    "Valdivia",
    "Whitlock",
    "Yamamura",
    "Zielinski",
    "Ashdown",
    "Brightwater",
    "Castellano",
    "Delacroix",
    "Eberhardt",
    "Fenwick",
    "Gallardo",
    "Holloway",
    "Ingersoll",
    "Jablonski",
    "Kowalczyk",
    "Larkspur",
    "Moreland",
    "Nakashima",
    "Oyelaran",
    "Prescott",
    "Rockwell",
    "Sandoval",
    "Tremaine",
    "Vasquez-Lund",
    "Wexford",
    "Achterberg",
    "Birchfield",
    "Coldwell",
    "Dunmore",
    "Estrada",
    "Fitzgerald",
    "Grunwald",
    "Hawthorne",
    "Ivers",
    "Kingsley",
    "Lockhart",
    "Mendelsohn",
    "Oakridge",
    "Petrakis",
];

pub(crate) const STREETS: &[&str] = &[
    "Alder",
    "Birch",
    "Cedar",
    "Dogwood",
    "Elm",
    "Foxglove",
    "Hawthorn",
    "Juniper",
    "Larch",
    "Magnolia",
    "Orchard",
    "Pinecrest",
    "Quarry",
    "Rowan",
    "Sycamore",
    "Tamarack",
    "Willow",
    "Harbor",
    "Meadow",
    "Ridge",
    "Summit",
    "Brook",
];

pub(crate) const STREET_SUFFIX: &[&str] = &["Street", "Avenue", "Lane", "Road", "Court", "Drive", "Way", "Place"];

/// Invented towns, each with a state and the first digits of its postal codes.
pub(crate) const TOWNS: &[(&str, &str, &str)] = &[
    ("Fairhaven Mills", "MA", "017"),
    ("Ashbury Falls", "MA", "018"),
    ("North Kestrel", "MA", "019"),
    ("Millbrook Crossing", "MA", "016"),
    ("Port Wrenfield", "MA", "021"),
    ("Larkmoor", "MA", "024"),
];

pub(crate) struct Code {
    pub(crate) code: &'static str,
    pub(crate) display: &'static str,
}

const fn c(code: &'static str, display: &'static str) -> Code {
    Code { code, display }
}

/// Chronic conditions the generator models (SNOMED CT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chronic {
    Hypertension,
    Diabetes,
    Hyperlipidemia,
    Asthma,
    Copd,
    Depression,
    /// Atherosclerotic cardiovascular disease (coronary artery disease). Not in
    /// [`Chronic::ALL`]: drawn from a stream of its own, so adding it left the rest of
    /// each patient's history as it was.
    Ascvd,
}

impl Chronic {
    pub(crate) const ALL: [Chronic; 6] = [
        Chronic::Hypertension,
        Chronic::Diabetes,
        Chronic::Hyperlipidemia,
        Chronic::Asthma,
        Chronic::Copd,
        Chronic::Depression,
    ];

    pub(crate) fn code(self) -> Code {
        match self {
            Chronic::Hypertension => c("38341003", "Hypertensive disorder, systemic arterial (disorder)"),
            Chronic::Diabetes => c("44054006", "Diabetes mellitus type 2 (disorder)"),
            Chronic::Hyperlipidemia => c("55822004", "Hyperlipidemia (disorder)"),
            Chronic::Asthma => c("195967001", "Asthma (disorder)"),
            Chronic::Copd => c("13645005", "Chronic obstructive lung disease (disorder)"),
            Chronic::Depression => c("35489007", "Depressive disorder (disorder)"),
            Chronic::Ascvd => c("53741008", "Coronary arteriosclerosis (disorder)"),
        }
    }

    pub(crate) fn short(self) -> &'static str {
        match self {
            Chronic::Hypertension => "hypertension",
            Chronic::Diabetes => "type 2 diabetes",
            Chronic::Hyperlipidemia => "hyperlipidemia",
            Chronic::Asthma => "asthma",
            Chronic::Copd => "COPD",
            Chronic::Depression => "depression",
            Chronic::Ascvd => "coronary artery disease",
        }
    }

    /// Probability of having the condition by the reference date, by age then, and the
    /// youngest onset age.
    pub(crate) fn prevalence(self, age: i64) -> (f64, i64) {
        let p = match self {
            Chronic::Hypertension => match age {
                ..18 => 0.0,
                18..40 => 0.08,
                40..60 => 0.30,
                _ => 0.55,
            },
            Chronic::Diabetes => match age {
                ..25 => 0.0,
                25..45 => 0.04,
                45..65 => 0.13,
                _ => 0.22,
            },
            Chronic::Hyperlipidemia => match age {
                ..20 => 0.0,
                20..40 => 0.08,
                40..60 => 0.28,
                _ => 0.42,
            },
            Chronic::Asthma => match age {
                ..2 => 0.0,
                _ => 0.08,
            },
            Chronic::Copd => match age {
                ..40 => 0.0,
                40..65 => 0.04,
                _ => 0.10,
            },
            Chronic::Depression => match age {
                ..12 => 0.0,
                _ => 0.08,
            },
            Chronic::Ascvd => match age {
                ..45 => 0.0,
                45..65 => 0.07,
                _ => 0.18,
            },
        };
        let min_onset = match self {
            Chronic::Hypertension => 18,
            Chronic::Diabetes => 25,
            Chronic::Hyperlipidemia => 20,
            Chronic::Asthma => 2,
            Chronic::Copd => 40,
            Chronic::Depression => 12,
            Chronic::Ascvd => 40,
        };
        (p, min_onset)
    }
}

/// Screening procedures (SNOMED CT) and the stool test (LOINC) the generator records.
pub(crate) const MAMMOGRAM: Code = c("24623002", "Screening mammography (procedure)");
pub(crate) const COLONOSCOPY: Code = c("73761001", "Colonoscopy (procedure)");
pub(crate) const FIT: Code =
    c("29771-3", "Hemoglobin.gastrointestinal.lower [Presence] in Stool by Immunoassay --1st specimen");

/// SNOMED CT route codes.
pub(crate) const ORAL: Code = c("26643006", "Oral route");
pub(crate) const INHALED: Code = c("447694001", "Respiratory tract route");

/// A prescribable drug (RxNorm) with its usual sig.
pub(crate) struct Drug {
    pub(crate) code: &'static str,
    pub(crate) display: &'static str,
    pub(crate) short: &'static str,
    pub(crate) dose: u32,
    pub(crate) unit: &'static str,
    pub(crate) unit_code: &'static str,
    pub(crate) route: Code,
    /// Times per `period` `period_unit`.
    pub(crate) frequency: u32,
    pub(crate) period: u32,
    pub(crate) period_unit: &'static str,
    pub(crate) as_needed: bool,
    pub(crate) sig: &'static str,
    /// Course length for acute drugs; 0 for maintenance drugs.
    pub(crate) days: u32,
}

const fn drug(code: &'static str, display: &'static str, short: &'static str, sig: &'static str) -> Drug {
    Drug {
        code,
        display,
        short,
        dose: 1,
        unit: "tablet",
        unit_code: "{tbl}",
        route: ORAL,
        frequency: 1,
        period: 1,
        period_unit: "d",
        as_needed: false,
        sig,
        days: 0,
    }
}

pub(crate) static LISINOPRIL: Drug =
    drug("314076", "lisinopril 10 MG Oral Tablet", "lisinopril 10 mg", "Take 1 tablet by mouth once daily");
pub(crate) static AMLODIPINE: Drug =
    drug("197361", "amlodipine 5 MG Oral Tablet", "amlodipine 5 mg", "Take 1 tablet by mouth once daily");
pub(crate) static HCTZ: Drug = drug(
    "310798",
    "hydrochlorothiazide 25 MG Oral Tablet",
    "hydrochlorothiazide 25 mg",
    "Take 1 tablet by mouth once daily in the morning",
);
pub(crate) static METFORMIN: Drug = Drug {
    frequency: 2,
    ..drug(
        "861007",
        "metformin hydrochloride 500 MG Oral Tablet",
        "metformin 500 mg",
        "Take 1 tablet by mouth twice daily with meals",
    )
};
pub(crate) static ATORVASTATIN: Drug =
    drug("617310", "atorvastatin 20 MG Oral Tablet", "atorvastatin 20 mg", "Take 1 tablet by mouth once daily");
pub(crate) static SIMVASTATIN: Drug = drug(
    "312961",
    "simvastatin 20 MG Oral Tablet",
    "simvastatin 20 mg",
    "Take 1 tablet by mouth once daily in the evening",
);
pub(crate) static ALBUTEROL: Drug = Drug {
    dose: 2,
    unit: "puff",
    unit_code: "{puff}",
    route: INHALED,
    period: 4,
    period_unit: "h",
    as_needed: true,
    ..drug(
        "745679",
        "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
        "albuterol inhaler",
        "Inhale 2 puffs every 4 hours as needed for wheezing or shortness of breath",
    )
};
pub(crate) static FLUTICASONE: Drug = Drug {
    dose: 2,
    unit: "puff",
    unit_code: "{puff}",
    route: INHALED,
    frequency: 2,
    ..drug(
        "895994",
        "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler",
        "fluticasone inhaler",
        "Inhale 2 puffs twice daily; rinse mouth after use",
    )
};
pub(crate) static TIOTROPIUM: Drug = Drug {
    unit: "capsule",
    unit_code: "{capsule}",
    route: INHALED,
    ..drug("69120", "tiotropium", "tiotropium inhaler", "Inhale the contents of 1 capsule once daily")
};
pub(crate) static SERTRALINE: Drug =
    drug("312940", "sertraline 50 MG Oral Tablet", "sertraline 50 mg", "Take 1 tablet by mouth once daily");

pub(crate) static PENICILLIN_V: Drug = Drug {
    frequency: 2,
    days: 10,
    ..drug(
        "834102",
        "penicillin V potassium 500 MG Oral Tablet",
        "penicillin V 500 mg",
        "Take 1 tablet by mouth twice daily for 10 days",
    )
};
pub(crate) static AMOXICILLIN: Drug = Drug {
    unit: "capsule",
    unit_code: "{capsule}",
    frequency: 3,
    days: 10,
    ..drug(
        "308182",
        "amoxicillin 250 MG Oral Capsule",
        "amoxicillin 250 mg",
        "Take 1 capsule by mouth three times daily for 10 days",
    )
};
pub(crate) static AZITHROMYCIN: Drug = Drug {
    days: 5,
    ..drug(
        "308460",
        "azithromycin 250 MG Oral Tablet",
        "azithromycin 250 mg",
        "Take 2 tablets on day 1, then 1 tablet daily for 4 days",
    )
};
pub(crate) static SMX_TMP: Drug = Drug {
    frequency: 2,
    days: 3,
    ..drug(
        "198335",
        "sulfamethoxazole 800 MG / trimethoprim 160 MG Oral Tablet",
        "sulfamethoxazole-trimethoprim DS",
        "Take 1 tablet by mouth twice daily for 3 days",
    )
};
pub(crate) static CIPROFLOXACIN: Drug = Drug {
    frequency: 2,
    days: 3,
    ..drug(
        "309309",
        "ciprofloxacin 500 MG Oral Tablet",
        "ciprofloxacin 500 mg",
        "Take 1 tablet by mouth twice daily for 3 days",
    )
};
pub(crate) static IBUPROFEN: Drug = Drug {
    dose: 2,
    period: 8,
    period_unit: "h",
    as_needed: true,
    days: 7,
    ..drug(
        "310965",
        "ibuprofen 200 MG Oral Tablet",
        "ibuprofen 200 mg",
        "Take 2 tablets every 8 hours as needed for pain",
    )
};

// Pediatric liquids, coded at the ingredient level.
pub(crate) static AMOXICILLIN_LIQUID: Drug = Drug {
    unit: "mL",
    unit_code: "mL",
    dose: 5,
    frequency: 3,
    days: 10,
    ..drug(
        "723",
        "amoxicillin",
        "amoxicillin 250 mg/5 mL suspension",
        "Give 5 mL by mouth three times daily for 10 days",
    )
};
pub(crate) static AZITHROMYCIN_LIQUID: Drug = Drug {
    unit: "mL",
    unit_code: "mL",
    dose: 5,
    days: 5,
    ..drug("18631", "azithromycin", "azithromycin 100 mg/5 mL suspension", "Give 5 mL by mouth once daily for 5 days")
};
pub(crate) static IBUPROFEN_LIQUID: Drug = Drug {
    unit: "mL",
    unit_code: "mL",
    dose: 10,
    period: 8,
    period_unit: "h",
    as_needed: true,
    days: 7,
    ..drug(
        "5640",
        "ibuprofen",
        "ibuprofen 100 mg/5 mL suspension",
        "Give 10 mL by mouth every 8 hours as needed for pain",
    )
};

/// A problem that resolves: seen in clinic, the emergency department or as an admission.
pub(crate) struct Acute {
    pub(crate) code: Code,
    pub(crate) short: &'static str,
    pub(crate) min_age: i64,
    pub(crate) max_age: i64,
    /// Fever and a raised white cell count.
    pub(crate) infection: bool,
    /// Days until it resolves.
    pub(crate) days: i64,
    pub(crate) drug: Option<&'static Drug>,
    /// Relative frequency.
    pub(crate) weight: f64,
    /// A pain score is recorded.
    pub(crate) painful: bool,
}

#[allow(clippy::too_many_arguments)]
const fn acute(
    code: &'static str,
    display: &'static str,
    short: &'static str,
    ages: (i64, i64),
    infection: bool,
    days: i64,
    drug: Option<&'static Drug>,
    weight: f64,
) -> Acute {
    let painful = matches!(code.as_bytes(), b"279039007" | b"44465007" | b"284551006" | b"110030002" | b"29857009");
    Acute { code: c(code, display), short, min_age: ages.0, max_age: ages.1, infection, days, drug, weight, painful }
}

pub(crate) static CLINIC_PROBLEMS: &[Acute] = &[
    acute("65363002", "Otitis media (disorder)", "otitis media", (0, 8), true, 10, Some(&AMOXICILLIN), 3.0),
    acute(
        "43878008",
        "Streptococcal sore throat (disorder)",
        "strep throat",
        (3, 60),
        true,
        10,
        Some(&PENICILLIN_V),
        1.5,
    ),
    acute("195662009", "Acute viral pharyngitis (disorder)", "viral pharyngitis", (0, 120), true, 7, None, 2.5),
    acute("444814009", "Viral sinusitis (disorder)", "viral sinusitis", (2, 120), false, 14, None, 3.0),
    acute("10509002", "Acute bronchitis (disorder)", "acute bronchitis", (0, 120), true, 14, None, 2.0),
    acute(
        "68566005",
        "Urinary tract infectious disease (disorder)",
        "urinary tract infection",
        (18, 120),
        false,
        7,
        Some(&SMX_TMP),
        1.2,
    ),
    acute("279039007", "Low back pain (finding)", "low back pain", (18, 120), false, 28, Some(&IBUPROFEN), 1.5),
    acute("44465007", "Sprain of ankle (disorder)", "ankle sprain", (6, 80), false, 21, Some(&IBUPROFEN), 0.8),
];

pub(crate) static ED_PROBLEMS: &[Acute] = &[
    acute("29857009", "Chest pain (finding)", "chest pain", (35, 120), false, 2, None, 1.0),
    acute("284551006", "Laceration of forearm (disorder)", "forearm laceration", (3, 120), false, 14, None, 1.0),
    acute("110030002", "Concussion injury of brain (disorder)", "concussion", (5, 90), false, 21, None, 0.6),
    acute("44465007", "Sprain of ankle (disorder)", "ankle sprain", (6, 80), false, 21, Some(&IBUPROFEN), 1.0),
];

pub(crate) static COPD_EXACERBATION: Acute = acute(
    "195951007",
    "Acute exacerbation of chronic obstructive airways disease (disorder)",
    "COPD exacerbation",
    (40, 120),
    false,
    14,
    None,
    1.0,
);

pub(crate) static PNEUMONIA: Acute =
    acute("233604007", "Pneumonia (disorder)", "pneumonia", (0, 120), true, 21, None, 1.0);

/// Allergies: substance finding (SNOMED CT), category, prevalence, youngest and oldest
/// onset age, usual reactions.
pub(crate) struct AllergyKind {
    pub(crate) code: Code,
    pub(crate) short: &'static str,
    pub(crate) category: &'static str,
    pub(crate) prevalence: f64,
    pub(crate) onset: (i64, i64),
    pub(crate) reactions: &'static [Code],
    pub(crate) high_criticality: f64,
}

pub(crate) const ANAPHYLAXIS: Code = c("39579001", "Anaphylaxis (disorder)");

pub(crate) static ALLERGIES: &[AllergyKind] = &[
    AllergyKind {
        code: c("91936005", "Allergy to penicillin"),
        short: "penicillin",
        category: "medication",
        prevalence: 0.08,
        onset: (1, 120),
        reactions: &[c("271807003", "Eruption of skin (disorder)"), c("247472004", "Wheal (finding)")],
        high_criticality: 0.2,
    },
    AllergyKind {
        code: c("91939003", "Allergy to sulfonamide"),
        short: "sulfonamides",
        category: "medication",
        prevalence: 0.03,
        onset: (5, 120),
        reactions: &[c("271807003", "Eruption of skin (disorder)")],
        high_criticality: 0.1,
    },
    AllergyKind {
        code: c("91935009", "Allergy to peanuts"),
        short: "peanuts",
        category: "food",
        prevalence: 0.02,
        onset: (1, 5),
        reactions: &[c("247472004", "Wheal (finding)"), c("422587007", "Nausea (finding)")],
        high_criticality: 0.5,
    },
    AllergyKind {
        code: c("300913006", "Shellfish allergy"),
        short: "shellfish",
        category: "food",
        prevalence: 0.02,
        onset: (3, 120),
        reactions: &[c("247472004", "Wheal (finding)"), c("422400008", "Vomiting (disorder)")],
        high_criticality: 0.3,
    },
    AllergyKind {
        code: c("418689008", "Allergy to grass pollen"),
        short: "grass pollen",
        category: "environment",
        prevalence: 0.12,
        onset: (3, 20),
        reactions: &[c("76067001", "Sneezing (finding)"), c("64531003", "Nasal discharge (finding)")],
        high_criticality: 0.0,
    },
    AllergyKind {
        code: c("232350006", "House dust mite allergy"),
        short: "dust mites",
        category: "environment",
        prevalence: 0.07,
        onset: (2, 120),
        reactions: &[c("76067001", "Sneezing (finding)"), c("267036007", "Dyspnea (finding)")],
        high_criticality: 0.0,
    },
];

/// A vaccine (CVX) with its route (v3-RouteOfAdministration).
pub(crate) struct Vaccine {
    pub(crate) cvx: &'static str,
    pub(crate) display: &'static str,
    pub(crate) short: &'static str,
    pub(crate) route: &'static str,
}

const fn vax(cvx: &'static str, display: &'static str, short: &'static str, route: &'static str) -> Vaccine {
    Vaccine { cvx, display, short, route }
}

pub(crate) static HEPB: Vaccine = vax("08", "Hep B, adolescent or pediatric", "hepatitis B", "IM");
pub(crate) static DTAP: Vaccine = vax("20", "DTaP", "DTaP", "IM");
pub(crate) static IPV: Vaccine = vax("10", "IPV", "polio (IPV)", "IM");
pub(crate) static HIB: Vaccine = vax("49", "Hib (PRP-OMP)", "Hib", "IM");
pub(crate) static PCV13: Vaccine = vax("133", "Pneumococcal conjugate PCV 13", "pneumococcal conjugate (PCV13)", "IM");
pub(crate) static ROTAVIRUS: Vaccine = vax("119", "rotavirus, monovalent", "rotavirus", "PO");
pub(crate) static MMR: Vaccine = vax("03", "MMR", "MMR", "SQ");
pub(crate) static VARICELLA: Vaccine = vax("21", "varicella", "varicella", "SQ");
pub(crate) static HEPA: Vaccine = vax("83", "Hep A, ped/adol, 2 dose", "hepatitis A", "IM");
pub(crate) static TDAP: Vaccine = vax("115", "Tdap", "Tdap", "IM");
pub(crate) static HPV9: Vaccine = vax("165", "HPV9", "HPV", "IM");
pub(crate) static MENACWY: Vaccine = vax("114", "meningococcal MCV4P", "meningococcal ACWY", "IM");
pub(crate) static FLU_PF: Vaccine =
    vax("140", "Influenza, seasonal, injectable, preservative free", "influenza (preservative free)", "IM");
pub(crate) static FLU: Vaccine = vax("141", "Influenza, seasonal, injectable", "influenza", "IM");
pub(crate) static TD: Vaccine = vax("113", "Td (adult) preservative free", "Td booster", "IM");
pub(crate) static PPSV23: Vaccine =
    vax("33", "pneumococcal polysaccharide vaccine, 23 valent", "pneumococcal (PPSV23)", "IM");
pub(crate) static ZOSTER: Vaccine = vax("187", "zoster vaccine recombinant", "zoster (recombinant)", "IM");
pub(crate) static COVID_PFIZER: Vaccine = vax(
    "208",
    "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose",
    "COVID-19 (Pfizer)",
    "IM",
);
pub(crate) static COVID_MODERNA: Vaccine = vax(
    "207",
    "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 100 mcg/0.5mL dose",
    "COVID-19 (Moderna)",
    "IM",
);

/// The childhood schedule: (age in months of the well-child visit, doses given there).
pub(crate) static CHILD_SCHEDULE: &[(u32, &[(&Vaccine, u32)])] = &[
    (0, &[(&HEPB, 1)]),
    (1, &[(&HEPB, 2)]),
    (2, &[(&DTAP, 1), (&IPV, 1), (&HIB, 1), (&PCV13, 1), (&ROTAVIRUS, 1)]),
    (4, &[(&DTAP, 2), (&IPV, 2), (&HIB, 2), (&PCV13, 2), (&ROTAVIRUS, 2)]),
    (6, &[(&DTAP, 3), (&IPV, 3), (&PCV13, 3), (&HEPB, 3)]),
    (9, &[]),
    (12, &[(&MMR, 1), (&VARICELLA, 1), (&HEPA, 1), (&HIB, 3), (&PCV13, 4)]),
    (15, &[(&DTAP, 4)]),
    (18, &[(&HEPA, 2)]),
    (24, &[]),
    (30, &[]),
    (36, &[]),
    (48, &[(&DTAP, 5), (&IPV, 4), (&MMR, 2), (&VARICELLA, 2)]),
    (60, &[]),
    (72, &[]),
    (84, &[]),
    (96, &[]),
    (108, &[]),
    (120, &[]),
    (132, &[(&TDAP, 1), (&HPV9, 1), (&MENACWY, 1)]),
    (144, &[(&HPV9, 2)]),
    (156, &[]),
    (168, &[]),
    (180, &[]),
    (192, &[(&MENACWY, 2)]),
    (204, &[]),
];

/// Shared organizations: (name, type, location type code, location type display).
pub(crate) struct Org {
    pub(crate) name: &'static str,
    pub(crate) street: &'static str,
    pub(crate) town: usize,
    pub(crate) loc_code: &'static str,
    pub(crate) loc_display: &'static str,
}

pub(crate) static ORGS: &[Org] = &[
    Org {
        name: "Maple Grove Family Medicine",
        street: "12 Orchard Way",
        town: 0,
        loc_code: "OF",
        loc_display: "Outpatient facility",
    },
    Org {
        name: "Riverbend Pediatrics",
        street: "48 Willow Lane",
        town: 1,
        loc_code: "OF",
        loc_display: "Outpatient facility",
    },
    Org {
        name: "Cedar Hill Internal Medicine",
        street: "301 Summit Drive",
        town: 2,
        loc_code: "OF",
        loc_display: "Outpatient facility",
    },
    Org {
        name: "Lakeside General Hospital",
        street: "1 Harbor Road",
        town: 4,
        loc_code: "HOSP",
        loc_display: "Hospital",
    },
    Org {
        name: "Northfield Clinical Laboratory",
        street: "77 Quarry Court",
        town: 4,
        loc_code: "OUTLAB",
        loc_display: "Outpatient laboratory",
    },
];

/// Index (0-based) of the hospital and of the laboratory in [`ORGS`].
pub(crate) const HOSPITAL: usize = 3;
pub(crate) const LAB: usize = 4;

pub(crate) struct Clinician {
    pub(crate) given: &'static str,
    pub(crate) family: &'static str,
    pub(crate) female: bool,
    pub(crate) org: usize,
    pub(crate) specialty: Code,
}

const FAMILY_PRACTICE: Code = c("419772000", "Family practice");
const PEDIATRICS: Code = c("394537008", "Pediatric specialty");
const INTERNAL_MEDICINE: Code = c("419192003", "Internal medicine");
const EMERGENCY_MEDICINE: Code = c("773568002", "Emergency medicine");
const GENERAL_MEDICINE: Code = c("394802001", "General medicine");
const PATHOLOGY: Code = c("394915009", "General pathology (specialty)");

const fn doc(given: &'static str, family: &'static str, female: bool, org: usize, specialty: Code) -> Clinician {
    Clinician { given, family, female, org, specialty }
}

pub(crate) static CLINICIANS: &[Clinician] = &[
    doc("Marisol", "Ferncastle", true, 0, FAMILY_PRACTICE),
    doc("Anders", "Quillfeather", false, 0, FAMILY_PRACTICE),
    doc("Priya", "Oakenshaw", true, 0, FAMILY_PRACTICE),
    doc("Teodor", "Brambleton", false, 1, PEDIATRICS),
    doc("Lucinda", "Marrowby", true, 1, PEDIATRICS),
    doc("Hamish", "Greystoke-Vale", false, 2, INTERNAL_MEDICINE),
    doc("Noemi", "Castellane", true, 2, INTERNAL_MEDICINE),
    doc("Ravi", "Thistlewood", false, HOSPITAL, EMERGENCY_MEDICINE),
    doc("Annika", "Sorrowfield", true, HOSPITAL, EMERGENCY_MEDICINE),
    doc("Julian", "Pennywhistle", false, HOSPITAL, GENERAL_MEDICINE),
    doc("Oona", "Kestrelmoor", true, HOSPITAL, GENERAL_MEDICINE),
    doc("Bertram", "Ashgrove", false, LAB, PATHOLOGY),
];

/// Clinician indices by role.
pub(crate) const ADULT_GPS: &[usize] = &[0, 1, 2, 5, 6];
pub(crate) const PEDIATRICIANS: &[usize] = &[3, 4];
pub(crate) const ED_DOCS: &[usize] = &[7, 8];
pub(crate) const HOSPITALISTS: &[usize] = &[9, 10];

pub(crate) fn org_id(i: usize) -> String {
    format!("synth-org-{}", i + 1)
}
pub(crate) fn loc_id(i: usize) -> String {
    format!("synth-loc-{}", i + 1)
}
pub(crate) fn pr_id(i: usize) -> String {
    format!("synth-pr-{}", i + 1)
}
pub(crate) fn role_id(i: usize) -> String {
    format!("synth-role-{}", i + 1)
}

/// A 10-digit NPI-like number with a valid check digit (Luhn over the `80840` prefix).
/// It starts with 9, a leading digit never issued to real providers.
pub(crate) fn npi(n: usize) -> String {
    let base = format!("9{:08}", 10_000_000 + n * 7_919 % 89_999_999);
    let digits: Vec<u32> = format!("80840{base}").chars().filter_map(|ch| ch.to_digit(10)).collect();
    let mut sum = 0;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut x = *d;
        if i % 2 == 0 {
            x *= 2;
            if x > 9 {
                x -= 9;
            }
        }
        sum += x;
    }
    format!("{base}{}", (10 - sum % 10) % 10)
}
