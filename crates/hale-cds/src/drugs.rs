//! The drugs Hale offers to prescribe: common outpatient medicines with their RxNorm
//! codes, ingredients and drug classes (the classes decide allergy cross-sensitivity and,
//! later, duplicate therapy). A product is coded with its RxNorm clinical drug (SCD)
//! where Hale knows that code, else with its ingredient (IN) and a product name in the
//! text. Classes follow the WHO ATC classification as RxClass publishes it.

/// A drug class that matters for allergy and duplicate-therapy checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Penicillin,
    Cephalosporin,
    Macrolide,
    Tetracycline,
    Fluoroquinolone,
    SulfonamideAntibiotic,
    Nitrofuran,
    Nsaid,
    Opioid,
    AceInhibitor,
    AngiotensinReceptorBlocker,
    CalciumChannelBlocker,
    ThiazideDiuretic,
    BetaBlocker,
    Statin,
    Biguanide,
    Sulfonylurea,
    Anticoagulant,
    AntiplateletP2y12,
    Ssri,
    ProtonPumpInhibitor,
    Corticosteroid,
    ShortActingBeta2Agonist,
    InhaledCorticosteroid,
    LeukotrieneAntagonist,
    ThyroidHormone,
    Analgesic,
    Gabapentinoid,
    Maoi,
    TricyclicAntidepressant,
    Triptan,
    CnsStimulant,
    AzoleAntifungal,
    ErgotAlkaloid,
}

impl Class {
    /// The class in words, plural ("penicillins").
    pub fn name(self) -> &'static str {
        match self {
            Class::Penicillin => "penicillins",
            Class::Cephalosporin => "cephalosporins",
            Class::Macrolide => "macrolides",
            Class::Tetracycline => "tetracyclines",
            Class::Fluoroquinolone => "fluoroquinolones",
            Class::SulfonamideAntibiotic => "sulfonamide antibiotics",
            Class::Nitrofuran => "nitrofurans",
            Class::Nsaid => "NSAIDs",
            Class::Opioid => "opioids",
            Class::AceInhibitor => "ACE inhibitors",
            Class::AngiotensinReceptorBlocker => "angiotensin receptor blockers",
            Class::CalciumChannelBlocker => "calcium channel blockers",
            Class::ThiazideDiuretic => "thiazide diuretics",
            Class::BetaBlocker => "beta blockers",
            Class::Statin => "statins",
            Class::Biguanide => "biguanides",
            Class::Sulfonylurea => "sulfonylureas",
            Class::Anticoagulant => "anticoagulants",
            Class::AntiplateletP2y12 => "P2Y12 antiplatelets",
            Class::Ssri => "SSRIs",
            Class::ProtonPumpInhibitor => "proton pump inhibitors",
            Class::Corticosteroid => "systemic corticosteroids",
            Class::ShortActingBeta2Agonist => "short-acting beta-2 agonists",
            Class::InhaledCorticosteroid => "inhaled corticosteroids",
            Class::LeukotrieneAntagonist => "leukotriene receptor antagonists",
            Class::ThyroidHormone => "thyroid hormones",
            Class::Analgesic => "simple analgesics",
            Class::Gabapentinoid => "gabapentinoids",
            Class::Maoi => "MAO inhibitors",
            Class::TricyclicAntidepressant => "tricyclic antidepressants",
            Class::Triptan => "triptans",
            Class::CnsStimulant => "CNS stimulants",
            Class::AzoleAntifungal => "azole antifungals",
            Class::ErgotAlkaloid => "ergot alkaloids",
        }
    }

    /// One of the class, singular with its article ("a penicillin").
    pub fn one(self) -> String {
        let n = self.name();
        let singular = n.strip_suffix('s').unwrap_or(n);
        let article =
            if singular.starts_with(['a', 'e', 'i', 'o', 'u', 'A', 'E', 'I', 'O', 'U', 'N', 'S']) { "an" } else { "a" };
        format!("{article} {singular}")
    }
}

