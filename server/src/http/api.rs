//! The Prometheus HTTP API's metadata and status endpoints:
//! `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/<name>/values`,
//! `/api/v1/metadata`, `/api/v1/query_exemplars`, `/api/v1/rules`,
//! `/api/v1/alerts` and `/api/v1/status/*`, with Prometheus's parameters
//! (`match[]`, `start`, `end`, `limit`) and response shapes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use cairn_engine::{Labels, Matcher, TimestampMs};
use serde::Serialize;

use super::{ApiError, AppState, Params, success, success_with};
use crate::error::Error;
use crate::{exec, selector};

/// Earliest and latest times the API accepts, in ms: Prometheus's
/// `minTime`/`maxTime` (the range Go's `time.Time` can hold in Unix ms).
pub const MIN_TIME_MS: TimestampMs = -9_223_309_901_257_974;
pub const MAX_TIME_MS: TimestampMs = 9_223_309_901_257_974;

/// Parses a time parameter: Unix seconds (float, rounded to the nearest
/// millisecond) or RFC 3339.
pub fn parse_time(param: &str, s: &str) -> Result<TimestampMs, Error> {
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        let ms = (f * 1000.0).round();
        if ms < MIN_TIME_MS as f64 || ms > MAX_TIME_MS as f64 {
            return Err(Error::BadParam {
                param: param.into(),
                reason: format!("cannot parse {s:?} to a valid timestamp: out of range"),
            });
        }
        return Ok(ms as TimestampMs);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    Err(Error::BadParam {
        param: param.into(),
        reason: format!("cannot parse {s:?} to a valid timestamp"),
    })
}

/// `start`/`end` with Prometheus's defaults (the whole time range).
pub(super) fn time_range(p: &Params) -> Result<(TimestampMs, TimestampMs), Error> {
    let start = p
        .get("start")
        .map(|s| parse_time("start", s))
        .transpose()?
        .unwrap_or(MIN_TIME_MS);
    let end = p
        .get("end")
        .map(|s| parse_time("end", s))
        .transpose()?
        .unwrap_or(MAX_TIME_MS);
    if end < start {
        return Err(Error::BadParam {
            param: "end".into(),
            reason: "end timestamp must not be before start time".into(),
        });
    }
    Ok((start, end))
}

/// `limit` (0 or absent = unlimited).
fn limit(p: &Params) -> Result<usize, Error> {
    match p.get("limit") {
        None => Ok(0),
        Some(s) => s.parse::<usize>().map_err(|_| Error::BadParam {
            param: "limit".into(),
            reason: format!("cannot parse {s:?}: not a non-negative integer"),
        }),
    }
}

/// Every `match[]` selector, parsed.
pub(super) fn match_sets(p: &Params) -> Result<Vec<Vec<Matcher>>, Error> {
    p.all("match[]")
        .into_iter()
        .map(|s| selector::parse("match[]", s))
        .collect()
}

/// A label set as a JSON object.
fn labels_json(l: &Labels) -> BTreeMap<&str, &str> {
    l.iter().map(|l| (&*l.name, &*l.value)).collect()
}

pub(super) async fn series(
    State(state): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    let sets = match_sets(&p)?;
    let (start, end) = time_range(&p)?;
    let limit = limit(&p)?;
    let mut all = exec::series(&state, sets, start, end).await?;
    let mut warnings = Vec::new();
    exec::apply_limit(&mut all, limit, &mut warnings);
    let data: Vec<BTreeMap<&str, &str>> = all.iter().map(labels_json).collect();
    Ok(success_with(data, warnings, Vec::new()))
}

pub(super) async fn labels(
    State(state): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    let sets = match_sets(&p)?;
    let (start, end) = time_range(&p)?;
    let limit = limit(&p)?;
    let mut names = exec::label_names(&state, sets, start, end).await?;
    let mut warnings = Vec::new();
    exec::apply_limit(&mut names, limit, &mut warnings);
    Ok(success_with(names, warnings, Vec::new()))
}

