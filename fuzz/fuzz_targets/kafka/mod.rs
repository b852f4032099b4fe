//! Shared by the kafka_* targets: this crate's decoders dispatched by API, each checked
//! against the `kafka-protocol` oracle where both accept the input.
//!
//! The oracle only ever sees bytes this crate accepted first: its decoders allocate what a
//! count says before reading (4 bytes abort the process, protocols/kafka/README.md), and an
//! input this crate accepted has every count bounded by the bytes present, except inside
//! tagged fields, which this crate keeps raw and the oracle decodes. So the oracle runs under
//! an allocation cap: an allocation above `ORACLE_MAX_ALLOC` fails, the alloc error hook
//! (`#![feature(alloc_error_hook)]` in the targets; fuzz.sh builds with RUSTC_BOOTSTRAP=1)
//! panics, and `oracle` reads that as "the oracle refuses this input".
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Largest single allocation the oracle may make (this crate's own are bounded by the input).
const ORACLE_MAX_ALLOC: usize = 16 << 20;

thread_local! {
    static IN_ORACLE: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, refusing large allocations while the oracle runs.
pub struct CappedAlloc;

// SAFETY: forwards to the system allocator unchanged, or returns null (allowed: the caller
// then reports an allocation failure).
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ORACLE_MAX_ALLOC && IN_ORACLE.with(Cell::get) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ORACLE_MAX_ALLOC && IN_ORACLE.with(Cell::get) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ORACLE_MAX_ALLOC && IN_ORACLE.with(Cell::get) {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Installs the hook that turns a refused allocation into a panic (call once per process).
pub fn install_alloc_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::alloc::set_alloc_error_hook(|layout| {
            panic!("oracle allocation of {} bytes refused", layout.size());
        });
    });
}

use bytes::Bytes;
use geomesh_kafka::codes::api;
use geomesh_kafka::messages::{
    api_versions::ApiVersionsResponse, fetch, find_coordinator, init_producer_id, leader_epoch, list_offsets,
    metadata, offsets, produce,
    topics_admin::{error_entry, Admin, Topics},
};
use geomesh_kafka::wire::Reader;
use geomesh_kafka::Request;
use kafka_protocol::messages as kp;
use kafka_protocol::protocol::Decodable;

/// The oracle's reading of `body` at `version`, if it accepts it (an allocation above the cap
/// counts as a refusal).
fn oracle<T: Decodable>(body: &Bytes, version: i16) -> Option<T> {
    install_alloc_hook();
    // libfuzzer-sys's panic hook aborts: a quiet one while the oracle runs.
    let fuzzer_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    IN_ORACLE.with(|c| c.set(true));
    let out = std::panic::catch_unwind(|| T::decode(&mut body.clone(), version).ok());
    IN_ORACLE.with(|c| c.set(false));
    std::panic::set_hook(fuzzer_hook);
    out.ok().flatten()
}

/// Checks one encoding against the original: where the oracle reads the bytes this crate
/// consumed (our encoding is as long as them: fields are re-encoded at their own size and
/// trailing bytes are ignored), it reads our encoding as the same message. Only the consumed
/// bytes: the oracle reads a tagged field's value past its declared size, into what follows.
fn check<T: Decodable + PartialEq + std::fmt::Debug>(original: &Bytes, ours: &Bytes, version: i16) {
    let Some(consumed) = original.get(..ours.len()) else {
        panic!(
            "our encoding ({} bytes) is longer than the input ({})",
            ours.len(),
            original.len()
        );
    };
    if consumed != &ours[..] && only_null_arrays_emptied(consumed, ours) {
        return;
    }
    if let Some(a) = oracle::<T>(&Bytes::copy_from_slice(consumed), version) {
        let b = oracle::<T>(ours, version).expect("oracle refuses our re-encoding of what it read");
        assert_eq!(
            a, b,
            "oracle reads our re-encoding differently (v{version})"
        );
    }
}

