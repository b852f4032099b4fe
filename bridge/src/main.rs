//! `geomesh-bridge --config FILE [--check] [--threads N] [--log-format text|json] [--watch-config S]`
//! `geomesh-bridge --probe HOST:PORT` (container health check: `GET /ready` on the admin port)
//!
//! The flags shared with geomesh-agent come from `geomesh-cli`. Runs a bridge
//! (docs/bridge-protocol.md). Once every listener is bound it prints one line on stdout,
//! `geomesh-bridge ready site=S listen=A grpc=A|- admin=A|-`, with the real addresses (port 0
//! in the config picks a free port). SIGHUP, or with `--watch-config` a changed file, reloads
//! the config file (new channels use it; TLS files are read again). SIGTERM or SIGINT drains (`Bridge::drain`: no new connections, open ones go on for
//! `defaults.drain_timeout_ms`, then are cut) and exits 0; a second signal during the drain
//! stops at once. Logs go to stderr, filtered by RUST_LOG (default `info`), as text or as one
//! JSON object per line (`--log-format json` or `GEOMESH_LOG_FORMAT=json`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use geomesh_bridge::{Bridge, Config};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

#[derive(Parser, Debug)]
#[command(
    name = "geomesh-bridge",
    version,
    about = "geomesh bridge: backend connections, timers and inter-site tunnels for geomesh Proxy-Wasm filters (GMB/1)"
)]
struct Cli {
    /// The configuration file (YAML).
    #[arg(short, long, required_unless_present = "probe")]
    config: Option<PathBuf>,
    #[command(flatten)]
    common: geomesh_cli::Common,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Re-read the configuration file every SECONDS and reload it when its content changed (as
    /// SIGHUP does): a Kubernetes ConfigMap volume or a cert-manager Secret is updated in place,
    /// without a signal. 0 = off.
    #[arg(long, value_name = "SECONDS", env = "GEOMESH_WATCH_CONFIG", default_value_t = 0)]
    watch_config: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(addr) = &cli.common.probe {
        return geomesh_cli::probe("geomesh-bridge", addr, "/ready");
    }
    let Some(path) = cli.config.clone() else {
        eprintln!("geomesh-bridge: --config is required");
        return ExitCode::FAILURE;
    };
    geomesh_cli::init_logs(cli.common.log_format, &["RUST_LOG"]);
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("geomesh-bridge: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.common.check {
        println!(
            "{}: valid (site {}, {} clusters, {} sites)",
            path.display(),
            config.site,
            config.clusters.len(),
            config.sites.len()
        );
        return ExitCode::SUCCESS;
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("geomesh-bridge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(path, config, cli.watch_config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("geomesh-bridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What --watch-config compares: the configuration file's bytes, then those of the TLS files it
/// names (a renewed certificate changes them without touching the configuration).
fn watched_bytes(path: &std::path::Path) -> Option<Vec<u8>> {
    let mut bytes = std::fs::read(path).ok()?;
    if let Ok(Some(tls)) = Config::load(path).map(|c| c.tls) {
        for f in [&tls.cert, &tls.key, &tls.ca] {
            bytes.extend(std::fs::read(f).unwrap_or_default());
        }
    }
    Some(bytes)
}

/// Reloads `path` into `bridge`, keeping the configuration in force when it does not load.
fn reload(bridge: &Bridge, path: &std::path::Path) {
    match Config::load(path) {
        Ok(c) => {
            if let Err(e) = bridge.reload(c) {
                error!("reload: {e:#}");
            }
        }
        Err(e) => error!("reload: keeping the configuration in force: {e}"),
    }
}

async fn run(path: PathBuf, config: Config, watch_secs: u64) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let site = config.site.clone();
    let bridge = Bridge::start(config).await?;
    let show = |a: Option<std::net::SocketAddr>| a.map_or_else(|| "-".to_owned(), |a| a.to_string());
    println!(
        "geomesh-bridge ready site={site} listen={} grpc={} admin={}",
        bridge.listen,
        show(bridge.grpc),
        show(bridge.admin)
    );
    let _ = std::io::stdout().flush();
    // The file as last loaded, for --watch-config.
    let mut seen = watched_bytes(&path);
    let watch = Duration::from_secs(watch_secs.max(1));
    loop {
        tokio::select! {
            _ = hup.recv() => {
                seen = watched_bytes(&path);
                reload(&bridge, &path);
            }
            _ = tokio::time::sleep(watch), if watch_secs > 0 => {
                let now = watched_bytes(&path);
                if now.is_some() && now != seen {
                    info!("configuration or TLS files changed: reloading (the gRPC server's own certificate changes at the next start)");
                    seen = now;
                    reload(&bridge, &path);
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let timeout = Duration::from_millis(u64::from(
        bridge.shared().snapshot().config.defaults.drain_timeout_ms,
    ));
    info!(timeout_ms = timeout.as_millis() as u64, "stop signal: draining");
    tokio::select! {
        _ = bridge.drain(timeout) => {}
        _ = term.recv() => warn!("second stop signal: stopping now"),
        _ = int.recv() => warn!("second stop signal: stopping now"),
    }
    bridge.shutdown();
    info!("stopped");
    Ok(())
}
