//! A client request waiting in the pending queue: its parts, their answers, how they merge,
//! its deadline, and its answer once known.

use bytes::Bytes;
use geomesh_core::Millis;

use crate::protocol::{Part, Protocol};
use crate::replay::Rollback;

/// No deadline.
pub(crate) const NEVER: Millis = Millis::MAX;

/// How an entry's answer is made.
#[derive(Debug)]
pub(crate) enum Merge<M> {
    /// One part; its answer is the client's, as the server sent it.
    Forward,
    /// The protocol's merge.
    Custom(M),
}

/// One part, or several.
#[derive(Debug)]
pub(crate) enum Parts<A> {
    One(Part<A>),
    Many(Vec<Part<A>>),
}

impl<A> Parts<A> {
    pub fn as_slice(&self) -> &[Part<A>] {
        match self {
            Parts::One(p) => std::slice::from_ref(p),
            Parts::Many(v) => v,
        }
    }

    pub fn get_mut(&mut self, i: u32) -> Option<&mut Part<A>> {
        match self {
            Parts::One(p) => (i == 0).then_some(p),
            Parts::Many(v) => v.get_mut(i as usize),
        }
    }
}

/// A request in the pending queue.
pub(crate) struct Entry<P: Protocol> {
    pub merge: Merge<P::Merge>,
    pub parts: Parts<P::Answer>,
    /// Parts still waiting.
    pub left: u32,
    pub deadline: Millis,
    /// The time budget behind `deadline`, for the error message.
    pub budget: u64,
    /// The client's answer, once known.
    pub done: Option<Bytes>,
    /// Close the client once this entry's answer is written.
    pub close_after: bool,
    /// What a store-and-replay request wrote, undone if it fails.
    pub rollback: Option<Box<Rollback<P::Expect>>>,
    /// Request type and arrival, for metrics.
    pub family: &'static str,
    pub started: Millis,
}

impl<P: Protocol> Entry<P> {
    /// An entry whose answer is known already, waiting only for its turn.
    pub fn answered(bytes: Bytes, close_after: bool, family: &'static str, now: Millis) -> Self {
        Entry {
            merge: Merge::Forward,
            parts: Parts::Many(Vec::new()),
            left: 0,
            deadline: NEVER,
            budget: 0,
            done: Some(bytes),
            close_after,
            rollback: None,
            family,
            started: now,
        }
    }

    /// An entry waiting for `parts`.
    pub fn waiting(
        merge: Merge<P::Merge>,
        parts: Parts<P::Answer>,
        deadline: Millis,
        budget: u64,
        family: &'static str,
        now: Millis,
    ) -> Self {
        let left = parts.as_slice().len() as u32;
        Entry {
            merge,
            parts,
            left,
            deadline,
            budget,
            done: None,
            close_after: false,
            rollback: None,
            family,
            started: now,
        }
    }
}
