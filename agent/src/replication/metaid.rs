//! Meta-identifiers: `gm-` followed by a ULID in lower-case Crockford base32.
//!
//! ```text
//! gm-01jdx7k2m9c4v8q3r5t6w7y8z0
//! └┬┘└───┬────┘└──────┬───────┘
//!  │  48-bit Unix ms  80 random bits (getrandom), 16 chars
//!  │  10 chars
//!  prefix
//! ```
//!
//! 29 ASCII characters, safe in a URL path segment, a header and a JSON
//! string without escaping. Unique without coordination: two agents collide
//! only if they draw the same 80 random bits in the same millisecond
//! (probability about n²/2⁸¹ for n ids in one millisecond). Within one
//! generator, ids are strictly increasing: in the same millisecond the random
//! part is incremented instead of drawn again (the ULID monotonic rule), so
//! sorting meta-ids sorts replicants of one leader by creation. The
//! timestamp is informative only; nothing relies on clocks agreeing.

use std::fmt;
use std::sync::Mutex;

/// The prefix every meta-identifier starts with.
pub const PREFIX: &str = "gm-";
/// Length of a meta-identifier (prefix included).
pub const LEN: usize = 3 + 26;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const RANDOM_MASK: u128 = (1u128 << 80) - 1;

/// A meta-identifier (always in canonical form).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetaId(String);

fn decode_char(c: u8) -> Option<u8> {
    let c = c.to_ascii_lowercase();
    // Crockford's decoding aliases are not accepted: one spelling per id.
    ALPHABET
        .iter()
        .position(|&a| a == c)
        .and_then(|p| u8::try_from(p).ok())
}

impl MetaId {
    /// Parses a meta-identifier; upper-case letters are accepted and
    /// normalised. `None` for anything else (the caller then treats the text
    /// as a possible local identifier).
    pub fn parse(s: &str) -> Option<MetaId> {
        if s.len() != LEN || !s.is_char_boundary(3) {
            return None;
        }
        let (prefix, body) = s.split_at(3);
        if !prefix.eq_ignore_ascii_case(PREFIX) {
            return None;
        }
        let b = body.as_bytes();
        // 26 base32 chars hold 130 bits: the first must be 0..=7 (128 bits).
        if decode_char(*b.first()?)? > 7 {
            return None;
        }
        let mut out = String::with_capacity(LEN);
        out.push_str(PREFIX);
        for &c in b {
            decode_char(c)?;
            out.push(char::from(c.to_ascii_lowercase()));
        }
        Some(MetaId(out))
    }

    /// Builds the id of a 128-bit ULID value.
    pub fn from_u128(v: u128) -> MetaId {
        let mut out = String::with_capacity(LEN);
        out.push_str(PREFIX);
        for i in (0..26).rev() {
            let idx = usize::try_from((v >> (5 * i)) & 31).unwrap_or(0);
            out.push(char::from(ALPHABET.get(idx).copied().unwrap_or(b'0')));
        }
        MetaId(out)
    }

    /// The 128-bit value.
    pub fn to_u128(&self) -> u128 {
        self.0.bytes().skip(3).fold(0u128, |acc, c| {
            (acc << 5) | u128::from(decode_char(c).unwrap_or(0))
        })
    }

    /// The creation time it carries (Unix ms, by the generating agent's clock).
    pub fn timestamp_ms(&self) -> u64 {
        u64::try_from(self.to_u128() >> 80).unwrap_or(u64::MAX)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MetaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for MetaId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for MetaId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MetaId::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not a meta-identifier: {s:?}")))
    }
}

/// Generates meta-identifiers (monotonic per generator).
#[derive(Debug, Default)]
pub struct Generator {
    last: Mutex<(u64, u128)>,
}

/// Randomness for the generator failed (no entropy source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntropyError(pub String);

impl fmt::Display for EntropyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no randomness for a meta-identifier: {}", self.0)
    }
}

impl std::error::Error for EntropyError {}

fn random80() -> Result<u128, EntropyError> {
    let mut buf = [0u8; 10];
    getrandom::fill(&mut buf).map_err(|e| EntropyError(e.to_string()))?;
    Ok(buf.iter().fold(0u128, |acc, &b| (acc << 8) | u128::from(b)))
}

impl Generator {
    /// A new generator.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next id at `now_ms` (Unix ms). A clock that goes backwards keeps
    /// the last timestamp, so ids stay increasing.
    pub fn generate(&self, now_ms: u64) -> Result<MetaId, EntropyError> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ms & ((1u64 << 48) - 1);
        let (ms, rand) = if now > last.0 {
            (now, random80()?)
        } else if last.1 < RANDOM_MASK {
            (last.0, last.1 + 1)
        } else {
            // 2^80 ids in one millisecond: borrow the next millisecond.
            (last.0 + 1, random80()?)
        };
        *last = (ms, rand);
        Ok(MetaId::from_u128(
            (u128::from(ms) << 80) | (rand & RANDOM_MASK),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_round_trip_and_timestamp() {
        let g = Generator::new();
        let id = g.generate(1_732_000_000_123).unwrap();
        let s = id.as_str();
        assert_eq!(s.len(), LEN);
        assert!(s.starts_with("gm-"));
        assert!(s[3..].bytes().all(|c| ALPHABET.contains(&c)), "{s}");
        assert_eq!(id.timestamp_ms(), 1_732_000_000_123);
        assert_eq!(MetaId::parse(s), Some(id.clone()));
        assert_eq!(
            MetaId::parse(&s.to_ascii_uppercase()),
            Some(id.clone()),
            "upper case normalised"
        );
        assert_eq!(MetaId::from_u128(id.to_u128()), id);
        let v: MetaId = serde_json::from_str(&serde_json::to_string(&id).unwrap()).unwrap();
        assert_eq!(v, id);
    }

    #[test]
    fn rejects_what_is_not_a_meta_id() {
        for s in [
            "",
            "gm-",
            "42",
            "gm-01jdx7k2m9c4v8q3r5t6w7y8z",   // 25 chars
            "gm-01jdx7k2m9c4v8q3r5t6w7y8z00", // 27
            "xx-01jdx7k2m9c4v8q3r5t6w7y8z0",
            "gm-01jdx7k2m9c4v8q3r5t6w7y8zu", // u is not in the alphabet
            "gm-81jdx7k2m9c4v8q3r5t6w7y8z0", // over 128 bits
            "gm-01jdx7k2m9c4v8q3r5t6w7y8zé",
        ] {
            assert_eq!(MetaId::parse(s), None, "{s:?}");
        }
        assert!(serde_json::from_str::<MetaId>("\"42\"").is_err());
    }

    #[test]
    fn monotonic_within_a_millisecond_and_when_the_clock_goes_back() {
        let g = Generator::new();
        let mut prev = g.generate(1000).unwrap();
        for now in [1000, 1000, 999, 500, 1000, 1001, 1001] {
            let id = g.generate(now).unwrap();
            assert!(id > prev, "{id} after {prev}");
            prev = id;
        }
        assert_eq!(prev.timestamp_ms(), 1001);
    }

    #[test]
    fn two_generators_do_not_collide() {
        let (a, b) = (Generator::new(), Generator::new());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5000 {
            assert!(seen.insert(a.generate(7).unwrap()));
            assert!(seen.insert(b.generate(7).unwrap()));
        }
    }
}
