//! The declaration of every configuration field, read by the parsers **and** by the JSON Schema
//! generator (`tools/config-schema`), so that the two cannot say different things.
//!
//! A section (the document itself, a route, `redis:`, `http.agent`, ...) is a static
//! [`Section`]: its fields in order, each with its [`Kind`] (integer range, enumeration, text
//! rule, list, nested section), whether it is required, its [`Default`] and one line of doc.
//! The parser of the section asks the table for the allowed names ([`Section::check`]), an
//! integer's range and default ([`Section::int`]), a text's rule ([`Text::accepts`]) and an
//! enumeration's names; the generator turns the same tables into
//! `schema/geomesh-filter.schema.json`. What JSON Schema cannot say (one field larger than
//! another, names a scope must be able to spell) is declared as a [`Rule`], which the generator
//! writes into the description and the agreement tests honour.
//!
//! An optional field left empty (`field:` or `field: ~`, YAML's null) is the same as an absent
//! one, in every section: the parsers skip it ([`Section::int`] does) and the schema allows null
//! there.
//!
//! ## Plugging a protocol's section in
//!
//! 1. In the protocol crate, declare the section as `pub const SECTION: Section` (nested
//!    sections as further `Section` constants referenced by [`Kind::Section`]) and the
//!    workload as `pub const SCHEMA: Workload` (`section: Some(&SECTION)`).
//! 2. Make the parser read the table: [`Section::check`] for unknown fields (or
//!    [`Section::field`] when it loops over the map itself), [`Section::int`] /
//!    [`Field::int_value`] for integers, [`Text::accepts`] for texts, the `OneOf` list for
//!    enumerations. Keep the error messages the protocol's tests assert.
//! 3. Add one entry to `tools/config-schema/src/workloads.rs` (`Entry { workload, check }`,
//!    `check` being what the filter runs on its configuration), run
//!    `cargo run -p geomesh-config-schema -- --write` and commit the schema. The agreement tests
//!    of that crate then check every field of the table against the parser: each integer at its
//!    bounds and one past them, each enumeration value, each text rule, unknown fields, and that
//!    every declared default is the one the parser applies.

use serde_yaml_ng::{Mapping, Value};

use super::fields::{check_names, join};
use super::ConfigError;

/// A doc text of a table: kept natively, where the schema generator reads it; empty in Wasm,
/// where nothing does (the filters stay a few KB smaller).
pub const fn doc(text: &'static str) -> &'static str {
    if cfg!(target_arch = "wasm32") {
        ""
    } else {
        text
    }
}

/// One field of a section.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The key in the YAML map.
    pub name: &'static str,
    /// What its value must be.
    pub kind: Kind,
    /// Whether the section is invalid without it.
    pub required: bool,
    /// What the parser uses when it is absent.
    pub default: Default,
    /// One sentence for users (the schema's `description`).
    pub doc: &'static str,
}

/// The shape of a field's value.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `true` or `false`.
    Bool,
    /// An integer in `min..=max`.
    Int { min: u64, max: u64 },
    /// A string obeying a rule.
    Text(Text),
    /// One of these names.
    OneOf(&'static [&'static str]),
    /// A list of values of one kind.
    List {
        item: &'static Kind,
        /// Fewest items.
        min_items: u32,
        /// No item twice.
        unique: bool,
    },
    /// A nested map with its own fields.
    Section(&'static Section),
    /// A map from free, non-empty names to values of one kind (`routing_table`).
    Map(&'static Kind),
    /// A value of either kind (a route: a cluster name, or a map).
    Either(&'static Kind, &'static Kind),
}

/// A rule a string must obey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// Any string (further rules, if any, are the parser's and named in the field's doc).
    Any,
    /// An Envoy cluster name: 1 to [`MAX_CLUSTER_NAME`] bytes, no whitespace or control
    /// character.
    ClusterName,
    /// One segment of a stat name: 1 to [`MAX_STAT_PREFIX`] ASCII letters, digits or `_`.
    StatPrefix,
    /// A lowercase HTTP header name: 1 to 128 of `a-z`, `0-9`, `-`, `_`.
    HeaderName,
    /// An absolute path: `/` then visible ASCII.
    AbsolutePath,
    /// Visible ASCII characters (no spaces), at least one, at most `max` when given.
    Visible { max: Option<u32> },
}

