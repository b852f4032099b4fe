//! The pipeline's state and its mechanics: the pending queue, links and their slots, sends,
//! deadlines, answers (see [`crate::pipeline`] for the picture).

use std::collections::VecDeque;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use geomesh_core::metrics::{PipelineStat, UpstreamStat};
use geomesh_core::{Action, ClusterId, DeadlineCover, Meter, Millis, RoutingTable};

use crate::ctx::{MergeCx, PartSend};
use crate::entry::{Entry, Merge, Parts, NEVER};
use crate::link::{Link, Links, Slot, Target};
use crate::pipeline::Limits;
use crate::protocol::{Answer, Disposition, Failure, Part, Protocol};
use crate::replay::ReplayStore;

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    Open,
    /// A closing entry is queued; no more client bytes are read.
    Pending,
    /// The closing entry's answer is written: close at the end of this callback.
    Now,
    /// `CloseDownstream` was emitted.
    Done,
}

/// A link out of step with the session state, reset at the end of the callback.
#[derive(Debug)]
pub(crate) struct Reset {
    pub cluster: ClusterId,
    pub message: String,
    /// Entries after this seq with a part on the link fail too, answered or not.
    pub after: Option<u64>,
}

/// Everything of a session but the protocol itself.
pub(crate) struct Core<P: Protocol> {
    pub table: Rc<RoutingTable>,
    pub limits: Limits,
    pub inbuf: BytesMut,
    pub queue: VecDeque<Entry<P>>,
    pub head_seq: u64,
    pub links: Links<P>,
    pub cover: DeadlineCover,
    /// The last wake-up asked for (skips the cover's bookkeeping on the hot path).
    pub last_wake: Millis,
    pub store: ReplayStore<P::Expect>,
    pub to_client: Vec<u8>,
    /// Bytes per link for this callback, in order of first use (one `Send` per link).
    pub sends: Vec<(ClusterId, Vec<u8>)>,
    pub closing: Closing,
    /// A link whose loss the protocol cannot tell the client about went away: close after
    /// what is written.
    pub close_now: bool,
    pub resets: Vec<Reset>,
    pub meter: Meter,
    /// The request being planned: its type, for the entries it creates.
    pub family: &'static str,
    /// The time of the current callback.
    pub now: Millis,
}


impl<P: Protocol> Core<P> {
    pub(crate) fn write_client(&mut self, bytes: &[u8]) {
        if matches!(self.closing, Closing::Open | Closing::Pending) {
            self.to_client.extend_from_slice(bytes);
        }
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.head_seq + self.queue.len() as u64
    }

    pub(crate) fn counted(&mut self, family: &'static str, started: Millis, bytes: &[u8]) {
        let latency = self.now.saturating_sub(started);
        self.meter.answered(family, !P::is_error_answer(bytes), latency);
    }

    /// An answer known now: written at once if nothing is ahead of it.
    pub(crate) fn local(&mut self, bytes: Bytes) {
        self.meter.pipeline(PipelineStat::Local);
        self.in_turn(bytes)
    }

    /// Bytes for the client written at once if nothing is ahead of them, else in their turn.
    pub(crate) fn in_turn(&mut self, bytes: Bytes) {
        if self.queue.is_empty() {
            let family = self.family;
            let now = self.now;
            self.counted(family, now, &bytes);
            self.write_client(&bytes);
        } else {
            let e = Entry::answered(bytes, false, self.family, self.now);
            self.queue.push_back(e);
        }
    }

    /// An answer after which the client is closed; no more client bytes are read.
    pub(crate) fn local_close(&mut self, bytes: Bytes) {
        self.closing = Closing::Pending;
        let e = Entry::answered(bytes, true, self.family, self.now);
        self.queue.push_back(e);
        self.flush_ready();
    }

    /// Writes every finished entry at the head of the queue (not while links wait to be reset:
    /// the entries they answered may have to fail first).
    pub(crate) fn flush_ready(&mut self) {
        if !self.resets.is_empty() {
            return;
        }
        while self.queue.front().is_some_and(|e| e.done.is_some()) {
            let Some(e) = self.queue.pop_front() else {
                break;
            };
            self.head_seq += 1;
            if let Some(bytes) = e.done {
                self.counted(e.family, e.started, &bytes);
                self.write_client(&bytes);
            }
            if e.close_after {
                self.closing = Closing::Now;
                self.queue.clear();
                break;
            }
        }
    }

