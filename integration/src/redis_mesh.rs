//! The Redis sharding topology: real `redis-server` shards, a real `geomesh-bridge` and a real
//! Envoy whose listener runs `geomesh_filter_redis.wasm` (V8) then `tcp_proxy` to the bridge.
//!
//! ```text
//! client ─▶ Envoy :port [wasm redis filter ─ tcp_proxy] ─GMB/1 (Unix socket)─▶ geomesh-bridge ─▶ redis-server per cluster
//! ```
//!
//! The filter configuration is given as text (the Écharde YAML); cluster names in it must be
//! shard names given to [`RedisMesh::start`]. With [`MeshOptions::ecds`] the filter's
//! configuration comes from an ECDS file, which [`RedisMesh::set_filter_config`] rewrites.

use std::cell::Cell;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::envoy::{
    ecds_network_filter, static_cluster, tcp_listener, tcp_proxy_filter, wasm_network_filter,
    wasm_network_typed_config, write_ecds, EnvoyOptions, WASM_NETWORK_TYPE,
};
use crate::paths::wasm_path;
use crate::ports::free_port;
use crate::process::{Proc, TestDir};
use crate::{Envoy, EnvoyConfig, Redis, WasmPlugin};

pub use crate::bridge::{bridge_cluster, Bridge};

/// The filter's plugin name (Envoy logs it as `wasm log geomesh_redis ...`).
pub const PLUGIN: &str = "geomesh_redis";
/// The name of the ECDS resource when the filter is configured by ECDS.
pub const ECDS_NAME: &str = "geomesh.redis";

/// How to build a [`RedisMesh`].
#[derive(Clone, Debug)]
pub struct MeshOptions {
    /// Shard (cluster) names; one redis-server each.
    pub shards: Vec<String>,
    /// The filter configuration (YAML).
    pub filter_config: String,
    /// Configure the filter through an ECDS file instead of inline.
    pub ecds: bool,
    /// Extra `redis-server` arguments for every shard.
    pub redis_args: Vec<String>,
    /// Extra `redis-server` arguments for one shard (name, args), after `redis_args`.
    pub shard_args: Vec<(String, Vec<String>)>,
    pub envoy: EnvoyOptions,
    /// Bootstrap `stats_config` (e.g. [`crate::envoy::geomesh_stats_tags`]).
    pub stats_config: Option<serde_json::Value>,
    /// Which filter serves the listener.
    pub shell: Shell,
}

thread_local! {
    /// The shell of the meshes made on this thread (a test runs on its own thread).
    static TEST_SHELL: Cell<Shell> = const { Cell::new(Shell::Wasm) };
}

/// Makes the meshes this thread starts from now on use `shell` (see [`native_shell_too!`]).
pub fn set_test_shell(shell: Shell) {
    TEST_SHELL.with(|s| s.set(shell));
}

/// Runs the named tests of this file a second time through the native shell, as
/// `native_shell::<name>`: each sets [`Shell::Native`] on its thread, then calls the test.
#[macro_export]
macro_rules! native_shell_too {
    ($($test:ident),* $(,)?) => {
        /// The same tests through the native shell (`native/`, the bridge in-process).
        mod native_shell {
            $(
                #[test]
                fn $test() {
                    $crate::redis_mesh::set_test_shell($crate::redis_mesh::Shell::Native);
                    super::$test();
                }
            )*
        }
    };
}

/// The filter a [`RedisMesh`] runs: the Wasm filter in V8 with `tcp_proxy` to the bridge
/// process, or the native shell (`native/`, an Envoy dynamic module) with its bridge
/// in-process (started from a bridge configuration of the same shards; the bridge process is
/// started too, and unused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Shell {
    #[default]
    Wasm,
    Native,
}

impl MeshOptions {
    pub fn new(shards: &[&str], filter_config: &str) -> Self {
        MeshOptions {
            shards: shards.iter().map(|s| s.to_string()).collect(),
            filter_config: filter_config.to_owned(),
            ecds: false,
            redis_args: Vec::new(),
            shard_args: Vec::new(),
            envoy: EnvoyOptions::default(),
            stats_config: None,
            shell: TEST_SHELL.with(Cell::get),
        }
    }

