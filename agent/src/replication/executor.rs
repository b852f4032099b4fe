//! The replica side: applies a leader's delivery to this site's instance,
//! exactly once as far as the agent can tell.
//!
//! 1. The replicant copy in the delivery is stored (highest version wins).
//! 2. A sync delivery stops there (204).
//! 3. An answer already recorded for (leader, seq) is returned as is: a
//!    delivery sent again because its answer was lost is not applied twice.
//! 4. Otherwise (leader, seq) is marked in flight (committed), the request
//!    goes to the instance, and its answer is recorded (committed) before
//!    it is returned. A crash between the two leaves the mark: the next
//!    delivery is sent to the instance again (at least once; for a create
//!    that may make a second resource, which docs/replication.md lists).
//! 5. On a non-leader site the own replica entry is updated: the local id
//!    after a create, `deleted` after a delete.
//!
//! An instance that cannot be reached, or answers 503, is "not applied":
//! the leader gets an error and retries; nothing is recorded as done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::db::{Applied, Db};
use super::instance::Instance;
use super::model::{OpKind, Replica, ReplicaStatus, Reply};
use super::rewrite::{extract_local_id, IdFields};
use super::transport::{Delivery, DeliveryError};
use super::{blocking, now_ms};

/// A service of this site, as the executor needs it.
#[derive(Debug, Clone)]
pub struct LocalService {
    /// Its instance.
    pub instance: Instance,
    /// Where its ids are.
    pub ids: IdFields,
}

/// Serialises deliveries of one (leader, seq).
type KeyLock = Arc<tokio::sync::Mutex<()>>;

/// Applies deliveries on this site.
pub struct Executor {
    site: String,
    db: Db,
    services: HashMap<String, LocalService>,
    max_rewrite: usize,
    max_stored_reply: usize,
    busy: Mutex<HashMap<(String, u64), KeyLock>>,
    hold: HashMap<OpKind, Duration>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("site", &self.site)
            .finish_non_exhaustive()
    }
}

fn plain(status: u16, text: String) -> Reply {
    Reply {
        status,
        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
        body: Bytes::from(text + "\n"),
        truncated: None,
    }
}

impl Executor {
    /// An executor for `site` over `db`; `max_rewrite` bounds the bodies
    /// parsed for ids, `max_stored_reply` the answers kept for deduplication.
    pub fn new(
        site: &str,
        db: Db,
        services: HashMap<String, LocalService>,
        max_rewrite: usize,
        max_stored_reply: usize,
    ) -> Self {
        Executor {
            site: site.to_owned(),
            db,
            services,
            max_rewrite,
            max_stored_reply,
            busy: Mutex::new(HashMap::new()),
            hold: HashMap::new(),
        }
    }

    /// Tests only (`replication.test_hooks.delay_apply_ms`): each delivery
    /// of a kind in `hold` waits that long before it reaches the instance.
    pub fn with_apply_delays(mut self, hold: HashMap<OpKind, Duration>) -> Self {
        self.hold = hold;
        self
    }

    /// This site.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The store.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A service of this site.
    pub fn service(&self, name: &str) -> Option<&LocalService> {
        self.services.get(name)
    }

    fn key_lock(&self, leader: &str, seq: u64) -> KeyLock {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        busy.retain(|_, l| Arc::strong_count(l) > 1);
        busy.entry((leader.to_owned(), seq)).or_default().clone()
    }

