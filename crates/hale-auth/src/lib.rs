//! The SMART App Launch 2 authorization server (<https://hl7.org/fhir/smart-app-launch/>)
//! under `/auth`, and `/.well-known/smart-configuration` beside the FHIR base.
//!
//! - `GET /auth/authorize`: checks the client and its exact redirect URI (a mismatch is
//!   answered here, never redirected), PKCE (S256 only) and the scopes; asks a caller
//!   without a session to sign in (`/auth/login`: password, TOTP for the roles that
//!   need it, throttled per account and per address); then shows the consent page
//!   (what the app asks for in plain words; a patient picker for staff when the app
//!   asks for `launch/patient`).
//! - `POST /auth/authorize`: the decision; approval returns a single-use code (60 s).
//! - `POST /auth/token`: code + verifier, or a refresh token (rotated; a reused one
//!   revokes its whole family). Access tokens live an hour; `openid fhirUser` adds a
//!   signed ID token. SMART Backend Services: `client_credentials` with a client
//!   assertion (`private_key_jwt`, RS384 or ES384) signed by a key of the client's
//!   registered JWK Set, each `jti` accepted once; a five-minute token with the
//!   `system/` scopes asked for, within those registered for the client.
//! - `POST /auth/launch`: the EHR side of an EHR launch: a signed-in clinician or nurse
//!   (a Bearer user token) names a patient they may see and an app; answers an opaque,
//!   single-use `launch` (five minutes) that the app's `GET /auth/authorize` with scope
//!   `launch` takes, so the patient in context comes from the EHR, not a picker.
//! - `POST /auth/revoke` (RFC 7009), `POST /auth/introspect` (RFC 7662, for confidential
//!   clients), `GET /auth/jwks`, `POST /auth/logout`.
//!
//! Sessions are server-side records (the cookie holds a random id; the store holds its
//! hash), HttpOnly, SameSite=Lax, Secure when the public base is https, with an idle
//! timeout and an absolute lifetime; every form carries a CSRF token. Every sign-in,
//! refusal and token is audited. Secrets are stored as hashes only.

// No unwrap or expect on the request path (clippy.toml allows them in tests); the
// few justified exceptions carry an #[allow] with the reason.
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod backend;
mod launch;
mod pages;
mod token;

pub use pages::{INVITATION, RESET, esc, user_context};

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hale_api::Routes;
use hale_identity::{Account, TokenKeys};
use hale_repository::{Gate, Repository};
use sha2::Digest;

/// How long a sign-in session lasts without use.
pub const SESSION_IDLE: Duration = Duration::from_secs(15 * 60);
/// The longest a session lasts.
pub const SESSION_MAX: Duration = Duration::from_secs(12 * 3600);
/// Failed sign-ins within [`THROTTLE_WINDOW`] that lock an account.
pub const MAX_FAILURES_PER_ACCOUNT: usize = 5;
/// Failed sign-ins within [`THROTTLE_WINDOW`] that lock a client address.
pub const MAX_FAILURES_PER_ADDRESS: usize = 20;
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long an authorization code is valid.
pub const CODE_LIFETIME_MS: i64 = 60_000;
/// How long an access token lives.
pub const ACCESS_LIFETIME_S: i64 = 3600;
/// How long a refresh token lives.
pub const REFRESH_LIFETIME_MS: i64 = 30 * 24 * 3600 * 1000;
/// How long a backend service's access token lives (SMART recommends five minutes).
pub const BACKEND_LIFETIME_S: i64 = 300;
/// How long an EHR launch waits for its app.
pub const LAUNCH_LIFETIME_S: i64 = 300;

/// What the authorization server needs.
#[derive(Debug, Clone)]
pub struct AuthState {
    pub gate: Gate,
    pub tokens: Arc<TokenKeys>,
    /// The public base URL of the server (`https://ehr.example.org`), when behind a
    /// proxy; else from `Host`.
    pub public_base: Option<String>,
}

impl AuthState {
    pub fn new(gate: Gate, tokens: Arc<TokenKeys>, public_base: Option<String>) -> Self {
        AuthState { gate, tokens, public_base }
    }

    /// The authorization server's own repository: the system principal `auth`, which
    /// reads accounts and writes sessions, codes and tokens (all audited).
    fn system(&self) -> Repository {
        self.gate.system("auth")
    }

