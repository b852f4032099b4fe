//! Connections to clusters (links): the protocol's state for each, the bytes read and not yet
//! decoded, and the queue of answers the server owes (slots).

use std::collections::VecDeque;

use bytes::BytesMut;
use geomesh_core::ClusterId;

use crate::protocol::{Protocol, SlotView};

/// Whose answer a slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Part `part` of the request `seq`.
    Entry { seq: u64, part: u32 },
    /// Nobody's: read and dropped (MULTI's `+OK`, a PINGREQ the proxy sent for keepalive).
    Discard,
    /// A replayed stored request (store key): an error means the link lacks the session state.
    Replay(u16),
}

/// An answer (or `left` answers) a server owes.
#[derive(Debug, Clone)]
pub(crate) struct Slot<X> {
    pub target: Target,
    pub left: u32,
    /// Several answers; an error ends the slot early (one error answers the request).
    pub many: bool,
    pub expect: X,
    /// Correlation key the answer carries ([`crate::Disposition::Keyed`]).
    pub key: Option<u64>,
}

impl<X> Slot<X> {
    pub fn view(&self) -> SlotView<'_, X> {
        SlotView {
            expect: &self.expect,
            many: self.many,
            replay: matches!(self.target, Target::Replay(_)),
        }
    }
}

/// One open connection.
pub(crate) struct Link<P: Protocol> {
    pub state: P::Link,
    pub buf: BytesMut,
    pub slots: VecDeque<Slot<P::Expect>>,
}

impl<P: Protocol> Link<P> {
    /// The slot an answer with correlation `key` (`None`: the head) settles.
    pub fn slot_index(&self, key: Option<u64>) -> Option<usize> {
        match key {
            None => (!self.slots.is_empty()).then_some(0),
            Some(k) => self.slots.iter().position(|s| s.key == Some(k)),
        }
    }
}

/// Open links by id: table clusters below [`ClusterId::FIRST_ENDPOINT`], endpoint links above.
pub(crate) struct Links<P: Protocol> {
    table: Vec<Option<Link<P>>>,
    endpoints: Vec<Option<Link<P>>>,
}

impl<P: Protocol> Links<P> {
    pub fn new() -> Self {
        Links {
            table: Vec::new(),
            endpoints: Vec::new(),
        }
    }

    fn place(&mut self, c: ClusterId) -> (&mut Vec<Option<Link<P>>>, usize) {
        if c.is_endpoint() {
            (&mut self.endpoints, usize::from(c.0 & 0x7fff))
        } else {
            (&mut self.table, c.index())
        }
    }

    pub fn is_open(&self, c: ClusterId) -> bool {
        let (v, i) = if c.is_endpoint() {
            (&self.endpoints, usize::from(c.0 & 0x7fff))
        } else {
            (&self.table, c.index())
        };
        v.get(i).is_some_and(Option::is_some)
    }

    pub fn get_mut(&mut self, c: ClusterId) -> Option<&mut Link<P>> {
        let (v, i) = self.place(c);
        v.get_mut(i).and_then(Option::as_mut)
    }

    pub fn take(&mut self, c: ClusterId) -> Option<Link<P>> {
        let (v, i) = self.place(c);
        v.get_mut(i).and_then(Option::take)
    }

    pub fn put(&mut self, c: ClusterId, link: Link<P>) {
        let (v, i) = self.place(c);
        if v.len() <= i {
            v.resize_with(i + 1, || None);
        }
        if let Some(slot) = v.get_mut(i) {
            *slot = Some(link);
        }
    }

    /// Ids of the open links: table clusters in id order, then endpoint links.
    pub fn open_ids(&self) -> Vec<ClusterId> {
        let table = self
            .table
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_some())
            .map(|(i, _)| ClusterId(i as u16));
        let endpoints = self
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_some())
            .map(|(i, _)| ClusterId::endpoint(i as u16));
        table.chain(endpoints).collect()
    }

    /// Calls `f` on the protocol state of every open link.
    pub fn for_each_state(&mut self, mut f: impl FnMut(ClusterId, &mut P::Link)) {
        for (i, l) in self.table.iter_mut().enumerate() {
            if let Some(l) = l {
                f(ClusterId(i as u16), &mut l.state);
            }
        }
        for (i, l) in self.endpoints.iter_mut().enumerate() {
            if let Some(l) = l {
                f(ClusterId::endpoint(i as u16), &mut l.state);
            }
        }
    }
}
