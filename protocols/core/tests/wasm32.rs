//! The routing core on wasm32-unknown-unknown (32-bit `usize`), where the filters run inside
//! Envoy's V8 (scripts/test-wasm.sh, `make test-wasm`). The crate's unit tests run there too;
//! these pin what must not depend on the word size: every route type's decisions over many keys
//! and the consistent hash, against fingerprints taken natively (x86_64).
#![cfg(target_arch = "wasm32")]

use geomesh_core::hash::{fnv1a64, HashRing};
use geomesh_core::route::hash_tag;
use geomesh_core::{Config, HashAlgorithm, RoutingTable};
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Every route type, hash tags on, a hash route with five members, `*`.
const CONFIG: &str = "\
workload_type: redis
default_cluster: d
local_cluster: d
routing_table:
  user: {type: key, cluster: k1}
  'user:vip': {type: key, cluster: k2}
  tmp: {type: prefix, cluster: p}
  alert: {type: value, cluster: v}
  'alert:critical': {type: value, cluster: v2}
  cart: {type: hash, clusters: [h1, h2, h3, h4, h5]}
  '*': {type: hash, clusters: [s1, s2, s3]}
";

fn keys() -> impl Iterator<Item = Vec<u8>> {
    (0..5000u32).map(|i| {
        let stem = [
            "user", "user:vip", "tmp", "cart", "other", "{cart}", "x{user}", "{}cart", "{user",
        ][i as usize % 9];
        let mut k = format!("{stem}:{i}").into_bytes();
        // Some keys with non-UTF-8 and long tails (hashing must not depend on the word size).
        if i % 7 == 0 {
            k.extend_from_slice(&[0xff, 0x00, 0x80]);
        }
        if i % 97 == 0 {
            k.extend(std::iter::repeat_n(b'z', 70_000));
        }
        k
    })
}

/// FNV-1a over "cluster name NUL route name NUL" of every decision, in order.
fn fingerprint(t: &RoutingTable) -> u64 {
    let mut acc = Vec::new();
    for k in keys() {
        let payload = format!("temperature alert:critical {}", k.len());
        for d in [
            t.decide(Some(&k), None),
            t.decide(Some(&k), Some(payload.as_bytes())),
            t.decide(None, Some(&k)),
        ] {
            acc.extend_from_slice(t.cluster_name(d.cluster).as_bytes());
            acc.push(0);
            acc.extend_from_slice(d.route.unwrap_or("-").as_bytes());
            acc.push(0);
        }
        for c in t.message_clusters(&k) {
            acc.extend_from_slice(t.cluster_name(c).as_bytes());
        }
        acc.push(b'\n');
    }
    fnv1a64(&acc)
}

#[test]
fn usize_is_32_bits_here() {
    assert_eq!(usize::BITS, 32);
}

#[test]
fn every_route_type_decides_as_on_x86_64() {
    let table = RoutingTable::new(&Config::parse(CONFIG.as_bytes()).unwrap()).unwrap();
    assert_eq!(
        fingerprint(&table),
        NATIVE_FINGERPRINT,
        "routing differs from x86_64"
    );
    let no_tags = format!("{CONFIG}hash_tags: false\n");
    let table = RoutingTable::new(&Config::parse(no_tags.as_bytes()).unwrap()).unwrap();
    assert_eq!(
        fingerprint(&table),
        NATIVE_FINGERPRINT_NO_TAGS,
        "routing differs from x86_64"
    );
}

/// Taken with the same code on x86_64 (see `fingerprint`).
const NATIVE_FINGERPRINT: u64 = 3276899109947059644;
const NATIVE_FINGERPRINT_NO_TAGS: u64 = 12121434934287696973;

#[test]
fn consistent_hash_picks_as_on_x86_64() {
    let names: Vec<String> = (0..16).map(|i| format!("redis{i}-master")).collect();
    let ring = HashRing::new(
        HashAlgorithm::RendezvousV1,
        names.iter().map(|n| (n.as_str(), n.as_str())),
    )
    .unwrap();
    let mut acc = Vec::new();
    for k in keys() {
        acc.extend_from_slice(ring.pick(&k).as_bytes());
        acc.push(0);
    }
    assert_eq!(fnv1a64(&acc), NATIVE_RING_FINGERPRINT);
}

const NATIVE_RING_FINGERPRINT: u64 = 9156905950519462100;

#[test]
fn hash_tags_on_long_and_odd_keys() {
    let mut long = vec![b'{'];
    long.extend(std::iter::repeat_n(b'a', 100_000));
    long.push(b'}');
    assert_eq!(hash_tag(&long).map(<[u8]>::len), Some(100_000));
    assert_eq!(
        hash_tag(b"{}{a}"),
        None,
        "the first braces decide, empty means whole key"
    );
    assert_eq!(hash_tag(b"a{b{c}d}"), Some(&b"b{c"[..]));
    assert_eq!(hash_tag(b"}{x}"), Some(&b"x"[..]));
    assert_eq!(hash_tag(b"{\xff\x00}"), Some(&b"\xff\x00"[..]));
}

#[test]
fn large_configurations_parse_and_route() {
    let mut yaml = String::from("workload_type: redis\ndefault_cluster: d\nrouting_table:\n");
    for i in 0..2000 {
        yaml.push_str(&format!("  'tenant{i}': {{cluster: c{}}}\n", i % 50));
    }
    let t = RoutingTable::new(&Config::parse(yaml.as_bytes()).unwrap()).unwrap();
    assert_eq!(t.active_clusters().len(), 51);
    for i in (0..2000).step_by(37) {
        assert_eq!(
            t.cluster_name(t.route(format!("tenant{i}:x").as_bytes())),
            format!("c{}", i % 50)
        );
    }
    assert_eq!(t.cluster_name(t.route(b"tenant2000")), "d");
}
