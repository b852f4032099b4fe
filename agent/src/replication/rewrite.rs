//! Local identifiers in and out of HTTP messages: extraction from a create's
//! answer, and translation local id <-> meta-id in JSON bodies (at the
//! service's JSON pointers) and in `Location`.
//!
//! Rules (docs/replication.md, "Identifiers in messages"):
//!
//! * A body is rewritten only when it is JSON: a `Content-Type` of
//!   `application/json` or `*/*+json` (a missing one counts when the body
//!   starts with `{` or `[`), no `Content-Encoding` other than `identity`,
//!   at most `max_rewrite_bytes`, and parseable. Otherwise it passes
//!   unchanged and the caller is told why ([`Skip`]).
//! * Only values at the configured pointers are touched, and only those
//!   equal to the id being translated (a number id also matches the string
//!   spelling it). A body without the pointer passes unchanged.
//! * A rewritten body is re-serialised compactly with its key order kept;
//!   `Content-Length` must then be recomputed by the caller.
//! * `Location` (absolute or relative): its last path segment, percent-
//!   decoded, is compared with the local id and replaced by the meta-id.

use bytes::Bytes;
use serde_json::Value;

use super::metaid::MetaId;
use super::model::{LocalId, Reply};
use super::paths::{decode_segment, encode_segment};
use super::pointer::Pointer;

/// Where a service keeps the id of a resource in its JSON bodies.
#[derive(Debug, Clone, PartialEq)]
pub struct IdFields {
    /// In the representation of one resource (create answer, GET, PUT answer),
    /// tried in order for extraction. Default `/id`.
    pub pointers: Vec<Pointer>,
    /// In list answers. Default: every `pointers` entry under `/*`.
    pub list_pointers: Vec<Pointer>,
}

impl Default for IdFields {
    fn default() -> Self {
        IdFields::new(vec![Pointer::member("id")], None)
    }
}

impl IdFields {
    /// Fields from the configured pointers (`list` defaults to `/*` + each).
    pub fn new(pointers: Vec<Pointer>, list: Option<Vec<Pointer>>) -> Self {
        let list_pointers =
            list.unwrap_or_else(|| pointers.iter().map(Pointer::under_every_item).collect());
        IdFields {
            pointers,
            list_pointers,
        }
    }

    /// Parses pointer texts (configuration).
    pub fn parse(pointers: &[&str], list: Option<&[&str]>) -> Result<Self, String> {
        let p = pointers
            .iter()
            .map(|s| Pointer::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        if p.is_empty() {
            return Err("id_pointers: at least one pointer".into());
        }
        let l = match list {
            Some(l) => Some(
                l.iter()
                    .map(|s| Pointer::parse(s))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        Ok(IdFields::new(p, l))
    }
}

/// Why a body was not rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Empty body.
    Empty,
    /// Not JSON by its `Content-Type`.
    NotJson,
    /// Compressed (`Content-Encoding`).
    Encoded,
    /// Larger than the limit.
    TooLarge,
    /// Says JSON, does not parse.
    Invalid,
    /// JSON, but no value to translate at the pointers.
    NoMatch,
}

impl Skip {
    /// Short name (for the `x-geomesh-rewrite` header and logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Empty => "empty",
            Skip::NotJson => "not-json",
            Skip::Encoded => "encoded",
            Skip::TooLarge => "too-large",
            Skip::Invalid => "invalid-json",
            Skip::NoMatch => "no-match",
        }
    }
}

/// Whether a `Content-Type` is JSON.
pub fn is_json_type(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.contains('/') && mime.ends_with("+json"))
}

fn looks_like_json(body: &[u8]) -> bool {
    matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{') | Some(b'[')
    )
}

/// Parses a body if the rules let it be rewritten.
pub fn parse_json_body(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    max: usize,
) -> Result<Value, Skip> {
    if body.is_empty() {
        return Err(Skip::Empty);
    }
    if let Some(enc) = content_encoding {
        if !enc.trim().eq_ignore_ascii_case("identity") {
            return Err(Skip::Encoded);
        }
    }
    match content_type {
        Some(ct) if !is_json_type(ct) => return Err(Skip::NotJson),
        None if !looks_like_json(body) => return Err(Skip::NotJson),
        _ => {}
    }
    if body.len() > max {
        return Err(Skip::TooLarge);
    }
    serde_json::from_slice(body).map_err(|_| Skip::Invalid)
}

/// Replaces every value at `pointers` for which `f` gives a replacement;
/// the number of replacements.
pub fn replace_at(
    doc: &mut Value,
    pointers: &[Pointer],
    f: &mut dyn FnMut(&Value) -> Option<Value>,
) -> usize {
    let mut n = 0;
    for p in pointers {
        for v in p.get_all_mut(doc) {
            if let Some(new) = f(v) {
                *v = new;
                n += 1;
            }
        }
    }
    n
}

/// Where a create's local id was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSource {
    /// In the body, at this pointer (index into `IdFields::pointers`).
    Body(usize),
    /// In the `Location` header.
    Location,
}

