//! geomesh-bridge: the native side of GMB/1 (docs/bridge-protocol.md).
//!
//! A Proxy-Wasm filter cannot open connections, arm timers that write, or serve gRPC. Its
//! Envoy `tcp_proxy` connects to this bridge instead; on that one connection the filter opens
//! channels (backend connections, here or at another site through that site's bridge), sends
//! and receives their bytes as frames, and asks for `WAKE` callbacks. The bridge never parses
//! the application protocol.
//!
//! [`Bridge::start`] runs a bridge inside the current tokio runtime; the `geomesh-bridge`
//! binary is a thin CLI around it.

pub mod admin;
pub mod config;
mod conn;
pub mod drain;
pub mod endpoints;
pub mod envoy_admin;
pub mod metrics;
mod pool;
pub mod remote;
pub mod stats;
pub mod tls;

/// The generated gRPC code of `proto/bridge.proto` (package `geomesh.bridge.v1`).
pub mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("geomesh.bridge.v1");
}

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use geomesh_frame::CloseCode;
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;
use tracing::{info, warn};

pub use config::{Config, ConfigError, ListenAddr};
pub use drain::DrainReport;
pub use stats::Stats;

use pb::bridge_client::BridgeClient;

/// Why a channel could not be opened: the `CLOSED` code and message.
pub type OpenError = (CloseCode, String);

/// A gRPC client of another site's bridge (one HTTP/2 connection, made lazily, remade after a
/// failure).
#[derive(Clone, Debug)]
pub struct SiteClient {
    pub url: String,
    pub client: BridgeClient<Channel>,
    /// The TLS files' contents the client was made with (`None`: plaintext).
    pub tls: Option<tls::TlsMaterial>,
}

/// The configuration in force, with the clients of its sites. Replaced as a whole on reload.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Config,
    pub sites: HashMap<String, SiteClient>,
}

/// Where a target resolved to.
#[derive(Debug)]
pub(crate) enum Route {
    Local(Vec<String>),
    Remote {
        site: String,
        client: BridgeClient<Channel>,
    },
}

/// State shared by every task of one bridge. The data path reads none of it except to count
/// (atomics, once per wake-up).
#[derive(Debug)]
pub struct Shared {
    snapshot: RwLock<Arc<Snapshot>>,
    pub stats: Stats,
    ready: AtomicBool,
    draining: AtomicBool,
    /// Fires at the end of a drain: every filter connection and tunnel still open is cut.
    pub(crate) stop: Arc<drain::StopHub>,
    admin_cache: tokio::sync::Mutex<Option<(Instant, Arc<envoy_admin::ClusterHosts>)>>,
    round_robin: AtomicUsize,
    /// Pooled backend connections of shared channels, by target.
    pub(crate) pools: pool::Pools,
}

