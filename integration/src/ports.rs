//! Loopback TCP ports: the one allocator every piece of the harness takes its ports from
//! (servers, Envoys, agents, relays: [`free_port`], [`bind_free`]).
//!
//! A port handed out here is
//! * **never handed out twice** in this process (a set of every port handed out);
//! * **claimed across processes**: an exclusive `flock` on `<tmp>/geomesh-ports/<port>.lock`,
//!   held until this process exits, so parallel test binaries, other builders' test runs and
//!   the demo never get the same port while this process lives;
//! * **outside the kernel's ephemeral range** (`/proc/sys/net/ipv4/ip_local_port_range`,
//!   usually 32768-60999): no outgoing connection of any process and no `bind(0)` can take it
//!   between the moment it is handed out and the moment its server binds it (nor while a
//!   stopped server is down before its restart on the same port). The range used is
//!   20000 up to the ephemeral range, above the examples' fixed ports (17xxx-19xxx);
//! * **free when handed out**: a test bind on 127.0.0.1 succeeds (something else, not run by a
//!   harness, may listen there).
//!
//! When that range is too small (an unusual `ip_local_port_range`), ports come from `bind(0)`
//! as a fallback, still claimed and never handed out twice.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// Lowest port handed out (the examples use fixed ports below it).
pub const FIRST_PORT: u16 = 20_000;
/// Fewest ports the range must have, else the `bind(0)` fallback is used.
const MIN_RANGE: u32 = 1_000;

struct Allocator {
    handed_out: HashSet<u16>,
    /// Open lock files (the claims), kept until the process exits.
    claims: Vec<File>,
    range: Option<(u16, u16)>,
    next: u32,
    lock_dir: PathBuf,
}

static ALLOCATOR: Mutex<Option<Allocator>> = Mutex::new(None);

/// The kernel's ephemeral range (low, high).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().filter_map(|v| v.parse::<u16>().ok());
            Some((it.next()?, it.next()?))
        })
        .unwrap_or((32_768, 60_999))
}

/// The range ports are taken from: [`FIRST_PORT`] up to the ephemeral range, or above it.
fn port_range() -> Option<(u16, u16)> {
    let (lo, hi) = ephemeral_range();
    if u32::from(lo) > u32::from(FIRST_PORT) + MIN_RANGE {
        return Some((FIRST_PORT, lo - 1));
    }
    if hi < u16::MAX && u32::from(u16::MAX - hi) > MIN_RANGE {
        return Some((hi + 1, u16::MAX));
    }
    None
}

impl Allocator {
    fn new() -> Allocator {
        let lock_dir = std::env::temp_dir().join("geomesh-ports");
        let _ = std::fs::create_dir_all(&lock_dir);
        // Start somewhere different in each process: fewer lock files to skip.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ std::process::id().wrapping_mul(2_654_435_761);
        Allocator {
            handed_out: HashSet::new(),
            claims: Vec::new(),
            range: port_range(),
            next: seed,
            lock_dir,
        }
    }

    /// Claims `port` across processes: `Some(lock file)` when no other process holds it.
    fn claim(&self, port: u16) -> Option<File> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.lock_dir.join(format!("{port}.lock")))
            .ok()?;
        // SAFETY: flock on a file descriptor this function owns; no memory is involved.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        (r == 0).then_some(f)
    }

    fn take(&mut self, port: u16) -> bool {
        if port == 0 || self.handed_out.contains(&port) {
            return false;
        }
        let Some(claim) = self.claim(port) else {
            return false;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            return false; // dropping the file releases the claim
        }
        self.handed_out.insert(port);
        self.claims.push(claim);
        true
    }

    fn allocate(&mut self) -> Result<u16> {
        match self.range {
            Some((lo, hi)) => {
                let len = u32::from(hi - lo) + 1;
                for _ in 0..len {
                    let port = lo + u16::try_from(self.next % len).unwrap_or(0);
                    self.next = self.next.wrapping_add(1);
                    if self.take(port) {
                        return Ok(port);
                    }
                }
                bail!("no free loopback port in {lo}-{hi}")
            }
            None => {
                for _ in 0..64 {
                    let l =
                        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
                    let port = l.local_addr()?.port();
                    drop(l);
                    if self.take(port) {
                        return Ok(port);
                    }
                }
                bail!("no free loopback port after 64 tries")
            }
        }
    }
}

