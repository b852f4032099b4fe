//! The packets and texts the proxy itself writes to a client.

use bytes::Bytes;
use geomesh_core::{ClusterId, RoutingTable};
use geomesh_kit::Failure;

use super::Mqtt;
use crate::packet::{ConnAck, Disconnect, Packet, PacketType, Version};
use crate::properties::Properties;
use crate::reason::{v311, ReasonCode};
use crate::Error;

/// Reason String of a client AUTH (enhanced authentication is refused at CONNECT).
pub const AUTH_REFUSED: &str = "geomesh: AUTH is not carried over several brokers";
/// Reason String of a packet the session has no plan for.
pub const UNEXPECTED_PACKET: &str = "geomesh: unexpected packet";
/// A broker answered the CONNECT with something else than a CONNACK.
pub const BROKER_NOT_CONNACK: &str = "geomesh: a broker did not answer the CONNECT";
/// The CONNECT could not be written for a broker.
pub const CONNECT_TOO_LARGE: &str = "geomesh: the CONNECT cannot be replayed";
/// Prefix of the Reason String when a broker connection goes away (the cluster name follows).
pub const BROKER_LOST: &str = "geomesh: broker connection lost: ";
/// Prefix when a broker did not answer in time.
pub const BROKER_SILENT: &str = "geomesh: broker did not answer in time: ";
/// Prefix when a broker closed the session with a DISCONNECT.
pub const BROKER_DISCONNECTED: &str = "geomesh: broker disconnected: ";
/// Prefix when a broker refused what the session sent it.
pub const BROKER_REFUSED: &str = "geomesh: broker refused the session: ";
/// A PUBLISH with a packet identifier still in use for another flow.
pub const ID_IN_USE: &str = "geomesh: packet identifier in use";
/// A 5.0 client with more QoS 1/2 PUBLISHes in flight than the CONNACK's Receive Maximum.
pub const CLIENT_OVER_RECEIVE_MAXIMUM: &str =
    "geomesh: more QoS 1 and 2 PUBLISHes in flight than the Receive Maximum";
/// More flows than identifiers.
pub const TOO_MANY_FLOWS: &str = "geomesh: too many QoS 1/2 flows in flight";

/// The packet types as metric names.
pub fn family(kind: PacketType) -> &'static str {
    match kind {
        PacketType::Connect => "connect",
        PacketType::ConnAck => "connack",
        PacketType::Publish => "publish",
        PacketType::PubAck => "puback",
        PacketType::PubRec => "pubrec",
        PacketType::PubRel => "pubrel",
        PacketType::PubComp => "pubcomp",
        PacketType::Subscribe => "subscribe",
        PacketType::SubAck => "suback",
        PacketType::Unsubscribe => "unsubscribe",
        PacketType::UnsubAck => "unsuback",
        PacketType::PingReq => "pingreq",
        PacketType::PingResp => "pingresp",
        PacketType::Disconnect => "disconnect",
        PacketType::Auth => "auth",
    }
}

fn reason_string(text: &str) -> Properties {
    Properties {
        reason_string: Some(Bytes::copy_from_slice(text.as_bytes())),
        ..Properties::default()
    }
}

/// A 5.0 DISCONNECT with `reason` and `text`; 3.1.1: nothing (the connection closes).
pub fn disconnect(version: Version, reason: ReasonCode, text: &str) -> Bytes {
    if version == Version::V311 {
        return Bytes::new();
    }
    let d = Disconnect {
        reason,
        properties: Box::new(reason_string(text)),
    };
    Packet::Disconnect(d)
        .to_bytes(Version::V5)
        .unwrap_or_default()
}

/// A CONNACK refusing the connection (3.1.1: the nearest return code).
pub fn connack_refusal(version: Version, reason: ReasonCode, text: &str) -> Bytes {
    let (code, properties) = match version {
        Version::V5 => (reason.0, reason_string(text)),
        Version::V311 => (
            match reason {
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => v311::IDENTIFIER_REJECTED,
                ReasonCode::BAD_USER_NAME_OR_PASSWORD => v311::BAD_USER_NAME_OR_PASSWORD,
                ReasonCode::NOT_AUTHORIZED | ReasonCode::BAD_AUTHENTICATION_METHOD => {
                    v311::NOT_AUTHORIZED
                }
                _ => v311::SERVER_UNAVAILABLE,
            },
            Properties::default(),
        ),
    };
    let c = ConnAck {
        session_present: false,
        code,
        properties: Box::new(properties),
    };
    Packet::ConnAck(c).to_bytes(version).unwrap_or_default()
}

/// What a client gets for bytes that cannot be read (then the connection closes).
pub fn error_reply(e: &Error, version: Option<Version>, connected: bool) -> Bytes {
    e.reply(version, connected)
        .and_then(|p| p.to_bytes(version.unwrap_or(Version::V311)).ok())
        .unwrap_or_default()
}

/// The last words to a client whose broker `cluster` went away or did not answer.
pub fn broker_lost(
    m: &mut Mqtt,
    cluster: ClusterId,
    failure: &Failure,
    table: &RoutingTable,
) -> Bytes {
    let version = m.version();
    if m.refused || m.disconnecting {
        return Bytes::new();
    }
    let name = table.cluster_name(cluster);
    let (reason, text) = match (failure, m.broker_disconnect.take()) {
        (_, Some((c, Packet::Disconnect(d)))) if c == cluster => {
            (d.reason, format!("{BROKER_DISCONNECTED}{name}"))
        }
        (Failure::Timeout { .. }, _) => (ReasonCode::SERVER_BUSY, format!("{BROKER_SILENT}{name}")),
        (Failure::Reset(m), _) => (
            ReasonCode::UNSPECIFIED_ERROR,
            format!("{BROKER_REFUSED}{name}: {m}"),
        ),
        (Failure::Closed { message, .. }, _) | (Failure::Broken(message), _) => (
            ReasonCode::UNSPECIFIED_ERROR,
            format!("{BROKER_LOST}{name}: {message}"),
        ),
    };
    if m.connected {
        disconnect(version, reason, &text)
    } else {
        m.refused = true;
        connack_refusal(version, ReasonCode::SERVER_UNAVAILABLE, &text)
    }
}

/// Whether bytes the proxy hands a client report an error (for the error counters).
pub fn is_error_packet(bytes: &[u8]) -> bool {
    match bytes.first().map(|b| b >> 4) {
        Some(2) => bytes.get(3).is_some_and(|c| *c != 0),
        Some(14) => true,
        _ => false,
    }
}
