//! The composition root: loads configuration, opens the store the configuration
//! names and wraps it in the [`Gate`] (the only place a store is opened; nothing public
//! here returns one), assembles the routers (`/fhir`, `/healthz`, `/readyz`) with
//! request ids, panic capture and request logging, and serves until SIGINT or SIGTERM.

// No unwrap or expect on the request path (clippy.toml allows them in tests); the
// few justified exceptions carry an #[allow] with the reason.
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod adt;
pub mod backup;
pub mod bulk;
pub mod config;
pub mod demo;
pub mod hl7;
pub mod measures;
pub mod metrics;
pub mod mllp;
pub mod orders_out;
pub mod synth;
pub mod users;

/// mimalloc instead of the system allocator for every program that links the server
/// (the binary, its tests and benchmarks): parsing, validating and indexing FHIR JSON
/// makes and frees many small objects, and glibc's malloc spent about a quarter of the
/// ingest path's CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hale_api::{ApiLimits, ApiState, RequestId, RoutePolicy, Routes};
pub use hale_auth::{clients, register_backend_client, register_client};
pub use hale_identity::TokenKeys;
use hale_repository::{Gate, Repository};
use hale_store::Store;
use tokio::net::TcpListener;

pub use config::Config;
pub use hale_repository::{Checkpoints, Repository as SystemRepository};

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot create data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("cannot open the store: {0}")]
    Store(#[from] hale_store::Error),
    #[error("cannot listen on {0}: {1}")]
    Listen(String, std::io::Error),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot read or create the token signing key in {0}: {1}")]
    Keys(String, std::io::Error),
    #[error("cannot read or store the keys every node shares: {0}")]
    SharedKeys(String),
    #[error("accounts: {0}")]
    Accounts(String),
    #[error("MLLP over TLS: {0}")]
    Tls(String),
    #[error("backup.key_file: {0}")]
    BackupKey(String),
    #[error("reading the search index's version: {0}")]
    Index(String),
}

/// Names of the key material in the store's `server_key` table.
const TOKEN_KEY: &str = "token-signing";
const AUDIT_KEY: &str = "audit-signing";

/// The token signing key and installation id. On SQLite those of the data directory
/// (created on first use). On PostgreSQL those every node of the database shares: the
/// first node to start stores its own (from its data directory) in the database, every
/// other node adopts the stored ones into its data directory (so `hale token` and the
/// files agree with the database), so a token issued by one node is accepted by all.
pub async fn token_keys(cfg: &Config, repo: &Repository) -> Result<TokenKeys, Error> {
    let keys_error = |e| Error::Keys(cfg.data_dir.display().to_string(), e);
    if !cfg.is_postgres() {
        return TokenKeys::open(&cfg.data_dir).map_err(keys_error);
    }
    let local = TokenKeys::material(&cfg.data_dir).map_err(keys_error)?;
    let shared = repo.shared_key(TOKEN_KEY, local.clone()).await.map_err(|e| Error::SharedKeys(e.to_string()))?;
    if shared == local {
        return TokenKeys::open(&cfg.data_dir).map_err(keys_error);
    }
    let keys = TokenKeys::adopt(&cfg.data_dir, &shared).map_err(keys_error)?;
    tracing::info!(kid = keys.kid(), issuer = keys.issuer(), "this node adopts the database's token signing key");
    Ok(keys)
}

/// The audit checkpoints and their signing key: those of the data directory on SQLite;
/// on PostgreSQL the key every node of the database shares (stored by the first node,
/// adopted by the others like [`token_keys`]), each checkpoint also kept in the
/// database, so `hale audit verify` on any node checks every node's checkpoints.
pub async fn checkpoints(cfg: &Config, repo: &Repository) -> Result<Checkpoints, Error> {
    if !cfg.is_postgres() {
        return Ok(Checkpoints::new(&cfg.data_dir));
    }
    let checkpoints = Checkpoints::shared(&cfg.data_dir);
    let audit_error = |e: hale_repository::AuditKeyError| Error::SharedKeys(e.to_string());
    let local = checkpoints.material().map_err(audit_error)?;
    let shared = repo.shared_key(AUDIT_KEY, local).await.map_err(|e| Error::SharedKeys(e.to_string()))?;
    if checkpoints.adopt(&shared).map_err(audit_error)? {
        tracing::info!("this node adopts the database's audit checkpoint key");
    }
    Ok(checkpoints)
}

