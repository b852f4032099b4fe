//! scope-lang end to end: three sites on loopback, each a real Envoy 1.40 running
//! `geomesh_filter_scope.wasm` in V8, a real `geomesh-agent`, and the example services s
//! (compute) and t (image); real clients (reqwest, curl). See `geomesh_integration::scope`.
//!
//! Needs `make build` (the .wasm, `geomesh-agent` and `geomesh-scope-example` built in the
//! profile and target dir of this test run).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use geomesh_integration::envoy::EnvoyOptions;
use geomesh_integration::scope::{PeerOverride, ScopePlan, ScopeTopology, WanLinks};
use geomesh_integration::{wait_for, TestDir};
use serde_json::Value;

const DC1: usize = 0;
const DC2: usize = 1;
const DC3: usize = 2;

fn start(name: &str, plan: ScopePlan) -> (TestDir, ScopeTopology) {
    let dir = TestDir::new(name).unwrap();
    let topo = ScopeTopology::start(&dir, plan, EnvoyOptions::default()).unwrap();
    (dir, topo)
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `GET /compute/cat` at `site` with the given headers: (status, JSON).
fn compute(topo: &ScopeTopology, site: usize, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = client().get(format!("{}/compute/cat", topo.url(site, "compute")));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// `GET /image/<name>` at `site`: (status, first line of the body, headers).
fn image(
    topo: &ScopeTopology,
    site: usize,
    headers: &[(&str, &str)],
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = client().get(format!("{}/image/cat?size=64", topo.url(site, "image")));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    let text = r.text().unwrap();
    (status, text.lines().next().unwrap_or("").to_owned(), h)
}

fn scoped(topo: &ScopeTopology, site: usize, scope: &str) -> (u16, String) {
    let (s, line, _) = image(topo, site, &[("x-scope", scope)]);
    (s, line)
}

/// Real curl: (status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn requests(topo: &ScopeTopology, site: usize, service: &str) -> u64 {
    topo.instance_stats(site, service).unwrap()["requests"]
        .as_u64()
        .unwrap()
}

fn stat(topo: &ScopeTopology, site: usize, name: &str) -> u64 {
    topo.sites[site].envoy.stat(name).unwrap().unwrap_or(0)
}

fn service_state(d: &geomesh_scope::SitesDocument, site: &str, service: &str) -> Option<bool> {
    d.sites
        .iter()
        .find(|s| s.name == site)
        .and_then(|s| s.services.get(service).copied())
}

#[test]
fn paper_commands_2_and_3_and_loop_prevention() {
    let (_dir, mut topo) = start("scope-paper", ScopePlan::free().unwrap());
    let before: Vec<u64> = (0..3).map(|i| requests(&topo, i, "image")).collect();

    // Cmd. 2: everything local to DC 1.
    let (st, v) = compute(&topo, DC1, &[("x-scope", "{ compute: DC 1, image: DC 1 }")]);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["site"], "DC 1");
    assert_eq!(v["image"]["site"], "DC 1", "{v}");
    assert_eq!(v["image"]["first_line"], "IMAGE cat @ DC 1");
    assert_eq!(v["image"]["routed_to"], "dc_1_image");
    assert_eq!(requests(&topo, DC1, "image"), before[0] + 1);
    assert_eq!(requests(&topo, DC2, "image"), before[1]);

    // Cmd. 3: DC 1's compute uses DC 2's image. The bytes really come from DC 2's instance:
    // its body marker, its own counter, DC 2's Envoy stats and access log.
    let dc2_local_rq = stat(&topo, DC2, "cluster.dc_2_image.upstream_rq_total");
    let dc1_to_dc2_rq = stat(&topo, DC1, "cluster.dc_2_image.upstream_rq_total");
    let (st, v) = compute(&topo, DC1, &[("x-scope", "{ compute: DC 1, image: DC 2 }")]);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["site"], "DC 1");
    assert_eq!(v["image"]["site"], "DC 2", "{v}");
    assert_eq!(v["image"]["first_line"], "IMAGE cat @ DC 2");
    assert_eq!(v["image"]["routed_to"], "dc_2_image");
    assert_eq!(
        v["image"]["seen_by_t"]["x-scope"],
        "{ compute: DC 1, image: DC 2 }"
    );
    assert_eq!(
        v["image"]["seen_by_t"]["x-geomesh-forwarded-by"], "-",
        "stripped before t"
    );
    assert_eq!(
        requests(&topo, DC1, "image"),
        before[0] + 1,
        "DC 1's t not used"
    );
    assert_eq!(requests(&topo, DC2, "image"), before[1] + 1);
    assert_eq!(
        stat(&topo, DC1, "cluster.dc_2_image.upstream_rq_total"),
        dc1_to_dc2_rq + 1
    );
    assert_eq!(
        stat(&topo, DC2, "cluster.dc_2_image.upstream_rq_total"),
        dc2_local_rq + 1
    );
    let envoy2 = topo.sites[DC2].envoy.proc().stdout_path().to_path_buf();
    wait_for(Duration::from_secs(5), "DC 2's access log line", || {
        let log = std::fs::read_to_string(&envoy2)?;
        Ok(log.lines().any(|l| {
            l.contains("listener=image_in \"GET /image/cat?size=16\" 200")
                && l.contains("cluster=dc_2_image")
        }))
    })
    .unwrap();

    // No scope: the local instance, named in the response.
    let (st, line, h) = image(&topo, DC2, &[]);
    assert_eq!((st, line.as_str()), (200, "IMAGE cat @ DC 2"));
    assert_eq!(h["x-geomesh-routed-to"], "dc_2_image");
    // A scope that does not name the service: local too.
    let (st, line) = scoped(&topo, DC3, "{ compute: DC 1 }");
    assert_eq!((st, line.as_str()), (200, "IMAGE cat @ DC 3"));

    // The same with real curl, straight to the image listener.
    let (st, body) = curl(&[
        "-H",
        "x-scope: { image: DC 3 }",
        &format!("{}/image/pic?size=4", topo.url(DC1, "image")),
    ]);
    assert_eq!(st, 200);
    assert!(body.starts_with("IMAGE pic @ DC 3\n"), "{body}");

    // Loop prevention: a request marked as forwarded by a peer is served where it lands.
    let (st, line, h) = image(
        &topo,
        DC2,
        &[
            ("x-scope", "{ image: DC 1 }"),
            ("x-geomesh-forwarded-by", "DC 3"),
        ],
    );
    assert_eq!((st, line.as_str()), (200, "IMAGE cat @ DC 2"));
    assert_eq!(h["x-seen-x-geomesh-forwarded-by"], "-");
}

