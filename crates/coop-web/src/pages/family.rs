//! A family's pages: the class catalog with enrolling and dropping, adding a
//! child, the week's schedule and its calendar link, paying what is due.

use super::forms::PostedForm;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use coop_domain::courses::{EnrollmentState, NewChild, Number, Weekday};
use coop_domain::{Invalid, clock};
use coop_services::enrollments::FamilyEnrollment;
use serde::Deserialize;
use uuid::Uuid;

use super::account::money;
use super::coordinator::{Choice, due_payment, when};
use super::errors::PageResult;
use super::forms::Form;
use super::layout::{Layout, SignedInPage, capitalized, encode};
use super::{PageError, ok, page, redirect};
use crate::state::AppState;

fn id(raw: &str, what: &str) -> Result<Uuid, PageError> {
    Uuid::parse_str(raw).map_err(|_| PageError::NotFound(format!("there is no such {what}")))
}

/// The family whose pages these are: the caller's own.
fn own_family(me: &SignedInPage) -> Result<Uuid, PageError> {
    me.ctx
        .caller
        .family_id
        .ok_or_else(|| PageError::Forbidden("this page is for family accounts".into()))
}

// ------------------------------------------------------------------- child

#[derive(Template)]
#[template(path = "child_form.html")]
struct ChildFormPage {
    layout: Layout,
    form: Form,
    action: String,
}

#[derive(Deserialize)]
pub struct ChildFields {
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    birth_date: String,
    #[serde(default)]
    grade: String,
}

pub async fn new_child_page(me: SignedInPage, Path(raw): Path<String>) -> PageResult {
    let family_id = id(&raw, "family")?;
    Ok(ok(&ChildFormPage {
        layout: me.layout("Add a child"),
        form: Form::default(),
        action: format!("/families/{family_id}/children/new"),
    }))
}

pub async fn add_child(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
    PostedForm(fields): PostedForm<ChildFields>,
) -> PageResult {
    let family_id = id(&raw, "family")?;
    let grade = match fields.grade.trim() {
        "" => None,
        g => Some(g.parse::<i64>().map_or(Number::NotWhole, Number::Whole)),
    };
    let birth = Some(fields.birth_date.as_str()).filter(|b| !b.trim().is_empty());
    let parsed = NewChild::parse(Some(&fields.first_name), birth, grade, clock::now().date());
    let new = match parsed {
        Ok(new) => new,
        Err(Invalid(errors)) => {
            return Ok(page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &ChildFormPage {
                    layout: me.layout("Add a child"),
                    form: Form::with(&[
                        ("first_name", fields.first_name.clone()),
                        ("birth_date", fields.birth_date.clone()),
                        ("grade", fields.grade.clone()),
                    ])
                    .failed(errors, ""),
                    action: format!("/families/{family_id}/children/new"),
                },
            ));
        }
    };
    state
        .services
        .children
        .add(&me.ctx, family_id, &new)
        .await?;
    let back = if me.coordinator() {
        format!("/families/{family_id}?done=child-added")
    } else {
        "/home?done=child-added".to_owned()
    };
    Ok(redirect(&back))
}

// ----------------------------------------------------------------- catalog

pub struct Placed {
    pub child_id: Uuid,
    pub name: String,
    pub state: String,
}

pub struct CatalogClass {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub when: String,
    pub ages: String,
    pub fee: String,
    pub seats: String,
    pub full: bool,
    /// This family's children in the class.
    pub placed: Vec<Placed>,
    /// Children who may still be enrolled.
    pub free: Vec<Choice>,
}

#[derive(Template)]
#[template(path = "catalog.html")]
struct Catalog {
    layout: Layout,
    semesters: Vec<Choice>,
    semester: String,
    registration: &'static str,
    age: String,
    weekday: String,
    weekdays: Vec<Choice>,
    classes: Vec<CatalogClass>,
    problem: Option<String>,
    no_children: bool,
}

#[derive(Deserialize, Default)]
pub struct CatalogQuery {
    semester: Option<String>,
    age: Option<String>,
    weekday: Option<String>,
    done: Option<String>,
}

