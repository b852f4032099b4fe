//! The session's metrics as Envoy stats, through the dynamic-module ABI.
//!
//! The ABI defines stats only while Envoy builds the filter configuration (its stats scope is
//! frozen afterwards: `define_*` then answers `Frozen`), so every stat the Redis session can
//! record is defined up front: `command.<family>.total|success|error` counters and the
//! `latency` histogram for every command family of `geomesh_redis::commands::all()` (and
//! `unknown`), `upstream.<cluster>.*` for every cluster of the table, `splitter.*`. The names
//! are the Wasm filter's ([`Metric::stat_name`]); Envoy puts them under the dynamic-module
//! filter's stats scope. After each callback the filter hands its session's meter over with
//! one host call per distinct counter and one per histogram value, on its worker thread (the
//! stats are Envoy's thread-safe ones).

use std::collections::HashMap;
use std::ffi::c_void;

use geomesh_core::metrics::{CommandStat, MetricKind, PipelineStat, UpstreamStat};
use geomesh_core::{Meter, Metric, RoutingTable};

use crate::abi::{self, FilterEnvoyPtr};

/// Stat ids Envoy gave at definition, by metric (ids start at 1).
#[derive(Debug, Default)]
pub struct MetricIds {
    counters: HashMap<Metric, usize>,
    histograms: HashMap<Metric, usize>,
}

/// Every metric the Redis session records, for the clusters of `table`.
fn every_metric(table: &RoutingTable) -> Vec<Metric> {
    let mut families: Vec<&'static str> =
        geomesh_redis::commands::all().iter().map(|s| s.name.split('|').next().unwrap_or(s.name)).collect();
    families.push("unknown");
    families.sort_unstable();
    families.dedup();
    let mut out = Vec::new();
    for family in families {
        out.extend(CommandStat::ALL.iter().map(|&stat| Metric::Command { family, stat }));
    }
    for &cluster in table.active_clusters() {
        out.extend(UpstreamStat::ALL.iter().map(|&stat| Metric::Upstream { cluster, stat }));
    }
    out.extend(PipelineStat::ALL.iter().map(|&p| Metric::Pipeline(p)));
    out
}

impl MetricIds {
    /// Defines every metric under `stat_prefix` (`redis.<stat_prefix>.…`).
    ///
    /// # Safety
    /// `config` is the `envoy_config` pointer of `on_network_filter_config_new`, during that call.
    pub unsafe fn define(config: *mut c_void, stat_prefix: &str, table: &RoutingTable) -> MetricIds {
        let mut ids = MetricIds::default();
        let name_of = |c| table.cluster_name(c).to_owned();
        for m in every_metric(table) {
            let name = m.stat_name("redis", stat_prefix, &name_of);
            let buf = abi::ModuleBuffer { ptr: name.as_ptr(), length: name.len() };
            let mut id = 0usize;
            let (result, map) = match m.kind() {
                MetricKind::Counter => {
                    (abi::envoy_dynamic_module_callback_network_filter_config_define_counter(config, buf, &mut id), &mut ids.counters)
                }
                MetricKind::Histogram => (
                    abi::envoy_dynamic_module_callback_network_filter_config_define_histogram(config, buf, &mut id),
                    &mut ids.histograms,
                ),
            };
            if result == abi::METRICS_SUCCESS && id != 0 {
                map.insert(m, id);
            }
        }
        ids
    }

    /// Hands what `meter` recorded to Envoy (a metric without a stat is dropped).
    ///
    /// # Safety
    /// `envoy` is Envoy's live filter, from one of its callbacks.
    pub unsafe fn drain(&self, envoy: FilterEnvoyPtr, meter: &mut Meter) {
        for (m, n) in meter.drain() {
            match m.kind() {
                MetricKind::Counter => {
                    if let Some(&id) = self.counters.get(&m) {
                        abi::envoy_dynamic_module_callback_network_filter_increment_counter(envoy, id, n);
                    }
                }
                MetricKind::Histogram => {
                    if let Some(&id) = self.histograms.get(&m) {
                        abi::envoy_dynamic_module_callback_network_filter_record_histogram_value(envoy, id, n);
                    }
                }
            }
        }
    }
}
