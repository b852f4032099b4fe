//! The MQTT session: one client connection made to look like one MQTT broker in front of the
//! brokers of a routing table, on the shared pipeline (`geomesh_kit`).
//!
//! The pipeline keeps answers in the client's order, per-broker answer slots (found by packet
//! identifier: [`geomesh_kit::Disposition::Keyed`]), deadlines and closing; this module is what
//! MQTT adds, by concern:
//!
//! * `connect.rs`: the CONNECT checked, sent to every broker of the table (one client
//!   identifier everywhere, the will on the broker owning its topic, a share of the Receive
//!   Maximum each), the CONNACKs merged; a broker reached later (a new routing table) gets the
//!   CONNECT first;
//! * `publish.rs`: client PUBLISHes routed by topic and payload (aliases resolved), QoS 1 and 2
//!   identifiers remapped per broker, PUBREL to the broker owning the flow, retained messages
//!   kept on the owning broker only;
//! * `subscribe.rs`: SUBSCRIBE and UNSUBSCRIBE fanned out to exactly the brokers that can carry
//!   a matching topic, SUBACK/UNSUBACK merged per filter;
//! * `inbound.rs`: the brokers' PUBLISHes and PUBRELs fanned in with identifiers numbered on
//!   the client connection, the client's acknowledgements carried back to their broker;
//! * `subscriptions.rs`: the client's subscriptions and their brokers, moved where a new
//!   routing table says at the client's next packet;
//! * `keepalive.rs`: PINGREQ answered by the proxy, every broker connection kept alive;
//! * `replies.rs`: the packets and texts the proxy itself writes.
//!
//! **A lost broker** (closed, broken, silent past `upstream_timeout_ms`, or a DISCONNECT from
//! it) closes the client: MQTT 5.0 clients get a DISCONNECT naming the broker (the broker's own
//! reason code when it sent one), MQTT 3.1.1 clients a closed connection. Nothing is
//! acknowledged to the client that its broker did not acknowledge: a QoS 1/2 PUBLISH without
//! its PUBACK/PUBREC is resent by the client on its next connection.

mod connect;
mod inbound;
mod keepalive;
mod publish;
mod replies;
mod settings;
mod subscribe;
mod subscriptions;
#[cfg(test)]
mod tests;

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use geomesh_core::{ClusterId, Millis, RoutingTable};
use geomesh_kit::{Ctx, Disposition, Failure, MergeCx, Part, Pipeline, Plan, SlotView};

use crate::merge::AckMerge;
use crate::packet::{Connect, Packet, PacketType, Version};
use crate::flow::SendWindow;
use crate::packet_ids::{ClientFlows, ServerFlows};
use subscriptions::Subscriptions;
use crate::replay::ReplayPlan;
use crate::{alias::InboundAliases, Decoded, Decoder, Limits};

pub use settings::{Settings, SCHEMA, SECTION};

/// The session the filter runs for each client connection.
pub type MqttSession = Pipeline<Mqtt>;

/// A session for one client connection.
pub fn session(
    table: Rc<RoutingTable>,
    upstream_timeout_ms: u32,
    settings: &Settings,
) -> MqttSession {
    session_with_seed(table, upstream_timeout_ms, settings, 0)
}

/// As [`session`], with a seed for assigned client identifiers ([`Mqtt::with_seed`]).
pub fn session_with_seed(
    table: Rc<RoutingTable>,
    upstream_timeout_ms: u32,
    settings: &Settings,
    seed: u64,
) -> MqttSession {
    let timeout_ms = u64::from(upstream_timeout_ms);
    let limits = geomesh_kit::Limits {
        timeout_ms,
        granularity_ms: (timeout_ms / 20).clamp(1, 100),
        store_keys: 0,
    };
    Pipeline::new(Mqtt::with_seed(table.clone(), settings, seed), table, limits)
}

impl geomesh_kit::Answer for Decoded {
    fn raw(&self) -> &Bytes {
        Decoded::raw(self)
    }
    fn is_error(&self) -> bool {
        match &self.packet {
            Packet::ConnAck(c) => c.code != 0,
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubComp(a) => a.reason.is_error(),
            _ => false,
        }
    }
}

/// What the session keeps per broker connection.
#[derive(Debug, Default)]
pub struct BrokerLink {
    /// The broker's packets (created at the first bytes, in the client's protocol version).
    decoder: Option<Decoder>,
    /// When the proxy last wrote to this broker (for its keepalive).
    last_sent: Millis,
}

/// How the brokers' answers of one client packet become the client's answer.
#[derive(Debug)]
pub enum MqttMerge {
    /// The CONNACKs of every broker.
    Connack,
    /// One broker's PUBACK, PUBREC or PUBCOMP, back under the client's packet identifier.
    Ack { client_id: u16 },
    /// SUBACKs or UNSUBACKs: part `i` answers the client's filters `indices[i]`.
    Subscribe {
        acks: AckMerge,
        indices: Vec<Vec<usize>>,
        client_id: u16,
        unsubscribe: bool,
    },
}

