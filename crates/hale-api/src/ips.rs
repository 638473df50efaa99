//! The International Patient Summary: `Patient/[id]/$summary` (IPS implementation guide
//! 2.0.0, <http://hl7.org/fhir/uv/ips/OperationDefinition/summary>). A `document`
//! Bundle made on request from the record as it is now: first a Composition (LOINC
//! 60591-5) with the guide's sections — problems (11450-4), allergies (48765-2) and
//! medications (10160-0), which it requires, then immunizations (11369-6), results
//! (30954-2), vital signs (8716-3) and past procedures (47519-4) — each with a
//! narrative and its entries, or an `emptyReason` when the record holds none; then the
//! Patient, the author (a Device: Hale), and every resource a section names, each
//! with an absolute `fullUrl`. Everything is read through the caller's repository, so
//! the gate's access rules and audit apply; nothing is stored.

use hale_repository::{Error, Repository};
use serde_json::{Map, Value, json};

/// The IPS Composition profile, the one profile `$summary` makes.
pub const IPS_COMPOSITION: &str = "http://hl7.org/fhir/uv/ips/StructureDefinition/Composition-uv-ips";

const LOINC: &str = "http://loinc.org";

/// The most resources of one kind a summary reads.
const MAX_READ: usize = 500;

/// The most laboratory tests (the latest of each) the results section lists.
const MAX_RESULTS: usize = 60;

