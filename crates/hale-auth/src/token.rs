//! The token endpoint and its neighbours: discovery, keys, revocation, introspection.

use std::collections::HashMap;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hale_access::Scopes;
use hale_identity::Account;
use serde_json::{Value, json};
use sha2::Digest;

use crate::{
    ACCESS_LIFETIME_S, AuthState, Client, REFRESH_LIFETIME_MS, St, client, hash_secret, now_ms, random_secret, same,
};

pub(crate) fn no_store(status: StatusCode, body: Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// An OAuth error (RFC 6749 5.2).
pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    no_store(status, json!({"error": error, "error_description": description}))
}

/// The form body of an OAuth endpoint; anything else is answered with an OAuth
/// `invalid_request` (RFC 6749 5.2).
pub struct OAuthForm(pub HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for OAuthForm {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        match Form::<HashMap<String, String>>::from_request(req, state).await {
            Ok(Form(p)) => Ok(OAuthForm(p)),
            Err(_) => Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The body must be application/x-www-form-urlencoded",
            )),
        }
    }
}

/// `GET /.well-known/smart-configuration`.
pub async fn smart_configuration(State(st): St, headers: HeaderMap) -> Response {
    let base = st.base(&headers);
    axum::Json(json!({
        "issuer": base,
        "jwks_uri": format!("{base}/auth/jwks"),
        "authorization_endpoint": format!("{base}/auth/authorize"),
        "token_endpoint": format!("{base}/auth/token"),
        "revocation_endpoint": format!("{base}/auth/revoke"),
        "introspection_endpoint": format!("{base}/auth/introspect"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access",
            "patient/*.rs", "user/*.rs", "patient/*.cruds", "user/*.cruds", "system/*.rs", "system/*.cruds"],
        "capabilities": ["launch-standalone", "launch-ehr", "client-public", "client-confidential-symmetric",
            "client-confidential-asymmetric", "context-standalone-patient", "context-ehr-patient",
            "context-ehr-encounter", "permission-patient", "permission-user", "permission-v1",
            "permission-v2", "permission-offline", "sso-openid-connect"],
    }))
    .into_response()
}

/// `GET /auth/jwks`.
pub async fn jwks(State(st): St) -> Response {
    axum::Json(st.tokens.jwks()).into_response()
}

/// Authenticates the client of a token request: a confidential client by HTTP Basic
/// with its secret; a public client by its `client_id` alone.
async fn client_of(st: &AuthState, headers: &HeaderMap, p: &HashMap<String, String>) -> Result<Client, Response> {
    let invalid = || {
        oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "The client is unknown or its credentials are wrong")
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_string(), b.to_string())));
    let id = match (&basic, p.get("client_id")) {
        (Some((id, _)), Some(form)) if id != form => return Err(invalid()),
        (Some((id, _)), _) => id.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => return Err(invalid()),
    };
    let c = client(st, &id).await.ok_or_else(invalid)?;
    if c.is_backend() {
        // a backend service authenticates with a signed assertion, never by its id alone
        return Err(invalid());
    }
    match (&c.secret_hash, basic) {
        (Some(h), Some((_, secret))) if same(h, &hash_secret(&secret)) => Ok(c),
        (Some(_), _) => Err(invalid()),
        (None, None) => Ok(c),
        (None, Some(_)) => Err(invalid()),
    }
}

fn pkce_ok(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    well_formed && same(&URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes())), challenge)
}

