//! The scope filter's whole request path (`plan_request`) on arbitrary header values, site
//! tables and token-memory entries: never a panic, and every verdict is either a reply with a
//! 4xx/5xx status or a forward whose cluster header names a registry cluster.
#![no_main]

use std::sync::OnceLock;

use geomesh_scope::health::Health;
use geomesh_scope::{
    plan_request, DecisionKind, HttpSettings, RequestHeaders, Verdict, STAT_REPLY_4XX, STAT_REPLY_5XX,
};
use libfuzzer_sys::fuzz_target;

fn settings() -> &'static HttpSettings {
    static S: OnceLock<HttpSettings> = OnceLock::new();
    S.get_or_init(|| {
        HttpSettings::parse(
            b"workload_type: http\ndefault_cluster: dc_1_image\nhttp:\n  service: image\n  site: DC 1\n  sites: [DC 1, DC 2, DC 3]\n  services: [compute, image]\n  cluster_pattern: \"{site}_{service}\"\n  clusters: [{service: image, site: DC 4, cluster: dc_3_image}]\n  token_cache: {slots: 4}\n",
        )
        .map(|(_, s)| s)
        .unwrap_or_else(|e| panic!("{e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    // Fields separated by 0xFF: x-scope, x-auth-token, baggage, forwarded-by, sites JSON,
    // token-memory value. An empty field is an absent header.
    let mut parts = data.split(|&b| b == 0xFF);
    let mut next = || parts.next().filter(|p| !p.is_empty());
    let (x_scope, token, baggage, fwd) = (next(), next(), next(), next());
    let health = next().and_then(|j| Health::from_json(j).ok()).unwrap_or_default();
    let memory = next().map(<[u8]>::to_vec);
    // Envoy never hands over a header value with NUL, CR or LF (its codecs reject them).
    let valid = |v: Option<&[u8]>| v.is_none_or(|v| !v.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n')));
    if ![x_scope, token, baggage, fwd].into_iter().all(valid) {
        return;
    }
    let s = settings();
    let headers = RequestHeaders { x_scope, x_auth_token: token, baggage, forwarded_by: fwd };
    let verdict = plan_request(s, &health, &headers, |slot| memory.as_deref().and_then(|m| slot.decode(m, 1)), 1);
    // Every verdict counts under one of the filter's counters (forwarded requests: by kind).
    let stat = verdict.stat_name();
    let kinds = DecisionKind::ALL.map(DecisionKind::stat_name);
    assert!(kinds.contains(&stat) || [STAT_REPLY_4XX, STAT_REPLY_5XX].contains(&stat), "{stat}");
    if let Verdict::Forward(f) = &verdict {
        assert_eq!(f.kind == DecisionKind::Forwarded, fwd.is_some(), "{:?}", f.kind);
    }
    match verdict {
        Verdict::Reply { status, body } => assert!((400..600).contains(&status) && !body.is_empty()),
        Verdict::Forward(f) => {
            let known = ["dc_1_image", "dc_2_image", "dc_3_image"];
            assert!(known.contains(&f.cluster.as_str()), "{}", f.cluster);
            assert!(f.set.iter().any(|(n, v)| n == &s.cluster_header && v == f.cluster.as_bytes()));
            // Whatever goes back into a request header is a value Envoy accepts.
            for (_, v) in &f.set {
                assert!(!v.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n')), "{v:?}");
            }
        }
    }
});
