//! delete: <https://hl7.org/fhir/R4/http.html#delete> (a versioned tombstone; history
//! stays) and conditional delete of a single match
//! (<https://hl7.org/fhir/R4/http.html#3.1.0.7.1>).

use axum::http::StatusCode;
use axum::response::Response;
use hale_repository::StoredResource;

use crate::negotiate::{Ctx, if_match};
use crate::{ApiError, Call};

fn answer(ctx: &Ctx, deleted: Option<StoredResource>) -> Response {
    match deleted {
        Some(stored) => {
            let mut r = ctx.respond(StatusCode::NO_CONTENT, String::new());
            r.headers_mut().remove(axum::http::header::CONTENT_TYPE);
            ctx.version_headers(&mut r, &stored, false);
            r
        }
        None => {
            let mut r = ctx.respond(StatusCode::NO_CONTENT, String::new());
            r.headers_mut().remove(axum::http::header::CONTENT_TYPE);
            r
        }
    }
}

pub async fn handle(ty: &str, id: &str, call: &Call) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let headers = &call.headers;
    let pretty = ctx.pretty;
    ctx.check_params(&[])?;
    let ty = hale_repository::resource_type(ty)?;
    let id = hale_repository::resource_id(id)?;
    let version = if_match(headers, pretty)?;
    Ok(answer(ctx, call.repo.delete(&ty, &id, version).await?))
}

pub async fn conditional(ty: &str, call: &Call) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let q = call.query.as_deref();
    let ty = hale_repository::resource_type(ty)?;
    Ok(answer(ctx, call.repo.conditional_delete(&ty, q.unwrap_or("")).await?))
}
