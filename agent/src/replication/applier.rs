//! The leader: appends creates, updates and deletes to its durable log and
//! applies them to every replica in log order, at least once.
//!
//! One task per site walks that site's queue (its open operations in `seq`
//! order): it builds the site's request (the site's local id in the path,
//! JSON bodies translated), marks the delivery in flight, hands it to the
//! [`Transport`], and records the outcome. A delivery that fails (site
//! unreachable, instance down or answering 503) stays at the head of the
//! queue and is retried with exponential backoff (`retry_min` doubling to
//! `retry_max`), or at once when [`Applier::kick`] says the site is back
//! (the heartbeat's down->up edge). A site the [`SiteHealth`] says is down
//! is not tried. Nothing overtakes a failed operation on its site: order
//! is the log's order.
//!
//! A client request waits for one replica's answer: its own site's when it
//! holds a replica, else the leader's, else the first; after `client_wait`
//! it gets [`Answer::Accepted`] (the operation is in the log and will be
//! applied).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{oneshot, Notify};
use tokio::task::AbortHandle;

use super::db::{AppendError, Db, Finish, NewCreate, NewOp, Removal};
use super::metaid::{Generator, MetaId};
use super::model::{Body, LocalId, OpKind, Operation, Replicant, Reply};
use super::paths::normalize_collection;
use super::rewrite::{
    body_to_local, extract_local_id, is_json_type, reply_to_meta, IdFields, Rewritten, Skip,
};
use super::spool::{Spool, Spooled};
use super::transport::{Delivery, Transport};
use super::{blocking, now_ms, ReplicationError};

/// Whether a site is up, as the heartbeats say.
pub trait SiteHealth: Send + Sync + 'static {
    /// `false` only when the site is known to be down.
    fn is_up(&self, site: &str) -> bool;
}

/// Every site up (tests; a static deployment).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysUp;

impl SiteHealth for AlwaysUp {
    fn is_up(&self, _site: &str) -> bool {
        true
    }
}

/// The leader's settings.
#[derive(Debug, Clone)]
pub struct ApplierConfig {
    /// This site.
    pub site: String,
    /// Longest wait for the answer a client gets.
    pub client_wait: Duration,
    /// First retry delay.
    pub retry_min: Duration,
    /// Last retry delay, and re-check period of a down site.
    pub retry_max: Duration,
    /// Largest JSON body parsed to translate ids.
    pub max_rewrite: usize,
    /// Id locations per service (absent: `/id`).
    pub services: HashMap<String, IdFields>,
    /// Tests only (`replication.test_hooks`): per site, a wait before each
    /// delivery (the operation stays pending there).
    pub delay_before: HashMap<String, Duration>,
    /// Tests only: per site, a wait between its answer and the commit of
    /// the outcome (the operation stays in flight there).
    pub delay_after: HashMap<String, Duration>,
}

impl ApplierConfig {
    /// Defaults for `site` (30 s wait, 100 ms..5 s retries, 8 MiB rewrites).
    pub fn new(site: &str) -> Self {
        ApplierConfig {
            site: site.to_owned(),
            client_wait: Duration::from_secs(30),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            max_rewrite: 8 << 20,
            services: HashMap::new(),
            delay_before: HashMap::new(),
            delay_after: HashMap::new(),
        }
    }

    fn ids(&self, service: &str) -> IdFields {
        self.services.get(service).cloned().unwrap_or_default()
    }
}

/// A create with a replicating scope, received by this site (the leader).
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// The service.
    pub service: String,
    /// Request path (the collection), without query.
    pub path: String,
    /// Query string, without `?`.
    pub query: Option<String>,
    /// Method (POST, or PUT on a collection).
    pub method: String,
    /// Headers for the instances ([`super::instance::forwardable`]).
    pub headers: Vec<(String, String)>,
    /// The spooled body.
    pub body: Option<Spooled>,
    /// Target sites, from the scope (`DC1 & DC2`).
    pub sites: Vec<String>,
    /// The client's site (this one, for a create).
    pub origin: String,
}

