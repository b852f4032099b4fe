//! /write: routing, splitting, stamping, gzip, limits and the answers' merge.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;

use std::io::Write as _;

use common::{name, settings, table, TWO};
use geomesh_influx::params::Params;
use geomesh_influx::write::{
    merge_write, merge_write_queued, plan_write, queue_path, queued_from, Queued, WriteMerge,
    WritePart,
};
use geomesh_influx::{Answer, Merge, Plan};
use proptest::prelude::*;

const NOW: u64 = 1_700_000_000_123_456_789;

fn plan(body: &str, query: &str) -> Plan {
    let t = table(TWO);
    plan_write(
        &t,
        &settings(),
        &Params::parse(query.as_bytes()),
        body.as_bytes(),
        false,
        NOW,
    )
}

fn calls(p: &Plan) -> Vec<(String, String, String)> {
    let t = table(TWO);
    match p {
        Plan::Fanout { calls, .. } => calls
            .iter()
            .map(|c| {
                (
                    name(&t, c.cluster).to_owned(),
                    c.path.clone(),
                    String::from_utf8(c.body.clone()).unwrap(),
                )
            })
            .collect(),
        other => panic!("not a fan-out: {other:?}"),
    }
}

#[test]
fn one_shard_is_forwarded_untouched() {
    let t = table(TWO);
    assert_eq!(
        plan("cpu v=1\ncpu_load v=2 5", "db=x"),
        Plan::Forward(t.cluster_id("b").unwrap())
    );
    assert_eq!(
        plan("mem v=1", "db=x"),
        Plan::Forward(t.cluster_id("a").unwrap())
    );
    assert_eq!(
        plan("", "db=x"),
        Plan::Forward(t.local_cluster()),
        "no point: the local shard answers"
    );
}

#[test]
fn a_batch_is_split_byte_for_byte_and_stamped_once() {
    let body =
        "cpu,host=a value=1 10\nmem used=2i\ndisk\\ x free=3\ndisk free=\"a b\" 20\ncpu value=4";
    let c = calls(&plan(body, "db=x&precision=s&rp=r"));
    let stamp = NOW / 1_000_000_000;
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].0, "b");
    assert_eq!(c[0].1, "/write?db=x&precision=s&rp=r");
    assert_eq!(
        c[0].2,
        format!("cpu,host=a value=1 10\ndisk free=\"a b\" 20\ncpu value=4 {stamp}\n")
    );
    assert_eq!(c[1].0, "a");
    assert_eq!(
        c[1].2,
        format!("mem used=2i {stamp}\ndisk\\ x free=3 {stamp}\n"),
        "`disk x` is not `disk`"
    );
}

