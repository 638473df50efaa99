//! The clinician application under `/app` and the patient portal under `/portal`: server-rendered pages over the same
//! repository gate as the FHIR API. A page answers only a signed-in session (the
//! authorization server's session cookie; else the browser is sent to sign in and
//! brought back), and reads through a [`Repository`] made for the session's user, so
//! every page view is access-checked and audited as an API read would be. Pages are
//! `maud` templates (every value escaped), with one stylesheet and one small script (the
//! idle-timeout warning; the pages work without it).

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod chart;
mod clock;
mod documents;
mod entry;
mod fhir;
mod find;
mod growth;
mod invite;
mod layout;
mod messages;
pub mod orders;
mod panel;
mod portal;
mod prescribe;
mod reconcile;
mod record;
mod sharing;
mod svg;
mod trends;
mod visit;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use hale_access::{Role, Scopes};
use hale_api::Routes;
use hale_auth::AuthState;
use hale_fhir::Category;
use hale_identity::Account;
use hale_repository::{Gate, Repository};

pub use clock::{UnknownZone, Zone};

/// What the pages share: the gate, and the authorization server whose sessions they
/// accept.
#[derive(Debug, Clone)]
pub struct AppState {
    gate: Gate,
    auth: Arc<AuthState>,
    options: Options,
}

/// What an installation decides about the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// When results and reports reach the portal.
    pub release: Release,
    /// The largest file a document upload may carry, in bytes.
    pub max_upload_bytes: usize,
    /// The time zone pages show dates and times in, and read typed times in.
    pub time_zone: Zone,
}

impl Default for Options {
    fn default() -> Self {
        Options { release: Release::default(), max_upload_bytes: 64 * 1024 * 1024, time_zone: Zone::utc() }
    }
}

/// When a report (and its results) reaches the portal: at once, or once the
/// clinician's review task for it is done — by its category, else by default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Release {
    /// The rule of a report whose category has none of its own.
    pub after_review_by_default: bool,
    /// Rules by DiagnosticReport category code (upper case): `true` after review.
    pub by_category: Vec<(String, bool)>,
}

