//! `ApiJson<T>`: axum's `Json` with our error shape. Malformed JSON is a 400,
//! well-formed JSON of the wrong shape a 422 that names the field, an oversized
//! body a 413.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::MAX_BODY_BYTES;
use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejection_to_error(rejection)),
        }
    }
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn rejection_to_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonSyntaxError(err) => ApiError::bad_request(
            "malformed_json",
            format!(
                "the request body is not valid JSON: {}",
                inner_message(&err.body_text())
            ),
        ),
        JsonRejection::JsonDataError(err) => ApiError::Unprocessable {
            code: "invalid_json_shape",
            message: format!(
                "the JSON does not have the expected shape: {}",
                inner_message(&err.body_text())
            ),
        },
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "send the body as JSON with `Content-Type: application/json`".into(),
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge(MAX_BODY_BYTES)
        }
        other => ApiError::bad_request("unreadable_body", other.body_text()),
    }
}

/// axum prefixes serde's message with a generic sentence; keep serde's part,
/// which names the field, the problem and its position.
fn inner_message(text: &str) -> String {
    text.split_once(": ")
        .map(|(_, rest)| rest.to_owned())
        .unwrap_or_else(|| text.to_owned())
}
