//! Static assets (the stylesheet, the icon) served the way an edge cache wants them:
//! content-hashed names under `Cache-Control: public, max-age=31536000, immutable`,
//! strong ETags answered with 304, and brotli and gzip variants chosen by the
//! client's `Accept-Encoding`. build.rs hashes and compresses the files in `assets/`
//! at build time and the bytes are compiled in: the embedded tier still runs from
//! the binary alone, and no request ever compresses anything.
//!
//! Why not a crate: memory-serve, the closest fit, makes its gzip variant at start-up
//! rather than at build time, serves files from disk in debug builds unless a
//! feature is set, and gives one ETag to all content codings of a file (a shared
//! cache then cannot tell them apart; RFC 9110 §8.8.3 wants one tag per
//! representation). tower-http's `ServeDir` has precompressed variants but reads
//! them from disk at run time; rust-embed and include_dir embed files but neither
//! hashes names nor keeps compressed variants; static-serve offers gzip and zstd
//! but no brotli. What remains is a small table (generated) and the one handler
//! below; hashing and compression are done by sha2, brotli and zopfli.
//!
//! What a name under `/static/` answers:
//! - `coop.3f2a9c1b7d0e.css`, the hashed name (hash = the first 12 hex digits of
//!   the SHA-256 of the content): cacheable by anyone for a year, `immutable`. A
//!   changed file gets a new name, so nothing ever needs purging. Pages link here
//!   through [`url`].
//! - `coop.css`, the logical name: the same bytes and the same ETags, with
//!   `Cache-Control: no-cache`, so a hand-typed or bookmarked link always works and
//!   costs a 304 once cached.
//! - `coop.<another hash>.css`, a name this build does not have but another version
//!   of it does: during a rolling restart a page from one version can ask an
//!   instance of the other for its stylesheet. It gets this build's file with
//!   `no-cache` instead of a 404, and since `no-cache` responses are revalidated
//!   (nginx does not store them at all), no cache keeps the wrong bytes under that
//!   name for a year.
//! - anything else: the API's JSON 404.

use axum::body::Body;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// One file from `assets/`, as build.rs prepared it.
pub struct Asset {
    /// The file's name in `assets/`, e.g. `coop.css`.
    pub name: &'static str,
    /// The name with the content hash, e.g. `coop.3f2a9c1b7d0e.css`.
    pub hashed_name: &'static str,
    pub content_type: &'static str,
    pub identity: Variant,
    /// Present only when the type compresses and the variant is smaller.
    pub br: Option<Variant>,
    pub gzip: Option<Variant>,
}

/// One representation of an asset: its bytes and its (quoted, strong) entity tag.
pub struct Variant {
    pub body: &'static [u8],
    pub etag: &'static str,
}

// `ASSETS`, `URLS` (logical name → URL of the hashed name) and `NAME_HASH_LEN`.
include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Every asset built into this binary.
pub fn all() -> &'static [Asset] {
    ASSETS
}

/// The URL of an asset's hashed name, e.g. `url("coop.css")` →
/// `/static/coop.3f2a9c1b7d0e.css`. Call it in a `const` so a name that is not in
/// `assets/` fails the build instead of a page.
pub const fn url(name: &str) -> &'static str {
    let mut i = 0;
    while i < URLS.len() {
        if const_str_eq(URLS[i].0, name) {
            return URLS[i].1;
        }
        i += 1;
    }
    panic!("no such file in assets/")
}

/// `html` with every quoted `"/static/<name>"` (a link to a logical name) pointing
/// at the hashed name instead: for pages kept as plain HTML files.
pub fn link_hashed(html: &str) -> String {
    URLS.iter().fold(html.to_owned(), |html, (name, url)| {
        html.replace(&format!("\"/static/{name}\""), &format!("\"{url}\""))
    })
}

const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");
const REVALIDATE: HeaderValue = HeaderValue::from_static("no-cache");

/// `GET`/`HEAD /static/{name}`.
pub async fn serve(name: Result<Path<String>, PathRejection>, request: HeaderMap) -> Response {
    let name = name.map(|Path(name)| name).unwrap_or_default();
    let Some((asset, cache_control)) = find(&name) else {
        return ApiError::NotFound(format!("no static asset named {name:?}")).into_response();
    };
    let accept = request
        .get(header::ACCEPT_ENCODING)
        .and_then(|value| value.to_str().ok());
    let (variant, coding) = match negotiate(accept, asset.br.is_some(), asset.gzip.is_some()) {
        Coding::Brotli => asset.br.as_ref().map(|br| (br, Coding::Brotli)),
        Coding::Gzip => asset.gzip.as_ref().map(|gzip| (gzip, Coding::Gzip)),
        Coding::Identity => None,
    }
    .unwrap_or((&asset.identity, Coding::Identity));

    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, cache_control);
    headers.insert(header::ETAG, HeaderValue::from_static(variant.etag));
    if asset.br.is_some() || asset.gzip.is_some() {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    // A 304 carries the fields a cache refreshes its copy with (RFC 9110 §15.4.5),
    // and no body.
    let status = if none_match(request.get(header::IF_NONE_MATCH), variant.etag) {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    metrics::counter!(
        "static_asset_responses_total",
        "coding" => coding.token(),
        "status" => status.as_str().to_owned(),
    )
    .increment(1);
    if status == StatusCode::NOT_MODIFIED {
        return (status, headers).into_response();
    }

    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if coding != Coding::Identity {
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.token()),
        );
    }
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(variant.body.len()),
    );
    let mut response = Response::new(Body::from(variant.body));
    *response.headers_mut() = headers;
    response
}

