//! TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s steps, as authenticator apps
//! expect), with a code never accepted twice.

use totp_rs::{Algorithm, Secret, TOTP};

use crate::IdentityError;

/// A fresh 160-bit secret, base32.
pub fn new_secret() -> String {
    use rand_core::RngCore;
    let mut bytes = [0u8; 20];
    rand_core::OsRng.fill_bytes(&mut bytes);
    Secret::Raw(bytes.to_vec()).to_encoded().to_string()
}

fn totp(secret_b32: &str, account: &str, issuer: &str) -> Result<TOTP, IdentityError> {
    let bytes = Secret::Encoded(secret_b32.to_string())
        .to_bytes()
        .map_err(|_| IdentityError::Internal("the stored TOTP secret is not base32".into()))?;
    TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes, Some(issuer.to_string()), account.to_string())
        .map_err(|e| IdentityError::Internal(format!("TOTP: {e}")))
}

/// The `otpauth://` URI an authenticator app enrols from.
pub fn otpauth_uri(secret_b32: &str, account: &str, issuer: &str) -> Result<String, IdentityError> {
    Ok(totp(secret_b32, account, issuer)?.get_url())
}

/// The code of the step holding `unix_seconds` (for tests and the enrolment check).
pub fn code_at(secret_b32: &str, unix_seconds: u64) -> Result<String, IdentityError> {
    Ok(totp(secret_b32, "x", "Hale")?.generate(unix_seconds))
}

/// Checks `code` at `unix_seconds`, allowing one step of clock skew either way. A code
/// is accepted only for a step after `last_step`: the step accepted is returned, to be
/// stored as the new `last_step`.
pub fn check(secret_b32: &str, code: &str, unix_seconds: u64, last_step: u64) -> Result<u64, IdentityError> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdentityError::BadCredentials);
    }
    let t = totp(secret_b32, "x", "Hale")?;
    let now = unix_seconds / 30;
    for step in [now.saturating_sub(1), now, now + 1] {
        if step > last_step && constant_time_eq(t.generate(step * 30).as_bytes(), code.as_bytes()) {
            return Ok(step);
        }
    }
    Err(IdentityError::BadCredentials)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_works_once_and_in_its_window() {
        let s = new_secret();
        let t = 1_800_000_000;
        let code = code_at(&s, t).unwrap();
        let step = check(&s, &code, t, 0).unwrap();
        assert_eq!(step, t / 30);
        assert_eq!(check(&s, &code, t, step), Err(IdentityError::BadCredentials), "replayed");
        assert!(check(&s, &code, t + 30, 0).is_ok(), "one step of skew");
        assert!(check(&s, &code, t + 300, 0).is_err(), "long expired");
        assert!(check(&s, "12345", t, 0).is_err());
        assert!(check(&s, "abcdef", t, 0).is_err());
    }

    #[test]
    fn the_uri_names_issuer_and_account() {
        let s = new_secret();
        let uri = otpauth_uri(&s, "alice", "Hale").unwrap();
        assert!(uri.starts_with("otpauth://totp/Hale:alice?"), "{uri}");
        assert!(uri.contains(&format!("secret={s}")), "{uri}");
    }
}
