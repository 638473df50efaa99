//! Hale's access tokens: JWTs signed with ES256 by a P-256 key generated into the data
//! directory (`keys/token-signing.p8`, mode 0600), living at most an hour. A token
//! carries the whole grant (who, role, organization, patients, scopes), so checking
//! it needs no database: the signature, the algorithm (ES256 only: `alg: none` and
//! every other algorithm are refused), the issuer, the audience and the expiry.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hale_access::{ClientGrant, Principal, Role, Scopes, UserGrant};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::Account;

/// The longest an access token lives.
pub const MAX_LIFETIME_SECONDS: i64 = 3600;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// `user:<account id>` or `client:<client id>`.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub scope: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// The patients of a patient or proxy account.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patients: Vec<String>,
    /// The patient in launch context (SMART `patient`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
}

impl AccessClaims {
    /// When the token was issued, in Unix milliseconds: from its `jti` (a UUID v7,
    /// whose first 48 bits are the milliseconds it was made at) when it is one, else
    /// from `iat` (seconds). So a token made just after an account changed, within the
    /// same second, is told from one made just before.
    pub fn issued_ms(&self) -> i64 {
        uuid::Uuid::parse_str(&self.jti)
            .ok()
            .filter(|u| u.get_version_num() == 7)
            .and_then(|u| u.get_timestamp())
            .map(|t| {
                let (secs, nanos) = t.to_unix();
                secs as i64 * 1000 + i64::from(nanos / 1_000_000)
            })
            .unwrap_or(self.iat.saturating_mul(1000))
    }

    /// The account of a user's token (`sub` `user:<id>`).
    pub fn account(&self) -> Option<&str> {
        self.sub.strip_prefix("user:")
    }
}

/// Why a token was refused: every kind is a 401 to the caller, with this text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the access token is malformed")]
    Malformed,
    #[error("the access token's signature is not valid")]
    BadSignature,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token was revoked")]
    Revoked,
    #[error("the access token's account was disabled or its password changed after the token was issued")]
    AccountChanged,
    #[error("the access token was not issued by this server or not for it")]
    WrongIssuerOrAudience,
    #[error("the access token's grant is not valid: {0}")]
    BadGrant(String),
}

/// What the store knows of a verified access token beyond its signature, read by
/// whoever checks it (the FHIR API from its one-second cache, introspection and the EHR
/// launch from the store).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    /// Its `jti` was revoked (`revoked-jti`).
    pub revoked: bool,
    /// Its account's tokens issued before this instant (Unix milliseconds) are void
    /// (`tokens-void`: the account was disabled or its password changed).
    pub void_before: Option<i64>,
    /// Its account is disabled or gone (`false` where unknown: disabling writes a
    /// `tokens-void` mark as well).
    pub account_disabled: bool,
}

/// Whether a verified access token is still in force: not revoked, not issued before
/// its account's tokens-void mark, its account not disabled. The one rule every reader
/// of access tokens applies.
pub fn in_force(claims: &AccessClaims, standing: &Standing) -> Result<(), TokenError> {
    if standing.revoked {
        return Err(TokenError::Revoked);
    }
    if claims.account().is_some()
        && (standing.account_disabled || standing.void_before.is_some_and(|before| claims.issued_ms() < before))
    {
        return Err(TokenError::AccountChanged);
    }
    Ok(())
}

/// The token signing key and the names of this installation.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    x: String,
    y: String,
    issuer: String,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKeys(kid {}, issuer {})", self.kid, self.issuer)
    }
}

fn key_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Replaces `path` with `bytes` (owner-only), through a new file renamed over it.
fn replace_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("new");
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