/// The longest cluster name the core accepts, in bytes.
pub const MAX_CLUSTER_NAME: usize = 512;

/// The longest `stat_prefix` accepted, in bytes.
pub const MAX_STAT_PREFIX: usize = 64;

/// The longest header name the HTTP sections accept.
pub const MAX_HEADER_NAME: usize = 128;

/// Unicode's White_Space and Cc (what Rust's `char::is_whitespace` and `is_control` answer
/// true for), as a class body for an ECMA-262 regular expression.
const SPACE_OR_CONTROL: &str =
    "\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

impl Text {
    /// Whether `s` obeys the rule.
    pub fn accepts(self, s: &str) -> bool {
        let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        match self {
            Text::Any => true,
            Text::ClusterName => {
                !s.is_empty()
                    && s.len() <= MAX_CLUSTER_NAME
                    && !s.chars().any(|c| c.is_control() || c.is_whitespace())
            }
            Text::StatPrefix => {
                !s.is_empty()
                    && s.len() <= MAX_STAT_PREFIX
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            }
            Text::HeaderName => {
                !s.is_empty()
                    && s.len() <= MAX_HEADER_NAME
                    && s.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    })
            }
            Text::AbsolutePath => s.starts_with('/') && visible(s),
            Text::Visible { max } => {
                !s.is_empty() && max.is_none_or(|m| s.len() <= m as usize) && visible(s)
            }
        }
    }

    /// The rule as an ECMA-262 pattern (JSON Schema's `pattern`), if it has one.
    pub fn pattern(self) -> Option<String> {
        match self {
            Text::Any => None,
            Text::ClusterName => Some(format!("^[^{SPACE_OR_CONTROL}]+$")),
            Text::StatPrefix => Some("^[A-Za-z0-9_]+$".to_owned()),
            Text::HeaderName => Some("^[a-z0-9_-]+$".to_owned()),
            Text::AbsolutePath => Some("^/[!-~]*$".to_owned()),
            Text::Visible { .. } => Some("^[!-~]+$".to_owned()),
        }
    }

    /// Fewest and most characters (JSON Schema counts characters where the parser counts
    /// bytes: the same for ASCII).
    pub fn length(self) -> (usize, Option<usize>) {
        match self {
            Text::Any => (0, None),
            Text::ClusterName => (1, Some(MAX_CLUSTER_NAME)),
            Text::StatPrefix => (1, Some(MAX_STAT_PREFIX)),
            Text::HeaderName => (1, Some(MAX_HEADER_NAME)),
            Text::AbsolutePath => (1, None),
            Text::Visible { max } => (1, max.map(|m| m as usize)),
        }
    }

    /// What the rule asks for, in words (for descriptions).
    pub fn describe(self) -> &'static str {
        match self {
            Text::Any => "a string",
            Text::ClusterName => "an Envoy cluster name: no spaces or control characters, at most 512 bytes",
            Text::StatPrefix => "1 to 64 ASCII letters, digits or `_` (one segment of a stat name)",
            Text::HeaderName => "a lowercase HTTP header name (a-z, 0-9, '-', '_'), at most 128 characters",
            Text::AbsolutePath => "an absolute path such as /v1/sites (visible ASCII)",
            Text::Visible { .. } => "visible ASCII characters, no spaces",
        }
    }
}

