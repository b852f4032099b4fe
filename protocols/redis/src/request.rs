//! Client requests: the streaming request decoder and [`Command`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::encode::write_len_line;
use crate::lines::{find_crlf, parse_i64, SHORT_LINE};
use crate::{DecodeError, Limits};

/// Where one argument sits in [`Command::raw`]: its `$` header, its payload, the payload's end
/// (its CRLF follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ArgSpan {
    start: u32,
    data: u32,
    end: u32,
}

/// One client request: the bytes it arrived in and where each argument is.
///
/// For a RESP request `raw` is exactly what the client sent, so a proxy forwards an untouched
/// command by writing [`Command::raw`] (zero copies until the host takes the bytes). An inline
/// command (`PING\r\n`, `SET "a b" c`) is re-encoded once, at decode time, as the equivalent
/// RESP array: `raw` is then that array, and [`Command::is_inline`] says so.
///
/// Argument 0 is the command name.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    raw: Bytes,
    args: Vec<ArgSpan>,
    inline: bool,
}

impl Command {
    /// Builds a command from its arguments (name first), encoded as a RESP array.
    pub fn new<I, A>(args: I) -> Command
    where
        I: IntoIterator<Item = A>,
        A: AsRef<[u8]>,
    {
        let args: Vec<A> = args.into_iter().collect();
        let mut raw = BytesMut::new();
        write_len_line(&mut raw, b'*', args.len() as i64);
        let mut spans = Vec::with_capacity(args.len());
        for a in &args {
            let a = a.as_ref();
            let start = raw.len();
            write_len_line(&mut raw, b'$', a.len() as i64);
            let data = raw.len();
            raw.put_slice(a);
            spans.push(ArgSpan {
                start: start as u32,
                data: data as u32,
                end: raw.len() as u32,
            });
            raw.put_slice(b"\r\n");
        }
        Command {
            raw: raw.freeze(),
            args: spans,
            inline: false,
        }
    }

    /// The request's bytes as a RESP array (as received, unless [`Command::is_inline`]).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Gives up the command for its bytes.
    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    /// Whether the client sent an inline command (then [`Command::raw`] is its RESP form).
    pub fn is_inline(&self) -> bool {
        self.inline
    }

    /// Number of arguments, the name included (never 0 for a decoded command).
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// True only for `Command::new` of nothing.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// The command name as sent (any case).
    pub fn name(&self) -> &[u8] {
        self.arg(0).unwrap_or_default()
    }

    /// Argument `i` (0 is the name).
    pub fn arg(&self, i: usize) -> Option<&[u8]> {
        let s = self.args.get(i)?;
        self.raw.get(s.data as usize..s.end as usize)
    }

    /// Argument `i` as a zero-copy slice of [`Command::raw`].
    pub fn arg_bytes(&self, i: usize) -> Option<Bytes> {
        let s = self.args.get(i)?;
        Some(self.raw.slice(s.data as usize..s.end as usize))
    }

    /// Argument `i`'s complete encoding, `$<len>\r\n<bytes>\r\n`.
    pub fn arg_raw(&self, i: usize) -> Option<&[u8]> {
        let s = self.args.get(i)?;
        self.raw.get(s.start as usize..s.end as usize + 2)
    }

    /// All arguments, the name first.
    pub fn args(&self) -> Args<'_> {
        Args { cmd: self, next: 0 }
    }

    /// Writes the RESP array made of the arguments at `indices`, in that order (repeats
    /// allowed), copying each argument's encoding as is. `&[0, 2, 3]` of `MGET a b c` is
    /// `MGET b c`. Returns `false`, writing nothing, if an index is out of range.
    pub fn write_subset<B: BufMut>(&self, indices: &[usize], out: &mut B) -> bool {
        if indices.iter().any(|&i| i >= self.args.len()) {
            return false;
        }
        write_len_line(out, b'*', indices.len() as i64);
        for &i in indices {
            if let Some(a) = self.arg_raw(i) {
                out.put_slice(a);
            }
        }
        true
    }

    /// [`Command::write_subset`] into a new command (for one to keep, e.g. a session command
    /// stored for replay). `None` if an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Option<Command> {
        if indices.iter().any(|&i| i >= self.args.len()) {
            return None;
        }
        let mut raw = BytesMut::new();
        write_len_line(&mut raw, b'*', indices.len() as i64);
        let mut spans = Vec::with_capacity(indices.len());
        for &i in indices {
            let s = self.args.get(i)?;
            let at = raw.len() as u32;
            raw.put_slice(self.arg_raw(i)?);
            spans.push(ArgSpan {
                start: at,
                data: at + (s.data - s.start),
                end: at + (s.end - s.start),
            });
        }
        Some(Command {
            raw: raw.freeze(),
            args: spans,
            inline: false,
        })
    }
}

