//! Laboratory orders, their results, and the inbox. `GET/POST
//! /app/patient/{id}/orders/new` orders a test from Hale's table (a ServiceRequest,
//! LOINC); `GET/POST /app/patient/{id}/order/{sr}/result` enters its result by hand
//! (one transaction: an Observation per analyte with its reference range and flag, the
//! DiagnosticReport, the order completed, and a review Task for the clinician who
//! ordered it); `GET /app/inbox` lists the user's tasks; `GET/POST
//! /app/patient/{id}/review/{task}` shows a result and marks it reviewed. Results that
//! arrive from a laboratory interface will use the same Task.

use std::collections::HashMap;

use axum::Form;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use hale_cds::terms::{Analyte, LAB_TESTS, LabTest, lab_test};
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::chart::{Tab, allergies, header, open_patient};
use crate::fhir::{Flag, concept, flag, observation_value, reference_range};
use crate::layout::{page, problem, respond};
use crate::{Session, failure, now_instant, same_secret as same, search};

type Fields = HashMap<String, String>;

/// The values of a result: the analyte, the value as typed (a JSON number), the number.
type Values = Vec<(&'static Analyte, serde_json::Number, f64)>;

const LOINC: &str = "http://loinc.org";

fn csrf_ok(session: &Session, f: &Fields) -> bool {
    f.get("csrf").is_some_and(|t| same(t, &session.csrf))
}

fn expired(session: &Session) -> Response {
    problem(StatusCode::FORBIDDEN, Some(session), "The form expired", "Nothing was saved. Open the page again.")
}

fn practitioner(session: &Session) -> Option<&str> {
    session.account.fhir_user.as_deref().filter(|u| u.starts_with("Practitioner/"))
}

fn read_json(
    r: Result<hale_repository::StoredResource, hale_repository::Error>,
) -> Result<Option<Value>, hale_repository::Error> {
    Ok(r?.body.as_deref().and_then(|b| serde_json::from_str(b).ok()))
}

/// A resource of `ty` with id `rid` that belongs to patient `id` (by `field`), or the
/// not-found page.
async fn of_patient(session: &Session, ty: &str, rid: &str, field: &str, id: &str) -> Result<Value, Response> {
    let not_found =
        || problem(StatusCode::NOT_FOUND, Some(session), "Not found", "There is no such record for this patient.");
    let (Ok(t), Ok(i)) = (hale_repository::resource_type(ty), hale_repository::resource_id(rid)) else {
        return Err(not_found());
    };
    let v = read_json(session.repo.read(&t, &i).await).map_err(|e| failure(session, &e))?.ok_or_else(not_found)?;
    if v[field]["reference"].as_str() != Some(&format!("Patient/{id}")) {
        return Err(not_found());
    }
    Ok(v)
}

/// A new placer order number: `L` and twelve letters and digits from the clock and
/// randomness of a UUID v7.
fn placer_number() -> String {
    let u = uuid::Uuid::now_v7().simple().to_string().to_uppercase();
    format!("L{}{}", &u[4..12], &u[24..28])
}

/// `GET /app/patient/{id}/orders/new`.
pub(crate) async fn order_form(session: Session, Path(id): Path<String>) -> Response {
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let all = match allergies(&session, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    respond(StatusCode::OK, order_page(&session, &patient, &all, &Fields::new(), None))
}

fn order_page(session: &Session, patient: &Value, all: &[Value], typed: &Fields, error: Option<&str>) -> Markup {
    let id = patient["id"].as_str().unwrap_or("");
    let chosen = typed.get("test").cloned().unwrap_or_default();
    let body = html! {
        (header(session, patient, all, Tab::Summary))
        section.card.form-card aria-labelledby="order-h" {
            h1 #order-h { "Order a laboratory test" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action={ "/app/patient/" (id) "/orders/new" } {
                input type="hidden" name="csrf" value=(session.csrf);
                div.field {
                    label for="test" { "Test" }
                    select #test name="test" {
                        @for t in LAB_TESTS {
                            option value=(t.loinc) selected[chosen == t.loinc] { (t.name) " (LOINC " (t.loinc) ")" }
                        }
                    }
                }
                div.field {
                    label for="priority" { "Priority" }
                    select #priority name="priority" {
                        option value="routine" selected[typed.get("priority").is_none_or(|p| p == "routine")] { "Routine" }
                        option value="urgent" selected[typed.get("priority").is_some_and(|p| p == "urgent")] { "Urgent" }
                    }
                }
                div.field {
                    label for="note" { "Note to the laboratory" }
                    input #note name="note" type="text" value=(typed.get("note").cloned().unwrap_or_default()) autocomplete="off";
                }
                div.actions {
                    button.primary type="submit" { "Order" }
                    a href={ "/app/patient/" (id) } { "Cancel" }
                }
            }
        }
    };
    page("Order a test", Some(session), body)
}

