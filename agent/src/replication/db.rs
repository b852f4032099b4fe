//! The durable store: SQLite (bundled), one file per agent
//! (`<data_dir>/replication.sqlite3`), WAL journal, `synchronous=FULL`: a
//! call that returns `Ok` has committed and fsynced its transaction, so
//! whatever the agent acknowledges after it survives `kill -9` and a power
//! cut. Every method is one transaction and blocking (milliseconds, one
//! fsync): async callers run it in `spawn_blocking`.
//!
//! Tables (docs/replication.md, "Data model"):
//!
//! * `replicants`, `replicas`: every replicant this site leads or holds a
//!   replica of; on a leader the master record, elsewhere a copy (the one
//!   with the highest `version` wins, the site's own replica entry merged);
//! * `ops`, `op_sites`: the leader's log and the state of each entry on
//!   each site; the open entries of a site, in `seq` order, are its queue
//!   (its cursor is the first open one);
//! * `applied`: on a replica, the answers to the leader's deliveries, so a
//!   delivery sent again (lost answer, leader restarted) is answered from
//!   here instead of being applied twice; dropped when the leader
//!   acknowledges;
//! * `removed_sites`, `removal_notices`: sites removed from the system, and
//!   on the agent that received the removal, which peers were told (each
//!   notice retried until the peer acknowledges it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::metaid::MetaId;
use super::model::{
    LocalId, OpKind, OpSite, OpState, Operation, Replica, ReplicaStatus, Replicant, ReplicantState,
    Reply,
};

/// A store failure.
#[derive(Debug)]
pub enum DbError {
    /// SQLite said no (IO error, full disk, corrupt file...).
    Sqlite(rusqlite::Error),
    /// A row that does not decode (a newer schema, a hand-edited file).
    Corrupt(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Sqlite(e) => write!(f, "replication store: {e}"),
            DbError::Corrupt(e) => write!(f, "replication store: {e}"),
        }
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}

/// Result of a store call.
pub type DbResult<T> = Result<T, DbError>;

const SCHEMA_VERSION: i64 = 1;

/// state, attempts, status, headers, body, truncated
type AppliedRow = (
    String,
    u32,
    Option<u16>,
    Option<String>,
    Option<Vec<u8>>,
    Option<i64>,
);
/// site, state, attempts, status, error, updated_ms
type OpSiteRow = (String, String, u32, Option<u16>, Option<String>, i64);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS replicants (
    meta TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    collection TEXT NOT NULL,
    leader TEXT NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS replicas (
    meta TEXT NOT NULL REFERENCES replicants(meta) ON DELETE CASCADE,
    site TEXT NOT NULL,
    local_id TEXT,
    local_id_json TEXT,
    status TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (meta, site)
);
CREATE INDEX IF NOT EXISTS replicas_by_local ON replicas(site, local_id) WHERE status = 'ok';
CREATE INDEX IF NOT EXISTS replicants_by_collection ON replicants(service, collection);
CREATE TABLE IF NOT EXISTS ops (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    meta TEXT NOT NULL,
    kind TEXT NOT NULL,
    method TEXT NOT NULL,
    suffix TEXT NOT NULL,
    query TEXT,
    headers TEXT NOT NULL,
    body_file TEXT,
    body_len INTEGER NOT NULL,
    origin TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ops_by_meta ON ops(meta, seq);
CREATE TABLE IF NOT EXISTS op_sites (
    seq INTEGER NOT NULL REFERENCES ops(seq),
    site TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    status INTEGER,
    error TEXT,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (seq, site)
);
CREATE INDEX IF NOT EXISTS op_sites_open ON op_sites(site, seq) WHERE state IN ('pending', 'in_flight');
CREATE TABLE IF NOT EXISTS applied (
    leader TEXT NOT NULL,
    seq INTEGER NOT NULL,
    meta TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    status INTEGER,
    headers TEXT,
    body BLOB,
    truncated INTEGER,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (leader, seq)
);
CREATE TABLE IF NOT EXISTS removed_sites (
    site TEXT PRIMARY KEY,
    removed_ms INTEGER NOT NULL,
    requested_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS removal_notices (
    site TEXT NOT NULL REFERENCES removed_sites(site),
    peer TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (site, peer)
);
";

/// The store (cheap to clone; one connection behind a mutex).
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

/// A create, as the leader logs it.
#[derive(Debug, Clone)]
pub struct NewCreate {
    pub meta: MetaId,
    pub service: String,
    pub collection: String,
    pub leader: String,
    /// Target sites, in the scope's order (duplicates ignored).
    pub sites: Vec<String>,
    pub method: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body_file: Option<String>,
    pub body_len: u64,
    pub origin: String,
    pub now_ms: u64,
}

/// An update or delete, as the leader logs it.
#[derive(Debug, Clone)]
pub struct NewOp {
    pub meta: MetaId,
    pub kind: OpKind,
    pub method: String,
    pub suffix: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body_file: Option<String>,
    pub body_len: u64,
    pub origin: String,
    pub now_ms: u64,
}

/// Why an operation cannot be appended.
#[derive(Debug)]
pub enum AppendError {
    /// No such replicant here.
    Unknown,
    /// This site is not its leader (the leader's name).
    NotLeader(String),
    /// It was deleted (or is being deleted, or its creation failed).
    Gone(ReplicantState),
    /// Store failure.
    Db(DbError),
}

impl From<DbError> for AppendError {
    fn from(e: DbError) -> Self {
        AppendError::Db(e)
    }
}

impl From<rusqlite::Error> for AppendError {
    fn from(e: rusqlite::Error) -> Self {
        AppendError::Db(DbError::Sqlite(e))
    }
}

/// How one delivery of an operation to a site ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// The instance answered with `status`. For a create, the local id or
    /// why none could be found (then the replica is `failed`).
    Applied {
        status: u16,
        created: Option<Result<LocalId, String>>,
    },
    /// Not applicable on that site (no live replica there).
    Skipped(String),
    /// Not delivered (site unreachable, instance unavailable): pending
    /// again, to be retried.
    Retry(String),
}

/// What [`Db::finish`] changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Finished {
    /// The operation is now finished on every site.
    pub op_finished: bool,
    /// Its spooled body can be removed.
    pub release_body: Option<String>,
    /// A sync operation appended (the replicant changed).
    pub sync_seq: Option<u64>,
    /// Sites the sync operation goes to.
    pub sync_sites: Vec<String>,
    /// The replicant after the change.
    pub replicant: Option<Replicant>,
}

/// A site's queue, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SiteQueue {
    /// The first open operation (the cursor), if any.
    pub next_seq: Option<u64>,
    /// Open operations.
    pub open: u64,
    /// Operations finished on that site.
    pub finished: u64,
    /// Deliveries tried for the cursor's operation.
    pub attempts: u32,
    /// Last error of the cursor's operation.
    pub error: Option<String>,
}

/// What removing a site changed.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Removal {
    /// Replicants (led here) the site was removed from.
    pub replicants: Vec<MetaId>,
    /// Open operations of that site dropped.
    pub dropped: u64,
    /// Sync operations appended (one per replicant that still has other replicas).
    pub sync_seqs: Vec<u64>,
    /// Spooled bodies no longer needed.
    pub release_bodies: Vec<String>,
}

/// What a removed site forgot about the system when it learnt of its removal.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Forgotten {
    /// Copies of replicants led by other sites, dropped.
    pub copies_dropped: u64,
    /// Replicants led here that kept this site's replica only.
    pub detached: Vec<MetaId>,
    /// Replicants led here without a replica here, dropped.
    pub led_dropped: u64,
    /// Open deliveries to other sites, dropped.
    pub dropped: u64,
    /// Spooled bodies no longer needed.
    pub release_bodies: Vec<String>,
}

/// One peer's acknowledgement of a removal (on the agent that received it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Notice {
    /// `pending` (not acknowledged yet) or `done`.
    pub state: String,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    pub updated_ms: u64,
}

/// A site removed from the system.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemovedSite {
    pub site: String,
    pub removed_ms: u64,
    /// The agent the removal was asked of.
    pub requested_at: String,
    /// On that agent: each peer told of the removal (empty elsewhere).
    pub notices: BTreeMap<String, Notice>,
}