/// MQTT on the pipeline (see the module documentation).
pub struct Mqtt {
    table: Rc<RoutingTable>,
    limits: Limits,
    topic_alias_maximum: u16,
    max_held: (usize, usize),
    decoder: Decoder,
    /// The client's CONNECT, once read, and how it is replayed per broker.
    connect: Option<(Box<Connect>, ReplayPlan)>,
    /// The merged CONNACK was written (errors are DISCONNECTs from then on).
    connected: bool,
    /// The brokers refused the CONNECT: the connection ends without further words.
    refused: bool,
    /// The client sent DISCONNECT: brokers closing is the end of the session, not a failure.
    disconnecting: bool,
    aliases: InboundAliases,
    /// Client-to-broker flows (client PUBLISH QoS 1/2, SUBSCRIBE, UNSUBSCRIBE).
    flows: ClientFlows,
    /// Broker-to-client flows (broker PUBLISH QoS 1/2).
    server_flows: ServerFlows,
    /// A broker that sent a DISCONNECT: its reason, for the client's.
    broker_disconnect: Option<(ClusterId, Packet)>,
    /// The brokers' QoS 1/2 PUBLISHes toward the client within its Receive Maximum
    /// (`crate::flow`): sent, or held until the client acknowledges one.
    window: SendWindow<Bytes>,
    /// The Receive Maximum the client was given (the brokers' minimum): more QoS 1/2
    /// PUBLISHes in flight from it is a protocol error (0x93).
    client_receive_max: u16,
    /// Subscriptions the client holds, where they are placed (`subscriptions.rs`).
    subs: Subscriptions,
    /// Seeds an assigned client identifier (unique per connection across VMs and hosts:
    /// [`Mqtt::with_seed`]).
    seed: u64,
}

impl Mqtt {
    /// The protocol state of one client connection.
    pub fn new(table: Rc<RoutingTable>, settings: &Settings) -> Self {
        Mqtt {
            table,
            limits: settings.limits,
            topic_alias_maximum: settings.topic_alias_maximum,
            max_held: (
                usize::from(settings.max_held_publishes),
                settings.max_held_bytes as usize,
            ),
            decoder: Decoder::from_client(settings.limits),
            connect: None,
            connected: false,
            refused: false,
            disconnecting: false,
            aliases: InboundAliases::new(0),
            flows: ClientFlows::default(),
            server_flows: ServerFlows::default(),
            broker_disconnect: None,
            window: SendWindow::new(
                u16::MAX,
                usize::from(settings.max_held_publishes),
                settings.max_held_bytes as usize,
            ),
            client_receive_max: u16::MAX,
            subs: Subscriptions::default(),
            seed: 0,
        }
    }

    /// As [`Mqtt::new`], with a seed for the client identifier the proxy assigns to a client
    /// that sent none. The filter makes it from what is unique to the connection and the VM
    /// (Envoy's connection id, the client's address and port, the VM's start time in
    /// nanoseconds), so that identifiers differ across worker threads, filter instances and
    /// Envoys sharing brokers.
    pub fn with_seed(table: Rc<RoutingTable>, settings: &Settings, seed: u64) -> Self {
        Mqtt {
            seed,
            ..Mqtt::new(table, settings)
        }
    }

    /// The client's protocol version (3.1.1 until its CONNECT says otherwise).
    pub fn version(&self) -> Version {
        self.connect
            .as_ref()
            .map(|(c, _)| c.version)
            .unwrap_or(Version::V311)
    }

    /// QoS 1/2 flows the client started that wait for a broker.
    pub fn client_flows(&self) -> usize {
        self.flows.len()
    }

    /// QoS 1/2 messages of the brokers the client has not acknowledged yet (sent or held).
    pub fn server_flows(&self) -> usize {
        self.server_flows.in_flight()
    }

    /// Subscriptions the client holds through the proxy.
    pub fn subscriptions(&self) -> usize {
        self.subs.len()
    }

    /// The brokers holding the client's subscription to `filter`.
    pub fn subscription_brokers(&self, filter: &[u8]) -> Option<&[ClusterId]> {
        self.subs.clusters(filter)
    }

    /// The brokers' QoS 1/2 PUBLISHes sent to the client and not acknowledged, and those
    /// the proxy holds back (the client's Receive Maximum is full).
    pub fn window(&self) -> (u16, usize) {
        (self.window.in_flight(), self.window.queued())
    }

    /// Queues `bytes` for `cluster` with no answer owed (a broker reached for the first time
    /// gets the CONNECT first), and notes the time for its keepalive.
    fn send_only(&mut self, cx: &mut Ctx<'_, Self>, cluster: ClusterId, bytes: &[u8]) {
        self.reach(cx, cluster);
        cx.send_only(cluster, bytes);
    }

    /// Before anything goes to `cluster`: a broker connection opened now (not at CONNECT:
    /// a routing table changed since) gets the CONNECT, its CONNACK read and dropped.
    fn reach(&mut self, cx: &mut Ctx<'_, Self>, cluster: ClusterId) {
        let now = cx.now();
        if !cx.is_open(cluster) {
            if let Some((_, plan)) = self.connect.as_mut() {
                plan.add_broker(cluster);
            }
            if let Some(bytes) = self.connect_bytes(cluster) {
                cx.send_discard(cluster, &bytes, 1, ());
            }
        }
        if let Some(l) = cx.open_link(cluster) {
            l.last_sent = now;
        }
    }
}

