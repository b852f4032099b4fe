//! The scope tree and its printers (canonical, header-safe ASCII, JSON).
//!
//! Every walk over an [`Expr`] here is iterative (explicit stack): a tree
//! built by hand may be deeper than any the parser produces.

use std::fmt::{self, Write};
use std::time::Duration;

use crate::error::InvalidScope;
use crate::parse::{check_service, check_site};
use crate::{MAX_DEPTH, MAX_INPUT, MAX_RADIUS, MAX_SERVICES, MAX_SITE_REFS};

/// A location expression.
///
/// Invariants (checked by [`Scope::new`], guaranteed by the parser):
/// `Replicate` and `Otherwise` have at least two operands; site names are
/// valid (see GRAMMAR.md); radii are whole microseconds up to one hour.
/// The tree keeps the grouping the text had: `A ; (B ; C)` is
/// `Otherwise[A, Otherwise[B, C]]`, `A ; B ; C` is `Otherwise[A, B, C]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// One site: sharing (the request is served there).
    Site(String),
    /// `around(site, within)`: `site`, then every site whose round-trip time
    /// from `site` is at most `within`, nearest first, as an otherwise chain.
    Around {
        /// The centre, first in the chain.
        site: String,
        /// The radius (round-trip time from `site`).
        within: Duration,
    },
    /// `A & B & ...`: replication on every operand.
    Replicate(Vec<Expr>),
    /// `A ; B ; ...` (or `A | B`): the first operand that can serve.
    Otherwise(Vec<Expr>),
}

impl Expr {
    /// Whether the expression has an `around(...)` anywhere (iterative walk).
    pub fn uses_around(&self) -> bool {
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            match e {
                Expr::Around { .. } => return true,
                Expr::Site(_) => {}
                Expr::Replicate(ops) | Expr::Otherwise(ops) => stack.extend(ops.iter()),
            }
        }
        false
    }
}

/// One `service: expression` pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The service name (see GRAMMAR.md for the allowed characters).
    pub service: String,
    /// Where the service's requests go.
    pub expr: Expr,
}

/// A parsed scope: services mapped to location expressions, in the order
/// written. Services it does not name stay local. May be empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Scope {
    entries: Vec<Entry>,
}

impl Scope {
    /// Builds a scope from a hand-made tree, checking every invariant the
    /// parser guarantees, so that [`Scope::print`] always re-parses to it.
    pub fn new(entries: Vec<Entry>) -> Result<Scope, InvalidScope> {
        if entries.len() > MAX_SERVICES {
            return Err(InvalidScope(format!("more than {MAX_SERVICES} services")));
        }
        let mut refs = 0usize;
        for (i, e) in entries.iter().enumerate() {
            check_service(&e.service)
                .map_err(|r| InvalidScope(format!("service {:?}: {r}", e.service)))?;
            if entries.iter().take(i).any(|p| p.service == e.service) {
                return Err(InvalidScope(format!("duplicate service {:?}", e.service)));
            }
            refs += validate_expr(&e.expr)?;
        }
        if refs > MAX_SITE_REFS {
            return Err(InvalidScope(format!(
                "more than {MAX_SITE_REFS} site names"
            )));
        }
        let scope = Scope { entries };
        if scope.canonical_len() > MAX_INPUT {
            return Err(InvalidScope(format!(
                "canonical form longer than {MAX_INPUT} bytes"
            )));
        }
        Ok(scope)
    }

    pub(crate) fn from_parser(entries: Vec<Entry>) -> Scope {
        Scope { entries }
    }

    /// The empty scope (every service local).
    pub fn empty() -> Scope {
        Scope::default()
    }

    /// The entries in the order written.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The expression for `service`, if the scope names it.
    pub fn get(&self, service: &str) -> Option<&Expr> {
        self.entries
            .iter()
            .find(|e| e.service == service)
            .map(|e| &e.expr)
    }

    /// True when the scope names no service.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of services named.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Same services with the same trees, in any order.
    pub fn equivalent(&self, other: &Scope) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .all(|e| other.get(&e.service) == Some(&e.expr))
    }

    /// The canonical text: `{ compute: DC 1, image: DC1 & "a;b" }`.
    /// Non-ASCII characters of quoted names are written as they are.
    pub fn print(&self) -> String {
        let mut s = String::new();
        let _ = write_scope(&mut s, self, false);
        s
    }

    /// The canonical text with every non-ASCII character escaped as
    /// `\uXXXX`: printable ASCII only, safe as an HTTP header value.
    pub fn to_header_value(&self) -> String {
        let mut s = String::new();
        let _ = write_scope(&mut s, self, true);
        s
    }

    /// openstackoid's JSON form: `{"compute": "DC 1", "image": "DC1 & DC2"}`,
    /// each value the canonical (ASCII) text of the expression as a JSON string.
    pub fn to_json(&self) -> String {
        let mut s = String::from("{");
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            json_string(&mut s, &e.service);
            s.push_str(": ");
            let mut text = String::new();
            let _ = write_expr(&mut text, &e.expr, true);
            json_string(&mut s, &text);
        }
        s.push('}');
        s
    }

    fn canonical_len(&self) -> usize {
        let mut c = Counter(0);
        let _ = write_scope(&mut c, self, false);
        c.0
    }

    pub(crate) fn canonical_len_checked(&self) -> usize {
        self.canonical_len()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scope(f, self, false)
    }
}

impl Expr {
    /// The canonical text of this expression alone.
    pub fn print(&self) -> String {
        let mut s = String::new();
        let _ = write_expr(&mut s, self, false);
        s
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(f, self, false)
    }
}

