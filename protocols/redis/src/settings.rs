//! The `redis:` section of the filter configuration.
//!
//! ```yaml
//! workload_type: redis
//! default_cluster: redis1-master
//! upstream_timeout_ms: 5000          # core: a shard that does not answer within this: -ERR
//! redis:                             # every field optional
//!   max_bulk_bytes: 67108864         # longest bulk string accepted (client or server), 64 MiB
//!   max_aggregate_len: 1048576       # most elements of one array/map/set, arguments of a request
//!   max_frame_elements: 2097152      # most values in one reply, all levels together
//!   max_depth: 64                    # deepest nesting of a reply
//!   max_inline_bytes: 65536          # longest inline command line
//!   max_frame_bytes: 268435456       # most bytes of one request or reply
//!   max_pending_requests: 100000     # requests of one client waiting for replies
//!   max_transaction_commands: 100000 # commands queued between MULTI and EXEC
//!   timer_granularity_ms: 0          # how late a deadline may be noticed; 0 = timeout / 20, 1..100
//! ```
//!
//! The fields, their ranges and defaults are declared once, in [`SECTION`]: the parser below
//! reads them from there, and so does the JSON Schema (`schema/geomesh-filter.schema.json`).

use geomesh_core::config::spec::{doc, Default as Is, Field, Kind, Section, Workload};
use geomesh_core::config::fields::list;
use geomesh_core::{Config, ConfigError};
use serde_yaml_ng::Value;

use crate::Limits;

/// Validated `redis:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Decoder bounds for client requests and server replies.
    pub limits: Limits,
    /// Requests of one client connection waiting for their reply; more get an error reply.
    pub max_pending_requests: usize,
    /// Commands one `MULTI` may queue; more make the transaction fail at `EXEC`.
    pub max_transaction_commands: usize,
    /// How late a deadline may be noticed (ms); 0 = `upstream_timeout_ms / 20` within 1..=100.
    pub timer_granularity_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            max_pending_requests: 100_000,
            max_transaction_commands: 100_000,
            timer_granularity_ms: 0,
        }
    }
}

const fn int(name: &'static str, min: u64, max: u64, default: u64, text: &'static str) -> Field {
    Field { name, kind: Kind::Int { min, max }, required: false, default: Is::Int(default), doc: doc(text) }
}

/// The `redis:` section: every field optional.
pub const SECTION: Section = Section {
    id: "redis",
    doc: doc("Settings of the Redis filter (protocols/redis/README.md); every field is optional."),
    fields: &[
        int("max_bulk_bytes", 1, 512 << 20, 64 << 20, "Longest bulk string accepted, from a client or a server."),
        int("max_aggregate_len", 1, 1 << 26, 1 << 20, "Most elements of one array, map or set; most arguments of a request."),
        int("max_frame_elements", 1, 1 << 27, 2 << 20, "Most values in one reply, all levels together."),
        int("max_depth", 1, Limits::DEPTH_CEILING as u64, 64, "Deepest nesting of a reply."),
        int("max_inline_bytes", 16, 1 << 20, 64 << 10, "Longest inline command line."),
        int("max_frame_bytes", 1024, (1 << 31) - 1, 256 << 20, "Most bytes of one request or reply."),
        int("max_pending_requests", 1, 1 << 24, 100_000, "Requests of one client waiting for replies; more get an error reply."),
        int("max_transaction_commands", 1, 1 << 24, 100_000, "Commands queued between MULTI and EXEC; more make EXEC fail."),
        int(
            "timer_granularity_ms",
            0,
            10_000,
            0,
            "How late a deadline may be noticed (ms); 0 = upstream_timeout_ms / 20, within 1..100.",
        ),
    ],
    rules: &[],
};

/// `workload_type: redis` for the JSON Schema.
pub const SCHEMA: Workload = Workload {
    name: "redis",
    section: Some(&SECTION),
    section_required: false,
    routing_table: true,
    doc: doc("The Redis network filter: RESP2/RESP3 clients, keys routed and split over shards."),
};

impl Settings {
    /// Reads the `redis:` section of a validated configuration (absent = defaults).
    pub fn from_config(config: &Config) -> Result<Settings, ConfigError> {
        Self::from_value(config.extension.as_ref())
    }

