//! SMART Backend Services: `grant_type=client_credentials` with a client assertion
//! (RFC 7523 `private_key_jwt`), for a registered backend client
//! ([`crate::register_backend_client`]).

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hale_access::scope::ResourceScope;
use hale_access::{Level, Perm, Scopes};
use hale_identity::assertion::{AssertionError, verify_assertion};
use serde_json::json;

use crate::token::{no_store, oauth_error};
use crate::{AuthState, BACKEND_LIFETIME_S, client, hash_secret, now_ms};

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A refusal: status, OAuth error, description.
type Refusal = (StatusCode, &'static str, String);

fn invalid_client(why: impl Into<String>) -> Refusal {
    (StatusCode::UNAUTHORIZED, "invalid_client", why.into())
}

/// Whether the scope `asked` is within `allowed`: the same or a narrower type, a subset
/// of its permissions, and its granular restriction (if it has one).
fn covered(asked: &ResourceScope, allowed: &ResourceScope) -> bool {
    asked.level == allowed.level
        && (allowed.resource_type.is_none() || allowed.resource_type == asked.resource_type)
        && Perm::ALL.iter().all(|p| !asked.perms.contains(*p) || allowed.perms.contains(*p))
        && (allowed.query.is_none() || allowed.query == asked.query)
}

/// The scopes granted for `asked`, when every one is a `system/` scope within the
/// client's `allowed` ones.
fn grantable(asked: Option<&String>, allowed: &str) -> Result<Scopes, Refusal> {
    let refuse = |why: String| (StatusCode::BAD_REQUEST, "invalid_scope", why);
    let asked = asked
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| refuse("scope is required (the system/ scopes the service needs)".into()))?;
    let asked = Scopes::parse(asked, true).map_err(|e| refuse(e.to_string()))?;
    let allowed = Scopes::parse(allowed, true).map_err(|e| refuse(e.to_string()))?;
    if !asked.other.is_empty() || asked.resources.is_empty() {
        return Err(refuse("a backend service is granted system/ scopes only".into()));
    }
    for s in &asked.resources {
        if s.level != Level::System {
            return Err(refuse(format!("'{s}' is not a system/ scope; a backend service acts for no user")));
        }
        if !allowed.resources.iter().any(|a| covered(s, a)) {
            return Err(refuse(format!("'{s}' is beyond the scopes registered for this client")));
        }
    }
    Ok(asked)
}

/// `POST /auth/token` with `grant_type=client_credentials`.
pub async fn client_credentials(st: &AuthState, headers: &HeaderMap, p: &HashMap<String, String>) -> Response {
    // who to name in the audit trail: the client the assertion claims to be
    let claimed = p
        .get("client_assertion")
        .and_then(|a| unverified_iss(a))
        .or_else(|| p.get("client_id").cloned())
        .unwrap_or_else(|| "?".into());
    match grant(st, headers, p).await {
        Ok((client_id, body)) => {
            let _ = st.system().audit_auth_event("token", &format!("client:{client_id}"), None).await;
            no_store(StatusCode::OK, body)
        }
        Err((status, error, description)) => {
            let _ = st.system().audit_auth_event("token", &format!("client:{claimed}"), Some(&description)).await;
            oauth_error(status, error, &description)
        }
    }
}

/// The `iss` of an unverified JWT, for the audit trail only (at most 64 characters).
fn unverified_iss(jwt: &str) -> Option<String> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let iss: String = v["iss"].as_str()?.chars().filter(|c| !c.is_control()).take(64).collect();
    Some(iss)
}

async fn grant(
    st: &AuthState,
    headers: &HeaderMap,
    p: &HashMap<String, String>,
) -> Result<(String, serde_json::Value), Refusal> {
    let request = |why: &str| (StatusCode::BAD_REQUEST, "invalid_request", why.to_string());
    if p.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
        return Err(request(&format!("client_credentials needs client_assertion_type {JWT_BEARER}")));
    }
    let assertion = p.get("client_assertion").ok_or_else(|| request("client_assertion is required"))?;
    let claimed = unverified_iss(assertion).ok_or_else(|| request("the client assertion is not a JWT"))?;
    if p.get("client_id").is_some_and(|id| *id != claimed) {
        return Err(invalid_client("client_id differs from the assertion's issuer"));
    }
    let Some(c) = client(st, &claimed).await.filter(|c| c.is_backend()) else {
        return Err(invalid_client("the client is unknown or is not a backend service"));
    };
    let jwks = c.jwks.as_ref().ok_or_else(|| invalid_client("the client has no keys"))?;
    let token_url = format!("{}/auth/token", st.base(headers));
    let now = now_ms() / 1000;
    let verified = verify_assertion(assertion, jwks, &c.id, &token_url, now).map_err(|e| match e {
        AssertionError::Malformed => request(&e.to_string()),
        e => invalid_client(e.to_string()),
    })?;
    // each jti once, until the assertion could not be used anyway
    let key = hash_secret(&format!("{}\n{}", c.id, verified.jti));
    let fresh = st
        .system()
        .claim_auth_record("assertion-jti", &key, &json!({"client_id": c.id}), Some((verified.exp + 60) * 1000))
        .await
        .map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again".to_string()))?;
    if !fresh {
        return Err(invalid_client("the client assertion's jti was used already"));
    }
    let scopes = grantable(p.get("scope"), c.scope.as_deref().unwrap_or(""))?;
    let claims = st.tokens.client_claims(&c.id, &scopes, BACKEND_LIFETIME_S);
    let body = json!({
        "access_token": st.tokens.sign(&claims),
        "token_type": "Bearer",
        "expires_in": BACKEND_LIFETIME_S,
        "scope": scopes.to_string(),
    });
    Ok((c.id, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_granted_within_the_registered_ones() {
        let ok = |asked: &str, allowed: &str| grantable(Some(&asked.to_string()), allowed).is_ok();
        assert!(ok("system/*.rs", "system/*.rs"));
        assert!(ok("system/Patient.r", "system/*.rs"));
        assert!(ok("system/Patient.read", "system/*.rs"));
        assert!(ok("system/Patient.rs system/Observation.rs", "system/Patient.rs system/Observation.cruds"));
        assert!(!ok("system/*.cruds", "system/*.rs"));
        assert!(!ok("system/*.rs", "system/Patient.rs"));
        assert!(!ok("system/Condition.rs", "system/Patient.rs"));
        assert!(!ok("user/*.rs", "system/*.rs"));
        assert!(!ok("patient/*.rs", "system/*.rs"));
        assert!(!ok("openid system/*.rs", "system/*.rs"));
        assert!(!ok("", "system/*.rs"));
        assert!(!ok("system/patient.rs", "system/*.rs"));
        assert!(grantable(None, "system/*.rs").is_err());
    }
}