    /// `https://host` (no trailing slash).
    fn base(&self, headers: &HeaderMap) -> String {
        if let Some(b) = &self.public_base {
            return b.trim_end_matches('/').trim_end_matches("/fhir").to_string();
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        format!("http://{host}")
    }

    fn secure_cookies(&self) -> bool {
        self.public_base.as_deref().is_some_and(|b| b.starts_with("https://"))
    }

    /// Whether `key` (`user:<name>` or `ip:<address>`) has had `max` failed sign-ins
    /// within [`THROTTLE_WINDOW`], counted in the store so that every node counts the
    /// failures of all: each failure is its own `auth_record` of kind [`FAILURE_KIND`]
    /// (key: a hash of `key`, then a unique id; expiring with the window), so failures
    /// on several nodes at once are all counted. `Err` when the store cannot say.
    async fn locked(&self, key: &str, max: usize) -> Result<bool, hale_repository::Error> {
        Ok(self.system().count_auth_records(FAILURE_KIND, &failure_prefix(key)).await? >= max as u64)
    }

    /// Counts a failed sign-in against `key`; a failure to count it is logged.
    async fn failed(&self, key: &str) {
        let expires = now_ms() + THROTTLE_WINDOW.as_millis() as i64;
        let id = format!("{}{}", failure_prefix(key), uuid::Uuid::now_v7());
        let body = serde_json::json!({});
        // writing one also removes the expired ones
        if let Err(e) = self.system().put_auth_record(FAILURE_KIND, &id, &body, Some(expires), None).await {
            tracing::error!(error = %e, "a failed sign-in could not be counted");
        }
    }

    /// Forgets the failures of `key` after a successful sign-in.
    async fn succeeded(&self, key: &str) {
        if let Err(e) = self.system().remove_auth_records(FAILURE_KIND, &failure_prefix(key)).await {
            tracing::error!(error = %e, "the failed sign-ins could not be forgotten");
        }
    }
}

/// The kind of the `auth_record`s that count failed sign-ins, one per failure.
pub const FAILURE_KIND: &str = "login-failure";

/// The start of the keys of `key`'s failures: a hash of it (fixed length, so no key is
/// another's prefix) and a dot.
fn failure_prefix(key: &str) -> String {
    format!("{}.", hash_secret(key))
}

/// The routes of the authorization server over `state`.
pub fn routes(state: Arc<AuthState>) -> Routes<()> {
    unstated().with_state(state)
}

/// Every route of the authorization server with its policy.
pub fn declared() -> Vec<(&'static str, hale_api::RoutePolicy)> {
    unstated().declared().to_vec()
}

fn unstated() -> Routes<Arc<AuthState>> {
    Routes::new()
        .authorization("/.well-known/smart-configuration", get(token::smart_configuration))
        .authorization("/fhir/.well-known/smart-configuration", get(token::smart_configuration))
        .authorization("/auth/jwks", get(token::jwks))
        .authorization("/auth/authorize", get(pages::authorize).post(pages::decide))
        .authorization("/auth/login", get(pages::login_page).post(pages::login))
        .authorization("/auth/password", post(pages::change_password))
        .authorization("/auth/logout", post(pages::logout))
        .authorization("/auth/activate", get(pages::activate_page).post(pages::activate))
        .authorization("/auth/reset", get(pages::reset_page).post(pages::reset))
        .authorization("/auth/token", post(token::token))
        .authorization("/auth/launch", post(launch::create))
        .authorization("/auth/revoke", post(token::revoke))
        .authorization("/auth/introspect", post(token::introspect))
}

type St = axum::extract::State<Arc<AuthState>>;

/// SHA-256, base64url: how secrets (session ids, codes, refresh tokens, client
/// secrets) are stored.
pub fn hash_secret(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(s.as_bytes()))
}

/// 256 random bits, base64url.
pub fn random_secret() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn now_ms() -> i64 {
    hale_repository::Instant::now().millis()
}

/// A cookie's value from the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// A registered client.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Client {
    pub id: String,
    pub name: String,
    /// Exact redirect URIs; nothing else is accepted.
    pub redirect_uris: Vec<String>,
    /// Confidential clients authenticate to the token endpoint with their secret.
    pub confidential: bool,
    /// The hash of the client secret ([`hash_secret`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// A backend service's public keys (a JWK Set checked by
    /// [`hale_identity::assertion::check_jwks`]): it authenticates with signed assertions
    /// only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// The `system/` scopes a backend service may be granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Client {
    /// Whether this is a backend service (SMART Backend Services, `private_key_jwt`).
    pub fn is_backend(&self) -> bool {
        self.jwks.is_some()
    }
}

fn check_client_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err("a client id has 1 to 64 letters, digits and - _ .".into());
    }
    Ok(())
}

