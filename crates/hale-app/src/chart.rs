//! `GET /app/patient/{id}`: the chart's summary. Demographics and identifiers; the
//! allergies, first and prominent; active problems and medications; the latest vital
//! signs; recent laboratory results with their flags and reference ranges;
//! immunizations; recent and upcoming encounters. Each part is one search through the
//! session's repository (access-checked and audited), run at the same time.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::Value;

use crate::fhir::{
    Flag, LOINC, address, age, code_in, concept, day, flag, mrns, observation_value, person_name, phone,
    reference_label, reference_range,
};
use crate::layout::{page, respond};
use crate::{Session, failure, search, viewed};

/// The vital signs shown, in order: LOINC code and label.
const VITALS: &[(&str, &str)] = &[
    ("85354-9", "Blood pressure"),
    ("8867-4", "Heart rate"),
    ("9279-1", "Respiratory rate"),
    ("8310-5", "Temperature"),
    ("59408-5", "SpO₂"),
    ("2708-6", "SpO₂"),
    ("29463-7", "Weight"),
    ("8302-2", "Height"),
    ("39156-5", "BMI"),
];

/// `GET /app/patient/{id}`.
pub(crate) async fn summary(session: Session, Path(id): Path<String>) -> Response {
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let repo = &session.repo;
    let p = id.as_str();
    let q_allergies = [("patient", p)];
    let q_problems = [("patient", p), ("clinical-status", "active,recurrence,relapse"), ("_sort", "-onset-date")];
    let q_meds = [("patient", p), ("status", "active,on-hold"), ("_sort", "-authoredon")];
    let q_vitals = [("patient", p), ("category", "vital-signs"), ("_sort", "-date")];
    let q_labs = [("patient", p), ("category", "laboratory"), ("_sort", "-date")];
    let q_imms = [("patient", p), ("_sort", "-date")];
    let q_encs = [("patient", p), ("_sort", "-date")];
    let q_orders = [("patient", p), ("status", "active,on-hold,draft"), ("_sort", "-authored")];
    // what the preventive rules read: their observations and procedures
    let (check_codes, procedure_codes) = (crate::panel::observation_codes(), crate::panel::procedure_codes());
    let q_checks = [("patient", p), ("code", check_codes.as_str()), ("_sort", "-date")];
    let q_procs = [("patient", p), ("code", procedure_codes.as_str())];
    let (allergies, problems, meds, vitals, labs, immunizations, encounters, orders, checks, procedures) = tokio::join!(
        search(repo, "AllergyIntolerance", &q_allergies, 100),
        search(repo, "Condition", &q_problems, 100),
        search(repo, "MedicationRequest", &q_meds, 100),
        search(repo, "Observation", &q_vitals, 60),
        search(repo, "Observation", &q_labs, 200),
        search(repo, "Immunization", &q_imms, 200), // every dose: the childhood series reads them all
        search(repo, "Encounter", &q_encs, 12),
        search(repo, "ServiceRequest", &q_orders, 50),
        search(repo, "Observation", &q_checks, 200),
        search(repo, "Procedure", &q_procs, 100),
    );
    let parts = (|| {
        Ok::<_, hale_repository::Error>((
            allergies?,
            problems?,
            meds?,
            vitals?,
            labs?,
            immunizations?,
            encounters?,
            orders?,
            checks?,
            procedures?,
        ))
    })();
    let (allergies, problems, meds, vitals, labs, immunizations, encounters, orders, mut checks, procedures) =
        match parts {
            Ok(p) => p,
            Err(e) => return failure(&session, &e),
        };
    checks.extend(procedures);
    viewed(&session.gate, &session.account, p).await;
    let name = person_name(&patient);
    let body = html! {
        (header(&session, &patient, &allergies, Tab::Summary))
        div.grid {
            section.card aria-labelledby="problems-h" {
                h2 #problems-h { "Active problems (" (problems.len()) ")" }
                p.card-action { a href={ "/app/patient/" (p) "/problems/new" } { "Add a problem" } }
                (problem_list(&session, p, &problems))
            }
            section.card aria-labelledby="meds-h" {
                h2 #meds-h { "Active medications (" (meds.len()) ")" }
                p.card-action { a href={ "/app/patient/" (p) "/medications/reconcile" } { "Reconcile" } " · " a href={ "/app/patient/" (p) "/prescribe" } { "Prescribe" } }
                (medication_list(&session.zone, &meds))
            }
            section.card.wide aria-labelledby="vitals-h" {
                h2 #vitals-h { "Latest vital signs" }
                (latest_vitals(&session.zone, &vitals))
            }
            section.card.wide aria-labelledby="labs-h" {
                h2 #labs-h { "Latest results" }
                (lab_table(&session.zone, &labs))
            }
            @let due = hale_cds::preventive::due(&patient, &session.zone.today_text(), &problems, &immunizations, &checks);
            section.card.wide aria-labelledby="due-h" {
                h2 #due-h { "Preventive care due (" (due.len()) ")" }
                @if due.is_empty() { p.empty { "Nothing due." } } @else {
                    ul.plain {
                        @for d in &due {
                            li {
                                span { strong { (d.title) } br; small { (d.action) } br; small.muted { "Source: " a href=(d.link) target="_blank" rel="noopener noreferrer" { (d.source) } } }
                                span.muted.row-end { @match &d.last { Some(l) => { "last " (l) }, None => { "never recorded" } } }
                            }
                        }
                    }
                }
            }
            section.card.wide aria-labelledby="orders-h" {
                h2 #orders-h { "Open orders (" (orders.len()) ")" }
                p.card-action { a href={ "/app/patient/" (p) "/orders/new" } { "Order a test" } }
                @if orders.is_empty() { p.empty { "No open order." } } @else {
                    ul.plain {
                        @for o in &orders {
                            li {
                                span { (concept(&o["code"])) @if o["priority"] == "urgent" { " " span.badge { "urgent" } } br; small.muted { "ordered " (session.zone.day(&o["authoredOn"])) " by " (reference_label(&o["requester"])) @if let Some(n) = o["identifier"][0]["value"].as_str() { " · order number " (n) } } }
                                span.row-end { a href={ "/app/patient/" (p) "/order/" (o["id"].as_str().unwrap_or("")) "/result" } { "Enter the result" } }
                            }
                        }
                    }
                }
            }
            section.card aria-labelledby="imm-h" {
                h2 #imm-h { "Immunizations" }
                p.card-action { a href={ "/app/patient/" (p) "/immunizations/new" } { "Record" } }
                (immunization_list(&session.zone, &immunizations))
            }
            section.card aria-labelledby="enc-h" {
                h2 #enc-h { "Visits and encounters" }
                form.card-action method="post" action={ "/app/patient/" (p) "/visits" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button.link type="submit" { "Start a visit" }
                }
                (encounter_list(&session.zone, p, &encounters))
            }
            section.card aria-labelledby="portal-h" {
                h2 #portal-h { "Patient portal" }
                form.card-action method="post" action={ "/app/patient/" (p) "/invite" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button.link type="submit" { "Invite to the portal" }
                }
                p.muted { "A one-time link with which the patient opens their own account, to see their record and results, ask for refills and write to you. " a href={ "/app/patient/" (p) "/portal" } { "Portal accounts and password reset links" } }
            }
        }
    };
    respond(StatusCode::OK, page(&name, Some(&session), body))
}