/// The asset a name under `/static/` refers to, and how long it may be cached.
fn find(name: &str) -> Option<(&'static Asset, HeaderValue)> {
    if let Some(asset) = ASSETS.iter().find(|asset| asset.hashed_name == name) {
        return Some((asset, IMMUTABLE));
    }
    if let Some(asset) = ASSETS.iter().find(|asset| asset.name == name) {
        return Some((asset, REVALIDATE));
    }
    // `stem.<hash>.ext` of a known `stem.ext`, hashed by another build.
    let (rest, extension) = name.rsplit_once('.')?;
    let (stem, hash) = rest.rsplit_once('.')?;
    let is_hash =
        hash.len() == NAME_HASH_LEN && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !is_hash {
        return None;
    }
    ASSETS
        .iter()
        .find(|asset| {
            asset
                .name
                .strip_suffix(extension)
                .and_then(|s| s.strip_suffix('.'))
                == Some(stem)
        })
        .map(|asset| (asset, REVALIDATE))
}

/// Whether `If-None-Match` names `etag` (or is `*`). RFC 9110 §13.1.2 asks for the
/// weak comparison here, so a tag a proxy marked `W/` still matches.
fn none_match(if_none_match: Option<&HeaderValue>, etag: &str) -> bool {
    let Some(value) = if_none_match.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// The content codings an asset can be sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Brotli,
    Gzip,
}

