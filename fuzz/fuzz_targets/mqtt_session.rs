//! The MQTT session (routing, identifier remapping both ways, SUBSCRIBE fan-out and merges,
//! fan-in, keepalive, lost brokers) on the kit's shared fuzz shape (`geomesh_kit::testkit::fuzz`):
//! random client bytes, plausible and random broker packets, closures, timeouts and table swaps
//! must never panic; what the client gets must decode; answers leave in request order.
//!
//! The first scripted request is a CONNECT (3.1.1 or 5.0, chosen by the input). Order check:
//! after every scripted request the driver sends a SUBSCRIBE with an invalid filter and
//! packet identifier `MARK + n`, which the session refuses itself, in turn, with a SUBACK
//! carrying that identifier. Scripted requests use identifiers below `MARK`, and a broker's
//! SUBACK only ever reaches the client under the identifier of a client SUBSCRIBE.
#![no_main]

use std::cell::Cell;
use std::rc::Rc;

use geomesh_core::RoutingTable;
use geomesh_kit::testkit::fuzz::{run, Input, Target};
use geomesh_mqtt::{
    Ack, Bytes, BytesMut, ConnAck, Connect, Decoder, Disconnect, Limits, MqttSession, Packet, Publish, QoS, ReasonCode,
    Settings, SubAck, Subscribe, SubscribeOptions, Subscription, UnsubAck, Unsubscribe, Version,
};
use libfuzzer_sys::fuzz_target;

const MARK: u16 = 40_000;

const TABLE_A: &str = "workload_type: mqtt\ndefault_cluster: m1\nlocal_cluster: m1\nupstream_timeout_ms: 500\nrouting_table:\n  user1: m2\n  alert: { type: value, cluster: m2 }\n  tmp: { type: prefix, cluster: m3 }\n";
const TABLE_B: &str = "workload_type: mqtt\ndefault_cluster: m2\nrouting_table:\n  user1: m3\n  fleet: { type: hash, clusters: [m1, m2] }\n";

const TOPICS: &[&str] = &["a", "user1", "user1/x", "tmpfile", "fleet/7", "$SYS/x", "sensors/1"];
const FILTERS: &[&str] = &["#", "+/x", "user1/#", "$share/g/a/+", "$SYS/#", "a/#/b", "fleet/+", "tmp"];
const PAYLOADS: &[&str] = &["", "alert!", "x"];

#[derive(Default)]
struct Mqtt {
    connected: Cell<bool>,
    v5: Cell<bool>,
}

impl Mqtt {
    fn v(&self) -> Version {
        if self.v5.get() {
            Version::V5
        } else {
            Version::V311
        }
    }

    fn wire(&self, p: Packet) -> Vec<u8> {
        p.to_bytes(self.v()).map(|b| b.to_vec()).unwrap_or_default()
    }
}

fn pick<'a>(list: &[&'a str], b: u8) -> &'a str {
    list[usize::from(b) % list.len()]
}

