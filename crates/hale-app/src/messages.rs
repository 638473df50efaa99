//! Secure messages between a patient and their care team, as FHIR Communications: a
//! thread is its first message and the replies that answer it (`inResponseTo`), each
//! with the patient as subject. A patient writes from the portal to their general
//! practitioner (else their managing organization); the care team reads and answers
//! from the clinician application's inbox. A message the care team opened carries the
//! time it was `received`; what a patient has read is kept with their account.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::chart::{Tab, allergies, header, open_patient};
use crate::fhir::reference_label;
use crate::portal::PatientSession;
use crate::{AppState, Session, now_instant, same_secret as same, search};

type Fields = HashMap<String, String>;

/// The longest message.
const MAX_TEXT: usize = 4000;
/// The longest subject.
const MAX_TOPIC: usize = 150;

/// The largest file a message may carry (within the installation's upload limit).
const MAX_ATTACHMENT: usize = 10 * 1024 * 1024;

/// A message form as sent: its fields and the file it carries (name and bytes), from
/// `application/x-www-form-urlencoded` or `multipart/form-data`; `refused` says why a
/// multipart body could not be read (too large, broken).
pub(crate) struct MessageForm {
    fields: Fields,
    file: Option<(String, Vec<u8>)>,
    refused: Option<String>,
}

fn attachment_limit(st: &AppState) -> usize {
    MAX_ATTACHMENT.min(st.options.max_upload_bytes)
}

impl FromRequest<Arc<AppState>> for MessageForm {
    type Rejection = Response;

    async fn from_request(req: Request, st: &Arc<AppState>) -> Result<Self, Response> {
        let multipart = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
        if !multipart {
            let Form(fields) = Form::<Fields>::from_request(req, st).await.map_err(IntoResponse::into_response)?;
            return Ok(MessageForm { fields, file: None, refused: None });
        }
        let mp = Multipart::from_request(req, st).await.map_err(IntoResponse::into_response)?;
        let f = crate::documents::read_multipart(mp, attachment_limit(st), &["csrf", "topic", "text"]).await;
        Ok(MessageForm { fields: f.fields, file: f.file, refused: f.refused })
    }
}

/// A message's text, checked: `Err` is what to tell the writer. A message carrying a
/// file may have no text.
fn checked_text(f: &Fields, with_file: bool) -> Result<String, String> {
    let text = f.get("text").map(|t| t.trim().to_string()).unwrap_or_default();
    if text.is_empty() && !with_file {
        return Err("Write the message.".into());
    }
    if text.chars().count() > MAX_TEXT {
        return Err(format!("A message is at most {MAX_TEXT} characters."));
    }
    Ok(text)
}

/// A message as a Communication.
fn communication(
    patient: &str,
    sender: &str,
    recipient: &str,
    topic: &str,
    text: &str,
    reply_to: Option<&str>,
) -> Value {
    let mut c = json!({
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "notification", "display": "Notification"}], "text": "Secure message"}],
        "subject": {"reference": format!("Patient/{patient}")},
        "sender": {"reference": sender},
        "recipient": [{"reference": recipient}],
        "sent": now_instant(),
        "topic": {"text": topic},
    });
    if !text.is_empty() {
        c["payload"] = json!([{"contentString": text}]);
    }
    if let Some(r) = reply_to {
        c["inResponseTo"] = json!([{"reference": format!("Communication/{r}")}]);
    }
    c
}

/// The threads of a patient's messages: (root id, its messages oldest first).
fn threads(all: &[Value]) -> Vec<(String, Vec<&Value>)> {
    let mut out: Vec<(String, Vec<&Value>)> = Vec::new();
    let mut sorted: Vec<&Value> = all.iter().collect();
    sorted.sort_by(|a, b| a["sent"].as_str().unwrap_or("").cmp(b["sent"].as_str().unwrap_or("")));
    for m in sorted {
        let id = m["id"].as_str().unwrap_or("").to_string();
        let root = m["inResponseTo"][0]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Communication/"))
            .map(str::to_string);
        let root = root.unwrap_or(id);
        match out.iter_mut().find(|t| t.0 == root) {
            Some(t) => t.1.push(m),
            None => out.push((root, vec![m])),
        }
    }
    // newest activity first
    out.sort_by(|a, b| {
        let last = |t: &(String, Vec<&Value>)| t.1.last().and_then(|m| m["sent"].as_str()).unwrap_or("").to_string();
        last(b).cmp(&last(a))
    });
    out
}