/// `POST /app/patient/{id}/orders/new`.
pub(crate) async fn order_save(session: Session, Path(id): Path<String>, Form(f): Form<Fields>) -> Response {
    if !csrf_ok(&session, &f) {
        return expired(&session);
    }
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let all = match allergies(&session, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let refuse = |msg: &str| respond(StatusCode::BAD_REQUEST, order_page(&session, &patient, &all, &f, Some(msg)));
    let Some(test) = f.get("test").and_then(|t| lab_test(t)) else {
        return refuse("Choose a test from the list.");
    };
    let priority = f.get("priority").map(String::as_str).unwrap_or("routine");
    if !matches!(priority, "routine" | "urgent") {
        return refuse("Choose the priority.");
    }
    let note = f.get("note").map(|n| n.trim()).unwrap_or("");
    if note.chars().count() > 500 {
        return refuse("The note is at most 500 characters.");
    }
    let mut sr = json!({
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "priority": priority,
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007", "display": "Laboratory procedure"}]}],
        "code": {"coding": [{"system": LOINC, "code": test.loinc, "display": test.name}], "text": test.name},
        "subject": {"reference": format!("Patient/{id}")},
        "authoredOn": now_instant(),
        "identifier": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC", "display": "Placer Identifier"}]},
            "system": PLACER_SYSTEM,
            "value": placer_number(),
        }],
    });
    if let Some(p) = practitioner(&session) {
        sr["requester"] = json!({"reference": p, "display": session.account.display_name});
    }
    if !note.is_empty() {
        sr["note"] = json!([{"text": note}]);
    }
    let ty = match hale_repository::resource_type("ServiceRequest") {
        Ok(t) => t,
        Err(e) => return failure(&session, &e),
    };
    match session.repo.create(&ty, sr, None).await {
        Ok(_) => Redirect::to(&format!("/app/patient/{id}")).into_response(),
        Err(e) if matches!(e.category(), hale_fhir::Category::Forbidden | hale_fhir::Category::Unauthorized) => {
            refuse("Nothing was ordered: your role does not allow ordering tests for this patient.")
        }
        Err(e) => failure(&session, &e),
    }
}

/// How a value compares with an analyte's reference range (an HL7 v3
/// ObservationInterpretation code and display).
pub(crate) fn interpret(a: &Analyte, v: f64) -> (&'static str, &'static str) {
    if let Some(low) = hale_cds::results::critical(a.loinc, v) {
        return if low { ("LL", "Critical low") } else { ("HH", "Critical high") };
    }
    if a.low.is_some_and(|l| v < l) {
        ("L", "Low")
    } else if a.high.is_some_and(|h| v > h) {
        ("H", "High")
    } else {
        ("N", "Normal")
    }
}

/// Checks the values typed for `test`: (analyte, the value as a JSON number, the
/// number), or messages by field.
pub(crate) fn check_values(test: &'static LabTest, f: &Fields) -> Result<Values, Vec<(String, String)>> {
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for &a in test.analytes {
        let raw = f.get(a.loinc).map(|s| s.trim()).unwrap_or("");
        if raw.is_empty() {
            errors.push((a.loinc.to_string(), "Give the value.".to_string()));
            continue;
        }
        let text = raw.replace(',', ".");
        let digits = text.chars().all(|c| c.is_ascii_digit() || c == '.') && text.matches('.').count() <= 1;
        let leading_zero = text.len() > 1 && text.starts_with('0') && !text.starts_with("0.");
        let ok = digits && !text.starts_with('.') && !text.ends_with('.') && !leading_zero;
        match text.parse::<f64>().ok().filter(|_| ok) {
            Some(v) if v >= a.plausible.0 && v <= a.plausible.1 => match text.parse::<serde_json::Number>() {
                Ok(n) => values.push((a, n, v)),
                Err(_) => errors.push((a.loinc.to_string(), "Write the value as a number.".into())),
            },
            Some(_) => errors.push((
                a.loinc.to_string(),
                format!(
                    "{raw} {} is outside what is plausible ({} to {} {}).",
                    a.unit, a.plausible.0, a.plausible.1, a.unit
                ),
            )),
            None => errors.push((a.loinc.to_string(), format!("Write the value as a number in {}.", a.unit))),
        }
    }
    if errors.is_empty() { Ok(values) } else { Err(errors) }
}

