//! A raw RESP client for tests: commands out, decoded replies in, nothing else on the wire (no
//! `HELLO`, no `CLIENT SETINFO`: a client library's handshake makes a connection stateful for
//! geomesh, which then gives it dedicated backend connections).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use geomesh_redis::{BytesMut, Frame, Limits, ReplyDecoder};

/// See the module documentation. Panics on I/O errors (a test helper).
pub struct RespClient {
    pub s: TcpStream,
    dec: ReplyDecoder,
    buf: BytesMut,
}

impl RespClient {
    pub fn connect(port: u16) -> RespClient {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_nodelay(true).unwrap();
        RespClient { s, dec: ReplyDecoder::new(Limits::default()), buf: BytesMut::new() }
    }

    /// Sends the commands, pipelined.
    pub fn send(&mut self, cmds: &[&[&str]]) {
        let mut out = Vec::new();
        for args in cmds {
            out.extend(format!("*{}\r\n", args.len()).bytes());
            for a in *args {
                out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
            }
        }
        self.s.write_all(&out).unwrap();
    }

    /// The next `n` replies.
    pub fn read(&mut self, n: usize) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            while out.len() < n {
                match self.dec.decode(&mut self.buf).unwrap() {
                    Some(r) => out.push(r.to_frame()),
                    None => break,
                }
            }
            if out.len() >= n {
                return out;
            }
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("EOF after {} of {n} replies: {out:?}", out.len()),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) => panic!("read after {} of {n} replies: {e}", out.len()),
            }
        }
    }

    /// One command, one reply.
    pub fn call(&mut self, args: &[&str]) -> Frame {
        self.send(&[args]);
        self.read(1).remove(0)
    }
}
