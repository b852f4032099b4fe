//! The README's main command (`make demo` = `geomesh-demo`) runs in the test suite: `--check`
//! starts the whole demo topology (Redis over 2 sites, scope-lang over 3, replication over 3, InfluxDB over 2 shards, Kafka over 2 shards, MQTT over 2 brokers:
//! 38 processes), drives and verifies its traffic, runs the commands it prints, stops and exits 0;
//! in serving mode a SIGINT (Ctrl-C) stops every process it started. Both on free ports (`--free-ports`) so that a demo left
//! running on the documented ports does not disturb the test.
//!
//! Needs what `make build` makes: target/wasm/*.wasm and the native binaries (geomesh-bridge,
//! geomesh-agent) in the same profile and target dir as the tests; redis-server, redis-cli,
//! curl, json-server and Envoy (`scripts/bootstrap.sh`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One demo at a time: each runs 30 processes.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// (pid, ppid, pgrp, state) of every process.
fn processes() -> Vec<(i32, i32, i32, char)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let state = f[0].chars().next().unwrap_or('?');
        if let (Ok(ppid), Ok(pgrp)) = (f[1].parse(), f[2].parse()) {
            v.push((pid, ppid, pgrp, state));
        }
    }
    v
}

/// The process groups of `parent`'s children that have their own group (the harness gives each
/// server its own; short commands such as redis-cli stay in the demo's group, which is ours).
fn child_groups(parent: i32) -> BTreeSet<i32> {
    // SAFETY: getpgrp(2) has no arguments and cannot fail.
    let ours = unsafe { libc::getpgrp() };
    processes().into_iter().filter(|p| p.1 == parent && p.2 != ours).map(|p| p.2).collect()
}

/// Live (non-zombie) processes in `groups`.
fn alive_in(groups: &BTreeSet<i32>) -> Vec<(i32, i32)> {
    processes()
        .into_iter()
        .filter(|p| groups.contains(&p.2) && p.3 != 'Z')
        .map(|p| (p.0, p.2))
        .collect()
}

struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
    out: Vec<String>,
    groups: BTreeSet<i32>,
}

impl Run {
    fn start(args: &[&str]) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_geomesh-demo"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start geomesh-demo");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                println!("{l}");
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Run { child, lines, out: Vec::new(), groups: BTreeSet::new() }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Reads output, noting the children's process groups, until `until` matches a line or the
    /// demo exits; panics after `timeout`.
    fn pump(&mut self, timeout: Duration, until: impl Fn(&str) -> bool) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let pid = self.pid();
            self.groups.extend(child_groups(pid));
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    let hit = until(&l);
                    self.out.push(l);
                    if hit {
                        return None;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Some(self.wait(deadline.saturating_duration_since(Instant::now())));
                }
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("geomesh-demo did not get there within {timeout:?}; output so far:\n{}", self.out.join("\n"));
            }
        }
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.out.push(l);
                }
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("geomesh-demo still running after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn text(&self) -> String {
        self.out.join("\n")
    }

    /// Nothing the demo started is left running.
    fn assert_no_orphans(&self) {
        assert!(self.groups.len() >= 30, "expected the demo's 30+ process groups, saw {:?}", self.groups);
        let left = alive_in(&self.groups);
        assert!(left.is_empty(), "processes left running after the demo exited (pid, group): {left:?}");
    }
}

#[test]
fn demo_check_passes_and_leaves_nothing_running() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t = Instant::now();
    let mut run = Run::start(&["--check", "--free-ports"]);
    let status = run.pump(Duration::from_secs(120), |_| false).expect("exited");
    let text = run.text();
    assert!(status.success(), "geomesh-demo --check failed ({status}):\n{text}");
    for needle in [
        "== Redis sharding",
        "every key is on the shard the routing table names, and only there",
        "== scope-lang",
        "x-scope: { compute: DC 1, image: DC 2 }",
        "== replication",
        "DC 3: no replica",
        "== MQTT sharding",
        "the sensors/# subscriber through geomesh",
        "== what runs where",
        "== try it",
        "commands above that do not block were run and gave what they describe",
        "checks passed",
        "stopped in",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from the output:\n{text}");
    }
    assert!(!text.contains("FAILED"), "{text}");
    run.assert_no_orphans();
    eprintln!("geomesh-demo --check: {:.1} s", t.elapsed().as_secs_f64());
}

#[test]
fn ctrl_c_stops_every_process() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t = Instant::now();
    let mut run = Run::start(&["--free-ports"]);
    let exited = run.pump(Duration::from_secs(120), |l| l.starts_with("serving until Ctrl-C"));
    assert!(exited.is_none(), "geomesh-demo exited before serving:\n{}", run.text());
    let groups = child_groups(run.pid());
    assert_eq!(groups.len(), 38, "the demo's processes while serving: {groups:?}");
    // SAFETY: kill(2) on our own child's pid; no memory involved.
    let rc = unsafe { libc::kill(run.pid(), libc::SIGINT) };
    assert_eq!(rc, 0);
    let status = run.wait(Duration::from_secs(30));
    assert!(status.success(), "exit after SIGINT: {status}\n{}", run.text());
    assert!(run.text().contains("stopped in"), "{}", run.text());
    run.assert_no_orphans();
    eprintln!("geomesh-demo, serve then SIGINT: {:.1} s", t.elapsed().as_secs_f64());
}
