//! Shared by the agent's tests: free ports and a real json-server 0.17 per site.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A real json-server 0.17 (killed on drop).
pub struct JsonServer {
    pub port: u16,
    child: Child,
}

impl JsonServer {
    pub fn start(dir: &Path, name: &str, seed: &Value) -> JsonServer {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let bin = root.join(".cache/node/node_modules/.bin/json-server");
        assert!(bin.exists(), "json-server not found at {}: run scripts/bootstrap.sh", bin.display());
        let db = dir.join(format!("{name}.json"));
        std::fs::write(&db, seed.to_string()).unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--quiet"])
            .arg(&db)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "json-server {name} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        JsonServer { port, child }
    }
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

