//! Visits and their notes: `POST /app/patient/{id}/visits` starts a visit (an
//! Encounter in progress, with the user as participant and their organization as
//! service provider); `GET /app/patient/{id}/visit/{enc}` shows it with its vital signs
//! and its note; `POST .../note` saves the note (a SOAP progress note as a FHIR
//! Composition tied to the encounter: a draft is `preliminary`; signing makes it `final`
//! with the author as legal attester; a change after signing is an amendment, a new
//! version with status `amended`, the earlier ones kept in its history); `POST
//! .../finish` ends the visit. Everything through the session's repository.

use std::collections::HashMap;

use axum::Form;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::chart::{Tab, allergies, header, open_patient};
use crate::fhir::{concept, observation_value, reference_label};
use crate::layout::{page, problem, respond};
use crate::{Session, failure, now_instant, same_secret as same, search};

const LOINC: &str = "http://loinc.org";

/// The sections of a SOAP note: form field, heading, LOINC code and display.
pub(crate) const SECTIONS: &[(&str, &str, &str, &str)] = &[
    ("subjective", "Subjective", "61150-9", "Subjective Narrative"),
    ("objective", "Objective", "61149-1", "Objective Narrative"),
    ("assessment", "Assessment", "51848-0", "Assessment note"),
    ("plan", "Plan", "18776-5", "Plan of care note"),
];

/// The longest a section may be.
const MAX_SECTION: usize = 20_000;

fn csrf_ok(session: &Session, form: &HashMap<String, String>) -> bool {
    form.get("csrf").is_some_and(|t| same(t, &session.csrf))
}

fn expired(session: &Session) -> Response {
    problem(
        StatusCode::FORBIDDEN,
        Some(session),
        "The form expired",
        "Nothing was saved: the form came from an earlier sign-in. Open the page again.",
    )
}

/// Text as an XHTML narrative `div` (every character escaped, lines kept).
pub(crate) fn narrative(text: &str) -> String {
    let mut out = String::from("<div xmlns=\"http://www.w3.org/1999/xhtml\">");
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push_str("<br/>");
        }
        for c in line.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                c if c.is_control() && c != '\t' => {}
                c => out.push(c),
            }
        }
    }
    out.push_str("</div>");
    out
}

/// The text of an XHTML narrative, whoever wrote it: line breaks and block ends
/// become new lines, every other tag is dropped and entities are decoded. The result
/// is plain text, escaped again when shown.
pub(crate) fn plain_text(div: &str) -> String {
    let mut out = String::new();
    let mut rest = div;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            rest = "";
            break;
        };
        let tag = rest[start + 1..start + end].trim_start_matches('/').to_ascii_lowercase();
        let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        if matches!(name.as_str(), "br" | "p" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6")
            && !out.ends_with('\n')
            && !out.is_empty()
        {
            out.push('\n');
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    decoded.trim().to_string()
}

/// `POST /app/patient/{id}/visits`: starts a visit now.
pub(crate) async fn start(
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !csrf_ok(&session, &form) {
        return expired(&session);
    }
    if let Err(r) = open_patient(&session, &id).await {
        return r;
    }
    let mut enc = json!({
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003", "display": "Encounter for check up (procedure)"}], "text": "Office visit"}],
        "subject": {"reference": format!("Patient/{id}")},
        "period": {"start": now_instant()},
    });
    if let Some(p) = session.account.fhir_user.as_deref().filter(|u| u.starts_with("Practitioner/")) {
        enc["participant"] = json!([{"individual": {"reference": p, "display": session.account.display_name}}]);
    }
    if let Some(org) = &session.account.organization {
        let mut provider = json!({"reference": format!("Organization/{org}")});
        let read = match (hale_repository::resource_type("Organization"), hale_repository::resource_id(org)) {
            (Ok(t), Ok(i)) => session.repo.read(&t, &i).await.ok(),
            _ => None,
        };
        if let Some(name) = read
            .and_then(|r| r.body)
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .and_then(|o| o["name"].as_str().map(str::to_string))
        {
            provider["display"] = json!(name);
        }
        enc["serviceProvider"] = provider;
    }
    let ty = match hale_repository::resource_type("Encounter") {
        Ok(t) => t,
        Err(e) => return failure(&session, &e),
    };
    match session.repo.create(&ty, enc, None).await {
        Ok(hale_repository::CreateOutcome::Created(s) | hale_repository::CreateOutcome::Existing(s)) => {
            Redirect::to(&format!("/app/patient/{id}/visit/{}", s.id)).into_response()
        }
        Err(e) => failure(&session, &e),
    }
}

/// The encounter `enc` of patient `id`, read through the session's repository, or the
/// page that says why not.
async fn encounter(session: &Session, id: &str, enc: &str) -> Result<Value, Response> {
    let not_found =
        || problem(StatusCode::NOT_FOUND, Some(session), "Not found", "There is no such visit for this patient.");
    let (Ok(ty), Ok(eid)) = (hale_repository::resource_type("Encounter"), hale_repository::resource_id(enc)) else {
        return Err(not_found());
    };
    let stored = session.repo.read(&ty, &eid).await.map_err(|e| failure(session, &e))?;
    let e: Value = stored.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).ok_or_else(not_found)?;
    if e["subject"]["reference"].as_str() != Some(&format!("Patient/{id}")) {
        return Err(not_found());
    }
    Ok(e)
}

