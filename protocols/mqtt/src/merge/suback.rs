//! SUBACK and UNSUBACK: one reason code per filter from the brokers that got the filter.

use crate::packet::Version;
use crate::reason::{v311, ReasonCode};

/// A SUBACK entry from two brokers' entries for one filter: a refusal wins (the first one),
/// else the lower granted QoS (the client gets no more than every broker grants).
pub fn merge_suback_code(a: u8, b: u8) -> u8 {
    match (a >= 0x80, b >= 0x80) {
        (true, _) => a,
        (false, true) => b,
        (false, false) => a.min(b),
    }
}

/// An MQTT 5.0 UNSUBACK entry from two brokers' entries: a refusal wins; else Success if any
/// broker had the subscription, else No subscription existed.
pub fn merge_unsuback_code(a: u8, b: u8) -> u8 {
    match (a >= 0x80, b >= 0x80) {
        (true, _) => a,
        (false, true) => b,
        (false, false) if a == ReasonCode::SUCCESS.0 || b == ReasonCode::SUCCESS.0 => ReasonCode::SUCCESS.0,
        (false, false) => ReasonCode::NO_SUBSCRIPTION_EXISTED.0,
    }
}

/// Gathers the entries of one SUBACK (or UNSUBACK) for a SUBSCRIBE whose filters went to
/// different brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckMerge {
    unsubscribe: bool,
    /// Per filter of the client's packet: the merged entry so far, and the answers awaited.
    entries: Vec<(Option<u8>, u16)>,
}

/// An answer that does not fit what was sent (a broker's SUBACK with the wrong count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MismatchedAck;

impl AckMerge {
    /// For a SUBSCRIBE of `filters` filters.
    pub fn subscribe(filters: usize) -> Self {
        Self { unsubscribe: false, entries: vec![(None, 0); filters] }
    }

    /// For an UNSUBSCRIBE of `filters` filters.
    pub fn unsubscribe(filters: usize) -> Self {
        Self { unsubscribe: true, entries: vec![(None, 0); filters] }
    }

    /// Filter `index` was sent to one more broker.
    pub fn expect(&mut self, index: usize) {
        if let Some(e) = self.entries.get_mut(index) {
            e.1 = e.1.saturating_add(1);
        }
    }

    /// The proxy answers filter `index` itself (an invalid filter: Topic Filter invalid).
    pub fn answer_locally(&mut self, index: usize, code: u8) {
        self.merge_into(index, code);
    }

    fn merge_into(&mut self, index: usize, code: u8) {
        let unsubscribe = self.unsubscribe;
        if let Some(e) = self.entries.get_mut(index) {
            e.0 = Some(match e.0 {
                None => code,
                Some(prev) if unsubscribe => merge_unsuback_code(prev, code),
                Some(prev) => merge_suback_code(prev, code),
            });
        }
    }

    /// A broker's answer: `codes[i]` for the client's filter `indices[i]` (the filters sent to
    /// it, in order). An MQTT 3.1.1 UNSUBACK carries no codes: pass an empty `codes`.
    pub fn add(&mut self, indices: &[usize], codes: &[u8]) -> Result<(), MismatchedAck> {
        if !codes.is_empty() && codes.len() != indices.len() {
            return Err(MismatchedAck);
        }
        for (n, &i) in indices.iter().enumerate() {
            let e = self.entries.get_mut(i).ok_or(MismatchedAck)?;
            e.1 = e.1.checked_sub(1).ok_or(MismatchedAck)?;
            let code = codes.get(n).copied().unwrap_or(ReasonCode::SUCCESS.0);
            self.merge_into(i, code);
        }
        Ok(())
    }

    /// True when every broker sent to has answered.
    pub fn is_complete(&self) -> bool {
        self.entries.iter().all(|e| e.1 == 0)
    }

    /// A broker that will not answer (lost): its filters are refused.
    pub fn fail(&mut self, indices: &[usize]) {
        for &i in indices {
            if let Some(e) = self.entries.get_mut(i) {
                e.1 = e.1.saturating_sub(1);
            }
            self.merge_into(i, ReasonCode::UNSPECIFIED_ERROR.0);
        }
    }

    /// The client's entries: for MQTT 3.1.1 a refusal is 0x80 (Failure) and an UNSUBACK has
    /// none. A filter nobody answered is refused.
    pub fn finish(self, version: Version) -> Vec<u8> {
        if self.unsubscribe && version == Version::V311 {
            return Vec::new();
        }
        self.entries
            .into_iter()
            .map(|(code, _)| {
                let code = code.unwrap_or(ReasonCode::UNSPECIFIED_ERROR.0);
                if version == Version::V311 && code >= 0x80 {
                    v311::SUBACK_FAILURE
                } else {
                    code
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn suback_entries() {
        assert_eq!(merge_suback_code(2, 1), 1);
        assert_eq!(merge_suback_code(0, 2), 0);
        assert_eq!(merge_suback_code(2, 0x87), 0x87);
        assert_eq!(merge_suback_code(0x97, 0x87), 0x97, "the first refusal");
        assert_eq!(merge_unsuback_code(0x11, 0x00), 0x00);
        assert_eq!(merge_unsuback_code(0x11, 0x11), 0x11);
        assert_eq!(merge_unsuback_code(0x00, 0x87), 0x87);
    }

    #[test]
    fn a_subscribe_spread_over_brokers() {
        // Filter 0 went to brokers A and B, filter 1 to B only, filter 2 is invalid.
        let mut m = AckMerge::subscribe(3);
        m.expect(0);
        m.expect(0);
        m.expect(1);
        m.answer_locally(2, ReasonCode::TOPIC_FILTER_INVALID.0);
        assert!(!m.is_complete());
        m.add(&[0], &[2]).unwrap();
        assert!(!m.is_complete());
        assert_eq!(m.add(&[0, 1], &[1]), Err(MismatchedAck), "wrong count");
        m.add(&[0, 1], &[1, 0x80]).unwrap();
        assert!(m.is_complete());
        assert_eq!(m.add(&[0], &[1]), Err(MismatchedAck), "not awaited");
        assert_eq!(m.clone().finish(Version::V5), [1, 0x80, 0x8F]);
        assert_eq!(m.finish(Version::V311), [1, 0x80, 0x80]);
    }

    #[test]
    fn lost_brokers_and_unsubscribe() {
        let mut m = AckMerge::subscribe(2);
        m.expect(0);
        m.expect(1);
        m.add(&[0], &[1]).unwrap();
        m.fail(&[1]);
        assert!(m.is_complete());
        assert_eq!(m.finish(Version::V5), [1, 0x80]);
        let mut u = AckMerge::unsubscribe(2);
        for i in [0, 0, 1, 1] {
            u.expect(i);
        }
        u.add(&[0, 1], &[0x11, 0x11]).unwrap();
        u.add(&[0, 1], &[0x00, 0x11]).unwrap();
        assert_eq!(u.clone().finish(Version::V5), [0x00, 0x11]);
        assert_eq!(u.finish(Version::V311), Vec::<u8>::new());
        let mut u3 = AckMerge::unsubscribe(1);
        u3.expect(0);
        u3.add(&[0], &[]).unwrap();
        assert!(u3.is_complete());
    }
}
