//! The typed PromQL abstract syntax tree.
//!
//! The parser (`crate::parser`) produces an [`Expr`]; the formatter
//! (`crate::format`) prints it back as canonical PromQL; the evaluator walks
//! it. The tree is already type-checked when the parser returns it: every
//! function call matches its entry in [`crate::functions`], every binary
//! operation has operands of legal types, and so on, so consumers may rely on
//! [`Expr::value_type`] without re-checking.
//!
//! Conventions:
//! - Durations and timestamps are integer milliseconds (`i64`), as in the
//!   engine's `TimestampMs`. A PromQL number of seconds is rounded to the
//!   nearest millisecond.
//! - Every node carries a [`Span`] (byte offsets into the query) for error
//!   messages and annotations. Spans are metadata: they take no part in
//!   equality, so `parse(format(e)) == e` holds although the positions move.
//! - Label matchers of a selector are sorted by (name, operator, value), and
//!   include the `__name__` matcher of a metric name written outside braces.
//! - Unary plus is dropped at parse time (it is the identity); unary minus
//!   applied directly to a number literal is folded into the literal, as
//!   Prometheus does.

pub mod visit;

use std::fmt;

use cairn_engine::Matcher;

use crate::functions::Function;

/// A duration or timestamp in milliseconds.
pub type DurationMs = i64;

/// A byte range `[start, end)` of the query text a node came from.
///
/// Equality of spans is always true so that trees compare by content only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The smallest span covering both `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// 1-based line and column (in bytes) of the start of the span in
    /// `input`, as Prometheus prints positions (`1:7`).
    pub fn line_col(self, input: &str) -> (usize, usize) {
        line_col(input, self.start as usize)
    }
}

impl PartialEq for Span {
    fn eq(&self, _other: &Span) -> bool {
        true
    }
}

/// 1-based line and 1-based byte column of byte offset `pos` in `input`.
pub fn line_col(input: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(input.len());
    let before = &input.as_bytes()[..pos];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = match before.iter().rposition(|&b| b == b'\n') {
        Some(nl) => pos - nl,
        None => pos + 1,
    };
    (line, col)
}

/// The four types a PromQL expression can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    Scalar,
    String,
    /// An instant vector.
    Vector,
    /// A range vector.
    Matrix,
}

impl ValueType {
    /// Prometheus's internal name (`scalar`, `string`, `vector`, `matrix`).
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Scalar => "scalar",
            ValueType::String => "string",
            ValueType::Vector => "vector",
            ValueType::Matrix => "matrix",
        }
    }

    /// The name used in user-facing documentation and most error messages
    /// (`instant vector`, `range vector`, ...).
    pub fn documented(self) -> &'static str {
        match self {
            ValueType::Scalar => "scalar",
            ValueType::String => "string",
            ValueType::Vector => "instant vector",
            ValueType::Matrix => "range vector",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A PromQL expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A float literal (`1`, `0x1f`, `1e3`, `Inf`, `NaN`, `-2`).
    Number(NumberLiteral),
    /// A string literal (`"foo"`).
    String(StringLiteral),
    /// An instant vector selector (`foo{a="b"} offset 5m @ 100`).
    VectorSelector(VectorSelector),
    /// A range vector selector (`foo[5m]`).
    MatrixSelector(MatrixSelector),
    /// A subquery (`rate(foo[1m])[1h:5m]`).
    Subquery(SubqueryExpr),
    /// A parenthesised expression, kept so that printing is faithful.
    Paren(ParenExpr),
    /// Arithmetic negation (`-foo`).
    Unary(UnaryExpr),
    /// A binary operation (`a + on(x) group_left b`).
    Binary(BinaryExpr),
    /// An aggregation (`sum by (job) (foo)`, `topk(3, foo)`).
    Aggregate(AggregateExpr),
    /// A function call (`rate(foo[5m])`).
    Call(Call),
}

