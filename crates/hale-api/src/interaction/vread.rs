//! vread: <https://hl7.org/fhir/R4/http.html#vread>

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::{ApiError, ApiState};

pub async fn handle(
    st: &ApiState,
    ty: &str,
    id: &str,
    vid: &str,
    headers: &HeaderMap,
    q: Option<&str>,
) -> Result<Response, ApiError> {
    let ctx = st.ctx(headers, q)?;
    let pretty = ctx.pretty;
    let run = async {
        ctx.check_params(&[])?;
        let ty = hale_repository::resource_type(ty)?;
        let id = hale_repository::resource_id(id)?;
        let vid = hale_repository::version_id(vid)?;
        let stored = st.repository.vread(&ty, &id, vid).await?;
        let mut r = ctx.respond(StatusCode::OK, ctx.stored_text(stored.body.as_deref().unwrap_or("")));
        ctx.version_headers(&mut r, &stored, false);
        Ok(r)
    };
    run.await.map_err(|e: ApiError| e.pretty(pretty))
}
