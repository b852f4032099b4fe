//! Consistent hashing over a list of clusters.
//!
//! The algorithm is part of the configuration contract: a change of algorithm moves keys between
//! shards, i.e. loses data from the client's point of view. Every algorithm therefore carries a
//! version in its name, is frozen once released, and is pinned by golden tests (`tests` below);
//! a new algorithm gets a new name.
//!
//! ## `rendezvous-v1` (the default)
//!
//! Highest-random-weight (rendezvous) hashing, Thaler & Ravishankar 1998:
//!
//! ```text
//! k        = fnv1a64(shard_key)
//! s_i      = fnv1a64(cluster_name_i)
//! score_i  = fmix64(k XOR s_i)          (MurmurHash3's 64-bit finaliser)
//! cluster  = the cluster with the highest score; ties go to the one listed first
//! ```
//!
//! Properties: the choice does not depend on the order of the list; adding a cluster to N moves
//! only the keys the new cluster wins (1/(N+1) in expectation), all of them to the new cluster;
//! removing one moves only its own keys. The cost is O(N) per key, fine for the tens of shards a
//! sidecar routes to.

/// A frozen, named consistent-hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// See the module documentation.
    RendezvousV1,
}

impl HashAlgorithm {
    /// Every algorithm name the configuration accepts.
    pub const NAMES: &'static [&'static str] = &["rendezvous-v1"];

    /// The algorithm a `hash` route uses when its `algorithm` field is absent.
    pub const DEFAULT: HashAlgorithm = HashAlgorithm::RendezvousV1;

    /// Looks an algorithm up by its configuration name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "rendezvous-v1" => Some(Self::RendezvousV1),
            _ => None,
        }
    }

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Self::RendezvousV1 => "rendezvous-v1",
        }
    }
}

/// 64-bit FNV-1a.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's 64-bit finaliser: a bijective avalanche mix.
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// A set of clusters a key is hashed over. Holds indices into the routing table's cluster list.
#[derive(Debug, Clone)]
pub struct HashRing<T: Copy> {
    algorithm: HashAlgorithm,
    members: Vec<(u64, T)>,
    /// The first member's payload (the ring is never empty).
    first: T,
}

impl<T: Copy> HashRing<T> {
    /// Builds a ring from `(cluster name, payload)` pairs. Returns `None` when empty.
    pub fn new<'a>(
        algorithm: HashAlgorithm,
        members: impl IntoIterator<Item = (&'a str, T)>,
    ) -> Option<Self> {
        let members: Vec<(u64, T)> = members
            .into_iter()
            .map(|(name, t)| (fnv1a64(name.as_bytes()), t))
            .collect();
        let first = members.first()?.1;
        Some(Self {
            algorithm,
            members,
            first,
        })
    }

    /// The algorithm of this ring.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    /// The member `key` maps to.
    pub fn pick(&self, key: &[u8]) -> T {
        match self.algorithm {
            HashAlgorithm::RendezvousV1 => {
                let k = fnv1a64(key);
                let mut best = self.first;
                let mut best_score = 0u64;
                let mut first = true;
                for &(seed, t) in &self.members {
                    let score = fmix64(k ^ seed);
                    if first || score > best_score {
                        best = t;
                        best_score = score;
                        first = false;
                    }
                }
                best
            }
        }
    }

    /// The payloads in configuration order.
    pub fn members(&self) -> impl Iterator<Item = T> + '_ {
        self.members.iter().map(|&(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use proptest::prelude::*;

    fn ring(names: &[&'static str]) -> HashRing<&'static str> {
        HashRing::new(HashAlgorithm::RendezvousV1, names.iter().map(|n| (*n, *n))).unwrap()
    }

    /// Golden values: if this test changes, keys move between shards in production.
    #[test]
    fn rendezvous_v1_golden() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        let r = ring(&["redis1-master", "redis2-master", "redis3-master"]);
        let got: Vec<&str> = ["user:1", "user:2", "user:3", "cart:9", "k", "", "{tag}x"]
            .iter()
            .map(|k| r.pick(k.as_bytes()))
            .collect();
        assert_eq!(got, GOLDEN);
    }

    /// Computed independently (a 15-line Python transcription of the module doc) and frozen.
    const GOLDEN: [&str; 7] = [
        "redis2-master",
        "redis1-master",
        "redis3-master",
        "redis2-master",
        "redis3-master",
        "redis1-master",
        "redis1-master",
    ];

    #[test]
    fn order_of_members_does_not_matter() {
        let a = ring(&["a", "b", "c", "d"]);
        let b = ring(&["d", "c", "b", "a"]);
        for i in 0..2000u32 {
            let k = format!("key:{i}");
            assert_eq!(a.pick(k.as_bytes()), b.pick(k.as_bytes()));
        }
    }

    #[test]
    fn spread_is_even() {
        let r = ring(&["a", "b", "c", "d"]);
        let mut counts = std::collections::HashMap::new();
        let n = 40_000;
        for i in 0..n {
            *counts.entry(r.pick(format!("k{i}").as_bytes())).or_insert(0u32) += 1;
        }
        for (_, c) in counts {
            let share = f64::from(c) / f64::from(n);
            assert!((share - 0.25).abs() < 0.02, "share {share}");
        }
    }

    proptest! {
        /// Adding a cluster to N moves about 1/(N+1) of the keys, all of them to the new cluster.
        #[test]
        fn adding_a_cluster_moves_about_one_nth(n in 1usize..12, salt in any::<u32>()) {
            let names: Vec<String> = (0..=n).map(|i| format!("cluster-{salt}-{i}")).collect();
            let before = HashRing::new(HashAlgorithm::RendezvousV1,
                names[..n].iter().map(|s| (s.as_str(), s.as_str()))).unwrap();
            let after = HashRing::new(HashAlgorithm::RendezvousV1,
                names.iter().map(|s| (s.as_str(), s.as_str()))).unwrap();
            let keys = 4000;
            let mut moved = 0;
            for i in 0..keys {
                let k = format!("{salt}:{i}");
                let (b, a) = (before.pick(k.as_bytes()), after.pick(k.as_bytes()));
                if a != b {
                    moved += 1;
                    prop_assert_eq!(a, names[n].as_str(), "a key moved between old clusters");
                }
            }
            let share = f64::from(moved) / f64::from(keys);
            let expected = 1.0 / (n as f64 + 1.0);
            prop_assert!((share - expected).abs() < 0.05 + expected * 0.25,
                "moved {} of {} keys, expected about {}", moved, keys, expected);
        }

        /// Removing a cluster moves only that cluster's keys.
        #[test]
        fn removing_a_cluster_moves_only_its_keys(n in 2usize..10, gone in 0usize..10) {
            let gone = gone % n;
            let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            let before = HashRing::new(HashAlgorithm::RendezvousV1,
                names.iter().map(|s| (s.as_str(), s.as_str()))).unwrap();
            let after = HashRing::new(HashAlgorithm::RendezvousV1,
                names.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, s)| (s.as_str(), s.as_str()))).unwrap();
            for i in 0..2000 {
                let k = format!("x{i}");
                let b = before.pick(k.as_bytes());
                if b != names[gone].as_str() {
                    prop_assert_eq!(after.pick(k.as_bytes()), b);
                }
            }
        }
    }
}
