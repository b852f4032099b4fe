//! The scope-lang topology of `examples/scope/`: three sites on loopback, each with its Envoy
//! (one listener per service, the `geomesh_filter_scope.wasm` HTTP filter in front of each),
//! its `geomesh-agent` and the two example services (`s` = `compute`, `t` = `image`, from the
//! `geomesh-scope-example` binary).
//!
//! One generator makes every config: [`ScopePlan::fixed`] gives the example's fixed ports and
//! its output *is* `examples/scope/` (a test compares them byte for byte; regenerate with
//! `GEOMESH_UPDATE_EXAMPLES=1`), [`ScopePlan::free`] the same topology on free ports for tests.
//! [`ScopeTopology::start`] runs a plan; [`WanLinks`] puts every inter-site link (agent
//! heartbeats and request forwarding) behind a [`Relay`] to add real latency or cut a site off.
//!
//! Per site `DC k` (ports of the fixed plan):
//!
//! | what | port | cluster name in every Envoy |
//! |---|---|---|
//! | Envoy admin | 18k00 | |
//! | Envoy listener for `compute` (filter `service: compute`) | 18k01 | `dc_k_compute` (remote sites) |
//! | Envoy listener for `image` (filter `service: image`) | 18k02 | `dc_k_image` (remote sites) |
//! | geomesh-agent | 18k10 | `geomesh_agent` (local site) |
//! | s (compute instance) | 18k11 | `dc_k_compute` (local site) |
//! | t (image instance) | 18k12 | `dc_k_image` (local site) |
//!
//! `s` calls `t` through its own site's Envoy listener for `image`, as an app calls another
//! service through its sidecar.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use geomesh_scope::health::SitesDocument;
use geomesh_scope::sanitize;
use serde_json::{json, Value};

use crate::envoy::{
    ecds_http_filter, http_listener, static_cluster, wasm_http_filter, wasm_http_typed_config,
    write_ecds, Envoy, EnvoyConfig, EnvoyOptions, WasmPlugin, HCM_TYPE, ROUTER_TYPE,
    WASM_HTTP_TYPE,
};
use crate::paths::{native_bin, repo_root};
use crate::ports::free_port;
use crate::process::{http_get, wait_for, Proc, TestDir};
use crate::relay::Relay;

/// The services of the example and the role of the binary that serves each.
pub const SERVICES: [(&str, &str); 2] = [("compute", "s"), ("image", "t")];
/// Envoy cluster of the local agent.
pub const AGENT_CLUSTER: &str = "geomesh_agent";
/// The filter's `vm_id`: every listener of one Envoy shares the VM (one per worker), hence the
/// site table and the shared data (token memory).
pub const VM_ID: &str = "geomesh_scope";
/// The header the routes' `cluster_header` reads.
pub const CLUSTER_HEADER: &str = "x-geomesh-cluster";
/// The .wasm, relative to the repository root (Envoy runs from there).
pub const WASM_REL: &str = "target/wasm/geomesh_filter_scope.wasm";
/// The example's directory, relative to the repository root.
pub const EXAMPLE_DIR: &str = "examples/scope";
/// The binary serving s and t.
pub const EXAMPLE_BIN: &str = "geomesh-scope-example";

/// Ports of one site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SitePorts {
    pub admin: u16,
    /// Envoy listener per service (`compute`, `image`).
    pub listeners: BTreeMap<String, u16>,
    pub agent: u16,
    /// Service instance per service.
    pub instances: BTreeMap<String, u16>,
}

/// Where site `from` reaches site `to` (by default `to`'s own ports; a relay's when the link is
/// emulated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkPorts {
    pub agent: u16,
    /// Per service: the port standing for `to`'s Envoy listener.
    pub listeners: BTreeMap<String, u16>,
}

/// Static overrides in one agent's configuration about one peer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerOverride {
    pub rtt_ms: Option<f64>,
    pub up: Option<bool>,
}

/// Everything needed to write the configs of the topology.
#[derive(Clone, Debug)]
pub struct ScopePlan {
    /// Site names, e.g. `DC 1`.
    pub sites: Vec<String>,
    pub ports: Vec<SitePorts>,
    /// (from, to) -> where `from` reaches `to`; absent = `to`'s own ports.
    pub links: BTreeMap<(usize, usize), LinkPorts>,
    /// (agent's site, peer) -> static overrides.
    pub overrides: BTreeMap<(usize, usize), PeerOverride>,
    /// The agents' heartbeat/probe period.
    pub interval_ms: u64,
    /// The filters' fetch period.
    pub tick_ms: u64,
    /// Sites whose `image` listener takes its filter config from ECDS (a file in the test dir,
    /// written by [`ScopeTopology::write_image_filter_ecds`]). Tests only: examples have none.
    pub ecds_image: Vec<usize>,
}

