//! The line-protocol scanner: where each point's line starts and ends, its measurement (for
//! routing) and whether it carries a timestamp. Lines are never reformatted: a point goes to its
//! shard as the bytes the client sent (a line without a timestamp gets ` <time>` appended when a
//! batch is split, see [`crate::write`]).
//!
//! Boundaries follow InfluxDB 1.x's own scanner (`models/points.go`: `scanLine`, `scanKey`,
//! `scanFields`): a backslash escapes the next byte, a newline inside a quoted string field
//! value does not end the line, and a `"` only opens a string in a field value (after more `=`
//! than `,` in the field section). Leading spaces and tabs are skipped; empty lines and lines
//! starting with `#` are comments. The scanner reads each byte a bounded number of times, never
//! recurses and never panics; a malformed line is still one line (the shard it goes to answers
//! the parse error, as one InfluxDB would).

use std::borrow::Cow;

/// One point's line in a `/write` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// The line as sent, leading whitespace skipped, without its `\n`.
    pub raw: &'a [u8],
    /// Byte offset of `raw` in the body.
    pub offset: usize,
    /// The measurement name, unescaped (`\,` and `\ ` become `,` and ` `).
    pub measurement: Cow<'a, [u8]>,
    /// Whether a timestamp follows the fields.
    pub has_time: bool,
}

impl Line<'_> {
    /// The bytes after the measurement (tags, fields, timestamp): what `value` routes look in.
    pub fn after_measurement(&self) -> &[u8] {
        let end = measurement_end(self.raw);
        self.raw.get(end..).unwrap_or_default()
    }
}

/// The points of a body, in order.
pub fn lines(body: &[u8]) -> Lines<'_> {
    Lines { body, pos: 0 }
}

/// Iterator over the points of a body (see [`lines`]).
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        loop {
            let rest = self.body.get(self.pos..)?;
            if rest.is_empty() {
                return None;
            }
            let skip = rest
                .iter()
                .take_while(|b| **b == b' ' || **b == b'\t')
                .count();
            let start = self.pos + skip;
            let len = scan_line(self.body.get(start..).unwrap_or_default());
            let end = start + len;
            // Past the `\n` (or the end).
            self.pos = end + 1;
            let raw = self.body.get(start..end).unwrap_or_default();
            let content = trim_end(raw);
            if content.is_empty() || content.first() == Some(&b'#') {
                continue;
            }
            return Some(Line {
                raw,
                offset: start,
                measurement: unescape_measurement(
                    raw.get(..measurement_end(raw)).unwrap_or_default(),
                ),
                has_time: has_time(raw),
            });
        }
    }
}

/// `raw` without trailing spaces, tabs and `\r`.
pub fn trim_end(raw: &[u8]) -> &[u8] {
    let keep = raw.len()
        - raw
            .iter()
            .rev()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\r'))
            .count();
    raw.get(..keep).unwrap_or_default()
}

/// Length of the line at the start of `buf` (up to, not including, its `\n`).
fn scan_line(buf: &[u8]) -> usize {
    let mut i = 0;
    let mut quoted = false;
    let mut fields = false;
    let (mut equals, mut commas) = (0usize, 0usize);
    while let Some(&b) = buf.get(i) {
        if b == b'\\' && i + 2 < buf.len() {
            i += 2;
            continue;
        }
        if b == b' ' {
            fields = true;
        }
        if fields {
            if !quoted && b == b'=' {
                i += 1;
                equals += 1;
                continue;
            } else if !quoted && b == b',' {
                i += 1;
                commas += 1;
                continue;
            } else if b == b'"' && equals > commas {
                i += 1;
                quoted = !quoted;
                continue;
            }
        }
        if b == b'\n' && !quoted {
            break;
        }
        i += 1;
    }
    i.min(buf.len())
}

/// End of the measurement: the first unescaped `,` or space.
fn measurement_end(raw: &[u8]) -> usize {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'\\' => i += 2,
            b',' | b' ' => return i,
            _ => i += 1,
        }
    }
    raw.len()
}

/// End of the series key (measurement and tags): the first unescaped space.
fn key_end(raw: &[u8]) -> usize {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'\\' => i += 2,
            b' ' => return i,
            _ => i += 1,
        }
    }
    raw.len()
}

/// Whether something follows the field section (InfluxDB's `scanFields` then `scanTime`).
fn has_time(raw: &[u8]) -> bool {
    let mut i = key_end(raw);
    while raw.get(i) == Some(&b' ') {
        i += 1;
    }
    let mut quoted = false;
    let (mut equals, mut commas) = (0usize, 0usize);
    while let Some(&b) = raw.get(i) {
        if b == b'\\' && i + 1 < raw.len() {
            i += 2;
            continue;
        }
        if b == b'"' && equals > commas {
            quoted = !quoted;
            i += 1;
            continue;
        }
        if !quoted {
            match b {
                b'=' => equals += 1,
                b',' => commas += 1,
                b' ' => break,
                _ => {}
            }
        }
        i += 1;
    }
    !trim_end(raw.get(i..).unwrap_or_default())
        .iter()
        .all(|b| *b == b' ')
}

/// A measurement name as stored: `\,` and `\ ` unescaped (InfluxDB's `unescapeMeasurement`).
pub fn unescape_measurement(m: &[u8]) -> Cow<'_, [u8]> {
    if !m.contains(&b'\\') {
        return Cow::Borrowed(m);
    }
    let mut out = Vec::with_capacity(m.len());
    let mut i = 0;
    while let Some(&b) = m.get(i) {
        match (b, m.get(i + 1)) {
            (b'\\', Some(&next)) if next == b',' || next == b' ' => {
                out.push(next);
                i += 2;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}
