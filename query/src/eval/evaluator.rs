//! The tree walk: evaluates each node over a step grid, reads selectors
//! from storage, runs subqueries on their own aligned grid, and dispatches
//! function calls to the kernels in `functions`.

use std::collections::HashMap;
use std::time::Instant;

use cairn_engine::{Labels, MatchOp, Querier, Sample, is_stale_nan};

use super::functions::{histogram, labels as label_fns, math, over_time, rate, sort, time};
use super::parallel::{self, Ticker};
use super::{
    Annotations, CancelToken, Grid, QueryStats, RSeries, Series, Val, Value, absent, is_absent,
};
use crate::ast::{AtModifier, Call, Expr, MatrixSelector, Span, SubqueryExpr, VectorSelector};
use crate::error::{Error, Result};

/// One classic histogram of a vector: its labels (without `le`), whether
/// any member asks for its name to be dropped, and its members (series
/// index, upper bound).
type BucketGroup = (Labels, bool, Vec<(usize, f64)>);

/// State of one query evaluation.
pub struct Evaluator<'a> {
    pub(crate) querier: &'a dyn Querier,
    /// Start and end of the whole query, for `@ start()` and `@ end()`.
    pub(crate) query_start: i64,
    pub(crate) query_end: i64,
    /// The step of a range query; 0 for an instant query.
    pub(crate) query_step: i64,
    pub(crate) lookback_ms: i64,
    pub(crate) max_samples: usize,
    pub(crate) deadline: Option<Instant>,
    pub(crate) cancel: Option<CancelToken>,
    pub(crate) default_subquery_step_ms: i64,
    pub(crate) annotations: Annotations,
    pub(crate) stats: QueryStats,
    pub(crate) ticks: u32,
    /// Threads a selection's series are decoded and reduced on (>= 1).
    pub(crate) threads: usize,
}

/// A range-vector argument resolved to series.
pub(crate) struct MatrixSource {
    pub series: MatrixSeries,
    pub range_ms: i64,
    pub offset_ms: i64,
    pub at: Option<i64>,
}

/// The series of a range-vector argument.
pub(crate) enum MatrixSeries {
    /// Already evaluated (a subquery's result); no staleness markers.
    Decoded(Vec<RSeries>),
    /// Selected from storage: each series' samples in `[mint, maxt]` are
    /// decoded when it is used, and staleness markers dropped then.
    Stored {
        series: Vec<cairn_engine::Series>,
        mint: i64,
        maxt: i64,
    },
}

