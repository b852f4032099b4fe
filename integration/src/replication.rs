//! The replication topology (issue 5, docs/replication.md): three sites on loopback, each with
//! its Envoy (one listener for the service `image`, `geomesh_filter_scope.wasm` in front of it
//! with `http.replication`), its `geomesh-agent` with a `replication:` section (proxy listener,
//! store and spool in the test dir), and one instance of a real application serving `image`:
//! json-server 0.17 (ids it generates itself, JSON bodies up to 10 MB) or, for large bodies,
//! `geomesh-blob-store` (this crate's streaming blob server).
//!
//! ```text
//! client ─▶ Envoy DC k :listener ─ scope filter ─┬─▶ geomesh_agent_proxy ─▶ agent k proxy ─▶ instance k
//!                                                └─▶ dc_j_image (a scope naming DC j) ─▶ Envoy DC j
//! agent k ◀─heartbeats, peer/apply, peer/submit, peer/read─▶ agent j   (through a Relay each way)
//! ```
//!
//! Every agent-to-agent link goes through its own [`Relay`], so a test can cut the agents of two
//! sites apart (a partition) while everything else keeps working. Agents, instances and Envoys
//! can be stopped, SIGKILLed and restarted on the same ports, data and stores.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use geomesh_scope::health::SitesDocument;
use geomesh_scope::sanitize;
use serde_json::{json, Value};

use crate::envoy::{http_listener, static_cluster, wasm_http_filter, Envoy, EnvoyConfig, EnvoyOptions, WasmPlugin};
use crate::paths::{json_server_bin, native_bin};
use crate::ports::free_port;
use crate::process::{Proc, TestDir};
use crate::relay::Relay;
use crate::scope::{
    filter_yaml, http_client_with_timeout, require_wasm, route_by_cluster_header, site_file_stem,
    wait_for_sites,
};

/// The service every site serves.
pub const SERVICE: &str = "image";
/// Envoy cluster of the local agent's proxy listener (replicated requests).
pub const PROXY_CLUSTER: &str = "geomesh_agent_proxy";
/// The agent's API cluster (site table), the header the route's `cluster_header` reads and the
/// scope filter's `.wasm`: the same as in the scope-lang topology.
pub use crate::scope::{AGENT_CLUSTER, CLUSTER_HEADER, WASM_REL};
/// The blob server binary.
pub const BLOB_BIN: &str = "geomesh-blob-store";
/// The example's directory, relative to the repository root.
pub const EXAMPLE_DIR: &str = "examples/replication";
/// Where the example keeps its state when started by hand (relative to the repository root):
/// json-server's `db-dcK.json`, the agents' stores and spools.
pub const EXAMPLE_STATE: &str = "target/replication-example";

/// The application behind `image` on every site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    /// json-server 0.17 on a `db.json` per site (seeded by [`ReplicationPlan::seeds`]).
    JsonServer,
    /// `geomesh-blob-store`, one directory per site.
    BlobStore,
}

/// Ports of one site.
#[derive(Clone, Debug)]
pub struct SitePorts {
    pub admin: u16,
    pub listener: u16,
    pub agent: u16,
    pub proxy: u16,
    pub instance: u16,
}

/// Everything needed to write the configurations.
#[derive(Clone, Debug)]
pub struct ReplicationPlan {
    pub sites: Vec<String>,
    pub ports: Vec<SitePorts>,
    pub app: App,
    /// json-server's initial `db.json` per site.
    pub seeds: Vec<Value>,
    /// (from, to) -> the port `from`'s agent uses to reach `to`'s agent (a relay's).
    pub agent_links: BTreeMap<(usize, usize), u16>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub tick_ms: u64,
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    pub client_wait_ms: u64,
    pub instance_timeout_ms: u64,
    /// Site -> extra lines of its agent's `replication:` section at the first start (e.g.
    /// `  test_hooks: {...}`).
    pub agent_extra: BTreeMap<usize, String>,
}

