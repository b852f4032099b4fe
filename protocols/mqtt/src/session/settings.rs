//! The `mqtt:` section of the filter configuration.
//!
//! ```yaml
//! workload_type: mqtt
//! default_cluster: mqtt1
//! upstream_timeout_ms: 5000          # core: a broker silent this long ends the client's session
//! mqtt:                              # every field optional
//!   max_packet_size: 4194304         # largest packet accepted (client or broker), fixed header included
//!   max_topic_len: 65535             # longest topic name or filter
//!   max_properties_bytes: 65536      # longest properties section of one packet
//!   max_user_properties: 64          # most user properties in one packet
//!   max_topic_filters: 128           # most filters in one SUBSCRIBE or UNSUBSCRIBE
//!   topic_alias_maximum: 64          # the Topic Alias Maximum clients are given (aliases resolved by the proxy)
//!   max_held_publishes: 1000         # broker PUBLISHes held per client while its Receive Maximum is full
//!   max_held_bytes: 16777216         # and their bytes
//! ```
//!
//! The fields, their ranges and defaults are declared once, in [`SECTION`]; the parser below
//! and the JSON Schema (`schema/geomesh-filter.schema.json`) read them from there.

use geomesh_core::config::fields::list;
use geomesh_core::config::spec::{doc, Default as Is, Field, Kind, Section, Workload};
use geomesh_core::{Config, ConfigError};
use serde_yaml_ng::Value;

use crate::Limits;

/// Validated `mqtt:` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Decoder bounds, for the client's packets and the brokers'.
    pub limits: Limits,
    /// The Topic Alias Maximum the client is given: aliases are resolved by the proxy and
    /// never forwarded, so the brokers' own maximums do not matter.
    pub topic_alias_maximum: u16,
    /// Most QoS 1/2 PUBLISHes of the brokers the proxy holds for one client while the
    /// client's Receive Maximum is full (`crate::flow`).
    pub max_held_publishes: u16,
    /// Most bytes of those.
    pub max_held_bytes: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            topic_alias_maximum: 64,
            max_held_publishes: 1000,
            max_held_bytes: 16 << 20,
        }
    }
}

const fn int(name: &'static str, min: u64, max: u64, default: u64, text: &'static str) -> Field {
    Field {
        name,
        kind: Kind::Int { min, max },
        required: false,
        default: Is::Int(default),
        doc: doc(text),
    }
}

/// The `mqtt:` section: every field optional.
pub const SECTION: Section = Section {
    id: "mqtt",
    doc: doc("Settings of the MQTT filter (protocols/mqtt/README.md); every field is optional."),
    fields: &[
        int(
            "max_packet_size",
            64,
            Limits::PROTOCOL_MAX_PACKET as u64,
            4 << 20,
            "Largest packet accepted from a client or a broker, fixed header included; larger: 0x95 Packet too large.",
        ),
        int("max_topic_len", 1, 65_535, 65_535, "Longest topic name or topic filter."),
        int("max_properties_bytes", 0, 1 << 24, 64 << 10, "Longest properties section of one packet."),
        int("max_user_properties", 0, 65_535, 64, "Most user properties in one packet."),
        int("max_topic_filters", 1, 65_535, 128, "Most topic filters in one SUBSCRIBE or UNSUBSCRIBE."),
        int(
            "topic_alias_maximum",
            0,
            65_535,
            64,
            "Topic Alias Maximum given to MQTT 5.0 clients (aliases are resolved by the proxy, never forwarded).",
        ),
        int(
            "max_held_publishes",
            0,
            65_535,
            1000,
            "Most QoS 1/2 PUBLISHes of the brokers held for one client while its Receive Maximum is full; beyond, the broker sending more is dropped and the client disconnected.",
        ),
        int(
            "max_held_bytes",
            0,
            1 << 30,
            16 << 20,
            "Most bytes of PUBLISHes held for one client while its Receive Maximum is full.",
        ),
    ],
    rules: &[],
};

/// `workload_type: mqtt` for the JSON Schema.
pub const SCHEMA: Workload = Workload {
    name: "mqtt",
    section: Some(&SECTION),
    section_required: false,
    routing_table: true,
    doc: doc("The MQTT network filter: MQTT 3.1.1 and 5.0 clients, topics and payloads routed over brokers, subscriptions fanned out and in."),
};

impl Settings {
    /// Reads the `mqtt:` section of a validated configuration (absent = defaults).
    pub fn from_config(config: &Config) -> Result<Settings, ConfigError> {
        Self::from_value(config.extension.as_ref())
    }

    /// Reads an `mqtt:` section (`None` or null = defaults). Errors name the field
    /// (`mqtt.max_packet_size`).
    pub fn from_value(section: Option<&Value>) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        let map = match section {
            None | Some(Value::Null) => return Ok(s),
            Some(Value::Mapping(m)) => m,
            Some(_) => return Err(ConfigError::new("mqtt", "expected a map of settings")),
        };
        for (k, v) in map {
            let name = k
                .as_str()
                .ok_or_else(|| ConfigError::new("mqtt", "field names must be strings"))?;
            let field = format!("mqtt.{name}");
            let Some(spec) = SECTION.field(name) else {
                let names: Vec<&str> = SECTION.names().collect();
                return Err(ConfigError::new(
                    field,
                    format!("unknown field; expected one of {}", list(&names)),
                ));
            };
            if v.is_null() {
                continue;
            }
            let n = spec.int_value(v, &field)?;
            let l = &mut s.limits;
            match name {
                "max_packet_size" => l.max_packet_size = n as u32,
                "max_topic_len" => l.max_topic_len = n as u16,
                "max_properties_bytes" => l.max_properties_len = n as u32,
                "max_user_properties" => l.max_user_properties = n as u16,
                "max_topic_filters" => l.max_topic_filters = n as u16,
                "topic_alias_maximum" => s.topic_alias_maximum = n as u16,
                "max_held_publishes" => s.max_held_publishes = n as u16,
                "max_held_bytes" => s.max_held_bytes = n as u32,
                _ => {
                    return Err(ConfigError::new(
                        field,
                        "declared but not read (a geomesh bug)",
                    ))
                }
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn parse(yaml: &str) -> Result<Settings, ConfigError> {
        Settings::from_config(&Config::parse(yaml.as_bytes())?)
    }

    #[test]
    fn defaults_fields_and_errors() {
        assert_eq!(
            parse("workload_type: mqtt\ndefault_cluster: a\n").unwrap(),
            Settings::default()
        );
        let s = parse("workload_type: mqtt\ndefault_cluster: a\nmqtt:\n  max_packet_size: 1024\n  topic_alias_maximum: 0\n  max_topic_filters:\n").unwrap();
        assert_eq!(
            (
                s.limits.max_packet_size,
                s.topic_alias_maximum,
                s.limits.max_topic_filters
            ),
            (1024, 0, 128)
        );
        let e = parse("workload_type: mqtt\ndefault_cluster: a\nmqtt:\n  max_packet_size: 10\n")
            .unwrap_err();
        assert_eq!(e.field, "mqtt.max_packet_size");
        let e = parse("workload_type: mqtt\ndefault_cluster: a\nmqtt:\n  nope: 1\n").unwrap_err();
        assert_eq!(e.field, "mqtt.nope");
    }
}
