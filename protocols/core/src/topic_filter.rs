//! MQTT topic filters (`sport/+/score`, `sport/#`) against the routing table: which clusters can
//! carry a topic that matches a filter, and no other.
//!
//! A subscriber to a filter must listen on every cluster where a matching topic can be
//! published, and should not hold subscriptions where none can. Publishing routes each topic
//! with [`RoutingTable::decide`] (key side, and `value` routes on the payload), so the answer is
//! the set of `decide` outcomes over all topics the filter matches and all payloads. That set is
//! computed exactly, by `decide` itself, over a finite set of representative topics:
//!
//! * for each `key`, `hash` and `prefix` route NAME (and for the empty text), every way NAME can
//!   be the beginning of a matching topic (an NFA walk of NAME over the filter), then every way
//!   to go on from there: end, or the wildcard being inside goes on with a separator or with a
//!   *fresh* byte (one that appears in no route name), or the first later wildcard gets a fresh
//!   byte while those before it stay empty.
//! * Any topic `T` the filter matches has a representative `T'` with the same winning route:
//!   `T'` keeps `T` up to its first wildcard content after the winner's NAME and puts a fresh
//!   byte there, so every route NAME that matches `T'` (it cannot reach past a fresh byte)
//!   matches `T` as well, and the winner still matches `T'`.
//! * A `hash` route that wins on a representative holding a fresh byte wins on infinitely many
//!   topics: all of its clusters are included. `value` routes are added where their NAME beats
//!   the key side's match ([`RoutingTable::message_clusters`]).
//!
//! Conservative (all active clusters) where exactness would cost too much: `hash_tags` on with
//! a wildcard filter (a tag can sit in the wildcard's content), more than
//! [`MAX_WILDCARDS`] wildcards, or representatives longer than [`WORK_BUDGET`] bytes in total.
//! A superset only costs idle subscriptions; a subset would lose messages.
//!
//! Filter syntax (MQTT 3.1.1 and 5.0, 4.7): levels split by `/`; `+` is a whole level and
//! matches one level (possibly empty); `#` is a whole level, the last one, and matches its parent
//! and any number of levels below; a filter starting with a wildcard does not match topics
//! starting with `$`.

use crate::route::{ClusterId, RoutingTable};

/// Most `+`/`#` in a filter handled exactly; above, every active cluster is answered.
pub const MAX_WILDCARDS: usize = 64;

/// Most bytes of representative topics built for one filter; above, every active cluster.
pub const WORK_BUDGET: usize = 4 << 20;

/// True when `filter` is a valid MQTT topic filter: not empty; `+` and `#` only as whole
/// levels; `#` only as the last level.
pub fn is_valid_filter(filter: &[u8]) -> bool {
    tokens(filter).is_some()
}

/// True when `filter` (valid, see [`is_valid_filter`]) matches the topic name `topic`.
pub fn filter_matches(filter: &[u8], topic: &[u8]) -> bool {
    let Some(toks) = tokens(filter) else {
        return false;
    };
    let mut states = closure(&toks, vec![State::At(0)]);
    for (pos, &b) in topic.iter().enumerate() {
        states = closure(&toks, step(&toks, &states, b, pos));
        if states.is_empty() {
            return false;
        }
    }
    states.contains(&State::At(toks.len()))
}

/// One element of a parsed filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// A literal byte (a `/` between levels included).
    Lit(u8),
    /// `+`: a level's content, without `/`.
    Plus,
    /// `/#` after a level: nothing, or `/` and anything.
    HashTail,
    /// `#` as the whole filter: anything.
    HashAll,
}

impl Tok {
    fn is_wildcard(self) -> bool {
        !matches!(self, Tok::Lit(_))
    }
}

fn tokens(filter: &[u8]) -> Option<Vec<Tok>> {
    if filter.is_empty() {
        return None;
    }
    let levels: Vec<&[u8]> = filter.split(|b| *b == b'/').collect();
    let last = levels.len().checked_sub(1)?;
    let mut toks = Vec::with_capacity(filter.len());
    for (i, level) in levels.into_iter().enumerate() {
        match level {
            b"#" if i == last => {
                toks.push(if i == 0 { Tok::HashAll } else { Tok::HashTail });
            }
            b"+" => {
                if i > 0 {
                    toks.push(Tok::Lit(b'/'));
                }
                toks.push(Tok::Plus);
            }
            _ => {
                if level.iter().any(|b| *b == b'+' || *b == b'#') {
                    return None;
                }
                if i > 0 {
                    toks.push(Tok::Lit(b'/'));
                }
                toks.extend(level.iter().map(|b| Tok::Lit(*b)));
            }
        }
    }
    Some(toks)
}

/// A position of the filter NFA: before token `i` (`At(len)` is the end), or inside the content
/// of wildcard token `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    At(usize),
    In(usize),
}

