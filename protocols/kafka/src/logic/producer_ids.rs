//! Idempotent producers across shards.
//!
//! A broker refuses a batch whose producer id it did not issue (tansu: UNKNOWN_PRODUCER_ID, 59,
//! measured), and each cluster issues its own ids (tansu counts 1, 2, 3... per broker), so one
//! client producer needs one producer id per shard. The proxy asks every shard
//! (InitProducerId), gives the client the first shard's id and epoch (unique: that shard issued
//! it), and rewrites each idempotent batch to the target shard's id and epoch on the way out
//! (`produce::rewrite_producer_ids`, CRC-32C recomputed). Sequence numbers are per partition and
//! a partition lives on one shard: they pass unchanged.
//!
//! Transactions (a transactional id) are refused: one transaction cannot commit atomically on
//! several clusters.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::codes::{ErrorCode, NONE};
use crate::messages::init_producer_id::InitProducerIdResponse;

/// A producer id and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerId {
    pub id: i64,
    pub epoch: i16,
}

/// One client producer's ids: what the client was told, and each shard's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerIds {
    pub client: ProducerId,
    pub shards: BTreeMap<u16, ProducerId>,
}

impl ProducerIds {
    /// The id and epoch to write into batches going to `shard` (`None`: that shard issued
    /// none; the session asks it before forwarding).
    pub fn for_shard(&self, shard: u16) -> Option<ProducerId> {
        self.shards.get(&shard).copied()
    }

    /// Fixed-size encoding (for state shared between connections: the client's InitProducerId
    /// and its Produce requests may arrive on different connections).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + 12 * self.shards.len());
        for (shard, p) in std::iter::once((&u16::MAX, &self.client)).chain(self.shards.iter()) {
            out.extend_from_slice(&shard.to_be_bytes());
            out.extend_from_slice(&p.id.to_be_bytes());
            out.extend_from_slice(&p.epoch.to_be_bytes());
        }
        out
    }

    /// Inverse of [`ProducerIds::encode`]; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<ProducerIds> {
        let mut chunks = bytes.chunks_exact(12);
        let read = |c: &[u8]| -> Option<(u16, ProducerId)> {
            let shard = u16::from_be_bytes(c.get(0..2)?.try_into().ok()?);
            let id = i64::from_be_bytes(c.get(2..10)?.try_into().ok()?);
            let epoch = i16::from_be_bytes(c.get(10..12)?.try_into().ok()?);
            Some((shard, ProducerId { id, epoch }))
        };
        let (marker, client) = read(chunks.next()?)?;
        if marker != u16::MAX || !chunks.remainder().is_empty() {
            return None;
        }
        let mut shards = BTreeMap::new();
        for c in chunks {
            let (s, p) = read(c)?;
            shards.insert(s, p);
        }
        Some(ProducerIds { client, shards })
    }
}

/// Merges every shard's InitProducerId answer (`answers`: shard, answer). All succeeded: the
/// client gets the lowest shard's id and epoch, and the ids of all. Otherwise the client gets
/// the first error (it retries InitProducerId) and no ids.
pub fn merge(
    answers: &[(u16, InitProducerIdResponse)],
) -> (InitProducerIdResponse, Option<ProducerIds>) {
    let throttle_time_ms = answers
        .iter()
        .map(|(_, a)| a.throttle_time_ms)
        .max()
        .unwrap_or(0);
    let mut sorted: Vec<&(u16, InitProducerIdResponse)> = answers.iter().collect();
    sorted.sort_by_key(|(s, _)| *s);
    let error = |code: ErrorCode| InitProducerIdResponse {
        throttle_time_ms,
        error_code: code,
        producer_id: -1,
        producer_epoch: -1,
        tagged: Bytes::new(),
    };
    if let Some((_, bad)) = sorted.iter().find(|(_, a)| a.error_code != NONE) {
        return (error(bad.error_code), None);
    }
    let Some((_, first)) = sorted.first() else {
        return (error(crate::codes::COORDINATOR_NOT_AVAILABLE), None);
    };
    let client = ProducerId {
        id: first.producer_id,
        epoch: first.producer_epoch,
    };
    let shards = sorted
        .iter()
        .map(|(s, a)| {
            (
                *s,
                ProducerId {
                    id: a.producer_id,
                    epoch: a.producer_epoch,
                },
            )
        })
        .collect();
    (
        InitProducerIdResponse {
            throttle_time_ms,
            error_code: NONE,
            producer_id: client.id,
            producer_epoch: client.epoch,
            tagged: Bytes::new(),
        },
        Some(ProducerIds { client, shards }),
    )
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::codes::COORDINATOR_NOT_AVAILABLE;

    fn answer(id: i64, epoch: i16, error_code: ErrorCode) -> InitProducerIdResponse {
        InitProducerIdResponse {
            throttle_time_ms: 0,
            error_code,
            producer_id: id,
            producer_epoch: epoch,
            tagged: Bytes::new(),
        }
    }

    #[test]
    fn the_client_gets_the_first_shards_id_and_each_shard_keeps_its_own() {
        // tansu numbers producers 1, 2, 3... per broker: shard 1 already issued two.
        let (resp, ids) = merge(&[(1, answer(3, 0, NONE)), (0, answer(1, 0, NONE))]);
        assert_eq!(
            (resp.error_code, resp.producer_id, resp.producer_epoch),
            (NONE, 1, 0)
        );
        let ids = ids.unwrap();
        assert_eq!(ids.client, ProducerId { id: 1, epoch: 0 });
        assert_eq!(ids.for_shard(1), Some(ProducerId { id: 3, epoch: 0 }));
        assert_eq!(ids.for_shard(2), None);
        assert_eq!(ProducerIds::decode(&ids.encode()), Some(ids.clone()));
        assert_eq!(ProducerIds::decode(&ids.encode()[1..]), None);
        assert_eq!(ProducerIds::decode(&[]), None);
    }

    #[test]
    fn one_shard_failing_fails_the_whole_init() {
        let (resp, ids) = merge(&[
            (0, answer(1, 0, NONE)),
            (1, answer(-1, -1, COORDINATOR_NOT_AVAILABLE)),
        ]);
        assert_eq!(resp.error_code, COORDINATOR_NOT_AVAILABLE);
        assert!(ids.is_none());
        assert_eq!(merge(&[]).0.error_code, COORDINATOR_NOT_AVAILABLE);
    }
}
