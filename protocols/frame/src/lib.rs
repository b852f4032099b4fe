//! GMB/1, the framing between a geomesh filter and its local bridge (docs/bridge-protocol.md),
//! and [`Mux`], which drives a sans-IO [`Session`] over it.
//!
//! The codec half ([`Header`], the `encode_*` functions, the payload parsers) is shared by the
//! filters (inside Wasm) and the bridge (native). It reads lengths before it allocates, and
//! never panics on input.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod mux;

pub use mux::{Mux, MuxLimits, MuxOutput};

use std::fmt;

/// Bytes of a frame header.
pub const HEADER_LEN: usize = 7;
/// The largest payload of one frame; longer data is cut into several `DATA` frames.
pub const MAX_PAYLOAD: usize = 16 << 20;
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// The magic that opens a `HELLO` payload.
pub const MAGIC: &[u8; 3] = b"GMB";

/// Frame kinds. The high bit marks frames from the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Hello = 0x01,
    Open = 0x02,
    Data = 0x03,
    Close = 0x04,
    Wake = 0x05,
    OpenShared = 0x06,
    Unshare = 0x07,
    BridgeData = 0x83,
    Closed = 0x84,
    WakeReply = 0x85,
    Error = 0x86,
}

impl Kind {
    /// Decodes a kind byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => Self::Hello,
            0x02 => Self::Open,
            0x03 => Self::Data,
            0x04 => Self::Close,
            0x05 => Self::Wake,
            0x06 => Self::OpenShared,
            0x07 => Self::Unshare,
            0x83 => Self::BridgeData,
            0x84 => Self::Closed,
            0x85 => Self::WakeReply,
            0x86 => Self::Error,
            _ => return None,
        })
    }

    /// True for frames the bridge sends.
    pub fn from_bridge(self) -> bool {
        (self as u8) & 0x80 != 0
    }
}

/// Why a channel closed (the payload of `CLOSED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CloseCode {
    Local = 0,
    Eof = 1,
    Refused = 2,
    ConnectTimeout = 3,
    Stalled = 4,
    UnknownTarget = 5,
    SiteUnreachable = 6,
    Io = 7,
    Overflow = 8,
}

impl CloseCode {
    /// Decodes a code byte; unknown codes read as `Io`.
    pub fn from_u8(b: u8) -> Self {
        match b {
            0 => Self::Local,
            1 => Self::Eof,
            2 => Self::Refused,
            3 => Self::ConnectTimeout,
            4 => Self::Stalled,
            5 => Self::UnknownTarget,
            6 => Self::SiteUnreachable,
            8 => Self::Overflow,
            _ => Self::Io,
        }
    }

    /// The session-level failure kind.
    pub fn failure_kind(self) -> geomesh_core::UpstreamFailureKind {
        use geomesh_core::UpstreamFailureKind as K;
        match self {
            Self::Local => K::Local,
            Self::Eof => K::Eof,
            Self::Refused => K::Refused,
            Self::ConnectTimeout => K::ConnectTimeout,
            Self::Stalled => K::Stalled,
            Self::UnknownTarget => K::UnknownTarget,
            Self::SiteUnreachable => K::SiteUnreachable,
            Self::Io => K::Io,
            Self::Overflow => K::Overflow,
        }
    }
}

/// A malformed frame stream. The connection cannot continue after one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    UnknownKind(u8),
    TooLong(usize),
    BadPayload(Kind, &'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKind(k) => write!(f, "unknown frame kind 0x{k:02x}"),
            Self::TooLong(n) => write!(f, "frame payload of {n} bytes is over the limit of {MAX_PAYLOAD}"),
            Self::BadPayload(k, why) => write!(f, "malformed {k:?} frame: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub chan: u16,
    pub len: usize,
}

impl Header {
    /// Reads a header from the start of `buf`. `Ok(None)`: fewer than [`HEADER_LEN`] bytes.
    pub fn parse(buf: &[u8]) -> Result<Option<Header>, FrameError> {
        let Some(&[l0, l1, l2, l3, k, c0, c1]) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLong(len));
        }
        let kind = Kind::from_u8(k).ok_or(FrameError::UnknownKind(k))?;
        let chan = u16::from_be_bytes([c0, c1]);
        Ok(Some(Header { kind, chan, len }))
    }

    /// Writes a header.
    pub fn write(out: &mut Vec<u8>, kind: Kind, chan: u16, len: usize) {
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.push(kind as u8);
        out.extend_from_slice(&chan.to_be_bytes());
    }
}