/// The Patient of a chart page, read through the session's repository (audited), or
/// the page that says why not.
pub(crate) async fn open_patient(session: &Session, id: &str) -> Result<Value, Response> {
    let not_found = || {
        crate::layout::problem(
            StatusCode::NOT_FOUND,
            Some(session),
            "Not found",
            "That is not the address of a patient's chart.",
        )
    };
    let Ok(rid) = hale_repository::resource_id(id) else {
        return Err(not_found());
    };
    let ty = hale_repository::resource_type("Patient").map_err(|e| failure(session, &e))?;
    let stored = match session.repo.read(&ty, &rid).await {
        Ok(s) => s,
        Err(e) if e.category() == hale_fhir::Category::NotFound && may_break_glass(session) => {
            return Err(glass_page(session, id, None, "", StatusCode::NOT_FOUND));
        }
        Err(e) => return Err(failure(session, &e)),
    };
    stored.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).ok_or_else(not_found)
}

fn may_break_glass(session: &Session) -> bool {
    matches!(session.role, hale_access::Role::Clinician | hale_access::Role::Nurse)
}

/// The page for a chart the user cannot open: the same whether or not the patient
/// exists, with the form to break the glass.
fn glass_page(session: &Session, id: &str, error: Option<&str>, reason: &str, status: StatusCode) -> Response {
    let body = html! {
        section.card.narrow aria-labelledby="glass-h" {
            h1 #glass-h { "Not in your care" }
            p { "No patient with this record number is in the care of your organization, or there is no such patient." }
            h2 { "Emergency access" }
            p { "If this patient needs your care now, you can open the record for one hour by stating why. "
                "Your access and your reason are recorded, and every page you open is reviewed." }
            form method="post" action={ "/app/patient/" (id) "/break-glass" } {
                input type="hidden" name="csrf" value=(session.csrf);
                div.field {
                    label for="reason" { "Reason" }
                    input #reason name="reason" type="text" value=(reason) autocomplete="off" required
                        aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| "reason-error")];
                    @if let Some(e) = error { p.error.field-error #reason-error role="alert" { (e) } }
                }
                div.actions {
                    button.danger type="submit" { "Open the record (break the glass)" }
                    a href="/app" { "Back" }
                }
            }
        }
    };
    respond(status, page("Not in your care", Some(session), body))
}

