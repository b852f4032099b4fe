//! Packet generators, and the differential oracle (`oracle.rs`), shared by the property tests.
#![allow(dead_code)]

mod oracle;

use bytes::Bytes;
use geomesh_mqtt::*;
use proptest::prelude::*;

pub use oracle::*;

// ---- generators -----------------------------------------------------------------------------

fn text(re: &'static str) -> impl Strategy<Value = Bytes> {
    proptest::string::string_regex(re).unwrap().prop_map(Bytes::from)
}

fn opt<T: std::fmt::Debug + Clone>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(0.3, s)
}

/// Properties with every field possibly set; [`only`] then keeps what a packet may carry.
pub fn any_properties() -> BoxedStrategy<Properties> {
    let a = (
        opt(0..=1u8),
        opt(any::<u32>()),
        opt(text("[a-z/]{0,8}")),
        opt(text("[a-z/]{1,8}")),
        opt(prop::collection::vec(any::<u8>(), 0..6).prop_map(Bytes::from)),
        prop::collection::vec(1..=268_435_455u32, 0..3),
        opt(any::<u32>()),
        opt(text("[a-zA-Z0-9]{0,10}")),
        opt(any::<u16>()),
    );
    let b = (
        opt(text("[A-Z0-9-]{1,8}")),
        opt(prop::collection::vec(any::<u8>(), 0..6).prop_map(Bytes::from)),
        opt(0..=1u8),
        opt(any::<u32>()),
        opt(0..=1u8),
        opt(text("[a-z]{0,6}")),
        opt(text("[a-z:0-9]{0,8}")),
        opt(text("[ -~]{0,12}")),
        opt(1..=u16::MAX),
    );
    let c = (
        opt(any::<u16>()),
        opt(1..=u16::MAX),
        opt(0..=1u8),
        opt(0..=1u8),
        prop::collection::vec((text("[a-z]{0,4}"), text("[ -~é]{0,6}")), 0..3),
        opt(1..=u32::MAX),
        opt(0..=1u8),
        opt(0..=1u8),
        opt(0..=1u8),
    );
    (a, b, c).prop_map(|(a, b, c)| Properties {
        payload_format_indicator: a.0,
        message_expiry_interval: a.1,
        content_type: a.2,
        response_topic: a.3,
        correlation_data: a.4,
        subscription_identifiers: a.5,
        session_expiry_interval: a.6,
        assigned_client_identifier: a.7,
        server_keep_alive: a.8,
        authentication_method: b.0,
        authentication_data: b.1,
        request_problem_information: b.2,
        will_delay_interval: b.3,
        request_response_information: b.4,
        response_information: b.5,
        server_reference: b.6,
        reason_string: b.7,
        receive_maximum: b.8,
        topic_alias_maximum: c.0,
        topic_alias: c.1,
        maximum_qos: c.2,
        retain_available: c.3,
        user_properties: c.4,
        maximum_packet_size: c.5,
        wildcard_subscription_available: c.6,
        subscription_identifier_available: c.7,
        shared_subscription_available: c.8,
    })
    .boxed()
}

/// Where a properties section sits (table 2-4 of MQTT 5.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctx {
    Connect,
    ConnAck,
    Publish,
    Will,
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