/// `GET /app/patient/{id}/order/{sr}/result`.
pub(crate) async fn result_form(session: Session, Path((id, sr)): Path<(String, String)>) -> Response {
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (all, order) =
        tokio::join!(allergies(&session, &id), of_patient(&session, "ServiceRequest", &sr, "subject", &id));
    let (all, order) = match (all, order) {
        (Ok(a), Ok(o)) => (a, o),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    respond(StatusCode::OK, result_page(&session, &patient, &all, &order, &Fields::new(), &[]))
}

fn result_page(
    session: &Session,
    patient: &Value,
    all: &[Value],
    order: &Value,
    typed: &Fields,
    errors: &[(String, String)],
) -> Markup {
    let id = patient["id"].as_str().unwrap_or("");
    let sr = order["id"].as_str().unwrap_or("");
    let test =
        order["code"]["coding"].as_array().and_then(|c| c.iter().find_map(|c| c["code"].as_str())).and_then(lab_test);
    let body = html! {
        (header(session, patient, all, Tab::Results))
        section.card.form-card aria-labelledby="res-h" {
            h1 #res-h { "Enter the result: " (concept(&order["code"])) }
            p.muted { "Ordered " (session.zone.day(&order["authoredOn"])) " by " (crate::fhir::reference_label(&order["requester"])) " · " (order["status"].as_str().unwrap_or("")) }
            @if order["status"] != "active" {
                p.error role="alert" { "This order is not open: its result was entered, or it was cancelled." }
            } @else if let Some(test) = test {
                @if !errors.is_empty() { p.error role="alert" { "Nothing was saved. Check the values marked below." } }
                form method="post" action={ "/app/patient/" (id) "/order/" (sr) "/result" } novalidate {
                    input type="hidden" name="csrf" value=(session.csrf);
                    div.fields {
                        @for a in test.analytes {
                            @let err = errors.iter().find(|e| e.0 == a.loinc).map(|e| e.1.clone());
                            div.field {
                                label for=(a.loinc) { (a.name) " " small { "(" (a.unit) ")" } }
                                input id=(a.loinc) name=(a.loinc) type="text" inputmode="decimal" autocomplete="off"
                                    value=(typed.get(a.loinc).cloned().unwrap_or_default()) aria-invalid=[err.as_ref().map(|_| "true")];
                                p.hint { "Reference " (range_text(a)) }
                                @if let Some(e) = err { p.error.field-error { (e) } }
                            }
                        }
                    }
                    div.actions {
                        button.primary type="submit" { "Save the result" }
                        a href={ "/app/patient/" (id) } { "Cancel" }
                    }
                }
            } @else {
                p.error { "This test is not one Hale can enter results for by hand." }
            }
        }
    };
    page("Enter a result", Some(session), body)
}

fn range_text(a: &Analyte) -> String {
    match (a.low, a.high) {
        (Some(l), Some(h)) => format!("{l}–{h} {}", a.unit),
        (Some(l), None) => format!("≥ {l} {}", a.unit),
        (None, Some(h)) => format!("≤ {h} {}", a.unit),
        (None, None) => String::new(),
    }
}

fn quantity(unit: &str, v: f64) -> Value {
    json!({"value": v, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit})
}

/// The transaction that records a result: the observations, the report, the order
/// completed, and a review task for whoever ordered it.
pub(crate) fn result_bundle(
    patient: &str,
    order: &Value,
    test: &LabTest,
    values: &Values,
    now: &str,
    patient_name: &str,
) -> Value {
    let sr = order["id"].as_str().unwrap_or("");
    let based_on = json!([{"reference": format!("ServiceRequest/{sr}")}]);
    let subject = json!({"reference": format!("Patient/{patient}")});
    let mut entries = Vec::new();
    let mut results = Vec::new();
    for (i, (a, n, v)) in values.iter().enumerate() {
        let url = format!("urn:uuid:00000000-0000-4000-8000-{:012}", i + 1);
        let (code, display) = interpret(a, *v);
        let mut range = serde_json::Map::new();
        if let Some(l) = a.low {
            range.insert("low".into(), quantity(a.unit, l));
        }
        if let Some(h) = a.high {
            range.insert("high".into(), quantity(a.unit, h));
        }
        let o = json!({
            "resourceType": "Observation",
            "status": "final",
            "basedOn": based_on,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory", "display": "Laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": a.loinc, "display": a.name}], "text": a.name},
            "subject": subject,
            "effectiveDateTime": now,
            "issued": now,
            "valueQuantity": {"value": n, "unit": a.unit, "system": "http://unitsofmeasure.org", "code": a.unit},
            "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": code, "display": display}]}],
            "referenceRange": [Value::Object(range)],
        });
        results.push(json!({"reference": url}));
        entries.push(json!({"fullUrl": url, "resource": o, "request": {"method": "POST", "url": "Observation"}}));
    }
    let report_url = "urn:uuid:00000000-0000-4000-8000-100000000000";
    entries.push(json!({
        "fullUrl": report_url,
        "resource": {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "basedOn": based_on,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB", "display": "Laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": test.loinc, "display": test.name}], "text": test.name},
            "subject": subject,
            "effectiveDateTime": now,
            "issued": now,
            "result": results,
        },
        "request": {"method": "POST", "url": "DiagnosticReport"},
    }));
    let mut done = order.clone();
    done["status"] = json!("completed");
    if let Some(o) = done.as_object_mut() {
        o.remove("meta");
    }
    let version = order["meta"]["versionId"].as_str().unwrap_or("1");
    entries.push(json!({
        "resource": done,
        "request": {"method": "PUT", "url": format!("ServiceRequest/{sr}"), "ifMatch": format!("W/\"{version}\"")},
    }));
    let flagged = values.iter().filter(|(a, _, v)| interpret(a, *v).0 != "N").count();
    let critical: Vec<String> = values
        .iter()
        .filter(|(a, _, v)| hale_cds::results::critical(a.loinc, *v).is_some())
        .map(|(a, n, _)| format!("{} {n} {}", a.name.split(' ').next().unwrap_or(a.name), a.unit))
        .collect();
    let review = Review { test: test.name, patient_name, flagged, critical: &critical, now };
    if let Some(task) = review_task(order, report_url, &review) {
        entries.push(json!({"resource": task, "request": {"method": "POST", "url": "Task"}}));
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// What a review task says of a result.
pub struct Review<'a> {
    /// The test's name.
    pub test: &'a str,
    pub patient_name: &'a str,
    /// How many values lie outside their reference range.
    pub flagged: usize,
    /// The critical values, in words ("Potassium 6.9 mmol/L").
    pub critical: &'a [String],
    pub now: &'a str,
}