/// `POST /auth/token`.
pub async fn token(State(st): St, headers: HeaderMap, OAuthForm(p): OAuthForm) -> Response {
    if p.get("grant_type").map(String::as_str) == Some("client_credentials") {
        return crate::backend::client_credentials(&st, &headers, &p).await;
    }
    let c = match client_of(&st, &headers, &p).await {
        Ok(c) => c,
        Err(r) => {
            let who = format!("client:{}", p.get("client_id").map(String::as_str).unwrap_or("?"));
            let _ = st.system().audit_auth_event("token", &who, Some("client authentication failed")).await;
            return r;
        }
    };
    let result = match p.get("grant_type").map(String::as_str) {
        Some("authorization_code") => from_code(&st, &headers, &c, &p).await,
        Some("refresh_token") => from_refresh(&st, &headers, &c, &p).await,
        Some(_) => Err((
            "unsupported_grant_type",
            "This server grants authorization_code, refresh_token and client_credentials".to_string(),
        )),
        None => Err(("invalid_request", "grant_type is required".to_string())),
    };
    match result {
        Ok(body) => no_store(StatusCode::OK, body),
        Err((error, description)) => {
            let _ = st.system().audit_auth_event("token", &format!("client:{}", c.id), Some(&description)).await;
            oauth_error(StatusCode::BAD_REQUEST, error, &description)
        }
    }
}

