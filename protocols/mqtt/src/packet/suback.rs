//! SUBACK (3.9) and UNSUBACK (3.11).

use bytes::{BufMut, BytesMut};

use super::{packet_id, Version};
use crate::error::{msg, Error};
use crate::limits::Limits;
use crate::properties::{Context, Properties};
use crate::reason::allowed;
use crate::wire::Reader;

/// A SUBACK packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: u16,
    /// MQTT 5.0 only.
    pub properties: Box<Properties>,
    /// One per filter of the SUBSCRIBE, in order: granted QoS (0, 1, 2) or a failure (0x80
    /// in 3.1.1; a 5.0 reason code of 0x80 and above).
    pub reasons: Vec<u8>,
}

/// An UNSUBACK packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: u16,
    /// MQTT 5.0 only.
    pub properties: Box<Properties>,
    /// MQTT 5.0: one reason code per filter of the UNSUBSCRIBE. Empty in 3.1.1.
    pub reasons: Vec<u8>,
}

fn reasons(r: Reader, codes: &[u8]) -> Result<Vec<u8>, Error> {
    let list = r.rest();
    if list.is_empty() {
        return Err(Error::protocol(msg::NO_FILTERS));
    }
    if list.iter().any(|c| !codes.contains(c)) {
        return Err(Error::malformed(msg::BAD_REASON_CODE));
    }
    Ok(list.to_vec())
}

impl SubAck {
    pub(crate) fn decode(mut r: Reader, version: Version, limits: &Limits) -> Result<Self, Error> {
        let packet_id = packet_id(&mut r)?;
        let (properties, codes) = match version {
            Version::V5 => (Properties::decode(&mut r, Context::SubAck, limits)?, allowed::SUBACK),
            Version::V311 => (Properties::default(), allowed::SUBACK_V311),
        };
        Ok(Self {
            packet_id,
            properties: Box::new(properties),
            reasons: reasons(r, codes)?,
        })
    }

    pub(crate) fn body_len(&self, version: Version) -> usize {
        2 + match version {
            Version::V5 => self.properties.wire_len(),
            Version::V311 => 0,
        } + self.reasons.len()
    }

    pub(crate) fn write_body(&self, version: Version, out: &mut BytesMut) -> Result<(), Error> {
        out.put_u16(self.packet_id);
        if version == Version::V5 {
            self.properties.encode(out)?;
        }
        out.extend_from_slice(&self.reasons);
        Ok(())
    }
}

impl UnsubAck {
    pub(crate) fn decode(mut r: Reader, version: Version, limits: &Limits) -> Result<Self, Error> {
        let packet_id = packet_id(&mut r)?;
        match version {
            Version::V311 => {
                super::end(&r)?;
                Ok(Self {
                    packet_id,
                    properties: Box::new(Properties::default()),
                    reasons: Vec::new(),
                })
            }
            Version::V5 => {
                let properties = Properties::decode(&mut r, Context::UnsubAck, limits)?;
                Ok(Self {
                    packet_id,
                    properties: Box::new(properties),
                    reasons: reasons(r, allowed::UNSUBACK)?,
                })
            }
        }
    }

    pub(crate) fn body_len(&self, version: Version) -> usize {
        match version {
            Version::V5 => 2 + self.properties.wire_len() + self.reasons.len(),
            Version::V311 => 2,
        }
    }

    pub(crate) fn write_body(&self, version: Version, out: &mut BytesMut) -> Result<(), Error> {
        out.put_u16(self.packet_id);
        if version == Version::V5 {
            self.properties.encode(out)?;
            out.extend_from_slice(&self.reasons);
        }
        Ok(())
    }
}