pub async fn catalog(
    State(state): State<AppState>,
    me: SignedInPage,
    Query(query): Query<CatalogQuery>,
) -> PageResult {
    catalog_page(&state, &me, query, None).await
}

async fn catalog_page(
    state: &AppState,
    me: &SignedInPage,
    query: CatalogQuery,
    problem: Option<(StatusCode, String)>,
) -> PageResult {
    let s = &state.services;
    let ctx = &me.ctx;
    let semesters = s.semesters.list(ctx).await?;
    let chosen = query
        .semester
        .as_deref()
        .and_then(|raw| Uuid::parse_str(raw).ok())
        .or_else(|| {
            // The soonest semester whose registration is not over, else the latest.
            let now = clock::now();
            semesters
                .iter()
                .filter(|sem| sem.registration_closes_at >= now)
                .min_by_key(|sem| sem.starts_on)
                .or(semesters.first())
                .map(|sem| sem.id)
        });
    let age = query
        .age
        .as_deref()
        .and_then(|a| a.trim().parse::<i32>().ok());
    let weekday = query
        .weekday
        .as_deref()
        .and_then(|w| Weekday::parse(w).ok());
    let (children, enrollments) = match ctx.caller.family_id {
        Some(family_id) => (
            s.children.of_family(ctx, family_id).await?,
            s.enrollments.of_family(ctx, family_id).await?,
        ),
        None => (Vec::new(), Vec::new()),
    };
    let mut classes = Vec::new();
    let mut registration_state = "closed";
    if let Some(semester_id) = chosen {
        let (semester, rows) = s.classes.catalog(ctx, semester_id).await?;
        registration_state = super::account::registration(&semester);
        for class in rows {
            let meetings = class.meetings();
            if weekday.is_some_and(|day| !meetings.iter().any(|m| m.weekday == day)) {
                continue;
            }
            if age.is_some_and(|a| {
                class.min_age.is_some_and(|lo| a < lo) || class.max_age.is_some_and(|hi| a > hi)
            }) {
                continue;
            }
            let placed: Vec<Placed> = enrollments
                .iter()
                .filter(|e: &&FamilyEnrollment| e.class_id == class.id)
                .map(|e| Placed {
                    child_id: e.child_id,
                    name: e.first_name.clone(),
                    state: match (e.state, e.position) {
                        (EnrollmentState::Waitlisted, Some(p)) => format!("waitlist, number {p}"),
                        _ => "enrolled".into(),
                    },
                })
                .collect();
            let free = children
                .iter()
                .filter(|c| !placed.iter().any(|p| p.child_id == c.id))
                .map(|c| Choice {
                    value: c.id.to_string(),
                    label: c.first_name.clone(),
                })
                .collect();
            classes.push(CatalogClass {
                id: class.id,
                when: when(&meetings),
                ages: match (class.min_age, class.max_age) {
                    (Some(lo), Some(hi)) => format!("ages {lo}–{hi}"),
                    (Some(lo), None) => format!("ages {lo} and up"),
                    (None, Some(hi)) => format!("ages up to {hi}"),
                    (None, None) => "all ages".into(),
                },
                fee: if class.fee_cents == 0 {
                    "free".into()
                } else {
                    money(class.fee_cents, &class.currency)
                },
                seats: seats_text(class.seats_left(), class.waitlist_length),
                full: class.seats_left() == 0,
                title: class.title.clone(),
                description: class.description.clone(),
                placed,
                free,
            });
        }
    }
    let mut weekdays = vec![Choice {
        value: String::new(),
        label: "Any day".into(),
    }];
    weekdays.extend(Weekday::ALL.into_iter().map(|d| Choice {
        value: d.as_str().to_owned(),
        label: d.as_str().to_owned(),
    }));
    let (status, problem) = match problem {
        Some((status, message)) => (status, Some(message)),
        None => (StatusCode::OK, None),
    };
    Ok(page(
        status,
        &Catalog {
            layout: me.layout("Classes").with_notice(query.done.as_deref()),
            semesters: semesters
                .iter()
                .map(|sem| Choice {
                    value: sem.id.to_string(),
                    label: sem.name.clone(),
                })
                .collect(),
            semester: chosen.map(|c| c.to_string()).unwrap_or_default(),
            registration: registration_state,
            age: age.map(|a| a.to_string()).unwrap_or_default(),
            weekday: weekday.map(|w| w.as_str().to_owned()).unwrap_or_default(),
            weekdays,
            classes,
            problem,
            no_children: children.is_empty() && !me.coordinator(),
        },
    ))
}

