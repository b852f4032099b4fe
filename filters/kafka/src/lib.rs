//! geomesh's Kafka network filter: [`geomesh_kafka::KafkaSession`] bound to the Proxy-Wasm
//! shell (configuration, live reload, bridge channels). Everything protocol-specific is in
//! `protocols/kafka`, everything host-specific in `filters/shell`.
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use geomesh_core::{Config, ConfigError, WorkloadType};
use geomesh_filter_shell::{install, Loaded, Protocol};
use geomesh_kafka::{KafkaSession, Settings};

/// The Kafka protocol as the shell sees it.
pub struct Kafka;

impl Protocol for Kafka {
    type Settings = Settings;
    type Session = KafkaSession;

    const WORKLOAD: WorkloadType = WorkloadType::Kafka;

    fn settings(config: &Config) -> Result<Settings, ConfigError> {
        Settings::from_config(config)
    }

    fn new_session(loaded: &Loaded<Settings>) -> KafkaSession {
        geomesh_kafka::session(loaded.table.clone(), loaded.config.upstream_timeout_ms, &loaded.settings)
    }

    // Channels keep no reply timeout of their own: Fetch long polls and group joins wait on
    // purpose, and the session's deadlines (upstream_timeout_ms plus what the request names)
    // answer stalled brokers.
}

proxy_wasm::main! {{
    install::<Kafka>();
}}
