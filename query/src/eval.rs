//! The PromQL evaluator: instant and range queries over a `Querier`, with
//! Prometheus 3 semantics.
//!
//! An expression is evaluated over a grid of steps (`start`, `start +
//! step`, ... `end`; an instant query is a grid of one). Every node yields
//! a [`Val`]: scalars and instant vectors hold one value per step, so
//! binary operators and aggregations work step by step on aligned columns,
//! while range-vector functions slide a window over each series' decoded
//! samples once (no re-decoding per step). Selectors are read from storage
//! once per node with the exact time range that covers all steps, matchers
//! pushed down.
//!
//! Names are dropped late, as Prometheus 3 does: functions and operators
//! that change a metric's meaning only mark a series (`drop_name`); the
//! `__name__` label is removed when the final result is assembled, and only
//! then are clashes between label sets an error.
//!
//! **API Boundary:** the server calls [`Engine::instant_query`] and
//! [`Engine::range_query`]; errors come back as [`crate::Error`],
//! classified by fault, and annotations beside the result.

pub mod aggregate;
pub mod annotations;
pub mod binary;
pub mod evaluator;
pub mod functions;
mod parallel;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cairn_engine::{Labels, Querier, Sample, TimestampMs};

use crate::ast::Expr;
use crate::error::{Error, Result};

pub use annotations::Annotations;

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (default 5m).
    pub lookback_delta_ms: i64,
    /// The most samples a query may hold in memory at once.
    pub max_samples: usize,
    /// Wall-clock limit of one query; `None` for no limit.
    pub timeout: Option<Duration>,
    /// The step of a subquery written without one (`[1h:]`).
    pub default_subquery_step_ms: i64,
    /// The most points per series a range query may return.
    pub max_points_per_series: i64,
    /// The most queries evaluated at once; more wait for a slot (up to
    /// their timeout).
    pub max_concurrent_queries: usize,
    /// Threads one query decodes and reduces selected series on (0: one
    /// per available core). Results are identical for any value.
    pub threads: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60_000,
            max_samples: 50_000_000,
            timeout: Some(Duration::from_secs(120)),
            default_subquery_step_ms: 60_000,
            max_points_per_series: 11_000,
            max_concurrent_queries: 20,
            threads: 0,
        }
    }
}

/// Per-query settings that override the engine's.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    pub lookback_delta_ms: Option<i64>,
    /// Trip this to cancel the query (for example when the client goes away).
    pub cancel: Option<CancelToken>,
}

/// A flag the server trips to stop a running query; checked between steps
/// and series.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_canceled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// One sample of an instant-vector result.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    pub t: TimestampMs,
    pub v: f64,
}

/// One series of a range-vector (matrix) result.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// The value of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t: TimestampMs, v: f64 },
    String { t: TimestampMs, v: String },
    Vector(Vec<InstantSample>),
    Matrix(Vec<RangeSeries>),
}

/// What a query measured about itself.
#[derive(Debug, Clone, Default)]
pub struct QueryStats {
    /// The most samples held at once.
    pub peak_samples: usize,
    /// Samples read from storage.
    pub samples_read: usize,
    /// Series read from storage (once per selector that read them).
    pub series_read: usize,
}

/// The result of a query with its annotations.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub value: Value,
    /// `PromQL warning: ...` texts, with positions.
    pub warnings: Vec<String>,
    /// `PromQL info: ...` texts, with positions.
    pub infos: Vec<String>,
    pub stats: QueryStats,
}

/// The query engine: its options and the gate that caps concurrent
/// queries. Cheap to clone (clones share the gate); shareable across threads.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
    gate: Arc<Gate>,
}

/// Counts running queries; a query waits while `max` are running.
#[derive(Debug, Default)]
struct Gate {
    running: Mutex<usize>,
    freed: Condvar,
}

/// A slot of the gate, given back on drop.
struct Slot<'a>(&'a Gate);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut n = self.0.running.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

impl Gate {
    /// Waits for a slot until `deadline`; `max == 0` means no cap.
    fn enter(&self, max: usize, deadline: Option<Instant>) -> Result<Slot<'_>> {
        let mut n = self.running.lock().unwrap_or_else(|p| p.into_inner());
        while max > 0 && *n >= max {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if wait.is_zero() {
                return Err(Error::Timeout { phase: "queue" });
            }
            n = self
                .freed
                .wait_timeout(n, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *n += 1;
        Ok(Slot(self))
    }
}

/// The sentinel stored in a step column where a series has no value. It is
/// a signalling NaN with a payload that arithmetic never produces (results
/// of arithmetic on NaN are quiet NaNs).
pub(crate) const ABSENT_BITS: u64 = 0x7ff0_0000_0000_0bad;

#[inline]
pub(crate) fn absent() -> f64 {
    f64::from_bits(ABSENT_BITS)
}

#[inline]
pub(crate) fn is_absent(v: f64) -> bool {
    v.to_bits() == ABSENT_BITS
}

/// A series of an instant-vector value: one column entry per step.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub labels: Labels,
    pub vals: Vec<f64>,
    pub drop_name: bool,
}

