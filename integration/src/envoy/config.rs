//! Envoy bootstrap pieces as `serde_json::Value`s: filters (Wasm, `tcp_proxy`, ECDS),
//! listeners, clusters (static, HTTP/2, mTLS) and [`EnvoyConfig`], the bootstrap they make.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::ports::free_port;

pub const WASM_NETWORK_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm";
pub const WASM_HTTP_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
pub const TCP_PROXY_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
pub const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
pub const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
pub const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";
pub const TYPED_EXTENSION_CONFIG_TYPE: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
pub const V8: &str = "envoy.wasm.runtime.v8";

/// One Proxy-Wasm plugin: which `.wasm`, which root context, which configuration string.
#[derive(Clone, Debug)]
pub struct WasmPlugin {
    /// Plugin name (also the log prefix Envoy prints: `wasm log <name> <root_id>: ...`).
    pub name: String,
    pub root_id: String,
    /// Path of the `.wasm`; a relative path resolves against Envoy's working directory (the
    /// repository root for processes started by this harness and for `examples/` validation).
    pub wasm: PathBuf,
    /// Passed as `google.protobuf.StringValue` and read by `get_plugin_configuration()`.
    pub configuration: String,
    /// Default [`V8`].
    pub runtime: String,
    /// Default empty (one VM per plugin config); plugins with the same non-empty `vm_id` and code
    /// share a VM and its shared data.
    pub vm_id: String,
}

impl WasmPlugin {
    pub fn new(
        name: impl Into<String>,
        root_id: impl Into<String>,
        wasm: impl Into<PathBuf>,
        configuration: impl Into<String>,
    ) -> Self {
        WasmPlugin {
            name: name.into(),
            root_id: root_id.into(),
            wasm: wasm.into(),
            configuration: configuration.into(),
            runtime: V8.to_string(),
            vm_id: String::new(),
        }
    }

    pub fn runtime(mut self, runtime: impl Into<String>) -> Self {
        self.runtime = runtime.into();
        self
    }

    pub fn vm_id(mut self, vm_id: impl Into<String>) -> Self {
        self.vm_id = vm_id.into();
        self
    }

    /// `envoy.extensions.wasm.v3.PluginConfig`.
    pub fn plugin_config(&self) -> Value {
        json!({
            "name": self.name,
            "root_id": self.root_id,
            "configuration": { "@type": STRING_VALUE_TYPE, "value": self.configuration },
            "vm_config": {
                "vm_id": self.vm_id,
                "runtime": self.runtime,
                "code": { "local": { "filename": self.wasm.to_string_lossy() } },
            },
        })
    }
}

/// `typed_config` of `envoy.filters.network.wasm` (also the ECDS resource body).
pub fn wasm_network_typed_config(p: &WasmPlugin) -> Value {
    json!({ "@type": WASM_NETWORK_TYPE, "config": p.plugin_config() })
}

/// `typed_config` of `envoy.filters.http.wasm` (also the ECDS resource body).
pub fn wasm_http_typed_config(p: &WasmPlugin) -> Value {
    json!({ "@type": WASM_HTTP_TYPE, "config": p.plugin_config() })
}

/// A network filter entry `envoy.filters.network.wasm`.
pub fn wasm_network_filter(p: &WasmPlugin) -> Value {
    json!({ "name": "envoy.filters.network.wasm", "typed_config": wasm_network_typed_config(p) })
}

/// An HTTP filter entry `envoy.filters.http.wasm`.
pub fn wasm_http_filter(p: &WasmPlugin) -> Value {
    json!({ "name": "envoy.filters.http.wasm", "typed_config": wasm_http_typed_config(p) })
}

/// The terminal `tcp_proxy` network filter to `cluster`.
pub fn tcp_proxy_filter(stat_prefix: &str, cluster: &str) -> Value {
    json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": { "@type": TCP_PROXY_TYPE, "stat_prefix": stat_prefix, "cluster": cluster },
    })
}

/// A listener on 127.0.0.1:`port` with one filter chain made of `filters` (in order).
pub fn tcp_listener(name: &str, port: u16, filters: Vec<Value>) -> Value {
    json!({
        "name": name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } },
        "filter_chains": [ { "filters": filters } ],
    })
}

/// This Envoy's certificate and key, and the CA the other side must chain to (PEM files).
fn common_tls(cert: &Path, key: &Path, ca: &Path) -> Value {
    json!({
        "tls_certificates": [ {
            "certificate_chain": { "filename": cert.to_string_lossy() },
            "private_key": { "filename": key.to_string_lossy() },
        } ],
        "validation_context": { "trusted_ca": { "filename": ca.to_string_lossy() } },
    })
}

/// Istio-style mTLS between two Envoys, from PEM files (`cert`, `key`, `ca`): `cluster` dials
/// its endpoints over TLS with this client certificate, the server checked against `ca` and
/// named `sni`.
pub fn mtls_upstream(mut cluster: Value, cert: &Path, key: &Path, ca: &Path, sni: &str) -> Value {
    cluster["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": sni,
            "common_tls_context": common_tls(cert, key, ca),
        },
    });
    cluster
}

