//! Idempotent producers across connections: a client's InitProducerId and its Produce requests
//! arrive on different connections (one per virtual broker, all to this listener), so the ids
//! each shard issued for one client producer are kept where every connection of the VM finds
//! them.
//!
//! [`VmRegistry`] keeps them per Wasm VM (per Envoy worker thread; per test thread natively),
//! bounded; `filters/kafka` puts a host-wide store behind [`ProducerRegistry`] (Proxy-Wasm shared
//! data holding [`ProducerIds::encode`]) so that every worker sees them. A producer the
//! registry does not know has its batches passed unchanged (README "Idempotent producers").

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::error::DecodeError;
use crate::header::Request;
use crate::logic::producer_ids::ProducerIds;
use crate::wire::Writer;

/// Where the shards' producer ids of a client producer are kept.
pub trait ProducerRegistry {
    fn put(&self, ids: &ProducerIds);
    fn get(&self, client_id: i64) -> Option<ProducerIds>;
}

/// Client producers remembered per VM.
pub const MAX_PRODUCERS: usize = 4096;

#[derive(Default)]
struct Local {
    map: BTreeMap<i64, ProducerIds>,
    order: VecDeque<i64>,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

/// Forgets this thread's producer ids: tests start from an empty VM. Natively each test has its
/// own thread; under wasm-bindgen-test every test shares one, as connections share a VM.
#[cfg(test)]
pub(crate) fn clear_vm() {
    LOCAL.with(|l| *l.borrow_mut() = Local::default());
}

/// The per-VM registry (see the module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct VmRegistry;

impl ProducerRegistry for VmRegistry {
    fn put(&self, ids: &ProducerIds) {
        LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            let id = ids.client.id;
            if l.map.insert(id, ids.clone()).is_none() {
                l.order.push_back(id);
            }
            while l.order.len() > MAX_PRODUCERS {
                if let Some(old) = l.order.pop_front() {
                    l.map.remove(&old);
                }
            }
        })
    }

    fn get(&self, client_id: i64) -> Option<ProducerIds> {
        LOCAL.with(|l| l.borrow().map.get(&client_id).cloned())
    }
}

/// An InitProducerId request (v0-v5) as read by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerIdRequest {
    pub transactional_id: Option<Bytes>,
    pub transaction_timeout_ms: i32,
    /// v3+: the id and epoch the client holds (-1: a new producer).
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub tagged: Bytes,
}

impl InitProducerIdRequest {
    pub fn decode(req: &Request) -> Result<Self, DecodeError> {
        let v = req.version();
        let flexible = req.flexible();
        let mut r = req.body();
        let transactional_id = r.nullable_string(flexible, "transactional_id")?;
        let transaction_timeout_ms = r.i32("transaction_timeout_ms")?;
        let (producer_id, producer_epoch) = if v >= 3 {
            (r.i64("producer_id")?, r.i16("producer_epoch")?)
        } else {
            (-1, -1)
        };
        let tagged = r.tagged_fields(flexible)?;
        Ok(InitProducerIdRequest {
            transactional_id,
            transaction_timeout_ms,
            producer_id,
            producer_epoch,
            tagged,
        })
    }

    pub fn encode(&self, version: i16, flexible: bool) -> Bytes {
        let mut w = Writer::with_capacity(32);
        w.nullable_string(flexible, self.transactional_id.as_deref());
        w.i32(self.transaction_timeout_ms);
        if version >= 3 {
            w.i64(self.producer_id);
            w.i16(self.producer_epoch);
        }
        w.tagged_fields(flexible, &self.tagged);
        w.buf.freeze()
    }

    /// The request for `shard`: an epoch bump (KIP-360) names that shard's own id and epoch; a
    /// client id the registry does not know asks for a new producer.
    pub fn for_shard(&self, shard: u16, known: Option<&ProducerIds>) -> InitProducerIdRequest {
        let mut r = self.clone();
        if self.producer_id >= 0 {
            let own = known.and_then(|k| k.for_shard(shard));
            r.producer_id = own.map_or(-1, |p| p.id);
            r.producer_epoch = own.map_or(-1, |p| p.epoch);
        }
        r
    }
}