/// The key in the key file `path` names; `None` when it is empty.
pub fn backup_key(path: &str) -> Result<Option<backup::Key>, String> {
    (!path.is_empty()).then(|| backup::Key::read(std::path::Path::new(path))).transpose()
}

/// Opens the store the configuration names: PostgreSQL for a `postgres://` URL,
/// otherwise the SQLite file.
async fn open_store(cfg: &Config) -> Result<Arc<dyn Store>, Error> {
    if cfg.is_postgres() {
        let store = hale_store_postgres::PgStore::open_with(
            &cfg.database_url,
            cfg.database_pool_size,
            std::time::Duration::from_millis(cfg.limits.statement_timeout_ms),
        )
        .await?;
        return Ok(Arc::new(store));
    }
    let path = cfg.sqlite_path();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::DataDir(parent.display().to_string(), e))?;
    }
    let store = hale_store_sqlite::SqliteStore::open(&path)?;
    store.set_statement_timeout(std::time::Duration::from_millis(cfg.limits.statement_timeout_ms));
    Ok(Arc::new(store))
}

/// The gate over the store the configuration names (creating or upgrading its schema).
pub async fn gate(cfg: &Config) -> Result<Gate, Error> {
    Ok(Gate::new(open_store(cfg).await?).with_own_base(&cfg.public_base_url))
}

/// The repository of a command (`import`, `export`, `reindex`, `synth`, `demo`,
/// `migrate-store`...) over the store the configuration names: the system principal,
/// named by `job`.
pub async fn system_repository(cfg: &Config, job: &str) -> Result<Repository, Error> {
    let repo = gate(cfg).await?.system(job);
    // a new store notes the version of its index rows before anything is written
    bulk::index_version(&repo).await.map_err(|e| Error::Index(bulk::first_issue(&e)))?;
    Ok(repo)
}

#[derive(Clone)]
struct Health {
    repository: Repository,
    /// The data directory, and the free space below which the node is not ready.
    data_dir: std::path::PathBuf,
    min_free_bytes: u64,
}

