//! The routine childhood and adolescent immunization series of the CDC schedule for a
//! healthy child, birth through 18 years: each series as one row of data (the doses'
//! recommended ages, minimum ages and minimum intervals, when it stops being given),
//! read against the child's Immunizations. Pure: no I/O.
//!
//! Figures: CDC child and adolescent immunization schedule, Table 1 (recommended ages)
//! and Table 2 (catch-up: "Minimum Age for Dose 1", "Minimum Interval Between Doses")
//! with its notes; cross-checked against the CDSi supporting data (antigen series).
//!
//! How a dose is read:
//! - A dose counts when given at the dose's minimum age and at least the minimum
//!   interval after the previous dose that counted, each less the CDC's 4-day grace
//!   period ("doses given 4 days or fewer before the minimum age or interval are
//!   valid"); a dose given earlier is ignored. Two doses on one day count once.
//! - 4 weeks is 28 days; months and years are calendar months, clamped to the end of a
//!   shorter month.
//! - The next dose is due from the latest of its recommended age, its minimum age and
//!   the minimum interval after the last dose that counted; before that nothing is due.
//!   An overdue dose is the same item.
//! - Nothing is due from the age a series is no longer given routinely, nor for a child
//!   whose birth date is unknown.
//!
//! Not modelled: risk-based series and doses (HepB birth dose by the mother's status,
//! asplenia, travel...), MenB, COVID-19 and influenza (a rule of its own), the shorter
//! catch-up schedules of Hib and PCV beyond what [`Complete::Booster`] states, Td/Tdap
//! catch-up from 7 years for a DTaP series left incomplete, and the shorter varicella
//! interval (4 weeks) from 13 years: 3 months is used at every age.

use std::borrow::Cow;

use serde_json::Value;

use crate::measures::{add_days, shift_months};
use crate::preventive::{Due, day_number, has_code};

/// A length of time as the schedule writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Days(i64),
    Weeks(i64),
    Months(i64),
    Years(i64),
}

use Span::{Days, Months, Weeks, Years};

impl Span {
    /// The day this long after `date` (`YYYY-MM-DD`).
    fn after(self, date: &str) -> Option<String> {
        match self {
            Days(n) => add_days(date, n),
            Weeks(n) => add_days(date, 7 * n),
            Months(n) => shift_months(date, n),
            Years(n) => shift_months(date, 12 * n),
        }
    }

    /// In words, as an age ("birth", "2 months").
    pub fn words(self) -> String {
        match self {
            Days(0) => "birth".into(),
            Days(n) => format!("{n} days"),
            Weeks(n) => format!("{n} weeks"),
            Months(1) => "1 month".into(),
            Months(n) => format!("{n} months"),
            Years(1) => "1 year".into(),
            Years(n) => format!("{n} years"),
        }
    }
}

/// The CDC's grace period: a dose this many days before its minimum age or interval
/// still counts.
pub const GRACE_DAYS: i64 = 4;

/// One dose of a series.
#[derive(Debug)]
pub struct Dose {
    /// The recommended age: due from then.
    pub due: Span,
    /// The youngest age at which it counts.
    pub min_age: Span,
    /// The least time after the previous dose (none for dose 1).
    pub after: Option<Span>,
    /// The least time after dose 1 as well (HepB dose 3).
    pub after_first: Option<Span>,
    /// A shorter interval at which a dose already given still counts (DTaP dose 4).
    pub accepted: Option<Span>,
}

/// Dose 1: recommended at `due`, counts from `min_age`.
const fn first(due: Span, min_age: Span) -> Dose {
    Dose { due, min_age, after: None, after_first: None, accepted: None }
}

/// A later dose: recommended at `due`, counts from `min_age` and `after` the previous.
const fn then(due: Span, min_age: Span, after: Span) -> Dose {
    Dose { due, min_age, after: Some(after), after_first: None, accepted: None }
}

/// When a series is complete.
#[derive(Debug)]
pub enum Complete {
    /// Every dose of it.
    AllDoses,
    /// Every dose, or all but the last when dose `dose` (1-based) was given at `age` or
    /// older and at least `after` the dose before it (DTaP, IPV).
    EarlyFinal { dose: usize, age: Span, after: Span },
    /// Every dose, or (Hib, PCV, per Table 2) a dose at `alone` or older, or a dose at
    /// 12 months or older that is dose 3 or later, or dose 2 after a dose 1 given at
    /// 12 months or older.
    Booster { alone: Span },
    /// Every dose, or any dose given at `age` or older (MenACWY from 16 years).
    OneFrom(Span),
}

/// A series of the schedule: one row.
#[derive(Debug)]
pub struct Series {
    /// The rule id (as the preventive rules' ids).
    pub id: &'static str,
    /// The name of the vaccine, as on the schedule.
    pub name: &'static str,
    /// What it protects against, in plain words.
    pub protects: &'static str,
    /// The CVX codes that give a dose of it.
    pub cvx: &'static [&'static str],
    pub doses: &'static [Dose],
    /// A product with a shorter series: when every dose that counted is of these codes
    /// (and at least one did), the doses that follow are these.
    pub product: Option<(&'static [&'static str], &'static [Dose])>,
    pub complete: Complete,
    /// Dose 1 is not started at this age or older.
    pub start_before: Option<Span>,
    /// Not given routinely from this age; a dose from this age does not count.
    pub until: Span,
}

