//! The Kafka session (framing, planner, splits, merges, producer-id rewrite) on the kit's shared
//! fuzz shape (`geomesh_kit::testkit::fuzz`): random client bytes, random and plausible broker
//! answers (correlation ids from the small set the scripted requests use, so they can match),
//! connection closures, timeouts and table swaps must never panic, and answers must leave in
//! request order.
//!
//! Order check: after every scripted request the driver sends a transactional InitProducerId
//! with correlation id `MARK + n`, which the session refuses itself, in its turn. Scripted
//! requests use correlation ids 1..=8, so a broker cannot forge a marker (the session checks
//! every broker answer's correlation id against the one its slot waits for).
#![no_main]

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use geomesh_core::{Config, RoutingTable};
use geomesh_kafka::codes::api;
use geomesh_kafka::messages::api_versions::{ApiRange, ApiVersionsResponse};
use geomesh_kafka::messages::produce::{
    ProducePartition, ProducePartitionResponse, ProduceRequest, ProduceResponse, ProduceTopic, ProduceTopicResponse,
};
use geomesh_kafka::wire::Writer;
use geomesh_kafka::{apis, crc32c, response_frame, with_size_prefix, FrameDecoder, KafkaSession, RequestHeader, Settings};
use geomesh_kit::testkit::fuzz::{run, Input, Target};
use libfuzzer_sys::fuzz_target;

const MARK: i32 = 1 << 30;

const TABLE_A: &str = "workload_type: kafka\ndefault_cluster: k1\nupstream_timeout_ms: 500\nrouting_table:\n  b: { type: prefix, cluster: k2 }\n  g2: k2\nkafka: { advertised_host: p, advertised_port: 9092 }\n";
const TABLE_B: &str = "workload_type: kafka\ndefault_cluster: k2\nrouting_table:\n  '*': { type: hash, clusters: [k1, k2, k3] }\nkafka: { advertised_host: p, advertised_port: 9092 }\n";

const TOPICS: &[&str] = &["a1", "b1", "b2", "zz"];

fn frame(key: i16, version: i16, cid: i32, body: &[u8]) -> Vec<u8> {
    let spec = apis::lookup(key).expect("known api");
    let mut w = Writer::new();
    RequestHeader {
        api_key: key,
        api_version: version,
        correlation_id: cid,
        client_id: None,
        tagged: Bytes::new(),
    }
    .write(&mut w, spec.request_header_version(version) >= 2);
    w.raw(body);
    with_size_prefix(&w.buf).to_vec()
}

fn batch(producer_id: i64, bad_crc: bool) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&(61i32 - 12 + 8).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&[7, 0, 0, 0, 1, 2, b'v', 0]);
    let crc = crc32c(&b[21..]) ^ u32::from(bad_crc);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

struct Kafka;

impl Target for Kafka {
    type S = KafkaSession;

    fn tables(&self) -> &[&str] {
        &[TABLE_A, TABLE_B]
    }

    fn session(&self, table: Rc<RoutingTable>) -> KafkaSession {
        let config = Config::parse(TABLE_A.as_bytes()).expect("fuzz table");
        let mut settings = Settings::from_config(&config).expect("fuzz settings");
        settings.limits.max_request_bytes = 4096;
        settings.limits.max_response_bytes = 4096;
        geomesh_kafka::session(table, 500, &settings)
    }

