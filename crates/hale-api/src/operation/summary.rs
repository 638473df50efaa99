//! `Patient/[id]/$summary` and `Patient/$summary?identifier=` (IPS 2.0.0,
//! <http://hl7.org/fhir/uv/ips/OperationDefinition/summary>): the International Patient
//! Summary document made by [`crate::ips::summary`], read as the caller.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use hale_fhir::{Category, Issue, IssueType};
use hale_repository::Instant;
use serde_json::Value;

use crate::{ApiError, ApiState, Call};

fn refuse(category: Category, at: &str, msg: &str) -> ApiError {
    ApiError::new(category, Issue::error(IssueType::Invalid, msg.to_string()).at(at.to_string()))
}

/// The operation's `identifier` and `profile`, from the query or a `Parameters` body.
async fn parameters(
    st: &ApiState,
    method: &Method,
    call: &Call,
    body: Body,
) -> Result<(Option<String>, Option<String>), ApiError> {
    let ctx = &call.ctx;
    ctx.check_params(&["identifier", "profile"])?;
    let mut identifier = ctx.params.get("identifier").map(str::to_string);
    let mut profile = ctx.params.get("profile").map(str::to_string);
    for param in super::body_parameters(st, method, call, body, "summary").await? {
        match param["name"].as_str() {
            Some("identifier") => identifier = param["valueString"].as_str().map(str::to_string),
            Some("profile") => {
                profile = param["valueCanonical"].as_str().or(param["valueUri"].as_str()).map(str::to_string)
            }
            _ => {}
        }
    }
    if let Some(p) = &profile
        && p.split('|').next() != Some(crate::ips::IPS_COMPOSITION)
    {
        return Err(ApiError::new(
            Category::Invalid,
            Issue::error(
                IssueType::NotSupported,
                format!("$summary makes the IPS Composition profile ({}) only", crate::ips::IPS_COMPOSITION),
            )
            .at("profile"),
        ));
    }
    Ok((identifier, profile))
}

pub async fn handle(
    st: &ApiState,
    method: &Method,
    id: Option<&str>,
    call: &Call,
    body: Body,
) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let (identifier, _) = parameters(st, method, call, body).await?;
    let id = match (id, identifier) {
        (Some(id), _) => id.to_string(),
        (None, None) => {
            return Err(refuse(
                Category::Invalid,
                "identifier",
                "Patient/$summary needs the patient's identifier (system|value), or use Patient/[id]/$summary",
            ));
        }
        (None, Some(ident)) => {
            let ty = hale_repository::resource_type("Patient")?;
            let pairs = vec![("identifier".to_string(), ident)];
            let request = hale_search::parse::parse(&ty, &pairs, false).map_err(hale_repository::Error::invalid)?;
            let page = call.repo.search(&request, 2, false).await?;
            match page.entries.as_slice() {
                [one] => one.id.to_string(),
                [] => {
                    return Err(ApiError::new(
                        Category::NotFound,
                        Issue::error(IssueType::NotFound, "No patient has that identifier").at("identifier"),
                    ));
                }
                _ => {
                    return Err(refuse(
                        Category::PreconditionFailed,
                        "identifier",
                        "More than one patient has that identifier; use Patient/[id]/$summary",
                    ));
                }
            }
        }
    };
    let doc: Value = crate::ips::summary(&call.repo, &id, &ctx.base, &Instant::now().to_fhir(), &[]).await?;
    Ok(ctx.respond_json(StatusCode::OK, &doc))
}
