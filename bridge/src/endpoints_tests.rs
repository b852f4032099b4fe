use super::*;

fn p(s: &str) -> Pattern {
    Pattern::parse(s).unwrap()
}

#[test]
fn exact_host_and_port() {
    let pat = p("127.0.0.1:9092");
    assert!(pat.allows("127.0.0.1:9092"));
    assert!(!pat.allows("127.0.0.1:9093"));
    assert!(!pat.allows("127.0.0.2:9092"));
    assert!(
        !pat.allows("localhost:9092"),
        "names are compared as text, never resolved"
    );
}

#[test]
fn host_names_compare_case_insensitively() {
    assert!(p("Broker-1.Kafka:9092").allows("broker-1.kafka:9092"));
}

#[test]
fn port_ranges_and_any_port() {
    let r = p("127.0.0.1:9092-9094");
    assert!(r.allows("127.0.0.1:9092") && r.allows("127.0.0.1:9094"));
    assert!(!r.allows("127.0.0.1:9091") && !r.allows("127.0.0.1:9095"));
    assert!(p("10.0.0.1:*").allows("10.0.0.1:1"));
}

#[test]
fn suffix_patterns_need_a_label_before_the_suffix() {
    let s = p("*.kafka-a.svc:9092");
    assert!(s.allows("b-0.kafka-a.svc:9092"));
    assert!(
        !s.allows("kafka-a.svc:9092"),
        "the suffix alone is not a name under it"
    );
    assert!(
        !s.allows("evilkafka-a.svc:9092"),
        "a suffix matches whole labels"
    );
    assert!(!s.allows("b-0.kafka-b.svc:9092"));
}

#[test]
fn any_host() {
    assert!(p("*:9092").allows("203.0.113.9:9092"));
    assert!(!p("*:9092").allows("203.0.113.9:22"));
}

#[test]
fn bad_patterns_are_refused_with_the_reason() {
    for bad in [
        "", "9092", "*:0", "h:70000", "h:9-1", "h:x", "a*b:1", "*.:1", "*.a*:1", ":1",
    ] {
        assert!(Pattern::parse(bad).is_err(), "{bad} parsed");
    }
}

#[test]
fn malformed_endpoints_never_match() {
    let any = p("*:*");
    for bad in ["nocolon", "h:", "h:99999", "h:-1"] {
        assert!(!any.allows(bad), "{bad}");
    }
    assert!(check_endpoint("a@b:1").is_err());
    assert!(check_endpoint("host:1").is_ok());
}

#[test]
fn without_patterns_a_cluster_allows_its_own_addresses() {
    let addrs = vec!["127.0.0.1:9092".to_string(), "127.0.0.1:9093".to_string()];
    assert!(allowed(None, &addrs, "127.0.0.1:9093"));
    assert!(!allowed(None, &addrs, "127.0.0.1:9094"));
    let pats = [p("127.0.0.1:9094")];
    assert!(allowed(Some(&pats), &addrs, "127.0.0.1:9094"));
    assert!(
        allowed(Some(&pats), &addrs, "127.0.0.1:9092"),
        "patterns add to the own addresses"
    );
    assert!(!allowed(Some(&pats), &addrs, "127.0.0.1:9095"));
}

#[test]
fn targets_split_at_the_first_separator() {
    assert_eq!(
        split_target("kafka-a@127.0.0.1:9092"),
        Some(("kafka-a", "127.0.0.1:9092"))
    );
    assert_eq!(
        split_target("outbound|6379||redis.ns.svc.cluster.local"),
        None
    );
}

#[test]
fn patterns_display_as_written() {
    for s in ["*:*", "*.kafka.svc:9092", "10.0.0.1:9092-9099", "h:1"] {
        assert_eq!(p(s).to_string(), s);
    }
}
