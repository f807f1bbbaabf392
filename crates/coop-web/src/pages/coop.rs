//! The co-op's own page, for coordinators: its data as an export (ask for
//! one, see its state, download it) and its deletion (schedule it with the
//! password, see the date, cancel). Forms work without JavaScript; the
//! download link is the API's, which the session cookie signs in to.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use coop_domain::{FieldErrors, clock};
use serde::Deserialize;

use super::account::Done;
use super::errors::PageResult;
use super::forms::{Form, PostedForm};
use super::layout::SignedInPage;
use super::{PageError, ok, page, redirect};
use crate::state::AppState;

pub struct ExportLine {
    pub asked: String,
    pub state: &'static str,
    pub link: Option<String>,
    pub until: String,
}

#[derive(Template)]
#[template(path = "coop.html")]
struct CoopPage {
    layout: super::layout::Layout,
    exports: Vec<ExportLine>,
    export_days: u64,
    deletes_at: Option<String>,
    cancellable: bool,
    grace_days: u64,
    form: Form,
}

fn day_and_time(ms: i64) -> String {
    let at = clock::from_unix_ms(ms);
    format!("{} {:02}:{:02}", at.date(), at.hour(), at.minute())
}

async fn coop_page(
    state: &AppState,
    me: &SignedInPage,
    form: Form,
    done: Option<&str>,
) -> Result<CoopPage, PageError> {
    let s = &state.services;
    // Coordinators only: the exports list answers Forbidden to anyone else.
    let exports = s
        .exports
        .list(&me.ctx)
        .await?
        .into_iter()
        .map(|e| ExportLine {
            asked: day_and_time(e.created_at),
            state: match e.state.as_str() {
                "ready" => "ready",
                "expired" => "expired",
                "failed" => "failed: ask for a new one",
                _ => "being built",
            },
            link: (e.state == "ready").then(|| format!("/api/v1/exports/{}/archive", e.id)),
            until: e.expires_at.map(day_and_time).unwrap_or_default(),
        })
        .collect();
    let deletion = match s.deletion.get(&me.ctx).await {
        Ok(deletion) => Some(deletion),
        Err(coop_services::Error::NotFound(_)) => None,
        Err(err) => return Err(err.into()),
    };
    Ok(CoopPage {
        layout: me.layout("Your co-op").with_notice(done),
        exports,
        export_days: s.exports.ttl().as_secs().div_ceil(86_400),
        deletes_at: deletion.as_ref().map(|d| day_and_time(d.deletes_at)),
        cancellable: deletion.as_ref().is_some_and(|d| d.started_at.is_none()),
        grace_days: s.deletion.grace().as_secs().div_ceil(86_400),
        form,
    })
}

pub async fn show(
    State(state): State<AppState>,
    me: SignedInPage,
    Query(q): Query<Done>,
) -> PageResult {
    Ok(ok(&coop_page(
        &state,
        &me,
        Form::default(),
        q.done.as_deref(),
    )
    .await?))
}

pub async fn export(State(state): State<AppState>, me: SignedInPage) -> PageResult {
    state.services.exports.request(&me.ctx).await?;
    Ok(redirect("/coop?done=export-asked"))
}

#[derive(Deserialize)]
pub struct DeletionForm {
    #[serde(default)]
    password: String,
}

pub async fn delete(
    State(state): State<AppState>,
    me: SignedInPage,
    PostedForm(form): PostedForm<DeletionForm>,
) -> PageResult {
    let again = |problem: &str| {
        let mut errors = FieldErrors::new();
        errors.insert("password".into(), problem.into());
        Form::default().failed(errors, "")
    };
    if form.password.is_empty() {
        let form = again("Type your password to confirm.");
        return Ok(page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &coop_page(&state, &me, form, None).await?,
        ));
    }
    match state
        .services
        .deletion
        .schedule(&me.ctx, form.password)
        .await
    {
        Ok(_) => Ok(redirect("/coop?done=deletion-scheduled")),
        Err(coop_services::Error::Invalid(_)) => {
            let form = again("This is not your password. Type it again.");
            Ok(page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &coop_page(&state, &me, form, None).await?,
            ))
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn cancel(State(state): State<AppState>, me: SignedInPage) -> PageResult {
    state.services.deletion.cancel(&me.ctx).await?;
    Ok(redirect("/coop?done=deletion-cancelled"))
}
