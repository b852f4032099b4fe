//! Envoy's `/stats/prometheus`, read with a real parser of the Prometheus text format
//! (`prometheus-parse`) into (name, labels) -> value, for tests that assert exact counters.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! # let envoy: geomesh_integration::Envoy = unimplemented!();
//! let scrape = envoy.prometheus()?;
//! assert_eq!(scrape.counter("http_image_scope_decision_shared", &[])?, 4);
//! assert_eq!(scrape.counter("envoy_redis_command_mget_total", &[("envoy_redis_prefix", "shop")])?, 1);
//! # Ok(()) }
//! ```
//!
//! Two things of Envoy's output the parser needs help with, both handled here:
//! * a series without labels is printed `name{} 1`, which `prometheus-parse` 0.2 skips (its
//!   sample pattern wants at least one character between the braces): `{}` is dropped first;
//! * a line the parser does not recognise would vanish silently: every line must come out as
//!   a sample, a comment or nothing, or [`Scrape::parse`] fails naming it.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use prometheus_parse::{LineInfo, Value};

/// A series' labels, sorted by name.
pub type Labels = Vec<(String, String)>;

/// One scrape: every counter, gauge and untyped sample (histograms' `_sum` and `_count`
/// included) by name and labels, and every histogram's buckets.
#[derive(Debug, Default)]
pub struct Scrape {
    values: BTreeMap<(String, Labels), f64>,
    /// (name, labels without `le`) -> (upper bound, cumulative count).
    histograms: BTreeMap<(String, Labels), Vec<(f64, f64)>>,
}

fn sorted(labels: &[(&str, &str)]) -> Labels {
    let mut l: Labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    l.sort();
    l
}

impl Scrape {
    /// Parses a `/stats/prometheus` body.
    pub fn parse(text: &str) -> Result<Scrape> {
        let lines: Vec<String> = text
            .lines()
            .map(|l| match l.split_once("{} ") {
                Some((name, rest)) if !name.contains('{') && !name.starts_with('#') => format!("{name} {rest}"),
                _ => l.to_owned(),
            })
            .collect();
        for l in &lines {
            if let LineInfo::Ignored = LineInfo::parse(l) {
                if !l.trim_start().starts_with('#') {
                    bail!("/stats/prometheus line the parser does not read: {l:?}");
                }
            }
        }
        let parsed = prometheus_parse::Scrape::parse(lines.into_iter().map(Ok)).context("parse /stats/prometheus")?;
        let mut scrape = Scrape::default();
        for s in parsed.samples {
            let mut labels: Labels = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            labels.sort();
            let key = (s.metric, labels);
            match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                    if scrape.values.insert(key.clone(), v).is_some() {
                        bail!("series {key:?} twice in /stats/prometheus");
                    }
                }
                Value::Histogram(buckets) => {
                    let b = buckets.iter().map(|h| (h.less_than, h.count)).collect();
                    scrape.histograms.insert(key, b);
                }
                Value::Summary(_) => {}
            }
        }
        Ok(scrape)
    }

    /// The value of series `name` with exactly `labels` (any order).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.values.get(&(name.to_owned(), sorted(labels))).copied()
    }

    /// A counter's value, which must exist and be a whole number.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Result<u64> {
        let Some(v) = self.get(name, labels) else {
            let near: Vec<String> = self
                .values
                .keys()
                .filter(|(n, _)| n == name || n.starts_with(name.split('_').next().unwrap_or(name)))
                .take(20)
                .map(|(n, l)| format!("{n}{l:?}"))
                .collect();
            bail!("no series {name}{labels:?} in /stats/prometheus; similar: {near:?}");
        };
        if v < 0.0 || v.fract() != 0.0 {
            bail!("{name}{labels:?} = {v} is not a counter value");
        }
        Ok(v as u64)
    }

    /// Every series whose name starts with `prefix`, with its labels and value.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a Labels, f64)> + 'a {
        self.values
            .iter()
            .filter(move |((n, _), _)| n.starts_with(prefix))
            .map(|((n, l), v)| (n.as_str(), l, *v))
    }

    /// The number of values a histogram holds (its `+Inf` bucket), if Envoy shows it. Envoy
    /// merges its workers' histograms into what it shows at each stats flush (5 s by default).
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let buckets = self.histograms.get(&(name.to_owned(), sorted(labels)))?;
        buckets.iter().find(|(le, _)| le.is_infinite()).map(|(_, c)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Envoy 1.40 prints it (`/stats/prometheus` of a real run, trimmed).
    const ENVOY: &str = "\
# TYPE envoy_redis_command_mget_total counter
envoy_redis_command_mget_total{envoy_redis_prefix=\"shop\"} 1
# TYPE http_image_scope_decision_shared counter
http_image_scope_decision_shared{} 4
# TYPE envoy_redis_config_reload counter
envoy_redis_config_reload{stat_namespace=\"wasmcustom\",envoy_redis_prefix=\"shop\"} 1
# TYPE envoy_wasm_wasm_vm_count gauge
envoy_wasm_wasm_vm_count{} 3
# TYPE redis_shop_command_get_latency histogram
redis_shop_command_get_latency_bucket{le=\"0.5\"} 0
redis_shop_command_get_latency_bucket{le=\"1\"} 2
redis_shop_command_get_latency_bucket{le=\"+Inf\"} 3
redis_shop_command_get_latency_sum{} 4.5
redis_shop_command_get_latency_count{} 3
";

    #[test]
    fn reads_envoys_output_with_and_without_labels() {
        let s = Scrape::parse(ENVOY).unwrap();
        assert_eq!(s.counter("envoy_redis_command_mget_total", &[("envoy_redis_prefix", "shop")]).unwrap(), 1);
        assert_eq!(s.counter("http_image_scope_decision_shared", &[]).unwrap(), 4);
        assert_eq!(
            s.counter("envoy_redis_config_reload", &[("envoy_redis_prefix", "shop"), ("stat_namespace", "wasmcustom")])
                .unwrap(),
            1
        );
        assert_eq!(s.get("envoy_wasm_wasm_vm_count", &[]), Some(3.0));
        assert_eq!(s.histogram_count("redis_shop_command_get_latency", &[]), Some(3.0));
        assert_eq!(s.get("redis_shop_command_get_latency_count", &[]), Some(3.0));
        // Labels must match exactly.
        assert!(s.counter("envoy_redis_command_mget_total", &[]).is_err());
        assert_eq!(s.with_prefix("http_").count(), 1);
    }

    #[test]
    fn a_line_it_cannot_read_is_an_error_not_a_missing_series() {
        let e = Scrape::parse("# TYPE a counter\na{x=\"1\"} 1\nb{ 2\n").unwrap_err();
        assert!(e.to_string().contains("b{ 2"), "{e}");
    }
}
