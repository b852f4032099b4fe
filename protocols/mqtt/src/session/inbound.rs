//! What the brokers send: acknowledgements matched to the client's flows by the broker's packet
//! identifier, PUBLISHes and PUBRELs fanned in to the client with identifiers numbered on the
//! client connection (identifiers of different brokers never collide), retained messages only
//! from the broker that owns their topic; and the client's PUBACK/PUBREC/PUBCOMP for those,
//! carried back to the broker that sent the PUBLISH under its own identifier.
//!
//! **The client's Receive Maximum** (5.0) holds for all brokers together: each broker's
//! CONNECT carries its share of it (`crate::flow::receive_maximum_shares`), and the proxy
//! counts what is in flight to the client itself (`SendWindow`): a QoS 1/2 PUBLISH beyond the
//! client's value is held (at most `mqtt.max_held_publishes` and `max_held_bytes`: brokers
//! overshoot their shares) and sent when the client's PUBACK, PUBCOMP or refusing PUBREC
//! frees a slot; a broker overflowing that bound breaks its link (the client is disconnected
//! naming it).

use bytes::BytesMut;
use geomesh_core::ClusterId;
use geomesh_kit::{Ctx, Disposition, Plan};

use super::{ack_key, Mqtt};
use crate::packet::{Packet, PacketType};
use crate::flow::BROKER_OVER_SHARE;
use crate::packet_ids::{BrokerAck, ClientAckKind};
use crate::route::publish_cluster;
use crate::Decoded;

/// Prefix of the message of a broker stream that makes no sense (the packet type follows).
pub const UNEXPECTED_FROM_BROKER: &str = "unexpected packet from the broker: ";
/// A broker sent more QoS 1/2 messages than identifiers.
pub const TOO_MANY_FROM_BROKER: &str = "more QoS 1/2 messages in flight than identifiers";

pub(super) fn classify(m: &mut Mqtt, cluster: ClusterId, answer: &Decoded) -> Disposition {
    let keyed = |m: &mut Mqtt, id: u16, ack: BrokerAck, kind: PacketType| match m
        .flows
        .broker_ack(cluster, id, ack)
    {
        Some(_) => Disposition::Keyed(ack_key(kind, id)),
        // An acknowledgement of nothing under way (a duplicate): nothing for the client.
        None => Disposition::Drop,
    };
    match &answer.packet {
        Packet::ConnAck(_) => Disposition::Answer,
        Packet::PubAck(a) => keyed(m, a.packet_id, BrokerAck::PubAck, PacketType::PubAck),
        Packet::PubRec(a) => keyed(
            m,
            a.packet_id,
            BrokerAck::PubRec { reason: a.reason },
            PacketType::PubRec,
        ),
        Packet::PubComp(a) => keyed(m, a.packet_id, BrokerAck::PubComp, PacketType::PubComp),
        // The proxy's own re-subscriptions (a new routing table): nothing for the client.
        Packet::SubAck(s) if m.flows.proxy_ack(cluster, s.packet_id) => Disposition::Drop,
        Packet::UnsubAck(u) if m.flows.proxy_ack(cluster, u.packet_id) => Disposition::Drop,
        Packet::SubAck(s) => keyed(m, s.packet_id, BrokerAck::SubAck, PacketType::SubAck),
        Packet::UnsubAck(u) => keyed(m, u.packet_id, BrokerAck::UnsubAck, PacketType::UnsubAck),
        Packet::Publish(p) => {
            if p.retain && publish_cluster(&m.table, &p.topic, &p.payload) != cluster {
                // A retained message on a broker that no longer owns its topic: stale.
                return Disposition::Drop;
            }
            let Some(broker_id) = p.packet_id else {
                return Disposition::Push(answer.raw().clone());
            };
            let retransmission = m.server_flows.knows(cluster, broker_id);
            let Some(client_id) = m.server_flows.publish(cluster, broker_id, p.qos) else {
                return Disposition::Broken(TOO_MANY_FROM_BROKER.into());
            };
            let mut out = BytesMut::new();
            answer.write_with_packet_id(client_id, &mut out);
            if retransmission {
                // Counted in the window when it first came.
                return Disposition::Push(out.freeze());
            }
            let size = out.len();
            match m.window.offer(out.freeze(), size) {
                Ok(Some(bytes)) => Disposition::Push(bytes),
                // Held until the client acknowledges one of those in flight.
                Ok(None) => Disposition::Drop,
                Err(_) => Disposition::Broken(BROKER_OVER_SHARE.into()),
            }
        }
        Packet::PubRel(a) => match m.server_flows.broker_pubrel(cluster, a.packet_id) {
            Some(client_id) => patched(answer, client_id),
            None => Disposition::Drop,
        },
        Packet::PingResp => Disposition::Drop,
        Packet::Disconnect(_) => {
            m.broker_disconnect = Some((cluster, answer.packet.clone()));
            Disposition::Broken(format!("{UNEXPECTED_FROM_BROKER}DISCONNECT"))
        }
        other => Disposition::Broken(format!(
            "{UNEXPECTED_FROM_BROKER}{}",
            other.packet_type().name()
        )),
    }
}

fn patched(answer: &Decoded, client_id: u16) -> Disposition {
    let mut out = BytesMut::new();
    answer.write_with_packet_id(client_id, &mut out);
    Disposition::Push(out.freeze())
}

impl Mqtt {
    /// The client's PUBACK, PUBREC or PUBCOMP for a broker's PUBLISH: to that broker, under its
    /// identifier; nothing comes back but the broker's PUBREL after a PUBREC.
    pub(super) fn plan_client_ack(
        &mut self,
        request: Decoded,
        cx: &mut Ctx<'_, Self>,
    ) -> Plan<Self> {
        let (client_id, kind) = match &request.packet {
            Packet::PubAck(a) => (a.packet_id, ClientAckKind::PubAck),
            Packet::PubRec(a) => (a.packet_id, ClientAckKind::PubRec { reason: a.reason }),
            Packet::PubComp(a) => (a.packet_id, ClientAckKind::PubComp),
            _ => return Plan::Done,
        };
        let Some(ack) = self.server_flows.acknowledge(client_id, kind) else {
            return Plan::Done;
        };
        if let Some((broker, broker_id)) = ack.forward {
            if cx.is_open(broker) {
                let mut out = BytesMut::new();
                request.write_with_packet_id(broker_id, &mut out);
                self.send_only(cx, broker, &out);
            }
        }
        if ack.ended {
            if let Some(held) = self.window.acknowledged() {
                // A slot of the client's Receive Maximum is free: the oldest PUBLISH held.
                cx.release(held);
            }
        }
        Plan::Done
    }
}
