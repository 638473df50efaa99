//! FHIR R4 REST over HTTP (<https://hl7.org/fhir/R4/http.html>), mounted at `/fhir`.
//!
//! One module per interaction (`interaction/read.rs`...) and operation
//! (`operation/validate.rs`). This crate is the only one that knows HTTP status codes
//! and the OperationOutcome wire shape ([`error`]).

pub mod error;
mod interaction;
mod negotiate;
mod operation;
pub mod query;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use hale_fhir::{Category, Issue, IssueType};
use hale_repository::Repository;

pub use error::ApiError;
use negotiate::Ctx;

/// Limits on requests.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    pub max_body_bytes: usize,
    pub json: hale_fhir::json::JsonLimits,
    pub default_page_size: usize,
    pub max_page_size: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_body_bytes: 16 * 1024 * 1024,
            json: Default::default(),
            default_page_size: 50,
            max_page_size: 1000,
        }
    }
}

/// What the FHIR API needs.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The gate. Requests get it from here; nothing here holds a raw store.
    pub repository: Repository,
    pub limits: ApiLimits,
    /// Public base URL of the FHIR endpoint when behind a proxy; else from `Host`.
    pub public_base: Option<String>,
    pub software_version: String,
}

type S = State<Arc<ApiState>>;

impl ApiState {
    fn ctx(&self, headers: &HeaderMap, raw: Option<&str>) -> Result<Ctx, ApiError> {
        Ctx::new(headers, raw, self.public_base.as_deref())
    }
}

/// The `/fhir` router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/fhir/metadata", any(metadata))
        .route("/fhir/_history", any(system_history))
        .route("/fhir", any(system_level))
        .route("/fhir/{type}", any(type_level))
        .route("/fhir/{type}/_history", any(type_history))
        .route("/fhir/{type}/{id}", any(instance_level))
        .route("/fhir/{type}/{id}/_history", any(instance_history))
        .route("/fhir/{type}/{id}/_history/{vid}", any(vread))
        .route("/fhir/{type}/{id}/{op}", any(instance_operation))
        .fallback(not_found)
        .with_state(Arc::new(state))
}

fn method_not_allowed(method: &Method, allowed: &str) -> Response {
    ApiError::new(
        Category::MethodNotAllowed,
        Issue::error(IssueType::NotSupported, format!("{method} is not supported on this URL (allowed: {allowed})")),
    )
    .with_header("allow", allowed.to_string())
    .into_response()
}

