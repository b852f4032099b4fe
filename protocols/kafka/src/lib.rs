//! geomesh-kafka: a sans-IO Kafka codec and the pure logic of sharding Kafka topics over
//! several clusters that look like one to the client.
//!
//! Bytes in, values out; no IO, no clock, no threads, no `unsafe`. The same code runs natively
//! under test and inside a Proxy-Wasm VM.
//!
//! * [`FrameDecoder`] cuts the 4-byte size-prefixed frames off a stream, refusing sizes above
//!   [`Limits`] before buffering them.
//! * [`Request::parse`] reads a request header (v1/v2) and tells an unknown API or version
//!   apart ([`RequestError`]); [`apis::APIS`] lists the APIs and versions the proxy carries.
//! * [`messages`] decodes and encodes the bodies the proxy must read or rewrite (Metadata,
//!   Produce, FindCoordinator, ApiVersions, InitProducerId; group requests are routed by their
//!   leading `group_id`). Record batches are never decoded: [`record_batch`] reads their
//!   header and rewrites an idempotent batch's producer id with its CRC-32C recomputed.
//! * [`logic`]: what a sharding session calls: ApiVersions intersection, virtual node ids,
//!   Metadata merge, Produce split and merge, FindCoordinator rewrite, error answers.
//!
//! Why this codec and not the `kafka-protocol` crate: README.md "Codec".

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::indexing_slicing
    )
)]

pub mod apis;
pub mod codes;
mod crc32c;
mod error;
mod frame;
mod header;
mod limits;
pub mod logic;
pub mod messages;
pub mod record_batch;
pub mod session;
pub mod settings;
pub mod wire;

pub use bytes::{Bytes, BytesMut};
pub use crc32c::crc32c;
pub use error::DecodeError;
pub use frame::{with_size_prefix, FrameDecoder};
pub use header::{parse_response, response_frame, Request, RequestError, RequestHeader};
pub use limits::Limits;
pub use session::{session, session_with_registries, session_with_registry, KafkaProtocol, KafkaSession};
pub use settings::Settings;
