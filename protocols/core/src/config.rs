//! The filter configuration: Écharde's shape, extended and never broken.
//!
//! ```yaml
//! workload_type: redis            # redis | mqtt | influxdb | kafka | http
//! type_proxy: downstream          # downstream | upstream (where the sidecar sits; informational)
//! default_cluster: redis1-master  # where keys no route matches go
//! local_cluster: redis1-master    # this site's instance (keyless commands that need one server)
//! routing_table:
//!   user1:  { type: key, cluster: redis2-master }
//!   alert:  { type: value, cluster: redis2-master }
//!   "tmp:": { type: prefix, cluster: redis3-master }
//!   "*":    { type: hash, clusters: [redis1-master, redis2-master], algorithm: rendezvous-v1 }
//! # extensions (all optional)
//! hash_tags: true                 # honour Redis-style {tag} in keys (default: true for redis only)
//! upstream_timeout_ms: 5000       # a shard that does not answer within this gets an error reply
//! stat_prefix: geomesh            # Envoy stats: <workload_type>.<stat_prefix>.command.get.total ...
//! redis: { ... }                  # a section named after workload_type, parsed by its protocol crate
//! ```
//!
//! The text is YAML (Envoy hands it over as the `google.protobuf.StringValue` of the filter's
//! `configuration`); JSON is YAML, so JSON works too. Every error names the field at fault.
//!
//! Every field is declared once, in [`tables`] (the core's) and in each protocol crate's section
//! table ([`spec`] says how): the parsers read names, ranges, defaults and rules from those
//! tables, and `tools/config-schema` writes `schema/geomesh-filter.schema.json` from them.

use std::collections::BTreeMap;
use std::fmt;

use serde_yaml_ng::{Mapping, Value};

use crate::hash::HashAlgorithm;

pub mod fields;
pub mod spec;
pub mod tables;

use fields::{as_map, key_str, list, opt_str, req_str};
use spec::Text;
use tables::{DOCUMENT, ROUTE};

/// Which protocol a filter instance speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadType {
    Redis,
    Mqtt,
    Influxdb,
    Kafka,
    Http,
    /// The line protocol used only by tests (protocols/line): the kit's end-to-end proof.
    Line,
}

impl WorkloadType {
    /// Every `workload_type` the configuration accepts.
    pub const NAMES: &'static [&'static str] = &["redis", "mqtt", "influxdb", "kafka", "http", "line"];

    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "redis" => Self::Redis,
            "mqtt" => Self::Mqtt,
            "influxdb" => Self::Influxdb,
            "kafka" => Self::Kafka,
            "http" => Self::Http,
            "line" => Self::Line,
            _ => return None,
        })
    }

    /// The configuration name, also the key of the protocol's own section.
    pub fn name(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Mqtt => "mqtt",
            Self::Influxdb => "influxdb",
            Self::Kafka => "kafka",
            Self::Http => "http",
            Self::Line => "line",
        }
    }
}

/// Where the sidecar sits relative to the support service (Écharde's `type_proxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeProxy {
    /// Beside the client (outbound listener). Écharde's default.
    Downstream,
    /// Beside the server (inbound listener).
    Upstream,
}

impl TypeProxy {
    /// Every `type_proxy` the configuration accepts.
    pub const NAMES: &'static [&'static str] = &["downstream", "upstream"];

    fn from_name(s: &str) -> Option<Self> {
        match s {
            "downstream" => Some(Self::Downstream),
            "upstream" => Some(Self::Upstream),
            _ => None,
        }
    }
}

/// How a routing-table entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteType {
    /// The shard key equals NAME, or starts with NAME followed by a separator: `:`, `/` or `.`,
    /// or for MQTT (topic levels) `/` only ([`crate::route::key_separators`]).
    Key,
    /// The shard key starts with NAME (raw byte prefix).
    Prefix,
    /// The message payload contains NAME.
    Value,
    /// Like `key`, but the target is a set of clusters the shard key is hashed over.
    Hash,
}

impl RouteType {
    /// Every route `type` the configuration accepts.
    pub const NAMES: &'static [&'static str] = &["key", "prefix", "value", "hash"];

    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "key" => Self::Key,
            "prefix" => Self::Prefix,
            "value" => Self::Value,
            "hash" => Self::Hash,
            _ => return None,
        })
    }

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Prefix => "prefix",
            Self::Value => "value",
            Self::Hash => "hash",
        }
    }
}

