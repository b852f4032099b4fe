//! How a leader's operation reaches a site: the [`Transport`] trait.
//!
//! The leader hands a [`Delivery`] to the transport for a site; the
//! transport gets it to that site's [`Executor`](super::executor::Executor)
//! (the leader's own site: a direct call; another site: HTTP to the peer
//! agent's `POST /v1/replication/peer/apply`, round 2) and returns the
//! instance's raw answer (local ids not translated: the leader needs them).
//! `Err` means "not applied as far as we know, try again later".

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use super::executor::Executor;
use super::model::{Body, OpKind, Replicant, Reply};

/// One operation for one site, as the leader sends it.
#[derive(Debug)]
pub struct Delivery {
    /// The leader's site (with `seq`, the deduplication key).
    pub leader: String,
    /// The operation's position in the leader's log.
    pub seq: u64,
    /// What it does.
    pub kind: OpKind,
    /// Method for the instance (empty for a sync).
    pub method: String,
    /// Path and query on that site's instance (the site's local id in it).
    pub target: String,
    /// Request headers for the instance.
    pub headers: Vec<(String, String)>,
    /// The body (already translated for that site when it is JSON naming the meta-id).
    pub body: Option<Body>,
    /// The leader's current replicant (the site stores it as its copy).
    pub replicant: Replicant,
    /// Every operation of this leader before this seq is finished on that
    /// site: its deduplication entries up to here may go.
    pub ack: Option<u64>,
}

/// A delivery that did not get an answer (retried later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError(pub String);

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeliveryError {}

/// The future a transport returns.
pub type DeliveryFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Reply, DeliveryError>> + Send + 'a>>;

/// Gets deliveries to sites.
pub trait Transport: Send + Sync + 'static {
    /// Delivers `d` to `site` and returns the instance's raw answer.
    fn deliver<'a>(&'a self, site: &'a str, d: Delivery) -> DeliveryFuture<'a>;
}

/// Executors reached by direct calls: the leader's own site in production,
/// and every site of a multi-site test in one process. A site can be made
/// unreachable (a partition between this leader and it).
#[derive(Default)]
pub struct InProcess {
    executors: HashMap<String, Arc<Executor>>,
    cut: Mutex<HashSet<String>>,
}

impl InProcess {
    /// No sites yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a site.
    pub fn with(mut self, site: &str, e: Arc<Executor>) -> Self {
        self.executors.insert(site.to_owned(), e);
        self
    }

    /// Cuts (or restores) the path to `site`.
    pub fn set_reachable(&self, site: &str, reachable: bool) {
        let mut cut = self.cut.lock().unwrap_or_else(|e| e.into_inner());
        if reachable {
            cut.remove(site);
        } else {
            cut.insert(site.to_owned());
        }
    }

    fn reachable(&self, site: &str) -> bool {
        !self
            .cut
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(site)
    }
}

impl Transport for InProcess {
    fn deliver<'a>(&'a self, site: &'a str, d: Delivery) -> DeliveryFuture<'a> {
        Box::pin(async move {
            if !self.reachable(site) {
                return Err(DeliveryError(format!("site {site}: unreachable")));
            }
            let e = self
                .executors
                .get(site)
                .ok_or_else(|| DeliveryError(format!("site {site}: no route to its agent")))?;
            e.apply(d).await
        })
    }
}

/// The own site through a direct call, the others through `remote`.
pub struct Mesh<R> {
    own_site: String,
    own: Arc<Executor>,
    remote: R,
}

impl<R: Transport> Mesh<R> {
    /// A mesh.
    pub fn new(own_site: &str, own: Arc<Executor>, remote: R) -> Self {
        Mesh {
            own_site: own_site.to_owned(),
            own,
            remote,
        }
    }
}

impl<R: Transport> Transport for Mesh<R> {
    fn deliver<'a>(&'a self, site: &'a str, d: Delivery) -> DeliveryFuture<'a> {
        if site == self.own_site {
            Box::pin(self.own.apply(d))
        } else {
            self.remote.deliver(site, d)
        }
    }
}
