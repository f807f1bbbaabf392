//! The coordinator's pages: families, semesters and classes, announcements,
//! charges and failed jobs.

use super::forms::PostedForm;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use coop_domain::courses::{
    ClassInput as RawClass, MeetingInput, NewClass, NewSemester, Number, SemesterInput,
};
use coop_domain::{
    Currency, FieldErrors, Invalid, Money, NewAnnouncement, NewFamily, NewPayment, clock,
};
use coop_mechanisms::store::jobs::JobState;
use coop_services::jobs::Kind;
use serde::Deserialize;
use uuid::Uuid;

use super::account::{Done, money, registration};
use super::errors::PageResult;
use super::forms::Form;
use super::layout::{Layout, SignedInPage, capitalized};
use super::{PageError, ok, page, redirect};
use crate::state::AppState;

fn id(raw: &str, what: &str) -> Result<Uuid, PageError> {
    Uuid::parse_str(raw)
        .map_err(|_| PageError::NotFound(format!("there is no such {what} in your co-op")))
}

fn coordinator(me: &SignedInPage) -> Result<(), PageError> {
    if me.coordinator() {
        Ok(())
    } else {
        Err(PageError::Forbidden(
            "only the co-op's coordinators can see this page".into(),
        ))
    }
}

/// A 422 page showing `form` again.
fn again(template: &impl Template) -> Response {
    page(StatusCode::UNPROCESSABLE_ENTITY, template)
}

// ---------------------------------------------------------------- families

pub struct FamilyLine {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub since: String,
}

#[derive(Template)]
#[template(path = "families.html")]
struct Families {
    layout: Layout,
    q: String,
    rows: Vec<FamilyLine>,
    more: Option<String>,
}

#[derive(Template)]
#[template(path = "family_rows.html")]
struct FamilyRows {
    rows: Vec<FamilyLine>,
    more: Option<String>,
}

#[derive(Deserialize)]
pub struct FamilyQuery {
    q: Option<String>,
    after: Option<String>,
    done: Option<String>,
}

pub async fn families(
    State(state): State<AppState>,
    me: SignedInPage,
    headers: HeaderMap,
    Query(query): Query<FamilyQuery>,
) -> PageResult {
    coordinator(&me)?;
    let q = query.q.unwrap_or_default();
    let after = query.after.as_deref().and_then(|a| Uuid::parse_str(a).ok());
    let page_of = state
        .services
        .families
        .search(&me.ctx, &q, after, 50)
        .await?;
    let rows = page_of
        .items
        .into_iter()
        .map(|f| FamilyLine {
            id: f.id,
            name: f.family_name,
            email: f.email,
            since: f.enrollment_date.to_string(),
        })
        .collect();
    let more = page_of
        .next_after
        .map(|after| format!("/families?q={}&after={after}", super::layout::encode(&q)));
    // htmx's "load more" asks for the next rows only.
    if headers.get("hx-request").is_some() {
        return Ok(ok(&FamilyRows { rows, more }));
    }
    Ok(ok(&Families {
        layout: me.layout("Families").with_notice(query.done.as_deref()),
        q,
        rows,
        more,
    }))
}

#[derive(Template)]
#[template(path = "family_form.html")]
struct FamilyFormPage {
    layout: Layout,
    form: Form,
    action: String,
    heading: &'static str,
}

#[derive(Deserialize, Default)]
pub struct FamilyFields {
    #[serde(default)]
    family_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    enrollment_date: String,
}

impl FamilyFields {
    fn form(&self) -> Form {
        Form::with(&[
            ("family_name", self.family_name.clone()),
            ("email", self.email.clone()),
            ("enrollment_date", self.enrollment_date.clone()),
        ])
    }

    fn parse(&self) -> Result<NewFamily, Invalid> {
        let date = Some(self.enrollment_date.as_str()).filter(|d| !d.trim().is_empty());
        NewFamily::parse(
            Some(&self.family_name),
            Some(&self.email),
            date,
            clock::now().date(),
        )
    }
}

pub async fn new_family_page(me: SignedInPage) -> PageResult {
    coordinator(&me)?;
    Ok(ok(&FamilyFormPage {
        layout: me.layout("Add a family"),
        form: Form::default(),
        action: "/families/new".into(),
        heading: "Add a family",
    }))
}

/// A conflict on the email field, shown next to it.
fn field_problem(field: &str, problem: impl Into<String>) -> FieldErrors {
    let mut errors = FieldErrors::new();
    errors.insert(field.to_owned(), problem.into());
    errors
}