/// Where a route sends what it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// One Envoy cluster.
    Cluster(String),
    /// A set of Envoy clusters and the frozen algorithm that spreads keys over them.
    Hash {
        clusters: Vec<String>,
        algorithm: HashAlgorithm,
    },
}

/// One entry of `routing_table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub name: String,
    pub kind: RouteType,
    pub target: RouteTarget,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub workload_type: WorkloadType,
    pub type_proxy: TypeProxy,
    pub default_cluster: String,
    pub local_cluster: String,
    /// In the order of the YAML map (sorted by name: YAML maps have no order of their own that
    /// matters here, matching is by longest name).
    pub routes: Vec<RouteSpec>,
    pub hash_tags: bool,
    pub upstream_timeout_ms: u32,
    /// The second segment of this filter's stat names (`redis.<stat_prefix>.command.get.total`),
    /// as Envoy's native filters' `stat_prefix`. Default [`DEFAULT_STAT_PREFIX`].
    pub stat_prefix: String,
    /// The section named after `workload_type`, for the protocol crate to validate.
    pub extension: Option<Value>,
}

/// A rejected configuration: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field at fault (`routing_table.user1.cluster`); empty for the document.
    pub field: String,
    pub message: String,
}

impl ConfigError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "invalid configuration: {}", self.message)
        } else {
            write!(f, "invalid configuration: `{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// `stat_prefix` when the configuration names none.
pub const DEFAULT_STAT_PREFIX: &str = "geomesh";

pub use spec::MAX_STAT_PREFIX;

/// The largest configuration text accepted (a routing table of some ten thousand entries).
pub const MAX_CONFIG_BYTES: usize = 4 << 20;

impl Config {
    /// Parses and validates a configuration text (YAML or JSON).
    pub fn parse(text: &[u8]) -> Result<Self, ConfigError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::new(
                "",
                format!("{} bytes is over the limit of {MAX_CONFIG_BYTES}", text.len()),
            ));
        }
        let text = std::str::from_utf8(text)
            .map_err(|e| ConfigError::new("", format!("not UTF-8: {e}")))?;
        if text.trim().is_empty() {
            return Err(ConfigError::new(
                "",
                "empty; expected a map with at least `workload_type` and `default_cluster`",
            ));
        }
        let doc: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError::new("", format!("not valid YAML or JSON: {e}")))?;
        Self::from_value(&doc)
    }

    /// Validates an already parsed document.
    pub fn from_value(doc: &Value) -> Result<Self, ConfigError> {
        let map = as_map(doc, "")?;
        let workload_name = req_str(map, "workload_type", "")?;
        let workload_type = WorkloadType::from_name(workload_name).ok_or_else(|| {
            ConfigError::new(
                "workload_type",
                format!("unknown workload `{workload_name}`; expected one of {}", list(WorkloadType::NAMES)),
            )
        })?;
        for (k, _) in map {
            let k = key_str(k, "")?;
            if DOCUMENT.field(k).is_none() && k != workload_type.name() {
                let names: Vec<&str> = DOCUMENT.names().collect();
                return Err(ConfigError::new(
                    k,
                    format!(
                        "unknown field; expected one of {}, or `{}` for the {} section",
                        list(&names),
                        workload_type.name(),
                        workload_type.name()
                    ),
                ));
            }
        }
        let type_proxy_name = opt_str(map, "type_proxy", "")?
            .or(DOCUMENT.declared("type_proxy", "")?.default_text())
            .unwrap_or_default();
        let type_proxy = TypeProxy::from_name(type_proxy_name).ok_or_else(|| {
            ConfigError::new(
                "type_proxy",
                format!("unknown value `{type_proxy_name}`; expected `downstream` or `upstream`"),
            )
        })?;
        let default_cluster = cluster_name(req_str(map, "default_cluster", "")?, "default_cluster")?;
        let local_cluster = match opt_str(map, "local_cluster", "")? {
            Some(s) => cluster_name(s, "local_cluster")?,
            None => default_cluster.clone(),
        };
        let hash_tags = match get(map, "hash_tags") {
            // A Redis convention: other workloads (an MQTT topic `{a}/b`) opt in explicitly.
            None => workload_type == WorkloadType::Redis,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ConfigError::new("hash_tags", "expected true or false")),
        };
        let upstream_timeout_ms = match get(map, "upstream_timeout_ms") {
            None => DOCUMENT.int(map, "upstream_timeout_ms", "")?,
            Some(v) => DOCUMENT.declared("upstream_timeout_ms", "")?
                .int_value(v, "upstream_timeout_ms")
                .map_err(|e| ConfigError::new(e.field, e.message.replace("an integer", "an integer of milliseconds")))?,
        } as u32;
        let stat_prefix = match get(map, "stat_prefix") {
            None => DOCUMENT
                .declared("stat_prefix", "")?
                .default_text()
                .unwrap_or(DEFAULT_STAT_PREFIX)
                .to_owned(),
            Some(v) => stat_prefix(v)?.to_owned(),
        };
        let routes = match get(map, "routing_table") {
            None => Vec::new(),
            Some(v) => parse_routes(v)?,
        };
        let extension = get(map, workload_type.name()).cloned();
        Ok(Self {
            workload_type,
            type_proxy,
            default_cluster,
            local_cluster,
            routes,
            hash_tags,
            upstream_timeout_ms,
            stat_prefix,
            extension,
        })
    }

    /// The `stat_prefix` a configuration text names, if it can be read and is valid, even when
    /// the configuration is rejected for another field: a host counts the rejection under it.
    pub fn stat_prefix_of(text: &[u8]) -> Option<String> {
        if text.len() > MAX_CONFIG_BYTES {
            return None;
        }
        let doc: Value = serde_yaml_ng::from_slice(text).ok()?;
        let v = doc.as_mapping()?.get("stat_prefix")?;
        stat_prefix(v).ok().map(str::to_owned)
    }
}

