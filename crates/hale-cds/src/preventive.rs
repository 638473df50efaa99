//! Preventive care: which screenings and vaccinations are due for a patient, from rules
//! as data (who, what counts as done, how often, the source). Input is the patient's
//! FHIR JSON as read through the gate; dates are compared as day numbers.

use std::borrow::Cow;

use serde_json::Value;

/// What a rule looks for in the record to count as done.
#[derive(Debug)]
pub enum Done {
    /// An Immunization (completed) with one of these CVX codes, or, uncoded, whose text
    /// has one of these words.
    Vaccine(&'static [&'static str], &'static [&'static str]),
    /// An Observation with one of these LOINC codes.
    Observation(&'static [&'static str]),
    /// Any of several ways to screen, each with its own interval (colorectal cancer:
    /// a stool test yearly, a colonoscopy every ten years...).
    AnyOf(&'static [Modality]),
}

/// One way a screening can be done.
#[derive(Debug)]
pub struct Modality {
    /// In words ("colonoscopy").
    pub name: &'static str,
    /// A completed Procedure with one of `codes` (SNOMED CT), else an Observation with
    /// one of them (LOINC).
    pub procedure: bool,
    pub codes: &'static [&'static str],
    /// Counts for this many days.
    pub every_days: i64,
    /// Counts only when done at this age or older (HPV testing from 30); 0: at any age.
    pub from_age: u32,
}

const COLORECTAL: &[Modality] = &[
    Modality {
        name: "stool immunochemical test (FIT)",
        procedure: false,
        codes: &["29771-3", "57905-2", "56490-6", "56491-4", "2335-8"],
        every_days: 365,
        from_age: 0,
    },
    Modality { name: "stool DNA-FIT", procedure: false, codes: &["77353-1", "77354-9"], every_days: 1095, from_age: 0 },
    Modality { name: "flexible sigmoidoscopy", procedure: true, codes: &["44441009"], every_days: 1826, from_age: 0 },
    Modality { name: "colonoscopy", procedure: true, codes: &["73761001"], every_days: 3652, from_age: 0 },
];

const BONE_DENSITY: &[Modality] = &[
    Modality { name: "bone density scan (DXA)", procedure: true, codes: &["312681000"], every_days: ONCE, from_age: 0 },
    Modality { name: "DXA T-score", procedure: false, codes: &["38265-5", "46278-8"], every_days: ONCE, from_age: 0 },
];

/// An interval that never runs out: done once is enough.
const ONCE: i64 = 100 * 366;

const MAMMOGRAPHY: &[Modality] = &[Modality {
    name: "mammography",
    procedure: true,
    codes: &["71651007", "24623002", "43204002"],
    every_days: 730,
    from_age: 0,
}];

/// Cervical cancer screening: cytology every 3 years from 21; from 30, a high-risk HPV
/// test (alone or with cytology) every 5 years.
const CERVICAL: &[Modality] = &[
    Modality { name: "cervical cytology (Pap test)", procedure: false, codes: PAP, every_days: 1095, from_age: 21 },
    Modality { name: "high-risk HPV test", procedure: false, codes: HPV, every_days: 1826, from_age: 30 },
];

/// CMS124 "Pap Test" (VSAC 2.16.840.1.113883.3.464.1003.108.12.1017), LOINC.
const PAP: &[&str] =
    &["10524-7", "18500-9", "19762-4", "19764-0", "19765-7", "19766-5", "19774-9", "33717-0", "47527-7", "47528-5"];

/// CMS124 "HPV Test" (VSAC 2.16.840.1.113883.3.464.1003.110.12.1059), LOINC.
const HPV: &[&str] = &[
    "21440-3", "30167-1", "38372-9", "59263-4", "59264-2", "59420-0", "69002-4", "71431-1", "75694-0", "77379-6",
    "77399-4", "77400-0", "82354-2", "82456-5", "82675-0", "95539-3",
];

/// CMS124 "Hysterectomy with No Residual Cervix" (VSAC 2.16.840.1.113883.3.464.1003.198.12.1014),
/// its SNOMED CT codes (its CPT and ICD-10-PCS codes are not searched).
const NO_CERVIX_PROCEDURES: &[&str] = &[
    "116140006",
    "116142003",
    "116143008",
    "116144002",
    "1163275000",
    "176697007",
    "236888001",
    "236891001",
    "24293001",
    "287924009",
    "307771009",
    "35955002",
    "361222003",
    "361223008",
    "387626007",
    "414575003",
    "41566006",
    "440383008",
    "446446002",
    "446679008",
    "46226009",
    "708877008",
    "708878003",
    "739671004",
    "739672006",
    "739673001",
    "739674007",
    "740514001",
    "740515000",
    "767610009",
    "767611008",
    "767612001",
    "82418001",
    "86477000",
    "88144003",
];

/// CMS124 "Congenital or Acquired Absence of Cervix" (VSAC 2.16.840.1.113883.3.464.1003.111.12.1016):
/// ICD-10-CM and SNOMED CT.
const NO_CERVIX_CONDITIONS: &[&str] = &[
    "Q51.5",
    "Z90.710",
    "Z90.712",
    "10738891000119107",
    "248911005",
    "37687000",
    "428078001",
    "429290001",
    "429763009",
    "473171009",
    "723171001",
];

/// Low-dose CT of the chest, yearly.
const LDCT: &[Modality] = &[Modality {
    name: "low-dose CT of the chest",
    procedure: true,
    codes: &["16334891000119106"],
    every_days: 365,
    from_age: 0,
}];

/// Tobacco smoking status (LOINC 72166-2) answers of someone who smokes or has smoked
/// (SNOMED CT, the US Core smoking status codes): every day, some days, light, heavy,
/// smoker of unknown current status, and former smoker. Never (266919005) and unknown
/// (266927001) are not among them.
const SMOKES_OR_SMOKED: &[&str] =
    &["449868002", "428041000124106", "428061000124105", "428071000124103", "77176002", "8517006"];

