//! MQTT control packets (3.1.1 and 5.0), each with its decoder and encoder.
//!
//! Decoded strings, binary fields and PUBLISH payloads are `Bytes` slices of the packet's own
//! buffer: nothing is copied to decode, and re-encoding copies each byte once into the output.

use bytes::{BufMut, BytesMut};

use crate::error::{msg, Error};
use crate::limits::Limits;
use crate::reason::ReasonCode;
use crate::wire::{put_varint, varint_len, Reader};

mod ack;
mod connack;
mod connect;
mod disconnect;
mod publish;
mod suback;
mod subscribe;

pub use ack::Ack;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub use disconnect::{Auth, Disconnect};
pub use publish::Publish;
pub use suback::{SubAck, UnsubAck};
pub use subscribe::{RetainHandling, SubscribeOptions, Subscribe, Subscription, Unsubscribe};

/// The protocol level of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// MQTT 3.1.1, protocol level 4.
    V311,
    /// MQTT 5.0, protocol level 5.
    V5,
}

impl Version {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Version::V311 => 4,
            Version::V5 => 5,
        }
    }
}

/// Quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// From its two bits; 3 is a Malformed Packet.
    pub fn from_bits(bits: u8) -> Result<QoS, Error> {
        match bits {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(Error::malformed(msg::INVALID_QOS)),
        }
    }

    /// As a number (0, 1 or 2).
    pub fn bits(self) -> u8 {
        self as u8
    }
}

/// The control packet type (high nibble of the first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    /// From the first byte of a packet; type 0 is reserved (Malformed Packet).
    pub fn from_byte(b: u8) -> Result<PacketType, Error> {
        use PacketType::*;
        Ok(match b >> 4 {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return Err(Error::malformed(msg::RESERVED_PACKET_TYPE)),
        })
    }

    /// The flags this type must carry (every type but PUBLISH has fixed ones, 2.1.3).
    pub(crate) fn fixed_flags(self) -> Option<u8> {
        match self {
            PacketType::Publish => None,
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }

    /// Sent by clients (`true`) or by servers (`false`); PUBLISH, the acknowledgements,
    /// DISCONNECT and AUTH go both ways.
    pub(crate) fn sent_by(self, client: bool) -> bool {
        use PacketType::*;
        match self {
            Connect | Subscribe | Unsubscribe | PingReq => client,
            ConnAck | SubAck | UnsubAck | PingResp => !client,
            Publish | PubAck | PubRec | PubRel | PubComp | Disconnect | Auth => true,
        }
    }

    /// The specification's name, upper case (`PUBLISH`).
    pub fn name(self) -> &'static str {
        use PacketType::*;
        match self {
            Connect => "CONNECT",
            ConnAck => "CONNACK",
            Publish => "PUBLISH",
            PubAck => "PUBACK",
            PubRec => "PUBREC",
            PubRel => "PUBREL",
            PubComp => "PUBCOMP",
            Subscribe => "SUBSCRIBE",
            SubAck => "SUBACK",
            Unsubscribe => "UNSUBSCRIBE",
            UnsubAck => "UNSUBACK",
            PingReq => "PINGREQ",
            PingResp => "PINGRESP",
            Disconnect => "DISCONNECT",
            Auth => "AUTH",
        }
    }
}

