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

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use geomesh_core::{Config, ConfigError, WorkloadType};
use geomesh_filter_shell::{install, Loaded, Protocol};
use geomesh_mqtt::{MqttSession, Settings};
use proxy_wasm::hostcalls;

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
        geomesh_mqtt::session_with_seed(
            loaded.table.clone(),
            loaded.config.upstream_timeout_ms,
            &loaded.settings,
            connection_seed(),
        )
    }

    // Channels keep no reply timeout of their own: subscribers wait for messages on purpose,
    // and the session's deadlines (upstream_timeout_ms) answer stalled brokers.
}

/// This VM's first moment, in nanoseconds (0 until the first connection asks).
static VM_START_NS: AtomicU64 = AtomicU64::new(0);

fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What an assigned client identifier is made unique by (`geomesh_mqtt::Mqtt::with_seed`):
/// Envoy's connection id (unique across the worker threads of one Envoy), the client's
/// address and port (unique among the open connections of a listener), this VM's start time
/// in nanoseconds (differs between VMs, filter instances and Envoys) and the time now. Each
/// is hashed in; one the host does not give is left out.
fn connection_seed() -> u64 {
    let now = now_ns();
    let vm = match VM_START_NS.compare_exchange(0, now.max(1), Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => now.max(1),
        Err(v) => v,
    };
    let mut h = Fnv::default();
    h.add(&vm.to_le_bytes());
    h.add(&now.to_le_bytes());
    for path in [&["connection", "id"][..], &["source", "address"][..], &["source", "port"][..]] {
        if let Ok(Some(bytes)) = hostcalls::get_property(path.to_vec()) {
            h.add(&bytes);
        }
    }
    h.0
}

/// FNV-1a, 64 bits (the session mixes the result further).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn add(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so that fields cannot run into each other.
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }
}

proxy_wasm::main! {{
    install::<Mqtt>();
}}