/// An active ingredient (RxNorm IN) and its classes. An ingredient whose RxNorm code
/// could not be confirmed has an empty `rxcui`: it is recognized only by its name in a
/// medication's text and is not offered for ordering.
#[derive(Debug, PartialEq, Eq)]
pub struct Ingredient {
    pub rxcui: &'static str,
    pub name: &'static str,
    pub classes: &'static [Class],
}

/// How a drug is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Oral,
    Inhaled,
    Intravenous,
}

impl Route {
    /// SNOMED CT route code and display.
    pub fn snomed(self) -> (&'static str, &'static str) {
        match self {
            Route::Oral => ("26643006", "Oral route"),
            Route::Inhaled => ("447694001", "Respiratory tract route"),
            Route::Intravenous => ("47625008", "Intravenous route"),
        }
    }
}

/// A product that can be prescribed.
#[derive(Debug, PartialEq, Eq)]
pub struct Drug {
    /// The RxNorm code: a clinical drug (SCD) when `tty` is "SCD", else the ingredient.
    pub rxcui: &'static str,
    pub tty: &'static str,
    /// The product as prescribers write it.
    pub name: &'static str,
    pub ingredients: &'static [&'static Ingredient],
    pub route: Route,
    /// The unit one dose is counted in (tablet, capsule, puff, mL).
    pub unit: &'static str,
}

macro_rules! ingredient {
    ($id:ident, $rxcui:literal, $name:literal, [$($class:ident),*]) => {
        pub static $id: Ingredient = Ingredient { rxcui: $rxcui, name: $name, classes: &[$(Class::$class),*] };
    };
}

