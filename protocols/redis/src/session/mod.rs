//! The Redis session: one client connection made to look like one Redis server in front of the
//! clusters of a routing table, on the shared pipeline (`geomesh_kit`).
//!
//! The pipeline keeps the pending queue in request order, the per-connection reply slots,
//! deadlines, store-and-replay and closing (see `geomesh_kit::Pipeline`); this module is what
//! Redis adds: the RESP framing, the planner (what each command family does, from the command
//! table), the merges, and the texts clients see. By concern:
//!
//! * `route.rs`: keyed, same-shard, split (MGET/MSET/DEL...), broadcast and SCAN;
//! * `state.rs`: connection state (SELECT, AUTH, HELLO, CLIENT SETNAME/SETINFO/NO-EVICT/NO-TOUCH,
//!   READONLY/READWRITE, RESET) stored and replayed;
//! * `transaction.rs`: MULTI/EXEC/DISCARD/WATCH/UNWATCH on one cluster;
//! * `pubsub.rs`: (P|S)SUBSCRIBE fan-out, confirmations, messages fanned in;
//! * `merge.rs`: how the parts' replies become the client's; `replies.rs`: the texts.
//!
//! **Everything sent is decided while handling client bytes** (the host's rule, see
//! [`geomesh_core::session`]): replies from servers only complete entries.
//!
//! **Deadlines.** Every entry that waits for a server gets `now + upstream_timeout_ms`
//! (blocking commands: their own timeout on top; `0` = none). Expired entries get
//! `-ERR geomesh: cluster <name>: no reply within <n> ms` and the late replies are discarded;
//! other entries and clusters are not affected.
//!
//! **SCAN cursors.** The client's cursor is `server_cursor << 12 | index`, `index` being the
//! position of the cluster in the routing table's `active_clusters()` list. A scan starts at
//! index 0 with server cursor 0 and, when a cluster's own cursor comes back 0, goes on with
//! the next index and server cursor 0; after the last cluster the client gets 0. The cursor is
//! stateless (valid on any connection and across calls). If the routing table changes during a
//! scan, the index is read against the new list: the scan goes on with whatever cluster now has
//! that index (an index past the end, or a cluster no longer in the list, ends the scan), so
//! keys may be missed or repeated, as SCAN's own contract allows for keys that move.
//!
//! **Session state** goes to the local cluster, whose reply is the client's, and to every shard
//! connection already open; it is stored when sent (and rolled back if the local cluster
//! refuses it or does not answer) and replayed at the head of every shard connection the
//! session opens later, in the order AUTH, HELLO, CLIENT..., READONLY/READWRITE, SELECT.
//! `HELLO` is stored as its parts (`AUTH`, `HELLO <v>`, `CLIENT SETNAME`); `RESET` forgets it
//! all. A connection that answers a state command otherwise than the local cluster, or refuses a
//! replayed command, is reset by the pipeline and the requests that depended on it fail with an
//! error naming the cluster and the command.
//!
//! **Pub/sub.** A channel is subscribed on every cluster a message on it can be published to
//! ([`RoutingTable::message_clusters`]), a pattern on every active cluster. A shard connection
//! that carries subscriptions and goes away closes the client connection (after the bytes
//! already written): no RESP message can tell a subscriber its subscription is gone, a closed
//! connection makes its library reconnect and subscribe again.

mod merge;
mod pubsub;
mod replies;
mod route;
mod share;
mod state;
#[cfg(test)]
mod tests;
mod transaction;

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use geomesh_core::{Action, ClusterId, Framing, Meter, Millis, RoutingTable, Session, UpstreamFailure};
use geomesh_kit::{Ctx, Disposition, Failure, MergeCx, Pipeline, Plan, ReplayStore, SlotView};

use crate::commands::{self, Category, CommandSpec, Local, Merge, PubSub, SessionCmd, Transaction};
use crate::{write_array_header, write_bulk, Command, Protocol, Reply, ReplyDecoder, RequestDecoder, Settings};

use pubsub::Subs;
use replies::error;
use state::{STORE_KEYS, STORE_NAMES};
use transaction::{Tx, Watch};

impl geomesh_kit::Answer for Reply {
    fn raw(&self) -> &Bytes {
        Reply::raw(self)
    }
    fn is_error(&self) -> bool {
        Reply::is_error(self)
    }
}

/// What the session keeps per shard connection.
#[derive(Debug, Default)]
pub(crate) struct Link {
    /// Made on the first reply (with the configured limits).
    dec: Option<ReplyDecoder>,
    /// Subscriptions (channels, patterns, shard channels) held on this connection.
    subs: u32,
}

/// Redis on the pipeline: framing, planner and merges.
#[derive(Debug)]
pub(crate) struct Redis {
    max_pending: usize,
    max_tx: usize,
    requests: RequestDecoder,
    reply_limits: crate::Limits,
    proto: Protocol,
    tx: Option<Tx>,
    watch: Option<Watch>,
    subs: Subs,
    /// The command table entry of the request being planned (looked up once, for metrics and
    /// planning).
    spec: Option<&'static CommandSpec>,
    /// A command that leaves connection state was planned: the connections are the client's
    /// own from then on (`share.rs`).
    dedicated: bool,
}