/// `DC 1` -> `dc1` (file names).
pub(crate) fn site_file_stem(site: &str) -> String {
    sanitize(site).replace('_', "")
}

impl ScopePlan {
    fn with_ports(mut port: impl FnMut(usize, u16) -> Result<u16>) -> Result<ScopePlan> {
        let sites: Vec<String> = (1..=3).map(|k| format!("DC {k}")).collect();
        let mut ports = Vec::new();
        for k in 0..sites.len() {
            ports.push(SitePorts {
                admin: port(k, 0)?,
                listeners: [("compute".into(), port(k, 1)?), ("image".into(), port(k, 2)?)].into(),
                agent: port(k, 10)?,
                instances: [("compute".into(), port(k, 11)?), ("image".into(), port(k, 12)?)].into(),
            });
        }
        Ok(ScopePlan {
            sites,
            ports,
            links: BTreeMap::new(),
            overrides: BTreeMap::new(),
            interval_ms: 1000,
            tick_ms: 500,
            ecds_image: Vec::new(),
        })
    }

    /// The example's fixed ports (`DC k`: 18k00 ...), agents every 1 s, filters every 500 ms.
    pub fn fixed() -> ScopePlan {
        Self::with_ports(|k, off| Ok(18_000 + 100 * (k as u16 + 1) + off))
            .unwrap_or_else(|_| unreachable!("fixed ports never fail"))
    }

    /// The same topology on free loopback ports, agents every 300 ms, filters every 150 ms (tests).
    pub fn free() -> Result<ScopePlan> {
        let mut p = Self::with_ports(|_, _| free_port())?;
        p.interval_ms = 300;
        p.tick_ms = 150;
        Ok(p)
    }

    pub fn site_index(&self, site: &str) -> Result<usize> {
        self.sites
            .iter()
            .position(|s| s == site)
            .with_context(|| format!("no site {site:?} in the plan"))
    }

    /// The port of `service`'s Envoy listener at site `i`.
    pub fn listener(&self, i: usize, service: &str) -> Result<u16> {
        self.ports
            .get(i)
            .and_then(|p| p.listeners.get(service))
            .copied()
            .with_context(|| format!("no listener for {service} at site {i}"))
    }

    fn link(&self, from: usize, to: usize) -> LinkPorts {
        self.links.get(&(from, to)).cloned().unwrap_or_else(|| LinkPorts {
            agent: self.ports[to].agent,
            listeners: self.ports[to].listeners.clone(),
        })
    }

    /// The `geomesh_filter_scope` configuration of `service`'s listener at site `i`.
    pub fn filter_config(&self, i: usize, service: &str) -> String {
        self.filter_config_with(i, service, "")
    }

    /// As [`ScopePlan::filter_config`] with extra lines appended to the `http:` section (e.g. an
    /// explicit `clusters:` table).
    pub fn filter_config_with(&self, i: usize, service: &str, extra_http: &str) -> String {
        let services: Vec<&str> = SERVICES.iter().map(|(s, _)| *s).collect();
        let mut t = filter_yaml(
            &self.sites,
            i,
            service,
            &services,
            self.tick_ms,
            (self.tick_ms * 20).max(5000),
        );
        t.push_str(extra_http);
        t
    }

    fn plugin(&self, service: &str, config: String) -> WasmPlugin {
        WasmPlugin::new(format!("scope_{service}"), "geomesh_scope", WASM_REL, config).vm_id(VM_ID)
    }

