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
use geomesh_kafka::session::groups::GroupState;
use geomesh_kafka::session::leaders::{self, LeaderRegistry, TopicLeaders};
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

/// Each shard's partition leaders and groups in Proxy-Wasm shared data: a client asks Metadata
/// on one connection and produces on another, possibly in another worker. One key per (shard,
/// topic) and per (shard, group), the name hex-encoded (names are client bytes).
struct SharedLeaders;

fn leaders_key(shard: u16, topic: &[u8]) -> String {
    hex_key("leaders", shard, topic)
}

/// `geomesh.kafka.<what>.<shard>.<name in hex>` (names are client bytes).
fn hex_key(what: &str, shard: u16, name: &[u8]) -> String {
    let mut k = format!("geomesh.kafka.{what}.{shard}.");
    for b in name {
        k.push_str(&format!("{b:02x}"));
    }
    k
}

impl LeaderRegistry for SharedLeaders {
    fn put(&self, shard: u16, topic: &[u8], l: &TopicLeaders) {
        let key = leaders_key(shard, topic);
        let bytes = leaders::encode(l);
        // Unchanged leaders are not written again (every Metadata answer names them).
        if matches!(get_shared_data(&key), Ok((Some(old), _)) if old == bytes) {
            return;
        }
        // A refused write leaves the partitions to the table cluster (the bootstrap address).
        let _ = set_shared_data(&key, Some(&bytes), None);
    }

    fn get(&self, shard: u16, topic: &[u8]) -> Option<TopicLeaders> {
        let (bytes, _) = get_shared_data(&leaders_key(shard, topic)).ok()?;
        leaders::decode(&bytes?)
    }

    // A group's coordinator and latest generation, one key per (shard, group).
    fn put_group(&self, shard: u16, group: &[u8], state: &GroupState) {
        let key = hex_key("group", shard, group);
        let bytes = state.encode();
        if matches!(get_shared_data(&key), Ok((Some(old), _)) if old == bytes) {
            return;
        }
        // A refused write leaves group requests to the table cluster, commits unchecked.
        let _ = set_shared_data(&key, Some(&bytes), None);
    }

    fn get_group(&self, shard: u16, group: &[u8]) -> Option<GroupState> {
        let (bytes, _) = get_shared_data(&hex_key("group", shard, group)).ok()?;
        GroupState::decode(&bytes?)
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
        geomesh_kafka::session_with_registries(
            loaded.table.clone(),
            loaded.config.upstream_timeout_ms,
            &loaded.settings,
            Rc::new(SharedRegistry),
            Rc::new(SharedLeaders),
        )
    }

    // Channels keep no reply timeout of their own: Fetch long polls and group joins wait on
    // purpose, and the session's deadlines (upstream_timeout_ms plus what the request names)
    // answer stalled brokers.
}

proxy_wasm::main! {{
    install::<Kafka>();
}}
