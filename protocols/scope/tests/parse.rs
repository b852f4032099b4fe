#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::time::Duration;

use geomesh_scope::{parse, parse_bytes, parse_expr, Entry, Expr, ParseErrorKind, Scope};

fn site(s: &str) -> Expr {
    Expr::Site(s.to_string())
}
fn rep(v: Vec<Expr>) -> Expr {
    Expr::Replicate(v)
}
fn or(v: Vec<Expr>) -> Expr {
    Expr::Otherwise(v)
}
fn entries(pairs: Vec<(&str, Expr)>) -> Scope {
    Scope::new(
        pairs
            .into_iter()
            .map(|(s, e)| Entry {
                service: s.to_string(),
                expr: e,
            })
            .collect(),
    )
    .expect("valid test scope")
}
fn err(input: &str) -> String {
    match parse(input) {
        Ok(s) => panic!("{input:?} parsed as {s:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn paper_commands() {
    // Cmd. 2 and Cmd. 3 of the paper, and the slides' forms.
    assert_eq!(
        parse("{ compute: DC 1, image: DC 1 }").unwrap(),
        entries(vec![("compute", site("DC 1")), ("image", site("DC 1"))])
    );
    assert_eq!(
        parse("{ compute: DC 1, image: DC 2 }").unwrap(),
        entries(vec![("compute", site("DC 1")), ("image", site("DC 2"))])
    );
    assert_eq!(
        parse("{ Nova: Site1 & Site2 }").unwrap(),
        entries(vec![("Nova", rep(vec![site("Site1"), site("Site2")]))])
    );
    assert_eq!(
        parse("{ Nova: Site1 ; Site2 }").unwrap(),
        entries(vec![("Nova", or(vec![site("Site1"), site("Site2")]))])
    );
    assert_eq!(
        parse("{ Nova: around(Site1, 10ms) }").unwrap(),
        entries(vec![(
            "Nova",
            Expr::Around {
                site: "Site1".into(),
                within: Duration::from_millis(10)
            }
        )])
    );
}

#[test]
fn braces_optional_and_whitespace() {
    let a = parse("{ compute: DC 1, image: DC 2 }").unwrap();
    assert_eq!(parse("compute: DC 1, image: DC 2").unwrap(), a);
    assert_eq!(parse("compute:DC 1,image:DC 2").unwrap(), a);
    assert_eq!(
        parse("\n\t{\r\n compute :\tDC 1   ,\n image:  DC 2 \n}\n").unwrap(),
        a
    );
    // Inner runs of spaces are kept verbatim: a different site.
    assert_eq!(
        parse("c: DC  1").unwrap(),
        entries(vec![("c", site("DC  1"))])
    );
}

#[test]
fn empty_scope() {
    for s in ["", "   ", "{}", "{ }", " \n{\n}\n "] {
        let scope = parse(s).unwrap();
        assert!(scope.is_empty(), "{s:?}");
        assert_eq!(scope.print(), "{}");
    }
}

#[test]
fn precedence_and_spellings() {
    let e = parse_expr("A & B ; C & D").unwrap();
    assert_eq!(
        e,
        or(vec![
            rep(vec![site("A"), site("B")]),
            rep(vec![site("C"), site("D")])
        ])
    );
    assert_eq!(parse_expr("A & B | C & D").unwrap(), e);
    assert_eq!(
        parse_expr("A | B & C").unwrap(),
        or(vec![site("A"), rep(vec![site("B"), site("C")])])
    );
    assert_eq!(
        parse_expr("A ; B | C").unwrap(),
        or(vec![site("A"), site("B"), site("C")])
    );
    assert_eq!(
        parse_expr("(A ; B) & C").unwrap(),
        rep(vec![or(vec![site("A"), site("B")]), site("C")])
    );
    // Grouping is kept: A ; (B ; C) is not A ; B ; C.
    assert_eq!(
        parse_expr("A ; (B ; C)").unwrap(),
        or(vec![site("A"), or(vec![site("B"), site("C")])])
    );
    assert_eq!(parse_expr("((A))").unwrap(), site("A"));
}

#[test]
fn quoted_names_and_escapes() {
    assert_eq!(parse_expr(r#""DC;1""#).unwrap(), site("DC;1"));
    assert_eq!(parse_expr(r#""a\"b\\c\/d""#).unwrap(), site("a\"b\\c/d"));
    assert_eq!(parse_expr(r#""\u00e9t\u00e9""#).unwrap(), site("été"));
    assert_eq!(parse_expr(r#""été""#).unwrap(), site("été"));
    assert_eq!(parse_expr(r#""\ud83c\udf0d x""#).unwrap(), site("🌍 x"));
    assert_eq!(parse_expr(r#""around""#).unwrap(), site("around"));
    // A bare `around` not followed by `(` is a site.
    assert_eq!(
        parse_expr("around & around x").unwrap(),
        rep(vec![site("around"), site("around x")])
    );
    assert_eq!(site("DC;1").print(), r#""DC;1""#);
    assert_eq!(site("around").print(), r#""around""#);
    assert_eq!(site("DC 1").print(), "DC 1");
}

#[test]
fn durations() {
    let r = |s: &str| match parse_expr(&format!("around(A, {s})")).unwrap() {
        Expr::Around { within, .. } => within,
        other => panic!("{other:?}"),
    };
    assert_eq!(r("10ms"), Duration::from_millis(10));
    assert_eq!(r("10 ms"), Duration::from_millis(10));
    assert_eq!(r("1.5ms"), Duration::from_micros(1500));
    assert_eq!(r("250us"), Duration::from_micros(250));
    assert_eq!(r("250µs"), Duration::from_micros(250));
    assert_eq!(r("2s"), Duration::from_secs(2));
    assert_eq!(r("0.000001s"), Duration::from_micros(1));
    assert_eq!(r("0ms"), Duration::ZERO);
    assert_eq!(r("3600s"), Duration::from_secs(3600));
    assert_eq!(
        parse_expr("around( \"DC 1\" ,1.5ms )").unwrap().print(),
        "around(DC 1, 1500us)"
    );
    assert_eq!(
        parse_expr("around(A,0.5s)").unwrap().print(),
        "around(A, 500ms)"
    );
}

#[test]
fn json_form() {
    let s = parse(r#"{"compute": "InstanceOne", "image": "InstanceTwo"}"#).unwrap();
    assert_eq!(
        s,
        entries(vec![
            ("compute", site("InstanceOne")),
            ("image", site("InstanceTwo"))
        ])
    );
    let s = parse(r#"{"compute": "A | B & C", "image": "\"x;y\" ; DC 1"}"#).unwrap();
    assert_eq!(
        s,
        entries(vec![
            (
                "compute",
                or(vec![site("A"), rep(vec![site("B"), site("C")])])
            ),
            ("image", or(vec![site("x;y"), site("DC 1")])),
        ])
    );
    // JSON form without braces, and with JSON escapes in keys and values.
    assert_eq!(
        parse(r#""comp\u0075te": "DC\u00201""#).unwrap(),
        entries(vec![("compute", site("DC 1"))])
    );
    assert_eq!(parse(&s.to_json()).unwrap(), s);
}

#[test]
fn error_messages_positions() {
    let cases: &[(&str, &str)] = &[
        ("{ compute: DC1 & }", "scope:1:18: expected a site name or '(' after '&', found '}'"),
        ("compute: DC1 &", "scope:1:15: expected a site name or '(' after '&', found end of input"),
        ("{ compute DC1 }", "scope:1:11: expected ':' after the service name, found 'D'"),
        ("{ a: X, a: Y }", "scope:1:9: duplicate service 'a' (first given at 1:3)"),
        ("{ c: DC@1 }", "scope:1:8: expected '&', ';', '|', ',' or '}', found '@' (site names with other characters must be quoted)"),
        ("{ a: X, }", "scope:1:9: expected a service name, found '}'"),
        ("{ a: (X ; Y }", "scope:1:13: expected '&', ';', '|' or ')', found '}'"),
        ("{ a: X } x", "scope:1:10: expected end of input after '}', found 'x'"),
        ("a: X ;", "scope:1:7: expected a site name or '(' after ';', found end of input"),
        ("{\n  a: X,\n  b: &\n}", "scope:3:6: expected a site name or '(' after ':', found '&'"),
        ("{ -a: X }", "scope:1:3: invalid service name: must start with a letter, a digit or '_'"),
        (r#"{ a: "DC 1 }"#, "scope:1:13: expected '\"' to close the string, found end of input"),
        (r#"{ a: "DC\q" }"#, r#"scope:1:9: invalid escape: expected one of \" \\ \/ \b \f \n \r \t \uXXXX"#),
        (r#"{ a: "\ud800" }"#, "scope:1:7: invalid escape: a high surrogate must be followed by a \\u low surrogate"),
        ("{ a: \"D\tC\" }", "scope:1:8: control character in a quoted string (escape it)"),
        (r#"{ a: "D\tC" }"#, "scope:1:6: invalid site name: contains a control character"),
        (r#"{ a: " DC" }"#, "scope:1:6: invalid site name: starts or ends with white space"),
        (r#"{ a: "" }"#, "scope:1:6: invalid site name: empty"),
        // Bare names may contain spaces: "A 10ms" is one name.
        ("a: around(A 10ms)", "scope:1:17: expected ',' and a radius after the site name in around(...), found ')'"),
        ("a: around(A; 10ms)", "scope:1:12: expected ',' and a radius after the site name in around(...), found ';'"),
        ("a: around(A, 10)", "scope:1:16: expected a unit: us, ms or s, found ')'"),
        ("a: around(A, 10m)", "scope:1:16: expected a unit: us, ms or s, found 'm'"),
        ("a: around(A, 10msx)", "scope:1:16: expected a unit: us, ms or s, found 'm'"),
        ("a: around(A, 1.5us)", "scope:1:14: invalid duration: not a whole number of microseconds"),
        ("a: around(A, 3601s)", "scope:1:14: invalid duration: longer than one hour"),
        ("a: around(A, ms)", "scope:1:14: expected a radius such as 10ms, found 'm'"),
        ("a: around(, 1ms)", "scope:1:11: expected a site name after 'around(', found ','"),
        ("a: around(A, 1ms", "scope:1:17: expected ')' to close around(...), found end of input"),
        (r#"{"a": "X &"}"#, "scope:1:11: expected a site name or '(' after '&', found end of string"),
        (r#"{"a": "X \u0026 @"}"#, "scope:1:17: expected a site name or '(' after '&', found '@' (site names with other characters must be quoted)"),
        (r#"{"a": "X Y)"}"#, "scope:1:11: expected '&', ';', '|' or the end of the string, found ')'"),
        (r#"{"a": X}"#, "scope:1:7: expected a JSON string (the scope is in JSON form), found 'X'"),
        (r#"{"a": "X", b: "Y"}"#, "scope:1:12: expected a quoted service name (the scope is in JSON form), found 'b'"),
        (r#"{"a": ""}"#, "scope:1:8: expected a site name or '(' at the start of the expression, found end of string"),
    ];
    let mut wrong = Vec::new();
    for (input, want) in cases {
        let got = err(input);
        if got != *want {
            wrong.push(format!("{input:?}\n   got: {got}\n  want: {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn bytes_input() {
    assert_eq!(
        parse_bytes(b"a: DC 1").unwrap(),
        entries(vec![("a", site("DC 1"))])
    );
    let e = parse_bytes(b"a: \"DC\xff\"").unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::NotUtf8);
    assert_eq!(e.to_string(), "scope:1:7: scope is not valid UTF-8");
}

#[test]
fn limits() {
    // Depth: 32 levels of parentheses parse, 33 do not, and the error is
    // reported at the 33rd '(' before any recursion into it.
    let ok = format!("{}A{}", "(".repeat(32), ")".repeat(32));
    assert_eq!(parse_expr(&ok).unwrap(), site("A"));
    let deep = format!("{}A{}", "(".repeat(33), ")".repeat(33));
    let e = parse_expr(&deep).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::TooDeep { limit: 32 });
    assert_eq!(e.offset, 32);
    // A whole input of '(' is refused quickly and without stack growth.
    let e = parse(&format!("a: {}", "(".repeat(8000))).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::TooDeep { limit: 32 });

    let long = format!("a: {}", "x".repeat(8190));
    let e = parse(&long).unwrap_err();
    assert!(
        matches!(e.kind, ParseErrorKind::TooLong { limit: 8192, .. }),
        "{e}"
    );
    let e = parse_bytes(long.as_bytes()).unwrap_err();
    assert!(
        matches!(e.kind, ParseErrorKind::TooLong { limit: 8192, .. }),
        "{e}"
    );

    let services: Vec<String> = (0..65).map(|i| format!("s{i}: A")).collect();
    let e = parse(&services.join(",")).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::TooManyServices { limit: 64 });
    assert!(parse(&services[..64].join(",")).is_ok());

    let sites = vec!["A"; 257].join("&");
    let e = parse(&format!("a: {sites}")).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::TooManySites { limit: 256 });
    assert!(parse(&format!("a: {}", vec!["A"; 256].join("&"))).is_ok());

    let e = parse(&format!("a: {}", "x".repeat(129))).unwrap_err();
    assert!(
        matches!(e.kind, ParseErrorKind::NameTooLong { limit: 128, .. }),
        "{e}"
    );
    let e = parse(&format!("{}: A", "s".repeat(65))).unwrap_err();
    assert!(
        matches!(e.kind, ParseErrorKind::NameTooLong { limit: 64, .. }),
        "{e}"
    );

    // Compact input whose canonical form (with spaces) would exceed the limit.
    let name = "n".repeat(30);
    let compact = format!("a:{}", vec![name.as_str(); 256].join("&"));
    assert!(compact.len() <= 8192);
    let e = parse(&compact).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::CanonicalTooLong { limit: 8192 });
}

#[test]
fn printing() {
    let s = parse(r#"{compute:DC 1,image:(A|B)&"x;y",net:around(DC 1,1s);"été"}"#).unwrap();
    assert_eq!(
        s.print(),
        r#"{ compute: DC 1, image: (A ; B) & "x;y", net: around(DC 1, 1s) ; "été" }"#
    );
    assert_eq!(
        s.to_header_value(),
        r#"{ compute: DC 1, image: (A ; B) & "x;y", net: around(DC 1, 1s) ; "\u00e9t\u00e9" }"#
    );
    assert_eq!(
        s.to_json(),
        r#"{"compute": "DC 1", "image": "(A ; B) & \"x;y\"", "net": "around(DC 1, 1s) ; \"\\u00e9t\\u00e9\""}"#
    );
    for text in [s.print(), s.to_header_value(), s.to_json()] {
        assert_eq!(parse(&text).unwrap(), s, "{text}");
    }
}

#[test]
fn hand_built_trees_are_checked() {
    let bad = |e: Expr| {
        Scope::new(vec![Entry {
            service: "a".into(),
            expr: e,
        }])
        .is_err()
    };
    assert!(bad(rep(vec![site("A")])));
    assert!(bad(site("")));
    assert!(bad(site(" A")));
    assert!(bad(site("A\nB")));
    assert!(bad(Expr::Around {
        site: "A".into(),
        within: Duration::from_nanos(1500)
    }));
    let mut deep = site("A");
    for _ in 0..33 {
        deep = or(vec![deep, site("B")]);
    }
    // 33 nested chains print with 32 levels of parentheses: the limit.
    let ok = Scope::new(vec![Entry {
        service: "a".into(),
        expr: deep.clone(),
    }])
    .unwrap();
    assert_eq!(ok.print().matches('(').count(), 32);
    assert_eq!(parse(&ok.print()).unwrap(), ok);
    assert!(bad(or(vec![deep, site("B")])));
    assert!(Scope::new(vec![
        Entry {
            service: "a".into(),
            expr: site("A")
        },
        Entry {
            service: "a".into(),
            expr: site("B")
        },
    ])
    .is_err());
}

/// The examples GRAMMAR.md shows are real messages.
#[test]
fn grammar_md_examples() {
    let doc = include_str!("../GRAMMAR.md");
    let deep = format!("a: {}A{}", "(".repeat(33), ")".repeat(33));
    for input in [
        "{ compute: DC1 & }",
        "{ c: DC@1 }",
        "{ a: X, a: Y }",
        "a: around(A, 1.5us)",
        deep.as_str(),
    ] {
        let msg = err(input);
        assert!(doc.contains(&msg), "GRAMMAR.md lacks {msg}");
    }
    for example in [
        "{ compute: DC 1, image: DC 2 }",
        "{ image: DC1 & DC2 }",
        "{ compute: Site1 ; Site2 }",
        "{ compute: around(Site1, 10ms) }",
        "compute: DC 1, image: DC 2",
        r#"{"compute": "InstanceOne | InstanceTwo"}"#,
    ] {
        assert!(doc.contains(example));
        parse(example).unwrap();
    }
}
