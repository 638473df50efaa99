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
    let until = hale_repository::Instant::from_millis(expires).to_fhir().chars().take(10).collect::<String>();
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