impl Expr {
    /// The type the expression evaluates to.
    pub fn value_type(&self) -> ValueType {
        match self {
            Expr::Number(_) => ValueType::Scalar,
            Expr::String(_) => ValueType::String,
            Expr::VectorSelector(_) => ValueType::Vector,
            Expr::MatrixSelector(_) | Expr::Subquery(_) => ValueType::Matrix,
            Expr::Paren(p) => p.expr.value_type(),
            Expr::Unary(u) => u.expr.value_type(),
            Expr::Binary(b) => {
                if b.lhs.value_type() == ValueType::Scalar
                    && b.rhs.value_type() == ValueType::Scalar
                {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            Expr::Aggregate(_) => ValueType::Vector,
            Expr::Call(c) => c.func.return_type,
        }
    }

    /// Where the expression is in the query text.
    pub fn span(&self) -> Span {
        match self {
            Expr::Number(e) => e.span,
            Expr::String(e) => e.span,
            Expr::VectorSelector(e) => e.span,
            Expr::MatrixSelector(e) => e.span,
            Expr::Subquery(e) => e.span,
            Expr::Paren(e) => e.span,
            Expr::Unary(e) => e.span,
            Expr::Binary(e) => e.span,
            Expr::Aggregate(e) => e.span,
            Expr::Call(e) => e.span,
        }
    }

    /// The expression with any enclosing parentheses removed.
    pub fn unparen(&self) -> &Expr {
        let mut e = self;
        while let Expr::Paren(p) = e {
            e = &p.expr;
        }
        e
    }

    /// A number literal without a position (for building trees in code).
    pub fn number(value: f64) -> Expr {
        Expr::Number(NumberLiteral {
            value,
            span: Span::default(),
        })
    }

    /// A string literal without a position.
    pub fn string(value: impl Into<String>) -> Expr {
        Expr::String(StringLiteral {
            value: value.into(),
            span: Span::default(),
            not_utf8: None,
        })
    }
}

/// A float literal.
///
/// Equality is by bit pattern except that all NaNs are equal, so that trees
/// containing `NaN` compare equal to themselves.
#[derive(Debug, Clone, Copy)]
pub struct NumberLiteral {
    pub value: f64,
    pub span: Span,
}

impl PartialEq for NumberLiteral {
    fn eq(&self, other: &NumberLiteral) -> bool {
        self.value.to_bits() == other.value.to_bits()
            || (self.value.is_nan() && other.value.is_nan())
    }
}

/// A string literal, unquoted (escapes resolved).
#[derive(Debug, Clone, PartialEq)]
pub struct StringLiteral {
    pub value: String,
    pub span: Span,
    /// Where a label name is expected (`count_values`'s parameter, the
    /// target label of `label_replace`/`label_join`), Go's PromQL parses a
    /// string whose escapes make bytes that are not UTF-8 (`"a\xc5z"`) and
    /// refuses it only when evaluating, as an invalid label name. Such a
    /// literal keeps its Go-quoted form here (and `value` its lossy
    /// decoding); the evaluator refuses it with Prometheus's message.
    pub not_utf8: Option<String>,
}

/// The `@` modifier of a selector or subquery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AtModifier {
    /// `@ <timestamp>`: evaluate at this Unix time in milliseconds.
    Timestamp(i64),
    /// `@ start()`: the start of the range query (the time of an instant query).
    Start,
    /// `@ end()`: the end of the range query (the time of an instant query).
    End,
}

/// An instant vector selector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSelector {
    /// The metric name when written before the braces (`foo{...}`); `None`
    /// for `{__name__="foo"}` or `{"foo"}`. Either way `matchers` has the
    /// `__name__` matcher.
    pub name: Option<String>,
    /// All label matchers, including `__name__`, sorted by (name, op, value).
    pub matchers: Vec<Matcher>,
    /// `offset` in milliseconds (negative looks into the future); 0 if none.
    pub offset_ms: DurationMs,
    /// The `@` modifier, if any.
    pub at: Option<AtModifier>,
    pub span: Span,
}

/// A range vector selector: a vector selector with a range. Its `offset`
/// and `@` modifiers are those of `vector`.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixSelector {
    pub vector: VectorSelector,
    /// The range in milliseconds, always > 0.
    pub range_ms: DurationMs,
    pub span: Span,
}

/// A subquery `expr[range:step]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubqueryExpr {
    /// The inner expression, always of type instant vector.
    pub expr: Box<Expr>,
    /// The range in milliseconds, always > 0.
    pub range_ms: DurationMs,
    /// The resolution in milliseconds; `None` means the default evaluation
    /// interval (`[1h:]`).
    pub step_ms: Option<DurationMs>,
    /// `offset` in milliseconds; 0 if none.
    pub offset_ms: DurationMs,
    pub at: Option<AtModifier>,
    pub span: Span,
}

/// `( expr )`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParenExpr {
    pub expr: Box<Expr>,
    pub span: Span,
}

/// Negation `-expr` of a scalar or instant vector expression.
#[derive(Debug, Clone, PartialEq)]
pub struct UnaryExpr {
    pub expr: Box<Expr>,
    pub span: Span,
}

/// Binary operators, in Prometheus's precedence groups (lowest first):
/// `or` < `and` `unless` < comparisons and `</` `>/` < `+` `-` <
/// `*` `/` `%` `atan2` < `^` (right associative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eql,
    Neq,
    Gtr,
    Lss,
    Gte,
    Lte,
    And,
    Or,
    Unless,
    /// `</`: trim the upper part of native histograms (native histograms only).
    TrimUpper,
    /// `>/`: trim the lower part of native histograms (native histograms only).
    TrimLower,
}

