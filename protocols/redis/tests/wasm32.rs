//! The decoders on wasm32-unknown-unknown, where `usize` is 32 bits and the stack is 1 MiB: the
//! target the filters run on inside Envoy's V8 (scripts/test-wasm.sh, `make test-wasm`). The
//! crate's other tests run there too; these are the cases where 32 bits or the small stack could
//! make a difference: lengths at and past `u32::MAX`, saturated offsets, the deepest nesting
//! the limits allow, and frames cut at every byte.
#![cfg(target_arch = "wasm32")]

use geomesh_redis::{BytesMut, Command, DecodeError, Frame, Limits, ReplyDecoder, RequestDecoder};
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Every limit as large as the type allows: only the 32-bit arithmetic stands in the way.
const UNBOUNDED: Limits = Limits {
    max_bulk_len: usize::MAX,
    max_aggregate_len: usize::MAX,
    max_frame_elements: usize::MAX,
    max_depth: usize::MAX,
    max_inline_len: usize::MAX,
    max_frame_len: usize::MAX,
};

fn request(limits: Limits, wire: &[u8]) -> Result<Option<Command>, DecodeError> {
    RequestDecoder::new(limits).decode(&mut BytesMut::from(wire))
}

fn reply(limits: Limits, wire: &[u8]) -> Result<Option<Frame>, DecodeError> {
    ReplyDecoder::new(limits)
        .decode(&mut BytesMut::from(wire))
        .map(|r| r.map(|r| r.to_frame()))
}

#[test]
fn usize_is_32_bits_here() {
    assert_eq!(usize::BITS, 32);
    assert_eq!(u32::MAX as usize, usize::MAX);
}

#[test]
fn huge_bulk_length_headers_are_refused_or_awaited_never_overflowed() {
    use DecodeError::{FrameTooLarge, InvalidBulkLength};
    // The error under (default limits, Redis's own limits, every limit at usize::MAX); None: the
    // header is accepted and the decoder waits for the payload.
    type Want = Option<DecodeError>;
    let cases: &[(&str, Want, Want, Want)] = &[
        // 512 MiB: Redis's proto-max-bulk-len. Awaited (no payload yet) where the limits allow it.
        ("$536870912", Some(InvalidBulkLength), None, None),
        (
            "$536870913",
            Some(InvalidBulkLength),
            Some(InvalidBulkLength),
            None,
        ),
        (
            "$2147483647",
            Some(InvalidBulkLength),
            Some(InvalidBulkLength),
            None,
        ),
        (
            "$2147483648",
            Some(InvalidBulkLength),
            Some(InvalidBulkLength),
            None,
        ),
        // data offset + len + CRLF saturates at usize::MAX = u32::MAX, above the clamped frame limit.
        (
            "$4294967280",
            Some(InvalidBulkLength),
            Some(InvalidBulkLength),
            Some(FrameTooLarge),
        ),
        (
            "$4294967295",
            Some(InvalidBulkLength),
            Some(InvalidBulkLength),
            Some(FrameTooLarge),
        ),
        // Past usize::MAX on this target: refused by the u64 comparison, not truncated.
        (
            "$4294967296",
            Some(InvalidBulkLength),
            Some(InvalidBulkLength),
            Some(InvalidBulkLength),
        ),
        (
            "$4294967297",
            Some(InvalidBulkLength),
            Some(InvalidBulkLength),
            Some(InvalidBulkLength),
        ),
        (
            "$9223372036854775807",
            Some(InvalidBulkLength),
            Some(InvalidBulkLength),
            Some(InvalidBulkLength),
        ),
        (
            "$9223372036854775808",
            Some(InvalidBulkLength),
            Some(InvalidBulkLength),
            Some(InvalidBulkLength),
        ),
        (
            "$18446744073709551616",
            Some(InvalidBulkLength),
            Some(InvalidBulkLength),
            Some(InvalidBulkLength),
        ),
    ];
    for (header, default, server, unbounded) in cases {
        for (limits, want) in [
            (Limits::default(), default),
            (Limits::redis_server(), server),
            (UNBOUNDED, unbounded),
        ] {
            let req = format!("*2\r\n$3\r\nGET\r\n{header}\r\n");
            let got = request(limits, req.as_bytes());
            match want {
                Some(e) => assert_eq!(
                    got.as_ref().err(),
                    Some(e),
                    "request {header} with {limits:?}"
                ),
                None => assert_eq!(got, Ok(None), "request {header} with {limits:?}"),
            }
            let got = reply(limits, format!("{header}\r\n").as_bytes());
            match want {
                Some(e) => assert_eq!(
                    got.as_ref().err(),
                    Some(e),
                    "reply {header} with {limits:?}"
                ),
                None => assert_eq!(got, Ok(None), "reply {header} with {limits:?}"),
            }
        }
    }
}

