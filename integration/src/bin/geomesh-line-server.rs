//! The server of the test line protocol (protocols/line): a key-value map answering one line
//! per request line. It knows nothing of geomesh; the kit's end-to-end test puts two of them
//! behind the line filter.
//!
//! ```text
//! geomesh-line-server --listen 127.0.0.1:0     # prints "geomesh-line-server ready listen=<addr>"
//!
//! SET key value   -> OK
//! GET key...      -> VALUES v... ("-" for a missing key)
//! KEYS            -> KEYS k... (sorted)
//! other           -> ERR unknown command
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

type Map = Arc<Mutex<BTreeMap<String, String>>>;

fn answer(map: &Map, line: &str) -> String {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    let w: Vec<&str> = line.split(' ').filter(|w| !w.is_empty()).collect();
    match w.as_slice() {
        ["SET", k, v] => {
            m.insert((*k).to_owned(), (*v).to_owned());
            "OK".to_owned()
        }
        ["GET", keys @ ..] if !keys.is_empty() => {
            let vals: Vec<&str> = keys.iter().map(|k| m.get(*k).map_or("-", String::as_str)).collect();
            format!("VALUES {}", vals.join(" "))
        }
        ["KEYS"] => {
            let keys: Vec<&str> = m.keys().map(String::as_str).collect();
            format!("KEYS {}", keys.join(" ")).trim_end().to_owned()
        }
        _ => "ERR unknown command".to_owned(),
    }
}

fn serve(stream: TcpStream, map: Map) -> Result<()> {
    let mut out = stream.try_clone()?;
    for line in BufReader::new(stream).lines() {
        let line = line?;
        let mut a = answer(&map, line.trim_end_matches('\r'));
        a.push('\n');
        out.write_all(a.as_bytes())?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let listen = args
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1))
        .map_or("127.0.0.1:0", String::as_str);
    let listener = TcpListener::bind(listen).with_context(|| format!("bind {listen}"))?;
    println!("geomesh-line-server ready listen={}", listener.local_addr()?);
    let map: Map = Arc::default();
    for stream in listener.incoming() {
        let stream = stream?;
        let map = map.clone();
        std::thread::spawn(move || serve(stream, map));
    }
    Ok(())
}
