//! The PromQL grammar: tokens to an [`Expr`] tree.
//!
//! Recursive descent, with precedence climbing for binary operators:
//! `or` < `and` `unless` < comparisons < `+ -` < `* / % atan2` < `^` (right
//! associative). Unary minus binds like `*`, so `-a * b` is `(-a) * b` and
//! `-2 ^ 2` is `-(2 ^ 2)`. Postfix modifiers (`[range]`, `[range:step]`,
//! `offset`, `@`) bind tighter than any operator. Type errors are left to
//! `check`; this stage reports syntax errors and the node-building errors
//! Prometheus raises during parsing, stopping at the first.

use cairn_engine::{MatchOp, Matcher};

use super::lexer::{Kw, TokKind, Token, go_quote};
use super::literal::{self, MAX_DURATION_MS};
use super::{ParseError, ParseOptions};
use crate::ast::{
    AggregateExpr, AggregateOp, AtModifier, BinaryExpr, BinaryOp, Call, Expr, MatrixSelector,
    NumberLiteral, ParenExpr, Span, StringLiteral, SubqueryExpr, UnaryExpr, ValueType,
    VectorMatchCardinality, VectorMatching, VectorSelector,
};
use crate::functions::{self, Stability};

type PResult<T> = Result<T, ParseError>;

/// The precedence of unary minus (that of `*`).
const UNARY_PRECEDENCE: u8 = 5;
/// The operand of a unary minus: only `^` and postfix modifiers bind tighter.
const POW_PRECEDENCE: u8 = 6;

/// A node with the depth of its tree.
struct Node {
    expr: Expr,
    depth: usize,
}

struct Parser<'a> {
    input: &'a str,
    toks: &'a [Token],
    i: usize,
    opts: &'a ParseOptions,
    recursion: usize,
    /// The next string literal is used as a label name (the parameter of
    /// `count_values`, the target of `label_replace` / `label_join`), which
    /// decides the wording of an invalid-UTF-8 error.
    label_name_next: bool,
}

/// Parses a whole token stream into one expression.
pub fn parse_tokens(input: &str, toks: &[Token], opts: &ParseOptions) -> PResult<Expr> {
    let mut p = Parser {
        input,
        toks,
        i: 0,
        opts,
        recursion: 0,
        label_name_next: false,
    };
    if matches!(p.peek().kind, TokKind::Eof) {
        return Err(ParseError::new(input, 0, 0, "no expression found in input"));
    }
    let node = p.expr(0)?;
    let t = p.peek();
    if !matches!(t.kind, TokKind::Eof) {
        return Err(p.unexpected(t, "", ""));
    }
    Ok(node.expr)
}

