//! The in-process stream between one client connection's filter (on an Envoy worker thread)
//! and the bridge (on the module's runtime thread): what a Unix socket is between the Wasm
//! filter and an out-of-process bridge, without the socket.
//!
//! * Filter to bridge: GMB/1 frames go down an unbounded channel (the mux bounds what it sends:
//!   `MuxLimits::max_bridge_backlog`); [`BridgeEnd`] reads them as a byte stream.
//! * Bridge to filter: [`BridgeEnd`]'s writes append to an inbox and, when the inbox was empty,
//!   commit an event to the filter's Envoy scheduler; the filter drains the inbox on its worker
//!   thread ([`FilterEnd::take`]). The inbox is bounded ([`INBOX_LIMIT`]): above, the bridge's
//!   write waits until the filter has drained it (the client's own pace, as a socket's buffer
//!   would make it).
//! * End: the filter dropping its sender is the bridge's end of stream; the bridge shutting its
//!   write side is the filter's. The scheduler is deleted by the filter when Envoy destroys it,
//!   under the lock the bridge side commits under, so no commit reaches a deleted scheduler.
//!
//! Tests: `tests/stream.rs` (with a counting [`Wakeup`] in place of Envoy's scheduler).

use std::io;
use std::pin::Pin;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use crate::abi;

/// Bytes from the bridge the filter has not taken yet, beyond which the bridge waits.
pub const INBOX_LIMIT: usize = 8 << 20;
/// The scheduler event that says "the inbox has bytes (or the end)".
pub const EVENT_INBOX: u64 = 1;

/// How the bridge's side tells the filter's worker that the inbox changed. Dropped by the
/// filter's side when Envoy destroys the filter, under the lock that every `wake` holds.
pub trait Wakeup: Send {
    fn wake(&self);
}

/// Envoy's scheduler for one filter: `wake` commits [`EVENT_INBOX`]; dropping it deletes it.
pub struct Scheduler(abi::SchedulerPtr);
// SAFETY: the ABI allows commit from any thread; deletion (drop) is under the same mutex as
// every commit (`Shared::wakeup`).
unsafe impl Send for Scheduler {}

impl Scheduler {
    /// # Safety
    /// `ptr` comes from `scheduler_new` and is deleted by no one else.
    pub unsafe fn new(ptr: abi::SchedulerPtr) -> Option<Scheduler> {
        (!ptr.is_null()).then_some(Scheduler(ptr))
    }
}

impl Wakeup for Scheduler {
    fn wake(&self) {
        // SAFETY: live until dropped (see the type's documentation).
        unsafe { abi::envoy_dynamic_module_callback_network_filter_scheduler_commit(self.0, EVENT_INBOX) };
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // SAFETY: created by scheduler_new for this filter, deleted once.
        unsafe { abi::envoy_dynamic_module_callback_network_filter_scheduler_delete(self.0) };
    }
}

#[derive(Default)]
struct Inbox {
    bytes: Vec<u8>,
    eof: bool,
    /// An `EVENT_INBOX` is committed and not yet handled.
    committed: bool,
    /// The bridge's write waiting for room.
    writer: Option<Waker>,
}

struct Shared {
    inbox: Mutex<Inbox>,
    wakeup: Mutex<Option<Box<dyn Wakeup>>>,
    /// The filter left while this thread was inside `wake` (below): the waker drops the
    /// wakeup once `wake` returns.
    detached: AtomicBool,
}

thread_local! {
    /// This thread is inside a `Wakeup::wake` (holding `Shared::wakeup`). Envoy's scheduler
    /// commit can destroy the filter on the committing thread: it takes a strong reference to
    /// the filter, and if the worker dropped its own meanwhile, the commit's is the last. The
    /// filter's end then must not take the lock this thread holds.
    static IN_WAKE: Cell<bool> = const { Cell::new(false) };
}