/// The local id of the resource a create's answer describes: the first
/// configured pointer holding a string or number, else the last path
/// segment of `Location` (as a string id).
pub fn extract_local_id(
    reply: &Reply,
    fields: &IdFields,
    max: usize,
) -> Result<(LocalId, IdSource), String> {
    let parsed = parse_json_body(
        reply.header("content-type"),
        reply.header("content-encoding"),
        &reply.body,
        max,
    );
    if let Ok(doc) = &parsed {
        for (i, p) in fields.pointers.iter().enumerate() {
            if let Some(id) = p.get(doc).and_then(LocalId::from_json) {
                return Ok((id, IdSource::Body(i)));
            }
        }
    }
    if let Some(id) = reply
        .header("location")
        .and_then(location_id)
        .and_then(|s| LocalId::text_id(&s))
    {
        return Ok((id, IdSource::Location));
    }
    let pointers: Vec<&str> = fields.pointers.iter().map(Pointer::as_str).collect();
    Err(match parsed {
        Ok(_) => format!(
            "no id at {} in the answer and no Location header",
            pointers.join(", ")
        ),
        Err(skip) => format!(
            "answer body not usable ({}) and no Location header",
            skip.as_str()
        ),
    })
}

/// Splits a URL or path into (everything before the path's last segment,
/// last segment, the rest: `?query` / `#fragment`).
fn split_last_segment(loc: &str) -> Option<(&str, &str, &str)> {
    let end = loc.find(['?', '#']).unwrap_or(loc.len());
    let (path, rest) = loc.split_at(end);
    // The authority of an absolute URL is not a segment.
    let path_start = match path.find("://") {
        Some(i) => path[i + 3..].find('/').map(|j| i + 3 + j)?,
        None => 0,
    };
    let slash = path[path_start..].rfind('/').map(|i| path_start + i)?;
    Some((&path[..=slash], &path[slash + 1..], rest))
}

/// The last path segment of a `Location` value, percent-decoded.
pub fn location_id(loc: &str) -> Option<String> {
    let (_, seg, _) = split_last_segment(loc.trim())?;
    decode_segment(seg).filter(|s| !s.is_empty())
}

/// `loc` with its last segment replaced by `to` when it designates `from`.
pub fn rewrite_location(loc: &str, from: &LocalId, to: &str) -> Option<String> {
    let loc = loc.trim();
    let (head, seg, rest) = split_last_segment(loc)?;
    let decoded = decode_segment(seg)?;
    (decoded == from.text()).then(|| format!("{head}{}{rest}", encode_segment(to)))
}

/// `loc` with its last segment `from` (a meta-id or an id) replaced by `to`.
pub fn rewrite_location_text(loc: &str, from: &str, to: &str) -> Option<String> {
    let loc = loc.trim();
    let (head, seg, rest) = split_last_segment(loc)?;
    (decode_segment(seg)? == from).then(|| format!("{head}{}{rest}", encode_segment(to)))
}

/// What [`reply_to_meta`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// Values replaced in the body.
    pub body_values: usize,
    /// Why the body was left alone, if it was.
    pub body_skipped: Option<Skip>,
    /// `Location` rewritten.
    pub location: bool,
}

