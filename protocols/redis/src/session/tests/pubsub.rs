//! Pub/sub fan-out, confirmations and messages (pubsub.rs).

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

#[test]
fn pubsub_fans_out_and_in() {
    let mut h = Harness::new();
    let r = {
        h.cmd(&["SUBSCRIBE", "news", "alerts"]);
        h.deliver();
        h.replies()
    };
    let conf =
        |kind: &str, ch: &str, n: i64| Frame::Array(vec![bulk(kind), bulk(ch), Frame::Integer(n)]);
    assert_eq!(
        r,
        vec![conf("subscribe", "news", 1), conf("subscribe", "alerts", 2)]
    );
    // A channel is listened to where its messages can be published: the default cluster
    // (no key route matches) and redis2 (the value route `alert`); not redis3.
    for n in ["redis1", "redis2"] {
        assert_eq!(h.log(n), ["SUBSCRIBE news alerts"], "{n}");
    }
    assert!(h.log("redis3").is_empty());
    // Subscribed (RESP2): only pub/sub commands; PING answers the pub/sub way.
    assert!(err_text(&h.run(&["GET", "a"])).starts_with("ERR Can't execute 'get'"));
    assert_eq!(h.run(&["PING"]), arr(&["pong", ""]));
    assert_eq!(
        err_text(&h.run(&["PING", "a", "b"])),
        "ERR wrong number of arguments for 'ping' command"
    );
    // Messages published on the servers are fanned in.
    let m = enc(&Frame::Array(vec![
        bulk("message"),
        bulk("news"),
        bulk("hello"),
    ]));
    h.fake("redis2").out.extend(m);
    h.deliver();
    assert_eq!(h.replies(), vec![arr(&["message", "news", "hello"])]);
    assert_eq!(h.run(&["PSUBSCRIBE", "n*"]), conf("psubscribe", "n*", 3));
    let r = {
        h.cmd(&["UNSUBSCRIBE"]);
        h.deliver();
        h.replies()
    };
    assert_eq!(
        r,
        vec![
            conf("unsubscribe", "alerts", 2),
            conf("unsubscribe", "news", 1)
        ]
    );
    assert_eq!(h.log("redis1").last().unwrap(), "UNSUBSCRIBE alerts news");
    assert_eq!(h.log("redis3"), ["PSUBSCRIBE n*"], "patterns go everywhere");
    h.run(&["PUNSUBSCRIBE", "n*"]);
    assert_eq!(
        h.run(&["UNSUBSCRIBE"]),
        Frame::Array(vec![
            bulk("unsubscribe"),
            Frame::NullBulk,
            Frame::Integer(0)
        ])
    );
    // Out of subscribed mode.
    assert_eq!(h.run(&["GET", "a"]), Frame::NullBulk);
}

#[test]
fn pubsub_counts_a_subscription_once_though_it_is_on_several_clusters() {
    let mut h = Harness::new();
    h.run(&["HELLO", "3"]);
    // `news` is listened to on redis1 and redis2, `n*` on every cluster: a sum would say
    // 2 subscribers and 3 patterns for this one client (Redis: 1 and 1).
    h.cmd(&["SUBSCRIBE", "news"]);
    h.cmd(&["PSUBSCRIBE", "n*"]);
    h.deliver();
    assert_eq!(h.replies().len(), 2);
    assert_eq!(
        h.run(&["PUBSUB", "NUMSUB", "news", "other"]),
        Frame::Array(vec![
            bulk("news"),
            Frame::Integer(1),
            bulk("other"),
            Frame::Integer(0)
        ])
    );
    assert_eq!(h.run(&["PUBSUB", "NUMPAT"]), Frame::Integer(1));
    for n in ["redis1", "redis2", "redis3"] {
        assert_eq!(h.log(n).last().unwrap(), "PUBSUB NUMPAT", "{n}");
    }
}

#[test]
fn a_channel_is_subscribed_where_its_messages_can_be_published() {
    let mut h = Harness::new();
    // `user1:chan`: the key route user1 (redis2); the value route `alert` is not longer than
    // `user1`, so a message on this channel always goes to redis2, whatever its payload.
    // `tmp:x`: the prefix route `tmp:` (redis3), beaten by the longer value route `alert`
    // (redis2) when the payload matches. `other`: default (redis1) or `alert`.
    h.cmd(&["SUBSCRIBE", "user1:chan", "tmp:x", "other"]);
    h.deliver();
    assert_eq!(h.replies().len(), 3);
    assert_eq!(h.log("redis2"), ["SUBSCRIBE user1:chan tmp:x other"]);
    assert_eq!(h.log("redis3"), ["SUBSCRIBE tmp:x"]);
    assert_eq!(h.log("redis1"), ["SUBSCRIBE other"]);
    for ch in ["user1:chan", "tmp:x", "other"] {
        let mut want: Vec<ClusterId> = h.table.message_clusters(ch.as_bytes());
        want.sort();
        let mut got: Vec<ClusterId> = ["redis1", "redis2", "redis3"]
            .iter()
            .filter(|n| h.fakes[&h.id(n)].conn.subs.contains(ch.as_bytes()))
            .map(|n| h.id(n))
            .collect();
        got.sort();
        assert_eq!(got, want, "{ch}");
        // route_message always lands in the set.
        for payload in ["", "alert!", "x"] {
            let c = h
                .table
                .route_message(Some(ch.as_bytes()), Some(payload.as_bytes()));
            assert!(want.contains(&c), "{ch} {payload}");
        }
    }
    // Subscribing again sends nothing new; the confirmation still comes.
    let r = h.run(&["SUBSCRIBE", "other"]);
    assert_eq!(
        r,
        Frame::Array(vec![bulk("subscribe"), bulk("other"), Frame::Integer(3)])
    );
    assert_eq!(h.log("redis1"), ["SUBSCRIBE other"]);
}