impl Shared {
    /// The configuration in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_snapshot(&self, snap: Snapshot) {
        match self.snapshot.write() {
            Ok(mut s) => *s = Arc::new(snap),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(snap),
        }
    }

    /// True once every listener is bound, until a drain starts.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// True once a drain (SIGTERM) has started: no new connections are accepted.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Resolves a target: this bridge's `clusters`, then Envoy's admin API. `allow_remote`:
    /// false for channels that already come from another site (no second hop). A target
    /// `CLUSTER@host:port` names one endpoint of a cluster (crate::endpoints): accepted only
    /// if the cluster allows it, checked by the bridge of the cluster's site.
    pub(crate) async fn resolve(&self, target: &str, allow_remote: bool) -> Result<Route, OpenError> {
        let (cluster, endpoint) = match endpoints::split_target(target) {
            Some((c, e)) => {
                endpoints::check_endpoint(e)
                    .map_err(|m| (CloseCode::UnknownTarget, format!("`{target}`: {m}")))?;
                (c, Some(e))
            }
            None => (target, None),
        };
        let snap = self.snapshot();
        match snap.config.placement(cluster) {
            Some(config::Placement::Local(addrs)) => {
                return match endpoint {
                    None => Ok(Route::Local(addrs.to_vec())),
                    Some(e) if snap.config.allows_endpoint(cluster, e) => Ok(Route::Local(vec![e.to_owned()])),
                    Some(e) => Err((
                        CloseCode::UnknownTarget,
                        format!(
                            "`{e}` is not an endpoint cluster `{cluster}` allows at {} (clusters.{cluster}.endpoints)",
                            snap.config.site
                        ),
                    )),
                };
            }
            Some(config::Placement::Remote(site)) => {
                if !allow_remote {
                    return Err((
                        CloseCode::UnknownTarget,
                        format!(
                            "`{target}` lives at site {site}, not at {}; tunnels make one hop only",
                            snap.config.site
                        ),
                    ));
                }
                return match snap.sites.get(site) {
                    Some(c) => Ok(Route::Remote {
                        site: site.to_owned(),
                        client: c.client.clone(),
                    }),
                    None => Err((CloseCode::SiteUnreachable, format!("site {site} has no gRPC address"))),
                };
            }
            None => {}
        }
        if let Some(url) = &snap.config.envoy_admin {
            let hosts = self.envoy_clusters(url, &snap.config).await.map_err(|e| {
                (
                    CloseCode::UnknownTarget,
                    format!("`{cluster}` is not configured and Envoy's admin failed: {e}"),
                )
            })?;
            return match (hosts.get(cluster), endpoint) {
                (Some(h), None) if !h.is_empty() => Ok(Route::Local(h.clone())),
                (Some(h), Some(e)) if endpoints::allowed(None, h, e) => {
                    Ok(Route::Local(vec![e.to_owned()]))
                }
                (Some(_), Some(e)) => Err((
                    CloseCode::UnknownTarget,
                    format!("`{e}` is not a healthy host of Envoy cluster `{cluster}`"),
                )),
                (Some(_), None) => Err((
                    CloseCode::Refused,
                    format!("Envoy cluster `{cluster}` has no healthy host"),
                )),
                (None, _) => Err((
                    CloseCode::UnknownTarget,
                    format!(
                        "`{cluster}` is neither configured at {} nor an Envoy cluster",
                        snap.config.site
                    ),
                )),
            };
        }
        Err((
            CloseCode::UnknownTarget,
            format!(
                "`{cluster}` names no cluster of bridge {}",
                snap.config.site
            ),
        ))
    }

    async fn envoy_clusters(&self, url: &str, cfg: &Config) -> Result<Arc<envoy_admin::ClusterHosts>, String> {
        let ttl = Duration::from_millis(u64::from(cfg.defaults.envoy_admin_ttl_ms));
        let mut cache = self.admin_cache.lock().await;
        if let Some((at, hosts)) = cache.as_ref() {
            if at.elapsed() < ttl {
                return Ok(hosts.clone());
            }
        }
        let (authority, prefix) = config::parse_http_url(url)?;
        let timeout = Duration::from_millis(u64::from(cfg.defaults.connect_timeout_ms));
        let hosts = Arc::new(envoy_admin::fetch(&authority, &prefix, timeout).await?);
        *cache = Some((Instant::now(), hosts.clone()));
        Ok(hosts)
    }

    /// Connects to one of `addrs` (round-robin start, then each in turn) within `timeout`.
    pub(crate) async fn connect_local(
        &self,
        target: &str,
        addrs: &[String],
        timeout: Duration,
    ) -> Result<TcpStream, OpenError> {
        let deadline = Instant::now() + timeout;
        let n = addrs.len().max(1);
        let start = self.round_robin.fetch_add(1, Ordering::Relaxed) % n;
        let mut last = format!("`{target}` has no address");
        for i in 0..addrs.len() {
            let Some(addr) = addrs.get((start + i) % n) else {
                continue;
            };
            match tokio::time::timeout_at(deadline, connect_one(addr)).await {
                Err(_) => {
                    return Err((
                        CloseCode::ConnectTimeout,
                        format!("{target} ({addr}): no connection within {} ms", timeout.as_millis()),
                    ))
                }
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Ok(Err(e)) => last = format!("{target} ({addr}): {e}"),
            }
        }
        Err((CloseCode::Refused, last))
    }
}

