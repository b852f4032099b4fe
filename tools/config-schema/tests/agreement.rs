//! The field tables against the parsers, field by field: whatever a table says, the parser
//! does, and the schema written from the table agrees with both.
//!
//! For every section reachable from every workload (the document, a route, `redis`, `http`,
//! `http.agent`, an entry of `http.clusters`, ...), built into a complete configuration:
//! each integer at its bounds (accepted) and one past them (refused, the error naming the
//! field), each enumeration value, each text rule over sample strings, lists below their
//! minimum or with a repeated item, a non-map where a section goes, an unknown field, a required
//! field left out, the `Switch` rules both ways, and every literal default set explicitly
//! (the same settings as leaving it out). Parser and schema must give the same verdict every
//! time; the cross-field rules JSON Schema cannot state (`Greater`, `AtLeast`, `Differ`) are
//! honoured when building the samples and checked against the parser alone.

use geomesh_config_schema::{check, instance, validator, workloads};
use geomesh_core::config::spec::{Default, Field, Kind, Rule, Section, Text, Workload};
use geomesh_core::config::tables::DOCUMENT;
use serde_yaml_ng::{Mapping, Value};

/// How to reach a section from the document.
#[derive(Clone, Debug)]
enum Step {
    Key(&'static str),
    /// The first item of a list.
    First,
    /// An entry named `r` of a free-named map.
    Entry,
}

fn path_of(steps: &[Step]) -> String {
    let mut p = String::new();
    for s in steps {
        match s {
            Step::Key(k) => {
                if !p.is_empty() {
                    p.push('.');
                }
                p.push_str(k);
            }
            Step::First => p.push_str("[0]"),
            Step::Entry => p.push_str(".r"),
        }
    }
    p
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// A value the rule accepts.
fn text_sample(t: Text) -> &'static str {
    match t {
        Text::HeaderName => "x-a",
        Text::AbsolutePath => "/a",
        _ => "a",
    }
}

fn sample(k: &Kind) -> Value {
    match *k {
        Kind::Bool => Value::Bool(true),
        Kind::Int { min, .. } => Value::from(min),
        Kind::Text(t) => Value::from(text_sample(t)),
        Kind::OneOf(names) => Value::from(names.first().copied().unwrap_or_default()),
        Kind::List { item, min_items, unique } => Value::Sequence(
            (0..min_items)
                .map(|i| match (unique, sample(item)) {
                    (true, Value::String(s)) => Value::from(format!("{s}{i}")),
                    (_, v) => v,
                })
                .collect(),
        ),
        Kind::Section(s) => Value::Mapping(minimal(s)),
        Kind::Map(_) => Value::Mapping(Mapping::new()),
        Kind::Either(a, _) => sample(a),
    }
}

/// The required fields at sample values, completed by the section's rules.
fn minimal(s: &Section) -> Mapping {
    let mut m = Mapping::new();
    for f in s.fields.iter().filter(|f| f.required) {
        m.insert(f.name.into(), sample(&f.kind));
    }
    // A rule across sections (a Note in the table): an explicit entry for this listener's own
    // (service, site) must name local_cluster; the samples name another site.
    if s.id == "http.clusters" {
        m.insert("site".into(), "b".into());
    }
    complete(s, &mut m);
    m
}

fn field_of(s: &Section, name: &str) -> &'static Field {
    s.field(name).unwrap_or_else(|| panic!("{}: a rule names `{name}`, which the table lacks", s.id))
}

/// Adds what a `Switch` requires and removes what it forbids for the map as it is.
fn complete(s: &Section, m: &mut Mapping) {
    for r in s.rules {
        if let Rule::Switch { field, values, when_absent, require, forbid, otherwise_require, otherwise_forbid } = *r {
            let on = match m.get(field).and_then(Value::as_str) {
                Some(v) => values.contains(&v),
                None => when_absent,
            };
            let (req, no) = if on { (require, forbid) } else { (otherwise_require, otherwise_forbid) };
            for n in no {
                m.remove(*n);
            }
            for n in req {
                if !m.contains_key(*n) {
                    m.insert((*n).into(), sample(&field_of(s, n).kind));
                }
            }
        }
    }
}