fn span(start: usize, end: usize) -> Span {
    Span::new(start, end)
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &'a Token {
        // The token list always ends with Eof or Error, and we never move
        // past it.
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn peek_at(&self, n: usize) -> &'a Token {
        &self.toks[(self.i + n).min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> &'a Token {
        let t = self.peek();
        if !matches!(t.kind, TokKind::Eof | TokKind::Error(_)) {
            self.i += 1;
        }
        t
    }

    fn text(&self, t: &Token) -> &'a str {
        &self.input[t.start..t.end]
    }

    fn err(&self, start: usize, end: usize, msg: impl Into<String>) -> ParseError {
        ParseError::new(self.input, start, end, msg)
    }

    fn err_span(&self, s: Span, msg: impl Into<String>) -> ParseError {
        self.err(s.start as usize, s.end as usize, msg)
    }

    /// Prometheus's description of a token in "unexpected ..." messages.
    fn describe(&self, t: &Token) -> String {
        let text = self.text(t);
        match &t.kind {
            TokKind::Eof => "end of input".into(),
            TokKind::Error(m) => m.clone(),
            TokKind::Ident => format!("identifier {}", go_quote(text)),
            TokKind::MetricIdent => format!("metric identifier {}", go_quote(text)),
            TokKind::Keyword(Kw::Agg(_)) => format!("<aggr:{text}>"),
            TokKind::Keyword(_) => format!("<{text}>"),
            TokKind::Op(_) | TokKind::At | TokKind::EqlRegex | TokKind::NeqRegex => {
                format!("<op:{text}>")
            }
            TokKind::Number | TokKind::Duration | TokKind::Str => {
                let kind = match t.kind {
                    TokKind::Number => "number",
                    TokKind::Duration => "duration",
                    _ => "string",
                };
                if text.chars().count() > 10 {
                    let short: String = text.chars().take(10).collect();
                    format!("{kind} {}...", go_quote(&short))
                } else {
                    format!("{kind} {}", go_quote(text))
                }
            }
            _ => go_quote(text),
        }
    }

    /// "unexpected <token> [in <context>][, expected <what>]", or the
    /// lexer's message when the token is a lexical error.
    #[cold]
    #[inline(never)]
    fn unexpected(&self, t: &Token, context: &str, expected: &str) -> ParseError {
        if let TokKind::Error(m) = &t.kind {
            return self.err(t.start, t.end, m.clone());
        }
        let mut msg = format!("unexpected {}", self.describe(t));
        if !context.is_empty() {
            msg.push_str(" in ");
            msg.push_str(context);
        }
        if !expected.is_empty() {
            msg.push_str(", expected ");
            msg.push_str(expected);
        }
        self.err(t.start, t.end, msg)
    }

    #[cold]
    #[inline(never)]
    fn too_deep(&self, at: usize) -> ParseError {
        self.err(
            at,
            at,
            format!(
                "expression is nested too deeply (the limit is {} levels)",
                self.opts.max_depth
            ),
        )
    }

    fn node(&self, expr: Expr, depth: usize) -> PResult<Node> {
        if depth > self.opts.max_depth {
            return Err(self.too_deep(expr.span().start as usize));
        }
        Ok(Node { expr, depth })
    }

    /// An expression whose binary operators all bind at least `min_prec`.
    fn expr(&mut self, min_prec: u8) -> PResult<Node> {
        self.recursion += 1;
        if self.recursion > self.opts.max_depth {
            return Err(self.too_deep(self.peek().start));
        }
        let result = self.expr_inner(min_prec);
        self.recursion -= 1;
        result
    }

    fn expr_inner(&mut self, min_prec: u8) -> PResult<Node> {
        let mut lhs = self.unary()?;
        loop {
            let t = self.peek();
            let TokKind::Op(op) = t.kind else { break };
            let prec = op.precedence();
            if prec < min_prec {
                break;
            }
            self.bump();
            let (return_bool, matching) = self.bin_modifiers()?;
            let next_min = if op.is_right_associative() {
                prec
            } else {
                prec + 1
            };
            let rhs = self.expr(next_min)?;
            lhs = self.binary(lhs, op, return_bool, matching, rhs)?;
        }
        Ok(lhs)
    }

    /// Builds `lhs op rhs` (kept out of `expr_inner`, which is on the
    /// recursion path, so that its stack frame stays small in debug builds).
    #[inline(never)]
    fn binary(
        &self,
        lhs: Node,
        op: BinaryOp,
        return_bool: bool,
        matching: Option<VectorMatching>,
        rhs: Node,
    ) -> PResult<Node> {
        let depth = 1 + lhs.depth.max(rhs.depth);
        let s = lhs.expr.span().to(rhs.expr.span());
        self.node(
            Expr::Binary(BinaryExpr {
                op,
                lhs: Box::new(lhs.expr),
                rhs: Box::new(rhs.expr),
                return_bool,
                matching,
                span: s,
            }),
            depth,
        )
    }

    /// `bool`, `on(...)`/`ignoring(...)`, `group_left(...)`/`group_right(...)`
    /// after a binary operator. The matching is normalised later by `check`
    /// (dropped unless both sides are vectors).
    fn bin_modifiers(&mut self) -> PResult<(bool, Option<VectorMatching>)> {
        let mut return_bool = false;
        if matches!(self.peek().kind, TokKind::Keyword(Kw::Bool)) {
            self.bump();
            return_bool = true;
        }
        let mut vm = VectorMatching {
            card: VectorMatchCardinality::OneToOne,
            on: false,
            labels: Vec::new(),
            include: Vec::new(),
        };
        if let TokKind::Keyword(kw @ (Kw::On | Kw::Ignoring)) = self.peek().kind {
            self.bump();
            vm.on = kw == Kw::On;
            vm.labels = self.grouping_labels()?;
            if let TokKind::Keyword(kw @ (Kw::GroupLeft | Kw::GroupRight)) = self.peek().kind {
                self.bump();
                vm.card = if kw == Kw::GroupLeft {
                    VectorMatchCardinality::ManyToOne
                } else {
                    VectorMatchCardinality::OneToMany
                };
                if matches!(self.peek().kind, TokKind::LParen) {
                    vm.include = self.grouping_labels()?;
                }
            }
        }
        if let TokKind::Keyword(Kw::Fill) = self.peek().kind {
            let t = self.peek();
            return Err(self.err(
                t.start,
                t.end,
                "binop fill modifiers are experimental and not supported",
            ));
        }
        Ok((return_bool, Some(vm)))
    }

    /// `( label, ... )`, trailing comma allowed.
    fn grouping_labels(&mut self) -> PResult<Vec<String>> {
        let t = self.peek();
        if !matches!(t.kind, TokKind::LParen) {
            return Err(self.unexpected(t, "grouping opts", "\"(\""));
        }
        self.bump();
        let mut labels = Vec::new();
        loop {
            let t = self.peek();
            match &t.kind {
                TokKind::RParen => {
                    self.bump();
                    return Ok(labels);
                }
                TokKind::Str => {
                    self.bump();
                    let name = literal::unquote(self.text(t))
                        .map_err(|e| self.err(t.start, t.end, e.message(true)))?;
                    if name.is_empty() {
                        return Err(self.err(
                            t.start,
                            t.end,
                            format!("invalid label name for grouping: {}", go_quote(&name)),
                        ));
                    }
                    labels.push(name);
                }
                TokKind::Ident | TokKind::Keyword(_) | TokKind::Op(_) if self.is_word(t) => {
                    self.bump();
                    labels.push(self.text(t).to_string());
                }
                _ => return Err(self.unexpected(t, "grouping opts", "label")),
            }
            let t = self.peek();
            match t.kind {
                TokKind::Comma => {
                    self.bump();
                }
                TokKind::RParen => {}
                _ => return Err(self.unexpected(t, "grouping opts", "\",\" or \")\"")),
            }
        }
    }

    /// Whether a token is a bare word (identifier, keyword, or a word
    /// operator such as `and`), usable as a label name.
    fn is_word(&self, t: &Token) -> bool {
        match t.kind {
            TokKind::Ident | TokKind::Keyword(_) => true,
            TokKind::Op(op) => op.as_str().starts_with(|c: char| c.is_ascii_alphabetic()),
            _ => false,
        }
    }

    /// Unary minus and plus, then a postfix expression.
    fn unary(&mut self) -> PResult<Node> {
        let mut signs = Vec::new();
        while let TokKind::Op(op @ (BinaryOp::Add | BinaryOp::Sub)) = self.peek().kind {
            signs.push((op, self.peek().start));
            self.bump();
        }
        if signs.is_empty() {
            return self.postfix();
        }
        let node = self.expr(POW_PRECEDENCE.max(UNARY_PRECEDENCE + 1))?;
        self.apply_signs(&signs, node)
    }

    /// Applies unary signs (innermost first), folding them into number
    /// literals as Prometheus does.
    #[inline(never)]
    fn apply_signs(&self, signs: &[(BinaryOp, usize)], node: Node) -> PResult<Node> {
        let mut node = node;
        // Apply the innermost sign first.
        for &(op, start) in signs.iter().rev() {
            let end = node.expr.span().end as usize;
            node = match node.expr {
                Expr::Number(n) => {
                    let value = if op == BinaryOp::Sub {
                        -n.value
                    } else {
                        n.value
                    };
                    Node {
                        expr: Expr::Number(NumberLiteral {
                            value,
                            span: span(start, end),
                        }),
                        depth: node.depth,
                    }
                }
                other => {
                    let t = other.value_type();
                    if t != ValueType::Scalar && t != ValueType::Vector {
                        return Err(self.err(
                            start,
                            end,
                            format!(
                                "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                                go_quote(t.documented())
                            ),
                        ));
                    }
                    if op == BinaryOp::Add {
                        Node {
                            expr: other,
                            depth: node.depth,
                        }
                    } else {
                        let depth = node.depth + 1;
                        self.node(
                            Expr::Unary(UnaryExpr {
                                expr: Box::new(other),
                                span: span(start, end),
                            }),
                            depth,
                        )?
                    }
                }
            };
        }
        Ok(node)
    }

    /// An atom followed by any `[...]`, `offset` and `@` modifiers.
    fn postfix(&mut self) -> PResult<Node> {
        let node = self.atom()?;
        self.modifiers(node)
    }

    /// `[...]`, `offset` and `@` modifiers after an atom.
    #[inline(never)]
    fn modifiers(&mut self, mut node: Node) -> PResult<Node> {
        loop {
            let t = self.peek();
            match t.kind {
                TokKind::LBracket => node = self.range_or_subquery(node)?,
                TokKind::Keyword(Kw::Offset) => node = self.offset(node)?,
                TokKind::At => node = self.at(node)?,
                TokKind::Keyword(kw @ (Kw::Anchored | Kw::Smoothed)) => {
                    let name = if kw == Kw::Anchored {
                        "anchored"
                    } else {
                        "smoothed"
                    };
                    return Err(self.err(
                        t.start,
                        t.end,
                        format!("{name} modifier is experimental and not supported"),
                    ));
                }
                _ => return Ok(node),
            }
        }
    }

    /// An operand: literal, parenthesised expression, selector, call or
    /// aggregation.
    fn atom(&mut self) -> PResult<Node> {
        let as_label_name = std::mem::take(&mut self.label_name_next);
        let t = self.peek();
        match &t.kind {
            TokKind::Number | TokKind::Duration | TokKind::Str => self.literal(as_label_name),
            TokKind::LParen => self.paren(),
            TokKind::LBrace => self.brace_selector(),
            TokKind::Keyword(Kw::Agg(op))
                if matches!(
                    self.peek_at(1).kind,
                    TokKind::LParen | TokKind::Keyword(Kw::By | Kw::Without)
                ) =>
            {
                self.aggregation(*op)
            }
            TokKind::Ident
            | TokKind::Keyword(
                Kw::Start | Kw::End | Kw::Step | Kw::Range | Kw::MaxOf | Kw::MinOf,
            ) if matches!(self.peek_at(1).kind, TokKind::LParen) => self.call(),
            TokKind::Ident | TokKind::MetricIdent => self.named_selector(),
            TokKind::Keyword(kw) if kw.is_metric_name() => self.named_selector(),
            TokKind::Op(BinaryOp::And | BinaryOp::Or | BinaryOp::Unless) => self.named_selector(),
            _ => Err(self.unexpected(t, "", "")),
        }
    }

    /// A number, duration or string literal.
    #[inline(never)]
    fn literal(&mut self, as_label_name: bool) -> PResult<Node> {
        let t = self.bump();
        let s = span(t.start, t.end);
        let expr = if t.kind == TokKind::Str {
            let (value, not_utf8) = match literal::unquote(self.text(t)) {
                Ok(v) => (v, None),
                // Refused at evaluation, as Prometheus does (see
                // `StringLiteral::not_utf8`).
                Err(literal::UnquoteError::InvalidUtf8 { quoted, lossy }) if as_label_name => {
                    (lossy, Some(quoted))
                }
                Err(e) => return Err(self.err(t.start, t.end, e.message(as_label_name))),
            };
            Expr::String(StringLiteral {
                value,
                span: s,
                not_utf8,
            })
        } else {
            let value = self.number_value(t)?;
            Expr::Number(NumberLiteral { value, span: s })
        };
        self.node(expr, 1)
    }

    /// `( expr )`.
    fn paren(&mut self) -> PResult<Node> {
        let open = self.bump();
        let inner = self.expr(0)?;
        self.close_paren(open.start, inner)
    }

    #[inline(never)]
    fn close_paren(&mut self, start: usize, inner: Node) -> PResult<Node> {
        let close = self.peek();
        if !matches!(close.kind, TokKind::RParen) {
            return Err(self.unexpected(close, "", ""));
        }
        self.bump();
        let depth = inner.depth + 1;
        self.node(
            Expr::Paren(ParenExpr {
                expr: Box::new(inner.expr),
                span: span(start, close.end),
            }),
            depth,
        )
    }

    /// `{...}` without a metric name before it.
    #[inline(never)]
    fn brace_selector(&mut self) -> PResult<Node> {
        let start = self.peek().start;
        let (matchers, end) = self.label_matchers()?;
        self.selector(None, matchers, start, end)
    }

    fn number_value(&self, t: &Token) -> PResult<f64> {
        let text = self.text(t);
        match t.kind {
            TokKind::Duration => literal::duration_ms(text)
                .map(|ms| ms as f64 / 1000.0)
                .map_err(|m| self.err(t.start, t.end, m)),
            _ => literal::number(text).map_err(|m| self.err(t.start, t.end, m)),
        }
    }

    /// `name` or `name{...}`.
    fn named_selector(&mut self) -> PResult<Node> {
        let t = self.bump();
        let name = self.text(t).to_string();
        let mut matchers = Vec::new();
        let mut end = t.end;
        if matches!(self.peek().kind, TokKind::LBrace) {
            let (m, e) = self.label_matchers()?;
            matchers = m;
            end = e;
        }
        matchers.push(Matcher::equal(
            cairn_engine::labels::METRIC_NAME,
            name.as_str(),
        ));
        self.selector(Some(name), matchers, t.start, end)
    }

    fn selector(
        &self,
        name: Option<String>,
        mut matchers: Vec<Matcher>,
        start: usize,
        end: usize,
    ) -> PResult<Node> {
        matchers.sort_by(|a, b| {
            (a.name.as_str(), a.op.as_str(), a.value.as_str()).cmp(&(
                b.name.as_str(),
                b.op.as_str(),
                b.value.as_str(),
            ))
        });
        self.node(
            Expr::VectorSelector(VectorSelector {
                name,
                matchers,
                offset_ms: 0,
                at: None,
                span: span(start, end),
            }),
            1,
        )
    }

    /// `{ matcher, ... }`; returns the matchers and the end of `}`.
    fn label_matchers(&mut self) -> PResult<(Vec<Matcher>, usize)> {
        self.bump(); // `{`
        let mut out = Vec::new();
        loop {
            let t = self.peek();
            match &t.kind {
                TokKind::RBrace => {
                    self.bump();
                    return Ok((out, t.end));
                }
                TokKind::Ident | TokKind::Str => {
                    self.bump();
                    let name = if t.kind == TokKind::Str {
                        literal::unquote(self.text(t))
                            .map_err(|e| self.err(t.start, t.end, e.message(true)))?
                    } else {
                        self.text(t).to_string()
                    };
                    let op_tok = self.peek();
                    let op = match op_tok.kind {
                        TokKind::Assign => Some(MatchOp::Equal),
                        TokKind::Op(BinaryOp::Neq) => Some(MatchOp::NotEqual),
                        TokKind::EqlRegex => Some(MatchOp::RegexMatch),
                        TokKind::NeqRegex => Some(MatchOp::RegexNoMatch),
                        _ => None,
                    };
                    match op {
                        None if t.kind == TokKind::Str => {
                            // `{"metric.name"}`: a metric name matcher.
                            out.push(Matcher::equal(cairn_engine::labels::METRIC_NAME, name));
                        }
                        None => {
                            return Err(self.unexpected(
                                op_tok,
                                "label matching",
                                "label matching operator",
                            ));
                        }
                        Some(op) => {
                            self.bump();
                            let v = self.peek();
                            if v.kind != TokKind::Str {
                                return Err(self.unexpected(v, "label matching", "string"));
                            }
                            self.bump();
                            let value = literal::unquote(self.text(v))
                                .map_err(|e| self.err(v.start, v.end, e.message(false)))?;
                            let m = regex_matcher(op, name, value).map_err(|e| {
                                let msg = match e {
                                    cairn_engine::Error::InvalidRegex { reason, .. } => {
                                        // The regex crate's message ends with a
                                        // one-line summary after a diagram.
                                        let summary = reason
                                            .lines()
                                            .rev()
                                            .map(str::trim)
                                            .find(|l| !l.is_empty())
                                            .unwrap_or("invalid regular expression");
                                        format!("error parsing regexp: {summary}")
                                    }
                                    other => other.to_string(),
                                };
                                self.err(t.start, v.end, msg)
                            })?;
                            out.push(m);
                        }
                    }
                }
                _ => {
                    return Err(self.unexpected(t, "label matching", "identifier or \"}\""));
                }
            }
            let t = self.peek();
            match t.kind {
                TokKind::Comma => {
                    self.bump();
                }
                TokKind::RBrace => {}
                _ => {
                    return Err(self.unexpected(t, "label matching", "\",\" or \"}\""));
                }
            }
        }
    }

    /// `name(args)`.
    fn call(&mut self) -> PResult<Node> {
        let name_tok = self.bump();
        let func = self.function(name_tok)?;
        let label_arg = matches!(func.name, "label_replace" | "label_join").then_some(1);
        let (args, depth, end) = self.call_args(label_arg)?;
        self.node(
            Expr::Call(Call {
                func,
                args,
                span: span(name_tok.start, end),
            }),
            depth + 1,
        )
    }

    /// The table entry of the function named by `name_tok`.
    #[inline(never)]
    fn function(&self, name_tok: &Token) -> PResult<&'static functions::Function> {
        let name = self.text(name_tok);
        let Some(func) = functions::lookup(name) else {
            return Err(self.err(
                name_tok.start,
                name_tok.end,
                format!("unknown function with name {}", go_quote(name)),
            ));
        };
        if func.stability == Stability::Experimental && !self.opts.experimental_functions {
            return Err(self.err(
                name_tok.start,
                name_tok.end,
                format!("function {} is not enabled", go_quote(name)),
            ));
        }
        Ok(func)
    }

    /// `( expr, ... )`; returns the arguments, their greatest depth and
    /// the end of `)`.
    fn call_args(&mut self, label_arg: Option<usize>) -> PResult<(Vec<Expr>, usize, usize)> {
        self.bump(); // `(`
        let mut args = Vec::new();
        let mut depth = 0;
        let t = self.peek();
        if t.kind == TokKind::RParen {
            self.bump();
            return Ok((args, depth, t.end));
        }
        loop {
            self.label_name_next = label_arg == Some(args.len());
            let arg = self.expr(0)?;
            depth = depth.max(arg.depth);
            args.push(arg.expr);
            let t = self.peek();
            match t.kind {
                TokKind::RParen => {
                    self.bump();
                    return Ok((args, depth, t.end));
                }
                TokKind::Comma => {
                    self.bump();
                    if self.peek().kind == TokKind::RParen {
                        return Err(self.trailing_comma(t));
                    }
                }
                _ => return Err(self.unexpected(t, "", "\",\" or \")\"")),
            }
        }
    }

    /// `op [by|without (...)] (args) [by|without (...)]`.
    fn aggregation(&mut self, op: AggregateOp) -> PResult<Node> {
        let op_tok = self.bump();
        let grouping = self.aggregation_modifier()?;
        let t = self.peek();
        if t.kind != TokKind::LParen {
            return Err(self.unexpected(t, "aggregation", "\"(\""));
        }
        let label_arg = (op == AggregateOp::CountValues).then_some(0);
        let (args, depth, end) = self.call_args(label_arg)?;
        self.finish_aggregation(op, op_tok.start, grouping, args, depth, end)
    }

    /// An optional `by (...)` or `without (...)`.
    #[inline(never)]
    fn aggregation_modifier(&mut self) -> PResult<Option<(Vec<String>, bool)>> {
        if let TokKind::Keyword(kw @ (Kw::By | Kw::Without)) = self.peek().kind {
            self.bump();
            return Ok(Some((self.grouping_labels()?, kw == Kw::Without)));
        }
        Ok(None)
    }

    #[inline(never)]
    fn finish_aggregation(
        &mut self,
        op: AggregateOp,
        start: usize,
        mut grouping: Option<(Vec<String>, bool)>,
        mut args: Vec<Expr>,
        depth: usize,
        mut end: usize,
    ) -> PResult<Node> {
        if let TokKind::Keyword(Kw::By | Kw::Without) = self.peek().kind {
            if grouping.is_some() {
                return Err(self.unexpected(self.peek(), "", ""));
            }
            grouping = self.aggregation_modifier()?;
            end = self.toks[self.i - 1].end;
        }
        let s = span(start, end);
        if args.is_empty() {
            return Err(self.err_span(s, "no arguments for aggregate expression provided"));
        }
        let wanted = if op.param_type().is_some() {
            if op.is_experimental() && !self.opts.experimental_functions {
                return Err(self.err_span(
                    s,
                    format!(
                        "{}() is experimental and must be enabled with --enable-feature=promql-experimental-functions",
                        op.as_str()
                    ),
                ));
            }
            2
        } else {
            1
        };
        if args.len() != wanted {
            return Err(self.err_span(
                s,
                format!(
                    "wrong number of arguments for aggregate expression provided, expected {wanted}, got {}",
                    args.len()
                ),
            ));
        }
        let expr = args.pop().map(Box::new);
        let param = args.pop().map(Box::new);
        let Some(expr) = expr else {
            return Err(self.err_span(s, "no arguments for aggregate expression provided"));
        };
        let (grouping, without) = grouping.unwrap_or_default();
        self.node(
            Expr::Aggregate(AggregateExpr {
                op,
                expr,
                param,
                grouping,
                without,
                span: s,
            }),
            depth + 1,
        )
    }

    /// A duration inside `[...]` or after `offset`: a number of seconds or
    /// a duration literal, with an optional sign. Returns milliseconds and
    /// the span.
    fn duration_literal(&mut self) -> PResult<Option<(i64, usize, usize)>> {
        let t = self.peek();
        let start = t.start;
        let mut negative = false;
        if let TokKind::Op(op @ (BinaryOp::Sub | BinaryOp::Add)) = t.kind {
            if !matches!(self.peek_at(1).kind, TokKind::Number | TokKind::Duration) {
                return Ok(None);
            }
            self.bump();
            negative = op == BinaryOp::Sub;
        }
        let t = self.peek();
        if !matches!(t.kind, TokKind::Number | TokKind::Duration) {
            return Ok(None);
        }
        self.bump();
        let ms = match t.kind {
            TokKind::Duration => {
                literal::duration_ms(self.text(t)).map_err(|m| self.err(t.start, t.end, m))?
            }
            _ => {
                let secs =
                    literal::number(self.text(t)).map_err(|m| self.err(t.start, t.end, m))?;
                if secs.is_nan() || secs.abs() > MAX_DURATION_MS as f64 / 1000.0 {
                    return Err(self.err(start, t.end, "duration out of range"));
                }
                literal::seconds_to_ms(secs)
                    .ok_or_else(|| self.err(start, t.end, "duration out of range"))?
            }
        };
        Ok(Some((if negative { -ms } else { ms }, start, t.end)))
    }

    #[cold]
    fn trailing_comma(&self, t: &Token) -> ParseError {
        self.err(
            t.start,
            t.end,
            "trailing commas not allowed in function call args",
        )
    }

    fn duration_expr_unsupported(&self, t: &Token) -> ParseError {
        self.err(
            t.start,
            t.end,
            "experimental duration expression is not enabled",
        )
    }

    /// A positive duration in brackets.
    fn bracket_duration(&mut self, context: &str, expected: &str) -> PResult<i64> {
        let t = self.peek();
        match self.duration_literal()? {
            Some((ms, start, end)) => {
                let after = self.peek();
                if matches!(
                    after.kind,
                    TokKind::Op(_) | TokKind::LParen | TokKind::Comma
                ) {
                    return Err(self.duration_expr_unsupported(after));
                }
                if ms <= 0 {
                    return Err(self.err(start, end, "duration must be greater than 0"));
                }
                Ok(ms)
            }
            None => {
                if matches!(
                    t.kind,
                    TokKind::LParen
                        | TokKind::Op(_)
                        | TokKind::Keyword(Kw::Step | Kw::Range | Kw::MaxOf | Kw::MinOf)
                ) && !matches!(self.peek_at(1).kind, TokKind::RBracket)
                {
                    return Err(self.duration_expr_unsupported(t));
                }
                Err(self.unexpected(t, context, expected))
            }
        }
    }

    /// `[range]` after a vector selector or `[range:step]` after any
    /// expression.
    fn range_or_subquery(&mut self, node: Node) -> PResult<Node> {
        let open = self.bump();
        let range_ms = self.bracket_duration(
            "subquery or range selector",
            "number, duration, step(), or range()",
        )?;
        let t = self.peek();
        match t.kind {
            TokKind::RBracket => {
                self.bump();
                let vs = match node.expr {
                    Expr::VectorSelector(vs) => vs,
                    _ => {
                        return Err(self.err(
                            open.start,
                            t.end,
                            "ranges only allowed for vector selectors",
                        ));
                    }
                };
                if vs.offset_ms != 0 {
                    return Err(self.err(
                        open.start,
                        t.end,
                        "no offset modifiers allowed before range",
                    ));
                }
                if vs.at.is_some() {
                    return Err(self.err(open.start, t.end, "no @ modifiers allowed before range"));
                }
                let s = span(vs.span.start as usize, t.end);
                self.node(
                    Expr::MatrixSelector(MatrixSelector {
                        vector: vs,
                        range_ms,
                        span: s,
                    }),
                    1,
                )
            }
            TokKind::Colon => {
                self.bump();
                let step_ms = if self.peek().kind == TokKind::RBracket {
                    None
                } else {
                    Some(self.bracket_duration(
                        "subquery selector",
                        "number, duration, step(), range(), or \"]\"",
                    )?)
                };
                let close = self.peek();
                if close.kind != TokKind::RBracket {
                    return Err(self.unexpected(close, "subquery selector", "\"]\""));
                }
                self.bump();
                let s = span(node.expr.span().start as usize, close.end);
                self.node(
                    Expr::Subquery(SubqueryExpr {
                        expr: Box::new(node.expr),
                        range_ms,
                        step_ms,
                        offset_ms: 0,
                        at: None,
                        span: s,
                    }),
                    node.depth + 1,
                )
            }
            _ => Err(self.unexpected(t, "subquery or range", "\":\" or \"]\"")),
        }
    }

    /// `offset [-]duration`.
    fn offset(&mut self, mut node: Node) -> PResult<Node> {
        self.bump();
        let t = self.peek();
        let Some((ms, _, end)) = self.duration_literal()? else {
            let starts_duration_expr = |k: &TokKind| {
                matches!(
                    k,
                    TokKind::LParen
                        | TokKind::Keyword(Kw::Step | Kw::Range | Kw::MaxOf | Kw::MinOf)
                )
            };
            let signed = matches!(t.kind, TokKind::Op(BinaryOp::Add | BinaryOp::Sub));
            if starts_duration_expr(&t.kind)
                || (signed && starts_duration_expr(&self.peek_at(1).kind))
            {
                return Err(self.duration_expr_unsupported(t));
            }
            return Err(self.unexpected(t, "offset", "number, duration, step(), or range()"));
        };
        let target = node.expr.span();
        let slot = match &mut node.expr {
            Expr::VectorSelector(vs) => Some((&mut vs.offset_ms, &mut vs.span)),
            Expr::MatrixSelector(ms) => Some((&mut ms.vector.offset_ms, &mut ms.span)),
            Expr::Subquery(sq) => Some((&mut sq.offset_ms, &mut sq.span)),
            _ => None,
        };
        let Some((offset, s)) = slot else {
            return Err(self.err_span(
                target,
                "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
            ));
        };
        if *offset != 0 {
            return Err(self.err_span(target, "offset may not be set multiple times"));
        }
        *offset = ms;
        s.end = end as u32;
        Ok(node)
    }

    /// `@ timestamp`, `@ start()`, `@ end()`.
    fn at(&mut self, mut node: Node) -> PResult<Node> {
        self.bump();
        let t = self.peek();
        let target = node.expr.span();
        let (at, end) = match t.kind {
            TokKind::Keyword(kw @ (Kw::Start | Kw::End)) => {
                self.bump();
                let open = self.peek();
                if open.kind != TokKind::LParen {
                    return Err(self.unexpected(open, "@", "\"(\""));
                }
                self.bump();
                let close = self.peek();
                if close.kind != TokKind::RParen {
                    return Err(self.unexpected(close, "@", "\")\""));
                }
                self.bump();
                let at = if kw == Kw::Start {
                    AtModifier::Start
                } else {
                    AtModifier::End
                };
                (at, close.end)
            }
            _ => {
                let mut negative = false;
                if let TokKind::Op(op @ (BinaryOp::Add | BinaryOp::Sub)) = t.kind
                    && matches!(self.peek_at(1).kind, TokKind::Number | TokKind::Duration)
                {
                    self.bump();
                    negative = op == BinaryOp::Sub;
                }
                let n = self.peek();
                if !matches!(n.kind, TokKind::Number | TokKind::Duration) {
                    return Err(self.unexpected(n, "@", "timestamp"));
                }
                self.bump();
                let mut secs = self.number_value(n)?;
                if negative {
                    secs = -secs;
                }
                if !secs.is_finite() || secs >= i64::MAX as f64 || secs <= i64::MIN as f64 {
                    return Err(self.err_span(
                        target,
                        format!(
                            "timestamp out of bounds for @ modifier: {}",
                            go_float_f(secs)
                        ),
                    ));
                }
                let ms = (secs * 1000.0).round();
                if !(ms > i64::MIN as f64 && ms < i64::MAX as f64) {
                    return Err(self.err_span(
                        target,
                        format!(
                            "timestamp out of bounds for @ modifier: {}",
                            go_float_f(secs)
                        ),
                    ));
                }
                (AtModifier::Timestamp(ms as i64), n.end)
            }
        };
        let slot = match &mut node.expr {
            Expr::VectorSelector(vs) => Some((&mut vs.at, &mut vs.span)),
            Expr::MatrixSelector(ms) => Some((&mut ms.vector.at, &mut ms.span)),
            Expr::Subquery(sq) => Some((&mut sq.at, &mut sq.span)),
            _ => None,
        };
        let Some((slot, s)) = slot else {
            return Err(self.err_span(
                target,
                "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery",
            ));
        };
        if slot.is_some() {
            return Err(self.err_span(target, "@ <timestamp> may not be set multiple times"));
        }
        *slot = Some(at);
        s.end = end as u32;
        Ok(node)
    }
}

