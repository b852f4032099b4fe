//! The scope-lang parser (nom 8), bounded and recursion-safe.
//!
//! The only recursion is `primary -> expr` for a parenthesised group, and the
//! nesting depth is checked against [`MAX_DEPTH`] *before* recursing, so the
//! stack used is bounded whatever the input. Every other loop is bounded by
//! the input length, itself bounded by [`MAX_INPUT`]. No slicing by index:
//! only `str::get` and nom's own splitting.
//!
//! See GRAMMAR.md for the grammar this file implements.

use std::borrow::Cow;
use std::time::Duration;

use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::{char as one_char, digit1, multispace0};
use nom::Parser;

use crate::ast::{Entry, Expr, Scope};
use crate::error::{Found, ParseError, ParseErrorKind};
use crate::{
    MAX_DEPTH, MAX_INPUT, MAX_RADIUS, MAX_SERVICES, MAX_SERVICE_NAME, MAX_SITE_NAME, MAX_SITE_REFS,
};

type NomErr<'a> = nom::error::Error<&'a str>;

/// Characters of a bare site name's words, and of service names.
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Characters the grammar gives a meaning to (for the "must be quoted" hint).
pub(crate) fn is_known_char(c: char) -> bool {
    is_name_char(c)
        || matches!(
            c,
            ' ' | '\t' | '\r' | '\n' | '{' | '}' | '(' | ')' | '&' | ';' | '|' | ',' | ':' | '"'
        )
}

/// A valid service name: 1 to 64 bytes of ASCII letters, digits, `_`, `-`,
/// `.`, starting with a letter, a digit or `_`.
pub(crate) fn check_service(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > MAX_SERVICE_NAME {
        return Err("longer than 64 bytes");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        return Err("must start with a letter, a digit or '_'");
    }
    if !name.chars().all(is_name_char) {
        return Err("may contain only ASCII letters, digits, '_', '-' and '.'");
    }
    Ok(())
}

/// A valid site name (whatever its spelling): 1 to 128 bytes of UTF-8, no
/// control character, no leading or trailing white space.
pub(crate) fn check_site(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > MAX_SITE_NAME {
        return Err("longer than 128 bytes");
    }
    if name.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err("starts or ends with white space");
    }
    Ok(())
}

/// Whether `name` can be written without quotes: words of [`is_name_char`]
/// separated by spaces, and not the keyword `around`.
pub(crate) fn is_bare_site(name: &str) -> bool {
    check_site(name).is_ok()
        && name != "around"
        && name.starts_with(is_name_char)
        && name.ends_with(is_name_char)
        && name.chars().all(|c| c == ' ' || is_name_char(c))
}

fn ws(i: &str) -> &str {
    match multispace0::<&str, NomErr<'_>>(i) {
        Ok((rest, _)) => rest,
        Err(_) => i,
    }
}

fn lit(i: &str, c: char) -> Option<&str> {
    one_char::<&str, NomErr<'_>>(c)
        .parse(i)
        .ok()
        .map(|(rest, _)| rest)
}

struct PErr {
    /// Offset in the text being parsed (`P::text`).
    at: usize,
    kind: ParseErrorKind,
}

type PResult<'t, T> = Result<(&'t str, T), PErr>;

/// A JSON string decoded, with the offset in the source of every decoded
/// byte (plus one entry for the closing quote).
struct Decoded {
    text: String,
    map: Vec<usize>,
}

struct P<'t> {
    text: &'t str,
    end: Found,
    refs: usize,
}

impl<'t> P<'t> {
    /// A parser of the whole `text` (a header value, not a JSON string inside one).
    fn whole(text: &'t str) -> Self {
        P {
            text,
            end: Found::EndOfInput,
            refs: 0,
        }
    }

    fn off(&self, rest: &str) -> usize {
        self.text.len().saturating_sub(rest.len())
    }

    fn err(&self, rest: &str, kind: ParseErrorKind) -> PErr {
        PErr {
            at: self.off(rest),
            kind,
        }
    }

    fn expected(&self, rest: &str, what: impl Into<Cow<'static, str>>) -> PErr {
        let found = rest
            .chars()
            .next()
            .map(Found::Char)
            .unwrap_or_else(|| self.end.clone());
        self.err(
            rest,
            ParseErrorKind::Expected {
                expected: what.into(),
                found,
            },
        )
    }

    fn count_ref(&mut self, at: &str) -> Result<(), PErr> {
        self.refs += 1;
        if self.refs > MAX_SITE_REFS {
            return Err(self.err(
                at,
                ParseErrorKind::TooManySites {
                    limit: MAX_SITE_REFS,
                },
            ));
        }
        Ok(())
    }