impl Evaluator<'_> {
    pub(crate) fn finish(self, value: Value, query: &str) -> super::QueryResult {
        let (warnings, infos) = self.annotations.render(query);
        super::QueryResult {
            value,
            warnings,
            infos,
            stats: self.stats,
        }
    }

    /// Checks cancellation and the deadline.
    pub(crate) fn check(&mut self) -> Result<()> {
        if let Some(c) = &self.cancel
            && c.is_canceled()
        {
            return Err(Error::Canceled {
                phase: "expression evaluation",
            });
        }
        if let Some(d) = self.deadline
            && Instant::now() >= d
        {
            return Err(Error::Timeout {
                phase: "expression evaluation",
            });
        }
        Ok(())
    }

    /// Cheap periodic check for hot loops.
    #[inline]
    pub(crate) fn tick(&mut self) -> Result<()> {
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks.is_multiple_of(1024) {
            self.check()?;
        }
        Ok(())
    }

    /// Accounts for `n` samples held by a node's result.
    pub(crate) fn hold(&mut self, n: usize) -> Result<()> {
        if n > self.max_samples {
            return Err(Error::TooManySamples {
                phase: "query execution",
            });
        }
        self.stats.peak_samples = self.stats.peak_samples.max(n);
        Ok(())
    }

    fn at_time(&self, at: Option<AtModifier>) -> Option<i64> {
        at.map(|a| match a {
            AtModifier::Timestamp(t) => t,
            AtModifier::Start => self.query_start,
            AtModifier::End => self.query_end,
        })
    }

    /// Evaluates `e` over `g`. The tree walk recurses once per level; the
    /// stack is grown on demand so that the deepest tree the parser accepts
    /// evaluates on any thread.
    pub(crate) fn eval(&mut self, g: Grid, e: &Expr) -> Result<Val> {
        stacker::maybe_grow(128 * 1024, 4 * 1024 * 1024, || self.eval_node(g, e))
    }

    fn eval_node(&mut self, g: Grid, e: &Expr) -> Result<Val> {
        self.check()?;
        let n = g.len();
        // A step column is allocated per series: refuse grids (a subquery
        // with a tiny step over a long range) that could not fit.
        self.hold(n)?;
        let v = match e {
            Expr::Number(x) => Val::Scalar(vec![x.value; n]),
            Expr::String(s) => Val::String(s.value.clone()),
            Expr::Paren(p) => self.eval(g, &p.expr)?,
            Expr::Unary(u) => match self.eval(g, &u.expr)? {
                Val::Scalar(mut v) => {
                    for x in &mut v {
                        *x = -*x;
                    }
                    Val::Scalar(v)
                }
                Val::Vector(mut ss) => {
                    for s in &mut ss {
                        s.drop_name = true;
                        for x in &mut s.vals {
                            if !is_absent(*x) {
                                *x = -*x;
                            }
                        }
                    }
                    Val::Vector(ss)
                }
                other => other,
            },
            Expr::VectorSelector(vs) => Val::Vector(self.vector_selector(g, vs, false)?),
            Expr::MatrixSelector(ms) => {
                if !g.is_instant() {
                    return Err(Error::internal(
                        "cannot do range evaluation of matrix selector",
                    ));
                }
                let src = self.matrix_selector_source(g, ms)?;
                Val::Matrix(self.windows_at(src, g.start)?)
            }
            Expr::Subquery(sq) => {
                if !g.is_instant() {
                    return Err(Error::internal("cannot do range evaluation of a subquery"));
                }
                let src = self.subquery_source(g, sq)?;
                Val::Matrix(self.windows_at(src, g.start)?)
            }
            Expr::Binary(b) => super::binary::eval(self, g, b)?,
            Expr::Aggregate(a) => super::aggregate::eval(self, g, a)?,
            Expr::Call(c) => self.call(g, c)?,
        };
        let held = match &v {
            Val::Vector(ss) => ss.len() * n,
            Val::Matrix(ss) => ss.iter().map(|s| s.samples.len()).sum(),
            _ => 0,
        };
        self.hold(held)?;
        Ok(v)
    }

    /// Cancellation and deadline checks for worker threads.
    pub(crate) fn ticker(&self) -> Ticker {
        Ticker::new(self.cancel.clone(), self.deadline)
    }

    /// How many series one parallel batch holds: their step columns are
    /// in memory at once, so fewer on long grids.
    fn batch_len(n: usize) -> usize {
        (1 << 20) / n.max(1)
    }

    /// An instant vector selector over the grid: at each step the latest
    /// sample in `(t - lookback, t]` unless it is a staleness marker. With
    /// `timestamps`, the value is the sample's timestamp in seconds.
    pub(crate) fn vector_selector(
        &mut self,
        g: Grid,
        vs: &VectorSelector,
        timestamps: bool,
    ) -> Result<Vec<Series>> {
        let mut out = Vec::new();
        self.vector_selector_each(g, vs, timestamps, &mut |s| {
            out.push(s);
            Ok(())
        })?;
        Ok(out)
    }

    /// Like [`Evaluator::vector_selector`], handing each series with a
    /// value to `sink` in label order as soon as it is computed. Series
    /// are decoded one at a time (on the query's threads), so a selector
    /// over many series never holds all their samples.
    pub(crate) fn vector_selector_each(
        &mut self,
        g: Grid,
        vs: &VectorSelector,
        timestamps: bool,
        sink: &mut dyn FnMut(Series) -> Result<()>,
    ) -> Result<()> {
        let n = g.len();
        if n == 0 {
            return Ok(());
        }
        let at = self.at_time(vs.at);
        let refs: Vec<i64> = (0..n)
            .map(|i| at.unwrap_or_else(|| g.ts(i)) - vs.offset_ms)
            .collect();
        let (first, last) = (refs[0], refs[n - 1]);
        let (mint, maxt) = (first - self.lookback_ms + 1, last);
        let mut stored = self.querier.select(&vs.matchers, mint, maxt)?;
        let mut labels = take_labels(&mut stored);
        let lookback = self.lookback_ms;
        let ticker = self.ticker();
        let mut emitted = 0usize;
        parallel::map_ordered(
            &stored,
            self.threads,
            Self::batch_len(n),
            &ticker,
            |_, s, buf: &mut Vec<Sample>, t| {
                t.tick()?;
                buf.clear();
                s.try_read_samples(mint, maxt, buf)?;
                Ok((instant_values(buf, &refs, lookback, timestamps), buf.len()))
            },
            |i, (vals, read)| {
                self.stats.samples_read += read;
                self.stats.series_read += 1;
                self.hold((emitted + 1) * n + read)?;
                if let Some(vals) = vals {
                    emitted += 1;
                    sink(Series {
                        labels: std::mem::replace(&mut labels[i], Labels::empty()),
                        vals,
                        drop_name: timestamps,
                    })?;
                }
                Ok(())
            },
        )
    }

    /// A matrix selector as the argument of a range function over the grid:
    /// the selected series, decoded when used, covering every step's window.
    pub(crate) fn matrix_selector_source(
        &mut self,
        g: Grid,
        ms: &MatrixSelector,
    ) -> Result<MatrixSource> {
        let vs = &ms.vector;
        let at = self.at_time(vs.at);
        let (first, last) = match at {
            Some(t) => (t - vs.offset_ms, t - vs.offset_ms),
            None => (
                g.start - vs.offset_ms,
                g.ts(g.len().saturating_sub(1)) - vs.offset_ms,
            ),
        };
        let (mint, maxt) = (first - ms.range_ms + 1, last);
        let series = self.querier.select(&vs.matchers, mint, maxt)?;
        Ok(MatrixSource {
            series: MatrixSeries::Stored { series, mint, maxt },
            range_ms: ms.range_ms,
            offset_ms: vs.offset_ms,
            at,
        })
    }

    /// A range vector returned as such (an instant query of `x[5m]` or of
    /// a subquery): each series' samples in its window at `t`.
    fn windows_at(&mut self, src: MatrixSource, t: i64) -> Result<Vec<RSeries>> {
        let end = src.at.unwrap_or(t) - src.offset_ms;
        let start = end - src.range_ms;
        let series: Vec<RSeries> = match src.series {
            MatrixSeries::Decoded(ss) => ss,
            MatrixSeries::Stored { series, mint, maxt } => {
                let mut out = Vec::with_capacity(series.len());
                let mut loaded = 0usize;
                for s in series {
                    self.tick()?;
                    let mut samples = Vec::new();
                    s.try_read_samples(mint, maxt, &mut samples)?;
                    loaded += samples.len();
                    self.hold(loaded)?;
                    self.stats.samples_read += samples.len();
                    self.stats.series_read += 1;
                    samples.retain(|p| !is_stale_nan(p.v));
                    out.push(RSeries {
                        labels: s.labels,
                        samples,
                        drop_name: false,
                    });
                }
                out
            }
        };
        Ok(series
            .into_iter()
            .filter_map(|mut s| {
                s.samples.retain(|p| p.t > start && p.t <= end);
                (!s.samples.is_empty()).then_some(s)
            })
            .collect())
    }

    /// Evaluates a subquery's inner expression on its own grid, aligned to
    /// absolute multiples of its step, covering all windows of `g`.
    pub(crate) fn subquery_source(&mut self, g: Grid, sq: &SubqueryExpr) -> Result<MatrixSource> {
        let at = self.at_time(sq.at);
        let (outer_start, outer_end) = match at {
            Some(t) => (t, t),
            None => (g.start, g.ts(g.len().saturating_sub(1))),
        };
        let step = sq.step_ms.unwrap_or(self.default_subquery_step_ms).max(1);
        let lo = outer_start - sq.offset_ms - sq.range_ms;
        let mut start = step * lo.div_euclid(step);
        if start <= lo {
            start += step;
        }
        let inner = Grid {
            start,
            end: outer_end - sq.offset_ms,
            step,
        };
        let series = match self.eval(inner, &sq.expr)? {
            Val::Vector(ss) => ss
                .into_iter()
                .map(|s| RSeries {
                    samples: s
                        .vals
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| !is_absent(**v))
                        .map(|(i, &v)| Sample::new(inner.ts(i), v))
                        .collect(),
                    labels: s.labels,
                    drop_name: s.drop_name,
                })
                .filter(|s| !s.samples.is_empty())
                .collect(),
            Val::Scalar(v) => vec![RSeries {
                labels: Labels::empty(),
                samples: v
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| Sample::new(inner.ts(i), v))
                    .collect(),
                drop_name: false,
            }],
            _ => return Err(Error::internal("subquery of a non-vector expression")),
        };
        Ok(MatrixSource {
            series: MatrixSeries::Decoded(series),
            range_ms: sq.range_ms,
            offset_ms: sq.offset_ms,
            at,
        })
    }

    fn matrix_source(&mut self, g: Grid, e: &Expr) -> Result<MatrixSource> {
        match e.unparen() {
            Expr::MatrixSelector(ms) => self.matrix_selector_source(g, ms),
            Expr::Subquery(sq) => self.subquery_source(g, sq),
            _ => Err(Error::internal(
                "range function argument is not a range vector",
            )),
        }
    }

    /// Evaluates an argument that must be a scalar.
    pub(crate) fn scalar_arg(&mut self, g: Grid, e: &Expr) -> Result<Vec<f64>> {
        match self.eval(g, e)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(Error::internal("expected a scalar argument")),
        }
    }

    /// Evaluates an argument that must be an instant vector.
    pub(crate) fn vector_arg(&mut self, g: Grid, e: &Expr) -> Result<Vec<Series>> {
        match self.eval(g, e)? {
            Val::Vector(v) => Ok(v),
            _ => Err(Error::internal("expected an instant vector argument")),
        }
    }

    fn string_arg(e: &Expr) -> Result<String> {
        match e.unparen() {
            Expr::String(s) => match &s.not_utf8 {
                Some(quoted) => Err(Error::exec(format!("invalid label name {quoted}"))),
                None => Ok(s.value.clone()),
            },
            _ => Err(Error::internal("expected a string literal argument")),
        }
    }

    fn call(&mut self, g: Grid, c: &Call) -> Result<Val> {
        let name = c.func.name;
        let n = g.len();
        if matches!(
            name,
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
        ) && !g.is_instant()
        {
            self.annotations.warn(
                "sort is ineffective for range queries since results are always ordered by labels",
                c.span,
            );
        }
        // Range-vector functions.
        if let Some(mi) = c
            .args
            .iter()
            .position(|a| matches!(a.unparen(), Expr::MatrixSelector(_) | Expr::Subquery(_)))
        {
            return self.range_function(g, c, mi);
        }
        match name {
            "time" => {
                return Ok(Val::Scalar(
                    (0..n).map(|i| g.ts(i) as f64 / 1000.0).collect(),
                ));
            }
            // The query's own context, folded to constants as in Prometheus.
            "start" => return Ok(Val::Scalar(vec![self.query_start as f64 / 1000.0; n])),
            "end" => return Ok(Val::Scalar(vec![self.query_end as f64 / 1000.0; n])),
            "range" => {
                return Ok(Val::Scalar(vec![
                    (self.query_end - self.query_start) as f64
                        / 1000.0;
                    n
                ]));
            }
            "step" => return Ok(Val::Scalar(vec![self.query_step as f64 / 1000.0; n])),
            "min_of" | "max_of" => {
                let a = self.scalar_arg(g, &c.args[0])?;
                let b = self.scalar_arg(g, &c.args[1])?;
                let f = if name == "min_of" { go_min } else { go_max };
                return Ok(Val::Scalar(
                    a.iter().zip(&b).map(|(x, y)| f(*x, *y)).collect(),
                ));
            }
            "pi" => return Ok(Val::Scalar(vec![std::f64::consts::PI; n])),
            "vector" => {
                let v = self.scalar_arg(g, &c.args[0])?;
                return Ok(Val::Vector(vec![Series {
                    labels: Labels::empty(),
                    vals: v,
                    drop_name: false,
                }]));
            }
            "scalar" => {
                let ss = self.vector_arg(g, &c.args[0])?;
                let mut out = vec![f64::NAN; n];
                for (i, slot) in out.iter_mut().enumerate() {
                    let mut found = None;
                    let mut many = false;
                    for s in &ss {
                        if !is_absent(s.vals[i]) {
                            if found.is_some() {
                                many = true;
                                break;
                            }
                            found = Some(s.vals[i]);
                        }
                    }
                    if !many && let Some(v) = found {
                        *slot = v;
                    }
                }
                return Ok(Val::Scalar(out));
            }
            "timestamp" => {
                if let Expr::VectorSelector(vs) = c.args[0].unparen() {
                    return Ok(Val::Vector(self.vector_selector(g, vs, true)?));
                }
                let mut ss = self.vector_arg(g, &c.args[0])?;
                for s in &mut ss {
                    s.drop_name = true;
                    for (i, x) in s.vals.iter_mut().enumerate() {
                        if !is_absent(*x) {
                            *x = g.ts(i) as f64 / 1000.0;
                        }
                    }
                }
                return Ok(Val::Vector(ss));
            }
            "absent" => {
                let ss = self.vector_arg(g, &c.args[0])?;
                let mut vals = vec![1.0; n];
                for s in &ss {
                    for (i, x) in s.vals.iter().enumerate() {
                        if !is_absent(*x) {
                            vals[i] = absent();
                        }
                    }
                }
                if vals.iter().all(|v| is_absent(*v)) {
                    return Ok(Val::Vector(Vec::new()));
                }
                return Ok(Val::Vector(vec![Series {
                    labels: absent_labels(&c.args[0]),
                    vals,
                    drop_name: false,
                }]));
            }
            "label_replace" => return self.label_replace(g, c),
            "label_join" => return self.label_join(g, c),
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
                return self.sort(g, c);
            }
            "histogram_quantile" => return self.histogram_quantile(g, c),
            "histogram_quantiles" => return self.histogram_quantiles(g, c),
            "histogram_fraction" => return self.histogram_fraction(g, c),
            _ => {}
        }
        if time::is_calendar(name) {
            if c.args.is_empty() {
                let v = (0..n)
                    .map(|i| time::calendar(name, (g.ts(i) / 1000) as f64).unwrap_or(f64::NAN))
                    .collect();
                return Ok(Val::Vector(vec![Series {
                    labels: Labels::empty(),
                    vals: v,
                    drop_name: false,
                }]));
            }
            let mut ss = self.vector_arg(g, &c.args[0])?;
            for s in &mut ss {
                s.drop_name = true;
                for x in &mut s.vals {
                    if !is_absent(*x) {
                        *x = time::calendar(name, *x).unwrap_or(f64::NAN);
                    }
                }
            }
            return Ok(Val::Vector(ss));
        }
        if let Some(f) = math::simple(name) {
            let mut ss = self.vector_arg(g, &c.args[0])?;
            map_values(&mut ss, f);
            return Ok(Val::Vector(ss));
        }
        match name {
            "round" => {
                let to = match c.args.get(1) {
                    Some(a) => self.scalar_arg(g, a)?,
                    None => vec![1.0; n],
                };
                let mut ss = self.vector_arg(g, &c.args[0])?;
                for s in &mut ss {
                    s.drop_name = true;
                    for (i, x) in s.vals.iter_mut().enumerate() {
                        if !is_absent(*x) {
                            *x = math::round(*x, to[i]);
                        }
                    }
                }
                Ok(Val::Vector(ss))
            }
            "clamp" | "clamp_min" | "clamp_max" => {
                let mut ss = self.vector_arg(g, &c.args[0])?;
                let (lo, hi) = match name {
                    "clamp" => (
                        self.scalar_arg(g, &c.args[1])?,
                        self.scalar_arg(g, &c.args[2])?,
                    ),
                    "clamp_min" => (self.scalar_arg(g, &c.args[1])?, vec![f64::INFINITY; n]),
                    _ => (vec![f64::NEG_INFINITY; n], self.scalar_arg(g, &c.args[1])?),
                };
                for s in &mut ss {
                    s.drop_name = true;
                    for (i, x) in s.vals.iter_mut().enumerate() {
                        if is_absent(*x) {
                            continue;
                        }
                        *x = if hi[i] < lo[i] {
                            absent()
                        } else {
                            lo[i].max(hi[i].min(*x))
                        };
                    }
                }
                ss.retain(|s| s.vals.iter().any(|v| !is_absent(*v)));
                Ok(Val::Vector(ss))
            }
            "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
            | "histogram_stdvar" => {
                // Native-histogram functions: float samples yield nothing.
                let _ = self.vector_arg(g, &c.args[0])?;
                Ok(Val::Vector(Vec::new()))
            }
            other => Err(Error::NotSupported {
                what: format!("function {other}()"),
            }),
        }
    }

    /// Applies a range-vector function over the grid, sliding each series'
    /// window from step to step.
    fn range_function(&mut self, g: Grid, c: &Call, mi: usize) -> Result<Val> {
        let mut out: Vec<Series> = Vec::new();
        let absent = self.range_function_each(g, c, mi, &mut |s| {
            out.push(s);
            Ok(())
        })?;
        Ok(Val::Vector(match absent {
            Some(s) => s,
            None => out,
        }))
    }

    /// Whether `e` is a call of a range-vector function whose series can be
    /// streamed one by one (all but `absent_over_time`, which needs them all).
    pub(crate) fn streamable_range_call(e: &Expr) -> Option<(&Call, usize)> {
        let Expr::Call(c) = e.unparen() else {
            return None;
        };
        if c.func.name == "absent_over_time" || RangeFn::from_name(c.func.name).is_none() {
            return None;
        }
        let mi = c
            .args
            .iter()
            .position(|a| matches!(a.unparen(), Expr::MatrixSelector(_) | Expr::Subquery(_)))?;
        Some((c, mi))
    }

    /// Evaluates a range-vector function and hands each output series to
    /// `sink` as soon as it is computed, so that an aggregation above can
    /// fold it without the whole result being held. For
    /// `absent_over_time`, returns its result instead.
    pub(crate) fn range_function_each(
        &mut self,
        g: Grid,
        c: &Call,
        mi: usize,
        sink: &mut dyn FnMut(Series) -> Result<()>,
    ) -> Result<Option<Vec<Series>>> {
        let name = c.func.name;
        let n = g.len();
        // Scalar parameters, evaluated before the range argument.
        let mut params: Vec<Vec<f64>> = Vec::new();
        for (i, a) in c.args.iter().enumerate() {
            if i != mi {
                params.push(self.scalar_arg(g, a)?);
            }
        }
        let Some(func) = RangeFn::from_name(name) else {
            return Err(Error::NotSupported {
                what: format!("function {name}()"),
            });
        };
        let src = self.matrix_source(g, &c.args[mi])?;
        let keep_name = matches!(name, "last_over_time" | "first_over_time");
        let counter_check = matches!(name, "rate" | "increase");
        let absent_fn = func == RangeFn::AbsentOverTime;
        let ctx = RangeCtx {
            // absent_over_time needs to know where any series has a value.
            func: if absent_fn {
                RangeFn::PresentOverTime
            } else {
                func
            },
            g,
            range_ms: src.range_ms,
            offset_ms: src.offset_ms,
            at: src.at,
            params: &params,
        };
        let mut present_any = vec![false; n];
        let mut emitted = 0usize;
        let ticker = self.ticker();
        let (threads, batch) = (self.threads, Self::batch_len(n));
        let mut emit = |ev: &mut Self,
                        labels: Labels,
                        drop_name: bool,
                        read: usize,
                        out: RangeOut| {
            ev.stats.samples_read += read;
            ev.stats.series_read += 1;
            ev.hold((emitted + 1) * n + read)?;
            for q in out.bad_quantiles {
                ev.annotations.warn(
                    format!(
                        "quantile value should be between 0 and 1, got {}",
                        super::annotations::go_g(q)
                    ),
                    c.args[0].span(),
                );
            }
            let Some(vals) = out.vals else {
                return Ok(());
            };
            if absent_fn {
                for (p, v) in present_any.iter_mut().zip(&vals) {
                    *p |= !is_absent(*v);
                }
                return Ok(());
            }
            if counter_check
                && let Some(mn) = labels.metric_name()
                && !["_total", "_sum", "_count", "_bucket"]
                    .iter()
                    .any(|sfx| mn.ends_with(sfx))
            {
                ev.annotations.info(
                    format!(
                        "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {mn:?}"
                    ),
                    c.args[mi].span(),
                );
            }
            emitted += 1;
            sink(Series {
                labels,
                vals,
                drop_name: !keep_name || drop_name,
            })
        };
        match src.series {
            MatrixSeries::Stored {
                mut series,
                mint,
                maxt,
            } => {
                let mut labels = take_labels(&mut series);
                parallel::map_ordered(
                    &series,
                    threads,
                    batch,
                    &ticker,
                    |_, s, sc: &mut RangeScratch, t| {
                        t.tick()?;
                        sc.samples.clear();
                        s.try_read_samples(mint, maxt, &mut sc.samples)?;
                        let read = sc.samples.len();
                        sc.samples.retain(|p| !is_stale_nan(p.v));
                        Ok((read, range_values(&ctx, &sc.samples, &mut sc.drops, t)?))
                    },
                    |i, (read, out)| {
                        let l = std::mem::replace(&mut labels[i], Labels::empty());
                        emit(self, l, false, read, out)
                    },
                )?;
            }
            MatrixSeries::Decoded(mut series) => {
                let meta: Vec<(Labels, bool)> = series
                    .iter_mut()
                    .map(|s| {
                        (
                            std::mem::replace(&mut s.labels, Labels::empty()),
                            s.drop_name,
                        )
                    })
                    .collect();
                let mut meta = meta.into_iter();
                parallel::map_ordered(
                    &series,
                    threads,
                    batch,
                    &ticker,
                    |_, s, sc: &mut RangeScratch, t| {
                        t.tick()?;
                        range_values(&ctx, &s.samples, &mut sc.drops, t)
                    },
                    |_, out| {
                        let (l, drop_name) = meta
                            .next()
                            .ok_or_else(|| Error::internal("range result without its series"))?;
                        emit(self, l, drop_name, 0, out)
                    },
                )?;
            }
        }
        if absent_fn {
            if present_any.iter().all(|p| *p) {
                return Ok(Some(Vec::new()));
            }
            let vals = present_any
                .iter()
                .map(|p| if *p { absent() } else { 1.0 })
                .collect();
            return Ok(Some(vec![Series {
                labels: absent_labels(&c.args[mi]),
                vals,
                drop_name: true,
            }]));
        }
        Ok(None)
    }

    fn label_replace(&mut self, g: Grid, c: &Call) -> Result<Val> {
        let dst = Self::string_arg(&c.args[1])?;
        let repl = Self::string_arg(&c.args[2])?;
        let src = Self::string_arg(&c.args[3])?;
        let re_str = Self::string_arg(&c.args[4])?;
        let re = label_fns::compile_anchored(&re_str).map_err(|_| {
            Error::exec(format!(
                "invalid regular expression in label_replace(): {re_str}"
            ))
        })?;
        if !label_fns::is_valid_label_name(&dst) {
            return Err(Error::exec(format!(
                "invalid destination label name in label_replace(): {dst}"
            )));
        }
        let mut ss = self.vector_arg(g, &c.args[0])?;
        for s in &mut ss {
            if let Some(l) = label_fns::replace(&s.labels, &dst, &repl, &src, &re) {
                s.labels = l;
                if dst == "__name__" {
                    s.drop_name = false;
                }
            }
        }
        Ok(Val::Vector(merge_columns(ss)?))
    }

    fn label_join(&mut self, g: Grid, c: &Call) -> Result<Val> {
        let dst = Self::string_arg(&c.args[1])?;
        let sep = Self::string_arg(&c.args[2])?;
        let mut srcs = Vec::new();
        for a in &c.args[3..] {
            let s = Self::string_arg(a)?;
            if !label_fns::is_valid_label_name(&s) {
                return Err(Error::exec(format!(
                    "invalid source label name in label_join(): {s}"
                )));
            }
            srcs.push(s);
        }
        if !label_fns::is_valid_label_name(&dst) {
            return Err(Error::exec(format!(
                "invalid destination label name in label_join(): {dst}"
            )));
        }
        let mut ss = self.vector_arg(g, &c.args[0])?;
        for s in &mut ss {
            s.labels = label_fns::join(&s.labels, &dst, &sep, &srcs);
            if dst == "__name__" {
                s.drop_name = false;
            }
        }
        Ok(Val::Vector(merge_columns(ss)?))
    }

    fn sort(&mut self, g: Grid, c: &Call) -> Result<Val> {
        let mut ss = self.vector_arg(g, &c.args[0])?;
        if !g.is_instant() {
            return Ok(Val::Vector(ss));
        }
        ss.retain(|s| !is_absent(s.vals[0]));
        match c.func.name {
            "sort" => ss.sort_by(|a, b| sort::sort_order(a.vals[0], b.vals[0], false)),
            "sort_desc" => ss.sort_by(|a, b| sort::sort_order(a.vals[0], b.vals[0], true)),
            name => {
                let mut keys = Vec::new();
                for a in &c.args[1..] {
                    keys.push(Self::string_arg(a)?);
                }
                let desc = name == "sort_by_label_desc";
                ss.sort_by(|a, b| {
                    for k in &keys {
                        let (x, y) = (a.labels.get(k).unwrap_or(""), b.labels.get(k).unwrap_or(""));
                        if x == y {
                            continue;
                        }
                        let o = sort::natural_cmp(x, y);
                        return if desc { o.reverse() } else { o };
                    }
                    let o = a.labels.cmp(&b.labels);
                    if desc { o.reverse() } else { o }
                });
            }
        }
        Ok(Val::Vector(ss))
    }

    /// Groups a vector's series into classic histograms by their labels
    /// without `le`; returns the groups (output labels, member series with
    /// their upper bounds). Series with a bad `le` are reported and skipped.
    fn bucket_groups(&mut self, ss: &[Series], arg_span: Span) -> Vec<BucketGroup> {
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut groups: Vec<BucketGroup> = Vec::new();
        for (si, s) in ss.iter().enumerate() {
            let le = s.labels.get("le").unwrap_or("");
            let Some(ub) = crate::promqltest::notation::parse_number(le) else {
                let mut msg =
                    format!("bucket label \"le\" is missing or has a malformed value of {le:?}");
                if let Some(mn) = s.labels.metric_name() {
                    msg.push_str(&format!(" for metric name {mn:?}"));
                }
                self.annotations.warn(msg, arg_span);
                continue;
            };
            let mut b = s.labels.builder();
            b.del("le");
            let key = b.build();
            let gi = *index.entry(key.clone()).or_insert_with(|| {
                groups.push((key, false, Vec::new()));
                groups.len() - 1
            });
            groups[gi].1 |= s.drop_name;
            groups[gi].2.push((si, ub));
        }
        groups
    }

    fn histogram_quantile(&mut self, g: Grid, c: &Call) -> Result<Val> {
        let q = self.scalar_arg(g, &c.args[0])?;
        let ss = self.vector_arg(g, &c.args[1])?;
        self.classic_quantiles(g, &ss, c.args[1].span(), vec![(q, c.args[0].span())], None)
    }

    /// `histogram_quantiles(v, "label", q0, q1, ...)`: one output series
    /// per histogram and quantile, told apart by `label`.
    fn histogram_quantiles(&mut self, g: Grid, c: &Call) -> Result<Val> {
        let ss = self.vector_arg(g, &c.args[0])?;
        let label = Self::string_arg(&c.args[1])?;
        let mut qs = Vec::new();
        for a in &c.args[2..] {
            qs.push((self.scalar_arg(g, a)?, a.span()));
        }
        self.classic_quantiles(g, &ss, c.args[0].span(), qs, Some(label))
    }

    fn classic_quantiles(
        &mut self,
        g: Grid,
        ss: &[Series],
        arg_span: Span,
        qs: Vec<(Vec<f64>, Span)>,
        label: Option<String>,
    ) -> Result<Val> {
        let n = g.len();
        for (q, span) in &qs {
            if let Some(bad) = q
                .iter()
                .copied()
                .find(|q| q.is_nan() || !(0.0..=1.0).contains(q))
            {
                self.annotations.warn(
                    format!(
                        "quantile value should be between 0 and 1, got {}",
                        super::annotations::go_g(bad)
                    ),
                    *span,
                );
            }
        }
        let mut groups = self.bucket_groups(ss, arg_span);
        // Members in bucket order once per group, so that each step's
        // (stable) sort of its buckets finds them sorted: the same order,
        // without sorting `le` strings' order ("10" < "100" < "25") into
        // numbers at every step. Not with a NaN bound, where the order
        // is not total and depends on the input's.
        for (_, _, members) in &mut groups {
            if !members.iter().any(|(_, ub)| ub.is_nan()) {
                members.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
            }
        }
        let mut out: Vec<Series> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        // Reused for every group and step: a step's buckets, and the copy
        // one quantile sorts and coalesces.
        let mut buckets: Vec<histogram::Bucket> = Vec::new();
        let mut work: Vec<histogram::Bucket> = Vec::new();
        for (labels, _drop, members) in &groups {
            self.tick()?;
            // Without a quantile label the output series is the group's
            // own: found or added once, when its first value comes, not
            // at every step.
            let mut fixed_idx: Option<usize> = None;
            for i in 0..n {
                buckets.clear();
                buckets.extend(
                    members
                        .iter()
                        .filter(|(si, _)| !is_absent(ss[*si].vals[i]))
                        .map(|&(si, ub)| histogram::Bucket {
                            upper_bound: ub,
                            count: ss[si].vals[i],
                        }),
                );
                if buckets.is_empty() {
                    continue;
                }
                for (q, _) in &qs {
                    work.clear();
                    work.extend_from_slice(&buckets);
                    let (v, fix) = histogram::bucket_quantile(q[i], &mut work);
                    if fix.forced {
                        self.annotations.monotonicity(
                            labels.metric_name().unwrap_or(""),
                            arg_span,
                            g.ts(i),
                            fix.min_bucket,
                            fix.max_bucket,
                            fix.max_diff,
                        );
                    }
                    let idx = match (&label, fixed_idx) {
                        (None, Some(idx)) => idx,
                        _ => {
                            let out_labels = match &label {
                                Some(l) => {
                                    let mut b = labels.builder();
                                    b.set(l.clone(), open_metrics_float(q[i]));
                                    b.build()
                                }
                                None => labels.clone(),
                            };
                            let idx = match index.get(&out_labels) {
                                Some(&x) => x,
                                None => {
                                    index.insert(out_labels.clone(), out.len());
                                    out.push(Series {
                                        labels: out_labels,
                                        vals: vec![absent(); n],
                                        drop_name: true,
                                    });
                                    out.len() - 1
                                }
                            };
                            if label.is_none() {
                                fixed_idx = Some(idx);
                            }
                            idx
                        }
                    };
                    if !is_absent(out[idx].vals[i]) {
                        return Err(Error::exec(
                            "vector cannot contain metrics with the same labelset",
                        ));
                    }
                    out[idx].vals[i] = v;
                }
            }
        }
        Ok(Val::Vector(out))
    }

    fn histogram_fraction(&mut self, g: Grid, c: &Call) -> Result<Val> {
        let n = g.len();
        let lower = self.scalar_arg(g, &c.args[0])?;
        let upper = self.scalar_arg(g, &c.args[1])?;
        let ss = self.vector_arg(g, &c.args[2])?;
        let groups = self.bucket_groups(&ss, c.args[2].span());
        let mut out = Vec::with_capacity(groups.len());
        for (labels, _drop, members) in groups {
            let mut vals = vec![absent(); n];
            let mut any = false;
            for (i, slot) in vals.iter_mut().enumerate() {
                let buckets: Vec<histogram::Bucket> = members
                    .iter()
                    .filter(|(si, _)| !is_absent(ss[*si].vals[i]))
                    .map(|&(si, ub)| histogram::Bucket {
                        upper_bound: ub,
                        count: ss[si].vals[i],
                    })
                    .collect();
                if buckets.is_empty() {
                    continue;
                }
                *slot = histogram::bucket_fraction(lower[i], upper[i], buckets);
                any = true;
            }
            if any {
                out.push(Series {
                    labels,
                    vals,
                    drop_name: true,
                });
            }
        }
        Ok(Val::Vector(out))
    }
}

