//! The patient portal under `/portal`: a patient (or a proxy) signed in sees their own
//! record in plain words — health problems, medicines, allergies, vaccinations, visits
//! —, their results over the years, and who has opened their record. Its pages hold only
//! a [`PatientSession`]: a repository made for the patient's account with patient
//! scopes, so the gate limits every read to that patient's record; the staff
//! [`crate::Session`] is never made here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use hale_access::{Role, Scopes};
use hale_identity::Account;
use hale_repository::Repository;
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use crate::fhir::{age, concept, day, person_name, reference_label};
use crate::layout::{CSS_PATH, JS_PATH, respond};
use crate::{AppState, search};

/// A signed-in patient (or proxy) and the repository made for them: patient scopes,
/// the record open (`patient`) one of the account's.
pub(crate) struct PatientSession {
    pub account: Account,
    pub csrf: String,
    pub repo: Repository,
    /// The Patient id whose record is open.
    pub patient: String,
    /// The installation's time zone.
    pub zone: crate::Zone,
}

/// Read the record; create requests of the care team (the role allows Task and
/// Communication only).
/// The cookie that says which of the account's records is open (checked against the
/// account's links on every request).
const CHOICE_COOKIE: &str = "hale_portal_patient";

fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

const PORTAL_SCOPES: &str = "patient/*.rs patient/Task.c patient/Communication.c patient/Binary.c patient/Consent.cu";
const CLIENT_ID: &str = "hale-portal";

fn sign_in(parts: &Parts) -> Response {
    let here = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/portal");
    let mut next = String::new();
    for b in here.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            next.push(b as char);
        } else {
            next.push_str(&format!("%{b:02X}"));
        }
    }
    Redirect::to(&format!("/auth/login?next={next}")).into_response()
}

/// A page that only says something (the form expired, nothing found).
pub(crate) fn notice(status: StatusCode, title: &str, message: &str) -> Response {
    plain_page(status, title, message)
}

/// A portal page for `session`.
pub(crate) fn page_for(session: &PatientSession, title: &str, body: Markup) -> Response {
    respond(StatusCode::OK, shell(title, Some(session), body))
}

fn plain_page(status: StatusCode, title: &str, message: &str) -> Response {
    respond(status, shell(title, None, html! { section.card.narrow { h1 { (title) } p role="alert" { (message) } } }))
}

impl FromRequestParts<Arc<AppState>> for PatientSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, Response> {
        let Some((account, csrf)) = hale_auth::session(&st.auth, &parts.headers).await else {
            return Err(sign_in(parts));
        };
        if account.role().ok() != Some(Role::Patient) {
            return Err(plain_page(
                StatusCode::FORBIDDEN,
                "The portal is for patients",
                "Your account is a staff account. The clinician application is at /app.",
            ));
        }
        // the record chosen (a proxy may be linked to several), else the first
        let chosen = cookie(&parts.headers, CHOICE_COOKIE).filter(|c| account.patients.contains(c));
        let Some(patient) = chosen.or_else(|| account.patients.first().cloned()) else {
            return Err(plain_page(StatusCode::FORBIDDEN, "No record", "Your account is not linked to a record yet."));
        };
        let broken = || plain_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "Try again in a moment.");
        let scopes = Scopes::parse(PORTAL_SCOPES, true).map_err(|_| broken())?;
        let mut ctx = hale_auth::user_context(&account, scopes, Some(patient.clone()), CLIENT_ID).ok_or_else(broken)?;
        if let Some(r) = parts.extensions.get::<hale_api::RequestId>() {
            ctx.request_id = r.0.clone();
        }
        ctx.client = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let repo = st.gate.repository(ctx);
        Ok(PatientSession { account, csrf, repo, patient, zone: st.options.time_zone.clone() })
    }
}

/// The portal's page shell: plain, with the patient's menu.
fn shell(title: &str, session: Option<&PatientSession>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (title) " · Hale" }
                link rel="stylesheet" href=(CSS_PATH);
                @if session.is_some() { script src=(JS_PATH) defer {} }
            }
            body.portal data-idle-seconds=[session.map(|_| hale_auth::SESSION_IDLE.as_secs())] {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/portal" { "Hale" }
                    @if let Some(s) = session {
                        nav aria-label="Main" {
                            a href="/portal" { "My record" }
                            a href="/portal/results" { "My results" }
                            a href="/portal/documents" { "Documents" }
                            a href="/portal/messages" { "Messages" }
                            a href="/portal/access" { "Who has seen my record" }
                            a href="/portal/sharing" { "Sharing" }
                            a href="/portal/apps" { "Apps" }
                            @if s.account.patients.len() > 1 { a href="/portal/choose" { "Switch record" } }
                        }
                        div.who {
                            span { (s.account.display_name) }
                            form.signout method="post" action="/auth/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                input type="hidden" name="next" value="/portal";
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main { (body) }
                @if let Some(s) = session { footer.zone { (s.zone.note()) } }
            }
        }
    }
}

