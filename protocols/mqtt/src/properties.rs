//! MQTT 5.0 properties (2.2.2): every property of the specification, typed, with the packets
//! each may appear in. Strings and binary values share the packet's buffer.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{msg, Error};
use crate::limits::Limits;
use crate::reason::ReasonCode;
use crate::wire::{binary_len, put_binary, put_varint, varint_len, Reader};

/// Property identifiers (2.2.2.2).
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Where a properties section sits: decides which identifiers are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Connect,
    ConnAck,
    Publish,
    Will,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

fn bits(ids: &[u8]) -> u64 {
    ids.iter().fold(0u64, |m, i| m | (1u64 << i))
}

impl Context {
    /// The identifiers allowed here (table 2-4 of MQTT 5.0).
    fn allowed(self) -> u64 {
        use id::*;
        const MESSAGE: &[u8] = &[
            PAYLOAD_FORMAT_INDICATOR,
            MESSAGE_EXPIRY_INTERVAL,
            CONTENT_TYPE,
            RESPONSE_TOPIC,
            CORRELATION_DATA,
            USER_PROPERTY,
        ];
        match self {
            Context::Connect => bits(&[
                SESSION_EXPIRY_INTERVAL,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                REQUEST_PROBLEM_INFORMATION,
                REQUEST_RESPONSE_INFORMATION,
                RECEIVE_MAXIMUM,
                TOPIC_ALIAS_MAXIMUM,
                USER_PROPERTY,
                MAXIMUM_PACKET_SIZE,
            ]),
            Context::ConnAck => bits(&[
                SESSION_EXPIRY_INTERVAL,
                ASSIGNED_CLIENT_IDENTIFIER,
                SERVER_KEEP_ALIVE,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                RESPONSE_INFORMATION,
                SERVER_REFERENCE,
                REASON_STRING,
                RECEIVE_MAXIMUM,
                TOPIC_ALIAS_MAXIMUM,
                MAXIMUM_QOS,
                RETAIN_AVAILABLE,
                USER_PROPERTY,
                MAXIMUM_PACKET_SIZE,
                WILDCARD_SUBSCRIPTION_AVAILABLE,
                SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                SHARED_SUBSCRIPTION_AVAILABLE,
            ]),
            Context::Publish => bits(MESSAGE) | bits(&[SUBSCRIPTION_IDENTIFIER, TOPIC_ALIAS]),
            Context::Will => bits(MESSAGE) | bits(&[WILL_DELAY_INTERVAL]),
            Context::Ack | Context::SubAck | Context::UnsubAck => bits(&[REASON_STRING, USER_PROPERTY]),
            Context::Subscribe => bits(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]),
            Context::Unsubscribe => bits(&[USER_PROPERTY]),
            Context::Disconnect => bits(&[SESSION_EXPIRY_INTERVAL, SERVER_REFERENCE, REASON_STRING, USER_PROPERTY]),
            Context::Auth => bits(&[AUTHENTICATION_METHOD, AUTHENTICATION_DATA, REASON_STRING, USER_PROPERTY]),
        }
    }
}

/// The properties of one packet (or of a will). `None` / empty = absent. Strings are valid
/// UTF-8 (checked when decoded); the setter is trusted when encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<Bytes>,
    pub response_topic: Option<Bytes>,
    pub correlation_data: Option<Bytes>,
    /// Several in a PUBLISH from a server (one per matching subscription), one in SUBSCRIBE.
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<Bytes>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<Bytes>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<u8>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<u8>,
    pub response_information: Option<Bytes>,
    pub server_reference: Option<Bytes>,
    pub reason_string: Option<Bytes>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    /// In order (MQTT requires the order to be kept); names may repeat.
    pub user_properties: Vec<(Bytes, Bytes)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifier_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
}

fn once<T>(slot: &mut Option<T>, value: T) -> Result<(), Error> {
    if slot.is_some() {
        return Err(Error::protocol(msg::DUPLICATE_PROPERTY));
    }
    *slot = Some(value);
    Ok(())
}

/// A byte property that must be 0 or 1 (a Protocol Error otherwise).
fn flag(r: &mut Reader) -> Result<u8, Error> {
    match r.u8()? {
        v @ (0 | 1) => Ok(v),
        _ => Err(Error::protocol(msg::PROPERTY_VALUE)),
    }
}

