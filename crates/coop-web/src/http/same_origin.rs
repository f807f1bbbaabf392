//! CSRF defence for cookie-authenticated writes: a write that carries a
//! session cookie and says, through the browser, that it comes from another
//! site is refused with 403 before anything runs.
//!
//! Browsers tell: `Sec-Fetch-Site` (every current browser) says whether the
//! request was made by a page of this origin; `Origin` (sent by every browser
//! on a POST, PUT or DELETE) names the page's origin, which must be this
//! host. Clients that send neither (curl, SDKs, the benchmark tools) are not
//! browsers, cannot be tricked into sending a victim's cookie, and pass.
//! Layered on the API; the web app's forms carry a CSRF token instead
//! (`pages::forms`), refused with a page rather than JSON.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub async fn same_origin_writes(req: Request, next: Next) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if write && super::session_token(req.headers()).is_some() && cross_site(req.headers()) {
        return ApiError::Forbidden(
            "this request came from another site's page, so it was refused; \
             use Coop's own pages, or call the API without a browser"
                .into(),
        )
        .into_response();
    }
    next.run(req).await
}

/// Whether the browser says the request comes from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        // `none`: typed into the address bar or a bookmark, a person's own act.
        return !matches!(site, "same-origin" | "none");
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
            origin_host(origin) != host
        }
        None => false,
    }
}

/// The `host[:port]` of an origin (`https://coop.example.org:8443`), or
/// nothing for an opaque one (`null`).
fn origin_host(origin: &str) -> Option<&str> {
    let (_, rest) = origin.split_once("://")?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn browsers_say_where_a_request_comes_from() {
        let host = ("host", "coop.example.org");
        assert!(!cross_site(&headers(&[host])), "no browser headers: curl");
        assert!(!cross_site(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(!cross_site(&headers(&[host, ("sec-fetch-site", "none")])));
        assert!(cross_site(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(cross_site(&headers(&[
            host,
            ("sec-fetch-site", "same-site")
        ])));
        assert!(!cross_site(&headers(&[
            host,
            ("origin", "https://coop.example.org")
        ])));
        assert!(cross_site(&headers(&[
            host,
            ("origin", "https://evil.example")
        ])));
        assert!(cross_site(&headers(&[host, ("origin", "null")])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9999")
        ])));
    }
}
