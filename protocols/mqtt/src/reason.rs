//! Reason codes (MQTT 5.0, 2.4) and MQTT 3.1.1's CONNACK return codes, by name.

use core::fmt;

/// An MQTT 5.0 reason code. Values below 0x80 say success, 0x80 and above failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReasonCode(pub u8);

impl ReasonCode {
    pub const SUCCESS: Self = Self(0x00);
    pub const NORMAL_DISCONNECTION: Self = Self(0x00);
    pub const GRANTED_QOS_0: Self = Self(0x00);
    pub const GRANTED_QOS_1: Self = Self(0x01);
    pub const GRANTED_QOS_2: Self = Self(0x02);
    pub const DISCONNECT_WITH_WILL: Self = Self(0x04);
    pub const NO_MATCHING_SUBSCRIBERS: Self = Self(0x10);
    pub const NO_SUBSCRIPTION_EXISTED: Self = Self(0x11);
    pub const CONTINUE_AUTHENTICATION: Self = Self(0x18);
    pub const REAUTHENTICATE: Self = Self(0x19);
    pub const UNSPECIFIED_ERROR: Self = Self(0x80);
    pub const MALFORMED_PACKET: Self = Self(0x81);
    pub const PROTOCOL_ERROR: Self = Self(0x82);
    pub const IMPLEMENTATION_SPECIFIC_ERROR: Self = Self(0x83);
    pub const UNSUPPORTED_PROTOCOL_VERSION: Self = Self(0x84);
    pub const CLIENT_IDENTIFIER_NOT_VALID: Self = Self(0x85);
    pub const BAD_USER_NAME_OR_PASSWORD: Self = Self(0x86);
    pub const NOT_AUTHORIZED: Self = Self(0x87);
    pub const SERVER_UNAVAILABLE: Self = Self(0x88);
    pub const SERVER_BUSY: Self = Self(0x89);
    pub const BANNED: Self = Self(0x8A);
    pub const SERVER_SHUTTING_DOWN: Self = Self(0x8B);
    pub const BAD_AUTHENTICATION_METHOD: Self = Self(0x8C);
    pub const KEEP_ALIVE_TIMEOUT: Self = Self(0x8D);
    pub const SESSION_TAKEN_OVER: Self = Self(0x8E);
    pub const TOPIC_FILTER_INVALID: Self = Self(0x8F);
    pub const TOPIC_NAME_INVALID: Self = Self(0x90);
    pub const PACKET_IDENTIFIER_IN_USE: Self = Self(0x91);
    pub const PACKET_IDENTIFIER_NOT_FOUND: Self = Self(0x92);
    pub const RECEIVE_MAXIMUM_EXCEEDED: Self = Self(0x93);
    pub const TOPIC_ALIAS_INVALID: Self = Self(0x94);
    pub const PACKET_TOO_LARGE: Self = Self(0x95);
    pub const MESSAGE_RATE_TOO_HIGH: Self = Self(0x96);
    pub const QUOTA_EXCEEDED: Self = Self(0x97);
    pub const ADMINISTRATIVE_ACTION: Self = Self(0x98);
    pub const PAYLOAD_FORMAT_INVALID: Self = Self(0x99);
    pub const RETAIN_NOT_SUPPORTED: Self = Self(0x9A);
    pub const QOS_NOT_SUPPORTED: Self = Self(0x9B);
    pub const USE_ANOTHER_SERVER: Self = Self(0x9C);
    pub const SERVER_MOVED: Self = Self(0x9D);
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: Self = Self(0x9E);
    pub const CONNECTION_RATE_EXCEEDED: Self = Self(0x9F);
    pub const MAXIMUM_CONNECT_TIME: Self = Self(0xA0);
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: Self = Self(0xA1);
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: Self = Self(0xA2);

    /// True for 0x80 and above.
    pub fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// The specification's name (for logs and reason strings).
    pub fn name(self) -> &'static str {
        match self.0 {
            0x00 => "Success",
            0x01 => "Granted QoS 1",
            0x02 => "Granted QoS 2",
            0x04 => "Disconnect with Will Message",
            0x10 => "No matching subscribers",
            0x11 => "No subscription existed",
            0x18 => "Continue authentication",
            0x19 => "Re-authenticate",
            0x80 => "Unspecified error",
            0x81 => "Malformed Packet",
            0x82 => "Protocol Error",
            0x83 => "Implementation specific error",
            0x84 => "Unsupported Protocol Version",
            0x85 => "Client Identifier not valid",
            0x86 => "Bad User Name or Password",
            0x87 => "Not authorized",
            0x88 => "Server unavailable",
            0x89 => "Server busy",
            0x8A => "Banned",
            0x8B => "Server shutting down",
            0x8C => "Bad authentication method",
            0x8D => "Keep Alive timeout",
            0x8E => "Session taken over",
            0x8F => "Topic Filter invalid",
            0x90 => "Topic Name invalid",
            0x91 => "Packet Identifier in use",
            0x92 => "Packet Identifier not found",
            0x93 => "Receive Maximum exceeded",
            0x94 => "Topic Alias invalid",
            0x95 => "Packet too large",
            0x96 => "Message rate too high",
            0x97 => "Quota exceeded",
            0x98 => "Administrative action",
            0x99 => "Payload format invalid",
            0x9A => "Retain not supported",
            0x9B => "QoS not supported",
            0x9C => "Use another server",
            0x9D => "Server moved",
            0x9E => "Shared Subscriptions not supported",
            0x9F => "Connection rate exceeded",
            0xA0 => "Maximum connect time",
            0xA1 => "Subscription Identifiers not supported",
            0xA2 => "Wildcard Subscriptions not supported",
            _ => "unknown reason code",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X} {}", self.0, self.name())
    }
}

