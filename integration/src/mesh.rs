//! A sharding topology for any network filter on the kit: servers already started by the test
//! (one per cluster), a real `geomesh-bridge` that knows them, and a real Envoy whose listener
//! runs the filter's `.wasm` (V8) then `tcp_proxy` to the bridge.
//!
//! ```text
//! client ─▶ Envoy :port [wasm filter ─ tcp_proxy] ─GMB/1 (Unix socket)─▶ geomesh-bridge ─▶ a server per cluster
//! ```
//!
//! [`crate::redis_mesh::RedisMesh`] is the Redis flavour (it starts its redis-servers itself).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::bridge::{bridge_cluster, Bridge};
use crate::envoy::{
    ecds_network_filter, static_cluster, tcp_listener, tcp_proxy_filter, wasm_network_filter,
    wasm_network_typed_config, write_ecds, EnvoyOptions, WASM_NETWORK_TYPE,
};
use crate::paths::wasm_path;
use crate::ports::free_port;
use crate::process::TestDir;
use crate::{Envoy, EnvoyConfig, WasmPlugin};

/// What to start.
#[derive(Clone, Debug)]
pub struct FilterMeshOptions {
    /// The filter's `.wasm` base name under target/wasm (`geomesh_filter_line`).
    pub wasm: String,
    /// The plugin name (Envoy's log prefix and stat namespace).
    pub plugin: String,
    /// The filter configuration (Écharde YAML); its clusters are names given to `start`.
    pub filter_config: String,
    /// Configure the filter through an ECDS file ([`FilterMesh::set_filter_config`]).
    pub ecds: bool,
    pub envoy: EnvoyOptions,
    /// More endpoints the bridge lets the filter open in a cluster by address (cluster name,
    /// `host:port` pattern; docs/bridge-protocol.md "Endpoint targets").
    pub endpoints: Vec<(String, String)>,
    /// The Envoy listener's port (a free one when `None`): set it when the filter
    /// configuration must name it (Kafka's advertised listener).
    pub port: Option<u16>,
}

impl FilterMeshOptions {
    pub fn new(wasm: &str, plugin: &str, filter_config: &str) -> Self {
        FilterMeshOptions {
            wasm: wasm.to_owned(),
            plugin: plugin.to_owned(),
            filter_config: filter_config.to_owned(),
            ecds: false,
            envoy: EnvoyOptions::default(),
            endpoints: Vec::new(),
            port: None,
        }
    }
}

/// Bridge and Envoy in front of the test's servers; stopped on drop (Envoy first).
pub struct FilterMesh {
    pub envoy: Envoy,
    pub bridge: Bridge,
    /// The Envoy listener clients connect to.
    pub port: u16,
    pub ecds_file: Option<PathBuf>,
    plugin: WasmPlugin,
}

impl FilterMesh {
    /// Starts the bridge (knowing `clusters`: name, port on 127.0.0.1) and Envoy in `dir`.
    pub fn start(dir: &TestDir, opts: &FilterMeshOptions, clusters: &[(&str, u16)]) -> Result<FilterMesh> {
        let bridge = Bridge::start_unix_with_endpoints(dir, "bridge", clusters, &opts.endpoints)?;
        let wasm = wasm_path(&opts.wasm)?;
        let port = match opts.port {
            Some(p) => p,
            None => free_port()?,
        };
        let plugin = WasmPlugin::new(&opts.plugin, "", wasm, opts.filter_config.clone());
        let ecds_name = format!("geomesh.{}", opts.plugin);
        let mut ecds_file = None;
        let filter = if opts.ecds {
            std::fs::create_dir_all(dir.join("ecds"))?;
            let f = dir.join(format!("ecds/{}.yaml", opts.plugin));
            write_ecds(&f, &ecds_name, &wasm_network_typed_config(&plugin))?;
            let v = ecds_network_filter(&ecds_name, &f, WASM_NETWORK_TYPE);
            ecds_file = Some(f);
            v
        } else {
            wasm_network_filter(&plugin)
        };
        let mut cfg = EnvoyConfig::new()?
            .listener(tcp_listener(
                "filter_in",
                port,
                vec![filter, tcp_proxy_filter("filter_in", "geomesh_bridge")],
            ))
            .cluster(bridge_cluster("geomesh_bridge", &bridge));
        for (n, p) in clusters {
            cfg = cfg.cluster(static_cluster(n, &[*p]));
        }
        let envoy = Envoy::start_with(dir, "envoy", &cfg, &opts.envoy)?;
        crate::process::wait_tcp(port, Duration::from_secs(20))?;
        Ok(FilterMesh {
            envoy,
            bridge,
            port,
            ecds_file,
            plugin,
        })
    }

    /// Rewrites the filter's configuration (ECDS meshes only): Envoy applies it to new
    /// requests of every connection.
    pub fn set_filter_config(&mut self, yaml: &str) -> Result<()> {
        let Some(f) = &self.ecds_file else {
            anyhow::bail!("this mesh was not started with ecds");
        };
        self.plugin.configuration = yaml.to_owned();
        write_ecds(f, &format!("geomesh.{}", self.plugin.name), &wasm_network_typed_config(&self.plugin))
    }
}
