//! geomesh's InfluxDB 1.x HTTP filter (Proxy-Wasm, `envoy.filters.http.wasm`).
//!
//! A thin shell over `geomesh-influx`, where every decision is made and tested natively. This
//! crate only
//!
//! * parses the configuration once per root context (`on_configure`; a bad one is refused with
//!   a log line naming the field, and the filter then answers 500);
//! * per request: reads method, path and the few headers that matter as bytes and asks
//!   [`geomesh_influx::on_headers`]; when the plan needs the body (POST /write, POST /query), lets
//!   Envoy buffer it (bounded by `max_body_bytes`, 413 above) and asks
//!   [`geomesh_influx::on_body`] at its end;
//! * carries the plan out: **forward** at the headers (a request without a body) = the cluster
//!   header for the route's `cluster_header` plus `clear_route_cache`, and Envoy's router does
//!   the rest; **forward** of a read body = one `dispatch_http_call` with the body as received,
//!   the answer relayed (Envoy no longer lets a filter change request headers once they went
//!   on, and a Wasm filter pausing at the headers gets no body: the listener must put
//!   `envoy.filters.http.buffer` after this filter to hold the headers); **fan-out** = one `dispatch_http_call` per shard (timeout
//!   `upstream_timeout_ms`), the answers gathered (no answer, or one over `max_answer_bytes`,
//!   counts as none) and merged by [`geomesh_influx::merge`], written with `send_http_response`;
//!   **reply** = `send_http_response`;
//! * with `replay_cluster`: once a split write's answers are in, each part whose shard failed
//!   (no answer, 5xx) is posted to the agent's replay queue (`POST /v1/influx/queue?cluster=..`,
//!   the part's exact lines); the merge then counts a part the agent stored (204) as written and
//!   says why one it did not store was lost (`replay queue full` / `replay queue unavailable`);
//!   a relayed one-shard write whose shard failed becomes such a part too;
//! * records the kit's metrics (`metrics.rs`: per request type, per shard cluster, per plan).
//!
//! Files: `fanout.rs` carries plans out, `http.rs` holds the Proxy-Wasm callbacks,
//! `metrics.rs` the metrics.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod fanout;
mod http;
mod metrics;

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use geomesh_core::{Metric, RoutingTable, WorkloadType};
use geomesh_filter_shell::stats::{count_accepted, count_rejected, Stats};
use geomesh_influx::request::is_write;
use geomesh_influx::write::{
    forwarded_as_part, merge_write_queued, part_failed, queue_path, queued_from, Queued,
};
use geomesh_influx::{
    on_body, on_headers, Answer, AtHeaders, Call, Head, Merge, Plan, Reply, Settings,
};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

/// Response header naming the cluster(s) that served the request (for operators and tests).
pub const ROUTED_TO_HEADER: &str = "x-geomesh-routed-to";
/// Response header marking an answer written by this filter (a merge or an error).
pub const WRITTEN_BY_HEADER: &str = "x-geomesh-influx";
/// Response header naming the clusters whose part of a write the agent's replay queue stored.
pub const QUEUED_HEADER: &str = "x-geomesh-queued";
/// The group of this filter's counters: `influxdb.<stat_prefix>.influx.forward`, ...
pub const STAT_GROUP: &str = "influx";
const STAT_FORWARD: &str = "forward";
const STAT_FANOUT: &str = "fanout";
const STAT_REPLY: &str = "reply";
const STAT_SHARD_FAILED: &str = "shard_failed";
const STAT_QUEUED: &str = "queued";
const STAT_QUEUE_REFUSED: &str = "queue_refused";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(InfluxRoot { state: None, stats: None })
    });
}}

/// What a root context holds once configured.
struct State {
    table: Rc<RoutingTable>,
    settings: Settings,
    timeout: Duration,
}

struct InfluxRoot {
    state: Option<Rc<State>>,
    stats: Option<Rc<Stats>>,
}

impl Context for InfluxRoot {}

