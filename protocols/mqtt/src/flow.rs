//! Flow control: the client's Receive Maximum shared out over the brokers, and the
//! bookkeeping that keeps all brokers together within it.
//!
//! MQTT 5.0 lets a client say how many QoS 1 and 2 PUBLISHes it accepts unacknowledged
//! (Receive Maximum, 3.1.2.11.3). Through the proxy, several brokers send to one client:
//!
//! 1. **Shares.** The CONNECT replayed on broker *i* carries a Receive Maximum `share[i]`
//!    ([`receive_maximum_shares`]), the shares adding up to the client's value (each at least
//!    1; with more brokers than the client's value, 1 each). Brokers honour their share.
//! 2. **Window.** The proxy counts what is in flight to the client ([`SendWindow`]): a QoS 1 or
//!    2 PUBLISH goes out while fewer than the client's Receive Maximum are unacknowledged, else
//!    waits in a queue that the shares bound (at most `sum(shares) - client's value` PUBLISHes,
//!    0 unless there are more brokers than the client's value). Each PUBACK, PUBCOMP or
//!    refusing PUBREC from the client lets the next one out. A broker that ignores its share
//!    overflows the queue: [`WindowFull`] (the proxy disconnects that broker with Receive
//!    Maximum exceeded).
//!
//! The other direction needs no bookkeeping beyond a check: the client is told the minimum of
//! the brokers' Receive Maxima ([`crate::merge::merge_connacks`]), so no broker gets more than
//! its own value; [`InFlight`] answers a client that exceeds it.
//!
//! QoS 0 PUBLISHes are not counted and never wait (MQTT orders messages per topic and QoS).

use std::collections::VecDeque;

use crate::error::Error;
use crate::reason::ReasonCode;

/// The Receive Maximum to give each of `brokers` brokers so that together they stay within
/// the client's `client_max`.
pub fn receive_maximum_shares(client_max: u16, brokers: usize) -> Vec<u16> {
    let n = u16::try_from(brokers).unwrap_or(u16::MAX).max(1);
    let base = (client_max / n).max(1);
    let mut extra = if client_max >= n { client_max % n } else { 0 };
    (0..brokers)
        .map(|_| {
            let bonus = u16::from(extra > 0);
            extra = extra.saturating_sub(1);
            base + bonus
        })
        .collect()
}

/// A broker sent more than its share: the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowFull;

impl WindowFull {
    /// The reason code to disconnect the broker with.
    pub fn reason(self) -> ReasonCode {
        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED
    }
}

/// QoS 1 and 2 PUBLISHes toward the client: at most `limit` unacknowledged, the rest queued
/// (the queue bounded as the shares allow).
#[derive(Debug, Clone)]
pub struct SendWindow<T> {
    limit: u16,
    in_flight: u16,
    queue: VecDeque<T>,
    max_queue: usize,
}

impl<T> SendWindow<T> {
    /// For a client whose Receive Maximum is `limit`, the brokers holding `shares`.
    pub fn new(limit: u16, shares: &[u16]) -> Self {
        let total: usize = shares.iter().map(|s| usize::from(*s)).sum();
        Self {
            limit: limit.max(1),
            in_flight: 0,
            queue: VecDeque::new(),
            max_queue: total.saturating_sub(usize::from(limit)),
        }
    }

    /// A PUBLISH to send: `Ok(Some(item))` to send now, `Ok(None)` queued, `Err` when the
    /// queue is full (a broker exceeded its share).
    pub fn offer(&mut self, item: T) -> Result<Option<T>, WindowFull> {
        if self.in_flight < self.limit {
            self.in_flight += 1;
            return Ok(Some(item));
        }
        if self.queue.len() >= self.max_queue {
            return Err(WindowFull);
        }
        self.queue.push_back(item);
        Ok(None)
    }

    /// The client acknowledged one (PUBACK, PUBCOMP, or a PUBREC with an error): the next
    /// queued PUBLISH, if any, to send now.
    pub fn acknowledged(&mut self) -> Option<T> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let next = self.queue.pop_front()?;
        self.in_flight += 1;
        Some(next)
    }

    /// Unacknowledged PUBLISHes.
    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }

    /// PUBLISHes waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// The client's QoS 1 and 2 PUBLISHes in flight against the Receive Maximum it was given.
