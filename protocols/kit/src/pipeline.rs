//! The pipeline: one client connection made to look like one server in front of the clusters
//! of a routing table, for any [`Protocol`].
//!
//! **Requests** are decoded from the client's bytes and planned ([`Protocol::plan`]); each
//! becomes an *entry* of the pending queue, in arrival order, with its *parts* (one
//! sub-request per cluster) and a merge. Answers leave strictly in request order: a finished
//! head is written at once, with every finished entry behind it. A request forwarded to one
//! cluster has its answer forwarded as the server's bytes.
//!
//! **Per link** (connection to a cluster, or to an endpoint of one) the pipeline keeps the
//! protocol's state, unread bytes and a FIFO of *slots*, one per answer the server owes: the
//! (entry, part) waiting for it, *discard*, or a *replayed* stored request. What the server
//! sends that answers nothing (pub/sub messages) goes to the client at once, between whole
//! answers ([`Protocol::classify`]).
//!
//! **Deadlines.** Every entry that waits for a server gets `now + budget`, covered with a
//! [`DeadlineCover`]; an expired entry is failed ([`Failure::Timeout`]) and the late answers
//! discarded, other entries and links unaffected. A link that closes or breaks fails what
//! waits on it.
//!
//! **Store and replay.** Connection state the client sets is stored as the requests that set
//! it ([`ReplayStore`]) and replayed at the head of every link opened later. Every open link
//! must hold the state the client was told of: one that refuses a replay, or answers a state
//! request otherwise than the local cluster, is *reset* at the end of the callback (closed; the
//! next request reopens it with the state replayed), and the requests after that depend on it
//! fail with the protocol's message, even those it answered already: they ran in a state the
//! client does not have.
//!
//! **Closing.** A request answered with [`Plan::Close`] (QUIT, undecodable bytes) stops the
//! reading of client bytes; once its answer is written, [`Action::CloseDownstream`] follows in
//! the same callback. When that callback did not carry client bytes, the host closes in a later
//! event (the mux's `close_later`, the one close-after-flush mechanism of the filters), so
//! the bytes written before the close always reach the client.

use std::collections::VecDeque;
use std::rc::Rc;

use bytes::BytesMut;
use geomesh_core::metrics::{PipelineStat, UpstreamStat};
use geomesh_core::{Action, ClusterId, DeadlineCover, Framing, Meter, Millis, RoutingTable, Session, UpstreamFailure};

use crate::core::{Closing, Core};
use crate::ctx::{Ctx, PartSend};
use crate::entry::Merge;
use crate::link::Links;
use crate::protocol::{Failure, Plan, Protocol};
use crate::replay::ReplayStore;

/// Settings of the pipeline itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Default budget of a request (ms): the configuration's `upstream_timeout_ms`.
    pub timeout_ms: u64,
    /// How late a deadline may be noticed (ms), > 0.
    pub granularity_ms: u64,
    /// Keys of the replay store.
    pub store_keys: usize,
}

/// A [`Session`] for protocol `P`. See the module documentation.
pub struct Pipeline<P: Protocol> {
    proto: P,
    core: Core<P>,
}

impl<P: Protocol> Pipeline<P> {
    /// A session for one client connection.
    pub fn new(proto: P, table: Rc<RoutingTable>, limits: Limits) -> Self {
        let granularity_ms = limits.granularity_ms.max(1);
        let limits = Limits {
            granularity_ms,
            ..limits
        };
        Pipeline {
            proto,
            core: Core {
                table,
                limits,
                inbuf: BytesMut::new(),
                queue: VecDeque::new(),
                head_seq: 0,
                links: Links::new(),
                cover: DeadlineCover::new(granularity_ms),
                last_wake: 0,
                store: ReplayStore::new(limits.store_keys),
                to_client: Vec::new(),
                sends: Vec::new(),
                closing: Closing::Open,
                close_now: false,
                resets: Vec::new(),
                meter: Meter::new(),
                family: "",
                now: 0,
            },
        }
    }

    /// The protocol's own state.
    pub fn protocol(&self) -> &P {
        &self.proto
    }

    /// Requests waiting for their answer.
    pub fn pending(&self) -> usize {
        self.core.queue.len()
    }

    /// The stored session state.
    pub fn store(&self) -> &ReplayStore<P::Expect> {
        &self.core.store
    }

    fn begin(&mut self, now: Millis) {
        self.core.now = now;
    }

    fn dispatch(&mut self, request: P::Request, out: &mut Vec<Action>) {
        let family = self.proto.family(&request);
        self.core.meter.request(family);
        self.core.family = family;
        let plan = {
            let mut cx = Ctx::new(&mut self.core, out);
            self.proto.plan(request, &mut cx)
        };
        let budget = Some(self.core.limits.timeout_ms);
        match plan {
            Plan::Done => {}
            Plan::Forward { cluster, bytes } => self.core.forward(cluster, &bytes, P::Expect::default(), budget, out),
            Plan::Split { parts, merge } => {
                self.core.meter.pipeline(PipelineStat::Split);
                let parts = parts.into_iter().map(|(c, b)| PartSend::new(c, b)).collect();
                self.core.dispatch(parts, Merge::Custom(merge), budget, out);
            }
            Plan::Broadcast { bytes, merge } => {
                self.core.meter.pipeline(PipelineStat::Broadcast);
                let parts = self
                    .core
                    .table
                    .active_clusters()
                    .iter()
                    .map(|c| PartSend::new(*c, bytes.to_vec()))
                    .collect();
                self.core.dispatch(parts, Merge::Custom(merge), budget, out);
            }
            Plan::Local(bytes) => self.core.local(bytes),
            Plan::Refuse(bytes) => {
                self.core.meter.pipeline(PipelineStat::Unsupported);
                self.core.local(bytes)
            }
            Plan::Close(bytes) => self.core.local_close(bytes),
        }
    }