ingredient!(AMOXICILLIN, "723", "amoxicillin", [Penicillin]);
ingredient!(AMPICILLIN, "733", "ampicillin", [Penicillin]);
ingredient!(PENICILLIN_V, "7984", "penicillin V", [Penicillin]);
ingredient!(CLAVULANATE, "48203", "clavulanate", []);
ingredient!(CEPHALEXIN, "2231", "cephalexin", [Cephalosporin]);
ingredient!(CEFUROXIME, "2194", "cefuroxime", [Cephalosporin]);
ingredient!(AZITHROMYCIN, "18631", "azithromycin", [Macrolide]);
ingredient!(CLARITHROMYCIN, "21212", "clarithromycin", [Macrolide]);
ingredient!(DOXYCYCLINE, "3640", "doxycycline", [Tetracycline]);
ingredient!(CIPROFLOXACIN, "2551", "ciprofloxacin", [Fluoroquinolone]);
ingredient!(LEVOFLOXACIN, "82122", "levofloxacin", [Fluoroquinolone]);
ingredient!(SULFAMETHOXAZOLE, "10180", "sulfamethoxazole", [SulfonamideAntibiotic]);
ingredient!(TRIMETHOPRIM, "10829", "trimethoprim", []);
ingredient!(NITROFURANTOIN, "7454", "nitrofurantoin", [Nitrofuran]);
ingredient!(IBUPROFEN, "5640", "ibuprofen", [Nsaid]);
ingredient!(NAPROXEN, "7258", "naproxen", [Nsaid]);
ingredient!(ASPIRIN, "1191", "aspirin", [Nsaid]);
ingredient!(CELECOXIB, "140587", "celecoxib", [Nsaid]);
ingredient!(ACETAMINOPHEN, "161", "acetaminophen", [Analgesic]);
ingredient!(CODEINE, "2670", "codeine", [Opioid]);
ingredient!(TRAMADOL, "10689", "tramadol", [Opioid]);
ingredient!(LISINOPRIL, "29046", "lisinopril", [AceInhibitor]);
ingredient!(LOSARTAN, "52175", "losartan", [AngiotensinReceptorBlocker]);
ingredient!(AMLODIPINE, "17767", "amlodipine", [CalciumChannelBlocker]);
ingredient!(HYDROCHLOROTHIAZIDE, "5487", "hydrochlorothiazide", [ThiazideDiuretic]);
ingredient!(METOPROLOL, "6918", "metoprolol", [BetaBlocker]);
ingredient!(ATORVASTATIN, "83367", "atorvastatin", [Statin]);
ingredient!(SIMVASTATIN, "36567", "simvastatin", [Statin]);
ingredient!(METFORMIN, "6809", "metformin", [Biguanide]);
ingredient!(GLIPIZIDE, "4821", "glipizide", [Sulfonylurea]);
ingredient!(WARFARIN, "11289", "warfarin", [Anticoagulant]);
ingredient!(APIXABAN, "1364430", "apixaban", [Anticoagulant]);
ingredient!(CLOPIDOGREL, "32968", "clopidogrel", [AntiplateletP2y12]);
ingredient!(SERTRALINE, "36437", "sertraline", [Ssri]);
ingredient!(FLUOXETINE, "4493", "fluoxetine", [Ssri]);
ingredient!(OMEPRAZOLE, "7646", "omeprazole", [ProtonPumpInhibitor]);
ingredient!(PREDNISONE, "8640", "prednisone", [Corticosteroid]);
ingredient!(ALBUTEROL, "435", "albuterol", [ShortActingBeta2Agonist]);
ingredient!(FLUTICASONE, "41126", "fluticasone", [InhaledCorticosteroid]);
ingredient!(MONTELUKAST, "88249", "montelukast", [LeukotrieneAntagonist]);
ingredient!(LEVOTHYROXINE, "10582", "levothyroxine", [ThyroidHormone]);
ingredient!(GABAPENTIN, "25480", "gabapentin", [Gabapentinoid]);
// Added for the ONC high-priority interactions (medications.rs); each code confirmed in
// public material: CPIC's drug table (cpicpgx/cpic-schema drug.sql), NLM RxNav answers
// captured in public tests, and the Domeo DDI drug map (RxNorm ingredients).
ingredient!(CITALOPRAM, "2556", "citalopram", [Ssri]);
ingredient!(ESCITALOPRAM, "321988", "escitalopram", [Ssri]);
ingredient!(PAROXETINE, "32937", "paroxetine", [Ssri]);
ingredient!(FLUVOXAMINE, "42355", "fluvoxamine", [Ssri]);
ingredient!(PHENELZINE, "8123", "phenelzine", [Maoi]);
ingredient!(TRANYLCYPROMINE, "10734", "tranylcypromine", [Maoi]);
ingredient!(ISOCARBOXAZID, "6011", "isocarboxazid", [Maoi]);
ingredient!(SELEGILINE, "9639", "selegiline", [Maoi]);
ingredient!(AMITRIPTYLINE, "704", "amitriptyline", [TricyclicAntidepressant]);
ingredient!(NORTRIPTYLINE, "7531", "nortriptyline", [TricyclicAntidepressant]);
ingredient!(IMIPRAMINE, "5691", "imipramine", [TricyclicAntidepressant]);
ingredient!(SUMATRIPTAN, "37418", "sumatriptan", [Triptan]);
ingredient!(METHYLPHENIDATE, "6901", "methylphenidate", [CnsStimulant]);
ingredient!(MEPERIDINE, "6754", "meperidine", [Opioid]);
ingredient!(METHADONE, "6813", "methadone", [Opioid]);
ingredient!(OXYCODONE, "7804", "oxycodone", [Opioid]);
ingredient!(MORPHINE, "7052", "morphine", [Opioid]);
ingredient!(LOVASTATIN, "6472", "lovastatin", [Statin]);
ingredient!(PRAVASTATIN, "42463", "pravastatin", [Statin]);
ingredient!(ROSUVASTATIN, "301542", "rosuvastatin", [Statin]);
ingredient!(ERYTHROMYCIN, "4053", "erythromycin", [Macrolide]);
ingredient!(MOXIFLOXACIN, "139462", "moxifloxacin", [Fluoroquinolone]);
ingredient!(KETOCONAZOLE, "6135", "ketoconazole", [AzoleAntifungal]);
ingredient!(ITRACONAZOLE, "28031", "itraconazole", [AzoleAntifungal]);
ingredient!(FLUCONAZOLE, "4450", "fluconazole", [AzoleAntifungal]);
ingredient!(DILTIAZEM, "3443", "diltiazem", [CalciumChannelBlocker]);
ingredient!(RITONAVIR, "85762", "ritonavir", []);
ingredient!(ATAZANAVIR, "343047", "atazanavir", []);
ingredient!(LOPINAVIR, "195088", "lopinavir", []);
ingredient!(RIFAMPIN, "9384", "rifampin", []);
ingredient!(CARBAMAZEPINE, "2002", "carbamazepine", []);
ingredient!(PHENYTOIN, "8183", "phenytoin", []);
ingredient!(PANTOPRAZOLE, "40790", "pantoprazole", [ProtonPumpInhibitor]);
ingredient!(ESOMEPRAZOLE, "283742", "esomeprazole", [ProtonPumpInhibitor]);
ingredient!(IRINOTECAN, "51499", "irinotecan", []);
ingredient!(RAMELTEON, "596205", "ramelteon", []);
ingredient!(TIZANIDINE, "57258", "tizanidine", []);
ingredient!(ERGOTAMINE, "", "ergotamine", [ErgotAlkaloid]);
ingredient!(DIHYDROERGOTAMINE, "", "dihydroergotamine", [ErgotAlkaloid]);
ingredient!(FEBUXOSTAT, "73689", "febuxostat", []);
ingredient!(AZATHIOPRINE, "1256", "azathioprine", []);
ingredient!(MERCAPTOPURINE, "103", "mercaptopurine", []);
ingredient!(PROCARBAZINE, "8702", "procarbazine", []);
ingredient!(AMIODARONE, "703", "amiodarone", []);
ingredient!(SOTALOL, "9947", "sotalol", [BetaBlocker]);
ingredient!(HALOPERIDOL, "5093", "haloperidol", []);
ingredient!(ONDANSETRON, "26225", "ondansetron", []);