/// Compiled regex matchers by (name, op, value). Dashboards re-send the
/// same queries every refresh, and compiling a regex costs far more than
/// parsing the rest of a query (tens of microseconds against a few), so
/// the compiled form is reused. Bounded: cleared when full.
static REGEX_MATCHERS: std::sync::Mutex<Option<RegexCache>> = std::sync::Mutex::new(None);

type RegexCache = std::collections::HashMap<(String, MatchOp, String), Matcher>;

const REGEX_CACHE_ENTRIES: usize = 512;

/// `Matcher::new`, reusing compiled regular expressions.
fn regex_matcher(op: MatchOp, name: String, value: String) -> cairn_engine::Result<Matcher> {
    if matches!(op, MatchOp::Equal | MatchOp::NotEqual) {
        return Matcher::new(op, name, value);
    }
    let key = (name, op, value);
    if let Ok(cache) = REGEX_MATCHERS.lock()
        && let Some(m) = cache.as_ref().and_then(|c| c.get(&key))
    {
        return Ok(m.clone());
    }
    let m = Matcher::new(op, key.0.clone(), key.2.clone())?;
    // A poisoned lock only means another thread panicked mid-insert; the
    // cache is an optimisation, so skip it then.
    if let Ok(mut cache) = REGEX_MATCHERS.lock() {
        let cache = cache.get_or_insert_with(Default::default);
        if cache.len() >= REGEX_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, m.clone());
    }
    Ok(m)
}

/// Go's `%f` of a float (`+Inf`, `NaN`, six decimals otherwise).
fn go_float_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:.6}")
    }
}

impl Kw {
    /// Keywords that may also be used as a metric name.
    fn is_metric_name(self) -> bool {
        !matches!(
            self,
            Kw::On | Kw::Ignoring | Kw::GroupLeft | Kw::GroupRight | Kw::Bool
        )
    }
}