/// A range function applied to one series, shared by the query's threads.
struct RangeCtx<'a> {
    func: RangeFn,
    g: Grid,
    range_ms: i64,
    offset_ms: i64,
    at: Option<i64>,
    /// Scalar parameters per step, in argument order.
    params: &'a [Vec<f64>],
}

/// One worker's reused buffers.
#[derive(Default)]
struct RangeScratch {
    samples: Vec<Sample>,
    drops: rate::Drops,
}

/// A range function's values for one series.
struct RangeOut {
    /// The value at each step; `None` when no step has one.
    vals: Option<Vec<f64>>,
    /// Out-of-range `quantile_over_time` parameters met (for warnings).
    bad_quantiles: Vec<f64>,
}

/// Computes a range function over one series' samples (time-ordered, no
/// staleness markers) at every step of the grid.
fn range_values(
    ctx: &RangeCtx,
    samples: &[Sample],
    drops: &mut rate::Drops,
    t: &mut Ticker,
) -> Result<RangeOut> {
    let mut bad_quantiles = Vec::new();
    let func = ctx.func;
    let vals = match func {
        // The dashboards' functions get a loop of their own, without the
        // per-step dispatch over every function below.
        RangeFn::Rate | RangeFn::Increase => {
            // A window adds exactly its own counter drops, in order,
            // without a pass over its samples (a window of an hour holds
            // 240 of them).
            drops.rebuild(samples);
            let is_rate = func == RangeFn::Rate;
            each_window(ctx, samples, t, |_, lo, hi, win| {
                Ok(rate::counter_rate(
                    &samples[lo..hi],
                    drops.in_window(samples, lo, hi),
                    win,
                    is_rate,
                ))
            })?
        }
        _ => each_window(ctx, samples, t, |i, lo, hi, win| {
            let w = &samples[lo..hi];
            Ok(match func {
                RangeFn::Rate | RangeFn::Increase => None,
                RangeFn::Delta => rate::extrapolated_rate(w, win, rate::Kind::Gauge, false),
                RangeFn::Irate => rate::instant_value(w, true),
                RangeFn::Idelta => rate::instant_value(w, false),
                RangeFn::Deriv => rate::deriv(w),
                RangeFn::PredictLinear => rate::predict_linear(w, ctx.g.ts(i), ctx.params[0][i]),
                RangeFn::Resets => rate::resets(w),
                RangeFn::Changes => rate::changes(w),
                RangeFn::AvgOverTime => over_time::avg(w),
                RangeFn::SumOverTime => over_time::sum(w),
                RangeFn::CountOverTime => over_time::count(w),
                RangeFn::MinOverTime => over_time::min(w),
                RangeFn::MaxOverTime => over_time::max(w),
                RangeFn::LastOverTime => over_time::last(w),
                RangeFn::FirstOverTime => over_time::first(w),
                RangeFn::TsOfMaxOverTime => over_time::ts_of_max(w),
                RangeFn::TsOfMinOverTime => over_time::ts_of_min(w),
                RangeFn::TsOfLastOverTime => over_time::ts_of_last(w),
                RangeFn::TsOfFirstOverTime => over_time::ts_of_first(w),
                RangeFn::PresentOverTime => over_time::present(w),
                RangeFn::AbsentOverTime => None,
                RangeFn::StddevOverTime => over_time::stddev(w),
                RangeFn::StdvarOverTime => over_time::variance(w),
                RangeFn::MadOverTime => over_time::mad(w),
                RangeFn::QuantileOverTime => {
                    let q = ctx.params[0][i];
                    if q.is_nan() || !(0.0..=1.0).contains(&q) {
                        bad_quantiles.push(q);
                    }
                    over_time::quantile_over(w, q)
                }
                RangeFn::DoubleExponentialSmoothing => {
                    let (sf, tf) = (ctx.params[0][i], ctx.params[1][i]);
                    if !(sf > 0.0 && sf < 1.0) {
                        return Err(Error::exec(format!(
                            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                        )));
                    }
                    if !(tf > 0.0 && tf < 1.0) {
                        return Err(Error::exec(format!(
                            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                        )));
                    }
                    over_time::double_exponential_smoothing(w, sf, tf)
                }
            })
        })?,
    };
    Ok(RangeOut {
        vals,
        bad_quantiles,
    })
}

