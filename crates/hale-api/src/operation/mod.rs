//! One module per operation.

pub mod evaluate_measure;
pub mod patient_everything;
pub mod summary;
pub mod validate;

use axum::body::Body;
use axum::http::Method;
use axum::response::Response;
use hale_fhir::{Category, Issue, IssueType};

use crate::{ApiError, ApiState, Call};

/// The `parameter` entries of an operation's `Parameters` body (R4 operations, "POST
/// with a Parameters resource"); none for a GET or a POST without a body. A body that
/// is not a Parameters resource is a 400 naming the operation.
pub(crate) async fn body_parameters(
    st: &ApiState,
    method: &Method,
    call: &Call,
    body: Body,
    operation: &str,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let has_body = call.headers.get(axum::http::header::CONTENT_LENGTH).is_some_and(|l| l != "0")
        || call.headers.get(axum::http::header::TRANSFER_ENCODING).is_some();
    if method != Method::POST || !has_body {
        return Ok(Vec::new());
    }
    let p = crate::read_json(st, &call.headers, body, call.ctx.pretty).await?;
    if p["resourceType"] != "Parameters" {
        return Err(ApiError::new(
            Category::Invalid,
            Issue::error(IssueType::Invalid, format!("The body of ${operation} is a Parameters resource"))
                .at("resourceType"),
        ));
    }
    Ok(p["parameter"].as_array().cloned().unwrap_or_default())
}

#[allow(clippy::too_many_arguments)]
pub async fn dispatch(
    st: &ApiState,
    method: &Method,
    ty: &str,
    id: Option<&str>,
    op: &str,
    call: &Call,
    body: Body,
) -> Result<Response, ApiError> {
    match op {
        "everything" if ty == "Patient" && (method == Method::GET || method == Method::POST) => match id {
            Some(id) => patient_everything::handle(st, id, call).await,
            None => Err(ApiError::new(
                Category::NotSupported,
                Issue::error(
                    IssueType::NotSupported,
                    "$everything is supported on one patient: Patient/[id]/$everything",
                ),
            )),
        },
        "summary" if ty == "Patient" && (method == Method::GET || method == Method::POST) => {
            summary::handle(st, method, id, call, body).await
        }
        "evaluate-measure" if ty == "Measure" && (method == Method::GET || method == Method::POST) => {
            evaluate_measure::handle(st, method, id, call, body).await
        }
        "evaluate-measure" if ty == "Measure" => Err(ApiError::new(
            Category::MethodNotAllowed,
            Issue::error(IssueType::NotSupported, "$evaluate-measure takes a GET, or a POST with Parameters"),
        )
        .with_header("allow", "GET, POST".into())),
        "break-glass" if ty == "Patient" && method == Method::POST => match id {
            Some(id) => break_glass(st, id, call, body).await,
            None => Err(ApiError::new(
                Category::NotSupported,
                Issue::error(IssueType::NotSupported, "$break-glass is on one patient: Patient/[id]/$break-glass"),
            )),
        },
        "validate" if method == Method::POST => validate::handle(st, ty, id, call, body).await,
        "validate" => Err(ApiError::new(
            Category::MethodNotAllowed,
            Issue::error(IssueType::NotSupported, "$validate takes a POST with the resource"),
        )
        .with_header("allow", "POST".into())),
        other => {
            let shown: String = other.chars().take(64).collect();
            Err(ApiError::new(
                Category::NotSupported,
                Issue::error(IssueType::NotSupported, format!("Operation ${shown} is not supported")),
            ))
        }
    }
}

/// `POST Patient/[id]/$break-glass` with a `Parameters` resource naming the `reason`: a
/// clinician or nurse opens a record outside their relationship for an hour (Hale's own
/// operation; the grant and every access under it are flagged in the audit trail).
async fn break_glass(st: &ApiState, id: &str, call: &Call, body: Body) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let params = crate::read_json(st, &call.headers, body, ctx.pretty).await?;
    let reason = params["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "reason")
        .and_then(|p| p["valueString"].as_str())
        .filter(|_| params["resourceType"] == "Parameters");
    let Some(reason) = reason else {
        return Err(ApiError::new(
            Category::Invalid,
            Issue::error(IssueType::Required, "The body is a Parameters resource with a reason (valueString)")
                .at("Parameters.parameter"),
        )
        .pretty(ctx.pretty));
    };
    let id = hale_repository::resource_id(id)?;
    let expires = call.repo.break_glass(&id, reason).await?;
    st.access.invalidate().await;
    let out = serde_json::json!({"resourceType": "Parameters", "parameter": [
        {"name": "expires", "valueInstant": hale_repository::Instant::from_millis(expires).to_fhir()}
    ]});
    Ok(ctx.respond_json(axum::http::StatusCode::OK, &out))
}
