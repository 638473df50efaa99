//! update: <https://hl7.org/fhir/R4/http.html#update> (update-as-create with the
//! client's id, `If-Match` version locking) and conditional update
//! (<https://hl7.org/fhir/R4/http.html#cond-update>).

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::negotiate::if_match;
use crate::{ApiError, ApiState, read_json};

pub async fn handle(
    st: &ApiState,
    ty: &str,
    id: &str,
    headers: &HeaderMap,
    q: Option<&str>,
    body: Body,
) -> Result<Response, ApiError> {
    let ctx = st.ctx(headers, q)?;
    let pretty = ctx.pretty;
    let run = async {
        ctx.check_params(&[])?;
        let ty = hale_repository::resource_type(ty)?;
        let id = hale_repository::resource_id(id)?;
        let version = if_match(headers, pretty)?;
        let resource = read_json(st, headers, body, pretty).await?;
        let out = st.repository.update(&ty, &id, resource, version).await?;
        let status = if out.created { StatusCode::CREATED } else { StatusCode::OK };
        Ok(ctx.write_response(status, &out.stored, if out.created { "Created" } else { "Updated" }))
    };
    run.await.map_err(|e: ApiError| e.pretty(pretty))
}

pub async fn conditional(
    st: &ApiState,
    ty: &str,
    headers: &HeaderMap,
    q: Option<&str>,
    body: Body,
) -> Result<Response, ApiError> {
    let ctx = st.ctx(headers, q)?;
    let pretty = ctx.pretty;
    let run = async {
        let ty = hale_repository::resource_type(ty)?;
        let version = if_match(headers, pretty)?;
        let resource = read_json(st, headers, body, pretty).await?;
        let out = st.repository.conditional_update(&ty, q.unwrap_or(""), resource, version).await?;
        let status = if out.created { StatusCode::CREATED } else { StatusCode::OK };
        Ok(ctx.write_response(status, &out.stored, if out.created { "Created" } else { "Updated" }))
    };
    run.await.map_err(|e: ApiError| e.pretty(pretty))
}
