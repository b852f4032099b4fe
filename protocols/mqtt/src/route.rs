//! Which broker a PUBLISH goes to, and which brokers a SUBSCRIBE goes to.
//!
//! The routing table is the Écharde one, compiled for `workload_type: mqtt`: topic levels are
//! split by `/` only, so a `key` route NAME matches the topic NAME and every topic below it
//! (`NAME/...`); `prefix` routes match raw prefixes, `value` routes the payload, `hash` routes
//! spread topics over clusters. `$SYS` topics are each broker's own: they go to (and are
//! subscribed on) `local_cluster` only.

use geomesh_core::{ClusterId, RoutingTable};

use crate::reason::ReasonCode;
use crate::topic::{is_sys, SubscriptionFilter};

/// The broker a message on `topic` with `payload` is published to (a will message too).
pub fn publish_cluster(table: &RoutingTable, topic: &[u8], payload: &[u8]) -> ClusterId {
    if is_sys(topic) {
        table.local_cluster()
    } else {
        table.route_message(Some(topic), Some(payload))
    }
}

/// The brokers a subscription to `filter` (as sent: `$share/GROUP/...` included) must be made
/// on: every broker where a matching topic can be published, and no other. A shared
/// subscription is made under the same group on each of them: each message is published to one
/// broker, whose group delivers it to one member, so it reaches the group once. `Err` carries
/// the reason code for the SUBACK entry (Topic Filter invalid).
pub fn subscription_clusters(table: &RoutingTable, filter: &[u8]) -> Result<Vec<ClusterId>, ReasonCode> {
    let parsed = SubscriptionFilter::parse(filter).ok_or(ReasonCode::TOPIC_FILTER_INVALID)?;
    if parsed.is_sys() {
        return Ok(vec![table.local_cluster()]);
    }
    table
        .topic_filter_clusters(parsed.filter)
        .ok_or(ReasonCode::TOPIC_FILTER_INVALID)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use geomesh_core::Config;

    use super::*;

    /// Écharde's table, for MQTT: `user1` topics on broker 2, payloads holding `alert` too.
    const ECHARDE_MQTT: &str = "\
workload_type: mqtt
default_cluster: mqtt1
local_cluster: mqtt-local
routing_table:
  user1: {type: key, cluster: mqtt2}
  alert: {type: value, cluster: mqtt2}
  tmp: {type: prefix, cluster: mqtt3}
  fleet: {type: hash, clusters: [mqtt1, mqtt2, mqtt3]}
";

    fn table() -> RoutingTable {
        RoutingTable::new(&Config::parse(ECHARDE_MQTT.as_bytes()).unwrap()).unwrap()
    }

    fn names(t: &RoutingTable, ids: &[ClusterId]) -> Vec<String> {
        let mut v: Vec<String> = ids.iter().map(|c| t.cluster_name(*c).to_owned()).collect();
        v.sort();
        v
    }

    fn publish(t: &RoutingTable, topic: &str, payload: &str) -> String {
        t.cluster_name(publish_cluster(t, topic.as_bytes(), payload.as_bytes())).to_owned()
    }

    #[test]
    fn publishes_follow_key_prefix_value_and_hash_routes() {
        let t = table();
        assert_eq!(publish(&t, "user1", "x"), "mqtt2");
        assert_eq!(publish(&t, "user1/profile/name", "x"), "mqtt2");
        assert_eq!(publish(&t, "user1.profile", "x"), "mqtt1", "`.` does not split MQTT topic levels");
        assert_eq!(publish(&t, "user10/x", "x"), "mqtt1");
        assert_eq!(publish(&t, "sensors/1", "temperature alert: 90C"), "mqtt2", "value route");
        assert_eq!(publish(&t, "sensors/1", "temperature 20C"), "mqtt1");
        assert_eq!(publish(&t, "tmpfiles/1", "x"), "mqtt3", "prefix route");
        let fleet: std::collections::BTreeSet<String> = (0..64).map(|i| publish(&t, &format!("fleet/truck{i}"), "")).collect();
        assert_eq!(fleet.len(), 3, "hash route spreads over its clusters");
        assert_eq!(publish(&t, "$SYS/broker/uptime", "x"), "mqtt-local");
        assert_eq!(publish(&t, "$SYSTEM/x", "x"), "mqtt1");
    }

    #[test]
    fn subscriptions_go_where_matching_topics_can_be_published() {
        let t = table();
        let subs = |f: &str| names(&t, &subscription_clusters(&t, f.as_bytes()).unwrap());
        assert_eq!(subs("user1/#"), ["mqtt2"], "alert is no longer than user1: the key route wins");
        assert_eq!(subs("sensors/+"), ["mqtt1", "mqtt2"], "alert payloads go to mqtt2");
        assert_eq!(subs("fleet/+"), ["mqtt1", "mqtt2", "mqtt3"]);
        assert_eq!(subs("#"), ["mqtt1", "mqtt2", "mqtt3"]);
        assert_eq!(subs("$share/workers/user1/+"), ["mqtt2"]);
        assert_eq!(subs("$SYS/#"), ["mqtt-local"]);
        assert_eq!(subs("$SYS/broker/+"), ["mqtt-local"]);
        for bad in ["a/#/b", "a+", "$share/g", "$share//x", ""] {
            assert_eq!(subscription_clusters(&t, bad.as_bytes()), Err(ReasonCode::TOPIC_FILTER_INVALID), "{bad}");
        }
    }

    #[test]
    fn every_published_topic_reaches_its_subscribers() {
        let t = table();
        let topics = ["user1", "user1/a", "sensors/1", "tmpx/y", "fleet/truck7", "a/b/c", "$SYS/load"];
        let payloads = ["", "alert", "x"];
        let filters = ["#", "+/+", "user1/#", "sensors/+", "fleet/#", "tmpx/+", "$SYS/#", "+", "a/+/c", "$share/g/#"];
        for f in filters {
            let subs = subscription_clusters(&t, f.as_bytes()).unwrap();
            let plain = SubscriptionFilter::parse(f.as_bytes()).unwrap().filter;
            for topic in topics {
                if !crate::topic::filter_matches(plain, topic.as_bytes()) {
                    continue;
                }
                for p in payloads {
                    let c = publish_cluster(&t, topic.as_bytes(), p.as_bytes());
                    assert!(subs.contains(&c), "{f}: {topic} ({p}) published to {}", t.cluster_name(c));
                }
            }
        }
    }
}
