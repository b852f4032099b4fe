//! `geomesh-agent --config FILE [--check] [--listen ADDR] [--log-format text|json] [--watch-tls S]`
//! `geomesh-agent --probe HOST:PORT` (container health check: `GET /healthz` on the API)
//!
//! The same command-line conventions as geomesh-bridge (`geomesh-cli`); see README.md. Logs go
//! to stderr, filtered by RUST_LOG (or GEOMESH_LOG; default `info`). SIGHUP, or with
//! `--watch-tls` a change of their bytes, reads the TLS files between agents again (a renewed
//! certificate, without a restart); SIGTERM or Ctrl-C stops.

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
    /// Every S seconds, read the `tls` files again if their bytes changed (a Secret renewed by
    /// cert-manager, which cannot send SIGHUP); 0 = only on SIGHUP.
    #[arg(long, value_name = "S", default_value_t = 0)]
    watch_tls: u64,
}

/// The bytes of the `tls` files, for --watch-tls (`None` without `tls` or when one is missing).
fn tls_bytes(config: &AgentConfig) -> Option<Vec<u8>> {
    let t = config.tls.as_ref()?;
    let mut all = Vec::new();
    for p in [&t.cert, &t.key, &t.ca] {
        all.extend(std::fs::read(p).ok()?);
        all.push(0);
    }
    Some(all)
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
            "{}: valid (site {}, {} peers over {}, {} services, replication {})",
            path.display(),
            config.site,
            config.peers.len(),
            if config.tls.is_some() { "TLS" } else { "plain HTTP" },
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
    let watch_secs = args.watch_tls;
    let r = rt.block_on(async move {
        let mut agent = Agent::start(&config).await?;
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut seen = tls_bytes(&config);
        let watch = std::time::Duration::from_secs(watch_secs.max(1));
        loop {
            let why = tokio::select! {
                r = agent.wait() => return r,
                _ = shutdown() => {
                    tracing::info!("geomesh-agent stopping");
                    return Ok(());
                }
                _ = hup.recv() => "SIGHUP",
                _ = tokio::time::sleep(watch), if watch_secs > 0 && config.tls.is_some() => {
                    let now = tls_bytes(&config);
                    if now.is_none() || now == seen {
                        continue;
                    }
                    "the TLS files changed"
                }
            };
            seen = tls_bytes(&config);
            match agent.reload_tls() {
                Ok(()) => tracing::info!(why, "TLS files read again"),
                Err(e) => tracing::error!(why, error = %format!("{e:#}"), "TLS files not reloaded, the previous ones stay"),
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
