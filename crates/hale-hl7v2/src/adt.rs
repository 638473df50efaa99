//! ADT (admissions, discharges, transfers, registrations, merges) to FHIR, pure: the
//! Patient's demographics from PID, the Encounter from PV1 (its business identifier,
//! PV1-19), the practitioners and the location PV1 names, and for A40 the identifier
//! of the patient merged away (MRG-1). Matching them to what is stored (by business
//! identifier, never by a hash of fields) is the caller's, which reads the store.
//!
//! Events: A01 admit, A02 transfer, A03 discharge, A04 register, A05 pre-admit, A06
//! outpatient to inpatient, A08 update, A11 cancel admit, A13 cancel discharge, A40
//! merge. Where the HL7 v2-to-FHIR guide's maps exist (PID to Patient, PV1 to Encounter,
//! XCN to Practitioner, PL to Location) they are followed in what is mapped here.

use serde_json::{Value, json};

use crate::oru::{concept, uri_part};
use crate::{AckError, Message, Segment, timestamp};

/// The events Hale receives.
pub const EVENTS: &[&str] = &["A01", "A02", "A03", "A04", "A05", "A06", "A08", "A11", "A13", "A40"];

/// A business identifier: (system, value).
pub type Key = (String, String);

/// A practitioner or a location named by the message: the resource to create when no
/// stored one has its identifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Party {
    pub resource: Value,
    pub identifier: Option<Key>,
    pub display: String,
}

