//! MQTT 5.0 topic aliases (3.3.2.3.4): a number standing for a topic, per connection and
//! direction.
//!
//! * **Inbound** ([`InboundAliases`]): aliases a sender defined are resolved here, and the
//!   PUBLISH goes on with its full topic and no alias: routing needs the topic, and each broker
//!   connection has its own alias space. Used for the client's PUBLISHes (against the Topic
//!   Alias Maximum the proxy announced in CONNACK) and for a broker's (the replayed CONNECT
//!   announces none, so a broker that sends one anyway is answered Topic Alias invalid).
//! * **Outbound** ([`OutboundAliases`]): toward the client, the proxy may use aliases of its
//!   own, up to the client's Topic Alias Maximum: the first PUBLISH on a topic carries topic and
//!   alias, later ones the alias only. Aliases are never evicted: once all are taken, new
//!   topics go in full.

use std::collections::HashMap;

use bytes::Bytes;

use crate::error::Error;
use crate::packet::Publish;
use crate::reason::ReasonCode;

/// A Topic Alias above the maximum announced.
pub const ALIAS_OVER_MAXIMUM: &str = "topic alias above the Topic Alias Maximum";
/// An empty topic with an alias never defined.
pub const ALIAS_UNKNOWN: &str = "topic alias used before it was defined";

/// Aliases a peer defines, resolved.
#[derive(Debug, Clone, Default)]
pub struct InboundAliases {
    max: u16,
    topics: HashMap<u16, Bytes>,
}

impl InboundAliases {
    /// Accepting aliases 1..=`max` (0: none).
    pub fn new(max: u16) -> Self {
        Self { max, topics: HashMap::new() }
    }

    /// Resolves `publish` in place: its topic is the full topic and it carries no alias
    /// afterwards. Errors (Topic Alias invalid, 0x94; an unknown alias is a Protocol Error,
    /// 0x82) end the connection.
    pub fn resolve(&mut self, publish: &mut Publish) -> Result<(), Error> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            return Ok(());
        };
        if alias == 0 || alias > self.max {
            return Err(Error::new(ReasonCode::TOPIC_ALIAS_INVALID, ALIAS_OVER_MAXIMUM));
        }
        if publish.topic.is_empty() {
            publish.topic = self
                .topics
                .get(&alias)
                .cloned()
                .ok_or(Error::new(ReasonCode::PROTOCOL_ERROR, ALIAS_UNKNOWN))?;
        } else {
            // A copy: the alias outlives the packet whose buffer held the topic.
            self.topics.insert(alias, Bytes::copy_from_slice(&publish.topic));
        }
        Ok(())
    }
}

/// Aliases the proxy defines toward a peer.
#[derive(Debug, Clone, Default)]
pub struct OutboundAliases {
    max: u16,
    by_topic: HashMap<Bytes, u16>,
}

impl OutboundAliases {
    /// Using aliases 1..=`max`, the peer's Topic Alias Maximum (0: none).
    pub fn new(max: u16) -> Self {
        Self { max, by_topic: HashMap::new() }
    }

    /// Puts an alias on `publish` (which has a full topic and no alias): a known topic is sent
    /// as its alias alone; a new one gets the next free alias along with its topic.
    pub fn apply(&mut self, publish: &mut Publish) {
        if self.max == 0 || publish.topic.is_empty() {
            return;
        }
        if let Some(&alias) = self.by_topic.get(&publish.topic) {
            publish.properties.topic_alias = Some(alias);
            publish.topic = Bytes::new();
            return;
        }
        let next = u16::try_from(self.by_topic.len() + 1).unwrap_or(u16::MAX);
        if next <= self.max && self.by_topic.len() < usize::from(self.max) {
            self.by_topic.insert(Bytes::copy_from_slice(&publish.topic), next);
            publish.properties.topic_alias = Some(next);
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::packet::QoS;

    fn publish(topic: &'static str, alias: Option<u16>) -> Publish {
        let mut p = Publish::new(topic, QoS::AtMostOnce, "x");
        p.properties.topic_alias = alias;
        p
    }

    #[test]
    fn inbound_aliases_are_resolved_and_removed() {
        let mut a = InboundAliases::new(2);
        let mut p = publish("sensors/1", Some(1));
        a.resolve(&mut p).unwrap();
        assert_eq!((&p.topic[..], p.properties.topic_alias), (&b"sensors/1"[..], None));
        let mut p = publish("", Some(1));
        a.resolve(&mut p).unwrap();
        assert_eq!(&p.topic[..], b"sensors/1");
        // Redefined.
        a.resolve(&mut publish("sensors/2", Some(1))).unwrap();
        let mut p = publish("", Some(1));
        a.resolve(&mut p).unwrap();
        assert_eq!(&p.topic[..], b"sensors/2");
        let mut plain = publish("t", None);
        a.resolve(&mut plain).unwrap();
        assert_eq!(&plain.topic[..], b"t");
        let e = a.resolve(&mut publish("", Some(2))).unwrap_err();
        assert_eq!((e.reason(), e.message()), (ReasonCode::PROTOCOL_ERROR, ALIAS_UNKNOWN));
        let e = a.resolve(&mut publish("x", Some(3))).unwrap_err();
        assert_eq!((e.reason(), e.message()), (ReasonCode::TOPIC_ALIAS_INVALID, ALIAS_OVER_MAXIMUM));
        let e = InboundAliases::new(0).resolve(&mut publish("x", Some(1))).unwrap_err();
        assert_eq!(e.reason(), ReasonCode::TOPIC_ALIAS_INVALID, "none announced");
    }

    #[test]
    fn outbound_aliases_up_to_the_peers_maximum() {
        let mut o = OutboundAliases::new(1);
        let mut p = publish("a/b", None);
        o.apply(&mut p);
        assert_eq!((&p.topic[..], p.properties.topic_alias), (&b"a/b"[..], Some(1)));
        let mut p = publish("a/b", None);
        o.apply(&mut p);
        assert_eq!((&p.topic[..], p.properties.topic_alias), (&b""[..], Some(1)));
        let mut p = publish("c", None);
        o.apply(&mut p);
        assert_eq!((&p.topic[..], p.properties.topic_alias), (&b"c"[..], None), "all taken: in full");
        let mut none = OutboundAliases::new(0);
        let mut p = publish("a/b", None);
        none.apply(&mut p);
        assert_eq!(p.properties.topic_alias, None);
        // What the proxy sends, the client's inbound table resolves.
        let mut client = InboundAliases::new(1);
        let mut o = OutboundAliases::new(1);
        for t in ["x/1", "x/1", "y", "x/1"] {
            let mut p = Publish::new(t, QoS::AtMostOnce, "v");
            o.apply(&mut p);
            client.resolve(&mut p).unwrap();
            assert_eq!(&p.topic[..], t.as_bytes());
        }
    }
}
