//! The `kafka:` section of the filter configuration.
//!
//! ```yaml
//! workload_type: kafka
//! default_cluster: kafka-a
//! upstream_timeout_ms: 10000         # core: a shard silent this long: REQUEST_TIMED_OUT
//! routing_table:
//!   orders: kafka-b                  # topic `orders`, `orders.eu`, ...; group ids route the same way
//! kafka:
//!   advertised_host: kafka.local     # required: where clients reach this listener
//!   advertised_port: 9092            # required
//!   cluster_id: geomesh              # the cluster id clients see in Metadata
//!   max_request_bytes: 16777216      # largest request frame accepted from a client
//!   max_response_bytes: 67108864     # largest answer frame accepted from a broker
//!   timer_granularity_ms: 0          # how late a deadline may be noticed; 0 = timeout / 20, 1..100
//!   follow_leaders: true             # each partition to its shard's leader (endpoint links)
//! ```
//!
//! The fields, their ranges and defaults are declared once, in [`SECTION`]: the parser below
//! reads them from there, and so does the JSON Schema (`schema/geomesh-filter.schema.json`).

use geomesh_core::config::fields::list;
use geomesh_core::config::spec::{doc, Default as Is, Field, Kind, Section, Text, Workload};
use geomesh_core::{Config, ConfigError};
use serde_yaml_ng::Value;

use crate::Limits;

/// Validated `kafka:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The host clients reach this listener at (every virtual broker is advertised there).
    pub advertised_host: String,
    /// The port of that listener.
    pub advertised_port: u16,
    /// The cluster id of the one logical cluster clients see.
    pub cluster_id: String,
    /// Frame bounds for client requests and broker answers.
    pub limits: Limits,
    /// How late a deadline may be noticed (ms); 0 = `upstream_timeout_ms / 20` within 1..=100.
    pub timer_granularity_ms: u64,
    /// Each partition's requests go to the broker its shard's Metadata names as leader (an
    /// endpoint link); false: everything to the table cluster (a shard of one broker reached
    /// at an address its Metadata does not advertise).
    pub follow_leaders: bool,
}

/// `cluster_id` when the configuration names none.
pub const DEFAULT_CLUSTER_ID: &str = "geomesh";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            advertised_host: "127.0.0.1".to_owned(),
            advertised_port: 9092,
            cluster_id: DEFAULT_CLUSTER_ID.to_owned(),
            limits: Limits::default(),
            timer_granularity_ms: 0,
            follow_leaders: true,
        }
    }
}

const fn int(name: &'static str, min: u64, max: u64, default: u64, text: &'static str) -> Field {
    Field { name, kind: Kind::Int { min, max }, required: false, default: Is::Int(default), doc: doc(text) }
}

/// The `kafka:` section.
pub const SECTION: Section = Section {
    id: "kafka",
    doc: doc("Settings of the Kafka filter (protocols/kafka/README.md)."),
    fields: &[
        Field {
            name: "advertised_host",
            kind: Kind::Text(Text::Visible { max: Some(255) }),
            required: true,
            default: Is::None,
            doc: doc("Host name or address clients reach this listener at: every broker in Metadata and FindCoordinator answers is advertised there."),
        },
        Field {
            name: "advertised_port",
            kind: Kind::Int { min: 1, max: 65535 },
            required: true,
            default: Is::None,
            doc: doc("Port of that listener."),
        },
        Field {
            name: "cluster_id",
            kind: Kind::Text(Text::Visible { max: Some(255) }),
            required: false,
            default: Is::Text(DEFAULT_CLUSTER_ID),
            doc: doc("The cluster id clients see in Metadata (one logical cluster over every shard)."),
        },
        int("max_request_bytes", 1024, (1 << 31) - 1, Limits::DEFAULT_MAX_REQUEST_BYTES as u64, "Largest request frame accepted from a client; a larger size prefix closes the connection."),
        int("max_response_bytes", 1024, (1 << 31) - 1, Limits::DEFAULT_MAX_RESPONSE_BYTES as u64, "Largest answer frame accepted from a broker; a larger one fails that broker's link."),
        int(
            "timer_granularity_ms",
            0,
            10_000,
            0,
            "How late a deadline may be noticed (ms); 0 = upstream_timeout_ms / 20, within 1..100.",
        ),
        Field {
            name: "follow_leaders",
            kind: Kind::Bool,
            required: false,
            default: Is::Bool(true),
            doc: doc("Send each partition's requests to the broker its shard's Metadata names as leader (an endpoint link the bridge must allow: `clusters.NAME.endpoints`); false: everything to the table cluster."),
        },
    ],
    rules: &[],
};

