//! Session tests: the Kafka session driven by the kit's harness against scripted brokers
//! ([`Broker`]: one per cluster, answering with this crate's encoders, which `tests/oracle.rs`
//! checks against `kafka-protocol`). One file per concern, as in `session/`.

mod cluster;
mod consume;
mod epochs;
mod coordinator;
mod faults;
mod group;
mod leaders;
mod produce;
mod sasl;
mod topics;

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use geomesh_kit::testkit::{table, Harness, Shard};

use super::{session, KafkaSession};
use crate::apis::{lookup, APIS};
use crate::codes::{api, NONE, UNKNOWN_TOPIC_OR_PARTITION};
use crate::crc32c;
use crate::header::{parse_response, Request, RequestHeader};
use crate::messages::api_versions::{ApiRange, ApiVersionsResponse};
use crate::messages::fetch::{FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopicResponse};
use crate::messages::find_coordinator::{Coordinator, FindCoordinatorResponse};
use crate::messages::init_producer_id::InitProducerIdResponse;
use crate::messages::metadata::{
    MetadataBroker, MetadataPartition, MetadataRequest, MetadataResponse, MetadataTopic, AUTHORIZED_OPERATIONS_UNKNOWN,
};
use crate::messages::offsets::{
    FetchedOffset, FetchedTopic, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    PartitionResult, TopicResults,
};
use crate::messages::produce::{ProducePartitionResponse, ProduceRequest, ProduceResponse, ProduceTopicResponse};
use crate::record_batch::batches;
use crate::settings::Settings;
use crate::wire::{Reader, Writer};
use crate::FrameDecoder;

/// Two shards: topics `a*` on cluster a, `b*` on b; groups route the same way.
pub const TABLE: &str = "\
workload_type: kafka
default_cluster: a
upstream_timeout_ms: 1000
routing_table:
  b: { type: prefix, cluster: b }
  gb: { type: prefix, cluster: b }
kafka:
  advertised_host: proxy.local
  advertised_port: 19092
";

pub const PROXY_HOST: &str = "proxy.local";
pub const PROXY_PORT: i32 = 19092;
pub const NODE: i32 = 111;

/// (group, topic, partition).
pub type Commit = (Vec<u8>, Vec<u8>, i32);

/// A scripted Kafka broker: hosts topics (3 partitions each), stores batches, hands out
/// producer ids, commits offsets; answers every API the proxy sends it.
#[derive(Default)]
pub struct Broker {
    inbuf: BytesMut,
    out: Vec<u8>,
    /// Topics it hosts: name -> partitions.
    pub topics: BTreeMap<Vec<u8>, i32>,
    /// Batches stored per (topic, partition).
    pub logs: BTreeMap<(Vec<u8>, i32), Vec<Bytes>>,
    pub next_producer_id: i64,
    /// (group, topic, partition) -> (offset, generation of the commit).
    pub commits: BTreeMap<Commit, (i64, i32)>,
    /// Every request received: (api key, version, body decoded where useful).
    pub seen: Vec<Request>,
    /// Stop answering (a stalled broker).
    pub silent: bool,
    /// More brokers its Metadata lists (a shard of several brokers).
    pub extra_brokers: Vec<MetadataBroker>,
    /// Leaders other than itself, by partition.
    pub leader_by_partition: BTreeMap<i32, i32>,
    /// APIs its ApiVersions leaves out (tansu 0.6 lacks OffsetForLeaderEpoch).
    pub lacks: Vec<i16>,
    /// The coordinator its FindCoordinator names (node, host, port) instead of itself.
    pub coordinator: Option<(i32, &'static str, i32)>,
    /// The error its group answers carry (NOT_COORDINATOR: it does not coordinate the group).
    pub group_error: i16,
    /// Its JoinGroup answer's body, as set by a test.
    pub join_answer: Option<Bytes>,
}

impl Shard for Broker {
    fn feed(&mut self, bytes: &[u8]) {
        self.inbuf.extend_from_slice(bytes);
        let mut dec = FrameDecoder::new(1 << 26);
        while let Some(frame) = dec.decode(&mut self.inbuf).unwrap() {
            let req = Request::parse(frame).unwrap();
            self.seen.push(req.clone());
            if let Some(body) = self.answer(&req) {
                if !self.silent {
                    let spec = req.spec;
                    let f = crate::header::response_frame(
                        req.header.correlation_id,
                        spec.response_header_version(req.version()),
                        &body,
                    );
                    self.out.extend_from_slice(&f);
                }
            }
        }
    }
    fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
    fn has_output(&self) -> bool {
        !self.out.is_empty()
    }
    fn close_connection(&mut self) {
        self.inbuf.clear();
        self.out.clear();
    }
}

impl Broker {
    pub fn host(&mut self, topic: &str) -> &mut Self {
        self.topics.insert(topic.as_bytes().to_vec(), 3);
        self
    }

