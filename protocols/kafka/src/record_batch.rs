//! Record batches (magic 2) seen from outside: the proxy forwards them undecoded and only reads
//! their fixed header, or rewrites the producer id and epoch of an idempotent batch (with its
//! CRC-32C recomputed, since the checksum covers them).
//!
//! Header layout (offsets in the batch): baseOffset i64 @0, batchLength i32 @8 (bytes after
//! it), partitionLeaderEpoch i32 @12, magic i8 @16, crc u32 @17 (CRC-32C of bytes 21..end),
//! attributes i16 @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27, maxTimestamp i64 @35,
//! producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53, records count i32 @57.

use bytes::{Bytes, BytesMut};

use crate::crc32c::crc32c;
use crate::error::DecodeError;

/// Bytes of a batch header up to and including the records count.
pub const HEADER_LEN: usize = 61;
const LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const COUNT_AT: usize = 57;
/// Producer id of a batch from a producer that is not idempotent.
pub const NO_PRODUCER_ID: i64 = -1;

/// What the proxy reads of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    /// Offset of the batch in its records blob, and its total length.
    pub at: usize,
    pub len: usize,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
    /// The stored CRC equals the CRC-32C of the batch.
    pub crc_ok: bool,
}

fn field<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = b.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

/// Every batch of a Produce request's records blob: whole magic-2 batches, nothing left over.
pub fn batches(records: &[u8]) -> Result<Vec<BatchInfo>, DecodeError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < records.len() {
        let rest = records.get(at..).unwrap_or_default();
        if rest.len() < HEADER_LEN {
            return Err(DecodeError::BadRecordBatch {
                reason: "shorter than a batch header",
            });
        }
        let length = i32::from_be_bytes(field(rest, LENGTH_AT));
        let len = usize::try_from(length)
            .ok()
            .and_then(|l| l.checked_add(LENGTH_AT + 4))
            .filter(|l| *l >= HEADER_LEN && *l <= rest.len())
            .ok_or(DecodeError::BadRecordBatch {
                reason: "batch length out of range",
            })?;
        let batch = rest.get(..len).unwrap_or_default();
        if field::<1>(batch, MAGIC_AT) != [2] {
            return Err(DecodeError::BadRecordBatch {
                reason: "magic is not 2",
            });
        }
        let stored = u32::from_be_bytes(field(batch, CRC_AT));
        out.push(BatchInfo {
            at,
            len,
            producer_id: i64::from_be_bytes(field(batch, PRODUCER_ID_AT)),
            producer_epoch: i16::from_be_bytes(field(batch, PRODUCER_EPOCH_AT)),
            base_sequence: i32::from_be_bytes(field(batch, BASE_SEQUENCE_AT)),
            record_count: i32::from_be_bytes(field(batch, COUNT_AT)),
            crc_ok: stored == crc32c(batch.get(CRC_FROM..).unwrap_or_default()),
        });
        at += len;
    }
    Ok(out)
}

/// The records blob with every idempotent batch (producer id != -1) carrying `producer_id`
/// and `producer_epoch` instead, each rewritten batch's CRC-32C recomputed. Batches are not
/// otherwise touched (records stay compressed, sequences stay: a partition lives on one
/// shard, so its sequence numbers are that shard's), and a batch that already carries them is
/// left byte for byte. Returns the blob itself (shared, not copied) when no batch needs it.
///
/// A batch to rewrite whose stored CRC is wrong is refused (`BadRecordBatch`): recomputing
/// it would pass corrupted records off as sound. The caller answers that partition
/// CORRUPT_MESSAGE, as a broker checking CRCs would.
pub fn rewrite_producer(
    records: &Bytes,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<Bytes, DecodeError> {
    let infos = batches(records)?;
    let needs = |b: &&BatchInfo| {
        b.producer_id != NO_PRODUCER_ID
            && (b.producer_id != producer_id || b.producer_epoch != producer_epoch)
    };
    if !infos.iter().any(|b| needs(&b)) {
        return Ok(records.clone());
    }
    if infos.iter().filter(needs).any(|b| !b.crc_ok) {
        return Err(DecodeError::BadRecordBatch {
            reason: "CRC-32C mismatch",
        });
    }
    let mut out = BytesMut::from(&records[..]);
    for b in infos.iter().filter(needs) {
        let Some(batch) = out.get_mut(b.at..b.at + b.len) else {
            continue;
        };
        if let Some(dst) = batch.get_mut(PRODUCER_ID_AT..PRODUCER_ID_AT + 8) {
            dst.copy_from_slice(&producer_id.to_be_bytes());
        }
        if let Some(dst) = batch.get_mut(PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2) {
            dst.copy_from_slice(&producer_epoch.to_be_bytes());
        }
        let crc = crc32c(batch.get(CRC_FROM..).unwrap_or_default());
        if let Some(dst) = batch.get_mut(CRC_AT..CRC_AT + 4) {
            dst.copy_from_slice(&crc.to_be_bytes());
        }
    }
    Ok(out.freeze())
}