/// Runs `f` at every step of the grid whose window (`(t - range, t]`,
/// offset and `@` applied) holds samples, with the step's index, the
/// window's bounds in `samples` and the window; the steps' values, or
/// None when no step has one.
#[inline(always)]
fn each_window(
    ctx: &RangeCtx,
    samples: &[Sample],
    t: &mut Ticker,
    mut f: impl FnMut(usize, usize, usize, rate::Window) -> Result<Option<f64>>,
) -> Result<Option<Vec<f64>>> {
    let n = ctx.g.len();
    let mut vals = vec![absent(); n];
    let mut any = false;
    let (mut lo, mut hi) = (0usize, 0usize);
    for (i, slot) in vals.iter_mut().enumerate() {
        // Per step, not only per series: one series over a long grid with
        // wide windows is seconds of work, and a cancelled or timed-out
        // query must stop within it.
        t.tick()?;
        let eval_t = ctx.at.unwrap_or_else(|| ctx.g.ts(i));
        let end = eval_t - ctx.offset_ms;
        let start = end - ctx.range_ms;
        if ctx.at.is_none() || i == 0 {
            while hi < samples.len() && samples[hi].t <= end {
                hi += 1;
            }
            while lo < hi && samples[lo].t <= start {
                lo += 1;
            }
        }
        if lo == hi {
            continue;
        }
        let win = rate::Window {
            start,
            end,
            range_ms: ctx.range_ms,
            eval_t: ctx.g.ts(i),
        };
        if let Some(v) = f(i, lo, hi, win)? {
            *slot = v;
            any = true;
        }
    }
    Ok(any.then_some(vals))
}