/// One section: its LOINC code, display and title, and what it lists.
struct Section {
    code: &'static str,
    display: &'static str,
    title: &'static str,
    entries: Vec<Value>,
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

/// What a person reads of a CodeableConcept: its text, else the first display, else
/// the first code.
pub fn concept(cc: &Value) -> String {
    if let Some(t) = cc["text"].as_str().filter(|t| !t.trim().is_empty()) {
        return t.to_string();
    }
    let codings = cc["coding"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    codings
        .iter()
        .find_map(|c| c["display"].as_str())
        .or_else(|| codings.iter().find_map(|c| c["code"].as_str()))
        .unwrap_or("")
        .to_string()
}

fn quantity(q: &Value) -> String {
    let value = match &q["value"] {
        Value::Number(n) => n.to_string(),
        _ => return String::new(),
    };
    let unit = q["unit"].as_str().or(q["code"].as_str()).unwrap_or("");
    if unit.is_empty() { value } else { format!("{value} {unit}") }
}

fn observation_value(o: &Value) -> String {
    if o.get("valueQuantity").is_some() {
        return quantity(&o["valueQuantity"]);
    }
    if let Some(s) = o["valueString"].as_str() {
        return s.to_string();
    }
    if o.get("valueCodeableConcept").is_some() {
        return concept(&o["valueCodeableConcept"]);
    }
    let parts: Vec<String> = o["component"]
        .as_array()
        .map(|cs| cs.iter().map(|c| quantity(&c["valueQuantity"])).filter(|v| !v.is_empty()).collect())
        .unwrap_or_default();
    // a blood pressure reads as 128/84 mmHg
    let numbers: Vec<&str> = parts.iter().filter_map(|p| p.split(' ').next()).collect();
    match (parts.len(), parts.first().and_then(|p| p.split_once(' '))) {
        (2, Some((_, unit))) if parts.iter().all(|p| p.ends_with(unit)) => format!("{} {unit}", numbers.join("/")),
        _ => parts.join(", "),
    }
}

fn flag(o: &Value) -> String {
    o["interpretation"][0]["coding"][0]["code"].as_str().filter(|c| *c != "N").unwrap_or("").to_string()
}

fn date(v: &Value) -> String {
    v.as_str().map(|s| s.chars().take(10).collect()).unwrap_or_default()
}

fn effective(o: &Value) -> String {
    date(if o.get("effectiveDateTime").is_some() { &o["effectiveDateTime"] } else { &o["effectivePeriod"]["start"] })
}

fn medication_name(m: &Value, medications: &[Value]) -> String {
    if m.get("medicationCodeableConcept").is_some() {
        return concept(&m["medicationCodeableConcept"]);
    }
    let r = m["medicationReference"]["reference"].as_str().unwrap_or("");
    medications
        .iter()
        .find(|x| format!("Medication/{}", text(&x["id"])) == r)
        .map(|x| concept(&x["code"]))
        .or_else(|| m["medicationReference"]["display"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A row of a section's narrative table.
fn row(r: &Value, medications: &[Value]) -> Vec<String> {
    match r["resourceType"].as_str().unwrap_or("") {
        "Condition" => vec![
            concept(&r["code"]),
            concept(&r["clinicalStatus"]),
            date(if r.get("onsetDateTime").is_some() { &r["onsetDateTime"] } else { &r["recordedDate"] }),
        ],
        "AllergyIntolerance" => vec![
            concept(&r["code"]),
            text(&r["criticality"]),
            r["reaction"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .flat_map(|x| x["manifestation"].as_array().cloned().unwrap_or_default())
                        .map(|m| concept(&m))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
        ],
        "MedicationRequest" | "MedicationStatement" => vec![
            medication_name(r, medications),
            r["dosageInstruction"][0]["text"].as_str().or(r["dosage"][0]["text"].as_str()).unwrap_or("").to_string(),
            text(&r["status"]),
        ],
        "Immunization" => vec![concept(&r["vaccineCode"]), date(&r["occurrenceDateTime"]), text(&r["status"])],
        "Observation" => vec![concept(&r["code"]), observation_value(r), flag(r), effective(r)],
        "Procedure" => vec![
            concept(&r["code"]),
            date(if r.get("performedDateTime").is_some() {
                &r["performedDateTime"]
            } else {
                &r["performedPeriod"]["start"]
            }),
        ],
        _ => vec![],
    }
}

/// Text escaped for XHTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

fn narrative(section: &Section, medications: &[Value]) -> String {
    let mut div = String::from("<div xmlns=\"http://www.w3.org/1999/xhtml\">");
    if section.entries.is_empty() {
        div.push_str("<p>No information recorded.</p>");
    } else {
        div.push_str("<table><thead><tr>");
        for c in COLUMNS.iter().find(|c| c.0 == section.code).map(|c| c.1).unwrap_or(&[]) {
            div.push_str(&format!("<th>{}</th>", esc(c)));
        }
        div.push_str("</tr></thead><tbody>");
        for e in &section.entries {
            div.push_str("<tr>");
            for cell in row(e, medications) {
                div.push_str(&format!("<td>{}</td>", esc(&cell)));
            }
            div.push_str("</tr>");
        }
        div.push_str("</tbody></table>");
    }
    div.push_str("</div>");
    div
}

/// The resources of one page of a type search through `repo`.
async fn search(repo: &Repository, ty: &str, pairs: &[(&str, &str)]) -> Result<Vec<Value>, Error> {
    let ty = hale_repository::resource_type(ty)?;
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let request = hale_search::parse::parse(&ty, &pairs, false).map_err(Error::invalid)?;
    let page = repo.search(&request, MAX_READ, false).await?;
    Ok(page.entries.iter().filter_map(|r| r.body.as_deref()).filter_map(|b| serde_json::from_str(b).ok()).collect())
}

fn status_in(r: &Value, field: &str, codes: &[&str]) -> bool {
    r[field]["coding"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["code"].as_str().is_some_and(|x| codes.contains(&x))))
}

/// The latest observation of each code (the list is newest first), at most `max`.
fn latest_of_each(observations: Vec<Value>, max: usize) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    observations
        .into_iter()
        .filter(|o| !matches!(o["status"].as_str(), Some("entered-in-error" | "cancelled")))
        .filter(|o| seen.insert(o["code"]["coding"].to_string() + &concept(&o["code"])))
        .take(max)
        .collect()
}

/// The IPS document of patient `id`, read through `repo`; `base` is the FHIR base URL
/// (the entries' `fullUrl` is `base/Type/id`), `now` the document's instant; the
/// resources `leave_out` names (`Type/id`: results not yet released to the patient,
/// say) are not in it.
pub async fn summary(repo: &Repository, id: &str, base: &str, now: &str, leave_out: &[String]) -> Result<Value, Error> {
    let rid = hale_repository::resource_id(id)?;
    let patient_type = hale_repository::resource_type("Patient")?;
    let stored = repo.read(&patient_type, &rid).await?;
    let patient: Value = stored.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default();
    let p = id;
    let q_problems = [("patient", p), ("clinical-status", "active,recurrence,relapse"), ("_sort", "-onset-date")];
    let q_allergies = [("patient", p)];
    let q_requests = [("patient", p), ("status", "active,on-hold"), ("_sort", "-authoredon")];
    let q_statements = [("patient", p), ("status", "active,intended")];
    let q_immunizations = [("patient", p), ("status", "completed"), ("_sort", "-date")];
    let q_labs = [("patient", p), ("category", "laboratory"), ("_sort", "-date")];
    let q_vitals = [("patient", p), ("category", "vital-signs"), ("_sort", "-date")];
    let q_procedures = [("patient", p), ("status", "completed"), ("_sort", "-date")];
    let (problems, allergies, requests, statements, immunizations, labs, vitals, procedures) = tokio::join!(
        search(repo, "Condition", &q_problems),
        search(repo, "AllergyIntolerance", &q_allergies),
        search(repo, "MedicationRequest", &q_requests),
        search(repo, "MedicationStatement", &q_statements),
        search(repo, "Immunization", &q_immunizations),
        search(repo, "Observation", &q_labs),
        search(repo, "Observation", &q_vitals),
        search(repo, "Procedure", &q_procedures),
    );
    let allergies: Vec<Value> = allergies?
        .into_iter()
        .filter(|a| !status_in(a, "clinicalStatus", &["inactive", "resolved"]))
        .filter(|a| !status_in(a, "verificationStatus", &["entered-in-error", "refuted"]))
        .collect();
    let problems: Vec<Value> = problems?
        .into_iter()
        .filter(|c| !status_in(c, "verificationStatus", &["entered-in-error", "refuted"]))
        .collect();
    let mut medications_listed = requests?;
    medications_listed.extend(statements?);
    // the Medication resources the medicines name, read as the caller
    let mut medications: Vec<Value> = Vec::new();
    let medication_type = hale_repository::resource_type("Medication")?;
    for m in &medications_listed {
        let Some(mid) = m["medicationReference"]["reference"].as_str().and_then(|r| r.strip_prefix("Medication/"))
        else {
            continue;
        };
        if medications.iter().any(|x| x["id"] == mid) {
            continue;
        }
        if let Ok(mid) = hale_repository::resource_id(mid)
            && let Ok(s) = repo.read(&medication_type, &mid).await
            && let Some(v) = s.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok())
        {
            medications.push(v);
        }
    }
    let sections = vec![
        Section { code: "11450-4", display: "Problem list - Reported", title: "Active problems", entries: problems },
        Section {
            code: "48765-2",
            display: "Allergies and adverse reactions Document",
            title: "Allergies and intolerances",
            entries: allergies,
        },
        Section {
            code: "10160-0",
            display: "History of Medication use Narrative",
            title: "Medication",
            entries: medications_listed,
        },
        Section {
            code: "11369-6",
            display: "History of Immunization Narrative",
            title: "Immunizations",
            entries: immunizations?,
        },
        Section {
            code: "30954-2",
            display: "Relevant diagnostic tests/laboratory data Narrative",
            title: "Results",
            entries: latest_of_each(labs?, MAX_RESULTS),
        },
        Section { code: "8716-3", display: "Vital signs", title: "Vital signs", entries: latest_of_each(vitals?, 20) },
        Section {
            code: "47519-4",
            display: "History of Procedures Document",
            title: "History of procedures",
            entries: procedures?,
        },
    ];
    let mut sections = sections;
    for s in &mut sections {
        s.entries.retain(|e| !leave_out.contains(&reference(e)));
    }
    Ok(document(&patient, &sections, &medications, base, now))
}

fn full_url(base: &str, r: &Value) -> String {
    format!("{base}/{}/{}", text(&r["resourceType"]), text(&r["id"]))
}

fn reference(r: &Value) -> String {
    format!("{}/{}", text(&r["resourceType"]), text(&r["id"]))
}

fn document(patient: &Value, sections: &[Section], medications: &[Value], base: &str, now: &str) -> Value {
    let composition_id = uuid::Uuid::now_v7();
    let device_id = uuid::Uuid::now_v7();
    let device_url = format!("urn:uuid:{device_id}");
    let name = patient["name"][0]["text"].as_str().map(str::to_string).unwrap_or_else(|| {
        let n = &patient["name"][0];
        let given: Vec<&str> =
            n["given"].as_array().map(|g| g.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        format!("{} {}", given.join(" "), n["family"].as_str().unwrap_or("")).trim().to_string()
    });
    let mut composition_sections = Vec::new();
    for s in sections {
        let mut section = Map::new();
        section.insert("title".into(), s.title.into());
        section.insert("code".into(), json!({"coding": [{"system": LOINC, "code": s.code, "display": s.display}]}));
        section.insert("text".into(), json!({"status": "generated", "div": narrative(s, medications)}));
        if s.entries.is_empty() {
            section.insert(
                "emptyReason".into(),
                json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/list-empty-reason", "code": "unavailable", "display": "Unavailable"}],
                       "text": "No information recorded in this record"}),
            );
        } else {
            section.insert("entry".into(), s.entries.iter().map(|e| json!({"reference": reference(e)})).collect());
        }
        composition_sections.push(Value::Object(section));
    }
    let title =
        format!("International Patient Summary{}", if name.is_empty() { String::new() } else { format!(": {name}") });
    let composition = json!({
        "resourceType": "Composition",
        "text": {"status": "generated", "div": format!(
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>{}</p><p>Made by Hale on {} from the record as it was then.</p></div>",
            esc(&title), esc(now))},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{composition_id}")},
        "status": "final",
        "type": {"coding": [{"system": LOINC, "code": "60591-5", "display": "Patient summary Document"}]},
        "subject": {"reference": reference(patient), "display": name},
        "date": now,
        "author": [{"reference": device_url, "display": "Hale"}],
        "title": title,
        "confidentiality": "N",
        "section": composition_sections,
    });
    let mut entries = vec![
        json!({"fullUrl": format!("urn:uuid:{composition_id}"), "resource": composition}),
        json!({"fullUrl": full_url(base, patient), "resource": patient}),
        json!({"fullUrl": device_url, "resource": {
            "resourceType": "Device",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Hale, the electronic health record that made this summary</p></div>"},
            "deviceName": [{"name": "Hale", "type": "manufacturer-name"}],
            "type": {"text": "Electronic health record system"},
        }}),
    ];
    let mut seen = std::collections::HashSet::new();
    for r in sections.iter().flat_map(|s| s.entries.iter()).chain(medications) {
        if seen.insert(reference(r)) {
            entries.push(json!({"fullUrl": full_url(base, r), "resource": r}));
        }
    }
    json!({
        "resourceType": "Bundle",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", uuid::Uuid::now_v7())},
        "type": "document",
        "timestamp": now,
        "entry": entries,
    })
}

/// A summary document for people: each section's title, its column headings and one
/// row of words per entry (from the resources in the document), in the document's order.
pub fn readable(doc: &Value) -> Vec<(String, Vec<String>, Vec<Vec<String>>)> {
    let entries = doc["entry"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let resources: Vec<&Value> = entries.iter().map(|e| &e["resource"]).collect();
    let medications: Vec<Value> =
        resources.iter().filter(|r| r["resourceType"] == "Medication").map(|r| (*r).clone()).collect();
    let sections = entries.first().and_then(|e| e["resource"]["section"].as_array()).cloned().unwrap_or_default();
    sections
        .iter()
        .map(|s| {
            let code = s["code"]["coding"][0]["code"].as_str().unwrap_or("");
            let columns = COLUMNS.iter().find(|c| c.0 == code).map(|c| c.1).unwrap_or(&[]);
            let rows = s["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    let r = e["reference"].as_str()?;
                    resources.iter().find(|x| reference(x) == r).map(|x| row(x, &medications))
                })
                .collect();
            (text(&s["title"]), columns.iter().map(|c| c.to_string()).collect(), rows)
        })
        .collect()
}

/// Each section's column headings, by its LOINC code.
const COLUMNS: &[(&str, &[&str])] = &[
    ("11450-4", &["Problem", "Status", "Since"]),
    ("48765-2", &["Substance", "Criticality", "Reaction"]),
    ("10160-0", &["Medicine", "How to take", "Status"]),
    ("11369-6", &["Vaccine", "Date", "Status"]),
    ("30954-2", &["Test", "Result", "Flag", "Date"]),
    ("8716-3", &["Measurement", "Value", "Flag", "Date"]),
    ("47519-4", &["Procedure", "Date"]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narratives_escape_what_they_show() {
        let s = Section {
            code: "11450-4",
            display: "",
            title: "",
            entries: vec![json!({"resourceType": "Condition", "id": "c", "code": {"text": "<script>x</script> & co"}})],
        };
        let div = narrative(&s, &[]);
        assert!(div.contains("&lt;script&gt;x&lt;/script&gt; &amp; co"), "{div}");
        assert!(!div.contains("<script>"));
    }

    #[test]
    fn values_read_as_people_write_them() {
        let bp = json!({"component": [
            {"valueQuantity": {"value": 128, "unit": "mmHg"}},
            {"valueQuantity": {"value": 84, "unit": "mmHg"}}]});
        assert_eq!(observation_value(&bp), "128/84 mmHg");
        assert_eq!(observation_value(&json!({"valueQuantity": {"value": 7.9, "unit": "%"}})), "7.9 %");
        assert_eq!(concept(&json!({"coding": [{"code": "x"}, {"display": "Shown"}]})), "Shown");
    }

    #[test]
    fn empty_sections_say_why_and_every_entry_resolves() {
        let patient = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Ng", "given": ["Al"]}]});
        let sections = vec![
            Section { code: "11450-4", display: "Problem list", title: "Problems", entries: vec![] },
            Section {
                code: "48765-2",
                display: "Allergies and adverse reactions",
                title: "Allergies",
                entries: vec![json!({"resourceType": "AllergyIntolerance", "id": "a1", "code": {"text": "Peanut"},
                    "patient": {"reference": "Patient/p1"}, "recorder": {"reference": "Practitioner/elsewhere"}})],
            },
        ];
        let doc = document(&patient, &sections, &[], "http://h/fhir", "2026-01-01T00:00:00Z");
        let comp = &doc["entry"][0]["resource"];
        assert_eq!(comp["section"][0]["emptyReason"]["coding"][0]["code"], "unavailable");
        assert!(comp["section"][0].get("entry").is_none());
        assert_eq!(comp["section"][1]["entry"][0]["reference"], "AllergyIntolerance/a1");
        assert_eq!(doc["entry"][1]["fullUrl"], "http://h/fhir/Patient/p1");
        assert!(doc["entry"].as_array().unwrap().iter().any(|e| e["fullUrl"] == "http://h/fhir/AllergyIntolerance/a1"));
        assert_eq!(comp["title"], "International Patient Summary: Al Ng");
        // the document Hale makes is one Hale (and R4) accepts
        let issues: Vec<_> =
            hale_fhir::validate::validate_resource(&doc).into_iter().filter(|i| i.is_error()).collect();
        assert!(issues.is_empty(), "{issues:?}");
    }
}
