//! What a planner and a merge may do: the pipeline's primitives, seen from the protocol.

use std::rc::Rc;

use bytes::Bytes;
use geomesh_core::metrics::PipelineStat;
use geomesh_core::{Action, ClusterId, Meter, Millis, RoutingTable};

use crate::entry::Merge;
use crate::link::{Slot, Target};
use crate::core::{Core, Reset};
use crate::failure::condemn;
use crate::protocol::Protocol;
use crate::replay::{ReplayStore, Rollback};

/// One part of a request: bytes for one cluster and what their answer is.
#[derive(Debug, Clone)]
pub struct PartSend<X> {
    pub cluster: ClusterId,
    pub bytes: Vec<u8>,
    pub expect: X,
    /// Answers the server sends for these bytes (Redis `SUBSCRIBE a b`: one per channel); the
    /// part's answer is the last one, or the first error.
    pub answers: u32,
    /// Several answers may come (with `answers` = 1: an error ends it like the others).
    pub many: bool,
    /// Correlation key of the answer ([`crate::Disposition::Keyed`]).
    pub key: Option<u64>,
}

impl<X: Default> PartSend<X> {
    /// Bytes for `cluster`, one answer.
    pub fn new(cluster: ClusterId, bytes: Vec<u8>) -> Self {
        PartSend {
            cluster,
            bytes,
            expect: X::default(),
            answers: 1,
            many: false,
            key: None,
        }
    }
}

/// Which links a store-and-replay request goes to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreTargets {
    /// The local cluster (opened if needed; its answer is the client's) and every link open
    /// (Redis SELECT, AUTH: links opened later get it replayed).
    LocalAndOpen,
    /// The local cluster first, then every active cluster of the table, opened if needed
    /// (MQTT CONNECT: the client is connected to every broker at once).
    Active,
}

/// The planner's view of the pipeline, for one request.
pub struct Ctx<'a, P: Protocol> {
    core: &'a mut Core<P>,
    out: &'a mut Vec<Action>,
}

impl<'a, P: Protocol> Ctx<'a, P> {
    pub(crate) fn new(core: &'a mut Core<P>, out: &'a mut Vec<Action>) -> Self {
        Ctx { core, out }
    }

    /// The routing table in force.
    pub fn table(&self) -> &Rc<RoutingTable> {
        &self.core.table
    }

    /// The time of this callback.
    pub fn now(&self) -> Millis {
        self.core.now
    }

    /// Requests waiting for their answer.
    pub fn pending(&self) -> usize {
        self.core.queue.len()
    }

    /// The default budget of a request (the configuration's `upstream_timeout_ms`).
    pub fn budget(&self) -> Option<u64> {
        Some(self.core.limits.timeout_ms)
    }

    /// The counters of this session.
    pub fn meter(&mut self) -> &mut Meter {
        &mut self.core.meter
    }

    /// Whether a link to `c` is open.
    pub fn is_open(&self, c: ClusterId) -> bool {
        self.core.links.is_open(c)
    }

    /// Open links: table clusters in id order, then endpoint links.
    pub fn open_links(&self) -> Vec<ClusterId> {
        self.core.links.open_ids()
    }

    /// The protocol state of the link to `c`, opened (with the stored state replayed) if
    /// needed.
    pub fn link(&mut self, c: ClusterId) -> Option<&mut P::Link> {
        self.core.open_with(c, |_| true);
        self.core.links.get_mut(c).map(|l| &mut l.state)
    }

    /// The protocol state of the link to `c` if it is open.
    pub fn open_link(&mut self, c: ClusterId) -> Option<&mut P::Link> {
        self.core.links.get_mut(c).map(|l| &mut l.state)
    }

    /// Calls `f` on the protocol state of every open link.
    pub fn for_each_link(&mut self, f: impl FnMut(ClusterId, &mut P::Link)) {
        self.core.links.for_each_state(f)
    }

    /// To one cluster; the answer is forwarded as the server sent it.
    pub fn forward(&mut self, cluster: ClusterId, bytes: &[u8], budget: Option<u64>) {
        self.core.forward(cluster, bytes, P::Expect::default(), budget, self.out)
    }

    /// As [`Ctx::forward`], the answer read as `expect` says.
    pub fn forward_expect(&mut self, cluster: ClusterId, bytes: &[u8], expect: P::Expect, budget: Option<u64>) {
        self.core.forward(cluster, bytes, expect, budget, self.out)
    }

    /// A request in parts, merged by `merge` once all answered; returns its sequence number.
    pub fn dispatch(&mut self, parts: Vec<PartSend<P::Expect>>, merge: P::Merge, budget: Option<u64>) -> u64 {
        if parts.len() > 1 {
            self.core.meter.pipeline(PipelineStat::Split);
        }
        self.core.dispatch(parts, Merge::Custom(merge), budget, self.out)
    }

    /// The same bytes to every active cluster, merged by `merge`.
    pub fn broadcast(&mut self, bytes: &[u8], merge: P::Merge, budget: Option<u64>) -> u64 {
        self.core.meter.pipeline(PipelineStat::Broadcast);
        let parts = self
            .core
            .table
            .active_clusters()
            .iter()
            .map(|c| PartSend::new(*c, bytes.to_vec()))
            .collect();
        self.core.dispatch(parts, Merge::Custom(merge), budget, self.out)
    }

    /// Answered by the proxy, in its turn.
    pub fn answer(&mut self, bytes: Bytes) {
        self.core.local(bytes)
    }

