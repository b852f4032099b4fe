//! Client requests: the request decoder must never panic, must give the same commands however
//! the bytes are cut, every command's bytes must re-decode to the same arguments, sub-commands
//! built from it must decode to the chosen arguments, the command table must answer without
//! panicking (key positions within the arguments), and where redis-protocol's RESP2 decoder
//! also accepts a leading RESP array of bulk strings, both must agree.
//!
//! Input: byte 0 picks the chunk size for the cut feed, the rest is the client's byte stream.
#![no_main]

use geomesh_redis::commands::{self, Category};
use geomesh_redis::{BytesMut, Command, DecodeError, Limits, RequestDecoder};
use libfuzzer_sys::fuzz_target;
use redis_protocol::resp2::types::OwnedFrame as O2;

mod common;

use common::{decode_in_chunks, small_limits};

fn decode_all(input: &[u8], chunk: usize) -> (Vec<Command>, Option<DecodeError>) {
    let mut dec = RequestDecoder::new(small_limits());
    decode_in_chunks(input, chunk, |buf| dec.decode(buf))
}

fn check_table(cmd: &Command) {
    let Ok(spec) = commands::lookup(cmd) else {
        return;
    };
    if let Ok(keys) = spec.keys(cmd) {
        let n = keys.len();
        let positions: Vec<usize> = keys.collect();
        assert_eq!(positions.len(), n);
        assert!(
            positions.iter().all(|&i| i > 0 && i < cmd.len()),
            "{cmd:?}: {positions:?}"
        );
    }
    let _ = spec.timeout(cmd);
    let ch = spec.channels(cmd);
    assert!(ch.end <= cmd.len());
    if let Category::PubSub(_) = spec.category {
        let _ = commands::publish_payload(cmd);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let (whole, whole_err) = decode_all(input, input.len());
    let (cut, cut_err) = decode_all(input, usize::from(ctl % 17) + 1);
    assert_eq!(whole, cut, "commands differ with chunk {}", ctl % 17 + 1);
    assert_eq!(whole_err, cut_err);

    for cmd in &whole {
        assert!(!cmd.is_empty());
        let args: Vec<&[u8]> = cmd.args().collect();
        // Its RESP bytes decode to the same arguments.
        let mut again = BytesMut::from(cmd.raw().as_ref());
        let back = RequestDecoder::new(Limits::default())
            .decode(&mut again)
            .unwrap()
            .unwrap();
        assert!(again.is_empty());
        assert_eq!(back.args().collect::<Vec<_>>(), args);
        // A sub-command of every other argument, reversed.
        let idx: Vec<usize> = (0..cmd.len()).rev().step_by(2).collect();
        let sub = cmd.subset(&idx).unwrap();
        let mut wire = Vec::new();
        assert!(cmd.write_subset(&idx, &mut wire));
        assert_eq!(sub.raw().as_ref(), &wire[..]);
        let mut b = BytesMut::from(&wire[..]);
        let decoded = RequestDecoder::new(Limits::default())
            .decode(&mut b)
            .unwrap()
            .unwrap();
        let want: Vec<&[u8]> = idx.iter().map(|&i| args[i]).collect();
        assert_eq!(decoded.args().collect::<Vec<_>>(), want);
        assert_eq!(sub.args().collect::<Vec<_>>(), want);
        check_table(cmd);
    }

    // Differential: a leading RESP array, as redis-protocol's RESP2 decoder reads it.
    if let (Some(cmd), Some(b'*')) = (whole.first(), input.first()) {
        if let Ok(Some((O2::Array(items), n))) = redis_protocol::resp2::decode::decode(input) {
            if !cmd.is_inline() && n == cmd.raw().len() && input.starts_with(cmd.raw()) {
                let theirs: Option<Vec<Vec<u8>>> = items
                    .iter()
                    .map(|i| match i {
                        O2::BulkString(b) => Some(b.clone()),
                        _ => None,
                    })
                    .collect();
                let mine: Vec<Vec<u8>> = cmd.args().map(<[u8]>::to_vec).collect();
                assert_eq!(Some(mine), theirs, "resp2 oracle disagrees");
            }
        }
    }
});
