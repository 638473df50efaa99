//! Quality measures over a panel of patients and a measurement period, as data: for each
//! measure, who is in its initial population (and so its denominator), who is excluded,
//! who meets it (the numerator), and why — so the clinician sees the rate and the
//! patients to act on, and `Measure/[id]/$evaluate-measure` answers a MeasureReport.
//!
//! Modelled on CMS electronic clinical quality measures (eCQMs), simplified to what the
//! chart holds; each [`Measure`] says in `not_applied` what of the real measure is left
//! out. Common to all: the real measures' qualifying visit during the period is not
//! required (the panel is the patients the caller may see), and hospice, palliative
//! care and frailty exclusions are not applied (the chart does not record them).
//! Ages are whole years at the period's end unless a measure says otherwise; dates are
//! compared by day, and the period `[start, end]` includes both days.

use std::collections::HashMap;

use serde_json::Value;

use crate::childhood::{self, ROTAVIRUS, ROTAVIRUS_TWO_DOSE};
use crate::drugs::{self, Class};
use crate::preventive::{FLU, day_number, has_code, years_between};

/// A measurement period: `start` and `end` (`YYYY-MM-DD`), both days included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub start: String,
    pub end: String,
}

impl Period {
    /// The period from `start` to `end` (FHIR dates; a year or a month is widened to its
    /// first or last day, as `$evaluate-measure` reads them); `None` when either is not a
    /// date or `end` is before `start`.
    pub fn new(start: &str, end: &str) -> Option<Period> {
        let start = widen(start, false)?;
        let end = widen(end, true)?;
        (day_number(&start)? <= day_number(&end)?).then_some(Period { start, end })
    }

    /// The twelve months ending on `end` (`2026-06-30` → `2025-07-01`..`2026-06-30`).
    pub fn year_ending(end: &str) -> Option<Period> {
        let end = widen(end, true)?;
        let start = add_days(&months_before(&end, 12)?, 1)?;
        Some(Period { start, end })
    }

    /// Whether the day of `date` (a FHIR date or dateTime) falls in the period.
    pub fn contains(&self, date: &str) -> bool {
        let d = day(date);
        d.as_str() >= self.start.as_str() && d.as_str() <= self.end.as_str()
    }
}

/// A FHIR date (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`) as a day: the first day of a year or
/// month, or with `last` its last.
fn widen(s: &str, last: bool) -> Option<String> {
    let s = s.trim();
    let valid_year = |y: &str| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit());
    let out = match s.len() {
        4 if valid_year(s) => {
            if last {
                format!("{s}-12-31")
            } else {
                format!("{s}-01-01")
            }
        }
        7 => {
            let (y, m) = (s.get(0..4)?, s.get(5..7)?.parse::<u32>().ok()?);
            if !valid_year(y) || s.as_bytes()[4] != b'-' || !(1..=12).contains(&m) {
                return None;
            }
            if last { format!("{y}-{m:02}-{:02}", month_days(y.parse().ok()?, m)) } else { format!("{y}-{m:02}-01") }
        }
        10 => {
            let (y, m, d) = (s.get(0..4)?, s.get(5..7)?.parse::<u32>().ok()?, s.get(8..10)?.parse::<u32>().ok()?);
            let b = s.as_bytes();
            if !valid_year(y) || b[4] != b'-' || b[7] != b'-' || !(1..=12).contains(&m) {
                return None;
            }
            if d == 0 || d > month_days(y.parse().ok()?, m) {
                return None;
            }
            s.to_string()
        }
        _ => return None,
    };
    Some(out)
}

fn month_days(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The day `n` months before `date` (`YYYY-MM-DD`), the day of the month clamped to the
/// month's last (31 May less 3 months is 28 or 29 February).
pub fn months_before(date: &str, n: u32) -> Option<String> {
    shift_months(date, -i64::from(n))
}

/// The day `n` months after `date` (`n` may be negative), clamped as [`months_before`].
pub(crate) fn shift_months(date: &str, n: i64) -> Option<String> {
    let y: i64 = date.get(0..4)?.parse().ok()?;
    let m: i64 = date.get(5..7)?.parse().ok()?;
    let d: u32 = date.get(8..10)?.parse().ok()?;
    let total = y * 12 + (m - 1) + n;
    let (y, m) = (total.div_euclid(12), u32::try_from(total.rem_euclid(12) + 1).ok()?);
    if !(0..=9999).contains(&y) {
        return None;
    }
    Some(format!("{y:04}-{m:02}-{:02}", d.min(month_days(y, m))))
}

/// The day `n` days after `date` (`YYYY-MM-DD`; `n` may be negative).
pub fn add_days(date: &str, n: i64) -> Option<String> {
    let z = day_number(date)? + n + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (0..=9999).contains(&y).then(|| format!("{y:04}-{m:02}-{d:02}"))
}

/// The first 10 characters of a FHIR date or dateTime.
fn day(s: &str) -> String {
    s.chars().take(10).collect()
}

/// How a measure is scored: a proportion whose rate is better higher, or (an inverse
/// measure, such as poor control) lower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Improvement {
    Increase,
    Decrease,
}