    /// The same mesh with the native shell.
    pub fn native(mut self) -> Self {
        self.shell = Shell::Native;
        self
    }
}

/// Shards, bridge and Envoy, all running; stopped on drop.
pub struct RedisMesh {
    // Field order = drop order: Envoy first, then the bridge, then the shards.
    pub envoy: Envoy,
    pub bridge: Bridge,
    pub shards: Vec<(String, Redis)>,
    /// The Envoy listener clients connect to.
    pub port: u16,
    pub ecds_file: Option<PathBuf>,
    pub dir: TestDir,
    plugin_wasm: PathBuf,
    /// `redis-server` arguments per shard, for restarts.
    shard_extra: Vec<(String, Vec<String>)>,
}

impl RedisMesh {
    pub fn start(name: &str, shards: &[&str], filter_config: &str) -> Result<RedisMesh> {
        Self::start_with(name, MeshOptions::new(shards, filter_config))
    }

    pub fn start_with(name: &str, opts: MeshOptions) -> Result<RedisMesh> {
        let dir = TestDir::new(name)?;
        let mut shards = Vec::new();
        let mut shard_extra = Vec::new();
        for s in &opts.shards {
            let mut args: Vec<String> = opts.redis_args.clone();
            for (name, extra) in &opts.shard_args {
                if name == s {
                    args.extend(extra.iter().cloned());
                }
            }
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            shards.push((s.clone(), Redis::start_with_args(&dir, s, &a)?));
            shard_extra.push((s.clone(), args));
        }
        let clusters: Vec<(&str, u16)> = shards.iter().map(|(n, r)| (n.as_str(), r.port)).collect();
        let bridge = Bridge::start_unix(&dir, "bridge", &clusters)?;
        let wasm = wasm_path("geomesh_filter_redis")?;
        let port = free_port()?;
        let plugin = WasmPlugin::new(PLUGIN, "", wasm.clone(), opts.filter_config.clone());
        let mut ecds_file = None;
        let filter = if opts.ecds {
            let f = dir.join("ecds/redis-filter.yaml");
            std::fs::create_dir_all(dir.join("ecds"))?;
            write_ecds(&f, ECDS_NAME, &wasm_network_typed_config(&plugin))?;
            let v = ecds_network_filter(ECDS_NAME, &f, WASM_NETWORK_TYPE);
            ecds_file = Some(f);
            v
        } else {
            wasm_network_filter(&plugin)
        };
        let filters = match opts.shell {
            Shell::Wasm => vec![filter, tcp_proxy_filter("redis_in", "geomesh_bridge")],
            Shell::Native => {
                let bridge_config = crate::native::bridge_config(&dir, "native-bridge", &clusters)?;
                vec![crate::native::network_filter(&bridge_config, &opts.filter_config)]
            }
        };
        let mut cfg = EnvoyConfig::new()?
            .listener(tcp_listener("redis_in", port, filters))
            .cluster(bridge_cluster("geomesh_bridge", &bridge));
        for (n, r) in &shards {
            cfg = cfg.cluster(static_cluster(n, &[r.port]));
        }
        cfg.stats_config = opts.stats_config.clone();
        let envoy_opts = match opts.shell {
            Shell::Wasm => opts.envoy.clone(),
            Shell::Native => crate::native::with_module(opts.envoy.clone())?,
        };
        let envoy = Envoy::start_with(&dir, "envoy", &cfg, &envoy_opts)?;
        let mesh = RedisMesh {
            envoy,
            bridge,
            shards,
            port,
            ecds_file,
            dir,
            plugin_wasm: wasm,
            shard_extra,
        };
        mesh.wait_listener()?;
        Ok(mesh)
    }

    fn wait_listener(&self) -> Result<()> {
        crate::process::wait_tcp(self.port, Duration::from_secs(20))
    }

