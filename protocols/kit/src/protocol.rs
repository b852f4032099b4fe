//! What a protocol supplies to the pipeline: framing, a planner, merges, and how its failures
//! read to a client.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use geomesh_core::{ClusterId, Framing, RoutingTable, UpstreamFailureKind};

use crate::ctx::{Ctx, MergeCx};

/// One decoded server answer.
pub trait Answer {
    /// The bytes as the server sent them (forwarded unchanged when one answer is the client's).
    fn raw(&self) -> &Bytes;
    /// True when the server refused the request (a Redis `-ERR`, a CONNACK with a failure code).
    fn is_error(&self) -> bool;
}

/// What a server answer is, as the protocol sees it ([`Protocol::classify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The answer owed to the slot at the head of the link's queue.
    Answer,
    /// The answer owed to the first slot carrying this correlation key (an MQTT packet id).
    Keyed(u64),
    /// Not an answer: bytes the server pushed unasked, for the client now, between whole answers
    /// (pub/sub messages).
    Push(Bytes),
    /// Not an answer, nothing for the client.
    Drop,
    /// The link's stream makes no sense any more (the message names what was wrong): it is
    /// closed and what waits on it fails.
    Broken(String),
}

/// What the head slot of a link expects, shown to [`Protocol::classify`].
#[derive(Debug, Clone, Copy)]
pub struct SlotView<'a, X> {
    /// What the protocol attached to the slot.
    pub expect: &'a X,
    /// The slot waits for several answers (Redis pub/sub confirmations, one per channel).
    pub many: bool,
    /// The slot answers a replayed (stored) request, not a client request.
    pub replay: bool,
}

/// Why a part of a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing came back within the request's budget.
    Timeout { budget_ms: u64 },
    /// The connection to the cluster went away (the bridge's close code and message).
    Closed { kind: UpstreamFailureKind, message: String },
    /// The server's byte stream broke (decode error, an answer nobody asked for).
    Broken(String),
    /// The connection was reset because it no longer holds the session's state; the message is
    /// the protocol's own words ([`Protocol::replay_refused`], [`MergeCx::reset_link`]).
    Reset(String),
}

/// One sub-request of a client request: where it went and what came back.
#[derive(Debug)]
pub struct Part<A> {
    pub cluster: ClusterId,
    pub answer: Option<A>,
    /// Set when the part failed and the protocol merges failed parts itself
    /// ([`Protocol::fails_whole_request`] = false).
    pub failure: Option<Failure>,
}

impl<A> Part<A> {
    pub(crate) fn new(cluster: ClusterId) -> Self {
        Part {
            cluster,
            answer: None,
            failure: None,
        }
    }
}

/// What the planner decided for one request (returned by [`Protocol::plan`]). A planner may
/// also act through its [`Ctx`] (several sends, store-and-replay, discarded answers) and
/// return [`Plan::Done`].
#[derive(Debug)]
pub enum Plan<P: Protocol> {
    /// Everything was done through the context.
    Done,
    /// To one cluster, the answer forwarded as the server sent it.
    Forward { cluster: ClusterId, bytes: Bytes },
    /// One part per cluster, merged by `merge` when all answered.
    Split { parts: Vec<(ClusterId, Vec<u8>)>, merge: P::Merge },
    /// The same bytes to every active cluster of the table, merged by `merge`.
    Broadcast { bytes: Bytes, merge: P::Merge },
    /// Answered by the proxy, in its turn.
    Local(Bytes),
    /// Refused with a protocol error (counted as unsupported), in its turn.
    Refuse(Bytes),
    /// Answered in its turn, then the client is closed (QUIT, a malformed request).
    Close(Bytes),
}

/// A protocol on the pipeline (see the crate documentation for the picture).
///
/// Everything the protocol sends is decided in [`Protocol::plan`], which runs while client bytes
/// are handled: the only time a Proxy-Wasm filter can reach its bridge.
pub trait Protocol: Sized {
    /// A decoded client request.
    type Request;
    /// A decoded server answer.
    type Answer: Answer;
    /// How the answers of a request's parts become the client's answer.
    type Merge;
    /// Per-link state of the protocol (its answer decoder, subscriptions held there...),
    /// created when the link opens.
    type Link: Default;
    /// What a slot needs to know to read its answer (Kafka: the API key and version of the
    /// request; `()` for self-describing protocols).
    type Expect: Clone + Default;