/// Decodes a label name in Prometheus's `U__` escaping (used by Grafana
/// for UTF-8 names): `__` is `_`, `_<hex>_` is the code point.
pub fn unescape_label_name(name: &str) -> Result<String, Error> {
    let Some(rest) = name.strip_prefix("U__") else {
        return Ok(name.to_string());
    };
    let bad = || Error::BadParam {
        param: "name".into(),
        reason: format!("invalid escaped label name {name:?}"),
    };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let mut hex = String::new();
        loop {
            match chars.next() {
                Some('_') => break,
                Some(h) if h.is_ascii_hexdigit() && hex.len() < 8 => hex.push(h),
                _ => return Err(bad()),
            }
        }
        let code = u32::from_str_radix(&hex, 16).map_err(|_| bad())?;
        out.push(char::from_u32(code).ok_or_else(bad)?);
    }
    Ok(out)
}

pub(super) async fn label_values(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let name = unescape_label_name(&name)?;
    let sets = match_sets(&p)?;
    let (start, end) = time_range(&p)?;
    let limit = limit(&p)?;
    let mut values = exec::label_values(&state, name, sets, start, end).await?;
    let mut warnings = Vec::new();
    exec::apply_limit(&mut values, limit, &mut warnings);
    Ok(success_with(values, warnings, Vec::new()))
}

pub(super) async fn metadata(
    State(state): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    let limit = limit(&p)?;
    let per_metric = match p.get("limit_per_metric") {
        None => 0,
        Some(s) => s.parse::<usize>().map_err(|_| Error::BadParam {
            param: "limit_per_metric".into(),
            reason: format!("cannot parse {s:?}: not a non-negative integer"),
        })?,
    };
    Ok(success(state.metadata.query(
        p.get("metric"),
        limit,
        per_metric,
    )))
}

/// Exemplars of the series any selector of the PromQL `query` selects,
/// in `[start, end]` (as Prometheus: the selectors are extracted, the
/// expression is not evaluated). Grafana's `query=test` probe is a valid
/// selector that matches nothing: `[]`.
pub(super) async fn query_exemplars(
    State(state): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    #[derive(Serialize)]
    struct Ex<'a> {
        labels: BTreeMap<&'a str, &'a str>,
        value: String,
        timestamp: serde_json::Number,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Group<'a> {
        series_labels: BTreeMap<&'a str, &'a str>,
        exemplars: Vec<Ex<'a>>,
    }
    let (start, end) = time_range(&p)?;
    let expr = super::promql::parse_param(&p)?;
    let mut sets: Vec<Vec<Matcher>> = Vec::new();
    cairn_query::ast::visit::walk(&expr, &mut |e, _| {
        match e {
            cairn_query::Expr::VectorSelector(vs) => sets.push(vs.matchers.clone()),
            cairn_query::Expr::MatrixSelector(ms) => sets.push(ms.vector.matchers.clone()),
            _ => {}
        }
        cairn_query::ast::visit::Walk::Continue
    });
    let store = state.exemplars.lock();
    let mut groups: BTreeMap<&Labels, Vec<Ex<'_>>> = BTreeMap::new();
    for ex in store.iter() {
        if ex.t < start || ex.t > end {
            continue;
        }
        let selected = sets.iter().any(|matchers| {
            matchers
                .iter()
                .all(|m| m.matches(ex.series.get(&m.name).unwrap_or("")))
        });
        if selected {
            groups.entry(&ex.series).or_default().push(Ex {
                labels: labels_json(&ex.labels),
                value: crate::format::float(ex.value),
                timestamp: timestamp_number(ex.t),
            });
        }
    }
    let data: Vec<Group<'_>> = groups
        .into_iter()
        .map(|(l, exemplars)| Group {
            series_labels: labels_json(l),
            exemplars,
        })
        .collect();
    Ok(success(data))
}

/// A millisecond timestamp as the JSON number Prometheus writes (seconds,
/// `1700000000` or `1700000000.250`).
fn timestamp_number(t: TimestampMs) -> serde_json::Number {
    let mut s = String::new();
    super::query::write_timestamp(&mut s, t);
    s.parse()
        .unwrap_or_else(|_| serde_json::Number::from(t / 1000))
}

/// `/api/v1/rules` with Prometheus's `type`, `rule_name[]`,
/// `rule_group[]`, `file[]` and `exclude_alerts` filters.
pub(super) async fn rules(
    State(state): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    let Some(mgr) = state.rules.get() else {
        return Ok(success(serde_json::json!({ "groups": [] })));
    };
    let kind = match p.get("type") {
        None | Some("") => None,
        Some(t @ ("alert" | "record")) => Some(t.to_string()),
        Some(other) => {
            return Err(Error::BadParam {
                param: "type".into(),
                reason: format!("not supported value {other:?}"),
            }
            .into());
        }
    };
    let owned = |k: &str| p.all(k).into_iter().map(str::to_string).collect();
    let filter = crate::rules::manager::RulesFilter {
        kind,
        rule_names: owned("rule_name[]"),
        group_names: owned("rule_group[]"),
        files: owned("file[]"),
        exclude_alerts: p.get("exclude_alerts") == Some("true"),
    };
    Ok(success(mgr.rules_json(&filter)))
}