/// Diabetes problems: SNOMED CT and ICD-10-CM (by prefix).
const DIABETES: &[&str] = &["44054006", "73211009", "46635009", "E10", "E11"];

/// Who a rule is for.
#[derive(Debug)]
pub enum Who {
    /// Aged at least `min` and below `max` years (months for infants are not used).
    Age { min: u32, max: u32 },
    /// Anyone with an active condition of one of these SNOMED CT or ICD-10-CM codes
    /// (an ICD-10-CM code matches by prefix).
    Condition(&'static [&'static str]),
    /// Women (administrative gender female) aged at least `min` and below `max`.
    Women { min: u32, max: u32 },
}

/// A fact the record must show for a rule to apply, read from the latest final
/// Observation that has a value for `code`: its own value, or a component's of that code
/// (pack-years are often a component of the smoking status).
#[derive(Debug)]
pub struct Finding {
    /// A LOINC code, or a SNOMED CT one when `snomed`.
    pub code: &'static str,
    pub snomed: bool,
    pub is: Is,
    /// Whether the rule applies when no value is recorded.
    pub when_unrecorded: bool,
}

/// What a [`Finding`]'s value must be.
#[derive(Debug)]
pub enum Is {
    /// A quantity of at least this.
    AtLeast(f64),
    /// A coded value (SNOMED CT) among these.
    OneOf(&'static [&'static str]),
}

/// What takes a patient out of a rule, at any date: a completed Procedure, or a
/// Condition among those the caller hands in (the active ones).
#[derive(Debug)]
pub struct Excluded {
    /// SNOMED CT codes of Procedures.
    pub procedures: &'static [&'static str],
    /// SNOMED CT or ICD-10-CM codes of Conditions (ICD-10-CM by prefix).
    pub conditions: &'static [&'static str],
}

/// No exclusion.
const NONE: Excluded = Excluded { procedures: &[], conditions: &[] };

/// A preventive-care rule.
#[derive(Debug)]
pub struct Preventive {
    pub id: &'static str,
    pub title: &'static str,
    /// The same in plain words, for the patient.
    pub for_patient: &'static str,
    pub who: Who,
    /// What the record must also show (all of them).
    pub needs: &'static [Finding],
    pub excluded_by: Excluded,
    pub done: Done,
    /// Due again after this many days; `None`: once is enough.
    pub every_days: Option<i64>,
    /// How many times it must have been done (a vaccine series).
    pub doses: usize,
    pub action: &'static str,
    pub source: &'static str,
    /// The source's page, for a link (opened by the reader; nothing is fetched).
    pub link: &'static str,
    /// When the rule was last checked against its source (`YYYY-MM-DD`).
    pub reviewed: &'static str,
}

const ACIP_ADULT: &str = "https://www.cdc.gov/vaccines/hcp/imz-schedules/adult-age.html";

pub(crate) const FLU: &[&str] = &["140", "141", "150", "155", "158", "161", "171", "185", "186", "197", "205"];
const TD: &[&str] = &["09", "113", "115", "138", "139"];
const PNEUMO: &[&str] = &["33", "133", "152", "215", "216"];

