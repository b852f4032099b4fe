//! PUBLISH (3.3). The payload is a slice of the packet's buffer: forwarding or re-encoding
//! never copies it more than once (into the output).

use bytes::{BufMut, Bytes, BytesMut};

use super::{packet_id, QoS, Version};
use crate::error::{msg, Error};
use crate::limits::Limits;
use crate::properties::{Context, Properties};
use crate::reason::ReasonCode;
use crate::topic::check_topic_name;
use crate::wire::{binary_len, put_binary, Reader};

/// A PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// As sent: empty in MQTT 5.0 when a Topic Alias stands for it.
    pub topic: Bytes,
    /// `Some` exactly at QoS 1 and 2.
    pub packet_id: Option<u16>,
    /// MQTT 5.0 only. Boxed: a PUBLISH moves through the decoder and the pipeline by value,
    /// and most carry no properties.
    pub properties: Box<Properties>,
    pub payload: Bytes,
}

const DUP: u8 = 0x08;
const RETAIN: u8 = 0x01;
const QOS_SHIFT: u8 = 1;

impl Publish {
    /// A PUBLISH of `payload` on `topic` (no packet identifier yet at QoS 1 and 2).
    pub fn new(topic: impl Into<Bytes>, qos: QoS, payload: impl Into<Bytes>) -> Self {
        Self {
            dup: false,
            qos,
            retain: false,
            topic: topic.into(),
            packet_id: None,
            properties: Box::default(),
            payload: payload.into(),
        }
    }

    pub(crate) fn decode(flags: u8, mut r: Reader, version: Version, limits: &Limits) -> Result<Self, Error> {
        let qos = QoS::from_bits((flags >> QOS_SHIFT) & 0x03)?;
        let dup = flags & DUP != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(Error::malformed(msg::DUP_ON_QOS0));
        }
        let topic = r.string()?;
        check_topic_name(&topic, limits)?;
        let packet_id = if qos == QoS::AtMostOnce { None } else { Some(packet_id(&mut r)?) };
        let properties = match version {
            Version::V5 => Properties::decode_boxed(&mut r, Context::Publish, limits)?,
            Version::V311 => Box::default(),
        };
        if topic.is_empty() && properties.topic_alias.is_none() {
            return Err(match version {
                Version::V5 => Error::protocol(msg::EMPTY_TOPIC),
                Version::V311 => Error::new(ReasonCode::TOPIC_NAME_INVALID, msg::EMPTY_TOPIC),
            });
        }
        Ok(Self {
            dup,
            qos,
            retain: flags & RETAIN != 0,
            topic,
            packet_id,
            properties,
            payload: r.rest(),
        })
    }

    pub(crate) fn flags(&self) -> u8 {
        let mut f = self.qos.bits() << QOS_SHIFT;
        if self.dup {
            f |= DUP;
        }
        if self.retain {
            f |= RETAIN;
        }
        f
    }

    pub(crate) fn body_len(&self, version: Version) -> usize {
        binary_len(&self.topic)
            + if self.qos == QoS::AtMostOnce { 0 } else { 2 }
            + match version {
                Version::V5 => self.properties.wire_len(),
                Version::V311 => 0,
            }
            + self.payload.len()
    }

    pub(crate) fn write_body(&self, version: Version, out: &mut BytesMut) -> Result<(), Error> {
        put_binary(out, &self.topic)?;
        if self.qos != QoS::AtMostOnce {
            out.put_u16(self.packet_id.ok_or(Error::protocol(msg::MISSING_PACKET_ID))?);
        }
        if version == Version::V5 {
            self.properties.encode(out)?;
        }
        out.extend_from_slice(&self.payload);
        Ok(())
    }
}
