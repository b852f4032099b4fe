//! Frames captured between real clients (librdkafka 2.16 via confluent-kafka, kafka-python
//! 3.0) and a real tansu 0.6 broker: every frame this crate has a codec for decodes, and
//! encodes back to the same bytes.

mod common;

use common::{captures, find_coordinator_keys, request_round_trip, response_round_trip};
use geomesh_kafka::codes::api;
use geomesh_kafka::messages::produce::ProduceRequest;
use geomesh_kafka::record_batch::batches;
use geomesh_kafka::{Request, RequestError};

fn check(client: &str) -> (usize, usize) {
    let (mut requests, mut responses) = (0, 0);
    for c in captures(client) {
        if c.is_request {
            match Request::parse(c.frame.clone()) {
                Ok(req) => {
                    assert_eq!(req.wire().slice(4..), c.frame);
                    if let Some(res) = request_round_trip(&req) {
                        let enc = res.unwrap_or_else(|e| panic!("{}: {e}", c.file));
                        // Bytes after the last field are ignored, as Kafka's own parsers do
                        // (librdkafka sends 3 after a v12 Metadata request for all topics).
                        let body = c.frame.slice(req.body_start..);
                        assert!(body.starts_with(&enc), "{}", c.file);
                        assert!(body.len() - enc.len() <= 3, "{}", c.file);
                        requests += 1;
                    }
                    if req.spec.key == api::PRODUCE {
                        for t in ProduceRequest::decode(&req).unwrap().topics {
                            for p in t.partitions {
                                let infos = batches(p.records.as_ref().unwrap()).unwrap();
                                assert!(
                                    !infos.is_empty() && infos.iter().all(|b| b.crc_ok),
                                    "{}",
                                    c.file
                                );
                            }
                        }
                    }
                    if req.spec.key == api::FIND_COORDINATOR {
                        let keys = find_coordinator_keys(&req).unwrap();
                        assert!(!keys.is_empty(), "{}", c.file);
                    }
                }
                // Versions above the proxy's caps (Fetch v16, OffsetFetch v8/v9...) and APIs
                // it does not carry (GetTelemetrySubscriptions): refused, not misread.
                Err(RequestError::UnsupportedVersion { .. } | RequestError::UnknownApi { .. }) => {}
                Err(e) => panic!("{}: {e:?}", c.file),
            }
        } else if let Some(res) = response_round_trip(c.api_key, c.version, c.frame.clone()) {
            let (body, enc) = res.unwrap_or_else(|e| panic!("{}: {e}", c.file));
            assert_eq!(enc, body, "{}", c.file);
            responses += 1;
        }
    }
    (requests, responses)
}

#[test]
fn librdkafka_frames_round_trip() {
    let (req, resp) = check("librdkafka");
    assert!(
        req >= 10 && resp >= 20,
        "{req} requests, {resp} responses checked"
    );
}

#[test]
fn kafka_python_frames_round_trip() {
    let (req, resp) = check("kafka-python");
    assert!(
        req >= 8 && resp >= 15,
        "{req} requests, {resp} responses checked"
    );
}
