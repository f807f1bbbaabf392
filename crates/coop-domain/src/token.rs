//! Secret tokens (sessions, invites, password resets, email confirmations) and
//! how they are stored: a token is 32 random bytes shown as URL-safe base64; the
//! database keeps only its SHA-256 in hex, so a copy of a table yields nothing
//! that works.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Length of a token as text: 32 bytes in unpadded base64.
pub const TOKEN_CHARS: usize = 43;

/// A new random token.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored in place of a token.
pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Whether `token` could be one of ours: anything else never reaches a store.
pub fn plausible(token: &str) -> bool {
    token.len() == TOKEN_CHARS
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Lower-case hex, without a formatter call per byte (this runs on every request).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_and_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn generated_tokens_are_plausible_and_distinct() {
        let a = generate();
        assert!(plausible(&a));
        assert_ne!(a, generate());
        assert_eq!(hash(&a).len(), 64);
        assert!(!plausible("short"));
        assert!(!plausible(&format!("{}*", "a".repeat(42))));
    }
}
