//! Packet identifiers remapped between the client and each broker, both ways.
//!
//! A client and a server number their packets independently (2.2.1). Through the proxy:
//!
//! * **Client to brokers** ([`ClientFlows`]): a PUBLISH at QoS 1 or 2, a SUBSCRIBE or an
//!   UNSUBSCRIBE from the client gets, on each broker it goes to, an identifier of that broker
//!   connection's own (the proxy may send packets of its own there too, a re-subscription after
//!   a table change). The broker's PUBACK, PUBREC, PUBCOMP, SUBACK and UNSUBACK come back with
//!   it and are answered to the client under the client's identifier; the client's PUBREL goes
//!   to the broker that owns the flow.
//! * **Brokers to client** ([`ServerFlows`]): PUBLISHes at QoS 1 and 2 from several brokers may
//!   carry the same identifier: each gets a client-side identifier unique on the client
//!   connection. The client's PUBACK, PUBREC and PUBCOMP go to the broker that sent it, under
//!   the broker's identifier; the broker's PUBREL comes back to the client under the client's.
//!
//! Memory: one entry per packet in flight, bounded by the Receive Maxima ([`crate::flow`]).

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use geomesh_core::ClusterId;

use crate::packet::QoS;
use crate::reason::ReasonCode;

/// Hands out identifiers 1..=65535 not in use, round robin.
#[derive(Debug, Clone, Default)]
pub struct IdAllocator {
    last: u16,
    in_use: HashSet<u16>,
}

impl IdAllocator {
    /// An unused identifier, or `None` when all 65535 are in flight.
    pub fn allocate(&mut self) -> Option<u16> {
        if self.in_use.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            self.last = self.last.checked_add(1).unwrap_or(1);
            if self.in_use.insert(self.last) {
                return Some(self.last);
            }
        }
    }

    /// Gives `id` back.
    pub fn release(&mut self, id: u16) {
        self.in_use.remove(&id);
    }

    /// Identifiers in use.
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

/// What a client's packet identifier is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    Publish(QoS),
    Subscribe,
    Unsubscribe,
}

/// The broker's acknowledgement of a client flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerAck {
    PubAck,
    PubRec { reason: ReasonCode },
    PubComp,
    SubAck,
    UnsubAck,
}

/// Why a client's packet cannot start a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowError {
    /// The identifier is in flight for another packet (MQTT 5.0: Packet Identifier in use).
    InUse,
    /// A broker connection has all 65535 identifiers in flight.
    Exhausted,
}

impl FlowError {
    /// The reason code to answer with.
    pub fn reason(self) -> ReasonCode {
        match self {
            FlowError::InUse => ReasonCode::PACKET_IDENTIFIER_IN_USE,
            FlowError::Exhausted => ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
        }
    }
}

#[derive(Debug, Clone)]
struct ClientFlow {
    kind: FlowKind,
    /// (broker, broker-side identifier, answered)
    legs: Vec<(ClusterId, u16, bool)>,
    /// QoS 2: PUBREC received, PUBREL from the client awaited or sent.
    released: bool,
}

/// What an acknowledgement from a broker means for the client's flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAck {
    /// The client's identifier: answer under it.
    pub client_id: u16,
    /// The flow is over on every broker (the identifier is free again).
    pub complete: bool,
}

/// Flows the client started, per broker.
#[derive(Debug, Clone, Default)]
pub struct ClientFlows {
    by_client: HashMap<u16, ClientFlow>,
    by_broker: HashMap<(ClusterId, u16), u16>,
    ids: HashMap<ClusterId, IdAllocator>,
    /// QoS 1/2 PUBLISH flows among `by_client` (against the Receive Maximum the client got).
    publishes: usize,
    /// Identifiers the proxy used for packets of its own (a re-subscription after a table
    /// change): their SUBACK/UNSUBACK end here.
    proxy: HashSet<(ClusterId, u16)>,
}

impl ClientFlows {
    /// Starts the flow of the client's packet `client_id` on `brokers` (one for a PUBLISH,
    /// several for a SUBSCRIBE); returns the identifier to use on each. A PUBLISH resent with
    /// the identifier of a flow still in progress (DUP) gets the same brokers and identifiers.
    pub fn start(&mut self, client_id: u16, kind: FlowKind, brokers: &[ClusterId]) -> Result<Vec<(ClusterId, u16)>, FlowError> {
        if let Some(flow) = self.by_client.get(&client_id) {
            // A retransmission goes where the first copy went, whatever the table says now.
            if flow.kind == kind && matches!(kind, FlowKind::Publish(_)) && !flow.released {
                return Ok(flow.legs.iter().map(|l| (l.0, l.1)).collect());
            }
            return Err(FlowError::InUse);
        }
        let mut legs: Vec<(ClusterId, u16, bool)> = Vec::with_capacity(brokers.len());
        for &b in brokers {
            match self.ids.entry(b).or_default().allocate() {
                Some(id) => legs.push((b, id, false)),
                None => {
                    for (lb, lid, _) in legs {
                        self.release(lb, lid);
                    }
                    return Err(FlowError::Exhausted);
                }
            }
        }
        for &(b, id, _) in &legs {
            self.by_broker.insert((b, id), client_id);
        }
        let out = legs.iter().map(|l| (l.0, l.1)).collect();
        if matches!(kind, FlowKind::Publish(_)) {
            self.publishes += 1;
        }
        self.by_client.insert(client_id, ClientFlow { kind, legs, released: false });
        Ok(out)
    }