    fn answer(&mut self, req: &Request) -> Option<Bytes> {
        let v = req.version();
        Some(match req.spec.key {
            api::API_VERSIONS => ApiVersionsResponse {
                error_code: NONE,
                api_keys: APIS
                    .iter()
                    .filter(|a| !self.lacks.contains(&a.key))
                    .map(|a| ApiRange::new(a.key, a.min, a.max.min(11)))
                    .collect(),
                throttle_time_ms: 0,
                tagged: Bytes::new(),
            }
            .encode(v),
            api::METADATA => {
                let md = MetadataRequest::decode(req).unwrap();
                let names: Vec<Vec<u8>> = match &md.topics {
                    None => self.topics.keys().cloned().collect(),
                    Some(t) => t.iter().filter_map(|t| t.name.as_ref().map(|n| n.to_vec())).collect(),
                };
                MetadataResponse {
                    throttle_time_ms: 0,
                    brokers: std::iter::once(MetadataBroker {
                        node_id: NODE,
                        host: Bytes::from_static(b"127.0.0.1"),
                        port: 9092,
                        rack: None,
                        tagged: Bytes::new(),
                    })
                    .chain(self.extra_brokers.iter().cloned())
                    .collect(),
                    cluster_id: Some(Bytes::from_static(b"tansu")),
                    controller_id: NODE,
                    topics: names
                        .into_iter()
                        .map(|n| {
                            let parts = self.topics.get(&n).copied();
                            MetadataTopic {
                                error_code: if parts.is_some() { NONE } else { UNKNOWN_TOPIC_OR_PARTITION },
                                topic_id: [n.len() as u8; 16],
                                name: Some(Bytes::from(n)),
                                is_internal: false,
                                partitions: (0..parts.unwrap_or(0))
                                    .map(|i| MetadataPartition {
                                        error_code: NONE,
                                        partition_index: i,
                                        leader_id: self.leader_by_partition.get(&i).copied().unwrap_or(NODE),
                                        leader_epoch: 0,
                                        replica_nodes: vec![NODE],
                                        isr_nodes: vec![NODE],
                                        offline_replicas: vec![],
                                        tagged: Bytes::new(),
                                    })
                                    .collect(),
                                topic_authorized_operations: AUTHORIZED_OPERATIONS_UNKNOWN,
                                tagged: Bytes::new(),
                            }
                        })
                        .collect(),
                    cluster_authorized_operations: AUTHORIZED_OPERATIONS_UNKNOWN,
                    tagged: Bytes::new(),
                }
                .encode(v)
            }
            api::PRODUCE => {
                let p = ProduceRequest::decode(req).unwrap();
                let resp = ProduceResponse {
                    topics: p
                        .topics
                        .iter()
                        .map(|t| ProduceTopicResponse {
                            name: t.name.clone(),
                            partitions: t
                                .partitions
                                .iter()
                                .map(|part| {
                                    if !self.topics.contains_key(&t.name[..]) {
                                        return ProducePartitionResponse::error(part.index, UNKNOWN_TOPIC_OR_PARTITION);
                                    }
                                    let log = self.logs.entry((t.name.to_vec(), part.index)).or_default();
                                    let base = log.len() as i64;
                                    log.push(part.records.clone().unwrap_or_default());
                                    ProducePartitionResponse {
                                        base_offset: base,
                                        log_start_offset: 0,
                                        ..ProducePartitionResponse::error(part.index, NONE)
                                    }
                                })
                                .collect(),
                            tagged: Bytes::new(),
                        })
                        .collect(),
                    throttle_time_ms: 0,
                    tagged: Bytes::new(),
                };
                if p.acks == 0 {
                    return None;
                }
                resp.encode(v)
            }
            api::FETCH => {
                let f = FetchRequest::decode(req).unwrap();
                FetchResponse {
                    throttle_time_ms: 0,
                    error_code: NONE,
                    session_id: 0,
                    topics: f
                        .topics
                        .iter()
                        .map(|t| FetchTopicResponse {
                            topic: t.topic.clone(),
                            partitions: t
                                .partitions
                                .iter()
                                .map(|p| {
                                    let log = self.logs.get(&(t.topic.to_vec(), p.partition)).cloned().unwrap_or_default();
                                    let mut records = Vec::new();
                                    for b in log.iter().skip(p.fetch_offset as usize) {
                                        records.extend_from_slice(b);
                                    }
                                    FetchPartitionResponse {
                                        high_watermark: log.len() as i64,
                                        records: Some(Bytes::from(records)),
                                        ..FetchPartitionResponse::error(p.partition, NONE)
                                    }
                                })
                                .collect(),
                            tagged: Bytes::new(),
                        })
                        .collect(),
                    tagged: Bytes::new(),
                }
                .encode(v)
            }
            api::OFFSET_FOR_LEADER_EPOCH => epochs::answer(self, req),
            api::INIT_PRODUCER_ID => {
                self.next_producer_id += 1;
                InitProducerIdResponse {
                    throttle_time_ms: 0,
                    error_code: NONE,
                    producer_id: self.next_producer_id,
                    producer_epoch: 0,
                    tagged: Bytes::new(),
                }
                .encode(v)
            }
            api::FIND_COORDINATOR => {
                let keys = crate::messages::find_coordinator::FindCoordinatorRequest::decode(req).unwrap().keys;
                FindCoordinatorResponse {
                    throttle_time_ms: 0,
                    coordinators: keys
                        .into_iter()
                        .map(|key| Coordinator {
                            key,
                            node_id: self.coordinator.map_or(NODE, |c| c.0),
                            host: Bytes::from_static(self.coordinator.map_or("127.0.0.1", |c| c.1).as_bytes()),
                            port: self.coordinator.map_or(9092, |c| c.2),
                            error_code: NONE,
                            error_message: None,
                        })
                        .collect(),
                }
                .encode(v)
            }
            api::JOIN_GROUP if self.join_answer.is_some() && self.group_error == NONE => self.join_answer.clone()?,
            api::JOIN_GROUP | api::SYNC_GROUP | api::HEARTBEAT | api::LEAVE_GROUP => {
                crate::logic::errors::group_error_body(req.spec.key, v, self.group_error).unwrap()
            }
            api::OFFSET_COMMIT => {
                let c = OffsetCommitRequest::decode(req).unwrap();
                let resp = OffsetCommitResponse {
                    throttle_time_ms: 0,
                    topics: c
                        .topics
                        .iter()
                        .map(|t| TopicResults {
                            name: t.name.clone(),
                            partitions: t
                                .partitions
                                .iter()
                                .map(|p| {
                                    let code = if self.group_error != NONE {
                                        self.group_error
                                    } else if self.topics.contains_key(&t.name[..]) {
                                        self.commits.insert(
                                            (c.group_id.to_vec(), t.name.to_vec(), p.partition_index),
                                            (p.committed_offset, c.generation_id),
                                        );
                                        NONE
                                    } else {
                                        UNKNOWN_TOPIC_OR_PARTITION
                                    };
                                    PartitionResult {
                                        partition_index: p.partition_index,
                                        error_code: code,
                                        tagged: Bytes::new(),
                                    }
                                })
                                .collect(),
                            tagged: Bytes::new(),
                        })
                        .collect(),
                    tagged: Bytes::new(),
                };
                resp.encode(v)
            }
            api::OFFSET_FETCH => {
                let f = OffsetFetchRequest::decode(req).unwrap();
                let topics = f.topics.clone().unwrap_or_default();
                OffsetFetchResponse {
                    throttle_time_ms: 0,
                    topics: topics
                        .iter()
                        .map(|t| FetchedTopic {
                            name: t.name.clone(),
                            partitions: t
                                .partition_indexes
                                .iter()
                                .map(|i| {
                                    let got = self.commits.get(&(f.group_id.to_vec(), t.name.to_vec(), *i));
                                    FetchedOffset {
                                        committed_offset: got.map_or(-1, |g| g.0),
                                        ..FetchedOffset::none(*i, NONE)
                                    }
                                })
                                .collect(),
                            tagged: Bytes::new(),
                        })
                        .collect(),
                    error_code: self.group_error,
                    tagged: Bytes::new(),
                }
                .encode(v)
            }
            api::SASL_HANDSHAKE => {
                let m = crate::messages::sasl::handshake_mechanism(&mut req.body()).unwrap();
                let code = if &m[..] == b"PLAIN" { NONE } else { 33 };
                crate::messages::sasl::handshake_response(code, &[b"PLAIN"])
            }
            api::SASL_AUTHENTICATE => {
                let auth = req.body().bytes(req.flexible(), "auth_bytes").unwrap();
                let ok = &auth[..] == b"\0alice\0secret";
                let code = if ok { NONE } else { crate::codes::SASL_AUTHENTICATION_FAILED };
                crate::messages::sasl::authenticate_response(v, code, if ok { "" } else { "bad password" })
            }
            api::CREATE_TOPICS | api::DELETE_TOPICS => {
                use crate::messages::topics_admin::{empty_tail, error_entry, throttle_head, Admin, Topics};
                let a = if req.spec.key == api::CREATE_TOPICS { Admin::Create } else { Admin::Delete };
                let t = Topics::decode_request(a, &mut req.body(), v).unwrap();
                let results: Vec<_> = t
                    .entries
                    .iter()
                    .map(|e| {
                        let n = e.name.clone().unwrap_or_default().to_vec();
                        let code = match a {
                            Admin::Create if self.topics.insert(n.clone(), 3).is_some() => 36, // TOPIC_ALREADY_EXISTS
                            Admin::Delete if self.topics.remove(&n).is_none() => UNKNOWN_TOPIC_OR_PARTITION,
                            _ => NONE,
                        };
                        error_entry(a, v, e.name.as_deref(), &e.topic_id, code)
                    })
                    .collect();
                let out = Topics { head: throttle_head(a, v, 0), entries: vec![], tail: empty_tail(a, v) };
                out.encode_with(a, v, &results.iter().collect::<Vec<_>>())
            }
            _ => return None,
        })
    }
}

/// A harness over [`TABLE`] with topic `a1` on a and `b1`, `b2` on b.
pub fn harness() -> Harness<KafkaSession, Broker> {
    harness_with(TABLE)
}

/// The first connection of a test, on a new VM (one thread runs every test under wasm32).
pub fn harness_with(yaml: &str) -> Harness<KafkaSession, Broker> {
    crate::session::leaders::clear_vm();
    crate::session::producers::clear_vm();
    crate::session::groups::clear_vm();
    connection_with(yaml)
}

/// Another connection on the same VM as the test's first: it sees what that one learnt.
pub fn another_connection() -> Harness<KafkaSession, Broker> {
    connection_with(TABLE)
}

fn connection_with(yaml: &str) -> Harness<KafkaSession, Broker> {
    let t = table(yaml);
    let config = geomesh_core::Config::parse(yaml.as_bytes()).unwrap();
    let settings = Settings::from_config(&config).unwrap();
    let mut h: Harness<KafkaSession, Broker> = Harness::start(session(t.clone(), config.upstream_timeout_ms, &settings), t);
    h.fake("a").host("a1");
    h.fake("b").host("b1").host("b2");
    h
}

/// A request frame (size prefix included).
pub fn request(key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let spec = lookup(key).unwrap();
    let mut w = Writer::new();
    RequestHeader {
        api_key: key,
        api_version: version,
        correlation_id,
        client_id: Some(Bytes::from_static(b"test")),
        tagged: Bytes::new(),
    }
    .write(&mut w, spec.request_header_version(version) >= 2);
    w.raw(body);
    crate::with_size_prefix(&w.buf).to_vec()
}

/// Takes the next answer frame the client received: (correlation id, body reader).
pub fn answer(h: &mut Harness<KafkaSession, Broker>, key: i16, version: i16) -> (i32, Reader) {
    let frame = FrameDecoder::new(1 << 26).decode(&mut h.client).unwrap().expect("an answer");
    parse_response(frame, lookup(key).unwrap(), version).unwrap()
}

/// A magic-2 record batch of `values` (no keys), producer id/epoch/sequence as given, CRC-32C
/// right.
pub fn batch(values: &[&str], producer_id: i64, epoch: i16, sequence: i32) -> Bytes {
    let mut recs = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let mut r = Writer::new();
        r.i8(0);
        varint(&mut r, 0);
        varint(&mut r, i as i32);
        varint(&mut r, -1);
        varint(&mut r, v.len() as i32);
        r.raw(v.as_bytes());
        varint(&mut r, 0);
        let mut len = Writer::new();
        varint(&mut len, r.buf.len() as i32);
        recs.extend_from_slice(&len.buf);
        recs.extend_from_slice(&r.buf);
    }
    let mut w = Writer::new();
    w.i64(0);
    w.i32((61 - 12 + recs.len()) as i32);
    w.i32(0);
    w.i8(2);
    w.i32(0); // crc, below
    w.i16(0);
    w.i32(values.len() as i32 - 1);
    w.i64(1_700_000_000_000);
    w.i64(1_700_000_000_000);
    w.i64(producer_id);
    w.i16(epoch);
    w.i32(sequence);
    w.i32(values.len() as i32);
    w.raw(&recs);
    let mut b = w.buf.to_vec();
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(batches(&b).unwrap()[0].crc_ok);
    Bytes::from(b)
}

fn varint(w: &mut Writer, v: i32) {
    let mut z = ((v << 1) ^ (v >> 31)) as u32;
    while z >= 0x80 {
        w.i8(((z & 0x7f) | 0x80) as u8 as i8);
        z >>= 7;
    }
    w.i8(z as u8 as i8);
}
