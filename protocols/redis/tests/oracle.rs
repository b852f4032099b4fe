//! Differential tests against the `redis-protocol` crate (v6), used as an oracle only.
//!
//! Where both decoders accept the same bytes, they must agree on the value and on the number
//! of bytes consumed. Where they differ in what they accept, the difference must be one of the
//! documented ones (README.md: redis-protocol skips the CRLF check after a payload, rejects
//! aggregate map keys and set members, verbatim formats other than txt/mkd, and attributes on
//! null; we reject non-canonical integers and bare CR/LF in lines).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;
#[path = "common/norm.rs"]
mod norm;

use common::frame;
use geomesh_redis::{Bytes, BytesMut, Frame, ReplyDecoder, RequestDecoder};
use norm::{ours, theirs2, theirs3, Norm};
use proptest::prelude::*;
use redis_protocol::resp2::types::OwnedFrame as O2;

fn decode_ours(wire: &[u8]) -> Result<Option<(Frame, usize)>, geomesh_redis::DecodeError> {
    let mut buf = BytesMut::from(wire);
    Ok(ReplyDecoder::default()
        .decode(&mut buf)?
        .map(|r| (r.to_frame(), r.raw().len())))
}

fn decode_theirs(wire: &[u8]) -> Option<(Norm, usize)> {
    match redis_protocol::resp3::decode::complete::decode(wire) {
        Ok(Some((f, n))) => theirs3(&f).map(|norm| (norm, n)),
        _ => None,
    }
}