/// The range-vector functions, resolved from the name once per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeFn {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    Deriv,
    PredictLinear,
    Resets,
    Changes,
    AvgOverTime,
    SumOverTime,
    CountOverTime,
    MinOverTime,
    MaxOverTime,
    LastOverTime,
    FirstOverTime,
    TsOfMaxOverTime,
    TsOfMinOverTime,
    TsOfLastOverTime,
    TsOfFirstOverTime,
    PresentOverTime,
    AbsentOverTime,
    StddevOverTime,
    StdvarOverTime,
    MadOverTime,
    QuantileOverTime,
    DoubleExponentialSmoothing,
}

impl RangeFn {
    fn from_name(name: &str) -> Option<RangeFn> {
        Some(match name {
            "rate" => RangeFn::Rate,
            "increase" => RangeFn::Increase,
            "delta" => RangeFn::Delta,
            "irate" => RangeFn::Irate,
            "idelta" => RangeFn::Idelta,
            "deriv" => RangeFn::Deriv,
            "predict_linear" => RangeFn::PredictLinear,
            "resets" => RangeFn::Resets,
            "changes" => RangeFn::Changes,
            "avg_over_time" => RangeFn::AvgOverTime,
            "sum_over_time" => RangeFn::SumOverTime,
            "count_over_time" => RangeFn::CountOverTime,
            "min_over_time" => RangeFn::MinOverTime,
            "max_over_time" => RangeFn::MaxOverTime,
            "last_over_time" => RangeFn::LastOverTime,
            "first_over_time" => RangeFn::FirstOverTime,
            "ts_of_max_over_time" => RangeFn::TsOfMaxOverTime,
            "ts_of_min_over_time" => RangeFn::TsOfMinOverTime,
            "ts_of_last_over_time" => RangeFn::TsOfLastOverTime,
            "ts_of_first_over_time" => RangeFn::TsOfFirstOverTime,
            "present_over_time" => RangeFn::PresentOverTime,
            "absent_over_time" => RangeFn::AbsentOverTime,
            "stddev_over_time" => RangeFn::StddevOverTime,
            "stdvar_over_time" => RangeFn::StdvarOverTime,
            "mad_over_time" => RangeFn::MadOverTime,
            "quantile_over_time" => RangeFn::QuantileOverTime,
            "double_exponential_smoothing" => RangeFn::DoubleExponentialSmoothing,
            _ => return None,
        })
    }
}