/// A valid `stat_prefix`: one stat-name segment that reads the same in `/stats` and in
/// Prometheus (Envoy turns every other character into `_` there, and a dot would add a segment).
fn stat_prefix(v: &Value) -> Result<&str, ConfigError> {
    let s = v.as_str().ok_or_else(|| {
        ConfigError::new("stat_prefix", format!("expected a string, found {}", fields::kind_of(v)))
    })?;
    if !Text::StatPrefix.accepts(s) {
        return Err(ConfigError::new(
            "stat_prefix",
            format!(
                "`{}` is not a stat prefix: 1 to {MAX_STAT_PREFIX} ASCII letters, digits or `_` (one segment of a stat name)",
                s.escape_default()
            ),
        ));
    }
    Ok(s)
}

fn parse_routes(v: &Value) -> Result<Vec<RouteSpec>, ConfigError> {
    let map = as_map(v, "routing_table")?;
    let mut routes = BTreeMap::new();
    for (k, entry) in map {
        let name = match k {
            Value::String(s) => s.clone(),
            // YAML lets `1234:` or `true:` be a key; a shard key is bytes, so take its text.
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(ConfigError::new(
                    "routing_table",
                    "route names must be strings",
                ))
            }
        };
        let path = format!("routing_table.{name}");
        if name.is_empty() {
            return Err(ConfigError::new(path, "empty route name"));
        }
        let spec = parse_route(&name, entry, &path)?;
        routes.insert(name, spec);
    }
    Ok(routes.into_values().collect())
}