/// An update or delete of a replicant led here.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    /// The replicant.
    pub meta: MetaId,
    /// Update or Delete.
    pub kind: OpKind,
    /// Method.
    pub method: String,
    /// Path after the id (`""`, `/tags`).
    pub suffix: String,
    /// Query string, without `?`.
    pub query: Option<String>,
    /// Headers for the instances.
    pub headers: Vec<(String, String)>,
    /// The spooled body.
    pub body: Option<Spooled>,
    /// The site of the client (its replica's answer is preferred).
    pub origin: String,
}

/// What the client gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// One replica's answer, its local id replaced by the meta-id.
    Replied {
        /// The replicant.
        meta: MetaId,
        /// The operation.
        seq: u64,
        /// The site that answered.
        site: String,
        /// The answer (with `x-geomesh-*` headers added).
        reply: Reply,
        /// What was translated.
        rewritten: Option<Rewritten>,
    },
    /// No answer within `client_wait`: the operation is logged and will be
    /// applied; its state is at `/v1/replication/operations/<seq>`.
    Accepted {
        /// The replicant.
        meta: MetaId,
        /// The operation.
        seq: u64,
    },
}

#[derive(Debug, Clone)]
struct Outcome {
    site: String,
    reply: Option<Reply>,
    local_id: Option<LocalId>,
}

struct SiteTask {
    notify: Arc<Notify>,
    abort: AbortHandle,
}

type Waiters = HashMap<(u64, String), Vec<oneshot::Sender<Outcome>>>;

struct Inner {
    cfg: ApplierConfig,
    db: Db,
    spool: Spool,
    transport: Arc<dyn Transport>,
    health: Arc<dyn SiteHealth>,
    ids: Generator,
    tasks: Mutex<HashMap<String, SiteTask>>,
    waiters: tokio::sync::Mutex<Waiters>,
}

/// The leader engine (its site tasks stop when it is dropped).
pub struct Applier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("site", &self.inner.cfg.site)
            .finish_non_exhaustive()
    }
}

impl Drop for Applier {
    fn drop(&mut self) {
        let tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for t in tasks.values() {
            t.abort.abort();
        }
    }
}

/// Adds geomesh's headers to an answer.
fn tag(reply: &mut Reply, meta: &MetaId, seq: u64, site: &str) {
    reply.set_header("x-geomesh-meta", Some(meta.to_string()));
    reply.set_header("x-geomesh-operation", Some(seq.to_string()));
    reply.set_header(
        "x-geomesh-replica",
        Some(crate::replication::header_site(site)),
    );
}

impl Applier {
    /// Starts the engine: in-flight deliveries of a previous run become
    /// pending again, spooled bodies no open operation needs are removed,
    /// and every site with open operations gets its task. Must run inside
    /// a tokio runtime.
    pub async fn start(
        cfg: ApplierConfig,
        db: Db,
        spool: Spool,
        transport: Arc<dyn Transport>,
        health: Arc<dyn SiteHealth>,
    ) -> Result<Applier, ReplicationError> {
        let recovered = blocking(&db, |db| db.recover()).await?;
        let keep = blocking(&db, |db| db.open_body_files()).await?;
        let removed = {
            let sp = spool.clone();
            tokio::task::spawn_blocking(move || sp.gc(&keep))
                .await
                .map_err(|e| ReplicationError::Io(e.to_string()))?
                .map_err(|e| {
                    ReplicationError::Io(format!("spool {}: {e}", spool.dir().display()))
                })?
        };
        let open = blocking(&db, |db| db.open_sites()).await?;
        tracing::info!(
            site = %cfg.site, resumed_deliveries = recovered, stale_bodies_removed = removed,
            sites_with_open_operations = open.len(), "replication log opened"
        );
        let applier = Applier {
            inner: Arc::new(Inner {
                cfg,
                db,
                spool,
                transport,
                health,
                ids: Generator::new(),
                tasks: Mutex::new(HashMap::new()),
                waiters: tokio::sync::Mutex::new(HashMap::new()),
            }),
        };
        for s in open {
            applier.kick(&s);
        }
        Ok(applier)
    }

    /// The store.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The spool.
    pub fn spool(&self) -> &Spool {
        &self.inner.spool
    }

    /// This site.
    pub fn site(&self) -> &str {
        &self.inner.cfg.site
    }

    /// Wakes `site`'s task (starting it if needed): new operations, or the
    /// site came back up.
    pub fn kick(&self, site: &str) {
        Inner::kick(&self.inner, site);
    }