/// A measure: what it counts, where it comes from, and what of the real measure is
/// not applied.
#[derive(Debug)]
pub struct Measure {
    pub id: &'static str,
    pub title: &'static str,
    /// Who is counted at all (the initial population; the denominator is the same).
    pub initial_population: &'static str,
    /// Who is taken out of the denominator.
    pub exclusions: &'static str,
    /// What meeting it means.
    pub numerator: &'static str,
    pub improvement: Improvement,
    pub source: &'static str,
    /// What of the real measure is not applied, in words.
    pub not_applied: &'static str,
}

impl Measure {
    /// `true` when a lower rate is better (the numerator is the gap).
    pub fn inverse(&self) -> bool {
        self.improvement == Improvement::Decrease
    }

    /// The canonical URL the measure is named by (a MeasureReport's `measure`, the
    /// Measure resource's `url`).
    pub fn canonical(&self) -> String {
        format!("urn:hale:measure:{}", self.id)
    }

    /// The measure as a FHIR R4 Measure resource (id the measure's id): a proportion
    /// with its improvement notation and one group of the populations Hale counts, each
    /// described in words. The logic is Hale's own code, not an expression language:
    /// each population's `criteria` names it (`text/x-hale-measure`, the measure's id
    /// and the population), and `description` and `usage` say what it counts and what of
    /// the real measure it leaves out.
    pub fn resource(&self) -> Value {
        let name: String = self
            .id
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
            })
            .collect();
        let population = |code: &str, display: &str, words: &str| {
            serde_json::json!({
                "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-population", "code": code, "display": display}]},
                "description": words,
                "criteria": {"language": "text/x-hale-measure", "expression": format!("{}#{code}", self.id)},
            })
        };
        serde_json::json!({
            "resourceType": "Measure",
            "id": self.id,
            "url": self.canonical(),
            "name": name,
            "title": self.title,
            "status": "active",
            "experimental": false,
            "publisher": "Hale",
            "description": format!(
                "{}. Counted: {}. Excluded: {}. Met: {}.",
                self.title, self.initial_population, self.exclusions, self.numerator
            ),
            "usage": format!("Evaluated by Hale's built-in logic (Measure/{}/$evaluate-measure). Not applied: {}.", self.id, self.not_applied),
            "relatedArtifact": [{"type": "derived-from", "display": self.source}],
            "scoring": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring", "code": "proportion", "display": "Proportion"}]},
            "improvementNotation": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation",
                "code": if self.inverse() { "decrease" } else { "increase" },
                "display": if self.inverse() { "Decreased score indicates improvement" } else { "Increased score indicates improvement" },
            }]},
            "group": [{
                "id": self.id,
                "population": [
                    population("initial-population", "Initial Population", self.initial_population),
                    population("denominator", "Denominator", self.initial_population),
                    population("denominator-exclusion", "Denominator Exclusion", self.exclusions),
                    population("numerator", "Numerator", self.numerator),
                ],
            }],
        })
    }
}

/// The measure with this id.
pub fn measure(id: &str) -> Option<&'static Measure> {
    MEASURES.iter().find(|m| m.id == id)
}

