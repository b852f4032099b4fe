//! JSON pointers (RFC 6901) with one extension: a segment that is exactly
//! `*` selects every element of an array (or every member value of an
//! object), so `/*/id` designates the id of every item of a list answer and
//! `/images/*/id` those of an OpenStack-style `{"images": [...]}`.
//!
//! A literal member named `*` cannot be addressed (documented limitation).
//! Walking is iterative: no recursion on the document, whatever its depth.

use std::fmt;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Any,
}

/// A parsed pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    segs: Vec<Seg>,
}

/// Most segments a configured pointer may have.
pub const MAX_SEGMENTS: usize = 32;

impl Pointer {
    /// Parses `""` (the whole document) or `/a/b~1c/*/d`.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Ok(Pointer {
                text: String::new(),
                segs: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "JSON pointer {text:?}: must be empty or start with '/'"
            ));
        };
        let mut segs = Vec::new();
        for raw in rest.split('/') {
            if raw == "*" {
                segs.push(Seg::Any);
                continue;
            }
            let mut s = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => s.push('~'),
                        Some('1') => s.push('/'),
                        _ => {
                            return Err(format!(
                                "JSON pointer {text:?}: '~' must be followed by 0 or 1"
                            ))
                        }
                    }
                } else {
                    s.push(c);
                }
            }
            segs.push(Seg::Key(s));
        }
        if segs.len() > MAX_SEGMENTS {
            return Err(format!(
                "JSON pointer {text:?}: more than {MAX_SEGMENTS} segments"
            ));
        }
        Ok(Pointer {
            text: text.to_owned(),
            segs,
        })
    }

    /// The pointer to one top-level member (`/name`, escaped as needed).
    pub fn member(name: &str) -> Pointer {
        Pointer {
            text: format!("/{}", name.replace('~', "~0").replace('/', "~1")),
            segs: vec![Seg::Key(name.to_owned())],
        }
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether it has a `*` segment.
    pub fn has_wildcard(&self) -> bool {
        self.segs.contains(&Seg::Any)
    }

    /// This pointer under `/*` (the same field in every item of a list).
    pub fn under_every_item(&self) -> Pointer {
        let mut segs = vec![Seg::Any];
        segs.extend(self.segs.iter().cloned());
        Pointer {
            text: format!("/*{}", self.text),
            segs,
        }
    }

    /// Every value it designates in `doc` (document order).
    pub fn get_all<'a>(&self, doc: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![doc];
        for seg in &self.segs {
            let mut next = Vec::new();
            for v in cur {
                match (seg, v) {
                    (Seg::Any, Value::Array(a)) => next.extend(a.iter()),
                    (Seg::Any, Value::Object(o)) => next.extend(o.values()),
                    (Seg::Key(k), Value::Object(o)) => next.extend(o.get(k)),
                    (Seg::Key(k), Value::Array(a)) => next.extend(index(k).and_then(|i| a.get(i))),
                    _ => {}
                }
            }
            cur = next;
        }
        cur
    }

    /// The first value it designates.
    pub fn get<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        self.get_all(doc).into_iter().next()
    }

    /// Every value it designates, mutably.
    pub fn get_all_mut<'a>(&self, doc: &'a mut Value) -> Vec<&'a mut Value> {
        let mut cur = vec![doc];
        for seg in &self.segs {
            let mut next = Vec::new();
            for v in cur {
                match (seg, v) {
                    (Seg::Any, Value::Array(a)) => next.extend(a.iter_mut()),
                    (Seg::Any, Value::Object(o)) => next.extend(o.values_mut()),
                    (Seg::Key(k), Value::Object(o)) => next.extend(o.get_mut(k)),
                    (Seg::Key(k), Value::Array(a)) => {
                        next.extend(index(k).and_then(|i| a.get_mut(i)))
                    }
                    _ => {}
                }
            }
            cur = next;
        }
        cur
    }
}

/// An array index as RFC 6901 spells it: `0` or digits without a leading zero.
fn index(k: &str) -> Option<usize> {
    if k.is_empty() || (k.len() > 1 && k.starts_with('0')) || !k.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    k.parse().ok()
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Pointer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Pointer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Pointer::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc6901_examples() {
        let doc = json!({
            "foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3,
            "g|h": 4, "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8
        });
        let get = |p: &str| Pointer::parse(p).unwrap().get(&doc).cloned();
        assert_eq!(get(""), Some(doc.clone()));
        assert_eq!(get("/foo"), Some(json!(["bar", "baz"])));
        assert_eq!(get("/foo/0"), Some(json!("bar")));
        assert_eq!(get("/"), Some(json!(0)));
        assert_eq!(get("/a~1b"), Some(json!(1)));
        assert_eq!(get("/c%d"), Some(json!(2)));
        assert_eq!(get("/ "), Some(json!(7)));
        assert_eq!(get("/m~0n"), Some(json!(8)));
        assert_eq!(get("/foo/01"), None, "no leading zero");
        assert_eq!(get("/foo/2"), None);
        assert_eq!(get("/foo/-"), None);
        assert_eq!(get("/nope/x"), None);
    }

    #[test]
    fn wildcards_select_every_item() {
        let doc = json!({"images": [{"id": 1}, {"name": "x"}, {"id": "b"}]});
        let p = Pointer::parse("/images/*/id").unwrap();
        assert!(p.has_wildcard());
        assert_eq!(p.get_all(&doc), vec![&json!(1), &json!("b")]);
        let list = json!([{"id": 1}, {"id": 2}]);
        let q = Pointer::parse("/id").unwrap().under_every_item();
        assert_eq!(q.as_str(), "/*/id");
        let mut l2 = list.clone();
        for v in q.get_all_mut(&mut l2) {
            *v = json!("x");
        }
        assert_eq!(l2, json!([{"id": "x"}, {"id": "x"}]));
        assert_eq!(
            Pointer::parse("/*")
                .unwrap()
                .get_all(&json!({"a": 1, "b": 2}))
                .len(),
            2
        );
    }

    #[test]
    fn bad_pointers_are_refused() {
        assert!(Pointer::parse("id").is_err());
        assert!(Pointer::parse("/a~2").is_err());
        assert!(Pointer::parse("/a~").is_err());
        assert!(Pointer::parse(&"/a".repeat(MAX_SEGMENTS + 1)).is_err());
        assert!(serde_json::from_str::<Pointer>("\"/image/id\"").is_ok());
        assert!(serde_json::from_str::<Pointer>("\"image/id\"").is_err());
    }

    #[test]
    fn deep_documents_do_not_recurse() {
        // 100 000 nested arrays: serde_json refuses past 128 levels, so build the value by hand.
        let mut v = json!(1);
        for _ in 0..100_000 {
            v = Value::Array(vec![v]);
        }
        let p = Pointer::parse(&"/0".repeat(MAX_SEGMENTS)).unwrap();
        assert!(p.get(&v).is_some());
        // Dropping such a value recurses in serde_json itself: unwind it by hand.
        let mut cur = v;
        while let Value::Array(mut a) = cur {
            cur = a.pop().unwrap_or(Value::Null);
        }
    }
}