/// Registers a client (for `hale client add`); returns the secret of a confidential
/// client, shown once.
pub async fn register_client(
    repo: &Repository,
    id: &str,
    name: &str,
    redirect_uris: &[String],
    confidential: bool,
) -> Result<Option<String>, String> {
    check_client_id(id)?;
    if redirect_uris.is_empty() {
        return Err("a client needs at least one --redirect-uri".into());
    }
    for u in redirect_uris {
        let ok = (u.starts_with("https://") || u.starts_with("http://127.0.0.1") || u.starts_with("http://localhost"))
            && !u.contains('#')
            && !u.chars().any(char::is_whitespace);
        if !ok {
            return Err(format!(
                "'{u}' is not an acceptable redirect URI (https, or http on the loopback; no fragment)"
            ));
        }
    }
    if repo.auth_record("client", id).await.map_err(|e| e.to_string())?.is_some() {
        return Err(format!("the client '{id}' is registered already"));
    }
    let secret = confidential.then(random_secret);
    let c = Client {
        id: id.to_string(),
        name: name.to_string(),
        redirect_uris: redirect_uris.to_vec(),
        confidential,
        secret_hash: secret.as_deref().map(hash_secret),
        jwks: None,
        scope: None,
    };
    let body = serde_json::to_value(&c).map_err(|e| e.to_string())?;
    repo.put_auth_record("client", id, &body, None, Some(("client-register", &format!("client/{id}"))))
        .await
        .map_err(|e| e.to_string())?;
    Ok(secret)
}

/// Registers a backend service (SMART Backend Services, for `hale client add --jwks`):
/// `jwks` is the text of its JWK Set of public keys (RSA for RS384, EC P-384 for ES384),
/// `scope` the `system/` scopes it may be granted. Nothing is stored unless both are
/// usable.
pub async fn register_backend_client(
    repo: &Repository,
    id: &str,
    name: &str,
    jwks: &str,
    scope: &str,
) -> Result<(), String> {
    check_client_id(id)?;
    let jwks = hale_identity::assertion::check_jwks(jwks).map_err(|e| e.to_string())?;
    let scopes = hale_access::Scopes::parse(scope, true).map_err(|e| e.to_string())?;
    if scopes.resources.is_empty()
        || !scopes.other.is_empty()
        || scopes.resources.iter().any(|r| r.level != hale_access::Level::System)
    {
        return Err("a backend client's --scope lists system/ scopes only (e.g. 'system/*.rs')".into());
    }
    if repo.auth_record("client", id).await.map_err(|e| e.to_string())?.is_some() {
        return Err(format!("the client '{id}' is registered already"));
    }
    let c = Client {
        id: id.to_string(),
        name: name.to_string(),
        redirect_uris: Vec::new(),
        confidential: true,
        secret_hash: None,
        jwks: Some(jwks),
        scope: Some(scopes.to_string()),
    };
    let body = serde_json::to_value(&c).map_err(|e| e.to_string())?;
    repo.put_auth_record("client", id, &body, None, Some(("client-register", &format!("client/{id}"))))
        .await
        .map_err(|e| e.to_string())
}

/// Every registered client.
pub async fn clients(repo: &Repository) -> Result<Vec<Client>, String> {
    let all = repo.auth_records("client").await.map_err(|e| e.to_string())?;
    all.into_iter().map(|(_, b)| serde_json::from_value(b).map_err(|e| e.to_string())).collect()
}

async fn client(st: &AuthState, id: &str) -> Option<Client> {
    let v = st.system().auth_record("client", id).await.ok()??;
    serde_json::from_value(v).ok()
}

/// A SMART app the user let go on acting for them after the sign-in (a live refresh
/// grant, `offline_access` or `online_access`).
#[derive(Debug, Clone)]
pub struct ConnectedApp {
    /// The grant's family (each refresh rotates within it).
    pub family: String,
    pub client_id: String,
    /// The registered name, else the id.
    pub client_name: String,
    pub scope: String,
    /// The patient in context, for patient/ scopes.
    pub patient: Option<String>,
    /// When its latest token was issued (ms), when known.
    pub issued: Option<i64>,
}

/// The apps connected to `account_id`, newest first.
pub async fn connected_apps(st: &AuthState, account_id: &str) -> Result<Vec<ConnectedApp>, String> {
    let repo = st.system();
    let grants = repo.auth_records("refresh").await.map_err(|e| e.to_string())?;
    let mut out: Vec<ConnectedApp> = Vec::new();
    for (_, r) in grants.iter().filter(|(_, r)| r["account"].as_str() == Some(account_id)) {
        let family = r["family"].as_str().unwrap_or("").to_string();
        if family.is_empty() || out.iter().any(|a| a.family == family) {
            continue;
        }
        if repo.auth_record("refresh-revoked", &family).await.map_err(|e| e.to_string())?.is_some() {
            continue;
        }
        let client_id = r["client_id"].as_str().unwrap_or("").to_string();
        let client_name = client(st, &client_id).await.map(|c| c.name).unwrap_or_else(|| client_id.clone());
        out.push(ConnectedApp {
            family,
            client_id,
            client_name,
            scope: r["scope"].as_str().unwrap_or("").to_string(),
            patient: r["patient"].as_str().map(str::to_string),
            issued: r["issued"].as_i64(),
        });
    }
    out.sort_by_key(|a| std::cmp::Reverse(a.issued));
    Ok(out)
}

