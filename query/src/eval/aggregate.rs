//! Aggregations (`sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`,
//! `stdvar`, `quantile`, `topk`, `bottomk`, `limitk`, `limit_ratio`,
//! `count_values`) with `by` and `without`.
//!
//! Each input series is mapped to its group once; the steps are then
//! aggregated column by column into per-group accumulators, so label sets
//! are neither rebuilt nor cloned per step.

use std::collections::HashMap;

use cairn_engine::Labels;

use super::evaluator::Evaluator;
use super::functions::{kahan_inc, quantile, sort};
use super::{Grid, Series, Val, absent, is_absent};
use crate::ast::{AggregateExpr, AggregateOp, Expr};
use crate::error::{Error, Result};

/// The labels of the group a series belongs to.
fn group_labels(l: &Labels, grouping: &[String], without: bool) -> Labels {
    let mut b = l.builder();
    if without {
        b.del("__name__");
        for n in grouping {
            b.del(n);
        }
    } else {
        b.keep(grouping);
    }
    b.build()
}

pub(crate) fn eval(ev: &mut Evaluator<'_>, g: Grid, a: &AggregateExpr) -> Result<Val> {
    let n = g.len();
    if a.op == AggregateOp::CountValues {
        return count_values(ev, g, a);
    }
    let param = match &a.param {
        Some(p) => Some(ev.scalar_arg(g, p)?),
        None => None,
    };
    if matches!(
        a.op,
        AggregateOp::Sum
            | AggregateOp::Avg
            | AggregateOp::Count
            | AggregateOp::Min
            | AggregateOp::Max
            | AggregateOp::Group
            | AggregateOp::Stddev
            | AggregateOp::Stdvar
    ) {
        if let Some((c, mi)) = Evaluator::streamable_range_call(&a.expr) {
            return fold_streaming(ev, g, a, Stream::Range(c, mi));
        }
        if let Expr::VectorSelector(vs) = a.expr.unparen() {
            return fold_streaming(ev, g, a, Stream::Selector(vs));
        }
    }
    let input = ev.vector_arg(g, &a.expr)?;
    // Map every series to its group.
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<Labels> = Vec::new();
    let mut group_of = Vec::with_capacity(input.len());
    for s in &input {
        let key = group_labels(&s.labels, &a.grouping, a.without);
        let gi = match index.get(&key) {
            Some(&gi) => gi,
            None => {
                index.insert(key.clone(), groups.len());
                groups.push(key);
                groups.len() - 1
            }
        };
        group_of.push(gi);
    }
    match a.op {
        AggregateOp::Topk
        | AggregateOp::Bottomk
        | AggregateOp::Limitk
        | AggregateOp::LimitRatio => {
            let p = param.unwrap_or_else(|| vec![f64::NAN; n]);
            select_k(ev, g, a, input, &group_of, groups.len(), &p)
        }
        _ => {
            if a.op == AggregateOp::Quantile
                && let Some(p) = &param
            {
                let mut warn = |q: f64| {
                    ev.annotations.warn(
                        format!(
                            "quantile value should be between 0 and 1, got {}",
                            super::annotations::go_g(q)
                        ),
                        a.param.as_ref().map(|p| p.span()).unwrap_or(a.span),
                    )
                };
                if p.iter().any(|q| q.is_nan()) {
                    warn(f64::NAN);
                }
                let max = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let min = p.iter().copied().fold(f64::INFINITY, f64::min);
                if max > 1.0 {
                    warn(max);
                }
                if min < 0.0 {
                    warn(min);
                }
            }
            fold(ev, g, a, &input, &group_of, groups, param.as_deref())
        }
    }
}

/// The running state of one group at one step.
#[derive(Clone, Copy, Default)]
struct Acc {
    seen: bool,
    incremental: bool,
    value: f64,
    comp: f64,
    mean: f64,
    count: f64,
}

