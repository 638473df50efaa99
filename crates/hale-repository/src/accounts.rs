//! User accounts through the gate: administrators (and Hale's own commands) create,
//! change and list them; every change is audited in its own transaction. Accounts are
//! not FHIR resources and never leave through the FHIR API.

use hale_access::Interaction;
use hale_access::{Principal, Role};
use hale_audit::Event;
use hale_identity::Account;
use hale_store::{AccountKey, AccountRow, AuditQuery, AuthRecord};

use crate::{Error, Repository, Result};

fn to_row(a: &Account) -> Result<AccountRow> {
    let body = serde_json::to_string(a).map_err(|e| Error::Store(hale_store::Error::Backend(e.to_string())))?;
    Ok(AccountRow { id: a.id.clone(), username: a.username.clone(), body })
}

fn from_row(r: AccountRow) -> Result<Account> {
    serde_json::from_str(&r.body)
        .map_err(|e| Error::Store(hale_store::Error::Backend(format!("account {} is not readable: {e}", r.id))))
}

impl Repository {
    /// Stores a new account (`create`) or a changed one; `action` names the change in
    /// the audit trail (`account-create`, `account-disable`, `account-reset-password`,
    /// `account-enroll-mfa` ...).
    ///
    /// When the change disables the account or changes its password (a reset, or the
    /// user's own change), every token issued to it before is void from now on: a
    /// [`TOKENS_VOID`] record (account id, this instant) that the API reads at most a
    /// second late on every node. It is written before the account, so a failure
    /// between the two leaves tokens void, never an account disabled with live tokens.
    pub async fn put_account(&self, account: &Account, create: bool, action: &str) -> Result<()> {
        let event = Event::new(action, Interaction::ManageAccounts).target(format!("account/{}", account.username));
        let result = async {
            let store = self.door(Interaction::ManageAccounts, None).await?;
            if !create {
                let old = store.account(AccountKey::Id(&account.id)).await?.map(from_row).transpose()?;
                let voids = old.is_some_and(|o| account.disabled || o.password_hash != account.password_hash);
                if voids {
                    let now = hale_store::Instant::now().millis();
                    let body = serde_json::json!({"before": now, "reason": action});
                    let record = AuthRecord {
                        kind: TOKENS_VOID.into(),
                        key: account.id.clone(),
                        body: body.to_string(),
                        expires: Some(now + TOKENS_VOID_MS),
                    };
                    store.put_auth(record, None).await?;
                }
            }
            let row = to_row(account)?;
            Ok(store.put_account(row, create, event.clone().row(self.context(), &[])).await?)
        }
        .await;
        self.audit_failed_write(event, result).await
    }

    /// Every account whose tokens issued before an instant are void (disabled, or its
    /// password changed, within the last hour): (account id, Unix milliseconds).
    pub async fn voided_tokens(&self) -> Result<Vec<(String, i64)>> {
        Ok(self
            .auth_records(TOKENS_VOID)
            .await?
            .into_iter()
            .filter_map(|(account, b)| Some((account, b["before"].as_i64()?)))
            .collect())
    }

    /// Whether a verified access token is still in force, read from the store now (not
    /// the FHIR API's one-second cache): its `jti` revoked, its account's
    /// [`TOKENS_VOID`] mark, its account disabled or gone; decided by
    /// [`hale_identity::token::in_force`]. The outer error is the store's.
    pub async fn access_token_in_force(
        &self,
        claims: &hale_identity::AccessClaims,
    ) -> Result<std::result::Result<(), hale_identity::TokenError>> {
        let revoked = self.auth_record("revoked-jti", &claims.jti).await?.is_some();
        let mut standing = hale_identity::token::Standing { revoked, ..Default::default() };
        if let Some(account) = claims.account() {
            standing.void_before = self.auth_record(TOKENS_VOID, account).await?.and_then(|v| v["before"].as_i64());
            standing.account_disabled = self.account_by_id(account).await?.is_none_or(|a| a.disabled);
        }
        Ok(hale_identity::token::in_force(claims, &standing))
    }

    /// The account with this folded user name.
    pub async fn account_by_username(&self, username: &str) -> Result<Option<Account>> {
        let store = self.door(Interaction::ManageAccounts, None).await?;
        store.account(AccountKey::Username(username)).await?.map(from_row).transpose()
    }

    /// The account with this id.
    pub async fn account_by_id(&self, id: &str) -> Result<Option<Account>> {
        let store = self.door(Interaction::ManageAccounts, None).await?;
        store.account(AccountKey::Id(id)).await?.map(from_row).transpose()
    }