fn unwrap(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// Any URL outside the FHIR API's shape.
pub async fn not_found() -> Response {
    ApiError::new(Category::NotFound, Issue::error(IssueType::NotFound, "There is nothing at this URL")).into_response()
}

/// The answer to a panic: a 500 OperationOutcome with nothing of the panic in it.
pub fn panic_response() -> Response {
    ApiError::new(
        Category::Internal,
        Issue::error(IssueType::Exception, "The server could not complete the request; the failure is logged"),
    )
    .into_response()
}

async fn metadata(State(st): S, method: Method, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    if method != Method::GET {
        return method_not_allowed(&method, "GET");
    }
    unwrap(interaction::capabilities::handle(&st, &headers, q.as_deref()))
}

async fn system_history(State(st): S, method: Method, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    if method != Method::GET {
        return method_not_allowed(&method, "GET");
    }
    unwrap(interaction::history::system(&st, &headers, q.as_deref()).await)
}

async fn system_level(
    State(st): S,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    req: Request,
) -> Response {
    match method {
        Method::POST => unwrap(interaction::transaction::handle(&st, &headers, q.as_deref(), req.into_body()).await),
        Method::GET => unwrap(interaction::search::system(&st, &headers, q.as_deref()).await),
        m => method_not_allowed(&m, "GET, POST"),
    }
}

async fn type_level(
    State(st): S,
    Path(ty): Path<String>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    req: Request,
) -> Response {
    let body = req.into_body();
    unwrap(match method {
        Method::POST => interaction::create::handle(&st, &ty, &headers, q.as_deref(), body).await,
        Method::PUT => interaction::update::conditional(&st, &ty, &headers, q.as_deref(), body).await,
        Method::DELETE => interaction::delete::conditional(&st, &ty, &headers, q.as_deref()).await,
        Method::GET => interaction::search::get(&st, &ty, &headers, q.as_deref()).await,
        m => return method_not_allowed(&m, "GET, POST, PUT, DELETE"),
    })
}

async fn type_history(
    State(st): S,
    Path(ty): Path<String>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if method != Method::GET {
        return method_not_allowed(&method, "GET");
    }
    unwrap(interaction::history::type_level(&st, &ty, &headers, q.as_deref()).await)
}

async fn instance_level(
    State(st): S,
    Path((ty, id)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    req: Request,
) -> Response {
    let body = req.into_body();
    if id == "_search" {
        return match method {
            Method::POST => unwrap(interaction::search::post(&st, &ty, &headers, q.as_deref(), body).await),
            m => method_not_allowed(&m, "POST"),
        };
    }
    if let Some(op) = id.strip_prefix('$') {
        // a type-level operation: POST /fhir/Patient/$validate
        return unwrap(operation::dispatch(&st, &method, &ty, None, op, &headers, q.as_deref(), body).await);
    }
    unwrap(match method {
        Method::GET | Method::HEAD => interaction::read::handle(&st, &ty, &id, &headers, q.as_deref()).await,
        Method::PUT => interaction::update::handle(&st, &ty, &id, &headers, q.as_deref(), body).await,
        Method::DELETE => interaction::delete::handle(&st, &ty, &id, &headers, q.as_deref()).await,
        Method::PATCH => interaction::patch::handle(&st, &ty, &id, &headers, q.as_deref(), body).await,
        m => return method_not_allowed(&m, "GET, PUT, PATCH, DELETE"),
    })
}

async fn instance_history(
    State(st): S,
    Path((ty, id)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if method != Method::GET {
        return method_not_allowed(&method, "GET");
    }
    unwrap(interaction::history::instance(&st, &ty, &id, &headers, q.as_deref()).await)
}

async fn vread(
    State(st): S,
    Path((ty, id, vid)): Path<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if method != Method::GET {
        return method_not_allowed(&method, "GET");
    }
    unwrap(interaction::vread::handle(&st, &ty, &id, &vid, &headers, q.as_deref()).await)
}

async fn instance_operation(
    State(st): S,
    Path((ty, id, op)): Path<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    req: Request,
) -> Response {
    let Some(op) = op.strip_prefix('$') else {
        // a compartment search: Patient/123/Observation
        return match method {
            Method::GET => unwrap(interaction::search::compartment(&st, &ty, &id, &op, &headers, q.as_deref()).await),
            m => method_not_allowed(&m, "GET"),
        };
    };
    unwrap(operation::dispatch(&st, &method, &ty, Some(&id), op, &headers, q.as_deref(), req.into_body()).await)
}

/// Reads a request body under the size limit and parses it as FHIR JSON.
async fn read_json(
    st: &ApiState,
    headers: &HeaderMap,
    body: Body,
    pretty: bool,
) -> Result<serde_json::Value, ApiError> {
    negotiate::check_content_type(headers, pretty)?;
    let limit = st.limits.max_body_bytes;
    let too_large = || {
        ApiError::new(
            Category::TooLarge,
            Issue::error(IssueType::TooLong, format!("The body is larger than the limit of {limit} bytes")),
        )
        .pretty(pretty)
    };
    if let Some(len) =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| too_large())?;
    if bytes.is_empty() {
        return Err(ApiError::new(Category::Invalid, Issue::error(IssueType::Required, "The request has no body"))
            .pretty(pretty));
    }
    hale_fhir::json::parse(&bytes, &st.limits.json).map_err(|e| {
        let category = match e {
            hale_fhir::json::JsonError::Syntax(_) => Category::Invalid,
            _ => Category::TooLarge,
        };
        ApiError::new(category, e.to_issue()).pretty(pretty)
    })
}
