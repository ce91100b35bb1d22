//! Random secrets and their stored hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{Error, Result};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// `n` random bytes from the operating system.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // The system RNG only fails when the OS has no entropy source at all.
    #[allow(clippy::expect_used)]
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the operating system's random number generator failed");
    buf
}

/// A random secret as lowercase hex (`bytes` random bytes).
pub fn random_hex(bytes: usize) -> String {
    hex::encode(random_bytes(bytes))
}

/// A random password that is easy to type: 16 characters from an alphabet without look-alikes.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    loop {
        let password: String = random_bytes(16)
            .into_iter()
            .map(|b| ALPHABET[b as usize % ALPHABET.len()] as char)
            .collect();
        if check_password_policy(&password).is_ok() {
            return password;
        }
    }
}

/// SHA-256 of a high-entropy secret (session ids, token secrets), as hex. Those secrets are
/// random, so a fast hash is enough; passwords use argon2id.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        secret.as_bytes(),
    ))
}

/// Compares two strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn argon2() -> Argon2<'static> {
    // OWASP's first recommendation for argon2id: 19 MiB, 2 passes, 1 lane.
    #[allow(clippy::expect_used)]
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks a new password against the policy.
pub fn check_password_policy(password: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(Error::invalid(
            "password",
            format!("{chars} characters; at least {MIN_PASSWORD_CHARS} are required"),
        ));
    }
    let classes = [
        password.chars().any(|c| c.is_lowercase()),
        password.chars().any(|c| c.is_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_alphanumeric()),
    ];
    if classes.iter().filter(|c| **c).count() < 2 {
        return Err(Error::invalid(
            "password",
            "use at least two of: lowercase letters, uppercase letters, digits, symbols",
        ));
    }
    Ok(())
}

/// Hashes a password with argon2id and a random salt (PHC string format).
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&random_bytes(16)).map_err(|e| Error::Hash(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

/// Whether `password` matches a stored PHC hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(hash) => argon2().verify_password(password.as_bytes(), &hash).is_ok(),
        Err(e) => {
            tracing::error!("stored password hash is unreadable: {e}");
            false
        }
    }
}

/// A hash that costs as much to verify as a real one, for logins of unknown accounts, so the
/// time a refusal takes does not tell whether the account exists.
pub fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&random_password()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse 9").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse 9", &hash));
        assert!(!verify_password("correct horse 8", &hash));
        assert!(!verify_password("x", "not a hash"));
        // A fresh salt each time.
        assert_ne!(hash, hash_password("correct horse 9").unwrap());
    }

    #[test]
    fn weak_passwords_are_refused_with_the_rule() {
        let err = check_password_policy("short1").unwrap_err().to_string();
        assert!(err.contains("at least 10"), "{err}");
        let err = check_password_policy("onlylowercaseletters")
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least two of"), "{err}");
        check_password_policy("数据中心密码abc12").unwrap();
        check_password_policy(&random_password()).unwrap();
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
