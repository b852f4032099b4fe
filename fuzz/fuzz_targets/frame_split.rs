//! GMB/1 framing on arbitrary bytes: `split_frame` and every payload parser must never panic,
//! must agree with each other, and whatever parses must encode back to the same bytes.
//!
//! Checked for every frame split off the input (then off the rest, as a reader would):
//! * `consumed == HEADER_LEN + payload.len()`, `payload.len() <= MAX_PAYLOAD`, and the header
//!   read by `Header::parse` says the same kind, channel and length;
//! * no prefix of a complete frame is a frame (`Ok(None)` at every cut tried);
//! * `HELLO`, `OPEN`, `OPEN_SHARED`, `UNSHARE`, `WAKE`, the `WAKE` reply and `CLOSED` payloads that parse re-encode to
//!   the frame's own bytes (when within the encoders' truncation limits);
//! * the encoders, fed strings cut from the input, produce frames the parsers read back
//!   (labels, targets and messages truncated on a UTF-8 boundary).
#![no_main]

use geomesh_frame::{
    encode_closed, encode_data, encode_error, encode_hello, encode_open, encode_open_shared, encode_unshare, encode_wake,
    encode_wake_reply, parse_wake_reply, split_frame, CloseCode, Closed, Header, Hello, Kind, Open, OpenShared, Wake,
    HEADER_LEN, MAX_PAYLOAD, VERSION,
};
use libfuzzer_sys::fuzz_target;

fn reencode(kind: Kind, chan: u16, payload: &[u8], frame: &[u8]) {
    let mut again = Vec::new();
    match kind {
        Kind::Hello => {
            if let Ok(h) = Hello::parse(payload) {
                if h.version == VERSION && h.label.len() <= 256 && chan == 0 {
                    encode_hello(&mut again, h.label);
                }
            }
        }
        Kind::Open => {
            if let Ok(o) = Open::parse(payload) {
                assert!(!o.target.is_empty());
                if o.target.len() <= 4096 {
                    encode_open(&mut again, chan, o.reply_timeout_ms, o.connect_timeout_ms, o.target);
                }
            }
        }
        Kind::Wake => {
            if let Ok(w) = Wake::parse(payload) {
                assert_eq!(payload.len(), 12);
                if chan == 0 {
                    encode_wake(&mut again, w.token, w.delay_ms);
                }
            }
        }
        Kind::WakeReply => {
            if let Ok(t) = parse_wake_reply(payload) {
                if chan == 0 {
                    encode_wake_reply(&mut again, t);
                }
            }
        }
        Kind::Closed => {
            if let Ok(c) = Closed::parse(payload) {
                let known = payload.first().is_some_and(|b| *b == c.code as u8);
                let utf8 = std::str::from_utf8(payload.get(1..).unwrap_or_default()).is_ok();
                if known && utf8 && c.message.len() <= 1024 {
                    encode_closed(&mut again, chan, c.code, c.message);
                }
            }
        }
        Kind::Data | Kind::BridgeData => {
            if !payload.is_empty() {
                encode_data(&mut again, kind, chan, payload);
            }
        }
        Kind::Error => {
            if let Ok(m) = std::str::from_utf8(payload) {
                if m.len() <= 1024 && chan == 0 {
                    encode_error(&mut again, m);
                }
            }
        }
        Kind::OpenShared => {
            if let Ok(o) = OpenShared::parse(payload) {
                let p = &o.open;
                if p.target.len() <= 4096 {
                    encode_open_shared(&mut again, chan, o.framing, p.reply_timeout_ms, p.connect_timeout_ms, p.target);
                }
            }
        }
        Kind::Unshare => {
            if payload.is_empty() {
                encode_unshare(&mut again, chan);
            }
        }
        Kind::Close => {}
    }
    if !again.is_empty() {
        assert_eq!(again, frame, "{kind:?} does not re-encode to itself");
    }
}

fn strings(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut b = Vec::new();
    encode_hello(&mut b, &text);
    let (f, n) = split_frame(&b).unwrap().unwrap();
    assert_eq!(n, b.len());
    let h = Hello::parse(f.payload).unwrap();
    assert!(text.starts_with(h.label) && h.label.len() <= 256);
    assert!(h.label.len() == text.len() || text.len() > 256);

    b.clear();
    if !text.is_empty() {
        encode_open(&mut b, 9, 1, 2, &text);
        let (f, _) = split_frame(&b).unwrap().unwrap();
        let o = Open::parse(f.payload).unwrap();
        assert!(text.starts_with(o.target) && o.target.len() <= 4096);
    }

    b.clear();
    let code = CloseCode::from_u8(data.first().copied().unwrap_or(0));
    encode_closed(&mut b, 3, code, &text);
    let (f, _) = split_frame(&b).unwrap().unwrap();
    let c = Closed::parse(f.payload).unwrap();
    assert_eq!(c.code, code);
    assert!(text.starts_with(c.message) && c.message.len() <= 1024);
}

fuzz_target!(|data: &[u8]| {
    for b in data.iter().take(16) {
        if let Some(k) = Kind::from_u8(*b) {
            assert_eq!(k as u8, *b);
            assert_eq!(k.from_bridge(), *b >= 0x80);
        }
        let _ = CloseCode::from_u8(*b).failure_kind();
    }
    let mut rest = data;
    let mut frames = 0;
    loop {
        let header = Header::parse(rest);
        match split_frame(rest) {
            Ok(Some((f, n))) => {
                let h = header.unwrap().unwrap();
                assert_eq!((h.kind, h.chan, h.len), (f.kind, f.chan, f.payload.len()));
                assert_eq!(n, HEADER_LEN + f.payload.len());
                assert!(f.payload.len() <= MAX_PAYLOAD);
                let frame = &rest[..n];
                for cut in [0, 1, HEADER_LEN - 1, HEADER_LEN, n / 2, n - 1] {
                    if cut < n {
                        assert_eq!(split_frame(&rest[..cut]), Ok(None), "a prefix of {cut} bytes parsed");
                    }
                }
                let _ = Hello::parse(f.payload);
                let _ = Open::parse(f.payload);
                let _ = Wake::parse(f.payload);
                let _ = parse_wake_reply(f.payload);
                let _ = Closed::parse(f.payload);
                reencode(f.kind, f.chan, f.payload, frame);
                rest = &rest[n..];
                frames += 1;
            }
            Ok(None) => {
                // Incomplete: the header, if readable, asks for more than there is.
                if let Ok(Some(h)) = header {
                    assert!(rest.len() < HEADER_LEN + h.len);
                } else {
                    assert!(rest.len() < HEADER_LEN);
                }
                break;
            }
            Err(e) => {
                assert!(header.is_err());
                let _ = e.to_string();
                break;
            }
        }
        if frames > 4096 {
            break;
        }
    }
    strings(data);
});