    /// The HTTP connection manager of `service`'s listener at site `i`: the scope filter, the
    /// router, routes by `cluster_header`, no route timeout (uploads stream for as long as they
    /// take), an access log on stdout, and connection failures answered as 503 naming the
    /// cluster.
    fn listener_value(&self, i: usize, service: &str, ecds_file: Option<&Path>) -> Value {
        let name = format!("{service}_in");
        let site = &self.sites[i];
        let port = self.ports[i].listeners[service];
        let filter = match ecds_file {
            Some(f) => ecds_http_filter(&format!("scope_{service}"), f, WASM_HTTP_TYPE),
            None => wasm_http_filter(&self.plugin(service, self.filter_config(i, service))),
        };
        // Start from the harness's HTTP listener and replace its route and add what we need.
        let mut l = http_listener(&name, port, vec![filter], "unused");
        let hcm = &mut l["filter_chains"][0]["filters"][0]["typed_config"];
        route_by_cluster_header(
            hcm,
            &name,
            service,
            format!(
                "[%START_TIME%] site={} listener={name} \"%REQ(:METHOD)% %REQ(:PATH)%\" %RESPONSE_CODE% %RESPONSE_FLAGS% cluster=%UPSTREAM_CLUSTER% upstream=%UPSTREAM_HOST% in=%BYTES_RECEIVED% out=%BYTES_SENT% ms=%DURATION% routed_to=%RESP(X-GEOMESH-ROUTED-TO)%\n",
                sanitize(site)
            ),
        );
        debug_assert_eq!(hcm["@type"], HCM_TYPE);
        debug_assert_eq!(hcm["http_filters"][1]["typed_config"]["@type"], ROUTER_TYPE);
        l
    }

    /// The Envoy bootstrap of site `i`. `ecds_dir`: where ECDS files live (for the sites in
    /// [`ScopePlan::ecds_image`]).
    pub fn envoy_config(&self, i: usize, ecds_dir: Option<&Path>) -> EnvoyConfig {
        let site = &self.sites[i];
        let p = &self.ports[i];
        let mut cfg = EnvoyConfig {
            admin_port: p.admin,
            node_id: format!("geomesh-scope-{}", site_file_stem(site)),
            node_cluster: "geomesh-scope".into(),
            listeners: Vec::new(),
            clusters: Vec::new(),
            stats_config: None,
            extra: serde_json::Map::new(),
        };
        for (service, _) in SERVICES {
            let ecds = match ecds_dir {
                Some(d) if service == "image" && self.ecds_image.contains(&i) => {
                    Some(d.join(ecds_file_name(site)))
                }
                _ => None,
            };
            cfg.listeners.push(self.listener_value(i, service, ecds.as_deref()));
        }
        for (j, other) in self.sites.iter().enumerate() {
            for (service, _) in SERVICES {
                let name = format!("{}_{}", sanitize(other), sanitize(service));
                let port = if j == i {
                    p.instances[service]
                } else {
                    self.link(i, j).listeners[service]
                };
                cfg.clusters.push(static_cluster(&name, &[port]));
            }
        }
        cfg.clusters.push(static_cluster(AGENT_CLUSTER, &[p.agent]));
        cfg
    }

    /// The `geomesh-agent` configuration of site `i` (YAML).
    pub fn agent_config(&self, i: usize) -> String {
        let p = &self.ports[i];
        let mut t = String::new();
        let _ = writeln!(t, "site: {}", yaml_str(&self.sites[i]));
        let _ = writeln!(t, "listen: 127.0.0.1:{}", p.agent);
        // Loopback, one machine: plain HTTP between the agents, said explicitly (a deployment
        // gives `peer_listen` and `tls:`, agent/README.md).
        let _ = writeln!(t, "plaintext: true");
        let _ = writeln!(t, "interval_ms: {}", self.interval_ms);
        let _ = writeln!(t, "timeout_ms: 1000");
        let _ = writeln!(t, "down_after: 1");
        let _ = writeln!(t, "rtt_smoothing: 0.3");
        let _ = writeln!(t, "peers:");
        for (j, other) in self.sites.iter().enumerate() {
            if j == i {
                continue;
            }
            let _ = write!(
                t,
                "  - {{ name: {}, url: \"http://127.0.0.1:{}\"",
                yaml_str(other),
                self.link(i, j).agent
            );
            if let Some(o) = self.overrides.get(&(i, j)) {
                if let Some(r) = o.rtt_ms {
                    let _ = write!(t, ", rtt_ms: {r}");
                }
                if let Some(u) = o.up {
                    let _ = write!(t, ", up: {u}");
                }
            }
            let _ = writeln!(t, " }}");
        }
        let _ = writeln!(t, "services:");
        for (service, _) in SERVICES {
            let _ = writeln!(
                t,
                "  - {{ name: {service}, address: \"127.0.0.1:{}\", probe: http, path: /healthz }}",
                p.instances[service]
            );
        }
        t
    }

