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
//!   says why one it did not store was lost (`replay queue full` / `replay queue unavailable`).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

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
    table: RoutingTable,
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
                let stats = Stats::new(WorkloadType::Influxdb, &config.stat_prefix, None);
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
}

struct InfluxHttp {
    state: Option<Rc<State>>,
    stats: Option<Rc<Stats>>,
    head: OwnedHead,
    routed_to: Option<String>,
    fanout: Option<Fanout>,
    /// The request's time (ns since the epoch), read once its body is whole.
    now: u64,
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

impl InfluxHttp {
    fn count(&self, name: &'static str) {
        if let Some(stats) = &self.stats {
            stats.record(
                Metric::Event {
                    group: STAT_GROUP,
                    name,
                },
                1,
            );
        }
    }

    fn reply(&mut self, r: &Reply, routed: &str) {
        self.reply_with(r, routed, "");
    }

    /// [`Self::reply`] naming the clusters the replay queue stored a part for (`queued`).
    fn reply_with(&mut self, r: &Reply, routed: &str, queued: &str) {
        let mut headers = vec![("content-type", r.content_type), (WRITTEN_BY_HEADER, "1")];
        if !queued.is_empty() {
            headers.push((QUEUED_HEADER, queued));
        }
        if !routed.is_empty() {
            headers.push((ROUTED_TO_HEADER, routed));
        }
        if r.status >= 400 {
            headers.push(("x-influxdb-error", "geomesh"));
        }
        let body = if r.body.is_empty() {
            None
        } else {
            Some(r.body.as_slice())
        };
        self.send_http_response(u32::from(r.status), headers, body);
    }

    /// Carries a plan out; the action for the current callback. `body`: the request's whole
    /// body once read (a one-shard plan then relays it: Envoy no longer lets a filter change
    /// the request headers, hence the route, after they went on).
    fn carry_out(&mut self, state: &State, plan: Plan, body: Option<&[u8]>) -> Action {
        match plan {
            Plan::Forward(c) if body.is_some() => {
                let name = state.table.cluster_name(c).to_owned();
                self.count(STAT_FORWARD);
                let call = Call {
                    cluster: c,
                    path: String::from_utf8_lossy(&self.head.path).into_owned(),
                    content_type: "",
                    body: body.map(<[u8]>::to_vec).unwrap_or_default(),
                };
                let mut f = Fanout {
                    merge: None,
                    relayed: Vec::new(),
                    answers: vec![None],
                    tokens: HashMap::new(),
                    clusters: name,
                    parts: Vec::new(),
                    queued: Vec::new(),
                    queue_tokens: HashMap::new(),
                    relay_write: None,
                };
                match self.dispatch(state, &call, true) {
                    Some(token) => {
                        f.tokens.insert(token, 0);
                    }
                    None => {
                        f.answers = vec![Some(Answer {
                            status: None,
                            body: Vec::new(),
                        })]
                    }
                }
                if state.settings.replay_cluster.is_some() && is_write(&self.head.path) {
                    f.relay_write = Some((c, call.body, self.now));
                }
                self.fanout = Some(f);
                self.finish_if_done();
                Action::Pause
            }
            Plan::Forward(c) => {
                let name = state.table.cluster_name(c).to_owned();
                self.set_http_request_header(&state.settings.cluster_header, Some(&name));
                if let Err(status) =
                    proxy_wasm::hostcalls::call_foreign_function("clear_route_cache", None)
                {
                    log::error!("geomesh influx: Envoy has no clear_route_cache ({status:?}): the route may ignore the cluster header");
                }
                self.count(STAT_FORWARD);
                self.routed_to = Some(name);
                Action::Continue
            }
            Plan::Reply(r) => {
                self.count(STAT_REPLY);
                self.reply(&r, "");
                Action::Pause
            }
            Plan::Fanout { calls, merge } => {
                self.count(STAT_FANOUT);
                let names: Vec<&str> = calls
                    .iter()
                    .map(|c| state.table.cluster_name(c.cluster))
                    .collect();
                let mut f = Fanout {
                    merge: Some(merge),
                    relayed: Vec::new(),
                    answers: vec![None; calls.len()],
                    tokens: HashMap::new(),
                    clusters: names.join(","),
                    parts: Vec::new(),
                    queued: Vec::new(),
                    queue_tokens: HashMap::new(),
                    relay_write: None,
                };
                let mut done = vec![false; calls.len()];
                for (i, call) in calls.iter().enumerate() {
                    match self.dispatch(state, call, false) {
                        Some(token) => {
                            f.tokens.insert(token, i);
                        }
                        None => {
                            if let Some(d) = done.get_mut(i) {
                                *d = true;
                            }
                            if let Some(a) = f.answers.get_mut(i) {
                                *a = Some(Answer {
                                    status: None,
                                    body: Vec::new(),
                                });
                            }
                        }
                    }
                }
                if matches!(f.merge, Some(Merge::Write(_)))
                    && state.settings.replay_cluster.is_some()
                {
                    f.parts = calls
                        .into_iter()
                        .map(|c| {
                            (
                                state.table.cluster_name(c.cluster).to_owned(),
                                c.path,
                                c.body,
                            )
                        })
                        .collect();
                }
                self.fanout = Some(f);
                self.finish_if_done();
                Action::Pause
            }
        }
    }