/// `POST /app/patient/{id}/break-glass`: opens the record for an hour with a reason
/// (the gate checks the role, the reason and that the patient exists, and audits it).
pub(crate) async fn break_glass(
    session: Session,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
) -> Response {
    let token_ok = form.get("csrf").is_some_and(|t| crate::same_secret(t, &session.csrf));
    if !token_ok {
        return crate::layout::problem(
            StatusCode::FORBIDDEN,
            Some(&session),
            "The form expired",
            "Nothing was done. Open the page again.",
        );
    }
    if !may_break_glass(&session) {
        return crate::layout::problem(
            StatusCode::FORBIDDEN,
            Some(&session),
            "Not allowed",
            "Only clinicians and nurses can break the glass.",
        );
    }
    let reason = form.get("reason").map(|r| r.trim().to_string()).unwrap_or_default();
    let Ok(rid) = hale_repository::resource_id(&id) else {
        return crate::layout::problem(
            StatusCode::NOT_FOUND,
            Some(&session),
            "Not found",
            "That is not the address of a patient's chart.",
        );
    };
    match session.repo.break_glass(&rid, &reason).await {
        Ok(_) => axum::response::Redirect::to(&format!("/app/patient/{id}")).into_response(),
        Err(e) if e.category() == hale_fhir::Category::Invalid => glass_page(
            &session,
            &id,
            Some("State the reason in at least 10 characters: what is happening and why you need this record."),
            &reason,
            StatusCode::BAD_REQUEST,
        ),
        Err(e) if e.category() == hale_fhir::Category::NotFound => crate::layout::problem(
            StatusCode::NOT_FOUND,
            Some(&session),
            "No such patient",
            "There is no patient with this record number. Nothing was opened.",
        ),
        Err(e) => failure(&session, &e),
    }
}

/// The pages of a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tab {
    Summary,
    Vitals,
    Results,
    Documents,
}

