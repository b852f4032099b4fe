//! Graceful stop (SIGTERM): stop accepting, let open filter connections and tunnels go on for a
//! bounded time, then cut what is left with a message.
//!
//! The cut must reach tasks that are parked on idle sockets, without costing the data path
//! anything while the bridge runs: every connection task and every tunnel holds a
//! [`StopSignal`], a future that checks one atomic flag and, the first time it is polled,
//! leaves its task's waker with the [`StopHub`]. [`StopHub::stop`] sets the flag and wakes them
//! all. No lock is taken on the data path (a task's waker does not change between polls, so it
//! is registered once).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Where the tasks that must stop at the end of a drain leave their wakers.
#[derive(Debug, Default)]
pub struct StopHub {
    stopped: AtomicBool,
    next: AtomicU64,
    wakers: Mutex<HashMap<u64, Waker>>,
}

impl StopHub {
    /// A signal for one task (a filter connection or a tunnel).
    pub fn signal(self: &Arc<Self>) -> StopSignal {
        StopSignal {
            hub: self.clone(),
            id: self.next.fetch_add(1, Ordering::Relaxed),
            waker: None,
        }
    }

    /// Tells every signal, present and future, to fire.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = match self.wakers.lock() {
            Ok(mut m) => m.drain().map(|(_, w)| w).collect(),
            Err(p) => p.into_inner().drain().map(|(_, w)| w).collect(),
        };
        for w in wakers {
            w.wake();
        }
    }

    /// True once [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    fn register(&self, id: u64, waker: &Waker) {
        match self.wakers.lock() {
            Ok(mut m) => m.insert(id, waker.clone()),
            Err(p) => p.into_inner().insert(id, waker.clone()),
        };
    }

    fn forget(&self, id: u64) {
        match self.wakers.lock() {
            Ok(mut m) => m.remove(&id),
            Err(p) => p.into_inner().remove(&id),
        };
    }
}

/// Ready once the hub is stopped. Cheap to poll again and again (one atomic load, plus a lock
/// only when the task's waker changed, which a tokio task's does not).
#[derive(Debug)]
pub struct StopSignal {
    hub: Arc<StopHub>,
    id: u64,
    waker: Option<Waker>,
}

impl StopSignal {
    /// Polls without the `Future` machinery (for hand-written poll loops).
    pub fn poll_stop(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.hub.stopped.load(Ordering::Relaxed) {
            return Poll::Ready(());
        }
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.hub.register(self.id, cx.waker());
            self.waker = Some(cx.waker().clone());
            // `stop` may have run between the load above and the registration.
            if self.hub.stopped.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}

impl Future for StopSignal {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_stop(cx)
    }
}

impl Drop for StopSignal {
    fn drop(&mut self) {
        if self.waker.is_some() {
            self.hub.forget(self.id);
        }
    }
}

/// What a drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// How long the bridge waited for connections and tunnels to end on their own.
    pub waited: Duration,
    /// Filter connections still open at the deadline (then sent `ERROR` and closed).
    pub connections_cut: u64,
    /// Incoming tunnels still open at the deadline (then sent `Closed` and ended).
    pub tunnels_cut: u64,
    /// Connections and tunnels that were still there after the cut's grace period.
    pub left_over: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_wakes_parked_signals_and_fires_new_ones() {
        let hub = Arc::new(StopHub::default());
        let mut handles = Vec::new();
        for _ in 0..8 {
            let s = hub.signal();
            handles.push(tokio::spawn(s));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(handles.iter().all(|h| !h.is_finished()));
        hub.stop();
        for h in handles {
            tokio::time::timeout(Duration::from_secs(2), h)
                .await
                .expect("signal fired")
                .expect("task ok");
        }
        // A signal made after the stop fires at once, and nothing stays registered.
        tokio::time::timeout(Duration::from_millis(100), hub.signal())
            .await
            .expect("fires at once");
        assert!(hub.wakers.lock().map(|m| m.is_empty()).unwrap_or(false));
    }
}
