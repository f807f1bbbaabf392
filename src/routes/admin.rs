//! What coordinators see of the job queue, and the one repair they can make:
//! retrying a dead job.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::FieldCheck;
use crate::error::{ApiError, ErrorBody};
use crate::http::auth::Coordinator;
use crate::http::json::ApiJson;
use crate::jobs::Kind;
use crate::state::AppState;
use crate::store;
use crate::store::jobs::{JobRow, JobState, RetryOutcome};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

#[derive(Deserialize, IntoParams)]
pub struct JobFilter {
    /// `ready`, `running`, `done` or `dead`.
    pub state: Option<String>,
    /// `welcome_email`, `coordinator_notice`, `calendar_events` or `charge_payment`.
    pub kind: Option<String>,
    /// 1–500, default 50.
    pub limit: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Job {
    pub job_id: Uuid,
    pub kind: String,
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    /// When it runs next (ready) or last ran, Unix milliseconds.
    pub run_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<JobRow> for Job {
    fn from(row: JobRow) -> Self {
        Self {
            job_id: row.id,
            kind: row.kind,
            state: row.state,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            run_at: row.run_at,
            last_error: row.last_error,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct JobList {
    pub items: Vec<Job>,
}

/// The co-op's background jobs, newest first.
#[utoipa::path(get, path = "/api/v1/admin/jobs", tag = "admin",
    params(JobFilter),
    responses((status = 200, body = JobList), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    Coordinator(session): Coordinator,
    filter: Result<Query<JobFilter>, QueryRejection>,
) -> Result<ApiJson<JobList>, ApiError> {
    let Query(filter) =
        filter.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let mut check = FieldCheck::default();
    let job_state = filter.state.as_deref().and_then(|raw| {
        check.check(
            "state",
            JobState::parse(raw).ok_or_else(|| "must be ready, running, done or dead".to_owned()),
        )
    });
    let kind = filter.kind.as_deref().and_then(|raw| {
        check.check(
            "kind",
            Kind::parse(raw).ok_or_else(|| {
                "must be welcome_email, coordinator_notice, calendar_events or charge_payment"
                    .to_owned()
            }),
        )
    });
    let limit = match filter.limit.as_deref() {
        None => Some(DEFAULT_LIMIT),
        Some(raw) => check.check(
            "limit",
            raw.parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| format!("must be a whole number from 1 to {MAX_LIMIT}")),
        ),
    };
    check.finish()?;
    let rows = store::jobs::list(
        &state.db,
        session.coop_id,
        job_state,
        kind.map(Kind::as_str),
        limit.unwrap_or(DEFAULT_LIMIT),
    )
    .await?;
    Ok(ApiJson(JobList {
        items: rows.into_iter().map(Job::from).collect(),
    }))
}

/// Give a dead job a fresh set of attempts.
#[utoipa::path(post, path = "/api/v1/admin/jobs/{id}/retry", tag = "admin",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "The job is not dead")))]
pub async fn retry_job(
    State(state): State<AppState>,
    Coordinator(session): Coordinator,
    Path(id): Path<String>,
) -> Result<ApiJson<Job>, ApiError> {
    let not_found = || ApiError::NotFound("no job with that id in your co-op".into());
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    match store::jobs::retry_dead(&state.db, session.coop_id, id).await? {
        RetryOutcome::Retried(row) => Ok(ApiJson(Job::from(row))),
        RetryOutcome::NotDead(current) => Err(ApiError::Conflict {
            code: "job_not_dead",
            message: format!("only dead jobs can be retried; this one is {current}"),
            fields: None,
        }),
        RetryOutcome::NotFound => Err(not_found()),
    }
}