/// `/api/v1/alerts`: every pending and firing alert.
pub(super) async fn alerts(State(state): State<Arc<AppState>>) -> Response {
    match state.rules.get() {
        Some(mgr) => success(mgr.alerts_json()),
        None => success(serde_json::json!({ "alerts": [] })),
    }
}

/// The Prometheus version Cairn's API and PromQL semantics follow; Grafana
/// picks features by it.
pub const PROMETHEUS_COMPATIBLE_VERSION: &str = "3.5.0";

pub(super) async fn buildinfo() -> Response {
    // No `features` map and no `application` field: Grafana then treats
    // Cairn as a plain Prometheus (see docs/http-api.md).
    success(serde_json::json!({
        "version": PROMETHEUS_COMPATIBLE_VERSION,
        "revision": format!("cairn-{}", env!("CARGO_PKG_VERSION")),
        "branch": "cairn",
        "buildUser": "cairn",
        "buildDate": "",
        "goVersion": "none (Rust)",
    }))
}

pub(super) async fn runtimeinfo(State(state): State<Arc<AppState>>) -> Response {
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let started = state
        .started
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    success(serde_json::json!({
        "startTime": started,
        "CWD": cwd,
        "reloadConfigSuccess": true,
        "lastConfigTime": started,
        "corruptionCount": 0,
        "goroutineCount": 0,
        "GOMAXPROCS": cores,
        "GOMEMLIMIT": 0,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": state.config.storage.retention.to_string(),
    }))
}

pub(super) async fn flags(State(state): State<Arc<AppState>>) -> Response {
    success(state.config.flags())
}

pub(super) async fn status_config(State(state): State<Arc<AppState>>) -> Response {
    success(serde_json::json!({ "yaml": state.config.to_yaml() }))
}

/// WAL replay progress in Prometheus's shape. Cairn replays before it
/// serves data endpoints, so once this answers with storage open the replay
/// is complete; before that `current` is 0 of 1.
pub(super) async fn walreplay(State(state): State<Arc<AppState>>) -> Response {
    let done = u8::from(state.is_ready());
    success(serde_json::json!({ "min": 0, "max": 1, "current": done }))
}

pub(super) async fn tsdb(
    State(state): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    let limit = match p.get("limit") {
        None => 10,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(Error::BadParam {
                    param: "limit".into(),
                    reason: format!("{s:?} is not a positive integer"),
                }
                .into());
            }
        },
    };
    let storage = state.storage()?.clone();
    let stats = exec::blocking(move || storage.stats(limit)).await?;
    Ok(success(stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_prometheus() {
        let ok = [
            ("1700000000", 1_700_000_000_000),
            ("1700000000.123", 1_700_000_000_123),
            ("1700000000.1234", 1_700_000_000_123),
            ("1700000000.1236", 1_700_000_000_124),
            ("-1.5", -1_500),
            ("2015-07-01T20:10:51.781Z", 1_435_781_451_781),
            ("2015-07-01T13:10:51.781-07:00", 1_435_781_451_781),
        ];
        for (s, want) in ok {
            assert_eq!(parse_time("t", s).expect(s), want, "{s}");
        }
        for s in ["", "abc", "NaN", "Inf", "1e300", "2015-07-01"] {
            let e = parse_time("t", s).expect_err(s);
            assert_eq!(e.status().as_u16(), 400, "{s}");
        }
    }

    #[test]
    fn u_escaped_label_names() {
        let table = [
            ("job", Some("job")),
            ("U__http_2e_server", Some("http.server")),
            ("U__a__b", Some("a_b")),
            ("U__caf_e9_", Some("café")),
            ("U__bad_zz_", None),
            ("U__open_2e", None),
        ];
        for (input, want) in table {
            match want {
                Some(w) => assert_eq!(unescape_label_name(input).expect(input), w),
                None => assert!(unescape_label_name(input).is_err(), "{input}"),
            }
        }
    }
}
