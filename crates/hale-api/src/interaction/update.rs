//! update: <https://hl7.org/fhir/R4/http.html#update> (update-as-create with the
//! client's id, `If-Match` version locking) and conditional update
//! (<https://hl7.org/fhir/R4/http.html#cond-update>).

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;

use crate::negotiate::if_match;
use crate::{ApiError, ApiState, Call, read_resource};

pub async fn handle(st: &ApiState, ty: &str, id: &str, call: &Call, body: Body) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let headers = &call.headers;
    let pretty = ctx.pretty;
    ctx.check_params(&[])?;
    let ty = hale_repository::resource_type(ty)?;
    let id = hale_repository::resource_id(id)?;
    let version = if_match(headers, pretty)?;
    let (resource, content) = read_resource(st, ty.as_str(), Some(id.as_str()), headers, body, pretty).await?;
    let apart = content.is_some();
    let mut out = call.repo.update_with(&ty, &id, resource, content, version).await?;
    if apart && ctx.wants_representation() {
        call.repo.whole(&mut out.stored).await?;
    }
    let status = if out.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(ctx.write_response(status, &out.stored, if out.created { "Created" } else { "Updated" }))
}

pub async fn conditional(st: &ApiState, ty: &str, call: &Call, body: Body) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let headers = &call.headers;
    let q = call.query.as_deref();
    let pretty = ctx.pretty;
    let ty = hale_repository::resource_type(ty)?;
    let version = if_match(headers, pretty)?;
    let (resource, content) = read_resource(st, ty.as_str(), None, headers, body, pretty).await?;
    let apart = content.is_some();
    let mut out = call.repo.conditional_update(&ty, q.unwrap_or(""), resource, content, version).await?;
    if apart && ctx.wants_representation() {
        call.repo.whole(&mut out.stored).await?;
    }
    let status = if out.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(ctx.write_response(status, &out.stored, if out.created { "Created" } else { "Updated" }))
}
