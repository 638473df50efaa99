//! User accounts and tokens for the command line (`hale user ...`, `hale token`) and
//! the first start, over a system repository: every change is audited by the gate.

use hale_access::{Role, Scopes};
use hale_identity::{Account, TokenKeys, fold_username, password, totp};
use hale_repository::{Repository, resource_id, resource_type};

/// Why a user command was refused: one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

impl From<hale_repository::Error> for UserError {
    fn from(e: hale_repository::Error) -> Self {
        UserError(e.to_string())
    }
}

impl From<hale_identity::IdentityError> for UserError {
    fn from(e: hale_identity::IdentityError) -> Self {
        UserError(e.to_string())
    }
}

type Result<T> = std::result::Result<T, UserError>;

/// An account to create.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub username: String,
    pub display_name: Option<String>,
    pub role: String,
    /// The Organization id a staff member works for.
    pub organization: Option<String>,
    /// The Practitioner id a staff member is.
    pub practitioner: Option<String>,
    /// For the patient role: the Patient ids whose record the user may see.
    pub patients: Vec<String>,
    /// For a proxy: the RelatedPerson id the user is.
    pub related_person: Option<String>,
    /// The password; `None`: a one-time password is made and returned, to be changed
    /// at the first sign-in.
    pub password: Option<String>,
}

fn now_ms() -> i64 {
    hale_repository::Instant::now().millis()
}

async fn must_exist(repo: &Repository, ty: &str, id: &str) -> Result<()> {
    let t = resource_type(ty)?;
    let i = resource_id(id)?;
    match repo.read(&t, &i).await {
        Ok(_) => Ok(()),
        Err(_) => Err(UserError(format!("{ty}/{id} does not exist in the store"))),
    }
}

/// Creates an account; returns it and the one-time password made for it, if any.
pub async fn add_user(repo: &Repository, new: NewUser) -> Result<(Account, Option<String>)> {
    let username = fold_username(&new.username)?;
    let role = Role::parse(&new.role).ok_or_else(|| {
        let all: Vec<&str> = Role::ALL.iter().map(|r| r.code()).collect();
        UserError(format!("'{}' is not a role (one of: {})", new.role, all.join(", ")))
    })?;
    if role.is_staff_with_patients() && new.organization.is_none() {
        return Err(UserError(format!("a {role} account needs --organization (the Organization they work for)")));
    }
    if let Some(org) = &new.organization {
        must_exist(repo, "Organization", org).await?;
    }
    let mut fhir_user = None;
    if let Some(p) = &new.practitioner {
        must_exist(repo, "Practitioner", p).await?;
        fhir_user = Some(format!("Practitioner/{p}"));
    }
    if role == Role::Patient {
        if new.patients.is_empty() {
            return Err(UserError("a patient account needs --patient (the Patient whose record it is)".into()));
        }
        for p in &new.patients {
            must_exist(repo, "Patient", p).await?;
        }
        fhir_user = Some(match &new.related_person {
            Some(rp) => {
                must_exist(repo, "RelatedPerson", rp).await?;
                format!("RelatedPerson/{rp}")
            }
            None => format!("Patient/{}", new.patients[0]),
        });
    } else if !new.patients.is_empty() || new.related_person.is_some() {
        return Err(UserError("--patient and --related-person are for patient accounts".into()));
    }
    let (pw, one_time) = match new.password {
        Some(p) => {
            password::check_rule(&p)?;
            (p, None)
        }
        None => {
            let p = hale_identity::random_text(20);
            (p.clone(), Some(p))
        }
    };
    let now = now_ms();
    let account = Account {
        id: uuid::Uuid::now_v7().to_string(),
        display_name: new.display_name.unwrap_or_else(|| username.clone()),
        username,
        role: role.code().to_string(),
        fhir_user,
        organization: new.organization,
        patients: new.patients,
        password_hash: password::hash(&pw)?,
        must_change_password: one_time.is_some(),
        totp_secret: None,
        totp_confirmed: false,
        totp_last_step: 0,
        disabled: false,
        created: now,
        updated: now,
    };
    repo.put_account(&account, true, "account-create").await?;
    Ok((account, one_time))
}

async fn existing(repo: &Repository, username: &str) -> Result<Account> {
    let folded = fold_username(username)?;
    repo.account_by_username(&folded).await?.ok_or_else(|| UserError(format!("there is no user '{folded}'")))
}

/// Disables (or enables again) an account.
pub async fn set_disabled(repo: &Repository, username: &str, disabled: bool) -> Result<Account> {
    let mut a = existing(repo, username).await?;
    a.disabled = disabled;
    a.updated = now_ms();
    repo.put_account(&a, false, if disabled { "account-disable" } else { "account-enable" }).await?;
    Ok(a)
}