    fn request(&self, input: &mut Input<'_>) -> (Vec<u8>, bool) {
        let cid = i32::from(input.byte_or(0) % 8) + 1;
        let pick = input.byte_or(0);
        let t = |b: u8| TOPICS[usize::from(b) % TOPICS.len()].as_bytes();
        let (x, y) = (input.byte_or(0), input.byte_or(1));
        let mut w = Writer::new();
        let (key, version) = match pick % 10 {
            0 => {
                w.raw(&[0, 0, 0]);
                (api::API_VERSIONS, 3)
            }
            1 => {
                w.array_len(true, 2);
                for b in [x, y] {
                    w.uuid(&[0; 16]);
                    w.nullable_string(true, Some(t(b)));
                    w.tagged_fields(true, &[]);
                }
                w.bool(true);
                w.bool(false);
                w.tagged_fields(true, &[]);
                (api::METADATA, 12)
            }
            2 | 3 => {
                let acks = [1i16, 0, -1][usize::from(y) % 3];
                let pid = [-1i64, 1, 2][usize::from(x / 4) % 3];
                let req = ProduceRequest {
                    transactional_id: None,
                    acks,
                    timeout_ms: 100,
                    topics: [x, y]
                        .iter()
                        .map(|b| ProduceTopic {
                            name: Bytes::copy_from_slice(t(*b)),
                            partitions: vec![ProducePartition {
                                index: i32::from(b % 3),
                                records: Some(batch(pid, b % 7 == 0)),
                                tagged: Bytes::new(),
                            }],
                            tagged: Bytes::new(),
                        })
                        .collect(),
                    tagged: Bytes::new(),
                };
                w.raw(&req.encode(9));
                (api::PRODUCE, 9)
            }
            4 => {
                for v in [-1i32, 500, 1, 1 << 20] {
                    w.i32(v);
                }
                w.i8(0);
                w.i32(0);
                w.i32(-1);
                w.array_len(true, 2);
                for b in [x, y] {
                    w.string(true, t(b));
                    w.array_len(true, 1);
                    w.i32(i32::from(b % 3));
                    w.i32(-1);
                    w.i64(0);
                    w.i32(-1);
                    w.i64(-1);
                    w.i32(1 << 20);
                    w.tagged_fields(true, &[]);
                    w.tagged_fields(true, &[]);
                }
                w.array_len(true, 0);
                w.string(true, b"");
                w.tagged_fields(true, &[]);
                (api::FETCH, 12)
            }
            5 => {
                w.string(false, if x % 2 == 0 { b"g1" } else { b"g2" });
                w.i8(0);
                (api::FIND_COORDINATOR, 1)
            }
            6 => {
                w.string(true, if x % 2 == 0 { b"g1" } else { b"g2" });
                w.i32(1);
                w.string(true, b"m");
                w.nullable_string(true, None);
                w.tagged_fields(true, &[]);
                (api::HEARTBEAT, 4)
            }
            7 => {
                w.string(true, b"g1");
                w.i32(3);
                w.string(true, b"m");
                w.nullable_string(true, None);
                w.array_len(true, 2);
                for b in [x, y] {
                    w.string(true, t(b));
                    w.array_len(true, 1);
                    w.i32(0);
                    w.i64(5);
                    w.i32(-1);
                    w.nullable_string(true, None);
                    w.tagged_fields(true, &[]);
                    w.tagged_fields(true, &[]);
                }
                w.tagged_fields(true, &[]);
                (api::OFFSET_COMMIT, 8)
            }
            8 => {
                w.nullable_string(true, None);
                w.i32(1000);
                w.i64(if x % 2 == 0 { -1 } else { 1 });
                w.i16(if x % 2 == 0 { -1 } else { 0 });
                w.tagged_fields(true, &[]);
                (api::INIT_PRODUCER_ID, 4)
            }
            _ => {
                w.string(true, b"g1");
                w.array_len(true, 1);
                w.string(true, t(x));
                w.array_len(true, 1);
                w.i32(0);
                w.tagged_fields(true, &[]);
                w.bool(false);
                w.tagged_fields(true, &[]);
                (api::OFFSET_FETCH, 7)
            }
        };
        (frame(key, version, cid, &w.buf), false)
    }

    fn answer(&self, input: &mut Input<'_>) -> Vec<u8> {
        let cid = i32::from(input.byte_or(0) % 8) + 1;
        let pick = input.byte_or(0);
        let body: Bytes = match pick % 5 {
            0 => ApiVersionsResponse {
                error_code: 0,
                api_keys: apis::APIS.iter().map(|a| ApiRange::new(a.key, a.min, a.max)).collect(),
                throttle_time_ms: 0,
                tagged: Bytes::new(),
            }
            .encode(3),
            1 => ProduceResponse {
                topics: TOPICS
                    .iter()
                    .map(|n| ProduceTopicResponse {
                        name: Bytes::from_static(n.as_bytes()),
                        partitions: (0..3).map(|i| ProducePartitionResponse::error(i, 0)).collect(),
                        tagged: Bytes::new(),
                    })
                    .collect(),
                throttle_time_ms: 0,
                tagged: Bytes::new(),
            }
            .encode(9),
            2 => Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
            3 => {
                let n = usize::from(input.byte_or(0) % 32);
                Bytes::copy_from_slice(input.bytes(n))
            }
            _ => Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        };
        let header_version = i16::from(input.byte_or(0) % 2);
        response_frame(cid, header_version, &body).to_vec()
    }

    fn marker(&self, n: u64) -> Option<Vec<u8>> {
        let mut w = Writer::new();
        w.nullable_string(true, Some(b"tx"));
        w.i32(1000);
        w.i64(-1);
        w.i16(-1);
        w.tagged_fields(true, &[]);
        Some(frame(api::INIT_PRODUCER_ID, 4, MARK + (n as i32 % MARK), &w.buf))
    }

    fn read_markers(&self, client: &mut BytesMut) -> Vec<u64> {
        let mut out = Vec::new();
        let mut dec = FrameDecoder::new(1 << 26);
        while let Some(f) = dec.decode(client).expect("the client can frame what it receives") {
            let cid = i32::from_be_bytes(f.get(..4).expect("a correlation id").try_into().expect("4 bytes"));
            if cid >= MARK {
                out.push((cid - MARK) as u64);
            }
        }
        out
    }

    fn pending(&self, s: &KafkaSession) -> usize {
        s.pending()
    }
}

fuzz_target!(|data: &[u8]| {
    run(&Kafka, data);
});
