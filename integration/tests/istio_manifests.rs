//! The manifests under `istio/` are what a platform team applies as-is. Without Kubernetes or
//! Istio on this machine, they are checked the way the API server, istiod and Envoy would see
//! them:
//!
//! 1. **API server**: every Istio object validates against the openAPIV3Schema of its kind and
//!    version in Istio's CRDs (tests/data/istio-crds.gen.yaml, a copy of istio/api's
//!    crd-all.gen.yaml), with `kubectl apply`'s strict field validation (unknown fields are
//!    errors, except under `x-kubernetes-preserve-unknown-fields`). CEL rules
//!    (`x-kubernetes-validations`) are listed, not evaluated.
//! 2. **istiod + Envoy**: each deployment variant (see `VARIANTS`) is turned into the Envoy
//!    configuration istiod would send to a selected sidecar: an outbound TCP listener for each
//!    patched port (as Istio generates it: a tcp_proxy to the service, or to a VirtualService's
//!    destination), an inbound HTTP listener (HCM with Istio's inbound route and the router),
//!    then the EnvoyFilter patches applied with Istio's semantics (FILTER_CHAIN INSERT_FIRST,
//!    HTTP_FILTER INSERT_BEFORE, HTTP_ROUTE MERGE, EXTENSION_CONFIG ADD), WasmPlugins as the
//!    ECDS filters Istio generates. Two substitutions, and only these: `vm_config.code.remote`
//!    becomes the local file `target/wasm/<name of the URL's file>` (what istio-agent does
//!    after downloading; the real built module), and ECDS over ADS becomes ECDS from a file
//!    (same resource, same type URLs, other transport). Each bootstrap then passes
//!    `envoy --mode validate`, and runs until Envoy is ready, which requires our filters'
//!    `on_configure` to accept the Écharde/scope configuration each manifest carries.
//! 3. **Between manifests**: cluster names resolve to Services/ServiceEntries/subsets defined
//!    here, the bridge configuration passes `geomesh-bridge --check` and names every shard the
//!    filters route to, ports agree and avoid Istio's 15000-15090, the variants carry the same
//!    configuration, module hashes agree.
//!
//! `broken_manifests_are_rejected` shows each layer failing on a broken input.

mod deploy_support;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};
use deploy_support::*;
use geomesh_integration::paths::{native_bin, repo_root, wasm_dir};
use geomesh_integration::TestDir;
use serde_json::{json, Value};

const CRDS: &str = "integration/tests/data/istio-crds.gen.yaml";

/// Sets of files applied together (istio/README.md), each checked as one sidecar's config.
/// Every file with an EnvoyFilter or a WasmPlugin must be in at least one.
const VARIANTS: &[(&str, &[&str])] = &[
    ("redis-inline", &["istio/30-echarde-outbound-tunnel.yaml"]),
    ("redis-ecds", &["istio/31-echarde-outbound-tunnel-ecds.yaml"]),
    (
        "redis-wasmplugin",
        &["istio/32-echarde-wasmplugin.yaml", "istio/35-echarde-redis-to-bridge.yaml"],
    ),
    (
        "redis-trafficextension",
        &["istio/33-echarde-trafficextension.yaml", "istio/35-echarde-redis-to-bridge.yaml"],
    ),
    (
        "scope-ecds",
        &["istio/40-scope-route.yaml", "istio/41-scope-envoyfilter.yaml"],
    ),
    (
        "scope-wasmplugin",
        &["istio/40-scope-route.yaml", "istio/42-scope-wasmplugin.yaml"],
    ),
    (
        "scope-trafficextension",
        &["istio/40-scope-route.yaml", "istio/43-scope-trafficextension.yaml"],
    ),
    ("mqtt-wasmplugin", &["istio/36-echarde-mqtt.yaml"]),
    ("kafka-wasmplugin", &["istio/37-echarde-kafka.yaml"]),
    ("influxdb-envoyfilter", &["istio/38-echarde-influxdb.yaml"]),
];

/// The Wasm part of a WasmPlugin's spec, or of a TrafficExtension's (`spec.wasm`; selector and
/// match stay in `spec`).
fn wasm_spec(d: &Doc) -> Option<&Value> {
    match d.kind() {
        "WasmPlugin" => Some(&d.value["spec"]),
        "TrafficExtension" => d.value["spec"].get("wasm"),
        _ => None,
    }
}

const WASM_NETWORK: &str = "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm";
const WASM_HTTP: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const ISTIO_GROUPS: &[&str] = &[
    "networking.istio.io",
    "extensions.istio.io",
    "security.istio.io",
    "telemetry.istio.io",
];

fn istio_docs() -> Vec<Doc> {
    let docs = docs_in("istio").expect("istio/*.yaml parse");
    assert!(docs.len() >= 10, "istio/ has only {} documents", docs.len());
    docs
}

fn crds() -> Crds {
    Crds::load(&repo_root().join(CRDS)).expect("Istio CRDs")
}

fn is_istio(doc: &Value) -> bool {
    let api = doc["apiVersion"].as_str().unwrap_or_default();
    ISTIO_GROUPS.iter().any(|g| api.starts_with(&format!("{g}/")))
}

/// Layer 1 for a list of documents: the errors, by document.
fn crd_errors(crds: &Crds, docs: &[Doc]) -> Vec<String> {
    let mut failures = Vec::new();
    for d in docs.iter().filter(|d| is_istio(&d.value)) {
        let api = d.value["apiVersion"].as_str().unwrap_or_default();
        let Some(schema) = crds.schema(api, d.kind()) else {
            failures.push(format!("{}: no CRD for {api} {}", d.label(), d.kind()));
            continue;
        };
        match schema_errors(schema, &d.value) {
            Ok(errs) => failures.extend(errs.into_iter().map(|e| format!("{}: {e}", d.label()))),
            Err(e) => failures.push(format!("{}: {e:#}", d.label())),
        }
        if d.namespace().is_empty() {
            failures.push(format!("{}: no metadata.namespace (say where it applies)", d.label()));
        }
    }
    failures
}