fn closure(toks: &[Tok], mut states: Vec<State>) -> Vec<State> {
    let mut i = 0;
    while let Some(&s) = states.get(i) {
        let next = match s {
            State::At(t) => match toks.get(t) {
                Some(Tok::Plus | Tok::HashAll) => Some(State::In(t)),
                Some(Tok::HashTail) => Some(State::At(t + 1)),
                _ => None,
            },
            State::In(t) => Some(State::At(t + 1)),
        };
        if let Some(n) = next {
            if !states.contains(&n) {
                states.push(n);
            }
        }
        i += 1;
    }
    states
}

/// `pos` is the index of `b` in the topic: a wildcard of the first level takes no leading `$`.
fn step(toks: &[Tok], states: &[State], b: u8, pos: usize) -> Vec<State> {
    let mut out = Vec::new();
    for &s in states {
        let next = match s {
            State::At(t) => match toks.get(t) {
                Some(Tok::Lit(c)) if *c == b => Some(State::At(t + 1)),
                Some(Tok::HashTail) if b == b'/' => Some(State::In(t)),
                _ => None,
            },
            State::In(t) => match toks.get(t) {
                Some(Tok::Plus) if b != b'/' && !(t == 0 && pos == 0 && b == b'$') => Some(State::In(t)),
                Some(Tok::HashAll) if !(pos == 0 && b == b'$') => Some(State::In(t)),
                Some(Tok::HashTail) => Some(State::In(t)),
                _ => None,
            },
        };
        if let Some(n) = next {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// A representative topic, and the index of its first fresh byte (if it has one).
struct Candidate {
    topic: Vec<u8>,
    fresh_at: Option<usize>,
}

/// Builds the representatives of one NFA position reached after `prefix`.
struct Builder<'a> {
    toks: &'a [Tok],
    seps: &'a [u8],
    fresh: u8,
    out: Vec<Candidate>,
    bytes: usize,
}

impl Builder<'_> {
    fn push(&mut self, topic: Vec<u8>, fresh_at: Option<usize>) {
        if !topic.is_empty() {
            self.bytes = self.bytes.saturating_add(topic.len());
            self.out.push(Candidate { topic, fresh_at });
        }
    }

    /// Appends the literal bytes from token `from` on, every wildcard left empty.
    fn rest_empty(&self, from: usize, t: &mut Vec<u8>) {
        for tok in self.toks.iter().skip(from) {
            if let Tok::Lit(c) = tok {
                t.push(*c);
            }
        }
    }

    fn continue_from(&mut self, prefix: &[u8], state: State) {
        match state {
            State::In(i) => {
                let kind = self.toks.get(i).copied();
                // The content goes on empty...
                self.tail(prefix, i + 1);
                // ... with a fresh byte ...
                let mut t = prefix.to_vec();
                let at = t.len();
                t.push(self.fresh);
                self.rest_empty(i + 1, &mut t);
                self.push(t, Some(at));
                // ... or with a separator (a key route's boundary) then a fresh byte.
                for &s in self.seps {
                    if s == b'/' && kind == Some(Tok::Plus) {
                        continue;
                    }
                    let mut t = prefix.to_vec();
                    t.push(s);
                    let at = t.len();
                    t.push(self.fresh);
                    self.rest_empty(i + 1, &mut t);
                    self.push(t, Some(at));
                }
            }
            State::At(i) => self.tail(prefix, i),
        }
    }

    /// From before token `from`: all wildcards empty, or the first fresh at each later wildcard.
    fn tail(&mut self, prefix: &[u8], from: usize) {
        let mut t = prefix.to_vec();
        self.rest_empty(from, &mut t);
        self.push(t, None);
        let mut head = prefix.to_vec();
        for (j, tok) in self.toks.iter().enumerate().skip(from) {
            match tok {
                Tok::Lit(c) => head.push(*c),
                Tok::Plus | Tok::HashAll => {
                    let mut t = head.clone();
                    let at = t.len();
                    t.push(self.fresh);
                    self.rest_empty(j + 1, &mut t);
                    self.push(t, Some(at));
                }
                Tok::HashTail => {
                    let mut t = head.clone();
                    t.push(b'/');
                    self.push(t.clone(), None);
                    let at = t.len();
                    t.push(self.fresh);
                    self.push(t, Some(at));
                }
            }
        }
    }
}

/// Bytes tried, in order, as the fresh byte: printable, no separator nor wildcard nor `$`.
const FRESH_CANDIDATES: &[u8] =
    b"~_-!'()*,;=@%&<>?[]^`|0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A topic (and payload, for a `value` route) that a filter matches and that is published to
/// `cluster`: the proof that `cluster` belongs in [`RoutingTable::topic_filter_clusters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterWitness {
    pub cluster: ClusterId,
    pub topic: Vec<u8>,
    pub payload: Option<Vec<u8>>,
}