/// Every ingredient of the table.
pub static INGREDIENTS: &[&Ingredient] = &[
    &AMOXICILLIN,
    &AMPICILLIN,
    &PENICILLIN_V,
    &CLAVULANATE,
    &CEPHALEXIN,
    &CEFUROXIME,
    &AZITHROMYCIN,
    &CLARITHROMYCIN,
    &DOXYCYCLINE,
    &CIPROFLOXACIN,
    &LEVOFLOXACIN,
    &SULFAMETHOXAZOLE,
    &TRIMETHOPRIM,
    &NITROFURANTOIN,
    &IBUPROFEN,
    &NAPROXEN,
    &ASPIRIN,
    &CELECOXIB,
    &ACETAMINOPHEN,
    &CODEINE,
    &TRAMADOL,
    &LISINOPRIL,
    &LOSARTAN,
    &AMLODIPINE,
    &HYDROCHLOROTHIAZIDE,
    &METOPROLOL,
    &ATORVASTATIN,
    &SIMVASTATIN,
    &METFORMIN,
    &GLIPIZIDE,
    &WARFARIN,
    &APIXABAN,
    &CLOPIDOGREL,
    &SERTRALINE,
    &FLUOXETINE,
    &OMEPRAZOLE,
    &PREDNISONE,
    &ALBUTEROL,
    &FLUTICASONE,
    &MONTELUKAST,
    &LEVOTHYROXINE,
    &GABAPENTIN,
    &CITALOPRAM,
    &ESCITALOPRAM,
    &PAROXETINE,
    &FLUVOXAMINE,
    &PHENELZINE,
    &TRANYLCYPROMINE,
    &ISOCARBOXAZID,
    &SELEGILINE,
    &AMITRIPTYLINE,
    &NORTRIPTYLINE,
    &IMIPRAMINE,
    &SUMATRIPTAN,
    &METHYLPHENIDATE,
    &MEPERIDINE,
    &METHADONE,
    &OXYCODONE,
    &MORPHINE,
    &LOVASTATIN,
    &PRAVASTATIN,
    &ROSUVASTATIN,
    &ERYTHROMYCIN,
    &MOXIFLOXACIN,
    &KETOCONAZOLE,
    &ITRACONAZOLE,
    &FLUCONAZOLE,
    &DILTIAZEM,
    &RITONAVIR,
    &ATAZANAVIR,
    &LOPINAVIR,
    &RIFAMPIN,
    &CARBAMAZEPINE,
    &PHENYTOIN,
    &PANTOPRAZOLE,
    &ESOMEPRAZOLE,
    &IRINOTECAN,
    &RAMELTEON,
    &TIZANIDINE,
    &ERGOTAMINE,
    &DIHYDROERGOTAMINE,
    &FEBUXOSTAT,
    &AZATHIOPRINE,
    &MERCAPTOPURINE,
    &PROCARBAZINE,
    &AMIODARONE,
    &SOTALOL,
    &HALOPERIDOL,
    &ONDANSETRON,
];

