//! The answers every operation shares, added to the OpenAPI document in one
//! place. They come from layers and extractors the handlers' annotations know
//! nothing of, so listing them per handler would drift; here each is tied to
//! the property of an operation that causes it:
//!
//! - **any operation**: 503 with `Retry-After` (`request_timeout` from
//!   `http::timeout`, `service_unavailable` when the database or Redis is out);
//! - **a JSON request body** (`http::json::ApiJson`): 400 `malformed_json` /
//!   `unreadable_body`, 413 `payload_too_large`, 415 `unsupported_media_type`,
//!   422 `invalid_json_shape` / `validation_failed`;
//! - **a session** (`http::auth::SignedIn`): 401 `unauthenticated`, and the
//!   `session` security requirement. Every operation needs one unless it is in
//!   [`PUBLIC`]; `tests/api/contract.rs` calls each operation without a cookie
//!   and checks that exactly the listed ones answer without a 401;
//!   and 403 for a platform operator, except on [`OPEN_TO_OPERATORS`];
//! - **a write** (`http::same_origin`): 403 for a cookie-authenticated
//!   write that a browser says comes from another site;
//! - **POST** (`http::idempotency`, which wraps every API POST): the
//!   `Idempotency-Key` header, 400 `invalid_idempotency_key`, 409
//!   `request_in_progress`, 422 `idempotency_key_reused`;
//! - **a path parameter**: 404 (an id that names nothing the caller may see);
//! - **a query parameter**: 400 `invalid_query` (a query string that cannot be
//!   read at all, e.g. a parameter given twice);
//! - **an `If-Match` header** (`api::families::if_match`, shared by every
//!   versioned resource): the forms it accepts as the header's schema, 400
//!   `invalid_if_match` and 412 `version_mismatch`.
//!
//! An operation's own annotation wins: a status it documents keeps its
//! description. 429 at the doors is added by `http::rate_limit::document`.

use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi, Ref, Required, ResponseBuilder, schema::ObjectBuilder,
    schema::Type,
};

use super::SESSION_COOKIE;

/// The security scheme's name in the document.
pub const SESSION_SCHEME: &str = "session";

/// Operations that answer without a session (method, path). Everything else
/// needs one.
/// The session routes a platform operator may use; every other one is a
/// co-op member's and refuses operators with 403 (`http::auth::SignedIn`).
pub const OPEN_TO_OPERATORS: &[(&str, &str)] = &[
    ("get", "/api/v1/auth/me"),
    ("get", "/api/v1/operations/samples"),
];

pub const PUBLIC: &[(&str, &str)] = &[
    ("post", "/api/v1/coops"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/logout"),
    ("post", "/api/v1/auth/accept-invite"),
    ("post", "/api/v1/auth/password-reset"),
    ("post", "/api/v1/auth/password-reset/confirm"),
    ("post", "/api/v1/auth/email/confirm"),
    ("post", "/api/v1/auth/verify-email"),
    ("get", "/calendar/{file}"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
];

pub fn document(openapi: &mut OpenApi) {
    openapi
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            SESSION_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "Set by log-in and by accepting an invite",
            ))),
        );
    for (path, item) in openapi.paths.paths.iter_mut() {
        for (method, operation) in [
            ("get", item.get.as_mut()),
            ("put", item.put.as_mut()),
            ("post", item.post.as_mut()),
            ("delete", item.delete.as_mut()),
            ("patch", item.patch.as_mut()),
        ] {
            if let Some(operation) = operation {
                let public = PUBLIC.contains(&(method, path.as_str()));
                add_shared(operation, method, path, public);
            }
        }
    }
}