impl core::fmt::Debug for Command {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut l = f.debug_list();
        for a in self.args() {
            l.entry(&String::from_utf8_lossy(a));
        }
        l.finish()
    }
}

/// Iterator over a command's arguments.
#[derive(Clone)]
pub struct Args<'a> {
    cmd: &'a Command,
    next: usize,
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let a = self.cmd.arg(self.next)?;
        self.next += 1;
        Some(a)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.cmd.len().saturating_sub(self.next);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Args<'_> {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing of the next request seen yet.
    Start,
    /// `*` seen; waiting for the count line.
    Count,
    /// Waiting for the next argument's `$<len>` line at `pos`.
    ArgHeader,
    /// Argument header read; waiting for `len` bytes and CRLF at `data`.
    ArgData {
        start: usize,
        data: usize,
        len: usize,
    },
    /// An inline command; waiting for its newline.
    Inline,
}

/// Streaming decoder of client requests, one per client connection.
///
/// Accepts what Redis accepts from a client: RESP arrays of bulk strings (`*<n>` with
/// `n <= 0` is skipped, as Redis does), and inline commands split the way Redis splits them
/// (`sdssplitargs`: spaces, `"..."` with `\n \r \t \b \a \xHH` escapes, `'...'`; blank lines
/// skipped). Stricter than Redis in one respect: a bulk payload must be followed by CRLF
/// (Redis skips two bytes unchecked), so a proxy can never be desynchronised from a server.
#[derive(Debug, Clone)]
pub struct RequestDecoder {
    limits: Limits,
    state: State,
    /// Bytes of `src` that belong to the request being decoded.
    pos: usize,
    /// Where the CR/LF search resumes.
    scan: usize,
    expected: usize,
    args: Vec<ArgSpan>,
}

