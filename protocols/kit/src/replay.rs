//! The replay store: session state a client set (Redis AUTH/SELECT/HELLO, MQTT CONNECT, Kafka
//! SASL), kept as the requests that set it, and replayed at the head of every connection the
//! session opens later.
//!
//! Keys are small indices chosen by the protocol; their order is the replay order (Redis: AUTH
//! before HELLO before SELECT). Every write gets a generation, so a rollback (the request that
//! wrote it failed) undoes exactly its own writes and never a later one.

use bytes::Bytes;

/// One stored request.
#[derive(Debug, Clone)]
pub struct Stored<X> {
    /// Generation of the write.
    pub gen: u64,
    /// The request as it is replayed.
    pub bytes: Bytes,
    /// What its answer is read as.
    pub expect: X,
}

/// What a store-and-replay request wrote, to undo if it fails.
#[derive(Debug)]
pub(crate) struct Rollback<X> {
    /// (key, generation written, what was there before)
    writes: Vec<(usize, u64, Option<Stored<X>>)>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct ReplayStore<X> {
    slots: Vec<Option<Stored<X>>>,
    gen: u64,
}

impl<X: Clone> ReplayStore<X> {
    /// A store with `keys` keys (0..keys).
    pub fn new(keys: usize) -> Self {
        ReplayStore {
            slots: (0..keys).map(|_| None).collect(),
            gen: 0,
        }
    }

    /// The request stored under `key`.
    pub fn get(&self, key: usize) -> Option<&Stored<X>> {
        self.slots.get(key).and_then(Option::as_ref)
    }

    /// Stored requests in replay order, with their keys.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Stored<X>)> + '_ {
        self.slots.iter().enumerate().filter_map(|(k, s)| s.as_ref().map(|s| (k, s)))
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    /// Forgets everything (Redis `RESET`).
    pub fn clear(&mut self) {
        for s in &mut self.slots {
            *s = None;
        }
    }

    /// Writes `bytes` under `key`, recording the write in `rollback`. A key out of range is
    /// ignored.
    pub(crate) fn put(&mut self, key: usize, bytes: Bytes, expect: X, rollback: &mut Rollback<X>) {
        self.gen += 1;
        let gen = self.gen;
        if let Some(slot) = self.slots.get_mut(key) {
            let prev = slot.replace(Stored { gen, bytes, expect });
            rollback.writes.push((key, gen, prev));
        }
    }

    /// Undoes the writes of a failed request (those not overwritten since).
    pub(crate) fn undo(&mut self, rollback: Rollback<X>) {
        for (key, gen, prev) in rollback.writes.into_iter().rev() {
            if let Some(slot) = self.slots.get_mut(key) {
                if slot.as_ref().is_some_and(|s| s.gen == gen) {
                    *slot = prev;
                }
            }
        }
    }
}

impl<X> Rollback<X> {
    pub(crate) fn new() -> Self {
        Rollback { writes: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn rollback_undoes_only_its_own_writes() {
        let mut s: ReplayStore<()> = ReplayStore::new(3);
        let mut first = Rollback::new();
        s.put(0, Bytes::from_static(b"auth a"), (), &mut first);
        s.put(2, Bytes::from_static(b"select 1"), (), &mut first);
        let mut second = Rollback::new();
        s.put(2, Bytes::from_static(b"select 2"), (), &mut second);
        s.undo(first);
        assert!(s.get(0).is_none(), "its own write is undone");
        assert_eq!(s.get(2).map(|x| &x.bytes[..]), Some(&b"select 2"[..]), "a later write stays");
        s.undo(second);
        assert_eq!(s.get(2).map(|x| &x.bytes[..]), Some(&b"select 1"[..]), "back to what it replaced");
        assert_eq!(s.iter().map(|(k, _)| k).collect::<Vec<_>>(), [2]);
        s.clear();
        assert!(s.is_empty());
        let mut r = Rollback::new();
        s.put(7, Bytes::new(), (), &mut r);
        assert!(s.is_empty(), "out of range keys are ignored");
    }
}
