//! DISCONNECT (3.14) and AUTH (3.15, MQTT 5.0 only).

use bytes::{BufMut, BytesMut};

use super::{end, reason, Version};
use crate::error::Error;
use crate::limits::Limits;
use crate::properties::{Context, Properties};
use crate::reason::{allowed, ReasonCode};
use crate::wire::Reader;

/// A DISCONNECT packet (no body in 3.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub reason: ReasonCode,
    pub properties: Box<Properties>,
}

/// An AUTH packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub reason: ReasonCode,
    pub properties: Box<Properties>,
}

/// Reason code then properties, both optional (absent = Success, none).
fn decode_tail(mut r: Reader, codes: &[u8], ctx: Context, limits: &Limits) -> Result<(ReasonCode, Properties), Error> {
    let mut out = (ReasonCode::SUCCESS, Properties::default());
    if !r.is_empty() {
        out.0 = reason(&mut r, codes)?;
        if !r.is_empty() {
            out.1 = Properties::decode(&mut r, ctx, limits)?;
        }
    }
    end(&r)?;
    Ok(out)
}

fn tail_len(reason: ReasonCode, properties: &Properties) -> usize {
    if !properties.is_empty() {
        1 + properties.wire_len()
    } else if reason != ReasonCode::SUCCESS {
        1
    } else {
        0
    }
}

fn write_tail(reason: ReasonCode, properties: &Properties, out: &mut BytesMut) -> Result<(), Error> {
    let len = tail_len(reason, properties);
    if len > 0 {
        out.put_u8(reason.0);
    }
    if len > 1 {
        properties.encode(out)?;
    }
    Ok(())
}

impl Disconnect {
    /// A normal disconnection.
    pub fn normal() -> Self {
        Self {
            reason: ReasonCode::NORMAL_DISCONNECTION,
            properties: Box::new(Properties::default()),
        }
    }

    pub(crate) fn decode(r: Reader, version: Version, limits: &Limits) -> Result<Self, Error> {
        match version {
            Version::V311 => {
                end(&r)?;
                Ok(Self::normal())
            }
            Version::V5 => {
                let (reason, properties) = decode_tail(r, allowed::DISCONNECT, Context::Disconnect, limits)?;
                Ok(Self { reason, properties: Box::new(properties) })
            }
        }
    }

    pub(crate) fn body_len(&self, version: Version) -> usize {
        match version {
            Version::V311 => 0,
            Version::V5 => tail_len(self.reason, &self.properties),
        }
    }

    pub(crate) fn write_body(&self, version: Version, out: &mut BytesMut) -> Result<(), Error> {
        match version {
            Version::V311 => Ok(()),
            Version::V5 => write_tail(self.reason, &self.properties, out),
        }
    }
}

impl Auth {
    pub(crate) fn decode(r: Reader, limits: &Limits) -> Result<Self, Error> {
        let (reason, properties) = decode_tail(r, allowed::AUTH, Context::Auth, limits)?;
        Ok(Self { reason, properties: Box::new(properties) })
    }

    pub(crate) fn body_len(&self) -> usize {
        tail_len(self.reason, &self.properties)
    }

    pub(crate) fn write_body(&self, out: &mut BytesMut) -> Result<(), Error> {
        write_tail(self.reason, &self.properties, out)
    }
}