impl Acc {
    /// Folds one sample in, exactly as Prometheus does (Kahan sums, an
    /// incremental mean once a sum overflows, Welford for variance).
    #[inline]
    fn add(&mut self, op: AggregateOp, f: f64) {
        if !self.seen {
            *self = Acc {
                seen: true,
                incremental: false,
                value: f,
                comp: 0.0,
                mean: f,
                count: 1.0,
            };
            match op {
                AggregateOp::Stddev | AggregateOp::Stdvar => {
                    self.value = if f.is_nan() || f.is_infinite() {
                        f64::NAN
                    } else {
                        0.0
                    };
                }
                AggregateOp::Group => self.value = 1.0,
                _ => {}
            }
            return;
        }
        match op {
            AggregateOp::Sum => (self.value, self.comp) = kahan_inc(f, self.value, self.comp),
            AggregateOp::Avg => {
                self.count += 1.0;
                if !self.incremental {
                    let (nv, nc) = kahan_inc(f, self.value, self.comp);
                    if !nv.is_infinite() {
                        self.value = nv;
                        self.comp = nc;
                        return;
                    }
                    self.incremental = true;
                    self.mean = self.value / (self.count - 1.0);
                    self.comp /= self.count - 1.0;
                }
                let q = (self.count - 1.0) / self.count;
                (self.mean, self.comp) = kahan_inc(f / self.count, q * self.mean, q * self.comp);
            }
            AggregateOp::Max if (self.value < f || self.value.is_nan()) => {
                self.value = f;
            }
            AggregateOp::Min if (self.value > f || self.value.is_nan()) => {
                self.value = f;
            }
            AggregateOp::Count => self.count += 1.0,
            AggregateOp::Stddev | AggregateOp::Stdvar => {
                self.count += 1.0;
                let delta = f - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (f - self.mean);
            }
            _ => {}
        }
    }

    fn result(&self, op: AggregateOp) -> f64 {
        match op {
            AggregateOp::Sum => {
                if self.value.is_infinite() {
                    self.value
                } else {
                    self.value + self.comp
                }
            }
            AggregateOp::Avg => {
                if self.incremental {
                    self.mean + self.comp
                } else {
                    self.value / self.count + self.comp / self.count
                }
            }
            AggregateOp::Count => self.count,
            AggregateOp::Stdvar => self.value / self.count,
            AggregateOp::Stddev => (self.value / self.count).sqrt(),
            _ => self.value,
        }
    }
}

/// Accumulator cells kept hot at once: steps are processed in blocks so
/// that the input is read series by series (sequentially) while the
/// groups' cells for the block stay in cache.
const CELLS_PER_BLOCK: usize = 1 << 15;

fn fold(
    ev: &mut Evaluator<'_>,
    g: Grid,
    a: &AggregateExpr,
    input: &[Series],
    group_of: &[usize],
    groups: Vec<Labels>,
    param: Option<&[f64]>,
) -> Result<Val> {
    let n = g.len();
    let op = a.op;
    let ngroups = groups.len();
    ev.hold(ngroups * n)?;
    let mut out: Vec<Series> = groups
        .into_iter()
        .map(|labels| Series {
            labels,
            vals: vec![absent(); n],
            drop_name: false,
        })
        .collect();
    for (s, &gi) in input.iter().zip(group_of) {
        if s.drop_name {
            out[gi].drop_name = true;
        }
    }
    if op == AggregateOp::Quantile {
        let mut values: Vec<Vec<f64>> = vec![Vec::new(); ngroups];
        for step in 0..n {
            ev.tick()?;
            values.iter_mut().for_each(Vec::clear);
            for (s, &gi) in input.iter().zip(group_of) {
                let f = s.vals[step];
                if !is_absent(f) {
                    values[gi].push(f);
                }
            }
            let q = param.map_or(f64::NAN, |p| p[step]);
            for (gi, v) in values.iter_mut().enumerate() {
                if !v.is_empty() {
                    out[gi].vals[step] = quantile(q, v);
                }
            }
        }
    } else {
        let block = (CELLS_PER_BLOCK / ngroups.max(1)).clamp(1, n.max(1));
        let mut accs = vec![Acc::default(); ngroups * block];
        let mut b0 = 0;
        while b0 < n {
            ev.check()?;
            let b1 = (b0 + block).min(n);
            let width = b1 - b0;
            accs.iter_mut().for_each(|a| a.seen = false);
            for (s, &gi) in input.iter().zip(group_of) {
                let row = &mut accs[gi * block..gi * block + width];
                for (acc, &f) in row.iter_mut().zip(&s.vals[b0..b1]) {
                    if !is_absent(f) {
                        acc.add(op, f);
                    }
                }
            }
            for (gi, o) in out.iter_mut().enumerate() {
                for (k, acc) in accs[gi * block..gi * block + width].iter().enumerate() {
                    if acc.seen {
                        o.vals[b0 + k] = acc.result(op);
                    }
                }
            }
            b0 = b1;
        }
    }
    out.retain(|s| s.vals.iter().any(|v| !is_absent(*v)));
    Ok(Val::Vector(out))
}