/// The task that asks the clinician who ordered `order` to review its result (the
/// DiagnosticReport at `report_url`): `stat` and named CRITICAL with a critical value,
/// `urgent` with a value out of range. `None` when the order names no requester.
pub fn review_task(order: &Value, report_url: &str, r: &Review) -> Option<Value> {
    let owner = order["requester"]["reference"].as_str()?;
    let sr = order["id"].as_str().unwrap_or("");
    let mut task = json!({
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": if !r.critical.is_empty() { "stat" } else if r.flagged > 0 { "urgent" } else { "routine" },
        "code": {"text": "Review result"},
        "description": if r.critical.is_empty() {
            let out = if r.flagged > 0 { format!(" ({} outside the reference range)", r.flagged) } else { String::new() };
            format!("Review: {} for {}{out}", r.test, r.patient_name)
        } else {
            format!("CRITICAL: {} for {}: {}", r.test, r.patient_name, r.critical.join(", "))
        },
        "focus": {"reference": report_url},
        "for": order["subject"].clone(),
        "basedOn": [{"reference": format!("ServiceRequest/{sr}")}],
        "authoredOn": r.now,
        "owner": {"reference": owner},
    });
    if let Some(d) = order["requester"]["display"].as_str() {
        task["owner"]["display"] = json!(d);
    }
    Some(task)
}

/// The identifier system of the placer order numbers Hale gives its laboratory orders
/// (OBR-2 of a result names one).
pub const PLACER_SYSTEM: &str = "urn:hale:placer-order";