    /// Bytes a server pushed unasked that the protocol held back and releases now (MQTT: a
    /// PUBLISH beyond the client's Receive Maximum, let out by the client's acknowledgement),
    /// in their turn; counted as pushed, not as a local answer.
    pub fn release(&mut self, bytes: Bytes) {
        self.core.meter.pipeline(PipelineStat::Pushed);
        self.core.in_turn(bytes)
    }

    /// Refused with a protocol error, in its turn (counted as unsupported).
    pub fn refuse(&mut self, bytes: Bytes) {
        self.core.meter.pipeline(PipelineStat::Unsupported);
        self.core.local(bytes)
    }

    /// Answered in its turn, then the client is closed; no more of its bytes are read.
    pub fn close_with(&mut self, bytes: Bytes) {
        self.core.local_close(bytes)
    }

    /// Bytes for `cluster` that get no answer (an MQTT QoS 0 PUBLISH, a Kafka produce with
    /// `acks=0`).
    pub fn send_only(&mut self, cluster: ClusterId, bytes: &[u8]) {
        self.core.send(cluster, bytes, None)
    }

    /// Bytes for `cluster` whose `answers` answers are read and dropped (may be empty bytes:
    /// the next request's answer then comes after those).
    pub fn send_discard(&mut self, cluster: ClusterId, bytes: &[u8], answers: u32, expect: P::Expect) {
        let slot = Slot {
            target: Target::Discard,
            left: answers.max(1),
            many: false,
            expect,
            key: None,
        };
        self.core.send(cluster, bytes, Some(slot))
    }

    /// Defines endpoint link `link` as `endpoint` (`host:port`) of table cluster `cluster`
    /// (see [`geomesh_core::Action::Bind`]).
    pub fn bind(&mut self, link: ClusterId, cluster: ClusterId, endpoint: &str) {
        self.out.push(Action::Bind {
            link,
            cluster,
            endpoint: endpoint.to_owned(),
        });
    }

    /// The stored session state.
    pub fn store(&self) -> &ReplayStore<P::Expect> {
        &self.core.store
    }

    /// Forgets the stored session state (the protocol resets its own).
    pub fn clear_store(&mut self) {
        self.core.store.clear()
    }

    /// Store and replay: `writes` (key, request as replayed) replace the stored state under
    /// their keys, and `bytes` go to `targets`, the local cluster first. A link opened now gets
    /// the stored state around the request in key order (keys before the first written one,
    /// the request, then the keys after it), without what the request itself sets: its own
    /// answer speaks for it. The merge sees the local cluster's answer first; if the request
    /// fails the writes are undone (see [`MergeCx::rollback`]). Returns the sequence number.
    pub fn store_and_send(
        &mut self,
        writes: Vec<(usize, Bytes)>,
        bytes: &[u8],
        expect: P::Expect,
        merge: P::Merge,
        targets: StoreTargets,
    ) -> u64 {
        let core = &mut *self.core;
        let local = core.table.local_cluster();
        let mut list = vec![local];
        match targets {
            StoreTargets::LocalAndOpen => {
                list.extend(core.links.open_ids().into_iter().filter(|c| *c != local && !c.is_endpoint()))
            }
            StoreTargets::Active => list.extend(core.table.active_clusters().iter().copied().filter(|c| *c != local)),
        }
        let keys: Vec<usize> = writes.iter().map(|(k, _)| *k).collect();
        let first = keys.iter().copied().min().unwrap_or(usize::MAX);
        let mut rollback = Rollback::new();
        for (k, b) in writes {
            core.store.put(k, b, expect.clone(), &mut rollback);
        }
        let seq = core.next_seq();
        let mut parts = Vec::with_capacity(list.len());
        for (i, c) in list.into_iter().enumerate() {
            let opened = core.open_with(c, |k| k < first && !keys.contains(&k));
            let slot = Slot {
                target: Target::Entry { seq, part: i as u32 },
                left: 1,
                many: false,
                expect: expect.clone(),
                key: None,
            };
            core.send(c, bytes, Some(slot));
            if opened {
                let mut rest = core.replay(c, |k| k > first && !keys.contains(&k));
                if let Some(l) = core.links.get_mut(c) {
                    l.slots.append(&mut rest);
                }
            }
            parts.push(crate::protocol::Part::new(c));
        }
        let budget = Some(core.limits.timeout_ms);
        let deadline = core.deadline(budget, self.out);
        let mut e = crate::entry::Entry::waiting(
            Merge::Custom(merge),
            crate::entry::Parts::Many(parts),
            deadline,
            core.limits.timeout_ms,
            core.family,
            core.now,
        );
        e.rollback = Some(Box::new(rollback));
        core.queue.push_back(e);
        seq
    }
}

/// What a merge may do besides making the client's answer.
pub struct MergeCx<'a> {
    table: &'a RoutingTable,
    seq: u64,
    resets: &'a mut Vec<Reset>,
    rollback: bool,
}

impl<'a> MergeCx<'a> {
    pub(crate) fn new(table: &'a RoutingTable, seq: u64, resets: &'a mut Vec<Reset>) -> Self {
        MergeCx {
            table,
            seq,
            resets,
            rollback: false,
        }
    }

    /// The routing table in force.
    pub fn table(&self) -> &RoutingTable {
        self.table
    }

    /// The link to `cluster` answered this request otherwise than the client is told: it is
    /// reset at the end of the callback, and the requests after this one that used it fail
    /// with `message`.
    pub fn reset_link(&mut self, cluster: ClusterId, message: String) {
        condemn(self.resets, cluster, message, Some(self.seq));
    }

    /// The store-and-replay request failed: undo what it stored.
    pub fn rollback(&mut self) {
        self.rollback = true;
    }

    pub(crate) fn rollback_asked(&self) -> bool {
        self.rollback
    }
}
