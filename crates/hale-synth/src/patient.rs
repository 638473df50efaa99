//! One patient's history: demographics, chronic conditions with their medications,
//! allergies, and years of encounters with vital signs, laboratory panels,
//! immunizations, resolved problems and visit notes, as one transaction bundle.
//!
//! The generator first draws the person (age, body, risk factors, chronic conditions
//! with onset dates, allergies), then plans the visits of the history window
//! (well-child and annual visits, chronic follow-ups, diagnosis visits, clinic,
//! emergency and inpatient episodes, vaccination visits), then walks them in time
//! order. Every measured value is a function of the person's state at that time
//! (growth, diagnosed conditions, active medications), so the record is consistent.

use chrono::{Datelike, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use serde_json::{Map, Value, json};

use crate::fhir::{
    CVX, INTERP, LOINC, MRN, RXNORM, SCT, base64, cc, cc_only, date, dec, dt, meta, qty, reference, reference_d, tho,
};
use crate::rng::{Rng, mix};
use crate::shared::clinician_name;
use crate::tables::*;

const YEAR: f64 = 365.25;
const US_CORE_DOC_CATEGORY: &str = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category";

/// Whole years from `a` to `b`.
fn years_between(a: NaiveDate, b: NaiveDate) -> i64 {
    let mut y = i64::from(b.year()) - i64::from(a.year());
    if (b.month(), b.day()) < (a.month(), a.day()) {
        y -= 1;
    }
    y
}

fn at(d: NaiveDate, minutes: i64) -> NaiveDateTime {
    d.and_time(NaiveTime::MIN) + TimeDelta::minutes(minutes)
}

fn days(d: NaiveDate, n: i64) -> NaiveDate {
    d + TimeDelta::days(n)
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}

fn interp(xs: &[f64], ys: &[f64], x: f64) -> f64 {
    if x <= xs[0] {
        return ys[0];
    }
    for i in 1..xs.len() {
        if x <= xs[i] {
            let f = (x - xs[i - 1]) / (xs[i] - xs[i - 1]);
            return ys[i - 1] + f * (ys[i] - ys[i - 1]);
        }
    }
    ys[ys.len() - 1]
}

// Approximate CDC 50th percentiles by age (years).
const GROWTH_AGES: [f64; 22] = [
    0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0,
    18.0,
];
const HEIGHT_M: [f64; 22] = [
    50.0, 61.0, 67.0, 76.0, 82.0, 87.0, 96.0, 103.0, 110.0, 116.0, 122.0, 128.0, 133.0, 138.0, 143.0, 149.0, 156.0,
    164.0, 170.0, 173.0, 175.0, 176.0,
];
const HEIGHT_F: [f64; 22] = [
    49.0, 60.0, 65.5, 74.0, 80.5, 86.0, 95.0, 102.0, 109.0, 115.0, 121.0, 127.0, 133.0, 138.0, 144.0, 151.0, 157.0,
    160.0, 162.0, 163.0, 163.0, 163.0,
];
const WEIGHT_M: [f64; 22] = [
    3.5, 6.4, 7.9, 10.2, 11.5, 12.7, 14.3, 16.3, 18.4, 20.7, 23.0, 25.6, 28.6, 32.0, 35.6, 40.0, 45.3, 51.0, 56.3,
    60.8, 64.4, 67.0,
];
const WEIGHT_F: [f64; 22] = [
    3.4, 5.8, 7.3, 9.5, 10.9, 12.1, 14.0, 15.9, 18.0, 20.3, 22.8, 25.7, 29.0, 32.5, 36.9, 41.5, 45.8, 49.4, 52.0, 53.5,
    54.4, 56.0,
];
const HEAD_AGES: [f64; 6] = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0];
const HEAD: [f64; 6] = [34.5, 40.5, 43.5, 46.0, 47.5, 48.5];

/// Share of the population in each 5-year age band 0-4 .. 90-95 (roughly the US).
const AGE_BANDS: [f64; 19] =
    [6.0, 6.1, 6.3, 6.5, 6.6, 7.0, 7.0, 6.7, 6.3, 6.2, 6.4, 6.5, 6.2, 5.3, 4.3, 2.9, 1.9, 1.1, 0.6];

struct Person {
    female: bool,
    given: &'static str,
    middle: Option<&'static str>,
    family: &'static str,
    birth: NaiveDate,
    /// Height relative to the median; child weight relative to the median.
    hf: f64,
    wf: f64,
    bmi_base: f64,
    bmi_drift: f64,
    sbp_off: f64,
    hr_off: f64,
    a1c_norm: f64,
    a1c_dx: f64,
    a1c_target: f64,
    ldl_base: f64,
    hdl_base: f64,
    tg_base: f64,
    hb_base: f64,
    cr_base: f64,
    plt_base: f64,
    vax_prop: f64,
    /// 0 never, 1 former, 2 current smoker (adults).
    smoking: u8,
    gp: usize,
    peds: usize,
}

struct ChronicRec {
    kind: Chronic,
    onset: NaiveDate,
    id: String,
    recorded: Option<(NaiveDateTime, String, usize)>,
    resolved: Option<NaiveDateTime>,
}

struct AllergyRec {
    kind: &'static AllergyKind,
    onset: NaiveDate,
    recorded: bool,
}

struct Med {
    id: String,
    drug: &'static Drug,
    enc: String,
    pr: usize,
    start: NaiveDateTime,
    end: Option<NaiveDateTime>,
    reason: Option<String>,
    stop_reason: Option<&'static str>,
    /// When the patient began this therapy (earlier than `start` for renewals).
    therapy_start: NaiveDateTime,
    /// The order this one renews (index into `Gen::meds`).
    prior: Option<usize>,
    /// Ended because a renewal replaced it.
    renewed: bool,
}

