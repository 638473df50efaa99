//! ADT messages applied to the record: what `hale_hl7v2::adt::map_adt` read, matched to
//! what is stored by business identifier (the Patient by PID-3, the Encounter by PV1-19,
//! practitioners and locations by theirs), as one transaction: a new resource created
//! under `If-None-Exist` (so two messages at once make one), a stored one updated under
//! `If-Match` with what the message says and everything else it holds kept (a chart's
//! general practitioner, its links).

use hale_hl7v2::AckError;
use hale_hl7v2::adt::{Adt, Key, Party};
use hale_repository::Repository;
use serde_json::{Value, json};

/// Why an ADT message is not applied, and whether sending it again may pass (the store
/// could not be read).
pub(crate) struct Refusal {
    pub error: AckError,
    pub passing: bool,
}

fn err(location: &str, code: &'static str, text: impl Into<String>) -> Refusal {
    Refusal { error: AckError { location: location.into(), code, text: text.into() }, passing: false }
}

/// The current resource of `ty` with identifier `key`; an error when two have it.
async fn find(repo: &Repository, ty: &str, key: &Key, location: &str) -> Result<Option<Value>, Refusal> {
    let failed = |e: hale_repository::Error| Refusal {
        passing: true,
        ..err(
            location,
            "207",
            format!(
                "the {ty} could not be looked up, send it again: {}",
                e.outcome().issues.first().map(|i| i.diagnostics.clone()).unwrap_or_default()
            ),
        )
    };
    let t = hale_repository::resource_type(ty).map_err(failed)?;
    let pairs = vec![("identifier".to_string(), format!("{}|{}", key.0, key.1))];
    let req = hale_search::parse::parse(&t, &pairs, false)
        .map_err(|_| err(location, "102", format!("'{}' cannot be searched as an identifier", key.1)))?;
    let page = repo.search(&req, 2, false).await.map_err(failed)?;
    if page.entries.len() > 1 {
        return Err(err(location, "205", format!("two {ty} records have the identifier {}|{}", key.0, key.1)));
    }
    Ok(page.entries.first().and_then(|r| r.body.as_deref()).and_then(|b| serde_json::from_str(b).ok()))
}

/// A new entry's fullUrl.
fn new_url() -> String {
    format!("urn:uuid:{}", uuid::Uuid::now_v7())
}

/// The stored resource as the body of its update, and the `If-Match` of the version read.
fn for_update(mut stored: Value) -> (Value, String, String) {
    let version = stored["meta"]["versionId"].as_str().unwrap_or("1").to_string();
    let id = stored["id"].as_str().unwrap_or("").to_string();
    if let Some(o) = stored.as_object_mut() {
        o.remove("meta");
    }
    (stored, id, format!("W/\"{version}\""))
}

fn put(ty: &str, id: &str, resource: Value, if_match: &str) -> Value {
    json!({"resource": resource, "request": {"method": "PUT", "url": format!("{ty}/{id}"), "ifMatch": if_match}})
}

/// What the message says about the patient, over what is stored: its demographics
/// replaced, identifiers added, the rest kept.
fn merge_patient(mut stored: Value, said: &Value) -> Value {
    if let Some(o) = said.as_object() {
        for (k, v) in o {
            if k == "resourceType" || k == "identifier" {
                continue;
            }
            stored[k] = v.clone();
        }
    }
    let mut ids = stored["identifier"].as_array().cloned().unwrap_or_default();
    for id in said["identifier"].as_array().into_iter().flatten() {
        if !ids.iter().any(|i| i["system"] == id["system"] && i["value"] == id["value"]) {
            ids.push(id.clone());
        }
    }
    stored["identifier"] = json!(ids);
    stored
}

/// A reference to a party: the stored one, else one created once by its identifier,
/// else its name alone.
async fn party(repo: &Repository, ty: &str, p: &Party, entries: &mut Vec<Value>) -> Result<Value, Refusal> {
    let Some(key) = &p.identifier else { return Ok(json!({"display": p.display})) };
    if let Some(stored) = find(repo, ty, key, "PV1").await? {
        return Ok(json!({"reference": format!("{ty}/{}", stored["id"].as_str().unwrap_or("")), "display": p.display}));
    }
    let url = new_url();
    entries.push(json!({
        "fullUrl": url,
        "resource": p.resource,
        "request": {"method": "POST", "url": ty, "ifNoneExist": format!("identifier={}|{}", key.0, key.1)}
    }));
    Ok(json!({"reference": url, "display": p.display}))
}

fn add_link(patient: &mut Value, other: &str, ty: &str) {
    let mut links = patient["link"].as_array().cloned().unwrap_or_default();
    if !links.iter().any(|l| l["other"]["reference"] == other && l["type"] == ty) {
        links.push(json!({"other": {"reference": other}, "type": ty}));
    }
    patient["link"] = json!(links);
}

