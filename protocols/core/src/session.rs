//! The sans-IO contract between a protocol and the host shell.
//!
//! A protocol crate implements [`Session`] for one client connection: bytes and events go in,
//! [`Action`]s come out, the current time is passed in. No IO, no clock, no threads: the same
//! code runs natively under test and inside a Proxy-Wasm VM, where the shell (`filters/shell`)
//! turns actions into bridge frames (docs/bridge-protocol.md) and bridge frames into calls.
//!
//! Two rules of the host the protocol must know:
//! * replies reach the client in the order the session emits [`Action::Reply`];
//! * [`Action::Send`] emitted from [`Session::on_upstream`], [`Session::on_upstream_closed`] or
//!   [`Session::on_timeout`] leaves with the next client bytes, not at once (Proxy-Wasm cannot
//!   write towards a server while it handles bytes from one). Sessions should therefore decide
//!   everything they send while handling client bytes.

use std::rc::Rc;

use crate::metrics::Meter;
use crate::route::{ClusterId, RoutingTable};

/// Milliseconds from an arbitrary origin, non-decreasing (the host's clock, passed in).
pub type Millis = u64;

/// What a session asks the host to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write bytes to the (lazily opened) connection to `cluster`.
    Send { cluster: ClusterId, bytes: Vec<u8> },
    /// Write bytes to the client.
    Reply(Vec<u8>),
    /// Close the connection to `cluster` (the next `Send` to it opens a new one).
    CloseUpstream(ClusterId),
    /// Close the client connection after the replies already emitted.
    CloseDownstream,
    /// Call [`Session::on_timeout`] at (or soon after) this time. The host cannot wake a
    /// session by itself (see [`DeadlineCover`] for how to ask rarely).
    WakeAt(Millis),
    /// Defines the endpoint link `link` ([`ClusterId::endpoint`]): one endpoint (`host:port`)
    /// of the table cluster `cluster`, learned at run time (a Kafka broker from Metadata).
    /// `Send`s to `link` then open a connection to that endpoint; the bridge accepts it only
    /// if the endpoint belongs to what the cluster's configuration allows (never an open
    /// relay), and answers `CLOSED(UNKNOWN_TARGET)` otherwise. A `Bind` of a link that is
    /// open changes where the next connection goes, not the open one.
    Bind {
        link: ClusterId,
        cluster: ClusterId,
        endpoint: String,
    },
}

/// Why an upstream connection went away (the bridge's `CLOSED` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamFailureKind {
    /// We asked for it.
    Local,
    /// The server closed the connection.
    Eof,
    /// Connection refused or unreachable.
    Refused,
    /// No connection within the connect timeout.
    ConnectTimeout,
    /// Bytes were written and nothing came back in time.
    Stalled,
    /// No such cluster at the bridge.
    UnknownTarget,
    /// The site hosting the cluster cannot be reached.
    SiteUnreachable,
    /// Read/write error.
    Io,
    /// The bridge's buffer for the connection overflowed.
    Overflow,
    /// The bridge itself went away.
    BridgeLost,
}

impl UpstreamFailureKind {
    /// A short phrase for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Local => "closed",
            Self::Eof => "connection closed by server",
            Self::Refused => "connection refused",
            Self::ConnectTimeout => "connect timeout",
            Self::Stalled => "no reply in time",
            Self::UnknownTarget => "unknown cluster",
            Self::SiteUnreachable => "site unreachable",
            Self::Io => "i/o error",
            Self::Overflow => "buffer overflow",
            Self::BridgeLost => "bridge lost",
        }
    }
}

/// An upstream connection failure as the session sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFailure {
    pub kind: UpstreamFailureKind,
    /// Detail from the bridge, may be empty.
    pub message: String,
}

/// One client connection's protocol state machine.
pub trait Session {
    /// Bytes the client sent.
    fn on_downstream(&mut self, data: &[u8], now: Millis, out: &mut Vec<Action>);

    /// Bytes the connection to `cluster` delivered (replies, or pushes nobody asked for).
    fn on_upstream(&mut self, cluster: ClusterId, data: &[u8], now: Millis, out: &mut Vec<Action>);