#[test]
fn losing_a_connection_that_carries_subscriptions_closes_the_client() {
    let mut h = Harness::new();
    h.cmd(&["SUBSCRIBE", "user1:chan"]);
    h.deliver();
    h.replies();
    let m = enc(&Frame::Array(vec![
        bulk("message"),
        bulk("user1:chan"),
        bulk("m1"),
    ]));
    h.fake("redis2").out.extend(m);
    h.deliver();
    assert_eq!(h.replies(), vec![arr(&["message", "user1:chan", "m1"])]);
    assert!(!h.closed);
    // Another cluster going away does not matter.
    h.run(&["PING"]);
    h.close_upstream("redis3", UpstreamFailureKind::Eof, "");
    assert!(!h.closed);
    // The one carrying the subscription: what was received is delivered, then the close.
    let m = enc(&Frame::Array(vec![
        bulk("message"),
        bulk("user1:chan"),
        bulk("m2"),
    ]));
    h.fake("redis2").out.extend(m);
    h.deliver();
    h.close_upstream("redis2", UpstreamFailureKind::Eof, "");
    assert!(h.closed, "the client must reconnect and resubscribe");
    assert_eq!(h.replies(), vec![arr(&["message", "user1:chan", "m2"])]);
    // Nothing more is read or written.
    h.cmd(&["PING"]);
    assert!(h.replies().is_empty());

    // Unsubscribed first: losing the connection is an ordinary loss.
    let mut h = Harness::new();
    h.run(&["SUBSCRIBE", "user1:chan"]);
    h.run(&["UNSUBSCRIBE", "user1:chan"]);
    h.close_upstream("redis2", UpstreamFailureKind::Eof, "");
    assert!(!h.closed);
    assert_eq!(h.run(&["GET", "user1"]), Frame::NullBulk);

    // RESP3, a subscription and requests in flight on the lost connection: they are answered
    // (errors) before the close.
    let mut h = Harness::new();
    h.run(&["HELLO", "3"]);
    h.run(&["SSUBSCRIBE", "user1:s"]);
    h.fake("redis2").stalled = true;
    h.cmd(&["GET", "user1"]);
    h.deliver();
    h.close_upstream("redis2", UpstreamFailureKind::Refused, "");
    assert!(h.closed);
    let r = h.replies();
    assert!(
        err_text(&r[0]).starts_with("ERR geomesh: cluster redis2: "),
        "{r:?}"
    );
}

#[test]
fn publish_routes_by_channel_and_payload() {
    let mut h = Harness::new();
    h.run(&["PUBLISH", "sensors", "temperature 20C"]);
    h.run(&["PUBLISH", "sensors", "temperature alert: 90C"]);
    h.run(&["PUBLISH", "user1", "x"]);
    assert_eq!(h.log("redis1"), ["PUBLISH sensors temperature 20C"]);
    assert_eq!(
        h.log("redis2"),
        ["PUBLISH sensors temperature alert: 90C", "PUBLISH user1 x"]
    );
}

#[test]
fn resp3_pushes_pass_between_replies() {
    let mut h = Harness::new();
    h.run(&["HELLO", "3"]);
    h.cmd(&["SUBSCRIBE", "ch"]);
    h.deliver();
    let r = h.replies();
    assert_eq!(
        r,
        vec![Frame::Push(vec![
            bulk("subscribe"),
            bulk("ch"),
            Frame::Integer(1)
        ])]
    );
    // RESP3: other commands are allowed while subscribed; a message published on the same
    // connection arrives as a push before the PUBLISH reply.
    assert_eq!(h.run(&["SET", "a", "1"]), Frame::ok());
    h.cmd(&["PUBLISH", "ch", "m"]);
    h.deliver();
    assert_eq!(
        h.replies(),
        vec![
            Frame::Push(vec![bulk("message"), bulk("ch"), bulk("m")]),
            Frame::Integer(1)
        ]
    );
}
