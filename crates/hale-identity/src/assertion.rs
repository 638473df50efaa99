//! Client assertions of SMART Backend Services (RFC 7523 `private_key_jwt`): a backend
//! client authenticates to the token endpoint with a JWT it signed with a private key
//! whose public half it registered as a JWK Set.
//!
//! Only RS384 (RSA keys of at least 2048 bits) and ES384 (P-384 keys) are accepted, as
//! SMART asks; the algorithm is read from the header only to choose among the
//! registered keys of its kind, never to choose how to verify (HS256 with a public key
//! as secret, or `none`, are refused before any key is looked at). The claims: `iss` and
//! `sub` are the client id, `aud` the token endpoint URL, `exp` present and at most
//! [`MAX_ASSERTION_LIFETIME_S`] ahead, `nbf` (when given) not in the future, `iat`
//! (when given) not more than the leeway in the future, `jti` present (its single use
//! is the caller's to enforce, with the expiry returned here).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

/// How far in the future an assertion's `exp` may be.
pub const MAX_ASSERTION_LIFETIME_S: i64 = 300;

/// Clock skew allowed on `exp`, `nbf` and `iat`.
const LEEWAY_S: i64 = 5;

/// Why a JWK Set was refused at registration: one line for the operator.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct JwksError(pub String);

/// Checks a JWK Set of public keys for a backend client and returns it as it will be
/// stored (the keys as given). Each key is RSA (`n`, `e`, at least 2048 bits; `alg`
/// RS384 when given) or EC on P-384 (`x`, `y`; `alg` ES384 when given); none may hold
/// a private part; `kid`s are unique.
pub fn check_jwks(text: &str) -> Result<Value, JwksError> {
    let bad = |why: String| JwksError(format!("the JWKS is not usable: {why}"));
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON ({e})")))?;
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("it is not an object with a \"keys\" array".into()))?;
    if keys.is_empty() {
        return Err(bad("\"keys\" is empty".into()));
    }
    let mut kids = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let at = |why: &str| bad(format!("keys[{i}]: {why}"));
        if !k.is_object() {
            return Err(at("not an object"));
        }
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            if k.get(private).is_some() {
                return Err(at(&format!("holds a private or secret part (\"{private}\"): register public keys only")));
            }
        }
        if let Some(kid) = k.get("kid") {
            let kid = kid.as_str().ok_or_else(|| at("\"kid\" is not a string"))?;
            if kids.contains(&kid) {
                return Err(at(&format!("the kid \"{kid}\" appears twice")));
            }
            kids.push(kid);
        }
        let alg = k.get("alg").map(|a| a.as_str().unwrap_or("?"));
        match k.get("kty").and_then(Value::as_str) {
            Some("RSA") => {
                if alg.is_some_and(|a| a != "RS384") {
                    return Err(at("an RSA key must be for RS384"));
                }
                let n = b64_field(k, "n").ok_or_else(|| at("\"n\" is missing or not base64url"))?;
                let e = b64_field(k, "e").ok_or_else(|| at("\"e\" is missing or not base64url"))?;
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < 2048 {
                    return Err(at("the RSA modulus is shorter than 2048 bits"));
                }
                if e.is_empty() || e.len() > 8 {
                    return Err(at("the RSA exponent is not usable"));
                }
            }
            Some("EC") => {
                if k.get("crv").and_then(Value::as_str) != Some("P-384") {
                    return Err(at("an EC key must be on the curve P-384"));
                }
                if alg.is_some_and(|a| a != "ES384") {
                    return Err(at("a P-384 key must be for ES384"));
                }
                for c in ["x", "y"] {
                    if b64_field(k, c).map(|b| b.len()) != Some(48) {
                        return Err(at(&format!("\"{c}\" is not a base64url P-384 coordinate")));
                    }
                }
            }
            Some(other) => return Err(at(&format!("the key type \"{other}\" is not accepted (RSA or EC P-384)"))),
            None => return Err(at("\"kty\" is missing")),
        }
        if k.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
            return Err(at("\"use\" must be \"sig\""));
        }
    }
    Ok(v)
}

fn b64_field(k: &Value, name: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(k.get(name)?.as_str()?).ok()
}

