//! FHIR R4 REST over HTTP (<https://hl7.org/fhir/R4/http.html>), mounted at `/fhir`.
//!
//! One module per interaction (`interaction/read.rs`...) and operation
//! (`operation/validate.rs`). This crate is the only one that knows HTTP status codes
//! and the OperationOutcome wire shape ([`error`]).

// No unwrap or expect on the request path (clippy.toml allows them in tests); the
// few justified exceptions carry an #[allow] with the reason.
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod cds_hooks;
pub mod content;
pub mod error;
mod interaction;
pub mod ips;
mod negotiate;
mod operation;
pub mod query;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use hale_fhir::{Category, Issue, IssueType};
use hale_repository::{Gate, Principal, PurposeOfUse, Repository, RequestContext};

pub use error::ApiError;
use negotiate::Ctx;
pub use negotiate::fhir_base;
pub use routes::{RoutePolicy, Routes};

/// Limits on requests.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    pub max_body_bytes: usize,
    /// Largest Binary content accepted in its own media type (R4 http, "Binary").
    pub max_binary_bytes: usize,
    pub json: hale_fhir::json::JsonLimits,
    pub default_page_size: usize,
    pub max_page_size: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_body_bytes: 16 * 1024 * 1024,
            max_binary_bytes: 64 * 1024 * 1024,
            json: Default::default(),
            default_page_size: 50,
            max_page_size: 1000,
        }
    }
}

/// What the FHIR API needs.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The gate: each request gets its own repository from it (the `Call` extractor); nothing
    /// here holds a raw store.
    pub gate: Gate,
    pub limits: ApiLimits,
    /// Public base URL of the FHIR endpoint when behind a proxy; else from `Host`.
    pub public_base: Option<String>,
    /// Type searches refuse unsupported parameters unless the client asks for lenient
    /// handling (else they ignore them unless the client asks for strict handling).
    pub strict_search: bool,
    pub software_version: String,
    /// Checks the access tokens callers present.
    pub tokens: Arc<hale_identity::TokenKeys>,
    /// Revoked tokens and break-the-glass grants.
    pub access: Arc<AccessCache>,
    /// Tokens whose signature this node has checked already.
    pub verified: Arc<VerifiedTokens>,
}

/// The claims of tokens whose signature was checked (an ES256 verification costs about
/// a third of a millisecond; a token is presented again and again), with the principal
/// they grant, parsed once. Keyed by the whole token text, so only the very same token
/// matches; its expiry is checked on every use, and revocation by [`AccessCache`].
/// Cleared when it holds [`VerifiedTokens::CAPACITY`].
#[derive(Debug, Default)]
pub struct VerifiedTokens {
    map: std::sync::RwLock<std::collections::HashMap<String, Arc<Verified>>>,
}

/// A token whose signature was checked: its claims, and the principal they grant (or
/// `None` when they grant none; [`hale_identity::token::principal_of`] says why).
#[derive(Debug)]
struct Verified {
    claims: hale_identity::AccessClaims,
    principal: Option<Principal>,
}

impl Verified {
    fn principal(&self) -> Result<Principal, hale_identity::TokenError> {
        match &self.principal {
            Some(p) => Ok(p.clone()),
            None => hale_identity::token::principal_of(self.claims.clone()),
        }
    }
}

impl VerifiedTokens {
    pub const CAPACITY: usize = 10_000;

    fn verify(&self, keys: &hale_identity::TokenKeys, token: &str) -> Result<Arc<Verified>, hale_identity::TokenError> {
        let now = hale_repository::Instant::now().millis() / 1000;
        // most requests present a token seen before: a shared lock finds it (an expired
        // one is checked again below, and refused)
        if let Some(v) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(token)
            && v.claims.exp > now
        {
            return Ok(v.clone());
        }
        let claims = keys.verify(token)?;
        let principal = hale_identity::token::principal_of(claims.clone()).ok();
        let v = Arc::new(Verified { claims, principal });
        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
        if m.len() >= Self::CAPACITY {
            m.clear();
        }
        m.insert(token.to_string(), v.clone());
        Ok(v)
    }
}