    /// Every account, by user name.
    pub async fn accounts(&self) -> Result<Vec<Account>> {
        let store = self.door(Interaction::ManageAccounts, None).await?;
        store.accounts().await?.into_iter().map(from_row).collect()
    }

    /// Searches the audit trail, newest first: a security administrator (or Hale's
    /// own commands, or a client with `system/AuditEvent.s`) searches all of it; a
    /// patient sees the entries about their own record only, and only those that
    /// concern no other patient. The search is itself audited.
    pub async fn search_audit(&self, mut query: AuditQuery) -> Result<Vec<(i64, String)>> {
        let ty = crate::resource_type("AuditEvent")?;
        let mut event = Event::new("search-type", Interaction::Search).target("AuditEvent");
        if let Some(ps) = &query.patients {
            for p in ps {
                event = event.patient(p.as_str());
            }
        }
        let result = async {
            let store = self.door(Interaction::Search, Some(&ty)).await?;
            if let Principal::User(u) = &self.context().principal
                && u.role == Role::Patient
            {
                let own: Vec<String> = u.patients.clone();
                query.patients = Some(match query.patients.take() {
                    Some(asked) => asked.into_iter().filter(|p| own.contains(p)).collect(),
                    None => own,
                });
                query.only_these_patients = true;
            }
            let rows = store.audit_search(&query).await?;
            // the stored entries' fixed parts are coded: the AuditEvents themselves
            Ok(rows.into_iter().map(|(seq, body)| (seq, hale_audit::expand(&body).into_owned())).collect())
        }
        .await;
        self.audited(event, result, |_| Vec::new()).await
    }

    /// Breaks the glass: a clinician or nurse opens `patient`'s record outside their
    /// usual relationship, stating `reason`, for [`BREAK_GLASS_MS`]. The grant is
    /// audited (flagged `BTG`), and so is every access under it. Returns when it expires
    /// (Unix milliseconds).
    pub async fn break_glass(&self, patient: &hale_fhir::ResourceId, reason: &str) -> Result<i64> {
        let ty = crate::resource_type("Patient")?;
        let reason = reason.trim();
        let mut event = Event::new("break-glass", Interaction::Read).target(format!("Patient/{patient}"));
        event = event.patient(patient.as_str());
        let result = async {
            let store = self.door(Interaction::Read, Some(&ty)).await?;
            let Principal::User(u) = &self.context().principal else {
                return Err(denied("only a clinician or a nurse breaks the glass"));
            };
            if !matches!(u.role, Role::Clinician | Role::Nurse) {
                return Err(denied("only a clinician or a nurse breaks the glass"));
            }
            if reason.chars().count() < 10 {
                return Err(Error::invalid(
                    hale_fhir::Issue::error(hale_fhir::IssueType::Required, "State the reason (at least 10 characters)")
                        .at("Parameters.parameter[reason]"),
                ));
            }
            match store.read(&ty, patient).await? {
                Some(s) if !s.is_deleted() => {}
                _ => return Err(Error::NotFound(format!("Patient/{patient}"))),
            }
            let expires = hale_store::Instant::now().millis() + BREAK_GLASS_MS;
            let body = serde_json::json!({"account": u.account, "patient": patient.as_str(), "reason": reason, "expires": expires});
            let mut ctx = self.context().clone();
            ctx.break_glass = Some(hale_access::BreakGlass {
                reason: reason.to_string(),
                expires_at: expires,
                patients: vec![patient.to_string()],
            });
            let row = event.clone().query(reason.to_string()).row(&ctx, &[]);
            let record = AuthRecord {
                kind: "break-glass".into(),
                key: format!("{}:{patient}", u.account),
                body: body.to_string(),
                expires: Some(expires),
            };
            store.put_auth(record, Some(row)).await?;
            Ok(expires)
        }
        .await;
        // a grant was audited with its record; a refusal is audited here
        self.audit_failed_write(event, result).await
    }

    /// Every break-the-glass grant in force: (account, patient, reason, expires).
    pub async fn break_glass_grants(&self) -> Result<Vec<(String, String, String, i64)>> {
        Ok(self
            .auth_records("break-glass")
            .await?
            .into_iter()
            .filter_map(|(_, b)| {
                Some((
                    b["account"].as_str()?.to_string(),
                    b["patient"].as_str()?.to_string(),
                    b["reason"].as_str()?.to_string(),
                    b["expires"].as_i64()?,
                ))
            })
            .collect())
    }

    /// Records that an access token was issued outside a sign-in (`hale token`), and
    /// for whom; only Hale's own commands may.
    pub async fn audit_token_issued(&self, subject: &str, scope: &str) -> Result<()> {
        let store = self.door(Interaction::IssueToken, None).await?;
        let event =
            Event::new("issue-token", Interaction::IssueToken).target(subject.to_string()).query(scope.to_string());
        Ok(store.append_audit(vec![event.row(self.context(), &[])]).await?)
    }

