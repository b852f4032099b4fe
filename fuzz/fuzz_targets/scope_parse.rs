//! scope-lang: the parser, the printers, the carriers and the resolver on
//! arbitrary bytes. Beyond "no panic": every scope that parses must re-parse
//! to the same tree from each of its three printed forms, and must resolve
//! (or fail with an error) against a registry of the sites it names.
#![no_main]

use std::time::Duration;

use geomesh_scope::carrier::{baggage_with_scope, scope_from_auth_token, scope_from_baggage};
use geomesh_scope::{parse, parse_bytes, Carriers, Expr, Registry, SiteTable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(scope) = parse_bytes(data) else {
        // The carriers parse the same bytes their own way; they must not panic.
        let _ = scope_from_baggage(data);
        let _ = scope_from_auth_token(data);
        let _ = Carriers {
            x_scope: None,
            x_auth_token: Some(data),
            baggage: Some(data),
        }
        .extract();
        return;
    };
    let text = scope.print();
    assert_eq!(parse(&text).as_ref(), Ok(&scope), "canonical: {text}");
    let header = scope.to_header_value();
    assert!(
        header.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "{header}"
    );
    assert_eq!(parse(&header).as_ref(), Ok(&scope), "header: {header}");
    let json = scope.to_json();
    assert_eq!(parse(&json).as_ref(), Ok(&scope), "json: {json}");
    if let Ok(bag) = baggage_with_scope(Some(b"k=v"), &scope) {
        let back = scope_from_baggage(&bag).ok().flatten().unwrap_or_default();
        assert!(
            back.equivalent(&scope),
            "baggage: {}",
            String::from_utf8_lossy(&bag)
        );
    }

    // A registry that knows every name the scope uses, and RTTs derived
    // from the input, so that around(...) has something to expand.
    let mut names: Vec<&str> = Vec::new();
    for e in scope.entries() {
        let mut stack = vec![&e.expr];
        while let Some(x) = stack.pop() {
            match x {
                Expr::Site(s) | Expr::Around { site: s, .. } => names.push(s),
                Expr::Replicate(ops) | Expr::Otherwise(ops) => stack.extend(ops.iter()),
            }
        }
    }
    let mut b = Registry::builder("local");
    for n in &names {
        b = b.site(*n);
    }
    for e in scope.entries() {
        b = b.service(e.service.as_str());
    }
    let Ok(reg) = b.pattern("{service}.{site}").build() else {
        return; // two names sanitise to the same cluster name: refused at configure time
    };
    let mut sites = SiteTable::new();
    for (i, a) in names.iter().enumerate() {
        for (j, c) in names.iter().enumerate().skip(i + 1) {
            sites.set_rtt(
                a,
                c,
                Duration::from_micros(((i * 7 + j * 13) % 50) as u64 * 1000),
            );
        }
        if i % 3 == 1 {
            sites.set_up(a, false);
        }
    }
    for e in scope.entries() {
        if let Ok(r) = reg.resolve(&scope, &e.service, &sites) {
            let alts = r.alternatives();
            assert!(!alts.is_empty() && alts.len() <= geomesh_scope::MAX_ALTERNATIVES);
            let _ = r.select(&sites);
        }
    }
});