/// What the parser uses when a field is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// Nothing (the feature is off, or the field is required).
    None,
    Bool(bool),
    Int(u64),
    Text(&'static str),
    /// Computed from other fields; the text says how.
    Computed(&'static str),
}

/// A constraint between fields that JSON Schema cannot state; the parser checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Integer `field` must be greater than integer `than`.
    Greater { field: &'static str, than: &'static str },
    /// Integer `field` must be at least integer `than`.
    AtLeast { field: &'static str, than: &'static str },
    /// Text fields `a` and `b` must differ.
    Differ { a: &'static str, b: &'static str },
    /// When `field` is one of `values` (`when_absent`: also when it is absent), the fields of
    /// `then` are required and those of `forbid` refused; otherwise `otherwise_require` are
    /// required and `otherwise_forbid` refused.
    Switch {
        field: &'static str,
        values: &'static [&'static str],
        when_absent: bool,
        require: &'static [&'static str],
        forbid: &'static [&'static str],
        otherwise_require: &'static [&'static str],
        otherwise_forbid: &'static [&'static str],
    },
    /// Said in words only (the parser's check is richer than a schema can be).
    Note(&'static str),
}

/// A map of fields: the document, a route, a protocol's section or one of its subsections.
#[derive(Debug, Clone, Copy)]
pub struct Section {
    /// A stable identifier (`redis`, `http.agent`, `route`): the schema's definition name.
    pub id: &'static str,
    /// What the section is for.
    pub doc: &'static str,
    /// Its fields, in the order documentation lists them.
    pub fields: &'static [Field],
    /// Constraints between fields.
    pub rules: &'static [Rule],
}

impl Section {
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The names of the fields, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + Clone + '_ {
        self.fields.iter().map(|f| f.name)
    }

    /// Refuses a field of the map at `path` the section does not declare ("unknown field;
    /// expected one of ...", about that field) or whose name is not a string.
    pub fn check(&self, map: &Mapping, path: &str) -> Result<(), ConfigError> {
        check_names(map, self.names(), path)
    }

    /// The integer field `name` of the map at `path`: its declared default when absent or
    /// null, else a value within its declared range ("expected an integer between MIN and
    /// MAX").
    pub fn int(&self, map: &Mapping, name: &str, path: &str) -> Result<u64, ConfigError> {
        let field = self.declared(name, path)?;
        match map.get(name) {
            None | Some(Value::Null) => match field.default {
                Default::Int(n) => Ok(n),
                _ => Err(ConfigError::new(join(path, name), "missing (required)")),
            },
            Some(v) => field.int_value(v, &join(path, name)),
        }
    }

    /// The field `name`, which the section must declare (an error naming it otherwise: a
    /// parser asking for a field its table lacks, caught by the agreement tests).
    pub fn declared(&self, name: &str, path: &str) -> Result<&'static Field, ConfigError> {
        self.field(name).ok_or_else(|| {
            ConfigError::new(join(path, name), "not declared in the section's table (a geomesh bug)")
        })
    }
}

impl Field {
    /// The integer range of an `Int` field (`None` for other kinds).
    pub fn range(&self) -> Option<(u64, u64)> {
        match self.kind {
            Kind::Int { min, max } => Some((min, max)),
            _ => None,
        }
    }

