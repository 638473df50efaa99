//! Passwords: Argon2id hashes in the PHC string format, and the rule a new password
//! must meet.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::IdentityError;

/// The shortest password accepted (NIST SP 800-63B asks for at least 8; Hale asks 12).
pub const MIN_LENGTH: usize = 12;

/// Checks a new password against the rule.
pub fn check_rule(password: &str) -> Result<(), IdentityError> {
    let n = password.chars().count();
    if n < MIN_LENGTH {
        return Err(IdentityError::Invalid(format!("a password has at least {MIN_LENGTH} characters")));
    }
    if n > 256 {
        return Err(IdentityError::Invalid("a password has at most 256 characters".into()));
    }
    if password.chars().all(|c| password.starts_with(c)) {
        return Err(IdentityError::Invalid("a password is not one character repeated".into()));
    }
    Ok(())
}

/// Hashes a password with Argon2id (the crate's defaults: 19 MiB, 2 passes) and a
/// fresh salt.
pub fn hash(password: &str) -> Result<String, IdentityError> {
    let salt = SaltString::generate(&mut rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| IdentityError::Internal(format!("hashing failed: {e}")))
}

/// Whether `password` matches the stored hash.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash to verify against when the account does not exist, so that a wrong user
/// name takes as long as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("decoy password for unknown accounts").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterz", &h));
        assert!(!verify("correct horse battery", "not a hash"));
        assert_ne!(h, hash("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn the_rule_refuses_short_and_trivial_passwords() {
        assert!(check_rule("short").is_err());
        assert!(check_rule("aaaaaaaaaaaaaaaa").is_err());
        assert!(check_rule("a reasonable passphrase").is_ok());
    }
}
