//! The application's one clock. Every time Coop stores or shows comes from
//! [`now`]; the API shows times as RFC 3339 in UTC ([`rfc3339`]). Some columns
//! keep Unix milliseconds (the job queue compares them constantly and needs no
//! calendar arithmetic): [`unix_ms`] and [`from_unix_ms`] convert at that edge.

use time::OffsetDateTime;

/// Now, in UTC, to the microsecond: what PostgreSQL stores, so a value read
/// back equals the value written on both backends.
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

/// Now as Unix milliseconds.
pub fn now_ms() -> i64 {
    unix_ms(now())
}

/// Now as Unix seconds.
pub fn now_s() -> i64 {
    now().unix_timestamp()
}

pub fn unix_ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// A Unix-milliseconds column as a time (the epoch for a value out of range,
/// which no column of ours holds).
pub fn from_unix_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `serde(with = "coop_domain::clock::rfc3339")` for API fields.
pub use time::serde::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip() {
        let at = from_unix_ms(1_764_000_000_123);
        assert_eq!(unix_ms(at), 1_764_000_000_123);
        assert_eq!(now().nanosecond() % 1_000, 0);
    }
}