    /// `expr = conj { (";" | "|") conj }`; `i` is at the first operand.
    fn expr(&mut self, i: &'t str, depth: usize, ctx: &'static str) -> PResult<'t, Expr> {
        let (mut rest, first) = self.conj(i, depth, ctx)?;
        let mut ops = vec![first];
        loop {
            let j = ws(rest);
            let (k, ctx) = if let Some(k) = lit(j, ';') {
                (k, "after ';'")
            } else if let Some(k) = lit(j, '|') {
                (k, "after '|'")
            } else {
                break;
            };
            let (r, e) = self.conj(ws(k), depth, ctx)?;
            ops.push(e);
            rest = r;
        }
        Ok((rest, collapse(ops, Expr::Otherwise)))
    }

    /// `conj = primary { "&" primary }`
    fn conj(&mut self, i: &'t str, depth: usize, ctx: &'static str) -> PResult<'t, Expr> {
        let (mut rest, first) = self.primary(i, depth, ctx)?;
        let mut ops = vec![first];
        loop {
            let j = ws(rest);
            let Some(k) = lit(j, '&') else { break };
            let (r, e) = self.primary(ws(k), depth, "after '&'")?;
            ops.push(e);
            rest = r;
        }
        Ok((rest, collapse(ops, Expr::Replicate)))
    }

    /// `primary = "(" expr ")" | around | site`
    fn primary(&mut self, i: &'t str, depth: usize, ctx: &'static str) -> PResult<'t, Expr> {
        if let Some(k) = lit(i, '(') {
            // The bound is checked before recursing: stack use stays bounded.
            if depth >= MAX_DEPTH {
                return Err(self.err(i, ParseErrorKind::TooDeep { limit: MAX_DEPTH }));
            }
            let (r, e) = self.expr(ws(k), depth + 1, "after '('")?;
            let r = ws(r);
            return match lit(r, ')') {
                Some(r) => Ok((r, e)),
                None => Err(self.expected(r, "'&', ';', '|' or ')'")),
            };
        }
        if i.starts_with('"') {
            let (r, name) = self.quoted_site(i)?;
            self.count_ref(i)?;
            return Ok((r, Expr::Site(name)));
        }
        if i.starts_with(is_name_char) {
            let (r, name) = self.bare_site(i)?;
            if name == "around" {
                if let Some(k) = lit(ws(r), '(') {
                    return self.around(i, k);
                }
            }
            self.count_ref(i)?;
            return Ok((r, Expr::Site(name.to_string())));
        }
        Err(self.expected(i, format!("a site name or '(' {ctx}")))
    }

    /// `around "(" site "," duration ")"`; `k` is just after the `(`.
    fn around(&mut self, start: &'t str, k: &'t str) -> PResult<'t, Expr> {
        let j = ws(k);
        let (r, site) = if j.starts_with('"') {
            self.quoted_site(j)?
        } else if j.starts_with(is_name_char) {
            let (r, s) = self.bare_site(j)?;
            (r, s.to_string())
        } else {
            return Err(self.expected(j, "a site name after 'around('"));
        };
        self.count_ref(start)?;
        let r = ws(r);
        let Some(r) = lit(r, ',') else {
            return Err(self.expected(r, "',' and a radius after the site name in around(...)"));
        };
        let (r, within) = self.duration(ws(r))?;
        let r = ws(r);
        match lit(r, ')') {
            Some(r) => Ok((r, Expr::Around { site, within })),
            None => Err(self.expected(r, "')' to close around(...)")),
        }
    }

    /// Words of name characters separated by runs of spaces; the spaces
    /// after the last word are not part of the name.
    fn bare_site(&self, i: &'t str) -> PResult<'t, &'t str> {
        let Ok((mut r, _)) = take_while1::<_, &str, NomErr<'_>>(is_name_char).parse(i) else {
            return Err(self.expected(i, "a site name"));
        };
        loop {
            let Ok((after, spaces)) = take_while::<_, &str, NomErr<'_>>(|c| c == ' ').parse(r)
            else {
                break;
            };
            if spaces.is_empty() {
                break;
            }
            match take_while1::<_, &str, NomErr<'_>>(is_name_char).parse(after) {
                Ok((r2, _)) => r = r2,
                Err(_) => break,
            }
        }
        let name = i.get(..i.len().saturating_sub(r.len())).unwrap_or("");
        if name.len() > MAX_SITE_NAME {
            return Err(self.err(
                i,
                ParseErrorKind::NameTooLong {
                    what: "site name",
                    limit: MAX_SITE_NAME,
                },
            ));
        }
        Ok((r, name))
    }

    fn quoted_site(&self, i: &'t str) -> PResult<'t, String> {
        let (r, d) = self.json_str(i)?;
        if d.text.len() > MAX_SITE_NAME {
            return Err(self.err(
                i,
                ParseErrorKind::NameTooLong {
                    what: "site name",
                    limit: MAX_SITE_NAME,
                },
            ));
        }
        if let Err(reason) = check_site(&d.text) {
            return Err(self.err(
                i,
                ParseErrorKind::InvalidName {
                    what: "site name",
                    reason,
                },
            ));
        }
        Ok((r, d.text))
    }

    /// A JSON string literal starting at `i` (which starts with `"`).
    fn json_str(&self, i: &'t str) -> PResult<'t, Decoded> {
        let Some(body) = lit(i, '"') else {
            return Err(self.expected(i, "'\"'"));
        };
        let base = self.off(body);
        let mut text = String::new();
        let mut map = Vec::new();
        let mut it = body.char_indices();
        loop {
            let Some((k, c)) = it.next() else {
                return Err(self.expected("", "'\"' to close the string"));
            };
            let at = base + k;
            let decoded = match c {
                '"' => {
                    map.push(at);
                    let rest = body.get(k + 1..).unwrap_or("");
                    return Ok((rest, Decoded { text, map }));
                }
                '\\' => match it.next() {
                    Some((_, c @ ('"' | '\\' | '/'))) => c,
                    Some((_, 'b')) => '\u{8}',
                    Some((_, 'f')) => '\u{c}',
                    Some((_, 'n')) => '\n',
                    Some((_, 'r')) => '\r',
                    Some((_, 't')) => '\t',
                    Some((_, 'u')) => self.unicode_escape(&mut it, at)?,
                    Some(_) => {
                        return Err(PErr {
                            at,
                            kind: ParseErrorKind::InvalidEscape {
                                reason: "expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX",
                            },
                        })
                    }
                    None => return Err(self.expected("", "'\"' to close the string")),
                },
                c if (c as u32) < 0x20 => {
                    return Err(PErr {
                        at,
                        kind: ParseErrorKind::ControlCharacter,
                    });
                }
                c => c,
            };
            text.push(decoded);
            map.extend(std::iter::repeat_n(at, decoded.len_utf8()));
        }
    }

    /// The rest of `\uXXXX` (and of a following `\uXXXX` low surrogate).
    fn unicode_escape(&self, it: &mut std::str::CharIndices<'_>, at: usize) -> Result<char, PErr> {
        let bad = |reason| PErr {
            at,
            kind: ParseErrorKind::InvalidEscape { reason },
        };
        let hex4 = |it: &mut std::str::CharIndices<'_>| -> Option<u32> {
            let mut v = 0u32;
            for _ in 0..4 {
                let (_, c) = it.next()?;
                v = v * 16 + c.to_digit(16)?;
            }
            Some(v)
        };
        let hi = hex4(it).ok_or_else(|| bad("\\u needs four hex digits"))?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            let (Some((_, '\\')), Some((_, 'u'))) = (it.next(), it.next()) else {
                return Err(bad(
                    "a high surrogate must be followed by a \\u low surrogate",
                ));
            };
            let lo = hex4(it).ok_or_else(|| bad("\\u needs four hex digits"))?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(bad(
                    "a high surrogate must be followed by a \\u low surrogate",
                ));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| bad("lone surrogate"))
    }

    /// `10ms`, `1.5 ms`, `250us`, `2s`: whole microseconds, at most an hour.
    fn duration(&self, i: &'t str) -> PResult<'t, Duration> {
        let bad = |reason| self.err(i, ParseErrorKind::InvalidDuration { reason });
        let Ok((r, int)) = digit1::<&str, NomErr<'_>>(i) else {
            return Err(self.expected(i, "a radius such as 10ms"));
        };
        if int.len() > 12 {
            return Err(bad("too many digits"));
        }
        let (r, frac) = match lit(r, '.') {
            Some(k) => match digit1::<&str, NomErr<'_>>(k) {
                Ok((r, f)) => (r, f),
                Err(_) => return Err(self.expected(k, "digits after '.'")),
            },
            None => (r, ""),
        };
        if frac.len() > 6 {
            return Err(bad("more than six decimals"));
        }
        let r = match take_while::<_, &str, NomErr<'_>>(|c| c == ' ').parse(r) {
            Ok((r, _)) => r,
            Err(_) => r,
        };
        let units: [(&str, u64); 5] = [
            ("ms", 1000),
            ("us", 1),
            ("\u{b5}s", 1),
            ("\u{3bc}s", 1),
            ("s", 1_000_000),
        ];
        let Some((after, unit)) = units.iter().find_map(|(t, u)| {
            tag::<&str, &str, NomErr<'_>>(*t)
                .parse(r)
                .ok()
                .map(|(a, _)| (a, *u))
        }) else {
            return Err(self.expected(r, "a unit: us, ms or s"));
        };
        if after.starts_with(|c: char| c.is_alphanumeric()) {
            return Err(self.expected(r, "a unit: us, ms or s"));
        }
        let int_v = digits_value(int);
        let frac_v = digits_value(frac);
        let scale = 10u64.pow(frac.len() as u32);
        let frac_us = frac_v * unit;
        if frac_us % scale != 0 {
            return Err(bad("not a whole number of microseconds"));
        }
        let us = int_v * unit + frac_us / scale;
        let d = Duration::from_micros(us);
        if d > MAX_RADIUS {
            return Err(bad("longer than one hour"));
        }
        Ok((after, d))
    }

    /// A service name: bare, or a JSON string in the JSON form.
    fn service(&self, i: &'t str, json: bool) -> PResult<'t, String> {
        let (r, name) = if json {
            if !i.starts_with('"') {
                return Err(self.expected(i, "a quoted service name (the scope is in JSON form)"));
            }
            let (r, d) = self.json_str(i)?;
            (r, d.text)
        } else {
            match take_while1::<_, &str, NomErr<'_>>(is_name_char).parse(i) {
                Ok((r, n)) => (r, n.to_string()),
                Err(_) => return Err(self.expected(i, "a service name")),
            }
        };
        if name.len() > MAX_SERVICE_NAME {
            return Err(self.err(
                i,
                ParseErrorKind::NameTooLong {
                    what: "service name",
                    limit: MAX_SERVICE_NAME,
                },
            ));
        }
        if let Err(reason) = check_service(&name) {
            return Err(self.err(
                i,
                ParseErrorKind::InvalidName {
                    what: "service name",
                    reason,
                },
            ));
        }
        Ok((r, name))
    }

    /// A JSON-form value: a string whose content is an expression.
    fn json_value(&mut self, i: &'t str) -> PResult<'t, Expr> {
        if !i.starts_with('"') {
            return Err(self.expected(i, "a JSON string (the scope is in JSON form)"));
        }
        let (r, d) = self.json_str(i)?;
        let close = self.off(r).saturating_sub(1);
        let mut sub = P {
            text: &d.text,
            end: Found::EndOfString,
            refs: self.refs,
        };
        let res = sub.whole_expr();
        self.refs = sub.refs;
        match res {
            Ok(e) => Ok((r, e)),
            Err(e) => Err(PErr {
                at: d.map.get(e.at).copied().unwrap_or(close),
                kind: e.kind,
            }),
        }
    }

    /// The whole text is one expression (surrounding white space allowed).
    fn whole_expr(&mut self) -> Result<Expr, PErr> {
        let text = self.text;
        let (r, e) = self.expr(ws(text), 0, "at the start of the expression")?;
        let r = ws(r);
        if !r.is_empty() {
            let what = match self.end {
                Found::EndOfString => "'&', ';', '|' or the end of the string",
                _ => "'&', ';', '|' or end of input",
            };
            return Err(self.expected(r, what));
        }
        Ok(e)
    }

    /// `scope = ws ( "{" ws [ entries ws ] "}" | [ entries ] ) ws`
    fn scope(&mut self) -> Result<Vec<Entry>, PErr> {
        let i = ws(self.text);
        let (mut i, braced) = match lit(i, '{') {
            Some(r) => (ws(r), true),
            None => (i, false),
        };
        let closing = |p: &P<'t>, r: &'t str| -> Result<(), PErr> {
            let r = ws(r);
            if r.is_empty() {
                Ok(())
            } else {
                Err(p.expected(r, "end of input after '}'"))
            }
        };
        if braced {
            if let Some(r) = lit(i, '}') {
                closing(self, r)?;
                return Ok(Vec::new());
            }
        } else if i.is_empty() {
            return Ok(Vec::new());
        }
        let json = i.starts_with('"');
        let mut entries: Vec<Entry> = Vec::new();
        let mut starts: Vec<usize> = Vec::new();
        loop {
            if entries.len() >= MAX_SERVICES {
                return Err(self.err(
                    i,
                    ParseErrorKind::TooManyServices {
                        limit: MAX_SERVICES,
                    },
                ));
            }
            let (r, service) = self.service(i, json)?;
            if let Some(first) = entries.iter().position(|e| e.service == service) {
                let first_at = starts.get(first).copied().unwrap_or(0);
                let (first_line, first_column) = crate::error::line_col(self.text, first_at);
                return Err(self.err(
                    i,
                    ParseErrorKind::DuplicateService {
                        service,
                        first_line,
                        first_column,
                    },
                ));
            }
            starts.push(self.off(i));
            let r = ws(r);
            let Some(r) = lit(r, ':') else {
                return Err(self.expected(r, "':' after the service name"));
            };
            let r = ws(r);
            let (r, expr) = if json {
                self.json_value(r)?
            } else {
                self.expr(r, 0, "after ':'")?
            };
            entries.push(Entry { service, expr });
            let r = ws(r);
            if let Some(k) = lit(r, ',') {
                i = ws(k);
                continue;
            }
            if braced {
                if let Some(k) = lit(r, '}') {
                    closing(self, k)?;
                    return Ok(entries);
                }
            } else if r.is_empty() {
                return Ok(entries);
            }
            let what = match (json, braced) {
                (true, true) => "',' or '}'",
                (true, false) => "',' or end of input",
                (false, true) => "'&', ';', '|', ',' or '}'",
                (false, false) => "'&', ';', '|', ',' or end of input",
            };
            return Err(self.expected(r, what));
        }
    }
}

