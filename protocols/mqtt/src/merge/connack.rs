//! CONNACK: the brokers' acceptances (or first refusal) as one.

use bytes::Bytes;

use crate::packet::{ConnAck, Version};
use crate::properties::Properties;

/// What the proxy itself accepts from the client, part of every minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyOffer {
    /// The proxy's own Maximum Packet Size ([`crate::Limits::max_packet_size`]).
    pub maximum_packet_size: u32,
    /// The most topic aliases the proxy resolves for one client ([`crate::alias`]).
    pub topic_alias_maximum: u16,
}

/// Merges the CONNACKs of every broker (in cluster order) into the client's.
///
/// * A refusal (return code or reason code not 0): the first one, as the broker sent it.
/// * Session Present only if every broker has the session.
/// * MQTT 5.0: the minimum of Receive Maximum (absent: 65535), Maximum Packet Size (absent: no
///   limit; the proxy's own is part of the minimum), Maximum QoS (absent: 2), Session Expiry
///   Interval and Server Keep Alive where a broker set them; Topic Alias Maximum is the
///   proxy's own (aliases are resolved by the proxy, never forwarded); Retain, Wildcard Subscription, Subscription Identifier
///   and Shared Subscription Available are 0 if any broker says 0.
/// * `assigned_client_id`: the identifier the proxy chose for a client that sent an empty one
///   (the same on every broker), returned as Assigned Client Identifier.
/// * Response Information, Server Reference and User Properties: the first broker's.
pub fn merge_connacks(version: Version, answers: &[ConnAck], proxy: ProxyOffer, assigned_client_id: Option<Bytes>) -> ConnAck {
    if let Some(refusal) = answers.iter().find(|a| a.code != 0) {
        return ConnAck {
            session_present: false,
            ..refusal.clone()
        };
    }
    let session_present = !answers.is_empty() && answers.iter().all(|a| a.session_present);
    if version == Version::V311 {
        return ConnAck::accepted(session_present);
    }
    let all = || answers.iter().map(|a| &*a.properties);
    let min_some = |f: fn(&Properties) -> Option<u32>| all().filter_map(f).min();
    let receive_maximum = all().map(|p| p.receive_maximum.unwrap_or(u16::MAX)).min().unwrap_or(u16::MAX);
    let maximum_qos = all().map(|p| p.maximum_qos.unwrap_or(2)).min().unwrap_or(2);
    // Aliases are resolved by the proxy and never forwarded: the client's maximum is the
    // proxy's own, whatever the brokers accept.
    let topic_alias_maximum = proxy.topic_alias_maximum;
    let maximum_packet_size = all().filter_map(|p| p.maximum_packet_size).chain([proxy.maximum_packet_size]).min();
    let available = |f: fn(&Properties) -> Option<u8>| all().any(|p| f(p) == Some(0)).then_some(0);
    let first = answers.first().map(|a| a.properties.clone()).unwrap_or_default();
    ConnAck {
        session_present,
        code: 0,
        properties: Box::new(Properties {
            session_expiry_interval: min_some(|p| p.session_expiry_interval),
            assigned_client_identifier: assigned_client_id,
            server_keep_alive: min_some(|p| p.server_keep_alive.map(u32::from)).and_then(|v| u16::try_from(v).ok()),
            receive_maximum: (receive_maximum < u16::MAX).then_some(receive_maximum),
            topic_alias_maximum: (topic_alias_maximum > 0).then_some(topic_alias_maximum),
            maximum_qos: (maximum_qos < 2).then_some(maximum_qos),
            retain_available: available(|p| p.retain_available),
            maximum_packet_size,
            wildcard_subscription_available: available(|p| p.wildcard_subscription_available),
            subscription_identifier_available: available(|p| p.subscription_identifier_available),
            shared_subscription_available: available(|p| p.shared_subscription_available),
            response_information: first.response_information,
            server_reference: first.server_reference,
            user_properties: first.user_properties,
            ..Properties::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::reason::{v311, ReasonCode};

    const PROXY: ProxyOffer = ProxyOffer { maximum_packet_size: 1 << 20, topic_alias_maximum: 16 };

    fn ack(present: bool, p: Properties) -> ConnAck {
        ConnAck { session_present: present, code: 0, properties: Box::new(p) }
    }

    #[test]
    fn minimums_and_conjunctions() {
        let a = ack(true, Properties {
            receive_maximum: Some(100),
            maximum_packet_size: Some(4 << 20),
            maximum_qos: Some(1),
            topic_alias_maximum: Some(10),
            retain_available: Some(1),
            server_keep_alive: Some(60),
            user_properties: vec![(Bytes::from_static(b"broker"), Bytes::from_static(b"a"))],
            ..Properties::default()
        });
        let b = ack(true, Properties {
            receive_maximum: Some(20),
            maximum_packet_size: Some(65536),
            topic_alias_maximum: Some(30),
            retain_available: Some(0),
            wildcard_subscription_available: Some(1),
            session_expiry_interval: Some(300),
            ..Properties::default()
        });
        let m = merge_connacks(Version::V5, &[a.clone(), b.clone()], PROXY, Some(Bytes::from_static(b"geomeshabc")));
        assert!(m.session_present);
        assert_eq!(m.code, 0);
        let p = &m.properties;
        assert_eq!(p.receive_maximum, Some(20));
        assert_eq!(p.maximum_packet_size, Some(65536));
        assert_eq!(p.maximum_qos, Some(1));
        assert_eq!(p.topic_alias_maximum, Some(16), "the proxy's own: aliases never reach a broker");
        assert_eq!(p.retain_available, Some(0));
        assert_eq!(p.wildcard_subscription_available, None, "1 is the default");
        assert_eq!(p.server_keep_alive, Some(60));
        assert_eq!(p.session_expiry_interval, Some(300));
        assert_eq!(p.assigned_client_identifier.as_deref(), Some(&b"geomeshabc"[..]));
        assert_eq!(p.user_properties, a.properties.user_properties);
        // Session present only if every broker has it.
        let m = merge_connacks(Version::V5, &[a, ack(false, Properties::default())], PROXY, None);
        assert!(!m.session_present);
        assert_eq!(m.properties.topic_alias_maximum, Some(16), "a broker without aliases does not matter");
        assert_eq!(m.properties.maximum_packet_size, Some(PROXY.maximum_packet_size), "the proxy's own limit");
        assert_eq!(m.properties.receive_maximum, Some(100));
    }

    #[test]
    fn absent_values_take_their_defaults() {
        let m = merge_connacks(Version::V5, &[ack(true, Properties::default()), ack(true, Properties::default())], PROXY, None);
        assert_eq!(m.properties.receive_maximum, None, "65535");
        assert_eq!(m.properties.maximum_qos, None, "2");
        assert_eq!(m.properties.topic_alias_maximum, Some(16), "the proxy's own");
        assert_eq!(m.properties.maximum_packet_size, Some(1 << 20));
    }

    #[test]
    fn the_first_refusal_wins() {
        let refused = ConnAck {
            session_present: true,
            code: ReasonCode::NOT_AUTHORIZED.0,
            properties: Box::new(Properties { reason_string: Some(Bytes::from_static(b"acl")), ..Properties::default() }),
        };
        let busy = ConnAck { session_present: false, code: ReasonCode::SERVER_BUSY.0, properties: Box::new(Properties::default()) };
        let m = merge_connacks(Version::V5, &[ack(true, Properties::default()), refused.clone(), busy], PROXY, None);
        assert_eq!(m.code, ReasonCode::NOT_AUTHORIZED.0);
        assert!(!m.session_present, "never with a refusal");
        assert_eq!(m.properties.reason_string, refused.properties.reason_string);
        let v3 = ConnAck { session_present: false, code: v311::BAD_USER_NAME_OR_PASSWORD, properties: Box::new(Properties::default()) };
        assert_eq!(merge_connacks(Version::V311, &[ConnAck::accepted(true), v3.clone()], PROXY, None), v3);
        assert_eq!(
            merge_connacks(Version::V311, &[ConnAck::accepted(true), ConnAck::accepted(true)], PROXY, None),
            ConnAck::accepted(true)
        );
        assert!(!merge_connacks(Version::V311, &[], PROXY, None).session_present);
    }
}
