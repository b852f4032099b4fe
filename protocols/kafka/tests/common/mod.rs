//! Shared by the integration tests: the captured frames of real clients talking to tansu, and
//! the codec's decoders dispatched by API.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use geomesh_kafka::apis::lookup;
use geomesh_kafka::codes::api;
use geomesh_kafka::messages::api_versions::ApiVersionsResponse;
use geomesh_kafka::messages::fetch::{FetchRequest, FetchResponse};
use geomesh_kafka::messages::find_coordinator::{FindCoordinatorRequest, FindCoordinatorResponse};
use geomesh_kafka::messages::init_producer_id::InitProducerIdResponse;
use geomesh_kafka::messages::list_offsets::{ListOffsetsRequest, ListOffsetsResponse};
use geomesh_kafka::messages::metadata::{MetadataRequest, MetadataResponse};
use geomesh_kafka::messages::offsets::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
};
use geomesh_kafka::messages::produce::{ProduceRequest, ProduceResponse};
use geomesh_kafka::wire::Reader;
use geomesh_kafka::{parse_response, Bytes, DecodeError, Request};

/// One captured frame (size prefix removed) with the API and version of its request.
pub struct Captured {
    pub file: String,
    pub is_request: bool,
    pub api_key: i16,
    pub version: i16,
    pub frame: Bytes,
}

/// Every frame under tests/data/captures/<client>/ (native only: files) (requests and responses, responses paired
/// with their request by connection and correlation id).
pub fn captures(client: &str) -> Vec<Captured> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/captures")
        .join(client);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let read = |n: &str| Bytes::from(std::fs::read(dir.join(n)).unwrap()).slice(4..);
    let mut reqs: HashMap<(String, i32), (i16, i16)> = HashMap::new();
    let mut out = Vec::new();
    for n in names.iter().filter(|n| n.contains("-req-")) {
        let f = read(n);
        let key = i16::from_be_bytes([f[0], f[1]]);
        let ver = i16::from_be_bytes([f[2], f[3]]);
        let cid = i32::from_be_bytes([f[4], f[5], f[6], f[7]]);
        let conn = n.split('-').nth(1).unwrap().to_string();
        reqs.insert((conn, cid), (key, ver));
        out.push(Captured {
            file: n.clone(),
            is_request: true,
            api_key: key,
            version: ver,
            frame: f,
        });
    }
    for n in names.iter().filter(|n| n.contains("-resp-")) {
        let f = read(n);
        let cid = i32::from_be_bytes([f[0], f[1], f[2], f[3]]);
        let conn = n.split('-').nth(1).unwrap().to_string();
        let (key, ver) = reqs[&(conn, cid)];
        out.push(Captured {
            file: n.clone(),
            is_request: false,
            api_key: key,
            version: ver,
            frame: f,
        });
    }
    out
}

/// Decodes a request body with this crate's codec and encodes it back (`None`: no codec for
/// this API's body).
pub fn request_round_trip(req: &Request) -> Option<Result<Bytes, DecodeError>> {
    let v = req.version();
    Some(match req.spec.key {
        api::METADATA => MetadataRequest::decode(req).map(|m| m.encode(v)),
        api::PRODUCE => ProduceRequest::decode(req).map(|m| m.encode(v)),
        api::FETCH => FetchRequest::decode(req).map(|m| m.encode(v)),
        api::LIST_OFFSETS => ListOffsetsRequest::decode(req).map(|m| m.encode(v)),
        api::OFFSET_COMMIT => OffsetCommitRequest::decode(req).map(|m| m.encode(v)),
        api::OFFSET_FETCH => OffsetFetchRequest::decode(req).map(|m| m.encode(v)),
        _ => return None,
    })
}

/// Decodes a response body (after its header) and encodes it back (`None`: no codec).
pub fn response_round_trip(
    api_key: i16,
    version: i16,
    frame: Bytes,
) -> Option<Result<(Bytes, Bytes), DecodeError>> {
    let spec = lookup(api_key).filter(|s| s.supports(version))?;
    let run = |r: &mut Reader| -> Option<Result<Bytes, DecodeError>> {
        Some(match api_key {
            api::API_VERSIONS => ApiVersionsResponse::decode(r, version).map(|(m, v)| m.encode(v)),
            api::METADATA => MetadataResponse::decode(r, version).map(|m| m.encode(version)),
            api::PRODUCE => ProduceResponse::decode(r, version).map(|m| m.encode(version)),
            api::FETCH => FetchResponse::decode(r, version).map(|m| m.encode(version)),
            api::LIST_OFFSETS => ListOffsetsResponse::decode(r, version).map(|m| m.encode(version)),
            api::OFFSET_FOR_LEADER_EPOCH => {
                geomesh_kafka::messages::leader_epoch::OffsetForLeaderEpochResponse::decode(r, version)
                    .map(|m| m.encode(version))
            }
            api::OFFSET_COMMIT => {
                OffsetCommitResponse::decode(r, version).map(|m| m.encode(version))
            }
            api::OFFSET_FETCH => OffsetFetchResponse::decode(r, version).map(|m| m.encode(version)),
            api::FIND_COORDINATOR => {
                FindCoordinatorResponse::decode(r, version).map(|m| m.encode(version))
            }
            api::INIT_PRODUCER_ID => {
                InitProducerIdResponse::decode(r, version).map(|m| m.encode(version))
            }
            _ => return None,
        })
    };
    let (_, mut r) = match parse_response(frame, spec, version) {
        Ok(x) => x,
        Err(e) => return Some(Err(e)),
    };
    let start = r.position();
    let body = r.clone().take(r.remaining(), "body").ok()?;
    let _ = start;
    run(&mut r).map(|res| res.map(|enc| (body, enc)))
}

/// FindCoordinator request keys (decode only: the proxy never re-encodes it).
pub fn find_coordinator_keys(req: &Request) -> Result<Vec<Bytes>, DecodeError> {
    FindCoordinatorRequest::decode(req).map(|r| r.keys)
}
