//! Session tests on the kit's harness: a scripted MQTT broker per cluster (it answers CONNECT,
//! PUBLISH at each QoS, SUBSCRIBE, UNSUBSCRIBE and PINGREQ as mosquitto does and records what it
//! got); the end-to-end tests with real mosquitto brokers through Envoy are in
//! `integration/tests/mqtt_e2e.rs`.

mod connect;
mod failure;
mod flow;
mod inbound;
mod keepalive;
mod publish;
mod subscribe;
mod subscriptions;

use bytes::{Bytes, BytesMut};
use geomesh_kit::testkit::{self, Harness, Shard};

use super::{session, MqttSession, Settings};
use crate::packet::{
    Ack, ConnAck, Connect, Packet, Publish, QoS, SubAck, Subscribe, SubscribeOptions, Subscription,
    UnsubAck, Unsubscribe, Version,
};
use crate::{Decoder, Limits};

/// Écharde's table over two brokers: `user1` topics and `alert` payloads on b2, the rest on b1.
pub const TABLE: &str = "\
workload_type: mqtt
default_cluster: b1
local_cluster: b1
upstream_timeout_ms: 1000
routing_table:
  user1: {type: key, cluster: b2}
  alert: {type: value, cluster: b2}
";

/// A scripted broker.
#[derive(Default)]
pub struct Broker {
    decoder: Option<Decoder>,
    inbuf: BytesMut,
    out: Vec<u8>,
    version: Option<Version>,
    next_id: u16,
    /// Answers nothing (a stalled broker).
    pub silent: bool,
    pub connects: Vec<Connect>,
    pub published: Vec<Publish>,
    pub pubrels: Vec<u16>,
    pub subscribed: Vec<Bytes>,
    pub unsubscribed: Vec<Bytes>,
    /// Acknowledgements of its own PUBLISHes: (type name, identifier).
    pub acks: Vec<(&'static str, u16)>,
    pub pings: usize,
    pub disconnects: usize,
    pub raw: Vec<u8>,
}

impl Broker {
    fn v(&self) -> Version {
        self.version.unwrap_or(Version::V311)
    }

    fn answer(&mut self, p: Packet) {
        let mut b = BytesMut::new();
        p.encode(self.v(), &mut b).unwrap();
        self.out.extend_from_slice(&b);
    }

    /// The broker delivers a message to the session (its own identifier for QoS 1/2).
    pub fn deliver(&mut self, topic: &str, qos: QoS, payload: &str, retain: bool) -> Option<u16> {
        let mut p = Publish::new(
            Bytes::copy_from_slice(topic.as_bytes()),
            qos,
            Bytes::copy_from_slice(payload.as_bytes()),
        );
        p.retain = retain;
        if qos != QoS::AtMostOnce {
            self.next_id += 1;
            p.packet_id = Some(self.next_id + 100);
        }
        let id = p.packet_id;
        self.answer(Packet::Publish(p));
        id
    }

