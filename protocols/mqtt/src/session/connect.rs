//! CONNECT and CONNACK: the client's CONNECT sent to every broker of the table at once (each
//! its own copy: one client identifier everywhere, the will only where its topic lives, a share
//! of the Receive Maximum, no Topic Alias Maximum), and the brokers' CONNACKs merged.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use geomesh_core::ClusterId;
use geomesh_kit::{Ctx, Part, PartSend, Plan};

use super::{replies, Mqtt, MqttMerge};
use crate::alias::InboundAliases;
use crate::merge::{merge_connacks, ProxyOffer};
use crate::packet::{ConnAck, Packet, Version};
use crate::replay::{check_connect, ReplayPlan};
use crate::Decoded;

/// Connections of this VM so far: with the time, what an assigned client identifier is made
/// from.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// splitmix64's finaliser: every input bit moves every output bit.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What an assigned client identifier is made from: the connection's seed (unique per
/// connection across VMs, given by the filter), the time and this VM's connection count.
fn entropy(seed: u64, now: u64) -> u64 {
    let n = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    let z = mix(seed ^ 0x9E37_79B9_7F4A_7C15) ^ now.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    mix(z ^ mix(n.wrapping_add(0x632B_E59B_D9B4_E019)))
}

impl Mqtt {
    pub(super) fn plan_connect(&mut self, request: Decoded, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        let Packet::Connect(connect) = request.packet else {
            return Plan::Done;
        };
        let version = connect.version;
        if let Err((reason, text)) = check_connect(&connect) {
            self.refused = true;
            return Plan::Close(replies::connack_refusal(version, reason, text));
        }
        let table = cx.table().clone();
        let brokers = table.active_clusters().to_vec();
        let plan = ReplayPlan::new(&connect, &table, &brokers, entropy(self.seed, cx.now()));
        if version == Version::V5 {
            self.aliases = InboundAliases::new(self.topic_alias_maximum);
            let limit = connect.properties.receive_maximum.unwrap_or(u16::MAX);
            self.window = crate::flow::SendWindow::new(limit, self.max_held.0, self.max_held.1);
        }
        self.connect = Some((connect, plan));
        let now = cx.now();
        let mut parts = Vec::with_capacity(brokers.len());
        for b in brokers {
            let Some(bytes) = self.connect_bytes(b) else {
                self.refused = true;
                return Plan::Close(replies::connack_refusal(
                    version,
                    crate::ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
                    replies::CONNECT_TOO_LARGE,
                ));
            };
            parts.push(PartSend::new(b, bytes.to_vec()));
        }
        cx.dispatch(parts, MqttMerge::Connack, cx.budget());
        for b in table.active_clusters() {
            if let Some(l) = cx.open_link(*b) {
                l.last_sent = now;
            }
        }
        Plan::Done
    }

    /// The CONNECT as `broker` gets it (`None` before the client's CONNECT, or if it cannot be
    /// encoded).
    pub(super) fn connect_bytes(&self, broker: ClusterId) -> Option<Bytes> {
        let (connect, plan) = self.connect.as_ref()?;
        let c = plan.connect_for(connect, broker);
        Packet::Connect(Box::new(c)).to_bytes(connect.version).ok()
    }

    pub(super) fn merge_connack(&mut self, parts: &[Part<Decoded>]) -> Bytes {
        let version = self.version();
        let answers: Vec<ConnAck> = parts
            .iter()
            .filter_map(|p| match p.answer.as_ref().map(|a| &a.packet) {
                Some(Packet::ConnAck(c)) => Some(c.clone()),
                _ => None,
            })
            .collect();
        if answers.len() != parts.len() {
            self.refused = true;
            return replies::connack_refusal(
                version,
                crate::ReasonCode::SERVER_UNAVAILABLE,
                replies::BROKER_NOT_CONNACK,
            );
        }
        let assigned = match &self.connect {
            Some((_, plan)) if plan.assigned && version == Version::V5 => {
                Some(plan.client_id.clone())
            }
            _ => None,
        };
        let offer = ProxyOffer {
            maximum_packet_size: self.limits.max_packet_size,
            topic_alias_maximum: self.topic_alias_maximum,
        };
        let merged = merge_connacks(version, &answers, offer, assigned);
        if version == Version::V5 {
            self.client_receive_max = merged.properties.receive_maximum.unwrap_or(u16::MAX);
        }
        if merged.code == 0 {
            self.connected = true;
        } else {
            self.refused = true;
        }
        Packet::ConnAck(merged)
            .to_bytes(version)
            .unwrap_or_default()
    }
}
