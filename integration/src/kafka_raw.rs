//! A raw Kafka connection for the tests: frames written and read with geomesh's own codec
//! (`geomesh_kafka`), for what no client library sends on purpose (one Produce naming topics of
//! several shards, garbage, unknown APIs) or must not do for us (ask one broker directly what
//! it holds, without following the leaders its Metadata advertises).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use geomesh_kafka::codes::api;
use geomesh_kafka::messages::fetch::{FetchPartition, FetchRequest, FetchResponse, FetchTopic};
use geomesh_kafka::messages::produce::{
    ProducePartition, ProduceRequest, ProduceResponse, ProduceTopic,
};
use geomesh_kafka::wire::{Reader, Writer};
use geomesh_kafka::{apis, crc32c, parse_response, with_size_prefix, Bytes, RequestHeader};

/// A raw Kafka connection speaking frames built with geomesh's codec.
pub struct Raw {
    pub s: TcpStream,
    next_id: i32,
}

impl Raw {
    pub fn connect(port: u16) -> Result<Raw> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Raw { s, next_id: 1 })
    }

    /// Sends one request frame; returns its correlation id.
    pub fn send_frame(&mut self, key: i16, version: i16, body: &[u8]) -> Result<i32> {
        let spec = apis::lookup(key).context("api")?;
        let id = self.next_id;
        self.next_id += 1;
        let mut w = Writer::new();
        RequestHeader {
            api_key: key,
            api_version: version,
            correlation_id: id,
            client_id: Some(Bytes::from_static(b"geomesh-e2e")),
            tagged: Bytes::new(),
        }
        .write(&mut w, spec.request_header_version(version) >= 2);
        w.raw(body);
        self.s.write_all(&with_size_prefix(&w.buf))?;
        Ok(id)
    }

    /// The next answer frame (size prefix removed), or `None` when the peer closed.
    pub fn read_frame(&mut self) -> Result<Option<Bytes>> {
        let mut len = [0u8; 4];
        match self.s.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut buf)?;
        Ok(Some(Bytes::from(buf)))
    }

    /// One request and its answer's body (header read and its correlation id checked).
    pub fn call(&mut self, key: i16, version: i16, body: &[u8]) -> Result<Reader> {
        let id = self.send_frame(key, version, body)?;
        let frame = self.read_frame()?.context("closed instead of answering")?;
        let (cid, r) = parse_response(frame, apis::lookup(key).context("api")?, version)?;
        if cid != id {
            bail!("answer to correlation id {cid}, {id} was due");
        }
        Ok(r)
    }

    /// A request of an API the proxy does not carry (no entry in `apis`), non-flexible: header
    /// v1 out, v0 back; its answer's body.
    pub fn call_plain(&mut self, key: i16, version: i16, body: &[u8]) -> Result<Reader> {
        let id = self.next_id;
        self.next_id += 1;
        let mut w = Writer::new();
        RequestHeader {
            api_key: key,
            api_version: version,
            correlation_id: id,
            client_id: Some(Bytes::from_static(b"geomesh-e2e")),
            tagged: Bytes::new(),
        }
        .write(&mut w, false);
        w.raw(body);
        self.s.write_all(&with_size_prefix(&w.buf))?;
        let frame = self.read_frame()?.context("closed instead of answering")?;
        let mut r = Reader::new(frame);
        let cid = r.i32("correlation_id")?;
        if cid != id {
            bail!("answer to correlation id {cid}, {id} was due");
        }
        Ok(r)
    }

    pub fn produce(&mut self, req: &ProduceRequest) -> Result<ProduceResponse> {
        let mut r = self.call(api::PRODUCE, 9, &req.encode(9))?;
        Ok(ProduceResponse::decode(&mut r, 9)?)
    }

    /// The record bytes each of `partitions` of `topic` holds from offset 0 on this broker
    /// (one Fetch v4, up to 1 MiB per partition): (partition, error, bytes).
    pub fn fetched_bytes(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i16, usize)>> {
        let req = FetchRequest {
            replica_id: -1,
            max_wait_ms: 100,
            min_bytes: 0,
            max_bytes: 4 << 20,
            isolation_level: 0,
            session_id: 0,
            session_epoch: -1,
            topics: vec![FetchTopic {
                topic: Bytes::from(topic.to_owned()),
                partitions: partitions
                    .iter()
                    .map(|p| FetchPartition {
                        partition: *p,
                        current_leader_epoch: -1,
                        fetch_offset: 0,
                        last_fetched_epoch: -1,
                        log_start_offset: -1,
                        partition_max_bytes: 1 << 20,
                        tagged: Bytes::new(),
                    })
                    .collect(),
                tagged: Bytes::new(),
            }],
            forgotten: vec![],
            rack_id: Bytes::new(),
            tagged: Bytes::new(),
        };
        let mut r = self.call(api::FETCH, 4, &req.encode(4))?;
        let resp = FetchResponse::decode(&mut r, 4)?;
        Ok(resp
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        p.partition_index,
                        p.error_code,
                        p.records.as_ref().map_or(0, |b| b.len()),
                    )
                })
            })
            .collect())
    }

    /// True once the peer closed the connection (read returns end of stream).
    pub fn closed_within(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut b = [0u8; 256];
        while Instant::now() < until {
            match self.s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => continue,
            }
        }
        false
    }
}