/// One control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Boxed: a CONNECT is the largest packet and the rarest.
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// Its type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// The packet identifier, for the packets that have one (PUBLISH only at QoS 1 and 2).
    pub fn packet_id(&self) -> Option<u16> {
        match self {
            Packet::Publish(p) => p.packet_id,
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => Some(a.packet_id),
            Packet::Subscribe(s) => Some(s.packet_id),
            Packet::SubAck(s) => Some(s.packet_id),
            Packet::Unsubscribe(u) => Some(u.packet_id),
            Packet::UnsubAck(u) => Some(u.packet_id),
            _ => None,
        }
    }

    /// Decodes a body whose fixed header was `first` (type and flags, already checked).
    pub(crate) fn decode_body(
        kind: PacketType,
        first: u8,
        body: Reader,
        version: Version,
        limits: &Limits,
    ) -> Result<Packet, Error> {
        let flags = first & 0x0f;
        Ok(match kind {
            PacketType::Connect => Packet::Connect(Box::new(Connect::decode(body, limits)?)),
            PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(body, version, limits)?),
            PacketType::Publish => Packet::Publish(Publish::decode(flags, body, version, limits)?),
            PacketType::PubAck => Packet::PubAck(Ack::decode(kind, body, version, limits)?),
            PacketType::PubRec => Packet::PubRec(Ack::decode(kind, body, version, limits)?),
            PacketType::PubRel => Packet::PubRel(Ack::decode(kind, body, version, limits)?),
            PacketType::PubComp => Packet::PubComp(Ack::decode(kind, body, version, limits)?),
            PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(body, version, limits)?),
            PacketType::SubAck => Packet::SubAck(SubAck::decode(body, version, limits)?),
            PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(body, version, limits)?),
            PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(body, version, limits)?),
            PacketType::PingReq | PacketType::PingResp => {
                if !body.is_empty() {
                    return Err(Error::malformed(msg::NOT_EMPTY));
                }
                if kind == PacketType::PingReq {
                    Packet::PingReq
                } else {
                    Packet::PingResp
                }
            }
            PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(body, version, limits)?),
            PacketType::Auth => {
                if version == Version::V311 {
                    return Err(Error::malformed(msg::RESERVED_PACKET_TYPE));
                }
                Packet::Auth(Auth::decode(body, limits)?)
            }
        })
    }

    fn first_byte(&self) -> u8 {
        let flags = match self {
            Packet::Publish(p) => p.flags(),
            other => other.packet_type().fixed_flags().unwrap_or(0),
        };
        ((self.packet_type() as u8) << 4) | flags
    }

    /// The remaining length (body) of this packet in `version`. CONNECT uses its own.
    fn body_len(&self, version: Version) -> Result<usize, Error> {
        Ok(match self {
            Packet::Connect(c) => c.body_len(),
            Packet::ConnAck(c) => c.body_len(version),
            Packet::Publish(p) => p.body_len(version),
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => a.body_len(version),
            Packet::Subscribe(s) => s.body_len(version),
            Packet::SubAck(s) => s.body_len(version),
            Packet::Unsubscribe(u) => u.body_len(version),
            Packet::UnsubAck(u) => u.body_len(version),
            Packet::PingReq | Packet::PingResp => 0,
            Packet::Disconnect(d) => d.body_len(version),
            Packet::Auth(a) => {
                if version == Version::V311 {
                    return Err(Error::protocol(msg::NOT_IN_V311));
                }
                a.body_len()
            }
        })
    }

    /// Bytes this packet takes on the wire in `version` (to compare with a peer's Maximum
    /// Packet Size before sending).
    pub fn encoded_len(&self, version: Version) -> Result<usize, Error> {
        let body = self.body_len(version)?;
        let body32 = u32::try_from(body)
            .ok()
            .filter(|n| *n <= Limits::MAX_REMAINING_LENGTH)
            .ok_or(Error::too_large(msg::PACKET_TOO_LARGE))?;
        Ok(1 + varint_len(body32) + body)
    }

    /// Appends the packet, encoded for `version` (CONNECT carries its own), to `out`.
    /// MQTT 5.0 fields are left out for 3.1.1 (properties, reason codes of acknowledgements);
    /// AUTH has no 3.1.1 form. Errors: a field over its wire bound, a packet over 256 MB; on
    /// error nothing is appended.
    pub fn encode(&self, version: Version, out: &mut BytesMut) -> Result<(), Error> {
        let total = self.encoded_len(version)?;
        let body = self.body_len(version)?;
        let mark = out.len();
        out.reserve(total);
        let written = self.write(version, body, out);
        if written.is_err() {
            out.truncate(mark);
        }
        written
    }

    fn write(&self, version: Version, body: usize, out: &mut BytesMut) -> Result<(), Error> {
        out.put_u8(self.first_byte());
        put_varint(out, u32::try_from(body).map_err(|_| Error::too_large(msg::PACKET_TOO_LARGE))?);
        let start = out.len();
        match self {
            Packet::Connect(c) => c.write_body(out)?,
            Packet::ConnAck(c) => c.write_body(version, out)?,
            Packet::Publish(p) => p.write_body(version, out)?,
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => a.write_body(version, out)?,
            Packet::Subscribe(s) => s.write_body(version, out)?,
            Packet::SubAck(s) => s.write_body(version, out)?,
            Packet::Unsubscribe(u) => u.write_body(version, out)?,
            Packet::UnsubAck(u) => u.write_body(version, out)?,
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(d) => d.write_body(version, out)?,
            Packet::Auth(a) => a.write_body(out)?,
        }
        if out.len() - start != body {
            return Err(Error::new(ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR, msg::ENCODE_MISMATCH));
        }
        Ok(())
    }

    /// [`Self::encode`] into a new buffer.
    pub fn to_bytes(&self, version: Version) -> Result<bytes::Bytes, Error> {
        let mut out = BytesMut::new();
        self.encode(version, &mut out)?;
        Ok(out.freeze())
    }
}

/// A packet identifier that must not be 0 (2.2.1).
pub(crate) fn packet_id(r: &mut Reader) -> Result<u16, Error> {
    match r.u16()? {
        0 => Err(Error::protocol(msg::PACKET_ID_ZERO)),
        id => Ok(id),
    }
}

/// Nothing may follow the last field.
pub(crate) fn end(r: &Reader) -> Result<(), Error> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(Error::malformed(msg::TRAILING_BYTES))
    }
}

/// A reason code from `allowed` (a Malformed Packet otherwise).
pub(crate) fn reason(r: &mut Reader, allowed: &[u8]) -> Result<ReasonCode, Error> {
    let c = r.u8()?;
    if allowed.contains(&c) {
        Ok(ReasonCode(c))
    } else {
        Err(Error::malformed(msg::BAD_REASON_CODE))
    }
}
