//! The chart's documents and reports: `GET /app/patient/{id}/documents` lists the
//! patient's documents (DocumentReference: visit notes, letters, scanned papers) and
//! their reports other than laboratory panels (DiagnosticReport: imaging and the
//! like); `GET .../document/{type}/{rid}` shows one with its attachments (plain text
//! in the page, images shown, PDFs opened or downloaded); `GET
//! .../document/{type}/{rid}/attachment/{n}` answers attachment `n` itself, from its
//! inline data or the Binary its `url` names (`Binary/[id]`, R4 datatypes,
//! Attachment); `GET`/`POST .../documents/new` adds a document from a file (a Binary
//! governed by the patient, and the DocumentReference pointing to it, in one
//! transaction). Every read goes through the session's repository.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::chart::{Tab, allergies, header, open_patient};
use crate::fhir::{concept, day, reference_label};
use crate::layout::{page, problem, respond};
use crate::portal::PatientSession;
use crate::{AppState, Session, failure, now_instant, same_secret, search};

/// The most documents and reports a list reads.
const MAX_LISTED: usize = 300;

/// The longest plain text shown within a page; longer text is downloaded.
const MAX_SHOWN_TEXT: usize = 256 * 1024;

/// The kinds of document a clinician may add: LOINC document type and its name.
pub(crate) const KINDS: &[(&str, &str)] = &[
    ("34133-9", "Summary of episode note"),
    ("11488-4", "Consult note"),
    ("57133-1", "Referral note"),
    ("18842-5", "Discharge summary"),
    ("18748-4", "Diagnostic imaging study"),
    ("11502-2", "Laboratory report"),
    ("11506-3", "Progress note"),
    ("64297-5", "Death certificate"),
    ("59284-0", "Consent document"),
    ("51851-4", "Administrative note"),
];

/// What a list row or a document page needs of a resource.
fn title(r: &Value) -> String {
    if r["resourceType"] == "Composition" {
        return r["title"].as_str().map(str::to_string).unwrap_or_else(|| concept(&r["type"]));
    }
    if r["resourceType"] == "DocumentReference" {
        if let Some(d) = r["description"].as_str().filter(|d| !d.trim().is_empty()) {
            return d.to_string();
        }
        let t = concept(&r["type"]);
        return if t.is_empty() { "Document".into() } else { t };
    }
    let t = concept(&r["code"]);
    if t.is_empty() { "Report".into() } else { t }
}

fn date_of(zone: &crate::Zone, r: &Value) -> String {
    let v = if matches!(r["resourceType"].as_str(), Some("DocumentReference" | "Composition")) {
        &r["date"]
    } else if r.get("effectiveDateTime").is_some() {
        &r["effectiveDateTime"]
    } else if r.get("effectivePeriod").is_some() {
        &r["effectivePeriod"]["start"]
    } else {
        &r["issued"]
    };
    zone.day(v)
}

fn authors(r: &Value) -> String {
    let field = if matches!(r["resourceType"].as_str(), Some("DocumentReference" | "Composition")) {
        "author"
    } else {
        "performer"
    };
    r[field].as_array().map(|a| a.iter().map(reference_label).collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

/// A resource's attachments: a DocumentReference's contents, a report's presented
/// forms, a message's files.
pub(crate) fn attachments(r: &Value) -> Vec<&Value> {
    match r["resourceType"].as_str() {
        Some("DocumentReference") => {
            r["content"].as_array().map(|c| c.iter().map(|c| &c["attachment"]).collect()).unwrap_or_default()
        }
        Some("Communication") => r["payload"]
            .as_array()
            .map(|p| {
                p.iter().filter(|x| x.get("contentAttachment").is_some()).map(|x| &x["contentAttachment"]).collect()
            })
            .unwrap_or_default(),
        _ => r["presentedForm"].as_array().map(|f| f.iter().collect()).unwrap_or_default(),
    }
}

fn is_laboratory(r: &Value) -> bool {
    r["category"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| {
            c["coding"].as_array().is_some_and(|cd| {
                cd.iter().any(|x| matches!(x["code"].as_str(), Some("LAB" | "laboratory" | "26436-6")))
            })
        })
    })
}

/// The media type of an attachment, lower case and without parameters.
pub(crate) fn media(a: &Value) -> String {
    a["contentType"].as_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// What a person calls a media type.
pub(crate) fn kind_words(m: &str) -> &'static str {
    match m {
        "application/pdf" => "PDF",
        "text/plain" => "text",
        m if m.starts_with("image/") => "image",
        m if m.starts_with("text/") => "text",
        _ => "file",
    }
}

