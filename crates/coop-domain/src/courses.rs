//! The co-op's teaching, parsed: semesters with their registration window and
//! holidays, classes with weekly meetings, age or grade ranges, capacity and a
//! fee, children, and the rules of enrolling one in a class (eligibility and
//! schedule conflicts). Pure: no storage, no clock of its own.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, Time};

use crate::Name;
use crate::fields::{FieldCheck, Invalid, Parsed};
use crate::money::Currency;

/// Longest class description.
pub const MAX_DESCRIPTION_CHARS: usize = 4000;
/// Most seats a class may have.
pub const MAX_CAPACITY: i32 = 10_000;
/// Most meetings a week.
pub const MAX_MEETINGS: usize = 14;
/// Largest fee: 100,000.00.
pub const MAX_FEE_CENTS: i64 = 10_000_000;
/// Most holidays a semester declares.
pub const MAX_HOLIDAYS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Weekday {
    pub const ALL: [Self; 7] = [
        Self::Monday,
        Self::Tuesday,
        Self::Wednesday,
        Self::Thursday,
        Self::Friday,
        Self::Saturday,
        Self::Sunday,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Monday => "monday",
            Self::Tuesday => "tuesday",
            Self::Wednesday => "wednesday",
            Self::Thursday => "thursday",
            Self::Friday => "friday",
            Self::Saturday => "saturday",
            Self::Sunday => "sunday",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        let lower = raw.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == lower || d.as_str()[..3] == lower)
            .ok_or_else(|| format!("{raw:?} is not a weekday (monday … sunday)"))
    }

    pub fn to_time(self) -> time::Weekday {
        match self {
            Self::Monday => time::Weekday::Monday,
            Self::Tuesday => time::Weekday::Tuesday,
            Self::Wednesday => time::Weekday::Wednesday,
            Self::Thursday => time::Weekday::Thursday,
            Self::Friday => time::Weekday::Friday,
            Self::Saturday => time::Weekday::Saturday,
            Self::Sunday => time::Weekday::Sunday,
        }
    }
}

/// One weekly meeting of a class: a weekday, a start time and a length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    pub weekday: Weekday,
    /// `HH:MM`, in the co-op's local time.
    #[serde(with = "hh_mm")]
    pub starts_at: Time,
    pub minutes: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

impl Meeting {
    /// Raw fields as a face received them.
    pub fn parse(
        weekday: Option<&str>,
        starts_at: Option<&str>,
        minutes: Option<Number>,
        room: Option<&str>,
        prefix: &str,
        check: &mut FieldCheck,
    ) -> Option<Self> {
        let weekday = check.required(&format!("{prefix}.weekday"), weekday, Weekday::parse);
        let starts_at = check.required(&format!("{prefix}.starts_at"), starts_at, parse_hh_mm);
        let minutes = match minutes.unwrap_or(Number::Absent) {
            Number::Absent => {
                check.missing(&format!("{prefix}.minutes"));
                None
            }
            Number::Whole(m) if (5..=720).contains(&m) => Some(m as u16),
            _ => {
                check.problem(
                    &format!("{prefix}.minutes"),
                    "must be a whole number of minutes from 5 to 720",
                );
                None
            }
        };
        let room = match room.map(str::trim) {
            None | Some("") => None,
            Some(r) if r.chars().count() > 100 => {
                check.problem(&format!("{prefix}.room"), "must be at most 100 characters");
                None
            }
            Some(r) if r.chars().any(char::is_control) => {
                check.problem(
                    &format!("{prefix}.room"),
                    "must not contain control characters",
                );
                None
            }
            Some(r) => Some(r.to_owned()),
        };
        Some(Self {
            weekday: weekday?,
            starts_at: starts_at?,
            minutes: minutes?,
            room,
        })
    }

    fn start_minute(&self) -> u32 {
        u32::from(self.starts_at.hour()) * 60 + u32::from(self.starts_at.minute())
    }

    fn end_minute(&self) -> u32 {
        self.start_minute() + u32::from(self.minutes)
    }

    /// Whether the two meet at the same time on the same weekday.
    pub fn overlaps(&self, other: &Meeting) -> bool {
        self.weekday == other.weekday
            && self.start_minute() < other.end_minute()
            && other.start_minute() < self.end_minute()
    }