impl Default for RequestDecoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            state: State::Start,
            pos: 0,
            scan: 0,
            expected: 0,
            args: Vec::new(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// True when no request is partially decoded (the buffer holds whole requests only).
    pub fn is_idle(&self) -> bool {
        self.state == State::Start
    }

    /// Forgets a partial request (after an error, or when the stream restarts).
    pub fn reset(&mut self) {
        self.state = State::Start;
        self.pos = 0;
        self.scan = 0;
        self.expected = 0;
        self.args.clear();
    }

    /// Decodes the next request from the front of `src`, removing its bytes from `src`.
    ///
    /// `Ok(None)`: `src` holds no complete request yet; call again with the same buffer once
    /// more bytes were appended (the decoder remembers how far it got).
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Command>, DecodeError> {
        loop {
            match self.state {
                State::Start => {
                    let Some(&first) = src.first() else {
                        return Ok(None);
                    };
                    self.pos = 0;
                    self.scan = 0;
                    self.state = if first == b'*' {
                        State::Count
                    } else {
                        State::Inline
                    };
                }
                State::Count => {
                    let Some(cr) = find_crlf(src, 1, &mut self.scan, SHORT_LINE)? else {
                        return Ok(None);
                    };
                    let n = parse_i64(src.get(1..cr).unwrap_or_default())
                        .map_err(|_| DecodeError::InvalidAggregateLength)?;
                    let end = cr + 2;
                    if n <= 0 {
                        src.advance(end);
                        self.reset();
                        continue;
                    }
                    let n = n as u64;
                    if n > self.limits.max_aggregate_len as u64
                        || n > self.limits.max_frame_elements as u64
                    {
                        return Err(DecodeError::InvalidAggregateLength);
                    }
                    self.expected = n as usize;
                    self.args.clear();
                    self.pos = end;
                    self.scan = end;
                    self.state = State::ArgHeader;
                }
                State::ArgHeader => {
                    let Some(&b) = src.get(self.pos) else {
                        return Ok(None);
                    };
                    if b != b'$' {
                        return Err(DecodeError::ExpectedBulk { got: b });
                    }
                    let Some(cr) = find_crlf(src, self.pos + 1, &mut self.scan, SHORT_LINE)? else {
                        return Ok(None);
                    };
                    let len = parse_i64(src.get(self.pos + 1..cr).unwrap_or_default())
                        .map_err(|_| DecodeError::InvalidBulkLength)?;
                    if len < 0 || len as u64 > self.limits.max_bulk_len as u64 {
                        return Err(DecodeError::InvalidBulkLength);
                    }
                    let len = len as usize;
                    let data = cr + 2;
                    if data.saturating_add(len).saturating_add(2) > self.limits.frame_len() {
                        return Err(DecodeError::FrameTooLarge);
                    }
                    self.state = State::ArgData {
                        start: self.pos,
                        data,
                        len,
                    };
                }
                State::ArgData { start, data, len } => {
                    let end = data + len;
                    let Some(crlf) = src.get(end..end + 2) else {
                        return Ok(None);
                    };
                    if crlf != b"\r\n" {
                        return Err(DecodeError::ExpectedCrlf);
                    }
                    self.args.push(ArgSpan {
                        start: start as u32,
                        data: data as u32,
                        end: end as u32,
                    });
                    self.pos = end + 2;
                    self.scan = self.pos;
                    if self.args.len() == self.expected {
                        let raw = src.split_to(self.pos).freeze();
                        let args = core::mem::take(&mut self.args);
                        self.reset();
                        return Ok(Some(Command {
                            raw,
                            args,
                            inline: false,
                        }));
                    }
                    self.state = State::ArgHeader;
                }
                State::Inline => {
                    let from = self.scan.min(src.len());
                    let found = src
                        .get(from..)
                        .and_then(|rest| memchr::memchr(b'\n', rest))
                        .map(|i| i + from);
                    let Some(nl) = found else {
                        self.scan = src.len();
                        // The line is too long once it cannot fit whatever comes next: a final
                        // `\r` may still be the start of the `\r\n` that is stripped, so it
                        // does not count yet (the same answer whatever the bytes' cutting).
                        let max = self.limits.max_inline_len;
                        let pending_cr = src.last() == Some(&b'\r');
                        if src.len() > max + usize::from(pending_cr) {
                            return Err(DecodeError::InlineTooLong);
                        }
                        return Ok(None);
                    };
                    let mut line = src.get(..nl).unwrap_or_default();
                    if let Some(stripped) = line.strip_suffix(b"\r") {
                        line = stripped;
                    }
                    if line.len() > self.limits.max_inline_len {
                        return Err(DecodeError::InlineTooLong);
                    }
                    let args = split_inline(line)?;
                    if args.len() > self.limits.max_aggregate_len {
                        return Err(DecodeError::InvalidAggregateLength);
                    }
                    src.advance(nl + 1);
                    self.reset();
                    if args.is_empty() {
                        continue;
                    }
                    let mut cmd = Command::new(args);
                    cmd.inline = true;
                    return Ok(Some(cmd));
                }
            }
        }
    }
}