/// The visit's note, if one was written.
async fn note_of(session: &Session, enc: &str) -> Result<Option<Value>, Response> {
    let q = [("encounter", enc), ("type", "http://loinc.org|11506-3")];
    let found = search(&session.repo, "Composition", &q, 2).await.map_err(|e| failure(session, &e))?;
    Ok(found.into_iter().find(|c| c["status"] != "entered-in-error"))
}

/// `GET /app/patient/{id}/visit/{enc}`.
pub(crate) async fn show(session: Session, Path((id, enc)): Path<(String, String)>) -> Response {
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (all, e, note) =
        tokio::join!(allergies(&session, &id), encounter(&session, &id, &enc), note_of(&session, &enc));
    let (all, e, note) = match (all, e, note) {
        (Ok(a), Ok(e), Ok(n)) => (a, e, n),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let q = [("encounter", enc.as_str()), ("_sort", "-date")];
    let observations = match search(&session.repo, "Observation", &q, 100).await {
        Ok(o) => o,
        Err(err) => return failure(&session, &err),
    };
    let typed: HashMap<String, String> = note
        .as_ref()
        .map(|n| {
            SECTIONS
                .iter()
                .map(|(field, _, code, _)| {
                    let div = n["section"]
                        .as_array()
                        .and_then(|ss| ss.iter().find(|s| crate::fhir::has_code(&s["code"], code)))
                        .and_then(|s| s["text"]["div"].as_str())
                        .unwrap_or("");
                    (field.to_string(), plain_text(div))
                })
                .collect()
        })
        .unwrap_or_default();
    respond(StatusCode::OK, visit_page(&session, &patient, &all, &e, &observations, note.as_ref(), &typed, None))
}

#[allow(clippy::too_many_arguments)]
fn visit_page(
    session: &Session,
    patient: &Value,
    all: &[Value],
    e: &Value,
    observations: &[Value],
    note: Option<&Value>,
    typed: &HashMap<String, String>,
    error: Option<&str>,
) -> Markup {
    let id = patient["id"].as_str().unwrap_or("");
    let enc = e["id"].as_str().unwrap_or("");
    let open = e["status"] == "in-progress" || e["status"] == "arrived";
    let status = note.and_then(|n| n["status"].as_str()).unwrap_or("none");
    let signed = matches!(status, "final" | "amended");
    let kind = e["type"].as_array().and_then(|t| t.first()).map(concept).unwrap_or_else(|| "Visit".into());
    let body = html! {
        (header(session, patient, all, Tab::Summary))
        section.card aria-labelledby="visit-h" {
            h1 #visit-h { (kind) " · " (session.zone.day(&e["period"]["start"])) }
            p.muted {
                "Status: " strong { (e["status"].as_str().unwrap_or("")) }
                @let who = e["participant"].as_array().and_then(|p| p.first()).map(|p| reference_label(&p["individual"])).unwrap_or_default();
                @if !who.is_empty() { " · with " (who) }
                @let at = reference_label(&e["serviceProvider"]);
                @if !at.is_empty() { " · " (at) }
            }
            @if open {
                div.actions {
                    a.button href={ "/app/patient/" (id) "/vitals/new?encounter=" (enc) } { "Record vital signs" }
                    form.inline method="post" action={ "/app/patient/" (id) "/visit/" (enc) "/finish" } {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button.secondary type="submit" { "Finish the visit" }
                    }
                }
            }
            @if !observations.is_empty() {
                h2 { "Measured at this visit" }
                ul.plain {
                    @for o in observations {
                        li { span { (concept(&o["code"])) } span.num { (observation_value(o)) } }
                    }
                }
            }
        }
        section.card.note aria-labelledby="note-h" {
            h2 #note-h {
                "Visit note"
                @match status {
                    "final" => { " " span.badge.ok { "signed" } }
                    "amended" => { " " span.badge.ok { "signed, amended" } }
                    "preliminary" => { " " span.badge { "draft" } }
                    _ => {}
                }
            }
            @if let Some(n) = note {
                @if signed {
                    @let by = n["attester"].as_array().and_then(|a| a.last()).map(|a| (reference_label(&a["party"]), session.zone.day(&a["time"]))).unwrap_or_default();
                    p.muted { "Signed by " (by.0) " on " (by.1) @if let Some(v) = n["meta"]["versionId"].as_str() { " · version " (v) } }
                }
            }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            @if signed && error.is_none() {
                @for (field, heading, _, _) in SECTIONS {
                    @if let Some(t) = typed.get(*field).filter(|t| !t.is_empty()) {
                        h3 { (heading) }
                        div.note-text { (t) }
                    }
                }
                details.amend {
                    summary { "Amend the note" }
                    (note_form(session, id, enc, note, typed, signed))
                }
            } @else {
                (note_form(session, id, enc, note, typed, signed))
            }
        }
    };
    page(&format!("Visit · {}", crate::fhir::person_name(patient)), Some(session), body)
}

