//! `GET /portal/sharing`: who can see the patient's record, and the patient's say in it.
//! The organization that manages the record and those that cared for them (an
//! Encounter they provided, a CareTeam they are in) can see it; an active Consent of
//! the patient permits another organization, or denies one (a denial wins over every
//! other reason, as the access filter reads it). `POST /portal/sharing` makes such a
//! Consent (`permit` or `deny`, the organization as the provision's actor) or withdraws
//! one (its status `inactive`, under `If-Match`), through the patient's repository.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde_json::{Value, json};

use crate::portal::{PatientSession, failure, notice, page_for};
use crate::{AppState, now_instant, same_secret, search};

/// The organizations of the directory a patient may choose from, at most.
const MAX_ORGANIZATIONS: usize = 500;

/// A Consent's top-level decision and the Organizations it names.
fn decision(c: &Value) -> Option<(&str, Vec<String>)> {
    let kind = c["provision"]["type"].as_str()?;
    let orgs = c["provision"]["actor"]
        .as_array()?
        .iter()
        .filter_map(|a| a["reference"]["reference"].as_str()?.strip_prefix("Organization/").map(str::to_string))
        .collect();
    Some((kind, orgs))
}

fn org_name(orgs: &[Value], id: &str) -> String {
    orgs.iter()
        .find(|o| o["id"].as_str() == Some(id))
        .and_then(|o| o["name"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("Organization {id}"))
}

/// `GET /portal/sharing`.
pub(crate) async fn page(session: PatientSession) -> Response {
    page_with(&session, None, StatusCode::OK).await
}

async fn page_with(session: &PatientSession, message: Option<&str>, status: StatusCode) -> Response {
    let p = session.patient.as_str();
    let repo = &session.repo;
    let ty = match hale_repository::resource_type("Patient") {
        Ok(t) => t,
        Err(e) => return failure(&e),
    };
    let Ok(rid) = hale_repository::resource_id(p) else {
        return notice(StatusCode::NOT_FOUND, "No record", "Your record could not be found.");
    };
    let patient: Value = match repo.read(&ty, &rid).await {
        Ok(r) => r.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null),
        Err(e) => return failure(&e),
    };
    let q_consents = [("patient", p), ("status", "active")];
    let q_encs = [("patient", p)];
    let q_orgs = [("_sort", "name")];
    let (consents, encounters, teams, orgs) = tokio::join!(
        search(repo, "Consent", &q_consents, 200),
        search(repo, "Encounter", &q_encs, 500),
        search(repo, "CareTeam", &q_encs, 100),
        search(repo, "Organization", &q_orgs, MAX_ORGANIZATIONS),
    );
    let (consents, encounters, teams, orgs) = match (consents, encounters, teams, orgs) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => return failure(&e),
    };
    let managing = patient["managingOrganization"]["reference"]
        .as_str()
        .and_then(|r| r.strip_prefix("Organization/"))
        .map(str::to_string);
    let mut cared: Vec<String> = encounters
        .iter()
        .filter(|e| !matches!(e["status"].as_str(), Some("cancelled" | "entered-in-error")))
        .filter_map(|e| e["serviceProvider"]["reference"].as_str()?.strip_prefix("Organization/").map(str::to_string))
        .chain(teams.iter().flat_map(|t| {
            t["participant"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["member"]["reference"].as_str()?.strip_prefix("Organization/").map(str::to_string))
                .collect::<Vec<_>>()
        }))
        .filter(|o| Some(o) != managing.as_ref())
        .collect();
    cared.sort();
    cared.dedup();
    let mine: Vec<(&Value, &str, Vec<String>)> =
        consents.iter().filter_map(|c| decision(c).map(|(k, o)| (c, k, o))).collect();
    let denied: Vec<&String> = mine.iter().filter(|m| m.1 == "deny").flat_map(|m| m.2.iter()).collect();
    let body = html! {
        section.card aria-labelledby="s-h" {
            h1 #s-h { "Who can see my record" }
            @if let Some(m) = message { p.notice role="status" { (m) } }
            ul.plain {
                @if let Some(m) = &managing {
                    li { span { strong { (org_name(&orgs, m)) } br; small.muted { "your care team: they keep your record" } } @if denied.contains(&m) { span.badge { "you said no" } } }
                }
                @for o in &cared {
                    li { span { strong { (org_name(&orgs, o)) } br; small.muted { "they cared for you (a visit or your care team)" } } @if denied.contains(&o) { span.badge { "you said no" } } }
                }
                @for (c, kind, names) in &mine {
                    @for o in names {
                        li {
                            span {
                                strong { (org_name(&orgs, o)) } br;
                                small.muted { @if *kind == "permit" { "you allowed them on " } @else { "you said they may not, on " } (session.zone.day(&c["dateTime"])) }
                            }
                            form.inline method="post" action="/portal/sharing" {
                                input type="hidden" name="csrf" value=(session.csrf);
                                input type="hidden" name="withdraw" value=(c["id"].as_str().unwrap_or(""));
                                button.secondary type="submit" { @if *kind == "permit" { "Stop sharing" } @else { "Allow again" } }
                            }
                        }
                    }
                }
            }
            p.hint { "In an emergency a clinician elsewhere may open your record for an hour; you will see it under Who has seen my record." }
        }
        section.card.form-card aria-labelledby="s-new" {
            h2 #s-new { "Share with another organization, or say no to one" }
            form method="post" action="/portal/sharing" {
                input type="hidden" name="csrf" value=(session.csrf);
                div.field {
                    label for="org" { "Organization" }
                    select #org name="org" {
                        option value="" { "Choose…" }
                        @for o in &orgs {
                            @if let Some(id) = o["id"].as_str() { option value=(id) { (o["name"].as_str().unwrap_or(id)) } }
                        }
                    }
                }
                div.actions {
                    button.primary type="submit" name="decision" value="permit" { "Allow them to see my record" }
                    button.secondary type="submit" name="decision" value="deny" { "Do not let them see it" }
                }
            }
        }
    };
    let mut r = page_for(session, "Sharing", body);
    *r.status_mut() = status;
    r
}