/// Ends the grant `family` of `account`'s connected app: its refresh tokens stop
/// working and the access token issued with the latest one is revoked; audited as the
/// user's `app-disconnected`. `Ok(false)` when the account has no such grant.
pub async fn disconnect_app(st: &AuthState, account: &Account, family: &str) -> Result<bool, String> {
    let repo = st.system();
    let grants = repo.auth_records("refresh").await.map_err(|e| e.to_string())?;
    let mine: Vec<&(String, serde_json::Value)> = grants
        .iter()
        .filter(|(_, r)| r["account"].as_str() == Some(account.id.as_str()) && r["family"].as_str() == Some(family))
        .collect();
    let Some((_, first)) = mine.first() else {
        return Ok(false);
    };
    let who = format!("user:{}", account.username);
    let client_id = first["client_id"].as_str().unwrap_or("");
    repo.put_auth_record(
        "refresh-revoked",
        family,
        &serde_json::json!({"reason": "disconnected by the user"}),
        Some(now_ms() + REFRESH_LIFETIME_MS),
        Some(("app-disconnected", &format!("client/{client_id} by {who}"))),
    )
    .await
    .map_err(|e| e.to_string())?;
    for (key, r) in &mine {
        repo.take_auth_record("refresh", key).await.map_err(|e| e.to_string())?;
        if let (Some(jti), Some(exp)) = (r["jti"].as_str(), r["exp"].as_i64()) {
            repo.put_auth_record(
                "revoked-jti",
                jti,
                &serde_json::json!({"sub": account.id}),
                Some(exp * 1000 + 60_000),
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
        }
    }
    Ok(true)
}

/// The signed-in user of a request, from its session cookie (refreshing the idle
/// timeout), with the session's CSRF token. None when the session is unknown or
/// expired, its account disabled or gone, or it began before the account's
/// [`hale_repository::TOKENS_VOID`] mark (a password change ends every other session).
pub async fn session(st: &AuthState, headers: &HeaderMap) -> Option<(Account, String)> {
    let sid = cookie(headers, SESSION_COOKIE)?;
    let key = hash_secret(&sid);
    let repo = st.system();
    let mut s = repo.auth_record("session", &key).await.ok()??;
    let created = s["created"].as_i64()?;
    let now = now_ms();
    if now - created > SESSION_MAX.as_millis() as i64 {
        return None;
    }
    let account = repo.account_by_id(s["account"].as_str()?).await.ok()??;
    if account.disabled {
        return None;
    }
    // a session begun before the account's tokens were voided (disabled, or its
    // password changed, here or by an administrator) is over, as its tokens are
    let void = repo.auth_record(hale_repository::TOKENS_VOID, &account.id).await.ok()?;
    if void.and_then(|v| v["before"].as_i64()).is_some_and(|before| created < before) {
        let _ = repo.take_auth_record("session", &key).await;
        return None;
    }
    let csrf = s["csrf"].as_str()?.to_string();
    // the idle timeout restarts with each use, up to the absolute lifetime
    let expires = (now + SESSION_IDLE.as_millis() as i64).min(created + SESSION_MAX.as_millis() as i64);
    s["seen"] = now.into();
    repo.put_auth_record("session", &key, &s, Some(expires), None).await.ok()?;
    Some((account, csrf))
}

const SESSION_COOKIE: &str = "hale_session";
const LOGIN_COOKIE: &str = "hale_login";

/// Starts a session for `account`; returns the Set-Cookie value.
async fn start_session(st: &AuthState, account: &Account) -> Result<String, String> {
    let sid = random_secret();
    let now = now_ms();
    let body = serde_json::json!({"account": account.id, "csrf": random_secret(), "created": now, "seen": now});
    st.system()
        .put_auth_record("session", &hash_secret(&sid), &body, Some(now + SESSION_IDLE.as_millis() as i64), None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(set_cookie(st, SESSION_COOKIE, &sid, None))
}

fn set_cookie(st: &AuthState, name: &str, value: &str, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    if st.secure_cookies() {
        c.push_str("; Secure");
    }
    c
}

/// Constant-time comparison of two secrets.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; hale_session=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&h, "hale_session").as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "hale"), None);
    }

    #[test]
    fn secrets_hash_and_compare() {
        let s = random_secret();
        assert_eq!(s.len(), 43);
        assert_ne!(s, random_secret());
        assert_eq!(hash_secret(&s), hash_secret(&s));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
