//! One module per operation.

pub mod patient_everything;
pub mod validate;

use axum::body::Body;
use axum::http::Method;
use axum::response::Response;
use hale_fhir::{Category, Issue, IssueType};

use crate::{ApiError, ApiState, Call};

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