/// Compares both decoders on `wire`; returns whether both accepted it.
fn compare(wire: &[u8]) -> Result<bool, TestCaseError> {
    let mine = decode_ours(wire);
    // Never hand the oracle what we refused for depth: it recurses and would overflow.
    if matches!(mine, Err(geomesh_redis::DecodeError::TooDeep)) {
        return Ok(false);
    }
    let theirs = decode_theirs(wire);
    match (mine, theirs) {
        (Ok(Some((f, n))), Some((t, m))) => {
            let f = ours(&f);
            if f.ambiguous() || t.ambiguous() {
                return Ok(false);
            }
            prop_assert_eq!(f, t, "values differ on {:?}", Bytes::copy_from_slice(wire));
            prop_assert_eq!(n, m, "consumed lengths differ");
            Ok(true)
        }
        _ => Ok(false),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn valid_frames_agree(f in frame(true, true, 4)) {
        let wire = f.to_vec();
        let (mine, n) = decode_ours(&wire).unwrap().unwrap();
        prop_assert_eq!(n, wire.len());
        prop_assert_eq!(&mine, &f);
        compare(&wire)?;
    }

    #[test]
    fn mutated_frames_agree_where_both_accept(
        f in frame(true, false, 3),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
        cut in any::<usize>(),
    ) {
        let mut wire = f.to_vec();
        for (at, byte) in edits {
            let i = at % wire.len();
            wire[i] = byte;
        }
        wire.truncate(wire.len() - cut % (wire.len() / 4 + 1));
        compare(&wire)?;
    }

    #[test]
    fn requests_agree_with_resp2_arrays(
        args in common::command_args(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..2),
    ) {
        let mut wire = geomesh_redis::Command::new(&args).into_raw().to_vec();
        for (at, byte) in edits {
            let i = at % wire.len();
            wire[i] = byte;
        }
        let mut buf = BytesMut::from(&wire[..]);
        let mine = RequestDecoder::default().decode(&mut buf);
        let theirs = redis_protocol::resp2::decode::decode(&wire);
        if let (Ok(Some(cmd)), Ok(Some((O2::Array(items), n)))) = (&mine, &theirs) {
            if wire.first() == Some(&b'*') && cmd.raw().len() == *n {
                let theirs: Option<Vec<Vec<u8>>> = items
                    .iter()
                    .map(|i| match i { O2::BulkString(b) => Some(b.clone()), _ => None })
                    .collect();
                let mine: Vec<Vec<u8>> = cmd.args().map(<[u8]>::to_vec).collect();
                prop_assert_eq!(Some(mine), theirs);
            }
        }
    }
}

/// What redis-protocol's RESP3 decoder can represent: no RESP2 nulls, UTF-8 simple errors,
/// verbatim formats txt/mkd, no aggregate as a map key or set member.
fn oracle_representable(f: &Frame) -> bool {
    let hashable = |f: &Frame| {
        !matches!(
            f,
            Frame::Array(_)
                | Frame::Map(_)
                | Frame::Set(_)
                | Frame::Push(_)
                | Frame::Attribute { .. }
        )
    };
    match f {
        Frame::NullBulk | Frame::NullArray => false,
        Frame::SimpleError(s) => std::str::from_utf8(s).is_ok(),
        Frame::Verbatim { format, .. } => format == b"txt" || format == b"mkd",
        Frame::Array(v) | Frame::Push(v) => v.iter().all(oracle_representable),
        Frame::Set(v) => v.iter().all(|e| hashable(e) && oracle_representable(e)),
        Frame::Map(p) => p
            .iter()
            .all(|(k, v)| hashable(k) && oracle_representable(k) && oracle_representable(v)),
        Frame::Attribute { .. } => false,
        _ => true,
    }
}

/// The oracle must not be vacuous: on valid frames it can represent, both decoders accept
/// (and agree) nearly always.
#[test]
fn oracle_accepts_what_it_can_represent() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = frame(true, false, 3);
    let (mut both, mut total) = (0, 0);
    while total < 2000 {
        let f = strategy.new_tree(&mut runner).unwrap().current();
        if !oracle_representable(&f) {
            continue;
        }
        total += 1;
        if compare(&f.to_vec()).unwrap() {
            both += 1;
        }
    }
    // The rest: maps with a repeated key (not compared).
    assert!(
        both * 100 >= total * 95,
        "both accepted only {both} of {total}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// RESP2 replies against redis-protocol's RESP2 decoder (which, unlike its RESP3 one,
    /// takes `$-1` and `*-1`).
    #[test]
    fn resp2_frames_agree(
        f in frame(false, false, 4),
        cut in any::<usize>(),
    ) {
        let wire = f.to_vec();
        let wire = &wire[..wire.len() - cut % 3];
        let mine = decode_ours(wire).unwrap();
        match redis_protocol::resp2::decode::decode(wire) {
            Ok(Some((t, n))) => {
                let (m, len) = mine.expect("oracle complete, ours not");
                prop_assert_eq!(ours(&m), theirs2(&t));
                prop_assert_eq!(len, n);
            }
            Ok(None) => prop_assert!(mine.is_none()),
            // Non-UTF-8 simple errors.
            Err(_) => {}
        }
    }
}

/// Known cases where the two decoders differ on purpose (see README.md).
#[test]
fn documented_differences() {
    // redis-protocol does not check the CRLF after a payload; we do.
    let w = b"$3\r\nabcXY";
    assert!(decode_theirs(w).is_some());
    assert!(decode_ours(w).is_err());
    // Aggregate map keys are legal RESP3; redis-protocol refuses them.
    let w = b"%1\r\n*1\r\n:1\r\n:2\r\n";
    assert!(decode_theirs(w).is_none());
    assert!(decode_ours(w).unwrap().is_some());
    // A set of arrays, likewise.
    let w = b"~1\r\n*0\r\n";
    assert!(decode_theirs(w).is_none());
    assert!(decode_ours(w).unwrap().is_some());
    // RESP2 nulls inside its RESP3 decoder.
    for w in [&b"$-1\r\n"[..], b"*-1\r\n", b"*1\r\n$-1\r\n"] {
        assert!(redis_protocol::resp3::decode::complete::decode(w).is_err());
        assert!(decode_ours(w).unwrap().is_some());
    }
    // Simple errors that are not UTF-8.
    let w = b"-ERR \xff\r\n";
    assert!(decode_theirs(w).is_none());
    assert!(decode_ours(w).unwrap().is_some());
    // Non-canonical integers: redis-protocol takes `+5` and `007`, Redis never sends them.
    for w in [&b":+5\r\n"[..], b":007\r\n"] {
        assert!(decode_theirs(w).is_some());
        assert!(decode_ours(w).is_err());
    }
}
