//! vread: <https://hl7.org/fhir/R4/http.html#vread>

use axum::http::StatusCode;
use axum::response::Response;

use crate::{ApiError, Call};

pub async fn handle(ty: &str, id: &str, vid: &str, call: &Call) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    ctx.check_params(&[])?;
    let ty = hale_repository::resource_type(ty)?;
    let id = hale_repository::resource_id(id)?;
    let vid = hale_repository::version_id(vid)?;
    let stored = call.repo.vread(&ty, &id, vid).await?;
    let mut r = ctx.respond(StatusCode::OK, ctx.stored_text(stored.body.as_deref().unwrap_or("")));
    ctx.version_headers(&mut r, &stored, false);
    Ok(r)
}