/// What every page of a chart begins with: the patient's banner, the allergies, and
/// the links to the chart's pages.
pub(crate) fn header(session: &Session, patient: &Value, allergies: &[Value], tab: Tab) -> Markup {
    let id = patient["id"].as_str().unwrap_or("");
    let glass = session.glass.iter().find(|g| g.0 == id);
    let tabs = [
        (Tab::Summary, "Summary", ""),
        (Tab::Vitals, "Vital signs", "/vitals"),
        (Tab::Results, "Results", "/results"),
        (Tab::Documents, "Documents", "/documents"),
    ];
    html! {
        @if let Some((_, reason, expires)) = glass {
            p.glass role="status" {
                strong { "Emergency access (break-the-glass)" } " until " (session.zone.at_millis(*expires)) ". Reason: " (reason)
                ". Every page you open is recorded."
            }
        }
        (banner(&session.zone, patient))
        (allergy_strip(id, allergies))
        nav.tabs aria-label="Chart" {
            @for (t, label, path) in tabs {
                @if t == tab {
                    a href={ "/app/patient/" (id) (path) } aria-current="page" { (label) }
                } @else {
                    a href={ "/app/patient/" (id) (path) } { (label) }
                }
            }
        }
    }
}

/// The patient's allergies (for [`header`]).
pub(crate) async fn allergies(session: &Session, id: &str) -> Result<Vec<Value>, Response> {
    search(&session.repo, "AllergyIntolerance", &[("patient", id)], 100).await.map_err(|e| failure(session, &e))
}

fn banner(zone: &crate::Zone, p: &Value) -> Markup {
    let birth = day(&p["birthDate"]);
    let deceased = p["deceasedBoolean"].as_bool() == Some(true) || p.get("deceasedDateTime").is_some();
    html! {
        section.banner aria-label="Patient" {
            h1 { (person_name(p)) }
            @if deceased { span.deceased { "Deceased " (zone.day(&p["deceasedDateTime"])) } }
            dl {
                div { dt { "Born" } dd { (birth) @if let Some(a) = age(&birth, zone.today()) { " (" (a) ")" } } }
                div { dt { "Sex" } dd { (p["gender"].as_str().unwrap_or("unknown")) } }
                div { dt { "MRN" } dd { (mrns(p).join(", ")) } }
                @let ph = phone(p);
                @if !ph.is_empty() { div { dt { "Phone" } dd { (ph) } } }
                @let gp = p["generalPractitioner"].as_array().and_then(|g| g.first()).map(reference_label).unwrap_or_default();
                @if !gp.is_empty() { div { dt { "GP" } dd { (gp) } } }
                @let addr = address(p);
                @if !addr.is_empty() { div.hide-narrow { dt { "Address" } dd { (addr) } } }
            }
        }
    }
}

/// Whether a resource's `clinicalStatus` (AllergyIntolerance, Condition) is one of
/// `codes`, or absent.
fn status_in(r: &Value, codes: &[&str]) -> bool {
    match r["clinicalStatus"]["coding"].as_array() {
        None => true,
        Some(cs) => cs.iter().any(|c| c["code"].as_str().is_some_and(|code| codes.contains(&code))),
    }
}

fn entered_in_error(r: &Value) -> bool {
    r["verificationStatus"]["coding"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["code"] == "entered-in-error" || c["code"] == "refuted"))
}

fn allergy_strip(patient: &str, all: &[Value]) -> Markup {
    let mut active: Vec<&Value> = all.iter().filter(|a| status_in(a, &["active"]) && !entered_in_error(a)).collect();
    // high criticality first
    active.sort_by_key(|a| a["criticality"] != "high");
    html! {
        @if active.is_empty() {
            section.allergies.none aria-labelledby="allergies-h" {
                h2 #allergies-h { "Allergies" }
                p.card-action { a href={ "/app/patient/" (patient) "/allergies/new" } { "Record an allergy" } }
                p.empty { "No active allergy or intolerance recorded." }
            }
        } @else {
            section.allergies aria-labelledby="allergies-h" {
                h2 #allergies-h { "Allergies and intolerances (" (active.len()) ")" }
                p.card-action { a href={ "/app/patient/" (patient) "/allergies/new" } { "Record an allergy" } }
                ul {
                    @for a in &active {
                        li {
                            strong { (concept(&a["code"])) }
                            @if let Some(c) = a["criticality"].as_str() {
                                span class={ "crit " (c) } { (c.replace('-', " ")) " risk" }
                            }
                            @let reactions = reactions(a);
                            @if !reactions.is_empty() { " — " (reactions) }
                        }
                    }
                }
            }
        }
    }
}