#[test]
fn scope_follows_the_workflow_with_each_carrier() {
    let (_dir, topo) = start("scope-propagation", ScopePlan::free().unwrap());

    // X-Scope, forwarded by s itself.
    let (st, v) = compute(&topo, DC1, &[("x-scope", "{ compute: DC 1, image: DC 2 }")]);
    assert_eq!(
        (st, &v["image"]["site"]),
        (200, &Value::from("DC 2")),
        "{v}"
    );

    // W3C baggage (as an OpenTelemetry-instrumented app forwards it), other members kept.
    let bag = "user=alice,scope=%7B%20image%3A%20DC%203%20%7D;p=1,tenant=t1";
    let (st, v) = compute(&topo, DC1, &[("baggage", bag)]);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["site"], "DC 1");
    assert_eq!(v["image"]["site"], "DC 3", "{v}");
    assert_eq!(
        v["image"]["seen_by_t"]["baggage"], bag,
        "baggage reaches t unchanged"
    );

    // openstackoid's piggyback: `!SCOPE!...` never reaches the applications; s forwards the plain
    // token; DC 1's filter in front of t finds the scope by token (remembered by the filter in
    // front of s) and re-attaches it to cross to DC 2, whose filter strips it again.
    let token = "gAAAAABk.token-42";
    let (st, v) = compute(
        &topo,
        DC1,
        &[(
            "x-auth-token",
            &format!("{token}!SCOPE!{{\"compute\": \"DC 1\", \"image\": \"DC 2\"}}"),
        )],
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["seen"]["x-auth-token"], token, "s sees the plain token");
    assert_eq!(v["image"]["site"], "DC 2", "{v}");
    assert_eq!(
        v["image"]["seen_by_t"]["x-auth-token"], token,
        "t sees the plain token"
    );
    assert_eq!(v["image"]["seen_by_t"]["x-scope"], "-");

    // Same token memory across sites: compute at DC 2 (token crosses with the scope), and DC 2's
    // s calling t through DC 2's Envoy gets the image from DC 3.
    let token2 = "gAAAAABk.token-43";
    let (st, v) = compute(
        &topo,
        DC1,
        &[(
            "x-auth-token",
            &format!("{token2}!SCOPE!{{ compute: DC 2, image: DC 3 }}"),
        )],
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["site"], "DC 2", "{v}");
    assert_eq!(v["seen"]["x-auth-token"], token2);
    assert_eq!(v["image"]["site"], "DC 3", "{v}");
    assert_eq!(v["image"]["seen_by_t"]["x-auth-token"], token2);

    // A token the filters never saw with a scope: local, unchanged.
    let (st, v) = compute(&topo, DC3, &[("x-auth-token", "unknown-token")]);
    assert_eq!(
        (st, &v["site"], &v["image"]["site"]),
        (200, &Value::from("DC 3"), &Value::from("DC 3"))
    );
    assert_eq!(v["image"]["seen_by_t"]["x-auth-token"], "unknown-token");
}