/// An aggregation's argument whose series can be produced one by one.
enum Stream<'e> {
    /// A range-vector function call and the index of its range argument.
    Range(&'e crate::ast::Call, usize),
    /// A plain selector (`count by (job) ({__name__=~".+"})`).
    Selector(&'e crate::ast::VectorSelector),
}

/// Aggregates a range-vector function's or a selector's series as they are
/// produced (`sum by (model) (rate(x[5m]))`): each series' column is folded
/// into its group's per-step accumulators and dropped, so the argument's
/// full result is never held. Samples are added in the same order as the
/// unfused path.
fn fold_streaming(
    ev: &mut Evaluator<'_>,
    g: Grid,
    a: &AggregateExpr,
    src: Stream<'_>,
) -> Result<Val> {
    let n = g.len();
    let op = a.op;
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<Series> = Vec::new();
    let mut accs: Vec<Acc> = Vec::new();
    // `sum`, the dashboards' aggregation, keeps 16 bytes a cell instead of
    // an `Acc`'s 40: the running sum in the group's output column (absent
    // until a value arrives) and the Kahan compensation beside it. A
    // hundred groups over a 6 h grid are then a few MB of accumulators
    // instead of 14, and each series' fold streams less of them.
    let sum = op == AggregateOp::Sum;
    let mut comps: Vec<f64> = Vec::new();
    // An accumulator cell is five times a step value: count it so towards
    // the sample limit.
    let max_cells = ev.max_samples / 5;
    let mut sink = |s: Series| -> Result<()> {
        let key = group_labels(&s.labels, &a.grouping, a.without);
        let gi = match index.get(&key) {
            Some(&gi) => gi,
            None => {
                if (out.len() + 1) * n > max_cells {
                    return Err(Error::TooManySamples {
                        phase: "query execution",
                    });
                }
                index.insert(key.clone(), out.len());
                out.push(Series {
                    labels: key,
                    vals: vec![absent(); n],
                    drop_name: false,
                });
                if sum {
                    comps.resize(comps.len() + n, 0.0);
                } else {
                    accs.resize(accs.len() + n, Acc::default());
                }
                out.len() - 1
            }
        };
        if s.drop_name {
            out[gi].drop_name = true;
        }
        if sum {
            // The same steps as `Acc::add` and `Acc::result` for `sum`.
            let cells = out[gi]
                .vals
                .iter_mut()
                .zip(&mut comps[gi * n..(gi + 1) * n]);
            for ((value, comp), &f) in cells.zip(&s.vals) {
                if is_absent(f) {
                    continue;
                }
                if is_absent(*value) {
                    *value = f;
                } else {
                    (*value, *comp) = kahan_inc(f, *value, *comp);
                }
            }
        } else {
            let cells = accs[gi * n..(gi + 1) * n].iter_mut().zip(&s.vals);
            for (acc, &f) in cells {
                if !is_absent(f) {
                    acc.add(op, f);
                }
            }
        }
        Ok(())
    };
    match src {
        Stream::Range(c, mi) => {
            ev.range_function_each(g, c, mi, &mut sink)?;
        }
        Stream::Selector(vs) => ev.vector_selector_each(g, vs, false, &mut sink)?,
    }
    for (gi, o) in out.iter_mut().enumerate() {
        if sum {
            for (v, &c) in o.vals.iter_mut().zip(&comps[gi * n..(gi + 1) * n]) {
                if !is_absent(*v) && !v.is_infinite() {
                    *v += c;
                }
            }
        } else {
            for (k, acc) in accs[gi * n..(gi + 1) * n].iter().enumerate() {
                if acc.seen {
                    o.vals[k] = acc.result(op);
                }
            }
        }
    }
    out.retain(|s| s.vals.iter().any(|v| !is_absent(*v)));
    Ok(Val::Vector(out))
}

/// A fixed pseudo-random position in [0, 1) for a label set, so that
/// `limit_ratio` picks the same series at every step and `limit_ratio(r)`
/// and `limit_ratio(r - 1)` select complementary sets.
fn ratio_offset(l: &Labels) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    l.hash(&mut h);
    h.finish() as f64 / u64::MAX as f64
}