    /// Writes an authorization-server record (Hale's own authorization server only);
    /// `audited` names the change in the audit trail (a client registered, a token
    /// revoked), in the same transaction.
    pub async fn put_auth_record(
        &self,
        kind: &str,
        key: &str,
        body: &serde_json::Value,
        expires: Option<i64>,
        audited: Option<(&str, &str)>,
    ) -> Result<()> {
        let store = self.door(Interaction::IssueToken, None).await?;
        let audit = audited.map(|(action, target)| {
            Event::new(action, Interaction::IssueToken).target(target.to_string()).row(self.context(), &[])
        });
        let record = AuthRecord { kind: kind.into(), key: key.into(), body: body.to_string(), expires };
        Ok(store.put_auth(record, audit).await?)
    }

    /// Inserts an authorization-server record unless a live one has its kind and key:
    /// `false` then (a replayed one-time value).
    pub async fn claim_auth_record(
        &self,
        kind: &str,
        key: &str,
        body: &serde_json::Value,
        expires: Option<i64>,
    ) -> Result<bool> {
        let store = self.door(Interaction::IssueToken, None).await?;
        let record = AuthRecord { kind: kind.into(), key: key.into(), body: body.to_string(), expires };
        Ok(store.claim_auth(record).await?)
    }

    /// An authorization-server record, unless missing or expired.
    pub async fn auth_record(&self, kind: &str, key: &str) -> Result<Option<serde_json::Value>> {
        let store = self.door(Interaction::IssueToken, None).await?;
        store.auth(kind, key).await?.map(|r| parse_body(&r)).transpose()
    }

    /// Removes an authorization-server record and returns it; of concurrent callers at
    /// most one gets it.
    pub async fn take_auth_record(&self, kind: &str, key: &str) -> Result<Option<serde_json::Value>> {
        let store = self.door(Interaction::IssueToken, None).await?;
        store.take_auth(kind, key).await?.map(|r| parse_body(&r)).transpose()
    }

    /// Every live record of `kind`, as (key, body).
    pub async fn auth_records(&self, kind: &str) -> Result<Vec<(String, serde_json::Value)>> {
        let store = self.door(Interaction::IssueToken, None).await?;
        store.auths(kind).await?.into_iter().map(|r| Ok((r.key.clone(), parse_body(&r)?))).collect()
    }

    /// How many live records of `kind` have keys starting with `key_prefix`.
    pub async fn count_auth_records(&self, kind: &str, key_prefix: &str) -> Result<u64> {
        let store = self.door(Interaction::IssueToken, None).await?;
        Ok(store.count_auths(kind, key_prefix).await?)
    }

    /// Removes the records of `kind` whose keys start with `key_prefix`.
    pub async fn remove_auth_records(&self, kind: &str, key_prefix: &str) -> Result<u64> {
        let store = self.door(Interaction::IssueToken, None).await?;
        Ok(store.remove_auths(kind, key_prefix).await?)
    }

    /// Audits a sign-in or another authorization-server event (`login`, `login-failed`,
    /// `token`, `token-refused`...) for `who`, with its outcome.
    pub async fn audit_auth_event(&self, action: &str, who: &str, failure: Option<&str>) -> Result<()> {
        let store = self.door(Interaction::IssueToken, None).await?;
        let mut event = Event::new(action, Interaction::IssueToken).target(who.to_string());
        if let Some(reason) = failure {
            event = event.failed(hale_audit::Outcome::MinorFailure, reason);
        }
        Ok(store.append_audit(vec![event.row(self.context(), &[])]).await?)
    }
}

fn parse_body(r: &AuthRecord) -> Result<serde_json::Value> {
    serde_json::from_str(&r.body)
        .map_err(|e| Error::Store(hale_store::Error::Backend(format!("{} record is not readable: {e}", r.kind))))
}

/// How long a break-the-glass grant lasts.
pub const BREAK_GLASS_MS: i64 = 60 * 60 * 1000;

/// The kind of the authorization records that void an account's tokens issued before
/// an instant (see [`Repository::put_account`]).
pub const TOKENS_VOID: &str = "tokens-void";

/// How long a [`TOKENS_VOID`] record is kept: longer than any token it voids lives (an
/// access token an hour, a refresh token's grant 30 days).
pub const TOKENS_VOID_MS: i64 = 31 * 24 * 3600 * 1000;

fn denied(reason: &str) -> Error {
    Error::Denied(hale_access::Denial { category: hale_fhir::Category::Forbidden, reason: reason.to_string() })
}
