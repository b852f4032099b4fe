//! Where a scope travels: `X-Scope`, openstackoid's `X-Auth-Token`
//! piggyback, and W3C `baggage`. Header values come in as bytes (a client
//! controls them); nothing here assumes UTF-8 until it is checked.

use crate::ast::Scope;
use crate::error::{Carrier, CarrierError};
use crate::parse::parse_bytes;

/// The scope header.
pub const X_SCOPE: &str = "x-scope";
/// openstackoid's token header, which carries `<token>!SCOPE!<scope>`.
pub const X_AUTH_TOKEN: &str = "x-auth-token";
/// The W3C baggage header.
pub const BAGGAGE: &str = "baggage";
/// Separator between the token and the scope in `X-Auth-Token`.
pub const PIGGYBACK_SEPARATOR: &str = "!SCOPE!";
/// The baggage member key that carries the scope.
pub const BAGGAGE_KEY: &str = "scope";
/// W3C baggage limit on a whole header value, applied when producing one.
pub const MAX_BAGGAGE_BYTES: usize = 8192;
/// W3C baggage limit on the number of members, applied when producing one.
pub const MAX_BAGGAGE_MEMBERS: usize = 180;

/// The scope text of `X-Scope` parsed (an empty value is the empty scope).
pub fn scope_from_x_scope(value: &[u8]) -> Result<Scope, CarrierError> {
    parse_bytes(value).map_err(|error| CarrierError::Parse {
        carrier: Carrier::XScope,
        error,
    })
}

/// The value to send as `X-Scope`: the canonical text, printable ASCII.
pub fn x_scope_value(scope: &Scope) -> String {
    scope.to_header_value()
}

/// Splits `X-Auth-Token` at the first `!SCOPE!`: `(token, scope text)`, or
/// `None` when the value carries no scope.
pub fn split_auth_token(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let sep = PIGGYBACK_SEPARATOR.as_bytes();
    let at = value.windows(sep.len()).position(|w| w == sep)?;
    let token = value.get(..at)?;
    let scope = value.get(at + sep.len()..)?;
    Some((token, scope))
}

/// `Some((token without the suffix, scope))` if the value piggybacks a scope.
pub fn scope_from_auth_token(value: &[u8]) -> Result<Option<(Vec<u8>, Scope)>, CarrierError> {
    let Some((token, text)) = split_auth_token(value) else {
        return Ok(None);
    };
    let scope = parse_bytes(text).map_err(|error| CarrierError::Parse {
        carrier: Carrier::AuthToken,
        error,
    })?;
    Ok(Some((token.to_vec(), scope)))
}

/// `<token>!SCOPE!<scope in JSON form>`, as openstackoid writes it. Any
/// previous `!SCOPE!` suffix of `token` is replaced.
pub fn auth_token_with_scope(token: &[u8], scope: &Scope) -> Vec<u8> {
    let token = split_auth_token(token).map(|(t, _)| t).unwrap_or(token);
    let mut out = token.to_vec();
    out.extend_from_slice(PIGGYBACK_SEPARATOR.as_bytes());
    out.extend_from_slice(scope.to_json().as_bytes());
    out
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ows(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// W3C baggage-octet: printable ASCII except `"`, `,`, `;`, `\`.
fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// One list member split into (key, value), both trimmed; properties
/// (after the first `;`) are dropped. `None` if there is no `=`.
fn member_kv(member: &[u8]) -> Option<(&[u8], &[u8])> {
    let kv_end = member
        .iter()
        .position(|&b| b == b';')
        .unwrap_or(member.len());
    let kv = member.get(..kv_end)?;
    let eq = kv.iter().position(|&b| b == b'=')?;
    Some((trim_ows(kv.get(..eq)?), trim_ows(kv.get(eq + 1..)?)))
}

/// The list members, split at `,`.
fn members(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The percent-decoded value of the baggage member `scope`, if present.
/// Only that member is checked; the others belong to someone else and are
/// passed over (a member without `=` included).
pub fn baggage_scope_text(value: &[u8]) -> Result<Option<Vec<u8>>, CarrierError> {
    let mut found: Option<Vec<u8>> = None;
    for member in members(value) {
        let Some((key, val)) = member_kv(member) else {
            continue;
        };
        if key != BAGGAGE_KEY.as_bytes() {
            continue;
        }
        if found.is_some() {
            return Err(CarrierError::DuplicateBaggageScope);
        }
        // Offset of the value in the whole header, for the error message.
        let val_at = (val.as_ptr() as usize).saturating_sub(value.as_ptr() as usize);
        let mut out = Vec::with_capacity(val.len());
        let mut i = 0usize;
        while let Some(&b) = val.get(i) {
            if b == b'%' {
                let decoded = match (
                    val.get(i + 1).copied().and_then(hex),
                    val.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => h * 16 + l,
                    _ => {
                        return Err(CarrierError::Baggage {
                            offset: val_at + i,
                            reason: "'%' must be followed by two hex digits",
                        })
                    }
                };
                out.push(decoded);
                i += 3;
            } else if is_baggage_octet(b) {
                out.push(b);
                i += 1;
            } else {
                return Err(CarrierError::Baggage {
                    offset: val_at + i,
                    reason: "character not allowed in a baggage value (percent-encode it)",
                });
            }
        }
        found = Some(out);
    }
    Ok(found)
}

/// The scope carried by a `baggage` header value, if any.
pub fn scope_from_baggage(value: &[u8]) -> Result<Option<Scope>, CarrierError> {
    match baggage_scope_text(value)? {
        None => Ok(None),
        Some(text) => parse_bytes(&text)
            .map(Some)
            .map_err(|error| CarrierError::Parse {
                carrier: Carrier::Baggage,
                error,
            }),
    }
}

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16).map_or('0', |c| c.to_ascii_uppercase())
}

/// Percent-encodes for a baggage value: every byte that is not a
/// baggage-octet, and `%` itself.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if is_baggage_octet(b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 15));
        }
    }
    out
}

