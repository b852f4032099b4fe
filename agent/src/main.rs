//! `geomesh-agent --config agent.yaml`: see README.md.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use geomesh_agent::{Agent, AgentConfig};

/// geomesh per-site agent: heartbeats, RTT, service probes, /v1/sites.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (YAML).
    #[arg(short, long)]
    config: PathBuf,
    /// Override `listen` from the file (host:port).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GEOMESH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let mut config = AgentConfig::load(&args.config)?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let agent = Agent::start(&config).await?;
        tokio::select! {
            r = agent.wait() => r,
            _ = shutdown() => {
                tracing::info!("geomesh-agent stopping");
                Ok(())
            }
        }
    })
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
