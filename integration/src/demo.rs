//! `make demo` (the `geomesh-demo` binary): geomesh's showcase, everything real on loopback.
//!
//! Six topologies run side by side (38 processes):
//!
//! * **Redis sharding (Écharde) over two sites.** Site `dc1`: an Envoy whose listener runs
//!   `geomesh_filter_redis.wasm` (the routing table of seed 004, plus a hash route so keys
//!   spread), a `geomesh-bridge` and two `redis-server` shards (`redis1-master`,
//!   `redis3-master`). Site `dc2`: a `geomesh-bridge` and one shard (`redis2-master`), reached
//!   from dc1's bridge over gRPC through a relay that adds WAN latency. Clients see one Redis.
//! * **scope-lang (Cheops) over three sites**: [`crate::scope::ScopeTopology`] (per site an
//!   Envoy with `geomesh_filter_scope.wasm`, a `geomesh-agent`, services `compute` and
//!   `image`), every inter-site link through a relay with its own delay.
//! * **Replication (`&`) over three sites**: [`crate::replication::ReplicationTopology`] (per
//!   site an Envoy with the scope filter configured with `http.replication`, a `geomesh-agent`
//!   with replication, json-server 0.17 as the application).
//! * **InfluxDB sharding** (an Envoy with `geomesh_filter_influx.wasm`, two `influxd` shards)
//!   and **Kafka sharding** (an Envoy with `geomesh_filter_kafka.wasm`, a bridge, two `tansu`
//!   brokers as shards), and **MQTT sharding** (an Envoy with `geomesh_filter_mqtt.wasm`, a
//!   bridge, two `mosquitto` brokers; [`crate::demo_mqtt`]): see their parts of the output.
//!
//! It drives scripted traffic with real clients (the `redis` crate, reqwest), verifies every
//! answer, where every key landed (each shard read directly) and where every replica is (each
//! json-server read directly), prints what runs where and commands to try, then serves until
//! Ctrl-C / SIGTERM / SIGHUP (or `--duration`), or with `--check` stops at once and exits 0
//! only if every check passed (the printed commands are run and checked too). Every child
//! process is in its own process group and is stopped on the way out, also after a signal; a
//! signal during start-up stops once the current step ends.
//!
//! Fixed ports (used when all are free, else every port is a free one, or with `--free-ports`):
//!
//! | site | what | port |
//! |---|---|---|
//! | dc1 | Envoy, Redis listener (geomesh_filter_redis) / admin | 17101 / 17100 |
//! | dc1 | geomesh-bridge: filter listener / gRPC / admin | 17110 / 17111 / 17112 |
//! | dc1 | redis-server `redis1-master`, `redis3-master` | 17121, 17123 |
//! | dc2 | geomesh-bridge: filter listener / gRPC / admin | 17210 / 17211 / 17212 |
//! | dc2 | redis-server `redis2-master` | 17222 |
//! | DC k | scope: Envoy admin / `compute` / `image` listeners, agent, s, t ([`ScopePlan::fixed`]) | 18k00 / 18k01 / 18k02, 18k10, 18k11, 18k12 |
//! | DC k | replication: Envoy admin / `image` listener, agent API / proxy, json-server ([`ReplicationPlan::fixed`]) | 19k00 / 19k02, 19k10 / 19k11, 19k12 |

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use geomesh_core::{Config, RoutingTable};
use redis::Value;
use serde_json::json;

use crate::envoy::{tcp_listener, tcp_proxy_filter, wasm_network_filter, EnvoyOptions};
use crate::influx::InfluxMesh;
use crate::demo_kafka::{kafka_section, KafkaDemo};
use crate::demo_mqtt::{mqtt_section, MqttDemo};
use crate::paths::{system_bin, wasm_path};
use crate::process::{http_get, wait_for, Proc, TestDir};
use crate::redis_mesh::{bridge_cluster, connect, Bridge, PLUGIN};
use crate::relay::Relay;
use crate::replication::{App, ReplicationPlan, ReplicationTopology};
use crate::scope::{http_client, ScopePlan, ScopeTopology, WanLinks};
use crate::{free_port, Envoy, EnvoyConfig, WasmPlugin};

/// `println!` that ignores a closed stdout (`geomesh-demo | head`, a terminal gone): the demo
/// must still stop its processes rather than panic.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `eprintln!` that ignores a closed stderr.
macro_rules! esay {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

pub const USAGE: &str = "\
usage: geomesh-demo [--check] [--duration SECONDS] [--free-ports]

Starts geomesh's demo topology on 127.0.0.1 (Redis sharding over 2 sites, scope-lang over 3
sites, replication over 3 sites), runs scripted traffic through it, verifies it, prints what
runs where and commands to try, then serves until Ctrl-C (SIGINT), SIGTERM or SIGHUP.

  --check             stop after the checks (and after running the printed commands); exit 0
                      only if everything passed (what `make test` runs)
  --duration SECONDS  serve this long, then stop (exit 0)
  --free-ports        use free ports instead of the documented fixed ones
                      (fixed ones are used when all of them are free)

Exit status: 0 ok, 1 a check or a start-up step failed (logs kept, path printed), 2 bad
arguments, 130 stopped by a signal before serving.";

/// Command-line options of `geomesh-demo`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub check: bool,
    pub duration: Option<Duration>,
    pub free_ports: bool,
}

impl Options {
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options> {
        let mut o = Options::default();
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--check" => o.check = true,
                "--free-ports" => o.free_ports = true,
                "--duration" => {
                    let v = args.next().context("--duration needs a number of seconds")?;
                    let s: f64 = v.parse().ok().filter(|s: &f64| s.is_finite() && *s >= 0.0).with_context(|| format!("--duration {v}: not a number of seconds"))?;
                    o.duration = Some(Duration::from_secs_f64(s));
                }
                other => bail!("unknown argument {other:?}"),
            }
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------------------------------------
// Signals

static STOP: AtomicBool = AtomicBool::new(false);

/// The error a start-up step returns when a signal asked to stop.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped by a signal")
    }
}

impl std::error::Error for Interrupted {}

fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

fn checkpoint() -> Result<()> {
    if stop_requested() {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// SIGINT, SIGTERM and SIGHUP set [`STOP`] instead of killing the process, so that every child
/// is stopped on the way out. Returns once the handlers are installed.
fn install_signal_handlers() -> Result<()> {
    let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            use tokio::signal::unix::{signal, SignalKind};
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let (mut int, mut term, mut hup) =
                    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup())) {
                        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
                        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                let _ = tx.send(Ok(()));
                loop {
                    let name = tokio::select! {
                        _ = int.recv() => "SIGINT",
                        _ = term.recv() => "SIGTERM",
                        _ = hup.recv() => "SIGHUP",
                    };
                    if STOP.swap(true, Ordering::SeqCst) {
                        esay!("geomesh-demo: {name} again: still stopping the processes");
                    } else {
                        esay!("\ngeomesh-demo: {name}: stopping every process ...");
                    }
                }
            });
        })
        .context("spawn the signal thread")?;
    match rx.recv() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => bail!("install signal handlers: {e}"),
        Err(_) => bail!("install signal handlers: the thread ended"),
    }
}

// ---------------------------------------------------------------------------------------------
// Checks and printing

/// Counts passed checks; the first failed one is an error naming what was expected.
#[derive(Default)]
struct Checks {
    passed: usize,
}

