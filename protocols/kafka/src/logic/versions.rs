//! ApiVersions across shards: the client may use a version only if every shard and the proxy
//! itself understand it.

use crate::apis::APIS;
use crate::codes::{ErrorCode, NONE};
use crate::messages::api_versions::{ApiRange, ApiVersionsResponse};

/// The ranges to offer the client: for every API the proxy carries ([`APIS`]), the intersection
/// of its own range and every shard's; an API that some shard lacks, or whose ranges do not
/// overlap, is left out (the client then does not use it). `shards` are the shards' decoded
/// answers; one with an error code contributes nothing and the result carries its error.
pub fn intersect(shards: &[ApiVersionsResponse]) -> (ErrorCode, Vec<ApiRange>) {
    let error = shards
        .iter()
        .map(|s| s.error_code)
        .find(|c| *c != NONE)
        .unwrap_or(NONE);
    let mut out = Vec::with_capacity(APIS.len());
    for spec in APIS {
        let mut lo = spec.min;
        let mut hi = spec.max;
        for s in shards.iter().filter(|s| s.error_code == NONE) {
            match s.api_keys.iter().find(|a| a.api_key == spec.key) {
                Some(a) => {
                    lo = lo.max(a.min);
                    hi = hi.min(a.max);
                }
                None => {
                    hi = lo - 1;
                }
            }
        }
        if lo <= hi {
            out.push(ApiRange::new(spec.key, lo, hi));
        }
    }
    (error, out)
}

/// The merged ApiVersions answer: intersected ranges, the largest throttle, the first shard's
/// feature tags (features are cluster-wide settings; the proxy does not merge them).
pub fn merge(shards: &[ApiVersionsResponse]) -> ApiVersionsResponse {
    let (error_code, api_keys) = intersect(shards);
    ApiVersionsResponse {
        error_code,
        api_keys,
        throttle_time_ms: shards.iter().map(|s| s.throttle_time_ms).max().unwrap_or(0),
        tagged: shards.first().map(|s| s.tagged.clone()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::codes::api;
    use bytes::Bytes;

    fn shard(ranges: &[(i16, i16, i16)]) -> ApiVersionsResponse {
        ApiVersionsResponse {
            error_code: NONE,
            api_keys: ranges
                .iter()
                .map(|&(api_key, min, max)| ApiRange::new(api_key, min, max))
                .collect(),
            throttle_time_ms: 0,
            tagged: Bytes::new(),
        }
    }

    fn range(out: &[ApiRange], key: i16) -> Option<(i16, i16)> {
        out.iter()
            .find(|a| a.api_key == key)
            .map(|a| (a.min, a.max))
    }

    #[test]
    fn intersects_shards_and_the_proxy() {
        // tansu 0.6 offers Produce 0-11, Fetch 0-17, Metadata 0-12 (measured).
        let a = shard(&[
            (api::PRODUCE, 0, 11),
            (api::FETCH, 0, 17),
            (api::METADATA, 0, 12),
            (99, 0, 3),
        ]);
        let b = shard(&[
            (api::PRODUCE, 0, 9),
            (api::FETCH, 5, 17),
            (api::METADATA, 0, 12),
        ]);
        let (err, out) = intersect(&[a, b]);
        assert_eq!(err, NONE);
        assert_eq!(range(&out, api::PRODUCE), Some((3, 9)));
        assert_eq!(range(&out, api::FETCH), Some((5, 12)));
        assert_eq!(range(&out, api::METADATA), Some((0, 12)));
        // Unknown to the proxy: never offered. Missing on a shard: not offered.
        assert_eq!(range(&out, 99), None);
        assert_eq!(range(&out, api::JOIN_GROUP), None);
    }

    #[test]
    fn disjoint_ranges_drop_the_api() {
        let a = shard(&[(api::FETCH, 4, 5)]);
        let b = shard(&[(api::FETCH, 7, 12)]);
        assert_eq!(range(&intersect(&[a, b]).1, api::FETCH), None);
    }

    #[test]
    fn an_error_answer_is_reported_and_ignored() {
        let mut bad = shard(&[]);
        bad.error_code = crate::codes::UNSUPPORTED_VERSION;
        let good = shard(&[(api::PRODUCE, 3, 8)]);
        let (err, out) = intersect(&[bad, good]);
        assert_eq!(err, crate::codes::UNSUPPORTED_VERSION);
        assert_eq!(range(&out, api::PRODUCE), Some((3, 8)));
    }
}
