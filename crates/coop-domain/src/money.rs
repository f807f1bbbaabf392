//! Amounts of money: whole cents in a currency, never floating point.

use std::fmt;

/// Largest single amount: 100,000.00 in the currency's main unit.
pub const MAX_AMOUNT_CENTS: i64 = 10_000_000;

/// An ISO 4217 code, stored lower-case (`usd`, `eur`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let code = raw.trim().to_ascii_lowercase();
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_lowercase()) {
            Ok(Self(code))
        } else {
            Err("must be a three-letter ISO 4217 code such as usd or eur".to_owned())
        }
    }

    pub fn usd() -> Self {
        Self("usd".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A positive amount: 1 to [`MAX_AMOUNT_CENTS`] cents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    cents: i64,
    currency: Currency,
}

impl Money {
    pub fn new(cents: i64, currency: Currency) -> Result<Self, String> {
        Self::cents(cents).map(|cents| Self { cents, currency })
    }

    /// Checks an amount of cents on its own (the currency may be another field).
    pub fn cents(cents: i64) -> Result<i64, String> {
        if (1..=MAX_AMOUNT_CENTS).contains(&cents) {
            Ok(cents)
        } else {
            Err(format!(
                "must be a whole number of cents from 1 to {MAX_AMOUNT_CENTS}"
            ))
        }
    }

    pub fn amount_cents(&self) -> i64 {
        self.cents
    }

    pub fn currency(&self) -> &Currency {
        &self.currency
    }
}

impl fmt::Display for Money {
    /// `12.50 USD`: for people (emails, pages).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:02} {}",
            self.cents / 100,
            self.cents % 100,
            self.currency.as_str().to_ascii_uppercase()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_whole_positive_cents_within_bounds() {
        assert!(Money::new(1, Currency::usd()).is_ok());
        assert!(Money::new(MAX_AMOUNT_CENTS, Currency::usd()).is_ok());
        for bad in [0, -5, MAX_AMOUNT_CENTS + 1] {
            assert!(Money::new(bad, Currency::usd()).is_err(), "{bad}");
        }
        assert_eq!(
            Money::new(1250, Currency::parse("EUR").unwrap())
                .unwrap()
                .to_string(),
            "12.50 EUR"
        );
    }

    #[test]
    fn currencies_are_three_letters() {
        assert_eq!(Currency::parse(" Usd ").unwrap().as_str(), "usd");
        for bad in ["us", "usdd", "u5d", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }
}