impl RoutingTable {
    /// Every cluster where a topic matching `filter` can be published (whatever its payload),
    /// and no other, in [`Self::active_clusters`] order. `None` for an invalid filter (MQTT
    /// answers it with reason code 0x8F). See the module documentation for the method and the
    /// cases answered conservatively with every active cluster.
    pub fn topic_filter_clusters(&self, filter: &[u8]) -> Option<Vec<ClusterId>> {
        let toks = tokens(filter)?;
        let mut found: Vec<ClusterId> = Vec::new();
        match self.representatives(&toks) {
            None => return Some(self.active_clusters().to_vec()),
            Some(candidates) => {
                for c in &candidates {
                    self.clusters_of(c, &mut |cluster, _| {
                        if !found.contains(&cluster) {
                            found.push(cluster);
                        }
                    });
                }
            }
        }
        let active = self.active_clusters();
        let mut out: Vec<ClusterId> = active.iter().copied().filter(|c| found.contains(c)).collect();
        out.extend(found.iter().filter(|c| !active.contains(c)));
        Some(out)
    }

    /// One witness per cluster of [`Self::topic_filter_clusters`] (for tests and diagnostics):
    /// a topic matching `filter` (and a payload where a `value` route decides) that
    /// [`Self::decide`] sends there. `None` for an invalid filter or where the answer is
    /// conservative (no witness exists for every cluster then).
    pub fn topic_filter_witnesses(&self, filter: &[u8]) -> Option<Vec<FilterWitness>> {
        let toks = tokens(filter)?;
        let candidates = self.representatives(&toks)?;
        let mut out: Vec<FilterWitness> = Vec::new();
        for c in &candidates {
            self.clusters_of(c, &mut |cluster, payload| {
                if out.iter().any(|w| w.cluster == cluster) {
                    return;
                }
                let payload = payload.map(<[u8]>::to_vec);
                // A hash route's member: vary the bytes after the fresh one until it lands there.
                let topic = match c.fresh_at {
                    Some(at) if self.route_message(Some(&c.topic), payload.as_deref()) != cluster => {
                        (0..100_000u32).find_map(|n| {
                            let (head, rest) = c.topic.split_at(at.saturating_add(1).min(c.topic.len()));
                            let mut t = head.to_vec();
                            t.extend_from_slice(n.to_string().as_bytes());
                            t.extend_from_slice(rest);
                            (self.route_message(Some(&t), payload.as_deref()) == cluster).then_some(t)
                        })
                    }
                    _ => Some(c.topic.clone()),
                };
                if let Some(topic) = topic {
                    out.push(FilterWitness { cluster, topic, payload });
                }
            });
        }
        Some(out)
    }

    /// Calls `f(cluster, payload)` for every cluster a representative can be published to.
    fn clusters_of(&self, c: &Candidate, f: &mut dyn FnMut(ClusterId, Option<&[u8]>)) {
        let d = self.decide(Some(&c.topic), None);
        match (c.fresh_at, d.route.and_then(|r| self.hash_members(r))) {
            (Some(_), Some(members)) => members.into_iter().for_each(|m| f(m, None)),
            _ => f(d.cluster, None),
        }
        for (name, cluster) in self.value_routes() {
            if self.decide(Some(&c.topic), Some(name)).cluster == cluster {
                f(cluster, Some(name));
            }
        }
    }

    /// The representative topics of a filter, or `None` where the answer must be conservative.
    fn representatives(&self, toks: &[Tok]) -> Option<Vec<Candidate>> {
        let wildcards = toks.iter().filter(|t| t.is_wildcard()).count();
        if wildcards > MAX_WILDCARDS || (wildcards > 0 && self.hash_tags()) {
            return None;
        }
        let seps = self.separators();
        let fresh = *FRESH_CANDIDATES.iter().find(|&&b| {
            !seps.contains(&b) && !self.key_side_names().any(|n| n.contains(&b))
        })?;
        let mut b = Builder {
            toks,
            seps,
            fresh,
            out: Vec::new(),
            bytes: 0,
        };
        let start = closure(toks, vec![State::At(0)]);
        for s in &start {
            b.continue_from(&[], *s);
        }
        for name in self.key_side_names() {
            let mut states = start.clone();
            for (pos, &byte) in name.iter().enumerate() {
                states = closure(toks, step(toks, &states, byte, pos));
                if states.is_empty() {
                    break;
                }
            }
            for s in states {
                b.continue_from(name, s);
            }
            if b.bytes > WORK_BUDGET {
                return None;
            }
        }
        Some(b.out)
    }
}

#[cfg(test)]
mod tests;
