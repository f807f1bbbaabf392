//! Collecting what is wrong with several fields, so one answer names them all.

use std::collections::BTreeMap;

/// Field name → what is wrong with it, as a person would fix it.
pub type FieldErrors = BTreeMap<String, String>;

/// Some fields of an input were missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub FieldErrors);

impl Invalid {
    pub fn field(name: &str, problem: impl Into<String>) -> Self {
        let mut fields = FieldErrors::new();
        fields.insert(name.to_owned(), problem.into());
        Self(fields)
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (field, problem) in &self.0 {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{field} {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// Parses fields one by one, remembering every problem. Each parse gives an
/// `Option`; [`FieldCheck::finish`] turns them into one `Result`, so a caller
/// never has to handle "validated but missing" (see [`FieldCheck::done`]).
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
                self.missing(field);
                None
            }
            Some(raw) => self.check(field, parse(raw)),
        }
    }

    /// Parses an optional field: absent is `Some(default)`.
    pub fn optional<T>(
        &mut self,
        field: &str,
        value: Option<&str>,
        default: impl FnOnce() -> T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match value {
            None => Some(default()),
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

    pub fn problem(&mut self, field: &str, problem: impl Into<String>) {
        self.errors.insert(field.to_owned(), problem.into());
    }

    /// `Ok(())` when every field was fine, else every problem.
    pub fn finish(self) -> Result<(), Invalid> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Invalid(self.errors))
        }
    }

    /// Finishes the check and builds the parsed value from the fields'
    /// results. `build` runs only when no problem was recorded, and then
    /// every field it needs parsed (a field that gave `None` recorded a
    /// problem); should one still be missing, that field is named.
    pub fn done<T>(self, build: impl FnOnce() -> Result<T, &'static str>) -> Result<T, Invalid> {
        self.finish()?;
        build().map_err(|field| Invalid::field(field, "is required"))
    }
}

/// `value.ok_or(field)`: for [`FieldCheck::done`]'s builder.
pub trait Parsed<T> {
    fn field(self, name: &'static str) -> Result<T, &'static str>;
}

impl<T> Parsed<T> for Option<T> {
    fn field(self, name: &'static str) -> Result<T, &'static str> {
        self.ok_or(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut check = FieldCheck::default();
        let a: Option<u32> = check.required("a", None, |_| Ok(1));
        let b = check.required("b", Some("x"), |_| Err::<u32, _>("is not a number".into()));
        let c = check.required("c", Some("7"), |s| {
            s.parse::<u32>().map_err(|e| e.to_string())
        });
        assert_eq!((a, b, c), (None, None, Some(7)));
        let err = check.finish().unwrap_err();
        assert_eq!(err.0.len(), 2);
        assert_eq!(err.0["a"], "is required");
        assert_eq!(err.to_string(), "a is required; b is not a number");
    }

    #[test]
    fn done_builds_only_from_complete_input() {
        let mut check = FieldCheck::default();
        let a = check.required("a", Some("1"), |s| Ok(s.to_owned()));
        let built = check.done(|| Ok(a.field("a")?.len()));
        assert_eq!(built, Ok(1));
    }
}
