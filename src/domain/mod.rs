//! Validated values. Parse at the edge, then trust the type: a `Name` is always
//! trimmed and 1–200 characters, an `Email` always looks like one and is
//! lower-cased, a `Password` always has at least 10 characters.

mod email;
mod name;
mod password;
mod role;

pub use email::Email;
pub use name::Name;
pub use password::{Password, PasswordHash};
pub use role::Role;

use crate::error::{ApiError, FieldErrors};

/// Collects problems with several fields so that one response names them all.
#[derive(Default)]
pub struct FieldCheck {
    errors: FieldErrors,
}

impl FieldCheck {
    /// Parses a required field; records "is required" or the parse error.
    pub fn required<T>(
        &mut self,
        field: &str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match value {
            None => {
                self.errors.insert(field.to_owned(), "is required".into());
                None
            }
            Some(raw) => self.check(field, parse(raw)),
        }
    }

    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result
            .map_err(|problem| self.errors.insert(field.to_owned(), problem))
            .ok()
    }

    pub fn missing(&mut self, field: &str) {
        self.errors.insert(field.to_owned(), "is required".into());
    }

    /// `Ok(())` when every field was fine, else a 422 naming each bad field.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}
