//! The routing table: shard key (and payload) in, Envoy cluster out.
//!
//! Matching rules, in order:
//! 1. **Hash tag.** With `hash_tags` on, a key holding `{...}` with something between the first
//!    `{` and the next `}` is represented by that part alone (Redis Cluster's rule), for matching
//!    and for hashing: `{user1}:cart` matches the route `user1` and lands with `user1`.
//! 2. **Candidates.** A `key` or `hash` route NAME matches when the shard key equals NAME or
//!    starts with NAME followed by a separator of the table's workload (`:`, `/` or `.`;
//!    for MQTT, whose topic levels are split by `/` only, `/`); a `prefix` route when the key
//!    starts with
//!    NAME; a `value` route when the payload contains NAME; the name `*` (key, prefix and hash
//!    routes) matches any key, as the shortest possible match.
//! 3. **Longest match wins.** Among all matching routes the longest NAME wins; on equal length
//!    `key`/`hash` before `prefix` before `value`.
//! 4. **Default.** Nothing matched: `default_cluster`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::config::{Config, RouteTarget, RouteType, WorkloadType};
use crate::hash::{fnv1a64, HashRing};

/// Index of a cluster in [`RoutingTable::clusters`]. Stable for the life of one table.
///
/// Ids from [`ClusterId::FIRST_ENDPOINT`] up name no table cluster: they are *endpoint links*
/// a session defines itself with [`crate::Action::Bind`] (one endpoint of a cluster, learned
/// at run time, such as a Kafka broker named by Metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(pub u16);

impl ClusterId {
    /// The first id of the endpoint-link range (above [`MAX_CLUSTERS`]).
    pub const FIRST_ENDPOINT: u16 = 0x8000;

    /// As an index.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// Endpoint link number `n` (`n` < 0x8000).
    pub fn endpoint(n: u16) -> Self {
        ClusterId(Self::FIRST_ENDPOINT | (n & 0x7fff))
    }

    /// True for an endpoint link (see [`crate::Action::Bind`]).
    pub fn is_endpoint(self) -> bool {
        self.0 >= Self::FIRST_ENDPOINT
    }
}

/// Characters that end a segment of a `key` route name (Redis keys, and every workload but
/// MQTT).
pub const KEY_SEPARATORS: &[u8] = b":/.";

/// MQTT topic levels are separated by `/` only: `a.b` is one level, and a route `a` does not
/// match the topic `a.b` (it does match `a/b`).
pub const TOPIC_SEPARATORS: &[u8] = b"/";

/// The separators of `key` and `hash` routes for a workload.
pub fn key_separators(workload: WorkloadType) -> &'static [u8] {
    match workload {
        WorkloadType::Mqtt => TOPIC_SEPARATORS,
        WorkloadType::Redis | WorkloadType::Influxdb | WorkloadType::Kafka | WorkloadType::Http | WorkloadType::Line => {
            KEY_SEPARATORS
        }
    }
}

/// The most distinct clusters one table can name.
pub const MAX_CLUSTERS: usize = 4096;

#[derive(Debug, Clone)]
enum Target {
    One(ClusterId),
    Hash(HashRing<ClusterId>),
}

impl Target {
    fn pick(&self, shard_key: &[u8]) -> ClusterId {
        match self {
            Target::One(c) => *c,
            Target::Hash(ring) => ring.pick(shard_key),
        }
    }
}

/// What the router decided, and why (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'t> {
    pub cluster: ClusterId,
    /// The NAME of the route that matched; `None` = `default_cluster`.
    pub route: Option<&'t str>,
}

#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv1a64(bytes) ^ self.0.rotate_left(5);
    }
}

type FastMap<V> = HashMap<Box<[u8]>, V, BuildHasherDefault<Fnv>>;