    /// Decodes the next client request from `buf` (consuming its bytes). `Ok(None)` = need more
    /// bytes. `Err(answer)`: the bytes cannot be read; `answer` goes to the client after the
    /// answers due before it, then the connection closes.
    fn decode_request(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Request>, Bytes>;

    /// Decodes the next answer on a link. `head` is what the oldest waiting slot expects.
    /// `Err(message)` = the stream is broken.
    fn decode_answer(
        &mut self,
        link: &mut Self::Link,
        buf: &mut BytesMut,
        head: Option<&Self::Expect>,
    ) -> Result<Option<Self::Answer>, String>;

    /// The request type's name for metrics (`get`, `publish`, `produce`): lower case, static.
    fn family(&mut self, request: &Self::Request) -> &'static str;

    /// The planner.
    fn plan(&mut self, request: Self::Request, cx: &mut Ctx<'_, Self>) -> Plan<Self>;

    /// What a server answer is (an answer to the head slot by default).
    fn classify(
        &mut self,
        _cluster: ClusterId,
        _link: &mut Self::Link,
        _answer: &Self::Answer,
        _head: Option<SlotView<'_, Self::Expect>>,
    ) -> Disposition {
        Disposition::Answer
    }

    /// The client's answer for a request whose parts all answered (or failed, when
    /// [`Protocol::fails_whole_request`] is false).
    fn merge(&mut self, merge: &mut Self::Merge, parts: &[Part<Self::Answer>], cx: &mut MergeCx<'_>) -> Bytes;

    /// The client's answer when the part on `cluster` failed: the whole request fails at once
    /// with it (see [`Protocol::fails_whole_request`]).
    fn failure_answer(&mut self, cluster: ClusterId, failure: &Failure, table: &RoutingTable) -> Bytes;

    /// Whether a failed part fails its whole request at once (default), or is handed to the
    /// merge beside the other parts' answers (Kafka: the failed shard's partitions get an error
    /// code, the others their data).
    fn fails_whole_request(&self, _merge: &Self::Merge) -> bool {
        true
    }

    /// Whether the client is closed after a failed part's answer (an MQTT client that lost a
    /// broker gets a DISCONNECT and a closed connection). When true, the failure's answer
    /// ([`Protocol::failure_answer`]) is written right after the answers ready at the head of
    /// the queue and is the last thing the client gets; a link lost while nothing waits on it
    /// ([`Protocol::link_lost`] true) is answered the same way.
    fn closes_on_failure(&self, _failure: &Failure) -> bool {
        false
    }

    /// A replayed request (store index `key`) was refused on `cluster`: the message the
    /// requests depending on that connection's state fail with. The connection is reset.
    fn replay_refused(&mut self, cluster: ClusterId, key: usize, answer: &Self::Answer, table: &RoutingTable) -> String;

    /// A store-and-replay request failed (no answer from a cluster): the message for the
    /// requests sent after it on a connection that may hold the state it set (reset too).
    fn state_lost(&mut self, merge: &Self::Merge, cluster: ClusterId, table: &RoutingTable) -> String;

    /// The stored state changed by a rollback or a clear: protocol state derived from it (the
    /// RESP version from a stored `HELLO`) follows.
    fn on_store_changed(&mut self, _store: &crate::replay::ReplayStore<Self::Expect>) {}

    /// A link went away (closed, failed or reset) with the protocol state it held. `true` closes
    /// the client after what is written (its subscriptions there are gone and no answer can
    /// tell it).
    fn link_lost(&mut self, _cluster: ClusterId, _link: Self::Link) -> bool {
        false
    }

    /// Whether bytes the pipeline hands the client as a request's answer report an error
    /// (for the `error` / `success` counters).
    fn is_error_answer(_bytes: &[u8]) -> bool {
        false
    }

    /// A new routing table is in force.
    fn on_new_table(&mut self, _table: &Rc<RoutingTable>) {}

    /// Whether the link to `cluster` may be carried by a shared backend connection now (the
    /// session holds no state there), and with which framing: see
    /// [`geomesh_core::Session::share`]. The protocol controls it; once `None` for a link it
    /// must stay `None` (the host then moves the link to a dedicated connection, in order, and
    /// never back). Endpoint links are never shared. The default: never.
    fn share(&self, _cluster: ClusterId) -> Option<Framing> {
        None
    }
}