/// A quantile as OpenMetrics writes it (`0.0`, `1.0`, `0.25`, `NaN`).
fn open_metrics_float(q: f64) -> String {
    let s = super::annotations::go_g(q);
    if q.is_finite() && q == q.floor() && !s.contains(['e', '.']) {
        format!("{s}.0")
    } else {
        s
    }
}

/// Go's `math.Min`: NaN if either is NaN.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Go's `math.Max`: NaN if either is NaN.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Moves the labels out of selected series (so results own them without a
/// copy while the samples are decoded on worker threads).
fn take_labels(series: &mut [cairn_engine::Series]) -> Vec<Labels> {
    series
        .iter_mut()
        .map(|s| std::mem::replace(&mut s.labels, Labels::empty()))
        .collect()
}

/// An instant selector's value at each reference time in `refs`
/// (ascending): the latest sample at or before it and newer than the
/// lookback, unless that is a staleness marker; the sample's time in
/// seconds with `timestamps`. `None` when no step has a value.
fn instant_values(
    samples: &[Sample],
    refs: &[i64],
    lookback_ms: i64,
    timestamps: bool,
) -> Option<Vec<f64>> {
    let mut vals = vec![absent(); refs.len()];
    let mut any = false;
    let mut hi = 0;
    for (slot, &r) in vals.iter_mut().zip(refs) {
        while hi < samples.len() && samples[hi].t <= r {
            hi += 1;
        }
        if hi == 0 {
            continue;
        }
        let s = samples[hi - 1];
        if s.t <= r - lookback_ms || is_stale_nan(s.v) {
            continue;
        }
        *slot = if timestamps { s.t as f64 / 1000.0 } else { s.v };
        any = true;
    }
    any.then_some(vals)
}

