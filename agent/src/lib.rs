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
//! (peers), [`probe`] (own services), [`api`] (HTTP), [`tls`] (between
//! agents), [`replication`].

pub mod api;
pub mod config;
pub mod heartbeat;
pub mod influx_replay;
pub mod metrics;
pub mod probe;
pub mod replication;
pub mod store;
pub mod tls;

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
    /// The peer listener's address (with `peer_listen`).
    pub peer_addr: Option<SocketAddr>,
    tls: Option<tls::PeerTls>,
    tasks: JoinSet<()>,
}

/// The peer listener's TLS connections, as axum serves them.
struct TlsListener(geomesh_tls::Incoming);

impl axum::serve::Listener for TlsListener {
    type Io = geomesh_tls::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        match self.0.next().await {
            Some(c) => c,
            // The accepting task ended (never, short of a panic): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.0.local_addr())
    }
}

impl Agent {
    /// Binds the API (and the proxy listener with replication), opens the
    /// replication store and resumes its log, and starts the heartbeat and
    /// probe tasks on the current tokio runtime.
    pub async fn start(config: &AgentConfig) -> Result<Agent> {
        let store = Store::new(config);
        let tls = tls::PeerTls::load(config)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("bind {}", config.listen))?;
        let addr = listener.local_addr()?;
        let peer_listener = match config.peer_listen {
            Some(a) => Some(TcpListener::bind(a).await.with_context(|| format!("bind peer_listen {a}"))?),
            None => None,
        };
        let peer_addr = match &peer_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let (node, proxy) = match &config.replication {
            None => (None, None),
            Some(r) => {
                let proxy = TcpListener::bind(r.listen)
                    .await
                    .with_context(|| format!("bind replication.listen {}", r.listen))?;
                let node = replication::node::Node::start(config, r, store.clone(), tls.as_ref()).await?;
                (Some(node), Some(proxy))
            }
        };
        let proxy_addr = match &proxy {
            Some(p) => Some(p.local_addr()?),
            None => None,
        };
        let builder = || {
            reqwest::Client::builder()
                .timeout(config.timeout())
                .connect_timeout(config.timeout())
                .no_proxy()
                .pool_max_idle_per_host(2)
        };
        let client = builder().build().context("HTTP client")?;
        let peer_client = tls::peer_client(builder(), tls.as_ref())?;
        let mut tasks = JoinSet::new();
        let part = if peer_listener.is_some() { api::Part::Local } else { api::Part::All };
        let replay = match &config.influx_replay {
            None => None,
            Some(r) => {
                let q = Arc::new(
                    influx_replay::ReplayQueue::open(r)
                        .with_context(|| format!("influx_replay store in {}", r.data_dir.display()))?,
                );
                store.write().influx_replay = Some(q.clone());
                Some(q)
            }
        };
        let mut app = api::router(store.clone(), node.clone(), part);
        if let Some(q) = &replay {
            app = app.merge(influx_replay::router(q.clone()));
            let replay_client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_millis(q.config.request_timeout_ms))
                .connect_timeout(config.timeout())
                .no_proxy()
                .build()
                .context("HTTP client")?;
            for cluster in q.clusters.keys() {
                tasks.spawn(influx_replay::run(q.clone(), cluster.clone(), replay_client.clone()));
            }
        }
        tasks.spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "API server stopped");
            }
        });
        if let Some(l) = peer_listener {
            let app = api::router(store.clone(), node.clone(), api::Part::Peers);
            match &tls {
                Some(t) => {
                    let conns = geomesh_tls::incoming(l, t.acceptor.clone(), geomesh_tls::HANDSHAKE_TIMEOUT, "peer_listen")?;
                    tasks.spawn(async move {
                        if let Err(e) = axum::serve(TlsListener(conns), app).await {
                            tracing::error!(error = %e, "peer listener stopped");
                        }
                    });
                }
                None => {
                    tasks.spawn(async move {
                        if let Err(e) = axum::serve(l, app).await {
                            tracing::error!(error = %e, "peer listener stopped");
                        }
                    });
                }
            }
        }
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
                peer_client.clone(),
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
        tracing::info!(
            site = %config.site, %addr, peer = ?peer_addr, proxy = ?proxy_addr, peers = npeers,
            services = nservices, tls = tls.is_some(), "geomesh-agent started"
        );
        Ok(Agent {
            store,
            addr,
            replication: node,
            proxy_addr,
            peer_addr,
            tls,
            tasks,
        })
    }

    /// Reads the TLS files again (SIGHUP): new connections to and from peers get the new
    /// certificate and CA; on an error the agent keeps what it has and says why.
    pub fn reload_tls(&self) -> Result<()> {
        match &self.tls {
            Some(t) => t.reload(),
            None => Ok(()),
        }
    }

    /// Waits until a task ends (the API server failing); normally never.
    pub async fn wait(&mut self) -> Result<()> {
        if let Some(r) = self.tasks.join_next().await {
            r.context("agent task")?;
        }
        anyhow::bail!("the agent's API server stopped")
    }
}