    pub fn ends_at(&self) -> Time {
        let end = self.end_minute().min(24 * 60 - 1);
        Time::from_hms((end / 60) as u8, (end % 60) as u8, 0).unwrap_or(Time::MIDNIGHT)
    }
}

/// `HH:MM` (24-hour).
pub fn parse_hh_mm(raw: &str) -> Result<Time, String> {
    let format = time::macros::format_description!("[hour]:[minute]");
    Time::parse(raw.trim(), &format)
        .map_err(|_| format!("{raw:?} is not a time of day in the form HH:MM (24-hour)"))
}

pub mod hh_mm {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Time;

    pub fn serialize<S: Serializer>(time: &Time, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:02}:{:02}", time.hour(), time.minute()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        let raw = String::deserialize(d)?;
        super::parse_hh_mm(&raw).map_err(serde::de::Error::custom)
    }
}

/// A weekly meeting laid over a semester's dates: its first day, its last
/// possible day, and the days it skips (holidays on its weekday).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recurrence {
    pub first: Date,
    pub until: Date,
    pub skipped: Vec<Date>,
}

/// `None` when the meeting's weekday never falls inside the semester.
pub fn recurrence(
    meeting: &Meeting,
    starts_on: Date,
    ends_on: Date,
    holidays: &[Date],
) -> Option<Recurrence> {
    let weekday = meeting.weekday.to_time();
    let mut first = starts_on;
    while first.weekday() != weekday {
        first = first.next_day()?;
    }
    if first > ends_on {
        return None;
    }
    let skipped = holidays
        .iter()
        .copied()
        .filter(|d| d.weekday() == weekday && *d >= first && *d <= ends_on)
        .collect();
    Some(Recurrence {
        first,
        until: ends_on,
        skipped,
    })
}

impl Recurrence {
    /// The days it meets from `from` to `until` (inclusive).
    pub fn days_between(&self, from: Date, until: Date) -> Vec<Date> {
        let mut out = Vec::new();
        let mut day = self.first;
        while day <= self.until && day <= until {
            if day >= from && !self.skipped.contains(&day) {
                out.push(day);
            }
            match day.checked_add(time::Duration::weeks(1)) {
                Some(next) => day = next,
                None => break,
            }
        }
        out
    }
}

/// Whether two weekly schedules ever meet at the same time.
pub fn schedules_overlap(a: &[Meeting], b: &[Meeting]) -> bool {
    a.iter().any(|x| b.iter().any(|y| x.overlaps(y)))
}

/// A semester as a coordinator enters it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSemester {
    pub name: Name,
    pub starts_on: Date,
    pub ends_on: Date,
    pub registration_opens_at: OffsetDateTime,
    pub registration_closes_at: OffsetDateTime,
    pub holidays: Vec<Date>,
}

#[derive(Default)]
pub struct SemesterInput<'a> {
    pub name: Option<&'a str>,
    pub starts_on: Option<&'a str>,
    pub ends_on: Option<&'a str>,
    pub registration_opens_at: Option<&'a str>,
    pub registration_closes_at: Option<&'a str>,
    pub holidays: Vec<&'a str>,
}

impl NewSemester {
    pub fn parse(input: SemesterInput<'_>) -> Result<Self, Invalid> {
        let mut check = FieldCheck::default();
        let name = check.required("name", input.name, Name::parse);
        let starts_on = check.required("starts_on", input.starts_on, crate::parse_date);
        let ends_on = check.required("ends_on", input.ends_on, crate::parse_date);
        let opens = check.required(
            "registration_opens_at",
            input.registration_opens_at,
            parse_instant,
        );
        let closes = check.required(
            "registration_closes_at",
            input.registration_closes_at,
            parse_instant,
        );
        if let (Some(start), Some(end)) = (starts_on, ends_on)
            && end < start
        {
            check.problem("ends_on", "must not be before starts_on");
        }
        if let (Some(opens), Some(closes)) = (opens, closes)
            && closes <= opens
        {
            check.problem(
                "registration_closes_at",
                "must be after registration_opens_at",
            );
        }
        let mut holidays = Vec::new();
        if input.holidays.len() > MAX_HOLIDAYS {
            check.problem("holidays", format!("at most {MAX_HOLIDAYS} dates"));
        }
        for (i, raw) in input.holidays.iter().enumerate() {
            match crate::parse_date(raw) {
                Ok(day) => match (starts_on, ends_on) {
                    (Some(start), Some(end)) if day < start || day > end => {
                        check.problem(&format!("holidays[{i}]"), "must be within the semester")
                    }
                    _ => holidays.push(day),
                },
                Err(problem) => check.problem(&format!("holidays[{i}]"), problem),
            }
        }
        holidays.sort();
        holidays.dedup();
        check.done(|| {
            Ok(Self {
                name: name.field("name")?,
                starts_on: starts_on.field("starts_on")?,
                ends_on: ends_on.field("ends_on")?,
                registration_opens_at: opens.field("registration_opens_at")?,
                registration_closes_at: closes.field("registration_closes_at")?,
                holidays,
            })
        })
    }
}

