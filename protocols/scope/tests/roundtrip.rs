//! print(parse(s)) re-parses to the same tree, for generated trees whose
//! names include spaces, quotes, backslashes, operators, non-ASCII and the
//! keyword `around`; and the parser never panics on arbitrary input.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::time::Duration;

use geomesh_scope::{parse, parse_bytes, parse_expr, Entry, Expr, Scope};
use proptest::prelude::*;

fn site_name() -> impl Strategy<Value = String> {
    prop_oneof![
        // bare-looking: words separated by runs of spaces
        "[A-Za-z0-9_.-]{1,6}( {1,2}[A-Za-z0-9_.-]{1,6}){0,2}",
        // anything printable that needs quoting
        "[^\\p{Cc}]{1,12}",
        Just("around".to_string()),
        Just("a;b & c|d".to_string()),
        Just("q\"uo\\te".to_string()),
        Just("été 🌍".to_string()),
    ]
    .prop_filter("valid site name", |s| {
        !s.is_empty()
            && s.len() <= 128
            && !s.starts_with(char::is_whitespace)
            && !s.ends_with(char::is_whitespace)
    })
}

fn radius() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..=3600).prop_map(Duration::from_secs),
        (0u64..=3_600_000).prop_map(Duration::from_millis),
        (0u64..=3_600_000_000).prop_map(Duration::from_micros),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        3 => site_name().prop_map(Expr::Site),
        1 => (site_name(), radius()).prop_map(|(site, within)| Expr::Around { site, within }),
    ];
    leaf.prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Replicate),
            prop::collection::vec(inner, 2..4).prop_map(Expr::Otherwise),
        ]
    })
}

fn scope() -> impl Strategy<Value = Scope> {
    prop::collection::vec(("[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", expr()), 0..5).prop_filter_map(
        "distinct services",
        |pairs| {
            let mut entries: Vec<Entry> = Vec::new();
            for (service, expr) in pairs {
                if entries.iter().all(|e| e.service != service) {
                    entries.push(Entry { service, expr });
                }
            }
            Scope::new(entries).ok()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn canonical_print_reparses(s in scope()) {
        let text = s.print();
        prop_assert_eq!(parse(&text).map_err(|e| e.to_string()), Ok(s.clone()), "{}", text);
        // Printing is a fixpoint.
        prop_assert_eq!(parse(&text).map(|p| p.print()).ok(), Some(text));
    }

    #[test]
    fn header_form_is_ascii_and_reparses(s in scope()) {
        let text = s.to_header_value();
        prop_assert!(text.bytes().all(|b| (0x20..0x7f).contains(&b)), "{}", text);
        prop_assert_eq!(parse_bytes(text.as_bytes()).map_err(|e| e.to_string()), Ok(s), "{}", text);
    }

    #[test]
    fn json_form_reparses(s in scope()) {
        let text = s.to_json();
        prop_assert_eq!(parse(&text).map_err(|e| e.to_string()), Ok(s), "{}", text);
    }

    #[test]
    fn expr_print_reparses(e in expr()) {
        if Scope::new(vec![Entry { service: "s".into(), expr: e.clone() }]).is_ok() {
            prop_assert_eq!(parse_expr(&e.print()).map_err(|x| x.to_string()), Ok(e));
        }
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        check_any(&s);
    }

    #[test]
    fn grammar_soup_never_panics(
        parts in prop::collection::vec(
            prop_oneof![
                Just("{"), Just("}"), Just("("), Just(")"), Just("&"), Just(";"), Just("|"),
                Just(","), Just(":"), Just("\""), Just("\\"), Just("\\u"), Just("d83c"),
                Just(" "), Just("\n"), Just("around"), Just("DC 1"), Just("a"), Just("10ms"),
                Just("1.5"), Just("s"), Just("µs"), Just("\"x\""), Just("{\"a\": \""),
            ],
            0..60,
        )
    ) {
        check_any(&parts.concat());
    }
}

/// Parses; on success the result must survive its own round trip, on
/// failure the position must be inside the input.
fn check_any(s: &str) {
    match parse(s) {
        Ok(scope) => {
            assert_eq!(parse(&scope.print()).ok(), Some(scope.clone()), "{s:?}");
            assert_eq!(parse(&scope.to_json()).ok(), Some(scope), "{s:?}");
        }
        Err(e) => {
            assert!(e.offset <= s.len(), "{s:?}: {e}");
            assert!(e.line >= 1 && e.column >= 1);
            assert!(e.to_string().starts_with("scope:"));
        }
    }
}
