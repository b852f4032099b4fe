//! Server replies: the reply decoder must never panic, must give the same replies however the
//! bytes are cut, its replies must re-encode to equal replies, the value views must walk every
//! reply, and where redis-protocol (RESP3 and RESP2 decoders) also accepts the first reply, both
//! must agree on the value and on its length.
//!
//! Input: byte 0 picks the chunk size for the cut feed, the rest is the server's byte stream.
#![no_main]

use geomesh_redis::{BytesMut, DecodeError, Frame, Limits, Reply, ReplyDecoder};
use libfuzzer_sys::fuzz_target;
use redis_protocol::resp2::types::OwnedFrame as O2;
use redis_protocol::resp3::types::{OwnedFrame as O3, VerbatimStringFormat};

mod common;

use common::{decode_in_chunks, small_limits};

fn decode_all(input: &[u8], chunk: usize) -> (Vec<Reply>, Option<DecodeError>) {
    let mut dec = ReplyDecoder::new(small_limits());
    decode_in_chunks(input, chunk, |buf| dec.decode(buf))
}

/// Visits every value through the view API (explicit stack), touching every accessor.
fn walk(r: &Reply) -> usize {
    let mut seen = 0;
    let mut stack = vec![r.root()];
    while let Some(v) = stack.pop() {
        seen += 1;
        let _ = (
            v.kind(),
            v.raw(),
            v.raw_with_attributes(),
            v.as_bytes(),
            v.as_integer(),
        );
        let _ = (
            v.as_bool(),
            v.as_double(),
            v.verbatim_format(),
            v.is_null(),
            v.is_error(),
        );
        assert!(v.raw_with_attributes().len() >= v.raw().len());
        if let Some(a) = v.attributes() {
            stack.extend(a.elements());
        }
        assert_eq!(v.elements().count(), v.elements().len());
        stack.extend(v.elements());
    }
    seen
}

#[derive(Debug, PartialEq)]
enum Norm {
    Str(&'static str, Vec<u8>),
    Int(i64),
    Double(String),
    Bool(bool),
    Null,
    Seq(&'static str, Vec<Norm>),
    Map(Vec<(Norm, Norm)>),
    Unordered,
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
        Frame::Double(d) => Norm::Double(format!("{d:?}")),
        Frame::Boolean(b) => Norm::Bool(*b),
        Frame::Null | Frame::NullBulk | Frame::NullArray => Norm::Null,
        Frame::Array(v) => Norm::Seq("array", v.iter().map(ours).collect()),
        Frame::Push(v) => Norm::Seq("push", v.iter().map(ours).collect()),
        // Hash containers on the other side: compared only when they hold at most one element.
        Frame::Set(v) if v.len() > 1 => Norm::Unordered,
        Frame::Set(v) => Norm::Seq("set", v.iter().map(ours).collect()),
        Frame::Map(p) if p.len() > 1 => Norm::Unordered,
        Frame::Map(p) => Norm::Map(p.iter().map(|(k, v)| (ours(k), ours(v))).collect()),
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
        O3::Double { data, .. } => Norm::Double(format!("{data:?}")),
        O3::Boolean { data, .. } => Norm::Bool(*data),
        O3::Null => Norm::Null,
        O3::Array { data, .. } => {
            Norm::Seq("array", data.iter().map(theirs3).collect::<Option<_>>()?)
        }
        O3::Push { data, .. } => {
            Norm::Seq("push", data.iter().map(theirs3).collect::<Option<_>>()?)
        }
        O3::Set { data, .. } if data.len() > 1 => Norm::Unordered,
        O3::Set { data, .. } => Norm::Seq("set", data.iter().map(theirs3).collect::<Option<_>>()?),
        O3::Map { data, .. } if data.len() > 1 => Norm::Unordered,
        O3::Map { data, .. } => Norm::Map(
            data.iter()
                .map(|(k, v)| Some((theirs3(k)?, theirs3(v)?)))
                .collect::<Option<_>>()?,
        ),
        O3::Hello { .. } | O3::ChunkedString(_) => return None,
    })
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

fn contains_unordered(n: &Norm) -> bool {
    match n {
        Norm::Unordered => true,
        Norm::Seq(_, v) => v.iter().any(contains_unordered),
        Norm::Map(p) => p
            .iter()
            .any(|(k, v)| contains_unordered(k) || contains_unordered(v)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let (whole, whole_err) = decode_all(input, input.len());
    let (cut, cut_err) = decode_all(input, usize::from(ctl % 17) + 1);
    assert_eq!(whole, cut, "replies differ with chunk {}", ctl % 17 + 1);
    assert_eq!(whole_err, cut_err);

    let mut offset = 0;
    for r in &whole {
        // The reply is exactly the next bytes of the stream.
        assert_eq!(&input[offset..offset + r.raw().len()], r.raw().as_ref());
        offset += r.raw().len();
        assert!(walk(r) <= r.node_count());
        // Re-encoding the owned frame gives a reply that re-encodes identically.
        let once = r.to_frame().to_vec();
        let mut buf = BytesMut::from(&once[..]);
        let again = ReplyDecoder::new(Limits::default())
            .decode(&mut buf)
            .expect("re-encoded frame decodes")
            .expect("re-encoded frame is complete");
        assert!(buf.is_empty());
        assert_eq!(again.to_frame().to_vec(), once);
    }

    // Differential, first reply only; never give the oracle what we refused for depth (it
    // recurses without bound).
    let first = whole.first();
    if first.is_none() && matches!(whole_err, Some(DecodeError::TooDeep)) {
        return;
    }
    if let Some(r) = first {
        let mine = ours(&r.to_frame());
        if let Ok(Some((t, n))) = redis_protocol::resp3::decode::complete::decode(input) {
            if let Some(t) = theirs3(&t) {
                if !contains_unordered(&mine) && !contains_unordered(&t) {
                    assert_eq!(mine, t, "resp3 oracle disagrees");
                    assert_eq!(n, r.raw().len(), "resp3 oracle length");
                }
            }
        }
        if let Ok(Some((t, n))) = redis_protocol::resp2::decode::decode(input) {
            assert_eq!(mine, theirs2(&t), "resp2 oracle disagrees");
            assert_eq!(n, r.raw().len(), "resp2 oracle length");
        }
    }
});