// ---------------------------------------------------------------- CVX codes
// Shared with CMS117 (measures.rs). Names as in CDC's CVX table.

/// Hepatitis B: 08 adolescent or pediatric, 44 high-dosage (dialysis), 45 unspecified,
/// 51 Hib-HepB, 110 DTaP-HepB-IPV, 146 DTaP-IPV-Hib-HepB.
pub const HEPB: &[&str] = &["08", "44", "45", "51", "110", "146"];
/// Rotavirus: 116 pentavalent (RV5), 119 monovalent (RV1), 122 unspecified.
pub const ROTAVIRUS: &[&str] = &["116", "119", "122"];
/// The two-dose rotavirus vaccine (RV1, Rotarix).
pub const ROTAVIRUS_TWO_DOSE: &[&str] = &["119"];
/// DTaP and its combinations: 20, 50 DTaP-Hib, 106 DTaP 5 pertussis antigens, 107
/// unspecified, 110, 120 DTaP-Hib-IPV, 130 DTaP-IPV, 146.
pub const DTAP: &[&str] = &["20", "50", "106", "107", "110", "120", "130", "146"];
/// Hib: 17 unspecified, 46 PRP-D, 47 HbOC, 48 PRP-T, 49 PRP-OMP, 50, 51, 120, 146, 148
/// MenC/Y-Hib.
pub const HIB: &[&str] = &["17", "46", "47", "48", "49", "50", "51", "120", "146", "148"];
/// PRP-OMP Hib (49): two primary doses, then the booster. Any other Hib product, or a
/// mix, takes the four-dose series (the conservative reading).
pub const HIB_PRP_OMP: &[&str] = &["49"];
/// Pneumococcal conjugate: 100 PCV7, 133 PCV13, 152 unspecified, 215 PCV15, 216 PCV20.
pub const PCV: &[&str] = &["100", "133", "152", "215", "216"];
/// Polio: 10 IPV, 89 unspecified, 110, 120, 130, 146.
pub const IPV: &[&str] = &["10", "89", "110", "120", "130", "146"];
/// MMR: 03, 94 MMRV.
pub const MMR: &[&str] = &["03", "94"];
/// Varicella: 21, 94 MMRV.
pub const VARICELLA: &[&str] = &["21", "94"];
/// Hepatitis A: 31 pediatric unspecified, 83 ped/adol 2-dose, 85 unspecified.
pub const HEPA: &[&str] = &["31", "83", "85"];
/// Tdap: 115.
pub const TDAP: &[&str] = &["115"];
/// MenACWY: 108 unspecified, 114 MCV4P, 136 MCV4O, 147 MCV4 unspecified, 203
/// MenACWY-TT, 316 MenACWY-TT with MenB, 328 MenACWY with MenB (oligosaccharide).
pub const MENACWY: &[&str] = &["108", "114", "136", "147", "203", "316", "328"];

const BIRTH: Span = Days(0);

