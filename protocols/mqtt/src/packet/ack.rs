//! PUBACK, PUBREC, PUBREL and PUBCOMP (3.4 to 3.7): one shape.

use bytes::{BufMut, BytesMut};

use super::{end, packet_id, reason, PacketType, Version};
use crate::error::Error;
use crate::limits::Limits;
use crate::properties::{Context, Properties};
use crate::reason::{allowed, ReasonCode};
use crate::wire::Reader;

/// A QoS acknowledgement; the packet type is the [`super::Packet`] variant holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: u16,
    /// MQTT 5.0 (always Success in 3.1.1).
    pub reason: ReasonCode,
    /// MQTT 5.0 only. Boxed, as in `Publish`.
    pub properties: Box<Properties>,
}

impl Ack {
    /// A successful acknowledgement of `packet_id`.
    pub fn new(packet_id: u16) -> Self {
        Self {
            packet_id,
            reason: ReasonCode::SUCCESS,
            properties: Box::default(),
        }
    }

    pub(crate) fn decode(kind: PacketType, mut r: Reader, version: Version, limits: &Limits) -> Result<Self, Error> {
        let packet_id = packet_id(&mut r)?;
        let mut ack = Self::new(packet_id);
        if version == Version::V5 && !r.is_empty() {
            let codes = match kind {
                PacketType::PubAck | PacketType::PubRec => allowed::PUBACK,
                _ => allowed::PUBREL,
            };
            ack.reason = reason(&mut r, codes)?;
            if !r.is_empty() {
                ack.properties = Properties::decode_boxed(&mut r, Context::Ack, limits)?;
            }
        }
        end(&r)?;
        Ok(ack)
    }

    /// MQTT 5.0 leaves out a Success reason without properties, and empty properties (3.4.2.1).
    pub(crate) fn body_len(&self, version: Version) -> usize {
        match version {
            Version::V311 => 2,
            Version::V5 if self.properties.is_empty() => {
                if self.reason == ReasonCode::SUCCESS {
                    2
                } else {
                    3
                }
            }
            Version::V5 => 3 + self.properties.wire_len(),
        }
    }

    pub(crate) fn write_body(&self, version: Version, out: &mut BytesMut) -> Result<(), Error> {
        out.put_u16(self.packet_id);
        let len = self.body_len(version);
        if len > 2 {
            out.put_u8(self.reason.0);
        }
        if len > 3 {
            self.properties.encode(out)?;
        }
        Ok(())
    }
}
