//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the
//! `traceparent` header that carries one trace id from the client (or nginx,
//! which makes one up when the client sent none) through Coop to the jobs a
//! request queues.
//!
//! `traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`. Coop
//! takes the trace id from a valid header, or starts a new trace when the
//! header is missing or invalid (the specification says to, rather than
//! refuse the request), and answers with its own span's `traceparent` so the
//! client can quote the trace id.
//!
//! The trace id of the request being served is also kept in a task-local
//! ([`scope`] / [`current`]) so that code far below the HTTP edge (the store's
//! job insert) can record it without every service passing it along. A task
//! the request spawns does not inherit it: only work done on the request's
//! own task carries the id.

use std::fmt;
use std::future::Future;

use rand::RngCore;

/// The header's name (lower case, as HTTP/2 sends it).
pub const HEADER: &str = "traceparent";

/// A parsed or freshly made `traceparent`. Ids are kept as lower-case hex,
/// the form the header, the logs and the jobs table use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: String,
    parent_id: String,
    flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` when it is not one we may use.
    ///
    /// Version `00` must be exactly 55 characters. A later version may append
    /// fields after a `-`; its first four fields are read the same way, as
    /// the specification asks of a version-00 parser. Version `ff` is invalid.
    /// Upper-case hex is refused, as the specification requires.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim_matches([' ', '\t']);
        let bytes = value.as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        let version = &value[..2];
        if !is_lower_hex(version) || version == "ff" {
            return None;
        }
        if version == "00" && bytes.len() != 55 {
            return None;
        }
        if bytes.len() > 55 && bytes[55] != b'-' {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = &value[3..35];
        let parent_id = &value[36..52];
        let flags = &value[53..55];
        if !is_lower_hex(trace_id) || !is_lower_hex(parent_id) || !is_lower_hex(flags) {
            return None;
        }
        if all_zero(trace_id) || all_zero(parent_id) {
            return None;
        }
        Some(Self {
            trace_id: trace_id.to_owned(),
            parent_id: parent_id.to_owned(),
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }

    /// A new trace, sampled (flags `01`): the start of a request whose client
    /// sent no usable `traceparent`.
    pub fn new_root() -> Self {
        let mut id = [0u8; 16];
        // Never all zero: a zero id is invalid. (A 2^-128 chance, but free to rule out.)
        while id.iter().all(|b| *b == 0) {
            rand::thread_rng().fill_bytes(&mut id);
        }
        Self {
            trace_id: hex(&id),
            parent_id: new_span_id(),
            flags: 0x01,
        }
    }

    /// This request's own span in the same trace: the parent id a response
    /// (or a downstream call) should carry.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            parent_id: new_span_id(),
            flags: self.flags,
        }
    }

    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    pub fn parent_id(&self) -> &str {
        &self.parent_id
    }

    pub fn sampled(&self) -> bool {
        self.flags & 0x01 == 0x01
    }
}

/// The header value, always version `00`.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

/// Whether `id` looks like a trace id (32 lower-case hex, not all zero): what
/// the jobs table may store.
pub fn is_trace_id(id: &str) -> bool {
    id.len() == 32 && is_lower_hex(id) && !all_zero(id)
}

fn new_span_id() -> String {
    let mut id = [0u8; 8];
    while id.iter().all(|b| *b == 0) {
        rand::thread_rng().fill_bytes(&mut id);
    }
    hex(&id)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn all_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

tokio::task_local! {
    static CURRENT: String;
}

/// Runs `work` with `trace_id` as the current trace (see [`current`]).
pub async fn scope<F: Future>(trace_id: String, work: F) -> F::Output {
    CURRENT.scope(trace_id, work).await
}

/// The trace id of the request this task is serving, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_specifications_example() {
        let parsed = TraceParent::parse(VALID).unwrap();
        assert_eq!(parsed.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.parent_id(), "00f067aa0ba902b7");
        assert!(parsed.sampled());
        assert_eq!(parsed.to_string(), VALID);
        let unsampled = TraceParent::parse(&VALID.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
    }

    #[test]
    fn refuses_what_the_specification_refuses() {
        let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let zero_parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        let upper = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
        let version_ff = "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let v00_with_more = format!("{VALID}-extra");
        let short_trace = "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01";
        let not_hex = "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01";
        let wrong_separator = "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let flags_not_hex = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x";
        for bad in [
            "",
            "garbage",
            zero_trace,
            zero_parent,
            upper,
            version_ff,
            &v00_with_more,
            short_trace,
            not_hex,
            wrong_separator,
            flags_not_hex,
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields() {
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        let parsed = TraceParent::parse(future).unwrap();
        assert_eq!(parsed.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        // A later version without the separator after the flags is not one.
        let glued = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(TraceParent::parse(glued), None);
    }

    #[test]
    fn new_traces_and_children_are_valid_and_distinct() {
        let root = TraceParent::new_root();
        assert!(is_trace_id(root.trace_id()));
        assert_eq!(TraceParent::parse(&root.to_string()), Some(root.clone()));
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.parent_id(), root.parent_id());
        assert_ne!(TraceParent::new_root().trace_id(), root.trace_id());
    }

    #[tokio::test]
    async fn the_current_trace_is_the_scopes() {
        assert_eq!(current(), None);
        let inside = scope("abc".to_owned(), async { current() }).await;
        assert_eq!(inside.as_deref(), Some("abc"));
        assert_eq!(current(), None);
    }
}