    /// Reads a `redis:` section (`None` or null = defaults). Errors name the field
    /// (`redis.max_depth`).
    pub fn from_value(section: Option<&Value>) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        let map = match section {
            None | Some(Value::Null) => return Ok(s),
            Some(Value::Mapping(m)) => m,
            Some(_) => return Err(ConfigError::new("redis", "expected a map of settings")),
        };
        for (k, v) in map {
            let name = k
                .as_str()
                .ok_or_else(|| ConfigError::new("redis", "field names must be strings"))?;
            let field = format!("redis.{name}");
            let Some(spec) = SECTION.field(name) else {
                let names: Vec<&str> = SECTION.names().collect();
                return Err(ConfigError::new(
                    field,
                    format!("unknown field; expected one of {}", list(&names)),
                ));
            };
            if v.is_null() {
                continue; // left empty: the default, as for every optional field
            }
            let n = spec.int_value(v, &field)?;
            let l = &mut s.limits;
            match name {
                "max_bulk_bytes" => l.max_bulk_len = n as usize,
                "max_aggregate_len" => l.max_aggregate_len = n as usize,
                "max_frame_elements" => l.max_frame_elements = n as usize,
                "max_depth" => l.max_depth = n as usize,
                "max_inline_bytes" => l.max_inline_len = n as usize,
                "max_frame_bytes" => l.max_frame_len = n as usize,
                "max_pending_requests" => s.max_pending_requests = n as usize,
                "max_transaction_commands" => s.max_transaction_commands = n as usize,
                "timer_granularity_ms" => s.timer_granularity_ms = n,
                // Declared in SECTION but not read here: the agreement tests of
                // tools/config-schema set every declared field and see this.
                _ => return Err(ConfigError::new(field, "declared but not read (a geomesh bug)")),
            }
        }
        Ok(s)
    }

    /// The granularity actually used with an upstream timeout of `timeout_ms`.
    pub fn granularity(&self, timeout_ms: u64) -> u64 {
        if self.timer_granularity_ms > 0 {
            self.timer_granularity_ms
        } else {
            (timeout_ms / 20).clamp(1, 100)
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn parse(yaml: &str) -> Result<Settings, ConfigError> {
        let c = Config::parse(yaml.as_bytes())?;
        Settings::from_config(&c)
    }

    #[test]
    fn defaults_and_fields() {
        let s = parse("workload_type: redis\ndefault_cluster: a\n").unwrap();
        assert_eq!(s, Settings::default());
        let s = parse(
            "workload_type: redis\ndefault_cluster: a\nredis:\n  max_bulk_bytes: 10\n  max_depth: 3\n  max_pending_requests: 7\n  timer_granularity_ms: 5\n",
        )
        .unwrap();
        assert_eq!(s.limits.max_bulk_len, 10);
        assert_eq!(s.limits.max_depth, 3);
        assert_eq!(s.max_pending_requests, 7);
        assert_eq!(s.granularity(5000), 5);
        assert_eq!(Settings::default().granularity(5000), 100);
        assert_eq!(Settings::default().granularity(200), 10);
        assert_eq!(Settings::default().granularity(1), 1);
    }

    #[test]
    fn the_table_declares_the_defaults_the_parser_applies() {
        let mut yaml = String::from("workload_type: redis\ndefault_cluster: a\nredis:\n");
        for f in SECTION.fields {
            let Is::Int(n) = f.default else { panic!("{}: no literal default", f.name) };
            yaml.push_str(&format!("  {}: {n}\n", f.name));
        }
        assert_eq!(parse(&yaml).unwrap(), Settings::default());
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse("workload_type: redis\ndefault_cluster: a\nredis:\n  max_depth: 0\n")
            .unwrap_err();
        assert_eq!(e.field, "redis.max_depth");
        assert!(e.message.contains("between 1 and"), "{e}");
        let e =
            parse("workload_type: redis\ndefault_cluster: a\nredis:\n  max_dept: 3\n").unwrap_err();
        assert_eq!(e.field, "redis.max_dept");
        assert!(e.message.contains("unknown field"), "{e}");
        let e = parse("workload_type: redis\ndefault_cluster: a\nredis: [1]\n").unwrap_err();
        assert_eq!(e.field, "redis");
        let e = parse("workload_type: redis\ndefault_cluster: a\nredis:\n  max_bulk_bytes: big\n")
            .unwrap_err();
        assert_eq!(e.field, "redis.max_bulk_bytes");
    }
}
