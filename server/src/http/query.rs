//! `/api/v1/query` and `/api/v1/query_range`: PromQL evaluation through
//! cairn-query's engine, with Prometheus's parameters (`query`, `time`,
//! `start`, `end`, `step`, `timeout`, `limit`, `stats`, `lookback_delta`)
//! and its JSON result format, byte for byte: timestamps as JSON numbers in
//! seconds with millisecond fraction, values as strings formatted like Go's
//! `strconv.FormatFloat(v, 'f', -1, 64)`.
//!
//! Queries run on blocking threads, at most `query.max_concurrency` at
//! once (further ones wait); a client that disconnects cancels its query.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_engine::{Labels, TimestampMs};
use cairn_query::eval::CancelToken;
use cairn_query::{QueryResult, Value};

use super::api::parse_time;
use super::promql::parse_param;
use super::{ApiError, AppState, Params};
use crate::config::PromDuration;
use crate::error::Error;
use crate::exec::{self, CancelOnDrop, Kind, QuerySpec};

/// Parses a duration parameter: float seconds (`15`, `0.5`) or a
/// Prometheus duration (`15s`, `1m30s`), in milliseconds.
pub fn parse_duration(param: &str, s: &str) -> Result<i64, Error> {
    let bad = |why: &str| Error::BadParam {
        param: param.into(),
        reason: format!("cannot parse {s:?} to a valid duration{why}"),
    };
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return Err(bad(""));
        }
        let ms = (f * 1000.0).round();
        if ms.abs() > i64::MAX as f64 / 1e6 {
            return Err(bad(". It overflows int64"));
        }
        return Ok(ms as i64);
    }
    s.parse::<PromDuration>()
        .map(|d| d.as_millis_i64())
        .map_err(|_| bad(""))
}

pub(super) async fn instant(
    State(state): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    let t = match p.get("time") {
        Some(s) => parse_time("time", s)?,
        None => chrono::Utc::now().timestamp_millis(),
    };
    run(state, p, Kind::Instant { t }).await
}

pub(super) async fn range(
    State(state): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    let need = |k: &str| {
        p.get(k).ok_or_else(|| Error::BadParam {
            param: k.into(),
            reason: format!("missing {k}"),
        })
    };
    let start = parse_time("start", need("start")?)?;
    let end = parse_time("end", need("end")?)?;
    if end < start {
        return Err(Error::BadParam {
            param: "end".into(),
            reason: "end timestamp must not be before start time".into(),
        }
        .into());
    }
    let step = parse_duration("step", need("step")?)?;
    exec::check_range(&state.config, start, end, step)?;
    run(state, p, Kind::Range { start, end, step }).await
}

async fn run(state: Arc<AppState>, p: Params, kind: Kind) -> Result<Response, ApiError> {
    let expr = parse_param(&p)?;
    let query = p.get("query").unwrap_or_default().to_string();
    let timeout = match p.get("timeout") {
        Some(s) => Some(parse_duration("timeout", s)?)
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms as u64)),
        None => None,
    };
    let limit = match p.get("limit") {
        None => 0,
        Some(s) => s.parse::<usize>().map_err(|_| Error::BadParam {
            param: "limit".into(),
            reason: format!("cannot parse {s:?}: not a non-negative integer"),
        })?,
    };
    let lookback = p
        .get("lookback_delta")
        .map(|s| parse_duration("lookback_delta", s))
        .transpose()?;
    let with_stats = p.get("stats").is_some();

    let cancel = CancelToken::new();
    let _guard = CancelOnDrop(cancel.clone());
    let spec = QuerySpec {
        expr,
        query,
        kind,
        timeout,
        lookback_delta_ms: lookback,
    };
    let started = Instant::now();
    let mut done = exec::execute(&state, spec, cancel).await?;
    let elapsed = started.elapsed().as_secs_f64();
    exec::limit_result(&mut done.result, limit);
    Ok(render(done.result, with_stats.then_some(elapsed)))
}