/// `p` with only the properties `ctx` allows.
pub fn only(p: Properties, ctx: Ctx) -> Properties {
    use Ctx::*;
    let keep = |ok: &[Ctx]| ok.contains(&ctx);
    let msg = [Publish, Will];
    Properties {
        payload_format_indicator: p.payload_format_indicator.filter(|_| keep(&msg)),
        message_expiry_interval: p.message_expiry_interval.filter(|_| keep(&msg)),
        content_type: p.content_type.filter(|_| keep(&msg)),
        response_topic: p.response_topic.filter(|_| keep(&msg)),
        correlation_data: p.correlation_data.filter(|_| keep(&msg)),
        subscription_identifiers: match ctx {
            Publish => p.subscription_identifiers,
            Subscribe => p.subscription_identifiers.into_iter().take(1).collect(),
            _ => Vec::new(),
        },
        session_expiry_interval: p.session_expiry_interval.filter(|_| keep(&[Connect, ConnAck, Disconnect])),
        assigned_client_identifier: p.assigned_client_identifier.filter(|_| keep(&[ConnAck])),
        server_keep_alive: p.server_keep_alive.filter(|_| keep(&[ConnAck])),
        authentication_method: p.authentication_method.filter(|_| keep(&[Connect, ConnAck, Auth])),
        authentication_data: p.authentication_data.filter(|_| keep(&[Connect, ConnAck, Auth])),
        request_problem_information: p.request_problem_information.filter(|_| keep(&[Connect])),
        will_delay_interval: p.will_delay_interval.filter(|_| keep(&[Will])),
        request_response_information: p.request_response_information.filter(|_| keep(&[Connect])),
        response_information: p.response_information.filter(|_| keep(&[ConnAck])),
        server_reference: p.server_reference.filter(|_| keep(&[ConnAck, Disconnect])),
        reason_string: p.reason_string.filter(|_| keep(&[ConnAck, Ack, SubAck, UnsubAck, Disconnect, Auth])),
        receive_maximum: p.receive_maximum.filter(|_| keep(&[Connect, ConnAck])),
        topic_alias_maximum: p.topic_alias_maximum.filter(|_| keep(&[Connect, ConnAck])),
        topic_alias: p.topic_alias.filter(|_| keep(&[Publish])),
        maximum_qos: p.maximum_qos.filter(|_| keep(&[ConnAck])),
        retain_available: p.retain_available.filter(|_| keep(&[ConnAck])),
        user_properties: p.user_properties,
        maximum_packet_size: p.maximum_packet_size.filter(|_| keep(&[Connect, ConnAck])),
        wildcard_subscription_available: p.wildcard_subscription_available.filter(|_| keep(&[ConnAck])),
        subscription_identifier_available: p.subscription_identifier_available.filter(|_| keep(&[ConnAck])),
        shared_subscription_available: p.shared_subscription_available.filter(|_| keep(&[ConnAck])),
    }
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn props_for(v: Version, ctx: Ctx) -> BoxedStrategy<Properties> {
    any_properties().prop_map(move |p| if v == Version::V5 { only(p, ctx) } else { Properties::default() }).boxed()
}

fn topic() -> impl Strategy<Value = Bytes> {
    text("[a-z0-9$/ é]{1,16}")
}

fn filter() -> impl Strategy<Value = Bytes> {
    prop_oneof![topic(), Just(Bytes::from_static(b"#")), Just(Bytes::from_static(b"a/+/b")), Just(Bytes::from_static(b"$share/g/x/#"))]
}

fn reasons(list: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    prop::sample::select(list).prop_map(ReasonCode)
}

pub fn connect(v: Version) -> BoxedStrategy<Packet> {
    let will = (qos(), any::<bool>(), props_for(v, Ctx::Will), topic(), prop::collection::vec(any::<u8>(), 0..8))
        .prop_map(|(qos, retain, properties, topic, payload)| Will { qos, retain, properties, topic, payload: payload.into() });
    (
        any::<bool>(),
        any::<u16>(),
        props_for(v, Ctx::Connect),
        text("[a-zA-Z0-9-]{0,23}"),
        opt(will),
        opt((text("[a-z]{0,8}"), opt(text("[a-z0-9]{0,8}")))),
    )
        .prop_map(move |(clean_start, keep_alive, properties, client_id, will, login)| {
            Packet::Connect(Box::new(Connect {
                version: v,
                clean_start,
                keep_alive,
                properties,
                client_id,
                will,
                username: login.as_ref().map(|l| l.0.clone()),
                password: login.and_then(|l| l.1),
            }))
        })
        .boxed()
}

pub fn publish(v: Version, ctx: Ctx) -> BoxedStrategy<Packet> {
    (any::<bool>(), qos(), any::<bool>(), topic(), 1..=u16::MAX, props_for(v, ctx), prop::collection::vec(any::<u8>(), 0..32))
        .prop_map(|(dup, qos, retain, topic, id, properties, payload)| {
            Packet::Publish(Publish {
                dup: dup && qos != QoS::AtMostOnce,
                qos,
                retain,
                topic,
                packet_id: (qos != QoS::AtMostOnce).then_some(id),
                properties: Box::new(properties),
                payload: payload.into(),
            })
        })
        .boxed()
}

fn ack(v: Version, list: &'static [u8]) -> impl Strategy<Value = Ack> {
    (1..=u16::MAX, reasons(list), props_for(v, Ctx::Ack)).prop_map(move |(packet_id, reason, properties)| Ack {
        packet_id,
        reason: if v == Version::V5 { reason } else { ReasonCode::SUCCESS },
        properties: Box::new(properties),
    })
}

const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_CODES: &[u8] = &[0x00, 0x92];

pub fn client_packet(v: Version) -> BoxedStrategy<Packet> {
    let sub_opts = (qos(), any::<bool>(), any::<bool>(), 0..3u8).prop_map(move |(qos, nl, rap, rh)| {
        if v == Version::V311 {
            SubscribeOptions::qos(qos)
        } else {
            SubscribeOptions {
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling: [RetainHandling::OnSubscribe, RetainHandling::OnNewSubscribe, RetainHandling::Never][rh as usize],
            }
        }
    });
    let subscribe = (1..=u16::MAX, props_for(v, Ctx::Subscribe), prop::collection::vec((filter(), sub_opts), 1..4))
        .prop_map(|(packet_id, properties, fs)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties: Box::new(properties),
                filters: fs
                    .into_iter()
                    .map(|(filter, mut options)| {
                        if filter.starts_with(b"$share/") {
                            options.no_local = false;
                        }
                        Subscription { filter, options }
                    })
                    .collect(),
            })
        });
    let unsubscribe = (1..=u16::MAX, props_for(v, Ctx::Unsubscribe), prop::collection::vec(filter(), 1..4))
        .prop_map(|(packet_id, properties, filters)| Packet::Unsubscribe(Unsubscribe { packet_id, properties: Box::new(properties), filters }));
    let disconnect = (reasons(&[0x00, 0x04, 0x80, 0x81, 0x8E, 0x95]), props_for(v, Ctx::Disconnect)).prop_map(move |(reason, properties)| {
        Packet::Disconnect(if v == Version::V5 { Disconnect { reason, properties: Box::new(properties) } } else { Disconnect::normal() })
    });
    prop_oneof![
        publish(v, Ctx::Publish).prop_map(|p| match p {
            Packet::Publish(mut p) => {
                p.properties.subscription_identifiers.clear();
                Packet::Publish(p)
            }
            other => other,
        }),
        ack(v, PUBACK_CODES).prop_map(Packet::PubAck),
        ack(v, PUBACK_CODES).prop_map(Packet::PubRec),
        ack(v, PUBREL_CODES).prop_map(Packet::PubRel),
        ack(v, PUBREL_CODES).prop_map(Packet::PubComp),
        subscribe,
        unsubscribe,
        Just(Packet::PingReq),
        disconnect,
    ]
    .boxed()
}

