//! geomesh-mqtt's codec against a real broker: packets we encode are accepted by mosquitto 2.0,
//! and what mosquitto sends decodes with our decoder, for MQTT 3.1.1 and 5.0 (CONNECT with
//! properties, SUBSCRIBE with a subscription identifier, PUBLISH at QoS 2 with a topic alias,
//! the QoS 2 handshakes both ways, PINGREQ, DISCONNECT).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use geomesh_integration::mosquitto::Mosquitto;
use geomesh_integration::TestDir;
use geomesh_mqtt::*;

struct Conn {
    s: TcpStream,
    v: Version,
    dec: Decoder,
    buf: BytesMut,
}

impl Conn {
    fn open(port: u16, v: Version) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Conn { s, v, dec: Decoder::from_server(v, Limits::default()), buf: BytesMut::new() }
    }

    fn send(&mut self, p: Packet) {
        let bytes = p.to_bytes(self.v).unwrap();
        self.s.write_all(&bytes).unwrap();
    }

    fn recv(&mut self) -> Packet {
        loop {
            if let Some(d) = self.dec.decode(&mut self.buf).expect("mosquitto's bytes decode") {
                return d.packet;
            }
            let mut chunk = [0u8; 4096];
            let n = self.s.read(&mut chunk).expect("mosquitto answers");
            assert!(n > 0, "mosquitto closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn session(port: u16, v: Version) {
    let v5 = v == Version::V5;
    let mut c = Conn::open(port, v);
    let mut connect = Connect::new(v, format!("codec-{}", v.level()));
    connect.keep_alive = 30;
    if v5 {
        connect.properties.receive_maximum = Some(10);
        connect.properties.topic_alias_maximum = Some(5);
        connect.properties.user_properties = vec![(Bytes::from_static(b"k"), Bytes::from_static(b"v"))];
    }
    c.send(Packet::Connect(Box::new(connect)));
    let Packet::ConnAck(ack) = c.recv() else { panic!("expected CONNACK") };
    assert_eq!((ack.code, ack.session_present), (0, false));
    if v5 {
        assert!(ack.properties.topic_alias_maximum.is_some(), "mosquitto announces its topic aliases: {ack:?}");
    }

    let mut sub = Subscribe {
        packet_id: 1,
        properties: Box::default(),
        filters: vec![Subscription { filter: Bytes::from_static(b"codec/#"), options: SubscribeOptions::qos(QoS::ExactlyOnce) }],
    };
    if v5 {
        sub.properties.subscription_identifiers = vec![7];
    }
    c.send(Packet::Subscribe(sub));
    assert_eq!(c.recv(), Packet::SubAck(SubAck { packet_id: 1, properties: Box::default(), reasons: vec![2] }));

    // QoS 2 out and back in: we PUBLISH (42) and, subscribed, get it delivered (their id);
    // both handshakes run to the end, in whatever order mosquitto interleaves them.
    let mut publish = Publish::new("codec/1", QoS::ExactlyOnce, "payload-2");
    publish.packet_id = Some(42);
    if v5 {
        publish.properties.topic_alias = Some(1);
    }
    c.send(Packet::Publish(publish));
    let (mut completed, mut delivered, mut released) = (false, None, false);
    for _ in 0..8 {
        match c.recv() {
            Packet::PubRec(a) if a.packet_id == 42 => c.send(Packet::PubRel(Ack::new(42))),
            Packet::PubComp(a) if a.packet_id == 42 => completed = true,
            Packet::Publish(p) => {
                assert_eq!((&p.topic[..], &p.payload[..], p.qos), (&b"codec/1"[..], &b"payload-2"[..], QoS::ExactlyOnce));
                if v5 {
                    assert_eq!(p.properties.subscription_identifiers, [7]);
                }
                let id = p.packet_id.unwrap();
                delivered = Some(id);
                c.send(Packet::PubRec(Ack::new(id)));
            }
            Packet::PubRel(a) if Some(a.packet_id) == delivered => {
                released = true;
                c.send(Packet::PubComp(Ack::new(a.packet_id)));
            }
            other => panic!("unexpected {other:?}"),
        }
        if completed && released {
            break;
        }
    }
    assert!(completed && released && delivered.is_some(), "QoS 2 both ways");

    // An alias alone now stands for the topic (5.0).
    if v5 {
        let mut aliased = Publish::new(Bytes::new(), QoS::AtLeastOnce, "by-alias");
        aliased.packet_id = Some(43);
        aliased.properties.topic_alias = Some(1);
        c.send(Packet::Publish(aliased));
        let mut seen = Vec::new();
        for _ in 0..2 {
            seen.push(c.recv());
        }
        assert!(seen.iter().any(|p| matches!(p, Packet::PubAck(a) if a.packet_id == 43)), "{seen:?}");
        assert!(
            seen.iter().any(|p| matches!(p, Packet::Publish(q) if &q.topic[..] == b"codec/1" && &q.payload[..] == b"by-alias")),
            "{seen:?}"
        );
        for p in &seen {
            if let Packet::Publish(q) = p {
                c.send(Packet::PubAck(Ack::new(q.packet_id.unwrap())));
            }
        }
    }

    c.send(Packet::PingReq);
    assert_eq!(c.recv(), Packet::PingResp);
    c.send(Packet::Disconnect(Disconnect::normal()));
}

#[test]
fn our_codec_speaks_with_mosquitto_in_both_versions() {
    let dir = TestDir::new("mqtt-codec").unwrap();
    let broker = Mosquitto::start(&dir, "broker").unwrap();
    session(broker.port, Version::V311);
    session(broker.port, Version::V5);
}