fn add_shared(operation: &mut Operation, method: &str, path: &str, public: bool) {
    let mut add = |status: &str, description: &str| {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(description, status == "503").into());
    };
    add(
        "503",
        "A dependency is unavailable or the request ran past COOP_REQUEST_TIMEOUT \
         (`service_unavailable`, `request_timeout`); retry after `Retry-After` seconds",
    );
    let json_body = operation
        .request_body
        .as_ref()
        .is_some_and(|body| body.content.contains_key("application/json"));
    if json_body {
        add(
            "400",
            "The body is not JSON (`malformed_json`) or could not be read (`unreadable_body`)",
        );
        add(
            "413",
            "The body is larger than 64 KiB (`payload_too_large`)",
        );
        add(
            "415",
            "The body is not sent as `Content-Type: application/json` (`unsupported_media_type`)",
        );
        add(
            "422",
            "A field has the wrong JSON type (`invalid_json_shape`) or is missing or invalid \
             (`validation_failed`, see `fields`)",
        );
    }
    if !public {
        add("401", "No valid session: log in first (`unauthenticated`)");
        if !OPEN_TO_OPERATORS.contains(&(method, path)) {
            add(
                "403",
                "A platform operator's session: operators belong to no co-op and see none's \
                 data (`forbidden`)",
            );
        }
    }
    if matches!(method, "post" | "put" | "delete" | "patch") {
        add(
            "403",
            "Sent with a session cookie from another site's page (`forbidden`; \
             `Sec-Fetch-Site` or `Origin` says so): refused, see `http::same_origin`",
        );
    }
    if method == "post" {
        add(
            "400",
            "`Idempotency-Key` is not 1–255 visible ASCII characters (`invalid_idempotency_key`)",
        );
        add(
            "409",
            "A request with this `Idempotency-Key` is still running (`request_in_progress`); \
             retry after `Retry-After` seconds",
        );
        add(
            "422",
            "This `Idempotency-Key` was used for a different request (`idempotency_key_reused`)",
        );
    }
    if path.contains('{') {
        add("404", "Nothing with this id that you may see (`not_found`)");
    }
    let query = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Query);
    if query {
        add(
            "400",
            "The query string cannot be read, e.g. a parameter given twice (`invalid_query`)",
        );
    }
    let if_match = operation.parameters.iter().flatten().any(is_if_match);
    if if_match {
        add(
            "400",
            "`If-Match` is not a version such as `\"3\"` (`invalid_if_match`)",
        );
        add(
            "412",
            "Changed since the version in `If-Match` (`version_mismatch`)",
        );
    }

    if !public {
        operation
            .security
            .get_or_insert_with(Vec::new)
            .push(SecurityRequirement::new(
                SESSION_SCHEME,
                Vec::<String>::new(),
            ));
    }
    for parameter in operation.parameters.iter_mut().flatten() {
        if is_if_match(parameter) {
            parameter.schema = Some(if_match_schema().into());
        }
        if is_idempotency_key(parameter) {
            parameter.schema = Some(idempotency_key_schema().into());
        }
    }
    if method == "post" {
        let parameters = operation.parameters.get_or_insert_with(Vec::new);
        let documented = parameters.iter().any(is_idempotency_key);
        if !documented {
            parameters.push(idempotency_key());
        }
    }
}

fn is_if_match(parameter: &Parameter) -> bool {
    parameter.parameter_in == ParameterIn::Header && parameter.name.eq_ignore_ascii_case("if-match")
}

/// What `api::families::if_match` accepts: `*`, or a version as `3`, `"3"` or
/// `W/"3"` (quotes and the weak prefix are stripped, then a whole number).
fn if_match_schema() -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r#"^(\*|(W/)*"*[+-]?[0-9]{1,18}"*)$"#))
        .examples([serde_json::json!("\"3\"")])
        .build()
}

fn idempotency_key() -> Parameter {
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "A repeat with the same key and request gets the first answer back \
             (see the API's notes on which POSTs are safe to retry)",
        ))
        .schema(Some(idempotency_key_schema()))
        .build()
}

fn is_idempotency_key(parameter: &Parameter) -> bool {
    parameter.parameter_in == ParameterIn::Header
        && parameter.name.eq_ignore_ascii_case("idempotency-key")
}

/// What `http::idempotency::parse_key` accepts.
fn idempotency_key_schema() -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(255))
        .pattern(Some("^[!-~]+$"))
        .build()
}

fn error_response(description: &str, retry_after: bool) -> utoipa::openapi::Response {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if retry_after {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait"))
                .build(),
        );
    }
    response.build()
}
