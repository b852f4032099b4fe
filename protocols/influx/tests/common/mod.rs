//! Shared helpers of the crate's tests.
#![allow(dead_code)]

use geomesh_core::{Config, RoutingTable};
use geomesh_influx::Settings;

/// Two shards: `cpu*` and `disk` on b, everything else on a (the default and local cluster).
pub const TWO: &str = "workload_type: influxdb\ndefault_cluster: a\nlocal_cluster: a\nrouting_table:\n  cpu: { type: prefix, cluster: b }\n  disk: b\n";

pub fn table(yaml: &str) -> RoutingTable {
    RoutingTable::new(&Config::parse(yaml.as_bytes()).unwrap()).unwrap()
}

pub fn settings() -> Settings {
    Settings::default()
}

pub fn name(t: &RoutingTable, c: geomesh_core::ClusterId) -> &str {
    t.cluster_name(c)
}
