//! `geomesh-bridge --config FILE [--check] [--threads N] [--log-format text|json]`
//! `geomesh-bridge --probe HOST:PORT` (container health check: `GET /ready` on the admin port)
//!
//! Runs a bridge (docs/bridge-protocol.md). Once every listener is bound it prints one line on
//! stdout, `geomesh-bridge ready site=S listen=A grpc=A|- admin=A|-`, with the real addresses
//! (port 0 in the config picks a free port). SIGHUP reloads the config file (new channels use
//! it). SIGTERM or SIGINT drains (`Bridge::drain`: no new connections, open ones go on for
//! `defaults.drain_timeout_ms`, then are cut) and exits 0; a second signal during the drain
//! stops at once. Logs go to stderr, filtered by RUST_LOG (default `info`), as text or as one
//! JSON object per line (`--log-format json` or `GEOMESH_LOG_FORMAT=json`).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use geomesh_bridge::{Bridge, Config};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// `2026-01-01T00:00:00.000000Z  INFO geomesh_bridge: message key=value` (colours on a tty).
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's fields
    /// at the top level (what log shippers such as Fluent Bit, Vector or Loki's promtail parse).
    Json,
}

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
    /// Validate the configuration, print the result, and exit (status 0 if valid).
    #[arg(long)]
    check: bool,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Health probe for container runtimes without curl (Docker HEALTHCHECK): GET /ready on the
    /// admin endpoint at HOST:PORT; exit 0 if it answers 200 within 2 s, else 1.
    #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["config", "check"])]
    probe: Option<String>,
    /// Log format on stderr (the level filter is RUST_LOG, default `info`).
    #[arg(long, value_enum, env = "GEOMESH_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(addr) = &cli.probe {
        return probe(addr);
    }
    let Some(path) = cli.config.clone() else {
        eprintln!("geomesh-bridge: --config is required");
        return ExitCode::FAILURE;
    };
    init_logs(cli.log_format);
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("geomesh-bridge: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.check {
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
    match rt.block_on(run(path, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("geomesh-bridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--probe`: one `GET /ready`, status 200 or failure, within 2 s in all.
fn probe(addr: &str) -> ExitCode {
    use std::io::Read as _;
    use std::net::ToSocketAddrs as _;
    let timeout = Duration::from_secs(2);
    let result = (|| -> std::io::Result<String> {
        let sa = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{addr}: no address")))?;
        let mut s = std::net::TcpStream::connect_timeout(&sa, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(b"GET /ready HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")?;
        let mut buf = Vec::new();
        s.take(4096).read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    })();
    match result {
        Ok(text) if text.starts_with("HTTP/1.1 200") => ExitCode::SUCCESS,
        Ok(text) => {
            let status = text.lines().next().unwrap_or_default();
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b.trim()).unwrap_or_default();
            eprintln!("geomesh-bridge --probe {addr}: {status} {body}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("geomesh-bridge --probe {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: PathBuf, config: Config) -> anyhow::Result<()> {
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
    loop {
        tokio::select! {
            _ = hup.recv() => match Config::load(&path) {
                Ok(c) => {
                    if let Err(e) = bridge.reload(c) {
                        error!("reload: {e:#}");
                    }
                }
                Err(e) => error!("reload: keeping the configuration in force: {e}"),
            },
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
