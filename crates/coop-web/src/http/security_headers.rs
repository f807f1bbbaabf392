//! Security headers on every response, whichever part of Coop answered.
//!
//! Pages set their own Content-Security-Policy (`pages::harden`), the one
//! the web app lives within. Everything else gets the strictest one there
//! is: a JSON answer, an iCalendar feed or a stylesheet never needs to run,
//! load or frame anything. HTML that set no policy (the API's documentation
//! page, which its vendored Swagger UI scripts) may not be framed at least.
//! `Strict-Transport-Security` goes out where cookies are `Secure`, that is
//! where TLS terminates in front of Coop.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

const STRICTEST_POLICY: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";
const NO_FRAMING_POLICY: &str = "frame-ancestors 'none'";
const ONE_YEAR_OF_HTTPS: &str = "max-age=31536000";

pub async fn add(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    harden(response.headers_mut(), state.http.secure_cookies());
    response
}

fn harden(headers: &mut HeaderMap, behind_tls: bool) {
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let policy = if html {
        NO_FRAMING_POLICY
    } else {
        STRICTEST_POLICY
    };
    let defaults = [
        (header::CONTENT_SECURITY_POLICY, policy),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if behind_tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(ONE_YEAR_OF_HTTPS),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_keeps_its_own_policy_and_json_gets_the_strictest() {
        let mut page = HeaderMap::new();
        page.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        page.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'"),
        );
        harden(&mut page, false);
        assert_eq!(page[header::CONTENT_SECURITY_POLICY], "default-src 'self'");
        assert!(!page.contains_key(header::STRICT_TRANSPORT_SECURITY));

        let mut json = HeaderMap::new();
        json.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        harden(&mut json, true);
        assert_eq!(json[header::CONTENT_SECURITY_POLICY], STRICTEST_POLICY);
        assert_eq!(json[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(json[header::STRICT_TRANSPORT_SECURITY], ONE_YEAR_OF_HTTPS);
    }
}
