//! geomesh's Redis network filter: [`geomesh_redis::RedisSession`] bound to the Proxy-Wasm
//! shell (configuration, live reload, bridge channels). Everything protocol-specific is in
//! `protocols/redis`, everything host-specific in `filters/shell`.
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use geomesh_core::{Config, ConfigError, WorkloadType};
use geomesh_filter_shell::{install, Loaded, Protocol};
use geomesh_redis::{RedisSession, Settings};

/// The Redis protocol as the shell sees it.
pub struct Redis;

impl Protocol for Redis {
    type Settings = Settings;
    type Session = RedisSession;

    const WORKLOAD: WorkloadType = WorkloadType::Redis;

    fn settings(config: &Config) -> Result<Settings, ConfigError> {
        Settings::from_config(config)
    }

    fn new_session(loaded: &Loaded<Settings>) -> RedisSession {
        RedisSession::new(
            loaded.table.clone(),
            loaded.config.upstream_timeout_ms,
            &loaded.settings,
        )
    }

    // Channels keep no reply timeout of their own: blocking commands and subscriptions wait on
    // purpose, and the session's deadlines (upstream_timeout_ms) answer stalled shards.
}

proxy_wasm::main! {{
    install::<Redis>();
}}