    /// Arguments of the example binary for `service` at site `i`.
    pub fn service_args(&self, i: usize, service: &str) -> Vec<String> {
        let role = SERVICES
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, r)| *r)
            .unwrap_or("t");
        let p = &self.ports[i];
        let mut a = vec![
            "--role".to_string(),
            role.to_string(),
            "--site".to_string(),
            self.sites[i].clone(),
            "--listen".to_string(),
            format!("127.0.0.1:{}", p.instances[service]),
        ];
        if role == "s" {
            a.push("--t-url".into());
            a.push(format!("http://127.0.0.1:{}", p.listeners["image"]));
        }
        a
    }

    /// Every file of the example: (file name, contents), with a comment block on top.
    pub fn example_files(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, site) in self.sites.iter().enumerate() {
            let stem = site_file_stem(site);
            let agent_file = format!("{EXAMPLE_DIR}/agent-{stem}.yaml");
            let envoy_file = format!("{EXAMPLE_DIR}/envoy-{stem}.yaml");
            let mut run = String::new();
            for (service, _) in SERVICES {
                let args: Vec<String> = self
                    .service_args(i, service)
                    .into_iter()
                    .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
                    .collect();
                let _ = writeln!(run, "#   target/release/{EXAMPLE_BIN} {} &", args.join(" "));
            }
            let header = format!(
                "# geomesh scope example, site {site} (generated by geomesh-integration's scope::ScopePlan::fixed;\n\
                 # edit the generator, then `GEOMESH_UPDATE_EXAMPLES=1 cargo test -p geomesh-integration --test scope_examples`).\n\
                 # The whole topology starts with `cargo run --release -p geomesh-integration --bin geomesh-scope-demo`;\n\
                 # by hand, from the repository root (after `make build` and a release build):\n\
                 {run}\
                 #   target/release/geomesh-agent --config {agent_file} &\n\
                 #   .cache/envoy/bin/envoy -c {envoy_file} --base-id {} --disable-hot-restart\n",
                self.ports[i].admin
            );
            let envoy = self.envoy_config(i, None).to_yaml();
            out.push((format!("envoy-{stem}.yaml"), format!("{header}{envoy}")));
            out.push((
                format!("agent-{stem}.yaml"),
                format!("{header}{}", self.agent_config(i)),
            ));
        }
        out
    }
}

/// A YAML scalar for a name (quoted when it would not read back as the same string).
fn yaml_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_alphanumeric() || c == ' ' || c == '-' || c == '_')
        && !s.starts_with(' ')
        && !s.ends_with(' ');
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

/// The scope filter's configuration of `service`'s listener at site `i` of `sites` (shared by
/// the scope-lang and replication topologies): local cluster `<site>_<service>`, clusters named
/// `{site}_{service}`, the site table fetched from [`AGENT_CLUSTER`] every `tick_ms`. Callers
/// append their own lines to the `http:` section.
pub(crate) fn filter_yaml(
    sites: &[String],
    i: usize,
    service: &str,
    services: &[&str],
    tick_ms: u64,
    stale_after_ms: u64,
) -> String {
    let site = &sites[i];
    let quoted: Vec<String> = sites.iter().map(|s| yaml_str(s)).collect();
    let mut t = String::new();
    let _ = writeln!(t, "workload_type: http");
    let _ = writeln!(t, "type_proxy: upstream");
    let _ = writeln!(t, "default_cluster: {}_{}", sanitize(site), sanitize(service));
    // Stats per listener: `http.image.scope.decision.shared` (both listeners share one VM).
    let _ = writeln!(t, "stat_prefix: {}", sanitize(service));
    let _ = writeln!(t, "http:");
    let _ = writeln!(t, "  service: {service}");
    let _ = writeln!(t, "  site: {}", yaml_str(site));
    let _ = writeln!(t, "  sites: [{}]", quoted.join(", "));
    let _ = writeln!(t, "  services: [{}]", services.join(", "));
    let _ = writeln!(t, "  cluster_pattern: \"{{site}}_{{service}}\"");
    let _ = writeln!(t, "  agent:");
    let _ = writeln!(t, "    cluster: {AGENT_CLUSTER}");
    let _ = writeln!(t, "    tick_ms: {tick_ms}");
    let _ = writeln!(t, "    timeout_ms: 1000");
    let _ = writeln!(t, "    stale_after_ms: {stale_after_ms}");
    t
}