fn qos(b: u8) -> QoS {
    match b % 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn id(b: u8) -> u16 {
    u16::from(b % 6) + 1
}

impl Target for Mqtt {
    type S = MqttSession;

    fn tables(&self) -> &[&str] {
        &[TABLE_A, TABLE_B]
    }

    fn session(&self, table: Rc<RoutingTable>) -> MqttSession {
        let mut settings = Settings::default();
        settings.limits.max_packet_size = 4096;
        settings.topic_alias_maximum = 4;
        geomesh_mqtt::session(table, 500, &settings)
    }

    fn request(&self, input: &mut Input<'_>) -> (Vec<u8>, bool) {
        let (k, x, y, z) = (input.byte_or(0), input.byte_or(0), input.byte_or(1), input.byte_or(2));
        if !self.connected.get() {
            self.connected.set(true);
            self.v5.set(k % 2 == 1);
            let mut c = Connect::new(self.v(), if x % 2 == 0 { "" } else { "fuzz" });
            c.keep_alive = u16::from(y);
            if self.v5.get() {
                c.properties.receive_maximum = Some(u16::from(z % 8) + 1);
            }
            return (self.wire(Packet::Connect(Box::new(c))), false);
        }
        let p = match k % 12 {
            0..=3 => {
                let mut p = Publish::new(pick(TOPICS, x), qos(y), pick(PAYLOADS, z));
                if p.qos != QoS::AtMostOnce {
                    p.packet_id = Some(id(z));
                }
                p.retain = y & 0x10 != 0;
                if self.v5.get() && y & 0x20 != 0 {
                    p.properties.topic_alias = Some(u16::from(x % 5) + 1);
                    if y & 0x40 != 0 {
                        p.topic = Bytes::new();
                    }
                }
                p.dup = p.qos != QoS::AtMostOnce && y & 0x80 != 0;
                Packet::Publish(p)
            }
            4 => Packet::PubRel(Ack::new(id(x))),
            5 => Packet::PubAck(Ack::new(id(x))),
            6 => Packet::PubRec(Ack::new(id(x))),
            7 => Packet::PubComp(Ack::new(id(x))),
            8 => Packet::Subscribe(Subscribe {
                packet_id: id(x),
                properties: Default::default(),
                filters: [y, z]
                    .iter()
                    .take(usize::from(x % 2) + 1)
                    .map(|b| Subscription { filter: Bytes::from(pick(FILTERS, *b)), options: SubscribeOptions::qos(qos(*b)) })
                    .collect(),
            }),
            9 => Packet::Unsubscribe(Unsubscribe {
                packet_id: id(x),
                properties: Default::default(),
                filters: vec![Bytes::from(pick(FILTERS, y))],
            }),
            10 => Packet::PingReq,
            _ if x == 0 => Packet::Disconnect(Disconnect::normal()),
            _ => Packet::PingReq,
        };
        (self.wire(p), false)
    }

    fn answer(&self, input: &mut Input<'_>) -> Vec<u8> {
        let (k, x, y) = (input.byte_or(0), input.byte_or(0), input.byte_or(1));
        let broker_id = u16::from(x % 8) + 1;
        let p = match k % 12 {
            0 => Packet::ConnAck(ConnAck::accepted(x % 2 == 0)),
            1 => Packet::PubAck(Ack::new(broker_id)),
            2 => Packet::PubRec(Ack::new(broker_id)),
            3 => Packet::PubComp(Ack::new(broker_id)),
            4 => Packet::SubAck(SubAck { packet_id: broker_id, properties: Default::default(), reasons: vec![y % 3; usize::from(y % 3)] }),
            5 => Packet::UnsubAck(UnsubAck {
                packet_id: broker_id,
                properties: Default::default(),
                reasons: if self.v5.get() { vec![0] } else { Vec::new() },
            }),
            6 | 7 => {
                let mut p = Publish::new(pick(TOPICS, y), qos(x), pick(PAYLOADS, y));
                if p.qos != QoS::AtMostOnce {
                    p.packet_id = Some(broker_id);
                }
                p.retain = x & 0x40 != 0;
                Packet::Publish(p)
            }
            8 => Packet::PubRel(Ack::new(broker_id)),
            9 => Packet::PingResp,
            10 if self.v5.get() => Packet::Disconnect(Disconnect { reason: ReasonCode::SERVER_SHUTTING_DOWN, properties: Default::default() }),
            _ => return vec![x, y, 0xff],
        };
        self.wire(p)
    }

    fn marker(&self, n: u64) -> Option<Vec<u8>> {
        let n = u16::try_from(n).ok().filter(|n| *n < u16::MAX - MARK)?;
        let s = Subscribe {
            packet_id: MARK + n,
            properties: Default::default(),
            filters: vec![Subscription { filter: Bytes::from_static(b"a/#/b"), options: SubscribeOptions::qos(QoS::AtMostOnce) }],
        };
        Some(self.wire(Packet::Subscribe(s)))
    }

    fn read_markers(&self, client: &mut BytesMut) -> Vec<u64> {
        let mut dec = Decoder::from_server(self.v(), Limits::default());
        let mut seen = Vec::new();
        loop {
            let before = client.len();
            let head: Vec<u8> = client.iter().take(64).copied().collect();
            if self.v5.get() && head.starts_with(&[0x20, 0x02]) {
                // A 2-byte CONNACK is 3.1.1's: the answer to a CONNECT whose protocol level
                // the proxy does not take (3.1.1's return code 0x01; such a client speaks no
                // 5.0). A 5.0 CONNACK always has a properties length, so it is longer.
                let mut v311 = Decoder::from_server(Version::V311, Limits::default());
                if matches!(v311.decode(client), Ok(Some(_))) {
                    continue;
                }
            }
            match dec.decode(client) {
                Ok(Some(d)) => {
                    if let Packet::SubAck(s) = d.packet {
                        if s.packet_id >= MARK {
                            seen.push(u64::from(s.packet_id - MARK));
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => panic!(
                    "the session wrote an undecodable packet: {e} ({:?} with {:02x?})",
                    self.v(),
                    (before, head)
                ),
            }
        }
        seen
    }

    fn pending(&self, s: &MqttSession) -> usize {
        s.pending()
    }
}

fuzz_target!(|data: &[u8]| run(&Mqtt::default(), data));
