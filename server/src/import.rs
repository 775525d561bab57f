//! The Prometheus text exposition format as a write path:
//! `POST /api/v1/import/prometheus` (the endpoint name VictoriaMetrics
//! uses) takes lines such as `http_requests_total{code="200"} 1027
//! 1395066363000`, so data can be written with nothing but `curl`.
//!
//! `# HELP` and `# TYPE` lines become metadata; a sample without a
//! timestamp gets the time of the request. Any malformed line rejects the
//! whole body (400, with the line number), before anything is written.

use std::collections::BTreeMap;

use cairn_engine::{Labels, Sample, TimestampMs};

use crate::error::{Error, Result};
use crate::remote_write::{IncomingSeries, Metadata};

/// Series and metadata of an exposition body.
#[derive(Debug, Default)]
pub struct Parsed {
    pub series: Vec<IncomingSeries>,
    pub metadata: Vec<(String, Metadata)>,
    pub samples: u64,
}

/// Parses an exposition body; `now` stamps samples without a timestamp.
pub fn parse(text: &str, now: TimestampMs) -> Result<Parsed> {
    let mut by_series: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    let mut types: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = 0u64;
    for (i, line) in text.lines().enumerate() {
        let err = |reason: String| Error::BadParam {
            param: "body".into(),
            reason: format!("line {}: {reason}: {line:?}", i + 1),
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, char::is_whitespace);
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    let kind = match kind.trim() {
                        "counter" => "counter",
                        "gauge" => "gauge",
                        "histogram" => "histogram",
                        "gaugehistogram" => "gaugehistogram",
                        "summary" => "summary",
                        "info" => "info",
                        "stateset" => "stateset",
                        "untyped" | "unknown" => "unknown",
                        other => return Err(err(format!("unknown metric type {other:?}"))),
                    };
                    types.insert(name.to_string(), kind);
                }
                (Some("HELP"), Some(name), help) => {
                    helps.insert(name.to_string(), unescape_help(help.unwrap_or("")));
                }
                _ => {}
            }
            continue;
        }
        let (labels, rest) = parse_series(line).map_err(err)?;
        let mut fields = rest.split_whitespace();
        let value = fields
            .next()
            .ok_or_else(|| err("missing value".into()))
            .and_then(|v| parse_value(v).ok_or_else(|| err(format!("invalid value {v:?}"))))?;
        let t = match fields.next() {
            None => now,
            Some(ts) => ts
                .parse::<i64>()
                .map_err(|_| err(format!("invalid timestamp {ts:?} (integer milliseconds)")))?,
        };
        if fields.next().is_some() {
            return Err(err("unexpected text after the timestamp".into()));
        }
        by_series
            .entry(labels)
            .or_default()
            .push(Sample { t, v: value });
        samples += 1;
    }
    let names: std::collections::BTreeSet<&String> = types.keys().chain(helps.keys()).collect();
    let metadata = names
        .into_iter()
        .map(|n| {
            (
                n.clone(),
                Metadata {
                    kind: types.get(n).copied().unwrap_or("unknown"),
                    help: helps.get(n).cloned().unwrap_or_default(),
                    unit: String::new(),
                },
            )
        })
        .collect();
    Ok(Parsed {
        series: by_series
            .into_iter()
            .map(|(labels, samples)| IncomingSeries::new(labels, samples))
            .collect(),
        metadata,
        samples,
    })
}

/// Go's ParseFloat spellings used by the exposition format.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

fn unescape_help(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\\\", "\\")
}

/// `name{a="b",...}` or `{"name", a="b"}` at the start of `line`; returns
/// the labels and the rest of the line.
fn parse_series(line: &str) -> std::result::Result<(Labels, &str), String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let mut pairs: Vec<(String, String)> = Vec::new();
    if name_end > 0 {
        pairs.push(("__name__".into(), line[..name_end].to_string()));
    }
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        rest = body;
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let (name, r) = if rest.starts_with('"') {
                quoted(rest)?
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                if end == 0 {
                    return Err("expected a label name".into());
                }
                (rest[..end].to_string(), &rest[end..])
            };
            let r = r.trim_start();
            if let Some(r) = r.strip_prefix('=') {
                let (value, r) = quoted(r.trim_start())?;
                pairs.push((name, value));
                rest = r;
            } else {
                // A bare quoted string is the metric name: {"my.metric"}.
                pairs.push(("__name__".into(), name));
                rest = r;
            }
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err("expected , or } after a label".into());
            }
        }
    }
    if !rest.starts_with(char::is_whitespace) {
        return Err("expected whitespace before the value".into());
    }
    if pairs.iter().any(|(n, _)| n.is_empty()) {
        return Err("empty label name".into());
    }
    let labels = Labels::try_from_pairs(pairs).map_err(|e| e.to_string())?;
    if labels.metric_name().is_none() {
        return Err("missing metric name".into());
    }
    Ok((labels, rest))
}

/// A double-quoted string with `\\`, `\"` and `\n` escapes.
fn quoted(s: &str) -> std::result::Result<(String, &str), String> {
    let body = s.strip_prefix('"').ok_or("expected a quoted string")?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &body[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                _ => return Err("invalid escape in a quoted string".into()),
            },
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lines() {
        let text = "# HELP http_requests_total Requests.\n\
                    # TYPE http_requests_total counter\n\
                    http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                    http_requests_total{code=\"400\", method=\"post\",} 3 1395066363000\n\
                    \n\
                    # a comment\n\
                    up 1\n\
                    {\"my.metric\", a=\"q\\\"x\"} -Inf 5\n\
                    http_requests_total{method=\"post\",code=\"200\"} 1028 1395066378000\n";
        let p = parse(text, 42).expect("parses");
        assert_eq!(p.samples, 5);
        assert_eq!(p.series.len(), 4);
        let find = |name: &str, extra: &[(&str, &str)]| {
            let mut pairs = vec![("__name__", name)];
            pairs.extend_from_slice(extra);
            let l = Labels::from_pairs(pairs);
            p.series
                .iter()
                .find(|s| s.labels() == Some(&l))
                .map(|s| s.samples.clone())
                .unwrap_or_else(|| panic!("{l} missing"))
        };
        assert_eq!(
            find(
                "http_requests_total",
                &[("code", "200"), ("method", "post")]
            ),
            vec![
                Sample {
                    t: 1395066363000,
                    v: 1027.0
                },
                Sample {
                    t: 1395066378000,
                    v: 1028.0
                }
            ]
        );
        assert_eq!(find("up", &[]), vec![Sample { t: 42, v: 1.0 }]);
        assert_eq!(
            find("my.metric", &[("a", "q\"x")]),
            vec![Sample {
                t: 5,
                v: f64::NEG_INFINITY
            }]
        );
        assert_eq!(p.metadata[0].0, "http_requests_total");
        assert_eq!(p.metadata[0].1.kind, "counter");
        assert_eq!(p.metadata[0].1.help, "Requests.");
    }

    #[test]
    fn bad_lines_name_the_line() {
        for (text, line) in [
            ("up\n", "line 1"),
            ("ok 1\nup{a=\"b\" 1\n", "line 2"),
            ("up x\n", "line 1"),
            ("up 1 2 3\n", "line 1"),
            ("up 1 1.5\n", "line 1"),
            ("{a=\"b\"} 1\n", "line 1"),
            ("up{a=\"b\",a=\"c\"} 1\n", "line 1"),
            ("# TYPE up bogus\n", "line 1"),
        ] {
            let e = parse(text, 0).expect_err(text).to_string();
            assert!(e.contains(line), "{text:?}: {e}");
        }
    }
}