/// Completes the HTTP connection manager `hcm` of a listener in front of the scope filter: one
/// route for `service` sending everything to the cluster the filter names in
/// [`CLUSTER_HEADER`] with no route timeout (uploads stream for as long as they take), an access
/// log on stdout in `log_format`, and connection failures answered as 503 naming the cluster.
pub(crate) fn route_by_cluster_header(hcm: &mut Value, name: &str, service: &str, log_format: String) {
    hcm["route_config"] = json!({
        "name": name,
        "virtual_hosts": [ {
            "name": service,
            "domains": ["*"],
            "routes": [ {
                "match": { "prefix": "/" },
                "route": { "cluster_header": CLUSTER_HEADER, "timeout": "0s" },
            } ],
        } ],
    });
    hcm["access_log"] = json!([ {
        "name": "envoy.access_loggers.stdout",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": { "text_format_source": { "inline_string": log_format } },
        },
    } ]);
    hcm["local_reply_config"] = json!({
        "mappers": [ {
            "filter": { "response_flag_filter": { "flags": ["UF", "UH", "NC", "URX", "UO", "UC", "UT"] } },
            "body_format_override": { "text_format_source": { "inline_string":
                "geomesh: cluster '%REQ(X-GEOMESH-CLUSTER)%' did not answer (%RESPONSE_FLAGS%): %LOCAL_REPLY_BODY%\n"
            } },
        } ],
    });
}

/// Fails, naming the command that builds it, when the scope filter's `.wasm` is missing.
pub(crate) fn require_wasm() -> Result<()> {
    let wasm = repo_root().join(WASM_REL);
    if !wasm.is_file() {
        bail!("{} not found: run `scripts/build-wasm.sh` (or `make build`)", wasm.display());
    }
    Ok(())
}

/// Polls `fetch` (the site table of the agent at `site`) until `pred` holds, then sleeps two
/// filter ticks (the filters fetch the table every tick); on timeout the error shows the last
/// table seen.
pub(crate) fn wait_for_sites(
    site: &str,
    tick_ms: u64,
    timeout: Duration,
    what: &str,
    mut fetch: impl FnMut() -> Result<SitesDocument>,
    pred: impl Fn(&SitesDocument) -> bool,
) -> Result<SitesDocument> {
    let mut last = None;
    let r = wait_for(timeout, &format!("agent of {site}: {what}"), || {
        let d = fetch()?;
        let ok = pred(&d);
        last = Some(d);
        Ok(ok)
    });
    if let Err(e) = r {
        bail!("{e:#}\nlast table: {last:#?}");
    }
    std::thread::sleep(Duration::from_millis(tick_ms * 2 + 50));
    last.context("no table")
}

/// A blocking HTTP client for loopback (no proxy) with a `timeout` per request.
pub fn http_client_with_timeout(timeout: Duration) -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .context("HTTP client")
}

/// [`http_client_with_timeout`] of 10 s.
pub fn http_client() -> Result<reqwest::blocking::Client> {
    http_client_with_timeout(Duration::from_secs(10))
}

fn ecds_file_name(site: &str) -> String {
    format!("ecds-scope-image-{}.yaml", site_file_stem(site))
}

/// One running site.
pub struct RunningSite {
    pub name: String,
    pub envoy: Envoy,
    pub agent: Proc,
    /// Service name -> its instance.
    pub instances: BTreeMap<String, Proc>,
}

/// Every inter-site link through its own relays: (from, to) -> agent relay and one relay per
/// service listener. Both directions of a link carry from's requests and to's answers.
pub struct WanLinks {
    pub relays: BTreeMap<(usize, usize), Vec<Relay>>,
}

impl WanLinks {
    /// Starts the relays and points `plan`'s links at them.
    pub fn install(plan: &mut ScopePlan) -> Result<WanLinks> {
        let mut relays = BTreeMap::new();
        let n = plan.sites.len();
        for from in 0..n {
            for to in 0..n {
                if from == to {
                    continue;
                }
                let agent = Relay::start(plan.ports[to].agent)?;
                let mut link = LinkPorts {
                    agent: agent.port(),
                    listeners: BTreeMap::new(),
                };
                let mut rs = vec![agent];
                for (service, port) in plan.ports[to].listeners.clone() {
                    let r = Relay::start(port)?;
                    link.listeners.insert(service, r.port());
                    rs.push(r);
                }
                plan.links.insert((from, to), link);
                relays.insert((from, to), rs);
            }
        }
        Ok(WanLinks { relays })
    }

    /// One-way delay `d` on both links between `a` and `b`, both directions (RTT + 2d).
    pub fn set_delay(&self, a: usize, b: usize, d: Duration) {
        for key in [(a, b), (b, a)] {
            for r in self.relays.get(&key).into_iter().flatten() {
                r.set_delay(d);
            }
        }
    }
}

