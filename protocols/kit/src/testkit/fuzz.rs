//! The fuzz target shape every protocol on the pipeline shares.
//!
//! A fuzz target implements [`Target`] (how to make its session, plausible requests and answers,
//! and an order marker) and calls [`run`] with the fuzzer's bytes, which are read as a script:
//! raw client bytes, scripted requests (each followed by a marker request), raw and plausible
//! server bytes cut anywhere, link closures, table swaps, the client's half-close and time
//! jumps. Beyond "no panic", after every step:
//! * nothing reaches the client after the session closed it;
//! * what the client received decodes, and the markers in it come in increasing order, none
//!   twice (answers leave in request order);
//! * in the end, once every deadline has passed, every request was answered (unless the
//!   session closed the client or a request may wait forever on purpose).

use std::rc::Rc;

use bytes::BytesMut;
use geomesh_core::{Action, ClusterId, Config, Millis, RoutingTable, Session, UpstreamFailure, UpstreamFailureKind};

/// The fuzzer's bytes, consumed from the front as a script.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    /// The next byte, `None` at the end.
    pub fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }

    /// The next byte, `d` at the end.
    pub fn byte_or(&mut self, d: u8) -> u8 {
        self.byte().unwrap_or(d)
    }

    /// The next `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

/// What a protocol brings to the shared fuzz driver.
pub trait Target {
    type S: Session;
    /// Configurations: the first is the start, the others are swapped in (cluster ids stay).
    fn tables(&self) -> &[&str];
    /// A session for the table.
    fn session(&self, table: Rc<RoutingTable>) -> Self::S;
    /// A plausible request, chosen by the input; `true` if it may wait forever on purpose
    /// (a Redis `BLPOP k 0`).
    fn request(&self, input: &mut Input<'_>) -> (Vec<u8>, bool);
    /// A plausible server answer (or a piece of garbage), chosen by the input.
    fn answer(&self, input: &mut Input<'_>) -> Vec<u8>;
    /// A request the session answers itself, and only after every earlier request, carrying
    /// `n`; `None` if the protocol has none (order is then not checked).
    fn marker(&self, n: u64) -> Option<Vec<u8>>;
    /// Reads what the client received (consuming whole answers): the markers in it, in order.
    /// Panics if the session wrote something the client cannot decode.
    fn read_markers(&self, client: &mut BytesMut) -> Vec<u64>;
    /// Makes server bytes unable to forge a marker.
    fn scrub(&self, _bytes: &mut [u8]) {}
    /// Requests the session still owes an answer.
    fn pending(&self, s: &Self::S) -> usize;
}

struct Run<'t, T: Target> {
    target: &'t T,
    s: T::S,
    table: Rc<RoutingTable>,
    now: Millis,
    client: BytesMut,
    closed: bool,
    next_marker: u64,
    seen_marker: Option<u64>,
    forever: bool,
    pending: u64,
}

impl<T: Target> Run<'_, T> {
    fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Reply(b) => {
                    assert!(!self.closed, "bytes for the client after CloseDownstream");
                    self.client.extend_from_slice(&b);
                }
                Action::CloseDownstream => self.closed = true,
                Action::Send { .. } | Action::CloseUpstream(_) | Action::WakeAt(_) | Action::Bind { .. } => {}
            }
        }
        for n in self.target.read_markers(&mut self.client) {
            assert!(self.seen_marker.is_none_or(|m| n > m), "marker {n} after {:?}", self.seen_marker);
            self.seen_marker = Some(n);
        }
    }

    fn client(&mut self, bytes: &[u8]) {
        let mut out = Vec::new();
        self.s.on_downstream(bytes, self.now, &mut out);
        self.apply(out);
    }

    fn upstream(&mut self, c: ClusterId, bytes: &[u8]) {
        let mut out = Vec::new();
        self.s.on_upstream(c, bytes, self.now, &mut out);
        self.apply(out);
    }

    fn cluster(&self, b: u8) -> ClusterId {
        let active = self.table.active_clusters();
        active.get(usize::from(b) % active.len().max(1)).copied().unwrap_or(ClusterId(0))
    }
}