/// `workload_type: kafka` for the JSON Schema.
pub const SCHEMA: Workload = Workload {
    name: "kafka",
    section: Some(&SECTION),
    section_required: true,
    routing_table: true,
    doc: doc("The Kafka network filter: topics routed over Kafka clusters that look like one (protocols/kafka/README.md)."),
};

impl Settings {
    /// Reads the `kafka:` section of a validated configuration (required: it names the
    /// advertised listener).
    pub fn from_config(config: &Config) -> Result<Settings, ConfigError> {
        Self::from_value(config.extension.as_ref())
    }

    /// Reads a `kafka:` section. Errors name the field (`kafka.advertised_port`).
    pub fn from_value(section: Option<&Value>) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        let map = match section {
            None | Some(Value::Null) => {
                return Err(ConfigError::new(
                    "kafka",
                    "missing; the section names the listener clients reach (advertised_host, advertised_port)",
                ))
            }
            Some(Value::Mapping(m)) => m,
            Some(_) => return Err(ConfigError::new("kafka", "expected a map of settings")),
        };
        let (mut host, mut port) = (None, None);
        for (k, v) in map {
            let name = k
                .as_str()
                .ok_or_else(|| ConfigError::new("kafka", "field names must be strings"))?;
            let field = format!("kafka.{name}");
            let Some(spec) = SECTION.field(name) else {
                let names: Vec<&str> = SECTION.names().collect();
                return Err(ConfigError::new(field, format!("unknown field; expected one of {}", list(&names))));
            };
            if v.is_null() {
                continue;
            }
            match (name, spec.kind) {
                ("follow_leaders", _) => {
                    s.follow_leaders = v
                        .as_bool()
                        .ok_or_else(|| ConfigError::new(field.clone(), "expected true or false"))?;
                }
                ("advertised_host" | "cluster_id", Kind::Text(rule)) => {
                    let text = v
                        .as_str()
                        .filter(|t| rule.accepts(t))
                        .ok_or_else(|| ConfigError::new(field.clone(), format!("expected {}, at most 255", rule.describe())))?;
                    if name == "advertised_host" {
                        host = Some(text.to_owned());
                    } else {
                        s.cluster_id = text.to_owned();
                    }
                }
                _ => {
                    let n = spec.int_value(v, &field)?;
                    match name {
                        "advertised_port" => port = Some(n as u16),
                        "max_request_bytes" => s.limits.max_request_bytes = n as usize,
                        "max_response_bytes" => s.limits.max_response_bytes = n as usize,
                        "timer_granularity_ms" => s.timer_granularity_ms = n,
                        _ => return Err(ConfigError::new(field, "declared but not read (a geomesh bug)")),
                    }
                }
            }
        }
        s.advertised_host = host.ok_or_else(|| ConfigError::new("kafka.advertised_host", "missing; where clients reach this listener"))?;
        s.advertised_port = port.ok_or_else(|| ConfigError::new("kafka.advertised_port", "missing; the port of this listener"))?;
        Ok(s)
    }

    /// The granularity actually used with an upstream timeout of `timeout_ms`.
    pub fn granularity(&self, timeout_ms: u64) -> u64 {
        if self.timer_granularity_ms > 0 {
            self.timer_granularity_ms
        } else {
            (timeout_ms / 20).clamp(1, 100)
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn parse(yaml: &str) -> Result<Settings, ConfigError> {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        Settings::from_value(Some(&v))
    }

    #[test]
    fn reads_every_field_and_names_the_faulty_one() {
        let s = parse("advertised_host: k.local\nadvertised_port: 19092\ncluster_id: c1\nmax_request_bytes: 2048\n").unwrap();
        assert_eq!((s.advertised_host.as_str(), s.advertised_port, s.cluster_id.as_str()), ("k.local", 19092, "c1"));
        assert_eq!(s.limits.max_request_bytes, 2048);
        assert_eq!(parse("advertised_host: h\n").unwrap_err().field, "kafka.advertised_port");
        assert_eq!(parse("advertised_port: 1\n").unwrap_err().field, "kafka.advertised_host");
        assert_eq!(parse("advertised_host: h\nadvertised_port: 0\n").unwrap_err().field, "kafka.advertised_port");
        assert_eq!(parse("advertised_host: h h\nadvertised_port: 1\n").unwrap_err().field, "kafka.advertised_host");
        assert_eq!(parse("advertised_host: h\nadvertised_port: 1\nnope: 1\n").unwrap_err().field, "kafka.nope");
        assert_eq!(Settings::from_value(None).unwrap_err().field, "kafka");
    }
}