impl Shared {
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        // A poisoned lock only means a panic elsewhere held it; the bytes are still consistent
        // (every critical section is a push or a take).
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the filter's worker that the inbox changed, once until it looks.
    fn notify(&self, inbox: &mut Inbox) {
        if inbox.committed {
            return;
        }
        inbox.committed = true;
        let mut slot = self.wakeup.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = slot.as_ref() {
            IN_WAKE.with(|f| f.set(true));
            w.wake();
            IN_WAKE.with(|f| f.set(false));
        }
        if self.detached.load(Ordering::Acquire) {
            drop(slot.take());
        }
    }
}

/// The filter's end (Envoy worker thread).
pub struct FilterEnd {
    tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
    shared: Arc<Shared>,
}

/// The bridge's end (runtime thread): a byte stream for `geomesh_bridge::Bridge::serve_stream`.
pub struct BridgeEnd {
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    shared: Arc<Shared>,
}

/// A connected pair; `wakeup` tells the filter's worker (its Envoy [`Scheduler`]).
pub fn pair(wakeup: Option<Box<dyn Wakeup>>) -> (FilterEnd, BridgeEnd) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        inbox: Mutex::new(Inbox::default()),
        wakeup: Mutex::new(wakeup),
        detached: AtomicBool::new(false),
    });
    (
        FilterEnd { tx: Some(tx), shared: shared.clone() },
        BridgeEnd { rx, current: Vec::new(), at: 0, shared },
    )
}

impl FilterEnd {
    /// Sends frames to the bridge; false once the bridge is gone.
    pub fn send(&self, frames: Vec<u8>) -> bool {
        match &self.tx {
            Some(tx) => tx.send(frames).is_ok(),
            None => false,
        }
    }

    /// What the bridge wrote since the last call, and whether it has ended its side.
    pub fn take(&self) -> (Vec<u8>, bool) {
        let mut inbox = self.shared.inbox();
        inbox.committed = false;
        let bytes = std::mem::take(&mut inbox.bytes);
        if let Some(w) = inbox.writer.take() {
            w.wake();
        }
        (bytes, inbox.eof)
    }

    /// Ends the filter's side (the bridge reads its end of stream).
    pub fn close(&mut self) {
        self.tx = None;
    }

    /// Drops the wakeup: nothing wakes the filter any more. Called when its connection closes
    /// (from Envoy's close event, while the worker still holds the filter, so that no later
    /// commit can hold the last reference to it), and when it is dropped.
    pub fn detach(&mut self) {
        self.shared.detached.store(true, Ordering::Release);
        if IN_WAKE.with(Cell::get) {
            // Destroyed from inside our own `wake`: that call drops the wakeup when it returns.
            return;
        }
        // Dropped under the lock: no wake can be running or start with it.
        drop(self.shared.wakeup.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
}

impl Drop for FilterEnd {
    fn drop(&mut self) {
        self.tx = None;
        self.detach();
    }
}

impl AsyncRead for BridgeEnd {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.at < self.current.len() {
                let at = self.at;
                let n = buf.remaining().min(self.current.len() - at);
                buf.put_slice(self.current.get(at..at + n).unwrap_or_default());
                self.at += n;
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(frames)) => {
                    self.current = frames;
                    self.at = 0;
                }
                // The filter is gone: end of stream.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for BridgeEnd {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let shared = &self.get_mut().shared;
        let mut inbox = shared.inbox();
        if inbox.eof {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if inbox.bytes.len() >= INBOX_LIMIT {
            inbox.writer = Some(cx.waker().clone());
            shared.notify(&mut inbox);
            return Poll::Pending;
        }
        inbox.bytes.extend_from_slice(buf);
        shared.notify(&mut inbox);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shared = &self.get_mut().shared;
        let mut inbox = shared.inbox();
        inbox.eof = true;
        shared.notify(&mut inbox);
        Poll::Ready(Ok(()))
    }
}

impl Drop for BridgeEnd {
    fn drop(&mut self) {
        // The bridge's task ended without shutting down (e.g. a failure): the filter sees the end.
        let mut inbox = self.shared.inbox();
        if !inbox.eof {
            inbox.eof = true;
            self.shared.notify(&mut inbox);
        }
    }
}