pub static MEASURES: &[Measure] = &[
    Measure {
        id: "cms122-hba1c-poor-control",
        title: "Diabetes: HbA1c poor control (> 9%)",
        initial_population: "Patients 18 to 75 at the period's end with diabetes during the period",
        exclusions: "None that the chart records",
        numerator: "The latest HbA1c of the period is above 9%, or there is none",
        improvement: Improvement::Decrease,
        source: "CMS122 (eCQM), Diabetes: Hemoglobin A1c (HbA1c) Poor Control (> 9%)",
        not_applied: "The qualifying visit; hospice, palliative care, and frailty with advanced illness (66 and older) as exclusions",
    },
    Measure {
        id: "cms165-blood-pressure-control",
        title: "Controlling high blood pressure",
        initial_population: "Patients 18 to 85 at the period's end with hypertension before or in the first six months of the period",
        exclusions: "Pregnancy, end-stage renal disease, dialysis or a kidney transplant",
        numerator: "The latest blood pressure of the period is below 140/90",
        improvement: Improvement::Increase,
        source: "CMS165 (eCQM), Controlling High Blood Pressure",
        not_applied: "The qualifying visit; readings taken on the day of a procedure or in hospital are not set aside; hospice, palliative care and frailty exclusions",
    },
    Measure {
        id: "cms147-influenza-immunization",
        title: "Influenza immunization",
        initial_population: "Patients 6 months and older at the period's start",
        exclusions: "None that the chart records",
        numerator: "An influenza vaccine given in the period",
        improvement: Improvement::Increase,
        source: "CMS147 (eCQM), Preventive Care and Screening: Influenza Immunization",
        not_applied: "The visit during the influenza season (October to March) and its window for the vaccine; the vaccine counts anywhere in the period; allergy and declined-vaccine exceptions",
    },
    Measure {
        id: "cms125-breast-cancer-screening",
        title: "Breast cancer screening",
        initial_population: "Women 52 to 74 at the period's end",
        exclusions: "A bilateral mastectomy (or its history)",
        numerator: "A mammogram in the 27 months up to the period's end",
        improvement: Improvement::Increase,
        source: "CMS125 (eCQM), Breast Cancer Screening",
        not_applied: "The qualifying visit; two unilateral mastectomies as an exclusion; hospice, palliative care and frailty exclusions",
    },
    Measure {
        id: "cms130-colorectal-cancer-screening",
        title: "Colorectal cancer screening",
        initial_population: "Patients 45 to 75 at the period's end",
        exclusions: "Colorectal cancer, or a total colectomy",
        numerator: "A colonoscopy in the period or the 9 years before, a FIT in the period, a FIT-DNA in the period or the 2 years before, or a CT colonography or flexible sigmoidoscopy in the period or the 4 years before",
        improvement: Improvement::Increase,
        source: "CMS130 (eCQM), Colorectal Cancer Screening",
        not_applied: "The qualifying visit; hospice, palliative care and frailty exclusions",
    },
    Measure {
        id: "cms117-childhood-immunization",
        title: "Childhood immunization status",
        initial_population: "Children who turn 2 in the period",
        exclusions: "Severe combined immunodeficiency or HIV",
        numerator: "By their 2nd birthday: 4 DTaP, 3 IPV, 1 MMR, 3 HiB, 3 hepatitis B, 1 varicella, 4 pneumococcal conjugate, 1 hepatitis A, 2 or 3 rotavirus (2 of the two-dose vaccine) and 2 influenza",
        improvement: Improvement::Increase,
        source: "CMS117 (eCQM), Childhood Immunization Status",
        not_applied: "The qualifying visit; a history of the illness (measles, chickenpox, hepatitis) in place of its vaccine; anaphylaxis and other exclusions by vaccine; hospice",
    },
    Measure {
        id: "cms347-statin-therapy",
        title: "Statin therapy for cardiovascular disease",
        initial_population: "Patients with clinical atherosclerotic cardiovascular disease (a diagnosis, or a bypass or coronary intervention) before the period's end",
        exclusions: "Pregnancy, end-stage renal disease, cirrhosis or rhabdomyolysis",
        numerator: "A statin prescribed in the period, or one active during it",
        improvement: Improvement::Increase,
        source: "CMS347 (eCQM), Statin Therapy for the Prevention and Treatment of Cardiovascular Disease (population 1)",
        not_applied: "Populations 2 and 3 (LDL of 190 or more; diabetes from 40 to 75); statin allergy and intolerance exceptions; a statin ordered by a Medication reference or not coded with a statin's RxNorm code is not found",
    },
];

// ---------------------------------------------------------------- value sets

const DIABETES: &[&str] = &["44054006", "73211009", "46635009", "E10", "E11"];
const HYPERTENSION: &[&str] = &["38341003", "59621000", "I10"];
const PREGNANCY: &[&str] = &["77386006", "Z33", "O"];
const ESRD: &[&str] = &["46177005", "N18.6", "Z99.2", "Z94.0"];
const KIDNEY_PROCEDURES: &[&str] = &["70536003", "108241001", "265764009"];
const HBA1C: &[&str] = &["4548-4", "17856-6"];
const BLOOD_PRESSURE: &[&str] = &["85354-9", "55284-4"];
const MAMMOGRAPHY: &[&str] = &["71651007", "24623002", "43204002"];
const MASTECTOMY: &[&str] = &["27865001", "428529004", "Z90.13"];
const COLONOSCOPY: &[&str] = &["73761001"];
const SIGMOIDOSCOPY: &[&str] = &["44441009"];
const CT_COLONOGRAPHY: &[&str] = &["418714002", "60515-4"];
const FIT: &[&str] = &["29771-3", "57905-2", "56490-6", "56491-4", "2335-8"];
const FIT_DNA: &[&str] = &["77353-1", "77354-9"];
const COLORECTAL_CANCER: &[&str] = &["363406005", "93761005", "C18", "C19", "C20", "C21.2", "C21.8", "C78.5"];
const COLECTOMY: &[&str] = &["26390003", "456004"];
const IMMUNODEFICIENCY: &[&str] = &["31323000", "86406008", "D81", "B20", "Z21"];
const ASCVD: &[&str] = &[
    "22298006",
    "399211009",
    "53741008",
    "414545008",
    "194828000",
    "230690007",
    "266257000",
    "399957001",
    "I20",
    "I21",
    "I22",
    "I24",
    "I25",
    "I63",
    "G45",
    "I70.2",
];
const ASCVD_PROCEDURES: &[&str] = &["232717009", "415070008", "36969009"];
const STATIN_EXCLUSIONS: &[&str] =
    &["77386006", "Z33", "O", "46177005", "N18.6", "19943007", "K74.6", "240131006", "M62.82"];
/// Statin ingredients (RxNorm IN) beyond those of Hale's drug table: fluvastatin,
/// pitavastatin.
const OTHER_STATINS: &[(&str, &str)] = &[("41127", "fluvastatin"), ("861634", "pitavastatin")];

/// One antigen of the childhood series: its name, the doses needed, the CVX codes that
/// give it, and the youngest age (days) a dose counts at.
struct Antigen {
    name: &'static str,
    doses: usize,
    cvx: &'static [&'static str],
    min_days: i64,
}

