//! `geomesh-bridge --config FILE [--check] [--threads N]`
//!
//! Runs a bridge (docs/bridge-protocol.md). Once every listener is bound it prints one line on
//! stdout, `geomesh-bridge ready site=S listen=A grpc=A|- admin=A|-`, with the real addresses
//! (port 0 in the config picks a free port). SIGHUP reloads the config file (new channels use
//! it); SIGTERM and SIGINT stop the bridge. Logs go to stderr, filtered by RUST_LOG (default
//! `info`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use geomesh_bridge::{Bridge, Config};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

#[derive(Parser, Debug)]
#[command(
    name = "geomesh-bridge",
    version,
    about = "geomesh bridge: backend connections, timers and inter-site tunnels for geomesh Proxy-Wasm filters (GMB/1)"
)]
struct Cli {
    /// The configuration file (YAML).
    #[arg(short, long)]
    config: PathBuf,
    /// Validate the configuration, print the result, and exit (status 0 if valid).
    #[arg(long)]
    check: bool,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("geomesh-bridge: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.check {
        println!(
            "{}: valid (site {}, {} clusters, {} sites)",
            cli.config.display(),
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
    match rt.block_on(run(cli.config, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("geomesh-bridge: {e:#}");
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
    info!("stopping");
    bridge.shutdown();
    Ok(())
}
