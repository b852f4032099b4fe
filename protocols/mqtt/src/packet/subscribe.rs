//! SUBSCRIBE (3.8) and UNSUBSCRIBE (3.10).

use bytes::{BufMut, Bytes, BytesMut};

use super::{packet_id, QoS, Version};
use crate::error::{msg, Error};
use crate::limits::Limits;
use crate::properties::{Context, Properties};
use crate::reason::ReasonCode;
use crate::topic::SHARE_PREFIX;
use crate::wire::{binary_len, put_binary, Reader};

/// What MQTT 5.0 does with retained messages when a subscription is made (3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    OnSubscribe = 0,
    /// Only if the subscription does not exist yet.
    OnNewSubscribe = 1,
    /// Never.
    Never = 2,
}

/// The options byte of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    pub qos: QoS,
    /// MQTT 5.0 options (false / `OnSubscribe` in 3.1.1).
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscribeOptions {
    /// Maximum QoS `qos`, every MQTT 5.0 option at its default.
    pub fn qos(qos: QoS) -> Self {
        Self {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::OnSubscribe,
        }
    }

    fn decode(b: u8, version: Version) -> Result<Self, Error> {
        let reserved = match version {
            Version::V311 => 0xfc,
            Version::V5 => 0xc0,
        };
        if b & reserved != 0 {
            return Err(Error::malformed(msg::SUBSCRIBE_RESERVED_BITS));
        }
        let retain_handling = match (b >> 4) & 0x03 {
            0 => RetainHandling::OnSubscribe,
            1 => RetainHandling::OnNewSubscribe,
            2 => RetainHandling::Never,
            _ => return Err(Error::protocol(msg::RETAIN_HANDLING_3)),
        };
        Ok(Self {
            qos: QoS::from_bits(b & 0x03)?,
            no_local: b & 0x04 != 0,
            retain_as_published: b & 0x08 != 0,
            retain_handling,
        })
    }

    fn byte(self, version: Version) -> u8 {
        let mut b = self.qos.bits();
        if version == Version::V5 {
            if self.no_local {
                b |= 0x04;
            }
            if self.retain_as_published {
                b |= 0x08;
            }
            b |= (self.retain_handling as u8) << 4;
        }
        b
    }
}

/// One topic filter of a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// As sent (valid UTF-8; its wildcard syntax is checked by whoever answers the SUBACK).
    pub filter: Bytes,
    pub options: SubscribeOptions,
}

/// A SUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: u16,
    /// MQTT 5.0 only.
    pub properties: Box<Properties>,
    /// At least one.
    pub filters: Vec<Subscription>,
}

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: u16,
    /// MQTT 5.0 only.
    pub properties: Box<Properties>,
    /// At least one.
    pub filters: Vec<Bytes>,
}

/// A topic filter: a string within `max_topic_len`.
fn filter(r: &mut Reader, limits: &Limits) -> Result<Bytes, Error> {
    let f = r.string()?;
    if f.len() > usize::from(limits.max_topic_len) {
        return Err(Error::new(ReasonCode::TOPIC_FILTER_INVALID, msg::TOPIC_TOO_LONG));
    }
    Ok(f)
}

fn count_ok(n: usize, limits: &Limits) -> Result<(), Error> {
    if n >= usize::from(limits.max_topic_filters) {
        return Err(Error::too_large(msg::TOO_MANY_FILTERS));
    }
    Ok(())
}

fn no_filters(version: Version) -> Error {
    match version {
        Version::V5 => Error::protocol(msg::NO_FILTERS),
        Version::V311 => Error::malformed(msg::NO_FILTERS),
    }
}

impl Subscribe {
    pub(crate) fn decode(mut r: Reader, version: Version, limits: &Limits) -> Result<Self, Error> {
        let packet_id = packet_id(&mut r)?;
        let properties = match version {
            Version::V5 => Properties::decode(&mut r, Context::Subscribe, limits)?,
            Version::V311 => Properties::default(),
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            count_ok(filters.len(), limits)?;
            let filter = filter(&mut r, limits)?;
            let options = SubscribeOptions::decode(r.u8()?, version)?;
            if options.no_local && filter.starts_with(SHARE_PREFIX) {
                return Err(Error::protocol(msg::NO_LOCAL_ON_SHARED));
            }
            filters.push(Subscription { filter, options });
        }
        if filters.is_empty() {
            return Err(no_filters(version));
        }
        Ok(Self {
            packet_id,
            properties: Box::new(properties),
            filters,
        })
    }

    pub(crate) fn body_len(&self, version: Version) -> usize {
        2 + match version {
            Version::V5 => self.properties.wire_len(),
            Version::V311 => 0,
        } + self.filters.iter().map(|s| binary_len(&s.filter) + 1).sum::<usize>()
    }

    pub(crate) fn write_body(&self, version: Version, out: &mut BytesMut) -> Result<(), Error> {
        out.put_u16(self.packet_id);
        if version == Version::V5 {
            self.properties.encode(out)?;
        }
        for s in &self.filters {
            put_binary(out, &s.filter)?;
            out.put_u8(s.options.byte(version));
        }
        Ok(())
    }
}

impl Unsubscribe {
    pub(crate) fn decode(mut r: Reader, version: Version, limits: &Limits) -> Result<Self, Error> {
        let packet_id = packet_id(&mut r)?;
        let properties = match version {
            Version::V5 => Properties::decode(&mut r, Context::Unsubscribe, limits)?,
            Version::V311 => Properties::default(),
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            count_ok(filters.len(), limits)?;
            filters.push(filter(&mut r, limits)?);
        }
        if filters.is_empty() {
            return Err(no_filters(version));
        }
        Ok(Self {
            packet_id,
            properties: Box::new(properties),
            filters,
        })
    }

    pub(crate) fn body_len(&self, version: Version) -> usize {
        2 + match version {
            Version::V5 => self.properties.wire_len(),
            Version::V311 => 0,
        } + self.filters.iter().map(|f| binary_len(f)).sum::<usize>()
    }

    pub(crate) fn write_body(&self, version: Version, out: &mut BytesMut) -> Result<(), Error> {
        out.put_u16(self.packet_id);
        if version == Version::V5 {
            self.properties.encode(out)?;
        }
        for f in &self.filters {
            put_binary(out, f)?;
        }
        Ok(())
    }
}