/// The form that writes the note: a draft or a signature, or, once signed, an amendment.
fn note_form(
    session: &Session,
    id: &str,
    enc: &str,
    note: Option<&Value>,
    typed: &HashMap<String, String>,
    signed: bool,
) -> Markup {
    html! {
            form method="post" action={ "/app/patient/" (id) "/visit/" (enc) "/note" } {
                input type="hidden" name="csrf" value=(session.csrf);
                @if let Some(v) = note.and_then(|n| n["meta"]["versionId"].as_str()) { input type="hidden" name="version" value=(v); }
                @for (field, heading, _, _) in SECTIONS {
                    div.field {
                        label for=(field) { (heading) }
                        textarea id=(field) name=(field) rows="4" { (typed.get(*field).map(String::as_str).unwrap_or("")) }
                    }
                }
                div.actions {
                    @if signed {
                        button.primary type="submit" name="action" value="amend" { "Sign the amendment" }
                    } @else {
                        button.primary type="submit" name="action" value="sign" { "Sign the note" }
                        button.secondary type="submit" name="action" value="draft" { "Save as draft" }
                    }
                }
                @if signed { p.hint { "A signed note is changed by an amendment: a new version, signed again; the earlier versions are kept." } }
            }
    }
}

/// The Composition of a note from the form.
fn composition(
    patient: &str,
    enc: &str,
    author: Option<(&str, &str)>,
    typed: &HashMap<String, String>,
    status: &str,
    when: &str,
    earlier: Option<&Value>,
) -> Value {
    let sections: Vec<Value> = SECTIONS
        .iter()
        .filter_map(|(field, heading, code, display)| {
            let text = typed.get(*field).map(|t| t.trim()).filter(|t| !t.is_empty())?;
            Some(json!({
                "title": heading,
                "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                "text": {"status": "additional", "div": narrative(text)},
            }))
        })
        .collect();
    let mut c = json!({
        "resourceType": "Composition",
        "status": status,
        "type": {"coding": [{"system": LOINC, "code": "11506-3", "display": "Progress note"}], "text": "Visit note"},
        "subject": {"reference": format!("Patient/{patient}")},
        "encounter": {"reference": format!("Encounter/{enc}")},
        "date": when,
        "title": "Visit note",
        "section": sections,
    });
    let author_ref = author.map(|(r, d)| json!({"reference": r, "display": d}));
    c["author"] = json!([author_ref.clone().unwrap_or_else(|| json!({"display": "unknown"}))]);
    if matches!(status, "final" | "amended") {
        let mut attesters: Vec<Value> = earlier.and_then(|e| e["attester"].as_array().cloned()).unwrap_or_default();
        let mut a = json!({"mode": "legal", "time": when});
        if let Some(r) = author_ref {
            a["party"] = r;
        }
        attesters.push(a);
        c["attester"] = Value::Array(attesters);
    }
    c
}