impl TokenKeys {
    /// Loads the signing key and installation id from `data_dir/keys`, creating them
    /// on first use.
    pub fn open(data_dir: &Path) -> std::io::Result<TokenKeys> {
        let dir = key_dir(data_dir);
        std::fs::create_dir_all(&dir)?;
        let key_path = dir.join("token-signing.p8");
        if !key_path.exists() {
            let secret = p256::SecretKey::random(&mut rand_core::OsRng);
            let der = secret.to_pkcs8_der().map_err(|e| std::io::Error::other(e.to_string()))?;
            match write_private(&key_path, der.as_bytes()) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                r => r?,
            }
        }
        let id_path = dir.join("installation-id");
        if !id_path.exists() {
            match write_private(&id_path, uuid::Uuid::now_v7().to_string().as_bytes()) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                r => r?,
            }
        }
        let der = std::fs::read(&key_path)?;
        let installation = std::fs::read_to_string(&id_path)?.trim().to_string();
        Self::from_parts(&der, &format!("urn:hale:{installation}"))
            .map_err(|e| std::io::Error::other(format!("{}: {e}", key_path.display())))
    }

    /// The key material of `data_dir` (created on first use) as one text, to be shared
    /// by every node of one database: the installation id and the PKCS#8 signing key.
    /// A secret: never log it.
    pub fn material(data_dir: &Path) -> std::io::Result<String> {
        Self::open(data_dir)?;
        let dir = key_dir(data_dir);
        let der = std::fs::read(dir.join("token-signing.p8"))?;
        let installation = std::fs::read_to_string(dir.join("installation-id"))?.trim().to_string();
        Ok(serde_json::json!({"installation": installation, "pkcs8": URL_SAFE_NO_PAD.encode(der)}).to_string())
    }

    /// Makes `material` (from [`TokenKeys::material`], maybe another node's) the key
    /// and installation id of `data_dir`, replacing the files there, and opens it.
    pub fn adopt(data_dir: &Path, material: &str) -> std::io::Result<TokenKeys> {
        let bad = || std::io::Error::other("the shared token key material is not valid");
        let v: serde_json::Value = serde_json::from_str(material).map_err(|_| bad())?;
        let installation = v["installation"].as_str().filter(|i| uuid::Uuid::parse_str(i).is_ok()).ok_or_else(bad)?;
        let der = v["pkcs8"].as_str().and_then(|k| URL_SAFE_NO_PAD.decode(k).ok()).ok_or_else(bad)?;
        let keys = Self::from_parts(&der, &format!("urn:hale:{installation}")).map_err(|_| bad())?;
        let dir = key_dir(data_dir);
        std::fs::create_dir_all(&dir)?;
        replace_private(&dir.join("token-signing.p8"), &der)?;
        replace_private(&dir.join("installation-id"), installation.as_bytes())?;
        Ok(keys)
    }

    /// The key id (the JWK thumbprint of the public key; not a secret).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    fn from_parts(pkcs8_der: &[u8], issuer: &str) -> Result<TokenKeys, String> {
        let secret = p256::SecretKey::from_pkcs8_der(pkcs8_der).map_err(|e| format!("not a P-256 key: {e}"))?;
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err("the public key has no coordinates".into());
        };
        let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|e| e.to_string())?;
        let thumb = sha2::Sha256::digest(format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#).as_bytes());
        Ok(TokenKeys {
            encoding: EncodingKey::from_ec_der(pkcs8_der),
            decoding,
            kid: URL_SAFE_NO_PAD.encode(thumb),
            x,
            y,
            issuer: issuer.to_string(),
        })
    }

    /// The `iss` of every token this installation issues.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `aud` a token must name: this installation's FHIR API.
    pub fn audience(&self) -> String {
        format!("{}/fhir", self.issuer)
    }

    /// The public key as a JWK Set.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "x": self.x, "y": self.y,
            "kid": self.kid, "alg": "ES256", "use": "sig"
        }]})
    }

    /// The claims of a token for `account`, through `client_id`, with `scopes`, for
    /// `lifetime` seconds (at most an hour).
    pub fn user_claims(
        &self,
        account: &Account,
        client_id: &str,
        scopes: &Scopes,
        launch_patient: Option<&str>,
        lifetime: i64,
    ) -> AccessClaims {
        let now = now_seconds();
        AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience(),
            sub: format!("user:{}", account.id),
            iat: now,
            exp: now + lifetime.clamp(1, MAX_LIFETIME_SECONDS),
            jti: uuid::Uuid::now_v7().to_string(),
            scope: scopes.to_string(),
            client_id: client_id.to_string(),
            username: Some(account.username.clone()),
            role: Some(account.role.clone()),
            fhir_user: account.fhir_user.clone(),
            organization: account.organization.clone(),
            patients: account.patients.clone(),
            patient: launch_patient.map(str::to_string),
        }
    }

    /// The claims of a token for a client acting for no user.
    pub fn client_claims(&self, client_id: &str, scopes: &Scopes, lifetime: i64) -> AccessClaims {
        let now = now_seconds();
        AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience(),
            sub: format!("client:{client_id}"),
            iat: now,
            exp: now + lifetime.clamp(1, MAX_LIFETIME_SECONDS),
            jti: uuid::Uuid::now_v7().to_string(),
            scope: scopes.to_string(),
            client_id: client_id.to_string(),
            username: None,
            role: None,
            fhir_user: None,
            organization: None,
            patients: Vec::new(),
            patient: None,
        }
    }

    /// Signs claims into a token.
    pub fn sign(&self, claims: &AccessClaims) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        // signing with a key this type loaded and checked cannot fail
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap_or_default()
    }

    /// Signs any claims (an OpenID Connect ID token) with the same key.
    pub fn sign_json(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap_or_default()
    }

    /// Checks a token and reads its claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[self.audience()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 5;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature | K::InvalidAlgorithm | K::InvalidAlgorithmName | K::InvalidKeyFormat => {
                    TokenError::BadSignature
                }
                K::ExpiredSignature | K::ImmatureSignature => TokenError::Expired,
                K::InvalidIssuer | K::InvalidAudience => TokenError::WrongIssuerOrAudience,
                _ => TokenError::Malformed,
            }
        })?;
        let c = data.claims;
        if c.exp - c.iat > MAX_LIFETIME_SECONDS {
            return Err(TokenError::BadGrant("it lives longer than an hour".into()));
        }
        Ok(c)
    }

    /// Checks a token and reads the principal it grants.
    pub fn principal(&self, token: &str) -> Result<Principal, TokenError> {
        principal_of(self.verify(token)?)
    }
}

