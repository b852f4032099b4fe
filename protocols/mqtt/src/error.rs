//! The codec's errors: each names the MQTT 5.0 reason code a server answers it with, and a
//! message (a named constant, sent as the Reason String).

use core::fmt;

use crate::packet::{ConnAck, Disconnect, Packet, Version};
use crate::properties::Properties;
use crate::reason::{v311, ReasonCode};

/// Why bytes could not be decoded (or a packet not encoded). After a decode error the stream is
/// out of sync: answer with [`Error::reply`] and close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    reason: ReasonCode,
    message: &'static str,
}

impl Error {
    pub(crate) const fn new(reason: ReasonCode, message: &'static str) -> Self {
        Self { reason, message }
    }

    pub(crate) const fn malformed(message: &'static str) -> Self {
        Self::new(ReasonCode::MALFORMED_PACKET, message)
    }

    pub(crate) const fn protocol(message: &'static str) -> Self {
        Self::new(ReasonCode::PROTOCOL_ERROR, message)
    }

    pub(crate) const fn too_large(message: &'static str) -> Self {
        Self::new(ReasonCode::PACKET_TOO_LARGE, message)
    }

    /// The MQTT 5.0 reason code: Malformed Packet (0x81), Protocol Error (0x82), Packet too
    /// large (0x95), Topic Name invalid (0x90), Topic Alias invalid (0x94), Unsupported
    /// Protocol Version (0x84), Receive Maximum exceeded (0x93), Packet Identifier in use
    /// (0x91)...
    pub fn reason(&self) -> ReasonCode {
        self.reason
    }

