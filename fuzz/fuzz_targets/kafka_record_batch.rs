//! Record batches: the batch header reader and the producer-id rewrite must never panic; a
//! rewrite keeps every batch's length, leaves a batch that needs no rewrite byte for byte,
//! gives each rewritten one a correct CRC-32C and the new producer id and epoch, and refuses
//! a blob in which a batch to rewrite has a wrong CRC (never launders corruption).
//!
//! Input: the records blob of one partition.
#![no_main]

use geomesh_kafka::record_batch::{batches, rewrite_producer, NO_PRODUCER_ID};
use geomesh_kafka::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let blob = Bytes::copy_from_slice(data);
    let Ok(before) = batches(&blob) else {
        assert!(rewrite_producer(&blob, 9, 2).is_err());
        return;
    };
    let needs = |b: &geomesh_kafka::record_batch::BatchInfo| {
        b.producer_id != NO_PRODUCER_ID && (b.producer_id, b.producer_epoch) != (9, 2)
    };
    let Ok(after_blob) = rewrite_producer(&blob, 9, 2) else {
        assert!(
            before.iter().any(|b| needs(b) && !b.crc_ok),
            "refused a sound blob"
        );
        return;
    };
    assert_eq!(after_blob.len(), blob.len());
    let after = batches(&after_blob).expect("a rewritten blob reads");
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (b.at, b.len, b.base_sequence, b.record_count),
            (a.at, a.len, a.base_sequence, a.record_count)
        );
        if needs(b) {
            assert!(a.crc_ok);
            assert_eq!((a.producer_id, a.producer_epoch), (9, 2));
        } else {
            assert_eq!(a, b);
            assert_eq!(
                after_blob.get(b.at..b.at + b.len),
                blob.get(b.at..b.at + b.len)
            );
        }
    }
});
