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

use std::rc::Rc;

use geomesh_core::{Config, ConfigError, WorkloadType};
use geomesh_filter_shell::{install, Loaded, Protocol};
use geomesh_kafka::logic::producer_ids::ProducerIds;
use geomesh_kafka::session::producers::ProducerRegistry;
use geomesh_kafka::{KafkaSession, Settings};
use proxy_wasm::hostcalls::{get_shared_data, set_shared_data};

/// Slots of the host-wide producer registry: a client producer id uses slot `id % SLOTS`, so
/// the shared data Envoy keeps stays bounded (a newer producer in the same slot evicts the
/// older one, whose batches then pass unchanged, as on a registry miss).
const SLOTS: i64 = 4096;

/// The producer ids of client producers in Proxy-Wasm shared data: every Envoy worker (VM)
/// sees them, so a client's InitProducerId and its Produce requests may reach different
/// workers.
struct SharedRegistry;

fn slot_key(client_id: i64) -> String {
    format!("geomesh.kafka.producer.{}", client_id.rem_euclid(SLOTS))
}

impl ProducerRegistry for SharedRegistry {
    fn put(&self, ids: &ProducerIds) {
        // A failed write (the host refusing) leaves the client's batches unchanged: logged
        // nowhere else, a broker refuses them if its ids differ.
        let _ = set_shared_data(&slot_key(ids.client.id), Some(&ids.encode()), None);
    }

    fn get(&self, client_id: i64) -> Option<ProducerIds> {
        let (bytes, _) = get_shared_data(&slot_key(client_id)).ok()?;
        ProducerIds::decode(&bytes?).filter(|ids| ids.client.id == client_id)
    }
}

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
        geomesh_kafka::session_with_registry(
            loaded.table.clone(),
            loaded.config.upstream_timeout_ms,
            &loaded.settings,
            Rc::new(SharedRegistry),
        )
    }

    // Channels keep no reply timeout of their own: Fetch long polls and group joins wait on
    // purpose, and the session's deadlines (upstream_timeout_ms plus what the request names)
    // answer stalled brokers.
}

proxy_wasm::main! {{
    install::<Kafka>();
}}