/// The rules Hale applies.
pub static RULES: &[Preventive] = &[
    Preventive {
        id: "influenza-vaccine",
        reviewed: "2026-12-07",
        title: "Influenza vaccine (yearly)",
        for_patient: "A flu vaccine for this season",
        who: Who::Age { min: 1, max: 200 },
        needs: &[],
        excluded_by: NONE,
        done: Done::Vaccine(FLU, &["influenza", "flu"]),
        every_days: Some(365),
        doses: 1,
        action: "Offer this season's influenza vaccine.",
        source: "CDC ACIP, prevention and control of seasonal influenza with vaccines (yearly for everyone 6 months and older)",
        link: "https://www.cdc.gov/flu/hcp/acip/index.html",
    },
    Preventive {
        id: "td-booster",
        reviewed: "2026-12-07",
        title: "Tetanus and diphtheria booster (every 10 years)",
        for_patient: "A tetanus booster (every 10 years)",
        who: Who::Age { min: 19, max: 200 },
        needs: &[],
        excluded_by: NONE,
        done: Done::Vaccine(TD, &["tetanus", "td", "tdap"]),
        every_days: Some(3652),
        doses: 1,
        action: "Give Td or Tdap.",
        source: "CDC ACIP adult immunization schedule (Td or Tdap every 10 years)",
        link: ACIP_ADULT,
    },
    Preventive {
        id: "pneumococcal-65",
        reviewed: "2026-12-07",
        title: "Pneumococcal vaccine (65 and older)",
        for_patient: "A pneumonia (pneumococcal) vaccine",
        who: Who::Age { min: 65, max: 200 },
        needs: &[],
        excluded_by: NONE,
        done: Done::Vaccine(PNEUMO, &["pneumococcal"]),
        every_days: None,
        doses: 1,
        action: "Offer a pneumococcal conjugate vaccine (PCV20 or PCV21, or PCV15 then PPSV23).",
        source: "CDC ACIP adult immunization schedule, pneumococcal vaccination",
        link: ACIP_ADULT,
    },
    Preventive {
        id: "zoster-50",
        reviewed: "2026-12-07",
        title: "Recombinant zoster vaccine, two doses (50 and older)",
        for_patient: "The shingles vaccine (two doses, a few months apart)",
        who: Who::Age { min: 50, max: 200 },
        needs: &[],
        excluded_by: NONE,
        done: Done::Vaccine(&["187"], &["zoster", "shingles"]),
        every_days: None,
        doses: 2,
        action: "Give the recombinant zoster vaccine (second dose 2 to 6 months after the first).",
        source: "CDC ACIP adult immunization schedule, zoster vaccination",
        link: ACIP_ADULT,
    },
    Preventive {
        id: "blood-pressure-40",
        reviewed: "2026-12-07",
        title: "Blood pressure check (yearly from 40)",
        for_patient: "A blood pressure check (once a year)",
        who: Who::Age { min: 40, max: 200 },
        needs: &[],
        excluded_by: NONE,
        done: Done::Observation(&["85354-9", "55284-4", "8480-6"]),
        every_days: Some(365),
        doses: 1,
        action: "Measure the blood pressure.",
        source: "USPSTF 2021, screening for hypertension in adults (yearly from 40 or at higher risk)",
        link: concat!(
            "https://www.uspreventiveservicestaskforce.org/uspstf/recommendation/",
            "hypertension-in-adults-screening"
        ),
    },
    Preventive {
        id: "lipids-40-75",
        reviewed: "2026-12-07",
        title: "Lipid panel (every 5 years, 40 to 75)",
        for_patient: "A cholesterol blood test (every 5 years)",
        who: Who::Age { min: 40, max: 76 },
        needs: &[],
        excluded_by: NONE,
        done: Done::Observation(&["2093-3", "57698-3", "18262-6", "13457-7"]),
        every_days: Some(1826),
        doses: 1,
        action: "Order a lipid panel to assess cardiovascular risk.",
        source: "USPSTF 2022, statin use for the primary prevention of cardiovascular disease in adults",
        link: concat!(
            "https://www.uspreventiveservicestaskforce.org/uspstf/recommendation/",
            "statin-use-in-adults-preventive-medication"
        ),
    },
    Preventive {
        id: "diabetes-35-70",
        reviewed: "2026-12-08",
        title: "Diabetes screening every 3 years (35 to 70 with a BMI of 25 or more; needs a recorded BMI)",
        for_patient: "A blood sugar test (HbA1c or fasting glucose) to check for diabetes (every 3 years)",
        who: Who::Age { min: 35, max: 71 },
        needs: &[Finding { code: "39156-5", snomed: false, is: Is::AtLeast(25.0), when_unrecorded: false }],
        excluded_by: Excluded { procedures: &[], conditions: DIABETES },
        done: Done::Observation(&["4548-4", "17856-6", "1558-6"]),
        every_days: Some(1095),
        doses: 1,
        action: "Order an HbA1c or a fasting plasma glucose. Due only with a latest BMI of 25 or more: record a BMI if there is none.",
        source: "USPSTF 2021, screening for prediabetes and type 2 diabetes (adults 35 to 70 with overweight or obesity, B)",
        link: concat!(
            "https://www.uspreventiveservicestaskforce.org/uspstf/recommendation/",
            "screening-for-prediabetes-and-type-2-diabetes"
        ),
    },
    Preventive {
        id: "colorectal-45-75",
        reviewed: "2026-12-07",
        title: "Colorectal cancer screening (45 to 75)",
        for_patient: "A bowel cancer screening test (a stool test, or a colonoscopy)",
        who: Who::Age { min: 45, max: 76 },
        needs: &[],
        excluded_by: NONE,
        done: Done::AnyOf(COLORECTAL),
        every_days: None,
        doses: 1,
        action: "Offer a stool test (FIT yearly, or stool DNA-FIT every 1 to 3 years) or a colonoscopy (every 10 years).",
        source: "USPSTF 2021, screening for colorectal cancer (A for 50 to 75, B for 45 to 49)",
        link: concat!(
            "https://www.uspreventiveservicestaskforce.org/uspstf/recommendation/",
            "colorectal-cancer-screening"
        ),
    },
    Preventive {
        id: "lung-cancer-50-80",
        reviewed: "2026-12-08",
        title: "Lung cancer screening, low-dose CT yearly (50 to 80, smokes or smoked: confirm 20 pack-years, quit within 15 years)",
        for_patient: "A yearly low-dose CT scan of the chest, if your smoking history calls for one",
        who: Who::Age { min: 50, max: 81 },
        needs: &[
            Finding { code: "72166-2", snomed: false, is: Is::OneOf(SMOKES_OR_SMOKED), when_unrecorded: false },
            Finding { code: "401201003", snomed: true, is: Is::AtLeast(20.0), when_unrecorded: true },
        ],
        excluded_by: NONE,
        done: Done::AnyOf(LDCT),
        every_days: None,
        doses: 1,
        action: "Before ordering a low-dose CT of the chest, confirm at least 20 pack-years of smoking and, for a former smoker, quitting within the past 15 years.",
        source: "USPSTF 2021, screening for lung cancer (adults 50 to 80 with 20 pack-years who smoke or quit within 15 years, B)",
        link: concat!("https://www.uspreventiveservicestaskforce.org/uspstf/recommendation/", "lung-cancer-screening"),
    },
    Preventive {
        id: "mammography-40-74",
        reviewed: "2026-12-07",
        title: "Breast cancer screening, mammography every 2 years (women 40 to 74)",
        for_patient: "A mammogram (every 2 years)",
        who: Who::Women { min: 40, max: 75 },
        needs: &[],
        excluded_by: NONE,
        done: Done::AnyOf(MAMMOGRAPHY),
        every_days: None,
        doses: 1,
        action: "Offer a screening mammogram.",
        source: "USPSTF 2024, screening for breast cancer (biennial mammography for women 40 to 74, B)",
        link: concat!(
            "https://www.uspreventiveservicestaskforce.org/uspstf/recommendation/",
            "breast-cancer-screening"
        ),
    },
    Preventive {
        id: "cervical-21-65",
        reviewed: "2026-12-08",
        title: "Cervical cancer screening (women 21 to 65): cytology every 3 years, or from 30 an HPV test every 5",
        for_patient: "A cervical screening test (a Pap test, or from 30 an HPV test)",
        who: Who::Women { min: 21, max: 65 },
        needs: &[],
        excluded_by: Excluded { procedures: NO_CERVIX_PROCEDURES, conditions: NO_CERVIX_CONDITIONS },
        done: Done::AnyOf(CERVICAL),
        every_days: None,
        doses: 1,
        action: "Offer cervical cytology (every 3 years); from 30, high-risk HPV testing alone or with cytology (every 5 years) instead.",
        source: "USPSTF 2018, screening for cervical cancer (women 21 to 65 with a cervix, A)",
        link: concat!(
            "https://www.uspreventiveservicestaskforce.org/uspstf/recommendation/",
            "cervical-cancer-screening"
        ),
    },
    Preventive {
        id: "osteoporosis-65",
        reviewed: "2026-12-07",
        title: "Osteoporosis screening, bone density (women 65 and older)",
        for_patient: "A bone density scan (to check for thinning bones)",
        who: Who::Women { min: 65, max: 200 },
        needs: &[],
        excluded_by: NONE,
        done: Done::AnyOf(BONE_DENSITY),
        every_days: None,
        doses: 1,
        action: "Order a bone density scan (DXA of the hip and spine).",
        source: "USPSTF 2025, screening for osteoporosis to prevent fractures (women 65 and older, B)",
        link: concat!("https://www.uspreventiveservicestaskforce.org/uspstf/recommendation/", "osteoporosis-screening"),
    },
    Preventive {
        id: "hpv-11-26",
        reviewed: "2026-12-07",
        title: "HPV vaccine series (11 to 26)",
        for_patient: "The HPV vaccine, which protects against several cancers (two or three doses)",
        who: Who::Age { min: 11, max: 27 },
        needs: &[],
        excluded_by: NONE,
        done: Done::Vaccine(&["62", "118", "137", "165"], &["hpv", "papilloma"]),
        every_days: None,
        doses: 2,
        action: "Give the HPV vaccine: two doses 6 to 12 months apart when started before 15, else three.",
        source: "CDC ACIP child, adolescent and adult immunization schedules, HPV vaccination (routine at 11 to 12, catch-up through 26)",
        link: "https://www.cdc.gov/vaccines/hcp/imz-schedules/child-adolescent-age.html",
    },
    Preventive {
        id: "depression-12",
        reviewed: "2026-12-07",
        title: "Depression screening (yearly from 12)",
        for_patient: "A short questionnaire about your mood (once a year)",
        who: Who::Age { min: 12, max: 200 },
        needs: &[],
        excluded_by: NONE,
        done: Done::Observation(&["55758-7", "44261-6", "73831-0"]),
        every_days: Some(365),
        doses: 1,
        action: "Screen with the PHQ-2, then the PHQ-9 if positive (PHQ-A for adolescents).",
        source: "USPSTF 2023, screening for depression in adults (B); USPSTF 2022, in children and adolescents 12 to 18 (B)",
        link: concat!(
            "https://www.uspreventiveservicestaskforce.org/uspstf/recommendation/",
            "screening-depression-suicide-risk-adults"
        ),
    },
    Preventive {
        id: "hba1c-diabetes",
        reviewed: "2026-12-07",
        title: "HbA1c (every 6 months with diabetes)",
        for_patient: "An HbA1c blood test for your diabetes (every 6 months)",
        who: Who::Condition(DIABETES),
        needs: &[],
        excluded_by: NONE,
        done: Done::Observation(&["4548-4", "17856-6"]),
        every_days: Some(183),
        doses: 1,
        action: "Order an HbA1c.",
        source: "ADA Standards of Care in Diabetes, glycemic goals (A1C at least twice a year)",
        link: "https://professional.diabetes.org/standards-of-care",
    },
];