pub fn server_packet(v: Version) -> BoxedStrategy<Packet> {
    let connack = (any::<bool>(), prop::sample::select(&[0x00u8, 0x80, 0x84, 0x87, 0x9C][..]), props_for(v, Ctx::ConnAck))
        .prop_map(move |(sp, code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present: sp,
                code: if v == Version::V5 { code } else { code % 6 },
                properties: Box::new(properties),
            })
        });
    let suback = (1..=u16::MAX, props_for(v, Ctx::SubAck), prop::collection::vec(prop::sample::select(&[0u8, 1, 2, 0x80][..]), 1..5))
        .prop_map(|(packet_id, properties, reasons)| Packet::SubAck(SubAck { packet_id, properties: Box::new(properties), reasons }));
    let unsuback = (1..=u16::MAX, props_for(v, Ctx::UnsubAck), prop::collection::vec(prop::sample::select(&[0u8, 0x11, 0x80, 0x87][..]), 1..5))
        .prop_map(move |(packet_id, properties, reasons)| {
            Packet::UnsubAck(UnsubAck { packet_id, properties: Box::new(properties), reasons: if v == Version::V5 { reasons } else { Vec::new() } })
        });
    prop_oneof![
        connack,
        publish(v, Ctx::Publish),
        ack(v, PUBACK_CODES).prop_map(Packet::PubAck),
        ack(v, PUBREL_CODES).prop_map(Packet::PubRel),
        suback,
        unsuback,
        Just(Packet::PingResp),
    ]
    .boxed()
}
