//! Every signed-in person's pages: home (the coordinator's dashboard or the
//! family's overview), profile, announcements.

use askama::Template;
use axum::extract::{Path, Query, State};
use coop_domain::clock;
use coop_domain::courses::{self, EnrollmentState, Meeting};
use coop_mechanisms::store::jobs::JobState;
use coop_services::announcements::Announcement;
use coop_services::enrollments::FamilyEnrollment;
use serde::Deserialize;
use time::Date;
use uuid::Uuid;

use super::errors::PageResult;
use super::layout::{Layout, SignedInPage};
use super::{PageError, ok};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Done {
    pub done: Option<String>,
}

/// Money for people: `45.00 USD`.
pub fn money(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "−" } else { "" };
    let cents = cents.abs();
    format!(
        "{sign}{}.{:02} {}",
        cents / 100,
        cents % 100,
        currency.to_uppercase()
    )
}

pub struct SemesterLine {
    pub id: Uuid,
    pub name: String,
    pub dates: String,
    pub registration: &'static str,
}

pub struct DueLine {
    pub family_id: Uuid,
    pub family_name: String,
    pub due: String,
}

pub struct WaitLine {
    pub class_id: Uuid,
    pub title: String,
    pub waiting: i32,
    pub seats: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    layout: Layout,
    families: i64,
    semesters: Vec<SemesterLine>,
    waitlists: Vec<WaitLine>,
    dues: Vec<DueLine>,
    dead_jobs: usize,
    /// The founder has not confirmed their email: the co-op's emails wait.
    unconfirmed: bool,
}

pub struct ChildLine {
    pub name: String,
    pub classes: Vec<String>,
}

pub struct Upcoming {
    pub day: String,
    pub what: String,
}

#[derive(Template)]
#[template(path = "family_home.html")]
struct FamilyHome {
    layout: Layout,
    family_id: Uuid,
    children: Vec<ChildLine>,
    upcoming: Vec<Upcoming>,
    dues: Vec<String>,
    owes: bool,
}

pub fn registration(semester: &coop_services::semesters::Semester) -> &'static str {
    let now = clock::now();
    if now < semester.registration_opens_at {
        "opens later"
    } else if now <= semester.registration_closes_at {
        "open"
    } else {
        "closed"
    }
}

pub async fn home(
    State(state): State<AppState>,
    me: SignedInPage,
    Query(q): Query<Done>,
) -> PageResult {
    let s = &state.services;
    let ctx = &me.ctx;
    if me.coordinator() {
        let semesters = s.semesters.list(ctx).await?;
        let mut waitlists = Vec::new();
        if let Some(current) = semesters.first() {
            let (_, classes) = s.classes.catalog(ctx, current.id).await?;
            for class in classes.into_iter().filter(|c| c.waitlist_length > 0) {
                waitlists.push(WaitLine {
                    class_id: class.id,
                    seats: format!("{} of {} seats taken", class.seats_taken, class.capacity),
                    waiting: class.waitlist_length,
                    title: class.title.clone(),
                });
            }
        }
        let dues = s
            .enrollments
            .dues(ctx, 20)
            .await?
            .into_iter()
            .map(|d| DueLine {
                family_id: d.family_id,
                family_name: d.family_name,
                due: money(d.due_cents, &d.currency),
            })
            .collect();
        let dead_jobs = s
            .queue
            .list(ctx, Some(JobState::Dead), None, 100)
            .await?
            .len();
        return Ok(ok(&Dashboard {
            layout: me.layout("Dashboard").with_notice(q.done.as_deref()),
            families: s.families.count(ctx).await?,
            semesters: semesters
                .iter()
                .take(5)
                .map(|sem| SemesterLine {
                    id: sem.id,
                    name: sem.name.clone(),
                    dates: format!("{} to {}", sem.starts_on, sem.ends_on),
                    registration: registration(sem),
                })
                .collect(),
            waitlists,
            dues,
            dead_jobs,
            unconfirmed: !s.accounts.is_verified(ctx.caller.coop_id).await?,
        }));
    }
    let Some(family_id) = ctx.caller.family_id else {
        return Err(PageError::Forbidden(
            "this account belongs to no family".into(),
        ));
    };
    let children = s.children.of_family(ctx, family_id).await?;
    let enrollments = s.enrollments.of_family(ctx, family_id).await?;
    let schedule = s.enrollments.schedule(ctx, family_id).await?;
    let (balances, _) = s.enrollments.balance(ctx, family_id).await?;
    let today = clock::now().date();
    let upcoming = next_meetings(&schedule, today, today + time::Duration::days(14));
    let dues: Vec<String> = balances
        .iter()
        .filter(|b| b.due_cents() > 0)
        .map(|b| money(b.due_cents(), &b.currency))
        .collect();
    Ok(ok(&FamilyHome {
        layout: me.layout("Home").with_notice(q.done.as_deref()),
        family_id,
        children: children
            .iter()
            .map(|child| ChildLine {
                name: child.first_name.clone(),
                classes: classes_of(&enrollments, child.id),
            })
            .collect(),
        upcoming,
        owes: !dues.is_empty(),
        dues,
    }))
}

