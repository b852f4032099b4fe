//! The client's CONNECT, replayed on each broker connection.
//!
//! One client through the proxy is one client on every broker: the same client identifier
//! (an empty one replaced by one the proxy picks, the same everywhere, and returned to a 5.0
//! client as Assigned Client Identifier), the same credentials, clean start, keep alive and
//! session expiry. What differs per broker:
//!
//! * **Will**: only the broker that owns the will topic (by the routing table, payload
//!   included, as a PUBLISH of it would go) gets the will; the others get the CONNECT without
//!   it. A lost client then publishes one will, where its subscribers listen.
//! * **Receive Maximum** (5.0): the broker's share of the client's ([`crate::flow`]).
//! * **Topic Alias Maximum** (5.0): none: brokers send full topics, the proxy routes them and
//!   aliases toward the client itself ([`crate::alias`]).

use bytes::Bytes;
use geomesh_core::{ClusterId, RoutingTable};

use crate::flow::receive_maximum_shares;
use crate::packet::{Connect, Version};
use crate::reason::ReasonCode;
use crate::route::publish_cluster;

/// A client identifier the proxy picks for a client that sent none: "geomesh" and 16
/// hexadecimal digits of `entropy` (23 characters of `[0-9a-zA-Z]`, what MQTT 3.1.1 servers
/// must accept).
pub fn assigned_client_id(entropy: u64) -> Bytes {
    Bytes::from(format!("geomesh{entropy:016x}"))
}

/// Refusal of a CONNECT the proxy cannot carry, worded as MQTT 5.0 reason codes (3.1.1
/// clients get the nearest return code, [`crate::reason::v311::connack_code`]).
pub const ENHANCED_AUTH_UNSUPPORTED: &str = "enhanced authentication is not carried over several brokers";
pub const EMPTY_ID_NEEDS_CLEAN_SESSION: &str = "an empty client identifier needs clean session (3.1.1)";

/// Checks that the proxy can carry `connect` to several brokers.
pub fn check_connect(connect: &Connect) -> Result<(), (ReasonCode, &'static str)> {
    if connect.properties.authentication_method.is_some() {
        // Each broker would run its own challenge; the client can answer one.
        return Err((ReasonCode::BAD_AUTHENTICATION_METHOD, ENHANCED_AUTH_UNSUPPORTED));
    }
    if connect.version == Version::V311 && connect.client_id.is_empty() && !connect.clean_start {
        return Err((ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, EMPTY_ID_NEEDS_CLEAN_SESSION));
    }
    Ok(())
}

/// How a CONNECT is replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPlan {
    /// The identifier every broker sees.
    pub client_id: Bytes,
    /// The proxy picked `client_id` (the client sent an empty one).
    pub assigned: bool,
    /// The broker that gets the will, if there is one.
    pub will_cluster: Option<ClusterId>,
    /// Receive Maximum per broker (5.0), in `brokers` order.
    pub shares: Vec<(ClusterId, u16)>,
}

impl ReplayPlan {
    /// Plans the replay of `connect` over `brokers` (the table's active clusters). `entropy`
    /// seeds an assigned identifier (connection id, time: the proxy is sans-IO).
    pub fn new(connect: &Connect, table: &RoutingTable, brokers: &[ClusterId], entropy: u64) -> Self {
        let assigned = connect.client_id.is_empty();
        let client_id = if assigned { assigned_client_id(entropy) } else { connect.client_id.clone() };
        let will_cluster = connect.will.as_ref().map(|w| publish_cluster(table, &w.topic, &w.payload));
        let client_max = connect.properties.receive_maximum.unwrap_or(u16::MAX);
        let shares = brokers.iter().copied().zip(receive_maximum_shares(client_max, brokers.len())).collect();
        Self { client_id, assigned, will_cluster, shares }
    }

    /// A broker that was not in the table at CONNECT (a new routing table reaches it): its
    /// share of the client's Receive Maximum, once (`None` when it has one already). It gets
    /// the smallest share of the others; the proxy's window holds what exceeds the client's
    /// value ([`crate::flow::SendWindow`]).
    pub fn add_broker(&mut self, broker: ClusterId) -> Option<u16> {
        if self.shares.iter().any(|(b, _)| *b == broker) {
            return None;
        }
        let share = self.shares.iter().map(|(_, s)| *s).min().unwrap_or(u16::MAX).max(1);
        self.shares.push((broker, share));
        Some(share)
    }

