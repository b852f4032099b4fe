#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bytes::{BufMut, Bytes, BytesMut};

use super::*;
use crate::packet::*;
use crate::properties::Properties;
use crate::reason::ReasonCode;

fn props() -> Properties {
    Properties {
        reason_string: Some(Bytes::from_static(b"why")),
        user_properties: vec![(Bytes::from_static(b"k"), Bytes::from_static(b"v")), (Bytes::from_static(b"k"), Bytes::from_static(b"w"))],
        ..Properties::default()
    }
}

/// One packet of every type a client sends, then one of every type a server sends.
fn samples(v: Version) -> (Vec<Packet>, Vec<Packet>) {
    let v5 = v == Version::V5;
    let p = |x: Properties| if v5 { x } else { Properties::default() };
    let mut connect = Connect::new(v, "client-1");
    connect.keep_alive = 30;
    connect.clean_start = false;
    connect.username = Some(Bytes::from_static(b"user"));
    connect.password = Some(Bytes::from_static(b"\x00\xffpass"));
    connect.will = Some(Will {
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: p(Properties {
            will_delay_interval: Some(10),
            content_type: Some(Bytes::from_static(b"text/plain")),
            ..Properties::default()
        }),
        topic: Bytes::from_static(b"clients/1/status"),
        payload: Bytes::from_static(b"gone"),
    });
    connect.properties = p(Properties {
        session_expiry_interval: Some(3600),
        receive_maximum: Some(20),
        maximum_packet_size: Some(1 << 20),
        topic_alias_maximum: Some(10),
        request_problem_information: Some(1),
        ..Properties::default()
    });
    let mut publish = Publish::new("sensors/1/temp", QoS::AtLeastOnce, "21.5");
    publish.packet_id = Some(7);
    publish.retain = true;
    publish.dup = true;
    publish.properties = Box::new(p(Properties {
        topic_alias: Some(3),
        message_expiry_interval: Some(60),
        correlation_data: Some(Bytes::from_static(b"\x01\x02")),
        response_topic: Some(Bytes::from_static(b"reply/1")),
        payload_format_indicator: Some(1),
        ..Properties::default()
    }));
    let mut ack = Ack::new(7);
    if v5 {
        ack.reason = ReasonCode::NO_MATCHING_SUBSCRIBERS;
        ack.properties = Box::new(props());
    }
    let mut rel = Ack::new(8);
    if v5 {
        rel.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
    }
    let user_only = Properties { reason_string: None, ..props() };
    let subscribe = Subscribe {
        packet_id: 9,
        properties: Box::new(p(Properties {
            subscription_identifiers: vec![42],
            ..user_only.clone()
        })),
        filters: vec![
            Subscription { filter: Bytes::from_static(b"sensors/+/temp"), options: SubscribeOptions::qos(QoS::AtLeastOnce) },
            Subscription {
                filter: Bytes::from_static(b"$share/g/alerts/#"),
                options: SubscribeOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: false,
                    retain_as_published: v5,
                    retain_handling: if v5 { RetainHandling::Never } else { RetainHandling::OnSubscribe },
                },
            },
        ],
    };
    let unsubscribe = Unsubscribe {
        packet_id: 10,
        properties: Box::new(p(user_only)),
        filters: vec![Bytes::from_static(b"a/#"), Bytes::from_static(b"b")],
    };
    let mut client = vec![
        Packet::Connect(Box::new(connect)),
        Packet::Publish(publish.clone()),
        Packet::PubAck(ack.clone()),
        Packet::PubRec(ack.clone()),
        Packet::PubRel(rel.clone()),
        Packet::PubComp(rel.clone()),
        Packet::Subscribe(subscribe),
        Packet::Unsubscribe(unsubscribe),
        Packet::PingReq,
        Packet::Disconnect(if v5 {
            Disconnect { reason: ReasonCode::DISCONNECT_WITH_WILL, properties: Box::new(Properties { session_expiry_interval: Some(0), ..props() }) }
        } else {
            Disconnect::normal()
        }),
    ];
    let mut connack = ConnAck::accepted(true);
    connack.properties = Box::new(p(Properties {
        receive_maximum: Some(100),
        maximum_qos: Some(1),
        retain_available: Some(0),
        assigned_client_identifier: Some(Bytes::from_static(b"auto-1")),
        topic_alias_maximum: Some(5),
        wildcard_subscription_available: Some(1),
        subscription_identifier_available: Some(0),
        shared_subscription_available: Some(1),
        server_keep_alive: Some(120),
        response_information: Some(Bytes::from_static(b"resp")),
        server_reference: Some(Bytes::from_static(b"other:1883")),
        maximum_packet_size: Some(65536),
        ..props()
    }));
    let mut server_publish = publish;
    server_publish.properties = Box::new(p(Properties { subscription_identifiers: vec![1, 268_435_455], ..Properties::default() }));
    let mut server = vec![
        Packet::ConnAck(connack),
        Packet::Publish(server_publish),
        Packet::PubAck(ack.clone()),
        Packet::PubRec(ack),
        Packet::PubRel(rel.clone()),
        Packet::PubComp(rel),
        Packet::SubAck(SubAck { packet_id: 9, properties: Box::new(p(props())), reasons: vec![1, if v5 { 0x97 } else { 0x80 }] }),
        Packet::UnsubAck(UnsubAck {
            packet_id: 10,
            properties: Box::new(p(props())),
            reasons: if v5 { vec![0x00, 0x11] } else { vec![] },
        }),
        Packet::PingResp,
    ];
    if v5 {
        let auth = Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Box::new(Properties {
                authentication_method: Some(Bytes::from_static(b"SCRAM-SHA-1")),
                authentication_data: Some(Bytes::from_static(b"\x00data")),
                ..Properties::default()
            }),
        };
        client.push(Packet::Auth(auth.clone()));
        server.push(Packet::Auth(auth));
        server.push(Packet::Disconnect(Disconnect { reason: ReasonCode::SERVER_SHUTTING_DOWN, properties: Box::new(props()) }));
    }
    (client, server)
}