/// `POST /app/patient/{id}/order/{sr}/result`.
pub(crate) async fn result_save(
    session: Session,
    Path((id, sr)): Path<(String, String)>,
    Form(f): Form<Fields>,
) -> Response {
    if !csrf_ok(&session, &f) {
        return expired(&session);
    }
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (all, order) =
        tokio::join!(allergies(&session, &id), of_patient(&session, "ServiceRequest", &sr, "subject", &id));
    let (all, order) = match (all, order) {
        (Ok(a), Ok(o)) => (a, o),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let test =
        order["code"]["coding"].as_array().and_then(|c| c.iter().find_map(|c| c["code"].as_str())).and_then(lab_test);
    let (Some(test), true) = (test, order["status"] == "active") else {
        return respond(StatusCode::CONFLICT, result_page(&session, &patient, &all, &order, &f, &[]));
    };
    let values = match check_values(test, &f) {
        Ok(v) => v,
        Err(errors) => {
            return respond(StatusCode::BAD_REQUEST, result_page(&session, &patient, &all, &order, &f, &errors));
        }
    };
    let bundle = result_bundle(&id, &order, test, &values, &now_instant(), &crate::fhir::person_name(&patient));
    match session.repo.process_bundle(bundle).await {
        Ok(_) => Redirect::to(&format!("/app/patient/{id}/results")).into_response(),
        Err(e) if e.category() == hale_fhir::Category::PreconditionFailed => problem(
            StatusCode::CONFLICT,
            Some(&session),
            "Already entered",
            "The order changed while you were entering its result (someone else entered it, or it was cancelled). Nothing was saved.",
        ),
        Err(e) => failure(&session, &e),
    }
}

/// `GET /app/inbox`: what waits for the user — results to review.
pub(crate) async fn inbox(session: Session) -> Response {
    let Some(me) = practitioner(&session) else {
        let body = html! { section.card.narrow { h1 { "Inbox" } p.empty { "Your account is not linked to a practitioner, so nothing is routed to you." } } };
        return respond(StatusCode::OK, page("Inbox", Some(&session), body));
    };
    let q = [("owner", me), ("status", "requested,received,accepted,in-progress"), ("_sort", "-authored-on")];
    let mut tasks = match search(&session.repo, "Task", &q, 200).await {
        Ok(t) => t,
        Err(e) => return failure(&session, &e),
    };
    // the most pressing first, newest first within each priority
    let rank = |t: &Value| match t["priority"].as_str() {
        Some("stat") => 0,
        Some("asap") => 1,
        Some("urgent") => 2,
        _ => 3,
    };
    tasks.sort_by_key(rank);
    let messages = match crate::messages::unread_for_staff(&session).await {
        Ok(m) => m,
        Err(e) => return failure(&session, &e),
    };
    let body = html! {
        section.card aria-labelledby="inbox-h" {
            h1 #inbox-h { "Inbox (" (tasks.len()) ")" }
            @if tasks.is_empty() {
                p.empty { "Nothing waits for you." }
            } @else {
                table {
                    thead { tr { th { "Received" } th { "What" } th { "Priority" } } }
                    tbody {
                        @for t in &tasks {
                            @let patient = t["for"]["reference"].as_str().and_then(|r| r.strip_prefix("Patient/")).unwrap_or("");
                            tr class=(match t["priority"].as_str() { Some("stat") => "critical", Some("urgent" | "asap") => "abnormal", _ => "" }) {
                                td.date { (session.zone.day(&t["authoredOn"])) }
                                td { a href={ "/app/patient/" (patient) "/review/" (t["id"].as_str().unwrap_or("")) } { (t["description"].as_str().unwrap_or("Task")) } }
                                td { (t["priority"].as_str().unwrap_or("routine")) }
                            }
                        }
                    }
                }
            }
        }
        section.card aria-labelledby="msg-h" {
            h2 #msg-h { "Messages from patients (" (messages.len()) ")" }
            @if messages.is_empty() { p.empty { "No unread message." } } @else {
                table {
                    thead { tr { th { "Sent" } th { "From" } th { "Subject" } } }
                    tbody {
                        @for m in &messages {
                            @let patient = m["subject"]["reference"].as_str().and_then(|r| r.strip_prefix("Patient/")).unwrap_or("");
                            @let root = m["inResponseTo"][0]["reference"].as_str().and_then(|r| r.strip_prefix("Communication/")).or(m["id"].as_str()).unwrap_or("");
                            tr {
                                td.date { (session.zone.day(&m["sent"])) }
                                td { (crate::fhir::reference_label(&m["sender"])) }
                                td { a href={ "/app/patient/" (patient) "/messages/" (root) } { (m["topic"]["text"].as_str().unwrap_or("(no subject)")) } }
                            }
                        }
                    }
                }
            }
        }
    };
    respond(StatusCode::OK, page("Inbox", Some(&session), body))
}

/// `GET /app/patient/{id}/review/{task}`: the result a task is about.
pub(crate) async fn review(session: Session, Path((id, task)): Path<(String, String)>) -> Response {
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (all, t) = tokio::join!(allergies(&session, &id), of_patient(&session, "Task", &task, "for", &id));
    let (all, t) = match (all, t) {
        (Ok(a), Ok(t)) => (a, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if let Some(mr) = t["focus"]["reference"].as_str().and_then(|r| r.strip_prefix("MedicationRequest/")) {
        let mr = match of_patient(&session, "MedicationRequest", mr, "subject", &id).await {
            Ok(m) => m,
            Err(r) => return r,
        };
        let others = match others_than(&session, &id, &mr).await {
            Ok(o) => o,
            Err(r) => return r,
        };
        let facts = match crate::prescribe::facts(&session, &id, &patient).await {
            Ok(f) => f,
            Err(r) => return r,
        };
        return respond(StatusCode::OK, refill_page(&session, &patient, (&all, &others, &facts), &t, &mr, None));
    }
    if let Some(sr) = t["focus"]["reference"].as_str().and_then(|r| r.strip_prefix("ServiceRequest/")) {
        let order = match of_patient(&session, "ServiceRequest", sr, "subject", &id).await {
            Ok(o) => o,
            Err(r) => return r,
        };
        return respond(StatusCode::OK, refused_order_page(&session, &patient, &all, &t, &order));
    }
    let report_id = t["focus"]["reference"].as_str().and_then(|r| r.strip_prefix("DiagnosticReport/")).unwrap_or("");
    let report = match of_patient(&session, "DiagnosticReport", report_id, "subject", &id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let ids: Vec<String> = report["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| {
                    x["reference"].as_str().and_then(|s| s.strip_prefix("Observation/")).map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let joined = ids.join(",");
    let observations = if ids.is_empty() {
        Vec::new()
    } else {
        match search(&session.repo, "Observation", &[("_id", joined.as_str())], ids.len()).await {
            Ok(o) => o,
            Err(e) => return failure(&session, &e),
        }
    };
    let open = matches!(t["status"].as_str(), Some("requested" | "received" | "accepted" | "in-progress"));
    let body = html! {
        (header(&session, &patient, &all, Tab::Results))
        section.card aria-labelledby="rev-h" {
            h1 #rev-h { (concept(&report["code"])) " · " (session.zone.day(&report["effectiveDateTime"])) }
            table {
                thead { tr { th { "Test" } th { "Value" } th { "Flag" } th { "Reference range" } } }
                tbody {
                    @for o in &observations {
                        @let f = flag(o);
                        tr class=(crate::chart::row_class(f)) {
                            td { (concept(&o["code"])) }
                            td.num { (observation_value(o)) }
                            td { @if f != Flag::Normal { span class={ "flag " (f.label()) } title=(f.words()) { (f.label()) span.sr { " " (f.words()) } } } }
                            td.num { (reference_range(o)) }
                        }
                    }
                }
            }
            @if open {
                form method="post" action={ "/app/patient/" (id) "/review/" (task) } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    div.actions { button.primary type="submit" { "Mark as reviewed" } a href="/app/inbox" { "Back to the inbox" } }
                }
            } @else {
                p.notice role="status" { "Reviewed " (session.zone.day(&t["executionPeriod"]["end"])) "." }
            }
        }
    };
    respond(StatusCode::OK, page("Review a result", Some(&session), body))
}

/// `POST /app/patient/{id}/review/{task}`: the result is reviewed.
pub(crate) async fn reviewed(
    session: Session,
    Path((id, task)): Path<(String, String)>,
    Form(f): Form<Fields>,
) -> Response {
    if !csrf_ok(&session, &f) {
        return expired(&session);
    }
    if let Err(r) = open_patient(&session, &id).await {
        return r;
    }
    let mut t = match of_patient(&session, "Task", &task, "for", &id).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    if !matches!(t["status"].as_str(), Some("requested" | "received" | "accepted" | "in-progress")) {
        return problem(
            StatusCode::CONFLICT,
            Some(&session),
            "Already done",
            "This task was completed or declined already.",
        );
    }
    if t["focus"]["reference"].as_str().is_some_and(|r| r.starts_with("MedicationRequest/")) {
        return refill_decision(session, id, t, f).await;
    }
    let version = t["meta"]["versionId"].as_str().and_then(|v| hale_repository::version_id(v).ok());
    t["status"] = json!("completed");
    t["executionPeriod"]["end"] = json!(now_instant());
    t["lastModified"] = json!(now_instant());
    let (Ok(ty), Ok(rid)) = (hale_repository::resource_type("Task"), hale_repository::resource_id(&task)) else {
        return problem(StatusCode::NOT_FOUND, Some(&session), "Not found", "There is no such task.");
    };
    match session.repo.update(&ty, &rid, t, version).await {
        Ok(_) => Redirect::to("/app/inbox").into_response(),
        Err(e) => failure(&session, &e),
    }
}

/// An order the laboratory refused (over HL7 v2): the order, its notes with the
/// laboratory's reason, and "Done" once the clinician has acted (placed it again,
/// called the laboratory).
fn refused_order_page(session: &Session, patient: &Value, all: &[Value], t: &Value, order: &Value) -> Markup {
    let id = patient["id"].as_str().unwrap_or("");
    let task = t["id"].as_str().unwrap_or("");
    let open = matches!(t["status"].as_str(), Some("requested" | "received" | "accepted" | "in-progress"));
    let placer = order["identifier"]
        .as_array()
        .and_then(|ids| ids.iter().find(|i| i["system"] == PLACER_SYSTEM))
        .and_then(|i| i["value"].as_str())
        .unwrap_or("");
    let body = html! {
        (header(session, patient, all, Tab::Summary))
        section.card.form-card aria-labelledby="refused-h" {
            h1 #refused-h { "Order refused by the laboratory" }
            p { strong { (concept(&order["code"])) } " · ordered " (session.zone.day(&order["authoredOn"])) " · order number " (placer) " · now " (order["status"].as_str().unwrap_or("").replace('-', " ")) }
            ul {
                @for n in order["note"].as_array().into_iter().flatten() {
                    li { (n["text"].as_str().unwrap_or("")) @if let Some(_) = n["time"].as_str() { " (" (session.zone.day(&n["time"])) ")" } }
                }
            }
            p.muted { "Place the order again once the cause is fixed, or call the laboratory." }
            @if open {
                form method="post" action={ "/app/patient/" (id) "/review/" (task) } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    div.actions {
                        button.primary type="submit" { "Done" }
                        a href={ "/app/patient/" (id) "/orders/new" } { "Order a test" }
                        a href="/app/inbox" { "Back to the inbox" }
                    }
                }
            } @else {
                p.notice role="status" { "Done " (session.zone.day(&t["executionPeriod"]["end"])) "." }
            }
        }
    };
    page("Order refused", Some(session), body)
}

/// The patient's active prescriptions other than `mr` (the one a refill renews).
async fn others_than(session: &Session, id: &str, mr: &Value) -> Result<Vec<Value>, Response> {
    let mut meds = crate::prescribe::active_medications(session, id).await?;
    meds.retain(|m| m["id"] != mr["id"]);
    Ok(meds)
}

/// A patient's refill request: the medicine, the safety check on it, approve or decline.
fn refill_page(
    session: &Session,
    patient: &Value,
    (all, others, facts): (&[Value], &[Value], &hale_cds::dosing::Facts),
    t: &Value,
    mr: &Value,
    error: Option<&str>,
) -> Markup {
    let id = patient["id"].as_str().unwrap_or("");
    let task = t["id"].as_str().unwrap_or("");
    let open = matches!(t["status"].as_str(), Some("requested" | "received" | "accepted" | "in-progress"));
    let drug = mr["medicationCodeableConcept"]["coding"]
        .as_array()
        .and_then(|cs| cs.iter().find_map(|c| c["code"].as_str()))
        .and_then(hale_cds::drugs::by_rxcui);
    let dose = hale_cds::dosing::dose_of_request(mr);
    let alerts = drug.map(|d| hale_cds::check_prescription(d, all, others, facts, dose)).unwrap_or_default();
    let body = html! {
        (header(session, patient, all, Tab::Summary))
        section.card.form-card aria-labelledby="refill-h" {
            h1 #refill-h { "Refill request" }
            p { "The patient asks for a refill of " strong { (concept(&mr["medicationCodeableConcept"])) } " (asked " (session.zone.day(&t["authoredOn"])) ")." }
            p.muted { (mr["dosageInstruction"][0]["text"].as_str().unwrap_or("")) " · prescribed " (session.zone.day(&mr["authoredOn"])) " by " (crate::fhir::reference_label(&mr["requester"])) }
            @for a in &alerts {
                div class={ "alert " (a.severity.code()) } role="alert" {
                    p.title { strong { (a.title) } }
                    p { (a.detail) }
                    p { strong { "What to do: " } (a.action) }
                }
            }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            @if open {
                form method="post" action={ "/app/patient/" (id) "/review/" (task) } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    div.field {
                        label for="reason" { "Reason to decline (sent to the patient)" }
                        input #reason name="reason" type="text" autocomplete="off";
                    }
                    div.actions {
                        button.primary type="submit" name="action" value="approve" { "Approve the refill" }
                        button.secondary type="submit" name="action" value="decline" { "Decline" }
                        a href="/app/inbox" { "Back to the inbox" }
                    }
                }
            } @else {
                p.notice role="status" { "Done: " (t["status"].as_str().unwrap_or("")) "." }
            }
        }
    };
    page("Refill request", Some(session), body)
}

/// The prescriber's answer to a refill request: approved, a new prescription like the
/// last (which is completed), the task done and naming it, in one transaction; or
/// declined with a reason the patient sees.
async fn refill_decision(session: Session, id: String, mut t: Value, f: Fields) -> Response {
    let task = t["id"].as_str().unwrap_or("").to_string();
    let mr_id =
        t["focus"]["reference"].as_str().and_then(|r| r.strip_prefix("MedicationRequest/")).unwrap_or("").to_string();
    let mr = match of_patient(&session, "MedicationRequest", &mr_id, "subject", &id).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let now = now_instant();
    let task_version = t["meta"]["versionId"].as_str().unwrap_or("1").to_string();
    if let Some(o) = t.as_object_mut() {
        o.remove("meta");
    }
    t["lastModified"] = json!(now);
    t["executionPeriod"]["end"] = json!(now);
    let mut entries = Vec::new();
    match f.get("action").map(String::as_str) {
        Some("approve") => {
            let renewed_url = "urn:uuid:00000000-0000-4000-8000-200000000000";
            let mut renewed = mr.clone();
            if let Some(o) = renewed.as_object_mut() {
                o.remove("id");
                o.remove("meta");
            }
            renewed["status"] = json!("active");
            renewed["authoredOn"] = json!(now);
            renewed["priorPrescription"] = json!({"reference": format!("MedicationRequest/{mr_id}")});
            if let Some(p) = practitioner(&session) {
                renewed["requester"] = json!({"reference": p, "display": session.account.display_name});
            }
            let mut done = mr.clone();
            let mr_version = mr["meta"]["versionId"].as_str().unwrap_or("1").to_string();
            if let Some(o) = done.as_object_mut() {
                o.remove("meta");
            }
            done["status"] = json!("completed");
            t["status"] = json!("completed");
            t["output"] =
                json!([{"type": {"text": "Renewed prescription"}, "valueReference": {"reference": renewed_url}}]);
            entries.push(json!({"fullUrl": renewed_url, "resource": renewed, "request": {"method": "POST", "url": "MedicationRequest"}}));
            entries.push(json!({"resource": done, "request": {"method": "PUT", "url": format!("MedicationRequest/{mr_id}"), "ifMatch": format!("W/\"{mr_version}\"")}}));
        }
        Some("decline") => {
            let reason = f.get("reason").map(|r| r.trim().to_string()).unwrap_or_default();
            if reason.chars().count() < 3 {
                let (patient, all) = match (open_patient(&session, &id).await, allergies(&session, &id).await) {
                    (Ok(p), Ok(a)) => (p, a),
                    (Err(r), _) | (_, Err(r)) => return r,
                };
                let others = match others_than(&session, &id, &mr).await {
                    Ok(o) => o,
                    Err(r) => return r,
                };
                let facts = match crate::prescribe::facts(&session, &id, &patient).await {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let why = Some("Give the patient the reason for declining.");
                let page = refill_page(&session, &patient, (&all, &others, &facts), &t, &mr, why);
                return respond(StatusCode::BAD_REQUEST, page);
            }
            t["status"] = json!("rejected");
            t["statusReason"] = json!({"text": reason});
        }
        _ => return problem(StatusCode::BAD_REQUEST, Some(&session), "Choose", "Approve or decline the request."),
    }
    entries.push(json!({"resource": t, "request": {"method": "PUT", "url": format!("Task/{task}"), "ifMatch": format!("W/\"{task_version}\"")}}));
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    match session.repo.process_bundle(bundle).await {
        Ok(_) => Redirect::to("/app/inbox").into_response(),
        Err(e) if e.category() == hale_fhir::Category::PreconditionFailed => problem(
            StatusCode::CONFLICT,
            Some(&session),
            "Changed meanwhile",
            "The request or the prescription changed while you were deciding. Nothing was saved; open it again.",
        ),
        Err(e) => failure(&session, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_result_becomes_flagged_observations_a_report_and_a_review_task() {
        let lipids = lab_test("57698-3").unwrap();
        let f = fields(&[("2093-3", "241"), ("2571-8", "140"), ("2085-9", "38"), ("18262-6", "150")]);
        let values = check_values(lipids, &f).unwrap();
        let order = json!({"resourceType": "ServiceRequest", "id": "sr1", "meta": {"versionId": "1"}, "status": "active", "intent": "order",
            "code": {"coding": [{"system": LOINC, "code": "57698-3"}]}, "subject": {"reference": "Patient/p1"},
            "requester": {"reference": "Practitioner/x", "display": "Dr X"}});
        let b = result_bundle("p1", &order, lipids, &values, "2026-12-07T10:00:00Z", "Alvarez, Ana");
        let entries = b["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 4 + 1 + 1 + 1, "four observations, the report, the order, the task");
        let codes: Vec<&str> = entries[..4]
            .iter()
            .map(|e| e["resource"]["interpretation"][0]["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["H", "N", "L", "H"]);
        for e in entries {
            let issues = hale_fhir::validate::validate_resource(&e["resource"]);
            assert!(!issues.iter().any(hale_fhir::Issue::is_error), "{issues:?}\n{}", e["resource"]);
        }
        let task = &entries[6]["resource"];
        assert_eq!(task["owner"]["reference"], "Practitioner/x");
        assert_eq!(task["priority"], "urgent");
        assert!(task["description"].as_str().unwrap().contains("3 outside the reference range"), "{task}");
        assert_eq!(entries[5]["request"]["ifMatch"], "W/\"1\"");
    }

    #[test]
    fn implausible_or_missing_values_are_refused_by_analyte() {
        let a1c = lab_test("4548-4").unwrap();
        for bad in ["", "75", "7,2,1", "abc", "-3", "07.1"] {
            assert!(check_values(a1c, &fields(&[("4548-4", bad)])).is_err(), "{bad}");
        }
        let ok = check_values(a1c, &fields(&[("4548-4", "7,20")])).unwrap();
        assert_eq!(ok[0].1.to_string(), "7.20");
    }
}