/// Turns the `Switch`es so that field `name` is allowed.
fn allow(s: &Section, m: &mut Mapping, name: &str) {
    for r in s.rules {
        if let Rule::Switch { field, values, when_absent, forbid, otherwise_forbid, .. } = *r {
            let on = match m.get(field).and_then(Value::as_str) {
                Some(v) => values.contains(&v),
                None => when_absent,
            };
            if on && forbid.contains(&name) {
                let off = field_of(s, field).names().iter().find(|n| !values.contains(n));
                m.insert(field.into(), Value::from(off.copied().unwrap_or_default()));
            } else if !on && otherwise_forbid.contains(&name) {
                m.insert(field.into(), Value::from(values.first().copied().unwrap_or_default()));
            }
        }
    }
}

/// Keeps `Greater` / `AtLeast` true while `name` is being tried: the other side at its far end.
fn keep_relations(s: &Section, m: &mut Mapping, name: &str) {
    for r in s.rules {
        let (big, small) = match *r {
            Rule::Greater { field, than } | Rule::AtLeast { field, than } => (field, than),
            _ => continue,
        };
        if name == big {
            let (min, _) = field_of(s, small).range().unwrap_or_default();
            m.insert(small.into(), Value::from(min));
        } else if name == small {
            let (_, max) = field_of(s, big).range().unwrap_or_default();
            m.insert(big.into(), Value::from(max));
        }
    }
}

/// A configuration of workload `w` with `section` (a map) put at `steps`.
fn document(w: &Workload, steps: &[Step], section: Mapping) -> String {
    let mut doc = Value::Mapping(base(w));
    put(&mut doc, steps, section);
    serde_yaml_ng::to_string(&doc).unwrap()
}

fn put(v: &mut Value, steps: &[Step], section: Mapping) {
    let Some((step, rest)) = steps.split_first() else {
        *v = Value::Mapping(section);
        return;
    };
    if let Step::First = step {
        *v = Value::Sequence(vec![Value::Null]);
        if let Value::Sequence(items) = v {
            put(&mut items[0], rest, section);
        }
        return;
    }
    if !v.is_mapping() {
        *v = Value::Mapping(Mapping::new());
    }
    let key = match step {
        Step::Key(k) => *k,
        _ => "r",
    };
    if let Value::Mapping(m) = v {
        put(m.entry(key.into()).or_insert(Value::Null), rest, section);
    }
}

/// The smallest valid configuration of a workload.
fn base(w: &Workload) -> Mapping {
    let mut doc = minimal(&DOCUMENT);
    doc.insert("workload_type".into(), w.name.into());
    if let (Some(s), true) = (w.section, w.section_required) {
        doc.insert(w.name.into(), Value::Mapping(minimal(s)));
    }
    doc
}

struct Judge {
    validator: jsonschema::Validator,
    cases: usize,
}

impl Judge {
    /// Parser and schema verdicts on `text`; they must agree.
    fn verdict(&mut self, text: &str) -> Result<String, String> {
        self.cases += 1;
        let by_parser = check(text.as_bytes());
        let json = instance(text).unwrap();
        let by_schema: Vec<String> = self.validator.iter_errors(&json).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        match (&by_parser, by_schema.is_empty()) {
            (Ok(_), true) | (Err(_), false) => {}
            (Ok(_), false) => panic!("the parser accepts, the schema refuses:\n{text}\n{by_schema:#?}"),
            (Err(e), true) => panic!("the parser refuses ({e}), the schema accepts:\n{text}"),
        }
        by_parser.map_err(|e| e.field)
    }

    fn accepts(&mut self, text: &str) -> String {
        self.verdict(text).unwrap_or_else(|field| panic!("refused (at `{field}`):\n{text}"))
    }

    fn refuses(&mut self, text: &str, field: Option<&str>) {
        match self.verdict(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(f) => {
                if let Some(want) = field {
                    assert_eq!(f, want, "the error names another field:\n{text}");
                }
            }
        }
    }

    /// The parser alone refuses (a rule the schema cannot state).
    fn parser_refuses(&mut self, text: &str) {
        assert!(check(text.as_bytes()).is_err(), "the parser accepts:\n{text}");
    }
}

/// Every section reachable from `s` at `steps`.
fn sections(s: &'static Section, steps: Vec<Step>, out: &mut Vec<(&'static Section, Vec<Step>)>) {
    out.push((s, steps.clone()));
    for f in s.fields {
        let mut here = steps.clone();
        here.push(Step::Key(f.name));
        let mut k = &f.kind;
        loop {
            match *k {
                Kind::Section(inner) => {
                    sections(inner, here, out);
                    break;
                }
                Kind::List { item, .. } => {
                    here.push(Step::First);
                    k = item;
                }
                Kind::Map(v) => {
                    here.push(Step::Entry);
                    k = v;
                }
                Kind::Either(_, b) => k = b,
                _ => break,
            }
        }
    }
}