/// The other end of [`mtls_upstream`]: `listener`'s (first) filter chain terminates TLS and
/// requires a client certificate `ca` signed.
pub fn mtls_downstream(mut listener: Value, cert: &Path, key: &Path, ca: &Path) -> Value {
    listener["filter_chains"][0]["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": common_tls(cert, key, ca),
        },
    });
    listener
}

/// A listener with `envoy.filters.network.wasm` followed by `tcp_proxy` to `cluster`.
pub fn wasm_tcp_listener(name: &str, port: u16, plugin: &WasmPlugin, cluster: &str) -> Value {
    tcp_listener(
        name,
        port,
        vec![wasm_network_filter(plugin), tcp_proxy_filter(name, cluster)],
    )
}

/// An HTTP listener: `http_filters` (in order) then the router, every path routed to `cluster`.
pub fn http_listener(name: &str, port: u16, http_filters: Vec<Value>, cluster: &str) -> Value {
    let mut filters = http_filters;
    filters.push(
        json!({ "name": "envoy.filters.http.router", "typed_config": { "@type": ROUTER_TYPE } }),
    );
    let hcm = json!({
        "@type": HCM_TYPE,
        "stat_prefix": name,
        "codec_type": "AUTO",
        "route_config": {
            "name": name,
            "virtual_hosts": [ {
                "name": name,
                "domains": ["*"],
                "routes": [ { "match": { "prefix": "/" }, "route": { "cluster": cluster } } ],
            } ],
        },
        "http_filters": filters,
        // As an Istio sidecar does: WebSocket upgrades pass (Envoy answers 403 otherwise).
        "upgrade_configs": [ { "upgrade_type": "websocket" } ],
    });
    tcp_listener(
        name,
        port,
        vec![
            json!({ "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm }),
        ],
    )
}

/// An HTTP listener with one Wasm HTTP filter then the router to `cluster`.
pub fn wasm_http_listener(name: &str, port: u16, plugin: &WasmPlugin, cluster: &str) -> Value {
    http_listener(name, port, vec![wasm_http_filter(plugin)], cluster)
}

/// A STATIC cluster with endpoints on 127.0.0.1 (round robin, 1 s connect timeout).
pub fn static_cluster(name: &str, ports: &[u16]) -> Value {
    let addrs: Vec<(String, u16)> = ports
        .iter()
        .map(|p| ("127.0.0.1".to_string(), *p))
        .collect();
    static_cluster_addrs(name, &addrs)
}

/// A STATIC cluster with explicit (ip, port) endpoints.
pub fn static_cluster_addrs(name: &str, addrs: &[(String, u16)]) -> Value {
    let lb: Vec<Value> = addrs
        .iter()
        .map(|(ip, port)| {
            json!({ "endpoint": { "address": { "socket_address": { "address": ip, "port_value": port } } } })
        })
        .collect();
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": { "cluster_name": name, "endpoints": [ { "lb_endpoints": lb } ] },
    })
}

/// Makes a cluster speak HTTP/2 upstream (gRPC).
pub fn http2(mut cluster: Value) -> Value {
    cluster["typed_extension_protocol_options"] = json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": { "http2_protocol_options": {} },
        }
    });
    cluster
}

fn ecds_config_discovery(ecds_file: &Path, type_url: &str) -> Value {
    let dir = ecds_file.parent().unwrap_or_else(|| Path::new("."));
    json!({
        "config_source": {
            "path_config_source": {
                "path": ecds_file.to_string_lossy(),
                "watched_directory": { "path": dir.to_string_lossy() },
            },
        },
        "type_urls": [type_url],
    })
}

/// A network filter whose config comes from ECDS, read from `ecds_file` (written with
/// [`write_ecds`]; Envoy watches its directory for renames). `type_url` is usually
/// [`WASM_NETWORK_TYPE`]. The resource in the file must be named `name`.
pub fn ecds_network_filter(name: &str, ecds_file: &Path, type_url: &str) -> Value {
    json!({ "name": name, "config_discovery": ecds_config_discovery(ecds_file, type_url) })
}

/// An HTTP filter whose config comes from ECDS (see [`ecds_network_filter`]); `type_url` is
/// usually [`WASM_HTTP_TYPE`].
pub fn ecds_http_filter(name: &str, ecds_file: &Path, type_url: &str) -> Value {
    json!({ "name": name, "config_discovery": ecds_config_discovery(ecds_file, type_url) })
}

/// Writes the ECDS file atomically (temp file in the same directory, then rename), with one
/// `TypedExtensionConfig` resource named `name` holding `typed_config` (e.g.
/// [`wasm_network_typed_config`]). Safe to call while Envoy watches the directory.
pub fn write_ecds(ecds_file: &Path, name: &str, typed_config: &Value) -> Result<()> {
    let doc = json!({
        "resources": [ { "@type": TYPED_EXTENSION_CONFIG_TYPE, "name": name, "typed_config": typed_config } ],
    });
    let yaml = serde_yaml_ng::to_string(&doc)?;
    let dir = ecds_file.parent().unwrap_or_else(|| Path::new("."));
    let file_name = ecds_file
        .file_name()
        .with_context(|| format!("{} has no file name", ecds_file.display()))?;
    let tmp = dir.join(format!(".{}.tmp", file_name.to_string_lossy()));
    std::fs::write(&tmp, yaml).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, ecds_file)
        .with_context(|| format!("rename {} -> {}", tmp.display(), ecds_file.display()))?;
    Ok(())
}