#[test]
fn precision_units() {
    for (p, div) in [
        ("", 1u64),
        ("n", 1),
        ("u", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ] {
        let c = calls(&plan("cpu v=1\nmem v=2", &format!("db=x&precision={p}")));
        assert!(
            c[0].2.ends_with(&format!(" {}\n", NOW / div)),
            "{p}: {}",
            c[0].2
        );
    }
    match plan("cpu v=1\nmem v=2", "db=x&precision=yy") {
        Plan::Reply(r) => assert_eq!(r.status, 400),
        other => panic!("{other:?}"),
    }
}

#[test]
fn gzip_bodies_are_inflated_within_the_limit() {
    let t = table(TWO);
    let body = "cpu v=1\nmem v=2\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let p = plan_write(&t, &settings(), &Params::parse(b"db=x"), &gz, true, NOW);
    assert_eq!(calls(&p).len(), 2);
    let mut small = settings();
    small.max_decoded_bytes = 8;
    match plan_write(&t, &small, &Params::default(), &gz, true, NOW) {
        Plan::Reply(r) => assert_eq!(r.status, 413),
        other => panic!("{other:?}"),
    }
    match plan_write(
        &t,
        &settings(),
        &Params::default(),
        b"not gzip at all",
        true,
        NOW,
    ) {
        Plan::Reply(r) => assert_eq!(r.status, 400),
        other => panic!("{other:?}"),
    }
    let mut tiny = settings();
    tiny.max_body_bytes = 4;
    match plan_write(&t, &tiny, &Params::default(), b"cpu v=1", false, NOW) {
        Plan::Reply(r) => assert_eq!(r.status, 413),
        other => panic!("{other:?}"),
    }
}

fn wm() -> WriteMerge {
    WriteMerge {
        parts: vec![
            WritePart {
                cluster: "a".into(),
                points: 3,
            },
            WritePart {
                cluster: "b".into(),
                points: 2,
            },
        ],
    }
}

fn ans(status: Option<u16>, body: &str) -> Answer {
    Answer {
        status,
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn merged_answers() {
    assert_eq!(
        merge_write(&wm(), &[ans(Some(204), ""), ans(Some(204), "")]).status,
        204
    );
    let r = merge_write(
        &wm(),
        &[
            ans(
                Some(400),
                r#"{"error":"partial write: unable to parse 'x': bad dropped=1"}"#,
            ),
            ans(
                Some(400),
                r#"{"error":"partial write: unable to parse 'y': worse dropped=2"}"#,
            ),
        ],
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "{\"error\":\"partial write: unable to parse 'x': bad dropped=3\"}\n"
    );
    let r = merge_write(&wm(), &[ans(Some(204), ""), ans(None, "")]);
    assert_eq!(r.status, 503);
    let text = String::from_utf8(r.body).unwrap();
    assert!(
        text.contains("cluster b did not answer")
            && text.contains("written elsewhere: 3 points to a"),
        "{text}"
    );
    let r = merge_write(
        &wm(),
        &[
            ans(Some(404), r#"{"error":"database not found: \"x\""}"#),
            ans(Some(204), ""),
        ],
    );
    assert_eq!(r.status, 404);
}

#[test]
fn a_down_part_the_replay_queue_stored_is_acknowledged() {
    let down = [ans(Some(204), ""), ans(None, "")];
    let r = merge_write_queued(&wm(), &down, &[Queued::No, Queued::Stored]);
    assert_eq!(r.status, 204);
    let r = merge_write_queued(
        &wm(),
        &down,
        &[
            Queued::No,
            queued_from(Some(507), b"replay queue full for cluster b: 3 batches"),
        ],
    );
    assert_eq!(r.status, 503);
    let text = String::from_utf8(r.body).unwrap();
    assert!(
        text.contains("cluster b did not answer")
            && text.contains("(replay queue full for cluster b: 3 batches)")
            && text.contains("written elsewhere: 3 points to a"),
        "{text}"
    );
    let r = merge_write_queued(&wm(), &down, &[Queued::No, queued_from(None, b"")]);
    let text = String::from_utf8(r.body).unwrap();
    assert!(
        text.contains("replay queue unavailable: agent did not answer"),
        "{text}"
    );
    let r = merge_write_queued(
        &wm(),
        &[
            ans(Some(204), ""),
            ans(Some(500), r#"{"error":"engine: closed"}"#),
        ],
        &[Queued::No, queued_from(Some(404), b"no shard URL")],
    );
    let text = String::from_utf8(r.body).unwrap();
    assert!(
        text.contains("cluster b answered 500 (engine: closed)")
            && text.contains("replay queue unavailable: agent answered 404: no shard URL"),
        "{text}"
    );
    assert_eq!(queued_from(Some(204), b""), Queued::Stored);
}

#[test]
fn queue_paths_carry_the_write_parameters() {
    assert_eq!(
        queue_path("influx b", "/write?db=x&precision=s"),
        "/v1/influx/queue?cluster=influx%20b&db=x&precision=s"
    );
    assert_eq!(queue_path("b", "/write"), "/v1/influx/queue?cluster=b");
}

proptest! {
    /// Every point reaches exactly one shard, in order within that shard, with its bytes.
    #[test]
    fn split_keeps_every_point(ms in prop::collection::vec(prop_oneof![Just("cpu"), Just("mem"), Just("disk"), Just("cpux")], 1..30),
                               timed in prop::collection::vec(any::<bool>(), 30)) {
        let lines: Vec<String> = ms.iter().enumerate().map(|(i, m)| {
            if timed[i] { format!("{m} v={i} {i}") } else { format!("{m} v={i}") }
        }).collect();
        let body = lines.join("\n");
        match plan(&body, "db=x") {
            Plan::Forward(_) => {
                let first = |m: &str| if m.starts_with("cpu") || m == "disk" { "b" } else { "a" };
                prop_assert!(ms.iter().all(|m| first(m) == first(ms[0])));
            }
            p @ Plan::Fanout { .. } => {
                let mut seen = Vec::new();
                for (_, _, b) in calls(&p) {
                    let mut last = None;
                    for l in b.lines() {
                        let i: usize = l.split(['=', ' ']).nth(2).unwrap().parse().unwrap();
                        prop_assert!(last.is_none_or(|x| x < i), "order kept within a shard");
                        last = Some(i);
                        let want = if timed[i] { lines[i].clone() } else { format!("{} {NOW}", lines[i]) };
                        prop_assert_eq!(l, want);
                        seen.push(i);
                    }
                }
                seen.sort();
                prop_assert_eq!(seen, (0..ms.len()).collect::<Vec<_>>());
                if let Plan::Fanout { merge: Merge::Write(m), .. } = p {
                    prop_assert_eq!(m.parts.iter().map(|x| x.points).sum::<usize>(), ms.len());
                }
            }
            Plan::Reply(r) => prop_assert!(false, "{:?}", r),
        }
    }
}

#[test]
fn a_forwarded_write_becomes_one_stamped_part_for_the_queue() {
    use geomesh_influx::write::forwarded_as_part;
    let t = table(TWO);
    let b = t.cluster_id("b").unwrap();
    let params = Params::parse(b"db=x&precision=s");
    let body = "cpu,h=1 v=1 5\ncpu v=2\n# comment\n";
    let (call, merge) = forwarded_as_part(&settings(), &params, b, "b", body.as_bytes(), false, NOW).unwrap();
    assert_eq!(call.cluster, b);
    assert_eq!(call.path, "/write?db=x&precision=s");
    assert_eq!(
        String::from_utf8(call.body).unwrap(),
        format!("cpu,h=1 v=1 5\ncpu v=2 {}\n", NOW / 1_000_000_000)
    );
    assert_eq!(merge.parts, [WritePart { cluster: "b".into(), points: 2 }]);
    // gzip: inflated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"cpu v=3 7\n").unwrap();
    let (call, _) = forwarded_as_part(&settings(), &Params::default(), b, "b", &gz.finish().unwrap(), true, NOW).unwrap();
    assert_eq!(call.body, b"cpu v=3 7\n");
    // Unreadable: not queued (the shard would have refused it).
    assert!(forwarded_as_part(&settings(), &Params::default(), b, "b", b"\x1f\x8bxx", true, NOW).is_none());
    assert!(forwarded_as_part(&settings(), &Params::parse(b"precision=y"), b, "b", b"cpu v=1", false, NOW).is_none());
}
