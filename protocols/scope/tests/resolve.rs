#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::time::Duration;

use geomesh_scope::{
    parse, sanitize, ClusterPattern, Decision, Plan, Registry, ResolveError, SiteTable, Target,
};

fn registry() -> Registry {
    Registry::builder("DC 1")
        .site("DC 2")
        .site("DC 3")
        .service("compute")
        .service("image")
        .pattern("{site}_{service}")
        .cluster("image", "DC 3", "glance-dc3-special")
        .build()
        .unwrap()
}

fn t(site: &str, cluster: &str) -> Target {
    Target {
        site: site.into(),
        cluster: cluster.into(),
        local: site == "DC 1",
    }
}

fn plan(scope: &str, service: &str, sites: &SiteTable) -> Result<Plan, ResolveError> {
    registry()
        .resolve(&parse(scope).unwrap(), service, sites)
        .map(|r| r.plan)
}

#[test]
fn sharing_and_local() {
    let sites = SiteTable::new();
    // Cmd. 3: compute on DC 1, image on DC 2.
    let s = "{ compute: DC 1, image: DC 2 }";
    assert_eq!(
        plan(s, "compute", &sites).unwrap(),
        Plan::Share(t("DC 1", "dc_1_compute"))
    );
    assert_eq!(
        plan(s, "image", &sites).unwrap(),
        Plan::Share(t("DC 2", "dc_2_image"))
    );
    // Services the scope does not name stay local.
    assert_eq!(
        plan("{ image: DC 2 }", "compute", &sites).unwrap(),
        Plan::Local
    );
    assert_eq!(plan("{}", "compute", &sites).unwrap(), Plan::Local);
    // Explicit entries override the pattern.
    assert_eq!(
        plan("{ image: DC 3 }", "image", &sites).unwrap(),
        Plan::Share(t("DC 3", "glance-dc3-special"))
    );
    let r = registry()
        .resolve(&parse("{ image: DC 2 }").unwrap(), "image", &sites)
        .unwrap();
    assert_eq!(
        r.select(&sites).unwrap(),
        Decision::Route(t("DC 2", "dc_2_image"))
    );
}

#[test]
fn otherwise_replication_and_distribution() {
    let sites = SiteTable::new();
    assert_eq!(
        plan("{ image: DC 2 ; DC 3 | DC 1 }", "image", &sites).unwrap(),
        Plan::Otherwise(vec![
            vec![t("DC 2", "dc_2_image")],
            vec![t("DC 3", "glance-dc3-special")],
            vec![t("DC 1", "dc_1_image")],
        ])
    );
    assert_eq!(
        plan("{ image: DC 1 & DC 2 }", "image", &sites).unwrap(),
        Plan::Replicate(vec![t("DC 1", "dc_1_image"), t("DC 2", "dc_2_image")])
    );
    // & distributes over ;  (left operand varies slowest)
    assert_eq!(
        plan("{ compute: (DC 1 ; DC 2) & DC 3 }", "compute", &sites).unwrap(),
        Plan::Otherwise(vec![
            vec![t("DC 1", "dc_1_compute"), t("DC 3", "dc_3_compute")],
            vec![t("DC 2", "dc_2_compute"), t("DC 3", "dc_3_compute")],
        ])
    );
    // Duplicates collapse.
    assert_eq!(
        plan("{ compute: DC 2 & DC 2 }", "compute", &sites).unwrap(),
        Plan::Share(t("DC 2", "dc_2_compute"))
    );
    assert_eq!(
        plan("{ compute: DC 2 ; (DC 2) }", "compute", &sites).unwrap(),
        Plan::Share(t("DC 2", "dc_2_compute"))
    );
    assert_eq!(
        plan(
            "{ compute: DC 1 & DC 2 ; DC 2 & DC 1 ; DC 3 }",
            "compute",
            &sites
        )
        .unwrap(),
        Plan::Otherwise(vec![
            vec![t("DC 1", "dc_1_compute"), t("DC 2", "dc_2_compute")],
            vec![t("DC 3", "dc_3_compute")],
        ])
    );
}