#[test]
fn huge_aggregate_counts_allocate_nothing_up_front() {
    // Every one of these either fails or waits; none may size a Vec by the announced count
    // (that would abort the VM: capacity overflow or out of memory in 4 GiB).
    for header in [
        "*2147483647",
        "*2147483648",
        "*4294967295",
        "*4294967296",
        "*9223372036854775807",
    ] {
        for limits in [Limits::default(), Limits::redis_server(), UNBOUNDED] {
            let wire = format!("{header}\r\n$3\r\nGET\r\n");
            let r = request(limits, wire.as_bytes());
            assert!(matches!(r, Ok(None) | Err(_)), "request {header}: {r:?}");
            for kind in ['*', '%', '~', '>', '|'] {
                let wire = format!("{kind}{}\r\n:1\r\n", &header[1..]);
                let r = reply(limits, wire.as_bytes());
                assert!(matches!(r, Ok(None) | Err(_)), "reply {wire:?}: {r:?}");
            }
        }
    }
    // Within the defaults, the refusal is the documented one.
    assert_eq!(
        request(Limits::default(), b"*4294967296\r\n"),
        Err(DecodeError::InvalidAggregateLength)
    );
    assert_eq!(
        reply(Limits::default(), b"%2147483648\r\n"),
        Err(DecodeError::InvalidAggregateLength)
    );
    assert_eq!(
        reply(UNBOUNDED, b"*4294967296\r\n"),
        Err(DecodeError::InvalidAggregateLength)
    );
}

#[test]
fn deepest_allowed_nesting_decodes_converts_encodes_and_drops_on_a_1_mib_stack() {
    let depth = Limits::DEPTH_CEILING;
    for opener in [
        "*1\r\n",
        "%1\r\n+k\r\n",
        ">1\r\n",
        "|1\r\n+a\r\n+v\r\n*1\r\n",
    ] {
        let levels = if opener.starts_with('|') {
            depth / 2
        } else {
            depth
        };
        let mut wire = opener.repeat(levels).into_bytes();
        wire.extend_from_slice(b":42\r\n");
        let frame = reply(Limits::redis_server(), &wire)
            .unwrap()
            .expect("complete");
        assert_eq!(
            frame.to_vec(),
            wire,
            "{opener:?}: re-encoding gives the same bytes"
        );
        drop(frame);
        // One level more is refused, without recursion.
        let mut too_deep = opener.repeat(levels + 1).into_bytes();
        too_deep.extend_from_slice(b":42\r\n");
        assert_eq!(
            reply(Limits::redis_server(), &too_deep),
            Err(DecodeError::TooDeep),
            "{opener:?}"
        );
    }
    // Far deeper input under every limit at usize::MAX: the ceiling still holds.
    let wire = b"*1\r\n".repeat(100_000);
    assert_eq!(reply(UNBOUNDED, &wire), Err(DecodeError::TooDeep));
}

#[test]
fn requests_cut_at_every_byte_decode_the_same() {
    let mut wire = Vec::new();
    let keys: Vec<String> = (0..40)
        .map(|i| format!("user:{i}:{}", "x".repeat(i)))
        .collect();
    let mget = Command::new(std::iter::once("MGET".to_string()).chain(keys.iter().cloned()));
    wire.extend_from_slice(mget.raw());
    wire.extend_from_slice(b"SET k \"a b\\r\\n\" EX 10\r\n");
    wire.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$5\r\n\r\n\r\n\r\r\n");
    wire.extend_from_slice(b"PING\n");
    let whole = decode_requests(&wire, &[wire.len()]);
    assert_eq!(whole.len(), 4);
    assert_eq!(whole[0].len(), 41);
    assert_eq!(whole[0].arg(40), Some(keys[39].as_bytes()));
    assert_eq!(whole[1].arg(2), Some(&b"a b\r\n"[..]));
    assert_eq!(whole[2].arg(2), Some(&b"\r\n\r\n\r"[..]));
    let one_byte_cuts: Vec<usize> = (1..=wire.len()).collect();
    assert_eq!(decode_requests(&wire, &one_byte_cuts), whole);
    for cut in 0..=wire.len() {
        assert_eq!(
            decode_requests(&wire, &[cut, wire.len()]),
            whole,
            "cut at {cut}"
        );
    }
}

fn decode_requests(wire: &[u8], cuts: &[usize]) -> Vec<Command> {
    let mut dec = RequestDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts {
        buf.extend_from_slice(&wire[from..to]);
        from = to;
        while let Some(c) = dec.decode(&mut buf).expect("valid requests") {
            out.push(c);
        }
    }
    assert!(buf.is_empty() && dec.is_idle());
    out
}

#[test]
fn replies_cut_at_every_byte_decode_the_same() {
    let frames = vec![
        Frame::Array(vec![
            Frame::BulkString("v1".into()),
            Frame::Null,
            Frame::Integer(i64::MIN),
        ]),
        Frame::Map(vec![(Frame::SimpleString("k".into()), Frame::Double(-0.5))]),
        Frame::BigNumber("3492890328409238509324850943850943825024385".into()),
        Frame::Push(vec![
            Frame::BulkString("message".into()),
            Frame::BulkString("ch".into()),
            Frame::BulkString("\r\n".into()),
        ]),
        Frame::Integer(i64::MAX),
    ];
    let wire: Vec<u8> = frames.iter().flat_map(Frame::to_vec).collect();
    for cut in 0..=wire.len() {
        let mut dec = ReplyDecoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in [&wire[..cut], &wire[cut..]] {
            buf.extend_from_slice(piece);
            while let Some(r) = dec.decode(&mut buf).expect("valid replies") {
                got.push(r.to_frame());
            }
        }
        assert_eq!(got, frames, "cut at {cut}");
    }
}