impl Preventive {
    /// This rule as an item due, last done on `last`.
    fn due(&self, last: Option<String>) -> Due {
        Due {
            rule: self.id,
            title: self.title.into(),
            for_patient: self.for_patient.into(),
            last,
            action: self.action.into(),
            source: self.source,
            link: self.link,
        }
    }
}

/// A rule that is due: why, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub rule: &'static str,
    pub title: Cow<'static, str>,
    pub for_patient: Cow<'static, str>,
    /// The last time it was done (`YYYY-MM-DD`), if ever.
    pub last: Option<String>,
    pub action: Cow<'static, str>,
    pub source: &'static str,
    /// The source's page ([`Preventive::link`]).
    pub link: &'static str,
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

pub fn years_between(birth: &str, today: &str) -> Option<u32> {
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

fn is_final(o: &Value) -> bool {
    o["resourceType"] != "Procedure" && matches!(o["status"].as_str(), Some("final" | "amended" | "corrected"))
}

/// The dates (`YYYY-MM-DD`) a modality was done: completed Procedures or final
/// Observations of its codes among `records`, at its `from_age` or older (by `birth`).
fn records_of(m: &Modality, records: &[Value], birth: Option<&str>) -> Vec<String> {
    records
        .iter()
        .filter(|r| {
            if m.procedure {
                r["resourceType"] == "Procedure" && r["status"] == "completed" && has_code(&r["code"], m.codes)
            } else {
                is_final(r) && has_code(&r["code"], m.codes)
            }
        })
        .filter_map(|r| {
            r["effectiveDateTime"]
                .as_str()
                .or_else(|| r["performedDateTime"].as_str())
                .or_else(|| r["performedPeriod"]["start"].as_str())
                .map(|d| d.chars().take(10).collect::<String>())
        })
        .filter(|d| m.from_age == 0 || birth.and_then(|b| years_between(b, d)).is_some_and(|a| a >= m.from_age))
        .collect()
}

/// Whether an element (an Observation or a component) has a value a [`Finding`] reads.
fn has_value(e: &Value) -> bool {
    e["valueQuantity"]["value"].is_number() || e["valueCodeableConcept"].is_object()
}

/// The element holding the latest value of `code` among final Observations: the
/// Observation itself when coded so, else its component of that code.
fn latest_value<'a>(code: &str, records: &'a [Value]) -> Option<&'a Value> {
    let mut latest: Option<(&str, &Value)> = None;
    for o in records.iter().filter(|o| is_final(o)) {
        let Some(when) = o["effectiveDateTime"].as_str() else { continue };
        let holder = if has_code(&o["code"], &[code]) && has_value(o) {
            Some(o)
        } else {
            o["component"].as_array().and_then(|cs| cs.iter().find(|c| has_code(&c["code"], &[code]) && has_value(c)))
        };
        if let Some(h) = holder
            && latest.is_none_or(|(w, _)| when > w)
        {
            latest = Some((when, h));
        }
    }
    latest.map(|(_, h)| h)
}