impl Coding {
    fn token(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// Picks the coding to send, following RFC 9110 §12.5.3:
/// - no `Accept-Encoding` at all: identity (the safe reading; every client that
///   wants compression says so);
/// - a coding is acceptable when listed with q > 0, or matched by `*` with q > 0
///   when not listed; `q=0` refuses it;
/// - the highest q wins; on a tie brotli beats gzip (smaller), and both beat
///   identity;
/// - identity ranks below every listed coding unless it is listed itself, and is
///   the fallback when nothing acceptable is available (a stylesheet the client
///   must decode plainly beats a 406).
///
/// Entries with a malformed q-value are ignored. Hand-written because no
/// well-kept crate exposes this negotiation on its own (tower-http keeps its
/// `Accept-Encoding` parser private); it is small and tested below.
pub fn negotiate(accept_encoding: Option<&str>, has_br: bool, has_gzip: bool) -> Coding {
    let Some(header) = accept_encoding else {
        return Coding::Identity;
    };
    let (mut br, mut gzip, mut identity, mut any) = (None, None, None, None);
    for entry in header.split(',') {
        let mut parts = entry.split(';');
        let token = parts.next().unwrap_or_default().trim();
        let mut q = Some(1000);
        for param in parts {
            if let Some((key, value)) = param.split_once('=')
                && key.trim().eq_ignore_ascii_case("q")
            {
                q = qvalue(value.trim());
            }
        }
        let Some(q) = q else { continue };
        let slot = if token.eq_ignore_ascii_case("br") {
            &mut br
        } else if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
            &mut gzip
        } else if token.eq_ignore_ascii_case("identity") {
            &mut identity
        } else if token == "*" {
            &mut any
        } else {
            continue;
        };
        slot.get_or_insert(q);
    }
    let acceptable = |listed: Option<u16>, available: bool| {
        if available {
            listed.or(any).unwrap_or(0)
        } else {
            0
        }
    };
    let br = acceptable(br, has_br);
    let gzip = acceptable(gzip, has_gzip);
    let (coding, q) = if br >= gzip {
        (Coding::Brotli, br)
    } else {
        (Coding::Gzip, gzip)
    };
    if q > 0 && identity.is_none_or(|identity| q >= identity) {
        coding
    } else {
        Coding::Identity
    }
}

/// A q-value in thousandths: `0`, `1`, `0.5`, `1.000`; at most three decimals
/// (RFC 9110 §12.4.2). `None` for anything else.
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, digit| n * 10 + u16::from(digit - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::{Brotli, Gzip, Identity};

    fn pick(header: &str) -> Coding {
        negotiate(Some(header), true, true)
    }

    #[test]
    fn no_header_means_identity() {
        assert_eq!(negotiate(None, true, true), Identity);
        assert_eq!(pick(""), Identity);
    }

    #[test]
    fn a_single_coding_is_used_when_offered() {
        assert_eq!(pick("br"), Brotli);
        assert_eq!(pick("gzip"), Gzip);
        assert_eq!(pick("x-gzip"), Gzip);
        assert_eq!(pick("BR"), Brotli);
        assert_eq!(pick("deflate"), Identity);
        assert_eq!(pick("identity"), Identity);
    }

    #[test]
    fn brotli_wins_ties_and_browsers_get_it() {
        assert_eq!(pick("gzip, br"), Brotli);
        assert_eq!(pick("gzip, deflate, br, zstd"), Brotli);
        assert_eq!(pick("br;q=0.8, gzip;q=0.8"), Brotli);
    }

    #[test]
    fn q_values_are_respected() {
        assert_eq!(pick("br;q=0.5, gzip;q=0.8"), Gzip);
        assert_eq!(pick("br;q=0.9, gzip;q=0.8"), Brotli);
        assert_eq!(pick(" br ; q=0.001 , gzip ; Q=0.002 "), Gzip);
        assert_eq!(pick("gzip;q=1.000, br;q=0.999"), Gzip);
    }

    #[test]
    fn q_zero_refuses_a_coding() {
        assert_eq!(pick("br;q=0, gzip"), Gzip);
        assert_eq!(pick("br;q=0.0, gzip;q=0.000"), Identity);
        assert_eq!(pick("br;q=0"), Identity);
    }

    #[test]
    fn the_wildcard_covers_unlisted_codings_only() {
        assert_eq!(pick("*"), Brotli);
        assert_eq!(pick("br;q=0, *"), Gzip);
        assert_eq!(pick("gzip;q=0.5, *;q=0.1"), Gzip);
        assert_eq!(pick("*;q=0"), Identity);
        assert_eq!(pick("*;q=0, gzip"), Gzip);
    }

    #[test]
    fn identity_wins_only_when_the_client_ranks_it_higher() {
        assert_eq!(pick("identity;q=1, br;q=0.5"), Identity);
        assert_eq!(pick("identity, br"), Brotli);
        assert_eq!(pick("identity;q=0, br"), Brotli);
        // Nothing acceptable at all: the plain file rather than an error.
        assert_eq!(pick("identity;q=0, br;q=0, gzip;q=0"), Identity);
    }

    #[test]
    fn malformed_q_values_drop_the_entry() {
        assert_eq!(pick("br;q=1.5, gzip"), Gzip);
        assert_eq!(pick("br;q=0.0001, gzip"), Gzip);
        assert_eq!(pick("br;q=abc"), Identity);
        assert_eq!(pick("br;q=, gzip;q=0.1"), Gzip);
    }

    #[test]
    fn only_variants_that_exist_are_chosen() {
        assert_eq!(negotiate(Some("br, gzip;q=0.5"), false, true), Gzip);
        assert_eq!(negotiate(Some("br"), false, true), Identity);
        assert_eq!(negotiate(Some("br, gzip"), false, false), Identity);
    }

    #[test]
    fn qvalues_parse_to_thousandths() {
        assert_eq!(qvalue("0"), Some(0));
        assert_eq!(qvalue("0."), Some(0));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.125"), Some(125));
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.0"), Some(1000));
        assert_eq!(qvalue("1.001"), None);
        assert_eq!(qvalue("2"), None);
        assert_eq!(qvalue("-0"), None);
        assert_eq!(qvalue(".5"), None);
    }

    #[test]
    fn if_none_match_uses_the_weak_comparison_and_lists() {
        let etag = "\"abc-br\"";
        let check = |value: &str| none_match(Some(&HeaderValue::from_str(value).unwrap()), etag);
        assert!(check("\"abc-br\""));
        assert!(check("W/\"abc-br\""));
        assert!(check("\"x\", \"abc-br\""));
        assert!(check("*"));
        assert!(!check("\"abc\""));
        assert!(!check("\"abc-gzip\""));
        assert!(!none_match(None, etag));
    }

    #[test]
    fn names_resolve_to_their_cache_policy() {
        let css = all().iter().find(|a| a.name == "coop.css").unwrap();
        let (found, policy) = find(css.hashed_name).unwrap();
        assert_eq!(found.name, "coop.css");
        assert_eq!(policy, IMMUTABLE);
        assert_eq!(find("coop.css").unwrap().1, REVALIDATE);
        assert_eq!(find("coop.000000000000.css").unwrap().1, REVALIDATE);
        assert!(
            find("coop.00000000000.css").is_none(),
            "11 digits is no hash"
        );
        assert!(find("coop.000000000000.js").is_none());
        assert!(find("nope.css").is_none());
        assert!(find("").is_none());
        assert_eq!(url("coop.css"), format!("/static/{}", css.hashed_name));
    }

    #[test]
    fn logical_links_are_rewritten_to_hashed_ones() {
        let html =
            r#"<link rel="stylesheet" href="/static/coop.css"><a href="/static/coop.css.map">"#;
        let rewritten = link_hashed(html);
        assert!(rewritten.contains(&format!("href=\"{}\"", url("coop.css"))));
        assert!(
            rewritten.contains("\"/static/coop.css.map\""),
            "only whole names"
        );
    }
}