/// Whether every byte where our encoding differs from the bytes read is a null array written
/// back as an empty one (`Reader::array_len` reads a null non-nullable array as empty: compact
/// length 0 becomes 1, an i32 -1 becomes 0, same size). The oracle is then not asked to read
/// the original: it refuses a null non-nullable array, or (reading a tagged field past its
/// declared size) reads those bytes as some other field, which is no disagreement of ours.
fn only_null_arrays_emptied(original: &[u8], ours: &[u8]) -> bool {
    original
        .iter()
        .zip(ours)
        .filter(|(a, b)| a != b)
        .all(|pair| matches!(pair, (0x00, 0x01) | (0xff, 0x00)))
}

/// Decodes a request body with this crate (every API it has a codec for) and checks it.
pub fn request(req: &Request) {
    let v = req.version();
    let body = req
        .body()
        .take(req.body().remaining(), "body")
        .unwrap_or_default();
    match req.spec.key {
        api::METADATA => {
            if let Ok(m) = metadata::MetadataRequest::decode(req) {
                let enc = m.encode(v);
                check::<kp::MetadataRequest>(&body, &enc, v);
            }
        }
        api::PRODUCE => {
            if let Ok(m) = produce::ProduceRequest::decode(req) {
                let enc = m.encode(v);
                check::<kp::ProduceRequest>(&body, &enc, v);
                let s = geomesh_kafka::logic::produce::split(&m, |t, p| {
                    Ok::<u16, i16>(u16::from(t.len() % 3 == 0) + u16::from(p % 2 == 0))
                });
                for mut part in s.parts.into_values() {
                    let refused =
                        geomesh_kafka::logic::produce::rewrite_producer_ids(&mut part, 7, 1);
                    assert!(refused
                        .iter()
                        .all(|(_, _, c)| *c == geomesh_kafka::codes::CORRUPT_MESSAGE));
                    let _ = part.encode(v);
                }
            }
        }
        api::FETCH => {
            if let Ok(m) = fetch::FetchRequest::decode(req) {
                let enc = m.encode(v);
                check::<kp::FetchRequest>(&body, &enc, v);
                let s = geomesh_kafka::logic::fetch::split(&m, |_, p| Ok::<i32, i16>(p % 3));
                let _ = geomesh_kafka::logic::fetch::merge(&m, &[], &s.refused, |_, _| 7).encode(v);
            }
        }
        api::LIST_OFFSETS => {
            if let Ok(m) = list_offsets::ListOffsetsRequest::decode(req) {
                let enc = m.encode(v);
                check::<kp::ListOffsetsRequest>(&body, &enc, v);
            }
        }
        api::OFFSET_FOR_LEADER_EPOCH => {
            if let Ok(m) = leader_epoch::OffsetForLeaderEpochRequest::decode(req) {
                check::<kp::OffsetForLeaderEpochRequest>(&body, &m.encode(v), v);
                let s = geomesh_kafka::logic::leader_epoch::split(&m, |t, _| {
                    if t.is_empty() {
                        Err(35)
                    } else {
                        Ok(t.len() % 3)
                    }
                });
                let answers: Vec<_> = s
                    .parts
                    .values()
                    .map(|p| geomesh_kafka::logic::leader_epoch::merge(p, &[], &[], |_, _| 6))
                    .collect();
                let merged = geomesh_kafka::logic::leader_epoch::merge(&m, &answers, &s.refused, |_, _| 7);
                let n = |ts: &[leader_epoch::EpochTopic]| ts.iter().map(|t| t.partitions.len()).sum::<usize>();
                assert_eq!(merged.topics.iter().map(|t| t.partitions.len()).sum::<usize>(), n(&m.topics));
                let _ = merged.encode(v);
            }
        }
        api::OFFSET_COMMIT => {
            if let Ok(m) = offsets::OffsetCommitRequest::decode(req) {
                check::<kp::OffsetCommitRequest>(&body, &m.encode(v), v);
                let s = geomesh_kafka::logic::offsets::split_commit(&m, 0u16, |t, _| {
                    Ok(u16::from(t.len() % 2 == 0))
                });
                let _ = geomesh_kafka::logic::offsets::merge_commit(&m, &[], &s.refused, |_, _| 7)
                    .encode(v);
            }
        }
        api::OFFSET_FETCH => {
            if let Ok(m) = offsets::OffsetFetchRequest::decode(req) {
                check::<kp::OffsetFetchRequest>(&body, &m.encode(v), v);
            }
        }
        api::FIND_COORDINATOR => {
            let _ = find_coordinator::FindCoordinatorRequest::decode(req);
        }
        api::INIT_PRODUCER_ID => {
            let _ = init_producer_id::transactional_id(req);
        }
        api::JOIN_GROUP | api::SYNC_GROUP | api::HEARTBEAT | api::LEAVE_GROUP => {
            let _ = geomesh_kafka::messages::group::group_id(req);
        }
        api::CREATE_TOPICS | api::DELETE_TOPICS => {
            let a = if req.spec.key == api::CREATE_TOPICS { Admin::Create } else { Admin::Delete };
            if let Ok(t) = Topics::decode_request(a, &mut req.body(), v) {
                let all: Vec<_> = t.entries.iter().collect();
                let enc = t.encode_with(a, v, &all);
                // Byte for byte except a null topics array, read (as Kafka does) as empty.
                assert!(enc == body || body.starts_with(&[0xff, 0xff, 0xff, 0xff]) || body.first() == Some(&0));
                match a {
                    Admin::Create => check::<kp::CreateTopicsRequest>(&body, &enc, v),
                    Admin::Delete => check::<kp::DeleteTopicsRequest>(&body, &enc, v),
                }
                for e in &t.entries {
                    let _ = error_entry(a, v, e.name.as_deref(), &e.topic_id, 41);
                }
            }
        }
        _ => {}
    }
}