async fn connect_one(addr: &str) -> std::io::Result<TcpStream> {
    let mut last = None;
    for sa in tokio::net::lookup_host(addr).await? {
        match TcpStream::connect(sa).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address")))
}

/// Builds the gRPC clients of a configuration's sites, keeping the ones whose URL is unchanged.
fn site_clients(cfg: &Config, old: Option<&Snapshot>) -> anyhow::Result<HashMap<String, SiteClient>> {
    let mut out = HashMap::new();
    let material = match &cfg.tls {
        Some(t) if !cfg.sites.is_empty() => Some(tls::load(t)?),
        _ => None,
    };
    for (name, spec) in &cfg.sites {
        if let Some(prev) = old
            .and_then(|o| o.sites.get(name))
            .filter(|p| p.url == spec.grpc && p.tls == material)
        {
            out.insert(name.clone(), prev.clone());
            continue;
        }
        let mut endpoint = tonic::transport::Endpoint::from_shared(spec.grpc.clone())
            .with_context(|| format!("sites.{name}.grpc"))?
            .connect_timeout(Duration::from_millis(u64::from(cfg.defaults.connect_timeout_ms)))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(8 << 20);
        if let Some(m) = &material {
            endpoint = endpoint
                .tls_config(tls::client(m))
                .with_context(|| format!("sites.{name}: TLS"))?;
        }
        let channel = endpoint.connect_lazy();
        out.insert(
            name.clone(),
            SiteClient {
                url: spec.grpc.clone(),
                client: BridgeClient::new(channel),
                tls: material.clone(),
            },
        );
    }
    Ok(out)
}

/// Where the filter listener is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundListen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for BoundListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A running bridge.
#[derive(Debug)]
pub struct Bridge {
    shared: Arc<Shared>,
    /// The filter listener (port 0 in the config becomes the real port here).
    pub listen: BoundListen,
    /// The gRPC listener, if any.
    pub grpc: Option<SocketAddr>,
    /// The admin listener, if any.
    pub admin: Option<SocketAddr>,
    /// The filter listener's accept loop.
    accept: JoinHandle<()>,
    /// The gRPC server, and what makes it stop accepting (graceful: open tunnels go on).
    grpc_task: Option<JoinHandle<()>>,
    grpc_stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The gRPC server's TLS (read again on reload).
    grpc_tls: Option<Arc<tls::Acceptor>>,
    /// Admin endpoint and pings.
    tasks: Vec<JoinHandle<()>>,
}

impl Bridge {
    /// Binds every listener of `config` and serves them on the current tokio runtime.
    pub async fn start(config: Config) -> anyhow::Result<Bridge> {
        let sites = site_clients(&config, None)?;
        let server_tls = match (&config.tls, &config.grpc_listen) {
            (Some(t), Some(_)) => Some(tls::acceptor(t)?),
            _ => None,
        };
        let listen_cfg = config.listen_addr()?;
        let grpc_listen = config.grpc_listen.clone();
        let admin_listen = config.admin_listen.clone();
        let shared = Arc::new(Shared {
            snapshot: RwLock::new(Arc::new(Snapshot { config, sites })),
            stats: Stats::default(),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            stop: Arc::new(drain::StopHub::default()),
            admin_cache: tokio::sync::Mutex::new(None),
            round_robin: AtomicUsize::new(0),
            pools: pool::Pools::from_env(),
        });
        let mut tasks = Vec::new();

        let (listen, accept) = match listen_cfg {
            ListenAddr::Tcp(a) => {
                let l = TcpListener::bind(&a)
                    .await
                    .with_context(|| format!("listen: cannot bind {a}"))?;
                let bound = l.local_addr()?;
                (BoundListen::Tcp(bound), tokio::spawn(accept_tcp(l, shared.clone())))
            }
            ListenAddr::Unix(p) => {
                remove_stale_socket(&p);
                let l = UnixListener::bind(&p).with_context(|| format!("listen: cannot bind unix:{}", p.display()))?;
                let task = tokio::spawn(accept_unix(l, shared.clone()));
                (BoundListen::Unix(p), task)
            }
        };
        let mut grpc_stop = None;
        let mut grpc_task = None;
        let grpc = match grpc_listen {
            Some(a) => {
                let l = TcpListener::bind(&a)
                    .await
                    .with_context(|| format!("grpc_listen: cannot bind {a}"))?;
                let bound = l.local_addr()?;
                let (tx, rx) = tokio::sync::oneshot::channel();
                grpc_stop = Some(tx);
                grpc_task = Some(tokio::spawn(remote::serve_grpc(l, shared.clone(), rx, server_tls.clone())));
                Some(bound)
            }
            None => None,
        };
        let admin = match admin_listen {
            Some(a) => {
                let l = TcpListener::bind(&a)
                    .await
                    .with_context(|| format!("admin_listen: cannot bind {a}"))?;
                let bound = l.local_addr()?;
                tasks.push(tokio::spawn(admin::serve(l, shared.clone())));
                Some(bound)
            }
            None => None,
        };
        tasks.push(tokio::spawn(remote::ping_sites(shared.clone())));
        shared.ready.store(true, Ordering::Relaxed);
        let site = shared.snapshot().config.site.clone();
        let show = |a: Option<SocketAddr>| a.map_or_else(|| "-".to_owned(), |a| a.to_string());
        info!(%site, %listen, grpc = %show(grpc), admin = %show(admin), "bridge ready");
        Ok(Bridge {
            shared,
            listen,
            grpc,
            admin,
            accept,
            grpc_task,
            grpc_stop: std::sync::Mutex::new(grpc_stop),
            grpc_tls: server_tls,
            tasks,
        })
    }

    /// Serves one filter connection that is not a socket (the native shell's in-process
    /// stream, `native/`), on the runtime of `handle`, exactly as an accepted one.
    pub fn serve_stream<S>(&self, handle: &tokio::runtime::Handle, io: S, peer: String) -> JoinHandle<()>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        handle.spawn(conn::serve(io, peer, self.shared.clone()))
    }

    /// Puts a new configuration in force: new channels use it. Listener addresses cannot change
    /// without a restart (a warning says so).
    pub fn reload(&self, config: Config) -> anyhow::Result<()> {
        let old = self.shared.snapshot();
        if old.config.listen != config.listen
            || old.config.grpc_listen != config.grpc_listen
            || old.config.admin_listen != config.admin_listen
        {
            warn!("listener addresses changed in the new configuration; they take effect at the next restart");
        }
        let sites = site_clients(&config, Some(&old))?;
        match (&self.grpc_tls, &config.tls) {
            (Some(acceptor), Some(files)) => acceptor
                .reload(Some(files))
                .map_err(|e| anyhow::anyhow!("gRPC server TLS: {e}"))?,
            (None, None) => {}
            _ => warn!("tls added or removed in the new configuration; the gRPC server's changes at the next restart"),
        }
        self.shared.set_snapshot(Snapshot { config, sites });
        if let Ok(mut cache) = self.shared.admin_cache.try_lock() {
            *cache = None;
        }
        info!("configuration reloaded");
        Ok(())
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// The shared state (configuration in force, counters).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Graceful stop, step by step:
    ///
    /// 1. `/ready` answers `503 draining` (Kubernetes and Swarm health checks stop sending new
    ///    work) and the filter listener is closed: new connections are refused;
    /// 2. the gRPC server stops accepting: new tunnels from other sites are refused, open ones go
    ///    on;
    /// 3. the bridge waits, at most `timeout`, for every filter connection and incoming tunnel to
    ///    end on its own (a client that closes its connection ends one);
    /// 4. what is still open then is cut: a filter connection gets `ERROR "geomesh-bridge is
    ///    shutting down ..."` (the filter answers its pending requests with it), a tunnel gets
    ///    `Closed(IO)` with the same message; after at most 2.5 s more the bridge stops waiting.
    ///
    /// The admin endpoint keeps answering throughout. Call [`shutdown`](Self::shutdown)
    /// afterwards.
    pub async fn drain(&self, timeout: Duration) -> DrainReport {
        let started = Instant::now();
        self.shared.ready.store(false, Ordering::Relaxed);
        self.shared.draining.store(true, Ordering::Relaxed);
        self.accept.abort();
        if let BoundListen::Unix(p) = &self.listen {
            let _ = std::fs::remove_file(p);
        }
        let stop = match self.grpc_stop.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(tx) = stop {
            let _ = tx.send(());
        }
        let stats = &self.shared.stats;
        let open = || {
            (
                stats.filter_connections_active.load(Ordering::Relaxed),
                stats.tunnels_in_active.load(Ordering::Relaxed),
            )
        };
        let (c, t) = open();
        info!(
            connections = c,
            tunnels = t,
            timeout_ms = timeout.as_millis() as u64,
            "draining: no new connections; waiting for open ones to end"
        );
        let deadline = started + timeout;
        let mut last_log = started;
        while open() != (0, 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
            if last_log.elapsed() >= Duration::from_secs(5) {
                last_log = Instant::now();
                let (c, t) = open();
                info!(connections = c, tunnels = t, "draining");
            }
        }
        let waited = started.elapsed();
        let (connections_cut, tunnels_cut) = open();
        let mut left_over = 0;
        if connections_cut + tunnels_cut > 0 {
            warn!(
                connections = connections_cut,
                tunnels = tunnels_cut,
                "drain period over: cutting what is still open"
            );
            self.shared.stop.stop();
            let cut_deadline = Instant::now() + conn::CLOSE_GRACE + Duration::from_millis(500);
            while open() != (0, 0) && Instant::now() < cut_deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let (c, t) = open();
            left_over = c + t;
        }
        let report = DrainReport {
            waited,
            connections_cut,
            tunnels_cut,
            left_over,
        };
        info!(
            waited_ms = waited.as_millis() as u64,
            connections_cut, tunnels_cut, left_over, "drained"
        );
        report
    }

    /// Stops accepting and serving at once (open connections end with their tasks, or with the
    /// runtime).
    pub fn shutdown(self) {
        self.accept.abort();
        if let Some(t) = &self.grpc_task {
            t.abort();
        }
        for t in &self.tasks {
            t.abort();
        }
        if let BoundListen::Unix(p) = &self.listen {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn remove_stale_socket(p: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(m) = std::fs::symlink_metadata(p) {
        if m.file_type().is_socket() {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn accept_tcp(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((s, peer)) => {
                let _ = s.set_nodelay(true);
                tokio::spawn(conn::serve(s, peer.to_string(), shared.clone()));
            }
            Err(e) => {
                warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn accept_unix(listener: UnixListener, shared: Arc<Shared>) {
    let mut n = 0u64;
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                n += 1;
                tokio::spawn(conn::serve(s, format!("unix#{n}"), shared.clone()));
            }
            Err(e) => {
                warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
