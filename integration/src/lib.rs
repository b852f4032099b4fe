//! geomesh-integration: the end-to-end harness.
//!
//! Everything runs for real on loopback: Envoy 1.40 (from `scripts/bootstrap.sh`), the built
//! filters (`target/wasm/*.wasm`, from `scripts/build-wasm.sh`), real servers (redis-server,
//! json-server, ...), the workspace's native daemons and real clients.
//!
//! * [`paths`]: repository root, Envoy, `.wasm` files, native binaries, installed tools.
//! * [`ports`]: the one allocator of loopback ports (every server, Envoy and relay of a test takes
//!   its port there: never twice, claimed across processes, outside the ephemeral range).
//! * [`process`]: per-test directory, child processes with captured logs that are killed (whole
//!   process group) on drop and print their log tail when the test panics; readiness waits.
//! * [`envoy`]: Envoy config builders (Wasm network/HTTP filters, tcp_proxy, HTTP router,
//!   static clusters, ECDS from a watched file) and a running Envoy with admin helpers.
//! * [`prometheus`]: Envoy's `/stats/prometheus` parsed into (name, labels) -> value.
//! * [`servers`]: redis-server, json-server, tansu (a Kafka-compatible broker), native daemons.
//! * [`influx`]: influxd 1.6 shards, the `influx` CLI, and an Envoy with the InfluxDB filter.
//! * [`mosquitto`]: mosquitto brokers, `mosquitto_pub`/`mosquitto_sub`, paho-mqtt scripts.
//! * [`mqtt_client`]: a blocking MQTT client on geomesh's codec (benchmarks, fault tests).
//! * [`kafka_clients`]: real Kafka clients (confluent-kafka, i.e. librdkafka, and kafka-python)
//!   run as Python processes that report what they did as JSON.
//! * [`bench`]: what the benchmark programs share (redis-benchmark runs, CPU per process,
//!   medians, the report header).
//! * [`redis_mesh`]: the Redis sharding topology (shards, geomesh-bridge, Envoy with the Redis
//!   filter) and redis-cli.
//! * [`relay`]: a TCP relay that adds latency and cuts links (WAN emulation).
//! * [`replication`]: the three-site replication topology of issue 5 (Envoys with the scope
//!   filter handing requests to the agents, agents with replication, json-server or the
//!   `geomesh-blob-store` app per site, agent links through relays).
//! * [`demo`]: the `make demo` topology (`geomesh-demo`): Redis sharding over two sites,
//!   scope-lang and replication over three each, scripted traffic, checks, serving until Ctrl-C.
//! * [`scope`]: the three-site scope-lang topology of `examples/scope/` (Envoys with the scope
//!   filter, agents, example services), its config generator and WAN links through relays.
//!
//! Environment variables: `GEOMESH_ROOT` (repository root), `GEOMESH_ENVOY` (Envoy binary),
//! `GEOMESH_BIN_DIR` (native binaries), `GEOMESH_TEST_TMP` (parent of test dirs),
//! `GEOMESH_KEEP_TEST_DIRS=1` (keep test dirs of passing tests too).

pub mod bench;
pub mod bridge;
pub mod demo;
pub mod demo_kafka;
pub mod demo_mqtt;
pub mod mesh;
pub mod envoy;
pub mod influx;
pub mod mosquitto;
pub mod mqtt_client;
pub mod native;
pub mod kafka_clients;
pub mod kafka_raw;
pub mod paths;
pub mod ports;
pub mod process;
pub mod prometheus;
pub mod redis_mesh;
pub mod resp_client;
pub mod relay;
pub mod replication;
pub mod scope;
pub mod servers;
pub mod sites;

pub use envoy::{Envoy, EnvoyConfig, EnvoyOptions, WasmPlugin};
pub use ports::{free_port, free_ports};
pub use process::{http_get, wait_for, wait_tcp, Proc, TestDir};
pub use relay::{Dir, Relay};
pub use mosquitto::{Mosquitto, MosquittoSub};
pub use servers::{spawn_native, JsonServer, Redis, Tansu};
