//! geomesh-kit: the pipeline every sharding filter shares, and the kit to test a protocol on it.
//!
//! ```text
//!  client bytes ──▶ Protocol::decode_request ──▶ Protocol::plan ──┬─ Forward ──────────▶ one link
//!                                                                 ├─ Split / dispatch ─▶ a part per link
//!                                                                 ├─ Broadcast ────────▶ every active cluster
//!                                                                 ├─ store_and_send ───▶ local + links (replayed later)
//!                                                                 └─ Local / Refuse / Close (answered in turn)
//!                       pending queue, client order: [entry][entry][entry] ... deadlines
//!  link bytes ──▶ Protocol::decode_answer ──▶ Protocol::classify ─┬─ answer ─▶ slot ─▶ part ─▶ Protocol::merge ─▶ client, in order
//!                                                                 └─ push ───▶ client now (between whole answers)
//!  link closed / silent ──▶ Failure ──▶ Protocol::failure_answer (or the merge, part by part)
//! ```
//!
//! A protocol crate implements [`Protocol`] (request and answer framing, a planner, merges, how
//! a failure reads to its clients) and gets a [`geomesh_core::Session`] from [`Pipeline`]: the
//! pending-request queue in client order, per-link answer slots, fragment bookkeeping, broadcast,
//! the replay store, per-request deadlines and link failures, server push, flush and close, and
//! metrics (per request type, per cluster, per pipeline event). The mux (`geomesh-frame`), the
//! Proxy-Wasm shell (`filters/shell`) and the bridge know nothing of the protocol.
//!
//! Sans-IO like the rest of the protocol crates: bytes in, [`geomesh_core::Action`]s out, `now`
//! passed in; the same code runs natively under test and in the filters' Wasm VM.
//!
//! [`testkit`] (feature `testkit`) drives a session against scripted shards the way the host
//! does, for the protocol crates' unit tests and fuzz targets.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod core;
mod ctx;
mod entry;
mod failure;
mod link;
mod pipeline;
mod protocol;
pub mod replay;
// Test support only (never in a filter): a scripted harness may panic on a broken test.
#[cfg(feature = "testkit")]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
pub mod testkit;

pub use ctx::{Ctx, MergeCx, PartSend, StoreTargets};
pub use pipeline::{Limits, Pipeline};
pub use protocol::{Answer, Disposition, Failure, Part, Plan, Protocol, SlotView};
pub use replay::{ReplayStore, Stored};