/// RFC 3339 with an offset (`2026-08-01T09:00:00-05:00` or `…Z`), kept in UTC
/// and to the microsecond, like the clock (`clock::now`): PostgreSQL keeps no
/// finer, so both tiers store, and show, the same value (and `coop transfer`
/// finds them equal).
pub fn parse_instant(raw: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(raw.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| {
            let t = t.to_offset(time::UtcOffset::UTC);
            t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
                .unwrap_or(t)
        })
        .map_err(|_| format!("{raw:?} is not a time in RFC 3339 form, e.g. 2026-08-01T09:00:00Z"))
}

/// A fee: whole cents from 0 (free) in a currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fee {
    pub cents: i64,
    pub currency: Currency,
}

/// Who a class is for: ages (at the semester's start) and/or school grades.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Eligibility {
    pub min_age: Option<i32>,
    pub max_age: Option<i32>,
    pub min_grade: Option<i32>,
    pub max_grade: Option<i32>,
}

/// A class as a coordinator enters it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClass {
    pub title: Name,
    pub description: String,
    pub capacity: i32,
    pub fee: Fee,
    pub eligibility: Eligibility,
    pub teacher_user_id: Option<uuid::Uuid>,
    pub meetings: Vec<Meeting>,
}

/// One meeting's raw fields.
#[derive(Default)]
pub struct MeetingInput<'a> {
    pub weekday: Option<&'a str>,
    pub starts_at: Option<&'a str>,
    pub minutes: Option<Number>,
    pub room: Option<&'a str>,
}

/// A number field: absent, a whole number, or something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Number {
    Absent,
    Whole(i64),
    NotWhole,
}

#[derive(Default)]
pub struct ClassInput<'a> {
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub capacity: Option<Number>,
    pub fee_cents: Option<Number>,
    pub currency: Option<&'a str>,
    pub min_age: Option<Number>,
    pub max_age: Option<Number>,
    pub min_grade: Option<Number>,
    pub max_grade: Option<Number>,
    pub teacher_user_id: Option<&'a str>,
    /// `None` when the field is absent.
    pub meetings: Option<Vec<MeetingInput<'a>>>,
}

fn whole(
    check: &mut FieldCheck,
    field: &str,
    value: Option<Number>,
    range: std::ops::RangeInclusive<i64>,
) -> Option<Option<i64>> {
    let problem = || {
        format!(
            "must be a whole number from {} to {}",
            range.start(),
            range.end()
        )
    };
    match value.unwrap_or(Number::Absent) {
        Number::Absent => Some(None),
        Number::Whole(n) if range.contains(&n) => Some(Some(n)),
        _ => {
            check.problem(field, problem());
            None
        }
    }
}