#[derive(Debug, Clone, Copy)]
pub struct InFlight {
    limit: u16,
    count: u16,
}

/// The message of the error a client over its Receive Maximum gets.
pub const RECEIVE_MAXIMUM_EXCEEDED: &str = "more QoS 1 and 2 PUBLISHes in flight than the Receive Maximum";

impl InFlight {
    pub fn new(limit: u16) -> Self {
        Self { limit: limit.max(1), count: 0 }
    }

    /// A new PUBLISH from the client (not a retransmission).
    pub fn begin(&mut self) -> Result<(), Error> {
        if self.count >= self.limit {
            return Err(Error::new(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, RECEIVE_MAXIMUM_EXCEEDED));
        }
        self.count += 1;
        Ok(())
    }

    /// Its flow ended.
    pub fn end(&mut self) {
        self.count = self.count.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn shares_add_up_to_the_clients_value() {
        assert_eq!(receive_maximum_shares(20, 2), [10, 10]);
        assert_eq!(receive_maximum_shares(20, 3), [7, 7, 6]);
        assert_eq!(receive_maximum_shares(2, 3), [1, 1, 1], "at least 1 each");
        assert_eq!(receive_maximum_shares(u16::MAX, 1), [u16::MAX]);
        assert_eq!(receive_maximum_shares(7, 0), Vec::<u16>::new());
        for max in [1u16, 2, 3, 10, 20, 65535] {
            for n in 1..8 {
                let s = receive_maximum_shares(max, n);
                let sum: u32 = s.iter().map(|v| u32::from(*v)).sum();
                assert_eq!(sum, u32::from(max).max(n as u32), "{max} over {n}");
                assert!(s.iter().all(|v| *v >= 1));
            }
        }
    }

    #[test]
    fn the_window_never_exceeds_the_clients_receive_maximum() {
        // 3 brokers, client Receive Maximum 2: shares 1, 1, 1, one may wait.
        let shares = receive_maximum_shares(2, 3);
        let mut w = SendWindow::new(2, &shares);
        assert_eq!(w.offer("a"), Ok(Some("a")));
        assert_eq!(w.offer("b"), Ok(Some("b")));
        assert_eq!(w.offer("c"), Ok(None));
        assert_eq!(w.offer("d"), Err(WindowFull), "a fourth means a broker exceeded its share");
        assert_eq!((w.in_flight(), w.queued()), (2, 1));
        assert_eq!(w.acknowledged(), Some("c"));
        assert_eq!(w.in_flight(), 2);
        assert_eq!(w.acknowledged(), None);
        assert_eq!(w.acknowledged(), None);
        assert_eq!(w.in_flight(), 0);
        assert_eq!(w.acknowledged(), None, "a stray acknowledgement does not go below 0");
        // 10 000 messages through Receive Maximum 20 from 2 brokers: never more than 20 out.
        let shares = receive_maximum_shares(20, 2);
        let mut w = SendWindow::new(20, &shares);
        let mut out = 0u32;
        let mut peak = 0;
        let mut sent = 0;
        while sent < 10_000 || out > 0 {
            // Each broker keeps its share in flight.
            while sent < 10_000 && out < 20 {
                if w.offer(sent).unwrap().is_some() {
                    out += 1;
                }
                sent += 1;
            }
            peak = peak.max(w.in_flight());
            if w.acknowledged().is_none() {
                out -= 1;
            }
        }
        assert_eq!(peak, 20);
    }

    #[test]
    fn clients_over_their_receive_maximum_are_refused() {
        let mut f = InFlight::new(2);
        f.begin().unwrap();
        f.begin().unwrap();
        let e = f.begin().unwrap_err();
        assert_eq!((e.reason(), e.message()), (ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, RECEIVE_MAXIMUM_EXCEEDED));
        f.end();
        f.begin().unwrap();
    }
}
