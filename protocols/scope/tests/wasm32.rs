//! scope-lang on wasm32-unknown-unknown (32-bit `usize`, 1 MiB stack), where the HTTP filter
//! parses the scope header (scripts/test-wasm.sh, `make test-wasm`). The crate's other tests
//! (parser, printer, resolver, carriers, round-trip properties) run there too; these push the
//! parser and printer to the input limits, where recursion and byte offsets are largest.
#![cfg(target_arch = "wasm32")]

use geomesh_scope::{
    parse, parse_bytes, parse_expr, Expr, ParseErrorKind, MAX_DEPTH, MAX_INPUT, MAX_SERVICES,
};
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn usize_is_32_bits_here() {
    assert_eq!(usize::BITS, 32);
}

/// `depth` levels of alternating operators around quoted, non-ASCII site names.
fn nested(depth: usize, leaf: &str) -> String {
    let mut s = format!("\"{leaf} été\"");
    for d in 0..depth {
        let op = ["&", ";", "|"][d % 3];
        s = format!("(\"S{d} 🌍\" {op} {s})");
    }
    s
}

#[test]
fn deepest_scope_round_trips_through_text_and_json() {
    let text = format!(
        "{{ a: {}, b: around(\"DC 1\", 3600s) }}",
        nested(MAX_DEPTH - 1, "A")
    );
    assert!(text.len() < MAX_INPUT, "{}", text.len());
    let scope = parse(&text).unwrap();
    let printed = scope.to_string();
    assert_eq!(parse(&printed).unwrap(), scope, "print then parse");
    assert_eq!(parse(&scope.to_json()).unwrap(), scope, "JSON form");
    assert_eq!(parse_bytes(printed.as_bytes()).unwrap(), scope);
    // One level more is refused where the extra '(' is.
    let deep = nested(MAX_DEPTH + 1, "A");
    let e = parse_expr(&deep).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::TooDeep { limit: MAX_DEPTH });
    let at = deep.match_indices('(').nth(MAX_DEPTH).unwrap().0;
    assert_eq!(e.offset, at);
    assert_eq!((e.line, e.column), (1, deep[..at].chars().count() + 1));
}

#[test]
fn widest_scope_round_trips() {
    let services: Vec<String> = (0..MAX_SERVICES)
        .map(|i| format!("svc_{i}: \"DC {i}\" & B | C"))
        .collect();
    let text = services.join(", ");
    let scope = parse(&text).unwrap();
    assert_eq!(parse(&scope.to_string()).unwrap(), scope);
    assert_eq!(parse(&scope.to_json()).unwrap(), scope);
}

#[test]
fn error_positions_at_the_end_of_the_largest_input() {
    // A valid prefix of multi-byte names over many lines, then an error at the very end:
    // offset counts bytes, column counts characters.
    let mut text = String::from("{\n");
    let name = "é".repeat(60);
    let mut services = 0;
    while text.len() < MAX_INPUT - 300 {
        text.push_str(&format!("  s{services}: \"{name}\",\n"));
        services += 1;
    }
    assert!(services < MAX_SERVICES);
    let lines = text.matches('\n').count();
    text.push_str("  last: \"ééé\" & }");
    assert!(text.len() <= MAX_INPUT);
    let e = parse(&text).unwrap_err();
    assert_eq!(e.offset, text.len() - 1, "{e}");
    assert_eq!(e.line, lines + 1, "{e}");
    assert_eq!(e.column, "  last: \"ééé\" & }".chars().count(), "{e}");
    // The same scope without the error parses, prints and parses back.
    let ok = format!(
        "{}  last: \"ééé\" & X }}",
        &text[..text.len() - "  last: \"ééé\" & }".len()]
    );
    let scope = parse(&ok).unwrap();
    assert_eq!(parse(&scope.to_string()).unwrap(), scope);
}

#[test]
fn inputs_past_the_limits_are_refused_without_recursion() {
    let e = parse_expr(&"(".repeat(MAX_INPUT)).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::TooDeep { limit: MAX_DEPTH });
    let e = parse(&"(".repeat(MAX_INPUT + 1)).unwrap_err();
    assert!(
        matches!(
            e.kind,
            ParseErrorKind::TooLong {
                limit: MAX_INPUT,
                ..
            }
        ),
        "{e}"
    );
    let e = parse_bytes(&vec![b'('; 1 << 20]).unwrap_err();
    assert!(
        matches!(
            e.kind,
            ParseErrorKind::TooLong {
                limit: MAX_INPUT,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(parse_expr("A").unwrap(), Expr::Site("A".into()));
}