/// The series, one row each: recommended age, minimum age and minimum interval of every
/// dose, as in Tables 1 and 2 and their notes.
pub static SERIES: &[Series] = &[
    Series {
        id: "child-hepb",
        name: "HepB",
        protects: "hepatitis B",
        cvx: HEPB,
        // birth; 1 month (4 weeks after); 6 months (min 24 weeks, 8 weeks after dose 2, 16 after dose 1)
        doses: &[
            first(BIRTH, BIRTH),
            then(Months(1), Weeks(4), Weeks(4)),
            Dose {
                due: Months(6),
                min_age: Weeks(24),
                after: Some(Weeks(8)),
                after_first: Some(Weeks(16)),
                accepted: None,
            },
        ],
        product: None,
        complete: Complete::AllDoses,
        start_before: None,
        until: Years(19),
    },
    Series {
        id: "child-rotavirus",
        name: "Rotavirus",
        protects: "rotavirus diarrhea",
        cvx: ROTAVIRUS,
        // RV5 (or any dose not RV1): 2, 4, 6 months; RV1 only: 2, 4 months; min 6 weeks, 4 weeks apart
        doses: &[
            first(Months(2), Weeks(6)),
            then(Months(4), Weeks(10), Weeks(4)),
            then(Months(6), Weeks(14), Weeks(4)),
        ],
        product: Some((ROTAVIRUS_TWO_DOSE, &[first(Months(2), Weeks(6)), then(Months(4), Weeks(10), Weeks(4))])),
        complete: Complete::AllDoses,
        // not started from 15 weeks 0 days; no dose from 8 months 0 days
        start_before: Some(Weeks(15)),
        until: Months(8),
    },
    Series {
        id: "child-dtap",
        name: "DTaP",
        protects: "diphtheria, tetanus and whooping cough",
        cvx: DTAP,
        // 2, 4, 6, 15 months (min 12 months, 6 months after dose 3; 4 months accepted), 4 years (6 months after)
        doses: &[
            first(Months(2), Weeks(6)),
            then(Months(4), Weeks(10), Weeks(4)),
            then(Months(6), Weeks(14), Weeks(4)),
            Dose {
                due: Months(15),
                min_age: Months(12),
                after: Some(Months(6)),
                after_first: None,
                accepted: Some(Months(4)),
            },
            then(Years(4), Years(4), Months(6)),
        ],
        product: None,
        // dose 5 is not needed when dose 4 was given at 4 years or older (6 months after dose 3)
        complete: Complete::EarlyFinal { dose: 4, age: Years(4), after: Months(6) },
        start_before: None,
        until: Years(7),
    },
    Series {
        id: "child-hib",
        name: "Hib",
        protects: "Haemophilus influenzae type b",
        cvx: HIB,
        // 2, 4, 6 months, booster at 12 months (8 weeks after); PRP-OMP: 2, 4 months and the booster
        doses: &[
            first(Months(2), Weeks(6)),
            then(Months(4), Weeks(10), Weeks(4)),
            then(Months(6), Weeks(14), Weeks(4)),
            then(Months(12), Months(12), Weeks(8)),
        ],
        product: Some((
            HIB_PRP_OMP,
            &[first(Months(2), Weeks(6)), then(Months(4), Weeks(10), Weeks(4)), then(Months(12), Months(12), Weeks(8))],
        )),
        complete: Complete::Booster { alone: Months(15) },
        start_before: None,
        until: Years(5),
    },
    Series {
        id: "child-pcv",
        name: "PCV",
        protects: "pneumococcal disease: pneumonia, meningitis",
        cvx: PCV,
        // 2, 4, 6 months, 12 months (8 weeks after)
        doses: &[
            first(Months(2), Weeks(6)),
            then(Months(4), Weeks(10), Weeks(4)),
            then(Months(6), Weeks(14), Weeks(4)),
            then(Months(12), Months(12), Weeks(8)),
        ],
        product: None,
        complete: Complete::Booster { alone: Months(24) },
        start_before: None,
        until: Years(5),
    },
    Series {
        id: "child-ipv",
        name: "IPV",
        protects: "polio",
        cvx: IPV,
        // 2, 4, 6 months, 4 years (min 4 years, 6 months after dose 3)
        doses: &[
            first(Months(2), Weeks(6)),
            then(Months(4), Weeks(10), Weeks(4)),
            then(Months(6), Weeks(14), Weeks(4)),
            then(Years(4), Years(4), Months(6)),
        ],
        product: None,
        // dose 4 is not needed when dose 3 was given at 4 years or older, 6 months after dose 2
        complete: Complete::EarlyFinal { dose: 3, age: Years(4), after: Months(6) },
        start_before: None,
        until: Years(18),
    },
    Series {
        id: "child-mmr",
        name: "MMR",
        protects: "measles, mumps and rubella",
        cvx: MMR,
        // 12 months, 4 years (4 weeks after)
        doses: &[first(Months(12), Months(12)), then(Years(4), Months(13), Weeks(4))],
        product: None,
        complete: Complete::AllDoses,
        start_before: None,
        until: Years(19),
    },
    Series {
        id: "child-varicella",
        name: "Varicella",
        protects: "chickenpox",
        cvx: VARICELLA,
        // 12 months, 4 years (3 months after; 4 weeks accepted, so from 13 months)
        doses: &[
            first(Months(12), Months(12)),
            Dose {
                due: Years(4),
                min_age: Months(13),
                after: Some(Months(3)),
                after_first: None,
                accepted: Some(Weeks(4)),
            },
        ],
        product: None,
        complete: Complete::AllDoses,
        start_before: None,
        until: Years(19),
    },
    Series {
        id: "child-hepa",
        name: "HepA",
        protects: "hepatitis A",
        cvx: HEPA,
        // 12 months, 18 months (6 months after)
        doses: &[first(Months(12), Months(12)), then(Months(18), Months(18), Months(6))],
        product: None,
        complete: Complete::AllDoses,
        start_before: None,
        until: Years(19),
    },
    Series {
        id: "adolescent-tdap",
        name: "Tdap",
        protects: "tetanus, diphtheria and whooping cough",
        cvx: TDAP,
        // one dose at 11 to 12 years; a dose from 10 years counts
        doses: &[first(Years(11), Years(10))],
        product: None,
        complete: Complete::AllDoses,
        start_before: None,
        until: Years(19),
    },
    Series {
        id: "adolescent-menacwy",
        name: "MenACWY",
        protects: "meningococcal disease, a cause of meningitis",
        cvx: MENACWY,
        // 11 years (a dose from 10 counts), 16 years (8 weeks after); one dose from 16 is enough
        doses: &[first(Years(11), Years(10)), then(Years(16), Years(16), Weeks(8))],
        product: None,
        complete: Complete::OneFrom(Years(16)),
        start_before: None,
        until: Years(19),
    },
];

/// Where the series come from (shown as each item's source).
pub const SOURCE: &str = "CDC child and adolescent immunization schedule: Table 1 (recommended ages) and Table 2 (catch-up: minimum ages and intervals), with the 4-day grace period";

/// The schedule's page.
pub const LINK: &str = "https://www.cdc.gov/vaccines/hcp/imz-schedules/child-adolescent-catch-up.html";

/// When the series were last checked against the schedule (`YYYY-MM-DD`).
pub const REVIEWED: &str = "2026-12-08";

impl Series {
    /// The series in a list of rules ("DTaP, childhood schedule (before 7 years)").
    pub fn title(&self) -> String {
        format!("{}, childhood schedule (before {})", self.name, self.until.words())
    }
}

/// A dose that counted: its date, and whether it was of the series' shorter product.
#[derive(Debug)]
struct Given {
    date: String,
    cvx_product: bool,
}

