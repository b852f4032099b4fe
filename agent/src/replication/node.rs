//! One site's replication, running: the store, the spool, the replica side
//! ([`Executor`]), the leader side ([`Applier`]) over a [`Mesh`] of this
//! site (direct calls) and the peer agents (HTTP, [`HttpPeers`]), with site
//! health from the heartbeats. Built by `Agent::start` when the
//! configuration has a `replication:` section; its HTTP surfaces are in
//! [`super::proxy`] and [`super::api`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::applier::{Applier, ApplierConfig, SiteHealth};
use super::config::ReplicationConfig;
use super::db::Db;
use super::executor::{Executor, LocalService};
use super::instance::Instance;
use super::peers::{HttpPeers, PeerClient};
use super::rewrite::IdFields;
use super::spool::Spool;
use super::transport::Mesh;
use crate::config::AgentConfig;
use crate::store::Store;

/// Site health as this agent's heartbeats see it.
#[derive(Debug, Clone)]
pub struct StoreHealth {
    store: Store,
}

impl StoreHealth {
    /// Over the agent's state.
    pub fn new(store: Store) -> Self {
        StoreHealth { store }
    }

    /// Why `site` counts as down (`None`: up or unknown).
    pub fn down_reason(&self, site: &str) -> Option<String> {
        let s = self.store.read();
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
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("site", &self.site).finish_non_exhaustive()
    }
}

impl Node {
    /// Opens the store and the spool under `data_dir` and starts the
    /// engine (its queues resume where a previous run left them).
    pub async fn start(config: &AgentConfig, r: &ReplicationConfig, store: Store) -> Result<Arc<Node>> {
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
            services.insert(s.name.clone(), LocalService { instance, ids: fields });
        }
        let executor = Arc::new(Executor::new(
            &config.site,
            db.clone(),
            services,
            r.max_rewrite_bytes,
            r.max_reply_bytes,
        ));
        let urls = config
            .peers
            .iter()
            .map(|p| (p.name.clone(), p.url.clone()))
            .collect();
        let peers = Arc::new(
            PeerClient::new(&config.site, urls, instance_timeout, r.max_reply_bytes)
                .context("HTTP client for the peer agents")?,
        );
        let health = StoreHealth::new(store);
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
        Ok(Arc::new(Node {
            site: config.site.clone(),
            cfg: r.clone(),
            db,
            spool,
            applier: Arc::new(applier),
            executor,
            peers,
            health,
            ids,
        }))
    }

    /// Where `service` keeps its ids.
    pub fn ids(&self, service: &str) -> IdFields {
        self.ids.get(service).cloned().unwrap_or_default()
    }

    /// Whether `site` is this one or a configured peer.
    pub fn knows_site(&self, site: &str) -> bool {
        site == self.site || self.peers.sites().any(|s| s == site)
    }

    /// The heartbeats saw `site` come back: its queue is tried at once.
    pub fn site_up(&self, site: &str) {
        self.applier.kick(site);
    }
}