/// A conversation, oldest first; a message's files link to `attachments` followed by
/// the message's id and the file's index.
fn thread_view(zone: &crate::Zone, messages: &[&Value], attachments: &str) -> Markup {
    html! {
        ol.thread {
            @for m in messages {
                li.message {
                    p.meta { strong { (reference_label(&m["sender"])) } " · " (zone.when_zoned(&m["sent"])) }
                    @if let Some(t) = m["payload"].as_array().and_then(|p| p.iter().find_map(|x| x["contentString"].as_str())) {
                        div.note-text { (t) }
                    }
                    @let files = crate::documents::attachments(m);
                    @if !files.is_empty() {
                        ul.files {
                            @for (n, a) in files.iter().enumerate() {
                                @let href = format!("{attachments}{}/{n}", m["id"].as_str().unwrap_or(""));
                                @let name = a["title"].as_str().unwrap_or("attachment");
                                li {
                                    @if crate::documents::shown_image(&crate::documents::media(a)) {
                                        a href=(href) target="_blank" rel="noopener noreferrer" { img.thumb src=(href) alt=(name); }
                                        br;
                                    }
                                    a href={ (href) @if !crate::documents::shown_image(&crate::documents::media(a)) && crate::documents::media(a) != "application/pdf" { "?download=1" } } target="_blank" rel="noopener noreferrer" { (name) }
                                    " " small.muted { (crate::documents::kind_words(&crate::documents::media(a))) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Why a message was not sent.
enum NotSent {
    /// What to tell the writer (the file is of a kind not kept).
    Refused(String),
    Failed(hale_repository::Error),
}

/// Stores message `c` about `patient` through `repo`, with `file` (a Binary held to the
/// patient, named by the message's attachment) in the same transaction; the message's
/// id.
async fn store(
    repo: &hale_repository::Repository,
    patient: &str,
    mut c: Value,
    file: Option<&(String, Vec<u8>)>,
) -> Result<String, NotSent> {
    use base64::Engine;
    let Some((name, bytes)) = file else {
        let ty = hale_repository::resource_type("Communication").map_err(NotSent::Failed)?;
        return match repo.create(&ty, c, None).await {
            Ok(hale_repository::CreateOutcome::Created(s) | hale_repository::CreateOutcome::Existing(s)) => {
                Ok(s.id.to_string())
            }
            Err(e) => Err(NotSent::Failed(e)),
        };
    };
    let Some(media) = crate::documents::sniff(bytes) else {
        return Err(NotSent::Refused(
            "Nothing was sent: the file is not a PDF, a picture (PNG, JPEG, GIF, WebP) or plain text.".into(),
        ));
    };
    let binary_url = "urn:uuid:00000000-0000-4000-8000-300000000000";
    let title = if name.trim().is_empty() { "attachment".to_string() } else { name.trim().to_string() };
    let attachment =
        json!({"contentAttachment": {"contentType": media, "url": binary_url, "size": bytes.len(), "title": title}});
    match c["payload"].as_array_mut() {
        Some(p) => p.push(attachment),
        None => c["payload"] = json!([attachment]),
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": binary_url, "resource": {
            "resourceType": "Binary",
            "contentType": media,
            "securityContext": {"reference": format!("Patient/{patient}")},
            "data": base64::engine::general_purpose::STANDARD.encode(bytes),
        }, "request": {"method": "POST", "url": "Binary"}},
        {"resource": c, "request": {"method": "POST", "url": "Communication"}},
    ]});
    let (_, entries) = repo.process_bundle(bundle).await.map_err(NotSent::Failed)?;
    let mut out = None;
    for e in entries {
        let e = e.map_err(NotSent::Failed)?;
        if let Some(l) = e.location.as_deref().and_then(|l| l.strip_prefix("Communication/")) {
            out = l.split('/').next().map(str::to_string);
        }
    }
    out.ok_or_else(|| NotSent::Failed(hale_repository::Error::NotFound("Communication".into())))
}

/// The bytes of file `n` of message `msg` in conversation `thread` of `all` (the
/// patient's messages), read through `repo`.
async fn message_file(
    repo: &hale_repository::Repository,
    patient: &str,
    all: &[Value],
    thread: &str,
    msg: &str,
    n: &str,
) -> Result<Option<(Vec<u8>, String, String)>, hale_repository::Error> {
    let ts = threads(all);
    let Some(m) = ts.iter().find(|t| t.0 == thread).and_then(|t| t.1.iter().find(|m| m["id"] == msg)) else {
        return Ok(None);
    };
    crate::documents::attachment_content(repo, patient, m, n).await
}

// ---- the portal ----

/// The `auth_record` kind of what a patient has read: per account, thread -> the
/// `sent` of the last message seen.
const READ_KIND: &str = "portal-read";

async fn seen(st: &AppState, account: &str) -> HashMap<String, String> {
    match st.gate.system("portal").auth_record(READ_KIND, account).await {
        Ok(Some(v)) => v
            .as_object()
            .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default(),
        _ => HashMap::new(),
    }
}

async fn mark_seen(st: &AppState, account: &str, thread: &str, sent: &str) {
    let mut all = seen(st, account).await;
    all.insert(thread.to_string(), sent.to_string());
    let body = json!(all);
    if let Err(e) = st.gate.system("portal").put_auth_record(READ_KIND, account, &body, None, None).await {
        tracing::warn!(error = %e, "what a patient read could not be kept");
    }
}

/// Whether a thread has a message from the care team newer than what the patient saw.
fn unread_for_patient(thread: &(String, Vec<&Value>), seen: &HashMap<String, String>, me: &str) -> bool {
    let last_seen = seen.get(&thread.0).map(String::as_str).unwrap_or("");
    thread
        .1
        .iter()
        .any(|m| m["sender"]["reference"].as_str() != Some(me) && m["sent"].as_str().unwrap_or("") > last_seen)
}

/// The patient's messages, all of them.
async fn patient_messages(session: &PatientSession) -> Result<Vec<Value>, hale_repository::Error> {
    search(&session.repo, "Communication", &[("patient", session.patient.as_str()), ("_sort", "-sent")], 500).await
}

fn portal_failure(e: &hale_repository::Error) -> Response {
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

fn me(session: &PatientSession) -> String {
    session.account.fhir_user.clone().unwrap_or_else(|| format!("Patient/{}", session.patient))
}

/// `GET /portal/messages`.
pub(crate) async fn portal_list(session: PatientSession, State(st): State<Arc<AppState>>) -> Response {
    portal_list_page(&session, &st, &Fields::new(), None).await
}

async fn portal_list_page(session: &PatientSession, st: &AppState, typed: &Fields, error: Option<&str>) -> Response {
    let all = match patient_messages(session).await {
        Ok(a) => a,
        Err(e) => return portal_failure(&e),
    };
    let seen = seen(st, &session.account.id).await;
    let me = me(session);
    let ts = threads(&all);
    let body = html! {
        h1 { "Messages" }
        section.card aria-labelledby="m-list" {
            h2 #m-list { "Conversations" }
            @if ts.is_empty() { p.empty { "No message yet." } } @else {
                ul.plain {
                    @for t in &ts {
                        li {
                            span {
                                a href={ "/portal/messages/" (t.0) } { (t.1[0]["topic"]["text"].as_str().unwrap_or("(no subject)")) }
                                @if unread_for_patient(t, &seen, &me) { " " span.badge { "new" } }
                            }
                            span.muted { (session.zone.day(&t.1.last().map(|m| m["sent"].clone()).unwrap_or(Value::Null))) }
                        }
                    }
                }
            }
        }
        section.card.form-card aria-labelledby="m-new" {
            h2 #m-new { "Write to your care team" }
            p.hint { "For questions that can wait a few days. In an emergency, call your local emergency number." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/portal/messages" enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(session.csrf);
                div.field {
                    label for="topic" { "Subject" }
                    input #topic name="topic" type="text" value=(typed.get("topic").cloned().unwrap_or_default()) maxlength=(MAX_TOPIC) autocomplete="off";
                }
                div.field {
                    label for="text" { "Message" }
                    textarea #text name="text" rows="6" { (typed.get("text").cloned().unwrap_or_default()) }
                }
                (file_field())
                div.actions { button.primary type="submit" { "Send" } }
            }
        }
    };
    crate::portal::page_for(session, "Messages", body)
}

/// Who a patient's message goes to: their general practitioner, else the organization
/// that manages their record.
async fn care_team(session: &PatientSession) -> Result<Option<String>, hale_repository::Error> {
    let ty = hale_repository::resource_type("Patient")?;
    let rid = hale_repository::resource_id(&session.patient)?;
    let p: Value = session
        .repo
        .read(&ty, &rid)
        .await?
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Ok(p["generalPractitioner"][0]["reference"]
        .as_str()
        .or_else(|| p["managingOrganization"]["reference"].as_str())
        .map(str::to_string))
}

fn csrf_ok(token: &str, f: &Fields) -> bool {
    f.get("csrf").is_some_and(|t| same(t, token))
}

/// `POST /portal/messages`: a new conversation.
pub(crate) async fn portal_send(
    session: PatientSession,
    State(st): State<Arc<AppState>>,
    form: MessageForm,
) -> Response {
    let f = &form.fields;
    if !csrf_ok(&session.csrf, f) {
        return crate::portal::notice(
            StatusCode::FORBIDDEN,
            "The form expired",
            "Nothing was sent. Open the page again.",
        );
    }
    if let Some(why) = &form.refused {
        return bad(&session, &st, f, &format!("Nothing was sent: {why}")).await;
    }
    let topic = f.get("topic").map(|t| t.trim().to_string()).unwrap_or_default();
    let text = match checked_text(f, form.file.is_some()) {
        Ok(t) => t,
        Err(e) => return bad(&session, &st, f, &e).await,
    };
    if topic.is_empty() || topic.chars().count() > MAX_TOPIC {
        return bad(&session, &st, f, "Give the message a subject (at most 150 characters).").await;
    }
    let recipient = match care_team(&session).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return bad(&session, &st, f, "Your record names no care team to write to yet. Please call your practice.")
                .await;
        }
        Err(e) => return portal_failure(&e),
    };
    let mut c = communication(&session.patient, &me(&session), &recipient, &topic, &text, None);
    c["sender"]["display"] = json!(session.account.display_name);
    match store(&session.repo, &session.patient, c, form.file.as_ref()).await {
        Ok(id) => Redirect::to(&format!("/portal/messages/{id}")).into_response(),
        Err(NotSent::Refused(why)) => bad(&session, &st, f, &why).await,
        Err(NotSent::Failed(e)) => portal_failure(&e),
    }
}

/// The file input of a message form.
fn file_field() -> Markup {
    html! {
        div.field {
            label for="file" { "Attach a file " small { "(optional: a PDF, a picture or a text file, up to 10 MB)" } }
            input #file name="file" type="file" accept=".pdf,.png,.jpg,.jpeg,.gif,.webp,.txt,application/pdf,image/png,image/jpeg,image/gif,image/webp,text/plain";
        }
    }
}

async fn bad(session: &PatientSession, st: &AppState, f: &Fields, message: &str) -> Response {
    let mut r = portal_list_page(session, st, f, Some(message)).await;
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

/// `GET /portal/messages/{thread}`.
pub(crate) async fn portal_thread(
    session: PatientSession,
    State(st): State<Arc<AppState>>,
    Path(thread): Path<String>,
) -> Response {
    portal_thread_page(&session, &st, &thread, None).await
}

async fn portal_thread_page(session: &PatientSession, st: &AppState, thread: &str, error: Option<&str>) -> Response {
    let all = match patient_messages(session).await {
        Ok(a) => a,
        Err(e) => return portal_failure(&e),
    };
    let ts = threads(&all);
    let Some(t) = ts.iter().find(|t| t.0 == thread) else {
        return crate::portal::notice(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such conversation in your record.",
        );
    };
    if let Some(last) = t.1.last().and_then(|m| m["sent"].as_str()) {
        mark_seen(st, &session.account.id, thread, last).await;
    }
    let body = html! {
        p { a href="/portal/messages" { "All messages" } }
        section.card aria-labelledby="t-h" {
            h1 #t-h { (t.1[0]["topic"]["text"].as_str().unwrap_or("(no subject)")) }
            (thread_view(&session.zone, &t.1, &format!("/portal/messages/{thread}/attachment/")))
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action={ "/portal/messages/" (thread) } enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(session.csrf);
                div.field { label for="text" { "Reply" } textarea #text name="text" rows="4" {} }
                (file_field())
                div.actions { button.primary type="submit" { "Send the reply" } }
            }
        }
    };
    crate::portal::page_for(session, "Messages", body)
}

/// The conversation again with why the reply was not sent (400).
async fn portal_refused(session: &PatientSession, st: &AppState, thread: &str, why: &str) -> Response {
    let mut r = portal_thread_page(session, st, thread, Some(why)).await;
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

/// `POST /portal/messages/{thread}`: a reply.
pub(crate) async fn portal_reply(
    session: PatientSession,
    State(st): State<Arc<AppState>>,
    Path(thread): Path<String>,
    form: MessageForm,
) -> Response {
    let f = &form.fields;
    if !csrf_ok(&session.csrf, f) {
        return crate::portal::notice(
            StatusCode::FORBIDDEN,
            "The form expired",
            "Nothing was sent. Open the page again.",
        );
    }
    let all = match patient_messages(&session).await {
        Ok(a) => a,
        Err(e) => return portal_failure(&e),
    };
    let ts = threads(&all);
    let Some(t) = ts.iter().find(|t| t.0 == thread) else {
        return crate::portal::notice(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such conversation in your record.",
        );
    };
    if let Some(why) = &form.refused {
        return portal_refused(&session, &st, &thread, &format!("Nothing was sent: {why}")).await;
    }
    let text = match checked_text(f, form.file.is_some()) {
        Ok(t) => t,
        Err(e) => return portal_refused(&session, &st, &thread, &e).await,
    };
    let me = me(&session);
    // to whoever on the care team wrote last, else to whom the thread began with
    let recipient =
        t.1.iter()
            .rev()
            .find_map(|m| m["sender"]["reference"].as_str().filter(|s| *s != me))
            .or_else(|| t.1[0]["recipient"][0]["reference"].as_str())
            .unwrap_or("")
            .to_string();
    let topic = t.1[0]["topic"]["text"].as_str().unwrap_or("").to_string();
    let mut c = communication(&session.patient, &me, &recipient, &topic, &text, Some(&thread));
    c["sender"]["display"] = json!(session.account.display_name);
    match store(&session.repo, &session.patient, c, form.file.as_ref()).await {
        Ok(_) => Redirect::to(&format!("/portal/messages/{thread}")).into_response(),
        Err(NotSent::Refused(why)) => portal_refused(&session, &st, &thread, &why).await,
        Err(NotSent::Failed(e)) => portal_failure(&e),
    }
}

/// `GET /portal/messages/{thread}/attachment/{msg}/{n}`: a file of a message.
pub(crate) async fn portal_attachment(
    session: PatientSession,
    Path((thread, msg, n)): Path<(String, String, String)>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let all = match patient_messages(&session).await {
        Ok(a) => a,
        Err(e) => return portal_failure(&e),
    };
    match message_file(&session.repo, &session.patient, &all, &thread, &msg, &n).await {
        Ok(Some((bytes, ct, name))) => {
            crate::documents::content_response(bytes, &ct, &name, q.contains_key("download"))
        }
        Ok(None) => crate::portal::notice(StatusCode::NOT_FOUND, "Not found", "That is not in your record."),
        Err(e) => portal_failure(&e),
    }
}

/// The number of conversations with something new for the patient.
pub(crate) async fn portal_unread(session: &PatientSession, st: &AppState) -> usize {
    let Ok(all) = patient_messages(session).await else { return 0 };
    let seen = seen(st, &session.account.id).await;
    let me = me(session);
    threads(&all).iter().filter(|t| unread_for_patient(t, &seen, &me)).count()
}

// ---- the clinician application ----

/// Messages to the user (their Practitioner, or their organization) not yet opened.
pub(crate) async fn unread_for_staff(session: &Session) -> Result<Vec<Value>, hale_repository::Error> {
    let mut out = Vec::new();
    let mut to: Vec<String> = Vec::new();
    if let Some(p) = session.account.fhir_user.as_deref().filter(|u| u.starts_with("Practitioner/")) {
        to.push(p.to_string());
    }
    if let Some(o) = &session.account.organization {
        to.push(format!("Organization/{o}"));
    }
    for r in to {
        let q = [("recipient", r.as_str()), ("received:missing", "true"), ("_sort", "-sent")];
        out.extend(search(&session.repo, "Communication", &q, 200).await?);
    }
    Ok(out)
}

/// `GET /app/patient/{id}/messages/{thread}`: a conversation with the patient; the
/// patient's messages to the user are marked received (opened).
pub(crate) async fn staff_thread(session: Session, Path((id, thread)): Path<(String, String)>) -> Response {
    staff_thread_page(&session, &id, &thread, None).await
}

async fn staff_thread_page(session: &Session, id: &str, thread: &str, error: Option<&str>) -> Response {
    let patient = match open_patient(session, id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let all_allergies = match allergies(session, id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let all = match search(&session.repo, "Communication", &[("patient", id), ("_sort", "-sent")], 500).await {
        Ok(a) => a,
        Err(e) => return crate::failure(session, &e),
    };
    let ts = threads(&all);
    let Some(t) = ts.iter().find(|t| t.0 == thread) else {
        return crate::layout::problem(
            StatusCode::NOT_FOUND,
            Some(session),
            "Not found",
            "There is no such conversation for this patient.",
        );
    };
    // opened: the time it was received, on each message not yet marked
    let now = now_instant();
    for m in t.1.iter().filter(|m| {
        m.get("received").is_none()
            && m["sender"]["reference"]
                .as_str()
                .is_some_and(|s| s.starts_with("Patient/") || s.starts_with("RelatedPerson/"))
    }) {
        let (Ok(ty), Some(Ok(rid))) =
            (hale_repository::resource_type("Communication"), m["id"].as_str().map(hale_repository::resource_id))
        else {
            continue;
        };
        let version = m["meta"]["versionId"].as_str().and_then(|v| hale_repository::version_id(v).ok());
        let mut opened = (*m).clone();
        opened["received"] = json!(now);
        if let Err(e) = session.repo.update(&ty, &rid, opened, version).await {
            tracing::warn!(error = %e, "a message could not be marked received");
        }
    }
    let body = html! {
        (header(session, &patient, &all_allergies, Tab::Summary))
        section.card aria-labelledby="t-h" {
            h1 #t-h { (t.1[0]["topic"]["text"].as_str().unwrap_or("(no subject)")) }
            (thread_view(&session.zone, &t.1, &format!("/app/patient/{id}/messages/{thread}/attachment/")))
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action={ "/app/patient/" (id) "/messages/" (thread) } enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(session.csrf);
                div.field { label for="text" { "Reply to the patient" } textarea #text name="text" rows="4" {} }
                (file_field())
                div.actions { button.primary type="submit" { "Send the reply" } a href="/app/inbox" { "Back to the inbox" } }
            }
        }
    };
    crate::layout::respond(StatusCode::OK, crate::layout::page("Message", Some(session), body))
}

/// The conversation again with why the reply was not sent (400).
async fn staff_refused(session: &Session, id: &str, thread: &str, why: &str) -> Response {
    let mut r = staff_thread_page(session, id, thread, Some(why)).await;
    *r.status_mut() = StatusCode::BAD_REQUEST;
    r
}

/// `POST /app/patient/{id}/messages/{thread}`: the care team's reply.
pub(crate) async fn staff_reply(
    session: Session,
    Path((id, thread)): Path<(String, String)>,
    form: MessageForm,
) -> Response {
    let f = &form.fields;
    if !csrf_ok(&session.csrf, f) {
        return crate::layout::problem(
            StatusCode::FORBIDDEN,
            Some(&session),
            "The form expired",
            "Nothing was sent. Open the page again.",
        );
    }
    if let Err(r) = open_patient(&session, &id).await {
        return r;
    }
    if let Some(why) = &form.refused {
        return staff_refused(&session, &id, &thread, &format!("Nothing was sent: {why}")).await;
    }
    let text = match checked_text(f, form.file.is_some()) {
        Ok(t) => t,
        Err(e) => return staff_refused(&session, &id, &thread, &e).await,
    };
    let all = match search(&session.repo, "Communication", &[("patient", id.as_str())], 500).await {
        Ok(a) => a,
        Err(e) => return crate::failure(&session, &e),
    };
    let ts = threads(&all);
    let Some(t) = ts.iter().find(|t| t.0 == thread) else {
        return crate::layout::problem(
            StatusCode::NOT_FOUND,
            Some(&session),
            "Not found",
            "There is no such conversation for this patient.",
        );
    };
    let sender = session
        .account
        .fhir_user
        .clone()
        .or_else(|| session.account.organization.as_ref().map(|o| format!("Organization/{o}")))
        .unwrap_or_default();
    let topic = t.1[0]["topic"]["text"].as_str().unwrap_or("").to_string();
    let mut c = communication(&id, &sender, &format!("Patient/{id}"), &topic, &text, Some(&thread));
    c["sender"]["display"] = json!(session.account.display_name);
    match store(&session.repo, &id, c, form.file.as_ref()).await {
        Ok(_) => Redirect::to("/app/inbox").into_response(),
        Err(NotSent::Refused(why)) => staff_refused(&session, &id, &thread, &why).await,
        Err(NotSent::Failed(e)) => crate::failure(&session, &e),
    }
}

/// `GET /app/patient/{id}/messages/{thread}/attachment/{msg}/{n}`: a file of a message.
pub(crate) async fn staff_attachment(
    session: Session,
    Path((id, thread, msg, n)): Path<(String, String, String, String)>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = open_patient(&session, &id).await {
        return r;
    }
    let all = match search(&session.repo, "Communication", &[("patient", id.as_str())], 500).await {
        Ok(a) => a,
        Err(e) => return crate::failure(&session, &e),
    };
    match message_file(&session.repo, &id, &all, &thread, &msg, &n).await {
        Ok(Some((bytes, ct, name))) => {
            crate::documents::content_response(bytes, &ct, &name, q.contains_key("download"))
        }
        Ok(None) => {
            crate::layout::problem(StatusCode::NOT_FOUND, Some(&session), "Not found", "There is no such file.")
        }
        Err(e) => crate::failure(&session, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_join_the_thread_they_answer() {
        let m = |id: &str, sent: &str, reply: Option<&str>| {
            let mut c = communication("p", "Patient/p", "Practitioner/x", "Cough", "text", reply);
            c["id"] = json!(id);
            c["sent"] = json!(sent);
            c
        };
        let all = vec![m("b", "2026-01-02", Some("a")), m("a", "2026-01-01", None), m("c", "2026-01-03", None)];
        let t = threads(&all);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].0, "c", "newest activity first");
        assert_eq!(t[1].1.iter().map(|m| m["id"].as_str().unwrap()).collect::<Vec<_>>(), ["a", "b"]);
        let issues = hale_fhir::validate::validate_resource(&all[0]);
        assert!(!issues.iter().any(hale_fhir::Issue::is_error), "{issues:?}");
    }
}
