//! Reading FHIR JSON for people: names, codes, quantities, dates, flags. Every function
//! takes what a resource holds, however incomplete, and returns text (never panics on
//! a missing or odd element); the templates escape it.

use serde_json::Value;

/// A CodeableConcept for a reader: its text, else the first coding's display, else
/// its code.
pub(crate) fn concept(cc: &Value) -> String {
    if let Some(t) = cc["text"].as_str().filter(|t| !t.trim().is_empty()) {
        return t.to_string();
    }
    let codings = cc["coding"].as_array().map(Vec::as_slice).unwrap_or_default();
    codings
        .iter()
        .find_map(|c| c["display"].as_str().filter(|d| !d.trim().is_empty()))
        .or_else(|| codings.iter().find_map(|c| c["code"].as_str()))
        .unwrap_or("")
        .to_string()
}

/// The first code of a CodeableConcept (`system|code`'s code) for `system`.
pub(crate) fn code_in(cc: &Value, system: &str) -> Option<String> {
    cc["coding"].as_array()?.iter().find(|c| c["system"] == system).and_then(|c| c["code"].as_str()).map(str::to_string)
}

/// Whether a CodeableConcept holds `code` (any system).
pub(crate) fn has_code(cc: &Value, code: &str) -> bool {
    cc["coding"].as_array().is_some_and(|cs| cs.iter().any(|c| c["code"] == code))
}

/// A person's name as "Family, Given Middle" (the official name first).
pub(crate) fn person_name(resource: &Value) -> String {
    let names = resource["name"].as_array().map(Vec::as_slice).unwrap_or_default();
    let Some(n) = names.iter().find(|n| n["use"] == "official").or_else(|| names.first()) else {
        return "(no name recorded)".to_string();
    };
    let given: Vec<&str> =
        n["given"].as_array().map(|g| g.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    match (n["family"].as_str(), given.is_empty()) {
        (Some(f), false) => format!("{f}, {}", given.join(" ")),
        (Some(f), true) => f.to_string(),
        (None, false) => given.join(" "),
        (None, true) => n["text"].as_str().unwrap_or("(no name recorded)").to_string(),
    }
}

/// A FHIR `date` (a birth date) as written (`YYYY-MM-DD`, or less when that is all
/// there is). The day of a dateTime with a time depends on the time zone: that is
/// [`Zone::day`](crate::Zone), which every dateTime on a page goes through.
pub(crate) fn day(v: &Value) -> String {
    v.as_str().map(|d| d.chars().take(10).collect()).unwrap_or_default()
}

fn ymd(d: &str) -> Option<(i64, u32, u32)> {
    let mut parts = d.get(..10)?.split('-');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Age in whole years on `on` of someone born on `birth` (`YYYY-MM-DD`); for a child
/// under two, in months.
pub(crate) fn age(birth: &str, on: (i64, u32, u32)) -> Option<String> {
    let (y, m, d) = ymd(birth)?;
    let mut years = on.0 - y;
    if (on.1, on.2) < (m, d) {
        years -= 1;
    }
    if years < 0 {
        return None;
    }
    if years < 2 {
        let mut months = (on.0 - y) * 12 + i64::from(on.1) - i64::from(m);
        if on.2 < d {
            months -= 1;
        }
        return Some(format!("{} mo", months.max(0)));
    }
    Some(format!("{years} y"))
}

/// A Quantity as "value unit".
pub(crate) fn quantity(q: &Value) -> String {
    let value = match &q["value"] {
        Value::Number(n) => n.to_string(),
        _ => return String::new(),
    };
    let unit = unit(q["unit"].as_str().or_else(|| q["code"].as_str()).unwrap_or(""));
    let comparator = q["comparator"].as_str().unwrap_or("");
    if unit.is_empty() { format!("{comparator}{value}") } else { format!("{comparator}{value} {unit}") }
}

/// A unit for a reader: UCUM's codes where people write otherwise.
fn unit(u: &str) -> &str {
    match u {
        "mm[Hg]" => "mmHg",
        "Cel" => "°C",
        "[degF]" => "°F",
        "/min" => "/min",
        "kg/m2" => "kg/m²",
        "[in_i]" => "in",
        "[lb_av]" => "lb",
        other => other,
    }
}

/// The numeric value of a Quantity.
pub(crate) fn number(q: &Value) -> Option<f64> {
    match &q["value"] {
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// LOINC's system URI.
pub(crate) const LOINC: &str = "http://loinc.org";

/// An Observation's value for a reader: a quantity, a code, text, or its components
/// (a blood pressure as "systolic/diastolic unit").
pub(crate) fn observation_value(o: &Value) -> String {
    if let Some(q) = o.get("valueQuantity") {
        return quantity(q);
    }
    if let Some(cc) = o.get("valueCodeableConcept") {
        return concept(cc);
    }
    for k in ["valueString", "valueDateTime", "valueTime"] {
        if let Some(t) = o[k].as_str() {
            return t.to_string();
        }
    }
    if let Some(b) = o["valueBoolean"].as_bool() {
        return if b { "yes" } else { "no" }.to_string();
    }
    let comps = o["component"].as_array().map(Vec::as_slice).unwrap_or_default();
    let find = |code: &str| comps.iter().find(|c| has_code(&c["code"], code));
    if let (Some(sys), Some(dia)) = (find("8480-6"), find("8462-4")) {
        let unit = unit(sys["valueQuantity"]["unit"].as_str().unwrap_or("mm[Hg]"));
        return format!(
            "{}/{} {unit}",
            number(&sys["valueQuantity"]).map(fmt_number).unwrap_or_default(),
            number(&dia["valueQuantity"]).map(fmt_number).unwrap_or_default()
        );
    }
    comps.iter().map(|c| format!("{} {}", concept(&c["code"]), observation_value(c))).collect::<Vec<_>>().join("; ")
}

/// A number without a needless ".0".
pub(crate) fn fmt_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { format!("{n}") }
}

/// An Observation's reference range as "low–high unit" (or its text).
pub(crate) fn reference_range(o: &Value) -> String {
    let Some(r) = o["referenceRange"].as_array().and_then(|r| r.first()) else {
        return String::new();
    };
    if let Some(t) = r["text"].as_str() {
        return t.to_string();
    }
    let value = |q: &Value| match &q["value"] {
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let unit = r["low"]["unit"].as_str().or_else(|| r["high"]["unit"].as_str()).unwrap_or("");
    match (value(&r["low"]), value(&r["high"])) {
        (Some(l), Some(h)) => format!("{l}–{h} {unit}").trim_end().to_string(),
        (Some(l), None) => format!("≥ {l} {unit}").trim_end().to_string(),
        (None, Some(h)) => format!("≤ {h} {unit}").trim_end().to_string(),
        (None, None) => String::new(),
    }
}

/// How far a result lies from normal, from its interpretation (HL7 v3
/// ObservationInterpretation codes) or, without one, from its reference range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flag {
    Normal,
    Low,
    High,
    CriticalLow,
    CriticalHigh,
    Abnormal,
}

impl Flag {
    /// A short label for the flag column (empty when normal).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Flag::Normal => "",
            Flag::Low => "L",
            Flag::High => "H",
            Flag::CriticalLow => "LL",
            Flag::CriticalHigh => "HH",
            Flag::Abnormal => "A",
        }
    }

    /// Words for a screen reader and a tooltip.
    pub(crate) fn words(self) -> &'static str {
        match self {
            Flag::Normal => "normal",
            Flag::Low => "low",
            Flag::High => "high",
            Flag::CriticalLow => "critically low",
            Flag::CriticalHigh => "critically high",
            Flag::Abnormal => "abnormal",
        }
    }

    pub(crate) fn is_critical(self) -> bool {
        matches!(self, Flag::CriticalLow | Flag::CriticalHigh)
    }
}