struct Counter(usize);

impl Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 = self.0.saturating_add(s.len());
        Ok(())
    }
}

/// Whether parentheses are needed around `child` as an operand of `parent`.
fn needs_parens(parent_is_replicate: bool, child: &Expr) -> bool {
    match child {
        Expr::Site(_) | Expr::Around { .. } => false,
        Expr::Replicate(_) => parent_is_replicate,
        Expr::Otherwise(_) => true,
    }
}

/// Checks one expression; returns the number of site references.
fn validate_expr(root: &Expr) -> Result<usize, InvalidScope> {
    let mut refs = 0usize;
    let mut stack: Vec<(&Expr, usize)> = vec![(root, 0)];
    while let Some((e, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(InvalidScope(format!(
                "parentheses nested deeper than {MAX_DEPTH}"
            )));
        }
        match e {
            Expr::Site(s) => {
                refs += 1;
                check_site(s).map_err(|r| InvalidScope(format!("site {s:?}: {r}")))?;
            }
            Expr::Around { site, within } => {
                refs += 1;
                check_site(site).map_err(|r| InvalidScope(format!("site {site:?}: {r}")))?;
                if within.subsec_nanos() % 1000 != 0 || *within > MAX_RADIUS {
                    return Err(InvalidScope(format!(
                        "around radius {within:?} is not whole microseconds up to {MAX_RADIUS:?}"
                    )));
                }
            }
            Expr::Replicate(ops) | Expr::Otherwise(ops) => {
                if ops.len() < 2 {
                    return Err(InvalidScope(
                        "'&' or ';' with fewer than two operands".into(),
                    ));
                }
                let is_rep = matches!(e, Expr::Replicate(_));
                for op in ops {
                    let d = depth + usize::from(needs_parens(is_rep, op));
                    stack.push((op, d));
                }
            }
        }
        if refs > MAX_SITE_REFS {
            return Err(InvalidScope(format!(
                "more than {MAX_SITE_REFS} site names"
            )));
        }
    }
    Ok(refs)
}

fn write_scope<W: Write>(w: &mut W, scope: &Scope, ascii: bool) -> fmt::Result {
    if scope.entries.is_empty() {
        return w.write_str("{}");
    }
    w.write_str("{ ")?;
    for (i, e) in scope.entries.iter().enumerate() {
        if i > 0 {
            w.write_str(", ")?;
        }
        w.write_str(&e.service)?;
        w.write_str(": ")?;
        write_expr(w, &e.expr, ascii)?;
    }
    w.write_str(" }")
}

enum Work<'a> {
    Node(&'a Expr, bool),
    Text(&'static str),
}

/// Writes `root` canonically, without recursion.
pub(crate) fn write_expr<W: Write>(w: &mut W, root: &Expr, ascii: bool) -> fmt::Result {
    let mut stack: Vec<Work<'_>> = vec![Work::Node(root, false)];
    while let Some(item) = stack.pop() {
        match item {
            Work::Text(t) => w.write_str(t)?,
            Work::Node(e, parens) => {
                if parens {
                    w.write_str("(")?;
                    stack.push(Work::Text(")"));
                }
                match e {
                    Expr::Site(s) => write_site_with(w, s, ascii)?,
                    Expr::Around { site, within } => {
                        w.write_str("around(")?;
                        write_site_with(w, site, ascii)?;
                        w.write_str(", ")?;
                        write_duration(w, *within)?;
                        w.write_str(")")?;
                    }
                    Expr::Replicate(ops) | Expr::Otherwise(ops) => {
                        let is_rep = matches!(e, Expr::Replicate(_));
                        let sep = if is_rep { " & " } else { " ; " };
                        for (i, op) in ops.iter().enumerate().rev() {
                            stack.push(Work::Node(op, needs_parens(is_rep, op)));
                            if i > 0 {
                                stack.push(Work::Text(sep));
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Writes a site name bare when the grammar allows it, quoted otherwise.
pub(crate) fn write_site<W: Write>(w: &mut W, name: &str) -> fmt::Result {
    write_site_with(w, name, false)
}

fn write_site_with<W: Write>(w: &mut W, name: &str, ascii: bool) -> fmt::Result {
    if crate::parse::is_bare_site(name) {
        return w.write_str(name);
    }
    w.write_char('"')?;
    for c in name.chars() {
        match c {
            '"' => w.write_str("\\\"")?,
            '\\' => w.write_str("\\\\")?,
            c if c.is_control() || (ascii && !c.is_ascii()) => write_u_escape(w, c)?,
            c => w.write_char(c)?,
        }
    }
    w.write_char('"')
}

fn write_u_escape<W: Write>(w: &mut W, c: char) -> fmt::Result {
    let mut buf = [0u16; 2];
    for unit in c.encode_utf16(&mut buf) {
        write!(w, "\\u{:04x}", unit)?;
    }
    Ok(())
}

/// A JSON string literal, ASCII only.
pub(crate) fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let _ = write_u_escape(out, c);
            }
        }
    }
    out.push('"');
}

/// `10ms`, `1500us`, `2s`: the largest unit that writes it as an integer.
pub(crate) fn write_duration<W: Write>(w: &mut W, d: Duration) -> fmt::Result {
    let us = d.as_micros();
    if us % 1_000_000 == 0 {
        write!(w, "{}s", us / 1_000_000)
    } else if us % 1000 == 0 {
        write!(w, "{}ms", us / 1000)
    } else {
        write!(w, "{us}us")
    }
}
