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

    /// argon2id with the crate's recommended parameters. Deliberately slow, so it
    /// runs on the blocking pool instead of stalling the async workers.
    pub async fn hash(self) -> anyhow::Result<PasswordHash> {
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(self.0.as_bytes(), &salt)
                .map(|hash| PasswordHash(hash.to_string()))
                .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
        })
        .await?
    }
}

/// A stored argon2id hash in PHC string format.
#[derive(Debug, Clone)]
pub struct PasswordHash(pub String);

impl PasswordHash {
    /// Verifies `candidate` against `stored`, or against a fixed dummy hash when
    /// there is no such user, so an unknown email costs the same time as a wrong
    /// password and response times do not reveal which emails exist.
    pub async fn verify(stored: Option<PasswordHash>, candidate: String) -> anyhow::Result<bool> {
        tokio::task::spawn_blocking(move || {
            let known_user = stored.is_some();
            let phc = stored
                .map(|h| h.0)
                .unwrap_or_else(|| dummy_hash().to_owned());
            let parsed = argon2::PasswordHash::new(&phc)
                .map_err(|e| anyhow::anyhow!("stored hash is malformed: {e}"))?;
            let matches = Argon2::default()
                .verify_password(candidate.as_bytes(), &parsed)
                .is_ok();
            Ok(known_user && matches)
        })
        .await?
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

    #[tokio::test]
    async fn hashes_verify_only_the_right_password() {
        let hash = Password::parse("correct horse")
            .unwrap()
            .hash()
            .await
            .unwrap();
        assert!(hash.0.starts_with("$argon2id$"));
        assert!(
            PasswordHash::verify(Some(hash.clone()), "correct horse".into())
                .await
                .unwrap()
        );
        assert!(
            !PasswordHash::verify(Some(hash), "wrong horse!".into())
                .await
                .unwrap()
        );
        assert!(
            !PasswordHash::verify(None, "not-a-real-password".into())
                .await
                .unwrap()
        );
    }
}
