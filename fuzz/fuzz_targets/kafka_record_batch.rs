//! Record batches: the batch header reader and the producer-id rewrite must never panic; a
//! rewrite keeps every batch's length and leaves each rewritten batch with a correct CRC-32C
//! and the new producer id and epoch.
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
    let after_blob = rewrite_producer(&blob, 9, 2).expect("a blob that reads must rewrite");
    assert_eq!(after_blob.len(), blob.len());
    let after = batches(&after_blob).expect("a rewritten blob reads");
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((b.at, b.len, b.base_sequence, b.record_count), (a.at, a.len, a.base_sequence, a.record_count));
        if b.producer_id == NO_PRODUCER_ID {
            assert_eq!(a, b);
        } else {
            assert!(a.crc_ok);
            assert_eq!((a.producer_id, a.producer_epoch), (9, 2));
        }
    }
});