#[test]
fn selection_follows_site_state() {
    let reg = registry();
    let scope = parse("{ image: DC 2 ; DC 3 }").unwrap();
    let mut sites = SiteTable::new();
    let r = reg.resolve(&scope, "image", &sites).unwrap();
    assert_eq!(
        r.select(&sites).unwrap(),
        Decision::Route(t("DC 2", "dc_2_image"))
    );
    sites.set_up("DC 2", false);
    assert_eq!(
        r.select(&sites).unwrap(),
        Decision::Route(t("DC 3", "glance-dc3-special"))
    );
    sites.set_up("DC 3", false);
    let e = r.select(&sites).unwrap_err();
    assert_eq!(e.http_status(), 503);
    assert_eq!(
        e.to_string(),
        "scope: no location reachable for service 'image'; tried DC 2 (down) ; DC 3 (down)"
    );
    sites.set_up("DC 2", true);
    assert_eq!(
        r.select(&sites).unwrap(),
        Decision::Route(t("DC 2", "dc_2_image"))
    );
    // A replication set needs every member.
    let r = reg
        .resolve(
            &parse("{ image: DC 1 & DC 3 ; DC 2 }").unwrap(),
            "image",
            &sites,
        )
        .unwrap();
    assert_eq!(
        r.select(&sites).unwrap(),
        Decision::Route(t("DC 2", "dc_2_image"))
    );
    sites.set_up("DC 3", true);
    assert_eq!(
        r.select(&sites).unwrap(),
        Decision::Replicate(vec![
            t("DC 1", "dc_1_image"),
            t("DC 3", "glance-dc3-special")
        ])
    );
    // Per-instance availability (a stopped service on an up site).
    assert_eq!(
        r.select_with(|t| t.cluster != "dc_1_image").unwrap(),
        Decision::Route(t("DC 2", "dc_2_image"))
    );
}

#[test]
fn around_expands_nearest_first() {
    let mut sites = SiteTable::new();
    sites.set_rtt("DC 1", "DC 2", Duration::from_millis(5));
    sites.set_rtt("DC 1", "DC 3", Duration::from_millis(20));
    sites.set_rtt("DC 2", "DC 3", Duration::from_millis(3));
    let s = |r: &str| format!("{{ compute: around(DC 1, {r}) }}");
    assert_eq!(
        plan(&s("1ms"), "compute", &sites).unwrap(),
        Plan::Share(t("DC 1", "dc_1_compute"))
    );
    assert_eq!(
        plan(&s("10ms"), "compute", &sites).unwrap(),
        Plan::Otherwise(vec![
            vec![t("DC 1", "dc_1_compute")],
            vec![t("DC 2", "dc_2_compute")]
        ])
    );
    assert_eq!(
        plan(&s("20ms"), "compute", &sites).unwrap(),
        Plan::Otherwise(vec![
            vec![t("DC 1", "dc_1_compute")],
            vec![t("DC 2", "dc_2_compute")],
            vec![t("DC 3", "dc_3_compute")],
        ])
    );
    // From another centre: RTTs from DC 3, nearest first.
    assert_eq!(
        plan("{ compute: around(DC 3, 1s) }", "compute", &sites).unwrap(),
        Plan::Otherwise(vec![
            vec![t("DC 3", "dc_3_compute")],
            vec![t("DC 2", "dc_2_compute")],
            vec![t("DC 1", "dc_1_compute")],
        ])
    );
    // Unknown RTT keeps a site out; a down site stays in the plan but is skipped.
    sites.clear_rtt("DC 1", "DC 2");
    assert_eq!(
        plan(&s("30ms"), "compute", &sites).unwrap(),
        Plan::Otherwise(vec![
            vec![t("DC 1", "dc_1_compute")],
            vec![t("DC 3", "dc_3_compute")]
        ])
    );
    sites.set_up("DC 1", false);
    let r = registry()
        .resolve(&parse(&s("30ms")).unwrap(), "compute", &sites)
        .unwrap();
    assert_eq!(
        r.select(&sites).unwrap(),
        Decision::Route(t("DC 3", "dc_3_compute"))
    );
}

