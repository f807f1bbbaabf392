//! Reading JSON request fields the way the domain parses them: numbers arrive
//! as any JSON value so that a wrong type is a field error (422 naming the
//! field), not a body-shape error.

use coop_domain::courses::Number;

/// `None` when absent or null.
pub fn number(value: &Option<serde_json::Value>) -> Option<Number> {
    match value {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(match value.as_i64() {
            Some(n) => Number::Whole(n),
            None => Number::NotWhole,
        }),
    }
}

/// Ids in paths that are not UUIDs cannot name anything: the resource's 404.
pub fn path_id(
    raw: &str,
    not_found: impl FnOnce() -> crate::error::ApiError,
) -> Result<uuid::Uuid, crate::error::ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| not_found())
}
