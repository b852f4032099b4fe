//! geomesh's routing core, shared by every protocol filter.
//!
//! * [`config`]: the Écharde configuration shape (`workload_type`, `type_proxy`,
//!   `default_cluster`, `local_cluster`, `routing_table`), extended, validated with messages that
//!   name the field; [`config::fields`] has the field-by-field helpers it uses, for protocol
//!   crates to validate their own sections the same way;
//! * [`route`]: the compiled routing table (key, prefix, value and hash routes, hash tags,
//!   longest match, default);
//! * [`hash`]: versioned consistent hashing;
//! * [`session`]: the sans-IO contract a protocol implements and a host shell drives;
//! * [`metrics`]: what sessions count, drained by the host into Envoy's stats;
//! * [`topic_filter`]: MQTT topic filters (`+`, `#`) against the routing table: the clusters a
//!   subscription must listen on.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod config;
pub mod hash;
pub mod metrics;
pub mod route;
pub mod session;
pub mod topic_filter;

pub use config::{Config, ConfigError, RouteSpec, RouteTarget, RouteType, TypeProxy, WorkloadType};
pub use hash::HashAlgorithm;
pub use metrics::{ConfigStat, Meter, Metric};
pub use route::{ClusterId, Decision, RoutingTable};
pub use session::{Action, DeadlineCover, Framing, Millis, Session, UpstreamFailure, UpstreamFailureKind};
