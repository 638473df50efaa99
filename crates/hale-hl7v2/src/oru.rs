//! ORU^R01 (laboratory results) to FHIR: a transaction bundle with the Patient (created
//! once by its identifier), a DiagnosticReport per OBR and an Observation per OBX —
//! values with their units, reference ranges, interpretations, notes — and an account of
//! every OBX: mapped, or named with the reason it was not (for the ACK's ERR).

use std::str::FromStr;

use serde_json::{Value, json};

use crate::{AckError, Message, Segment, timestamp};

/// What became of one OBX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObxOutcome {
    /// Mapped to the Observation with this `fullUrl`.
    Mapped(String),
    /// Not mapped, and why (its ERR).
    Refused(AckError),
}

/// The mapping of a message.
#[derive(Debug, Clone)]
pub struct Mapped {
    pub bundle: Value,
    /// Every OBX of the message, in order, with what became of it.
    pub obx: Vec<ObxOutcome>,
}

pub(crate) fn system(code: &str) -> String {
    match code {
        "LN" | "LNC" => "http://loinc.org".into(),
        "SCT" | "SNM" => "http://snomed.info/sct".into(),
        "UCUM" => "http://unitsofmeasure.org".into(),
        "HL70078" => "http://terminology.hl7.org/CodeSystem/v2-0078".into(),
        "" => String::new(),
        other => format!("urn:hl7v2:table:{}", uri_part(other)),
    }
}

/// A CWE/CE value (code^text^system[^alt code^alt text^alt system]) as a CodeableConcept.
pub(crate) fn concept(m: &Message, s: &Segment, field: usize) -> Value {
    let c = |n: usize| m.value(s, &format!("{field}.{n}"));
    let mut codings = Vec::new();
    for (code, display, sys) in [(c(1), c(2), c(3)), (c(4), c(5), c(6))] {
        if code.is_empty() {
            continue;
        }
        let mut coding = json!({"code": code});
        let sys = system(&sys);
        if !sys.is_empty() {
            coding["system"] = json!(sys);
        }
        if !display.is_empty() {
            coding["display"] = json!(display);
        }
        codings.push(coding);
    }
    let mut cc = json!({"coding": codings});
    let text = if c(2).is_empty() { c(9) } else { c(2) };
    if !text.is_empty() {
        cc["text"] = json!(text);
    }
    if codings_empty(&cc)
        && let Some(o) = cc.as_object_mut()
    {
        o.remove("coding");
    }
    cc
}

/// Text as a part of a URI: unreserved characters kept, the rest percent-encoded.
pub(crate) fn uri_part(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn codings_empty(cc: &Value) -> bool {
    cc["coding"].as_array().is_none_or(Vec::is_empty)
}

fn number(text: &str) -> Option<serde_json::Number> {
    let t = text.trim();
    let ok = !t.is_empty()
        && t.trim_start_matches(['-', '+']).chars().all(|c| c.is_ascii_digit() || c == '.')
        && t.matches('.').count() <= 1
        && !t.ends_with('.');
    if !ok {
        return None;
    }
    let t = t.trim_start_matches('+');
    let (sign, digits) = t.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", t));
    let (int, frac) = digits.split_once('.').map(|(i, f)| (i, Some(f))).unwrap_or((digits, None));
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let text = match frac {
        Some(f) => format!("{sign}{int}.{f}"),
        None => format!("{sign}{int}"),
    };
    serde_json::Number::from_str(&text).ok()
}

fn quantity(value: serde_json::Number, unit: &str, unit_system: &str) -> Value {
    let mut q = json!({"value": value});
    if !unit.is_empty() {
        q["unit"] = json!(unit);
        if unit_system == "UCUM" || unit_system.is_empty() {
            q["system"] = json!("http://unitsofmeasure.org");
            q["code"] = json!(unit);
        }
    }
    q
}

/// OBX-7 (`3.5-5.1`, `<0.10`, `>40`, or words) as a referenceRange.
fn range(text: &str, unit: &str, unit_system: &str) -> Option<Value> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    let q = |n: serde_json::Number| quantity(n, unit, unit_system);
    if let Some((lo, hi)) = t.split_once('-').filter(|(lo, _)| !lo.is_empty())
        && let (Some(l), Some(h)) = (number(lo), number(hi))
    {
        return Some(json!({"low": q(l), "high": q(h)}));
    }
    for (prefix, side) in [("<=", "high"), ("<", "high"), (">=", "low"), (">", "low")] {
        if let Some(n) = t.strip_prefix(prefix).and_then(number) {
            return Some(json!({side: q(n), "text": t}));
        }
    }
    Some(json!({"text": t}))
}

