//! Medication reconciliation: `GET/POST /app/patient/{id}/medications/reconcile`. Each
//! active or held prescription is continued, held or stopped (a stop or a hold needs a
//! reason); saving writes, in one transaction, the changed MedicationRequests (under
//! `If-Match` on the version shown) and a List of the medications continued, the
//! reconciled medication list (LOINC 10160-0) with its date and who reconciled it.

use std::collections::HashMap;

use axum::Form;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::chart::{Tab, allergies, header, open_patient};
use crate::fhir::{concept, reference_label};
use crate::layout::{page, problem, respond};
use crate::{Session, failure, now_instant, same_secret, search};

type Fields = HashMap<String, String>;

/// What is done with each medication: the resource, `continue`/`hold`/`stop`, the reason.
type Decided<'a> = Vec<(&'a Value, &'static str, String)>;

async fn medications(session: &Session, id: &str) -> Result<Vec<Value>, Response> {
    let q = [("patient", id), ("status", "active,on-hold"), ("_sort", "-authoredon")];
    search(&session.repo, "MedicationRequest", &q, 200).await.map_err(|e| failure(session, &e))
}

fn reconcile_page(
    session: &Session,
    patient: &Value,
    all: &[Value],
    meds: &[Value],
    typed: &Fields,
    errors: &[(String, String)],
) -> Markup {
    let id = patient["id"].as_str().unwrap_or("");
    let body = html! {
        (header(session, patient, all, Tab::Summary))
        section.card aria-labelledby="rec-h" {
            h1 #rec-h { "Reconcile medications" }
            p.hint { "Go through each medicine with the patient: continue it, hold it, or stop it. A hold or a stop needs a reason." }
            @if !errors.is_empty() { p.error role="alert" { "Nothing was saved. Check the medicines marked below." } }
            @if meds.is_empty() { p.empty { "No active medication." } } @else {
                form method="post" action={ "/app/patient/" (id) "/medications/reconcile" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    @for m in meds {
                        @let mid = m["id"].as_str().unwrap_or("");
                        @let chosen = typed.get(&format!("action-{mid}")).map(String::as_str).unwrap_or("continue");
                        @let err = errors.iter().find(|e| e.0 == mid).map(|e| e.1.clone());
                        fieldset.med {
                            legend { strong { (concept(&m["medicationCodeableConcept"])) } @if m["status"] == "on-hold" { " " span.badge { "on hold" } } }
                            p.muted { (m["dosageInstruction"][0]["text"].as_str().unwrap_or("")) " · " (session.zone.day(&m["authoredOn"])) " · " (reference_label(&m["requester"])) }
                            div.choices {
                                @for (value, label) in [("continue", "Continue"), ("hold", "Hold"), ("stop", "Stop")] {
                                    label.choice {
                                        input type="radio" name={ "action-" (mid) } value=(value) checked[chosen == value];
                                        " " (label)
                                    }
                                }
                            }
                            div.field {
                                label for={ "reason-" (mid) } { "Reason (for a hold or a stop)" }
                                input id={ "reason-" (mid) } name={ "reason-" (mid) } type="text" autocomplete="off"
                                    value=(typed.get(&format!("reason-{mid}")).cloned().unwrap_or_default()) aria-invalid=[err.as_ref().map(|_| "true")];
                                @if let Some(e) = err { p.error.field-error { (e) } }
                            }
                        }
                    }
                    div.actions {
                        button.primary type="submit" { "Save the reconciled list" }
                        a href={ "/app/patient/" (id) } { "Cancel" }
                    }
                }
            }
        }
    };
    page("Reconcile medications", Some(session), body)
}