/// `POST /app/patient/{id}/visit/{enc}/note`: saves a draft, signs, or amends.
pub(crate) async fn save_note(
    session: Session,
    Path((id, enc)): Path<(String, String)>,
    Form(typed): Form<HashMap<String, String>>,
) -> Response {
    if !csrf_ok(&session, &typed) {
        return expired(&session);
    }
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (all, e, note) =
        tokio::join!(allergies(&session, &id), encounter(&session, &id, &enc), note_of(&session, &enc));
    let (all, e, note) = match (all, e, note) {
        (Ok(a), Ok(e), Ok(n)) => (a, e, n),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let refuse = |msg: &str, note: Option<&Value>| {
        respond(StatusCode::BAD_REQUEST, visit_page(&session, &patient, &all, &e, &[], note, &typed, Some(msg)))
    };
    if SECTIONS.iter().all(|(f, ..)| typed.get(*f).is_none_or(|t| t.trim().is_empty())) {
        return refuse("The note is empty: write at least one section.", note.as_ref());
    }
    if SECTIONS.iter().any(|(f, ..)| typed.get(*f).is_some_and(|t| t.chars().count() > MAX_SECTION)) {
        return refuse("A section is at most 20,000 characters.", note.as_ref());
    }
    let action = typed.get("action").map(String::as_str).unwrap_or("draft");
    let signed_before = note.as_ref().is_some_and(|n| matches!(n["status"].as_str(), Some("final" | "amended")));
    let status = match (action, signed_before) {
        ("draft", false) => "preliminary",
        ("sign", false) => "final",
        ("amend", true) => "amended",
        _ => return refuse("A signed note can only be amended (and a draft cannot be amended).", note.as_ref()),
    };
    let practitioner = session.account.fhir_user.as_deref().filter(|u| u.starts_with("Practitioner/"));
    let author = practitioner.map(|p| (p, session.account.display_name.as_str()));
    let when = now_instant();
    let body = composition(&id, &enc, author, &typed, status, &when, note.as_ref());
    let ty = match hale_repository::resource_type("Composition") {
        Ok(t) => t,
        Err(err) => return failure(&session, &err),
    };
    let result = match &note {
        None => session.repo.create(&ty, body, None).await.map(|_| ()),
        Some(n) => {
            let Some(rid) = n["id"].as_str().and_then(|i| hale_repository::resource_id(i).ok()) else {
                return refuse("The note could not be found again.", None);
            };
            // the version the form was made from: a change made meanwhile is not overwritten
            let if_match = typed.get("version").and_then(|v| hale_repository::version_id(v).ok());
            let mut body = body;
            body["id"] = json!(rid.as_str());
            session.repo.update(&ty, &rid, body, if_match).await.map(|_| ())
        }
    };
    match result {
        Ok(()) => Redirect::to(&format!("/app/patient/{id}/visit/{enc}")).into_response(),
        Err(err) if err.category() == hale_fhir::Category::PreconditionFailed => refuse(
            "Someone changed this note while you were writing. Your text is below; copy it, open the visit again and add it.",
            note.as_ref(),
        ),
        Err(err) if matches!(err.category(), hale_fhir::Category::Forbidden | hale_fhir::Category::Unauthorized) => {
            refuse("Your role does not allow writing notes for this patient. Nothing was saved.", note.as_ref())
        }
        Err(err) if err.category() == hale_fhir::Category::Invalid => refuse(
            &format!(
                "Nothing was saved: {}",
                err.outcome().issues.first().map(|i| i.diagnostics.as_str()).unwrap_or("refused")
            ),
            note.as_ref(),
        ),
        Err(err) => failure(&session, &err),
    }
}

/// `POST /app/patient/{id}/visit/{enc}/finish`.
pub(crate) async fn finish(
    session: Session,
    Path((id, enc)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !csrf_ok(&session, &form) {
        return expired(&session);
    }
    if let Err(r) = open_patient(&session, &id).await {
        return r;
    }
    let mut e = match encounter(&session, &id, &enc).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let version = e["meta"]["versionId"].as_str().and_then(|v| hale_repository::version_id(v).ok());
    e["status"] = json!("finished");
    e["period"]["end"] = json!(now_instant());
    let (Ok(ty), Ok(rid)) = (hale_repository::resource_type("Encounter"), hale_repository::resource_id(&enc)) else {
        return problem(StatusCode::NOT_FOUND, Some(&session), "Not found", "There is no such visit.");
    };
    match session.repo.update(&ty, &rid, e, version).await {
        Ok(_) => Redirect::to(&format!("/app/patient/{id}/visit/{enc}")).into_response(),
        Err(err) => failure(&session, &err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_through_their_narrative_and_nothing_runs() {
        let text = "Cough for 3 days.\n<script>alert(1)</script> & \"quotes\"\nNo fever.";
        let div = narrative(text);
        assert!(!div.contains("<script>") && div.contains("&lt;script&gt;") && div.contains("<br/>"), "{div}");
        assert_eq!(plain_text(&div), text);
        // another writer's markup is read as text
        assert_eq!(
            plain_text(
                "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Line <b>one</b></p><p>two &amp; three</p></div>"
            ),
            "Line one\ntwo & three"
        );
        assert_eq!(plain_text("<div>unclosed <b"), "unclosed");
    }

    #[test]
    fn a_signed_note_is_a_valid_composition_with_its_attester() {
        let mut typed = HashMap::new();
        typed.insert("subjective".to_string(), "Cough".to_string());
        typed.insert("plan".to_string(), "Fluids, review in a week".to_string());
        let c =
            composition("p1", "e1", Some(("Practitioner/x", "Dr X")), &typed, "final", "2026-12-07T10:00:00Z", None);
        let issues = hale_fhir::validate::validate_resource(&c);
        assert!(!issues.iter().any(hale_fhir::Issue::is_error), "{issues:?}");
        assert_eq!(c["section"].as_array().unwrap().len(), 2);
        assert_eq!(c["attester"][0]["party"]["reference"], "Practitioner/x");
        let amended = composition(
            "p1",
            "e1",
            Some(("Practitioner/x", "Dr X")),
            &typed,
            "amended",
            "2026-12-08T10:00:00Z",
            Some(&c),
        );
        assert_eq!(amended["attester"].as_array().unwrap().len(), 2, "each signature kept");
    }
}
