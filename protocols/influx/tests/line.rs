//! The line-protocol scanner: examples from InfluxDB's own docs and property tests.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use geomesh_influx::line::{lines, unescape_measurement};
use proptest::prelude::*;

fn scan(body: &str) -> Vec<(String, String, bool)> {
    lines(body.as_bytes())
        .map(|l| {
            (
                String::from_utf8(l.raw.to_vec()).unwrap(),
                String::from_utf8(l.measurement.to_vec()).unwrap(),
                l.has_time,
            )
        })
        .collect()
}

#[test]
fn points_comments_and_blank_lines() {
    let got = scan("cpu,host=a value=1 10\n\n# a comment\n  mem v=2i\r\n\tdisk free=3\n");
    assert_eq!(
        got,
        vec![
            ("cpu,host=a value=1 10".into(), "cpu".into(), true),
            ("mem v=2i\r".into(), "mem".into(), false),
            ("disk free=3".into(), "disk".into(), false),
        ]
    );
}

#[test]
fn escapes_in_measurement_tags_and_fields() {
    let body = "my\\ meas\\,x,t\\ k=v\\=1 f\\,k=1 5\nweather\\=x,a=b c=\"x\"";
    let got = scan(body);
    assert_eq!(got[0].1, "my meas,x");
    assert!(got[0].2);
    assert_eq!(
        got[1].1, "weather\\=x",
        "`=` is not unescaped in a measurement"
    );
    assert!(!got[1].2);
}

#[test]
fn quoted_strings_hold_newlines_spaces_and_escaped_quotes() {
    let body = "log msg=\"line one\nline two \\\" still\" 123\nnext v=1";
    let got = scan(body);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, "log msg=\"line one\nline two \\\" still\" 123");
    assert!(got[0].2);
    assert_eq!(got[1].1, "next");
}

#[test]
fn a_quote_in_a_field_key_or_tag_opens_nothing() {
    // `"` before any `=` of the field section is part of the key (InfluxDB's rule).
    let got = scan("m,t=\"a f\"x=1\nn v=2");
    assert_eq!(got.len(), 2, "{got:?}");
}

#[test]
fn timestamps_detected_after_the_fields() {
    assert!(!scan("m v=\"a b\"")[0].2);
    assert!(scan("m v=\"a b\" 99")[0].2);
    assert!(!scan("m v=1   ")[0].2);
    assert!(scan("m,t=a\\ b v=1 -5")[0].2);
}

#[test]
fn unescape() {
    assert_eq!(&*unescape_measurement(b"a\\,b\\ c\\d"), b"a,b c\\d");
    assert_eq!(&*unescape_measurement(b"x\\"), b"x\\");
}

/// A measurement or key as the client writes it: plain, escaped separators.
fn name() -> impl Strategy<Value = (String, String)> {
    prop::collection::vec(
        prop_oneof![
            "[a-z0-9_]".prop_map(|c| (c.clone(), c)),
            Just((",".to_owned(), "\\,".to_owned())),
            Just((" ".to_owned(), "\\ ".to_owned())),
            Just(("é".to_owned(), "é".to_owned())),
        ],
        1..8,
    )
    .prop_map(|parts| {
        let plain: String = parts.iter().map(|p| p.0.as_str()).collect();
        let esc: String = parts.iter().map(|p| p.1.as_str()).collect();
        (plain, esc)
    })
    .prop_filter("not a comment", |(p, _)| {
        !p.starts_with('#') && !p.starts_with(' ')
    })
}

/// A field value: numbers, booleans, quoted strings with spaces, newlines, `\"`, `,` and `=`.
fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[0-9]{1,6}(\\.[0-9]{1,3})?",
        "[0-9]{1,6}i",
        Just("true".to_owned()),
        prop::collection::vec(
            prop_oneof![
                "[a-z ]".prop_map(|s| s),
                Just("\\\"".to_owned()),
                Just("\n".to_owned()),
                Just(",".to_owned()),
                Just("=".to_owned()),
            ],
            0..10
        )
        .prop_map(|v| format!("\"{}\"", v.concat())),
    ]
}

prop_compose! {
    fn point()(m in name(), tags in prop::collection::vec((name(), name()), 0..3),
               fields in prop::collection::vec((name(), field_value()), 1..4),
               ts in prop::option::of(-1_000_000i64..4_000_000_000_000_000_000)) -> (String, String, bool) {
        let mut s = m.1.clone();
        for (k, v) in &tags {
            s.push_str(&format!(",{}={}", k.1, v.1));
        }
        s.push(' ');
        let f: Vec<String> = fields.iter().map(|(k, v)| format!("{}={}", k.1, v)).collect();
        s.push_str(&f.join(","));
        if let Some(t) = ts {
            s.push_str(&format!(" {t}"));
        }
        (s, m.0, ts.is_some())
    }
}

proptest! {
    #[test]
    fn every_point_found_as_sent(points in prop::collection::vec(point(), 1..20), crlf in any::<bool>()) {
        let sep = if crlf { "\n\n" } else { "\n" };
        let body = points.iter().map(|p| p.0.as_str()).collect::<Vec<_>>().join(sep);
        let got: Vec<_> = lines(body.as_bytes()).collect();
        prop_assert_eq!(got.len(), points.len());
        for (l, (raw, m, ts)) in got.iter().zip(&points) {
            prop_assert_eq!(l.raw, raw.as_bytes());
            prop_assert_eq!(&*l.measurement, m.as_bytes());
            prop_assert_eq!(l.has_time, *ts);
            prop_assert_eq!(body.as_bytes().get(l.offset..l.offset + l.raw.len()), Some(l.raw));
        }
    }

    #[test]
    fn any_bytes_give_ordered_disjoint_lines(body in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut end = 0;
        for l in lines(&body) {
            prop_assert!(l.offset >= end);
            prop_assert_eq!(body.get(l.offset..l.offset + l.raw.len()), Some(l.raw));
            prop_assert!(!l.raw.is_empty());
            end = l.offset + l.raw.len();
        }
    }
}