    /// The connection to `cluster` is gone; requests still waiting on it must be answered.
    fn on_upstream_closed(
        &mut self,
        cluster: ClusterId,
        failure: &UpstreamFailure,
        now: Millis,
        out: &mut Vec<Action>,
    );

    /// Time passed; fail what has expired. Called at (or after) a time asked for with
    /// [`Action::WakeAt`], possibly also at other times.
    fn on_timeout(&mut self, now: Millis, out: &mut Vec<Action>);

    /// The client closed its side; the default does nothing.
    fn on_downstream_closed(&mut self, _now: Millis, _out: &mut Vec<Action>) {}

    /// A new routing table was configured. Requests already dispatched keep their cluster;
    /// requests after this call use the new table. Cluster ids are per table: the session must
    /// map the connections it holds by name (see [`RoutingTable::cluster_id`]).
    fn on_new_table(&mut self, table: Rc<RoutingTable>);

    /// What the session counted since the host last asked (the host drains it after each
    /// callback into Envoy's stats); `None` = the session counts nothing.
    fn meter(&mut self) -> Option<&mut Meter> {
        None
    }

    /// Whether the connection to `cluster` may be a shared one now, and how the bridge cuts its
    /// byte streams into requests and answers: `Some` while the session holds no state of its
    /// own on that connection (the bridge may then carry its requests on a pipelined backend
    /// connection shared with other clients, docs/bridge-protocol.md "Shared channels").
    /// Asked when a connection opens and after each callback; once it answers `None` for a
    /// connection it must never answer `Some` for it again (its state lives there now). The
    /// default: never shared.
    fn share(&self, _cluster: ClusterId) -> Option<Framing> {
        None
    }
}

/// How the bridge cuts a shared channel's byte streams into requests and answers (the framer
/// of the protocol crate, compiled into the bridge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Framing {
    /// RESP (Redis): one request, one answer, in order.
    Resp = 1,
}

impl Framing {
    /// Decodes the byte of an `OPEN_SHARED` frame.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Resp),
            _ => None,
        }
    }
}

/// Decides when a session must ask for a wake-up so that every deadline it holds is noticed at
/// most `granularity` late, while asking at most once per `granularity` however many requests
/// are in flight.
///
/// Deadlines are only created while client bytes are handled, which is also the only time a
/// filter can reach its bridge; so a session calls [`DeadlineCover::cover`] for each new
/// deadline and emits the [`Action::WakeAt`] it returns.
#[derive(Debug, Clone)]
pub struct DeadlineCover {
    granularity: Millis,
    /// Wake-ups asked for and not yet past, ascending.
    armed: Vec<Millis>,
}

impl DeadlineCover {
    /// `granularity` > 0: how late an expiry may be noticed.
    pub fn new(granularity: Millis) -> Self {
        Self {
            granularity: granularity.max(1),
            armed: Vec::new(),
        }
    }

    /// A deadline was created at `now`: returns the wake-up to ask for, if the ones already
    /// asked for do not notice it in time.
    pub fn cover(&mut self, deadline: Millis, now: Millis) -> Option<Millis> {
        self.armed.retain(|&t| t > now);
        if self
            .armed
            .iter()
            .any(|&t| t >= deadline && t <= deadline.saturating_add(self.granularity))
        {
            return None;
        }
        // Round up so that the requests of the next `granularity` ms share this wake-up.
        let at = deadline.div_ceil(self.granularity).saturating_mul(self.granularity);
        let at = if at < deadline { deadline } else { at };
        let pos = self.armed.partition_point(|&t| t < at);
        self.armed.insert(pos, at);
        if self.armed.len() > 64 {
            self.armed.remove(0);
        }
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn one_wake_per_granule() {
        let mut c = DeadlineCover::new(100);
        assert_eq!(c.cover(5_010, 10), Some(5_100));
        for now in 11..90 {
            assert_eq!(c.cover(now + 5_000, now), None, "covered by 5100");
        }
        assert_eq!(c.cover(5_101, 101), Some(5_200));
        // A shorter deadline (a blocking command with its own timeout) gets its own wake-up.
        assert_eq!(c.cover(1_150, 150), Some(1_200));
        // Expired wake-ups are forgotten.
        assert_eq!(c.cover(9_000, 6_000), Some(9_000));
    }
}
