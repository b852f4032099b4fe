#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use proptest::prelude::*;

use super::*;
use crate::config::Config;

fn table(routes: &str) -> RoutingTable {
    let yaml = format!("workload_type: mqtt\ndefault_cluster: d\nlocal_cluster: d\nrouting_table:\n{routes}");
    RoutingTable::new(&Config::parse(yaml.as_bytes()).unwrap()).unwrap()
}

fn names(t: &RoutingTable, filter: &str) -> Vec<String> {
    let mut v: Vec<String> = t
        .topic_filter_clusters(filter.as_bytes())
        .unwrap()
        .into_iter()
        .map(|c| t.cluster_name(c).to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn filter_grammar() {
    for ok in ["a", "a/b", "+", "#", "a/+", "a/#", "+/+/#", "/", "//", "a//b", "$SYS/#", "a b/c"] {
        assert!(is_valid_filter(ok.as_bytes()), "{ok}");
    }
    for bad in ["", "a+", "a/b#", "#/a", "a/#/b", "+a", "a/++", "##"] {
        assert!(!is_valid_filter(bad.as_bytes()), "{bad}");
    }
}

#[test]
fn filter_matching_follows_the_spec() {
    let yes: &[(&str, &str)] = &[
        ("sport/tennis/player1/#", "sport/tennis/player1"),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking"),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"),
        ("sport/#", "sport"),
        ("#", "sport/tennis"),
        ("#", "/"),
        ("sport/tennis/+", "sport/tennis/player1"),
        ("sport/+", "sport/"),
        ("+/+", "/finance"),
        ("/+", "/finance"),
        ("+", "x"),
        ("a//b", "a//b"),
        ("a/+/b", "a//b"),
        ("$SYS/#", "$SYS/broker/load"),
        ("$SYS/+", "$SYS/x"),
        ("+/$x", "a/$x"),
    ];
    for (f, t) in yes {
        assert!(filter_matches(f.as_bytes(), t.as_bytes()), "{f} should match {t}");
    }
    let no: &[(&str, &str)] = &[
        ("sport/tennis/+", "sport/tennis/player1/ranking"),
        ("sport/tennis/+", "sport/tennis"),
        ("sport/+", "sport"),
        ("+", "/finance"),
        ("/+", "finance"),
        ("#", "$SYS/x"),
        ("+/monitor/Clients", "$SYS/monitor/Clients"),
        ("+", "$x"),
        ("a/b", "a/b/"),
        ("a", "ab"),
        ("a/#", "ab"),
        ("a+", "a+"),
    ];
    for (f, t) in no {
        assert!(!filter_matches(f.as_bytes(), t.as_bytes()), "{f} should not match {t}");
    }
}

#[test]
fn echarde_table_for_mqtt() {
    let t = table("  user1: {type: key, cluster: u}\n  alert: {type: value, cluster: v}\n");
    // `alert` is no longer than `user1`: on a tie the key route wins, whatever the payload.
    assert_eq!(names(&t, "user1"), ["u"]);
    assert_eq!(names(&t, "user1/#"), ["u"]);
    assert_eq!(names(&t, "user1/+/temp"), ["u"]);
    assert_eq!(names(&t, "sensors/+"), ["d", "v"]);
    assert_eq!(names(&t, "#"), ["d", "u", "v"]);
    assert_eq!(names(&t, "+"), ["d", "u", "v"], "the level `user1` itself");
    assert_eq!(names(&t, "+/x"), ["d", "u", "v"]);
    // A value route no longer than the key route's NAME never beats it.
    let t = table("  longname: {cluster: k}\n  abc: {type: value, cluster: v}\n");
    assert_eq!(names(&t, "longname/#"), ["k"]);
    assert_eq!(names(&t, "longname"), ["k"]);
    assert_eq!(names(&t, "long/#"), ["d", "v"]);
}

#[test]
fn key_routes_need_a_level_boundary() {
    let t = table("  a/x: {cluster: k1}\n  a/x/c: {cluster: k2}\n");
    // a/<level>/c: only a/x/c lands on a route (the longer one wins), others on the default.
    assert_eq!(names(&t, "a/+/c"), ["d", "k2"]);
    assert_eq!(names(&t, "a/+"), ["d", "k1"]);
    assert_eq!(names(&t, "a/+/#"), ["d", "k1", "k2"]);
    assert_eq!(names(&t, "a/x/+"), ["k1", "k2"]);
    assert_eq!(names(&t, "b/#"), ["d"]);
    // `.` and `:` are not level separators for MQTT.
    let t = table("  a: {cluster: k}\n");
    assert_eq!(names(&t, "a.x/#"), ["d"]);
    assert_eq!(names(&t, "a:x"), ["d"]);
    assert_eq!(names(&t, "a/x"), ["k"]);
}

#[test]
fn prefix_routes_and_catch_all() {
    let t = table("  tmp: {type: prefix, cluster: p}\n  '*': {cluster: star}\n");
    assert_eq!(names(&t, "+/x"), ["p", "star"], "tmpfoo/x and other/x");
    assert_eq!(names(&t, "tm/+"), ["star"]);
    assert_eq!(names(&t, "tmp/+"), ["p"]);
}

#[test]
fn hash_routes_over_wildcards_take_every_member() {
    let t = table("  users: {type: hash, clusters: [h1, h2, h3]}\n");
    assert_eq!(names(&t, "users/+"), ["h1", "h2", "h3"]);
    assert_eq!(names(&t, "users/#"), ["h1", "h2", "h3"]);
    let one = names(&t, "users/42");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0], t.cluster_name(t.route(b"users/42")));
    assert_eq!(names(&t, "others/+"), ["d"]);
}

