//! A class's page (its roster for its teacher and the coordinators), and the
//! classes a parent teaches.

use askama::Template;
use axum::extract::{Path, Query, State};
use coop_domain::courses::EnrollmentState;
use uuid::Uuid;

use super::account::{Done, money};
use super::coordinator::when;
use super::errors::PageResult;
use super::layout::{Layout, SignedInPage};
use super::{PageError, ok};
use crate::state::AppState;

pub struct RosterLine {
    pub position: String,
    pub child: String,
    pub family: String,
    pub email: String,
}

#[derive(Template)]
#[template(path = "class.html")]
struct ClassPage {
    layout: Layout,
    id: Uuid,
    semester_id: Uuid,
    title: String,
    description: String,
    when: String,
    fee: String,
    seats: String,
    coordinator: bool,
    roster: Option<(Vec<RosterLine>, Vec<RosterLine>)>,
}

pub async fn class(
    State(state): State<AppState>,
    me: SignedInPage,
    Path(raw): Path<String>,
    Query(q): Query<Done>,
) -> PageResult {
    let class_id =
        Uuid::parse_str(&raw).map_err(|_| PageError::NotFound("there is no such class".into()))?;
    let class = state.services.classes.get(&me.ctx, class_id).await?;
    // Only the class's teacher and the coordinators see who is in it.
    let roster = match state.services.classes.roster(&me.ctx, class_id).await {
        Ok((_, lines)) => {
            let (mut enrolled, mut waiting) = (Vec::new(), Vec::new());
            for line in lines {
                let entry = RosterLine {
                    position: String::new(),
                    child: line.first_name,
                    family: line.family_name,
                    email: line.family_email,
                };
                match line.state {
                    EnrollmentState::Waitlisted => waiting.push(RosterLine {
                        position: (waiting.len() + 1).to_string(),
                        ..entry
                    }),
                    _ => enrolled.push(entry),
                }
            }
            Some((enrolled, waiting))
        }
        Err(coop_services::Error::Forbidden(_)) => None,
        Err(err) => return Err(err.into()),
    };
    Ok(ok(&ClassPage {
        layout: me
            .layout(class.title.clone())
            .with_notice(q.done.as_deref()),
        id: class.id,
        semester_id: class.semester_id,
        when: when(&class.meetings()),
        fee: if class.fee_cents == 0 {
            "free".into()
        } else {
            money(class.fee_cents, &class.currency)
        },
        seats: format!(
            "{} of {} seats taken, {} waiting",
            class.seats_taken, class.capacity, class.waitlist_length
        ),
        coordinator: me.coordinator(),
        title: class.title,
        description: class.description,
        roster,
    }))
}

pub struct Taught {
    pub id: Uuid,
    pub title: String,
    pub when: String,
}

#[derive(Template)]
#[template(path = "teaching.html")]
struct Teaching {
    layout: Layout,
    classes: Vec<Taught>,
}

pub async fn teaching(State(state): State<AppState>, me: SignedInPage) -> PageResult {
    let classes = state.services.classes.taught(&me.ctx).await?;
    Ok(ok(&Teaching {
        layout: me.layout("Teaching"),
        classes: classes
            .iter()
            .map(|c| Taught {
                id: c.id,
                title: c.title.clone(),
                when: when(&c.meetings()),
            })
            .collect(),
    }))
}