/// The transaction an ADT message makes, and a line saying what it does.
pub(crate) async fn transaction(repo: &Repository, adt: &Adt) -> Result<(Value, String), Refusal> {
    let mut entries = Vec::new();
    let (sys, mrn) = &adt.patient_key;
    let stored = find(repo, "Patient", &adt.patient_key, "PID^1^3").await?;
    let mut said = adt.patient.clone();
    let (patient_ref, mut lines) = match &stored {
        Some(p) => {
            let (body, id, if_match) = for_update(p.clone());
            said = merge_patient(body, &adt.patient);
            let r = format!("Patient/{id}");
            entries.push(json!({"resource": Value::Null, "request": {"method": "PUT", "url": r, "ifMatch": if_match}}));
            (r, vec![format!("patient {mrn} updated")])
        }
        None => {
            let url = new_url();
            entries.push(json!({
                "fullUrl": url,
                "resource": Value::Null,
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={sys}|{mrn}")}
            }));
            (url, vec![format!("patient {mrn} registered")])
        }
    };
    if let Some(prior_key) = &adt.prior {
        let Some(prior) = find(repo, "Patient", prior_key, "MRG^1^1").await? else {
            return Err(err("MRG^1^1", "204", format!("no patient has the identifier {} (MRG-1)", prior_key.1)));
        };
        let (mut prior_body, prior_id, if_match) = for_update(prior);
        if stored.as_ref().is_some_and(|s| s["id"] == prior_id.as_str()) {
            return Err(err(
                "MRG^1^1",
                "207",
                "PID-3 and MRG-1 name the same patient record: it cannot be merged into itself",
            ));
        }
        prior_body["active"] = json!(false);
        add_link(&mut prior_body, &patient_ref, "replaced-by");
        add_link(&mut said, &format!("Patient/{prior_id}"), "replaces");
        entries.push(put("Patient", &prior_id, prior_body, &if_match));
        lines.push(format!("patient {} merged into it (Patient/{prior_id} replaced-by)", prior_key.1));
    }
    entries[0]["resource"] = said;
    if let Some((encounter, key)) = &adt.encounter {
        let mut e = encounter.clone();
        e["subject"] = json!({"reference": patient_ref});
        let location = match &adt.location {
            Some(l) => Some(party(repo, "Location", l, &mut entries).await?),
            None => None,
        };
        let mut participants = Vec::new();
        for (ty, p) in &adt.practitioners {
            let who = party(repo, "Practitioner", p, &mut entries).await?;
            participants.push(json!({
                "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": ty}]}],
                "individual": who
            }));
        }
        match find(repo, "Encounter", key, "PV1^1^19").await? {
            Some(stored_e) => {
                let subject = stored_e["subject"]["reference"].as_str().unwrap_or("").to_string();
                if stored.is_none() || subject != patient_ref {
                    return Err(err(
                        "PV1^1^19",
                        "207",
                        format!("visit {} is another patient's; nothing was changed", key.1),
                    ));
                }
                let (mut body, id, if_match) = for_update(stored_e);
                if let Some(status) = adt.status {
                    body["status"] = json!(status);
                }
                body["class"] = e["class"].clone();
                for k in ["start", "end"] {
                    if let Some(v) = e["period"].get(k) {
                        body["period"][k] = v.clone();
                    }
                }
                if adt.event == "A13"
                    && let Some(p) = body["period"].as_object_mut()
                {
                    p.remove("end");
                }
                if let Some(h) = e.get("hospitalization") {
                    body["hospitalization"] = h.clone();
                }
                if !participants.is_empty() {
                    body["participant"] = json!(participants);
                }
                if let Some(l) = location {
                    // a transfer: the bed left is kept as completed
                    let mut locs = body["location"].as_array().cloned().unwrap_or_default();
                    let same = locs.last().is_some_and(|x| {
                        x["location"]["reference"] == l["reference"] && x["location"]["display"] == l["display"]
                    });
                    if !same {
                        for x in locs.iter_mut() {
                            x["status"] = json!("completed");
                        }
                        locs.push(json!({"location": l, "status": "active"}));
                    }
                    body["location"] = json!(locs);
                }
                lines.push(format!("visit {} {}", key.1, body["status"].as_str().unwrap_or("updated")));
                entries.push(put("Encounter", &id, body, &if_match));
            }
            None => {
                if let Some(l) = location {
                    e["location"] = json!([{"location": l, "status": "active"}]);
                }
                if !participants.is_empty() {
                    e["participant"] = json!(participants);
                }
                lines.push(format!("visit {} recorded ({})", key.1, e["status"].as_str().unwrap_or("")));
                entries.push(json!({
                    "fullUrl": new_url(),
                    "resource": e,
                    "request": {"method": "POST", "url": "Encounter", "ifNoneExist": format!("identifier={}|{}", key.0, key.1)}
                }));
            }
        }
    }
    Ok((json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}), lines.join(", ")))
}