const SERIES: &[Antigen] = &[
    Antigen { name: "DTaP", doses: 4, cvx: childhood::DTAP, min_days: 42 },
    Antigen { name: "IPV", doses: 3, cvx: childhood::IPV, min_days: 42 },
    Antigen { name: "MMR", doses: 1, cvx: childhood::MMR, min_days: 365 },
    Antigen { name: "HiB", doses: 3, cvx: childhood::HIB, min_days: 42 },
    Antigen { name: "hepatitis B", doses: 3, cvx: childhood::HEPB, min_days: 0 },
    Antigen { name: "varicella", doses: 1, cvx: childhood::VARICELLA, min_days: 365 },
    Antigen { name: "pneumococcal conjugate", doses: 4, cvx: childhood::PCV, min_days: 42 },
    Antigen { name: "hepatitis A", doses: 1, cvx: childhood::HEPA, min_days: 365 },
    Antigen { name: "influenza", doses: 2, cvx: FLU, min_days: 180 },
];
// ---------------------------------------------------------------- what is read

/// One patient's records, as read through the gate (FHIR JSON): every Condition (of any
/// clinical status: a measure reads when it applied), the Observations, Procedures,
/// Immunizations and MedicationRequests of the codes [`queries`] names.
#[derive(Debug, Default, Clone)]
pub struct Record<'a> {
    pub conditions: Vec<&'a Value>,
    pub observations: Vec<&'a Value>,
    pub procedures: Vec<&'a Value>,
    pub immunizations: Vec<&'a Value>,
    pub medications: Vec<&'a Value>,
}

/// The records of `resources` grouped by the patient each is about (`subject`, or
/// `patient` for an Immunization), keyed by the patient's id.
pub fn by_patient(resources: &[Value]) -> HashMap<String, Record<'_>> {
    let mut out: HashMap<String, Record<'_>> = HashMap::new();
    for r in resources {
        let field = if r["resourceType"] == "Immunization" { "patient" } else { "subject" };
        let Some(id) = r[field]["reference"].as_str().and_then(|x| x.strip_prefix("Patient/")) else { continue };
        let rec = out.entry(id.to_string()).or_default();
        match r["resourceType"].as_str() {
            Some("Condition") => rec.conditions.push(r),
            Some("Observation") => rec.observations.push(r),
            Some("Procedure") => rec.procedures.push(r),
            Some("Immunization") => rec.immunizations.push(r),
            Some("MedicationRequest") => rec.medications.push(r),
            _ => {}
        }
    }
    out
}

/// A search the measures need: a resource type and its search parameters (the caller
/// adds its own, such as `patient=` for a panel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub resource_type: &'static str,
    pub params: Vec<(&'static str, String)>,
}

const SNOMED: &str = "http://snomed.info/sct";
const LOINC: &str = "http://loinc.org";
const CVX: &str = "http://hl7.org/fhir/sid/cvx";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

/// Codes of one system, as a search parameter value (`system|a,system|b`); codes that
/// are ICD-10-CM prefixes are left out (a token search cannot match a prefix).
fn tokens(system: &str, codes: &[&str]) -> Vec<String> {
    codes
        .iter()
        .filter(|c| !c.starts_with(|ch: char| ch.is_ascii_uppercase()))
        .map(|c| format!("{system}|{c}"))
        .collect()
}

/// Every statin code Hale searches MedicationRequests for: the statin products and
/// ingredients of the drug table, and the other statin ingredients.
pub fn statin_codes() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for d in drugs::DRUGS {
        if d.ingredients.iter().any(|i| i.classes.contains(&Class::Statin)) {
            out.push(d.rxcui);
        }
    }
    for i in drugs::INGREDIENTS {
        if i.classes.contains(&Class::Statin) {
            out.push(i.rxcui);
        }
    }
    out.extend(OTHER_STATINS.iter().map(|s| s.0));
    out.sort_unstable();
    out.dedup();
    out
}

