//! The Redis session: one client connection made to look like one Redis server in front of the
//! clusters of a routing table.
//!
//! **Requests** are decoded from the client's bytes and become *entries* of a pending queue, in
//! arrival order. An entry knows its *parts* (one sub-request per cluster) and how to merge
//! their replies ([`merge::MergeKind`]). Replies leave strictly in request order: a finished head
//! is written at once, with every finished entry behind it. A single-key command is forwarded
//! as the client's bytes and its reply forwarded as the server's bytes.
//!
//! **Per cluster** the session holds a reply decoder and a FIFO of *slots*, one per reply the
//! server owes: the (entry, part) waiting for it, or *discard* (replayed session commands,
//! `MULTI`/`QUEUED` of a transaction, parts of requests already failed). RESP3 pushes and
//! RESP2 pub/sub messages are not replies: they go to the client at once, between whole
//! replies.
//!
//! **Everything sent is decided while handling client bytes** (the host's rule, see
//! [`geomesh_core::session`]): replies from servers only complete entries.
//!
//! **Deadlines.** Every entry that waits for a server gets `now + upstream_timeout_ms`
//! (blocking commands: their own timeout on top; `0` = none), covered with a
//! [`DeadlineCover`]. Expired entries get `-ERR geomesh: cluster <name>: no reply within <n> ms`
//! and the late replies are discarded; other entries and clusters are not affected.
//!
//! **SCAN cursors.** The client's cursor is `server_cursor << 12 | index`, `index` being the
//! position of the cluster in the routing table's `active_clusters()` list. A scan starts at
//! index 0 with server cursor 0 and, when a cluster's own cursor comes back 0, goes on with
//! the next index and server cursor 0; after the last cluster the client gets 0. The cursor is
//! stateless (valid on any connection and across calls). If the routing table changes during a
//! scan, the index is read against the new list: the scan goes on with whatever cluster now has
//! that index (an index past the end ends the scan), so keys may be missed or repeated, as
//! SCAN's own contract allows for keys that move.
//!
//! **Session state** (SELECT, AUTH, HELLO, CLIENT SETNAME/SETINFO/NO-EVICT/NO-TOUCH,
//! READONLY/READWRITE) goes to the local cluster, whose reply is the client's, and to every
//! shard connection already open. The command is stored when sent (and rolled back if the
//! local cluster refuses it or does not answer) and replayed at the head of every shard
//! connection the session opens later. `HELLO` is stored as its parts (`AUTH`, `HELLO <v>`,
//! `CLIENT SETNAME`); the replay order is AUTH, HELLO, CLIENT..., READONLY/READWRITE, SELECT
//! (a local connection opened by a state command gets the command in its place in that order,
//! not replayed twice). `RESET` forgets it all.
//!
//! Every open connection must hold the state the client was told of. One that answers a state
//! command otherwise than the local cluster (refuses what it accepted, accepts what it refused
//! or what failed), or refuses a replayed command, is **reset**: closed at the end of the
//! callback (the next request reopens it with the stored state replayed), and the requests
//! after the command that depend on it fail with an error naming the cluster and the command,
//! even those it already answered: their replies were produced in a state the client does not
//! have. (A request sent behind a replay that is then refused has still run on that server, in
//! the state the server had; the client gets an error for it.)
//!
//! **Pub/sub.** A channel is subscribed on every cluster a message on it can be published to
//! ([`RoutingTable::message_clusters`]: its key route, plus the `value` routes that can beat it);
//! a pattern on every active cluster. A shard connection that carries subscriptions and goes
//! away closes the client connection (after the bytes already written): no RESP message can
//! tell a subscriber its subscription is gone, a closed connection makes its library reconnect
//! and subscribe again.

mod merge;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use geomesh_core::{
    Action, ClusterId, DeadlineCover, Millis, RoutingTable, Session, UpstreamFailure,
};

use crate::commands::{
    self, BlockTimeout, Category, CommandSpec, Local, Merge, PubSub, SessionCmd, Split, Transaction,
};
use crate::{
    write_array_header, write_bulk, write_integer, write_null, write_push_header, Command, Kind,
    Protocol, Reply, ReplyDecoder, RequestDecoder, Settings,
};

use merge::{error, finalize, MergeKind, Part, SCAN_INDEX_BITS};

/// No deadline.
const NEVER: Millis = Millis::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Entry {
        seq: u64,
        part: u32,
    },
    Discard,
    /// A replayed session command (index into the store): an error means the connection does
    /// not hold the session's state, so it is reset (see [`RedisSession::condemn`]).
    Replay(u8),
}

/// A reply (or, for pub/sub confirmations, `left` replies) a server owes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    target: Target,
    left: u32,
    /// Pub/sub confirmations: an error ends the slot early (one error answers the command).
    confirm: bool,
}

#[derive(Debug)]
struct Upstream {
    dec: ReplyDecoder,
    buf: BytesMut,
    slots: VecDeque<Slot>,
    /// Subscriptions (channels, patterns, shard channels) held on this connection.
    subs: u32,
}

#[derive(Debug)]
enum Parts {
    One(Part),
    Many(Vec<Part>),
}

impl Parts {
    fn as_slice(&self) -> &[Part] {
        match self {
            Parts::One(p) => std::slice::from_ref(p),
            Parts::Many(v) => v,
        }
    }

    fn get_mut(&mut self, i: u32) -> Option<&mut Part> {
        match self {
            Parts::One(p) => (i == 0).then_some(p),
            Parts::Many(v) => v.get_mut(i as usize),
        }
    }
}

/// A stored session command and its generation.
type Stored = (u64, Command);

/// What to undo if a session command is refused.
#[derive(Debug)]
struct Rollback {
    /// (store index, generation written, what was there before)
    stored: Vec<(usize, u64, Option<Stored>)>,
    proto: Protocol,
}

#[derive(Debug)]
struct Entry {
    merge: MergeKind,
    parts: Parts,
    /// Parts still waiting.
    left: u32,
    deadline: Millis,
    /// The time budget behind `deadline`, for the error message.
    budget: u64,
    done: Option<Bytes>,
    /// Close the client connection once this entry's reply is written (QUIT, protocol error).
    close_after: bool,
    rollback: Option<Box<Rollback>>,
}

impl Entry {
    /// An entry whose reply is known already (answered locally), waiting only for its turn.
    fn answered(bytes: Bytes, close_after: bool) -> Entry {
        Entry {
            merge: MergeKind::Forward,
            parts: Parts::Many(Vec::new()),
            left: 0,
            deadline: NEVER,
            budget: 0,
            done: Some(bytes),
            close_after,
            rollback: None,
        }
    }
}

/// Connection-state commands kept for replay, in replay order.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
enum StoreKey {
    Auth = 0,
    Hello,
    Name,
    LibName,
    LibVer,
    NoEvict,
    NoTouch,
    ReadMode,
    Select,
}
const STORE_KEYS: usize = 9;
/// [`StoreKey`] names, for error messages.
const STORE_NAMES: [&str; STORE_KEYS] = [
    "AUTH",
    "HELLO",
    "CLIENT SETNAME",
    "CLIENT SETINFO LIB-NAME",
    "CLIENT SETINFO LIB-VER",
    "CLIENT NO-EVICT",
    "CLIENT NO-TOUCH",
    "READONLY/READWRITE",
    "SELECT",
];

#[derive(Debug, Default)]
struct Tx {
    cmds: Vec<Command>,
    clusters: Vec<ClusterId>,
    dirty: bool,
}

#[derive(Debug, Clone, Copy)]
struct Watch {
    cluster: ClusterId,
    /// The connection holding the WATCH went away: EXEC must fail.
    broken: bool,
}

#[derive(Debug, Default)]
struct Subs {
    channels: BTreeMap<Bytes, Vec<ClusterId>>,
    patterns: BTreeMap<Bytes, Vec<ClusterId>>,
    shard: BTreeMap<Bytes, Vec<ClusterId>>,
}