    /// Arms the deadline of a new entry: `budget` ms from now (`None` = no deadline).
    pub(crate) fn deadline(&mut self, budget: Option<u64>, out: &mut Vec<Action>) -> Millis {
        let Some(b) = budget else { return NEVER };
        let now = self.now;
        let d = now.saturating_add(b);
        let g = self.limits.granularity_ms;
        if self.last_wake >= d && self.last_wake <= d.saturating_add(g) && self.last_wake > now {
            return d;
        }
        if let Some(at) = self.cover.cover(d, now) {
            out.push(Action::WakeAt(at));
            self.last_wake = at;
        }
        d
    }

    /// Opens the link to `c` if it is not open, replaying the stored requests whose key
    /// `replay` accepts; returns whether it was opened now.
    pub(crate) fn open_with(&mut self, c: ClusterId, replay: impl Fn(usize) -> bool) -> bool {
        if self.links.is_open(c) {
            return false;
        }
        let slots = self.replay(c, replay);
        let link = Link {
            state: P::Link::default(),
            buf: BytesMut::new(),
            slots,
        };
        self.links.put(c, link);
        true
    }

    /// Queues the stored requests `which` accepts to `c`; returns their slots.
    pub(crate) fn replay(&mut self, c: ClusterId, which: impl Fn(usize) -> bool) -> VecDeque<Slot<P::Expect>> {
        let mut slots = VecDeque::new();
        let mut replayed = Vec::new();
        for (k, stored) in self.store.iter() {
            if which(k) {
                replayed.push(stored.bytes.clone());
                slots.push_back(Slot {
                    target: Target::Replay(k as u16),
                    left: 1,
                    many: false,
                    expect: stored.expect.clone(),
                    key: None,
                });
            }
        }
        for b in replayed {
            self.meter.pipeline(PipelineStat::Replayed);
            batch(&mut self.sends, c, &b);
        }
        slots
    }

    /// Queues `bytes` to `c` (opened with the stored state if needed), with a slot if an
    /// answer is owed.
    pub(crate) fn send(&mut self, c: ClusterId, bytes: &[u8], slot: Option<Slot<P::Expect>>) {
        self.open_with(c, |_| true);
        if let Some(slot) = slot {
            if matches!(slot.target, Target::Entry { .. }) {
                self.meter.upstream(c, UpstreamStat::Requests);
            }
            if let Some(l) = self.links.get_mut(c) {
                l.slots.push_back(slot);
            }
        }
        if !bytes.is_empty() {
            batch(&mut self.sends, c, bytes);
        }
    }

    /// The hot path: one cluster, the client's bytes as they came, the answer forwarded.
    pub(crate) fn forward(
        &mut self,
        cluster: ClusterId,
        bytes: &[u8],
        expect: P::Expect,
        budget: Option<u64>,
        out: &mut Vec<Action>,
    ) {
        let seq = self.next_seq();
        let slot = Slot {
            target: Target::Entry { seq, part: 0 },
            left: 1,
            many: false,
            expect,
            key: None,
        };
        self.send(cluster, bytes, Some(slot));
        let deadline = self.deadline(budget, out);
        let e = Entry::waiting(
            Merge::Forward,
            Parts::One(Part::new(cluster)),
            deadline,
            budget.unwrap_or(0),
            self.family,
            self.now,
        );
        self.queue.push_back(e);
    }

    /// A new entry whose parts are `sends`; returns its seq.
    pub(crate) fn dispatch(
        &mut self,
        sends: Vec<PartSend<P::Expect>>,
        merge: Merge<P::Merge>,
        budget: Option<u64>,
        out: &mut Vec<Action>,
    ) -> u64 {
        let seq = self.next_seq();
        let mut parts = Vec::with_capacity(sends.len());
        for (i, s) in sends.into_iter().enumerate() {
            let slot = Slot {
                target: Target::Entry { seq, part: i as u32 },
                left: s.answers.max(1),
                many: s.answers > 1 || s.many,
                expect: s.expect,
                key: s.key,
            };
            self.send(s.cluster, &s.bytes, Some(slot));
            parts.push(Part::new(s.cluster));
        }
        let deadline = self.deadline(budget, out);
        let e = Entry::waiting(merge, Parts::Many(parts), deadline, budget.unwrap_or(0), self.family, self.now);
        self.queue.push_back(e);
        seq
    }

    pub(crate) fn index(&self, seq: u64) -> Option<usize> {
        seq.checked_sub(self.head_seq).and_then(|i| usize::try_from(i).ok())
    }