impl Checks {
    fn that(&mut self, ok: bool, what: impl FnOnce() -> String) -> Result<()> {
        if !ok {
            bail!("check failed: {}", what());
        }
        self.passed += 1;
        Ok(())
    }

    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) -> Result<()> {
        let ok = got == want;
        self.that(ok, || format!("{what}: got {got:?}, expected {want:?}"))
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A reply the way redis-cli shows it, on one line.
fn show(v: &Value) -> String {
    fn go(v: &Value, out: &mut String) {
        match v {
            Value::Nil => out.push_str("(nil)"),
            Value::Int(i) => {
                let _ = write!(out, "(integer) {i}");
            }
            Value::BulkString(b) => {
                let _ = write!(out, "{:?}", String::from_utf8_lossy(b));
            }
            Value::SimpleString(s) => out.push_str(s),
            Value::Okay => out.push_str("OK"),
            Value::Double(d) => {
                let _ = write!(out, "(double) {d}");
            }
            Value::Boolean(b) => {
                let _ = write!(out, "(boolean) {b}");
            }
            Value::Array(items) | Value::Set(items) => {
                out.push('[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    go(x, out);
                }
                out.push(']');
            }
            Value::Map(pairs) => {
                out.push('{');
                for (i, (k, x)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    go(k, out);
                    out.push_str(": ");
                    go(x, out);
                }
                out.push('}');
            }
            other => {
                let _ = write!(out, "{other:?}");
            }
        }
    }
    let mut s = String::new();
    go(v, &mut s);
    s
}

const CMD_W: usize = 40;
const PLACE_W: usize = 18;

/// One command of the Redis traffic: the command, where the routing table sends it, how long
/// it took, the reply (a command longer than its column gets a line of its own).
fn row(cmd: &str, place: &str, took: Option<Duration>, reply: &str) {
    let took = took.map(ms).unwrap_or_default();
    if cmd.chars().count() > CMD_W {
        say!("  {cmd}");
        say!("  {:<CMD_W$} {place:<PLACE_W$} {took:>8}  {reply}", "");
    } else {
        say!("  {cmd:<CMD_W$} {place:<PLACE_W$} {took:>8}  {reply}");
    }
}

/// A further line under the reply column.
fn more(text: &str) {
    say!("  {:<CMD_W$} {:<PLACE_W$} {:>8}  {text}", "", "", "");
}

/// A shell word: as is when safe, else single-quoted.
fn shell_word(s: &str) -> String {
    let safe = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn port_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

// ---------------------------------------------------------------------------------------------
// The Redis topology

/// A redis-server shard of the demo.
#[derive(Clone, Debug)]
pub struct Shard {
    pub name: &'static str,
    pub site: &'static str,
    pub port: u16,
}

/// Ports of one geomesh-bridge.
#[derive(Clone, Debug)]
pub struct BridgePorts {
    pub listen: u16,
    pub grpc: u16,
    pub admin: u16,
}

/// Everything needed to start the Redis part.
#[derive(Clone, Debug)]
pub struct RedisPlan {
    pub envoy_admin: u16,
    /// The one Redis address clients use (dc1's Envoy listener).
    pub envoy_listen: u16,
    pub dc1: BridgePorts,
    pub dc2: BridgePorts,
    pub shards: Vec<Shard>,
    /// One-way delay on the dc1 ⇄ dc2 gRPC link (each direction).
    pub wan_delay: Duration,
}

/// The filter configuration at dc1: seed 004's table plus a hash route over dc1's shards.
pub const REDIS_FILTER_CONFIG: &str = "\
workload_type: redis
type_proxy: downstream
default_cluster: redis1-master
local_cluster: redis1-master
upstream_timeout_ms: 5000
hash_tags: true
routing_table:
  user1: { type: key, cluster: redis2-master }
  alert: { type: value, cluster: redis2-master }
  \"*\":   { type: hash, clusters: [redis1-master, redis3-master], algorithm: rendezvous-v1 }
";

impl RedisPlan {
    fn with(mut port: impl FnMut(u16) -> Result<u16>) -> Result<RedisPlan> {
        Ok(RedisPlan {
            envoy_admin: port(17100)?,
            envoy_listen: port(17101)?,
            dc1: BridgePorts { listen: port(17110)?, grpc: port(17111)?, admin: port(17112)? },
            dc2: BridgePorts { listen: port(17210)?, grpc: port(17211)?, admin: port(17212)? },
            shards: vec![
                Shard { name: "redis1-master", site: "dc1", port: port(17121)? },
                Shard { name: "redis3-master", site: "dc1", port: port(17123)? },
                Shard { name: "redis2-master", site: "dc2", port: port(17222)? },
            ],
            wan_delay: Duration::from_millis(10),
        })
    }

    /// The documented fixed ports.
    pub fn fixed() -> RedisPlan {
        Self::with(Ok).unwrap_or_else(|_| unreachable!("fixed ports never fail"))
    }

    /// The same on free ports (the harness's allocator, [`free_port`]).
    pub fn free() -> Result<RedisPlan> {
        Self::with(|_| free_port())
    }

    pub fn ports(&self) -> Vec<u16> {
        let mut v = vec![self.envoy_admin, self.envoy_listen];
        for b in [&self.dc1, &self.dc2] {
            v.extend([b.listen, b.grpc, b.admin]);
        }
        v.extend(self.shards.iter().map(|s| s.port));
        v
    }

    pub fn table(&self) -> Result<RoutingTable> {
        let cfg = Config::parse(REDIS_FILTER_CONFIG.as_bytes()).context("demo filter config")?;
        RoutingTable::new(&cfg).context("demo routing table")
    }

    pub fn shard(&self, name: &str) -> Option<&Shard> {
        self.shards.iter().find(|s| s.name == name)
    }

    /// The bridge configuration of `site`: its own shards; dc1 also knows dc2's shard and reaches
    /// dc2's gRPC at `dc2_grpc` (dc2 only serves tunnels).
    pub fn bridge_config(&self, site: &str, dc2_grpc: u16) -> String {
        let b = if site == "dc1" { &self.dc1 } else { &self.dc2 };
        let mut t = String::new();
        let _ = writeln!(t, "site: {site}");
        let _ = writeln!(t, "listen: 127.0.0.1:{}", b.listen);
        let _ = writeln!(t, "grpc_listen: 127.0.0.1:{}", b.grpc);
        // Loopback between the demo's two sites: plaintext, said explicitly (bridge `tls:`
        // otherwise).
        let _ = writeln!(t, "plaintext: true");
        let _ = writeln!(t, "admin_listen: 127.0.0.1:{}", b.admin);
        let _ = writeln!(t, "defaults: {{ connect_timeout_ms: 2000, ping_interval_ms: 1000, drain_timeout_ms: 1000 }}");
        let _ = writeln!(t, "clusters:");
        for s in &self.shards {
            if s.site == site {
                let _ = writeln!(t, "  {}: {{ address: 127.0.0.1:{} }}", s.name, s.port);
            } else if site == "dc1" {
                let _ = writeln!(t, "  {}: {{ site: {} }}", s.name, s.site);
            }
        }
        if site == "dc1" {
            let _ = writeln!(t, "sites:\n  dc2: {{ grpc: \"http://127.0.0.1:{dc2_grpc}\" }}");
        }
        t
    }
}

/// The Redis part, running. Field order is drop order: Envoy, bridges, shards.
pub struct RedisSites {
    pub envoy: Envoy,
    pub bridge_dc1: Bridge,
    /// dc1's bridge → dc2's gRPC listener, with [`RedisPlan::wan_delay`] each way.
    pub wan: Relay,
    pub bridge_dc2: Bridge,
    pub shards: Vec<(Shard, Proc)>,
    pub plan: RedisPlan,
}

fn start_redis_server(dir: &TestDir, name: &str, port: u16) -> Result<Proc> {
    let wd = dir.join(name);
    std::fs::create_dir_all(&wd)?;
    let mut cmd = Command::new(system_bin("redis-server")?);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&wd);
    let mut p = Proc::spawn(dir, name, cmd)?;
    p.set_grace(Duration::from_secs(3));
    p.wait_until(Duration::from_secs(10), &format!("{name} PONG on {port}"), || {
        let mut c = connect(&format!("redis://127.0.0.1:{port}/"))?;
        Ok(redis::cmd("PING").query::<String>(&mut c)? == "PONG")
    })?;
    Ok(p)
}

impl RedisSites {
    pub fn start(dir: &TestDir, plan: RedisPlan) -> Result<RedisSites> {
        let wasm = wasm_path("geomesh_filter_redis")?;
        let mut shards = Vec::new();
        for s in &plan.shards {
            checkpoint()?;
            shards.push((s.clone(), start_redis_server(dir, s.name, s.port)?));
        }
        checkpoint()?;
        let bridge_dc2 = Bridge::start_config(dir, "bridge-dc2", &plan.bridge_config("dc2", 0))?;
        let wan = Relay::start(plan.dc2.grpc)?;
        wan.set_delay(plan.wan_delay);
        let bridge_dc1 = Bridge::start_config(dir, "bridge-dc1", &plan.bridge_config("dc1", wan.port()))?;
        checkpoint()?;
        let plugin = WasmPlugin::new(PLUGIN, "", wasm, REDIS_FILTER_CONFIG);
        let mut cfg = EnvoyConfig::new()?
            .node("geomesh-demo-dc1", "geomesh-demo")
            .listener(tcp_listener(
                "redis_in",
                plan.envoy_listen,
                vec![wasm_network_filter(&plugin), tcp_proxy_filter("redis_in", "geomesh_bridge")],
            ))
            .cluster(bridge_cluster("geomesh_bridge", &bridge_dc1));
        cfg.admin_port = plan.envoy_admin;
        let mut envoy = Envoy::start_with(dir, "envoy-redis-dc1", &cfg, &EnvoyOptions::default())?;
        envoy.proc().wait_tcp(plan.envoy_listen, Duration::from_secs(20))?;
        Ok(RedisSites { envoy, bridge_dc1, wan, bridge_dc2, shards, plan })
    }

    /// `redis://127.0.0.1:<Envoy listener>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.plan.envoy_listen)
    }

    fn direct(&self, shard: &str) -> Result<redis::Connection> {
        let s = self.plan.shard(shard).with_context(|| format!("no shard {shard}"))?;
        connect(&format!("redis://127.0.0.1:{}/", s.port))
    }

    fn procs(&mut self) -> Vec<(String, &mut Proc)> {
        let mut v: Vec<(String, &mut Proc)> = vec![
            ("dc1 envoy (redis)".into(), self.envoy.proc()),
            ("dc1 geomesh-bridge".into(), &mut self.bridge_dc1.proc),
            ("dc2 geomesh-bridge".into(), &mut self.bridge_dc2.proc),
        ];
        for (s, p) in self.shards.iter_mut() {
            v.push((format!("{} {}", s.site, s.name), p));
        }
        v
    }
}

fn bridge_stats(admin: u16) -> Result<BTreeMap<String, String>> {
    let (st, body) = http_get(admin, "/stats")?;
    if st != 200 {
        bail!("bridge admin :{admin} /stats answered {st}: {body}");
    }
    Ok(body
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect())
}

/// `calls` of `cmdstat_<command>` in a shard's `INFO commandstats` (0 if never called).
fn command_calls(mut con: redis::Connection, command: &str) -> Result<u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut con)?;
    let prefix = format!("cmdstat_{command}:");
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').find_map(|kv| kv.strip_prefix("calls=")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0))
}

