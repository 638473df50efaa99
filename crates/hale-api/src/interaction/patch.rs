//! patch: <https://hl7.org/fhir/R4/http.html#patch> with JSON Patch
//! (`application/json-patch+json`) or FHIRPath Patch (a `Parameters` resource as
//! `application/fhir+json`). The patched resource is validated before it is
//! stored; `If-Match` is honoured and a concurrent change makes the patch fail (412)
//! rather than be lost.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use hale_fhir::{Category, Issue, IssueType};

use crate::negotiate::if_match;
use crate::{ApiError, ApiState, Call};

pub async fn handle(st: &ApiState, ty: &str, id: &str, call: &Call, body: Body) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let headers = &call.headers;
    let pretty = ctx.pretty;
    ctx.check_params(&[])?;
    let ty = hale_repository::resource_type(ty)?;
    let id = hale_repository::resource_id(id)?;
    let version = if_match(headers, pretty)?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    let fhirpath = match media {
        "application/json-patch+json" => false,
        "application/fhir+json" | "application/json" => true,
        _ => {
            return Err(ApiError::new(
                Category::UnsupportedMediaType,
                Issue::error(
                    IssueType::NotSupported,
                    format!(
                        "PATCH takes application/json-patch+json (JSON Patch) or application/fhir+json (FHIRPath Patch, a Parameters resource); Content-Type was '{}'",
                        media.chars().take(64).collect::<String>()
                    ),
                ),
            ));
        }
    };
    let limit = st.limits.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            Category::TooLarge,
            Issue::error(IssueType::TooLong, format!("The body is larger than the limit of {limit} bytes")),
        )
    })?;
    let patch =
        hale_fhir::json::parse(&bytes, &st.limits.json).map_err(|e| ApiError::new(Category::Invalid, e.to_issue()))?;
    let out = if fhirpath {
        call.repo.patch_fhirpath(&ty, &id, &patch, version).await?
    } else {
        call.repo.patch_json(&ty, &id, &patch, version).await?
    };
    Ok(ctx.write_response(StatusCode::OK, &out.stored, "Patched"))
}