impl NewClass {
    pub fn parse(input: ClassInput<'_>) -> Result<Self, Invalid> {
        let mut check = FieldCheck::default();
        let title = check.required("title", input.title, Name::parse);
        let description = match input.description.map(str::trim) {
            None => Some(String::new()),
            Some(d) if d.chars().count() > MAX_DESCRIPTION_CHARS => {
                check.problem(
                    "description",
                    format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
                );
                None
            }
            Some(d) if d.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
                check.problem("description", "must not contain control characters");
                None
            }
            Some(d) => Some(d.to_owned()),
        };
        let capacity = match whole(
            &mut check,
            "capacity",
            input.capacity,
            1..=i64::from(MAX_CAPACITY),
        ) {
            Some(None) => {
                check.missing("capacity");
                None
            }
            Some(Some(n)) => Some(n as i32),
            None => None,
        };
        let fee_cents = match whole(&mut check, "fee_cents", input.fee_cents, 0..=MAX_FEE_CENTS) {
            Some(None) => Some(0),
            other => other.flatten(),
        };
        let currency = check.optional("currency", input.currency, Currency::usd, Currency::parse);
        let min_age =
            whole(&mut check, "min_age", input.min_age, 0..=120).map(|n| n.map(|n| n as i32));
        let max_age =
            whole(&mut check, "max_age", input.max_age, 0..=120).map(|n| n.map(|n| n as i32));
        let min_grade =
            whole(&mut check, "min_grade", input.min_grade, -1..=12).map(|n| n.map(|n| n as i32));
        let max_grade =
            whole(&mut check, "max_grade", input.max_grade, -1..=12).map(|n| n.map(|n| n as i32));
        if let (Some(Some(lo)), Some(Some(hi))) = (min_age, max_age)
            && hi < lo
        {
            check.problem("max_age", "must not be below min_age");
        }
        if let (Some(Some(lo)), Some(Some(hi))) = (min_grade, max_grade)
            && hi < lo
        {
            check.problem("max_grade", "must not be below min_grade");
        }
        let teacher = match input.teacher_user_id.map(str::trim) {
            None | Some("") => Some(None),
            Some(raw) => check
                .check(
                    "teacher_user_id",
                    uuid::Uuid::parse_str(raw).map_err(|_| "is not a user id".to_owned()),
                )
                .map(Some),
        };
        let mut meetings = Vec::new();
        match input.meetings {
            None => check.missing("meetings"),
            Some(list) if list.len() > MAX_MEETINGS => check.problem(
                "meetings",
                format!("at most {MAX_MEETINGS} meetings a week"),
            ),
            Some(list) => {
                for (i, m) in list.into_iter().enumerate() {
                    if let Some(meeting) = Meeting::parse(
                        m.weekday,
                        m.starts_at,
                        m.minutes,
                        m.room,
                        &format!("meetings[{i}]"),
                        &mut check,
                    ) {
                        meetings.push(meeting);
                    }
                }
                for (i, a) in meetings.iter().enumerate() {
                    if meetings[i + 1..].iter().any(|b| a.overlaps(b)) {
                        check.problem(
                            &format!("meetings[{i}]"),
                            "overlaps another meeting of this class",
                        );
                    }
                }
            }
        }
        check.done(|| {
            let currency = currency.field("currency")?;
            Ok(Self {
                title: title.field("title")?,
                description: description.field("description")?,
                capacity: capacity.field("capacity")?,
                fee: Fee {
                    cents: fee_cents.field("fee_cents")?,
                    currency,
                },
                eligibility: Eligibility {
                    min_age: min_age.field("min_age")?,
                    max_age: max_age.field("max_age")?,
                    min_grade: min_grade.field("min_grade")?,
                    max_grade: max_grade.field("max_grade")?,
                },
                teacher_user_id: teacher.field("teacher_user_id")?,
                meetings,
            })
        })
    }
}

/// A child as a family or coordinator enters it: a first name and a birth
/// date or a grade (or both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChild {
    pub first_name: Name,
    pub birth_date: Option<Date>,
    pub grade: Option<i32>,
}

impl NewChild {
    pub fn parse(
        first_name: Option<&str>,
        birth_date: Option<&str>,
        grade: Option<Number>,
        today: Date,
    ) -> Result<Self, Invalid> {
        let mut check = FieldCheck::default();
        let first_name = check.required("first_name", first_name, Name::parse);
        let birth_date = match birth_date {
            None => Some(None),
            Some(raw) => check
                .check(
                    "birth_date",
                    crate::parse_date(raw).and_then(|d| {
                        if d > today {
                            Err("must not be in the future".to_owned())
                        } else if today.year() - d.year() > 30 {
                            Err("must be within the last 30 years".to_owned())
                        } else {
                            Ok(d)
                        }
                    }),
                )
                .map(Some),
        };
        let grade = whole(&mut check, "grade", grade, -1..=12).map(|g| g.map(|g| g as i32));
        if matches!((birth_date, grade), (Some(None), Some(None))) {
            check.problem("birth_date", "give a birth date or a grade");
        }
        check.done(|| {
            Ok(Self {
                first_name: first_name.field("first_name")?,
                birth_date: birth_date.field("birth_date")?,
                grade: grade.field("grade")?,
            })
        })
    }
}

