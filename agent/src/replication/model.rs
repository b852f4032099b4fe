//! The data model of docs/replication.md: replicants, operations and their
//! per-site state, and the replies of application instances.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::metaid::MetaId;

/// A local identifier, as the application wrote it in its answer: a JSON
/// string or number (json-server 0.17 generates numbers: 1, 2, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "serde_json::Value")]
pub struct LocalId(serde_json::Value);

impl LocalId {
    /// A string or number value; `None` for any other JSON value or an
    /// empty string.
    pub fn from_json(v: &serde_json::Value) -> Option<LocalId> {
        match v {
            serde_json::Value::String(s) if !s.is_empty() => Some(LocalId(v.clone())),
            serde_json::Value::Number(_) => Some(LocalId(v.clone())),
            _ => None,
        }
    }

    /// A local id taken from text (a path segment, a `Location`): a string.
    pub fn text_id(s: &str) -> Option<LocalId> {
        (!s.is_empty()).then(|| LocalId(serde_json::Value::String(s.to_owned())))
    }

    /// The JSON value (what is written back into bodies).
    pub fn json(&self) -> &serde_json::Value {
        &self.0
    }

    /// The text form, as it appears in a URL path: the string itself, or the
    /// number printed.
    pub fn text(&self) -> String {
        match &self.0 {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// Whether a JSON value in a body designates this id: same type and
    /// value, or, for a numeric id, a string spelling the same number
    /// (`"42"` for `42`).
    pub fn matches(&self, v: &serde_json::Value) -> bool {
        match (&self.0, v) {
            (serde_json::Value::Number(a), serde_json::Value::String(b)) => a.to_string() == *b,
            (a, b) => a == b,
        }
    }
}

impl TryFrom<serde_json::Value> for LocalId {
    type Error = String;
    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        LocalId::from_json(&v)
            .ok_or_else(|| format!("a local id is a non-empty string or a number, not {v}"))
    }
}

impl From<LocalId> for serde_json::Value {
    fn from(l: LocalId) -> Self {
        l.0
    }
}

impl fmt::Display for LocalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $v),+ }
        impl $name {
            /// The stored and displayed spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
            /// Parses the stored spelling.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$v),)+ _ => None }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

text_enum! {
    /// The life of a replicant.
    ReplicantState {
        /// Created (or being created); reads and writes accepted.
        Active = "active",
        /// A delete is in the log and not yet applied everywhere.
        Deleting = "deleting",
        /// Deleted on every replica (tombstone: reads get 404).
        Deleted = "deleted",
        /// The create failed on every site.
        Failed = "failed",
    }
}

text_enum! {
    /// The state of one replica of a replicant.
    ReplicaStatus {
        /// The create has not been applied on that site yet.
        Pending = "pending",
        /// Created; `local_id` is known.
        Ok = "ok",
        /// The create was answered with an error, or without an id.
        Failed = "failed",
        /// The delete was applied on that site.
        Deleted = "deleted",
    }
}

text_enum! {
    /// What an operation does.
    OpKind {
        /// Creates the resource (the first operation of every replicant).
        Create = "create",
        /// Any other write (PUT, PATCH, POST on a sub-resource...).
        Update = "update",
        /// DELETE of the resource.
        Delete = "delete",
        /// No application call: the replica refreshes its copy of the replicant.
        Sync = "sync",
    }
}

text_enum! {
    /// The state of one operation on one site.
    OpState {
        /// Not applied yet (waiting for its turn or for the site).
        Pending = "pending",
        /// Sent; no answer recorded yet (after a crash, sent again: at least once).
        InFlight = "in_flight",
        /// Applied: the instance answered (any status but the retried ones).
        Done = "done",
        /// Not applicable: the replica does not exist there (its create failed, or it was deleted).
        Skipped = "skipped",
        /// The site was removed from the replicant before it was applied.
        Dropped = "dropped",
    }
}

impl OpState {
    /// Whether the operation still has to be applied on that site.
    pub fn is_open(self) -> bool {
        matches!(self, OpState::Pending | OpState::InFlight)
    }
}

/// One replica: a site's copy of the resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    /// The id the site's instance gave the resource (once created).
    pub local_id: Option<LocalId>,
    /// Where it stands.
    pub status: ReplicaStatus,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A replicated resource: one meta-identifier, one leader, one replica per site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replicant {
    /// The meta-identifier clients use.
    pub meta: MetaId,
    /// The service (as scopes name it).
    pub service: String,
    /// The collection path the create was sent to (`/images`): the resource
    /// is `<collection>/<local id>` on every site.
    pub collection: String,
    /// The site whose agent received the create and owns the log.
    pub leader: String,
    /// Lifecycle.
    pub state: ReplicantState,
    /// Bumped by the leader at every change; copies keep the highest.
    pub version: u64,
    /// Unix ms.
    pub created_ms: u64,
    /// Unix ms.
    pub updated_ms: u64,
    /// Site -> replica.
    pub replicas: BTreeMap<String, Replica>,
}

impl Replicant {
    /// The local id on `site`, when that replica exists.
    pub fn local_id(&self, site: &str) -> Option<&LocalId> {
        self.replicas
            .get(site)
            .filter(|r| r.status == ReplicaStatus::Ok)
            .and_then(|r| r.local_id.as_ref())
    }

    /// The resource's path on `site`: `<collection>/<local id><suffix>`.
    pub fn path_on(&self, site: &str, suffix: &str) -> Option<String> {
        let base = self.collection.trim_end_matches('/');
        self.local_id(site).map(|id| {
            format!(
                "{base}/{}{suffix}",
                super::paths::encode_segment(&id.text())
            )
        })
    }

    /// Sites holding a live replica, in name order.
    pub fn live_sites(&self) -> impl Iterator<Item = &str> {
        self.replicas
            .iter()
            .filter(|(_, r)| r.status == ReplicaStatus::Ok)
            .map(|(s, _)| s.as_str())
    }
}

/// Where the body of an operation is.
#[derive(Debug)]
pub enum Body {
    /// A spooled file (fsynced), `len` bytes.
    File {
        /// Path of the file.
        path: std::path::PathBuf,
        /// Its length.
        len: u64,
    },
    /// Bytes in memory (small bodies, rewritten JSON bodies).
    Bytes(Bytes),
    /// A stream (a peer agent passing a leader's body through to its instance).
    Stream {
        /// The stream.
        body: reqwest::Body,
        /// Its length, when known.
        len: Option<u64>,
    },
}

impl Body {
    /// Its length, when known.
    pub fn len(&self) -> Option<u64> {
        match self {
            Body::File { len, .. } => Some(*len),
            Body::Bytes(b) => u64::try_from(b.len()).ok(),
            Body::Stream { len, .. } => *len,
        }
    }

    /// Whether it is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

/// An answer of an application instance (or one replayed from the
/// replica's dedup table).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// End-to-end response headers (lower-case names, in order).
    pub headers: Vec<(String, String)>,
    /// The body (empty when it was larger than the limit: see `truncated`).
    pub body: Bytes,
    /// The body was over `max_reply_bytes` and was dropped.
    pub truncated: Option<u64>,
}

impl Reply {
    /// First value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Replaces (or adds, or removes with `None`) a header.
    pub fn set_header(&mut self, name: &str, value: Option<String>) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            self.headers.push((name.to_ascii_lowercase(), v));
        }
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One operation on one site, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpSite {
    /// Where it stands.
    pub state: OpState,
    /// Deliveries tried (1 when all went well).
    pub attempts: u32,
    /// The instance's HTTP status, once applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Last failure (transport error, or why it was skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix ms of the last change.
    pub updated_ms: u64,
}

/// An entry of the leader's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// Position in this leader's log (1, 2, ...; never reused).
    pub seq: u64,
    /// The replicant it applies to.
    pub meta: MetaId,
    /// What it does.
    pub kind: OpKind,
    /// HTTP method sent to the instances.
    pub method: String,
    /// Path after `<collection>/<local id>` (`""` for the resource itself,
    /// `/tags` for a sub-resource); for a create, after the collection.
    pub suffix: String,
    /// Query string (without `?`), sent as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Request headers sent to every instance (end-to-end ones only).
    pub headers: Vec<(String, String)>,
    /// Spooled body file name (in the spool directory), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_file: Option<String>,
    /// Body length.
    pub body_len: u64,
    /// The site of the client that asked (its answer is the one returned).
    pub origin: String,
    /// Unix ms.
    pub created_ms: u64,
    /// Site -> state on that site.
    pub sites: BTreeMap<String, OpSite>,
}