impl Release {
    /// Whether `report` waits for its review: the rule of the first of its category
    /// codes that has one, else the default.
    pub fn after_review(&self, report: &serde_json::Value) -> bool {
        let codes = report["category"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["coding"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["code"].as_str().map(str::to_ascii_uppercase));
        for code in codes {
            if let Some((_, rule)) = self.by_category.iter().find(|(k, _)| *k == code) {
                return *rule;
            }
        }
        self.after_review_by_default
    }

    /// Whether any report may wait for its review.
    pub fn ever_after_review(&self) -> bool {
        self.after_review_by_default || self.by_category.iter().any(|r| r.1)
    }
}

/// The routes of the application over the gate and the authorization server's state.
pub fn routes(gate: Gate, auth: Arc<AuthState>, options: Options) -> Routes<()> {
    unstated(options.max_upload_bytes).with_state(Arc::new(AppState { gate, auth, options }))
}

/// Every route of the application with its policy.
pub fn declared() -> Vec<(&'static str, hale_api::RoutePolicy)> {
    unstated(Options::default().max_upload_bytes).declared().to_vec()
}

fn unstated(max_upload_bytes: usize) -> Routes<Arc<AppState>> {
    // an upload's multipart form is a little larger than its file
    let upload_limit = axum::extract::DefaultBodyLimit::max(max_upload_bytes.saturating_add(64 * 1024));
    Routes::new()
        .asset("/app/static/app.css", get(layout::stylesheet))
        .asset("/app/static/app.js", get(layout::script))
        .page("/app/keepalive", get(layout::keepalive))
        .page("/app", get(find::home))
        .page("/app/patient/{id}", get(chart::summary))
        .page("/app/patient/{id}/break-glass", axum::routing::post(chart::break_glass))
        .page("/app/patient/{id}/vitals", get(trends::vitals).post(record::save))
        .page("/app/patient/{id}/vitals/new", get(record::form))
        .page("/app/patient/{id}/results", get(trends::results))
        .page("/app/patient/{id}/documents", get(documents::list))
        .page("/app/patient/{id}/documents/new", get(documents::form).post(documents::save).layer(upload_limit))
        .page("/app/patient/{id}/document/{ty}/{rid}", get(documents::show))
        .page("/app/patient/{id}/document/{ty}/{rid}/attachment/{n}", get(documents::attachment))
        .page("/app/patient/{id}/problems/new", get(entry::problem_form).post(entry::problem_save))
        .page("/app/patient/{id}/problem/{cid}/resolve", axum::routing::post(entry::resolve))
        .page("/app/patient/{id}/allergies/new", get(entry::allergy_form).post(entry::allergy_save))
        .page("/app/patient/{id}/immunizations/new", get(entry::immunization_form).post(entry::immunization_save))
        .page("/app/inbox", get(orders::inbox))
        .page("/app/due", get(panel::due))
        .page("/app/due/remind", axum::routing::post(panel::remind))
        .page("/app/measures", get(panel::measures))
        .page("/app/patient/{id}/invite", axum::routing::post(invite::invite))
        .page("/app/patient/{id}/portal", get(invite::portal_accounts))
        .page("/app/patient/{id}/portal/reset", axum::routing::post(invite::reset_link))
        .page("/portal", get(portal::home))
        .page("/portal/results", get(portal::results))
        .page("/portal/access", get(portal::access))
        .page("/portal/refill", axum::routing::post(portal::refill))
        .page("/portal/download", get(portal::download))
        .page("/portal/apps", get(portal::apps))
        .page("/portal/sharing", get(sharing::page).post(sharing::save))
        .page("/portal/apps/disconnect", axum::routing::post(portal::disconnect))
        .page("/portal/download/summary", get(documents::portal_summary_download))
        .page("/portal/summary", get(documents::portal_summary))
        .page("/portal/documents", get(documents::portal_list))
        .page("/portal/document/{ty}/{rid}", get(documents::portal_show))
        .page("/portal/document/{ty}/{rid}/attachment/{n}", get(documents::portal_attachment))
        .page("/portal/choose", get(portal::choose).post(portal::chosen))
        .page("/portal/messages", get(messages::portal_list).post(messages::portal_send).layer(upload_limit))
        .page(
            "/portal/messages/{thread}",
            get(messages::portal_thread).post(messages::portal_reply).layer(upload_limit),
        )
        .page("/portal/messages/{thread}/attachment/{msg}/{n}", get(messages::portal_attachment))
        .page(
            "/app/patient/{id}/messages/{thread}",
            get(messages::staff_thread).post(messages::staff_reply).layer(upload_limit),
        )
        .page("/app/patient/{id}/messages/{thread}/attachment/{msg}/{n}", get(messages::staff_attachment))
        .page("/app/patient/{id}/orders/new", get(orders::order_form).post(orders::order_save))
        .page("/app/patient/{id}/order/{sr}/result", get(orders::result_form).post(orders::result_save))
        .page("/app/patient/{id}/review/{task}", get(orders::review).post(orders::reviewed))
        .page("/app/patient/{id}/visits", axum::routing::post(visit::start))
        .page("/app/patient/{id}/visit/{enc}", get(visit::show))
        .page("/app/patient/{id}/visit/{enc}/note", axum::routing::post(visit::save_note))
        .page("/app/patient/{id}/visit/{enc}/finish", axum::routing::post(visit::finish))
        .page("/app/patient/{id}/medications/reconcile", get(reconcile::form).post(reconcile::save))
        .page("/app/patient/{id}/prescribe", get(prescribe::form).post(prescribe::sign))
        .page("/app/patient/{id}/prescription/{rx}", get(prescribe::printable))
}

/// The scopes a page acts with: everything the user's role allows (the role decides).
const PAGE_SCOPES: &str = "user/*.cruds";

/// The client a page's reads are recorded as coming from.
const CLIENT_ID: &str = "hale-app";

/// A signed-in member of staff and the repository made for them. Extracting it from a
/// request without a session sends the browser to sign in (and back here after); a
/// patient's account gets a page that sends them nowhere else.
pub(crate) struct Session {
    pub account: Account,
    pub role: Role,
    /// The session's CSRF token, for the forms of the page.
    pub csrf: String,
    pub repo: Repository,
    pub gate: Gate,
    /// The user's break-the-glass grants in force: (patient, reason, expires ms).
    pub glass: Vec<(String, String, i64)>,
    /// The largest file a document upload may carry.
    pub max_upload_bytes: usize,
    /// The installation's time zone: what the pages show times in and read them in.
    pub zone: Zone,
}

impl Session {
    pub(crate) fn role_label(&self) -> &'static str {
        match self.role {
            Role::Administrator => "Administrator",
            Role::SecurityAdministrator => "Security administrator",
            Role::Clinician => "Clinician",
            Role::Nurse => "Nurse",
            Role::FrontDesk => "Front desk",
            Role::Patient => "Patient",
        }
    }
}