/// A series of a range-vector value.
#[derive(Debug, Clone)]
pub(crate) struct RSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub drop_name: bool,
}

/// The value of a node over the step grid.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Scalar(Vec<f64>),
    Vector(Vec<Series>),
    Matrix(Vec<RSeries>),
    String(String),
}

/// The grid of evaluation times of one (sub)query.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Grid {
    pub fn len(&self) -> usize {
        if self.end < self.start {
            return 0;
        }
        ((self.end - self.start) / self.step + 1) as usize
    }

    pub fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    pub fn is_instant(&self) -> bool {
        self.start == self.end
    }
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Engine {
            opts,
            gate: Arc::default(),
        }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Parses and evaluates `query` at time `t` (ms).
    pub fn instant_query(
        &self,
        querier: &dyn Querier,
        query: &str,
        t: TimestampMs,
    ) -> Result<QueryResult> {
        let expr = crate::parser::parse(query)?;
        self.instant_query_expr(querier, &expr, query, t, &QueryOptions::default())
    }

    /// Parses and evaluates `query` at every `step` from `start` to `end` (ms).
    pub fn range_query(
        &self,
        querier: &dyn Querier,
        query: &str,
        start: TimestampMs,
        end: TimestampMs,
        step: i64,
    ) -> Result<QueryResult> {
        let expr = crate::parser::parse(query)?;
        self.range_query_expr(
            querier,
            &expr,
            query,
            start,
            end,
            step,
            &QueryOptions::default(),
        )
    }

    /// Evaluates a parsed expression at `t`; `query` is its text, used to
    /// render annotation positions.
    pub fn instant_query_expr(
        &self,
        querier: &dyn Querier,
        expr: &Expr,
        query: &str,
        t: TimestampMs,
        opts: &QueryOptions,
    ) -> Result<QueryResult> {
        let grid = Grid {
            start: t,
            end: t,
            step: 1,
        };
        let mut ev = self.evaluator(querier, opts, grid);
        let _slot = self
            .gate
            .enter(self.opts.max_concurrent_queries, ev.deadline)?;
        let val = ev.eval(grid, expr)?;
        let value = match val {
            Val::Scalar(v) => Value::Scalar {
                t,
                v: v.first().copied().unwrap_or(f64::NAN),
            },
            Val::String(s) => Value::String { t, v: s },
            Val::Vector(series) => {
                let mut out = Vec::with_capacity(series.len());
                for s in series {
                    let v = s.vals[0];
                    if is_absent(v) {
                        continue;
                    }
                    let labels = if s.drop_name {
                        drop_metadata(&s.labels)
                    } else {
                        s.labels
                    };
                    out.push(InstantSample { labels, t, v });
                }
                let mut seen = std::collections::HashSet::with_capacity(out.len());
                for s in &out {
                    if !seen.insert(&s.labels) {
                        return Err(Error::exec(
                            "vector cannot contain metrics with the same labelset",
                        ));
                    }
                }
                Value::Vector(out)
            }
            Val::Matrix(series) => {
                let rs = series
                    .into_iter()
                    .map(|s| RangeSeries {
                        labels: if s.drop_name {
                            drop_metadata(&s.labels)
                        } else {
                            s.labels
                        },
                        samples: s.samples,
                    })
                    .collect();
                Value::Matrix(merge_same_labels(rs)?)
            }
        };
        Ok(ev.finish(value, query))
    }

    /// Evaluates a parsed expression as a range query.
    #[allow(clippy::too_many_arguments)]
    pub fn range_query_expr(
        &self,
        querier: &dyn Querier,
        expr: &Expr,
        query: &str,
        start: TimestampMs,
        end: TimestampMs,
        step: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult> {
        if step <= 0 {
            return Err(Error::BadData {
                message: "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            });
        }
        if end < start {
            return Err(Error::BadData {
                message: "end timestamp must not be before start time".into(),
            });
        }
        if (end - start) / step >= self.opts.max_points_per_series {
            return Err(Error::BadData {
                message: format!(
                    "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                    self.opts.max_points_per_series
                ),
            });
        }
        let vt = expr.value_type();
        if vt != crate::ast::ValueType::Scalar && vt != crate::ast::ValueType::Vector {
            return Err(Error::BadData {
                message: format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    vt.documented()
                ),
            });
        }
        let grid = Grid { start, end, step };
        let mut ev = self.evaluator(querier, opts, grid);
        let _slot = self
            .gate
            .enter(self.opts.max_concurrent_queries, ev.deadline)?;
        let val = ev.eval(grid, expr)?;
        let mut out: Vec<RangeSeries> = Vec::new();
        match val {
            Val::Scalar(v) => out.push(RangeSeries {
                labels: Labels::empty(),
                samples: v
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| Sample::new(grid.ts(i), v))
                    .collect(),
            }),
            Val::Vector(series) => {
                for s in series {
                    let samples: Vec<Sample> = s
                        .vals
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| !is_absent(**v))
                        .map(|(i, &v)| Sample::new(grid.ts(i), v))
                        .collect();
                    if samples.is_empty() {
                        continue;
                    }
                    let labels = if s.drop_name {
                        drop_metadata(&s.labels)
                    } else {
                        s.labels
                    };
                    out.push(RangeSeries { labels, samples });
                }
            }
            Val::Matrix(_) | Val::String(_) => {
                return Err(Error::internal("range query produced a non-vector value"));
            }
        }
        let mut out = merge_same_labels(out)?;
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(ev.finish(Value::Matrix(out), query))
    }

    fn evaluator<'a>(
        &self,
        querier: &'a dyn Querier,
        opts: &QueryOptions,
        grid: Grid,
    ) -> evaluator::Evaluator<'a> {
        evaluator::Evaluator {
            querier,
            query_start: grid.start,
            query_end: grid.end,
            query_step: if grid.start == grid.end { 0 } else { grid.step },
            lookback_ms: opts
                .lookback_delta_ms
                .unwrap_or(self.opts.lookback_delta_ms),
            max_samples: self.opts.max_samples,
            deadline: self.opts.timeout.map(|d| Instant::now() + d),
            cancel: opts.cancel.clone(),
            default_subquery_step_ms: self.opts.default_subquery_step_ms,
            annotations: Annotations::default(),
            stats: QueryStats::default(),
            ticks: 0,
            threads: match self.opts.threads {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            },
        }
    }
}

