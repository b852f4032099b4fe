//! geomesh-agent: the per-site coordinator.
//!
//! One agent runs per site. It heartbeats the agents of the other sites
//! (RTT measured and smoothed, up/down after `down_after` failures, static
//! overrides from its configuration), probes the service instances of its
//! own site, and serves what it knows as JSON (`GET /v1/sites`) for the scope
//! filter of its site's Envoy, which resolves scope-lang's `;` and `around`
//! against it. With a `replication:` section it also runs Cheops'
//! replication (`&`, docs/replication.md): the proxy listener the scope
//! filter hands requests to, the durable replicants and log, the peer
//! endpoints and the replication API. See README.md for the configuration
//! and the API.
//!
//! Modules: [`config`] (the file), [`store`] (the state), [`heartbeat`]
//! (peers), [`probe`] (own services), [`api`] (HTTP), [`replication`].

pub mod api;
pub mod config;
pub mod heartbeat;
pub mod metrics;
pub mod probe;
pub mod replication;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use config::AgentConfig;
pub use store::Store;

/// A running agent (its tasks stop when it is dropped).
pub struct Agent {
    pub store: Store,
    /// The API listener's address.
    pub addr: SocketAddr,
    /// The replication, when configured.
    pub replication: Option<Arc<replication::node::Node>>,
    /// The proxy listener's address (with replication).
    pub proxy_addr: Option<SocketAddr>,
    tasks: JoinSet<()>,
}

impl Agent {
    /// Binds the API (and the proxy listener with replication), opens the
    /// replication store and resumes its log, and starts the heartbeat and
    /// probe tasks on the current tokio runtime.
    pub async fn start(config: &AgentConfig) -> Result<Agent> {
        let store = Store::new(config);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("bind {}", config.listen))?;
        let addr = listener.local_addr()?;
        let (node, proxy) = match &config.replication {
            None => (None, None),
            Some(r) => {
                let proxy = TcpListener::bind(r.listen)
                    .await
                    .with_context(|| format!("bind replication.listen {}", r.listen))?;
                let node = replication::node::Node::start(config, r, store.clone()).await?;
                (Some(node), Some(proxy))
            }
        };
        let proxy_addr = match &proxy {
            Some(p) => Some(p.local_addr()?),
            None => None,
        };
        let client = reqwest::Client::builder()
            .timeout(config.timeout())
            .connect_timeout(config.timeout())
            .no_proxy()
            .pool_max_idle_per_host(2)
            .build()
            .context("HTTP client")?;
        let mut tasks = JoinSet::new();
        let app = api::router(store.clone(), node.clone());
        tasks.spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "API server stopped");
            }
        });
        if let (Some(node), Some(proxy)) = (&node, proxy) {
            let app = replication::proxy::router(node.clone());
            tasks.spawn(async move {
                if let Err(e) = axum::serve(proxy, app).await {
                    tracing::error!(error = %e, "replication proxy listener stopped");
                }
            });
        }
        let on_up: Option<heartbeat::OnUp> = node.clone().map(|n| {
            let f: heartbeat::OnUp = Arc::new(move |site: &str| n.site_up(site));
            f
        });
        let (npeers, nservices) = {
            let s = store.read();
            (s.peers.len(), s.services.len())
        };
        for i in 0..npeers {
            tasks.spawn(heartbeat::run_peer(
                store.clone(),
                i,
                client.clone(),
                config.interval(),
                on_up.clone(),
            ));
        }
        for i in 0..nservices {
            tasks.spawn(probe::run_service(
                store.clone(),
                i,
                client.clone(),
                config.interval(),
                config.timeout(),
            ));
        }
        tracing::info!(site = %config.site, %addr, proxy = ?proxy_addr, peers = npeers, services = nservices, "geomesh-agent started");
        Ok(Agent {
            store,
            addr,
            replication: node,
            proxy_addr,
            tasks,
        })
    }

    /// Waits until a task ends (the API server failing); normally never.
    pub async fn wait(mut self) -> Result<()> {
        if let Some(r) = self.tasks.join_next().await {
            r.context("agent task")?;
        }
        anyhow::bail!("the agent's API server stopped")
    }
}
