//! `hale hl7 send FILE...`: HL7 v2 result messages (ORU^R01) from files, each parsed,
//! mapped to FHIR and written as one transaction through a system repository (the
//! principal `system:hl7`, audited), with its acknowledgement.

use std::path::Path;

use hale_hl7v2::{AckCode, AckError, Message, ack};
use hale_repository::Repository;
use serde_json::{Value, json};

/// What became of one message: its acknowledgement code, the ACK text, and a line for
/// the operator.
#[derive(Debug)]
pub struct Sent {
    pub code: AckCode,
    pub ack: String,
    pub summary: String,
}

/// Now as an HL7 DTM in UTC (`YYYYMMDDHHMMSS+0000`).
fn now_dtm() -> String {
    let fhir = hale_repository::Instant::now().to_fhir();
    let digits: String = fhir.chars().take(19).filter(char::is_ascii_digit).collect();
    format!("{digits}+0000")
}

/// Receives one message: `AR` when it cannot be read or is not a result message, `AE`
/// when it cannot be stored (nothing is), else `AA` (OBX that could not be mapped are
/// named in ERR segments beside it).
pub async fn receive(repo: &Repository, bytes: &[u8]) -> Sent {
    let control = format!("HALE{}", uuid::Uuid::now_v7().simple());
    let msg = match Message::parse(bytes) {
        Ok(m) => m,
        Err(e) => {
            // no header to answer to: an ACK of what could be read
            let text = format!(
                "MSH|^~\\&|HALE||||{}||ACK|{control}|P|2.5.1\rMSA|AR|\rERR||{}|100^{}^HL70357|E||||{}\r",
                now_dtm(),
                e.location,
                hale_hl7v2::table_0357("100"),
                e.reason
            );
            return Sent { code: AckCode::Ar, ack: text, summary: format!("AR: {e}") };
        }
    };
    let (kind, trigger, _) = msg.message_type();
    if (kind.as_str(), trigger.as_str()) != ("ORU", "R01") {
        let e = AckError {
            location: "MSH^1^9".into(),
            code: "200",
            text: format!("Hale receives ORU^R01 here, not {kind}^{trigger}"),
        };
        let a = ack(&msg, AckCode::Ar, &control, &now_dtm(), std::slice::from_ref(&e));
        return Sent { code: AckCode::Ar, ack: a, summary: format!("AR: {}", e.text) };
    }
    let mapped = match hale_hl7v2::oru::map_oru(&msg) {
        Ok(m) => m,
        Err(errors) => {
            let a = ack(&msg, AckCode::Ae, &control, &now_dtm(), &errors);
            let why: Vec<String> = errors.iter().map(|e| format!("{} ({})", e.text, e.location)).collect();
            return Sent { code: AckCode::Ae, ack: a, summary: format!("AE: {}", why.join("; ")) };
        }
    };
    let refused: Vec<AckError> = mapped
        .obx
        .iter()
        .filter_map(|o| match o {
            hale_hl7v2::oru::ObxOutcome::Refused(e) => Some(e.clone()),
            hale_hl7v2::oru::ObxOutcome::Mapped(_) => None,
        })
        .collect();
    let stored = mapped.obx.len() - refused.len();
    let mut bundle = mapped.bundle;
    let routed = match route_to_orders(repo, &mut bundle, &patient_name(&msg)).await {
        Ok(n) => n,
        Err(err) => {
            let e = AckError {
                location: "OBR^1^2".into(),
                code: "207",
                text: format!("the order could not be looked up: {err}"),
            };
            let a = ack(&msg, AckCode::Ae, &control, &now_dtm(), std::slice::from_ref(&e));
            return Sent { code: AckCode::Ae, ack: a, summary: format!("AE: {}", e.text) };
        }
    };
    match repo.process_bundle(bundle).await {
        Ok((_, results)) if results.iter().all(|r| r.is_ok()) => {
            let a = ack(&msg, AckCode::Aa, &control, &now_dtm(), &refused);
            let summary = format!(
                "AA: {stored} observations stored{}{}",
                if routed > 0 {
                    format!(", {routed} matched to their order (in the orderer's inbox)")
                } else {
                    String::new()
                },
                if refused.is_empty() { String::new() } else { format!(", {} OBX named in ERR", refused.len()) }
            );
            Sent { code: AckCode::Aa, ack: a, summary }
        }
        Ok((_, results)) => {
            let first = results.iter().find_map(|r| r.as_ref().err()).map(|e| e.to_string()).unwrap_or_default();
            let e = AckError { location: "MSH".into(), code: "207", text: format!("not stored: {first}") };
            let a = ack(&msg, AckCode::Ae, &control, &now_dtm(), std::slice::from_ref(&e));
            Sent { code: AckCode::Ae, ack: a, summary: format!("AE: {}", e.text) }
        }
        Err(err) => {
            let e = AckError { location: "MSH".into(), code: "207", text: format!("not stored: {err}") };
            let a = ack(&msg, AckCode::Ae, &control, &now_dtm(), std::slice::from_ref(&e));
            Sent { code: AckCode::Ae, ack: a, summary: format!("AE: {}", e.text) }
        }
    }
}

fn patient_name(msg: &Message) -> String {
    let (family, given) = (msg.get("PID-5.1"), msg.get("PID-5.2"));
    match (family.is_empty(), given.is_empty()) {
        (false, false) => format!("{family}, {given}"),
        (false, true) => family,
        _ => "the patient".into(),
    }
}

