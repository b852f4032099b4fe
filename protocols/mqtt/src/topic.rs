//! Topic names, topic filters, shared subscriptions and `$SYS`.
//!
//! The filter grammar and matching live in the routing core ([`geomesh_core::topic_filter`]),
//! beside the function that maps a filter to clusters; they are re-exported here.

pub use geomesh_core::topic_filter::{filter_matches, is_valid_filter};

use crate::error::{msg, Error};
use crate::limits::Limits;
use crate::reason::ReasonCode;

/// The prefix of a shared subscription's filter (MQTT 5.0, 4.8.2; Mosquitto accepts it from
/// 3.1.1 clients too).
pub const SHARE_PREFIX: &[u8] = b"$share/";

/// Topics under `$SYS` are the broker's own: published by each broker, never routed.
pub const SYS_TOPIC: &[u8] = b"$SYS";

/// Checks a PUBLISH (or will) topic name: within `max_topic_len`, and no wildcard (Topic Name
/// invalid, 0x90, otherwise). Emptiness is the caller's rule (allowed with a 5.0 Topic Alias).
pub fn check_topic_name(topic: &[u8], limits: &Limits) -> Result<(), Error> {
    if topic.len() > usize::from(limits.max_topic_len) {
        return Err(Error::new(ReasonCode::TOPIC_NAME_INVALID, msg::TOPIC_TOO_LONG));
    }
    if topic.iter().any(|b| *b == b'+' || *b == b'#') {
        return Err(Error::new(ReasonCode::TOPIC_NAME_INVALID, msg::WILDCARD_IN_TOPIC));
    }
    Ok(())
}

/// True for `$SYS` and topics below it (the local broker's statistics).
pub fn is_sys(topic: &[u8]) -> bool {
    topic.strip_prefix(SYS_TOPIC).is_some_and(|rest| rest.is_empty() || rest.first() == Some(&b'/'))
}

/// A subscription filter, split into its share group (for `$share/GROUP/FILTER`) and the
/// filter proper that topics are matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionFilter<'a> {
    /// `Some(GROUP)` for a shared subscription.
    pub share_group: Option<&'a [u8]>,
    /// The topic filter (without `$share/GROUP/`).
    pub filter: &'a [u8],
}

impl<'a> SubscriptionFilter<'a> {
    /// Parses a SUBSCRIBE or UNSUBSCRIBE filter. `None` when it is not a valid filter (Topic
    /// Filter invalid, 0x8F): bad wildcards, or a `$share/` without a group name free of
    /// `/`, `+` and `#`, or without a filter after it.
    pub fn parse(full: &'a [u8]) -> Option<Self> {
        let (share_group, filter) = match full.strip_prefix(SHARE_PREFIX) {
            Some(rest) => {
                let slash = rest.iter().position(|b| *b == b'/')?;
                let (group, filter) = rest.split_at(slash);
                let filter = filter.get(1..)?;
                if group.is_empty() || group.iter().any(|b| *b == b'+' || *b == b'#') {
                    return None;
                }
                (Some(group), filter)
            }
            None => (None, full),
        };
        is_valid_filter(filter).then_some(Self { share_group, filter })
    }

    /// True when the filter only matches `$SYS` topics (its first level is `$SYS`).
    pub fn is_sys(&self) -> bool {
        is_sys(self.filter)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn topic_names() {
        let l = Limits::default();
        assert!(check_topic_name(b"a/b/c", &l).is_ok());
        assert!(check_topic_name(b"", &l).is_ok(), "emptiness is the caller's rule");
        assert_eq!(check_topic_name(b"a/+", &l).unwrap_err().reason(), ReasonCode::TOPIC_NAME_INVALID);
        assert_eq!(check_topic_name(b"#", &l).unwrap_err().message(), msg::WILDCARD_IN_TOPIC);
        let short = Limits { max_topic_len: 3, ..l };
        assert!(check_topic_name(b"abc", &short).is_ok());
        assert_eq!(check_topic_name(b"abcd", &short).unwrap_err().message(), msg::TOPIC_TOO_LONG);
    }

    #[test]
    fn sys_topics() {
        for t in ["$SYS", "$SYS/broker/uptime", "$SYS/"] {
            assert!(is_sys(t.as_bytes()), "{t}");
        }
        for t in ["$SYSTEM", "SYS/x", "$sys/x", "a/$SYS"] {
            assert!(!is_sys(t.as_bytes()), "{t}");
        }
        assert!(SubscriptionFilter::parse(b"$SYS/#").unwrap().is_sys());
        assert!(!SubscriptionFilter::parse(b"#").unwrap().is_sys());
    }

    #[test]
    fn shared_subscriptions() {
        let s = SubscriptionFilter::parse(b"$share/g1/sensors/+/temp").unwrap();
        assert_eq!(s.share_group, Some(&b"g1"[..]));
        assert_eq!(s.filter, b"sensors/+/temp");
        let s = SubscriptionFilter::parse(b"$share/g/#").unwrap();
        assert_eq!(s.filter, b"#");
        let s = SubscriptionFilter::parse(b"sensors/#").unwrap();
        assert_eq!(s.share_group, None);
        for bad in ["$share/g", "$share//x", "$share/g+/x", "$share/g#/x", "$share/g/", "$share/g/a/#/b", "a/#/b", ""] {
            assert_eq!(SubscriptionFilter::parse(bad.as_bytes()), None, "{bad}");
        }
        assert!(SubscriptionFilter::parse(b"$shared/g/x").is_some(), "not a share: a plain filter");
    }
}
