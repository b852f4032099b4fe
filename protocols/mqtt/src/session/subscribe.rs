//! SUBSCRIBE and UNSUBSCRIBE: each filter to every broker that can carry a matching topic and
//! to no other (`$share/GROUP/...` under the same group on each, `$SYS/...` on the local
//! cluster), one packet per broker with its own identifier; the SUBACKs (UNSUBACKs) merged
//! per filter: refused if any broker refused, else the lowest granted QoS. Invalid filters are
//! answered by the proxy (0x8F; 3.1.1: 0x80).

use bytes::Bytes;
use geomesh_core::ClusterId;
use geomesh_kit::{Ctx, Part, PartSend, Plan};

use super::{ack_key, replies, Mqtt, MqttMerge};
use crate::merge::AckMerge;
use crate::packet::{Packet, PacketType, SubAck, Subscribe, UnsubAck, Unsubscribe, Version};
use crate::packet_ids::{FlowError, FlowKind};
use crate::reason::ReasonCode;
use crate::route::subscription_clusters;
use crate::Decoded;

impl Mqtt {
    pub(super) fn plan_subscribe(
        &mut self,
        request: Decoded,
        cx: &mut Ctx<'_, Self>,
    ) -> Plan<Self> {
        let version = self.version();
        let (client_id, filters, unsubscribe): (u16, Vec<&[u8]>, bool) = match &request.packet {
            Packet::Subscribe(s) => (
                s.packet_id,
                s.filters.iter().map(|f| &f.filter[..]).collect(),
                false,
            ),
            Packet::Unsubscribe(u) => (
                u.packet_id,
                u.filters.iter().map(|f| &f[..]).collect(),
                true,
            ),
            _ => return Plan::Done,
        };
        let mut acks = if unsubscribe {
            AckMerge::unsubscribe(filters.len())
        } else {
            AckMerge::subscribe(filters.len())
        };
        let mut per: Vec<(ClusterId, Vec<usize>)> = Vec::new();
        for (i, f) in filters.iter().enumerate() {
            match subscription_clusters(cx.table(), f) {
                Ok(clusters) => {
                    match &request.packet {
                        Packet::Subscribe(s) => {
                            let kept = s
                                .filters
                                .get(i)
                                .is_some_and(|sub| self.subs.add(sub, &s.properties, &clusters));
                            if !kept {
                                acks.answer_locally(i, ReasonCode::QUOTA_EXCEEDED.0);
                                continue;
                            }
                        }
                        _ => self.subs.remove(f),
                    }
                    for c in clusters {
                        acks.expect(i);
                        match per.iter_mut().find(|(pc, _)| *pc == c) {
                            Some((_, v)) => v.push(i),
                            None => per.push((c, vec![i])),
                        }
                    }
                }
                Err(code) => acks.answer_locally(i, code.0),
            }
        }
        if per.is_empty() {
            return Plan::Local(ack_packet(version, client_id, acks, unsubscribe));
        }
        let brokers: Vec<ClusterId> = per.iter().map(|(c, _)| *c).collect();
        let kind = if unsubscribe {
            FlowKind::Unsubscribe
        } else {
            FlowKind::Subscribe
        };
        let legs = match self.flows.start(client_id, kind, &brokers) {
            Ok(legs) => legs,
            Err(FlowError::InUse) => {
                // Reusing an identifier in flight breaks 2.2.1; 0x91 is no DISCONNECT reason
                // code (3.14.2.1), and a SUBACK under that identifier would answer both.
                return Plan::Close(replies::disconnect(
                    version,
                    ReasonCode::PROTOCOL_ERROR,
                    replies::ID_IN_USE,
                ))
            }
            Err(FlowError::Exhausted) => {
                return Plan::Close(replies::disconnect(
                    version,
                    ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    replies::TOO_MANY_FLOWS,
                ))
            }
        };
        let mut parts = Vec::with_capacity(per.len());
        let mut indices = Vec::with_capacity(per.len());
        for ((cluster, idx), (_, broker_id)) in per.into_iter().zip(legs) {
            let packet = match &request.packet {
                Packet::Subscribe(s) => Packet::Subscribe(Subscribe {
                    packet_id: broker_id,
                    properties: s.properties.clone(),
                    filters: idx
                        .iter()
                        .filter_map(|i| s.filters.get(*i).cloned())
                        .collect(),
                }),
                Packet::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe {
                    packet_id: broker_id,
                    properties: u.properties.clone(),
                    filters: idx
                        .iter()
                        .filter_map(|i| u.filters.get(*i).cloned())
                        .collect(),
                }),
                _ => return Plan::Done,
            };
            let Ok(bytes) = packet.to_bytes(version) else {
                return Plan::Close(replies::disconnect(
                    version,
                    ReasonCode::PACKET_TOO_LARGE,
                    replies::UNEXPECTED_PACKET,
                ));
            };
            self.reach(cx, cluster);
            let mut part = PartSend::new(cluster, bytes.to_vec());
            let answer = if unsubscribe {
                PacketType::UnsubAck
            } else {
                PacketType::SubAck
            };
            part.key = Some(ack_key(answer, broker_id));
            parts.push(part);
            indices.push(idx);
        }
        let merge = MqttMerge::Subscribe {
            acks,
            indices,
            client_id,
            unsubscribe,
        };
        cx.dispatch(parts, merge, cx.budget());
        Plan::Done
    }
}

fn ack_packet(version: Version, client_id: u16, acks: AckMerge, unsubscribe: bool) -> Bytes {
    let reasons = acks.finish(version);
    let packet = if unsubscribe {
        Packet::UnsubAck(UnsubAck {
            packet_id: client_id,
            properties: Default::default(),
            reasons,
        })
    } else {
        Packet::SubAck(SubAck {
            packet_id: client_id,
            properties: Default::default(),
            reasons,
        })
    };
    packet.to_bytes(version).unwrap_or_default()
}

/// The brokers' SUBACKs (UNSUBACKs) as the client's one.
pub(super) fn merge(
    version: Version,
    acks: &mut AckMerge,
    indices: &[Vec<usize>],
    client_id: u16,
    unsubscribe: bool,
    parts: &[Part<Decoded>],
) -> Bytes {
    let mut acks = std::mem::replace(acks, AckMerge::subscribe(0));
    for (part, idx) in parts.iter().zip(indices) {
        let codes: Option<&[u8]> = match part.answer.as_ref().map(|a| &a.packet) {
            Some(Packet::SubAck(s)) if !unsubscribe => Some(&s.reasons),
            Some(Packet::UnsubAck(u)) if unsubscribe => Some(&u.reasons),
            _ => None,
        };
        match codes {
            Some(c) if acks.add(idx, c).is_ok() => {}
            _ => acks.fail(idx),
        }
    }
    ack_packet(version, client_id, acks, unsubscribe)
}