/// A free TCP port on 127.0.0.1, never handed out before by this process nor claimed by another
/// one (see the module documentation).
pub fn free_port() -> Result<u16> {
    let mut guard = ALLOCATOR.lock().unwrap_or_else(|e| e.into_inner());
    guard.get_or_insert_with(Allocator::new).allocate()
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    (0..n).map(|_| free_port()).collect()
}

/// A listener bound now on a port from [`free_port`] (for pieces that listen themselves, such
/// as [`crate::Relay`]); a port something else grabbed meanwhile is skipped.
pub fn bind_free() -> Result<TcpListener> {
    let mut last = None;
    for _ in 0..16 {
        let port = free_port()?;
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .map(anyhow::Error::from)
        .unwrap_or_else(|| anyhow::anyhow!("no port")))
    .context("bind a free loopback port")
}

/// Whether this process handed out `port`.
pub fn handed_out(port: u16) -> bool {
    let guard = ALLOCATOR.lock().unwrap_or_else(|e| e.into_inner());
    guard.as_ref().is_some_and(|a| a.handed_out.contains(&port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_claimed_and_outside_the_ephemeral_range() {
        let (lo, hi) = ephemeral_range();
        let ports = free_ports(50).unwrap();
        let set: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(set.len(), ports.len(), "{ports:?}");
        let l = bind_free().unwrap();
        let relay_port = l.local_addr().unwrap().port();
        assert!(!set.contains(&relay_port) && handed_out(relay_port));
        for p in ports.iter().chain([&relay_port]) {
            if port_range().is_some() {
                assert!(
                    *p >= FIRST_PORT && !(lo..=hi).contains(p),
                    "{p} in the ephemeral range {lo}-{hi}"
                );
            }
            // Claimed: another open file description cannot lock it.
            let a = ALLOCATOR.lock().unwrap();
            assert!(a.as_ref().unwrap().claim(*p).is_none(), "{p} not claimed");
        }
        // A port something outside the allocator listens on is never handed out.
        let mut b = Allocator::new();
        if let Some((lo, hi)) = b.range {
            // (Away from the top of the range, which the other test uses.)
            let (listener, port) = (lo..=hi)
                .rev()
                .skip(500)
                .filter(|p| !handed_out(*p) && b.claim(*p).is_some())
                .find_map(|p| {
                    TcpListener::bind((Ipv4Addr::LOCALHOST, p))
                        .ok()
                        .map(|l| (l, p))
                })
                .unwrap();
            assert!(
                !b.take(port),
                "{port} handed out while something listens on it"
            );
            drop(listener);
            assert!(b.take(port), "{port} free again");
        }
    }

    #[test]
    fn a_port_claimed_by_another_process_is_skipped() {
        // Another process (flock(1)) holds the claim of a port: this process must not take it.
        let a = Allocator::new();
        let Some((lo, hi)) = a.range else { return };
        let port = (lo..=hi)
            .rev()
            .find(|p| !handed_out(*p) && a.claim(*p).is_some())
            .unwrap();
        let lock = a.lock_dir.join(format!("{port}.lock"));
        let mut child = std::process::Command::new("flock")
            .arg(&lock)
            .args(["sleep", "30"])
            .spawn()
            .unwrap();
        let held = crate::process::wait_for(
            std::time::Duration::from_secs(10),
            "flock holds the claim",
            || Ok(a.claim(port).is_none()),
        );
        let mut b = Allocator::new();
        let took = held.is_ok() && b.take(port);
        let _ = child.kill();
        let _ = child.wait();
        held.unwrap();
        assert!(
            !took,
            "port {port} taken although another process claimed it"
        );
    }
}