    /// `v` as this integer field's value, within its range ("expected an integer between MIN
    /// and MAX" about `field_path`).
    pub fn int_value(&self, v: &Value, field_path: &str) -> Result<u64, ConfigError> {
        let (min, max) = self.range().ok_or_else(|| {
            ConfigError::new(field_path, "not declared as an integer (a geomesh bug)")
        })?;
        match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ConfigError::new(
                field_path,
                format!("expected an integer between {min} and {max}"),
            )),
        }
    }

    /// The names of a `OneOf` field (empty for other kinds).
    pub fn names(&self) -> &'static [&'static str] {
        match self.kind {
            Kind::OneOf(names) => names,
            _ => &[],
        }
    }

    /// The text rule of a `Text` field (`Any` for other kinds).
    pub fn text(&self) -> Text {
        match self.kind {
            Kind::Text(t) => t,
            _ => Text::Any,
        }
    }

    /// The literal default text, if the field has one.
    pub fn default_text(&self) -> Option<&'static str> {
        match self.default {
            Default::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// A workload as the schema sees it: its name and the section named after it.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// The `workload_type` value (also the section's key).
    pub name: &'static str,
    /// The section's table, `None` while the protocol has not declared one (the schema then
    /// accepts any map there and says so).
    pub section: Option<&'static Section>,
    /// Whether a configuration of this workload must have the section.
    pub section_required: bool,
    /// Whether `routing_table` means something for this workload (it must be empty otherwise).
    pub routing_table: bool,
    /// One sentence for users.
    pub doc: &'static str,
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const INNER: Section = Section { id: "t.inner", doc: "", fields: &[], rules: &[] };
    const T: Section = Section {
        id: "t",
        doc: "a test section",
        fields: &[
            Field { name: "n", kind: Kind::Int { min: 2, max: 9 }, required: false, default: Default::Int(4), doc: "" },
            Field { name: "r", kind: Kind::Int { min: 0, max: 1 }, required: true, default: Default::None, doc: "" },
            Field { name: "s", kind: Kind::Section(&INNER), required: false, default: Default::None, doc: "" },
        ],
        rules: &[],
    };

    fn map(yaml: &str) -> Mapping {
        match serde_yaml_ng::from_str(yaml).unwrap() {
            Value::Mapping(m) => m,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn ints_read_their_range_and_default_from_the_table() {
        assert_eq!(T.int(&map("{}"), "n", "t").unwrap(), 4);
        assert_eq!(T.int(&map("n: 9"), "n", "t").unwrap(), 9);
        let e = T.int(&map("n: 10"), "n", "t").unwrap_err();
        assert_eq!((e.field.as_str(), e.message.as_str()), ("t.n", "expected an integer between 2 and 9"));
        let e = T.int(&map("n: x"), "n", "").unwrap_err();
        assert_eq!(e.field, "n");
        assert_eq!(T.int(&map("{}"), "r", "t").unwrap_err().message, "missing (required)");
        assert!(T.int(&map("{}"), "zz", "t").unwrap_err().message.contains("not declared"));
        assert!(T.field("s").unwrap().int_value(&Value::from(1), "t.s").is_err());
    }

    #[test]
    fn check_lists_the_declared_names() {
        T.check(&map("n: 3\nr: 1"), "t").unwrap();
        let e = T.check(&map("x: 1"), "t").unwrap_err();
        assert_eq!((e.field.as_str(), e.message.as_str()), ("t.x", "unknown field; expected one of `n`, `r`, `s`"));
        assert_eq!(T.names().collect::<Vec<_>>(), ["n", "r", "s"]);
    }

    #[test]
    fn text_rules() {
        let cases: &[(Text, &str, bool)] = &[
            (Text::ClusterName, "outbound|6379||redis1.default.svc.cluster.local", true),
            (Text::ClusterName, "", false),
            (Text::ClusterName, "a b", false),
            (Text::ClusterName, "a\u{3000}b", false),
            (Text::ClusterName, "a\u{85}b", false),
            (Text::ClusterName, "a\u{feff}b", true),
            (Text::ClusterName, "é", true),
            (Text::StatPrefix, "Shop_2", true),
            (Text::StatPrefix, "a.b", false),
            (Text::HeaderName, "x-geomesh-cluster", true),
            (Text::HeaderName, "X-Up", false),
            (Text::AbsolutePath, "/v1/sites", true),
            (Text::AbsolutePath, "v1", false),
            (Text::AbsolutePath, "/a b", false),
            (Text::Visible { max: Some(3) }, "abc", true),
            (Text::Visible { max: Some(3) }, "abcd", false),
            (Text::Visible { max: None }, "abcd", true),
            (Text::Visible { max: None }, "", false),
            (Text::Any, "", true),
        ];
        for (rule, s, ok) in cases {
            assert_eq!(rule.accepts(s), *ok, "{rule:?} {s:?}");
        }
        assert!(Text::ClusterName.accepts(&"a".repeat(MAX_CLUSTER_NAME)));
        assert!(!Text::ClusterName.accepts(&"a".repeat(MAX_CLUSTER_NAME + 1)));
    }
}
