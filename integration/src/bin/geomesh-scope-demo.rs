//! Starts the three-site scope-lang topology of `examples/scope/` (Envoy + geomesh-agent +
//! example services s and t per site), runs the paper's commands through it and prints what
//! happened.
//!
//! ```text
//! cargo run --release -p geomesh-integration --bin geomesh-scope-demo            # run, print, stop
//! cargo run --release -p geomesh-integration --bin geomesh-scope-demo -- --serve # then stay up (Ctrl-C)
//! cargo run --release -p geomesh-integration --bin geomesh-scope-demo -- --free-ports
//! ```
//! With the fixed ports of `examples/scope/` (default) the sites answer on 127.0.0.1:18k01
//! (compute) and 18k02 (image), their agents' status pages on 18k10, for k = 1, 2, 3.
//! Needs `make build` (target/wasm/geomesh_filter_scope.wasm and the native binaries in the
//! same profile as this one).

use anyhow::Result;
use geomesh_integration::envoy::EnvoyOptions;
use geomesh_integration::scope::{run_demo_commands, ScopePlan, ScopeTopology};
use geomesh_integration::TestDir;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let serve = args.iter().any(|a| a == "--serve");
    let plan = if args.iter().any(|a| a == "--free-ports") {
        ScopePlan::free()?
    } else {
        ScopePlan::fixed()
    };
    let dir = TestDir::new("scope-demo")?;
    println!("starting 3 sites (logs in {}) ...", dir.path().display());
    let mut topo = ScopeTopology::start(&dir, plan, EnvoyOptions::default())?;
    for (i, s) in topo.sites.iter().enumerate() {
        println!(
            "{}: compute {}  image {}  agent http://127.0.0.1:{}/  envoy admin {}",
            s.name,
            topo.url(i, "compute"),
            topo.url(i, "image"),
            topo.plan.ports[i].agent,
            s.envoy.admin_port()
        );
    }
    run_demo_commands(&mut topo, &mut std::io::stdout())?;
    if serve {
        println!(
            "\nserving; try: curl -H 'x-scope: {{ compute: DC 1, image: DC 2 }}' {}/compute/cat",
            topo.url(0, "compute")
        );
        println!("Ctrl-C to stop");
        // Wait for Ctrl-C or SIGTERM, then return: dropping the topology stops every process.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r,
                _ = term.recv() => Ok(()),
            }
        })?;
        println!("stopping");
    }
    drop(topo);
    Ok(())
}