fn nonzero_u16(r: &mut Reader) -> Result<u16, Error> {
    match r.u16()? {
        0 => Err(Error::protocol(msg::PROPERTY_VALUE)),
        v => Ok(v),
    }
}

impl Properties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        // Checked for every acknowledgement written: no default value built to compare with.
        let Properties {
            payload_format_indicator,
            message_expiry_interval,
            content_type,
            response_topic,
            correlation_data,
            subscription_identifiers,
            session_expiry_interval,
            assigned_client_identifier,
            server_keep_alive,
            authentication_method,
            authentication_data,
            request_problem_information,
            will_delay_interval,
            request_response_information,
            response_information,
            server_reference,
            reason_string,
            receive_maximum,
            topic_alias_maximum,
            topic_alias,
            maximum_qos,
            retain_available,
            user_properties,
            maximum_packet_size,
            wildcard_subscription_available,
            subscription_identifier_available,
            shared_subscription_available,
        } = self;
        payload_format_indicator.is_none()
            && message_expiry_interval.is_none()
            && content_type.is_none()
            && response_topic.is_none()
            && correlation_data.is_none()
            && subscription_identifiers.is_empty()
            && session_expiry_interval.is_none()
            && assigned_client_identifier.is_none()
            && server_keep_alive.is_none()
            && authentication_method.is_none()
            && authentication_data.is_none()
            && request_problem_information.is_none()
            && will_delay_interval.is_none()
            && request_response_information.is_none()
            && response_information.is_none()
            && server_reference.is_none()
            && reason_string.is_none()
            && receive_maximum.is_none()
            && topic_alias_maximum.is_none()
            && topic_alias.is_none()
            && maximum_qos.is_none()
            && retain_available.is_none()
            && user_properties.is_empty()
            && maximum_packet_size.is_none()
            && wildcard_subscription_available.is_none()
            && subscription_identifier_available.is_none()
            && shared_subscription_available.is_none()
    }

    /// Reads a properties section (its length, then the properties) from `r`.
    pub(crate) fn decode(r: &mut Reader, ctx: Context, limits: &Limits) -> Result<Self, Error> {
        let mut p = Properties::default();
        p.decode_into(r, ctx, limits)?;
        Ok(p)
    }

    /// As [`Properties::decode`], into the boxed properties of a packet (decoded in place: the
    /// struct is large and a PUBLISH or an acknowledgement carries it on every packet).
    pub(crate) fn decode_boxed(r: &mut Reader, ctx: Context, limits: &Limits) -> Result<Box<Self>, Error> {
        let mut p = Box::<Properties>::default();
        p.decode_into(r, ctx, limits)?;
        Ok(p)
    }

    /// Reads a properties section into `self` (which holds none yet).
    fn decode_into(&mut self, r: &mut Reader, ctx: Context, limits: &Limits) -> Result<(), Error> {
        let p = self;
        let len = r.varint()?;
        if len > limits.max_properties_len {
            return Err(Error::too_large(msg::PROPERTIES_TOO_LONG));
        }
        let len = usize::try_from(len).map_err(|_| Error::too_large(msg::PROPERTIES_TOO_LONG))?;
        let mut r = Reader::new(r.take(len)?);
        let allowed = ctx.allowed();
        while !r.is_empty() {
            // A variable byte integer on the wire; every defined identifier fits its first byte,
            // so a continuation bit (a longer or non-minimal encoding) names no property.
            let ident = r.u8()?;
            if ident >= 64 || allowed & (1u64 << ident) == 0 {
                return Err(Error::malformed(msg::UNKNOWN_PROPERTY));
            }
            match ident {
                id::PAYLOAD_FORMAT_INDICATOR => once(&mut p.payload_format_indicator, flag(&mut r)?)?,
                id::MESSAGE_EXPIRY_INTERVAL => once(&mut p.message_expiry_interval, r.u32()?)?,
                id::CONTENT_TYPE => once(&mut p.content_type, r.string()?)?,
                id::RESPONSE_TOPIC => once(&mut p.response_topic, r.string()?)?,
                id::CORRELATION_DATA => once(&mut p.correlation_data, r.binary()?)?,
                id::SUBSCRIPTION_IDENTIFIER => {
                    let v = r.varint()?;
                    if v == 0 || (ctx == Context::Subscribe && !p.subscription_identifiers.is_empty()) {
                        return Err(Error::protocol(if v == 0 {
                            msg::PROPERTY_VALUE
                        } else {
                            msg::DUPLICATE_PROPERTY
                        }));
                    }
                    p.subscription_identifiers.push(v);
                }
                id::SESSION_EXPIRY_INTERVAL => once(&mut p.session_expiry_interval, r.u32()?)?,
                id::ASSIGNED_CLIENT_IDENTIFIER => once(&mut p.assigned_client_identifier, r.string()?)?,
                id::SERVER_KEEP_ALIVE => once(&mut p.server_keep_alive, r.u16()?)?,
                id::AUTHENTICATION_METHOD => once(&mut p.authentication_method, r.string()?)?,
                id::AUTHENTICATION_DATA => once(&mut p.authentication_data, r.binary()?)?,
                id::REQUEST_PROBLEM_INFORMATION => once(&mut p.request_problem_information, flag(&mut r)?)?,
                id::WILL_DELAY_INTERVAL => once(&mut p.will_delay_interval, r.u32()?)?,
                id::REQUEST_RESPONSE_INFORMATION => once(&mut p.request_response_information, flag(&mut r)?)?,
                id::RESPONSE_INFORMATION => once(&mut p.response_information, r.string()?)?,
                id::SERVER_REFERENCE => once(&mut p.server_reference, r.string()?)?,
                id::REASON_STRING => once(&mut p.reason_string, r.string()?)?,
                id::RECEIVE_MAXIMUM => once(&mut p.receive_maximum, nonzero_u16(&mut r)?)?,
                id::TOPIC_ALIAS_MAXIMUM => once(&mut p.topic_alias_maximum, r.u16()?)?,
                id::TOPIC_ALIAS => {
                    let v = r.u16()?;
                    if v == 0 {
                        return Err(Error::new(ReasonCode::TOPIC_ALIAS_INVALID, msg::TOPIC_ALIAS_ZERO));
                    }
                    once(&mut p.topic_alias, v)?
                }
                id::MAXIMUM_QOS => once(&mut p.maximum_qos, flag(&mut r)?)?,
                id::RETAIN_AVAILABLE => once(&mut p.retain_available, flag(&mut r)?)?,
                id::USER_PROPERTY => {
                    if p.user_properties.len() >= usize::from(limits.max_user_properties) {
                        return Err(Error::too_large(msg::TOO_MANY_USER_PROPERTIES));
                    }
                    let k = r.string()?;
                    let v = r.string()?;
                    p.user_properties.push((k, v));
                }
                id::MAXIMUM_PACKET_SIZE => match r.u32()? {
                    0 => return Err(Error::protocol(msg::PROPERTY_VALUE)),
                    v => once(&mut p.maximum_packet_size, v)?,
                },
                id::WILDCARD_SUBSCRIPTION_AVAILABLE => once(&mut p.wildcard_subscription_available, flag(&mut r)?)?,
                id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                    once(&mut p.subscription_identifier_available, flag(&mut r)?)?
                }
                id::SHARED_SUBSCRIPTION_AVAILABLE => once(&mut p.shared_subscription_available, flag(&mut r)?)?,
                _ => return Err(Error::malformed(msg::UNKNOWN_PROPERTY)),
            }
        }
        Ok(())
    }

    /// Bytes of the properties themselves (without the length in front).
    pub(crate) fn content_len(&self) -> usize {
        let b = |v: &Option<Bytes>| v.as_ref().map_or(0, |s| 1 + binary_len(s));
        let n = |v: Option<usize>| v.map_or(0, |x| 1 + x);
        n(self.payload_format_indicator.map(|_| 1))
            + n(self.message_expiry_interval.map(|_| 4))
            + b(&self.content_type)
            + b(&self.response_topic)
            + b(&self.correlation_data)
            + self.subscription_identifiers.iter().map(|v| 1 + varint_len(*v)).sum::<usize>()
            + n(self.session_expiry_interval.map(|_| 4))
            + b(&self.assigned_client_identifier)
            + n(self.server_keep_alive.map(|_| 2))
            + b(&self.authentication_method)
            + b(&self.authentication_data)
            + n(self.request_problem_information.map(|_| 1))
            + n(self.will_delay_interval.map(|_| 4))
            + n(self.request_response_information.map(|_| 1))
            + b(&self.response_information)
            + b(&self.server_reference)
            + b(&self.reason_string)
            + n(self.receive_maximum.map(|_| 2))
            + n(self.topic_alias_maximum.map(|_| 2))
            + n(self.topic_alias.map(|_| 2))
            + n(self.maximum_qos.map(|_| 1))
            + n(self.retain_available.map(|_| 1))
            + self.user_properties.iter().map(|(k, v)| 1 + binary_len(k) + binary_len(v)).sum::<usize>()
            + n(self.maximum_packet_size.map(|_| 4))
            + n(self.wildcard_subscription_available.map(|_| 1))
            + n(self.subscription_identifier_available.map(|_| 1))
            + n(self.shared_subscription_available.map(|_| 1))
    }

    /// Bytes of the section on the wire: length, then properties.
    pub(crate) fn wire_len(&self) -> usize {
        let n = self.content_len();
        varint_len(u32::try_from(n).unwrap_or(u32::MAX)) + n
    }

    /// Writes the section (length, then the properties in identifier order; user properties
    /// in their own order).
    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), Error> {
        let len = u32::try_from(self.content_len())
            .ok()
            .filter(|n| *n <= Limits::MAX_REMAINING_LENGTH)
            .ok_or(Error::too_large(msg::PROPERTIES_TOO_LONG))?;
        put_varint(out, len);
        let byte = |out: &mut BytesMut, ident: u8, v: Option<u8>| {
            if let Some(v) = v {
                out.put_u8(ident);
                out.put_u8(v);
            }
        };
        let two = |out: &mut BytesMut, ident: u8, v: Option<u16>| {
            if let Some(v) = v {
                out.put_u8(ident);
                out.put_u16(v);
            }
        };
        let four = |out: &mut BytesMut, ident: u8, v: Option<u32>| {
            if let Some(v) = v {
                out.put_u8(ident);
                out.put_u32(v);
            }
        };
        let bin = |out: &mut BytesMut, ident: u8, v: &Option<Bytes>| -> Result<(), Error> {
            if let Some(v) = v {
                out.put_u8(ident);
                put_binary(out, v)?;
            }
            Ok(())
        };
        byte(out, id::PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        four(out, id::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        bin(out, id::CONTENT_TYPE, &self.content_type)?;
        bin(out, id::RESPONSE_TOPIC, &self.response_topic)?;
        bin(out, id::CORRELATION_DATA, &self.correlation_data)?;
        for v in &self.subscription_identifiers {
            out.put_u8(id::SUBSCRIPTION_IDENTIFIER);
            put_varint(out, *v);
        }
        four(out, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        bin(out, id::ASSIGNED_CLIENT_IDENTIFIER, &self.assigned_client_identifier)?;
        two(out, id::SERVER_KEEP_ALIVE, self.server_keep_alive);
        bin(out, id::AUTHENTICATION_METHOD, &self.authentication_method)?;
        bin(out, id::AUTHENTICATION_DATA, &self.authentication_data)?;
        byte(out, id::REQUEST_PROBLEM_INFORMATION, self.request_problem_information);
        four(out, id::WILL_DELAY_INTERVAL, self.will_delay_interval);
        byte(out, id::REQUEST_RESPONSE_INFORMATION, self.request_response_information);
        bin(out, id::RESPONSE_INFORMATION, &self.response_information)?;
        bin(out, id::SERVER_REFERENCE, &self.server_reference)?;
        bin(out, id::REASON_STRING, &self.reason_string)?;
        two(out, id::RECEIVE_MAXIMUM, self.receive_maximum);
        two(out, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        two(out, id::TOPIC_ALIAS, self.topic_alias);
        byte(out, id::MAXIMUM_QOS, self.maximum_qos);
        byte(out, id::RETAIN_AVAILABLE, self.retain_available);
        for (k, v) in &self.user_properties {
            out.put_u8(id::USER_PROPERTY);
            put_binary(out, k)?;
            put_binary(out, v)?;
        }
        four(out, id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        byte(out, id::WILDCARD_SUBSCRIPTION_AVAILABLE, self.wildcard_subscription_available);
        byte(out, id::SUBSCRIPTION_IDENTIFIER_AVAILABLE, self.subscription_identifier_available);
        byte(out, id::SHARED_SUBSCRIPTION_AVAILABLE, self.shared_subscription_available);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
