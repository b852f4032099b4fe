//! CONNECT (3.1): the protocol level decides the format of everything after it.

use bytes::{BufMut, Bytes, BytesMut};

use super::{end, QoS, Version};
use crate::error::{msg, Error};
use crate::limits::Limits;
use crate::properties::{Context, Properties};
use crate::reason::ReasonCode;
use crate::topic::check_topic_name;
use crate::wire::{binary_len, put_binary, Reader};

/// The protocol name of MQTT 3.1.1 and 5.0.
pub const PROTOCOL_NAME: &[u8] = b"MQTT";
/// MQTT 3.1's protocol name (level 3), answered as an unsupported version.
pub const PROTOCOL_NAME_V31: &[u8] = b"MQIsdp";

/// A CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub version: Version,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean_start: bool,
    pub keep_alive: u16,
    pub properties: Properties,
    /// May be empty (the server assigns one).
    pub client_id: Bytes,
    pub will: Option<Will>,
    pub username: Option<Bytes>,
    pub password: Option<Bytes>,
}

/// The Will Message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub qos: QoS,
    pub retain: bool,
    /// Will properties (MQTT 5.0).
    pub properties: Properties,
    pub topic: Bytes,
    pub payload: Bytes,
}

mod flag {
    pub const RESERVED: u8 = 0x01;
    pub const CLEAN: u8 = 0x02;
    pub const WILL: u8 = 0x04;
    pub const WILL_QOS_SHIFT: u8 = 3;
    pub const WILL_RETAIN: u8 = 0x20;
    pub const PASSWORD: u8 = 0x40;
    pub const USERNAME: u8 = 0x80;
}

impl Connect {
    /// A CONNECT with no will and no credentials.
    pub fn new(version: Version, client_id: impl Into<Bytes>) -> Self {
        Self {
            version,
            clean_start: true,
            keep_alive: 60,
            properties: Properties::default(),
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
        }
    }

    pub(crate) fn decode(mut r: Reader, limits: &Limits) -> Result<Self, Error> {
        let name = r.string()?;
        if name != PROTOCOL_NAME {
            return Err(if name == PROTOCOL_NAME_V31 {
                Error::new(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, msg::UNSUPPORTED_VERSION)
            } else {
                Error::new(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, msg::BAD_PROTOCOL_NAME)
            });
        }
        let version = match r.u8()? {
            4 => Version::V311,
            5 => Version::V5,
            _ => return Err(Error::new(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, msg::UNSUPPORTED_VERSION)),
        };
        let flags = r.u8()?;
        if flags & flag::RESERVED != 0 {
            return Err(Error::malformed(msg::CONNECT_RESERVED_FLAG));
        }
        let has_will = flags & flag::WILL != 0;
        let will_qos = QoS::from_bits((flags >> flag::WILL_QOS_SHIFT) & 0x03)?;
        let will_retain = flags & flag::WILL_RETAIN != 0;
        if !has_will && (will_qos != QoS::AtMostOnce || will_retain) {
            return Err(Error::malformed(msg::BAD_WILL_FLAGS));
        }
        let has_password = flags & flag::PASSWORD != 0;
        let has_username = flags & flag::USERNAME != 0;
        if version == Version::V311 && has_password && !has_username {
            return Err(Error::malformed(msg::PASSWORD_WITHOUT_USERNAME));
        }
        let keep_alive = r.u16()?;
        let properties = match version {
            Version::V5 => Properties::decode(&mut r, Context::Connect, limits)?,
            Version::V311 => Properties::default(),
        };
        let client_id = r.string()?;
        let will = if has_will {
            let properties = match version {
                Version::V5 => Properties::decode(&mut r, Context::Will, limits)?,
                Version::V311 => Properties::default(),
            };
            let topic = r.string()?;
            if topic.is_empty() {
                return Err(Error::new(ReasonCode::TOPIC_NAME_INVALID, msg::EMPTY_TOPIC));
            }
            check_topic_name(&topic, limits)?;
            let payload = r.binary()?;
            Some(Will {
                qos: will_qos,
                retain: will_retain,
                properties,
                topic,
                payload,
            })
        } else {
            None
        };
        let username = if has_username { Some(r.string()?) } else { None };
        let password = if has_password { Some(r.binary()?) } else { None };
        end(&r)?;
        Ok(Self {
            version,
            clean_start: flags & flag::CLEAN != 0,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }

    fn flags(&self) -> u8 {
        let mut f = 0;
        if self.clean_start {
            f |= flag::CLEAN;
        }
        if let Some(w) = &self.will {
            f |= flag::WILL | (w.qos.bits() << flag::WILL_QOS_SHIFT);
            if w.retain {
                f |= flag::WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            f |= flag::USERNAME;
        }
        if self.password.is_some() {
            f |= flag::PASSWORD;
        }
        f
    }

    pub(crate) fn body_len(&self) -> usize {
        let v5 = self.version == Version::V5;
        binary_len(PROTOCOL_NAME)
            + 1
            + 1
            + 2
            + if v5 { self.properties.wire_len() } else { 0 }
            + binary_len(&self.client_id)
            + self.will.as_ref().map_or(0, |w| {
                (if v5 { w.properties.wire_len() } else { 0 }) + binary_len(&w.topic) + binary_len(&w.payload)
            })
            + self.username.as_ref().map_or(0, |u| binary_len(u))
            + self.password.as_ref().map_or(0, |p| binary_len(p))
    }

    pub(crate) fn write_body(&self, out: &mut BytesMut) -> Result<(), Error> {
        let v5 = self.version == Version::V5;
        put_binary(out, PROTOCOL_NAME)?;
        out.put_u8(self.version.level());
        out.put_u8(self.flags());
        out.put_u16(self.keep_alive);
        if v5 {
            self.properties.encode(out)?;
        }
        put_binary(out, &self.client_id)?;
        if let Some(w) = &self.will {
            if v5 {
                w.properties.encode(out)?;
            }
            put_binary(out, &w.topic)?;
            put_binary(out, &w.payload)?;
        }
        if let Some(u) = &self.username {
            put_binary(out, u)?;
        }
        if let Some(p) = &self.password {
            put_binary(out, p)?;
        }
        Ok(())
    }
}
