//! Writers for the replies and commands a proxy builds itself.
//!
//! All writers take any [`BufMut`] (`Vec<u8>`, `BytesMut`, ...) and never fail. Text written in
//! simple strings and errors has its CR and LF replaced by spaces, as Redis does, so a message
//! can never break the framing.

use bytes::BufMut;

/// The RESP version a client speaks (`HELLO 3` switches a connection to RESP3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

pub(crate) fn write_i64<B: BufMut>(out: &mut B, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || at == 0 {
            break;
        }
    }
    if n < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(digits.get(at..).unwrap_or_default());
}

/// `<prefix><n>\r\n`
pub(crate) fn write_len_line<B: BufMut>(out: &mut B, prefix: u8, n: i64) {
    out.put_u8(prefix);
    write_i64(out, n);
    out.put_slice(b"\r\n");
}

fn write_line_text<B: BufMut>(out: &mut B, text: &[u8]) {
    if memchr::memchr2(b'\r', b'\n', text).is_none() {
        out.put_slice(text);
    } else {
        for &c in text {
            out.put_u8(if c == b'\r' || c == b'\n' { b' ' } else { c });
        }
    }
}

/// `+<text>\r\n`
pub fn write_simple<B: BufMut>(out: &mut B, text: &[u8]) {
    out.put_u8(b'+');
    write_line_text(out, text);
    out.put_slice(b"\r\n");
}

/// `-<message>\r\n`; the message starts with its code (`ERR ...`, `CROSSSLOT ...`).
pub fn write_error<B: BufMut>(out: &mut B, message: &[u8]) {
    out.put_u8(b'-');
    write_line_text(out, message);
    out.put_slice(b"\r\n");
}

/// `:<n>\r\n`
pub fn write_integer<B: BufMut>(out: &mut B, n: i64) {
    write_len_line(out, b':', n);
}

/// `$<len>\r\n<data>\r\n`
pub fn write_bulk<B: BufMut>(out: &mut B, data: &[u8]) {
    write_len_line(out, b'$', data.len() as i64);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// The null a command such as `GET` answers: `$-1\r\n` in RESP2, `_\r\n` in RESP3.
pub fn write_null<B: BufMut>(out: &mut B, proto: Protocol) {
    match proto {
        Protocol::Resp2 => out.put_slice(b"$-1\r\n"),
        Protocol::Resp3 => out.put_slice(b"_\r\n"),
    }
}

/// `*<n>\r\n`
pub fn write_array_header<B: BufMut>(out: &mut B, n: usize) {
    write_len_line(out, b'*', n as i64);
}

/// `%<pairs>\r\n` in RESP3; a flat array of `2 * pairs` elements in RESP2.
pub fn write_map_header<B: BufMut>(out: &mut B, pairs: usize, proto: Protocol) {
    match proto {
        Protocol::Resp2 => write_len_line(out, b'*', (pairs as i64).saturating_mul(2)),
        Protocol::Resp3 => write_len_line(out, b'%', pairs as i64),
    }
}

/// `~<n>\r\n` in RESP3; an array in RESP2.
pub fn write_set_header<B: BufMut>(out: &mut B, n: usize, proto: Protocol) {
    match proto {
        Protocol::Resp2 => write_len_line(out, b'*', n as i64),
        Protocol::Resp3 => write_len_line(out, b'~', n as i64),
    }
}

/// `><n>\r\n` in RESP3; an array in RESP2 (pub/sub messages).
pub fn write_push_header<B: BufMut>(out: &mut B, n: usize, proto: Protocol) {
    match proto {
        Protocol::Resp2 => write_len_line(out, b'*', n as i64),
        Protocol::Resp3 => write_len_line(out, b'>', n as i64),
    }
}

/// A command as a RESP array of bulk strings.
pub fn write_command<B, I, A>(out: &mut B, args: I)
where
    B: BufMut,
    I: IntoIterator<Item = A>,
    I::IntoIter: ExactSizeIterator,
    A: AsRef<[u8]>,
{
    let args = args.into_iter();
    write_array_header(out, args.len());
    for a in args {
        write_bulk(out, a.as_ref());
    }
}

/// A RESP3 double as Redis prints it: shortest round-trip digits, `inf`, `-inf`, `nan`.
pub(crate) fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        // `{:?}` gives the shortest representation that parses back to the same value and
        // switches to exponent form for very large or small magnitudes (`1e300`).
        format!("{d:?}")
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn integers_and_lines() {
        for n in [0i64, 1, -1, 42, i64::MAX, i64::MIN] {
            let mut v = Vec::new();
            write_integer(&mut v, n);
            assert_eq!(v, format!(":{n}\r\n").into_bytes());
        }
        let mut v = Vec::new();
        write_error(&mut v, b"ERR bad\r\nthing");
        write_simple(&mut v, b"OK");
        write_null(&mut v, Protocol::Resp2);
        write_null(&mut v, Protocol::Resp3);
        write_map_header(&mut v, 2, Protocol::Resp2);
        write_map_header(&mut v, 2, Protocol::Resp3);
        write_command(&mut v, ["MGET", "a"]);
        assert_eq!(
            v,
            b"-ERR bad  thing\r\n+OK\r\n$-1\r\n_\r\n*4\r\n%2\r\n*2\r\n$4\r\nMGET\r\n$1\r\na\r\n"
        );
    }

    #[test]
    fn doubles_round_trip() {
        for d in [
            0.0,
            -0.0,
            1.5,
            -2.25,
            1e300,
            1e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
            0.1,
        ] {
            let s = format_double(d);
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), d.to_bits(), "{s}");
        }
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_double(f64::NAN), "nan");
    }
}
