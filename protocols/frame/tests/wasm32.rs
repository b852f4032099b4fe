//! GMB/1 framing on wasm32-unknown-unknown (32-bit `usize`), where the filters split the bridge's
//! byte stream (scripts/test-wasm.sh, `make test-wasm`). The crate's unit tests (framing and the
//! channel mux) run there too; these add the header lengths at the edges of `u32` and a stream
//! of every frame kind cut at every byte.
#![cfg(target_arch = "wasm32")]

use geomesh_frame::{
    encode_close, encode_closed, encode_data, encode_error, encode_hello, encode_open, encode_wake,
    encode_wake_reply, split_frame, CloseCode, FrameError, Header, Kind, HEADER_LEN, MAX_PAYLOAD,
};
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn usize_is_32_bits_here() {
    assert_eq!(usize::BITS, 32);
}

#[test]
fn header_lengths_at_the_edges_of_u32() {
    // (length field, parsed length or error, what a buffer holding only the header splits to)
    for (len, want, split) in [
        (0u32, Ok(0usize), Ok(Some(HEADER_LEN))),
        (MAX_PAYLOAD as u32, Ok(MAX_PAYLOAD), Ok(None)),
        (
            MAX_PAYLOAD as u32 + 1,
            Err(FrameError::TooLong(MAX_PAYLOAD + 1)),
            Err(FrameError::TooLong(MAX_PAYLOAD + 1)),
        ),
        (
            i32::MAX as u32,
            Err(FrameError::TooLong(i32::MAX as usize)),
            Err(FrameError::TooLong(i32::MAX as usize)),
        ),
        (
            u32::MAX - HEADER_LEN as u32,
            Err(FrameError::TooLong(usize::MAX - HEADER_LEN)),
            Err(FrameError::TooLong(usize::MAX - HEADER_LEN)),
        ),
        (
            u32::MAX,
            Err(FrameError::TooLong(usize::MAX)),
            Err(FrameError::TooLong(usize::MAX)),
        ),
    ] {
        let mut buf = len.to_be_bytes().to_vec();
        buf.extend_from_slice(&[Kind::Data as u8, 0, 9]);
        assert_eq!(
            Header::parse(&buf).map(|h| h.map(|h| h.len)),
            want.map(Some),
            "length {len}"
        );
        assert_eq!(
            split_frame(&buf).map(|f| f.map(|(_, n)| n)),
            split,
            "length {len}"
        );
    }
}

#[test]
fn a_stream_of_every_kind_splits_the_same_at_every_cut() {
    let mut wire = Vec::new();
    encode_hello(&mut wire, "redis:6379");
    encode_open(&mut wire, 65535, u32::MAX, 0, "redis2-master");
    encode_data(&mut wire, Kind::Data, 65535, b"*1\r\n$4\r\nPING\r\n");
    encode_data(&mut wire, Kind::BridgeData, 1, b"+OK\r\n");
    encode_data(&mut wire, Kind::BridgeData, 1, &[]); // writes nothing
    encode_wake(&mut wire, u64::MAX, u32::MAX);
    encode_wake_reply(&mut wire, u64::MAX);
    encode_closed(&mut wire, 7, CloseCode::Stalled, "no reply in 5000 ms");
    encode_close(&mut wire, 7);
    encode_error(&mut wire, "bad hello");
    let whole = split_all(&[&wire]);
    assert_eq!(whole.len(), 9);
    for cut in 0..=wire.len() {
        assert_eq!(
            split_all(&[&wire[..cut], &wire[cut..]]),
            whole,
            "cut at {cut}"
        );
    }
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    assert_eq!(split_all(&bytes), whole);
}

/// Feeds `pieces` in order to a buffer, splitting whole frames off as they complete.
fn split_all(pieces: &[&[u8]]) -> Vec<(Kind, u16, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for p in pieces {
        buf.extend_from_slice(p);
        while let Some((f, n)) = split_frame(&buf).expect("valid frames") {
            out.push((f.kind, f.chan, f.payload.to_vec()));
            buf.drain(..n);
        }
    }
    assert!(buf.is_empty());
    out
}

#[test]
fn data_past_max_payload_is_chunked_into_maximal_frames() {
    let data = vec![0xa5u8; MAX_PAYLOAD + 1];
    let mut wire = Vec::new();
    encode_data(&mut wire, Kind::Data, 3, &data);
    let frames = split_all(&[&wire]);
    assert_eq!(
        frames.iter().map(|f| f.2.len()).collect::<Vec<_>>(),
        [MAX_PAYLOAD, 1]
    );
}