/// A compiled routing table. Immutable; a new configuration builds a new table.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    /// Every cluster name this table or the tables it succeeded knew, so that a [`ClusterId`]
    /// keeps its meaning across a reconfiguration (connections in flight keep working).
    clusters: Vec<String>,
    /// The clusters this table routes to: default, local, then route targets.
    active: Vec<ClusterId>,
    default: ClusterId,
    local: ClusterId,
    hash_tags: bool,
    /// What ends a segment of a `key` route name ([`key_separators`] of the workload).
    separators: &'static [u8],
    /// `key` and `hash` routes by NAME.
    segments: FastMap<(usize, Target)>,
    /// `prefix` routes by NAME, and the distinct NAME lengths, longest first.
    prefixes: FastMap<(usize, Target)>,
    prefix_lens: Vec<usize>,
    /// `value` routes, longest NAME first.
    values: Vec<(Box<[u8]>, usize, ClusterId)>,
    /// The `*` route, if any, and its kind rank.
    catch_all: Option<(usize, Target)>,
    names: Vec<String>,
}

impl std::fmt::Debug for Fnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fnv")
    }
}

impl RoutingTable {
    /// Compiles the routes of a validated configuration.
    pub fn new(config: &Config) -> Result<Self, crate::config::ConfigError> {
        Self::build(config, Vec::new())
    }

    /// Compiles a configuration that replaces `previous`: cluster ids of `previous` keep their
    /// meaning, so sessions holding connections by id need no translation.
    pub fn succeed(config: &Config, previous: &RoutingTable) -> Result<Self, crate::config::ConfigError> {
        Self::build(config, previous.clusters.clone())
    }

    fn build(config: &Config, known: Vec<String>) -> Result<Self, crate::config::ConfigError> {
        let mut t = RoutingTable {
            clusters: known,
            active: Vec::new(),
            default: ClusterId(0),
            local: ClusterId(0),
            hash_tags: config.hash_tags,
            separators: key_separators(config.workload_type),
            segments: FastMap::default(),
            prefixes: FastMap::default(),
            prefix_lens: Vec::new(),
            values: Vec::new(),
            catch_all: None,
            names: Vec::new(),
        };
        t.default = t.intern(&config.default_cluster)?;
        t.local = t.intern(&config.local_cluster)?;
        for route in &config.routes {
            let route_idx = t.names.len();
            t.names.push(route.name.clone());
            let target = match &route.target {
                RouteTarget::Cluster(c) => Target::One(t.intern(c)?),
                RouteTarget::Hash {
                    clusters,
                    algorithm,
                } => {
                    let mut ids = Vec::with_capacity(clusters.len());
                    for c in clusters {
                        ids.push((c.as_str(), t.intern(c)?));
                    }
                    match HashRing::new(*algorithm, ids) {
                        Some(r) => Target::Hash(r),
                        None => {
                            return Err(crate::config::ConfigError::new(
                                format!("routing_table.{}.clusters", route.name),
                                "empty",
                            ))
                        }
                    }
                }
            };
            let name = route.name.as_bytes();
            if route.name == "*" {
                t.catch_all = Some((route_idx, target));
                continue;
            }
            match route.kind {
                RouteType::Key | RouteType::Hash => {
                    t.segments.insert(name.into(), (route_idx, target));
                }
                RouteType::Prefix => {
                    t.prefixes.insert(name.into(), (route_idx, target));
                    if !t.prefix_lens.contains(&name.len()) {
                        t.prefix_lens.push(name.len());
                    }
                }
                RouteType::Value => {
                    if let Target::One(c) = target {
                        t.values.push((name.into(), route_idx, c));
                    }
                }
            }
        }
        t.prefix_lens.sort_unstable_by(|a, b| b.cmp(a));
        t.values.sort_by_key(|v| std::cmp::Reverse(v.0.len()));
        Ok(t)
    }

    fn intern(&mut self, name: &str) -> Result<ClusterId, crate::config::ConfigError> {
        let id = self.intern_name(name)?;
        if !self.active.contains(&id) {
            self.active.push(id);
        }
        Ok(id)
    }

