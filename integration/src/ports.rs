//! Free loopback TCP ports.
//!
//! The kernel picks an unused port (bind to port 0), the listener is closed and the number is
//! handed out. A port is never handed out twice by one process, so parallel tests in one binary
//! do not collide; between processes the kernel's own rotation of ephemeral ports makes a clash
//! unlikely, and a clash shows up as a clear "address in use" in the server's log.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    for _ in 0..64 {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        if set.insert(port) {
            return Ok(port);
        }
    }
    bail!("no free loopback port after 64 tries")
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    (0..n).map(|_| free_port()).collect()
}
