//! Field tables (geomesh_core::config::spec) to JSON Schema, draft-07 (what
//! yaml-language-server and most editors read best).
//!
//! Each [`Section`] becomes a definition named by its id; a field becomes its kind's schema with
//! the field's doc as `description` and a literal default as `default`; rules JSON Schema can
//! state (a `Switch`) become `if`/`then`/`else`, the others are written into the section's
//! description. The document's workloads become one `if`/`then`/`else` each: with
//! `workload_type: X`, the section `X` is X's (required if the workload says so, and
//! `routing_table` empty where it means nothing); otherwise `X` is refused, as the parser does.

use geomesh_core::config::spec::{Default, Field, Kind, Rule, Section, Workload};
use geomesh_core::config::tables::DOCUMENT;
use serde_json::{json, Map, Value};

/// Where the published schema lives, relative to the repository root.
pub const SCHEMA_PATH: &str = "schema/geomesh-filter.schema.json";

/// The schema's `$id`.
pub const SCHEMA_ID: &str = "https://raw.githubusercontent.com/geomesh/geomesh/main/schema/geomesh-filter.schema.json";

/// Definitions written so far, in the order first met.
#[derive(Default)]
struct Defs {
    done: Map<String, Value>,
}

impl Defs {
    fn reference(&mut self, s: &'static Section) -> Value {
        if !self.done.contains_key(s.id) {
            // Reserve the name first: a section met again while being written is referenced.
            self.done.insert(s.id.to_owned(), Value::Null);
            let body = section(s, self);
            self.done.insert(s.id.to_owned(), body);
        }
        json!({ "$ref": format!("#/definitions/{}", s.id) })
    }
}

fn kind(k: &Kind, defs: &mut Defs) -> Value {
    match *k {
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::Int { min, max } => json!({ "type": "integer", "minimum": min, "maximum": max }),
        Kind::Text(t) => {
            let mut o = Map::new();
            o.insert("type".into(), "string".into());
            let (min, max) = t.length();
            if min > 0 {
                o.insert("minLength".into(), min.into());
            }
            if let Some(max) = max {
                o.insert("maxLength".into(), max.into());
            }
            if let Some(p) = t.pattern() {
                o.insert("pattern".into(), p.into());
            }
            Value::Object(o)
        }
        Kind::OneOf(names) => json!({ "type": "string", "enum": names }),
        Kind::List { item, min_items, unique } => {
            let mut o = Map::new();
            o.insert("type".into(), "array".into());
            o.insert("items".into(), kind(item, defs));
            if min_items > 0 {
                o.insert("minItems".into(), min_items.into());
            }
            if unique {
                o.insert("uniqueItems".into(), true.into());
            }
            Value::Object(o)
        }
        Kind::Section(s) => defs.reference(s),
        Kind::Map(v) => json!({
            "type": ["object", "null"],
            "propertyNames": { "minLength": 1 },
            "additionalProperties": kind(v, defs),
        }),
        Kind::Either(a, b) => json!({ "anyOf": [kind(a, defs), kind(b, defs)] }),
    }
}

/// `v`, or null: an optional field left empty is the same as an absent one.
fn nullable(mut v: Value) -> Value {
    let Value::Object(o) = &mut v else { return v };
    match o.get_mut("type") {
        Some(Value::String(t)) => {
            let t = std::mem::take(t);
            o.insert("type".into(), json!([t, "null"]));
            if let Some(Value::Array(names)) = o.get_mut("enum") {
                names.push(Value::Null);
            }
            v
        }
        Some(Value::Array(types)) => {
            if !types.contains(&Value::from("null")) {
                types.push("null".into());
            }
            v
        }
        _ => json!({ "anyOf": [{ "type": "null" }, v] }),
    }
}

fn field(f: &Field, defs: &mut Defs) -> Value {
    let mut v = kind(&f.kind, defs);
    if !f.required {
        v = nullable(v);
    }
    let mut doc = f.doc.to_owned();
    if let Kind::Text(t) = f.kind {
        if t.pattern().is_some() {
            doc.push_str(&format!(" Value: {}.", t.describe()));
        }
    }
    let default = match f.default {
        Default::None => None,
        Default::Bool(b) => Some(Value::from(b)),
        Default::Int(n) => Some(Value::from(n)),
        Default::Text(t) => Some(Value::from(t)),
        Default::Computed(how) => {
            doc.push_str(&format!(" Default: {how}."));
            None
        }
    };
    let Value::Object(o) = &mut v else { return v };
    // A `$ref` with siblings is ignored by draft-07 validators: wrap it.
    if o.contains_key("$ref") {
        v = json!({ "allOf": [v] });
    }
    if let Value::Object(o) = &mut v {
        o.insert("description".into(), doc.into());
        if let Some(d) = default {
            o.insert("default".into(), d);
        }
    }
    v
}