/// The mapping of an ADT message.
#[derive(Debug, Clone, PartialEq)]
pub struct Adt {
    /// The trigger event (`A01`).
    pub event: String,
    /// The Patient's demographics and identifiers (no id): what the message says.
    pub patient: Value,
    /// The identifier the patient is matched by (PID-3's first).
    pub patient_key: Key,
    /// The Encounter (no subject, location or participants: the caller refers to the
    /// stored ones), with its identifier PV1-19, when the event is about a visit and
    /// PV1-19 is valued.
    pub encounter: Option<(Value, Key)>,
    /// The status the event sets (`None`: the stored one is kept, as for A08).
    pub status: Option<&'static str>,
    pub location: Option<Party>,
    /// Participants by type (`ATND`, `REF`, `CON`, `ADM`).
    pub practitioners: Vec<(&'static str, Party)>,
    /// A40: the identifier of the patient merged into this one (MRG-1).
    pub prior: Option<Key>,
    /// What was not mapped, for ERR.
    pub warnings: Vec<AckError>,
}

/// An identifier system from an assigning authority: its universal id (an OID as
/// `urn:oid:`) else its namespace.
pub fn authority_system(universal: &str, namespace: &str) -> String {
    let authority = if universal.is_empty() { namespace } else { universal };
    if authority.is_empty() {
        "urn:hl7v2:unknown-authority".to_string()
    } else if authority.chars().all(|c| c.is_ascii_digit() || c == '.') {
        format!("urn:oid:{}", authority.trim_end_matches('.'))
    } else {
        format!("urn:hl7v2:authority:{}", uri_part(authority.trim()))
    }
}

fn err(location: &str, code: &'static str, text: impl Into<String>) -> AckError {
    AckError { location: location.into(), code, text: text.into() }
}

fn date(ts: &str) -> Option<String> {
    timestamp(ts).ok().map(|d| d.chars().take(10).collect())
}

/// PID-3's identifiers (each CX with its authority as the system).
fn identifiers(m: &Message, pid: &Segment, field: usize) -> Vec<Value> {
    (0..m.repeats(pid, field))
        .filter_map(|r| {
            let value = m.at(pid, field, r, 1, None).trim().to_string();
            if value.is_empty() {
                return None;
            }
            let system =
                authority_system(m.at(pid, field, r, 4, Some(2)).trim(), m.at(pid, field, r, 4, Some(1)).trim());
            let mut id = json!({"system": system, "value": value});
            let ty = m.at(pid, field, r, 5, None);
            if !ty.is_empty() {
                id["type"] =
                    json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": ty}]});
            }
            Some(id)
        })
        .collect()
}

fn names(m: &Message, pid: &Segment) -> Vec<Value> {
    (0..m.repeats(pid, 5))
        .filter_map(|r| {
            let c = |n| m.at(pid, 5, r, n, None).trim().to_string();
            let family = m.at(pid, 5, r, 1, Some(1)).trim().to_string();
            let given: Vec<String> = [c(2), c(3)].into_iter().filter(|g| !g.is_empty()).collect();
            if family.is_empty() && given.is_empty() {
                return None;
            }
            let mut n = json!({});
            if !family.is_empty() {
                n["family"] = json!(family);
            }
            if !given.is_empty() {
                n["given"] = json!(given);
            }
            if !c(4).is_empty() {
                n["suffix"] = json!([c(4)]);
            }
            if !c(5).is_empty() {
                n["prefix"] = json!([c(5)]);
            }
            if let Some(u) = match c(7).as_str() {
                "L" => Some("official"),
                "M" => Some("maiden"),
                "N" => Some("nickname"),
                "D" => Some("usual"),
                "A" => Some("anonymous"),
                _ => None,
            } {
                n["use"] = json!(u);
            }
            Some(n)
        })
        .collect()
}

fn addresses(m: &Message, pid: &Segment) -> Vec<Value> {
    (0..m.repeats(pid, 11))
        .filter_map(|r| {
            let c = |n| m.at(pid, 11, r, n, None).trim().to_string();
            let lines: Vec<String> =
                [m.at(pid, 11, r, 1, Some(1)).trim().to_string(), c(2)].into_iter().filter(|l| !l.is_empty()).collect();
            let mut a = json!({});
            if !lines.is_empty() {
                a["line"] = json!(lines);
            }
            for (key, n) in [("city", 3), ("state", 4), ("postalCode", 5), ("country", 6)] {
                if !c(n).is_empty() {
                    a[key] = json!(c(n));
                }
            }
            if a.as_object().is_none_or(|o| o.is_empty()) {
                return None;
            }
            if let Some(u) = match c(7).as_str() {
                "H" => Some("home"),
                "B" | "O" => Some("work"),
                "C" | "V" => Some("temp"),
                _ => None,
            } {
                a["use"] = json!(u);
            }
            Some(a)
        })
        .collect()
}

fn telecoms(m: &Message, pid: &Segment) -> Vec<Value> {
    let mut out = Vec::new();
    for (field, default_use) in [(13, "home"), (14, "work")] {
        for r in 0..m.repeats(pid, field) {
            let c = |n| m.at(pid, field, r, n, None).trim().to_string();
            let (system, value) = if !c(4).is_empty() {
                ("email", c(4))
            } else if !c(7).is_empty() {
                let mut v = if c(6).is_empty() { c(7) } else { format!("({}) {}", c(6), c(7)) };
                if !c(8).is_empty() {
                    v.push_str(&format!(" ext. {}", c(8)));
                }
                (if c(3) == "FX" { "fax" } else { "phone" }, v)
            } else if !c(1).is_empty() {
                ("phone", c(1))
            } else {
                continue;
            };
            let mut t = json!({"system": system, "value": value});
            let u = match (c(2).as_str(), c(3).as_str()) {
                (_, "CP") => "mobile",
                ("WPN", _) => "work",
                ("PRN" | "ORN" | "VHN", _) => "home",
                _ => default_use,
            };
            t["use"] = json!(u);
            out.push(t);
        }
    }
    out
}

/// The Patient PID describes.
fn patient(m: &Message) -> Result<(Value, Key), AckError> {
    let Some(pid) = m.segment("PID") else { return Err(err("PID", "100", "an ADT message names its patient in PID")) };
    let ids = identifiers(m, pid, 3);
    let Some(first) = ids.first() else {
        return Err(err("PID^1^3", "101", "PID-3 (the patient's identifier) is empty"));
    };
    let key = (first["system"].as_str().unwrap_or("").to_string(), first["value"].as_str().unwrap_or("").to_string());
    let mut p = json!({"resourceType": "Patient", "identifier": ids});
    let names = names(m, pid);
    if !names.is_empty() {
        p["name"] = json!(names);
    }
    if let Some(d) = date(&m.value(pid, "7")) {
        p["birthDate"] = json!(d);
    }
    if let Some(g) = match m.value(pid, "8").as_str() {
        "M" => Some("male"),
        "F" => Some("female"),
        "O" | "A" | "N" => Some("other"),
        "U" => Some("unknown"),
        _ => None,
    } {
        p["gender"] = json!(g);
    }
    let addresses = addresses(m, pid);
    if !addresses.is_empty() {
        p["address"] = json!(addresses);
    }
    let telecoms = telecoms(m, pid);
    if !telecoms.is_empty() {
        p["telecom"] = json!(telecoms);
    }
    let marital = m.value(pid, "16.1");
    if !marital.is_empty() {
        let v3 = ["A", "D", "I", "L", "M", "P", "S", "T", "U", "W"].contains(&marital.as_str());
        let mut coding = json!({"code": marital, "system": if v3 { "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus".to_string() } else { "http://terminology.hl7.org/CodeSystem/v2-0002".to_string() }});
        let display = m.value(pid, "16.2");
        if !display.is_empty() {
            coding["display"] = json!(display);
        }
        p["maritalStatus"] = json!({"coding": [coding]});
    }
    match (timestamp(&m.value(pid, "29")), m.value(pid, "30").as_str()) {
        (Ok(t), _) => p["deceasedDateTime"] = json!(t),
        (Err(_), "Y") => p["deceasedBoolean"] = json!(true),
        (Err(_), "N") => p["deceasedBoolean"] = json!(false),
        _ => {}
    }
    Ok((p, key))
}

/// A practitioner from an XCN (id^family^given^middle^suffix^prefix^degree^^authority...,
/// XCN-13 the identifier type).
fn practitioner(m: &Message, s: &Segment, field: usize) -> Option<Party> {
    let c = |n| m.at(s, field, 0, n, None).trim().to_string();
    let id = c(1);
    let family = m.at(s, field, 0, 2, Some(1)).trim().to_string();
    let given: Vec<String> = [c(3), c(4)].into_iter().filter(|g| !g.is_empty()).collect();
    if id.is_empty() && family.is_empty() {
        return None;
    }
    let display =
        [c(6), given.join(" "), family.clone()].into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ");
    let mut r = json!({"resourceType": "Practitioner"});
    let mut name = json!({});
    if !family.is_empty() {
        name["family"] = json!(family);
    }
    if !given.is_empty() {
        name["given"] = json!(given);
    }
    if !c(6).is_empty() {
        name["prefix"] = json!([c(6)]);
    }
    if !c(5).is_empty() {
        name["suffix"] = json!([c(5)]);
    }
    if name.as_object().is_some_and(|o| !o.is_empty()) {
        r["name"] = json!([name]);
    }
    let identifier = (!id.is_empty()).then(|| {
        let system = if c(13) == "NPI" {
            "http://hl7.org/fhir/sid/us-npi".to_string()
        } else {
            authority_system(m.at(s, field, 0, 9, Some(2)).trim(), m.at(s, field, 0, 9, Some(1)).trim())
        };
        (system, id)
    });
    if let Some((system, value)) = &identifier {
        r["identifier"] = json!([{"system": system, "value": value}]);
    }
    Some(Party { resource: r, identifier, display })
}

/// The location PV1-3 (point of care^room^bed^facility) names.
fn location(m: &Message, pv1: &Segment) -> Option<Party> {
    let c = |n| m.value(pv1, &format!("3.{n}")).trim().to_string();
    let facility = m.value(pv1, "3.4.1").trim().to_string();
    let (poc, room, bed) = (c(1), c(2), c(3));
    if poc.is_empty() && room.is_empty() && bed.is_empty() {
        return None;
    }
    let value = [facility.as_str(), poc.as_str(), room.as_str(), bed.as_str()].join("/");
    let mut display = poc.clone();
    if !room.is_empty() {
        display = format!("{display} room {room}").trim().to_string();
    }
    if !bed.is_empty() {
        display = format!("{display} bed {bed}").trim().to_string();
    }
    if !facility.is_empty() {
        display = format!("{display}, {facility}");
    }
    let system = "urn:hale:hl7v2:location".to_string();
    let physical = if !bed.is_empty() {
        ("bd", "Bed")
    } else if !room.is_empty() {
        ("ro", "Room")
    } else {
        ("wa", "Ward")
    };
    let r = json!({
        "resourceType": "Location",
        "identifier": [{"system": system, "value": value}],
        "status": "active",
        "name": display,
        "mode": "instance",
        "physicalType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": physical.0, "display": physical.1}]}
    });
    Some(Party { resource: r, identifier: Some((system, value)), display })
}