/// Age in whole years on `on`.
pub fn age_on(birth: Date, on: Date) -> i32 {
    let mut age = on.year() - birth.year();
    if (on.month() as u8, on.day()) < (birth.month() as u8, birth.day()) {
        age -= 1;
    }
    age
}

/// Why a child may not take a class, in words for its family; `None` when it may.
pub fn ineligible(
    rule: &Eligibility,
    child_name: &str,
    birth_date: Option<Date>,
    grade: Option<i32>,
    semester_starts_on: Date,
) -> Option<String> {
    if rule.min_age.is_some() || rule.max_age.is_some() {
        let range = range_text(rule.min_age, rule.max_age, "ages");
        let Some(birth) = birth_date else {
            return Some(format!(
                "this class is for {range}: add {child_name}'s birth date to enroll"
            ));
        };
        let age = age_on(birth, semester_starts_on);
        if rule.min_age.is_some_and(|min| age < min) || rule.max_age.is_some_and(|max| age > max) {
            return Some(format!(
                "this class is for {range}; {child_name} will be {age} when the semester starts"
            ));
        }
    }
    if rule.min_grade.is_some() || rule.max_grade.is_some() {
        let range = range_text(rule.min_grade, rule.max_grade, "grades");
        let Some(grade) = grade else {
            return Some(format!(
                "this class is for {range}: add {child_name}'s grade to enroll"
            ));
        };
        if rule.min_grade.is_some_and(|min| grade < min)
            || rule.max_grade.is_some_and(|max| grade > max)
        {
            return Some(format!(
                "this class is for {range}; {child_name} is in grade {grade}"
            ));
        }
    }
    None
}

fn range_text(min: Option<i32>, max: Option<i32>, what: &str) -> String {
    match (min, max) {
        (Some(lo), Some(hi)) => format!("{what} {lo}–{hi}"),
        (Some(lo), None) => format!("{what} {lo} and up"),
        (None, Some(hi)) => format!("{what} up to {hi}"),
        (None, None) => format!("all {what}"),
    }
}

/// Where a child stands in a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentState {
    Enrolled,
    Waitlisted,
    Dropped,
}

impl EnrollmentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enrolled => "enrolled",
            Self::Waitlisted => "waitlisted",
            Self::Dropped => "dropped",
        }
    }
}