    /// Creates a replicant: a meta-id, the replicant and the create
    /// operation stored durably, then the create fanned out to every
    /// target site; returns the origin's answer (or the first one).
    pub async fn create(&self, req: CreateRequest) -> Result<Answer, ReplicationError> {
        let body_name = req.body.as_ref().map(|b| b.name.clone());
        let result = self.create_inner(req).await;
        self.drop_body_on_error(body_name, result).await
    }

    async fn create_inner(&self, req: CreateRequest) -> Result<Answer, ReplicationError> {
        let inner = &self.inner;
        if req.sites.is_empty() {
            return Err(ReplicationError::BadRequest(
                "a replicated create needs at least one site".into(),
            ));
        }
        let meta = inner.ids.generate(now_ms())?;
        let new = NewCreate {
            meta: meta.clone(),
            service: req.service.clone(),
            collection: normalize_collection(&req.path),
            leader: inner.cfg.site.clone(),
            sites: req.sites.clone(),
            method: req.method.clone(),
            query: req.query.clone(),
            headers: req.headers.clone(),
            body_file: req.body.as_ref().map(|b| b.name.clone()),
            body_len: req.body.as_ref().map(|b| b.len).unwrap_or(0),
            origin: req.origin.clone(),
            now_ms: now_ms(),
        };
        let (op, receivers) = {
            let mut waiters = inner.waiters.lock().await;
            let (_, op) = blocking(&inner.db, move |db| db.begin_create(&new))
                .await
                .map_err(append_error)?;
            (op.clone(), register(&mut waiters, &op))
        };
        tracing::info!(%meta, seq = op.seq, service = %req.service, sites = ?op.sites.keys().collect::<Vec<_>>(), "replicant created");
        for s in op.sites.keys() {
            self.kick(s);
        }
        let preferred = op
            .sites
            .contains_key(&req.origin)
            .then(|| req.origin.clone());
        Ok(self.answer(&op, &req.service, preferred, receivers).await)
    }

    /// Appends an update or delete to the log and applies it to every replica.
    pub async fn submit(&self, req: WriteRequest) -> Result<Answer, ReplicationError> {
        let body_name = req.body.as_ref().map(|b| b.name.clone());
        let result = self.submit_inner(req).await;
        self.drop_body_on_error(body_name, result).await
    }

    /// `result`, after removing the spooled body `body_name` when it is an error (nothing
    /// was logged that could refer to it).
    async fn drop_body_on_error(
        &self,
        body_name: Option<String>,
        result: Result<Answer, ReplicationError>,
    ) -> Result<Answer, ReplicationError> {
        if result.is_err() {
            if let Some(b) = body_name {
                self.inner.spool.remove(&b).await;
            }
        }
        result
    }

    async fn submit_inner(&self, req: WriteRequest) -> Result<Answer, ReplicationError> {
        let inner = &self.inner;
        if !matches!(req.kind, OpKind::Update | OpKind::Delete) {
            return Err(ReplicationError::BadRequest(format!(
                "a write is an update or a delete, not a {}",
                req.kind
            )));
        }
        let new = NewOp {
            meta: req.meta.clone(),
            kind: req.kind,
            method: req.method.clone(),
            suffix: req.suffix.clone(),
            query: req.query.clone(),
            headers: req.headers.clone(),
            body_file: req.body.as_ref().map(|b| b.name.clone()),
            body_len: req.body.as_ref().map(|b| b.len).unwrap_or(0),
            origin: req.origin.clone(),
            now_ms: now_ms(),
        };
        let leader = inner.cfg.site.clone();
        let (op, receivers) = {
            let mut waiters = inner.waiters.lock().await;
            let op = blocking(&inner.db, move |db| db.append(&leader, &new))
                .await
                .map_err(|e| match e {
                    AppendError::Unknown => ReplicationError::Unknown(req.meta.clone()),
                    AppendError::NotLeader(leader) => ReplicationError::NotLeader {
                        meta: req.meta.clone(),
                        leader,
                    },
                    AppendError::Gone(state) => ReplicationError::Gone {
                        meta: req.meta.clone(),
                        state,
                    },
                    AppendError::Db(e) => ReplicationError::Store(e),
                })?;
            (op.clone(), register(&mut waiters, &op))
        };
        let meta = req.meta.clone();
        let r = blocking(&inner.db, move |db| db.replicant(&meta)).await?;
        tracing::info!(meta = %req.meta, seq = op.seq, kind = %req.kind, origin = %req.origin, "operation logged");
        for s in op.sites.keys() {
            self.kick(s);
        }
        let holds = |s: &str| op.sites.contains_key(s);
        let preferred = if holds(&req.origin) {
            Some(req.origin.clone())
        } else if holds(&inner.cfg.site) {
            Some(inner.cfg.site.clone())
        } else {
            None
        };
        let service = r.map(|r| r.service).unwrap_or_default();
        Ok(self.answer(&op, &service, preferred, receivers).await)
    }