fn seats_text(left: i32, waiting: i32) -> String {
    match (left, waiting) {
        (0, 0) => "Full: the next child joins the waitlist".into(),
        (0, w) => format!("Full: {w} waiting"),
        (1, _) => "1 seat left".into(),
        (n, _) => format!("{n} seats left"),
    }
}

#[derive(Template)]
#[template(path = "seats.html")]
struct Seats {
    id: Uuid,
    seats: String,
}

/// Live seats left for htmx (`hx-trigger="every 10s"`).
pub async fn seats(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
) -> PageResult {
    let class = state
        .services
        .classes
        .get(&me.ctx, id(&raw, "class")?)
        .await?;
    Ok(ok(&Seats {
        id: class.id,
        seats: seats_text(class.seats_left(), class.waitlist_length),
    }))
}

#[derive(Deserialize)]
pub struct ChildChoice {
    #[serde(default)]
    child_id: String,
    #[serde(default)]
    semester: String,
}

pub async fn enroll(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
    PostedForm(choice): PostedForm<ChildChoice>,
) -> PageResult {
    let class_id = id(&raw, "class")?;
    let back = |done: &str| format!("/catalog?semester={}&done={done}", encode(&choice.semester));
    let Ok(child_id) = Uuid::parse_str(&choice.child_id) else {
        return catalog_page(
            &state,
            &me,
            query_for(&choice),
            Some((
                StatusCode::UNPROCESSABLE_ENTITY,
                "Choose which child to enroll.".into(),
            )),
        )
        .await;
    };
    match state
        .services
        .enrollments
        .enroll(&me.ctx, class_id, child_id)
        .await
    {
        Ok(placed) if !placed.changed => Ok(redirect(&back("already"))),
        Ok(placed) if placed.enrollment.state == EnrollmentState::Waitlisted => {
            Ok(redirect(&back("waitlisted")))
        }
        Ok(_) => Ok(redirect(&back("enrolled"))),
        Err(coop_services::Error::Conflict { message, .. }) => {
            catalog_page(
                &state,
                &me,
                query_for(&choice),
                Some((StatusCode::CONFLICT, message)),
            )
            .await
        }
        Err(coop_services::Error::Unprocessable { message, .. }) => {
            catalog_page(
                &state,
                &me,
                query_for(&choice),
                Some((
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("Not this class: {message}."),
                )),
            )
            .await
        }
        Err(err) => Err(err.into()),
    }
}

fn query_for(choice: &ChildChoice) -> CatalogQuery {
    CatalogQuery {
        semester: Some(choice.semester.clone()).filter(|s| !s.is_empty()),
        ..Default::default()
    }
}

pub async fn drop_class(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
    PostedForm(choice): PostedForm<ChildChoice>,
) -> PageResult {
    let class_id = id(&raw, "class")?;
    let child_id = id(&choice.child_id, "child")?;
    state
        .services
        .enrollments
        .drop_child(&me.ctx, class_id, child_id)
        .await?;
    Ok(redirect(&format!(
        "/catalog?semester={}&done=dropped",
        encode(&choice.semester)
    )))
}

// ---------------------------------------------------------------- schedule

pub struct Day {
    pub name: String,
    pub lessons: Vec<String>,
}

#[derive(Template)]
#[template(path = "schedule.html")]
struct Schedule {
    layout: Layout,
    days: Vec<Day>,
    calendar: String,
    /// A subscription address made just now (shown once: only its hash is kept).
    subscription: Option<String>,
}

pub async fn schedule(State(state): State<AppState>, me: SignedInPage) -> PageResult {
    schedule_with(&state, &me, None).await
}

