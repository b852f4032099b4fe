//! geomesh's MQTT network filter: [`geomesh_mqtt::MqttSession`] bound to the Proxy-Wasm shell
//! (configuration, live reload, bridge channels). Everything protocol-specific is in
//! `protocols/mqtt`, everything host-specific in `filters/shell`.
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use geomesh_core::{Config, ConfigError, WorkloadType};
use geomesh_filter_shell::{install, Loaded, Protocol};
use geomesh_mqtt::{MqttSession, Settings};

/// MQTT as the shell sees it.
pub struct Mqtt;

impl Protocol for Mqtt {
    type Settings = Settings;
    type Session = MqttSession;

    const WORKLOAD: WorkloadType = WorkloadType::Mqtt;

    fn settings(config: &Config) -> Result<Settings, ConfigError> {
        Settings::from_config(config)
    }

    fn new_session(loaded: &Loaded<Settings>) -> MqttSession {
        geomesh_mqtt::session(
            loaded.table.clone(),
            loaded.config.upstream_timeout_ms,
            &loaded.settings,
        )
    }

    // Channels keep no reply timeout of their own: subscribers wait for messages on purpose,
    // and the session's deadlines (upstream_timeout_ms) answer stalled brokers.
}

proxy_wasm::main! {{
    install::<Mqtt>();
}}
