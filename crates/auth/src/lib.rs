//! Credentials: password hashing and access tokens.
//!
//! Passwords are slow-hashed with argon2id so a stolen database does not reveal
//! them. Tokens carry 240 bits of randomness, so a fast SHA-256 digest is enough
//! to store them: the store never holds a usable secret.

pub mod secrets;
pub mod signing;
pub mod throttle;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::{distributions::Alphanumeric, rngs::OsRng, Rng};
use sha2::{Digest, Sha256};

/// Prefix of every Slipway token, so secret scanners and users can recognise one.
pub const TOKEN_PREFIX: &str = "slp_";
/// How many random characters follow the prefix (62^40 ≈ 2^238).
const TOKEN_RANDOM_LEN: usize = 40;
/// Shortest password accepted for a new account.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted: bounds the hashing work one request can cause.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A credential-handling failure.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The proposed password breaks the length rule.
    #[error("password must be between {MIN_PASSWORD_LEN} and {MAX_PASSWORD_LEN} characters")]
    WeakPassword,
    /// The stored hash could not be read or produced.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Hashes a new password with argon2id and a random salt (PHC string format).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(AuthError::WeakPassword);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Checks `password` against a stored PHC hash; false on any mismatch or bad hash.
pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    match PasswordHash::new(stored_hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a random password made with the same parameters as
/// [`hash_password`], computed once: what a login for an unknown account is
/// checked against, so it costs as much time as one for a real account.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password(&random_code(32)).expect("hashing a random 32-character password")
    })
}

/// Checks `password` against the account's stored hash, or, when there is
/// no such account (`None`), against [`dummy_hash`] so that the answer takes
/// the same time either way (no user enumeration by timing); always false
/// without an account.
pub fn verify_password_or_dummy(password: &str, stored_hash: Option<&str>) -> bool {
    let ok = verify_password(password, stored_hash.unwrap_or_else(|| dummy_hash()));
    ok && stored_hash.is_some()
}

/// A freshly minted token: the secret goes to the user once, the digest to the store.
pub struct NewToken {
    /// The full secret, e.g. `slp_…`; shown once, never stored.
    pub secret: String,
    /// Hex SHA-256 of the secret; what the store keeps and looks up.
    pub digest: String,
    /// The first characters, kept in clear so users can tell tokens apart.
    pub prefix: String,
}

/// Makes a new random token.
pub fn new_token() -> NewToken {
    let random: String = OsRng
        .sample_iter(&Alphanumeric)
        .take(TOKEN_RANDOM_LEN)
        .map(char::from)
        .collect();
    let secret = format!("{TOKEN_PREFIX}{random}");
    NewToken {
        digest: token_digest(&secret),
        prefix: secret[..TOKEN_PREFIX.len() + 6].to_owned(),
        secret,
    }
}

/// The digest under which a token is stored and looked up.
pub fn token_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A random one-time code (e.g. the first-run setup token), URL-safe.
pub fn random_code(len: usize) -> String {
    OsRng
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse!", &h));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn unknown_accounts_are_checked_against_a_dummy_hash() {
        assert!(dummy_hash().starts_with("$argon2id$"));
        let real = hash_password("correct horse").unwrap();
        // Same algorithm and parameters: only the salt and hash differ.
        let params = |h: &str| h.rsplitn(3, '$').nth(2).unwrap().to_owned();
        assert_eq!(params(dummy_hash()), params(&real));
        assert!(verify_password_or_dummy("correct horse", Some(&real)));
        assert!(!verify_password_or_dummy("correct horse", None));
        assert!(!verify_password_or_dummy("", None));
    }

    #[test]
    fn short_password_refused() {
        assert!(matches!(
            hash_password("short"),
            Err(AuthError::WeakPassword)
        ));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(TOKEN_PREFIX));
        assert_eq!(a.secret.len(), TOKEN_PREFIX.len() + TOKEN_RANDOM_LEN);
        assert_eq!(a.digest, token_digest(&a.secret));
        assert_ne!(a.digest, a.secret);
        assert!(a.secret.starts_with(&a.prefix));
    }
}