fn select_k(
    ev: &mut Evaluator<'_>,
    g: Grid,
    a: &AggregateExpr,
    input: Vec<Series>,
    group_of: &[usize],
    ngroups: usize,
    param: &[f64],
) -> Result<Val> {
    let n = g.len();
    let op = a.op;
    let pmax = param.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pmin = param.iter().copied().fold(f64::INFINITY, f64::min);
    let any_nan = param.iter().any(|p| p.is_nan());
    let param_span = a.param.as_ref().map(|p| p.span()).unwrap_or(a.span);
    if op == AggregateOp::LimitRatio {
        if pmax == 0.0 && pmin == 0.0 && !any_nan {
            return Ok(Val::Vector(Vec::new()));
        }
        if any_nan {
            return Err(Error::exec("Ratio value is NaN"));
        }
        if pmax > 1.0 {
            ev.annotations.warn(
                format!(
                    "ratio value should be between -1 and 1, got {}, capping to 1",
                    super::annotations::go_g(pmax)
                ),
                param_span,
            );
        }
        if pmin < -1.0 {
            ev.annotations.warn(
                format!(
                    "ratio value should be between -1 and 1, got {}, capping to -1",
                    super::annotations::go_g(pmin)
                ),
                param_span,
            );
        }
    } else {
        if !any_nan && pmax < 1.0 {
            return Ok(Val::Vector(Vec::new()));
        }
        if any_nan {
            return Err(Error::exec("Parameter value is NaN"));
        }
        if pmin <= i64::MIN as f64 {
            return Err(Error::exec(format!(
                "Scalar value {} underflows int64",
                super::annotations::go_g(pmin)
            )));
        }
        if pmax >= i64::MAX as f64 {
            return Err(Error::exec(format!(
                "Scalar value {} overflows int64",
                super::annotations::go_g(pmax)
            )));
        }
    }
    let offsets: Vec<f64> = if op == AggregateOp::LimitRatio {
        input.iter().map(|s| ratio_offset(&s.labels)).collect()
    } else {
        Vec::new()
    };
    let mut keep: Vec<Vec<bool>> = vec![vec![false; n]; input.len()];
    // For an instant query, the order of the result: group by group, in
    // the order the selection ranks them.
    let mut order: Vec<usize> = Vec::new();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); ngroups];
    for step in 0..n {
        ev.tick()?;
        for m in members.iter_mut() {
            m.clear();
        }
        let mut group_order: Vec<usize> = Vec::new();
        for (si, s) in input.iter().enumerate() {
            if is_absent(s.vals[step]) {
                continue;
            }
            let gi = group_of[si];
            if members[gi].is_empty() {
                group_order.push(gi);
            }
            members[gi].push(si);
        }
        let p = param[step];
        for &gi in &group_order {
            let m = &mut members[gi];
            let chosen: Vec<usize> = match op {
                AggregateOp::LimitRatio => {
                    let r = p.clamp(-1.0, 1.0);
                    if r == 0.0 {
                        Vec::new()
                    } else {
                        m.iter()
                            .copied()
                            .filter(|&si| {
                                let o = offsets[si];
                                (r >= 0.0 && o < r) || (r < 0.0 && o >= 1.0 + r)
                            })
                            .collect()
                    }
                }
                _ => {
                    let k = (p as i64).min(input.len() as i64);
                    if k < 1 {
                        Vec::new()
                    } else {
                        let k = k as usize;
                        match op {
                            AggregateOp::Topk => {
                                m.sort_by(|&x, &y| {
                                    sort::sort_order(input[x].vals[step], input[y].vals[step], true)
                                });
                                m.iter().copied().take(k).collect()
                            }
                            AggregateOp::Bottomk => {
                                m.sort_by(|&x, &y| {
                                    sort::sort_order(
                                        input[x].vals[step],
                                        input[y].vals[step],
                                        false,
                                    )
                                });
                                m.iter().copied().take(k).collect()
                            }
                            _ => m.iter().copied().take(k).collect(),
                        }
                    }
                }
            };
            for si in chosen {
                keep[si][step] = true;
                if n == 1 {
                    order.push(si);
                }
            }
        }
    }
    let mut input: Vec<Option<Series>> = input.into_iter().map(Some).collect();
    let mut out = Vec::new();
    if n == 1 {
        for si in order {
            if let Some(s) = input[si].take() {
                out.push(s);
            }
        }
    } else {
        for (si, slot) in input.iter_mut().enumerate() {
            let Some(mut s) = slot.take() else { continue };
            for (step, v) in s.vals.iter_mut().enumerate() {
                if !keep[si][step] {
                    *v = absent();
                }
            }
            if s.vals.iter().any(|v| !is_absent(*v)) {
                out.push(s);
            }
        }
    }
    Ok(Val::Vector(out))
}

