//! What coordinators see of the job queue, and the one repair they can make:
//! retrying a dead job.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use coop_domain::{FieldCheck, clock};
use coop_mechanisms::store::jobs::{HELD_RUN_AT, JobRow, JobState};
use coop_services::jobs::Kind;
use coop_services::queue::MAX_LIST;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::http::auth::SignedIn;
use crate::http::json::ApiJson;
use crate::state::AppState;

const DEFAULT_LIMIT: u32 = 50;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    /// `ready`, `running`, `done` or `dead`.
    #[param(value_type = JobStateName, required = false)]
    pub state: Option<String>,
    /// `welcome_email`, `coordinator_notice`, `calendar_events` or `charge_payment`.
    #[param(value_type = String, required = false,
            pattern = "^(welcome_email|coordinator_notice|calendar_events|charge_payment)$")]
    pub kind: Option<String>,
    /// 1–500, default 50.
    #[param(value_type = u32, required = false, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStateName {
    Ready,
    Running,
    Done,
    Dead,
    /// Waits until the co-op's founder confirms their email.
    Held,
}

#[derive(Serialize, ToSchema)]
pub struct Job {
    pub job_id: Uuid,
    pub kind: String,
    #[schema(value_type = JobStateName)]
    pub state: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    /// When it runs next (ready) or last ran; null while held.
    #[serde(with = "clock::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub run_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// The W3C trace id of the request that queued the job (32 hex digits;
    /// the same id is in that request's `traceparent` answer and in the
    /// logs), for quoting in a support request; null when no request did.
    pub trace_id: Option<String>,
}

impl From<JobRow> for Job {
    fn from(row: JobRow) -> Self {
        let state = row.visible_state();
        Self {
            job_id: row.id,
            kind: row.kind,
            state,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            // A held job has no run time until its co-op is confirmed.
            run_at: (row.run_at != HELD_RUN_AT).then(|| clock::from_unix_ms(row.run_at)),
            last_error: row.last_error,
            created_at: clock::from_unix_ms(row.created_at),
            updated_at: clock::from_unix_ms(row.updated_at),
            trace_id: row.trace_id,
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
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    filter: Result<Query<JobFilter>, QueryRejection>,
) -> Result<ApiJson<JobList>, ApiError> {
    let Query(filter) =
        filter.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let mut check = FieldCheck::default();
    let job_state = filter.state.as_deref().and_then(|raw| {
        check.check(
            "state",
            JobState::parse(raw)
                .ok_or_else(|| "must be ready, held, running, done or dead".to_owned()),
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
    let limit = check.optional(
        "limit",
        filter.limit.as_deref(),
        || DEFAULT_LIMIT,
        |raw| {
            raw.parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIST).contains(n))
                .ok_or_else(|| format!("must be a whole number from 1 to {MAX_LIST}"))
        },
    );
    check.finish()?;
    let rows = state
        .services
        .queue
        .list(&ctx, job_state, kind, limit.unwrap_or(DEFAULT_LIMIT))
        .await?;
    Ok(ApiJson(JobList {
        items: rows.into_iter().map(Job::from).collect(),
    }))
}

/// Give a dead job a fresh set of attempts.
#[utoipa::path(post, path = "/api/v1/admin/jobs/{id}/retry", tag = "admin",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Job), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "The job is not dead")))]
pub async fn retry_job(
    State(state): State<AppState>,
    SignedIn(ctx): SignedIn,
    Path(id): Path<String>,
) -> Result<ApiJson<Job>, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::NotFound("no job with that id in your co-op".into()))?;
    let row = state.services.queue.retry(&ctx, id).await?;
    Ok(ApiJson(Job::from(row)))
}