fn obx_status(code: &str) -> &'static str {
    match code {
        "P" | "R" | "S" => "preliminary",
        "C" => "corrected",
        "D" | "W" => "entered-in-error",
        "X" => "cancelled",
        _ => "final",
    }
}

fn err(set: usize, field: usize, code: &'static str, text: String) -> AckError {
    AckError { location: format!("OBX^{set}^{field}"), code, text }
}

/// One OBX as an Observation, or why not.
fn observation(m: &Message, s: &Segment, n: usize, patient: &str, when: &str) -> Result<Value, AckError> {
    let value_type = m.value(s, "2");
    let raw = m.value(s, "5");
    let unit = m.value(s, "6.1");
    let unit_system = m.value(s, "6.3");
    let code = concept(m, s, 3);
    if codings_empty(&code) && code["text"].is_null() {
        return Err(err(n, 3, "101", "OBX-3 (the observation's code) is empty".into()));
    }
    let mut o = json!({
        "resourceType": "Observation",
        "status": obx_status(&m.value(s, "11")),
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": code,
        "subject": {"reference": patient},
    });
    let effective = m.value(s, "14");
    let effective = if effective.is_empty() {
        when.to_string()
    } else {
        timestamp(&effective).map_err(|e| err(n, 14, "102", e))?
    };
    if !effective.is_empty() {
        o["effectiveDateTime"] = json!(effective);
    }
    if !raw.is_empty() {
        match value_type.as_str() {
            "NM" => {
                let v = number(&raw)
                    .ok_or_else(|| err(n, 5, "102", format!("OBX-5 '{raw}' is not a number (OBX-2 is NM)")))?;
                o["valueQuantity"] = quantity(v, &unit, &unit_system);
            }
            "SN" => {
                // comparator^number (or number^separator^number, kept as text)
                let comparator = m.value(s, "5.1");
                let num = m.value(s, "5.2");
                match (comparator.as_str(), number(&num), m.value(s, "5.3").is_empty()) {
                    (c @ ("" | "<" | ">" | "<=" | ">="), Some(v), true) => {
                        let mut q = quantity(v, &unit, &unit_system);
                        if !c.is_empty() {
                            q["comparator"] = json!(c);
                        }
                        o["valueQuantity"] = q;
                    }
                    _ => {
                        // a ratio or a range: kept as the text it is
                        let text =
                            [m.value(s, "5.1"), m.value(s, "5.2"), m.value(s, "5.3"), m.value(s, "5.4")].concat();
                        if text.is_empty() {
                            return Err(err(n, 5, "102", format!("OBX-5 '{raw}' is not a structured numeric")));
                        }
                        o["valueString"] = json!(text);
                    }
                }
            }
            "ST" | "TX" | "FT" => o["valueString"] = json!(raw),
            "CWE" | "CE" | "CNE" | "CF" => o["valueCodeableConcept"] = concept(m, s, 5),
            "DT" | "TS" | "DTM" => o["valueDateTime"] = json!(timestamp(&raw).map_err(|e| err(n, 5, "102", e))?),
            other => {
                return Err(err(
                    n,
                    2,
                    "102",
                    format!(
                        "OBX-2 value type '{other}' is not one Hale maps (NM, SN, ST, TX, FT, CWE, CE, CNE, DT, TS, DTM)"
                    ),
                ));
            }
        }
    }
    if let Some(r) = range(&m.value(s, "7"), &unit, &unit_system) {
        o["referenceRange"] = json!([r]);
    }
    let interp = m.value(s, "8.1");
    if !interp.is_empty() {
        o["interpretation"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": interp}]}]);
    }
    // who performed it: the performing organization (OBX-23, XON) and the responsible
    // observer (OBX-16, XCN), as logical references (their identifier and name)
    let mut performers = Vec::new();
    let org = m.value(s, "23.1");
    if !org.is_empty() {
        let mut r = json!({"type": "Organization", "display": org});
        let id = m.value(s, "23.10");
        if !id.is_empty() {
            r["identifier"] = json!({"value": id});
        }
        performers.push(r);
    }
    let (oid, family, given) = (m.value(s, "16.1"), m.value(s, "16.2"), m.value(s, "16.3"));
    if !family.is_empty() || !oid.is_empty() {
        let mut r = json!({"type": "Practitioner"});
        let name = [given, family].into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ");
        if !name.is_empty() {
            r["display"] = json!(name);
        }
        if !oid.is_empty() {
            r["identifier"] = json!({"value": oid});
        }
        performers.push(r);
    }
    if !performers.is_empty() {
        o["performer"] = json!(performers);
    }
    Ok(o)
}

/// Maps an ORU^R01 to a FHIR transaction. `Err` when the message cannot stand for a
/// patient's results at all (no PID, no identifier, no OBR): every error with where.
pub fn map_oru(m: &Message) -> Result<Mapped, Vec<AckError>> {
    let Some(pid) = m.segment("PID") else {
        return Err(vec![AckError {
            location: "PID".into(),
            code: "100",
            text: "an ORU^R01 names its patient in PID".into(),
        }]);
    };
    let ids = m.repetitions(pid, 3);
    let Some(id) = ids.iter().find(|r| r.first().is_some_and(|v| !v.is_empty())) else {
        return Err(vec![AckError {
            location: "PID^1^3".into(),
            code: "101",
            text: "PID-3 (the patient's identifier) is empty".into(),
        }]);
    };
    // the assigning authority: its universal id (PID-3.4.2) else its namespace (PID-3.4.1)
    let authority = m.value(pid, "3.4.2");
    let authority = if authority.is_empty() { m.value(pid, "3.4.1") } else { authority };
    let id_system = if authority.is_empty() {
        "urn:hl7v2:unknown-authority".to_string()
    } else if authority.chars().all(|c| c.is_ascii_digit() || c == '.') {
        format!("urn:oid:{authority}")
    } else {
        format!("urn:hl7v2:authority:{}", uri_part(&authority))
    };
    let patient_url = "urn:uuid:00000000-0000-4000-8000-000000000000";
    let mut patient = json!({
        "resourceType": "Patient",
        "identifier": [{"system": id_system, "value": id[0]}],
    });
    let family = m.value(pid, "5.1");
    let given: Vec<String> = [m.value(pid, "5.2"), m.value(pid, "5.3")].into_iter().filter(|g| !g.is_empty()).collect();
    if !family.is_empty() || !given.is_empty() {
        patient["name"] = json!([{"family": family, "given": given}]);
    }
    if let Ok(d) = timestamp(&m.value(pid, "7")) {
        patient["birthDate"] = json!(d.chars().take(10).collect::<String>());
    }
    if let Some(g) = match m.value(pid, "8").as_str() {
        "M" => Some("male"),
        "F" => Some("female"),
        "O" => Some("other"),
        "U" => Some("unknown"),
        _ => None,
    } {
        patient["gender"] = json!(g);
    }
    let mut entries = vec![json!({
        "fullUrl": patient_url,
        "resource": patient,
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={}|{}", id_system, id[0])},
    })];
    let mut obx = Vec::new();
    let mut report: Option<(Value, Vec<Value>, Vec<String>)> = None;
    let mut last_observation: Option<usize> = None;
    let mut set = 0usize;
    let flush = |report: &mut Option<(Value, Vec<Value>, Vec<String>)>, entries: &mut Vec<Value>| {
        if let Some((mut dr, results, notes)) = report.take() {
            if !results.is_empty() {
                dr["result"] = json!(results);
            }
            if !notes.is_empty() {
                dr["conclusion"] = json!(notes.join("\n"));
            }
            entries.push(json!({"resource": dr, "request": {"method": "POST", "url": "DiagnosticReport"}}));
        }
    };
    let mut seen_obr = false;
    let mut specimens = 0usize;
    for s in &m.segments {
        match s.name.as_str() {
            "OBR" => {
                flush(&mut report, &mut entries);
                seen_obr = true;
                last_observation = None;
                let when = timestamp(&m.value(s, "7")).unwrap_or_default();
                let mut dr = json!({
                    "resourceType": "DiagnosticReport",
                    "status": match m.value(s, "25").as_str() { "P" | "I" | "S" => "preliminary", "C" => "corrected", "X" => "cancelled", _ => "final" },
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
                    "code": concept(m, s, 4),
                    "subject": {"reference": patient_url},
                });
                if !when.is_empty() {
                    dr["effectiveDateTime"] = json!(when);
                }
                let mut identifiers = Vec::new();
                for (field, kind) in [(2, "PLAC"), (3, "FILL")] {
                    let v = m.value(s, &format!("{field}.1"));
                    if !v.is_empty() {
                        identifiers.push(json!({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": kind}]}, "value": v}));
                    }
                }
                if !identifiers.is_empty() {
                    dr["identifier"] = json!(identifiers);
                }
                report = Some((dr, Vec::new(), Vec::new()));
            }
            "OBX" => {
                set += 1;
                let when = report
                    .as_ref()
                    .and_then(|r| r.0["effectiveDateTime"].as_str().map(str::to_string))
                    .unwrap_or_default();
                match observation(m, s, set, patient_url, &when) {
                    Ok(o) => {
                        let url = format!("urn:uuid:00000000-0000-4000-8000-{:012}", set);
                        if let Some(r) = report.as_mut() {
                            r.1.push(json!({"reference": url}));
                        }
                        last_observation = Some(entries.len());
                        entries.push(
                            json!({"fullUrl": url, "resource": o, "request": {"method": "POST", "url": "Observation"}}),
                        );
                        obx.push(ObxOutcome::Mapped(url));
                    }
                    Err(e) => {
                        last_observation = None;
                        obx.push(ObxOutcome::Refused(e));
                    }
                }
            }
            "SPM" => {
                // the specimen of the current report (and of its observations so far)
                let Some(r) = report.as_mut() else { continue };
                specimens += 1;
                let url = format!("urn:uuid:00000000-0000-4000-a000-{specimens:012}");
                let mut sp = json!({"resourceType": "Specimen", "subject": {"reference": patient_url}});
                let mut ids = Vec::new();
                for (component, kind) in [(1, "PLAC"), (2, "FILL")] {
                    let v = m.value(s, &format!("2.{component}.1"));
                    if !v.is_empty() {
                        ids.push(json!({"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": kind}]}, "value": v}));
                    }
                }
                if !ids.is_empty() {
                    sp["identifier"] = json!(ids);
                }
                let ty = concept(m, s, 4);
                if ty.get("coding").is_some() || ty.get("text").is_some() {
                    sp["type"] = ty;
                }
                if let Ok(t) = timestamp(&m.value(s, "17.1")) {
                    sp["collection"] = json!({"collectedDateTime": t});
                }
                if let Ok(t) = timestamp(&m.value(s, "18")) {
                    sp["receivedTime"] = json!(t);
                }
                let reference = json!({"reference": url});
                let mut on_report = r.0["specimen"].as_array().cloned().unwrap_or_default();
                on_report.push(reference.clone());
                r.0["specimen"] = json!(on_report);
                for e in entries.iter_mut() {
                    if r.1.iter().any(|x| x["reference"] == e["fullUrl"]) && e["resource"].get("specimen").is_none() {
                        e["resource"]["specimen"] = reference.clone();
                    }
                }
                entries.push(json!({"fullUrl": url, "resource": sp, "request": {"method": "POST", "url": "Specimen"}}));
            }
            "NTE" => {
                let text = m.value(s, "3");
                if text.is_empty() {
                    continue;
                }
                match last_observation {
                    Some(i) => {
                        let o = &mut entries[i]["resource"];
                        let mut notes = o["note"].as_array().cloned().unwrap_or_default();
                        notes.push(json!({"text": text}));
                        o["note"] = json!(notes);
                    }
                    None => {
                        if let Some(r) = report.as_mut() {
                            r.2.push(text);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    flush(&mut report, &mut entries);
    if !seen_obr {
        return Err(vec![AckError {
            location: "OBR".into(),
            code: "100",
            text: "an ORU^R01 has at least one OBR".into(),
        }]);
    }
    Ok(Mapped { bundle: json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}), obx })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORU: &str = "MSH|^~\\&|LAB|NORTH|HALE|CLINIC|20240711160217-0700||ORU^R01^ORU_R01|MSG1|P|2.5.1\r\
PID|1||4711^^^CLINIC&1.2.3&ISO^MR||Alvarez^Ana^M||19800203|F\r\
OBR|1|PL1|FI1|24320-4^Basic metabolic^LN|||20240711150000-0700||||||||||||||20240711160000-0700|||F\r\
NTE|1||Hemolyzed sample\r\
OBX|1|NM|2823-3^Potassium^LN||6.9|mmol/L^^UCUM|3.5-5.1|HH|||F\r\
NTE|1||Repeated and confirmed\r\
OBX|2|SN|2345-7^Glucose^LN||<^40|mg/dL|70-99|L|||F\r\
OBX|3|ST|8251-1^Service comment^LN||See note||||||F\r\
OBX|4|CWE|5778-6^Color^LN||Y^Yellow^HL70000||||||F\r\
OBX|5|ED|11502-2^Report^LN||^application^pdf^Base64^JVBERi0=||||||F\r\
OBX|6|NM|||12|||||F\r";

    #[test]
    fn the_performing_laboratory_and_observer_are_named() {
        let text = ORU.replace(
            "OBX|1|NM|2823-3^Potassium^LN||6.9|mmol/L^^UCUM|3.5-5.1|HH|||F\r",
            "OBX|1|NM|2823-3^Potassium^LN||6.9|mmol/L^^UCUM|3.5-5.1|HH|||F|||20240711150000||77^Lab^Lee|||||||North Lab^^^^^^^^^CLIA-123\r",
        );
        let mapped = map_oru(&Message::parse(text.as_bytes()).unwrap()).unwrap();
        let o = mapped.bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["resource"]["resourceType"] == "Observation")
            .unwrap();
        let p = &o["resource"]["performer"];
        assert_eq!(p[0], json!({"type": "Organization", "display": "North Lab", "identifier": {"value": "CLIA-123"}}));
        assert_eq!(p[1], json!({"type": "Practitioner", "display": "Lee Lab", "identifier": {"value": "77"}}));
    }

    #[test]
    fn a_specimen_is_the_report_s_and_its_observations() {
        let text = format!(
            "{ORU}SPM|1|SP-9&LAB^F-9&LAB||119297000^Blood specimen^SCT|||||||||||||20240711140000-0700|20240711143000-0700\r"
        );
        let mapped = map_oru(&Message::parse(text.as_bytes()).unwrap()).unwrap();
        let entries = mapped.bundle["entry"].as_array().unwrap();
        let sp = entries.iter().find(|e| e["resource"]["resourceType"] == "Specimen").unwrap();
        assert_eq!(sp["resource"]["type"]["coding"][0]["code"], "119297000");
        assert_eq!(sp["resource"]["identifier"][0]["value"], "SP-9");
        assert!(sp["resource"]["collection"]["collectedDateTime"].as_str().unwrap().starts_with("2024-07-11T14:00"));
        let dr = entries.iter().find(|e| e["resource"]["resourceType"] == "DiagnosticReport").unwrap();
        assert_eq!(dr["resource"]["specimen"][0]["reference"], sp["fullUrl"]);
        let obs = entries.iter().find(|e| e["resource"]["resourceType"] == "Observation").unwrap();
        assert_eq!(obs["resource"]["specimen"]["reference"], sp["fullUrl"]);
    }

    #[test]
    fn a_result_message_becomes_a_report_and_every_obx_is_accounted_for() {
        let m = Message::parse(ORU.as_bytes()).unwrap();
        let mapped = map_oru(&m).unwrap();
        assert_eq!(mapped.obx.len(), 6, "every OBX accounted for");
        let refused: Vec<&AckError> = mapped
            .obx
            .iter()
            .filter_map(|o| match o {
                ObxOutcome::Refused(e) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(refused.iter().map(|e| e.location.as_str()).collect::<Vec<_>>(), ["OBX^5^2", "OBX^6^3"]);
        let entries = mapped.bundle["entry"].as_array().unwrap();
        let k = &entries[1]["resource"];
        assert_eq!(k["valueQuantity"]["value"].to_string(), "6.9");
        assert_eq!(k["valueQuantity"]["code"], "mmol/L");
        assert_eq!(k["referenceRange"][0]["high"]["value"].to_string(), "5.1");
        assert_eq!(k["interpretation"][0]["coding"][0]["code"], "HH");
        assert_eq!(k["note"][0]["text"], "Repeated and confirmed");
        assert_eq!(k["effectiveDateTime"], "2024-07-11T15:00:00-07:00");
        assert_eq!(
            entries[3]["resource"]["effectiveDateTime"], "2024-07-11T15:00:00-07:00",
            "the OBR's time when the OBX has none"
        );
        let glucose = &entries[2]["resource"];
        assert_eq!(
            (glucose["valueQuantity"]["comparator"].as_str(), glucose["valueQuantity"]["value"].to_string()),
            (Some("<"), "40".to_string())
        );
        assert_eq!(entries[3]["resource"]["valueString"], "See note");
        assert_eq!(entries[4]["resource"]["valueCodeableConcept"]["coding"][0]["code"], "Y");
        let dr = &entries.last().unwrap()["resource"];
        assert_eq!(dr["resourceType"], "DiagnosticReport");
        assert_eq!(dr["result"].as_array().unwrap().len(), 4);
        assert_eq!(dr["conclusion"], "Hemolyzed sample");
        assert_eq!(entries[0]["request"]["ifNoneExist"], "identifier=urn:oid:1.2.3|4711");
        for e in entries {
            let issues = hale_fhir::validate::validate_resource(&e["resource"]);
            assert!(!issues.iter().any(hale_fhir::Issue::is_error), "{issues:?}\n{}", e["resource"]);
        }
        let bad = Message::parse(b"MSH|^~\\&|A|B|C|D|2024||ORU^R01|1|P|2.5.1\rOBR|1").unwrap();
        assert_eq!(map_oru(&bad).unwrap_err()[0].location, "PID");
    }
}
