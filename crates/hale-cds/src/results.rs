//! Results: critical values, by LOINC code and limit. A value beyond a critical limit
//! is flagged critically low or high and reaches the ordering clinician at once.

/// Where the limits come from.
pub const CRITICAL_SOURCE: &str = "Typical critical limits of US hospital laboratories (e.g. Dighe AS et al., Am J Clin Pathol 2006;125:758-64); each laboratory sets its own";

/// A critical limit: LOINC code, below `low` or above `high` is critical.
#[derive(Debug)]
pub struct CriticalLimit {
    pub loinc: &'static str,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// The critical limits Hale applies.
pub static CRITICAL_LIMITS: &[CriticalLimit] = &[
    CriticalLimit { loinc: "2823-3", low: Some(2.5), high: Some(6.5) }, // potassium, mmol/L
    CriticalLimit { loinc: "2951-2", low: Some(120.0), high: Some(160.0) }, // sodium, mmol/L
    CriticalLimit { loinc: "2345-7", low: Some(40.0), high: Some(500.0) }, // glucose, mg/dL
    CriticalLimit { loinc: "17861-6", low: Some(6.0), high: Some(13.0) }, // calcium, mg/dL
    CriticalLimit { loinc: "718-7", low: Some(7.0), high: Some(20.0) }, // hemoglobin, g/dL
    CriticalLimit { loinc: "777-3", low: Some(20.0), high: Some(1000.0) }, // platelets, 10*3/uL
    CriticalLimit { loinc: "6690-2", low: Some(2.0), high: Some(30.0) }, // leukocytes, 10*3/uL
];

/// Whether `value` of the analyte `loinc` is critical: `Some(true)` critically low,
/// `Some(false)` critically high, `None` not critical (or no limit known).
pub fn critical(loinc: &str, value: f64) -> Option<bool> {
    let limit = CRITICAL_LIMITS.iter().find(|l| l.loinc == loinc)?;
    if limit.low.is_some_and(|l| value < l) {
        Some(true)
    } else if limit.high.is_some_and(|h| value > h) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_limits_are_checked_by_code() {
        assert_eq!(critical("2823-3", 6.9), Some(false));
        assert_eq!(critical("2823-3", 2.1), Some(true));
        assert_eq!(critical("2823-3", 4.0), None);
        assert_eq!(critical("4548-4", 15.0), None, "no critical limit for HbA1c");
        for l in CRITICAL_LIMITS {
            // every limit is outside the analyte's reference range in Hale's table
            let a = crate::terms::LAB_TESTS.iter().flat_map(|t| t.analytes.iter()).find(|a| a.loinc == l.loinc);
            if let Some(a) = a {
                assert!(l.low.zip(a.low).is_none_or(|(c, r)| c < r), "{}", l.loinc);
                assert!(l.high.zip(a.high).is_none_or(|(c, r)| c > r), "{}", l.loinc);
            }
        }
    }
}