fn wire(v: Version, packets: &[Packet]) -> BytesMut {
    let mut out = BytesMut::new();
    for p in packets {
        p.encode(v, &mut out).unwrap();
    }
    out
}

fn decode_all(dec: &mut Decoder, wire: &[u8], cuts: &[usize]) -> Vec<Decoded> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts {
        buf.extend_from_slice(&wire[from..to]);
        from = to;
        while let Some(d) = dec.decode(&mut buf).unwrap() {
            out.push(d);
        }
    }
    assert!(buf.is_empty());
    out
}

#[test]
fn every_packet_round_trips_in_both_versions_whole_and_cut_at_every_byte() {
    for v in [Version::V311, Version::V5] {
        let (client, server) = samples(v);
        for (packets, mk) in [
            (&client, Box::new(|| Decoder::from_client(Limits::default())) as Box<dyn Fn() -> Decoder>),
            (&server, Box::new(move || Decoder::from_server(v, Limits::default()))),
        ] {
            let w = wire(v, packets);
            let whole = decode_all(&mut mk(), &w, &[w.len()]);
            assert_eq!(whole.iter().map(|d| d.packet.clone()).collect::<Vec<_>>(), *packets, "{v:?}");
            let mut offset = 0;
            for d in &whole {
                assert_eq!(&w[offset..offset + d.raw().len()], &d.raw()[..], "raw bytes are the packet's own");
                offset += d.raw().len();
            }
            let every: Vec<usize> = (1..=w.len()).collect();
            assert_eq!(decode_all(&mut mk(), &w, &every), whole, "{v:?}: one byte at a time");
        }
    }
}