/// Bytes free for Hale on the file system holding `dir` (`statvfs`).
fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(h): State<Health>) -> Response {
    match free_bytes(&h.data_dir) {
        Ok(free) if free < h.min_free_bytes => {
            tracing::error!(free_bytes = free, "the data directory's disk is nearly full");
            return (StatusCode::SERVICE_UNAVAILABLE, "disk nearly full").into_response();
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "the data directory's free space could not be read");
            return (StatusCode::SERVICE_UNAVAILABLE, "disk unreadable").into_response();
        }
    }
    let started = std::time::Instant::now();
    let pinged = h.repository.ping().await;
    ::metrics::histogram!("hale_store_ping_seconds").record(started.elapsed().as_secs_f64());
    match pinged {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "store is not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}

/// Requests this process answered 500 (a 500 is a bug: the tests check it stays 0).
static INTERNAL_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many requests this process has answered 500 since it started.
pub fn internal_errors_answered() -> u64 {
    INTERNAL_ERRORS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Gives every request an id (`X-Request-Id`, kept if the client sent a sane one) and a
/// log span carrying it.
async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let mut req = req;
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    // the route's template, never the path itself (which may hold an id)
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let started = std::time::Instant::now();
    let mut resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let elapsed = started.elapsed();
    tracing::info!(parent: &span, status = resp.status().as_u16(), ms = elapsed.as_millis() as u64, "request");
    let status = resp.status().as_u16().to_string();
    ::metrics::counter!("hale_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    ::metrics::histogram!("hale_http_request_duration_seconds", "route" => route, "method" => method)
        .record(elapsed.as_secs_f64());
    if resp.status() == StatusCode::INTERNAL_SERVER_ERROR {
        INTERNAL_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(parent: &span, "answered 500");
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Every route of the application with its access policy.
fn routes(cfg: &Config, zone: hale_app::Zone, gate: Gate, tokens: Arc<TokenKeys>) -> Routes<()> {
    let api = hale_api::router(ApiState {
        gate: gate.clone(),
        limits: ApiLimits {
            max_body_bytes: cfg.limits.max_body_bytes,
            max_binary_bytes: cfg.limits.max_binary_bytes,
            json: hale_fhir::json::JsonLimits {
                max_depth: cfg.limits.max_json_depth,
                max_string_bytes: cfg.limits.max_string_bytes,
            },
            default_page_size: cfg.limits.default_page_size,
            max_page_size: cfg.limits.max_page_size,
        },
        public_base: (!cfg.public_base_url.is_empty()).then(|| cfg.public_base_url.clone()),
        strict_search: cfg.strict_search,
        software_version: env!("CARGO_PKG_VERSION").to_string(),
        tokens: tokens.clone(),
        access: Arc::default(),
        verified: Arc::default(),
    });
    let public_base = (!cfg.public_base_url.is_empty()).then(|| cfg.public_base_url.clone());
    let auth_state = Arc::new(hale_auth::AuthState::new(gate.clone(), tokens, public_base));
    let api = api.merge(hale_auth::routes(auth_state.clone())).merge(hale_app::routes(
        gate.clone(),
        auth_state,
        hale_app::Options {
            release: hale_app::Release {
                after_review_by_default: cfg.portal.release_results == "after_review",
                by_category: cfg
                    .portal
                    .release_by_category
                    .iter()
                    .map(|(k, v)| (k.to_ascii_uppercase(), v == "after_review"))
                    .collect(),
            },
            max_upload_bytes: cfg.limits.max_binary_bytes,
            time_zone: zone,
        },
    ));
    api.merge(health_routes().with_state(Health {
        repository: gate.system("readiness"),
        data_dir: cfg.data_dir.clone(),
        min_free_bytes: cfg.limits.min_free_disk_mb.saturating_mul(1 << 20),
    }))
}

/// The liveness, readiness and metrics routes (never refused by [`admit`]).
const HEALTH_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

fn health_routes() -> Routes<Health> {
    let [live, ready, metrics] = HEALTH_PATHS;
    Routes::new().public(live, get(healthz)).public(ready, get(readyz)).public(metrics, get(metrics::render))
}

/// The whole application over a gate.
fn app(cfg: &Config, zone: hale_app::Zone, gate: Gate, tokens: Arc<TokenKeys>) -> Router {
    let (router, declared) = routes(cfg, zone, gate, tokens).into_parts();
    for (path, policy) in &declared {
        tracing::debug!(path, policy = ?policy, "route");
    }
    router
        .fallback(hale_api::not_found)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            tracing::error!("a request handler panicked");
            hale_api::panic_response()
        }))
        .layer(middleware::from_fn_with_state(Arc::new(Admission::new(&cfg.limits)), admit))
        .layer(middleware::from_fn(request_id))
}

/// What a request must pass before it is served: its client's request rate (a token
/// bucket per address, when configured) and the limit of requests in progress.
struct Admission {
    permits: Arc<tokio::sync::Semaphore>,
    rates: Option<RateLimits>,
}

impl Admission {
    fn new(limits: &config::Limits) -> Self {
        Admission {
            permits: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_requests)),
            rates: (limits.requests_per_second_per_client > 0)
                .then(|| RateLimits::new(limits.requests_per_second_per_client)),
        }
    }
}

/// A token bucket per client address: `rate` tokens a second, at most `rate` saved.
struct RateLimits {
    rate: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (f64, std::time::Instant)>>,
}

impl RateLimits {
    /// Buckets kept before those idle for a minute are dropped.
    const MAX_CLIENTS: usize = 10_000;