impl ReplicationPlan {
    fn with_ports(app: App, mut port: impl FnMut(usize, u16) -> Result<u16>) -> Result<ReplicationPlan> {
        let sites: Vec<String> = (1..=3).map(|k| format!("DC {k}")).collect();
        let mut ports = Vec::new();
        for k in 0..sites.len() {
            ports.push(SitePorts {
                admin: port(k, 0)?,
                listener: port(k, 2)?,
                agent: port(k, 10)?,
                proxy: port(k, 11)?,
                instance: port(k, 12)?,
            });
        }
        let seeds = sites.iter().map(|_| json!({ "images": [] })).collect();
        Ok(ReplicationPlan {
            sites,
            ports,
            app,
            seeds,
            agent_links: BTreeMap::new(),
            interval_ms: 200,
            timeout_ms: 500,
            tick_ms: 100,
            retry_min_ms: 50,
            retry_max_ms: 500,
            client_wait_ms: 20_000,
            instance_timeout_ms: 20_000,
            agent_extra: BTreeMap::new(),
        })
    }

    /// Three sites `DC 1..3` on free ports (from [`free_port`], the harness's one allocator);
    /// agents beat every 200 ms (500 ms timeout), filters tick every 100 ms, failed deliveries
    /// are retried from 50 ms up to every 500 ms.
    pub fn free(app: App) -> Result<ReplicationPlan> {
        Self::with_ports(app, |_, _| free_port())
    }

    /// The plan of `examples/replication/`: json-server, fixed ports (`DC k`: Envoy admin 19k00,
    /// listener 19k02, agent API 19k10, agent proxy listener 19k11, json-server 19k12, none of
    /// them used by `examples/scope`'s 18xxx), agents every second, filters every 500 ms,
    /// retries from 100 ms to 5 s, clients wait 30 s.
    pub fn fixed() -> ReplicationPlan {
        let mut p = Self::with_ports(App::JsonServer, |k, off| Ok(19_000 + 100 * (k as u16 + 1) + off))
            .unwrap_or_else(|_| unreachable!("fixed ports never fail"));
        p.interval_ms = 1000;
        p.timeout_ms = 1000;
        p.tick_ms = 500;
        p.retry_min_ms = 100;
        p.retry_max_ms = 5000;
        p.client_wait_ms = 30_000;
        p.instance_timeout_ms = 60_000;
        p
    }

    /// `DC 1` -> `dc1` (file names).
    pub fn file_stem(&self, i: usize) -> String {
        self.stem(i)
    }

    fn stem(&self, i: usize) -> String {
        site_file_stem(&self.sites[i])
    }

    /// The scope filter's configuration at site `i`.
    pub fn filter_config(&self, i: usize) -> String {
        let mut t = filter_yaml(&self.sites, i, SERVICE, &[SERVICE], self.tick_ms, 5000);
        let _ = write!(t, "  replication:\n    cluster: {PROXY_CLUSTER}\n");
        t
    }

    /// Envoy's bootstrap at site `i`.
    pub fn envoy_config(&self, i: usize) -> EnvoyConfig {
        let p = &self.ports[i];
        let plugin = WasmPlugin::new("scope_image", "geomesh_scope", WASM_REL, self.filter_config(i))
            .vm_id("geomesh_scope");
        let name = "image_in";
        let mut l = http_listener(name, p.listener, vec![wasm_http_filter(&plugin)], "unused");
        let hcm = &mut l["filter_chains"][0]["filters"][0]["typed_config"];
        route_by_cluster_header(
            hcm,
            name,
            SERVICE,
            format!(
                "[%START_TIME%] site={} \"%REQ(:METHOD)% %REQ(:PATH)%\" %RESPONSE_CODE% %RESPONSE_FLAGS% cluster=%UPSTREAM_CLUSTER% in=%BYTES_RECEIVED% out=%BYTES_SENT% ms=%DURATION%\n",
                self.stem(i)
            ),
        );
        let mut cfg = EnvoyConfig {
            admin_port: p.admin,
            node_id: format!("geomesh-replication-{}", self.stem(i)),
            node_cluster: "geomesh-replication".into(),
            listeners: vec![l],
            clusters: Vec::new(),
            stats_config: None,
            extra: serde_json::Map::new(),
        };
        for (j, other) in self.sites.iter().enumerate() {
            let port = if j == i { p.instance } else { self.ports[j].listener };
            cfg.clusters
                .push(static_cluster(&format!("{}_{SERVICE}", sanitize(other)), &[port]));
        }
        cfg.clusters.push(static_cluster(AGENT_CLUSTER, &[p.agent]));
        cfg.clusters.push(static_cluster(PROXY_CLUSTER, &[p.proxy]));
        cfg
    }