/// An answer kept on a replica for deduplication.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// Sent to the instance, no answer recorded (the agent stopped meanwhile).
    InFlight { attempts: u32 },
    /// Answered.
    Done(Reply),
}

/// Filter for [`Db::ops`].
#[derive(Debug, Clone, Default)]
pub struct OpFilter {
    pub meta: Option<MetaId>,
    /// Only operations involving this site.
    pub site: Option<String>,
    /// Only operations still open somewhere (or on `site`).
    pub open_only: bool,
    /// Only seq > this.
    pub after: Option<u64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn corrupt(what: &str, v: &str) -> DbError {
    DbError::Corrupt(format!("{what}: unexpected value {v:?}"))
}

fn rank(s: ReplicaStatus) -> u8 {
    match s {
        ReplicaStatus::Pending => 0,
        ReplicaStatus::Ok | ReplicaStatus::Failed => 1,
        ReplicaStatus::Deleted => 2,
    }
}

impl Db {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> DbResult<Db> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // WAL + FULL: each commit appends to the WAL and fsyncs it before returning.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::Corrupt(format!(
                "journal_mode WAL refused (got {mode})"
            )));
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
        conn.execute_batch(SCHEMA)?;
        let v: Option<String> = conn
            .query_row("SELECT value FROM settings WHERE key='schema'", [], |r| {
                r.get(0)
            })
            .optional()?;
        match v {
            None => {
                conn.execute(
                    "INSERT INTO settings(key, value) VALUES ('schema', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )?;
            }
            Some(v) if v == SCHEMA_VERSION.to_string() => {}
            Some(v) => {
                return Err(DbError::Corrupt(format!(
                    "schema version {v}, this agent knows {SCHEMA_VERSION}"
                )))
            }
        }
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, AppendError>,
    ) -> Result<T, AppendError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    fn write_db<T>(&self, f: impl FnOnce(&Transaction<'_>) -> DbResult<T>) -> DbResult<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    // ---- reading -------------------------------------------------------------------------

    /// One replicant.
    pub fn replicant(&self, meta: &MetaId) -> DbResult<Option<Replicant>> {
        load_replicant(&self.lock(), meta)
    }

    /// Replicants in meta-id order, after `after`, at most `limit`.
    pub fn replicants(&self, after: Option<&MetaId>, limit: u32) -> DbResult<Vec<Replicant>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT meta FROM replicants WHERE meta > ?1 ORDER BY meta LIMIT ?2")?;
        let metas: Vec<String> = stmt
            .query_map(
                params![after.map(MetaId::as_str).unwrap_or(""), limit.min(1000)],
                |r| r.get(0),
            )?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            let meta = MetaId::parse(&m).ok_or_else(|| corrupt("meta", &m))?;
            if let Some(r) = load_replicant(&conn, &meta)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Whether a live replicant of `service` was created in `collection`
    /// (its list answers may hold local ids to hide).
    pub fn has_collection(&self, service: &str, collection: &str) -> DbResult<bool> {
        let conn = self.lock();
        let n: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM replicants WHERE service = ?1 AND collection = ?2
                   AND state IN ('active', 'deleting') LIMIT 1",
                params![service, collection],
                |r| r.get(0),
            )
            .optional()?;
        Ok(n.is_some())
    }

    /// The latest `limit` operations of this leader's log, newest first.
    pub fn recent_ops(&self, limit: u32) -> DbResult<Vec<Operation>> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT seq FROM ops ORDER BY seq DESC LIMIT ?1")?;
        let seqs: Vec<i64> = stmt
            .query_map([limit.min(1000)], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        load_ops(&conn, seqs)
    }

    /// The replicant whose live replica on `site` has local id `local`
    /// (text form) in `collection` of `service`.
    pub fn lookup_local(
        &self,
        service: &str,
        site: &str,
        collection: &str,
        local: &str,
    ) -> DbResult<Option<MetaId>> {
        let conn = self.lock();
        let m: Option<String> = conn
            .query_row(
                "SELECT p.meta FROM replicas p JOIN replicants r ON r.meta = p.meta
                 WHERE p.site = ?1 AND p.local_id = ?2 AND p.status = 'ok'
                   AND r.service = ?3 AND r.collection = ?4 AND r.state IN ('active', 'deleting')
                 ORDER BY r.created_ms DESC LIMIT 1",
                params![site, local, service, collection],
                |r| r.get(0),
            )
            .optional()?;
        m.map(|m| MetaId::parse(&m).ok_or_else(|| corrupt("meta", &m)))
            .transpose()
    }

    /// [`Db::lookup_local`] for many ids at once (list answers).
    pub fn lookup_locals(
        &self,
        service: &str,
        site: &str,
        collection: &str,
        locals: &[String],
    ) -> DbResult<HashMap<String, MetaId>> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT p.meta FROM replicas p JOIN replicants r ON r.meta = p.meta
             WHERE p.site = ?1 AND p.local_id = ?2 AND p.status = 'ok'
               AND r.service = ?3 AND r.collection = ?4 AND r.state IN ('active', 'deleting')
             ORDER BY r.created_ms DESC LIMIT 1",
        )?;
        let mut out = HashMap::new();
        for l in locals {
            if out.contains_key(l) {
                continue;
            }
            let m: Option<String> = stmt
                .query_row(params![site, l, service, collection], |r| r.get(0))
                .optional()?;
            if let Some(m) = m {
                out.insert(
                    l.clone(),
                    MetaId::parse(&m).ok_or_else(|| corrupt("meta", &m))?,
                );
            }
        }
        Ok(out)
    }

    /// One operation with its per-site states.
    pub fn op(&self, seq: u64) -> DbResult<Option<Operation>> {
        load_op(&self.lock(), seq)
    }

    /// Operations, oldest first.
    pub fn ops(&self, f: &OpFilter) -> DbResult<Vec<Operation>> {
        let conn = self.lock();
        let limit = f.limit.unwrap_or(100).min(1000);
        let mut sql = String::from("SELECT DISTINCT o.seq FROM ops o");
        let mut cond = vec!["o.seq > ?1".to_owned()];
        if f.site.is_some() || f.open_only {
            sql.push_str(" JOIN op_sites s ON s.seq = o.seq");
        }
        if f.meta.is_some() {
            cond.push("o.meta = ?2".into());
        }
        if f.site.is_some() {
            cond.push("s.site = ?3".into());
        }
        if f.open_only {
            cond.push("s.state IN ('pending', 'in_flight')".into());
        }
        sql.push_str(&format!(
            " WHERE {} ORDER BY o.seq LIMIT ?4",
            cond.join(" AND ")
        ));
        let mut stmt = conn.prepare(&sql)?;
        let seqs: Vec<i64> = stmt
            .query_map(
                params![
                    to_i64(f.after.unwrap_or(0)),
                    f.meta.as_ref().map(MetaId::as_str).unwrap_or(""),
                    f.site.as_deref().unwrap_or(""),
                    limit
                ],
                |r| r.get(0),
            )?
            .collect::<Result<_, _>>()?;
        load_ops(&conn, seqs)
    }

    /// The queue of every site that has operations.
    pub fn queues(&self) -> DbResult<BTreeMap<String, SiteQueue>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT site,
                    MIN(CASE WHEN state IN ('pending', 'in_flight') THEN seq END),
                    SUM(CASE WHEN state IN ('pending', 'in_flight') THEN 1 ELSE 0 END),
                    SUM(CASE WHEN state IN ('pending', 'in_flight') THEN 0 ELSE 1 END)
             FROM op_sites GROUP BY site ORDER BY site",
        )?;
        let rows: Vec<(String, Option<i64>, i64, i64)> = stmt
            .query_map([], tuple)?
            .collect::<Result<_, _>>()?;
        let mut out = BTreeMap::new();
        for (site, next, open, finished) in rows {
            let (attempts, error) = match next {
                Some(seq) => conn.query_row(
                    "SELECT attempts, error FROM op_sites WHERE seq = ?1 AND site = ?2",
                    params![seq, site],
                    |r| Ok((r.get::<_, u32>(0)?, r.get::<_, Option<String>>(1)?)),
                )?,
                None => (0, None),
            };
            out.insert(
                site,
                SiteQueue {
                    next_seq: next.map(to_u64),
                    open: to_u64(open),
                    finished: to_u64(finished),
                    attempts,
                    error,
                },
            );
        }
        Ok(out)
    }

    /// Sites with open operations.
    pub fn open_sites(&self) -> DbResult<Vec<String>> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT DISTINCT site FROM op_sites WHERE state IN ('pending', 'in_flight') ORDER BY site")?;
        let v = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// The first open operation of `site` (its cursor), with its replicant.
    pub fn next_open(&self, site: &str) -> DbResult<Option<(Operation, Replicant)>> {
        let conn = self.lock();
        let seq: Option<i64> = conn
            .query_row(
                "SELECT seq FROM op_sites WHERE site = ?1 AND state IN ('pending', 'in_flight') ORDER BY seq LIMIT 1",
                [site],
                |r| r.get(0),
            )
            .optional()?;
        let Some(seq) = seq else { return Ok(None) };
        let op = load_op(&conn, to_u64(seq))?
            .ok_or_else(|| corrupt("op_sites.seq", &seq.to_string()))?;
        let r = load_replicant(&conn, &op.meta)?
            .ok_or_else(|| corrupt("ops.meta", op.meta.as_str()))?;
        Ok(Some((op, r)))
    }

    /// Body files still needed by an open operation.
    pub fn open_body_files(&self) -> DbResult<HashSet<String>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT DISTINCT o.body_file FROM ops o JOIN op_sites s ON s.seq = o.seq
             WHERE o.body_file IS NOT NULL AND s.state IN ('pending', 'in_flight')",
        )?;
        let v = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    // ---- the leader's log ----------------------------------------------------------------

    /// Stores a new replicant (every replica pending) and its create
    /// operation, open on every target site. Nothing is sent before this
    /// returns.
    pub fn begin_create(&self, c: &NewCreate) -> Result<(Replicant, Operation), AppendError> {
        let mut sites: Vec<&String> = Vec::new();
        for s in &c.sites {
            if !sites.contains(&s) {
                sites.push(s);
            }
        }
        self.write(|tx| {
            tx.execute(
                "INSERT INTO replicants(meta, service, collection, leader, state, version, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, 'active', 1, ?5, ?5)",
                params![c.meta.as_str(), c.service, c.collection, c.leader, to_i64(c.now_ms)],
            )?;
            for s in &sites {
                tx.execute("INSERT INTO replicas(meta, site, status) VALUES (?1, ?2, 'pending')", params![c.meta.as_str(), s])?;
            }
            let seq = insert_op(
                tx,
                &c.meta,
                OpKind::Create,
                &c.method,
                "",
                c.query.as_deref(),
                &c.headers,
                c.body_file.as_deref(),
                c.body_len,
                &c.origin,
                c.now_ms,
                sites.iter().map(|s| s.as_str()),
            )?;
            let r = load_replicant(tx, &c.meta)?.ok_or_else(|| AppendError::Unknown)?;
            let op = load_op(tx, seq)?.ok_or_else(|| AppendError::Unknown)?;
            Ok((r, op))
        })
    }

    /// Appends an update or delete of a replicant led by `leader` (this
    /// site), open on every site whose replica is live or still pending.
    pub fn append(&self, leader: &str, n: &NewOp) -> Result<Operation, AppendError> {
        self.write(|tx| {
            let r = load_replicant(tx, &n.meta)?.ok_or(AppendError::Unknown)?;
            if r.leader != leader {
                return Err(AppendError::NotLeader(r.leader));
            }
            if r.state != ReplicantState::Active {
                return Err(AppendError::Gone(r.state));
            }
            let sites: Vec<&str> = r
                .replicas
                .iter()
                .filter(|(_, p)| matches!(p.status, ReplicaStatus::Ok | ReplicaStatus::Pending))
                .map(|(s, _)| s.as_str())
                .collect();
            if sites.is_empty() {
                return Err(AppendError::Gone(r.state));
            }
            let seq = insert_op(
                tx,
                &n.meta,
                n.kind,
                &n.method,
                &n.suffix,
                n.query.as_deref(),
                &n.headers,
                n.body_file.as_deref(),
                n.body_len,
                &n.origin,
                n.now_ms,
                sites.into_iter(),
            )?;
            if n.kind == OpKind::Delete {
                tx.execute(
                    "UPDATE replicants SET state = 'deleting', version = version + 1, updated_ms = ?2 WHERE meta = ?1",
                    params![n.meta.as_str(), to_i64(n.now_ms)],
                )?;
            }
            load_op(tx, seq)?.ok_or(AppendError::Unknown)
        })
    }

    /// Marks a delivery as sent (attempts + 1) and returns the attempt number.
    pub fn start_attempt(&self, seq: u64, site: &str, now_ms: u64) -> DbResult<u32> {
        self.write_db(|tx| {
            tx.execute(
                "UPDATE op_sites SET state = 'in_flight', attempts = attempts + 1, updated_ms = ?3
                 WHERE seq = ?1 AND site = ?2 AND state IN ('pending', 'in_flight')",
                params![to_i64(seq), site, to_i64(now_ms)],
            )?;
            let a: Option<u32> = tx
                .query_row(
                    "SELECT attempts FROM op_sites WHERE seq = ?1 AND site = ?2",
                    params![to_i64(seq), site],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(a.unwrap_or(0))
        })
    }

    /// Records how a delivery of `seq` to `site` ended, and what follows
    /// from it on the replicant (local id learned, replica failed or
    /// deleted, replicant finished, sync appended).
    pub fn finish(&self, seq: u64, site: &str, how: &Finish, now_ms: u64) -> DbResult<Finished> {
        self.write_db(|tx| {
            let Some(op) = load_op(tx, seq)? else {
                return Ok(Finished::default());
            };
            let cur = op.sites.get(site).map(|s| s.state);
            if !cur.is_some_and(OpState::is_open) {
                // Already finished (a duplicate answer) or dropped: nothing to record.
                return Ok(Finished::default());
            }
            let now = to_i64(now_ms);
            let meta = op.meta.as_str();
            let mut changed = false;
            match how {
                Finish::Retry(e) => {
                    tx.execute(
                        "UPDATE op_sites SET state = 'pending', error = ?3, updated_ms = ?4 WHERE seq = ?1 AND site = ?2",
                        params![to_i64(seq), site, e, now],
                    )?;
                    return Ok(Finished::default());
                }
                Finish::Skipped(why) => {
                    tx.execute(
                        "UPDATE op_sites SET state = 'skipped', error = ?3, updated_ms = ?4 WHERE seq = ?1 AND site = ?2",
                        params![to_i64(seq), site, why, now],
                    )?;
                }
                Finish::Applied { status, created } => {
                    tx.execute(
                        "UPDATE op_sites SET state = 'done', status = ?3, error = NULL, updated_ms = ?4 WHERE seq = ?1 AND site = ?2",
                        params![to_i64(seq), site, status, now],
                    )?;
                    match (op.kind, created) {
                        (OpKind::Create, Some(Ok(id))) => {
                            let json = serde_json::to_string(id).map_err(|e| DbError::Corrupt(e.to_string()))?;
                            tx.execute(
                                "UPDATE replicas SET status = 'ok', local_id = ?3, local_id_json = ?4, error = NULL
                                 WHERE meta = ?1 AND site = ?2",
                                params![meta, site, id.text(), json],
                            )?;
                            changed = true;
                        }
                        (OpKind::Create, Some(Err(e))) => {
                            tx.execute(
                                "UPDATE replicas SET status = 'failed', error = ?3 WHERE meta = ?1 AND site = ?2",
                                params![meta, site, e],
                            )?;
                            changed = true;
                        }
                        (OpKind::Create, None) => {
                            tx.execute(
                                "UPDATE replicas SET status = 'failed', error = ?3 WHERE meta = ?1 AND site = ?2",
                                params![meta, site, format!("create answered {status}")],
                            )?;
                            changed = true;
                        }
                        (OpKind::Delete, _) if (200..300).contains(status) || *status == 404 || *status == 410 => {
                            tx.execute(
                                "UPDATE replicas SET status = 'deleted' WHERE meta = ?1 AND site = ?2",
                                params![meta, site],
                            )?;
                            changed = true;
                        }
                        _ => {}
                    }
                }
            }
            let mut out = Finished::default();
            let open: i64 = tx.query_row(
                "SELECT COUNT(*) FROM op_sites WHERE seq = ?1 AND state IN ('pending', 'in_flight')",
                [to_i64(seq)],
                |r| r.get(0),
            )?;
            out.op_finished = open == 0;
            if out.op_finished {
                out.release_body = op.body_file.clone();
                let r = load_replicant(tx, &op.meta)?.ok_or_else(|| corrupt("ops.meta", meta))?;
                let live = r.replicas.values().filter(|p| p.status == ReplicaStatus::Ok).count();
                let new_state = match (op.kind, r.state) {
                    (OpKind::Create, ReplicantState::Active) if live == 0 => Some(ReplicantState::Failed),
                    (OpKind::Delete, ReplicantState::Deleting) if live == 0 => Some(ReplicantState::Deleted),
                    // Some instance refused the delete: the resource lives on there.
                    (OpKind::Delete, ReplicantState::Deleting) => Some(ReplicantState::Active),
                    _ => None,
                };
                if let Some(s) = new_state {
                    tx.execute("UPDATE replicants SET state = ?2 WHERE meta = ?1", params![meta, s.as_str()])?;
                    changed = true;
                }
            }
            if changed {
                tx.execute(
                    "UPDATE replicants SET version = version + 1, updated_ms = ?2 WHERE meta = ?1",
                    params![meta, now],
                )?;
            }
            let r = load_replicant(tx, &op.meta)?.ok_or_else(|| corrupt("ops.meta", meta))?;
            // Once a create or delete is finished everywhere, the other sites learn the final
            // mapping (Cheops' step 6) through one sync operation.
            if out.op_finished && matches!(op.kind, OpKind::Create | OpKind::Delete) {
                let sites: Vec<String> = r.replicas.keys().filter(|s| **s != r.leader).cloned().collect();
                if !sites.is_empty() {
                    out.sync_seq = Some(append_sync(tx, &r, &sites, now_ms)?);
                    out.sync_sites = sites;
                }
            }
            out.replicant = Some(r);
            Ok(out)
        })
    }

    /// After a restart: every delivery that was in flight is pending again
    /// (it will be sent again: at least once). Returns how many.
    pub fn recover(&self) -> DbResult<u64> {
        self.write_db(|tx| {
            let n = tx.execute(
                "UPDATE op_sites SET state = 'pending' WHERE state = 'in_flight'",
                [],
            )?;
            Ok(n as u64)
        })
    }

    /// Removes `site` from every replicant led by `leader`: its replica
    /// entry goes, its open operations are dropped, the remaining replicas
    /// get a sync operation.
    pub fn remove_site(&self, leader: &str, site: &str, now_ms: u64) -> DbResult<Removal> {
        self.write_db(|tx| {
            let mut out = Removal::default();
            let metas: Vec<String> = {
                let mut stmt = tx.prepare(
                    "SELECT r.meta FROM replicants r JOIN replicas p ON p.meta = r.meta
                     WHERE r.leader = ?1 AND p.site = ?2 ORDER BY r.meta",
                )?;
                let v = stmt.query_map(params![leader, site], |r| r.get(0))?.collect::<Result<_, _>>()?;
                v
            };
            for m in metas {
                let meta = MetaId::parse(&m).ok_or_else(|| corrupt("meta", &m))?;
                tx.execute("DELETE FROM replicas WHERE meta = ?1 AND site = ?2", params![m, site])?;
                tx.execute(
                    "UPDATE replicants SET version = version + 1, updated_ms = ?2 WHERE meta = ?1",
                    params![m, to_i64(now_ms)],
                )?;
                let r = load_replicant(tx, &meta)?.ok_or_else(|| corrupt("meta", &m))?;
                let sites: Vec<String> = r.replicas.keys().filter(|s| **s != r.leader).cloned().collect();
                if !sites.is_empty() {
                    out.sync_seqs.push(append_sync(tx, &r, &sites, now_ms)?);
                }
                out.replicants.push(meta);
            }
            // Drop the site's open operations of replicants led here.
            let (dropped, bodies) = drop_open_deliveries(tx, leader, |s| s == site, now_ms)?;
            out.dropped = dropped;
            out.release_bodies = bodies;
            Ok(out)
        })
    }

    // ---- sites removed from the system ---------------------------------------------------

    /// Records that `site` is removed from the system (asked of the agent of
    /// `requested_at`); `notify`: the peers this agent must tell (empty when
    /// the removal came from another agent). Idempotent: a second call keeps
    /// the first record and adds missing notices. Returns whether the site
    /// was new here.
    pub fn record_removal(
        &self,
        site: &str,
        requested_at: &str,
        notify: &[String],
        now_ms: u64,
    ) -> DbResult<bool> {
        self.write_db(|tx| {
            let n = tx.execute(
                "INSERT OR IGNORE INTO removed_sites(site, removed_ms, requested_at) VALUES (?1, ?2, ?3)",
                params![site, to_i64(now_ms), requested_at],
            )?;
            for p in notify {
                tx.execute(
                    "INSERT OR IGNORE INTO removal_notices(site, peer, state, updated_ms) VALUES (?1, ?2, 'pending', ?3)",
                    params![site, p, to_i64(now_ms)],
                )?;
            }
            Ok(n > 0)
        })
    }

    /// Every site removed from the system, with the notices this agent sends.
    pub fn removed_sites(&self) -> DbResult<Vec<RemovedSite>> {
        let conn = self.lock();
        let mut out: Vec<RemovedSite> = {
            let mut stmt = conn.prepare(
                "SELECT site, removed_ms, requested_at FROM removed_sites ORDER BY site",
            )?;
            let v = stmt
                .query_map([], |r| {
                    Ok(RemovedSite {
                        site: r.get(0)?,
                        removed_ms: to_u64(r.get(1)?),
                        requested_at: r.get(2)?,
                        notices: BTreeMap::new(),
                    })
                })?
                .collect::<Result<_, _>>()?;
            v
        };
        let mut stmt = conn.prepare(
            "SELECT peer, state, attempts, error, updated_ms FROM removal_notices WHERE site = ?1 ORDER BY peer",
        )?;
        for r in &mut out {
            let rows: Vec<(String, Notice)> = stmt
                .query_map([&r.site], |row| {
                    Ok((
                        row.get(0)?,
                        Notice {
                            state: row.get(1)?,
                            attempts: row.get(2)?,
                            error: row.get(3)?,
                            updated_ms: to_u64(row.get(4)?),
                        },
                    ))
                })?
                .collect::<Result<_, _>>()?;
            r.notices = rows.into_iter().collect();
        }
        Ok(out)
    }

    /// The notices not acknowledged yet: (removed site, peer to tell).
    pub fn pending_notices(&self) -> DbResult<Vec<(String, String)>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT site, peer FROM removal_notices WHERE state = 'pending' ORDER BY site, peer",
        )?;
        let v = stmt
            .query_map([], tuple)?
            .collect::<Result<_, _>>()?;
        Ok(v)
    }

    /// Records one attempt to tell `peer` that `site` is removed: acknowledged
    /// (`error` = `None`) or failed.
    pub fn notice_attempt(
        &self,
        site: &str,
        peer: &str,
        error: Option<&str>,
        now_ms: u64,
    ) -> DbResult<()> {
        self.write_db(|tx| {
            tx.execute(
                "UPDATE removal_notices SET attempts = attempts + 1, updated_ms = ?3,
                   state = CASE WHEN ?4 IS NULL THEN 'done' ELSE 'pending' END, error = ?4
                 WHERE site = ?1 AND peer = ?2",
                params![site, peer, to_i64(now_ms), error],
            )?;
            Ok(())
        })
    }

    /// This site (`own`) was removed from the system: copies of replicants
    /// led elsewhere are dropped (with their deduplication records); the
    /// replicants led here keep this site's replica only (the others' entries
    /// and open deliveries go), or are dropped when they have none here.
    pub fn forget_system(&self, own: &str, now_ms: u64) -> DbResult<Forgotten> {
        self.write_db(|tx| {
            let mut out = Forgotten {
                copies_dropped: tx
                    .execute("DELETE FROM replicants WHERE leader != ?1", [own])?
                    as u64,
                ..Forgotten::default()
            };
            tx.execute("DELETE FROM applied WHERE leader != ?1", [own])?;
            let (dropped, bodies) = drop_open_deliveries(tx, own, |s| s != own, now_ms)?;
            out.dropped = dropped;
            out.release_bodies = bodies;
            let led: Vec<(String, i64)> = {
                let mut stmt = tx.prepare(
                    "SELECT r.meta, (SELECT COUNT(*) FROM replicas p WHERE p.meta = r.meta AND p.site = ?1)
                     FROM replicants r
                     WHERE r.leader = ?1 AND EXISTS (SELECT 1 FROM replicas p WHERE p.meta = r.meta AND p.site != ?1)
                     ORDER BY r.meta",
                )?;
                let v = stmt.query_map([own], tuple)?.collect::<Result<_, _>>()?;
                v
            };
            for (m, here) in led {
                if here == 0 {
                    tx.execute("DELETE FROM replicants WHERE meta = ?1", [&m])?;
                    out.led_dropped += 1;
                } else {
                    tx.execute(
                        "DELETE FROM replicas WHERE meta = ?1 AND site != ?2",
                        params![m, own],
                    )?;
                    tx.execute(
                        "UPDATE replicants SET version = version + 1, updated_ms = ?2 WHERE meta = ?1",
                        params![m, to_i64(now_ms)],
                    )?;
                    out.detached
                        .push(MetaId::parse(&m).ok_or_else(|| corrupt("meta", &m))?);
                }
            }
            Ok(out)
        })
    }

    // ---- replica side --------------------------------------------------------------------

    /// Stores a copy of a replicant sent by its leader. A copy older than
    /// the stored one is ignored; the entry of `own_site` keeps what this
    /// site learnt itself when it is further along. The leader's own
    /// record is never touched here.
    pub fn store_copy(&self, r: &Replicant, own_site: &str) -> DbResult<bool> {
        if r.leader == own_site {
            return Ok(false);
        }
        self.write_db(|tx| {
            let existing = load_replicant(tx, &r.meta)?;
            if let Some(e) = &existing {
                if e.version > r.version {
                    return Ok(false);
                }
            }
            let mut merged = r.clone();
            if let (Some(e), Some(mine)) = (
                existing.as_ref().and_then(|e| e.replicas.get(own_site)),
                merged.replicas.get_mut(own_site),
            ) {
                if rank(e.status) > rank(mine.status)
                    || (mine.local_id.is_none() && e.local_id.is_some())
                {
                    *mine = e.clone();
                }
            }
            save_replicant(tx, &merged)?;
            Ok(true)
        })
    }

    /// Records what this site's instance did with its replica (on a
    /// non-leader site: the local id after a create, `deleted` after a delete).
    pub fn set_own_replica(
        &self,
        meta: &MetaId,
        own_site: &str,
        replica: &Replica,
    ) -> DbResult<()> {
        self.write_db(|tx| {
            let Some(mut r) = load_replicant(tx, meta)? else {
                return Ok(());
            };
            if r.leader == own_site {
                return Ok(());
            }
            r.replicas.insert(own_site.to_owned(), replica.clone());
            save_replicant(tx, &r)
        })
    }

    /// The recorded answer to delivery (`leader`, `seq`), if any.
    pub fn applied(&self, leader: &str, seq: u64) -> DbResult<Option<Applied>> {
        let conn = self.lock();
        let row: Option<AppliedRow> = conn
            .query_row(
                "SELECT state, attempts, status, headers, body, truncated FROM applied WHERE leader = ?1 AND seq = ?2",
                params![leader, to_i64(seq)],
                tuple,
            )
            .optional()?;
        let Some((state, attempts, status, headers, body, truncated)) = row else {
            return Ok(None);
        };
        if state != "done" {
            return Ok(Some(Applied::InFlight { attempts }));
        }
        let headers: Vec<(String, String)> = match headers {
            Some(h) => serde_json::from_str(&h)
                .map_err(|e| DbError::Corrupt(format!("applied.headers: {e}")))?,
            None => Vec::new(),
        };
        Ok(Some(Applied::Done(Reply {
            status: status.unwrap_or(0),
            headers,
            body: Bytes::from(body.unwrap_or_default()),
            truncated: truncated.map(to_u64),
        })))
    }

    /// Marks delivery (`leader`, `seq`) as being sent to the instance.
    pub fn applied_begin(
        &self,
        leader: &str,
        seq: u64,
        meta: &MetaId,
        now_ms: u64,
    ) -> DbResult<u32> {
        self.write_db(|tx| {
            tx.execute(
                "INSERT INTO applied(leader, seq, meta, state, attempts, updated_ms) VALUES (?1, ?2, ?3, 'in_flight', 1, ?4)
                 ON CONFLICT(leader, seq) DO UPDATE SET attempts = attempts + 1, updated_ms = ?4",
                params![leader, to_i64(seq), meta.as_str(), to_i64(now_ms)],
            )?;
            let a = tx.query_row(
                "SELECT attempts FROM applied WHERE leader = ?1 AND seq = ?2",
                params![leader, to_i64(seq)],
                |r| r.get(0),
            )?;
            Ok(a)
        })
    }

    /// Records the instance's answer to delivery (`leader`, `seq`); bodies
    /// over `max_body` are not kept (a replay then says it was truncated).
    pub fn applied_finish(
        &self,
        leader: &str,
        seq: u64,
        meta: &MetaId,
        reply: &Reply,
        max_body: usize,
        now_ms: u64,
    ) -> DbResult<()> {
        let headers =
            serde_json::to_string(&reply.headers).map_err(|e| DbError::Corrupt(e.to_string()))?;
        let (body, truncated) = if reply.body.len() <= max_body {
            (Some(reply.body.to_vec()), reply.truncated.map(to_i64))
        } else {
            (None, Some(to_i64(reply.body.len() as u64)))
        };
        self.write_db(|tx| {
            tx.execute(
                "INSERT INTO applied(leader, seq, meta, state, attempts, status, headers, body, truncated, updated_ms)
                 VALUES (?1, ?2, ?8, 'done', 1, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(leader, seq) DO UPDATE SET state = 'done', status = ?3, headers = ?4, body = ?5,
                     truncated = ?6, updated_ms = ?7",
                params![leader, to_i64(seq), reply.status, headers, body, truncated, to_i64(now_ms), meta.as_str()],
            )?;
            Ok(())
        })
    }

    /// The leader says every delivery up to `upto` was answered: forget them.
    pub fn applied_ack(&self, leader: &str, upto: u64) -> DbResult<u64> {
        self.write_db(|tx| {
            let n = tx.execute(
                "DELETE FROM applied WHERE leader = ?1 AND seq <= ?2 AND state = 'done'",
                params![leader, to_i64(upto)],
            )?;
            Ok(n as u64)
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn insert_op<'a>(
    tx: &Transaction<'_>,
    meta: &MetaId,
    kind: OpKind,
    method: &str,
    suffix: &str,
    query: Option<&str>,
    headers: &[(String, String)],
    body_file: Option<&str>,
    body_len: u64,
    origin: &str,
    now_ms: u64,
    sites: impl Iterator<Item = &'a str>,
) -> DbResult<u64> {
    let headers = serde_json::to_string(headers).map_err(|e| DbError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO ops(meta, kind, method, suffix, query, headers, body_file, body_len, origin, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            meta.as_str(),
            kind.as_str(),
            method,
            suffix,
            query,
            headers,
            body_file,
            to_i64(body_len),
            origin,
            to_i64(now_ms)
        ],
    )?;
    let seq = tx.last_insert_rowid();
    for s in sites {
        tx.execute(
            "INSERT INTO op_sites(seq, site, state, updated_ms) VALUES (?1, ?2, 'pending', ?3)",
            params![seq, s, to_i64(now_ms)],
        )?;
    }
    Ok(to_u64(seq))
}

fn append_sync(
    tx: &Transaction<'_>,
    r: &Replicant,
    sites: &[String],
    now_ms: u64,
) -> DbResult<u64> {
    insert_op(
        tx,
        &r.meta,
        OpKind::Sync,
        "",
        "",
        None,
        &[],
        None,
        0,
        &r.leader,
        now_ms,
        sites.iter().map(String::as_str),
    )
}

/// Marks the open deliveries of replicants led by `leader` to the sites
/// `which` selects as `dropped`; returns how many, and the spooled bodies no
/// open delivery needs any more.
fn drop_open_deliveries(
    tx: &Transaction<'_>,
    leader: &str,
    which: impl Fn(&str) -> bool,
    now_ms: u64,
) -> DbResult<(u64, Vec<String>)> {
    let rows: Vec<(i64, String, Option<String>)> = {
        let mut stmt = tx.prepare(
            "SELECT s.seq, s.site, o.body_file FROM op_sites s JOIN ops o ON o.seq = s.seq
             JOIN replicants r ON r.meta = o.meta
             WHERE r.leader = ?1 AND s.state IN ('pending', 'in_flight') ORDER BY s.seq",
        )?;
        let v = stmt
            .query_map([leader], tuple)?
            .collect::<Result<_, _>>()?;
        v
    };
    let (mut dropped, mut bodies) = (0, Vec::new());
    for (seq, site, body) in rows.into_iter().filter(|(_, s, _)| which(s)) {
        tx.execute(
            "UPDATE op_sites SET state = 'dropped', error = 'site removed', updated_ms = ?3 WHERE seq = ?1 AND site = ?2",
            params![seq, site, to_i64(now_ms)],
        )?;
        dropped += 1;
        let open: i64 = tx.query_row(
            "SELECT COUNT(*) FROM op_sites WHERE seq = ?1 AND state IN ('pending', 'in_flight')",
            [seq],
            |r| r.get(0),
        )?;
        if open == 0 {
            if let Some(b) = body {
                if !bodies.contains(&b) {
                    bodies.push(b);
                }
            }
        }
    }
    Ok((dropped, bodies))
}

fn save_replicant(tx: &Transaction<'_>, r: &Replicant) -> DbResult<()> {
    tx.execute(
        "INSERT INTO replicants(meta, service, collection, leader, state, version, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(meta) DO UPDATE SET service = ?2, collection = ?3, leader = ?4, state = ?5, version = ?6,
             created_ms = ?7, updated_ms = ?8",
        params![
            r.meta.as_str(),
            r.service,
            r.collection,
            r.leader,
            r.state.as_str(),
            to_i64(r.version),
            to_i64(r.created_ms),
            to_i64(r.updated_ms)
        ],
    )?;
    tx.execute("DELETE FROM replicas WHERE meta = ?1", [r.meta.as_str()])?;
    for (site, p) in &r.replicas {
        let json = p
            .local_id
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| DbError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO replicas(meta, site, local_id, local_id_json, status, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![r.meta.as_str(), site, p.local_id.as_ref().map(LocalId::text), json, p.status.as_str(), p.error],
        )?;
    }
    Ok(())
}

fn load_replicant(conn: &Connection, meta: &MetaId) -> DbResult<Option<Replicant>> {
    let row: Option<(String, String, String, String, i64, i64, i64)> = conn
        .query_row(
            "SELECT service, collection, leader, state, version, created_ms, updated_ms FROM replicants WHERE meta = ?1",
            [meta.as_str()],
            tuple,
        )
        .optional()?;
    let Some((service, collection, leader, state, version, created, updated)) = row else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT site, local_id_json, status, error FROM replicas WHERE meta = ?1 ORDER BY site",
    )?;
    let rows: Vec<(String, Option<String>, String, Option<String>)> = stmt
        .query_map([meta.as_str()], tuple)?
        .collect::<Result<_, _>>()?;
    let mut replicas = BTreeMap::new();
    for (site, json, status, error) in rows {
        let local_id = match json {
            Some(j) => Some(
                serde_json::from_str(&j)
                    .map_err(|e| DbError::Corrupt(format!("replicas.local_id_json: {e}")))?,
            ),
            None => None,
        };
        let status =
            ReplicaStatus::parse(&status).ok_or_else(|| corrupt("replicas.status", &status))?;
        replicas.insert(
            site,
            Replica {
                local_id,
                status,
                error,
            },
        );
    }
    Ok(Some(Replicant {
        meta: meta.clone(),
        service,
        collection,
        leader,
        state: ReplicantState::parse(&state).ok_or_else(|| corrupt("replicants.state", &state))?,
        version: to_u64(version),
        created_ms: to_u64(created),
        updated_ms: to_u64(updated),
        replicas,
    }))
}

/// A row as the tuple of its columns, in order (each converted by rusqlite).
fn tuple<T>(r: &Row<'_>) -> rusqlite::Result<T>
where
    T: for<'a> TryFrom<&'a Row<'a>, Error = rusqlite::Error>,
{
    T::try_from(r)
}

/// The operations `seqs`, in that order (a sequence number with no operation is skipped).
fn load_ops(conn: &Connection, seqs: Vec<i64>) -> DbResult<Vec<Operation>> {
    let mut out = Vec::with_capacity(seqs.len());
    for s in seqs {
        if let Some(op) = load_op(conn, to_u64(s))? {
            out.push(op);
        }
    }
    Ok(out)
}

fn load_op(conn: &Connection, seq: u64) -> DbResult<Option<Operation>> {
    type Row = (
        String,
        String,
        String,
        String,
        Option<String>,
        String,
        Option<String>,
        i64,
        String,
        i64,
    );
    let row: Option<Row> = conn
        .query_row(
            "SELECT meta, kind, method, suffix, query, headers, body_file, body_len, origin, created_ms FROM ops WHERE seq = ?1",
            [to_i64(seq)],
            tuple,
        )
        .optional()?;
    let Some((meta, kind, method, suffix, query, headers, body_file, body_len, origin, created)) =
        row
    else {
        return Ok(None);
    };
    let mut stmt =
        conn.prepare_cached("SELECT site, state, attempts, status, error, updated_ms FROM op_sites WHERE seq = ?1 ORDER BY site")?;
    let rows: Vec<OpSiteRow> = stmt
        .query_map([to_i64(seq)], tuple)?
        .collect::<Result<_, _>>()?;
    let mut sites = BTreeMap::new();
    for (site, state, attempts, status, error, updated) in rows {
        let state = OpState::parse(&state).ok_or_else(|| corrupt("op_sites.state", &state))?;
        sites.insert(
            site,
            OpSite {
                state,
                attempts,
                status,
                error,
                updated_ms: to_u64(updated),
            },
        );
    }
    Ok(Some(Operation {
        seq,
        meta: MetaId::parse(&meta).ok_or_else(|| corrupt("ops.meta", &meta))?,
        kind: OpKind::parse(&kind).ok_or_else(|| corrupt("ops.kind", &kind))?,
        method,
        suffix,
        query,
        headers: serde_json::from_str(&headers)
            .map_err(|e| DbError::Corrupt(format!("ops.headers: {e}")))?,
        body_file,
        body_len: to_u64(body_len),
        origin,
        created_ms: to_u64(created),
        sites,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("r.sqlite3")).unwrap();
        (dir, db)
    }

    fn meta(n: u128) -> MetaId {
        MetaId::from_u128(n)
    }

    fn create(db: &Db, m: &MetaId, sites: &[&str]) -> Operation {
        db.begin_create(&NewCreate {
            meta: m.clone(),
            service: "image".into(),
            collection: "/images".into(),
            leader: "A".into(),
            sites: sites.iter().map(|s| s.to_string()).collect(),
            method: "POST".into(),
            query: None,
            headers: vec![("content-type".into(), "application/json".into())],
            body_file: Some("b1".into()),
            body_len: 10,
            origin: "A".into(),
            now_ms: 1000,
        })
        .unwrap()
        .1
    }

    fn update(db: &Db, m: &MetaId, kind: OpKind) -> Result<Operation, AppendError> {
        db.append(
            "A",
            &NewOp {
                meta: m.clone(),
                kind,
                method: if kind == OpKind::Delete {
                    "DELETE".into()
                } else {
                    "PUT".into()
                },
                suffix: String::new(),
                query: None,
                headers: vec![],
                body_file: None,
                body_len: 0,
                origin: "B".into(),
                now_ms: 2000,
            },
        )
    }

    fn ok(status: u16, id: serde_json::Value) -> Finish {
        Finish::Applied {
            status,
            created: Some(Ok(LocalId::from_json(&id).unwrap())),
        }
    }

    #[test]
    fn create_then_ids_then_sync_and_lookups() {
        let (_d, db) = db();
        let m = meta(1 << 90);
        let op = create(&db, &m, &["A", "B", "A"]);
        assert_eq!(op.seq, 1);
        assert_eq!(
            op.sites.keys().collect::<Vec<_>>(),
            ["A", "B"],
            "duplicates dropped"
        );
        let r = db.replicant(&m).unwrap().unwrap();
        assert_eq!(
            (r.leader.as_str(), r.version, r.state),
            ("A", 1, ReplicantState::Active)
        );
        assert!(r
            .replicas
            .values()
            .all(|p| p.status == ReplicaStatus::Pending));
        assert_eq!(db.next_open("A").unwrap().unwrap().0.seq, 1);

        assert_eq!(db.start_attempt(1, "A", 1100).unwrap(), 1);
        let f = db.finish(1, "A", &ok(201, json!(42)), 1200).unwrap();
        assert!(!f.op_finished && f.sync_seq.is_none());
        assert_eq!(
            db.lookup_local("image", "A", "/images", "42").unwrap(),
            Some(m.clone())
        );
        assert_eq!(
            db.lookup_local("image", "A", "/other", "42").unwrap(),
            None,
            "collection matters"
        );
        assert_eq!(
            db.lookup_local("image", "B", "/images", "42").unwrap(),
            None,
            "site matters"
        );
        // A second answer to the same delivery changes nothing.
        assert_eq!(
            db.finish(1, "A", &ok(201, json!(43)), 1250).unwrap(),
            Finished::default()
        );

        let f = db.finish(1, "B", &ok(201, json!("k6")), 1300).unwrap();
        assert!(f.op_finished);
        assert_eq!(f.release_body.as_deref(), Some("b1"));
        assert_eq!(f.sync_seq, Some(2));
        assert_eq!(f.sync_sites, ["B"]);
        let r = f.replicant.unwrap();
        assert_eq!(r.local_id("A").unwrap().json(), &json!(42));
        assert_eq!(r.local_id("B").unwrap().json(), &json!("k6"));
        assert_eq!(r.version, 3);
        assert_eq!(r.path_on("B", "/tags").as_deref(), Some("/images/k6/tags"));
        assert_eq!(db.next_open("A").unwrap(), None);
        assert_eq!(db.next_open("B").unwrap().unwrap().0.kind, OpKind::Sync);
        let many = db
            .lookup_locals("image", "B", "/images", &["k6".into(), "zz".into()])
            .unwrap();
        assert_eq!(many.len(), 1);
        assert_eq!(db.replicants(None, 10).unwrap().len(), 1);
    }

    #[test]
    fn log_order_per_site_retries_and_recovery() {
        let (_d, db) = db();
        let m = meta(7 << 80);
        create(&db, &m, &["A", "B"]);
        db.finish(1, "A", &ok(201, json!(1)), 1).unwrap();
        let u = update(&db, &m, OpKind::Update).unwrap();
        assert_eq!(u.seq, 2);
        assert_eq!(
            u.sites.keys().collect::<Vec<_>>(),
            ["A", "B"],
            "pending replica B included"
        );
        // B is down: its cursor stays on the create.
        db.start_attempt(1, "B", 2).unwrap();
        db.finish(1, "B", &Finish::Retry("connection refused".into()), 3)
            .unwrap();
        let q = db.queues().unwrap();
        assert_eq!(q["B"].next_seq, Some(1));
        assert_eq!(q["B"].open, 2);
        assert_eq!(q["B"].attempts, 1);
        assert_eq!(q["B"].error.as_deref(), Some("connection refused"));
        assert_eq!(q["A"].next_seq, Some(2));
        // A crash while in flight: pending again after recovery, attempts kept.
        db.start_attempt(1, "B", 4).unwrap();
        assert_eq!(
            db.op(1).unwrap().unwrap().sites["B"].state,
            OpState::InFlight
        );
        assert_eq!(db.recover().unwrap(), 1);
        let op = db.op(1).unwrap().unwrap();
        assert_eq!(
            (op.sites["B"].state, op.sites["B"].attempts),
            (OpState::Pending, 2)
        );
        assert_eq!(db.open_sites().unwrap(), ["A", "B"]);
        assert_eq!(db.open_body_files().unwrap().len(), 1);
        db.finish(1, "B", &ok(201, json!(9)), 5).unwrap();
        assert_eq!(
            db.next_open("B").unwrap().unwrap().0.seq,
            2,
            "then the update, in order"
        );
        let all = db
            .ops(&OpFilter {
                site: Some("B".into()),
                open_only: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            all.iter().map(|o| o.seq).collect::<Vec<_>>(),
            [2, 3],
            "update and the sync"
        );
    }

    #[test]
    fn failed_creates_deletes_and_gone_replicants() {
        let (_d, db) = db();
        let m = meta(9 << 80);
        create(&db, &m, &["A", "B"]);
        db.finish(1, "A", &ok(201, json!(1)), 1).unwrap();
        db.finish(
            1,
            "B",
            &Finish::Applied {
                status: 201,
                created: Some(Err("no id".into())),
            },
            2,
        )
        .unwrap();
        let r = db.replicant(&m).unwrap().unwrap();
        assert_eq!(r.replicas["B"].status, ReplicaStatus::Failed);
        assert_eq!(r.state, ReplicantState::Active);
        let u = update(&db, &m, OpKind::Update).unwrap();
        assert_eq!(
            u.sites.keys().collect::<Vec<_>>(),
            ["A"],
            "failed replica not included"
        );
        assert!(
            matches!(db.append("B", &NewOp { meta: m.clone(), ..dummy_op() }), Err(AppendError::NotLeader(l)) if l == "A")
        );
        assert!(matches!(
            db.append(
                "A",
                &NewOp {
                    meta: meta(5),
                    ..dummy_op()
                }
            ),
            Err(AppendError::Unknown)
        ));
        let d = update(&db, &m, OpKind::Delete).unwrap();
        assert_eq!(
            db.replicant(&m).unwrap().unwrap().state,
            ReplicantState::Deleting
        );
        assert!(matches!(
            update(&db, &m, OpKind::Update),
            Err(AppendError::Gone(ReplicantState::Deleting))
        ));
        db.finish(
            u.seq,
            "A",
            &Finish::Applied {
                status: 200,
                created: None,
            },
            3,
        )
        .unwrap();
        // A delete answered 404 (already gone: a re-sent delete) counts as deleted.
        let f = db
            .finish(
                d.seq,
                "A",
                &Finish::Applied {
                    status: 404,
                    created: None,
                },
                4,
            )
            .unwrap();
        assert!(f.op_finished);
        let r = f.replicant.unwrap();
        assert_eq!(r.state, ReplicantState::Deleted);
        assert_eq!(
            db.lookup_local("image", "A", "/images", "1").unwrap(),
            None,
            "a reused local id is not this replicant"
        );
        // All creates failing: the replicant failed.
        let m2 = meta(10 << 80);
        create(&db, &m2, &["A"]);
        let seq = db.next_open("A").unwrap().unwrap().0.seq;
        db.finish(
            seq,
            "A",
            &Finish::Applied {
                status: 400,
                created: None,
            },
            5,
        )
        .unwrap();
        assert_eq!(
            db.replicant(&m2).unwrap().unwrap().state,
            ReplicantState::Failed
        );
    }

    fn dummy_op() -> NewOp {
        NewOp {
            meta: meta(0),
            kind: OpKind::Update,
            method: "PUT".into(),
            suffix: String::new(),
            query: None,
            headers: vec![],
            body_file: None,
            body_len: 0,
            origin: "A".into(),
            now_ms: 0,
        }
    }

    #[test]
    fn removing_a_site_drops_its_queue_and_syncs_the_others() {
        let (_d, db) = db();
        let (m1, m2) = (meta(1 << 81), meta(2 << 81));
        create(&db, &m1, &["A", "B", "C"]);
        create(&db, &m2, &["A", "C"]);
        let rm = db.remove_site("A", "C", 50).unwrap();
        assert_eq!(rm.replicants, [m1.clone(), m2.clone()]);
        assert_eq!(rm.dropped, 2);
        assert_eq!(
            rm.sync_seqs.len(),
            1,
            "m2 has no replica left but the leader's"
        );
        assert!(!db
            .replicant(&m1)
            .unwrap()
            .unwrap()
            .replicas
            .contains_key("C"));
        assert_eq!(
            db.op(1).unwrap().unwrap().sites["C"].state,
            OpState::Dropped
        );
        assert_eq!(db.next_open("C").unwrap(), None);
        // m2's create is still open on A: its body stays.
        assert!(rm.release_bodies.is_empty());
    }

    #[test]
    fn removals_are_recorded_once_and_notices_retried_until_acknowledged() {
        let (_d, db) = db();
        assert!(db.record_removal("C", "B", &["A".into(), "C".into()], 10).unwrap());
        assert!(!db.record_removal("C", "A", &["A".into()], 20).unwrap(), "already removed");
        assert_eq!(db.pending_notices().unwrap(), [("C".into(), "A".into()), ("C".into(), "C".into())]);
        db.notice_attempt("C", "C", Some("connection refused"), 30).unwrap();
        db.notice_attempt("C", "A", None, 31).unwrap();
        assert_eq!(db.pending_notices().unwrap(), [("C".into(), "C".into())]);
        let r = db.removed_sites().unwrap();
        assert_eq!((r.len(), r[0].requested_at.as_str(), r[0].removed_ms), (1, "B", 10));
        assert_eq!(r[0].notices["A"].state, "done");
        let c = &r[0].notices["C"];
        assert_eq!((c.state.as_str(), c.attempts, c.error.as_deref()), ("pending", 1, Some("connection refused")));
        db.notice_attempt("C", "C", None, 40).unwrap();
        assert!(db.pending_notices().unwrap().is_empty());
    }

    #[test]
    fn a_removed_site_forgets_the_system() {
        let (_d, db) = db();
        // Led by A (this site): one with a replica here, one without.
        let (m1, m2) = (meta(1 << 81), meta(2 << 81));
        create(&db, &m1, &["A", "B"]);
        create(&db, &m2, &["B", "C"]);
        // A copy of a replicant led by B, and its deduplication record.
        let m3 = meta(3 << 81);
        let copy = Replicant {
            meta: m3.clone(),
            service: "image".into(),
            collection: "/images".into(),
            leader: "B".into(),
            state: ReplicantState::Active,
            version: 1,
            created_ms: 1,
            updated_ms: 1,
            replicas: [("A".to_string(), Replica { local_id: None, status: ReplicaStatus::Pending, error: None })]
                .into_iter()
                .collect(),
        };
        assert!(db.store_copy(&copy, "A").unwrap());
        db.applied_begin("B", 7, &m3, 5).unwrap();
        let f = db.forget_system("A", 50).unwrap();
        assert_eq!((f.copies_dropped, f.led_dropped, f.dropped), (1, 1, 3), "{f:?}");
        assert_eq!(f.detached, std::slice::from_ref(&m1));
        assert_eq!(f.release_bodies, ["b1"], "m2's create is open nowhere now");
        assert_eq!(db.replicant(&m3).unwrap(), None);
        assert_eq!(db.replicant(&m2).unwrap(), None);
        let r1 = db.replicant(&m1).unwrap().unwrap();
        assert_eq!(r1.replicas.keys().collect::<Vec<_>>(), ["A"]);
        assert_eq!(db.applied("B", 7).unwrap(), None);
        assert_eq!(db.next_open("B").unwrap(), None);
        assert!(db.next_open("A").unwrap().is_some(), "A's own delivery stays");
    }

    #[test]
    fn copies_merge_and_dedup_answers() {
        let (_d, db) = db();
        let m = meta(3 << 85);
        let mut r = Replicant {
            meta: m.clone(),
            service: "image".into(),
            collection: "/images".into(),
            leader: "A".into(),
            state: ReplicantState::Active,
            version: 1,
            created_ms: 1,
            updated_ms: 1,
            replicas: [
                (
                    "A".to_string(),
                    Replica {
                        local_id: None,
                        status: ReplicaStatus::Pending,
                        error: None,
                    },
                ),
                (
                    "B".to_string(),
                    Replica {
                        local_id: None,
                        status: ReplicaStatus::Pending,
                        error: None,
                    },
                ),
            ]
            .into(),
        };
        assert!(
            !db.store_copy(&r, "A").unwrap(),
            "the leader keeps its master record"
        );
        assert!(db.store_copy(&r, "B").unwrap());
        let mine = Replica {
            local_id: LocalId::from_json(&json!(6)),
            status: ReplicaStatus::Ok,
            error: None,
        };
        db.set_own_replica(&m, "B", &mine).unwrap();
        assert_eq!(
            db.lookup_local("image", "B", "/images", "6").unwrap(),
            Some(m.clone())
        );
        // The leader's next snapshot does not know B's id yet: B keeps it.
        r.version = 2;
        r.replicas.get_mut("A").unwrap().local_id = LocalId::from_json(&json!(42));
        r.replicas.get_mut("A").unwrap().status = ReplicaStatus::Ok;
        assert!(db.store_copy(&r, "B").unwrap());
        let c = db.replicant(&m).unwrap().unwrap();
        assert_eq!(c.local_id("B").unwrap().json(), &json!(6));
        assert_eq!(c.local_id("A").unwrap().json(), &json!(42));
        r.version = 1;
        assert!(!db.store_copy(&r, "B").unwrap(), "older copy ignored");

        assert_eq!(db.applied("A", 5).unwrap(), None);
        assert_eq!(db.applied_begin("A", 5, &m, 1).unwrap(), 1);
        assert_eq!(
            db.applied("A", 5).unwrap(),
            Some(Applied::InFlight { attempts: 1 })
        );
        let reply = Reply {
            status: 201,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from_static(b"{\"id\":6}"),
            truncated: None,
        };
        db.applied_finish("A", 5, &m, &reply, 1024, 2).unwrap();
        assert_eq!(
            db.applied("A", 5).unwrap(),
            Some(Applied::Done(reply.clone()))
        );
        db.applied_begin("A", 6, &m, 3).unwrap();
        db.applied_finish("A", 6, &m, &reply, 2, 3).unwrap();
        match db.applied("A", 6).unwrap() {
            Some(Applied::Done(r)) => assert_eq!((r.body.len(), r.truncated), (0, Some(8))),
            other => panic!("{other:?}"),
        }
        assert_eq!(db.applied_ack("A", 5).unwrap(), 1);
        assert_eq!(db.applied("A", 5).unwrap(), None);
        assert!(db.applied("A", 6).unwrap().is_some());
    }

    #[test]
    fn reopening_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sqlite3");
        let m = meta(11 << 80);
        {
            let db = Db::open(&path).unwrap();
            create(&db, &m, &["A", "B"]);
            db.finish(1, "A", &ok(201, json!(3)), 1).unwrap();
        }
        let db = Db::open(&path).unwrap();
        let r = db.replicant(&m).unwrap().unwrap();
        assert_eq!(r.local_id("A").unwrap().json(), &json!(3));
        assert_eq!(db.next_open("B").unwrap().unwrap().0.seq, 1);
        // A file of another schema version is refused, not misread.
        db.lock()
            .execute("UPDATE settings SET value = '99' WHERE key = 'schema'", [])
            .unwrap();
        drop(db);
        assert!(Db::open(&path)
            .unwrap_err()
            .to_string()
            .contains("schema version 99"));
    }
}