#[test]
fn every_istio_object_validates_against_its_crd_schema() {
    let crds = crds();
    let docs = istio_docs();
    let failures = crd_errors(&crds, &docs);
    assert!(
        failures.is_empty(),
        "rejected by the CRD schemas:\n{}",
        failures.join("\n")
    );
    let mut kinds = BTreeSet::new();
    let mut rules = 0;
    for d in docs.iter().filter(|d| is_istio(&d.value)) {
        kinds.insert(d.kind().to_owned());
        let api = d.value["apiVersion"].as_str().unwrap_or_default();
        for (path, rule, _) in cel_rules(crds.schema(api, d.kind()).unwrap(), &d.value) {
            rules += 1;
            eprintln!("CEL rule not evaluated: {} {path}: {rule}", d.label());
        }
    }
    for k in [
        "EnvoyFilter",
        "WasmPlugin",
        "ServiceEntry",
        "DestinationRule",
        "VirtualService",
    ] {
        assert!(kinds.contains(k), "no {k} checked: {kinds:?}");
    }
    eprintln!(
        "{} Istio objects valid ({kinds:?}); {rules} CEL rules in scope, not evaluated",
        docs.iter().filter(|d| is_istio(&d.value)).count()
    );
    // Everything else is a Kubernetes core kind (checked by manifests_agree_with_each_other).
    for d in docs.iter().filter(|d| !is_istio(&d.value)) {
        assert!(
            ["v1", "apps/v1", "policy/v1"].contains(&d.value["apiVersion"].as_str().unwrap_or_default()),
            "{}: neither Istio nor core Kubernetes",
            d.label()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Layer 2: what a selected sidecar receives

/// The Envoy configuration istiod (and istio-agent) would hand a sidecar selected by every
/// object of `docs`, as a bootstrap; `dir` receives the ECDS files.
fn sidecar_bootstrap(docs: &[&Doc], dir: &TestDir, variant: &str) -> Result<Value> {
    // Which listeners the patches need, and VirtualService TCP routes.
    let mut outbound_tcp: BTreeSet<u64> = BTreeSet::new();
    let mut inbound_http: BTreeSet<u64> = BTreeSet::new();
    // Outbound HTTP listeners by port, with the virtual hosts the patches name (Istio: one per
    // Service host and port, `HOST:PORT`, in the route configuration named after the port).
    let mut outbound_http: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut tcp_routes: BTreeMap<u64, String> = BTreeMap::new();
    for d in docs {
        match d.kind() {
            "EnvoyFilter" => {
                for p in d.value["spec"]["configPatches"].as_array().into_iter().flatten() {
                    let ctx = p["match"]["context"].as_str().unwrap_or("ANY");
                    let port = p["match"]["listener"]["portNumber"]
                        .as_u64()
                        .or_else(|| p["match"]["routeConfiguration"]["portNumber"].as_u64());
                    match (p["applyTo"].as_str().unwrap_or_default(), ctx, port) {
                        ("FILTER_CHAIN" | "NETWORK_FILTER", "SIDECAR_OUTBOUND", Some(port)) => {
                            outbound_tcp.insert(port);
                        }
                        ("HTTP_FILTER" | "HTTP_ROUTE", "SIDECAR_INBOUND", Some(port)) => {
                            inbound_http.insert(port);
                        }
                        ("HTTP_FILTER" | "HTTP_ROUTE", "SIDECAR_OUTBOUND", Some(port)) => {
                            let vhosts = outbound_http.entry(port).or_default();
                            if let Some(v) = p["match"]["routeConfiguration"]["vhost"]["name"].as_str() {
                                vhosts.insert(v.to_owned());
                            }
                        }
                        ("EXTENSION_CONFIG", _, _) => {}
                        (a, c, p) => bail!(
                            "{}: patch {a} / {c} / port {p:?} is not emulated by this test",
                            d.label()
                        ),
                    }
                }
            }
            "WasmPlugin" | "TrafficExtension" => {
                let s = &d.value["spec"];
                let ty = wasm_spec(d).and_then(|w| w["type"].as_str()).unwrap_or("HTTP");
                for m in s["match"].as_array().into_iter().flatten() {
                    for port in m["ports"].as_array().into_iter().flatten() {
                        let n = port["number"].as_u64().unwrap_or_default();
                        match (ty, m["mode"].as_str().unwrap_or_default()) {
                            ("NETWORK", "CLIENT") => outbound_tcp.insert(n),
                            ("HTTP", "SERVER") => inbound_http.insert(n),
                            (t, mode) => bail!("{}: WasmPlugin {t}/{mode} is not emulated by this test", d.label()),
                        };
                    }
                }
            }
            "VirtualService" => {
                for r in d.value["spec"]["tcp"].as_array().into_iter().flatten() {
                    let dest = &r["route"][0]["destination"];
                    let cluster = format!(
                        "outbound|{}|{}|{}",
                        dest["port"]["number"].as_u64().unwrap_or_default(),
                        dest["subset"].as_str().unwrap_or_default(),
                        dest["host"].as_str().unwrap_or_default()
                    );
                    for m in r["match"].as_array().into_iter().flatten() {
                        if let Some(p) = m["port"].as_u64() {
                            tcp_routes.insert(p, cluster.clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }

    // The listeners Istio generates, before any patch.
    let mut listeners = Vec::new();
    for port in &outbound_tcp {
        let cluster = tcp_routes
            .get(port)
            .cloned()
            .unwrap_or_else(|| format!("outbound|{port}||upstream.default.svc.cluster.local"));
        listeners.push(json!({
            "name": format!("10.96.0.10_{port}"),
            "address": { "socket_address": { "address": "10.96.0.10", "port_value": port } },
            "bind_to_port": false,
            "filter_chains": [ { "filters": [ {
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": cluster, "cluster": cluster,
                },
            } ] } ],
            "_geomesh": { "context": "SIDECAR_OUTBOUND", "port": port },
        }));
    }
    for (port, named) in &outbound_http {
        let mut hosts: Vec<String> = named.iter().cloned().collect();
        if hosts.is_empty() {
            hosts.push(format!("upstream.default.svc.cluster.local:{port}"));
        }
        let vhosts: Vec<Value> = hosts
            .iter()
            .map(|vh| {
                let host = vh.rsplit_once(':').map_or(vh.as_str(), |(h, _)| h);
                let cluster = format!("outbound|{port}||{host}");
                json!({
                    "name": vh,
                    "domains": [host, vh],
                    "routes": [ { "name": "default", "match": { "prefix": "/" },
                                  "route": { "cluster": cluster, "timeout": "0s" } } ],
                })
            })
            .collect();
        listeners.push(json!({
            "name": format!("0.0.0.0_{port}"),
            "address": { "socket_address": { "address": "0.0.0.0", "port_value": port } },
            "bind_to_port": false,
            "filter_chains": [ {
                "filters": [ {
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": format!("outbound_0.0.0.0_{port}"),
                        "route_config": { "name": port.to_string(), "virtual_hosts": vhosts,
                                          "validate_clusters": false },
                        "http_filters": [ { "name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } } ],
                    },
                } ],
            } ],
            "_geomesh": { "context": "SIDECAR_OUTBOUND", "port": port },
        }));
    }
    for port in &inbound_http {
        let local = format!("inbound|{port}||");
        listeners.push(json!({
            "name": format!("virtualInbound_{port}"),
            "address": { "socket_address": { "address": "0.0.0.0", "port_value": port } },
            "filter_chains": [ {
                "filter_chain_match": { "destination_port": port },
                "filters": [ {
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": format!("inbound_0.0.0.0_{port}"),
                        "route_config": {
                            "name": local,
                            "virtual_hosts": [ {
                                "name": format!("inbound|http|{port}"),
                                "domains": ["*"],
                                "routes": [ { "name": "default", "match": { "prefix": "/" },
                                              "route": { "cluster": local, "timeout": "0s" } } ],
                            } ],
                            "validate_clusters": false,
                        },
                        "http_filters": [ { "name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } } ],
                    },
                } ],
            } ],
            "_geomesh": { "context": "SIDECAR_INBOUND", "port": port },
        }));
    }

    // WasmPlugins and TrafficExtensions: Istio inserts an ECDS filter before the terminal
    // filter and serves the resource (after istio-agent's download: local code, pluginConfig as
    // a JSON string).
    let mut ecds: BTreeMap<String, Value> = BTreeMap::new();
    for d in docs.iter().filter(|d| wasm_spec(d).is_some()) {
        let s = wasm_spec(d).context("wasm spec")?;
        let resource = format!(
            "extensions.istio.io/{}/{}.{}",
            d.kind().to_ascii_lowercase(),
            d.namespace(),
            d.name()
        );
        let network = s["type"] == "NETWORK";
        let url = s["url"].as_str().unwrap_or_default();
        let mut config = json!({
            "name": format!("{}.{}", d.namespace(), d.name()),
            "root_id": s["pluginName"],
            "vm_config": {
                "runtime": "envoy.wasm.runtime.v8",
                "code": { "remote": { "http_uri": { "uri": url, "cluster": "_", "timeout": "30s" },
                                      "sha256": s["sha256"] } },
            },
        });
        if !s["pluginConfig"].is_null() {
            config["configuration"] = json!({
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": serde_json::to_string(&s["pluginConfig"])?,
            });
        }
        match s["failStrategy"].as_str() {
            Some("FAIL_OPEN") => config["failure_policy"] = json!("FAIL_OPEN"),
            Some("FAIL_RELOAD") => config["failure_policy"] = json!("FAIL_RELOAD"),
            _ => config["failure_policy"] = json!("FAIL_CLOSED"),
        }
        let type_url = if network { WASM_NETWORK } else { WASM_HTTP };
        ecds.insert(resource.clone(), json!({ "@type": type_url, "config": config }));
        let filter = json!({
            "name": resource,
            "config_discovery": { "config_source": { "ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3" },
                                  "type_urls": [type_url] },
        });
        for m in d.value["spec"]["match"].as_array().into_iter().flatten() {
            for p in m["ports"].as_array().into_iter().flatten() {
                let port = p["number"].as_u64().unwrap_or_default();
                for l in listeners.iter_mut().filter(|l| l["_geomesh"]["port"] == port) {
                    for chain in l["filter_chains"].as_array_mut().into_iter().flatten() {
                        let filters = chain["filters"].as_array_mut().context("filters")?;
                        if network {
                            let at = filters.len() - 1; // before tcp_proxy
                            filters.insert(at, filter.clone());
                        } else {
                            let hf = filters[0]["typed_config"]["http_filters"]
                                .as_array_mut()
                                .context("http_filters")?;
                            let at = hf.len() - 1; // before the router
                            hf.insert(at, filter.clone());
                        }
                    }
                }
            }
        }
    }

    // EnvoyFilter patches, in order.
    for d in docs.iter().filter(|d| d.kind() == "EnvoyFilter") {
        for p in d.value["spec"]["configPatches"].as_array().into_iter().flatten() {
            let apply_to = p["applyTo"].as_str().unwrap_or_default();
            let op = p["patch"]["operation"].as_str().unwrap_or_default();
            let value = p["patch"]["value"].clone();
            let ctx = p["match"]["context"].as_str().unwrap_or("ANY");
            let port = p["match"]["listener"]["portNumber"]
                .as_u64()
                .or_else(|| p["match"]["routeConfiguration"]["portNumber"].as_u64());
            if apply_to == "EXTENSION_CONFIG" {
                if op != "ADD" {
                    bail!("{}: EXTENSION_CONFIG only takes ADD (istiod ignores {op})", d.label());
                }
                let name = value["name"]
                    .as_str()
                    .context("EXTENSION_CONFIG value.name")?
                    .to_owned();
                ecds.insert(name, value["typed_config"].clone());
                continue;
            }
            let mut hits = 0;
            for l in listeners.iter_mut().filter(|l| {
                l["_geomesh"]["context"] == ctx && Some(l["_geomesh"]["port"].as_u64().unwrap_or(0)) == port
            }) {
                let chains = l["filter_chains"].as_array_mut().context("filter_chains")?;
                match (apply_to, op) {
                    ("FILTER_CHAIN", "INSERT_FIRST") => {
                        chains.insert(0, value.clone());
                        hits += 1;
                    }
                    ("FILTER_CHAIN", "ADD") => {
                        chains.push(value.clone());
                        hits += 1;
                    }
                    ("HTTP_FILTER", "INSERT_BEFORE") => {
                        let sub = p["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"]
                            .as_str()
                            .context("HTTP_FILTER INSERT_BEFORE needs a subFilter match")?;
                        for chain in chains.iter_mut() {
                            for f in chain["filters"].as_array_mut().into_iter().flatten() {
                                if let Some(hf) = f["typed_config"]["http_filters"].as_array_mut() {
                                    if let Some(at) = hf.iter().position(|h| h["name"] == sub) {
                                        hf.insert(at, value.clone());
                                        hits += 1;
                                    }
                                }
                            }
                        }
                    }
                    ("HTTP_ROUTE", "MERGE") => {
                        let want_action = p["match"]["routeConfiguration"]["vhost"]["route"]["action"].as_str();
                        let want_vhost = p["match"]["routeConfiguration"]["vhost"]["name"].as_str();
                        for chain in chains.iter_mut() {
                            for f in chain["filters"].as_array_mut().into_iter().flatten() {
                                for vh in f["typed_config"]["route_config"]["virtual_hosts"]
                                    .as_array_mut()
                                    .into_iter()
                                    .flatten()
                                {
                                    if want_vhost.is_some_and(|w| vh["name"] != w) {
                                        continue;
                                    }
                                    for r in vh["routes"].as_array_mut().into_iter().flatten() {
                                        if want_action == Some("ROUTE") && r.get("route").is_none() {
                                            continue;
                                        }
                                        proto_merge(r, &value);
                                        hits += 1;
                                    }
                                }
                            }
                        }
                    }
                    (a, o) => bail!("{}: {a} {o} is not emulated by this test", d.label()),
                }
            }
            if hits == 0 {
                bail!(
                    "{}: patch {apply_to} {op} matched nothing in the emulated sidecar",
                    d.label()
                );
            }
        }
    }

    // ECDS over ADS -> ECDS from a file (remote code -> the built module first).
    for (name, tc) in ecds.iter_mut() {
        remote_wasm_to_local(tc).with_context(|| format!("ECDS resource {name}"))?;
    }
    let mut used = BTreeSet::new();
    for l in listeners.iter_mut() {
        let mut err = None;
        for_each_object_mut(l, &mut |m| {
            let name = m.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            let Some(cd) = m.get_mut("config_discovery") else {
                return;
            };
            let Some(tc) = ecds.get(&name) else {
                err.get_or_insert(format!(
                    "filter {name} uses ECDS but no EXTENSION_CONFIG (or WasmPlugin) provides it"
                ));
                return;
            };
            let ty = tc["@type"].as_str().unwrap_or_default();
            if !cd["type_urls"].as_array().is_some_and(|a| a.iter().any(|t| t == ty)) {
                err.get_or_insert(format!(
                    "filter {name}: type_urls {} do not admit {ty}",
                    cd["type_urls"]
                ));
                return;
            }
            if cd["config_source"].get("ads").is_none() {
                err.get_or_insert(format!(
                    "filter {name}: config_source is not ADS (istiod serves ECDS over ADS)"
                ));
                return;
            }
            let file = dir.join(format!("ecds-{variant}-{}.yaml", name.replace(['/', '.'], "_")));
            let doc = json!({ "resources": [ {
                "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                "name": name, "typed_config": tc } ] });
            if let Err(e) = serde_yaml_ng::to_string(&doc)
                .map_err(anyhow::Error::from)
                .and_then(|y| std::fs::write(&file, y).map_err(anyhow::Error::from))
            {
                err.get_or_insert(format!("write {}: {e}", file.display()));
                return;
            }
            let cs = cd["config_source"].as_object_mut().expect("object");
            cs.remove("ads");
            cs.insert(
                "path_config_source".into(),
                json!({ "path": file.to_string_lossy(), "watched_directory": { "path": dir.path().to_string_lossy() } }),
            );
            used.insert(name);
        });
        if let Some(e) = err {
            bail!(e);
        }
        remote_wasm_to_local(l)?;
        if let Some(o) = l.as_object_mut() {
            o.remove("_geomesh");
        }
    }
    for name in ecds.keys() {
        if !used.contains(name) {
            bail!("ECDS resource {name} is provided but no filter uses it");
        }
    }

    // Every cluster a filter or route names, as istiod would have generated it.
    let mut clusters = Vec::new();
    for c in referenced_clusters(&json!(listeners)) {
        clusters.push(istio_cluster(&c)?);
    }
    Ok(json!({
        "node": { "id": format!("sidecar~10.1.0.7~{variant}.default~default.svc.cluster.local"), "cluster": variant },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 15000 } } },
        "static_resources": { "listeners": listeners, "clusters": clusters },
    }))
}

/// An Istio cluster by name: `outbound|PORT|SUBSET|HOST` resolves HOST:PORT by DNS (as a
/// Service's cluster would reach its endpoints), `inbound|PORT||` is the local app.
fn istio_cluster(name: &str) -> Result<Value> {
    let parts: Vec<&str> = name.split('|').collect();
    let (host, port) = match parts.as_slice() {
        ["outbound", port, _subset, host] => ((*host).to_owned(), port.parse::<u16>()?),
        ["inbound", port, _, _] => ("127.0.0.1".to_owned(), port.parse::<u16>()?),
        _ => bail!("cluster `{name}` is not an Istio cluster name (outbound|PORT|SUBSET|HOST)"),
    };
    let ty = if name.starts_with("inbound") {
        "STATIC"
    } else {
        "STRICT_DNS"
    };
    Ok(json!({
        "name": name, "type": ty, "connect_timeout": "10s",
        "load_assignment": { "cluster_name": name, "endpoints": [ { "lb_endpoints": [ { "endpoint": { "address": {
            "socket_address": { "address": host, "port_value": port } } } } ] } ] },
    }))
}

/// Istio's MERGE: protobuf merge (objects recursively, lists appended, scalars replaced), with
/// RouteAction's `cluster_specifier` oneof: setting one member clears the others.
fn proto_merge(dst: &mut Value, src: &Value) {
    const CLUSTER_SPECIFIER: &[&str] = &[
        "cluster",
        "cluster_header",
        "weighted_clusters",
        "cluster_specifier_plugin",
        "inline_cluster_specifier_plugin",
    ];
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            if s.keys().any(|k| CLUSTER_SPECIFIER.contains(&k.as_str())) {
                d.retain(|k, _| !CLUSTER_SPECIFIER.contains(&k.as_str()) || s.contains_key(k));
            }
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(dv) => proto_merge(dv, v),
                    None => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(d), Value::Array(s)) => d.extend(s.iter().cloned()),
        (d, s) => *d = s.clone(),
    }
}

fn variant_docs<'a>(docs: &'a [Doc], files: &[&str]) -> Vec<&'a Doc> {
    let v: Vec<&Doc> = docs.iter().filter(|d| files.contains(&d.file.as_str())).collect();
    assert!(!v.is_empty(), "no document in {files:?}");
    v
}

#[test]
fn every_variant_gives_a_sidecar_config_envoy_validates_and_runs() {
    let docs = istio_docs();
    // Completeness: nothing that changes a sidecar escapes this test.
    for d in &docs {
        if ["EnvoyFilter", "WasmPlugin", "TrafficExtension", "VirtualService"].contains(&d.kind()) {
            assert!(
                VARIANTS.iter().any(|(_, files)| files.contains(&d.file.as_str())),
                "{} is in no variant of this test",
                d.label()
            );
        }
    }
    let dir = TestDir::new("istio-variants").unwrap();
    eprintln!("{}", envoy_version());
    let mut failures = Vec::new();
    for (variant, files) in VARIANTS {
        let vdocs = variant_docs(&docs, files);
        let result = sidecar_bootstrap(&vdocs, &dir, variant)
            .and_then(|b| envoy_validate(&dir, variant, &b).map(|p| (b, p)))
            .and_then(|(b, p)| envoy_configure_run(&dir, variant, &b).map(|log| (p, log)));
        match result {
            Ok((p, log)) => {
                let configured = log.lines().filter(|l| l.contains("wasm log")).count();
                eprintln!(
                    "{variant}: {} validates and runs ({configured} wasm log lines)",
                    p.display()
                );
            }
            Err(e) => failures.push(format!("{variant}: {e:#}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// Layer 3: between manifests

/// The filter configuration each Redis/scope manifest carries, parsed: (doc label, module file,
/// configuration as JSON).
fn filter_configs(docs: &[Doc]) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for d in docs {
        if let Some(w) = wasm_spec(d) {
            let module = module_file(w["url"].as_str().unwrap_or_default());
            out.push((d.label(), module, w["pluginConfig"].clone()));
        }
        if d.kind() == "EnvoyFilter" {
            for (_, m) in objects(&d.value) {
                let (Some(vm), Some(cfg)) = (m.get("vm_config"), m.get("configuration")) else {
                    continue;
                };
                let uri = vm["code"]["remote"]["http_uri"]["uri"].as_str().unwrap_or_default();
                let module = uri.rsplit('/').next().unwrap_or_default().to_owned();
                let text = cfg["value"].as_str().unwrap_or_default();
                let parsed = yaml_docs(text).ok().and_then(|mut v| v.pop()).unwrap_or(Value::Null);
                out.push((d.label(), module, parsed));
            }
        }
    }
    out
}

fn find<'a>(docs: &'a [Doc], kind: &str, name: &str) -> &'a Doc {
    docs.iter()
        .find(|d| d.kind() == kind && d.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in istio/"))
}

fn container_port(deploy: &Doc, port: &Value) -> Option<u64> {
    let containers = deploy.value["spec"]["template"]["spec"]["containers"].as_array()?;
    for c in containers {
        for p in c["ports"].as_array().into_iter().flatten() {
            if p["name"] == *port || p["containerPort"] == *port {
                return p["containerPort"].as_u64();
            }
        }
    }
    None
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
}

/// `<bin> --check --config <file>` on a configuration of the manifests: the problem, if any.
fn binary_check(dir: &TestDir, bin: &str, file: &str, text: &str) -> Option<String> {
    let path = dir.write(file, text).unwrap();
    let out = std::process::Command::new(native_bin(bin).unwrap())
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (!out.status.success())
        .then(|| format!("{bin} --check rejects istio's {file}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn manifests_agree_with_each_other() {
    let docs = istio_docs();
    let mut problems = Vec::new();

    // Services, ServiceEntries and subsets defined here.
    let mut services: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for d in &docs {
        match d.kind() {
            "Service" => {
                let host = format!("{}.{}.svc.cluster.local", d.name(), d.namespace());
                let ports = d.value["spec"]["ports"].as_array().into_iter().flatten();
                services
                    .entry(host)
                    .or_default()
                    .extend(ports.filter_map(|p| p["port"].as_u64()));
            }
            "ServiceEntry" => {
                for h in d.value["spec"]["hosts"].as_array().into_iter().flatten() {
                    let ports = d.value["spec"]["ports"].as_array().into_iter().flatten();
                    services
                        .entry(h.as_str().unwrap_or_default().to_owned())
                        .or_default()
                        .extend(ports.filter_map(|p| p["number"].as_u64()));
                }
            }
            _ => {}
        }
    }
    let mut subsets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for d in docs.iter().filter(|d| d.kind() == "DestinationRule") {
        let host = d.value["spec"]["host"].as_str().unwrap_or_default().to_owned();
        for s in d.value["spec"]["subsets"].as_array().into_iter().flatten() {
            subsets
                .entry(host.clone())
                .or_default()
                .insert(s["name"].as_str().unwrap_or_default().to_owned());
        }
    }

    // 1. Clusters of geomesh's own Services (tcp_proxy to the bridge, module downloads) and
    //    VirtualService destinations exist as Services with that port.
    let mut named = BTreeSet::new();
    for d in &docs {
        for c in referenced_clusters(&d.value) {
            named.insert((d.label(), c));
        }
        if d.kind() == "VirtualService" {
            for r in d.value["spec"]["tcp"].as_array().into_iter().flatten() {
                for rt in r["route"].as_array().into_iter().flatten() {
                    let dst = &rt["destination"];
                    named.insert((
                        d.label(),
                        format!(
                            "outbound|{}||{}",
                            dst["port"]["number"].as_u64().unwrap_or(0),
                            dst["host"].as_str().unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        if let Some(w) = wasm_spec(d) {
            let url = w["url"].as_str().unwrap_or_default();
            if let Some(rest) = url.strip_prefix("http://") {
                let hostport = rest.split('/').next().unwrap_or_default();
                let (h, p) = hostport.rsplit_once(':').unwrap_or((hostport, "80"));
                named.insert((d.label(), format!("outbound|{p}||{h}")));
            }
        }
    }
    let mut geomesh_clusters = 0;
    for (label, c) in &named {
        let parts: Vec<&str> = c.split('|').collect();
        let ["outbound", port, subset, host] = parts.as_slice() else {
            problems.push(format!("{label}: `{c}` is not an Istio outbound cluster name"));
            continue;
        };
        if !host.ends_with(".geomesh.svc.cluster.local") {
            continue; // the application's own Services (Redis shards, ...) are not defined here
        }
        geomesh_clusters += 1;
        let port: u64 = port.parse().unwrap_or(0);
        if !services.get(*host).is_some_and(|ps| ps.contains(&port)) {
            problems.push(format!(
                "{label}: cluster `{c}`: no Service {host} with port {port} in istio/"
            ));
        }
        if !subset.is_empty() && !subsets.get(*host).is_some_and(|s| s.contains(*subset)) {
            problems.push(format!("{label}: cluster `{c}`: no subset {subset} for {host}"));
        }
    }
    assert!(
        geomesh_clusters >= 5,
        "only {geomesh_clusters} references to geomesh's Services checked"
    );

    // 2. The bridge: its config is valid for the real binary, its ports are the Deployment's and
    //    the Service's, none is Istio's.
    let cm = find(&docs, "ConfigMap", "geomesh-bridge");
    let text = cm.value["data"]["bridge.yaml"].as_str().expect("bridge.yaml");
    let dir = TestDir::new("istio-bridge-config").unwrap();
    problems.extend(binary_check(&dir, "geomesh-bridge", "bridge.yaml", text));
    let bridge = yaml_docs(text).unwrap().pop().unwrap();
    let deploy = find(&docs, "Deployment", "geomesh-bridge");
    let svc = find(&docs, "Service", "geomesh-bridge");
    for key in ["listen", "grpc_listen", "admin_listen"] {
        let p = port_of(bridge[key].as_str().unwrap_or_default());
        if container_port(deploy, &json!(p)).is_none() {
            problems.push(format!(
                "bridge.yaml {key} port {p} is not a containerPort of the Deployment"
            ));
        }
        if !bridge[key].as_str().unwrap_or_default().starts_with("0.0.0.0:") {
            problems.push(format!(
                "bridge.yaml {key} must bind 0.0.0.0 (the sidecar forwards to the pod IP)"
            ));
        }
    }
    for p in svc.value["spec"]["ports"].as_array().unwrap() {
        if container_port(deploy, &p["targetPort"]).is_none() {
            problems.push(format!(
                "Service geomesh-bridge port {}: targetPort {} is no container port",
                p["port"], p["targetPort"]
            ));
        }
    }
    let tpl = &deploy.value["spec"]["template"];
    let c0 = &tpl["spec"]["containers"][0];
    let ready = &c0["readinessProbe"]["httpGet"];
    if ready["path"] != "/ready"
        || container_port(deploy, &ready["port"]) != Some(port_of(bridge["admin_listen"].as_str().unwrap_or_default()))
    {
        problems.push(format!("readinessProbe must be GET /ready on the admin port: {ready}"));
    }
    if c0["livenessProbe"]["httpGet"]["path"] == "/ready" {
        problems.push("livenessProbe on /ready would kill draining bridges".into());
    }
    let drain_ms = bridge["defaults"]["drain_timeout_ms"].as_u64().unwrap_or(20_000);
    let grace_s = tpl["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    if grace_s * 1000 < drain_ms + 5000 {
        problems.push(format!(
            "terminationGracePeriodSeconds {grace_s} s leaves no margin over drain_timeout_ms {drain_ms}"
        ));
    }

    // 2b. The agent: its config is valid for the real binary; its listeners are container and
    //     Service ports; its TLS files come from a mounted Secret and its store is on the mounted
    //     claim; its peers are https:// hosts the ServiceEntry declares, TLS on that port; and it
    //     follows a renewed Secret (--watch-tls).
    let cm = find(&docs, "ConfigMap", "geomesh-agent");
    let text = cm.value["data"]["agent.yaml"].as_str().expect("agent.yaml");
    problems.extend(binary_check(&dir, "geomesh-agent", "agent.yaml", text));
    let agent = yaml_docs(text).unwrap().pop().unwrap();
    let deploy = find(&docs, "Deployment", "geomesh-agent");
    let svc_ports: Vec<u64> = find(&docs, "Service", "geomesh-agent").value["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["port"].as_u64())
        .collect();
    for (key, addr) in [
        ("listen", &agent["listen"]),
        ("peer_listen", &agent["peer_listen"]),
        ("replication.listen", &agent["replication"]["listen"]),
    ] {
        let p = port_of(addr.as_str().unwrap_or_default());
        if container_port(deploy, &json!(p)).is_none() || !svc_ports.contains(&p) {
            problems.push(format!("agent.yaml {key} port {p} is not a containerPort and a Service port"));
        }
    }
    let c0 = &deploy.value["spec"]["template"]["spec"]["containers"][0];
    let volumes = &deploy.value["spec"]["template"]["spec"]["volumes"];
    let mounted = |file: &str, source: &str| {
        c0["volumeMounts"].as_array().unwrap().iter().any(|m| {
            let under = file.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap_or("-")));
            let from = volumes.as_array().unwrap().iter().any(|v| v["name"] == m["name"] && v.get(source).is_some());
            under && from
        })
    };
    for f in ["cert", "key", "ca"] {
        let file = agent["tls"][f].as_str().unwrap_or_default();
        if !mounted(file, "secret") {
            problems.push(format!("agent.yaml tls.{f} `{file}` is not in a mounted Secret"));
        }
    }
    let data_dir = agent["replication"]["data_dir"].as_str().unwrap_or_default();
    if !mounted(data_dir, "persistentVolumeClaim") {
        problems.push(format!("agent.yaml replication.data_dir `{data_dir}` is not on the mounted claim"));
    }
    if !c0["args"].as_array().unwrap().iter().any(|a| a == "--watch-tls") {
        problems.push("the agent does not follow its TLS Secret (--watch-tls)".into());
    }
    let entry = find(&docs, "ServiceEntry", "geomesh-agent-peers");
    for peer in agent["peers"].as_array().unwrap() {
        let url = peer["url"].as_str().unwrap_or_default();
        let Some((host, port)) = url.strip_prefix("https://").and_then(|r| r.rsplit_once(':')) else {
            problems.push(format!("agent.yaml peer `{url}` is not https://host:port"));
            continue;
        };
        let declared = entry.value["spec"]["hosts"].as_array().unwrap().iter().any(|h| h == host)
            && entry.value["spec"]["ports"].as_array().unwrap().iter().any(|p| {
                p["number"].as_u64() == port.parse().ok() && p["protocol"] == "TLS"
            });
        if !declared {
            problems.push(format!("agent.yaml peer `{url}`: not a TLS port of a host of ServiceEntry geomesh-agent-peers"));
        }
    }

    // 3. Selectors and volumes.
    for d in docs.iter().filter(|d| d.kind() == "Deployment") {
        let labels = &d.value["spec"]["template"]["metadata"]["labels"];
        for (k, v) in d.value["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            if labels[k] != *v {
                problems.push(format!(
                    "{}: selector {k}={v} does not match the pod template",
                    d.label()
                ));
            }
        }
        let pin = std::fs::read_to_string(repo_root().join("istio/pin-wasm.sh")).unwrap();
        for (_, m) in objects(&d.value["spec"]["template"]["spec"]["volumes"]) {
            if let Some(name) = m.get("configMap").and_then(|c| c["name"].as_str()) {
                let defined = docs
                    .iter()
                    .any(|x| x.kind() == "ConfigMap" && x.name() == name && x.namespace() == d.namespace());
                let published = pin.contains(&format!("create configmap {name} "));
                if !defined && !published {
                    problems.push(format!(
                        "{}: ConfigMap {name} is neither in istio/ nor made by istio/pin-wasm.sh",
                        d.label()
                    ));
                }
            }
        }
    }
    for d in docs.iter().filter(|d| d.kind() == "Service") {
        let sel = d.value["spec"]["selector"].as_object().unwrap();
        let matched = docs.iter().any(|x| {
            x.kind() == "Deployment"
                && x.namespace() == d.namespace()
                && sel
                    .iter()
                    .all(|(k, v)| x.value["spec"]["template"]["metadata"]["labels"][k] == *v)
        });
        if !matched {
            problems.push(format!("{}: selects no Deployment of istio/", d.label()));
        }
    }

    // 4. No port of Istio's range (15000-15090) anywhere we choose one.
    for d in &docs {
        for (path, m) in objects(&d.value) {
            for key in ["containerPort", "port", "targetPort", "number"] {
                if let Some(p) = m.get(key).and_then(Value::as_u64) {
                    if (15000..=15090).contains(&p) {
                        problems.push(format!("{} {path}/{key}: port {p} is in Istio's range", d.label()));
                    }
                }
            }
        }
    }
    for key in ["listen", "grpc_listen", "admin_listen"] {
        let p = port_of(bridge[key].as_str().unwrap_or_default());
        if (15000..=15090).contains(&p) {
            problems.push(format!("bridge.yaml {key}: port {p} is in Istio's range"));
        }
    }

    // 5. Filter configurations: variants agree; Redis targets are the bridge's clusters; the
    //    scope registry's sites are the DestinationRule's subsets.
    let configs = filter_configs(&docs);
    let mut by_module: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for (label, module, cfg) in &configs {
        by_module
            .entry(module.clone())
            .or_default()
            .push((label.clone(), cfg.clone()));
    }
    assert_eq!(
        by_module.keys().cloned().collect::<Vec<_>>(),
        vec![
            "geomesh_filter_influx.wasm".to_owned(),
            "geomesh_filter_kafka.wasm".to_owned(),
            "geomesh_filter_mqtt.wasm".to_owned(),
            "geomesh_filter_redis.wasm".to_owned(),
            "geomesh_filter_scope.wasm".to_owned()
        ],
        "modules loaded by istio/"
    );
    for (module, cfgs) in &by_module {
        let (first_label, first) = &cfgs[0];
        for (label, cfg) in &cfgs[1..] {
            if cfg != first {
                problems.push(format!(
                    "{module}: {label} carries another configuration than {first_label}:\n{cfg:#}\nvs\n{first:#}"
                ));
            }
        }
    }
    // The filters that reach their shards through the bridge (network filters) route only to
    // clusters bridge.yaml lists; the InfluxDB filter (HTTP, `dispatch_http_call`) routes to
    // Istio's own clusters of its shards, and the agent's replay queue knows each of them.
    let bridge_clusters = bridge["clusters"].as_object().unwrap();
    let influx_replay = agent["influx_replay"]["shards"].as_object().cloned().unwrap_or_default();
    for module in [
        "geomesh_filter_redis.wasm",
        "geomesh_filter_mqtt.wasm",
        "geomesh_filter_kafka.wasm",
        "geomesh_filter_influx.wasm",
    ] {
        for (label, cfg) in by_module.get(module).unwrap() {
            let mut targets = vec![cfg["default_cluster"].clone(), cfg["local_cluster"].clone()];
            for r in cfg["routing_table"].as_object().into_iter().flat_map(|m| m.values()) {
                targets.push(r["cluster"].clone());
                targets.push(r.clone()); // the short form `topic: cluster`
                targets.extend(r["clusters"].as_array().into_iter().flatten().cloned());
            }
            for t in targets.iter().filter_map(Value::as_str) {
                let known = if module == "geomesh_filter_influx.wasm" {
                    influx_replay.contains_key(t)
                } else {
                    bridge_clusters.contains_key(t)
                };
                if !known {
                    let by = if module == "geomesh_filter_influx.wasm" {
                        "agent.yaml influx_replay.shards"
                    } else {
                        "bridge.yaml"
                    };
                    problems.push(format!("{label}: the filter routes to `{t}`, which {by} does not list"));
                }
            }
        }
    }
    for (label, cfg) in by_module.get("geomesh_filter_influx.wasm").unwrap() {
        let replay = cfg["influxdb"]["replay_cluster"].as_str().unwrap_or_default();
        let api = port_of(agent["listen"].as_str().unwrap_or_default());
        if replay != format!("outbound|{api}||geomesh-agent.geomesh.svc.cluster.local") {
            problems.push(format!("{label}: replay_cluster `{replay}` is not the agent's API (port {api})"));
        }
    }
    for (label, cfg) in by_module.get("geomesh_filter_kafka.wasm").unwrap() {
        // Clients come back to the advertised address: it must be a shard Service the
        // filtered listener (its port) intercepts.
        let host = cfg["kafka"]["advertised_host"].as_str().unwrap_or_default();
        let port = cfg["kafka"]["advertised_port"].as_u64().unwrap_or_default();
        if !bridge_clusters.contains_key(&format!("outbound|{port}||{host}")) {
            problems.push(format!("{label}: advertised {host}:{port} is not a shard Service the filter intercepts"));
        }
    }
    for (label, cfg) in by_module.get("geomesh_filter_scope.wasm").unwrap() {
        let http = &cfg["http"];
        let pattern = http["cluster_pattern"].as_str().unwrap_or_default();
        let service = http["service"].as_str().unwrap_or_default();
        let host = pattern
            .rsplit('|')
            .next()
            .unwrap_or_default()
            .replace("{service}", service);
        for site in http["sites"].as_array().into_iter().flatten() {
            let s = site.as_str().unwrap_or_default();
            let explicit = http["clusters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["service"] == service && c["site"] == s);
            if !explicit && !subsets.get(&host).is_some_and(|ss| ss.contains(s)) {
                problems.push(format!(
                    "{label}: site {s} of {service} maps to a subset {s} of {host} that no DestinationRule defines"
                ));
            }
        }
    }

    // 6. Module pins: one sha256 per module and transport (an HTTP module's sha256, an OCI
    //    image's manifest digest), well formed; URL and hash the same everywhere; an
    //    `oci://...@sha256:D` URL and its `sha256` field name the same digest.
    let mut pins: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for d in &docs {
        if let Some(w) = wasm_spec(d) {
            let url = w["url"].as_str().unwrap_or_default().to_owned();
            let sha = w["sha256"].as_str().unwrap_or_default().to_owned();
            if url.starts_with("oci://") {
                match url.split_once("@sha256:") {
                    Some((_, digest)) if digest == sha => {}
                    _ => problems.push(format!(
                        "{}: an OCI module is pinned by digest: url `{url}` must end in @sha256:{sha}",
                        d.label()
                    )),
                }
            }
            let transport = if url.starts_with("oci://") { "oci" } else { "http" };
            pins.entry(format!("{} ({transport})", module_file(&url)))
                .or_default()
                .insert((url, sha));
        }
        for (_, m) in objects(&d.value) {
            if let Some(r) = m.get("remote") {
                let url = r["http_uri"]["uri"].as_str().unwrap_or_default().to_owned();
                pins.entry(format!("{} (http)", module_file(&url)))
                    .or_default()
                    .insert((url, r["sha256"].as_str().unwrap_or_default().to_owned()));
            }
        }
    }
    let oci_dir = TestDir::new("istio-oci-pins").unwrap();
    for (module, set) in &pins {
        if set.len() != 1 {
            problems.push(format!("{module}: manifests disagree on URL/sha256: {set:?}"));
        }
        for (_, sha) in set {
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                problems.push(format!("{module}: sha256 `{sha}` is not 64 lowercase hex digits"));
            }
        }
        let file = module.split(' ').next().unwrap_or_default();
        let built = wasm_dir().join(file);
        let local = if module.ends_with("(oci)") {
            std::fs::read(&built).ok().and_then(|m| {
                geomesh_wasm_oci::build(&m, &oci_dir.join(file), "pin")
                    .ok()
                    .map(|b| b.manifest_digest.trim_start_matches("sha256:").to_owned())
            })
        } else {
            sha256_hex(&built).ok()
        };
        if let (Some(local), Some((_, pinned))) = (local, set.iter().next()) {
            // Not a failure: the manifests pin a release, the tree may hold a newer build.
            eprintln!(
                "{module}: pinned {pinned}, this build gives {local}{}",
                if &local == pinned {
                    " (same)"
                } else {
                    " (differs: run make oci && istio/pin-wasm.sh before deploying this build)"
                }
            );
        }
    }

    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The checks can fail

/// Why Envoy refuses a bootstrap: `--mode validate`'s error, else the run's (a Wasm plugin
/// whose configuration comes by ECDS is only configured by a running Envoy). Panics if both
/// accept it.
fn rejection(dir: &TestDir, name: &str, bootstrap: &Value) -> String {
    match envoy_validate(dir, name, bootstrap) {
        Err(e) => format!("{e:#}"),
        Ok(_) => match envoy_configure_run(dir, name, bootstrap) {
            Err(e) => format!("{e:#}"),
            Ok(log) => panic!("Envoy accepted the broken {name}:\n{log}"),
        },
    }
}

fn mutated(doc: &Doc, f: impl FnOnce(&mut Value)) -> Doc {
    let mut d = doc.clone();
    f(&mut d.value);
    d
}

#[test]
fn broken_manifests_are_rejected() {
    let crds = crds();
    let docs = istio_docs();
    let tunnel = docs
        .iter()
        .find(|d| d.file == "istio/30-echarde-outbound-tunnel.yaml")
        .expect("30-echarde-outbound-tunnel.yaml");
    assert!(crd_errors(&crds, std::slice::from_ref(tunnel)).is_empty());

    // Layer 1: an unknown field, a bad enum value, a bad name, a wrong type.
    let cases: Vec<(&str, Doc)> = vec![
        (
            "workloadSelektor",
            mutated(tunnel, |v| v["spec"]["workloadSelektor"] = json!({})),
        ),
        (
            "INSERT_FRIST",
            mutated(tunnel, |v| {
                v["spec"]["configPatches"][0]["patch"]["operation"] = json!("INSERT_FRIST")
            }),
        ),
        (
            "metadata/name",
            mutated(tunnel, |v| v["metadata"]["name"] = json!("Echarde_Tunnel")),
        ),
        (
            "portNumber",
            mutated(tunnel, |v| {
                v["spec"]["configPatches"][0]["match"]["listener"]["portNumber"] = json!("6379")
            }),
        ),
    ];
    for (needle, d) in &cases {
        let errs = crd_errors(&crds, std::slice::from_ref(d)).join("\n");
        assert!(errs.contains(needle), "schema check missed {needle}: {errs:?}");
    }
    let plugin = docs.iter().find(|d| d.kind() == "WasmPlugin").unwrap();
    let errs = crd_errors(&crds, &[mutated(plugin, |v| v["spec"]["sha256"] = json!("ABC"))]).join("\n");
    assert!(errs.contains("sha256"), "{errs}");
    // ...but the open part of a patch is not the schema's business (Envoy checks it).
    let open = mutated(tunnel, |v| {
        v["spec"]["configPatches"][0]["patch"]["value"]["anything"] = json!(1)
    });
    assert!(crd_errors(&crds, &[open]).is_empty());

    // Layer 2: Envoy refuses a field of the patch that does not exist...
    let dir = TestDir::new("istio-broken").unwrap();
    let bad_field = mutated(tunnel, |v| {
        v["spec"]["configPatches"][0]["patch"]["value"]["filters"][1]["typed_config"]["stat_prefx"] = json!("x")
    });
    let b = sidecar_bootstrap(&[&bad_field], &dir, "bad-field").unwrap();
    let err = format!("{:#}", envoy_validate(&dir, "bad-field", &b).unwrap_err());
    assert!(err.contains("stat_prefx"), "{err}");
    // ...and our filter refuses a routing table with a mistake, naming the field.
    let bad_table = mutated(tunnel, |v| {
        let cfg = &mut v["spec"]["configPatches"][0]["patch"]["value"]["filters"][0]["typed_config"]["config"]
            ["configuration"]["value"];
        *cfg = json!(cfg.as_str().unwrap().replace("type: key", "type: keys"));
    });
    let b = sidecar_bootstrap(&[&bad_table], &dir, "bad-table").unwrap();
    let err = rejection(&dir, "bad-table", &b);
    assert!(err.contains("routing_table.user1.type"), "{err}");
    // The same mistake in the ECDS resource (which validate mode does not load: the run does).
    let ecds = docs
        .iter()
        .find(|d| d.file == "istio/31-echarde-outbound-tunnel-ecds.yaml")
        .unwrap();
    let bad_ecds = mutated(ecds, |v| {
        let cfg =
            &mut v["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["configuration"]["value"];
        *cfg = json!(cfg.as_str().unwrap().replace("type: key", "type: keys"));
    });
    let b = sidecar_bootstrap(&[&bad_ecds], &dir, "bad-ecds").unwrap();
    let err = rejection(&dir, "bad-ecds", &b);
    assert!(err.contains("routing_table.user1.type"), "{err}");
    // And in a WasmPlugin's pluginConfig (JSON for the filter).
    let bad_plugin = mutated(plugin, |v| {
        v["spec"]["pluginConfig"]["routing_table"]["user1"]["type"] = json!("keys")
    });
    let vs = docs.iter().find(|d| d.kind() == "VirtualService").unwrap();
    let b = sidecar_bootstrap(&[&bad_plugin, vs], &dir, "bad-plugin").unwrap();
    let err = rejection(&dir, "bad-plugin", &b);
    assert!(err.contains("routing_table.user1.type"), "{err}");
    // A module that is not built is an error, not a skip.
    let missing = mutated(tunnel, |v| {
        let r = &mut v["spec"]["configPatches"][0]["patch"]["value"]["filters"][0]["typed_config"]["config"]
            ["vm_config"]["code"]["remote"]["http_uri"]["uri"];
        *r = json!("http://x/geomesh_filter_nothing.wasm");
    });
    let err = format!("{:#}", sidecar_bootstrap(&[&missing], &dir, "missing").unwrap_err());
    assert!(err.contains("geomesh_filter_nothing.wasm"), "{err}");
    // ECDS: a filter naming a resource nobody provides.
    let orphan = mutated(ecds, |v| {
        v["spec"]["configPatches"][0]["patch"]["value"]["name"] = json!("other")
    });
    let err = format!("{:#}", sidecar_bootstrap(&[&orphan], &dir, "orphan").unwrap_err());
    assert!(err.contains("no EXTENSION_CONFIG"), "{err}");
}