    /// The agent's configuration at site `i`, with `extra` lines appended to its
    /// `replication:` section (e.g. `test_hooks`).
    pub fn agent_config(&self, i: usize, data_dir: &std::path::Path, extra: &str) -> String {
        let p = &self.ports[i];
        let mut t = String::new();
        let _ = writeln!(t, "site: {}", self.sites[i]);
        let _ = writeln!(t, "listen: 127.0.0.1:{}", p.agent);
        // Loopback, one machine: plain HTTP between the agents, said explicitly (a deployment
        // gives `peer_listen` and `tls:`, agent/README.md).
        let _ = writeln!(t, "plaintext: true");
        let _ = writeln!(t, "interval_ms: {}", self.interval_ms);
        let _ = writeln!(t, "timeout_ms: {}", self.timeout_ms);
        let _ = writeln!(t, "down_after: 1");
        let _ = writeln!(t, "peers:");
        for (j, other) in self.sites.iter().enumerate() {
            if j != i {
                let port = self.agent_links.get(&(i, j)).copied().unwrap_or(self.ports[j].agent);
                let _ = writeln!(t, "  - {{ name: {other}, url: \"http://127.0.0.1:{port}\" }}");
            }
        }
        let probe = match self.app {
            App::JsonServer => "probe: tcp".to_owned(),
            App::BlobStore => "probe: http, path: /healthz".to_owned(),
        };
        let _ = writeln!(t, "services:");
        let _ = writeln!(t, "  - {{ name: {SERVICE}, address: \"127.0.0.1:{}\", {probe} }}", p.instance);
        let _ = writeln!(t, "replication:");
        let _ = writeln!(t, "  listen: 127.0.0.1:{}", p.proxy);
        let _ = writeln!(t, "  data_dir: {}", data_dir.display());
        let _ = writeln!(t, "  client_wait_ms: {}", self.client_wait_ms);
        let _ = writeln!(t, "  retry_min_ms: {}", self.retry_min_ms);
        let _ = writeln!(t, "  retry_max_ms: {}", self.retry_max_ms);
        let _ = writeln!(t, "  instance_timeout_ms: {}", self.instance_timeout_ms);
        t.push_str(extra);
        t
    }
}

impl ReplicationPlan {
    /// The commands that start site `i` of the fixed plan by hand, from the repository root.
    pub fn example_commands(&self, i: usize) -> Vec<String> {
        let stem = self.stem(i);
        let p = &self.ports[i];
        vec![
            format!("mkdir -p {EXAMPLE_STATE} && echo '{{\"images\": []}}' > {EXAMPLE_STATE}/db-{stem}.json"),
            format!(
                ".cache/node/node_modules/.bin/json-server --host 127.0.0.1 --port {} --quiet {EXAMPLE_STATE}/db-{stem}.json &",
                p.instance
            ),
            format!("target/release/geomesh-agent --config {EXAMPLE_DIR}/agent-{stem}.yaml &"),
            format!(
                ".cache/envoy/bin/envoy -c {EXAMPLE_DIR}/envoy-{stem}.yaml --base-id {} --disable-hot-restart &",
                p.admin
            ),
        ]
    }

    /// Every file of `examples/replication/` but its README: (file name, contents), each with a
    /// comment block on top saying how to start its site.
    pub fn example_files(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, site) in self.sites.iter().enumerate() {
            let stem = self.stem(i);
            let mut header = format!(
                "# geomesh replication example, site {site} (generated by geomesh-integration's\n\
                 # replication::ReplicationPlan::fixed; edit the generator, then\n\
                 # `GEOMESH_UPDATE_EXAMPLES=1 cargo test -p geomesh-integration --test replication_examples`).\n\
                 # By hand, from the repository root, after `make build` and\n\
                 # `cargo build --release -p geomesh-agent` ({EXAMPLE_DIR}/README.md has curl examples):\n"
            );
            for c in self.example_commands(i) {
                let _ = writeln!(header, "#   {c}");
            }
            let envoy = self.envoy_config(i).to_yaml();
            out.push((format!("envoy-{stem}.yaml"), format!("{header}{envoy}")));
            let data_dir = PathBuf::from(format!("{EXAMPLE_STATE}/agent-{stem}"));
            out.push((format!("agent-{stem}.yaml"), format!("{header}{}", self.agent_config(i, &data_dir, ""))));
        }
        out
    }
}

/// One running site.
pub struct Site {
    pub name: String,
    pub envoy: Option<Envoy>,
    pub agent: Option<Proc>,
    pub app: Option<Proc>,
    /// The agent's `replication.data_dir`.
    pub data_dir: PathBuf,
    /// json-server's db.json, or the blob store's directory.
    pub app_data: PathBuf,
    /// Agent (re)starts so far (names the log files).
    pub agent_starts: u32,
    app_starts: u32,
    envoy_starts: u32,
}