const TEXTS: &[&str] = &["a", "", "a b", "A", "x-a", "/a", "/a b", "a.b", "a_b-1", "é", "a\u{3000}b", "a\tb", "/v1/sites", "x-scope"];

fn try_section(j: &mut Judge, w: &Workload, s: &Section, steps: &[Step]) {
    let path = path_of(steps);
    let with = |m: Mapping| document(w, steps, m);
    let min = minimal(s);
    j.accepts(&with(min.clone()));
    for f in s.fields {
        if steps.is_empty() && f.name == "workload_type" {
            continue; // each workload's minimal document covers it
        }
        let field_path = join(&path, f.name);
        let set = |v: Value| {
            let mut m = min.clone();
            m.insert(f.name.into(), v);
            keep_relations(s, &mut m, f.name);
            allow(s, &mut m, f.name);
            complete(s, &mut m);
            m
        };
        match f.kind {
            Kind::Int { min: lo, max: hi } => {
                j.accepts(&with(set(Value::from(lo))));
                j.accepts(&with(set(Value::from(hi))));
                if lo > 0 {
                    j.refuses(&with(set(Value::from(lo - 1))), Some(&field_path));
                }
                j.refuses(&with(set(Value::from(hi + 1))), Some(&field_path));
                j.refuses(&with(set(Value::from("x"))), Some(&field_path));
            }
            Kind::OneOf(names) => {
                for n in names {
                    j.accepts(&with(set(Value::from(*n))));
                }
                j.refuses(&with(set(Value::from("no-such-value"))), Some(&field_path));
            }
            Kind::Bool => {
                j.accepts(&with(set(Value::Bool(false))));
                j.accepts(&with(set(Value::Bool(true))));
                j.refuses(&with(set(Value::from("yes please"))), Some(&field_path));
            }
            Kind::Text(Text::Any) => {
                j.refuses(&with(set(Value::from(3))), None);
            }
            Kind::Text(t) => {
                let (_, max) = t.length();
                let long = max.map(|m| ["a".repeat(m), "a".repeat(m + 1)]).unwrap_or_default();
                for sample in TEXTS.iter().copied().chain(long.iter().map(String::as_str)) {
                    let text = with(set(Value::from(sample)));
                    if t.accepts(sample) && sample != "x-scope" {
                        j.accepts(&text);
                    } else if !t.accepts(sample) {
                        j.refuses(&text, None);
                    }
                }
                j.refuses(&with(set(Value::from(3))), None);
            }
            Kind::List { item, min_items, unique } => {
                if min_items > 0 {
                    j.refuses(&with(set(Value::Sequence(Vec::new()))), None);
                }
                if unique {
                    j.refuses(&with(set(Value::Sequence(vec![sample(item), sample(item)]))), None);
                }
                j.refuses(&with(set(Value::from(3))), None);
            }
            Kind::Section(_) => j.refuses(&with(set(Value::from(3))), None),
            Kind::Map(_) => j.refuses(&with(set(Value::Sequence(vec![Value::from("a")]))), None),
            Kind::Either(..) => {}
        }
        // A literal default is what the parser applies when the field is absent.
        let literal = match f.default {
            Default::Int(n) => Some(Value::from(n)),
            Default::Text(t) => Some(Value::from(t)),
            Default::Bool(b) => Some(Value::Bool(b)),
            Default::None | Default::Computed(_) => None,
        };
        if let Some(v) = literal {
            let mut m = min.clone();
            m.insert(f.name.into(), v);
            allow(s, &mut m, f.name);
            complete(s, &mut m);
            let mut without = m.clone();
            without.remove(f.name);
            assert_eq!(
                j.accepts(&with(m)),
                j.accepts(&with(without)),
                "`{field_path}`: the declared default is not the parser's"
            );
        }
        if f.required {
            let mut m = min.clone();
            m.remove(f.name);
            j.refuses(&with(m), Some(&field_path));
        } else if !(steps.is_empty() && f.name == "workload_type") {
            // Left empty: the same as absent, unless a switch requires it where it is.
            let mut m = min.clone();
            allow(s, &mut m, f.name);
            complete(s, &mut m);
            let required_here = m.contains_key(f.name);
            let mut empty = m.clone();
            empty.insert(f.name.into(), Value::Null);
            if required_here {
                j.refuses(&with(empty), Some(&field_path));
            } else {
                let absent = j.accepts(&with(m));
                assert_eq!(j.accepts(&with(empty)), absent, "`{field_path}` left empty is not the same as absent");
            }
        }
    }
    let mut m = min.clone();
    m.insert("zz_unknown".into(), Value::from(1));
    j.refuses(&with(m), Some(&join(&path, "zz_unknown")));
    for r in s.rules {
        match *r {
            Rule::Switch { field, values, require, forbid, otherwise_require, otherwise_forbid, .. } => {
                let names = field_of(s, field).names();
                let off = names.iter().find(|n| !values.contains(n));
                for (value, req, no) in [(values.first(), require, forbid), (off, otherwise_require, otherwise_forbid)] {
                    let Some(value) = value else { continue };
                    let mut m = min.clone();
                    m.insert(field.into(), Value::from(*value));
                    complete(s, &mut m);
                    j.accepts(&with(m.clone()));
                    for n in no {
                        let mut bad = m.clone();
                        bad.insert((*n).into(), sample(&field_of(s, n).kind));
                        j.refuses(&with(bad), Some(&join(&path, n)));
                    }
                    for n in req {
                        let mut bad = m.clone();
                        bad.remove(*n);
                        j.refuses(&with(bad), Some(&join(&path, n)));
                    }
                }
            }
            Rule::Greater { field, than } | Rule::AtLeast { field, than } => {
                let mut m = min.clone();
                let (lo, _) = field_of(s, than).range().unwrap_or_default();
                m.insert(than.into(), Value::from(lo + 1));
                let equal = matches!(r, Rule::Greater { .. });
                m.insert(field.into(), Value::from(if equal { lo + 1 } else { lo }));
                j.parser_refuses(&with(m));
            }
            Rule::Differ { a, b } => {
                let mut m = min.clone();
                let v = Value::from(text_sample(field_of(s, a).text()));
                m.insert(a.into(), v.clone());
                m.insert(b.into(), v);
                j.parser_refuses(&with(m));
            }
            Rule::Note(_) => {}
        }
    }
}