/// Why a client assertion was refused. Each is the client's authentication failing
/// (`invalid_client`) except [`AssertionError::Malformed`] (`invalid_request`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssertionError {
    #[error("the client assertion is not a JWT")]
    Malformed,
    #[error("the client assertion must be signed with RS384 or ES384")]
    Algorithm,
    #[error("no key registered for the client matches the assertion's algorithm and kid")]
    UnknownKey,
    #[error("the client assertion's signature is not valid")]
    BadSignature,
    #[error("the client assertion has expired")]
    Expired,
    #[error("the client assertion's exp is more than five minutes ahead")]
    TooLong,
    #[error("the client assertion's {0}")]
    Claims(&'static str),
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
}

/// What a verified assertion tells: its `jti` and when it expires (seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub jti: String,
    pub exp: i64,
}

/// Verifies `jwt` as a client assertion of `client_id` for the token endpoint
/// `token_url`, against the client's registered `jwks` (as [`check_jwks`] returned it),
/// at `now` (Unix seconds).
pub fn verify_assertion(
    jwt: &str,
    jwks: &Value,
    client_id: &str,
    token_url: &str,
    now: i64,
) -> Result<VerifiedAssertion, AssertionError> {
    // the algorithm named, before anything else reads the header (`none`, HS256...)
    let named = jwt
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .ok_or(AssertionError::Malformed)?;
    if !matches!(named.get("alg").and_then(Value::as_str), Some("RS384" | "ES384")) {
        return Err(AssertionError::Algorithm);
    }
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| AssertionError::Malformed)?;
    let (alg, kty) = match header.alg {
        Algorithm::RS384 => (Algorithm::RS384, "RSA"),
        Algorithm::ES384 => (Algorithm::ES384, "EC"),
        _ => return Err(AssertionError::Algorithm),
    };
    let candidates: Vec<&Value> = jwks
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|k| k.get("kty").and_then(Value::as_str) == Some(kty))
        .filter(|k| match &header.kid {
            Some(kid) => k.get("kid").and_then(Value::as_str) == Some(kid.as_str()),
            None => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(AssertionError::UnknownKey);
    }
    let mut v = Validation::new(alg);
    v.set_issuer(&[client_id]);
    v.set_audience(&[token_url]);
    v.sub = Some(client_id.to_string());
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = LEEWAY_S as u64;
    // jsonwebtoken leaves `nbf` unchecked unless asked
    v.validate_nbf = true;
    let mut last = AssertionError::BadSignature;
    for k in candidates {
        let key = match kty {
            "RSA" => DecodingKey::from_rsa_components(
                k["n"].as_str().unwrap_or_default(),
                k["e"].as_str().unwrap_or_default(),
            ),
            _ => DecodingKey::from_ec_components(
                k["x"].as_str().unwrap_or_default(),
                k["y"].as_str().unwrap_or_default(),
            ),
        };
        let Ok(key) = key else { continue };
        match jsonwebtoken::decode::<Claims>(jwt, &key, &v) {
            Ok(data) => {
                let c = data.claims;
                let exp = c.exp.ok_or(AssertionError::Claims("exp is missing"))?;
                if exp > now + MAX_ASSERTION_LIFETIME_S + LEEWAY_S {
                    return Err(AssertionError::TooLong);
                }
                if c.iat.is_some_and(|iat| iat > now + LEEWAY_S) {
                    return Err(AssertionError::Claims("iat is in the future"));
                }
                let jti = c.jti.filter(|j| !j.is_empty()).ok_or(AssertionError::Claims("jti is missing"))?;
                if jti.len() > 256 {
                    return Err(AssertionError::Claims("jti is longer than 256 characters"));
                }
                return Ok(VerifiedAssertion { jti, exp });
            }
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind as K;
                last = match e.kind() {
                    // another key of the set may have signed it
                    K::InvalidSignature | K::InvalidEcdsaKey | K::InvalidRsaKey(_) | K::InvalidKeyFormat => {
                        AssertionError::BadSignature
                    }
                    K::ExpiredSignature => return Err(AssertionError::Expired),
                    K::ImmatureSignature => return Err(AssertionError::Claims("nbf is in the future")),
                    K::InvalidIssuer => return Err(AssertionError::Claims("iss is not the client id")),
                    K::InvalidSubject => return Err(AssertionError::Claims("sub is not the client id")),
                    K::InvalidAudience => return Err(AssertionError::Claims("aud is not this token endpoint")),
                    K::MissingRequiredClaim(_) => {
                        return Err(AssertionError::Claims("exp, iss, sub or aud is missing"));
                    }
                    K::InvalidAlgorithm => return Err(AssertionError::Algorithm),
                    _ => return Err(AssertionError::Malformed),
                };
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_jwk(bits: usize) -> Value {
        serde_json::json!({"kty": "RSA", "kid": "a", "n": URL_SAFE_NO_PAD.encode(vec![0xc5u8; bits / 8]), "e": "AQAB"})
    }

    #[test]
    fn jwks_are_checked_at_registration() {
        let ok = serde_json::json!({"keys": [rsa_jwk(2048), {"kty": "EC", "crv": "P-384", "kid": "b", "alg": "ES384",
            "x": URL_SAFE_NO_PAD.encode([1u8; 48]), "y": URL_SAFE_NO_PAD.encode([2u8; 48])}]});
        assert!(check_jwks(&ok.to_string()).is_ok());
        for (bad, why) in [
            ("not json", "not JSON"),
            ("{}", "\"keys\" array"),
            (r#"{"keys":[]}"#, "empty"),
            (&serde_json::json!({"keys": [rsa_jwk(1024)]}).to_string(), "2048"),
            (r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#, "private or secret"),
            (r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}"#, "P-384"),
            (&serde_json::json!({"keys": [rsa_jwk(2048), rsa_jwk(2048)]}).to_string(), "twice"),
            (&serde_json::json!({"keys": [{"kty": "RSA", "n": "x", "e": "AQAB", "d": "x"}]}).to_string(), "private"),
        ] {
            let e = check_jwks(bad).unwrap_err().0;
            assert!(e.contains(why) && !e.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn only_rs384_and_es384_are_considered() {
        let jwks = serde_json::json!({"keys": [rsa_jwk(2048)]});
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &serde_json::json!({"iss": "c", "sub": "c", "aud": "u", "exp": 10, "jti": "j"}),
            &jsonwebtoken::EncodingKey::from_secret(b"secret").unwrap(),
        )
        .unwrap();
        assert_eq!(verify_assertion(&hs, &jwks, "c", "u", 0), Err(AssertionError::Algorithm));
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(b"{}"));
        assert_eq!(verify_assertion(&none, &jwks, "c", "u", 0), Err(AssertionError::Algorithm));
        let es = format!("{}.{}.AA", URL_SAFE_NO_PAD.encode(br#"{"alg":"ES384"}"#), URL_SAFE_NO_PAD.encode(b"{}"));
        assert_eq!(verify_assertion(&es, &jwks, "c", "u", 0), Err(AssertionError::UnknownKey));
        assert_eq!(verify_assertion("garbage", &jwks, "c", "u", 0), Err(AssertionError::Malformed));
    }

    /// An assertion signed with the TEST-ONLY P-384 key of the `hale` crate's fixtures.
    fn signed(claims: &Value) -> (String, Value) {
        let pem = include_str!("../../hale/tests/fixtures/smart/test-only-ec384.pem");
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_der(&der);
        let jwt = jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::ES384), claims, &key).unwrap();
        let jwks = serde_json::from_str(include_str!("../../hale/tests/fixtures/smart/test-only-jwks.json")).unwrap();
        (jwt, jwks)
    }

    #[test]
    fn nbf_and_iat_in_the_future_are_refused() {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let check = |extra: Value| {
            let mut c = serde_json::json!({"iss": "c", "sub": "c", "aud": "u", "exp": now + 60, "jti": "j"});
            if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
                c.extend(e.clone());
            }
            let (jwt, jwks) = signed(&c);
            verify_assertion(&jwt, &jwks, "c", "u", now)
        };
        assert!(check(serde_json::json!({})).is_ok());
        assert!(check(serde_json::json!({"nbf": now - 10, "iat": now - 10})).is_ok());
        assert!(
            check(serde_json::json!({"nbf": now + LEEWAY_S - 1, "iat": now + LEEWAY_S})).is_ok(),
            "within the leeway"
        );
        assert_eq!(check(serde_json::json!({"nbf": now + 60})), Err(AssertionError::Claims("nbf is in the future")));
        assert_eq!(check(serde_json::json!({"iat": now + 60})), Err(AssertionError::Claims("iat is in the future")));
        assert_eq!(check(serde_json::json!({"nbf": "soon"})), Err(AssertionError::Malformed));
    }
}