    /// Removes `site` from every replicant led here (the leader's part of
    /// removing a site from the system).
    pub async fn remove_site(&self, site: &str) -> Result<Removal, ReplicationError> {
        let (leader, s) = (self.inner.cfg.site.clone(), site.to_owned());
        let removal = blocking(&self.inner.db, move |db| {
            db.remove_site(&leader, &s, now_ms())
        })
        .await?;
        for b in &removal.release_bodies {
            self.inner.spool.remove(b).await;
        }
        let open = blocking(&self.inner.db, |db| db.open_sites()).await?;
        for s in open {
            self.kick(&s);
        }
        tracing::info!(
            site,
            replicants = removal.replicants.len(),
            dropped = removal.dropped,
            "site removed from replicants"
        );
        Ok(removal)
    }

    /// Waits until no operation is open anywhere, or `timeout` (tests, shutdown).
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match blocking(&self.inner.db, |db| db.open_sites()).await {
                Ok(v) if v.is_empty() => return true,
                _ => {}
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn answer(
        &self,
        op: &Operation,
        service: &str,
        preferred: Option<String>,
        receivers: Vec<(String, oneshot::Receiver<Outcome>)>,
    ) -> Answer {
        let inner = &self.inner;
        let deadline = tokio::time::Instant::now() + inner.cfg.client_wait;
        let preferred = preferred.filter(|p| inner.health.is_up(p));
        let mut rest = Vec::new();
        let mut chosen = None;
        for (site, rx) in receivers {
            if Some(&site) == preferred.as_ref() && chosen.is_none() {
                chosen = Some(rx);
            } else {
                rest.push(rx);
            }
        }
        let mut outcome = None;
        if let Some(rx) = chosen {
            if let Ok(Ok(o)) = tokio::time::timeout_at(deadline, rx).await {
                outcome = Some(o).filter(|o: &Outcome| o.reply.is_some());
            }
        }
        if outcome.is_none() {
            let mut any: FuturesUnordered<_> = rest.into_iter().collect();
            loop {
                match tokio::time::timeout_at(deadline, any.next()).await {
                    Ok(Some(Ok(o))) if o.reply.is_some() => {
                        outcome = Some(o);
                        break;
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let Some(Outcome {
            site,
            reply: Some(mut reply),
            local_id,
        }) = outcome
        else {
            return Answer::Accepted {
                meta: op.meta.clone(),
                seq: op.seq,
            };
        };
        let rewritten = if let Some(total) = reply.truncated {
            reply = Reply {
                status: 502,
                headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
                body: Bytes::from(format!(
                    "geomesh: the answer of site {site} ({total} bytes) is larger than the agent translates; \
                     the operation was applied\n"
                )),
                truncated: None,
            };
            None
        } else {
            local_id.map(|l| {
                reply_to_meta(
                    &mut reply,
                    &l,
                    &op.meta,
                    &inner.cfg.ids(service),
                    inner.cfg.max_rewrite,
                )
            })
        };
        tag(&mut reply, &op.meta, op.seq, &site);
        if let Some(skip) = rewritten.as_ref().and_then(|r| r.body_skipped) {
            if !matches!(skip, Skip::NoMatch | Skip::Empty) {
                reply.set_header("x-geomesh-rewrite", Some(skip.as_str().to_owned()));
            }
        }
        Answer::Replied {
            meta: op.meta.clone(),
            seq: op.seq,
            site,
            reply,
            rewritten,
        }
    }
}

/// `begin_create` only fails in the store (a meta-id collision is a
/// primary-key violation, reported as such).
fn append_error(e: AppendError) -> ReplicationError {
    match e {
        AppendError::Db(e) => ReplicationError::Store(e),
        AppendError::Unknown | AppendError::NotLeader(_) | AppendError::Gone(_) => {
            ReplicationError::Io("the new replicant could not be read back".into())
        }
    }
}

fn register(waiters: &mut Waiters, op: &Operation) -> Vec<(String, oneshot::Receiver<Outcome>)> {
    op.sites
        .keys()
        .map(|s| {
            let (tx, rx) = oneshot::channel();
            waiters.entry((op.seq, s.clone())).or_default().push(tx);
            (s.clone(), rx)
        })
        .collect()
}

impl Inner {
    fn kick(this: &Arc<Inner>, site: &str) {
        let mut tasks = this.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tasks.get(site) {
            if !t.abort.is_finished() {
                t.notify.notify_one();
                return;
            }
        }
        let notify = Arc::new(Notify::new());
        let handle = tokio::spawn(site_loop(this.clone(), site.to_owned(), notify.clone()));
        notify.notify_one();
        tasks.insert(
            site.to_owned(),
            SiteTask {
                notify,
                abort: handle.abort_handle(),
            },
        );
    }

    async fn notify_waiters(&self, seq: u64, site: &str, o: Outcome) {
        let mut waiters = self.waiters.lock().await;
        if let Some(list) = waiters.remove(&(seq, site.to_owned())) {
            for tx in list {
                let _ = tx.send(o.clone());
            }
        }
    }

    /// Builds and sends the head of `site`'s queue; `Err` = retry later.
    async fn deliver_one(
        self: &Arc<Self>,
        site: &str,
        op: Operation,
        r: Replicant,
    ) -> Result<(), String> {
        let seq = op.seq;
        let ids = self.cfg.ids(&r.service);
        let local = r.local_id(site).cloned();
        if matches!(op.kind, OpKind::Update | OpKind::Delete) && local.is_none() {
            let why = match r.replicas.get(site) {
                Some(p) => format!("no live replica on site {site} ({})", p.status),
                None => format!("site {site} holds no replica"),
            };
            self.record(
                site,
                &op,
                Finish::Skipped(why),
                Outcome {
                    site: site.to_owned(),
                    reply: None,
                    local_id: None,
                },
            )
            .await?;
            return Ok(());
        }
        let target = match op.kind {
            OpKind::Create => r.collection.clone(),
            OpKind::Update | OpKind::Delete => r.path_on(site, &op.suffix).unwrap_or_default(),
            OpKind::Sync => String::new(),
        };
        let target = match &op.query {
            Some(q) if op.kind != OpKind::Sync => format!("{target}?{q}"),
            _ => target,
        };
        let body = match &op.body_file {
            None => None,
            Some(name) => Some(self.site_body(name, &op, &r, local.as_ref(), &ids).await?),
        };
        if let Some(d) = self.cfg.delay_before.get(site) {
            tracing::warn!(site, seq, delay_ms = d.as_millis() as u64, "test hook: waiting before the delivery");
            tokio::time::sleep(*d).await;
        }
        let (s, now) = (site.to_owned(), now_ms());
        blocking(&self.db, move |db| db.start_attempt(seq, &s, now))
            .await
            .map_err(|e| e.to_string())?;
        let d = Delivery {
            leader: self.cfg.site.clone(),
            seq,
            kind: op.kind,
            method: op.method.clone(),
            target,
            headers: op.headers.clone(),
            body,
            replicant: r.clone(),
            ack: seq.checked_sub(1),
        };
        match self.transport.deliver(site, d).await {
            Ok(reply) => {
                if let Some(d) = self.cfg.delay_after.get(site) {
                    tracing::warn!(site, seq, delay_ms = d.as_millis() as u64, "test hook: waiting before committing the answer");
                    tokio::time::sleep(*d).await;
                }
                let (finish, local_id) = match op.kind {
                    OpKind::Create if reply.is_success() => {
                        match extract_local_id(&reply, &ids, self.cfg.max_rewrite) {
                            Ok((id, _)) => (
                                Finish::Applied {
                                    status: reply.status,
                                    created: Some(Ok(id.clone())),
                                },
                                Some(id),
                            ),
                            Err(e) => (
                                Finish::Applied {
                                    status: reply.status,
                                    created: Some(Err(e)),
                                },
                                None,
                            ),
                        }
                    }
                    OpKind::Create => (
                        Finish::Applied {
                            status: reply.status,
                            created: None,
                        },
                        None,
                    ),
                    OpKind::Sync => (
                        Finish::Applied {
                            status: reply.status,
                            created: None,
                        },
                        None,
                    ),
                    OpKind::Update | OpKind::Delete => (
                        Finish::Applied {
                            status: reply.status,
                            created: None,
                        },
                        local,
                    ),
                };
                tracing::debug!(site, seq, kind = %op.kind, status = reply.status, "applied");
                let outcome = Outcome {
                    site: site.to_owned(),
                    reply: Some(reply),
                    local_id,
                };
                self.record(site, &op, finish, outcome).await
            }
            Err(e) => {
                let (s, msg) = (site.to_owned(), e.0.clone());
                blocking(&self.db, move |db| {
                    db.finish(seq, &s, &Finish::Retry(msg), now_ms())
                })
                .await
                .map_err(|e| e.to_string())?;
                // A client waiting for this site's answer takes another replica's instead.
                self.notify_waiters(
                    seq,
                    site,
                    Outcome {
                        site: site.to_owned(),
                        reply: None,
                        local_id: None,
                    },
                )
                .await;
                Err(e.0)
            }
        }
    }

    async fn record(
        self: &Arc<Self>,
        site: &str,
        op: &Operation,
        finish: Finish,
        outcome: Outcome,
    ) -> Result<(), String> {
        let (seq, s) = (op.seq, site.to_owned());
        let fin = blocking(&self.db, move |db| db.finish(seq, &s, &finish, now_ms()))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(b) = &fin.release_body {
            self.spool.remove(b).await;
        }
        for s in &fin.sync_sites {
            Inner::kick(self, s);
        }
        self.notify_waiters(seq, site, outcome).await;
        Ok(())
    }

    /// The body for one site: the spooled file, or, for a JSON update
    /// naming the meta-id at an id pointer, a copy with the site's local id.
    async fn site_body(
        &self,
        name: &str,
        op: &Operation,
        r: &Replicant,
        local: Option<&LocalId>,
        ids: &IdFields,
    ) -> Result<Body, String> {
        let path = self.spool.path(name);
        let header = |n: &str| {
            op.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        let json = header("content-type").is_some_and(is_json_type);
        if let (true, Some(local), OpKind::Update) = (json, local, op.kind) {
            if op.body_len <= self.cfg.max_rewrite as u64 {
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|e| format!("spooled body {name}: {e}"))?;
                if let Some(b) = body_to_local(
                    header("content-type"),
                    header("content-encoding"),
                    &bytes,
                    &r.meta,
                    local,
                    ids,
                    self.cfg.max_rewrite,
                ) {
                    return Ok(Body::Bytes(Bytes::from(b)));
                }
            }
        }
        Ok(Body::File {
            path,
            len: op.body_len,
        })
    }
}

async fn site_loop(inner: Arc<Inner>, site: String, notify: Arc<Notify>) {
    let mut backoff = inner.cfg.retry_min;
    loop {
        let s = site.clone();
        let next = blocking(&inner.db, move |db| db.next_open(&s)).await;
        let (op, r) = match next {
            Ok(Some(x)) => x,
            Ok(None) => {
                notify.notified().await;
                continue;
            }
            Err(e) => {
                tracing::error!(%site, error = %e, "replication store");
                wait(&notify, inner.cfg.retry_max).await;
                continue;
            }
        };
        if !inner.health.is_up(&site) {
            wait(&notify, inner.cfg.retry_max).await;
            continue;
        }
        let seq = op.seq;
        match inner.deliver_one(&site, op, r).await {
            Ok(()) => backoff = inner.cfg.retry_min,
            Err(e) => {
                tracing::warn!(%site, seq, error = %e, retry_in_ms = backoff.as_millis() as u64, "delivery failed");
                wait(&notify, backoff).await;
                backoff = (backoff * 2).min(inner.cfg.retry_max);
            }
        }
    }
}

async fn wait(notify: &Notify, d: Duration) {
    tokio::select! {
        _ = notify.notified() => {}
        _ = tokio::time::sleep(d) => {}
    }
}