/// The status an event sets; `None` keeps the stored one.
fn status(event: &str) -> Option<&'static str> {
    match event {
        "A01" | "A02" | "A04" | "A06" | "A13" => Some("in-progress"),
        "A03" => Some("finished"),
        "A05" => Some("planned"),
        "A11" => Some("cancelled"),
        _ => None,
    }
}

/// Maps an ADT message. Refused (for the ACK's ERR) when it is not one of [`EVENTS`],
/// names no patient, or (A40) no patient merged away, or merges a patient into itself.
pub fn map_adt(m: &Message) -> Result<Adt, Vec<AckError>> {
    let (kind, trigger, _) = m.message_type();
    if kind != "ADT" || !EVENTS.contains(&trigger.as_str()) {
        return Err(vec![err("MSH^1^9", "201", format!("Hale does not receive {kind}^{trigger}"))]);
    }
    let (patient, patient_key) = patient(m).map_err(|e| vec![e])?;
    let mut adt = Adt {
        event: trigger.clone(),
        patient,
        patient_key,
        encounter: None,
        status: status(&trigger),
        location: None,
        practitioners: Vec::new(),
        prior: None,
        warnings: Vec::new(),
    };
    if trigger == "A40" {
        let Some(mrg) = m.segment("MRG") else {
            return Err(vec![err("MRG", "100", "an A40 names the patient merged away in MRG")]);
        };
        let prior = identifiers(m, mrg, 1);
        let Some(first) = prior.first() else {
            return Err(vec![err("MRG^1^1", "101", "MRG-1 (the identifier of the patient merged away) is empty")]);
        };
        let key =
            (first["system"].as_str().unwrap_or("").to_string(), first["value"].as_str().unwrap_or("").to_string());
        if key == adt.patient_key {
            return Err(vec![err("MRG^1^1", "207", "a patient cannot be merged into itself (MRG-1 is PID-3)")]);
        }
        adt.prior = Some(key);
        return Ok(adt);
    }
    let Some(pv1) = m.segment("PV1") else {
        if trigger != "A08" {
            adt.warnings.push(err("PV1", "100", "no PV1: the visit is not recorded"));
        }
        return Ok(adt);
    };
    adt.location = location(m, pv1);
    for (field, ty) in [(7, "ATND"), (8, "REF"), (9, "CON"), (17, "ADM")] {
        if let Some(p) = practitioner(m, pv1, field) {
            adt.practitioners.push((ty, p));
        }
    }
    let visit = m.value(pv1, "19.1").trim().to_string();
    if visit.is_empty() {
        adt.warnings.push(err(
            "PV1^1^19",
            "101",
            "PV1-19 (the visit number) is empty: the patient is recorded, the visit is not",
        ));
        return Ok(adt);
    }
    let key = (authority_system(m.value(pv1, "19.4.2").trim(), m.value(pv1, "19.4.1").trim()), visit);
    let class = match m.value(pv1, "2.1").as_str() {
        _ if trigger == "A06" => ("IMP", "inpatient encounter"),
        "I" => ("IMP", "inpatient encounter"),
        "E" => ("EMER", "emergency"),
        "P" => ("PRENC", "pre-admission"),
        _ => ("AMB", "ambulatory"),
    };
    let mut e = json!({
        "resourceType": "Encounter",
        "identifier": [{"system": key.0, "value": key.1}],
        "status": adt.status.unwrap_or("in-progress"),
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class.0, "display": class.1},
    });
    let event_time = {
        let occurred = m.get("EVN-6");
        if occurred.is_empty() { m.get("EVN-2") } else { occurred }
    };
    let admitted = timestamp(&m.value(pv1, "44"))
        .ok()
        .or_else(|| matches!(trigger.as_str(), "A01" | "A04" | "A06").then(|| timestamp(&event_time).ok()).flatten());
    let discharged = timestamp(&m.value(pv1, "45"))
        .ok()
        .or_else(|| (trigger == "A03").then(|| timestamp(&event_time).ok()).flatten());
    let mut period = json!({});
    if let Some(a) = admitted {
        period["start"] = json!(a);
    }
    if let Some(d) = discharged
        && trigger != "A13"
    {
        period["end"] = json!(d);
    }
    if period.as_object().is_some_and(|o| !o.is_empty()) {
        e["period"] = period;
    }
    let disposition = m.value(pv1, "36.1");
    if !disposition.is_empty() {
        let mut cc = concept(m, pv1, 36);
        if cc.get("coding").is_none() {
            cc["coding"] = json!([{"code": disposition}]);
        }
        if let Some(c) = cc["coding"][0].as_object_mut()
            && !c.contains_key("system")
        {
            c.insert("system".into(), json!("http://terminology.hl7.org/CodeSystem/v2-0112"));
        }
        e["hospitalization"] = json!({"dischargeDisposition": cc});
    }
    adt.encounter = Some((e, key));
    Ok(adt)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A01: &str = "MSH|^~\\&|REG|NORTH|HALE|CLINIC|20261201083000||ADT^A01^ADT_A01|C1|P|2.5.1\r\
        EVN|A01|20261201082900\r\
        PID|1||MRN-1^^^NORTH&1.2.3&ISO^MR~99-88^^^SSA^SS||Doe^Jane^Q^Jr^Dr^^L~Smith^Jane^^^^^M||19800203|F|||1 Main St^Apt 2^Springfield^IL^62701^USA^H||^PRN^PH^^1^555^5551234~^NET^Internet^jane@example.test|^WPN^PH^^1^555^5559876^12||M^Married^HL70002\r\
        PV1|1|I|WARD1^101^A^NORTH HOSP||||123^Attend^Ann^^^Dr^^^NORTH&1.2.9&ISO^L^^^NPI||||||||||456^Admit^Al||V-77^^^NORTH&1.2.3&ISO^VN|||||||||||||||||||||||||20261201080000\r";

    #[test]
    fn an_admission_maps_the_patient_the_visit_and_who_and_where() {
        let m = Message::parse(A01.as_bytes()).unwrap();
        let a = map_adt(&m).unwrap();
        assert_eq!(a.event, "A01");
        assert_eq!(a.patient_key, ("urn:oid:1.2.3".to_string(), "MRN-1".to_string()));
        let p = &a.patient;
        assert_eq!(p["identifier"].as_array().unwrap().len(), 2);
        assert_eq!(p["identifier"][1]["system"], "urn:hl7v2:authority:SSA");
        assert_eq!(p["name"][0]["family"], "Doe");
        assert_eq!(p["name"][0]["given"], json!(["Jane", "Q"]));
        assert_eq!(p["name"][0]["use"], "official");
        assert_eq!(p["name"][1]["use"], "maiden");
        assert_eq!(p["birthDate"], "1980-02-03");
        assert_eq!(p["gender"], "female");
        assert_eq!(p["address"][0]["line"], json!(["1 Main St", "Apt 2"]));
        assert_eq!(p["address"][0]["use"], "home");
        assert_eq!(p["telecom"][0], json!({"system": "phone", "value": "(555) 5551234", "use": "home"}));
        assert_eq!(p["telecom"][1]["system"], "email");
        assert_eq!(p["telecom"][2]["value"], "(555) 5559876 ext. 12");
        assert_eq!(p["maritalStatus"]["coding"][0]["code"], "M");
        let (e, key) = a.encounter.clone().unwrap();
        assert_eq!(key, ("urn:oid:1.2.3".to_string(), "V-77".to_string()));
        assert_eq!(e["status"], "in-progress");
        assert_eq!(e["class"]["code"], "IMP");
        assert!(e["period"]["start"].as_str().unwrap().starts_with("2026-12-01"), "{e}");
        assert_eq!(a.location.as_ref().unwrap().identifier.as_ref().unwrap().1, "NORTH HOSP/WARD1/101/A");
        assert_eq!(a.practitioners.len(), 2);
        assert_eq!(a.practitioners[0].0, "ATND");
        assert_eq!(a.practitioners[0].1.identifier, Some(("http://hl7.org/fhir/sid/us-npi".into(), "123".into())));
        assert_eq!(a.practitioners[1].0, "ADM");
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    }

    #[test]
    fn events_set_the_status_and_a_discharge_its_end() {
        for (event, status) in [("A03", "finished"), ("A05", "planned"), ("A11", "cancelled"), ("A13", "in-progress")] {
            let text =
                A01.replace("ADT^A01^ADT_A01", &format!("ADT^{event}")).replace("EVN|A01", &format!("EVN|{event}"));
            let a = map_adt(&Message::parse(text.as_bytes()).unwrap()).unwrap();
            let (e, _) = a.encounter.unwrap();
            assert_eq!(e["status"], status, "{event}");
            if event == "A03" {
                assert!(e["period"]["end"].as_str().is_some_and(|t| t.starts_with("2026-12-01")), "{e}");
            }
        }
        let a08 = A01.replace("ADT^A01^ADT_A01", "ADT^A08");
        assert_eq!(map_adt(&Message::parse(a08.as_bytes()).unwrap()).unwrap().status, None);
    }

    #[test]
    fn a_merge_names_the_patient_merged_away_and_never_the_same_one() {
        let a40 = "MSH|^~\\&|REG|NORTH|HALE|CLINIC|20261201083000||ADT^A40^ADT_A39|C2|P|2.5.1\rEVN|A40|20261201083000\rPID|1||MRN-1^^^NORTH&1.2.3&ISO^MR||Doe^Jane\rMRG|MRN-2^^^NORTH&1.2.3&ISO^MR\r";
        let a = map_adt(&Message::parse(a40.as_bytes()).unwrap()).unwrap();
        assert_eq!(a.prior, Some(("urn:oid:1.2.3".to_string(), "MRN-2".to_string())));
        let itself = a40.replace("MRG|MRN-2", "MRG|MRN-1");
        let e = map_adt(&Message::parse(itself.as_bytes()).unwrap()).unwrap_err();
        assert_eq!(e[0].location, "MRG^1^1");
        let none = a40.replace("MRG|MRN-2^^^NORTH&1.2.3&ISO^MR\r", "");
        assert_eq!(map_adt(&Message::parse(none.as_bytes()).unwrap()).unwrap_err()[0].location, "MRG");
    }

    #[test]
    fn a_visit_without_its_number_records_the_patient_and_says_so() {
        let text = A01.replace("V-77^^^NORTH&1.2.3&ISO^VN", "");
        let a = map_adt(&Message::parse(text.as_bytes()).unwrap()).unwrap();
        assert!(a.encounter.is_none());
        assert_eq!(a.warnings[0].location, "PV1^1^19");
        let unknown = A01.replace("ADT^A01^ADT_A01", "ADT^A99");
        assert_eq!(map_adt(&Message::parse(unknown.as_bytes()).unwrap()).unwrap_err()[0].code, "201");
    }
}