/// The Redis [`Session`]. See the module documentation.
pub struct RedisSession {
    inner: Pipeline<Redis>,
}

impl RedisSession {
    /// A session for one client connection. `upstream_timeout_ms` is the configuration's.
    pub fn new(table: Rc<RoutingTable>, upstream_timeout_ms: u32, settings: &Settings) -> Self {
        let timeout_ms = u64::from(upstream_timeout_ms);
        let redis = Redis {
            max_pending: settings.max_pending_requests,
            max_tx: settings.max_transaction_commands,
            requests: RequestDecoder::new(settings.limits),
            reply_limits: settings.limits,
            proto: Protocol::Resp2,
            tx: None,
            watch: None,
            subs: Subs::default(),
            spec: None,
            dedicated: false,
        };
        let limits = geomesh_kit::Limits {
            timeout_ms,
            granularity_ms: settings.granularity(timeout_ms),
            store_keys: STORE_KEYS,
        };
        RedisSession {
            inner: Pipeline::new(redis, table, limits),
        }
    }

    /// The RESP version the client speaks (after `HELLO`).
    pub fn protocol(&self) -> Protocol {
        self.inner.protocol().proto
    }

    /// Requests waiting for their reply.
    pub fn pending(&self) -> usize {
        self.inner.pending()
    }
}

impl Session for RedisSession {
    fn on_downstream(&mut self, data: &[u8], now: Millis, out: &mut Vec<Action>) {
        self.inner.on_downstream(data, now, out)
    }
    fn on_upstream(&mut self, cluster: ClusterId, data: &[u8], now: Millis, out: &mut Vec<Action>) {
        self.inner.on_upstream(cluster, data, now, out)
    }
    fn on_upstream_closed(&mut self, cluster: ClusterId, failure: &UpstreamFailure, now: Millis, out: &mut Vec<Action>) {
        self.inner.on_upstream_closed(cluster, failure, now, out)
    }
    fn on_timeout(&mut self, now: Millis, out: &mut Vec<Action>) {
        self.inner.on_timeout(now, out)
    }
    fn on_downstream_closed(&mut self, now: Millis, out: &mut Vec<Action>) {
        self.inner.on_downstream_closed(now, out)
    }
    fn on_new_table(&mut self, table: Rc<RoutingTable>) {
        self.inner.on_new_table(table)
    }
    fn meter(&mut self) -> Option<&mut Meter> {
        self.inner.meter()
    }
    fn share(&self, cluster: ClusterId) -> Option<Framing> {
        self.inner.share(cluster)
    }
}

