//! Walking, rewriting and analysing an [`Expr`] tree.
//!
//! The planner uses [`selectors`] to push label matchers and time ranges
//! down into storage (`Querier::select(matchers, mint, maxt)`), and
//! [`time_span`] to check query limits and prune blocks before evaluating.
//! Recursion here is bounded because the parser bounds the nesting depth.

use cairn_engine::Matcher;

use super::{AtModifier, DurationMs, Expr, VectorSelector};

/// What [`walk`] does after visiting a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// Visit the node's children next.
    Continue,
    /// Do not visit this node's children.
    SkipChildren,
    /// Stop the whole walk.
    Stop,
}

impl Expr {
    /// The direct sub-expressions, in source order.
    pub fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Number(_)
            | Expr::String(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_) => Vec::new(),
            Expr::Subquery(s) => vec![&s.expr],
            Expr::Paren(p) => vec![&p.expr],
            Expr::Unary(u) => vec![&u.expr],
            Expr::Binary(b) => vec![&b.lhs, &b.rhs],
            Expr::Aggregate(a) => match &a.param {
                Some(p) => vec![p, &a.expr],
                None => vec![&a.expr],
            },
            Expr::Call(c) => c.args.iter().collect(),
        }
    }

    /// The direct sub-expressions, mutably, in source order.
    pub fn children_mut(&mut self) -> Vec<&mut Expr> {
        match self {
            Expr::Number(_)
            | Expr::String(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_) => Vec::new(),
            Expr::Subquery(s) => vec![&mut s.expr],
            Expr::Paren(p) => vec![&mut p.expr],
            Expr::Unary(u) => vec![&mut u.expr],
            Expr::Binary(b) => vec![&mut b.lhs, &mut b.rhs],
            Expr::Aggregate(a) => match &mut a.param {
                Some(p) => vec![p, &mut a.expr],
                None => vec![&mut a.expr],
            },
            Expr::Call(c) => c.args.iter_mut().collect(),
        }
    }

    /// Rebuilds the tree bottom-up: every node, after its children have
    /// been rewritten, is replaced by `f(node)`.
    pub fn rewrite(self, f: &mut impl FnMut(Expr) -> Expr) -> Expr {
        let mut e = self;
        for child in e.children_mut() {
            let taken = std::mem::replace(child, Expr::number(0.0));
            *child = taken.rewrite(f);
        }
        f(e)
    }
}

/// Visits `expr` and its descendants depth-first, pre-order. `f` receives
/// each node and the path of its ancestors (root first).
pub fn walk<'a>(expr: &'a Expr, f: &mut impl FnMut(&'a Expr, &[&'a Expr]) -> Walk) {
    let mut path = Vec::new();
    walk_inner(expr, &mut path, f);
}

fn walk_inner<'a>(
    expr: &'a Expr,
    path: &mut Vec<&'a Expr>,
    f: &mut impl FnMut(&'a Expr, &[&'a Expr]) -> Walk,
) -> bool {
    match f(expr, path) {
        Walk::Stop => return false,
        Walk::SkipChildren => return true,
        Walk::Continue => {}
    }
    path.push(expr);
    for child in expr.children() {
        if !walk_inner(child, path, f) {
            path.pop();
            return false;
        }
    }
    path.pop();
    true
}

/// The evaluation parameters that decide which data a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalRange {
    /// First evaluation timestamp (ms); equal to `end_ms` for an instant query.
    pub start_ms: i64,
    /// Last evaluation timestamp (ms).
    pub end_ms: i64,
    /// How far back an instant selector looks for a sample (default 5m).
    pub lookback_ms: DurationMs,
}

/// A selector of the query with the time range of samples it may read.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectorRange<'a> {
    pub selector: &'a VectorSelector,
    /// The range of a range selector, `None` for an instant selector.
    pub range_ms: Option<DurationMs>,
    /// Inclusive bounds (ms) of the samples evaluation may need.
    pub mint: i64,
    pub maxt: i64,
}

impl SelectorRange<'_> {
    pub fn matchers(&self) -> &[Matcher] {
        &self.selector.matchers
    }
}

/// Every selector of `expr` with the time range of samples it needs when the
/// query is evaluated over `eval`, accounting for `offset`, `@`, ranges,
/// subqueries and the lookback window. Ranges are a superset: evaluation
/// never reads outside them.
pub fn selectors(expr: &Expr, eval: EvalRange) -> Vec<SelectorRange<'_>> {
    let mut out = Vec::new();
    collect(expr, eval.start_ms, eval.end_ms, &eval, &mut out);
    out
}

/// Applies an `@` modifier to the window `[start, end]` of evaluation times.
fn apply_at(at: Option<AtModifier>, start: i64, end: i64, eval: &EvalRange) -> (i64, i64) {
    match at {
        None => (start, end),
        Some(AtModifier::Timestamp(t)) => (t, t),
        Some(AtModifier::Start) => (eval.start_ms, eval.start_ms),
        Some(AtModifier::End) => (eval.end_ms, eval.end_ms),
    }
}

fn collect<'a>(
    expr: &'a Expr,
    start: i64,
    end: i64,
    eval: &EvalRange,
    out: &mut Vec<SelectorRange<'a>>,
) {
    match expr {
        Expr::VectorSelector(vs) => {
            let (s, e) = apply_at(vs.at, start, end, eval);
            out.push(SelectorRange {
                selector: vs,
                range_ms: None,
                mint: s
                    .saturating_sub(vs.offset_ms)
                    .saturating_sub(eval.lookback_ms),
                maxt: e.saturating_sub(vs.offset_ms),
            });
        }
        Expr::MatrixSelector(ms) => {
            let vs = &ms.vector;
            let (s, e) = apply_at(vs.at, start, end, eval);
            out.push(SelectorRange {
                selector: vs,
                range_ms: Some(ms.range_ms),
                mint: s.saturating_sub(vs.offset_ms).saturating_sub(ms.range_ms),
                maxt: e.saturating_sub(vs.offset_ms),
            });
        }
        Expr::Subquery(sq) => {
            let (s, e) = apply_at(sq.at, start, end, eval);
            let s = s.saturating_sub(sq.offset_ms).saturating_sub(sq.range_ms);
            let e = e.saturating_sub(sq.offset_ms);
            collect(&sq.expr, s, e, eval, out);
        }
        _ => {
            for child in expr.children() {
                collect(child, start, end, eval, out);
            }
        }
    }
}

/// The smallest time range `(mint, maxt)` (inclusive, ms) covering every
/// sample the query may read, or `None` when it reads no series at all
/// (for example `1 + 1`).
pub fn time_span(expr: &Expr, eval: EvalRange) -> Option<(i64, i64)> {
    selectors(expr, eval)
        .iter()
        .map(|s| (s.mint, s.maxt))
        .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
}