/// A complete frame, borrowed from the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    pub kind: Kind,
    pub chan: u16,
    pub payload: &'a [u8],
}

/// Splits the first complete frame off `buf`: `Ok(Some((frame, consumed)))`, or `Ok(None)` when
/// more bytes are needed.
pub fn split_frame(buf: &[u8]) -> Result<Option<(FrameRef<'_>, usize)>, FrameError> {
    let Some(h) = Header::parse(buf)? else {
        return Ok(None);
    };
    let end = HEADER_LEN + h.len;
    match buf.get(HEADER_LEN..end) {
        Some(payload) => Ok(Some((
            FrameRef {
                kind: h.kind,
                chan: h.chan,
                payload,
            },
            end,
        ))),
        None => Ok(None),
    }
}

fn u32_at(p: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(*p.get(at..)?.first_chunk::<4>()?))
}

fn u64_at(p: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(*p.get(at..)?.first_chunk::<8>()?))
}

/// `HELLO` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello<'a> {
    pub version: u8,
    pub label: &'a str,
}

impl<'a> Hello<'a> {
    pub fn parse(p: &'a [u8]) -> Result<Self, FrameError> {
        let bad = |why| FrameError::BadPayload(Kind::Hello, why);
        if p.get(..3) != Some(MAGIC.as_slice()) {
            return Err(bad("no GMB magic"));
        }
        let version = *p.get(3).ok_or(bad("no version"))?;
        let label = std::str::from_utf8(p.get(4..).unwrap_or_default()).map_err(|_| bad("label is not UTF-8"))?;
        Ok(Self { version, label })
    }
}

/// `OPEN` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open<'a> {
    pub reply_timeout_ms: u32,
    pub connect_timeout_ms: u32,
    pub target: &'a str,
}

impl<'a> Open<'a> {
    pub fn parse(p: &'a [u8]) -> Result<Self, FrameError> {
        let bad = |why| FrameError::BadPayload(Kind::Open, why);
        let reply_timeout_ms = u32_at(p, 0).ok_or(bad("short"))?;
        let connect_timeout_ms = u32_at(p, 4).ok_or(bad("short"))?;
        let target = std::str::from_utf8(p.get(8..).unwrap_or_default()).map_err(|_| bad("target is not UTF-8"))?;
        if target.is_empty() {
            return Err(bad("empty target"));
        }
        Ok(Self {
            reply_timeout_ms,
            connect_timeout_ms,
            target,
        })
    }
}

/// `OPEN_SHARED` payload: a framing byte, then an `OPEN` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenShared<'a> {
    pub framing: geomesh_core::Framing,
    pub open: Open<'a>,
}

impl<'a> OpenShared<'a> {
    pub fn parse(p: &'a [u8]) -> Result<Self, FrameError> {
        let (&f, rest) = p
            .split_first()
            .ok_or(FrameError::BadPayload(Kind::OpenShared, "short"))?;
        let framing = geomesh_core::Framing::from_u8(f)
            .ok_or(FrameError::BadPayload(Kind::OpenShared, "unknown framing"))?;
        let open = Open::parse(rest).map_err(|e| match e {
            FrameError::BadPayload(_, why) => FrameError::BadPayload(Kind::OpenShared, why),
            other => other,
        })?;
        Ok(Self { framing, open })
    }
}

/// `WAKE` payload (filter → bridge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wake {
    pub token: u64,
    pub delay_ms: u32,
}

impl Wake {
    pub fn parse(p: &[u8]) -> Result<Self, FrameError> {
        let bad = FrameError::BadPayload(Kind::Wake, "expected u64 token and u32 delay");
        if p.len() != 12 {
            return Err(bad);
        }
        Ok(Self {
            token: u64_at(p, 0).ok_or(bad.clone())?,
            delay_ms: u32_at(p, 8).ok_or(bad)?,
        })
    }
}