    /// The redis-server of shard `name`.
    pub fn shard(&self, name: &str) -> &Redis {
        match self.shards.iter().find(|(n, _)| n == name) {
            Some((_, r)) => r,
            None => panic!("no shard {name}"),
        }
    }

    pub fn shard_mut(&mut self, name: &str) -> &mut Redis {
        match self.shards.iter_mut().find(|(n, _)| n == name) {
            Some((_, r)) => r,
            None => panic!("no shard {name}"),
        }
    }

    /// Starts shard `name` again on its port (stopping it first if it still runs), empty, with
    /// the arguments it was first started with; waits until it answers PING.
    pub fn restart_shard(&mut self, name: &str) -> Result<()> {
        let args = self
            .shard_extra
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        let dir = self.dir.clone();
        let r = self.shard_mut(name);
        if r.proc.is_running() {
            r.proc.stop()?;
        }
        let port = r.port;
        let wd = dir.join(name);
        let mut cmd = Command::new(crate::paths::system_bin("redis-server")?);
        cmd.args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(&wd)
            .args(&args);
        let mut proc = Proc::spawn(&dir, &format!("{name}-restarted"), cmd)?;
        proc.wait_until(
            Duration::from_secs(10),
            &format!("{name} PONG on {port} after restart"),
            || Ok(redis_cli(port, &["PING"]).is_ok_and(|(out, _, ok)| ok && out.trim() == "PONG")),
        )?;
        r.proc = proc;
        Ok(())
    }

    /// `redis://127.0.0.1:<envoy port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A `redis` crate connection through Envoy.
    pub fn client(&self) -> Result<redis::Connection> {
        connect(&self.url())
    }

    /// A `redis` crate connection straight to shard `name`.
    pub fn direct(&self, name: &str) -> Result<redis::Connection> {
        connect(&self.shard(name).url())
    }

    /// Rewrites the ECDS file with a new filter configuration (mesh started with `ecds`).
    pub fn set_filter_config(&self, yaml: &str) -> Result<()> {
        let Some(f) = &self.ecds_file else {
            bail!("the mesh was not started with ECDS")
        };
        let plugin = WasmPlugin::new(PLUGIN, "", self.plugin_wasm.clone(), yaml);
        write_ecds(f, ECDS_NAME, &wasm_network_typed_config(&plugin))
    }

    /// `redis-cli -p <envoy port> args...`: (stdout, stderr, success).
    pub fn cli(&self, args: &[&str]) -> Result<(String, String, bool)> {
        redis_cli(self.port, args)
    }
}

/// A `redis` crate connection with 10 s timeouts.
pub fn connect(url: &str) -> Result<redis::Connection> {
    let client = redis::Client::open(url).with_context(|| format!("client for {url}"))?;
    let con = client
        .get_connection_with_timeout(Duration::from_secs(10))
        .with_context(|| format!("connect {url}"))?;
    con.set_read_timeout(Some(Duration::from_secs(10)))?;
    con.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(con)
}

/// Runs `redis-cli -p port args...`: (stdout, stderr, success).
pub fn redis_cli(port: u16, args: &[&str]) -> Result<(String, String, bool)> {
    let out = Command::new(crate::paths::system_bin("redis-cli")?)
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .context("run redis-cli")?;
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    ))
}

/// The configuration string of the first Wasm network filter of an Envoy bootstrap file (an
/// example under `examples/`), exactly as written there.
pub fn wasm_filter_config_of(bootstrap_yaml: &str) -> Result<String> {
    let v: Value = serde_yaml_ng::from_str(bootstrap_yaml)?;
    let listeners = v["static_resources"]["listeners"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for l in listeners {
        for chain in l["filter_chains"].as_array().cloned().unwrap_or_default() {
            for f in chain["filters"].as_array().cloned().unwrap_or_default() {
                if f["name"] == "envoy.filters.network.wasm" {
                    if let Some(s) = f["typed_config"]["config"]["configuration"]["value"].as_str()
                    {
                        return Ok(s.to_owned());
                    }
                }
            }
        }
    }
    bail!("no envoy.filters.network.wasm with a configuration in this bootstrap")
}