/// Whether the record shows what `f` asks.
fn shows(f: &Finding, records: &[Value]) -> bool {
    match latest_value(f.code, records) {
        None => f.when_unrecorded,
        Some(v) => match f.is {
            Is::AtLeast(min) => v["valueQuantity"]["value"].as_f64().is_some_and(|x| x >= min),
            Is::OneOf(codes) => has_code(&v["valueCodeableConcept"], codes),
        },
    }
}

/// Whether `ex` takes the patient out: one of its conditions (not refuted or entered in
/// error) or a completed procedure of its codes.
fn is_excluded(ex: &Excluded, conditions: &[Value], records: &[Value]) -> bool {
    let condition = conditions.iter().any(|c| {
        has_code(&c["code"], ex.conditions)
            && !matches!(c["verificationStatus"]["coding"][0]["code"].as_str(), Some("refuted" | "entered-in-error"))
    });
    condition
        || records.iter().any(|r| {
            r["resourceType"] == "Procedure" && r["status"] == "completed" && has_code(&r["code"], ex.procedures)
        })
}

/// Every LOINC code the rules read in Observations (for the searches that feed [`due`]).
pub fn loinc_codes() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RULES {
        match &r.done {
            Done::Observation(c) => out.extend(c.iter()),
            Done::AnyOf(ways) => out.extend(ways.iter().filter(|m| !m.procedure).flat_map(|m| m.codes.iter())),
            Done::Vaccine(..) => {}
        }
        out.extend(r.needs.iter().filter(|f| !f.snomed).map(|f| f.code));
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|c| seen.insert(*c));
    out
}

/// Every SNOMED CT code the rules read as an Observation's code (besides [`loinc_codes`]).
pub fn snomed_observation_codes() -> Vec<&'static str> {
    RULES.iter().flat_map(|r| r.needs.iter()).filter(|f| f.snomed).map(|f| f.code).collect()
}

/// Every SNOMED CT code the rules read in Procedures: ways of screening, and exclusions.
pub fn procedure_codes() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RULES {
        if let Done::AnyOf(ways) = &r.done {
            out.extend(ways.iter().filter(|m| m.procedure).flat_map(|m| m.codes.iter()));
        }
        out.extend(r.excluded_by.procedures.iter());
    }
    out
}

/// The preventive care due for a patient on `today` (`YYYY-MM-DD`): `patient` (its
/// birth date and gender), its active `conditions`, its `immunizations` and
/// `observations` — the Observations and Procedures of [`loinc_codes`],
/// [`snomed_observation_codes`] and [`procedure_codes`].
pub fn due(
    patient: &Value,
    today: &str,
    conditions: &[Value],
    immunizations: &[Value],
    observations: &[Value],
) -> Vec<Due> {
    let Some(now) = day_number(today) else { return Vec::new() };
    let birth = patient["birthDate"].as_str();
    let age = birth.and_then(|b| years_between(b, today));
    if patient["deceasedBoolean"] == true || patient.get("deceasedDateTime").is_some() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for r in RULES {
        let who = match &r.who {
            Who::Age { min, max } => age.is_some_and(|a| a >= *min && a < *max),
            Who::Condition(codes) => conditions.iter().any(|c| has_code(&c["code"], codes)),
            Who::Women { min, max } => patient["gender"] == "female" && age.is_some_and(|a| a >= *min && a < *max),
        };
        let applies = who
            && r.needs.iter().all(|f| shows(f, observations))
            && !is_excluded(&r.excluded_by, conditions, observations);
        if let Done::AnyOf(ways) = &r.done {
            // due unless one way is recent enough for its own interval
            let mut last: Option<String> = None;
            let mut recent = false;
            for m in ways.iter() {
                let dates = records_of(m, observations, birth);
                if let Some(d) = dates.iter().max() {
                    recent |= day_number(d).is_some_and(|n| now - n < m.every_days);
                    if last.as_deref().is_none_or(|l| d.as_str() > l) {
                        last = Some(d.clone());
                    }
                }
            }
            if applies && !recent {
                out.push(r.due(last));
            }
            continue;
        }
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
                .filter(|o| is_final(o) && has_code(&o["code"], loinc))
                .filter_map(|o| o["effectiveDateTime"].as_str().map(|d| d.chars().take(10).collect()))
                .collect(),
            Done::AnyOf(_) => Vec::new(),
        };
        dates.sort();
        let last = dates.last().cloned();
        let recent = match r.every_days {
            Some(days) => last.as_deref().and_then(day_number).is_some_and(|d| now - d < days),
            None => true,
        };
        let enough = dates.len() >= r.doses;
        if !(recent && enough) {
            out.push(r.due(last));
        }
    }
    // the childhood and adolescent series, dose by dose
    out.extend(
        patient["birthDate"].as_str().map(|b| crate::childhood::due(b, today, immunizations)).unwrap_or_default(),
    );
    out
}

