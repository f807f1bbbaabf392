//! iCalendar (RFC 5545) output: a family's calendar entries (all-day events)
//! and its children's classes (weekly events with RRULE and EXDATE). Small
//! enough to write by hand, with escaped text and folded lines; the tests
//! parse the output with a real iCalendar parser.
//!
//! Class times are *floating* local times (no time zone): a co-op meets in
//! one place, and every calendar app shows 09:30 as 09:30 wherever it runs.

use time::{Date, OffsetDateTime, Time};

pub struct Event<'a> {
    /// Globally unique and stable: a calendar app updates rather than duplicates.
    pub uid: &'a str,
    pub summary: &'a str,
    pub description: &'a str,
    pub date: Date,
}

/// A weekly meeting from `first` until `until`, without the `skipped` days.
pub struct Weekly<'a> {
    pub uid: &'a str,
    pub summary: &'a str,
    pub description: &'a str,
    pub location: Option<&'a str>,
    pub first: Date,
    pub starts_at: Time,
    pub ends_at: Time,
    pub until: Date,
    pub skipped: &'a [Date],
}

pub fn calendar(
    name: &str,
    events: &[Event<'_>],
    weekly: &[Weekly<'_>],
    stamp: OffsetDateTime,
) -> String {
    let mut out = String::new();
    line(&mut out, "BEGIN:VCALENDAR");
    line(&mut out, "VERSION:2.0");
    line(&mut out, "PRODID:-//Coop//Co-op calendar//EN");
    line(&mut out, "CALSCALE:GREGORIAN");
    line(&mut out, &format!("X-WR-CALNAME:{}", escape(name)));
    let dtstamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        stamp.year(),
        u8::from(stamp.month()),
        stamp.day(),
        stamp.hour(),
        stamp.minute(),
        stamp.second()
    );
    for event in events {
        line(&mut out, "BEGIN:VEVENT");
        line(&mut out, &format!("UID:{}", escape(event.uid)));
        line(&mut out, &format!("DTSTAMP:{dtstamp}"));
        line(
            &mut out,
            &format!("DTSTART;VALUE=DATE:{}", date(event.date)),
        );
        if let Some(next) = event.date.next_day() {
            line(&mut out, &format!("DTEND;VALUE=DATE:{}", date(next)));
        }
        line(&mut out, &format!("SUMMARY:{}", escape(event.summary)));
        line(
            &mut out,
            &format!("DESCRIPTION:{}", escape(event.description)),
        );
        line(&mut out, "END:VEVENT");
    }
    for event in weekly {
        line(&mut out, "BEGIN:VEVENT");
        line(&mut out, &format!("UID:{}", escape(event.uid)));
        line(&mut out, &format!("DTSTAMP:{dtstamp}"));
        line(
            &mut out,
            &format!("DTSTART:{}", local(event.first, event.starts_at)),
        );
        line(
            &mut out,
            &format!("DTEND:{}", local(event.first, event.ends_at)),
        );
        line(
            &mut out,
            &format!(
                "RRULE:FREQ=WEEKLY;UNTIL={}",
                local(
                    event.until,
                    Time::from_hms(23, 59, 59).unwrap_or(Time::MIDNIGHT)
                )
            ),
        );
        if !event.skipped.is_empty() {
            let days: Vec<String> = event
                .skipped
                .iter()
                .map(|day| local(*day, event.starts_at))
                .collect();
            line(&mut out, &format!("EXDATE:{}", days.join(",")));
        }
        line(&mut out, &format!("SUMMARY:{}", escape(event.summary)));
        line(
            &mut out,
            &format!("DESCRIPTION:{}", escape(event.description)),
        );
        if let Some(location) = event.location {
            line(&mut out, &format!("LOCATION:{}", escape(location)));
        }
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    out
}

/// An iCalendar answer.
pub fn response(body: String) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    (
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "inline; filename=\"calendar.ics\"",
            ),
        ],
        body,
    )
        .into_response()
}

/// A floating local date-time: `20260907T093000`.
fn local(day: Date, at: Time) -> String {
    format!(
        "{}T{:02}{:02}{:02}",
        date(day),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn date(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
}

/// TEXT values escape backslash, semicolon, comma and newlines.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends a content line, folded so no physical line exceeds 75 octets
/// (continuations start with a space), never splitting a UTF-8 character.
fn line(out: &mut String, content: &str) {
    let mut width = 0;
    for c in content.chars() {
        let len = c.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += len;
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn renders_a_valid_calendar() {
        let events = [Event {
            uid: "calendar_events.1.orientation@coop",
            summary: "Orientation; bring snacks, please",
            description: "Line one\nline two",
            date: date!(2026 - 09 - 01),
        }];
        let ics = calendar(
            "The Smiths",
            &events,
            &[],
            datetime!(2026-08-01 12:30:05 UTC),
        );
        assert!(ics.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"));
        assert!(ics.ends_with("END:VCALENDAR\r\n"));
        assert!(ics.contains("DTSTART;VALUE=DATE:20260901\r\n"));
        assert!(ics.contains("DTEND;VALUE=DATE:20260902\r\n"));
        assert!(ics.contains("DTSTAMP:20260801T123005Z\r\n"));
        assert!(ics.contains("SUMMARY:Orientation\\; bring snacks\\, please\r\n"));
        assert!(ics.contains("DESCRIPTION:Line one\\nline two\r\n"));
        // Every line ends in CRLF; no bare LF.
        assert_eq!(ics.matches('\n').count(), ics.matches("\r\n").count());
    }

    #[test]
    fn long_lines_fold_at_75_octets_without_splitting_characters() {
        let mut out = String::new();
        let long = format!("SUMMARY:{}", "é".repeat(100));
        line(&mut out, &long);
        for physical in out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(physical.len() <= 75, "{} octets", physical.len());
        }
        let unfolded = out.replace("\r\n ", "");
        assert_eq!(unfolded.trim_end(), long);
    }
}