/// "Subscribe": a new secret address for calendar apps, shown once.
pub async fn new_feed(
    State(state): State<AppState>,
    me: SignedInPage,
    headers: axum::http::HeaderMap,
) -> PageResult {
    let family_id = own_family(&me)?;
    let feed = state.services.calendar.new_feed(&me.ctx, family_id).await?;
    let url =
        crate::api::calendar::absolute(&state, &headers, &crate::api::calendar::feed_path(&feed));
    schedule_with(&state, &me, Some(url)).await
}

async fn schedule_with(
    state: &AppState,
    me: &SignedInPage,
    subscription: Option<String>,
) -> PageResult {
    let family_id = own_family(me)?;
    let classes = state
        .services
        .enrollments
        .schedule(&me.ctx, family_id)
        .await?;
    let today = clock::now().date();
    let mut days: Vec<Day> = Weekday::ALL
        .into_iter()
        .map(|d| Day {
            name: capitalized(d.as_str()),
            lessons: Vec::new(),
        })
        .collect();
    let mut lessons: Vec<(usize, time::Time, String)> = Vec::new();
    for class in classes.iter().filter(|c| c.ends_on >= today) {
        let meetings: Vec<coop_domain::courses::Meeting> =
            serde_json::from_str(&class.meetings).unwrap_or_default();
        for m in meetings {
            let room = m
                .room
                .as_deref()
                .map(|r| format!(", {r}"))
                .unwrap_or_default();
            lessons.push((
                m.weekday as usize,
                m.starts_at,
                format!(
                    "{:02}:{:02}–{:02}:{:02} {} — {}{room}",
                    m.starts_at.hour(),
                    m.starts_at.minute(),
                    m.ends_at().hour(),
                    m.ends_at().minute(),
                    class.title,
                    class.first_name
                ),
            ));
        }
    }
    lessons.sort();
    for (day, _, text) in lessons {
        days[day].lessons.push(text);
    }
    Ok(ok(&Schedule {
        layout: me.layout("Schedule"),
        days,
        calendar: format!("/api/v1/families/{family_id}/calendar.ics"),
        subscription,
    }))
}

// --------------------------------------------------------------------- pay

pub struct DueLine {
    pub currency: String,
    pub amount: String,
}

#[derive(Template)]
#[template(path = "pay.html")]
struct Pay {
    layout: Layout,
    dues: Vec<DueLine>,
}

pub async fn pay_page(State(state): State<AppState>, me: SignedInPage) -> PageResult {
    let family_id = own_family(&me)?;
    let (balances, _) = state
        .services
        .enrollments
        .balance(&me.ctx, family_id)
        .await?;
    Ok(ok(&Pay {
        layout: me.layout("Pay"),
        dues: balances
            .iter()
            .filter(|b| b.due_cents() > 0)
            .map(|b| DueLine {
                currency: b.currency.clone(),
                amount: money(b.due_cents(), &b.currency),
            })
            .collect(),
    }))
}

#[derive(Deserialize)]
pub struct PayFields {
    #[serde(default)]
    currency: String,
}

pub async fn pay(
    State(state): State<AppState>,
    me: SignedInPage,
    PostedForm(fields): PostedForm<PayFields>,
) -> PageResult {
    let family_id = own_family(&me)?;
    let (balances, _) = state
        .services
        .enrollments
        .balance(&me.ctx, family_id)
        .await?;
    let Some(due) = balances
        .iter()
        .find(|b| b.currency == fields.currency && b.due_cents() > 0)
        .and_then(|b| due_payment(b.due_cents(), &b.currency))
    else {
        return Ok(redirect("/home"));
    };
    match state
        .services
        .payments
        .pay_balance(&me.ctx, family_id, &due)
        .await
    {
        Ok(_) => Ok(redirect("/home?done=paid")),
        Err(coop_services::Error::Unprocessable { .. }) => Err(PageError::Conflict(
            "Payments are not set up for this co-op yet; ask your coordinator how to pay.".into(),
        )),
        Err(err) => Err(err.into()),
    }
}
