//! geomesh-influx: InfluxDB 1.x sharding, sans-IO.
//!
//! The InfluxDB filter (`filters/influx`, an HTTP filter) asks this crate what to do with each
//! request and carries the answer out; nothing here does IO or reads a clock.
//!
//! * [`line`]: the line-protocol scanner (points, measurements, timestamps; escapes and quoted
//!   strings as InfluxDB reads them).
//! * [`lex`] and [`query`]: InfluxQL statements split and classified, each routed by its FROM.
//! * [`write`]: a `/write` body split per shard, timestamps stamped once per request, the
//!   shards' answers merged (partial writes, shards down).
//! * [`key`]: the shard key (the measurement; (database, measurement) for `hash` routes).
//! * [`from`]: the sources of a statement's FROM lists.
//! * [`limits`]: LIMIT/OFFSET/SLIMIT/SOFFSET applied after a merge where shards cannot.
//! * [`merge`]: `/query` answers merged per statement (JSON, chunked JSON as one `influxd`
//!   writes it), [`csv`]: the same as InfluxDB's CSV.
//! * [`request`]: the entry point: headers, then the body when needed, give a [`plan::Plan`].
//! * [`settings`]: the `influxdb:` section of the configuration.

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

pub mod csv;
pub mod from;
pub mod gzip;
pub mod key;
pub mod lex;
pub mod limits;
pub mod line;
pub mod merge;
pub mod params;
pub mod plan;
pub mod query;
pub mod replies;
pub mod request;
pub mod settings;
pub mod write;

pub use plan::{Answer, Call, Merge, Plan, Reply};
pub use request::{on_body, on_headers, AtHeaders, Head};
pub use settings::Settings;

/// Merges the answers of a fan-out (`answers` in the order of its calls).
pub fn merge(merge: &Merge, answers: &[Answer]) -> Reply {
    match merge {
        Merge::Write(m) => write::merge_write(m, answers),
        Merge::Query(m) => merge::merge_query(m, answers),
    }
}
