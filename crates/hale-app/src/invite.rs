//! `POST /app/patient/{id}/invite`: a portal invitation for the patient — a one-time
//! link (`/auth/activate?code=...`, valid 14 days) with which they open their own
//! account, linked to their record. The code is kept only as its hash; the invitation is
//! audited (`portal-invitation`); only staff who may open the chart may invite.

use std::collections::HashMap;

use axum::Form;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde_json::json;

use crate::Session;
use crate::chart::{Tab, allergies, header, open_patient};
use crate::fhir::person_name;
use crate::layout::{page, problem, respond};

/// How long an invitation may be used.
pub const INVITATION_DAYS: i64 = 14;

pub(crate) async fn invite(
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if !f.get("csrf").is_some_and(|t| crate::same_secret(t, &session.csrf)) {
        return problem(
            StatusCode::FORBIDDEN,
            Some(&session),
            "The form expired",
            "Nothing was made. Open the chart again.",
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
    let code = hale_auth::random_secret();
    let now = hale_repository::Instant::now().millis();
    let expires = now + INVITATION_DAYS * 86_400_000;
    let name = person_name(&patient);
    let body = json!({"patient": id, "name": name, "by": session.account.username, "expires": expires});
    let target = format!("Patient/{id}");
    let stored = session
        .gate
        .system("app")
        .put_auth_record(
            hale_auth::INVITATION,
            &hale_auth::hash_secret(&code),
            &body,
            Some(expires),
            Some(("portal-invitation", target.as_str())),
        )
        .await;
    if let Err(e) = stored {
        return crate::failure(&session, &e);
    }
    let until = session.zone.at_millis(expires);
    let link = format!("/auth/activate?code={code}");
    let body = html! {
        (header(&session, &patient, &all, Tab::Summary))
        section.card.form-card aria-labelledby="inv-h" {
            h1 #inv-h { "Portal invitation for " (name) }
            p { "Give the patient this link on this site's address. It opens their own portal account, linked to this record; it works once, until " strong { (until) } "." }
            p.invitation { a href=(link) { code { (link) } } }
            p.muted { "Print this page or read the link out; it is not shown again. Each new invitation is another link; the old one keeps working until it is used or expires." }
            div.actions { a href={ "/app/patient/" (id) } { "Back to the chart" } }
        }
    };
    respond(StatusCode::OK, page("Portal invitation", Some(&session), body))
}

/// How long a password-reset link may be used.
pub const RESET_HOURS: i64 = 24;

/// The portal accounts linked to patient `id` (own or proxy).
async fn linked_accounts(session: &Session, id: &str) -> Result<Vec<hale_identity::Account>, Response> {
    match session.gate.system("app").accounts().await {
        Ok(all) => Ok(all
            .into_iter()
            .filter(|a| a.role == hale_access::Role::Patient.code() && a.patients.iter().any(|p| p == id))
            .collect()),
        Err(e) => Err(crate::failure(session, &e)),
    }
}

/// `GET /app/patient/{id}/portal`: the patient's portal accounts, a password-reset
/// link for each, and a new invitation.
pub(crate) async fn portal_accounts(session: Session, Path(id): Path<String>) -> Response {
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (all, accounts) = match (allergies(&session, &id).await, linked_accounts(&session, &id).await) {
        (Ok(a), Ok(l)) => (a, l),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let body = html! {
        (header(&session, &patient, &all, Tab::Summary))
        section.card.form-card aria-labelledby="pa-h" {
            h1 #pa-h { "Portal accounts of " (person_name(&patient)) }
            @if accounts.is_empty() {
                p.empty { "No portal account is linked to this record yet." }
            } @else {
                ul.plain {
                    @for a in &accounts {
                        li {
                            span { strong { (a.username) } " " small.muted { @if a.fhir_user.as_deref().is_some_and(|u| u.starts_with("RelatedPerson/")) { "(a proxy)" } @else { "(the patient)" } @if a.disabled { " · disabled" } } }
                            form.inline method="post" action={ "/app/patient/" (id) "/portal/reset" } {
                                input type="hidden" name="csrf" value=(session.csrf);
                                input type="hidden" name="account" value=(a.username);
                                button.link.small type="submit" { "Make a password reset link" }
                            }
                        }
                    }
                }
            }
            form method="post" action={ "/app/patient/" (id) "/invite" } {
                input type="hidden" name="csrf" value=(session.csrf);
                div.actions { button.secondary type="submit" { "Invite to the portal" } a href={ "/app/patient/" (id) } { "Back to the chart" } }
            }
        }
    };
    respond(StatusCode::OK, page("Portal accounts", Some(&session), body))
}

/// `POST /app/patient/{id}/portal/reset`: a one-time link (valid a day) with which the
/// holder of a portal account linked to this record sets a new password.
pub(crate) async fn reset_link(
    session: Session,
    Path(id): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if !f.get("csrf").is_some_and(|t| crate::same_secret(t, &session.csrf)) {
        return problem(
            StatusCode::FORBIDDEN,
            Some(&session),
            "The form expired",
            "Nothing was made. Open the page again.",
        );
    }
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (all, accounts) = match (allergies(&session, &id).await, linked_accounts(&session, &id).await) {
        (Ok(a), Ok(l)) => (a, l),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let wanted = f.get("account").cloned().unwrap_or_default();
    let Some(account) = accounts.iter().find(|a| a.username == wanted) else {
        return problem(
            StatusCode::NOT_FOUND,
            Some(&session),
            "No such account",
            "No portal account of that name is linked to this record.",
        );
    };
    let code = hale_auth::random_secret();
    let expires = hale_repository::Instant::now().millis() + RESET_HOURS * 3_600_000;
    let body = json!({"account": account.id, "by": session.account.username, "expires": expires});
    let target = format!("account/{}", account.username);
    let stored = session
        .gate
        .system("app")
        .put_auth_record(
            hale_auth::RESET,
            &hale_auth::hash_secret(&code),
            &body,
            Some(expires),
            Some(("password-reset-link", target.as_str())),
        )
        .await;
    if let Err(e) = stored {
        return crate::failure(&session, &e);
    }
    let link = format!("/auth/reset?code={code}");
    let body = html! {
        (header(&session, &patient, &all, Tab::Summary))
        section.card.form-card aria-labelledby="rl-h" {
            h1 #rl-h { "Password reset link for " (account.username) }
            p { "Give it to the account's holder on this site's address. It sets a new password once, within " (RESET_HOURS) " hours; their other sessions then end." }
            p.invitation { a href=(link) { code { (link) } } }
            p.muted { "It is not shown again." }
            div.actions { a href={ "/app/patient/" (id) "/portal" } { "Back to the portal accounts" } }
        }
    };
    respond(StatusCode::OK, page("Password reset link", Some(&session), body))
}