/// Correlation keys of the brokers' acknowledgements: the broker's packet identifier and what
/// answers it (identifiers are unique per broker connection across packet types).
fn ack_key(kind: PacketType, broker_id: u16) -> u64 {
    ((kind as u64) << 16) | u64::from(broker_id)
}

impl geomesh_kit::Protocol for Mqtt {
    type Request = Decoded;
    type Answer = Decoded;
    type Merge = MqttMerge;
    type Link = BrokerLink;
    type Expect = ();

    fn decode_request(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, Bytes> {
        self.decoder
            .decode(buf)
            .map_err(|e| replies::error_reply(&e, self.decoder.version(), self.connect.is_some()))
    }

    fn decode_answer(
        &mut self,
        link: &mut BrokerLink,
        buf: &mut BytesMut,
        _: Option<&()>,
    ) -> Result<Option<Decoded>, String> {
        let (version, limits) = (self.version(), self.limits);
        let decoder = link
            .decoder
            .get_or_insert_with(|| Decoder::from_server(version, limits));
        decoder.decode(buf).map_err(|e| e.to_string())
    }

    fn family(&mut self, request: &Decoded) -> &'static str {
        replies::family(request.packet.packet_type())
    }

    fn plan(&mut self, request: Decoded, cx: &mut Ctx<'_, Self>) -> Plan<Self> {
        if !matches!(request.packet, Packet::Disconnect(_)) {
            self.resubscribe(cx);
        }
        let ping = !matches!(
            request.packet,
            Packet::Connect(_) | Packet::Disconnect(_) | Packet::PingReq
        );
        let plan = match request.packet {
            Packet::Connect(_) => self.plan_connect(request, cx),
            Packet::Publish(_) => self.plan_publish(request, cx),
            Packet::PubRel(_) => self.plan_pubrel(request, cx),
            Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => {
                self.plan_client_ack(request, cx)
            }
            Packet::Subscribe(_) | Packet::Unsubscribe(_) => self.plan_subscribe(request, cx),
            Packet::PingReq => self.plan_pingreq(cx),
            Packet::Disconnect(_) => self.plan_disconnect(request, cx),
            Packet::Auth(_) => Plan::Close(replies::disconnect(
                self.version(),
                crate::ReasonCode::PROTOCOL_ERROR,
                replies::AUTH_REFUSED,
            )),
            // The decoder refuses every packet a client may not send.
            _ => Plan::Close(replies::disconnect(
                self.version(),
                crate::ReasonCode::PROTOCOL_ERROR,
                replies::UNEXPECTED_PACKET,
            )),
        };
        if ping {
            self.keepalive(cx);
        }
        plan
    }

    fn classify(
        &mut self,
        cluster: ClusterId,
        _: &mut BrokerLink,
        answer: &Decoded,
        _: Option<SlotView<'_, ()>>,
    ) -> Disposition {
        inbound::classify(self, cluster, answer)
    }

    fn merge(
        &mut self,
        merge: &mut MqttMerge,
        parts: &[Part<Decoded>],
        _: &mut MergeCx<'_>,
    ) -> Bytes {
        match merge {
            MqttMerge::Connack => self.merge_connack(parts),
            MqttMerge::Ack { client_id } => publish::merge_ack(*client_id, parts),
            MqttMerge::Subscribe {
                acks,
                indices,
                client_id,
                unsubscribe,
            } => subscribe::merge(
                self.version(),
                acks,
                indices,
                *client_id,
                *unsubscribe,
                parts,
            ),
        }
    }

    fn failure_answer(
        &mut self,
        cluster: ClusterId,
        failure: &Failure,
        table: &RoutingTable,
    ) -> Bytes {
        replies::broker_lost(self, cluster, failure, table)
    }

    fn closes_on_failure(&self, _: &Failure) -> bool {
        true
    }

    fn link_lost(&mut self, cluster: ClusterId, _: BrokerLink) -> bool {
        // Its subscriptions and flows are gone, which no MQTT packet can tell a client:
        // the client reconnects and subscribes again.
        self.flows.broker_lost(cluster);
        self.server_flows.broker_lost(cluster);
        true
    }

    fn replay_refused(
        &mut self,
        cluster: ClusterId,
        _: usize,
        _: &Decoded,
        table: &RoutingTable,
    ) -> String {
        format!("{}{}", replies::BROKER_REFUSED, table.cluster_name(cluster))
    }

    fn state_lost(&mut self, _: &MqttMerge, cluster: ClusterId, table: &RoutingTable) -> String {
        format!("{}{}", replies::BROKER_REFUSED, table.cluster_name(cluster))
    }

    fn is_error_answer(bytes: &[u8]) -> bool {
        replies::is_error_packet(bytes)
    }

    fn on_new_table(&mut self, table: &Rc<RoutingTable>) {
        self.table = table.clone();
        self.subs.table_changed();
    }
}