fn stat_u64(stats: &BTreeMap<String, String>, name: &str) -> u64 {
    stats.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The scripted Redis traffic, printed and verified.
fn redis_section(r: &RedisSites, ck: &mut Checks) -> Result<()> {
    let t = r.plan.table()?;
    let place = |cluster: &str| -> String {
        let site = r.plan.shard(cluster).map(|s| s.site).unwrap_or("?");
        format!("{cluster}@{site}")
    };
    let route = |key: &str| -> String { t.cluster_name(t.route(key.as_bytes())).to_owned() };
    let p = &r.plan;
    say!("\n== Redis sharding (Écharde): one Redis at 127.0.0.1:{}, 3 shards on 2 sites ==", p.envoy_listen);
    say!("the filter's configuration at dc1 (seed 004's table + a hash route):");
    for l in REDIS_FILTER_CONFIG.lines() {
        say!("  | {l}");
    }
    say!(
        "dc1's bridge reaches redis2-master through dc2's bridge over gRPC, via a WAN relay adding {} each way.\n",
        ms(p.wan_delay)
    );

    let mut c = connect(&r.url())?;
    let mut written: BTreeSet<String> = BTreeSet::new();
    say!("  {:<CMD_W$} {:<PLACE_W$} {:>8}  reply", "command (redis crate, via Envoy)", "shard (by table)", "time");
    let sets = [
        ("user1", "alice"),
        ("user1:cart", "3 items"),
        ("{user1}:session", "s-42"),
        ("product:1", "lamp"),
        ("product:2", "desk"),
        ("product:3", "chair"),
        ("order:1", "lamp x2"),
        ("order:2", "desk x1"),
        ("city", "Lyon"),
    ];
    for (k, v) in sets {
        let t0 = Instant::now();
        let reply: Value = redis::cmd("SET").arg(k).arg(v).query(&mut c).with_context(|| format!("SET {k}"))?;
        let took = t0.elapsed();
        row(&format!("SET {k} {v:?}"), &place(&route(k)), Some(took), &show(&reply));
        ck.eq(&format!("SET {k}"), &reply, &Value::Okay)?;
        written.insert(k.to_owned());
    }
    for (k, v) in [("user1", "alice"), ("{user1}:session", "s-42"), ("product:2", "desk"), ("nope", "")] {
        let t0 = Instant::now();
        let reply: Value = redis::cmd("GET").arg(k).query(&mut c).with_context(|| format!("GET {k}"))?;
        let took = t0.elapsed();
        row(&format!("GET {k}"), &place(&route(k)), Some(took), &show(&reply));
        let want = if v.is_empty() { Value::Nil } else { Value::BulkString(v.as_bytes().to_vec()) };
        ck.eq(&format!("GET {k}"), &reply, &want)?;
    }

    // MSET / MGET: one command, split into one per shard, merged in the client's order.
    let pairs = [("user1:name", "Alice"), ("product:4", "shade"), ("order:3", "chair x4"), ("news", "sunny"), ("stock", "12")];
    let shards_of = |keys: &[&str]| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for k in keys {
            *m.entry(route(k)).or_insert(0) += 1;
        }
        m
    };
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
    let split = shards_of(&keys);
    ck.eq("the MSET keys span every shard", split.len(), 3)?;
    let split_text = split.iter().map(|(s, n)| format!("{n} on {s}")).collect::<Vec<_>>().join(", ");
    let mset_text = format!("MSET {}", pairs.iter().map(|(k, v)| format!("{k} {v:?}")).collect::<Vec<_>>().join(" "));
    let mut cmd = redis::cmd("MSET");
    for (k, v) in pairs {
        cmd.arg(k).arg(v);
        written.insert(k.to_owned());
    }
    let t0 = Instant::now();
    let reply: Value = cmd.query(&mut c).context("MSET")?;
    row(&mset_text, "3 shards, 2 sites", Some(t0.elapsed()), &show(&reply));
    more(&format!("(one MSET per shard: {split_text})"));
    ck.eq("MSET", &reply, &Value::Okay)?;
    for sh in &p.shards {
        let n = command_calls(r.direct(sh.name)?, "mset")?;
        ck.eq(&format!("MSET calls on {} (INFO commandstats)", sh.name), n, 1)?;
    }
    more("(INFO commandstats of each shard: exactly 1 MSET, no SET per key)");
    let asked = ["stock", "user1", "missing", "product:1", "user1:name", "order:3"];
    let t0 = Instant::now();
    let reply: Value = redis::cmd("MGET").arg(&asked[..]).query(&mut c).context("MGET")?;
    row(&format!("MGET {}", asked.join(" ")), "3 shards, 2 sites", Some(t0.elapsed()), &show(&reply));
    let want = Value::Array(
        ["12", "alice", "", "lamp", "Alice", "chair x4"]
            .iter()
            .map(|v| if v.is_empty() { Value::Nil } else { Value::BulkString(v.as_bytes().to_vec()) })
            .collect(),
    );
    ck.eq("MGET merged in the client's order", &reply, &want)?;
    for sh in &p.shards {
        let n = command_calls(r.direct(sh.name)?, "mget")?;
        ck.eq(&format!("MGET calls on {} (INFO commandstats)", sh.name), n, 1)?;
    }
    more("(one MGET per shard, merged in the client's order)");

    // Broadcasts: KEYS (union), DBSIZE (sum), compared with the shards read directly.
    let mut direct: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for s in &p.shards {
        let mut d = r.direct(s.name)?;
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut d)?;
        direct.insert(s.name, keys.into_iter().collect());
    }
    let union: BTreeSet<String> = direct.values().flatten().cloned().collect();
    let t0 = Instant::now();
    let all: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).context("KEYS")?;
    row("KEYS *", "all 3 (union)", Some(t0.elapsed()), &format!("{} keys", all.len()));
    ck.eq("KEYS * through geomesh = the union of the shards", all.iter().cloned().collect::<BTreeSet<_>>(), union.clone())?;
    ck.eq("KEYS * = what was written", union, written.clone())?;
    let t0 = Instant::now();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).context("DBSIZE")?;
    let parts: Vec<String> = p.shards.iter().map(|s| direct[s.name].len().to_string()).collect();
    row("DBSIZE", "all 3 (sum)", Some(t0.elapsed()), &format!("(integer) {n} = {} on {}", parts.join(" + "), p.shards.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")));
    ck.eq("DBSIZE", n as usize, written.len())?;

    // RESP3: the crate sends HELLO 3; geomesh replays it on every shard it opens.
    let mut c3 = connect(&format!("{}?protocol=resp3", r.url()))?;
    let t0 = Instant::now();
    let hello: Value = redis::cmd("HELLO").arg(3).query(&mut c3).context("HELLO 3")?;
    let took = t0.elapsed();
    let field = |name: &str| -> Option<Value> {
        match &hello {
            Value::Map(m) => m.iter().find(|(k, _)| *k == Value::BulkString(name.as_bytes().to_vec()) || *k == Value::SimpleString(name.into())).map(|(_, v)| v.clone()),
            _ => None,
        }
    };
    let version = match field("version") {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
        other => format!("{other:?}"),
    };
    row("HELLO 3 (a RESP3 client)", &place("redis1-master"), Some(took), &format!("proto 3, redis {version} (the local shard answers)"));
    ck.eq("HELLO 3 answers a RESP3 map with proto 3", field("proto"), Some(Value::Int(3)))?;
    let _: Value = redis::cmd("HSET").arg("user1:profile").arg("name").arg("Alice").arg("city").arg("Lyon").query(&mut c3)?;
    written.insert("user1:profile".into());
    let t0 = Instant::now();
    let h: Value = redis::cmd("HGETALL").arg("user1:profile").query(&mut c3).context("HGETALL")?;
    row("HGETALL user1:profile (RESP3)", &place(&route("user1:profile")), Some(t0.elapsed()), &format!("{} (a RESP3 map)", show(&h)));
    let is_map = matches!(&h, Value::Map(m) if m.len() == 2);
    ck.that(is_map, || format!("HGETALL over RESP3 from dc2 is a map of 2: {h:?}"))?;
    for sh in ["redis1-master", "redis2-master"] {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut r.direct(sh)?)?;
        ck.that(list.contains("resp=3"), || format!("{sh} has a RESP3 connection from geomesh: CLIENT LIST = {list}"))?;
    }
    more("(CLIENT LIST on redis1-master and redis2-master: a resp=3 connection each, HELLO 3 replayed)");
    let t0 = Instant::now();
    let v: Value = redis::cmd("MGET").arg("user1").arg("product:3").query(&mut c3)?;
    row("MGET user1 product:3 (RESP3)", "2 sites", Some(t0.elapsed()), &show(&v));
    ck.eq(
        "MGET over RESP3",
        &v,
        &Value::Array(vec![Value::BulkString(b"alice".to_vec()), Value::BulkString(b"chair".to_vec())]),
    )?;

    // Pub/sub: a subscriber through geomesh listens on every shard a message on its channel can
    // be published to; PUBLISH goes to the shard
    // the table names (the channel's hash, or the `alert` value route). A direct subscriber on
    // each shard shows where each message was really published.
    let mut direct_subs = Vec::new();
    for s in &p.shards {
        let d = r.direct(s.name)?;
        d.set_read_timeout(Some(Duration::from_millis(400)))?;
        direct_subs.push((s.name, d));
    }
    let mut dsubs = Vec::new();
    for (name, d) in direct_subs.iter_mut() {
        let mut ps = d.as_pubsub();
        ps.subscribe("news")?;
        dsubs.push((*name, ps));
    }
    let mut sub_con = connect(&r.url())?;
    let mut sub = sub_con.as_pubsub();
    sub.subscribe("news").context("SUBSCRIBE news through geomesh")?;
    sub.set_read_timeout(Some(Duration::from_secs(5)))?;
    // geomesh listens where a message on `news` can be published: the channel's hash target
    // and the `alert` value route's cluster, not on every shard.
    let listen: Vec<String> = t.message_clusters(b"news").into_iter().map(|id| t.cluster_name(id).to_owned()).collect();
    for sh in &p.shards {
        let v: Vec<Value> = redis::cmd("PUBSUB").arg("NUMSUB").arg("news").query(&mut r.direct(sh.name)?)?;
        let want = if listen.iter().any(|l| l == sh.name) { 2 } else { 1 };
        ck.eq(&format!("subscribers of news on {} (direct one + geomesh's where it listens)", sh.name), v.get(1), Some(&Value::Int(want)))?;
    }
    row("SUBSCRIBE news (a 2nd client)", &format!("{} shards", listen.len()), None, "subscribed");
    more(&format!("(on {}: where a message on news can be published: the channel's hash shard, the alert route's)", listen.join(" and ")));
    let msgs = [("news", "new lamps in stock"), ("news", "alert: warehouse door open")];
    let mut expected_on: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (ch, payload) in msgs {
        let target = t.cluster_name(t.route_message(Some(ch.as_bytes()), Some(payload.as_bytes()))).to_owned();
        let why = if payload.contains("alert") { "value route: holds \"alert\"" } else { "hash of the channel" };
        let t0 = Instant::now();
        let n: i64 = redis::cmd("PUBLISH").arg(ch).arg(payload).query(&mut c).context("PUBLISH")?;
        row(&format!("PUBLISH {ch} {payload:?}"), &place(&target), Some(t0.elapsed()), &format!("(integer) {n}  ({why})"));
        ck.eq("PUBLISH receivers (geomesh's subscription + the direct subscriber of that shard)", n, 2)?;
        expected_on.entry(p.shard(&target).map(|s| s.name).unwrap_or("?")).or_default().push(payload.to_owned());
    }
    let mut got = Vec::new();
    for _ in msgs {
        let m = sub.get_message().context("the subscriber through geomesh")?;
        got.push(m.get_payload::<String>()?);
    }
    got.sort();
    let mut want: Vec<String> = msgs.iter().map(|(_, p)| p.to_string()).collect();
    want.sort();
    row("the subscriber through geomesh got", "", None, &got.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", "));
    ck.eq("messages received through geomesh", got, want)?;
    for (name, ps) in dsubs.iter_mut() {
        let mut seen = Vec::new();
        while let Ok(m) = ps.get_message() {
            seen.push(m.get_payload::<String>()?);
        }
        let want = expected_on.get(name).cloned().unwrap_or_default();
        ck.eq(&format!("messages published on {name} (its direct subscriber)"), &seen, &want)?;
    }
    drop(sub);
    drop(dsubs);

    // Where every key is: each shard read directly, not through geomesh.
    say!("\n  where the keys are (each shard read directly with KEYS *, not through geomesh):");
    for s in &p.shards {
        let mut d = r.direct(s.name)?;
        let keys: BTreeSet<String> = redis::cmd("KEYS").arg("*").query::<Vec<String>>(&mut d)?.into_iter().collect();
        say!("  {:<14} {} :{:<6} {:>2} keys  {}", s.name, s.site, s.port, keys.len(), keys.iter().cloned().collect::<Vec<_>>().join(" "));
        let want: BTreeSet<String> = written.iter().filter(|k| route(k) == s.name).cloned().collect();
        ck.eq(&format!("keys on {} = the keys the table puts there", s.name), keys, want)?;
    }
    say!("  every key is on the shard the routing table names, and only there");

    // The bridges: dc2 served dc1's channels to redis2-master over gRPC.
    let s1 = bridge_stats(p.dc1.admin)?;
    let s2 = bridge_stats(p.dc2.admin)?;
    let remote = stat_u64(&s1, "remote_channels_total");
    let tunnels = stat_u64(&s2, "tunnels_in_total");
    say!(
        "  bridges: dc1 opened {} channels to shards, {} of them to dc2 over gRPC (bridge-to-bridge RTT {:.1} ms); dc2 accepted {} tunnels",
        stat_u64(&s1, "channels_total"),
        remote,
        stat_u64(&s1, "site.dc2.rtt_us") as f64 / 1000.0,
        tunnels
    );
    ck.that(remote > 0 && tunnels > 0, || format!("dc1 remote_channels_total {remote}, dc2 tunnels_in_total {tunnels}"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The scope-lang part

/// One-way delays of the scope sites' WAN links: (a, b, delay).
const SCOPE_DELAYS: [(usize, usize, u64); 3] = [(0, 1, 40), (0, 2, 5), (1, 2, 30)];

struct Answer {
    status: u16,
    body: String,
    took: Duration,
}

impl Answer {
    fn first_line(&self) -> &str {
        self.body.lines().next().unwrap_or("")
    }
}

fn get(c: &reqwest::blocking::Client, url: &str, scope: &str) -> Result<Answer> {
    let t0 = Instant::now();
    let r = c.get(url).header("x-scope", scope).send().with_context(|| format!("GET {url}"))?;
    let status = r.status().as_u16();
    let body = r.text()?;
    Ok(Answer { status, body, took: t0.elapsed() })
}

fn scope_row(scope: &str, result: &str, took: Duration) {
    say!("  x-scope: {scope:<36} {:>8}  {result}", ms(took));
}

fn image_up(d: &geomesh_scope::health::SitesDocument, site: &str) -> Option<bool> {
    d.sites.iter().find(|s| s.name == site).and_then(|s| s.services.get("image").copied())
}

fn rtt(d: &geomesh_scope::health::SitesDocument, site: &str) -> Option<f64> {
    d.sites.iter().find(|s| s.name == site).and_then(|s| s.rtt_ms)
}

fn scope_section(topo: &mut ScopeTopology, ck: &mut Checks) -> Result<()> {
    let c = http_client()?;
    let compute_url = format!("{}/compute/cat", topo.url(0, "compute"));
    let image_url = format!("{}/image/cat?size=8", topo.url(0, "image"));
    say!("\n== scope-lang (Cheops): per-request placement over DC 1, DC 2, DC 3 ==");
    say!(
        "every request enters at DC 1 (compute {}, image {}); WAN links: {}",
        topo.url(0, "compute"),
        topo.url(0, "image"),
        SCOPE_DELAYS.iter().map(|(a, b, d)| format!("DC {}⇄DC {} +{d} ms each way", a + 1, b + 1)).collect::<Vec<_>>().join(", ")
    );
    say!("s (compute) calls t (image) through its own site's Envoy, forwarding x-scope as apps forward headers.\n");

    let compute = |scope: &str, want: (&str, &str), ck: &mut Checks| -> Result<()> {
        let a = get(&c, &compute_url, scope)?;
        let v: serde_json::Value = serde_json::from_str(&a.body).with_context(|| format!("compute answered {} {}", a.status, a.body))?;
        let got = (v["site"].as_str().unwrap_or("?").to_owned(), v["image"]["site"].as_str().unwrap_or("?").to_owned());
        scope_row(scope, &format!("{} compute@{} -> image@{}", a.status, got.0, got.1), a.took);
        ck.eq(&format!("x-scope {scope}: (compute, image) sites"), (a.status, got), (200, (want.0.to_owned(), want.1.to_owned())))
    };
    let image = |scope: &str, want_status: u16, want_line: &str, ck: &mut Checks| -> Result<()> {
        let a = get(&c, &image_url, scope)?;
        scope_row(scope, &format!("{} {}", a.status, a.first_line()), a.took);
        ck.eq(&format!("x-scope {scope}: answer"), (a.status, a.first_line()), (want_status, want_line))
    };
    let wait_image = |topo: &ScopeTopology, site: &str, up: bool| -> Result<()> {
        topo.wait_sites(0, Duration::from_secs(20), &format!("{site}'s image {}", if up { "up" } else { "down" }), |d| image_up(d, site) == Some(up))?;
        Ok(())
    };

    say!("  Cmd. 2 and Cmd. 3 of the paper, then the scope following the workflow:");
    compute("{ compute: DC 1, image: DC 1 }", ("DC 1", "DC 1"), ck)?;
    compute("{ compute: DC 1, image: DC 2 }", ("DC 1", "DC 2"), ck)?;
    compute("{ compute: DC 3, image: DC 2 }", ("DC 3", "DC 2"), ck)?;
    checkpoint()?;

    say!("  otherwise (`;`): DC 2's image up, stopped, started again:");
    image("{ image: DC 2 ; DC 3 }", 200, "IMAGE cat @ DC 2", ck)?;
    topo.stop_instance(1, "image")?;
    wait_image(topo, "DC 2", false)?;
    say!("  (DC 2's image stopped; DC 1's agent sees it down)");
    image("{ image: DC 2 ; DC 3 }", 200, "IMAGE cat @ DC 3", ck)?;
    topo.restart_instance(1, "image")?;
    wait_image(topo, "DC 2", true)?;
    say!("  (DC 2's image started again)");
    image("{ image: DC 2 ; DC 3 }", 200, "IMAGE cat @ DC 2", ck)?;
    checkpoint()?;

    say!("  around(site, radius): the site, then the others within the radius, nearest first:");
    let d = topo.wait_sites(0, Duration::from_secs(20), "RTTs measured through the WAN relays", |d| {
        rtt(d, "DC 2").is_some_and(|r| r > 60.0) && rtt(d, "DC 3").is_some_and(|r| (5.0..30.0).contains(&r))
    })?;
    say!(
        "  RTTs measured by DC 1's agent: DC 2 {:.1} ms, DC 3 {:.1} ms",
        rtt(&d, "DC 2").unwrap_or(f64::NAN),
        rtt(&d, "DC 3").unwrap_or(f64::NAN)
    );
    image("{ image: around(DC 1, 50ms) }", 200, "IMAGE cat @ DC 1", ck)?;
    topo.stop_instance(0, "image")?;
    wait_image(topo, "DC 1", false)?;
    say!("  (DC 1's image stopped)");
    image("{ image: around(DC 1, 50ms) }", 200, "IMAGE cat @ DC 3", ck)?;
    image("{ image: around(DC 1, 200ms) }", 200, "IMAGE cat @ DC 3", ck)?;
    let a = get(&c, &image_url, "{ image: around(DC 1, 5ms) }")?;
    scope_row("{ image: around(DC 1, 5ms) }", &format!("{} {}", a.status, a.first_line()), a.took);
    ck.eq("around(DC 1, 5ms) with DC 1 down: 503, never served elsewhere", a.status, 503)?;
    topo.restart_instance(0, "image")?;
    wait_image(topo, "DC 1", true)?;
    say!("  (DC 1's image started again)");
    checkpoint()?;

    say!("  errors are answered, never served locally:");
    let served_before = topo.instance_stats(0, "image")?["requests"].as_u64();
    let a = get(&c, &image_url, "{ image: DC 9 }")?;
    scope_row("{ image: DC 9 }", &format!("{} {}", a.status, a.first_line()), a.took);
    ck.eq("unknown site", (a.status, a.first_line()), (400, "scope: unknown site 'DC 9'"))?;
    let served_after = topo.instance_stats(0, "image")?["requests"].as_u64();
    ck.eq("DC 1's image served nothing for the bad scope", served_after, served_before)?;

    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The replication part

/// The replication sites: [`ReplicationPlan::free`] (json-server, quick heartbeats), on the
/// ports of `examples/replication/` ([`ReplicationPlan::fixed`]: `DC k`: Envoy admin 19k00,
/// `image` listener 19k02, agent 19k10, its proxy 19k11, json-server 19k12) unless `free`. DC 2's application starts with two images of its own, so the replica
/// gets another local id there than at DC 1.
pub fn replication_plan(free: bool) -> Result<ReplicationPlan> {
    let mut p = ReplicationPlan::free(App::JsonServer)?;
    if !free {
        p.ports = ReplicationPlan::fixed().ports;
    }
    if let Some(seed) = p.seeds.get_mut(1) {
        *seed = json!({ "images": [ { "id": 1, "name": "dc2-logo.png" }, { "id": 2, "name": "dc2-map.png" } ] });
    }
    Ok(p)
}

/// The item called `name` in site `i`'s application, read directly (not through geomesh).
fn app_item(t: &ReplicationTopology, i: usize, name: &str) -> Result<Option<serde_json::Value>> {
    let (st, v) = t.instance_get(i, "/images")?;
    if st != 200 {
        bail!("{}'s json-server GET /images: {st} {v}", t.plan.sites[i]);
    }
    Ok(v.as_array().and_then(|a| a.iter().find(|x| x["name"] == name).cloned()))
}

fn replication_section(t: &ReplicationTopology, ck: &mut Checks) -> Result<()> {
    let c = http_client()?;
    say!("\n== replication (`&`): one create, a replica on two sites under one meta-identifier ==");
    say!(
        "three more sites DC 1..3 (Envoy + scope filter with http.replication, geomesh-agent, json-server 0.17 as `image`);"
    );
    say!("DC 2's json-server already holds 2 images of its own. Requests enter at DC 1 ({}) or DC 2 ({}).\n", t.url(0), t.url(1));
    let scope = "{ image: DC 1 & DC 2 }";
    let body = json!({ "name": "cat.png", "size": 3 });
    let t0 = Instant::now();
    let r = c.post(format!("{}/images", t.url(0))).header("x-scope", scope).json(&body).send().context("POST /images")?;
    let took = t0.elapsed();
    let status = r.status().as_u16();
    let hdr = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let replica = hdr("x-geomesh-replica");
    let text = r.text()?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    let meta = v["id"].as_str().unwrap_or("").to_owned();
    say!("  POST /images {body} at DC 1, x-scope: {scope}");
    say!("  {:<CMD_W$} {:>8}  {status} {text}  (answered by {replica}'s replica)", "", ms(took));
    ck.that(status == 201 && meta.len() == 29 && meta.starts_with("gm-"), || format!("replicated create: {status} {text}"))?;
    ck.eq("the create's answer comes from DC 1's replica", replica.as_str(), "DC 1")?;
    // The other replica is written by the leader's agent, maybe just after the answer.
    wait_for(Duration::from_secs(15), "DC 2's json-server holds the replica", || Ok(app_item(t, 1, "cat.png")?.is_some()))?;
    say!("  each site's json-server, read directly:");
    let mut local_ids = BTreeMap::new();
    for (i, site) in t.plan.sites.iter().enumerate() {
        let item = app_item(t, i, "cat.png")?;
        match &item {
            Some(x) => say!("    {site}: {x}   (its own id {})", x["id"]),
            None => say!("    {site}: no replica"),
        }
        ck.eq(&format!("{site} holds a replica"), item.is_some(), i < 2)?;
        if let Some(x) = item {
            local_ids.insert(site.clone(), x["id"].clone());
        }
    }
    let (st, rec) = t.agent_get(0, &format!("/v1/replication/replicants/{meta}"))?;
    let recorded: BTreeMap<String, serde_json::Value> = ["DC 1", "DC 2"]
        .iter()
        .map(|s| (s.to_string(), rec["replicas"][*s]["local_id"].clone()))
        .collect();
    say!("  DC 1's agent (the leader) maps {meta} -> {}", recorded.iter().map(|(s, id)| format!("{s}: {id}")).collect::<Vec<_>>().join(", "));
    ck.eq("the leader's record of the replica ids", (st, recorded), (200, local_ids.clone()))?;
    ck.that(local_ids.get("DC 1") != local_ids.get("DC 2"), || format!("different local ids per site: {local_ids:?}"))?;

    let t0 = Instant::now();
    let r = c.get(format!("{}/images/{meta}", t.url(1))).send()?;
    let (status, replica) = (r.status().as_u16(), r.headers().get("x-geomesh-replica").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned());
    let got: serde_json::Value = r.json().unwrap_or(serde_json::Value::Null);
    say!("  GET /images/{meta} at DC 2 -> {status} {got}  ({replica}'s replica, {})", ms(t0.elapsed()));
    ck.eq("read by meta-id at DC 2", (status, got["id"].as_str(), replica.as_str()), (200, Some(meta.as_str()), "DC 2"))?;

    let t0 = Instant::now();
    let r = c.patch(format!("{}/images/{meta}", t.url(1))).json(&json!({ "size": 4 })).send()?;
    let status = r.status().as_u16();
    let text = r.text()?;
    say!("  PATCH /images/{meta} {{\"size\":4}} at DC 2 -> {status} {text}  ({})", ms(t0.elapsed()));
    ck.eq("update through DC 2 (it submits to the leader)", status, 200)?;
    wait_for(Duration::from_secs(15), "the update on both replicas", || {
        Ok(app_item(t, 0, "cat.png")?.is_some_and(|x| x["size"] == 4) && app_item(t, 1, "cat.png")?.is_some_and(|x| x["size"] == 4))
    })?;
    say!("  both json-servers now hold size 4 (each under its own id); DC 3 still holds nothing");
    ck.eq("DC 3 holds nothing", app_item(t, 2, "cat.png")?.is_none(), true)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The whole demo

// ---------------------------------------------------------------------------------------------
// The InfluxDB part

/// The InfluxDB filter's configuration in the demo: Écharde's shape, cpu* on influx-b.
pub const INFLUX_CONFIG: &str = "workload_type: influxdb
default_cluster: influx-a
local_cluster: influx-a
routing_table:
  cpu: { type: prefix, cluster: influx-b }
";

/// The batch the demo writes: three measurements over two shards, one escaped name, points
/// without a timestamp (stamped once for the whole request).
const INFLUX_BATCH: &str = "cpu,host=web1 usage=0.64\ncpu_temp,host=web1 celsius=61i\nmem,host=web1 used=3.5\nmy\\ disk,host=web1 free=12i\n";

fn influx_section(m: &InfluxMesh, ck: &mut Checks) -> Result<()> {
    let c = http_client()?;
    let url = m.url();
    say!("\n== InfluxDB sharding (Écharde): one InfluxDB at {url}, 2 influxd shards ==");
    say!("the filter's configuration (an HTTP filter; influx-a is also the local cluster for /ping, SHOW USERS, ...):");
    for l in INFLUX_CONFIG.lines() {
        say!("  | {l}");
    }
    let t = Instant::now();
    let r = c.post(format!("{url}/query")).form(&[("q", "CREATE DATABASE demo")]).send()?;
    ck.eq("CREATE DATABASE through the filter", r.status().as_u16(), 200)?;
    row("CREATE DATABASE demo", "both (broadcast)", Some(t.elapsed()), "{\"results\":[{\"statement_id\":0}]}");
    let t = Instant::now();
    let r = c.post(format!("{url}/write?db=demo&precision=s")).body(INFLUX_BATCH).send()?;
    ck.eq("a batch over two shards", r.status().as_u16(), 204)?;
    row("POST /write (4 points, 4 measurements)", "split a | b", Some(t.elapsed()), "204 No Content");
    for (shard, want) in [(&m.shards[0], vec!["mem", "my disk"]), (&m.shards[1], vec!["cpu", "cpu_temp"])] {
        let got = shard.measurements("demo")?;
        ck.eq(&format!("what {} holds", shard.name), got.clone(), want.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        row(&format!("influx -port {} SHOW MEASUREMENTS", shard.port), &format!("{} directly", shard.name), None, &got.join(", "));
    }
    let t = Instant::now();
    let text = c.get(format!("{url}/query")).query(&[("db", "demo"), ("q", "SHOW MEASUREMENTS")]).send()?.text()?;
    ck.that(["cpu", "cpu_temp", "mem", "my disk"].iter().all(|n| text.contains(&format!("[\"{n}\"]"))), || format!("merged SHOW MEASUREMENTS: {text}"))?;
    row("SHOW MEASUREMENTS", "both, merged", Some(t.elapsed()), "cpu, cpu_temp, mem, my disk");
    let t = Instant::now();
    let text = c.get(format!("{url}/query")).query(&[("db", "demo"), ("q", "SELECT * FROM /.*/")]).send()?.text()?;
    let doc: serde_json::Value = serde_json::from_str(&text).with_context(|| text.clone())?;
    let series = doc["results"][0]["series"].as_array().map(Vec::len).unwrap_or(0);
    ck.eq("SELECT * FROM /.*/ series", series, 4)?;
    let times: BTreeSet<String> = doc["results"][0]["series"].as_array().into_iter().flatten().map(|s| s["values"][0][0].to_string()).collect();
    ck.eq("one timestamp for the whole batch on both shards", times.len(), 1)?;
    row("SELECT * FROM /.*/", "both, merged", Some(t.elapsed()), &format!("4 series, one time {}", times.iter().next().cloned().unwrap_or_default()));
    Ok(())
}

/// Everything running. Field order is drop order.
struct Demo {
    redis: RedisSites,
    scope: ScopeTopology,
    _scope_wan: WanLinks,
    repl: ReplicationTopology,
    influx: InfluxMesh,
    kafka: KafkaDemo,
    mqtt: MqttDemo,
}

impl Demo {
    fn procs(&mut self) -> Vec<(String, &mut Proc)> {
        let mut v = self.redis.procs();
        for s in self.scope.sites.iter_mut() {
            v.push((format!("{} envoy (scope)", s.name), s.envoy.proc()));
            v.push((format!("{} geomesh-agent", s.name), &mut s.agent));
            for (svc, p) in s.instances.iter_mut() {
                v.push((format!("{} {svc}", s.name), p));
            }
        }
        for s in self.repl.sites.iter_mut() {
            if let Some(e) = s.envoy.as_mut() {
                v.push((format!("{} envoy (replication)", s.name), e.proc()));
            }
            if let Some(a) = s.agent.as_mut() {
                v.push((format!("{} geomesh-agent (replication)", s.name), a));
            }
            if let Some(a) = s.app.as_mut() {
                v.push((format!("{} json-server", s.name), a));
            }
        }
        v.push(("envoy (influxdb)".to_owned(), self.influx.envoy.proc()));
        for s in self.influx.shards.iter_mut() {
            v.push((format!("influxd {}", s.name), &mut s.proc));
        }
        v.extend(self.kafka.procs());
        v.extend(self.mqtt.procs());
        v
    }

    /// Processes that exited on their own.
    fn dead(&mut self) -> Vec<String> {
        self.procs()
            .into_iter()
            .filter_map(|(n, p)| p.try_exit_status().map(|s| format!("{n} ({s}; log {})", p.stderr_path().display())))
            .collect()
    }

    fn wasm_failures(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(l) = self.redis.envoy.wasm_failure() {
            v.push(format!("dc1's Envoy: {l}"));
        }
        for s in &self.scope.sites {
            if let Some(l) = s.envoy.wasm_failure() {
                v.push(format!("{}'s Envoy: {l}", s.name));
            }
        }
        for s in &self.repl.sites {
            if let Some(l) = s.envoy.as_ref().and_then(Envoy::wasm_failure) {
                v.push(format!("{}'s Envoy (replication): {l}", s.name));
            }
        }
        if let Some(l) = self.influx.envoy.wasm_failure() {
            v.push(format!("the InfluxDB Envoy: {l}"));
        }
        if let Some(l) = self.kafka.mesh.envoy.wasm_failure() {
            v.push(format!("the Kafka Envoy: {l}"));
        }
        if let Some(l) = self.mqtt.mesh.envoy.wasm_failure() {
            v.push(format!("the MQTT Envoy: {l}"));
        }
        v
    }
}

fn print_table(d: &mut Demo) {
    let r = d.redis.plan.clone();
    let sp = d.scope.plan.clone();
    let mut rows: Vec<(String, String, String, u32)> = Vec::new();
    rows.push(("dc1".into(), "envoy + geomesh_filter_redis.wasm".into(), format!("redis :{}  admin :{}", r.envoy_listen, r.envoy_admin), d.redis.envoy.proc().pid()));
    for (site, b, p) in [("dc1", &r.dc1, &d.redis.bridge_dc1.proc), ("dc2", &r.dc2, &d.redis.bridge_dc2.proc)] {
        rows.push((site.into(), "geomesh-bridge".into(), format!("filters :{}  gRPC :{}  admin :{}", b.listen, b.grpc, b.admin), p.pid()));
    }
    for (s, p) in &d.redis.shards {
        rows.push((s.site.into(), format!("redis-server {}", s.name), format!(":{}", s.port), p.pid()));
    }
    for (i, s) in d.scope.sites.iter_mut().enumerate() {
        let ports = &sp.ports[i];
        if i == 0 {
            rows.push(("".into(), "-- scope-lang sites --".into(), String::new(), 0));
        }
        rows.push((s.name.clone(), "envoy + geomesh_filter_scope.wasm".into(), format!("compute :{}  image :{}  admin :{}", ports.listeners["compute"], ports.listeners["image"], ports.admin), s.envoy.proc().pid()));
        rows.push((s.name.clone(), "geomesh-agent".into(), format!(":{}", ports.agent), s.agent.pid()));
        for (svc, p) in &s.instances {
            let role = if svc == "compute" { "s" } else { "t" };
            rows.push((s.name.clone(), format!("{role} ({svc} instance)"), format!(":{}", ports.instances[svc]), p.pid()));
        }
    }
    let rp = d.repl.plan.clone();
    rows.push(("".into(), "-- replication sites --".into(), String::new(), 0));
    for (i, s) in d.repl.sites.iter_mut().enumerate() {
        let ports = &rp.ports[i];
        let pid = |p: Option<&mut Proc>| p.map(|p| p.pid()).unwrap_or(0);
        rows.push((s.name.clone(), "envoy + scope filter (http.replication)".into(), format!("image :{}  admin :{}", ports.listener, ports.admin), pid(s.envoy.as_mut().map(|e| e.proc()))));
        rows.push((s.name.clone(), "geomesh-agent (replication)".into(), format!("API :{}  proxy :{}", ports.agent, ports.proxy), pid(s.agent.as_mut())));
        rows.push((s.name.clone(), "json-server 0.17 (image instance)".into(), format!(":{}", ports.instance), pid(s.app.as_mut())));
    }
    rows.push(("".into(), "-- InfluxDB --".into(), String::new(), 0));
    let (iport, iadmin) = (d.influx.port, d.influx.envoy.admin_port());
    rows.push(("dc1".into(), "envoy + geomesh_filter_influx.wasm".into(), format!("http :{iport}  admin :{iadmin}"), d.influx.envoy.proc().pid()));
    for s in &d.influx.shards {
        rows.push(("dc1".into(), format!("influxd {}", s.name), format!(":{}", s.port), s.proc.pid()));
    }
    rows.push(("".into(), "-- Kafka --".into(), String::new(), 0));
    let kport = d.kafka.mesh.port;
    rows.push(("dc1".into(), "envoy + geomesh_filter_kafka.wasm".into(), format!("kafka :{kport}"), d.kafka.mesh.envoy.proc().pid()));
    rows.push(("dc1".into(), "geomesh-bridge (kafka)".into(), d.kafka.mesh.bridge.listen.clone(), d.kafka.mesh.bridge.proc.pid()));
    for (name, t) in [("kafka-a", &d.kafka.a), ("kafka-b", &d.kafka.b)] {
        rows.push(("dc1".into(), format!("tansu {name}"), format!(":{}", t.port), t.proc.pid()));
    }
    rows.push(("".into(), "-- MQTT --".into(), String::new(), 0));
    let mport = d.mqtt.port();
    rows.push(("dc1".into(), "envoy + geomesh_filter_mqtt.wasm".into(), format!("mqtt :{mport}"), d.mqtt.mesh.envoy.proc().pid()));
    rows.push(("dc1".into(), "geomesh-bridge (mqtt)".into(), d.mqtt.mesh.bridge.listen.clone(), d.mqtt.mesh.bridge.proc.pid()));
    for (name, b) in [("mqtt1", &d.mqtt.a), ("mqtt2", &d.mqtt.b)] {
        rows.push(("dc1".into(), format!("mosquitto {name}"), format!(":{}", b.port), b.proc.pid()));
    }
    say!("\n== what runs where (all on 127.0.0.1) ==");
    say!("  {:<6} {:<40} {:<44} pid", "site", "process", "ports");
    say!("  {:<6} -- Redis sites --", "");
    for (site, what, ports, pid) in rows {
        if pid == 0 {
            say!("  {site:<6} {what}");
        } else {
            say!("  {site:<6} {what:<40} {ports:<44} {pid}");
        }
    }
    say!(
        "  (WAN: dc1→dc2 gRPC through a relay on :{}; the scope sites reach each other through relays)",
        d.redis.wan.port()
    );
}

/// What `--check` expects a printed command to print.
enum Expect {
    /// Not run (it blocks, as SUBSCRIBE does).
    NotRun,
    Contains(&'static str),
    /// A number (redis-cli prints integers bare when its output is not a terminal).
    Integer,
}

/// A command to try: what it shows, its argv, what `--check` expects of its output.
struct Try {
    what: &'static str,
    argv: Vec<String>,
    expect: Expect,
}

fn tries(d: &Demo) -> Vec<Try> {
    let r = &d.redis.plan;
    let p = r.envoy_listen.to_string();
    let dc2 = r.shard("redis2-master").map(|s| s.port).unwrap_or(0).to_string();
    let sv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let sp = &d.scope.plan;
    let compute = format!("http://127.0.0.1:{}/compute/cat", sp.ports[0].listeners["compute"]);
    let image = format!("http://127.0.0.1:{}/image/cat?size=0", sp.ports[0].listeners["image"]);
    let agent = format!("http://127.0.0.1:{}/", sp.ports[0].agent);
    let mut v = vec![
        Try { what: "a key of user1 goes to dc2", argv: sv(&["redis-cli", "-p", &p, "set", "user1:color", "blue"]), expect: Expect::Contains("OK") },
        Try { what: "one MGET, answered by 2 sites", argv: sv(&["redis-cli", "-p", &p, "mget", "user1", "product:1", "order:1"]), expect: Expect::Contains("alice") },
        Try { what: "the union of the 3 shards", argv: sv(&["redis-cli", "-p", &p, "keys", "*"]), expect: Expect::Contains("product:1") },
        Try { what: "what dc2's shard holds (directly)", argv: sv(&["redis-cli", "-p", &dc2, "keys", "*"]), expect: Expect::Contains("user1:color") },
        Try { what: "RESP3 (HELLO 3 replayed on each shard)", argv: sv(&["redis-cli", "-3", "-p", &p, "hgetall", "user1:profile"]), expect: Expect::Contains("Alice") },
        Try { what: "subscribe through geomesh (on every shard news can be published to)", argv: sv(&["redis-cli", "-p", &p, "subscribe", "news"]), expect: Expect::NotRun },
        Try { what: "…and publish, in another terminal", argv: sv(&["redis-cli", "-p", &p, "publish", "news", "alert: fire drill"]), expect: Expect::Integer },
        Try { what: "compute at DC 1, its image call at DC 2", argv: sv(&["curl", "-s", "-H", "x-scope: { compute: DC 1, image: DC 2 }", &compute]), expect: Expect::Contains("IMAGE cat @ DC 2") },
        Try { what: "DC 3, else DC 2", argv: sv(&["curl", "-s", "-H", "x-scope: { image: DC 3 ; DC 2 }", &image]), expect: Expect::Contains("IMAGE cat @ DC 3") },
        Try { what: "the scope in W3C baggage", argv: sv(&["curl", "-s", "-H", "baggage: scope=%7B%20image%3A%20DC%202%20%7D", &image]), expect: Expect::Contains("IMAGE cat @ DC 2") },
        Try {
            what: "a replicated create at DC 1 and DC 3 (answers the meta-id)",
            argv: sv(&["curl", "-s", "-H", "x-scope: { image: DC 1 & DC 3 }", "-H", "content-type: application/json", "-d", "{\"name\":\"dog.png\"}", &format!("{}/images", d.repl.url(0))]),
            expect: Expect::Contains("\"id\":\"gm-"),
        },
        Try {
            what: "the replicants DC 1's agent leads",
            argv: sv(&["curl", "-s", &format!("{}/v1/replication/replicants", d.repl.agent_url(0))]),
            expect: Expect::Contains("\"DC 3\""),
        },
        Try { what: "DC 1's agent: sites, health, RTTs (JSON)", argv: sv(&["curl", "-s", &format!("{agent}v1/sites")]), expect: Expect::Contains("\"DC 3\"") },
        Try {
            what: "InfluxDB: the measurements of both shards, merged (the influx CLI through the filter)",
            argv: sv(&["influx", "-port", &d.influx.port.to_string(), "-database", "demo", "-execute", "SHOW MEASUREMENTS"]),
            expect: Expect::Contains("cpu_temp"),
        },
        Try {
            what: "InfluxDB: what influx-b holds (directly)",
            argv: sv(&["influx", "-port", &d.influx.shards[1].port.to_string(), "-database", "demo", "-execute", "SHOW MEASUREMENTS"]),
            expect: Expect::Contains("cpu"),
        },
        Try {
            what: "InfluxDB: a regex FROM over both shards, merged",
            argv: sv(&["curl", "-s", "-G", &format!("{}/query?db=demo", d.influx.url()), "--data-urlencode", "q=SELECT * FROM /cpu.*/"]),
            expect: Expect::Contains("\"cpu_temp\""),
        },
        Try {
            what: "Kafka: the proxy's topics and (virtual) brokers, confluent-kafka through the filter",
            argv: d.kafka.try_argv().unwrap_or_default(),
            expect: Expect::Contains("1000111"),
        },
        Try { what: "dc1's bridge counters", argv: sv(&["curl", "-s", &format!("http://127.0.0.1:{}/stats", r.dc1.admin)]), expect: Expect::Contains("remote_channels_total") },
    ];
    for (what, argv, expect) in d.mqtt.tries() {
        v.push(Try { what, argv, expect: expect.map(Expect::Contains).unwrap_or(Expect::NotRun) });
    }
    v
}

fn print_tries(d: &Demo) {
    let sp = &d.scope.plan;
    say!("\n== try it (from another terminal) ==");
    for t in tries(d) {
        let cmd = t.argv.iter().map(|a| shell_word(a)).collect::<Vec<_>>().join(" ");
        say!("  {cmd}\n      # {}", t.what);
    }
    say!("  agents' status pages: {}", (0..sp.sites.len()).map(|i| format!("http://127.0.0.1:{}/", sp.ports[i].agent)).collect::<Vec<_>>().join("  "));
    say!("    with replication:   {}", (0..d.repl.sites.len()).map(|i| format!("{}/", d.repl.agent_url(i))).collect::<Vec<_>>().join("  "));
    say!("  bridges' /stats:      http://127.0.0.1:{}/stats  http://127.0.0.1:{}/stats", d.redis.plan.dc1.admin, d.redis.plan.dc2.admin);
    say!("  Envoy admin:          http://127.0.0.1:{}/ (redis, dc1)  {}", d.redis.plan.envoy_admin, (0..sp.sites.len()).map(|i| format!("http://127.0.0.1:{}/", sp.ports[i].admin)).collect::<Vec<_>>().join("  "));
}

/// `--check`: every printed command that does not block is run and its output checked.
fn run_tries(d: &Demo, ck: &mut Checks) -> Result<()> {
    let mut n = 0;
    for t in tries(d) {
        if matches!(t.expect, Expect::NotRun) {
            continue;
        }
        let program = system_bin(&t.argv[0])?;
        let out = Command::new(program).args(&t.argv[1..]).output().with_context(|| format!("run {}", t.argv[0]))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (ok, wanted) = match t.expect {
            Expect::Contains(s) => (text.contains(s), format!("{s:?} in it")),
            Expect::Integer => (text.trim().parse::<i64>().is_ok(), "a number".to_owned()),
            Expect::NotRun => (true, String::new()),
        };
        ck.that(out.status.success() && ok, || {
            format!("`{}` ({}) printed {text:?} {}, expected {wanted}", t.argv.join(" "), out.status, String::from_utf8_lossy(&out.stderr))
        })?;
        n += 1;
    }
    say!("\nthe {n} commands above that do not block were run and gave what they describe");
    Ok(())
}

/// The three plans and a sentence about the ports they use.
struct Plans {
    redis: RedisPlan,
    scope: ScopePlan,
    repl: ReplicationPlan,
    note: String,
}

fn free_plans(note: String) -> Result<Plans> {
    Ok(Plans { redis: RedisPlan::free()?, scope: ScopePlan::free()?, repl: replication_plan(true)?, note })
}

fn choose_plans(opts: &Options) -> Result<Plans> {
    let free = free_plans;
    if opts.free_ports {
        return free("free ports (--free-ports)".into());
    }
    let (redis, scope, repl) = (RedisPlan::fixed(), ScopePlan::fixed(), replication_plan(false)?);
    let mut wanted = redis.ports();
    for p in &scope.ports {
        wanted.extend([p.admin, p.agent]);
        wanted.extend(p.listeners.values().copied());
        wanted.extend(p.instances.values().copied());
    }
    for p in &repl.ports {
        wanted.extend([p.admin, p.listener, p.agent, p.proxy, p.instance]);
    }
    let taken: Vec<u16> = wanted.iter().copied().filter(|p| !port_free(*p)).collect();
    if taken.is_empty() {
        let note = "the documented fixed ones (Redis 17100-17222, scope-lang 18100-18312, replication 19100-19312)".into();
        return Ok(Plans { redis, scope, repl, note });
    }
    let list = taken.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
    free(format!("free ones (some fixed ones are in use: {list})"))
}

/// Starts the three parts at once (Redis and replication on threads); whatever started is
/// stopped (dropped) if another part failed.
fn start_all(dir: &TestDir, repl_dir: &TestDir, plans: Plans) -> Result<Demo> {
    let Plans { redis: rplan, scope: mut splan, repl: pplan, .. } = plans;
    // Agents every 300 ms and filters every 150 ms: the failovers below show within a second.
    splan.interval_ms = 300;
    splan.tick_ms = 150;
    let scope_wan = WanLinks::install(&mut splan)?;
    for (a, b, d) in SCOPE_DELAYS {
        scope_wan.set_delay(a, b, Duration::from_millis(d));
    }
    let (redis, scope, repl) = std::thread::scope(|s| {
        let redis = s.spawn(|| RedisSites::start(dir, rplan));
        let repl = s.spawn(|| ReplicationTopology::start(repl_dir, pplan));
        let scope = ScopeTopology::start(dir, splan, EnvoyOptions::default());
        let redis = redis.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        let repl = repl.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        (redis, scope, repl)
    });
    let influx = InfluxMesh::start(dir, 2, INFLUX_CONFIG);
    let kafka = KafkaDemo::start(dir);
    let mqtt = MqttDemo::start(dir);
    match (redis, scope, repl, influx, kafka) {
        (Ok(redis), Ok(scope), Ok(repl), Ok(influx), Ok(kafka)) => match mqtt {
            Ok(mqtt) => Ok(Demo { redis, scope, _scope_wan: scope_wan, repl, influx, kafka, mqtt }),
            Err(e) => Err(e.context("starting the MQTT brokers")),
        },
        (_, _, _, _, Err(e)) => Err(e.context("starting the Kafka shards")),
        (_, _, _, Err(e), _) => Err(e.context("starting the InfluxDB shards")),
        (Err(e), _, _, _, _) => Err(e.context("starting the Redis sites")),
        (_, Err(e), _, _, _) => Err(e.context("starting the scope-lang sites")),
        (_, _, Err(e), _, _) => Err(e.context("starting the replication sites")),
    }
}

/// A start-up failure because another program took one of our ports first.
fn port_clash(e: &anyhow::Error) -> bool {
    format!("{e:#}").to_ascii_lowercase().contains("address already in use")
}

fn run_demo(opts: &Options, dir: &TestDir, repl_dir: &TestDir) -> Result<()> {
    let t_all = Instant::now();
    say!("geomesh demo, on 127.0.0.1: Redis sharding over 2 sites, scope-lang over 3 sites, replication over 3 sites, InfluxDB over 2 shards, Kafka over 2 shards, MQTT over 2 brokers");
    say!("logs and generated configs: {} and {}", dir.path().display(), repl_dir.path().display());
    let mut plans = choose_plans(opts)?;
    let t0 = Instant::now();
    let mut attempt = 1;
    let mut demo = loop {
        say!("ports: {}", plans.note);
        say!("starting 38 processes (Redis 6, scope-lang 12, replication 9, InfluxDB 3, Kafka 4, MQTT 4; Envoy compiles each .wasm) ...");
        match start_all(dir, repl_dir, plans) {
            Ok(d) => break d,
            Err(e) if attempt < 3 && port_clash(&e) && !stop_requested() => {
                esay!("geomesh-demo: another program took one of the ports meanwhile; starting again on other ports
  ({:#})", e.root_cause());
                attempt += 1;
                plans = free_plans("free ones (chosen again after a port was taken)".into())?;
                // The replication agents' stores of the failed start go too.
                for e in std::fs::read_dir(repl_dir.path())?.flatten() {
                    if e.file_name().to_string_lossy().starts_with("agent-data-") {
                        std::fs::remove_dir_all(e.path())?;
                    }
                }
            }
            Err(e) => return Err(e),
        }
    };
    checkpoint()?;
    let started = t0.elapsed();
    say!("everything started in {:.1} s", started.as_secs_f64());

    let mut ck = Checks::default();
    let t1 = Instant::now();
    redis_section(&demo.redis, &mut ck)?;
    let t_redis = t1.elapsed();
    checkpoint()?;
    let t2 = Instant::now();
    scope_section(&mut demo.scope, &mut ck)?;
    let t_scope = t2.elapsed();
    checkpoint()?;
    let t3 = Instant::now();
    replication_section(&demo.repl, &mut ck)?;
    let t_repl = t3.elapsed();
    checkpoint()?;
    influx_section(&demo.influx, &mut ck)?;
    checkpoint()?;
    kafka_section(&demo.kafka, |what, ok, detail| ck.that(ok, || format!("{what}: {detail}")), row)?;
    checkpoint()?;
    mqtt_section(&demo.mqtt, |what, ok, detail| ck.that(ok, || format!("{what}: {detail}")), row)?;
    let failures = demo.wasm_failures();
    ck.that(failures.is_empty(), || format!("a Wasm VM failed: {}", failures.join("; ")))?;
    let dead = demo.dead();
    ck.that(dead.is_empty(), || format!("processes exited: {}", dead.join("; ")))?;

    print_table(&mut demo);
    print_tries(&demo);
    if opts.check {
        run_tries(&demo, &mut ck)?;
    }
    say!(
        "\nall {} checks passed (start {:.1} s, Redis traffic {:.1} s, scope traffic {:.1} s, replication {:.1} s, total {:.1} s)",
        ck.passed,
        started.as_secs_f64(),
        t_redis.as_secs_f64(),
        t_scope.as_secs_f64(),
        t_repl.as_secs_f64(),
        t_all.elapsed().as_secs_f64()
    );
    if !opts.check {
        match opts.duration {
            Some(d) => say!("serving for {:.0} s (or until Ctrl-C)", d.as_secs_f64()),
            None => say!("serving until Ctrl-C (SIGINT), SIGTERM or SIGHUP"),
        }
        let t_serve = Instant::now();
        let mut last_dead = 0;
        while !stop_requested() && opts.duration.is_none_or(|d| t_serve.elapsed() < d) {
            std::thread::sleep(Duration::from_millis(100));
            let dead = demo.dead();
            if dead.len() > last_dead {
                esay!("geomesh-demo: warning: exited on its own: {}", dead.join("; "));
                last_dead = dead.len();
            }
        }
    }
    say!("stopping every process ...");
    let t_stop = Instant::now();
    drop(demo);
    say!("stopped in {:.1} s", t_stop.elapsed().as_secs_f64());
    Ok(())
}

/// The `geomesh-demo` entry point.
pub fn main() -> ExitCode {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            if std::env::args().any(|a| a == "-h" || a == "--help") {
                say!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            esay!("geomesh-demo: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = install_signal_handlers() {
        esay!("geomesh-demo: {e:#}");
        return ExitCode::FAILURE;
    }
    let (dir, repl_dir) = match (TestDir::new("demo"), TestDir::new("demo-replication")) {
        (Ok(d), Ok(r)) => (d, r),
        (Err(e), _) | (_, Err(e)) => {
            esay!("geomesh-demo: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = run_demo(&opts, &dir, &repl_dir);
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Interrupted>().is_some() || (stop_requested() && !opts.check) => {
            esay!("geomesh-demo: stopped during start-up or traffic; every process is stopped");
            ExitCode::from(130)
        }
        Err(e) => {
            dir.keep();
            repl_dir.keep();
            esay!("\ngeomesh-demo: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    };
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let p = |a: &[&str]| Options::parse(a.iter().map(|s| s.to_string()));
        assert_eq!(p(&[]).unwrap(), Options::default());
        let o = p(&["--check", "--free-ports", "--duration", "2.5"]).unwrap();
        assert!(o.check && o.free_ports);
        assert_eq!(o.duration, Some(Duration::from_millis(2500)));
        assert!(p(&["--duration"]).is_err());
        assert!(p(&["--duration", "-1"]).is_err());
        assert!(p(&["--bogus"]).is_err());
    }

    #[test]
    fn plans_and_configs() {
        let r = RedisPlan::fixed();
        let ports = r.ports();
        assert_eq!(ports.len(), ports.iter().collect::<BTreeSet<_>>().len(), "distinct ports");
        let t = r.table().unwrap();
        let at = |k: &str| t.cluster_name(t.route(k.as_bytes())).to_owned();
        assert_eq!(at("user1"), "redis2-master");
        assert_eq!(at("{user1}:session"), "redis2-master");
        let hashed: BTreeSet<String> = (0..20).map(|i| at(&format!("product:{i}"))).collect();
        assert_eq!(hashed, ["redis1-master".to_owned(), "redis3-master".into()].into());
        let dc1 = r.bridge_config("dc1", 4242);
        assert!(dc1.contains("redis2-master: { site: dc2 }"), "{dc1}");
        assert!(dc1.contains("dc2: { grpc: \"http://127.0.0.1:4242\" }"), "{dc1}");
        let dc2 = r.bridge_config("dc2", 0);
        assert!(dc2.contains("redis2-master: { address: 127.0.0.1:17222 }") && !dc2.contains("sites:"), "{dc2}");
        assert_eq!(shell_word("x-scope: { image: DC 2 }"), "'x-scope: { image: DC 2 }'");
        assert_eq!(shell_word("http://127.0.0.1:1/a?b=c"), "'http://127.0.0.1:1/a?b=c'");
        assert_eq!(shell_word("user1:color"), "user1:color");
        assert_eq!(show(&Value::Array(vec![Value::Nil, Value::BulkString(b"a".to_vec()), Value::Int(2)])), "[(nil), \"a\", (integer) 2]");
    }
}
