//! A user-space TCP relay for WAN emulation (this machine has no `tc netem`).
//!
//! `Relay::start(upstream_port)` listens on a free loopback port (from the harness's one
//! allocator, [`crate::ports`], like every other port of a test) and forwards every accepted
//! connection to the upstream. While running it can
//! * add a one-way delay per direction ([`Relay::set_delay`], [`Relay::set_delay_dir`]): each
//!   chunk is stamped when read and written once its delay has passed, so a pipelined stream
//!   sees latency, not a bandwidth cap (an RTT grows by the sum of both delays);
//! * cut the link ([`Relay::cut`]): a blackhole, as in a network partition. Nothing is read or
//!   written in either direction, new connections are accepted but not connected upstream;
//!   bytes wait in socket buffers. [`Relay::restore`] resumes everything where it stopped;
//! * drop every live connection ([`Relay::drop_connections`]), as when a link resets.
//!
//! It runs on its own thread with its own tokio runtime, so sync and async tests can use it
//! alike; dropping the `Relay` stops it and closes every connection.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Direction of traffic through a relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the connecting client to the upstream.
    Up,
    /// From the upstream back to the client.
    Down,
}

const CHUNK: usize = 64 * 1024;
/// Chunks in flight per direction before the reader stops reading (backpressure).
const IN_FLIGHT: usize = 1024;

struct Shared {
    upstream: SocketAddr,
    delay_up_us: AtomicU64,
    delay_down_us: AtomicU64,
    link_up: watch::Sender<bool>,
    conns: Mutex<Vec<AbortHandle>>,
    accepted: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

impl Shared {
    fn delay(&self, dir: Dir) -> Duration {
        let us = match dir {
            Dir::Up => self.delay_up_us.load(Ordering::Relaxed),
            Dir::Down => self.delay_down_us.load(Ordering::Relaxed),
        };
        Duration::from_micros(us)
    }

    async fn wait_link_up(&self) {
        let mut rx = self.link_up.subscribe();
        // Err only if the sender is gone, i.e. the relay is shutting down.
        let _ = rx.wait_for(|up| *up).await;
    }
}

/// A running relay; see the module docs.
pub struct Relay {
    port: u16,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Relays a free loopback port to 127.0.0.1:`upstream_port`.
    pub fn start(upstream_port: u16) -> Result<Relay> {
        Self::start_to(SocketAddr::from((Ipv4Addr::LOCALHOST, upstream_port)))
    }

    /// Relays a free loopback port to `upstream`.
    pub fn start_to(upstream: SocketAddr) -> Result<Relay> {
        let listener = crate::ports::bind_free().context("relay bind")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (link_up, _) = watch::channel(true);
        let shared = Arc::new(Shared {
            upstream,
            delay_up_us: AtomicU64::new(0),
            delay_down_us: AtomicU64::new(0),
            link_up,
            conns: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
        });
        let (tx, rx) = oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("relay runtime")?;
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("relay-{port}"))
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("[relay {port}] listener: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        _ = rx => {}
                        _ = accept_loop(listener, sh) => {}
                    }
                });
                // Dropping the runtime drops every connection task and closes their sockets.
            })
            .context("spawn relay thread")?;
        Ok(Relay {
            port,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Same one-way delay in both directions (RTT + 2 x `d`).
    pub fn set_delay(&self, d: Duration) {
        self.set_delay_dir(Dir::Up, d);
        self.set_delay_dir(Dir::Down, d);
    }

    /// One-way delay for one direction; applies to bytes read from now on.
    pub fn set_delay_dir(&self, dir: Dir, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        match dir {
            Dir::Up => self.shared.delay_up_us.store(us, Ordering::Relaxed),
            Dir::Down => self.shared.delay_down_us.store(us, Ordering::Relaxed),
        }
    }

    /// Partition: stop moving bytes and stop connecting upstream, until [`Relay::restore`].
    pub fn cut(&self) {
        self.shared.link_up.send_replace(false);
    }

    /// Heal the partition.
    pub fn restore(&self) {
        self.shared.link_up.send_replace(true);
    }

    pub fn is_cut(&self) -> bool {
        !*self.shared.link_up.borrow()
    }

    /// Closes every live connection (both sides); returns how many there were.
    pub fn drop_connections(&self) -> usize {
        let mut conns = self.shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        let live: Vec<AbortHandle> = conns.drain(..).filter(|h| !h.is_finished()).collect();
        for h in &live {
            h.abort();
        }
        live.len()
    }

    /// Connections currently open through the relay.
    pub fn active_connections(&self) -> usize {
        let mut conns = self.shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|h| !h.is_finished());
        conns.len()
    }

    /// Connections accepted since start.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Bytes forwarded in `dir` since start.
    pub fn bytes(&self, dir: Dir) -> u64 {
        match dir {
            Dir::Up => self.shared.bytes_up.load(Ordering::Relaxed),
            Dir::Down => self.shared.bytes_down.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let client = match listener.accept().await {
            Ok((c, _)) => c,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(connection(client, shared.clone()));
        let mut conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|h| !h.is_finished());
        conns.push(task.abort_handle());
    }
}

async fn connection(client: TcpStream, shared: Arc<Shared>) {
    shared.wait_link_up().await;
    let Ok(upstream) = TcpStream::connect(shared.upstream).await else {
        return; // dropping the client closes it, as a refused connection would
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let up = pipe(cr, uw, Dir::Up, shared.clone());
    let down = pipe(ur, cw, Dir::Down, shared);
    tokio::pin!(up, down);
    // A clean EOF half-closes one direction and lets the other finish; an error ends both.
    tokio::select! {
        r = &mut up => if r.is_ok() { let _ = down.await; },
        r = &mut down => if r.is_ok() { let _ = up.await; },
    }
}

async fn pipe<R, W>(mut r: R, mut w: W, dir: Dir, shared: Arc<Shared>) -> std::io::Result<()>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<(Instant, Option<Vec<u8>>)>(IN_FLIGHT);
    let sh = shared.clone();
    let reader = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            sh.wait_link_up().await;
            let n = r.read(&mut buf).await?;
            let due = Instant::now() + sh.delay(dir);
            let chunk = if n == 0 {
                None
            } else {
                Some(buf[..n].to_vec())
            };
            if tx.send((due, chunk)).await.is_err() || n == 0 {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            shared.wait_link_up().await;
            match chunk {
                Some(c) => {
                    w.write_all(&c).await?;
                    let counter = match dir {
                        Dir::Up => &shared.bytes_up,
                        Dir::Down => &shared.bytes_down,
                    };
                    counter.fetch_add(c.len() as u64, Ordering::Relaxed);
                }
                None => {
                    w.shutdown().await?;
                    return Ok(());
                }
            }
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::pin!(reader, writer);
    // The writer must drain what the reader already queued (delayed bytes, then the EOF); a
    // failed write (peer gone) ends the pipe at once even if the reader is idle.
    tokio::select! {
        r = &mut reader => match r {
            Ok(()) => writer.await,
            Err(e) => Err(e),
        },
        w = &mut writer => w,
    }
}