impl Operation {
    /// Whether every site is finished with it.
    pub fn finished(&self) -> bool {
        self.sites.values().all(|s| !s.state.is_open())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn local_ids_keep_their_json_type() {
        let n = LocalId::from_json(&json!(42)).unwrap();
        let s = LocalId::from_json(&json!("a1b2")).unwrap();
        assert_eq!(n.text(), "42");
        assert_eq!(s.text(), "a1b2");
        assert!(n.matches(&json!(42)) && n.matches(&json!("42")));
        assert!(!n.matches(&json!(43)) && !s.matches(&json!("a1b3")));
        assert!(!s.matches(&json!(42)));
        assert_eq!(serde_json::to_string(&n).unwrap(), "42");
        assert_eq!(serde_json::from_str::<LocalId>("\"a1b2\"").unwrap(), s);
        for bad in [
            json!(null),
            json!(""),
            json!([1]),
            json!({"a": 1}),
            json!(true),
        ] {
            assert!(LocalId::from_json(&bad).is_none(), "{bad}");
            assert!(serde_json::from_value::<LocalId>(bad).is_err());
        }
    }

    #[test]
    fn enums_round_trip_their_spelling() {
        for k in [OpKind::Create, OpKind::Update, OpKind::Delete, OpKind::Sync] {
            assert_eq!(OpKind::parse(k.as_str()), Some(k));
        }
        for s in [
            OpState::Pending,
            OpState::InFlight,
            OpState::Done,
            OpState::Skipped,
            OpState::Dropped,
        ] {
            assert_eq!(OpState::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert!(OpState::InFlight.is_open() && !OpState::Done.is_open());
        assert_eq!(ReplicaStatus::parse("ok"), Some(ReplicaStatus::Ok));
        assert_eq!(ReplicantState::parse("nope"), None);
    }
}