/// The reason codes each MQTT 5.0 packet may carry (3.2.2.2, 3.4.2.1, 3.5.2.1, 3.6.2.1,
/// 3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1, 3.15.2.1); anything else is a Malformed Packet.
pub(crate) mod allowed {
    pub const CONNACK: &[u8] = &[
        0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
        0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
    ];
    pub const PUBACK: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
    pub const PUBREL: &[u8] = &[0x00, 0x92];
    pub const SUBACK: &[u8] = &[0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2];
    pub const UNSUBACK: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
    pub const DISCONNECT: &[u8] = &[
        0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
        0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
    ];
    pub const AUTH: &[u8] = &[0x00, 0x18, 0x19];
    /// MQTT 3.1.1 SUBACK return codes (3.9.3).
    pub const SUBACK_V311: &[u8] = &[0x00, 0x01, 0x02, 0x80];
}

/// MQTT 3.1.1 CONNACK return codes (3.2.2.3) and the SUBACK failure code.
pub mod v311 {
    pub const ACCEPTED: u8 = 0x00;
    pub const UNACCEPTABLE_PROTOCOL_VERSION: u8 = 0x01;
    pub const IDENTIFIER_REJECTED: u8 = 0x02;
    pub const SERVER_UNAVAILABLE: u8 = 0x03;
    pub const BAD_USER_NAME_OR_PASSWORD: u8 = 0x04;
    pub const NOT_AUTHORIZED: u8 = 0x05;
    /// The highest CONNACK return code 3.1.1 defines.
    pub const LAST_CONNACK_CODE: u8 = NOT_AUTHORIZED;
    /// SUBACK: the subscription was refused.
    pub const SUBACK_FAILURE: u8 = 0x80;

    /// The 3.1.1 CONNACK return code closest to an MQTT 5.0 CONNACK reason code (for a proxy
    /// answering a 3.1.1 client with a refusal worded in 5.0 terms).
    pub fn connack_code(reason: super::ReasonCode) -> u8 {
        match reason.0 {
            0x00 => ACCEPTED,
            0x84 => UNACCEPTABLE_PROTOCOL_VERSION,
            0x85 => IDENTIFIER_REJECTED,
            0x86 => BAD_USER_NAME_OR_PASSWORD,
            0x87 | 0x8A | 0x8C => NOT_AUTHORIZED,
            _ => SERVER_UNAVAILABLE,
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn every_allowed_code_has_a_name() {
        for list in [
            allowed::CONNACK,
            allowed::PUBACK,
            allowed::PUBREL,
            allowed::SUBACK,
            allowed::UNSUBACK,
            allowed::DISCONNECT,
            allowed::AUTH,
        ] {
            for &c in list {
                assert_ne!(ReasonCode(c).name(), "unknown reason code", "0x{c:02X}");
            }
        }
        assert_eq!(ReasonCode::MALFORMED_PACKET.to_string(), "0x81 Malformed Packet");
        assert!(ReasonCode::PACKET_TOO_LARGE.is_error());
        assert!(!ReasonCode::NO_SUBSCRIPTION_EXISTED.is_error());
    }

    #[test]
    fn v311_connack_codes_for_v5_refusals() {
        assert_eq!(v311::connack_code(ReasonCode::SUCCESS), v311::ACCEPTED);
        assert_eq!(v311::connack_code(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION), v311::UNACCEPTABLE_PROTOCOL_VERSION);
        assert_eq!(v311::connack_code(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID), v311::IDENTIFIER_REJECTED);
        assert_eq!(v311::connack_code(ReasonCode::BAD_USER_NAME_OR_PASSWORD), v311::BAD_USER_NAME_OR_PASSWORD);
        assert_eq!(v311::connack_code(ReasonCode::NOT_AUTHORIZED), v311::NOT_AUTHORIZED);
        assert_eq!(v311::connack_code(ReasonCode::SERVER_BUSY), v311::SERVER_UNAVAILABLE);
    }
}
