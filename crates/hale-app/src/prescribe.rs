//! Prescribing: `GET /app/patient/{id}/prescribe` (find a drug in the table shipped
//! with Hale, then the order form with the safety alerts of `hale-cds` shown as soon as
//! the drug is chosen), `POST` (the order checked again on the server; an alert of high
//! severity needs a reason to sign anyway), then one transaction through the gate: the
//! MedicationRequest, and a DetectedIssue for each alert overridden, naming the reason.
//! `GET /app/patient/{id}/prescription/{rx}` is the printable prescription.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use hale_cds::dosing::{self, Dose, Facts};
use hale_cds::drugs::{self, Drug};
use hale_cds::{Alert, Severity};
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::chart::{Tab, allergies, header, open_patient};
use crate::fhir::{age, concept, day, mrns, person_name};
use crate::layout::{page, respond};
use crate::{Session, failure, now_instant, same_secret as same};

const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

/// How often: form value, words, FHIR Timing.repeat (frequency, period, unit), as
/// needed.
const FREQUENCIES: &[(&str, &str, u32, u32, &str, bool)] = &[
    ("qd", "once daily", 1, 1, "d", false),
    ("bid", "twice daily", 2, 1, "d", false),
    ("tid", "three times daily", 3, 1, "d", false),
    ("qid", "four times daily", 4, 1, "d", false),
    ("q8h", "every 8 hours", 1, 8, "h", false),
    ("q12h", "every 12 hours", 1, 12, "h", false),
    ("q4h-prn", "every 4 hours as needed", 1, 4, "h", true),
    ("q6h-prn", "every 6 hours as needed", 1, 6, "h", true),
];

/// An order that passed every check of the form.
#[derive(Debug)]
pub(crate) struct Order {
    pub drug: &'static Drug,
    pub dose: f64,
    pub frequency: &'static (&'static str, &'static str, u32, u32, &'static str, bool),
    pub days: Option<u32>,
    pub quantity: u32,
    pub refills: u32,
    pub note: String,
}

impl Order {
    /// The instructions in words.
    pub(crate) fn sig(&self) -> String {
        let (verb, how) = match self.drug.route {
            drugs::Route::Inhaled => ("Inhale", ""),
            drugs::Route::Oral => ("Take", " by mouth"),
            drugs::Route::Intravenous => ("Give", " intravenously"),
        };
        let unit = if self.dose == 1.0 || self.drug.unit == "mL" {
            self.drug.unit.to_string()
        } else {
            format!("{}s", self.drug.unit)
        };
        let days = self.days.map(|d| format!(" for {d} days")).unwrap_or_default();
        format!("{verb} {} {unit}{how} {}{days}", crate::fhir::fmt_number(self.dose), self.frequency.1)
    }
}

fn number<T: std::str::FromStr>(form: &HashMap<String, String>, name: &str) -> Option<Result<T, ()>> {
    let v = form.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())?;
    Some(v.replace(',', ".").parse::<T>().map_err(|_| ()))
}

/// Checks the order form; `Err` maps fields to messages.
pub(crate) fn check(form: &HashMap<String, String>) -> Result<Order, Vec<(&'static str, String)>> {
    let mut errors = Vec::new();
    let drug = form.get("drug").and_then(|d| d.parse::<usize>().ok()).and_then(drugs::get);
    if drug.is_none() {
        errors.push(("drug", "Choose a drug from the list.".to_string()));
    }
    let dose = match number::<f64>(form, "dose") {
        Some(Ok(d)) if d > 0.0 && d <= 100.0 => Some(d),
        Some(_) => {
            errors.push(("dose", "Write the dose as a number between 0 and 100.".into()));
            None
        }
        None => {
            errors.push(("dose", "Give the dose.".into()));
            None
        }
    };
    let frequency = FREQUENCIES.iter().find(|f| form.get("frequency").is_some_and(|v| v == f.0));
    if frequency.is_none() {
        errors.push(("frequency", "Choose how often.".into()));
    }
    let days = match number::<u32>(form, "days") {
        None => None,
        Some(Ok(d)) if (1..=365).contains(&d) => Some(d),
        Some(_) => {
            errors.push((
                "days",
                "Give the duration in whole days, 1 to 365, or leave it empty for a long-term drug.".into(),
            ));
            None
        }
    };
    let quantity = match number::<u32>(form, "quantity") {
        Some(Ok(q)) if (1..=1000).contains(&q) => q,
        _ => {
            errors.push(("quantity", "Give the quantity to dispense as a whole number, 1 to 1000.".into()));
            0
        }
    };
    let refills = match number::<u32>(form, "refills") {
        None => 0,
        Some(Ok(r)) if r <= 11 => r,
        Some(_) => {
            errors.push(("refills", "Refills are a whole number from 0 to 11.".into()));
            0
        }
    };
    let note = form.get("note").map(|n| n.trim().to_string()).unwrap_or_default();
    if note.chars().count() > 1000 {
        errors.push(("note", "The note to the pharmacist is at most 1,000 characters.".into()));
    }
    match (drug, dose, frequency) {
        (Some(drug), Some(dose), Some(frequency)) if errors.is_empty() => {
            Ok(Order { drug, dose, frequency, days, quantity, refills, note })
        }
        _ => Err(errors),
    }
}