/// `WAKE` reply payload (bridge → filter): the token.
pub fn parse_wake_reply(p: &[u8]) -> Result<u64, FrameError> {
    if p.len() != 8 {
        return Err(FrameError::BadPayload(Kind::WakeReply, "expected a u64 token"));
    }
    u64_at(p, 0).ok_or(FrameError::BadPayload(Kind::WakeReply, "expected a u64 token"))
}

/// `CLOSED` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed<'a> {
    pub code: CloseCode,
    pub message: &'a str,
}

impl<'a> Closed<'a> {
    pub fn parse(p: &'a [u8]) -> Result<Self, FrameError> {
        let (&code, rest) = p
            .split_first()
            .ok_or(FrameError::BadPayload(Kind::Closed, "no code"))?;
        Ok(Self {
            code: CloseCode::from_u8(code),
            message: std::str::from_utf8(rest).unwrap_or("(message not UTF-8)"),
        })
    }
}

/// Appends `HELLO`.
pub fn encode_hello(out: &mut Vec<u8>, label: &str) {
    let label = truncate_utf8(label, 256);
    Header::write(out, Kind::Hello, 0, 4 + label.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(label.as_bytes());
}

/// Appends `OPEN`.
pub fn encode_open(out: &mut Vec<u8>, chan: u16, reply_timeout_ms: u32, connect_timeout_ms: u32, target: &str) {
    let target = truncate_utf8(target, 4096);
    Header::write(out, Kind::Open, chan, 8 + target.len());
    out.extend_from_slice(&reply_timeout_ms.to_be_bytes());
    out.extend_from_slice(&connect_timeout_ms.to_be_bytes());
    out.extend_from_slice(target.as_bytes());
}

/// Appends `OPEN_SHARED`: like `OPEN`, for a channel the bridge may carry on a shared,
/// pipelined backend connection, cut into requests and answers with `framing`.
pub fn encode_open_shared(
    out: &mut Vec<u8>,
    chan: u16,
    framing: geomesh_core::Framing,
    reply_timeout_ms: u32,
    connect_timeout_ms: u32,
    target: &str,
) {
    let target = truncate_utf8(target, 4096);
    Header::write(out, Kind::OpenShared, chan, 9 + target.len());
    out.push(framing as u8);
    out.extend_from_slice(&reply_timeout_ms.to_be_bytes());
    out.extend_from_slice(&connect_timeout_ms.to_be_bytes());
    out.extend_from_slice(target.as_bytes());
}

/// Appends `UNSHARE`: channel `chan` moves to a dedicated backend connection from here on.
pub fn encode_unshare(out: &mut Vec<u8>, chan: u16) {
    Header::write(out, Kind::Unshare, chan, 0);
}

/// Appends `DATA` frames (filter → bridge, or bridge → filter with `Kind::BridgeData`) carrying
/// `data`, cut at [`MAX_PAYLOAD`]. Empty data writes nothing.
pub fn encode_data(out: &mut Vec<u8>, kind: Kind, chan: u16, data: &[u8]) {
    for chunk in data.chunks(MAX_PAYLOAD) {
        Header::write(out, kind, chan, chunk.len());
        out.extend_from_slice(chunk);
    }
}

/// Appends `CLOSE`.
pub fn encode_close(out: &mut Vec<u8>, chan: u16) {
    Header::write(out, Kind::Close, chan, 0);
}

/// Appends `WAKE` (filter → bridge).
pub fn encode_wake(out: &mut Vec<u8>, token: u64, delay_ms: u32) {
    Header::write(out, Kind::Wake, 0, 12);
    out.extend_from_slice(&token.to_be_bytes());
    out.extend_from_slice(&delay_ms.to_be_bytes());
}

/// Appends `WAKE` (bridge → filter).
pub fn encode_wake_reply(out: &mut Vec<u8>, token: u64) {
    Header::write(out, Kind::WakeReply, 0, 8);
    out.extend_from_slice(&token.to_be_bytes());
}

/// Appends `CLOSED`.
pub fn encode_closed(out: &mut Vec<u8>, chan: u16, code: CloseCode, message: &str) {
    let message = truncate_utf8(message, 1024);
    Header::write(out, Kind::Closed, chan, 1 + message.len());
    out.push(code as u8);
    out.extend_from_slice(message.as_bytes());
}

/// Appends `ERROR`.
pub fn encode_error(out: &mut Vec<u8>, message: &str) {
    let message = truncate_utf8(message, 1024);
    Header::write(out, Kind::Error, 0, message.len());
    out.extend_from_slice(message.as_bytes());
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_every_kind() {
        let mut b = Vec::new();
        encode_hello(&mut b, "redis:6379");
        encode_open(&mut b, 7, 5000, 1000, "redis2-master");
        encode_data(&mut b, Kind::Data, 7, b"*1\r\n$4\r\nPING\r\n");
        encode_close(&mut b, 7);
        encode_wake(&mut b, 42, 250);
        encode_data(&mut b, Kind::BridgeData, 7, b"+PONG\r\n");
        encode_closed(&mut b, 7, CloseCode::Stalled, "no reply in 5000 ms");
        encode_wake_reply(&mut b, 42);
        encode_error(&mut b, "bad hello");
        encode_open_shared(&mut b, 9, geomesh_core::Framing::Resp, 0, 250, "r1");
        encode_unshare(&mut b, 9);
        let mut rest = &b[..];
        let mut frames = Vec::new();
        while let Some((f, n)) = split_frame(rest).unwrap() {
            frames.push(f);
            rest = &rest[n..];
        }
        assert!(rest.is_empty());
        let kinds: Vec<Kind> = frames.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Hello,
                Kind::Open,
                Kind::Data,
                Kind::Close,
                Kind::Wake,
                Kind::BridgeData,
                Kind::Closed,
                Kind::WakeReply,
                Kind::Error,
                Kind::OpenShared,
                Kind::Unshare
            ]
        );
        assert_eq!(
            OpenShared::parse(frames[9].payload).unwrap(),
            OpenShared {
                framing: geomesh_core::Framing::Resp,
                open: Open { reply_timeout_ms: 0, connect_timeout_ms: 250, target: "r1" }
            }
        );
        assert!(OpenShared::parse(b"\x09\0\0\0\0\0\0\0\0r").is_err());
        assert_eq!(Hello::parse(frames[0].payload).unwrap(), Hello { version: 1, label: "redis:6379" });
        assert_eq!(
            Open::parse(frames[1].payload).unwrap(),
            Open { reply_timeout_ms: 5000, connect_timeout_ms: 1000, target: "redis2-master" }
        );
        assert_eq!(frames[1].chan, 7);
        assert_eq!(Wake::parse(frames[4].payload).unwrap(), Wake { token: 42, delay_ms: 250 });
        assert_eq!(
            Closed::parse(frames[6].payload).unwrap(),
            Closed { code: CloseCode::Stalled, message: "no reply in 5000 ms" }
        );
        assert_eq!(parse_wake_reply(frames[7].payload).unwrap(), 42);
    }

    #[test]
    fn limits_and_garbage() {
        let mut h = Vec::new();
        Header::write(&mut h, Kind::Data, 1, MAX_PAYLOAD + 1);
        assert_eq!(Header::parse(&h), Err(FrameError::TooLong(MAX_PAYLOAD + 1)));
        assert_eq!(Header::parse(b"\0\0\0\0\x99\0\0"), Err(FrameError::UnknownKind(0x99)));
        assert_eq!(Header::parse(b"\0\0\0"), Ok(None));
        assert!(Hello::parse(b"RESP").is_err());
        assert!(Open::parse(b"\0\0\0\0\0\0\0\0").is_err());
        assert!(Wake::parse(b"\0").is_err());
    }

    #[test]
    fn big_data_is_chunked() {
        let data = vec![7u8; MAX_PAYLOAD * 2 + 3];
        let mut b = Vec::new();
        encode_data(&mut b, Kind::Data, 1, &data);
        let mut rest = &b[..];
        let mut total = 0;
        while let Some((f, n)) = split_frame(rest).unwrap() {
            total += f.payload.len();
            rest = &rest[n..];
        }
        assert_eq!(total, data.len());
    }

    proptest! {
        #[test]
        fn split_frame_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = split_frame(&bytes);
            let _ = Hello::parse(&bytes);
            let _ = Open::parse(&bytes);
            let _ = OpenShared::parse(&bytes);
            let _ = Closed::parse(&bytes);
            let _ = Wake::parse(&bytes);
        }
    }
}