#[test]
fn v5_fields_are_dropped_when_encoding_for_v311() {
    let (client, _) = samples(Version::V5);
    let Packet::Publish(p) = &client[1] else { panic!() };
    let w = Packet::Publish(p.clone()).to_bytes(Version::V311).unwrap();
    let mut dec = Decoder::from_server(Version::V311, Limits::default());
    let got = dec.decode(&mut BytesMut::from(&w[..])).unwrap().unwrap();
    let Packet::Publish(q) = got.packet else { panic!() };
    assert_eq!(q.properties, Box::new(Properties::default()));
    assert_eq!((q.topic, q.payload, q.packet_id), (p.topic.clone(), p.payload.clone(), p.packet_id));
}

#[test]
fn acks_use_the_short_forms_of_v5() {
    let enc = |a: Ack| Packet::PubAck(a).to_bytes(Version::V5).unwrap().to_vec();
    assert_eq!(enc(Ack::new(5)), [0x40, 2, 0, 5]);
    assert_eq!(enc(Ack { reason: ReasonCode::NO_MATCHING_SUBSCRIBERS, ..Ack::new(5) }), [0x40, 3, 0, 5, 0x10]);
    let d = Packet::Disconnect(Disconnect::normal()).to_bytes(Version::V5).unwrap();
    assert_eq!(&d[..], [0xe0, 0]);
    // And the long forms decode: reason with empty properties.
    let mut dec = Decoder::from_server(Version::V5, Limits::default());
    let got = dec.decode(&mut BytesMut::from(&[0x40, 4, 0, 5, 0x10, 0][..])).unwrap().unwrap();
    assert_eq!(got.packet, Packet::PubAck(Ack { reason: ReasonCode::NO_MATCHING_SUBSCRIBERS, ..Ack::new(5) }));
}

fn connected(v: Version) -> Decoder {
    let mut d = Decoder::from_client(Limits::default());
    let c = Packet::Connect(Box::new(Connect::new(v, "c"))).to_bytes(v).unwrap();
    d.decode(&mut BytesMut::from(&c[..])).unwrap().unwrap();
    assert_eq!(d.version(), Some(v));
    d
}

fn err(dec: &mut Decoder, bytes: &[u8]) -> Error {
    match dec.decode(&mut BytesMut::from(bytes)) {
        Err(e) => e,
        other => panic!("{bytes:02x?}: expected an error, got {other:?}"),
    }
}