    /// A part got its answer.
    pub(crate) fn complete(&mut self, proto: &mut P, seq: u64, part: u32, answer: P::Answer) {
        let Some(i) = self.index(seq) else { return };
        let Some(e) = self.queue.get_mut(i) else { return };
        if e.done.is_some() {
            return;
        }
        if i == 0 && e.left == 1 && matches!(e.merge, Merge::Forward) && !e.close_after {
            // Hot path: the head's only answer goes out as the server sent it.
            let (family, started) = (e.family, e.started);
            self.queue.pop_front();
            self.head_seq += 1;
            let latency = self.now.saturating_sub(started);
            self.meter.answered(family, !answer.is_error(), latency);
            self.write_client(answer.raw());
            self.flush_ready();
            return;
        }
        if let Some(p) = e.parts.get_mut(part) {
            if p.answer.is_none() && p.failure.is_none() {
                p.answer = Some(answer);
                e.left = e.left.saturating_sub(1);
            }
        }
        if e.left == 0 {
            self.finish_entry(proto, i);
            if i == 0 {
                self.flush_ready();
            }
        }
    }

    /// Makes the answer of entry `i`, whose parts are all settled.
    pub(crate) fn finish_entry(&mut self, proto: &mut P, i: usize) {
        let seq = self.head_seq + i as u64;
        let table = self.table.clone();
        let Some(e) = self.queue.get_mut(i) else { return };
        let bytes = match &mut e.merge {
            Merge::Forward => match e.parts.as_slice().first() {
                Some(Part {
                    answer: Some(a), ..
                }) => a.raw().clone(),
                Some(Part {
                    failure: Some(f),
                    cluster,
                    ..
                }) => proto.failure_answer(*cluster, f, &table),
                _ => proto.failure_answer(ClusterId(0), &Failure::Broken("no answer".into()), &table),
            },
            Merge::Custom(m) => {
                let mut cx = MergeCx::new(&table, seq, &mut self.resets);
                let bytes = proto.merge(m, e.parts.as_slice(), &mut cx);
                if cx.rollback_asked() {
                    if let Some(rb) = e.rollback.take() {
                        self.store.undo(*rb);
                        proto.on_store_changed(&self.store);
                    }
                } else {
                    e.rollback = None;
                }
                bytes
            }
        };
        if let Some(e) = self.queue.get_mut(i) {
            e.done = Some(bytes);
        }
    }

    /// One decoded answer on `link`.
    pub(crate) fn on_answer(&mut self, proto: &mut P, cluster: ClusterId, link: &mut Link<P>, answer: P::Answer) -> Result<(), String> {
        let head = link.slots.front().map(Slot::view);
        let key = match proto.classify(cluster, &mut link.state, &answer, head) {
            Disposition::Answer => None,
            Disposition::Keyed(k) => Some(k),
            Disposition::Push(bytes) => {
                self.meter.pipeline(PipelineStat::Pushed);
                self.write_client(&bytes);
                return Ok(());
            }
            Disposition::Drop => return Ok(()),
            Disposition::Broken(m) => return Err(m),
        };
        let Some(idx) = link.slot_index(key) else {
            let raw = answer.raw();
            return Err(format!(
                "unexpected reply {:?}",
                String::from_utf8_lossy(raw.get(..raw.len().min(64)).unwrap_or_default())
            ));
        };
        let Some(slot) = link.slots.get_mut(idx) else {
            return Ok(());
        };
        if slot.many && answer.is_error() {
            slot.left = 0;
        } else {
            slot.left = slot.left.saturating_sub(1);
        }
        let (target, left) = (slot.target, slot.left);
        if left == 0 {
            link.slots.remove(idx);
        }
        match target {
            Target::Entry { seq, part } if left == 0 => self.complete(proto, seq, part, answer),
            Target::Replay(k) if answer.is_error() => {
                let m = proto.replay_refused(cluster, usize::from(k), &answer, &self.table);
                self.condemn(cluster, m, None);
            }
            _ => {}
        }
        Ok(())
    }
}


/// Appends `bytes` to the batch for `cluster` (one `Send` per cluster and callback).
pub(crate) fn batch(sends: &mut Vec<(ClusterId, Vec<u8>)>, cluster: ClusterId, bytes: &[u8]) {
    if let Some((_, b)) = sends.iter_mut().rev().find(|(c, _)| *c == cluster) {
        b.extend_from_slice(bytes);
    } else {
        sends.push((cluster, bytes.to_vec()));
    }
}