/// Appends a timestamp in seconds as Prometheus's `MarshalTimestamp`
/// writes it: integer seconds, then `.` and three digits of milliseconds
/// unless they are zero.
pub fn write_timestamp(out: &mut String, t: TimestampMs) {
    if t < 0 {
        out.push('-');
    }
    let t = t.unsigned_abs();
    out.push_str(itoa::Buffer::new().format(t / 1000));
    let frac = (t % 1000) as u16;
    if frac != 0 {
        out.push('.');
        for d in [frac / 100, frac / 10 % 10, frac % 10] {
            out.push(char::from(b'0' + d as u8));
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    // serde_json's string escaping; writing into a String cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

fn write_labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, label) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &label.name);
        out.push(':');
        write_str(out, &label.value);
    }
    out.push('}');
}

fn write_point(out: &mut String, t: TimestampMs, v: f64) {
    out.push('[');
    write_timestamp(out, t);
    out.push_str(",\"");
    crate::format::write_float(out, v);
    out.push_str("\"]");
}

/// The success body of a query result (already cut to the request's
/// limit by [`exec::limit_result`]).
pub fn render(mut r: QueryResult, eval_secs: Option<f64>) -> Response {
    let warnings = std::mem::take(&mut r.warnings);
    let mut out = String::with_capacity(256);
    out.push_str("{\"status\":\"success\",\"data\":{");
    match &r.value {
        Value::Scalar { t, v } => {
            out.push_str("\"resultType\":\"scalar\",\"result\":");
            write_point(&mut out, *t, *v);
        }
        Value::String { t, v } => {
            out.push_str("\"resultType\":\"string\",\"result\":[");
            write_timestamp(&mut out, *t);
            out.push(',');
            write_str(&mut out, v);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push_str("\"resultType\":\"vector\",\"result\":[");
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(&mut out, &s.labels);
                out.push_str(",\"value\":");
                write_point(&mut out, s.t, s.v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push_str("\"resultType\":\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                write_labels(&mut out, &s.labels);
                // A point is at most about 40 bytes.
                out.reserve(s.samples.len() * 40);
                out.push_str(",\"values\":[");
                for (j, p) in s.samples.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_point(&mut out, p.t, p.v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    if let Some(secs) = eval_secs {
        let stats = serde_json::json!({
            "timings": {
                "evalTotalTime": secs,
                "resultSortTime": 0,
                "queryPreparationTime": 0,
                "innerEvalTime": secs,
                "execQueueTime": 0,
                "execTotalTime": secs,
            },
            "samples": {
                "totalQueryableSamples": r.stats.samples_read,
                "peakSamples": r.stats.peak_samples,
            },
        });
        out.push_str(",\"stats\":");
        out.push_str(&stats.to_string());
    }
    out.push('}');
    for (key, list) in [("warnings", &warnings), ("infos", &r.infos)] {
        if !list.is_empty() {
            let _ = write!(out, ",\"{key}\":");
            out.push_str(&serde_json::to_string(list).unwrap_or_else(|_| "[]".into()));
        }
    }
    out.push('}');
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_as_prometheus_writes_them() {
        let table = [
            (0, "0"),
            (1_435_781_451_781, "1435781451.781"),
            (1_435_781_451_000, "1435781451"),
            (4_000, "4"),
            (1_500, "1.500"),
            (1_005, "1.005"),
            (-1_500, "-1.500"),
        ];
        for (t, want) in table {
            let mut s = String::new();
            write_timestamp(&mut s, t);
            assert_eq!(s, want, "{t}");
        }
    }

    #[test]
    fn durations_as_seconds_or_units() {
        let ok = [
            ("15", 15_000),
            ("0.5", 500),
            ("1m", 60_000),
            ("1m30s", 90_000),
            ("60s", 60_000),
        ];
        for (s, want) in ok {
            assert_eq!(parse_duration("step", s).expect(s), want, "{s}");
        }
        for s in ["", "abc", "1e300", "NaN", "5 minutes"] {
            assert!(parse_duration("step", s).is_err(), "{s}");
        }
    }
}
