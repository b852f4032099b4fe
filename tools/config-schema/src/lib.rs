//! The JSON Schema of the filter configuration (`schema/geomesh-filter.schema.json`), written
//! from the same field tables the parsers read (geomesh_core::config::spec): the core's
//! document and route, and each protocol's section ([`workloads::ENTRIES`]).
//!
//! `cargo run -p geomesh-config-schema -- --write` rewrites the committed file; the crate's
//! tests fail when it differs from what the tables say, and check the tables against the
//! parsers field by field (tests/agreement.rs).
#![forbid(unsafe_code)]

pub mod emit;
pub mod workloads;

pub use emit::{SCHEMA_ID, SCHEMA_PATH};
pub use workloads::check;

/// The schema of every workload.
pub fn schema() -> serde_json::Value {
    emit::schema(&workloads::all())
}

/// The schema as the committed file holds it.
pub fn schema_text() -> String {
    emit::text(&schema())
}

/// A configuration text (YAML or JSON) as the JSON instance an editor validates: YAML's
/// non-string keys (`1234:`, `true:`) become their text, as yaml-language-server does.
pub fn instance(text: &str) -> Result<serde_json::Value, String> {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    to_json(&doc)
}

/// [`instance`] of an already parsed YAML value.
pub fn to_json(v: &serde_yaml_ng::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    use serde_yaml_ng::Value as Y;
    // No recursion limit is needed: the texts are the repository's own.
    Ok(match v {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(*b),
        Y::Number(n) => serde_json::to_value(n).map_err(|e| e.to_string())?,
        Y::String(s) => J::String(s.clone()),
        Y::Sequence(items) => J::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Y::Mapping(m) => {
            let mut o = serde_json::Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s.clone(),
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".to_owned(),
                    other => return Err(format!("a map key that is not a scalar: {other:?}")),
                };
                o.insert(key, to_json(v)?);
            }
            J::Object(o)
        }
        Y::Tagged(t) => to_json(&t.value)?,
    })
}

/// A validator of [`schema`] (draft-07, as the file declares).
pub fn validator() -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .build(&schema())
        .map_err(|e| format!("the schema does not compile: {e}"))
}