/// The searches `measures` need to be evaluated over periods that start no earlier than
/// `earliest_start`: Conditions whole (their codes include ICD-10-CM prefixes), and of
/// the other types only the codes the measures read, from the earliest day any of them
/// looks back to. Each type is searched once.
pub fn queries(measures: &[&Measure], earliest_start: &str) -> Vec<Query> {
    let (mut conditions, mut obs, mut procs, mut imms, mut meds) = (false, vec![], vec![], vec![], false);
    let mut obs_since: Option<String> = None;
    let mut imm_since: Option<String> = None;
    let earlier = |a: &mut Option<String>, b: Option<String>| {
        if let Some(b) = b
            && a.as_deref().is_none_or(|x| b.as_str() < x)
        {
            *a = Some(b);
        }
    };
    for m in measures {
        match m.id {
            "cms122-hba1c-poor-control" => {
                conditions = true;
                obs.extend(tokens(LOINC, HBA1C));
                earlier(&mut obs_since, Some(earliest_start.to_string()));
            }
            "cms165-blood-pressure-control" => {
                conditions = true;
                obs.extend(tokens(LOINC, BLOOD_PRESSURE));
                earlier(&mut obs_since, Some(earliest_start.to_string()));
                procs.extend(tokens(SNOMED, KIDNEY_PROCEDURES));
            }
            "cms147-influenza-immunization" => {
                imms.extend(tokens(CVX, FLU));
                earlier(&mut imm_since, Some(earliest_start.to_string()));
            }
            "cms125-breast-cancer-screening" => {
                conditions = true;
                procs.extend(tokens(SNOMED, MAMMOGRAPHY));
                procs.extend(tokens(SNOMED, MASTECTOMY));
            }
            "cms130-colorectal-cancer-screening" => {
                conditions = true;
                for set in [COLONOSCOPY, SIGMOIDOSCOPY, CT_COLONOGRAPHY, COLECTOMY] {
                    procs.extend(tokens(SNOMED, set));
                }
                obs.extend(tokens(LOINC, FIT));
                obs.extend(tokens(LOINC, FIT_DNA));
                obs.extend(tokens(LOINC, CT_COLONOGRAPHY));
                earlier(&mut obs_since, add_days(earliest_start, -3 * 366));
            }
            "cms117-childhood-immunization" => {
                conditions = true;
                for a in SERIES {
                    imms.extend(tokens(CVX, a.cvx));
                }
                imms.extend(tokens(CVX, ROTAVIRUS));
                earlier(&mut imm_since, months_before(earliest_start, 24));
            }
            "cms347-statin-therapy" => {
                conditions = true;
                procs.extend(tokens(SNOMED, ASCVD_PROCEDURES));
                meds = true;
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    let list = |mut v: Vec<String>| {
        v.sort();
        v.dedup();
        v.join(",")
    };
    if conditions {
        out.push(Query { resource_type: "Condition", params: vec![] });
    }
    if !obs.is_empty() {
        let mut params = vec![("code", list(obs))];
        if let Some(s) = obs_since {
            params.push(("date", format!("ge{s}")));
        }
        out.push(Query { resource_type: "Observation", params });
    }
    if !procs.is_empty() {
        out.push(Query { resource_type: "Procedure", params: vec![("code", list(procs))] });
    }
    if !imms.is_empty() {
        let mut params = vec![("vaccine-code", list(imms))];
        if let Some(s) = imm_since {
            params.push(("date", format!("ge{s}")));
        }
        out.push(Query { resource_type: "Immunization", params });
    }
    if meds {
        let codes: Vec<String> = statin_codes().iter().map(|c| format!("{RXNORM}|{c}")).collect();
        out.push(Query { resource_type: "MedicationRequest", params: vec![("code", list(codes))] });
    }
    out
}

// ---------------------------------------------------------------- evaluation

/// Where a patient of the initial population (and so of the denominator) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// A denominator exclusion.
    Excluded,
    /// In the numerator.
    Met,
    /// In the denominator, not the numerator.
    NotMet,
}

/// One patient's place in a measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub group: Group,
    /// What the chart shows, in words (the value and its date, what is missing, or why
    /// the patient is excluded).
    pub why: String,
}

impl Place {
    fn met(why: impl Into<String>) -> Place {
        Place { group: Group::Met, why: why.into() }
    }
    fn not_met(why: impl Into<String>) -> Place {
        Place { group: Group::NotMet, why: why.into() }
    }
    /// In the numerator.
    pub fn is_met(&self) -> bool {
        self.group == Group::Met
    }
}

fn final_status(o: &Value) -> bool {
    matches!(o["status"].as_str(), Some("final" | "amended" | "corrected"))
}

/// When an Observation was made, else a Procedure performed (a day).
fn when(r: &Value) -> Option<String> {
    r["effectiveDateTime"]
        .as_str()
        .or_else(|| r["effectivePeriod"]["start"].as_str())
        .or_else(|| r["performedDateTime"].as_str())
        .or_else(|| r["performedPeriod"]["start"].as_str())
        .or_else(|| r["occurrenceDateTime"].as_str())
        .map(day)
}

fn entered_in_error(c: &Value) -> bool {
    has_code(&c["verificationStatus"], &["entered-in-error", "refuted"])
}

/// The day a Condition began (its onset, else when it was recorded), if the chart says.
fn onset(c: &Value) -> Option<String> {
    c["onsetDateTime"]
        .as_str()
        .or_else(|| c["onsetPeriod"]["start"].as_str())
        .or_else(|| c["recordedDate"].as_str())
        .map(day)
}

/// Whether a Condition of `codes` was present at some time in `[from, to]`: begun by
/// `to` and not over before `from` (one resolved without a date is taken as over).
fn condition_during<'a>(conditions: &[&'a Value], codes: &[&str], from: &str, to: &str) -> Option<&'a Value> {
    conditions.iter().copied().find(|c| {
        if entered_in_error(c) || !has_code(&c["code"], codes) {
            return false;
        }
        if onset(c).is_some_and(|o| o.as_str() > to) {
            return false;
        }
        let over = c["abatementDateTime"].as_str().or_else(|| c["abatementPeriod"]["end"].as_str()).map(day);
        match over {
            Some(e) => e.as_str() >= from,
            None => !has_code(&c["clinicalStatus"], &["resolved", "inactive", "remission"]),
        }
    })
}

/// Whether a Condition of `codes` was ever recorded by `to` (a history counts).
fn condition_by<'a>(conditions: &[&'a Value], codes: &[&str], to: &str) -> Option<&'a Value> {
    conditions
        .iter()
        .copied()
        .find(|c| !entered_in_error(c) && has_code(&c["code"], codes) && onset(c).is_none_or(|o| o.as_str() <= to))
}