/// A running topology; everything stops when it drops.
pub struct ReplicationTopology {
    pub dir: TestDir,
    pub plan: ReplicationPlan,
    pub sites: Vec<Site>,
    /// (from, to) -> the relay carrying `from`'s agent's calls to `to`'s agent.
    pub agent_relays: BTreeMap<(usize, usize), Relay>,
    http: reqwest::blocking::Client,
}

/// Fails (with "address already in use") when something already listens on or holds
/// 127.0.0.1:`port`: ports are handed out long before the servers bind them, and a server that
/// cannot bind may go unnoticed when another process answers on its port.
fn ensure_free(port: u16, what: &str) -> Result<()> {
    match std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)) {
        Ok(_) => Ok(()),
        Err(e) => bail!("port {port} for {what}: address already in use ({e})"),
    }
}

/// SIGKILLs the process in `slot` (`what`: for the error when there is none) and waits for it to
/// be gone.
fn kill(slot: &mut Option<Proc>, what: &str) -> Result<()> {
    let mut p = slot.take().with_context(|| format!("{what} not running"))?;
    p.signal(libc::SIGKILL)?;
    p.wait_exit(Duration::from_secs(10))?;
    Ok(())
}

/// Stops the process in `slot`, if any (SIGTERM, then SIGKILL after its grace).
fn stop(slot: &mut Option<Proc>) -> Result<()> {
    if let Some(mut p) = slot.take() {
        p.stop()?;
    }
    Ok(())
}

