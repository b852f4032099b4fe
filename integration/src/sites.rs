//! Two sites for a network filter (MQTT, Kafka): Envoy at dc1 running the filter in front of
//! dc1's `geomesh-bridge`, which holds the local cluster and reaches the remote one through its
//! gRPC tunnel to dc2's bridge, over a relay that adds WAN latency and can be cut.
//!
//! ```text
//! client ─▶ Envoy [filter ─ tcp_proxy] ─▶ bridge dc1 ─▶ local server
//!                                            └─gRPC─ relay (WAN) ─▶ bridge dc2 ─▶ remote server
//! ```

use std::time::Duration;

use anyhow::Result;

use crate::bridge::{bridge_cluster, Bridge};
use crate::envoy::{tcp_listener, tcp_proxy_filter, wasm_network_filter};
use crate::paths::wasm_path;
use crate::{free_port, Envoy, EnvoyConfig, Relay, TestDir, WasmPlugin};

/// What the filter runs and where the servers are.
pub struct TwoSitesOptions<'a> {
    /// The `.wasm` file's stem (`geomesh_filter_mqtt`).
    pub wasm: &'a str,
    /// The plugin's name (`geomesh_mqtt`).
    pub plugin: &'a str,
    /// The filter's configuration.
    pub config: &'a str,
    /// The Envoy listener's port (the filter's configuration may name it).
    pub port: u16,
    /// (cluster name, port) of the server at dc1.
    pub local: (&'a str, u16),
    /// (cluster name, port) of the server at dc2.
    pub remote: (&'a str, u16),
    /// One way WAN delay.
    pub wan_delay: Duration,
}

pub struct TwoSites {
    pub envoy: Envoy,
    /// The Envoy listener's port.
    pub port: u16,
    pub wan: Relay,
    pub dc1: Bridge,
    pub dc2: Bridge,
}

impl TwoSites {
    pub fn start(dir: &TestDir, o: &TwoSitesOptions<'_>) -> Result<TwoSites> {
        let grpc = free_port()?;
        let dc2 = Bridge::start_config(
            dir,
            "bridge-dc2",
            &format!(
                "site: dc2\nlisten: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:{grpc}\nplaintext: true\nclusters:\n  {}: {{ address: 127.0.0.1:{} }}\n",
                o.remote.0, o.remote.1
            ),
        )?;
        let wan = Relay::start(grpc)?;
        wan.set_delay(o.wan_delay);
        let dc1 = Bridge::start_config(
            dir,
            "bridge-dc1",
            &format!(
                "site: dc1\nlisten: unix:{}\nplaintext: true\nclusters:\n  {}: {{ address: 127.0.0.1:{} }}\n  {}: {{ site: dc2 }}\nsites:\n  dc2: {{ grpc: \"http://127.0.0.1:{}\" }}\n",
                dir.join("bridge-dc1.sock").display(),
                o.local.0,
                o.local.1,
                o.remote.0,
                wan.port()
            ),
        )?;
        let plugin = WasmPlugin::new(o.plugin, "", wasm_path(o.wasm)?, o.config);
        let cfg = EnvoyConfig::new()?
            .listener(tcp_listener(
                "site_in",
                o.port,
                vec![
                    wasm_network_filter(&plugin),
                    tcp_proxy_filter("site_in", "bridge_dc1"),
                ],
            ))
            .cluster(bridge_cluster("bridge_dc1", &dc1));
        let envoy = Envoy::start(dir, "envoy", &cfg)?;
        crate::wait_tcp(o.port, Duration::from_secs(20))?;
        Ok(TwoSites {
            envoy,
            port: o.port,
            wan,
            dc1,
            dc2,
        })
    }
}