/// The days of completed Procedures (or final Observations) of `codes` in `[from, to]`.
fn done_between(records: &[&Value], codes: &[&str], from: &str, to: &str) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .filter(|r| {
            has_code(&r["code"], codes)
                && if r["resourceType"] == "Procedure" { r["status"] == "completed" } else { final_status(r) }
        })
        .filter_map(|r| when(r))
        .filter(|d| d.as_str() >= from && d.as_str() <= to)
        .collect();
    out.sort();
    out
}

fn concept_name(cc: &Value) -> String {
    cc["text"]
        .as_str()
        .or_else(|| cc["coding"].as_array().and_then(|cs| cs.iter().find_map(|c| c["display"].as_str())))
        .or_else(|| cc["coding"][0]["code"].as_str())
        .unwrap_or("a recorded condition")
        .to_string()
}

/// An exclusion found among the conditions of `codes` present during the period.
fn excluded_by(conditions: &[&Value], codes: &[&str], period: &Period) -> Option<Place> {
    condition_during(conditions, codes, &period.start, &period.end)
        .map(|c| Place { group: Group::Excluded, why: format!("Excluded: {}", concept_name(&c["code"])) })
}

/// Where `patient` stands in `measure` over `period`, from its `record`; `None` when
/// the patient is not in the initial population.
pub fn evaluate(measure: &Measure, patient: &Value, period: &Period, record: &Record<'_>) -> Option<Place> {
    if patient["deceasedBoolean"] == true
        || patient["deceasedDateTime"].as_str().is_some_and(|d| day(d).as_str() < period.start.as_str())
    {
        return None;
    }
    let birth = patient["birthDate"].as_str()?;
    if birth.len() < 10 || birth > period.end.as_str() {
        return None;
    }
    let age = years_between(birth, &period.end)?;
    let (start, end) = (period.start.as_str(), period.end.as_str());
    let conditions = &record.conditions;
    let latest = |codes: &[&str]| {
        record
            .observations
            .iter()
            .copied()
            .filter(|o| final_status(o) && has_code(&o["code"], codes))
            .filter_map(|o| when(o).map(|d| (d, o)))
            .filter(|(d, _)| period.contains(d))
            .max_by(|a, b| a.0.cmp(&b.0))
    };
    match measure.id {
        "cms122-hba1c-poor-control" => {
            if !(18..=75).contains(&age) || condition_during(conditions, DIABETES, start, end).is_none() {
                return None;
            }
            Some(match latest(HBA1C) {
                None => Place::met("No HbA1c in the period"),
                Some((d, o)) => match o["valueQuantity"]["value"].as_f64() {
                    Some(v) if v > 9.0 => Place::met(format!("HbA1c {v}% on {d}")),
                    Some(v) => Place::not_met(format!("HbA1c {v}% on {d}")),
                    None => Place::met(format!("HbA1c without a value on {d}")),
                },
            })
        }
        "cms165-blood-pressure-control" => {
            // hypertension begun before the period or in its first six months
            let six_months_in = add_days(&shift_months(start, 6)?, -1)?;
            if !(18..=85).contains(&age) || condition_during(conditions, HYPERTENSION, start, &six_months_in).is_none()
            {
                return None;
            }
            if let Some(p) =
                excluded_by(conditions, PREGNANCY, period).or_else(|| excluded_by(conditions, ESRD, period))
            {
                return Some(p);
            }
            if let Some(d) = done_between(&record.procedures, KIDNEY_PROCEDURES, "0000-01-01", end).last() {
                return Some(Place {
                    group: Group::Excluded,
                    why: format!("Excluded: dialysis or a kidney transplant on {d}"),
                });
            }
            Some(match latest(BLOOD_PRESSURE) {
                None => Place::not_met("No blood pressure in the period"),
                Some((d, o)) => {
                    let part = |code: &str| {
                        o["component"].as_array().and_then(|cs| {
                            cs.iter()
                                .find(|c| has_code(&c["code"], &[code]))
                                .and_then(|c| c["valueQuantity"]["value"].as_f64())
                        })
                    };
                    match (part("8480-6"), part("8462-4")) {
                        (Some(s), Some(di)) if s < 140.0 && di < 90.0 => Place::met(format!("{s}/{di} mmHg on {d}")),
                        (Some(s), Some(di)) => Place::not_met(format!("{s}/{di} mmHg on {d}")),
                        _ => Place::not_met(format!("A blood pressure without both values on {d}")),
                    }
                }
            })
        }
        "cms147-influenza-immunization" => {
            // 6 months old by the period's start
            if months_before(start, 6)?.as_str() < day(birth).as_str() {
                return None;
            }
            let last = record
                .immunizations
                .iter()
                .filter(|i| i["status"] == "completed" && has_code(&i["vaccineCode"], FLU))
                .filter_map(|i| i["occurrenceDateTime"].as_str().map(day))
                .filter(|d| period.contains(d))
                .max();
            Some(match last {
                Some(d) => Place::met(format!("Influenza vaccine on {d}")),
                None => Place::not_met("No influenza vaccine in the period"),
            })
        }
        "cms125-breast-cancer-screening" => {
            if patient["gender"] != "female" || !(52..=74).contains(&age) {
                return None;
            }
            if let Some(c) = condition_by(conditions, MASTECTOMY, end) {
                return Some(Place { group: Group::Excluded, why: format!("Excluded: {}", concept_name(&c["code"])) });
            }
            if let Some(d) = done_between(&record.procedures, MASTECTOMY, "0000-01-01", end).last() {
                return Some(Place { group: Group::Excluded, why: format!("Excluded: bilateral mastectomy on {d}") });
            }
            let from = add_days(&months_before(end, 27)?, 1)?;
            Some(match done_between(&record.procedures, MAMMOGRAPHY, &from, end).last() {
                Some(d) => Place::met(format!("Mammogram on {d}")),
                None => Place::not_met(format!("No mammogram since {from}")),
            })
        }
        "cms130-colorectal-cancer-screening" => {
            if !(45..=75).contains(&age) {
                return None;
            }
            if let Some(c) = condition_by(conditions, COLORECTAL_CANCER, end) {
                return Some(Place { group: Group::Excluded, why: format!("Excluded: {}", concept_name(&c["code"])) });
            }
            if let Some(d) = done_between(&record.procedures, COLECTOMY, "0000-01-01", end).last() {
                return Some(Place { group: Group::Excluded, why: format!("Excluded: total colectomy on {d}") });
            }
            let years_before = |n: u32| months_before(start, 12 * n);
            let ways: [(&str, &[&str], Option<String>); 5] = [
                ("Colonoscopy", COLONOSCOPY, years_before(9)),
                ("FIT", FIT, Some(start.to_string())),
                ("FIT-DNA", FIT_DNA, years_before(2)),
                ("CT colonography", CT_COLONOGRAPHY, years_before(4)),
                ("Flexible sigmoidoscopy", SIGMOIDOSCOPY, years_before(4)),
            ];
            let mut found: Option<(String, &str)> = None;
            for (name, codes, from) in ways {
                let from = from?;
                let mut dates = done_between(&record.procedures, codes, &from, end);
                dates.extend(done_between(&record.observations, codes, &from, end));
                if let Some(d) = dates.into_iter().max()
                    && found.as_ref().is_none_or(|f| d > f.0)
                {
                    found = Some((d, name));
                }
            }
            Some(match found {
                Some((d, name)) => Place::met(format!("{name} on {d}")),
                None => Place::not_met("No colorectal cancer screening within its interval"),
            })
        }
        "cms117-childhood-immunization" => {
            let second = format!("{:04}{}", birth.get(0..4)?.parse::<i64>().ok()? + 2, birth.get(4..10)?);
            // a child born on 29 February turns 2 on 1 March
            let second = if second.ends_with("-02-29") && widen(&second, false).is_none() {
                format!("{}-03-01", second.get(0..4)?)
            } else {
                second
            };
            if second.as_str() < start || second.as_str() > end {
                return None;
            }
            if let Some(p) = condition_by(conditions, IMMUNODEFICIENCY, &second) {
                return Some(Place { group: Group::Excluded, why: format!("Excluded: {}", concept_name(&p["code"])) });
            }
            let (born, by) = (day_number(birth)?, day_number(&second)?);
            let given: Vec<(&Value, i64)> = record
                .immunizations
                .iter()
                .copied()
                .filter(|i| i["status"] == "completed")
                .filter_map(|i| Some((i, day_number(&day(i["occurrenceDateTime"].as_str()?))?)))
                .filter(|(_, d)| *d <= by)
                .collect();
            let doses = |cvx: &[&str], min_days: i64| {
                let mut days: Vec<i64> = given
                    .iter()
                    .filter(|(i, d)| has_code(&i["vaccineCode"], cvx) && d - born >= min_days)
                    .map(|(_, d)| *d)
                    .collect();
                days.sort_unstable();
                days.dedup();
                days.len()
            };
            let mut missing: Vec<String> = SERIES
                .iter()
                .filter_map(|a| {
                    let n = doses(a.cvx, a.min_days);
                    (n < a.doses).then(|| format!("{} {n} of {}", a.name, a.doses))
                })
                .collect();
            let rv_two = doses(ROTAVIRUS_TWO_DOSE, 42);
            let rv_any = doses(ROTAVIRUS, 42);
            if rv_two < 2 && rv_any < 3 {
                missing.push(format!("rotavirus {rv_any} of {}", if rv_any > rv_two { 3 } else { 2 }));
            }
            Some(if missing.is_empty() {
                Place::met(format!("The full series by {second}"))
            } else {
                Place::not_met(format!("By {second}: {}", missing.join(", ")))
            })
        }
        "cms347-statin-therapy" => {
            let why_in = condition_by(conditions, ASCVD, end).map(|c| concept_name(&c["code"])).or_else(|| {
                done_between(&record.procedures, ASCVD_PROCEDURES, "0000-01-01", end)
                    .last()
                    .map(|d| format!("a coronary procedure on {d}"))
            });
            why_in.as_ref()?;
            if let Some(p) = excluded_by(conditions, STATIN_EXCLUSIONS, period) {
                return Some(p);
            }
            let statin = record
                .medications
                .iter()
                .copied()
                .filter(|m| is_statin(m))
                .filter_map(|m| statin_during(m, period).map(|d| (d, m)))
                .max_by(|a, b| a.0.cmp(&b.0));
            Some(match statin {
                Some((d, m)) => Place::met(format!("{} ({d})", concept_name(&m["medicationCodeableConcept"]))),
                None => Place::not_met(format!("No statin in the period ({})", why_in.unwrap_or_default())),
            })
        }
        _ => None,
    }
}

