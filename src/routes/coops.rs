use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Email, FieldCheck, Name, Password};
use crate::error::{ApiError, ErrorBody, FieldErrors};
use crate::http::idempotency;
use crate::http::json::ApiJson;
use crate::state::AppState;
use crate::store::idempotency::Claim;
use crate::store::{self, coops::NewCoop};

#[derive(Deserialize, ToSchema)]
pub struct CreateCoopRequest {
    /// The co-op's name, 1–200 characters.
    #[schema(example = "Riverside Homeschool Co-op")]
    pub name: Option<String>,
    pub coordinator: Option<CoordinatorInput>,
}

#[derive(Deserialize, ToSchema)]
pub struct CoordinatorInput {
    #[schema(example = "Ada Lovelace")]
    pub name: Option<String>,
    #[schema(example = "ada@example.org")]
    pub email: Option<String>,
    /// At least 10 characters.
    pub password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreateCoopResponse {
    pub coop_id: Uuid,
    pub coordinator_id: Uuid,
}

/// Create a co-op together with its first coordinator.
#[utoipa::path(post, path = "/api/v1/coops", tag = "coops",
    request_body = CreateCoopRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses(
        (status = 201, body = CreateCoopResponse),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 409, body = ErrorBody, description = "The coordinator's email is already registered"),
        (status = 422, body = ErrorBody, description = "Missing or invalid fields"),
    ))]
pub async fn create_coop(
    State(state): State<AppState>,
    claim: Option<Extension<Claim>>,
    ApiJson(body): ApiJson<CreateCoopRequest>,
) -> Result<(StatusCode, ApiJson<CreateCoopResponse>), ApiError> {
    let mut check = FieldCheck::default();
    let name = check.required("name", body.name.as_deref(), Name::parse);
    let (coordinator_name, email, password) = match &body.coordinator {
        None => {
            check.missing("coordinator");
            (None, None, None)
        }
        Some(c) => (
            check.required("coordinator.name", c.name.as_deref(), Name::parse),
            check.required("coordinator.email", c.email.as_deref(), Email::parse),
            check.required(
                "coordinator.password",
                c.password.as_deref(),
                Password::parse,
            ),
        ),
    };
    check.finish()?;
    let (Some(name), Some(coordinator_name), Some(email), Some(password)) =
        (name, coordinator_name, email, password)
    else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validated fields missing"
        )));
    };

    let claim = claim.map(|Extension(claim)| claim);
    if let Some([coop_id, coordinator_id]) = idempotency::committed(claim.as_ref())? {
        // An earlier attempt with this key created the co-op, then its
        // instance died before answering: answer for it.
        return Ok(created(coop_id, coordinator_id));
    }

    let password_hash = password.hash().await?;
    let Some(new) = store::coops::create_coop(
        &state.db,
        NewCoop {
            name: &name,
            coordinator_name: &coordinator_name,
            coordinator_email: &email,
            coordinator_password: &password_hash,
        },
        claim.as_ref(),
    )
    .await
    .map_err(|err| {
        if store::is_unique_violation(&err) {
            let mut fields = FieldErrors::new();
            fields.insert("coordinator.email".into(), "is already registered".into());
            ApiError::Conflict {
                code: "email_taken",
                message: "a user with this email already exists; log in instead".into(),
                fields: Some(fields),
            }
        } else {
            err.into()
        }
    })?
    else {
        return Err(idempotency::taken_over());
    };
    Ok(created(new.coop_id, new.coordinator_id))
}

fn created(coop_id: Uuid, coordinator_id: Uuid) -> (StatusCode, ApiJson<CreateCoopResponse>) {
    (
        StatusCode::CREATED,
        ApiJson(CreateCoopResponse {
            coop_id,
            coordinator_id,
        }),
    )
}