/// Hides `local` in an answer: in the body at the single-resource pointers
/// (and list pointers when `list` is set) and in `Location`. A changed body
/// drops `Content-Length` (recomputed when sent).
pub fn reply_to_meta(
    reply: &mut Reply,
    local: &LocalId,
    meta: &MetaId,
    fields: &IdFields,
    max: usize,
) -> Rewritten {
    let meta_value = Value::String(meta.to_string());
    let mut out = Rewritten {
        body_values: 0,
        body_skipped: None,
        location: false,
    };
    match parse_json_body(
        reply.header("content-type"),
        reply.header("content-encoding"),
        &reply.body,
        max,
    ) {
        Ok(mut doc) => {
            let n = replace_at(&mut doc, &fields.pointers, &mut |v| {
                local.matches(v).then(|| meta_value.clone())
            });
            if n > 0 {
                if let Ok(bytes) = serde_json::to_vec(&doc) {
                    reply.body = Bytes::from(bytes);
                    reply.set_header("content-length", None);
                    out.body_values = n;
                }
            } else {
                out.body_skipped = Some(Skip::NoMatch);
            }
        }
        Err(skip) => out.body_skipped = Some(skip),
    }
    if let Some(loc) = reply.header("location").map(str::to_owned) {
        if let Some(new) = rewrite_location(&loc, local, meta.as_str()) {
            reply.set_header("location", Some(new));
            out.location = true;
        }
    }
    out
}