/// The id of the Binary an attachment's `url` names (`Binary/[id]`, relative or at
/// the end of an absolute URL).
fn binary_id(a: &Value) -> Option<&str> {
    let url = a["url"].as_str()?;
    let rest = url.strip_prefix("Binary/").or_else(|| url.rsplit_once("/Binary/").map(|(_, id)| id))?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// An image a browser shows safely (SVG can carry script: it is downloaded).
pub(crate) fn shown_image(m: &str) -> bool {
    m.starts_with("image/") && hale_api::content::shown_inline(m)
}

fn human_size(n: u64) -> String {
    const MB: u64 = 1024 * 1024;
    if n >= MB && n.is_multiple_of(MB) {
        format!("{} MB", n / MB)
    } else if n >= MB {
        format!("{:.1} MB", n as f64 / MB as f64)
    } else if n >= 1024 {
        format!("{} KB", n.div_ceil(1024))
    } else {
        format!("{n} bytes")
    }
}

fn size_of(a: &Value) -> Option<u64> {
    a["size"].as_u64().or_else(|| a["data"].as_str().map(|d| (d.len() as u64 / 4) * 3))
}

/// `GET /app/patient/{id}/documents`.
pub(crate) async fn list(session: Session, Path(id): Path<String>) -> Response {
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let p = id.as_str();
    let q_docs = [("patient", p), ("_sort", "-date")];
    let q_reports = [("patient", p), ("_sort", "-date")];
    let (all, docs, reports) = tokio::join!(
        allergies(&session, p),
        search(&session.repo, "DocumentReference", &q_docs, MAX_LISTED),
        search(&session.repo, "DiagnosticReport", &q_reports, MAX_LISTED),
    );
    let all = match all {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (docs, reports) = match (docs, reports) {
        (Ok(d), Ok(r)) => (d, r),
        (Err(e), _) | (_, Err(e)) => return failure(&session, &e),
    };
    let labs = reports.iter().filter(|r| is_laboratory(r)).count();
    let reports: Vec<&Value> = reports.iter().filter(|r| !is_laboratory(r)).collect();
    let body = html! {
        (header(&session, &patient, &all, Tab::Documents))
        section.card.wide aria-labelledby="docs-h" {
            h2 #docs-h { "Notes and documents (" (docs.len()) ")" }
            p.card-action { a href={ "/app/patient/" (p) "/documents/new" } { "Add a document" } }
            @if docs.is_empty() { p.empty { "No document recorded." } } @else {
                (rows(&session.zone, &format!("/app/patient/{p}/document/"), &docs.iter().collect::<Vec<_>>()))
            }
        }
        section.card.wide aria-labelledby="reports-h" {
            h2 #reports-h { "Reports (" (reports.len()) ")" }
            @if reports.is_empty() { p.empty { "No report other than laboratory results." } } @else {
                (rows(&session.zone, &format!("/app/patient/{p}/document/"), &reports))
            }
            @if labs > 0 {
                p.muted { (labs) @if labs == 1 { " laboratory report is" } @else { " laboratory reports are" } " under " a href={ "/app/patient/" (p) "/results" } { "Results" } "." }
            }
        }
    };
    respond(StatusCode::OK, page(&format!("Documents · {}", crate::fhir::person_name(&patient)), Some(&session), body))
}

pub(crate) fn rows(zone: &crate::Zone, link: &str, items: &[&Value]) -> Markup {
    html! {
        table {
            thead { tr { th { "Date" } th { "Document" } th.hide-narrow { "Author" } th { "Content" } } }
            tbody {
                @for r in items {
                    @let ty = r["resourceType"].as_str().unwrap_or("");
                    @let rid = r["id"].as_str().unwrap_or("");
                    @let atts = attachments(r);
                    tr {
                        td.date { (date_of(zone, r)) }
                        td {
                            a href={ (link) (ty) "/" (rid) } { (title(r)) }
                            @if let Some(s) = r["status"].as_str().filter(|s| !matches!(*s, "current" | "final")) { " " span.badge { (s) } }
                        }
                        td.hide-narrow { (authors(r)) }
                        td {
                            @if atts.is_empty() { span.muted { "none" } } @else {
                                @for (n, a) in atts.iter().enumerate() {
                                    @if n > 0 { ", " }
                                    (kind_words(&media(a)))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A DocumentReference or DiagnosticReport of patient `id`, read through `repo`;
/// `None` when there is none such or it is another patient's.
pub(crate) async fn read_document(
    repo: &hale_repository::Repository,
    id: &str,
    ty: &str,
    rid: &str,
) -> Result<Option<Value>, hale_repository::Error> {
    if !matches!(ty, "DocumentReference" | "DiagnosticReport" | "Composition") {
        return Ok(None);
    }
    let (Ok(t), Ok(i)) = (hale_repository::resource_type(ty), hale_repository::resource_id(rid)) else {
        return Ok(None);
    };
    let v: Option<Value> = match repo.read(&t, &i).await {
        Ok(s) => s.body.as_deref().and_then(|b| serde_json::from_str(b).ok()),
        Err(e) if matches!(e.category(), hale_fhir::Category::NotFound | hale_fhir::Category::Gone) => None,
        Err(e) => return Err(e),
    };
    Ok(v.filter(|v| v["subject"]["reference"].as_str() == Some(&format!("Patient/{id}"))))
}

/// A DocumentReference or DiagnosticReport of this patient, or the not-found page.
async fn of_patient(session: &Session, id: &str, ty: &str, rid: &str) -> Result<Value, Response> {
    if ty == "Composition" {
        return Err(problem(StatusCode::NOT_FOUND, Some(session), "Not found", "A visit note opens on its visit."));
    }
    match read_document(&session.repo, id, ty, rid).await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(problem(
            StatusCode::NOT_FOUND,
            Some(session),
            "Not found",
            "There is no such document for this patient.",
        )),
        Err(e) => Err(failure(session, &e)),
    }
}

/// The bytes and media type of attachment `n` of `doc` (patient `id`'s): its inline
/// data, or the Binary its `url` names, read through `repo`; `None` when there is no
/// such attachment, no content, or a Binary governed by another patient or resource.
pub(crate) async fn attachment_content(
    repo: &hale_repository::Repository,
    id: &str,
    doc: &Value,
    n: &str,
) -> Result<Option<(Vec<u8>, String, String)>, hale_repository::Error> {
    let atts = attachments(doc);
    let Some(a) = n.parse::<usize>().ok().and_then(|n| atts.get(n).copied()) else {
        return Ok(None);
    };
    let name = a["title"].as_str().unwrap_or("attachment").to_string();
    if let Some(d) = a["data"].as_str() {
        let ct = a["contentType"].as_str().unwrap_or("application/octet-stream").to_string();
        return Ok(base64::engine::general_purpose::STANDARD.decode(d).ok().map(|b| (b, ct, name)));
    }
    let Some(bid) = binary_id(a) else {
        return Ok(None);
    };
    let (Ok(t), Ok(i)) = (hale_repository::resource_type("Binary"), hale_repository::resource_id(bid)) else {
        return Ok(None);
    };
    let b: Value = match repo.read(&t, &i).await {
        Ok(s) => match s.body.as_deref().and_then(|b| serde_json::from_str(b).ok()) {
            Some(v) => v,
            None => return Ok(None),
        },
        Err(e) if matches!(e.category(), hale_fhir::Category::NotFound | hale_fhir::Category::Gone) => return Ok(None),
        Err(e) => return Err(e),
    };
    // a Binary governed by another patient is not this record's; one governed by the
    // document (or message) that names it is
    let this_doc = format!("{}/{}", doc["resourceType"].as_str().unwrap_or(""), doc["id"].as_str().unwrap_or(""));
    if b["securityContext"]["reference"].as_str().is_some_and(|r| r != format!("Patient/{id}") && r != this_doc) {
        return Ok(None);
    }
    let ct = a["contentType"].as_str().or(b["contentType"].as_str()).unwrap_or("application/octet-stream").to_string();
    Ok(base64::engine::general_purpose::STANDARD
        .decode(b["data"].as_str().unwrap_or(""))
        .ok()
        .map(|bytes| (bytes, ct, name)))
}

/// `GET /app/patient/{id}/document/{type}/{rid}`.
pub(crate) async fn show(session: Session, Path((id, ty, rid)): Path<(String, String, String)>) -> Response {
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (all, doc) = tokio::join!(allergies(&session, &id), of_patient(&session, &id, &ty, &rid));
    let (all, doc) = match (all, doc) {
        (Ok(a), Ok(d)) => (a, d),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let base = format!("/app/patient/{id}/document/{ty}/{rid}/attachment/");
    let atts = attachments(&doc);
    let body = html! {
        (header(&session, &patient, &all, Tab::Documents))
        article.card.wide aria-labelledby="doc-h" {
            h1 #doc-h { (title(&doc)) }
            dl.facts {
                div { dt { "Date" } dd { (date_of(&session.zone, &doc)) } }
                @let kind = if ty == "DocumentReference" { concept(&doc["type"]) } else { concept(&doc["code"]) };
                @if !kind.is_empty() { div { dt { "Type" } dd { (kind) } } }
                @let who = authors(&doc);
                @if !who.is_empty() { div { dt { "Author" } dd { (who) } } }
                div { dt { "Status" } dd { (doc["status"].as_str().unwrap_or("")) @if let Some(d) = doc["docStatus"].as_str() { " · " (d) } } }
                @if ty == "DocumentReference" {
                    @if let Some(enc) = doc["context"]["encounter"][0]["reference"].as_str().and_then(|e| e.strip_prefix("Encounter/")) {
                        div { dt { "Visit" } dd { a href={ "/app/patient/" (id) "/visit/" (enc) } { "Open the visit" } } }
                    }
                }
            }
            @if let Some(c) = doc["conclusion"].as_str() { h3 { "Conclusion" } p.prose { (c) } }
            (attachment_views(&base, &atts))
        }
    };
    respond(StatusCode::OK, page(&title(&doc), Some(&session), body))
}

/// Each attachment: plain text in the page, an image shown, a PDF to open or download,
/// anything else to download; links are `base` and the attachment's index.
pub(crate) fn attachment_views(base: &str, atts: &[&Value]) -> Markup {
    html! {
        @if atts.is_empty() { p.empty { "This record has no attachment." } }
        @for (n, a) in atts.iter().enumerate() {
            @let m = media(a);
            @let href = format!("{base}{n}");
            @let label = a["title"].as_str().map(str::to_string).unwrap_or_else(|| format!("Attachment {}", n + 1));
            section.attachment aria-label=(label) {
                h3 { (label) " " small.muted { (kind_words(&m)) @if let Some(s) = size_of(a) { ", " (human_size(s)) } } }
                @if m == "text/plain" && a.get("data").is_some() {
                    @match inline_text(a) {
                        Some(t) => { pre.document { (t) } },
                        None => { p { a href=(href) download { "Download the text" } } },
                    }
                } @else if shown_image(&m) {
                    p { a href=(href) target="_blank" rel="noopener noreferrer" { img.attachment src=(href) alt=(label); } }
                } @else if m == "application/pdf" {
                    p { a href=(href) target="_blank" rel="noopener noreferrer" { "Open the PDF" } " · " a href={ (href) "?download=1" } { "Download" } }
                } @else if a.get("data").is_some() || binary_id(a).is_some() {
                    p { a href={ (href) "?download=1" } { "Download (" (if m.is_empty() { "unknown type" } else { m.as_str() }) ")" } }
                } @else if let Some(u) = a["url"].as_str() {
                    p.muted { "Held elsewhere: " code { (u) } }
                } @else {
                    p.empty { "No content." }
                }
            }
    }
    }
}

/// The plain text of an inline attachment, when it is UTF-8 and short enough to show.
fn inline_text(a: &Value) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(a["data"].as_str()?).ok()?;
    (bytes.len() <= MAX_SHOWN_TEXT).then_some(())?;
    String::from_utf8(bytes).ok()
}

/// `GET /app/patient/{id}/document/{type}/{rid}/attachment/{n}`: the content itself,
/// served so that it cannot act within Hale's origin.
pub(crate) async fn attachment(
    session: Session,
    Path((id, ty, rid, n)): Path<(String, String, String, String)>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let doc = match of_patient(&session, &id, &ty, &rid).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    match attachment_content(&session.repo, &id, &doc, &n).await {
        Ok(Some((bytes, ct, name))) => content_response(bytes, &ct, &name, q.contains_key("download")),
        Ok(None) => problem(StatusCode::NOT_FOUND, Some(&session), "Not found", "There is no such attachment."),
        Err(e) => failure(&session, &e),
    }
}

/// Bytes in their own media type, sandboxed ([`hale_api::content::sandbox`]) and never
/// cached.
pub(crate) fn content_response(bytes: Vec<u8>, content_type: &str, name: &str, download: bool) -> Response {
    let mut r = bytes.into_response();
    hale_api::content::sandbox(r.headers_mut(), content_type, Some(name), download);
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    r
}

/// The media type of uploaded bytes, from their content (not from what the browser
/// claims): PDF, PNG, JPEG, GIF, WebP, or UTF-8 plain text; `None` for anything else.
pub(crate) fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]) {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() > 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if !bytes.is_empty()
        && std::str::from_utf8(bytes)
            .is_ok_and(|s| !s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')))
    {
        Some("text/plain; charset=utf-8")
    } else {
        None
    }
}

/// What the upload form was sent with.
struct Upload {
    csrf: String,
    title: String,
    kind: String,
    file_name: String,
    bytes: Vec<u8>,
}

/// `GET /app/patient/{id}/documents/new`.
pub(crate) async fn form(session: Session, Path(id): Path<String>) -> Response {
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let all = match allergies(&session, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    respond(StatusCode::OK, form_page(&session, &patient, &all, "", "", None))
}

fn form_page(
    session: &Session,
    patient: &Value,
    all: &[Value],
    title: &str,
    kind: &str,
    error: Option<&str>,
) -> Markup {
    let id = patient["id"].as_str().unwrap_or("");
    let limit = session.max_upload_bytes;
    let body = html! {
        (header(session, patient, all, Tab::Documents))
        section.card.form-card aria-labelledby="add-h" {
            h1 #add-h { "Add a document" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action={ "/app/patient/" (id) "/documents/new" } enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(session.csrf);
                div.fields {
                    div.field {
                        label for="title" { "Title" }
                        input #title name="title" type="text" maxlength="200" required value=(title) autocomplete="off";
                    }
                    div.field {
                        label for="kind" { "Kind" }
                        select #kind name="kind" {
                            @for (code, name) in KINDS {
                                option value=(code) selected[*code == kind] { (name) }
                            }
                        }
                    }
                    div.field {
                        label for="file" { "File" }
                        input #file name="file" type="file" required accept=".pdf,.png,.jpg,.jpeg,.gif,.webp,.txt,application/pdf,image/png,image/jpeg,image/gif,image/webp,text/plain";
                    }
                }
                p.hint { "A PDF, an image (PNG, JPEG, GIF, WebP) or plain text, up to " (human_size(limit as u64)) ". It is kept in this patient's record." }
                div.actions {
                    button.primary type="submit" { "Add" }
                    a href={ "/app/patient/" (id) "/documents" } { "Cancel" }
                }
            }
        }
    };
    page("Add a document", Some(session), body)
}

/// A multipart form as sent: its text fields and the file of its `file` input.
pub(crate) struct MultipartForm {
    pub fields: HashMap<String, String>,
    /// The file's name and bytes; `None` when the file input was left empty.
    pub file: Option<(String, Vec<u8>)>,
    /// Why the form could not be read whole (a file too large, a broken body), for the
    /// person; the fields read before it are kept.
    pub refused: Option<String>,
}

/// The longest text field a multipart form may carry.
const MAX_FIELD_BYTES: usize = 16 * 1024;

/// Reads multipart form `mp`: the text fields named in `names`, and the file under
/// `limit` bytes.
pub(crate) async fn read_multipart(mut mp: Multipart, limit: usize, names: &[&str]) -> MultipartForm {
    let too_large = || format!("the file is larger than the limit of {}.", human_size(limit as u64));
    let unreadable = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            "the form could not be read. Choose the file again.".to_string()
        }
    };
    let mut form = MultipartForm { fields: HashMap::new(), file: None, refused: None };
    let read: Result<(), String> = async {
        while let Some(mut field) = mp.next_field().await.map_err(unreadable)? {
            let name = field.name().unwrap_or("").to_string();
            if name == "file" {
                let file_name: String = field.file_name().unwrap_or("").chars().take(200).collect();
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
                    if bytes.len() + chunk.len() > limit {
                        return Err(too_large());
                    }
                    bytes.extend_from_slice(&chunk);
                }
                // a file input left empty sends a part with no name and no bytes
                if !bytes.is_empty() || !file_name.is_empty() {
                    form.file = Some((file_name, bytes));
                }
            } else if names.contains(&name.as_str()) {
                let text = field.text().await.map_err(unreadable)?;
                if text.len() > MAX_FIELD_BYTES {
                    return Err("a field is too long.".into());
                }
                form.fields.insert(name, text);
            }
        }
        Ok(())
    }
    .await;
    form.refused = read.err();
    form
}

async fn read_upload(mp: Multipart, limit: usize) -> Result<Upload, String> {
    let mut f = read_multipart(mp, limit, &["csrf", "title", "kind"]).await;
    if let Some(e) = f.refused {
        return Err(format!("Nothing was saved: {e}"));
    }
    let mut take = |k: &str| f.fields.remove(k).unwrap_or_default();
    let (csrf, title, kind) = (take("csrf"), take("title"), take("kind"));
    let (file_name, bytes) = f.file.unwrap_or_default();
    Ok(Upload { csrf, title, kind, file_name, bytes })
}

/// `POST /app/patient/{id}/documents/new`.
pub(crate) async fn save(session: Session, Path(id): Path<String>, mp: Multipart) -> Response {
    let upload = read_upload(mp, session.max_upload_bytes).await;
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let all = match allergies(&session, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let u = match upload {
        Ok(u) => u,
        Err(msg) => {
            return respond(StatusCode::BAD_REQUEST, form_page(&session, &patient, &all, "", "", Some(&msg)));
        }
    };
    if !same_secret(&u.csrf, &session.csrf) {
        return problem(
            StatusCode::FORBIDDEN,
            Some(&session),
            "The form expired",
            "Nothing was saved: the form came from an earlier sign-in. Open the page again.",
        );
    }
    let refuse =
        |msg: &str| respond(StatusCode::BAD_REQUEST, form_page(&session, &patient, &all, &u.title, &u.kind, Some(msg)));
    let title = u.title.trim();
    if title.is_empty() {
        return refuse("Nothing was saved: give the document a title.");
    }
    if title.chars().count() > 200 {
        return refuse("Nothing was saved: the title is at most 200 characters.");
    }
    let Some((code, kind)) = KINDS.iter().find(|k| k.0 == u.kind) else {
        return refuse("Nothing was saved: choose the kind of document.");
    };
    if u.bytes.is_empty() {
        return refuse("Nothing was saved: choose a file.");
    }
    let Some(media) = sniff(&u.bytes) else {
        return refuse(
            "Nothing was saved: the file is not a PDF, an image (PNG, JPEG, GIF, WebP) or plain text. Scan or save it as one of those.",
        );
    };
    let now = now_instant();
    let binary_id = uuid::Uuid::now_v7().to_string();
    let size = u.bytes.len();
    let mut doc = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": code, "display": kind}], "text": kind},
        "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "code": "clinical-note", "display": "Clinical Note"}]}],
        "subject": {"reference": format!("Patient/{id}")},
        "date": now,
        "description": title,
        "content": [{"attachment": {
            "contentType": media,
            "url": format!("Binary/{binary_id}"),
            "size": size,
            "title": if u.file_name.trim().is_empty() { title.to_string() } else { u.file_name.trim().chars().take(200).collect() },
            "creation": now,
        }}],
    });
    if let Some(p) = session.account.fhir_user.as_deref().filter(|u| u.starts_with("Practitioner/")) {
        doc["author"] = json!([{"reference": p, "display": session.account.display_name}]);
    }
    let binary = json!({
        "resourceType": "Binary",
        "id": binary_id,
        "contentType": media,
        "securityContext": {"reference": format!("Patient/{id}")},
        "data": base64::engine::general_purpose::STANDARD.encode(&u.bytes),
    });
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": binary, "request": {"method": "PUT", "url": format!("Binary/{binary_id}")}},
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-200000000000", "resource": doc, "request": {"method": "POST", "url": "DocumentReference"}},
    ]});
    match session.repo.process_bundle(bundle).await {
        Ok((_, entries)) => {
            if let Some(Err(e)) = entries.iter().find(|e| e.is_err()) {
                return refuse(&format!("Nothing was saved: {}", crate::record::plain(e)));
            }
            let doc_id = entries
                .get(1)
                .and_then(|e| e.as_ref().ok())
                .and_then(|e| e.location.as_deref())
                .and_then(|l| l.strip_prefix("DocumentReference/"))
                .and_then(|l| l.split('/').next())
                .map(str::to_string);
            match doc_id {
                Some(d) => Redirect::to(&format!("/app/patient/{id}/document/DocumentReference/{d}")).into_response(),
                None => Redirect::to(&format!("/app/patient/{id}/documents")).into_response(),
            }
        }
        Err(e) if matches!(e.category(), hale_fhir::Category::Forbidden | hale_fhir::Category::Unauthorized) => {
            refuse("Nothing was saved: your role does not allow adding documents to this record.")
        }
        Err(e) if e.category() == hale_fhir::Category::Invalid => {
            refuse(&format!("Nothing was saved: {}", crate::record::plain(&e)))
        }
        Err(e) => failure(&session, &e),
    }
}

/// Whether a patient sees a document in the portal: a current, finished document, or
/// a finished report other than a laboratory panel (laboratory results reach the
/// portal by their own rule, on "My results") that does not wait for its review
/// (`held`: the reports that do, under the installation's rules).
fn released(r: &Value, held: &[String]) -> bool {
    if r["resourceType"] == "Composition" {
        // a visit note once the clinician signed it
        return matches!(r["status"].as_str(), Some("final" | "amended"));
    }
    if r["resourceType"] == "DocumentReference" {
        r["status"] == "current" && !matches!(r["docStatus"].as_str(), Some("preliminary" | "entered-in-error"))
    } else {
        matches!(r["status"].as_str(), Some("final" | "amended" | "corrected" | "appended"))
            && !is_laboratory(r)
            && !r["id"].as_str().is_some_and(|id| held.iter().any(|h| h == id))
    }
}

/// The reports of the session's patient that wait for their review.
async fn held_reports(session: &PatientSession, st: &AppState) -> Result<Vec<String>, Response> {
    crate::portal::held_for_review(session, &st.options.release)
        .await
        .map(|h| h.reports)
        .map_err(|e| crate::portal::failure(&e))
}

/// `GET /portal/documents`: the patient's letters, notes, scans and reports.
pub(crate) async fn portal_list(session: PatientSession, State(st): State<Arc<AppState>>) -> Response {
    let held = match held_reports(&session, &st).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let p = session.patient.as_str();
    let q = [("patient", p), ("_sort", "-date")];
    let q_notes = [("patient", p), ("status", "final,amended"), ("_sort", "-date")];
    let (docs, reports, notes) = tokio::join!(
        search(&session.repo, "DocumentReference", &q, MAX_LISTED),
        search(&session.repo, "DiagnosticReport", &q, MAX_LISTED),
        search(&session.repo, "Composition", &q_notes, MAX_LISTED),
    );
    let (docs, reports, notes) = match (docs, reports, notes) {
        (Ok(d), Ok(r), Ok(n)) => (d, r, n),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => return crate::portal::failure(&e),
    };
    let mut all: Vec<&Value> =
        docs.iter().chain(reports.iter()).chain(notes.iter()).filter(|r| released(r, &held)).collect();
    all.sort_by_key(|r| std::cmp::Reverse(date_of(&session.zone, r)));
    let body = html! {
        section.card aria-labelledby="p-docs" {
            h1 #p-docs { "My documents" }
            p.muted { "Letters, visit notes, scanned papers and reports in your record. Laboratory results are under " a href="/portal/results" { "My results" } "." }
            @if all.is_empty() { p.empty { "There is no document in your record yet." } } @else {
                (rows(&session.zone, "/portal/document/", &all))
            }
        }
        section.card aria-labelledby="p-summary" {
            h2 #p-summary { "My health summary" }
            p { "Your problems, allergies, medicines, vaccinations and latest results on one page, to print or to show another doctor." }
            p {
                a href="/portal/summary" { "Open my health summary" } " · "
                a href="/portal/download/summary" download { "Download it for another health record" } " " small.muted { "(International Patient Summary, FHIR JSON)" }
            }
        }
    };
    crate::portal::page_for(&session, "My documents", body)
}

/// `GET /portal/document/{type}/{rid}`.
pub(crate) async fn portal_show(
    session: PatientSession,
    State(st): State<Arc<AppState>>,
    Path((ty, rid)): Path<(String, String)>,
) -> Response {
    let held = match held_reports(&session, &st).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let doc = match read_document(&session.repo, &session.patient, &ty, &rid).await {
        Ok(Some(d)) if released(&d, &held) => d,
        Ok(_) => return crate::portal::notice(StatusCode::NOT_FOUND, "Not found", "That is not in your record."),
        Err(e) => return crate::portal::failure(&e),
    };
    let base = format!("/portal/document/{ty}/{rid}/attachment/");
    let atts = attachments(&doc);
    let body = html! {
        p { a href="/portal/documents" { "← My documents" } }
        article.card aria-labelledby="doc-h" {
            h1 #doc-h { (title(&doc)) }
            dl.facts {
                div { dt { "Date" } dd { (date_of(&session.zone, &doc)) } }
                @let who = authors(&doc);
                @if !who.is_empty() { div { dt { "From" } dd { (who) } } }
            }
            @if let Some(c) = doc["conclusion"].as_str() { h3 { "What it found" } p.prose { (c) } }
            @if doc["resourceType"] == "Composition" {
                @for section in doc["section"].as_array().into_iter().flatten() {
                    @let text = crate::visit::plain_text(section["text"]["div"].as_str().unwrap_or(""));
                    @if !text.trim().is_empty() {
                        h3 { (section["title"].as_str().unwrap_or("")) }
                        div.note-text { (text) }
                    }
                }
            } @else {
                (attachment_views(&base, &atts))
            }
        }
    };
    crate::portal::page_for(&session, &title(&doc), body)
}

/// `GET /portal/document/{type}/{rid}/attachment/{n}`.
pub(crate) async fn portal_attachment(
    session: PatientSession,
    State(st): State<Arc<AppState>>,
    Path((ty, rid, n)): Path<(String, String, String)>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let not_found = || crate::portal::notice(StatusCode::NOT_FOUND, "Not found", "That is not in your record.");
    let held = match held_reports(&session, &st).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let doc = match read_document(&session.repo, &session.patient, &ty, &rid).await {
        Ok(Some(d)) if released(&d, &held) => d,
        Ok(_) => return not_found(),
        Err(e) => return crate::portal::failure(&e),
    };
    match attachment_content(&session.repo, &session.patient, &doc, &n).await {
        Ok(Some((bytes, ct, name))) => content_response(bytes, &ct, &name, q.contains_key("download")),
        Ok(None) => not_found(),
        Err(e) => crate::portal::failure(&e),
    }
}

/// The patient's International Patient Summary, read as them.
async fn portal_ips(session: &PatientSession, st: &AppState, headers: &HeaderMap) -> Result<Value, Response> {
    let base = hale_api::fhir_base(headers, st.auth.public_base.as_deref());
    // results wait for the care team's review as they do on "My results"
    let held =
        crate::portal::held_for_review(session, &st.options.release).await.map_err(|e| crate::portal::failure(&e))?;
    let held: Vec<String> = held
        .observations
        .iter()
        .map(|o| format!("Observation/{o}"))
        .chain(held.reports.iter().map(|r| format!("DiagnosticReport/{r}")))
        .collect();
    hale_api::ips::summary(&session.repo, &session.patient, &base, &now_instant(), &held)
        .await
        .map_err(|e| crate::portal::failure(&e))
}

/// `GET /portal/download/summary`: the International Patient Summary as a FHIR
/// document, to take to another health record.
pub(crate) async fn portal_summary_download(
    session: PatientSession,
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Response {
    let doc = match portal_ips(&session, &st, &headers).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut r = (StatusCode::OK, doc.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"my-health-summary.json\""));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /portal/summary`: the same summary as a page, to read or print.
pub(crate) async fn portal_summary(
    session: PatientSession,
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Response {
    let doc = match portal_ips(&session, &st, &headers).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let patient = &doc["entry"][1]["resource"];
    let body = html! {
        article.card.summary aria-labelledby="s-h" {
            h1 #s-h { "Health summary" }
            p { strong { (crate::fhir::person_name(patient)) } " · born " (day(&patient["birthDate"])) }
            p.muted { "Made on " (session.zone.day(&doc["timestamp"])) " from your record as it is today. " span.noprint { "Print it with your browser's Print command." } }
            @for (title, columns, rows) in hale_api::ips::readable(&doc) {
                section aria-label=(title) {
                    h2 { (title) }
                    @if rows.is_empty() { p.empty { "Nothing recorded." } } @else {
                        table {
                            thead { tr { @for c in &columns { th { (c) } } } }
                            tbody { @for r in &rows { tr { @for cell in r { td { (crate::portal::plain(cell)) } } } } }
                        }
                    }
                }
            }
        }
    };
    crate::portal::page_for(&session, "Health summary", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_typed_by_their_content() {
        assert_eq!(sniff(b"%PDF-1.7\n..."), Some("application/pdf"));
        assert_eq!(sniff(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0]), Some("image/png"));
        assert_eq!(sniff(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(sniff(b"GIF89a...."), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff("Letter from Dr Ng\nAll well.\n".as_bytes()), Some("text/plain; charset=utf-8"));
        // an executable, a zip, binary noise and markup claiming to be text are not kept as what they claim
        assert_eq!(sniff(b"MZ\x90\0\x03\0\0\0"), None);
        assert_eq!(sniff(b"PK\x03\x04"), None);
        assert_eq!(sniff(&[0xff, 0xfe, 0, 0]), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn attachments_name_their_binary() {
        assert_eq!(binary_id(&json!({"url": "Binary/abc"})), Some("abc"));
        assert_eq!(binary_id(&json!({"url": "https://ehr.example/fhir/Binary/abc"})), Some("abc"));
        assert_eq!(binary_id(&json!({"url": "https://elsewhere.example/scan.pdf"})), None);
        assert_eq!(binary_id(&json!({"url": "Binary/"})), None);
        assert_eq!(binary_id(&json!({"url": "Binary/a/_history/2"})), None);
    }

    #[test]
    fn a_downloaded_name_cannot_break_its_header() {
        let r = content_response(vec![1], "application/pdf", "a\"b\r\nSet-Cookie: x", true);
        let d = r.headers()[header::CONTENT_DISPOSITION].to_str().unwrap().to_string();
        assert_eq!(d, "attachment; filename=\"abSet-Cookie x\"");
        let r = content_response(vec![1], "text/html", "page.html", false);
        assert!(r.headers()[header::CONTENT_DISPOSITION].to_str().unwrap().starts_with("attachment"));
        assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("sandbox"));
    }
}
