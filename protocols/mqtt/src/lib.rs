//! geomesh-mqtt: a sans-IO MQTT 3.1.1 and 5.0 codec, and the pure logic of sharding MQTT over
//! the brokers of a routing table.
//!
//! Bytes in, values out; no IO, no clock, no threads, no `unsafe`. The same code runs natively
//! under test and inside a Proxy-Wasm VM.
//!
//! * [`Decoder`] turns one direction of a connection into [`Decoded`] packets (the typed
//!   [`Packet`] plus the exact bytes it came in, to forward unchanged or with its packet
//!   identifier patched); [`Packet::encode`] writes packets the proxy builds or rewrites.
//!   Every length is checked against [`Limits`] before anything is allocated or awaited;
//!   errors carry the MQTT 5.0 reason code to answer with ([`Error::reply`]).
//! * [`topic`], [`route`]: topic names and filters, `$share`, `$SYS`, and which broker carries
//!   a topic or must hold a subscription.
//! * [`merge`]: the brokers' CONNACKs, SUBACKs and UNSUBACKs merged into the one answer the
//!   client sees.
//! * [`packet_ids`], [`flow`], [`alias`]: packet identifiers remapped per broker, Receive
//!   Maximum shared out, topic aliases resolved.
//! * [`replay`]: the CONNECT replayed on each broker (one client identifier, the will only
//!   where its topic lives, a share of the Receive Maximum).
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

pub mod alias;
mod decoder;
mod error;
pub mod flow;
mod limits;
pub mod merge;
pub mod packet;
pub mod packet_ids;
pub mod properties;
pub mod reason;
pub mod replay;
pub mod route;
pub mod session;
pub mod topic;
mod wire;

pub use bytes::{Bytes, BytesMut};
pub use decoder::{Decoded, Decoder};
pub use error::{msg, Error};
pub use limits::Limits;
pub use packet::{
    Ack, Auth, ConnAck, Connect, Disconnect, Packet, PacketType, Publish, QoS, RetainHandling, SubAck,
    Subscribe, SubscribeOptions, Subscription, UnsubAck, Unsubscribe, Version, Will,
};
pub use properties::Properties;
pub use reason::ReasonCode;
pub use session::{session, session_with_seed, Mqtt, MqttSession, Settings};