/// A running topology; everything stops when it drops.
pub struct ScopeTopology {
    pub dir: TestDir,
    pub plan: ScopePlan,
    pub sites: Vec<RunningSite>,
    pub envoy_options: EnvoyOptions,
}

impl ScopeTopology {
    /// Starts every site of `plan`: instances, agents, Envoys; then waits until every agent sees
    /// every site up with its services, and the filters had time to fetch that table.
    pub fn start(dir: &TestDir, plan: ScopePlan, envoy_options: EnvoyOptions) -> Result<ScopeTopology> {
        require_wasm()?;
        let mut sites = Vec::new();
        let mut pending = Vec::new();
        for (i, name) in plan.sites.iter().enumerate() {
            let mut instances = BTreeMap::new();
            for (service, _) in SERVICES {
                instances.insert(service.to_string(), spawn_instance(dir, &plan, i, service)?);
            }
            let stem = site_file_stem(name);
            let cfg = dir.write(format!("agent-{stem}.yaml"), plan.agent_config(i))?;
            let mut cmd = Command::new(native_bin("geomesh-agent")?);
            cmd.arg("--config").arg(&cfg);
            let agent = Proc::spawn(dir, &format!("agent-{stem}"), cmd)?;
            pending.push((name.clone(), agent, instances));
        }
        for (i, (name, mut agent, mut instances)) in pending.into_iter().enumerate() {
            for (service, p) in instances.iter_mut() {
                p.wait_tcp(plan.ports[i].instances[service], Duration::from_secs(20))?;
            }
            agent.wait_tcp(plan.ports[i].agent, Duration::from_secs(20))?;
            if plan.ecds_image.contains(&i) {
                write_image_filter_ecds(dir.path(), &plan, i, &plan.filter_config(i, "image"))?;
            }
            let cfg = plan.envoy_config(i, Some(dir.path()));
            let envoy = Envoy::start_with(
                dir,
                &format!("envoy-{}", site_file_stem(&name)),
                &cfg,
                &envoy_options,
            )?;
            sites.push(RunningSite {
                name,
                envoy,
                agent,
                instances,
            });
        }
        let topo = ScopeTopology {
            dir: dir.clone(),
            plan,
            sites,
            envoy_options,
        };
        topo.wait_converged(Duration::from_secs(30))?;
        Ok(topo)
    }

    /// Waits until every agent sees every site up (unless overridden down) with every service
    /// up, then two filter ticks.
    pub fn wait_converged(&self, timeout: Duration) -> Result<()> {
        for i in 0..self.sites.len() {
            self.wait_sites(i, timeout, "every site and service up", |d| {
                d.sites.iter().all(|s| {
                    let forced_down = self
                        .plan
                        .site_index(&s.name)
                        .ok()
                        .and_then(|j| self.plan.overrides.get(&(i, j)))
                        .and_then(|o| o.up)
                        == Some(false);
                    forced_down
                        || (s.up == Some(true)
                            && SERVICES.iter().all(|(svc, _)| s.services.get(*svc) == Some(&true)))
                })
            })?;
        }
        std::thread::sleep(Duration::from_millis(self.plan.tick_ms * 3));
        Ok(())
    }

    /// `http://127.0.0.1:<port>` of `service`'s Envoy listener at site `i`.
    pub fn url(&self, i: usize, service: &str) -> String {
        format!("http://127.0.0.1:{}", self.plan.ports[i].listeners[service])
    }

    /// `http://127.0.0.1:<port>` of `service`'s instance at site `i` (bypassing Envoy).
    pub fn instance_url(&self, i: usize, service: &str) -> String {
        format!("http://127.0.0.1:{}", self.plan.ports[i].instances[service])
    }

    /// The agent's `/v1/sites` at site `i`.
    pub fn sites_doc(&self, i: usize) -> Result<SitesDocument> {
        let (status, body) = http_get(self.plan.ports[i].agent, "/v1/sites")?;
        if status != 200 {
            bail!("agent {i} /v1/sites: {status} {body}");
        }
        serde_json::from_str(&body).context("parse /v1/sites")
    }

