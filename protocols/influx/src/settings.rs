//! The `influxdb:` section of the filter configuration (every field optional).
//!
//! ```yaml
//! workload_type: influxdb
//! default_cluster: influx-a
//! local_cluster: influx-a           # /ping, /health, SHOW USERS ... go there
//! routing_table:
//!   cpu:  { type: key, cluster: influx-b }        # measurement cpu (and cpu.*, cpu:*, cpu/*)
//!   "*":  { type: hash, clusters: [influx-a, influx-b] }
//! influxdb:
//!   max_body_bytes: 26214400        # a /write or /query body above this gets 413
//!   max_decoded_bytes: 104857600    # a gzip /write body inflating above this gets 413
//!   max_answer_bytes: 67108864      # a shard answer above this fails the request (502)
//!   max_statements: 64              # statements in one q
//!   cluster_header: x-geomesh-cluster   # the header the route's cluster_header reads
//!   replay_cluster: geomesh_agent   # optional: the agent's replay queue for a down shard's writes
//! ```
//!
//! The fields are declared once, in [`SECTION`]: the parser reads names, ranges and defaults from
//! there, and so does the JSON Schema (`schema/geomesh-filter.schema.json`).

use geomesh_core::config::fields::list;
use geomesh_core::config::spec::{doc, Default as Is, Field, Kind, Section, Text, Workload};
use geomesh_core::{Config, ConfigError, RoutingTable};
use serde_yaml_ng::Value;

/// Validated `influxdb:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub max_body_bytes: usize,
    pub max_decoded_bytes: usize,
    pub max_answer_bytes: usize,
    pub max_statements: usize,
    pub cluster_header: String,
    /// The Envoy cluster of the site's agent whose replay queue takes a down shard's part of a
    /// split write (`None`: no queue, the client gets 503).
    pub replay_cluster: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_body_bytes: 25 << 20,
            max_decoded_bytes: 100 << 20,
            max_answer_bytes: 64 << 20,
            max_statements: 64,
            cluster_header: "x-geomesh-cluster".to_owned(),
            replay_cluster: None,
        }
    }
}

const fn int(name: &'static str, min: u64, max: u64, default: u64, text: &'static str) -> Field {
    Field {
        name,
        kind: Kind::Int { min, max },
        required: false,
        default: Is::Int(default),
        doc: doc(text),
    }
}

/// The `influxdb:` section's table.
pub const SECTION: Section = Section {
    id: "influxdb",
    doc: doc("Settings of the InfluxDB HTTP filter (protocols/influx/README.md); every field is optional."),
    fields: &[
        int(
            "max_body_bytes",
            1024,
            1 << 30,
            25 << 20,
            "Largest /write or /query body accepted as received (413 above); Envoy's per_connection_buffer_limit_bytes must be at least this.",
        ),
        int("max_decoded_bytes", 1024, 1 << 30, 100 << 20, "Largest /write body once gzip is inflated (413 above)."),
        int("max_answer_bytes", 1024, 1 << 30, 64 << 20, "Largest answer read from one shard for a merge (502 above)."),
        int("max_statements", 1, 4096, 64, "Most InfluxQL statements in one q (400 above)."),
        Field {
            name: "cluster_header",
            kind: Kind::Text(Text::HeaderName),
            required: false,
            default: Is::Text("x-geomesh-cluster"),
            doc: doc("The request header the route's cluster_header reads: set to the one shard of a request Envoy's router forwards."),
        },
        Field {
            name: "replay_cluster",
            kind: Kind::Text(Text::ClusterName),
            required: false,
            default: Is::None,
            doc: doc("Envoy cluster of the site's geomesh-agent (its influx_replay queue): a shard's part of a split write that fails (no answer, 5xx) is stored there durably and replayed in order when the shard answers again; the client gets 204 once stored, 503 saying the queue is full or unavailable otherwise. Absent: no queue, 503."),
        },
    ],
    rules: &[],
};

/// The workload as the schema sees it.
pub const SCHEMA: Workload = Workload {
    name: "influxdb",
    section: Some(&SECTION),
    section_required: false,
    routing_table: true,
    doc: doc("The InfluxDB 1.x HTTP filter: /write split by measurement, /query routed, fanned out and merged."),
};

impl Settings {
    /// Reads the `influxdb:` section of a validated configuration (absent = defaults).
    pub fn from_config(config: &Config) -> Result<Settings, ConfigError> {
        Self::from_value(config.extension.as_ref())
    }

    /// Reads an `influxdb:` section (`None` or null = defaults). Errors name the field.
    pub fn from_value(v: Option<&Value>) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        let map = match v {
            None | Some(Value::Null) => return Ok(s),
            Some(Value::Mapping(m)) => m,
            Some(_) => return Err(ConfigError::new("influxdb", "expected a map")),
        };
        for (k, v) in map {
            let Some(name) = k.as_str() else {
                return Err(ConfigError::new("influxdb", "field names must be strings"));
            };
            let field = format!("influxdb.{name}");
            let Some(spec) = SECTION.field(name) else {
                let names: Vec<&str> = SECTION.names().collect();
                return Err(ConfigError::new(
                    field,
                    format!("unknown field; expected one of {}", list(&names)),
                ));
            };
            if v.is_null() {
                continue;
            }
            match name {
                "cluster_header" | "replay_cluster" => {
                    let text = v
                        .as_str()
                        .filter(|t| spec.text().accepts(t))
                        .ok_or_else(|| {
                            ConfigError::new(
                                field.clone(),
                                format!("expected {}", spec.text().describe()),
                            )
                        })?;
                    if name == "cluster_header" {
                        s.cluster_header = text.to_owned();
                    } else {
                        s.replay_cluster = Some(text.to_owned());
                    }
                }
                _ => {
                    let n = usize::try_from(spec.int_value(v, &field)?).unwrap_or(usize::MAX);
                    match name {
                        "max_body_bytes" => s.max_body_bytes = n,
                        "max_decoded_bytes" => s.max_decoded_bytes = n,
                        "max_answer_bytes" => s.max_answer_bytes = n,
                        "max_statements" => s.max_statements = n,
                        _ => {
                            return Err(ConfigError::new(
                                field,
                                "declared but not read (a geomesh bug)",
                            ))
                        }
                    }
                }
            }
        }
        Ok(s)
    }

    /// Parses a whole filter configuration text: the core's fields, the routing table and this
    /// section (what the filter runs in `on_configure`).
    pub fn parse(text: &[u8]) -> Result<(Config, RoutingTable, Settings), ConfigError> {
        let config = Config::parse(text)?;
        if config.workload_type != geomesh_core::WorkloadType::Influxdb {
            return Err(ConfigError::new(
                "workload_type",
                format!(
                    "`{}` given to the InfluxDB filter; expected `influxdb`",
                    config.workload_type.name()
                ),
            ));
        }
        let table = RoutingTable::new(&config)?;
        let settings = Settings::from_config(&config)?;
        Ok((config, table, settings))
    }
}