fn reactions(a: &Value) -> String {
    let mut out: Vec<String> = Vec::new();
    for r in a["reaction"].as_array().into_iter().flatten() {
        for m in r["manifestation"].as_array().into_iter().flatten() {
            let t = concept(m);
            if !t.is_empty() && !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out.join(", ")
}

fn problem_list(session: &Session, patient: &str, problems: &[Value]) -> Markup {
    let shown: Vec<&Value> = problems.iter().filter(|c| !entered_in_error(c)).collect();
    html! {
        @if shown.is_empty() { p.empty { "None recorded." } } @else {
            ul.plain {
                @for c in shown {
                    li {
                        span {
                            (concept(&c["code"]))
                            @if let Some(icd) = code_in(&c["code"], "http://hl7.org/fhir/sid/icd-10-cm") { " " small.muted { (icd) } }
                            @if let Some(url) = crate::fhir::medlineplus(&c["code"]) {
                                " " a.small href=(url) target="_blank" rel="noopener noreferrer" title="MedlinePlus (opens a new tab)" aria-label={ "About " (concept(&c["code"])) " on MedlinePlus (new tab)" } { "about" }
                            }
                        }
                        span.muted.row-end {
                            @let since = session.zone.day(&c["onsetDateTime"]);
                            @if !since.is_empty() { "since " (since) " " }
                            form.inline method="post" action={ "/app/patient/" (patient) "/problem/" (c["id"].as_str().unwrap_or("")) "/resolve" } {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button.link.small type="submit" aria-label={ "Resolve " (concept(&c["code"])) } { "Resolve" }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn medication_list(zone: &crate::Zone, meds: &[Value]) -> Markup {
    html! {
        @if meds.is_empty() { p.empty { "None recorded." } } @else {
            ul.plain {
                @for m in meds {
                    li {
                        span {
                            strong { (medication_name(m)) }
                            @if let Some(url) = crate::fhir::medlineplus(&m["medicationCodeableConcept"]) {
                                " " a.small href=(url) target="_blank" rel="noopener noreferrer" title="MedlinePlus (opens a new tab)" aria-label={ "About " (medication_name(m)) " on MedlinePlus (new tab)" } { "about" }
                            }
                            @let dose = m["dosageInstruction"].as_array().and_then(|d| d.first()).and_then(|d| d["text"].as_str()).unwrap_or("");
                            @if !dose.is_empty() { br; small { (dose) } }
                        }
                        span.muted { (zone.day(&m["authoredOn"])) }
                    }
                }
            }
        }
    }
}

fn medication_name(m: &Value) -> String {
    if let Some(cc) = m.get("medicationCodeableConcept") {
        return concept(cc);
    }
    reference_label(&m["medicationReference"])
}

/// The newest value of each vital sign.
fn latest_vitals(zone: &crate::Zone, vitals: &[Value]) -> Markup {
    // the search is newest first: the first of each code is its latest
    let mut shown: Vec<(&str, &Value)> = Vec::new();
    for (code, label) in VITALS {
        if shown.iter().any(|(l, _)| l == label) {
            continue;
        }
        if let Some(o) = vitals.iter().find(|o| code_in(&o["code"], LOINC).as_deref() == Some(code)) {
            shown.push((label, o));
        }
    }
    html! {
        @if shown.is_empty() { p.empty { "None recorded." } } @else {
            div.vitals {
                @for (label, o) in &shown {
                    div.vital {
                        div.k { (label) }
                        div.v { (observation_value(o)) }
                        div.k { (zone.day(&o["effectiveDateTime"])) }
                    }
                }
            }
        }
    }
}

/// The key a result is grouped by: its LOINC code, else its code's text.
fn analyte(o: &Value) -> String {
    code_in(&o["code"], LOINC).unwrap_or_else(|| concept(&o["code"]))
}

/// The latest result of each test (newest tests first), with the one before it.
fn lab_table(zone: &crate::Zone, labs: &[Value]) -> Markup {
    // the search is newest first: the first of each analyte is its latest
    let mut rows: Vec<(String, &Value, Option<&Value>)> = Vec::new();
    for o in labs {
        let key = analyte(o);
        if let Some(r) = rows.iter_mut().find(|r| r.0 == key) {
            r.2 = r.2.or(Some(o));
        } else if rows.len() < MAX_ANALYTES {
            rows.push((key, o, None));
        }
    }
    html! {
        @if rows.is_empty() { p.empty { "No laboratory result recorded." } } @else {
            table {
                thead { tr { th { "Test" } th { "Latest" } th { "Flag" } th { "Date" } th.hide-narrow { "Previous" } th.hide-narrow { "Reference range" } } }
                tbody {
                    @for (_, o, previous) in &rows {
                        @let f = flag(o);
                        tr class=(row_class(f)) {
                            td { (concept(&o["code"])) }
                            td.num { (observation_value(o)) }
                            td { @if f != Flag::Normal { span class={ "flag " (f.label()) } title=(f.words()) { (f.label()) span.sr { " " (f.words()) } } } }
                            td.date { (zone.day(&o["effectiveDateTime"])) }
                            td.num.hide-narrow {
                                @if let Some(p) = previous {
                                    (observation_value(p)) " " small.muted { (zone.day(&p["effectiveDateTime"])) }
                                }
                            }
                            td.num.hide-narrow { (reference_range(o)) }
                        }
                    }
                }
            }
        }
    }
}

/// The most tests the summary lists.
const MAX_ANALYTES: usize = 25;

pub(crate) fn row_class(f: Flag) -> &'static str {
    if f.is_critical() {
        "critical"
    } else if f == Flag::Normal {
        ""
    } else {
        "abnormal"
    }
}

fn immunization_list(zone: &crate::Zone, imms: &[Value]) -> Markup {
    html! {
        @if imms.is_empty() { p.empty { "None recorded." } } @else {
            ul.plain {
                @for i in imms {
                    li {
                        span { (concept(&i["vaccineCode"])) @if i["status"] != "completed" { " " small { "(" (i["status"].as_str().unwrap_or("")) ")" } } }
                        span.muted { (zone.day(&i["occurrenceDateTime"])) }
                    }
                }
            }
        }
    }
}

fn encounter_list(zone: &crate::Zone, patient: &str, encs: &[Value]) -> Markup {
    html! {
        @if encs.is_empty() { p.empty { "None recorded." } } @else {
            ul.plain {
                @for e in encs {
                    li {
                        span {
                            a href={ "/app/patient/" (patient) "/visit/" (e["id"].as_str().unwrap_or("")) } {
                                (e["type"].as_array().and_then(|t| t.first()).map(concept).unwrap_or_else(|| e["class"]["display"].as_str().or(e["class"]["code"].as_str()).unwrap_or("Encounter").to_string()))
                            }
                            @if e["status"] == "in-progress" { " " span.badge { "in progress" } }
                            @let reason = e["reasonCode"].as_array().and_then(|r| r.first()).map(concept).unwrap_or_default();
                            @if !reason.is_empty() { br; small { (reason) } }
                            @let provider = reference_label(&e["serviceProvider"]);
                            @if !provider.is_empty() { br; small.muted { (provider) } }
                        }
                        span.muted { (zone.day(&e["period"]["start"])) @if e["status"] == "planned" { " (planned)" } }
                    }
                }
            }
        }
    }
}