#[derive(Clone, Copy)]
enum Kind {
    /// Milestone age in months for well-child visits.
    Wellness(Option<u32>),
    FollowUp,
    Diagnosis(usize),
    Clinic(&'static Acute),
    Emergency(&'static Acute),
    Inpatient(&'static Acute),
    Vaccination,
}

struct Visit {
    start: NaiveDateTime,
    end: NaiveDateTime,
    kind: Kind,
    vaccines: Vec<(&'static Vaccine, u32)>,
}

/// What happened at a visit, for its note.
#[derive(Default)]
struct Log {
    vitals: Vec<String>,
    allergies: Vec<String>,
    history: Vec<String>,
    assessment: Vec<String>,
    started: Vec<String>,
    renewed: Vec<String>,
    stopped: Vec<String>,
    vaccines: Vec<String>,
    labs: Vec<String>,
}

/// The encounter being generated.
#[derive(Clone)]
struct Ctx {
    enc: String,
    pr: usize,
    start: NaiveDateTime,
    end: NaiveDateTime,
    age: i64,
    agef: f64,
    infection: bool,
}

struct Gen {
    rng: Rng,
    refd: NaiveDate,
    /// The last instant anything may happen: the end of the reference date.
    limit: NaiveDateTime,
    start: NaiveDate,
    p: Person,
    pat: String,
    entries: Vec<Value>,
    chronic: Vec<ChronicRec>,
    allergies: Vec<AllergyRec>,
    meds: Vec<Med>,
    /// A second stream for what was added later (coronary artery disease, screening
    /// procedures), so adding it did not change what the first stream draws.
    side: Rng,
    last_mammogram: Option<NaiveDate>,
    /// Colorectal screening is up to date until this day.
    colorectal_until: Option<NaiveDate>,
    /// A third stream, for a child's vaccinations before the history window.
    history: Rng,
    /// The childhood schedule's visits before the window: (day, doses given).
    prior_doses: Vec<(NaiveDate, &'static [(&'static Vaccine, u32)])>,
}

/// The seed of a patient's second stream.
const SIDE_STREAM: u64 = 0x5343_5245_454E_0001;

/// The seed of a patient's third stream.
const HISTORY_STREAM: u64 = 0x5343_5245_454E_0002;

/// How many children have their vaccinations before the history window on record (the
/// others show the catch-up doses as due).
const PRIOR_ON_RECORD: f64 = 0.85;

pub(crate) fn bundle(seed: u64, refd: NaiveDate, years: u32, index: usize) -> Value {
    let mut g = Gen::new(mix(seed, index as u64), refd, years);
    let mrn = format!("SYN{:04X}-{:07}", mix(seed, 0x4D52_4E00) & 0xFFFF, index);
    g.run(&mrn);
    json!({"resourceType": "Bundle", "meta": meta(), "type": "transaction", "entry": g.entries})
}

impl Gen {
    fn new(seed: u64, refd: NaiveDate, years: u32) -> Self {
        let mut rng = Rng::new(seed);
        let band = rng.weighted(&AGE_BANDS) as f64;
        let age_days = rng.uniform(band * 5.0 * YEAR, (band + 1.0) * 5.0 * YEAR).max(1.0) as i64;
        let birth = days(refd, -age_days);
        let female = rng.chance(0.51);
        let given = *rng.pick(if female { GIVEN_FEMALE } else { GIVEN_MALE });
        let middle = rng.chance(0.6).then(|| *rng.pick(if female { GIVEN_FEMALE } else { GIVEN_MALE }));
        let family = *rng.pick(FAMILY);
        let p = Person {
            female,
            given,
            middle: middle.filter(|m| *m != given),
            family,
            birth,
            hf: rng.normal(1.0, 0.04),
            wf: rng.normal(1.0, 0.1).clamp(0.78, 1.35),
            bmi_base: rng.normal(27.5, 4.2).clamp(18.5, 42.0),
            bmi_drift: rng.normal(0.08, 0.08),
            sbp_off: rng.normal(0.0, 6.0),
            hr_off: rng.normal(0.0, 6.0),
            a1c_norm: rng.uniform(4.9, 5.6),
            a1c_dx: rng.uniform(7.2, 9.8),
            a1c_target: rng.uniform(6.6, 7.6),
            ldl_base: rng.normal(105.0, 18.0),
            hdl_base: if female { rng.normal(58.0, 9.0) } else { rng.normal(47.0, 7.0) },
            tg_base: rng.normal(115.0, 28.0),
            hb_base: if female { rng.normal(13.4, 0.6) } else { rng.normal(15.0, 0.7) },
            cr_base: if female { rng.normal(0.78, 0.08) } else { rng.normal(1.0, 0.1) },
            plt_base: rng.normal(255.0, 35.0),
            vax_prop: rng.uniform(0.2, 0.95),
            smoking: 0,
            gp: *rng.pick(ADULT_GPS),
            peds: *rng.pick(PEDIATRICIANS),
        };
        let window = refd.checked_sub_months(Months::new(years.min(150) * 12)).unwrap_or(birth);
        let mut g = Gen {
            rng,
            refd,
            limit: at(refd, 24 * 60 - 1),
            start: window.max(birth),
            p,
            pat: String::new(),
            entries: Vec::new(),
            chronic: Vec::new(),
            allergies: Vec::new(),
            meds: Vec::new(),
            side: Rng::new(mix(seed, SIDE_STREAM)),
            last_mammogram: None,
            colorectal_until: None,
            history: Rng::new(mix(seed, HISTORY_STREAM)),
            prior_doses: Vec::new(),
        };
        g.draw_conditions(age_days);
        let copd = g.chronic.iter().any(|c| c.kind == Chronic::Copd);
        g.p.smoking =
            if copd { if g.rng.chance(0.4) { 2 } else { 1 } } else { g.rng.weighted(&[68.0, 20.0, 12.0]) as u8 };
        g.draw_ascvd(age_days);
        g
    }

    /// Coronary artery disease, from the second stream: more likely with age, in men,
    /// in smokers and with diabetes or hypertension.
    fn draw_ascvd(&mut self, age_days: i64) {
        let age = years_between(self.p.birth, self.refd);
        let (mut p, min_onset) = Chronic::Ascvd.prevalence(age);
        if !self.p.female {
            p *= 1.4;
        }
        if self.p.smoking > 0
            || self.chronic.iter().any(|c| matches!(c.kind, Chronic::Diabetes | Chronic::Hypertension))
        {
            p *= 1.3;
        }
        if age < min_onset || !self.side.chance(p) {
            return;
        }
        let lo = ((min_onset.max(age - 15)) as f64 * YEAR) as i64;
        let hi = (((age + 1) as f64 * YEAR) as i64).min(age_days - 1);
        if hi <= lo {
            return;
        }
        let onset = days(self.p.birth, self.side.int(lo, hi));
        let id = self.side.uuid();
        self.chronic.push(ChronicRec { kind: Chronic::Ascvd, onset, id, recorded: None, resolved: None });
    }

    fn agef(&self, d: NaiveDate) -> f64 {
        (d - self.p.birth).num_days() as f64 / YEAR
    }

    fn draw_conditions(&mut self, age_days: i64) {
        let age = years_between(self.p.birth, self.refd);
        for kind in Chronic::ALL {
            let (mut p, min_onset) = kind.prevalence(age);
            if kind == Chronic::Diabetes && self.p.bmi_base >= 30.0 {
                p *= 1.6;
            }
            if age < min_onset || !self.rng.chance(p) {
                continue;
            }
            let span = match kind {
                Chronic::Hypertension => 25,
                Chronic::Diabetes | Chronic::Hyperlipidemia => 20,
                Chronic::Copd => 15,
                Chronic::Depression | Chronic::Ascvd => 12,
                Chronic::Asthma => 100,
            };
            let mut hi = age;
            if kind == Chronic::Asthma && self.rng.chance(0.7) {
                hi = age.min(12);
            }
            let lo = min_onset.max(age - span);
            let lo_days = (lo as f64 * YEAR) as i64;
            let hi_days = (((hi + 1) as f64 * YEAR) as i64).min(age_days - 1);
            if hi_days <= lo_days {
                continue;
            }
            let onset = days(self.p.birth, self.rng.int(lo_days, hi_days));
            let id = self.rng.uuid();
            self.chronic.push(ChronicRec { kind, onset, id, recorded: None, resolved: None });
        }
        for kind in ALLERGIES {
            if !self.rng.chance(kind.prevalence) {
                continue;
            }
            let lo = (kind.onset.0 as f64 * YEAR) as i64;
            let hi = ((kind.onset.1 as f64 * YEAR) as i64).min(age_days - 1);
            if hi <= lo {
                continue;
            }
            let onset = days(self.p.birth, self.rng.int(lo, hi));
            self.allergies.push(AllergyRec { kind, onset, recorded: false });
        }
    }

    fn onset_of(&self, kind: Chronic) -> Option<NaiveDate> {
        self.chronic.iter().find(|c| c.kind == kind).map(|c| c.onset)
    }

    /// Has the condition (diagnosed or not) at `t`.
    fn has(&self, kind: Chronic, t: NaiveDateTime) -> bool {
        self.chronic.iter().any(|c| c.kind == kind && c.onset <= t.date() && c.resolved.is_none_or(|r| r > t))
    }

    /// Days on the drug at `t`, if taking it.
    fn on(&self, drug: &Drug, t: NaiveDateTime) -> Option<f64> {
        self.meds
            .iter()
            .filter(|m| m.drug.code == drug.code && m.start <= t && m.end.is_none_or(|e| e > t))
            .map(|m| (t - m.therapy_start).num_minutes() as f64 / 1440.0)
            .reduce(f64::max)
    }

    // ---------------------------------------------------------------- planning

    fn clinic_slot(&mut self, d: NaiveDate) -> (NaiveDateTime, NaiveDateTime) {
        let start = at(d, 8 * 60 + 15 * self.rng.int(0, 34));
        let end = start + TimeDelta::minutes(self.rng.int(15, 40));
        (start, end)
    }

    fn plan(&mut self) -> Vec<Visit> {
        let mut visits = Vec::new();
        let (birth, start, refd) = (self.p.birth, self.start, self.refd);
        let in_window = |d: NaiveDate| d >= start && d < refd;

        // Well-child visits with the childhood schedule; a visit is no earlier after its
        // recommended age than the one before it, so the doses keep their intervals.
        let mut previous: Option<(NaiveDate, NaiveDate)> = None;
        for &(months, doses) in CHILD_SCHEDULE {
            let Some(base) = birth.checked_add_months(Months::new(months)) else { continue };
            let mut d = match months {
                0 => days(birth, self.rng.int(3, 5)),
                m if m >= 48 => days(base, self.rng.int(0, 30)),
                _ => days(base, self.rng.int(0, 14)),
            };
            if let Some((b, v)) = previous {
                d = d.max(v + (base - b));
            }
            previous = Some((base, d));
            if d >= birth && d < start && !doses.is_empty() {
                self.prior_doses.push((d, doses));
            }
            if in_window(d) {
                let (s, e) = self.clinic_slot(d);
                let vaccines = doses.iter().map(|&(v, n)| (v, n)).collect();
                visits.push(Visit { start: s, end: e, kind: Kind::Wellness(Some(months)), vaccines });
            }
        }

        // Annual visits for adults, with their vaccines.
        let anchor = self.rng.int(0, 364);
        let age_at_start = years_between(birth, start);
        let mut td_due = if age_at_start >= 21 {
            days(start, 3652 - self.rng.int(0, 3652))
        } else {
            birth.checked_add_months(Months::new(21 * 12)).unwrap_or(refd)
        };
        let shingrix = ymd(2018, 1, 1);
        let mut zoster_done = age_at_start > 50 && start >= shingrix && self.rng.chance(0.25);
        let mut pneumo: (u8, NaiveDate) = (if age_at_start >= 67 && self.rng.chance(0.4) { 2 } else { 0 }, start);
        for y in start.year()..=refd.year() {
            let Some(jan1) = NaiveDate::from_yo_opt(y, 1) else { continue };
            let d = days(jan1, anchor + self.rng.int(-20, 20));
            let age = years_between(birth, d);
            if age < 18 || !in_window(d) {
                continue;
            }
            let chronic = self.chronic.iter().any(|c| c.onset <= d);
            let attend = if chronic {
                1.0
            } else if age < 40 {
                0.8
            } else if age < 65 {
                0.9
            } else {
                0.97
            };
            if !self.rng.chance(attend) {
                continue;
            }
            let mut vaccines = Vec::new();
            if d >= td_due && self.rng.chance(0.8) {
                vaccines.push((&TD, 1));
                td_due = days(d, 3652);
            }
            let (s, e) = self.clinic_slot(d);
            if age >= 50 && d >= shingrix && !zoster_done && self.rng.chance(self.p.vax_prop) {
                zoster_done = true;
                vaccines.push((&ZOSTER, 1));
                let d2 = days(d, self.rng.int(60, 180));
                if in_window(d2) {
                    let (s2, e2) = self.clinic_slot(d2);
                    visits.push(Visit { start: s2, end: e2, kind: Kind::Vaccination, vaccines: vec![(&ZOSTER, 2)] });
                }
            }
            if age >= 65 && pneumo.0 == 0 {
                vaccines.push((&PCV13, 1));
                pneumo = (1, d);
            } else if pneumo.0 == 1 && (d - pneumo.1).num_days() >= 365 {
                vaccines.push((&PPSV23, 1));
                pneumo.0 = 2;
            }
            visits.push(Visit { start: s, end: e, kind: Kind::Wellness(None), vaccines });
        }

        // Seasonal influenza.
        for y in (start.year() - 1)..=refd.year() {
            let d = days(ymd(y, 9, 15), self.rng.int(0, 76));
            let agef = self.agef(d);
            if !in_window(d) || agef < 0.5 {
                continue;
            }
            let p = if agef < 18.0 {
                0.55
            } else if agef < 65.0 {
                0.4
            } else {
                0.7
            };
            if self.rng.chance((p * (0.5 + self.p.vax_prop)).min(0.95)) {
                let v = if agef < 18.0 || self.rng.chance(0.5) { &FLU_PF } else { &FLU };
                let (s, e) = self.clinic_slot(d);
                visits.push(Visit { start: s, end: e, kind: Kind::Vaccination, vaccines: vec![(v, 1)] });
            }
        }

        // COVID-19 (2021 on).
        let mut covid = Vec::new();
        let adult_2021 = years_between(birth, ymd(2021, 3, 1)) >= 18;
        let teen_2021 = (12..18).contains(&years_between(birth, ymd(2021, 6, 1)));
        if adult_2021 && self.rng.chance(0.45 + 0.45 * self.p.vax_prop) {
            let pfizer = self.rng.chance(0.6);
            let v: &'static Vaccine = if pfizer { &COVID_PFIZER } else { &COVID_MODERNA };
            let d1 = days(ymd(2021, 1, 15), self.rng.int(0, 136));
            covid.push((d1, v, 1));
            covid.push((days(d1, if pfizer { 21 } else { 28 }), v, 2));
            let mut n = 2;
            if self.rng.chance(0.6) {
                n += 1;
                covid.push((days(ymd(2021, 10, 1), self.rng.int(0, 150)), v, n));
            }
            if self.rng.chance(0.3) {
                covid.push((days(ymd(2023, 9, 15), self.rng.int(0, 90)), v, n + 1));
            }
        } else if teen_2021 && self.rng.chance(0.5) {
            let d1 = days(ymd(2021, 5, 15), self.rng.int(0, 100));
            covid.push((d1, &COVID_PFIZER, 1));
            covid.push((days(d1, 21), &COVID_PFIZER, 2));
        }
        for (d, v, n) in covid {
            if in_window(d) {
                let (s, e) = self.clinic_slot(d);
                visits.push(Visit { start: s, end: e, kind: Kind::Vaccination, vaccines: vec![(v, n)] });
            }
        }

        // Diagnosis visits for conditions starting in the window.
        for i in 0..self.chronic.len() {
            let d = self.chronic[i].onset;
            if in_window(d) {
                let (s, e) = self.clinic_slot(d);
                visits.push(Visit { start: s, end: e, kind: Kind::Diagnosis(i), vaccines: Vec::new() });
            }
        }

        // Chronic follow-ups.
        let copd = self.onset_of(Chronic::Copd);
        let follow_kinds = [Chronic::Hypertension, Chronic::Copd, Chronic::Depression];
        let well_days: Vec<NaiveDate> =
            visits.iter().filter(|v| matches!(v.kind, Kind::Wellness(_))).map(|v| v.start.date()).collect();
        let mut t = days(start, self.rng.int(30, 90));
        while t < refd {
            let dm = self.onset_of(Chronic::Diabetes).is_some_and(|o| o <= t);
            let other = follow_kinds.iter().any(|k| self.onset_of(*k).is_some_and(|o| o <= t));
            if !dm && !other {
                t = days(t, 30);
                continue;
            }
            if !well_days.iter().any(|w| (*w - t).num_days().abs() < 45) {
                let (s, e) = self.clinic_slot(t);
                visits.push(Visit { start: s, end: e, kind: Kind::FollowUp, vaccines: Vec::new() });
            }
            t = days(t, if dm { 91 } else { 182 } + self.rng.int(-14, 14));
        }

        // Problems, emergencies, admissions: a chance each month.
        let mut m = start;
        while m < refd {
            let age = years_between(birth, m);
            let has_copd = copd.is_some_and(|o| o <= m);
            let clinic_rate = match age {
                ..2 => 3.0,
                2..6 => 2.0,
                6..18 => 1.2,
                18..65 => 1.5,
                _ => 2.0,
            };
            let ed_rate = 0.08 + if has_copd { 0.3 } else { 0.0 };
            let ip_rate = match age {
                ..50 => 0.004,
                50..65 => 0.01,
                _ => 0.04,
            } + if has_copd { 0.15 } else { 0.0 };
            if self.rng.chance(clinic_rate / 12.0) {
                let d = days(m, self.rng.int(0, 27));
                let weights: Vec<f64> = CLINIC_PROBLEMS
                    .iter()
                    .map(|a| {
                        let fits = (a.min_age..=a.max_age).contains(&age);
                        let w = if a.code.code == "68566005" && !self.p.female { a.weight * 0.15 } else { a.weight };
                        if fits { w } else { 0.0 }
                    })
                    .collect();
                let a = &CLINIC_PROBLEMS[self.rng.weighted(&weights)];
                if in_window(d) && (a.min_age..=a.max_age).contains(&age) {
                    let (s, e) = self.clinic_slot(d);
                    visits.push(Visit { start: s, end: e, kind: Kind::Clinic(a), vaccines: Vec::new() });
                }
            }
            if self.rng.chance(ed_rate / 12.0) {
                let d = days(m, self.rng.int(0, 27));
                let a = if has_copd && self.rng.chance(0.6) {
                    &COPD_EXACERBATION
                } else {
                    let weights: Vec<f64> = ED_PROBLEMS
                        .iter()
                        .map(|a| if (a.min_age..=a.max_age).contains(&age) { a.weight } else { 0.0 })
                        .collect();
                    &ED_PROBLEMS[self.rng.weighted(&weights)]
                };
                if in_window(d) && (a.min_age..=a.max_age).contains(&age) {
                    let s = at(d, self.rng.int(0, 24 * 60 - 1));
                    let e = s + TimeDelta::minutes(self.rng.int(120, 360));
                    visits.push(Visit { start: s, end: e, kind: Kind::Emergency(a), vaccines: Vec::new() });
                }
            }
            if self.rng.chance(ip_rate / 12.0) {
                let d = days(m, self.rng.int(0, 27));
                let a = if has_copd && self.rng.chance(0.6) { &COPD_EXACERBATION } else { &PNEUMONIA };
                if in_window(d) {
                    let s = at(d, self.rng.int(0, 24 * 60 - 1));
                    let e = at(days(d, self.rng.int(2, 6)), 10 * 60 + self.rng.int(0, 240)).min(at(refd, 11 * 60));
                    visits.push(Visit { start: s, end: e, kind: Kind::Inpatient(a), vaccines: Vec::new() });
                }
            }
            let Some(next) = m.checked_add_months(Months::new(1)) else { break };
            m = next;
        }

        // Time order without overlaps; nothing may end after the reference date.
        visits.sort_by_key(|v| v.start);
        let mut out: Vec<Visit> = Vec::with_capacity(visits.len());
        let mut busy_until = NaiveDateTime::MIN;
        for mut v in visits {
            if v.start < busy_until {
                let shift = busy_until - v.start + TimeDelta::minutes(10);
                v.start += shift;
                v.end += shift;
            }
            if v.end > self.limit {
                continue;
            }
            busy_until = v.end;
            out.push(v);
        }
        out
    }

    // ---------------------------------------------------------------- emitting

    fn push_as(&mut self, id: &str, mut resource: Value) {
        let rtype = resource.get("resourceType").and_then(Value::as_str).unwrap_or("Basic").to_string();
        if let Value::Object(m) = &mut resource {
            m.insert("meta".into(), meta());
        }
        self.entries.push(json!({
            "fullUrl": format!("urn:uuid:{id}"),
            "resource": resource,
            "request": {"method": "POST", "url": rtype},
        }));
    }

    /// Adds a resource; returns its reference (`urn:uuid:...`).
    fn push(&mut self, resource: Value) -> String {
        let id = self.rng.uuid();
        self.push_as(&id, resource);
        format!("urn:uuid:{id}")
    }

    fn run(&mut self, mrn: &str) {
        let id = self.rng.uuid();
        self.pat = format!("urn:uuid:{id}");
        let patient = self.patient(mrn);
        self.push_as(&id, patient);
        let visits = self.plan();
        for (i, v) in visits.iter().enumerate() {
            self.visit(v, i == 0);
        }
        self.finish_conditions();
        self.finish_meds();
        if let Some(first) = visits.first() {
            self.prior_immunizations(first.start);
        }
    }

    /// A child's vaccinations given before the history window, recorded at the first
    /// visit in it from the family's written record (`primarySource` false), for most
    /// children; from the third stream.
    fn prior_immunizations(&mut self, recorded: NaiveDateTime) {
        if years_between(self.p.birth, self.refd) >= 19 || self.prior_doses.is_empty() {
            return;
        }
        if !self.history.chance(PRIOR_ON_RECORD) {
            return;
        }
        for (d, doses) in std::mem::take(&mut self.prior_doses) {
            for &(v, dose) in doses {
                let r = json!({
                    "resourceType": "Immunization",
                    "status": "completed",
                    "vaccineCode": cc(CVX, v.cvx, v.display),
                    "patient": reference(&self.pat),
                    "occurrenceDateTime": date(d),
                    "recorded": dt(recorded),
                    "primarySource": false,
                    "reportOrigin": cc(tho!("immunization-origin"), "record", "Written Record"),
                    "protocolApplied": [{"doseNumberPositiveInt": dose}],
                });
                let id = self.history.uuid();
                self.push_as(&id, r);
            }
        }
    }

    fn patient(&mut self, mrn: &str) -> Value {
        let age = years_between(self.p.birth, self.refd);
        let mut given = vec![self.p.given];
        given.extend(self.p.middle);
        let (city, state, zip) = *self.rng.pick(TOWNS);
        let mut line =
            vec![format!("{} {} {}", self.rng.int(2, 9800), self.rng.pick(STREETS), self.rng.pick(STREET_SUFFIX))];
        if self.rng.chance(0.25) {
            line.push(format!("Apt {}", self.rng.int(1, 40)));
        }
        let area = *self.rng.pick(&[617, 781, 508, 978, 413]);
        let mut telecom = vec![
            json!({"system": "phone", "value": format!("({area}) 555-01{:02}", self.rng.int(0, 99)), "use": "home"}),
        ];
        if age >= 13 {
            let email = format!(
                "{}.{}{}@example.com",
                self.p.given.to_lowercase(),
                self.p.family.to_lowercase(),
                self.rng.int(1, 99)
            );
            telecom.push(json!({"system": "email", "value": email, "use": "home"}));
        }
        let lang = match self.rng.weighted(&[82.0, 12.0, 2.0, 2.0, 2.0]) {
            0 => ("en-US", "English (United States)"),
            1 => ("es", "Spanish"),
            2 => ("vi", "Vietnamese"),
            3 => ("zh", "Chinese"),
            _ => ("fr", "French"),
        };
        let gp = if age < 18 { self.p.peds } else { self.p.gp };
        let mut p = json!({
            "resourceType": "Patient",
            "identifier": [{
                "use": "usual",
                "type": cc(tho!("v2-0203"), "MR", "Medical record number"),
                "system": MRN,
                "value": mrn,
            }],
            "active": true,
            "name": [{"use": "official", "family": self.p.family, "given": given}],
            "telecom": telecom,
            "gender": if self.p.female { "female" } else { "male" },
            "birthDate": date(self.p.birth),
            "address": [{
                "use": "home",
                "line": line,
                "city": city,
                "state": state,
                "postalCode": format!("{zip}{:02}", self.rng.int(1, 99)),
                "country": "US",
            }],
        });
        if age >= 18 {
            let w: [f64; 4] = match age {
                ..30 => [70.0, 27.0, 3.0, 0.0],
                30..50 => [30.0, 55.0, 15.0, 0.0],
                50..70 => [12.0, 60.0, 18.0, 10.0],
                _ => [7.0, 45.0, 8.0, 40.0],
            };
            let (code, display) =
                [("S", "Never Married"), ("M", "Married"), ("D", "Divorced"), ("W", "Widowed")][self.rng.weighted(&w)];
            p["maritalStatus"] = cc(tho!("v3-MaritalStatus"), code, display);
        }
        p["communication"] = json!([{"language": cc("urn:ietf:bcp:47", lang.0, lang.1), "preferred": true}]);
        p["generalPractitioner"] = json!([reference_d(&format!("Practitioner/{}", pr_id(gp)), &clinician_name(gp))]);
        p["managingOrganization"] = reference(&format!("Organization/{}", org_id(CLINICIANS[gp].org)));
        p
    }

    fn visit(&mut self, v: &Visit, first: bool) {
        let enc_id = self.rng.uuid();
        let enc = format!("urn:uuid:{enc_id}");
        let slot = self.entries.len();
        self.entries.push(Value::Null);
        let d = v.start.date();
        let age = years_between(self.p.birth, d);
        let pr = match v.kind {
            Kind::Emergency(_) => *self.rng.pick(ED_DOCS),
            Kind::Inpatient(_) => *self.rng.pick(HOSPITALISTS),
            _ if age < 18 => self.p.peds,
            _ => self.p.gp,
        };
        let infection = matches!(v.kind, Kind::Clinic(a) | Kind::Emergency(a) | Kind::Inpatient(a) if a.infection);
        let ctx = Ctx { enc: enc.clone(), pr, start: v.start, end: v.end, age, agef: self.agef(d), infection };
        let mut log = Log::default();
        let mut diagnoses: Vec<String> = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        let mut reason_code: Option<(&'static str, &'static str)> = None;

        // What is known by now and not yet on record.
        if first {
            for i in 0..self.chronic.len() {
                if self.chronic[i].onset < self.start {
                    self.record_chronic(i, &ctx, &mut log, true);
                }
            }
        }
        self.record_allergies(&ctx, &mut log);

        let t = v.start + TimeDelta::minutes(5);
        match v.kind {
            Kind::Wellness(_) => {
                self.vitals(&ctx, t, true, &mut log);
                if ctx.age >= 18 {
                    let lab_t = self.lab_time(&ctx);
                    self.cbc(&ctx, lab_t, &mut log);
                    self.bmp(&ctx, lab_t, &mut log);
                    if ctx.age >= 20 && (ctx.age >= 40 || self.has(Chronic::Hyperlipidemia, t) || self.rng.chance(0.3))
                    {
                        self.lipids(&ctx, lab_t, &mut log);
                    }
                    let statin = self.on(&ATORVASTATIN, t).or(self.on(&SIMVASTATIN, t)).is_some();
                    if ctx.age >= 40 || statin {
                        self.hepatic(&ctx, lab_t, &mut log);
                    }
                    if self.has(Chronic::Diabetes, t) || ctx.age >= 35 || self.p.bmi_base >= 30.0 {
                        self.a1c(&ctx, lab_t, &mut log);
                    }
                    if self.has(Chronic::Diabetes, t) {
                        self.microalbumin(&ctx, lab_t, &mut log);
                    }
                    self.smoking_status(&ctx, t, &mut log);
                    self.screen(&ctx, lab_t, &mut log);
                }
                if self.has(Chronic::Depression, t) {
                    self.phq9(&ctx, t, &mut log);
                } else if ctx.age >= 12 {
                    self.phq2(&ctx, t, &mut log);
                }
                self.renew(&ctx, &mut log);
            }
            Kind::FollowUp => {
                let bp = self.vitals(&ctx, t, false, &mut log);
                let lab_t = self.lab_time(&ctx);
                if self.has(Chronic::Diabetes, t) {
                    self.a1c(&ctx, lab_t, &mut log);
                }
                if (self.has(Chronic::Diabetes, t) || self.has(Chronic::Hypertension, t)) && self.rng.chance(0.35) {
                    self.bmp(&ctx, lab_t, &mut log);
                }
                if self.has(Chronic::Hyperlipidemia, t) && self.rng.chance(0.25) {
                    self.lipids(&ctx, lab_t, &mut log);
                }
                if self.has(Chronic::Depression, t) {
                    self.phq9(&ctx, t, &mut log);
                }
                self.manage(&ctx, bp, &mut log);
                self.renew(&ctx, &mut log);
                for c in &self.chronic {
                    if c.recorded.is_some() && c.resolved.is_none_or(|r| r > t) && c.onset <= d {
                        reasons.push(format!("urn:uuid:{}", c.id));
                    }
                }
            }
            Kind::Diagnosis(i) => {
                self.vitals(&ctx, t, false, &mut log);
                let kind = self.chronic[i].kind;
                let lab_t = self.lab_time(&ctx);
                match kind {
                    Chronic::Diabetes => {
                        self.a1c(&ctx, lab_t, &mut log);
                        self.bmp(&ctx, lab_t, &mut log);
                    }
                    Chronic::Hyperlipidemia => self.lipids(&ctx, lab_t, &mut log),
                    Chronic::Hypertension => self.bmp(&ctx, lab_t, &mut log),
                    Chronic::Depression => self.phq9(&ctx, t, &mut log),
                    _ => {}
                }
                if self.chronic[i].recorded.is_none() {
                    let r = self.record_chronic(i, &ctx, &mut log, false);
                    diagnoses.push(r);
                }
                let code = kind.code();
                reason_code = Some((code.code, code.display));
            }
            Kind::Clinic(a) | Kind::Emergency(a) => {
                self.vitals(&ctx, t, false, &mut log);
                if matches!(v.kind, Kind::Emergency(_))
                    && (a.code.code == "29857009" || a.infection || a.code.code == "195951007")
                {
                    let lab_t = self.lab_time(&ctx);
                    self.cbc(&ctx, lab_t, &mut log);
                    self.bmp(&ctx, lab_t, &mut log);
                }
                if a.painful && ctx.agef >= 5.0 {
                    self.pain(&ctx, t, &mut log);
                }
                diagnoses.push(self.acute(a, &ctx, &mut log));
                reason_code = Some((a.code.code, a.code.display));
            }
            Kind::Inpatient(a) => {
                let mut day = v.start.date();
                let mut n = 0;
                while at(day, 8 * 60) < v.end || n == 0 {
                    let vt = if n == 0 { t } else { at(day, 8 * 60 + self.rng.int(0, 60)) };
                    if vt > v.end {
                        break;
                    }
                    let sick = Ctx { infection: infection && n < 2, ..ctx.clone() };
                    if n == 0 {
                        self.vitals(&sick, vt, false, &mut log);
                    } else {
                        let mut scratch = Log::default();
                        self.vitals_inpatient(&sick, vt, &mut scratch);
                    }
                    if n % 2 == 0 {
                        let lab_t = (vt + TimeDelta::minutes(30)).min(v.end);
                        let mut scratch = Log::default();
                        let l = if n == 0 { &mut log } else { &mut scratch };
                        self.cbc(&sick, lab_t, l);
                        self.bmp(&sick, lab_t, l);
                    }
                    n += 1;
                    day = days(day, 1);
                }
                diagnoses.push(self.acute(a, &ctx, &mut log));
                reason_code = Some((a.code.code, a.code.display));
            }
            Kind::Vaccination => {}
        }
        for &(vac, dose) in &v.vaccines {
            self.immunize(vac, dose, &ctx, &mut log);
        }

        let (class, class_display, ty) = match v.kind {
            Kind::Wellness(_) if age < 18 => ("AMB", "ambulatory", ("410620009", "Well child visit (procedure)")),
            Kind::Wellness(_) => ("AMB", "ambulatory", ("185349003", "Encounter for check up (procedure)")),
            Kind::FollowUp => ("AMB", "ambulatory", ("390906007", "Follow-up encounter (procedure)")),
            Kind::Diagnosis(_) | Kind::Clinic(_) => {
                ("AMB", "ambulatory", ("185347001", "Encounter for problem (procedure)"))
            }
            Kind::Emergency(_) => ("EMER", "emergency", ("50849002", "Emergency room admission (procedure)")),
            Kind::Inpatient(_) => ("IMP", "inpatient encounter", ("32485007", "Hospital admission (procedure)")),
            Kind::Vaccination => {
                ("AMB", "ambulatory", ("33879002", "Administration of vaccine to produce active immunity (procedure)"))
            }
        };
        let ptype = if matches!(v.kind, Kind::Emergency(_) | Kind::Inpatient(_)) {
            ("ATND", "attender")
        } else {
            ("PPRF", "primary performer")
        };
        let org = CLINICIANS[pr].org;
        let period = json!({"start": dt(v.start), "end": dt(v.end)});
        let mut e = json!({
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": tho!("v3-ActCode"), "code": class, "display": class_display},
            "type": [cc(SCT, ty.0, ty.1)],
            "subject": reference(&self.pat),
            "participant": [{
                "type": [cc_only(tho!("v3-ParticipationType"), ptype.0, ptype.1)],
                "period": period,
                "individual": reference_d(&format!("Practitioner/{}", pr_id(pr)), &clinician_name(pr)),
            }],
            "period": period,
        });
        if let Some((code, display)) = reason_code {
            e["reasonCode"] = json!([cc(SCT, code, display)]);
        }
        let reasons: Vec<Value> = reasons.iter().filter(|r| !diagnoses.contains(r)).map(|r| reference(r)).collect();
        if !reasons.is_empty() {
            e["reasonReference"] = Value::Array(reasons);
        }
        if !diagnoses.is_empty() {
            e["diagnosis"] = Value::Array(
                diagnoses.iter().enumerate().map(|(i, r)| json!({"condition": reference(r), "rank": i + 1})).collect(),
            );
        }
        if matches!(v.kind, Kind::Inpatient(_)) {
            e["hospitalization"] = json!({
                "admitSource": cc(tho!("admit-source"), "emd", "From accident/emergency department"),
                "dischargeDisposition": cc(tho!("discharge-disposition"), "home", "Home"),
            });
        }
        e["location"] = json!([{"location": reference_d(&format!("Location/{}", loc_id(org)), ORGS[org].name)}]);
        e["serviceProvider"] = reference_d(&format!("Organization/{}", org_id(org)), ORGS[org].name);
        if let Value::Object(m) = &mut e {
            m.insert("meta".into(), meta());
        }
        self.entries[slot] = json!({
            "fullUrl": enc,
            "resource": e,
            "request": {"method": "POST", "url": "Encounter"},
        });

        if !matches!(v.kind, Kind::Vaccination) {
            self.note(v, &ctx, ty.1, &log);
        }
    }

    fn lab_time(&mut self, ctx: &Ctx) -> NaiveDateTime {
        let span = (ctx.end - ctx.start).num_minutes().max(1);
        ctx.start + TimeDelta::minutes(self.rng.int(span / 2, span))
    }

    // ---------------------------------------------------------------- conditions, allergies, medications

    fn record_chronic(&mut self, i: usize, ctx: &Ctx, log: &mut Log, history: bool) -> String {
        let kind = self.chronic[i].kind;
        self.chronic[i].recorded = Some((ctx.start, ctx.enc.clone(), ctx.pr));
        let r = format!("urn:uuid:{}", self.chronic[i].id);
        if history {
            log.history.push(format!("{} (since {})", kind.short(), self.chronic[i].onset.year()));
        } else {
            log.assessment.push(format!("New diagnosis: {}", kind.short()));
        }
        let drugs: Vec<&'static Drug> = match kind {
            Chronic::Hypertension => {
                vec![[&LISINOPRIL, &AMLODIPINE, &HCTZ][self.rng.weighted(&[0.7, 0.2, 0.1])]]
            }
            Chronic::Diabetes => vec![&METFORMIN],
            Chronic::Hyperlipidemia => vec![if self.rng.chance(0.75) { &ATORVASTATIN } else { &SIMVASTATIN }],
            Chronic::Asthma => {
                let mut v: Vec<&'static Drug> = vec![&ALBUTEROL];
                if self.rng.chance(0.5) {
                    v.push(&FLUTICASONE);
                }
                v
            }
            Chronic::Copd => vec![&TIOTROPIUM, &ALBUTEROL],
            Chronic::Depression => vec![&SERTRALINE],
            // a statin, unless one is taken already (most, not all, are prescribed one)
            Chronic::Ascvd => {
                let on_statin = self.on(&ATORVASTATIN, ctx.end).or(self.on(&SIMVASTATIN, ctx.end)).is_some();
                if !on_statin && self.side.chance(0.8) { vec![&ATORVASTATIN] } else { Vec::new() }
            }
        };
        for d in drugs {
            if self.on(d, ctx.end).is_none() {
                self.start_med(d, ctx, Some(r.clone()), log);
            }
        }
        r
    }

    fn start_med(&mut self, drug: &'static Drug, ctx: &Ctx, reason: Option<String>, log: &mut Log) {
        let start = ctx.end - TimeDelta::minutes(2);
        let end = (drug.days > 0).then(|| start + TimeDelta::days(i64::from(drug.days)));
        let id = self.rng.uuid();
        self.meds.push(Med {
            id,
            drug,
            enc: ctx.enc.clone(),
            pr: ctx.pr,
            start,
            end,
            reason,
            stop_reason: None,
            therapy_start: start,
            prior: None,
            renewed: false,
        });
        log.started.push(format!("{} - {}", drug.short, drug.sig));
    }

    /// Maintenance orders run a year (a 30-day supply and 11 refills): renew those
    /// about to run out, linking the new order to the old one.
    fn renew(&mut self, ctx: &Ctx, log: &mut Log) {
        let t = ctx.end - TimeDelta::minutes(2);
        for i in 0..self.meds.len() {
            let m = &self.meds[i];
            if m.drug.days > 0 || m.end.is_some() || (t - m.start).num_days() < 300 {
                continue;
            }
            let (drug, reason, therapy_start) = (m.drug, m.reason.clone(), m.therapy_start);
            self.meds[i].end = Some(t);
            self.meds[i].renewed = true;
            let id = self.rng.uuid();
            self.meds.push(Med {
                id,
                drug,
                enc: ctx.enc.clone(),
                pr: ctx.pr,
                start: t,
                end: None,
                reason,
                stop_reason: None,
                therapy_start,
                prior: Some(i),
                renewed: false,
            });
            log.renewed.push(drug.short.to_string());
        }
    }

    fn stop_med(&mut self, drug: &Drug, t: NaiveDateTime, why: &'static str, log: &mut Log) {
        for m in &mut self.meds {
            if m.drug.code == drug.code && m.end.is_none() {
                m.end = Some(t);
                m.stop_reason = Some(why);
                log.stopped.push(format!("{} ({why})", m.drug.short));
            }
        }
    }

    /// Chronic care decisions at a follow-up.
    fn manage(&mut self, ctx: &Ctx, bp: Option<(f64, f64)>, log: &mut Log) {
        let t = ctx.end - TimeDelta::minutes(2);
        let htn = self.chronic.iter().position(|c| c.kind == Chronic::Hypertension && c.recorded.is_some());
        if let Some(i) = htn {
            let reason = format!("urn:uuid:{}", self.chronic[i].id);
            if self.on(&LISINOPRIL, t).is_some_and(|d| d > 60.0) && self.rng.chance(0.03) {
                self.stop_med(&LISINOPRIL, t, "dry cough", log);
                if self.on(&AMLODIPINE, t).is_none() {
                    self.start_med(&AMLODIPINE, ctx, Some(reason.clone()), log);
                }
            }
            let meds = [&LISINOPRIL, &AMLODIPINE, &HCTZ];
            let on: Vec<f64> = meds.iter().filter_map(|d| self.on(d, t)).collect();
            if let Some((sbp, _)) = bp
                && sbp >= 140.0
                && on.len() == 1
                && on[0] > 180.0
            {
                log.assessment.push("Blood pressure above goal on one agent; adding a second".into());
                if let Some(d) = meds.iter().find(|d| self.on(d, t).is_none()) {
                    self.start_med(d, ctx, Some(reason), log);
                }
            }
        }
        let dep = self
            .chronic
            .iter()
            .position(|c| c.kind == Chronic::Depression && c.recorded.is_some() && c.resolved.is_none());
        if let Some(i) = dep
            && self.on(&SERTRALINE, t).is_some_and(|d| d > 365.0)
            && self.rng.chance(0.15)
        {
            self.stop_med(&SERTRALINE, t, "symptoms in sustained remission", log);
            self.chronic[i].resolved = Some(t);
            log.assessment.push("Depression in remission; sertraline tapered off".into());
        }
        for c in &self.chronic {
            if c.recorded.is_some() && c.resolved.is_none() && c.onset <= t.date() {
                log.assessment.push(format!("{}: stable, continue current plan", c.kind.short()));
            }
        }
    }

    fn record_allergies(&mut self, ctx: &Ctx, log: &mut Log) {
        for i in 0..self.allergies.len() {
            let a = &self.allergies[i];
            if a.recorded || a.onset > ctx.start.date() {
                continue;
            }
            let (kind, onset) = (a.kind, a.onset);
            self.allergies[i].recorded = true;
            let high = self.rng.chance(kind.high_criticality);
            let manifestation =
                if high && kind.category != "environment" { &ANAPHYLAXIS } else { self.rng.pick(kind.reactions) };
            let severity = if high {
                "severe"
            } else if self.rng.chance(0.5) {
                "moderate"
            } else {
                "mild"
            };
            let r = json!({
                "resourceType": "AllergyIntolerance",
                "clinicalStatus": cc(tho!("allergyintolerance-clinical"), "active", "Active"),
                "verificationStatus": cc(tho!("allergyintolerance-verification"), "confirmed", "Confirmed"),
                "type": "allergy",
                "category": [kind.category],
                "criticality": if high { "high" } else { "low" },
                "code": cc(SCT, kind.code.code, kind.code.display),
                "patient": reference(&self.pat),
                "encounter": reference(&ctx.enc),
                "onsetDateTime": date(onset),
                "recordedDate": dt(ctx.start),
                "recorder": reference(&format!("Practitioner/{}", pr_id(ctx.pr))),
                "reaction": [{
                    "manifestation": [cc(SCT, manifestation.code, manifestation.display)],
                    "severity": severity,
                }],
            });
            self.push(r);
            log.allergies.push(format!("{} ({})", kind.short, manifestation.display));
        }
    }

    fn allergic(&self, short: &str) -> bool {
        self.allergies.iter().any(|a| a.recorded && a.kind.short == short)
    }

    /// A problem that resolves, with its treatment; returns the Condition reference.
    fn acute(&mut self, a: &'static Acute, ctx: &Ctx, log: &mut Log) -> String {
        let onset = days(ctx.start.date(), -self.rng.int(0, 4)).max(self.p.birth);
        let abates = days(onset, a.days + self.rng.int(-2, 7));
        let mut c = json!({
            "resourceType": "Condition",
            "clinicalStatus": cc_only(tho!("condition-clinical"),
                if abates <= self.refd { "resolved" } else { "active" },
                if abates <= self.refd { "Resolved" } else { "Active" }),
            "verificationStatus": cc_only(tho!("condition-ver-status"), "confirmed", "Confirmed"),
            "category": [cc_only(tho!("condition-category"), "encounter-diagnosis", "Encounter Diagnosis")],
            "code": cc(SCT, a.code.code, a.code.display),
            "subject": reference(&self.pat),
            "encounter": reference(&ctx.enc),
            "onsetDateTime": date(onset),
        });
        if abates <= self.refd {
            c["abatementDateTime"] = json!(date(abates));
        }
        c["recordedDate"] = json!(dt(ctx.start));
        c["recorder"] = reference(&format!("Practitioner/{}", pr_id(ctx.pr)));
        let r = self.push(c);
        log.assessment.push(format!("{} ({})", a.short, a.code.display));
        if let Some(mut drug) = a.drug {
            let child = ctx.agef < 12.0;
            if std::ptr::eq(drug, &PENICILLIN_V) || std::ptr::eq(drug, &AMOXICILLIN) {
                if self.allergic("penicillin") {
                    drug = if child { &AZITHROMYCIN_LIQUID } else { &AZITHROMYCIN };
                    log.assessment.push("Penicillin allergy on record: macrolide chosen".into());
                } else if child {
                    drug = &AMOXICILLIN_LIQUID;
                }
            } else if std::ptr::eq(drug, &IBUPROFEN) && child {
                drug = &IBUPROFEN_LIQUID;
            } else if std::ptr::eq(drug, &SMX_TMP) && self.allergic("sulfonamides") {
                drug = &CIPROFLOXACIN;
                log.assessment.push("Sulfonamide allergy on record: fluoroquinolone chosen".into());
            }
            self.start_med(drug, ctx, Some(r.clone()), log);
        }
        r
    }

    fn finish_conditions(&mut self) {
        let chronic = std::mem::take(&mut self.chronic);
        for c in &chronic {
            let Some((when, enc, pr)) = &c.recorded else { continue };
            let code = c.kind.code();
            let (status, display) = if c.resolved.is_some() { ("resolved", "Resolved") } else { ("active", "Active") };
            let onset = if c.onset < self.start { json!(date(c.onset)) } else { json!(dt(*when)) };
            let mut r = json!({
                "resourceType": "Condition",
                "clinicalStatus": cc_only(tho!("condition-clinical"), status, display),
                "verificationStatus": cc_only(tho!("condition-ver-status"), "confirmed", "Confirmed"),
                "category": [cc_only(tho!("condition-category"), "problem-list-item", "Problem List Item")],
                "code": cc(SCT, code.code, code.display),
                "subject": reference(&self.pat),
                "encounter": reference(enc),
                "onsetDateTime": onset,
            });
            if let Some(t) = c.resolved {
                r["abatementDateTime"] = json!(dt(t));
            }
            r["recordedDate"] = json!(dt(*when));
            r["recorder"] = reference(&format!("Practitioner/{}", pr_id(*pr)));
            r["asserter"] = reference(&format!("Practitioner/{}", pr_id(*pr)));
            self.push_as(&c.id, r);
        }
        self.chronic = chronic;
    }

    fn finish_meds(&mut self) {
        let meds = std::mem::take(&mut self.meds);
        for m in &meds {
            let d = m.drug;
            let course_end = m.end.unwrap_or(self.limit);
            let status = match (d.days > 0, m.end) {
                (true, _) if course_end <= self.limit => "completed",
                (true, _) => "active",
                (false, Some(_)) if m.renewed => "completed",
                (false, Some(_)) => "stopped",
                (false, None) => "active",
            };
            let mut repeat = Map::new();
            if d.days > 0 {
                repeat.insert("boundsDuration".into(), qty(f64::from(d.days), 0, "days", "d"));
            } else {
                let mut b = json!({"start": dt(m.start)});
                if let Some(e) = m.end {
                    b["end"] = json!(dt(e));
                }
                repeat.insert("boundsPeriod".into(), b);
            }
            repeat.insert("frequency".into(), json!(d.frequency));
            repeat.insert("period".into(), json!(d.period));
            repeat.insert("periodUnit".into(), json!(d.period_unit));
            let mut r = json!({
                "resourceType": "MedicationRequest",
                "status": status,
            });
            if let Some(why) = m.stop_reason {
                r["statusReason"] = json!({"text": why});
            }
            r["intent"] = json!("order");
            r["category"] = json!([cc_only(tho!("medicationrequest-category"), "community", "Community")]);
            r["medicationCodeableConcept"] = cc(RXNORM, d.code, d.display);
            r["subject"] = reference(&self.pat);
            r["encounter"] = reference(&m.enc);
            r["authoredOn"] = json!(dt(m.start));
            r["requester"] = reference_d(&format!("Practitioner/{}", pr_id(m.pr)), &clinician_name(m.pr));
            if let Some(reason) = &m.reason {
                r["reasonReference"] = json!([reference(reason)]);
            }
            if let Some(p) = m.prior {
                r["priorPrescription"] = reference(&format!("urn:uuid:{}", meds[p].id));
            }
            r["dosageInstruction"] = json!([{
                "sequence": 1,
                "text": d.sig,
                "timing": {"repeat": repeat},
                "asNeededBoolean": d.as_needed,
                "route": cc(SCT, d.route.code, d.route.display),
                "doseAndRate": [{"doseQuantity": qty(f64::from(d.dose), 0, d.unit, d.unit_code)}],
            }]);
            if d.days == 0 {
                r["dispenseRequest"] = json!({
                    "numberOfRepeatsAllowed": 11,
                    "expectedSupplyDuration": qty(30.0, 0, "days", "d"),
                });
            }
            self.push_as(&m.id, r);
        }
        self.meds = meds;
    }

    // ---------------------------------------------------------------- immunizations

    fn immunize(&mut self, v: &'static Vaccine, dose: u32, ctx: &Ctx, log: &mut Log) {
        let t = ctx.start + TimeDelta::minutes(((ctx.end - ctx.start).num_minutes() - 3).max(1));
        let route = match v.route {
            "PO" => ("PO", "Swallow, oral"),
            "SQ" => ("SQ", "Injection, subcutaneous"),
            _ => ("IM", "Injection, intramuscular"),
        };
        let mut r = json!({
            "resourceType": "Immunization",
            "status": "completed",
            "vaccineCode": cc(CVX, v.cvx, v.display),
            "patient": reference(&self.pat),
            "encounter": reference(&ctx.enc),
            "occurrenceDateTime": dt(t),
            "recorded": dt(t),
            "primarySource": true,
            "lotNumber": format!("SYN{:05}", self.rng.int(10000, 99999)),
        });
        if v.route != "PO" {
            let site = match (ctx.agef < 3.0, self.rng.chance(0.5)) {
                (true, true) => ("LT", "left thigh"),
                (true, false) => ("RT", "right thigh"),
                (false, true) => ("LA", "left arm"),
                (false, false) => ("RA", "right arm"),
            };
            r["site"] = cc(tho!("v3-ActSite"), site.0, site.1);
        }
        r["route"] = cc(tho!("v3-RouteOfAdministration"), route.0, route.1);
        r["performer"] = json!([{"actor": reference(&format!("Practitioner/{}", pr_id(ctx.pr)))}]);
        r["protocolApplied"] = json!([{"doseNumberPositiveInt": dose}]);
        self.push(r);
        log.vaccines.push(format!("{} dose {dose}", v.short));
    }

    // ---------------------------------------------------------------- vital signs

    fn height_cm(&self, agef: f64) -> f64 {
        let table = if self.p.female { &HEIGHT_F } else { &HEIGHT_M };
        let h = interp(&GROWTH_AGES, table, agef) * self.p.hf;
        if agef > 70.0 { h - 0.1 * (agef - 70.0) } else { h }
    }

    fn weight_kg(&self, agef: f64) -> f64 {
        let table = if self.p.female { &WEIGHT_F } else { &WEIGHT_M };
        if agef < 18.0 {
            return interp(&GROWTH_AGES, table, agef) * self.p.wf;
        }
        let h18 = self.height_cm(18.0) / 100.0;
        let b18 = table[table.len() - 1] * self.p.wf / (h18 * h18);
        let mut bmi = b18 + (self.p.bmi_base - b18) * ((agef - 18.0) / 22.0).clamp(0.0, 1.0);
        bmi += self.p.bmi_drift * (agef - 40.0).clamp(0.0, 25.0);
        if agef > 75.0 {
            bmi -= 0.1 * (agef - 75.0);
        }
        let h = self.height_cm(agef) / 100.0;
        bmi.max(16.0) * h * h
    }

    fn blood_pressure(&mut self, agef: f64, t: NaiveDateTime) -> (f64, f64) {
        let (sbp, dbp) = if agef < 18.0 {
            let x = (agef - 3.0).max(0.0);
            (95.0 + 1.4 * x + 0.5 * self.p.sbp_off, 56.0 + 0.9 * x)
        } else {
            let mut s = 114.0 + 0.45 * (agef - 30.0).max(0.0) + self.p.sbp_off;
            if self.has(Chronic::Hypertension, t) {
                let n = [&LISINOPRIL, &AMLODIPINE, &HCTZ].iter().filter(|d| self.on(d, t).is_some()).count();
                s += 24.0 - 10.0 * n as f64;
            }
            (s, 0.55 * s + 10.0)
        };
        let s = (sbp + self.rng.normal(0.0, 5.0)).round();
        let d = (dbp + self.rng.normal(0.0, 4.0)).round().min(s - 20.0);
        (s, d)
    }

    fn vital(&mut self, ctx: &Ctx, t: NaiveDateTime, code: &str, display: &str, value: Value) {
        let r = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [cc_only(tho!("observation-category"), "vital-signs", "Vital Signs")],
            "code": cc(LOINC, code, display),
            "subject": reference(&self.pat),
            "encounter": reference(&ctx.enc),
            "effectiveDateTime": dt(t),
            "issued": dt(t),
            "performer": [reference(&format!("Practitioner/{}", pr_id(ctx.pr)))],
            "valueQuantity": value,
        });
        self.push(r);
    }

    fn bp_obs(&mut self, ctx: &Ctx, t: NaiveDateTime, sbp: f64, dbp: f64) {
        let r = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [cc_only(tho!("observation-category"), "vital-signs", "Vital Signs")],
            "code": cc(LOINC, "85354-9", "Blood pressure panel with all children optional"),
            "subject": reference(&self.pat),
            "encounter": reference(&ctx.enc),
            "effectiveDateTime": dt(t),
            "issued": dt(t),
            "performer": [reference(&format!("Practitioner/{}", pr_id(ctx.pr)))],
            "component": [
                {
                    "code": cc(LOINC, "8480-6", "Systolic blood pressure"),
                    "valueQuantity": qty(sbp, 0, "mmHg", "mm[Hg]"),
                },
                {
                    "code": cc(LOINC, "8462-4", "Diastolic blood pressure"),
                    "valueQuantity": qty(dbp, 0, "mmHg", "mm[Hg]"),
                },
            ],
        });
        self.push(r);
    }

    /// Heart rate, respiratory rate, temperature, SpO2 (and blood pressure from age 3).
    fn core_vitals(&mut self, ctx: &Ctx, t: NaiveDateTime, log: &mut Log) -> Option<(f64, f64)> {
        let agef = ctx.agef;
        let copd = self.has(Chronic::Copd, t);
        let bp = (agef >= 3.0).then(|| self.blood_pressure(agef, t));
        if let Some((s, d)) = bp {
            self.bp_obs(ctx, t, s, d);
            log.vitals.push(format!("BP {s:.0}/{d:.0} mmHg"));
        }
        let fever = if ctx.infection { self.rng.uniform(1.2, 2.4) } else { 0.0 };
        let hr_base =
            interp(&[0.0, 1.0, 3.0, 6.0, 10.0, 15.0, 18.0], &[135.0, 120.0, 105.0, 95.0, 85.0, 76.0, 72.0], agef);
        let hr = (hr_base + self.p.hr_off + 8.0 * fever + self.rng.normal(0.0, 4.0)).round();
        self.vital(ctx, t, "8867-4", "Heart rate", qty(hr, 0, "/min", "/min"));
        let rr_base = interp(&[0.0, 1.0, 3.0, 6.0, 12.0, 18.0], &[40.0, 30.0, 24.0, 21.0, 18.0, 15.0], agef);
        let rr = (rr_base + 2.0 * fever + if copd { 3.0 } else { 0.0 } + self.rng.normal(0.0, 1.2)).round();
        self.vital(ctx, t, "9279-1", "Respiratory rate", qty(rr, 0, "/min", "/min"));
        let temp = self.rng.normal(36.8, 0.2) + fever;
        self.vital(ctx, t, "8310-5", "Body temperature", qty(temp, 1, "Cel", "Cel"));
        let spo2 =
            (if copd { self.rng.normal(92.5, 1.2) } else { self.rng.normal(98.0, 0.8) } - fever).round().min(100.0);
        self.vital(ctx, t, "2708-6", "Oxygen saturation in Arterial blood", qty(spo2, 0, "%", "%"));
        log.vitals.push(format!("HR {hr:.0}/min, RR {rr:.0}/min, Temp {temp:.1} C, SpO2 {spo2:.0}%"));
        bp
    }

    /// Vital signs of a visit; `full` adds height, BMI and (under 2) head circumference.
    /// Returns the blood pressure, if measured.
    fn vitals(&mut self, ctx: &Ctx, t: NaiveDateTime, full: bool, log: &mut Log) -> Option<(f64, f64)> {
        let agef = ctx.agef;
        let bp = self.core_vitals(ctx, t, log);
        let w = (self.weight_kg(agef) * (1.0 + self.rng.normal(0.0, 0.01)) * 10.0).round() / 10.0;
        self.vital(ctx, t, "29463-7", "Body weight", qty(w, 1, "kg", "kg"));
        log.vitals.push(format!("Weight {w:.1} kg"));
        if full || agef < 2.0 {
            let h = ((self.height_cm(agef) + self.rng.normal(0.0, 0.3)) * 10.0).round() / 10.0;
            self.vital(ctx, t, "8302-2", "Body height", qty(h, 1, "cm", "cm"));
            log.vitals.push(format!("Height {h:.1} cm"));
            if agef >= 2.0 {
                let bmi = w / (h / 100.0 * h / 100.0);
                self.vital(ctx, t, "39156-5", "Body mass index (BMI) [Ratio]", qty(bmi, 1, "kg/m2", "kg/m2"));
                log.vitals.push(format!("BMI {bmi:.1} kg/m2"));
            } else {
                let hc = interp(&HEAD_AGES, &HEAD, agef) * self.p.hf - if self.p.female { 0.8 } else { 0.0 };
                let hc = hc + self.rng.normal(0.0, 0.3);
                self.vital(ctx, t, "9843-4", "Head Occipital-frontal circumference", qty(hc, 1, "cm", "cm"));
                log.vitals.push(format!("Head circumference {hc:.1} cm"));
            }
        }
        bp
    }

    fn vitals_inpatient(&mut self, ctx: &Ctx, t: NaiveDateTime, log: &mut Log) {
        self.core_vitals(ctx, t, log);
    }

    // ---------------------------------------------------------------- other observations

    fn simple_obs(
        &mut self,
        ctx: &Ctx,
        t: NaiveDateTime,
        category: (&str, &str),
        code: (&str, &str),
        value: (&str, Value),
    ) {
        let mut r = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [cc_only(tho!("observation-category"), category.0, category.1)],
            "code": cc(LOINC, code.0, code.1),
            "subject": reference(&self.pat),
            "encounter": reference(&ctx.enc),
            "effectiveDateTime": dt(t),
            "issued": dt(t),
            "performer": [reference(&format!("Practitioner/{}", pr_id(ctx.pr)))],
        });
        r[value.0] = value.1;
        self.push(r);
    }

    /// Cancer screening at an adult's annual visit, from the second stream: a screening
    /// mammogram every two years or so for women 40 to 74, and for 45 to 75 a colonoscopy
    /// (good for ten years) or a stool immunochemical test (FIT, one year), each taken
    /// up by some patients more than others.
    fn screen(&mut self, ctx: &Ctx, t: NaiveDateTime, log: &mut Log) {
        let d = t.date();
        let willing = 0.3 + 0.6 * self.p.vax_prop;
        if self.p.female
            && (40..75).contains(&ctx.age)
            && self.last_mammogram.is_none_or(|m| (d - m).num_days() >= 700)
            && self.side.chance(willing)
        {
            self.procedure(ctx, t, &MAMMOGRAM);
            self.last_mammogram = Some(d);
            log.assessment.push("Screening mammogram".into());
        }
        if (45..76).contains(&ctx.age) && self.colorectal_until.is_none_or(|u| d >= u) && self.side.chance(willing) {
            if self.side.chance(0.5) {
                self.procedure(ctx, t, &COLONOSCOPY);
                self.colorectal_until = Some(days(d, 3652));
                log.assessment.push("Screening colonoscopy".into());
            } else {
                let positive = self.side.chance(0.05);
                let (code, display) = if positive {
                    ("10828004", "Positive (qualifier value)")
                } else {
                    ("260385009", "Negative (qualifier value)")
                };
                let r = json!({
                    "resourceType": "Observation",
                    "status": "final",
                    "category": [cc_only(tho!("observation-category"), "laboratory", "Laboratory")],
                    "code": cc(LOINC, FIT.code, FIT.display),
                    "subject": reference(&self.pat),
                    "encounter": reference(&ctx.enc),
                    "effectiveDateTime": dt(t),
                    "issued": dt(t),
                    "valueCodeableConcept": cc(SCT, code, display),
                });
                let id = self.side.uuid();
                self.push_as(&id, r);
                self.colorectal_until = Some(days(d, 365));
                log.labs.push(format!(
                    "stool immunochemical test (FIT): {}",
                    if positive { "positive" } else { "negative" }
                ));
            }
        }
    }

    /// A completed procedure at the visit, with an id from the second stream.
    fn procedure(&mut self, ctx: &Ctx, t: NaiveDateTime, code: &Code) {
        let r = json!({
            "resourceType": "Procedure",
            "status": "completed",
            "category": cc(SCT, "103693007", "Diagnostic procedure (procedure)"),
            "code": cc(SCT, code.code, code.display),
            "subject": reference(&self.pat),
            "encounter": reference(&ctx.enc),
            "performedDateTime": dt(t),
            "recorder": reference(&format!("Practitioner/{}", pr_id(ctx.pr))),
        });
        let id = self.side.uuid();
        self.push_as(&id, r);
    }

    fn smoking_status(&mut self, ctx: &Ctx, t: NaiveDateTime, log: &mut Log) {
        let (code, display, short) = match self.p.smoking {
            0 => ("266919005", "Never smoked tobacco (finding)", "never smoker"),
            1 => ("8517006", "Ex-smoker (finding)", "former smoker"),
            _ => ("449868002", "Smokes tobacco daily (finding)", "current every-day smoker"),
        };
        let value = ("valueCodeableConcept", cc(SCT, code, display));
        self.simple_obs(ctx, t, ("social-history", "Social History"), ("72166-2", "Tobacco smoking status"), value);
        log.history.push(format!("Tobacco: {short}"));
    }

    /// PHQ-9 total: high when depression is untreated, falling on sertraline.
    fn phq9(&mut self, ctx: &Ctx, t: NaiveDateTime, log: &mut Log) {
        let base = match self.on(&SERTRALINE, t) {
            Some(d) => 6.0 + 9.0 * (1.0 - d / 120.0).max(0.0),
            None => 15.0,
        };
        let score = (base + self.rng.normal(0.0, 1.5)).round().clamp(0.0, 27.0) as i64;
        let code = ("44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]");
        self.simple_obs(ctx, t, ("survey", "Survey"), code, ("valueInteger", json!(score)));
        log.assessment.push(format!("PHQ-9 score {score}"));
    }

    /// PHQ-2 screening total (0-6), for those without a depression diagnosis.
    fn phq2(&mut self, ctx: &Ctx, t: NaiveDateTime, log: &mut Log) {
        let onset_soon = self.onset_of(Chronic::Depression).is_some_and(|o| (o - t.date()).num_days() < 120);
        let score = if onset_soon { self.rng.int(3, 6) } else { self.rng.weighted(&[70.0, 18.0, 8.0]) as i64 };
        let code = ("55758-7", "Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]");
        self.simple_obs(ctx, t, ("survey", "Survey"), code, ("valueInteger", json!(score)));
        log.assessment.push(format!("Depression screen (PHQ-2) score {score}"));
    }

    fn pain(&mut self, ctx: &Ctx, t: NaiveDateTime, log: &mut Log) {
        let score = self.rng.int(3, 8);
        let code = ("72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported");
        self.simple_obs(
            ctx,
            t,
            ("vital-signs", "Vital Signs"),
            code,
            ("valueQuantity", qty(score as f64, 0, "{score}", "{score}")),
        );
        log.vitals.push(format!("Pain {score}/10"));
    }

    // ---------------------------------------------------------------- laboratory

    #[allow(clippy::too_many_arguments)]
    fn lab_obs(
        &mut self,
        ctx: &Ctx,
        t: NaiveDateTime,
        code: (&str, &str),
        unit: &str,
        places: usize,
        range: (Option<f64>, Option<f64>),
        value: f64,
    ) -> String {
        let v: f64 = dec(value, places).as_f64().unwrap_or(value);
        let (low, high) = range;
        let interp = match (low, high) {
            (Some(l), _) if v < l => ("L", "Low"),
            (_, Some(h)) if v > h => ("H", "High"),
            _ => ("N", "Normal"),
        };
        let mut rr = Map::new();
        if let Some(l) = low {
            rr.insert("low".into(), qty(l, places, unit, unit));
        }
        if let Some(h) = high {
            rr.insert("high".into(), qty(h, places, unit, unit));
        }
        let issued = (t + TimeDelta::hours(4)).min(self.limit);
        let r = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [cc_only(tho!("observation-category"), "laboratory", "Laboratory")],
            "code": cc(LOINC, code.0, code.1),
            "subject": reference(&self.pat),
            "encounter": reference(&ctx.enc),
            "effectiveDateTime": dt(t),
            "issued": dt(issued),
            "performer": [reference(&format!("Organization/{}", org_id(LAB)))],
            "valueQuantity": qty(v, places, unit, unit),
            "interpretation": [cc_only(INTERP, interp.0, interp.1)],
            "referenceRange": [Value::Object(rr)],
        });
        self.push(r)
    }

    fn report(&mut self, ctx: &Ctx, t: NaiveDateTime, code: (&str, &str), results: Vec<String>) {
        let issued = (t + TimeDelta::hours(4)).min(self.limit);
        let r = json!({
            "resourceType": "DiagnosticReport",
            "status": "final",
            "category": [cc_only(tho!("v2-0074"), "LAB", "Laboratory")],
            "code": cc(LOINC, code.0, code.1),
            "subject": reference(&self.pat),
            "encounter": reference(&ctx.enc),
            "effectiveDateTime": dt(t),
            "issued": dt(issued),
            "performer": [reference(&format!("Organization/{}", org_id(LAB)))],
            "result": results.iter().map(|r| reference(r)).collect::<Vec<_>>(),
        });
        self.push(r);
    }

    fn cbc(&mut self, ctx: &Ctx, t: NaiveDateTime, log: &mut Log) {
        let f = self.p.female;
        let hb = self.p.hb_base + self.rng.normal(0.0, 0.4);
        let hct = hb * 2.95 + self.rng.normal(0.0, 0.8);
        let wbc = self.rng.normal(6.8, 1.2) + if ctx.infection { self.rng.uniform(3.0, 7.0) } else { 0.0 };
        let plt = self.p.plt_base + self.rng.normal(0.0, 15.0);
        let results = vec![
            self.lab_obs(
                ctx,
                t,
                ("718-7", "Hemoglobin [Mass/volume] in Blood"),
                "g/dL",
                1,
                if f { (Some(12.0), Some(15.5)) } else { (Some(13.5), Some(17.5)) },
                hb,
            ),
            self.lab_obs(
                ctx,
                t,
                ("6690-2", "Leukocytes [#/volume] in Blood by Automated count"),
                "10*3/uL",
                1,
                (Some(4.5), Some(11.0)),
                wbc,
            ),
            self.lab_obs(
                ctx,
                t,
                ("777-3", "Platelets [#/volume] in Blood by Automated count"),
                "10*3/uL",
                0,
                (Some(150.0), Some(400.0)),
                plt,
            ),
            self.lab_obs(
                ctx,
                t,
                ("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count"),
                "%",
                1,
                if f { (Some(36.0), Some(46.0)) } else { (Some(41.0), Some(53.0)) },
                hct,
            ),
        ];
        self.report(ctx, t, ("58410-2", "CBC panel - Blood by Automated count"), results);
        log.labs.push(format!("CBC: Hgb {hb:.1} g/dL, WBC {wbc:.1} x10^3/uL, Plt {plt:.0} x10^3/uL"));
    }

    fn hepatic(&mut self, ctx: &Ctx, t: NaiveDateTime, log: &mut Log) {
        let statin = self.on(&ATORVASTATIN, t).or(self.on(&SIMVASTATIN, t)).is_some();
        let alt = self.rng.normal(24.0, 7.0).max(5.0) + if statin { self.rng.uniform(0.0, 12.0) } else { 0.0 };
        let ast = alt * 0.8 + self.rng.normal(5.0, 3.0);
        let alp = self.rng.normal(75.0, 18.0);
        let bili = self.rng.normal(0.6, 0.18).max(0.1);
        let alb = self.rng.normal(4.3, 0.25);
        let (ul, mg) = ("U/L", "mg/dL");
        let results = vec![
            self.lab_obs(
                ctx,
                t,
                ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma"),
                ul,
                0,
                (Some(7.0), Some(56.0)),
                alt,
            ),
            self.lab_obs(
                ctx,
                t,
                ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma"),
                ul,
                0,
                (Some(10.0), Some(40.0)),
                ast,
            ),
            self.lab_obs(
                ctx,
                t,
                ("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma"),
                ul,
                0,
                (Some(44.0), Some(147.0)),
                alp,
            ),
            self.lab_obs(
                ctx,
                t,
                ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma"),
                mg,
                1,
                (Some(0.1), Some(1.2)),
                bili,
            ),
            self.lab_obs(
                ctx,
                t,
                ("1751-7", "Albumin [Mass/volume] in Serum or Plasma"),
                "g/dL",
                1,
                (Some(3.5), Some(5.0)),
                alb,
            ),
        ];
        self.report(ctx, t, ("24325-3", "Hepatic function 2000 panel - Serum or Plasma"), results);
        log.labs.push(format!("Liver panel: ALT {alt:.0}, AST {ast:.0} U/L, albumin {alb:.1} g/dL"));
    }

    fn microalbumin(&mut self, ctx: &Ctx, t: NaiveDateTime, log: &mut Log) {
        let years = self.onset_of(Chronic::Diabetes).map_or(0.0, |o| (t.date() - o).num_days() as f64 / YEAR);
        let v = (self.rng.normal(12.0, 6.0) + 3.0 * years).max(2.0);
        let code = ("14959-1", "Microalbumin/Creatinine [Mass Ratio] in Urine");
        let r = self.lab_obs(ctx, t, code, "mg/g", 0, (None, Some(30.0)), v);
        self.report(ctx, t, code, vec![r]);
        log.labs.push(format!("Urine albumin/creatinine {v:.0} mg/g"));
    }

    fn a1c_value(&mut self, t: NaiveDateTime) -> f64 {
        let p = (self.p.a1c_norm, self.p.a1c_dx, self.p.a1c_target);
        let v = match self.onset_of(Chronic::Diabetes) {
            Some(onset) if t.date() >= onset => match self.on(&METFORMIN, t) {
                Some(d) => p.2 + (p.1 - p.2) * (1.0 - d / 180.0).max(0.0),
                None => p.1,
            },
            Some(onset) => {
                let years_to = (onset - t.date()).num_days() as f64 / YEAR;
                if years_to < 3.0 { p.0 + (6.2 - p.0) * (1.0 - years_to / 3.0) } else { p.0 }
            }
            None => p.0,
        };
        v + self.rng.normal(0.0, 0.12)
    }

    fn a1c(&mut self, ctx: &Ctx, t: NaiveDateTime, log: &mut Log) {
        let v = self.a1c_value(t);
        let code = ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood");
        let r = self.lab_obs(ctx, t, code, "%", 1, (None, Some(5.6)), v);
        self.report(ctx, t, code, vec![r]);
        log.labs.push(format!("HbA1c {v:.1}%"));
    }

    fn bmp(&mut self, ctx: &Ctx, t: NaiveDateTime, log: &mut Log) {
        let f = self.p.female;
        let agef = ctx.agef;
        let glucose = if self.has(Chronic::Diabetes, t) {
            let a1c = self.a1c_value(t);
            28.7 * a1c - 46.7 + self.rng.normal(0.0, 12.0)
        } else {
            self.rng.normal(88.0, 7.0)
        };
        let cr = self.p.cr_base + 0.004 * (agef - 40.0).max(0.0) + self.rng.normal(0.0, 0.05);
        let bun = self.rng.normal(14.0, 3.0) + 0.08 * (agef - 40.0).max(0.0);
        let na = self.rng.normal(140.0, 1.8);
        let k = self.rng.normal(4.2, 0.3);
        let ca = self.rng.normal(9.5, 0.3);
        let mg = "mg/dL";
        let results = vec![
            self.lab_obs(
                ctx,
                t,
                ("2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
                mg,
                0,
                (Some(70.0), Some(99.0)),
                glucose,
            ),
            self.lab_obs(
                ctx,
                t,
                ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma"),
                mg,
                2,
                if f { (Some(0.59), Some(1.04)) } else { (Some(0.74), Some(1.35)) },
                cr,
            ),
            self.lab_obs(
                ctx,
                t,
                ("2951-2", "Sodium [Moles/volume] in Serum or Plasma"),
                "mmol/L",
                0,
                (Some(136.0), Some(145.0)),
                na,
            ),
            self.lab_obs(
                ctx,
                t,
                ("2823-3", "Potassium [Moles/volume] in Serum or Plasma"),
                "mmol/L",
                1,
                (Some(3.5), Some(5.1)),
                k,
            ),
            self.lab_obs(
                ctx,
                t,
                ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma"),
                mg,
                0,
                (Some(7.0), Some(20.0)),
                bun,
            ),
            self.lab_obs(
                ctx,
                t,
                ("17861-6", "Calcium [Mass/volume] in Serum or Plasma"),
                mg,
                1,
                (Some(8.6), Some(10.3)),
                ca,
            ),
        ];
        self.report(ctx, t, ("51990-0", "Basic metabolic panel - Blood"), results);
        log.labs
            .push(format!("BMP: glucose {glucose:.0} mg/dL, creatinine {cr:.2} mg/dL, Na {na:.0}, K {k:.1} mmol/L"));
    }

    fn lipids(&mut self, ctx: &Ctx, t: NaiveDateTime, log: &mut Log) {
        let agef = ctx.agef;
        let mut ldl = self.p.ldl_base + 0.4 * (agef - 30.0).max(0.0);
        if let Some(onset) = self.onset_of(Chronic::Hyperlipidemia)
            && t.date() >= onset
        {
            ldl = ldl.max(150.0) + 25.0;
        }
        let statin = self.on(&ATORVASTATIN, t).or(self.on(&SIMVASTATIN, t));
        if let Some(d) = statin {
            ldl *= 1.0 - 0.35 * (d / 56.0).min(1.0);
        }
        let ldl = ldl + self.rng.normal(0.0, 8.0);
        let hdl = self.p.hdl_base + self.rng.normal(0.0, 3.0);
        let mut tg = self.p.tg_base + self.rng.normal(0.0, 15.0);
        if self.has(Chronic::Diabetes, t) {
            tg += 40.0;
        }
        if self.has(Chronic::Hyperlipidemia, t) {
            tg += 50.0;
        }
        let total = ldl + hdl + tg / 5.0;
        let mg = "mg/dL";
        let results = vec![
            self.lab_obs(
                ctx,
                t,
                ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma"),
                mg,
                0,
                (None, Some(200.0)),
                total,
            ),
            self.lab_obs(
                ctx,
                t,
                ("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma"),
                mg,
                0,
                (None, Some(150.0)),
                tg,
            ),
            self.lab_obs(
                ctx,
                t,
                ("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma"),
                mg,
                0,
                (Some(40.0), None),
                hdl,
            ),
            self.lab_obs(
                ctx,
                t,
                ("18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay"),
                mg,
                0,
                (None, Some(130.0)),
                ldl,
            ),
        ];
        self.report(ctx, t, ("57698-3", "Lipid panel with direct LDL - Serum or Plasma"), results);
        log.labs.push(format!("Lipids: total {total:.0}, LDL {ldl:.0}, HDL {hdl:.0}, TG {tg:.0} mg/dL"));
    }

    // ---------------------------------------------------------------- notes

    fn note(&mut self, v: &Visit, ctx: &Ctx, title: &str, log: &Log) {
        let (code, display, plan) = match v.kind {
            Kind::Emergency(_) => {
                ("34111-5", "Emergency department Note", "Discharged home; follow up with primary care within 1 week.")
            }
            Kind::Inpatient(_) => (
                "18842-5",
                "Discharge summary",
                "Discharged home in stable condition; follow up with primary care in 1-2 weeks.",
            ),
            Kind::Wellness(Some(_)) => ("11506-3", "Progress note", "Next well-child visit per schedule."),
            Kind::Wellness(None) => ("11506-3", "Progress note", "Routine preventive care; return in 12 months."),
            Kind::FollowUp | Kind::Diagnosis(_) => {
                ("11506-3", "Progress note", "Continue current plan; follow up in 3-6 months.")
            }
            _ => ("11506-3", "Progress note", "Supportive care; return if symptoms worsen or persist."),
        };
        let age =
            if ctx.agef < 2.0 { format!("{} months", (ctx.agef * 12.0) as i64) } else { format!("{} years", ctx.age) };
        let mut text = format!(
            "{} - {}\nPatient: {} {}, {age}, {}\nClinician: {}\n",
            title.trim_end_matches(" (procedure)"),
            date(v.start.date()),
            self.p.given,
            self.p.family,
            if self.p.female { "female" } else { "male" },
            clinician_name(ctx.pr),
        );
        let mut section = |name: &str, items: &[String]| {
            if !items.is_empty() {
                text.push_str(name);
                text.push_str(": ");
                text.push_str(&items.join("; "));
                text.push('\n');
            }
        };
        let at_end = v.end;
        let problems: Vec<String> = self
            .chronic
            .iter()
            .filter(|c| c.recorded.as_ref().is_some_and(|r| r.0 <= at_end) && c.resolved.is_none_or(|r| r > at_end))
            .map(|c| c.kind.short().to_string())
            .collect();
        let meds: Vec<String> = self
            .meds
            .iter()
            .filter(|m| m.start <= at_end && m.end.is_none_or(|e| e > at_end))
            .map(|m| m.drug.short.to_string())
            .collect();
        section("Vitals", &log.vitals);
        section("History", &log.history);
        section("Allergies recorded", &log.allergies);
        section("Active problems", &problems);
        section("Assessment", &log.assessment);
        section("Medications started", &log.started);
        section("Prescriptions renewed", &log.renewed);
        section("Medications stopped", &log.stopped);
        section("Immunizations given", &log.vaccines);
        section("Results", &log.labs);
        section("Current medications", &meds);
        text.push_str("Plan: ");
        text.push_str(plan);
        text.push('\n');
        let r = json!({
            "resourceType": "DocumentReference",
            "status": "current",
            "docStatus": "final",
            "type": cc(LOINC, code, display),
            "category": [cc_only(US_CORE_DOC_CATEGORY, "clinical-note", "Clinical Note")],
            "subject": reference(&self.pat),
            "date": dt(v.end),
            "author": [reference_d(&format!("Practitioner/{}", pr_id(ctx.pr)), &clinician_name(ctx.pr))],
            "custodian": reference(&format!("Organization/{}", org_id(CLINICIANS[ctx.pr].org))),
            "description": format!("{display}, {}", date(v.start.date())),
            "content": [{"attachment": {
                "contentType": "text/plain",
                "data": base64(text.as_bytes()),
                "title": display,
                "creation": dt(v.end),
            }}],
            "context": {"encounter": [reference(&ctx.enc)], "period": {"start": dt(v.start), "end": dt(v.end)}},
        });
        self.push(r);
    }
}
