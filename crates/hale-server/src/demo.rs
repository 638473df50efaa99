//! The demo's accounts (`hale demo`, first start): the administrator, a clinician and a
//! nurse of the first synthetic practice (the clinician is the general practitioner of
//! some of its patients), and a patient of that practice for the portal. Each gets a
//! random password, shown once; staff also get an authenticator (TOTP) secret, since
//! their roles sign in with a second factor.

use hale_identity::{password, totp};
use hale_repository::Repository;

use crate::users::{NewUser, UserError, add_user, ensure_first_admin};

/// An account made for the demo, with what its user needs to sign in.
#[derive(Debug, Clone)]
pub struct DemoAccount {
    pub role: &'static str,
    pub username: String,
    pub display_name: String,
    pub password: String,
    /// The authenticator secret (base32), for roles that sign in with a second factor.
    pub totp_secret: Option<String>,
}

impl DemoAccount {
    /// A code the authenticator would show now.
    pub fn current_code(&self) -> Option<String> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        self.totp_secret.as_deref().and_then(|s| totp::code_at(s, now).ok())
    }
}

/// The practice the demo's staff work at, and its general practitioner they sign in as
/// (`hale-synth`'s first organization and clinician).
const PRACTICE: &str = "synth-org-1";
const PRACTITIONER: &str = "synth-pr-1";

/// Makes the demo's accounts when the store has none (a first start); `None` when it
/// has some already. The administrator is the one every first start makes
/// ([`ensure_first_admin`]), with an authenticator enrolled here.
pub async fn create_accounts(repo: &Repository) -> Result<Option<Vec<DemoAccount>>, UserError> {
    let Some((admin, admin_password)) = ensure_first_admin(repo).await? else {
        return Ok(None);
    };
    let mut out = vec![DemoAccount {
        role: "administrator",
        username: admin.clone(),
        display_name: "Administrator".into(),
        password: admin_password,
        totp_secret: Some(enroll(repo, &admin).await?),
    }];
    let practitioner = repo
        .read(&hale_repository::resource_type("Practitioner")?, &hale_repository::resource_id(PRACTITIONER)?)
        .await
        .ok()
        .and_then(|r| r.body)
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok());
    let doctor = practitioner
        .as_ref()
        .and_then(|p| p["name"][0]["family"].as_str())
        .map(|f| {
            format!("Dr {} {f}", practitioner.as_ref().and_then(|p| p["name"][0]["given"][0].as_str()).unwrap_or(""))
        })
        .unwrap_or_else(|| "Demo Clinician".into());
    let staff =
        [("clinician", "dr.demo", doctor.as_str(), Some(PRACTITIONER)), ("nurse", "nurse.demo", "Demo Nurse", None)];
    for (role, username, display, practitioner) in staff {
        let pw = new_password();
        let new = NewUser {
            username: username.into(),
            display_name: Some(display.into()),
            role: role.into(),
            organization: Some(PRACTICE.into()),
            practitioner: practitioner.map(str::to_string),
            password: Some(pw.clone()),
            ..NewUser::default()
        };
        add_user(repo, new).await?;
        out.push(DemoAccount {
            role,
            username: username.into(),
            display_name: display.into(),
            password: pw,
            totp_secret: Some(enroll(repo, username).await?),
        });
    }
    if let Some((id, name)) = first_patient(repo).await? {
        let pw = new_password();
        let new = NewUser {
            username: "patient.demo".into(),
            display_name: Some(name.clone()),
            role: "patient".into(),
            patients: vec![id],
            password: Some(pw.clone()),
            ..NewUser::default()
        };
        add_user(repo, new).await?;
        out.push(DemoAccount {
            role: "patient",
            username: "patient.demo".into(),
            display_name: name,
            password: pw,
            totp_secret: None,
        });
    }
    Ok(Some(out))
}

fn new_password() -> String {
    // four groups of five, easy to type from a terminal
    let t = hale_identity::random_text(20);
    let p = format!("{}-{}-{}-{}", &t[0..5], &t[5..10], &t[10..15], &t[15..20]);
    debug_assert!(password::check_rule(&p).is_ok());
    p
}

/// Enrols and confirms an authenticator for `username`; returns its secret.
async fn enroll(repo: &Repository, username: &str) -> Result<String, UserError> {
    let folded = hale_identity::fold_username(username)?;
    let mut a = repo.account_by_username(&folded).await?.ok_or_else(|| UserError(format!("no user '{folded}'")))?;
    let secret = totp::new_secret();
    a.totp_secret = Some(secret.clone());
    a.totp_confirmed = true;
    a.totp_last_step = 0;
    repo.put_account(&a, false, "account-confirm-mfa").await?;
    Ok(secret)
}

/// The first patient (by name) of the demo's practice: id and display name.
async fn first_patient(repo: &Repository) -> Result<Option<(String, String)>, UserError> {
    let ty = hale_repository::resource_type("Patient")?;
    let pairs = [
        ("organization".to_string(), format!("Organization/{PRACTICE}")),
        ("_sort".to_string(), "family,given".to_string()),
    ];
    let request = hale_search::parse::parse(&ty, &pairs, false).map_err(|i| UserError(i.diagnostics))?;
    let page = repo.search(&request, 1, false).await?;
    Ok(page.entries.first().and_then(|r| {
        let v: serde_json::Value = serde_json::from_str(r.body.as_deref()?).ok()?;
        let name = format!(
            "{} {}",
            v["name"][0]["given"][0].as_str().unwrap_or(""),
            v["name"][0]["family"].as_str().unwrap_or("")
        );
        Some((r.id.as_str().to_string(), name.trim().to_string()))
    }))
}