const fn oral(
    rxcui: &'static str,
    tty: &'static str,
    name: &'static str,
    ingredients: &'static [&'static Ingredient],
    unit: &'static str,
) -> Drug {
    Drug { rxcui, tty, name, ingredients, route: Route::Oral, unit }
}

/// Every drug Hale offers to prescribe, by name.
pub static DRUGS: &[Drug] = &[
    oral("308182", "SCD", "amoxicillin 250 MG Oral Capsule", &[&AMOXICILLIN], "capsule"),
    oral("723", "IN", "amoxicillin 500 MG Oral Capsule", &[&AMOXICILLIN], "capsule"),
    oral("723", "IN", "amoxicillin 250 MG/5 ML Oral Suspension", &[&AMOXICILLIN], "mL"),
    oral("733", "IN", "ampicillin 500 MG Oral Capsule", &[&AMPICILLIN], "capsule"),
    oral("834102", "SCD", "penicillin V potassium 500 MG Oral Tablet", &[&PENICILLIN_V], "tablet"),
    oral("723", "IN", "amoxicillin 875 MG / clavulanate 125 MG Oral Tablet", &[&AMOXICILLIN, &CLAVULANATE], "tablet"),
    oral("2231", "IN", "cephalexin 500 MG Oral Capsule", &[&CEPHALEXIN], "capsule"),
    oral("2194", "IN", "cefuroxime 500 MG Oral Tablet", &[&CEFUROXIME], "tablet"),
    oral("308460", "SCD", "azithromycin 250 MG Oral Tablet", &[&AZITHROMYCIN], "tablet"),
    oral("21212", "IN", "clarithromycin 500 MG Oral Tablet", &[&CLARITHROMYCIN], "tablet"),
    oral("3640", "IN", "doxycycline 100 MG Oral Capsule", &[&DOXYCYCLINE], "capsule"),
    oral("309309", "SCD", "ciprofloxacin 500 MG Oral Tablet", &[&CIPROFLOXACIN], "tablet"),
    oral("82122", "IN", "levofloxacin 500 MG Oral Tablet", &[&LEVOFLOXACIN], "tablet"),
    oral(
        "198335",
        "SCD",
        "sulfamethoxazole 800 MG / trimethoprim 160 MG Oral Tablet",
        &[&SULFAMETHOXAZOLE, &TRIMETHOPRIM],
        "tablet",
    ),
    oral("7454", "IN", "nitrofurantoin 100 MG Oral Capsule", &[&NITROFURANTOIN], "capsule"),
    oral("310965", "SCD", "ibuprofen 200 MG Oral Tablet", &[&IBUPROFEN], "tablet"),
    oral("5640", "IN", "ibuprofen 400 MG Oral Tablet", &[&IBUPROFEN], "tablet"),
    oral("7258", "IN", "naproxen 500 MG Oral Tablet", &[&NAPROXEN], "tablet"),
    oral("1191", "IN", "aspirin 81 MG Oral Tablet", &[&ASPIRIN], "tablet"),
    oral("140587", "IN", "celecoxib 200 MG Oral Capsule", &[&CELECOXIB], "capsule"),
    oral("161", "IN", "acetaminophen 500 MG Oral Tablet", &[&ACETAMINOPHEN], "tablet"),
    oral("2670", "IN", "acetaminophen 300 MG / codeine 30 MG Oral Tablet", &[&ACETAMINOPHEN, &CODEINE], "tablet"),
    oral("10689", "IN", "tramadol 50 MG Oral Tablet", &[&TRAMADOL], "tablet"),
    oral("314076", "SCD", "lisinopril 10 MG Oral Tablet", &[&LISINOPRIL], "tablet"),
    oral("52175", "IN", "losartan 50 MG Oral Tablet", &[&LOSARTAN], "tablet"),
    oral("197361", "SCD", "amlodipine 5 MG Oral Tablet", &[&AMLODIPINE], "tablet"),
    oral("310798", "SCD", "hydrochlorothiazide 25 MG Oral Tablet", &[&HYDROCHLOROTHIAZIDE], "tablet"),
    oral("6918", "IN", "metoprolol succinate 50 MG Extended Release Oral Tablet", &[&METOPROLOL], "tablet"),
    oral("617310", "SCD", "atorvastatin 20 MG Oral Tablet", &[&ATORVASTATIN], "tablet"),
    oral("312961", "SCD", "simvastatin 20 MG Oral Tablet", &[&SIMVASTATIN], "tablet"),
    oral("861007", "SCD", "metformin hydrochloride 500 MG Oral Tablet", &[&METFORMIN], "tablet"),
    oral("4821", "IN", "glipizide 5 MG Oral Tablet", &[&GLIPIZIDE], "tablet"),
    oral("11289", "IN", "warfarin sodium 5 MG Oral Tablet", &[&WARFARIN], "tablet"),
    oral("1364430", "IN", "apixaban 5 MG Oral Tablet", &[&APIXABAN], "tablet"),
    oral("32968", "IN", "clopidogrel 75 MG Oral Tablet", &[&CLOPIDOGREL], "tablet"),
    oral("312940", "SCD", "sertraline 50 MG Oral Tablet", &[&SERTRALINE], "tablet"),
    oral("4493", "IN", "fluoxetine 20 MG Oral Capsule", &[&FLUOXETINE], "capsule"),
    oral("7646", "IN", "omeprazole 20 MG Delayed Release Oral Capsule", &[&OMEPRAZOLE], "capsule"),
    oral("8640", "IN", "prednisone 20 MG Oral Tablet", &[&PREDNISONE], "tablet"),
    Drug {
        rxcui: "745679",
        tty: "SCD",
        name: "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
        ingredients: &[&ALBUTEROL],
        route: Route::Inhaled,
        unit: "puff",
    },
    Drug {
        rxcui: "895994",
        tty: "SCD",
        name: "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler",
        ingredients: &[&FLUTICASONE],
        route: Route::Inhaled,
        unit: "puff",
    },
    oral("88249", "IN", "montelukast 10 MG Oral Tablet", &[&MONTELUKAST], "tablet"),
    oral("10582", "IN", "levothyroxine sodium 0.05 MG Oral Tablet", &[&LEVOTHYROXINE], "tablet"),
    oral("25480", "IN", "gabapentin 300 MG Oral Capsule", &[&GABAPENTIN], "capsule"),
    oral("2556", "IN", "citalopram 20 MG Oral Tablet", &[&CITALOPRAM], "tablet"),
    oral("321988", "IN", "escitalopram 10 MG Oral Tablet", &[&ESCITALOPRAM], "tablet"),
    oral("32937", "IN", "paroxetine 20 MG Oral Tablet", &[&PAROXETINE], "tablet"),
    oral("42355", "IN", "fluvoxamine maleate 50 MG Oral Tablet", &[&FLUVOXAMINE], "tablet"),
    oral("8123", "IN", "phenelzine 15 MG Oral Tablet", &[&PHENELZINE], "tablet"),
    oral("10734", "IN", "tranylcypromine 10 MG Oral Tablet", &[&TRANYLCYPROMINE], "tablet"),
    oral("6011", "IN", "isocarboxazid 10 MG Oral Tablet", &[&ISOCARBOXAZID], "tablet"),
    oral("9639", "IN", "selegiline hydrochloride 5 MG Oral Capsule", &[&SELEGILINE], "capsule"),
    oral("704", "IN", "amitriptyline hydrochloride 25 MG Oral Tablet", &[&AMITRIPTYLINE], "tablet"),
    oral("7531", "IN", "nortriptyline 25 MG Oral Capsule", &[&NORTRIPTYLINE], "capsule"),
    oral("5691", "IN", "imipramine hydrochloride 25 MG Oral Tablet", &[&IMIPRAMINE], "tablet"),
    oral("37418", "IN", "sumatriptan 50 MG Oral Tablet", &[&SUMATRIPTAN], "tablet"),
    oral("6901", "IN", "methylphenidate hydrochloride 10 MG Oral Tablet", &[&METHYLPHENIDATE], "tablet"),
    oral("6754", "IN", "meperidine hydrochloride 50 MG Oral Tablet", &[&MEPERIDINE], "tablet"),
    oral("6813", "IN", "methadone hydrochloride 10 MG Oral Tablet", &[&METHADONE], "tablet"),
    oral("7804", "IN", "oxycodone hydrochloride 5 MG Oral Tablet", &[&OXYCODONE], "tablet"),
    oral("7052", "IN", "morphine sulfate 15 MG Oral Tablet", &[&MORPHINE], "tablet"),
    oral("6472", "IN", "lovastatin 20 MG Oral Tablet", &[&LOVASTATIN], "tablet"),
    oral("42463", "IN", "pravastatin sodium 40 MG Oral Tablet", &[&PRAVASTATIN], "tablet"),
    oral("301542", "IN", "rosuvastatin 10 MG Oral Tablet", &[&ROSUVASTATIN], "tablet"),
    oral("4053", "IN", "erythromycin 500 MG Oral Tablet", &[&ERYTHROMYCIN], "tablet"),
    oral("139462", "IN", "moxifloxacin 400 MG Oral Tablet", &[&MOXIFLOXACIN], "tablet"),
    oral("6135", "IN", "ketoconazole 200 MG Oral Tablet", &[&KETOCONAZOLE], "tablet"),
    oral("28031", "IN", "itraconazole 100 MG Oral Capsule", &[&ITRACONAZOLE], "capsule"),
    oral("4450", "IN", "fluconazole 150 MG Oral Tablet", &[&FLUCONAZOLE], "tablet"),
    oral("3443", "IN", "diltiazem hydrochloride 120 MG Extended Release Oral Capsule", &[&DILTIAZEM], "capsule"),
    oral("85762", "IN", "ritonavir 100 MG Oral Tablet", &[&RITONAVIR], "tablet"),
    oral("343047", "IN", "atazanavir 300 MG Oral Capsule", &[&ATAZANAVIR], "capsule"),
    oral("195088", "IN", "lopinavir 200 MG / ritonavir 50 MG Oral Tablet", &[&LOPINAVIR, &RITONAVIR], "tablet"),
    oral("9384", "IN", "rifampin 300 MG Oral Capsule", &[&RIFAMPIN], "capsule"),
    oral("2002", "IN", "carbamazepine 200 MG Oral Tablet", &[&CARBAMAZEPINE], "tablet"),
    oral("8183", "IN", "phenytoin sodium 100 MG Extended Release Oral Capsule", &[&PHENYTOIN], "capsule"),
    oral("40790", "IN", "pantoprazole 40 MG Delayed Release Oral Tablet", &[&PANTOPRAZOLE], "tablet"),
    oral("283742", "IN", "esomeprazole 40 MG Delayed Release Oral Capsule", &[&ESOMEPRAZOLE], "capsule"),
    Drug {
        rxcui: "51499",
        tty: "IN",
        name: "irinotecan hydrochloride 100 MG/5 ML Injectable Solution",
        ingredients: &[&IRINOTECAN],
        route: Route::Intravenous,
        unit: "mL",
    },
    oral("596205", "IN", "ramelteon 8 MG Oral Tablet", &[&RAMELTEON], "tablet"),
    oral("57258", "IN", "tizanidine 4 MG Oral Tablet", &[&TIZANIDINE], "tablet"),
    oral("73689", "IN", "febuxostat 40 MG Oral Tablet", &[&FEBUXOSTAT], "tablet"),
    oral("1256", "IN", "azathioprine 50 MG Oral Tablet", &[&AZATHIOPRINE], "tablet"),
    oral("103", "IN", "mercaptopurine 50 MG Oral Tablet", &[&MERCAPTOPURINE], "tablet"),
    oral("8702", "IN", "procarbazine 50 MG Oral Capsule", &[&PROCARBAZINE], "capsule"),
    oral("703", "IN", "amiodarone hydrochloride 200 MG Oral Tablet", &[&AMIODARONE], "tablet"),
    oral("9947", "IN", "sotalol hydrochloride 80 MG Oral Tablet", &[&SOTALOL], "tablet"),
    oral("5093", "IN", "haloperidol 5 MG Oral Tablet", &[&HALOPERIDOL], "tablet"),
    oral("26225", "IN", "ondansetron 4 MG Oral Tablet", &[&ONDANSETRON], "tablet"),
];

