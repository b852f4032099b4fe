//! The sources of an InfluxQL statement's `FROM` lists (subqueries' included): measurements
//! with the database they name, regular expressions, subqueries.

use crate::lex::{Kind, Token};

/// Words that end a FROM list.
pub const FROM_END: &[&str] = &[
    "where", "group", "order", "limit", "offset", "slimit", "soffset", "fill", "tz", "into", "with",
];

/// A FROM source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A measurement, with the database it names (`db.rp.m`, `db..m`) if any.
    Measurement {
        db: Option<String>,
        name: String,
    },
    Regex,
    Subquery,
}

impl Source {
    /// A measurement of the request's database.
    pub fn measurement(name: &str) -> Source {
        Source::Measurement {
            db: None,
            name: name.to_owned(),
        }
    }
}

/// The sources of every FROM of the statement (subqueries' included).
pub fn sources(toks: &[Token]) -> Vec<Source> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(t) = toks.get(i) {
        i += 1;
        if !t.is("from") {
            continue;
        }
        // A list: item (, item)*; an item is a regex, a subquery or a dotted name.
        loop {
            match toks.get(i) {
                Some(t) if t.kind == Kind::Regex => {
                    out.push(Source::Regex);
                    i += 1;
                }
                Some(t) if t.punct("(") => {
                    out.push(Source::Subquery);
                    i += 1; // the subquery's own FROM is read by the outer loop
                    break;
                }
                Some(t)
                    if matches!(t.kind, Kind::Word | Kind::Quoted)
                        && !FROM_END.iter().any(|k| t.is(k)) =>
                {
                    // db.rp.m, db..m, rp.m: the last part is the measurement, the first of
                    // three the database.
                    let mut parts = vec![t.text.clone()];
                    let mut regex = false;
                    i += 1;
                    while toks.get(i).is_some_and(|t| t.punct(".")) && parts.len() < 3 {
                        i += 1;
                        match toks.get(i) {
                            Some(t) if matches!(t.kind, Kind::Word | Kind::Quoted) => {
                                parts.push(t.text.clone());
                                i += 1;
                            }
                            Some(t) if t.kind == Kind::Regex => {
                                regex = true;
                                i += 1;
                                break;
                            }
                            _ => parts.push(String::new()),
                        }
                    }
                    if regex {
                        out.push(Source::Regex);
                    } else if let Some(name) = parts.last().filter(|n| !n.is_empty()) {
                        let db = parts
                            .first()
                            .filter(|d| parts.len() == 3 && !d.is_empty())
                            .cloned();
                        out.push(Source::Measurement {
                            db,
                            name: name.clone(),
                        });
                    }
                }
                _ => break,
            }
            if toks.get(i).is_some_and(|t| t.punct(",")) {
                i += 1;
            } else {
                break;
            }
        }
    }
    out
}
