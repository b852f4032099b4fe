//! Broker bytes: every response decoder the proxy uses must never panic, and what it accepts
//! re-encodes to bytes the kafka-protocol oracle reads as the same message; merges built on
//! what it decoded must not panic either (fuzz_targets/kafka/mod.rs).
//!
//! Input: byte 0 picks the API (of those the proxy decodes answers of), byte 1 the version
//! (within the proxy's range for it), the rest is the response body (after its header).
#![no_main]
#![feature(alloc_error_hook)]

use geomesh_kafka::apis::lookup;
use geomesh_kafka::Bytes;
use libfuzzer_sys::fuzz_target;

mod kafka;

#[global_allocator]
static ALLOC: kafka::CappedAlloc = kafka::CappedAlloc;

fuzz_target!(|data: &[u8]| {
    let [a, v, body @ ..] = data else {
        return;
    };
    let api_key = kafka::RESPONSE_APIS[usize::from(*a) % kafka::RESPONSE_APIS.len()];
    let Some(spec) = lookup(api_key) else {
        return;
    };
    let span = (spec.max - spec.min + 1) as u8;
    let version = spec.min + i16::from(*v % span);
    kafka::response(api_key, version, Bytes::copy_from_slice(body));
});
