//! Query execution shared by the HTTP API (`http::query`, `http::api`) and
//! the gRPC query service (`grpc`): one path from a parsed request to a
//! result, so that both front ends run the same engine with the same
//! limits, timeouts, concurrency slots and cancellation, and differ only in
//! how they decode parameters and encode results.
//!
//! **Architecture Invariant:** a front end never builds a cairn-query
//! `Engine` or opens a querier itself; it calls [`execute`], [`series`],
//! [`label_names`] or [`label_values`].

use std::time::{Duration, Instant};

use cairn_engine::{Labels, Matcher, TimestampMs};
use cairn_query::eval::{CancelToken, QueryOptions};
use cairn_query::{Engine, EngineOptions, Expr, QueryResult, Value};

use crate::config::Config;
use crate::error::Error;
use crate::http::AppState;

/// The warning added when a result is cut to the request's `limit`.
pub const TRUNCATED_WARNING: &str = "results truncated due to limit";

/// What to evaluate.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Instant {
        t: TimestampMs,
    },
    Range {
        start: TimestampMs,
        end: TimestampMs,
        step: i64,
    },
}

/// A parsed query and its per-request settings.
#[derive(Debug)]
pub struct QuerySpec {
    pub expr: Expr,
    /// The query text (annotations quote positions in it).
    pub query: String,
    pub kind: Kind,
    /// The request's own timeout; the server's `query.timeout` caps it.
    pub timeout: Option<Duration>,
    /// The request's lookback delta; the server's default when `None`.
    pub lookback_delta_ms: Option<i64>,
}

/// A finished query and how long its phases took.
#[derive(Debug)]
pub struct Executed {
    pub result: QueryResult,
    /// Waiting for a query slot.
    pub queue: Duration,
    /// Evaluation (including reading storage).
    pub eval: Duration,
}

/// Cancels a query when dropped: a front end holds one for as long as its
/// client waits, so a client that goes away (or whose deadline passes)
/// stops the evaluation and frees its memory.
#[derive(Debug)]
pub struct CancelOnDrop(pub CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Counts a query in `cairn_queries_in_flight` for as long as it lives.
pub struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl InFlight {
    pub fn new(g: &prometheus_client::metrics::gauge::Gauge) -> InFlight {
        g.inc();
        InFlight(g.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Parses a PromQL expression; a syntax error is bad data with its
/// position (`1:5: parse error: ...`).
pub fn parse_query(q: &str) -> Result<Expr, Error> {
    if q.is_empty() {
        return Err(Error::BadParam {
            param: "query".into(),
            reason: "missing query".into(),
        });
    }
    cairn_query::parse(q).map_err(|e| Error::BadParam {
        param: "query".into(),
        reason: e.to_string(),
    })
}

/// Checks a range query's grid: `end >= start`, a positive step, and at
/// most `query.max_points_per_series` points.
pub fn check_range(
    config: &Config,
    start: TimestampMs,
    end: TimestampMs,
    step: i64,
) -> Result<(), Error> {
    if end < start {
        return Err(Error::BadParam {
            param: "end".into(),
            reason: "end timestamp must not be before start time".into(),
        });
    }
    if step <= 0 {
        return Err(Error::BadParam {
            param: "step".into(),
            reason: "zero or negative query resolution step widths are not accepted. \
                     Try a positive integer"
                .into(),
        });
    }
    let max_points = config.query.max_points_per_series as i64;
    if (end - start) / step >= max_points {
        return Err(Error::TooManyPoints { max_points });
    }
    Ok(())
}

/// Runs a query on a blocking thread, holding one of the server's query
/// slots, with the engine configured from `query.*`. `cancel` stops it
/// (the caller keeps a [`CancelOnDrop`]). When this future is dropped
/// (client gone, deadline passed) the evaluation goes on until the engine
/// sees the cancelled flag, and only then gives its slot back and leaves
/// `cairn_queries_in_flight`: the slots bound the queries really running.
pub async fn execute(
    state: &AppState,
    spec: QuerySpec,
    cancel: CancelToken,
) -> Result<Executed, Error> {
    let qc = &state.config.query;
    let timeout = match spec.timeout {
        Some(t) if !t.is_zero() => qc.timeout.0.min(t),
        _ => qc.timeout.0,
    };
    let storage = state.storage()?.clone();
    let in_flight = InFlight::new(&state.metrics.queries_in_flight);
    let queued = Instant::now();
    let slot = state
        .query_slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Error::Unavailable {
            reason: "shutting down".into(),
        })?;
    let queue = queued.elapsed();
    let engine = Engine::new(EngineOptions {
        lookback_delta_ms: qc.lookback_delta.as_millis_i64(),
        max_samples: usize::try_from(qc.max_samples).unwrap_or(usize::MAX),
        timeout: Some(timeout.saturating_sub(queue)),
        max_points_per_series: qc.max_points_per_series as i64,
        threads: qc.threads,
        ..Default::default()
    });
    let opts = QueryOptions {
        lookback_delta_ms: spec.lookback_delta_ms.filter(|ms| *ms > 0),
        cancel: Some(cancel),
    };
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || -> Result<QueryResult, Error> {
        let (_slot, _in_flight) = (slot, in_flight);
        let querier = storage.querier()?;
        let (expr, query) = (&spec.expr, spec.query.as_str());
        let r = match spec.kind {
            Kind::Instant { t } => engine.instant_query_expr(&*querier, expr, query, t, &opts),
            Kind::Range { start, end, step } => {
                engine.range_query_expr(&*querier, expr, query, start, end, step, &opts)
            }
        };
        Ok(r?)
    })
    .await
    .map_err(|e| Error::Internal {
        reason: format!("query task failed: {e}"),
    })??;
    Ok(Executed {
        result,
        queue,
        eval: started.elapsed(),
    })
}

/// Cuts a vector or matrix result to `limit` series (0: no limit), adding
/// [`TRUNCATED_WARNING`] when it cuts.
pub fn limit_result(r: &mut QueryResult, limit: usize) {
    let cut = match &mut r.value {
        Value::Vector(v) => truncate(v, limit),
        Value::Matrix(m) => truncate(m, limit),
        Value::Scalar { .. } | Value::String { .. } => false,
    };
    if cut {
        r.warnings.push(TRUNCATED_WARNING.into());
    }
}

fn truncate<T>(v: &mut Vec<T>, limit: usize) -> bool {
    if limit > 0 && v.len() > limit {
        v.truncate(limit);
        true
    } else {
        false
    }
}

/// Truncates a list to `limit` (0: no limit), with the warning when it
/// cuts.
pub fn apply_limit<T>(v: &mut Vec<T>, limit: usize, warnings: &mut Vec<String>) {
    if truncate(v, limit) {
        warnings.push(TRUNCATED_WARNING.into());
    }
}

/// Runs blocking storage work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal {
            reason: format!("task failed: {e}"),
        })?
}