fn parse_route(name: &str, v: &Value, path: &str) -> Result<RouteSpec, ConfigError> {
    // Shorthand: `user1: redis2-master` means `{type: key, cluster: redis2-master}`.
    if let Value::String(cluster) = v {
        return Ok(RouteSpec {
            name: name.to_owned(),
            kind: RouteType::Key,
            target: RouteTarget::Cluster(cluster_name(cluster, path)?),
        });
    }
    let map = as_map(v, path)?;
    ROUTE.check(map, path)?;
    let kind = match opt_str(map, "type", path)?.or(ROUTE.declared("type", path)?.default_text()) {
        None => RouteType::Key,
        Some(t) => RouteType::from_name(t).ok_or_else(|| {
            ConfigError::new(
                format!("{path}.type"),
                format!("unknown route type `{t}`; expected one of {}", list(RouteType::NAMES)),
            )
        })?,
    };
    if name == "*" && kind == RouteType::Value {
        return Err(ConfigError::new(
            path,
            "`*` (match everything) is for key, prefix and hash routes; a value route needs a text to look for",
        ));
    }
    let target = if kind == RouteType::Hash {
        if get(map, "cluster").is_some() {
            return Err(ConfigError::new(
                format!("{path}.cluster"),
                "a hash route takes `clusters` (a list), not `cluster`",
            ));
        }
        let list_path = format!("{path}.clusters");
        let items = match get(map, "clusters") {
            None => return Err(ConfigError::new(list_path, "missing; a hash route needs a list of clusters")),
            Some(Value::Sequence(items)) => items,
            Some(_) => return Err(ConfigError::new(list_path, "expected a list of cluster names")),
        };
        if items.is_empty() {
            return Err(ConfigError::new(list_path, "empty; a hash route needs at least one cluster"));
        }
        let mut clusters = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let p = format!("{list_path}[{i}]");
            let s = item
                .as_str()
                .ok_or_else(|| ConfigError::new(p.clone(), "expected a cluster name"))?;
            let s = cluster_name(s, &p)?;
            if clusters.contains(&s) {
                return Err(ConfigError::new(p, format!("cluster `{s}` listed twice")));
            }
            clusters.push(s);
        }
        let algorithm = match opt_str(map, "algorithm", path)?.or(ROUTE.declared("algorithm", path)?.default_text()) {
            None => HashAlgorithm::DEFAULT,
            Some(a) => HashAlgorithm::from_name(a).ok_or_else(|| {
                ConfigError::new(
                    format!("{path}.algorithm"),
                    format!("unknown algorithm `{a}`; expected one of {}", list(HashAlgorithm::NAMES)),
                )
            })?,
        };
        RouteTarget::Hash { clusters, algorithm }
    } else {
        if get(map, "clusters").is_some() {
            return Err(ConfigError::new(
                format!("{path}.clusters"),
                format!("a {} route takes one `cluster`; lists are for `type: hash`", kind.name()),
            ));
        }
        if get(map, "algorithm").is_some() {
            return Err(ConfigError::new(
                format!("{path}.algorithm"),
                "only hash routes take an algorithm",
            ));
        }
        let c = opt_str(map, "cluster", path)?.ok_or_else(|| {
            ConfigError::new(format!("{path}.cluster"), "missing; the route needs a target cluster")
        })?;
        RouteTarget::Cluster(cluster_name(c, &format!("{path}.cluster"))?)
    };
    Ok(RouteSpec {
        name: name.to_owned(),
        kind,
        target,
    })
}

fn cluster_name(s: &str, path: &str) -> Result<String, ConfigError> {
    if s.is_empty() {
        return Err(ConfigError::new(path, "empty cluster name"));
    }
    if !Text::ClusterName.accepts(s) {
        return Err(ConfigError::new(
            path,
            format!("`{}` is not an Envoy cluster name (no spaces or control characters, at most 512 bytes)", s.escape_default()),
        ));
    }
    Ok(s.to_owned())
}

/// Field `key`; a field left empty (`key:` or `key: ~`) is the same as an absent one, for every
/// optional field of every section ([`spec`]).
fn get<'a>(map: &'a Mapping, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

#[cfg(test)]
pub(crate) mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// Seed 004's EnvoyFilter, as written.
    pub(crate) const ECHARDE: &str = "\
workload_type: redis
type_proxy: downstream
default_cluster: redis1-master
local_cluster: redis1-master
routing_table:
  user1:
    type: key
    cluster: redis2-master
  alert:
    type: value
    cluster: redis2-master