/// The drugs whose name contains every word of `query` (case-insensitive), at most
/// `limit`: those whose name starts with the first word first ("ritonavir" before
/// "lopinavir / ritonavir", "citalopram" before "escitalopram"), else in table order.
pub fn find(query: &str, limit: usize) -> Vec<(usize, &'static Drug)> {
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    if words.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<(usize, &'static Drug)> = DRUGS
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            let name = d.name.to_lowercase();
            words.iter().all(|w| name.contains(w.as_str()))
        })
        .collect();
    found.sort_by_key(|(_, d)| !d.name.to_lowercase().starts_with(words[0].as_str()));
    found.truncate(limit);
    found
}

/// The drug at `index` of [`DRUGS`].
pub fn get(index: usize) -> Option<&'static Drug> {
    DRUGS.get(index)
}

/// The ingredient with RxNorm code `rxcui`.
pub fn ingredient(rxcui: &str) -> Option<&'static Ingredient> {
    INGREDIENTS.iter().copied().find(|i| !i.rxcui.is_empty() && i.rxcui == rxcui)
}

/// The drug of the table with RxNorm code `rxcui` (the first when several share an
/// ingredient code).
pub fn by_rxcui(rxcui: &str) -> Option<&'static Drug> {
    DRUGS.iter().find(|d| d.rxcui == rxcui)
}

/// The drug of the table for an RxNorm code: the product with that code, else a product
/// of that one ingredient (an order coded by its ingredient).
pub fn by_code(rxcui: &str) -> Option<&'static Drug> {
    by_rxcui(rxcui).or_else(|| DRUGS.iter().find(|d| d.ingredients.len() == 1 && d.ingredients[0].rxcui == rxcui))
}