/// The principal a verified token's claims grant.
pub fn principal_of(c: AccessClaims) -> Result<Principal, TokenError> {
    let scopes = Scopes::parse(&c.scope, true).map_err(|e| TokenError::BadGrant(e.to_string()))?;
    if let Some(account) = c.sub.strip_prefix("user:") {
        let role = c.role.as_deref().and_then(Role::parse).ok_or_else(|| TokenError::BadGrant("no role".into()))?;
        return Ok(Principal::User(Box::new(UserGrant {
            account: account.to_string(),
            username: c.username.unwrap_or_default(),
            role,
            fhir_user: c.fhir_user,
            organization: c.organization,
            patients: c.patients,
            scopes,
            launch_patient: c.patient,
            client_id: c.client_id,
        })));
    }
    if let Some(client) = c.sub.strip_prefix("client:") {
        return Ok(Principal::Client(Box::new(ClientGrant { client_id: client.to_string(), scopes })));
    }
    Err(TokenError::BadGrant("the subject is neither a user nor a client".into()))
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (tempfile::TempDir, TokenKeys) {
        let d = tempfile::tempdir().unwrap();
        let k = TokenKeys::open(d.path()).unwrap();
        (d, k)
    }

    fn account() -> Account {
        Account {
            id: "acc-1".into(),
            username: "alice".into(),
            display_name: "Alice".into(),
            role: "clinician".into(),
            fhir_user: Some("Practitioner/p1".into()),
            organization: Some("org-1".into()),
            patients: vec![],
            password_hash: "x".into(),
            must_change_password: false,
            totp_secret: None,
            totp_confirmed: false,
            totp_last_step: 0,
            disabled: false,
            created: 0,
            updated: 0,
        }
    }

    #[test]
    fn standing_decides_whether_a_token_is_in_force() {
        let (_d, k) = keys();
        let scopes = Scopes::parse("user/*.rs", true).unwrap();
        let c = k.user_claims(&account(), "app", &scopes, None, 60);
        let issued = c.issued_ms();
        assert_eq!(in_force(&c, &Standing::default()), Ok(()));
        let revoked = Standing { revoked: true, ..Standing::default() };
        assert_eq!(in_force(&c, &revoked), Err(TokenError::Revoked));
        let disabled = Standing { account_disabled: true, ..Standing::default() };
        assert_eq!(in_force(&c, &disabled), Err(TokenError::AccountChanged));
        let voided = Standing { void_before: Some(issued + 1), ..Standing::default() };
        assert_eq!(in_force(&c, &voided), Err(TokenError::AccountChanged));
        // a token issued at or after the mark is in force
        let earlier = Standing { void_before: Some(issued), ..Standing::default() };
        assert_eq!(in_force(&c, &earlier), Ok(()));
        // a client's token has no account to void
        let client = k.client_claims("bulk", &Scopes::parse("system/*.rs", true).unwrap(), 60);
        assert_eq!(in_force(&client, &voided), Ok(()));
        assert_eq!(in_force(&client, &revoked), Err(TokenError::Revoked));
    }

    #[test]
    fn keys_persist_and_tokens_round_trip() {
        let (d, k) = keys();
        let again = TokenKeys::open(d.path()).unwrap();
        assert_eq!(k.issuer(), again.issuer());
        let scopes = Scopes::parse("user/*.rs openid", true).unwrap();
        let t = k.sign(&k.user_claims(&account(), "hale", &scopes, None, 600));
        let Principal::User(u) = again.principal(&t).unwrap() else { panic!() };
        assert_eq!((u.username.as_str(), u.role, u.organization.as_deref()), ("alice", Role::Clinician, Some("org-1")));
        assert_eq!(u.scopes, scopes);
        let c = k.sign(&k.client_claims("ops", &Scopes::parse("system/*.rs", true).unwrap(), 60));
        assert!(matches!(k.principal(&c).unwrap(), Principal::Client(_)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.path().join("keys/token-signing.p8")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn material_moves_the_key_and_installation_to_another_data_directory() {
        let (_a, a) = keys();
        let b_dir = tempfile::tempdir().unwrap();
        let b = TokenKeys::open(b_dir.path()).unwrap();
        assert_ne!(a.issuer(), b.issuer());
        let material = TokenKeys::material(_a.path()).unwrap();
        assert_eq!(TokenKeys::material(_a.path()).unwrap(), material);
        let adopted = TokenKeys::adopt(b_dir.path(), &material).unwrap();
        assert_eq!((adopted.issuer(), adopted.kid()), (a.issuer(), a.kid()));
        let reopened = TokenKeys::open(b_dir.path()).unwrap();
        let t = a.sign(&a.client_claims("c", &Scopes::parse("system/*.read", true).unwrap(), 60));
        assert!(reopened.verify(&t).is_ok());
        assert_eq!(TokenKeys::material(b_dir.path()).unwrap(), material);
        assert!(TokenKeys::adopt(b_dir.path(), "{\"installation\":\"x\",\"pkcs8\":\"\"}").is_err());
    }

    #[test]
    fn a_token_knows_the_millisecond_it_was_issued() {
        let (_d, k) = keys();
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let mut c = k.user_claims(&account(), "app", &Scopes::parse("user/*.rs", true).unwrap(), None, 60);
        let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        assert!((before..=after).contains(&c.issued_ms()), "{} {before} {after}", c.issued_ms());
        assert_eq!(c.account(), Some(account().id.as_str()));
        c.jti = "not-a-uuid".into();
        assert_eq!(c.issued_ms(), c.iat * 1000);
    }

    #[test]
    fn mutated_tokens_are_refused() {
        let (_d, k) = keys();
        let (_d2, other) = keys();
        let scopes = Scopes::parse("user/*.rs", true).unwrap();
        let claims = k.user_claims(&account(), "hale", &scopes, None, 600);
        let good = k.sign(&claims);
        // another installation's key
        assert_eq!(other.verify(&good), Err(TokenError::BadSignature));
        // an edited payload (wider scope) under the old signature
        let parts: Vec<&str> = good.split('.').collect();
        let mut edited = claims.clone();
        edited.scope = "user/*.cruds".into();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&edited).unwrap());
        assert_eq!(k.verify(&format!("{}.{payload}.{}", parts[0], parts[2])), Err(TokenError::BadSignature));
        // alg: none
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(k.verify(&format!("{none}.{}.", parts[1])).is_err());
        // expired, and wrong issuer or audience, signed with the right key
        let mut old = claims.clone();
        old.iat -= 7200;
        old.exp = old.iat + 600;
        assert_eq!(k.verify(&k.sign(&old)), Err(TokenError::Expired));
        let mut iss = claims.clone();
        iss.iss = "urn:hale:elsewhere".into();
        assert_eq!(k.verify(&k.sign(&iss)), Err(TokenError::WrongIssuerOrAudience));
        let mut aud = claims.clone();
        aud.aud = "https://other.example/fhir".into();
        assert_eq!(k.verify(&k.sign(&aud)), Err(TokenError::WrongIssuerOrAudience));
        let mut long = claims.clone();
        long.exp = long.iat + 86_400;
        assert!(matches!(k.verify(&k.sign(&long)), Err(TokenError::BadGrant(_))));
        let mut scope = claims;
        scope.scope = "user/observation.rs".into();
        assert!(matches!(k.principal(&k.sign(&scope)), Err(TokenError::BadGrant(_))));
        assert_eq!(k.verify("not.a.token"), Err(TokenError::Malformed));
        assert_eq!(k.verify(""), Err(TokenError::Malformed));
    }
}
