//! read: <https://hl7.org/fhir/R4/http.html#read>

use axum::http::{StatusCode, header};
use axum::response::Response;

use crate::{ApiError, Call};

pub async fn handle(ty: &str, id: &str, call: &Call) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let headers = &call.headers;
    ctx.check_params(&[])?;
    let ty = hale_repository::resource_type(ty)?;
    let id = hale_repository::resource_id(id)?;
    let stored = call.repo.read(&ty, &id).await?;
    // conditional read: If-None-Match with the current ETag
    let etag = format!("W/\"{}\"", stored.version);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == format!("\"{}\"", stored.version)))
    {
        let mut r = ctx.respond(StatusCode::NOT_MODIFIED, String::new());
        r.headers_mut().remove(header::CONTENT_TYPE);
        ctx.version_headers(&mut r, &stored, false);
        return Ok(r);
    }
    let mut r = ctx.respond(StatusCode::OK, ctx.stored_text(stored.body.as_deref().unwrap_or("")));
    ctx.version_headers(&mut r, &stored, false);
    Ok(r)
}