/// Matches each report to the laboratory order it answers (OBR-2, the placer order
/// number Hale gave the ServiceRequest): the report and its observations are then
/// `basedOn` the order and about its patient, the order is completed (under `If-Match`),
/// and a review task goes to the clinician who ordered it, as for a result entered by
/// hand. Returns how many reports were matched.
async fn route_to_orders(
    repo: &Repository,
    bundle: &mut Value,
    patient_name: &str,
) -> Result<usize, hale_repository::Error> {
    let ty = hale_repository::resource_type("ServiceRequest")?;
    let Some(entries) = bundle["entry"].as_array_mut() else { return Ok(0) };
    let mut extra = Vec::new();
    let mut routed = 0;
    let now = hale_repository::Instant::now().to_fhir();
    for i in 0..entries.len() {
        if entries[i]["resource"]["resourceType"] != "DiagnosticReport" {
            continue;
        }
        let placer = entries[i]["resource"]["identifier"].as_array().and_then(|ids| {
            ids.iter()
                .find(|id| id["type"]["coding"][0]["code"] == "PLAC")
                .and_then(|id| id["value"].as_str().map(str::to_string))
        });
        let Some(placer) = placer else { continue };
        let pairs = vec![("identifier".to_string(), format!("{}|{placer}", hale_app::orders::PLACER_SYSTEM))];
        let Ok(req) = hale_search::parse::parse(&ty, &pairs, false) else { continue };
        let page = repo.search(&req, 1, false).await?;
        let Some(order) =
            page.entries.first().and_then(|r| r.body.as_deref()).and_then(|b| serde_json::from_str::<Value>(b).ok())
        else {
            continue;
        };
        if order["status"] != "active" {
            continue;
        }
        let sr = order["id"].as_str().unwrap_or("").to_string();
        let report_url = format!("urn:uuid:00000000-0000-4000-9000-{:012}", i);
        entries[i]["fullUrl"] = json!(report_url);
        let based_on = json!([{"reference": format!("ServiceRequest/{sr}")}]);
        entries[i]["resource"]["basedOn"] = based_on.clone();
        entries[i]["resource"]["subject"] = order["subject"].clone();
        let results: Vec<String> = entries[i]["resource"]["result"]
            .as_array()
            .map(|r| r.iter().filter_map(|x| x["reference"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let (mut flagged, mut critical) = (0, Vec::new());
        for e in entries.iter_mut().filter(|e| e["fullUrl"].as_str().is_some_and(|u| results.iter().any(|r| r == u))) {
            e["resource"]["basedOn"] = based_on.clone();
            e["resource"]["subject"] = order["subject"].clone();
            let code = e["resource"]["interpretation"][0]["coding"][0]["code"].as_str().unwrap_or("N").to_string();
            if code != "N" {
                flagged += 1;
            }
            if matches!(code.as_str(), "HH" | "LL" | "AA") {
                let name = e["resource"]["code"]["coding"][0]["display"].as_str().unwrap_or("a result").to_string();
                let value = e["resource"]["valueQuantity"]["value"].to_string();
                critical.push(
                    format!("{name} {value} {}", e["resource"]["valueQuantity"]["unit"].as_str().unwrap_or(""))
                        .trim()
                        .to_string(),
                );
            }
        }
        let mut done = order.clone();
        let version = order["meta"]["versionId"].as_str().unwrap_or("1").to_string();
        if let Some(o) = done.as_object_mut() {
            o.remove("meta");
        }
        done["status"] = json!("completed");
        extra.push(json!({"resource": done, "request": {"method": "PUT", "url": format!("ServiceRequest/{sr}"), "ifMatch": format!("W/\"{version}\"")}}));
        let test = entries[i]["resource"]["code"]["text"]
            .as_str()
            .or_else(|| entries[i]["resource"]["code"]["coding"][0]["display"].as_str())
            .unwrap_or("a result")
            .to_string();
        let review = hale_app::orders::Review { test: &test, patient_name, flagged, critical: &critical, now: &now };
        if let Some(task) = hale_app::orders::review_task(&order, &report_url, &review) {
            extra.push(json!({"resource": task, "request": {"method": "POST", "url": "Task"}}));
        }
        routed += 1;
    }
    entries.extend(extra);
    // a patient record nothing refers to any more (every report matched its order) is not created
    let patient_url = entries.first().and_then(|e| e["fullUrl"].as_str()).unwrap_or("").to_string();
    let text = entries.get(1..).map(|rest| serde_json::to_string(rest).unwrap_or_default()).unwrap_or_default();
    if routed > 0 && !text.contains(&patient_url) {
        entries.remove(0);
    }
    Ok(routed)
}

/// Receives each file (one message a file).
pub async fn send_files(repo: &Repository, paths: &[std::path::PathBuf]) -> Vec<(String, Sent)> {
    let mut out = Vec::new();
    for p in paths {
        let name = p.display().to_string();
        match std::fs::read(Path::new(p)) {
            Ok(bytes) => out.push((name, receive(repo, &bytes).await)),
            Err(e) => out.push((
                name,
                Sent { code: AckCode::Ar, ack: String::new(), summary: format!("AR: the file cannot be read: {e}") },
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ack_time_is_an_hl7_timestamp() {
        let t = super::now_dtm();
        assert_eq!(t.len(), 19, "{t}");
        assert!(hale_hl7v2::timestamp(&t).is_ok_and(|f| f.ends_with("+00:00")), "{t}");
    }
}
