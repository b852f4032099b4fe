//! `geomesh-agent --config FILE [--check] [--listen ADDR] [--log-format text|json]`
//! `geomesh-agent --probe HOST:PORT` (container health check: `GET /healthz` on the API)
//!
//! The same command-line conventions as geomesh-bridge (`geomesh-cli`); see README.md. Logs go
//! to stderr, filtered by RUST_LOG (or GEOMESH_LOG; default `info`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use geomesh_agent::{Agent, AgentConfig};

/// geomesh per-site agent: heartbeats, RTT, service probes, /v1/sites, replication.
#[derive(Parser, Debug)]
#[command(name = "geomesh-agent", version, about)]
struct Args {
    /// Configuration file (YAML).
    #[arg(short, long, required_unless_present = "probe")]
    config: Option<PathBuf>,
    #[command(flatten)]
    common: geomesh_cli::Common,
    /// Override `listen` from the file (host:port).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(addr) = &args.common.probe {
        return geomesh_cli::probe("geomesh-agent", addr, "/healthz");
    }
    let Some(path) = args.config.clone() else {
        eprintln!("geomesh-agent: --config is required");
        return ExitCode::FAILURE;
    };
    geomesh_cli::init_logs(args.common.log_format, &["RUST_LOG", "GEOMESH_LOG"]);
    let mut config = match AgentConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("geomesh-agent: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if args.common.check {
        println!(
            "{}: valid (site {}, {} peers, {} services, replication {})",
            path.display(),
            config.site,
            config.peers.len(),
            config.services.len(),
            if config.replication.is_some() { "on" } else { "off" }
        );
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("geomesh-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(async move {
        let agent = Agent::start(&config).await?;
        tokio::select! {
            r = agent.wait() => r,
            _ = shutdown() => {
                tracing::info!("geomesh-agent stopping");
                Ok(())
            }
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("geomesh-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
