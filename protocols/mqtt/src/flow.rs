//! Flow control: the client's Receive Maximum shared out over the brokers, and the
//! bookkeeping that keeps all brokers together within it.
//!
//! MQTT 5.0 lets a client say how many QoS 1 and 2 PUBLISHes it accepts unacknowledged
//! (Receive Maximum, 3.1.2.11.3). Through the proxy, several brokers send to one client:
//!
//! 1. **Shares.** The CONNECT replayed on broker *i* carries a Receive Maximum `share[i]`
//!    ([`receive_maximum_shares`]), the shares adding up to the client's value (each at least
//!    1; with more brokers than the client's value, 1 each). A broker reached after the
//!    CONNECT (a new routing table) gets the smallest share.
//! 2. **Window.** The proxy does not rely on the brokers for the limit: it counts what is in
//!    flight to the client itself ([`SendWindow`]). A QoS 1 or 2 PUBLISH goes out while fewer
//!    than the client's Receive Maximum are unacknowledged (and none waits before it), else it
//!    waits in the proxy; each PUBACK, PUBCOMP or refusing PUBREC from the client lets the
//!    oldest waiting one out. The wait is bounded by the configuration
//!    (`mqtt.max_held_publishes`, `mqtt.max_held_bytes` per client connection): brokers do
//!    not keep to their share exactly (mosquitto 2.0.11 was measured with 50 in flight on a
//!    share of 10: after a burst of acknowledgements it sends two PUBLISHes for one), so the
//!    proxy's own count is what keeps the client's limit. A broker that overflows the bound is
//!    not honouring its share at all: [`WindowFull`] (the proxy drops that broker's
//!    connection and the client gets a DISCONNECT naming it).
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

/// QoS 1 and 2 PUBLISHes toward the client: at most `limit` unacknowledged, the rest held
/// (at most `max_held` of them and `max_held_bytes` bytes).
#[derive(Debug, Clone)]
pub struct SendWindow<T> {
    limit: u16,
    in_flight: u16,
    queue: VecDeque<(T, usize)>,
    max_held: usize,
    max_held_bytes: usize,
    held_bytes: usize,
}

impl<T> SendWindow<T> {
    /// For a client whose Receive Maximum is `limit`.
    pub fn new(limit: u16, max_held: usize, max_held_bytes: usize) -> Self {
        Self {
            limit: limit.max(1),
            in_flight: 0,
            queue: VecDeque::new(),
            max_held,
            max_held_bytes,
            held_bytes: 0,
        }
    }

    /// The client's Receive Maximum.
    pub fn limit(&self) -> u16 {
        self.limit
    }

    /// A PUBLISH of `size` bytes to send: `Ok(Some(item))` to send now, `Ok(None)` held,
    /// `Err` when no more may be held (a broker is far over its share).
    pub fn offer(&mut self, item: T, size: usize) -> Result<Option<T>, WindowFull> {
        if self.in_flight < self.limit && self.queue.is_empty() {
            self.in_flight += 1;
            return Ok(Some(item));
        }
        if self.queue.len() >= self.max_held || self.held_bytes.saturating_add(size) > self.max_held_bytes {
            return Err(WindowFull);
        }
        self.held_bytes += size;
        self.queue.push_back((item, size));
        Ok(None)
    }

    /// The client acknowledged one (PUBACK, PUBCOMP, or a PUBREC with an error): the oldest
    /// held PUBLISH, if any, to send now.
    pub fn acknowledged(&mut self) -> Option<T> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let (next, size) = self.queue.pop_front()?;
        self.held_bytes = self.held_bytes.saturating_sub(size);
        self.in_flight += 1;
        Some(next)
    }

    /// Unacknowledged PUBLISHes.
    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }

    /// PUBLISHes held.
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

/// The message of the failure when a broker sends more than its share and the queue is full.
pub const BROKER_OVER_SHARE: &str = "broker sent more QoS 1 and 2 PUBLISHes than its share of the Receive Maximum";

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
        let mut w = SendWindow::new(2, 3, 1000);
        assert_eq!(w.offer("a", 1), Ok(Some("a")));
        assert_eq!(w.offer("b", 1), Ok(Some("b")));
        assert_eq!(w.offer("c", 1), Ok(None));
        assert_eq!(w.offer("d", 1), Ok(None));
        assert_eq!(w.offer("e", 1), Ok(None));
        assert_eq!(w.offer("f", 1), Err(WindowFull), "three may be held");
        assert_eq!((w.in_flight(), w.queued(), w.limit()), (2, 3, 2));
        assert_eq!(w.acknowledged(), Some("c"));
        assert_eq!(w.in_flight(), 2);
        assert_eq!(w.offer("g", 1), Ok(None), "behind the held ones, although a slot was free");
        assert_eq!(w.acknowledged(), Some("d"));
        assert_eq!(w.acknowledged(), Some("e"));
        assert_eq!(w.acknowledged(), Some("g"));
        assert_eq!(w.acknowledged(), None);
        assert_eq!(w.acknowledged(), None);
        assert_eq!(w.in_flight(), 0);
        assert_eq!(w.acknowledged(), None, "a stray acknowledgement does not go below 0");
        assert_eq!(w.offer("h", 1), Ok(Some("h")), "room again");
        // Bytes bound too.
        let mut w = SendWindow::new(1, 100, 10);
        assert_eq!(w.offer(1, 8), Ok(Some(1)));
        assert_eq!(w.offer(2, 8), Ok(None));
        assert_eq!(w.offer(3, 3), Err(WindowFull), "11 bytes held");
        assert_eq!(w.offer(3, 2), Ok(None));
        assert_eq!(w.acknowledged(), Some(2));
        assert_eq!(w.offer(4, 8), Ok(None), "the 8 bytes released");
        // 10 000 messages through Receive Maximum 20 from 2 brokers: never more than 20 out.
        let mut w = SendWindow::new(20, 1000, 1 << 20);
        let mut out = 0u32;
        let mut peak = 0;
        let mut sent = 0;
        while sent < 10_000 || out > 0 {
            // The brokers keep 25 in flight (over their shares).
            while sent < 10_000 && out < 25 {
                w.offer(sent, 10).unwrap();
                out += 1;
                sent += 1;
            }
            peak = peak.max(w.in_flight());
            w.acknowledged();
            out -= 1;
        }
        assert_eq!((peak, w.in_flight(), w.queued()), (20, 0, 0));
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