/// The metrics name of a command: the table name up to a `|` (`client|setname` -> `client`),
/// as Envoy's redis_proxy counts commands.
fn family_of(spec: Option<&'static CommandSpec>) -> &'static str {
    match spec {
        Some(s) => s.name.split('|').next().unwrap_or(s.name),
        None => "unknown",
    }
}

impl geomesh_kit::Protocol for Redis {
    type Request = Command;
    type Answer = Reply;
    type Merge = Merge;
    type Link = Link;
    type Expect = ();

    fn decode_request(&mut self, buf: &mut BytesMut) -> Result<Option<Command>, Bytes> {
        self.requests.decode(buf).map_err(|e| error(e.reply_message().as_bytes()))
    }

    fn decode_answer(&mut self, link: &mut Link, buf: &mut BytesMut, _head: Option<&()>) -> Result<Option<Reply>, String> {
        let limits = self.reply_limits;
        let dec = link.dec.get_or_insert_with(|| ReplyDecoder::new(limits));
        dec.decode(buf).map_err(|e| e.to_string())
    }

    fn family(&mut self, cmd: &Command) -> &'static str {
        self.spec = commands::lookup(cmd).ok();
        family_of(self.spec)
    }

    fn plan(&mut self, cmd: Command, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        let spec = match self.spec.take() {
            Some(s) => s,
            None => match commands::lookup(&cmd) {
                Ok(s) => s,
                Err(e) => {
                    if let Some(tx) = self.tx.as_mut() {
                        tx.dirty = true;
                    }
                    return Plan::Refuse(error(e.message(&cmd).as_bytes()));
                }
            },
        };
        let cat = &spec.category;
        if !self.dedicated && share::needs_dedicated(spec) {
            self.dedicated = true;
        }
        let exempt = matches!(
            cat,
            Category::Transaction(Transaction::Multi | Transaction::Exec | Transaction::Discard | Transaction::Watch)
                | Category::Local(Local::Quit)
                | Category::Session(SessionCmd::Reset)
        );
        if self.tx.is_some() && !exempt {
            return self.queue_in_tx(cmd, spec, cx);
        }
        if self.proto == Protocol::Resp2 && self.subs.total() > 0 {
            let allowed = matches!(
                cat,
                Category::PubSub(
                    PubSub::Subscribe
                        | PubSub::PSubscribe
                        | PubSub::SSubscribe
                        | PubSub::Unsubscribe
                        | PubSub::PUnsubscribe
                        | PubSub::SUnsubscribe
                ) | Category::Local(Local::Ping | Local::Quit)
                    | Category::Session(SessionCmd::Reset)
            );
            if !allowed {
                return local_error(&replies::subscribed_context(spec.name));
            }
        }
        if cx.pending() >= self.max_pending {
            return local_error(&replies::too_many_pending(self.max_pending));
        }
        match cat {
            Category::Keyed => route::keyed(&cmd, spec, cx),
            Category::SameShard => route::same_shard_forward(&cmd, spec, cx.budget(), cx),
            Category::Blocking(_) => route::blocking(&cmd, spec, cx),
            Category::Split(split) => route::split(&cmd, spec, *split, cx),
            Category::Broadcast(m) => route::broadcast(&cmd, spec, m, cx),
            Category::LocalCluster => {
                let c = cx.table().local_cluster();
                Plan::Forward {
                    cluster: c,
                    bytes: cmd.into_raw(),
                }
            }
            Category::Local(l) => self.local_command(&cmd, *l),
            Category::Session(s) => self.session_command(cmd, *s, cx),
            Category::Transaction(t) => self.transaction(cmd, spec, *t, cx),
            Category::PubSub(p) => self.pubsub(&cmd, *p, cx),
            Category::Unsupported(reason) => Plan::Refuse(error(replies::unsupported(spec.name, reason).as_bytes())),
        }
    }

    fn classify(&mut self, _cluster: ClusterId, link: &mut Link, answer: &Reply, head: Option<SlotView<'_, ()>>) -> Disposition {
        pubsub::classify(link, answer, head)
    }

    fn merge(&mut self, merge: &mut Merge, parts: &[merge::Part], cx: &mut MergeCx<'_>) -> Bytes {
        match merge {
            Merge::Session { name } => state::merge(name, parts, cx),
            other => merge::finalize(other, parts, cx.table(), self.proto),
        }
    }

    fn failure_answer(&mut self, cluster: ClusterId, failure: &Failure, table: &RoutingTable) -> Bytes {
        let text = match failure {
            Failure::Timeout { budget_ms } => replies::cluster_error(table, cluster, &replies::no_reply_within(*budget_ms)),
            Failure::Closed { kind, message } => {
                let mut m = replies::cluster_error(table, cluster, kind.describe());
                if !message.is_empty() {
                    m.push_str(": ");
                    m.push_str(message);
                }
                m
            }
            Failure::Broken(m) => replies::cluster_error(table, cluster, m),
            Failure::Reset(m) => m.clone(),
        };
        error(text.as_bytes())
    }

    fn replay_refused(&mut self, cluster: ClusterId, key: usize, answer: &Reply, table: &RoutingTable) -> String {
        let state = STORE_NAMES.get(key).copied().unwrap_or("state");
        replies::replay_refused(table, cluster, state, answer.root().as_bytes().unwrap_or_default())
    }

    fn state_lost(&mut self, merge: &Merge, cluster: ClusterId, table: &RoutingTable) -> String {
        let name = match merge {
            Merge::Session { name } => replies::upper(name),
            _ => String::new(),
        };
        replies::state_lost(table, cluster, &name)
    }

    fn on_store_changed(&mut self, store: &ReplayStore<()>) {
        self.proto = state::protocol_of(store);
    }

    fn link_lost(&mut self, cluster: ClusterId, link: Link) -> bool {
        if let Some(w) = self.watch.as_mut() {
            if w.cluster == cluster {
                w.broken = true;
            }
        }
        self.subs.forget_cluster(cluster);
        // Its subscriptions are gone and no server message can tell the client: close the
        // client connection (after what is written), its library resubscribes.
        link.subs > 0
    }

    fn is_error_answer(bytes: &[u8]) -> bool {
        matches!(bytes.first(), Some(b'-' | b'!'))
    }

    fn share(&self, _cluster: ClusterId) -> Option<Framing> {
        (!self.dedicated).then_some(Framing::Resp)
    }
}

/// An error reply, answered in turn.
fn local_error(message: &str) -> Plan<Redis> {
    Plan::Local(error(message.as_bytes()))
}

impl Redis {
    fn local_command(&mut self, cmd: &Command, l: Local) -> Plan<Self> {
        match l {
            Local::Ping => {
                if cmd.len() > 2 {
                    // Redis's pingCommand: arity -1 in the table, at most one message.
                    return local_error(replies::PING_ARITY);
                }
                let mut v = Vec::new();
                if self.proto == Protocol::Resp2 && self.subs.total() > 0 {
                    write_array_header(&mut v, 2);
                    write_bulk(&mut v, b"pong");
                    write_bulk(&mut v, cmd.arg(1).unwrap_or_default());
                } else if let Some(m) = cmd.arg(1) {
                    write_bulk(&mut v, m);
                } else {
                    v.extend_from_slice(replies::PONG);
                }
                Plan::Local(Bytes::from(v))
            }
            Local::Echo => {
                let mut v = Vec::new();
                write_bulk(&mut v, cmd.arg(1).unwrap_or_default());
                Plan::Local(Bytes::from(v))
            }
            Local::Quit => Plan::Close(Bytes::from_static(replies::OK)),
        }
    }
}