impl Subs {
    fn total(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shard.len()
    }

    /// The map a (un)subscribe of family `p` works on.
    fn map_mut(&mut self, p: PubSub) -> &mut BTreeMap<Bytes, Vec<ClusterId>> {
        match p {
            PubSub::Subscribe | PubSub::Unsubscribe => &mut self.channels,
            PubSub::PSubscribe | PubSub::PUnsubscribe => &mut self.patterns,
            _ => &mut self.shard,
        }
    }

    /// The count a confirmation of family `p` carries: shard channels are counted apart, as in
    /// Redis.
    fn count(&self, p: PubSub) -> usize {
        match p {
            PubSub::SSubscribe | PubSub::SUnsubscribe => self.shard.len(),
            _ => self.channels.len() + self.patterns.len(),
        }
    }
}

/// Adds `name` to the names going to cluster `c`.
fn group_by_cluster(per_cluster: &mut Vec<(ClusterId, Vec<Bytes>)>, c: ClusterId, name: &Bytes) {
    match per_cluster.iter_mut().find(|(pc, _)| *pc == c) {
        Some((_, v)) => v.push(name.clone()),
        None => per_cluster.push((c, vec![name.clone()])),
    }
}

/// A connection out of step with the session state, to close at the end of the callback.
#[derive(Debug)]
struct Reset {
    cluster: ClusterId,
    /// The error for the requests it fails.
    message: String,
    /// Entries after this seq that already have a reply from the cluster fail too: that reply
    /// was produced under a state the client was not told of.
    after: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Open,
    /// A closing entry (QUIT, protocol error) is queued; no more client bytes are read.
    Pending,
    /// Its reply was written in callback number `.0`: close in a later callback.
    Flushed(u64),
    Done,
}

/// The Redis [`Session`]. See the module documentation.
#[derive(Debug)]
pub struct RedisSession {
    table: Rc<RoutingTable>,
    timeout_ms: u64,
    granularity: u64,
    max_pending: usize,
    max_tx: usize,
    requests: RequestDecoder,
    reply_limits: crate::Limits,
    inbuf: BytesMut,
    queue: VecDeque<Entry>,
    head_seq: u64,
    ups: Vec<Option<Upstream>>,
    cover: DeadlineCover,
    /// The last wake-up asked for (skips the cover's bookkeeping on the hot path).
    last_wake: Millis,
    proto: Protocol,
    store: [Option<Stored>; STORE_KEYS],
    store_gen: u64,
    tx: Option<Tx>,
    watch: Option<Watch>,
    subs: Subs,
    to_client: Vec<u8>,
    sends: Vec<(ClusterId, Vec<u8>)>,
    closing: Closing,
    /// Callback counter.
    tick: u64,
    /// Connections to reset before this callback ends.
    resets: Vec<Reset>,
    /// A connection carrying subscriptions is gone: close the client connection in this
    /// callback, after what is already written, so that its library reconnects and
    /// resubscribes (a subscriber must never miss messages silently).
    close_now: bool,
}

fn simple(text: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(text.len() + 3);
    crate::write_simple(&mut v, text);
    Bytes::from(v)
}

