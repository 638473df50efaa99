//! delete: <https://hl7.org/fhir/R4/http.html#delete> (a versioned tombstone; history
//! stays) and conditional delete of a single match
//! (<https://hl7.org/fhir/R4/http.html#3.1.0.7.1>).

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hale_store::StoredResource;

use crate::negotiate::{Ctx, if_match};
use crate::{ApiError, ApiState};

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

pub async fn handle(
    st: &ApiState,
    ty: &str,
    id: &str,
    headers: &HeaderMap,
    q: Option<&str>,
) -> Result<Response, ApiError> {
    let ctx = st.ctx(headers, q)?;
    let pretty = ctx.pretty;
    let run = async {
        ctx.check_params(&[])?;
        let ty = hale_repository::resource_type(ty)?;
        let id = hale_repository::resource_id(id)?;
        let version = if_match(headers, pretty)?;
        Ok(answer(&ctx, st.repository.delete(&ty, &id, version).await?))
    };
    run.await.map_err(|e: ApiError| e.pretty(pretty))
}

pub async fn conditional(st: &ApiState, ty: &str, headers: &HeaderMap, q: Option<&str>) -> Result<Response, ApiError> {
    let ctx = st.ctx(headers, q)?;
    let pretty = ctx.pretty;
    let run = async {
        let ty = hale_repository::resource_type(ty)?;
        Ok(answer(&ctx, st.repository.conditional_delete(&ty, q.unwrap_or("")).await?))
    };
    run.await.map_err(|e: ApiError| e.pretty(pretty))
}
