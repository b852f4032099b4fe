//! geomesh-redis: a sans-IO RESP2/RESP3 codec, the Redis command table and the sharding session.
//!
//! Bytes in, values out; no IO, no clock, no threads, no `unsafe`. The same code runs natively
//! under test and inside a Proxy-Wasm VM.
//!
//! * [`RequestDecoder`] turns client bytes into [`Command`]s (RESP arrays of bulk strings, or
//!   inline commands such as `PING\r\n`). A command keeps the exact bytes it arrived in plus the
//!   offsets of its arguments, so it can be forwarded untouched ([`Command::raw`]) or cut into a
//!   sub-command holding a subset of its arguments ([`Command::write_subset`]).
//! * [`ReplyDecoder`] turns server bytes into [`Reply`]s: every RESP2 and RESP3 type, decoded
//!   onto a flat tape of nodes over the reply's own bytes (no tree, no copies). A reply is
//!   forwarded with [`Reply::raw`] or taken apart with [`Reply::root`] / [`Value`].
//! * [`Frame`] is an owned RESP value for the replies a proxy builds itself, with an encoder.
//! * [`commands`] says, for every command, where its keys are and what a router must do with it.
//! * [`RedisSession`] is the `geomesh_core::Session` of the Redis filter: it routes, splits and
//!   merges requests over the clusters of a routing table (settings: [`Settings`], the `redis:`
//!   section of the configuration).
//!
//! Both decoders have the tokio-util `Decoder` shape without the dependency:
//! `decode(&mut self, src: &mut BytesMut) -> Result<Option<T>, DecodeError>`, `Ok(None)` meaning
//! "need more bytes". They are streaming state machines with an explicit stack (no recursion),
//! resume where they stopped (a frame delivered one byte at a time costs O(n) in total), and
//! check every length read off the wire against [`Limits`] before allocating anything.

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

pub mod commands;
mod encode;
mod error;
mod frame;
mod limits;
mod lines;
mod reply;
mod request;
mod session;
pub mod settings;

pub use bytes::{Bytes, BytesMut};
pub use commands::{lookup, Category, CommandSpec, LookupError};
pub use encode::{
    write_array_header, write_bulk, write_command, write_error, write_integer, write_map_header,
    write_null, write_push_header, write_set_header, write_simple, Protocol,
};
pub use error::DecodeError;
pub use frame::Frame;
pub use limits::Limits;
pub use reply::{Elements, Kind, Reply, ReplyDecoder, Value};
pub use request::{Args, Command, RequestDecoder};
pub use session::RedisSession;
pub use settings::Settings;
