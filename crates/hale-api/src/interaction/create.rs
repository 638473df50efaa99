//! create: <https://hl7.org/fhir/R4/http.html#create>, with conditional create
//! (`If-None-Exist`, <https://hl7.org/fhir/R4/http.html#ccreate>).

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use hale_repository::CreateOutcome;

use crate::{ApiError, ApiState, Call, read_resource};

pub async fn handle(st: &ApiState, ty: &str, call: &Call, body: Body) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let headers = &call.headers;
    let pretty = ctx.pretty;
    ctx.check_params(&[])?;
    let ty = hale_repository::resource_type(ty)?;
    let (resource, content) = read_resource(st, ty.as_str(), None, headers, body, pretty).await?;
    let if_none_exist =
        headers.get("if-none-exist").map(|v| v.to_str().unwrap_or("\u{fffd}").trim_start_matches('?').to_string());
    let if_none_exist = if_none_exist.as_deref().map(|v| {
        // the header may carry the whole URL: Patient?identifier=...
        v.split_once('?').map(|(_, q)| q).unwrap_or(v)
    });
    let apart = content.is_some();
    match call.repo.create_with(&ty, resource, content, if_none_exist).await? {
        CreateOutcome::Created(mut stored) => {
            if apart && ctx.wants_representation() {
                call.repo.whole(&mut stored).await?;
            }
            Ok(ctx.write_response(StatusCode::CREATED, &stored, "Created"))
        }
        CreateOutcome::Existing(stored) => {
            Ok(ctx.write_response(StatusCode::OK, &stored, "A matching resource exists; nothing was created"))
        }
    }
}
