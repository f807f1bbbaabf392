//! Parsers for setting values, shared by every command: durations as `500ms`,
//! `30s`, `5m`, `2h`, `7d`; switches as on/off, true/false, yes/no, 1/0.

use std::time::Duration;

pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got {value:?}")),
    }
}

/// Durations as `500ms`, `30s`, `5m`, `2h`, `7d` (a bare number is seconds).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let expected =
        || format!("expected a duration such as 500ms, 30s, 5m, 2h or 7d, got {value:?}");
    let number: u64 = number.parse().map_err(|_| expected())?;
    let millis = match unit {
        "ms" => number,
        "" | "s" => number.saturating_mul(1_000),
        "m" => number.saturating_mul(60_000),
        "h" => number.saturating_mul(3_600_000),
        "d" => number.saturating_mul(86_400_000),
        _ => return Err(expected()),
    };
    Ok(Duration::from_millis(millis))
}

/// The URL without its password, for messages and logs: `postgres://coop:***@db/coop`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[test]
    fn passwords_are_hidden_in_messages() {
        assert_eq!(
            redact_url("postgres://coop:secret@db:5432/coop"),
            "postgres://coop:***@db:5432/coop"
        );
        assert_eq!(redact_url("postgres://db/coop"), "postgres://db/coop");
        assert_eq!(redact_url("smtps://u:p@mail:465"), "smtps://u:***@mail:465");
    }

    #[test]
    fn switches_read_common_spellings() {
        assert_eq!(parse_bool("On"), Ok(true));
        assert_eq!(parse_bool("0"), Ok(false));
        assert!(parse_bool("maybe").is_err());
    }
}

/// `text` with the password of every URL in it (`scheme://user:password@host`)
/// replaced by `***`: for messages that quote what someone typed, such as
/// a configuration error, which must not print a database password.
pub fn redact_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first '/', whitespace or quote.
        let end = after
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(after.len());
        let authority = &after[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod redaction_tests {
    use super::redact_credentials;

    #[test]
    fn passwords_in_urls_are_hidden_and_the_rest_kept() {
        assert_eq!(
            redact_credentials(
                "invalid value 'postgres://coop:s3cr3t@db:5432/coop' for --database-url"
            ),
            "invalid value 'postgres://coop:***@db:5432/coop' for --database-url"
        );
        assert_eq!(
            redact_credentials("redis://:pw@cache:6379 and smtp://u:p@mail"),
            "redis://:***@cache:6379 and smtp://u:***@mail"
        );
        assert_eq!(
            redact_credentials("http://host:8080/x"),
            "http://host:8080/x"
        );
        assert_eq!(redact_credentials("no url here"), "no url here");
    }
}
