//! Server replies: the reply decoder must never panic, must give the same replies however the
//! bytes are cut, its replies must re-encode to equal replies, the value views must walk every
//! reply, and where redis-protocol (RESP3 and RESP2 decoders) also accepts the first reply, both
//! must agree on the value and on its length.
//!
//! Input: byte 0 picks the chunk size for the cut feed, the rest is the server's byte stream.
#![no_main]

use geomesh_redis::{BytesMut, DecodeError, Limits, Reply, ReplyDecoder};
use libfuzzer_sys::fuzz_target;

mod common;
// The normal form and comparison rules of the proptest oracle (protocols/redis/tests/oracle.rs).
#[path = "../../protocols/redis/tests/common/norm.rs"]
mod norm;

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
        let mine = norm::ours(&r.to_frame());
        if let Ok(Some((t, n))) = redis_protocol::resp3::decode::complete::decode(input) {
            if let Some(t) = norm::theirs3(&t) {
                if !mine.ambiguous() && !t.ambiguous() {
                    assert_eq!(mine, t, "resp3 oracle disagrees");
                    assert_eq!(n, r.raw().len(), "resp3 oracle length");
                }
            }
        }
        if let Ok(Some((t, n))) = redis_protocol::resp2::decode::decode(input) {
            assert_eq!(mine, norm::theirs2(&t), "resp2 oracle disagrees");
            assert_eq!(n, r.raw().len(), "resp2 oracle length");
        }
    }
});