/// Whether a MedicationRequest is of a statin: by an RxNorm code of a statin product or
/// ingredient, else by a statin's name in its text.
fn is_statin(m: &Value) -> bool {
    let cc = &m["medicationCodeableConcept"];
    let codes = statin_codes();
    // the table's statin products and ingredients, and the other statin ingredients
    let coded = cc["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["system"] == RXNORM && c["code"].as_str().is_some_and(|x| codes.contains(&x)));
    if coded {
        return true;
    }
    let text = format!(
        "{} {}",
        cc["text"].as_str().unwrap_or(""),
        cc["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["display"].as_str())
            .collect::<Vec<_>>()
            .join(" ")
    )
    .to_lowercase();
    let names = drugs::INGREDIENTS
        .iter()
        .filter(|i| i.classes.contains(&Class::Statin))
        .map(|i| i.name)
        .chain(OTHER_STATINS.iter().map(|s| s.1));
    let words: Vec<&str> = text.split(|c: char| !c.is_alphanumeric()).collect();
    names.into_iter().any(|n| words.contains(&n))
}

/// The day that shows a statin order in the period: written in it, or in force during
/// it (active, or its dosage's bounds overlap the period); `None` otherwise.
fn statin_during(m: &Value, period: &Period) -> Option<String> {
    let status = m["status"].as_str().unwrap_or("");
    if !matches!(status, "active" | "completed" | "stopped" | "on-hold") || m["intent"] == "proposal" {
        return None;
    }
    let authored = m["authoredOn"].as_str().map(day);
    if let Some(a) = &authored
        && period.contains(a)
    {
        return Some(a.clone());
    }
    let bounds = &m["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"];
    let from = bounds["start"].as_str().map(day).or_else(|| authored.clone())?;
    if from.as_str() > period.end.as_str() {
        return None;
    }
    let until = bounds["end"].as_str().map(day);
    let in_force = match until {
        Some(u) => u.as_str() >= period.start.as_str(),
        None => status == "active" || status == "on-hold",
    };
    in_force.then(|| format!("since {from}"))
}

/// A measure over a panel: each patient of its initial population with their place.
pub struct Tally<'a> {
    pub measure: &'static Measure,
    pub period: Period,
    pub places: Vec<(&'a Value, Place)>,
}

impl<'a> Tally<'a> {
    /// `measure` over `period` for each of `patients`, with `records` keyed by patient id.
    pub fn of(
        measure: &'static Measure,
        period: &Period,
        patients: &'a [Value],
        records: &HashMap<String, Record<'_>>,
    ) -> Tally<'a> {
        let empty = Record::default();
        let places = patients
            .iter()
            .filter_map(|p| {
                let rec = p["id"].as_str().and_then(|id| records.get(id)).unwrap_or(&empty);
                evaluate(measure, p, period, rec).map(|place| (p, place))
            })
            .collect();
        Tally { measure, period: period.clone(), places }
    }
    /// The initial population (and denominator, before exclusions).
    pub fn initial_population(&self) -> usize {
        self.places.len()
    }
    pub fn excluded(&self) -> usize {
        self.count(Group::Excluded)
    }
    /// The denominator less its exclusions.
    pub fn denominator(&self) -> usize {
        self.places.len() - self.excluded()
    }
    pub fn numerator(&self) -> usize {
        self.count(Group::Met)
    }
    pub fn count(&self, group: Group) -> usize {
        self.places.iter().filter(|p| p.1.group == group).count()
    }
    /// The rate in percent (numerator over the denominator less exclusions), when anyone
    /// is counted.
    pub fn rate(&self) -> Option<f64> {
        rate(self.places.iter().map(|(_, place)| place.group))
    }
    /// The patients of one group.
    pub fn group(&self, group: Group) -> impl Iterator<Item = &(&'a Value, Place)> {
        self.places.iter().filter(move |p| p.1.group == group)
    }
    /// The patients to act on: in the numerator of an inverse measure, in the
    /// denominator but not the numerator otherwise.
    pub fn gaps(&self) -> impl Iterator<Item = &(&'a Value, Place)> {
        self.group(if self.measure.inverse() { Group::Met } else { Group::NotMet })
    }
}

/// The rate in percent of the patients counted, given each one's group: the numerator
/// over the denominator less its exclusions; `None` when that leaves nobody.
pub fn rate(groups: impl Iterator<Item = Group>) -> Option<f64> {
    let (mut counted, mut excluded, mut met) = (0usize, 0usize, 0usize);
    for g in groups {
        counted += 1;
        excluded += usize::from(g == Group::Excluded);
        met += usize::from(g == Group::Met);
    }
    let denominator = counted - excluded;
    (denominator > 0).then(|| 100.0 * met as f64 / denominator as f64)
}

#[cfg(test)]
mod tests;
