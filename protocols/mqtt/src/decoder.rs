//! The streaming decoder: bytes of one direction of a connection in, packets out.

use bytes::{Bytes, BytesMut};

use crate::error::{msg, Error};
use crate::limits::Limits;
use crate::packet::{Packet, PacketType, QoS, Version};
use crate::wire::{read_varint, Reader};

/// Decodes the packets of one direction of one connection.
///
/// `decode` has tokio-util's `Decoder` shape without the dependency: `Ok(None)` means "need
/// more bytes" and leaves `src` untouched; `Ok(Some(_))` splits exactly one packet off the
/// front of `src` (no copy: the packet's fields are slices of it). Call it in a loop. Checks
/// run as soon as their bytes are in: the first byte (type, flags, direction, phase) before the
/// length, the remaining length against [`Limits::max_packet_size`] before waiting for the body.
/// After an `Err` the stream is out of sync: answer with [`Error::reply`] and close.
#[derive(Debug, Clone)]
pub struct Decoder {
    from_client: bool,
    version: Option<Version>,
    limits: Limits,
}

impl Decoder {
    /// For what a client sends: the first packet must be CONNECT, whose protocol level fixes
    /// the version of the rest; a second CONNECT is a Protocol Error.
    pub fn from_client(limits: Limits) -> Self {
        Self {
            from_client: true,
            version: None,
            limits,
        }
    }

    /// For what a client sends after a CONNECT of `version` was decoded elsewhere (a second
    /// CONNECT is a Protocol Error).
    pub fn from_client_connected(version: Version, limits: Limits) -> Self {
        Self {
            from_client: true,
            version: Some(version),
            limits,
        }
    }

    /// For what a server sends on a connection whose CONNECT spoke `version`.
    pub fn from_server(version: Version, limits: Limits) -> Self {
        Self {
            from_client: false,
            version: Some(version),
            limits,
        }
    }

    /// The connection's version, once known.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decodes the next packet off the front of `src`.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, Error> {
        let Some(&first) = src.first() else {
            return Ok(None);
        };
        let kind = self.check_first_byte(first)?;
        let Some((remaining, len_len)) = read_varint(src.get(1..).unwrap_or_default())? else {
            return Ok(None);
        };
        let header_len = 1 + len_len;
        let total = u64::from(remaining) + header_len as u64;
        if total > u64::from(self.limits.packet_size()) {
            return Err(Error::too_large(msg::PACKET_TOO_LARGE));
        }
        let total = usize::try_from(total).map_err(|_| Error::too_large(msg::PACKET_TOO_LARGE))?;
        if src.len() < total {
            return Ok(None);
        }
        let raw = src.split_to(total).freeze();
        let body = Reader::new(raw.slice(header_len..));
        let version = self.version.unwrap_or(Version::V5);
        let packet = Packet::decode_body(kind, first, body, version, &self.limits)?;
        match &packet {
            Packet::Connect(c) => self.version = Some(c.version),
            Packet::Publish(p) if self.from_client && !p.properties.subscription_identifiers.is_empty() => {
                return Err(Error::protocol(msg::SUBSCRIPTION_ID_FROM_CLIENT));
            }
            _ => {}
        }
        Ok(Some(Decoded {
            packet,
            raw,
            header_len,
        }))
    }

    fn check_first_byte(&self, first: u8) -> Result<PacketType, Error> {
        let kind = PacketType::from_byte(first)?;
        if let Some(flags) = kind.fixed_flags() {
            if first & 0x0f != flags {
                return Err(Error::malformed(msg::BAD_FIXED_HEADER_FLAGS));
            }
        } else if (first >> 1) & 0x03 == 3 {
            return Err(Error::malformed(msg::INVALID_QOS));
        }
        if kind == PacketType::Auth && self.version == Some(Version::V311) {
            return Err(Error::malformed(msg::RESERVED_PACKET_TYPE));
        }
        match (self.version, kind) {
            (None, PacketType::Connect) => {}
            (None, _) => return Err(Error::protocol(msg::FIRST_PACKET_NOT_CONNECT)),
            (Some(_), PacketType::Connect) if self.from_client => return Err(Error::protocol(msg::SECOND_CONNECT)),
            _ => {}
        }
        let from_v311_server = !self.from_client && self.version == Some(Version::V311);
        if !kind.sent_by(self.from_client) || (from_v311_server && kind == PacketType::Disconnect) {
            return Err(Error::protocol(msg::WRONG_DIRECTION));
        }
        Ok(kind)
    }
}

/// A decoded packet and the exact bytes it arrived in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub packet: Packet,
    raw: Bytes,
    header_len: usize,
}

impl Decoded {
    /// The packet's bytes as received: forward these when nothing changes.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Where the packet identifier sits in [`Self::raw`], for the packets that carry one.
    pub fn packet_id_offset(&self) -> Option<usize> {
        match &self.packet {
            Packet::Publish(p) if p.qos != QoS::AtMostOnce => Some(self.header_len + 2 + p.topic.len()),
            Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubRel(_)
            | Packet::PubComp(_)
            | Packet::Subscribe(_)
            | Packet::SubAck(_)
            | Packet::Unsubscribe(_)
            | Packet::UnsubAck(_) => Some(self.header_len),
            _ => None,
        }
    }

    /// Appends the packet as received with its packet identifier replaced by `id` (one copy,
    /// two bytes patched): the proxy's packet-identifier remapping without re-encoding. False
    /// (nothing appended) for a packet without one.
    pub fn write_with_packet_id(&self, id: u16, out: &mut BytesMut) -> bool {
        let Some(at) = self.packet_id_offset() else {
            return false;
        };
        let (Some(head), Some(tail)) = (self.raw.get(..at), self.raw.get(at + 2..)) else {
            return false;
        };
        out.reserve(self.raw.len());
        out.extend_from_slice(head);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(tail);
        true
    }
}

#[cfg(test)]
mod tests;