    /// Hands the failed parts of a split write to the replay queue; true while its answers are
    /// awaited.
    fn queue_failed_parts(&mut self) -> bool {
        let Some(state) = self.state.clone() else {
            return false;
        };
        let Some(replay) = state.settings.replay_cluster.as_deref() else {
            return false;
        };
        let Some(f) = self.fanout.as_mut() else {
            return false;
        };
        if f.parts.is_empty() || !f.queued.is_empty() {
            return !f.queue_tokens.is_empty();
        }
        let failed: Vec<usize> = f
            .answers
            .iter()
            .enumerate()
            .filter(|(_, a)| a.as_ref().is_some_and(part_failed))
            .map(|(i, _)| i)
            .collect();
        if failed.is_empty() {
            return false;
        }
        f.queued = vec![Queued::No; f.parts.len()];
        let parts = std::mem::take(&mut f.parts);
        let mut tokens = HashMap::new();
        let mut queued = std::mem::take(&mut f.queued);
        for i in failed {
            let Some((cluster, path, body)) = parts.get(i) else {
                continue;
            };
            let qpath = queue_path(cluster, path);
            let headers: Vec<(&str, &str)> = vec![
                (":method", "POST"),
                (":path", &qpath),
                (":authority", "geomesh-agent"),
                ("content-type", geomesh_influx::plan::LINE_PROTOCOL),
            ];
            match self.dispatch_http_call(replay, headers, Some(body), vec![], state.timeout) {
                Ok(token) => {
                    tokens.insert(token, i);
                }
                Err(status) => {
                    log::warn!("geomesh influx: cannot call replay cluster {replay}: {status:?}");
                    if let Some(q) = queued.get_mut(i) {
                        *q = Queued::Unavailable(format!("cannot call cluster {replay}"));
                    }
                }
            }
        }
        let waiting = !tokens.is_empty();
        if let Some(f) = self.fanout.as_mut() {
            f.queued = queued;
            f.queue_tokens = tokens;
        }
        waiting
    }

    /// Sends a call; `relay`: the client's own method, content type, encoding and accept.
    fn dispatch(&self, state: &State, call: &Call, relay: bool) -> Option<u32> {
        let cluster = state.table.cluster_name(call.cluster);
        let method = if relay {
            std::str::from_utf8(&self.head.method).unwrap_or("POST")
        } else {
            "POST"
        };
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", method),
            (":path", &call.path),
            (":authority", &self.head.authority),
        ];
        if relay {
            if let Some(v) = &self.head.content_type {
                headers.push(("content-type", v));
            }
            if let Some(v) = &self.head.content_encoding {
                headers.push(("content-encoding", v));
            }
            if self.head.csv {
                headers.push(("accept", "application/csv"));
            }
        } else {
            headers.push(("content-type", call.content_type));
            headers.push(("accept", "application/json"));
        }
        if let Some(a) = &self.head.authorization {
            headers.push(("authorization", a));
        }
        match self.dispatch_http_call(cluster, headers, Some(&call.body), vec![], state.timeout) {
            Ok(token) => Some(token),
            Err(status) => {
                log::warn!("geomesh influx: cannot call cluster {cluster}: {status:?}");
                None
            }
        }
    }

