//! The PromQL parser: query text to a type-checked [`Expr`].
//!
//! Three stages, each linear in the input:
//! 1. `lexer` splits the text into tokens (nom recognisers for the pieces);
//! 2. `grammar` builds the tree by recursive descent with precedence
//!    climbing for binary operators, reporting syntax errors and the
//!    errors Prometheus raises while building nodes (unknown function,
//!    misplaced `offset`, bad durations ...) at the first one found;
//! 3. `check` type-checks the finished tree in the order Prometheus's
//!    `checkAST` does, so the first type error is the one Prometheus gives.
//!
//! **API Boundary:** [`parse`] never panics and never recurses deeper than
//! [`ParseOptions::max_depth`], whatever the input; errors carry the byte
//! position and a message in Prometheus's words, and are returned by the
//! HTTP API as `bad_data`.

mod check;
mod grammar;
mod lexer;
mod literal;

pub use lexer::go_quote;

use crate::ast::{Expr, line_col};

/// The default bound on expression nesting (parentheses, calls,
/// aggregations, operands of operators, including each link of a chain
/// `a + b + c ...`). Real queries stay far below it; it keeps recursion in
/// the parser, checker, formatter and evaluator within the stack: parsing,
/// checking and printing take about 7 KiB of stack per level in a debug
/// build and under 2 KiB in a release build, so 128 levels fit easily in
/// a 2 MiB thread stack with room left for evaluation.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// Options of the parser.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// Accept the functions and aggregations that Prometheus keeps behind
    /// `--enable-feature=promql-experimental-functions` (`limitk`,
    /// `mad_over_time`, `sort_by_label`, ...). On by default, as in
    /// Prometheus's test scripts.
    pub experimental_functions: bool,
    /// The deepest nesting accepted.
    pub max_depth: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            experimental_functions: true,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// A query that does not parse or does not type-check. Displayed as
/// Prometheus does: `1:7: parse error: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: parse error: {message}")]
pub struct ParseError {
    /// Byte offset where the offending part starts.
    pub start: usize,
    /// Byte offset where it ends (exclusive; may equal `start`).
    pub end: usize,
    /// 1-based line of `start`.
    pub line: usize,
    /// 1-based column of `start`, in bytes (as Prometheus counts).
    pub col: usize,
    /// What is wrong, in Prometheus's words.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(input: &str, start: usize, end: usize, message: impl Into<String>) -> Self {
        let (line, col) = line_col(input, start);
        ParseError {
            start,
            end: end.max(start),
            line,
            col,
            message: message.into(),
        }
    }
}

/// Parses and type-checks a PromQL expression with the default options.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    parse_with(input, &ParseOptions::default())
}

/// Parses and type-checks a PromQL expression.
pub fn parse_with(input: &str, options: &ParseOptions) -> Result<Expr, ParseError> {
    let tokens = lexer::tokenize(input);
    let mut expr = grammar::parse_tokens(input, &tokens, options)?;
    check::check(input, &mut expr)?;
    Ok(expr)
}