";

    #[test]
    fn echarde_example_parses() {
        let c = Config::parse(ECHARDE.as_bytes()).unwrap();
        assert_eq!(c.workload_type, WorkloadType::Redis);
        assert_eq!(c.type_proxy, TypeProxy::Downstream);
        assert_eq!(c.default_cluster, "redis1-master");
        assert_eq!(c.local_cluster, "redis1-master");
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[1].name, "user1");
        assert_eq!(c.routes[1].kind, RouteType::Key);
        assert_eq!(c.routes[0].kind, RouteType::Value);
        assert!(c.hash_tags);
        assert_eq!(c.upstream_timeout_ms, 5000);
    }

    #[test]
    fn hash_tags_default_to_on_for_redis_only() {
        for (workload, on) in [("redis", true), ("mqtt", false), ("kafka", false), ("influxdb", false), ("http", false)] {
            let c = Config::parse(format!("workload_type: {workload}\ndefault_cluster: a\n").as_bytes()).unwrap();
            assert_eq!(c.hash_tags, on, "{workload}");
            let c = Config::parse(format!("workload_type: {workload}\ndefault_cluster: a\nhash_tags: true\n").as_bytes())
                .unwrap();
            assert!(c.hash_tags, "{workload}: configured");
        }
    }

    #[test]
    fn stat_prefix_defaults_and_is_read_from_rejected_configs() {
        let c = Config::parse(b"workload_type: redis\ndefault_cluster: a\n").unwrap();
        assert_eq!(c.stat_prefix, DEFAULT_STAT_PREFIX);
        let c = Config::parse(b"workload_type: redis\ndefault_cluster: a\nstat_prefix: Shop_2\n").unwrap();
        assert_eq!(c.stat_prefix, "Shop_2");
        let long = format!("workload_type: redis\ndefault_cluster: a\nstat_prefix: {}\n", "p".repeat(MAX_STAT_PREFIX + 1));
        assert_eq!(Config::parse(long.as_bytes()).unwrap_err().field, "stat_prefix");
        // Rejected for another field: its stat_prefix is still known.
        let bad = b"workload_type: redis\nstat_prefix: shop\nrouting_table: [x]\n";
        assert!(Config::parse(bad).is_err());
        assert_eq!(Config::stat_prefix_of(bad).as_deref(), Some("shop"));
        assert_eq!(Config::stat_prefix_of(b"stat_prefix: a.b\n"), None);
        assert_eq!(Config::stat_prefix_of(b"[unclosed"), None);
        assert_eq!(Config::stat_prefix_of(b"- a\n"), None);
        assert_eq!(Config::stat_prefix_of(&[0xff]), None);
    }

    #[test]
    fn json_is_accepted() {
        let c = Config::parse(
            br#"{"workload_type":"redis","default_cluster":"a","routing_table":{"u":{"cluster":"b"},"*":{"type":"hash","clusters":["a","b"]}}}"#,
        )
        .unwrap();
        assert_eq!(c.local_cluster, "a");
        assert_eq!(c.routes.len(), 2);
        assert_eq!(
            c.routes[0].target,
            RouteTarget::Hash { clusters: vec!["a".into(), "b".into()], algorithm: HashAlgorithm::RendezvousV1 }
        );
    }

    #[test]
    fn type_defaults_to_key_and_shorthand_works() {
        let c = Config::parse(b"workload_type: redis\ndefault_cluster: a\nrouting_table:\n  u: {cluster: b}\n  v: c\n").unwrap();
        assert!(c.routes.iter().all(|r| r.kind == RouteType::Key));
    }

    #[test]
    fn extension_section_is_kept_for_the_protocol() {
        let c = Config::parse(b"workload_type: redis\ndefault_cluster: a\nredis: {max_bulk_bytes: 10}\n").unwrap();
        assert!(c.extension.is_some());
        let e = Config::parse(b"workload_type: redis\ndefault_cluster: a\nmqtt: {}\n").unwrap_err();
        assert_eq!(e.field, "mqtt");
    }

    fn err(text: &str) -> ConfigError {
        Config::parse(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn rejected_configs_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("", "", "empty"),
            ("workload_type: [", "", "not valid YAML"),
            ("- a\n- b\n", "", "expected a map, found a list"),
            ("default_cluster: a\n", "workload_type", "missing"),
            ("workload_type: memcached\ndefault_cluster: a\n", "workload_type", "unknown workload `memcached`"),
            ("workload_type: redis\n", "default_cluster", "missing"),
            ("workload_type: redis\ndefault_cluster: ''\n", "default_cluster", "empty cluster name"),
            ("workload_type: redis\ndefault_cluster: 'a b'\n", "default_cluster", "not an Envoy cluster name"),
            ("workload_type: redis\ndefault_cluster: a\ndefault_clustr: b\n", "default_clustr", "unknown field"),
            ("workload_type: redis\ndefault_cluster: a\ntype_proxy: sideways\n", "type_proxy", "unknown value `sideways`"),
            ("workload_type: redis\ndefault_cluster: 7\n", "default_cluster", "expected a string, found a number"),
            ("workload_type: redis\ndefault_cluster: a\nhash_tags: yes please\n", "hash_tags", "true or false"),
            ("workload_type: redis\ndefault_cluster: a\nupstream_timeout_ms: 0\n", "upstream_timeout_ms", "between 1 and"),
            ("workload_type: redis\ndefault_cluster: a\nupstream_timeout_ms: 0\n", "upstream_timeout_ms", "an integer of milliseconds between 1 and 3600000"),
            ("workload_type: redis\ndefault_cluster: a\nstat_prefix: 3\n", "stat_prefix", "expected a string, found a number"),
            ("workload_type: redis\ndefault_cluster: a\nstat_prefix: ''\n", "stat_prefix", "is not a stat prefix"),
            ("workload_type: redis\ndefault_cluster: a\nstat_prefix: a.b\n", "stat_prefix", "`a.b` is not a stat prefix"),
            ("workload_type: redis\ndefault_cluster: a\nstat_prefix: my-app\n", "stat_prefix", "letters, digits or `_`"),
            ("workload_type: redis\ndefault_cluster: a\nrouting_table: [a]\n", "routing_table", "expected a map"),
            ("workload_type: redis\ndefault_cluster: a\nrouting_table:\n  u: {type: regex, cluster: b}\n", "routing_table.u.type", "unknown route type `regex`"),
            ("workload_type: redis\ndefault_cluster: a\nrouting_table:\n  u: {type: key}\n", "routing_table.u.cluster", "missing"),
            ("workload_type: redis\ndefault_cluster: a\nrouting_table:\n  u: {cluster: b, weight: 3}\n", "routing_table.u.weight", "unknown field"),
            ("workload_type: redis\ndefault_cluster: a\nrouting_table:\n  u: {type: hash, clusters: []}\n", "routing_table.u.clusters", "empty"),
            ("workload_type: redis\ndefault_cluster: a\nrouting_table:\n  u: {type: hash}\n", "routing_table.u.clusters", "missing"),
            ("workload_type: redis\ndefault_cluster: a\nrouting_table:\n  u: {type: hash, clusters: [a, a]}\n", "routing_table.u.clusters[1]", "listed twice"),
            ("workload_type: redis\ndefault_cluster: a\nrouting_table:\n  u: {type: hash, cluster: a}\n", "routing_table.u.cluster", "takes `clusters`"),
            ("workload_type: redis\ndefault_cluster: a\nrouting_table:\n  u: {type: hash, clusters: [a], algorithm: ketama}\n", "routing_table.u.algorithm", "unknown algorithm `ketama`"),
            ("workload_type: redis\ndefault_cluster: a\nrouting_table:\n  u: {cluster: b, clusters: [c]}\n", "routing_table.u.clusters", "lists are for `type: hash`"),
            ("workload_type: redis\ndefault_cluster: a\nrouting_table:\n  u: {cluster: b, algorithm: rendezvous-v1}\n", "routing_table.u.algorithm", "only hash routes"),
            ("workload_type: redis\ndefault_cluster: a\nrouting_table:\n  '*': {type: value, cluster: b}\n", "routing_table.*", "a value route needs"),
            ("workload_type: redis\ndefault_cluster: a\nrouting_table:\n  '': {cluster: b}\n", "routing_table.", "empty route name"),
            ("workload_type: redis\ndefault_cluster: a\nrouting_table:\n  u: 3\n", "routing_table.u", "expected a map, found a number"),
        ];
        for (text, field, msg) in cases {
            let e = err(text);
            assert_eq!(&e.field, field, "config {text:?} gave {e}");
            assert!(e.to_string().contains(msg), "config {text:?} gave `{e}`, expected it to mention `{msg}`");
        }
    }

    #[test]
    fn oversized_and_non_utf8_configs_are_rejected() {
        let big = vec![b' '; MAX_CONFIG_BYTES + 1];
        assert!(Config::parse(&big).unwrap_err().message.contains("over the limit"));
        assert!(Config::parse(&[0xff, 0xfe]).unwrap_err().message.contains("UTF-8"));
    }
}
