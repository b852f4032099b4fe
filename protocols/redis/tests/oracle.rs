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

use std::collections::BTreeMap;

use common::frame;
use geomesh_redis::{Bytes, BytesMut, Frame, ReplyDecoder, RequestDecoder};
use proptest::prelude::*;
use redis_protocol::resp2::types::OwnedFrame as O2;
use redis_protocol::resp3::types::{OwnedFrame as O3, VerbatimStringFormat};

/// A comparable normal form: maps and sets sorted and de-duplicated (redis-protocol keeps them
/// in hash containers), attributes dropped, the three nulls merged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Norm {
    Str(&'static str, Vec<u8>),
    Int(i64),
    Double(u64),
    Bool(bool),
    Null,
    Seq(&'static str, Vec<Norm>),
    Map(Vec<(Norm, Norm)>),
    /// A map with a repeated key: which value a hash map keeps is not specified, so such
    /// values are not compared.
    Ambiguous,
}

impl Norm {
    fn ambiguous(&self) -> bool {
        match self {
            Norm::Ambiguous => true,
            Norm::Seq(_, v) => v.iter().any(Norm::ambiguous),
            Norm::Map(p) => p.iter().any(|(k, v)| k.ambiguous() || v.ambiguous()),
            _ => false,
        }
    }
}

fn set(items: Vec<Norm>) -> Norm {
    let mut v = items;
    v.sort();
    v.dedup();
    Norm::Seq("set", v)
}

fn map(pairs: Vec<(Norm, Norm)>) -> Norm {
    let n = pairs.len();
    let m: BTreeMap<Norm, Norm> = pairs.into_iter().collect();
    if m.len() != n {
        return Norm::Ambiguous;
    }
    Norm::Map(m.into_iter().collect())
}

fn double(d: f64) -> Norm {
    Norm::Double(if d == 0.0 { 0 } else { d.to_bits() })
}

fn ours(f: &Frame) -> Norm {
    match f {
        Frame::SimpleString(s) => Norm::Str("simple", s.to_vec()),
        Frame::SimpleError(s) => Norm::Str("error", s.to_vec()),
        Frame::BulkString(s) => Norm::Str("bulk", s.to_vec()),
        Frame::BulkError(s) => Norm::Str("bulkerror", s.to_vec()),
        Frame::BigNumber(s) => Norm::Str("big", s.to_vec()),
        Frame::Verbatim { format, text } => {
            let mut v = format.to_vec();
            v.extend_from_slice(text);
            Norm::Str("verbatim", v)
        }
        Frame::Integer(n) => Norm::Int(*n),
        Frame::Double(d) => double(*d),
        Frame::Boolean(b) => Norm::Bool(*b),
        Frame::Null | Frame::NullBulk | Frame::NullArray => Norm::Null,
        Frame::Array(v) => Norm::Seq("array", v.iter().map(ours).collect()),
        Frame::Push(v) => Norm::Seq("push", v.iter().map(ours).collect()),
        Frame::Set(v) => set(v.iter().map(ours).collect()),
        Frame::Map(p) => map(p.iter().map(|(k, v)| (ours(k), ours(v))).collect()),
        Frame::Attribute { value, .. } => ours(value),
    }
}

fn theirs3(f: &O3) -> Option<Norm> {
    Some(match f {
        O3::SimpleString { data, .. } => Norm::Str("simple", data.clone()),
        O3::SimpleError { data, .. } => Norm::Str("error", data.as_bytes().to_vec()),
        O3::BlobString { data, .. } => Norm::Str("bulk", data.clone()),
        O3::BlobError { data, .. } => Norm::Str("bulkerror", data.clone()),
        O3::BigNumber { data, .. } => Norm::Str("big", data.clone()),
        O3::VerbatimString { data, format, .. } => {
            let mut v = match format {
                VerbatimStringFormat::Text => b"txt".to_vec(),
                VerbatimStringFormat::Markdown => b"mkd".to_vec(),
            };
            v.extend_from_slice(data);
            Norm::Str("verbatim", v)
        }
        O3::Number { data, .. } => Norm::Int(*data),
        O3::Double { data, .. } => double(*data),
        O3::Boolean { data, .. } => Norm::Bool(*data),
        O3::Null => Norm::Null,
        O3::Array { data, .. } => {
            Norm::Seq("array", data.iter().map(theirs3).collect::<Option<_>>()?)
        }
        O3::Push { data, .. } => {
            Norm::Seq("push", data.iter().map(theirs3).collect::<Option<_>>()?)
        }
        O3::Set { data, .. } => set(data.iter().map(theirs3).collect::<Option<_>>()?),
        O3::Map { data, .. } => map(data
            .iter()
            .map(|(k, v)| Some((theirs3(k)?, theirs3(v)?)))
            .collect::<Option<_>>()?),
        // HELLO and streamed chunks: types we do not decode as replies.
        O3::Hello { .. } | O3::ChunkedString(_) => return None,
    })
}

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

fn theirs2(f: &O2) -> Norm {
    match f {
        O2::SimpleString(s) => Norm::Str("simple", s.clone()),
        O2::Error(s) => Norm::Str("error", s.as_bytes().to_vec()),
        O2::Integer(n) => Norm::Int(*n),
        O2::BulkString(s) => Norm::Str("bulk", s.clone()),
        O2::Array(v) => Norm::Seq("array", v.iter().map(theirs2).collect()),
        O2::Null => Norm::Null,
    }
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
