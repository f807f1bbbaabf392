/// A person's, family's or co-op's name: trimmed, 1–200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

pub const MAX_NAME_CHARS: usize = 200;

impl Name {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err("must not be empty".into());
        }
        if chars > MAX_NAME_CHARS {
            return Err(format!(
                "must be at most {MAX_NAME_CHARS} characters (got {chars})"
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        if trimmed.chars().any(reorders_text) {
            return Err(
                "must not contain invisible direction marks (they can make a name \
                 read as something else)"
                    .into(),
            );
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Unicode's bidirectional formatting characters: embeddings, overrides
/// and isolates (U+202A–U+202E, U+2066–U+2069) and the implicit marks
/// (U+200E, U+200F, U+061C). In a name they make the text display in an
/// order other than it is stored ("Trojan Source"), so a family could look
/// like another in a roster or an email.
fn reorders_text(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(Name::parse("  Smith  ").unwrap().as_str(), "Smith");
        assert!(Name::parse("   ").is_err());
        assert!(Name::parse(&"x".repeat(200)).is_ok());
        assert!(Name::parse(&"x".repeat(201)).is_err());
        assert!(
            Name::parse(&"é".repeat(200)).is_ok(),
            "counts characters, not bytes"
        );
        assert!(Name::parse("a\u{0}b").is_err());
        assert!(
            Name::parse("Smith\u{202E}nosaJ").is_err(),
            "right-to-left override"
        );
        assert!(Name::parse("a\u{2066}b\u{2069}").is_err(), "isolates");
        assert!(
            Name::parse("\u{05E9}\u{05DC}\u{05D5}\u{05DD}").is_ok(),
            "Hebrew itself is fine"
        );
    }
}
