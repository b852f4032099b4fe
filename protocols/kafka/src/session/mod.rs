//! Kafka on the geomesh kit: one client connection made to look like one Kafka cluster in front
//! of the shards of a routing table (README.md "APIs through the proxy" says what each API does).
//!
//! | file | concern |
//! |---|---|
//! | `answer.rs` | answer frames, read by the (API, version) of the request they answer |
//! | `plan.rs` | request framing, refusals, which API goes where, deadlines |
//! | `cluster.rs` | ApiVersions and Metadata: every shard asked, one cluster answered |
//! | `produce.rs` | Produce split by partition, InitProducerId per shard, producer ids rewritten |
//! | `consume.rs` | Fetch and ListOffsets split by partition |
//! | `epochs.rs` | OffsetForLeaderEpoch split by partition, only to shards that offer it |
//! | `sasl.rs` | SaslHandshake and SaslAuthenticate stored and replayed on every shard's links |
//! | `topics.rs` | CreateTopics and DeleteTopics, each topic to its shard |
//! | `group.rs` | FindCoordinator and the group APIs on the group's home shard, offsets with their topics |
//! | `merge.rs` | what each merge keeps, and the helpers they share |
//! | `producers.rs` | the producer ids of a client producer, shared by its connections |
//! | `groups.rs` | each group's coordinator and latest generation, shared as leaders are |
//! | `leaders.rs` | each shard's partition leaders, shared by a client's connections; endpoint links |

mod answer;
mod cluster;
mod consume;
mod epochs;
mod group;
pub mod groups;
pub mod leaders;
mod merge;
mod plan;
mod produce;
pub mod producers;
mod sasl;
mod topics;

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use geomesh_core::{ClusterId, RoutingTable};
use geomesh_kit::{Ctx, Disposition, Failure, Limits as PipelineLimits, MergeCx, Part, Pipeline, Plan, Protocol, SlotView};

pub use answer::{Expect, KafkaAnswer};
pub use merge::{KafkaMerge, Merge};
pub use plan::ClientRequest;
use leaders::{leader_of, LeaderRegistry, Links, TopicLeaders, VmLeaders};
use producers::{ProducerRegistry, VmRegistry};

use crate::logic::metadata::KnownTopicId;
use crate::logic::nodes::Advertised;
use crate::settings::Settings;
use crate::Limits;

/// Topic ids remembered from Metadata answers, per connection.
pub const MAX_TOPIC_IDS: usize = 10_000;

/// The Kafka protocol state of one client connection.
pub struct KafkaProtocol {
    limits: Limits,
    advertised: Advertised,
    cluster_id: Bytes,
    /// Topic ids learned from Metadata (Metadata requests by id are routed with them).
    topic_ids: Vec<KnownTopicId>,
    producers: Rc<dyn ProducerRegistry>,
    leaders: Rc<dyn LeaderRegistry>,
    /// Endpoint links this connection bound (partition leaders).
    links: Links,
    follow_leaders: bool,
    /// OffsetForLeaderEpoch versions each shard offered (ApiVersions answers on this connection).
    epoch_versions: epochs::ShardEpochVersions,
}

/// Topic leaders read from the registry for one request: ((shard, topic), leaders).
pub type LeaderCache = Vec<((u16, Bytes), Option<TopicLeaders>)>;

/// The Kafka session: [`KafkaProtocol`] on the kit's pipeline.
pub type KafkaSession = Pipeline<KafkaProtocol>;

impl KafkaProtocol {
    pub fn new(settings: &Settings) -> Self {
        Self::with_registry(settings, Rc::new(VmRegistry))
    }

    /// With another store of producer ids (a host-wide one).
    pub fn with_registry(settings: &Settings, producers: Rc<dyn ProducerRegistry>) -> Self {
        Self::with_registries(settings, producers, Rc::new(VmLeaders))
    }

    /// With host-wide stores of producer ids and partition leaders.
    pub fn with_registries(settings: &Settings, producers: Rc<dyn ProducerRegistry>, leaders: Rc<dyn LeaderRegistry>) -> Self {
        KafkaProtocol {
            limits: settings.limits,
            advertised: Advertised {
                host: Bytes::from(settings.advertised_host.clone().into_bytes()),
                port: i32::from(settings.advertised_port),
            },
            cluster_id: Bytes::from(settings.cluster_id.clone().into_bytes()),
            topic_ids: Vec::new(),
            producers,
            leaders,
            links: Links::default(),
            follow_leaders: settings.follow_leaders,
            epoch_versions: epochs::ShardEpochVersions::new(),
        }
    }
}

