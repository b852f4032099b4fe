//! A filter configuration of the native shell, and the in-process bridge it runs on.
//!
//! Envoy passes the `filter_config` of `envoy.filters.network.dynamic_modules` to the module; a
//! `google.protobuf.Struct` arrives as JSON. The native shell reads two fields:
//!
//! ```yaml
//! filter_config:
//!   "@type": type.googleapis.com/google.protobuf.Struct
//!   value:
//!     bridge_config: /etc/geomesh/bridge.yaml   # the bridge's own configuration file
//!     filter: |                                 # the Écharde configuration, as for the Wasm filter
//!       workload_type: redis
//!       routing_table: ...
//! ```
//!
//! The bridge of a `bridge_config` path is started once per Envoy process, on the module's own
//! runtime thread, with every listener its file names (so Wasm filters of the same Envoy can
//! still reach it over a socket); the native filters reach it in-process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};

use geomesh_bridge::Bridge;
use geomesh_core::{Config, RoutingTable, WorkloadType};
use geomesh_redis::Settings;

use crate::metrics::MetricIds;
use crate::stream::BridgeEnd;

/// A running in-process bridge.
pub struct BridgeHost {
    runtime: tokio::runtime::Runtime,
    bridge: Bridge,
}

/// One `filter_config`, shared by Envoy's workers.
pub struct FilterConfig {
    pub name: String,
    pub geomesh: Config,
    pub settings: Settings,
    bridge: Arc<BridgeHost>,
    /// The Envoy stats of this configuration.
    pub metrics: Arc<MetricIds>,
}

static BRIDGES: OnceLock<Mutex<HashMap<PathBuf, Arc<BridgeHost>>>> = OnceLock::new();

impl FilterConfig {
    /// Parses `filter_config` (JSON), starts (or finds) its bridge and defines its stats.
    ///
    /// # Safety
    /// `envoy_config` is the pointer `on_network_filter_config_new` received, during that call.
    pub unsafe fn new(envoy_config: *mut std::ffi::c_void, name: &str, json: &[u8]) -> Result<FilterConfig, String> {
        let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| format!("filter_config is not JSON: {e}"))?;
        let bridge_path = v
            .get("bridge_config")
            .and_then(|p| p.as_str())
            .ok_or("filter_config: `bridge_config` (the bridge's configuration file) is required")?;
        let text = v.get("filter").and_then(|f| f.as_str()).ok_or("filter_config: `filter` (the geomesh configuration) is required")?;
        let geomesh = Config::parse(text.as_bytes()).map_err(|e| format!("filter: {e}"))?;
        if geomesh.workload_type != WorkloadType::Redis {
            return Err(format!(
                "filter: the native shell serves `redis`, the configuration says `{}`",
                geomesh.workload_type.name()
            ));
        }
        let settings = Settings::from_config(&geomesh).map_err(|e| format!("filter: {e}"))?;
        // Compiled here so that a worker's compile cannot fail later.
        let table = RoutingTable::new(&geomesh).map_err(|e| format!("filter: {e}"))?;
        let bridge = bridge_for(Path::new(bridge_path))?;
        let metrics = Arc::new(MetricIds::define(envoy_config, &geomesh.stat_prefix, &table));
        Ok(FilterConfig {
            name: name.to_owned(),
            geomesh,
            settings,
            bridge,
            metrics,
        })
    }

    /// A routing table of this configuration for one connection (compiled in `new` already,
    /// so `None` is not expected). Each connection compiles its own: the protocol crates hold
    /// it in an `Rc`, and a connection's objects may be dropped on another thread than its
    /// worker (`stream.rs`, `IN_WAKE`), so no `Rc` is shared between connections.
    pub fn table(&self) -> Option<Rc<RoutingTable>> {
        RoutingTable::new(&self.geomesh).ok().map(Rc::new)
    }

    /// Serves one filter connection's stream on the bridge.
    pub fn serve(&self, end: BridgeEnd, id: u64) {
        let host = &self.bridge;
        host.bridge.serve_stream(host.runtime.handle(), end, format!("native#{id}"));
    }
}

/// The bridge of `path`, started on first use.
fn bridge_for(path: &Path) -> Result<Arc<BridgeHost>, String> {
    let mut bridges = BRIDGES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(b) = bridges.get(path) {
        return Ok(b.clone());
    }
    let config = geomesh_bridge::Config::load(path).map_err(|e| format!("bridge_config {}: {e}", path.display()))?;
    let threads = std::env::var("GEOMESH_NATIVE_BRIDGE_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(1usize);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("geomesh-bridge")
        .enable_all()
        .build()
        .map_err(|e| format!("bridge runtime: {e}"))?;
    let bridge = runtime
        .block_on(Bridge::start(config))
        .map_err(|e| format!("bridge_config {}: {e:#}", path.display()))?;
    let host = Arc::new(BridgeHost { runtime, bridge });
    bridges.insert(path.to_owned(), host.clone());
    Ok(host)
}

/// Envoy's workers share one `FilterConfig` (and the main thread builds it): it must be
/// `Send + Sync`, which this checks at compile time.
const _: () = {
    const fn shared_by_threads<T: Send + Sync>() {}
    shared_by_threads::<FilterConfig>();
};