/// A table name as users write it: `client|setname` -> `CLIENT SETNAME`.
fn upper(name: &str) -> String {
    name.to_ascii_uppercase().replace('|', " ")
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn is_sub_keyword(b: &[u8]) -> bool {
    matches!(
        b,
        b"subscribe"
            | b"psubscribe"
            | b"ssubscribe"
            | b"unsubscribe"
            | b"punsubscribe"
            | b"sunsubscribe"
    )
}

fn is_message_keyword(b: &[u8]) -> bool {
    matches!(b, b"message" | b"pmessage" | b"smessage")
}

/// Appends `bytes` to the batch for `cluster` (one `Send` per cluster and callback).
fn batch(sends: &mut Vec<(ClusterId, Vec<u8>)>, cluster: ClusterId, bytes: &[u8]) {
    if let Some((_, b)) = sends.iter_mut().rev().find(|(c, _)| *c == cluster) {
        b.extend_from_slice(bytes);
    } else {
        sends.push((cluster, bytes.to_vec()));
    }
}

impl RedisSession {
    /// A session for one client connection. `upstream_timeout_ms` is the configuration's.
    pub fn new(table: Rc<RoutingTable>, upstream_timeout_ms: u32, settings: &Settings) -> Self {
        let timeout_ms = u64::from(upstream_timeout_ms);
        let granularity = settings.granularity(timeout_ms);
        RedisSession {
            table,
            timeout_ms,
            granularity,
            max_pending: settings.max_pending_requests,
            max_tx: settings.max_transaction_commands,
            requests: RequestDecoder::new(settings.limits),
            reply_limits: settings.limits,
            inbuf: BytesMut::new(),
            queue: VecDeque::new(),
            head_seq: 0,
            ups: Vec::new(),
            cover: DeadlineCover::new(granularity),
            last_wake: 0,
            proto: Protocol::Resp2,
            store: Default::default(),
            store_gen: 0,
            tx: None,
            watch: None,
            subs: Subs::default(),
            to_client: Vec::new(),
            sends: Vec::new(),
            closing: Closing::Open,
            tick: 0,
            resets: Vec::new(),
            close_now: false,
        }
    }

    /// The RESP version the client speaks (after `HELLO`).
    pub fn protocol(&self) -> Protocol {
        self.proto
    }

    /// Requests waiting for their reply.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    fn name(&self, c: ClusterId) -> &str {
        self.table.cluster_name(c)
    }

    // ---- output ------------------------------------------------------------------------------

    fn write_client(&mut self, bytes: &[u8]) {
        if matches!(self.closing, Closing::Open | Closing::Pending) {
            self.to_client.extend_from_slice(bytes);
        }
    }

    /// Emits the batched sends and client bytes, then handles a pending close.
    fn finish(&mut self, out: &mut Vec<Action>, downstream: bool) {
        if !self.resets.is_empty() {
            self.apply_resets(out);
        }
        for (cluster, bytes) in self.sends.drain(..) {
            out.push(Action::Send { cluster, bytes });
        }
        if !self.to_client.is_empty() {
            out.push(Action::Reply(std::mem::take(&mut self.to_client)));
        }
        if self.close_now && self.closing != Closing::Done {
            out.push(Action::CloseDownstream);
            self.closing = Closing::Done;
            self.queue.clear();
            return;
        }
        if let Closing::Flushed(t) = self.closing {
            // From client bytes the host flushes before closing; from other callbacks only
            // bytes of earlier callbacks are safe, so wait for a later one.
            if downstream || t < self.tick {
                out.push(Action::CloseDownstream);
                self.closing = Closing::Done;
            }
        }
    }

    fn begin(&mut self, out: &mut Vec<Action>) {
        self.tick += 1;
        if let Closing::Flushed(t) = self.closing {
            if t < self.tick {
                out.push(Action::CloseDownstream);
                self.closing = Closing::Done;
            }
        }
    }

    // ---- the pending queue -------------------------------------------------------------------

    fn next_seq(&self) -> u64 {
        self.head_seq + self.queue.len() as u64
    }

    /// A reply known now: written at once if nothing is ahead of it.
    fn local(&mut self, bytes: Bytes) {
        if self.queue.is_empty() {
            self.write_client(&bytes);
        } else {
            self.queue.push_back(Entry::answered(bytes, false));
        }
    }

    fn local_error(&mut self, message: &str) {
        self.local(error(message.as_bytes()));
    }

    fn local_close(&mut self, bytes: Bytes, now: Millis, out: &mut Vec<Action>) {
        self.closing = Closing::Pending;
        self.queue.push_back(Entry::answered(bytes, true));
        self.flush_ready();
        if self.closing == Closing::Pending {
            // Earlier replies are still due: ask for callbacks after they can have arrived.
            let last = self
                .queue
                .iter()
                .map(|e| e.deadline)
                .filter(|d| *d != NEVER)
                .max()
                .unwrap_or(now);
            for delay in [2, 10, 50, 250, 1000] {
                out.push(Action::WakeAt(now + delay));
            }
            if last > now && last - now <= 3_600_000 {
                out.push(Action::WakeAt(last + self.granularity + 5));
            }
        }
    }

    /// Writes every finished entry at the head of the queue (not while connections wait to
    /// be reset: the entries they answered may have to fail first).
    fn flush_ready(&mut self) {
        if !self.resets.is_empty() {
            return;
        }
        while self.queue.front().is_some_and(|e| e.done.is_some()) {
            let Some(e) = self.queue.pop_front() else {
                break;
            };
            self.head_seq += 1;
            if let Some(bytes) = e.done {
                self.write_client(&bytes);
            }
            if e.close_after {
                self.closing = Closing::Flushed(self.tick);
                self.queue.clear();
                break;
            }
        }
    }

    /// Arms the deadline of a new entry: `budget` ms from now (`None` = no deadline).
    fn deadline(&mut self, budget: Option<u64>, now: Millis, out: &mut Vec<Action>) -> Millis {
        let Some(b) = budget else { return NEVER };
        let d = now.saturating_add(b);
        if self.last_wake >= d
            && self.last_wake <= d.saturating_add(self.granularity)
            && self.last_wake > now
        {
            return d;
        }
        if let Some(at) = self.cover.cover(d, now) {
            out.push(Action::WakeAt(at));
            self.last_wake = at;
        }
        d
    }

    /// The connection state of `c`, opened (with the stored session state replayed at its
    /// head) if it is not open.
    fn upstream(&mut self, c: ClusterId) -> Option<&mut Upstream> {
        self.open_with(c, |_| true);
        self.ups.get_mut(c.index()).and_then(Option::as_mut)
    }

    /// Opens the connection to `c` if it is not open, replaying the stored commands whose
    /// store index `replay` accepts; returns whether it was opened now.
    fn open_with(&mut self, c: ClusterId, replay: impl Fn(usize) -> bool) -> bool {
        let i = c.index();
        if self.ups.len() <= i {
            self.ups.resize_with(i + 1, || None);
        }
        if self.ups.get(i).is_some_and(Option::is_some) {
            return false;
        }
        let slots = self.replay(c, replay);
        if let Some(slot) = self.ups.get_mut(i) {
            *slot = Some(Upstream {
                dec: ReplyDecoder::new(self.reply_limits),
                buf: BytesMut::new(),
                slots,
                subs: 0,
            });
        }
        true
    }

    /// Queues the stored commands `which` accepts to `c`; returns their slots.
    fn replay(&mut self, c: ClusterId, which: impl Fn(usize) -> bool) -> VecDeque<Slot> {
        let mut slots = VecDeque::new();
        for (k, stored) in self.store.iter().enumerate() {
            if let Some((_, cmd)) = stored {
                if which(k) {
                    batch(&mut self.sends, c, cmd.raw());
                    slots.push_back(Slot {
                        target: Target::Replay(k as u8),
                        left: 1,
                        confirm: false,
                    });
                }
            }
        }
        slots
    }

    /// Queues `bytes` to `cluster` with a slot.
    fn send(&mut self, cluster: ClusterId, bytes: &[u8], slot: Slot) {
        if let Some(u) = self.upstream(cluster) {
            u.slots.push_back(slot);
        }
        batch(&mut self.sends, cluster, bytes);
    }

    /// A new entry whose parts are `sends` (cluster, bytes); returns its seq.
    fn dispatch_parts(
        &mut self,
        merge: MergeKind,
        sends: Vec<(ClusterId, Vec<u8>)>,
        budget: Option<u64>,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> u64 {
        let seq = self.next_seq();
        let mut parts = Vec::with_capacity(sends.len());
        for (i, (cluster, bytes)) in sends.iter().enumerate() {
            self.send(
                *cluster,
                bytes,
                Slot {
                    target: Target::Entry {
                        seq,
                        part: i as u32,
                    },
                    left: 1,
                    confirm: false,
                },
            );
            parts.push(Part {
                cluster: *cluster,
                reply: None,
            });
        }
        let deadline = self.deadline(budget, now, out);
        self.queue.push_back(Entry {
            merge,
            left: parts.len() as u32,
            parts: Parts::Many(parts),
            deadline,
            budget: budget.unwrap_or(0),
            done: None,
            close_after: false,
            rollback: None,
        });
        seq
    }

    /// The hot path: one cluster, the client's bytes as they came.
    fn forward(
        &mut self,
        cluster: ClusterId,
        bytes: &[u8],
        budget: Option<u64>,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let seq = self.next_seq();
        self.send(
            cluster,
            bytes,
            Slot {
                target: Target::Entry { seq, part: 0 },
                left: 1,
                confirm: false,
            },
        );
        let deadline = self.deadline(budget, now, out);
        self.queue.push_back(Entry {
            merge: MergeKind::Forward,
            parts: Parts::One(Part {
                cluster,
                reply: None,
            }),
            left: 1,
            deadline,
            budget: budget.unwrap_or(0),
            done: None,
            close_after: false,
            rollback: None,
        });
    }

    /// A part got its reply.
    fn complete(&mut self, seq: u64, part: u32, reply: Reply) {
        let Some(i) = seq
            .checked_sub(self.head_seq)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return;
        };
        let Some(e) = self.queue.get_mut(i) else {
            return;
        };
        if e.done.is_some() {
            return;
        }
        if i == 0 && e.left == 1 && matches!(e.merge, MergeKind::Forward) && !e.close_after {
            // Hot path: the head's only reply goes out as the server sent it.
            self.queue.pop_front();
            self.head_seq += 1;
            self.write_client(reply.raw());
            self.flush_ready();
            return;
        }
        if let Some(p) = e.parts.get_mut(part) {
            if p.reply.is_none() {
                p.reply = Some(reply);
                e.left = e.left.saturating_sub(1);
            }
        }
        if e.left == 0 {
            self.finish_entry(i);
            if i == 0 {
                self.flush_ready();
            }
        }
    }

    fn finish_entry(&mut self, i: usize) {
        let table = self.table.clone();
        let proto = self.proto;
        let seq = self.head_seq + i as u64;
        let Some(e) = self.queue.get_mut(i) else {
            return;
        };
        let parts = e.parts.as_slice();
        let bytes = match &e.merge {
            MergeKind::Session { name } => {
                // The local cluster's reply is the client's; a connection that answered
                // otherwise does not hold the state the client is told of: it is reset.
                let shown = upper(name);
                let primary = parts.first().and_then(|p| p.reply.as_ref());
                let ok = primary.is_some_and(|r| !r.is_error());
                let mut out_of_step = Vec::new();
                for p in parts.iter().skip(1) {
                    let message = match &p.reply {
                        Some(r) if r.is_error() != ok => continue,
                        Some(r) if r.is_error() => format!(
                            "ERR geomesh: cluster {}: refused {shown}: {}",
                            table.cluster_name(p.cluster),
                            String::from_utf8_lossy(r.root().as_bytes().unwrap_or_default())
                        ),
                        Some(_) => format!(
                            "ERR geomesh: cluster {}: connection reset: it accepted {shown}, which failed on the local cluster",
                            table.cluster_name(p.cluster)
                        ),
                        None => format!(
                            "ERR geomesh: cluster {}: no reply to {shown}",
                            table.cluster_name(p.cluster)
                        ),
                    };
                    out_of_step.push((p.cluster, message));
                }
                let bytes = match primary {
                    Some(r) => r.raw().clone(),
                    None => error(b"ERR geomesh: no reply"),
                };
                let rollback = if ok { None } else { e.rollback.take() };
                e.done = Some(bytes);
                if let Some(rb) = rollback {
                    self.undo(*rb);
                }
                for (c, message) in out_of_step {
                    self.condemn(c, message, Some(seq));
                }
                return;
            }
            other => finalize(other, parts, &table, proto),
        };
        e.done = Some(bytes);
    }

    fn undo(&mut self, rb: Rollback) {
        for (key, gen, prev) in rb.stored.into_iter().rev() {
            if let Some(slot) = self.store.get_mut(key) {
                if slot.as_ref().is_some_and(|(g, _)| *g == gen) {
                    *slot = prev;
                }
            }
        }
        self.proto = rb.proto;
    }

    /// Fails entry `i` with `message` (if still waiting); its late replies will be discarded.
    fn fail(&mut self, i: usize, message: &[u8]) {
        self.fail_entry(i, message, false)
    }

    /// Fails entry `i`; `force`: even if it has its reply already (not yet written). A failed
    /// session command is rolled back, and the connections that accepted it, or may still,
    /// are reset.
    fn fail_entry(&mut self, i: usize, message: &[u8], force: bool) {
        let seq = self.head_seq + i as u64;
        let Some(e) = self.queue.get_mut(i) else {
            return;
        };
        if e.done.is_some() && !force {
            return;
        }
        e.done = Some(error(message));
        let Some(rb) = e.rollback.take() else {
            return;
        };
        let name = match &e.merge {
            MergeKind::Session { name } => upper(name),
            _ => String::new(),
        };
        let holders: Vec<ClusterId> = e
            .parts
            .as_slice()
            .iter()
            .filter(|p| p.reply.as_ref().is_none_or(|r| !r.is_error()))
            .map(|p| p.cluster)
            .collect();
        self.undo(*rb);
        for c in holders {
            let m = format!(
                "ERR geomesh: cluster {}: connection reset: {name} failed, this connection may hold its state",
                self.name(c)
            );
            self.condemn(c, m, Some(seq));
        }
    }

    /// The connection to `c` does not hold the session's state: at the end of this callback it
    /// is closed (the next request reopens it with the state replayed) and the requests that
    /// depend on it fail with `message` (see [`Reset`]).
    fn condemn(&mut self, c: ClusterId, message: String, after: Option<u64>) {
        match self.resets.iter_mut().find(|r| r.cluster == c) {
            Some(r) => {
                r.after = match (r.after, after) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            None => self.resets.push(Reset {
                cluster: c,
                message,
                after,
            }),
        }
    }

    fn apply_resets(&mut self, out: &mut Vec<Action>) {
        // Each round fails entries; only a failed session command adds resets, once (its
        // rollback is taken), so this ends; the bound is a guard.
        let mut rounds = 0;
        while !self.resets.is_empty() && rounds < 1024 {
            rounds += 1;
            let r = self.resets.remove(0);
            if let Some(after) = r.after {
                let hit: Vec<usize> = self
                    .queue
                    .iter()
                    .enumerate()
                    .filter(|(i, e)| {
                        self.head_seq + *i as u64 > after
                            && e.parts.as_slice().iter().any(|p| p.cluster == r.cluster)
                    })
                    .map(|(i, _)| i)
                    .collect();
                for i in hit {
                    self.fail_entry(i, r.message.as_bytes(), true);
                }
            }
            if let Some(up) = self.ups.get_mut(r.cluster.index()).and_then(Option::take) {
                out.push(Action::CloseUpstream(r.cluster));
                self.lose_upstream(r.cluster, up, r.message.as_bytes());
            }
        }
        self.resets.clear();
        self.flush_ready();
    }

    // ---- client requests ---------------------------------------------------------------------

    fn budget(&self) -> Option<u64> {
        Some(self.timeout_ms)
    }

    fn route_first(&self, cmd: &Command, spec: &CommandSpec) -> Result<ClusterId, &'static str> {
        let mut keys = spec.keys(cmd).map_err(|e| e.message())?;
        Ok(match keys.next().and_then(|i| cmd.arg(i)) {
            Some(k) => self.table.route(k),
            None => self.table.default_cluster(),
        })
    }

    /// The one cluster all keys route to (default for none), or the `-CROSSSLOT` message.
    fn same_shard(&self, cmd: &Command, spec: &CommandSpec) -> Result<ClusterId, String> {
        let keys = spec.keys(cmd).map_err(|e| e.message().to_owned())?;
        self.one_cluster(keys.filter_map(|i| cmd.arg(i)))
    }

    fn one_cluster<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Result<ClusterId, String> {
        let mut seen: Vec<ClusterId> = Vec::new();
        for k in keys {
            let c = self.table.route(k);
            if !seen.contains(&c) {
                seen.push(c);
            }
        }
        match seen.as_slice() {
            [] => Ok(self.table.default_cluster()),
            [c] => Ok(*c),
            many => Err(self.crossslot(many)),
        }
    }

    fn crossslot(&self, clusters: &[ClusterId]) -> String {
        let names: Vec<&str> = clusters.iter().map(|c| self.name(*c)).collect();
        format!(
            "CROSSSLOT Keys in request don't hash to the same slot (geomesh: they route to clusters {})",
            names.join(", ")
        )
    }

    fn dispatch(&mut self, cmd: Command, now: Millis, out: &mut Vec<Action>) {
        let spec = match commands::lookup(&cmd) {
            Ok(s) => s,
            Err(e) => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.dirty = true;
                }
                let msg = e.message(&cmd);
                return self.local_error(&msg);
            }
        };
        let cat = spec.category;
        let exempt = matches!(
            cat,
            Category::Transaction(
                Transaction::Multi | Transaction::Exec | Transaction::Discard | Transaction::Watch
            ) | Category::Local(Local::Quit)
                | Category::Session(SessionCmd::Reset)
        );
        if self.tx.is_some() && !exempt {
            return self.queue_in_tx(cmd, spec);
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
                let msg = format!(
                    "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                    spec.name.replace('|', " ")
                );
                return self.local_error(&msg);
            }
        }
        if self.queue.len() >= self.max_pending {
            let msg = format!(
                "ERR geomesh: too many requests waiting for replies on this connection (limit {})",
                self.max_pending
            );
            return self.local_error(&msg);
        }
        match cat {
            Category::Keyed => match self.route_first(&cmd, spec) {
                Ok(c) => self.forward(c, cmd.raw(), self.budget(), now, out),
                Err(m) => self.local_error(m),
            },
            Category::SameShard => match self.same_shard(&cmd, spec) {
                Ok(c) => self.forward(c, cmd.raw(), self.budget(), now, out),
                Err(m) => self.local_error(&m),
            },
            Category::Blocking(_) => {
                let budget = match spec.timeout(&cmd) {
                    Ok(Some(BlockTimeout::Forever)) => None,
                    Ok(Some(BlockTimeout::Millis(ms))) => Some(ms.saturating_add(self.timeout_ms)),
                    Ok(_) => self.budget(),
                    Err(e) => return self.local_error(e.message()),
                };
                match self.same_shard(&cmd, spec) {
                    Ok(c) => self.forward(c, cmd.raw(), budget, now, out),
                    Err(m) => self.local_error(&m),
                }
            }
            Category::Split(split) => self.split(&cmd, spec, split, now, out),
            Category::Broadcast(m) => self.broadcast(&cmd, spec, m, now, out),
            Category::LocalCluster => {
                let c = self.table.local_cluster();
                self.forward(c, cmd.raw(), self.budget(), now, out)
            }
            Category::Local(l) => self.local_command(&cmd, l, now, out),
            Category::Session(s) => self.session_command(cmd, s, now, out),
            Category::Transaction(t) => self.transaction(cmd, spec, t, now, out),
            Category::PubSub(p) => self.pubsub(&cmd, p, now, out),
            Category::Unsupported(reason) => {
                let msg = format!(
                    "ERR geomesh: {} is not supported through the sharding proxy: {reason}",
                    upper(spec.name)
                );
                self.local_error(&msg)
            }
        }
    }

    fn local_command(&mut self, cmd: &Command, l: Local, now: Millis, out: &mut Vec<Action>) {
        match l {
            Local::Ping => {
                if cmd.len() > 2 {
                    // Redis's pingCommand: arity -1 in the table, at most one message.
                    return self.local_error("ERR wrong number of arguments for 'ping' command");
                }
                let mut v = Vec::new();
                if self.proto == Protocol::Resp2 && self.subs.total() > 0 {
                    write_array_header(&mut v, 2);
                    write_bulk(&mut v, b"pong");
                    write_bulk(&mut v, cmd.arg(1).unwrap_or_default());
                } else if let Some(m) = cmd.arg(1) {
                    write_bulk(&mut v, m);
                } else {
                    v.extend_from_slice(b"+PONG\r\n");
                }
                self.local(Bytes::from(v))
            }
            Local::Echo => {
                let mut v = Vec::new();
                write_bulk(&mut v, cmd.arg(1).unwrap_or_default());
                self.local(Bytes::from(v))
            }
            Local::Quit => self.local_close(simple(b"OK"), now, out),
        }
    }

    fn split(
        &mut self,
        cmd: &Command,
        spec: &CommandSpec,
        split: Split,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let keys = match spec.keys(cmd) {
            Ok(k) => k,
            Err(e) => return self.local_error(e.message()),
        };
        // Arguments per cluster (the command name first), clusters in order of first use.
        let mut groups: Vec<(ClusterId, Vec<usize>)> = Vec::new();
        let mut order: Vec<(u32, u32)> = Vec::new();
        for i in keys {
            let Some(key) = cmd.arg(i) else { continue };
            let c = self.table.route(key);
            let g = match groups.iter().position(|(gc, _)| *gc == c) {
                Some(g) => g,
                None => {
                    groups.push((c, vec![0]));
                    groups.len() - 1
                }
            };
            if let Some((_, args)) = groups.get_mut(g) {
                args.push(i);
                if split == Split::Mset {
                    args.push(i + 1);
                } else {
                    order.push((g as u32, (args.len() - 2) as u32));
                }
            }
        }
        if groups.len() <= 1 {
            let c = groups
                .first()
                .map(|g| g.0)
                .unwrap_or_else(|| self.table.default_cluster());
            return self.forward(c, cmd.raw(), self.budget(), now, out);
        }
        let sends = groups
            .into_iter()
            .map(|(c, args)| {
                let mut b = Vec::with_capacity(cmd.raw().len() / 2 + 16);
                cmd.write_subset(&args, &mut b);
                (c, b)
            })
            .collect();
        let merge = match split {
            Split::Mget => MergeKind::Mget { order },
            Split::Mset => MergeKind::Mset,
            Split::Sum => MergeKind::Sum,
        };
        self.dispatch_parts(merge, sends, self.budget(), now, out);
    }

    fn broadcast(
        &mut self,
        cmd: &Command,
        spec: &CommandSpec,
        m: Merge,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let budget = match spec.timeout(cmd) {
            Ok(Some(BlockTimeout::Millis(ms))) => Some(ms.saturating_add(self.timeout_ms)),
            Ok(Some(BlockTimeout::Forever)) => None,
            Ok(_) => self.budget(),
            Err(e) => return self.local_error(e.message()),
        };
        let active: Vec<ClusterId> = self.table.active_clusters().to_vec();
        if m == Merge::Scan {
            return self.scan(cmd, &active, now, out);
        }
        if active.len() == 1 {
            if let Some(c) = active.first() {
                return self.forward(*c, cmd.raw(), budget, now, out);
            }
        }
        let merge = match m {
            Merge::Union => MergeKind::Union,
            Merge::Sum => MergeKind::Sum,
            Merge::AllOk => MergeKind::AllOk,
            Merge::Any => MergeKind::Any,
            Merge::Min => MergeKind::Min,
            Merge::Max => MergeKind::Max,
            Merge::And => MergeKind::And,
            Merge::OneOk => MergeKind::OneOk,
            Merge::NumSub => MergeKind::NumSub,
            Merge::Scan => MergeKind::Forward,
        };
        let sends = active.iter().map(|c| (*c, cmd.raw().to_vec())).collect();
        self.dispatch_parts(merge, sends, budget, now, out);
    }

    fn scan(&mut self, cmd: &Command, active: &[ClusterId], now: Millis, out: &mut Vec<Action>) {
        let Some(cursor) = cmd.arg(1).and_then(parse_u64) else {
            return self.local_error("ERR invalid cursor");
        };
        let idx = cursor & ((1 << SCAN_INDEX_BITS) - 1);
        let server = cursor >> SCAN_INDEX_BITS;
        let Some(&cluster) = usize::try_from(idx).ok().and_then(|i| active.get(i)) else {
            // Past the last cluster (the table shrank): the scan is over.
            let mut v = Vec::new();
            write_array_header(&mut v, 2);
            write_bulk(&mut v, b"0");
            write_array_header(&mut v, 0);
            return self.local(Bytes::from(v));
        };
        let mut b = Vec::with_capacity(cmd.raw().len() + 8);
        write_array_header(&mut b, cmd.len());
        b.put_slice(cmd.arg_raw(0).unwrap_or_default());
        write_bulk(&mut b, server.to_string().as_bytes());
        for i in 2..cmd.len() {
            b.put_slice(cmd.arg_raw(i).unwrap_or_default());
        }
        let merge = MergeKind::Scan {
            idx,
            count: active.len() as u64,
        };
        self.dispatch_parts(merge, vec![(cluster, b)], self.budget(), now, out);
    }

    // ---- session state -----------------------------------------------------------------------

    fn owned(cmd: &Command) -> Command {
        Command::new(cmd.args())
    }

    fn session_command(&mut self, cmd: Command, s: SessionCmd, now: Millis, out: &mut Vec<Action>) {
        let local = self.table.local_cluster();
        let mut stored: Vec<(StoreKey, Command)> = Vec::new();
        let mut proto = self.proto;
        match s {
            SessionCmd::Reset => return self.reset(cmd, now, out),
            SessionCmd::Hello => {
                let Some(v) = cmd.arg(1) else {
                    // HELLO alone: the server's handshake map, no state.
                    return self.forward(local, cmd.raw(), self.budget(), now, out);
                };
                let version = match parse_u64(v) {
                    Some(2) => Protocol::Resp2,
                    Some(3) => Protocol::Resp3,
                    // NOPROTO or a syntax error: the server words it.
                    _ => return self.forward(local, cmd.raw(), self.budget(), now, out),
                };
                let mut i = 2;
                while let Some(opt) = cmd.arg(i) {
                    if opt.eq_ignore_ascii_case(b"AUTH") && i + 2 < cmd.len() {
                        let (Some(u), Some(p)) = (cmd.arg(i + 1), cmd.arg(i + 2)) else {
                            break;
                        };
                        stored.push((StoreKey::Auth, Command::new([&b"AUTH"[..], u, p])));
                        i += 3;
                    } else if opt.eq_ignore_ascii_case(b"SETNAME") && i + 1 < cmd.len() {
                        let Some(n) = cmd.arg(i + 1) else { break };
                        stored.push((
                            StoreKey::Name,
                            Command::new([&b"CLIENT"[..], b"SETNAME", n]),
                        ));
                        i += 2;
                    } else {
                        return self.forward(local, cmd.raw(), self.budget(), now, out);
                    }
                }
                stored.push((StoreKey::Hello, Command::new([&b"HELLO"[..], v])));
                proto = version;
            }
            SessionCmd::Auth => stored.push((StoreKey::Auth, Self::owned(&cmd))),
            SessionCmd::Select => stored.push((StoreKey::Select, Self::owned(&cmd))),
            SessionCmd::ClientSetName => stored.push((StoreKey::Name, Self::owned(&cmd))),
            SessionCmd::ClientSetInfo => {
                let key = if cmd
                    .arg(2)
                    .is_some_and(|a| a.eq_ignore_ascii_case(b"LIB-VER"))
                {
                    StoreKey::LibVer
                } else {
                    StoreKey::LibName
                };
                stored.push((key, Self::owned(&cmd)))
            }
            SessionCmd::ClientNoEvict => stored.push((StoreKey::NoEvict, Self::owned(&cmd))),
            SessionCmd::ClientNoTouch => stored.push((StoreKey::NoTouch, Self::owned(&cmd))),
            SessionCmd::ReadOnly | SessionCmd::ReadWrite => {
                stored.push((StoreKey::ReadMode, Self::owned(&cmd)))
            }
        }
        // Every open connection gets the command; so does the local one, opened if needed.
        let mut targets = vec![local];
        for (i, u) in self.ups.iter().enumerate() {
            if u.is_some() && i != local.index() {
                targets.push(ClusterId(i as u16));
            }
        }
        let keys: Vec<usize> = stored.iter().map(|(k, _)| *k as usize).collect();
        let first = keys.iter().copied().min().unwrap_or(STORE_KEYS);
        let mut rb = Rollback {
            stored: Vec::new(),
            proto: self.proto,
        };
        for (key, c) in stored {
            self.store_gen += 1;
            let k = key as usize;
            if let Some(slot) = self.store.get_mut(k) {
                let prev = slot.replace((self.store_gen, c));
                rb.stored.push((k, self.store_gen, prev));
            }
        }
        self.proto = proto;
        // A local connection opened now gets the stored state around the command, in replay
        // order (AUTH before the rest), without what the command itself sets: the command's
        // own reply must speak for it.
        let opened = self.open_with(local, |k| k < first && !keys.contains(&k));
        let name: &'static str = commands::lookup(&cmd).map(|s| s.name).unwrap_or("command");
        let sends = targets
            .into_iter()
            .map(|c| (c, cmd.raw().to_vec()))
            .collect();
        let seq = self.dispatch_parts(MergeKind::Session { name }, sends, self.budget(), now, out);
        if let Some(e) = seq
            .checked_sub(self.head_seq)
            .and_then(|i| self.queue.get_mut(i as usize))
        {
            e.rollback = Some(Box::new(rb));
        }
        if opened {
            let mut rest = self.replay(local, |k| k > first && !keys.contains(&k));
            if let Some(Some(u)) = self.ups.get_mut(local.index()) {
                u.slots.append(&mut rest);
            }
        }
    }

    fn reset(&mut self, cmd: Command, now: Millis, out: &mut Vec<Action>) {
        let local = self.table.local_cluster();
        self.store = Default::default();
        self.upstream(local);
        self.proto = Protocol::Resp2;
        self.tx = None;
        self.watch = None;
        self.subs = Subs::default();
        let mut targets = vec![local];
        for (i, u) in self.ups.iter_mut().enumerate() {
            if let Some(u) = u {
                u.subs = 0;
                if i != local.index() {
                    targets.push(ClusterId(i as u16));
                }
            }
        }
        let sends = targets
            .into_iter()
            .map(|c| (c, cmd.raw().to_vec()))
            .collect();
        self.dispatch_parts(
            MergeKind::Session { name: "reset" },
            sends,
            self.budget(),
            now,
            out,
        );
    }

    // ---- transactions ------------------------------------------------------------------------

    fn queue_in_tx(&mut self, cmd: Command, spec: &'static CommandSpec) {
        let multi_cluster = self.table.active_clusters().len() > 1;
        let refuse = |why: &str| {
            format!(
                "ERR geomesh: {} is not supported inside MULTI through the sharding proxy: {why}",
                upper(spec.name)
            )
        };
        let problem: Option<String> = if spec.has_flag(commands::flags::NO_MULTI) {
            Some("ERR Command not allowed inside a transaction".to_owned())
        } else {
            match spec.category {
                Category::Unsupported(reason) => Some(format!(
                    "ERR geomesh: {} is not supported through the sharding proxy: {reason}",
                    upper(spec.name)
                )),
                Category::Session(_) => {
                    Some(refuse("it changes the state of every shard connection"))
                }
                Category::PubSub(PubSub::Publish | PubSub::SPublish) => None,
                Category::PubSub(_) => Some(refuse("subscriptions span every cluster")),
                Category::Broadcast(_) if multi_cluster => Some(refuse("it runs on every cluster")),
                _ => None,
            }
        };
        if let Some(p) = problem {
            if let Some(tx) = self.tx.as_mut() {
                tx.dirty = true;
            }
            return self.local_error(&p);
        }
        let clusters: Result<Vec<ClusterId>, &'static str> = match spec.category {
            Category::PubSub(_) => {
                let ch = cmd.arg(1).unwrap_or_default();
                Ok(vec![self.table.route_message(
                    Some(ch),
                    crate::commands::publish_payload(&cmd),
                )])
            }
            _ => spec.keys(&cmd).map_err(|e| e.message()).map(|ks| {
                let mut v: Vec<ClusterId> = Vec::new();
                for i in ks {
                    if let Some(k) = cmd.arg(i) {
                        let c = self.table.route(k);
                        if !v.contains(&c) {
                            v.push(c);
                        }
                    }
                }
                v
            }),
        };
        let max = self.max_tx;
        let Some(tx) = self.tx.as_mut() else { return };
        match clusters {
            Err(m) => {
                tx.dirty = true;
                self.local_error(m)
            }
            Ok(_) if tx.cmds.len() >= max => {
                tx.dirty = true;
                let m = format!("ERR geomesh: more than {max} commands in one transaction");
                self.local_error(&m)
            }
            Ok(cs) => {
                // Redis Cluster's rule: the command that would make the transaction span two
                // clusters gets -CROSSSLOT and the transaction is aborted at EXEC.
                let mut all = tx.clusters.clone();
                if let Some(w) = self.watch.filter(|w| !w.broken) {
                    if !all.contains(&w.cluster) {
                        all.insert(0, w.cluster);
                    }
                }
                for c in cs {
                    if !all.contains(&c) {
                        all.push(c);
                    }
                }
                if all.len() > 1 {
                    tx.dirty = true;
                    let m = self.crossslot(&all);
                    return self.local_error(&m);
                }
                tx.clusters = all;
                tx.cmds.push(cmd);
                self.local(Bytes::from_static(b"+QUEUED\r\n"))
            }
        }
    }

    fn unwatch(&mut self, w: Option<Watch>) {
        if let Some(w) = w {
            if !w.broken {
                self.send(
                    w.cluster,
                    b"*1\r\n$7\r\nUNWATCH\r\n",
                    Slot {
                        target: Target::Discard,
                        left: 1,
                        confirm: false,
                    },
                );
            }
        }
    }

    fn transaction(
        &mut self,
        cmd: Command,
        spec: &CommandSpec,
        t: Transaction,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        match t {
            Transaction::Multi => {
                if self.tx.is_some() {
                    return self.local_error("ERR MULTI calls can not be nested");
                }
                self.tx = Some(Tx::default());
                self.local(simple(b"OK"))
            }
            Transaction::Discard => {
                if self.tx.take().is_none() {
                    return self.local_error("ERR DISCARD without MULTI");
                }
                let w = self.watch.take();
                self.unwatch(w);
                self.local(simple(b"OK"))
            }
            Transaction::Watch => {
                if self.tx.is_some() {
                    return self.local_error("ERR WATCH inside MULTI is not allowed");
                }
                let c = match self.same_shard(&cmd, spec) {
                    Ok(c) => c,
                    Err(m) => return self.local_error(&m),
                };
                if let Some(w) = self.watch {
                    if w.cluster != c && !w.broken {
                        let m = format!(
                            "CROSSSLOT Keys in request don't hash to the same slot (geomesh: WATCH keys route to cluster {}, this transaction already watches keys on {})",
                            self.name(c),
                            self.name(w.cluster)
                        );
                        return self.local_error(&m);
                    }
                    if w.broken {
                        // EXEC must fail anyway; keep the broken watch.
                        return self.local(simple(b"OK"));
                    }
                }
                self.watch = Some(Watch {
                    cluster: c,
                    broken: false,
                });
                self.forward(c, cmd.raw(), self.budget(), now, out)
            }
            Transaction::Unwatch => match self.watch.take() {
                Some(w) if !w.broken => self.forward(w.cluster, cmd.raw(), self.budget(), now, out),
                _ => self.local(simple(b"OK")),
            },
            Transaction::Exec => {
                let Some(tx) = self.tx.take() else {
                    return self.local_error("ERR EXEC without MULTI");
                };
                let watch = self.watch.take();
                if tx.dirty {
                    self.unwatch(watch);
                    return self.local_error(
                        "EXECABORT Transaction discarded because of previous errors.",
                    );
                }
                let mut clusters = tx.clusters;
                if let Some(w) = watch {
                    if w.broken {
                        // The WATCH is lost with its connection: abort as a watched change does.
                        let mut v = Vec::new();
                        match self.proto {
                            Protocol::Resp2 => v.extend_from_slice(b"*-1\r\n"),
                            Protocol::Resp3 => write_null(&mut v, Protocol::Resp3),
                        }
                        return self.local(Bytes::from(v));
                    }
                    if !clusters.contains(&w.cluster) {
                        clusters.insert(0, w.cluster);
                    }
                }
                if clusters.len() > 1 {
                    self.unwatch(watch);
                    let m = self.crossslot(&clusters);
                    return self.local_error(&m);
                }
                let c = clusters
                    .first()
                    .copied()
                    .unwrap_or_else(|| self.table.local_cluster());
                let mut b =
                    Vec::with_capacity(32 + tx.cmds.iter().map(|c| c.raw().len()).sum::<usize>());
                b.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
                for q in &tx.cmds {
                    b.extend_from_slice(q.raw());
                }
                b.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
                let n = tx.cmds.len() as u32 + 1;
                let seq = self.next_seq();
                if let Some(u) = self.upstream(c) {
                    u.slots.push_back(Slot {
                        target: Target::Discard,
                        left: n,
                        confirm: false,
                    });
                }
                self.send(
                    c,
                    &b,
                    Slot {
                        target: Target::Entry { seq, part: 0 },
                        left: 1,
                        confirm: false,
                    },
                );
                let deadline = self.deadline(self.budget(), now, out);
                self.queue.push_back(Entry {
                    merge: MergeKind::Forward,
                    parts: Parts::One(Part {
                        cluster: c,
                        reply: None,
                    }),
                    left: 1,
                    deadline,
                    budget: self.timeout_ms,
                    done: None,
                    close_after: false,
                    rollback: None,
                });
            }
        }
    }

    // ---- pub/sub -----------------------------------------------------------------------------

    fn confirmation(&self, out: &mut Vec<u8>, kind: &[u8], name: Option<&[u8]>, count: usize) {
        write_push_header(out, 3, self.proto);
        write_bulk(out, kind);
        match name {
            Some(n) => write_bulk(out, n),
            None => write_null(out, self.proto),
        }
        write_integer(out, count as i64);
    }

    fn pubsub(&mut self, cmd: &Command, p: PubSub, now: Millis, out: &mut Vec<Action>) {
        match p {
            PubSub::Publish | PubSub::SPublish => {
                let ch = cmd.arg(1).unwrap_or_default();
                let c = self
                    .table
                    .route_message(Some(ch), commands::publish_payload(cmd));
                self.forward(c, cmd.raw(), self.budget(), now, out)
            }
            PubSub::Subscribe | PubSub::PSubscribe | PubSub::SSubscribe => {
                self.subscribe(cmd, p, now, out)
            }
            PubSub::Unsubscribe | PubSub::PUnsubscribe | PubSub::SUnsubscribe => {
                self.unsubscribe(cmd, p, now, out)
            }
        }
    }

    /// A channel is listened to on every cluster a message published on it can be routed to
    /// ([`RoutingTable::message_clusters`]), a pattern on every active cluster. Each cluster
    /// gets the names it lacks; names already subscribed there are not sent again.
    fn subscribe(&mut self, cmd: &Command, p: PubSub, now: Millis, out: &mut Vec<Action>) {
        let (kind, verb): (&[u8], &[u8]) = match p {
            PubSub::Subscribe => (b"subscribe", b"SUBSCRIBE"),
            PubSub::PSubscribe => (b"psubscribe", b"PSUBSCRIBE"),
            _ => (b"ssubscribe", b"SSUBSCRIBE"),
        };
        if p == PubSub::SSubscribe {
            // Shard channels share one slot, as in Redis Cluster.
            if let Err(m) = self.one_cluster((1..cmd.len()).filter_map(|i| cmd.arg(i))) {
                return self.local_error(&m);
            }
        }
        let table = self.table.clone();
        let mut replies = Vec::new();
        let mut per_cluster: Vec<(ClusterId, Vec<Bytes>)> = Vec::new();
        for i in 1..cmd.len() {
            let Some(name) = cmd.arg_bytes(i) else {
                continue;
            };
            let want: Vec<ClusterId> = match p {
                PubSub::PSubscribe => table.active_clusters().to_vec(),
                _ => table.message_clusters(&name),
            };
            let have = self.subs.map_mut(p).entry(name.clone()).or_default();
            for c in want {
                if !have.contains(&c) {
                    have.push(c);
                    group_by_cluster(&mut per_cluster, c, &name);
                }
            }
            self.confirmation(&mut replies, kind, Some(&name), self.subs.count(p));
        }
        for (c, names) in &per_cluster {
            if let Some(u) = self.upstream(*c) {
                u.subs = u.subs.saturating_add(names.len() as u32);
            }
        }
        self.send_pubsub(verb, per_cluster, replies, now, out);
    }

    /// Sends `verb names..` to each cluster and waits for one confirmation per name from each;
    /// `replies` (the client's confirmations) go out when all have come, at once when none is
    /// awaited.
    fn send_pubsub(
        &mut self,
        verb: &[u8],
        per_cluster: Vec<(ClusterId, Vec<Bytes>)>,
        replies: Vec<u8>,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        if per_cluster.is_empty() {
            return self.local(Bytes::from(replies));
        }
        let per_cluster = per_cluster
            .into_iter()
            .map(|(c, names)| {
                let mut b = Vec::new();
                crate::write_command(
                    &mut b,
                    std::iter::once(verb)
                        .chain(names.iter().map(|n| &n[..]))
                        .collect::<Vec<_>>(),
                );
                (c, Some(b), names.len() as u32)
            })
            .collect();
        self.confirm_parts(&[], per_cluster, replies, now, out);
    }

    /// An entry waiting for `n` confirmations from each cluster; `bytes` = the command sent
    /// (the cluster's own when given).
    fn confirm_parts(
        &mut self,
        raw: &[u8],
        per_cluster: Vec<(ClusterId, Option<Vec<u8>>, u32)>,
        replies: Vec<u8>,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let seq = self.next_seq();
        let mut parts = Vec::with_capacity(per_cluster.len());
        for (i, (c, own, n)) in per_cluster.into_iter().enumerate() {
            let slot = Slot {
                target: Target::Entry {
                    seq,
                    part: i as u32,
                },
                left: n.max(1),
                confirm: true,
            };
            self.send(c, own.as_deref().unwrap_or(raw), slot);
            parts.push(Part {
                cluster: c,
                reply: None,
            });
        }
        let deadline = self.deadline(self.budget(), now, out);
        self.queue.push_back(Entry {
            merge: MergeKind::Confirm {
                replies: Bytes::from(replies),
            },
            left: parts.len() as u32,
            parts: Parts::Many(parts),
            deadline,
            budget: self.timeout_ms,
            done: None,
            close_after: false,
            rollback: None,
        });
    }

    fn unsubscribe(&mut self, cmd: &Command, p: PubSub, now: Millis, out: &mut Vec<Action>) {
        let (kind, verb): (&[u8], &[u8]) = match p {
            PubSub::Unsubscribe => (b"unsubscribe", b"UNSUBSCRIBE"),
            PubSub::PUnsubscribe => (b"punsubscribe", b"PUNSUBSCRIBE"),
            _ => (b"sunsubscribe", b"SUNSUBSCRIBE"),
        };
        let names: Vec<Bytes> = if cmd.len() > 1 {
            (1..cmd.len()).filter_map(|i| cmd.arg_bytes(i)).collect()
        } else {
            self.subs.map_mut(p).keys().cloned().collect()
        };
        let mut replies = Vec::new();
        let mut per_cluster: Vec<(ClusterId, Vec<Bytes>)> = Vec::new();
        for name in &names {
            if let Some(clusters) = self.subs.map_mut(p).remove(name) {
                for c in clusters {
                    if let Some(Some(u)) = self.ups.get_mut(c.index()) {
                        u.subs = u.subs.saturating_sub(1);
                        group_by_cluster(&mut per_cluster, c, name);
                    }
                }
            }
            self.confirmation(&mut replies, kind, Some(name), self.subs.count(p));
        }
        if names.is_empty() {
            self.confirmation(&mut replies, kind, None, self.subs.count(p));
        }
        self.send_pubsub(verb, per_cluster, replies, now, out);
    }

    // ---- server replies ----------------------------------------------------------------------

    fn on_reply(
        &mut self,
        cluster: ClusterId,
        up: &mut Upstream,
        reply: Reply,
    ) -> Result<(), String> {
        let head_confirm = up.slots.front().is_some_and(|s| s.confirm);
        let kind = reply.root().kind();
        if kind == Kind::Push || (kind == Kind::Array && (up.subs > 0 || head_confirm)) {
            let first = reply.root().get(0);
            let word = first
                .as_ref()
                .and_then(|v| v.as_bytes())
                .unwrap_or_default();
            let confirmation = head_confirm && is_sub_keyword(word);
            if kind == Kind::Push && !confirmation {
                self.write_client(reply.raw());
                return Ok(());
            }
            if kind == Kind::Array && is_message_keyword(word) {
                self.write_client(reply.raw());
                return Ok(());
            }
        }
        let Some(slot) = up.slots.front_mut() else {
            return Err(format!(
                "unexpected reply {:?}",
                String::from_utf8_lossy(
                    reply
                        .raw()
                        .get(..reply.raw().len().min(64))
                        .unwrap_or_default()
                )
            ));
        };
        if slot.confirm && reply.is_error() {
            slot.left = 0;
        } else {
            slot.left = slot.left.saturating_sub(1);
        }
        let slot = *slot;
        if slot.left == 0 {
            up.slots.pop_front();
        }
        match slot.target {
            Target::Entry { seq, part } if slot.left == 0 => self.complete(seq, part, reply),
            Target::Replay(k) if reply.is_error() => {
                let m = format!(
                    "ERR geomesh: cluster {}: refused the session's {}: {}",
                    self.name(cluster),
                    STORE_NAMES.get(usize::from(k)).copied().unwrap_or("state"),
                    String::from_utf8_lossy(reply.root().as_bytes().unwrap_or_default())
                );
                self.condemn(cluster, m, None);
            }
            _ => {}
        }
        Ok(())
    }

    /// Fails every entry waiting on `up`, forgets the cluster's subscriptions (and closes the
    /// client connection if there were any).
    fn lose_upstream(&mut self, cluster: ClusterId, up: Upstream, message: &[u8]) {
        if up.subs > 0 {
            // Its subscriptions are gone and no server message can tell the client: close
            // the client connection (after what is written), its library resubscribes.
            self.close_now = true;
        }
        for slot in up.slots {
            if let Target::Entry { seq, .. } = slot.target {
                if let Some(i) = seq.checked_sub(self.head_seq) {
                    self.fail(i as usize, message);
                }
            }
        }
        if let Some(w) = self.watch.as_mut() {
            if w.cluster == cluster {
                w.broken = true;
            }
        }
        for map in [
            &mut self.subs.channels,
            &mut self.subs.patterns,
            &mut self.subs.shard,
        ] {
            for cl in map.values_mut() {
                cl.retain(|c| *c != cluster);
            }
        }
        self.flush_ready();
    }
}