    fn intern_name(&mut self, name: &str) -> Result<ClusterId, crate::config::ConfigError> {
        if let Some(i) = self.clusters.iter().position(|c| c == name) {
            return Ok(ClusterId(i as u16));
        }
        if self.clusters.len() >= MAX_CLUSTERS {
            return Err(crate::config::ConfigError::new(
                "routing_table",
                format!("more than {MAX_CLUSTERS} distinct clusters"),
            ));
        }
        self.clusters.push(name.to_owned());
        Ok(ClusterId((self.clusters.len() - 1) as u16))
    }

    /// The clusters this table routes to, each once: `default_cluster`, `local_cluster`, then
    /// the route targets in configuration order. Broadcasts go to all of them.
    pub fn active_clusters(&self) -> &[ClusterId] {
        &self.active
    }

    /// The names of [`Self::active_clusters`].
    pub fn active_cluster_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.active.iter().map(|id| self.cluster_name(*id))
    }

    /// The Envoy cluster name of `id`.
    pub fn cluster_name(&self, id: ClusterId) -> &str {
        self.clusters.get(id.index()).map(String::as_str).unwrap_or("")
    }

    /// The id of an Envoy cluster name, if this table routes to it.
    pub fn cluster_id(&self, name: &str) -> Option<ClusterId> {
        self.active.iter().copied().find(|id| self.cluster_name(*id) == name)
    }

    /// `default_cluster`.
    pub fn default_cluster(&self) -> ClusterId {
        self.default
    }

    /// `local_cluster`: this site's instance.
    pub fn local_cluster(&self) -> ClusterId {
        self.local
    }

    /// What ends a segment of a `key` or `hash` route NAME in this table.
    pub fn separators(&self) -> &'static [u8] {
        self.separators
    }

    /// Whether `{tag}` hash tags are honoured.
    pub fn hash_tags(&self) -> bool {
        self.hash_tags
    }

    /// The NAMEs of the `key`, `hash` and `prefix` routes (not `*`, not `value` routes): every
    /// text a shard key can be matched against.
    pub(crate) fn key_side_names(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.segments.keys().chain(self.prefixes.keys()).map(|k| &k[..])
    }

    /// The `value` routes: NAME (looked for in payloads) and cluster, longest NAME first.
    pub(crate) fn value_routes(&self) -> impl Iterator<Item = (&[u8], ClusterId)> + '_ {
        self.values.iter().map(|(name, _, c)| (&name[..], *c))
    }

    /// The clusters a route spreads keys over, when it is a hash route (`*` included).
    pub(crate) fn hash_members(&self, route: &str) -> Option<Vec<ClusterId>> {
        let target = if route == "*" {
            self.catch_all.as_ref().map(|(_, t)| t)
        } else {
            let name = route.as_bytes();
            self.segments
                .get(name)
                .or_else(|| self.prefixes.get(name))
                .map(|(_, t)| t)
        };
        match target? {
            Target::Hash(ring) => Some(ring.members().collect()),
            Target::One(_) => None,
        }
    }

    /// The part of `key` that is matched and hashed (the hash tag when there is one).
    pub fn shard_key<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        if self.hash_tags {
            hash_tag(key).unwrap_or(key)
        } else {
            key
        }
    }

    /// Routes a key.
    pub fn route(&self, key: &[u8]) -> ClusterId {
        self.decide(Some(key), None).cluster
    }

    /// Routes a message by its key and/or its payload (`value` routes look at the payload).
    pub fn route_message(&self, key: Option<&[u8]>, payload: Option<&[u8]>) -> ClusterId {
        self.decide(key, payload).cluster
    }

    /// Every cluster a message published on `channel` can be routed to, whatever its payload:
    /// the channel's own route (or the default), plus each `value` route whose NAME is long
    /// enough to beat it. A subscriber to `channel` must listen on all of them.
    pub fn message_clusters(&self, channel: &[u8]) -> Vec<ClusterId> {
        self.message_clusters_hashed(channel, None)
    }

    /// [`Self::message_clusters`] where a `hash` route hashes `hash_key` rather than `channel`
    /// (see [`Self::decide_hashed`]).
    pub fn message_clusters_hashed(&self, channel: &[u8], hash_key: Option<&[u8]>) -> Vec<ClusterId> {
        let key_side = self.decide_hashed(Some(channel), hash_key, None);
        let matched_len = key_side.route.map(|name| {
            if name == "*" {
                0
            } else {
                name.len()
            }
        });
        let mut out = vec![key_side.cluster];
        for (name, _, cluster) in &self.values {
            // A value route wins over the key side when it is longer (ties go to the key side);
            // over no match at all it always wins.
            let wins = match matched_len {
                None => true,
                Some(len) => name.len() > len,
            };
            if wins && !out.contains(cluster) {
                out.push(*cluster);
            }
        }
        out
    }

    /// Routes and says which route matched.
    pub fn decide(&self, key: Option<&[u8]>, payload: Option<&[u8]>) -> Decision<'_> {
        self.decide_hashed(key, None, payload)
    }

    /// [`Self::decide`] where `key` is matched against the routes' NAMEs but a `hash` route
    /// spreads `hash_key` (when given) over its clusters: for a protocol whose routes name one
    /// thing and whose hash spreads a wider one (InfluxDB: routes name measurements, a hash
    /// route spreads (database, measurement)). `None`: the key is hashed, as by `decide`.
    pub fn decide_hashed(&self, key: Option<&[u8]>, hash_key: Option<&[u8]>, payload: Option<&[u8]>) -> Decision<'_> {
        // (name length, rank, route index, cluster): larger is better.
        type Best = Option<(usize, u8, usize, ClusterId)>;
        fn offer(best: &mut Best, len: usize, rank: u8, idx: usize, c: ClusterId) {
            if best.is_none_or(|(l, r, _, _)| (len, rank) > (l, r)) {
                *best = Some((len, rank, idx, c));
            }
        }
        let mut best: Best = None;
        if let Some(key) = key {
            let sk = self.shard_key(key);
            let hk = hash_key.unwrap_or(sk);
            if !self.segments.is_empty() {
                // The whole key, then every prefix ending before a separator, longest first.
                if let Some((idx, t)) = self.segments.get(sk) {
                    offer(&mut best, sk.len(), 3, *idx, t.pick(hk));
                } else {
                    let mut end = sk.len();
                    while let Some((pos, head)) = sk.get(..end).and_then(|s| {
                        let pos = s.iter().rposition(|b| self.separators.contains(b))?;
                        Some((pos, s.get(..pos)?))
                    }) {
                        if let Some((idx, t)) = self.segments.get(head) {
                            offer(&mut best, pos, 3, *idx, t.pick(hk));
                            break;
                        }
                        end = pos;
                    }
                }
            }
            for &len in &self.prefix_lens {
                if let Some(head) = sk.get(..len) {
                    if let Some((idx, t)) = self.prefixes.get(head) {
                        offer(&mut best, len, 2, *idx, t.pick(hk));
                        break;
                    }
                }
            }
            if best.is_none() {
                if let Some((idx, t)) = &self.catch_all {
                    offer(&mut best, 0, 3, *idx, t.pick(hk));
                }
            }
        }
        if let Some(payload) = payload {
            for (name, idx, c) in &self.values {
                if best.is_some_and(|(l, _, _, _)| l > name.len()) {
                    break;
                }
                if memchr::memmem::find(payload, name).is_some() {
                    offer(&mut best, name.len(), 1, *idx, *c);
                    break;
                }
            }
        }
        match best {
            Some((_, _, idx, cluster)) => Decision {
                cluster,
                route: self.names.get(idx).map(String::as_str),
            },
            None => Decision {
                cluster: self.default,
                route: None,
            },
        }
    }
}