/// `/auth/login?next=<this page>`.
fn sign_in_redirect(parts: &Parts) -> Response {
    let here = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/app");
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

impl FromRequestParts<Arc<AppState>> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, Response> {
        let Some((account, csrf)) = hale_auth::session(&st.auth, &parts.headers).await else {
            return Err(sign_in_redirect(parts));
        };
        let Ok(role) = account.role() else {
            return Err(layout::problem(StatusCode::FORBIDDEN, None, "No access", "Your account has no usable role."));
        };
        if role == Role::Patient {
            return Err(layout::problem(
                StatusCode::FORBIDDEN,
                None,
                "This application is for care teams",
                "Your account is a patient's account: your record is in the patient portal, at /portal.",
            ));
        }
        let scopes = Scopes::parse(PAGE_SCOPES, true).map_err(|_| internal())?;
        let mut ctx = hale_auth::user_context(&account, scopes, None, CLIENT_ID).ok_or_else(internal)?;
        ctx.request_id = match parts.extensions.get::<hale_api::RequestId>() {
            Some(r) => r.0.clone(),
            None => ctx.request_id,
        };
        ctx.client = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        // the user's break-the-glass grants in force, as the API reads them
        let now = hale_repository::Instant::now().millis();
        let grants: Vec<(String, String, i64)> = match st.gate.system("app").break_glass_grants().await {
            Ok(all) => all.into_iter().filter(|g| g.0 == account.id && g.3 > now).map(|g| (g.1, g.2, g.3)).collect(),
            Err(e) => {
                tracing::error!(error = %e, "the break-the-glass grants could not be read");
                return Err(internal());
            }
        };
        if !grants.is_empty() {
            ctx.break_glass = Some(hale_access::BreakGlass {
                reason: grants.iter().map(|g| g.1.as_str()).collect::<Vec<_>>().join("; "),
                expires_at: grants.iter().map(|g| g.2).min().unwrap_or(now),
                patients: grants.iter().map(|g| g.0.clone()).collect(),
            });
            ctx.purpose_of_use = Some(hale_access::PurposeOfUse::EmergencyTreatment);
        }
        let glass = grants;
        let repo = st.gate.repository(ctx);
        Ok(Session {
            account,
            role,
            csrf,
            repo,
            gate: st.gate.clone(),
            glass,
            max_upload_bytes: st.options.max_upload_bytes,
            zone: st.options.time_zone.clone(),
        })
    }
}

pub(crate) fn internal() -> Response {
    layout::problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        None,
        "Something went wrong",
        "The page could not be made. Try again; if it keeps happening, tell your administrator.",
    )
}

/// The page for a repository error: the words for the reader, never internal detail.
pub(crate) fn failure(session: &Session, e: &hale_repository::Error) -> Response {
    let (status, title, message) = match e.category() {
        Category::NotFound | Category::Gone => (
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such record, or it is not in the care of your organization.",
        ),
        Category::Forbidden | Category::Unauthorized => {
            (StatusCode::FORBIDDEN, "Not allowed", "Your role does not allow this.")
        }
        Category::TooCostly | Category::Busy | Category::RateLimited => {
            (StatusCode::SERVICE_UNAVAILABLE, "Busy", "The record could not be read just now. Try again in a moment.")
        }
        _ => {
            tracing::error!(error = %e, "a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The page could not be made. Try again; if it keeps happening, tell your administrator.",
            )
        }
    };
    layout::problem(status, Some(session), title, message)
}

/// The `auth_record` kind of a user's recently viewed patients (newest first).
const RECENT_KIND: &str = "recent-patients";
const RECENT_MAX: usize = 10;

/// The ids of the patients `account` viewed most recently, newest first.
pub(crate) async fn recent_patients(gate: &Gate, account: &Account) -> Vec<String> {
    match gate.system("app").auth_record(RECENT_KIND, &account.id).await {
        Ok(Some(v)) => v["patients"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p.as_str()).map(str::to_string).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Puts `patient` first in `account`'s recently viewed patients.
pub(crate) async fn viewed(gate: &Gate, account: &Account, patient: &str) {
    let mut list = recent_patients(gate, account).await;
    if list.first().is_some_and(|p| p == patient) {
        return;
    }
    list.retain(|p| p != patient);
    list.insert(0, patient.to_string());
    list.truncate(RECENT_MAX);
    let body = serde_json::json!({ "patients": list });
    if let Err(e) = gate.system("app").put_auth_record(RECENT_KIND, &account.id, &body, None, None).await {
        tracing::warn!(error = %e, "the recently viewed patients could not be kept");
    }
}

/// The resources of one page of a type search, run through `repo` (so held to the
/// caller's access and audited as any search).
pub(crate) async fn search(
    repo: &Repository,
    ty: &str,
    pairs: &[(&str, &str)],
    count: usize,
) -> Result<Vec<serde_json::Value>, hale_repository::Error> {
    let ty = hale_repository::resource_type(ty)?;
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let request = hale_search::parse::parse(&ty, &pairs, false).map_err(hale_repository::Error::invalid)?;
    let page = repo.search(&request, count, false).await?;
    Ok(page.entries.iter().filter_map(|r| r.body.as_deref()).filter_map(|b| serde_json::from_str(b).ok()).collect())
}

/// Now as a FHIR instant (UTC whatever the installation's zone: a time Hale stamps, not
/// one a person typed; to the millisecond, as the store stamps `lastUpdated`:
/// a time set by a page never precedes one Hale set earlier in the same second, which
/// invariants such as Task's `inv-1` would refuse).
pub(crate) fn now_instant() -> String {
    hale_repository::Instant::now().to_fhir()
}

/// Whether two secrets (a form's CSRF token and the session's) are equal, compared in
/// constant time.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
