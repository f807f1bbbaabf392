//! The `Range` request header, for downloads. Only one range of bytes is
//! served (`bytes=A-B`, `bytes=A-`, `bytes=-N`): that is what download
//! managers and media players ask for. Several ranges, or a header that
//! does not parse, get the whole file (RFC 9110 §14.2 lets a server ignore
//! Range); a range that starts past the end is 416. A dozen lines, so no
//! crate for it.

use std::ops::Range;

#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    Whole,
    /// The bytes to send (end exclusive).
    Part(Range<u64>),
    Unsatisfiable,
}

pub fn parse_range(header: &str, size: u64) -> ByteRange {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Whole;
    };
    let number = |raw: &str| raw.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // The last N bytes.
        (true, false) => match number(last) {
            Some(0) => ByteRange::Unsatisfiable,
            Some(n) if size > 0 => ByteRange::Part(size.saturating_sub(n)..size),
            Some(_) => ByteRange::Unsatisfiable,
            None => ByteRange::Whole,
        },
        (false, true) => match number(first) {
            Some(start) if start < size => ByteRange::Part(start..size),
            Some(_) => ByteRange::Unsatisfiable,
            None => ByteRange::Whole,
        },
        (false, false) => match (number(first), number(last)) {
            (Some(start), Some(end)) if start <= end => {
                if start >= size {
                    ByteRange::Unsatisfiable
                } else {
                    ByteRange::Part(start..end.saturating_add(1).min(size))
                }
            }
            _ => ByteRange::Whole,
        },
        (true, true) => ByteRange::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_range_in_each_form() {
        assert_eq!(parse_range("bytes=0-9", 100), ByteRange::Part(0..10));
        assert_eq!(parse_range("bytes=90-", 100), ByteRange::Part(90..100));
        assert_eq!(parse_range("bytes=-10", 100), ByteRange::Part(90..100));
        assert_eq!(parse_range("bytes=-500", 100), ByteRange::Part(0..100));
        // An end past the size is cut to it.
        assert_eq!(parse_range("bytes=50-500", 100), ByteRange::Part(50..100));
        assert_eq!(parse_range("bytes=99-99", 100), ByteRange::Part(99..100));
    }

    #[test]
    fn outside_the_file_is_unsatisfiable() {
        assert_eq!(parse_range("bytes=100-", 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=100-200", 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), ByteRange::Unsatisfiable);
    }

    #[test]
    fn anything_else_is_the_whole_file() {
        assert_eq!(parse_range("bytes=0-1,5-6", 100), ByteRange::Whole);
        assert_eq!(parse_range("items=0-1", 100), ByteRange::Whole);
        assert_eq!(parse_range("bytes=9-1", 100), ByteRange::Whole);
        assert_eq!(parse_range("bytes=a-b", 100), ByteRange::Whole);
        assert_eq!(parse_range("bytes=-", 100), ByteRange::Whole);
    }
}