/// An Envoy bootstrap: node identity, admin on a free loopback port, static listeners and
/// clusters. The node id/cluster are required as soon as any xDS (ECDS included) is used.
#[derive(Clone, Debug)]
pub struct EnvoyConfig {
    pub admin_port: u16,
    /// `node.id`, default `geomesh-test`.
    pub node_id: String,
    /// `node.cluster`, default `geomesh`.
    pub node_cluster: String,
    pub listeners: Vec<Value>,
    pub clusters: Vec<Value>,
    /// Bootstrap `stats_config` (e.g. [`geomesh_stats_tags`]), if any.
    pub stats_config: Option<Value>,
    /// Other top-level bootstrap fields (e.g. `bootstrap_extensions`), set as given.
    pub extra: serde_json::Map<String, Value>,
}

/// The `stats_config` that names geomesh's metrics as Envoy's own (filters/shell/README.md,
/// "Metrics"): `stat_namespace` takes `wasmcustom.` (the native shell's `dynamicmodulescustom.`)
/// out of the tag-extracted name (so Prometheus
/// shows `envoy_redis_...`), and `envoy.redis_prefix` takes the Redis filter's `stat_prefix` out
/// as native `redis_proxy`'s does: `envoy_redis_command_get_total{envoy_redis_prefix="shop",
/// stat_namespace="wasmcustom"}`.
pub fn geomesh_stats_tags() -> Value {
    json!({ "stats_tags": [
        { "tag_name": "stat_namespace", "regex": "^((wasmcustom|dynamicmodulescustom)\\.)(?:redis|mqtt|kafka|influxdb|http)\\." },
        { "tag_name": "envoy.redis_prefix", "regex": "^(?:wasmcustom|dynamicmodulescustom)\\.redis\\.((.+?)\\.)" },
    ] })
}

impl EnvoyConfig {
    /// Empty config with the admin interface on a free port.
    pub fn new() -> Result<Self> {
        Ok(EnvoyConfig {
            admin_port: free_port()?,
            node_id: "geomesh-test".into(),
            node_cluster: "geomesh".into(),
            listeners: Vec::new(),
            clusters: Vec::new(),
            stats_config: None,
            extra: serde_json::Map::new(),
        })
    }

    /// Sets a top-level bootstrap field (`bootstrap_extensions`, `default_socket_interface`...).
    pub fn bootstrap_field(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    pub fn stats_config(mut self, stats_config: Value) -> Self {
        self.stats_config = Some(stats_config);
        self
    }

    pub fn node(mut self, id: impl Into<String>, cluster: impl Into<String>) -> Self {
        self.node_id = id.into();
        self.node_cluster = cluster.into();
        self
    }

    pub fn listener(mut self, l: Value) -> Self {
        self.listeners.push(l);
        self
    }

    pub fn cluster(mut self, c: Value) -> Self {
        self.clusters.push(c);
        self
    }

    pub fn to_value(&self) -> Value {
        let mut v = json!({
            "node": { "id": self.node_id, "cluster": self.node_cluster },
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": self.admin_port } } },
            "static_resources": { "listeners": self.listeners, "clusters": self.clusters },
        });
        if let Some(sc) = &self.stats_config {
            v["stats_config"] = sc.clone();
        }
        for (k, x) in &self.extra {
            v[k.as_str()] = x.clone();
        }
        v
    }

    pub fn to_yaml(&self) -> String {
        // A tree of strings, numbers, arrays and objects always serialises.
        serde_yaml_ng::to_string(&self.to_value()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_wasm_tcp_listener() {
        let p = WasmPlugin::new("r", "shard_router", "target/wasm/x.wasm", "a: 1\nb: two");
        let mut cfg = EnvoyConfig::new().unwrap();
        cfg.admin_port = 9901;
        let cfg = cfg
            .listener(wasm_tcp_listener("in", 7000, &p, "up"))
            .cluster(static_cluster("up", &[7001, 7002]));
        let v: Value = serde_yaml_ng::from_str(&cfg.to_yaml()).unwrap();
        let f = &v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"];
        assert_eq!(f[0]["typed_config"]["@type"], WASM_NETWORK_TYPE);
        assert_eq!(
            f[0]["typed_config"]["config"]["configuration"]["value"],
            "a: 1\nb: two"
        );
        assert_eq!(
            f[0]["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"],
            "target/wasm/x.wasm"
        );
        assert_eq!(f[1]["typed_config"]["cluster"], "up");
        let eps = &v["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
            ["lb_endpoints"];
        assert_eq!(
            eps[1]["endpoint"]["address"]["socket_address"]["port_value"],
            7002
        );
        assert_eq!(v["admin"]["address"]["socket_address"]["port_value"], 9901);
    }
}
