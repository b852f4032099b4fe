//! The parameters of an InfluxDB 1.x request: the URL's query string and, for a form POST, the
//! body (`application/x-www-form-urlencoded`). Kept as decoded (name, value) pairs in order, so a
//! request sent to a shard carries the client's own parameters (`db`, `rp`, `precision`,
//! `epoch`, `u`, `p`, `consistency`, `params`, ...).

/// Decoded parameters, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Parses `a=1&b=x%20y` (a `+` is a space).
    pub fn parse(query: &[u8]) -> Params {
        let mut out = Vec::new();
        for pair in query.split(|b| *b == b'&') {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(eq) => (
                    pair.get(..eq).unwrap_or_default(),
                    pair.get(eq + 1..).unwrap_or_default(),
                ),
                None => (pair, &b""[..]),
            };
            out.push((decode(name), decode(value)));
        }
        Params(out)
    }

    /// Adds the pairs of `other` after these.
    pub fn extend(&mut self, other: Params) {
        self.0.extend(other.0);
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// These parameters without those named in `drop`, encoded as a query string.
    pub fn encode_without(&self, drop: &[&str]) -> String {
        let mut out = String::new();
        for (n, v) in &self.0 {
            if drop.contains(&n.as_str()) {
                continue;
            }
            if !out.is_empty() {
                out.push('&');
            }
            encode_into(n, &mut out);
            out.push('=');
            encode_into(v, &mut out);
        }
        out
    }
}

/// Splits a `:path` into the path and its query string.
pub fn split_path(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().position(|b| *b == b'?') {
        Some(q) => (
            path.get(..q).unwrap_or_default(),
            path.get(q + 1..).unwrap_or_default(),
        ),
        None => (path, b""),
    }
}

/// Percent-decoding (`+` is a space); an invalid escape is kept as is; invalid UTF-8 is
/// replaced (InfluxQL and database names are UTF-8).
pub fn decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                s.get(i + 1).and_then(|h| hex(*h)),
                s.get(i + 2).and_then(|l| hex(*l)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn encode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 15] {
                out.push(char::from(
                    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
    }
}
