//! Small builders for FHIR JSON: codings, references, quantities, date formats, base64.

use std::str::FromStr;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use serde_json::{Number, Value, json};

/// `http://terminology.hl7.org/CodeSystem/<name>` as a literal.
macro_rules! tho {
    ($name:literal) => {
        concat!("http://terminology.hl7.org/CodeSystem/", $name)
    };
}
pub(crate) use tho;

pub(crate) const SCT: &str = "http://snomed.info/sct";
pub(crate) const LOINC: &str = "http://loinc.org";
pub(crate) const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
pub(crate) const CVX: &str = "http://hl7.org/fhir/sid/cvx";
pub(crate) const UCUM: &str = "http://unitsofmeasure.org";
pub(crate) const NPI: &str = "http://hl7.org/fhir/sid/us-npi";
pub(crate) const MRN: &str = "http://hale.example/mrn";
pub(crate) const INTERP: &str = tho!("v3-ObservationInterpretation");

/// A coded concept with one coding and its display as text.
pub(crate) fn cc(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": display}], "text": display})
}

/// A concept with a coding but no text (for category-like codes).
pub(crate) fn cc_only(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [{"system": system, "code": code, "display": display}]})
}

pub(crate) fn reference(r: &str) -> Value {
    json!({"reference": r})
}

pub(crate) fn reference_d(r: &str, display: &str) -> Value {
    json!({"reference": r, "display": display})
}

/// A decimal with exactly `places` digits after the point (kept as written thanks to
/// serde_json's `arbitrary_precision`).
pub(crate) fn dec(v: f64, places: usize) -> Value {
    let v = if v.is_finite() { v } else { 0.0 };
    let text = format!("{v:.places$}");
    Value::Number(Number::from_str(&text).unwrap_or_else(|_| Number::from(0)))
}

/// A UCUM quantity.
pub(crate) fn qty(v: f64, places: usize, unit: &str, code: &str) -> Value {
    json!({"value": dec(v, places), "unit": unit, "system": UCUM, "code": code})
}

/// `YYYY-MM-DD`.
pub(crate) fn date(d: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

/// A dateTime/instant in UTC: `YYYY-MM-DDThh:mm:ssZ`.
pub(crate) fn dt(t: NaiveDateTime) -> String {
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second())
}

/// Standard base64 with padding (RFC 4648), for `Attachment.data`.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ABC[(n >> 18) as usize & 63] as char);
        out.push(ABC[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { ABC[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { ABC[n as usize & 63] as char } else { '=' });
    }
    out
}

/// Marks every generated resource as test data (`HTEST`), so it can never be mistaken
/// for a real record.
pub(crate) fn meta() -> Value {
    json!({"security": [{
        "system": tho!("v3-ActReason"),
        "code": "HTEST",
        "display": "test health data"
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")]
        {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn decimals_keep_their_places() {
        assert_eq!(dec(72.0, 1).to_string(), "72.0");
        assert_eq!(dec(0.1 + 0.2, 2).to_string(), "0.30");
        assert_eq!(dec(f64::NAN, 1).to_string(), "0.0");
    }
}