/// `POST /portal/sharing`: a new decision, or one withdrawn.
pub(crate) async fn save(
    session: PatientSession,
    State(_st): State<Arc<AppState>>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if !f.get("csrf").is_some_and(|t| same_secret(t, &session.csrf)) {
        return notice(StatusCode::FORBIDDEN, "The form expired", "Nothing was changed. Open the page again.");
    }
    let Ok(ty) = hale_repository::resource_type("Consent") else {
        return notice(StatusCode::SERVICE_UNAVAILABLE, "Nothing was changed", "Try again in a moment.");
    };
    if let Some(id) = f.get("withdraw") {
        let found =
            search(&session.repo, "Consent", &[("patient", session.patient.as_str()), ("_id", id.as_str())], 1).await;
        let c = match found {
            Ok(mut v) if !v.is_empty() => v.remove(0),
            Ok(_) => return notice(StatusCode::NOT_FOUND, "Not found", "That is not one of your decisions."),
            Err(e) => return failure(&e),
        };
        let version = c["meta"]["versionId"].as_str().and_then(|v| hale_repository::version_id(v).ok());
        let Ok(rid) = hale_repository::resource_id(id) else {
            return notice(StatusCode::NOT_FOUND, "Not found", "That is not one of your decisions.");
        };
        let mut withdrawn = c.clone();
        withdrawn["status"] = json!("inactive");
        if let Some(o) = withdrawn.as_object_mut() {
            o.remove("meta");
        }
        return match session.repo.update(&ty, &rid, withdrawn, version).await {
            Ok(_) => Redirect::to("/portal/sharing").into_response(),
            Err(e) => failure(&e),
        };
    }
    let decision = f.get("decision").map(String::as_str).unwrap_or("");
    let org = f.get("org").map(|o| o.trim()).unwrap_or("");
    if !matches!(decision, "permit" | "deny") {
        return page_with(
            &session,
            Some("Nothing was changed: choose to allow or to say no."),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    // an organization of the directory
    let known = match hale_repository::resource_id(org) {
        Ok(_) => search(&session.repo, "Organization", &[("_id", org)], 1).await.map(|v| !v.is_empty()),
        Err(_) => Ok(false),
    };
    match known {
        Ok(true) => {}
        Ok(false) => {
            return page_with(
                &session,
                Some("Nothing was changed: choose an organization from the list."),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
        Err(e) => return failure(&e),
    }
    let consent = json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy", "display": "Privacy Consent"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": format!("Patient/{}", session.patient)},
        "dateTime": now_instant(),
        "performer": [{"reference": session.account.fhir_user.clone().unwrap_or_else(|| format!("Patient/{}", session.patient))}],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": if decision == "permit" { "OPTIN" } else { "OPTOUT" }}]},
        "provision": {
            "type": decision,
            "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient"}]},
                "reference": {"reference": format!("Organization/{org}")},
            }],
        },
    });
    match session.repo.create(&ty, consent, None).await {
        Ok(_) => Redirect::to("/portal/sharing").into_response(),
        Err(e) => failure(&e),
    }
}