/// A session for one client connection (producer ids kept per VM).
pub fn session(table: Rc<RoutingTable>, upstream_timeout_ms: u32, settings: &Settings) -> KafkaSession {
    session_with_registry(table, upstream_timeout_ms, settings, Rc::new(VmRegistry))
}

/// A session whose producer ids are kept in `producers` (a filter's host-wide store).
pub fn session_with_registry(
    table: Rc<RoutingTable>,
    upstream_timeout_ms: u32,
    settings: &Settings,
    producers: Rc<dyn ProducerRegistry>,
) -> KafkaSession {
    session_with_registries(table, upstream_timeout_ms, settings, producers, Rc::new(VmLeaders))
}

/// A session whose producer ids and partition leaders are kept in host-wide stores.
pub fn session_with_registries(
    table: Rc<RoutingTable>,
    upstream_timeout_ms: u32,
    settings: &Settings,
    producers: Rc<dyn ProducerRegistry>,
    leaders: Rc<dyn LeaderRegistry>,
) -> KafkaSession {
    let timeout_ms = u64::from(upstream_timeout_ms);
    let limits = PipelineLimits {
        timeout_ms,
        granularity_ms: settings.granularity(timeout_ms),
        store_keys: sasl::STORE_KEYS,
    };
    Pipeline::new(KafkaProtocol::with_registries(settings, producers, leaders), table, limits)
}

/// The shard index of a table cluster (virtual node ids are made of it).
fn shard(c: ClusterId) -> u16 {
    c.0
}

impl Protocol for KafkaProtocol {
    type Request = ClientRequest;
    type Answer = KafkaAnswer;
    type Merge = KafkaMerge;
    type Link = ();
    type Expect = Expect;

    fn decode_request(&mut self, buf: &mut BytesMut) -> Result<Option<ClientRequest>, Bytes> {
        plan::decode_request(self.limits.max_request_bytes, buf)
    }

    fn decode_answer(&mut self, _: &mut (), buf: &mut BytesMut, head: Option<&Expect>) -> Result<Option<KafkaAnswer>, String> {
        Ok(answer::next_frame(buf, self.limits.max_response_bytes)?.map(|raw| KafkaAnswer {
            raw,
            expect: head.copied().unwrap_or_default(),
        }))
    }

    fn family(&mut self, request: &ClientRequest) -> &'static str {
        plan::family(request)
    }

    fn plan(&mut self, request: ClientRequest, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        plan::plan(self, request, cx)
    }

    fn classify(&mut self, _: ClusterId, _: &mut (), answer: &KafkaAnswer, head: Option<SlotView<'_, Expect>>) -> Disposition {
        match head {
            None => Disposition::Broken("an answer no request waits for".to_owned()),
            Some(h) if answer.correlation_id() != Some(h.expect.correlation_id) => Disposition::Broken(format!(
                "answer with correlation id {:?} where {} was due",
                answer.correlation_id(),
                h.expect.correlation_id
            )),
            Some(_) => Disposition::Answer,
        }
    }

    fn merge(&mut self, m: &mut KafkaMerge, parts: &[Part<KafkaAnswer>], cx: &mut MergeCx<'_>) -> Bytes {
        self.merge_parts(m, parts, cx.table())
    }

    fn failure_answer(&mut self, _: ClusterId, _: &Failure, _: &RoutingTable) -> Bytes {
        // Every request is merged part by part (fails_whole_request is false).
        Bytes::new()
    }

    fn fails_whole_request(&self, _: &KafkaMerge) -> bool {
        false
    }

    fn replay_refused(&mut self, cluster: ClusterId, _: usize, _: &KafkaAnswer, table: &RoutingTable) -> String {
        format!("cluster {}: refused the session's state", table.cluster_name(cluster))
    }

    fn state_lost(&mut self, _: &KafkaMerge, cluster: ClusterId, table: &RoutingTable) -> String {
        format!("cluster {}: connection reset", table.cluster_name(cluster))
    }
}

