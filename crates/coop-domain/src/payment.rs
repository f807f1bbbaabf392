//! A charge as a coordinator asks for it.

use crate::fields::{FieldCheck, Invalid, Parsed};
use crate::money::{Currency, Money};

pub const MAX_DESCRIPTION_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    pub amount: Money,
    pub description: String,
}

impl NewPayment {
    /// `amount_cents`: `None` when absent, `Some(None)` when present but not a
    /// whole number (the face decides what its input format calls a number).
    /// `currency` defaults to `usd`.
    pub fn parse(
        amount_cents: Option<Option<i64>>,
        description: Option<&str>,
        currency: Option<&str>,
    ) -> Result<Self, Invalid> {
        let mut check = FieldCheck::default();
        let cents = match amount_cents {
            None => {
                check.missing("amount_cents");
                None
            }
            Some(cents) => check.check(
                "amount_cents",
                cents
                    .ok_or_else(|| Money::cents(0).unwrap_err())
                    .and_then(Money::cents),
            ),
        };
        let description = check.required("description", description, parse_description);
        let currency = check.optional("currency", currency, Currency::usd, Currency::parse);
        check.done(|| {
            let cents = cents.field("amount_cents")?;
            let currency = currency.field("currency")?;
            Ok(Self {
                amount: Money::new(cents, currency).map_err(|_| "amount_cents")?,
                description: description.field("description")?,
            })
        })
    }
}

fn parse_description(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    match trimmed.chars().count() {
        0 => Err("must not be empty".to_owned()),
        n if n > MAX_DESCRIPTION_CHARS => Err(format!(
            "must be at most {MAX_DESCRIPTION_CHARS} characters"
        )),
        _ if trimmed.chars().any(char::is_control) => {
            Err("must not contain control characters".to_owned())
        }
        _ => Ok(trimmed.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_must_be_whole_cents_and_descriptions_present() {
        let ok = NewPayment::parse(Some(Some(12_500)), Some(" Autumn fee "), None).unwrap();
        assert_eq!(ok.amount.amount_cents(), 12_500);
        assert_eq!(ok.amount.currency().as_str(), "usd");
        assert_eq!(ok.description, "Autumn fee");
        let err = NewPayment::parse(Some(None), Some(""), Some("dollars")).unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(err.0["amount_cents"].contains("whole number"));
        let err = NewPayment::parse(None, Some("x"), None).unwrap_err();
        assert_eq!(err.0["amount_cents"], "is required");
    }
}
