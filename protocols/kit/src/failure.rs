//! Failures: a part that got no answer, a request that fails, links reset because they no
//! longer hold the session's state, links lost.

use bytes::Bytes;
use geomesh_core::{Action, ClusterId};

use crate::core::{Closing, Core, Reset};
use crate::entry::Merge;
use crate::link::{Link, Target};
use crate::protocol::{Answer, Failure, Protocol};

impl<P: Protocol> Core<P> {
    /// Part `part` of `seq` failed: the whole entry fails, or the merge gets the failed part.
    pub(crate) fn part_failed(&mut self, proto: &mut P, seq: u64, part: u32, cluster: ClusterId, failure: &Failure) {
        let Some(i) = self.index(seq) else { return };
        let Some(e) = self.queue.get_mut(i) else { return };
        if e.done.is_some() {
            return;
        }
        if proto.closes_on_failure(failure) {
            // The client is closed: what is ready goes out, then this failure's words.
            let bytes = proto.failure_answer(cluster, failure, &self.table);
            self.fail_entry(proto, i, Bytes::new(), false);
            self.close_after(&bytes);
            return;
        }
        let whole = match &e.merge {
            Merge::Forward => true,
            Merge::Custom(m) => proto.fails_whole_request(m),
        };
        if whole {
            let bytes = proto.failure_answer(cluster, failure, &self.table);
            self.fail_entry(proto, i, bytes, false);
            return;
        }
        if let Some(p) = e.parts.get_mut(part) {
            if p.answer.is_none() && p.failure.is_none() {
                p.failure = Some(failure.clone());
                e.left = e.left.saturating_sub(1);
            }
        }
        if e.left == 0 {
            self.finish_entry(proto, i);
        }
    }

    /// Fails entry `i` with `bytes`; `force`: even if its answer is known (not yet written).
    /// A failed store-and-replay request is rolled back, and the links that accepted it, or
    /// may still, are reset.
    /// A failure that ends the client connection ([`Protocol::closes_on_failure`]): the
    /// answers ready at the head of the queue are written, then `bytes` (an MQTT DISCONNECT
    /// naming the cluster), then nothing more; the close follows at the end of the callback.
    pub(crate) fn close_after(&mut self, bytes: &[u8]) {
        if !matches!(self.closing, Closing::Open | Closing::Pending) {
            return;
        }
        self.flush_ready();
        self.write_client(bytes);
        self.closing = Closing::Now;
    }

    pub(crate) fn fail_entry(&mut self, proto: &mut P, i: usize, bytes: Bytes, force: bool) {
        let seq = self.head_seq + i as u64;
        let Some(e) = self.queue.get_mut(i) else { return };
        if e.done.is_some() && !force {
            return;
        }
        e.done = Some(bytes);
        let Some(rb) = e.rollback.take() else { return };
        let holders: Vec<ClusterId> = e
            .parts
            .as_slice()
            .iter()
            .filter(|p| p.answer.as_ref().is_none_or(|a| !a.is_error()))
            .map(|p| p.cluster)
            .collect();
        self.store.undo(*rb);
        proto.on_store_changed(&self.store);
        for c in holders {
            let message = match self.queue.get(i).map(|e| &e.merge) {
                Some(Merge::Custom(m)) => proto.state_lost(m, c, &self.table),
                _ => String::new(),
            };
            self.condemn(c, message, Some(seq));
        }
    }

    /// The link to `c` does not hold the session's state: reset at the end of this callback.
    pub(crate) fn condemn(&mut self, c: ClusterId, message: String, after: Option<u64>) {
        condemn(&mut self.resets, c, message, after);
    }

    pub(crate) fn apply_resets(&mut self, proto: &mut P, out: &mut Vec<Action>) {
        // Each round fails entries; only a failed store-and-replay request adds resets, once
        // (its rollback is taken), so this ends; the bound is a guard.
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
                        self.head_seq + *i as u64 > after && e.parts.as_slice().iter().any(|p| p.cluster == r.cluster)
                    })
                    .map(|(i, _)| i)
                    .collect();
                for i in hit {
                    let bytes = proto.failure_answer(r.cluster, &Failure::Reset(r.message.clone()), &self.table);
                    self.fail_entry(proto, i, bytes, true);
                }
            }
            if let Some(link) = self.links.take(r.cluster) {
                out.push(Action::CloseUpstream(r.cluster));
                self.lose_link(proto, r.cluster, link, &Failure::Reset(r.message));
            }
        }
        self.resets.clear();
        self.flush_ready();
    }

    /// Fails every entry waiting on `link`, and hands the protocol its state.
    pub(crate) fn lose_link(&mut self, proto: &mut P, cluster: ClusterId, link: Link<P>, failure: &Failure) {
        for slot in &link.slots {
            if let Target::Entry { seq, part } = slot.target {
                self.part_failed(proto, seq, part, cluster, failure);
            }
        }
        if proto.link_lost(cluster, link.state) {
            if proto.closes_on_failure(failure) {
                let bytes = proto.failure_answer(cluster, failure, &self.table);
                self.close_after(&bytes);
            } else {
                self.close_now = true;
            }
        }
        self.flush_ready();
    }

}

/// Records a reset of `c` (merging with one already recorded).
pub(crate) fn condemn(resets: &mut Vec<Reset>, c: ClusterId, message: String, after: Option<u64>) {
    match resets.iter_mut().find(|r| r.cluster == c) {
        Some(r) => {
            r.after = match (r.after, after) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        None => resets.push(Reset {
            cluster: c,
            message,
            after,
        }),
    }
}
