//! Type checking of a parsed tree, in the order and with the messages of
//! Prometheus's `checkAST`.
//!
//! Besides checking, this pass normalises vector matching the way
//! Prometheus does: the matching clause is dropped unless both operands of
//! a binary operation are instant vectors, and set operators match
//! many-to-many.

use cairn_engine::MatchOp;
use cairn_engine::labels::METRIC_NAME;

use super::ParseError;
use super::lexer::go_quote;
use crate::ast::{
    AggregateExpr, BinaryExpr, Call, Expr, Span, ValueType, VectorMatchCardinality, VectorSelector,
};

type CResult<T> = Result<T, ParseError>;

struct Checker<'a> {
    input: &'a str,
}

/// Checks `expr`, returning the first type error.
pub fn check(input: &str, expr: &mut Expr) -> CResult<()> {
    Checker { input }.expr(expr).map(|_| ())
}

impl Checker<'_> {
    fn err(&self, s: Span, msg: impl Into<String>) -> ParseError {
        ParseError::new(self.input, s.start as usize, s.end as usize, msg)
    }

    /// Where the operator of a binary expression starts: the first
    /// non-space byte after the left operand.
    fn op_span(&self, lhs: Span, rhs: Span) -> Span {
        let b = self.input.as_bytes();
        let mut start = lhs.end as usize;
        while start < b.len() && matches!(b[start], b' ' | b'\t' | b'\n' | b'\r') {
            start += 1;
        }
        let end = (rhs.start as usize).max(start);
        Span::new(start, end)
    }

    fn expr(&self, e: &mut Expr) -> CResult<ValueType> {
        let typ = e.value_type();
        match e {
            Expr::Number(_) | Expr::String(_) => {}
            Expr::VectorSelector(vs) => self.selector(vs, false)?,
            Expr::MatrixSelector(ms) => self.selector(&ms.vector, false)?,
            Expr::Paren(p) => {
                self.expr(&mut p.expr)?;
            }
            Expr::Unary(u) => {
                let t = self.expr(&mut u.expr)?;
                self.unary(u.span, t)?;
            }
            Expr::Subquery(sq) => {
                let t = self.expr(&mut sq.expr)?;
                if t != ValueType::Vector {
                    return Err(self.subquery_error(sq.span, t));
                }
            }
            Expr::Aggregate(a) => self.aggregate(a)?,
            Expr::Call(c) => self.call(c)?,
            Expr::Binary(b) => self.binary(b)?,
        }
        Ok(typ)
    }

    #[cold]
    fn subquery_error(&self, s: Span, t: ValueType) -> ParseError {
        self.err(
            s,
            format!("subquery is only allowed on instant vector, got {t} instead"),
        )
    }

    #[inline(never)]
    fn unary(&self, s: Span, t: ValueType) -> CResult<()> {
        if t != ValueType::Scalar && t != ValueType::Vector {
            return Err(self.err(
                s,
                format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    go_quote(t.documented())
                ),
            ));
        }
        Ok(())
    }

    #[inline(never)]
    fn aggregate(&self, a: &mut AggregateExpr) -> CResult<()> {
        let t = self.expr(&mut a.expr)?;
        if t != ValueType::Vector {
            return Err(self.err(
                a.expr.span(),
                format!(
                    "expected type instant vector in aggregation expression, got {}",
                    t.documented()
                ),
            ));
        }
        if let (Some(want), Some(param)) = (a.op.param_type(), a.param.as_mut()) {
            let t = self.expr(param)?;
            if t != want {
                return Err(self.err(
                    param.span(),
                    format!(
                        "expected type {} in aggregation parameter, got {}",
                        want.documented(),
                        t.documented()
                    ),
                ));
            }
        }
        Ok(())
    }

    #[inline(never)]
    fn call(&self, c: &mut Call) -> CResult<()> {
        let f = c.func;
        let n = c.args.len();
        if n < f.min_args() || f.max_args().is_some_and(|max| n > max) {
            let msg = if f.min_args() == f.max_args().unwrap_or(usize::MAX) {
                format!(
                    "expected {} argument(s) in call to {}, got {n}",
                    f.min_args(),
                    go_quote(f.name)
                )
            } else if n < f.min_args() {
                format!(
                    "expected at least {} argument(s) in call to {}, got {n}",
                    f.min_args(),
                    go_quote(f.name)
                )
            } else {
                format!(
                    "expected at most {} argument(s) in call to {}, got {n}",
                    f.max_args().unwrap_or(n),
                    go_quote(f.name)
                )
            };
            return Err(self.err(c.span, msg));
        }
        let info_selector = f.name == "info" && n > 1;
        if info_selector {
            let arg = &c.args[1];
            if arg.value_type() != ValueType::Vector {
                return Err(self.err(
                    c.span,
                    format!(
                        "expected type instant vector in call to function \"info\", got {}",
                        arg.value_type().documented()
                    ),
                ));
            }
            match arg {
                Expr::VectorSelector(vs) if vs.name.is_some() => {
                    return Err(self.err(
                        vs.span,
                        "expected label selectors only, got vector selector instead",
                    ));
                }
                Expr::VectorSelector(_) => {}
                other => {
                    return Err(self.err(other.span(), "expected label selectors only"));
                }
            }
        }
        for (i, arg) in c.args.iter_mut().enumerate() {
            let Some(want) = f.arg_type(i) else { break };
            let t = match arg {
                Expr::VectorSelector(vs) if info_selector && i == 1 => {
                    self.selector(vs, true)?;
                    ValueType::Vector
                }
                _ => self.expr(arg)?,
            };
            if t != want {
                return Err(self.err(
                    arg.span(),
                    format!(
                        "expected type {} in call to function {}, got {}",
                        want.documented(),
                        go_quote(f.name),
                        t.documented()
                    ),
                ));
            }
        }
        Ok(())
    }

    #[inline(never)]
    fn binary(&self, b: &mut BinaryExpr) -> CResult<()> {
        let lt = self.expr(&mut b.lhs)?;
        let rt = self.expr(&mut b.rhs)?;
        let op_span = self.op_span(b.lhs.span(), b.rhs.span());
        if b.return_bool && !b.op.is_comparison() {
            return Err(self.err(
                op_span,
                "bool modifier can only be used on comparison operators",
            ));
        }
        if b.op.is_comparison()
            && !b.return_bool
            && lt == ValueType::Scalar
            && rt == ValueType::Scalar
        {
            return Err(self.err(
                op_span,
                "comparisons between scalars must use BOOL modifier",
            ));
        }
        if let Some(vm) = b.matching.as_mut() {
            if b.op.is_set_operator() && vm.card == VectorMatchCardinality::OneToOne {
                vm.card = VectorMatchCardinality::ManyToMany;
            }
            if vm.on
                && let Some(l) = vm.labels.iter().find(|l| vm.include.contains(l))
            {
                return Err(self.err(
                    op_span,
                    format!(
                        "label {} must not occur in ON and GROUP clause at once",
                        go_quote(l)
                    ),
                ));
            }
        }
        for (t, side) in [(lt, b.lhs.span()), (rt, b.rhs.span())] {
            if t != ValueType::Scalar && t != ValueType::Vector {
                return Err(self.err(
                    side,
                    "binary expression must contain only scalar and instant vector types",
                ));
            }
        }
        if lt != ValueType::Vector || rt != ValueType::Vector {
            if let Some(vm) = b.matching.take()
                && !vm.labels.is_empty()
            {
                return Err(self.err(
                    b.span,
                    "vector matching only allowed between instant vectors",
                ));
            }
        } else if b.op.is_set_operator()
            && let Some(vm) = &b.matching
            && vm.card != VectorMatchCardinality::ManyToMany
        {
            return Err(self.err(
                b.span,
                format!(
                    "no grouping allowed for {} operation",
                    go_quote(b.op.as_str())
                ),
            ));
        }
        if (lt == ValueType::Scalar || rt == ValueType::Scalar) && b.op.is_set_operator() {
            return Err(self.err(
                b.span,
                format!(
                    "set operator {} not allowed in binary scalar expression",
                    go_quote(b.op.as_str())
                ),
            ));
        }
        Ok(())
    }

    fn selector(&self, vs: &VectorSelector, allow_empty: bool) -> CResult<()> {
        if let Some(name) = &vs.name {
            // The parser added `__name__="<name>"`; any other `__name__`
            // matcher sets the name a second time.
            let mut own_seen = false;
            for m in vs.matchers.iter().filter(|m| m.name == METRIC_NAME) {
                if !own_seen && m.op == MatchOp::Equal && m.value == *name {
                    own_seen = true;
                    continue;
                }
                return Err(self.err(
                    vs.span,
                    format!(
                        "metric name must not be set twice: {} or {}",
                        go_quote(name),
                        go_quote(&m.value)
                    ),
                ));
            }
            return Ok(());
        }
        if !allow_empty && vs.matchers.iter().all(|m| m.matches_empty()) {
            return Err(self.err(
                vs.span,
                "vector selector must contain at least one non-empty matcher",
            ));
        }
        Ok(())
    }
}