/// The `baggage` value with the scope member set to `scope` (replacing any
/// previous `scope` member, keeping the other members as they were); the
/// empty scope removes the member. Errors when the W3C limits (8192 bytes,
/// 180 members) would be exceeded.
pub fn baggage_with_scope(existing: Option<&[u8]>, scope: &Scope) -> Result<Vec<u8>, CarrierError> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    if let Some(v) = existing {
        for m in members(v) {
            let m = trim_ows(m);
            if m.is_empty() || member_kv(m).is_some_and(|(k, _)| k == BAGGAGE_KEY.as_bytes()) {
                continue;
            }
            parts.push(m.to_vec());
        }
    }
    if !scope.is_empty() {
        let mut m = format!("{BAGGAGE_KEY}=").into_bytes();
        m.extend_from_slice(percent_encode(&scope.to_header_value()).as_bytes());
        parts.push(m);
    }
    let too_long = CarrierError::TooLong {
        carrier: Carrier::Baggage,
        limit: MAX_BAGGAGE_BYTES,
    };
    if parts.len() > MAX_BAGGAGE_MEMBERS {
        return Err(too_long);
    }
    let out = parts.join(&b","[..]);
    if out.len() > MAX_BAGGAGE_BYTES {
        return Err(too_long);
    }
    Ok(out)
}

/// The three carrier headers of one request, as the host gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carriers<'a> {
    /// `X-Scope`
    pub x_scope: Option<&'a [u8]>,
    /// `X-Auth-Token`
    pub x_auth_token: Option<&'a [u8]>,
    /// `baggage`
    pub baggage: Option<&'a [u8]>,
}

/// A scope found on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The scope (all carriers that have one agree on it).
    pub scope: Scope,
    /// Every carrier that had it, in precedence order
    /// (`X-Scope`, `X-Auth-Token`, `baggage`).
    pub carriers: Vec<Carrier>,
    /// When `X-Auth-Token` piggybacked the scope: the token without the
    /// `!SCOPE!...` suffix, to write back before the application sees it.
    pub stripped_auth_token: Option<Vec<u8>>,
}

impl<'a> Carriers<'a> {
    /// The scope the request carries, if any. Several carriers may carry
    /// it; they must then agree (same services, same trees, any order),
    /// otherwise the request is refused rather than one silently chosen.
    pub fn extract(&self) -> Result<Option<Extracted>, CarrierError> {
        let mut found: Vec<(Carrier, Scope)> = Vec::new();
        let mut stripped = None;
        if let Some(v) = self.x_scope {
            found.push((Carrier::XScope, scope_from_x_scope(v)?));
        }
        if let Some(v) = self.x_auth_token {
            if let Some((token, scope)) = scope_from_auth_token(v)? {
                stripped = Some(token);
                found.push((Carrier::AuthToken, scope));
            }
        }
        if let Some(v) = self.baggage {
            if let Some(scope) = scope_from_baggage(v)? {
                found.push((Carrier::Baggage, scope));
            }
        }
        let mut it = found.into_iter();
        let Some((first_c, scope)) = it.next() else {
            return Ok(None);
        };
        let mut carriers = vec![first_c];
        for (c, s) in it {
            if !s.equivalent(&scope) {
                return Err(CarrierError::Conflict {
                    first: first_c,
                    second: c,
                });
            }
            carriers.push(c);
        }
        Ok(Some(Extracted {
            scope,
            carriers,
            stripped_auth_token: stripped,
        }))
    }
}