/// C's `isspace` in the "C" locale.
fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(c: Option<&u8>) -> Option<u8> {
    match c? {
        c @ b'0'..=b'9' => Some(c - b'0'),
        c @ b'a'..=b'f' => Some(c - b'a' + 10),
        c @ b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Redis's `sdssplitargs`, byte for byte. A NUL byte is refused: Redis never finds the end of
/// such a line.
fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
    if memchr::memchr(0, line).is_some() {
        return Err(DecodeError::NulInInline);
    }
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(|&c| is_c_space(c)) {
            i += 1;
        }
        if i >= line.len() {
            return Ok(out);
        }
        let mut cur = Vec::new();
        let (mut in_dq, mut in_sq) = (false, false);
        loop {
            let c = line.get(i).copied();
            let mut done = false;
            if in_dq {
                match c {
                    None => return Err(DecodeError::UnbalancedQuotes),
                    Some(b'\\') => {
                        let hi = hex_value(line.get(i + 2));
                        let lo = hex_value(line.get(i + 3));
                        match (line.get(i + 1), hi, lo) {
                            (Some(b'x'), Some(hi), Some(lo)) => {
                                cur.push(hi * 16 + lo);
                                i += 3;
                            }
                            (Some(&e), _, _) => {
                                i += 1;
                                cur.push(match e {
                                    b'n' => b'\n',
                                    b'r' => b'\r',
                                    b't' => b'\t',
                                    b'b' => 0x08,
                                    b'a' => 0x07,
                                    other => other,
                                });
                            }
                            (None, _, _) => cur.push(b'\\'),
                        }
                    }
                    Some(b'"') => {
                        if line.get(i + 1).is_some_and(|&n| !is_c_space(n)) {
                            return Err(DecodeError::UnbalancedQuotes);
                        }
                        done = true;
                    }
                    Some(other) => cur.push(other),
                }
            } else if in_sq {
                match c {
                    None => return Err(DecodeError::UnbalancedQuotes),
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        i += 1;
                        cur.push(b'\'');
                    }
                    Some(b'\'') => {
                        if line.get(i + 1).is_some_and(|&n| !is_c_space(n)) {
                            return Err(DecodeError::UnbalancedQuotes);
                        }
                        done = true;
                    }
                    Some(other) => cur.push(other),
                }
            } else {
                match c {
                    None | Some(b' ' | b'\n' | b'\r' | b'\t') => done = true,
                    Some(b'"') => in_dq = true,
                    Some(b'\'') => in_sq = true,
                    Some(other) => cur.push(other),
                }
            }
            if c.is_some() {
                i += 1;
            }
            if done {
                break;
            }
        }
        out.push(cur);
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn decode_all(dec: &mut RequestDecoder, buf: &mut BytesMut) -> Vec<Command> {
        let mut out = Vec::new();
        while let Some(c) = dec.decode(buf).unwrap() {
            out.push(c);
        }
        out
    }

    fn argv(c: &Command) -> Vec<Vec<u8>> {
        c.args().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn resp_request_keeps_raw_bytes() {
        let wire = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        let mut buf = BytesMut::from(&wire[..]);
        let cmd = RequestDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!(cmd.raw().as_ref(), wire);
        assert_eq!(cmd.len(), 3);
        assert_eq!(cmd.name(), b"SET");
        assert_eq!(cmd.arg(1), Some(&b"k"[..]));
        assert_eq!(cmd.arg(2), Some(&b"hello"[..]));
        assert_eq!(cmd.arg(3), None);
        assert_eq!(cmd.arg_raw(2), Some(&b"$5\r\nhello\r\n"[..]));
        assert!(!cmd.is_inline());
    }

    /// Found by fuzzing (redis_decode_request): a line of exactly `max_inline_len` bytes
    /// followed by `\r\n` is accepted (or refused for its content) whether the `\r` and the
    /// `\n` arrive together or apart; before, a lone trailing `\r` counted as one byte too many.
    #[test]
    fn inline_limit_does_not_depend_on_where_the_bytes_are_cut() {
        let limits = Limits {
            max_inline_len: 8,
            ..Limits::default()
        };
        for line in [&b"GET abcd"[..], b"GET \0bcd", b"GET abcde"] {
            let mut wire = line.to_vec();
            wire.extend_from_slice(b"\r\n");
            let mut whole = BytesMut::from(&wire[..]);
            let expected = RequestDecoder::new(limits).decode(&mut whole).map(|c| c.map(|c| argv(&c)));
            for cut in 1..wire.len() {
                let mut dec = RequestDecoder::new(limits);
                let mut buf = BytesMut::from(&wire[..cut]);
                let first = dec.decode(&mut buf).map(|c| c.map(|c| argv(&c)));
                let got = match first {
                    Ok(None) => {
                        buf.extend_from_slice(&wire[cut..]);
                        dec.decode(&mut buf).map(|c| c.map(|c| argv(&c)))
                    }
                    other => other,
                };
                assert_eq!(got, expected, "{line:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn every_split_point_gives_the_same_commands() {
        let wire: &[u8] = b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\nPING\r\n*1\r\n$4\r\nPING\r\n\r\n*0\r\nSET \"a b\" 'c'\n*3\r\n$4\r\nMGET\r\n$0\r\n\r\n$2\r\n\r\n\r\n";
        let mut whole = BytesMut::from(wire);
        let expected: Vec<_> = decode_all(&mut RequestDecoder::default(), &mut whole)
            .iter()
            .map(argv)
            .collect();
        assert_eq!(expected.len(), 5);
        assert_eq!(
            expected[3],
            vec![b"SET".to_vec(), b"a b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(
            expected[4],
            vec![b"MGET".to_vec(), vec![], b"\r\n".to_vec()]
        );
        for a in 0..=wire.len() {
            for b in a..=wire.len() {
                let mut dec = RequestDecoder::default();
                let mut buf = BytesMut::new();
                let mut got = Vec::new();
                for chunk in [&wire[..a], &wire[a..b], &wire[b..]] {
                    buf.extend_from_slice(chunk);
                    got.extend(decode_all(&mut dec, &mut buf).iter().map(argv));
                }
                assert_eq!(got, expected, "split at {a}/{b}");
                assert!(buf.is_empty() && dec.is_idle());
            }
        }
    }

    #[test]
    fn one_byte_at_a_time_is_linear() {
        // A 1 MiB bulk argument fed one byte at a time: the decoder must not rescan.
        let big = vec![b'x'; 1 << 20];
        let cmd = Command::new([&b"SET"[..], b"k", &big]);
        let mut dec = RequestDecoder::default();
        let mut buf = BytesMut::new();
        let mut got = None;
        for &b in cmd.raw().iter() {
            buf.put_u8(b);
            if let Some(c) = dec.decode(&mut buf).unwrap() {
                got = Some(c);
            }
        }
        assert_eq!(got.unwrap().arg(2), Some(&big[..]));
    }

    #[test]
    fn pipeline_of_many_commands() {
        let mut buf = BytesMut::new();
        for i in 0..10_000 {
            buf.extend_from_slice(Command::new(["GET", &format!("key:{i}")]).raw());
        }
        let cmds = decode_all(&mut RequestDecoder::default(), &mut buf);
        assert_eq!(cmds.len(), 10_000);
        assert_eq!(cmds[9_999].arg(1), Some(&b"key:9999"[..]));
    }

    #[test]
    fn inline_commands_split_like_redis() {
        let cases: &[(&[u8], &[&[u8]])] = &[
            (b"PING\r\n", &[b"PING"]),
            (b"  set  k   v \n", &[b"set", b"k", b"v"]),
            (b"SET k \"a\\x41\\n\\\"b\"\r\n", &[b"SET", b"k", b"aA\n\"b"]),
            (b"SET k 'it\\'s'\r\n", &[b"SET", b"k", b"it's"]),
            (b"SET k a\"b c\" d\r\n", &[b"SET", b"k", b"ab c", b"d"]),
            (b"ECHO \"\"\r\n", &[b"ECHO", b""]),
            (b"$3\r\n", &[b"$3"]),
        ];
        for (wire, want) in cases {
            let mut buf = BytesMut::from(*wire);
            let cmd = RequestDecoder::default().decode(&mut buf).unwrap().unwrap();
            let want: Vec<Vec<u8>> = want.iter().map(|a| a.to_vec()).collect();
            assert_eq!(argv(&cmd), want, "{:?}", String::from_utf8_lossy(wire));
            assert!(cmd.is_inline());
            // Its RESP form decodes back to the same arguments.
            let mut again = BytesMut::from(cmd.raw().as_ref());
            let back = RequestDecoder::default()
                .decode(&mut again)
                .unwrap()
                .unwrap();
            assert_eq!(argv(&back), want);
        }
        let mut buf = BytesMut::from(&b"GET a\0b\r\n"[..]);
        assert_eq!(
            RequestDecoder::default().decode(&mut buf),
            Err(DecodeError::NulInInline)
        );
        for bad in [
            &b"SET \"abc\r\n"[..],
            b"SET 'abc\r\n",
            b"SET \"a\"b\r\n",
            b"SET 'a'b\n",
            b"SET k a\"b c\"d\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            assert_eq!(
                RequestDecoder::default().decode(&mut buf),
                Err(DecodeError::UnbalancedQuotes)
            );
        }
    }

    #[test]
    fn limits_are_enforced_before_waiting_or_allocating() {
        // 512 MB bulk header: rejected at once, with no payload present.
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$536870912\r\n"[..]);
        assert_eq!(
            RequestDecoder::default().decode(&mut buf),
            Err(DecodeError::InvalidBulkLength)
        );
        // A huge argument count is rejected before any Vec is sized by it.
        let mut buf = BytesMut::from(&b"*2147483647\r\n"[..]);
        assert_eq!(
            RequestDecoder::default().decode(&mut buf),
            Err(DecodeError::InvalidAggregateLength)
        );
        let limits = Limits {
            max_bulk_len: 4,
            max_aggregate_len: 2,
            max_inline_len: 8,
            ..Limits::default()
        };
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$5\r\n"[..]);
        assert_eq!(
            RequestDecoder::new(limits).decode(&mut buf),
            Err(DecodeError::InvalidBulkLength)
        );
        let mut buf = BytesMut::from(&b"*3\r\n"[..]);
        assert_eq!(
            RequestDecoder::new(limits).decode(&mut buf),
            Err(DecodeError::InvalidAggregateLength)
        );
        let mut buf = BytesMut::from(&b"GET abcdef"[..]);
        assert_eq!(
            RequestDecoder::new(limits).decode(&mut buf),
            Err(DecodeError::InlineTooLong)
        );
        let mut buf = BytesMut::from(&b"*1\r\n$100000000000000000000\r\n"[..]);
        assert_eq!(
            RequestDecoder::default().decode(&mut buf),
            Err(DecodeError::InvalidBulkLength)
        );
        // A count line that never ends.
        let mut buf = BytesMut::from(&[b'*'; 300][..]);
        assert_eq!(
            RequestDecoder::default().decode(&mut buf),
            Err(DecodeError::LineTooLong)
        );
    }

    #[test]
    fn malformed_requests() {
        let cases: &[(&[u8], DecodeError)] = &[
            (b"*1\r\n:1\r\n", DecodeError::ExpectedBulk { got: b':' }),
            (b"*1\r\n*1\r\n", DecodeError::ExpectedBulk { got: b'*' }),
            (b"*x\r\n", DecodeError::InvalidAggregateLength),
            (b"*1\r\n$-1\r\n", DecodeError::InvalidBulkLength),
            (b"*1\r\n$01\r\na\r\n", DecodeError::InvalidBulkLength),
            (b"*1\r\n$1\r\nab\r\n", DecodeError::ExpectedCrlf),
            (b"*1\r\n$1\r\na\n\n", DecodeError::ExpectedCrlf),
            (b"*1\n", DecodeError::ExpectedCrlf),
            (b"*1\r\r", DecodeError::ExpectedCrlf),
        ];
        for (wire, err) in cases {
            let mut buf = BytesMut::from(*wire);
            assert_eq!(
                RequestDecoder::default().decode(&mut buf).as_ref(),
                Err(err),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn empty_and_negative_counts_are_skipped() {
        let mut buf = BytesMut::from(&b"*0\r\n*-1\r\n\r\n\n   \r\n*1\r\n$4\r\nPING\r\n"[..]);
        let cmds = decode_all(&mut RequestDecoder::default(), &mut buf);
        assert_eq!(cmds.len(), 1);
        assert_eq!(cmds[0].name(), b"PING");
    }

    #[test]
    fn subsets_copy_argument_encodings() {
        let cmd = Command::new(["MGET", "a", "bb", "ccc"]);
        let mut out = BytesMut::new();
        assert!(cmd.write_subset(&[0, 3, 1], &mut out));
        assert_eq!(&out[..], b"*3\r\n$4\r\nMGET\r\n$3\r\nccc\r\n$1\r\na\r\n");
        let mut none = Vec::new();
        assert!(!cmd.write_subset(&[0, 4], &mut none));
        assert!(none.is_empty());
        let sub = cmd.subset(&[0, 2]).unwrap();
        assert_eq!(sub.raw().as_ref(), b"*2\r\n$4\r\nMGET\r\n$2\r\nbb\r\n");
        assert_eq!(argv(&sub), vec![b"MGET".to_vec(), b"bb".to_vec()]);
        assert_eq!(sub, Command::new(["MGET", "bb"]));
    }
}