    /// Applies one delivery (see the module documentation).
    pub async fn apply(&self, mut d: Delivery) -> Result<Reply, DeliveryError> {
        let lock = self.key_lock(&d.leader, d.seq);
        let _guard = lock.lock().await;
        let err = |e: super::db::DbError| DeliveryError(format!("site {}: {e}", self.site));
        let (site, copy) = (self.site.clone(), d.replicant.clone());
        blocking(&self.db, move |db| db.store_copy(&copy, &site))
            .await
            .map_err(err)?;
        if let Some(ack) = d.ack {
            let leader = d.leader.clone();
            blocking(&self.db, move |db| db.applied_ack(&leader, ack))
                .await
                .map_err(err)?;
        }
        if d.kind == OpKind::Sync {
            return Ok(Reply {
                status: 204,
                headers: Vec::new(),
                body: Bytes::new(),
                truncated: None,
            });
        }
        let (leader, seq) = (d.leader.clone(), d.seq);
        let previous = blocking(&self.db, move |db| db.applied(&leader, seq))
            .await
            .map_err(err)?;
        let attempt = match previous {
            Some(Applied::Done(reply)) => {
                tracing::debug!(site = %self.site, leader = %d.leader, seq, "delivery already applied: answer replayed");
                return Ok(reply);
            }
            Some(Applied::InFlight { attempts }) => attempts + 1,
            None => 1,
        };
        if attempt > 1 {
            tracing::warn!(
                site = %self.site, leader = %d.leader, seq, attempt,
                "delivery sent to the instance again: its previous answer was never recorded"
            );
        }
        let Some(service) = self.services.get(&d.replicant.service) else {
            // A configuration mismatch, not a transient failure: answered, recorded.
            let reply = plain(
                502,
                format!(
                    "geomesh: site {} has no instance of service '{}'",
                    self.site, d.replicant.service
                ),
            );
            self.record(&d, &reply).await.map_err(err)?;
            return Ok(reply);
        };
        if let Some(hold) = self.hold.get(&d.kind) {
            tracing::warn!(
                site = %self.site, leader = %d.leader, seq, kind = %d.kind, ?hold,
                "test hook: holding the delivery before it reaches the instance"
            );
            tokio::time::sleep(*hold).await;
        }
        let (leader, meta) = (d.leader.clone(), d.replicant.meta.clone());
        blocking(&self.db, move |db| {
            db.applied_begin(&leader, seq, &meta, now_ms())
        })
        .await
        .map_err(err)?;
        let reply = service
            .instance
            .send(&d.method, &d.target, &d.headers, d.body.take())
            .await
            .map_err(|e| {
                DeliveryError(format!(
                    "site {}: instance of '{}': {e}",
                    self.site, d.replicant.service
                ))
            })?;
        if reply.status == 503 {
            return Err(DeliveryError(format!(
                "site {}: instance of '{}' answered 503 (unavailable)",
                self.site, d.replicant.service
            )));
        }
        self.record(&d, &reply).await.map_err(err)?;
        // The leader maintains its own record from the answer it gets.
        if d.replicant.leader != self.site {
            let own = match d.kind {
                OpKind::Create => Some(
                    match (
                        reply.is_success(),
                        extract_local_id(&reply, &service.ids, self.max_rewrite),
                    ) {
                        (true, Ok((id, _))) => Replica {
                            local_id: Some(id),
                            status: ReplicaStatus::Ok,
                            error: None,
                        },
                        (true, Err(e)) => Replica {
                            local_id: None,
                            status: ReplicaStatus::Failed,
                            error: Some(e),
                        },
                        (false, _) => Replica {
                            local_id: None,
                            status: ReplicaStatus::Failed,
                            error: Some(format!("create answered {}", reply.status)),
                        },
                    },
                ),
                OpKind::Delete
                    if reply.is_success() || reply.status == 404 || reply.status == 410 =>
                {
                    let mut r = d
                        .replicant
                        .replicas
                        .get(&self.site)
                        .cloned()
                        .unwrap_or(Replica {
                            local_id: None,
                            status: ReplicaStatus::Deleted,
                            error: None,
                        });
                    r.status = ReplicaStatus::Deleted;
                    Some(r)
                }
                _ => None,
            };
            if let Some(own) = own {
                let (meta, site) = (d.replicant.meta.clone(), self.site.clone());
                blocking(&self.db, move |db| db.set_own_replica(&meta, &site, &own))
                    .await
                    .map_err(err)?;
            }
        }
        Ok(reply)
    }

    async fn record(&self, d: &Delivery, reply: &Reply) -> Result<(), super::db::DbError> {
        let (leader, seq, meta, r, max) = (
            d.leader.clone(),
            d.seq,
            d.replicant.meta.clone(),
            reply.clone(),
            self.max_stored_reply,
        );
        blocking(&self.db, move |db| {
            db.applied_finish(&leader, seq, &meta, &r, max, now_ms())
        })
        .await
    }
}