impl KafkaProtocol {
    /// The client's answer from the parts' answers (or failures); with no parts, the answer
    /// the proxy gives alone (every partition refused at the split).
    fn merge_parts(&mut self, m: &mut KafkaMerge, parts: &[Part<KafkaAnswer>], table: &RoutingTable) -> Bytes {
        let reply = m.reply;
        match &mut m.merge {
            Merge::ApiVersions => cluster::merge_api_versions(&reply, parts, &mut self.epoch_versions),
            Merge::Metadata { req, unknown_ids } => {
                let learn: Option<&dyn LeaderRegistry> = self.follow_leaders.then_some(self.leaders.as_ref());
                let (bytes, ids) =
                    cluster::merge_metadata(&reply, req, unknown_ids, parts, table, &self.advertised, &self.cluster_id, learn);
                self.learn_topic_ids(ids, req.topics.is_none());
                bytes
            }
            Merge::Produce(s) => produce::merge(&reply, s, parts),
            Merge::InitProducerId => produce::merge_init(&reply, parts, self.producers.as_ref()),
            Merge::Fetch(s) => consume::merge_fetch(&reply, s, parts),
            Merge::ListOffsets(s) => consume::merge_list_offsets(&reply, s, parts),
            Merge::LeaderEpoch(s) => epochs::merge(&reply, s, parts),
            Merge::FindCoordinator { keys } => {
                group::merge_coordinator(&reply, keys, parts, table, &self.advertised, self.leaders.as_ref())
            }
            Merge::Group { group, home } => {
                group::merge_group(&reply, parts, (*home, group), (self.leaders.as_ref(), &self.links))
            }
            Merge::OffsetCommit { split } => {
                group::merge_commit(&reply, split, parts, (self.leaders.as_ref(), &self.links))
            }
            Merge::OffsetFetch { req } => {
                group::merge_offset_fetch(&reply, req, parts, table, (self.leaders.as_ref(), &self.links))
            }
            Merge::Sasl => sasl::merge(&reply, parts),
            Merge::Topics { api, req, routes } => topics::merge(&reply, *api, req, routes, parts),
        }
    }

    /// Where partition `partition` of `topic`, owned by table cluster `owner`, goes: the
    /// endpoint link of its leader as the shard's Metadata named it (bound on first use), or
    /// `owner` itself while no leader is known (leaders.rs).
    pub(crate) fn partition_target(
        &mut self,
        cx: &mut Ctx<'_, Self>,
        cache: &mut LeaderCache,
        owner: ClusterId,
        topic: &[u8],
        partition: i32,
    ) -> ClusterId {
        if !self.follow_leaders || owner.is_endpoint() {
            return owner;
        }
        let s = shard(owner);
        let i = match cache.iter().position(|((cs, t), _)| *cs == s && t == topic) {
            Some(i) => i,
            None => {
                cache.push(((s, Bytes::copy_from_slice(topic)), self.leaders.get(s, topic)));
                cache.len() - 1
            }
        };
        let Some(endpoint) = cache.get(i).and_then(|(_, l)| l.as_ref()).and_then(|l| leader_of(l, partition)) else {
            return owner;
        };
        self.endpoint_link(cx, owner, endpoint)
    }

    /// The endpoint link to `endpoint` of table cluster `owner` (bound on first use), or
    /// `owner` itself when the connection has bound as many links as it may.
    pub(crate) fn endpoint_link(&mut self, cx: &mut Ctx<'_, Self>, owner: ClusterId, endpoint: &str) -> ClusterId {
        match self.links.link(owner, endpoint) {
            Some((link, new)) => {
                if new {
                    cx.bind(link, owner, endpoint);
                }
                link
            }
            None => owner,
        }
    }

    /// The table cluster of a link (its own id for a table cluster).
    pub(crate) fn cluster_of(&self, c: ClusterId) -> ClusterId {
        self.links.cluster_of(c)
    }

    fn learn_topic_ids(&mut self, ids: Vec<KnownTopicId>, all: bool) {
        if all {
            self.topic_ids.clear();
        }
        for k in ids {
            if let Some(old) = self.topic_ids.iter_mut().find(|o| o.topic_id == k.topic_id) {
                *old = k;
            } else if self.topic_ids.len() < MAX_TOPIC_IDS {
                self.topic_ids.push(k);
            }
        }
    }
}

#[cfg(test)]
mod tests;