#[test]
fn wildcards_skip_dollar_topics() {
    let t = table("  $aws: {cluster: aws}\n");
    assert_eq!(names(&t, "#"), ["d"]);
    assert_eq!(names(&t, "+/things"), ["d"]);
    assert_eq!(names(&t, "$aws/#"), ["aws"]);
}

#[test]
fn conservative_cases_answer_every_active_cluster() {
    let yaml = "workload_type: mqtt\ndefault_cluster: d\nhash_tags: true\nrouting_table:\n  a: {cluster: k}\n  b: {cluster: l}\n";
    let t = RoutingTable::new(&Config::parse(yaml.as_bytes()).unwrap()).unwrap();
    assert_eq!(names(&t, "x/+"), ["d", "k", "l"], "a tag may sit in the wildcard");
    assert_eq!(names(&t, "x/y"), ["d"], "no wildcard: exact");
    let t = table("  a: {cluster: k}\n");
    let many = vec!["+"; MAX_WILDCARDS + 1].join("/");
    assert_eq!(names(&t, &many), ["d", "k"]);
    assert!(t.topic_filter_witnesses(many.as_bytes()).is_none());
    assert_eq!(t.topic_filter_clusters(b"a/#/b"), None, "invalid filter");
}

// ---- property: the answer covers every published topic, and each cluster has a witness ----

const ALPHABET: &[&str] = &["a", "b", "ab", "x", "", "$s"];

fn route_name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(ALPHABET), 1..4)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("non-empty", |s| !s.is_empty())
}

fn routes() -> impl Strategy<Value = String> {
    let entries = prop::collection::btree_map(route_name(), (0..5u8, 0..3u8), 0..6);
    (entries, prop::bool::ANY).prop_map(|(entries, star)| {
        let mut s = String::new();
        for (name, (kind, c)) in entries {
            s.push_str(&match kind {
                0 | 1 => format!("  '{name}': {{cluster: c{c}}}\n"),
                2 => format!("  '{name}': {{type: prefix, cluster: c{c}}}\n"),
                3 => format!("  '{name}': {{type: value, cluster: v{c}}}\n"),
                _ => format!("  '{name}': {{type: hash, clusters: [h{c}, h{}, h9]}}\n", c + 1),
            });
        }
        if star {
            s.push_str("  '*': {cluster: star}\n");
        }
        s
    })
}

fn filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![
        3 => prop::sample::select(ALPHABET).prop_map(str::to_owned),
        2 => Just("+".to_owned()),
    ];
    (prop::collection::vec(level, 1..4), prop::bool::ANY).prop_map(|(mut levels, hash)| {
        if hash {
            levels.push("#".to_owned());
        }
        levels.join("/")
    })
    .prop_filter("non-empty", |f| !f.is_empty())
}

/// A topic the filter matches: each `+` and `#` filled from `fill`.
fn instantiate(filter: &str, fill: &[String]) -> String {
    let mut fill = fill.iter().cycle();
    let levels: Vec<String> = filter
        .split('/')
        .map(|l| match l {
            "+" => fill.next().map(|f| f.replace('/', "")).unwrap_or_default(),
            "#" => fill.next().cloned().unwrap_or_default(),
            other => other.to_owned(),
        })
        .collect();
    let mut t = levels.join("/");
    if filter.ends_with("/#") && t.ends_with('/') && fill.next().is_some_and(|f| f.len() % 2 == 0) {
        t.pop(); // `a/#` matches `a` as well
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_matching_topic_lands_in_the_answer_and_every_answer_has_a_witness(
        routes in routes(),
        filter in filter(),
        fills in prop::collection::vec(
            prop::collection::vec(prop_oneof![
                prop::sample::select(ALPHABET).prop_map(str::to_owned),
                "[abx$/]{0,4}",
            ], 1..4),
            1..12),
        payload in "[abxs]{0,6}",
    ) {
        let t = table(&routes);
        let answer = t.topic_filter_clusters(filter.as_bytes()).unwrap();
        for fill in &fills {
            let topic = instantiate(&filter, fill);
            if topic.is_empty() || !filter_matches(filter.as_bytes(), topic.as_bytes()) {
                continue;
            }
            for p in [payload.as_bytes(), b"", b"ab", b"a/b"] {
                let c = t.route_message(Some(topic.as_bytes()), Some(p));
                prop_assert!(answer.contains(&c), "{filter}: topic {topic} payload {p:?} -> {} not in {:?}",
                    t.cluster_name(c), answer.iter().map(|c| t.cluster_name(*c)).collect::<Vec<_>>());
            }
        }
        let witnesses = t.topic_filter_witnesses(filter.as_bytes()).unwrap();
        for c in &answer {
            let w = witnesses.iter().find(|w| w.cluster == *c);
            prop_assert!(w.is_some(), "{filter}: no witness for {}", t.cluster_name(*c));
            let w = w.unwrap();
            prop_assert!(filter_matches(filter.as_bytes(), &w.topic), "{filter}: witness {:?}", w.topic);
            prop_assert_eq!(t.route_message(Some(&w.topic), w.payload.as_deref()), *c);
        }
        prop_assert_eq!(witnesses.len(), answer.len());
    }
}
