//! Request and response headers (v0-v2), and [`Request`]: one decoded request frame.

use bytes::Bytes;

use crate::apis::{lookup, ApiSpec};
use crate::error::DecodeError;
use crate::frame::with_size_prefix;
use crate::wire::{Reader, Writer};

/// A request header. `client_id` is never compact, even in header v2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<Bytes>,
    /// Header v2's tagged fields, raw (empty in v1).
    pub tagged: Bytes,
}

impl RequestHeader {
    /// Writes the header (v1, or v2 when `flexible`).
    pub fn write(&self, w: &mut Writer, flexible: bool) {
        w.i16(self.api_key);
        w.i16(self.api_version);
        w.i32(self.correlation_id);
        w.nullable_string(false, self.client_id.as_deref());
        w.tagged_fields(flexible, &self.tagged);
    }
}

/// Why a request frame cannot be carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Not even an API key, version and correlation id: nothing to answer to (close).
    Malformed(DecodeError),
    /// The proxy has no schema for this API key: answered with an error, see
    /// `errors::unsupported_response`.
    UnknownApi {
        api_key: i16,
        api_version: i16,
        correlation_id: i32,
    },
    /// A known API at a version the proxy does not decode (ApiVersions told the client which).
    UnsupportedVersion {
        spec: &'static ApiSpec,
        api_version: i16,
        correlation_id: i32,
    },
}

/// One request frame with its header decoded; the body is read by the message modules.
#[derive(Debug, Clone)]
pub struct Request {
    pub spec: &'static ApiSpec,
    pub header: RequestHeader,
    /// The frame without its size prefix.
    pub frame: Bytes,
    /// Offset of the body in `frame`.
    pub body_start: usize,
    /// The frame with its size prefix, when it was parsed from the wire ([`Request::parse_wire`]):
    /// forwarded without a copy.
    pub raw: Option<Bytes>,
}

impl Request {
    /// Decodes the header of a request frame (size prefix already removed).
    pub fn parse(frame: Bytes) -> Result<Request, RequestError> {
        let mut r = Reader::new(frame.clone());
        let api_key = r.i16("api_key").map_err(RequestError::Malformed)?;
        let api_version = r.i16("api_version").map_err(RequestError::Malformed)?;
        let correlation_id = r.i32("correlation_id").map_err(RequestError::Malformed)?;
        let Some(spec) = lookup(api_key) else {
            return Err(RequestError::UnknownApi {
                api_key,
                api_version,
                correlation_id,
            });
        };
        if !spec.supports(api_version) {
            return Err(RequestError::UnsupportedVersion {
                spec,
                api_version,
                correlation_id,
            });
        }
        let client_id = r
            .nullable_string(false, "client_id")
            .map_err(RequestError::Malformed)?;
        let tagged = r
            .tagged_fields(spec.request_header_version(api_version) >= 2)
            .map_err(RequestError::Malformed)?;
        Ok(Request {
            spec,
            header: RequestHeader {
                api_key,
                api_version,
                correlation_id,
                client_id,
                tagged,
            },
            body_start: r.position(),
            frame,
            raw: None,
        })
    }

    /// As [`Request::parse`], from the frame with its 4-byte size prefix (kept for
    /// [`Request::wire`]).
    pub fn parse_wire(raw: Bytes) -> Result<Request, RequestError> {
        let mut req = Request::parse(raw.slice(4.min(raw.len())..))?;
        req.raw = Some(raw);
        Ok(req)
    }

    pub fn version(&self) -> i16 {
        self.header.api_version
    }

    pub fn flexible(&self) -> bool {
        self.spec.is_flexible(self.header.api_version)
    }

    /// A reader positioned at the body.
    pub fn body(&self) -> Reader {
        Reader::new(self.frame.slice(self.body_start.min(self.frame.len())..))
    }

    /// The whole request as sent on the wire (size prefix included), for forwarding untouched.
    pub fn wire(&self) -> Bytes {
        match &self.raw {
            Some(raw) => raw.clone(),
            None => with_size_prefix(&self.frame),
        }
    }

    /// A request with this one's header and `body` (encoded by a message module), size
    /// prefix included: a part of a split request.
    pub fn with_body(&self, body: &[u8]) -> Bytes {
        let mut w = Writer::with_capacity(body.len() + 64);
        self.header.write(
            &mut w,
            self.spec.request_header_version(self.version()) >= 2,
        );
        w.raw(body);
        with_size_prefix(&w.buf)
    }
}

/// A response body with its header (v0: correlation id; v1: and an empty tagged-field
/// section) and size prefix.
pub fn response_frame(correlation_id: i32, header_version: i16, body: &[u8]) -> Bytes {
    let mut w = Writer::with_capacity(body.len() + 5);
    w.i32(correlation_id);
    w.tagged_fields(header_version >= 1, &[]);
    w.raw(body);
    with_size_prefix(&w.buf)
}

/// Splits a response frame (size prefix removed) into its correlation id and a reader at the
/// body, for a response of `spec` at `version` (the request's).
pub fn parse_response(
    frame: Bytes,
    spec: &ApiSpec,
    version: i16,
) -> Result<(i32, Reader), DecodeError> {
    let mut r = Reader::new(frame);
    let correlation_id = r.i32("correlation_id")?;
    r.tagged_fields(spec.response_header_version(version) >= 1)?;
    Ok((correlation_id, r))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::codes::api;

    #[test]
    fn header_v2_with_tagged_fields_round_trips() {
        // Produce v9 (flexible): client id "c", one tagged field (tag 3, 2 bytes).
        let mut f = vec![0, 0, 0, 9, 0, 0, 0, 42, 0, 1, b'c', 1, 3, 2, 0xaa, 0xbb];
        f.extend_from_slice(b"BODY");
        let req = Request::parse(Bytes::from(f.clone())).unwrap();
        assert_eq!(
            (req.spec.key, req.version(), req.header.correlation_id),
            (api::PRODUCE, 9, 42)
        );
        assert_eq!(req.header.client_id.as_deref(), Some(&b"c"[..]));
        assert_eq!(&req.header.tagged[..], &[1, 3, 2, 0xaa, 0xbb]);
        assert_eq!(&req.frame[req.body_start..], b"BODY");
        assert_eq!(&req.with_body(b"BODY")[4..], &f[..]);
        assert_eq!(&req.wire()[4..], &f[..]);
    }

    #[test]
    fn unknown_api_unsupported_version_and_malformed_are_told_apart() {
        let hdr = |key: i16, ver: i16| {
            let mut f = Vec::new();
            f.extend_from_slice(&key.to_be_bytes());
            f.extend_from_slice(&ver.to_be_bytes());
            f.extend_from_slice(&7i32.to_be_bytes());
            f.extend_from_slice(&(-1i16).to_be_bytes());
            Bytes::from(f)
        };
        assert!(matches!(
            Request::parse(hdr(71, 0)),
            Err(RequestError::UnknownApi {
                api_key: 71,
                correlation_id: 7,
                ..
            })
        ));
        assert!(matches!(
            Request::parse(hdr(api::FETCH, 16)),
            Err(RequestError::UnsupportedVersion {
                api_version: 16,
                ..
            })
        ));
        assert!(matches!(
            Request::parse(Bytes::from_static(&[0, 0, 0])),
            Err(RequestError::Malformed(_))
        ));
        // A client id longer than the frame.
        let mut f = hdr(api::METADATA, 1).to_vec();
        f.truncate(8);
        f.extend_from_slice(&[0, 50, b'x']);
        assert!(matches!(
            Request::parse(Bytes::from(f)),
            Err(RequestError::Malformed(_))
        ));
    }
}
