//! Semesters, classes and children: their rows and plain reads and writes.
//! Enrolling (which changes a class's counters under its row lock) is in
//! `enrollments`.

use coop_domain::courses::{NewChild, NewClass, NewSemester};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::Db;
use crate::{with_conn, with_write_conn};

#[derive(Debug, Clone, sqlx::FromRow, Serialize, Deserialize)]
pub struct SemesterRow {
    pub id: Uuid,
    pub coop_id: Uuid,
    pub name: String,
    pub starts_on: Date,
    pub ends_on: Date,
    pub registration_opens_at: OffsetDateTime,
    pub registration_closes_at: OffsetDateTime,
    /// JSON array of dates.
    pub holidays: String,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl SemesterRow {
    pub fn holidays(&self) -> Vec<Date> {
        serde_json::from_str::<Vec<String>>(&self.holidays)
            .unwrap_or_default()
            .iter()
            .filter_map(|d| coop_domain::parse_date(d).ok())
            .collect()
    }
}

const SEMESTER_COLUMNS: &str = "id, coop_id, name, starts_on, ends_on, registration_opens_at, \
     registration_closes_at, holidays, version, created_at, updated_at";

fn holidays_json(days: &[Date]) -> String {
    serde_json::to_string(&days.iter().map(Date::to_string).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into())
}

pub async fn insert_semester(
    db: &Db,
    coop_id: Uuid,
    new: &NewSemester,
) -> Result<SemesterRow, sqlx::Error> {
    let at = coop_domain::clock::now();
    let row = SemesterRow {
        id: Uuid::now_v7(),
        coop_id,
        name: new.name.as_str().to_owned(),
        starts_on: new.starts_on,
        ends_on: new.ends_on,
        registration_opens_at: new.registration_opens_at,
        registration_closes_at: new.registration_closes_at,
        holidays: holidays_json(&new.holidays),
        version: 1,
        created_at: at,
        updated_at: at,
    };
    let sql = format!(
        "INSERT INTO semesters ({SEMESTER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    );
    with_write_conn!(db, conn => {
        sqlx::query(&sql)
            .bind(row.id)
            .bind(row.coop_id)
            .bind(&row.name)
            .bind(row.starts_on)
            .bind(row.ends_on)
            .bind(row.registration_opens_at)
            .bind(row.registration_closes_at)
            .bind(&row.holidays)
            .bind(row.version)
            .bind(row.created_at)
            .bind(row.updated_at)
            .execute(&mut *conn)
            .await?;
    });
    Ok(row)
}

/// Replaces a semester's fields; `None` when it does not exist, or (with
/// `expected`) is no longer at that version — `current_version` tells which.
pub async fn update_semester(
    db: &Db,
    coop_id: Uuid,
    id: Uuid,
    new: &NewSemester,
    expected: Option<i64>,
) -> Result<Option<SemesterRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE semesters SET name = $1, starts_on = $2, ends_on = $3, registration_opens_at = $4, \
         registration_closes_at = $5, holidays = $6, version = version + 1, updated_at = $7 \
         WHERE coop_id = $8 AND id = $9 AND ($10 OR version = $11) RETURNING {SEMESTER_COLUMNS}"
    );
    with_write_conn!(db, conn => {
        sqlx::query_as::<_, SemesterRow>(&sql)
            .bind(new.name.as_str())
            .bind(new.starts_on)
            .bind(new.ends_on)
            .bind(new.registration_opens_at)
            .bind(new.registration_closes_at)
            .bind(holidays_json(&new.holidays))
            .bind(coop_domain::clock::now())
            .bind(coop_id)
            .bind(id)
            .bind(expected.is_none())
            .bind(expected.unwrap_or_default())
            .fetch_optional(&mut *conn)
            .await
    })
}

