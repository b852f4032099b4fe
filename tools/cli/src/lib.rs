//! The command-line conventions geomesh-bridge and geomesh-agent share, so that an operator
//! runs both the same way:
//!
//! * `--config FILE`, `--check` (validate, print, exit 0 if valid);
//! * `--log-format text|json` (or `GEOMESH_LOG_FORMAT`), logs on stderr, level filter from
//!   `RUST_LOG` (default `info`);
//! * `--probe HOST:PORT`: the container health check for images without a shell or curl
//!   (distroless): one `GET` of the binary's health path, exit 0 on 200 within 2 s.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `2026-01-01T00:00:00.000000Z  INFO geomesh_bridge: message key=value` (colours on a tty).
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's fields
    /// at the top level (what log shippers such as Fluent Bit, Vector or Loki's promtail parse).
    Json,
}

/// The flags both binaries take (flattened into each one's own `clap` parser).
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Validate the configuration, print the result, and exit (status 0 if valid).
    #[arg(long)]
    pub check: bool,
    /// Health probe for container runtimes without curl (Docker HEALTHCHECK): GET the health
    /// path on HOST:PORT; exit 0 if it answers 200 within 2 s, else 1.
    #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["config", "check"])]
    pub probe: Option<String>,
    /// Log format on stderr (the level filter is RUST_LOG, default `info`).
    #[arg(long, value_enum, env = "GEOMESH_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// Installs the global logger: stderr, `format`, level filter from the first of `filter_vars`
/// that is set and valid (else `info`).
pub fn init_logs(format: LogFormat, filter_vars: &[&str]) {
    let filter = filter_vars
        .iter()
        .find_map(|v| tracing_subscriber::EnvFilter::try_from_env(v).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
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

/// How long a probe may take in all.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `--probe`: `GET http://HOST:PORT{path}`; success on 200, else the status and body (or the
/// error) on stderr. `name` prefixes the message.
pub fn probe(name: &str, addr: &str, path: &str) -> ExitCode {
    let url = format!("http://{addr}{path}");
    let result = reqwest::blocking::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .connect_timeout(PROBE_TIMEOUT)
        .no_proxy()
        .build()
        .and_then(|c| c.get(&url).send())
        .and_then(|r| {
            let status = r.status();
            r.text().map(|body| (status, body))
        });
    match result {
        Ok((status, _)) if status == reqwest::StatusCode::OK => ExitCode::SUCCESS,
        Ok((status, body)) => {
            eprintln!("{name} --probe {addr}: {status} {}", body.trim());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{name} --probe {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}
