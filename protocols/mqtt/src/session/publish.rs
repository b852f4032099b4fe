//! Client PUBLISHes: aliases resolved, routed by topic and payload to one broker, QoS 1 and 2
//! identifiers remapped on that broker; PUBREL to the broker owning the QoS 2 flow; the
//! brokers' PUBACK/PUBREC/PUBCOMP back under the client's identifier. A retained PUBLISH also
//! clears the topic's retained message on every other broker it could have been stored on
//! (a value route, a routing table changed), so a subscriber never gets a stale one.

use bytes::{Bytes, BytesMut};
use geomesh_core::ClusterId;
use geomesh_kit::{Ctx, Part, PartSend, Plan};

use super::{ack_key, replies, Mqtt, MqttMerge};
use crate::packet::{Ack, Packet, PacketType, Publish, QoS, Version};
use crate::packet_ids::{FlowError, FlowKind};
use crate::reason::ReasonCode;
use crate::route::publish_cluster;
use crate::Decoded;

impl Mqtt {
    pub(super) fn plan_publish(&mut self, request: Decoded, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        let version = self.version();
        let Packet::Publish(p) = &request.packet else {
            return Plan::Done;
        };
        let mut resolved: Option<Publish> = None;
        if p.properties.topic_alias.is_some() {
            let mut q = p.clone();
            if let Err(e) = self.aliases.resolve(&mut q) {
                return Plan::Close(replies::disconnect(version, e.reason(), e.message()));
            }
            resolved = Some(q);
        }
        let p = resolved.as_ref().unwrap_or(p);
        let cluster = publish_cluster(cx.table(), &p.topic, &p.payload);
        if p.retain {
            self.clear_retained_elsewhere(cx, &p.topic, cluster);
        }
        let Some(client_id) = p.packet_id else {
            // QoS 0: nothing comes back.
            match &resolved {
                None => self.send_only(cx, cluster, request.raw()),
                Some(q) => {
                    let bytes = Packet::Publish(q.clone())
                        .to_bytes(version)
                        .unwrap_or_default();
                    self.send_only(cx, cluster, &bytes);
                }
            }
            return Plan::Done;
        };
        let resend = self.flows.contains(client_id);
        if !resend && self.flows.publishes() >= usize::from(self.client_receive_max) {
            // More in flight than the CONNACK allowed (3.3.4: DISCONNECT 0x93).
            return Plan::Close(replies::disconnect(
                version,
                ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                replies::CLIENT_OVER_RECEIVE_MAXIMUM,
            ));
        }
        let legs = match self
            .flows
            .start(client_id, FlowKind::Publish(p.qos), &[cluster])
        {
            Ok(legs) => legs,
            Err(FlowError::InUse) => {
                return self.refuse_publish(
                    p.qos,
                    client_id,
                    ReasonCode::PACKET_IDENTIFIER_IN_USE,
                    replies::ID_IN_USE,
                )
            }
            Err(FlowError::Exhausted) => {
                return Plan::Close(replies::disconnect(
                    version,
                    ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    replies::TOO_MANY_FLOWS,
                ))
            }
        };
        let Some(&(broker, broker_id)) = legs.first() else {
            return Plan::Done;
        };
        let mut out = BytesMut::new();
        match &resolved {
            None => {
                request.write_with_packet_id(broker_id, &mut out);
            }
            Some(q) => {
                let mut q = q.clone();
                q.packet_id = Some(broker_id);
                if Packet::Publish(q).encode(version, &mut out).is_err() {
                    return Plan::Close(replies::disconnect(
                        version,
                        ReasonCode::PACKET_TOO_LARGE,
                        replies::UNEXPECTED_PACKET,
                    ));
                }
            }
        }
        if resend {
            // A DUP resend goes where the first copy went; the first copy's answer answers it.
            self.send_only(cx, broker, &out);
            return Plan::Done;
        }
        self.reach(cx, broker);
        let mut part = PartSend::new(broker, out.to_vec());
        let answer = if p.qos == QoS::ExactlyOnce {
            PacketType::PubRec
        } else {
            PacketType::PubAck
        };
        part.key = Some(ack_key(answer, broker_id));
        cx.dispatch(vec![part], MqttMerge::Ack { client_id }, cx.budget());
        Plan::Done
    }

    /// Answers a QoS 1/2 PUBLISH the proxy will not carry with a refusing PUBACK/PUBREC (5.0);
    /// a 3.1.1 client is closed (it has no refusing acknowledgement).
    fn refuse_publish(
        &mut self,
        qos: QoS,
        client_id: u16,
        reason: ReasonCode,
        text: &str,
    ) -> Plan<Self> {
        let version = self.version();
        if version == Version::V311 {
            return Plan::Close(Bytes::new());
        }
        let mut ack = Ack::new(client_id);
        ack.reason = reason;
        ack.properties.reason_string = Some(Bytes::copy_from_slice(text.as_bytes()));
        let packet = if qos == QoS::ExactlyOnce {
            Packet::PubRec(ack)
        } else {
            Packet::PubAck(ack)
        };
        Plan::Refuse(packet.to_bytes(version).unwrap_or_default())
    }

    /// A retained PUBLISH for `topic` stored on `owner`: the other brokers that could hold a
    /// retained message for it get an empty retained PUBLISH (which deletes theirs).
    fn clear_retained_elsewhere(&mut self, cx: &mut Ctx<'_, Self>, topic: &[u8], owner: ClusterId) {
        let Some(holders) = cx.table().topic_filter_clusters(topic) else {
            return;
        };
        let mut clear = Publish::new(Bytes::copy_from_slice(topic), QoS::AtMostOnce, Bytes::new());
        clear.retain = true;
        let Ok(bytes) = Packet::Publish(clear).to_bytes(self.version()) else {
            return;
        };
        for c in holders.into_iter().filter(|c| *c != owner) {
            self.send_only(cx, c, &bytes);
        }
    }

    /// The client's PUBREL: to the broker owning the QoS 2 flow, under its identifier.
    pub(super) fn plan_pubrel(&mut self, request: Decoded, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        let Some(client_id) = request.packet.packet_id() else {
            return Plan::Done;
        };
        let Some((broker, broker_id)) = self.flows.client_pubrel(client_id) else {
            // Unknown flow (its broker was lost, or it ended): PUBCOMP "not found".
            let mut ack = Ack::new(client_id);
            ack.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
            return Plan::Local(
                Packet::PubComp(ack)
                    .to_bytes(self.version())
                    .unwrap_or_default(),
            );
        };
        let mut out = BytesMut::new();
        request.write_with_packet_id(broker_id, &mut out);
        self.reach(cx, broker);
        let mut part = PartSend::new(broker, out.to_vec());
        part.key = Some(ack_key(PacketType::PubComp, broker_id));
        cx.dispatch(vec![part], MqttMerge::Ack { client_id }, cx.budget());
        Plan::Done
    }
}

/// A broker's PUBACK, PUBREC or PUBCOMP under the client's identifier.
pub(super) fn merge_ack(client_id: u16, parts: &[Part<Decoded>]) -> Bytes {
    let Some(answer) = parts.first().and_then(|p| p.answer.as_ref()) else {
        return Bytes::new();
    };
    let mut out = BytesMut::new();
    answer.write_with_packet_id(client_id, &mut out);
    out.freeze()
}