fn compile(yaml: &str, previous: Option<&RoutingTable>) -> Rc<RoutingTable> {
    let config = Config::parse(yaml.as_bytes()).expect("fuzz table");
    let t = match previous {
        Some(p) => RoutingTable::succeed(&config, p),
        None => RoutingTable::new(&config),
    };
    Rc::new(t.expect("fuzz table"))
}

/// Runs the script `data` against `target`'s session. See the module documentation.
pub fn run<T: Target>(target: &T, data: &[u8]) {
    let tables = target.tables();
    let table = compile(tables.first().copied().unwrap_or_default(), None);
    let mut h = Run {
        target,
        s: target.session(table.clone()),
        table,
        now: 1000,
        client: BytesMut::new(),
        closed: false,
        next_marker: 0,
        seen_marker: None,
        forever: false,
        pending: 0,
    };
    let mut input = Input(data);
    while let Some(op) = input.byte() {
        match op % 8 {
            0 => {
                let n = usize::from(input.byte_or(0));
                let b = input.bytes(n).to_vec();
                h.client(&b);
            }
            1 | 2 => {
                let (mut b, forever) = target.request(&mut input);
                h.forever |= forever;
                if let Some(m) = target.marker(h.next_marker) {
                    b.extend_from_slice(&m);
                    h.next_marker += 1;
                }
                h.pending += 1;
                h.client(&b);
            }
            3 => {
                let c = h.cluster(input.byte_or(0));
                let n = usize::from(input.byte_or(0));
                let mut b = input.bytes(n).to_vec();
                target.scrub(&mut b);
                h.upstream(c, &b);
            }
            4 | 5 => {
                let c = h.cluster(input.byte_or(0));
                let mut r = target.answer(&mut input);
                target.scrub(&mut r);
                let cut = usize::from(input.byte_or(0)) % (r.len() + 1);
                let (a, b) = r.split_at(cut);
                h.upstream(c, a);
                h.upstream(c, b);
            }
            6 => {
                let b = input.byte_or(0);
                if b % 4 == 0 {
                    let c = h.cluster(input.byte_or(0));
                    let kinds = [
                        UpstreamFailureKind::Eof,
                        UpstreamFailureKind::Refused,
                        UpstreamFailureKind::Stalled,
                        UpstreamFailureKind::BridgeLost,
                    ];
                    let f = UpstreamFailure {
                        kind: kinds.get(usize::from(b / 4) % kinds.len()).copied().unwrap_or(UpstreamFailureKind::Eof),
                        message: "x".into(),
                    };
                    let mut out = Vec::new();
                    h.s.on_upstream_closed(c, &f, h.now, &mut out);
                    h.apply(out);
                } else if b % 4 == 1 && tables.len() > 1 {
                    let yaml = tables.get(usize::from(b / 4) % tables.len()).copied().unwrap_or_default();
                    let t = compile(yaml, Some(&h.table));
                    h.table = t.clone();
                    h.s.on_new_table(t);
                } else {
                    let mut out = Vec::new();
                    h.s.on_downstream_closed(h.now, &mut out);
                    h.apply(out);
                }
            }
            _ => {
                h.now += u64::from(input.byte_or(0)) * 8;
                let mut out = Vec::new();
                h.s.on_timeout(h.now, &mut out);
                h.apply(out);
            }
        }
    }
    // Everything expires in the end: every request is answered, markers included.
    h.now += 10 * 3_600_000;
    let mut out = Vec::new();
    h.s.on_timeout(h.now, &mut out);
    h.apply(out);
    let left = target.pending(&h.s);
    assert!(
        h.closed || h.forever || left == 0,
        "{left} of {} scripted requests never answered",
        h.pending
    );
}
