//! InfluxDB 1.x's CSV (`Accept: application/csv`), as `influxd` 1.6 writes it: per statement
//! with series a header `name,tags,<columns>`, a blank line between statements, one record per
//! row; errors as a record `error` then the message.

use serde_json::Value;

use crate::merge::StatementResult;
use crate::plan::{Reply, CSV_OUT};

/// InfluxDB 1.x's CSV: per statement with series, a header `name,tags,<columns>` (a blank line
/// before every statement but the first), then one record per row; tags as `k=v,k2=v2`;
/// numbers as plain decimals.
pub fn render_csv(results: &[StatementResult]) -> Vec<u8> {
    let mut out = String::new();
    let mut first = true;
    for r in results {
        let Some(head) = r.series.first() else {
            continue;
        };
        if !first {
            out.push('\n');
        }
        first = false;
        let mut header = vec!["name".to_owned(), "tags".to_owned()];
        header.extend(head.columns.iter().cloned());
        record(&header, &mut out);
        for s in &r.series {
            let tags = s
                .tags
                .iter()
                // InfluxDB's CSV leaves out a tag without a value (GROUP BY * gives those).
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| format!("{}={}", escape_tag(k), escape_tag(v)))
                .collect::<Vec<_>>()
                .join(",");
            for row in &s.values {
                let mut fields = vec![s.name.clone().unwrap_or_default(), tags.clone()];
                fields.extend(row.iter().map(csv_value));
                record(&fields, &mut out);
            }
        }
    }
    out.into_bytes()
}

/// An error as InfluxDB writes it in CSV: a record `error`, then the message.
pub fn csv_error(status: u16, text: &str) -> Reply {
    let mut out = String::new();
    record(&["error".to_owned()], &mut out);
    record(&[text.to_owned()], &mut out);
    Reply {
        status,
        content_type: CSV_OUT,
        body: out.into_bytes(),
    }
}

fn escape_tag(s: &str) -> String {
    s.replace(',', "\\,")
        .replace(' ', "\\ ")
        .replace('=', "\\=")
}

fn csv_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => format!("{f}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// One CSV record as Go's encoding/csv writes it.
fn record(fields: &[String], out: &mut String) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let quote = f.contains([',', '"', '\n', '\r']) || f.starts_with(' ') || f.starts_with('\t');
        if quote {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out.push('\n');
}
