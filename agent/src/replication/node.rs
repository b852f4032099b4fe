//! One site's replication, running: the store, the spool, the replica side
//! ([`Executor`]), the leader side ([`Applier`]) over a [`Mesh`] of this
//! site (direct calls) and the peer agents (HTTP, [`HttpPeers`]), with site
//! health from the heartbeats. Built by `Agent::start` when the
//! configuration has a `replication:` section; its HTTP surfaces are in
//! [`super::proxy`] and [`super::api`].
//!
//! Removing a site from the system ([`Node::remove_from_system`]) is one call
//! on any agent: it is recorded durably, applied here, and told to every
//! other agent (a removal notice each, retried until acknowledged; see
//! docs/replication.md, "Removing a site").

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use anyhow::{Context, Result};

use super::applier::{Applier, ApplierConfig, SiteHealth};
use super::config::ReplicationConfig;
use super::db::{Db, DbError};
use super::executor::{Executor, LocalService};
use super::instance::Instance;
use super::model::OpKind;
use super::peers::{HttpPeers, PeerClient};
use super::rewrite::IdFields;
use super::spool::Spool;
use super::transport::Mesh;
use super::{blocking, now_ms, ReplicationError};
use crate::config::AgentConfig;
use crate::store::Store;

/// Site health as this agent's heartbeats see it, and the sites removed
/// from the system (down for the replication, whatever the heartbeats say).
#[derive(Debug, Clone)]
pub struct StoreHealth {
    store: Store,
    removed: Arc<RwLock<BTreeSet<String>>>,
}

impl StoreHealth {
    /// Over the agent's state.
    pub fn new(store: Store) -> Self {
        StoreHealth {
            store,
            removed: Arc::new(RwLock::new(BTreeSet::new())),
        }
    }

    /// Counts `site` as removed from the system from now on.
    pub fn mark_removed(&self, site: &str) {
        self.removed
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(site.to_owned());
    }

    /// Whether `site` was removed from the system.
    pub fn is_removed(&self, site: &str) -> bool {
        self.removed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(site)
    }

    /// Why `site` counts as down (`None`: up or unknown): removed from the
    /// system (or this site removed: every other site is out of reach), or
    /// the heartbeats say so.
    pub fn down_reason(&self, site: &str) -> Option<String> {
        if self.is_removed(site) {
            return Some(format!("site {site} was removed from the system"));
        }
        let s = self.store.read();
        if site != s.site && self.is_removed(&s.site) {
            return Some(format!(
                "this site ({}) was removed from the system",
                s.site
            ));
        }
        let p = s.peers.iter().find(|p| p.name == site)?;
        match p.up() {
            (Some(false), geomesh_scope::health::UpSource::Static) => {
                Some("configured down".to_owned())
            }
            (Some(false), _) => Some(format!(
                "its agent does not answer heartbeats: {}",
                p.error.as_deref().unwrap_or("down")
            )),
            _ => None,
        }
    }

    /// The RTT to `site` in ms (0 for this site), when known.
    pub fn rtt_ms(&self, site: &str) -> Option<f64> {
        let s = self.store.read();
        if s.site == site {
            return Some(0.0);
        }
        s.peers
            .iter()
            .find(|p| p.name == site)
            .and_then(|p| p.rtt().map(|r| r.0))
    }
}

impl SiteHealth for StoreHealth {
    fn is_up(&self, site: &str) -> bool {
        self.down_reason(site).is_none()
    }
}

/// The running replication of one site.
pub struct Node {
    /// This site.
    pub site: String,
    /// The `replication:` section.
    pub cfg: ReplicationConfig,
    /// The store.
    pub db: Db,
    /// Request bodies on disk.
    pub spool: Spool,
    /// The leader side.
    pub applier: Arc<Applier>,
    /// The replica side.
    pub executor: Arc<Executor>,
    /// The other agents.
    pub peers: Arc<PeerClient>,
    /// Site health and RTTs.
    pub health: StoreHealth,
    ids: HashMap<String, IdFields>,
    notices: Arc<Notify>,
    notice_round: tokio::sync::Mutex<()>,
    notice_task: std::sync::Mutex<Option<AbortHandle>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(t) = self
            .notice_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            t.abort();
        }
    }
}