    /// The broker ends the session with a 5.0 DISCONNECT.
    pub fn disconnect(&mut self, reason: crate::ReasonCode) {
        self.answer(Packet::Disconnect(crate::packet::Disconnect {
            reason,
            properties: Default::default(),
        }));
    }
}

impl Shard for Broker {
    fn feed(&mut self, bytes: &[u8]) {
        self.raw.extend_from_slice(bytes);
        self.inbuf.extend_from_slice(bytes);
        let mut dec = self
            .decoder
            .take()
            .unwrap_or_else(|| Decoder::from_client(Limits::default()));
        while let Some(d) = dec
            .decode(&mut self.inbuf)
            .expect("the session writes valid MQTT")
        {
            if self.silent {
                continue;
            }
            match d.packet {
                Packet::Connect(c) => {
                    self.version = Some(c.version);
                    self.connects.push(*c);
                    let mut ack = ConnAck::accepted(false);
                    ack.properties.topic_alias_maximum = Some(10);
                    ack.properties.receive_maximum = Some(100);
                    self.answer(Packet::ConnAck(ack));
                }
                Packet::Publish(p) => {
                    let id = p.packet_id;
                    let qos = p.qos;
                    self.published.push(p);
                    match (qos, id) {
                        (QoS::AtLeastOnce, Some(id)) => self.answer(Packet::PubAck(Ack::new(id))),
                        (QoS::ExactlyOnce, Some(id)) => self.answer(Packet::PubRec(Ack::new(id))),
                        _ => {}
                    }
                }
                Packet::PubRel(a) => {
                    self.pubrels.push(a.packet_id);
                    self.answer(Packet::PubComp(Ack::new(a.packet_id)));
                }
                Packet::Subscribe(Subscribe {
                    packet_id, filters, ..
                }) => {
                    let reasons = filters.iter().map(|f| f.options.qos.bits()).collect();
                    self.subscribed
                        .extend(filters.into_iter().map(|f| f.filter));
                    self.answer(Packet::SubAck(SubAck {
                        packet_id,
                        properties: Default::default(),
                        reasons,
                    }));
                }
                Packet::Unsubscribe(Unsubscribe {
                    packet_id, filters, ..
                }) => {
                    let reasons = if self.v() == Version::V5 {
                        vec![0; filters.len()]
                    } else {
                        Vec::new()
                    };
                    self.unsubscribed.extend(filters);
                    self.answer(Packet::UnsubAck(UnsubAck {
                        packet_id,
                        properties: Default::default(),
                        reasons,
                    }));
                }
                Packet::PubAck(a) => self.acks.push(("PUBACK", a.packet_id)),
                Packet::PubRec(a) => {
                    self.acks.push(("PUBREC", a.packet_id));
                    self.answer(Packet::PubRel(Ack::new(a.packet_id)));
                }
                Packet::PubComp(a) => self.acks.push(("PUBCOMP", a.packet_id)),
                Packet::PingReq => {
                    self.pings += 1;
                    self.answer(Packet::PingResp);
                }
                Packet::Disconnect(_) => self.disconnects += 1,
                other => panic!("the broker got {other:?}"),
            }
        }
        self.decoder = Some(dec);
    }

    fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    fn close_connection(&mut self) {
        self.decoder = None;
        self.inbuf.clear();
        self.out.clear();
    }
}

pub type H = Harness<MqttSession, Broker>;

/// A session on [`TABLE`].
pub fn harness() -> H {
    let t = testkit::table(TABLE);
    Harness::start(session(t.clone(), 1000, &Settings::default()), t)
}

/// A client packet on the wire.
pub fn wire(p: Packet, v: Version) -> Vec<u8> {
    let mut b = BytesMut::new();
    p.encode(v, &mut b).unwrap();
    b.to_vec()
}

/// What the client received so far, decoded.
pub fn received(h: &mut H, v: Version) -> Vec<Packet> {
    let mut d = Decoder::from_server(v, Limits::default());
    let mut out = Vec::new();
    while let Some(p) = d.decode(&mut h.client).expect("the client gets valid MQTT") {
        out.push(p.packet);
    }
    assert!(h.client.is_empty(), "a partial packet left");
    out
}

/// A connected session: CONNECT (client id `c1`, keep-alive 60 s), both CONNACKs delivered,
/// the merged CONNACK read.
pub fn connected(v: Version) -> H {
    let mut h = harness();
    let mut c = Connect::new(v, "c1");
    c.keep_alive = 60;
    h.send(&wire(Packet::Connect(Box::new(c)), v));
    h.deliver();
    let got = received(&mut h, v);
    assert!(
        matches!(got.as_slice(), [Packet::ConnAck(a)] if a.code == 0),
        "{got:?}"
    );
    h
}

pub fn publish(topic: &str, qos: QoS, id: Option<u16>, payload: &str) -> Packet {
    let mut p = Publish::new(
        Bytes::copy_from_slice(topic.as_bytes()),
        qos,
        Bytes::copy_from_slice(payload.as_bytes()),
    );
    p.packet_id = id;
    Packet::Publish(p)
}

pub fn subscribe(id: u16, filters: &[&str]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: id,
        properties: Default::default(),
        filters: filters
            .iter()
            .map(|f| Subscription {
                filter: Bytes::copy_from_slice(f.as_bytes()),
                options: SubscribeOptions::qos(QoS::ExactlyOnce),
            })
            .collect(),
    })
}

pub fn topics(b: &Broker) -> Vec<String> {
    b.published
        .iter()
        .map(|p| String::from_utf8_lossy(&p.topic).into_owned())
        .collect()
}
