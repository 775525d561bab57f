//! cairn-query: PromQL for Cairn.
//!
//! A query string is parsed into a typed AST, checked, and evaluated over
//! storage that is reached only through `cairn_engine::Querier`.

pub mod ast;
pub mod functions;
pub mod parser;

pub use ast::{Expr, ValueType};
pub use parser::{ParseError, ParseOptions, parse, parse_with};
pub mod format;
