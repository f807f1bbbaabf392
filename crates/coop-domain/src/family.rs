//! A family as a coordinator enters it.

use time::Date;

use crate::fields::{FieldCheck, Invalid, Parsed};
use crate::{Email, Name};

/// The fields of a family, parsed: what enrolling or editing one needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFamily {
    pub family_name: Name,
    pub email: Email,
    pub enrollment_date: Date,
}

impl NewFamily {
    /// `enrollment_date` is `YYYY-MM-DD`; `today` when absent.
    pub fn parse(
        family_name: Option<&str>,
        email: Option<&str>,
        enrollment_date: Option<&str>,
        today: Date,
    ) -> Result<Self, Invalid> {
        let mut check = FieldCheck::default();
        let family_name = check.required("family_name", family_name, Name::parse);
        let email = check.required("email", email, Email::parse);
        let enrollment_date =
            check.optional("enrollment_date", enrollment_date, || today, parse_date);
        check.done(|| {
            Ok(Self {
                family_name: family_name.field("family_name")?,
                email: email.field("email")?,
                enrollment_date: enrollment_date.field("enrollment_date")?,
            })
        })
    }
}

/// `YYYY-MM-DD`.
pub fn parse_date(raw: &str) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(raw.trim(), &format)
        .map_err(|_| format!("{raw:?} is not a date in the form YYYY-MM-DD"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_named_and_the_date_defaults_to_today() {
        let today = time::macros::date!(2026 - 09 - 01);
        let err = NewFamily::parse(Some(" "), Some("nope"), Some("01/09/2026"), today).unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        let family = NewFamily::parse(Some("Smith"), Some("S@Example.org"), None, today).unwrap();
        assert_eq!(family.enrollment_date, today);
        assert_eq!(family.email.as_str(), "s@example.org");
    }
}