fn classes_of(enrollments: &[FamilyEnrollment], child: Uuid) -> Vec<String> {
    enrollments
        .iter()
        .filter(|e| e.child_id == child)
        .map(|e| match (e.state, e.position) {
            (EnrollmentState::Waitlisted, Some(p)) => {
                format!("{} (waitlist, number {p})", e.class_title)
            }
            _ => e.class_title.clone(),
        })
        .collect()
}

/// Every meeting of the children's classes between two days, in order.
pub fn next_meetings(
    schedule: &[coop_mechanisms::store::enrollments::ScheduledClass],
    from: Date,
    until: Date,
) -> Vec<Upcoming> {
    let mut lines: Vec<(Date, time::Time, String)> = Vec::new();
    for class in schedule {
        let holidays: Vec<Date> = serde_json::from_str::<Vec<String>>(&class.holidays)
            .unwrap_or_default()
            .iter()
            .filter_map(|d| coop_domain::parse_date(d).ok())
            .collect();
        let meetings: Vec<Meeting> = serde_json::from_str(&class.meetings).unwrap_or_default();
        for meeting in meetings {
            if let Some(r) =
                courses::recurrence(&meeting, class.starts_on, class.ends_on, &holidays)
            {
                for day in r.days_between(from, until) {
                    let room = meeting
                        .room
                        .as_deref()
                        .map(|r| format!(", {r}"))
                        .unwrap_or_default();
                    lines.push((
                        day,
                        meeting.starts_at,
                        format!(
                            "{:02}:{:02} {} — {}{room}",
                            meeting.starts_at.hour(),
                            meeting.starts_at.minute(),
                            class.title,
                            class.first_name
                        ),
                    ));
                }
            }
        }
    }
    lines.sort();
    lines
        .into_iter()
        .map(|(day, _, what)| Upcoming {
            day: format!("{} {}", day.weekday(), day),
            what,
        })
        .collect()
}

pub async fn profile(me: SignedInPage, Query(q): Query<Done>) -> PageResult {
    Ok(ok(&super::password::Profile {
        layout: me.layout("Profile").with_notice(q.done.as_deref()),
        email: me.ctx.caller.email.clone(),
        role: me.ctx.caller.role.as_str(),
        form: super::forms::Form::default(),
        email_form: super::forms::Form::default(),
    }))
}

pub struct AnnouncementLine {
    pub id: Uuid,
    pub subject: String,
    pub when: String,
    pub to: &'static str,
    pub delivery: Option<String>,
}

fn line(a: &Announcement, coordinator: bool) -> AnnouncementLine {
    AnnouncementLine {
        id: a.id,
        subject: a.subject.clone(),
        when: a.created_at.date().to_string(),
        to: if a.class_id.is_some() {
            "one class"
        } else {
            "the whole co-op"
        },
        delivery: coordinator.then(|| {
            let found = a
                .recipients
                .map_or(a.sent + a.pending + a.failed, i64::from);
            format!(
                "{} of {found} sent{}{}",
                a.sent,
                if a.failed > 0 {
                    format!(", {} failed", a.failed)
                } else {
                    String::new()
                },
                if a.recipients.is_none() {
                    " (still finding recipients)"
                } else {
                    ""
                }
            )
        }),
    }
}

#[derive(Template)]
#[template(path = "announcements.html")]
struct Announcements {
    layout: Layout,
    coordinator: bool,
    items: Vec<AnnouncementLine>,
}

pub async fn announcements(
    State(state): State<AppState>,
    me: SignedInPage,
    Query(q): Query<Done>,
) -> PageResult {
    let coordinator = me.coordinator();
    let items = state.services.announcements.list(&me.ctx).await?;
    Ok(ok(&Announcements {
        layout: me.layout("Announcements").with_notice(q.done.as_deref()),
        coordinator,
        items: items.iter().map(|a| line(a, coordinator)).collect(),
    }))
}

#[derive(Template)]
#[template(path = "announcement.html")]
struct AnnouncementPage {
    layout: Layout,
    item: AnnouncementLine,
    paragraphs: Vec<String>,
}

pub async fn announcement(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(id): Path<String>,
    Query(q): Query<Done>,
) -> PageResult {
    let id =
        Uuid::parse_str(&id).map_err(|_| PageError::NotFound("no such announcement".into()))?;
    let a = state.services.announcements.get(&me.ctx, id).await?;
    let coordinator = me.coordinator();
    Ok(ok(&AnnouncementPage {
        layout: me.layout(a.subject.clone()).with_notice(q.done.as_deref()),
        paragraphs: a.body.split("\n\n").map(str::to_owned).collect(),
        item: line(&a, coordinator),
    }))
}
