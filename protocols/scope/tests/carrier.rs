#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use geomesh_scope::carrier::{
    auth_token_with_scope, baggage_scope_text, baggage_with_scope, percent_encode,
    scope_from_auth_token, scope_from_baggage, scope_from_x_scope, split_auth_token, x_scope_value,
};
use geomesh_scope::{
    decide, parse, Carrier, CarrierError, Carriers, Decision, Error, Registry, SiteTable, Target,
};

#[test]
fn x_scope() {
    let s = scope_from_x_scope(b"{ compute: DC 1 }").unwrap();
    assert_eq!(s, parse("compute: DC 1").unwrap());
    assert!(scope_from_x_scope(b"").unwrap().is_empty());
    let e = scope_from_x_scope(b"{ compute: DC 1 & }").unwrap_err();
    assert_eq!(
        e.to_string(),
        "x-scope: scope:1:19: expected a site name or '(' after '&', found '}'"
    );
    let s = parse(r#"{ a: "été" ; DC 1 }"#).unwrap();
    assert_eq!(x_scope_value(&s), r#"{ a: "\u00e9t\u00e9" ; DC 1 }"#);
    assert_eq!(scope_from_x_scope(x_scope_value(&s).as_bytes()).unwrap(), s);
}

#[test]
fn auth_token_piggyback() {
    let v = br#"gAAAAABk-token!SCOPE!{"compute": "InstanceOne", "image": "InstanceTwo"}"#;
    let (token, text) = split_auth_token(v).unwrap();
    assert_eq!(token, b"gAAAAABk-token");
    assert_eq!(
        text,
        br#"{"compute": "InstanceOne", "image": "InstanceTwo"}"#
    );
    let (token, scope) = scope_from_auth_token(v).unwrap().unwrap();
    assert_eq!(token, b"gAAAAABk-token");
    assert_eq!(
        scope,
        parse("compute: InstanceOne, image: InstanceTwo").unwrap()
    );
    assert_eq!(split_auth_token(b"plain-token"), None);
    assert_eq!(scope_from_auth_token(b"plain-token").unwrap(), None);
    // Native syntax in the suffix too; the first separator splits.
    let (token, scope) = scope_from_auth_token(b"t!SCOPE!{ a: \"x!SCOPE!y\" }")
        .unwrap()
        .unwrap();
    assert_eq!(token, b"t");
    assert_eq!(scope, parse(r#"a: "x!SCOPE!y""#).unwrap());
    let e = scope_from_auth_token(b"t!SCOPE!{ a: }").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("x-auth-token: scope:1:6: expected a site name"),
        "{e}"
    );
    // Producing: JSON form (what openstackoid reads), previous suffix replaced.
    let s = parse("{ image: DC 1 & \"DC;2\" }").unwrap();
    let v = auth_token_with_scope(b"tok!SCOPE!{}", &s);
    assert_eq!(v, br#"tok!SCOPE!{"image": "DC 1 & \"DC;2\""}"#.to_vec());
    assert_eq!(
        scope_from_auth_token(&v).unwrap().unwrap(),
        (b"tok".to_vec(), s)
    );
}

#[test]
fn baggage() {
    let v =
        b"userId=alice, scope=%7B%20image%3A%20DC%202%20%7D;ttl=3 ,serverNode=DF%2028,isProduction";
    assert_eq!(baggage_scope_text(v).unwrap().unwrap(), b"{ image: DC 2 }");
    assert_eq!(
        scope_from_baggage(v).unwrap().unwrap(),
        parse("image: DC 2").unwrap()
    );
    assert_eq!(scope_from_baggage(b"userId=alice").unwrap(), None);
    assert_eq!(scope_from_baggage(b"").unwrap(), None);
    // Key match is exact (case-sensitive), members without '=' are skipped.
    assert_eq!(
        scope_from_baggage(b"Scope=x, scopes=y, scope").unwrap(),
        None
    );
    assert_eq!(
        scope_from_baggage(b"a=1,scope=x,scope=y").unwrap_err(),
        CarrierError::DuplicateBaggageScope
    );
    assert_eq!(
        scope_from_baggage(b"a=1, scope=%7")
            .unwrap_err()
            .to_string(),
        "baggage: malformed at byte 11: '%' must be followed by two hex digits"
    );
    assert_eq!(
        scope_from_baggage(b"scope={ a: b }").unwrap_err().to_string(),
        "baggage: malformed at byte 7: character not allowed in a baggage value (percent-encode it)"
    );
    let e = scope_from_baggage(b"scope=a%3A").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("baggage: scope:1:3: expected a site name"),
        "{e}"
    );
    // Producing: other members kept, old scope replaced, round trip.
    let s = parse(r#"{ compute: DC 1 ; "a,b" , image: around(DC 2, 5ms) }"#).unwrap();
    let out = baggage_with_scope(Some(b"k=v;p, scope=old ,x=1"), &s).unwrap();
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(text, "k=v;p,x=1,scope={%20compute:%20DC%201%20%3B%20%22a%2Cb%22%2C%20image:%20around(DC%202%2C%205ms)%20}");
    assert_eq!(scope_from_baggage(&out).unwrap().unwrap(), s);
    assert_eq!(
        baggage_with_scope(Some(b"k=v, scope=old"), &parse("{}").unwrap()).unwrap(),
        b"k=v"
    );
    assert_eq!(percent_encode("a b%;"), "a%20b%25%3B");
    let many: Vec<String> = (0..180).map(|i| format!("k{i}=v")).collect();
    let e = baggage_with_scope(Some(many.join(",").as_bytes()), &s).unwrap_err();
    assert_eq!(
        e,
        CarrierError::TooLong {
            carrier: Carrier::Baggage,
            limit: 8192
        }
    );
}

#[test]
fn extract_precedence_and_conflicts() {
    let none = Carriers::default();
    assert_eq!(none.extract().unwrap(), None);
    let c = Carriers {
        x_scope: Some(b"{ a: X, b: Y }"),
        x_auth_token: Some(br#"tok!SCOPE!{"b": "Y", "a": "X"}"#),
        baggage: Some(b"scope=b%3AY%2Ca%3AX"),
    };
    let ex = c.extract().unwrap().unwrap();
    assert_eq!(ex.scope, parse("a: X, b: Y").unwrap());
    assert_eq!(
        ex.carriers,
        vec![Carrier::XScope, Carrier::AuthToken, Carrier::Baggage]
    );
    assert_eq!(ex.stripped_auth_token.as_deref(), Some(&b"tok"[..]));
    let c = Carriers {
        baggage: Some(b"scope=b%3AZ"),
        ..c
    };
    assert_eq!(
        c.extract().unwrap_err().to_string(),
        "scope: x-scope and baggage carry different scopes"
    );
    let c = Carriers {
        x_scope: None,
        x_auth_token: Some(b"tok"),
        baggage: Some(b"scope=b%3AZ"),
    };
    let ex = c.extract().unwrap().unwrap();
    assert_eq!(ex.carriers, vec![Carrier::Baggage]);
    assert_eq!(ex.stripped_auth_token, None);
}

#[test]
fn decide_end_to_end() {
    let reg = Registry::builder("DC1")
        .site("DC2")
        .service("s")
        .service("t")
        .pattern("{service}_{site}")
        .build()
        .unwrap();
    let mut sites = SiteTable::new();
    let local = |site: &str| Target {
        site: site.into(),
        cluster: format!("t_{}", site.to_lowercase()),
        local: site == "DC1",
    };
    // The paper's propagation example: { s: DC1, t: DC2 } at t's sidecar.
    let c = Carriers {
        baggage: Some(b"scope=%7Bs%3ADC1%2Ct%3ADC2%7D"),
        ..Carriers::default()
    };
    assert_eq!(
        decide(&c, "t", &reg, &sites).unwrap().decision,
        Decision::Route(local("DC2"))
    );
    assert_eq!(
        decide(&c, "s", &reg, &sites).unwrap().decision,
        Decision::Route(Target {
            site: "DC1".into(),
            cluster: "s_dc1".into(),
            local: true
        })
    );
    assert_eq!(
        decide(&Carriers::default(), "t", &reg, &sites)
            .unwrap()
            .decision,
        Decision::Local
    );
    let c = Carriers {
        x_scope: Some(b"{ t: DC2 ; DC1 }"),
        ..Carriers::default()
    };
    sites.set_up("DC2", false);
    assert_eq!(
        decide(&c, "t", &reg, &sites).unwrap().decision,
        Decision::Route(local("DC1"))
    );
    sites.set_up("DC1", false);
    let e = decide(&c, "t", &reg, &sites).unwrap_err();
    assert_eq!(e.http_status(), 503);
    assert_eq!(
        e.to_string(),
        "scope: no location reachable for service 't'; tried DC2 (down) ; DC1 (down)"
    );
    let bad = Carriers {
        x_scope: Some(b"{ t: DC2 ; }"),
        ..Carriers::default()
    };
    let e = decide(&bad, "t", &reg, &sites).unwrap_err();
    assert!(matches!(e, Error::Carrier(_)));
    assert_eq!(e.http_status(), 400);
    let unknown = Carriers {
        x_scope: Some(b"{ t: DC7 }"),
        ..Carriers::default()
    };
    let e = decide(&unknown, "t", &reg, &sites).unwrap_err();
    assert_eq!(
        (e.http_status(), e.to_string()),
        (400, "scope: unknown site 'DC7'".to_string())
    );
}