/// The flag of a result.
pub(crate) fn flag(o: &Value) -> Flag {
    let codes: Vec<&str> = o["interpretation"]
        .as_array()
        .map(|is| {
            is.iter()
                .flat_map(|i| i["coding"].as_array().into_iter().flatten())
                .filter_map(|c| c["code"].as_str())
                .collect()
        })
        .unwrap_or_default();
    for c in &codes {
        match *c {
            "LL" | "<" => return Flag::CriticalLow,
            "HH" | ">" => return Flag::CriticalHigh,
            "L" | "LU" => return Flag::Low,
            "H" | "HU" => return Flag::High,
            "A" | "AA" | "POS" | "DET" => return Flag::Abnormal,
            _ => {}
        }
    }
    if !codes.is_empty() {
        return Flag::Normal;
    }
    // no interpretation: compare the value with the range
    let (Some(v), Some(r)) = (number(&o["valueQuantity"]), o["referenceRange"].as_array().and_then(|r| r.first()))
    else {
        return Flag::Normal;
    };
    if number(&r["low"]).is_some_and(|l| v < l) {
        Flag::Low
    } else if number(&r["high"]).is_some_and(|h| v > h) {
        Flag::High
    } else {
        Flag::Normal
    }
}

/// The medical record numbers (identifiers typed MR) of a patient, else every
/// identifier's value.
pub(crate) fn mrns(patient: &Value) -> Vec<String> {
    let ids = patient["identifier"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mr: Vec<String> = ids
        .iter()
        .filter(|i| has_code(&i["type"], "MR"))
        .filter_map(|i| i["value"].as_str())
        .map(str::to_string)
        .collect();
    if !mr.is_empty() {
        return mr;
    }
    ids.iter().filter_map(|i| i["value"].as_str()).map(str::to_string).collect()
}

/// The display of a Reference, else its reference text.
pub(crate) fn reference_label(r: &Value) -> String {
    r["display"].as_str().or_else(|| r["reference"].as_str()).unwrap_or("").to_string()
}

/// A patient's home address on one line.
pub(crate) fn address(patient: &Value) -> String {
    let Some(a) = patient["address"].as_array().and_then(|a| a.iter().find(|a| a["use"] != "old")) else {
        return String::new();
    };
    let mut parts: Vec<String> = a["line"]
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let town = [a["city"].as_str(), a["state"].as_str(), a["postalCode"].as_str()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    if !town.is_empty() {
        parts.push(town);
    }
    parts.join(", ")
}

/// A patient's first phone number.
pub(crate) fn phone(patient: &Value) -> String {
    patient["telecom"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["system"] == "phone"))
        .and_then(|t| t["value"].as_str())
        .unwrap_or("")
        .to_string()
}

/// A MedlinePlus Connect page about a coded concept (ICD-10-CM, SNOMED CT, RxNorm or
/// LOINC, in that order of preference): a link built from the code alone — no patient
/// information goes in it, and nothing is fetched by the server.
pub(crate) fn medlineplus(cc: &Value) -> Option<String> {
    const SYSTEMS: &[(&str, &str)] = &[
        ("http://hl7.org/fhir/sid/icd-10-cm", "2.16.840.1.113883.6.90"),
        ("http://snomed.info/sct", "2.16.840.1.113883.6.96"),
        ("http://www.nlm.nih.gov/research/umls/rxnorm", "2.16.840.1.113883.6.88"),
        ("http://loinc.org", "2.16.840.1.113883.6.1"),
    ];
    SYSTEMS.iter().find_map(|(system, oid)| {
        let code = code_in(cc, system)?;
        let safe = code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        safe.then(|| {
            format!(
                "https://connect.medlineplus.gov/application?mainSearchCriteria.v.cs={oid}&mainSearchCriteria.v.c={code}&informationRecipient.languageCode.c=en"
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages_count_whole_years_and_months_for_infants() {
        assert_eq!(age("1980-02-03", (2026, 2, 2)).as_deref(), Some("45 y"));
        assert_eq!(age("1980-02-03", (2026, 2, 3)).as_deref(), Some("46 y"));
        assert_eq!(age("2025-06-15", (2026, 2, 14)).as_deref(), Some("7 mo"));
        assert_eq!(age("2030-01-01", (2026, 2, 14)), None);
        assert_eq!(age("bad", (2026, 2, 14)), None);
    }

    #[test]
    fn blood_pressure_reads_as_systolic_over_diastolic() {
        let bp = json!({"component": [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 128, "unit": "mm[Hg]"}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 84.0, "unit": "mm[Hg]"}}
        ]});
        assert_eq!(observation_value(&bp), "128/84 mmHg");
        assert_eq!(observation_value(&json!({"valueQuantity": {"value": 7.2, "unit": "%"}})), "7.2 %");
        assert_eq!(observation_value(&json!({})), "");
    }

    #[test]
    fn flags_come_from_the_interpretation_else_the_range() {
        let coded = |c: &str| json!({"interpretation": [{"coding": [{"code": c}]}]});
        assert_eq!(flag(&coded("H")), Flag::High);
        assert_eq!(flag(&coded("LL")), Flag::CriticalLow);
        assert_eq!(flag(&coded("N")), Flag::Normal);
        let ranged = |v: f64| json!({"valueQuantity": {"value": v}, "referenceRange": [{"low": {"value": 4}, "high": {"value": 5.6}}]});
        assert_eq!(flag(&ranged(6.1)), Flag::High);
        assert_eq!(flag(&ranged(3.0)), Flag::Low);
        assert_eq!(flag(&ranged(5.0)), Flag::Normal);
        assert_eq!(reference_range(&ranged(5.0)), "4–5.6");
    }

    #[test]
    fn names_and_concepts_fall_back_sensibly() {
        assert_eq!(person_name(&json!({"name": [{"family": "Alvarez", "given": ["Ana", "M"]}]})), "Alvarez, Ana M");
        assert_eq!(person_name(&json!({})), "(no name recorded)");
        assert_eq!(concept(&json!({"coding": [{"code": "x"}]})), "x");
        assert_eq!(concept(&json!({"text": "Asthma", "coding": [{"display": "other"}]})), "Asthma");
        assert_eq!(concept(&Value::Null), "");
    }

    #[test]
    fn medlineplus_links_carry_a_code_only() {
        let icd = json!({"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}, {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]});
        let url = medlineplus(&icd).unwrap();
        assert!(url.contains("cs=2.16.840.1.113883.6.90&mainSearchCriteria.v.c=E11.9"), "{url}");
        let odd = json!({"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1&x=<y>"}]});
        assert_eq!(medlineplus(&odd), None, "a code that is not one is not put in a URL");
        assert_eq!(medlineplus(&json!({"text": "cough"})), None);
    }
}
