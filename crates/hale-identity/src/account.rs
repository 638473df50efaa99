//! Accounts: a user linked to a FHIR Practitioner, Patient or RelatedPerson, with a
//! role, and the user name rule.

use hale_access::Role;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::IdentityError;

/// A user account as stored (a JSON document keyed by id and by folded user name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    /// The folded user name ([`fold_username`]): unique.
    pub username: String,
    pub display_name: String,
    /// The role's code ([`Role::code`]).
    pub role: String,
    /// `Practitioner/...`, `Patient/...` or `RelatedPerson/...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    /// The Organization id a staff member works for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// For the patient role: the Patient ids whose record the user may see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patients: Vec<String>,
    /// Argon2id, in the PHC string format.
    pub password_hash: String,
    /// The password was set by someone else (first start, a reset) and must be changed
    /// at the next sign-in.
    #[serde(default)]
    pub must_change_password: bool,
    /// The TOTP secret (base32), once enrolment has started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_secret: Option<String>,
    /// The first code was entered: the second factor is in force.
    #[serde(default)]
    pub totp_confirmed: bool,
    /// The last TOTP time step accepted: a code is never accepted twice.
    #[serde(default)]
    pub totp_last_step: u64,
    #[serde(default)]
    pub disabled: bool,
    /// Unix milliseconds.
    pub created: i64,
    pub updated: i64,
}

impl Account {
    pub fn role(&self) -> Result<Role, IdentityError> {
        Role::parse(&self.role).ok_or_else(|| IdentityError::Internal(format!("unknown role '{}'", self.role)))
    }

    /// The account as an administrator lists it: no secret, not even a hash.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "username": self.username,
            "displayName": self.display_name,
            "role": self.role,
            "fhirUser": self.fhir_user,
            "organization": self.organization,
            "patients": self.patients,
            "mfa": self.totp_confirmed,
            "disabled": self.disabled,
            "mustChangePassword": self.must_change_password,
        })
    }
}

/// A user name as compared and stored: Unicode NFKC, lower case, NFKC again (so
/// `Ａlice`, `ALICE` and `alice` are one name), 1 to 64 characters of letters, digits
/// and `. _ - @`.
pub fn fold_username(name: &str) -> Result<String, IdentityError> {
    let folded: String = name.trim().nfkc().collect::<String>().to_lowercase().nfkc().collect();
    let n = folded.chars().count();
    if n == 0 || n > 64 {
        return Err(IdentityError::Invalid("a user name has 1 to 64 characters".into()));
    }
    if let Some(c) = folded.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))) {
        return Err(IdentityError::Invalid(format!("a user name has letters, digits and . _ - @ only (not {:?})", c)));
    }
    Ok(folded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_to_one_form() {
        assert_eq!(fold_username("Alice").unwrap(), "alice");
        assert_eq!(fold_username(" ＡＬＩＣＥ ").unwrap(), "alice");
        assert_eq!(fold_username("Dr.Émile").unwrap(), fold_username("dr.e\u{301}mile").unwrap());
        assert_eq!(fold_username("STRASSE").unwrap(), "strasse");
        for bad in ["", "a b", "x\u{0}", "<script>", &"a".repeat(65)] {
            assert!(fold_username(bad).is_err(), "{bad:?}");
        }
    }
}
