//! The client's subscriptions and the brokers holding each, so that a routing table changed at
//! run time (ECDS) moves them: at the client's next packet after the change (at the latest its
//! keep-alive PINGREQ: the one time the filter can write to its brokers), each subscription is
//! made on the brokers the new table adds for its filter and removed from those it no longer
//! names, with identifiers of the proxy's own whose SUBACK/UNSUBACK end at the proxy.
//!
//! What a subscriber sees at the switch (protocols/mqtt/README.md, "A routing table changed at
//! run time"): every publisher's next PUBLISH follows the new table, so a message published on
//! a newly-owning broker before the subscriber's next packet is not delivered to it (a gap,
//! bounded by its keep-alive); nothing is delivered twice by the move (a broker the table no
//! longer names for a filter gets nothing new for it), except retained messages, which a
//! newly-owning broker sends for the new subscription as any broker does (Retain Handling as
//! the client asked), and which are dropped when they come from a broker that does not own
//! their topic.

use std::collections::BTreeMap;

use bytes::Bytes;
use geomesh_core::ClusterId;
use geomesh_kit::Ctx;

use super::Mqtt;
use crate::packet::{Packet, Subscribe, Subscription, Unsubscribe};
use crate::properties::Properties;
use crate::route::subscription_clusters;

/// Most subscriptions one client holds through the proxy (beyond: SUBACK 0x97 Quota exceeded;
/// 3.1.1: 0x80), so that what the proxy keeps per client is bounded.
pub const MAX_SUBSCRIPTIONS: usize = 16_384;

#[derive(Debug, Clone)]
struct Held {
    sub: Subscription,
    /// The SUBSCRIBE's properties (Subscription Identifier, User Properties).
    properties: Properties,
    /// The brokers holding it.
    clusters: Vec<ClusterId>,
}

/// The client's subscriptions by filter, and whether a new table may have moved them.
#[derive(Debug, Default)]
pub struct Subscriptions {
    held: BTreeMap<Bytes, Held>,
    table_changed: bool,
}

impl Subscriptions {
    /// The client subscribed to `sub` (replacing a subscription with the same filter), placed
    /// on `clusters`. `false` when it is a new filter and the client holds
    /// [`MAX_SUBSCRIPTIONS`] already.
    pub fn add(
        &mut self,
        sub: &Subscription,
        properties: &Properties,
        clusters: &[ClusterId],
    ) -> bool {
        if !self.held.contains_key(&sub.filter) && self.held.len() >= MAX_SUBSCRIPTIONS {
            return false;
        }
        let held = Held {
            sub: sub.clone(),
            properties: properties.clone(),
            clusters: clusters.to_vec(),
        };
        self.held.insert(sub.filter.clone(), held);
        true
    }

    /// The client unsubscribed from `filter`.
    pub fn remove(&mut self, filter: &[u8]) {
        self.held.remove(filter);
    }

    /// Subscriptions held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// The brokers holding the subscription to `filter`.
    pub fn clusters(&self, filter: &[u8]) -> Option<&[ClusterId]> {
        self.held.get(filter).map(|h| &h.clusters[..])
    }

    /// A new routing table is in force: the next client packet checks the placements.
    pub fn table_changed(&mut self) {
        self.table_changed = true;
    }
}

impl Mqtt {
    /// After a table change: each subscription made on the brokers that now carry its filter
    /// and removed from those that no longer do. Called before a client packet is planned.
    pub(super) fn resubscribe(&mut self, cx: &mut Ctx<'_, Self>) {
        if !std::mem::take(&mut self.subs.table_changed) || !self.connected {
            return;
        }
        let version = self.version();
        let mut sends: Vec<(ClusterId, Packet)> = Vec::new();
        for held in self.subs.held.values_mut() {
            let Ok(now) = subscription_clusters(cx.table(), &held.sub.filter) else {
                continue;
            };
            for &c in now.iter().filter(|c| !held.clusters.contains(c)) {
                let Some(id) = self.flows.start_proxy(c) else {
                    continue;
                };
                let s = Subscribe {
                    packet_id: id,
                    properties: Box::new(held.properties.clone()),
                    filters: vec![held.sub.clone()],
                };
                sends.push((c, Packet::Subscribe(s)));
            }
            for &c in held.clusters.iter().filter(|c| !now.contains(c)) {
                if !cx.is_open(c) {
                    continue;
                }
                let Some(id) = self.flows.start_proxy(c) else {
                    continue;
                };
                let u = Unsubscribe {
                    packet_id: id,
                    properties: Box::new(Properties::default()),
                    filters: vec![held.sub.filter.clone()],
                };
                sends.push((c, Packet::Unsubscribe(u)));
            }
            held.clusters = now;
        }
        for (c, p) in sends {
            if let Ok(bytes) = p.to_bytes(version) {
                cx.meter()
                    .pipeline(geomesh_core::metrics::PipelineStat::Replayed);
                self.send_only(cx, c, &bytes);
            }
        }
    }
}
