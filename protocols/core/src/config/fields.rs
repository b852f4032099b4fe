//! Helpers for validating a YAML (or JSON) configuration document field by field, with errors
//! that name the field at fault by its dotted path (`http.agent.tick_ms`). [`Config`] uses them
//! for the common fields, and protocol crates for their own sections (`redis:`, `http:`).
//!
//! `path` is the dotted path of the map being read (empty for the document itself); a field's
//! path is `path.key`.
//!
//! [`Config`]: super::Config

use serde_yaml_ng::{Mapping, Value};

use super::ConfigError;

/// What a value is, for error messages: `a map`, `a list`, `nothing`, ...
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

/// The path of field `key` of the map at `path`: `path.key`, or `key` at the top.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Names for an error message: `` `a`, `b`, `c` ``.
pub fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `v` as a map, else "expected a map, found ..." about `path`.
pub fn as_map<'a>(v: &'a Value, path: &str) -> Result<&'a Mapping, ConfigError> {
    match v {
        Value::Mapping(m) => Ok(m),
        other => Err(ConfigError::new(
            path,
            format!("expected a map, found {}", kind_of(other)),
        )),
    }
}

/// A field name of the map at `path`, which must be a string.
pub fn key_str<'a>(k: &'a Value, path: &str) -> Result<&'a str, ConfigError> {
    k.as_str().ok_or_else(|| {
        ConfigError::new(
            path,
            format!("field names must be strings, found {}", kind_of(k)),
        )
    })
}

/// Refuses a field of the map at `path` that is not in `allowed` ("unknown field; expected one
/// of ...", about that field) or whose name is not a string.
pub fn check_fields(map: &Mapping, allowed: &[&str], path: &str) -> Result<(), ConfigError> {
    check_names(map, allowed.iter().copied(), path)
}

/// [`check_fields`] over names given as an iterator (a section table's,
/// [`super::spec::Section::check`]).
pub fn check_names<'n>(
    map: &Mapping,
    allowed: impl Iterator<Item = &'n str> + Clone,
    path: &str,
) -> Result<(), ConfigError> {
    for (k, _) in map {
        let k = key_str(k, path)?;
        if !allowed.clone().any(|a| a == k) {
            let names: Vec<&str> = allowed.collect();
            return Err(ConfigError::new(
                join(path, k),
                format!("unknown field; expected one of {}", list(&names)),
            ));
        }
    }
    Ok(())
}

/// The string field `key`; `None` when absent or null, an error when of another kind.
pub fn opt_str<'a>(
    map: &'a Mapping,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, ConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ConfigError::new(
            join(path, key),
            format!("expected a string, found {}", kind_of(other)),
        )),
    }
}

/// The string field `key`, which must be there ("missing (required)").
pub fn req_str<'a>(map: &'a Mapping, key: &str, path: &str) -> Result<&'a str, ConfigError> {
    opt_str(map, key, path)?.ok_or_else(|| ConfigError::new(join(path, key), "missing (required)"))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn map(yaml: &str) -> Mapping {
        match serde_yaml_ng::from_str(yaml).unwrap() {
            Value::Mapping(m) => m,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn paths_and_messages() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a.b", "c"), "a.b.c");
        assert_eq!(list(&["x", "y"]), "`x`, `y`");
        let m = map("s: text\nn: 3\nz: ~\n");
        assert_eq!(opt_str(&m, "s", "sec").unwrap(), Some("text"));
        assert_eq!(opt_str(&m, "z", "sec").unwrap(), None);
        assert_eq!(opt_str(&m, "absent", "sec").unwrap(), None);
        let e = opt_str(&m, "n", "sec").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("sec.n", "expected a string, found a number")
        );
        let e = req_str(&m, "absent", "").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("absent", "missing (required)")
        );
        let e = check_fields(&m, &["s", "n"], "sec").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("sec.z", "unknown field; expected one of `s`, `n`")
        );
        let e = check_fields(&map("1: a\n"), &["s"], "sec").unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("sec", "field names must be strings, found a number")
        );
        let e = as_map(&Value::Sequence(Vec::new()), "sec").unwrap_err();
        assert_eq!(e.message, "expected a map, found a list");
    }
}