/// A request body for one site: the meta-id at the id pointers replaced by
/// that site's local id (with its JSON type). `None` when nothing changes
/// (send the original body).
pub fn body_to_local(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    meta: &MetaId,
    local: &LocalId,
    fields: &IdFields,
    max: usize,
) -> Option<Vec<u8>> {
    let mut doc = parse_json_body(content_type, content_encoding, body, max).ok()?;
    let n = replace_at(&mut doc, &fields.pointers, &mut |v| {
        (v.as_str().and_then(MetaId::parse).as_ref() == Some(meta)).then(|| local.json().clone())
    });
    if n == 0 {
        return None;
    }
    serde_json::to_vec(&doc).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reply(ct: Option<&str>, body: &str, location: Option<&str>) -> Reply {
        let mut headers = Vec::new();
        if let Some(ct) = ct {
            headers.push(("content-type".to_owned(), ct.to_owned()));
        }
        headers.push(("content-length".to_owned(), body.len().to_string()));
        if let Some(l) = location {
            headers.push(("location".to_owned(), l.to_owned()));
        }
        Reply {
            status: 201,
            headers,
            body: Bytes::from(body.to_owned()),
            truncated: None,
        }
    }

    fn meta() -> MetaId {
        MetaId::parse("gm-01jdx7k2m9c4v8q3r5t6w7y8z0").unwrap()
    }

    const JS: &str = "application/json; charset=utf-8";

    #[test]
    fn json_server_create_answer() {
        // What json-server 0.17.4 answers to POST /images (checked by hand, docs/replication.md).
        let mut r = reply(
            Some(JS),
            "{\n  \"name\": \"debian\",\n  \"size\": 3,\n  \"id\": 1\n}",
            Some("http://127.0.0.1:8080/images/1"),
        );
        let f = IdFields::default();
        let (id, src) = extract_local_id(&r, &f, 1 << 20).unwrap();
        assert_eq!((id.json(), src), (&json!(1), IdSource::Body(0)));
        let w = reply_to_meta(&mut r, &id, &meta(), &f, 1 << 20);
        assert_eq!(
            w,
            Rewritten {
                body_values: 1,
                body_skipped: None,
                location: true
            }
        );
        assert_eq!(
            std::str::from_utf8(&r.body).unwrap(),
            r#"{"name":"debian","size":3,"id":"gm-01jdx7k2m9c4v8q3r5t6w7y8z0"}"#,
            "key order kept"
        );
        assert_eq!(
            r.header("location"),
            Some("http://127.0.0.1:8080/images/gm-01jdx7k2m9c4v8q3r5t6w7y8z0")
        );
        assert_eq!(r.header("content-length"), None);
    }

    #[test]
    fn openstack_style_pointer_and_location_only() {
        let f = IdFields::parse(&["/image/id"], None).unwrap();
        assert_eq!(f.list_pointers[0].as_str(), "/*/image/id");
        let r = reply(
            Some("application/vnd.openstack+json"),
            r#"{"image": {"id": "a-b c", "name": "x"}}"#,
            None,
        );
        assert_eq!(extract_local_id(&r, &f, 1 << 20).unwrap().0.text(), "a-b c");
        // No body id: the Location's last segment, percent-decoded, as a string id.
        let r = reply(
            Some("text/plain"),
            "created",
            Some("/v2/images/a%20b?x=1#f"),
        );
        let (id, src) = extract_local_id(&r, &f, 1 << 20).unwrap();
        assert_eq!((id.json(), src), (&json!("a b"), IdSource::Location));
        let e = extract_local_id(&reply(Some(JS), "{}", None), &f, 1 << 20).unwrap_err();
        assert!(e.contains("/image/id"), "{e}");
        let e = extract_local_id(&reply(Some("text/plain"), "ok", None), &f, 1 << 20).unwrap_err();
        assert!(e.contains("not-json"), "{e}");
    }

    #[test]
    fn bodies_that_are_not_rewritten_pass_unchanged() {
        let f = IdFields::default();
        let id = LocalId::from_json(&json!(7)).unwrap();
        for (r, why) in [
            (
                reply(Some("text/plain"), r#"{"id": 7}"#, None),
                Skip::NotJson,
            ),
            (reply(Some(JS), r#"{"id": 7"#, None), Skip::Invalid),
            (reply(Some(JS), r#"{"other": 7}"#, None), Skip::NoMatch),
            (reply(Some(JS), r#"{"id": 8}"#, None), Skip::NoMatch),
            (reply(Some(JS), "", None), Skip::Empty),
            (
                reply(
                    Some(JS),
                    &format!("{{\"id\": 7, \"pad\": \"{}\"}}", "x".repeat(100)),
                    None,
                ),
                Skip::TooLarge,
            ),
        ] {
            let mut r2 = r.clone();
            let w = reply_to_meta(&mut r2, &id, &meta(), &f, 64);
            assert_eq!(w.body_skipped, Some(why), "{:?}", r.body);
            assert_eq!(r2, r, "unchanged");
        }
        let mut gz = reply(Some(JS), r#"{"id": 7}"#, None);
        gz.headers.push(("content-encoding".into(), "gzip".into()));
        assert_eq!(
            reply_to_meta(&mut gz, &id, &meta(), &f, 64).body_skipped,
            Some(Skip::Encoded)
        );
        // No content type, but JSON-looking: rewritten.
        let mut bare = reply(None, r#" {"id": "7"}"#, None);
        assert_eq!(
            reply_to_meta(&mut bare, &id, &meta(), &f, 64).body_values,
            1
        );
    }

    #[test]
    fn locations() {
        let id = LocalId::from_json(&json!(42)).unwrap();
        assert_eq!(
            rewrite_location("http://h:1/images/42", &id, "gm-x"),
            Some("http://h:1/images/gm-x".into())
        );
        assert_eq!(
            rewrite_location("/images/42?a=42", &id, "gm-x"),
            Some("/images/gm-x?a=42".into())
        );
        assert_eq!(rewrite_location("/images/420", &id, "gm-x"), None);
        assert_eq!(
            rewrite_location("http://42", &id, "gm-x"),
            None,
            "the authority is not a segment"
        );
        assert_eq!(location_id("http://h/images/"), None);
        assert_eq!(location_id("images/5"), Some("5".into()));
        assert_eq!(
            rewrite_location_text("/images/gm-x", "gm-x", "a b"),
            Some("/images/a%20b".into())
        );
    }

    #[test]
    fn request_bodies_get_each_sites_id_with_its_type() {
        let f = IdFields::default();
        let m = meta();
        let body = format!(r#"{{"id": "{m}", "name": "ubuntu"}}"#);
        let n = LocalId::from_json(&json!(6)).unwrap();
        let s = LocalId::from_json(&json!("k3")).unwrap();
        assert_eq!(
            body_to_local(Some(JS), None, body.as_bytes(), &m, &n, &f, 1024).unwrap(),
            br#"{"id":6,"name":"ubuntu"}"#
        );
        assert_eq!(
            body_to_local(Some(JS), None, body.as_bytes(), &m, &s, &f, 1024).unwrap(),
            br#"{"id":"k3","name":"ubuntu"}"#
        );
        assert_eq!(
            body_to_local(Some(JS), None, br#"{"name": "x"}"#, &m, &n, &f, 1024),
            None
        );
        assert_eq!(
            body_to_local(
                Some("application/octet-stream"),
                None,
                body.as_bytes(),
                &m,
                &n,
                &f,
                1024
            ),
            None
        );
    }

    #[test]
    fn lists_use_the_list_pointers() {
        let f = IdFields::default();
        let mut doc = json!([{"id": 1}, {"id": 2}, {"id": 3}]);
        let n = replace_at(&mut doc, &f.list_pointers, &mut |v| {
            (v == &json!(2)).then(|| json!("gm-two"))
        });
        assert_eq!(n, 1);
        assert_eq!(doc, json!([{"id": 1}, {"id": "gm-two"}, {"id": 3}]));
    }
}