    /// Waits until site `i`'s agent reports a table satisfying `pred`, then two filter ticks
    /// (the filters fetch the table every tick).
    pub fn wait_sites(
        &self,
        i: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&SitesDocument) -> bool,
    ) -> Result<SitesDocument> {
        wait_for_sites(&self.plan.sites[i], self.plan.tick_ms, timeout, what, || self.sites_doc(i), pred)
    }

    /// Stops `service`'s instance at site `i`.
    pub fn stop_instance(&mut self, i: usize, service: &str) -> Result<()> {
        let site = self.sites.get_mut(i).context("no such site")?;
        let p = site
            .instances
            .get_mut(service)
            .with_context(|| format!("no instance of {service}"))?;
        p.stop()?;
        Ok(())
    }

    /// Starts `service`'s instance at site `i` again (same port).
    pub fn restart_instance(&mut self, i: usize, service: &str) -> Result<()> {
        let mut p = spawn_instance(&self.dir, &self.plan, i, service)?;
        p.wait_tcp(self.plan.ports[i].instances[service], Duration::from_secs(20))?;
        let site = self.sites.get_mut(i).context("no such site")?;
        site.instances.insert(service.to_string(), p);
        Ok(())
    }

    /// `GET /stats` of `service`'s instance at site `i` (directly, not through Envoy).
    pub fn instance_stats(&self, i: usize, service: &str) -> Result<Value> {
        let c = http_client()?;
        let v = c
            .get(format!("{}/stats", self.instance_url(i, service)))
            .send()?
            .error_for_status()?
            .json()?;
        Ok(v)
    }

    /// Rewrites site `i`'s ECDS file for the `image` filter (the site must be in
    /// [`ScopePlan::ecds_image`]); Envoy picks it up for new requests.
    pub fn write_image_filter_ecds(&self, i: usize, filter_config: &str) -> Result<()> {
        write_image_filter_ecds(self.dir.path(), &self.plan, i, filter_config)
    }
}

fn write_image_filter_ecds(dir: &Path, plan: &ScopePlan, i: usize, filter_config: &str) -> Result<()> {
    let file: PathBuf = dir.join(ecds_file_name(&plan.sites[i]));
    let plugin = plan.plugin("image", filter_config.to_owned());
    write_ecds(&file, "scope_image", &wasm_http_typed_config(&plugin))
}

fn spawn_instance(dir: &TestDir, plan: &ScopePlan, i: usize, service: &str) -> Result<Proc> {
    let mut cmd = Command::new(native_bin(EXAMPLE_BIN)?);
    cmd.args(plan.service_args(i, service));
    Proc::spawn(
        dir,
        &format!("{service}-{}", site_file_stem(&plan.sites[i])),
        cmd,
    )
}

