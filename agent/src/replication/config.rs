//! The `replication:` section of the agent's configuration (wired into
//! `AgentConfig` in round 2; parsed and checked here).
//!
//! ```yaml
//! replication:
//!   listen: 127.0.0.1:9102        # where the scope filter hands requests over (Envoy cluster)
//!   data_dir: /var/lib/geomesh/dc1 # replication.sqlite3 and spool/ live here
//!   client_wait_ms: 30000         # longest a client waits for its replica's answer (then 202)
//!   retry_min_ms: 100             # first retry delay of a failed delivery (doubles...)
//!   retry_max_ms: 5000            # ...up to this; also the re-check period of a down site
//!   max_body_bytes: 4294967296    # largest request body spooled (413 above)
//!   max_rewrite_bytes: 8388608    # largest JSON body parsed to translate ids
//!   max_reply_bytes: 8388608      # largest answer of a write kept for the client (502 above)
//!   instance_timeout_ms: 60000    # read timeout of a call to an instance
//!   services:
//!     image:
//!       id_pointers: ["/image/id"] # default ["/id"]; the first one present gives a create's id
//!       list_pointers: ["/images/*/id"] # default: "/*" + each id pointer
//!   test_hooks:                   # TESTS ONLY (never in production): make a crash land
//!     delay_before_delivery_ms: { DC 2: 30000 } # wait before each delivery to DC 2 (still pending)
//!     delay_after_delivery_ms: { DC 2: 30000 }  # wait after DC 2 answered, before committing it
//!     delay_apply_ms: { update: 30000 }         # as a replica: hold each delivery of that kind
//!                                               # before it reaches the instance
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::rewrite::IdFields;

fn d_wait() -> u64 {
    30_000
}
fn d_retry_min() -> u64 {
    100
}
fn d_retry_max() -> u64 {
    5_000
}
fn d_body() -> u64 {
    4 << 30
}
fn d_8m() -> usize {
    8 << 20
}
fn d_instance_timeout() -> u64 {
    60_000
}
fn d_id() -> Vec<String> {
    vec!["/id".to_owned()]
}

/// Where one service keeps ids.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceIds {
    /// JSON pointers to the id in one resource's representation.
    #[serde(default = "d_id")]
    pub id_pointers: Vec<String>,
    /// JSON pointers to the ids in a list answer.
    #[serde(default)]
    pub list_pointers: Option<Vec<String>>,
}

/// Delays that let a test kill the leader's agent at a chosen point of the
/// fan-out (docs/replication.md, "Faults"). Tests only: a delay slows every
/// delivery to that site.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestHooks {
    /// Per target site: wait this long before each delivery (the operation
    /// stays `pending` there meanwhile: "between fan-outs").
    #[serde(default)]
    pub delay_before_delivery_ms: BTreeMap<String, u64>,
    /// Per target site: wait this long after the site answered, before the
    /// outcome is committed (the operation stays `in_flight`: the replica
    /// applied it, the leader does not know yet).
    #[serde(default)]
    pub delay_after_delivery_ms: BTreeMap<String, u64>,
    /// On this site as a replica, per operation kind (`create`, `update`,
    /// `delete`): hold each delivery of that kind this long after it
    /// arrived and before it reaches the instance (the leader sees it
    /// `in_flight`; a test stops the replica site meanwhile).
    #[serde(default)]
    pub delay_apply_ms: BTreeMap<String, u64>,
}

impl TestHooks {
    /// Whether any delay is set.
    pub fn is_empty(&self) -> bool {
        self.delay_before_delivery_ms.is_empty()
            && self.delay_after_delivery_ms.is_empty()
            && self.delay_apply_ms.is_empty()
    }
}

/// The `replication:` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// The listener the scope filter's Envoy cluster points at.
    pub listen: SocketAddr,
    /// Directory of the store and the spool.
    pub data_dir: PathBuf,
    #[serde(default = "d_wait")]
    pub client_wait_ms: u64,
    #[serde(default = "d_retry_min")]
    pub retry_min_ms: u64,
    #[serde(default = "d_retry_max")]
    pub retry_max_ms: u64,
    #[serde(default = "d_body")]
    pub max_body_bytes: u64,
    #[serde(default = "d_8m")]
    pub max_rewrite_bytes: usize,
    #[serde(default = "d_8m")]
    pub max_reply_bytes: usize,
    #[serde(default = "d_instance_timeout")]
    pub instance_timeout_ms: u64,
    /// Per-service id locations (a service not listed uses `/id`).
    #[serde(default)]
    pub services: BTreeMap<String, ServiceIds>,
    /// Tests only: delays around deliveries.
    #[serde(default)]
    pub test_hooks: TestHooks,
}