#[test]
fn a_256_mb_remaining_length_is_refused_after_five_bytes() {
    let header = [0x30, 0xff, 0xff, 0xff, 0x7f];
    for cut in 1..header.len() {
        let mut d = connected(Version::V5);
        assert_eq!(d.decode(&mut BytesMut::from(&header[..cut])).unwrap(), None, "cut {cut}");
    }
    let e = err(&mut connected(Version::V5), &header);
    assert_eq!((e.reason(), e.message()), (ReasonCode::PACKET_TOO_LARGE, msg::PACKET_TOO_LARGE));
    assert_eq!(err(&mut connected(Version::V5), &[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).message(), msg::VARINT_TOO_LONG);
    // Exactly at the limit is awaited; one byte over is refused.
    let limits = Limits { max_packet_size: 100, ..Limits::default() };
    let mut d = Decoder::from_server(Version::V5, limits);
    assert_eq!(d.decode(&mut BytesMut::from(&[0x30, 98][..])).unwrap(), None);
    assert_eq!(err(&mut d, &[0x30, 99]).reason(), ReasonCode::PACKET_TOO_LARGE);
}

#[test]
fn garbage_and_phase_errors() {
    let mut d = Decoder::from_client(Limits::default());
    let e = err(&mut d, b"GET / HTTP/1.1\r\n");
    assert_eq!(e.reason(), ReasonCode::MALFORMED_PACKET, "type 4 (PUBACK) with flags 7");
    let e = err(&mut Decoder::from_client(Limits::default()), &[0x00]);
    assert_eq!(e.message(), msg::RESERVED_PACKET_TYPE);
    let e = err(&mut Decoder::from_client(Limits::default()), &[0xc0, 0x00]);
    assert_eq!((e.reason(), e.message()), (ReasonCode::PROTOCOL_ERROR, msg::FIRST_PACKET_NOT_CONNECT));
    let c = Packet::Connect(Box::new(Connect::new(Version::V5, "c"))).to_bytes(Version::V5).unwrap();
    assert_eq!(err(&mut connected(Version::V5), &c).message(), msg::SECOND_CONNECT);
    assert_eq!(err(&mut connected(Version::V5), &[0x20, 0x03, 0, 0, 0]).message(), msg::WRONG_DIRECTION, "CONNACK from a client");
    let mut s = Decoder::from_server(Version::V311, Limits::default());
    assert_eq!(err(&mut s, &[0x82, 0x05, 0, 1, 0, 1, b'a']).message(), msg::WRONG_DIRECTION, "SUBSCRIBE from a server");
    assert_eq!(err(&mut Decoder::from_server(Version::V311, Limits::default()), &[0xe0, 0]).message(), msg::WRONG_DIRECTION);
    assert_eq!(err(&mut connected(Version::V311), &[0xf0, 0]).message(), msg::RESERVED_PACKET_TYPE, "AUTH in 3.1.1");
    // MQTT 3.1 and unknown levels: unsupported version, answered with CONNACK 0x01.
    let mut v31 = BytesMut::new();
    v31.put_slice(&[0x10, 12, 0, 6]);
    v31.put_slice(b"MQIsdp");
    v31.put_slice(&[3, 2, 0, 60]);
    let e = err(&mut Decoder::from_client(Limits::default()), &v31);
    assert_eq!(e.reason(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
    assert!(matches!(e.reply(None, false), Some(Packet::ConnAck(ConnAck { code: 1, .. }))));
    let e = err(&mut Decoder::from_client(Limits::default()), &[0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 6, 2, 0, 60]);
    assert_eq!(e.message(), msg::UNSUPPORTED_VERSION);
}

#[test]
fn field_errors_map_to_their_reason_codes() {
    use ReasonCode as R;
    let v5 = Version::V5;
    let cases: &[(Version, &[u8], R, &str)] = &[
        (v5, &[0x32, 0x05, 0, 1, b'a', 0, 0], R::PROTOCOL_ERROR, msg::PACKET_ID_ZERO),
        (v5, &[0x36, 0x03, 0, 1, b'a'], R::MALFORMED_PACKET, msg::INVALID_QOS),
        (v5, &[0x38, 0x04, 0, 1, b'a', 0], R::MALFORMED_PACKET, msg::DUP_ON_QOS0),
        (v5, &[0x30, 0x04, 0, 1, b'+', 0], R::TOPIC_NAME_INVALID, msg::WILDCARD_IN_TOPIC),
        (v5, &[0x30, 0x03, 0, 0, 0], R::PROTOCOL_ERROR, msg::EMPTY_TOPIC),
        (Version::V311, &[0x30, 0x02, 0, 0], R::TOPIC_NAME_INVALID, msg::EMPTY_TOPIC),
        (v5, &[0x30, 0x05, 0, 1, b'a', 1, 0x26], R::MALFORMED_PACKET, msg::TRUNCATED),
        (v5, &[0x30, 0x06, 0, 1, b'a', 2, 0x12, 0], R::MALFORMED_PACKET, msg::UNKNOWN_PROPERTY),
        (v5, &[0x30, 0x08, 0, 1, b'a', 4, 0x01, 0, 0x01, 1], R::PROTOCOL_ERROR, msg::DUPLICATE_PROPERTY),
        (v5, &[0x30, 0x06, 0, 1, b'a', 2, 0x01, 2], R::PROTOCOL_ERROR, msg::PROPERTY_VALUE),
        (v5, &[0x30, 0x07, 0, 1, b'a', 3, 0x23, 0, 0], R::TOPIC_ALIAS_INVALID, msg::TOPIC_ALIAS_ZERO),
        (v5, &[0x30, 0x06, 0, 1, b'a', 2, 0x0b, 1], R::PROTOCOL_ERROR, msg::SUBSCRIPTION_ID_FROM_CLIENT),
        (v5, &[0x30, 0x05, 0, 2, 0xc3, 0x28, 0], R::MALFORMED_PACKET, msg::INVALID_UTF8),
        (v5, &[0x40, 0x03, 0, 1, 0x05], R::MALFORMED_PACKET, msg::BAD_REASON_CODE),
        (v5, &[0x40, 0x05, 0, 1, 0, 0, 0], R::MALFORMED_PACKET, msg::TRAILING_BYTES),
        (Version::V311, &[0x40, 0x03, 0, 1, 0], R::MALFORMED_PACKET, msg::TRAILING_BYTES),
        (v5, &[0x62, 0x02, 0, 1], R::SUCCESS, ""),
        (v5, &[0x60, 0x02, 0, 1], R::MALFORMED_PACKET, msg::BAD_FIXED_HEADER_FLAGS),
        (v5, &[0x82, 0x03, 0, 1, 0], R::PROTOCOL_ERROR, msg::NO_FILTERS),
        (v5, &[0x82, 0x07, 0, 1, 0, 0, 1, b'a', 0xc0], R::MALFORMED_PACKET, msg::SUBSCRIBE_RESERVED_BITS),
        (Version::V311, &[0x82, 0x06, 0, 1, 0, 1, b'a', 0x04], R::MALFORMED_PACKET, msg::SUBSCRIBE_RESERVED_BITS),
        (v5, &[0x82, 0x07, 0, 1, 0, 0, 1, b'a', 0x30], R::PROTOCOL_ERROR, msg::RETAIN_HANDLING_3),
        (v5, &[0x82, 0x07, 0, 1, 0, 0, 1, b'a', 0x03], R::MALFORMED_PACKET, msg::INVALID_QOS),
        (v5, &[0x82, 0x0d, 0, 1, 0, 0, 7, b'$', b's', b'h', b'a', b'r', b'e', b'/', 0x04], R::PROTOCOL_ERROR, msg::NO_LOCAL_ON_SHARED),
        (v5, &[0xc0, 0x01, 0], R::MALFORMED_PACKET, msg::NOT_EMPTY),
    ];
    for (v, bytes, reason, message) in cases {
        let mut d = connected(*v);
        let got = d.decode(&mut BytesMut::from(*bytes));
        if *reason == R::SUCCESS {
            assert!(got.unwrap().is_some(), "{bytes:02x?}");
            continue;
        }
        let e = got.expect_err(&format!("{bytes:02x?}"));
        assert_eq!((e.reason(), e.message()), (*reason, *message), "{bytes:02x?}");
    }
}

#[test]
fn limits_on_properties_user_properties_topics_and_filters() {
    let limits = Limits { max_user_properties: 2, max_properties_len: 40, max_topic_len: 4, max_topic_filters: 2, ..Limits::default() };
    let mut d = Decoder::from_client(limits);
    d.decode(&mut BytesMut::from(&Packet::Connect(Box::new(Connect::new(Version::V5, "c"))).to_bytes(Version::V5).unwrap()[..]))
        .unwrap()
        .unwrap();
    let publish = |props: Properties, topic: &'static [u8]| {
        let mut p = Publish::new(Bytes::from_static(topic), QoS::AtMostOnce, "x");
        p.properties = Box::new(props);
        BytesMut::from(&Packet::Publish(p).to_bytes(Version::V5).unwrap()[..])
    };
    let up = |n: usize| Properties {
        user_properties: (0..n).map(|_| (Bytes::from_static(b"k"), Bytes::from_static(b"v"))).collect(),
        ..Properties::default()
    };
    assert!(d.clone().decode(&mut publish(up(2), b"a")).unwrap().is_some());
    assert_eq!(d.clone().decode(&mut publish(up(3), b"a")).unwrap_err().message(), msg::TOO_MANY_USER_PROPERTIES);
    let long = Properties { content_type: Some(Bytes::from(vec![b'x'; 40])), ..Properties::default() };
    let e = d.clone().decode(&mut publish(long, b"a")).unwrap_err();
    assert_eq!((e.reason(), e.message()), (ReasonCode::PACKET_TOO_LARGE, msg::PROPERTIES_TOO_LONG));
    assert!(d.clone().decode(&mut publish(Properties::default(), b"abcd")).unwrap().is_some());
    let e = d.clone().decode(&mut publish(Properties::default(), b"abcde")).unwrap_err();
    assert_eq!((e.reason(), e.message()), (ReasonCode::TOPIC_NAME_INVALID, msg::TOPIC_TOO_LONG));
    let sub = |n: usize| {
        let s = Subscribe {
            packet_id: 1,
            properties: Box::new(Properties::default()),
            filters: (0..n).map(|_| Subscription { filter: Bytes::from_static(b"a"), options: SubscribeOptions::qos(QoS::AtMostOnce) }).collect(),
        };
        BytesMut::from(&Packet::Subscribe(s).to_bytes(Version::V5).unwrap()[..])
    };
    assert!(d.clone().decode(&mut sub(2)).unwrap().is_some());
    assert_eq!(d.clone().decode(&mut sub(3)).unwrap_err().message(), msg::TOO_MANY_FILTERS);
}

#[test]
fn packet_identifiers_are_patched_in_place() {
    let mut p = Publish::new("t/1", QoS::ExactlyOnce, "payload");
    p.packet_id = Some(0x0102);
    p.properties.topic_alias = Some(2);
    let raw = Packet::Publish(p.clone()).to_bytes(Version::V5).unwrap();
    let mut d = Decoder::from_server(Version::V5, Limits::default());
    let got = d.decode(&mut BytesMut::from(&raw[..])).unwrap().unwrap();
    let mut out = BytesMut::new();
    assert!(got.write_with_packet_id(0xbeef, &mut out));
    p.packet_id = Some(0xbeef);
    assert_eq!(&out[..], &Packet::Publish(p).to_bytes(Version::V5).unwrap()[..]);
    for packet in [
        Packet::PubRel(Ack::new(3)),
        Packet::SubAck(SubAck { packet_id: 3, properties: Box::new(Properties::default()), reasons: vec![0] }),
    ] {
        let raw = packet.to_bytes(Version::V5).unwrap();
        let got = d.decode(&mut BytesMut::from(&raw[..])).unwrap().unwrap();
        let mut out = BytesMut::new();
        assert!(got.write_with_packet_id(9, &mut out));
        assert_eq!(&out[2..4], &[0, 9]);
    }
    let q0 = Packet::Publish(Publish::new("t", QoS::AtMostOnce, "x")).to_bytes(Version::V5).unwrap();
    let got = d.decode(&mut BytesMut::from(&q0[..])).unwrap().unwrap();
    assert!(!got.write_with_packet_id(1, &mut BytesMut::new()));
}

#[test]
fn encode_refuses_what_the_wire_cannot_carry_and_appends_nothing() {
    let mut out = BytesMut::from(&b"keep"[..]);
    let p = Publish::new(Bytes::from(vec![b'a'; 70_000]), QoS::AtMostOnce, "x");
    assert_eq!(Packet::Publish(p).encode(Version::V5, &mut out).unwrap_err().message(), msg::STRING_TOO_LONG);
    let p = Publish::new("t", QoS::AtLeastOnce, "x");
    assert_eq!(Packet::Publish(p).encode(Version::V5, &mut out).unwrap_err().message(), msg::MISSING_PACKET_ID);
    let auth = Auth { reason: ReasonCode::SUCCESS, properties: Box::new(Properties::default()) };
    assert!(Packet::Auth(auth).encode(Version::V311, &mut out).is_err());
    assert_eq!(&out[..], b"keep");
}