/// The MedicationRequest of an order.
pub(crate) fn medication_request(patient: &str, requester: Option<(&str, &str)>, o: &Order, authored: &str) -> Value {
    let (route_code, route_display) = o.drug.route.snomed();
    let mut timing =
        json!({"repeat": {"frequency": o.frequency.2, "period": o.frequency.3, "periodUnit": o.frequency.4}});
    if let Some(d) = o.days {
        timing["repeat"]["boundsDuration"] =
            json!({"value": d, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"});
    }
    let dose = serde_json::Number::from_f64(o.dose).map(Value::Number).unwrap_or(Value::Null);
    let mut dosage = json!({
        "text": o.sig(),
        "timing": timing,
        "route": {"coding": [{"system": "http://snomed.info/sct", "code": route_code, "display": route_display}]},
        "doseAndRate": [{"doseQuantity": {"value": dose, "unit": o.drug.unit}}],
    });
    if o.frequency.5 {
        dosage["asNeededBoolean"] = json!(true);
    }
    let mut mr = json!({
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category", "code": "community", "display": "Community"}]}],
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": o.drug.rxcui, "display": o.drug.name}], "text": o.drug.name},
        "subject": {"reference": format!("Patient/{patient}")},
        "authoredOn": authored,
        "dosageInstruction": [dosage],
        "dispenseRequest": {"numberOfRepeatsAllowed": o.refills, "quantity": {"value": o.quantity, "unit": o.drug.unit}},
    });
    if let Some(d) = o.days {
        mr["dispenseRequest"]["expectedSupplyDuration"] =
            json!({"value": d, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"});
    }
    if let Some((reference, display)) = requester {
        mr["requester"] = json!({"reference": reference, "display": display});
    }
    if !o.note.is_empty() {
        mr["note"] = json!([{"text": o.note}]);
    }
    mr
}

/// The DetectedIssue that records an alert overridden with `reason`.
fn detected_issue(
    patient: &str,
    alert: &Alert,
    rx_full_url: &str,
    author: Option<&str>,
    reason: &str,
    when: &str,
) -> Value {
    let mut implicated = vec![json!({"reference": rx_full_url})];
    if let Some(a) = &alert.about {
        implicated.push(json!({"reference": a}));
    }
    let mut mitigation = json!({"action": {"text": format!("Overridden by the prescriber: {reason}")}, "date": when});
    // HL7 v3 ActCode detected-issue codes
    let (code, display) = match alert.rule {
        "drug-interaction" => ("DRG", "Drug Interaction Alert"),
        "duplicate-ingredient" | "duplicate-class" => ("DUPTHPY", "Duplicate Therapy Alert"),
        "dose-maximum" => ("DOSEH", "High Dose Alert"),
        "dose-maximum-child" => ("DOSEHINDW", "High Dose for Weight Alert"),
        "dose-no-weight" => ("DOSE", "Dosage problem"),
        "renal" => ("DOSECOND", "dosage-condition alert"),
        "pregnancy" => ("PREG", "Pregnancy Alert"),
        "age" => ("AGE", "Age Alert"),
        _ => ("ALGY", "Allergy Alert"),
    };
    let mut di = json!({
        "resourceType": "DetectedIssue",
        "status": "final",
        "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code, "display": display}], "text": alert.title},
        "severity": alert.severity.code(),
        "patient": {"reference": format!("Patient/{patient}")},
        "identifiedDateTime": when,
        "implicated": implicated,
        "detail": format!("{} {} Source: {} (rule {}).", alert.detail, alert.action, alert.source, alert.rule),
    });
    if let Some(a) = author {
        di["author"] = json!({"reference": a});
        mitigation["author"] = json!({"reference": a});
    }
    di["mitigation"] = json!([mitigation]);
    di
}

/// What the dose, kidney and pregnancy checks need: the age, the latest weight and
/// eGFR, a recorded pregnancy (two searches, as the user).
pub(crate) async fn facts(session: &Session, id: &str, patient: &Value) -> Result<Facts, Response> {
    let (codes, problems) = dosing::fact_queries();
    let obs_q = [("patient", id), ("code", codes.as_str()), ("_sort", "-date")];
    let cond_q = [("patient", id), ("code", problems.as_str())];
    let (obs, conditions) = tokio::join!(
        crate::search(&session.repo, "Observation", &obs_q, 200),
        crate::search(&session.repo, "Condition", &cond_q, 20),
    );
    let (obs, conditions) = match (obs, conditions) {
        (Ok(o), Ok(c)) => (o, c),
        (Err(e), _) | (_, Err(e)) => return Err(failure(session, &e)),
    };
    Ok(dosing::facts(patient, &obs, &conditions, &session.zone.today_text()))
}

/// The dose the form gives (units each time, the most times a day), when it reads.
fn dose_of(typed: &HashMap<String, String>) -> Option<Dose> {
    let units = typed.get("dose")?.trim().replace(',', ".").parse::<f64>().ok().filter(|d| *d > 0.0)?;
    let f = FREQUENCIES.iter().find(|f| typed.get("frequency").is_some_and(|v| v == f.0))?;
    let times_a_day = match f.4 {
        "h" => f64::from(f.2) * 24.0 / f64::from(f.3),
        _ => f64::from(f.2) / f64::from(f.3),
    };
    Some(Dose { units, times_a_day })
}

/// The patient's active and held prescriptions, for the medication-safety hook.
pub(crate) async fn active_medications(session: &Session, id: &str) -> Result<Vec<Value>, Response> {
    let q = [("patient", id), ("status", "active,on-hold")];
    crate::search(&session.repo, "MedicationRequest", &q, 500).await.map_err(|e| failure(session, &e))
}

/// `GET /app/patient/{id}/prescribe?q=...&drug=N`.
pub(crate) async fn form(
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let all = match allergies(&session, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let meds = match active_medications(&session, &id).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let facts = match facts(&session, &id, &patient).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut typed = q.clone();
    if q.get("drug").and_then(|d| d.parse::<usize>().ok()).and_then(drugs::get).is_some() {
        typed.entry("dose".into()).or_insert_with(|| "1".into());
        typed.entry("frequency".into()).or_insert_with(|| "qd".into());
        typed.entry("refills".into()).or_insert_with(|| "0".into());
    }
    respond(StatusCode::OK, form_page(&session, &patient, (&all, &meds, &facts), &typed, &[]))
}

fn form_page(
    session: &Session,
    patient: &Value,
    (all, meds, facts): (&[Value], &[Value], &Facts),
    typed: &HashMap<String, String>,
    errors: &[(&str, String)],
) -> Markup {
    let id = patient["id"].as_str().unwrap_or("");
    let error_of = |name: &str| errors.iter().find(|e| e.0 == name).map(|e| e.1.clone());
    let value_of = |name: &str| typed.get(name).cloned().unwrap_or_default();
    let drug = typed.get("drug").and_then(|d| d.parse::<usize>().ok()).and_then(|i| drugs::get(i).map(|d| (i, d)));
    let query = value_of("q");
    let found = if drug.is_none() { drugs::find(&query, 30) } else { Vec::new() };
    let alerts =
        drug.map(|(_, d)| hale_cds::check_prescription(d, all, meds, facts, dose_of(typed))).unwrap_or_default();
    let body = html! {
        (header(session, patient, all, Tab::Summary))
        section.card.form-card aria-labelledby="rx-h" {
            h1 #rx-h { "Prescribe" }
            @if let Some(e) = error_of("") { p.error role="alert" { (e) } }
            @if let Some((index, d)) = drug {
                p.chosen { "Drug: " strong { (d.name) } " " small.muted { "RxNorm " (d.rxcui) } " · " a href={ "/app/patient/" (id) "/prescribe" } { "choose another" } }
                @if !alerts.is_empty() { (alert_list(&alerts)) }
                @if !errors.is_empty() && error_of("").is_none() {
                    p.error role="alert" { "Nothing was signed. Check the fields marked below." }
                }
                form method="post" action={ "/app/patient/" (id) "/prescribe" } novalidate {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="drug" value=(index);
                    div.fields {
                        (text_field("dose", &format!("Dose ({}s)", d.unit), &value_of("dose"), error_of("dose")))
                        div.field {
                            label for="frequency" { "How often" }
                            select #frequency name="frequency" aria-invalid=[error_of("frequency").map(|_| "true")] {
                                @for f in FREQUENCIES {
                                    option value=(f.0) selected[value_of("frequency") == f.0] { (f.1) }
                                }
                            }
                            @if let Some(e) = error_of("frequency") { p.error.field-error { (e) } }
                        }
                        (text_field("days", "Duration (days; empty for long-term)", &value_of("days"), error_of("days")))
                        (text_field("quantity", &format!("Quantity to dispense ({}s)", d.unit), &value_of("quantity"), error_of("quantity")))
                        (text_field("refills", "Refills", &value_of("refills"), error_of("refills")))
                        (text_field("note", "Note to the pharmacist", &value_of("note"), error_of("note")))
                    }
                    @if alerts.iter().any(|a| a.severity == Severity::High) {
                        div.field.override {
                            label for="override" { "Reason to prescribe despite the alert" }
                            input #override name="override" type="text" value=(value_of("override")) autocomplete="off"
                                aria-invalid=[error_of("override").map(|_| "true")] aria-describedby=[error_of("override").map(|_| "override-error")];
                            @if let Some(e) = error_of("override") { p.error.field-error #override-error { (e) } }
                        }
                    }
                    div.actions {
                        button.primary type="submit" { "Sign prescription" }
                        a href={ "/app/patient/" (id) } { "Cancel" }
                    }
                }
            } @else {
                form.find method="get" action={ "/app/patient/" (id) "/prescribe" } role="search" {
                    label for="q" { "Find a drug" }
                    div.row {
                        input #q type="search" name="q" value=(query) autofocus autocomplete="off" aria-describedby="q-hint";
                        button.primary type="submit" { "Search" }
                    }
                    p.hint #q-hint { "A name or part of one, and a strength if you like: “amox 500”." }
                }
                @if !query.trim().is_empty() {
                    @if found.is_empty() {
                        p.empty { "No drug in Hale's table matches “" (query) "”." }
                    } @else {
                        ul.plain.drugs {
                            @for (i, d) in &found {
                                li { a href={ "/app/patient/" (id) "/prescribe?drug=" (i) } { (d.name) } small.muted { "RxNorm " (d.rxcui) } }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Prescribe", Some(session), body)
}

fn text_field(name: &str, label: &str, value: &str, error: Option<String>) -> Markup {
    let err_id = format!("{name}-error");
    html! {
        div.field {
            label for=(name) { (label) }
            input id=(name) name=(name) type="text" value=(value) autocomplete="off"
                aria-invalid=[error.as_ref().map(|_| "true")] aria-describedby=[error.as_ref().map(|_| err_id.as_str())];
            @if let Some(e) = &error { p.error.field-error id=(err_id) { (e) } }
        }
    }
}

fn alert_list(alerts: &[Alert]) -> Markup {
    html! {
        section.alerts aria-label="Safety alerts" role="alert" {
            @for a in alerts {
                div class={ "alert " (a.severity.code()) } {
                    p.title { span.sev { (if a.severity == Severity::High { "Stop" } else { "Caution" }) } " " strong { (a.title) } }
                    p { (a.detail) }
                    p { strong { "What to do: " } (a.action) }
                    p.source { "Source: " (a.source) }
                }
            }
        }
    }
}

/// `POST /app/patient/{id}/prescribe`.
pub(crate) async fn sign(
    session: Session,
    Path(id): Path<String>,
    Form(typed): Form<HashMap<String, String>>,
) -> Response {
    if !typed.get("csrf").is_some_and(|t| same(t, &session.csrf)) {
        return crate::layout::problem(
            StatusCode::FORBIDDEN,
            Some(&session),
            "The form expired",
            "Nothing was signed: the form came from an earlier sign-in. Open it again.",
        );
    }
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let all = match allergies(&session, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let meds = match active_medications(&session, &id).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let facts = match facts(&session, &id, &patient).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let order = match check(&typed) {
        Ok(o) => o,
        Err(errors) => {
            return respond(
                StatusCode::BAD_REQUEST,
                form_page(&session, &patient, (&all, &meds, &facts), &typed, &errors),
            );
        }
    };
    // the alerts again, on what is stored now: the page's may be stale
    let alerts = hale_cds::check_prescription(order.drug, &all, &meds, &facts, dose_of(&typed));
    let reason = typed.get("override").map(|r| r.trim()).unwrap_or("");
    let high: Vec<&Alert> = alerts.iter().filter(|a| a.severity == Severity::High).collect();
    if !high.is_empty() && reason.chars().count() < 5 {
        let msg = "Give the reason to prescribe despite the alert (at least a few words), or choose another drug."
            .to_string();
        return respond(
            StatusCode::BAD_REQUEST,
            form_page(&session, &patient, (&all, &meds, &facts), &typed, &[("override", msg)]),
        );
    }
    let when = now_instant();
    let practitioner = session.account.fhir_user.as_deref().filter(|u| u.starts_with("Practitioner/"));
    let requester = practitioner.map(|p| (p, session.account.display_name.as_str()));
    let rx_url = "urn:uuid:00000000-0000-4000-8000-000000000001";
    let mut entries = vec![json!({
        "fullUrl": rx_url,
        "resource": medication_request(&id, requester, &order, &when),
        "request": {"method": "POST", "url": "MedicationRequest"},
    })];
    for a in &high {
        entries.push(json!({
            "resource": detected_issue(&id, a, rx_url, practitioner, reason, &when),
            "request": {"method": "POST", "url": "DetectedIssue"},
        }));
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    match session.repo.process_bundle(bundle).await {
        Ok((_, results)) => {
            let location = results.first().and_then(|r| r.as_ref().ok()).and_then(|r| r.location.clone());
            let rx = location.as_deref().and_then(|l| l.split('/').nth(1)).unwrap_or("").to_string();
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                let msg = format!(
                    "Nothing was signed: {}",
                    e.outcome().issues.first().map(|i| i.diagnostics.as_str()).unwrap_or("refused")
                );
                return respond(
                    StatusCode::BAD_REQUEST,
                    form_page(&session, &patient, (&all, &meds, &facts), &typed, &[("", msg)]),
                );
            }
            Redirect::to(&format!("/app/patient/{id}/prescription/{rx}")).into_response()
        }
        Err(e) if matches!(e.category(), hale_fhir::Category::Forbidden | hale_fhir::Category::Unauthorized) => {
            let msg = "Nothing was signed: your role does not allow prescribing for this patient.".to_string();
            respond(StatusCode::FORBIDDEN, form_page(&session, &patient, (&all, &meds, &facts), &typed, &[("", msg)]))
        }
        Err(e) => failure(&session, &e),
    }
}

/// `GET /app/patient/{id}/prescription/{rx}`: the prescription, to print.
pub(crate) async fn printable(session: Session, Path((id, rx)): Path<(String, String)>) -> Response {
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (Ok(ty), Ok(rid)) = (hale_repository::resource_type("MedicationRequest"), hale_repository::resource_id(&rx))
    else {
        return crate::layout::problem(
            StatusCode::NOT_FOUND,
            Some(&session),
            "Not found",
            "There is no such prescription.",
        );
    };
    let mr: Value = match session.repo.read(&ty, &rid).await {
        Ok(r) => match r.body.as_deref().and_then(|b| serde_json::from_str(b).ok()) {
            Some(v) => v,
            None => {
                return crate::layout::problem(
                    StatusCode::NOT_FOUND,
                    Some(&session),
                    "Not found",
                    "There is no such prescription.",
                );
            }
        },
        Err(e) => return failure(&session, &e),
    };
    if mr["subject"]["reference"].as_str() != Some(&format!("Patient/{id}")) {
        return crate::layout::problem(
            StatusCode::NOT_FOUND,
            Some(&session),
            "Not found",
            "There is no such prescription for this patient.",
        );
    }
    let birth = day(&patient["birthDate"]);
    let dosage = &mr["dosageInstruction"][0];
    let body = html! {
        p.actions.noprint { a href={ "/app/patient/" (id) } { "Back to the chart" } " · Print this page with your browser (Ctrl+P)." }
        article.card.prescription aria-labelledby="p-h" {
            h1 #p-h { "Prescription" }
            dl.rx {
                dt { "Patient" } dd { (person_name(&patient)) }
                dt { "Born" } dd { (birth) @if let Some(a) = age(&birth, session.zone.today()) { " (" (a) ")" } }
                dt { "MRN" } dd { (mrns(&patient).join(", ")) }
                dt { "Drug" } dd { strong { (concept(&mr["medicationCodeableConcept"])) } }
                dt { "Instructions" } dd { (dosage["text"].as_str().unwrap_or("")) }
                @let qty = &mr["dispenseRequest"]["quantity"];
                @let unit = qty["unit"].as_str().unwrap_or("");
                dt { "Dispense" } dd { (qty["value"].to_string()) " " (unit) @if qty["value"] != 1 && unit != "mL" { "s" } }
                dt { "Refills" } dd { (mr["dispenseRequest"]["numberOfRepeatsAllowed"].to_string()) }
                @if let Some(n) = mr["note"][0]["text"].as_str() { dt { "Note" } dd { (n) } }
                dt { "Prescriber" } dd { (mr["requester"]["display"].as_str().unwrap_or("")) }
                dt { "Date" } dd { (session.zone.day(&mr["authoredOn"])) }
                dt { "Reference" } dd.num { "MedicationRequest/" (rx) }
            }
        }
    };
    respond(StatusCode::OK, page("Prescription", Some(&session), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn index(name: &str) -> String {
        drugs::DRUGS.iter().position(|d| d.name.starts_with(name)).unwrap().to_string()
    }

    #[test]
    fn an_order_becomes_a_valid_medication_request() {
        let amox = index("amoxicillin 500");
        let o = check(&form(&[
            ("drug", &amox),
            ("dose", "1"),
            ("frequency", "tid"),
            ("days", "10"),
            ("quantity", "30"),
            ("refills", "0"),
        ]))
        .unwrap();
        assert_eq!(o.sig(), "Take 1 capsule by mouth three times daily for 10 days");
        let mr = medication_request("p1", Some(("Practitioner/x", "Dr X")), &o, "2026-12-07T10:00:00Z");
        let issues = hale_fhir::validate::validate_resource(&mr);
        assert!(!issues.iter().any(hale_fhir::Issue::is_error), "{issues:?}");
        assert_eq!(mr["dosageInstruction"][0]["timing"]["repeat"]["frequency"], 3);
        assert_eq!(mr["medicationCodeableConcept"]["coding"][0]["code"], "723");
        let inhaler = index("200 ACTUAT albuterol");
        let o =
            check(&form(&[("drug", &inhaler), ("dose", "2"), ("frequency", "q4h-prn"), ("quantity", "1")])).unwrap();
        assert_eq!(o.sig(), "Inhale 2 puffs every 4 hours as needed");
        assert_eq!(
            medication_request("p1", None, &o, "2026-12-07T10:00:00Z")["dosageInstruction"][0]["asNeededBoolean"],
            true
        );
    }

    #[test]
    fn a_bad_order_is_refused_by_field() {
        let e = check(&form(&[
            ("drug", "9999"),
            ("dose", "x"),
            ("frequency", "hourly"),
            ("days", "0"),
            ("quantity", ""),
            ("refills", "12"),
        ]))
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.0).collect();
        assert_eq!(fields, ["drug", "dose", "frequency", "days", "quantity", "refills"], "{e:?}");
    }

    #[test]
    fn an_override_is_recorded_as_a_detected_issue() {
        let alert = Alert {
            rule: "allergy-class",
            severity: Severity::High,
            title: "Allergy to penicillins: amoxicillin is a penicillin".into(),
            detail: "Recorded allergy: penicillin.".into(),
            action: "Choose another class.".into(),
            source: "x",
            about: Some("AllergyIntolerance/a1".into()),
        };
        let di = detected_issue(
            "p1",
            &alert,
            "urn:uuid:1",
            Some("Practitioner/x"),
            "tolerated amoxicillin in 2024",
            "2026-12-07T10:00:00Z",
        );
        let issues = hale_fhir::validate::validate_resource(&di);
        assert!(!issues.iter().any(hale_fhir::Issue::is_error), "{issues:?}");
        assert!(di["mitigation"][0]["action"]["text"].as_str().unwrap().contains("tolerated amoxicillin in 2024"));
        assert_eq!(di["implicated"][1]["reference"], "AllergyIntolerance/a1");
    }
}