/// Sends `req`: (status, body as JSON, or as a JSON string when it is not JSON).
fn status_and_json(req: reqwest::blocking::RequestBuilder) -> Result<(u16, Value)> {
    let r = req.send()?;
    let status = r.status().as_u16();
    let text = r.text()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// The resident set (`VmRSS`) or its peak (`VmHWM`) of a process, in bytes.
pub fn proc_memory(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(kb * 1024)
}

impl ReplicationTopology {
    /// Starts every site of `plan` (relays between all agents first), then waits until every
    /// agent sees every site and service up and the filters had time to fetch that table.
    ///
    /// Every port (the plan's and the relays') comes from the harness's one allocator
    /// ([`crate::ports`]): no two pieces get the same port, and no other process (nor an
    /// outgoing connection) takes one before its server binds it.
    pub fn start(dir: &TestDir, mut plan: ReplicationPlan) -> Result<ReplicationTopology> {
        require_wasm()?;
        let n = plan.sites.len();
        let mut agent_relays = BTreeMap::new();
        for from in 0..n {
            for to in 0..n {
                if from != to {
                    let r = Relay::start(plan.ports[to].agent)?;
                    plan.agent_links.insert((from, to), r.port());
                    agent_relays.insert((from, to), r);
                }
            }
        }
        let mut sites = Vec::new();
        for (i, name) in plan.sites.iter().enumerate() {
            let stem = plan.stem(i);
            let app_data = match plan.app {
                App::JsonServer => dir.write(
                    format!("db-{stem}.json"),
                    serde_json::to_vec_pretty(&plan.seeds[i])?,
                )?,
                App::BlobStore => dir.join(format!("blobs-{stem}")),
            };
            sites.push(Site {
                name: name.clone(),
                envoy: None,
                agent: None,
                app: None,
                data_dir: dir.join(format!("agent-data-{stem}")),
                app_data,
                agent_starts: 0,
                app_starts: 0,
                envoy_starts: 0,
            });
        }
        let http = http_client_with_timeout(Duration::from_secs(60))?;
        let mut topo = ReplicationTopology {
            dir: dir.clone(),
            plan,
            sites,
            agent_relays,
            http,
        };
        for i in 0..n {
            topo.start_app(i)?;
            let extra = topo.plan.agent_extra.get(&i).cloned().unwrap_or_default();
            topo.start_agent(i, &extra)?;
        }
        for i in 0..n {
            topo.start_envoy(i)?;
        }
        topo.wait_converged(Duration::from_secs(30))?;
        Ok(topo)
    }

    /// Starts site `i`'s application (same port, same data) and waits for it.
    pub fn start_app(&mut self, i: usize) -> Result<()> {
        let p = self.plan.ports[i].clone();
        ensure_free(p.instance, "the application")?;
        let site = &mut self.sites[i];
        site.app_starts += 1;
        let stem = self.plan.stem(i);
        let name = format!("app-{stem}-{}", site.app_starts);
        let cmd = match self.plan.app {
            App::JsonServer => {
                let mut c = Command::new(json_server_bin()?);
                c.args(["--host", "127.0.0.1", "--port", &p.instance.to_string(), "--quiet"])
                    .arg(&site.app_data)
                    .current_dir(self.dir.path());
                c
            }
            App::BlobStore => {
                let mut c = Command::new(native_bin(BLOB_BIN)?);
                c.args(["--listen", &format!("127.0.0.1:{}", p.instance), "--site", &site.name, "--dir"])
                    .arg(&site.app_data);
                c
            }
        };
        let mut proc = Proc::spawn(&self.dir, &name, cmd)?;
        proc.wait_tcp(p.instance, Duration::from_secs(20))?;
        site.app = Some(proc);
        Ok(())
    }

    /// SIGKILLs site `i`'s application and waits for it to be gone.
    pub fn kill_app(&mut self, i: usize) -> Result<()> {
        kill(&mut self.sites[i].app, "application")
    }

    /// Stops site `i`'s application.
    pub fn stop_app(&mut self, i: usize) -> Result<()> {
        stop(&mut self.sites[i].app)
    }

    /// Starts site `i`'s agent (same ports, same store) with `extra` lines in its
    /// `replication:` section, and waits for its API and proxy listeners.
    pub fn start_agent(&mut self, i: usize, extra: &str) -> Result<()> {
        let p = self.plan.ports[i].clone();
        ensure_free(p.agent, "the agent's API")?;
        ensure_free(p.proxy, "the agent's proxy listener")?;
        let stem = self.plan.stem(i);
        let site = &mut self.sites[i];
        site.agent_starts += 1;
        let cfg = self.dir.write(
            format!("agent-{stem}-{}.yaml", site.agent_starts),
            self.plan.agent_config(i, &site.data_dir, extra),
        )?;
        let mut cmd = Command::new(native_bin("geomesh-agent")?);
        cmd.arg("--config").arg(&cfg).env(
            "GEOMESH_LOG",
            std::env::var("GEOMESH_LOG").unwrap_or_else(|_| "info,geomesh_agent::replication=debug".into()),
        );
        let mut proc = Proc::spawn(&self.dir, &format!("agent-{stem}-{}", site.agent_starts), cmd)?;
        proc.set_grace(Duration::from_secs(2));
        // The API answers once the store is open and the log resumed (bound listeners alone
        // accept connections earlier).
        proc.wait_until(Duration::from_secs(20), "the agent's /healthz", || {
            Ok(crate::process::http_get(p.agent, "/healthz")?.0 == 200)
        })?;
        proc.wait_tcp(p.proxy, Duration::from_secs(20))?;
        site.agent = Some(proc);
        Ok(())
    }

    /// SIGKILLs site `i`'s agent (no chance to clean up) and waits for it to be gone.
    pub fn kill_agent(&mut self, i: usize) -> Result<()> {
        kill(&mut self.sites[i].agent, "agent")
    }

    /// Stops site `i`'s agent (SIGTERM).
    pub fn stop_agent(&mut self, i: usize) -> Result<()> {
        stop(&mut self.sites[i].agent)
    }

    /// Starts site `i`'s Envoy (same config, same ports).
    pub fn start_envoy(&mut self, i: usize) -> Result<()> {
        ensure_free(self.plan.ports[i].admin, "Envoy's admin")?;
        ensure_free(self.plan.ports[i].listener, "Envoy's listener")?;
        let stem = self.plan.stem(i);
        let site = &mut self.sites[i];
        site.envoy_starts += 1;
        let cfg = self.plan.envoy_config(i);
        let envoy = Envoy::start_with(
            &self.dir,
            &format!("envoy-{stem}-{}", site.envoy_starts),
            &cfg,
            &EnvoyOptions::default(),
        )?;
        site.envoy = Some(envoy);
        Ok(())
    }

    /// Stops site `i`'s Envoy.
    pub fn stop_envoy(&mut self, i: usize) -> Result<()> {
        if let Some(mut e) = self.sites[i].envoy.take() {
            e.stop()?;
        }
        Ok(())
    }

    /// Stops a whole site: Envoy, agent and application.
    pub fn stop_site(&mut self, i: usize) -> Result<()> {
        self.stop_envoy(i)?;
        self.stop_agent(i)?;
        self.stop_app(i)
    }

    /// Starts a whole stopped site again (application, agent, Envoy).
    pub fn start_site(&mut self, i: usize) -> Result<()> {
        self.start_app(i)?;
        self.start_agent(i, "")?;
        self.start_envoy(i)
    }

    /// Cuts the agents of sites `a` and `b` apart, both directions (a partition: bytes stop,
    /// connections hang).
    pub fn cut_agents(&self, a: usize, b: usize) {
        for k in [(a, b), (b, a)] {
            if let Some(r) = self.agent_relays.get(&k) {
                r.cut();
            }
        }
    }

    /// Heals [`ReplicationTopology::cut_agents`].
    pub fn restore_agents(&self, a: usize, b: usize) {
        for k in [(a, b), (b, a)] {
            if let Some(r) = self.agent_relays.get(&k) {
                r.restore();
            }
        }
    }

    /// Waits until every running agent sees every running site up with its service up, then
    /// three filter ticks.
    pub fn wait_converged(&self, timeout: Duration) -> Result<()> {
        for i in 0..self.sites.len() {
            if self.sites[i].agent.is_none() {
                continue;
            }
            self.wait_sites(i, timeout, "every site and service up", |d| {
                d.sites.iter().all(|s| {
                    let running = self
                        .plan
                        .sites
                        .iter()
                        .position(|n| *n == s.name)
                        .is_some_and(|j| self.sites[j].agent.is_some());
                    !running || (s.up == Some(true) && s.services.get(SERVICE) == Some(&true))
                })
            })?;
        }
        std::thread::sleep(Duration::from_millis(self.plan.tick_ms * 3));
        Ok(())
    }

    /// Waits until site `i`'s agent reports a site table satisfying `pred`, then two filter
    /// ticks.
    pub fn wait_sites(
        &self,
        i: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&SitesDocument) -> bool,
    ) -> Result<SitesDocument> {
        wait_for_sites(&self.plan.sites[i], self.plan.tick_ms, timeout, what, || self.sites_doc(i), pred)
    }

    /// Site `i`'s agent's `/v1/sites`.
    fn sites_doc(&self, i: usize) -> Result<SitesDocument> {
        Ok(serde_json::from_value(self.agent_get(i, "/v1/sites")?.1)?)
    }

    /// Whether site `i`'s agent sees site `j` as `up`.
    pub fn sees(&self, i: usize, j: usize, up: bool) -> Result<bool> {
        let d = self.sites_doc(i)?;
        Ok(d.sites
            .iter()
            .any(|s| s.name == self.plan.sites[j] && s.up == Some(up)))
    }

    /// `http://127.0.0.1:<port>` of site `i`'s Envoy listener.
    pub fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.plan.ports[i].listener)
    }

    /// `http://127.0.0.1:<port>` of site `i`'s application instance (bypassing everything).
    pub fn instance_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.plan.ports[i].instance)
    }

    /// `http://127.0.0.1:<port>` of site `i`'s agent API.
    pub fn agent_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.plan.ports[i].agent)
    }

    /// GET on site `i`'s agent API: (status, JSON).
    pub fn agent_get(&self, i: usize, path: &str) -> Result<(u16, Value)> {
        status_and_json(self.http.get(format!("{}{path}", self.agent_url(i))))
    }

    /// POST (no body) on site `i`'s agent API: (status, JSON).
    pub fn agent_post(&self, i: usize, path: &str) -> Result<(u16, Value)> {
        status_and_json(self.http.post(format!("{}{path}", self.agent_url(i))))
    }

    /// GET on site `i`'s application directly: (status, JSON).
    pub fn instance_get(&self, i: usize, path: &str) -> Result<(u16, Value)> {
        status_and_json(self.http.get(format!("{}{path}", self.instance_url(i))))
    }

    /// The pid of site `i`'s Envoy, agent, application.
    pub fn pids(&mut self, i: usize) -> (Option<u32>, Option<u32>, Option<u32>) {
        let s = &mut self.sites[i];
        (
            s.envoy.as_mut().map(|e| e.proc().pid()),
            s.agent.as_ref().map(Proc::pid),
            s.app.as_ref().map(Proc::pid),
        )
    }

    /// Everything site `i`'s current agent logged so far (stderr).
    pub fn agent_log(&self, i: usize) -> String {
        self.sites[i].agent.as_ref().map(|p| p.logs().1).unwrap_or_default()
    }
}