/// Longest wait for one peer's answer to a removal notice.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(3);

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("site", &self.site)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Opens the store and the spool under `data_dir` and starts the
    /// engine (its queues resume where a previous run left them).
    pub async fn start(
        config: &AgentConfig,
        r: &ReplicationConfig,
        store: Store,
        tls: Option<&crate::tls::PeerTls>,
    ) -> Result<Arc<Node>> {
        std::fs::create_dir_all(&r.data_dir)
            .with_context(|| format!("replication.data_dir {}", r.data_dir.display()))?;
        let db_path = r.data_dir.join("replication.sqlite3");
        let db = {
            let p = db_path.clone();
            tokio::task::spawn_blocking(move || Db::open(&p))
                .await
                .context("open the store")?
                .with_context(|| format!("replication store {}", db_path.display()))?
        };
        let spool = Spool::open(&r.data_dir.join("spool"), r.max_body_bytes)
            .with_context(|| format!("spool {}", r.data_dir.join("spool").display()))?;
        let instance_timeout = Duration::from_millis(r.instance_timeout_ms);
        let mut ids = HashMap::new();
        let mut services = HashMap::new();
        for s in &config.services {
            let fields = r
                .ids(&s.name)
                .map_err(|e| anyhow::anyhow!("replication.services.{}: {e}", s.name))?;
            let instance = Instance::new(s.address, r.max_reply_bytes, instance_timeout)
                .context("HTTP client for the instances")?;
            ids.insert(s.name.clone(), fields.clone());
            services.insert(
                s.name.clone(),
                LocalService {
                    instance,
                    ids: fields,
                },
            );
        }
        let hold = r
            .test_hooks
            .delay_apply_ms
            .iter()
            .filter_map(|(k, v)| Some((OpKind::parse(k)?, Duration::from_millis(*v))))
            .collect();
        let executor = Arc::new(
            Executor::new(
                &config.site,
                db.clone(),
                services,
                r.max_rewrite_bytes,
                r.max_reply_bytes,
            )
            .with_apply_delays(hold),
        );
        let urls = config
            .peers
            .iter()
            .map(|p| (p.name.clone(), p.url.clone()))
            .collect();
        let peers = Arc::new(
            PeerClient::new(&config.site, urls, instance_timeout, r.max_reply_bytes, tls)
                .context("HTTP client for the peer agents")?,
        );
        let health = StoreHealth::new(store);
        let removed = blocking(&db, |db| db.removed_sites())
            .await
            .map_err(|e: DbError| anyhow::anyhow!("{e}"))?;
        for r in &removed {
            health.mark_removed(&r.site);
        }
        let ms = |m: &std::collections::BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| (k.clone(), Duration::from_millis(*v)))
                .collect::<HashMap<_, _>>()
        };
        let acfg = ApplierConfig {
            site: config.site.clone(),
            client_wait: r.client_wait(),
            retry_min: Duration::from_millis(r.retry_min_ms),
            retry_max: Duration::from_millis(r.retry_max_ms),
            max_rewrite: r.max_rewrite_bytes,
            services: ids.clone(),
            delay_before: ms(&r.test_hooks.delay_before_delivery_ms),
            delay_after: ms(&r.test_hooks.delay_after_delivery_ms),
        };
        if !r.test_hooks.is_empty() {
            tracing::warn!(hooks = ?r.test_hooks, "replication.test_hooks set: deliveries are delayed (tests only)");
        }
        let mesh = Mesh::new(&config.site, executor.clone(), HttpPeers(peers.clone()));
        let applier = Applier::start(
            acfg,
            db.clone(),
            spool.clone(),
            Arc::new(mesh),
            Arc::new(health.clone()),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let node = Arc::new(Node {
            site: config.site.clone(),
            cfg: r.clone(),
            db,
            spool,
            applier: Arc::new(applier),
            executor,
            peers,
            health,
            ids,
            notices: Arc::new(Notify::new()),
            notice_round: tokio::sync::Mutex::new(()),
            notice_task: std::sync::Mutex::new(None),
        });
        let task = tokio::spawn(notice_loop(
            Arc::downgrade(&node),
            node.notices.clone(),
            Duration::from_millis(r.retry_min_ms),
            Duration::from_millis(r.retry_max_ms),
        ));
        *node.notice_task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        Ok(node)
    }

    /// Where `service` keeps its ids.
    pub fn ids(&self, service: &str) -> IdFields {
        self.ids.get(service).cloned().unwrap_or_default()
    }

    /// Whether `site` is this one or a configured peer.
    pub fn knows_site(&self, site: &str) -> bool {
        site == self.site || self.peers.sites().any(|s| s == site)
    }

    /// The heartbeats saw `site` come back: its queue is tried at once, and
    /// the removal notices it has not acknowledged.
    pub fn site_up(&self, site: &str) {
        self.applier.kick(site);
        self.notices.notify_one();
    }

    /// Removes `site` (a configured peer, or this site) from the system: the
    /// removal is recorded durably with a notice for every peer, applied
    /// here ([`Node::apply_removal`]), then every peer is told once
    /// (answering within a few seconds or not); peers not reached are told
    /// later, until each acknowledges (also after a restart of this agent).
    /// Returns what this agent did and each notice's state.
    pub async fn remove_from_system(&self, site: &str) -> Result<Value, ReplicationError> {
        if !self.knows_site(site) {
            return Err(ReplicationError::UnknownSite(site.to_owned()));
        }
        let notify: Vec<String> = self.peers.sites().map(str::to_owned).collect();
        let here = self.apply_removal(site, &self.site, &notify).await?;
        if self.send_notices().await > 0 {
            self.notices.notify_one();
        }
        let (s, own) = (site.to_owned(), self.site.clone());
        let rec = blocking(&self.db, move |db| db.removed_sites())
            .await?
            .into_iter()
            .find(|r| r.site == s);
        Ok(json!({
            "site": site,
            "requested_at": own,
            "here": here,
            "notices": rec.map(|r| json!(r.notices)).unwrap_or(Value::Null),
        }))
    }

    /// Applies the removal of `site` on this agent (idempotent): recorded
    /// (with notices for `notify`), then another site is removed from every
    /// replicant led here (their copies synced, its open deliveries
    /// dropped) and counts as down for the replication from now on; this
    /// site itself forgets the system ([`Db::forget_system`]).
    pub async fn apply_removal(
        &self,
        site: &str,
        requested_at: &str,
        notify: &[String],
    ) -> Result<Value, ReplicationError> {
        let (s, by, n) = (site.to_owned(), requested_at.to_owned(), notify.to_vec());
        let new = blocking(&self.db, move |db| db.record_removal(&s, &by, &n, now_ms())).await?;
        self.health.mark_removed(site);
        if site == self.site {
            let own = self.site.clone();
            let f = blocking(&self.db, move |db| db.forget_system(&own, now_ms())).await?;
            for b in &f.release_bodies {
                self.spool.remove(b).await;
            }
            tracing::warn!(
                site,
                requested_at,
                new,
                copies_dropped = f.copies_dropped,
                detached = f.detached.len(),
                dropped = f.dropped,
                "this site was removed from the system: it forgot the other sites"
            );
            return Ok(json!({
                "removed_here": new,
                "forgot": { "copies_dropped": f.copies_dropped, "detached": f.detached,
                            "led_dropped": f.led_dropped, "dropped": f.dropped },
            }));
        }
        let r = self.applier.remove_site(site).await?;
        tracing::info!(
            site,
            requested_at,
            new,
            replicants = r.replicants.len(),
            "site removed from the system"
        );
        Ok(json!({
            "removed_here": new,
            "replicants": r.replicants,
            "dropped": r.dropped,
            "sync_seqs": r.sync_seqs,
        }))
    }

    /// One round of removal notices: every pending one tried once,
    /// concurrently, each within a few seconds. Returns how many are left.
    pub async fn send_notices(&self) -> usize {
        let _round = self.notice_round.lock().await;
        let pending = match blocking(&self.db, |db| db.pending_notices()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "removal notices: store");
                return 1;
            }
        };
        let by: HashMap<String, String> = match blocking(&self.db, |db| db.removed_sites()).await {
            Ok(v) => v.into_iter().map(|r| (r.site, r.requested_at)).collect(),
            Err(_) => HashMap::new(),
        };
        let results = join_all(pending.iter().map(|(site, peer)| {
            let by = by.get(site).cloned().unwrap_or_else(|| self.site.clone());
            async move {
                let r = self
                    .peers
                    .notify_removed(peer, site, &by, NOTICE_TIMEOUT)
                    .await;
                (site.clone(), peer.clone(), r)
            }
        }))
        .await;
        let mut left = 0;
        for (site, peer, r) in results {
            match &r {
                Ok(()) => tracing::info!(%site, %peer, "removal notice acknowledged"),
                Err(e) => {
                    left += 1;
                    tracing::debug!(%site, %peer, error = %e, "removal notice not delivered yet");
                }
            }
            let err = r.err();
            if let Err(e) = blocking(&self.db, move |db| {
                db.notice_attempt(&site, &peer, err.as_deref(), now_ms())
            })
            .await
            {
                tracing::warn!(error = %e, "removal notices: store");
            }
        }
        left
    }
}

/// Retries the removal notices until every peer acknowledged: backoff from
/// `min` doubling to `max`, or at once when a peer comes back up.
async fn notice_loop(node: Weak<Node>, kick: Arc<Notify>, min: Duration, max: Duration) {
    let mut delay = min;
    loop {
        let left = match node.upgrade() {
            Some(n) => n.send_notices().await,
            None => return,
        };
        if left == 0 {
            delay = min;
            kick.notified().await;
        } else {
            let _ = tokio::time::timeout(delay, kick.notified()).await;
            delay = (delay * 2).min(max);
        }
    }
}
