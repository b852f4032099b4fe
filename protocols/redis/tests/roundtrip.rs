//! Property tests: encode then decode gives back what was encoded, however the bytes are cut.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;

use common::{command_args, cuts, frame};
use geomesh_redis::{BytesMut, Command, Frame, ReplyDecoder, RequestDecoder};
use proptest::prelude::*;

/// Feeds `wire` to a reply decoder in the pieces `cuts` makes; returns the frames.
fn decode_replies(wire: &[u8], cuts: &[usize]) -> Vec<(Frame, Vec<u8>)> {
    let mut dec = ReplyDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts {
        buf.extend_from_slice(&wire[from..to]);
        from = to;
        while let Some(r) = dec.decode(&mut buf).expect("valid encoding") {
            out.push((r.to_frame(), r.raw().to_vec()));
        }
    }
    assert!(buf.is_empty(), "bytes left over");
    assert!(dec.is_idle());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn frames_round_trip_at_random_split_points(
        frames in proptest::collection::vec(frame(true, true, 5), 1..5),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let encoded: Vec<Vec<u8>> = frames.iter().map(Frame::to_vec).collect();
        let wire: Vec<u8> = encoded.concat();
        let got = decode_replies(&wire, &cuts(wire.len(), &raw_cuts));
        prop_assert_eq!(got.len(), frames.len());
        for ((f, raw), (want, enc)) in got.iter().zip(frames.iter().zip(encoded.iter())) {
            prop_assert_eq!(f, want);
            prop_assert_eq!(raw, enc);
        }
    }

    #[test]
    fn frames_round_trip_one_byte_at_a_time(f in frame(true, true, 4)) {
        let wire = f.to_vec();
        let all: Vec<usize> = (0..=wire.len()).collect();
        let got = decode_replies(&wire, &all);
        prop_assert_eq!(got.len(), 1);
        prop_assert_eq!(&got[0].0, &f);
    }

    #[test]
    fn value_views_agree_with_frames(f in frame(true, false, 4)) {
        let wire = f.to_vec();
        let mut buf = BytesMut::from(&wire[..]);
        let r = ReplyDecoder::default().decode(&mut buf).unwrap().unwrap();
        // Walk the tape with the view API (explicit stack) and re-encode from raw slices.
        let mut rebuilt = Vec::new();
        let mut stack = vec![vec![r.root()].into_iter()];
        while let Some(top) = stack.last_mut() {
            match top.next() {
                None => { stack.pop(); }
                Some(v) if v.kind().is_aggregate() => {
                    let header_len = v.raw().len() - v.elements().map(|e| e.raw_with_attributes().len()).sum::<usize>();
                    rebuilt.extend_from_slice(&v.raw()[..header_len]);
                    stack.push(v.elements().collect::<Vec<_>>().into_iter());
                }
                Some(v) => rebuilt.extend_from_slice(v.raw()),
            }
        }
        prop_assert_eq!(rebuilt, wire);
    }

    #[test]
    fn commands_round_trip_at_random_split_points(
        cmds in proptest::collection::vec(command_args(), 1..8),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let wire: Vec<u8> = cmds.iter().flat_map(|a| Command::new(a).into_raw().to_vec()).collect();
        let mut dec = RequestDecoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut from = 0;
        for to in cuts(wire.len(), &raw_cuts) {
            buf.extend_from_slice(&wire[from..to]);
            from = to;
            while let Some(c) = dec.decode(&mut buf).unwrap() {
                got.push(c);
            }
        }
        prop_assert_eq!(got.len(), cmds.len());
        for (c, want) in got.iter().zip(cmds.iter()) {
            let args: Vec<Vec<u8>> = c.args().map(<[u8]>::to_vec).collect();
            prop_assert_eq!(&args, want);
            prop_assert_eq!(c, &Command::new(want));
            // Every subset re-decodes to the chosen arguments.
            let idx: Vec<usize> = (0..c.len()).rev().step_by(2).collect();
            let mut sub = BytesMut::new();
            prop_assert!(c.write_subset(&idx, &mut sub));
            let back = RequestDecoder::default().decode(&mut sub).unwrap().unwrap();
            let picked: Vec<&[u8]> = idx.iter().map(|&i| want[i].as_slice()).collect();
            prop_assert_eq!(back.args().collect::<Vec<_>>(), picked);
        }
    }

    /// Inline commands of printable words decode like their RESP form.
    #[test]
    fn inline_commands_match_resp(
        name in "[A-Za-z]{1,8}",
        rest in proptest::collection::vec("[!#-&(-~]{1,10}", 0..8),
    ) {
        let mut words = vec![name];
        words.extend(rest);
        let line = format!("{}\r\n", words.join(" "));
        let mut buf = BytesMut::from(line.as_bytes());
        let c = RequestDecoder::default().decode(&mut buf).unwrap().unwrap();
        prop_assert!(c.is_inline());
        let resp = Command::new(&words);
        prop_assert_eq!(c.raw(), resp.raw());
    }
}
