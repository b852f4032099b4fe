//! Error types. Every message names what went wrong well enough to be sent
//! back to a client as the body of a 400 (or 503) answer.

use std::borrow::Cow;
use std::fmt;

/// What the parser saw where it expected something else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A character of the input.
    Char(char),
    /// The end of the whole input.
    EndOfInput,
    /// The end of a JSON string whose content is an expression (JSON form).
    EndOfString,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Char(c) if c.is_ascii_graphic() => write!(f, "'{c}'"),
            Found::Char(c) => write!(f, "{:?}", c),
            Found::EndOfInput => f.write_str("end of input"),
            Found::EndOfString => f.write_str("end of string"),
        }
    }
}

/// Why a scope failed to parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The grammar expected `expected` (e.g. "a site name or '(' after '&'").
    Expected {
        /// What the grammar expected at this position.
        expected: Cow<'static, str>,
        /// What was there instead.
        found: Found,
    },
    /// The input is longer than [`crate::MAX_INPUT`] bytes.
    TooLong {
        /// Length of the input.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The input is not UTF-8 (from a header carried as bytes).
    NotUtf8,
    /// Parentheses nested deeper than [`crate::MAX_DEPTH`].
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// More than [`crate::MAX_SERVICES`] services.
    TooManyServices {
        /// The limit.
        limit: usize,
    },
    /// More than [`crate::MAX_SITE_REFS`] site references in the whole scope.
    TooManySites {
        /// The limit.
        limit: usize,
    },
    /// A site or service name longer than its limit.
    NameTooLong {
        /// "site name" or "service name".
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A name that is well delimited but not allowed (reason given).
    InvalidName {
        /// "site name" or "service name".
        what: &'static str,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The same service twice.
    DuplicateService {
        /// The service.
        service: String,
        /// Line of its first occurrence.
        first_line: usize,
        /// Column of its first occurrence.
        first_column: usize,
    },
    /// A bad `\` escape in a quoted string.
    InvalidEscape {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A raw control character inside a quoted string.
    ControlCharacter,
    /// A duration that is not a whole number of microseconds, or too long.
    InvalidDuration {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The scope parses, but its canonical form would exceed [`crate::MAX_INPUT`].
    CanonicalTooLong {
        /// The limit.
        limit: usize,
    },
}

/// A parse error: byte offset, 1-based line and column (in characters) and why.
///
/// Displays as `scope:LINE:COLUMN: MESSAGE`, e.g.
/// `scope:1:14: expected a site name or '(' after '&', found end of input`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the input (0-based).
    pub offset: usize,
    /// Line (1-based).
    pub line: usize,
    /// Column (1-based, counted in characters).
    pub column: usize,
    /// What went wrong.
    pub kind: ParseErrorKind,
}

/// 1-based line and column (in characters) of byte `offset` in `input`.
pub(crate) fn line_col(input: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut column = 1;
    for (i, c) in input.char_indices() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

impl ParseError {
    pub(crate) fn at(input: &str, offset: usize, kind: ParseErrorKind) -> Self {
        let (line, column) = line_col(input, offset);
        ParseError {
            offset,
            line,
            column,
            kind,
        }
    }

    /// The message without the `scope:LINE:COLUMN: ` prefix.
    pub fn message(&self) -> String {
        match &self.kind {
            ParseErrorKind::Expected { expected, found } => {
                let hint = match found {
                    Found::Char(c) if !crate::parse::is_known_char(*c) => {
                        " (site names with other characters must be quoted)"
                    }
                    _ => "",
                };
                format!("expected {expected}, found {found}{hint}")
            }
            ParseErrorKind::TooLong { len, limit } => {
                format!("scope is {len} bytes long, the limit is {limit}")
            }
            ParseErrorKind::NotUtf8 => "scope is not valid UTF-8".to_string(),
            ParseErrorKind::TooDeep { limit } => {
                format!("parentheses nested deeper than {limit}")
            }
            ParseErrorKind::TooManyServices { limit } => {
                format!("more than {limit} services in one scope")
            }
            ParseErrorKind::TooManySites { limit } => {
                format!("more than {limit} site names in one scope")
            }
            ParseErrorKind::NameTooLong { what, limit } => {
                format!("{what} longer than {limit} bytes")
            }
            ParseErrorKind::InvalidName { what, reason } => format!("invalid {what}: {reason}"),
            ParseErrorKind::DuplicateService {
                service,
                first_line,
                first_column,
            } => format!(
                "duplicate service '{service}' (first given at {first_line}:{first_column})"
            ),
            ParseErrorKind::InvalidEscape { reason } => format!("invalid escape: {reason}"),
            ParseErrorKind::ControlCharacter => {
                "control character in a quoted string (escape it)".to_string()
            }
            ParseErrorKind::InvalidDuration { reason } => format!("invalid duration: {reason}"),
            ParseErrorKind::CanonicalTooLong { limit } => {
                format!("the canonical form of this scope is longer than {limit} bytes")
            }
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scope:{}:{}: {}", self.line, self.column, self.message())
    }
}

impl std::error::Error for ParseError {}

/// A scope tree built by hand that breaks an invariant the parser guarantees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidScope(pub String);

impl fmt::Display for InvalidScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid scope: {}", self.0)
    }
}

impl std::error::Error for InvalidScope {}

/// A bad registry or pattern configuration (reported once, at configure time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scope registry: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Why a (valid) scope could not be turned into a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// The scope names a service the registry does not know.
    UnknownService(String),
    /// The scope names a site the registry does not know.
    UnknownSite(String),
    /// Neither an explicit entry nor a pattern gives a cluster for this pair.
    NoCluster {
        /// The service.
        service: String,
        /// The site.
        site: String,
    },
    /// Expanding `&` over `;` (or `around`) gives more than
    /// [`crate::MAX_ALTERNATIVES`] alternatives.
    PlanTooLarge {
        /// The service whose expression is too large.
        service: String,
        /// The limit.
        limit: usize,
    },
    /// Every alternative has a site (or service instance) that is down.
    /// `tried` lists the alternatives in order, each a list of (site, available).
    Unavailable {
        /// The service.
        service: String,
        /// Alternatives in order, each a list of (site, available).
        tried: Vec<Vec<(String, bool)>>,
    },
}

impl ResolveError {
    /// The HTTP status a filter should answer with: 503 when nothing is
    /// reachable, 400 for everything the client can fix.
    pub fn http_status(&self) -> u16 {
        match self {
            ResolveError::Unavailable { .. } => 503,
            _ => 400,
        }
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::UnknownService(s) => write!(f, "scope: unknown service '{s}'"),
            ResolveError::UnknownSite(s) => write!(f, "scope: unknown site '{s}'"),
            ResolveError::NoCluster { service, site } => {
                write!(f, "scope: no cluster for service '{service}' at site '{site}'")
            }
            ResolveError::PlanTooLarge { service, limit } => write!(
                f,
                "scope: the location of service '{service}' expands to more than {limit} alternatives"
            ),
            ResolveError::Unavailable { service, tried } => {
                write!(f, "scope: no location reachable for service '{service}'; tried ")?;
                for (i, alt) in tried.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ; ")?;
                    }
                    for (j, (site, up)) in alt.iter().enumerate() {
                        if j > 0 {
                            f.write_str(" & ")?;
                        }
                        crate::ast::write_site(f, site)?;
                        if !up {
                            f.write_str(" (down)")?;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ResolveError {}

/// Which header a scope came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// `X-Scope: <scope>`
    XScope,
    /// `X-Auth-Token: <token>!SCOPE!<scope>` (openstackoid's piggyback)
    AuthToken,
    /// `baggage: ..., scope=<percent-encoded scope>, ...` (W3C baggage)
    Baggage,
}

impl Carrier {
    /// The header name, lowercase as HTTP/2 and Envoy spell it.
    pub fn header(self) -> &'static str {
        match self {
            Carrier::XScope => crate::carrier::X_SCOPE,
            Carrier::AuthToken => crate::carrier::X_AUTH_TOKEN,
            Carrier::Baggage => crate::carrier::BAGGAGE,
        }
    }
}

impl fmt::Display for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.header())
    }
}

/// Why a carrier header could not yield a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CarrierError {
    /// The scope text inside the header does not parse.
    Parse {
        /// The header.
        carrier: Carrier,
        /// The parse error (positions are in the scope text).
        error: ParseError,
    },
    /// The baggage header is malformed around byte `offset`.
    Baggage {
        /// Byte offset in the header value.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The baggage header carries `scope` more than once.
    DuplicateBaggageScope,
    /// Two carriers carry different scopes.
    Conflict {
        /// The carrier with precedence.
        first: Carrier,
        /// A carrier that disagrees with it.
        second: Carrier,
    },
    /// Producing a header value would exceed a limit.
    TooLong {
        /// The header.
        carrier: Carrier,
        /// The limit in bytes.
        limit: usize,
    },
}

impl fmt::Display for CarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CarrierError::Parse { carrier, error } => write!(f, "{carrier}: {error}"),
            CarrierError::Baggage { offset, reason } => {
                write!(f, "baggage: malformed at byte {offset}: {reason}")
            }
            CarrierError::DuplicateBaggageScope => {
                f.write_str("baggage: the member 'scope' appears more than once")
            }
            CarrierError::Conflict { first, second } => {
                write!(f, "scope: {first} and {second} carry different scopes")
            }
            CarrierError::TooLong { carrier, limit } => {
                write!(f, "{carrier}: value would be longer than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for CarrierError {}

/// Any error on the request path, with the HTTP status to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// From a carrier header (malformed scope, malformed baggage, conflict).
    Carrier(CarrierError),
    /// From resolution (unknown name, nothing reachable).
    Resolve(ResolveError),
}

impl Error {
    /// 400 for anything the client can fix, 503 when no location is reachable.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::Carrier(_) => 400,
            Error::Resolve(e) => e.http_status(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Carrier(e) => e.fmt(f),
            Error::Resolve(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<CarrierError> for Error {
    fn from(e: CarrierError) -> Self {
        Error::Carrier(e)
    }
}

impl From<ResolveError> for Error {
    fn from(e: ResolveError) -> Self {
        Error::Resolve(e)
    }
}
