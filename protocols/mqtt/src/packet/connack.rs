//! CONNACK (3.2).

use bytes::{BufMut, BytesMut};

use super::{end, Version};
use crate::error::{msg, Error};
use crate::limits::Limits;
use crate::properties::{Context, Properties};
use crate::reason::{allowed, v311};
use crate::wire::Reader;

/// A CONNACK packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// The 3.1.1 return code ([`v311`]) or the 5.0 reason code ([`crate::ReasonCode`]).
    pub code: u8,
    /// MQTT 5.0 only.
    pub properties: Box<Properties>,
}

impl ConnAck {
    /// An accepted connection.
    pub fn accepted(session_present: bool) -> Self {
        Self {
            session_present,
            code: 0,
            properties: Box::new(Properties::default()),
        }
    }

    pub(crate) fn decode(mut r: Reader, version: Version, limits: &Limits) -> Result<Self, Error> {
        let flags = r.u8()?;
        if flags & 0xfe != 0 {
            return Err(Error::malformed(msg::CONNACK_RESERVED_FLAGS));
        }
        let code = r.u8()?;
        let properties = match version {
            Version::V311 => {
                if code > v311::LAST_CONNACK_CODE {
                    return Err(Error::malformed(msg::BAD_CONNACK_CODE));
                }
                Properties::default()
            }
            Version::V5 => {
                if !allowed::CONNACK.contains(&code) {
                    return Err(Error::malformed(msg::BAD_CONNACK_CODE));
                }
                Properties::decode(&mut r, Context::ConnAck, limits)?
            }
        };
        end(&r)?;
        Ok(Self {
            session_present: flags & 1 != 0,
            code,
            properties: Box::new(properties),
        })
    }

    pub(crate) fn body_len(&self, version: Version) -> usize {
        2 + match version {
            Version::V5 => self.properties.wire_len(),
            Version::V311 => 0,
        }
    }

    pub(crate) fn write_body(&self, version: Version, out: &mut BytesMut) -> Result<(), Error> {
        out.put_u8(u8::from(self.session_present));
        out.put_u8(self.code);
        if version == Version::V5 {
            self.properties.encode(out)?;
        }
        Ok(())
    }
}