    /// An identifier on `broker` for a packet the proxy sends of its own accord (SUBSCRIBE or
    /// UNSUBSCRIBE); `None` when all are in flight.
    pub fn start_proxy(&mut self, broker: ClusterId) -> Option<u16> {
        let id = self.ids.entry(broker).or_default().allocate()?;
        self.proxy.insert((broker, id));
        Some(id)
    }

    /// Whether `broker`'s acknowledgement with `broker_id` answers a packet of the proxy's own
    /// (then the identifier is free again and nothing goes to the client).
    pub fn proxy_ack(&mut self, broker: ClusterId, broker_id: u16) -> bool {
        if !self.proxy.remove(&(broker, broker_id)) {
            return false;
        }
        if let Some(a) = self.ids.get_mut(&broker) {
            a.release(broker_id);
        }
        true
    }

    /// QoS 1 and 2 PUBLISHes of the client in flight (not yet PUBACK'd or PUBCOMP'd).
    pub fn publishes(&self) -> usize {
        self.publishes
    }

    fn release(&mut self, broker: ClusterId, id: u16) {
        if let Some(a) = self.ids.get_mut(&broker) {
            a.release(id);
        }
        self.by_broker.remove(&(broker, id));
    }

    /// A broker acknowledged its identifier `broker_id`. `None`: no such flow (a stray or
    /// duplicate acknowledgement: drop it).
    pub fn broker_ack(&mut self, broker: ClusterId, broker_id: u16, ack: BrokerAck) -> Option<ClientAck> {
        let client_id = *self.by_broker.get(&(broker, broker_id))?;
        let flow = self.by_client.get_mut(&client_id)?;
        let expected = match (flow.kind, ack) {
            (FlowKind::Publish(QoS::AtLeastOnce), BrokerAck::PubAck) => true,
            (FlowKind::Publish(QoS::ExactlyOnce), BrokerAck::PubRec { .. }) => !flow.released,
            (FlowKind::Publish(QoS::ExactlyOnce), BrokerAck::PubComp) => flow.released,
            (FlowKind::Subscribe, BrokerAck::SubAck) | (FlowKind::Unsubscribe, BrokerAck::UnsubAck) => true,
            _ => false,
        };
        if !expected {
            return None;
        }
        let leg = flow.legs.iter_mut().find(|l| l.0 == broker && l.1 == broker_id)?;
        if leg.2 {
            return None;
        }
        if let BrokerAck::PubRec { reason } = ack {
            if !reason.is_error() {
                flow.released = true;
                return Some(ClientAck { client_id, complete: false });
            }
        }
        leg.2 = true;
        let complete = flow.legs.iter().all(|l| l.2);
        if complete {
            self.finish(client_id);
        }
        Some(ClientAck { client_id, complete })
    }

    fn finish(&mut self, client_id: u16) {
        if let Some(flow) = self.by_client.remove(&client_id) {
            if matches!(flow.kind, FlowKind::Publish(_)) {
                self.publishes = self.publishes.saturating_sub(1);
            }
            for (b, id, _) in flow.legs {
                self.release(b, id);
            }
        }
    }

    /// The client's PUBREL for `client_id`: the broker and identifier to send it to. `None`
    /// when no QoS 2 flow awaits one (MQTT 5.0 answers PUBCOMP Packet Identifier not found).
    pub fn client_pubrel(&self, client_id: u16) -> Option<(ClusterId, u16)> {
        let flow = self.by_client.get(&client_id)?;
        if flow.kind != FlowKind::Publish(QoS::ExactlyOnce) || !flow.released {
            return None;
        }
        flow.legs.first().map(|l| (l.0, l.1))
    }

    /// A broker is gone: its legs end. Returns the client identifiers whose flows it ends or
    /// leaves without an answer from that broker (the caller answers or fails them).
    pub fn broker_lost(&mut self, broker: ClusterId) -> Vec<(u16, FlowKind)> {
        let mut affected = Vec::new();
        let mut done = Vec::new();
        for (&cid, flow) in self.by_client.iter_mut() {
            let mut hit = false;
            for leg in flow.legs.iter_mut().filter(|l| l.0 == broker && !l.2) {
                leg.2 = true;
                hit = true;
            }
            if hit {
                affected.push((cid, flow.kind));
                if flow.legs.iter().all(|l| l.2) {
                    done.push(cid);
                }
            }
        }
        for cid in done {
            self.finish(cid);
        }
        self.ids.remove(&broker);
        self.by_broker.retain(|(b, _), _| *b != broker);
        self.proxy.retain(|(b, _)| *b != broker);
        affected.sort_by_key(|a| a.0);
        affected
    }

