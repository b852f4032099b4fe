//! The in-process stream between a filter and the bridge, without Envoy: a counting wakeup
//! stands in for the filter's Envoy scheduler.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use geomesh_native::stream::{pair, Wakeup, INBOX_LIMIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Default)]
struct Count(Arc<AtomicUsize>, Arc<AtomicUsize>);

impl Wakeup for Count {
    fn wake(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Count {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

impl Count {
    fn wakes(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn frames_reach_the_bridge_in_order_and_the_filter_leaving_ends_the_stream() {
    let (mut filter, mut bridge) = pair(None);
    assert!(filter.send(b"one ".to_vec()));
    assert!(filter.send(b"two".to_vec()));
    filter.close();
    let mut got = Vec::new();
    bridge.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"one two");
    assert!(!filter.send(b"late".to_vec()), "a closed filter end sends nothing");
}

#[tokio::test]
async fn the_bridge_writes_wake_the_filter_once_until_it_takes() {
    let w = Count::default();
    let (filter, mut bridge) = pair(Some(Box::new(w.clone())));
    bridge.write_all(b"+OK\r\n").await.unwrap();
    bridge.write_all(b":1\r\n").await.unwrap();
    assert_eq!(w.wakes(), 1, "one wake for two writes before the filter looked");
    assert_eq!(filter.take(), (b"+OK\r\n:1\r\n".to_vec(), false));
    bridge.write_all(b":2\r\n").await.unwrap();
    assert_eq!(w.wakes(), 2, "the next write after a take wakes again");
    bridge.shutdown().await.unwrap();
    assert_eq!(filter.take(), (b":2\r\n".to_vec(), true), "the bridge's end reaches the filter");
}

#[tokio::test]
async fn a_full_inbox_holds_the_bridge_until_the_filter_drains_it() {
    let (filter, mut bridge) = pair(None);
    let chunk = vec![b'x'; INBOX_LIMIT];
    bridge.write_all(&chunk).await.unwrap();
    let writer = tokio::spawn(async move {
        bridge.write_all(b"more").await.unwrap();
        bridge
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!writer.is_finished(), "the bridge waits while the inbox is full");
    assert_eq!(filter.take().0.len(), INBOX_LIMIT);
    let _bridge = tokio::time::timeout(Duration::from_secs(5), writer).await.unwrap().unwrap();
    assert_eq!(filter.take().0, b"more");
}

#[tokio::test]
async fn the_filter_leaving_drops_its_wakeup_and_the_bridge_dying_ends_the_filter_side() {
    let w = Count::default();
    let (filter, bridge) = pair(Some(Box::new(w.clone())));
    drop(filter);
    assert_eq!(w.1.load(Ordering::SeqCst), 1, "the wakeup (Envoy's scheduler) is dropped with the filter");
    drop(bridge);
    assert_eq!(w.wakes(), 0, "nothing wakes a filter that is gone");

    let w = Count::default();
    let (filter, bridge) = pair(Some(Box::new(w.clone())));
    drop(bridge);
    assert_eq!(filter.take(), (Vec::new(), true));
    assert_eq!(w.wakes(), 1);
}

/// Envoy's commit can destroy the filter on the committing thread (it held the last reference):
/// the filter's end is then dropped from inside `wake`, which must neither deadlock nor use the
/// wakeup after it.
struct DropsFilter {
    filter: Arc<std::sync::Mutex<Option<geomesh_native::stream::FilterEnd>>>,
    dropped: Arc<AtomicUsize>,
}

impl Wakeup for DropsFilter {
    fn wake(&self) {
        let end = self.filter.lock().unwrap().take();
        drop(end);
    }
}

impl Drop for DropsFilter {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_filter_destroyed_inside_the_wake_neither_deadlocks_nor_outlives_it() {
    let slot = Arc::new(std::sync::Mutex::new(None));
    let dropped = Arc::new(AtomicUsize::new(0));
    let w = DropsFilter { filter: slot.clone(), dropped: dropped.clone() };
    let (filter, mut bridge) = pair(Some(Box::new(w)));
    *slot.lock().unwrap() = Some(filter);
    let wrote = tokio::time::timeout(Duration::from_secs(5), bridge.write_all(b"+OK\r\n")).await;
    assert!(wrote.is_ok(), "the write returned (no deadlock)");
    assert!(slot.lock().unwrap().is_none(), "the filter's end was dropped inside the wake");
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "the wakeup was dropped once the wake returned");
}

#[tokio::test]
async fn a_closed_filter_is_never_woken_again() {
    let w = Count::default();
    let (mut filter, mut bridge) = pair(Some(Box::new(w.clone())));
    filter.detach();
    assert_eq!(w.1.load(Ordering::SeqCst), 1);
    bridge.write_all(b"+OK\r\n").await.unwrap();
    assert_eq!(w.wakes(), 0);
}
