//! The bodies of the requests and responses the proxy must read or rewrite, one module per
//! API. Each decodes exactly the versions in `apis::APIS`, keeps what it does not interpret
//! (tagged fields, record batches) as shared raw bytes, and encodes back byte for byte.
//! Bytes after the last field are ignored, as Kafka's own parsers do (librdkafka 2.16 sends
//! three after a v12 Metadata request for every topic).

pub mod api_versions;
pub mod fetch;
pub mod find_coordinator;
pub mod group;
pub mod init_producer_id;
pub mod leader_epoch;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod sasl;
pub mod topics_admin;