/// The label sets of the series matching any of `sets` in `[start, end]`:
/// sorted, each once. `sets` must not be empty.
pub async fn series(
    state: &AppState,
    sets: Vec<Vec<Matcher>>,
    start: TimestampMs,
    end: TimestampMs,
) -> Result<Vec<Labels>, Error> {
    if sets.is_empty() {
        return Err(Error::BadParam {
            param: "match[]".into(),
            reason: "no match[] parameter provided".into(),
        });
    }
    let storage = state.storage()?.clone();
    blocking(move || {
        let q = storage.querier()?;
        let mut out: Vec<Labels> = Vec::new();
        for m in &sets {
            out.extend(q.series(m, start, end)?);
        }
        // The union of several selectors: sorted, each series once.
        if sets.len() > 1 {
            out.sort();
            out.dedup();
        }
        Ok(out)
    })
    .await
}

/// Label names of the series matching any of `sets` (all series when
/// empty) in `[start, end]`, sorted.
pub async fn label_names(
    state: &AppState,
    sets: Vec<Vec<Matcher>>,
    start: TimestampMs,
    end: TimestampMs,
) -> Result<Vec<String>, Error> {
    let storage = state.storage()?.clone();
    blocking(move || {
        let q = storage.querier()?;
        if sets.is_empty() {
            return Ok(q.label_names(&[], start, end)?);
        }
        let mut out = Vec::new();
        for m in &sets {
            out.extend(q.label_names(m, start, end)?);
        }
        out.sort();
        out.dedup();
        Ok(out)
    })
    .await
}

/// Values of label `name` of the series matching any of `sets` (all
/// series when empty) in `[start, end]`, sorted.
pub async fn label_values(
    state: &AppState,
    name: String,
    sets: Vec<Vec<Matcher>>,
    start: TimestampMs,
    end: TimestampMs,
) -> Result<Vec<String>, Error> {
    if name.is_empty() {
        return Err(Error::BadParam {
            param: "name".into(),
            reason: "invalid label name \"\"".into(),
        });
    }
    let storage = state.storage()?.clone();
    blocking(move || {
        let q = storage.querier()?;
        if sets.is_empty() {
            return Ok(q.label_values(&name, &[], start, end)?);
        }
        let mut out = Vec::new();
        for m in &sets {
            out.extend(q.label_values(&name, m, start, end)?);
        }
        out.sort();
        out.dedup();
        Ok(out)
    })
    .await
}
