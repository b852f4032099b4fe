//! Client bytes: the framer, the header parser and every request decoder must never panic; a
//! refused request gets an answer or a named close; what a decoder accepts re-encodes to bytes
//! the kafka-protocol oracle reads as the same message (fuzz_targets/kafka/mod.rs).
//!
//! Input: the client's byte stream (size-prefixed frames), cut into frames with a 64 KiB limit.
#![no_main]
#![feature(alloc_error_hook)]

use geomesh_kafka::logic::errors::{refuse, Refusal};
use geomesh_kafka::{BytesMut, FrameDecoder, Request};
use libfuzzer_sys::fuzz_target;

mod kafka;

#[global_allocator]
static ALLOC: kafka::CappedAlloc = kafka::CappedAlloc;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut frames = FrameDecoder::new(64 << 10);
    while let Ok(Some(frame)) = frames.decode(&mut buf) {
        match Request::parse(frame) {
            Ok(req) => kafka::request(&req),
            Err(e) => match refuse(&e) {
                Refusal::Answer(out) => assert!(out.len() > 8),
                Refusal::Close(reason) => assert!(!reason.is_empty()),
            },
        }
    }
});
