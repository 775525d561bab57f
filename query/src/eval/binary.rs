//! Binary operators: scalar/scalar, vector/scalar and vector/vector with
//! one-to-one, many-to-one and one-to-many matching, `bool` comparisons,
//! and the set operators `and`, `or`, `unless`, with Prometheus's errors
//! for ambiguous matches.

use std::collections::HashMap;

use cairn_engine::{Label, Labels};

use super::evaluator::{Evaluator, merge_columns};
use super::{Grid, Series, Val, absent, is_absent};
use crate::ast::{BinaryExpr, BinaryOp, VectorMatchCardinality, VectorMatching};
use crate::error::{Error, Result};

pub(crate) fn eval(ev: &mut Evaluator<'_>, g: Grid, b: &BinaryExpr) -> Result<Val> {
    let lhs = ev.eval(g, &b.lhs)?;
    let rhs = ev.eval(g, &b.rhs)?;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
            l.iter()
                .zip(&r)
                .map(|(&a, &c)| scalar_op(b.op, a, c))
                .collect(),
        )),
        (Val::Vector(l), Val::Scalar(r)) => Ok(Val::Vector(vector_scalar(b, l, &r, false))),
        (Val::Scalar(l), Val::Vector(r)) => Ok(Val::Vector(vector_scalar(b, r, &l, true))),
        (Val::Vector(l), Val::Vector(r)) => {
            let default_matching = VectorMatching {
                card: if b.op.is_set_operator() {
                    VectorMatchCardinality::ManyToMany
                } else {
                    VectorMatchCardinality::OneToOne
                },
                on: false,
                labels: Vec::new(),
                include: Vec::new(),
            };
            let m = b.matching.as_ref().unwrap_or(&default_matching);
            match b.op {
                BinaryOp::And | BinaryOp::Or | BinaryOp::Unless => set_op(ev, g, b.op, l, r, m),
                _ => vector_vector(ev, g, b, l, r, m),
            }
        }
        _ => Err(Error::internal(
            "binary operator on unsupported operand types",
        )),
    }
}

/// Whether the operator changes what the metric means (arithmetic): the
/// metric name is then dropped.
fn changes_metric_schema(op: BinaryOp) -> bool {
    matches!(
        op,
        BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::Div
            | BinaryOp::Pow
            | BinaryOp::Mod
            | BinaryOp::Atan2
    )
}

fn arith(op: BinaryOp, l: f64, r: f64) -> f64 {
    match op {
        BinaryOp::Add => l + r,
        BinaryOp::Sub => l - r,
        BinaryOp::Mul => l * r,
        BinaryOp::Div => l / r,
        BinaryOp::Pow => l.powf(r),
        BinaryOp::Mod => l % r,
        BinaryOp::Atan2 => l.atan2(r),
        _ => f64::NAN,
    }
}

fn compare(op: BinaryOp, l: f64, r: f64) -> bool {
    match op {
        BinaryOp::Eql => l == r,
        BinaryOp::Neq => l != r,
        BinaryOp::Gtr => l > r,
        BinaryOp::Lss => l < r,
        BinaryOp::Gte => l >= r,
        BinaryOp::Lte => l <= r,
        _ => false,
    }
}

/// Scalar-scalar: comparisons give 0 or 1 (they always carry `bool`).
fn scalar_op(op: BinaryOp, l: f64, r: f64) -> f64 {
    if op.is_comparison() {
        if compare(op, l, r) { 1.0 } else { 0.0 }
    } else {
        arith(op, l, r)
    }
}

/// One element: the value and whether to keep it (comparisons filter).
fn elem(op: BinaryOp, l: f64, r: f64) -> (f64, bool) {
    if op.is_comparison() {
        (l, compare(op, l, r))
    } else {
        (arith(op, l, r), true)
    }
}