type Grant = Result<Value, (&'static str, String)>;

async fn from_code(st: &AuthState, headers: &HeaderMap, c: &Client, p: &HashMap<String, String>) -> Grant {
    let bad = |d: &str| ("invalid_grant", d.to_string());
    let code = p.get("code").ok_or(("invalid_request", "code is required".to_string()))?;
    let repo = st.system();
    // single use: taken whether or not what follows succeeds
    let g = repo
        .take_auth_record("code", &hash_secret(code))
        .await
        .map_err(|_| ("server_error", "try again".to_string()))?
        .ok_or_else(|| bad("The code is unknown, used or expired"))?;
    let verifier = p.get("code_verifier").ok_or(("invalid_request", "code_verifier is required (PKCE)".to_string()))?;
    if g["client_id"].as_str() != Some(c.id.as_str()) {
        return Err(bad("The code was issued to another client"));
    }
    if p.get("redirect_uri").map(String::as_str) != g["redirect_uri"].as_str() {
        return Err(bad("redirect_uri differs from the authorization request's"));
    }
    if !pkce_ok(verifier, g["code_challenge"].as_str().unwrap_or("")) {
        return Err(bad("The code_verifier does not match the code_challenge"));
    }
    let account = active_account(st, g["account"].as_str().unwrap_or("")).await?;
    let scopes = Scopes::parse(g["scope"].as_str().unwrap_or(""), true).map_err(|e| bad(&e.to_string()))?;
    let context = Context {
        patient: g["patient"].as_str().map(str::to_string),
        encounter: g["encounter"].as_str().map(str::to_string),
    };
    let family = uuid::Uuid::now_v7().to_string();
    issue(st, headers, c, &account, &scopes, context, g["nonce"].as_str(), &family).await
}

/// The millisecond a UUID v7 (a grant's family) was made at.
fn uuid_ms(id: &str) -> Option<i64> {
    let t = uuid::Uuid::parse_str(id).ok().filter(|u| u.get_version_num() == 7)?.get_timestamp()?;
    let (secs, nanos) = t.to_unix();
    Some(secs as i64 * 1000 + i64::from(nanos / 1_000_000))
}

// a voiding mark outlives every refresh token it voids
const _: () = assert!(hale_repository::TOKENS_VOID_MS > crate::REFRESH_LIFETIME_MS);

async fn active_account(st: &AuthState, id: &str) -> Result<Account, (&'static str, String)> {
    match st.system().account_by_id(id).await {
        Ok(Some(a)) if !a.disabled => Ok(a),
        _ => Err(("invalid_grant", "The account is disabled or gone".to_string())),
    }
}

async fn from_refresh(st: &AuthState, headers: &HeaderMap, c: &Client, p: &HashMap<String, String>) -> Grant {
    let bad = |d: &str| ("invalid_grant", d.to_string());
    let token = p.get("refresh_token").ok_or(("invalid_request", "refresh_token is required".to_string()))?;
    let key = hash_secret(token);
    let repo = st.system();
    let err = |_| ("server_error", "try again".to_string());
    let Some(r) = repo.take_auth_record("refresh", &key).await.map_err(err)? else {
        // a rotated token used again: someone holds a copy, so the whole family goes
        if let Some(used) = repo.auth_record("refresh-used", &key).await.map_err(err)? {
            let family = used["family"].as_str().unwrap_or("");
            let _ = repo
                .put_auth_record(
                    "refresh-revoked",
                    family,
                    &json!({"reason": "reuse"}),
                    Some(now_ms() + REFRESH_LIFETIME_MS),
                    Some(("refresh-reuse", &format!("client:{}", c.id))),
                )
                .await;
            return Err(bad("The refresh token was used already; every token of its grant is revoked"));
        }
        return Err(bad("The refresh token is unknown, revoked or expired"));
    };
    let family = r["family"].as_str().unwrap_or("").to_string();
    let marker = json!({"family": family});
    repo.put_auth_record("refresh-used", &key, &marker, Some(now_ms() + REFRESH_LIFETIME_MS), None)
        .await
        .map_err(err)?;
    if repo.auth_record("refresh-revoked", &family).await.map_err(err)?.is_some() {
        return Err(bad("The grant was revoked"));
    }
    if r["client_id"].as_str() != Some(c.id.as_str()) {
        return Err(bad("The refresh token was issued to another client"));
    }
    let account = active_account(st, r["account"].as_str().unwrap_or("")).await?;
    // a grant begun before the account was disabled or its password changed is over
    if let Some(void) = repo.auth_record(hale_repository::TOKENS_VOID, &account.id).await.map_err(err)?
        && let Some(before) = void["before"].as_i64()
        && uuid_ms(&family).is_none_or(|began| began < before)
    {
        return Err(bad("The grant ended when the account was disabled or its password changed"));
    }
    let mut scopes = Scopes::parse(r["scope"].as_str().unwrap_or(""), true).map_err(|e| bad(&e.to_string()))?;
    if let Some(asked) = p.get("scope") {
        // a refresh may narrow the grant, never widen it
        let narrower = Scopes::parse(asked, true).map_err(|e| ("invalid_scope", e.to_string()))?;
        if narrower.resources.iter().any(|s| !scopes.resources.contains(s))
            || narrower.other.iter().any(|o| !scopes.has(o))
        {
            return Err(("invalid_scope", "A refresh cannot ask for more than the grant".to_string()));
        }
        scopes = narrower;
    }
    let context = Context {
        patient: r["patient"].as_str().map(str::to_string),
        encounter: r["encounter"].as_str().map(str::to_string),
    };
    issue(st, headers, c, &account, &scopes, context, None, &family).await
}

/// The launch context a grant carries (SMART `patient`, `encounter`).
struct Context {
    patient: Option<String>,
    encounter: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn issue(
    st: &AuthState,
    headers: &HeaderMap,
    c: &Client,
    account: &Account,
    scopes: &Scopes,
    context: Context,
    nonce: Option<&str>,
    family: &str,
) -> Grant {
    let Context { patient, encounter } = context;
    let claims = st.tokens.user_claims(account, &c.id, scopes, patient.as_deref(), ACCESS_LIFETIME_S);
    let mut body = json!({
        "access_token": st.tokens.sign(&claims),
        "token_type": "Bearer",
        "expires_in": ACCESS_LIFETIME_S,
        "scope": scopes.to_string(),
    });
    if let Some(p) = &patient {
        body["patient"] = json!(p);
    }
    if let Some(e) = &encounter {
        body["encounter"] = json!(e);
    }
    let base = st.base(headers);
    if scopes.has("openid") && (scopes.has("fhirUser") || scopes.has("profile")) {
        let now = now_ms() / 1000;
        let mut id = json!({"iss": base, "sub": account.id, "aud": c.id, "iat": now, "exp": now + ACCESS_LIFETIME_S});
        if let Some(f) = &account.fhir_user {
            id["fhirUser"] = json!(format!("{base}/fhir/{f}"));
        }
        if let Some(n) = nonce {
            id["nonce"] = json!(n);
        }
        body["id_token"] = json!(st.tokens.sign_json(&id));
    }
    if scopes.has("offline_access") || scopes.has("online_access") {
        let refresh = random_secret();
        // the access token issued with it (cut when the user disconnects the app) and when
        let r = json!({"family": family, "client_id": c.id, "account": account.id, "scope": scopes.to_string(),
            "patient": patient, "encounter": encounter, "jti": claims.jti, "exp": claims.exp, "issued": now_ms()});
        st.system()
            .put_auth_record("refresh", &hash_secret(&refresh), &r, Some(now_ms() + REFRESH_LIFETIME_MS), None)
            .await
            .map_err(|_| ("server_error", "try again".to_string()))?;
        body["refresh_token"] = json!(refresh);
    }
    let _ = st.system().audit_auth_event("token", &format!("user:{}", account.username), None).await;
    Ok(body)
}

/// `POST /auth/revoke` (RFC 7009): a refresh token (and its grant) or an access token.
/// Answers 200 whether or not the token was known.
pub async fn revoke(State(st): St, headers: HeaderMap, OAuthForm(p): OAuthForm) -> Response {
    let c = match client_of(&st, &headers, &p).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(token) = p.get("token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is required");
    };
    let repo = st.system();
    let who = format!("client:{}", c.id);
    if let Ok(Some(r)) = repo.take_auth_record("refresh", &hash_secret(token)).await
        && r["client_id"].as_str() == Some(c.id.as_str())
    {
        let family = r["family"].as_str().unwrap_or("");
        let _ = repo
            .put_auth_record(
                "refresh-revoked",
                family,
                &json!({"reason": "revoked"}),
                Some(now_ms() + REFRESH_LIFETIME_MS),
                Some(("revoke", &who)),
            )
            .await;
    } else if let Ok(claims) = st.tokens.verify(token)
        && claims.client_id == c.id
    {
        let _ = repo
            .put_auth_record(
                "revoked-jti",
                &claims.jti,
                &json!({"sub": claims.sub}),
                Some(claims.exp * 1000 + 60_000),
                Some(("revoke", &who)),
            )
            .await;
    }
    no_store(StatusCode::OK, json!({}))
}

/// `POST /auth/introspect` (RFC 7662), for confidential clients.
pub async fn introspect(State(st): St, headers: HeaderMap, OAuthForm(p): OAuthForm) -> Response {
    match client_of(&st, &headers, &p).await {
        Ok(c) if c.confidential => {}
        Ok(_) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Introspection is for confidential clients",
            );
        }
        Err(r) => return r,
    }
    let inactive = || no_store(StatusCode::OK, json!({"active": false}));
    let Some(token) = p.get("token") else { return inactive() };
    let Ok(claims) = st.tokens.verify(token) else { return inactive() };
    // revoked, voided by its account's change, or of a disabled account: inactive
    match st.system().access_token_in_force(&claims).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return inactive(),
        Err(_) => return oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again"),
    }
    let mut body = json!({
        "active": true, "scope": claims.scope, "client_id": claims.client_id, "sub": claims.sub,
        "exp": claims.exp, "iat": claims.iat, "iss": claims.iss, "aud": claims.aud, "token_type": "Bearer",
    });
    if let Some(u) = &claims.username {
        body["username"] = json!(u);
    }
    if let Some(f) = &claims.fhir_user {
        body["fhirUser"] = json!(f);
    }
    if let Some(pt) = &claims.patient {
        body["patient"] = json!(pt);
    }
    no_store(StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pkce_checks_the_verifier() {
        // the challenge computed independently (Python: urlsafe_b64encode(sha256(v)))
        let verifier = "dBjftJeZ4CVP-mJ92K1ndHpOOGEVEmpy3UxdEHUw1eU";
        let challenge = "nH-Z5dm0NEk3R9VxcC5mTeLnk4O3iEtDuI7RTjG-pAY";
        assert!(super::pkce_ok(verifier, challenge));
        assert!(!super::pkce_ok("dBjftJeZ4CVP-mJ92K1ndHpOOGEVEmpy3UxdEHUw1eV", challenge));
        assert!(!super::pkce_ok("short", challenge));
        assert!(!super::pkce_ok(&format!("{verifier} "), challenge));
    }
}
