//! The token memory behind openstackoid's piggyback.
//!
//! When the filter in front of service `s` strips `!SCOPE!<scope>` from
//! `X-Auth-Token`, it remembers token -> scope, so that when `s` calls `t`
//! with the plain token through the same Envoy, `t`'s filter finds the
//! scope again. The memory lives in Proxy-Wasm shared data (one Envoy
//! process, every worker), which has no enumeration and no expiry of its
//! own; this module makes it bounded:
//!
//! * a fixed number of slots: the key is `geomesh.scope.token.<n>` with `n`
//!   taken from a SHA-256 of the token, so at most `slots` entries ever exist
//!   (a newer token in the same slot replaces the older one);
//! * each value holds the full digest (a slot collision is never taken for a
//!   match), an expiry time and the canonical scope, at most
//!   [`crate::MAX_INPUT`] bytes of it;
//! * the token itself is never stored.

use sha2::{Digest, Sha256};

use crate::ast::Scope;
use crate::parse::parse;
use crate::MAX_INPUT;

/// Key prefix in Proxy-Wasm shared data.
pub const KEY_PREFIX: &str = "geomesh.scope.token.";
/// Most slots a configuration may ask for.
pub const MAX_SLOTS: u32 = 65_536;
const MAGIC: &[u8; 4] = b"GMT1";
const HEADER: usize = 4 + 32 + 8;

/// Where one token's scope is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSlot {
    /// The shared-data key.
    pub key: String,
    digest: [u8; 32],
}

impl TokenSlot {
    /// The slot of `token` among `slots` (clamped to 1..=[`MAX_SLOTS`]).
    pub fn of(token: &[u8], slots: u32) -> Self {
        let digest: [u8; 32] = Sha256::digest(token).into();
        let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
            % slots.clamp(1, MAX_SLOTS);
        TokenSlot {
            key: format!("{KEY_PREFIX}{n}"),
            digest,
        }
    }

    /// The shared-data value remembering `scope` until `expires_at_ms`.
    pub fn encode(&self, scope: &Scope, expires_at_ms: u64) -> Vec<u8> {
        let text = scope.print();
        let mut v = Vec::with_capacity(HEADER + text.len());
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&self.digest);
        v.extend_from_slice(&expires_at_ms.to_be_bytes());
        v.extend_from_slice(text.as_bytes());
        v
    }

    /// The scope in `value` if it was stored for this very token and has not
    /// expired at `now_ms`. Anything else (another token in the slot, an
    /// expired or damaged entry) is `None`.
    pub fn decode(&self, value: &[u8], now_ms: u64) -> Option<Scope> {
        if value.len() < HEADER || value.len() > HEADER + MAX_INPUT {
            return None;
        }
        let (magic, rest) = value.split_at_checked(4)?;
        let (digest, rest) = rest.split_at_checked(32)?;
        let (expiry, text) = rest.split_at_checked(8)?;
        if magic != MAGIC || digest != self.digest {
            return None;
        }
        let expiry = u64::from_be_bytes(expiry.try_into().ok()?);
        if now_ms >= expiry {
            return None;
        }
        parse(std::str::from_utf8(text).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn remembers_for_the_same_token_until_expiry() {
        let scope = parse("{ compute: DC 1, image: DC 2 }").unwrap();
        let slot = TokenSlot::of(b"gAAAAABk-token", 1024);
        assert!(slot.key.starts_with(KEY_PREFIX));
        let v = slot.encode(&scope, 1_000);
        assert_eq!(slot.decode(&v, 999), Some(scope.clone()));
        assert_eq!(slot.decode(&v, 1_000), None, "expired");
        assert!(!v.windows(14).any(|w| w == b"gAAAAABk-token"), "token not stored");
    }

    #[test]
    fn another_token_in_the_same_slot_is_not_a_match() {
        let scope = parse("{ image: DC 2 }").unwrap();
        let a = TokenSlot::of(b"a", 1);
        let b = TokenSlot::of(b"b", 1);
        assert_eq!(a.key, b.key, "one slot: same key");
        assert_eq!(b.decode(&a.encode(&scope, u64::MAX), 0), None);
    }

    #[test]
    fn damaged_values_are_ignored() {
        let slot = TokenSlot::of(b"t", 8);
        let good = slot.encode(&parse("{ image: DC 2 }").unwrap(), u64::MAX);
        for cut in 0..good.len() {
            let _ = slot.decode(good.get(..cut).unwrap(), 0);
        }
        let mut bad = good.clone();
        bad.push(b'{');
        assert_eq!(slot.decode(&bad, 0), None);
        assert_eq!(slot.decode(b"", 0), None);
        assert_eq!(TokenSlot::of(b"t", 0).key, format!("{KEY_PREFIX}0"));
    }
}