/// The APIs whose responses this crate decodes.
/// (Seeds under fuzz/seeds/kafka_response start with an index into this list: append only.)
pub const RESPONSE_APIS: [i16; 13] = [
    api::API_VERSIONS,
    api::METADATA,
    api::PRODUCE,
    api::FETCH,
    api::LIST_OFFSETS,
    api::FIND_COORDINATOR,
    api::INIT_PRODUCER_ID,
    api::OFFSET_COMMIT,
    api::OFFSET_FETCH,
    api::CREATE_TOPICS,
    api::DELETE_TOPICS,
    api::OFFSET_FOR_LEADER_EPOCH,
    api::JOIN_GROUP,
];

/// Decodes a response body of `api_key` at `version` with this crate and checks it.
pub fn response(api_key: i16, version: i16, body: Bytes) {
    let v = version;
    let mut r = Reader::new(body.clone());
    match api_key {
        api::API_VERSIONS => {
            if let Ok((m, read_as)) = ApiVersionsResponse::decode(&mut r, v) {
                let enc = m.encode(read_as);
                check::<kp::ApiVersionsResponse>(&body, &enc, read_as);
                let _ = geomesh_kafka::logic::versions::merge(&[m.clone(), m]);
            }
        }
        api::METADATA => {
            if let Ok(m) = metadata::MetadataResponse::decode(&mut r, v) {
                let enc = m.encode(v);
                check::<kp::MetadataResponse>(&body, &enc, v);
                let req = metadata::MetadataRequest {
                    topics: None,
                    allow_auto_topic_creation: false,
                    include_cluster_authorized_operations: false,
                    include_topic_authorized_operations: false,
                    tagged: Bytes::new(),
                };
                let adv = geomesh_kafka::logic::nodes::Advertised {
                    host: Bytes::from_static(b"proxy"),
                    port: 9092,
                };
                let ctx = geomesh_kafka::logic::metadata::MergeContext {
                    request: &req,
                    advertised: &adv,
                    cluster_id: None,
                    failed: &[],
                };
                let merged = geomesh_kafka::logic::metadata::merge(
                    &ctx,
                    &[(0, m.clone()), (3, m)],
                    |t| u16::from(t.len() % 2 == 1) * 3,
                    &[],
                );
                let out = merged.response.encode(v);
                assert!(
                    oracle::<kp::MetadataResponse>(&out, v).is_some()
                        || oracle::<kp::MetadataResponse>(&body, v).is_none()
                );
            }
        }
        api::PRODUCE => {
            if let Ok(m) = produce::ProduceResponse::decode(&mut r, v) {
                check::<kp::ProduceResponse>(&body, &m.encode(v), v);
            }
        }
        api::FETCH => {
            if let Ok(m) = fetch::FetchResponse::decode(&mut r, v) {
                check::<kp::FetchResponse>(&body, &m.encode(v), v);
            }
        }
        api::LIST_OFFSETS => {
            if let Ok(m) = list_offsets::ListOffsetsResponse::decode(&mut r, v) {
                check::<kp::ListOffsetsResponse>(&body, &m.encode(v), v);
            }
        }
        api::JOIN_GROUP => {
            // Read for the generation and members (commits of fenced members): what it accepts,
            // the oracle reads the same way.
            if let Ok(m) = geomesh_kafka::messages::group::JoinGroupAnswer::decode(&mut r, v) {
                if let Some(o) = oracle::<kp::JoinGroupResponse>(&body, v) {
                    assert_eq!((o.error_code, o.generation_id), (m.error_code, m.generation_id));
                    // Fields before any tagged field only (see `check` on the oracle's tags).
                    assert_eq!(o.member_id.as_bytes(), &m.member_id[..]);
                }
            }
        }
        api::OFFSET_FOR_LEADER_EPOCH => {
            if let Ok(m) = leader_epoch::OffsetForLeaderEpochResponse::decode(&mut r, v) {
                check::<kp::OffsetForLeaderEpochResponse>(&body, &m.encode(v), v);
            }
        }
        api::FIND_COORDINATOR => {
            if let Ok(m) = find_coordinator::FindCoordinatorResponse::decode(&mut r, v) {
                let adv = geomesh_kafka::logic::nodes::Advertised {
                    host: Bytes::from_static(b"proxy"),
                    port: 9092,
                };
                let _ = geomesh_kafka::logic::coordinator::rewrite(&m, 1, &adv).encode(v);
            }
        }
        api::OFFSET_COMMIT => {
            if let Ok(m) = offsets::OffsetCommitResponse::decode(&mut r, v) {
                check::<kp::OffsetCommitResponse>(&body, &m.encode(v), v);
            }
        }
        api::OFFSET_FETCH => {
            if let Ok(m) = offsets::OffsetFetchResponse::decode(&mut r, v) {
                check::<kp::OffsetFetchResponse>(&body, &m.encode(v), v);
            }
        }
        api::INIT_PRODUCER_ID => {
            if let Ok(m) = init_producer_id::InitProducerIdResponse::decode(&mut r, v) {
                check::<kp::InitProducerIdResponse>(&body, &m.encode(v), v);
            }
        }
        api::CREATE_TOPICS | api::DELETE_TOPICS => {
            let a = if api_key == api::CREATE_TOPICS { Admin::Create } else { Admin::Delete };
            if let Ok(t) = Topics::decode_response(a, &mut r, v) {
                let all: Vec<_> = t.entries.iter().collect();
                let enc = t.encode_with(a, v, &all);
                match a {
                    Admin::Create => check::<kp::CreateTopicsResponse>(&body, &enc, v),
                    Admin::Delete => check::<kp::DeleteTopicsResponse>(&body, &enc, v),
                }
            }
        }
        _ => {}
    }
}