/// The dates (`YYYY-MM-DD`, sorted, once each) of the completed doses of `cvx` among
/// `immunizations`, with whether every dose of that day is of `product`.
fn doses_of(immunizations: &[Value], cvx: &[&str], product: &[&str]) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    for i in immunizations {
        if i["status"] != "completed" || !has_code(&i["vaccineCode"], cvx) {
            continue;
        }
        let Some(date) = i["occurrenceDateTime"].as_str().and_then(|d| d.get(0..10)) else { continue };
        if day_number(date).is_none() {
            continue;
        }
        let of_product = !product.is_empty() && has_code(&i["vaccineCode"], product);
        match out.iter_mut().find(|(d, _)| d == date) {
            Some(same_day) => same_day.1 &= of_product,
            None => out.push((date.to_string(), of_product)),
        }
    }
    out.sort();
    out
}

/// Whether `date` is on or after the day `span` after `from`, less `grace` days.
fn reached(date: &str, from: &str, span: Span, grace: i64) -> bool {
    let limit = span.after(from).and_then(|d| day_number(&d));
    matches!((day_number(date), limit), (Some(d), Some(l)) if d >= l - grace)
}

/// The doses of `s` that count, in order: each at its dose's minimum age and interval
/// (with the grace period), before the series' last age and not after `today`.
fn counted(s: &Series, birth: &str, today: &str, immunizations: &[Value]) -> Vec<Given> {
    let product = s.product.map(|p| p.0).unwrap_or(&[]);
    let mut out: Vec<Given> = Vec::new();
    for (date, of_product) in doses_of(immunizations, s.cvx, product) {
        let Some(dose) = s.doses.get(out.len()) else { break };
        if date.as_str() > today || reached(&date, birth, s.until, 0) {
            break;
        }
        let old_enough = reached(&date, birth, dose.min_age, GRACE_DAYS);
        let spaced = match (out.last(), dose.after) {
            (Some(prev), Some(after)) => reached(&date, &prev.date, dose.accepted.unwrap_or(after), GRACE_DAYS),
            _ => true,
        };
        let spaced_first = match (out.first(), dose.after_first) {
            (Some(first), Some(after)) => reached(&date, &first.date, after, GRACE_DAYS),
            _ => true,
        };
        if old_enough && spaced && spaced_first {
            out.push(Given { date, cvx_product: of_product });
        }
    }
    out
}

/// Whether the doses that counted complete `s`, given the doses its path needs.
fn complete(s: &Series, birth: &str, given: &[Given], needed: usize) -> bool {
    if given.len() >= needed {
        return true;
    }
    let at = |g: &Given, age: Span| reached(&g.date, birth, age, GRACE_DAYS);
    match s.complete {
        Complete::AllDoses => false,
        Complete::EarlyFinal { dose, age, after } => {
            given.len() == dose
                && at(&given[dose - 1], age)
                && (dose < 2 || reached(&given[dose - 1].date, &given[dose - 2].date, after, GRACE_DAYS))
        }
        Complete::Booster { alone } => given
            .iter()
            .enumerate()
            .any(|(k, g)| at(g, alone) || (at(g, Months(12)) && (k >= 2 || (k == 1 && at(&given[0], Months(12)))))),
        Complete::OneFrom(age) => given.iter().any(|g| at(g, age)),
    }
}

const ORDINALS: &[&str] = &["first", "second", "third", "fourth", "fifth"];