    fn new(rate: u32) -> Self {
        RateLimits { rate: f64::from(rate), buckets: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }

    /// Takes a token for `client`; false when it has none left.
    fn admit(&self, client: std::net::IpAddr) -> bool {
        let now = std::time::Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() >= Self::MAX_CLIENTS {
            b.retain(|_, (_, at)| now.duration_since(*at) < std::time::Duration::from_secs(60));
        }
        let (tokens, at) = b.entry(client).or_insert((self.rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.rate);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Refuses at once, rather than queues: a client beyond its rate (429), and any request
/// while the limit of requests in progress is reached (503); otherwise holds a permit
/// while the request runs. The health routes always pass, so probes see a busy server
/// as alive.
async fn admit(
    axum::extract::State(a): axum::extract::State<Arc<Admission>>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    if HEALTH_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    if let Some(rates) = &a.rates
        && let Some(ip) = req.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
        && !rates.admit(ip)
    {
        tracing::warn!(client = %ip, "request refused: the client's request rate is exceeded");
        ::metrics::counter!("hale_http_requests_refused_total", "reason" => "rate").increment(1);
        return hale_api::rate_limited_response();
    }
    match a.permits.clone().try_acquire_owned() {
        Ok(_permit) => {
            let in_flight = ::metrics::gauge!("hale_http_requests_in_flight");
            in_flight.increment(1.0);
            let r = next.run(req).await;
            in_flight.decrement(1.0);
            r
        }
        Err(_) => {
            tracing::warn!("request refused: the limit of requests in progress is reached");
            ::metrics::counter!("hale_http_requests_refused_total", "reason" => "busy").increment(1);
            hale_api::busy_response()
        }
    }
}

/// Every route the server answers, with its declared access policy (for tests and
/// for operators' documentation).
pub fn declared_routes() -> Vec<(&'static str, RoutePolicy)> {
    let mut out = hale_api::routes().declared().to_vec();
    out.extend(hale_auth::declared());
    out.extend(hale_app::declared());
    out.extend_from_slice(health_routes().declared());
    out
}

/// A bound, not yet serving, server.
pub struct Server {
    listener: TcpListener,
    app: Router,
    gate: Gate,
    checkpoints: hale_repository::Checkpoints,
    first_admin: Option<(String, String)>,
    shutdown_timeout: std::time::Duration,
    /// The MLLP listener, when `hl7.mllp_listen` names an address.
    mllp: Option<(TcpListener, config::Hl7, Option<tokio_rustls::TlsAcceptor>)>,
    hl7: config::Hl7,
    /// The configuration and the key, when scheduled backups are on.
    backups: Option<(Config, Option<backup::Key>)>,
    /// HTTPS, when `tls_cert` and `tls_key` name a certificate.
    tls: Option<tokio_rustls::TlsAcceptor>,
    max_tls_handshakes: usize,
}

/// How often the server links new audit entries into the hash chain and signs a
/// checkpoint.
const AUDIT_CHAIN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Links pending audit entries into the chain, as the system principal; failures are
/// logged and retried on the next round.
async fn chain_audit(gate: &Gate, checkpoints: &hale_repository::Checkpoints) {
    let started = std::time::Instant::now();
    let chainer = gate.system("audit-chainer");
    match chainer.chain_audit(checkpoints).await {
        Ok(linked) => {
            ::metrics::counter!("hale_audit_entries_chained_total").increment(linked as u64);
            ::metrics::histogram!("hale_audit_chain_seconds").record(started.elapsed().as_secs_f64());
            // on PostgreSQL (whose nodes share their checkpoints) every entry is committed
            // unlinked and waits for a chainer: what is left after this round is the
            // backlog, counted by a partial index (SQLite's is its journal, counted as it
            // is appended to)
            if checkpoints.is_shared() {
                match chainer.audit_backlog().await {
                    Ok(n) => ::metrics::gauge!("hale_audit_unlinked_entries").set(n as f64),
                    Err(e) => tracing::warn!(error = %e, "the audit backlog could not be counted"),
                }
            }
        }
        Err(e) => {
            ::metrics::counter!("hale_audit_chain_failures_total").increment(1);
            tracing::error!(error = %e, "the audit trail could not be chained; retrying");
        }
    }
}

impl Server {
    /// Opens the store and binds the listener.
    pub async fn bind(cfg: &Config) -> Result<Server, Error> {
        metrics::handle();
        // a configuration made in code (not loaded) is checked here too
        let zone = cfg.zone()?;
        let gate = gate(cfg).await?;
        let listener = TcpListener::bind(&cfg.listen).await.map_err(|e| Error::Listen(cfg.listen.clone(), e))?;
        let mllp = match cfg.hl7.mllp_listen.as_str() {
            "" => None,
            addr => Some((
                TcpListener::bind(addr).await.map_err(|e| Error::Listen(addr.to_string(), e))?,
                cfg.hl7.clone(),
                mllp::tls_acceptor(&cfg.hl7).map_err(Error::Tls)?,
            )),
        };
        let system = gate.system("keys");
        let indexed = bulk::index_version(&system).await.map_err(|e| Error::Index(bulk::first_issue(&e)))?;
        let outdated = indexed < hale_search::extract::INDEX_VERSION;
        if outdated {
            tracing::warn!(
                store = indexed,
                this_hale = hale_search::extract::INDEX_VERSION,
                "an older Hale wrote the search index: searches may miss resources until `hale reindex` runs"
            );
        }
        ::metrics::gauge!("hale_search_index_outdated").set(if outdated { 1.0 } else { 0.0 });
        let checkpoints = checkpoints(cfg, &system).await?;
        let tokens = Arc::new(token_keys(cfg, &system).await?);
        let first_admin =
            users::ensure_first_admin(&gate.system("first-start")).await.map_err(|e| Error::Accounts(e.to_string()))?;
        Ok(Server {
            listener,
            app: app(cfg, zone, gate.clone(), tokens),
            gate,
            checkpoints,
            first_admin,
            shutdown_timeout: std::time::Duration::from_secs(cfg.shutdown_timeout_secs),
            mllp,
            hl7: cfg.hl7.clone(),
            backups: match cfg.backup.interval_secs {
                0 => None,
                _ => Some((cfg.clone(), backup_key(&cfg.backup.key_file).map_err(Error::BackupKey)?)),
            },
            tls: tls_acceptor(&cfg.tls_cert, &cfg.tls_key, "").map_err(Error::Tls)?,
            max_tls_handshakes: cfg.limits.max_tls_handshakes,
        })
    }

    /// The address of the MLLP listener, when there is one.
    pub fn mllp_addr(&self) -> Option<SocketAddr> {
        self.mllp.as_ref().and_then(|(l, _, _)| l.local_addr().ok())
    }

    /// On the first start: the administrator's user name and one-time password, for
    /// the operator to see once (never logged).
    pub fn first_admin(&self) -> Option<&(String, String)> {
        self.first_admin.as_ref()
    }

    pub fn local_addr(&self) -> SocketAddr {
        // getsockname on a socket bound at start-up: it has an address
        #[allow(clippy::expect_used)]
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests, for at most
    /// the configured shutdown timeout (a client that never finishes its request does
    /// not keep the server running). Each request knows its client's address (for the
    /// request context and the audit). Links new audit entries into the hash chain
    /// every second meanwhile, and once more at the end.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<(), Error> {
        let (gate, checkpoints) = (self.gate.clone(), self.checkpoints.clone());
        let chainer = tokio::spawn(async move {
            let mut tick = tokio::time::interval(AUDIT_CHAIN_EVERY);
            loop {
                tick.tick().await;
                chain_audit(&gate, &checkpoints).await;
            }
        });
        // HL7 v2 over MLLP: an acknowledged message is already committed, so stopping it
        // at any point loses nothing the sender was told was received
        let mllp =
            self.mllp.map(|(listener, cfg, tls)| tokio::spawn(mllp::serve(listener, self.gate.clone(), cfg, tls)));
        // laboratory orders out: what is queued is in the store, so stopping at any point
        // loses nothing (an unanswered message is sent again with the same MSH-10)
        let orders = (!self.hl7.orders_to.is_empty())
            .then(|| tokio::spawn(orders_out::run(self.gate.system("hl7-orders"), self.hl7.clone())));
        // scheduled backups: a backup is written beside its final name and renamed, so
        // stopping at any point leaves no partial file under a backup's name
        let backups = self.backups.map(|(cfg, key)| tokio::spawn(backup::scheduled(cfg, key)));
        let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = stopping.send(());
        };
        let mut accepting = None;
        let serving: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> = match self.tls {
            None => Box::pin(
                axum::serve(self.listener, self.app.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(signal)
                    .into_future(),
            ),
            Some(acceptor) => {
                let local = self.listener.local_addr().map_err(Error::Serve)?;
                let (ready_tx, ready) = tokio::sync::mpsc::channel(64);
                accepting = Some(tokio::spawn(accept_tls(self.listener, acceptor, ready_tx, self.max_tls_handshakes)));
                let app = self.app.layer(middleware::from_fn(over_tls));
                Box::pin(
                    axum::serve(TlsListener { ready, local }, app.into_make_service_with_connect_info::<TlsPeer>())
                        .with_graceful_shutdown(signal)
                        .into_future(),
                )
            }
        };
        let timeout = self.shutdown_timeout;
        let deadline = async move {
            if stopped.await.is_err() {
                // the server stopped by itself
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(timeout).await;
        };
        let served = tokio::select! {
            r = serving => r.map_err(Error::Serve),
            () = deadline => {
                tracing::warn!(seconds = timeout.as_secs(), "in-flight requests did not finish within the shutdown timeout; stopping");
                Ok(())
            }
        };
        chainer.abort();
        for task in [mllp, orders, backups, accepting].into_iter().flatten() {
            task.abort();
        }
        chain_audit(&self.gate, &self.checkpoints).await;
        served
    }
}

/// A TLS acceptor from a PEM certificate chain and private key (rustls with aws-lc-rs);
/// `None` when both paths are empty. `prefix` names the keys in messages (`hl7.`).
pub fn tls_acceptor(cert: &str, key: &str, prefix: &str) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    match (cert, key) {
        ("", "") => Ok(None),
        ("", _) | (_, "") => Err(format!("{prefix}tls_cert and {prefix}tls_key go together")),
        (cert, key) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{prefix}tls_cert {cert}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("{prefix}tls_cert {cert}: no certificate in the file"));
            }
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{prefix}tls_key {key}: {e}"))?;
            let mut config =
                rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_no_client_auth()
                    .with_single_cert(certs, key)
                    .map_err(|e| format!("{prefix}tls_cert and {prefix}tls_key: {e}"))?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
        }
    }
}

/// The longest a client may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The HTTP listener over TLS: TCP connections are accepted and their handshakes run
/// in their own tasks (a slow or plain-HTTP client holds up nobody, and gets no
/// answer), and finished ones are handed to the server.
struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // the accepting task ended (the server is stopping): accept nothing more
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Accepts TCP connections on `listener` and hands each finished TLS handshake on; at
/// most `max_handshakes` run at once, and a connection beyond them is closed at once.
async fn accept_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    ready: tokio::sync::mpsc::Sender<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    max_handshakes: usize,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_handshakes));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "a connection could not be accepted");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(client = %peer, "connection closed: the limit of TLS handshakes in progress is reached");
            ::metrics::counter!("hale_http_requests_refused_total", "reason" => "handshakes").increment(1);
            drop(stream);
            continue;
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(client = %peer, error = %e, "a TLS handshake failed (plain HTTP?)"),
                Err(_) => tracing::debug!(client = %peer, "a TLS handshake took too long"),
            }
        });
    }
}

/// The client's address of a TLS connection, as axum hands it to the router.
#[derive(Clone, Copy, Debug)]
struct TlsPeer(SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for TlsPeer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        TlsPeer(*stream.remote_addr())
    }
}

/// Over TLS: the client's address where every handler looks for it
/// (`ConnectInfo<SocketAddr>`), and `Strict-Transport-Security` on every answer.
async fn over_tls(mut req: axum::extract::Request, next: middleware::Next) -> axum::response::Response {
    if let Some(axum::extract::ConnectInfo(TlsPeer(addr))) =
        req.extensions().get::<axum::extract::ConnectInfo<TlsPeer>>().copied()
    {
        req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
    }
    let mut resp = next.run(req).await;
    resp.headers_mut().insert("strict-transport-security", HeaderValue::from_static("max-age=31536000"));
    resp
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