    /// A relayed one-shard write whose shard failed becomes a one-part split write, so that its
    /// part goes to the replay queue like a split write's.
    fn relay_write_failed(&mut self) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let Some(f) = self.fanout.as_mut() else {
            return;
        };
        if !f
            .answers
            .first()
            .and_then(Option::as_ref)
            .is_some_and(part_failed)
        {
            return;
        }
        let Some((cluster, body, now)) = f.relay_write.take() else {
            return;
        };
        let (_, query) = geomesh_influx::params::split_path(&self.head.path);
        let params = geomesh_influx::params::Params::parse(query);
        let name = state.table.cluster_name(cluster).to_owned();
        if let Some((call, merge)) = forwarded_as_part(
            &state.settings,
            &params,
            cluster,
            &name,
            &body,
            self.head.gzip,
            now,
        ) {
            f.merge = Some(Merge::Write(merge));
            f.parts = vec![(name, call.path, call.body)];
        }
    }

    /// Writes the merged answer once every call answered.
    fn finish_if_done(&mut self) {
        let Some(f) = &self.fanout else { return };
        if f.answers.iter().any(Option::is_none) {
            return;
        }
        if f.relay_write.is_some() {
            self.relay_write_failed();
        }
        if self.queue_failed_parts() {
            return;
        }
        let Some(f) = &self.fanout else { return };
        let answers: Vec<Answer> = f.answers.iter().flatten().cloned().collect();
        let failed = answers
            .iter()
            .filter(|a| a.status.is_none_or(|s| s >= 500))
            .count();
        let routed = f.clusters.clone();
        for _ in 0..failed {
            self.count(STAT_SHARD_FAILED);
        }
        let Some(f) = self.fanout.take() else { return };
        match (&f.merge, answers.first()) {
            (Some(Merge::Write(w)), _) if !f.queued.is_empty() => {
                let stored: Vec<&str> = f
                    .queued
                    .iter()
                    .zip(w.parts.iter())
                    .filter(|(q, _)| **q == Queued::Stored)
                    .map(|(_, p)| p.cluster.as_str())
                    .collect();
                let refused = f
                    .queued
                    .iter()
                    .filter(|q| matches!(q, Queued::Full(_) | Queued::Unavailable(_)))
                    .count();
                for _ in 0..stored.len() {
                    self.count(STAT_QUEUED);
                }
                for _ in 0..refused {
                    self.count(STAT_QUEUE_REFUSED);
                }
                let reply = merge_write_queued(w, &answers, &f.queued);
                self.reply_with(&reply, &routed, &stored.join(","));
            }
            (Some(merge), _) => {
                let reply = geomesh_influx::merge(merge, &answers);
                self.reply(&reply, &routed);
            }
            (
                None,
                Some(Answer {
                    status: Some(status),
                    body,
                }),
            ) => {
                let mut headers: Vec<(&str, &str)> = f
                    .relayed
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                headers.push((ROUTED_TO_HEADER, &routed));
                let body = if body.is_empty() {
                    None
                } else {
                    Some(body.as_slice())
                };
                self.send_http_response(u32::from(*status), headers, body);
            }
            (None, _) => {
                let reply = Reply::error(
                    503,
                    &format!("geomesh: cluster {routed} did not answer (connection failure, timeout or answer too large)"),
                );
                self.reply(&reply, &routed);
            }
        }
    }

    fn now_ns(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

impl Context for InfluxHttp {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(state) = self.state.clone() else {
            return;
        };
        if let Some(i) = self
            .fanout
            .as_mut()
            .and_then(|f| f.queue_tokens.remove(&token_id))
        {
            let status = self
                .get_http_call_response_header_bytes(":status")
                .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
            let body = self
                .get_http_call_response_body(0, body_size.min(4096))
                .unwrap_or_default();
            if let Some(q) = self.fanout.as_mut().and_then(|f| f.queued.get_mut(i)) {
                *q = queued_from(status, &body);
            }
            self.finish_if_done();
            return;
        }
        let Some(index) = self
            .fanout
            .as_mut()
            .and_then(|f| f.tokens.remove(&token_id))
        else {
            return;
        };
        let status = self
            .get_http_call_response_header_bytes(":status")
            .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
        let answer = if body_size > state.settings.max_answer_bytes {
            Answer {
                status: None,
                body: Vec::new(),
            }
        } else {
            Answer {
                status,
                body: self
                    .get_http_call_response_body(0, body_size)
                    .unwrap_or_default(),
            }
        };
        let relayed: Vec<(String, String)> =
            if self.fanout.as_ref().is_some_and(|f| f.merge.is_none()) {
                self.get_http_call_response_headers()
                    .into_iter()
                    .filter(|(k, _)| RELAYED_HEADERS.contains(&k.to_ascii_lowercase().as_str()))
                    .collect()
            } else {
                Vec::new()
            };
        if let Some(f) = self.fanout.as_mut() {
            f.relayed = relayed;
            if let Some(slot) = f.answers.get_mut(index) {
                *slot = Some(answer);
            }
        }
        self.finish_if_done();
    }
}