/// Applies `f` to every present value and marks the series for name removal.
fn map_values(ss: &mut [Series], f: fn(f64) -> f64) {
    for s in ss {
        s.drop_name = true;
        for x in &mut s.vals {
            if !is_absent(*x) {
                *x = f(*x);
            }
        }
    }
}

/// Merges series whose label sets became equal (after `label_replace` and
/// friends): allowed where their steps do not overlap, an error where they do.
pub(crate) fn merge_columns(ss: Vec<Series>) -> Result<Vec<Series>> {
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(ss.len());
    let mut out: Vec<Series> = Vec::with_capacity(ss.len());
    for s in ss {
        match index.get(&s.labels) {
            Some(&i) => {
                let dst = &mut out[i];
                for (d, v) in dst.vals.iter_mut().zip(&s.vals) {
                    if is_absent(*v) {
                        continue;
                    }
                    if !is_absent(*d) {
                        return Err(Error::exec(
                            "vector cannot contain metrics with the same labelset",
                        ));
                    }
                    *d = *v;
                }
            }
            None => {
                index.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// The labels `absent` and `absent_over_time` give their result: those
/// fixed by equality matchers (other than the metric name) of a selector
/// argument, unless a name is matched more than once.
fn absent_labels(e: &Expr) -> Labels {
    let matchers = match e.unparen() {
        Expr::VectorSelector(vs) => &vs.matchers,
        Expr::MatrixSelector(ms) => &ms.vector.matchers,
        _ => return Labels::empty(),
    };
    let mut b = Labels::empty().builder();
    let mut has: Vec<&str> = Vec::new();
    for m in matchers {
        if m.name == "__name__" {
            continue;
        }
        if m.op == MatchOp::Equal && !has.contains(&m.name.as_str()) {
            b.set(m.name.clone(), m.value.clone());
            has.push(&m.name);
        } else {
            b.del(&m.name);
        }
    }
    b.build()
}
