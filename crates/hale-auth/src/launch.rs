//! The EHR side of an EHR launch: `POST /auth/launch`. Hale has no clinician
//! application yet, so whatever shows the chart asks here for a `launch` value to hand
//! the app; the app's authorization request (scope `launch`) takes it
//! ([`crate::pages`]).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hale_access::{Principal, PurposeOfUse, RequestContext, Role};
use hale_fhir::Category;
use serde_json::{Value, json};

use crate::token::{OAuthForm, no_store, oauth_error};
use crate::{LAUNCH_LIFETIME_S, St, client, hash_secret, now_ms, random_secret};

/// A launch as stored (`auth_record` kind `launch`, keyed by the hash of its value).
pub(crate) struct Launch {
    pub account: String,
    pub client_id: String,
    pub patient: String,
    pub encounter: Option<String>,
}

impl Launch {
    pub(crate) fn from_record(v: &Value) -> Option<Launch> {
        Some(Launch {
            account: v["account"].as_str()?.to_string(),
            client_id: v["client_id"].as_str()?.to_string(),
            patient: v["patient"].as_str()?.to_string(),
            encounter: v["encounter"].as_str().map(str::to_string),
        })
    }
}

fn unauthorized(why: &str) -> Response {
    let mut r = oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", why);
    let challenge = format!("Bearer realm=\"hale\", error=\"invalid_token\", error_description=\"{why}\"");
    if let Ok(v) = challenge.parse() {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// `POST /auth/launch` (form: `patient`, optional `encounter`, `client_id`), with the
/// signed-in clinician's or nurse's access token: a single-use launch for that app,
/// that user and that patient, when the user may see the patient (else 404, as the FHIR
/// API answers).
pub async fn create(State(st): St, headers: HeaderMap, OAuthForm(p): OAuthForm) -> Response {
    let audit = st.system();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, t)| scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty())
        .map(|(_, t)| t.trim().to_string());
    let Some(token) = token else {
        let _ = audit.audit_auth_event("launch", "anonymous", Some("no access token")).await;
        return unauthorized("a signed-in user's access token is required");
    };
    let claims = match st.tokens.verify(&token) {
        Ok(c) => c,
        Err(e) => {
            let _ = audit.audit_auth_event("launch", "anonymous", Some(&e.to_string())).await;
            return unauthorized(&e.to_string());
        }
    };
    // revoked, voided by its account's change (disabled, password changed), or of a
    // disabled account
    match audit.access_token_in_force(&claims).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = audit.audit_auth_event("launch", &claims.sub, Some(&e.to_string())).await;
            return unauthorized(&e.to_string());
        }
        Err(_) => return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again"),
    }
    let principal = match hale_identity::token::principal_of(claims) {
        Ok(p) => p,
        Err(e) => return unauthorized(&e.to_string()),
    };
    let Principal::User(user) = &principal else {
        let _ = audit.audit_auth_event("launch", "client", Some("not a user's token")).await;
        return oauth_error(StatusCode::FORBIDDEN, "insufficient_scope", "an EHR launch is made by a signed-in user");
    };
    let who = format!("user:{}", user.username);
    let refuse = |status: StatusCode, error: &'static str, why: String| {
        let audit = audit.clone();
        let who = who.clone();
        async move {
            let _ = audit.audit_auth_event("launch", &who, Some(&why)).await;
            oauth_error(status, error, &why)
        }
    };
    if !matches!(user.role, Role::Clinician | Role::Nurse) {
        return refuse(StatusCode::FORBIDDEN, "access_denied", "only clinicians and nurses launch apps".into()).await;
    }
    let Some(client_id) = p.get("client_id").filter(|c| !c.is_empty()) else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "client_id is required".into()).await;
    };
    match client(&st, client_id).await {
        Some(c) if !c.is_backend() => {}
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("'{client_id}' is not a registered app that signs users in"),
            )
            .await;
        }
    }
    let Some(patient) = p.get("patient").filter(|c| !c.is_empty()) else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "patient is required".into()).await;
    };
    // the user's own reach decides: a repository made for them, as the FHIR API would
    let mut ctx = RequestContext::system("auth");
    ctx.principal = principal.clone();
    ctx.purpose_of_use = Some(PurposeOfUse::Treatment);
    let repo = st.gate.repository(ctx);
    if let Err(r) = readable(&repo, "Patient", patient).await {
        return refuse(r.0, r.1, r.2).await;
    }
    let encounter = p.get("encounter").filter(|e| !e.is_empty()).cloned();
    if let Some(e) = &encounter {
        match readable(&repo, "Encounter", e).await {
            Err(r) => return refuse(r.0, r.1, r.2).await,
            Ok(body) if body["subject"]["reference"].as_str() != Some(&format!("Patient/{patient}")) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("Encounter/{e} is not an encounter of Patient/{patient}"),
                )
                .await;
            }
            Ok(_) => {}
        }
    }
    let launch = random_secret();
    let record = json!({"account": user.account, "client_id": client_id, "patient": patient, "encounter": encounter});
    let expires = now_ms() + LAUNCH_LIFETIME_S * 1000;
    if let Err(e) =
        audit.put_auth_record("launch", &hash_secret(&launch), &record, Some(expires), Some(("launch", &who))).await
    {
        tracing::error!(error = %e, "a launch could not be stored");
        return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again");
    }
    let iss = format!("{}/fhir", st.base(&headers));
    no_store(StatusCode::OK, json!({"launch": launch, "iss": iss, "expires_in": LAUNCH_LIFETIME_S})).into_response()
}

/// Reads `ty/id` through `repo`: its body, or the refusal to answer.
async fn readable(
    repo: &hale_repository::Repository,
    ty: &str,
    id: &str,
) -> Result<Value, (StatusCode, &'static str, String)> {
    let not_found = || (StatusCode::NOT_FOUND, "not_found", format!("{ty}/{id} is not known"));
    let (Ok(t), Ok(i)) = (hale_repository::resource_type(ty), hale_repository::resource_id(id)) else {
        return Err(not_found());
    };
    match repo.read(&t, &i).await {
        Ok(r) => Ok(r.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null)),
        Err(e) => Err(match e.category() {
            Category::Forbidden => (StatusCode::FORBIDDEN, "access_denied", e.to_string()),
            Category::Unauthorized => (StatusCode::UNAUTHORIZED, "invalid_token", e.to_string()),
            Category::NotFound | Category::Gone => not_found(),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again".to_string()),
        }),
    }
}