pub async fn add_family(
    State(state): State<AppState>,
    me: SignedInPage,
    PostedForm(fields): PostedForm<FamilyFields>,
) -> PageResult {
    coordinator(&me)?;
    let show = |errors| FamilyFormPage {
        layout: me.layout("Add a family"),
        form: fields.form().failed(errors, ""),
        action: "/families/new".into(),
        heading: "Add a family",
    };
    let new = match fields.parse() {
        Ok(new) => new,
        Err(invalid) => return Ok(again(&show(invalid.0))),
    };
    match state.services.families.enroll(&me.ctx, &new, None).await {
        Ok(family) => Ok(redirect(&format!(
            "/families/{}?done=family-added",
            family.id
        ))),
        Err(coop_services::Error::Conflict { message, .. }) => {
            Ok(again(&show(field_problem("email", message))))
        }
        Err(err) => Err(err.into()),
    }
}

pub struct ChildView {
    pub name: String,
    pub born: String,
    pub classes: Vec<String>,
}

pub struct PaymentLine {
    pub id: Uuid,
    pub when: String,
    pub amount: String,
    pub description: String,
    pub state: &'static str,
    pub failed: bool,
}

#[derive(Template)]
#[template(path = "family.html")]
struct FamilyPage {
    layout: Layout,
    id: Uuid,
    name: String,
    email: String,
    since: String,
    children: Vec<ChildView>,
    balances: Vec<String>,
    lines: Vec<(String, String, String)>,
    payments: Vec<PaymentLine>,
    charge: Form,
}

pub async fn family(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
    Query(q): Query<Done>,
) -> PageResult {
    coordinator(&me)?;
    let family_id = id(&raw, "family")?;
    family_page(&state, &me, family_id, q.done.as_deref(), Form::default()).await
}

async fn family_page(
    state: &AppState,
    me: &SignedInPage,
    family_id: Uuid,
    done: Option<&str>,
    charge: Form,
) -> PageResult {
    let s = &state.services;
    let ctx = &me.ctx;
    let family = s.families.get(ctx, family_id).await?;
    let children = s.children.of_family(ctx, family_id).await?;
    let enrollments = s.enrollments.of_family(ctx, family_id).await?;
    let (balances, lines) = s.enrollments.balance(ctx, family_id).await?;
    let payments = s.payments.list(ctx, family_id).await?;
    let status = if charge.has_errors() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(page(
        status,
        &FamilyPage {
            layout: me.layout(family.family_name.clone()).with_notice(done),
            id: family.id,
            name: family.family_name.clone(),
            email: family.email.clone(),
            since: family.enrollment_date.to_string(),
            children: children
                .iter()
                .map(|c| ChildView {
                    name: c.first_name.clone(),
                    born: c
                        .birth_date
                        .map(|d| format!("born {d}"))
                        .or(c.grade.map(|g| format!("grade {g}")))
                        .unwrap_or_default(),
                    classes: enrollments
                        .iter()
                        .filter(|e| e.child_id == c.id)
                        .map(|e| match e.position {
                            Some(p) => format!("{} (waitlist, number {p})", e.class_title),
                            None => e.class_title.clone(),
                        })
                        .collect(),
                })
                .collect(),
            balances: balances
                .iter()
                .map(|b| format!("{} due", money(b.due_cents(), &b.currency)))
                .collect(),
            lines: lines
                .iter()
                .map(|l| {
                    (
                        l.created_at.date().to_string(),
                        l.description.clone(),
                        money(l.amount_cents, &l.currency),
                    )
                })
                .collect(),
            payments: payments
                .iter()
                .map(|p| PaymentLine {
                    id: p.id,
                    when: clock::from_unix_ms(p.created_at).date().to_string(),
                    amount: money(p.amount_cents, &p.currency),
                    description: p.description.clone(),
                    state: p.state.as_str(),
                    failed: p.state == coop_domain::PaymentState::Failed,
                })
                .collect(),
            charge,
        },
    ))
}

pub async fn edit_family_page(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
) -> PageResult {
    coordinator(&me)?;
    let family = state
        .services
        .families
        .get(&me.ctx, id(&raw, "family")?)
        .await?;
    Ok(ok(&FamilyFormPage {
        layout: me.layout(format!("Edit {}", family.family_name)),
        form: Form::with(&[
            ("family_name", family.family_name.clone()),
            ("email", family.email.clone()),
            ("enrollment_date", family.enrollment_date.to_string()),
        ]),
        action: format!("/families/{}/edit", family.id),
        heading: "Edit the family",
    }))
}