pub async fn get_semester(
    db: &Db,
    coop_id: Uuid,
    id: Uuid,
) -> Result<Option<SemesterRow>, sqlx::Error> {
    let sql = format!("SELECT {SEMESTER_COLUMNS} FROM semesters WHERE coop_id = $1 AND id = $2");
    with_conn!(db, conn => {
        sqlx::query_as::<_, SemesterRow>(&sql)
            .bind(coop_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
    })
}

/// Every semester of the co-op, newest first.
pub async fn list_semesters(db: &Db, coop_id: Uuid) -> Result<Vec<SemesterRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {SEMESTER_COLUMNS} FROM semesters WHERE coop_id = $1 ORDER BY starts_on DESC, id DESC LIMIT 500"
    );
    with_conn!(db, conn => {
        sqlx::query_as::<_, SemesterRow>(&sql)
            .bind(coop_id)
            .fetch_all(&mut *conn)
            .await
    })
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize, Deserialize)]
pub struct ClassRow {
    pub id: Uuid,
    pub coop_id: Uuid,
    pub semester_id: Uuid,
    pub title: String,
    pub description: String,
    pub teacher_user_id: Option<Uuid>,
    pub capacity: i32,
    pub seats_taken: i32,
    pub waitlist_length: i32,
    pub fee_cents: i64,
    pub currency: String,
    pub min_age: Option<i32>,
    pub max_age: Option<i32>,
    pub min_grade: Option<i32>,
    pub max_grade: Option<i32>,
    /// JSON array of meetings.
    pub meetings: String,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl ClassRow {
    pub fn meetings(&self) -> Vec<coop_domain::courses::Meeting> {
        serde_json::from_str(&self.meetings).unwrap_or_default()
    }

    pub fn eligibility(&self) -> coop_domain::courses::Eligibility {
        coop_domain::courses::Eligibility {
            min_age: self.min_age,
            max_age: self.max_age,
            min_grade: self.min_grade,
            max_grade: self.max_grade,
        }
    }

    pub fn seats_left(&self) -> i32 {
        (self.capacity - self.seats_taken).max(0)
    }
}

pub const CLASS_COLUMNS: &str = "id, coop_id, semester_id, title, description, teacher_user_id, \
     capacity, seats_taken, waitlist_length, fee_cents, currency, min_age, max_age, min_grade, \
     max_grade, meetings, version, created_at, updated_at";

pub async fn insert_class(
    db: &Db,
    coop_id: Uuid,
    semester_id: Uuid,
    new: &NewClass,
) -> Result<ClassRow, sqlx::Error> {
    let at = coop_domain::clock::now();
    let row = ClassRow {
        id: Uuid::now_v7(),
        coop_id,
        semester_id,
        title: new.title.as_str().to_owned(),
        description: new.description.clone(),
        teacher_user_id: new.teacher_user_id,
        capacity: new.capacity,
        seats_taken: 0,
        waitlist_length: 0,
        fee_cents: new.fee.cents,
        currency: new.fee.currency.as_str().to_owned(),
        min_age: new.eligibility.min_age,
        max_age: new.eligibility.max_age,
        min_grade: new.eligibility.min_grade,
        max_grade: new.eligibility.max_grade,
        meetings: serde_json::to_string(&new.meetings).unwrap_or_else(|_| "[]".into()),
        version: 1,
        created_at: at,
        updated_at: at,
    };
    let sql = "INSERT INTO classes (id, coop_id, semester_id, title, description, teacher_user_id, \
         capacity, seats_taken, waitlist_length, waitlist_next, fee_cents, currency, min_age, max_age, \
         min_grade, max_grade, meetings, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 1, $8, $9, $10, $11, $12, $13, $14, 1, $15, $15)";
    with_write_conn!(db, conn => {
        sqlx::query(sql)
            .bind(row.id)
            .bind(row.coop_id)
            .bind(row.semester_id)
            .bind(&row.title)
            .bind(&row.description)
            .bind(row.teacher_user_id)
            .bind(row.capacity)
            .bind(row.fee_cents)
            .bind(&row.currency)
            .bind(row.min_age)
            .bind(row.max_age)
            .bind(row.min_grade)
            .bind(row.max_grade)
            .bind(&row.meetings)
            .bind(at)
            .execute(&mut *conn)
            .await?;
    });
    Ok(row)
}

pub async fn get_class(db: &Db, coop_id: Uuid, id: Uuid) -> Result<Option<ClassRow>, sqlx::Error> {
    let sql = format!("SELECT {CLASS_COLUMNS} FROM classes WHERE coop_id = $1 AND id = $2");
    with_conn!(db, conn => {
        sqlx::query_as::<_, ClassRow>(&sql)
            .bind(coop_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
    })
}

/// The ids of a semester's classes, in creation order: the catalog's shape,
/// which changes only when a class is added or removed.
pub async fn class_ids(
    db: &Db,
    coop_id: Uuid,
    semester_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    with_conn!(db, conn => {
        sqlx::query_scalar::<_, Uuid>(
            "SELECT id FROM classes WHERE coop_id = $1 AND semester_id = $2 ORDER BY id",
        )
        .bind(coop_id)
        .bind(semester_id)
        .fetch_all(&mut *conn)
        .await
    })
}

/// The classes a user teaches, newest first.
pub async fn classes_taught_by(
    db: &Db,
    coop_id: Uuid,
    user_id: Uuid,
) -> Result<Vec<ClassRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {CLASS_COLUMNS} FROM classes WHERE coop_id = $1 AND teacher_user_id = $2 ORDER BY id DESC LIMIT 500"
    );
    with_conn!(db, conn => {
        sqlx::query_as::<_, ClassRow>(&sql)
            .bind(coop_id)
            .bind(user_id)
            .fetch_all(&mut *conn)
            .await
    })
}