#[test]
fn otherwise_fails_over_and_comes_back() {
    let (_dir, mut topo) = start("scope-otherwise", ScopePlan::free().unwrap());
    let scope = "{ image: DC 2 ; DC 3 }";
    assert_eq!(scoped(&topo, DC1, scope), (200, "IMAGE cat @ DC 2".into()));

    topo.stop_instance(DC2, "image").unwrap();
    topo.wait_sites(DC1, Duration::from_secs(15), "DC 2's image down", |d| {
        service_state(d, "DC 2", "image") == Some(false)
    })
    .unwrap();
    let dc3 = requests(&topo, DC3, "image");
    for _ in 0..5 {
        assert_eq!(scoped(&topo, DC1, scope), (200, "IMAGE cat @ DC 3".into()));
    }
    assert_eq!(requests(&topo, DC3, "image"), dc3 + 5);
    // `|` is the same operator.
    assert_eq!(
        scoped(&topo, DC1, "{ image: DC 2 | DC 3 }"),
        (200, "IMAGE cat @ DC 3".into())
    );

    topo.restart_instance(DC2, "image").unwrap();
    topo.wait_sites(DC1, Duration::from_secs(15), "DC 2's image up", |d| {
        service_state(d, "DC 2", "image") == Some(true)
    })
    .unwrap();
    assert_eq!(scoped(&topo, DC1, scope), (200, "IMAGE cat @ DC 2".into()));
}

#[test]
fn around_with_static_rtt_overrides() {
    let mut plan = ScopePlan::free().unwrap();
    plan.overrides.insert(
        (DC1, DC2),
        PeerOverride {
            rtt_ms: Some(20.0),
            up: None,
        },
    );
    plan.overrides.insert(
        (DC1, DC3),
        PeerOverride {
            rtt_ms: Some(5.0),
            up: None,
        },
    );
    let (_dir, mut topo) = start("scope-around-static", plan);

    // DC 1 itself first while its image is up.
    assert_eq!(
        scoped(&topo, DC1, "{ image: around(DC 1, 30ms) }"),
        (200, "IMAGE cat @ DC 1".into())
    );
    topo.stop_instance(DC1, "image").unwrap();
    topo.wait_sites(DC1, Duration::from_secs(15), "DC 1's image down", |d| {
        service_state(d, "DC 1", "image") == Some(false)
    })
    .unwrap();
    // Nearest first: DC 3 (5 ms) before DC 2 (20 ms).
    assert_eq!(
        scoped(&topo, DC1, "{ image: around(DC 1, 30ms) }"),
        (200, "IMAGE cat @ DC 3".into())
    );
    // A radius that leaves DC 2 out, then DC 3 down too: 503 naming only what was tried.
    topo.stop_instance(DC3, "image").unwrap();
    topo.wait_sites(DC1, Duration::from_secs(15), "DC 3's image down", |d| {
        service_state(d, "DC 3", "image") == Some(false)
    })
    .unwrap();
    assert_eq!(
        scoped(&topo, DC1, "{ image: around(DC 1, 30ms) }"),
        (200, "IMAGE cat @ DC 2".into())
    );
    let (st, body) = curl(&[
        "-H",
        "x-scope: { image: around(DC 1, 10ms) }",
        &format!("{}/image/x", topo.url(DC1, "image")),
    ]);
    assert_eq!(st, 503, "{body}");
    assert_eq!(
        body.trim(),
        "scope: no location reachable for service 'image'; tried DC 1 (down) ; DC 3 (down)"
    );
}

