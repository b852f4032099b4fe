//! Line scanning and number parsing shared by both decoders.

use crate::DecodeError;

/// Bound on header lines (`*N`, `$N`, `:N`, `,D`, `#t`, `_`): nothing valid is longer.
pub(crate) const SHORT_LINE: usize = 256;

/// Finds the CRLF ending the line that starts at `start` (the byte after the type byte).
///
/// The search resumes at `*scan`, so a line delivered one byte at a time is scanned once in
/// total. Returns the index of the CR, `Ok(None)` when more bytes are needed (with `*scan`
/// updated), or an error on a bare CR or LF, or when the line cannot end within `max_len`.
pub(crate) fn find_crlf(
    buf: &[u8],
    start: usize,
    scan: &mut usize,
    max_len: usize,
) -> Result<Option<usize>, DecodeError> {
    let from = (*scan).max(start);
    let found = buf
        .get(from..)
        .and_then(|rest| memchr::memchr2(b'\r', b'\n', rest))
        .map(|i| i + from);
    match found {
        None => {
            *scan = buf.len().max(from);
            if buf.len().saturating_sub(start) > max_len {
                return Err(DecodeError::LineTooLong);
            }
            Ok(None)
        }
        Some(i) => {
            if i - start > max_len {
                return Err(DecodeError::LineTooLong);
            }
            match (buf.get(i), buf.get(i + 1)) {
                (Some(b'\r'), Some(b'\n')) => Ok(Some(i)),
                (Some(b'\r'), None) => {
                    *scan = i;
                    Ok(None)
                }
                _ => Err(DecodeError::ExpectedCrlf),
            }
        }
    }
}

/// Parses a canonical decimal `i64` the way Redis's `string2ll` does: an optional `-`, no `+`,
/// no leading zeros (except `0` itself), no spaces, no overflow.
pub(crate) fn parse_i64(s: &[u8]) -> Result<i64, DecodeError> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return Err(DecodeError::InvalidInteger),
        [b'0'] if !neg => return Ok(0),
        [b'1'..=b'9', ..] => {}
        _ => return Err(DecodeError::InvalidInteger),
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(DecodeError::InvalidInteger);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
            .ok_or(DecodeError::InvalidInteger)?;
    }
    if neg {
        if v <= i64::MAX as u64 {
            Ok(-(v as i64))
        } else if v == i64::MAX as u64 + 1 {
            Ok(i64::MIN)
        } else {
            Err(DecodeError::InvalidInteger)
        }
    } else {
        i64::try_from(v).map_err(|_| DecodeError::InvalidInteger)
    }
}

/// `[+-]?[0-9]+`
pub(crate) fn is_big_number(s: &[u8]) -> bool {
    let digits = match s.split_first() {
        Some((b'-' | b'+', rest)) => rest,
        _ => s,
    };
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// A RESP3 double: what `strtod` accepts from Redis (`1.5`, `-2e10`, `inf`, `-inf`, `nan`).
pub(crate) fn parse_double(s: &[u8]) -> Result<f64, DecodeError> {
    let text = core::str::from_utf8(s).map_err(|_| DecodeError::InvalidDouble)?;
    if text.is_empty() || text.starts_with(|c: char| c.is_ascii_whitespace()) {
        return Err(DecodeError::InvalidDouble);
    }
    text.parse::<f64>().map_err(|_| DecodeError::InvalidDouble)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn integers_are_canonical() {
        assert_eq!(parse_i64(b"0"), Ok(0));
        assert_eq!(parse_i64(b"-1"), Ok(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Ok(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999999",
            b"1a",
        ] {
            assert_eq!(parse_i64(bad), Err(DecodeError::InvalidInteger), "{bad:?}");
        }
    }

    #[test]
    fn crlf_scan_resumes_and_rejects_bare_bytes() {
        let mut scan = 0;
        assert_eq!(find_crlf(b"+abc", 1, &mut scan, 100), Ok(None));
        assert_eq!(scan, 4);
        assert_eq!(find_crlf(b"+abc\r", 1, &mut scan, 100), Ok(None));
        assert_eq!(scan, 4);
        assert_eq!(find_crlf(b"+abc\r\n", 1, &mut scan, 100), Ok(Some(4)));
        let mut scan = 0;
        assert_eq!(
            find_crlf(b"+a\nb\r\n", 1, &mut scan, 100),
            Err(DecodeError::ExpectedCrlf)
        );
        let mut scan = 0;
        assert_eq!(
            find_crlf(b"+a\rb\r\n", 1, &mut scan, 100),
            Err(DecodeError::ExpectedCrlf)
        );
        let mut scan = 0;
        assert_eq!(
            find_crlf(b"+abcdef", 1, &mut scan, 3),
            Err(DecodeError::LineTooLong)
        );
        let mut scan = 0;
        assert_eq!(find_crlf(b"+abc\r\n", 1, &mut scan, 3), Ok(Some(4)));
    }

    #[test]
    fn doubles_and_big_numbers() {
        assert_eq!(parse_double(b"1.5"), Ok(1.5));
        assert_eq!(parse_double(b"inf"), Ok(f64::INFINITY));
        assert_eq!(parse_double(b"-inf"), Ok(f64::NEG_INFINITY));
        assert!(parse_double(b"nan").is_ok_and(f64::is_nan));
        assert!(parse_double(b"").is_err());
        assert!(parse_double(b"x").is_err());
        assert!(is_big_number(b"-123456789012345678901234567890"));
        assert!(!is_big_number(b"12a"));
        assert!(!is_big_number(b"-"));
    }
}