pub async fn edit_family(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
    PostedForm(fields): PostedForm<FamilyFields>,
) -> PageResult {
    coordinator(&me)?;
    let family_id = id(&raw, "family")?;
    let show = |errors| FamilyFormPage {
        layout: me.layout("Edit the family"),
        form: fields.form().failed(errors, ""),
        action: format!("/families/{family_id}/edit"),
        heading: "Edit the family",
    };
    let new = match fields.parse() {
        Ok(new) => new,
        Err(invalid) => return Ok(again(&show(invalid.0))),
    };
    match state
        .services
        .families
        .update(&me.ctx, family_id, &new, None)
        .await
    {
        Ok(_) => Ok(redirect(&format!(
            "/families/{family_id}?done=family-saved"
        ))),
        Err(coop_services::Error::Conflict { message, .. }) => {
            Ok(again(&show(field_problem("email", message))))
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn remove_family(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
) -> PageResult {
    coordinator(&me)?;
    state
        .services
        .families
        .remove(&me.ctx, id(&raw, "family")?, None)
        .await?;
    Ok(redirect("/families?done=family-removed"))
}

pub async fn resend_invite(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
) -> PageResult {
    coordinator(&me)?;
    let family_id = id(&raw, "family")?;
    state
        .services
        .families
        .resend_invite(&me.ctx, family_id)
        .await?;
    Ok(redirect(&format!("/families/{family_id}?done=invite-sent")))
}

#[derive(Deserialize)]
pub struct ChargeFields {
    #[serde(default)]
    amount: String,
    #[serde(default)]
    description: String,
}

/// `45`, `45.5` or `45.50` (a currency's main unit) as whole cents.
pub fn cents(raw: &str) -> Option<i64> {
    let raw = raw.trim().trim_start_matches('$');
    let (whole, part) = raw.split_once('.').unwrap_or((raw, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || part.len() > 2
        || !part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let part: i64 = format!("{part:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(part)
}

pub async fn charge_family(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
    PostedForm(fields): PostedForm<ChargeFields>,
) -> PageResult {
    coordinator(&me)?;
    let family_id = id(&raw, "family")?;
    // Absent, not an amount, or whole cents.
    let amount = (!fields.amount.trim().is_empty()).then(|| cents(&fields.amount));
    let parsed = NewPayment::parse(amount, Some(&fields.description), None);
    let form = || {
        Form::with(&[
            ("amount", fields.amount.clone()),
            ("description", fields.description.clone()),
        ])
    };
    let new = match parsed {
        Ok(new) => new,
        Err(invalid) => {
            let errors = invalid
                .0
                .into_iter()
                .map(|(k, v)| {
                    (
                        if k == "amount_cents" {
                            "amount".into()
                        } else {
                            k
                        },
                        v,
                    )
                })
                .collect();
            return family_page(&state, &me, family_id, None, form().failed(errors, "")).await;
        }
    };
    match state
        .services
        .payments
        .create(&me.ctx, family_id, &new, None)
        .await
    {
        Ok(_) => Ok(redirect(&format!("/families/{family_id}?done=charged"))),
        Err(coop_services::Error::Unprocessable { message, .. }) => {
            family_page(
                &state,
                &me,
                family_id,
                None,
                form().failed(Default::default(), message),
            )
            .await
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn retry_payment(
    State(state): State<AppState>,
    me: SignedInPage,
    Path((family, payment)): Path<(String, String)>,
) -> PageResult {
    coordinator(&me)?;
    let family_id = id(&family, "family")?;
    let payment_id = id(&payment, "payment")?;
    state
        .services
        .payments
        .retry(&me.ctx, family_id, payment_id)
        .await?;
    Ok(redirect(&format!("/families/{family_id}?done=charged")))
}

// --------------------------------------------------------------- semesters

pub struct SemesterRow {
    pub id: Uuid,
    pub name: String,
    pub dates: String,
    pub registration: &'static str,
}

#[derive(Template)]
#[template(path = "semesters.html")]
struct Semesters {
    layout: Layout,
    coordinator: bool,
    items: Vec<SemesterRow>,
}

pub async fn semesters(
    State(state): State<AppState>,
    me: SignedInPage,
    Query(q): Query<Done>,
) -> PageResult {
    let items = state.services.semesters.list(&me.ctx).await?;
    Ok(ok(&Semesters {
        layout: me.layout("Semesters").with_notice(q.done.as_deref()),
        coordinator: me.coordinator(),
        items: items
            .iter()
            .map(|s| SemesterRow {
                id: s.id,
                name: s.name.clone(),
                dates: format!("{} to {}", s.starts_on, s.ends_on),
                registration: registration(s),
            })
            .collect(),
    }))
}

#[derive(Template)]
#[template(path = "semester_form.html")]
struct SemesterFormPage {
    layout: Layout,
    form: Form,
    action: String,
    heading: &'static str,
}

#[derive(Deserialize, Default)]
pub struct SemesterFields {
    #[serde(default)]
    name: String,
    #[serde(default)]
    starts_on: String,
    #[serde(default)]
    ends_on: String,
    /// `datetime-local` values, read as UTC.
    #[serde(default)]
    registration_opens_at: String,
    #[serde(default)]
    registration_closes_at: String,
    /// One date per line or comma.
    #[serde(default)]
    holidays: String,
}

/// A `datetime-local` field (`2026-08-01T09:00`) as RFC 3339 in UTC.
fn instant(raw: &str) -> String {
    let raw = raw.trim();
    if raw.len() == 16 && raw.as_bytes().get(10) == Some(&b'T') {
        format!("{raw}:00Z")
    } else {
        raw.to_owned()
    }
}

impl SemesterFields {
    fn form(&self) -> Form {
        Form::with(&[
            ("name", self.name.clone()),
            ("starts_on", self.starts_on.clone()),
            ("ends_on", self.ends_on.clone()),
            ("registration_opens_at", self.registration_opens_at.clone()),
            (
                "registration_closes_at",
                self.registration_closes_at.clone(),
            ),
            ("holidays", self.holidays.clone()),
        ])
    }

    fn parse(&self) -> Result<NewSemester, Invalid> {
        let opens = instant(&self.registration_opens_at);
        let closes = instant(&self.registration_closes_at);
        let holidays: Vec<&str> = self
            .holidays
            .split([',', '\n', ' '])
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .collect();
        NewSemester::parse(SemesterInput {
            name: Some(&self.name),
            starts_on: Some(&self.starts_on),
            ends_on: Some(&self.ends_on),
            registration_opens_at: Some(&opens),
            registration_closes_at: Some(&closes),
            holidays,
        })
        .map_err(|invalid| {
            // `holidays[3]` problems belong to the one field.
            Invalid(
                invalid
                    .0
                    .into_iter()
                    .map(|(k, v)| {
                        if k.starts_with("holidays[") {
                            ("holidays".into(), format!("{k}: {v}"))
                        } else {
                            (k, v)
                        }
                    })
                    .collect(),
            )
        })
    }
}

pub async fn new_semester_page(me: SignedInPage) -> PageResult {
    coordinator(&me)?;
    Ok(ok(&SemesterFormPage {
        layout: me.layout("New semester"),
        form: Form::default(),
        action: "/semesters/new".into(),
        heading: "New semester",
    }))
}

pub async fn add_semester(
    State(state): State<AppState>,
    me: SignedInPage,
    PostedForm(fields): PostedForm<SemesterFields>,
) -> PageResult {
    coordinator(&me)?;
    let new = match fields.parse() {
        Ok(new) => new,
        Err(invalid) => {
            return Ok(again(&SemesterFormPage {
                layout: me.layout("New semester"),
                form: fields.form().failed(invalid.0, ""),
                action: "/semesters/new".into(),
                heading: "New semester",
            }));
        }
    };
    let semester = state.services.semesters.create(&me.ctx, &new).await?;
    Ok(redirect(&format!(
        "/semesters/{}?done=semester-saved",
        semester.id
    )))
}

fn local(at: time::OffsetDateTime) -> String {
    format!("{}T{:02}:{:02}", at.date(), at.hour(), at.minute())
}

pub async fn edit_semester_page(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
) -> PageResult {
    coordinator(&me)?;
    let s = state
        .services
        .semesters
        .get(&me.ctx, id(&raw, "semester")?)
        .await?;
    Ok(ok(&SemesterFormPage {
        layout: me.layout(format!("Edit {}", s.name)),
        form: Form::with(&[
            ("name", s.name.clone()),
            ("starts_on", s.starts_on.to_string()),
            ("ends_on", s.ends_on.to_string()),
            ("registration_opens_at", local(s.registration_opens_at)),
            ("registration_closes_at", local(s.registration_closes_at)),
            (
                "holidays",
                s.holidays()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ]),
        action: format!("/semesters/{}/edit", s.id),
        heading: "Edit the semester",
    }))
}

pub async fn edit_semester(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
    PostedForm(fields): PostedForm<SemesterFields>,
) -> PageResult {
    coordinator(&me)?;
    let semester_id = id(&raw, "semester")?;
    let new = match fields.parse() {
        Ok(new) => new,
        Err(invalid) => {
            return Ok(again(&SemesterFormPage {
                layout: me.layout("Edit the semester"),
                form: fields.form().failed(invalid.0, ""),
                action: format!("/semesters/{semester_id}/edit"),
                heading: "Edit the semester",
            }));
        }
    };
    state
        .services
        .semesters
        .update(&me.ctx, semester_id, &new, None)
        .await?;
    Ok(redirect(&format!(
        "/semesters/{semester_id}?done=semester-saved"
    )))
}

pub struct ClassRow {
    pub id: Uuid,
    pub title: String,
    pub when: String,
    pub seats: String,
    pub waiting: i32,
}

pub fn when(meetings: &[coop_domain::courses::Meeting]) -> String {
    meetings
        .iter()
        .map(|m| {
            format!(
                "{} {:02}:{:02} ({} min)",
                capitalized(m.weekday.as_str()),
                m.starts_at.hour(),
                m.starts_at.minute(),
                m.minutes
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Template)]
#[template(path = "semester.html")]
struct SemesterPage {
    layout: Layout,
    id: Uuid,
    coordinator: bool,
    name: String,
    dates: String,
    window: String,
    registration: &'static str,
    classes: Vec<ClassRow>,
}

pub async fn semester(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
    Query(q): Query<Done>,
) -> PageResult {
    let semester_id = id(&raw, "semester")?;
    let (s, classes) = state.services.classes.catalog(&me.ctx, semester_id).await?;
    Ok(ok(&SemesterPage {
        layout: me.layout(s.name.clone()).with_notice(q.done.as_deref()),
        id: s.id,
        coordinator: me.coordinator(),
        name: s.name.clone(),
        dates: format!("{} to {}", s.starts_on, s.ends_on),
        window: format!(
            "{} to {} (UTC)",
            local(s.registration_opens_at).replace('T', " "),
            local(s.registration_closes_at).replace('T', " ")
        ),
        registration: registration(&s),
        classes: classes
            .iter()
            .map(|c| ClassRow {
                id: c.id,
                title: c.title.clone(),
                when: when(&c.meetings()),
                seats: format!("{} of {}", c.seats_taken, c.capacity),
                waiting: c.waitlist_length,
            })
            .collect(),
    }))
}

// ----------------------------------------------------------------- classes

/// Meeting rows a class form offers.
const MEETING_ROWS: usize = 4;

#[derive(Deserialize, Default)]
pub struct ClassFields {
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    capacity: String,
    #[serde(default)]
    fee: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    min_age: String,
    #[serde(default)]
    max_age: String,
    #[serde(default)]
    teacher_user_id: String,
    #[serde(default)]
    weekday_0: String,
    #[serde(default)]
    starts_at_0: String,
    #[serde(default)]
    minutes_0: String,
    #[serde(default)]
    room_0: String,
    #[serde(default)]
    weekday_1: String,
    #[serde(default)]
    starts_at_1: String,
    #[serde(default)]
    minutes_1: String,
    #[serde(default)]
    room_1: String,
    #[serde(default)]
    weekday_2: String,
    #[serde(default)]
    starts_at_2: String,
    #[serde(default)]
    minutes_2: String,
    #[serde(default)]
    room_2: String,
    #[serde(default)]
    weekday_3: String,
    #[serde(default)]
    starts_at_3: String,
    #[serde(default)]
    minutes_3: String,
    #[serde(default)]
    room_3: String,
}

fn number(raw: &str) -> Option<Number> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    Some(raw.parse::<i64>().map_or(Number::NotWhole, Number::Whole))
}

impl ClassFields {
    fn meetings(&self) -> [(&str, &str, &str, &str); MEETING_ROWS] {
        [
            (
                &self.weekday_0,
                &self.starts_at_0,
                &self.minutes_0,
                &self.room_0,
            ),
            (
                &self.weekday_1,
                &self.starts_at_1,
                &self.minutes_1,
                &self.room_1,
            ),
            (
                &self.weekday_2,
                &self.starts_at_2,
                &self.minutes_2,
                &self.room_2,
            ),
            (
                &self.weekday_3,
                &self.starts_at_3,
                &self.minutes_3,
                &self.room_3,
            ),
        ]
    }

    fn form(&self) -> Form {
        let mut values = vec![
            ("title", self.title.clone()),
            ("description", self.description.clone()),
            ("capacity", self.capacity.clone()),
            ("fee", self.fee.clone()),
            ("currency", self.currency.clone()),
            ("min_age", self.min_age.clone()),
            ("max_age", self.max_age.clone()),
            ("teacher_user_id", self.teacher_user_id.clone()),
        ];
        let names = [
            ["weekday_0", "starts_at_0", "minutes_0", "room_0"],
            ["weekday_1", "starts_at_1", "minutes_1", "room_1"],
            ["weekday_2", "starts_at_2", "minutes_2", "room_2"],
            ["weekday_3", "starts_at_3", "minutes_3", "room_3"],
        ];
        for (row, (w, s, m, r)) in names.iter().zip(self.meetings()) {
            values.push((row[0], w.to_owned()));
            values.push((row[1], s.to_owned()));
            values.push((row[2], m.to_owned()));
            values.push((row[3], r.to_owned()));
        }
        Form::with(&values)
    }

    fn parse(&self) -> Result<NewClass, Invalid> {
        let fee = if self.fee.trim().is_empty() {
            Some(Number::Whole(0))
        } else {
            Some(cents(&self.fee).map_or(Number::NotWhole, Number::Whole))
        };
        // Rows left blank are no meeting; the first row is always read.
        let meetings: Vec<MeetingInput<'_>> = self
            .meetings()
            .into_iter()
            .enumerate()
            .filter(|(i, (w, s, m, _))| *i == 0 || !(w.is_empty() && s.is_empty() && m.is_empty()))
            .map(|(_, (w, s, m, r))| MeetingInput {
                weekday: Some(w).filter(|w| !w.is_empty()),
                starts_at: Some(s).filter(|s| !s.is_empty()),
                minutes: number(m),
                room: Some(r),
            })
            .collect();
        NewClass::parse(RawClass {
            title: Some(&self.title),
            description: Some(&self.description),
            capacity: number(&self.capacity),
            fee_cents: fee,
            currency: Some(self.currency.as_str()).filter(|c| !c.trim().is_empty()),
            min_age: number(&self.min_age),
            max_age: number(&self.max_age),
            min_grade: None,
            max_grade: None,
            teacher_user_id: Some(self.teacher_user_id.as_str()),
            meetings: Some(meetings),
        })
        .map_err(|invalid| {
            // The domain's field names, as this form names them.
            Invalid(
                invalid
                    .0
                    .into_iter()
                    .map(|(k, v)| {
                        let k = match k.as_str() {
                            "fee_cents" => "fee".to_owned(),
                            other => match other.strip_prefix("meetings[") {
                                Some(rest) => {
                                    let (row, field) =
                                        rest.split_once("].").unwrap_or(("0", "weekday"));
                                    format!("{field}_{row}")
                                }
                                None => other.to_owned(),
                            },
                        };
                        (k, v)
                    })
                    .collect(),
            )
        })
    }
}

pub struct Choice {
    pub value: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "class_form.html")]
struct ClassFormPage {
    layout: Layout,
    form: Form,
    action: String,
    heading: String,
    teachers: Vec<Choice>,
    weekdays: Vec<Choice>,
    rows: Vec<usize>,
}

impl ClassFormPage {
    fn selected(&self, field: &str, value: &str) -> bool {
        self.form.value(field) == value
    }

    fn row(&self, name: &str, row: &usize) -> String {
        format!("{name}_{row}")
    }
}

async fn class_form(
    state: &AppState,
    me: &SignedInPage,
    heading: String,
    action: String,
    form: Form,
) -> Result<ClassFormPage, PageError> {
    let members = state.services.accounts.members(&me.ctx).await?;
    let mut teachers = vec![Choice {
        value: String::new(),
        label: "Nobody yet".into(),
    }];
    teachers.extend(members.into_iter().map(|(id, name, email)| Choice {
        value: id.to_string(),
        label: format!("{name} ({email})"),
    }));
    let mut weekdays = vec![Choice {
        value: String::new(),
        label: "—".into(),
    }];
    weekdays.extend(
        coop_domain::courses::Weekday::ALL
            .into_iter()
            .map(|d| Choice {
                value: d.as_str().to_owned(),
                label: capitalized(d.as_str()),
            }),
    );
    Ok(ClassFormPage {
        layout: me.layout(heading.clone()),
        form,
        action,
        heading,
        teachers,
        weekdays,
        rows: (0..MEETING_ROWS).collect(),
    })
}

pub async fn new_class_page(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
) -> PageResult {
    coordinator(&me)?;
    let semester = state
        .services
        .semesters
        .get(&me.ctx, id(&raw, "semester")?)
        .await?;
    let form = Form::with(&[("currency", "usd".into()), ("minutes_0", "60".into())]);
    let page_ = class_form(
        &state,
        &me,
        format!("New class in {}", semester.name),
        format!("/semesters/{}/classes/new", semester.id),
        form,
    )
    .await?;
    Ok(ok(&page_))
}

pub async fn add_class(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
    PostedForm(fields): PostedForm<ClassFields>,
) -> PageResult {
    coordinator(&me)?;
    let semester_id = id(&raw, "semester")?;
    let action = format!("/semesters/{semester_id}/classes/new");
    let new = match fields.parse() {
        Ok(new) => new,
        Err(invalid) => {
            let p = class_form(
                &state,
                &me,
                "New class".into(),
                action,
                fields.form().failed(invalid.0, ""),
            )
            .await?;
            return Ok(again(&p));
        }
    };
    match state
        .services
        .classes
        .create(&me.ctx, semester_id, &new)
        .await
    {
        Ok(class) => Ok(redirect(&format!("/classes/{}?done=class-saved", class.id))),
        Err(coop_services::Error::Invalid(invalid)) => {
            let p = class_form(
                &state,
                &me,
                "New class".into(),
                action,
                fields.form().failed(invalid.0, ""),
            )
            .await?;
            Ok(again(&p))
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn edit_class_page(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
) -> PageResult {
    coordinator(&me)?;
    let class = state
        .services
        .classes
        .get(&me.ctx, id(&raw, "class")?)
        .await?;
    let mut values = vec![
        ("title", class.title.clone()),
        ("description", class.description.clone()),
        ("capacity", class.capacity.to_string()),
        (
            "fee",
            format!("{}.{:02}", class.fee_cents / 100, class.fee_cents % 100),
        ),
        ("currency", class.currency.clone()),
        (
            "min_age",
            class.min_age.map(|a| a.to_string()).unwrap_or_default(),
        ),
        (
            "max_age",
            class.max_age.map(|a| a.to_string()).unwrap_or_default(),
        ),
        (
            "teacher_user_id",
            class
                .teacher_user_id
                .map(|t| t.to_string())
                .unwrap_or_default(),
        ),
    ];
    let names = [
        ["weekday_0", "starts_at_0", "minutes_0", "room_0"],
        ["weekday_1", "starts_at_1", "minutes_1", "room_1"],
        ["weekday_2", "starts_at_2", "minutes_2", "room_2"],
        ["weekday_3", "starts_at_3", "minutes_3", "room_3"],
    ];
    for (row, m) in names.iter().zip(class.meetings()) {
        values.push((row[0], m.weekday.as_str().to_owned()));
        values.push((
            row[1],
            format!("{:02}:{:02}", m.starts_at.hour(), m.starts_at.minute()),
        ));
        values.push((row[2], m.minutes.to_string()));
        values.push((row[3], m.room.clone().unwrap_or_default()));
    }
    let p = class_form(
        &state,
        &me,
        format!("Edit {}", class.title),
        format!("/classes/{}/edit", class.id),
        Form::with(&values),
    )
    .await?;
    Ok(ok(&p))
}

pub async fn edit_class(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
    PostedForm(fields): PostedForm<ClassFields>,
) -> PageResult {
    coordinator(&me)?;
    let class_id = id(&raw, "class")?;
    let action = format!("/classes/{class_id}/edit");
    let new = match fields.parse() {
        Ok(new) => new,
        Err(invalid) => {
            let p = class_form(
                &state,
                &me,
                "Edit the class".into(),
                action,
                fields.form().failed(invalid.0, ""),
            )
            .await?;
            return Ok(again(&p));
        }
    };
    match state
        .services
        .classes
        .update(&me.ctx, class_id, &new, None)
        .await
    {
        Ok(_) => Ok(redirect(&format!("/classes/{class_id}?done=class-saved"))),
        Err(coop_services::Error::Conflict {
            message,
            fields: Some(errors),
            ..
        }) => {
            let p = class_form(
                &state,
                &me,
                "Edit the class".into(),
                action,
                fields.form().failed(errors, message),
            )
            .await?;
            Ok(page(StatusCode::CONFLICT, &p))
        }
        Err(coop_services::Error::Invalid(invalid)) => {
            let p = class_form(
                &state,
                &me,
                "Edit the class".into(),
                action,
                fields.form().failed(invalid.0, ""),
            )
            .await?;
            Ok(again(&p))
        }
        Err(err) => Err(err.into()),
    }
}

// ----------------------------------------------------------- announcements

#[derive(Template)]
#[template(path = "announcement_form.html")]
struct AnnouncementFormPage {
    layout: Layout,
    form: Form,
    classes: Vec<Choice>,
}

#[derive(Deserialize)]
pub struct AnnouncementFields {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    class_id: String,
}

async fn class_choices(state: &AppState, me: &SignedInPage) -> Result<Vec<Choice>, PageError> {
    let mut choices = vec![Choice {
        value: String::new(),
        label: "Every family of the co-op".into(),
    }];
    for semester in state.services.semesters.list(&me.ctx).await?.iter().take(3) {
        let (_, classes) = state.services.classes.catalog(&me.ctx, semester.id).await?;
        choices.extend(classes.into_iter().map(|c| Choice {
            value: c.id.to_string(),
            label: format!("The families of {} ({})", c.title, semester.name),
        }));
    }
    Ok(choices)
}

pub async fn new_announcement_page(State(state): State<AppState>, me: SignedInPage) -> PageResult {
    coordinator(&me)?;
    let classes = class_choices(&state, &me).await?;
    Ok(ok(&AnnouncementFormPage {
        layout: me.layout("Write an announcement"),
        form: Form::default(),
        classes,
    }))
}

pub async fn send_announcement(
    State(state): State<AppState>,
    me: SignedInPage,
    PostedForm(fields): PostedForm<AnnouncementFields>,
) -> PageResult {
    coordinator(&me)?;
    let parsed = NewAnnouncement::parse(
        Some(&fields.subject),
        Some(&fields.body),
        Some(&fields.class_id),
    );
    let new = match parsed {
        Ok(new) => new,
        Err(invalid) => {
            let classes = class_choices(&state, &me).await?;
            return Ok(again(&AnnouncementFormPage {
                layout: me.layout("Write an announcement"),
                form: Form::with(&[
                    ("subject", fields.subject.clone()),
                    ("body", fields.body.clone()),
                    ("class_id", fields.class_id.clone()),
                ])
                .failed(invalid.0, ""),
                classes,
            }));
        }
    };
    let sent = state.services.announcements.send(&me.ctx, &new).await?;
    Ok(redirect(&format!(
        "/announcements/{}?done=announced",
        sent.id
    )))
}

// --------------------------------------------------------------------- jobs

pub struct JobLine {
    pub id: Uuid,
    pub kind: String,
    pub attempts: String,
    pub error: String,
    pub when: String,
    pub dead: bool,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct Jobs {
    layout: Layout,
    state: String,
    items: Vec<JobLine>,
}

#[derive(Deserialize)]
pub struct JobQuery {
    state: Option<String>,
    done: Option<String>,
}

pub async fn jobs(
    State(state): State<AppState>,
    me: SignedInPage,
    Query(q): Query<JobQuery>,
) -> PageResult {
    coordinator(&me)?;
    let wanted = q
        .state
        .as_deref()
        .and_then(JobState::parse)
        .unwrap_or(JobState::Dead);
    let items = state
        .services
        .queue
        .list(&me.ctx, Some(wanted), None, 100)
        .await?;
    Ok(ok(&Jobs {
        layout: me.layout("Background jobs").with_notice(q.done.as_deref()),
        state: wanted.as_str().to_owned(),
        items: items
            .into_iter()
            .map(|j| JobLine {
                id: j.id,
                kind: Kind::parse(&j.kind).map_or(j.kind.clone(), |k| k.as_str().replace('_', " ")),
                attempts: format!("{} of {}", j.attempts, j.max_attempts),
                error: j.last_error.unwrap_or_default(),
                when: clock::from_unix_ms(j.updated_at).to_string(),
                dead: j.state == JobState::Dead,
            })
            .collect(),
    }))
}

pub async fn retry_job(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
) -> PageResult {
    coordinator(&me)?;
    state
        .services
        .queue
        .retry(&me.ctx, id(&raw, "job")?)
        .await?;
    Ok(redirect("/jobs?done=retried"))
}

/// The cents of a family's due balance as a payment.
pub fn due_payment(cents: i64, currency: &str) -> Option<NewPayment> {
    Some(NewPayment {
        amount: Money::new(cents, Currency::parse(currency).ok()?).ok()?,
        description: "Balance".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_as_people_write_them() {
        assert_eq!(cents("45"), Some(4500));
        assert_eq!(cents("45.5"), Some(4550));
        assert_eq!(cents("$45.05"), Some(4505));
        assert_eq!(cents("45.555"), None);
        assert_eq!(cents("abc"), None);
        assert_eq!(cents(""), None);
    }
}