    /// Flows in progress.
    /// Whether a flow under the client's identifier `client_id` is under way.
    pub fn contains(&self, client_id: u16) -> bool {
        self.by_client.contains_key(&client_id)
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    /// True when no flow is in progress.
    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ServerFlow {
    broker: ClusterId,
    broker_id: u16,
    qos: QoS,
    /// QoS 2: the client sent PUBREC.
    received: bool,
    /// The broker is gone: the client's acknowledgements end here.
    orphan: bool,
}

/// The client's acknowledgement of a PUBLISH a broker sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAckKind {
    PubAck,
    PubRec { reason: ReasonCode },
    PubComp,
}

/// What a client's acknowledgement of a broker's PUBLISH does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerAck {
    /// The broker and its identifier to pass the acknowledgement on to (`None`: the broker
    /// is gone).
    pub forward: Option<(ClusterId, u16)>,
    /// The flow is over (PUBACK, PUBCOMP, refusing PUBREC).
    pub ended: bool,
}

/// Flows brokers started toward the client.
#[derive(Debug, Clone, Default)]
pub struct ServerFlows {
    by_client: HashMap<u16, ServerFlow>,
    by_broker: HashMap<(ClusterId, u16), u16>,
    ids: IdAllocator,
}

impl ServerFlows {
    /// A PUBLISH at QoS 1 or 2 from `broker` with its identifier `broker_id`: the identifier
    /// to send it to the client under (the same again for a broker's retransmission).
    pub fn publish(&mut self, broker: ClusterId, broker_id: u16, qos: QoS) -> Option<u16> {
        if let Some(&cid) = self.by_broker.get(&(broker, broker_id)) {
            return Some(cid);
        }
        let cid = self.ids.allocate()?;
        self.by_broker.insert((broker, broker_id), cid);
        self.by_client.insert(cid, ServerFlow { broker, broker_id, qos, received: false, orphan: false });
        Some(cid)
    }

    /// Whether `broker`'s identifier `broker_id` is in flight to the client already (a
    /// retransmission).
    pub fn knows(&self, broker: ClusterId, broker_id: u16) -> bool {
        self.by_broker.contains_key(&(broker, broker_id))
    }

    /// The client acknowledged `client_id`: the broker and identifier to pass it on to, or
    /// `None` (unknown identifier, or the broker is gone: drop it). A PUBACK, a PUBCOMP or a
    /// refusing PUBREC frees the identifier.
    pub fn client_ack(&mut self, client_id: u16, ack: ClientAckKind) -> Option<(ClusterId, u16)> {
        self.acknowledge(client_id, ack).and_then(|a| a.forward)
    }

    /// As [`ServerFlows::client_ack`], also saying whether the flow ended (a slot of the
    /// client's Receive Maximum is free again). `None`: no such flow in that state.
    pub fn acknowledge(&mut self, client_id: u16, ack: ClientAckKind) -> Option<ServerAck> {
        let flow = *self.by_client.get(&client_id)?;
        let ends = match (flow.qos, ack) {
            (QoS::AtLeastOnce, ClientAckKind::PubAck) => true,
            (QoS::ExactlyOnce, ClientAckKind::PubRec { reason }) if !flow.received => {
                if !reason.is_error() {
                    if let Some(f) = self.by_client.get_mut(&client_id) {
                        f.received = true;
                    }
                }
                reason.is_error()
            }
            (QoS::ExactlyOnce, ClientAckKind::PubComp) if flow.received => true,
            _ => return None,
        };
        if ends {
            self.by_client.remove(&client_id);
            self.by_broker.remove(&(flow.broker, flow.broker_id));
            self.ids.release(client_id);
        }
        Some(ServerAck {
            forward: (!flow.orphan).then_some((flow.broker, flow.broker_id)),
            ended: ends,
        })
    }

    /// A broker's PUBREL for its `broker_id`: the client identifier to send it under.
    pub fn broker_pubrel(&self, broker: ClusterId, broker_id: u16) -> Option<u16> {
        let cid = *self.by_broker.get(&(broker, broker_id))?;
        let flow = self.by_client.get(&cid)?;
        (flow.qos == QoS::ExactlyOnce && flow.received).then_some(cid)
    }

    /// A broker is gone: its messages in flight to the client stay numbered until the client
    /// acknowledges them (their identifiers are still in use on the client connection), and
    /// those acknowledgements are dropped.
    pub fn broker_lost(&mut self, broker: ClusterId) {
        for f in self.by_client.values_mut().filter(|f| f.broker == broker) {
            f.orphan = true;
        }
        self.by_broker.retain(|(b, _), _| *b != broker);
    }

    /// PUBLISHes in flight to the client.
    pub fn in_flight(&self) -> usize {
        self.by_client.len()
    }
}

#[cfg(test)]
mod tests;
