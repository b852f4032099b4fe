//! A small InfluxQL lexer: enough to split `q` into statements and read what a router needs
//! (the statement's verb, its FROM sources, functions, INTO, LIMIT/OFFSET). Strings (`'...'`),
//! quoted identifiers (`"..."`), regular expressions (`/.../`) and `--` comments are skipped as
//! units, so a `;` or a keyword inside them is not taken for one. Iterative, bounded by the
//! input, never panics.

/// One token, with its byte span in the statement text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    /// Identifiers: the name (quoted identifiers unescaped); keywords compare case-insensitively.
    pub text: String,
}

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bare word (identifier or keyword).
    Word,
    /// A `"quoted"` identifier.
    Quoted,
    /// A `'string'`.
    Str,
    /// A `/regex/`.
    Regex,
    /// A number or duration literal.
    Number,
    /// `$name` (a bound parameter).
    Param,
    /// Punctuation and operators (`,` `(` `)` `.` `=~` ...).
    Punct,
    /// `;`
    Semicolon,
}

/// Why a text could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError(pub &'static str);

impl Token {
    /// Whether this is the bare word `kw` (case-insensitive).
    pub fn is(&self, kw: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(kw)
    }

    /// Whether this is the punctuation `p`.
    pub fn punct(&self, p: &str) -> bool {
        self.kind == Kind::Punct && self.text == p
    }
}

/// Keywords after which a `/` starts a regular expression rather than a division.
const REGEX_AFTER: &[&str] = &[
    "select", "from", "where", "and", "or", "by", "not", "on", "with", "key",
];

/// The tokens of `q`.
pub fn tokens(q: &str) -> Result<Vec<Token>, LexError> {
    let b = q.as_bytes();
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0usize;
    while let Some(&c) = b.get(i) {
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while b.get(i).is_some_and(|c| *c != b'\n') {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' => {
                let (text, end) = quoted(b, i, c)?;
                i = end;
                let kind = if c == b'"' { Kind::Quoted } else { Kind::Str };
                out.push(Token {
                    kind,
                    start,
                    end,
                    text,
                });
            }
            b'/' if regex_allowed(out.last()) => {
                let (text, end) = quoted(b, i, b'/')?;
                i = end;
                out.push(Token {
                    kind: Kind::Regex,
                    start,
                    end,
                    text,
                });
            }
            b';' => {
                i += 1;
                out.push(Token {
                    kind: Kind::Semicolon,
                    start,
                    end: i,
                    text: ";".to_owned(),
                });
            }
            b'$' => {
                i += 1;
                while b.get(i).is_some_and(|c| is_word(*c)) {
                    i += 1;
                }
                out.push(Token {
                    kind: Kind::Param,
                    start,
                    end: i,
                    text: slice(q, start, i),
                });
            }
            c if c.is_ascii_digit() => {
                while b
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.')
                {
                    i += 1;
                }
                out.push(Token {
                    kind: Kind::Number,
                    start,
                    end: i,
                    text: slice(q, start, i),
                });
            }
            c if is_word(c) => {
                while b.get(i).is_some_and(|c| is_word(*c)) {
                    i += 1;
                }
                out.push(Token {
                    kind: Kind::Word,
                    start,
                    end: i,
                    text: slice(q, start, i),
                });
            }
            _ => {
                let two = b.get(i..i + 2).unwrap_or_default();
                let len = if matches!(two, b"=~" | b"!~" | b"!=" | b"<>" | b"<=" | b">=" | b"::") {
                    2
                } else {
                    1
                };
                // One whole UTF-8 character for anything else.
                let mut end = i + len;
                while end < b.len() && !q.is_char_boundary(end) {
                    end += 1;
                }
                i = end;
                out.push(Token {
                    kind: Kind::Punct,
                    start,
                    end,
                    text: slice(q, start, end),
                });
            }
        }
    }
    Ok(out)
}

fn slice(q: &str, start: usize, end: usize) -> String {
    q.get(start..end).unwrap_or_default().to_owned()
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

fn regex_allowed(prev: Option<&Token>) -> bool {
    match prev {
        None => true,
        Some(t) => match t.kind {
            Kind::Punct => t.text != ")",
            Kind::Semicolon => true,
            Kind::Word => REGEX_AFTER.iter().any(|k| t.text.eq_ignore_ascii_case(k)),
            _ => false,
        },
    }
}

/// A quoted unit starting at `i` (the opening `quote`): its unescaped content (for a regex the
/// raw content) and the index after the closing quote.
fn quoted(b: &[u8], i: usize, quote: u8) -> Result<(String, usize), LexError> {
    let mut j = i + 1;
    let mut text = Vec::new();
    loop {
        match b.get(j) {
            None => return Err(LexError("unterminated quote or regular expression")),
            Some(&c) if c == quote => break,
            Some(b'\\') => {
                match b.get(j + 1) {
                    Some(&n) if n == quote && quote != b'/' => text.push(n),
                    Some(&n) if n == b'\\' && quote != b'/' => text.push(n),
                    Some(&n) => {
                        text.push(b'\\');
                        text.push(n);
                    }
                    None => return Err(LexError("unterminated quote or regular expression")),
                }
                j += 2;
            }
            Some(&c) => {
                text.push(c);
                j += 1;
            }
        }
    }
    Ok((String::from_utf8_lossy(&text).into_owned(), j + 1))
}

/// The statements of `q`: each one's text (trimmed) and tokens; empty statements dropped.
pub fn statements(q: &str) -> Result<Vec<(String, Vec<Token>)>, LexError> {
    let toks = tokens(q)?;
    let mut out = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    for t in toks.into_iter().chain(std::iter::once(Token {
        kind: Kind::Semicolon,
        start: q.len(),
        end: q.len(),
        text: String::new(),
    })) {
        if t.kind == Kind::Semicolon {
            if let (Some(first), Some(last)) = (current.first(), current.last()) {
                let (s, e) = (first.start, last.end);
                let text = q.get(s..e).unwrap_or_default().to_owned();
                let shifted = current
                    .drain(..)
                    .map(|mut t| {
                        t.start -= s;
                        t.end -= s;
                        t
                    })
                    .collect();
                out.push((text, shifted));
            }
            current.clear();
        } else {
            current.push(t);
        }
    }
    Ok(out)
}
