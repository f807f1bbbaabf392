//! `/api/v1/coops`: founding a co-op.

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use coop_domain::{CoordinatorInput as RawCoordinator, NewCoop, NewCoopInput};
use coop_mechanisms::store::idempotency::Claim;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::http::json::ApiJson;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct CreateCoopRequest {
    /// The co-op's name, 1–200 characters (surrounding spaces are trimmed; not
    /// only spaces, no control characters).
    #[schema(
        value_type = String,
        required = true,
        example = "Riverside Homeschool Co-op",
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    )]
    pub name: Option<String>,
    #[schema(value_type = CoordinatorInput, required = true)]
    pub coordinator: Option<CoordinatorInput>,
}

#[derive(Deserialize, ToSchema)]
pub struct CoordinatorInput {
    #[schema(value_type = String, required = true, example = "Ada Lovelace",
             min_length = 1, max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub name: Option<String>,
    #[schema(value_type = String, required = true, example = "ada@example.org",
             format = Email, max_length = 254)]
    pub email: Option<String>,
    /// 10 to 1024 characters.
    #[schema(value_type = String, required = true, min_length = 10, max_length = 1024)]
    pub password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreateCoopResponse {
    /// What happens next, in words for a person.
    pub message: String,
}

/// Start a co-op together with its first coordinator.
///
/// The answer is the same whether or not the email already has an account,
/// so it tells nobody which addresses do. For a new address the co-op is
/// created and works at once (sign in with the password just chosen), and a
/// confirmation link goes to the address: until it is used
/// (`POST /api/v1/auth/verify-email`), the co-op's emails to anyone else
/// wait. An address that has an account gets an email saying so instead.
#[utoipa::path(post, path = "/api/v1/coops", tag = "coops",
    request_body = CreateCoopRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses(
        (status = 202, body = CreateCoopResponse, description = "Check the email: a confirmation link (or, for an address that has an account, a note saying so) is on its way"),
        (status = 400, body = ErrorBody, description = "Malformed JSON"),
        (status = 422, body = ErrorBody, description = "Missing or invalid fields"),
        (status = 503, body = ErrorBody, description = "Too many sign-ups at once; retry shortly"),
    ))]
pub async fn create_coop(
    State(state): State<AppState>,
    claim: Option<Extension<Claim>>,
    ApiJson(body): ApiJson<CreateCoopRequest>,
) -> Result<(StatusCode, ApiJson<CreateCoopResponse>), ApiError> {
    let new = NewCoop::parse(NewCoopInput {
        name: body.name.as_deref(),
        coordinator: body.coordinator.as_ref().map(|c| RawCoordinator {
            name: c.name.as_deref(),
            email: c.email.as_deref(),
            password: c.password.as_deref(),
        }),
    })?;
    let claim = claim.map(|Extension(claim)| claim);
    // Created or not (an address with an account), the answer is the same.
    let _created = state
        .services
        .accounts
        .create_coop(new, claim.as_ref())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(CreateCoopResponse {
            message: SIGN_UP_ANSWER.to_owned(),
        }),
    ))
}

/// The one answer to every sign-up.
pub const SIGN_UP_ANSWER: &str = "check your email: a link to confirm the address is on its way. \
     You can sign in with your email and password now; the co-op sends no email to \
     anyone else until the address is confirmed";