    /// The CONNECT to send to `broker`.
    pub fn connect_for(&self, connect: &Connect, broker: ClusterId) -> Connect {
        let mut c = connect.clone();
        c.client_id = self.client_id.clone();
        if self.will_cluster != Some(broker) {
            c.will = None;
        }
        if c.version == Version::V5 {
            c.properties.topic_alias_maximum = None;
            c.properties.receive_maximum = self
                .shares
                .iter()
                .find(|(b, _)| *b == broker)
                .map(|(_, s)| *s)
                .filter(|s| *s < u16::MAX);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use geomesh_core::Config;

    use super::*;
    use crate::packet::{QoS, Will};
    use crate::properties::Properties;

    fn table() -> RoutingTable {
        let yaml = "workload_type: mqtt\ndefault_cluster: b1\nrouting_table:\n  clients: {cluster: b2}\n  alert: {type: value, cluster: b3}\n";
        RoutingTable::new(&Config::parse(yaml.as_bytes()).unwrap()).unwrap()
    }

    fn connect(v: Version, will_topic: &'static str, will_payload: &'static str) -> Connect {
        let mut c = Connect::new(v, "");
        c.username = Some(Bytes::from_static(b"u"));
        c.password = Some(Bytes::from_static(b"p"));
        c.will = Some(Will {
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
            topic: Bytes::from_static(will_topic.as_bytes()),
            payload: Bytes::from_static(will_payload.as_bytes()),
        });
        c.properties.receive_maximum = Some(20);
        c.properties.topic_alias_maximum = Some(5);
        c.properties.session_expiry_interval = Some(60);
        c
    }

    #[test]
    fn one_will_where_its_topic_lives_one_identifier_everywhere() {
        let t = table();
        let brokers = t.active_clusters().to_vec();
        assert_eq!(brokers.len(), 3);
        let c = connect(Version::V5, "clients/7/status", "offline");
        let plan = ReplayPlan::new(&c, &t, &brokers, 0xabc);
        assert!(plan.assigned);
        assert_eq!(&plan.client_id[..], b"geomesh0000000000000abc");
        assert_eq!(plan.client_id.len(), 23);
        assert_eq!(plan.will_cluster, t.cluster_id("b2"));
        let sent: Vec<Connect> = brokers.iter().map(|b| plan.connect_for(&c, *b)).collect();
        assert_eq!(sent.iter().filter(|s| s.will.is_some()).count(), 1, "never N wills");
        for (b, s) in brokers.iter().zip(&sent) {
            assert_eq!(s.will.is_some(), t.cluster_name(*b) == "b2");
            assert_eq!(s.client_id, plan.client_id);
            assert_eq!((s.username.clone(), s.password.clone()), (c.username.clone(), c.password.clone()), "credentials as given");
            assert_eq!(s.properties.topic_alias_maximum, None);
            assert_eq!(s.properties.session_expiry_interval, Some(60));
        }
        let shares: Vec<u16> = sent.iter().map(|s| s.properties.receive_maximum.unwrap()).collect();
        assert_eq!(shares, [7, 7, 6]);
        // A will payload holding a value route's NAME goes where such a PUBLISH would.
        let c = connect(Version::V311, "status/7", "alert: gone");
        let plan = ReplayPlan::new(&c, &t, &brokers, 1);
        assert_eq!(plan.will_cluster, t.cluster_id("b3"));
        let v3 = plan.connect_for(&c, t.cluster_id("b1").unwrap());
        assert_eq!(v3.will, None);
        assert_eq!(v3.properties, c.properties, "3.1.1: properties untouched (never encoded)");
    }

    #[test]
    fn a_named_client_keeps_its_identifier_and_no_will_means_none() {
        let t = table();
        let mut c = Connect::new(Version::V5, "sensor-7");
        c.properties.receive_maximum = None;
        let plan = ReplayPlan::new(&c, &t, t.active_clusters(), 9);
        assert!(!plan.assigned);
        assert_eq!(&plan.client_id[..], b"sensor-7");
        assert_eq!(plan.will_cluster, None);
        let s = plan.connect_for(&c, t.active_clusters()[0]);
        assert_eq!(s.properties.receive_maximum, Some(21845), "65535 shared by 3");
    }

    #[test]
    fn what_the_proxy_cannot_carry() {
        let mut c = Connect::new(Version::V5, "x");
        assert!(check_connect(&c).is_ok());
        c.properties.authentication_method = Some(Bytes::from_static(b"SCRAM-SHA-256"));
        assert_eq!(check_connect(&c), Err((ReasonCode::BAD_AUTHENTICATION_METHOD, ENHANCED_AUTH_UNSUPPORTED)));
        let mut c = Connect::new(Version::V311, "");
        assert!(check_connect(&c).is_ok());
        c.clean_start = false;
        assert_eq!(check_connect(&c), Err((ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, EMPTY_ID_NEEDS_CLEAN_SESSION)));
    }
}