/// Replaces an account's password with a one-time one (returned), to be changed at the
/// next sign-in.
pub async fn reset_password(repo: &Repository, username: &str) -> Result<String> {
    let mut a = existing(repo, username).await?;
    let p = hale_identity::random_text(20);
    a.password_hash = password::hash(&p)?;
    a.must_change_password = true;
    a.updated = now_ms();
    repo.put_account(&a, false, "account-reset-password").await?;
    Ok(p)
}

/// What MFA enrolment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolment {
    /// A new secret: the `otpauth://` URI to scan; confirm with a code from the app.
    Started(String),
    /// The code matched: the second factor is in force.
    Confirmed,
}

/// Starts TOTP enrolment (a new secret; `code` = `None`) or confirms it with the first
/// code from the authenticator app.
pub async fn enroll_mfa(repo: &Repository, username: &str, code: Option<&str>) -> Result<Enrolment> {
    let mut a = existing(repo, username).await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    match code {
        None => {
            let secret = totp::new_secret();
            let uri = totp::otpauth_uri(&secret, &a.username, "Hale")?;
            a.totp_secret = Some(secret);
            a.totp_confirmed = false;
            a.totp_last_step = 0;
            a.updated = now_ms();
            repo.put_account(&a, false, "account-enroll-mfa").await?;
            Ok(Enrolment::Started(uri))
        }
        Some(code) => {
            let secret = a
                .totp_secret
                .clone()
                .ok_or_else(|| UserError(format!("'{}' has no enrolment to confirm: start one first", a.username)))?;
            let step = totp::check(&secret, code, now, a.totp_last_step)?;
            a.totp_last_step = step;
            a.totp_confirmed = true;
            a.updated = now_ms();
            repo.put_account(&a, false, "account-confirm-mfa").await?;
            Ok(Enrolment::Confirmed)
        }
    }
}

/// Whom `hale token` issues a token for.
#[derive(Debug, Clone)]
pub enum TokenSubject {
    User(String),
    Client(String),
}

/// Issues an access token outside a sign-in (operators and scripts); audited. A user's
/// token is held to the user's role and relationship as any other; a client's carries
/// only `system/` scopes.
pub async fn issue_token(
    repo: &Repository,
    keys: &TokenKeys,
    subject: &TokenSubject,
    scope: &str,
    patient: Option<&str>,
    lifetime_seconds: i64,
) -> Result<String> {
    let scopes = Scopes::parse(scope, true).map_err(|e| UserError(e.to_string()))?;
    if scopes.resources.is_empty() {
        return Err(UserError("--scope names no resource scope (e.g. user/*.rs or system/*.rs)".into()));
    }
    let (claims, who) = match subject {
        TokenSubject::User(name) => {
            let a = existing(repo, name).await?;
            if a.disabled {
                return Err(UserError(format!("'{}' is disabled", a.username)));
            }
            if scopes.resources.iter().any(|s| s.level == hale_access::Level::System) {
                return Err(UserError("system/ scopes are for clients, not users".into()));
            }
            if let Some(p) = patient {
                must_exist(repo, "Patient", p).await?;
            }
            (keys.user_claims(&a, "hale-cli", &scopes, patient, lifetime_seconds), format!("user:{}", a.username))
        }
        TokenSubject::Client(id) => {
            if !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) || id.is_empty() {
                return Err(UserError("a client id has letters, digits and - _ . only".into()));
            }
            if scopes.resources.iter().any(|s| s.level != hale_access::Level::System) {
                return Err(UserError("a client acting for no user takes system/ scopes only".into()));
            }
            (keys.client_claims(id, &scopes, lifetime_seconds), format!("client:{id}"))
        }
    };
    repo.audit_token_issued(&who, &claims.scope).await?;
    Ok(keys.sign(&claims))
}

/// On the first start (no account at all), creates the administrator `admin` with a
/// one-time password and returns both for the operator; afterwards `None`.
pub async fn ensure_first_admin(repo: &Repository) -> Result<Option<(String, String)>> {
    if !repo.accounts().await?.is_empty() {
        return Ok(None);
    }
    let new = NewUser {
        username: "admin".into(),
        display_name: Some("Administrator".into()),
        role: Role::Administrator.code().into(),
        ..NewUser::default()
    };
    match add_user(repo, new).await {
        Ok((a, Some(p))) => Ok(Some((a.username, p))),
        Ok((_, None)) => Ok(None),
        // another node created it first
        Err(_) if !repo.accounts().await?.is_empty() => Ok(None),
        Err(e) => Err(e),
    }
}