impl HttpContext for InfluxHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            self.reply(
                &Reply::error(500, "geomesh influx filter: no valid configuration"),
                "",
            );
            return Action::Pause;
        };
        let header = |s: &Self, name: &str| s.get_http_request_header_bytes(name);
        let encoding = header(self, "content-encoding").unwrap_or_default();
        let accept = header(self, "accept").unwrap_or_default();
        let content_type = header(self, "content-type").unwrap_or_default();
        self.head = OwnedHead {
            method: header(self, ":method").unwrap_or_default(),
            path: header(self, ":path").unwrap_or_default(),
            gzip: contains_ignore_case(&encoding, b"gzip"),
            csv: contains_ignore_case(&accept, b"application/csv")
                || contains_ignore_case(&accept, b"text/csv"),
            form: contains_ignore_case(&content_type, b"application/x-www-form-urlencoded"),
            content_length: header(self, "content-length")
                .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok()),
            authority: header(self, ":authority")
                .and_then(|v| String::from_utf8(v).ok())
                .unwrap_or_else(|| "influxdb".to_owned()),
            authorization: header(self, "authorization").and_then(|v| String::from_utf8(v).ok()),
            content_type: String::from_utf8(content_type.clone())
                .ok()
                .filter(|v| !v.is_empty()),
            content_encoding: String::from_utf8(encoding.clone())
                .ok()
                .filter(|v| !v.is_empty()),
        };
        // A client's own cluster header is never trusted.
        self.set_http_request_header(&state.settings.cluster_header, None);
        match on_headers(&state.table, &state.settings, &self.head.view()) {
            AtHeaders::Plan(plan) => self.carry_out(&state, plan, None),
            AtHeaders::NeedBody if end_of_stream => {
                let plan = on_body(
                    &state.table,
                    &state.settings,
                    &self.head.view(),
                    b"",
                    self.now_ns(),
                );
                self.carry_out(&state, plan, None)
            }
            // Headers go on to the buffer filter that must follow this one (it holds them until
            // the body is whole, so the router picks its route after the body callback set the
            // cluster header); pausing here would stop the body callbacks too (Envoy stops all
            // iteration when a Wasm filter pauses at the headers).
            AtHeaders::NeedBody => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return Action::Pause;
        };
        if self.routed_to.is_some() {
            return Action::Continue;
        }
        if self.fanout.is_some() {
            return Action::Pause;
        }
        if body_size > state.settings.max_body_bytes {
            self.count(STAT_REPLY);
            self.reply(
                &Reply::error(
                    413,
                    &format!(
                        "{} {} bytes",
                        geomesh_influx::replies::BODY_TOO_LARGE,
                        state.settings.max_body_bytes
                    ),
                ),
                "",
            );
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        self.now = self.now_ns();
        let plan = on_body(
            &state.table,
            &state.settings,
            &self.head.view(),
            &body,
            self.now,
        );
        self.carry_out(&state, plan, Some(&body))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(c) = &self.routed_to {
            self.set_http_response_header(ROUTED_TO_HEADER, Some(c));
        }
        Action::Continue
    }
}
