//! The one error type every handler returns. It decides what a client may see:
//! client mistakes carry a code, a message and (for validation) the offending
//! fields; internal failures are logged once here and shown only as a generic 500;
//! dependency outages become 503 with `Retry-After` so clients and load balancers
//! back off instead of hammering a struggling database.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use coop_domain::{FieldErrors, Invalid};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("invalid fields")]
    Validation(FieldErrors),
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("authentication required")]
    Unauthorized,
    #[error("email or password is incorrect")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        fields: Option<FieldErrors>,
    },
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    /// A file or a quota's limit; the message has the numbers.
    #[error("{message}")]
    TooLarge { code: &'static str, message: String },
    /// A Range outside the document (`size` bytes).
    #[error("the range asked for is outside the document's {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("too many attempts; retry in {seconds} s")]
    TooManyRequests { seconds: u64 },
    #[error("{dependency} is unavailable")]
    Unavailable {
        dependency: &'static str,
        #[source]
        source: anyhow::Error,
    },
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (e.g. `validation_failed`).
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
    /// Per-field problems, present for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<FieldErrors>,
}

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: &str = "1";

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn field(name: &str, problem: impl Into<String>) -> Self {
        let mut fields = FieldErrors::new();
        fields.insert(name.to_owned(), problem.into());
        Self::Validation(fields)
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Validation(_) | Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Gone { .. } => StatusCode::GONE,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge(_) | Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::Conflict { code, .. }
            | Self::Gone { code, .. }
            | Self::TooLarge { code, .. } => code,
            Self::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            Self::Validation(_) => "validation_failed",
            Self::Unauthorized => "unauthenticated",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::PreconditionFailed(_) => "version_mismatch",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::Unavailable { .. } => "service_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::Validation(_) => "some fields are missing or invalid; see `fields`".into(),
            Self::Unauthorized => "log in first: this endpoint needs a valid session".into(),
            Self::Unavailable { dependency, .. } => {
                format!("{dependency} is unavailable right now; retry shortly")
            }
            Self::Internal(_) => "something went wrong on our side; it has been logged".into(),
            Self::TooManyRequests { seconds } => format!(
                "too many attempts from this address or for this account; \
                 wait {seconds} s (Retry-After) and try again"
            ),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(err) => tracing::error!(error = ?err, "internal error"),
            Self::Unavailable { dependency, source } => {
                tracing::warn!(dependency, error = %source, "dependency unavailable")
            }
            _ => {}
        }
        let fields = match &self {
            Self::Validation(fields) => Some(fields.clone()),
            Self::Conflict { fields, .. } => fields.clone(),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.public_message(),
                fields,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        if let Self::RangeNotSatisfiable { size } = self
            && let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        if let Self::TooManyRequests { seconds } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        Self::Validation(invalid.0)
    }
}

/// The services' answers, as the API shows them.
impl From<coop_services::Error> for ApiError {
    fn from(err: coop_services::Error) -> Self {
        use coop_services::Error as E;
        match err {
            E::Invalid(invalid) => Self::Validation(invalid.0),
            E::Unprocessable { code, message } => Self::Unprocessable { code, message },
            E::Unauthenticated => Self::Unauthorized,
            E::InvalidCredentials => Self::InvalidCredentials,
            E::Forbidden(message) => Self::Forbidden(message),
            E::NotFound(message) => Self::NotFound(message),
            E::Conflict {
                code,
                message,
                fields,
            } => Self::Conflict {
                code,
                message,
                fields,
            },
            E::Gone { code, message } => Self::Gone { code, message },
            E::TooLarge { code, message } => Self::TooLarge { code, message },
            E::VersionMismatch(message) => Self::PreconditionFailed(message),
            E::TakenOver => Self::Conflict {
                code: "request_in_progress",
                message: "this request took too long and another request with the same \
                          Idempotency-Key took over; retry shortly to get its response"
                    .into(),
                fields: None,
            },
            E::Unavailable { dependency, source } => Self::Unavailable { dependency, source },
            E::Internal(source) => Self::Internal(source),
        }
    }
}