#[test]
fn every_table_agrees_with_its_parser_and_the_schema() {
    let mut j = Judge { validator: validator().unwrap(), cases: 0 };
    for w in workloads::all() {
        j.accepts(&serde_yaml_ng::to_string(&base(&w)).unwrap());
        let mut all = Vec::new();
        sections(&DOCUMENT, Vec::new(), &mut all);
        if let Some(s) = w.section {
            sections(s, vec![Step::Key(w.name)], &mut all);
        }
        for (s, steps) in &all {
            // The document's own fields once (with redis); a route in every workload that has
            // routes.
            if s.id == DOCUMENT.id && w.name != "redis" {
                continue;
            }
            if s.id == "route" && !w.routing_table {
                continue;
            }
            try_section(&mut j, &w, s, steps);
        }
        // Another workload's section is refused; so is a routing table where it means nothing.
        let mut doc = base(&w);
        let other = if w.name == "redis" { "http" } else { "redis" };
        doc.insert(other.into(), Value::Mapping(Mapping::new()));
        j.refuses(&serde_yaml_ng::to_string(&doc).unwrap(), Some(other));
        if !w.routing_table {
            let mut doc = base(&w);
            let mut table = Mapping::new();
            table.insert("u".into(), "b".into());
            doc.insert("routing_table".into(), Value::Mapping(table));
            j.refuses(&serde_yaml_ng::to_string(&doc).unwrap(), Some("routing_table"));
        }
        let mut doc = base(&w);
        doc.insert(w.name.into(), Value::Null);
        if w.section_required {
            j.refuses(&serde_yaml_ng::to_string(&doc).unwrap(), Some(w.name));
            doc.remove(w.name);
            j.refuses(&serde_yaml_ng::to_string(&doc).unwrap(), Some(w.name));
        } else {
            j.accepts(&serde_yaml_ng::to_string(&doc).unwrap());
        }
    }
    eprintln!("{} configurations judged by parser and schema alike", j.cases);
    assert!(j.cases > 300, "only {} cases", j.cases);
}