/// The paper's commands against a running topology, printed to `out`: Cmd. 2 and Cmd. 3 through
/// s -> t, otherwise with DC 2's image stopped and restarted, around, propagation by token and
/// baggage, and the error answers. Errors if a command does not give the expected site.
pub fn run_demo_commands(topo: &mut ScopeTopology, out: &mut dyn std::io::Write) -> Result<()> {
    let c = http_client()?;
    let compute = |topo: &ScopeTopology, site: usize, header: (&str, &str)| -> Result<Value> {
        let r = c
            .get(format!("{}/compute/cat", topo.url(site, "compute")))
            .header(header.0, header.1)
            .send()?;
        let status = r.status();
        let v: Value = r.json().context("compute answer")?;
        if !status.is_success() {
            bail!("compute answered {status}: {v}");
        }
        Ok(v)
    };
    let image = |topo: &ScopeTopology, site: usize, scope: &str| -> Result<(u16, String)> {
        let r = c
            .get(format!("{}/image/cat?size=8", topo.url(site, "image")))
            .header("x-scope", scope)
            .send()?;
        let status = r.status().as_u16();
        let text = r.text()?;
        Ok((status, text.lines().next().unwrap_or("").to_owned()))
    };
    let expect = |what: &str, got: &Value, site: &str| -> Result<()> {
        if got.as_str() != Some(site) {
            bail!("{what}: expected {site}, got {got}");
        }
        Ok(())
    };
    writeln!(out, "\n== Cmd. 2: {{ compute: DC 1, image: DC 1 }} at DC 1 ==")?;
    let v = compute(topo, 0, ("x-scope", "{ compute: DC 1, image: DC 1 }"))?;
    writeln!(out, "compute served by {}, image served by {}", v["site"], v["image"]["site"])?;
    expect("Cmd. 2 image", &v["image"]["site"], "DC 1")?;

    writeln!(out, "\n== Cmd. 3: {{ compute: DC 1, image: DC 2 }} at DC 1 ==")?;
    let v = compute(topo, 0, ("x-scope", "{ compute: DC 1, image: DC 2 }"))?;
    writeln!(out, "compute served by {}, image served by {} ({})", v["site"], v["image"]["site"], v["image"]["first_line"])?;
    expect("Cmd. 3 image", &v["image"]["site"], "DC 2")?;

    writeln!(out, "\n== the same scope in openstackoid's X-Auth-Token piggyback ==")?;
    let v = compute(topo, 0, ("x-auth-token", "gAAAA-demo-token!SCOPE!{\"compute\": \"DC 1\", \"image\": \"DC 3\"}"))?;
    writeln!(
        out,
        "s saw token {}, t (at {}) saw token {}",
        v["seen"]["x-auth-token"], v["image"]["site"], v["image"]["seen_by_t"]["x-auth-token"]
    )?;
    expect("piggyback image", &v["image"]["site"], "DC 3")?;

    writeln!(out, "\n== and in W3C baggage ==")?;
    let v = compute(topo, 0, ("baggage", "scope=%7B%20image%3A%20DC%202%20%7D,user=demo"))?;
    writeln!(out, "image served by {}", v["image"]["site"])?;
    expect("baggage image", &v["image"]["site"], "DC 2")?;

    writeln!(out, "\n== otherwise: {{ image: DC 2 ; DC 3 }}, DC 2's image stopped, then restarted ==")?;
    topo.stop_instance(1, "image")?;
    topo.wait_sites(0, Duration::from_secs(15), "DC 2's image down", |d| {
        d.sites.iter().any(|s| s.name == "DC 2" && s.services.get("image") == Some(&false))
    })?;
    let (st, line) = image(topo, 0, "{ image: DC 2 ; DC 3 }")?;
    writeln!(out, "DC 2 image down: {st} {line}")?;
    if !line.ends_with("@ DC 3") {
        bail!("otherwise with DC 2 down: {st} {line}");
    }
    topo.restart_instance(1, "image")?;
    topo.wait_sites(0, Duration::from_secs(15), "DC 2's image up", |d| {
        d.sites.iter().any(|s| s.name == "DC 2" && s.services.get("image") == Some(&true))
    })?;
    let (st, line) = image(topo, 0, "{ image: DC 2 ; DC 3 }")?;
    writeln!(out, "DC 2 image back: {st} {line}")?;
    if !line.ends_with("@ DC 2") {
        bail!("otherwise with DC 2 back: {st} {line}");
    }

    writeln!(out, "\n== around(DC 1, 100ms) with DC 1's image stopped: the nearest other site ==")?;
    topo.stop_instance(0, "image")?;
    let d = topo.wait_sites(0, Duration::from_secs(15), "DC 1's image down", |d| {
        d.sites.iter().any(|s| s.name == "DC 1" && s.services.get("image") == Some(&false))
    })?;
    for s in &d.sites {
        writeln!(out, "  RTT DC 1 -> {}: {:?} ms", s.name, s.rtt_ms)?;
    }
    let (st, line) = image(topo, 0, "{ image: around(DC 1, 100ms) }")?;
    writeln!(out, "{st} {line}")?;
    topo.restart_instance(0, "image")?;

    writeln!(out, "\n== errors ==")?;
    for scope in ["{ image: DC 2 ", "{ image: DC 9 }", "{ video: DC 2 }"] {
        let (st, line) = image(topo, 0, scope)?;
        writeln!(out, "x-scope: {scope:<18} -> {st} {line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_plan_ports_and_names() {
        let p = ScopePlan::fixed();
        assert_eq!(p.ports[1].admin, 18200);
        assert_eq!(p.ports[2].listeners["image"], 18302);
        assert_eq!(p.ports[0].instances["compute"], 18111);
        let cfg = p.envoy_config(0, None).to_value();
        let clusters: Vec<&str> = cfg["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            clusters,
            ["dc_1_compute", "dc_1_image", "dc_2_compute", "dc_2_image", "dc_3_compute", "dc_3_image", AGENT_CLUSTER]
        );
        let a = geomesh_scope::HttpSettings::parse(p.filter_config(0, "image").as_bytes()).unwrap();
        assert_eq!(a.1.local_cluster, "dc_1_image");
        assert_eq!(a.1.registry.cluster("image", "DC 2").unwrap(), "dc_2_image");
        assert!(p.agent_config(1).contains("name: DC 1, url: \"http://127.0.0.1:18110\""));
        assert_eq!(yaml_str("DC 1"), "DC 1");
        assert_eq!(yaml_str("a: b"), "\"a: b\"");
    }
}
