//! The catalog's JSON of each class, rendered once per cached copy of the
//! class rather than once per catalog read.
//!
//! On enrollment day the catalog (every class of a semester, 250 of them in
//! the benchmark) is the hottest read, and its rows already come from the
//! cache; what remained per read was converting and serialising each class
//! (its meetings parsed from JSON, its timestamps formatted). Here each
//! class's JSON object is kept beside the cache's copy it was made from, and
//! recognised by pointer: the cache hands out the same `Arc` until the class
//! changes (any write to it invalidates the entry; the next read loads a new
//! copy, a new allocation). The `Weak` kept here holds that allocation's
//! address, so it cannot be reused by another copy while the memo remembers
//! it: a pointer match always means the very copy the JSON was made from.
//! Without a cache every read gets a fresh copy, and renders.
//!
//! The rendering itself is the API's (`api::classes`), passed in by the
//! caller, so that this memo, which the application state holds, depends on
//! nothing above it.

use std::sync::{Arc, Weak};

use axum::body::Bytes;
use coop_domain::courses::Weekday;
use coop_services::classes::Class as ClassRow;
use uuid::Uuid;

/// Classes remembered at most; a memo entry is a few hundred bytes.
const CAPACITY: u64 = 50_000;

/// One class's catalog JSON and what the catalog filters on.
pub struct RenderedClass {
    source: Weak<ClassRow>,
    /// The class as the API shows it: one JSON object.
    pub json: Bytes,
    /// Bit `n` set when the class meets on `Weekday::ALL[n]`.
    weekdays: u8,
}

impl RenderedClass {
    pub fn meets_on(&self, day: Weekday) -> bool {
        self.weekdays & weekday_bit(day) != 0
    }
}

fn weekday_bit(day: Weekday) -> u8 {
    let index = Weekday::ALL.iter().position(|d| *d == day).unwrap_or(0);
    1 << index
}

#[derive(Clone)]
pub struct RenderedClasses(moka::sync::Cache<Uuid, Arc<RenderedClass>>);

impl Default for RenderedClasses {
    fn default() -> Self {
        Self(moka::sync::Cache::new(CAPACITY))
    }
}

impl RenderedClasses {
    /// The JSON of this copy of the class (`render` makes it): remembered, or
    /// rendered now.
    pub fn get(
        &self,
        row: &Arc<ClassRow>,
        render: impl FnOnce(&ClassRow) -> Vec<u8>,
    ) -> Arc<RenderedClass> {
        if let Some(known) = self.0.get(&row.id)
            && std::ptr::eq(known.source.as_ptr(), Arc::as_ptr(row))
        {
            return known;
        }
        let weekdays = row
            .meetings()
            .iter()
            .fold(0, |bits, meeting| bits | weekday_bit(meeting.weekday));
        let rendered = Arc::new(RenderedClass {
            source: Arc::downgrade(row),
            json: Bytes::from(render(row)),
            weekdays,
        });
        self.0.insert(row.id, rendered.clone());
        rendered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(meetings: &str) -> Arc<ClassRow> {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        Arc::new(ClassRow {
            id: Uuid::now_v7(),
            coop_id: Uuid::now_v7(),
            semester_id: Uuid::now_v7(),
            title: "Clay".into(),
            description: String::new(),
            teacher_user_id: None,
            capacity: 12,
            seats_taken: 3,
            waitlist_length: 0,
            fee_cents: 0,
            currency: "usd".into(),
            min_age: None,
            max_age: None,
            min_grade: None,
            max_grade: None,
            meetings: meetings.into(),
            version: 1,
            created_at: now,
            updated_at: now,
        })
    }

    fn seats(row: &ClassRow) -> Vec<u8> {
        format!(r#"{{"seats_left":{}}}"#, row.capacity - row.seats_taken).into_bytes()
    }

    #[test]
    fn the_same_copy_is_rendered_once_and_a_new_copy_again() {
        let memo = RenderedClasses::default();
        let first = row(r#"[{"weekday":"tuesday","starts_at":"09:30","minutes":60,"room":null}]"#);
        let a = memo.get(&first, seats);
        let b = memo.get(&first, |_| {
            unreachable!("the same copy is not rendered again")
        });
        assert!(Arc::ptr_eq(&a, &b), "the same copy must reuse its JSON");
        assert!(a.meets_on(Weekday::Tuesday));
        assert!(!a.meets_on(Weekday::Monday));
        let text = std::str::from_utf8(&a.json).unwrap();
        assert!(text.contains(r#""seats_left":9"#), "{text}");

        // The class changed: the cache loads a new copy with the same id.
        let mut changed = (*first).clone();
        changed.seats_taken = 4;
        let changed = Arc::new(changed);
        let c = memo.get(&changed, seats);
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(
            std::str::from_utf8(&c.json)
                .unwrap()
                .contains(r#""seats_left":8"#)
        );
    }
}