/// The labels that describe what a metric is (its name, and the
/// `__type__`/`__unit__` labels of Prometheus's type-and-unit feature):
/// dropped together when an operation changes the metric's meaning.
pub(crate) const METADATA_LABELS: [&str; 3] = ["__name__", "__type__", "__unit__"];

/// A copy of `l` without the metadata labels.
pub(crate) fn drop_metadata(l: &Labels) -> Labels {
    if !l.iter().any(|x| METADATA_LABELS.contains(&&*x.name)) {
        return l.clone();
    }
    let mut b = l.builder();
    for n in METADATA_LABELS {
        b.del(n);
    }
    b.build()
}

/// Series that have the same labels once names are dropped are merged if
/// their samples do not overlap in time; an overlap is an error.
fn merge_same_labels(mut v: Vec<RangeSeries>) -> Result<Vec<RangeSeries>> {
    let mut index: std::collections::HashMap<Labels, usize> =
        std::collections::HashMap::with_capacity(v.len());
    let mut out: Vec<RangeSeries> = Vec::with_capacity(v.len());
    let mut merged_any = false;
    for s in v.drain(..) {
        match index.get(&s.labels) {
            Some(&i) => {
                out[i].samples.extend(s.samples);
                merged_any = true;
            }
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    if merged_any {
        for s in &mut out {
            s.samples.sort_by_key(|p| p.t);
            if s.samples.windows(2).any(|w| w[0].t == w[1].t) {
                return Err(Error::exec(
                    "vector cannot contain metrics with the same labelset",
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_caps_concurrent_queries() {
        let gate = Gate::default();
        let first = gate.enter(1, None).unwrap();
        let err = gate.enter(1, Some(Instant::now())).err().unwrap();
        assert!(matches!(err, Error::Timeout { phase: "queue" }), "{err:?}");
        drop(first);
        let _second = gate.enter(1, Some(Instant::now())).unwrap();
        // No cap: never waits.
        let _a = gate.enter(0, Some(Instant::now())).unwrap();
    }

    #[test]
    fn absent_sentinel_is_not_an_arithmetic_nan() {
        assert!(is_absent(absent()));
        assert!(!is_absent(f64::NAN));
        assert!(!is_absent(absent() + 1.0));
        assert!(!is_absent(-absent()));
        assert!(!is_absent(f64::from_bits(cairn_engine::STALE_NAN_BITS)));
    }
}
