//! Synthetic patient populations for Hale, as FHIR R4 bundles.
//!
//! `hale synth` uses this crate to make test data: `N` patients with realistic,
//! internally consistent histories over years. Everything is invented (names, places,
//! identifiers) and every resource carries the `HTEST` security label ("test health
//! data"). Output is deterministic: the same [`Config`] gives byte-identical JSON, and
//! patient `i` depends only on the seed, the reference date, the history length and `i`
//! (not on the number of patients), so patients can be generated in parallel or
//! streamed.
//!
//! # Output
//!
//! - [`shared_bundle`]: a `batch` bundle of `PUT` entries for the resources every patient
//!   refers to, with fixed ids: `Organization/synth-org-1..5` (three clinics, a hospital,
//!   a laboratory), `Location/synth-loc-1..5`, `Practitioner/synth-pr-1..12` (NPI-like
//!   identifiers under `http://hl7.org/fhir/sid/us-npi`, all starting with 9, which is
//!   never issued) and `PractitionerRole/synth-role-1..12`. Load it first.
//! - [`patient_bundle`]: a `transaction` bundle of `POST` entries with `urn:uuid:` full
//!   URLs (as Synthea does) for one patient: Patient, Encounter, Condition,
//!   AllergyIntolerance, MedicationRequest, Immunization, Observation (vital signs and
//!   laboratory), Procedure (screening mammograms and colonoscopies), DiagnosticReport
//!   and DocumentReference (a plain-text visit note).
//!   References point either inside the bundle or at the shared resources.
//! - [`population`]: the shared bundle, then each patient's.
//!
//! # Model
//!
//! Ages follow a realistic distribution (0 to 95 years). Chronic conditions
//! (hypertension, type 2 diabetes, hyperlipidemia, asthma, COPD, depression) are drawn
//! by age-dependent prevalence with an onset date; conditions starting before the
//! history window are recorded at the first visit in it, later ones at a diagnosis
//! visit. Each brings its medications (with status `active`, `stopped` or `completed`
//! consistent with the timeline), follow-up visits and effects on measurements
//! (blood pressure in hypertension until treated, HbA1c and glucose in diabetes
//! falling on metformin, LDL in hyperlipidemia falling on a statin). Children follow
//! growth curves, have well-child visits and the CDC childhood immunization schedule
//! (for most children under 19, the doses due before the history window are recorded at
//! the first visit in it as historical Immunizations, `primarySource` false, from a
//! third random stream; the others' records are missing, so their catch-up doses show
//! as due);
//! adults have annual visits with laboratory panels, influenza, COVID-19, Td, zoster
//! and pneumococcal vaccines by age and date, and cancer screening (a mammogram about
//! every two years for women 40 to 74; from 45 to 75 a colonoscopy every ten years or a
//! stool immunochemical test yearly), taken up more by some patients than others.
//! Coronary artery disease (more likely with age, in men, smokers, diabetes and
//! hypertension) brings a statin for most; it and the screenings are drawn from a
//! second random stream, so a patient without coronary disease keeps the history it had
//! before they were added, screenings aside. Clinic problems, emergency visits and
//! admissions occur at age-dependent rates; antibiotics respect recorded allergies.
//! A 10-year history has roughly 230-1,100 resources per adult (about 550 on average,
//! most for older adults with chronic conditions) and 140-430 per child, so 100
//! patients make about 50,000 resources.
//!
//! Nothing happens before birth or after the reference date. Reference dates are
//! clamped to years 100..=9999 so every date stays a valid FHIR date; `years` is capped
//! at 150. With `years == 0` a bundle holds only the Patient.

mod fhir;
mod patient;
mod rng;
mod shared;
mod tables;

#[cfg(test)]
mod tests;

use chrono::NaiveDate;
use serde_json::Value;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Number of patients.
    pub patients: usize,
    /// Seed: the same seed gives the same population.
    pub seed: u64,
    /// "Today" for the population: ages are computed at this date and no event is later.
    pub reference_date: NaiveDate,
    /// Years of history before the reference date (default 10).
    pub years: u32,
}

impl Default for Config {
    /// 10 patients, seed 1, reference date 2025-01-01, 10 years of history.
    fn default() -> Self {
        Config {
            patients: 10,
            seed: 1,
            reference_date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default(),
            years: 10,
        }
    }
}

impl Config {
    fn clamped_date(&self) -> NaiveDate {
        let lo = NaiveDate::from_ymd_opt(100, 1, 1).unwrap_or(NaiveDate::MIN);
        let hi = NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or(NaiveDate::MAX);
        self.reference_date.clamp(lo, hi)
    }
}

/// The shared Organizations, Locations, Practitioners and PractitionerRoles as a
/// `batch` bundle of `PUT` entries with fixed ids. It is the same for every
/// configuration.
pub fn shared_bundle(cfg: &Config) -> Value {
    let _ = cfg;
    shared::bundle()
}

/// Patient `index` (0-based) as a `transaction` bundle of `POST` entries. It depends
/// only on `cfg.seed`, `cfg.reference_date`, `cfg.years` and `index`, so bundles can be
/// made in any order or in parallel; `index` may exceed `cfg.patients`.
pub fn patient_bundle(cfg: &Config, index: usize) -> Value {
    patient::bundle(cfg.seed, cfg.clamped_date(), cfg.years, index)
}

/// The shared bundle, then one bundle per patient, generated lazily (memory does not
/// grow with the number of patients).
pub fn population(cfg: &Config) -> impl Iterator<Item = Value> + use<> {
    let cfg = *cfg;
    std::iter::once(shared_bundle(&cfg)).chain((0..cfg.patients).map(move |i| patient_bundle(&cfg, i)))
}
