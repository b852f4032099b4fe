//! Identifiers in request paths: percent-encoding of one segment, and the
//! ways a path can name a replicated resource.
//!
//! A resource created by `POST <collection>` lives at
//! `<collection>/<id><suffix>` (REST convention, and what json-server's
//! `Location` says), so a path names a replicant when one of its segments is
//!
//! * a meta-identifier (`/images/gm-01jd...`, `/images/gm-01jd.../tags`) whose
//!   replicant's collection is exactly the segments before it, or
//! * the local id, **on this site**, of a live replica whose collection is
//!   exactly the segments before it (`/images/42` on the site where the
//!   replica of `/images` has id 42). Local ids of other sites are not
//!   recognised: they are in another instance's namespace, and the same
//!   text may name an unrelated local resource here.

use super::metaid::MetaId;

/// Most segments examined in one path.
pub const MAX_SEGMENTS: usize = 64;

fn is_unreserved_or_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b)
}

/// Percent-encodes a text as one path segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if is_unreserved_or_pchar(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one percent-encoded segment; `None` for a bad escape or bytes
/// that are not UTF-8.
pub fn decode_segment(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hi = hex(*b.get(i + 1)?)?;
            let lo = hex(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One way to read a path as `<collection>/<id><suffix>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// `/images` (raw, as in the request).
    pub collection: String,
    /// The id segment, percent-decoded.
    pub id: String,
    /// What follows the id segment (raw): `""`, `/`, `/tags`.
    pub suffix: String,
}

/// The path part of a request target (no query).
pub fn path_only(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or("")
}

/// Every reading of `path` (without query) as collection/id/suffix, the
/// collection at least one segment long, shortest collection first.
pub fn splits(path: &str) -> Vec<Split> {
    let Some(rest) = path.strip_prefix('/') else {
        return Vec::new();
    };
    let segs: Vec<&str> = rest.split('/').take(MAX_SEGMENTS).collect();
    let mut out = Vec::new();
    for i in 1..segs.len() {
        let (Some(id_raw), Some(before)) = (segs.get(i), segs.get(..i)) else {
            continue;
        };
        if id_raw.is_empty() || before.iter().any(|s| s.is_empty()) {
            continue;
        }
        let Some(id) = decode_segment(id_raw) else {
            continue;
        };
        let after = segs.get(i + 1..).unwrap_or(&[]);
        out.push(Split {
            collection: format!("/{}", before.join("/")),
            id,
            suffix: if after.is_empty() {
                String::new()
            } else {
                format!("/{}", after.join("/"))
            },
        });
    }
    out
}

/// The first reading whose id is a meta-identifier.
pub fn meta_split(path: &str) -> Option<(Split, MetaId)> {
    splits(path)
        .into_iter()
        .find_map(|s| MetaId::parse(&s.id).map(|m| (s, m)))
}

/// A collection path as stored: no query, no trailing slash (`/images/` is `/images`).
pub fn normalize_collection(path: &str) -> String {
    let p = path_only(path);
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        "/".to_owned()
    } else {
        t.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip() {
        for s in ["42", "a b", "x/y", "é", "gm-01jd", "100%", "a?b#c"] {
            let e = encode_segment(s);
            assert!(
                !e.contains('/') && !e.contains('?') && !e.contains('#') && !e.contains(' '),
                "{e}"
            );
            assert_eq!(decode_segment(&e).as_deref(), Some(s));
        }
        assert_eq!(decode_segment("%zz"), None);
        assert_eq!(decode_segment("%4"), None);
        assert_eq!(decode_segment("%FF"), None, "not UTF-8");
    }

    #[test]
    fn splits_of_a_path() {
        let s = splits("/v2/images/42/tags");
        let triples: Vec<(&str, &str, &str)> = s
            .iter()
            .map(|x| (x.collection.as_str(), x.id.as_str(), x.suffix.as_str()))
            .collect();
        assert_eq!(
            triples,
            [
                ("/v2", "images", "/42/tags"),
                ("/v2/images", "42", "/tags"),
                ("/v2/images/42", "tags", "")
            ]
        );
        assert!(splits("/images").is_empty());
        assert!(splits("images/1").is_empty());
        assert_eq!(splits("/images/a%20b/")[0].id, "a b");
        assert_eq!(splits("/images/a%20b/")[0].suffix, "/");
        assert!(splits("//1").is_empty());
    }

    #[test]
    fn meta_ids_in_paths() {
        let (s, m) = meta_split("/images/gm-01jdx7k2m9c4v8q3r5t6w7y8z0/file").unwrap();
        assert_eq!(
            (s.collection.as_str(), s.suffix.as_str()),
            ("/images", "/file")
        );
        assert_eq!(m.as_str(), "gm-01jdx7k2m9c4v8q3r5t6w7y8z0");
        assert!(meta_split("/images/42").is_none());
        assert_eq!(path_only("/images/1?x=gm-1#f"), "/images/1");
        assert_eq!(normalize_collection("/images/?x=1"), "/images");
        assert_eq!(normalize_collection("/"), "/");
    }
}
