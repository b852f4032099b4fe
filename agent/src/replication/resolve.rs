//! What a request handed over by the scope filter is about, and where it
//! must go (docs/replication.md, "Reads" and "Updates and deletes"). Pure
//! decisions over the store; the proxy (round 2) carries them out.

use super::db::{Db, DbResult};
use super::metaid::MetaId;
use super::model::{LocalId, ReplicaStatus, Replicant, ReplicantState};
use super::paths::{meta_split, normalize_collection, splits, Split};

/// What a request path names.
#[derive(Debug, Clone, PartialEq)]
pub enum Named {
    /// No replicated resource: the request goes to the local instance unchanged.
    Plain,
    /// A replicant this site knows, named by its meta-id or by this site's local id.
    Known {
        /// The replicant (master record or copy).
        replicant: Replicant,
        /// The path read as collection/id/suffix.
        split: Split,
        /// Named by meta-id (else by a local id).
        by_meta: bool,
    },
    /// A meta-id this site has no record of (another site may: ask the peers).
    UnknownMeta {
        /// The meta-id.
        meta: MetaId,
        /// The path read as collection/id/suffix.
        split: Split,
    },
}

/// Reads `path` (no query) of a request for `service` on `site`.
pub fn resolve(db: &Db, service: &str, site: &str, path: &str) -> DbResult<Named> {
    if let Some((split, meta)) = meta_split(path) {
        return Ok(match db.replicant(&meta)? {
            Some(r) if path_names(&r, service, &split) => Named::Known {
                replicant: r,
                split,
                by_meta: true,
            },
            // A meta-id under another collection (or service) than its replicant's: the path
            // names something else (`DELETE /users/gm-…` must not delete an image).
            Some(_) => Named::Plain,
            None => Named::UnknownMeta { meta, split },
        });
    }
    for split in splits(path) {
        if let Some(meta) = db.lookup_local(service, site, &split.collection, &split.id)? {
            if let Some(r) = db.replicant(&meta)? {
                return Ok(Named::Known {
                    replicant: r,
                    split,
                    by_meta: false,
                });
            }
        }
    }
    Ok(Named::Plain)
}

/// Whether `split` (a path read as collection/id/suffix) can name `r`: same service, and the
/// collection the replicant was created in (a meta-id is only recognised where the resource
/// lives, `<collection>/<meta><suffix>`).
pub fn path_names(r: &Replicant, service: &str, split: &Split) -> bool {
    r.service == service && normalize_collection(&split.collection) == r.collection
}

/// Where a read of a known replicant is served.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadPlan {
    /// By this site's instance, at `path` (the local id in it).
    Local {
        /// Path on the instance (query to be appended by the caller).
        path: String,
        /// The local id to hide in the answer.
        local_id: LocalId,
    },
    /// By another replica's site: these, nearest first.
    Remote(Vec<String>),
    /// Nowhere: 404 with this message.
    NotFound(String),
    /// Not yet: 503 with this message (a pinned read of a replica still being created).
    NotReady(String),
}

/// Local-first: this site's replica when it is live; otherwise, unless the
/// client pinned the site, the live replicas elsewhere ordered by `rtt`
/// (unknown RTTs last, then by name).
pub fn read_plan(
    r: &Replicant,
    split: &Split,
    site: &str,
    pinned: bool,
    rtt: impl Fn(&str) -> Option<f64>,
) -> ReadPlan {
    match r.state {
        ReplicantState::Deleted => return ReadPlan::NotFound(format!("{} was deleted", r.meta)),
        ReplicantState::Failed => {
            return ReadPlan::NotFound(format!("{} could not be created on any site", r.meta))
        }
        ReplicantState::Active | ReplicantState::Deleting => {}
    }
    if let (Some(path), Some(id)) = (r.path_on(site, &split.suffix), r.local_id(site)) {
        return ReadPlan::Local {
            path,
            local_id: id.clone(),
        };
    }
    let mine = r.replicas.get(site).map(|p| p.status);
    if pinned {
        return match mine {
            Some(ReplicaStatus::Pending) => ReadPlan::NotReady(format!(
                "the replica of {} on site {site} is not created yet",
                r.meta
            )),
            _ => ReadPlan::NotFound(format!(
                "site {site} holds no replica of {}; replicas: {}",
                r.meta,
                r.live_sites().collect::<Vec<_>>().join(", ")
            )),
        };
    }
    let mut others: Vec<&str> = r.live_sites().filter(|s| *s != site).collect();
    others.sort_by(|a, b| match (rtt(a), rtt(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    });
    if others.is_empty() {
        ReadPlan::NotFound(format!("{} has no live replica", r.meta))
    } else {
        ReadPlan::Remote(others.into_iter().map(str::to_owned).collect())
    }
}

/// Where a write of a known replicant goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WritePlan {
    /// This site leads it: append to the local log.
    Here,
    /// Forward to the leader's agent (503 "read-only" when it cannot be reached).
    Leader(String),
}