    /// Emits the batched sends and client bytes, then a pending close.
    fn finish(&mut self, out: &mut Vec<Action>) {
        let core = &mut self.core;
        if !core.resets.is_empty() {
            core.apply_resets(&mut self.proto, out);
        }
        for (cluster, bytes) in core.sends.drain(..) {
            out.push(Action::Send { cluster, bytes });
        }
        if !core.to_client.is_empty() {
            out.push(Action::Reply(std::mem::take(&mut core.to_client)));
        }
        if (core.close_now || core.closing == Closing::Now) && core.closing != Closing::Done {
            out.push(Action::CloseDownstream);
            core.closing = Closing::Done;
            core.queue.clear();
        }
    }
}

impl<P: Protocol> Session for Pipeline<P> {
    fn on_downstream(&mut self, data: &[u8], now: Millis, out: &mut Vec<Action>) {
        self.begin(now);
        if self.core.closing == Closing::Open {
            self.core.inbuf.extend_from_slice(data);
            loop {
                match self.proto.decode_request(&mut self.core.inbuf) {
                    Ok(Some(request)) => {
                        self.dispatch(request, out);
                        if self.core.closing != Closing::Open {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(answer) => {
                        self.core.inbuf.clear();
                        self.core.meter.pipeline(PipelineStat::InvalidRequest);
                        self.core.family = "";
                        self.core.local_close(answer);
                        break;
                    }
                }
            }
            if self.core.closing != Closing::Open {
                self.core.inbuf = BytesMut::new();
            }
        }
        self.finish(out);
    }

    fn on_upstream(&mut self, cluster: ClusterId, data: &[u8], now: Millis, out: &mut Vec<Action>) {
        self.begin(now);
        let core = &mut self.core;
        let proto = &mut self.proto;
        if let Some(mut link) = core.links.take(cluster) {
            link.buf.extend_from_slice(data);
            let mut failure = None;
            loop {
                let head = link.slots.front().map(|s| &s.expect);
                match proto.decode_answer(&mut link.state, &mut link.buf, head) {
                    Ok(Some(answer)) => {
                        if let Err(m) = core.on_answer(proto, cluster, &mut link, answer) {
                            failure = Some(m);
                            break;
                        }
                        if core.resets.iter().any(|r| r.cluster == cluster) {
                            // Out of step: its next answers must not answer anything.
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        failure = Some(format!("protocol error: {e}"));
                        break;
                    }
                }
            }
            match failure {
                None => core.links.put(cluster, link),
                Some(m) => {
                    out.push(Action::CloseUpstream(cluster));
                    core.lose_link(proto, cluster, link, &Failure::Broken(m));
                }
            }
        }
        self.finish(out);
    }

    fn on_upstream_closed(&mut self, cluster: ClusterId, failure: &UpstreamFailure, now: Millis, out: &mut Vec<Action>) {
        self.begin(now);
        if let Some(link) = self.core.links.take(cluster) {
            self.core.meter.upstream(cluster, UpstreamStat::Failure(failure.kind));
            let f = Failure::Closed {
                kind: failure.kind,
                message: failure.message.clone(),
            };
            self.core.lose_link(&mut self.proto, cluster, link, &f);
        }
        self.finish(out);
    }

    fn on_timeout(&mut self, now: Millis, out: &mut Vec<Action>) {
        self.begin(now);
        let core = &mut self.core;
        let mut expired = Vec::new();
        for (i, e) in core.queue.iter().enumerate() {
            if e.done.is_none() && e.deadline <= now {
                expired.push((core.head_seq + i as u64, e.budget));
            }
        }
        for (seq, budget) in expired {
            // Every part still waiting fails (once the entry is done the others are moot).
            while let Some(e) = core.index(seq).and_then(|i| core.queue.get(i)) {
                if e.done.is_some() {
                    break;
                }
                let waiting = e
                    .parts
                    .as_slice()
                    .iter()
                    .position(|p| p.answer.is_none() && p.failure.is_none());
                let Some(part) = waiting else { break };
                let cluster = e.parts.as_slice().get(part).map(|p| p.cluster).unwrap_or(ClusterId(0));
                core.meter.upstream(cluster, UpstreamStat::Timeouts);
                core.part_failed(&mut self.proto, seq, part as u32, cluster, &Failure::Timeout { budget_ms: budget });
            }
        }
        core.flush_ready();
        self.finish(out);
    }

    fn on_new_table(&mut self, table: Rc<RoutingTable>) {
        self.proto.on_new_table(&table);
        self.core.table = table;
    }

    fn meter(&mut self) -> Option<&mut Meter> {
        Some(&mut self.core.meter)
    }

    fn share(&self, cluster: ClusterId) -> Option<Framing> {
        if cluster.is_endpoint() {
            return None;
        }
        self.proto.share(cluster)
    }
}

