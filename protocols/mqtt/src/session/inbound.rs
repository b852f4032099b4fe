//! What the brokers send: acknowledgements matched to the client's flows by the broker's packet
//! identifier, PUBLISHes and PUBRELs fanned in to the client with identifiers numbered on the
//! client connection (identifiers of different brokers never collide), retained messages only
//! from the broker that owns their topic; and the client's PUBACK/PUBREC/PUBCOMP for those,
//! carried back to the broker that sent the PUBLISH under its own identifier.

use bytes::BytesMut;
use geomesh_core::ClusterId;
use geomesh_kit::{Ctx, Disposition, Plan};

use super::{ack_key, Mqtt};
use crate::packet::{Packet, PacketType};
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
            let Some(client_id) = m.server_flows.publish(cluster, broker_id, p.qos) else {
                return Disposition::Broken(TOO_MANY_FROM_BROKER.into());
            };
            patched(answer, client_id)
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
        if let Some((broker, broker_id)) = self.server_flows.client_ack(client_id, kind) {
            if cx.is_open(broker) {
                let mut out = BytesMut::new();
                request.write_with_packet_id(broker_id, &mut out);
                self.send_only(cx, broker, &out);
            }
        }
        Plan::Done
    }
}