/// Writes go to the leader, whatever the scope says.
pub fn write_plan(r: &Replicant, site: &str) -> WritePlan {
    if r.leader == site {
        WritePlan::Here
    } else {
        WritePlan::Leader(r.leader.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::db::{Finish, NewCreate};
    use serde_json::json;

    fn setup() -> (tempfile::TempDir, Db, MetaId) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("r.sqlite3")).unwrap();
        let meta = MetaId::from_u128(77 << 80);
        db.begin_create(&NewCreate {
            meta: meta.clone(),
            service: "image".into(),
            collection: "/v2/images".into(),
            leader: "A".into(),
            sites: vec!["A".into(), "B".into(), "C".into()],
            method: "POST".into(),
            query: None,
            headers: vec![],
            body_file: None,
            body_len: 0,
            origin: "A".into(),
            now_ms: 1,
        })
        .unwrap();
        let ok = |id| Finish::Applied {
            status: 201,
            created: Some(Ok(LocalId::from_json(&id).unwrap())),
        };
        db.finish(1, "A", &ok(json!(42)), 2).unwrap();
        db.finish(1, "B", &ok(json!("b 7")), 3).unwrap();
        (dir, db, meta)
    }

    #[test]
    fn paths_name_replicants_by_meta_id_or_this_sites_local_id() {
        let (_d, db, meta) = setup();
        let by_meta = resolve(&db, "image", "B", &format!("/v2/images/{meta}/file")).unwrap();
        let Named::Known {
            replicant,
            split,
            by_meta: true,
        } = by_meta
        else {
            panic!("{by_meta:?}")
        };
        assert_eq!(split.suffix, "/file");
        assert_eq!(replicant.meta, meta);
        let by_local = resolve(&db, "image", "A", "/v2/images/42").unwrap();
        assert!(
            matches!(by_local, Named::Known { by_meta: false, .. }),
            "{by_local:?}"
        );
        assert_eq!(
            resolve(&db, "image", "B", "/v2/images/42").unwrap(),
            Named::Plain,
            "A's id means nothing on B"
        );
        assert!(matches!(
            resolve(&db, "image", "B", "/v2/images/b%207").unwrap(),
            Named::Known { .. }
        ));
        assert_eq!(
            resolve(&db, "compute", "A", "/v2/images/42").unwrap(),
            Named::Plain,
            "another service"
        );
        assert_eq!(
            resolve(&db, "image", "A", "/v2/images").unwrap(),
            Named::Plain
        );
        for other in [
            format!("/users/{meta}"),
            format!("/v2/{meta}"),
            format!("/v2/images/x/{meta}"),
        ] {
            assert_eq!(
                resolve(&db, "image", "A", &other).unwrap(),
                Named::Plain,
                "{other}: a meta-id outside its replicant's collection names nothing"
            );
        }
        assert_eq!(
            resolve(&db, "compute", "A", &format!("/v2/images/{meta}")).unwrap(),
            Named::Plain,
            "another service's replicant"
        );
        let unknown = MetaId::from_u128(5);
        assert!(matches!(
            resolve(&db, "image", "A", &format!("/v2/images/{unknown}")).unwrap(),
            Named::UnknownMeta { .. }
        ));
    }

    #[test]
    fn reads_are_local_first_then_nearest() {
        let (_d, db, meta) = setup();
        let r = db.replicant(&meta).unwrap().unwrap();
        let split = splits(&format!("/v2/images/{meta}")).pop().unwrap();
        assert_eq!(
            read_plan(&r, &split, "B", false, |_| None),
            ReadPlan::Local {
                path: "/v2/images/b%207".into(),
                local_id: LocalId::from_json(&json!("b 7")).unwrap()
            }
        );
        // C's create is pending: unpinned reads go to the nearest live replica.
        let rtt = |s: &str| match s {
            "A" => Some(30.0),
            "B" => Some(5.0),
            _ => None,
        };
        assert_eq!(
            read_plan(&r, &split, "C", false, rtt),
            ReadPlan::Remote(vec!["B".into(), "A".into()])
        );
        assert!(matches!(
            read_plan(&r, &split, "C", true, rtt),
            ReadPlan::NotReady(_)
        ));
        assert!(
            matches!(read_plan(&r, &split, "D", true, rtt), ReadPlan::NotFound(m) if m.contains("A, B"))
        );
        assert_eq!(write_plan(&r, "A"), WritePlan::Here);
        assert_eq!(write_plan(&r, "C"), WritePlan::Leader("A".into()));
    }
}
