//! The scope filter's own metrics in a real Envoy's stats: decisions by kind and the answers it
//! wrote itself, read from `/stats/prometheus` (and `/stats`) after known traffic, exact values.
//! Three sites as `examples/scope/` (real Envoys, agents, example services), DC 3 shown down
//! by DC 1's agent so that `;` falls back.
//!
//! Needs `make build` (the .wasm, `geomesh-agent` and `geomesh-scope-example`).

use std::time::Duration;

use geomesh_integration::envoy::EnvoyOptions;
use geomesh_integration::prometheus::Scrape;
use geomesh_integration::scope::{PeerOverride, ScopePlan, ScopeTopology};
use geomesh_integration::TestDir;

const DC1: usize = 0;
const DC2: usize = 1;
const DC3: usize = 2;

/// `GET /image/cat` at DC 1's image listener with `x-scope` (none if empty): the status.
fn image(c: &reqwest::blocking::Client, topo: &ScopeTopology, scope: &str) -> u16 {
    let mut req = c.get(format!("{}/image/cat?size=16", topo.url(DC1, "image")));
    if !scope.is_empty() {
        req = req.header("x-scope", scope);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let _ = r.bytes();
    status
}

/// The counters of the image listener's filter (`stat_prefix: image`) at a site, by name.
fn scope_counters(s: &Scrape) -> Vec<(&str, u64)> {
    [
        "decision_local",
        "decision_shared",
        "decision_fallback",
        "decision_around",
        "decision_replicated",
        "decision_forwarded",
        "reply_4xx",
        "reply_5xx",
    ]
    .into_iter()
    .map(|n| (n, s.counter(&format!("http_image_scope_{n}"), &[]).unwrap()))
    .collect()
}

#[test]
fn decisions_and_answers_are_counted_exactly() {
    let dir = TestDir::new("scope-metrics").unwrap();
    let mut plan = ScopePlan::free().unwrap();
    plan.overrides.insert((DC1, DC3), PeerOverride { up: Some(false), ..PeerOverride::default() });
    let topo = ScopeTopology::start(&dir, plan, EnvoyOptions::default()).unwrap();
    let c = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // Before any request: every counter is there, at 0, and the configuration counted once
    // (not once per VM: Envoy configures it in 3 VMs with --concurrency 1).
    let s = topo.sites[DC1].envoy.prometheus().unwrap();
    assert!(scope_counters(&s).iter().all(|(_, v)| *v == 0), "{:?}", scope_counters(&s));
    for listener in ["image", "compute"] {
        assert_eq!(s.counter(&format!("http_{listener}_config_reload"), &[]).unwrap(), 1, "{listener}");
        assert_eq!(s.counter(&format!("http_{listener}_config_rejected"), &[]).unwrap(), 0, "{listener}");
    }

    let traffic: &[(&str, u16, usize)] = &[
        ("", 200, 2),                              // local: no scope
        ("{ compute: DC 2 }", 200, 1),             // local: the scope does not name image
        ("{ image: DC 2 }", 200, 3),               // shared (DC 2 counts them as forwarded)
        ("{ image: DC 1 }", 200, 1),               // shared, this site
        ("{ image: DC 3 ; DC 2 }", 200, 2),        // fallback: DC 3 is down for DC 1's agent
        ("{ image: around(DC 1, 10ms) }", 200, 1), // around
        ("{ image: DC 9 }", 400, 1),               // unknown site
        ("{ image: DC 1 & DC 2 }", 501, 1),        // no replication configured
    ];
    for (scope, status, times) in traffic {
        for _ in 0..*times {
            assert_eq!(image(&c, &topo, scope), *status, "x-scope {scope:?}");
        }
    }

    let s = topo.sites[DC1].envoy.prometheus().unwrap();
    assert_eq!(
        scope_counters(&s),
        [
            ("decision_local", 3),
            ("decision_shared", 4),
            ("decision_fallback", 2),
            ("decision_around", 1),
            ("decision_replicated", 0),
            ("decision_forwarded", 0),
            ("reply_4xx", 1),
            ("reply_5xx", 1),
        ]
    );
    // The compute listener (same VM, its own stat_prefix) saw nothing.
    assert_eq!(s.counter("http_compute_scope_decision_local", &[]).unwrap(), 0);
    // Envoy's own view agrees: the router sent 3 + 2 requests to DC 2's cluster.
    assert_eq!(s.counter("envoy_cluster_upstream_rq_total", &[("envoy_cluster_name", "dc_2_image")]).unwrap(), 5);
    // `/stats` names the same counter with Envoy's namespace for Wasm metrics in front.
    assert_eq!(topo.sites[DC1].envoy.stat("wasmcustom.http.image.scope.decision.shared").unwrap(), Some(4));

    // DC 2 served the 5 requests DC 1 sent it, as forwarded ones, and decided nothing else.
    let s2 = topo.sites[DC2].envoy.prometheus().unwrap();
    let forwarded: Vec<(&str, u64)> = scope_counters(&s2).into_iter().filter(|(_, v)| *v > 0).collect();
    assert_eq!(forwarded, [("decision_forwarded", 5)]);
}