/// A CreateTopics v0 body: `topics` (name, partitions), replication factor 1.
pub fn create_topics_v0(topics: &[(&str, i32)], timeout_ms: i32) -> Vec<u8> {
    let mut w = Writer::new();
    w.array_len(false, topics.len());
    for (name, partitions) in topics {
        w.string(false, name.as_bytes());
        w.i32(*partitions);
        w.i16(1);
        w.array_len(false, 0);
        w.array_len(false, 0);
    }
    w.i32(timeout_ms);
    w.buf.to_vec()
}

/// A magic-2 record batch of `values` (no key), not idempotent, CRC-32C right.
pub fn batch(values: &[&str]) -> Bytes {
    fn varint(out: &mut Vec<u8>, v: i32) {
        let mut z = ((v << 1) ^ (v >> 31)) as u32;
        while z >= 0x80 {
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    let mut recs = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let mut r = vec![0u8];
        varint(&mut r, 0);
        varint(&mut r, i as i32);
        varint(&mut r, -1);
        varint(&mut r, v.len() as i32);
        r.extend_from_slice(v.as_bytes());
        varint(&mut r, 0);
        varint(&mut recs, r.len() as i32);
        recs.extend_from_slice(&r);
    }
    let now = 1_700_000_000_000i64;
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((61 - 12 + recs.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(values.len() as i32 - 1).to_be_bytes());
    b.extend_from_slice(&now.to_be_bytes());
    b.extend_from_slice(&now.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&(values.len() as i32).to_be_bytes());
    b.extend_from_slice(&recs);
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

/// A Produce of `parts` (topic, partition, values: one batch each).
pub fn produce_request(acks: i16, parts: &[(&str, i32, &[&str])]) -> ProduceRequest {
    let mut topics: Vec<ProduceTopic> = Vec::new();
    for (t, p, values) in parts {
        let part = ProducePartition {
            index: *p,
            records: Some(batch(values)),
            tagged: Bytes::new(),
        };
        match topics.iter_mut().find(|x| &x.name[..] == t.as_bytes()) {
            Some(x) => x.partitions.push(part),
            None => topics.push(ProduceTopic {
                name: Bytes::from(t.to_string()),
                partitions: vec![part],
                tagged: Bytes::new(),
            }),
        }
    }
    ProduceRequest {
        transactional_id: None,
        acks,
        timeout_ms: 5000,
        topics,
        tagged: Bytes::new(),
    }
}

/// (topic, partition, error, base offset) of every partition of a Produce answer.
pub fn codes(resp: &ProduceResponse) -> Vec<(String, i32, i16, i64)> {
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    String::from_utf8_lossy(&t.name).into_owned(),
                    p.index,
                    p.error_code,
                    p.base_offset,
                )
            })
        })
        .collect()
}
