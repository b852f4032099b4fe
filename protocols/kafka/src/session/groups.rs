//! What the proxy keeps of each consumer group, per shard, where every connection of a client
//! finds it (as partition leaders, `leaders.rs`): the coordinator the shard's FindCoordinator
//! named (the home shard's for group requests, each other shard's for the group's offsets
//! there; they go to that broker through an endpoint link in a shard of several brokers), and
//! the latest generation with its members as JoinGroup answers said
//! (a commit from an older generation or an unknown member is not written on other shards).
//!
//! The coordinator is forgotten when a group answer says NOT_COORDINATOR or
//! COORDINATOR_NOT_AVAILABLE: the client asks FindCoordinator again (sent to the shard's table
//! cluster, which any broker answers) and its answer names the new one.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::codes::{ErrorCode, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR};
use crate::wire::{Reader, Writer};

/// Groups (per shard) a VM remembers.
pub const MAX_GROUPS: usize = 10_000;
/// Members kept per generation (a larger group's commits are checked by generation only).
pub const MAX_MEMBERS: usize = 1024;

/// One group's state in one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// `host:port` of the group's coordinator, as the shard's FindCoordinator named it.
    pub coordinator: Option<String>,
    /// The latest generation a JoinGroup answer started (-1: none seen).
    pub generation: i32,
    /// Members of that generation whose JoinGroup answers the proxy saw.
    pub members: Vec<Bytes>,
    /// Whether `members` is all of them (the leader's answer, which lists every member, was
    /// seen; members may join through another proxy).
    pub complete: bool,
}

impl Default for GroupState {
    fn default() -> Self {
        Self::new()
    }
}

impl GroupState {
    /// Nothing known: no coordinator, no generation.
    pub fn new() -> Self {
        GroupState {
            coordinator: None,
            generation: -1,
            members: Vec::new(),
            complete: false,
        }
    }

    /// The stored form (shared data).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(16 + 40 * self.members.len());
        w.nullable_string(false, self.coordinator.as_deref().map(str::as_bytes));
        w.i32(self.generation);
        w.bool(self.complete);
        w.i32(self.members.len() as i32);
        for m in &self.members {
            w.string(false, m);
        }
        w.buf.to_vec()
    }

    /// [`GroupState::encode`] read back; `None` for bytes that are not its output.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader::new(Bytes::copy_from_slice(bytes));
        let coordinator = match r.nullable_string(false, "coordinator").ok()? {
            Some(c) => Some(String::from_utf8(c.to_vec()).ok()?),
            None => None,
        };
        let generation = r.i32("generation").ok()?;
        let complete = r.bool("complete").ok()?;
        let n = usize::try_from(r.i32("members").ok()?).ok()?;
        if n > MAX_MEMBERS || n > r.remaining() / 2 {
            return None;
        }
        let mut members = Vec::with_capacity(n);
        for _ in 0..n {
            members.push(r.string(false, "member").ok()?);
        }
        Some(GroupState {
            coordinator,
            generation,
            members,
            complete,
        })
    }

    /// Whether a commit by `member` at `generation` may be written on the shards that are not
    /// the group's home: not when a newer generation is known, nor when every member of this
    /// generation is known and `member` is not one. A group the proxy knows nothing of passes.
    pub fn may_commit(&self, generation: i32, member: &[u8]) -> bool {
        if generation < self.generation {
            return false;
        }
        generation > self.generation || !self.complete || self.members.iter().any(|m| m == member)
    }

    /// What a JoinGroup answer (`generation`, the `member` it names, and the leader's list of
    /// `members`) adds.
    pub fn joined(&mut self, generation: i32, member: &Bytes, members: &[Bytes]) {
        if generation < 0 || generation < self.generation {
            return;
        }
        if generation > self.generation {
            self.generation = generation;
            self.members.clear();
            self.complete = false;
        }
        self.complete |= !members.is_empty() && members.len() <= MAX_MEMBERS;
        for m in members.iter().chain(std::iter::once(member)) {
            if !m.is_empty() && self.members.len() < MAX_MEMBERS && !self.members.contains(m) {
                self.members.push(m.clone());
            }
        }
    }
}

/// True for a group answer after which the coordinator must be found again.
pub fn coordinator_moved(code: ErrorCode) -> bool {
    matches!(code, NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE)
}

#[derive(Default)]
struct Local {
    map: BTreeMap<(u16, Bytes), GroupState>,
    order: VecDeque<(u16, Bytes)>,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

/// Forgets this thread's groups (see `leaders::clear_vm`).
#[cfg(test)]
pub(crate) fn clear_vm() {
    LOCAL.with(|l| *l.borrow_mut() = Local::default());
}

/// The per-VM store of groups (`VmLeaders` uses it), bounded.
pub fn vm_put(shard: u16, group: &[u8], state: &GroupState) {
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let key = (shard, Bytes::copy_from_slice(group));
        if l.map.insert(key.clone(), state.clone()).is_none() {
            l.order.push_back(key);
        }
        while l.order.len() > MAX_GROUPS {
            if let Some(old) = l.order.pop_front() {
                l.map.remove(&old);
            }
        }
    })
}

pub fn vm_get(shard: u16, group: &[u8]) -> Option<GroupState> {
    LOCAL.with(|l| {
        l.borrow()
            .map
            .get(&(shard, Bytes::copy_from_slice(group)))
            .cloned()
    })
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn state_round_trips_and_garbage_is_refused() {
        let mut s = GroupState::new();
        s.coordinator = Some("10.0.0.7:9093".into());
        s.joined(
            3,
            &Bytes::from_static(b"m-1"),
            &[Bytes::from_static(b"m-1"), Bytes::from_static(b"m-2")],
        );
        assert_eq!(GroupState::decode(&s.encode()), Some(s.clone()));
        assert_eq!(
            GroupState::decode(&GroupState::new().encode()),
            Some(GroupState::new())
        );
        assert_eq!(
            GroupState::decode(&[0xff, 0xff, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(GroupState::decode(b""), None);
    }

    #[test]
    fn only_the_latest_generations_members_may_commit() {
        let mut s = GroupState::new();
        assert!(s.may_commit(1, b"anyone"), "nothing known: passes");
        s.joined(2, &Bytes::from_static(b"m-2"), &[]);
        assert!(
            s.may_commit(2, b"m-9"),
            "members not all known (the leader's answer not seen)"
        );
        s.joined(
            2,
            &Bytes::from_static(b"m-1"),
            &[Bytes::from_static(b"m-1"), Bytes::from_static(b"m-2")],
        );
        assert!(s.may_commit(2, b"m-1") && s.may_commit(2, b"m-2"));
        assert!(!s.may_commit(1, b"m-1"), "an older generation");
        assert!(!s.may_commit(2, b"m-9"), "not a member of this generation");
        assert!(
            s.may_commit(3, b"m-9"),
            "a newer generation than the proxy saw"
        );
        s.joined(3, &Bytes::from_static(b"m-2"), &[]);
        assert!(!s.may_commit(2, b"m-1"));
        assert_eq!(
            (s.members.clone(), s.complete),
            (vec![Bytes::from_static(b"m-2")], false)
        );
        s.joined(1, &Bytes::from_static(b"m-1"), &[]);
        assert_eq!(
            s.generation, 3,
            "an older answer arriving late changes nothing"
        );
    }
}
