//! Who the people and programs using Hale are: accounts ([`Account`]) with their
//! Argon2id password hash and TOTP second factor, user names compared after Unicode
//! normalization and case folding, and the signed access tokens ([`TokenKeys`]) from
//! which each request's principal is read. No I/O except the key files in the data
//! directory; accounts are stored by the gate. Backend clients' signed assertions
//! (`private_key_jwt`) are checked against their registered keys ([`assertion`]).

// No unwrap or expect on the request path (clippy.toml allows them in tests); the
// few justified exceptions carry an #[allow] with the reason.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod account;
pub mod assertion;
pub mod password;
pub mod token;
pub mod totp;

pub use account::{Account, fold_username};
pub use token::{AccessClaims, TokenError, TokenKeys};

/// Why an identity operation was refused. The messages are for the person at the
/// keyboard and never contain a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("{0}")]
    Invalid(String),
    #[error("the password or code is not correct")]
    BadCredentials,
    #[error("{0}")]
    Internal(String),
}

/// Random text from an alphabet without look-alike characters (no 0/O, 1/l/I), for
/// one-time passwords and invitation codes.
pub fn random_text(len: usize) -> String {
    use rand_core::RngCore;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = String::with_capacity(len);
    let mut rng = rand_core::OsRng;
    while out.len() < len {
        // rejection sampling keeps every character equally likely
        let b = (rng.next_u32() & 0xff) as usize;
        if b < ALPHABET.len() * (256 / ALPHABET.len()) {
            out.push(ALPHABET[b % ALPHABET.len()] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_text_has_the_length_and_differs() {
        let a = super::random_text(20);
        assert_eq!(a.len(), 20);
        assert_ne!(a, super::random_text(20));
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() && !"0O1lI".contains(c)));
    }
}