fn vector_scalar(b: &BinaryExpr, mut ss: Vec<Series>, sc: &[f64], swap: bool) -> Vec<Series> {
    let op = b.op;
    let drop = changes_metric_schema(op) || b.return_bool;
    for s in &mut ss {
        if drop {
            s.drop_name = true;
        }
        for (i, x) in s.vals.iter_mut().enumerate() {
            if is_absent(*x) {
                continue;
            }
            let (l, r) = if swap { (sc[i], *x) } else { (*x, sc[i]) };
            let (mut v, mut keep) = elem(op, l, r);
            if op.is_comparison() && swap {
                v = r;
            }
            if b.return_bool {
                v = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            *x = if keep { v } else { absent() };
        }
    }
    ss.retain(|s| s.vals.iter().any(|v| !is_absent(*v)));
    ss
}

/// The matching signature of a series: its `on` labels, or all labels but
/// the `ignoring` ones and the metric name.
fn signature(labels: &Labels, m: &VectorMatching) -> Vec<Label> {
    labels
        .iter()
        .filter(|l| {
            let listed = m.labels.iter().any(|n| n == &*l.name);
            if m.on {
                listed
            } else {
                !listed && &*l.name != "__name__"
            }
        })
        .cloned()
        .collect()
}

/// Assigns each series of both sides a signature id shared between sides.
fn signature_ids(
    l: &[Series],
    r: &[Series],
    m: &VectorMatching,
) -> (Vec<usize>, Vec<usize>, usize) {
    let mut ids: HashMap<Vec<Label>, usize> = HashMap::new();
    let mut id_of = |s: &Series| {
        let sig = signature(&s.labels, m);
        let n = ids.len();
        *ids.entry(sig).or_insert(n)
    };
    let li: Vec<usize> = l.iter().map(&mut id_of).collect();
    let ri: Vec<usize> = r.iter().map(&mut id_of).collect();
    let n = ids.len();
    (li, ri, n)
}

fn set_op(
    ev: &mut Evaluator<'_>,
    g: Grid,
    op: BinaryOp,
    mut l: Vec<Series>,
    mut r: Vec<Series>,
    m: &VectorMatching,
) -> Result<Val> {
    let n = g.len();
    let (li, ri, nsig) = signature_ids(&l, &r, m);
    let mut present = vec![false; nsig];
    for step in 0..n {
        ev.tick()?;
        present.iter_mut().for_each(|p| *p = false);
        match op {
            BinaryOp::And | BinaryOp::Unless => {
                for (s, &sig) in r.iter().zip(&ri) {
                    if !is_absent(s.vals[step]) {
                        present[sig] = true;
                    }
                }
                for (s, &sig) in l.iter_mut().zip(&li) {
                    let keep = present[sig] == (op == BinaryOp::And);
                    if !keep {
                        s.vals[step] = absent();
                    }
                }
            }
            _ => {
                for (s, &sig) in l.iter().zip(&li) {
                    if !is_absent(s.vals[step]) {
                        present[sig] = true;
                    }
                }
                for (s, &sig) in r.iter_mut().zip(&ri) {
                    if present[sig] {
                        s.vals[step] = absent();
                    }
                }
            }
        }
    }
    let mut out = l;
    if op == BinaryOp::Or {
        out.append(&mut r);
    }
    out.retain(|s| s.vals.iter().any(|v| !is_absent(*v)));
    Ok(Val::Vector(merge_columns(out)?))
}

/// Prometheus's `Labels.String()`: `{__name__="x", a="b"}`.
pub(crate) fn prom_labels_string(l: &Labels) -> String {
    let parts: Vec<String> = l
        .iter()
        .map(|x| format!("{}={:?}", x.name, &*x.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

fn match_labels(l: &Labels, m: &VectorMatching) -> Labels {
    let mut b = l.builder();
    if m.on {
        b.keep(&m.labels);
    } else {
        b.del("__name__");
        for n in &m.labels {
            b.del(n);
        }
    }
    b.build()
}

/// The labels of a result element: those of the "many" side (the left for
/// one-to-one), trimmed for one-to-one matching, plus the `group_x` extra
/// labels taken from the "one" side.
fn result_labels(many: &Labels, one: &Labels, op: BinaryOp, m: &VectorMatching) -> Labels {
    let mut b = many.builder();
    if changes_metric_schema(op) {
        for n in super::METADATA_LABELS {
            b.del(n);
        }
    }
    if m.card == VectorMatchCardinality::OneToOne {
        if m.on {
            b.keep(&m.labels);
        } else {
            for n in &m.labels {
                b.del(n);
            }
        }
    }
    for n in &m.include {
        match one.get(n) {
            Some(v) => {
                b.set(n.clone(), v.to_string());
            }
            None => {
                b.del(n);
            }
        }
    }
    b.build()
}

fn vector_vector(
    ev: &mut Evaluator<'_>,
    g: Grid,
    b: &BinaryExpr,
    l: Vec<Series>,
    r: Vec<Series>,
    m: &VectorMatching,
) -> Result<Val> {
    let n = g.len();
    let op = b.op;
    let one_to_many = m.card == VectorMatchCardinality::OneToMany;
    // `many` is iterated, `one` is looked up by signature.
    let (many, one) = if one_to_many { (&r, &l) } else { (&l, &r) };
    let (many_sig, one_sig, nsig) = if one_to_many {
        let (li, ri, ns) = signature_ids(&l, &r, m);
        (ri, li, ns)
    } else {
        signature_ids(&l, &r, m)
    };
    let mut one_at: Vec<Option<usize>> = vec![None; nsig];
    let mut matched_one: Vec<bool> = vec![false; nsig];
    let mut matched_many: Vec<Vec<u64>> = vec![Vec::new(); nsig];
    let mut out: Vec<Series> = Vec::new();
    let mut out_index: HashMap<Labels, usize> = HashMap::new();
    let mut pair_out: HashMap<(usize, usize), (usize, u64)> = HashMap::new();
    for step in 0..n {
        ev.tick()?;
        one_at.iter_mut().for_each(|x| *x = None);
        let any_one = one.iter().any(|s| !is_absent(s.vals[step]));
        let any_many = many.iter().any(|s| !is_absent(s.vals[step]));
        if !any_one || !any_many {
            continue;
        }
        for (oi, s) in one.iter().enumerate() {
            if is_absent(s.vals[step]) {
                continue;
            }
            let sig = one_sig[oi];
            if let Some(prev) = one_at[sig] {
                let side = if one_to_many { "left" } else { "right" };
                let mut d1 = prom_labels_string(&s.labels);
                let mut d2 = prom_labels_string(&one[prev].labels);
                if d1 > d2 {
                    std::mem::swap(&mut d1, &mut d2);
                }
                return Err(Error::exec(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{d1}, {d2}];many-to-many matching not allowed: matching labels must be unique on one side",
                    prom_labels_string(&match_labels(&s.labels, m))
                )));
            }
            one_at[sig] = Some(oi);
        }
        matched_one.iter_mut().for_each(|x| *x = false);
        matched_many.iter_mut().for_each(|x| x.clear());
        for (mi, s) in many.iter().enumerate() {
            let mv = s.vals[step];
            if is_absent(mv) {
                continue;
            }
            let sig = many_sig[mi];
            let Some(oi) = one_at[sig] else { continue };
            let ov = one[oi].vals[step];
            let (lv, rv) = if one_to_many { (ov, mv) } else { (mv, ov) };
            let (mut v, keep) = elem(op, lv, rv);
            if b.return_bool {
                v = if keep { 1.0 } else { 0.0 };
            }
            let (idx, hash) = match pair_out.get(&(mi, oi)) {
                Some(&x) => x,
                None => {
                    let labels = result_labels(&s.labels, &one[oi].labels, op, m);
                    let hash = {
                        use std::hash::{Hash, Hasher};
                        let mut h = std::collections::hash_map::DefaultHasher::new();
                        labels.hash(&mut h);
                        h.finish()
                    };
                    let idx = match out_index.get(&labels) {
                        Some(&i) => i,
                        None => {
                            out_index.insert(labels.clone(), out.len());
                            out.push(Series {
                                labels,
                                vals: vec![absent(); n],
                                drop_name: b.return_bool,
                            });
                            out.len() - 1
                        }
                    };
                    pair_out.insert((mi, oi), (idx, hash));
                    (idx, hash)
                }
            };
            if m.card == VectorMatchCardinality::OneToOne {
                if matched_one[sig] {
                    return Err(Error::exec(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                    ));
                }
                matched_one[sig] = true;
            } else {
                if matched_many[sig].contains(&hash) {
                    return Err(Error::exec(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    ));
                }
                matched_many[sig].push(hash);
            }
            if !keep && !b.return_bool {
                continue;
            }
            let slot = &mut out[idx].vals[step];
            if !is_absent(*slot) {
                return Err(Error::exec(
                    "vector cannot contain metrics with the same labelset",
                ));
            }
            *slot = v;
        }
    }
    out.retain(|s| s.vals.iter().any(|v| !is_absent(*v)));
    Ok(Val::Vector(out))
}