/// What the gate needs per request beyond the token, shared by every node through the
/// store and cached here for at most a second: the ids (`jti`) of access tokens revoked
/// before they expired, the accounts whose tokens issued before an instant are void
/// (disabled, or their password changed), and the break-the-glass grants in force. A change made through
/// this node is seen at once ([`AccessCache::invalidate`]); one made on another node
/// within a second.
#[derive(Debug, Default)]
pub struct AccessCache {
    cache: tokio::sync::RwLock<Option<(std::time::Instant, Arc<Cached>)>>,
}

#[derive(Debug, Default)]
struct Cached {
    revoked: std::collections::HashSet<String>,
    /// account id -> tokens issued before this instant (Unix milliseconds) are void
    void_before: std::collections::HashMap<String, i64>,
    /// account id -> (patient, reason, expires)
    glass: std::collections::HashMap<String, Vec<(String, String, i64)>>,
}

impl AccessCache {
    async fn get(&self, gate: &Gate) -> Result<Arc<Cached>, ApiError> {
        let fresh = |at: &std::time::Instant| at.elapsed() < std::time::Duration::from_secs(1);
        if let Some((at, c)) = &*self.cache.read().await
            && fresh(at)
        {
            return Ok(c.clone());
        }
        let mut w = self.cache.write().await;
        if let Some((at, c)) = &*w
            && fresh(at)
        {
            return Ok(c.clone());
        }
        let repo = gate.system("access-cache");
        let revoked = repo.auth_records("revoked-jti").await?.into_iter().map(|(k, _)| k).collect();
        let mut glass: std::collections::HashMap<String, Vec<(String, String, i64)>> = Default::default();
        for (account, patient, reason, expires) in repo.break_glass_grants().await? {
            glass.entry(account).or_default().push((patient, reason, expires));
        }
        let void_before = repo.voided_tokens().await?.into_iter().collect();
        let c = Arc::new(Cached { revoked, void_before, glass });
        *w = Some((std::time::Instant::now(), c.clone()));
        Ok(c)
    }

    /// Forgets the cached state, so the next request reads it again.
    pub async fn invalidate(&self) {
        *self.cache.write().await = None;
    }
}

type S = State<Arc<ApiState>>;

/// The request id the server's outermost layer gives every request (`X-Request-Id`),
/// as a request extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The opening every FHIR handler shares, done once by this extractor: content
/// negotiation (`Accept`, `_format`, `_pretty`, `Prefer`), the caller's
/// [`RequestContext`] (principal, request id, client address) and the repository made
/// for it, and the headers and query string the interaction reads further. A request
/// whose negotiation fails is answered here with its OperationOutcome.
pub(crate) struct Call {
    pub ctx: Ctx,
    pub repo: Repository,
    pub headers: HeaderMap,
    pub query: Option<String>,
}