fn collapse(mut ops: Vec<Expr>, make: fn(Vec<Expr>) -> Expr) -> Expr {
    if ops.len() == 1 {
        if let Some(e) = ops.pop() {
            return e;
        }
    }
    make(ops)
}

/// Value of a string of at most 12 ASCII digits (checked by the caller).
fn digits_value(s: &str) -> u64 {
    s.bytes().fold(0u64, |v, b| {
        v.saturating_mul(10)
            .saturating_add(u64::from(b.wrapping_sub(b'0')))
    })
}

/// Refuses an input over [`MAX_INPUT`] bytes.
fn check_len(input: &str) -> Result<(), ParseError> {
    if input.len() > MAX_INPUT {
        return Err(ParseError::at(
            input,
            MAX_INPUT,
            ParseErrorKind::TooLong {
                len: input.len(),
                limit: MAX_INPUT,
            },
        ));
    }
    Ok(())
}

/// Parses a scope: `{ compute: DC 1, image: DC1 & DC2 }`, the same without
/// braces, or openstackoid's JSON form `{"compute": "DC 1"}`. Whitespace
/// only, or `{}`, is the empty scope (every service local).
pub fn parse(input: &str) -> Result<Scope, ParseError> {
    check_len(input)?;
    let mut p = P::whole(input);
    let entries = p.scope().map_err(|e| ParseError::at(input, e.at, e.kind))?;
    let scope = Scope::from_parser(entries);
    if scope.canonical_len_checked() > MAX_INPUT {
        return Err(ParseError::at(
            input,
            0,
            ParseErrorKind::CanonicalTooLong { limit: MAX_INPUT },
        ));
    }
    Ok(scope)
}

