//! Real Kafka clients for the tests: confluent-kafka (Python binding of librdkafka, the C
//! client most Kafka applications use) and kafka-python (pure Python, its own implementation of
//! the protocol), both installed by `scripts/bootstrap.sh` into `.cache/kafka-py`.
//!
//! A client runs as one `python3` process per operation (`src/kafka/client.py`, which documents
//! the operations): it gets its operation as JSON and prints what happened as JSON (offsets the
//! broker acknowledged, records read with topic, partition and offset).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::paths::kafka_py_path;
use crate::process::{Proc, TestDir};

const CLIENT_PY: &str = include_str!("kafka/client.py");

/// Which client library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaClient {
    /// confluent-kafka (librdkafka).
    Confluent,
    /// kafka-python.
    KafkaPython,
}

impl KafkaClient {
    pub const ALL: [KafkaClient; 2] = [KafkaClient::Confluent, KafkaClient::KafkaPython];

    pub fn name(self) -> &'static str {
        match self {
            KafkaClient::Confluent => "confluent",
            KafkaClient::KafkaPython => "kafka-python",
        }
    }

    /// Runs one operation (see `src/kafka/client.py`) against `bootstrap` and returns its JSON
    /// answer. `op` is an object; `client` and `bootstrap` are added here. Fails with the
    /// client's stderr when it exits non-zero or runs past `timeout`.
    pub fn run(
        self,
        dir: &TestDir,
        bootstrap: &str,
        op: Value,
        timeout: Duration,
    ) -> Result<Value> {
        let mut op = op;
        let Some(obj) = op.as_object_mut() else {
            bail!("a Kafka client operation is a JSON object, got {op}");
        };
        obj.insert("client".into(), json!(self.name()));
        obj.insert("bootstrap".into(), json!(bootstrap));
        let script = dir.join("kafka_client.py");
        if !script.is_file() {
            dir.write("kafka_client.py", CLIENT_PY)?;
        }
        let what = obj
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg(op.to_string())
            .env("PYTHONPATH", kafka_py_path()?)
            .env("PYTHONDONTWRITEBYTECODE", "1");
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{}-{what}-{}",
            self.name(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut proc = Proc::spawn(dir, &name, cmd)?;
        let status = proc.wait_exit(timeout)?;
        let (out, err) = proc.logs();
        if !status.success() {
            bail!("{name} against {bootstrap} failed ({status}):\n{err}");
        }
        let last = out.lines().last().unwrap_or_default();
        serde_json::from_str(last).with_context(|| format!("{name}: not JSON: {out}\n{err}"))
    }
}