#[test]
fn unknown_names_and_limits() {
    let sites = SiteTable::new();
    let e = plan("{ compute: DC 9 }", "compute", &sites).unwrap_err();
    assert_eq!(e.to_string(), "scope: unknown site 'DC 9'");
    assert_eq!(e.http_status(), 400);
    // The whole scope is checked, not only the requested service's entry.
    let e = plan("{ compute: DC 1, network: DC 2 }", "compute", &sites).unwrap_err();
    assert_eq!(e, ResolveError::UnknownService("network".into()));
    let e = plan(
        "{ compute: DC 1, image: around(\"x;y\", 1ms) }",
        "compute",
        &sites,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "scope: unknown site \"x;y\"".replace('"', "'")
    );
    assert_eq!(
        plan("{}", "network", &sites).unwrap_err(),
        ResolveError::UnknownService("network".into())
    );

    let mut b = Registry::builder("s0")
        .service("a")
        .pattern("{service}-{site}");
    for i in 1..9 {
        b = b.site(format!("s{i}"));
    }
    let reg = b.build().unwrap();
    let chain = (0..8)
        .map(|i| format!("s{i}"))
        .collect::<Vec<_>>()
        .join(" ; ");
    let ok = parse(&format!("a: ({chain}) & ({chain})")).unwrap();
    let r = reg.resolve(&ok, "a", &sites).unwrap();
    // 8 x 8 combinations, minus the duplicates {si, sj} = {sj, si} and {si, si}.
    assert_eq!(r.alternatives().len(), 8 + 28);
    let big = parse(&format!("a: ({chain}) & ({chain}) & ({chain})")).unwrap();
    assert_eq!(
        reg.resolve(&big, "a", &sites).unwrap_err(),
        ResolveError::PlanTooLarge {
            service: "a".into(),
            limit: 64
        }
    );
}

#[test]
fn registry_configuration() {
    assert_eq!(sanitize("DC 1"), "dc_1");
    assert_eq!(sanitize("Lyon-2.eu"), "lyon_2_eu");
    assert_eq!(sanitize("Zürich"), "z_rich");
    let p = ClusterPattern::parse("outbound|8080||{service}.{site}.svc{{x}}").unwrap();
    assert_eq!(
        p.render("image", "DC 1"),
        "outbound|8080||image.dc_1.svc{x}"
    );
    for (bad, why) in [
        ("{site", "'{' without '}'"),
        ("{site}_{svc}", "unknown placeholder {svc}"),
        ("{service}", "must contain {site}"),
        ("a}{site}", "'}' without '{'"),
        ("{site} x", "not allowed"),
    ] {
        let e = ClusterPattern::parse(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
    let e = Registry::builder("DC 1")
        .site("dc-1")
        .pattern("{site}")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("both become \"dc_1\""), "{e}");
    // Without a pattern the explicit names are not compared.
    assert!(Registry::builder("DC 1").site("dc-1").build().is_ok());
    let e = Registry::builder("DC 1")
        .cluster("a", "DC 1", "has space")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("printable ASCII"), "{e}");
    let e = Registry::builder(" DC").build().unwrap_err();
    assert!(e.to_string().contains("white space"), "{e}");
    let e = Registry::builder("DC 1").service("-x").build().unwrap_err();
    assert!(e.to_string().contains("must start with"), "{e}");
    // No pattern: only explicit pairs have a cluster.
    let reg = Registry::builder("DC 1")
        .site("DC 2")
        .cluster("a", "DC 1", "a1")
        .build()
        .unwrap();
    assert_eq!(reg.cluster("a", "DC 1").unwrap(), "a1");
    assert_eq!(
        reg.cluster("a", "DC 2").unwrap_err().to_string(),
        "scope: no cluster for service 'a' at site 'DC 2'"
    );
    assert_eq!(reg.sites(), ["DC 1".to_string(), "DC 2".to_string()]);
}