fn count_values(ev: &mut Evaluator<'_>, g: Grid, a: &AggregateExpr) -> Result<Val> {
    let n = g.len();
    let label = match a.param.as_deref().map(Expr::unparen) {
        Some(Expr::String(s)) => match &s.not_utf8 {
            Some(quoted) => return Err(Error::exec(format!("invalid label name {quoted}"))),
            None => s.value.clone(),
        },
        _ => return Err(Error::internal("count_values without a label name")),
    };
    if label.is_empty() {
        return Err(Error::exec(format!("invalid label name {label:?}")));
    }
    let mut grouping = a.grouping.clone();
    if !a.without {
        grouping.push(label.clone());
    }
    let input = ev.vector_arg(g, &a.expr)?;
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<Series> = Vec::new();
    for step in 0..n {
        ev.tick()?;
        for s in &input {
            let v = s.vals[step];
            if is_absent(v) {
                continue;
            }
            let mut b = s.labels.builder();
            b.set(label.clone(), crate::format::format_float(v));
            let key = group_labels(&b.build(), &grouping, a.without);
            let idx = match index.get(&key) {
                Some(&i) => i,
                None => {
                    index.insert(key.clone(), out.len());
                    out.push(Series {
                        labels: key,
                        vals: vec![absent(); n],
                        drop_name: false,
                    });
                    out.len() - 1
                }
            };
            let slot = &mut out[idx].vals[step];
            *slot = if is_absent(*slot) { 1.0 } else { *slot + 1.0 };
        }
    }
    Ok(Val::Vector(out))
}