impl RootContext for InfluxRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let plugin = self
            .get_property(vec!["plugin_name"])
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| "geomesh_influx".to_owned());
        let text = self.get_plugin_configuration().unwrap_or_default();
        match Settings::parse(&text) {
            Ok((config, table, settings)) => {
                let table = Rc::new(table);
                let stats = Stats::new(
                    WorkloadType::Influxdb,
                    &config.stat_prefix,
                    Some(table.clone()),
                );
                count_accepted(&stats, &plugin, &text);
                for name in [
                    STAT_FORWARD,
                    STAT_FANOUT,
                    STAT_REPLY,
                    STAT_SHARD_FAILED,
                    STAT_QUEUED,
                    STAT_QUEUE_REFUSED,
                ] {
                    stats.define(Metric::Event {
                        group: STAT_GROUP,
                        name,
                    });
                }
                log::info!(
                    "geomesh influx {plugin}: {} clusters, local {}, default {}",
                    table.active_clusters().len(),
                    table.cluster_name(table.local_cluster()),
                    table.cluster_name(table.default_cluster())
                );
                self.stats = Some(Rc::new(stats));
                self.state = Some(Rc::new(State {
                    table,
                    settings,
                    timeout: Duration::from_millis(u64::from(config.upstream_timeout_ms)),
                }));
                true
            }
            Err(e) => {
                log::error!("geomesh influx {plugin}: {e}");
                self.stats = Some(Rc::new(count_rejected(
                    WorkloadType::Influxdb,
                    &plugin,
                    &text,
                )));
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(InfluxHttp {
            state: self.state.clone(),
            stats: self.stats.clone(),
            head: OwnedHead::default(),
            routed_to: None,
            fanout: None,
            now: 0,
            started: None,
            family: "other",
        }))
    }
}

/// The request's head, owned (read once at the headers).
#[derive(Default)]
struct OwnedHead {
    method: Vec<u8>,
    path: Vec<u8>,
    gzip: bool,
    csv: bool,
    form: bool,
    content_length: Option<u64>,
    authority: String,
    /// Forwarded to the shards of a fan-out (a value that is not UTF-8 is not forwarded).
    authorization: Option<String>,
    content_type: Option<String>,
    content_encoding: Option<String>,
}

impl OwnedHead {
    fn view(&self) -> Head<'_> {
        Head {
            method: &self.method,
            path: &self.path,
            gzip: self.gzip,
            csv: self.csv,
            form: self.form,
            content_length: self.content_length,
        }
    }
}

/// Headers of a shard's answer a relay passes on to the client.
const RELAYED_HEADERS: &[&str] = &[
    "content-type",
    "x-influxdb-version",
    "x-influxdb-build",
    "x-influxdb-error",
    "request-id",
];

/// A fan-out (or a relay: one call whose answer is passed on) in flight.
struct Fanout {
    /// `None`: a relay.
    merge: Option<Merge>,
    /// A relay's answer headers.
    relayed: Vec<(String, String)>,
    answers: Vec<Option<Answer>>,
    tokens: HashMap<u32, usize>,
    clusters: String,
    /// A split write's calls (cluster name, path, body), kept for the replay queue.
    parts: Vec<(String, String, Vec<u8>)>,
    /// What the replay queue did with each part (empty until the queue was asked).
    queued: Vec<Queued>,
    /// The replay queue's calls in flight: token -> part.
    queue_tokens: HashMap<u32, usize>,
    /// A relayed one-shard `/write` (with `replay_cluster`): its cluster, body as received and
    /// the request's time, to queue it if the shard fails.
    relay_write: Option<(geomesh_core::ClusterId, Vec<u8>, u64)>,
    /// The cluster of each call (metrics).
    call_clusters: Vec<geomesh_core::ClusterId>,
    /// When the calls were sent (a call without an answer after its deadline is a timeout).
    sent_at: SystemTime,
}

struct InfluxHttp {
    state: Option<Rc<State>>,
    stats: Option<Rc<Stats>>,
    head: OwnedHead,
    routed_to: Option<String>,
    fanout: Option<Fanout>,
    /// The request's time (ns since the epoch), read once its body is whole.
    now: u64,
    /// When its headers came, and its request type (metrics, recorded at the end of the stream).
    started: Option<SystemTime>,
    family: &'static str,
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