/// Redis Cluster's hash tag: the bytes between the first `{` and the first `}` after it, when
/// there is at least one byte between them.
pub fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = memchr::memchr(b'{', key)?;
    let rest = key.get(open + 1..)?;
    let close = memchr::memchr(b'}', rest)?;
    if close == 0 {
        None
    } else {
        rest.get(..close)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::config::tests::ECHARDE;
    use crate::hash::HashAlgorithm;
    use crate::config::Config;

    fn table(yaml: &str) -> RoutingTable {
        RoutingTable::new(&Config::parse(yaml.as_bytes()).unwrap()).unwrap()
    }

    fn name(t: &RoutingTable, key: &str) -> String {
        t.cluster_name(t.route(key.as_bytes())).to_owned()
    }

    #[test]
    fn echarde_table() {
        let t = table(ECHARDE);
        assert_eq!(name(&t, "user1"), "redis2-master");
        assert_eq!(name(&t, "user1:profile"), "redis2-master");
        assert_eq!(name(&t, "user1/x"), "redis2-master");
        assert_eq!(name(&t, "user1.x"), "redis2-master");
        assert_eq!(name(&t, "user10"), "redis1-master", "key routes match whole segments only");
        assert_eq!(name(&t, "user2"), "redis1-master");
        assert_eq!(name(&t, "alert"), "redis1-master", "value routes look at payloads, not keys");
        let c = t.route_message(Some(b"sensors"), Some(b"temperature alert: 90C"));
        assert_eq!(t.cluster_name(c), "redis2-master");
        let c = t.route_message(Some(b"sensors"), Some(b"temperature 20C"));
        assert_eq!(t.cluster_name(c), "redis1-master");
        assert_eq!(t.active_cluster_names().collect::<Vec<_>>(), ["redis1-master", "redis2-master"]);
    }

    #[test]
    fn decide_hashed_matches_the_key_and_hashes_the_hash_key() {
        let t = table("workload_type: influxdb\ndefault_cluster: d\nrouting_table:\n  cpu: {type: hash, clusters: [a, b, c]}\n  mem: {cluster: m}\n  '*': {type: hash, clusters: [a, b]}\n");
        let ring = HashRing::new(HashAlgorithm::DEFAULT, [("a", 0u8), ("b", 1), ("c", 2)]).unwrap();
        let star = HashRing::new(HashAlgorithm::DEFAULT, [("a", 0u8), ("b", 1)]).unwrap();
        let abc = ["a", "b", "c"];
        let mut seen = Vec::new();
        for db in ["db0", "db1", "db2", "db3", "db4", "db5"] {
            let hk = format!("{db}\0cpu");
            let d = t.decide_hashed(Some(b"cpu"), Some(hk.as_bytes()), None);
            assert_eq!(d.route, Some("cpu"), "matched by the key");
            assert_eq!(t.cluster_name(d.cluster), abc[usize::from(ring.pick(hk.as_bytes()))], "hashed by the hash key");
            seen.push(d.cluster);
            // A route naming one cluster ignores the hash key; `*` hashes it.
            assert_eq!(t.cluster_name(t.decide_hashed(Some(b"mem"), Some(hk.as_bytes()), None).cluster), "m");
            let hk = format!("{db}\0net");
            let d = t.decide_hashed(Some(b"net"), Some(hk.as_bytes()), None);
            assert_eq!(t.cluster_name(d.cluster), abc[usize::from(star.pick(hk.as_bytes()))]);
            assert_eq!(t.message_clusters_hashed(b"net", Some(hk.as_bytes())), [d.cluster]);
        }
        seen.dedup();
        assert!(seen.len() > 1, "one measurement of several databases spreads");
        assert_eq!(t.decide_hashed(Some(b"cpu"), None, None), t.decide(Some(b"cpu"), None));
    }

    #[test]
    fn mqtt_key_routes_split_on_slash_only() {
        let routes = "default_cluster: d\nrouting_table:\n  user1: {cluster: u}\n  'a.b': {cluster: ab}\n";
        let mqtt = table(&format!("workload_type: mqtt\n{routes}"));
        assert_eq!(mqtt.separators(), b"/");
        assert_eq!(name(&mqtt, "user1"), "u");
        assert_eq!(name(&mqtt, "user1/x/y"), "u");
        assert_eq!(name(&mqtt, "user1.x"), "d", "`.` is part of an MQTT topic level");
        assert_eq!(name(&mqtt, "user1:x"), "d", "`:` is part of an MQTT topic level");
        assert_eq!(name(&mqtt, "a.b/c"), "ab");
        assert_eq!(name(&mqtt, "a.bc"), "d");
        // The same routes for Redis keep splitting on `:`, `/` and `.`.
        let redis = table(&format!("workload_type: redis\n{routes}"));
        assert_eq!(redis.separators(), b":/.");
        for key in ["user1", "user1/x", "user1.x", "user1:x"] {
            assert_eq!(name(&redis, key), "u", "{key}");
        }
        for workload in ["influxdb", "kafka", "http", "line"] {
            let t = table(&format!("workload_type: {workload}\n{routes}"));
            assert_eq!(t.separators(), KEY_SEPARATORS, "{workload}");
        }
    }

    #[test]
    fn prefix_routes_match_raw_prefixes() {
        let t = table("workload_type: redis\ndefault_cluster: d\nrouting_table:\n  tmp: {type: prefix, cluster: p}\n");
        assert_eq!(name(&t, "tmp"), "p");
        assert_eq!(name(&t, "tmpfile"), "p");
        assert_eq!(name(&t, "tm"), "d");
    }

    #[test]
    fn longest_match_wins_across_kinds() {
        let t = table(
            "workload_type: redis\ndefault_cluster: d\nrouting_table:\n  a: {cluster: k1}\n  'a:b': {cluster: k2}\n  'a:b:c': {cluster: k3}\n  'a:bx': {type: prefix, cluster: p1}\n  '*': {cluster: star}\n",
        );
        assert_eq!(name(&t, "a"), "k1");
        assert_eq!(name(&t, "a:z"), "k1");
        assert_eq!(name(&t, "a:b"), "k2");
        assert_eq!(name(&t, "a:b:x"), "k2");
        assert_eq!(name(&t, "a:b:c:d"), "k3");
        assert_eq!(name(&t, "a:bxy"), "p1");
        assert_eq!(name(&t, "zzz"), "star");
        let d = t.decide(Some(b"a:b:c"), None);
        assert_eq!(d.route, Some("a:b:c"));
    }

    #[test]
    fn ties_prefer_key_over_value() {
        let t = table("workload_type: redis\ndefault_cluster: d\nrouting_table:\n  abc: {cluster: k}\n  xyz: {type: value, cluster: v}\n  xy: {type: value, cluster: v2}\n");
        assert_eq!(t.cluster_name(t.route_message(Some(b"abc"), Some(b"..xyz.."))), "k");
        assert_eq!(t.cluster_name(t.route_message(Some(b"ab"), Some(b"..xyz.."))), "v", "longest value wins");
        assert_eq!(t.cluster_name(t.route_message(None, Some(b"..xy.."))), "v2");
        assert_eq!(t.cluster_name(t.route_message(None, Some(b"nothing"))), "d");
    }

    #[test]
    fn hash_tags_select_what_is_matched_and_hashed() {
        let t = table(ECHARDE);
        assert_eq!(name(&t, "{user1}:cart"), "redis2-master");
        assert_eq!(name(&t, "x{user1}y"), "redis2-master");
        assert_eq!(name(&t, "{}user1"), "redis1-master", "empty tag: whole key");
        assert_eq!(name(&t, "{user1"), "redis1-master", "unclosed tag: whole key");
        let off = table(&format!("{ECHARDE}hash_tags: false\n"));
        assert_eq!(name(&off, "{user1}:cart"), "redis1-master");

        let h = table("workload_type: redis\ndefault_cluster: d\nrouting_table:\n  '*': {type: hash, clusters: [a, b, c, e]}\n");
        for i in 0..200 {
            let tag = format!("t{i}");
            let a = name(&h, &format!("{{{tag}}}:one"));
            let b = name(&h, &format!("other{{{tag}}}"));
            assert_eq!(a, b);
            assert_eq!(a, name(&h, &tag));
        }
    }

    #[test]
    fn hash_route_spreads_keys_and_is_the_documented_algorithm() {
        let t = table("workload_type: redis\ndefault_cluster: d\nrouting_table:\n  users: {type: hash, clusters: [a, b]}\n");
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..100 {
            seen.insert(name(&t, &format!("users:{i}")));
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(name(&t, "others:1"), "d");
        let ring = HashRing::new(crate::hash::HashAlgorithm::RendezvousV1, [("a", "a"), ("b", "b")]).unwrap();
        for i in 0..100 {
            let k = format!("users:{i}");
            assert_eq!(name(&t, &k), ring.pick(k.as_bytes()), "the whole key is hashed");
        }
    }

    #[test]
    fn defaults_and_local() {
        let t = table("workload_type: redis\ndefault_cluster: d\nlocal_cluster: l\n");
        assert_eq!(name(&t, "anything"), "d");
        assert_eq!(t.cluster_name(t.local_cluster()), "l");
        assert_eq!(t.cluster_name(t.route_message(None, None)), "d");
    }

    #[test]
    fn a_successor_table_keeps_cluster_ids() {
        let a = table("workload_type: redis\ndefault_cluster: d\nrouting_table:\n  u: {cluster: x}\n  v: {cluster: y}\n");
        let cfg = Config::parse(b"workload_type: redis\ndefault_cluster: z\nrouting_table:\n  u: {cluster: y}\n").unwrap();
        let b = RoutingTable::succeed(&cfg, &a).unwrap();
        for name in ["d", "x", "y"] {
            let id = a.cluster_id(name).unwrap();
            assert_eq!(b.cluster_name(id), name, "ids of the old table still name the same cluster");
        }
        assert_eq!(b.active_cluster_names().collect::<Vec<_>>(), ["z", "y"]);
        assert_eq!(b.cluster_id("x"), None, "x is no longer routed to");
        assert_eq!(b.cluster_name(b.route(b"u")), "y");
    }

    #[test]
    fn message_clusters_cover_every_possible_payload() {
        let t = table("workload_type: redis\ndefault_cluster: d\nrouting_table:\n  news: {cluster: k}\n  alert: {type: value, cluster: v}\n  ab: {type: value, cluster: short}\n");
        let names = |ch: &str| -> Vec<String> {
            t.message_clusters(ch.as_bytes()).iter().map(|c| t.cluster_name(*c).to_owned()).collect()
        };
        // "news" (4) is beaten by "alert" (5) but not by "ab" (2).
        assert_eq!(names("news"), ["k", "v"]);
        // No key route: every value route can win, else the default.
        assert_eq!(names("other"), ["d", "v", "short"]);
        // Whatever the payload, route_message lands in the set.
        for payload in ["", "alert!", "ab", "x ab alert"] {
            for ch in ["news", "other", "news:sub"] {
                let c = t.route_message(Some(ch.as_bytes()), Some(payload.as_bytes()));
                assert!(t.message_clusters(ch.as_bytes()).contains(&c), "{ch} {payload}");
            }
        }
    }

    #[test]
    fn hash_tag_rule() {
        assert_eq!(hash_tag(b"{a}b"), Some(&b"a"[..]));
        assert_eq!(hash_tag(b"x{a}{b}"), Some(&b"a"[..]));
        assert_eq!(hash_tag(b"{}{a}"), None);
        assert_eq!(hash_tag(b"}{a"), None);
        assert_eq!(hash_tag(b"{a{b}"), Some(&b"a{b"[..]));
        assert_eq!(hash_tag(b""), None);
    }
}
