//! The session test kit: drives a [`Session`] the way the host does (client bytes in, actions
//! out), against one scripted server per cluster, natively and fast.
//!
//! A protocol's tests implement [`Shard`] (a small scripted server: bytes in, answers out; a
//! key-value map and the connection state the session relies on) and use [`Harness`]:
//! `Send`s are fed to the shard of their cluster, the shard's answers are fed back when the
//! test says, cut as it says, in the order it says; time passes when it says. The fuzz driver
//! ([`fuzz`]) gives every protocol the same fuzz target shape.
//!
//! These are unit tests of a sans-IO state machine; the end-to-end tests in `integration/`
//! use real servers through a real Envoy.

pub mod fuzz;

use std::collections::HashMap;
use std::rc::Rc;

use bytes::BytesMut;
use geomesh_core::{Action, ClusterId, Config, Millis, RoutingTable, Session, UpstreamFailure, UpstreamFailureKind};

/// A scripted server behind one cluster.
pub trait Shard: Default {
    /// The session wrote `bytes` to this server.
    fn feed(&mut self, bytes: &[u8]);
    /// Takes what the server has written for the session so far.
    fn take_output(&mut self) -> Vec<u8>;
    /// True when [`Shard::take_output`] would return something.
    fn has_output(&self) -> bool;
    /// The connection was closed (by the session, or by the test): what belongs to the
    /// connection is forgotten, what belongs to the server stays.
    fn close_connection(&mut self);
}

/// A compiled routing table from configuration text (panics on a bad one: tests only).
pub fn table(yaml: &str) -> Rc<RoutingTable> {
    let config = Config::parse(yaml.as_bytes()).expect("test configuration");
    Rc::new(RoutingTable::new(&config).expect("test routing table"))
}

/// Drives session `S` against shards `F`. See the module documentation.
pub struct Harness<S: Session, F: Shard> {
    pub s: S,
    pub table: Rc<RoutingTable>,
    pub now: Millis,
    /// Bytes the client received, not yet read by the test.
    pub client: BytesMut,
    /// The session closed the client.
    pub closed: bool,
    /// Every wake-up the session asked for.
    pub wakes: Vec<Millis>,
    pub fakes: HashMap<ClusterId, F>,
    /// Links the session closed, in order.
    pub closed_upstreams: Vec<ClusterId>,
    /// Endpoint links the session defined: (link, cluster, endpoint).
    pub binds: Vec<(ClusterId, ClusterId, String)>,
}

impl<S: Session, F: Shard> Harness<S, F> {
    /// A harness around `session`, routing with `table`, at time 1 000 000.
    pub fn start(session: S, table: Rc<RoutingTable>) -> Self {
        Harness {
            s: session,
            table,
            now: 1_000_000,
            client: BytesMut::new(),
            closed: false,
            wakes: Vec::new(),
            fakes: HashMap::new(),
            closed_upstreams: Vec::new(),
            binds: Vec::new(),
        }
    }

    /// The id of a cluster of the table (panics if it has none: tests only).
    pub fn id(&self, name: &str) -> ClusterId {
        self.table.cluster_id(name).unwrap_or_else(|| panic!("no cluster {name} in the table"))
    }

    /// The shard of a cluster.
    pub fn fake(&mut self, name: &str) -> &mut F {
        let id = self.id(name);
        self.fakes.entry(id).or_default()
    }

    /// Carries out what the session asked for.
    pub fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { cluster, bytes } => self.fakes.entry(cluster).or_default().feed(&bytes),
                Action::Reply(b) => {
                    assert!(!self.closed, "bytes after close");
                    self.client.extend_from_slice(&b)
                }
                Action::CloseDownstream => self.closed = true,
                Action::CloseUpstream(c) => {
                    self.closed_upstreams.push(c);
                    self.fakes.entry(c).or_default().close_connection();
                }
                Action::WakeAt(t) => self.wakes.push(t),
                Action::Bind { link, cluster, endpoint } => self.binds.push((link, cluster, endpoint)),
            }
        }
    }

    /// The client sends `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        let mut out = Vec::new();
        self.s.on_downstream(bytes, self.now, &mut out);
        self.apply(out);
    }

    /// Delivers everything the shards have, each cluster's bytes cut in `chunk`-byte pieces,
    /// clusters in id order (`reverse`: the other way), until nothing moves.
    pub fn deliver_with(&mut self, chunk: usize, reverse: bool) {
        loop {
            let mut ids: Vec<ClusterId> = self.fakes.iter().filter(|(_, f)| f.has_output()).map(|(c, _)| *c).collect();
            if ids.is_empty() {
                break;
            }
            ids.sort();
            if reverse {
                ids.reverse();
            }
            for c in ids {
                let bytes = self.fakes.get_mut(&c).map(Shard::take_output).unwrap_or_default();
                for piece in bytes.chunks(chunk.max(1)) {
                    let mut out = Vec::new();
                    self.s.on_upstream(c, piece, self.now, &mut out);
                    self.apply(out);
                }
            }
        }
    }

    /// Delivers everything, whole.
    pub fn deliver(&mut self) {
        self.deliver_with(usize::MAX, false)
    }

    /// Time passes to `at`; the session's timer fires.
    pub fn timeout(&mut self, at: Millis) {
        self.now = at;
        let mut out = Vec::new();
        self.s.on_timeout(at, &mut out);
        self.apply(out);
    }

    /// The connection to `name` goes away (`kind`, `msg` as the bridge reports it).
    pub fn close_upstream(&mut self, name: &str, kind: UpstreamFailureKind, msg: &str) {
        let c = self.id(name);
        self.close_upstream_id(c, kind, msg);
    }

    /// The connection of link `c` (a table cluster or an endpoint link) goes away.
    pub fn close_upstream_id(&mut self, c: ClusterId, kind: UpstreamFailureKind, msg: &str) {
        self.fakes.entry(c).or_default().close_connection();
        let mut out = Vec::new();
        self.s.on_upstream_closed(
            c,
            &UpstreamFailure {
                kind,
                message: msg.into(),
            },
            self.now,
            &mut out,
        );
        self.apply(out);
    }

    /// A new routing table is configured.
    pub fn new_table(&mut self, yaml: &str) {
        let config = Config::parse(yaml.as_bytes()).expect("test configuration");
        let t = Rc::new(RoutingTable::succeed(&config, &self.table).expect("test routing table"));
        self.table = t.clone();
        self.s.on_new_table(t);
    }
}
