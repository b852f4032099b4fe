//! Cheops-style replication (scope-lang `&`, issue 5): the engine of
//! docs/replication.md.
//!
//! * [`metaid`]: meta-identifiers (`gm-` + ULID), unique without coordination;
//! * [`model`]: replicants, operations, per-site states, replies;
//! * [`db`]: the durable store (SQLite, WAL, fsync on commit);
//! * [`spool`]: request bodies on disk, streamed in and out;
//! * [`pointer`], [`rewrite`], [`paths`]: ids in JSON bodies (RFC 6901
//!   pointers with `*`), in `Location` and in paths;
//! * [`instance`]: HTTP to this site's application instances;
//! * [`transport`]: how a leader's operation reaches a site
//!   ([`transport::Transport`]);
//! * [`resolve`]: what a request path names, where reads and writes go;
//! * [`executor`]: the replica side (copies, deduplicated application);
//! * [`applier`]: the leader side (log, per-site queues, retries, answers);
//! * [`config`]: the `replication:` configuration section;
//! * [`node`]: all of it running for one site (built by `Agent::start`);
//! * [`peers`]: agent to agent over HTTP (the leader's transport, writes
//!   sent to a leader, reads served by another replica);
//! * [`proxy`]: the proxy listener the scope filter hands requests to;
//! * [`api`]: the JSON API and the peer endpoints on the API listener.

pub mod api;
pub mod applier;
pub mod config;
pub mod db;
pub mod executor;
pub mod instance;
pub mod metaid;
pub mod model;
pub mod node;
pub mod paths;
pub mod peers;
pub mod pointer;
pub mod proxy;
pub mod resolve;
pub mod rewrite;
pub mod spool;
pub mod transport;

use std::fmt;

pub use applier::{Answer, Applier, ApplierConfig, CreateRequest, SiteHealth, WriteRequest};
pub use db::{Db, DbError};
pub use metaid::MetaId;
pub use model::{
    LocalId, OpKind, OpState, Operation, ReplicaStatus, Replicant, ReplicantState, Reply,
};

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Runs a store call on the blocking pool (each one commits and fsyncs).
pub(crate) async fn blocking<T, E>(
    db: &Db,
    f: impl FnOnce(&Db) -> Result<T, E> + Send + 'static,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    let db = db.clone();
    match tokio::task::spawn_blocking(move || f(&db)).await {
        Ok(r) => r,
        Err(e) => Err(E::from(DbError::Corrupt(format!("store task failed: {e}")))),
    }
}

/// A site name as a header value: printable ASCII as is, else
/// percent-encoded (as the scope filter writes site names).
pub fn header_site(site: &str) -> String {
    if site.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        && !site.contains('%')
        && !site.contains(',')
    {
        site.to_owned()
    } else {
        site.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric()
                    || b == b' '
                    || (b.is_ascii_graphic() && b != b'%' && b != b',')
                {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }
}

/// A comma-separated list of sites from a header (`x-geomesh-replicate`):
/// each item trimmed and percent-decoded; empty items refused.
pub fn parse_site_list(value: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for item in value.split(',') {
        let t = item.trim();
        if t.is_empty() {
            return Err(format!("empty site in {value:?}"));
        }
        let s = paths::decode_segment(t).ok_or_else(|| format!("bad percent-encoding in {t:?}"))?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Why a replication request failed (each maps to an HTTP status).
#[derive(Debug)]
pub enum ReplicationError {
    /// The request cannot be replicated as sent (400).
    BadRequest(String),
    /// No replicant with this meta-id here (404).
    Unknown(MetaId),
    /// Not a site of the system (404).
    UnknownSite(String),
    /// This site does not lead it: forward to `leader` (or 503 when it
    /// cannot be reached: read-only until then).
    NotLeader { meta: MetaId, leader: String },
    /// Deleted, being deleted, or never created (404).
    Gone { meta: MetaId, state: ReplicantState },
    /// The store failed (500).
    Store(DbError),
    /// Disk or task failure (500).
    Io(String),
    /// No randomness for a meta-id (500).
    Entropy(metaid::EntropyError),
}

impl ReplicationError {
    /// The HTTP status for a client.
    pub fn http_status(&self) -> u16 {
        match self {
            ReplicationError::BadRequest(_) => 400,
            ReplicationError::Unknown(_)
            | ReplicationError::UnknownSite(_)
            | ReplicationError::Gone { .. } => 404,
            ReplicationError::NotLeader { .. } => 503,
            ReplicationError::Store(_) | ReplicationError::Io(_) | ReplicationError::Entropy(_) => {
                500
            }
        }
    }
}

impl fmt::Display for ReplicationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicationError::BadRequest(m) => write!(f, "geomesh replication: {m}"),
            ReplicationError::Unknown(m) => write!(f, "geomesh replication: no replicant {m}"),
            ReplicationError::UnknownSite(s) => {
                write!(f, "geomesh replication: {s:?} is neither this site nor a configured peer")
            }
            ReplicationError::NotLeader { meta, leader } => {
                write!(f, "geomesh replication: {meta} is read-only here until this site reaches its leader {leader}")
            }
            ReplicationError::Gone { meta, state } => {
                write!(f, "geomesh replication: {meta} is {state}")
            }
            ReplicationError::Store(e) => write!(f, "geomesh replication: {e}"),
            ReplicationError::Io(e) => write!(f, "geomesh replication: {e}"),
            ReplicationError::Entropy(e) => write!(f, "geomesh replication: {e}"),
        }
    }
}

impl std::error::Error for ReplicationError {}

impl From<DbError> for ReplicationError {
    fn from(e: DbError) -> Self {
        ReplicationError::Store(e)
    }
}

impl From<metaid::EntropyError> for ReplicationError {
    fn from(e: metaid::EntropyError) -> Self {
        ReplicationError::Entropy(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_lists_in_headers() {
        assert_eq!(
            parse_site_list("DC 1, DC%202 ,DC 1").unwrap(),
            ["DC 1", "DC 2"]
        );
        assert_eq!(parse_site_list("Z%C3%BCrich").unwrap(), ["Zürich"]);
        assert!(parse_site_list("A,,B").is_err());
        assert!(parse_site_list("A%zz").is_err());
        for s in ["DC 1", "Zürich", "a,b", "100%"] {
            assert_eq!(parse_site_list(&header_site(s)).unwrap(), [s]);
        }
        assert_eq!(header_site("DC 1"), "DC 1");
    }
}