impl FromRequestParts<Arc<ApiState>> for Call {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<ApiState>) -> Result<Self, ApiError> {
        let query = parts.uri.query().map(str::to_string);
        // a read of a Binary may ask for its own content type (R4 http, "Binary"): the
        // representation is chosen by the read, not refused here
        let binary_read = parts.method == Method::GET && interaction::read::is_binary_instance(parts.uri.path());
        let ctx = if binary_read {
            let mut h = parts.headers.clone();
            h.remove(header::ACCEPT);
            Ctx::new(&h, query.as_deref(), st.public_base.as_deref())?
        } else {
            Ctx::new(&parts.headers, query.as_deref(), st.public_base.as_deref())?
        };
        let request_id = match parts.extensions.get::<RequestId>() {
            Some(r) => r.0.clone(),
            None => uuid::Uuid::now_v7().to_string(),
        };
        let client = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let mut rc = RequestContext::anonymous(request_id, client);
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let mut checked = bearer(value)
                .ok_or(hale_identity::TokenError::Malformed)
                .and_then(|t| st.verified.verify(&st.tokens, t));
            let cached = st.access.get(&st.gate).await?;
            if let Ok(v) = &checked {
                // the rule introspection and the EHR launch apply, on the cached state
                let claims = &v.claims;
                let standing = hale_identity::token::Standing {
                    revoked: cached.revoked.contains(&claims.jti),
                    void_before: claims.account().and_then(|a| cached.void_before.get(a)).copied(),
                    account_disabled: false,
                };
                if let Err(e) = hale_identity::token::in_force(claims, &standing) {
                    checked = Err(e);
                }
            }
            match checked.and_then(|v| v.principal()) {
                Ok(principal) => {
                    let now = hale_repository::Instant::now().millis();
                    if let Principal::User(u) = &principal
                        && let Some(grants) = cached.glass.get(&u.account)
                    {
                        let live: Vec<&(String, String, i64)> = grants.iter().filter(|g| g.2 > now).collect();
                        if !live.is_empty() {
                            rc.break_glass = Some(hale_access::BreakGlass {
                                reason: live.iter().map(|g| g.1.as_str()).collect::<Vec<_>>().join("; "),
                                expires_at: live.iter().map(|g| g.2).min().unwrap_or(now),
                                patients: live.iter().map(|g| g.0.clone()).collect(),
                            });
                        }
                    }
                    rc.purpose_of_use = Some(match &principal {
                        Principal::User(u) if u.role == hale_access::Role::Patient => PurposeOfUse::PatientRequest,
                        Principal::User(_) if rc.break_glass.is_some() => PurposeOfUse::EmergencyTreatment,
                        Principal::User(_) => PurposeOfUse::Treatment,
                        _ => PurposeOfUse::Operations,
                    });
                    rc.principal = principal;
                }
                Err(e) => {
                    // a refused credential is audited, as the anonymous caller it leaves
                    st.gate.repository(rc).audit_refused_credentials(&e.to_string()).await?;
                    return Err(ApiError::new(
                        Category::Unauthorized,
                        Issue::error(IssueType::Login, format!("{}: {e}", "The request's credentials were refused")),
                    )
                    .with_header(
                        "www-authenticate",
                        format!("Bearer realm=\"hale\", error=\"invalid_token\", error_description=\"{e}\""),
                    )
                    .pretty(ctx.pretty));
                }
            }
        }
        let repo = st.gate.repository(rc);
        Ok(Call { ctx, repo, headers: parts.headers.clone(), query })
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is
/// case-insensitive, RFC 7235).
fn bearer(value: &axum::http::HeaderValue) -> Option<&str> {
    let s = value.to_str().ok()?;
    let (scheme, token) = s.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl Call {
    /// Errors answered in the representation the client asked for.
    fn finish(&self, r: Result<Response, ApiError>) -> Response {
        r.unwrap_or_else(|e| e.pretty(self.ctx.pretty).into_response())
    }
}

/// The `/fhir` routes, each with its access policy.
pub fn routes() -> Routes<Arc<ApiState>> {
    Routes::new()
        .public("/fhir/metadata", any(metadata))
        .gated("/fhir/_history", any(system_history))
        .gated("/fhir", any(system_level))
        // `[base]/` is the base: some clients post their transactions there
        .gated("/fhir/", any(system_level))
        .gated("/fhir/{type}", any(type_level))
        .gated("/fhir/{type}/_history", any(type_history))
        .gated("/fhir/{type}/{id}", any(instance_level))
        .gated("/fhir/{type}/{id}/_history", any(instance_history))
        .gated("/fhir/{type}/{id}/_history/{vid}", any(vread))
        .gated("/fhir/{type}/{id}/{op}", any(instance_operation))
        // CDS Hooks: discovery names services only; a service reads through the gate
        .public("/cds-services", any(cds_hooks::discovery))
        .gated("/cds-services/{id}", any(cds_hooks::service))
}

/// The `/fhir` router over `state`.
pub fn router(state: ApiState) -> Routes<()> {
    routes().with_state(Arc::new(state))
}

fn method_not_allowed(method: &Method, allowed: &str) -> Response {
    ApiError::new(
        Category::MethodNotAllowed,
        Issue::error(IssueType::NotSupported, format!("{method} is not supported on this URL (allowed: {allowed})")),
    )
    .with_header("allow", allowed.to_string())
    .into_response()
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

/// The answer to a request beyond the limit of requests in progress: 503 with an
/// OperationOutcome and `Retry-After`.
pub fn busy_response() -> Response {
    throttled(Category::Busy, "The server is at its limit of requests in progress; retry in a moment")
}

/// The answer to a client beyond its request rate: 429 with an OperationOutcome and
/// `Retry-After`.
pub fn rate_limited_response() -> Response {
    throttled(Category::RateLimited, "Too many requests from this client; retry in a moment")
}

/// A `throttled` OperationOutcome of `category`, to be retried after a second.
fn throttled(category: Category, text: &str) -> Response {
    ApiError::new(category, Issue::error(IssueType::Throttled, text))
        .with_header("retry-after", "1".to_string())
        .into_response()
}

async fn metadata(State(st): S, method: Method, call: Call) -> Response {
    if method != Method::GET {
        return method_not_allowed(&method, "GET");
    }
    call.finish(interaction::capabilities::handle(&st, &call))
}

async fn system_history(State(st): S, method: Method, call: Call) -> Response {
    if method != Method::GET {
        return method_not_allowed(&method, "GET");
    }
    call.finish(interaction::history::system(&st, &call).await)
}

async fn system_level(State(st): S, method: Method, call: Call, req: Request) -> Response {
    match method {
        Method::POST => call.finish(interaction::transaction::handle(&st, &call, req.into_body()).await),
        Method::GET => call.finish(interaction::search::system(&st, &call).await),
        m => method_not_allowed(&m, "GET, POST"),
    }
}

async fn type_level(State(st): S, Path(ty): Path<String>, method: Method, call: Call, req: Request) -> Response {
    let body = req.into_body();
    let r = match method {
        Method::POST => interaction::create::handle(&st, &ty, &call, body).await,
        Method::PUT => interaction::update::conditional(&st, &ty, &call, body).await,
        Method::DELETE => interaction::delete::conditional(&ty, &call).await,
        Method::GET => interaction::search::get(&st, &ty, &call).await,
        m => return method_not_allowed(&m, "GET, POST, PUT, DELETE"),
    };
    call.finish(r)
}

async fn type_history(State(st): S, Path(ty): Path<String>, method: Method, call: Call) -> Response {
    if method != Method::GET {
        return method_not_allowed(&method, "GET");
    }
    call.finish(interaction::history::type_level(&st, &ty, &call).await)
}

async fn instance_level(
    State(st): S,
    Path((ty, id)): Path<(String, String)>,
    method: Method,
    call: Call,
    req: Request,
) -> Response {
    let body = req.into_body();
    if id == "_search" {
        return match method {
            Method::POST => call.finish(interaction::search::post(&st, &ty, &call, body).await),
            m => method_not_allowed(&m, "POST"),
        };
    }
    if let Some(op) = id.strip_prefix('$') {
        // a type-level operation: POST /fhir/Patient/$validate
        return call.finish(operation::dispatch(&st, &method, &ty, None, op, &call, body).await);
    }
    let r = match method {
        Method::GET | Method::HEAD => interaction::read::handle(&ty, &id, &call).await,
        Method::PUT => interaction::update::handle(&st, &ty, &id, &call, body).await,
        Method::DELETE => interaction::delete::handle(&ty, &id, &call).await,
        Method::PATCH => interaction::patch::handle(&st, &ty, &id, &call, body).await,
        m => return method_not_allowed(&m, "GET, PUT, PATCH, DELETE"),
    };
    call.finish(r)
}

async fn instance_history(
    State(st): S,
    Path((ty, id)): Path<(String, String)>,
    method: Method,
    call: Call,
) -> Response {
    if method != Method::GET {
        return method_not_allowed(&method, "GET");
    }
    call.finish(interaction::history::instance(&st, &ty, &id, &call).await)
}

async fn vread(Path((ty, id, vid)): Path<(String, String, String)>, method: Method, call: Call) -> Response {
    if method != Method::GET {
        return method_not_allowed(&method, "GET");
    }
    call.finish(interaction::vread::handle(&ty, &id, &vid, &call).await)
}

async fn instance_operation(
    State(st): S,
    Path((ty, id, op)): Path<(String, String, String)>,
    method: Method,
    call: Call,
    req: Request,
) -> Response {
    let Some(op) = op.strip_prefix('$') else {
        // a compartment search: Patient/123/Observation
        return match method {
            Method::GET => call.finish(interaction::search::compartment(&st, &ty, &id, &op, &call).await),
            m => method_not_allowed(&m, "GET"),
        };
    };
    call.finish(operation::dispatch(&st, &method, &ty, Some(&id), op, &call, req.into_body()).await)
}

/// Reads the resource a create or update sends: FHIR JSON, or for a Binary any other
/// media type, which becomes the Binary's content (R4 http, "Binary"), kept apart from
/// its JSON.
async fn read_resource(
    st: &ApiState,
    ty: &str,
    id: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    pretty: bool,
) -> Result<(serde_json::Value, Option<hale_repository::Content>), ApiError> {
    match (ty, negotiate::native_content_type(headers)) {
        ("Binary", Some(ct)) => read_native_binary(st, id, &ct, headers, body, pretty).await,
        _ => Ok((read_json(st, headers, body, pretty).await?, None)),
    }
}

/// A Binary from content in its own media type: `contentType` is the request's
/// `Content-Type`, and `securityContext` the reference an `X-Security-Context` header
/// names. The bytes, under a limit of their own, are spooled to a file as they arrive,
/// never whole in memory; the store then takes them from it a part at a time.
async fn read_native_binary(
    st: &ApiState,
    id: Option<&str>,
    content_type: &str,
    headers: &HeaderMap,
    body: Body,
    pretty: bool,
) -> Result<(serde_json::Value, Option<hale_repository::Content>), ApiError> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let limit = st.limits.max_binary_bytes;
    let too_large = || {
        ApiError::new(
            Category::TooLarge,
            Issue::error(IssueType::TooLong, format!("The content is larger than the limit of {limit} bytes")),
        )
        .pretty(pretty)
    };
    if let Some(len) =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large());
    }
    let context = match headers.get("x-security-context") {
        None => None,
        Some(v) => {
            let r = v.to_str().unwrap_or("").trim();
            let ok = r.split_once('/').is_some_and(|(t, i)| {
                hale_repository::resource_type(t).is_ok() && hale_repository::resource_id(i).is_ok()
            });
            if !ok {
                return Err(ApiError::new(
                    Category::Invalid,
                    Issue::error(IssueType::Value, "X-Security-Context must be a reference such as Patient/123")
                        .at("X-Security-Context"),
                )
                .pretty(pretty));
            }
            Some(r.to_string())
        }
    };
    let spool_failed = |e: std::io::Error| {
        tracing::error!(error = %e, "a Binary's content could not be spooled");
        ApiError::new(Category::Internal, Issue::error(IssueType::Exception, "The content could not be received"))
            .pretty(pretty)
    };
    let (file, path) = tempfile::NamedTempFile::new().map_err(spool_failed)?.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut len = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        // a body that breaks off is a request that did not arrive
        let chunk = chunk.map_err(|_| {
            ApiError::new(Category::Invalid, Issue::error(IssueType::Invalid, "The content did not arrive whole"))
                .pretty(pretty)
        })?;
        len += chunk.len() as u64;
        if len > limit as u64 {
            return Err(too_large());
        }
        file.write_all(&chunk).await.map_err(spool_failed)?;
    }
    file.flush().await.map_err(spool_failed)?;
    drop(file);
    let mut b = serde_json::Map::new();
    b.insert("resourceType".into(), "Binary".into());
    if let Some(id) = id {
        b.insert("id".into(), id.into());
    }
    b.insert("contentType".into(), content_type.into());
    if let Some(r) = context {
        b.insert("securityContext".into(), serde_json::json!({ "reference": r }));
    }
    let content = (len > 0).then(|| hale_repository::Content::new(path, len));
    Ok((serde_json::Value::Object(b), content))
}

/// A stored resource's JSON text parsed; text that is not JSON (never written so) is an
/// internal error, logged, its detail not answered.
pub(crate) fn stored_json(body: &str) -> Result<serde_json::Value, ApiError> {
    serde_json::from_str(body).map_err(|err| {
        tracing::error!(error = %err, "stored resource is not JSON");
        ApiError::new(Category::Internal, Issue::error(IssueType::Exception, "A stored resource could not be read"))
    })
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