/// `require` present (and not left empty), `refuse` absent (or left empty).
fn presence(require: &[&str], refuse: &[&str]) -> Value {
    let mut o = Map::new();
    let mut properties = Map::new();
    for n in require {
        properties.insert((*n).to_owned(), json!({ "not": { "type": "null" } }));
    }
    for n in refuse {
        properties.insert((*n).to_owned(), json!({ "type": "null" }));
    }
    if !require.is_empty() {
        o.insert("required".into(), json!(require));
    }
    if !properties.is_empty() {
        o.insert("properties".into(), Value::Object(properties));
    }
    Value::Object(o)
}

fn rule(r: &Rule) -> Result<Value, String> {
    Ok(match *r {
        Rule::Switch { field, values, when_absent, require, forbid, otherwise_require, otherwise_forbid } => {
            let mut cond = json!({ "properties": { field: { "enum": values } } });
            if !when_absent {
                cond["required"] = json!([field]);
            }
            json!({
                "if": cond,
                "then": presence(require, forbid),
                "else": presence(otherwise_require, otherwise_forbid),
            })
        }
        Rule::Greater { field, than } => return Err(format!("{field} must be greater than {than}.")),
        Rule::AtLeast { field, than } => return Err(format!("{field} must be at least {than}.")),
        Rule::Differ { a, b } => return Err(format!("{a} and {b} must differ.")),
        Rule::Note(text) => return Err(text.to_owned()),
    })
}

fn section(s: &'static Section, defs: &mut Defs) -> Value {
    let mut properties = Map::new();
    for f in s.fields {
        properties.insert(f.name.to_owned(), field(f, defs));
    }
    let required: Vec<&str> = s.fields.iter().filter(|f| f.required).map(|f| f.name).collect();
    let mut all_of = Vec::new();
    let mut description = s.doc.to_owned();
    let mut words = Vec::new();
    for r in s.rules {
        match rule(r) {
            Ok(v) => all_of.push(v),
            Err(text) => words.push(text),
        }
    }
    if !words.is_empty() {
        description.push_str(" Also checked by the filter: ");
        description.push_str(&words.join(" "));
    }
    let mut o = Map::new();
    o.insert("type".into(), "object".into());
    o.insert("description".into(), description.into());
    o.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        o.insert("required".into(), json!(required));
    }
    o.insert("additionalProperties".into(), false.into());
    if !all_of.is_empty() {
        o.insert("allOf".into(), Value::Array(all_of));
    }
    Value::Object(o)
}

fn workload_rule(w: &Workload) -> Value {
    let mut then = Map::new();
    if w.section_required {
        then.insert("required".into(), json!([w.name]));
    }
    if !w.routing_table {
        then.insert(
            "properties".into(),
            json!({ "routing_table": { "maxProperties": 0, "description": "Not used by this workload: leave it out." } }),
        );
    }
    json!({
        "if": { "properties": { "workload_type": { "const": w.name } }, "required": ["workload_type"] },
        "then": Value::Object(then),
        "else": { "not": { "required": [w.name] } },
    })
}

/// The whole schema for these workloads (every `workload_type`, in order).
pub fn schema(workloads: &[Workload]) -> Value {
    let mut defs = Defs::default();
    let Value::Object(mut doc) = section(&DOCUMENT, &mut defs) else {
        return Value::Null;
    };
    if let Some(Value::Object(props)) = doc.get_mut("properties") {
        for w in workloads {
            let v = match (w.section, w.section_required) {
                (Some(s), true) => json!({ "allOf": [defs.reference(s)], "description": w.doc }),
                (Some(s), false) => json!({ "anyOf": [{ "type": "null" }, defs.reference(s)], "description": w.doc }),
                (None, _) => json!({ "type": ["object", "null"], "description": w.doc }),
            };
            props.insert(w.name.to_owned(), v);
        }
    }
    let mut rules = match doc.remove("allOf") {
        Some(Value::Array(own)) => own,
        _ => Vec::new(),
    };
    rules.extend(workloads.iter().map(workload_rule));
    doc.insert("allOf".into(), Value::Array(rules));
    let mut top = Map::new();
    top.insert("$schema".into(), "http://json-schema.org/draft-07/schema#".into());
    top.insert("$id".into(), SCHEMA_ID.into());
    top.insert("title".into(), "geomesh filter configuration".into());
    top.insert(
        "$comment".into(),
        "Written by tools/config-schema from the field tables the filters' parsers read \
         (protocols/core/src/config/tables.rs and each protocol's section table); do not edit: \
         `cargo run -p geomesh-config-schema -- --write`."
            .into(),
    );
    top.extend(doc);
    top.insert("definitions".into(), Value::Object(defs.done));
    Value::Object(top)
}

/// The schema as the committed file holds it: pretty JSON and a final newline.
pub fn text(schema: &Value) -> String {
    let mut s = serde_json::to_string_pretty(schema).unwrap_or_default();
    s.push('\n');
    s
}