/// Real latency: every link between sites goes through a relay; the agents measure RTTs, and
/// `around` follows them when they change.
#[test]
fn around_with_real_latency_through_relays() {
    let mut plan = ScopePlan::free().unwrap();
    let wan = WanLinks::install(&mut plan).unwrap();
    wan.set_delay(DC1, DC3, Duration::from_millis(60));
    let (_dir, mut topo) = start("scope-around-relay", plan);
    topo.stop_instance(DC1, "image").unwrap();
    let rtt = |d: &geomesh_scope::SitesDocument, s: &str| {
        d.sites
            .iter()
            .find(|x| x.name == s)
            .and_then(|x| x.rtt_ms)
            .unwrap_or(f64::NAN)
    };
    let d = topo
        .wait_sites(
            DC1,
            Duration::from_secs(20),
            "DC 3 far, DC 2 near, DC 1's image down",
            |d| {
                rtt(d, "DC 3") > 100.0
                    && rtt(d, "DC 2") < 30.0
                    && service_state(d, "DC 1", "image") == Some(false)
            },
        )
        .unwrap();
    eprintln!(
        "measured RTT DC 1 -> DC 2 {:.1} ms, -> DC 3 {:.1} ms",
        rtt(&d, "DC 2"),
        rtt(&d, "DC 3")
    );
    assert_eq!(
        scoped(&topo, DC1, "{ image: around(DC 1, 500ms) }"),
        (200, "IMAGE cat @ DC 2".into())
    );
    // Only DC 2 is within 60 ms.
    let (st, body) = curl(&[
        "-H",
        "x-scope: { image: around(DC 1, 60ms) ; DC 3 }",
        &format!("{}/image/x", topo.url(DC1, "image")),
    ]);
    assert_eq!(
        (st, body.lines().next().unwrap_or("")),
        (200, "IMAGE x @ DC 2")
    );

    // The latency moves: DC 2 becomes far, DC 3 near.
    wan.set_delay(DC1, DC3, Duration::ZERO);
    wan.set_delay(DC1, DC2, Duration::from_millis(60));
    let d = topo
        .wait_sites(DC1, Duration::from_secs(30), "DC 2 far, DC 3 near", |d| {
            rtt(d, "DC 2") > 100.0 && rtt(d, "DC 3") < 30.0
        })
        .unwrap();
    eprintln!(
        "measured RTT DC 1 -> DC 2 {:.1} ms, -> DC 3 {:.1} ms",
        rtt(&d, "DC 2"),
        rtt(&d, "DC 3")
    );
    assert_eq!(
        scoped(&topo, DC1, "{ image: around(DC 1, 500ms) }"),
        (200, "IMAGE cat @ DC 3".into())
    );
    // And a request sent to DC 2 does pay the link's latency (60 ms each way).
    let t = Instant::now();
    assert_eq!(
        scoped(&topo, DC1, "{ image: DC 2 }"),
        (200, "IMAGE cat @ DC 2".into())
    );
    assert!(
        t.elapsed() >= Duration::from_millis(120),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn errors_are_answered_never_served_locally() {
    let (_dir, mut topo) = start("scope-errors", ScopePlan::free().unwrap());
    let url = format!("{}/image/x", topo.url(DC1, "image"));
    let before = requests(&topo, DC1, "image");

    // Malformed: 400 with the parser's message and position.
    let (st, body) = curl(&["-H", "x-scope: { image: DC 2 ; }", &url]);
    assert_eq!(st, 400, "{body}");
    assert_eq!(
        body.trim(),
        "x-scope: scope:1:17: expected a site name or '(' after ';', found '}'"
    );
    let (st, body) = curl(&["-H", "x-auth-token: tok!SCOPE!{image: (DC 2}", &url]);
    assert_eq!(st, 400, "{body}");
    assert_eq!(
        body.trim(),
        "x-auth-token: scope:1:14: expected '&', ';', '|' or ')', found '}'"
    );
    // Unknown site / service: 400 naming it.
    let (st, body) = curl(&["-H", "x-scope: { image: DC 9 }", &url]);
    assert_eq!((st, body.trim()), (400, "scope: unknown site 'DC 9'"));
    let (st, body) = curl(&["-H", "x-scope: { video: DC 2 }", &url]);
    assert_eq!((st, body.trim()), (400, "scope: unknown service 'video'"));
    // Carriers that disagree.
    let (st, body) = curl(&[
        "-H",
        "x-scope: { image: DC 2 }",
        "-H",
        "baggage: scope=%7Bimage%3ADC%203%7D",
        &url,
    ]);
    assert_eq!(
        (st, body.trim()),
        (400, "scope: x-scope and baggage carry different scopes")
    );
    // Replication for a service whose filter has no `http.replication` (this topology's): 501
    // (integration/tests/replication_e2e.rs runs the configured case).
    let (st, body) = curl(&["-H", "x-scope: { image: DC 2 & DC 3 }", &url]);
    assert_eq!(st, 501, "{body}");
    assert!(
        body.contains("replication is not configured for service 'image'"),
        "{body}"
    );
    assert_eq!(
        requests(&topo, DC1, "image"),
        before,
        "no error was served locally"
    );

    // Nothing reachable: 503 naming what was tried.
    topo.stop_instance(DC2, "image").unwrap();
    topo.stop_instance(DC3, "image").unwrap();
    topo.wait_sites(
        DC1,
        Duration::from_secs(15),
        "DC 2's and DC 3's image down",
        |d| {
            service_state(d, "DC 2", "image") == Some(false)
                && service_state(d, "DC 3", "image") == Some(false)
        },
    )
    .unwrap();
    let (st, line, h) = image(&topo, DC1, &[("x-scope", "{ image: DC 2 ; DC 3 }")]);
    assert_eq!(
        (st, line.as_str()),
        (
            503,
            "scope: no location reachable for service 'image'; tried DC 2 (down) ; DC 3 (down)"
        )
    );
    assert_eq!(h["x-geomesh-error"], "scope");
    assert_eq!(
        requests(&topo, DC1, "image"),
        before,
        "never a silent local fallback"
    );

    // The window before the agents notice (here: no scope, the local instance just stopped):
    // Envoy's own 503 names the cluster it could not reach.
    topo.stop_instance(DC1, "image").unwrap();
    let (st, line, _) = image(&topo, DC1, &[]);
    assert_eq!(st, 503, "{line}");
    assert!(
        line.starts_with("geomesh: cluster 'dc_1_image' did not answer (UF"),
        "{line}"
    );
}

/// Bytes through DC 1's Envoy, DC 2's Envoy and into DC 2's t as they stream: the size comes
/// from GEOMESH_UPLOAD_BYTES (default 1 GiB).
#[test]
fn streaming_upload_crosses_sites_without_buffering() {
    let size: u64 = std::env::var("GEOMESH_UPLOAD_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 30);
    let (_dir, mut topo) = start("scope-upload", ScopePlan::free().unwrap());
    let url = format!("{}/upload", topo.url(DC1, "image"));
    let mut child = Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "-X",
            "POST",
            "-T",
            "-",
            "-H",
            "x-scope: { image: DC 2 }",
            "-H",
            "expect:",
        ])
        .arg(&url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let started = Instant::now();
    let writer = std::thread::spawn(move || {
        let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        let (mut sent, mut sum) = (0u64, 0u64);
        while sent < size {
            let n = (size - sent).min(chunk.len() as u64) as usize;
            stdin.write_all(&chunk[..n]).unwrap();
            sum = chunk[..n]
                .iter()
                .fold(sum, |s, b| s.wrapping_add(u64::from(*b)));
            sent += n as u64;
        }
        sum
    });
    let sum = writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["site"], "DC 2", "{v}");
    assert_eq!(v["bytes"].as_u64(), Some(size), "{v}");
    assert_eq!(v["sum"].as_u64(), Some(sum), "{v}");
    let peaks: Vec<u64> = [DC1, DC2]
        .iter()
        .map(|&i| {
            let pid = topo.sites[i].envoy.proc().pid();
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|l| l.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap()
        })
        .collect();
    eprintln!(
        "uploaded {size} bytes DC 1 -> DC 2 in {elapsed:?} ({:.0} MB/s); Envoy peak RSS DC 1 {} MB, DC 2 {} MB",
        size as f64 / 1e6 / elapsed.as_secs_f64(),
        peaks[0] / 1024,
        peaks[1] / 1024
    );
    for p in peaks {
        assert!(
            p < 400 * 1024,
            "an Envoy peaked at {} MB: the body was buffered",
            p / 1024
        );
    }
}

/// The filter configuration comes from ECDS (a watched file): a new version changes the
/// registry for new requests; a bad version is refused and the old one keeps serving.
#[test]
fn ecds_update_changes_the_registry() {
    let mut plan = ScopePlan::free().unwrap();
    plan.ecds_image = vec![DC1];
    let (_dir, mut topo) = start("scope-ecds", plan);
    assert_eq!(
        scoped(&topo, DC1, "{ image: DC 4 }"),
        (400, "scope: unknown site 'DC 4'".into())
    );
    assert_eq!(
        scoped(&topo, DC1, "{ image: DC 2 }"),
        (200, "IMAGE cat @ DC 2".into())
    );

    // Version 2: a site DC 4 whose image is DC 3's instance.
    let v2 = topo.plan.filter_config_with(
        DC1,
        "image",
        "  clusters:\n    - { service: image, site: DC 4, cluster: dc_3_image }\n",
    );
    topo.write_image_filter_ecds(DC1, &v2).unwrap();
    wait_for(Duration::from_secs(15), "the new registry", || {
        Ok(scoped(&topo, DC1, "{ image: DC 4 }") == (200, "IMAGE cat @ DC 3".into()))
    })
    .unwrap();
    assert_eq!(
        scoped(&topo, DC1, "{ image: DC 2 }"),
        (200, "IMAGE cat @ DC 2".into())
    );

    // Version 3 is broken: Envoy keeps version 2 and logs the field at fault.
    topo.sites[DC1]
        .envoy
        .tolerate_wasm_log("Wasm VM failed Failed to configure base Wasm plugin");
    let v3 = format!("{v2}  bogus_field: 1\n");
    topo.write_image_filter_ecds(DC1, &v3).unwrap();
    topo.sites[DC1]
        .envoy
        .wait_log(
            "invalid configuration: `http.bogus_field`",
            Duration::from_secs(15),
        )
        .unwrap();
    assert_eq!(
        scoped(&topo, DC1, "{ image: DC 4 }"),
        (200, "IMAGE cat @ DC 3".into())
    );
}

/// A WebSocket upgrade with a scope crosses the sidecars to the named site's instance, and the
/// upgraded connection carries messages both ways; without a scope it stays local.
#[test]
fn websocket_upgrade_follows_the_scope() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let (_dir, topo) = start("scope-ws", ScopePlan::free().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let talk = |site: usize, scope: Option<&str>, texts: &[&str]| -> Vec<String> {
        let port = topo.plan.listener(site, "image").unwrap();
        let mut req = format!("ws://127.0.0.1:{port}/ws")
            .into_client_request()
            .unwrap();
        if let Some(s) = scope {
            req.headers_mut().insert("x-scope", s.parse().unwrap());
        }
        let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        rt.block_on(async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let (mut ws, resp) = tokio::time::timeout(
                Duration::from_secs(10),
                tokio_tungstenite::client_async(req, tcp),
            )
            .await
            .expect("handshake within 10 s")
            .expect("101 Switching Protocols through Envoy");
            assert_eq!(resp.status().as_u16(), 101);
            let mut answers = Vec::new();
            for t in texts {
                ws.send(Message::text(t)).await.unwrap();
                let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
                    .await
                    .expect("answer within 10 s")
                    .expect("connection open")
                    .unwrap();
                answers.push(m.into_text().unwrap().as_str().to_owned());
            }
            ws.close(None).await.unwrap();
            answers
        })
    };

    let before = requests(&topo, DC2, "image");
    let answers = talk(DC1, Some("{ image: DC 2 }"), &["hello", "again"]);
    assert_eq!(answers, ["DC 2: hello", "DC 2: again"]);
    assert_eq!(
        requests(&topo, DC2, "image"),
        before + 1,
        "one upgrade served by DC 2's t"
    );
    // No scope: the local instance.
    assert_eq!(talk(DC3, None, &["x"]), ["DC 3: x"]);
}