    /// What was wrong, one of the constants of [`msg`].
    pub fn message(&self) -> &'static str {
        self.message
    }

    /// What a server sends before closing: MQTT 5.0 after CONNACK, a DISCONNECT with the
    /// reason code and the message as Reason String; MQTT 5.0 before CONNACK, a CONNACK
    /// refusal; MQTT 3.1.1, nothing (close), except a CONNACK 0x01 for an unsupported protocol
    /// level (also when the level is unknown, as Mosquitto does).
    pub fn reply(&self, version: Option<Version>, connected: bool) -> Option<Packet> {
        let properties = Properties {
            reason_string: Some(bytes::Bytes::from_static(self.message.as_bytes())),
            ..Properties::default()
        };
        match (version, connected) {
            (Some(Version::V5), true) => Some(Packet::Disconnect(Disconnect {
                reason: self.reason,
                properties: Box::new(properties),
            })),
            (Some(Version::V5), false) => Some(Packet::ConnAck(ConnAck {
                session_present: false,
                code: self.reason.0,
                properties: Box::new(properties),
            })),
            (_, false) if self.reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => {
                Some(Packet::ConnAck(ConnAck {
                    session_present: false,
                    code: v311::UNACCEPTABLE_PROTOCOL_VERSION,
                    properties: Box::new(Properties::default()),
                }))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for Error {}

/// The messages of [`Error`], sent to clients as MQTT 5.0 Reason Strings.
pub mod msg {
    pub const RESERVED_PACKET_TYPE: &str = "reserved packet type";
    pub const BAD_FIXED_HEADER_FLAGS: &str = "invalid fixed header flags";
    pub const REMAINING_LENGTH_TOO_LONG: &str = "remaining length over 4 bytes";
    pub const PACKET_TOO_LARGE: &str = "packet larger than the maximum packet size";
    pub const TRUNCATED: &str = "packet ends inside a field";
    pub const TRAILING_BYTES: &str = "bytes after the end of the packet";
    pub const VARINT_TOO_LONG: &str = "variable byte integer over 4 bytes";
    pub const INVALID_UTF8: &str = "string is not valid UTF-8 or holds U+0000";
    pub const FIRST_PACKET_NOT_CONNECT: &str = "first packet is not CONNECT";
    pub const SECOND_CONNECT: &str = "second CONNECT on one connection";
    pub const WRONG_DIRECTION: &str = "packet type not sent in this direction";
    pub const BAD_PROTOCOL_NAME: &str = "protocol name is not MQTT";
    pub const UNSUPPORTED_VERSION: &str = "protocol level not supported (3.1.1 and 5.0 are)";
    pub const CONNECT_RESERVED_FLAG: &str = "CONNECT reserved flag set";
    pub const BAD_WILL_FLAGS: &str = "will QoS or retain set without a will";
    pub const INVALID_QOS: &str = "QoS 3";
    pub const PASSWORD_WITHOUT_USERNAME: &str = "password flag without user name flag (3.1.1)";
    pub const CONNACK_RESERVED_FLAGS: &str = "CONNACK reserved flags set";
    pub const BAD_CONNACK_CODE: &str = "unknown CONNACK return or reason code";
    pub const BAD_REASON_CODE: &str = "reason code not allowed in this packet";
    pub const DUP_ON_QOS0: &str = "DUP flag on a QoS 0 PUBLISH";
    pub const PACKET_ID_ZERO: &str = "packet identifier 0";
    pub const WILDCARD_IN_TOPIC: &str = "wildcard in a topic name";
    pub const EMPTY_TOPIC: &str = "empty topic name without a topic alias";
    pub const TOPIC_TOO_LONG: &str = "topic longer than the proxy accepts";
    pub const NO_FILTERS: &str = "SUBSCRIBE or UNSUBSCRIBE without a topic filter";
    pub const TOO_MANY_FILTERS: &str = "more topic filters than the proxy accepts in one packet";
    pub const SUBSCRIBE_RESERVED_BITS: &str = "subscription options reserved bits set";
    pub const RETAIN_HANDLING_3: &str = "retain handling 3";
    pub const NO_LOCAL_ON_SHARED: &str = "no local option on a shared subscription";
    pub const PROPERTIES_TOO_LONG: &str = "properties longer than the proxy accepts";
    pub const TOO_MANY_USER_PROPERTIES: &str = "more user properties than the proxy accepts";
    pub const UNKNOWN_PROPERTY: &str = "property not defined for this packet";
    pub const DUPLICATE_PROPERTY: &str = "property given twice";
    pub const PROPERTY_VALUE: &str = "property value out of range";
    pub const TOPIC_ALIAS_ZERO: &str = "topic alias 0";
    pub const SUBSCRIPTION_ID_FROM_CLIENT: &str = "subscription identifier in a PUBLISH from a client";
    pub const NOT_EMPTY: &str = "packet must have no body";
    pub const STRING_TOO_LONG: &str = "string or binary field over 65535 bytes";
    pub const MISSING_PACKET_ID: &str = "QoS 1 or 2 PUBLISH without a packet identifier";
    pub const NOT_IN_V311: &str = "packet type does not exist in MQTT 3.1.1";
    pub const ENCODE_MISMATCH: &str = "internal: encoded length differs from the computed one";
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn replies_by_version_and_phase() {
        let e = Error::malformed(msg::TRUNCATED);
        match e.reply(Some(Version::V5), true) {
            Some(Packet::Disconnect(d)) => {
                assert_eq!(d.reason, ReasonCode::MALFORMED_PACKET);
                assert_eq!(d.properties.reason_string.as_deref(), Some(msg::TRUNCATED.as_bytes()));
            }
            other => panic!("{other:?}"),
        }
        match e.reply(Some(Version::V5), false) {
            Some(Packet::ConnAck(c)) => assert_eq!(c.code, 0x81),
            other => panic!("{other:?}"),
        }
        assert_eq!(e.reply(Some(Version::V311), true), None, "3.1.1: close");
        assert_eq!(e.reply(None, false), None);
        let v = Error::new(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, msg::UNSUPPORTED_VERSION);
        match v.reply(None, false) {
            Some(Packet::ConnAck(c)) => assert_eq!(c.code, v311::UNACCEPTABLE_PROTOCOL_VERSION),
            other => panic!("{other:?}"),
        }
        assert_eq!(e.to_string(), "0x81 Malformed Packet: packet ends inside a field");
    }
}