/// Whether `user_id` is a user of the co-op (a class's teacher must be).
pub async fn is_member(db: &Db, coop_id: Uuid, user_id: Uuid) -> Result<bool, sqlx::Error> {
    with_conn!(db, conn => {
        let found: Option<Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE coop_id = $1 AND id = $2")
            .bind(coop_id)
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(found.is_some())
    })
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize, Deserialize)]
pub struct ChildRow {
    pub id: Uuid,
    pub coop_id: Uuid,
    pub family_id: Uuid,
    pub first_name: String,
    pub birth_date: Option<Date>,
    pub grade: Option<i32>,
    pub version: i64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

const CHILD_COLUMNS: &str =
    "id, coop_id, family_id, first_name, birth_date, grade, version, created_at, updated_at";

/// Adds a child to a family of the co-op; `None` when there is no such family.
pub async fn insert_child(
    db: &Db,
    coop_id: Uuid,
    family_id: Uuid,
    new: &NewChild,
) -> Result<Option<ChildRow>, sqlx::Error> {
    let at = coop_domain::clock::now();
    let row = ChildRow {
        id: Uuid::now_v7(),
        coop_id,
        family_id,
        first_name: new.first_name.as_str().to_owned(),
        birth_date: new.birth_date,
        grade: new.grade,
        version: 1,
        created_at: at,
        updated_at: at,
    };
    // Inserted only if the family is the co-op's: one statement, no race with
    // a concurrent removal of the family (its foreign key cascades).
    let sql = "INSERT INTO children (id, coop_id, family_id, first_name, birth_date, grade, version, created_at, updated_at) \
         SELECT $1, $2, $3, $4, $5, $6, 1, $7, $7 FROM families WHERE coop_id = $2 AND id = $3";
    let inserted = with_write_conn!(db, conn => {
        sqlx::query(sql)
            .bind(row.id)
            .bind(coop_id)
            .bind(family_id)
            .bind(&row.first_name)
            .bind(row.birth_date)
            .bind(row.grade)
            .bind(at)
            .execute(&mut *conn)
            .await?
            .rows_affected()
    });
    Ok((inserted == 1).then_some(row))
}

pub async fn children_of(
    db: &Db,
    coop_id: Uuid,
    family_id: Uuid,
) -> Result<Vec<ChildRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {CHILD_COLUMNS} FROM children WHERE coop_id = $1 AND family_id = $2 ORDER BY id LIMIT 100"
    );
    with_conn!(db, conn => {
        sqlx::query_as::<_, ChildRow>(&sql)
            .bind(coop_id)
            .bind(family_id)
            .fetch_all(&mut *conn)
            .await
    })
}

pub async fn get_child(db: &Db, coop_id: Uuid, id: Uuid) -> Result<Option<ChildRow>, sqlx::Error> {
    let sql = format!("SELECT {CHILD_COLUMNS} FROM children WHERE coop_id = $1 AND id = $2");
    with_conn!(db, conn => {
        sqlx::query_as::<_, ChildRow>(&sql)
            .bind(coop_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
    })
}

pub async fn update_child(
    db: &Db,
    coop_id: Uuid,
    family_id: Uuid,
    id: Uuid,
    new: &NewChild,
) -> Result<Option<ChildRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE children SET first_name = $1, birth_date = $2, grade = $3, version = version + 1, \
         updated_at = $4 WHERE coop_id = $5 AND family_id = $6 AND id = $7 RETURNING {CHILD_COLUMNS}"
    );
    with_write_conn!(db, conn => {
        sqlx::query_as::<_, ChildRow>(&sql)
            .bind(new.first_name.as_str())
            .bind(new.birth_date)
            .bind(new.grade)
            .bind(coop_domain::clock::now())
            .bind(coop_id)
            .bind(family_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
    })
}
