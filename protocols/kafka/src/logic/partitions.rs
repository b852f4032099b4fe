//! The grouping every per-partition split shares: partitions of a (topic -> partitions)
//! request put into one list per target, topics and partitions in the client's order.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::codes::ErrorCode;

/// One topic's share of a part: name, partitions, the topic's raw tagged fields.
pub type TopicShare<P> = (Bytes, Vec<P>, Bytes);

/// Partitions grouped per target, and those refused with a code.
pub struct Grouped<T: Ord, P> {
    pub parts: BTreeMap<T, Vec<TopicShare<P>>>,
    pub refused: Vec<(Bytes, i32, ErrorCode)>,
}

/// Groups `topics` (name, partitions, tagged) by `route(topic, partition index)`.
pub fn group<'a, T: Ord + Copy, P: Clone + 'a>(
    topics: impl IntoIterator<Item = (&'a Bytes, &'a [P], &'a Bytes)>,
    index: impl Fn(&P) -> i32,
    mut route: impl FnMut(&[u8], i32) -> Result<T, ErrorCode>,
) -> Grouped<T, P> {
    let mut parts: BTreeMap<T, Vec<TopicShare<P>>> = BTreeMap::new();
    let mut refused = Vec::new();
    for (name, partitions, tagged) in topics {
        for p in partitions {
            let i = index(p);
            match route(name, i) {
                Ok(target) => {
                    let topics = parts.entry(target).or_default();
                    match topics.last_mut() {
                        Some((n, ps, _)) if n == name => ps.push(p.clone()),
                        _ => topics.push((name.clone(), vec![p.clone()], tagged.clone())),
                    }
                }
                Err(code) => refused.push((name.clone(), i, code)),
            }
        }
    }
    Grouped { parts, refused }
}

/// The code a partition without an answer gets: the one it was refused with, else `missing`.
pub fn missing_code(
    refused: &[(Bytes, i32, ErrorCode)],
    topic: &[u8],
    partition: i32,
    missing: &mut impl FnMut(&[u8], i32) -> ErrorCode,
) -> ErrorCode {
    refused
        .iter()
        .find(|(n, i, _)| n == topic && *i == partition)
        .map(|(_, _, c)| *c)
        .unwrap_or_else(|| missing(topic, partition))
}
