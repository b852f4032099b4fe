//! Every workload the schema describes, with what its filter runs on a configuration.
//!
//! A protocol whose section has a table (geomesh_core::config::spec) is one [`Entry`] here; a
//! workload without one yet gets an open map as its section in the schema (see
//! [`crate::emit`]), and its configurations are checked with the core's parser only.

use geomesh_core::config::spec::Workload;
use geomesh_core::{Config, ConfigError, RoutingTable, WorkloadType};

/// A workload whose section is declared, and its filter's parser.
pub struct Entry {
    /// The table (from the protocol crate).
    pub workload: &'static Workload,
    /// What the filter runs on a configuration text: the validated settings, shown with `{:?}`
    /// (the agreement tests compare two texts' settings this way), or the filter's error.
    pub check: fn(&[u8]) -> Result<String, ConfigError>,
}

/// The validated configuration without its raw section (the section's settings show it).
fn shown(config: &Config) -> String {
    let mut c = config.clone();
    c.extension = None;
    format!("{c:?}")
}

fn redis(text: &[u8]) -> Result<String, ConfigError> {
    let config = Config::parse(text)?;
    RoutingTable::new(&config)?;
    let settings = geomesh_redis::Settings::from_config(&config)?;
    Ok(format!("{} {settings:?}", shown(&config)))
}

fn mqtt(text: &[u8]) -> Result<String, ConfigError> {
    let config = Config::parse(text)?;
    RoutingTable::new(&config)?;
    let settings = geomesh_mqtt::Settings::from_config(&config)?;
    Ok(format!("{} {settings:?}", shown(&config)))
}

fn kafka(text: &[u8]) -> Result<String, ConfigError> {
    let config = Config::parse(text)?;
    RoutingTable::new(&config)?;
    let settings = geomesh_kafka::Settings::from_config(&config)?;
    Ok(format!("{} {settings:?}", shown(&config)))
}

fn http(text: &[u8]) -> Result<String, ConfigError> {
    let (config, settings) = geomesh_scope::HttpSettings::parse(text)?;
    Ok(format!("{} {settings:?}", shown(&config)))
}

fn influxdb(text: &[u8]) -> Result<String, ConfigError> {
    let (config, _table, settings) = geomesh_influx::Settings::parse(text)?;
    Ok(format!("{} {settings:?}", shown(&config)))
}

/// The declared workloads. Adding a protocol's section = one line here (and its table).
pub const ENTRIES: &[Entry] = &[
    Entry { workload: &geomesh_redis::settings::SCHEMA, check: redis },
    Entry { workload: &geomesh_scope::settings::table::SCHEMA, check: http },
    Entry { workload: &geomesh_mqtt::session::SCHEMA, check: mqtt },
    Entry { workload: &geomesh_kafka::settings::SCHEMA, check: kafka },
    Entry { workload: &geomesh_influx::settings::SCHEMA, check: influxdb },
];

/// The entry of `workload_type` `name`, if its section is declared.
pub fn entry(name: &str) -> Option<&'static Entry> {
    ENTRIES.iter().find(|e| e.workload.name == name)
}

/// What the schema says of a workload without a declared section.
pub fn undeclared(name: &'static str) -> Workload {
    Workload {
        name,
        section: None,
        section_required: false,
        routing_table: true,
        doc: if name == "line" {
            "The line protocol of the protocol kit's tests (protocols/line); not for production."
        } else {
            "Its section is read by its protocol crate and not described in this schema yet."
        },
    }
}

/// Every `workload_type`, in the core's order: the declared ones and the others.
pub fn all() -> Vec<Workload> {
    WorkloadType::NAMES
        .iter()
        .map(|n| entry(n).map_or_else(|| undeclared(n), |e| *e.workload))
        .collect()
}

/// Runs the filter's checks on a configuration text: the protocol's parser when its section
/// is declared, else the core's (configuration and routing table).
pub fn check(text: &[u8]) -> Result<String, ConfigError> {
    let config = Config::parse(text)?;
    match entry(config.workload_type.name()) {
        Some(e) => (e.check)(text),
        None => {
            RoutingTable::new(&config)?;
            Ok(format!("{config:?}"))
        }
    }
}