/// [`parse`] for bytes (a header value): the length is checked before UTF-8.
pub fn parse_bytes(input: &[u8]) -> Result<Scope, ParseError> {
    if input.len() > MAX_INPUT {
        let prefix = input.get(..MAX_INPUT).unwrap_or(&[]);
        let text = match std::str::from_utf8(prefix) {
            Ok(t) => t,
            Err(e) => {
                std::str::from_utf8(prefix.get(..e.valid_up_to()).unwrap_or(&[])).unwrap_or("")
            }
        };
        return Err(ParseError::at(
            text,
            text.len(),
            ParseErrorKind::TooLong {
                len: input.len(),
                limit: MAX_INPUT,
            },
        ));
    }
    match std::str::from_utf8(input) {
        Ok(s) => parse(s),
        Err(e) => {
            let valid =
                std::str::from_utf8(input.get(..e.valid_up_to()).unwrap_or(&[])).unwrap_or("");
            Err(ParseError::at(valid, valid.len(), ParseErrorKind::NotUtf8))
        }
    }
}

/// Parses one location expression (no service, no braces): `DC1 ; DC2`.
pub fn parse_expr(input: &str) -> Result<Expr, ParseError> {
    check_len(input)?;
    let mut p = P::whole(input);
    p.whole_expr()
        .map_err(|e| ParseError::at(input, e.at, e.kind))
}