/// Every preventive rule's id and title: [`RULES`], then the childhood series.
pub fn rule_titles() -> Vec<(&'static str, Cow<'static, str>)> {
    let rules = RULES.iter().map(|r| (r.id, Cow::Borrowed(r.title)));
    rules.chain(crate::childhood::SERIES.iter().map(|s| (s.id, Cow::Owned(s.title())))).collect()
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

    fn proc_(snomed: &str, date: &str) -> Value {
        json!({"resourceType": "Procedure", "status": "completed", "code": {"coding": [{"system": "http://snomed.info/sct", "code": snomed}]}, "performedDateTime": date})
    }

    #[test]
    fn screenings_count_any_of_their_ways_each_for_its_interval() {
        let today = "2026-12-07";
        let woman = json!({"birthDate": "1970-05-05", "gender": "female"});
        let all_done = |extra: Vec<Value>| {
            let mut r = vec![
                obs("85354-9", "2026-06-01"),
                obs("2093-3", "2023-01-01"),
                obs("44261-6", "2026-03-01"),
                obs("33717-0", "2025-01-01"),
            ];
            r.extend(extra);
            r
        };
        let vaccines =
            [imm("140", "2026-10-01"), imm("115", "2020-05-01"), imm("187", "2021-01-01"), imm("187", "2021-04-01")];
        let d = |records: Vec<Value>| {
            ids(&due(&woman, today, &[], &vaccines, &records)).iter().map(|s| s.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(d(all_done(vec![])), ["colorectal-45-75", "mammography-40-74"]);
        // a colonoscopy 6 years ago counts; a FIT 2 years ago does not; a mammogram last year counts
        assert_eq!(
            d(all_done(vec![proc_("73761001", "2020-12-01"), proc_("24623002", "2026-01-10")])),
            Vec::<String>::new()
        );
        assert_eq!(
            d(all_done(vec![obs("29771-3", "2024-11-01"), proc_("71651007", "2026-01-10")])),
            ["colorectal-45-75"]
        );
        assert_eq!(
            d(all_done(vec![obs("29771-3", "2026-11-01"), proc_("71651007", "2023-01-10")])),
            ["mammography-40-74"]
        );
        // the last one done is reported, whichever way
        let found = due(
            &woman,
            today,
            &[],
            &vaccines,
            &all_done(vec![obs("29771-3", "2024-11-01"), proc_("73761001", "2012-01-01")]),
        );
        assert_eq!(
            found.iter().find(|x| x.rule == "colorectal-45-75").and_then(|x| x.last.clone()).as_deref(),
            Some("2024-11-01")
        );
        // a procedure not completed does not count; men are not asked for a mammogram
        let planned = json!({"resourceType": "Procedure", "status": "preparation", "code": {"coding": [{"code": "73761001"}]}, "performedDateTime": "2026-01-01"});
        assert!(d(all_done(vec![planned])).contains(&"colorectal-45-75".to_string()));
        let man = json!({"birthDate": "1970-05-05", "gender": "male"});
        assert!(!ids(&due(&man, today, &[], &vaccines, &all_done(vec![]))).contains(&"mammography-40-74"));
        // the codes the searches need
        assert!(loinc_codes().contains(&"29771-3") && loinc_codes().contains(&"44261-6"));
        assert!(procedure_codes().contains(&"73761001") && !procedure_codes().contains(&"29771-3"));
    }

    fn ids(d: &[Due]) -> Vec<&str> {
        d.iter().map(|d| d.rule).collect()
    }

    #[test]
    fn what_is_due_follows_age_conditions_and_dates() {
        let today = "2026-12-07";
        let adult = json!({"birthDate": "1980-02-03"});
        // nothing done: flu, Td, blood pressure, lipids, colorectal, depression
        assert_eq!(
            ids(&due(&adult, today, &[], &[], &[])),
            [
                "influenza-vaccine",
                "td-booster",
                "blood-pressure-40",
                "lipids-40-75",
                "colorectal-45-75",
                "depression-12"
            ]
        );
        // done recently enough: nothing
        let done = [imm("140", "2026-10-01"), imm("115", "2020-05-01")];
        let measured = [
            obs("85354-9", "2026-06-01"),
            obs("2093-3", "2023-01-01"),
            obs("44261-6", "2026-03-01"),
            proc_("73761001", "2019-04-01"),
        ];
        assert!(due(&adult, today, &[], &done, &measured).is_empty());
        // a flu shot from last year is not this year's
        let old = [imm("140", "2025-10-01"), imm("115", "2020-05-01")];
        assert_eq!(ids(&due(&adult, today, &[], &old, &measured)), ["influenza-vaccine"]);
        assert_eq!(due(&adult, today, &[], &old, &measured)[0].last.as_deref(), Some("2025-10-01"));
        // diabetes: an HbA1c every 6 months
        let dm = [json!({"code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}})];
        assert!(ids(&due(&adult, today, &dm, &done, &measured)).contains(&"hba1c-diabetes"));
        let a1c = [
            obs("85354-9", "2026-06-01"),
            obs("2093-3", "2023-01-01"),
            obs("4548-4", "2026-08-01"),
            obs("44261-6", "2026-03-01"),
            proc_("73761001", "2019-04-01"),
        ];
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
        // a child with no vaccine recorded: flu and the childhood series still given at 6;
        // from 11, the HPV series and the adolescent vaccines; from 12, the mood questionnaire
        let series = ["child-hepb", "child-dtap", "child-ipv", "child-mmr", "child-varicella", "child-hepa"];
        let child = ids(&due(&json!({"birthDate": "2020-01-01"}), today, &[], &[], &[])).join(" ");
        assert_eq!(child, format!("influenza-vaccine {}", series.join(" ")));
        let teen = json!({"birthDate": "2013-01-01"});
        assert_eq!(
            ids(&due(&teen, today, &[], &[], &[])),
            [
                "influenza-vaccine",
                "hpv-11-26",
                "depression-12",
                "child-hepb",
                "child-ipv",
                "child-mmr",
                "child-varicella",
                "child-hepa",
                "adolescent-tdap",
                "adolescent-menacwy"
            ]
        );
        // two HPV doses complete the series; one does not; at 27 it is no longer offered
        let one = [imm("165", "2025-01-10")];
        assert!(ids(&due(&teen, today, &[], &one, &[])).contains(&"hpv-11-26"));
        let two = [imm("165", "2025-01-10"), imm("62", "2025-08-10")];
        assert!(!ids(&due(&teen, today, &[], &two, &[])).contains(&"hpv-11-26"));
        assert!(ids(&due(&json!({"birthDate": "2000-12-07"}), today, &[], &[], &[])).contains(&"hpv-11-26"), "26");
        assert!(!ids(&due(&json!({"birthDate": "1999-12-07"}), today, &[], &[], &[])).contains(&"hpv-11-26"), "27");
        // osteoporosis: women from 65, a bone density scan once (by procedure or T-score)
        let at = |birth: &str, gender: &str, records: &[Value]| {
            ids(&due(&json!({"birthDate": birth, "gender": gender}), today, &[], &[], records))
                .contains(&"osteoporosis-65")
        };
        assert!(at("1961-12-07", "female", &[]) && !at("1961-12-08", "female", &[]) && !at("1950-01-01", "male", &[]));
        assert!(!at("1950-01-01", "female", &[proc_("312681000", "2012-03-01")]));
        assert!(!at("1950-01-01", "female", &[obs("38265-5", "2019-03-01")]));
        assert!(loinc_codes().contains(&"38265-5") && procedure_codes().contains(&"312681000"));
        assert!(due(&json!({"birthDate": "1950-01-01", "deceasedBoolean": true}), today, &[], &[], &[]).is_empty());
    }

    fn valued(code: &str, system: &str, date: &str, value: Value) -> Value {
        let mut o = json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": system, "code": code}]}, "effectiveDateTime": date});
        if value.is_number() {
            o["valueQuantity"] = json!({"value": value});
        } else {
            o["valueCodeableConcept"] = json!({"coding": [{"system": "http://snomed.info/sct", "code": value}]});
        }
        o
    }

    fn bmi(v: f64, date: &str) -> Value {
        valued("39156-5", "http://loinc.org", date, json!(v))
    }

    fn smoking(status: &str, date: &str) -> Value {
        valued("72166-2", "http://loinc.org", date, json!(status))
    }

    fn condition(system: &str, code: &str) -> Value {
        json!({"resourceType": "Condition", "code": {"coding": [{"system": system, "code": code}]}})
    }

    /// Whether `rule` is due for someone born on `birth` (of `gender`) on 2026-12-07.
    fn is_due(rule: &str, birth: &str, gender: &str, conditions: &[Value], records: &[Value]) -> bool {
        let p = json!({"birthDate": birth, "gender": gender});
        due(&p, "2026-12-07", conditions, &[], records).iter().any(|d| d.rule == rule)
    }

    #[test]
    fn diabetes_screening_is_for_35_to_70_with_a_bmi_of_25_or_more() {
        let d = |birth: &str, conditions: &[Value], records: &[Value]| {
            is_due("diabetes-35-70", birth, "male", conditions, records)
        };
        let heavy = [bmi(25.0, "2026-01-01")];
        // ages: 34 no, 35 yes, 70 yes, 71 no (birthdays on the day)
        assert!(!d("1991-12-08", &[], &heavy) && d("1991-12-07", &[], &heavy));
        assert!(d("1955-12-08", &[], &heavy) && !d("1955-12-07", &[], &heavy));
        // the latest BMI decides: 24.9 no, 25 yes; none recorded, no
        let adult = "1980-02-03";
        assert!(!d(adult, &[], &[bmi(24.9, "2026-01-01")]) && d(adult, &[], &heavy) && !d(adult, &[], &[]));
        assert!(!d(adult, &[], &[bmi(31.0, "2020-01-01"), bmi(24.0, "2026-01-01")]));
        assert!(d(adult, &[], &[bmi(24.0, "2020-01-01"), bmi(27.5, "2026-01-01")]));
        // a BMI not final does not count
        let mut prelim = bmi(30.0, "2026-01-01");
        prelim["status"] = json!("preliminary");
        assert!(!d(adult, &[], &[prelim]));
        // done: an HbA1c or a fasting plasma glucose within 3 years (1095 days)
        for code in ["4548-4", "17856-6", "1558-6"] {
            assert!(!d(adult, &[], &[bmi(25.0, "2026-01-01"), obs(code, "2023-12-09")]), "{code} 1094 days ago");
            assert!(d(adult, &[], &[bmi(25.0, "2026-01-01"), obs(code, "2023-12-08")]), "{code} 1095 days ago");
        }
        assert!(d(adult, &[], &[bmi(25.0, "2026-01-01"), obs("2345-7", "2026-01-01")]), "a random glucose");
        // not with diabetes already (SNOMED CT, or ICD-10-CM by prefix), unless refuted
        let dm = condition("http://snomed.info/sct", "44054006");
        assert!(!d(adult, std::slice::from_ref(&dm), &heavy));
        assert!(!d(adult, &[condition("http://hl7.org/fhir/sid/icd-10-cm", "E11.65")], &heavy));
        let mut refuted = dm.clone();
        refuted["verificationStatus"] = json!({"coding": [{"code": "refuted"}]});
        assert!(d(adult, &[refuted], &heavy));
        let p = json!({"birthDate": adult});
        let rules = ids(&due(&p, "2026-12-07", &[dm], &[], &heavy)).join(" ");
        assert!(rules.contains("hba1c-diabetes") && !rules.contains("diabetes-35-70"), "{rules}");
        // the searches read BMIs, HbA1c and fasting glucose
        assert!(["39156-5", "4548-4", "1558-6"].iter().all(|c| loinc_codes().contains(c)));
        assert_eq!(loinc_codes().iter().filter(|c| **c == "4548-4").count(), 1, "each code once");
    }

    #[test]
    fn cervical_screening_counts_cytology_from_21_and_hpv_tests_from_30() {
        let d = |birth: &str, gender: &str, conditions: &[Value], records: &[Value]| {
            is_due("cervical-21-65", birth, gender, conditions, records)
        };
        // ages: 20 no, 21 yes, 64 yes, 65 no; men no
        assert!(!d("2005-12-08", "female", &[], &[]) && d("2005-12-07", "female", &[], &[]));
        assert!(d("1961-12-08", "female", &[], &[]) && !d("1961-12-07", "female", &[], &[]));
        assert!(!d("1980-02-03", "male", &[], &[]) && !d("1980-02-03", "", &[], &[]));
        // cytology counts 3 years (1095 days), at any age from 21
        let at_29 = "1997-06-01";
        assert!(!d(at_29, "female", &[], &[obs("47528-5", "2023-12-09")]));
        assert!(d(at_29, "female", &[], &[obs("47528-5", "2023-12-08")]));
        // a Pap test before 21 does not count
        assert!(d("2005-06-01", "female", &[], &[obs("33717-0", "2025-01-01")]));
        assert!(!d("2005-06-01", "female", &[], &[obs("33717-0", "2026-07-01")]));
        // an HPV test counts 5 years (1826 days) when done at 30 or older
        let at_36 = "1990-01-01";
        assert!(!d(at_36, "female", &[], &[obs("30167-1", "2021-12-08")]), "HPV at 31, 1825 days ago");
        assert!(d(at_36, "female", &[], &[obs("30167-1", "2021-12-07")]), "HPV at 31, 1826 days ago");
        // ... and not when done before 30, even now that she is past 30
        assert!(d("1996-06-01", "female", &[], &[obs("21440-3", "2026-01-01")]), "HPV at 29");
        assert!(!d("1995-06-01", "female", &[], &[obs("21440-3", "2026-01-01")]), "HPV at 30");
        let young = due(
            &json!({"birthDate": "2000-01-01", "gender": "female"}),
            "2026-12-07",
            &[],
            &[],
            &[obs("21440-3", "2026-01-01")],
        );
        assert!(
            young.iter().any(|x| x.rule == "cervical-21-65" && x.last.is_none()),
            "an HPV test at 26 is not screening"
        );
        // cotesting at 30+: counts for the HPV test's five years
        assert!(!d(at_36, "female", &[], &[obs("30167-1", "2022-06-01"), obs("47528-5", "2022-06-01")]));
        // no cervix: a hysterectomy (completed) or an absent cervix on the problem list
        let hyst = proc_("116140006", "2015-03-01");
        assert!(!d(at_36, "female", &[], std::slice::from_ref(&hyst)));
        let mut planned = hyst.clone();
        planned["status"] = json!("preparation");
        assert!(d(at_36, "female", &[], &[planned]));
        assert!(!d(at_36, "female", &[condition("http://hl7.org/fhir/sid/icd-10-cm", "Z90.710")], &[]));
        assert!(!d(at_36, "female", &[condition("http://snomed.info/sct", "248911005")], &[]));
        assert!(d(at_36, "female", &[condition("http://snomed.info/sct", "44054006")], &[]));
        // the searches read Pap and HPV tests, and hysterectomies
        assert!(loinc_codes().contains(&"33717-0") && loinc_codes().contains(&"30167-1"));
        assert!(procedure_codes().contains(&"116140006") && procedure_codes().contains(&"16334891000119106"));
    }

    #[test]
    fn lung_screening_is_for_50_to_80_who_smoke_or_smoked() {
        let d = |birth: &str, records: &[Value]| is_due("lung-cancer-50-80", birth, "male", &[], records);
        let daily = smoking("449868002", "2026-01-01");
        let smoker = std::slice::from_ref(&daily);
        // ages: 49 no, 50 yes, 80 yes, 81 no
        assert!(!d("1976-12-08", smoker) && d("1976-12-07", smoker));
        assert!(d("1945-12-08", smoker) && !d("1945-12-07", smoker));
        // the latest smoking status: a current or former smoker, not a never smoker, not unrecorded
        let adult = "1960-05-05";
        for code in ["449868002", "428041000124106", "77176002", "8517006"] {
            assert!(d(adult, &[smoking(code, "2026-01-01")]), "{code}");
        }
        assert!(!d(adult, &[smoking("266919005", "2026-01-01")]) && !d(adult, &[]));
        assert!(!d(adult, &[smoking("449868002", "2019-01-01"), smoking("266919005", "2026-01-01")]));
        // pack-years recorded: below 20 no, 20 yes (an Observation of its own, or a component)
        let years = |v: f64| valued("401201003", "http://snomed.info/sct", "2026-02-01", json!(v));
        assert!(!d(adult, &[daily.clone(), years(19.0)]) && d(adult, &[daily.clone(), years(20.0)]));
        let mut with = daily.clone();
        with["component"] = json!([{"code": {"coding": [{"system": "http://snomed.info/sct", "code": "401201003"}]}, "valueQuantity": {"value": 19}}]);
        assert!(!d(adult, &[with.clone()]));
        with["component"][0]["valueQuantity"]["value"] = json!(35);
        assert!(d(adult, &[with]));
        // done: a low-dose CT within a year; a high-resolution CT does not count
        assert!(!d(adult, &[daily.clone(), proc_("16334891000119106", "2025-12-08")]));
        assert!(d(adult, &[daily.clone(), proc_("16334891000119106", "2025-12-07")]));
        assert!(d(adult, &[daily.clone(), proc_("16335031000119103", "2026-11-01")]));
        let found = due(
            &json!({"birthDate": adult}),
            "2026-12-07",
            &[],
            &[],
            &[daily, proc_("16334891000119106", "2024-03-01")],
        );
        let lung = found.iter().find(|x| x.rule == "lung-cancer-50-80").unwrap();
        assert_eq!(lung.last.as_deref(), Some("2024-03-01"));
        assert!(lung.title.contains("20 pack-years") && lung.action.contains("15 years"), "{lung:?}");
        // the searches read smoking status and pack-years
        assert!(loinc_codes().contains(&"72166-2") && snomed_observation_codes() == ["401201003"]);
    }

    #[test]
    fn every_rule_has_its_words_and_a_link() {
        let mut seen = std::collections::HashSet::new();
        for r in RULES {
            assert!(seen.insert(r.id), "{} twice", r.id);
            assert!(r.title.chars().count() < 140, "{}: a card's summary is under 140 characters", r.id);
            assert!(!r.for_patient.is_empty() && !r.action.is_empty() && !r.source.is_empty(), "{}", r.id);
            assert!(r.link.starts_with("https://"), "{}", r.id);
            // a review date, as a day
            assert!(day_number(r.reviewed).is_some() && r.reviewed.len() == 10, "{}", r.id);
        }
    }
}
