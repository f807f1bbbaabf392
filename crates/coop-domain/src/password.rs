use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};

pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// A password as typed by its owner: at least 10 characters. Never logged.
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Password {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(format!("must be at most {MAX_PASSWORD_CHARS} characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// argon2id with the crate's recommended parameters. Deliberately slow
    /// (tens of milliseconds, 19 MiB): call it off the async workers, through
    /// a bounded pool (`coop_mechanisms::hashing`).
    pub fn hash_blocking(&self) -> Result<PasswordHash, String> {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(self.0.as_bytes(), &salt)
            .map(|hash| PasswordHash(hash.to_string()))
            .map_err(|e| format!("hashing password: {e}"))
    }
}

/// A stored argon2id hash in PHC string format.
#[derive(Debug, Clone)]
pub struct PasswordHash(pub String);

impl PasswordHash {
    /// Verifies `candidate` against `stored`, or against a fixed dummy hash when
    /// there is no such user, so an unknown email costs the same time as a wrong
    /// password and response times do not reveal which emails exist. Slow like
    /// [`Password::hash_blocking`].
    pub fn verify_blocking(stored: Option<&PasswordHash>, candidate: &str) -> Result<bool, String> {
        let known_user = stored.is_some();
        let phc: &str = match stored {
            Some(hash) => &hash.0,
            None => dummy_hash(),
        };
        let parsed =
            argon2::PasswordHash::new(phc).map_err(|e| format!("stored hash is malformed: {e}"))?;
        let matches = Argon2::default()
            .verify_password(candidate.as_bytes(), &parsed)
            .is_ok();
        Ok(known_user && matches)
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"not-a-real-password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_passwords_are_refused() {
        assert!(Password::parse("123456789").is_err());
        assert!(Password::parse("1234567890").is_ok());
    }

    #[test]
    fn hashes_verify_only_the_right_password() {
        let hash = Password::parse("correct horse")
            .unwrap()
            .hash_blocking()
            .unwrap();
        assert!(hash.0.starts_with("$argon2id$"));
        assert!(PasswordHash::verify_blocking(Some(&hash), "correct horse").unwrap());
        assert!(!PasswordHash::verify_blocking(Some(&hash), "wrong horse!").unwrap());
        assert!(!PasswordHash::verify_blocking(None, "not-a-real-password").unwrap());
    }
}