/// The doses of the childhood series due on `today` (`YYYY-MM-DD`) for a child born on
/// `birth`, from their `immunizations` (FHIR JSON): one item per series at most, for
/// its next dose.
pub fn due(birth: &str, today: &str, immunizations: &[Value]) -> Vec<Due> {
    let Some(now) = day_number(today) else { return Vec::new() };
    if day_number(birth).is_none_or(|b| b > now) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for s in SERIES {
        if reached(today, birth, s.until, 0) {
            continue;
        }
        let given = counted(s, birth, today, immunizations);
        if given.is_empty() && s.start_before.is_some_and(|age| reached(today, birth, age, 0)) {
            continue;
        }
        let path = match s.product {
            Some((_, doses)) if !given.is_empty() && given.iter().all(|g| g.cvx_product) => doses,
            _ => s.doses,
        };
        if complete(s, birth, &given, path.len()) {
            continue;
        }
        let n = given.len();
        let Some(next) = path.get(n).or_else(|| s.doses.get(n)) else { continue };
        let total = path.len().max(n + 1);
        // due from the latest of the recommended age, the minimum age and the intervals
        let mut from = [next.due.after(birth), next.min_age.after(birth)].into_iter().flatten().collect::<Vec<_>>();
        if let (Some(prev), Some(after)) = (given.last(), next.after) {
            from.extend(after.after(&prev.date));
        }
        if let (Some(first), Some(after)) = (given.first(), next.after_first) {
            from.extend(after.after(&first.date));
        }
        let Some(since) = from.into_iter().max() else { continue };
        if day_number(&since).is_none_or(|d| d > now) {
            continue;
        }
        let ordinal = ORDINALS.get(n).copied().unwrap_or("next");
        let title = if total == 1 {
            format!("{}, one dose (due at {})", s.name, next.due.words())
        } else {
            format!("{} dose {} of {total} (due at {})", s.name, n + 1, next.due.words())
        };
        out.push(Due {
            rule: s.id,
            title: Cow::Owned(title),
            for_patient: Cow::Owned(format!("The {ordinal} dose of the {} vaccine ({})", s.name, s.protects)),
            last: given.last().map(|g| g.date.clone()),
            action: Cow::Owned(format!("Give {} dose {} (due since {since}).", s.name, n + 1)),
            source: SOURCE,
            link: LINK,
        });
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

    fn at(date: &str, span: Span) -> String {
        span.after(date).unwrap()
    }

    fn less(date: &str, days: i64) -> String {
        add_days(date, -days).unwrap()
    }

    const BORN: &str = "2020-01-15";

    /// The item of `series` due on `today` for a child born on [`BORN`] with `doses`.
    fn item(series: &str, today: &str, doses: &[(&str, String)]) -> Option<Due> {
        let imms: Vec<Value> = doses.iter().map(|(c, d)| imm(c, d)).collect();
        due(BORN, today, &imms).into_iter().find(|d| d.rule == series)
    }

    fn title(series: &str, today: &str, doses: &[(&str, String)]) -> Option<String> {
        item(series, today, doses).map(|d| d.title.into_owned())
    }

    #[test]
    fn every_row_is_consistent() {
        for (i, s) in SERIES.iter().enumerate() {
            assert!(!s.doses.is_empty() && s.doses.len() <= ORDINALS.len(), "{}", s.id);
            assert!(s.doses[0].after.is_none(), "{}: dose 1 has no interval", s.id);
            assert!(s.doses[1..].iter().all(|d| d.after.is_some()), "{}: later doses have one", s.id);
            for d in s.doses {
                // recommended no earlier than the minimum age
                assert!(at(BORN, d.due) >= at(BORN, d.min_age), "{}", s.id);
            }
            assert!(SERIES[i + 1..].iter().all(|t| t.id != s.id), "{} twice", s.id);
            assert!(s.cvx.iter().all(|c| c.chars().all(|ch| ch.is_ascii_digit())), "{}", s.id);
            if let Some((codes, doses)) = s.product {
                assert!(codes.iter().all(|c| s.cvx.contains(c)) && doses.len() < s.doses.len(), "{}", s.id);
            }
        }
        assert!(crate::preventive::RULES.iter().all(|r| SERIES.iter().all(|s| s.id != r.id)));
    }

    #[test]
    fn a_newborn_is_due_for_hepb_and_nothing_before_two_months() {
        let d = due(BORN, BORN, &[]);
        assert_eq!(d.iter().map(|d| d.rule).collect::<Vec<_>>(), ["child-hepb"]);
        assert_eq!(d[0].title, "HepB dose 1 of 3 (due at birth)");
        assert_eq!(d[0].for_patient, "The first dose of the HepB vaccine (hepatitis B)");
        assert_eq!(d[0].last, None);
        // at 2 months less a day: HepB 1 and 2 only; at 2 months the 2-month doses
        let day_before = less(&at(BORN, Months(2)), 1);
        let ids: Vec<&str> = due(BORN, &day_before, &[]).iter().map(|d| d.rule).collect();
        assert_eq!(ids, ["child-hepb"]);
        let ids: Vec<String> = due(BORN, &at(BORN, Months(2)), &[]).iter().map(|d| d.rule.to_string()).collect();
        assert_eq!(ids, ["child-hepb", "child-rotavirus", "child-dtap", "child-hib", "child-pcv", "child-ipv"]);
        // a dose dated after today does not count yet
        assert_eq!(
            title("child-hepb", BORN, &[("08", at(BORN, Months(1)))]).as_deref(),
            Some("HepB dose 1 of 3 (due at birth)")
        );
        // no birth date, or a birth date in the future: nothing
        assert!(due("", "2026-01-01", &[]).is_empty() && due("2027-01-01", "2026-01-01", &[]).is_empty());
    }

    #[test]
    fn hepb_minimum_ages_and_intervals() {
        let d1 = ("08", BORN.to_string());
        let month = at(BORN, Months(1));
        // dose 2 at 4 weeks less the grace period counts; one day earlier it does not
        let ok = ("08", less(&at(BORN, Weeks(4)), 4));
        let early = ("08", less(&at(BORN, Weeks(4)), 5));
        let today = at(BORN, Months(5));
        assert_eq!(
            title("child-hepb", &today, &[d1.clone(), early.clone()]).as_deref(),
            Some("HepB dose 2 of 3 (due at 1 month)")
        );
        assert_eq!(title("child-hepb", &today, &[d1.clone(), ok.clone()]), None, "dose 3 is not due before 6 months");
        // dose 3: due at 6 months, and 16 weeks after dose 1 at the earliest
        let six = at(BORN, Months(6));
        let found = item("child-hepb", &six, &[d1.clone(), ok.clone()]).unwrap();
        assert_eq!(found.title, "HepB dose 3 of 3 (due at 6 months)");
        assert_eq!(found.last.as_deref(), Some(ok.1.as_str()));
        assert_eq!(found.action, format!("Give HepB dose 3 (due since {six})."));
        // dose 2 given late (5 months): dose 3 waits 8 weeks after it
        let late = ("08", at(BORN, Months(5)));
        assert_eq!(title("child-hepb", &six, &[d1.clone(), late.clone()]), None);
        assert!(title("child-hepb", &at(&late.1, Weeks(8)), &[d1.clone(), late.clone()]).is_some());
        // a dose 3 before 24 weeks (less the grace) does not count
        let d3_early = ("08", less(&at(BORN, Weeks(24)), 5));
        let d3_ok = ("08", less(&at(BORN, Weeks(24)), 4));
        let later = at(BORN, Years(2));
        assert!(title("child-hepb", &later, &[d1.clone(), ("08", month.clone()), d3_early]).is_some());
        assert_eq!(title("child-hepb", &later, &[d1.clone(), ("08", month.clone()), d3_ok]), None);
        // two records of one day count once; a dose not completed does not count
        let mut not_done = imm("08", &month);
        not_done["status"] = json!("not-done");
        let imms = [imm("08", BORN), imm("08", BORN), not_done];
        let d = due(BORN, &later, &imms);
        assert_eq!(d.iter().find(|x| x.rule == "child-hepb").unwrap().title, "HepB dose 2 of 3 (due at 1 month)");
        // from 19 years, no longer routine
        assert!(title("child-hepb", &less(&at(BORN, Years(19)), 1), &[]).is_some());
        assert_eq!(title("child-hepb", &at(BORN, Years(19)), &[]), None);
    }

    #[test]
    fn dtap_five_doses_or_four_when_dose_4_was_at_4_years() {
        let d = |m: Span| ("20", at(BORN, m));
        let three = vec![d(Months(2)), d(Months(4)), d(Months(6))];
        // dose 4 due at 15 months; a dose 4 at 12 months only 4 months after dose 3 is accepted
        assert_eq!(
            title("child-dtap", &at(BORN, Months(15)), &three).as_deref(),
            Some("DTaP dose 4 of 5 (due at 15 months)")
        );
        let accepted = vec![d(Months(2)), d(Months(4)), d(Months(8)), d(Months(12))];
        assert_eq!(title("child-dtap", &at(BORN, Months(30)), &accepted), None);
        // ... but not 3 months after, nor before 12 months
        let too_soon = vec![d(Months(2)), d(Months(4)), d(Months(9)), d(Months(12))];
        assert!(title("child-dtap", &at(BORN, Months(30)), &too_soon).unwrap().starts_with("DTaP dose 4"));
        let too_young = vec![d(Months(2)), d(Months(4)), d(Months(5)), d(Months(11))];
        assert!(title("child-dtap", &at(BORN, Months(30)), &too_young).unwrap().starts_with("DTaP dose 4"));
        // dose 5 at 4 years; four doses with dose 4 before 4 years: dose 5 due
        let mut four = three.clone();
        four.push(d(Months(15)));
        assert_eq!(title("child-dtap", &less(&at(BORN, Years(4)), 1), &four), None);
        assert_eq!(
            title("child-dtap", &at(BORN, Years(4)), &four).as_deref(),
            Some("DTaP dose 5 of 5 (due at 4 years)")
        );
        // dose 4 at 4 years (6 months after dose 3): complete with four
        let mut late_four = three.clone();
        late_four.push(d(Years(4)));
        assert_eq!(title("child-dtap", &at(BORN, Years(5)), &late_four), None);
        // dose 4 4 days before 4 years counts as at 4 years (grace); 5 days before does not
        let mut just = three.clone();
        just.push(("20", less(&at(BORN, Years(4)), 4)));
        assert_eq!(title("child-dtap", &at(BORN, Years(5)), &just), None);
        let mut not_quite = three.clone();
        not_quite.push(("20", less(&at(BORN, Years(4)), 5)));
        assert!(title("child-dtap", &at(BORN, Years(5)), &not_quite).is_some());
        // all five: nothing; from 7 years DTaP is not given
        let mut five = four.clone();
        five.push(d(Years(4)));
        assert_eq!(title("child-dtap", &at(BORN, Years(5)), &five), None);
        assert!(title("child-dtap", &less(&at(BORN, Years(7)), 1), &four).is_some());
        assert_eq!(title("child-dtap", &at(BORN, Years(7)), &four), None);
        // a dose before 6 weeks (less the grace) is ignored
        let early = vec![("20", less(&at(BORN, Weeks(6)), 5))];
        let found = item("child-dtap", &at(BORN, Months(3)), &early).unwrap();
        assert_eq!((found.title.as_ref(), found.last), ("DTaP dose 1 of 5 (due at 2 months)", None));
    }

    #[test]
    fn ipv_four_doses_or_three_when_dose_3_was_at_4_years_and_6_months_after() {
        let d = |m: Span| ("10", at(BORN, m));
        let two = vec![d(Months(2)), d(Months(4))];
        let mut three = two.clone();
        three.push(d(Months(6)));
        assert_eq!(title("child-ipv", &at(BORN, Years(3)), &three), None);
        assert_eq!(
            title("child-ipv", &at(BORN, Years(4)), &three).as_deref(),
            Some("IPV dose 4 of 4 (due at 4 years)")
        );
        // dose 3 at 4 years, long after dose 2: complete
        let mut late = two.clone();
        late.push(d(Years(4)));
        assert_eq!(title("child-ipv", &at(BORN, Years(6)), &late), None);
        // dose 3 at 4 years but only 2 months after dose 2: dose 4 still due, 6 months later
        let close = vec![("10", at(BORN, Months(44))), ("10", at(BORN, Months(46))), ("10", at(BORN, Years(4)))];
        assert_eq!(title("child-ipv", &at(BORN, Months(53)), &close), None);
        assert!(title("child-ipv", &at(BORN, Months(54)), &close).is_some());
        // a fourth dose before 4 years does not count as the final dose
        let mut early_four = three.clone();
        early_four.push(d(Months(15)));
        assert!(title("child-ipv", &at(BORN, Years(5)), &early_four).unwrap().starts_with("IPV dose 4"));
        // combination vaccines count: DTaP-IPV-Hib-HepB
        let combo: Vec<(&str, String)> = vec![("146", at(BORN, Months(2)))];
        assert!(title("child-ipv", &at(BORN, Months(4)), &combo).unwrap().starts_with("IPV dose 2"));
        assert_eq!(title("child-ipv", &at(BORN, Years(18)), &[]), None);
    }

    #[test]
    fn rotavirus_by_product_and_its_age_limits() {
        let rv1 = vec![("119", at(BORN, Months(2))), ("119", at(BORN, Months(4)))];
        assert_eq!(title("child-rotavirus", &at(BORN, Months(7)), &rv1), None, "two doses of RV1 complete it");
        let mixed = vec![("119", at(BORN, Months(2))), ("116", at(BORN, Months(4)))];
        assert_eq!(
            title("child-rotavirus", &at(BORN, Months(6)), &mixed).as_deref(),
            Some("Rotavirus dose 3 of 3 (due at 6 months)")
        );
        assert_eq!(
            title("child-rotavirus", &at(BORN, Months(4)), &rv1[..1]).as_deref(),
            Some("Rotavirus dose 2 of 2 (due at 4 months)")
        );
        // not started at 15 weeks or later; nothing from 8 months
        assert!(title("child-rotavirus", &less(&at(BORN, Weeks(15)), 1), &[]).is_some());
        assert_eq!(title("child-rotavirus", &at(BORN, Weeks(15)), &[]), None);
        assert_eq!(title("child-rotavirus", &at(BORN, Months(8)), &mixed), None);
    }

    #[test]
    fn hib_and_pcv_by_booster_and_product() {
        let d = |c: &'static str, m: Span| (c, at(BORN, m));
        // PRP-OMP at 2 and 4 months: dose 3 is the booster at 12 months
        let omp = vec![d("49", Months(2)), d("49", Months(4))];
        assert_eq!(title("child-hib", &at(BORN, Months(8)), &omp), None);
        assert_eq!(
            title("child-hib", &at(BORN, Months(12)), &omp).as_deref(),
            Some("Hib dose 3 of 3 (due at 12 months)")
        );
        let mut omp_done = omp.clone();
        omp_done.push(d("49", Months(12)));
        assert_eq!(title("child-hib", &at(BORN, Months(20)), &omp_done), None);
        // PRP-T: four doses, the third at 6 months
        let prpt = vec![d("48", Months(2)), d("48", Months(4))];
        assert_eq!(
            title("child-hib", &at(BORN, Months(6)), &prpt).as_deref(),
            Some("Hib dose 3 of 4 (due at 6 months)")
        );
        // the booster counts from 12 months (less the grace) and 8 weeks after the last dose
        let mut three = prpt.clone();
        three.push(d("48", Months(6)));
        let mut early = three.clone();
        early.push(("48", less(&at(BORN, Months(12)), 5)));
        assert_eq!(
            title("child-hib", &at(BORN, Months(16)), &early).as_deref(),
            Some("Hib dose 4 of 4 (due at 12 months)")
        );
        let mut ok = three.clone();
        ok.push(("48", less(&at(BORN, Months(12)), 4)));
        assert_eq!(title("child-hib", &at(BORN, Months(16)), &ok), None);
        // dose 1 before 12 months and dose 2 at 12 to 14 months: a third dose is still due
        let late_second = vec![d("48", Months(2)), d("48", Months(13))];
        assert!(title("child-hib", &at(BORN, Months(16)), &late_second).unwrap().starts_with("Hib dose 3"));
        // one dose at 15 months or older is enough for Hib; for PCV it takes 24 months
        let one = vec![d("48", Months(16))];
        assert_eq!(title("child-hib", &at(BORN, Months(30)), &one), None);
        let one = vec![d("133", Months(16))];
        assert_eq!(
            title("child-pcv", &at(BORN, Months(30)), &one).as_deref(),
            Some("PCV dose 2 of 4 (due at 4 months)")
        );
        let two = vec![d("133", Months(13)), d("133", Months(16))];
        assert_eq!(title("child-pcv", &at(BORN, Months(30)), &two), None, "two doses from 12 months");
        // three doses before 12 months: the fourth at 12 months; not after 5 years
        let pcv = vec![d("133", Months(2)), d("133", Months(4)), d("133", Months(6))];
        assert_eq!(
            title("child-pcv", &at(BORN, Months(12)), &pcv).as_deref(),
            Some("PCV dose 4 of 4 (due at 12 months)")
        );
        assert_eq!(title("child-pcv", &at(BORN, Years(5)), &pcv), None);
    }

    #[test]
    fn mmr_varicella_and_hepa() {
        // MMR before 12 months (less the grace) does not count
        let early = vec![("03", less(&at(BORN, Months(12)), 5))];
        assert_eq!(
            title("child-mmr", &at(BORN, Months(13)), &early).as_deref(),
            Some("MMR dose 1 of 2 (due at 12 months)")
        );
        let ok = vec![("03", at(BORN, Months(12)))];
        assert_eq!(title("child-mmr", &at(BORN, Months(47)), &ok), None);
        assert_eq!(title("child-mmr", &at(BORN, Years(4)), &ok).as_deref(), Some("MMR dose 2 of 2 (due at 4 years)"));
        // MMRV counts for both; a second dose 4 weeks after the first counts for varicella
        let mmrv = vec![("94", at(BORN, Months(12))), ("94", at(BORN, Months(13)))];
        assert_eq!(title("child-mmr", &at(BORN, Years(5)), &mmrv), None);
        assert_eq!(title("child-varicella", &at(BORN, Years(5)), &mmrv), None);
        let too_soon = vec![("21", at(BORN, Months(12))), ("21", at(&at(BORN, Months(12)), Weeks(3)))];
        assert!(title("child-varicella", &at(BORN, Years(5)), &too_soon).unwrap().contains("dose 2"));
        // catch-up at 10 years: varicella dose 2 three months after dose 1
        let late = vec![("21", at(BORN, Years(10)))];
        assert_eq!(title("child-varicella", &at(&late[0].1, Months(2)), &late), None);
        assert!(title("child-varicella", &at(&late[0].1, Months(3)), &late).is_some());
        // HepA: the second dose 6 months after the first
        let hepa = vec![("83", at(BORN, Months(14)))];
        assert_eq!(title("child-hepa", &at(BORN, Months(19)), &hepa), None);
        assert_eq!(
            title("child-hepa", &at(BORN, Months(20)), &hepa).as_deref(),
            Some("HepA dose 2 of 2 (due at 18 months)")
        );
    }

    #[test]
    fn adolescents_tdap_at_11_and_menacwy_with_its_booster_at_16() {
        // a child up to date at 10: nothing adolescent due; at 11, Tdap and MenACWY
        let ten = at(BORN, Years(11));
        let before = less(&ten, 1);
        let at_11: Vec<&str> = due(BORN, &ten, &[]).iter().map(|d| d.rule).collect::<Vec<_>>();
        assert!(at_11.contains(&"adolescent-tdap") && at_11.contains(&"adolescent-menacwy"), "{at_11:?}");
        let before_11: Vec<&str> = due(BORN, &before, &[]).iter().map(|d| d.rule).collect();
        assert!(!before_11.contains(&"adolescent-tdap") && !before_11.contains(&"adolescent-menacwy"));
        assert_eq!(title("adolescent-tdap", &ten, &[]).as_deref(), Some("Tdap, one dose (due at 11 years)"));
        // a Tdap at 10 counts; at 9 it does not
        assert_eq!(title("adolescent-tdap", &ten, &[("115", at(BORN, Years(10)))]), None);
        assert!(title("adolescent-tdap", &ten, &[("115", at(BORN, Years(9)))]).is_some());
        // MenACWY at 11: the booster at 16 (not before), then nothing
        let one = vec![("114", at(BORN, Years(11)))];
        assert_eq!(title("adolescent-menacwy", &less(&at(BORN, Years(16)), 1), &one), None);
        let found = item("adolescent-menacwy", &at(BORN, Years(16)), &one).unwrap();
        assert_eq!(found.title, "MenACWY dose 2 of 2 (due at 16 years)");
        assert_eq!(
            found.for_patient,
            "The second dose of the MenACWY vaccine (meningococcal disease, a cause of meningitis)"
        );
        let both = vec![one[0].clone(), ("136", at(BORN, Years(16)))];
        assert_eq!(title("adolescent-menacwy", &at(BORN, Years(17)), &both), None);
        // a first dose at 16 or later is the only one needed; at 19 none is due
        assert_eq!(title("adolescent-menacwy", &at(BORN, Years(18)), &[("203", at(BORN, Years(17)))]), None);
        assert_eq!(title("adolescent-menacwy", &at(BORN, Years(19)), &[]), None);
    }

    #[test]
    fn a_child_vaccinated_on_schedule_has_nothing_due() {
        let mut doses: Vec<(&str, String)> = vec![("08", BORN.to_string())];
        for (cvx, ages) in [
            ("08", &[Months(1), Months(6)][..]),
            ("20", &[Months(2), Months(4), Months(6), Months(15), Years(4)]),
            ("10", &[Months(2), Months(4), Months(6), Years(4)]),
            ("49", &[Months(2), Months(4), Months(12)]),
            ("133", &[Months(2), Months(4), Months(6), Months(12)]),
            ("119", &[Months(2), Months(4)]),
            ("03", &[Months(12), Years(4)]),
            ("21", &[Months(12), Years(4)]),
            ("83", &[Months(12), Months(18)]),
            ("115", &[Years(11)]),
            ("114", &[Years(11), Years(16)]),
        ] {
            doses.extend(ages.iter().map(|a| (cvx, at(BORN, *a))));
        }
        let imms: Vec<Value> = doses.iter().map(|(c, d)| imm(c, d)).collect();
        for years in [1, 2, 5, 12, 17] {
            let today = at(BORN, Years(years));
            assert!(due(BORN, &today, &imms).is_empty(), "{years}: {:?}", due(BORN, &today, &imms));
        }
        // a dose recorded with no date, or an unparsable one, is ignored without harm
        let mut odd = imms.clone();
        odd.push(json!({"status": "completed", "vaccineCode": {"coding": [{"code": "20"}]}}));
        odd.push(
            json!({"status": "completed", "vaccineCode": {"coding": [{"code": "20"}]}, "occurrenceDateTime": "soon"}),
        );
        assert!(due(BORN, &at(BORN, Years(5)), &odd).is_empty());
    }
}