impl Session for RedisSession {
    fn on_downstream(&mut self, data: &[u8], now: Millis, out: &mut Vec<Action>) {
        self.begin(out);
        if self.closing == Closing::Open {
            self.inbuf.extend_from_slice(data);
            loop {
                match self.requests.decode(&mut self.inbuf) {
                    Ok(Some(cmd)) => {
                        self.dispatch(cmd, now, out);
                        if self.closing != Closing::Open {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let msg = e.reply_message();
                        self.inbuf.clear();
                        self.local_close(error(msg.as_bytes()), now, out);
                        break;
                    }
                }
            }
            if self.closing != Closing::Open {
                self.inbuf = BytesMut::new();
            }
        }
        self.finish(out, true);
    }

    fn on_upstream(
        &mut self,
        cluster: ClusterId,
        data: &[u8],
        _now: Millis,
        out: &mut Vec<Action>,
    ) {
        self.begin(out);
        let i = cluster.index();
        if let Some(mut up) = self.ups.get_mut(i).and_then(Option::take) {
            up.buf.extend_from_slice(data);
            let mut failure = None;
            loop {
                match up.dec.decode(&mut up.buf) {
                    Ok(Some(reply)) => {
                        if let Err(m) = self.on_reply(cluster, &mut up, reply) {
                            failure = Some(m);
                            break;
                        }
                        if !self.resets.is_empty()
                            && self.resets.iter().any(|r| r.cluster == cluster)
                        {
                            // Out of step: its next replies must not answer anything.
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
                None => {
                    if let Some(slot) = self.ups.get_mut(i) {
                        *slot = Some(up);
                    }
                }
                Some(m) => {
                    let msg = format!("ERR geomesh: cluster {}: {m}", self.name(cluster));
                    out.push(Action::CloseUpstream(cluster));
                    self.lose_upstream(cluster, up, msg.as_bytes());
                }
            }
        }
        self.finish(out, false);
    }

    fn on_upstream_closed(
        &mut self,
        cluster: ClusterId,
        failure: &UpstreamFailure,
        _now: Millis,
        out: &mut Vec<Action>,
    ) {
        self.begin(out);
        if let Some(up) = self.ups.get_mut(cluster.index()).and_then(Option::take) {
            let mut msg = format!(
                "ERR geomesh: cluster {}: {}",
                self.name(cluster),
                failure.kind.describe()
            );
            if !failure.message.is_empty() {
                msg.push_str(": ");
                msg.push_str(&failure.message);
            }
            self.lose_upstream(cluster, up, msg.as_bytes());
        }
        self.finish(out, false);
    }

    fn on_timeout(&mut self, now: Millis, out: &mut Vec<Action>) {
        self.begin(out);
        let mut expired = Vec::new();
        for (i, e) in self.queue.iter().enumerate() {
            if e.done.is_none() && e.deadline <= now {
                let waiting = e
                    .parts
                    .as_slice()
                    .iter()
                    .find(|p| p.reply.is_none())
                    .map(|p| p.cluster);
                expired.push((i, waiting, e.budget));
            }
        }
        for (i, cluster, budget) in expired {
            let name = cluster.map(|c| self.name(c).to_owned()).unwrap_or_default();
            let msg = format!("ERR geomesh: cluster {name}: no reply within {budget} ms");
            self.fail(i, msg.as_bytes());
        }
        self.flush_ready();
        self.finish(out, false);
    }

    fn on_new_table(&mut self, table: Rc<RoutingTable>) {
        self.table = table;
    }
}