impl ReplicationConfig {
    /// Checks the values; errors name the field (under `replication.`).
    pub fn validate(&self) -> Result<(), String> {
        if !(100..=3_600_000).contains(&self.client_wait_ms) {
            return Err("`replication.client_wait_ms`: expected 100 to 3600000".into());
        }
        if self.retry_min_ms == 0
            || self.retry_min_ms > self.retry_max_ms
            || self.retry_max_ms > 600_000
        {
            return Err(
                "`replication.retry_min_ms`/`retry_max_ms`: expected 1 <= min <= max <= 600000"
                    .into(),
            );
        }
        if self.max_body_bytes == 0 {
            return Err("`replication.max_body_bytes`: expected more than 0".into());
        }
        if self.max_rewrite_bytes == 0 || self.max_reply_bytes == 0 {
            return Err(
                "`replication.max_rewrite_bytes`/`max_reply_bytes`: expected more than 0".into(),
            );
        }
        if !(100..=3_600_000).contains(&self.instance_timeout_ms) {
            return Err("`replication.instance_timeout_ms`: expected 100 to 3600000".into());
        }
        for d in self
            .test_hooks
            .delay_before_delivery_ms
            .values()
            .chain(self.test_hooks.delay_after_delivery_ms.values())
            .chain(self.test_hooks.delay_apply_ms.values())
        {
            if *d > 3_600_000 {
                return Err("`replication.test_hooks`: delays up to 3600000 ms".into());
            }
        }
        for kind in self.test_hooks.delay_apply_ms.keys() {
            if !matches!(kind.as_str(), "create" | "update" | "delete") {
                return Err(format!(
                    "`replication.test_hooks.delay_apply_ms`: unknown operation kind `{kind}` (create, update, delete)"
                ));
            }
        }
        for name in self.services.keys() {
            self.ids(name)
                .map_err(|e| format!("`replication.services.{name}`: {e}"))?;
        }
        Ok(())
    }

    /// The id fields of `service`.
    pub fn ids(&self, service: &str) -> Result<IdFields, String> {
        match self.services.get(service) {
            None => Ok(IdFields::default()),
            Some(s) => {
                let p: Vec<&str> = s.id_pointers.iter().map(String::as_str).collect();
                let l: Option<Vec<&str>> = s
                    .list_pointers
                    .as_ref()
                    .map(|l| l.iter().map(String::as_str).collect());
                IdFields::parse(&p, l.as_deref())
            }
        }
    }

    /// Longest client wait.
    pub fn client_wait(&self) -> Duration {
        Duration::from_millis(self.client_wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults_and_checks() {
        let c: ReplicationConfig = serde_yaml_ng::from_str(
            "listen: 127.0.0.1:9102\ndata_dir: /tmp/x\nservices:\n  image: { id_pointers: [\"/image/id\"] }\n  other: {}\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.client_wait(), Duration::from_secs(30));
        assert_eq!(c.ids("image").unwrap().pointers[0].as_str(), "/image/id");
        assert_eq!(
            c.ids("image").unwrap().list_pointers[0].as_str(),
            "/*/image/id"
        );
        assert_eq!(c.ids("other").unwrap().pointers[0].as_str(), "/id");
        assert_eq!(c.ids("unlisted").unwrap(), IdFields::default());
        let mut bad = c.clone();
        bad.services.insert(
            "x".into(),
            ServiceIds {
                id_pointers: vec!["id".into()],
                list_pointers: None,
            },
        );
        assert!(bad
            .validate()
            .unwrap_err()
            .contains("replication.services.x"));
        let mut bad = c.clone();
        bad.test_hooks.delay_apply_ms.insert("sync".into(), 5);
        assert!(bad.validate().unwrap_err().contains("unknown operation kind `sync`"));
        let mut bad = c.clone();
        bad.retry_min_ms = 10_000;
        assert!(bad.validate().unwrap_err().contains("retry_min_ms"));
        assert!(serde_yaml_ng::from_str::<ReplicationConfig>(
            "listen: 127.0.0.1:1\ndata_dir: x\nbogus: 1\n"
        )
        .is_err());
    }
}