impl BinaryOp {
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Pow => "^",
            BinaryOp::Atan2 => "atan2",
            BinaryOp::Eql => "==",
            BinaryOp::Neq => "!=",
            BinaryOp::Gtr => ">",
            BinaryOp::Lss => "<",
            BinaryOp::Gte => ">=",
            BinaryOp::Lte => "<=",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Unless => "unless",
            BinaryOp::TrimUpper => "</",
            BinaryOp::TrimLower => ">/",
        }
    }

    /// Binding strength; higher binds tighter.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And | BinaryOp::Unless => 2,
            BinaryOp::Eql
            | BinaryOp::Neq
            | BinaryOp::Gtr
            | BinaryOp::Lss
            | BinaryOp::Gte
            | BinaryOp::Lte
            | BinaryOp::TrimUpper
            | BinaryOp::TrimLower => 3,
            BinaryOp::Add | BinaryOp::Sub => 4,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod | BinaryOp::Atan2 => 5,
            BinaryOp::Pow => 6,
        }
    }

    pub fn is_right_associative(self) -> bool {
        self == BinaryOp::Pow
    }

    /// `==`, `!=`, `>`, `<`, `>=`, `<=`.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eql
                | BinaryOp::Neq
                | BinaryOp::Gtr
                | BinaryOp::Lss
                | BinaryOp::Gte
                | BinaryOp::Lte
        )
    }

    /// `and`, `or`, `unless`.
    pub fn is_set_operator(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Unless)
    }
}

impl fmt::Display for BinaryOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the two sides of a vector-vector operation are matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VectorMatchCardinality {
    OneToOne,
    /// `group_left`.
    ManyToOne,
    /// `group_right`.
    OneToMany,
    /// Set operators (`and`, `or`, `unless`) always match many-to-many.
    ManyToMany,
}

/// The matching clause of a binary operation between two instant vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorMatching {
    pub card: VectorMatchCardinality,
    /// `true` for `on(labels)`, `false` for `ignoring(labels)` (or no clause).
    pub on: bool,
    /// The labels of `on(...)` / `ignoring(...)`.
    pub labels: Vec<String>,
    /// The extra labels of `group_left(...)` / `group_right(...)`.
    pub include: Vec<String>,
}

/// A binary operation.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryExpr {
    pub op: BinaryOp,
    pub lhs: Box<Expr>,
    pub rhs: Box<Expr>,
    /// The `bool` modifier of a comparison.
    pub return_bool: bool,
    /// Present exactly when both operands are instant vectors.
    pub matching: Option<VectorMatching>,
    pub span: Span,
}

/// Aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateOp {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    CountValues,
    Quantile,
    /// Experimental in Prometheus (`promql-experimental-functions`).
    Limitk,
    /// Experimental in Prometheus (`promql-experimental-functions`).
    LimitRatio,
}

impl AggregateOp {
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateOp::Sum => "sum",
            AggregateOp::Avg => "avg",
            AggregateOp::Count => "count",
            AggregateOp::Min => "min",
            AggregateOp::Max => "max",
            AggregateOp::Group => "group",
            AggregateOp::Stddev => "stddev",
            AggregateOp::Stdvar => "stdvar",
            AggregateOp::Topk => "topk",
            AggregateOp::Bottomk => "bottomk",
            AggregateOp::CountValues => "count_values",
            AggregateOp::Quantile => "quantile",
            AggregateOp::Limitk => "limitk",
            AggregateOp::LimitRatio => "limit_ratio",
        }
    }

    /// Looks an aggregation up by its (case-insensitive) keyword.
    pub fn from_keyword(word: &str) -> Option<AggregateOp> {
        const ALL: [AggregateOp; 14] = [
            AggregateOp::Sum,
            AggregateOp::Avg,
            AggregateOp::Count,
            AggregateOp::Min,
            AggregateOp::Max,
            AggregateOp::Group,
            AggregateOp::Stddev,
            AggregateOp::Stdvar,
            AggregateOp::Topk,
            AggregateOp::Bottomk,
            AggregateOp::CountValues,
            AggregateOp::Quantile,
            AggregateOp::Limitk,
            AggregateOp::LimitRatio,
        ];
        ALL.into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(word))
    }

    /// The type of the parameter, for the operators that take one.
    pub fn param_type(self) -> Option<ValueType> {
        match self {
            AggregateOp::Topk
            | AggregateOp::Bottomk
            | AggregateOp::Quantile
            | AggregateOp::Limitk
            | AggregateOp::LimitRatio => Some(ValueType::Scalar),
            AggregateOp::CountValues => Some(ValueType::String),
            _ => None,
        }
    }

    pub fn is_experimental(self) -> bool {
        matches!(self, AggregateOp::Limitk | AggregateOp::LimitRatio)
    }
}

impl fmt::Display for AggregateOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An aggregation.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateExpr {
    pub op: AggregateOp,
    /// The aggregated expression, always an instant vector.
    pub expr: Box<Expr>,
    /// The parameter of `topk`, `bottomk`, `quantile`, `count_values`,
    /// `limitk`, `limit_ratio`; `None` for the others.
    pub param: Option<Box<Expr>>,
    /// The labels of `by (...)` or `without (...)`.
    pub grouping: Vec<String>,
    /// `true` for `without`, `false` for `by` (or no clause).
    pub without: bool,
    pub span: Span,
}

/// A function call, checked against the function table.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub func: &'static Function,
    pub args: Vec<Expr>,
    pub span: Span,
}