/// A clinical term for a patient: the words without SNOMED CT's semantic tag
/// ("Hypertension (disorder)" reads "Hypertension").
pub(crate) fn plain(term: &str) -> String {
    let t = term.trim();
    for tag in
        [" (disorder)", " (finding)", " (procedure)", " (situation)", " (substance)", " (morphologic abnormality)"]
    {
        if let Some(s) = t.strip_suffix(tag) {
            return s.to_string();
        }
    }
    t.to_string()
}

pub(crate) fn failure(e: &hale_repository::Error) -> Response {
    match e.category() {
        hale_fhir::Category::Forbidden | hale_fhir::Category::Unauthorized => {
            crate::portal::notice(StatusCode::FORBIDDEN, "Not allowed", "Your account cannot do this.")
        }
        hale_fhir::Category::NotFound | hale_fhir::Category::Gone => {
            crate::portal::notice(StatusCode::NOT_FOUND, "Not found", "That is not in your record.")
        }
        _ => {
            tracing::warn!(error = %e, "a portal page failed");
            crate::portal::notice(
                StatusCode::SERVICE_UNAVAILABLE,
                "Your record could not be read",
                "Try again in a moment.",
            )
        }
    }
}

/// `GET /portal`.
pub(crate) async fn home(
    session: PatientSession,
    axum::extract::State(st): axum::extract::State<Arc<AppState>>,
) -> Response {
    let unread = crate::messages::portal_unread(&session, &st).await;
    let p = session.patient.as_str();
    let ty = match hale_repository::resource_type("Patient") {
        Ok(t) => t,
        Err(e) => return failure(&e),
    };
    let Ok(rid) = hale_repository::resource_id(p) else {
        return plain_page(StatusCode::NOT_FOUND, "No record", "Your record could not be found.");
    };
    let patient: Value = match session.repo.read(&ty, &rid).await {
        Ok(r) => r.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null),
        Err(e) => return failure(&e),
    };
    let repo = &session.repo;
    let q_all = [("patient", p)];
    let q_problems = [("patient", p), ("clinical-status", "active,recurrence,relapse")];
    let q_meds = [("patient", p), ("status", "active")];
    let q_imms = [("patient", p), ("_sort", "-date")];
    let q_encs = [("patient", p), ("_sort", "-date")];
    let q_requests = [("patient", p), ("code", REFILL_CODE), ("_sort", "-authored-on")];
    let codes = crate::panel::observation_codes();
    let q_checks = [("patient", p), ("code", codes.as_str()), ("_sort", "-date")];
    let procs = crate::panel::procedure_codes();
    let q_procs = [("patient", p), ("code", procs.as_str())];
    let (allergies, problems, meds, imms, encs, requests, checks, procedures) = tokio::join!(
        search(repo, "AllergyIntolerance", &q_all, 100),
        search(repo, "Condition", &q_problems, 100),
        search(repo, "MedicationRequest", &q_meds, 100),
        search(repo, "Immunization", &q_imms, 200), // every dose: the childhood series reads them all
        search(repo, "Encounter", &q_encs, 10),
        search(repo, "Task", &q_requests, 20),
        search(repo, "Observation", &q_checks, 200),
        search(repo, "Procedure", &q_procs, 200),
    );
    let parts = (|| {
        Ok::<_, hale_repository::Error>((allergies?, problems?, meds?, imms?, encs?, requests?, checks?, procedures?))
    })();
    let (allergies, problems, meds, imms, encs, requests, mut checks, procedures) = match parts {
        Ok(x) => x,
        Err(e) => return failure(&e),
    };
    checks.extend(procedures);
    // reminders: the preventive care due, in plain words
    let due = hale_cds::preventive::due(&patient, &session.zone.today_text(), &problems, &imms, &checks);
    let open_request = |mr: &Value| {
        let me = format!("MedicationRequest/{}", mr["id"].as_str().unwrap_or(""));
        requests.iter().any(|t| t["focus"]["reference"].as_str() == Some(&me) && t["status"] == "requested")
    };
    let active_allergies: Vec<&Value> = allergies
        .iter()
        .filter(|a| a["clinicalStatus"]["coding"][0]["code"].as_str().is_none_or(|c| c == "active"))
        .collect();
    let birth = day(&patient["birthDate"]);
    let body = html! {
        @if unread > 0 {
            p.notice role="status" { a href="/portal/messages" { (unread) " conversation" @if unread > 1 { "s" } " with a new message from your care team" } }
        }
        @if session.account.fhir_user.as_deref().is_some_and(|u| u.starts_with("RelatedPerson/")) {
            p.notice role="status" { "You are looking at the record of " strong { (person_name(&patient)) } " on their behalf. What you open is recorded in your name." }
        }
        section.banner aria-label="You" {
            h1 { (person_name(&patient)) }
            p.download {
                a href="/portal/summary" { "My health summary" } " · "
                a href="/portal/download" download { "Download my record" } " " small.muted { "(FHIR JSON, everything in it)" }
            }
            dl { div { dt { "Born" } dd { (birth) @if let Some(a) = age(&birth, session.zone.today()) { " (" (a) ")" } } } }
        }
        @if !due.is_empty() {
            section.card.reminders aria-labelledby="p-due" {
                h2 #p-due { "Care that is due" }
                ul.plain {
                    @for d in &due {
                        li {
                            span { (d.for_patient) }
                            span.muted { @match &d.last { Some(l) => { "last " (session.zone.day_of(l)) }, None => { "not recorded yet" } } }
                        }
                    }
                }
                p { a href="/portal/messages#m-new" { "Write to your care team to book it" } }
            }
        }
        div.grid {
            section.card aria-labelledby="p-allergies" {
                h2 #p-allergies { "Allergies" }
                @if active_allergies.is_empty() { p.empty { "No allergy is recorded. Tell your care team if you have one." } } @else {
                    ul.plain { @for a in &active_allergies { li { span { strong { (plain(&concept(&a["code"]))) } @if a["criticality"] == "high" { " — can be severe" } } } } }
                }
            }
            section.card aria-labelledby="p-problems" {
                h2 #p-problems { "Health problems" }
                @if problems.is_empty() { p.empty { "No ongoing health problem is recorded." } } @else {
                    ul.plain { @for c in &problems { li { span { (plain(&concept(&c["code"]))) } span.muted { @let s = session.zone.day(&c["onsetDateTime"]); @if !s.is_empty() { "since " (s) } } } } }
                }
            }
            section.card aria-labelledby="p-meds" {
                h2 #p-meds { "Medicines" }
                @if meds.is_empty() { p.empty { "No medicine is prescribed to you now." } } @else {
                    ul.plain {
                        @for m in &meds {
                            li {
                                span {
                                    strong { (concept(&m["medicationCodeableConcept"])) }
                                    @if let Some(t) = m["dosageInstruction"][0]["text"].as_str() { br; (t) }
                                }
                                span.muted.row-end {
                                    (reference_label(&m["requester"]))
                                    br;
                                    @if open_request(m) {
                                        small { "refill requested" }
                                    } @else {
                                        form.inline method="post" action="/portal/refill" {
                                            input type="hidden" name="csrf" value=(session.csrf);
                                            input type="hidden" name="medication" value=(m["id"].as_str().unwrap_or(""));
                                            button.link.small type="submit" { "Request a refill" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if !requests.is_empty() {
                section.card aria-labelledby="p-requests" {
                    h2 #p-requests { "My requests" }
                    ul.plain {
                        @for t in &requests {
                            li {
                                span { (t["description"].as_str().unwrap_or("Request")) br; small.muted { "asked " (session.zone.day(&t["authoredOn"])) } }
                                span.row-end { (request_status(t)) }
                            }
                        }
                    }
                }
            }
            section.card aria-labelledby="p-imms" {
                h2 #p-imms { "Vaccinations" }
                @if imms.is_empty() { p.empty { "No vaccination is recorded." } } @else {
                    ul.plain { @for i in &imms { li { span { (concept(&i["vaccineCode"])) } span.muted { (session.zone.day(&i["occurrenceDateTime"])) } } } }
                }
            }
            section.card.wide aria-labelledby="p-visits" {
                h2 #p-visits { "Recent visits" }
                @if encs.is_empty() { p.empty { "No visit is recorded." } } @else {
                    ul.plain {
                        @for e in &encs {
                            li {
                                span {
                                    (e["type"][0]["text"].as_str().map(str::to_string).unwrap_or_else(|| plain(&concept(&e["type"][0]))))
                                    @let why = plain(&concept(&e["reasonCode"][0]));
                                    @if !why.is_empty() { " — " (why) }
                                    @let at = reference_label(&e["serviceProvider"]);
                                    @if !at.is_empty() { br; small.muted { (at) } }
                                }
                                span.muted { (session.zone.day(&e["period"]["start"])) }
                            }
                        }
                    }
                }
            }
        }
    };
    respond(StatusCode::OK, shell("My record", Some(&session), body))
}

/// `GET /portal/results`: every test, its latest value and its trend over the years.
/// The kind of the records of when each portal account last saw its results.
const RESULTS_SEEN: &str = "portal-results-seen";

/// What waits for the clinician's review under the installation's rules: the reports
/// with an open review task focused on them whose category says so, and their
/// observations (ids).
pub(crate) struct Held {
    pub reports: Vec<String>,
    pub observations: Vec<String>,
}

pub(crate) async fn held_for_review(
    session: &PatientSession,
    release: &crate::Release,
) -> Result<Held, hale_repository::Error> {
    let none = || Held { reports: Vec::new(), observations: Vec::new() };
    if !release.ever_after_review() {
        return Ok(none());
    }
    let p = session.patient.as_str();
    let open = [("patient", p), ("status", "requested,received,accepted,in-progress")];
    let tasks = search(&session.repo, "Task", &open, 500).await?;
    let reports: Vec<String> = tasks
        .iter()
        .filter_map(|t| t["focus"]["reference"].as_str()?.strip_prefix("DiagnosticReport/").map(str::to_string))
        .collect();
    if reports.is_empty() {
        return Ok(none());
    }
    let ids = reports.join(",");
    let found = search(&session.repo, "DiagnosticReport", &[("patient", p), ("_id", ids.as_str())], 500).await?;
    let waiting: Vec<&Value> = found.iter().filter(|r| release.after_review(r)).collect();
    Ok(Held {
        reports: waiting.iter().filter_map(|r| r["id"].as_str().map(str::to_string)).collect(),
        observations: waiting
            .iter()
            .flat_map(|r| r["result"].as_array().cloned().unwrap_or_default())
            .filter_map(|x| x["reference"].as_str()?.strip_prefix("Observation/").map(str::to_string))
            .collect(),
    })
}

/// `GET /portal/results`.
pub(crate) async fn results(
    session: PatientSession,
    axum::extract::State(st): axum::extract::State<Arc<AppState>>,
) -> Response {
    let p = session.patient.as_str();
    let q = [("patient", p), ("category", "laboratory"), ("_sort", "-date")];
    let mut found = match search(&session.repo, "Observation", &q, 2000).await {
        Ok(f) => f,
        Err(e) => return failure(&e),
    };
    // released by rule: after the clinician's review, when the installation says so for
    // the report's category
    let held: Vec<String> = match held_for_review(&session, &st.options.release).await {
        Ok(h) => h.observations,
        Err(e) => return failure(&e),
    };
    let before = found.len();
    found.retain(|o| !o["id"].as_str().is_some_and(|id| held.iter().any(|h| h == id)));
    let waiting = before - found.len();
    let held_now: Vec<&String> =
        held.iter().filter(|h| !found.iter().any(|o| o["id"].as_str() == Some(h.as_str()))).collect();
    // new since this account last looked (by when Hale stored them)
    let seen_key = format!("{}|{}", session.account.id, session.patient);
    let app = st.gate.system("portal");
    let last = app.auth_record(RESULTS_SEEN, &seen_key).await.ok().flatten();
    let now = hale_repository::Instant::now().to_fhir();
    let mark = serde_json::json!({"at": now, "held": held_now});
    if let Err(e) = app.put_auth_record(RESULTS_SEEN, &seen_key, &mark, None, None).await {
        tracing::warn!(error = %e, "when the results were seen could not be kept");
    }
    // new: stored since the last visit, or held for review then and shown now
    let mut new_tests: Vec<String> = Vec::new();
    if let Some(last) = &last {
        let seen = last["at"].as_str().unwrap_or("");
        let was_held: Vec<&str> =
            last["held"].as_array().map(|h| h.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        for o in &found {
            let stored = o["meta"]["lastUpdated"].as_str().unwrap_or("");
            let released = o["id"].as_str().is_some_and(|id| was_held.contains(&id));
            let name = concept(&o["code"]);
            if (stored > seen || released) && !new_tests.contains(&name) {
                new_tests.push(name);
            }
        }
    }
    let groups = crate::trends::by_test(&found);
    let body = html! {
        h1 { "My results" }
        @if !new_tests.is_empty() {
            p.notice role="status" { strong { "New since your last visit: " } (new_tests.join(", ")) }
        }
        @if waiting > 0 {
            p.notice role="status" { (waiting) " new result" @if waiting > 1 { "s are" } @else { " is" } " waiting for your care team to look at " @if waiting > 1 { "them" } @else { "it" } "; " @if waiting > 1 { "they" } @else { "it" } " will show here then." }
        }
        p.hint { "Each test with its latest value, its range and how it changed over the years. A result marked H is above its range, L below. Ask your care team what a result means for you." }
        @if groups.is_empty() {
            section.card { p.empty { "No laboratory result is in your record yet." } }
        } @else {
            @for (i, (_, obs)) in groups.iter().enumerate() { (crate::trends::analyte(&session.zone, i, obs)) }
        }
    };
    respond(StatusCode::OK, shell("My results", Some(&session), body))
}

/// The code of a refill request: a Task asking that its focal MedicationRequest be
/// fulfilled again (HL7's task-code `fulfill`).
pub(crate) const REFILL_CODE: &str = "http://hl7.org/fhir/CodeSystem/task-code|fulfill";

/// A request's state in words.
fn request_status(t: &Value) -> String {
    match t["status"].as_str().unwrap_or("") {
        "requested" | "received" | "accepted" | "in-progress" => "waiting for your care team".into(),
        "completed" => "approved".into(),
        "rejected" => match t["statusReason"]["text"].as_str() {
            Some(r) => format!("declined: {r}"),
            None => "declined".into(),
        },
        "cancelled" => "cancelled".into(),
        other => other.into(),
    }
}

/// `POST /portal/refill`: asks the prescriber to renew one of the patient's active
/// medicines (a Task in the prescriber's inbox). The medicine is read as the patient,
/// so only their own is found; a request already waiting is not made twice.
pub(crate) async fn refill(
    session: PatientSession,
    axum::Form(f): axum::Form<std::collections::HashMap<String, String>>,
) -> Response {
    let token_ok = f.get("csrf").is_some_and(|t| crate::same_secret(t, &session.csrf));
    if !token_ok {
        return plain_page(StatusCode::FORBIDDEN, "The form expired", "Nothing was sent. Open your record again.");
    }
    let gone = || plain_page(StatusCode::NOT_FOUND, "Not found", "That medicine is not in your record.");
    let (Ok(ty), Some(Ok(rid))) = (
        hale_repository::resource_type("MedicationRequest"),
        f.get("medication").map(|m| hale_repository::resource_id(m)),
    ) else {
        return gone();
    };
    let mr: Value = match session.repo.read(&ty, &rid).await {
        Ok(r) => match r.body.as_deref().and_then(|b| serde_json::from_str(b).ok()) {
            Some(v) => v,
            None => return gone(),
        },
        Err(e) if e.category() == hale_fhir::Category::NotFound => return gone(),
        Err(e) => return failure(&e),
    };
    if mr["subject"]["reference"].as_str() != Some(&format!("Patient/{}", session.patient)) || mr["status"] != "active"
    {
        return gone();
    }
    let me = format!("MedicationRequest/{}", rid.as_str());
    let q =
        [("patient", session.patient.as_str()), ("code", REFILL_CODE), ("focus", me.as_str()), ("status", "requested")];
    match search(&session.repo, "Task", &q, 1).await {
        Ok(open) if !open.is_empty() => return Redirect::to("/portal").into_response(),
        Ok(_) => {}
        Err(e) => return failure(&e),
    }
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let t = secs.rem_euclid(86_400);
    let now =
        format!("{}T{:02}:{:02}:{:02}Z", crate::svg::date_of(secs.div_euclid(86_400)), t / 3600, t % 3600 / 60, t % 60);
    let drug = concept(&mr["medicationCodeableConcept"]);
    let mut task = serde_json::json!({
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": "routine",
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill", "display": "Fulfill the focal request"}], "text": "Refill request"},
        "description": format!("Refill request: {drug}"),
        "focus": {"reference": me},
        "for": {"reference": format!("Patient/{}", session.patient)},
        "authoredOn": now,
        "requester": {"reference": session.account.fhir_user.clone().unwrap_or_else(|| format!("Patient/{}", session.patient))},
    });
    if let Some(owner) = mr["requester"]["reference"].as_str() {
        task["owner"] = serde_json::json!({"reference": owner});
        if let Some(d) = mr["requester"]["display"].as_str() {
            task["owner"]["display"] = serde_json::json!(d);
        }
    }
    let Ok(task_ty) = hale_repository::resource_type("Task") else { return gone() };
    match session.repo.create(&task_ty, task, None).await {
        Ok(_) => Redirect::to("/portal").into_response(),
        Err(e) => failure(&e),
    }
}

/// The most resources one download holds (pages of `$everything` read until then).
const MAX_DOWNLOAD: usize = 50_000;

/// `GET /portal/download`: the whole record as a FHIR Bundle (`Patient/$everything`,
/// every page), to keep or to take elsewhere.
pub(crate) async fn download(session: PatientSession) -> Response {
    let Ok(rid) = hale_repository::resource_id(&session.patient) else {
        return plain_page(StatusCode::NOT_FOUND, "No record", "Your record could not be found.");
    };
    let mut entries: Vec<Value> = Vec::new();
    let mut cursor = None;
    loop {
        let q = hale_repository::EverythingQuery { since: None, types: None, count: 1000, cursor, restriction: None };
        let page = match session.repo.everything(&rid, &q).await {
            Ok(p) => p,
            Err(e) => return failure(&e),
        };
        for r in page.entries.iter().chain(&page.included) {
            if let Some(v) = r.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) {
                let url = format!("{}/{}", r.resource_type, r.id);
                entries.push(serde_json::json!({"fullUrl": url, "resource": v}));
            }
        }
        match page.next {
            Some(next) if entries.len() < MAX_DOWNLOAD => cursor = Some(next),
            _ => break,
        }
    }
    let bundle = serde_json::json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": crate::now_instant(),
        "total": entries.len(),
        "entry": entries,
    });
    let mut r = (StatusCode::OK, bundle.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/fhir+json"));
    h.insert(
        axum::http::header::CONTENT_DISPOSITION,
        axum::http::HeaderValue::from_static("attachment; filename=\"my-health-record.json\""),
    );
    h.insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    r
}

/// `GET /portal/choose`: the records the account is linked to (a parent's children,
/// say), each read through a repository held to that record alone.
pub(crate) async fn choose(
    session: PatientSession,
    axum::extract::State(st): axum::extract::State<Arc<AppState>>,
) -> Response {
    let mut records: Vec<(String, String)> = Vec::new();
    for p in &session.account.patients {
        let Ok(scopes) = Scopes::parse(PORTAL_SCOPES, true) else { continue };
        let Some(ctx) = hale_auth::user_context(&session.account, scopes, Some(p.clone()), CLIENT_ID) else { continue };
        let repo = st.gate.repository(ctx);
        let (Ok(ty), Ok(rid)) = (hale_repository::resource_type("Patient"), hale_repository::resource_id(p)) else {
            continue;
        };
        let name = match repo.read(&ty, &rid).await {
            Ok(r) => r.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()).map(|v| person_name(&v)),
            Err(_) => None,
        };
        records.push((p.clone(), name.unwrap_or_else(|| "(a record that cannot be read)".into())));
    }
    let body = html! {
        section.card.narrow aria-labelledby="choose-h" {
            h1 #choose-h { "Whose record" }
            ul.plain {
                @for (id, name) in &records {
                    li {
                        span { (name) @if *id == session.patient { " " span.badge.ok { "open" } } }
                        form.inline method="post" action="/portal/choose" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            input type="hidden" name="patient" value=(id);
                            button.link type="submit" aria-label={ "Open the record of " (name) } { "Open" }
                        }
                    }
                }
            }
        }
    };
    respond(StatusCode::OK, shell("Whose record", Some(&session), body))
}

/// `POST /portal/choose`: opens another of the account's records.
pub(crate) async fn chosen(
    session: PatientSession,
    axum::Form(f): axum::Form<std::collections::HashMap<String, String>>,
) -> Response {
    if !f.get("csrf").is_some_and(|t| crate::same_secret(t, &session.csrf)) {
        return plain_page(StatusCode::FORBIDDEN, "The form expired", "Open the page again.");
    }
    let Some(p) = f.get("patient").filter(|p| session.account.patients.contains(p)) else {
        return plain_page(StatusCode::NOT_FOUND, "Not found", "That record is not linked to your account.");
    };
    let mut r = Redirect::to("/portal").into_response();
    if let Ok(v) = format!("{CHOICE_COOKIE}={p}; Path=/portal; HttpOnly; SameSite=Lax").parse() {
        r.headers_mut().append(axum::http::header::SET_COOKIE, v);
    }
    r
}

/// How an access is named for a patient.
fn purpose(code: &str) -> &'static str {
    match code {
        "TREAT" => "your care",
        "ETREAT" => "emergency access (break-the-glass)",
        "PATRQT" => "you",
        "HOPERAT" => "running the system",
        _ => "other",
    }
}

/// `GET /portal/access`: who has opened the record, newest first.
pub(crate) async fn access(session: PatientSession) -> Response {
    let query = hale_repository::AuditQuery {
        patients: Some(vec![session.patient.clone()]),
        only_these_patients: true,
        limit: 200,
        ..Default::default()
    };
    let rows = match session.repo.search_audit(query).await {
        Ok(r) => r,
        Err(e) => return failure(&e),
    };
    let events: Vec<Value> = rows.iter().filter_map(|(_, b)| serde_json::from_str(b).ok()).collect();
    let body = html! {
        h1 { "Who has seen my record" }
        p.hint { "Every time someone opens or changes your record, Hale records who, when and why. This is the list, newest first." }
        section.card {
            @if events.is_empty() { p.empty { "No one has opened your record yet." } } @else {
                table {
                    thead { tr { th { "When" } th { "Who" } th { "What" } th { "Why" } } }
                    tbody {
                        @for e in &events {
                            @let why = e["purposeOfEvent"][0]["coding"][0]["code"].as_str().unwrap_or("");
                            tr class=(if why == "ETREAT" { "critical" } else { "" }) {
                                td.date { (session.zone.when_zoned(&e["recorded"])) }
                                td { (who(e)) }
                                td { (what(e)) }
                                td { (purpose(why)) }
                            }
                        }
                    }
                }
            }
        }
    };
    respond(StatusCode::OK, shell("Who has seen my record", Some(&session), body))
}

fn who(e: &Value) -> String {
    let agent = &e["agent"][0]["who"];
    let name = agent["identifier"]["value"].as_str().unwrap_or("");
    match agent["identifier"]["system"].as_str() {
        Some("urn:hale:user") => name.to_string(),
        Some("urn:hale:client") => format!("the application {name}"),
        Some(s) if s.contains("system") => "Hale".to_string(),
        _ => agent["display"].as_str().unwrap_or("").trim_start_matches("system:").to_string(),
    }
}

fn what(e: &Value) -> String {
    let sub = e["subtype"][0]["code"].as_str().unwrap_or("");
    let action = match sub {
        "read" | "vread" => "opened",
        "search-type" | "search-system" | "operation:everything" => "looked up",
        "create" => "added",
        "update" | "patch" => "changed",
        "delete" => "removed",
        "break-glass" => "opened in an emergency",
        other => other,
    };
    let thing = e["entity"]
        .as_array()
        .and_then(|es| {
            es.iter().find_map(|x| {
                x["what"]["reference"]
                    .as_str()
                    .filter(|r| !r.starts_with("Patient/"))
                    .map(|r| r.split('/').next().unwrap_or("").to_string())
            })
        })
        .or_else(|| {
            e["entity"].as_array().and_then(|es| {
                es.iter().find_map(|x| x["description"].as_str().map(|d| d.split('?').next().unwrap_or("").to_string()))
            })
        })
        .unwrap_or_else(|| "your record".to_string());
    format!("{action} {}", thing_words(&thing))
}

fn thing_words(t: &str) -> &str {
    match t {
        "Observation" => "results or measurements",
        "Condition" => "health problems",
        "AllergyIntolerance" => "allergies",
        "MedicationRequest" => "medicines",
        "Immunization" => "vaccinations",
        "Encounter" => "visits",
        "Composition" => "visit notes",
        "DiagnosticReport" => "reports",
        "Patient" | "your record" => "your record",
        other => other,
    }
}

/// What a SMART scope string lets an app do, in plain words.
fn scope_words(scope: &str) -> String {
    let mut reads: Vec<String> = Vec::new();
    let mut writes = false;
    let mut offline = false;
    for s in scope.split_whitespace() {
        if s == "offline_access" {
            offline = true;
        }
        let Some((ctx_ty, perms)) = s.split_once('.') else { continue };
        let Some((_, ty)) = ctx_ty.split_once('/') else { continue };
        let perms = perms.split('?').next().unwrap_or(perms);
        if perms == "read" || perms.contains('r') || perms.contains('s') {
            reads.push(if ty == "*" { "everything in your record".into() } else { thing(ty) });
        }
        if perms == "write" || perms.contains('c') || perms.contains('u') || perms.contains('d') {
            writes = true;
        }
    }
    reads.dedup();
    let mut out = if reads.iter().any(|r| r == "everything in your record") {
        "See everything in your record".to_string()
    } else if reads.is_empty() {
        "See nothing in your record".to_string()
    } else {
        format!("See your {}", reads.join(", "))
    };
    if writes {
        out.push_str(", and add to it");
    }
    if offline {
        out.push_str(", even when you are not signed in");
    }
    out
}

fn thing(ty: &str) -> String {
    match ty {
        "Observation" => "results and measurements".into(),
        "Condition" => "health problems".into(),
        "MedicationRequest" | "MedicationStatement" => "medicines".into(),
        "AllergyIntolerance" => "allergies".into(),
        "Immunization" => "vaccinations".into(),
        "Patient" => "name and details".into(),
        "Encounter" => "visits".into(),
        "DocumentReference" | "DiagnosticReport" => "documents and reports".into(),
        other => other.to_string(),
    }
}

/// `GET /portal/apps`: the apps the patient let act for them, and a way to end each.
pub(crate) async fn apps(
    session: PatientSession,
    axum::extract::State(st): axum::extract::State<Arc<AppState>>,
) -> Response {
    apps_page(&session, &st, None).await
}

async fn apps_page(session: &PatientSession, st: &AppState, done: Option<&str>) -> Response {
    let list = match hale_auth::connected_apps(&st.auth, &session.account.id).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "the connected apps could not be read");
            return notice(StatusCode::SERVICE_UNAVAILABLE, "Your apps could not be read", "Try again in a moment.");
        }
    };
    let body = html! {
        section.card aria-labelledby="apps-h" {
            h1 #apps-h { "Connected apps" }
            p.muted { "Apps you allowed to use your record after you signed in to them. Disconnect one and it can no longer read or change anything; you can allow it again later." }
            @if let Some(d) = done { p.notice role="status" { (d) } }
            @if list.is_empty() { p.empty { "No app is connected to your record." } } @else {
                ul.plain {
                    @for a in &list {
                        li {
                            span {
                                strong { (a.client_name) }
                                br;
                                (scope_words(&a.scope))
                                @if let Some(t) = a.issued { br; small.muted { "last used " (session.zone.day_of_millis(t)) } }
                            }
                            form.inline method="post" action="/portal/apps/disconnect" {
                                input type="hidden" name="csrf" value=(session.csrf);
                                input type="hidden" name="grant" value=(a.family);
                                button.secondary type="submit" { "Disconnect" }
                            }
                        }
                    }
                }
            }
        }
    };
    page_for(session, "Connected apps", body)
}

/// `POST /portal/apps/disconnect`.
pub(crate) async fn disconnect(
    session: PatientSession,
    axum::extract::State(st): axum::extract::State<Arc<AppState>>,
    axum::Form(f): axum::Form<std::collections::HashMap<String, String>>,
) -> Response {
    if !f.get("csrf").is_some_and(|t| crate::same_secret(t, &session.csrf)) {
        return notice(StatusCode::FORBIDDEN, "The form expired", "Nothing was changed. Open the page again.");
    }
    let grant = f.get("grant").map(String::as_str).unwrap_or("");
    match hale_auth::disconnect_app(&st.auth, &session.account, grant).await {
        Ok(true) => {
            let mut r = apps_page(&session, &st, Some("The app is disconnected.")).await;
            *r.status_mut() = StatusCode::OK;
            r
        }
        Ok(false) => notice(StatusCode::NOT_FOUND, "Not found", "That app is not connected to your record."),
        Err(e) => {
            tracing::warn!(error = %e, "an app could not be disconnected");
            notice(StatusCode::SERVICE_UNAVAILABLE, "Nothing was changed", "Try again in a moment.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_read_plainly() {
        assert_eq!(plain("Hypertension (disorder)"), "Hypertension");
        assert_eq!(plain("Low back pain (finding)"), "Low back pain");
        assert_eq!(plain("Asthma"), "Asthma");
    }

    #[test]
    fn scopes_read_plainly() {
        assert_eq!(
            super::scope_words("patient/*.rs offline_access"),
            "See everything in your record, even when you are not signed in"
        );
        assert_eq!(
            super::scope_words("patient/Observation.rs patient/Condition.read patient/Observation.c launch/patient"),
            "See your results and measurements, health problems, and add to it"
        );
        assert_eq!(super::scope_words("openid fhirUser"), "See nothing in your record");
    }
}