/// `GET /app/patient/{id}/medications/reconcile`.
pub(crate) async fn form(session: Session, Path(id): Path<String>) -> Response {
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (all, meds) = match (allergies(&session, &id).await, medications(&session, &id).await) {
        (Ok(a), Ok(m)) => (a, m),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    respond(StatusCode::OK, reconcile_page(&session, &patient, &all, &meds, &Fields::new(), &[]))
}

/// What the form asks for each medication: (the resource, action, reason), or the
/// messages by medication id.
pub(crate) fn decide<'a>(meds: &'a [Value], typed: &Fields) -> Result<Decided<'a>, Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for m in meds {
        let mid = m["id"].as_str().unwrap_or("");
        let action = match typed.get(&format!("action-{mid}")).map(String::as_str).unwrap_or("continue") {
            "continue" => "continue",
            "hold" => "hold",
            "stop" => "stop",
            _ => {
                errors.push((mid.to_string(), "Choose continue, hold or stop.".to_string()));
                continue;
            }
        };
        let reason = typed.get(&format!("reason-{mid}")).map(|r| r.trim().to_string()).unwrap_or_default();
        if action != "continue" && reason.chars().count() < 3 {
            errors.push((mid.to_string(), "Give the reason.".to_string()));
        }
        if reason.chars().count() > 300 {
            errors.push((mid.to_string(), "The reason is at most 300 characters.".to_string()));
        }
        out.push((m, action, reason));
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// The transaction of a reconciliation.
pub(crate) fn bundle(
    patient: &str,
    source: Option<&str>,
    decided: &[(&Value, &'static str, String)],
    now: &str,
) -> Value {
    let mut entries = Vec::new();
    let mut continued = Vec::new();
    for (m, action, reason) in decided {
        let mid = m["id"].as_str().unwrap_or("");
        let status = match *action {
            "stop" => "stopped",
            "hold" => "on-hold",
            _ => "active",
        };
        if *action == "continue" {
            continued.push(json!({"item": {"reference": format!("MedicationRequest/{mid}"), "display": concept(&m["medicationCodeableConcept"])}}));
        }
        if m["status"] == status {
            continue;
        }
        let version = m["meta"]["versionId"].as_str().unwrap_or("1").to_string();
        let mut changed = (*m).clone();
        if let Some(o) = changed.as_object_mut() {
            o.remove("meta");
        }
        changed["status"] = json!(status);
        if reason.is_empty() {
            if let Some(o) = changed.as_object_mut() {
                o.remove("statusReason");
            }
        } else {
            changed["statusReason"] = json!({"text": reason});
        }
        entries.push(json!({"resource": changed, "request": {"method": "PUT", "url": format!("MedicationRequest/{mid}"), "ifMatch": format!("W/\"{version}\"")}}));
    }
    let mut list = json!({
        "resourceType": "List",
        "status": "current",
        "mode": "snapshot",
        "title": "Reconciled medication list",
        "code": {"coding": [{"system": "http://loinc.org", "code": "10160-0", "display": "History of Medication use Narrative"}], "text": "Reconciled medication list"},
        "subject": {"reference": format!("Patient/{patient}")},
        "date": now,
        "entry": continued,
    });
    if continued_is_empty(&list) {
        list["emptyReason"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/list-empty-reason", "code": "nilknown", "display": "Nil Known"}]});
        if let Some(o) = list.as_object_mut() {
            o.remove("entry");
        }
    }
    if let Some(s) = source {
        list["source"] = json!({"reference": s});
    }
    entries.push(json!({"resource": list, "request": {"method": "POST", "url": "List"}}));
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn continued_is_empty(list: &Value) -> bool {
    list["entry"].as_array().is_none_or(Vec::is_empty)
}

/// `POST /app/patient/{id}/medications/reconcile`.
pub(crate) async fn save(session: Session, Path(id): Path<String>, Form(typed): Form<Fields>) -> Response {
    if !typed.get("csrf").is_some_and(|t| same_secret(t, &session.csrf)) {
        return problem(
            StatusCode::FORBIDDEN,
            Some(&session),
            "The form expired",
            "Nothing was saved. Open the page again.",
        );
    }
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (all, meds) = match (allergies(&session, &id).await, medications(&session, &id).await) {
        (Ok(a), Ok(m)) => (a, m),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let decided = match decide(&meds, &typed) {
        Ok(d) => d,
        Err(errors) => {
            return respond(StatusCode::BAD_REQUEST, reconcile_page(&session, &patient, &all, &meds, &typed, &errors));
        }
    };
    let source = session.account.fhir_user.as_deref().filter(|u| u.starts_with("Practitioner/"));
    match session.repo.process_bundle(bundle(&id, source, &decided, &now_instant())).await {
        Ok(_) => Redirect::to(&format!("/app/patient/{id}")).into_response(),
        Err(e) if e.category() == hale_fhir::Category::PreconditionFailed => problem(
            StatusCode::CONFLICT,
            Some(&session),
            "Changed meanwhile",
            "A prescription changed while you were reconciling. Nothing was saved; open the page again.",
        ),
        Err(e) => failure(&session, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconciliation_stops_holds_and_lists_what_continues() {
        let med = |id: &str, status: &str| {
            json!({"resourceType": "MedicationRequest", "id": id, "meta": {"versionId": "2"}, "status": status, "intent": "order",
                "medicationCodeableConcept": {"text": id}, "subject": {"reference": "Patient/p"}})
        };
        let meds = vec![med("a", "active"), med("b", "active"), med("c", "on-hold")];
        let mut typed = Fields::new();
        typed.insert("action-b".into(), "stop".into());
        assert_eq!(decide(&meds, &typed).unwrap_err()[0].0, "b", "a stop needs a reason");
        typed.insert("reason-b".into(), "no longer needed".into());
        typed.insert("action-c".into(), "continue".into());
        let decided = decide(&meds, &typed).unwrap();
        let b = bundle("p", Some("Practitioner/x"), &decided, "2026-12-07T10:00:00Z");
        let entries = b["entry"].as_array().unwrap();
        // b stopped, c resumed, the list of a and c
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0]["resource"]["status"], "stopped");
        assert_eq!(entries[0]["request"]["ifMatch"], "W/\"2\"");
        assert_eq!(entries[1]["resource"]["status"], "active");
        let list = &entries[2]["resource"];
        assert_eq!(list["entry"].as_array().unwrap().len(), 2);
        for e in entries {
            let issues = hale_fhir::validate::validate_resource(&e["resource"]);
            assert!(!issues.iter().any(hale_fhir::Issue::is_error), "{issues:?}\n{}", e["resource"]);
        }
    }
}