impl TryFrom<String> for EnrollmentState {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        match raw.as_str() {
            "enrolled" => Ok(Self::Enrolled),
            "waitlisted" => Ok(Self::Waitlisted),
            "dropped" => Ok(Self::Dropped),
            _ => Err(format!("unknown enrollment state {raw:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, time};

    fn meeting(weekday: Weekday, h: u8, m: u8, minutes: u16) -> Meeting {
        Meeting {
            weekday,
            starts_at: Time::from_hms(h, m, 0).unwrap(),
            minutes,
            room: None,
        }
    }

    #[test]
    fn meetings_overlap_only_on_the_same_day_and_time() {
        let a = meeting(Weekday::Monday, 9, 0, 60);
        assert!(a.overlaps(&meeting(Weekday::Monday, 9, 30, 30)));
        assert!(
            !a.overlaps(&meeting(Weekday::Monday, 10, 0, 30)),
            "back to back is fine"
        );
        assert!(!a.overlaps(&meeting(Weekday::Tuesday, 9, 0, 60)));
        assert!(meeting(Weekday::Monday, 8, 0, 240).overlaps(&a));
        assert_eq!(a.ends_at(), time!(10:00));
    }

    #[test]
    fn recurrences_start_on_the_first_weekday_and_skip_holidays() {
        let monday = meeting(Weekday::Monday, 9, 0, 60);
        // 2026-09-02 is a Wednesday: the first Monday is the 7th.
        let holidays = [
            date!(2026 - 09 - 14),
            date!(2026 - 09 - 16),
            date!(2027 - 01 - 04),
        ];
        let r = recurrence(
            &monday,
            date!(2026 - 09 - 02),
            date!(2026 - 12 - 18),
            &holidays,
        )
        .unwrap();
        assert_eq!(r.first, date!(2026 - 09 - 07));
        assert_eq!(
            r.skipped,
            vec![date!(2026 - 09 - 14)],
            "only Mondays inside the semester"
        );
        assert_eq!(
            recurrence(&monday, date!(2026 - 09 - 02), date!(2026 - 09 - 04), &[]),
            None
        );
    }

    #[test]
    fn ages_count_birthdays() {
        assert_eq!(age_on(date!(2018 - 09 - 02), date!(2026 - 09 - 01)), 7);
        assert_eq!(age_on(date!(2018 - 09 - 01), date!(2026 - 09 - 01)), 8);
    }

    #[test]
    fn eligibility_names_the_reason() {
        let rule = Eligibility {
            min_age: Some(6),
            max_age: Some(9),
            ..Default::default()
        };
        let start = date!(2026 - 09 - 01);
        assert_eq!(
            ineligible(&rule, "Emma", Some(date!(2019 - 01 - 01)), None, start),
            None
        );
        let too_young =
            ineligible(&rule, "Emma", Some(date!(2022 - 01 - 01)), None, start).unwrap();
        assert!(
            too_young.contains("ages 6–9") && too_young.contains("Emma will be 4"),
            "{too_young}"
        );
        let unknown = ineligible(&rule, "Emma", None, Some(2), start).unwrap();
        assert!(unknown.contains("birth date"), "{unknown}");
        let grades = Eligibility {
            min_grade: Some(3),
            ..Default::default()
        };
        assert!(
            ineligible(&grades, "Leo", None, Some(2), start)
                .unwrap()
                .contains("grade 2")
        );
        assert_eq!(ineligible(&grades, "Leo", None, Some(3), start), None);
    }

    #[test]
    fn classes_are_checked_field_by_field() {
        let input = ClassInput {
            title: Some("Art"),
            capacity: Some(Number::Whole(0)),
            fee_cents: Some(Number::NotWhole),
            min_age: Some(Number::Whole(9)),
            max_age: Some(Number::Whole(6)),
            meetings: Some(vec![MeetingInput {
                weekday: Some("funday"),
                starts_at: Some("25:00"),
                minutes: Some(Number::Whole(60)),
                room: None,
            }]),
            ..Default::default()
        };
        let err = NewClass::parse(input).unwrap_err();
        for field in [
            "capacity",
            "fee_cents",
            "max_age",
            "meetings[0].weekday",
            "meetings[0].starts_at",
        ] {
            assert!(err.0.contains_key(field), "{field} in {err}");
        }
        let ok = NewClass::parse(ClassInput {
            title: Some("Art"),
            capacity: Some(Number::Whole(12)),
            meetings: Some(vec![MeetingInput {
                weekday: Some("Mon"),
                starts_at: Some("09:30"),
                minutes: Some(Number::Whole(45)),
                room: Some("Hall"),
            }]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ok.fee.cents, 0);
        assert_eq!(ok.meetings[0].weekday, Weekday::Monday);
        let json = serde_json::to_string(&ok.meetings).unwrap();
        assert_eq!(
            json,
            r#"[{"weekday":"monday","starts_at":"09:30","minutes":45,"room":"Hall"}]"#
        );
    }

    #[test]
    fn instants_are_kept_to_the_microsecond_in_utc() {
        let t = parse_instant("2026-08-01T09:00:00.1234567-05:00").unwrap();
        assert_eq!(t, time::macros::datetime!(2026-08-01 14:00:00.123456 UTC));
    }

    #[test]
    fn semesters_need_a_sane_window() {
        let err = NewSemester::parse(SemesterInput {
            name: Some("Fall"),
            starts_on: Some("2026-09-01"),
            ends_on: Some("2026-08-01"),
            registration_opens_at: Some("2026-08-01T09:00:00Z"),
            registration_closes_at: Some("2026-07-01T09:00:00Z"),
            holidays: vec!["2027-01-01"],
        })
        .unwrap_err();
        assert!(
            err.0.contains_key("ends_on") && err.0.contains_key("registration_closes_at"),
            "{err}"
        );
    }
}
